/* test-conf.c: the config file, environment and flag parsing of common/conf.c, as an operator sees it:
 * which values end up in the settings, and what the messages say when they do not. */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "fs-util.h"
#include "macro.h"
#include "strv.h"
#include "tap.h"
#include "time-util.h"

typedef struct TestSettings {
        char *listen;
        usec_t timeout;
        int64_t slots;
        char **caps;
        char *config;
} TestSettings;

static const ConfOption test_options[] = {
        { "listen", 0, CONF_STRING, offsetof(TestSettings, listen), "127.0.0.1:1", "ADDR", "listen", 0, 0 },
        { "timeout", 0, CONF_TIMESPAN, offsetof(TestSettings, timeout), "10s", "SPAN", "timeout", 0, 0 },
        { "slots", 0, CONF_INT, offsetof(TestSettings, slots), "1", "N", "slots", 1, 64 },
        { "capabilities", 0, CONF_STRV, offsetof(TestSettings, caps), "default", "LIST", "caps", 0, 0 },
        { "config", 0, CONF_STRING, offsetof(TestSettings, config), NULL, "FILE", "config", 0, 0 },
};
static const ConfProgram test_program = {
        .name = "test", .section = "test", .summary = "", .usage_args = "", .default_config = "/nonexistent",
        .options = test_options, .n_options = ELEMENTSOF(test_options),
};

static char conf_path[] = "/tmp/entropy-test-conf-XXXXXX";
static char out_path[] = "/tmp/entropy-test-conf-out-XXXXXX";

/* Runs f with fd (1 or 2) sent to a file, and returns what was written there. */
static char *capture(int fd, void (*f)(void *), void *userdata) {
        char *text = NULL;
        int saved, out;

        fflush(stdout);
        fflush(stderr);
        saved = dup(fd);
        out = open(out_path, O_WRONLY | O_TRUNC | O_CLOEXEC);
        if (saved < 0 || out < 0 || dup2(out, fd) < 0)
                tap_bail("cannot redirect fd %d", fd);
        close(out);
        f(userdata);
        fflush(stdout);
        fflush(stderr);
        if (dup2(saved, fd) < 0)
                tap_bail("cannot restore fd %d", fd);
        close(saved);
        if (read_full_file(out_path, 1 << 20, &text, NULL) < 0)
                tap_bail("cannot read %s", out_path);
        return text;
}

static void help_call(void *userdata) {
        conf_help(&test_program);
}

static void test_help_says_config_is_no_key(void) {
        _cleanup_free_ char *out = capture(STDOUT_FILENO, help_call, NULL);
        ok(strstr(out, "Every option but --config is also a key of the config file"),
           "--help: every option but --config is a key of the config file");
}

int main(void) {
        int fd = mkstemp(conf_path);
        int fd2 = mkstemp(out_path);
        if (fd < 0 || fd2 < 0)
                tap_bail("mkstemp");
        close(fd);
        close(fd2);
        unsetenv("ENTROPY_CONFIG");

        test_help_says_config_is_no_key();

        unlink(conf_path);
        unlink(out_path);
        return tap_done();
}
