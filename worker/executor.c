/* executor.c: starting jobs through entropy-keeper (keeper.c), their environment, and
 * process-group signalling. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "executor.h"
#include "fs-util.h"
#include "keeper-protocol.h"
#include "log.h"
#include "macro.h"
#include "rlimit-util.h"
#include "strv.h"

/* Variables that belong to the worker's service manager or its secrets, never to a job. */
static const char *const scrubbed_names[] = {
        "NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "WATCHDOG_USEC", "WATCHDOG_PID",
        "CREDENTIALS_DIRECTORY", "CUDA_VISIBLE_DEVICES", "MAINPID",
};

static bool env_is_scrubbed(const char *entry, const char *token) {
        const char *eq = strchr(entry, '=');
        size_t n = eq ? (size_t) (eq - entry) : strlen(entry);

        if (strncmp(entry, "ENTROPY_", 8) == 0)
                return true;
        for (size_t i = 0; i < ELEMENTSOF(scrubbed_names); i++)
                if (strlen(scrubbed_names[i]) == n && strncmp(entry, scrubbed_names[i], n) == 0)
                        return true;
        /* Wherever the token came from (a wrapper script, a mistaken Environment=), it stays here. */
        if (eq && !isempty(token) && strstr(eq + 1, token))
                return true;
        return false;
}

static int env_add(char ***l, const char *name, const char *value) {
        char *s;
        if (asprintf(&s, "%s=%s", name, value) < 0)
                return -ENOMEM;
        return strv_consume(l, s);
}

static int env_add_job(char ***l, const JobEnv *job) {
        char attempt[32], slot[32];
        int r;

        snprintf(attempt, sizeof(attempt), "%lld", (long long) job->attempt);
        snprintf(slot, sizeof(slot), "%lld", (long long) job->slot);
        r = env_add(l, "ENTROPY_JOB_ID", job->job_id);
        if (r >= 0)
                r = env_add(l, "ENTROPY_ASSIGNMENT_ID", job->assignment_id);
        if (r >= 0)
                r = env_add(l, "ENTROPY_ATTEMPT", attempt);
        if (r >= 0)
                r = env_add(l, "ENTROPY_SLOT", slot);
        if (r >= 0 && job->cuda_visible_devices)
                r = env_add(l, "CUDA_VISIBLE_DEVICES", job->cuda_visible_devices);
        return r;
}

int executor_build_env(char *const *environ_in, const char *token, const JobEnv *job, char ***ret) {
        _cleanup_strv_free_ char **l = NULL;
        int r;

        for (char *const *e = environ_in; e && *e; e++) {
                if (env_is_scrubbed(*e, token))
                        continue;
                r = strv_extend(&l, *e);
                if (r < 0)
                        return r;
        }
        if (job) {
                r = env_add_job(&l, job);
                if (r < 0)
                        return r;
        }
        if (!l) { /* an empty environment is still a valid (empty) vector */
                l = calloc(1, sizeof(char *));
                if (!l)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(l);
        return 0;
}

int executor_build_argv(const char *argv0, char *const *args, char ***ret) {
        _cleanup_strv_free_ char **l = NULL;
        int r = strv_extend(&l, argv0);
        if (r < 0)
                return r;
        for (char *const *a = args; a && *a; a++) {
                r = strv_extend(&l, *a);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(l);
        return 0;
}

/* A job's start (executor_start()), sent to entropy-keeper or waiting for its turn. */
struct ExecutorStart {
        ExecutorStart *next;
        KeeperRequest req;
        char *strings;
        /* Duplicates of the job's stdout, stderr and cgroup.procs: the caller's may be closed
         * before this start's turn comes. */
        int fds[KEEPER_SPAWN_FDS_MAX];
        size_t n_fds;
        usec_t timeout;
        usec_t deadline; /* once sent, with a timeout */
        bool sent;
        unsigned restarts;
        uint32_t spoken;      /* the protocol it was last sent in */
        ExecutorStarted done; /* NULL once cancelled */
        void *userdata;
};

static ExecutorStart *start_free(ExecutorStart *st) {
        if (!st)
                return NULL;
        free(st->strings);
        for (size_t i = 0; i < st->n_fds; i++)
                if (st->fds[i] >= 0)
                        close(st->fds[i]);
        free(st);
        return NULL;
}

/* The running entropy-keeper (keeper.c), and the groups of the jobs it started or was given,
 * so that another one can be given them when it has to be started again. */
struct Executor {
        char *keeper_path;
        /* The program as it was when the worker started: a package upgrade replaces the file, and
         * an entropy-keeper started again must still speak this worker's protocol. */
        int keeper_fd;
        char **keeper_env;
        pid_t keeper_pid;
        int keeper_status; /* wait status of the last one stopped; -1: none or unknown */
        /* The version we speak to it (keeper-protocol.h): lowered once when it is older than we
         * are, and kept, since every one started again is the same program. */
        uint32_t protocol;
        int sock; /* our end of the socket pair */
        sd_event_source *watch;
        /* Starts, oldest first: entropy-keeper starts one job at a time and answers in order, so
         * only the first has been sent; the timer is its start_timeout. */
        ExecutorStart *starts, *starts_last;
        sd_event_source *start_timer;
        KeeperGroups groups;
        ExecutorOtherChild is_other_child;
        void *other_child_userdata;
};

static const char *const spawn_steps[_KEEPER_STEP_MAX] = {
        [KEEPER_STEP_SETPGID] = "setpgid", [KEEPER_STEP_PRCTL] = "prctl",    [KEEPER_STEP_STDIO] = "stdio",
        [KEEPER_STEP_CHDIR] = "chdir",     [KEEPER_STEP_EXECVE] = "execve",  [KEEPER_STEP_SIGMASK] = "sigmask",
        [KEEPER_STEP_FORK] = "fork",       [KEEPER_STEP_REQUEST] = "keeper", [KEEPER_STEP_RLIMIT] = "setrlimit",
        [KEEPER_STEP_CGROUP] = "cgroup",
};

int executor_find_keeper(char **ret) {
        _cleanup_free_ char *self = realpath("/proc/self/exe", NULL), *sibling = NULL;
        char *slash;

        /* Next to the worker: a build tree, or a worker and keeper installed side by side. */
        if (self && (slash = strrchr(self, '/'))) {
                *slash = 0;
                if (asprintf(&sibling, "%s/entropy-keeper", self) < 0)
                        return -ENOMEM;
                if (access(sibling, X_OK) == 0) {
                        *ret = TAKE_PTR(sibling);
                        return 0;
                }
        }
        *ret = strdup(PKGLIBEXECDIR "/entropy-keeper");
        return *ret ? 0 : -ENOMEM;
}

static int send_full(int fd, const void *buf, size_t size) {
        for (size_t done = 0; done < size;) {
                ssize_t k = send(fd, (const char *) buf + done, size - done, MSG_NOSIGNAL);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                done += (size_t) k;
        }
        return 0;
}

/* Header (with the descriptors, if any) in the version we speak to it, and strings. -EPIPE:
 * entropy-keeper is gone. */
static int keeper_send(Executor *e, const KeeperRequest *request, const char *strings, const int *fds, size_t n_fds) {
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(sizeof(int) * KEEPER_SPAWN_FDS_MAX)];
        } control = { 0 };
        KeeperRequest req = *request;
        size_t header = keeper_request_size(e->protocol);
        struct iovec iov = { &req, header };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        ssize_t k;
        int r;

        if (e->sock < 0)
                return -EPIPE;
        req.version = e->protocol;
        if (n_fds > 0) {
                struct cmsghdr *c;
                mh.msg_control = &control;
                mh.msg_controllen = CMSG_SPACE(sizeof(int) * n_fds);
                c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
                memcpy(CMSG_DATA(c), fds, sizeof(int) * n_fds);
        }
        do
                k = sendmsg(e->sock, &mh, MSG_NOSIGNAL);
        while (k < 0 && errno == EINTR);
        if (k < 0)
                return errno == EPIPE || errno == ECONNRESET ? -EPIPE : -errno;
        r = send_full(e->sock, (const char *) &req + k, header - (size_t) k);
        if (r >= 0 && strings)
                r = send_full(e->sock, strings, req.size);
        return r == -ECONNRESET ? -EPIPE : r;
}

static int keeper_send_group(Executor *e, KeeperRequestType type, pid_t pgid) {
        KeeperRequest req = { .type = type, .pid = pgid };
        return keeper_send(e, &req, NULL, NULL, 0);
}

/* Its end of the socket closes: ends it, as a worker's exit does. */
static void keeper_stop(Executor *e) {
        int status;

        e->watch = sd_event_source_disable_unref(e->watch);
        if (e->sock >= 0)
                close(TAKE_FD(e->sock));
        /* Not WNOHANG: it may still be killing the groups it was left with. It exits at once on
         * EOF, and only ever blocks reading from us. */
        e->keeper_status = -1;
        if (e->keeper_pid > 0 && waitpid(e->keeper_pid, &status, 0) == e->keeper_pid)
                e->keeper_status = status;
        e->keeper_pid = 0;
}

/* An entropy-keeper older than this worker exits with KEEPER_EXIT_VERSION at a request of a
 * version it does not speak: the ones started from now on (the same program) are spoken to in the
 * version before. Below version 4 its jobs run in the worker's cgroup, not their own; below 3 they
 * get no RLIMIT_FSIZE from us, and only the size check after the job (artifacts.c) keeps their
 * output within max-output-size. */
static void keeper_step_down(Executor *e) {
        if (e->protocol <= KEEPER_PROTOCOL_VERSION_MIN || e->keeper_status < 0 || !WIFEXITED(e->keeper_status) ||
            WEXITSTATUS(e->keeper_status) != KEEPER_EXIT_VERSION)
                return;
        e->protocol--;
        log_warning("%s does not speak version %u of the keeper protocol (a build older than this worker?); "
                    "speaking version %u to it: %s.",
                    e->keeper_path, e->protocol + 1, e->protocol,
                    e->protocol >= 3 ? "jobs run without cgroups of their own"
                                     : "jobs run without cgroups of their own, and a job's output is limited to "
                                       "max-output-size only after the job");
}

static int keeper_start(Executor *e, sd_event *event);
static void kill_unreported_jobs(const Executor *e, sd_event *event);

static sd_event *executor_event(const Executor *e) {
        return e->watch ? sd_event_source_get_event(e->watch) : NULL;
}

static void keeper_restart(Executor *e) {
        /* Kept across keeper_stop(), which drops the watch that holds it. */
        _cleanup_(sd_event_unrefp) sd_event *event = sd_event_ref(executor_event(e));
        int r;

        log_warning("entropy-keeper (pid %d) is gone; starting it again.", (int) e->keeper_pid);
        keeper_stop(e);
        keeper_step_down(e);
        kill_unreported_jobs(e, event);
        r = keeper_start(e, event);
        if (r < 0)
                log_error_errno(r, "Cannot start %s again: %m", e->keeper_path);
}

static void start_on_answer(Executor *e);

/* It only speaks to answer a start: anything to read while none is sent means it is gone. */
static int on_keeper_readable(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Executor *e = userdata;

        if (e->starts && e->starts->sent)
                start_on_answer(e);
        else
                keeper_restart(e);
        return 0;
}

static int keeper_watch(Executor *e, sd_event *event) {
        if (!event)
                return 0;
        return sd_event_add_io(event, &e->watch, e->sock, EPOLLIN | EPOLLRDHUP, on_keeper_readable, e);
}

static int keeper_start(Executor *e, sd_event *event) {
        _cleanup_close_ int theirs = -EBADF;
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        sigset_t none, all;
        char *argv[] = { (char *) "entropy-keeper", NULL };
        char exe[64];
        int pair[2], r;

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0)
                return -errno;
        e->sock = pair[0];
        theirs = pair[1];
        sigemptyset(&none);
        sigfillset(&all);
        r = posix_spawn_file_actions_init(&fa);
        if (r != 0)
                return -r;
        r = posix_spawn_file_actions_adddup2(&fa, theirs, KEEPER_SOCKET_FD);
        if (r == 0)
                r = posix_spawnattr_init(&attr);
        if (r == 0) {
                /* A clean slate: the worker blocks SIGCHLD, SIGTERM and the like for sd-event. */
                r = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
                if (r == 0)
                        r = posix_spawnattr_setsigmask(&attr, &none);
                if (r == 0)
                        r = posix_spawnattr_setsigdefault(&attr, &all);
                snprintf(exe, sizeof(exe), "/proc/self/fd/%d", e->keeper_fd);
                if (r == 0)
                        r = posix_spawn(&e->keeper_pid, exe, &fa, &attr, argv, e->keeper_env);
                posix_spawnattr_destroy(&attr);
        }
        posix_spawn_file_actions_destroy(&fa);
        if (r != 0) {
                e->keeper_pid = 0;
                close(TAKE_FD(e->sock));
                return -r;
        }
        /* Its jobs inherit its limits: the soft limit on open files the worker was started with,
         * not the one it raised for itself. Before the first request, so before any job. */
        r = rlimit_nofile_give_back(e->keeper_pid);
        if (r < 0)
                log_warning_errno(r, "Cannot give entropy-keeper the worker's first limit on open files: %m");
        /* Jobs an earlier entropy-keeper started: this one guards them now. */
        for (size_t i = 0; r >= 0 && i < e->groups.n; i++)
                r = keeper_send_group(e, KEEPER_ADOPT, e->groups.pgids[i]);
        if (r >= 0)
                r = keeper_watch(e, event);
        return r;
}

int executor_new(const char *keeper_path, char *const *keeper_env, Executor **ret) {
        _cleanup_(executor_freep) Executor *e = calloc(1, sizeof(Executor));
        int r;

        if (!e)
                return -ENOMEM;
        e->sock = e->keeper_fd = -EBADF;
        e->keeper_status = -1;
        e->protocol = KEEPER_PROTOCOL_VERSION;
        e->keeper_path = strdup(keeper_path);
        e->keeper_env = strv_copy((char **) keeper_env);
        if (!e->keeper_path || (keeper_env && !e->keeper_env))
                return -ENOMEM;
        e->keeper_fd = open(keeper_path, O_PATH | O_CLOEXEC);
        if (e->keeper_fd < 0)
                return -errno;
        r = keeper_start(e, NULL);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(e);
        return 0;
}

int executor_attach_event(Executor *e, sd_event *event) {
        if (e->watch || e->sock < 0)
                return -EBUSY;
        return keeper_watch(e, event);
}

Executor *executor_free(Executor *e) {
        if (!e)
                return NULL;
        while (e->starts) {
                ExecutorStart *st = e->starts;
                e->starts = st->next;
                start_free(st);
        }
        e->start_timer = sd_event_source_disable_unref(e->start_timer);
        keeper_stop(e);
        if (e->keeper_fd >= 0)
                close(e->keeper_fd);
        free(e->keeper_path);
        strv_free(e->keeper_env);
        free(e->groups.pgids);
        free(e);
        return NULL;
}

pid_t executor_keeper_pid(const Executor *e) {
        return e->keeper_pid;
}

uint32_t executor_keeper_protocol(const Executor *e) {
        return e->protocol;
}

void executor_forget(Executor *e, pid_t pgid) {
        /* If entropy-keeper is gone, the next one is never told about this group. */
        if (keeper_groups_remove(&e->groups, pgid))
                (void) keeper_send_group(e, KEEPER_FORGET, pgid);
}

/* One byte past the limit: a job that writes more than max_output_size bytes leaves a file larger
 * than it, which artifacts_finalize() then tells apart from output that ends exactly at it. */
static uint64_t rlimit_fsize(uint64_t max_output_size) {
        return max_output_size == 0 || max_output_size == UINT64_MAX ? max_output_size : max_output_size + 1;
}

/* path, workdir, argv..., envp..., each NUL-terminated. */
static int request_strings(const ExecSpec *spec, KeeperRequest *req, char **ret) {
        size_t size = strlen(spec->path) + 1 + strlen(strempty(spec->workdir)) + 1;
        char *buf, *p;

        for (char **a = spec->argv; a && *a; a++)
                size += strlen(*a) + 1;
        for (char **a = spec->envp; a && *a; a++)
                size += strlen(*a) + 1;
        if (size > KEEPER_REQUEST_MAX)
                return -E2BIG;
        p = buf = malloc(size);
        if (!buf)
                return -ENOMEM;
        p = stpcpy(p, spec->path) + 1;
        p = stpcpy(p, strempty(spec->workdir)) + 1;
        for (char **a = spec->argv; a && *a; a++)
                p = stpcpy(p, *a) + 1;
        for (char **a = spec->envp; a && *a; a++)
                p = stpcpy(p, *a) + 1;
        *req = (KeeperRequest){ .type = KEEPER_SPAWN,
                                .size = (uint32_t) size,
                                .n_argv = (uint32_t) strv_length(spec->argv),
                                .n_env = (uint32_t) strv_length(spec->envp),
                                .pid = (int32_t) getpid(),
                                .rlimit_fsize = rlimit_fsize(spec->max_output_size) };
        *ret = buf;
        return 0;
}

static int on_unreported_exit(sd_event_source *s, const siginfo_t *si, void *userdata);

/* A job started for a start that was cancelled meanwhile: it never runs on. */
static void start_kill_unwanted(Executor *e, pid_t pid) {
        sd_event *event = executor_event(e);

        (void) executor_signal_group(pid, SIGKILL);
        /* Before the pid can be reused: neither we (nor an entropy-keeper started again) nor
         * this one may keep its group. */
        (void) keeper_groups_remove(&e->groups, pid);
        (void) keeper_send_group(e, KEEPER_FORGET, pid);
        if (!event || sd_event_add_child(event, NULL, pid, WEXITED, on_unreported_exit, NULL) < 0)
                (void) waitpid(pid, NULL, 0);
}

static void start_send(Executor *e);

/* The first start is over: its caller hears how, and the next one is sent. */
static void start_finish(Executor *e, int r, pid_t pid, const char *step) {
        ExecutorStart *st = e->starts;

        e->starts = st->next;
        if (!e->starts)
                e->starts_last = NULL;
        if (e->start_timer)
                (void) sd_event_source_set_enabled(e->start_timer, SD_EVENT_OFF);
        if (st->done)
                st->done(st->userdata, r, pid, step);
        else if (r >= 0)
                start_kill_unwanted(e, pid);
        start_free(st);
        /* Unless done() queued a start and it went out already. */
        if (e->starts && !e->starts->sent)
                start_send(e);
}

static int on_start_timeout(sd_event_source *s, uint64_t usec, void *userdata);

static int start_arm_timer(Executor *e, usec_t deadline) {
        sd_event *event = executor_event(e);
        int r;

        if (!event)
                return 0;
        if (!e->start_timer) {
                r = sd_event_add_time(event, &e->start_timer, CLOCK_MONOTONIC, deadline, 0, on_start_timeout, e);
                if (r >= 0)
                        (void) sd_event_source_set_description(e->start_timer, "keeper-start-timeout");
                return r;
        }
        r = sd_event_source_set_time(e->start_timer, deadline);
        if (r >= 0)
                r = sd_event_source_set_enabled(e->start_timer, SD_EVENT_ONESHOT);
        return r;
}

/* Sends the first start; when entropy-keeper is gone it is started again and the start sent
 * again, once, and again for as long as it steps down a version. */
static void start_send(Executor *e) {
        ExecutorStart *st = e->starts;
        int r;

        for (;;) {
                /* An older entropy-keeper (keeper_step_down) runs the job in the worker's cgroup. */
                bool in_cgroup = st->n_fds > KEEPER_SPAWN_FDS && e->protocol >= 4;
                st->spoken = e->protocol;
                r = keeper_send(e, &st->req, st->strings, st->fds, in_cgroup ? KEEPER_SPAWN_FDS_MAX : KEEPER_SPAWN_FDS);
                if (r != -EPIPE)
                        break;
                keeper_restart(e);
                if (st->restarts++ > 0 && e->protocol == st->spoken)
                        break;
        }
        if (r >= 0 && st->timeout > 0) {
                st->deadline = now_monotonic_usec() + st->timeout;
                r = start_arm_timer(e, st->deadline);
        }
        if (r < 0) {
                start_finish(e, r, 0, "keeper");
                return;
        }
        st->sent = true;
}

/* entropy-keeper's answer to the first start (or its end) is there to read. */
static void start_on_answer(Executor *e) {
        ExecutorStart *st = e->starts;
        KeeperReply reply;
        int r = keeper_read_exact(e->sock, &reply, sizeof(reply));

        if (r == -EPIPE || r == -ECONNRESET) {
                /* Gone before it answered: sent again, the start meets its closed socket, and
                 * start_send() restarts it (a job it may have started is killed then). */
                st->sent = false;
                start_send(e);
                return;
        }
        if (r < 0) {
                start_finish(e, r, 0, "keeper");
                return;
        }
        if (reply.error != 0) {
                if (reply.pid > 0) /* the job's process, which gave up before its exec */
                        (void) waitpid(reply.pid, NULL, 0);
                start_finish(e, reply.error > 0 ? -reply.error : -EIO, 0,
                             reply.step >= 0 && reply.step < _KEEPER_STEP_MAX ? spawn_steps[reply.step] : "spawn");
                return;
        }
        r = keeper_groups_add(&e->groups, reply.pid);
        if (r < 0) {
                start_kill_unwanted(e, reply.pid);
                start_finish(e, r, 0, "keeper");
                return;
        }
        start_finish(e, 0, reply.pid, NULL);
}

/* entropy-keeper has not answered in time: it waits for the job's process, which is stuck before
 * its exec (a working directory or a program on a mount that does not answer). Both are killed
 * (the job's process as one never reported) and entropy-keeper is started again; the jobs already
 * running go on, handed to the new one. */
static void start_abandon(Executor *e) {
        char span[64];

        log_error("entropy-keeper (pid %d) did not start a job within %s (a working directory or program on a "
                  "file system that does not answer?): stopping it and the job's process.",
                  (int) e->keeper_pid, format_timespan(span, sizeof(span), e->starts->timeout));
        if (e->keeper_pid > 0)
                (void) kill(e->keeper_pid, SIGKILL);
        keeper_restart(e);
        start_finish(e, -ETIMEDOUT, 0, "start");
}

static int on_start_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Executor *e = userdata;
        if (e->starts && e->starts->sent)
                start_abandon(e);
        return 0;
}

int executor_start(Executor *e, const ExecSpec *spec, ExecutorStarted done, void *userdata, ExecutorStart **ret) {
        ExecutorStart *st = calloc(1, sizeof(*st));
        int fds[KEEPER_SPAWN_FDS_MAX] = {spec->stdout_fd, spec->stderr_fd, spec->cgroup_procs_fd};
        int r;

        if (!st)
                return -ENOMEM;
        r = request_strings(spec, &st->req, &st->strings);
        for (size_t i = 0; r >= 0 && i < (spec->cgroup_procs_fd > 0 ? KEEPER_SPAWN_FDS_MAX : KEEPER_SPAWN_FDS); i++) {
                st->fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
                if (st->fds[i] < 0)
                        r = -errno;
                else
                        st->n_fds++;
        }
        if (r < 0) {
                start_free(st);
                return r;
        }
        st->timeout = spec->start_timeout;
        st->done = done;
        st->userdata = userdata;
        if (e->starts_last)
                e->starts_last->next = st;
        else
                e->starts = st;
        e->starts_last = st;
        if (ret)
                *ret = st;
        if (e->starts == st)
                start_send(e); /* may call done() at once */
        return 0;
}

void executor_start_cancel(Executor *e, ExecutorStart *st) {
        if (!st)
                return;
        if (st->sent) {
                st->done = NULL; /* what it starts is killed when entropy-keeper answers */
                return;
        }
        for (ExecutorStart **p = &e->starts, *prev = NULL; *p; prev = *p, p = &(*p)->next)
                if (*p == st) {
                        *p = st->next;
                        if (e->starts_last == st)
                                e->starts_last = prev;
                        start_free(st);
                        return;
                }
}

typedef struct SpawnWait {
        bool over;
        int r;
        pid_t pid;
        const char *step;
} SpawnWait;

static void on_spawned(void *userdata, int r, pid_t pid, const char *step) {
        *(SpawnWait *) userdata = (SpawnWait){true, r, pid, step};
}

int executor_spawn(Executor *e, const ExecSpec *spec, pid_t *ret_pid, const char **ret_step) {
        SpawnWait w = {};
        int r;

        if (e->starts)
                return -EBUSY; /* its answer would come after theirs */
        r = executor_start(e, spec, on_spawned, &w, NULL);
        if (r < 0)
                return r;
        while (!w.over) {
                r = fd_wait_readable(e->sock, e->starts->deadline > 0 ? e->starts->deadline : USEC_INFINITY);
                if (r < 0) {
                        e->starts->done = NULL;
                        return r;
                }
                if (r > 0)
                        start_on_answer(e);
                else
                        start_abandon(e);
        }
        if (ret_step)
                *ret_step = w.r < 0 ? w.step : NULL;
        if (w.r >= 0)
                *ret_pid = w.pid;
        return w.r;
}

int executor_signal_group(pid_t pgid, int sig) {
        if (pgid <= 1)
                return -EINVAL;
        if (kill(-pgid, sig) < 0)
                return errno == ESRCH ? 0 : -errno;
        return 0;
}

/* /proc/PID/stat into buf; *ret_fields points after the command name, at the state (field 3).
 * The command name may contain spaces and parentheses: the fields start after the last ')'. */
static int proc_stat_read(pid_t pid, char *buf, size_t size, const char **ret_fields) {
        char path[64];
        const char *p;
        FILE *f;
        size_t n;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        f = fopen(path, "re");
        if (!f)
                return -errno;
        n = fread(buf, 1, size - 1, f);
        fclose(f);
        buf[n] = 0;
        p = strrchr(buf, ')');
        if (!p || !p[1])
                return -EBADMSG;
        *ret_fields = p + 2;
        return 0;
}

int proc_start_time(pid_t pid, uint64_t *ret) {
        unsigned long long start;
        const char *fields;
        char buf[1024];
        int r;

        r = proc_stat_read(pid, buf, sizeof(buf), &fields);
        if (r < 0)
                return r;
        /* state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime
         * cutime cstime priority nice num_threads itrealvalue starttime(22) */
        if (sscanf(fields, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
                   &start) != 1)
                return -EBADMSG;
        *ret = start;
        return 0;
}

void executor_set_other_child(Executor *e, ExecutorOtherChild is_other, void *userdata) {
        e->is_other_child = is_other;
        e->other_child_userdata = userdata;
}

/* A job of ours that we were never told about: our child (entropy-keeper starts jobs with
 * CLONE_PARENT) that is not entropy-keeper, not a job we know, not a child the worker says is
 * not a job (the GPU probe, which leads a group of its own too), and either leads a group of its
 * own (a job after its setpgid) or is still entropy-keeper's image (before its exec). */
static bool is_unreported_job(const Executor *e, pid_t pid) {
        char buf[1024], comm[64] = "";
        const char *fields;
        int ppid, pgrp;

        if (pid == e->keeper_pid || keeper_groups_contain(&e->groups, pid) ||
            (e->is_other_child && e->is_other_child(pid, e->other_child_userdata)))
                return false;
        if (proc_stat_read(pid, buf, sizeof(buf), &fields) < 0 || sscanf(fields, "%*c %d %d", &ppid, &pgrp) != 2 ||
            ppid != getpid())
                return false;
        if (pgrp == pid)
                return true;
        sscanf(buf, "%*d (%63[^)])", comm);
        return streq(comm, "entropy-keeper");
}

static int on_unreported_exit(sd_event_source *s, const siginfo_t *si, void *userdata) {
        return 0; /* sd-event reaps it */
}

/* entropy-keeper died after it started a job but before it told us the pid: that job would run
 * unwatched beside the one started again. Kill it (and its group) and reap it: from the loop, when
 * there is one, since a process stuck in a file system that does not answer dies only once the
 * file system lets it. */
static void kill_unreported_jobs(const Executor *e, sd_event *event) {
        DIR *d = opendir("/proc");
        struct dirent *de;

        if (!d) {
                log_warning_errno(-errno, "Cannot look for jobs entropy-keeper started unreported: %m");
                return;
        }
        while ((de = readdir(d))) {
                pid_t pid = (pid_t) atoi(de->d_name);
                if (pid <= 0 || !is_unreported_job(e, pid))
                        continue;
                log_warning("Killing process %d, started by entropy-keeper before it died but never reported.",
                            (int) pid);
                (void) kill(-pid, SIGKILL);
                (void) kill(pid, SIGKILL);
                if (!event || sd_event_add_child(event, NULL, pid, WEXITED, on_unreported_exit, NULL) < 0)
                        (void) waitpid(pid, NULL, 0);
        }
        closedir(d);
}

static bool group_has_members(pid_t pgid) {
        DIR *d = opendir("/proc");
        struct dirent *de;
        bool found = false;

        if (!d)
                return false;
        while (!found && (de = readdir(d))) {
                pid_t pid = (pid_t) atoi(de->d_name);
                if (pid > 0 && getpgid(pid) == pgid)
                        found = true;
        }
        closedir(d);
        return found;
}

int executor_kill_orphan_group(pid_t pgid, uint64_t proc_start) {
        uint64_t now_start;

        if (pgid <= 1)
                return 0;
        if (proc_start_time(pgid, &now_start) == 0 && now_start != proc_start)
                return 0; /* the pid was reused by an unrelated process: not ours */
        /* Leader gone or still ours: while any member of the group lives, the kernel does not
         * hand its number out again, so the group is still the job's. */
        if (!group_has_members(pgid))
                return 0;
        return executor_signal_group(pgid, SIGKILL) < 0 ? 0 : 1;
}
