/* bench-e2e.c: end to end. N jobs running `true` through a fresh entropy-control and two real
 * entropy-worker processes on this machine (one slot each), timed from the first submit to the
 * moment the control plane reports all N terminal; against `xargs -P2` running `true` N times.
 * The workers are started and ready (registered, polling) before the clock starts: the figure is
 * the fabric's per-job overhead, not its start-up. */
#include <inttypes.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "bench-control.h"
#include "bench-proc.h"
#include "bench-util.h"
#include "bench.h"
#include "log.h"
#include "strv.h"

#define E2E_WORKERS          2
#define E2E_TIMEOUT          (600 * USEC_PER_SEC)
#define E2E_POLL_USEC        (20 * USEC_PER_MSEC)
#define WORKER_READY_TIMEOUT (30 * USEC_PER_SEC)

static int worker_argv(const BenchSettings *s, const ControlPlane *cp, const char *dir, unsigned i, char ***ret) {
        _cleanup_strv_free_ char **argv = NULL;
        uint16_t wake_port;
        char *a;
        int r;

        r = strv_extend(&argv, s->worker_binary);
        if (r >= 0 && asprintf(&a, "--control-url=http://127.0.0.1:%u", (unsigned) cp->port) >= 0)
                r = strv_consume(&argv, a);
        if (r >= 0 && asprintf(&a, "--token-file=%s/worker-token", cp->dir) >= 0)
                r = strv_consume(&argv, a);
        if (r >= 0 && asprintf(&a, "--state-directory=%s", dir) >= 0)
                r = strv_consume(&argv, a);
        if (r >= 0 && asprintf(&a, "--worker-id=e2e-worker-%u", i) >= 0)
                r = strv_consume(&argv, a);
        /* The wake socket a packaged worker gets from entropy-worker.socket: the control plane
         * tells an idle worker at once that a job is waiting, instead of leaving it to its poll. */
        if (r >= 0 && free_loopback_port(&wake_port) >= 0 &&
            asprintf(&a, "--wake-listen=127.0.0.1:%u", (unsigned) wake_port) >= 0)
                r = strv_consume(&argv, a);
        if (r >= 0)
                r = strv_extend(&argv, "--slots=1");
        if (r >= 0)
                r = strv_extend(&argv, "--poll-interval=100ms");
        if (r >= 0)
                r = strv_extend(&argv, "--config=");
        if (r < 0)
                return log_oom();
        *ret = TAKE_PTR(argv);
        return 0;
}

static int worker_start(Child *w, const BenchSettings *s, const ControlPlane *cp, const char *workdir, unsigned i) {
        _cleanup_free_ char *dir = NULL, *log_path = NULL, *notify = NULL;
        _cleanup_strv_free_ char **argv = NULL;
        int r;

        if (asprintf(&dir, "%s/worker-%u", workdir, i) < 0 || asprintf(&log_path, "%s.log", dir) < 0 ||
            asprintf(&notify, "%s.notify", dir) < 0)
                return log_oom();
        if (mkdir(dir, 0700) < 0)
                return log_error_errno(negative_errno(), "Failed to create %s: %m", dir);
        r = worker_argv(s, cp, dir, i, &argv);
        if (r < 0)
                return r;
        r = child_spawn(w, "entropy-worker", argv, log_path, notify, NULL);
        if (r >= 0)
                r = child_wait_ready(w, WORKER_READY_TIMEOUT, NULL);
        if (r < 0)
                child_log_tail(w, 20);
        return r;
}

/* Waits until n jobs are terminal (COMPLETED or FAILED), polling GET /metrics. */
static int wait_terminal(ControlPlane *cp, uint64_t n, E2eResult *res) {
        usec_t deadline = now_monotonic_usec() + E2E_TIMEOUT;

        for (;;) {
                uint64_t counts[_JOB_STATE_MAX];
                int r = control_plane_count_jobs(cp, counts);
                if (r < 0)
                        return r;
                res->completed = counts[JOB_COMPLETED];
                res->failed = counts[JOB_FAILED] + counts[JOB_ABORTED];
                if (res->completed + res->failed >= n)
                        return 0;
                if (bench_interrupted)
                        return -EINTR;
                if (now_monotonic_usec() >= deadline)
                        return log_error_errno(-ETIMEDOUT, "Only %" PRIu64 " of %" PRIu64 " jobs finished in time.",
                                               res->completed + res->failed, n);
                usleep(E2E_POLL_USEC);
        }
}

/* A worker's CPU time with every keeper and job it reaped and its children still running (its
 * entropy-keeper, which it reaps only when it exits). */
static int worker_cpu(pid_t pid, usec_t *ret) {
        _cleanup_fclose_ FILE *f = NULL;
        char path[64];
        usec_t t;
        int child, r = proc_cpu_usec(pid, true, ret);

        snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int) pid, (int) pid);
        f = r >= 0 ? fopen(path, "re") : NULL;
        while (f && fscanf(f, "%d", &child) == 1)
                if (proc_cpu_usec(child, true, &t) >= 0)
                        *ret += t;
        return r;
}

/* CPU time of the control plane and of the workers. */
static int e2e_cpu(ControlPlane *cp, const Child *workers, usec_t *ret_control, usec_t *ret_workers) {
        usec_t sum = 0, t;
        int r = control_plane_cpu(cp, ret_control);

        for (unsigned i = 0; r >= 0 && i < E2E_WORKERS; i++) {
                r = worker_cpu(workers[i].pid, &t);
                sum += t;
        }
        *ret_workers = sum;
        return r;
}

static int e2e_entropy(const BenchSettings *s, ControlPlane *cp, const char *workdir, E2eResult *res) {
        Child workers[E2E_WORKERS];
        uint64_t submitted = 0;
        usec_t t0, control0 = 0, workers0 = 0, control1, workers1;
        bool have_cpu;
        int r = 0;

        for (unsigned i = 0; i < E2E_WORKERS; i++)
                workers[i] = (Child){.notify_fd = -EBADF};
        for (unsigned i = 0; r >= 0 && i < E2E_WORKERS; i++)
                r = worker_start(&workers[i], s, cp, workdir, i);
        have_cpu = r >= 0 && e2e_cpu(cp, workers, &control0, &workers0) >= 0;
        t0 = now_monotonic_usec();
        if (r >= 0)
                r = control_plane_submit(cp, (size_t) MIN(s->workers, (int64_t) 16), (uint64_t) s->e2e_jobs,
                                         &submitted);
        if (r >= 0)
                r = wait_terminal(cp, (uint64_t) s->e2e_jobs, res);
        res->entropy_elapsed = now_monotonic_usec() - t0;
        if (r >= 0 && have_cpu && e2e_cpu(cp, workers, &control1, &workers1) >= 0) {
                res->control_cpu = control1 - control0;
                res->workers_cpu = workers1 - workers0;
        }
        for (unsigned i = 0; i < E2E_WORKERS; i++) {
                if (workers[i].pid > 0)
                        (void) child_stop(&workers[i], 30 * USEC_PER_SEC);
                child_done(&workers[i]);
        }
        return r;
}

/* `seq N | xargs -P2 -n1 true`: the same N processes, two at a time, nothing else. */
static usec_t children_cpu_usec(void) {
        struct rusage ru;
        if (getrusage(RUSAGE_CHILDREN, &ru) < 0)
                return 0;
        return (usec_t) (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * USEC_PER_SEC + (usec_t) ru.ru_utime.tv_usec +
               (usec_t) ru.ru_stime.tv_usec;
}

static int e2e_xargs(uint64_t n, usec_t *ret, usec_t *ret_cpu) {
        char cmd[128];
        usec_t t0, cpu0;
        int status;

        snprintf(cmd, sizeof(cmd), "seq %" PRIu64 " | xargs -P2 -n1 true", n);
        /* Every other child of the bench has been waited for by now: the difference is the shell's. */
        cpu0 = children_cpu_usec();
        t0 = now_monotonic_usec();
        status = system(cmd);
        *ret = now_monotonic_usec() - t0;
        *ret_cpu = children_cpu_usec() - cpu0;
        if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
                return log_error_errno(-EIO, "\"%s\" failed (status 0x%x).", cmd, (unsigned) status);
        return 0;
}

int bench_e2e(const BenchSettings *s, const char *workdir, E2eResult *res) {
        _cleanup_free_ char *dir = NULL;
        BenchSettings fresh = *s;
        ControlPlane cp;
        int r;

        if (asprintf(&dir, "%s/e2e", workdir) < 0)
                return log_oom();
        if (mkdir(dir, 0700) < 0)
                return log_error_errno(negative_errno(), "Failed to create %s: %m", dir);
        /* Always a fresh control plane of its own: no preloaded queue in front of these jobs. */
        fresh.url = NULL;
        fresh.state_directory = NULL;
        r = control_plane_setup(&cp, &fresh, dir);
        if (r >= 0)
                r = control_plane_start(&cp, NULL);
        if (r >= 0)
                r = e2e_entropy(s, &cp, dir, res);
        res->jobs = (uint64_t) s->e2e_jobs;
        (void) control_plane_stop(&cp);
        control_plane_done(&cp);
        if (r < 0)
                return r;
        res->ran = true;
        return e2e_xargs((uint64_t) s->e2e_jobs, &res->xargs_elapsed, &res->xargs_cpu);
}
