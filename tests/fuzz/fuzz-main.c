/* fuzz-main.c: a main() for the fuzz targets without libFuzzer: runs LLVMFuzzerTestOneInput on
 * every file of the directories (or files) given, by default the target's checked-in corpus
 * $ENTROPY_SRCDIR/tests/fuzz/corpus/FUZZ_NAME, and prints TAP. A crash or sanitizer report ends
 * the run early, which the TAP driver reports as a failure. */
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fs-util.h"
#include "fuzz.h"
#include "macro.h"

#define INPUT_MAX (4 * 1024 * 1024)

static int n_run;

static int run_file(const char *path) {
        _cleanup_free_ char *data = NULL;
        size_t size = 0;
        int r;

        r = read_full_file(path, INPUT_MAX, &data, &size);
        if (r < 0) {
                printf("not ok %d - %s: cannot read (%s)\n", ++n_run, path, strerror(-r));
                return r;
        }
        LLVMFuzzerTestOneInput((const uint8_t *) data, size);
        printf("ok %d - %s\n", ++n_run, path);
        fflush(stdout);
        return 0;
}

static int run_path(const char *path) {
        struct dirent **list = NULL;
        struct stat st;
        int n, failed = 0;

        if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
                return run_file(path) < 0;
        n = scandir(path, &list, NULL, alphasort); /* a stable order: numbered TAP lines mean the same */
        if (n < 0) {
                printf("not ok %d - %s: cannot list\n", ++n_run, path);
                return 1;
        }
        for (int i = 0; i < n; i++) {
                char p[PATH_MAX];
                if (list[i]->d_name[0] != '.' && snprintf(p, sizeof(p), "%s/%s", path, list[i]->d_name) < (int) sizeof(p))
                        failed += run_file(p) < 0;
                free(list[i]);
        }
        free(list);
        return failed;
}

int main(int argc, char **argv) {
        char def[PATH_MAX];
        int failed = 0;

        if (LLVMFuzzerInitialize(&argc, &argv) != 0)
                return 1;
        if (argc < 2) {
                snprintf(def, sizeof(def), "%s/tests/fuzz/corpus/%s", getenv("ENTROPY_SRCDIR") ?: ".", FUZZ_NAME);
                failed = run_path(def);
        }
        for (int i = 1; i < argc; i++)
                failed += run_path(argv[i]);
        printf("1..%d\n", n_run);
        return failed ? 1 : 0;
}
