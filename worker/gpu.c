/* gpu.c: finds NVIDIA GPUs for the `gpu` capability and the slot-to-GPU map (see gpu.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gpu.h"
#include "log.h"
#include "macro.h"
#include "strv.h"

static int cmp_index(const void *a, const void *b) {
        return atoi(*(char *const *) a) - atoi(*(char *const *) b);
}

static int detect_dev(const char *dev_dir, char ***ret) {
        _cleanup_strv_free_ char **l = NULL;
        DIR *d = opendir(dev_dir);
        struct dirent *de;
        int r = 0;

        if (!d)
                return -errno;
        while ((de = readdir(d))) {
                const char *n = de->d_name;
                if (strncmp(n, "nvidia", 6) != 0 || !n[6] || strspn(n + 6, "0123456789") != strlen(n + 6))
                        continue;
                r = strv_extend(&l, n + 6);
                if (r < 0)
                        break;
        }
        closedir(d);
        if (r < 0)
                return r;
        if (l)
                qsort(l, strv_length(l), sizeof(char *), cmp_index);
        *ret = TAKE_PTR(l);
        return 0;
}

/* Reads `nvidia-smi -L` ("GPU 0: ...") with a 5 s bound, so a hung driver cannot stall start-up. */
static int detect_smi(char ***ret) {
        _cleanup_strv_free_ char **l = NULL;
        char buf[8192];
        size_t n = 0;
        int pipefd[2];
        pid_t pid;

        if (access("/usr/bin/nvidia-smi", X_OK) < 0)
                return 0;
        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return -errno;
        pid = fork();
        if (pid < 0) {
                close(pipefd[0]);
                close(pipefd[1]);
                return -errno;
        }
        if (pid == 0) {
                dup2(pipefd[1], STDOUT_FILENO);
                execl("/usr/bin/nvidia-smi", "nvidia-smi", "-L", (char *) NULL);
                _exit(127);
        }
        close(pipefd[1]);
        for (int i = 0; i < 50 && n < sizeof(buf) - 1; i++) {
                struct pollfd p = { .fd = pipefd[0], .events = POLLIN };
                if (poll(&p, 1, 100) <= 0)
                        continue;
                ssize_t k = read(pipefd[0], buf + n, sizeof(buf) - 1 - n);
                if (k <= 0)
                        break;
                n += (size_t) k;
        }
        close(pipefd[0]);
        kill(pid, SIGKILL);
        (void) waitpid(pid, NULL, 0);
        buf[n] = 0;
        for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
                int idx;
                char num[16];
                if (sscanf(line, "GPU %d:", &idx) != 1 || idx < 0)
                        continue;
                snprintf(num, sizeof(num), "%d", idx);
                if (strv_extend(&l, num) < 0)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(l);
        return 0;
}

int gpu_detect(char **override, const char *dev_dir, char ***ret) {
        char **l = NULL;
        int r;

        if (override && override[0]) {
                if (streq(override[0], "none") && !override[1]) {
                        *ret = NULL;
                        return 0;
                }
                STRV_FOREACH(g, override)
                        if (strspn(*g, "0123456789") != strlen(*g))
                                return log_error_errno(-EINVAL, "Invalid GPU index '%s' in --gpus.", *g);
                l = strv_copy(override);
                if (!l)
                        return -ENOMEM;
                *ret = l;
                return 0;
        }
        r = detect_dev(dev_dir, &l);
        if (r < 0 && r != -ENOENT)
                log_debug_errno(r, "Cannot list %s: %m", dev_dir);
        if (!l && streq(dev_dir, "/dev")) {
                r = detect_smi(&l);
                if (r < 0)
                        log_debug_errno(r, "nvidia-smi failed: %m");
        }
        *ret = l;
        return 0;
}

const char *gpu_for_slot(char **gpus, size_t slot) {
        size_t n = strv_length(gpus);
        return n == 0 ? NULL : gpus[slot % n];
}
