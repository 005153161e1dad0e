/* store.h: the control plane's SQLite database. One connection, owned by the event loop, so
 * every write is serialized by construction. WAL journal; synchronous=FULL unless the operator
 * chose "normal", which may lose the last committed transactions on power loss (never corrupts).
 * Files are mode 0600. The schema is versioned by PRAGMA user_version (store-schema.c). */
#pragma once

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"
#include "protocol.h"
#include "sqlite-util.h"
#include "time-util.h"

typedef struct AuditEvent AuditEvent;

#define STORE_STMT_CACHE 192

typedef struct Store {
        sqlite3 *db;
        char *path;
        bool in_transaction; /* a transaction (or, in a batch, its savepoint) is open */
        bool batch_open;     /* group commit: an outer transaction holds released transactions */
        uint64_t n_commits;  /* COMMITs made (each one a durability point: one fsync) */

        SqliteStmtCache stmts; /* at most STORE_STMT_CACHE */

        /* The id of the newest audit event known durable (committed): readers that must not see
         * a batch still open (the event stream) stop there. Set at open, advanced at each commit. */
        int64_t committed_event_id;

        /* Audit events written in the open transaction, emitted after it commits (audit.c). */
        AuditEvent **pending;
        size_t n_pending;
        /* Group commit: events of the transactions released into the open batch, emitted after
         * the batch's COMMIT. */
        AuditEvent **batch_pending;
        size_t n_batch_pending;
} Store;

/* Opens (creating if needed) and migrates the database at path. synchronous is "full" (NULL
 * means full) or "normal". Refuses with a logged message: a directory it cannot write (-EACCES),
 * a file that is not a SQLite database (-EBADMSG), a schema newer than this program (-EPROTO). */
int store_open(const char *path, const char *synchronous, Store **ret);
Store *store_close(Store *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(Store *, store_close);

/* Maps an SQLite result code to a negative errno (SQLITE_BUSY -> -EAGAIN, NOTADB -> -EBADMSG, ...). */
int store_errno(int sqlite_rc);

/* Executes SQL without results (may hold several statements). */
int store_exec(Store *s, const char *sql);

/* A cached prepared statement for a SQL string literal (common/sqlite-util.h). The statement is
 * reset and its bindings cleared when handed out; use _cleanup_stmt_ so it is reset again after
 * use. */
int store_prepare(Store *s, const char *sql, sqlite3_stmt **ret);

/* sqlite3_step() mapped: 1 for a row, 0 when done, negative errno on failure. */
int store_step(Store *s, sqlite3_stmt *st);
/* Runs a cached statement without parameters or rows (transaction control, a fixed DELETE). */
int store_run(Store *s, const char *sql);
/* Steps a prepared, bound statement to its end and collects its first column (text) as a string
 * vector, so that callers can change the rows it selected afterwards. */
int store_collect_strings(Store *s, sqlite3_stmt *st, char ***ret);

/* A query of one value, a time (min(...), a column of LIMIT 1): its parameter ?1, if it has one,
 * bound to param. 1 and *ret set when it gives a value, 0 when it gives none (no row, or NULL). */
int store_query_usec(Store *s, const char *sql, int64_t param, usec_t *ret);

/* Bind helpers: NULL strings bind SQL NULL. The text is not copied (SQLITE_STATIC): it must stay
 * as it is until the statement's last step, which every caller does within the scope that owns
 * both (the statement is reset by _cleanup_stmt_ on the way out). A copy was a malloc() and a free()
 * per bound string, about 68 a job lifecycle. */
int store_bind_text(sqlite3_stmt *st, int idx, const char *s);
int store_bind_int64(sqlite3_stmt *st, int idx, int64_t v);
/* Column text duplicated (NULL stays NULL); -ENOMEM on failure. */
int store_column_strdup(sqlite3_stmt *st, int col, char **ret);

/* BEGIN IMMEDIATE / COMMIT / ROLLBACK. Transactions do not nest. Prefer the control_begin()
 * family of audit.h, which also emits the transaction's audit events after commit. */
int store_begin(Store *s);
int store_commit(Store *s);
/* Rolls back whatever is open: the transaction, or the batch with everything in it. */
void store_rollback(Store *s);

/* Group commit (audit.h): one outer BEGIN IMMEDIATE (the batch) in which each transaction is a
 * SAVEPOINT, so that one failing transaction rolls back alone; one COMMIT makes all of them
 * durable. A negative return from release/rollback means the batch itself is lost (SQLite rolled
 * it back on its own): the caller must give up the whole batch (store_rollback()). */
int store_batch_begin(Store *s);
int store_batch_tx_begin(Store *s);
int store_batch_tx_release(Store *s);
int store_batch_tx_rollback(Store *s);
int store_batch_commit(Store *s);

/* A savepoint inside the open transaction, for one step that may fail alone. end(keep = false)
 * undoes the step's statements and leaves the transaction open; a negative return means the
 * transaction itself is lost (SQLite rolled it back on its own). */
int store_step_begin(Store *s);
int store_step_end(Store *s, bool keep);

int store_user_version(Store *s, int *ret);
/* Size of the main database file plus its WAL, in bytes. */
int store_database_size(Store *s, uint64_t *ret);
/* Jobs per state, from the job_counts table the schema's triggers keep. */
int store_count_jobs_by_state(Store *s, uint64_t counts[_JOB_STATE_MAX]);
