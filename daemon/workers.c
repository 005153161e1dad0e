/* workers.c: registration (nonce pinning, instance ids), heartbeats and other contact, drain,
 * and worker state derived from the age of the last contact. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "crypto.h"
#include "jobs-internal.h"
#include "json-util.h"
#include "log.h"
#include "store.h"
#include "strv.h"
#include "workers.h"

#define WORKER_SELECT                                                                                                  \
        "SELECT worker_id, instance_id, capabilities, current_job_id, metrics, heartbeat_seq, last_seen, "             \
        "registered_at, draining, restart_pending, nonce IS NOT NULL, state, wake_port, wake_address, version, "      \
        "slots, gpus FROM workers "

Worker *worker_free(Worker *w) {
        if (!w)
                return NULL;
        free(w->worker_id);
        free(w->instance_id);
        strv_free(w->capabilities);
        free(w->current_job_id);
        free(w->metrics);
        free(w->wake_address);
        free(w->version);
        strv_free(w->gpus);
        free(w);
        return NULL;
}

void worker_array_free(Worker **a, size_t n) {
        for (size_t i = 0; i < n; i++)
                worker_free(a[i]);
        free(a);
}

/* The state of a worker heard from within disconnect_timeout, which contact brings it back to. */
static WorkerState state_on_contact(bool draining) {
        return draining ? WORKER_DRAINING : WORKER_ONLINE;
}

WorkerState worker_state_at(const Control *c, const Worker *w, usec_t now) {
        /* A restarted control plane gives every worker a fresh start: its own downtime is not the
         * workers' fault. Not one that was OFFLINE already: it did not come back, and saying it
         * did would put a false worker.online in the audit trail after every restart. */
        usec_t seen = w->stored == WORKER_OFFLINE ? w->last_seen : MAX(w->last_seen, c->started_at);
        usec_t age = now > seen ? now - seen : 0;

        if (age > c->settings.heartbeat_timeout)
                return WORKER_OFFLINE;
        if (age > c->settings.disconnect_timeout)
                return WORKER_DISCONNECTED;
        return state_on_contact(w->draining);
}

static int worker_from_row(Control *c, sqlite3_stmt *st, Worker **ret, WorkerState *ret_stored) {
        _cleanup_(worker_freep) Worker *w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        if (store_column_strdup(st, 0, &w->worker_id) < 0 || store_column_strdup(st, 1, &w->instance_id) < 0 ||
            strv_from_json_text((const char *) sqlite3_column_text(st, 2), &w->capabilities) < 0 ||
            store_column_strdup(st, 3, &w->current_job_id) < 0 || store_column_strdup(st, 4, &w->metrics) < 0)
                return -ENOMEM;
        w->heartbeat_seq = sqlite3_column_int64(st, 5);
        w->last_seen = (usec_t) sqlite3_column_int64(st, 6);
        w->registered_at = (usec_t) sqlite3_column_int64(st, 7);
        w->draining = sqlite3_column_int(st, 8) != 0;
        w->restart_pending = sqlite3_column_int(st, 9) != 0;
        w->has_nonce = sqlite3_column_int(st, 10) != 0;
        w->stored = worker_state_from_string((const char *) sqlite3_column_text(st, 11));
        if (ret_stored)
                *ret_stored = w->stored;
        w->wake_port = (uint16_t) CLAMP(sqlite3_column_int64(st, 12), 0, 65535);
        if (store_column_strdup(st, 13, &w->wake_address) < 0 || store_column_strdup(st, 14, &w->version) < 0 ||
            (sqlite3_column_type(st, 16) != SQLITE_NULL &&
             strv_from_json_text((const char *) sqlite3_column_text(st, 16), &w->gpus) < 0))
                return -ENOMEM;
        w->slots = sqlite3_column_int64(st, 15);
        w->state = worker_state_at(c, w, control_now(c));
        *ret = TAKE_PTR(w);
        return 0;
}

int worker_get(Control *c, const char *worker_id, Worker **ret) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r;

        if (isempty(worker_id) || strlen(worker_id) > LIMIT_ID_LEN)
                return -ENOENT;
        r = store_prepare(c->store, WORKER_SELECT "WHERE worker_id = ?", &st);
        if (r < 0)
                return r;
        if (store_bind_text(st, 1, worker_id) < 0)
                return -ENOMEM;
        r = store_step(c->store, st);
        if (r < 0)
                return r;
        if (r == 0)
                return -ENOENT;
        return worker_from_row(c, st, ret, NULL);
}

int worker_require(Control *c, const char *worker_id, Worker **ret) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r;

        if (ret) {
                r = worker_get(c, worker_id, ret);
                return r == -ENOENT ? -EPERM : r;
        }
        if (isempty(worker_id) || strlen(worker_id) > LIMIT_ID_LEN)
                return -EPERM;
        r = store_prepare(c->store, "SELECT 1 FROM workers WHERE worker_id = ?", &st);
        if (r < 0)
                return r;
        if (store_bind_text(st, 1, worker_id) < 0)
                return -ENOMEM;
        r = store_step(c->store, st);
        if (r < 0)
                return r;
        return r > 0 ? 0 : -EPERM;
}

static int list_all(Control *c, Worker ***ret, WorkerState **ret_stored, size_t *ret_n) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        Worker **a = NULL;
        WorkerState *stored = NULL;
        size_t n = 0;
        int r;

        r = store_prepare(c->store, WORKER_SELECT "ORDER BY worker_id", &st);
        if (r < 0)
                return r;
        while ((r = store_step(c->store, st)) > 0) {
                Worker **p = realloc(a, (n + 1) * sizeof(*p));
                WorkerState *q = p ? realloc(stored, (n + 1) * sizeof(*q)) : NULL;
                if (p)
                        a = p;
                if (q)
                        stored = q;
                if (!p || !q) {
                        r = -ENOMEM;
                        break;
                }
                r = worker_from_row(c, st, &a[n], &stored[n]);
                if (r < 0)
                        break;
                n++;
        }
        if (r < 0) {
                worker_array_free(a, n);
                free(stored);
                return r;
        }
        *ret = a;
        *ret_n = n;
        if (ret_stored)
                *ret_stored = stored;
        else
                free(stored);
        return 0;
}

int workers_list(Control *c, Worker ***ret, size_t *ret_n) {
        return list_all(c, ret, NULL, ret_n);
}

/* Asked after every busy loop iteration (STATUS=, D-Bus): only the columns the state derives
 * from, no Worker built, no capabilities parsed; the heartbeats' metrics only when asked for. */
int workers_count_by_state(Control *c, uint64_t counts[_WORKER_STATE_MAX], uint64_t *ret_no_new_work) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        usec_t now = control_now(c);
        uint64_t no_new_work = 0;
        int r;

        memset(counts, 0, sizeof(uint64_t) * _WORKER_STATE_MAX);
        r = store_prepare(c->store,
                          ret_no_new_work ? "SELECT last_seen, draining, state, CASE WHEN json_valid(metrics) THEN "
                                            "json_type(metrics, '$.no_new_work') = 'text' END FROM workers"
                                          : "SELECT last_seen, draining, state FROM workers",
                          &st);
        if (r < 0)
                return r;
        while ((r = store_step(c->store, st)) > 0) {
                Worker w = {.last_seen = (usec_t) sqlite3_column_int64(st, 0),
                            .draining = sqlite3_column_int(st, 1) != 0,
                            .stored = worker_state_from_string((const char *) sqlite3_column_text(st, 2))};
                WorkerState state = worker_state_at(c, &w, now);

                counts[state]++;
                /* What a worker no longer heard from said last is not current. */
                if (ret_no_new_work && (state == WORKER_ONLINE || state == WORKER_DRAINING))
                        no_new_work += sqlite3_column_int(st, 3) != 0;
        }
        if (r >= 0 && ret_no_new_work)
                *ret_no_new_work = no_new_work;
        return r;
}

/* ---- state changes ---- */

/* The audit record of a change to one worker (component "workers"). */
static int audit_worker(Control *c, const Origin *o, const char *worker_id, int level, const char *event,
                        const char *message, json_object *details) {
        return audit_record(c,
                            &(AuditRecord){.component = "workers",
                                           .level = level,
                                           .event = event,
                                           .message = message,
                                           .origin = o,
                                           .worker_id = worker_id,
                                           .details = details},
                            NULL);
}

static int store_state(Control *c, const Origin *o, const char *worker_id, WorkerState from, WorkerState to) {
        static const char *const events[_WORKER_STATE_MAX] = {
                [WORKER_ONLINE] = "worker.online",
                [WORKER_DISCONNECTED] = "worker.disconnected",
                [WORKER_OFFLINE] = "worker.offline",
                [WORKER_DRAINING] = "worker.drain",
        };
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        _cleanup_json_ json_object *d = json_object_new_object();
        char msg[256];
        int r;

        if (!d)
                return -ENOMEM;
        r = store_prepare(c->store, "UPDATE workers SET state = ? WHERE worker_id = ?", &st);
        if (r < 0)
                return r;
        if (store_bind_text(st, 1, worker_state_to_string(to)) < 0 || store_bind_text(st, 2, worker_id) < 0)
                return -ENOMEM;
        r = store_step(c->store, st);
        if (r < 0)
                return r;
        json_add_string(d, "from", worker_state_to_string(from));
        json_add_string(d, "to", worker_state_to_string(to));
        snprintf(msg, sizeof(msg), "Worker %s is %s (was %s)", worker_id, worker_state_to_string(to),
                 worker_state_to_string(from));
        return audit_worker(c, o, worker_id, to == WORKER_OFFLINE ? LOG_WARNING : LOG_INFO, events[to], msg, d);
}

/* One worker's change of state, in a step of its own: a change that fails is logged and left for
 * the next sweep, and the other workers and the jobs' recovery still go on. 1: it changed; 0: it
 * was left; negative: the transaction is lost and the sweep with it. */
static int sweep_one(Control *c, const Worker *w, WorkerState from, WorkerState to) {
        const Origin o = {.actor = "reconciler"};
        size_t mark;
        int r, k;

        r = control_step_begin(c, &mark);
        if (r < 0)
                return r;
        r = store_state(c, &o, w->worker_id, from, to);
        k = control_step_end(c, mark, r >= 0);
        if (k < 0)
                return k;
        if (r < 0) {
                log_warning_errno(r, "Reconciler: worker %s could not be marked %s, left for the next tick: %m",
                                  w->worker_id, worker_state_to_string(to));
                return 0;
        }
        return 1;
}

int workers_sweep_states(Control *c, usec_t now) {
        Worker **a = NULL;
        WorkerState *stored = NULL;
        size_t n = 0;
        int r, changed = 0;

        r = list_all(c, &a, &stored, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                WorkerState s = worker_state_at(c, a[i], now);
                if (s == stored[i])
                        continue;
                r = sweep_one(c, a[i], stored[i], s);
                if (r < 0)
                        break;
                changed += r;
        }
        worker_array_free(a, n);
        free(stored);
        return r < 0 ? r : changed;
}

/* The state a worker that was just heard from should be in, audited if it changed. */
static int mark_seen(Control *c, const Origin *o, const char *worker_id) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        _cleanup_(worker_freep) Worker *w = NULL;
        int r;

        r = store_prepare(c->store, WORKER_SELECT "WHERE worker_id = ?", &st);
        if (r < 0)
                return r;
        if (store_bind_text(st, 1, worker_id) < 0)
                return -ENOMEM;
        r = store_step(c->store, st);
        if (r <= 0)
                return r < 0 ? r : -ENOENT;
        WorkerState stored;
        r = worker_from_row(c, st, &w, &stored);
        if (r < 0)
                return r;
        WorkerState now = state_on_contact(w->draining);
        if (stored == now)
                return 0;
        sqlite3_reset(st);
        return store_state(c, o, worker_id, stored, now);
}

/* ---- register ---- */

bool ip_address_is_numeric(const char *s) {
        unsigned char buf[sizeof(struct in6_addr)];
        return s && (inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1);
}

/* Shown to operators as they are (entropyctl, D-Bus strings, the journal): one word of printable ASCII. */
static bool is_word(const char *s, size_t max) {
        size_t n = strlen(s);

        if (n == 0 || n > max)
                return false;
        for (const char *p = s; *p; p++)
                if ((unsigned char) *p < 0x21 || (unsigned char) *p > 0x7e || *p == ',')
                        return false;
        return true;
}

/* What the worker says it is: informational, but bounded like everything from the network. */
static int validate_description(const WorkerRegistration *reg, OpError *err) {
        if (reg->version && !is_word(reg->version, LIMIT_VERSION_LEN))
                return op_error_set(err, -EINVAL,
                                    "field 'version' must be 1 to %d bytes of printable ASCII, without spaces or commas",
                                    LIMIT_VERSION_LEN);
        if (reg->slots < 0 || reg->slots > LIMIT_SLOTS)
                return op_error_set(err, -EINVAL, "field 'slots' must be between 1 and %d", LIMIT_SLOTS);
        if (strv_length(reg->gpus) > LIMIT_GPUS)
                return op_error_set(err, -EINVAL, "field 'gpus' has more than %d items", LIMIT_GPUS);
        STRV_FOREACH (g, reg->gpus)
                if (!is_word(*g, LIMIT_CAPABILITY_LEN))
                        return op_error_set(err, -EINVAL,
                                            "a GPU in field 'gpus' is not 1 to %d bytes of printable ASCII without "
                                            "spaces or commas",
                                            LIMIT_CAPABILITY_LEN);
        return 0;
}

static int validate_registration(const WorkerRegistration *reg, OpError *err) {
        if (isempty(reg->worker_id) || strlen(reg->worker_id) > LIMIT_ID_LEN)
                return op_error_set(err, -EINVAL, "field 'worker_id' is required, at most %d bytes", LIMIT_ID_LEN);
        if (!worker_id_is_registrable(reg->worker_id))
                return op_error_set(err, -EINVAL, "field 'worker_id' must be printable, without spaces");
        if ((reg->nonce && strlen(reg->nonce) > LIMIT_ID_LEN) ||
            (reg->instance_id && strlen(reg->instance_id) > LIMIT_ID_LEN))
                return op_error_set(err, -EINVAL, "fields 'nonce' and 'instance_id' are limited to %d bytes",
                                    LIMIT_ID_LEN);
        if (strv_length(reg->capabilities) > LIMIT_REQUIREMENTS)
                return op_error_set(err, -EINVAL, "field 'capabilities' has more than %d items", LIMIT_REQUIREMENTS);
        STRV_FOREACH (cap, reg->capabilities)
                if (strlen(*cap) > LIMIT_CAPABILITY_LEN)
                        return op_error_set(err, -EINVAL, "a capability is longer than %d bytes", LIMIT_CAPABILITY_LEN);
        if (reg->wake_port < 0 || reg->wake_port > 65535)
                return op_error_set(err, -EINVAL, "field 'wake_port' must be between 1 and 65535");
        if (reg->wake_address && !ip_address_is_numeric(reg->wake_address))
                return op_error_set(err, -EINVAL, "field 'wake_address' must be a numeric IPv4 or IPv6 address");
        return validate_description(reg, err);
}

typedef struct Existing {
        bool found;
        char *nonce, *instance_id;
} Existing;

static void existing_done(Existing *e) {
        free(e->nonce);
        free(e->instance_id);
}

static int load_existing(Control *c, const char *worker_id, Existing *ret) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r = store_prepare(c->store, "SELECT nonce, instance_id FROM workers WHERE worker_id = ?", &st);
        if (r < 0)
                return r;
        if (store_bind_text(st, 1, worker_id) < 0)
                return -ENOMEM;
        r = store_step(c->store, st);
        if (r <= 0)
                return r;
        ret->found = true;
        if (store_column_strdup(st, 0, &ret->nonce) < 0 || store_column_strdup(st, 1, &ret->instance_id) < 0)
                return -ENOMEM;
        return 0;
}

static int upsert(Control *c, const WorkerRegistration *reg, bool restarted, usec_t now) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        _cleanup_free_ char *caps = NULL, *gpus = NULL;
        int r;

        if (strv_to_json_text(reg->capabilities, &caps) < 0 || (reg->gpus && strv_to_json_text(reg->gpus, &gpus) < 0))
                return -ENOMEM;
        /* The heartbeat sequence restarts with each registration: a new process counts from 0. */
        r = store_prepare(c->store,
                          "INSERT INTO workers (worker_id, nonce, instance_id, capabilities, last_seen, registered_at, "
                          "heartbeat_seq, state, wake_port, wake_address, version, slots, gpus) "
                          "VALUES (?1, ?2, ?3, ?4, ?5, ?5, -1, 'ONLINE', ?7, ?8, ?9, ?10, ?11) "
                          "ON CONFLICT(worker_id) DO UPDATE SET nonce = coalesce(nonce, ?2), "
                          "instance_id = coalesce(?3, instance_id), capabilities = ?4, last_seen = ?5, "
                          "heartbeat_seq = -1, restart_pending = restart_pending OR ?6, wake_port = ?7, "
                          "wake_address = ?8, version = ?9, slots = ?10, gpus = ?11",
                          &st);
        if (r < 0)
                return r;
        if (store_bind_text(st, 1, reg->worker_id) < 0 || store_bind_text(st, 2, reg->nonce) < 0 ||
            store_bind_text(st, 3, reg->instance_id) < 0 || store_bind_text(st, 4, caps) < 0 ||
            store_bind_int64(st, 5, (int64_t) now) < 0 || store_bind_int64(st, 6, restarted) < 0 ||
            store_bind_int64(st, 7, reg->wake_port) < 0 ||
            store_bind_text(st, 8, reg->wake_port > 0 ? reg->wake_address : NULL) < 0 ||
            store_bind_text(st, 9, reg->version) < 0 || store_bind_int64(st, 10, reg->slots) < 0 ||
            store_bind_text(st, 11, gpus) < 0)
                return -ENOMEM;
        r = store_step(c->store, st);
        return r < 0 ? r : 0;
}

/* added: the registration made the worker's row; its details then say the state it starts in
 * ("to", no "from"), which the bus announces as a new worker. */
static int audit_registration(Control *c, const Origin *o, const WorkerRegistration *reg, const char *event, int level,
                              const char *what, bool added) {
        _cleanup_json_ json_object *d = json_object_new_object();
        char msg[512];

        if (!d)
                return -ENOMEM;
        if (added)
                json_add_string(d, "to", worker_state_to_string(WORKER_ONLINE)); /* as upsert() inserts it */
        json_add_string(d, "instance_id", reg->instance_id);
        json_add_strv(d, "capabilities", reg->capabilities);
        json_add_string(d, "version", reg->version);
        if (reg->slots > 0)
                json_add_int64(d, "slots", reg->slots);
        if (reg->gpus)
                json_add_strv(d, "gpus", reg->gpus);
        if (reg->wake_port > 0) {
                json_add_int64(d, "wake_port", reg->wake_port);
                json_add_string(d, "wake_address", reg->wake_address);
        }
        snprintf(msg, sizeof(msg), "Worker %s %s", reg->worker_id, what);
        return audit_worker(c, o, reg->worker_id, level, event, msg, d);
}

static int register_locked(Control *c, const Origin *o, const WorkerRegistration *reg, OpError *err) {
        Existing ex = {};
        int r;

        r = load_existing(c, reg->worker_id, &ex);
        if (r < 0)
                goto finish;
        if (ex.found && ex.nonce && (!reg->nonce || !streq_consttime(ex.nonce, reg->nonce))) {
                r = audit_registration(c, o, reg, "worker.nonce_mismatch", LOG_WARNING,
                                       "refused: nonce does not match the one first registered", false);
                if (r >= 0)
                        r = op_error_set(err, -EEXIST, "worker %s is registered with another nonce", reg->worker_id);
                goto finish;
        }
        bool restarted = ex.found && reg->instance_id && ex.instance_id && !streq(ex.instance_id, reg->instance_id);
        r = upsert(c, reg, restarted, control_now(c));
        if (r >= 0)
                r = audit_registration(c, o, reg, restarted ? "worker.restarted" : "worker.registered", LOG_INFO,
                                       restarted ? "restarted (new instance id)" : "registered", !ex.found);
        if (r >= 0)
                r = mark_seen(c, o, reg->worker_id);
        if (r >= 0)
                r = restarted;
finish:
        existing_done(&ex);
        return r;
}

int worker_register(Control *c, const Origin *o, const WorkerRegistration *reg, OpError *err) {
        _cleanup_tx_ Control *tx = NULL;
        int r = validate_registration(reg, err);
        if (r < 0)
                return r;
        r = control_begin(c, &tx);
        if (r < 0)
                return r;
        return jobs_finish(&tx, register_locked(c, o, reg, err));
}

/* ---- heartbeat ---- */

static int store_heartbeat(Control *c, const char *worker_id, const char *current_job_id, int64_t seq,
                           const char *metrics, usec_t now) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r = store_prepare(c->store,
                              "UPDATE workers SET heartbeat_seq = ?, last_seen = ?, current_job_id = ?, "
                              "metrics = coalesce(?, metrics) WHERE worker_id = ?",
                              &st);
        if (r < 0)
                return r;
        if (store_bind_int64(st, 1, seq) < 0 || store_bind_int64(st, 2, (int64_t) now) < 0 ||
            store_bind_text(st, 3, current_job_id) < 0 || store_bind_text(st, 4, metrics) < 0 ||
            store_bind_text(st, 5, worker_id) < 0)
                return -ENOMEM;
        r = store_step(c->store, st);
        return r < 0 ? r : 0;
}

static int heartbeat_locked(Control *c, const Origin *o, const Heartbeat *hb, OpError *err) {
        _cleanup_(worker_freep) Worker *w = NULL;
        _cleanup_strv_free_ char **claimed = NULL;
        const char *current = hb->n_jobs > 0 ? hb->jobs[0].job_id : NULL;
        usec_t now = control_now(c);
        int r;

        r = worker_require(c, hb->worker_id, &w);
        if (r == -EPERM)
                return op_error_set(err, r, "worker %s is not registered", hb->worker_id);
        if (r < 0)
                return r;
        if (hb->seq <= w->heartbeat_seq)
                return OP_NOOP; /* late or repeated: an older view than the one we have */
        if (w->restart_pending) {
                r = worker_restart_claims(c, hb->worker_id, hb->jobs, hb->n_jobs, &claimed);
                if (r < 0)
                        return r;
                r = worker_resolve_restart(c, o, hb->worker_id, claimed, NULL);
                if (r < 0)
                        return r;
        }
        r = store_heartbeat(c, hb->worker_id, current, hb->seq, hb->metrics_json, now);
        if (r < 0)
                return r;
        r = mark_seen(c, o, hb->worker_id);
        if (r < 0)
                return r;
        r = jobs_renew_leases(c, hb->worker_id, hb->jobs, hb->n_jobs, now);
        return r < 0 ? r : 0;
}

static int validate_heartbeat(const Heartbeat *hb, OpError *err) {
        if (isempty(hb->worker_id) || strlen(hb->worker_id) > LIMIT_ID_LEN)
                return op_error_set(err, -EINVAL, "field 'worker_id' is required, at most %d bytes", LIMIT_ID_LEN);
        if (hb->n_jobs > LIMIT_RECONNECT_ENTRIES)
                return op_error_set(err, -EINVAL, "more than %d current jobs", LIMIT_RECONNECT_ENTRIES);
        for (size_t i = 0; i < hb->n_jobs; i++)
                if (isempty(hb->jobs[i].job_id) || strlen(hb->jobs[i].job_id) > LIMIT_ID_LEN ||
                    (hb->jobs[i].assignment_id && strlen(hb->jobs[i].assignment_id) > LIMIT_ID_LEN))
                        return op_error_set(err, -EINVAL, "current job ids are 1 to %d bytes", LIMIT_ID_LEN);
        if (hb->metrics_json && strlen(hb->metrics_json) > LIMIT_METRICS_LEN)
                return op_error_set(err, -EINVAL, "field 'metrics' is larger than %d bytes", LIMIT_METRICS_LEN);
        if (hb->seq < 0)
                return op_error_set(err, -EINVAL, "field 'seq' must not be negative");
        return 0;
}

int worker_heartbeat_report(Control *c, const Origin *o, const Heartbeat *hb, char ***ret_abort, OpError *err) {
        _cleanup_tx_ Control *tx = NULL;
        int r;

        r = validate_heartbeat(hb, err);
        if (r < 0)
                return r;
        r = control_begin(c, &tx);
        if (r < 0)
                return r;
        r = heartbeat_locked(c, o, hb, err);
        if (r != OP_NOOP) /* OP_NOOP wrote nothing: the cleanup rolls the empty transaction back */
                r = jobs_finish(&tx, r);
        else
                control_txp(&tx);
        if (r == OP_NOOP) {
                /* Its view is older than one we have, but the worker sent it: it is alive. */
                int k = worker_contact(c, o, hb->worker_id);
                if (k < 0)
                        return k;
        }
        if (r < 0 || !ret_abort)
                return r;
        /* After the commit: the restart resolution above may just have given some up. */
        int k = jobs_not_held(c, hb->worker_id, hb->jobs, hb->n_jobs, ret_abort);
        return k < 0 ? k : r;
}

int worker_heartbeat(Control *c, const Origin *o, const char *worker_id, const char *current_job_id, int64_t seq,
                     const char *metrics_json, OpError *err) {
        HeldJob job = {.job_id = current_job_id};
        Heartbeat hb = {.worker_id = worker_id,
                        .seq = seq,
                        .metrics_json = metrics_json,
                        .jobs = &job,
                        .n_jobs = isempty(current_job_id) ? 0 : 1};
        return worker_heartbeat_report(c, o, &hb, NULL, err);
}

/* ---- contact ---- */

/* last_seen is refreshed by a call other than a heartbeat only once it is older than this part of
 * disconnect_timeout. A worker polls /next-job far more often than it heartbeats, and /next-job
 * is the hot path: a write per poll would cost a row update (and its share of an fsync) for
 * nothing, since the state derived from last_seen cannot change before disconnect_timeout. With
 * a quarter, a worker that calls at least every 3/4 disconnect_timeout is never shown
 * DISCONNECTED, and last_seen lags the last call by at most a quarter of it. */
#define CONTACT_REFRESH_DIVISOR 4

/* Whether contact at `now` must be written: the worker's stored state is not the one contact
 * brings (ONLINE, or DRAINING), or last_seen is due for a refresh. 0 when neither, -EPERM when
 * the worker is not registered. Reads the three columns the state derives from, nothing else. */
static int contact_due(Control *c, const char *worker_id, usec_t now) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r;

        if (isempty(worker_id) || strlen(worker_id) > LIMIT_ID_LEN)
                return -EPERM;
        r = store_prepare(c->store, "SELECT last_seen, draining, state FROM workers WHERE worker_id = ?", &st);
        if (r < 0)
                return r;
        if (store_bind_text(st, 1, worker_id) < 0)
                return -ENOMEM;
        r = store_step(c->store, st);
        if (r <= 0)
                return r < 0 ? r : -EPERM;
        usec_t last_seen = (usec_t) sqlite3_column_int64(st, 0);
        bool draining = sqlite3_column_int(st, 1) != 0;
        WorkerState stored = worker_state_from_string((const char *) sqlite3_column_text(st, 2));
        if (stored != state_on_contact(draining))
                return 1;
        return now > last_seen && now - last_seen > c->settings.disconnect_timeout / CONTACT_REFRESH_DIVISOR;
}

static int contact_locked(Control *c, const Origin *o, const char *worker_id, usec_t now) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r = store_prepare(c->store, "UPDATE workers SET last_seen = ? WHERE worker_id = ?", &st);
        if (r < 0)
                return r;
        if (store_bind_int64(st, 1, (int64_t) now) < 0 || store_bind_text(st, 2, worker_id) < 0)
                return -ENOMEM;
        r = store_step(c->store, st);
        if (r < 0)
                return r;
        if (sqlite3_changes(c->store->db) == 0)
                return -EPERM; /* removed since contact_due() looked */
        return mark_seen(c, o, worker_id);
}

int worker_contact(Control *c, const Origin *o, const char *worker_id) {
        _cleanup_tx_ Control *tx = NULL;
        usec_t now = control_now(c);
        int r;

        r = contact_due(c, worker_id, now);
        if (r <= 0)
                return r;
        r = control_begin(c, &tx);
        if (r < 0)
                return r;
        r = jobs_finish(&tx, contact_locked(c, o, worker_id, now));
        return r < 0 ? r : 1;
}

/* ---- drain ---- */

static int audit_drain_request(Control *c, const Origin *o, const Worker *w, bool drain) {
        _cleanup_json_ json_object *d = json_object_new_object();
        char msg[256];

        if (!d)
                return -ENOMEM;
        json_add_bool(d, "draining", drain);
        json_add_string(d, "state", worker_state_to_string(w->state));
        snprintf(msg, sizeof(msg), "Worker %s %s when it is back (it is %s)", w->worker_id,
                 drain ? "gets no new jobs" : "gets jobs again", worker_state_to_string(w->state));
        return audit_worker(c, o, w->worker_id, LOG_INFO, drain ? "worker.drain_requested" : "worker.resume_requested",
                            msg, d);
}

static int drain_locked(Control *c, const Origin *o, const char *worker_id, bool drain) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        _cleanup_(worker_freep) Worker *w = NULL;
        int r;

        r = worker_get(c, worker_id, &w);
        if (r < 0)
                return r;
        r = store_prepare(c->store, "UPDATE workers SET draining = ? WHERE worker_id = ?", &st);
        if (r < 0)
                return r;
        if (store_bind_int64(st, 1, drain) < 0 || store_bind_text(st, 2, worker_id) < 0)
                return -ENOMEM;
        r = store_step(c->store, st);
        if (r < 0)
                return r;
        /* The stored state follows at once, so the change is audited now, not at the next sweep. */
        bool was_draining = w->draining;
        w->draining = drain;
        WorkerState to = worker_state_at(c, w, control_now(c));
        if (to != w->state)
                return store_state(c, o, worker_id, w->state, to);
        if (was_draining == drain)
                return 0;
        /* A worker that is away (DISCONNECTED, OFFLINE) keeps its state: the request is still a
         * change an operator made, and takes effect when the worker is back. */
        return audit_drain_request(c, o, w, drain);
}

int worker_drain(Control *c, const Origin *o, const char *worker_id, bool drain) {
        _cleanup_tx_ Control *tx = NULL;
        int r = control_begin(c, &tx);
        if (r < 0)
                return r;
        return jobs_finish(&tx, drain_locked(c, o, worker_id, drain));
}

/* ---- removal ---- */

/* Why worker w may not be forgotten now (-EBUSY with the reason in err), or 0. */
static int removal_refused(Control *c, const Worker *w, OpError *err) {
        _cleanup_strv_free_ char **bound = NULL;
        int r;

        if (w->state != WORKER_OFFLINE)
                return op_error_set(err, -EBUSY, "worker %s is %s: only an OFFLINE worker can be removed", w->worker_id,
                                    worker_state_to_string(w->state));
        r = jobs_bound_to(c, w->worker_id, &bound);
        if (r < 0)
                return r;
        if (strv_length(bound) > 0)
                return op_error_set(err, -EBUSY,
                                    "worker %s still holds %zu job(s) or may still report their results (%s first): "
                                    "abort them, or wait until they are retried elsewhere",
                                    w->worker_id, strv_length(bound), bound[0]);
        return 0;
}

static int remove_locked(Control *c, const Origin *o, const char *worker_id, OpError *err) {
        _cleanup_(worker_freep) Worker *w = NULL;
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        _cleanup_json_ json_object *d = json_object_new_object();
        char msg[256];
        int r;

        if (!d)
                return -ENOMEM;
        r = worker_get(c, worker_id, &w);
        if (r == -ENOENT)
                return op_error_set(err, r, "no worker %s", worker_id);
        if (r < 0)
                return r;
        r = removal_refused(c, w, err);
        if (r < 0)
                return r;
        r = store_prepare(c->store, "DELETE FROM workers WHERE worker_id = ?", &st);
        if (r < 0)
                return r;
        if (store_bind_text(st, 1, worker_id) < 0)
                return -ENOMEM;
        r = store_step(c->store, st);
        if (r < 0)
                return r;
        json_add_string(d, "state", worker_state_to_string(w->state));
        json_add_time(d, "last_seen", w->last_seen);
        json_add_time(d, "registered_at", w->registered_at);
        snprintf(msg, sizeof(msg), "Worker %s removed by %s; it registers again if it comes back", worker_id,
                 origin_actor(o));
        return audit_worker(c, o, worker_id, LOG_NOTICE, "worker.removed", msg, d);
}

int worker_remove(Control *c, const Origin *o, const char *worker_id, OpError *err) {
        _cleanup_tx_ Control *tx = NULL;
        int r = control_begin(c, &tx);
        if (r < 0)
                return r;
        return jobs_finish(&tx, remove_locked(c, o, worker_id, err));
}

/* ---- restarts ---- */

static int clear_restart(Control *c, const char *worker_id) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r = store_prepare(c->store, "UPDATE workers SET restart_pending = 0 WHERE worker_id = ?", &st);
        if (r < 0)
                return r;
        if (store_bind_text(st, 1, worker_id) < 0)
                return -ENOMEM;
        r = store_step(c->store, st);
        return r < 0 ? r : 0;
}

int worker_restart_claims(Control *c, const char *worker_id, const HeldJob *held, size_t n_held, char ***ret) {
        _cleanup_strv_free_ char **l = calloc(n_held + 1, sizeof(char *));
        size_t n = 0;
        int r;

        if (!l)
                return -ENOMEM;
        for (size_t i = 0; i < n_held; i++) {
                _cleanup_(job_freep) Job *j = NULL;
                r = jobs_get(c, held[i].job_id, &j);
                if (r < 0 && r != -ENOENT)
                        return r;
                /* The rule of abort_jobs: a job reported under an assignment that is not its own is
                 * one the worker is told to stop, so it is not claimed either. */
                if (job_not_held_reason(j, worker_id, &held[i]))
                        continue;
                l[n] = strdup(held[i].job_id);
                if (!l[n++])
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(l);
        return (int) n;
}

int worker_resolve_restart(Control *c, const Origin *o, const char *worker_id, char *const *claimed,
                           char ***ret_given_up) {
        _cleanup_(worker_freep) Worker *w = NULL;
        _cleanup_strv_free_ char **held = NULL, **given_up = calloc(1, sizeof(char *));
        int r;

        if (!given_up)
                return -ENOMEM;
        r = worker_require(c, worker_id, &w);
        if (r < 0)
                return r;
        if (w->restart_pending) {
                r = jobs_held_by(c, worker_id, &held);
                if (r < 0)
                        return r;
                STRV_FOREACH (id, held) {
                        _cleanup_(job_freep) Job *j = NULL;
                        if (strv_contains((char **) claimed, *id))
                                continue;
                        r = jobs_get(c, *id, &j);
                        if (r < 0)
                                return r;
                        r = jobs_give_up(c, o, j, "worker restarted and no longer claims the job", false);
                        if (r < 0)
                                return r;
                        if (strv_extend(&given_up, *id) < 0)
                                return -ENOMEM;
                }
                r = clear_restart(c, worker_id);
                if (r < 0)
                        return r;
        }
        r = (int) strv_length(given_up);
        if (ret_given_up)
                *ret_given_up = TAKE_PTR(given_up);
        return r;
}
