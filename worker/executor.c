/* executor.c: fork/exec of job processes, their environment and process-group signalling. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "executor.h"
#include "macro.h"
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

int executor_build_env(char *const *environ_in, const char *token, const JobEnv *job, char ***ret) {
        _cleanup_strv_free_ char **l = NULL;
        char num[32];
        int r;

        for (char *const *e = environ_in; e && *e; e++) {
                if (env_is_scrubbed(*e, token))
                        continue;
                r = strv_extend(&l, *e);
                if (r < 0)
                        return r;
        }
        r = env_add(&l, "ENTROPY_JOB_ID", job->job_id);
        if (r >= 0)
                r = env_add(&l, "ENTROPY_ASSIGNMENT_ID", job->assignment_id);
        snprintf(num, sizeof(num), "%lld", (long long) job->attempt);
        if (r >= 0)
                r = env_add(&l, "ENTROPY_ATTEMPT", num);
        snprintf(num, sizeof(num), "%lld", (long long) job->slot);
        if (r >= 0)
                r = env_add(&l, "ENTROPY_SLOT", num);
        if (r >= 0 && job->cuda_visible_devices)
                r = env_add(&l, "CUDA_VISIBLE_DEVICES", job->cuda_visible_devices);
        if (r < 0)
                return r;
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

/* In the child: reports errno and the step that failed to the parent, then exits. */
_noreturn_ static void child_fail(int report_fd, int step) {
        int msg[2] = { errno, step };
        ssize_t k _unused_ = write(report_fd, msg, sizeof(msg));
        _exit(127);
}

static const char *const spawn_steps[] = { "setpgid", "prctl", "stdio", "chdir", "execve", "sigmask", "fork" };

static void close_all_but(int keep) {
        long max = sysconf(_SC_OPEN_MAX);
        bool ok = (keep <= 3 || close_range(3, (unsigned) keep - 1, 0) == 0) &&
                  close_range((unsigned) keep + 1, ~0U, 0) == 0;
        if (ok)
                return;
        for (int fd = 3; fd < (max > 0 ? max : 65536); fd++)
                if (fd != keep)
                        (void) close(fd);
}

/* The job itself, a child of its keeper and in the keeper's process group. Started by vfork():
 * until its execve() it runs in the keeper's memory on the keeper's stack, so it only makes
 * system calls, never returns and ends in execve() or _exit(). */
_noreturn_ static void child_exec(const ExecSpec *spec, int report_fd, pid_t keeper) {
        sigset_t none;
        int null_fd;

        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
                child_fail(report_fd, 1);
        if (getppid() != keeper) /* the keeper died between fork and prctl */
                _exit(127);
        sigemptyset(&none);
        if (sigprocmask(SIG_SETMASK, &none, NULL) < 0)
                child_fail(report_fd, 5);
        for (int sig = 1; sig < _NSIG; sig++)
                if (sig != SIGKILL && sig != SIGSTOP)
                        (void) signal(sig, SIG_DFL);
        null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (null_fd < 0 || dup2(null_fd, STDIN_FILENO) < 0 || dup2(spec->stdout_fd, STDOUT_FILENO) < 0 ||
            dup2(spec->stderr_fd, STDERR_FILENO) < 0)
                child_fail(report_fd, 2);
        /* Nothing of the worker's (its wake socket from systemd, curl's sockets, the database) may
         * reach the job; only the report pipe stays, close-on-exec. */
        close_all_but(report_fd);
        if (spec->workdir && chdir(spec->workdir) < 0)
                child_fail(report_fd, 3);
        execve(spec->path, spec->argv, spec->envp);
        child_fail(report_fd, 4);
}

/* Exits the way the job did, so that the worker sees the job's own status in its keeper's. */
_noreturn_ static void keeper_exit_as(int status) {
        if (WIFSIGNALED(status)) {
                int sig = WTERMSIG(status);
                sigset_t s;
                (void) signal(sig, SIG_DFL);
                sigemptyset(&s);
                sigaddset(&s, sig);
                (void) sigprocmask(SIG_UNBLOCK, &s, NULL);
                (void) raise(sig);
                _exit(128 + sig);
        }
        _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 127);
}

/* The worker's direct child: the leader of the job's process group, which runs the job as its own
 * child and exits as it did. PR_SET_PDEATHSIG reaches only a dead parent's direct children, so
 * when the worker dies (even by SIGKILL) the keeper kills the whole group: no grandchild of the job
 * runs on beside its rerun on another worker. Signals the worker sends the group (SIGTERM on a
 * timeout or abort) are for the job; the keeper ignores them and waits. */
_noreturn_ static void child_keep(const ExecSpec *spec, int report_fd, pid_t parent) {
        sigset_t waited;
        pid_t job;
        int status;

        if (setpgid(0, 0) < 0)
                child_fail(report_fd, 0);
        sigemptyset(&waited);
        sigaddset(&waited, SIGCHLD);
        sigaddset(&waited, SIGUSR1);
        /* Blocked before PR_SET_PDEATHSIG so that the worker's death is never missed. */
        if (sigprocmask(SIG_SETMASK, &waited, NULL) < 0)
                child_fail(report_fd, 5);
        if (prctl(PR_SET_PDEATHSIG, SIGUSR1) < 0)
                child_fail(report_fd, 1);
        if (getppid() != parent) /* the worker died between fork and prctl */
                _exit(127);
        (void) signal(SIGTERM, SIG_IGN);
        (void) signal(SIGINT, SIG_IGN);
        (void) signal(SIGHUP, SIG_IGN);
        (void) signal(SIGPIPE, SIG_IGN);
        /* vfork, not fork: the keeper is a copy of the whole worker, and copying its page tables
         * once more for a process that execs at once was a good part of the cost of a short job.
         * The keeper is suspended until the exec; the signals that matter to it (SIGUSR1: the
         * worker died, SIGCHLD) are blocked, so they wait for sigwaitinfo() below. */
        job = vfork();
        if (job < 0)
                child_fail(report_fd, 6);
        if (job == 0)
                child_exec(spec, report_fd, getppid());
        /* Holds nothing of the worker's, and not the report pipe: its EOF must mean the exec worked. */
        close_all_but(STDERR_FILENO); /* every descriptor from 3 on */
        for (;;) {
                int sig = sigwaitinfo(&waited, NULL);
                if (sig == SIGUSR1) {
                        (void) kill(0, SIGKILL); /* the whole group, the keeper with it */
                        _exit(137);
                }
                if (sig == SIGCHLD && waitpid(job, &status, WNOHANG) == job)
                        keeper_exit_as(status);
        }
}

int executor_spawn(const ExecSpec *spec, pid_t *ret_pid, const char **ret_step) {
        int pipefd[2], msg[2];
        pid_t parent = getpid(), pid;
        ssize_t k;

        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return -errno;
        pid = fork();
        if (pid < 0) {
                int r = -errno;
                close(pipefd[0]);
                close(pipefd[1]);
                return r;
        }
        if (pid == 0) {
                close(pipefd[0]);
                child_keep(spec, pipefd[1], parent);
        }
        close(pipefd[1]);
        /* Also from the parent, so that the group exists before we might signal it. */
        (void) setpgid(pid, pid);
        /* EOF (the pipe closed by a successful exec) or an error report: short, a few ms at most. */
        do
                k = read(pipefd[0], msg, sizeof(msg));
        while (k < 0 && errno == EINTR);
        close(pipefd[0]);
        if (k == sizeof(msg)) {
                (void) waitpid(pid, NULL, 0);
                if (ret_step)
                        *ret_step = msg[1] >= 0 && (size_t) msg[1] < ELEMENTSOF(spawn_steps) ? spawn_steps[msg[1]]
                                                                                               : "spawn";
                return msg[0] > 0 ? -msg[0] : -EIO;
        }
        *ret_pid = pid;
        return 0;
}

int executor_signal_group(pid_t pgid, int sig) {
        if (pgid <= 1)
                return -EINVAL;
        if (kill(-pgid, sig) < 0)
                return errno == ESRCH ? 0 : -errno;
        return 0;
}

int proc_start_time(pid_t pid, uint64_t *ret) {
        char path[64], buf[1024];
        unsigned long long start;
        const char *p;
        FILE *f;
        size_t n;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        f = fopen(path, "re");
        if (!f)
                return -errno;
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = 0;
        /* The command name may contain spaces and parentheses: fields start after the last ')'. */
        p = strrchr(buf, ')');
        if (!p)
                return -EBADMSG;
        /* state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime
         * cutime cstime priority nice num_threads itrealvalue starttime(22) */
        if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
                   &start) != 1)
                return -EBADMSG;
        *ret = start;
        return 0;
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
