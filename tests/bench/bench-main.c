/* bench-main.c: entropy-bench, the benchmark of issue 8 (docs/performance.md). Reads its options
 * from one table (flags, ENTROPY_* environment, config file, --help), runs the phases of bench.h
 * in a temporary work directory, prints the report and exits 1 when a phase failed or found the
 * control plane answering against the contract. */
#include <inttypes.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "bench-proc.h"
#include "bench-util.h"
#include "bench.h"
#include "conf.h"
#include "log.h"

#define SHORT_DURATION (2 * USEC_PER_SEC)
#define SHORT_E2E_JOBS 200

#define OPT(n, s, t, f, d, a, h, lo, hi)                                                                               \
        { n, s, t, offsetof(BenchSettings, f), d, a, h, lo, hi }

static const ConfOption bench_options[] = {
        OPT("config", 0, CONF_STRING, config, NULL, "PATH", "Config file ([bench] section)", 0, 0),
        OPT("workers", 'w', CONF_INT, workers, "64", "K",
            "Simulated workers (and beanstalk clients), one connection each", 1, 4096),
        OPT("duration", 'd', CONF_TIMESPAN, duration, "10s", "SPAN", "Length of each measured load phase", 0, 0),
        OPT("jobs", 'n', CONF_INT, jobs, "0", "N", "Stop each load phase after N cycles (0: only --duration bounds it)",
            0, INT64_MAX),
        OPT("preload", 0, CONF_INT, preload, "0", "N",
            "Pending jobs in the queue (submitted over HTTP) before the measured phase", 0, 100000000),
        OPT("blocked", 0, CONF_INT, blocked, "0", "N",
            "Of those, the first N need a capability no simulated worker has: every claim is made behind them", 0,
            100000000),
        OPT("startup", 0, CONF_BOOL, startup, "no", NULL, "Measure restart time to READY=1 with the jobs stored", 0, 0),
        OPT("startup-runs", 0, CONF_INT, startup_runs, "3", "N", "Restarts measured by --startup", 1, 8),
        OPT("entropy", 0, CONF_BOOL, entropy, "yes", NULL, "Run the control-plane phase", 0, 0),
        OPT("beanstalkd", 0, CONF_STRING, beanstalkd, "auto", "auto|yes|no", "Run the beanstalkd reference phase", 0,
            0),
        OPT("dbus", 0, CONF_STRING, dbus, "private", "private|inherit",
            "System bus for the control plane: a private dbus-daemon, or whatever the environment has", 0, 0),
        OPT("dbus-daemon-binary", 0, CONF_STRING, dbus_daemon_binary, "/usr/bin/dbus-daemon", "PATH",
            "dbus-daemon for --dbus=private", 0, 0),
        OPT("e2e", 0, CONF_BOOL, e2e, "no", NULL, "Run the end-to-end phase (real workers against xargs -P2)", 0, 0),
        OPT("e2e-jobs", 0, CONF_INT, e2e_jobs, "2000", "N", "Jobs of the end-to-end phase", 1, 1000000),
        OPT("short", 0, CONF_BOOL, is_short, "no", NULL, "CI mode: 2s phases, 200 end-to-end jobs, one restart", 0, 0),
        OPT("json", 0, CONF_BOOL, json, "no", NULL, "Print the results as JSON", 0, 0),
        OPT("url", 0, CONF_STRING, url, NULL, "URL",
            "Use the control plane at http://127.0.0.1:PORT instead of starting one", 0, 0),
        OPT("pid", 0, CONF_INT, pid, "0", "PID", "With --url: its process id, for the peak RSS", 0, INT32_MAX),
        OPT("admin-token-file", 0, CONF_STRING, admin_token_file, NULL, "PATH", "With --url: the admin token", 0, 0),
        OPT("worker-token-file", 0, CONF_STRING, worker_token_file, NULL, "PATH", "With --url: the worker token", 0, 0),
        OPT("control-binary", 0, CONF_STRING, control_binary, NULL, "PATH",
            "entropy-control to run (default: this build tree's)", 0, 0),
        OPT("control-args", 0, CONF_STRV, control_args, NULL, "ARGS",
            "Extra options for entropy-control, e.g. --synchronous=normal", 0, 0),
        OPT("worker-binary", 0, CONF_STRING, worker_binary, NULL, "PATH",
            "entropy-worker to run (default: this build tree's)", 0, 0),
        OPT("beanstalkd-binary", 0, CONF_STRING, beanstalkd_binary, "/usr/bin/beanstalkd", "PATH", "beanstalkd to run",
            0, 0),
        OPT("database-directory", 0, CONF_STRING, state_directory, NULL, "DIR",
            "Keep the control plane's database here and reuse it (a preload is then paid once)", 0, 0),
        OPT("tmpdir", 0, CONF_STRING, tmpdir, NULL, "DIR",
            "Where the work directory goes (default $TMPDIR, else /var/tmp: a disk, not tmpfs)", 0, 0),
        OPT("keep", 0, CONF_BOOL, keep, "no", NULL, "Keep the work directory (logs, databases)", 0, 0),
};

volatile sig_atomic_t bench_interrupted;

static void on_signal(int sig) {
        bench_interrupted = 1;
}

/* No SA_RESTART: a blocked epoll_wait(), poll() or usleep() returns with EINTR at once. */
static int install_signal_handlers(void) {
        struct sigaction sa = {.sa_handler = on_signal};

        if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0)
                return negative_errno();
        return 0;
}

static const ConfProgram bench_program = {
        .name = "entropy-bench",
        .section = "bench",
        .summary = "Benchmark entropy-control (and beanstalkd, and real workers) on 127.0.0.1.",
        .usage_args = "[OPTIONS...]",
        .default_config = "", /* none: only --config or $ENTROPY_CONFIG names one */
        .options = bench_options,
        .n_options = ELEMENTSOF(bench_options),
};

/* Binaries default to this build tree's: entropy-bench lives in <builddir>/tests/bench, the
 * daemons at the top of the build tree (or in their directory, as the integration harness also
 * accepts). */
static int default_binary(char **field, const char *subdir, const char *name) {
        _cleanup_free_ char *dir = NULL;
        const char *const where[] = {"", subdir};
        int r;

        if (!isempty(*field))
                return 0;
        r = self_directory(&dir);
        if (r < 0)
                return log_error_errno(r, "Failed to find this program's directory: %m");
        for (size_t i = 0; i < ELEMENTSOF(where); i++) {
                free(*field);
                if (asprintf(field, "%s/../../%s%s%s", dir, where[i], *where[i] ? "/" : "", name) < 0) {
                        *field = NULL;
                        return log_oom();
                }
                if (access(*field, X_OK) >= 0)
                        break;
        }
        return 0;
}

static int settings_finish(BenchSettings *s) {
        int r;

        if (s->is_short) {
                s->duration = SHORT_DURATION;
                s->e2e_jobs = MIN(s->e2e_jobs, (int64_t) SHORT_E2E_JOBS);
                s->startup_runs = 1;
        }
        if (s->blocked > s->preload)
                return log_error_errno(-EINVAL, "--blocked=%" PRId64 " is more than --preload=%" PRId64 ".", s->blocked,
                                       s->preload);
        if (s->duration == 0 || s->duration == USEC_INFINITY)
                return log_error_errno(-EINVAL, "--duration must be finite and above zero: every load is bounded.");
        if (!streq(s->beanstalkd, "auto") && !streq(s->beanstalkd, "yes") && !streq(s->beanstalkd, "no"))
                return log_error_errno(-EINVAL, "--beanstalkd takes auto, yes or no.");
        if (!streq(s->dbus, "private") && !streq(s->dbus, "inherit"))
                return log_error_errno(-EINVAL, "--dbus takes private or inherit.");
        r = default_binary(&s->control_binary, "daemon", "entropy-control");
        if (r >= 0)
                r = default_binary(&s->worker_binary, "worker", "entropy-worker");
        return r;
}

static bool want_beanstalkd(const BenchSettings *s) {
        if (streq(s->beanstalkd, "no"))
                return false;
        if (streq(s->beanstalkd, "yes"))
                return true;
        if (access(s->beanstalkd_binary, X_OK) < 0) {
                log_info("%s is not installed: skipping the beanstalkd reference.", s->beanstalkd_binary);
                return false;
        }
        return true;
}

static void report_init(BenchReport *r, const BenchSettings *s) {
        double load[1] = {0};

        *r = (BenchReport){.settings = s};
        r->n_cpus = sysconf(_SC_NPROCESSORS_ONLN);
        if (getloadavg(load, 1) == 1)
                r->loadavg = load[0];
}

/* Runs every wanted phase, even after one failed, so that one broken part still lets the others
 * report. Returns the first failure. */
static int run_phases(const BenchSettings *s, BenchReport *rep) {
        int r, ret = 0;

        if (s->entropy) {
                r = bench_entropy(s, rep->workdir, &rep->entropy);
                if (r < 0)
                        ret = log_error_errno(r, "The control-plane phase failed: %m");
        }
        if (want_beanstalkd(s)) {
                r = bench_beanstalk(s, rep->workdir, &rep->beanstalk);
                if (r < 0 && ret >= 0)
                        ret = log_error_errno(r, "The beanstalkd phase failed: %m");
        }
        if (s->e2e) {
                r = bench_e2e(s, rep->workdir, &rep->e2e);
                if (r < 0 && ret >= 0)
                        ret = log_error_errno(r, "The end-to-end phase failed: %m");
        }
        return ret;
}

/* A control plane is deployed next to a system bus: without one its D-Bus layer queues every
 * signal (docs/performance.md, Findings), so by default the bench gives it a private bus, as the
 * integration tests do. The variable is inherited by every daemon the bench starts. */
static int bench_bus_setup(const BenchSettings *s, BenchReport *rep, Child *bus) {
        _cleanup_free_ char *address = NULL;
        int r;

        if (streq(s->dbus, "inherit") || !isempty(s->url)) {
                rep->bus = getenv("DBUS_SYSTEM_BUS_ADDRESS") ? "inherited DBUS_SYSTEM_BUS_ADDRESS"
                                                             : "the system bus, if any";
                return 0;
        }
        r = private_bus_start(bus, s->dbus_daemon_binary, rep->workdir, &address);
        if (r < 0)
                return log_error_errno(r, "Failed to start a private bus (--dbus=inherit does without): %m");
        if (setenv("DBUS_SYSTEM_BUS_ADDRESS", address, 1) < 0)
                return negative_errno();
        rep->bus = "a private dbus-daemon";
        return 0;
}

static int run(BenchSettings *s, BenchReport *rep) {
        Child bus = {.notify_fd = -EBADF};
        int r;

        r = settings_finish(s);
        if (r < 0)
                return r;
        r = install_signal_handlers();
        if (r < 0)
                return log_error_errno(r, "Failed to install signal handlers: %m");
        report_init(rep, s);
        r = make_temp_dir(s->tmpdir, "entropy-bench", &rep->workdir);
        if (r < 0)
                return log_error_errno(r, "Failed to create a work directory: %m");
        rep->fs_type = fs_type_of(isempty(s->state_directory) ? rep->workdir : s->state_directory);
        if (streq(rep->fs_type, "tmpfs"))
                log_warning("The work directory is on tmpfs: fsync is free there, durability figures mean nothing.");
        r = bench_bus_setup(s, rep, &bus);
        if (r >= 0)
                r = run_phases(s, rep);
        if (bus.pid > 0)
                (void) child_stop(&bus, 10 * USEC_PER_SEC);
        child_done(&bus);
        if (s->json) {
                int k = report_print_json(rep);
                if (k < 0 && r >= 0)
                        r = k;
        } else
                report_print_human(rep);
        if (s->keep)
                log_info("Kept %s.", rep->workdir);
        else
                (void) rm_rf(rep->workdir);
        return r;
}

int main(int argc, char **argv) {
        BenchSettings settings = {};
        BenchReport report = {};
        int r, status;

        log_set_ident("entropy-bench");
        r = conf_load(&bench_program, argc, argv, &settings, NULL);
        if (r != 0) {
                conf_free(&bench_program, &settings);
                return r > 0 ? EXIT_SUCCESS : EXIT_FAILURE;
        }
        r = run(&settings, &report);
        status = r < 0 ? EXIT_FAILURE : report_exit_status(&report);
        report_free(&report);
        conf_free(&bench_program, &settings);
        return status;
}
