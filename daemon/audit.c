/* audit.c: audit rows, the event name -> MESSAGE_ID table, the journal listener, transactions
 * whose events are emitted after commit, and the /events query. */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>

#include "audit.h"
#include "json-util.h"
#include "log.h"
#include "store.h"

/* THE table: one fixed 128-bit MESSAGE_ID per event type. catalog/entropy.catalog documents
 * each; test-audit checks that they match. Never change an id once released. */
static const struct {
        const char *event;
        const char *message_id;
} event_table[] = {
        {"job.submitted", "dedba5de657b4b359d337e4a483b0047"},
        {"job.assigned", "e2f717d9fd3c48d0a4cc3d38b120702b"},
        {"job.running", "3b9868644115424591cb1ee2c0091104"},
        {"job.completed", "c0ecf686a97340adbb20ce9485e4d35d"},
        {"job.failed", "4070d43e7fab4cdcb306048e401c84f5"},
        {"job.retrying", "02de7fa7cc62400bafe72b75e5168145"},
        {"job.lost", "8cab887b63e34cb489a499a81cbadcb4"},
        {"job.aborted", "fa177ee413c74a8bb0aba23059057362"},
        {"job.requeued", "948c46d1738146508ec3fc8b16746672"},
        {"job.transition_refused", "c60fa15861f64fae8c129cc7efffff82"},
        {"job.assignment_stale", "807372ea544743f8a4ea303e2af4a998"},
        {"worker.registered", "76d354f15f174fe4afa52c9dfddfb802"},
        {"worker.restarted", "d9141b93cf0c43f59038aa1bef056750"},
        {"worker.nonce_mismatch", "37a14791651f408697edeac1ebe977df"},
        {"worker.online", "7b1cad4036654a1ebd0efb3fe2dce3a1"},
        {"worker.disconnected", "61ea0699c22443448c412beac2a7c722"},
        {"worker.offline", "51f371d25cab467daf26445bc9cad1cc"},
        {"worker.drain", "b802260cbc8b40b29385a05a1224a6f6"},
        {"worker.drain_requested", "5c8b7ee2bf384c379127cea66d755374"},
        {"worker.resume_requested", "445226e3d9fc4e2a853c470c4c7f9681"},
        {"worker.reconnected", "a2013a1a5189494d92bb932257f5ec83"},
        {"worker.removed", "d5a2f5bd5d4c4e129c38ae034cb5eee4"},
        {"control.leases_extended", "62e89abf737b458788b3bfa3611fb521"},
        {"control.clock_stepped", "5e3467e4b9564e378bb8ba58573d8dcf"},
        {"retention.sweep", "87c61625912e430cb06c63d00382df65"},
        {"request.refused", "4333af307b6a4e90bc8f9a263edf7e96"},
};

const char *audit_message_id(const char *event) {
        for (size_t i = 0; event && i < ELEMENTSOF(event_table); i++)
                if (streq(event_table[i].event, event))
                        return event_table[i].message_id;
        return NULL;
}

size_t audit_n_events(void) {
        return ELEMENTSOF(event_table);
}

const char *audit_event_name(size_t i) {
        return i < ELEMENTSOF(event_table) ? event_table[i].event : NULL;
}

const char *audit_level_to_string(int level) {
        static const char *const names[] = {"emerg", "alert", "crit", "error", "warning", "notice", "info", "debug"};
        return level >= 0 && level < (int) ELEMENTSOF(names) ? names[level] : "info";
}

AuditEvent *audit_event_free(AuditEvent *e) {
        if (!e)
                return NULL;
        free(e->component);
        free(e->event);
        free(e->message);
        free(e->request_id);
        free(e->worker_id);
        free(e->job_id);
        free(e->assignment_id);
        free(e->details);
        free(e->from_state);
        free(e->to_state);
        free(e);
        return NULL;
}

void audit_event_array_free(AuditEvent **a, size_t n) {
        for (size_t i = 0; i < n; i++)
                audit_event_free(a[i]);
        free(a);
}

static int dup_opt(const char *s, char **ret) {
        if (!s) {
                *ret = NULL;
                return 0;
        }
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

static const char *details_string(json_object *d, const char *key) {
        json_object *v;
        if (!json_object_object_get_ex(d, key, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

static int event_build(const AuditRecord *rec, usec_t ts, AuditEvent **ret) {
        _cleanup_(audit_event_freep) AuditEvent *e = calloc(1, sizeof(*e));
        _cleanup_json_ json_object *d = NULL;

        if (!e)
                return -ENOMEM;
        /* The caller's details, copied, plus who acted. */
        if (rec->details && json_object_deep_copy(rec->details, &d, NULL) < 0)
                return -ENOMEM;
        if (!d)
                d = json_object_new_object();
        if (!d)
                return -ENOMEM;
        json_add_string(d, "actor", origin_actor(rec->origin));

        e->ts = ts;
        e->level = rec->level;
        if (dup_opt(rec->component, &e->component) < 0 || dup_opt(rec->event, &e->event) < 0 ||
            dup_opt(rec->message ? rec->message : rec->event, &e->message) < 0 ||
            dup_opt(origin_request_id(rec->origin), &e->request_id) < 0 || dup_opt(rec->worker_id, &e->worker_id) < 0 ||
            dup_opt(rec->job_id, &e->job_id) < 0 || dup_opt(rec->assignment_id, &e->assignment_id) < 0 ||
            dup_opt(json_object_to_json_string_ext(d, JSON_C_TO_STRING_PLAIN), &e->details) < 0 ||
            dup_opt(details_string(d, "from"), &e->from_state) < 0 ||
            dup_opt(details_string(d, "to"), &e->to_state) < 0)
                return -ENOMEM;
        utf8_cut_partial(e->message); /* built in fixed buffers from texts of any length */
        *ret = TAKE_PTR(e);
        return 0;
}

static int event_insert(Control *c, AuditEvent *e) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        Store *s = c->store;
        int r;

        r = store_prepare(s,
                          "INSERT INTO audit_events (ts, component, level, event, message, request_id, worker_id, "
                          "job_id, assignment_id, details) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                          &st);
        if (r < 0)
                return r;
        if (store_bind_int64(st, 1, (int64_t) e->ts) < 0 || store_bind_text(st, 2, e->component) < 0 ||
            store_bind_int64(st, 3, e->level) < 0 || store_bind_text(st, 4, e->event) < 0 ||
            store_bind_text(st, 5, e->message) < 0 || store_bind_text(st, 6, e->request_id) < 0 ||
            store_bind_text(st, 7, e->worker_id) < 0 || store_bind_text(st, 8, e->job_id) < 0 ||
            store_bind_text(st, 9, e->assignment_id) < 0 || store_bind_text(st, 10, e->details) < 0)
                return -ENOMEM;
        r = store_step(s, st);
        if (r < 0)
                return r;
        e->id = sqlite3_last_insert_rowid(s->db);
        return 0;
}

int audit_record(Control *c, const AuditRecord *rec, int64_t *ret_id) {
        _cleanup_(audit_event_freep) AuditEvent *e = NULL;
        Store *s = c->store;
        int r;

        assert(s->in_transaction);
        assert(audit_message_id(rec->event)); /* every event name is in the table */

        r = event_build(rec, control_now(c), &e);
        if (r < 0)
                return r;
        r = event_insert(c, e);
        if (r < 0)
                return r;

        AuditEvent **p = realloc(s->pending, (s->n_pending + 1) * sizeof(*p));
        if (!p)
                return -ENOMEM;
        s->pending = p;
        if (ret_id)
                *ret_id = e->id;
        s->pending[s->n_pending++] = TAKE_PTR(e);
        return 0;
}

static void drop_pending(Store *s) {
        for (size_t i = 0; i < s->n_pending; i++)
                audit_event_free(s->pending[i]);
        s->n_pending = 0;
}

static void drop_batch_pending(Store *s) {
        for (size_t i = 0; i < s->n_batch_pending; i++)
                audit_event_free(s->batch_pending[i]);
        s->n_batch_pending = 0;
}

/* Durable now: tell the listeners, in order. They run with no transaction open. */
static void emit(Control *c, AuditEvent **events, size_t n) {
        if (n > 0)
                c->store->committed_event_id = MAX(c->store->committed_event_id, events[n - 1]->id);
        control_emit(c, events, n);
}

static void batch_notify(Control *c, bool ok) {
        c->batch.n = 0;
        if (c->batch.flush)
                (void) sd_event_source_set_enabled(c->batch.flush, SD_EVENT_OFF);
        if (c->batch.on_durable)
                c->batch.on_durable(c->batch.userdata, ok);
}

/* The batch is rolled back: nothing in it happened, no listener hears of it, and every response
 * held for it becomes a 500. */
static void batch_drop(Control *c) {
        store_rollback(c->store);
        drop_pending(c->store);
        drop_batch_pending(c->store);
        batch_notify(c, false);
}

/* The batch is lost: its COMMIT failed, or SQLite rolled it back on its own. */
static int batch_fail(Control *c, int r) {
        log_error_errno(r, "Group commit failed, %u transaction(s) rolled back: %m", c->batch.n);
        batch_drop(c);
        return r;
}

int control_flush(Control *c) {
        Store *s = c->store;
        int r;

        if (!s->batch_open)
                return 0;
        assert(!s->in_transaction);
        r = store_batch_commit(s);
        if (r < 0)
                return batch_fail(c, r);
        /* Moved out first: a listener may start (and flush) a transaction of its own. */
        AuditEvent **events = s->batch_pending;
        size_t n = s->n_batch_pending;
        s->batch_pending = NULL;
        s->n_batch_pending = 0;
        emit(c, events, n);
        for (size_t i = 0; i < n; i++)
                audit_event_free(events[i]);
        free(events);
        batch_notify(c, true);
        return 0;
}

static int on_flush(sd_event_source *src, void *userdata) {
        (void) control_flush(userdata); /* failures are logged and answered with 500s */
        return 0;
}

static int batch_open(Control *c) {
        int r;

        if (!c->batch.flush) {
                r = sd_event_add_defer(c->event, &c->batch.flush, on_flush, c);
                if (r < 0)
                        return r;
                (void) sd_event_source_set_description(c->batch.flush, "group-commit");
        }
        r = store_batch_begin(c->store);
        if (r < 0)
                return r;
        /* A defer source runs after the current dispatch: every request libmicrohttpd handles in
         * this MHD_run() joins the batch before it commits. */
        r = sd_event_source_set_enabled(c->batch.flush, SD_EVENT_ONESHOT);
        if (r < 0)
                return batch_fail(c, r);
        return 0;
}

int control_begin(Control *c, Control **tx) {
        Store *s = c->store;
        int r;

        if (!s->batch_open && c->batch.enabled && c->batch.deferring && c->event) {
                r = batch_open(c);
                if (r < 0)
                        return r;
        }
        r = s->batch_open ? store_batch_tx_begin(s) : store_begin(s);
        if (r < 0)
                return r;
        drop_pending(s);
        *tx = c;
        return 0;
}

/* In a batch: the transaction's changes and events join the batch. Unless called from an HTTP
 * handler (whose response the server holds back until the batch is durable), the caller needs
 * durability now: the batch is committed at once. */
static int batch_release(Control *c) {
        Store *s = c->store;
        int r;

        r = store_batch_tx_release(s);
        if (r < 0)
                return batch_fail(c, r);
        if (s->n_pending > 0) {
                AuditEvent **p = realloc(s->batch_pending, (s->n_batch_pending + s->n_pending) * sizeof(*p));
                if (!p)
                        return batch_fail(c, -ENOMEM);
                s->batch_pending = p;
                memcpy(p + s->n_batch_pending, s->pending, s->n_pending * sizeof(*p));
                s->n_batch_pending += s->n_pending;
                s->n_pending = 0;
        }
        c->batch.n++;
        if (c->batch.deferring)
                c->batch.joined++;
        else
                return control_flush(c);
        return 0;
}

void control_request_begin(Control *c) {
        c->batch.deferring = true;
        c->batch.joined = 0;
}

int control_request_end(Control *c, bool ok) {
        bool joined = c->batch.joined > 0;

        c->batch.deferring = false;
        c->batch.joined = 0;
        if (!ok) {
                if (!joined)
                        return 0; /* its own transaction was rolled back: nothing of it is left */
                if (c->store->batch_open) {
                        log_error("A request failed after its changes joined the group commit: its batch of %u "
                                  "transaction(s) is rolled back.",
                                  c->batch.n);
                        batch_drop(c);
                }
                return -ECANCELED;
        }
        if (c->store->batch_open && c->batch.n >= CONTROL_BATCH_MAX) {
                int r = control_flush(c);
                if (r < 0)
                        return r;
        }
        return c->store->batch_open;
}

int control_commit(Control **tx) {
        Control *c = *tx;
        Store *s = c->store;
        int r;

        *tx = NULL;
        if (s->batch_open)
                return batch_release(c);
        r = store_commit(s);
        if (r < 0) {
                drop_pending(s);
                return r;
        }
        emit(c, s->pending, s->n_pending);
        drop_pending(s);
        return 0;
}

int control_step_begin(Control *c, size_t *ret_mark) {
        int r = store_step_begin(c->store);
        if (r < 0)
                return r;
        *ret_mark = c->store->n_pending;
        return 0;
}

int control_step_end(Control *c, size_t mark, bool ok) {
        Store *s = c->store;

        if (!ok)
                for (; s->n_pending > mark; s->n_pending--)
                        audit_event_free(s->pending[s->n_pending - 1]);
        return store_step_end(s, ok);
}

void control_rollback(Control *c) {
        Store *s = c->store;

        if (s->batch_open && s->in_transaction) {
                /* Only this transaction's statements go; the batch keeps the others'. */
                int r = store_batch_tx_rollback(s);
                drop_pending(s);
                if (r < 0)
                        (void) batch_fail(c, r);
                return;
        }
        if (s->batch_open)
                return; /* no transaction of the caller's is open: leave the batch alone */
        store_rollback(s);
        drop_pending(s);
}

static int audit_refused_record(Control *c, const char *what, const char *who, const char *from, const char *request_id,
                                const char *reason) {
        _cleanup_tx_ Control *tx = NULL;
        _cleanup_json_ json_object *d = json_object_new_object();
        char msg[512];
        bool own = !c->store->in_transaction;
        int r;

        if (!d)
                return -ENOMEM;
        json_add_string(d, "what", what);
        json_add_string(d, "who", who);
        json_add_string(d, "from", from);
        json_add_string(d, "reason", reason);
        snprintf(msg, sizeof(msg), "Refused %s request from %s (%s): %s", strna(what), strna(from), strna(who),
                 strna(reason));

        if (own) {
                r = control_begin(c, &tx);
                if (r < 0)
                        return r;
        }
        Origin o = {.actor = who, .request_id = request_id};
        r = audit_record(c,
                         &(AuditRecord){.component = "api",
                                        .level = LOG_WARNING,
                                        .event = "request.refused",
                                        .message = msg,
                                        .origin = &o,
                                        .details = d},
                         NULL);
        if (r < 0)
                return r;
        return own ? control_commit(&tx) : 0;
}

static bool refusal_audit_allowed(uint64_t *ret_suppressed) {
        static usec_t window;
        static unsigned n_window;
        static uint64_t suppressed;
        usec_t now = now_monotonic_usec();

        if (now - window >= USEC_PER_SEC) {
                window = now;
                n_window = 0;
        }
        if (n_window >= AUDIT_REFUSALS_PER_SEC) {
                suppressed++;
                return false;
        }
        n_window++;
        *ret_suppressed = suppressed;
        suppressed = 0;
        return true;
}

int audit_refused(Control *c, const char *what, const char *who, const char *from, const char *request_id,
                  const char *reason) {
        uint64_t suppressed = 0;
        int r;

        if (!refusal_audit_allowed(&suppressed)) {
                c->counters.refused++;
                return 0;
        }
        if (suppressed > 0)
                log_warning("%" PRIu64 " refused request(s) were not audited (more than %d a second).", suppressed,
                            AUDIT_REFUSALS_PER_SEC);
        r = audit_refused_record(c, what, who, from, request_id, reason);
        if (r < 0)
                c->counters.refused++;
        return r;
}

void audit_journal_listener(void *userdata, const AuditEvent *e) {
        Control *c = userdata;
        char id[32], prio[8];

        snprintf(id, sizeof(id), "%lld", (long long) e->id);
        snprintf(prio, sizeof(prio), "%d", e->level);
        const char *const fields[][2] = {
                {"MESSAGE", e->message},
                {"MESSAGE_ID", audit_message_id(e->event)},
                {"PRIORITY", prio},
                {"ENTROPY_EVENT", e->event},
                {"ENTROPY_COMPONENT", e->component},
                {"ENTROPY_EVENT_ID", id},
                {"ENTROPY_JOB_ID", e->job_id},
                {"ENTROPY_WORKER_ID", e->worker_id},
                {"ENTROPY_ASSIGNMENT_ID", e->assignment_id},
                {"ENTROPY_REQUEST_ID", e->request_id},
                {"ENTROPY_DETAILS", e->details},
        };
        struct iovec iov[ELEMENTSOF(fields)];
        size_t n = 0, size = 1;

        /* sd_journal_sendv() wants each FIELD=value in one piece: one buffer holds them all. */
        for (size_t i = 0; i < ELEMENTSOF(fields); i++)
                if (fields[i][1])
                        size += strlen(fields[i][0]) + 1 + strlen(fields[i][1]);
        _cleanup_free_ char *buf = malloc(size);
        if (!buf) {
                c->counters.journal_failures++;
                return;
        }
        char *p = buf;
        for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
                if (!fields[i][1])
                        continue;
                char *start = p;
                p = stpcpy(p, fields[i][0]);
                *p++ = '=';
                p = stpcpy(p, fields[i][1]);
                iov[n++] = (struct iovec){.iov_base = start, .iov_len = (size_t) (p - start)};
        }

        /* Best effort: the SQLite row is the record; no journald (tests, CI) is not an error. */
        if (sd_journal_sendv(iov, (int) n) < 0)
                c->counters.journal_failures++;
}

static int event_from_row(sqlite3_stmt *st, AuditEvent **ret) {
        _cleanup_(audit_event_freep) AuditEvent *e = calloc(1, sizeof(*e));
        if (!e)
                return -ENOMEM;
        e->id = sqlite3_column_int64(st, 0);
        e->ts = (usec_t) sqlite3_column_int64(st, 1);
        e->level = sqlite3_column_int(st, 3);
        if (store_column_strdup(st, 2, &e->component) < 0 || store_column_strdup(st, 4, &e->event) < 0 ||
            store_column_strdup(st, 5, &e->message) < 0 || store_column_strdup(st, 6, &e->request_id) < 0 ||
            store_column_strdup(st, 7, &e->worker_id) < 0 || store_column_strdup(st, 8, &e->job_id) < 0 ||
            store_column_strdup(st, 9, &e->assignment_id) < 0 || store_column_strdup(st, 10, &e->details) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(e);
        return 0;
}

int audit_list(Control *c, const EventFilter *f, AuditEvent ***ret, size_t *ret_n) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        AuditEvent **a = NULL;
        size_t n = 0;
        int r;

        /* Each other filter is optional: "? IS NULL OR column = ?" lets one cached statement per
         * order serve all. A job filter has statements of its own, which the audit_job index serves:
         * a job's history is then read directly, not found by walking every event kept. */
#define EVENTS_SELECT                                                                                                  \
        "SELECT id, ts, component, level, event, message, request_id, worker_id, job_id, "                             \
        "assignment_id, details FROM audit_events "                                                                    \
        "WHERE id > ?1 AND id <= ?7 AND (?2 IS NULL OR component = ?2) AND (?3 IS NULL OR event = ?3) "                \
        "AND (?4 IS NULL OR worker_id = ?4) "
#define JOB_FILTER "AND job_id = ?5 "
#define ANY_JOB "AND (?5 IS NULL OR job_id = ?5) "
        if (f->job_id)
                r = store_prepare(c->store,
                                  f->oldest_first ? EVENTS_SELECT JOB_FILTER "ORDER BY id ASC LIMIT ?6"
                                                  : EVENTS_SELECT JOB_FILTER "ORDER BY id DESC LIMIT ?6",
                                  &st);
        else
                r = store_prepare(c->store,
                                  f->oldest_first ? EVENTS_SELECT ANY_JOB "ORDER BY id ASC LIMIT ?6"
                                                  : EVENTS_SELECT ANY_JOB "ORDER BY id DESC LIMIT ?6",
                                  &st);
#undef ANY_JOB
#undef JOB_FILTER
#undef EVENTS_SELECT
        if (r < 0)
                return r;
        if (store_bind_int64(st, 1, f->since_id) < 0 || store_bind_text(st, 2, f->component) < 0 ||
            store_bind_text(st, 3, f->event) < 0 || store_bind_text(st, 4, f->worker_id) < 0 ||
            store_bind_text(st, 5, f->job_id) < 0 || store_bind_int64(st, 6, f->limit) < 0 ||
            store_bind_int64(st, 7, f->until_id > 0 ? f->until_id : INT64_MAX) < 0)
                return -ENOMEM;
        while ((r = store_step(c->store, st)) > 0) {
                AuditEvent **p = realloc(a, (n + 1) * sizeof(*p));
                if (!p) {
                        r = -ENOMEM;
                        break;
                }
                a = p;
                r = event_from_row(st, &a[n]);
                if (r < 0)
                        break;
                n++;
        }
        if (r < 0) {
                audit_event_array_free(a, n);
                return r;
        }
        *ret = a;
        *ret_n = n;
        return 0;
}
