/* test-worker-executor.c: a job's environment (its ids in, the worker's settings and token out),
 * its own process group, no inherited descriptors, and killing the whole group. */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "executor.h"
#include "fs-util.h"
#include "macro.h"
#include "strv.h"
#include "tap.h"
#include "time-util.h"

static char dir[] = "/tmp/entropy-test-executor-XXXXXX";
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
        *ret_r = executor_spawn(&spec, &pid, step);
        close(fd);
        return pid;
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
        /* The job runs in its own process group, led by its keeper (the worker's child, pid). */
        if (!ok(sscanf(text, "%d %d", &a, &b) == 2 && b == pid && a != pid,
                "job in its own process group, led by its keeper: pid %d pgid %d keeper %d", a, b, (int) pid))
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
static void test_worker_kill_takes_down_the_jobs_grandchildren(void) {
        int status;
        pid_t worker = fork();
        if (worker < 0)
                tap_bail("fork");
        if (worker == 0) { /* a stand-in worker: spawns the job, then waits to be killed */
                int r;
                const char *step;
                run_sh("sleep 100 & echo $!; wait", "out5", NULL, &r, &step);
                for (;;)
                        pause();
        }
        _cleanup_free_ char *text = NULL;
        pid_t grandchild = 0;
        for (int i = 0; i < 500 && grandchild <= 0; i++) { /* bounded: 5 s */
                free(text);
                text = output("out5");
                grandchild = atoi(text);
                if (grandchild <= 0)
                        usleep(10000);
        }
        ok(grandchild > 0, "the job's grandchild started: %d", (int) grandchild);
        kill(worker, SIGKILL);
        waitpid(worker, &status, 0);
        bool gone = false;
        for (int i = 0; i < 500 && !(gone = process_gone(grandchild)); i++)
                usleep(10000);
        ok(gone, "the grandchild died with its SIGKILLed worker");
        if (!gone)
                kill(grandchild, SIGKILL);
}

int main(void) {
        if (!mkdtemp(dir))
                tap_bail("mkdtemp");
        test_env_scrubs_worker_secrets();
        test_own_group_no_fds_workdir();
        test_spawn_failures_name_the_step();
        test_signal_group_kills_children();
        test_worker_kill_takes_down_the_jobs_grandchildren();
        test_proc_start_time();
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        if (system(cmd) != 0)
                diag("cleanup failed");
        return tap_done();
}
