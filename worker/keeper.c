/* keeper.c: entropy-keeper, the small program that starts an entropy-worker's jobs and keeps
 * their process groups from outliving the worker.
 *
 * A job runs in a process group of its own. PR_SET_PDEATHSIG takes the job down when its worker
 * dies (even by SIGKILL), but it reaches only the worker's direct children, not what the job
 * started: so entropy-keeper remembers every job's group, and when the worker is gone (its end
 * of the socket closes) it SIGKILLs each of them. No grandchild of a job runs on beside the job's
 * rerun on another worker.
 *
 * Why a program of its own: a process forked from the worker is a copy of the worker, with its
 * hundreds of mappings (libcurl, GnuTLS, SQLite, libsystemd), and for a short job copying and
 * tearing those down cost more than the job. entropy-keeper links nothing but libc, and starts
 * each job vfork()-style (sharing its own small memory until the exec) with CLONE_PARENT, which
 * makes the job the worker's child: the worker waits for it and gets its exit status directly. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "keeper-protocol.h"
#include "macro.h"

typedef struct KeeperJob {
        const char *path;
        const char *workdir; /* NULL: entropy-keeper's own */
        char **argv;
        char **envp;
        char **strings; /* owns the arrays above; the strings are in the request's buffer */
        int stdout_fd, stderr_fd;
        int cgroup_fd; /* cgroup.procs of the job's cgroup; -EBADF: none */
        pid_t worker;
        uint64_t rlimit_fsize; /* 0: ours */
        /* Written by the job's process before it gives up: it shares our memory until its exec. */
        int error, step;
} KeeperJob;

/* The groups of the jobs started (or adopted) and not yet forgotten. */
static KeeperGroups groups;

__attribute__((no_sanitize("address"))) static void close_all_from(int first) {
        if (close_range((unsigned) first, ~0U, 0) == 0)
                return;
        for (long fd = first, max = sysconf(_SC_OPEN_MAX); fd < (max > 0 ? max : 65536); fd++)
                (void) close((int) fd);
}

/* In the job's process: records the failing step for entropy-keeper and exits. */
__attribute__((no_sanitize("address"))) _noreturn_ static void job_fail(KeeperJob *job, int step) {
        job->error = errno > 0 ? errno : EIO;
        job->step = step;
        _exit(127);
}

/* The largest file the job may write (its stdout and stderr are files): a write, truncate() or
 * fallocate() past it fails with EFBIG and raises SIGXFSZ, which kills the job (its signals are
 * at their default action by now). Both limits, so that the job cannot raise it again; never
 * above what we have ourselves (the worker's LimitFSIZE=, say). */
__attribute__((no_sanitize("address"))) static int job_limit_output(uint64_t max) {
        rlim_t m = max < (uint64_t) RLIM_INFINITY ? (rlim_t) max : RLIM_INFINITY;
        struct rlimit rl;

        if (max == 0)
                return 0;
        if (getrlimit(RLIMIT_FSIZE, &rl) < 0)
                return -1;
        rl.rlim_cur = MIN(rl.rlim_cur, m);
        rl.rlim_max = MIN(rl.rlim_max, m);
        return setrlimit(RLIMIT_FSIZE, &rl);
}

/* The job's process, from clone() to execve(). It runs on its own stack in entropy-keeper's
 * memory while entropy-keeper waits (CLONE_VFORK), like a vfork() child: only system calls,
 * never returns. Not instrumented by AddressSanitizer, which does not know this stack. */
__attribute__((no_sanitize("address"))) static int job_exec(void *userdata) {
        KeeperJob *job = userdata;
        sigset_t none;
        int null_fd;

        /* First: whatever the job starts from here on is in its cgroup, and cannot be outside it. */
        if (job->cgroup_fd >= 0 && write(job->cgroup_fd, "0", 1) != 1)
                job_fail(job, KEEPER_STEP_CGROUP);
        if (setpgid(0, 0) < 0)
                job_fail(job, KEEPER_STEP_SETPGID);
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
                job_fail(job, KEEPER_STEP_PRCTL);
        if (getppid() != job->worker) /* the worker died before prctl */
                _exit(127);
        sigemptyset(&none);
        if (sigprocmask(SIG_SETMASK, &none, NULL) < 0)
                job_fail(job, KEEPER_STEP_SIGMASK);
        for (int sig = 1; sig < _NSIG; sig++)
                if (sig != SIGKILL && sig != SIGSTOP)
                        (void) signal(sig, SIG_DFL);
        if (job_limit_output(job->rlimit_fsize) < 0)
                job_fail(job, KEEPER_STEP_RLIMIT);
        null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (null_fd < 0 || dup2(null_fd, STDIN_FILENO) < 0 || dup2(job->stdout_fd, STDOUT_FILENO) < 0 ||
            dup2(job->stderr_fd, STDERR_FILENO) < 0)
                job_fail(job, KEEPER_STEP_STDIO);
        /* Nothing but the job's own three descriptors; not our socket to the worker. */
        close_all_from(3);
        if (job->workdir && chdir(job->workdir) < 0)
                job_fail(job, KEEPER_STEP_CHDIR);
        execve(job->path, job->argv, job->envp);
        job_fail(job, KEEPER_STEP_EXECVE);
}

/* Splits the request's strings into the job's path, working directory, argv and environment. */
static int job_parse(char *buf, const KeeperRequest *req, KeeperJob *job) {
        size_t n = 2 + (size_t) req->n_argv + (size_t) req->n_env, i = 0;
        char *p = buf, *end = buf + req->size;
        char **strings;

        if (req->size == 0 || buf[req->size - 1] != 0 || req->n_argv == 0 || req->n_argv > req->size ||
            req->n_env > req->size)
                return -EINVAL;
        strings = calloc(n + 2, sizeof(char *)); /* room for the two NULLs that end argv and envp */
        if (!strings)
                return -ENOMEM;
        for (; i < n && p < end; i++) {
                char *nul = memchr(p, 0, (size_t) (end - p));
                strings[i < 2 + req->n_argv ? i : i + 1] = p;
                p = nul + 1;
        }
        if (i != n || p != end || !strings[0][0]) {
                free(strings);
                return -EINVAL;
        }
        job->strings = strings;
        job->path = strings[0];
        job->workdir = strings[1][0] ? strings[1] : NULL;
        job->argv = strings + 2;
        job->envp = strings + 3 + req->n_argv;
        return 0;
}

static bool peer_gone(int error) {
        return error == EPIPE || error == ECONNRESET;
}

/* The descriptors of a request: none, or KEEPER_SPAWN_FDS to KEEPER_SPAWN_FDS_MAX of them. */
static int request_fds(struct msghdr *mh, int fds[KEEPER_SPAWN_FDS_MAX]) {
        struct cmsghdr *c = CMSG_FIRSTHDR(mh);
        size_t n;

        if (!c)
                return 0;
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || c->cmsg_len < CMSG_LEN(0))
                return -EBADMSG;
        n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        /* Take them first, whatever follows: they must be closed either way. */
        memcpy(fds, CMSG_DATA(c), sizeof(int) * MIN(n, (size_t) KEEPER_SPAWN_FDS_MAX));
        if (n < KEEPER_SPAWN_FDS || n > KEEPER_SPAWN_FDS_MAX || c->cmsg_len != CMSG_LEN(sizeof(int) * n))
                return -EBADMSG;
        return (int) n;
}

/* A request's header and the descriptors that came with it (-EBADF where none did). Returns 0 at
 * EOF (the worker is gone or done with us), 1 otherwise, -EPROTONOSUPPORT for a version we do not
 * speak. The part of the header every version has comes first; a version 2 request has no limit,
 * and only a version 4 request has a third descriptor. */
static int request_receive(int sock, KeeperRequest *req, int fds[KEEPER_SPAWN_FDS_MAX]) {
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(sizeof(int) * KEEPER_SPAWN_FDS_MAX)];
        } control = { 0 };
        struct iovec iov = { req, keeper_request_size(KEEPER_PROTOCOL_VERSION_MIN) };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control, .msg_controllen = sizeof(control) };
        ssize_t k;
        int n_fds;

        *req = (KeeperRequest){};
        for (int i = 0; i < KEEPER_SPAWN_FDS_MAX; i++)
                fds[i] = -EBADF;
        do
                k = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_WAITALL);
        while (k < 0 && errno == EINTR);
        if (k == 0 || (k < 0 && peer_gone(errno)))
                return 0;
        if (k < 0)
                return -errno;
        n_fds = request_fds(&mh, fds);
        if (n_fds < 0 || (size_t) k != iov.iov_len || (mh.msg_flags & MSG_CTRUNC))
                return -EBADMSG;
        if (req->version < KEEPER_PROTOCOL_VERSION_MIN || req->version > KEEPER_PROTOCOL_VERSION)
                return -EPROTONOSUPPORT;
        if (n_fds > KEEPER_SPAWN_FDS && req->version < 4)
                return -EBADMSG;
        k = keeper_read_exact(sock, (char *) req + iov.iov_len, keeper_request_size(req->version) - iov.iov_len);
        if (k < 0)
                return peer_gone(-k) ? 0 : k;
        return 1;
}

static void spawn(const KeeperRequest *req, const char *buf, const int fds[KEEPER_SPAWN_FDS_MAX], KeeperReply *reply) {
        static char stack[64 * 1024] __attribute__((aligned(16)));
        KeeperJob job = {.stdout_fd = fds[0],
                         .stderr_fd = fds[1],
                         .cgroup_fd = fds[2],
                         .worker = req->pid,
                         .rlimit_fsize = req->rlimit_fsize};
        int k = job_parse((char *) buf, req, &job);
        pid_t pid;

        if (k < 0 || fds[0] < 0 || fds[1] < 0) {
                *reply = (KeeperReply){ k < 0 ? -k : EBADF, KEEPER_STEP_REQUEST, 0 };
                return;
        }
        pid = clone(job_exec, stack + sizeof(stack), CLONE_VM | CLONE_VFORK | CLONE_PARENT | SIGCHLD, &job);
        free(job.strings);
        if (pid < 0) {
                *reply = (KeeperReply){ errno, KEEPER_STEP_FORK, 0 };
                return;
        }
        *reply = (KeeperReply){ job.error, job.step, pid };
        /* A job that failed to start leaves no group behind; one we cannot track must not run. */
        if (job.error == 0 && keeper_groups_add(&groups, pid) < 0) {
                (void) kill(-pid, SIGKILL);
                *reply = (KeeperReply){ ENOMEM, KEEPER_STEP_REQUEST, pid };
        }
}

/* One request. Returns 1 when the worker is gone (EOF, also in the middle of a request), < 0
 * when the stream can no longer be trusted. */
static int serve_one(int sock) {
        KeeperRequest req;
        KeeperReply reply;
        int fds[KEEPER_SPAWN_FDS_MAX], k;
        _cleanup_free_ char *buf = NULL;

        k = request_receive(sock, &req, fds);
        if (k <= 0)
                return k == 0 ? 1 : k;
        switch (req.type) {
        case KEEPER_SPAWN:
                if (req.size > KEEPER_REQUEST_MAX)
                        k = -EMSGSIZE;
                else if (!(buf = malloc(MAX(req.size, 1U))))
                        k = -ENOMEM;
                else
                        k = keeper_read_exact(sock, buf, req.size);
                if (k < 0)
                        break;
                spawn(&req, buf, fds, &reply);
                if (write(sock, &reply, sizeof(reply)) != (ssize_t) sizeof(reply))
                        k = -errno;
                break;
        case KEEPER_FORGET:
                (void) keeper_groups_remove(&groups, req.pid);
                break;
        case KEEPER_ADOPT:
                k = req.pid > 1 ? keeper_groups_add(&groups, req.pid) : -EINVAL;
                break;
        default:
                k = -EBADMSG;
        }
        for (int i = 0; i < KEEPER_SPAWN_FDS_MAX; i++)
                if (fds[i] >= 0)
                        close(fds[i]);
        if (k < 0 && peer_gone(-k))
                return 1;
        return k < 0 ? k : 0;
}

/* What entropy-worker hands us: one end of a Unix stream socket pair. */
static bool socket_is_ours(int fd) {
        int domain = 0, type = 0;
        socklen_t n = sizeof(int), m = sizeof(int);
        return getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &n) == 0 && domain == AF_UNIX &&
               getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &m) == 0 && type == SOCK_STREAM;
}

int main(int argc, char **argv) {
        int k;

        if (argc != 1 || !socket_is_ours(KEEPER_SOCKET_FD)) {
                fprintf(stderr, "entropy-keeper: started by entropy-worker(8) only; not to be run by hand.\n");
                return 2;
        }
        (void) argv;
        /* Started through /proc/self/fd/N (the worker keeps the program open): name it for ps. */
        (void) prctl(PR_SET_NAME, "entropy-keeper");
        (void) signal(SIGPIPE, SIG_IGN);
        /* Whatever else the worker had open without close-on-exec (its connections to the control
         * plane among them) is not ours: held here, a connection the worker closes would stay
         * half open for as long as we run. */
        close_all_from(KEEPER_SOCKET_FD + 1);
        do
                k = serve_one(KEEPER_SOCKET_FD);
        while (k == 0);
        if (k < 0) {
                /* Out of step: the worker sees us exit, starts another entropy-keeper and hands it
                 * the running jobs' groups. */
                fprintf(stderr, "entropy-keeper: bad request from the worker: %s\n", strerror(-k));
                free(groups.pgids);
                /* The worker tells the one from the other (keeper-protocol.h). */
                return k == -EPROTONOSUPPORT ? KEEPER_EXIT_VERSION : KEEPER_EXIT_BAD_REQUEST;
        }
        /* The worker is gone: what it started must not run on without it. Every message it sent
         * before it died has been read by now, so a group still listed here has not been waited
         * for and is still the job's. */
        for (size_t i = 0; i < groups.n; i++)
                (void) kill(-groups.pgids[i], SIGKILL);
        free(groups.pgids);
        return 0;
}
