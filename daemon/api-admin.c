/* api-admin.c: the admin endpoints of the wire contract (jobs, abort, workers, events, metrics)
 * and /healthz. Each handler validates its input fully before calling the domain operation, so
 * bad input changes nothing. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api-util.h"
#include "audit.h"
#include "job-json.h"
#include "metrics-histogram.h"
#include "jobs.h"
#include "store.h"
#include "strv.h"
#include "workers.h"


/* Absent optional fields are fine (-ENOENT); anything else negative is a 400. */
#define OPTIONAL(expr)                                                                                                 \
        ({                                                                                                             \
                int _r = (expr);                                                                                       \
                _r == -ENOENT ? 0 : _r;                                                                                \
        })

static int parse_spec(json_object *o, JobSpec *spec, char ***args, char ***reqs, JsonError *err) {
        double scheduled = 0;
        int r;

        job_spec_init(spec);
        if ((r = json_get_string(o, "command", LIMIT_COMMAND_LEN, true, &spec->command, err)) < 0 ||
            (r = OPTIONAL(json_get_strv(o, "args", LIMIT_ARGS, LIMIT_ARG_LEN, false, args, err))) < 0 ||
            (r = OPTIONAL(json_get_string(o, "working_dir", LIMIT_PATH_LEN, false, &spec->working_dir, err))) < 0 ||
            (r = OPTIONAL(json_get_int64(o, "max_attempts", 1, JOBS_MAX_ATTEMPTS_LIMIT, false, &spec->max_attempts,
                                         err))) < 0 ||
            (r = OPTIONAL(json_get_int64(o, "timeout_ms", 0, JOBS_TIMEOUT_MS_MAX, false, &spec->timeout_ms, err))) < 0 ||
            (r = OPTIONAL(json_get_int64(o, "priority", -JOBS_PRIORITY_LIMIT, JOBS_PRIORITY_LIMIT, false, &spec->priority,
                                         err))) < 0 ||
            (r = OPTIONAL(json_get_double(o, "scheduled_at", false, &scheduled, err))) < 0 ||
            (r = OPTIONAL(json_get_bool(o, "needs_gpu", false, &spec->needs_gpu, err))) < 0 ||
            (r = OPTIONAL(
                     json_get_strv(o, "requirements", LIMIT_REQUIREMENTS, LIMIT_CAPABILITY_LEN, false, reqs, err))) < 0)
                return r;
        if (scheduled < 0 || scheduled > JOBS_SCHEDULED_AT_MAX_SEC) {
                snprintf(err->message, sizeof(err->message), "field 'scheduled_at' must be Unix seconds");
                return -EINVAL;
        }
        spec->scheduled_at = (usec_t) llround(scheduled * (double) USEC_PER_SEC);
        spec->args = *args;
        spec->requirements = *reqs;
        return 0;
}

int api_post_jobs(Control *c, const HttpRequest *req, HttpResponse *resp) {
        _cleanup_json_ json_object *o = NULL;
        _cleanup_strv_free_ char **args = NULL, **reqs = NULL;
        char job_id[RANDOM_ID_SIZE];
        JsonError jerr = {};
        OpError err = {};
        JobSpec spec;
        int r;

        r = api_parse_body(req, resp, &o);
        if (r <= 0)
                return r;
        r = parse_spec(o, &spec, &args, &reqs, &jerr);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return api_reply_json_error(resp, &jerr);
        Origin origin = api_origin(req, "admin");
        r = jobs_submit(c, &origin, &spec, job_id, &err);
        if (r < 0)
                return api_reply_error(resp, r, &err);
        json_object *body = json_object_new_object();
        if (!body)
                return -ENOMEM;
        json_add_string(body, "job_id", job_id);
        json_add_string(body, "status", "PENDING");
        return api_reply(resp, 201, body);
}

static int reply_jobs(Control *c, HttpResponse *resp, Job **jobs, size_t n) {
        json_object *a = json_object_new_array();
        usec_t now = control_now(c);
        if (!a)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                json_object_array_add(a, job_to_json(jobs[i], now));
        return api_reply(resp, 200, a);
}

int api_get_jobs(Control *c, const HttpRequest *req, HttpResponse *resp) {
        JobFilter f = JOB_FILTER_ALL;
        const char *status = http_request_query(req, "status");
        const char *worker_id = http_request_query(req, "worker_id");
        int64_t limit = 0;
        Job **jobs = NULL;
        size_t n = 0;
        int r;

        if (!isempty(status)) {
                f.status = job_state_from_string(status);
                if (f.status < 0)
                        return http_response_error(resp, 400, "unknown status '%.64s'", status);
        }
        if (!isempty(worker_id)) {
                if (strlen(worker_id) > LIMIT_ID_LEN)
                        return http_response_error(resp, 400, "worker_id is longer than %d bytes", LIMIT_ID_LEN);
                f.worker_id = worker_id;
        }
        if (api_query_int64(req, "limit", 1, JOBS_LIST_MAX_LIMIT, &limit) < 0)
                return http_response_error(resp, 400, "limit must be between 1 and %d", JOBS_LIST_MAX_LIMIT);
        f.limit = (size_t) limit;
        r = jobs_list(c, &f, &jobs, &n);
        if (r < 0)
                return r;
        r = reply_jobs(c, resp, jobs, n);
        job_array_free(jobs, n);
        return r;
}

int api_get_job(Control *c, const HttpRequest *req, HttpResponse *resp) {
        _cleanup_(job_freep) Job *j = NULL;
        const char *id = req->path && strncmp(req->path, "/jobs/", 6) == 0 ? req->path + 6 : NULL;
        int r;

        if (isempty(id) || strlen(id) > LIMIT_ID_LEN || strchr(id, '/'))
                return http_response_error(resp, 404, "no such job");
        r = jobs_get(c, id, &j);
        if (r == -ENOENT)
                return http_response_error(resp, 404, "no job %s", id);
        if (r < 0)
                return r;
        return api_reply(resp, 200, job_to_json(j, control_now(c)));
}

int api_post_abort(Control *c, const HttpRequest *req, HttpResponse *resp) {
        _cleanup_json_ json_object *o = NULL;
        _cleanup_free_ char *kept = NULL;
        const char *job_id = NULL, *worker_id = NULL, *reason = NULL;
        JsonError jerr = {};
        OpError err = {};
        size_t n = 0;
        int r;

        r = api_parse_body(req, resp, &o);
        if (r <= 0)
                return r;
        if (OPTIONAL(json_get_string(o, "job_id", LIMIT_ID_LEN, false, &job_id, &jerr)) < 0 ||
            OPTIONAL(json_get_string(o, "worker_id", LIMIT_ID_LEN, false, &worker_id, &jerr)) < 0 ||
            OPTIONAL(json_get_string(o, "reason", LIMIT_TEXT_LEN, false, &reason, &jerr)) < 0)
                return api_reply_json_error(resp, &jerr);
        Origin origin = api_origin(req, "admin");
        /* The answer gives the reason the jobs keep, a default one included. */
        if (jobs_abort_reason(&origin, reason, &kept) < 0)
                return -ENOMEM;
        r = jobs_abort(c, &origin, job_id, worker_id, kept, &n, &err);
        if (r < 0)
                return api_reply_error(resp, r, &err);

        json_object *body = json_object_new_object();
        if (!body)
                return -ENOMEM;
        json_add_string(body, "status", "ABORTED");
        json_add_int64(body, "aborted_jobs", (int64_t) n);
        json_add_string(body, "reason", kept);
        if (job_id)
                json_add_string(body, "job_id", job_id);
        if (worker_id)
                json_add_string(body, "worker_id", worker_id);
        return api_reply(resp, 200, body);
}

int api_get_workers(Control *c, const HttpRequest *req, HttpResponse *resp) {
        Worker **w = NULL;
        size_t n = 0;
        usec_t now = control_now(c);
        int r;

        r = workers_list(c, &w, &n);
        if (r < 0)
                return r;
        json_object *a = json_object_new_array();
        for (size_t i = 0; a && i < n; i++)
                json_object_array_add(a, worker_to_json(w[i], now));
        worker_array_free(w, n);
        return api_reply(resp, 200, a);
}

/* POST /remove-worker {"worker_id": ...}: forget an OFFLINE worker that no job is bound to.
 * 200 {status: "removed", worker_id}; 404 unknown; 409 not OFFLINE, or a job is bound to it. */
int api_post_remove_worker(Control *c, const HttpRequest *req, HttpResponse *resp) {
        _cleanup_json_ json_object *o = NULL;
        const char *worker_id;
        JsonError jerr = {};
        OpError err = {};
        int r;

        r = api_parse_body(req, resp, &o);
        if (r <= 0)
                return r;
        if (json_get_string(o, "worker_id", LIMIT_ID_LEN, true, &worker_id, &jerr) < 0)
                return api_reply_json_error(resp, &jerr);
        Origin origin = api_origin(req, "admin");
        r = worker_remove(c, &origin, worker_id, &err);
        if (r < 0)
                return api_reply_error(resp, r, &err);
        json_object *body = json_object_new_object();
        if (!body)
                return -ENOMEM;
        json_add_string(body, "status", "removed");
        json_add_string(body, "worker_id", worker_id);
        return api_reply(resp, 200, body);
}

static int query_id(const HttpRequest *req, const char *key, const char **ret) {
        const char *v = http_request_query(req, key);
        if (isempty(v))
                return 0;
        if (strlen(v) > LIMIT_ID_LEN)
                return -EINVAL;
        *ret = v;
        return 0;
}

int api_get_events(Control *c, const HttpRequest *req, HttpResponse *resp) {
        EventFilter f = {.limit = EVENTS_PAGE_DEFAULT};
        AuditEvent **ev = NULL;
        size_t n = 0;
        int r;

        if (query_id(req, "component", &f.component) < 0 || query_id(req, "event", &f.event) < 0 ||
            query_id(req, "worker_id", &f.worker_id) < 0 || query_id(req, "job_id", &f.job_id) < 0)
                return http_response_error(resp, 400, "filters are limited to %d bytes", LIMIT_ID_LEN);
        if (api_query_int64(req, "since_id", 0, INT64_MAX, &f.since_id) < 0)
                return http_response_error(resp, 400, "since_id must be a non-negative integer");
        if (api_query_int64(req, "limit", 1, LIMIT_EVENTS_PAGE, &f.limit) < 0)
                return http_response_error(resp, 400, "limit must be between 1 and %d", LIMIT_EVENTS_PAGE);
        r = api_query_bool(req, "oldest_first", &f.oldest_first);
        if (r < 0)
                return http_response_error(resp, 400, "oldest_first must be true, false, 1 or 0");
        r = audit_list(c, &f, &ev, &n);
        if (r < 0)
                return r;
        json_object *a = json_object_new_array();
        for (size_t i = 0; a && i < n; i++)
                json_object_array_add(a, audit_event_to_json(ev[i]));
        audit_event_array_free(ev, n);
        return api_reply(resp, 200, a);
}

/* How long the PENDING job that has waited longest has waited since it became due: a job
 * scheduled for later is not waiting yet, and must not look like a stuck queue. Unscheduled
 * jobs: the oldest, from jobs_status_created; scheduled ones that are due: from jobs_scheduled. */
static int oldest_pending_age(Control *c, double *ret) {
        usec_t now = control_now(c), t = USEC_INFINITY, v;
        int r;

        *ret = 0;
        r = store_query_usec(c->store,
                             "SELECT created_at FROM jobs WHERE status = 'PENDING' AND scheduled_at = 0 "
                             "ORDER BY created_at LIMIT 1",
                             0, &v);
        if (r > 0)
                t = v;
        if (r >= 0)
                r = store_query_usec(c->store,
                                     "SELECT min(MAX(created_at, scheduled_at)) FROM jobs INDEXED BY jobs_scheduled "
                                     "WHERE status = 'PENDING' AND scheduled_at > 0 AND scheduled_at <= ?1",
                                     (int64_t) now, &v);
        if (r > 0)
                t = MIN(t, v);
        if (r < 0)
                return r;
        *ret = t != USEC_INFINITY && now > t ? (double) (now - t) / (double) USEC_PER_SEC : 0;
        return 0;
}

static void metric_header(FILE *f, const char *name, const char *type, const char *help) {
        fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static int write_metrics(Control *c, FILE *f) {
        uint64_t jobs[_JOB_STATE_MAX], workers[_WORKER_STATE_MAX], no_new_work = 0, db = 0;
        double age;
        int r;

        if ((r = store_count_jobs_by_state(c->store, jobs)) < 0 ||
            (r = workers_count_by_state(c, workers, &no_new_work)) < 0 || (r = oldest_pending_age(c, &age)) < 0 ||
            (r = store_database_size(c->store, &db)) < 0)
                return r;
        metric_header(f, "entropy_jobs", "gauge", "Jobs by state.");
        for (int s = 0; s < _JOB_STATE_MAX; s++)
                fprintf(f, "entropy_jobs{state=\"%s\"} %llu\n", job_state_to_string(s), (unsigned long long) jobs[s]);
        metric_header(f, "entropy_workers", "gauge", "Workers by state.");
        for (int s = 0; s < _WORKER_STATE_MAX; s++)
                fprintf(f, "entropy_workers{state=\"%s\"} %llu\n", worker_state_to_string(s),
                        (unsigned long long) workers[s]);
        metric_header(f, "entropy_workers_no_new_work", "gauge",
                      "Workers, online or draining, that ask for no new job for a reason of their own (results not "
                      "recorded, path checks that hang, disk nearly full).");
        fprintf(f, "entropy_workers_no_new_work %llu\n", (unsigned long long) no_new_work);
        const struct {
                const char *name;
                uint64_t value;
                const char *help;
        } counters[] = {
                {"entropy_jobs_submitted_total", c->counters.submitted, "Jobs submitted."},
                {"entropy_jobs_claimed_total", c->counters.claimed, "Assignments handed out."},
                {"entropy_jobs_completed_total", c->counters.completed, "Jobs completed."},
                {"entropy_jobs_failed_total", c->counters.failed, "Jobs failed for good."},
                {"entropy_jobs_retried_total", c->counters.retried, "Failures or losses that will be retried."},
                {"entropy_jobs_lost_total", c->counters.lost, "Jobs lost with their worker or lease."},
                {"entropy_jobs_aborted_total", c->counters.aborted, "Jobs aborted."},
                {"entropy_requests_refused_total", c->counters.refused, "Refused transitions and requests."},
                {"entropy_journal_failures_total", c->counters.journal_failures,
                 "Audit events whose journal copy could not be sent."},
                {"entropy_dbus_events_dropped_total", c->counters.bus_events_dropped,
                 "Committed changes not announced on D-Bus because the broker was not reading."},
        };
        for (size_t i = 0; i < ELEMENTSOF(counters); i++) {
                metric_header(f, counters[i].name, "counter", counters[i].help);
                fprintf(f, "%s %llu\n", counters[i].name, (unsigned long long) counters[i].value);
        }
        metric_header(f, "entropy_oldest_pending_job_age_seconds", "gauge",
                      "How long the PENDING job that has waited longest has waited since it became due.");
        fprintf(f, "entropy_oldest_pending_job_age_seconds %.3f\n", age);
        metric_header(f, "entropy_database_size_bytes", "gauge", "Size of the database and its WAL.");
        fprintf(f, "entropy_database_size_bytes %llu\n", (unsigned long long) db);
        return live_metrics_write(c->live_metrics, now_monotonic_usec(), f);
}

int api_get_metrics(Control *c, const HttpRequest *req, HttpResponse *resp) {
        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);
        int r;

        if (!f)
                return -ENOMEM;
        r = write_metrics(c, f);
        if (fclose(f) != 0 && r >= 0)
                r = -ENOMEM;
        if (r < 0) {
                free(buf);
                return r;
        }
        return http_response_text(resp, 200, "text/plain; version=0.0.4; charset=utf-8", buf, size);
}

int api_get_healthz(Control *c, const HttpRequest *req, HttpResponse *resp) {
        json_object *body = json_object_new_object();
        if (!body)
                return -ENOMEM;
        bool ok = c->store && c->store->db && !c->shutting_down;
        json_add_string(body, "status", ok ? "ok" : "unavailable");
        return api_reply(resp, ok ? 200 : 503, body);
}
