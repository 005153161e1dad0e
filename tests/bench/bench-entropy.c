/* bench-entropy.c: K simulated workers against entropy-control, each through the full worker
 * protocol on its own keep-alive connection: POST /register once, then per job POST /jobs (admin
 * token: the worker submits the job it is about to run, so the queue never runs dry and the
 * pending depth stays where the preload put it), GET /next-job, POST /ack, POST /heartbeat and
 * POST /complete. One lifecycle = those five requests, all answered as the contract says.
 *
 * The same clients also preload pending jobs (submits only) and, for the start-up measurement,
 * leave one RUNNING job each behind (register, submit, claim, ack) so that the restart has live
 * leases to recover. */
#include <inttypes.h>
#include <stdio.h>
#include <unistd.h>

#include "bench-control.h"
#include "bench-http.h"
#include "bench-load.h"
#include "bench.h"
#include "json-util.h"
#include "log.h"

#define DRAIN_USEC        (30 * USEC_PER_SEC)
#define PRELOAD_MAX_USEC  (6 * USEC_PER_HOUR)
#define MAX_LOGGED_ERRORS 5
/* What the --blocked jobs need and no simulated worker has (they register with no capability). */
#define BLOCKED_REQUIREMENT "entropy-bench-unmet"
/* SHA-256 of the empty file: what a worker reports for the empty stdout of `true`. */
#define SHA256_EMPTY "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

typedef enum LoadMode {
        MODE_PRELOAD,   /* submits only */
        MODE_LIFECYCLE, /* the measured cycle */
        MODE_HOLD,      /* register, submit, claim, ack, then stop: one RUNNING job per worker */
} LoadMode;

typedef struct EntropyLoad {
        Load load;
        ControlPlane *cp;
        LoadMode mode;
        EntropyResult *result;
        uint64_t errors, empty_polls;
        uint64_t blocked_left; /* MODE_PRELOAD: submits still to make with BLOCKED_REQUIREMENT */
} EntropyLoad;

typedef struct SimWorker {
        LoadClient base; /* first: the engine hands us &base */
        EntropyLoad *run;
        BenchRequest step;
        char worker_id[48];
        char job_id[LIMIT_ID_LEN + 1];
        char assignment_id[LIMIT_ID_LEN + 1];
        int64_t heartbeat_seq;
        HttpReply reply;
        Buf req;
} SimWorker;

static const char *const request_names[_REQ_MAX] = {
        [REQ_REGISTER] = "register", [REQ_SUBMIT] = "submit",       [REQ_NEXT_JOB] = "next-job",
        [REQ_ACK] = "ack",           [REQ_HEARTBEAT] = "heartbeat", [REQ_COMPLETE] = "complete",
};

const char *bench_request_to_string(BenchRequest r) {
        return r >= 0 && r < _REQ_MAX ? request_names[r] : NULL;
}

static SimWorker *sim(LoadClient *c) {
        return (SimWorker *) c;
}

static int sim_send(SimWorker *w, BenchRequest step, const char *method, const char *path, bool admin, const char *body,
                    size_t body_size) {
        ControlPlane *cp = w->run->cp;
        int r;

        w->step = step;
        w->req.size = 0;
        r = http_format_request(&w->req, method, path, cp->port, admin ? cp->admin_token : cp->worker_token, body,
                                body_size);
        if (r < 0)
                return r;
        return load_send_buf(&w->base, &w->req);
}

static int send_register(SimWorker *w) {
        char body[128];
        int n = snprintf(body, sizeof(body), "{\"worker_id\":\"%s\",\"capabilities\":[]}", w->worker_id);
        return sim_send(w, REQ_REGISTER, "POST", "/register", false, body, (size_t) n);
}

static int send_submit(SimWorker *w) {
        static const char body[] = "{\"command\":\"true\",\"args\":[]}";
        static const char blocked[] =
                "{\"command\":\"true\",\"args\":[],\"requirements\":[\"" BLOCKED_REQUIREMENT "\"]}";
        if (w->run->blocked_left > 0) {
                w->run->blocked_left--;
                return sim_send(w, REQ_SUBMIT, "POST", "/jobs", true, blocked, sizeof(blocked) - 1);
        }
        return sim_send(w, REQ_SUBMIT, "POST", "/jobs", true, body, sizeof(body) - 1);
}

static int send_next_job(SimWorker *w) {
        char path[96];
        snprintf(path, sizeof(path), "/next-job?worker_id=%s", w->worker_id);
        return sim_send(w, REQ_NEXT_JOB, "GET", path, false, NULL, 0);
}

static int send_ack(SimWorker *w) {
        char body[512];
        int n = snprintf(body, sizeof(body), "{\"job_id\":\"%s\",\"worker_id\":\"%s\",\"assignment_id\":\"%s\"}",
                         w->job_id, w->worker_id, w->assignment_id);
        return sim_send(w, REQ_ACK, "POST", "/ack", false, body, (size_t) n);
}

static int send_heartbeat(SimWorker *w) {
        char body[512];
        int n = snprintf(body, sizeof(body), "{\"worker_id\":\"%s\",\"current_job_id\":\"%s\",\"seq\":%" PRId64 "}",
                         w->worker_id, w->job_id, ++w->heartbeat_seq);
        return sim_send(w, REQ_HEARTBEAT, "POST", "/heartbeat", false, body, (size_t) n);
}

/* What entropy-worker sends for a job whose stdout and stderr are empty, artifacts kept locally. */
static int send_complete(SimWorker *w) {
        char body[2048];
        int n = snprintf(body, sizeof(body),
                         "{\"job_id\":\"%1$s\",\"worker_id\":\"%2$s\",\"assignment_id\":\"%3$s\","
                         "\"completion_seq\":1,\"exit_code\":0,\"result_summary\":\"exit status 0\","
                         "\"stdout_path\":\"/var/lib/entropy-worker/%2$s/jobs/%1$s/stdout\","
                         "\"stderr_path\":\"/var/lib/entropy-worker/%2$s/jobs/%1$s/stderr\","
                         "\"stdout_tmp_path\":\"/var/lib/entropy-worker/%2$s/jobs/%1$s/stdout.tmp\","
                         "\"stderr_tmp_path\":\"/var/lib/entropy-worker/%2$s/jobs/%1$s/stderr.tmp\","
                         "\"stdout_sha256\":\"" SHA256_EMPTY "\",\"stderr_sha256\":\"" SHA256_EMPTY "\"}",
                         w->job_id, w->worker_id, w->assignment_id);
        if (n < 0 || (size_t) n >= sizeof(body))
                return -ENOBUFS;
        return sim_send(w, REQ_COMPLETE, "POST", "/complete", false, body, (size_t) n);
}

/* Starts the next cycle of the run's mode, or finishes the worker when the bounds say so. */
static int sim_begin_cycle(SimWorker *w) {
        if (!load_may_start_cycle(&w->run->load)) {
                load_client_finish(&w->base);
                return 0;
        }
        return send_submit(w);
}

static int sim_start(LoadClient *c) {
        SimWorker *w = sim(c);
        if (w->run->mode == MODE_PRELOAD)
                return sim_begin_cycle(w);
        return send_register(w);
}

static ssize_t sim_parse(LoadClient *c, const char *data, size_t size) {
        SimWorker *w = sim(c);
        ssize_t k = http_parse_reply(data, size, &w->reply);
        if (k > 0)
                c->close_after = w->reply.close;
        return k;
}

/* A reply the contract does not allow here: counted, the first few logged, the worker stops
 * (whatever it held is left to the control plane's lease expiry, and shows up in the check). */
static int sim_unexpected(SimWorker *w) {
        EntropyLoad *run = w->run;

        if (run->errors++ < MAX_LOGGED_ERRORS)
                log_error("%s: %s answered %u: %.*s", w->worker_id, bench_request_to_string(w->step), w->reply.status,
                          (int) MIN(w->reply.body_size, (size_t) 300), w->reply.body);
        load_client_finish(&w->base);
        return 0;
}

static int copy_field(json_object *o, const char *key, char *dst, size_t size) {
        JsonError err;
        const char *v;
        int r = json_get_string(o, key, size - 1, true, &v, &err);
        if (r < 0)
                return r;
        strcpy(dst, v);
        return 0;
}

static int sim_claimed(SimWorker *w) {
        _cleanup_json_ json_object *o = NULL;
        JsonError err;
        int r;

        r = json_parse_object(w->reply.body, w->reply.body_size, &o, &err);
        if (r >= 0)
                r = copy_field(o, "job_id", w->job_id, sizeof(w->job_id));
        if (r >= 0)
                r = copy_field(o, "assignment_id", w->assignment_id, sizeof(w->assignment_id));
        if (r < 0)
                return sim_unexpected(w);
        return send_ack(w);
}

/* The job is acked (RUNNING): carry on with the cycle, or keep it running (MODE_HOLD). */
static int sim_acked(SimWorker *w) {
        if (w->run->mode == MODE_HOLD) {
                load_cycle_done(&w->run->load);
                load_client_finish(&w->base);
                return 0;
        }
        return send_heartbeat(w);
}

static int sim_next(SimWorker *w, unsigned status) {
        switch (w->step) {
        case REQ_REGISTER:
                return status == 200 ? sim_begin_cycle(w) : sim_unexpected(w);
        case REQ_SUBMIT:
                if (status != 201)
                        return sim_unexpected(w);
                if (w->run->mode != MODE_PRELOAD)
                        return send_next_job(w);
                load_cycle_done(&w->run->load);
                return sim_begin_cycle(w);
        case REQ_NEXT_JOB:
                if (status == 204) {
                        w->run->empty_polls++;
                        return send_next_job(w);
                }
                return status == 200 ? sim_claimed(w) : sim_unexpected(w);
        case REQ_ACK:
                return status == 200 ? sim_acked(w) : sim_unexpected(w);
        case REQ_HEARTBEAT:
                return status == 200 ? send_complete(w) : sim_unexpected(w);
        case REQ_COMPLETE:
                if (status != 200)
                        return sim_unexpected(w);
                load_cycle_done(&w->run->load);
                return sim_begin_cycle(w);
        default:
                return -EINVAL;
        }
}

static int sim_on_reply(LoadClient *c, const char *data, size_t size, usec_t latency) {
        SimWorker *w = sim(c);
        unsigned status = w->reply.status;
        int r;

        /* Claim latency counts the GET /next-job calls that returned a job, nothing else. */
        if (w->step != REQ_NEXT_JOB || status == 200) {
                r = latency_add(&w->run->result->latency[w->step], latency);
                if (r < 0)
                        return r;
        }
        return sim_next(w, status);
}

static const LoadOps sim_ops = {
        .parse = sim_parse,
        .on_reply = sim_on_reply,
        .start = sim_start,
};

static void sim_workers_free(SimWorker *w, size_t n) {
        for (size_t i = 0; i < n; i++) {
                load_client_free(&w[i].base);
                buf_free(&w[i].req);
        }
        free(w);
}

/* One closed-loop run of n simulated workers in the given mode, the first `blocked` of its submits
 * jobs that no simulated worker can take; progress, if given, is called every few seconds. */
static int entropy_run_progress(ControlPlane *cp, LoadMode mode, size_t n, usec_t duration, uint64_t max_cycles,
                                uint64_t blocked, EntropyResult *result, EntropyLoad *ret, void (*progress)(Load *l)) {
        _cleanup_free_ LoadClient **clients = NULL;
        SimWorker *w;
        int r;

        *ret = (EntropyLoad){.cp = cp, .mode = mode, .result = result, .blocked_left = blocked};
        w = calloc(n, sizeof(SimWorker));
        clients = calloc(n, sizeof(LoadClient *));
        if (!w || !clients) {
                free(w);
                return log_oom();
        }
        r = load_init(&ret->load, cp->port, duration, max_cycles, DRAIN_USEC);
        ret->load.progress = progress;
        for (size_t i = 0; r >= 0 && i < n; i++) {
                w[i].run = ret;
                /* Sequence numbers only grow, even across runs on a reused database. */
                w[i].heartbeat_seq = (int64_t) now_realtime_usec();
                snprintf(w[i].worker_id, sizeof(w[i].worker_id), "bench-%03zu", i);
                clients[i] = &w[i].base;
                r = load_add_client(&ret->load, &w[i].base, &sim_ops, (unsigned) i);
        }
        if (r < 0)
                log_error_errno(r, "Failed to connect to 127.0.0.1:%u: %m", (unsigned) cp->port);
        else
                r = load_run(&ret->load, clients, n);
        load_done(&ret->load);
        sim_workers_free(w, n);
        return r;
}

int control_plane_submit(ControlPlane *cp, size_t clients, uint64_t n, uint64_t *ret_done) {
        EntropyResult scratch = {};
        EntropyLoad run;
        int r;

        r = entropy_run_progress(cp, MODE_PRELOAD, clients, PRELOAD_MAX_USEC, n, 0, &scratch, &run, NULL);
        for (size_t i = 0; i < _REQ_MAX; i++)
                latency_free(&scratch.latency[i]);
        *ret_done = run.load.cycles;
        if (r >= 0 && run.errors > 0)
                r = -EIO;
        return r;
}

static void preload_progress(Load *l) {
        usec_t el = now_monotonic_usec() - l->started_at;
        log_info("preload: %" PRIu64 " of %" PRIu64 " jobs submitted in %.0f s (%.0f/s)", l->cycles, l->max_cycles,
                 (double) el / USEC_PER_SEC, (double) l->cycles * USEC_PER_SEC / (double) MAX(el, (usec_t) 1));
}

/* Tops the pending queue up to --preload jobs through POST /jobs, K submits in flight, the first
 * --blocked of them jobs no simulated worker can take (the PENDING jobs already stored count as
 * the first). A reused --state-directory keeps what an earlier run preloaded, so the slow part is
 * paid once. */
static int phase_preload(ControlPlane *cp, const BenchSettings *s, EntropyResult *res) {
        uint64_t counts[_JOB_STATE_MAX];
        EntropyResult scratch = {};
        EntropyLoad run;
        int r;

        if (s->preload <= 0)
                return 0;
        r = control_plane_count_jobs(cp, counts);
        if (r < 0)
                return r;
        res->preload_target = (uint64_t) s->preload;
        res->preload_existing = counts[JOB_PENDING];
        if (res->preload_existing >= res->preload_target)
                return 0;
        uint64_t blocked =
                (uint64_t) s->blocked > res->preload_existing ? (uint64_t) s->blocked - res->preload_existing : 0;
        r = entropy_run_progress(cp, MODE_PRELOAD, (size_t) s->workers, PRELOAD_MAX_USEC,
                                 res->preload_target - res->preload_existing, blocked, &scratch, &run,
                                 preload_progress);
        res->preload_blocked = blocked - run.blocked_left;
        for (size_t i = 0; i < _REQ_MAX; i++)
                latency_free(&scratch.latency[i]);
        res->preload_done = run.load.cycles;
        res->preload_elapsed = run.load.finished_at - run.load.started_at;
        res->errors += run.errors;
        return r;
}

static void verify_counts(EntropyResult *res, const uint64_t before[_JOB_STATE_MAX],
                          const uint64_t after[_JOB_STATE_MAX]) {
        uint64_t done = after[JOB_COMPLETED] - before[JOB_COMPLETED];

        res->store_completed = after[JOB_COMPLETED];
        res->store_pending = after[JOB_PENDING];
        res->store_other = 0;
        for (int st = 0; st < _JOB_STATE_MAX; st++)
                if (st != JOB_COMPLETED && st != JOB_PENDING) {
                        res->store_other += after[st];
                        if (after[st] != before[st]) {
                                snprintf(res->verify_detail, sizeof(res->verify_detail),
                                         "%s jobs went from %" PRIu64 " to %" PRIu64, job_state_to_string(st),
                                         before[st], after[st]);
                                return;
                        }
                }
        if (done != res->lifecycles)
                snprintf(res->verify_detail, sizeof(res->verify_detail),
                         "%" PRIu64 " lifecycles answered but %" PRIu64 " jobs became COMPLETED", res->lifecycles,
                         done);
        else if (after[JOB_PENDING] != before[JOB_PENDING])
                snprintf(res->verify_detail, sizeof(res->verify_detail),
                         "PENDING jobs went from %" PRIu64 " to %" PRIu64, before[JOB_PENDING], after[JOB_PENDING]);
        else {
                res->verified = true;
                snprintf(res->verify_detail, sizeof(res->verify_detail),
                         "every one of the %" PRIu64 " jobs is COMPLETED; queue depth unchanged", done);
        }
}

/* The measured phase: full lifecycles for --duration or --jobs, then the store is asked whether
 * it agrees with what the workers were told. */
static int phase_lifecycles(ControlPlane *cp, const BenchSettings *s, EntropyResult *res) {
        uint64_t before[_JOB_STATE_MAX], after[_JOB_STATE_MAX], journal0 = 0, journal1 = 0;
        EntropyLoad run;
        usec_t cpu0 = 0, cpu1 = 0;
        int r;

        r = control_plane_count_jobs(cp, before);
        if (r < 0)
                return r;
        bool have_journal = control_plane_metric(cp, "entropy_journal_failures_total", &journal0) >= 0;
        res->journal_failures = -1;
        res->journald = access("/run/systemd/journal/socket", F_OK) >= 0;
        bool have_cpu = control_plane_cpu(cp, &cpu0) >= 0;
        r = entropy_run_progress(cp, MODE_LIFECYCLE, (size_t) s->workers, s->duration, (uint64_t) s->jobs, 0, res, &run,
                                 NULL);
        res->ran = true;
        res->lifecycles = run.load.cycles;
        res->elapsed = run.load.finished_at - run.load.started_at;
        res->requests = run.load.requests;
        res->reconnects = run.load.reconnects;
        res->client_cpu = run.load.cpu;
        res->errors += run.errors;
        res->empty_polls = run.empty_polls;
        snprintf(res->verify_detail, sizeof(res->verify_detail), "not checked: the load did not finish");
        if (r < 0)
                return r;
        /* CPU time per lifecycle does not depend on what else the machine runs, as throughput does. */
        if (have_cpu && control_plane_cpu(cp, &cpu1) >= 0)
                res->server_cpu = cpu1 - cpu0;
        (void) control_plane_memory(cp, &res->peak_rss_kib, &res->rss_kib);
        if (have_journal && control_plane_metric(cp, "entropy_journal_failures_total", &journal1) >= 0)
                res->journal_failures = (int64_t) (journal1 - journal0);
        r = control_plane_count_jobs(cp, after);
        if (r < 0)
                return r;
        verify_counts(res, before, after);
        return 0;
}

/* Leaves one RUNNING job per simulated worker, then restarts the control plane --startup-runs
 * times, each time from exec to READY=1 (which includes opening the store and the recovery
 * sweep that extends the live leases). */
static int phase_startup(ControlPlane *cp, const BenchSettings *s, EntropyResult *res) {
        uint64_t counts[_JOB_STATE_MAX];
        EntropyResult scratch = {};
        EntropyLoad run;
        int r;

        r = entropy_run_progress(cp, MODE_HOLD, (size_t) s->workers, DRAIN_USEC, (uint64_t) s->workers, 0, &scratch,
                                 &run, NULL);
        for (size_t i = 0; i < _REQ_MAX; i++)
                latency_free(&scratch.latency[i]);
        res->errors += run.errors;
        if (r < 0)
                return r;
        r = control_plane_count_jobs(cp, counts);
        if (r < 0)
                return r;
        for (int st = 0; st < _JOB_STATE_MAX; st++)
                res->startup_jobs += counts[st];
        res->startup_held = counts[JOB_RUNNING];
        for (unsigned i = 0; i < (unsigned) s->startup_runs && i < ELEMENTSOF(res->startup); i++) {
                r = control_plane_stop(cp);
                if (r >= 0)
                        r = control_plane_start(cp, &res->startup[i]);
                if (r < 0)
                        return r;
                res->n_startup++;
                (void) control_plane_memory(cp, &res->startup_rss_kib, NULL);
        }
        return 0;
}

static int entropy_phases(ControlPlane *cp, const BenchSettings *s, EntropyResult *res) {
        int r;

        r = control_plane_start(cp, NULL);
        if (r < 0)
                return r;
        r = phase_preload(cp, s, res);
        if (r < 0)
                return r;
        r = phase_lifecycles(cp, s, res);
        if (r < 0)
                return r;
        if (s->startup && cp->spawned)
                r = phase_startup(cp, s, res);
        else if (s->startup)
                log_warning("--startup needs a control plane the bench starts itself; skipped with --url.");
        return r;
}

int bench_entropy(const BenchSettings *s, const char *workdir, EntropyResult *res) {
        ControlPlane cp;
        int r;

        r = control_plane_setup(&cp, s, workdir);
        if (r >= 0)
                r = entropy_phases(&cp, s, res);
        if (r >= 0)
                r = control_plane_stop(&cp);
        control_plane_done(&cp);
        return r;
}
