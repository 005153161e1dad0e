/* api-worker.c: the worker endpoints of the wire contract (register, next-job, ack, heartbeat,
 * complete, fail, reconnect). The fencing, idempotency and state rules live in jobs.c and
 * workers.c; this file only turns JSON into their plain C arguments and their results into the
 * contract's answers. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api-util.h"
#include "job-json.h"
#include "metrics-histogram.h"
#include "jobs.h"
#include "log.h"
#include "strv.h"
#include "time-util.h"
#include "workers.h"

#define OPTIONAL(expr)                                                                                                 \
        ({                                                                                                             \
                int _r = (expr);                                                                                       \
                _r == -ENOENT ? 0 : _r;                                                                                \
        })
#define EXIT_CODE_MIN (-1000000LL)
#define EXIT_CODE_MAX 1000000LL

static int reply_status(HttpResponse *resp, const char *status, const char *job_id) {
        json_object *body = json_object_new_object();
        if (!body)
                return -ENOMEM;
        json_add_string(body, "status", status);
        if (job_id)
                json_add_string(body, "job_id", job_id);
        return api_reply(resp, 200, body);
}

/* A worker's call for itself proves it alive as a heartbeat does (worker_contact()): its state
 * stays ONLINE while it claims and runs jobs even when its heartbeats do not get through, and an
 * OFFLINE worker that calls again is back. Before the call itself, so that the call's own events
 * follow the worker's return. An unregistered worker is left to the call to refuse. */
static int note_contact(Control *c, const Origin *o, const char *worker_id) {
        int r = worker_contact(c, o, worker_id);
        return r == -EPERM ? 0 : r;
}

/* The numeric IP of a peer address as HttpRequest.remote has it ("192.0.2.1:40000",
 * "[2001:db8::1]:40000"), or NULL when there is none ("unknown", a test request). */
static const char *peer_ip(const char *remote, char *buf, size_t size) {
        const char *colon = strrchr(remote, ':');
        size_t n;

        if (!colon)
                return NULL;
        if (remote[0] == '[') {
                remote++;
                colon--;
                if (colon < remote || *colon != ']')
                        return NULL;
        }
        n = (size_t) (colon - remote);
        if (n == 0 || n >= size)
                return NULL;
        memcpy(buf, remote, n);
        buf[n] = 0;
        return ip_address_is_numeric(buf) ? buf : NULL;
}

int api_post_register(Control *c, const HttpRequest *req, HttpResponse *resp) {
        _cleanup_json_ json_object *o = NULL;
        _cleanup_strv_free_ char **caps = NULL, **gpus = NULL;
        WorkerRegistration reg = {};
        JsonError jerr = {};
        OpError err = {};
        char actor[LIMIT_ID_LEN + 16], peer[sizeof(req->remote)];
        int r;

        r = api_parse_body(req, resp, &o);
        if (r <= 0)
                return r;
        if (json_get_string(o, "worker_id", LIMIT_ID_LEN, true, &reg.worker_id, &jerr) < 0 ||
            OPTIONAL(json_get_string(o, "nonce", LIMIT_ID_LEN, false, &reg.nonce, &jerr)) < 0 ||
            OPTIONAL(json_get_string(o, "instance_id", LIMIT_ID_LEN, false, &reg.instance_id, &jerr)) < 0 ||
            OPTIONAL(json_get_strv(o, "capabilities", LIMIT_REQUIREMENTS, LIMIT_CAPABILITY_LEN, false, &caps, &jerr)) <
                    0 ||
            OPTIONAL(json_get_int64(o, "wake_port", 0, 65535, false, &reg.wake_port, &jerr)) < 0 ||
            OPTIONAL(json_get_string(o, "wake_address", INET6_ADDRSTRLEN, false, &reg.wake_address, &jerr)) < 0 ||
            OPTIONAL(json_get_string(o, "version", LIMIT_VERSION_LEN, false, &reg.version, &jerr)) < 0 ||
            OPTIONAL(json_get_int64(o, "slots", 1, LIMIT_SLOTS, false, &reg.slots, &jerr)) < 0 ||
            OPTIONAL(json_get_strv(o, "gpus", LIMIT_GPUS, LIMIT_CAPABILITY_LEN, false, &gpus, &jerr)) < 0)
                return api_reply_json_error(resp, &jerr);
        reg.capabilities = caps;
        reg.gpus = gpus;
        if (reg.wake_port > 0 && !reg.wake_address)
                reg.wake_address = peer_ip(req->remote, peer, sizeof(peer));
        Origin origin = api_worker_origin(req, reg.worker_id, actor, sizeof(actor));
        r = worker_register(c, &origin, &reg, &err);
        if (r < 0)
                return api_reply_error(resp, r, &err);
        json_object *body = json_object_new_object();
        if (!body)
                return -ENOMEM;
        json_add_string(body, "status", "ok");
        json_add_string(body, "worker_id", reg.worker_id);
        json_add_bool(body, "restarted", r > 0);
        return api_reply(resp, 200, body);
}

int api_get_next_job(Control *c, const HttpRequest *req, HttpResponse *resp) {
        _cleanup_(job_freep) Job *j = NULL;
        const char *worker_id = http_request_query(req, "worker_id");
        char actor[LIMIT_ID_LEN + 16];
        int r;

        if (isempty(worker_id) || strlen(worker_id) > LIMIT_ID_LEN)
                return http_response_error(resp, 400, "query argument worker_id is required (at most %d bytes)",
                                           LIMIT_ID_LEN);
        Origin origin = api_worker_origin(req, worker_id, actor, sizeof(actor));
        usec_t started = now_monotonic_usec();
        r = note_contact(c, &origin, worker_id);
        if (r < 0)
                return r;
        r = jobs_claim(c, &origin, worker_id, &j);
        if (r < 0)
                return api_reply_error(resp, r, &(OpError){.message = "worker not registered"});
        live_metrics_observe_claim(c->live_metrics, now_monotonic_usec() - started, j, control_now(c));
        if (r == 0)
                return http_response_text(resp, 204, NULL, NULL, 0);
        json_object *body = job_assignment_to_json(j);
        /* The lease length itself: the worker would otherwise estimate it from
         * assignment_expires_at and its own clock (worker/lease.c). */
        if (body)
                json_add_int64(body, "lease_timeout_ms", (int64_t) (c->settings.lease_timeout / USEC_PER_MSEC));
        return api_reply(resp, 200, body);
}

/* job_id, worker_id and assignment_id, the fencing triple of every job call. */
static int get_triple(json_object *o, const char **job_id, const char **worker_id, const char **assignment_id,
                      JsonError *jerr) {
        int r;
        if ((r = json_get_string(o, "job_id", LIMIT_ID_LEN, true, job_id, jerr)) < 0 ||
            (r = json_get_string(o, "worker_id", LIMIT_ID_LEN, true, worker_id, jerr)) < 0 ||
            (r = json_get_string(o, "assignment_id", LIMIT_ID_LEN, true, assignment_id, jerr)) < 0)
                return r;
        return 0;
}

int api_post_ack(Control *c, const HttpRequest *req, HttpResponse *resp) {
        _cleanup_json_ json_object *o = NULL;
        const char *job_id, *worker_id, *assignment_id;
        JsonError jerr = {};
        OpError err = {};
        char actor[LIMIT_ID_LEN + 16];
        int r;

        r = api_parse_body(req, resp, &o);
        if (r <= 0)
                return r;
        if (get_triple(o, &job_id, &worker_id, &assignment_id, &jerr) < 0)
                return api_reply_json_error(resp, &jerr);
        Origin origin = api_worker_origin(req, worker_id, actor, sizeof(actor));
        r = note_contact(c, &origin, worker_id);
        if (r < 0)
                return r;
        r = jobs_ack(c, &origin, job_id, worker_id, assignment_id, &err);
        if (r < 0)
                return api_reply_error(resp, r, &err);
        return reply_status(resp, "RUNNING", job_id);
}

/* Adds job_id (once) to the held list; assignment_id fills in one not yet known. */
static int held_add(HeldJob *jobs, size_t *n, const char *job_id, const char *assignment_id, JsonError *jerr) {
        if (isempty(job_id) || strlen(job_id) > LIMIT_ID_LEN || (assignment_id && strlen(assignment_id) > LIMIT_ID_LEN)) {
                snprintf(jerr->message, sizeof(jerr->message), "current job and assignment ids are 1 to %d bytes",
                         LIMIT_ID_LEN);
                return -EINVAL;
        }
        for (size_t i = 0; i < *n; i++)
                if (streq(jobs[i].job_id, job_id)) {
                        if (!jobs[i].assignment_id)
                                jobs[i].assignment_id = assignment_id;
                        return 0;
                }
        if (*n >= LIMIT_RECONNECT_ENTRIES) {
                snprintf(jerr->message, sizeof(jerr->message), "more than %d current jobs", LIMIT_RECONNECT_ENTRIES);
                return -EINVAL;
        }
        jobs[(*n)++] = (HeldJob){.job_id = job_id, .assignment_id = assignment_id};
        return 0;
}

static const char *entry_string(json_object *e, const char *key) {
        json_object *v = NULL;
        if (!json_object_object_get_ex(e, key, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

/* current_job_id, current_job_ids [id] and current_jobs [{job_id, assignment_id}] merged, with
 * current_job_id first. Strings are borrowed from o. */
static int parse_held_jobs(json_object *o, HeldJob **ret, size_t *ret_n, JsonError *jerr) {
        static const char *const lists[] = {"current_jobs", "current_job_ids"};
        const char *current = NULL;
        size_t n = 0;
        int r;

        r = OPTIONAL(json_get_string(o, "current_job_id", LIMIT_ID_LEN, false, &current, jerr));
        if (r < 0)
                return r;
        _cleanup_free_ HeldJob *jobs = calloc(LIMIT_RECONNECT_ENTRIES, sizeof(HeldJob));
        if (!jobs)
                return -ENOMEM;
        if (!isempty(current) && (r = held_add(jobs, &n, current, NULL, jerr)) < 0)
                return r;
        for (size_t l = 0; l < ELEMENTSOF(lists); l++) {
                json_object *a = NULL;
                if (!json_object_object_get_ex(o, lists[l], &a) || json_object_is_type(a, json_type_null))
                        continue;
                if (!json_object_is_type(a, json_type_array)) {
                        snprintf(jerr->message, sizeof(jerr->message), "field '%s' must be an array", lists[l]);
                        return -EINVAL;
                }
                for (size_t i = 0; i < json_object_array_length(a); i++) {
                        json_object *e = json_object_array_get_idx(a, i);
                        bool is_obj = json_object_is_type(e, json_type_object);
                        const char *id = is_obj ? entry_string(e, "job_id")
                                                : json_object_is_type(e, json_type_string) ? json_object_get_string(e)
                                                                                            : NULL;
                        r = held_add(jobs, &n, id, is_obj ? entry_string(e, "assignment_id") : NULL, jerr);
                        if (r < 0)
                                return r;
                }
        }
        *ret = TAKE_PTR(jobs);
        *ret_n = n;
        return 0;
}

static json_object *strv_to_json_array(char *const *l) {
        json_object *a = json_object_new_array();
        STRV_FOREACH (id, (char **) l)
                if (a && json_object_array_add(a, json_object_new_string(*id)) < 0) {
                        json_object_put(a);
                        return NULL;
                }
        return a;
}

#define METRICS_DROPPED "{\"dropped\":\"the worker's metrics were larger than the limit\"}"

/* Metrics are telemetry: too large, they are replaced by a note saying so, and the heartbeat,
 * which renews the leases of the worker's jobs, goes through. *ret_dropped says it happened. */
static int parse_metrics(json_object *o, HttpResponse *resp, const char *worker_id, const char **ret,
                         bool *ret_dropped) {
        static RateLimit warning;
        json_object *m = NULL;

        *ret = NULL;
        *ret_dropped = false;
        if (!json_object_object_get_ex(o, "metrics", &m) || json_object_is_type(m, json_type_null))
                return 1;
        if (!json_object_is_type(m, json_type_object))
                return http_response_error(resp, 400, "field 'metrics' must be an object");
        *ret = json_object_to_json_string_ext(m, JSON_C_TO_STRING_PLAIN);
        if (!*ret)
                return -ENOMEM;
        if (strlen(*ret) <= LIMIT_METRICS_LEN)
                return 1;
        *ret = METRICS_DROPPED;
        *ret_dropped = true;
        if (ratelimit_allow(&warning, USEC_PER_MINUTE, NULL))
                log_warning("Worker %s sends heartbeat metrics larger than %d bytes: not stored (this message "
                            "repeats at most once a minute).",
                            worker_id, LIMIT_METRICS_LEN);
        return 1;
}

int api_post_heartbeat(Control *c, const HttpRequest *req, HttpResponse *resp) {
        _cleanup_json_ json_object *o = NULL;
        _cleanup_free_ HeldJob *jobs = NULL;
        _cleanup_strv_free_ char **abort_jobs = NULL;
        Heartbeat hb = {};
        JsonError jerr = {};
        OpError err = {};
        bool metrics_dropped;
        char actor[LIMIT_ID_LEN + 16];
        int r;

        r = api_parse_body(req, resp, &o);
        if (r <= 0)
                return r;
        if (json_get_string(o, "worker_id", LIMIT_ID_LEN, true, &hb.worker_id, &jerr) < 0 ||
            json_get_int64(o, "seq", 0, INT64_MAX, true, &hb.seq, &jerr) < 0)
                return api_reply_json_error(resp, &jerr);
        r = parse_held_jobs(o, &jobs, &hb.n_jobs, &jerr);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return api_reply_json_error(resp, &jerr);
        hb.jobs = jobs;
        r = parse_metrics(o, resp, hb.worker_id, &hb.metrics_json, &metrics_dropped);
        if (r <= 0)
                return r;
        Origin origin = api_worker_origin(req, hb.worker_id, actor, sizeof(actor));
        r = worker_heartbeat_report(c, &origin, &hb, &abort_jobs, &err);
        if (r < 0)
                return api_reply_error(resp, r, &err);
        json_object *body = json_object_new_object();
        if (!body)
                return -ENOMEM;
        json_add_string(body, "status", r == OP_NOOP ? "ignored" : "ok");
        /* The length the renewals run for now: a restart with a shorter lease-timeout shortens
         * the workers' own count too (worker/lease.c), or they would stop a job after its lease
         * here ran out. */
        json_add_int64(body, "lease_timeout_ms", (int64_t) (c->settings.lease_timeout / USEC_PER_MSEC));
        if (metrics_dropped)
                json_object_object_add(body, "metrics_dropped", json_object_new_boolean(true));
        /* The jobs the worker reported that are no longer its own (aborted, reassigned, lost,
         * terminal): it kills them at once rather than waiting for its lease to run out or its
         * /complete to be a no-op. cancel_jobs: the same list under its earlier name. */
        json_object *a = strv_to_json_array(abort_jobs), *alias = strv_to_json_array(abort_jobs);
        if (!a || !alias) {
                json_object_put(a);
                json_object_put(alias);
                json_object_put(body);
                return -ENOMEM;
        }
        json_object_object_add(body, "abort_jobs", a);
        json_object_object_add(body, "cancel_jobs", alias);
        return api_reply(resp, 200, body);
}

/* The fields of a completion record (for /complete and /reconnect); strings borrowed from o. */
static int parse_completion(json_object *o, Completion *x, JsonError *jerr) {
        static const struct {
                const char *key;
                size_t offset;
                size_t max;
        } fields[] = {
#define F(name, max) {#name, offsetof(Completion, name), max}
                F(result_summary, LIMIT_TEXT_LEN),
                F(artifact_id, LIMIT_ID_LEN),
                F(stdout_path, LIMIT_PATH_LEN),
                F(stderr_path, LIMIT_PATH_LEN),
                F(stdout_tmp_path, LIMIT_PATH_LEN),
                F(stderr_tmp_path, LIMIT_PATH_LEN),
                F(stdout_sha256, 64),
                F(stderr_sha256, 64),
                F(artifact_backend, LIMIT_ID_LEN),
                F(artifact_location, LIMIT_PATH_LEN),
                F(artifact_upload_state, LIMIT_ID_LEN),
                F(artifact_upload_error, LIMIT_TEXT_LEN),
#undef F
        };
        int r;

        *x = (Completion){};
        if ((r = get_triple(o, &x->job_id, &x->worker_id, &x->assignment_id, jerr)) < 0 ||
            (r = OPTIONAL(json_get_int64(o, "completion_seq", 0, INT64_MAX, false, &x->completion_seq, jerr))) < 0)
                return r;
        r = json_get_int64(o, "exit_code", EXIT_CODE_MIN, EXIT_CODE_MAX, false, &x->exit_code, jerr);
        if (r < 0 && r != -ENOENT)
                return r;
        x->has_exit_code = r == 0;
        for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
                const char **dst = (const char **) ((char *) x + fields[i].offset);
                r = OPTIONAL(json_get_string(o, fields[i].key, fields[i].max, false, dst, jerr));
                if (r < 0)
                        return r;
        }
        return 0;
}

static int parse_failure(json_object *o, Failure *f, JsonError *jerr) {
        bool retryable = true;
        int r;

        *f = (Failure){};
        if ((r = get_triple(o, &f->job_id, &f->worker_id, &f->assignment_id, jerr)) < 0 ||
            (r = OPTIONAL(json_get_string(o, "error", LIMIT_TEXT_LEN, false, &f->error, jerr))) < 0 ||
            (r = OPTIONAL(json_get_string(o, "failure_kind", LIMIT_ID_LEN, false, &f->failure_kind, jerr))) < 0 ||
            (r = OPTIONAL(json_get_bool(o, "retryable", false, &retryable, jerr))) < 0 ||
            (r = OPTIONAL(json_get_bool(o, "handback", false, &f->handback, jerr))) < 0)
                return r;
        f->not_retryable = !retryable;
        r = json_get_int64(o, "exit_code", EXIT_CODE_MIN, EXIT_CODE_MAX, false, &f->exit_code, jerr);
        if (r < 0 && r != -ENOENT)
                return r;
        f->has_exit_code = r == 0;
        return 0;
}

int api_post_complete(Control *c, const HttpRequest *req, HttpResponse *resp) {
        _cleanup_json_ json_object *o = NULL;
        Completion x;
        JsonError jerr = {};
        OpError err = {};
        JobState state = JOB_COMPLETED;
        char actor[LIMIT_ID_LEN + 16];
        int r;

        r = api_parse_body(req, resp, &o);
        if (r <= 0)
                return r;
        if (parse_completion(o, &x, &jerr) < 0)
                return api_reply_json_error(resp, &jerr);
        Origin origin = api_worker_origin(req, x.worker_id, actor, sizeof(actor));
        r = note_contact(c, &origin, x.worker_id);
        if (r < 0)
                return r;
        r = jobs_complete(c, &origin, &x, &state, &err);
        if (r < 0)
                return api_reply_error(resp, r, &err);
        return reply_status(resp, job_state_to_string(state), x.job_id);
}

int api_post_fail(Control *c, const HttpRequest *req, HttpResponse *resp) {
        _cleanup_json_ json_object *o = NULL;
        Failure f;
        JsonError jerr = {};
        OpError err = {};
        JobState state = JOB_FAILED;
        char actor[LIMIT_ID_LEN + 16];
        int r;

        r = api_parse_body(req, resp, &o);
        if (r <= 0)
                return r;
        if (parse_failure(o, &f, &jerr) < 0)
                return api_reply_json_error(resp, &jerr);
        Origin origin = api_worker_origin(req, f.worker_id, actor, sizeof(actor));
        r = note_contact(c, &origin, f.worker_id);
        if (r < 0)
                return r;
        r = jobs_fail(c, &origin, &f, &state, &err);
        if (r < 0)
                return api_reply_error(resp, r, &err);
        return reply_status(resp, job_state_to_string(state), f.job_id);
}

/* One replayed record; the worker_id defaults to the reconnecting worker's. */
static int parse_replay(json_object *e, const char *worker_id, ReplayEntry *out, JsonError *jerr) {
        const char *status = NULL;
        int r;

        *out = (ReplayEntry){.status = _JOB_STATE_INVALID};
        if (!json_object_is_type(e, json_type_object)) {
                snprintf(jerr->message, sizeof(jerr->message), "the record must be an object");
                return -EINVAL;
        }
        /* Filled in so that get_triple finds a worker_id even when the record omits it. */
        if (!json_object_object_get_ex(e, "worker_id", NULL))
                json_object_object_add(e, "worker_id", json_object_new_string(worker_id));
        if ((r = json_get_string(e, "status", 16, true, &status, jerr)) < 0)
                return r;
        out->status = job_state_from_string(status);
        if (out->status == JOB_COMPLETED)
                return parse_completion(e, &out->completion, jerr);
        if (out->status == JOB_FAILED)
                return parse_failure(e, &out->failure, jerr);
        snprintf(jerr->message, sizeof(jerr->message), "field 'status' must be COMPLETED or FAILED");
        return -EINVAL;
}

/* The records of completed_jobs, and why each refused one was (ReplayEntry.invalid points here). */
typedef struct Replays {
        ReplayEntry *entries;
        JsonError *errors;
        size_t n;
} Replays;

static void replays_done(Replays *r) {
        free(r->entries);
        free(r->errors);
}

/* A record that does not parse is refused alone, as a REJECTED action: answering the whole
 * request 400 would have the worker send it again for ever and never poll or heartbeat again.
 * It keeps the status (for the action's name) and the job and assignment ids it gave, whatever
 * they are, as the worker matches its buffer by them. */
static void replay_refuse(json_object *e, ReplayEntry *out, const JsonError *why) {
        *out = (ReplayEntry){.status = out->status, .invalid = why->message};
        out->completion.job_id = entry_string(e, "job_id");
        out->completion.assignment_id = entry_string(e, "assignment_id");
}

/* Only the shape of the list is the request's: not an array, or too long, is a 400. strict: a
 * bad record is too (D-Bus ReplayResults: an operator is told at once which record is wrong and
 * nothing is half applied; no retry loop to wedge there). */
static int parse_replays(json_object *o, const char *worker_id, bool strict, Replays *ret, JsonError *jerr) {
        json_object *a = NULL;
        size_t n;

        if (!json_object_object_get_ex(o, "completed_jobs", &a) || json_object_is_type(a, json_type_null))
                return 0;
        if (!json_object_is_type(a, json_type_array)) {
                snprintf(jerr->message, sizeof(jerr->message), "field 'completed_jobs' must be an array");
                return -EINVAL;
        }
        n = json_object_array_length(a);
        if (n > LIMIT_RECONNECT_ENTRIES) {
                snprintf(jerr->message, sizeof(jerr->message), "field 'completed_jobs' has more than %d entries",
                         LIMIT_RECONNECT_ENTRIES);
                return -EINVAL;
        }
        _cleanup_free_ ReplayEntry *entries = calloc(n + 1, sizeof(ReplayEntry));
        _cleanup_free_ JsonError *errors = calloc(n + 1, sizeof(JsonError));
        if (!entries || !errors)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                json_object *e = json_object_array_get_idx(a, i);
                int r = parse_replay(e, worker_id, &entries[i], &errors[i]);
                if (r == -ENOMEM)
                        return r;
                if (r < 0 && strict) {
                        snprintf(jerr->message, sizeof(jerr->message), "completed_jobs[%zu]: %.200s", i,
                                 errors[i].message);
                        return r;
                }
                if (r < 0)
                        replay_refuse(e, &entries[i], &errors[i]);
        }
        *ret = (Replays){.entries = TAKE_PTR(entries), .errors = TAKE_PTR(errors), .n = n};
        return 0;
}

static json_object *actions_to_json(const ReconnectAction *a, size_t n) {
        json_object *body = json_object_new_object(), *arr = json_object_new_array();
        if (!body || !arr) {
                json_object_put(body);
                json_object_put(arr);
                return NULL;
        }
        for (size_t i = 0; i < n; i++) {
                json_object *x = json_object_new_object();
                json_add_string(x, "job_id", a[i].job_id);
                json_add_string(x, "assignment_id", a[i].assignment_id);
                json_add_string(x, "action", a[i].action);
                json_add_string(x, "result", a[i].accepted ? "ACCEPTED" : "REJECTED");
                if (a[i].error)
                        json_add_string(x, "error", a[i].error);
                if (a[i].state >= 0)
                        json_add_string(x, "status", job_state_to_string(a[i].state));
                json_object_array_add(arr, x);
        }
        json_add_string(body, "status", "ok");
        json_object_object_add(body, "actions", arr);
        return body;
}

int api_post_reconnect(Control *c, const HttpRequest *req, HttpResponse *resp) {
        return api_post_reconnect_as(c, req, NULL, resp);
}

int api_post_reconnect_as(Control *c, const HttpRequest *req, const Origin *as, HttpResponse *resp) {
        _cleanup_json_ json_object *o = NULL;
        _cleanup_free_ HeldJob *held = NULL;
        _cleanup_(replays_done) Replays replays = {};
        ReconnectAction *actions = NULL;
        size_t n_held = 0, n_actions = 0;
        const char *worker_id;
        JsonError jerr = {};
        char actor[LIMIT_ID_LEN + 16];
        int r;

        r = api_parse_body(req, resp, &o);
        if (r <= 0)
                return r;
        if (json_get_string(o, "worker_id", LIMIT_ID_LEN, true, &worker_id, &jerr) < 0)
                return api_reply_json_error(resp, &jerr);
        /* The jobs it says it holds: the same three fields as a heartbeat's. */
        r = parse_held_jobs(o, &held, &n_held, &jerr);
        if (r >= 0)
                r = parse_replays(o, worker_id, as != NULL, &replays, &jerr);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return api_reply_json_error(resp, &jerr);
        Origin origin = as ? *as : api_worker_origin(req, worker_id, actor, sizeof(actor));
        /* Not when an operator replays a worker's results for it (D-Bus ReplayResults). */
        r = as ? 0 : note_contact(c, &origin, worker_id);
        if (r < 0)
                return r;
        r = jobs_reconnect(c, &origin, worker_id, held, n_held, replays.entries, replays.n, &actions, &n_actions);
        if (r < 0)
                return api_reply_error(resp, r, &(OpError){.message = "worker not registered"});
        json_object *body = actions_to_json(actions, n_actions);
        reconnect_actions_free(actions, n_actions);
        return api_reply(resp, 200, body);
}
