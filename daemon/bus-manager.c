/* bus-manager.c: the org.entropy.Control1.Manager interface on /org/entropy/Control1: its methods
 * (each a thin adapter from a D-Bus message to one domain operation of jobs.h, workers.h,
 * audit.h or reconcile.h), its counters as properties with PropertiesChanged, and the
 * JobStateChanged / WorkerStateChanged signals sent after each committed audit event.
 *
 * Jobs, workers and events travel as a{sv} dictionaries with the names and values of the HTTP
 * wire contract (job-json.h), so a script sees the same fields whichever API it uses; fields that
 * are null over HTTP are absent here. The full API is documented in dbus/org.entropy.Control1.xml
 * and org.entropy.Control1(5). */
#include <errno.h>
#include <stdlib.h>

#include "api.h"
#include "audit.h"
#include "auth.h"
#include "bus-internal.h"
#include "bus-json.h"
#include "job-json.h"
#include "json-util.h"
#include "log.h"
#include "reconcile.h"
#include "store.h"
#include "strv.h"


/* Runs the authorization and returns from the method handler when it did not say "go on". */
#define AUTHORIZE(r)                                                                                                   \
        do {                                                                                                           \
                int _a = (r);                                                                                          \
                if (_a <= 0)                                                                                           \
                        return _a < 0 ? _a : 1; /* 0: polkit pending, the call comes back */                           \
        } while (0)

static int reply_json_dict(sd_bus_message *m, json_object *o) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        r = sd_bus_message_new_method_return(m, &reply);
        if (r < 0)
                return r;
        r = bus_json_append_dict(reply, o);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

/* aa{sv} from a JSON array of objects. */
static int reply_json_array(sd_bus_message *m, json_object *a) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        r = sd_bus_message_new_method_return(m, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', "a{sv}");
        if (r < 0)
                return r;
        for (size_t i = 0; i < json_object_array_length(a); i++) {
                r = bus_json_append_dict(reply, json_object_array_get_idx(a, i));
                if (r < 0)
                        return r;
        }
        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

static int actor_origin(Bus *b, sd_bus_message *m, char *buf, size_t size, Origin *ret) {
        *ret = (Origin){.actor = bus_actor(b, m, buf, size)};
        return 0;
}

/* --- SubmitJob ------------------------------------------------------------------------------ */

typedef struct SubmitArgs {
        JobSpec spec;
        char *command, *working_dir;
        char **args, **requirements;
} SubmitArgs;

static void submit_args_done(SubmitArgs *a) {
        free(a->command);
        free(a->working_dir);
        strv_free(a->args);
        strv_free(a->requirements);
}

static int submit_read_field(sd_bus_message *m, const char *key, SubmitArgs *a, sd_bus_error *error) {
        int r;

        if (streq(key, "command"))
                r = bus_read_variant_string(m, &a->command);
        else if (streq(key, "args"))
                r = bus_read_variant_strv(m, &a->args);
        else if (streq(key, "working_dir"))
                r = bus_read_variant_string(m, &a->working_dir);
        else if (streq(key, "max_attempts"))
                r = bus_read_variant_int64(m, false, &a->spec.max_attempts);
        else if (streq(key, "timeout_ms"))
                r = bus_read_variant_int64(m, false, &a->spec.timeout_ms);
        else if (streq(key, "priority"))
                r = bus_read_variant_int64(m, false, &a->spec.priority);
        else if (streq(key, "needs_gpu"))
                r = bus_read_variant_bool(m, &a->spec.needs_gpu);
        else if (streq(key, "requirements"))
                r = bus_read_variant_strv(m, &a->requirements);
        else if (streq(key, "scheduled_at")) {
                /* Unix seconds like the wire contract, integer or fractional. */
                double secs;
                r = bus_read_variant_double(m, &secs);
                if (r >= 0 && (secs < 0 || secs > JOBS_SCHEDULED_AT_MAX_SEC))
                        r = -ERANGE;
                if (r >= 0)
                        a->spec.scheduled_at = (usec_t) (secs * (double) USEC_PER_SEC);
        } else
                return sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGS, "Unknown field '%s'", key);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGS, "Field '%s' has the wrong type or range", key);
        return 0;
}

/* Reads an a{sv} argument, handing each key (with the variant next) to fn. */
static int read_dict(sd_bus_message *m, int (*fn)(sd_bus_message *, const char *, void *, sd_bus_error *),
                     void *userdata, sd_bus_error *error) {
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        for (;;) {
                const char *key;
                r = sd_bus_message_enter_container(m, 'e', "sv");
                if (r < 0)
                        return r;
                if (r == 0)
                        break;
                r = sd_bus_message_read_basic(m, 's', &key);
                if (r < 0)
                        return r;
                r = fn(m, key, userdata, error);
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_exit_container(m);
}

static int submit_field_cb(sd_bus_message *m, const char *key, void *userdata, sd_bus_error *error) {
        return submit_read_field(m, key, userdata, error);
}

static int method_submit_job(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Bus *b = userdata;
        _cleanup_(submit_args_done) SubmitArgs a = {};
        _cleanup_free_ char *path = NULL;
        char job_id[RANDOM_ID_SIZE], actor[64];
        OpError err = {};
        Origin o;
        int r;

        AUTHORIZE(bus_authorize_manage(b, m, BUS_ACTION_SUBMIT, error));
        job_spec_init(&a.spec);
        r = read_dict(m, submit_field_cb, &a, error);
        if (r < 0)
                return r;
        a.spec.command = a.command;
        a.spec.args = a.args;
        a.spec.working_dir = a.working_dir;
        a.spec.requirements = a.requirements;
        actor_origin(b, m, actor, sizeof(actor), &o);
        r = jobs_submit(b->c, &o, &a.spec, job_id, &err);
        if (r < 0)
                return bus_error_from_op(error, r, BUS_SUBJECT_JOB, NULL, err.message);
        r = bus_job_path(job_id, &path);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(m, "so", job_id, path);
}

/* --- ListJobs, GetJob --------------------------------------------------------------------- */

typedef struct ListJobsArgs {
        char *state, *worker;
        int64_t limit;
} ListJobsArgs;

static int list_jobs_field_cb(sd_bus_message *m, const char *key, void *userdata, sd_bus_error *error) {
        ListJobsArgs *a = userdata;
        int r;

        if (streq(key, "state") || streq(key, "status"))
                r = bus_read_variant_string(m, &a->state);
        else if (streq(key, "worker") || streq(key, "worker_id"))
                r = bus_read_variant_string(m, &a->worker);
        else if (streq(key, "limit"))
                r = bus_read_variant_int64(m, false, &a->limit);
        else
                return sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGS, "Unknown filter '%s'", key);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGS, "Filter '%s' has the wrong type", key);
        return 0;
}

static int jobs_to_json(Control *c, Job **jobs, size_t n, json_object **ret) {
        json_object *a = json_object_new_array();
        usec_t now = control_now(c);

        if (!a)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                json_object_array_add(a, job_to_json(jobs[i], now));
        *ret = a;
        return 0;
}

static int method_list_jobs(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Bus *b = userdata;
        ListJobsArgs a = {};
        JobFilter f = JOB_FILTER_ALL;
        _cleanup_json_ json_object *arr = NULL;
        Job **jobs = NULL;
        size_t n = 0;
        int r;

        AUTHORIZE(bus_authorize_read(b, m, error));
        r = read_dict(m, list_jobs_field_cb, &a, error);
        if (r < 0)
                goto finish;
        if (a.state) {
                f.status = job_state_from_string(a.state);
                if (f.status < 0) {
                        r = sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGS, "Unknown job state '%s'", a.state);
                        goto finish;
                }
        }
        if (a.limit < 0 || a.limit > JOBS_LIST_MAX_LIMIT) {
                r = sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGS, "limit must be 0..%d", JOBS_LIST_MAX_LIMIT);
                goto finish;
        }
        f.worker_id = a.worker;
        f.limit = (size_t) a.limit;
        r = jobs_list(b->c, &f, &jobs, &n);
        if (r < 0) {
                r = bus_error_from_op(error, r, BUS_SUBJECT_JOB, NULL, NULL);
                goto finish;
        }
        r = jobs_to_json(b->c, jobs, n, &arr);
        if (r >= 0)
                r = reply_json_array(m, arr);
finish:
        job_array_free(jobs, n);
        free(a.state);
        free(a.worker);
        return r;
}

static int method_get_job(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Bus *b = userdata;
        _cleanup_(job_freep) Job *j = NULL;
        _cleanup_json_ json_object *o = NULL;
        const char *id;
        int r;

        AUTHORIZE(bus_authorize_read(b, m, error));
        r = sd_bus_message_read(m, "s", &id);
        if (r < 0)
                return r;
        r = jobs_get(b->c, id, &j);
        if (r < 0)
                return bus_error_from_op(error, r, BUS_SUBJECT_JOB, id, NULL);
        o = job_to_json(j, control_now(b->c));
        return reply_json_dict(m, o);
}

/* --- AbortJob, AbortWorkerJobs -------------------------------------------------------------- */

static int abort_common(sd_bus_message *m, Bus *b, bool worker, size_t *ret_n, sd_bus_error *error) {
        const char *id, *reason;
        char actor[64];
        OpError err = {};
        Origin o;
        int r;

        r = sd_bus_message_read(m, "ss", &id, &reason);
        if (r < 0)
                return r;
        if (isempty(id))
                return sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGS, "No %s id given", worker ? "worker" : "job");
        actor_origin(b, m, actor, sizeof(actor), &o);
        r = jobs_abort(b->c, &o, worker ? NULL : id, worker ? id : NULL, isempty(reason) ? NULL : reason, ret_n, &err);
        if (r == -ENOENT && worker)
                /* A worker without jobs to abort is no error: 0 aborted. */
                return *ret_n = 0, 0;
        if (r < 0)
                return bus_error_from_op(error, r, worker ? BUS_SUBJECT_WORKER : BUS_SUBJECT_JOB, id, err.message);
        return 0;
}

static int method_abort_job(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        size_t n = 0;
        int r;

        AUTHORIZE(bus_authorize_manage(userdata, m, BUS_ACTION_ABORT, error));
        r = abort_common(m, userdata, false, &n, error);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(m, NULL);
}

static int method_abort_worker_jobs(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        size_t n = 0;
        int r;

        AUTHORIZE(bus_authorize_manage(userdata, m, BUS_ACTION_ABORT, error));
        r = abort_common(m, userdata, true, &n, error);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(m, "u", (uint32_t) MIN(n, (size_t) UINT32_MAX));
}

/* --- Workers -------------------------------------------------------------------------------- */

static int method_list_workers(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Bus *b = userdata;
        _cleanup_json_ json_object *arr = NULL;
        Worker **workers = NULL;
        size_t n = 0;
        usec_t now;
        int r;

        AUTHORIZE(bus_authorize_read(b, m, error));
        r = workers_list(b->c, &workers, &n);
        if (r < 0)
                return bus_error_from_op(error, r, BUS_SUBJECT_WORKER, NULL, NULL);
        arr = json_object_new_array();
        if (!arr) {
                worker_array_free(workers, n);
                return -ENOMEM;
        }
        now = control_now(b->c);
        for (size_t i = 0; i < n; i++)
                json_object_array_add(arr, worker_to_json(workers[i], now));
        worker_array_free(workers, n);
        return reply_json_array(m, arr);
}

static int method_get_worker(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Bus *b = userdata;
        _cleanup_(worker_freep) Worker *w = NULL;
        _cleanup_json_ json_object *o = NULL;
        const char *id;
        int r;

        AUTHORIZE(bus_authorize_read(b, m, error));
        r = sd_bus_message_read(m, "s", &id);
        if (r < 0)
                return r;
        r = worker_get(b->c, id, &w);
        if (r < 0)
                return bus_error_from_op(error, r, BUS_SUBJECT_WORKER, id, NULL);
        o = worker_to_json(w, control_now(b->c));
        return reply_json_dict(m, o);
}

static int drain_common(sd_bus_message *m, Bus *b, bool drain, sd_bus_error *error) {
        const char *id;
        char actor[64];
        Origin o;
        int r;

        AUTHORIZE(bus_authorize_manage(b, m, BUS_ACTION_DRAIN, error));
        r = sd_bus_message_read(m, "s", &id);
        if (r < 0)
                return r;
        actor_origin(b, m, actor, sizeof(actor), &o);
        r = worker_drain(b->c, &o, id, drain);
        if (r < 0)
                return bus_error_from_op(error, r, BUS_SUBJECT_WORKER, id, NULL);
        return sd_bus_reply_method_return(m, NULL);
}

static int method_drain_worker(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        return drain_common(m, userdata, true, error);
}

static int method_resume_worker(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        return drain_common(m, userdata, false, error);
}

static int method_remove_worker(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Bus *b = userdata;
        OpError err = {};
        const char *id;
        char actor[64];
        Origin o;
        int r;

        AUTHORIZE(bus_authorize_manage(b, m, BUS_ACTION_MANAGE, error));
        r = sd_bus_message_read(m, "s", &id);
        if (r < 0)
                return r;
        actor_origin(b, m, actor, sizeof(actor), &o);
        r = worker_remove(b->c, &o, id, &err);
        if (r < 0)
                return bus_error_from_op(error, r, BUS_SUBJECT_WORKER, id, err.message);
        return sd_bus_reply_method_return(m, NULL);
}

/* --- Events --------------------------------------------------------------------------------- */

typedef struct EventArgs {
        char *job, *worker, *component, *event;
        int64_t after_id, limit;
        bool oldest_first;
} EventArgs;

static void event_args_done(EventArgs *a) {
        free(a->job);
        free(a->worker);
        free(a->component);
        free(a->event);
}

static int events_field_cb(sd_bus_message *m, const char *key, void *userdata, sd_bus_error *error) {
        EventArgs *a = userdata;
        int r;

        if (streq(key, "job") || streq(key, "job_id"))
                r = bus_read_variant_string(m, &a->job);
        else if (streq(key, "worker") || streq(key, "worker_id"))
                r = bus_read_variant_string(m, &a->worker);
        else if (streq(key, "component"))
                r = bus_read_variant_string(m, &a->component);
        else if (streq(key, "event"))
                r = bus_read_variant_string(m, &a->event);
        else if (streq(key, "after_id") || streq(key, "since_id"))
                r = bus_read_variant_int64(m, false, &a->after_id);
        else if (streq(key, "limit"))
                r = bus_read_variant_int64(m, false, &a->limit);
        else if (streq(key, "oldest_first"))
                r = bus_read_variant_bool(m, &a->oldest_first);
        else
                return sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGS, "Unknown filter '%s'", key);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGS, "Filter '%s' has the wrong type", key);
        return 0;
}

static int reply_events(sd_bus_message *m, Bus *b, const EventArgs *a, sd_bus_error *error) {
        _cleanup_json_ json_object *arr = NULL;
        AuditEvent **events = NULL;
        size_t n = 0;
        int r;

        if (a->after_id < 0 || a->limit < 0 || a->limit > LIMIT_EVENTS_PAGE)
                return sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGS, "after_id must be >= 0, limit 0..%d",
                                         LIMIT_EVENTS_PAGE);
        EventFilter f = {
                .component = a->component,
                .event = a->event,
                .worker_id = a->worker,
                .job_id = a->job,
                .since_id = a->after_id,
                .limit = a->limit > 0 ? a->limit : EVENTS_PAGE_DEFAULT,
                .oldest_first = a->oldest_first,
        };
        r = audit_list(b->c, &f, &events, &n);
        if (r < 0)
                return bus_error_from_op(error, r, BUS_SUBJECT_JOB, NULL, NULL);
        arr = json_object_new_array();
        if (!arr) {
                audit_event_array_free(events, n);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++)
                json_object_array_add(arr, audit_event_to_json(events[i]));
        audit_event_array_free(events, n);
        return reply_json_array(m, arr);
}

static int method_get_events(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        EventArgs a = {};
        uint64_t after;
        uint32_t limit;
        int r;

        AUTHORIZE(bus_authorize_read(userdata, m, error));
        r = sd_bus_message_read(m, "tu", &after, &limit);
        if (r < 0)
                return r;
        if (after > INT64_MAX)
                return sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGS, "after_id out of range");
        a.after_id = (int64_t) after;
        a.limit = limit;
        return reply_events(m, userdata, &a, error);
}

static int method_list_events(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        _cleanup_(event_args_done) EventArgs a = {};
        int r;

        AUTHORIZE(bus_authorize_read(userdata, m, error));
        r = read_dict(m, events_field_cb, &a, error);
        if (r < 0)
                return r;
        return reply_events(m, userdata, &a, error);
}

/* --- Reconcile, ReloadTokens ---------------------------------------------------------------- */

static int method_reconcile(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Bus *b = userdata;
        unsigned changes = 0;
        int r;

        AUTHORIZE(bus_authorize_manage(b, m, BUS_ACTION_MANAGE, error));
        r = reconcile_sweep(b->c, &changes);
        if (r < 0)
                return bus_error_from_op(error, r, BUS_SUBJECT_JOB, NULL, NULL);
        return sd_bus_reply_method_return(m, "u", (uint32_t) changes);
}

/* Only the tokens, with the token file paths in effect; SIGHUP (systemctl reload) re-reads the
 * configuration too. All or nothing: on failure the current tokens stay valid. */
static int method_reload_tokens(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Bus *b = userdata;
        int r;

        AUTHORIZE(bus_authorize_manage(b, m, BUS_ACTION_RELOAD, error));
        r = auth_load(b->c);
        if (r < 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_FAILED,
                                         "Reloading the tokens failed (%s); the current tokens stay valid.",
                                         strerror(-r));
        log_info("Tokens reloaded on request over D-Bus.");
        return sd_bus_reply_method_return(m, NULL);
}

/* --- ReplayResults -------------------------------------------------------------------------- */

/* Reads aa{sv} results into the body of a /reconnect request for worker_id. */
static int replay_body(sd_bus_message *m, const char *worker_id, json_object **ret) {
        _cleanup_json_ json_object *body = json_object_new_object(), *results = json_object_new_array();
        int r;

        if (!body || !results)
                return -ENOMEM;
        r = sd_bus_message_enter_container(m, 'a', "a{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_at_end(m, false)) == 0) {
                json_object *o = NULL;
                r = bus_json_read_dict(m, BUS_JSON_STRICT, &o);
                if (r < 0)
                        return r;
                json_object_array_add(results, o);
        }
        if (r < 0)
                return r;
        r = sd_bus_message_exit_container(m);
        if (r < 0)
                return r;
        json_add_string(body, "worker_id", worker_id);
        json_object_object_add(body, "completed_jobs", TAKE_PTR(results));
        *ret = TAKE_PTR(body);
        return 0;
}

static int replay_error(sd_bus_error *error, const HttpResponse *resp, const char *worker_id) {
        _cleanup_json_ json_object *o = resp->body ? json_tokener_parse(resp->body) : NULL;
        json_object *msg = NULL;
        const char *text = o && json_object_object_get_ex(o, "error", &msg) ? json_object_get_string(msg) : NULL;

        switch (resp->status) {
        case 400:
        case 413:
                return sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGS, "%s", strna(text));
        case 403:
        case 404:
                return sd_bus_error_setf(error, BUS_ERROR_NO_SUCH_WORKER, "No registered worker '%s'", worker_id);
        case 409:
                return sd_bus_error_setf(error, BUS_ERROR_CONFLICT, "%s", strna(text));
        default:
                return sd_bus_error_setf(error, SD_BUS_ERROR_FAILED, "%s", strna(text));
        }
}

/* A dead worker's undelivered results, handed over by an operator (entropyctl replay). They are
 * applied exactly as the worker's own POST /reconnect would be: the same validation, the same
 * idempotency (a result already applied is an ACCEPTED no-op), the same audit as that worker. */
static int method_replay_results(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Bus *b = userdata;
        _cleanup_json_ json_object *body = NULL, *answer = NULL;
        HttpResponse resp = {};
        const char *worker_id, *text;
        json_object *actions;
        char actor[64];
        Origin o;
        int r;

        AUTHORIZE(bus_authorize_manage(b, m, BUS_ACTION_MANAGE, error));
        r = sd_bus_message_read(m, "s", &worker_id);
        if (r < 0)
                return r;
        r = replay_body(m, worker_id, &body);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGS, "Results must be a{sv} of strings and numbers");
        text = json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN);
        HttpRequest req = {.method = "POST", .path = "/reconnect", .body = text, .body_size = strlen(text)};
        snprintf(req.remote, sizeof(req.remote), "dbus");
        actor_origin(b, m, actor, sizeof(actor), &o);
        r = api_post_reconnect_as(b->c, &req, &o, &resp);
        if (r >= 0 && resp.status != 200)
                r = replay_error(error, &resp, worker_id);
        else if (r >= 0) {
                answer = resp.body ? json_tokener_parse(resp.body) : NULL;
                if (!answer || !json_object_object_get_ex(answer, "actions", &actions))
                        r = sd_bus_error_set(error, SD_BUS_ERROR_FAILED, "No actions in the answer");
                else
                        r = reply_json_array(m, actions);
        }
        http_response_done(&resp);
        return r;
}

/* --- Properties ----------------------------------------------------------------------------- */

static int load_counts(Bus *b, uint64_t jobs[_JOB_STATE_MAX], uint64_t workers[_WORKER_STATE_MAX]) {
        int r;

        memset(jobs, 0, sizeof(uint64_t) * _JOB_STATE_MAX);
        memset(workers, 0, sizeof(uint64_t) * _WORKER_STATE_MAX);
        r = store_count_jobs_by_state(b->c->store, jobs);
        if (r < 0)
                return r;
        return workers_count_by_state(b->c, workers, NULL);
}

static int property_get_version(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", PACKAGE_VERSION);
}

static int property_get_start_time(sd_bus *bus, const char *path, const char *interface, const char *property,
                                   sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Bus *b = userdata;
        return sd_bus_message_append(reply, "t", (uint64_t) b->c->started_at);
}

static int property_get_unannounced(sd_bus *bus, const char *path, const char *interface, const char *property,
                                    sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Bus *b = userdata;
        return sd_bus_message_append(reply, "t", b->c->counters.bus_events_dropped);
}

/* Each counter property reads fresh counts: a client asking gets the truth, not a cache. Only
 * our own PropertiesChanged, built right after counting, takes the counts just read. */
static int property_get_counts(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Bus *b = userdata;
        uint64_t fresh_jobs[_JOB_STATE_MAX], fresh_workers[_WORKER_STATE_MAX];
        const uint64_t *jobs = b->job_counts, *workers = b->worker_counts;
        static const struct {
                const char *name;
                JobState state;
        } job_props[] = {
                {"JobsPending", JOB_PENDING},   {"JobsAssigned", JOB_ASSIGNED}, {"JobsRunning", JOB_RUNNING},
                {"JobsRetrying", JOB_RETRYING}, {"JobsLost", JOB_LOST},
        };
        int r;

        if (!b->counts_emitting) {
                r = bus_authorize_read(b, sd_bus_get_current_message(bus), error);
                if (r <= 0)
                        return r < 0 ? r : -EACCES;
                r = load_counts(b, fresh_jobs, fresh_workers);
                if (r < 0)
                        return r;
                jobs = fresh_jobs;
                workers = fresh_workers;
        }
        if (streq(property, "QueueDepth"))
                return bus_append_job_counts(reply, jobs);
        if (streq(property, "WorkersByState"))
                return bus_append_worker_counts(reply, workers);
        if (streq(property, "WorkersOnline"))
                return sd_bus_message_append(reply, "u", (uint32_t) workers[WORKER_ONLINE]);
        for (size_t i = 0; i < ELEMENTSOF(job_props); i++)
                if (streq(property, job_props[i].name))
                        return sd_bus_message_append(reply, "u", (uint32_t) jobs[job_props[i].state]);
        return -EINVAL;
}

static const sd_bus_vtable manager_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Version", "s", property_get_version, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("StartTimestamp", "t", property_get_start_time, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("QueueDepth", "a{su}", property_get_counts, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("WorkersByState", "a{su}", property_get_counts, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("JobsPending", "u", property_get_counts, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("JobsAssigned", "u", property_get_counts, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("JobsRunning", "u", property_get_counts, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("JobsRetrying", "u", property_get_counts, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("JobsLost", "u", property_get_counts, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("WorkersOnline", "u", property_get_counts, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("UnannouncedEvents", "t", property_get_unannounced, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),

        SD_BUS_METHOD_WITH_NAMES("SubmitJob", "a{sv}", SD_BUS_PARAM(spec), "so", SD_BUS_PARAM(job_id) SD_BUS_PARAM(job),
                                 method_submit_job, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("ListJobs", "a{sv}", SD_BUS_PARAM(filters), "aa{sv}", SD_BUS_PARAM(jobs),
                                 method_list_jobs, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("GetJob", "s", SD_BUS_PARAM(job_id), "a{sv}", SD_BUS_PARAM(job), method_get_job,
                                 SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("AbortJob", "ss", SD_BUS_PARAM(job_id) SD_BUS_PARAM(reason), "", , method_abort_job,
                                 SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("AbortWorkerJobs", "ss", SD_BUS_PARAM(worker_id) SD_BUS_PARAM(reason), "u",
                                 SD_BUS_PARAM(aborted), method_abort_worker_jobs, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("ListWorkers", "", , "aa{sv}", SD_BUS_PARAM(workers), method_list_workers,
                                 SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("GetWorker", "s", SD_BUS_PARAM(worker_id), "a{sv}", SD_BUS_PARAM(worker),
                                 method_get_worker, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("DrainWorker", "s", SD_BUS_PARAM(worker_id), "", , method_drain_worker,
                                 SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("ResumeWorker", "s", SD_BUS_PARAM(worker_id), "", , method_resume_worker,
                                 SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("RemoveWorker", "s", SD_BUS_PARAM(worker_id), "", , method_remove_worker,
                                 SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("GetEvents", "tu", SD_BUS_PARAM(after_id) SD_BUS_PARAM(limit), "aa{sv}",
                                 SD_BUS_PARAM(events), method_get_events, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("ListEvents", "a{sv}", SD_BUS_PARAM(filters), "aa{sv}", SD_BUS_PARAM(events),
                                 method_list_events, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("Reconcile", "", , "u", SD_BUS_PARAM(changes), method_reconcile,
                                 SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("ReloadTokens", "", "", method_reload_tokens, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("ReplayResults", "saa{sv}", SD_BUS_PARAM(worker_id) SD_BUS_PARAM(results), "aa{sv}",
                                 SD_BUS_PARAM(actions), method_replay_results, SD_BUS_VTABLE_UNPRIVILEGED),

        SD_BUS_SIGNAL_WITH_NAMES(
                "JobStateChanged", "ssss",
                SD_BUS_PARAM(job_id) SD_BUS_PARAM(old_state) SD_BUS_PARAM(new_state) SD_BUS_PARAM(assignment_id), 0),
        SD_BUS_SIGNAL_WITH_NAMES("WorkerStateChanged", "sss",
                                 SD_BUS_PARAM(worker_id) SD_BUS_PARAM(old_state) SD_BUS_PARAM(new_state), 0),
        SD_BUS_VTABLE_END};

int bus_manager_add(Bus *b) {
        return sd_bus_add_object_vtable(b->bus, NULL, CONTROL_BUS_PATH, CONTROL_BUS_MANAGER_INTERFACE, manager_vtable,
                                        b);
}

/* --- After each committed event ------------------------------------------------------------- */

void bus_manager_emit_counts(Bus *b) {
        uint64_t jobs[_JOB_STATE_MAX], workers[_WORKER_STATE_MAX];
        char *changed[12];
        size_t n = 0;
        int r;

        if (!b->counts_dirty)
                return;
        b->counts_dirty = false;
        r = load_counts(b, jobs, workers);
        if (r < 0) {
                log_warning_errno(r, "Failed to count jobs and workers for D-Bus properties: %m");
                return;
        }
        bool all = !b->counts_known;
        bool jobs_moved = all || memcmp(jobs, b->job_counts, sizeof(jobs)) != 0;
        bool workers_moved = all || memcmp(workers, b->worker_counts, sizeof(workers)) != 0;
#define CHANGED(cond, name)                                                                                            \
        do {                                                                                                           \
                if (cond)                                                                                              \
                        changed[n++] = (name);                                                                         \
        } while (0)
        CHANGED(jobs_moved, "QueueDepth");
        CHANGED(all || jobs[JOB_PENDING] != b->job_counts[JOB_PENDING], "JobsPending");
        CHANGED(all || jobs[JOB_ASSIGNED] != b->job_counts[JOB_ASSIGNED], "JobsAssigned");
        CHANGED(all || jobs[JOB_RUNNING] != b->job_counts[JOB_RUNNING], "JobsRunning");
        CHANGED(all || jobs[JOB_RETRYING] != b->job_counts[JOB_RETRYING], "JobsRetrying");
        CHANGED(all || jobs[JOB_LOST] != b->job_counts[JOB_LOST], "JobsLost");
        CHANGED(workers_moved, "WorkersByState");
        CHANGED(all || workers[WORKER_ONLINE] != b->worker_counts[WORKER_ONLINE], "WorkersOnline");
        CHANGED(b->announce_unannounced, "UnannouncedEvents");
#undef CHANGED
        b->announce_unannounced = false;
        changed[n] = NULL;
        memcpy(b->job_counts, jobs, sizeof(jobs));
        memcpy(b->worker_counts, workers, sizeof(workers));
        b->counts_known = true;
        if (n == 0)
                return;
        b->counts_emitting = true;
        r = sd_bus_emit_properties_changed_strv(b->bus, CONTROL_BUS_PATH, CONTROL_BUS_MANAGER_INTERFACE, changed);
        b->counts_emitting = false;
        if (r < 0)
                log_debug_errno(r, "Failed to emit PropertiesChanged: %m");
}

/* "worker.offline" -> "OFFLINE"; "worker.drain" -> "DRAINING". */
static const char *worker_state_from_event(const AuditEvent *e) {
        if (e->to_state && worker_state_from_string(e->to_state) >= 0)
                return e->to_state;
        if (streq(e->event, "worker.online"))
                return "ONLINE";
        if (streq(e->event, "worker.disconnected"))
                return "DISCONNECTED";
        if (streq(e->event, "worker.offline"))
                return "OFFLINE";
        if (streq(e->event, "worker.drain"))
                return "DRAINING";
        return NULL;
}

static void emit_state_signal(Bus *b, const AuditEvent *e) {
        const char *from, *to;
        int r = 0;

        if (strncmp(e->event, "job.", 4) == 0 && e->job_id && !streq(e->event, "job.transition_refused") &&
            !streq(e->event, "job.assignment_stale")) {
                to = streq(e->event, "job.submitted") ? "PENDING" : e->to_state;
                if (!to || job_state_from_string(to) < 0)
                        return;
                r = sd_bus_emit_signal(b->bus, CONTROL_BUS_PATH, CONTROL_BUS_MANAGER_INTERFACE, "JobStateChanged",
                                       "ssss", e->job_id, strempty(e->from_state), to, strempty(e->assignment_id));
        } else if (strncmp(e->event, "worker.", 7) == 0 && e->worker_id) {
                /* A known worker's registration has no "to" and changes no state by itself: when
                 * it comes back from DISCONNECTED or OFFLINE, the worker.online event of the same
                 * transaction says so. A new worker's has one, and no "from". */
                from = strempty(e->from_state);
                to = worker_state_from_event(e);
                if (!to)
                        return;
                r = sd_bus_emit_signal(b->bus, CONTROL_BUS_PATH, CONTROL_BUS_MANAGER_INTERFACE, "WorkerStateChanged",
                                       "sss", e->worker_id, from, to);
        }
        if (r < 0)
                log_debug_errno(r, "Failed to emit a state signal for event %s: %m", e->event);
}

/* The signals go at once, in commit order: each transition is one signal, which coalescing
 * would lose. The counters are recounted once the batch is done (bus.c). */
void bus_manager_event(Bus *b, const AuditEvent *e) {
        if (!e->event)
                return;
        emit_state_signal(b, e);
        if (strncmp(e->event, "job.", 4) == 0 || strncmp(e->event, "worker.", 7) == 0)
                b->counts_dirty = true;
}
