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
#include "policy.h"
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

int gpu_find_program(const char *name, char **ret) {
        /* Found as a job's command is; whatever keeps it from being run means no GPU figures. */
        int r = policy_resolve_command(name, NULL, NULL, ret);
        return r == -ENOMEM ? r : r < 0 ? -ENOENT : 0;
}

_noreturn_ void gpu_exec_child(char *const *argv, int out_fd, int err_fd) {
        struct sigaction dfl = { .sa_handler = SIG_DFL };
        sigset_t none;
        int null_fd;

        /* A program expects the default dispositions and an empty mask; a blocked SIGTERM or an
         * ignored SIGPIPE would survive the execve and change how it stops. */
        for (int sig = 1; sig < NSIG; sig++)
                (void) sigaction(sig, &dfl, NULL); /* fails for SIGKILL, SIGSTOP: nothing to reset */
        sigemptyset(&none);
        if (sigprocmask(SIG_SETMASK, &none, NULL) < 0)
                _exit(127);
        null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null_fd < 0 || dup2(out_fd, STDOUT_FILENO) < 0 || dup2(null_fd, STDIN_FILENO) < 0 ||
            dup2(err_fd >= 0 ? err_fd : null_fd, STDERR_FILENO) < 0)
                _exit(127);
        (void) close_range(3, ~0U, 0);
        execv(argv[0], argv);
        _exit(127);
}

/* Reads `<nvidia-smi> -L` ("GPU 0: ...") with a 5 s bound, so a hung driver cannot stall
 * start-up. Its complaints go to the worker's stderr: this runs once. */
static int detect_smi(const char *nvidia_smi, char ***ret) {
        _cleanup_strv_free_ char **l = NULL;
        _cleanup_free_ char *path = NULL;
        char buf[8192];
        size_t n = 0;
        int pipefd[2], r;
        pid_t pid;

        r = gpu_find_program(nvidia_smi, &path);
        if (r == -ENOENT) {
                *ret = NULL;
                return 0;
        }
        if (r < 0)
                return r;
        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return -errno;
        pid = fork();
        if (pid < 0) {
                r = -errno;
                close(pipefd[0]);
                close(pipefd[1]);
                return r;
        }
        if (pid == 0)
                gpu_exec_child((char *const[]){ path, (char *) "-L", NULL }, pipefd[1], STDERR_FILENO);
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
        (void) kill(pid, SIGKILL);
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

int gpu_detect(char **override, const char *dev_dir, const char *nvidia_smi, char ***ret) {
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
        if (!l) {
                r = detect_smi(nvidia_smi, &l);
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
