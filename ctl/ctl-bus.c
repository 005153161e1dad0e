/* ctl-bus.c: entropyctl's D-Bus transport: calls org.entropy.Control1.Manager on the system bus
 * (the session bus with --user-bus) and converts the a{sv} answers into the same JSON objects the
 * HTTP API returns. `submit --wait` follows the job through JobStateChanged signals. */
#include <errno.h>
#include <stdlib.h>
#include <systemd/sd-bus.h>
#include <unistd.h>

#include "bus-json.h"
#include "ctl-output.h"
#include "ctl.h"
#include "json-util.h"
#include "log.h"

#define BUS_NAME    "org.entropy.Control1"
#define BUS_PATH    "/org/entropy/Control1"
#define BUS_MANAGER "org.entropy.Control1.Manager"
/* How long --wait trusts signals alone before it also asks for the job's state: a bus policy
 * that hides our signals must not make it hang. */
#define WAIT_POLL_USEC (2 * USEC_PER_SEC)

typedef struct BusBackend {
        Backend base;
        sd_bus *bus;
        sd_bus_slot *state_match;
        json_object *transitions; /* [[job_id, old, new], ...] seen in signals, oldest first */
} BusBackend;

static int bus_error_to_errno(const sd_bus_error *err) {
        if (sd_bus_error_has_names(err, "org.entropy.Control1.Error.NoSuchJob",
                                   "org.entropy.Control1.Error.NoSuchWorker", SD_BUS_ERROR_UNKNOWN_OBJECT))
                return -ENOENT;
        if (sd_bus_error_has_names(err, "org.entropy.Control1.Error.InvalidArgs", SD_BUS_ERROR_INVALID_ARGS))
                return -EINVAL;
        if (sd_bus_error_has_names(err, "org.entropy.Control1.Error.AccessDenied", SD_BUS_ERROR_ACCESS_DENIED,
                                   SD_BUS_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED))
                return -EACCES;
        if (sd_bus_error_has_name(err, "org.entropy.Control1.Error.Conflict"))
                return -EBUSY;
        if (sd_bus_error_has_names(err, SD_BUS_ERROR_SERVICE_UNKNOWN, SD_BUS_ERROR_NAME_HAS_NO_OWNER,
                                   SD_BUS_ERROR_NO_REPLY, SD_BUS_ERROR_DISCONNECTED, SD_BUS_ERROR_TIMEOUT))
                return -ECONNREFUSED;
        if (sd_bus_error_has_name(err, SD_BUS_ERROR_NOT_SUPPORTED))
                return -EOPNOTSUPP;
        return -EIO;
}

static int call_failed(const sd_bus_error *err, int r, CtlError *e) {
        if (sd_bus_error_is_set(err)) {
                ctl_error_set(e, 0, "%s", err->message ? err->message : err->name);
                return bus_error_to_errno(err);
        }
        return ctl_error_set(e, r, "D-Bus call failed: %s", strerror(-r));
}

/* --- calls ---------------------------------------------------------------------------------- */

/* Connected on first use, not when the backend is made: a command line the verb refuses is a
 * usage error (exit 2) whether or not there is a bus to talk to. */
static int bus_connect(BusBackend *b, CtlError *e) {
        const CtlSettings *s = b->base.settings;
        int r;

        if (b->bus)
                return 0;
        r = s->user_bus ? sd_bus_open_user(&b->bus) : sd_bus_open_system(&b->bus);
        if (r < 0) {
                ctl_error_set(e, 0, "Failed to connect to the %s bus: %s", s->user_bus ? "session" : "system",
                              strerror(-r));
                return -ECONNREFUSED;
        }
        /* Let polkit ask for a password when a human is at the terminal. */
        (void) sd_bus_set_allow_interactive_authorization(b->bus, isatty(STDIN_FILENO));
        return 0;
}

/* Sets e on failure, like every call below. */
static int new_call(BusBackend *b, const char *method, sd_bus_message **ret, CtlError *e) {
        int r = bus_connect(b, e);
        if (r < 0)
                return r;
        r = sd_bus_message_new_method_call(b->bus, ret, BUS_NAME, BUS_PATH, BUS_MANAGER, method);
        if (r < 0)
                return ctl_error_set(e, r, "Failed to build the D-Bus call: %s", strerror(-r));
        return 0;
}

static int do_call(BusBackend *b, sd_bus_message *m, sd_bus_message **reply, CtlError *e) {
        _cleanup_(sd_bus_error_free) sd_bus_error err = SD_BUS_ERROR_NULL;
        int r;

        r = sd_bus_call(b->bus, m, b->base.settings->timeout, &err, reply);
        if (r < 0)
                return call_failed(&err, r, e);
        return 0;
}

/* Calls a method whose arguments are one a{sv} (filters) and whose answer is aa{sv}. */
static int call_list(BusBackend *b, const char *method, json_object *filters, json_object **ret, CtlError *e) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        int r;

        r = new_call(b, method, &m, e);
        if (r < 0)
                return r;
        if (filters)
                r = bus_json_append_dict(m, filters);
        if (r < 0)
                return ctl_error_set(e, r, "Failed to build the D-Bus call: %s", strerror(-r));
        r = do_call(b, m, &reply, e);
        if (r < 0)
                return r;
        r = bus_json_read_array(reply, "a{sv}", BUS_JSON_LENIENT, ret);
        if (r < 0)
                return ctl_error_set(e, r, "Unexpected answer to %s: %s", method, strerror(-r));
        json_normalize(*ret);
        return 0;
}

static int bus_submit(Backend *base, json_object *spec, char **ret_job_id, CtlError *e) {
        BusBackend *b = (BusBackend *) base;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        const char *id, *path;
        int r;

        r = new_call(b, "SubmitJob", &m, e);
        if (r < 0)
                return r;
        r = bus_json_append_dict(m, spec);
        if (r < 0)
                return ctl_error_set(e, r, "Failed to build the D-Bus call: %s", strerror(-r));
        r = do_call(b, m, &reply, e);
        if (r < 0)
                return r;
        r = sd_bus_message_read(reply, "so", &id, &path);
        if (r < 0)
                return ctl_error_set(e, r, "Unexpected answer to SubmitJob: %s", strerror(-r));
        *ret_job_id = strdup(id);
        return *ret_job_id ? 0 : -ENOMEM;
}

static int bus_list_jobs(Backend *base, const char *state, const char *worker, json_object **ret, CtlError *e) {
        _cleanup_json_ json_object *filters = json_object_new_object();

        if (!filters)
                return -ENOMEM;
        if (state)
                json_add_string(filters, "state", state);
        if (worker)
                json_add_string(filters, "worker", worker);
        return call_list((BusBackend *) base, "ListJobs", filters, ret, e);
}

static int bus_get_one(BusBackend *b, const char *method, const char *id, json_object **ret, CtlError *e) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        int r;

        r = new_call(b, method, &m, e);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "s", id);
        if (r < 0)
                return ctl_error_set(e, r, "Failed to build the D-Bus call: %s", strerror(-r));
        r = do_call(b, m, &reply, e);
        if (r < 0)
                return r;
        r = bus_json_read_dict(reply, BUS_JSON_LENIENT, ret);
        if (r < 0)
                return ctl_error_set(e, r, "Unexpected answer to %s: %s", method, strerror(-r));
        json_normalize(*ret);
        return 0;
}

static int bus_get_job(Backend *base, const char *job_id, json_object **ret, CtlError *e) {
        return bus_get_one((BusBackend *) base, "GetJob", job_id, ret, e);
}

/* AbortJob and AbortWorkerJobs do not answer the reason the jobs keep: *ret_reason is NULL. */
static int bus_abort_job(Backend *base, const char *job_id, const char *reason, char **ret_reason, CtlError *e) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        BusBackend *b = (BusBackend *) base;
        int r;

        r = new_call(b, "AbortJob", &m, e);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "ss", job_id, strempty(reason));
        if (r < 0)
                return ctl_error_set(e, r, "Failed to build the D-Bus call: %s", strerror(-r));
        r = do_call(b, m, &reply, e);
        if (r < 0)
                return r;
        *ret_reason = NULL;
        return 0;
}

static int bus_abort_worker(Backend *base, const char *worker_id, const char *reason, uint64_t *ret_n,
                            char **ret_reason, CtlError *e) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        BusBackend *b = (BusBackend *) base;
        uint32_t n;
        int r;

        r = new_call(b, "AbortWorkerJobs", &m, e);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "ss", worker_id, strempty(reason));
        if (r < 0)
                return ctl_error_set(e, r, "Failed to build the D-Bus call: %s", strerror(-r));
        r = do_call(b, m, &reply, e);
        if (r < 0)
                return r;
        r = sd_bus_message_read(reply, "u", &n);
        if (r < 0)
                return ctl_error_set(e, r, "Unexpected answer to AbortWorkerJobs: %s", strerror(-r));
        *ret_n = n;
        *ret_reason = NULL;
        return 0;
}

static int bus_list_workers(Backend *base, json_object **ret, CtlError *e) {
        return call_list((BusBackend *) base, "ListWorkers", NULL, ret, e);
}

static int bus_simple(BusBackend *b, const char *method, const char *arg, sd_bus_message **reply, CtlError *e) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        r = new_call(b, method, &m, e);
        if (r < 0)
                return r;
        if (arg)
                r = sd_bus_message_append(m, "s", arg);
        if (r < 0)
                return ctl_error_set(e, r, "Failed to build the D-Bus call: %s", strerror(-r));
        return do_call(b, m, reply, e);
}

static int bus_drain(Backend *base, const char *worker_id, bool drain, CtlError *e) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        return bus_simple((BusBackend *) base, drain ? "DrainWorker" : "ResumeWorker", worker_id, &reply, e);
}

static int bus_remove_worker(Backend *base, const char *worker_id, CtlError *e) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        return bus_simple((BusBackend *) base, "RemoveWorker", worker_id, &reply, e);
}

static int bus_events(Backend *base, const EventQuery *q, json_object **ret, CtlError *e) {
        _cleanup_json_ json_object *filters = json_object_new_object();

        if (!filters)
                return -ENOMEM;
        if (q->job_id)
                json_add_string(filters, "job", q->job_id);
        if (q->worker_id)
                json_add_string(filters, "worker", q->worker_id);
        if (q->event)
                json_add_string(filters, "event", q->event);
        if (q->oldest_first)
                json_object_object_add(filters, "oldest_first", json_object_new_boolean(true));
        if (q->after_id > 0)
                json_add_int64(filters, "after_id", q->after_id);
        if (q->limit > 0)
                json_add_int64(filters, "limit", q->limit);
        return call_list((BusBackend *) base, "ListEvents", filters, ret, e);
}

static int bus_reconcile(Backend *base, uint64_t *ret_changes, CtlError *e) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        uint32_t n;
        int r;

        r = bus_simple((BusBackend *) base, "Reconcile", NULL, &reply, e);
        if (r < 0)
                return r;
        r = sd_bus_message_read(reply, "u", &n);
        if (r < 0)
                return ctl_error_set(e, r, "Unexpected answer to Reconcile: %s", strerror(-r));
        *ret_changes = n;
        return 0;
}

static int bus_reload(Backend *base, CtlError *e) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        return bus_simple((BusBackend *) base, "ReloadTokens", NULL, &reply, e);
}

/* The results go to ReplayResults, which applies them as the worker's own /reconnect would. */
static int bus_replay(Backend *base, json_object *body, json_object **ret, CtlError *e) {
        BusBackend *b = (BusBackend *) base;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_json_ json_object *answer = json_object_new_object();
        json_object *results, *actions = NULL;
        int r;

        if (!answer)
                return -ENOMEM;
        r = new_call(b, "ReplayResults", &m, e);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "s", json_str(body, "worker_id"));
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "a{sv}");
        if (r >= 0 && json_object_object_get_ex(body, "completed_jobs", &results))
                for (size_t i = 0; i < json_object_array_length(results) && r >= 0; i++)
                        r = bus_json_append_dict(m, json_object_array_get_idx(results, i));
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r < 0)
                return ctl_error_set(e, r, "Failed to build the D-Bus call: %s", strerror(-r));
        r = do_call(b, m, &reply, e);
        if (r < 0)
                return r;
        r = bus_json_read_array(reply, "a{sv}", BUS_JSON_LENIENT, &actions);
        if (r < 0)
                return ctl_error_set(e, r, "Unexpected answer to ReplayResults: %s", strerror(-r));
        json_normalize(actions);
        json_add_string(answer, "status", "ok");
        json_object_object_add(answer, "actions", actions);
        *ret = TAKE_PTR(answer);
        return 0;
}

/* --- waiting for state changes -------------------------------------------------------------- */

/* A queued transition, [job_id, old, new]: whole, or NULL when out of memory (never a
 * transition with a field missing, which pop_transition() could not read). */
static json_object *transition_new(const char *id, const char *old, const char *new) {
        json_object *t = json_object_new_array();
        const char *fields[] = {id, old, new};

        for (size_t i = 0; t && i < ELEMENTSOF(fields); i++) {
                json_object *f = json_object_new_string(fields[i]);
                if (!f || json_object_array_add(t, f) < 0) {
                        json_object_put(f);
                        json_object_put(t);
                        return NULL;
                }
        }
        return t;
}

static int on_job_state_changed(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        BusBackend *b = userdata;
        const char *id, *old, *new, *assignment;
        json_object *t;

        if (sd_bus_message_read(m, "ssss", &id, &old, &new, &assignment) < 0)
                return 0;
        t = transition_new(id, old, new);
        if (!t || json_object_array_add(b->transitions, t) < 0) {
                json_object_put(t);
                return -ENOMEM;
        }
        return 0;
}

/* Subscribes before the job exists, so that no transition between SubmitJob and the first
 * wait is missed. */
static int bus_watch(Backend *base, CtlError *e) {
        BusBackend *b = (BusBackend *) base;
        int r;

        if (b->state_match)
                return 0;
        r = bus_connect(b, e);
        if (r < 0)
                return r;
        r = sd_bus_match_signal(b->bus, &b->state_match, BUS_NAME, BUS_PATH, BUS_MANAGER, "JobStateChanged",
                                on_job_state_changed, b);
        if (r < 0)
                return ctl_error_set(e, r, "Failed to subscribe to job state signals: %s", strerror(-r));
        return 0;
}

/* The next state of job_id the signals told us about that differs from current, or NULL. */
static char *pop_transition(BusBackend *b, const char *job_id, const char *current) {
        while (json_object_array_length(b->transitions) > 0) {
                json_object *t = json_object_array_get_idx(b->transitions, 0);
                _cleanup_free_ char *id = strdup(json_object_get_string(json_object_array_get_idx(t, 0)));
                _cleanup_free_ char *new = strdup(json_object_get_string(json_object_array_get_idx(t, 2)));
                json_object_array_del_idx(b->transitions, 0, 1);
                if (id && new &&streq(id, job_id) && !streq_ptr(new, current))
                        return TAKE_PTR(new);
        }
        return NULL;
}

static int current_state(BusBackend *b, const char *job_id, char **ret, CtlError *e) {
        _cleanup_json_ json_object *job = NULL;
        int r;

        r = bus_get_job(&b->base, job_id, &job, e);
        if (r < 0)
                return r;
        *ret = strdup(strempty(json_object_get_string(json_object_object_get(job, "status"))));
        return *ret ? 0 : -ENOMEM;
}

/* Asks for the job's state, for when the signals are late or do not come. The signals that came
 * before the answer wait in the read queue: the bus keeps one sender's messages in order, so they
 * tell of transitions up to the state the answer gives, never after it. Their callbacks run now,
 * and the queue of transitions is made to end at that state: kept when it does (the way there,
 * in order), replaced by the one step to it when it does not (signals lost). Printing the answer
 * first and those signals after it would show states older than one already shown. */
static int poll_state(BusBackend *b, const char *job_id, const char *current, CtlError *e) {
        _cleanup_free_ char *now = NULL;
        const char *last = current;
        uint64_t queued;
        json_object *t;
        int r;

        r = current_state(b, job_id, &now, e);
        if (r < 0)
                return r;
        while (sd_bus_get_n_queued_read(b->bus, &queued) >= 0 && queued > 0) {
                r = sd_bus_process(b->bus, NULL); /* takes from the read queue before reading more */
                if (r < 0)
                        return ctl_error_set(e, r, "Lost the bus: %s", strerror(-r));
                if (r == 0)
                        break;
        }
        for (size_t i = 0; i < json_object_array_length(b->transitions); i++) {
                t = json_object_array_get_idx(b->transitions, i);
                if (streq_ptr(json_object_get_string(json_object_array_get_idx(t, 0)), job_id))
                        last = json_object_get_string(json_object_array_get_idx(t, 2));
        }
        if (streq_ptr(last, now))
                return 0;
        /* Built whole before the queue is emptied: out of memory, the queue stays as it was. */
        t = transition_new(job_id, strempty(current), now);
        if (!t)
                return -ENOMEM;
        json_object_array_del_idx(b->transitions, 0, json_object_array_length(b->transitions));
        if (json_object_array_add(b->transitions, t) < 0) {
                json_object_put(t);
                return -ENOMEM;
        }
        return 0;
}

static int bus_wait_state(Backend *base, const char *job_id, char **state, CtlError *e) {
        BusBackend *b = (BusBackend *) base;
        int r;

        r = bus_watch(base, e);
        if (r < 0)
                return r;
        if (!*state) {
                /* Run the callbacks of the signals that came with earlier replies: the first
                 * transition they saw is where the story starts; without any, ask. */
                while ((r = sd_bus_process(b->bus, NULL)) > 0)
                        ;
                *state = pop_transition(b, job_id, NULL);
                if (*state)
                        return 0;
                r = poll_state(b, job_id, NULL, e);
                if (r < 0)
                        return r;
                *state = pop_transition(b, job_id, NULL);
                return *state ? 0 : -ENOMEM;
        }
        for (;;) {
                char *next = pop_transition(b, job_id, *state);
                if (next) {
                        free(*state);
                        *state = next;
                        return 0;
                }
                r = sd_bus_process(b->bus, NULL);
                if (r < 0)
                        return ctl_error_set(e, r, "Lost the bus: %s", strerror(-r));
                if (r > 0)
                        continue;
                r = sd_bus_wait(b->bus, WAIT_POLL_USEC);
                if (r < 0)
                        return ctl_error_set(e, r, "Lost the bus: %s", strerror(-r));
                if (r == 0) {
                        /* Quiet for a while: ask, in case the signals do not reach us. */
                        r = poll_state(b, job_id, *state, e);
                        if (r < 0)
                                return r;
                }
        }
}

static void bus_backend_free(Backend *base) {
        BusBackend *b = (BusBackend *) base;
        sd_bus_slot_unref(b->state_match);
        sd_bus_flush_close_unref(b->bus);
        json_object_put(b->transitions);
        free(b);
}

static const BackendOps bus_ops = {
        .name = "D-Bus",
        .submit = bus_submit,
        .list_jobs = bus_list_jobs,
        .get_job = bus_get_job,
        .abort_job = bus_abort_job,
        .abort_worker = bus_abort_worker,
        .list_workers = bus_list_workers,
        .drain = bus_drain,
        .remove_worker = bus_remove_worker,
        .events = bus_events,
        .reconcile = bus_reconcile,
        .reload = bus_reload,
        .replay = bus_replay,
        .watch = bus_watch,
        .wait_state = bus_wait_state,
        .free = bus_backend_free,
};

int backend_bus_new(const CtlSettings *s, Backend **ret, CtlError *e) {
        BusBackend *b;

        b = calloc(1, sizeof(BusBackend));
        if (!b)
                return -ENOMEM;
        b->base.ops = &bus_ops;
        b->base.settings = s;
        b->transitions = json_object_new_array();
        if (!b->transitions) {
                free(b);
                return -ENOMEM;
        }
        *ret = &b->base;
        return 0;
}
