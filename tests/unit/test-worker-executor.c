/* test-worker-executor.c: a job's environment (its ids in, the worker's settings and token out),
 * its own process group as our child, no inherited descriptors, killing the whole group (also
 * when the worker dies), its output limit (RLIMIT_FSIZE, SIGXFSZ), and entropy-keeper itself:
 * restarted when it dies and handed the running jobs, refusing to run by hand, speaking an older
 * protocol version to an older entropy-keeper. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "executor.h"
#include "fs-util.h"
#include "keeper-protocol.h"
#include "macro.h"
#include "strv.h"
#include "tap.h"
#include "time-util.h"

static char dir[] = "/tmp/entropy-test-executor-XXXXXX";
static Executor *executor;
static const char *TOKEN = "worker-token-0123456789abcdef";

static void test_env_scrubs_worker_secrets(void) {
        char *in[] = { "PATH=/usr/bin:/bin", "HOME=/root", "ENTROPY_TOKEN_FILE=/etc/entropy/worker-token",
                       "ENTROPY_CONTROL_URL=http://x", "NOTIFY_SOCKET=/run/systemd/notify", "LISTEN_FDS=1",
                       "WATCHDOG_USEC=1000", "CREDENTIALS_DIRECTORY=/run/credentials/x",
                       "SNEAKY=prefix-worker-token-0123456789abcdef", "CUDA_VISIBLE_DEVICES=7", NULL };
        JobEnv je = { "job-1", "assign-1", 2, 1, "3" };
        _cleanup_strv_free_ char **env = NULL;
        bool leaked = false;

        ok(executor_build_env(in, TOKEN, &je, &env) == 0, "built");
        STRV_FOREACH(e, env) {
                if (strstr(*e, TOKEN) || strncmp(*e, "NOTIFY_SOCKET", 13) == 0 || strncmp(*e, "LISTEN_", 7) == 0 ||
                    strncmp(*e, "WATCHDOG_", 9) == 0 || strncmp(*e, "CREDENTIALS_", 12) == 0 ||
                    strncmp(*e, "ENTROPY_TOKEN", 13) == 0 || strncmp(*e, "ENTROPY_CONTROL", 15) == 0)
                        leaked = true;
        }
        ok(!leaked, "no worker setting, systemd variable or token reaches the job");
        ok(strv_contains(env, "PATH=/usr/bin:/bin") && strv_contains(env, "HOME=/root"), "the rest is kept");
        ok(strv_contains(env, "ENTROPY_JOB_ID=job-1") && strv_contains(env, "ENTROPY_ASSIGNMENT_ID=assign-1") &&
                   strv_contains(env, "ENTROPY_ATTEMPT=2") && strv_contains(env, "ENTROPY_SLOT=1"),
           "job variables set");
        ok(strv_contains(env, "CUDA_VISIBLE_DEVICES=3") && !strv_contains(env, "CUDA_VISIBLE_DEVICES=7"),
           "CUDA_VISIBLE_DEVICES is the slot's GPU");
}

/* Runs /bin/sh -c script with stdout into dir/name; returns the pid (waited for unless nowait). */
static pid_t run_sh(const char *script, const char *name, const char *workdir, int *ret_r, const char **step) {
        char out[300];
        char *argv[] = { "sh", "-c", (char *) script, NULL };
        char *envp[] = { "PATH=/usr/bin:/bin", NULL };
        pid_t pid = 0;
        snprintf(out, sizeof(out), "%s/%s", dir, name);
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        ExecSpec spec = { "/bin/sh", argv, envp, workdir, fd, fd };
        *ret_r = executor_spawn(executor, &spec, &pid, step);
        close(fd);
        return pid;
}

static const char *output_path(const char *name) {
        static char p[300];
        snprintf(p, sizeof(p), "%s/%s", dir, name);
        return p;
}

static char *output(const char *name) {
        char p[300];
        char *text = NULL;
        snprintf(p, sizeof(p), "%s/%s", dir, name);
        if (read_full_file(p, 4096, &text, NULL) < 0)
                return strdup("");
        return text;
}

static void test_own_group_no_fds_workdir(void) {
        int leak = open("/dev/null", O_RDONLY); /* deliberately inheritable */
        char script[512];
        int r, status;
        const char *step = NULL;

        snprintf(script, sizeof(script),
                 "echo $$ $(cut -d' ' -f5 /proc/$$/stat); test -e /proc/$$/fd/%d && echo leaked || echo clean; pwd",
                 leak);
        pid_t pid = run_sh(script, "out1", "/tmp", &r, &step);
        is_int(r, 0, "spawned");
        waitpid(pid, &status, 0);
        _cleanup_free_ char *text = output("out1");
        int a = 0, b = -1;
        int n = sscanf(text, "%d %d", &a, &b);
        /* The job is our child (waitpid above), and leads a process group of its own. */
        if (!ok(n == 2 && b == pid && a == pid,
                "job in its own process group: pid %d pgid %d spawned %d", a, b, (int) pid))
                diag("output: %s", text);
        ok(strstr(text, "clean") != NULL, "the worker's descriptors are not inherited");
        ok(strstr(text, "\n/tmp\n") != NULL, "runs in its working directory");
        close(leak);
}

static void test_spawn_failures_name_the_step(void) {
        const char *step = NULL;
        int r;
        run_sh("true", "out2", "/nonexistent-dir", &r, &step);
        is_int(r, -ENOENT, "missing working directory");
        is_str(step, "chdir", "step named");
}

static void test_signal_group_kills_children(void) {
        int r, status;
        const char *step;
        char p[300];
        pid_t pid = run_sh("sleep 100 & echo $!; wait", "out3", NULL, &r, &step);
        _cleanup_free_ char *text = NULL;
        pid_t grandchild = 0;

        for (int i = 0; i < 500 && grandchild <= 0; i++) { /* bounded: 5 s */
                free(text);
                text = output("out3");
                grandchild = atoi(text);
                if (grandchild <= 0)
                        usleep(10000);
        }
        ok(grandchild > 0, "grandchild started: %d", (int) grandchild);
        is_int(executor_signal_group(pid, SIGKILL), 0, "group signalled");
        waitpid(pid, &status, 0);
        ok(WIFSIGNALED(status), "child killed");
        bool gone = false;
        for (int i = 0; i < 500 && !gone; i++) {
                char st[64] = "";
                snprintf(p, sizeof(p), "/proc/%d/stat", (int) grandchild);
                FILE *f = fopen(p, "re");
                if (!f)
                        gone = true;
                else {
                        /* A zombie waiting for its new parent counts as gone. */
                        if (fgets(st, sizeof(st), f) && strstr(st, ") Z"))
                                gone = true;
                        fclose(f);
                }
                if (!gone)
                        usleep(10000);
        }
        ok(gone, "grandchild killed with its group");
        is_int(executor_signal_group(pid, SIGKILL), 0, "signalling a vanished group is fine");
}

static void test_proc_start_time(void) {
        uint64_t a = 0, b = 0;
        ok(proc_start_time(getpid(), &a) == 0 && a > 0, "own start time");
        ok(proc_start_time(getpid(), &b) == 0 && a == b, "stable");
        ok(proc_start_time(1, &b) == 0 && b != a, "another process differs");
        is_int(executor_kill_orphan_group(getpid(), a + 1), 0, "a pid with another start time is left alone");
}

static bool process_gone(pid_t pid) {
        char p[64], st[128] = "";
        bool gone;
        snprintf(p, sizeof(p), "/proc/%d/stat", (int) pid);
        FILE *f = fopen(p, "re");
        if (!f)
                return true;
        /* A zombie waiting to be reaped by its new parent counts as gone. */
        gone = fgets(st, sizeof(st), f) && strstr(st, ") Z");
        fclose(f);
        return gone;
}

/* PR_SET_PDEATHSIG reaches only direct children: the keeper must take the job's whole group down
 * when its worker is SIGKILLed, or a grandchild runs on beside the job's rerun elsewhere. */
static void test_worker_kill_takes_down_the_jobs_grandchildren(bool keeper_restarted) {
        const char *name = keeper_restarted ? "out8" : "out5";
        int status;
        pid_t worker = fork();
        if (worker < 0)
                tap_bail("fork");
        if (worker == 0) { /* a stand-in worker: spawns the job, then waits to be killed */
                int r;
                const char *step;
                /* Its own entropy-keeper: the jobs it starts must be its children. */
                executor = NULL;
                if (executor_new(TEST_KEEPER_PATH, NULL, &executor) < 0)
                        _exit(1);
                run_sh("sleep 100 & echo $!; wait", name, NULL, &r, &step);
                if (keeper_restarted) {
                        /* The next entropy-keeper must be handed the running job's group. */
                        pid_t keeper = executor_keeper_pid(executor);
                        kill(keeper, SIGKILL);
                        waitpid(keeper, NULL, 0);
                        pid_t pid = run_sh("true", "out9", NULL, &r, &step);
                        if (r < 0 || executor_keeper_pid(executor) == keeper)
                                _exit(1);
                        waitpid(pid, NULL, 0);
                        executor_forget(executor, pid);
                        close(open(output_path("out9.done"), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
                }
                for (;;)
                        pause();
        }
        _cleanup_free_ char *text = NULL;
        pid_t grandchild = 0;
        for (int i = 0; i < 500 && grandchild <= 0; i++) { /* bounded: 5 s */
                free(text);
                text = output(name);
                grandchild = atoi(text);
                if (grandchild <= 0)
                        usleep(10000);
        }
        ok(grandchild > 0, "the job's grandchild started: %d", (int) grandchild);
        if (keeper_restarted) { /* bounded: 5 s */
                for (int i = 0; i < 500 && access(output_path("out9.done"), F_OK) < 0; i++)
                        usleep(10000);
                ok(access(output_path("out9.done"), F_OK) == 0,
                   "the stand-in worker started another job through a new entropy-keeper");
        }
        kill(worker, SIGKILL);
        ok(waitpid(worker, &status, 0) == worker && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
           "the stand-in worker was still running when killed");
        bool gone = false;
        for (int i = 0; i < 500 && !(gone = process_gone(grandchild)); i++)
                usleep(10000);
        ok(gone, "the grandchild died with its SIGKILLed worker%s",
           keeper_restarted ? ", under an entropy-keeper started after the job" : "");
        if (!gone)
                kill(grandchild, SIGKILL);
}

static bool is_child_of(pid_t pid, pid_t parent) {
        char p[64], st[512] = "";
        int ppid = 0;
        snprintf(p, sizeof(p), "/proc/%d/stat", (int) pid);
        _cleanup_fclose_ FILE *f = fopen(p, "re");
        if (!f || !fgets(st, sizeof(st), f))
                return false;
        const char *close_paren = strrchr(st, ')');
        return close_paren && sscanf(close_paren + 2, "%*c %d", &ppid) == 1 && ppid == parent;
}

static void test_keeper_process(void) {
        pid_t server = executor_keeper_pid(executor), pid;
        char environ_path[64];
        _cleanup_free_ char *env = NULL;
        size_t n = 0;
        int r, status;
        const char *step;

        ok(server > 0 && is_child_of(server, getpid()), "entropy-keeper runs as our child (pid %d)", (int) server);
        snprintf(environ_path, sizeof(environ_path), "/proc/%d/environ", (int) server);
        ok(read_full_file(environ_path, 4096, &env, &n) == 0 && n == strlen("ENTROPY_TEST=keeper") + 1 &&
                   streq(env, "ENTROPY_TEST=keeper"),
           "entropy-keeper has the environment it was given, nothing else");

        pid = run_sh("exit 3", "out6", NULL, &r, &step);
        is_int(r, 0, "spawned");
        ok(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 3,
           "the job is our child: its exit status is ours to read");
        executor_forget(executor, pid);

        /* Killed by an operator or the OOM killer: the next job starts it again. */
        kill(server, SIGKILL);
        waitpid(server, NULL, 0);
        pid = run_sh("kill -TERM $$", "out7", NULL, &r, &step);
        is_int(r, 0, "spawned after entropy-keeper was killed");
        ok(executor_keeper_pid(executor) > 0 && executor_keeper_pid(executor) != server, "a new entropy-keeper");
        ok(pid > 0 && waitpid(pid, &status, 0) == pid && WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM,
           "so is its signal");
        executor_forget(executor, pid);
}

/* entropy-keeper killed after it started a job but before it told us the pid (a stand-in that
 * does just that): the spawn is made again through a new entropy-keeper, and the job started
 * unreported must not run on unwatched beside it. */
static void test_keeper_dying_mid_spawn_leaves_no_job_behind(void) {
        char marker[300], marker_var[320], *text = NULL;
        char *env[] = { marker_var, "ENTROPY_TEST_KEEPER=" TEST_KEEPER_PATH, NULL };
        Executor *saved = executor, *x = NULL;
        pid_t pid, unreported = 0;
        const char *step;
        int r, status;

        snprintf(marker, sizeof(marker), "%s/unreported-pid", dir);
        snprintf(marker_var, sizeof(marker_var), "ENTROPY_TEST_MARKER=%s", marker);
        if (executor_new(TEST_FAKE_KEEPER_PATH, env, &x) < 0)
                tap_bail("cannot start " TEST_FAKE_KEEPER_PATH);
        executor = x;
        pid = run_sh("exit 4", "out10", NULL, &r, &step);
        executor = saved;
        is_int(r, 0, "spawned through an entropy-keeper started again");
        ok(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 4,
           "and that job ran");
        executor_forget(x, pid);
        if (read_full_file(marker, 64, &text, NULL) == 0)
                unreported = (pid_t) atoi(text);
        free(text);
        ok(unreported > 0, "the dead entropy-keeper had started a process (%d)", (int) unreported);
        ok(unreported > 0 && kill(unreported, 0) < 0 && errno == ESRCH,
           "which was killed and reaped, not left running unwatched");
        if (unreported > 0 && kill(-unreported, SIGKILL) == 0)
                (void) waitpid(unreported, NULL, 0);
        executor_free(x);
}

static void test_request_too_large(void) {
        _cleanup_strv_free_ char **argv = NULL;
        _cleanup_free_ char *big = malloc(1024 * 1024 + 1);
        char *envp[] = { NULL };
        pid_t pid = 0;
        const char *step = NULL;

        if (!big)
                tap_bail("malloc");
        memset(big, 'x', 1024 * 1024);
        big[1024 * 1024] = 0;
        for (int i = 0; i < 9; i++)
                if (strv_extend(&argv, big) < 0)
                        tap_bail("strv_extend");
        ExecSpec spec = { "/bin/true", argv, envp, NULL, STDERR_FILENO, STDERR_FILENO };
        is_int(executor_spawn(executor, &spec, &pid, &step), -E2BIG, "arguments beyond 8 MiB are refused");
        is_int(executor_spawn(executor, &(ExecSpec){ "/bin/true", (char *[]){ "true", NULL }, envp, NULL,
                                                     STDERR_FILENO, STDERR_FILENO },
                              &pid, &step),
               0, "and the next job starts");
        waitpid(pid, NULL, 0);
}

/* Runs /bin/sh -c script with stdout and stderr into dir/name under an output limit, waits for
 * it; returns its wait status, -1 if it did not start. */
static int run_limited(const char *script, const char *name, uint64_t max_output_size) {
        char *argv[] = { "sh", "-c", (char *) script, NULL };
        char *envp[] = { "PATH=/usr/bin:/bin", NULL };
        const char *step = NULL;
        int fd = open(output_path(name), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        ExecSpec spec = { "/bin/sh", argv, envp, NULL, fd, fd, max_output_size };
        pid_t pid = 0;
        int r, status = -1;

        r = executor_spawn(executor, &spec, &pid, &step);
        close(fd);
        if (r < 0) {
                diag("spawn failed at %s: %s", strna(step), strerror(-r));
                return -1;
        }
        if (waitpid(pid, &status, 0) != pid)
                status = -1;
        executor_forget(executor, pid);
        return status;
}

static off_t size_of(const char *name) {
        struct stat st;
        return stat(output_path(name), &st) < 0 ? -1 : st.st_size;
}

/* "Max file size  4096  4096  bytes" of /proc/self/limits, as the job's cat saw it. */
static char *fsize_limits(const char *name) {
        _cleanup_free_ char *text = output(name);
        char soft[32] = "", hard[32] = "", *line = strstr(text, "Max file size"), *s = NULL;

        if (line && sscanf(line, "Max file size %31s %31s", soft, hard) == 2 && asprintf(&s, "%s %s", soft, hard) < 0)
                s = NULL;
        return s ?: strdup("?");
}

/* Our own RLIMIT_FSIZE as /proc/self/limits words it: what a job gets from us without a limit. */
static const char *own_fsize_limits(void) {
        static char s[64];
        struct rlimit rl;
        char soft[32] = "unlimited", hard[32] = "unlimited";

        if (getrlimit(RLIMIT_FSIZE, &rl) < 0)
                tap_bail("getrlimit");
        if (rl.rlim_cur != RLIM_INFINITY)
                snprintf(soft, sizeof(soft), "%llu", (unsigned long long) rl.rlim_cur);
        if (rl.rlim_max != RLIM_INFINITY)
                snprintf(hard, sizeof(hard), "%llu", (unsigned long long) rl.rlim_max);
        snprintf(s, sizeof(s), "%s %s", soft, hard);
        return s;
}

/* The worker ignores SIGXFSZ (as main() here does); its jobs must not: past the limit a write
 * raises it, and it ends the job, which stops there instead of carrying on without its output.
 * RLIMIT_FSIZE is a byte past the limit: a job writing exactly max_output_size bytes is within it. */
static void test_output_limit(void) {
        _cleanup_free_ char *limits = NULL, *unlimited = NULL;
        int status;

        status = run_limited("head -c 100000 /dev/zero", "out11", 4096);
        ok(status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGXFSZ,
           "a job writing past its limit is killed by SIGXFSZ (status 0x%x)", (unsigned) status);
        is_int(size_of("out11"), 4097, "its stdout holds the output up to the limit, and a byte to show it tried more");

        status = run_limited("exec truncate -s 1T /proc/self/fd/1", "out12", 4096);
        ok(status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGXFSZ,
           "a job making its stdout a sparse 1 TiB is killed by SIGXFSZ (status 0x%x)", (unsigned) status);
        is_int(size_of("out12"), 0, "and its stdout stays empty");

        status = run_limited("head -c 4096 /dev/zero", "out13", 4096);
        ok(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0, "a job within its limit is unaffected");
        is_int(size_of("out13"), 4096, "all its output kept");

        status = run_limited("cat /proc/self/limits", "out14", 4096);
        limits = fsize_limits("out14");
        is_str(limits, "4097 4097", "RLIMIT_FSIZE a byte past the limit, soft and hard: the job cannot raise it");

        status = run_limited("head -c 100000 /dev/zero", "out15", 0);
        ok(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0 && size_of("out15") == 100000, "0: no limit");
        status = run_limited("cat /proc/self/limits", "out15b", 0);
        unlimited = fsize_limits("out15b");
        is_str(unlimited, own_fsize_limits(), "the worker's own");
}

/* A worker under a lower LimitFSIZE= than max-output-size: its jobs keep the lower one. */
static void test_output_limit_never_raises_the_workers(void) {
        pid_t worker = fork();
        int status;

        if (worker < 0)
                tap_bail("fork");
        if (worker == 0) {
                struct rlimit rl = { 2048, 2048 };
                _cleanup_free_ char *limits = NULL;
                executor = NULL;
                if (setrlimit(RLIMIT_FSIZE, &rl) < 0 || executor_new(TEST_KEEPER_PATH, NULL, &executor) < 0)
                        _exit(1);
                if (run_limited("cat /proc/self/limits", "out16", 1 << 20) == -1)
                        _exit(1);
                limits = fsize_limits("out16");
                _exit(streq(limits, "2048 2048") ? 0 : 2);
        }
        if (waitpid(worker, &status, 0) != worker)
                status = -1;
        ok(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "max-output-size above the worker's own limit leaves the job that one (status 0x%x)", (unsigned) status);
}

/* Stands in for an entropy-keeper of protocol version 2, which exited 1 at any request it could
 * not read (one of a version it does not know among them). At a version 2 request it becomes
 * the real entropy-keeper, which still speaks version 2. */
static int old_keeper(void) {
        uint32_t version = 0;
        ssize_t k;

        do
                k = recv(KEEPER_SOCKET_FD, &version, sizeof(version), MSG_PEEK);
        while (k < 0 && errno == EINTR);
        if (k == 0)
                return 0;
        if (k != sizeof(version) || version != 2) {
                fprintf(stderr, "entropy-keeper: bad request from the worker: %s\n", strerror(EBADMSG));
                return 1;
        }
        execl(getenv("ENTROPY_TEST_KEEPER"), "entropy-keeper", (char *) NULL);
        return 127;
}

/* A worker beside an older entropy-keeper (an upgrade gone half way): its jobs still start. */
static void test_older_keeper_is_spoken_to_in_its_version(void) {
        char *env[] = { "ENTROPY_TEST_OLD_KEEPER=1", "ENTROPY_TEST_KEEPER=" TEST_KEEPER_PATH, NULL };
        _cleanup_free_ char *self = realpath("/proc/self/exe", NULL), *limits = NULL;
        Executor *saved = executor, *x = NULL;
        int status;

        is_int(executor_keeper_protocol(executor), KEEPER_PROTOCOL_VERSION, "entropy-keeper speaks our version");
        if (!self || executor_new(self, env, &x) < 0)
                tap_bail("cannot start the stand-in for an older entropy-keeper");
        executor = x;
        status = run_limited("cat /proc/self/limits", "out17", 4096);
        ok(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0, "a job started through it");
        is_int(executor_keeper_protocol(x), 2, "in version 2, stepping down one version at a time");
        limits = fsize_limits("out17");
        is_str(limits, own_fsize_limits(), "which sets no output limit");
        status = run_limited("exit 5", "out18", 4096);
        ok(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 5, "and the next one");
        executor = saved;
        executor_free(x);
}

/* The job's cgroup (job-cgroup.h) is entered by the job's own process before anything else: the
 * "0" it writes to the descriptor it was given (here a pipe stands in for cgroup.procs). A write
 * that fails stops the start, naming the step. */
static void test_job_enters_its_cgroup_first(void) {
        char *argv[] = {"sh", "-c", "exit 0", NULL};
        char *envp[] = {"PATH=/usr/bin:/bin", NULL};
        const char *step = NULL;
        char got[8] = "";
        int p[2], fd = open(output_path("out19"), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644), status = -1, r;
        pid_t pid = 0;

        if (fd < 0 || pipe2(p, O_CLOEXEC) < 0)
                tap_bail("pipe");
        r = executor_spawn(executor, &(ExecSpec){"/bin/sh", argv, envp, NULL, fd, fd, 0, p[1]}, &pid, &step);
        is_int(r, 0, "a job with a cgroup starts");
        if (r == 0 && waitpid(pid, &status, 0) == pid)
                executor_forget(executor, pid);
        close(p[1]);
        ok(read(p[0], got, sizeof(got) - 1) == 1 && streq(got, "0"), "having written \"0\" to its cgroup.procs");
        close(p[0]);

        /* Read-only: the write fails with EBADF. */
        int ro = open(output_path("out19"), O_RDONLY | O_CLOEXEC);
        r = executor_spawn(executor, &(ExecSpec){"/bin/sh", argv, envp, NULL, fd, fd, 0, ro}, &pid, &step);
        is_int(r, -EBADF, "a cgroup it cannot enter stops the start");
        is_str(step, "cgroup", "at the step that failed");
        close(ro);
        close(fd);
}

static void test_keeper_refuses_to_run_by_hand(void) {
        char cmd[512];
        snprintf(cmd, sizeof(cmd), "%s </dev/null >/dev/null 2>&1", TEST_KEEPER_PATH);
        int status = system(cmd);
        ok(WIFEXITED(status) && WEXITSTATUS(status) == 2, "entropy-keeper without a worker exits 2");
}

typedef struct Started {
        int n;
        pid_t pid[4];
        int r[4];
} Started;

static void on_started(void *userdata, int r, pid_t pid, const char *step) {
        Started *s = userdata;
        (void) step;
        if (s->n < 4) {
                s->r[s->n] = r;
                s->pid[s->n++] = pid;
        }
}

static int start_sh(Executor *x, const char *script, const char *name, Started *s, ExecutorStart **ret) {
        char out[300];
        char *argv[] = {"sh", "-c", (char *) script, NULL};
        char *envp[] = {"PATH=/usr/bin:/bin", NULL};
        snprintf(out, sizeof(out), "%s/%s", dir, name);
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        ExecSpec spec = {"/bin/sh", argv, envp, NULL, fd, fd, 0, 0, 5 * USEC_PER_SEC};
        int r = executor_start(x, &spec, on_started, s, ret);
        close(fd); /* the executor keeps its own */
        return r;
}

static bool process_with_cmdline(const char *a0, const char *a1) {
        DIR *d = opendir("/proc");
        struct dirent *de;
        bool found = false;
        while (d && !found && (de = readdir(d))) {
                char path[300], buf[256];
                if (atoi(de->d_name) <= 0)
                        continue;
                snprintf(path, sizeof(path), "/proc/%s/cmdline", de->d_name);
                int fd = open(path, O_RDONLY | O_CLOEXEC);
                ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
                if (fd >= 0)
                        close(fd);
                buf[MAX(n, 0)] = 0;
                found = n > 0 && (size_t) n == strlen(a0) + 1 + strlen(a1) + 1 && streq(buf, a0) &&
                        streq(buf + strlen(a0) + 1, a1);
        }
        if (d)
                closedir(d);
        return found;
}

/* From the loop (as the worker starts jobs): executor_start() returns before entropy-keeper has
 * answered; the starts are answered in order, one at a time; a start cancelled before it was sent
 * is dropped, and the job of one cancelled after is killed when entropy-keeper reports it. */
static void test_starts_from_the_loop(void) {
        char *keeper_env[] = {"ENTROPY_TEST=keeper", NULL};
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        Executor *x = NULL;
        ExecutorStart *b = NULL, *d = NULL;
        Started s = {};
        sigset_t chld, old;
        int status;

        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        if (sigprocmask(SIG_BLOCK, &chld, &old) < 0 || sd_event_new(&event) < 0 ||
            executor_new(TEST_KEEPER_PATH, keeper_env, &x) < 0 || executor_attach_event(x, event) < 0)
                tap_bail("cannot set up an executor with a loop");
        ok(start_sh(x, "echo A", "loop-a", &s, NULL) == 0 && start_sh(x, "echo B", "loop-b", &s, &b) == 0 &&
                   start_sh(x, "echo C", "loop-c", &s, NULL) == 0,
           "three starts asked for");
        is_int(s.n, 0, "none answered before the loop runs");
        executor_start_cancel(x, b);
        for (usec_t end = now_monotonic_usec() + 10 * USEC_PER_SEC; s.n < 2 && now_monotonic_usec() < end;)
                (void) sd_event_run(event, 100 * USEC_PER_MSEC);
        ok(s.n == 2 && s.r[0] == 0 && s.r[1] == 0 && s.pid[0] > 0 && s.pid[1] > 0, "the first and the third start");
        for (int i = 0; i < s.n; i++) {
                ok(waitpid(s.pid[i], &status, 0) == s.pid[i] && WIFEXITED(status) && WEXITSTATUS(status) == 0,
                   "job %d ran", i);
                executor_forget(x, s.pid[i]);
        }
        _cleanup_free_ char *a = output("loop-a"), *c = output("loop-c"), *bb = output("loop-b");
        ok(streq(a, "A\n") && streq(c, "C\n") && streq(bb, ""), "in order; the one cancelled never ran");

        /* Cancelled once sent: entropy-keeper starts it, and it is killed at its answer. */
        s = (Started){};
        ok(start_sh(x, "exec sleep 31.4159", "loop-d", &s, &d) == 0 && start_sh(x, "echo E", "loop-e", &s, NULL) == 0,
           "a start and one behind it");
        executor_start_cancel(x, d);
        for (usec_t end = now_monotonic_usec() + 10 * USEC_PER_SEC; s.n < 1 && now_monotonic_usec() < end;)
                (void) sd_event_run(event, 100 * USEC_PER_MSEC);
        ok(s.n == 1 && s.r[0] == 0, "only the one behind it is answered");
        if (s.n == 1 && s.pid[0] > 0) {
                (void) waitpid(s.pid[0], NULL, 0);
                executor_forget(x, s.pid[0]);
        }
        for (usec_t end = now_monotonic_usec() + 5 * USEC_PER_SEC;
             process_with_cmdline("sleep", "31.4159") && now_monotonic_usec() < end;)
                (void) sd_event_run(event, 50 * USEC_PER_MSEC);
        ok(!process_with_cmdline("sleep", "31.4159"), "the job of the start cancelled after it was sent is killed");
        x = executor_free(x);
        (void) sigprocmask(SIG_SETMASK, &old, NULL);
}

int main(void) {
        char *keeper_env[] = { "ENTROPY_TEST=keeper", NULL };

        if (getenv("ENTROPY_TEST_OLD_KEEPER"))
                return old_keeper();
        /* As entropy-worker does (worker-main.c). */
        (void) signal(SIGXFSZ, SIG_IGN);
        if (!mkdtemp(dir))
                tap_bail("mkdtemp");
        if (executor_new(TEST_KEEPER_PATH, keeper_env, &executor) < 0)
                tap_bail("cannot start " TEST_KEEPER_PATH);
        test_env_scrubs_worker_secrets();
        test_own_group_no_fds_workdir();
        test_spawn_failures_name_the_step();
        test_signal_group_kills_children();
        test_worker_kill_takes_down_the_jobs_grandchildren(false);
        test_worker_kill_takes_down_the_jobs_grandchildren(true);
        test_proc_start_time();
        test_keeper_process();
        test_keeper_dying_mid_spawn_leaves_no_job_behind();
        test_request_too_large();
        test_starts_from_the_loop();
        test_output_limit();
        test_output_limit_never_raises_the_workers();
        test_job_enters_its_cgroup_first();
        test_older_keeper_is_spoken_to_in_its_version();
        test_keeper_refuses_to_run_by_hand();
        executor = executor_free(executor);
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        if (system(cmd) != 0)
                diag("cleanup failed");
        return tap_done();
}
