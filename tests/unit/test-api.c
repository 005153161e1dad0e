/* test-api.c: the HTTP handlers over the stubbed server: contract statuses and bodies, bad input
 * that changes nothing, the worker protocol end to end, metrics and healthz. */
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "core-test-util.h"
#include "json-util.h"
#include "store.h"
#include "tap.h"

typedef struct Reply {
        unsigned status;
        json_object *json;
        char *text;
} Reply;

static Reply call(Control *c, ApiHandler h, const char *method, const char *path, const char *body, TestQuery *q) {
        HttpRequest req = test_request(method, path, body, q);
        HttpResponse resp = {};
        Reply r = {};
        int k = h(c, &req, &resp);
        r.status = k < 0 ? 500 : resp.status;
        if (resp.body) {
                r.text = strndup(resp.body, resp.body_size);
                r.json = json_tokener_parse(r.text);
        }
        http_response_done(&resp);
        return r;
}

static void reply_done(Reply *r) {
        json_object_put(r->json);
        free(r->text);
        *r = (Reply){};
}

static const char *str(const Reply *r, const char *key) {
        json_object *v = NULL;
        return r->json && json_object_object_get_ex(r->json, key, &v) ? json_object_get_string(v) : NULL;
}

static uint64_t total_jobs(Control *c) {
        uint64_t counts[_JOB_STATE_MAX], n = 0;
        store_count_jobs_by_state(c->store, counts);
        for (int i = 0; i < _JOB_STATE_MAX; i++)
                n += counts[i];
        return n;
}

static void test_post_jobs_and_get(void) {
        Control *c = test_control_new();
        Reply r = call(c, api_post_jobs, "POST", "/jobs",
                       "{\"command\":\"/bin/echo\",\"args\":[\"hi\"],\"priority\":5,\"needs_gpu\":false,"
                       "\"requirements\":[\"linux\"],\"scheduled_at\":1700000000.5,\"timeout_ms\":1000}",
                       NULL);
        is_int(r.status, 201, "POST /jobs: 201");
        is_str(str(&r, "status"), "PENDING", "status PENDING");
        char id[64];
        snprintf(id, sizeof(id), "%s", strempty(str(&r, "job_id")));
        reply_done(&r);

        char path[96];
        snprintf(path, sizeof(path), "/jobs/%s", id);
        r = call(c, api_get_job, "GET", path, NULL, NULL);
        is_int(r.status, 200, "GET /jobs/{id}: 200");
        const char *fields[] = {"job_id",
                                "status",
                                "command",
                                "args",
                                "working_dir",
                                "timeout_ms",
                                "priority",
                                "scheduled_at",
                                "needs_gpu",
                                "requirements",
                                "created_at",
                                "updated_at",
                                "attempt_count",
                                "max_attempts",
                                "worker_id",
                                "assignment_id",
                                "assignment_expires_at",
                                "last_error",
                                "result_path",
                                "exit_code",
                                "updated_by",
                                "artifact_id",
                                "stdout_path",
                                "stderr_path",
                                "stdout_sha256",
                                "stderr_sha256",
                                "artifact_backend",
                                "artifact_location",
                                "artifact_upload_state",
                                "artifact_upload_error",
                                "result_summary"};
        int missing = 0;
        for (size_t i = 0; i < ELEMENTSOF(fields); i++)
                if (!json_object_object_get_ex(r.json, fields[i], NULL)) {
                        diag("missing %s", fields[i]);
                        missing++;
                }
        is_int(missing, 0, "every field of the contract's job is present");
        json_object *v = NULL;
        json_object_object_get_ex(r.json, "scheduled_at", &v);
        ok(v && json_object_get_double(v) == 1700000000.5, "times are Unix seconds");
        json_object_object_get_ex(r.json, "max_attempts", &v);
        is_int(json_object_get_int(v), 3, "max_attempts defaults to 3");
        reply_done(&r);

        r = call(c, api_get_job, "GET", "/jobs/nope", NULL, NULL);
        is_int(r.status, 404, "unknown job: 404");
        ok(str(&r, "error") != NULL, "with an error message");
        reply_done(&r);

        TestQuery q = {{"status"}, {"PENDING"}};
        r = call(c, api_get_jobs, "GET", "/jobs", NULL, &q);
        ok(r.status == 200 && json_object_array_length(r.json) == 1, "GET /jobs?status=PENDING: one job");
        reply_done(&r);
        TestQuery bad = {{"status"}, {"SLEEPING"}};
        r = call(c, api_get_jobs, "GET", "/jobs", NULL, &bad);
        is_int(r.status, 400, "unknown status filter: 400");
        reply_done(&r);
        test_control_free(c);
}

static void test_bad_input_changes_nothing(void) {
        Control *c = test_control_new();
        const char *bodies[] = {
                "",
                "{",
                "[1]",
                "{\"command\": 5}",
                "{\"args\": [\"x\"]}",
                "{\"command\":\"x\",\"args\":\"x\"}",
                "{\"command\":\"x\",\"max_attempts\":0}",
                "{\"command\":\"x\",\"priority\":\"high\"}",
                "{\"command\":\"x\",\"needs_gpu\":\"yes\"}",
                "{\"command\":\"x\",\"scheduled_at\":-5}",
                "{\"command\":\"x\"} trailing",
        };
        int wrong = 0;
        for (size_t i = 0; i < ELEMENTSOF(bodies); i++) {
                Reply r = call(c, api_post_jobs, "POST", "/jobs", bodies[i], NULL);
                if (r.status != 400 || !str(&r, "error")) {
                        diag("body %s -> %u", bodies[i], r.status);
                        wrong++;
                }
                reply_done(&r);
        }
        is_int(wrong, 0, "each malformed submission: 400 with an error");
        is_int(total_jobs(c), 0, "and nothing stored");
        char big[LIMIT_COMMAND_LEN + 64];
        snprintf(big, sizeof(big), "{\"command\":\"%0*d\"}", LIMIT_COMMAND_LEN + 1, 0);
        Reply r = call(c, api_post_jobs, "POST", "/jobs", big, NULL);
        is_int(r.status, 400, "overlong command: 400");
        reply_done(&r);
        test_control_free(c);
}

static void test_worker_protocol_over_handlers(void) {
        Control *c = test_control_new();
        Reply r = call(c, api_post_register, "POST", "/register",
                       "{\"worker_id\":\"w1\",\"nonce\":\"n\",\"capabilities\":[\"linux\"]}", NULL);
        ok(r.status == 200 && streq_ptr(str(&r, "status"), "ok"), "register: 200 ok");
        reply_done(&r);

        TestQuery q = {{"worker_id"}, {"w1"}};
        r = call(c, api_get_next_job, "GET", "/next-job", NULL, &q);
        is_int(r.status, 204, "nothing eligible: 204");
        reply_done(&r);
        TestQuery ghost = {{"worker_id"}, {"ghost"}};
        r = call(c, api_get_next_job, "GET", "/next-job", NULL, &ghost);
        is_int(r.status, 403, "unregistered worker: 403");
        reply_done(&r);

        r = call(c, api_post_jobs, "POST", "/jobs", "{\"command\":\"x\"}", NULL);
        reply_done(&r);
        r = call(c, api_get_next_job, "GET", "/next-job", NULL, &q);
        is_int(r.status, 200, "claim: 200");
        char job[64], asg[64], body[1024];
        snprintf(job, sizeof(job), "%s", strempty(str(&r, "job_id")));
        snprintf(asg, sizeof(asg), "%s", strempty(str(&r, "assignment_id")));
        ok(json_object_object_get_ex(r.json, "assignment_expires_at", NULL) &&
                   json_object_object_get_ex(r.json, "max_attempts", NULL),
           "assignment fields present");
        reply_done(&r);

        snprintf(body, sizeof(body), "{\"job_id\":\"%s\",\"worker_id\":\"w1\",\"assignment_id\":\"%s\"}", job, asg);
        r = call(c, api_post_ack, "POST", "/ack", body, NULL);
        is_int(r.status, 200, "ack: 200");
        reply_done(&r);
        snprintf(body, sizeof(body), "{\"job_id\":\"%s\",\"worker_id\":\"w1\",\"assignment_id\":\"old\"}", job);
        r = call(c, api_post_ack, "POST", "/ack", body, NULL);
        is_int(r.status, 409, "ack with a wrong assignment: 409");
        reply_done(&r);

        snprintf(body, sizeof(body),
                 "{\"worker_id\":\"w1\",\"current_job_id\":\"%s\",\"seq\":1,\"metrics\":{\"cpu\":0.5}}", job);
        r = call(c, api_post_heartbeat, "POST", "/heartbeat", body, NULL);
        ok(r.status == 200 && streq_ptr(str(&r, "status"), "ok"), "heartbeat: 200");
        reply_done(&r);
        r = call(c, api_post_heartbeat, "POST", "/heartbeat", body, NULL);
        ok(r.status == 200 && streq_ptr(str(&r, "status"), "ignored"), "same seq: 200, ignored");
        reply_done(&r);

        snprintf(body, sizeof(body),
                 "{\"job_id\":\"%s\",\"worker_id\":\"w1\",\"assignment_id\":\"%s\",\"completion_seq\":1,"
                 "\"exit_code\":0,\"result_summary\":\"fine\",\"stdout_path\":\"/o\",\"stdout_tmp_path\":\"/o.tmp\","
                 "\"stdout_sha256\":\"%064d\"}",
                 job, asg, 0);
        r = call(c, api_post_complete, "POST", "/complete", body, NULL);
        ok(r.status == 200 && streq_ptr(str(&r, "status"), "COMPLETED") && streq_ptr(str(&r, "job_id"), job),
           "complete: 200 {status: COMPLETED, job_id}");
        reply_done(&r);
        r = call(c, api_post_complete, "POST", "/complete", body, NULL);
        ok(r.status == 200 && streq_ptr(str(&r, "status"), "COMPLETED"), "duplicate completion: no-op 200");
        reply_done(&r);

        snprintf(body, sizeof(body),
                 "{\"worker_id\":\"w1\",\"completed_jobs\":[{\"status\":\"COMPLETED\",\"job_id\":\"%s\","
                 "\"assignment_id\":\"%s\"},{\"status\":\"FAILED\",\"job_id\":\"%s\",\"assignment_id\":\"x\"}]}",
                 job, asg, job);
        r = call(c, api_post_reconnect, "POST", "/reconnect", body, NULL);
        is_int(r.status, 200, "reconnect: 200");
        json_object *actions = NULL;
        json_object_object_get_ex(r.json, "actions", &actions);
        ok(actions && json_object_array_length(actions) == 2, "one action per replayed record");
        if (actions && json_object_array_length(actions) == 2) {
                json_object *a0 = json_object_array_get_idx(actions, 0), *a1 = json_object_array_get_idx(actions, 1),
                            *v0 = NULL, *v1 = NULL;
                json_object_object_get_ex(a0, "result", &v0);
                json_object_object_get_ex(a1, "result", &v1);
                is_str(json_object_get_string(v0), "ACCEPTED", "repeat of the applied completion ACCEPTED");
                is_str(json_object_get_string(v1), "REJECTED", "failure with a forged assignment REJECTED");
                ok(json_object_object_get_ex(a1, "error", NULL), "with an error");
        }
        reply_done(&r);

        r = call(c, api_post_register, "POST", "/register", "{\"worker_id\":\"w1\",\"nonce\":\"other\"}", NULL);
        is_int(r.status, 409, "nonce mismatch: 409");
        reply_done(&r);
        test_control_free(c);
}

static void test_abort_statuses(void) {
        Control *c = test_control_new();
        Reply r = call(c, api_post_jobs, "POST", "/jobs", "{\"command\":\"x\"}", NULL);
        char body[256];
        snprintf(body, sizeof(body), "{\"job_id\":\"%s\",\"reason\":\"no longer needed\"}",
                 strempty(str(&r, "job_id")));
        reply_done(&r);
        r = call(c, api_post_abort, "POST", "/abort", body, NULL);
        ok(r.status == 200 && streq_ptr(str(&r, "status"), "ABORTED") &&
                   streq_ptr(str(&r, "reason"), "no longer needed"),
           "abort: 200 ABORTED with the reason");
        reply_done(&r);
        r = call(c, api_post_abort, "POST", "/abort", body, NULL);
        is_int(r.status, 409, "again: 409 already terminal");
        reply_done(&r);
        r = call(c, api_post_abort, "POST", "/abort", "{\"job_id\":\"nope\"}", NULL);
        is_int(r.status, 404, "unknown: 404");
        reply_done(&r);
        r = call(c, api_post_abort, "POST", "/abort", "{}", NULL);
        is_int(r.status, 400, "neither id: 400");
        reply_done(&r);
        test_control_free(c);
}

static void test_events_metrics_workers_healthz(void) {
        Control *c = test_control_new();
        test_register(c, "w1", "gpu");
        test_submit(c, 0);
        TestQuery q = {{"limit", "event"}, {"1", "job.submitted"}};
        Reply r = call(c, api_get_events, "GET", "/events", NULL, &q);
        ok(r.status == 200 && json_object_array_length(r.json) == 1, "GET /events with limit and filter");
        reply_done(&r);
        TestQuery bad = {{"limit"}, {"100000"}};
        r = call(c, api_get_events, "GET", "/events", NULL, &bad);
        is_int(r.status, 400, "limit above the maximum: 400");
        reply_done(&r);

        r = call(c, api_get_metrics, "GET", "/metrics", NULL, NULL);
        ok(r.status == 200 && r.text && strstr(r.text, "entropy_jobs{state=\"PENDING\"} 1") &&
                   strstr(r.text, "entropy_workers{state=\"ONLINE\"} 1") &&
                   strstr(r.text, "entropy_jobs_submitted_total") &&
                   strstr(r.text, "entropy_oldest_pending_job_age_seconds") && strstr(r.text, "# TYPE"),
           "metrics in Prometheus text format");
        reply_done(&r);

        r = call(c, api_get_workers, "GET", "/workers", NULL, NULL);
        json_object *w = r.json ? json_object_array_get_idx(r.json, 0) : NULL;
        ok(r.status == 200 && w && json_object_object_get_ex(w, "heartbeat_age_sec", NULL) &&
                   json_object_object_get_ex(w, "registered_at", NULL) && json_object_object_get_ex(w, "status", NULL),
           "GET /workers with the contract's fields");
        reply_done(&r);

        r = call(c, api_get_healthz, "GET", "/healthz", NULL, NULL);
        ok(r.status == 200 && streq_ptr(str(&r, "status"), "ok"), "healthz: 200 ok");
        reply_done(&r);
        test_control_free(c);
}

static int64_t num(const Reply *r, const char *key) {
        json_object *v = NULL;
        return r->json && json_object_object_get_ex(r->json, key, &v) ? json_object_get_int64(v) : -1;
}

static void test_worker_additions(void) {
        Control *c = test_control_new();
        char body[1024], job[64], asg[64];

        /* wake_port without wake_address: the peer address of the request, without its port. */
        HttpRequest req = test_request("POST", "/register", "{\"worker_id\":\"w1\",\"wake_port\":4567}", NULL);
        snprintf(req.remote, sizeof(req.remote), "[::1]:40000");
        HttpResponse resp = {};
        is_int(api_post_register(c, &req, &resp), 0, "register with a wake port");
        is_int(resp.status, 200, "200");
        http_response_done(&resp);
        _cleanup_(worker_freep) Worker *w = NULL;
        worker_get(c, "w1", &w);
        ok(w && w->wake_port == 4567 && streq_ptr(w->wake_address, "::1"), "wake address from the peer: %s",
           w ? strna(w->wake_address) : "-");
        Reply r = call(c, api_post_register, "POST", "/register", "{\"worker_id\":\"w1\",\"wake_port\":70000}", NULL);
        is_int(r.status, 400, "wake_port out of range: 400");
        reply_done(&r);
        r = call(c, api_post_register, "POST", "/register",
                 "{\"worker_id\":\"w1\",\"wake_port\":1,\"wake_address\":\"example.org\"}", NULL);
        is_int(r.status, 400, "a wake_address that is not numeric: 400");
        reply_done(&r);

        r = call(c, api_post_jobs, "POST", "/jobs", "{\"command\":\"x\",\"max_attempts\":3}", NULL);
        reply_done(&r);
        TestQuery q = {{"worker_id"}, {"w1"}};
        r = call(c, api_get_next_job, "GET", "/next-job", NULL, &q);
        is_int(num(&r, "lease_timeout_ms"), (int64_t) (c->settings.lease_timeout / USEC_PER_MSEC),
               "/next-job answers lease_timeout_ms");
        snprintf(job, sizeof(job), "%s", strempty(str(&r, "job_id")));
        snprintf(asg, sizeof(asg), "%s", strempty(str(&r, "assignment_id")));
        reply_done(&r);
        snprintf(body, sizeof(body), "{\"job_id\":\"%s\",\"worker_id\":\"w1\",\"assignment_id\":\"%s\"}", job, asg);
        r = call(c, api_post_ack, "POST", "/ack", body, NULL);
        reply_done(&r);

        snprintf(body, sizeof(body),
                 "{\"worker_id\":\"w1\",\"seq\":1,\"current_job_id\":\"%s\",\"current_job_ids\":[\"%s\",\"gone\"],"
                 "\"current_jobs\":[{\"job_id\":\"%s\",\"assignment_id\":\"%s\"}]}",
                 job, job, job, asg);
        r = call(c, api_post_heartbeat, "POST", "/heartbeat", body, NULL);
        json_object *a = NULL, *alias = NULL;
        json_object_object_get_ex(r.json, "abort_jobs", &a);
        json_object_object_get_ex(r.json, "cancel_jobs", &alias);
        ok(r.status == 200 && a && json_object_array_length(a) == 1 &&
                   streq(json_object_get_string(json_object_array_get_idx(a, 0)), "gone"),
           "heartbeat: abort_jobs names the unknown job only");
        ok(alias && json_object_array_length(alias) == 1, "cancel_jobs: the same list");
        reply_done(&r);
        r = call(c, api_post_heartbeat, "POST", "/heartbeat", "{\"worker_id\":\"w1\",\"seq\":2,\"current_jobs\":[7]}",
                 NULL);
        is_int(r.status, 400, "current_jobs entries must name a job: 400");
        reply_done(&r);

        snprintf(body, sizeof(body),
                 "{\"job_id\":\"%s\",\"worker_id\":\"w1\",\"assignment_id\":\"%s\",\"exit_code\":1,"
                 "\"error\":\"refused by policy\",\"retryable\":false,\"failure_kind\":\"policy\"}",
                 job, asg);
        r = call(c, api_post_fail, "POST", "/fail", body, NULL);
        ok(r.status == 200 && streq_ptr(str(&r, "status"), "FAILED"), "/fail retryable:false: FAILED at once");
        reply_done(&r);
        r = call(c, api_post_fail, "POST", "/fail",
                 "{\"job_id\":\"j\",\"worker_id\":\"w1\",\"assignment_id\":\"a\",\"retryable\":\"no\"}", NULL);
        is_int(r.status, 400, "retryable must be a boolean: 400");
        reply_done(&r);

        TestQuery eq = {{"oldest_first", "limit"}, {"1", "2"}};
        r = call(c, api_get_events, "GET", "/events", NULL, &eq);
        json_object *e0 = r.json ? json_object_array_get_idx(r.json, 0) : NULL, *id0 = NULL;
        json_object *e1 = r.json ? json_object_array_get_idx(r.json, 1) : NULL, *id1 = NULL;
        json_object_object_get_ex(e0, "id", &id0);
        json_object_object_get_ex(e1, "id", &id1);
        ok(r.status == 200 && id0 && id1 && json_object_get_int64(id0) == 1 && json_object_get_int64(id1) == 2,
           "GET /events?oldest_first=1: ascending from the first");
        reply_done(&r);
        TestQuery bad = {{"oldest_first"}, {"maybe"}};
        r = call(c, api_get_events, "GET", "/events", NULL, &bad);
        is_int(r.status, 400, "oldest_first=maybe: 400");
        reply_done(&r);
        test_control_free(c);
}

/* A restarted worker names the jobs it still runs in any of the three fields a heartbeat takes:
 * each keeps running; only the one it does not name is lost. */
static const char *action_of(const Reply *r, const char *job_id) {
        json_object *actions = NULL, *v = NULL;
        json_object_object_get_ex(r->json, "actions", &actions);
        for (size_t i = 0; actions && i < json_object_array_length(actions); i++) {
                json_object *a = json_object_array_get_idx(actions, i);
                if (json_object_object_get_ex(a, "job_id", &v) && streq_ptr(json_object_get_string(v), job_id))
                        return json_object_object_get_ex(a, "action", &v) ? json_object_get_string(v) : NULL;
        }
        return NULL;
}

static void test_reconnect_takes_every_current_jobs_field(void) {
        Control *c = test_control_new();
        char body[1024];
        Reply r = call(c, api_post_register, "POST", "/register", "{\"worker_id\":\"w1\",\"instance_id\":\"i1\"}",
                       NULL);
        reply_done(&r);
        Job *j[4];
        for (size_t i = 0; i < ELEMENTSOF(j); i++) {
                test_submit(c, 0);
                j[i] = test_claim_and_ack(c, "w1");
        }
        r = call(c, api_post_register, "POST", "/register", "{\"worker_id\":\"w1\",\"instance_id\":\"i2\"}", NULL);
        reply_done(&r);
        snprintf(body, sizeof(body),
                 "{\"worker_id\":\"w1\",\"current_job_id\":\"%s\",\"current_job_ids\":[\"%s\"],"
                 "\"current_jobs\":[{\"job_id\":\"%s\",\"assignment_id\":\"%s\"}],\"completed_jobs\":[]}",
                 j[0]->job_id, j[1]->job_id, j[2]->job_id, j[2]->assignment_id);
        r = call(c, api_post_reconnect, "POST", "/reconnect", body, NULL);
        is_int(r.status, 200, "reconnect after a restart: 200");
        is_int(test_job_state(c, j[0]->job_id), JOB_RUNNING, "named in current_job_id: still RUNNING");
        is_int(test_job_state(c, j[1]->job_id), JOB_RUNNING, "named in current_job_ids: still RUNNING");
        is_int(test_job_state(c, j[2]->job_id), JOB_RUNNING, "named in current_jobs: still RUNNING");
        ok(!streq_ptr(action_of(&r, j[2]->job_id), "lost"), "and not given up");
        is_str(action_of(&r, j[3]->job_id), "lost", "the job it did not name is lost");
        ok(test_job_state(c, j[3]->job_id) != JOB_RUNNING, "and taken back");
        reply_done(&r);
        for (size_t i = 0; i < ELEMENTSOF(j); i++)
                job_free(j[i]);
        test_control_free(c);
}

/* A job scheduled for later is not waiting yet: it must not age the oldest-pending gauge, which
 * alerts on a stuck queue. */
static double oldest_pending_gauge(Control *c) {
        Reply r = call(c, api_get_metrics, "GET", "/metrics", NULL, NULL);
        const char *p = r.text ? strstr(r.text, "\nentropy_oldest_pending_job_age_seconds ") : NULL;
        double v = p ? strtod(p + strlen("\nentropy_oldest_pending_job_age_seconds "), NULL) : -1;
        reply_done(&r);
        return v;
}

static void test_oldest_pending_counts_only_jobs_that_are_due(void) {
        Control *c = test_control_new();
        JobSpec s;
        job_spec_init(&s);
        s.command = "x";
        s.scheduled_at = control_now(c) + USEC_PER_HOUR;
        test_submit_spec(c, &s);
        test_advance(c, 100 * USEC_PER_SEC);
        ok(oldest_pending_gauge(c) == 0, "a job due in an hour is not waiting (%.3f)", oldest_pending_gauge(c));
        test_submit(c, 0);
        test_advance(c, 10 * USEC_PER_SEC);
        ok(oldest_pending_gauge(c) == 10, "the due job has waited 10 s (%.3f)", oldest_pending_gauge(c));
        test_advance(c, USEC_PER_HOUR);
        double v = oldest_pending_gauge(c);
        ok(v == 3610, "the longest wait: the unscheduled job's, not the one due for 110 s (%.3f)", v);
        test_control_free(c);
}

/* Telemetry never stands in the way of lease renewal: a heartbeat whose metrics are too large
 * (a host with many GPUs) renews the leases and stores a note instead of the metrics. */
static void test_oversized_metrics_do_not_stop_a_heartbeat(void) {
        Control *c = test_control_new();
        test_register(c, "w1", NULL);
        test_submit(c, 0);
        _cleanup_(job_freep) Job *j = test_claim_and_ack(c, "w1");
        test_advance(c, 5 * USEC_PER_SEC);
        size_t size = LIMIT_METRICS_LEN + 256;
        _cleanup_free_ char *body = malloc(size + 256);
        int n = snprintf(body, 256, "{\"worker_id\":\"w1\",\"seq\":1,\"current_job_id\":\"%s\",\"metrics\":{\"pad\":\"",
                         j->job_id);
        memset(body + n, 'x', size);
        strcpy(body + n + size, "\"}}");
        Reply r = call(c, api_post_heartbeat, "POST", "/heartbeat", body, NULL);
        is_int(r.status, 200, "a heartbeat with oversized metrics: 200");
        json_object *v = NULL;
        ok(json_object_object_get_ex(r.json, "metrics_dropped", &v) && json_object_get_boolean(v),
           "its answer says the metrics were dropped");
        reply_done(&r);
        _cleanup_(job_freep) Job *after = NULL;
        jobs_get(c, j->job_id, &after);
        ok(after && after->assignment_expires_at == control_now(c) + c->settings.lease_timeout,
           "the lease of the job it reported is renewed");
        _cleanup_(worker_freep) Worker *w = NULL;
        worker_get(c, "w1", &w);
        ok(w && w->metrics && strstr(w->metrics, "dropped") && strlen(w->metrics) < 200,
           "the stored metrics say they were dropped");
        test_control_free(c);
}

/* ---- every call of a worker's own is contact ---- */

/* The state the worker is stored (and audited) in after a reconciler sweep. */
static WorkerState swept_state(Control *c, const char *worker_id) {
        _cleanup_(worker_freep) Worker *w = NULL;
        test_sweep(c);
        return worker_get(c, worker_id, &w) < 0 ? _WORKER_STATE_INVALID : w->stored;
}

/* No contact for longer than heartbeat-timeout, then a sweep: OFFLINE. job_id (may be NULL) keeps
 * its lease, so that the sweep does not take the job away (a lease can outlast the heartbeats). */
static WorkerState go_offline(Control *c, const char *worker_id, const char *job_id) {
        if (job_id)
                test_force(c, "assignment_expires_at = 4000000000000000", job_id);
        test_advance(c, c->settings.heartbeat_timeout + USEC_PER_SEC);
        return swept_state(c, worker_id);
}

static int64_t last_event_id(Control *c, const char *event) {
        sqlite3_stmt *st = NULL;
        int64_t id = -1;
        if (sqlite3_prepare_v2(c->store->db, "SELECT max(id) FROM audit_events WHERE event = ?", -1, &st, NULL) !=
            SQLITE_OK)
                tap_bail("prepare max(id)");
        sqlite3_bind_text(st, 1, event, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
                id = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        return id;
}

/* After the call, the worker is ONLINE again, with its n-th worker.online event. */
static void check_back_online(Control *c, const char *call, int n) {
        is_int(test_count_events(c, "worker.online", NULL), n, "%s from an OFFLINE worker: worker.online", call);
        is_int(swept_state(c, "w1"), WORKER_ONLINE, "%s: ONLINE, and a sweep keeps it so", call);
}

static Reply call_for_job(Control *c, ApiHandler h, const char *path, const char *job, const char *asg,
                          const char *extra) {
        char body[1024];
        snprintf(body, sizeof(body), "{\"job_id\":\"%s\",\"worker_id\":\"w1\",\"assignment_id\":\"%s\"%s}", job, asg,
                 extra);
        return call(c, h, "POST", path, body, NULL);
}

/* A worker whose heartbeats do not reach the control plane (or that slept past heartbeat-timeout)
 * but whose calls do is alive: each of its calls brings it back ONLINE as a heartbeat does, with
 * the same worker.online event, before what the call does. No worker.offline while it works. */
static void test_every_call_of_a_worker_is_contact(void) {
        Control *c = test_control_new();
        TestQuery q = {{"worker_id"}, {"w1"}};
        char job[64], asg[64], body[512];
        test_register(c, "w1", NULL);
        test_submit(c, 0);
        test_submit(c, 0);

        is_int(go_offline(c, "w1", NULL), WORKER_OFFLINE, "no contact past heartbeat-timeout: OFFLINE");
        Reply r = call(c, api_get_next_job, "GET", "/next-job", NULL, &q);
        is_int(r.status, 200, "the OFFLINE worker claims a job");
        snprintf(job, sizeof(job), "%s", strempty(str(&r, "job_id")));
        snprintf(asg, sizeof(asg), "%s", strempty(str(&r, "assignment_id")));
        reply_done(&r);
        ok(last_event_id(c, "worker.online") > 0 &&
                   last_event_id(c, "worker.online") < last_event_id(c, "job.assigned"),
           "worker.online is audited before the claim's job.assigned");
        check_back_online(c, "claim", 1);
        is_int(test_count_events(c, "worker.offline", NULL), 1, "no second worker.offline");

        is_int(go_offline(c, "w1", job), WORKER_OFFLINE, "OFFLINE again");
        r = call_for_job(c, api_post_ack, "/ack", job, asg, "");
        is_int(r.status, 200, "ack: 200");
        reply_done(&r);
        check_back_online(c, "ack", 2);

        is_int(go_offline(c, "w1", job), WORKER_OFFLINE, "OFFLINE again");
        snprintf(body, sizeof(body),
                 ",\"exit_code\":0,\"stdout_path\":\"/o\",\"stdout_tmp_path\":\"/o.tmp\","
                 "\"stdout_sha256\":\"%064d\"",
                 0);
        r = call_for_job(c, api_post_complete, "/complete", job, asg, body);
        is_int(r.status, 200, "complete: 200");
        reply_done(&r);
        check_back_online(c, "complete", 3);

        r = call(c, api_get_next_job, "GET", "/next-job", NULL, &q);
        snprintf(job, sizeof(job), "%s", strempty(str(&r, "job_id")));
        snprintf(asg, sizeof(asg), "%s", strempty(str(&r, "assignment_id")));
        reply_done(&r);
        r = call_for_job(c, api_post_ack, "/ack", job, asg, "");
        reply_done(&r);
        is_int(go_offline(c, "w1", job), WORKER_OFFLINE, "OFFLINE again");
        r = call_for_job(c, api_post_fail, "/fail", job, asg, ",\"exit_code\":1,\"error\":\"boom\"");
        is_int(r.status, 200, "fail: 200");
        reply_done(&r);
        check_back_online(c, "fail", 4);

        is_int(go_offline(c, "w1", NULL), WORKER_OFFLINE, "OFFLINE again");
        r = call(c, api_post_reconnect, "POST", "/reconnect", "{\"worker_id\":\"w1\"}", NULL);
        is_int(r.status, 200, "reconnect: 200");
        reply_done(&r);
        check_back_online(c, "reconnect", 5);

        r = call(c, api_post_heartbeat, "POST", "/heartbeat", "{\"worker_id\":\"w1\",\"seq\":7}", NULL);
        reply_done(&r);
        is_int(go_offline(c, "w1", NULL), WORKER_OFFLINE, "OFFLINE again");
        r = call(c, api_post_heartbeat, "POST", "/heartbeat", "{\"worker_id\":\"w1\",\"seq\":7}", NULL);
        ok(r.status == 200 && streq_ptr(str(&r, "status"), "ignored"), "a heartbeat with an old seq is ignored");
        reply_done(&r);
        check_back_online(c, "an ignored heartbeat", 6);

        TestQuery ghost = {{"worker_id"}, {"ghost"}};
        r = call(c, api_get_next_job, "GET", "/next-job", NULL, &ghost);
        is_int(r.status, 403, "an unregistered worker is still refused");
        reply_done(&r);
        test_control_free(c);
}

/* Contact brings back the state a heartbeat would: a draining worker is DRAINING, not ONLINE. */
static void test_contact_keeps_a_draining_worker_draining(void) {
        Control *c = test_control_new();
        TestQuery q = {{"worker_id"}, {"w1"}};
        test_register(c, "w1", NULL);
        test_submit(c, 0);
        worker_drain(c, NULL, "w1", true);
        is_int(go_offline(c, "w1", NULL), WORKER_OFFLINE, "a draining worker gone quiet: OFFLINE");
        Reply r = call(c, api_get_next_job, "GET", "/next-job", NULL, &q);
        is_int(r.status, 204, "its poll gets nothing");
        reply_done(&r);
        is_int(swept_state(c, "w1"), WORKER_DRAINING, "but it is back, DRAINING");
        is_int(test_count_events(c, "worker.drain", NULL), 2, "audited as worker.drain");
        is_int(test_count_events(c, "worker.online", NULL), 0, "never ONLINE");
        test_control_free(c);
}

/* The poll is the hot path: it writes nothing while last_seen is recent, and refreshes it once
 * it is a quarter of disconnect-timeout old, or at once when the state has to change. */
static void test_contact_writes_only_when_due(void) {
        Control *c = test_control_new();
        TestQuery q = {{"worker_id"}, {"w1"}};
        _cleanup_(worker_freep) Worker *w = NULL;
        test_register(c, "w1", NULL);
        usec_t registered = control_now(c);

        test_advance(c, c->settings.disconnect_timeout / 4 - USEC_PER_SEC);
        int before = sqlite3_total_changes(c->store->db);
        Reply r = call(c, api_get_next_job, "GET", "/next-job", NULL, &q);
        is_int(r.status, 204, "a poll with nothing to hand out");
        reply_done(&r);
        is_int(sqlite3_total_changes(c->store->db) - before, 0, "writes nothing while last_seen is recent");
        worker_get(c, "w1", &w);
        ok(w && w->last_seen == registered, "last_seen is left as it was");
        w = worker_free(w);

        test_advance(c, 2 * USEC_PER_SEC);
        r = call(c, api_get_next_job, "GET", "/next-job", NULL, &q);
        reply_done(&r);
        worker_get(c, "w1", &w);
        ok(w && w->last_seen == control_now(c), "a quarter of disconnect-timeout later, the poll refreshes it");
        w = worker_free(w);

        test_advance(c, c->settings.disconnect_timeout + USEC_PER_SEC);
        is_int(swept_state(c, "w1"), WORKER_DISCONNECTED, "quiet past disconnect-timeout: DISCONNECTED");
        r = call(c, api_get_next_job, "GET", "/next-job", NULL, &q);
        reply_done(&r);
        worker_get(c, "w1", &w);
        ok(w && w->stored == WORKER_ONLINE && w->state == WORKER_ONLINE, "its next poll: ONLINE at once");
        is_int(test_count_events(c, "worker.online", NULL), 1, "with its worker.online");
        test_control_free(c);
}

int main(void) {
        test_post_jobs_and_get();
        test_bad_input_changes_nothing();
        test_worker_protocol_over_handlers();
        test_abort_statuses();
        test_events_metrics_workers_healthz();
        test_worker_additions();
        test_reconnect_takes_every_current_jobs_field();
        test_oversized_metrics_do_not_stop_a_heartbeat();
        test_oldest_pending_counts_only_jobs_that_are_due();
        test_every_call_of_a_worker_is_contact();
        test_contact_keeps_a_draining_worker_draining();
        test_contact_writes_only_when_due();
        return tap_done();
}
