/* session.c: the worker's conversation with the control plane:
 *
 *   POST /register (nonce, new instance_id) -> POST /reconnect (current jobs, every pending
 *   result of the replay buffer) -> GET /next-job whenever a slot is free
 *
 * and the delivery of results from the replay buffer (/complete, /fail) in their order. Every
 * failure backs off exponentially with jitter (worker_backoff), so a control plane that is down is
 * asked again at most once per backoff-max per worker and loop. A 403 (not registered, e.g. the
 * control plane lost its database) starts again at /register. */
#include <errno.h>
#include <string.h>

#include "json-util.h"
#include "log.h"
#include "protocol.h"
#include "worker.h"

static void register_send(Worker *w);
static void reconnect_send(Worker *w);

void session_note_contact(Worker *w) {
        w->last_contact = now_monotonic_usec();
}

static const char *http_status_class(long status) {
        return status == 0 ? "transport" : status >= 500 ? "server" : "client";
}

static int on_session_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Worker *w = userdata;
        if (w->session == SESSION_REGISTERING)
                register_send(w);
        else if (w->session == SESSION_RECONNECTING)
                reconnect_send(w);
        return 0;
}

static void session_retry(Worker *w, const ClientReply *reply, const char *what) {
        char buf[256], span[64];
        usec_t delay = worker_backoff(w, ++w->session_failures);
        log_warning("%s failed (%s error: %s); retrying in %s.", what, http_status_class(reply->status),
                    client_reply_describe_origin(reply, buf, sizeof(buf)), format_timespan(span, sizeof(span), delay));
        (void) worker_arm_timer(w, &w->session_timer, delay, on_session_timer, w, "session-retry");
        worker_update_status(w);
}

void session_lost_registration(Worker *w) {
        if (w->session == SESSION_REGISTERING)
                return;
        log_warning("The control plane does not know this worker any more; registering again.");
        w->session = SESSION_REGISTERING;
        (void) worker_arm_timer(w, &w->session_timer, 0, on_session_timer, w, "session-retry");
}

/* ---- register ---------------------------------------------------------------------------- */

static void on_register(Client *c, const ClientReply *reply, void *userdata) {
        Worker *w = userdata;

        w->session_request = NULL;
        if (reply->status == 200 && client_reply_from_control_plane(reply)) {
                session_note_contact(w);
                log_info("Registered with %s as %s (instance %s).", w->settings.control_url, w->settings.worker_id,
                         w->instance_id);
                w->session = SESSION_RECONNECTING;
                w->session_failures = 0;
                reconnect_send(w);
                return;
        }
        if (reply->status == 409)
                log_error("Registration refused: worker id %s is registered with another nonce (another host or "
                          "a lost state directory %s?).",
                          w->settings.worker_id, w->settings.state_directory);
        else if (reply->status == 401)
                log_error("Registration refused: the control plane does not accept the token in %s.",
                          w->settings.token_file);
        session_retry(w, reply, "Registration");
}

static void register_send(Worker *w) {
        _cleanup_json_ json_object *body = json_object_new_object();
        int k;

        /* A worker stopping in wait mode still has jobs to see through: their heartbeats and
         * results need a registration. */
        if (w->session_request || (w->stopping && worker_n_runs(w) == 0))
                return;
        json_add_string(body, "worker_id", w->settings.worker_id);
        json_add_string(body, "nonce", w->nonce);
        json_add_string(body, "instance_id", w->instance_id);
        json_add_strv(body, "capabilities", w->capabilities);
        json_add_int64(body, "slots", (int64_t) w->n_slots);
        json_add_strv(body, "gpus", w->gpus);
        if (w->wake_port > 0)
                json_add_int64(body, "wake_port", w->wake_port);
        json_add_string(body, "version", PACKAGE_VERSION);
        k = client_request(w->client, "POST", "/register", body, on_register, w, &w->session_request);
        if (k < 0) {
                ClientReply fake = { .error = k, .error_text = strerror(-k) };
                session_retry(w, &fake, "Registration");
        }
}

void session_start(Worker *w) {
        w->session = SESSION_REGISTERING;
        register_send(w);
}

/* ---- reconnect --------------------------------------------------------------------------- */

/* Only the answer to a replayed result ("complete" or "fail", naming its assignment) settles
 * it: "keep" and "lost" are about the jobs this worker holds. A result recorded while the
 * /reconnect was in flight was not in it, and a "keep" for its assignment must leave it to be
 * sent. */
static ReplayEntry *find_entry(ReplayEntry *e, size_t n, const char *action, const char *job_id,
                               const char *assignment_id) {
        ResultKind kind = result_kind_from_string(action); /* the actions are named as the kinds */
        if (kind < 0)
                return NULL;
        for (size_t i = 0; i < n; i++)
                if (e[i].kind == kind && streq_ptr(e[i].job_id, job_id) && streq_ptr(e[i].assignment_id, assignment_id))
                        return &e[i];
        return NULL;
}

/* A completion the control plane answered with another final state (the job was aborted, or failed
 * for good after the loss grace, before it arrived) was not applied: the work is on disk, the
 * control plane keeps its outcome. Logged, and resolved as not applied. */
static bool completion_superseded(Worker *w, int64_t id, const char *job_id, const char *assignment_id,
                                  const char *state) {
        char why[96];

        if (!state || streq(state, "COMPLETED"))
                return false;
        log_warning("Result of job %s (assignment %s) arrived after the job ended as %s; not applied.", job_id,
                    assignment_id, state);
        snprintf(why, sizeof(why), "job already %s", state);
        (void) replay_resolve(w->replay, id, false, why);
        return true;
}
static void apply_reconnect_actions(Worker *w, json_object *body) {
        ReplayEntry *entries = NULL;
        size_t n = 0;
        json_object *actions;

        if (!body || !json_object_object_get_ex(body, "actions", &actions) ||
            !json_object_is_type(actions, json_type_array))
                return;
        if (replay_list_pending(w->replay, &entries, &n) < 0)
                return;
        for (size_t i = 0; i < json_object_array_length(actions) && i < LIMIT_RECONNECT_ENTRIES; i++) {
                json_object *a = json_object_array_get_idx(actions, i), *v;
                const char *job_id = NULL, *assignment_id = NULL, *result = NULL, *error = NULL, *state = NULL,
                           *action = NULL;
                ReplayEntry *e;

                if (json_object_object_get_ex(a, "job_id", &v))
                        job_id = json_object_get_string(v);
                if (json_object_object_get_ex(a, "assignment_id", &v))
                        assignment_id = json_object_get_string(v);
                if (json_object_object_get_ex(a, "action", &v))
                        action = json_object_get_string(v);
                if (json_object_object_get_ex(a, "result", &v))
                        result = json_object_get_string(v);
                if (json_object_object_get_ex(a, "error", &v))
                        error = json_object_get_string(v);
                if (json_object_object_get_ex(a, "status", &v) && json_object_is_type(v, json_type_string))
                        state = json_object_get_string(v);
                e = find_entry(entries, n, action, job_id, assignment_id);
                if (!e || !result)
                        continue;
                if (streq(result, "ACCEPTED") && e->kind == RESULT_COMPLETE &&
                    completion_superseded(w, e->id, e->job_id, e->assignment_id, state))
                        continue;
                if (streq(result, "ACCEPTED")) {
                        log_info("Replayed result of job %s (assignment %s) accepted.", e->job_id, e->assignment_id);
                        (void) replay_resolve(w->replay, e->id, true, NULL);
                } else if (streq(result, "REJECTED")) {
                        log_warning("Replayed result of job %s (assignment %s) rejected for good: %s", e->job_id,
                                    e->assignment_id, strna(error));
                        (void) replay_resolve(w->replay, e->id, false, error);
                }
        }
        replay_entries_free(entries, n);
        /* Entries for jobs we run: an abort or a reassignment reported here stops them. */
        lease_handle_abort_signals(w, body);
}

static void on_reconnect(Client *c, const ClientReply *reply, void *userdata) {
        Worker *w = userdata;

        w->session_request = NULL;
        if (reply->status == 200 && client_reply_from_control_plane(reply)) {
                session_note_contact(w);
                apply_reconnect_actions(w, reply->body);
                w->session = SESSION_READY;
                w->session_failures = 0;
                log_info("Reconnected; polling for work.");
                lease_start(w);
                worker_update_status(w);
                session_flush(w);
                session_poll_now(w);
                worker_check_exit(w);
                return;
        }
        if (reply->status == 403) {
                w->session = SESSION_REGISTERING;
                session_retry(w, reply, "Reconnect");
                return;
        }
        session_retry(w, reply, "Reconnect");
}

static json_object *reconnect_body(Worker *w) {
        json_object *o = json_object_new_object(), *done = json_object_new_array();
        ReplayEntry *entries = NULL;
        size_t n = 0;

        (void) worker_add_held_jobs(w, o, NULL, NULL);
        if (replay_list_pending(w->replay, &entries, &n) >= 0)
                for (size_t i = 0; i < n && i < LIMIT_RECONNECT_ENTRIES; i++) {
                        json_object *e = json_object_get(entries[i].body);
                        json_add_string(e, "status", entries[i].kind == RESULT_COMPLETE ? "COMPLETED" : "FAILED");
                        json_object_array_add(done, e);
                }
        replay_entries_free(entries, n);
        json_add_string(o, "worker_id", w->settings.worker_id);
        json_add_string(o, "instance_id", w->instance_id);
        json_object_object_add(o, "completed_jobs", done);
        return o;
}

static void reconnect_send(Worker *w) {
        _cleanup_json_ json_object *body = NULL;
        int k;

        if (w->session_request)
                return;
        body = reconnect_body(w);
        k = client_request(w->client, "POST", "/reconnect", body, on_reconnect, w, &w->session_request);
        if (k < 0) {
                ClientReply fake = { .error = k, .error_text = strerror(-k) };
                session_retry(w, &fake, "Reconnect");
        }
}

/* ---- polling ----------------------------------------------------------------------------- */

static int on_poll_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        session_poll_now(userdata);
        return 0;
}

static void poll_again(Worker *w, usec_t delay) {
        (void) worker_arm_timer(w, &w->poll_timer, delay, on_poll_timer, w, "poll");
}

static void on_poll(Client *c, const ClientReply *reply, void *userdata) {
        Worker *w = userdata;
        char err[256];
        JobSpec *spec;
        int slot, k;

        w->poll_request = NULL;
        if (reply->status == 204 || (reply->status == 200 && !reply->body)) {
                session_note_contact(w);
                w->poll_failures = 0;
                log_debug("No work offered; polling again in %s.",
                          format_timespan((char[64]){}, 64, w->settings.poll_interval));
                poll_again(w, w->settings.poll_interval);
                worker_check_exit(w);
                return;
        }
        if (reply->status == 200) {
                session_note_contact(w);
                w->poll_failures = 0;
                k = job_spec_from_json(reply->body, &spec, err, sizeof(err));
                slot = worker_free_slot(w);
                if (k < 0 || slot < 0) {
                        log_error("Cannot take the job offered: %s", k < 0 ? err : "no free slot");
                        if (k >= 0)
                                job_spec_free(spec);
                        poll_again(w, w->settings.poll_interval);
                        return;
                }
                (void) run_claim(w, (size_t) slot, spec, reply);
                session_poll_now(w);
                return;
        }
        if (reply->status == 403) {
                session_lost_registration(w);
                return;
        }
        {
                char buf[256], span[64];
                usec_t delay = worker_backoff(w, ++w->poll_failures);
                log_warning("Poll failed (%s); next in %s.", client_reply_describe(reply, buf, sizeof(buf)),
                            format_timespan(span, sizeof(span), delay));
                poll_again(w, delay);
        }
        worker_update_status(w);
}

static char *url_escape(const char *s) {
        static const char hex[] = "0123456789ABCDEF";
        char *out = malloc(strlen(s) * 3 + 1), *p = out;
        if (!out)
                return NULL;
        for (; *s; s++) {
                unsigned char ch = (unsigned char) *s;
                if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                    strchr("-._~", ch))
                        *p++ = (char) ch;
                else {
                        *p++ = '%';
                        *p++ = hex[ch >> 4];
                        *p++ = hex[ch & 15];
                }
        }
        *p = 0;
        return out;
}

static void poll_send(Worker *w) {
        _cleanup_free_ char *id = NULL, *path = NULL;
        int k;

        if (w->poll_timer)
                (void) sd_event_source_set_enabled(w->poll_timer, SD_EVENT_OFF);
        id = url_escape(w->settings.worker_id);
        if (!id || asprintf(&path, "/next-job?worker_id=%s", id) < 0) {
                log_oom();
                return;
        }
        k = client_request(w->client, "GET", path, NULL, on_poll, w, &w->poll_request);
        if (k < 0) {
                log_error_errno(k, "Cannot poll: %m");
                poll_again(w, worker_backoff(w, ++w->poll_failures));
        }
}

static bool may_poll(Worker *w) {
        /* Nor while a result waits for the replay buffer: the next one would not fit either. */
        return w->session == SESSION_READY && !w->stopping && !w->poll_request && worker_n_unrecorded(w) == 0;
}

/* No poll while every slot runs a job, or while the runs, running and finishing, are one more
 * than the slots (worker_free_slot()). Nor while path checks hang or the disk is nearly full: the
 * poll timer looks again. */
void session_poll_now(Worker *w) {
        if (!may_poll(w) || worker_free_slot(w) < 0)
                return;
        if (worker_checks_hung(w) || worker_disk_low(w)) {
                poll_again(w, w->settings.poll_interval);
                return;
        }
        poll_send(w);
}

/* ---- result delivery ----------------------------------------------------------------------- */

typedef struct FlushCall {
        Worker *worker;
        int64_t id;
        char job_id[LIMIT_ID_LEN + 1];
        char assignment_id[LIMIT_ID_LEN + 1];
        bool complete; /* POST /complete (else /fail) */
} FlushCall;

static int on_flush_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        session_flush(userdata);
        return 0;
}

/* Answers after which sending the same result again cannot succeed. */
static bool status_is_definitive(long status) {
        return status == 400 || status == 404 || status == 409 || status == 410 || status == 422;
}

static void on_flush(Client *c, const ClientReply *reply, void *userdata) {
        FlushCall *call = userdata;
        Worker *w = call->worker;
        char buf[256];

        w->flush_request = NULL;
        client_reply_describe_origin(reply, buf, sizeof(buf));
        /* Only the control plane's own answer settles a result; any other is a failed delivery. */
        bool ours = client_reply_from_control_plane(reply), accepted = ours && reply->status == 200;
        const char *state = NULL;
        if (accepted)
                (void) json_get_string(reply->body, "status", 64, false, &state, NULL);
        if (accepted && call->complete &&
            completion_superseded(w, call->id, call->job_id, call->assignment_id, state)) {
                session_note_contact(w);
                w->flush_failures = 0;
                session_flush(w);
        } else if (accepted) {
                session_note_contact(w);
                w->flush_failures = 0;
                log_info("Result of job %s (assignment %s) accepted.", call->job_id, call->assignment_id);
                (void) replay_resolve(w->replay, call->id, true, NULL);
                session_flush(w);
        } else if (status_is_definitive(reply->status) && ours) {
                session_note_contact(w);
                log_warning("Result of job %s (assignment %s) rejected for good (%s); dropped from the replay "
                            "buffer.",
                            call->job_id, call->assignment_id, buf);
                (void) replay_resolve(w->replay, call->id, false, buf);
                session_flush(w);
        } else if (reply->status == 403) {
                session_lost_registration(w);
        } else {
                usec_t delay = worker_backoff(w, ++w->flush_failures);
                log_warning("Result of job %s not delivered (%s); kept in the replay buffer.", call->job_id, buf);
                (void) replay_note_attempt(w->replay, call->id, buf);
                if (w->stopping)
                        w->stop_flush_tried = true;
                else
                        (void) worker_arm_timer(w, &w->flush_timer, delay, on_flush_timer, w, "flush-retry");
        }
        free(call);
        worker_update_status(w);
        worker_check_exit(w);
}

/* No request in flight will call session_flush() again: the backoff does. */
static void flush_later(Worker *w) {
        (void) worker_arm_timer(w, &w->flush_timer, worker_backoff(w, ++w->flush_failures), on_flush_timer, w,
                                "flush-retry");
}

void session_flush(Worker *w) {
        ReplayEntry *entries = NULL;
        FlushCall *call;
        size_t n = 0;
        int k;

        if (w->session != SESSION_READY || w->flush_request)
                return;
        k = replay_list_pending(w->replay, &entries, &n);
        if (k < 0) {
                log_error_errno(k, "Cannot read the replay buffer: %m");
                flush_later(w);
                return;
        }
        if (n == 0) {
                replay_entries_free(entries, n);
                worker_check_exit(w);
                return;
        }
        call = calloc(1, sizeof(*call));
        if (!call)
                k = -ENOMEM;
        else {
                call->worker = w;
                call->id = entries[0].id;
                call->complete = entries[0].kind == RESULT_COMPLETE;
                snprintf(call->job_id, sizeof(call->job_id), "%s", entries[0].job_id);
                snprintf(call->assignment_id, sizeof(call->assignment_id), "%s", entries[0].assignment_id);
                k = client_request(w->client, "POST", entries[0].kind == RESULT_COMPLETE ? "/complete" : "/fail",
                                   entries[0].body, on_flush, call, &w->flush_request);
                if (k < 0)
                        free(call);
                else
                        client_request_set_destroy(w->flush_request, free);
        }
        if (k < 0) {
                log_error_errno(k, "Cannot send a result: %m");
                flush_later(w);
        }
        replay_entries_free(entries, n);
}
