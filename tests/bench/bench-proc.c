/* bench-proc.c: spawning, readiness, stopping and memory accounting of the daemons under test. */
#include <assert.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "bench-proc.h"
#include "bench-util.h"
#include "log.h"
#include "macro.h"

extern char **environ;

static int notify_bind(const char *path, int *ret_fd) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        _cleanup_close_ int fd = -EBADF;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        (void) unlink(path);
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return negative_errno();
        if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return negative_errno();
        *ret_fd = TAKE_FD(fd);
        return 0;
}

/* In the child between fork() and exec(): only async-signal-safe calls, then _exit on failure. */
static _noreturn_ void child_exec(char *const *argv, int log_fd, const char *notify_path, char *const *extra_env) {
        int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

        if (null_fd < 0 || dup2(null_fd, STDIN_FILENO) < 0 || dup2(log_fd, STDOUT_FILENO) < 0 ||
            dup2(log_fd, STDERR_FILENO) < 0)
                _exit(127);
        /* Whatever ends the bench (even SIGKILL) ends the daemons it started. */
        if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0)
                _exit(127);
        if (notify_path)
                setenv("NOTIFY_SOCKET", notify_path, 1);
        else
                unsetenv("NOTIFY_SOCKET");
        /* Inherited socket activation would confuse the daemon. */
        unsetenv("LISTEN_FDS");
        unsetenv("LISTEN_PID");
        for (char *const *e = extra_env; e && *e; e++)
                putenv((char *) *e);
        execv(argv[0], argv);
        _exit(127);
}

int child_spawn(Child *c, const char *name, char *const *argv, const char *log_path, const char *notify_path,
                char *const *extra_env) {
        _cleanup_close_ int log_fd = -EBADF;
        int r;

        *c = (Child){.notify_fd = -EBADF};
        c->name = strdup(name);
        c->log_path = strdup(log_path);
        if (!c->name || !c->log_path)
                return -ENOMEM;
        if (notify_path) {
                c->notify_path = strdup(notify_path);
                if (!c->notify_path)
                        return -ENOMEM;
                r = notify_bind(notify_path, &c->notify_fd);
                if (r < 0)
                        return log_error_errno(r, "Failed to bind notify socket %s: %m", notify_path);
        }
        log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (log_fd < 0)
                return log_error_errno(negative_errno(), "Failed to open %s: %m", log_path);
        if (access(argv[0], X_OK) < 0)
                return log_error_errno(negative_errno(), "Cannot execute %s: %m", argv[0]);
        fflush(NULL);
        c->spawned_at = now_monotonic_usec();
        c->pid = fork();
        if (c->pid < 0) {
                c->pid = 0;
                return log_error_errno(negative_errno(), "Failed to fork for %s: %m", name);
        }
        if (c->pid == 0)
                child_exec(argv, log_fd, notify_path, extra_env);
        return 0;
}

bool child_running(Child *c) {
        int status;
        pid_t p;

        if (c->pid <= 0)
                return false;
        p = waitpid(c->pid, &status, WNOHANG);
        if (p == 0)
                return true;
        if (p == c->pid) {
                c->exit_status = status;
                c->pid = 0;
        }
        return false;
}

static bool message_has_line(const char *msg, const char *line) {
        size_t n = strlen(line);

        for (const char *p = msg; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
                if (strncmp(p, line, n) == 0 && (p[n] == '\n' || p[n] == 0))
                        return true;
        return false;
}

/* Nobody reads the socket after READY=1 (no loop of ours drains it while the load runs), and a
 * daemon's blocking sd_notify() stalls its whole event loop once the datagram queue is full (its
 * STATUS= updates fill it within seconds). So the socket goes away: later notifications fail at
 * once with ENOENT, which sd_notify() callers ignore, as they do without systemd. */
static void child_notify_close(Child *c) {
        if (c->notify_fd >= 0)
                close(c->notify_fd);
        c->notify_fd = -EBADF;
        if (c->notify_path)
                (void) unlink(c->notify_path);
}

int child_wait_ready(Child *c, usec_t timeout, usec_t *ret_ready_at) {
        usec_t deadline = now_monotonic_usec() + timeout;

        assert(c->notify_fd >= 0);
        for (;;) {
                struct pollfd pfd = {.fd = c->notify_fd, .events = POLLIN};
                char msg[4096];
                ssize_t k;

                if (bench_interrupted)
                        return -EINTR;
                if (!child_running(c))
                        return log_error_errno(-ECHILD, "%s exited before it was ready (status 0x%x).", c->name,
                                               (unsigned) c->exit_status);
                if (now_monotonic_usec() >= deadline)
                        return log_error_errno(-ETIMEDOUT, "%s was not ready within the time allowed.", c->name);
                if (poll(&pfd, 1, 20) < 0 && errno != EINTR)
                        return negative_errno();
                k = recv(c->notify_fd, msg, sizeof(msg) - 1, 0);
                if (k < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                continue;
                        return negative_errno();
                }
                msg[k] = 0;
                if (message_has_line(msg, "READY=1")) {
                        if (ret_ready_at)
                                *ret_ready_at = now_monotonic_usec();
                        child_notify_close(c);
                        return 0;
                }
        }
}

int child_wait_port(Child *c, uint16_t port, usec_t timeout, usec_t *ret_ready_at) {
        usec_t deadline = now_monotonic_usec() + timeout;

        for (;;) {
                int fd, r;

                if (bench_interrupted)
                        return -EINTR;
                if (!child_running(c))
                        return log_error_errno(-ECHILD, "%s exited before it was ready.", c->name);
                r = connect_loopback(port, false, &fd);
                if (r >= 0) {
                        close(fd);
                        if (ret_ready_at)
                                *ret_ready_at = now_monotonic_usec();
                        return 0;
                }
                if (now_monotonic_usec() >= deadline)
                        return log_error_errno(-ETIMEDOUT, "%s did not accept connections on port %u in time.", c->name,
                                               (unsigned) port);
                usleep(5000);
        }
}

int child_stop(Child *c, usec_t timeout) {
        usec_t deadline = now_monotonic_usec() + timeout;

        if (!child_running(c))
                return 0;
        if (kill(c->pid, SIGTERM) < 0)
                return negative_errno();
        while (child_running(c)) {
                if (now_monotonic_usec() >= deadline) {
                        log_warning("%s did not exit within its stop timeout; killing it.", c->name);
                        (void) kill(c->pid, SIGKILL);
                        (void) waitpid(c->pid, &c->exit_status, 0);
                        c->pid = 0;
                        return -ETIMEDOUT;
                }
                usleep(2000);
        }
        return 0;
}

void child_done(Child *c) {
        if (c->pid > 0) {
                (void) kill(c->pid, SIGKILL);
                (void) waitpid(c->pid, &c->exit_status, 0);
                c->pid = 0;
        }
        if (c->notify_fd >= 0)
                close(c->notify_fd);
        c->notify_fd = -EBADF;
        if (c->notify_path)
                (void) unlink(c->notify_path);
        free(c->notify_path);
        free(c->log_path);
        free(c->name);
        c->notify_path = c->log_path = c->name = NULL;
}

void child_log_tail(const Child *c, unsigned lines) {
        _cleanup_fclose_ FILE *f = NULL;
        char **ring;
        char buf[1024];
        unsigned n = 0;

        if (!c->log_path || !(f = fopen(c->log_path, "re")))
                return;
        ring = calloc(lines, sizeof(char *));
        if (!ring)
                return;
        while (fgets(buf, sizeof(buf), f)) {
                free(ring[n % lines]);
                ring[n % lines] = strdup(buf);
                n++;
        }
        fprintf(stderr, "--- last lines of %s (%s) ---\n", c->name, c->log_path);
        for (unsigned i = n > lines ? n - lines : 0; i < n; i++)
                fprintf(stderr, "  %s", strempty(ring[i % lines]));
        for (unsigned i = 0; i < lines; i++)
                free(ring[i]);
        free(ring);
}

int proc_cpu_usec(pid_t pid, bool with_children, usec_t *ret) {
        _cleanup_fclose_ FILE *f = NULL;
        char path[64], buf[1024];
        unsigned long long utime, stime, cutime, cstime;
        long ticks = sysconf(_SC_CLK_TCK);

        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        f = fopen(path, "re");
        if (!f)
                return negative_errno();
        if (!fgets(buf, sizeof(buf), f))
                return -EIO;
        /* The command name (field 2) may hold spaces and parentheses: count from its last ')'. */
        const char *p = strrchr(buf, ')');
        if (!p || ticks <= 0 ||
            sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %llu %llu", &utime, &stime,
                   &cutime, &cstime) != 4)
                return -EBADMSG;
        if (with_children)
                utime += cutime + cstime;
        *ret = (usec_t) ((utime + stime) * USEC_PER_SEC / (unsigned long long) ticks);
        return 0;
}

int proc_memory_kib(pid_t pid, uint64_t *ret_hwm, uint64_t *ret_rss) {
        _cleanup_fclose_ FILE *f = NULL;
        char path[64], line[256];
        uint64_t hwm = 0, rss = 0;

        snprintf(path, sizeof(path), "/proc/%d/status", (int) pid);
        f = fopen(path, "re");
        if (!f)
                return negative_errno();
        while (fgets(line, sizeof(line), f)) {
                unsigned long long v;
                if (sscanf(line, "VmHWM: %llu kB", &v) == 1)
                        hwm = v;
                else if (sscanf(line, "VmRSS: %llu kB", &v) == 1)
                        rss = v;
        }
        if (hwm == 0)
                return -ENODATA;
        if (ret_hwm)
                *ret_hwm = hwm;
        if (ret_rss)
                *ret_rss = rss;
        return 0;
}

int private_bus_start(Child *c, const char *dbus_daemon, const char *dir, char **ret_address) {
        _cleanup_free_ char *sock = NULL, *address = NULL, *arg = NULL, *log_path = NULL;
        usec_t deadline = now_monotonic_usec() + 10 * USEC_PER_SEC;
        int r;

        if (asprintf(&sock, "%s/bus.sock", dir) < 0 || asprintf(&address, "unix:path=%s", sock) < 0 ||
            asprintf(&arg, "--address=%s", address) < 0 || asprintf(&log_path, "%s/dbus-daemon.log", dir) < 0)
                return -ENOMEM;
        char *argv[] = {(char *) dbus_daemon, (char *) "--session", (char *) "--nofork", arg, NULL};
        r = child_spawn(c, "dbus-daemon", argv, log_path, NULL, NULL);
        if (r < 0)
                return r;
        while (access(sock, F_OK) < 0) {
                if (bench_interrupted)
                        return -EINTR;
                if (!child_running(c) || now_monotonic_usec() >= deadline) {
                        child_log_tail(c, 10);
                        return log_error_errno(-ETIMEDOUT, "The private dbus-daemon did not come up.");
                }
                usleep(2000);
        }
        *ret_address = TAKE_PTR(address);
        return 0;
}
