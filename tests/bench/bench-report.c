/* bench-report.c: entropy-bench's results, for humans and as JSON (--json), with each of issue 8's
 * targets marked met or not met next to the figure it concerns. */
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>

#include "bench.h"
#include "json-util.h"

#define TARGET_LIFECYCLES_PER_SEC 5000.0
#define TARGET_RATIO_BEANSTALKD   2.0
#define TARGET_E2E_RATIO          3.0

static double per_sec(uint64_t n, usec_t elapsed) {
        return elapsed ? (double) n * (double) USEC_PER_SEC / (double) elapsed : 0.0;
}

static double ms(usec_t u) {
        return (double) u / (double) USEC_PER_MSEC;
}

static double cpu_share(usec_t cpu, usec_t elapsed) {
        return elapsed ? 100.0 * (double) cpu / (double) elapsed : 0.0;
}

static const char *met(bool ok) {
        return ok ? "met" : "NOT MET";
}

static usec_t startup_median(const EntropyResult *e) {
        usec_t v[ELEMENTSOF(e->startup)];

        if (e->n_startup == 0)
                return 0;
        memcpy(v, e->startup, sizeof(usec_t) * e->n_startup);
        for (unsigned i = 1; i < e->n_startup; i++)
                for (unsigned j = i; j > 0 && v[j - 1] > v[j]; j--) {
                        usec_t t = v[j];
                        v[j] = v[j - 1];
                        v[j - 1] = t;
                }
        return v[e->n_startup / 2];
}

static double ratio_beanstalkd(const BenchReport *r) {
        double b = per_sec(r->beanstalk.cycles, r->beanstalk.elapsed);
        return b > 0 ? per_sec(r->entropy.lifecycles, r->entropy.elapsed) / b : 0.0;
}

/* The server's CPU time per cycle: on a busy machine throughput moves with the neighbours, this
 * much less. */
static void human_server_cpu(usec_t cpu, usec_t elapsed, uint64_t cycles, const char *what) {
        if (cpu == 0 || cycles == 0)
                return;
        printf("  server CPU          %.0f%% of one core, %.0f us per %s\n", cpu_share(cpu, elapsed),
               (double) cpu / (double) cycles, what);
}

static void human_preload(const EntropyResult *e) {
        if (e->preload_target == 0)
                return;
        printf("  preload             %" PRIu64 " pending wanted, %" PRIu64 " already stored, %" PRIu64
               " submitted in %.1f s (%.0f/s)\n",
               e->preload_target, e->preload_existing, e->preload_done, (double) e->preload_elapsed / USEC_PER_SEC,
               per_sec(e->preload_done, e->preload_elapsed));
        if (e->preload_blocked > 0)
                printf("  blocked             %" PRIu64 " of the submitted need a capability no simulated worker has: "
                       "every claim is made behind them\n",
                       e->preload_blocked);
}

static void human_requests(EntropyResult *e) {
        printf("  per request p50/p99");
        for (int i = 0; i < _REQ_MAX; i++) {
                Latency *l = &e->latency[i];
                if (l->n == 0)
                        continue;
                latency_finish(l);
                printf(" %s %.2f/%.2f", bench_request_to_string(i), ms(latency_percentile(l, 50)),
                       ms(latency_percentile(l, 99)));
        }
        printf(" ms\n");
}

static void human_startup(const EntropyResult *e) {
        if (e->n_startup == 0)
                return;
        printf("  start-up            %" PRIu64 " jobs stored (%" PRIu64 " RUNNING), exec to READY=1:", e->startup_jobs,
               e->startup_held);
        for (unsigned i = 0; i < e->n_startup; i++)
                printf(" %.0f", ms(e->startup[i]));
        printf(" ms; median %.0f ms [target < 2 s with 1M jobs: %s]; RSS after start %.1f MiB\n", ms(startup_median(e)),
               e->startup_jobs >= 1000000 ? met(startup_median(e) < 2 * USEC_PER_SEC) : "needs --preload=1000000",
               (double) e->startup_rss_kib / 1024.0);
}

static void human_entropy(EntropyResult *e) {
        Latency *claim = &e->latency[REQ_NEXT_JOB];
        double rate = per_sec(e->lifecycles, e->elapsed);

        printf("entropy-control\n");
        human_preload(e);
        printf("  lifecycles          %" PRIu64 " in %.2f s = %.0f/s [target >= %.0f/s: %s]\n", e->lifecycles,
               (double) e->elapsed / USEC_PER_SEC, rate, TARGET_LIFECYCLES_PER_SEC,
               met(rate >= TARGET_LIFECYCLES_PER_SEC));
        latency_finish(claim);
        printf("  claim latency       p50 %.2f ms, p99 %.2f ms, max %.2f ms (n=%zu)\n",
               ms(latency_percentile(claim, 50)), ms(latency_percentile(claim, 99)), ms(claim->max), claim->n);
        human_requests(e);
        printf("  requests            %" PRIu64 " (%.0f/s); errors %" PRIu64 ", empty polls %" PRIu64
               ", reconnects %" PRIu64 "\n",
               e->requests, per_sec(e->requests, e->elapsed), e->errors, e->empty_polls, e->reconnects);
        printf("  bench client CPU    %.0f%% of one core\n", cpu_share(e->client_cpu, e->elapsed));
        human_server_cpu(e->server_cpu, e->elapsed, e->lifecycles, "lifecycle");
        printf("  peak RSS            %.1f MiB (VmHWM; %.1f MiB resident at the end)\n",
               (double) e->peak_rss_kib / 1024.0, (double) e->rss_kib / 1024.0);
        if (!e->journald)
                printf("  journal             no journald on this machine: the audit copies (one per state "
                       "change) go nowhere, and journald's work is not in these figures\n");
        else if (e->journal_failures > 0)
                printf("  journal             %" PRIi64 " audit copies not taken by journald\n", e->journal_failures);
        else
                printf("  journal             every audit copy sent to journald (journald's CPU is not in the "
                       "server CPU above)\n");
        printf("  store check         %s: %s\n", e->verified ? "ok" : "FAILED", e->verify_detail);
        human_startup(e);
}

static void human_beanstalk(BeanstalkResult *b) {
        latency_finish(&b->reserve);
        printf("beanstalkd (binlog on, -f 0: fsync after every write)\n");
        printf("  put/reserve/delete  %" PRIu64 " in %.2f s = %.0f/s; errors %" PRIu64 "\n", b->cycles,
               (double) b->elapsed / USEC_PER_SEC, per_sec(b->cycles, b->elapsed), b->errors);
        printf("  reserve latency     p50 %.2f ms, p99 %.2f ms\n", ms(latency_percentile(&b->reserve, 50)),
               ms(latency_percentile(&b->reserve, 99)));
        printf("  peak RSS            %.1f MiB\n", (double) b->peak_rss_kib / 1024.0);
        printf("  bench client CPU    %.0f%% of one core\n", cpu_share(b->client_cpu, b->elapsed));
        human_server_cpu(b->server_cpu, b->elapsed, b->cycles, "cycle");
}

static double per_job_ms(usec_t cpu, uint64_t jobs) {
        return (double) cpu / USEC_PER_MSEC / (double) jobs;
}

static void human_e2e(const E2eResult *e) {
        double ratio = e->xargs_elapsed ? (double) e->entropy_elapsed / (double) e->xargs_elapsed : 0.0;

        printf("end to end (%" PRIu64 " jobs running true)\n", e->jobs);
        printf("  2 entropy-workers   %.2f s (%" PRIu64 " completed, %" PRIu64 " failed)\n",
               (double) e->entropy_elapsed / USEC_PER_SEC, e->completed, e->failed);
        printf("  xargs -P2           %.2f s\n", (double) e->xargs_elapsed / USEC_PER_SEC);
        printf("  ratio               %.2f [target < %.0f: %s]\n", ratio, TARGET_E2E_RATIO,
               met(ratio > 0 && ratio < TARGET_E2E_RATIO));
        if (e->workers_cpu > 0 && e->jobs > 0)
                printf("  CPU per job         workers %.2f ms (with keepers and jobs), control plane %.2f ms; "
                       "xargs %.2f ms\n",
                       per_job_ms(e->workers_cpu, e->jobs), per_job_ms(e->control_cpu, e->jobs),
                       per_job_ms(e->xargs_cpu, e->jobs));
}

void report_print_human(const BenchReport *cr) {
        BenchReport *r = (BenchReport *) cr; /* percentiles sort the samples in place */
        const BenchSettings *s = r->settings;
        char span[64];

        printf("entropy-bench: %ld CPUs, load average %.2f at start, K=%" PRId64 ", %s per phase", r->n_cpus,
               r->loadavg, s->workers, format_timespan(span, sizeof(span), s->duration));
        if (s->jobs > 0)
                printf(" or %" PRId64 " cycles", s->jobs);
        printf(", work directory %s (%s), D-Bus: %s\n", r->workdir, r->fs_type, strna(r->bus));
        if (r->entropy.ran)
                human_entropy(&r->entropy);
        if (r->beanstalk.ran)
                human_beanstalk(&r->beanstalk);
        if (r->entropy.ran && r->beanstalk.ran)
                printf("ratio entropy/beanstalkd  %.2f [target >= %.0f: %s]\n", ratio_beanstalkd(r),
                       TARGET_RATIO_BEANSTALKD, met(ratio_beanstalkd(r) >= TARGET_RATIO_BEANSTALKD));
        if (r->e2e.ran)
                human_e2e(&r->e2e);
}

static json_object *json_latency(Latency *l) {
        json_object *o = json_object_new_object();

        latency_finish(l);
        json_add_int64(o, "n", (int64_t) l->n);
        json_add_double(o, "p50_ms", ms(latency_percentile(l, 50)));
        json_add_double(o, "p99_ms", ms(latency_percentile(l, 99)));
        json_add_double(o, "mean_ms", ms(latency_mean(l)));
        json_add_double(o, "max_ms", ms(l->max));
        return o;
}

static json_object *json_startup(const EntropyResult *e) {
        json_object *o = json_object_new_object(), *runs = json_object_new_array();

        for (unsigned i = 0; i < e->n_startup; i++)
                json_object_array_add(runs, json_object_new_double(ms(e->startup[i])));
        json_object_object_add(o, "runs_ms", runs);
        json_add_double(o, "median_ms", ms(startup_median(e)));
        json_add_int64(o, "jobs_stored", (int64_t) e->startup_jobs);
        json_add_int64(o, "jobs_running", (int64_t) e->startup_held);
        json_add_int64(o, "rss_kib", (int64_t) e->startup_rss_kib);
        return o;
}

static json_object *json_entropy(EntropyResult *e) {
        json_object *o = json_object_new_object(), *per = json_object_new_object(), *pre;

        json_add_int64(o, "lifecycles", (int64_t) e->lifecycles);
        json_add_double(o, "elapsed_s", (double) e->elapsed / USEC_PER_SEC);
        json_add_double(o, "lifecycles_per_s", per_sec(e->lifecycles, e->elapsed));
        json_object_object_add(o, "claim_latency", json_latency(&e->latency[REQ_NEXT_JOB]));
        for (int i = 0; i < _REQ_MAX; i++)
                json_object_object_add(per, bench_request_to_string(i), json_latency(&e->latency[i]));
        json_object_object_add(o, "request_latency", per);
        json_add_int64(o, "requests", (int64_t) e->requests);
        json_add_int64(o, "errors", (int64_t) e->errors);
        json_add_int64(o, "empty_polls", (int64_t) e->empty_polls);
        json_add_int64(o, "reconnects", (int64_t) e->reconnects);
        json_add_double(o, "client_cpu_share", cpu_share(e->client_cpu, e->elapsed) / 100.0);
        json_add_double(o, "server_cpu_share", cpu_share(e->server_cpu, e->elapsed) / 100.0);
        json_add_double(o, "server_cpu_us_per_lifecycle",
                        e->lifecycles ? (double) e->server_cpu / (double) e->lifecycles : 0.0);
        json_add_int64(o, "peak_rss_kib", (int64_t) e->peak_rss_kib);
        json_add_int64(o, "rss_kib", (int64_t) e->rss_kib);
        json_add_bool(o, "journald", e->journald);
        if (e->journal_failures >= 0)
                json_add_int64(o, "journal_failures", e->journal_failures);
        json_add_bool(o, "verified", e->verified);
        json_add_string(o, "verify_detail", e->verify_detail);
        json_add_int64(o, "store_completed", (int64_t) e->store_completed);
        json_add_int64(o, "store_pending", (int64_t) e->store_pending);
        pre = json_object_new_object();
        json_add_int64(pre, "target", (int64_t) e->preload_target);
        json_add_int64(pre, "existing", (int64_t) e->preload_existing);
        json_add_int64(pre, "submitted", (int64_t) e->preload_done);
        json_add_int64(pre, "blocked", (int64_t) e->preload_blocked);
        json_add_double(pre, "elapsed_s", (double) e->preload_elapsed / USEC_PER_SEC);
        json_object_object_add(o, "preload", pre);
        if (e->n_startup > 0)
                json_object_object_add(o, "startup", json_startup(e));
        return o;
}

static json_object *json_beanstalk(BeanstalkResult *b) {
        json_object *o = json_object_new_object();

        json_add_int64(o, "cycles", (int64_t) b->cycles);
        json_add_double(o, "elapsed_s", (double) b->elapsed / USEC_PER_SEC);
        json_add_double(o, "cycles_per_s", per_sec(b->cycles, b->elapsed));
        json_object_object_add(o, "reserve_latency", json_latency(&b->reserve));
        json_add_int64(o, "requests", (int64_t) b->requests);
        json_add_int64(o, "errors", (int64_t) b->errors);
        json_add_double(o, "client_cpu_share", cpu_share(b->client_cpu, b->elapsed) / 100.0);
        json_add_double(o, "server_cpu_share", cpu_share(b->server_cpu, b->elapsed) / 100.0);
        json_add_double(o, "server_cpu_us_per_cycle", b->cycles ? (double) b->server_cpu / (double) b->cycles : 0.0);
        json_add_int64(o, "peak_rss_kib", (int64_t) b->peak_rss_kib);
        return o;
}

static json_object *json_e2e(const E2eResult *e) {
        json_object *o = json_object_new_object();

        json_add_int64(o, "jobs", (int64_t) e->jobs);
        json_add_double(o, "entropy_s", (double) e->entropy_elapsed / USEC_PER_SEC);
        json_add_double(o, "xargs_s", (double) e->xargs_elapsed / USEC_PER_SEC);
        json_add_double(o, "ratio", e->xargs_elapsed ? (double) e->entropy_elapsed / (double) e->xargs_elapsed : 0.0);
        json_add_int64(o, "completed", (int64_t) e->completed);
        json_add_int64(o, "failed", (int64_t) e->failed);
        if (e->workers_cpu > 0 && e->jobs > 0) {
                json_add_double(o, "workers_cpu_ms_per_job", per_job_ms(e->workers_cpu, e->jobs));
                json_add_double(o, "control_cpu_ms_per_job", per_job_ms(e->control_cpu, e->jobs));
                json_add_double(o, "xargs_cpu_ms_per_job", per_job_ms(e->xargs_cpu, e->jobs));
        }
        return o;
}

static json_object *json_machine(const BenchReport *r) {
        json_object *o = json_object_new_object();

        json_add_int64(o, "cpus", r->n_cpus);
        json_add_double(o, "loadavg_1min", r->loadavg);
        json_add_string(o, "workdir", r->workdir);
        json_add_string(o, "fs_type", r->fs_type);
        json_add_string(o, "bus", r->bus);
        json_add_int64(o, "workers", r->settings->workers);
        json_add_double(o, "duration_s", (double) r->settings->duration / USEC_PER_SEC);
        json_add_int64(o, "jobs", r->settings->jobs);
        return o;
}

int report_print_json(const BenchReport *cr) {
        BenchReport *r = (BenchReport *) cr;
        _cleanup_json_ json_object *o = json_object_new_object();

        json_object_object_add(o, "machine", json_machine(r));
        if (r->entropy.ran)
                json_object_object_add(o, "entropy", json_entropy(&r->entropy));
        if (r->beanstalk.ran)
                json_object_object_add(o, "beanstalkd", json_beanstalk(&r->beanstalk));
        if (r->entropy.ran && r->beanstalk.ran)
                json_add_double(o, "ratio_entropy_beanstalkd", ratio_beanstalkd(r));
        if (r->e2e.ran)
                json_object_object_add(o, "e2e", json_e2e(&r->e2e));
        if (puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED)) < 0)
                return -EIO;
        return fflush(stdout) == 0 ? 0 : -EIO;
}

int report_exit_status(const BenchReport *r) {
        if (r->entropy.ran && (r->entropy.errors > 0 || !r->entropy.verified || r->entropy.lifecycles == 0))
                return 1;
        if (r->beanstalk.ran && (r->beanstalk.errors > 0 || r->beanstalk.cycles == 0))
                return 1;
        if (r->e2e.ran && r->e2e.failed > 0)
                return 1;
        return 0;
}

void report_free(BenchReport *r) {
        for (int i = 0; i < _REQ_MAX; i++)
                latency_free(&r->entropy.latency[i]);
        latency_free(&r->beanstalk.reserve);
        free(r->workdir);
        r->workdir = NULL;
}
