/* lease.c: heartbeats and the leases of the jobs this worker holds.
 *
 * The control plane measures a lease from when it *received* the last renewal; the worker
 * measures it from when it *sent* the last renewal that succeeded, which is earlier, and starts
 * stopping the job a margin (a fifth of the lease) before even that, with a SIGKILL deadline well
 * inside it. So the worker has always given up a job before the control plane can reassign it,
 * and two runs of one job never overlap.
 *
 * The lease length is the control plane's `lease_timeout_ms` when it gives one (in the claim, and
 * again in each heartbeat's answer: a restart may change it), else its assignment_expires_at minus
 * the time the claim's answer arrived (a lower bound of the real length), capped by
 * --lease-timeout.
 *
 * Renewals are the claim itself (GET /next-job) and each heartbeat answered 200. Heartbeats go
 * out every heartbeat-interval whatever happens to other requests, several may be in flight when
 * the control plane is slow, and each carries a seq that is strictly increasing across restarts
 * (see lease_next_heartbeat_seq).
 *
 * Leases are counted on CLOCK_BOOTTIME (the send times, lease_base, the lease timer), as the
 * control plane counts them: CLOCK_MONOTONIC stops while the host is suspended, and after a
 * suspend longer than the lease the worker would still have found time left on a lease the
 * control plane had already taken back and given to another worker. The heartbeat timer is on
 * it too, so that the first heartbeat after a shorter suspend goes out at once. */
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "json-util.h"
#include "log.h"
#include "protocol.h"
#include "worker.h"

#define HEARTBEATS_IN_FLIGHT_MAX 4

typedef struct HeartbeatCall {
        Worker *worker;
        size_t n;
        struct {
                char job_id[LIMIT_ID_LEN + 1];
                char assignment_id[LIMIT_ID_LEN + 1];
        } jobs[];
} HeartbeatCall;

static usec_t lease_margin(const Run *r) {
        return MAX(r->lease_length / 5, 50 * USEC_PER_MSEC);
}

void lease_init(Run *r, const ClientReply *claim_reply) {
        Worker *w = r->worker;
        usec_t length = w->settings.lease_timeout;

        if (r->spec->lease_timeout_ms > 0)
                length = (usec_t) r->spec->lease_timeout_ms * USEC_PER_MSEC;
        else if (r->spec->expires_at > 0) {
                /* The control plane set expiry = its claim time + its lease length, with its
                 * claim time somewhere between our send and our receipt: counting from receipt
                 * gives a length no longer than the real one (queueing at a busy control plane
                 * would otherwise inflate it). Trusted only when plausible: clock skew between
                 * hosts could make it anything. */
                double left = r->spec->expires_at * USEC_PER_SEC - (double) claim_reply->received_real;
                if (left > 0 && left < (double) USEC_PER_HOUR)
                        length = MIN((usec_t) left, length);
        }
        r->lease_length = MAX(length, 100 * USEC_PER_MSEC);
        r->lease_base = claim_reply->sent_boot;
}

usec_t lease_stop_at(const Run *r) {
        return r->lease_base + r->lease_length - lease_margin(r);
}

usec_t lease_kill_grace(const Run *r) {
        /* Past the end itself (the host was suspended through it, the loop stalled): the control
         * plane may have given the job to another worker already, and there is no grace left. */
        if (now_boottime_usec() >= r->lease_base + r->lease_length)
                return 0;
        return MAX(r->lease_length / 10, 10 * USEC_PER_MSEC);
}

static int on_lease_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Run *r = userdata;
        char detail[256], span[64];

        if (now_boottime_usec() < lease_stop_at(r)) { /* renewed meanwhile */
                lease_arm(r);
                return 0;
        }
        snprintf(detail, sizeof(detail),
                 "lease expired: no successful renewal sent in the last %s; stopped by the worker before the "
                 "control plane could reassign it",
                 format_timespan(span, sizeof(span), r->lease_length - lease_margin(r)));
        log_warning("Job %s: %s", r->spec->job_id, detail);
        run_stop(r, STOP_LEASE, detail);
        return 0;
}

void lease_arm(Run *r) {
        usec_t stop_at = lease_stop_at(r);
        int k;

        if (!r->lease_timer) {
                /* 1ms accuracy: the self-stop must land before the control plane's lease expiry. */
                k = sd_event_add_time(r->worker->event, &r->lease_timer, CLOCK_BOOTTIME, stop_at, USEC_PER_MSEC,
                                      on_lease_timer, r);
                if (k < 0) {
                        log_error_errno(k, "Cannot arm the lease timer of job %s: %m", r->spec->job_id);
                        return;
                }
                (void) sd_event_source_set_description(r->lease_timer, "lease");
                return;
        }
        (void) sd_event_source_set_time(r->lease_timer, stop_at);
        (void) sd_event_source_set_enabled(r->lease_timer, SD_EVENT_ONESHOT);
}

void lease_renewed(Run *r, usec_t sent_boot, usec_t length) {
        /* A run stopping for another reason (timeout, hand-back) is still held and reported:
         * its lease goes on until its process is gone. One the lease stopped stays stopped. */
        if (sent_boot <= r->lease_base || r->stop_reason == STOP_LEASE)
                return;
        r->lease_base = sent_boot;
        if (length > 0)
                r->lease_length = MAX(length, 100 * USEC_PER_MSEC);
        lease_arm(r);
}

static Run *find_assignment(Worker *w, const char *job_id, const char *assignment_id) {
        Run *r = worker_find_run(w, job_id);
        if (r && assignment_id && !streq(r->spec->assignment_id, assignment_id))
                return NULL;
        return r;
}

static bool action_is_abort(const char *a) {
        static const char *const words[] = { "abort", "aborted", "stop", "cancel", "kill", "reassigned", "lost" };
        for (size_t i = 0; a && i < ELEMENTSOF(words); i++)
                if (strcasecmp(a, words[i]) == 0)
                        return true;
        return false;
}

static const char *obj_string(json_object *o, const char *key) {
        json_object *v;
        if (!json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, key, &v) ||
            !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

/* Whether an answer is about the run's current assignment: the one the request reported. An
 * answer to an older request (a heartbeat overtaken, a slow /reconnect) may name the job while
 * this worker already runs a newer assignment of it, which it must leave alone. */
static bool run_was_reported(const Run *r, const HeartbeatCall *call) {
        if (!call)
                return true;
        for (size_t i = 0; i < call->n; i++)
                if (streq(call->jobs[i].job_id, r->spec->job_id) &&
                    streq(call->jobs[i].assignment_id, r->spec->assignment_id))
                        return true;
        return false;
}

/* A job entry in a heartbeat answer says the job is not ours any more when it carries an abort
 * action, or a status other than ASSIGNED/RUNNING, or another assignment. The answer to a
 * replayed result ("complete", "fail") is about that result's assignment, not the running one. */
static void handle_job_entry(Worker *w, json_object *e, bool strings_abort, const HeartbeatCall *call) {
        bool is_string = json_object_is_type(e, json_type_string);
        const char *job_id = is_string ? json_object_get_string(e) : obj_string(e, "job_id");
        const char *assignment = obj_string(e, "assignment_id");
        const char *action = obj_string(e, "action");
        const char *status = obj_string(e, "status");
        Run *r = worker_find_run(w, job_id);
        char detail[256];

        if (!r || (is_string && !strings_abort) || !run_was_reported(r, call))
                return;
        if (result_kind_from_string(action) >= 0) /* "complete", "fail": about a replayed result */
                return;
        if (is_string)
                action = "abort";
        if (assignment && !streq(assignment, r->spec->assignment_id))
                snprintf(detail, sizeof(detail), "the control plane reassigned the job (assignment %s)", assignment);
        else if (action_is_abort(action))
                snprintf(detail, sizeof(detail), "the control plane says %s", action);
        else if (status && !streq(status, "ASSIGNED") && !streq(status, "RUNNING"))
                snprintf(detail, sizeof(detail), "the control plane has the job as %s", status);
        else
                return;
        run_abort(r, detail);
}

static void handle_abort_signals(Worker *w, json_object *body, const HeartbeatCall *call) {
        static const char *const lists[] = { "abort_jobs", "aborted_jobs", "jobs", "actions" };
        json_object *l;

        if (!body || !json_object_is_type(body, json_type_object))
                return;
        for (size_t i = 0; i < ELEMENTSOF(lists); i++) {
                if (!json_object_object_get_ex(body, lists[i], &l) || !json_object_is_type(l, json_type_array))
                        continue;
                for (size_t j = 0; j < json_object_array_length(l) && j < LIMIT_RECONNECT_ENTRIES; j++)
                        handle_job_entry(w, json_object_array_get_idx(l, j), i < 2, call);
        }
}

void lease_handle_abort_signals(Worker *w, json_object *body) {
        handle_abort_signals(w, body, NULL);
}

static void heartbeat_conflict(Worker *w, const ClientReply *reply, const HeartbeatCall *call) {
        const char *job_id = obj_string(reply->body, "job_id");
        char buf[256], detail[300];
        Run *r;

        client_reply_describe(reply, buf, sizeof(buf));
        r = worker_find_run(w, job_id ? job_id : call->n > 0 ? call->jobs[0].job_id : NULL);
        if (!r || !run_was_reported(r, call)) {
                log_warning("Heartbeat refused (%s).", buf);
                return;
        }
        snprintf(detail, sizeof(detail), "heartbeat refused (%s)", buf);
        run_abort(r, detail);
}

/* A refusal the control plane repeats for every heartbeat (a 400 for a body it cannot take, a 401
 * for a token it no longer knows) renews no lease while it lasts: the worker's jobs are stopped
 * one after the other. So it is a warning, at most once a minute with a count of those not told. */
static void heartbeat_refused(Worker *w, const ClientReply *reply) {
        unsigned unlogged;
        char buf[256];

        if (!ratelimit_allow(&w->heartbeat_refused_log, USEC_PER_MINUTE, &unlogged))
                return;
        client_reply_describe(reply, buf, sizeof(buf));
        if (unlogged > 0)
                log_warning("Heartbeat refused (%s); the leases of this worker's jobs are not renewed (%u more "
                            "refusals since the last such message).",
                            buf, unlogged);
        else
                log_warning("Heartbeat refused (%s); the leases of this worker's jobs are not renewed.", buf);
}

static void on_heartbeat(Client *c, const ClientReply *reply, void *userdata) {
        HeartbeatCall *call = userdata;
        Worker *w = call->worker;
        char buf[256];

        w->heartbeats_in_flight--;
        if (reply->status == 200 && client_reply_from_control_plane(reply)) {
                const char *status = obj_string(reply->body, "status");
                int64_t length_ms = 0;
                /* The control plane's lease length now, which a restart may have changed. */
                (void) json_get_int64(reply->body, "lease_timeout_ms", 1, INT32_MAX, false, &length_ms, NULL);
                session_note_contact(w);
                /* "ignored": an older seq than one already applied (heartbeats overtook each
                 * other); it renewed nothing, the newer one did or will. */
                for (size_t i = 0; i < call->n && !streq_ptr(status, "ignored"); i++) {
                        Run *r = find_assignment(w, call->jobs[i].job_id, call->jobs[i].assignment_id);
                        if (r)
                                lease_renewed(r, reply->sent_boot, (usec_t) length_ms * USEC_PER_MSEC);
                }
                handle_abort_signals(w, reply->body, call);
        } else if (reply->status == 409)
                heartbeat_conflict(w, reply, call);
        else if (reply->status == 403)
                session_lost_registration(w);
        else if (reply->status >= 400 && reply->status < 500)
                heartbeat_refused(w, reply);
        else /* no answer, or a 5xx: the control plane is away or failing, which polls warn of, and so
              * does on_lease_timer when a lease is lost to it */
                log_debug("Heartbeat failed: %s", client_reply_describe(reply, buf, sizeof(buf)));
        free(call);
}

/* Remembers a listed job for the answer: its lease is renewed when the heartbeat succeeds. */
static void heartbeat_note_job(Run *r, void *userdata) {
        HeartbeatCall *call = userdata;

        snprintf(call->jobs[call->n].job_id, sizeof(call->jobs[0].job_id), "%s", r->spec->job_id);
        snprintf(call->jobs[call->n].assignment_id, sizeof(call->jobs[0].assignment_id), "%s", r->spec->assignment_id);
        call->n++;
}

static json_object *heartbeat_body(Worker *w, uint64_t seq, HeartbeatCall *call) {
        json_object *o = json_object_new_object(), *metrics = json_object_new_object();
        int64_t pending = 0, running = 0;
        char reason[128];

        (void) worker_add_held_jobs(w, o, heartbeat_note_job, call);
        for (size_t i = 0; i < w->n_slots; i++)
                running += w->slots[i] != NULL;
        (void) replay_count_pending(w->replay, &pending);
        json_add_int64(metrics, "running", running);
        json_add_int64(metrics, "finishing", (int64_t) call->n - running);
        json_add_int64(metrics, "slots", (int64_t) w->n_slots);
        json_add_int64(metrics, "replay_pending", pending);
        /* Looked at again here: the polls that look at them stop while every slot is busy. */
        (void) worker_checks_hung(w);
        (void) worker_disk_low(w);
        if (w->disk_free_known)
                json_add_int64(metrics, "state_free_bytes", (int64_t) w->disk_free);
        if (worker_no_new_work(w, reason, sizeof(reason)))
                json_add_string(metrics, "no_new_work", reason);
        host_metrics_add(w->host_metrics, metrics);
        json_add_string(o, "worker_id", w->settings.worker_id);
        json_add_string(o, "instance_id", w->instance_id);
        json_add_int64(o, "seq", (int64_t) seq);
        json_object_object_add(o, "metrics", metrics);
        return o;
}

/* ---- heartbeat sequence numbers ---------------------------------------------------------- */

/* Seqs sent past a reservation that could not be written are on no disk. A restart starts above
 * them from the realtime clock in milliseconds: heartbeats are at least 10ms apart
 * (heartbeat-interval), so the clock moves on faster than the seqs do. The durable reservation
 * still covers every other seq should the clock have been stepped back meanwhile. */
void lease_seed_heartbeat_seq(Worker *w) {
        if (w->replay) /* none where only the timers are under test */
                replay_raise_heartbeat_seq(w->replay, now_realtime_usec() / USEC_PER_MSEC);
}

static void heartbeat_seq_unreserved(Worker *w, int error) {
        unsigned unlogged;

        w->heartbeat_seq_retry = now_monotonic_usec() + worker_backoff(w, ++w->heartbeat_seq_failures);
        if (!ratelimit_allow(&w->heartbeat_seq_log, USEC_PER_MINUTE, &unlogged))
                return;
        if (unlogged > 0)
                log_error_errno(error,
                                "Cannot persist the heartbeat sequence numbers: %m; heartbeats go on with numbers "
                                "counted in memory (%u more failures since the last such message).",
                                unlogged);
        else
                log_error_errno(error,
                                "Cannot persist the heartbeat sequence numbers: %m; heartbeats go on with numbers "
                                "counted in memory.");
}

uint64_t lease_next_heartbeat_seq(Worker *w) {
        uint64_t seq;
        int k;

        /* After a failure the reservation is tried again after the error backoff, not with every
         * heartbeat: on a full disk each try is one more failed write, and one more error. */
        if (w->heartbeat_seq_failures == 0 || now_monotonic_usec() >= w->heartbeat_seq_retry) {
                k = replay_next_heartbeat_seq(w->replay, &seq);
                if (k >= 0) {
                        if (w->heartbeat_seq_failures > 0)
                                log_info("Heartbeat sequence numbers are persisted again.");
                        w->heartbeat_seq_failures = 0;
                        return seq;
                }
                heartbeat_seq_unreserved(w, k);
        }
        /* A full disk must not stop the heartbeats: every lease of the worker would lapse. A
         * restart starts above the seqs sent meanwhile (lease_seed_heartbeat_seq). */
        return replay_next_heartbeat_seq_unreserved(w->replay);
}

/* ---- heartbeats ---------------------------------------------------------------------------- */

static void heartbeat_send(Worker *w) {
        _cleanup_json_ json_object *body = NULL;
        HeartbeatCall *call;
        ClientRequest *req;
        uint64_t seq;
        int k;

        if (w->session != SESSION_READY || w->heartbeats_in_flight >= HEARTBEATS_IN_FLIGHT_MAX)
                return;
        seq = lease_next_heartbeat_seq(w);
        call = calloc(1,
                      sizeof(*call) + MIN(worker_n_runs(w), (size_t) LIMIT_RECONNECT_ENTRIES) * sizeof(call->jobs[0]));
        if (!call)
                return;
        call->worker = w;
        body = heartbeat_body(w, seq, call);
        k = client_request(w->client, "POST", "/heartbeat", body, on_heartbeat, call, &req);
        if (k < 0) {
                log_error_errno(k, "Cannot send heartbeat: %m");
                free(call);
                return;
        }
        client_request_set_destroy(req, free);
        w->heartbeats_in_flight++;
}

static int on_heartbeat_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Worker *w = userdata;
        heartbeat_send(w);
        (void) sd_event_source_set_time_relative(s, w->settings.heartbeat_interval);
        (void) sd_event_source_set_enabled(s, SD_EVENT_ON);
        return 0;
}

void lease_start(Worker *w) {
        int k;

        if (w->heartbeat_timer)
                return;
        lease_seed_heartbeat_seq(w);
        k = sd_event_add_time_relative(w->event, &w->heartbeat_timer, CLOCK_BOOTTIME, 0, USEC_PER_MSEC,
                                       on_heartbeat_timer, w);
        if (k < 0) {
                log_error_errno(k, "Cannot arm the heartbeat timer: %m");
                return;
        }
        (void) sd_event_source_set_description(w->heartbeat_timer, "heartbeat");
}
