/* bench.h: entropy-bench's settings, the results each phase fills in, and the phases themselves.
 *
 * Phases, each optional, in this order: the control plane (preload, the lifecycle load, the
 * correctness check, the start-up measurement), beanstalkd as the reference queue, and the
 * end-to-end run through real entropy-worker processes against `xargs -P2`. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "bench-stats.h"
#include "time-util.h"

typedef struct BenchSettings {
        char *config;
        char *url;               /* use this running control plane instead of starting one */
        int64_t pid;             /* with --url: its process id, for the peak RSS */
        char *admin_token_file;  /* with --url */
        char *worker_token_file; /* with --url */
        char *control_binary;
        char **control_args; /* extra arguments for entropy-control */
        char *worker_binary;
        char *beanstalkd_binary;
        char *state_directory; /* keep the control plane's database here, reused across runs */
        char *tmpdir;
        int64_t workers;
        int64_t jobs; /* lifecycles; 0 = as many as fit in duration */
        usec_t duration;
        int64_t preload;
        int64_t blocked; /* of the preloaded jobs, those that need a capability no simulated worker has */
        bool startup;
        int64_t startup_runs;
        char *beanstalkd; /* "auto", "yes" or "no" */
        char *dbus;       /* "private" (a dbus-daemon of the bench's own) or "inherit" */
        char *dbus_daemon_binary;
        bool entropy;
        bool e2e;
        int64_t e2e_jobs;
        bool is_short;
        bool json;
        bool keep; /* keep the temporary directory */
} BenchSettings;

/* Request kinds of the simulated worker's cycle, for per-request latencies. */
typedef enum BenchRequest {
        REQ_REGISTER,
        REQ_SUBMIT,
        REQ_NEXT_JOB, /* that returned a job: the claim latency */
        REQ_ACK,
        REQ_HEARTBEAT,
        REQ_COMPLETE,
        _REQ_MAX,
} BenchRequest;

const char *bench_request_to_string(BenchRequest r);

typedef struct EntropyResult {
        bool ran;
        char version[64];
        uint64_t lifecycles;
        usec_t elapsed;
        uint64_t requests, errors, empty_polls, reconnects;
        usec_t client_cpu; /* the bench's own CPU time during the phase */
        usec_t server_cpu; /* the control plane's, during the phase (0: unknown) */
        Latency latency[_REQ_MAX];
        uint64_t peak_rss_kib, rss_kib;
        /* Whether journald runs here (its socket exists; without it sd_journal_send() drops the
         * audit copies silently), and the copies it did not take during the phase (-1: unknown). */
        bool journald;
        int64_t journal_failures;

        uint64_t preload_target, preload_existing, preload_done;
        uint64_t preload_blocked; /* of preload_done, the jobs no simulated worker can take */
        usec_t preload_elapsed;

        bool verified; /* the store agrees with what the bench did */
        char verify_detail[256];
        uint64_t store_completed, store_pending, store_other;

        uint64_t startup_jobs; /* jobs stored when the start-up was measured */
        uint64_t startup_held; /* of which RUNNING (held by simulated workers) */
        usec_t startup[8];
        unsigned n_startup;
        uint64_t startup_rss_kib;
} EntropyResult;

typedef struct BeanstalkResult {
        bool ran;
        char version[64];
        uint64_t cycles;
        usec_t elapsed;
        uint64_t requests, errors, reconnects;
        usec_t client_cpu;
        usec_t server_cpu; /* beanstalkd's CPU time during the phase */
        Latency reserve;
        uint64_t peak_rss_kib;
} BeanstalkResult;

typedef struct E2eResult {
        bool ran;
        uint64_t jobs;
        usec_t entropy_elapsed;
        usec_t xargs_elapsed;
        uint64_t completed, failed;
        /* CPU time over the run (0: unknown): the workers with their keepers and jobs, the
         * control plane, and xargs with its shell and its `true`s. Steadier than elapsed time on a
         * shared machine, and they say where an end-to-end job's cost is. */
        usec_t workers_cpu, control_cpu, xargs_cpu;
} E2eResult;

typedef struct BenchReport {
        const BenchSettings *settings;
        char *workdir;
        const char *fs_type;
        long n_cpus;
        double loadavg;  /* 1-minute load average when the bench started */
        const char *bus; /* what the control planes got as DBUS_SYSTEM_BUS_ADDRESS */
        EntropyResult entropy;
        BeanstalkResult beanstalk;
        E2eResult e2e;
} BenchReport;

/* Each phase returns 0 when it ran (its result says how well), negative when it could not. */
int bench_entropy(const BenchSettings *s, const char *workdir, EntropyResult *ret);
int bench_beanstalk(const BenchSettings *s, const char *workdir, BeanstalkResult *ret);
int bench_e2e(const BenchSettings *s, const char *workdir, E2eResult *ret);

void report_print_human(const BenchReport *r);
int report_print_json(const BenchReport *r);
/* 0 when every phase that ran is sane (no errors, verified); 1 otherwise. */
int report_exit_status(const BenchReport *r);
void report_free(BenchReport *r);
