/* fuzz-conf.c: config files (libinih through conf_load) with entropy-control's option table: the
 * input is written to a file read as --config. Errors are fine; crashes and leaks are not. */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "conf.h"
#include "control-settings.h"
#include "fuzz.h"
#include "log.h"
#include "macro.h"

static char path[PATH_MAX];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        const char *tmp = getenv("TMPDIR") ?: "/tmp";
        int fd;

        log_set_max_level(LOG_CRIT); /* every bad value is logged; keep the output to the crashes */
        snprintf(path, sizeof(path), "%s/fuzz-conf-XXXXXX", tmp);
        fd = mkstemp(path);
        if (fd < 0)
                return 1;
        close(fd);
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char arg[PATH_MAX + 16];
        char *argv[] = {(char *) "entropy-control", arg, NULL};
        ControlSettings s = {};
        FILE *f;

        f = fopen(path, "we");
        if (!f)
                return 0;
        if (fwrite(data, 1, size, f) != size) {
                fclose(f);
                return 0;
        }
        fclose(f);
        snprintf(arg, sizeof(arg), "--config=%s", path);
        if (conf_load(&control_program, 2, argv, &s, NULL) == 0)
                (void) control_settings_check(&s);
        control_settings_free(&s);
        return 0;
}
