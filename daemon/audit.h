/* audit.h: the audit trail. Every state change writes one audit_events row inside the transaction
 * that makes the change; after that transaction commits, the event is handed to the listeners
 * (control_emit: journal copy, D-Bus signals, wake-ups). The event name -> journal MESSAGE_ID
 * mapping lives in one table in audit.c; catalog/entropy.catalog explains each id. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <syslog.h>

#include "control.h"
#include "macro.h"
#include "ops.h"
#include "time-util.h"

struct AuditEvent {
        int64_t id;      /* audit_events.id; 0 before insertion */
        usec_t ts;       /* realtime usec */
        char *component; /* "jobs", "workers", "reconciler", "retention", "api", "control" */
        int level;       /* syslog priority */
        char *event;     /* "job.completed", ... (see audit.c's table) */
        char *message;   /* one line for humans (journal MESSAGE) */
        char *request_id;
        char *worker_id;
        char *job_id;
        char *assignment_id;
        char *details; /* JSON object text, never NULL once built */
        /* The details' "from" and "to" strings of a state change, copied when the event is built so
         * that listeners need not parse the details for them; NULL when absent, and always NULL in
         * events read back by audit_list(). */
        char *from_state;
        char *to_state;
};

AuditEvent *audit_event_free(AuditEvent *e);
DEFINE_TRIVIAL_CLEANUP_FUNC(AuditEvent *, audit_event_free);

/* Describes an event to record; strings are borrowed. details may be NULL (empty object). */
typedef struct AuditRecord {
        const char *component;
        int level;
        const char *event;
        const char *message;
        const Origin *origin;
        const char *worker_id;
        const char *job_id;
        const char *assignment_id;
        json_object *details; /* borrowed; "actor" is added from the origin */
} AuditRecord;

/* Inserts the row in the open transaction and queues the event for emission after commit.
 * ret_id (optional) receives the row id. */
int audit_record(Control *c, const AuditRecord *rec, int64_t *ret_id);

/* For refusals that change nothing else (bad token, unregistered worker, a D-Bus caller without
 * the right, ...): records and commits its own transaction (or joins the open one). what: "auth",
 * "register", ...; who: the claimed identity (worker id, "admin", "uid:N"), from: peer address.
 * Never pass secrets or tokens. Anyone who can reach the API or the bus can cause refusals, so a
 * flood of them is bounded: past AUDIT_REFUSALS_PER_SEC in one second the rest are only counted
 * (counters.refused; an audited one is counted when its event commits) and their number is
 * logged with the next one audited. Returns 0 for those too; < 0 (and counted) when recording
 * failed. */
#define AUDIT_REFUSALS_PER_SEC 50
int audit_refused(Control *c, const char *what, const char *who, const char *from, const char *request_id,
                  const char *reason);

/* Journal MESSAGE_ID (32 hex digits) for an event name, NULL for an unknown name. */
const char *audit_message_id(const char *event);
/* Number of names in the table and the i-th (for tests and the catalog check). */
size_t audit_n_events(void);
const char *audit_event_name(size_t i);

/* The listener that copies each event to the journal; best effort, failures are counted in
 * c->counters.journal_failures. Registered by main() with control_add_listener(). */
void audit_journal_listener(void *userdata, const AuditEvent *event);

/* Transactions whose audit events are emitted after commit. Do not nest.
 *
 *   _cleanup_tx_ Control *tx = NULL;
 *   r = control_begin(c, &tx);   ... r = control_commit(&tx);
 *
 * If tx is still set when it goes out of scope, the transaction is rolled back and its queued
 * events are dropped. */
int control_begin(Control *c, Control **tx);
int control_commit(Control **tx);
void control_rollback(Control *c);
/* One step of the open transaction that may fail alone (the reconciler's per-job transitions):
 * step_end(ok = false) drops the step's statements and audit events, and keeps the rest. A
 * negative return from step_end means the whole transaction is lost: the caller gives it up. */
int control_step_begin(Control *c, size_t *ret_mark);
int control_step_end(Control *c, size_t mark, bool ok);

/* Durable group commit. With c->batch.enabled, a transaction begun while c->batch.deferring is
 * set (the HTTP server sets it around each handler; control-events.c) opens a batch: one outer
 * BEGIN IMMEDIATE in which each transaction is a SAVEPOINT (a failing one rolls back alone).
 * control_commit() then only releases the savepoint, and its audit events wait with the batch.
 * The batch is committed, with one fsync for all of its transactions, by a defer source at the
 * end of the loop iteration (so every request libmicrohttpd handled in one MHD_run() is in it),
 * after the handler that takes it to CONTROL_BATCH_MAX transactions, or at once when a caller
 * that is not an HTTP handler (the reconciler, D-Bus) commits, since it answers as soon as it
 * returns. A handler's changes are never committed before it has returned, so that one that
 * fails after its transactions joined the batch takes the batch down with it
 * (control_request_end()) instead of answering 500 for a change that then commits. After the
 * COMMIT the listeners hear of the batch's events and c->batch.on_durable(ok = true) lets the
 * HTTP server send the responses it held; if the COMMIT fails, the whole batch is rolled back,
 * no listener hears of it, and on_durable(ok = false) turns each held response into a 500:
 * nothing is acknowledged that is not durable. */
#define CONTROL_BATCH_MAX 256
/* Commits the open batch now (0 when none is open). */
int control_flush(Control *c);
/* Around an HTTP handler: its transactions join the batch. control_request_end() says what
 * becomes of its response, ok being whether the handler succeeded: 1 it waits for the open batch
 * (it holds the request's changes, or changes of others a read may have seen); 0 it may go now;
 * negative, the batch that held what it changed or read is lost (nothing of it was applied). A
 * handler that failed after its transactions joined the batch rolls the whole batch back, its
 * held responses becoming 500s, since SQLite cannot take one released savepoint back alone. */
void control_request_begin(Control *c);
int control_request_end(Control *c, bool ok);
static inline void control_txp(Control **tx) {
        if (*tx)
                control_rollback(*tx);
        *tx = NULL;
}
#define _cleanup_tx_ _cleanup_(control_txp)

typedef struct EventFilter {
        const char *component;
        const char *event;
        const char *worker_id;
        const char *job_id;
        int64_t since_id; /* only ids above it; 0 = all */
        int64_t until_id; /* only ids up to it; 0 = no bound (the event stream passes the last
                           * committed id, so that it never reads a batch not yet durable) */
        int64_t limit;    /* > 0 */
        bool oldest_first; /* ascending ids: pages through a gap after since_id from its start */
} EventFilter;

/* Events matching the filter, newest first (or oldest first). */
int audit_list(Control *c, const EventFilter *f, AuditEvent ***ret, size_t *ret_n);
void audit_event_array_free(AuditEvent **a, size_t n);

/* "info", "warning", ... for a syslog level. */
const char *audit_level_to_string(int level);
