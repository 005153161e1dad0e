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
#include "rlimit-util.h"
#include "strv.h"
#include "time-util.h"

static bool has_prefix(const char *s, const char *prefix) {
        return strncmp(s, prefix, strlen(prefix)) == 0;
}

bool gpu_id_is_valid(const char *id) {
        size_t n;

        if (isempty(id) || strlen(id) > GPU_ID_MAX)
                return false;
        n = strlen(id);
        if (strspn(id, "0123456789") == n)
                return n <= 4; /* an ordinal, well below any host's GPU count */
        if (has_prefix(id, "GPU-"))
                return n > 4 && strspn(id + 4, "0123456789abcdefABCDEF-") == n - 4;
        /* MIG-<uuid> since driver R470; MIG-GPU-<uuid>/<gi>/<ci> before it. */
        if (has_prefix(id, "MIG-"))
                return n > 4 &&
                       strspn(id + 4, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-/") == n - 4;
        return false;
}

/* The /dev/nvidia<N> nodes, as CUDA ordinals: CUDA counts the devices it can see from 0, so in a
 * container given /dev/nvidia2 and /dev/nvidia3 they are its GPUs 0 and 1, whatever their minors.
 * Which ordinal is which node is CUDA's choice (by default fastest first; by PCI bus, which is
 * usually the minors' order, with CUDA_DEVICE_ORDER=PCI_BUS_ID): only nvidia-smi's UUIDs name a
 * GPU for sure. nvidiactl, nvidia-uvm, nvidia-modeset, nvidia-caps are not GPUs. */
int gpu_detect_dev(const char *dev_dir, char ***ret) {
        _cleanup_strv_free_ char **l = NULL;
        DIR *d = opendir(dev_dir);
        struct dirent *de;
        size_t n = 0;

        if (!d)
                return -errno;
        while ((de = readdir(d))) {
                const char *m = de->d_name;
                if (strncmp(m, "nvidia", 6) == 0 && m[6] && strspn(m + 6, "0123456789") == strlen(m + 6))
                        n++;
        }
        closedir(d);
        for (size_t i = 0; i < n; i++) {
                char num[32];
                snprintf(num, sizeof(num), "%zu", i);
                if (strv_extend(&l, num) < 0)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(l);
        return 0;
}

/* The id in "... (UUID: <id>)" at the end of a line of `nvidia-smi -L`, or NULL. */
static char *line_uuid(const char *line) {
        const char *p = strstr(line, "(UUID: "), *e;
        char *id;

        if (!p)
                return NULL;
        p += strlen("(UUID: ");
        e = strchr(p, ')');
        if (!e)
                return NULL;
        id = strndup(p, (size_t) (e - p));
        if (id && !gpu_id_is_valid(id)) {
                free(id);
                return NULL;
        }
        return id;
}

int gpu_parse_smi_list(const char *text, char ***ret) {
        _cleanup_strv_free_ char **l = NULL, **gpu_mig = NULL;
        _cleanup_free_ char *copy = strdup(text), *gpu = NULL;
        char *save = NULL;
        bool seen_gpu = false;
        int r;

        if (!copy)
                return -ENOMEM;
        /* Each GPU line is followed by the lines of its MIG devices, if any: a GPU is done at the
         * next GPU line, or at the end. */
        for (char *line = strtok_r(copy, "\n", &save);; line = strtok_r(NULL, "\n", &save)) {
                const char *p = line ? line + strspn(line, " \t") : NULL;
                unsigned idx;
                char c;

                if (!line || (has_prefix(p, "GPU ") && sscanf(p, "GPU %u%c", &idx, &c) == 2 && c == ':')) {
                        /* A GPU in MIG mode runs CUDA only in its MIG devices: they take its place. */
                        r = 0;
                        STRV_FOREACH(m, gpu_mig)
                                if (r >= 0)
                                        r = strv_extend(&l, *m);
                        if (!gpu_mig && gpu)
                                r = strv_extend(&l, gpu);
                        if (r < 0)
                                return r;
                        gpu_mig = strv_free(gpu_mig);
                        free(gpu);
                        gpu = NULL;
                        if (!line)
                                break;
                        gpu = line_uuid(p);
                        if (!gpu || !has_prefix(gpu, "GPU-"))
                                return -EBADMSG;
                        seen_gpu = true;
                } else if (has_prefix(p, "MIG ") && strstr(p, "Device")) {
                        char *mig = line_uuid(p);
                        if (!mig || !seen_gpu || !has_prefix(mig, "MIG-")) {
                                free(mig);
                                return -EBADMSG;
                        }
                        r = strv_consume(&gpu_mig, mig);
                        if (r < 0)
                                return r;
                }
                /* Anything else (a warning, a blank line) says nothing of the GPUs. */
        }
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
        (void) rlimit_nofile_give_back(0);
        execv(argv[0], argv);
        _exit(127);
}

#define SMI_LIST_TIMEOUT_USEC (5 * USEC_PER_SEC)
#define SMI_LIST_MAX          65536

/* Runs `<nvidia-smi> -L` with a 5s bound, so a hung driver cannot stall start-up, and parses what
 * it printed. Only a whole answer counts: -ETIME when it takes longer (it is killed), -EPROTO when
 * it does not exit 0, -EFBIG when it prints more than SMI_LIST_MAX bytes, -EBADMSG when a GPU
 * line has no UUID; -ENOENT when there is no such program. Its complaints go to the worker's
 * stderr: this runs once. */
static int detect_smi(const char *nvidia_smi, char ***ret) {
        _cleanup_free_ char *path = NULL, *buf = NULL;
        usec_t deadline = now_monotonic_usec() + SMI_LIST_TIMEOUT_USEC;
        size_t n = 0;
        int pipefd[2], r = 0, status = 0;
        bool eof = false, exited = false;
        pid_t pid;

        r = gpu_find_program(nvidia_smi, &path);
        if (r < 0)
                return r;
        buf = malloc(SMI_LIST_MAX + 1);
        if (!buf)
                return -ENOMEM;
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
        while (!eof && r == 0) {
                int ready = fd_wait_readable(pipefd[0], deadline);
                ssize_t k;

                if (ready == 0) {
                        r = -ETIME;
                        break;
                }
                if (ready < 0)
                        continue; /* poll() failed: tried again until the deadline */
                k = read(pipefd[0], buf + n, SMI_LIST_MAX + 1 - n);
                if (k < 0 && errno != EINTR)
                        r = -errno;
                else if (k == 0)
                        eof = true;
                else if (k > 0 && (n += (size_t) k) > SMI_LIST_MAX)
                        r = -EFBIG;
        }
        close(pipefd[0]);
        /* The output has ended: the program is about to exit. Its exit status says whether what
         * it printed is the whole answer. */
        while (r == 0 && !exited) {
                pid_t w = waitpid(pid, &status, WNOHANG);
                if (w == pid)
                        exited = true;
                else if (w < 0 && errno != EINTR)
                        r = -errno;
                else if (now_monotonic_usec() >= deadline)
                        r = -ETIME;
                else
                        (void) poll(NULL, 0, 10);
        }
        if (!exited) {
                (void) kill(pid, SIGKILL);
                (void) waitpid(pid, NULL, 0);
        }
        if (r < 0)
                return r;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                return -EPROTO;
        buf[n] = 0;
        return gpu_parse_smi_list(buf, ret);
}

int gpu_override_check(char **gpus) {
        if (strv_length(gpus) == 1 && streq(gpus[0], "none"))
                return 0;
        STRV_FOREACH(g, gpus)
                if (!gpu_id_is_valid(*g))
                        return log_error_errno(-EINVAL,
                                               "Invalid GPU '%s' in --gpus: expected GPU indices (0, 1, ...), "
                                               "GPU-<uuid> or MIG-<uuid> as nvidia-smi -L prints them, or none alone.",
                                               *g);
        return 0;
}

int gpu_detect(char **override, const char *dev_dir, const char *nvidia_smi, char ***ret) {
        _cleanup_strv_free_ char **smi = NULL, **dev = NULL;
        int r, k;

        if (override && override[0]) {
                if (streq(override[0], "none") && !override[1]) {
                        *ret = NULL;
                        return 0;
                }
                r = gpu_override_check(override);
                if (r < 0)
                        return r;
                *ret = strv_copy(override);
                return *ret ? 0 : -ENOMEM;
        }
        /* nvidia-smi's UUIDs name the GPUs whatever CUDA's order and whichever of them a
         * container was given; the device nodes give only how many GPUs there are. */
        r = detect_smi(nvidia_smi, &smi);
        if (r == -ENOMEM)
                return r;
        if (r >= 0 && smi) {
                *ret = TAKE_PTR(smi);
                return 0;
        }
        k = gpu_detect_dev(dev_dir, &dev);
        if (k == -ENOMEM)
                return k;
        if (k < 0 && k != -ENOENT)
                log_debug_errno(k, "Cannot list %s: %m", dev_dir);
        if (dev && r < 0 && r != -ENOENT)
                log_warning_errno(r,
                                  "Cannot list the GPUs with %s -L (%m): slots get the %zu GPUs of %s/nvidia<N> "
                                  "by CUDA ordinal, 0 to %zu.",
                                  nvidia_smi, strv_length(dev), dev_dir, strv_length(dev) - 1);
        else if (dev)
                log_info("%s: slots get the %zu GPUs of %s/nvidia<N> by CUDA ordinal.",
                         r == -ENOENT ? "No nvidia-smi program" : "nvidia-smi -L listed no GPU", strv_length(dev),
                         dev_dir);
        else if (r < 0 && r != -ENOENT)
                log_debug_errno(r, "%s -L failed: %m", nvidia_smi);
        *ret = TAKE_PTR(dev);
        return 0;
}

int gpu_parse_visible(const char *value, char ***ret, const char **stopped_at) {
        _cleanup_strv_free_ char **l = NULL;
        const char *p = value;

        *stopped_at = NULL;
        while (p && *p) {
                size_t lead = strspn(p, " \t"), n = strcspn(p + lead, ","), len = n;
                _cleanup_free_ char *id = NULL;

                while (len > 0 && strchr(" \t", p[lead + len - 1]))
                        len--;
                id = strndup(p + lead, len);
                if (!id)
                        return -ENOMEM;
                if (!gpu_id_is_valid(id)) {
                        *stopped_at = p;
                        break;
                }
                if (strv_consume(&l, TAKE_PTR(id)) < 0)
                        return -ENOMEM;
                p += lead + n;
                if (*p == ',')
                        p++;
        }
        *ret = TAKE_PTR(l);
        return 0;
}

const char *gpu_for_slot(char **gpus, size_t slot) {
        size_t n = strv_length(gpus);
        return n == 0 ? NULL : gpus[slot % n];
}
