/* replay.c: the worker's SQLite replay buffer, sequence numbers and run records (see replay.h). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "crash-vfs.h"
#include "crypto.h"
#include "json-util.h"
#include "log.h"
#include "replay.h"
#include "time-util.h"

/* Raised with every change to schema_sql: a buffer at this version is not written at open. */
#define REPLAY_SCHEMA_VERSION 1

static const char schema_sql[] =
        "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "CREATE TABLE IF NOT EXISTS outbox("
        " id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " job_id TEXT NOT NULL, assignment_id TEXT NOT NULL,"
        " kind TEXT NOT NULL CHECK (kind IN ('complete','fail')),"
        " completion_seq INTEGER NOT NULL, body TEXT NOT NULL,"
        " state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending','accepted','rejected')),"
        " created_at INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
        " last_error TEXT, resolved_at INTEGER,"
        " UNIQUE (job_id, assignment_id));"
        "CREATE INDEX IF NOT EXISTS outbox_state ON outbox(state, id);"
        "CREATE TABLE IF NOT EXISTS runs("
        " id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " job_id TEXT NOT NULL, assignment_id TEXT NOT NULL, attempt INTEGER, slot INTEGER,"
        " pid INTEGER, proc_start INTEGER, instance_id TEXT,"
        " started_at INTEGER NOT NULL, ended_at INTEGER,"
        " outcome TEXT NOT NULL DEFAULT 'running', exit_code INTEGER, reason TEXT);"
        "CREATE INDEX IF NOT EXISTS runs_outcome ON runs(outcome);";

static const char *const result_kind_table[_RESULT_KIND_MAX] = {
        [RESULT_COMPLETE] = "complete",
        [RESULT_FAIL] = "fail",
};

const char *result_kind_to_string(ResultKind k) {
        return k >= 0 && k < _RESULT_KIND_MAX ? result_kind_table[k] : NULL;
}
ResultKind result_kind_from_string(const char *s) {
        for (int i = 0; s && i < _RESULT_KIND_MAX; i++)
                if (streq(s, result_kind_table[i]))
                        return i;
        return _RESULT_KIND_INVALID;
}

static int sqlite_errno(int rc) {
        switch (rc & 0xff) {
        case SQLITE_OK:
        case SQLITE_ROW:
        case SQLITE_DONE:
                return 0;
        case SQLITE_NOMEM:
                return -ENOMEM;
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
                return -EBUSY;
        case SQLITE_CONSTRAINT:
                return -EEXIST;
        case SQLITE_FULL:
                return -ENOSPC;
        case SQLITE_READONLY:
        case SQLITE_PERM:
        case SQLITE_CANTOPEN:
                return -EACCES;
        case SQLITE_NOTADB:
        case SQLITE_CORRUPT:
                return -EBADMSG;
        default:
                return -EIO;
        }
}

static int replay_exec(Replay *r, const char *sql) {
        char *err = NULL;
        int rc = sqlite3_exec(r->db, sql, NULL, NULL, &err);
        if (rc != SQLITE_OK) {
                log_error("%s: %s", r->path, err ? err : sqlite3_errstr(rc));
                sqlite3_free(err);
                return sqlite_errno(rc) ?: -EIO;
        }
        return 0;
}

/* Prepared statements are cached by the address of their SQL literal: parsing them again on
 * every call was a good part of the worker's CPU per job. Use with _cleanup_stmt_. */
static int prepare(Replay *r, const char *sql, sqlite3_stmt **ret) {
        return sqlite_stmt_cache_get(&r->stmts, r->db, sql, ret);
}

/* A cached statement without parameters or rows: transaction control. */
static int exec_cached(Replay *r, const char *sql) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int rc, k;

        k = prepare(r, sql, &st);
        if (k < 0)
                return k;
        rc = sqlite3_step(st);
        if (rc != SQLITE_DONE) {
                log_error("%s: %s: %s", r->path, sql, sqlite3_errmsg(r->db));
                return sqlite_errno(rc) ?: -EIO;
        }
        return 0;
}

/* PRAGMA synchronous takes effect when the statement is compiled, not when it runs, so it goes
 * through sqlite3_exec() every time rather than the cache. */
static int set_sync_normal(Replay *r, bool normal) {
        int k;

        if (r->sync_normal == normal)
                return 0;
        k = replay_exec(r, normal ? "PRAGMA synchronous=NORMAL" : "PRAGMA synchronous=FULL");
        if (k < 0)
                return k;
        r->sync_normal = normal;
        return 0;
}

/* Every durable write starts here: after lazy writes the connection stays at NORMAL (switching
 * costs a statement compile each way), so a durable commit is at synchronous=FULL because it asks
 * for it, or it does not happen. Writes go through run_stmt() (durable), run_stmt_lazy() and
 * replay_add_result() only. */
static int ensure_durable(Replay *r) {
        return set_sync_normal(r, false);
}

/* Binds a list of values: 't' text (NULL allowed), 'i' int64. */
static int bind_args(sqlite3_stmt *st, const char *types, va_list ap) {
        for (int i = 0; types[i]; i++) {
                int rc;
                if (types[i] == 't') {
                        const char *s = va_arg(ap, const char *);
                        rc = s ? sqlite3_bind_text(st, i + 1, s, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(st, i + 1);
                } else {
                        rc = sqlite3_bind_int64(st, i + 1, va_arg(ap, int64_t));
                }
                if (rc != SQLITE_OK)
                        return sqlite_errno(rc) ?: -EIO;
        }
        return 0;
}

static int run_stmt_va(Replay *r, const char *sql, const char *types, va_list ap) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int rc, k;

        k = prepare(r, sql, &st);
        if (k < 0)
                return k;
        k = bind_args(st, types, ap);
        if (k < 0)
                return k;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW)
                ;
        if (rc != SQLITE_DONE) {
                log_error("%s: %s", r->path, sqlite3_errmsg(r->db));
                return sqlite_errno(rc) ?: -EIO;
        }
        return 0;
}

/* Runs one statement with bound arguments, ignoring any rows. Outside a transaction it is its
 * own, fsynced, commit. */
static int run_stmt(Replay *r, const char *sql, const char *types, ...) {
        va_list ap;
        int k;

        k = ensure_durable(r);
        if (k < 0)
                return k;
        va_start(ap, types);
        k = run_stmt_va(r, sql, types, ap);
        va_end(ap);
        return k;
}

/* The same as a lazy commit: written to the WAL but not fsynced (replay.h says which writes may
 * be lazy, and why). If the switch to NORMAL fails, it is simply committed durably. */
static int run_stmt_lazy(Replay *r, const char *sql, const char *types, ...) {
        va_list ap;
        int k;

        if (r->lazy_allowed)
                (void) set_sync_normal(r, true);
        va_start(ap, types);
        k = run_stmt_va(r, sql, types, ap);
        va_end(ap);
        return k;
}

static int meta_get_int(Replay *r, const char *key, int64_t *ret) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int k = prepare(r, "SELECT value FROM meta WHERE key = ?", &st);
        if (k < 0)
                return k;
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        k = sqlite3_step(st);
        if (k == SQLITE_DONE) {
                *ret = 0;
                return 0;
        }
        if (k != SQLITE_ROW)
                return sqlite_errno(k) ?: -EIO;
        *ret = sqlite3_column_int64(st, 0);
        return 0;
}

static int meta_set_int(Replay *r, const char *key, int64_t v) {
        return run_stmt(r, "INSERT INTO meta(key, value) VALUES (?, ?) "
                           "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                        "ti", key, v);
}

static int replay_migrate(Replay *r) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int version, k;

        k = prepare(r, "PRAGMA user_version", &st);
        if (k < 0)
                return k;
        if (sqlite3_step(st) != SQLITE_ROW)
                return -EIO;
        version = sqlite3_column_int(st, 0);
        if (version > REPLAY_SCHEMA_VERSION)
                return log_error_errno(-EPROTO, "%s has schema version %d, newer than this program's %d.", r->path,
                                       version, REPLAY_SCHEMA_VERSION);
        /* Nothing to write when it is current: a worker on a full disk must still start, and
         * deliver the results it holds. */
        if (version == REPLAY_SCHEMA_VERSION)
                return 0;
        k = ensure_durable(r);
        if (k >= 0)
                k = replay_exec(r, "BEGIN IMMEDIATE");
        if (k < 0)
                return k;
        k = replay_exec(r, schema_sql);
        if (k >= 0)
                k = replay_exec(r, "PRAGMA user_version = 1");
        if (k < 0) {
                (void) replay_exec(r, "ROLLBACK");
                return k;
        }
        return replay_exec(r, "COMMIT");
}

/* Seqs up to the stored reservation may have been sent before a crash: start above it. The next
 * block is reserved by the first heartbeat (replay_next_heartbeat_seq()), not here: opening the
 * buffer writes nothing, so that a worker on a full disk starts. */
static int replay_load_seqs(Replay *r) {
        int64_t reserved;
        int k = meta_get_int(r, "heartbeat_seq_reserved", &reserved);
        if (k < 0)
                return k;
        r->hb_seq = (uint64_t) reserved;
        r->hb_seq_reserved = (uint64_t) reserved;
        return 0;
}

int replay_open(const char *path, Replay **ret) {
        _cleanup_(replay_closep) Replay *r = NULL;
        _cleanup_close_ int fd = -EBADF;
        const char *vfs;
        int rc, k;

        /* Created 0600 before SQLite opens it: results may contain job output paths and errors. */
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0)
                return log_error_errno(-errno, "Failed to create replay buffer %s: %m", path);
        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        sqlite_stmt_cache_init(&r->stmts, REPLAY_STMT_CACHE, sqlite_errno);
        r->path = strdup(path);
        if (!r->path)
                return -ENOMEM;
        /* crash_vfs_from_environment(): NULL (the default VFS) unless the test-only
         * ENTROPY_CRASH_VFS=1 asks for the power-cut simulation of common/crash-vfs.h. */
        sqlite_library_configure();
        vfs = crash_vfs_from_environment();
        r->lazy_allowed = !vfs;
        rc = sqlite3_open_v2(path, &r->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs);
        if (rc != SQLITE_OK)
                return log_error_errno(sqlite_errno(rc) ?: -EIO, "Failed to open replay buffer %s: %s", path,
                                       sqlite3_errstr(rc));
        sqlite3_busy_timeout(r->db, 5000);
        k = replay_exec(r, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;");
        if (k < 0)
                return k;
        k = replay_migrate(r);
        if (k < 0)
                return k;
        k = replay_load_seqs(r);
        if (k < 0)
                return k;
        *ret = TAKE_PTR(r);
        return 0;
}

Replay *replay_close(Replay *r) {
        if (!r)
                return NULL;
        for (size_t i = 0; i < r->n_unwritten; i++)
                free(r->unwritten[i].error);
        free(r->unwritten);
        sqlite_stmt_cache_done(&r->stmts);
        if (r->db)
                sqlite3_close(r->db);
        free(r->path);
        free(r);
        return NULL;
}

int replay_get_nonce(Replay *r, char **ret) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        char id[RANDOM_ID_SIZE];
        char *s;
        int k;

        k = prepare(r, "SELECT value FROM meta WHERE key = 'nonce'", &st);
        if (k < 0)
                return k;
        if (sqlite3_step(st) == SQLITE_ROW) {
                s = strdup((const char *) sqlite3_column_text(st, 0));
                if (!s)
                        return -ENOMEM;
                *ret = s;
                return 0;
        }
        k = random_id(id);
        if (k < 0)
                return k;
        /* INSERT OR IGNORE and read back: the first nonce ever stored wins. */
        k = run_stmt(r, "INSERT OR IGNORE INTO meta(key, value) VALUES ('nonce', ?)", "t", id);
        if (k < 0)
                return k;
        s = strdup(id);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

int replay_next_heartbeat_seq(Replay *r, uint64_t *ret) {
        if (r->hb_seq + 1 > r->hb_seq_reserved) {
                int k = meta_set_int(r, "heartbeat_seq_reserved", (int64_t) (r->hb_seq_reserved + REPLAY_SEQ_BLOCK));
                if (k < 0)
                        return k;
                r->hb_seq_reserved += REPLAY_SEQ_BLOCK;
        }
        *ret = ++r->hb_seq;
        return 0;
}

/* Both fields raised together keep their meaning (every seq up to hb_seq_reserved may have been
 * used). */
void replay_raise_heartbeat_seq(Replay *r, uint64_t floor) {
        if (floor <= r->hb_seq)
                return;
        r->hb_seq = floor;
        r->hb_seq_reserved = MAX(r->hb_seq_reserved, floor);
}

uint64_t replay_next_heartbeat_seq_unreserved(Replay *r) {
        replay_raise_heartbeat_seq(r, r->hb_seq + 1);
        return r->hb_seq;
}

int replay_completion_seq(Replay *r, int64_t *ret) {
        return meta_get_int(r, "completion_seq", ret);
}

int replay_run_begin(Replay *r, const RunRecord *rec, int64_t *ret_id) {
        int k = run_stmt_lazy(r,
                              "INSERT INTO runs(job_id, assignment_id, attempt, slot, instance_id, started_at) "
                              "VALUES (?, ?, ?, ?, ?, ?)",
                              "ttiiti", rec->job_id, rec->assignment_id, rec->attempt, rec->slot, rec->instance_id,
                              (int64_t) rec->started_at);
        if (k < 0)
                return k;
        *ret_id = sqlite3_last_insert_rowid(r->db);
        return 0;
}

int replay_run_set_pid(Replay *r, int64_t run_id, pid_t pid, uint64_t proc_start) {
        return run_stmt_lazy(r, "UPDATE runs SET pid = ?, proc_start = ? WHERE id = ?", "iii", (int64_t) pid,
                             (int64_t) proc_start, run_id);
}

int replay_run_end(Replay *r, int64_t run_id, uint64_t ended_at, const char *outcome, int64_t exit_code,
                   const char *reason) {
        if (ended_at == 0)
                return run_stmt(r, "UPDATE runs SET outcome = ?, exit_code = ?, reason = ? WHERE id = ?", "titi",
                                outcome, exit_code, reason, run_id);
        return run_stmt(r, "UPDATE runs SET ended_at = ?, outcome = ?, exit_code = ?, reason = ? WHERE id = ?",
                        "ititi", (int64_t) ended_at, outcome, exit_code, reason, run_id);
}

static int add_result_locked(Replay *r, int64_t run_id, ResultKind kind, const char *job_id,
                             const char *assignment_id, json_object *body, uint64_t ended_at, const char *outcome,
                             int64_t exit_code, const char *reason, int64_t *ret_seq) {
        int64_t seq;
        int k;

        k = meta_get_int(r, "completion_seq", &seq);
        if (k < 0)
                return k;
        seq++;
        k = meta_set_int(r, "completion_seq", seq);
        if (k < 0)
                return k;
        json_add_int64(body, "completion_seq", seq);
        k = run_stmt(r,
                     "INSERT INTO outbox(job_id, assignment_id, kind, completion_seq, body, created_at) "
                     "VALUES (?, ?, ?, ?, ?, ?)",
                     "tttiti", job_id, assignment_id, result_kind_to_string(kind), seq,
                     json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN), (int64_t) now_realtime_usec());
        if (k < 0)
                return k;
        if (run_id > 0) {
                k = replay_run_end(r, run_id, ended_at, outcome, exit_code, reason);
                if (k < 0)
                        return k;
        }
        *ret_seq = seq;
        return 0;
}

int replay_add_result(Replay *r, int64_t run_id, ResultKind kind, const char *job_id, const char *assignment_id,
                      json_object *body, uint64_t ended_at, const char *outcome, int64_t exit_code,
                      const char *reason, int64_t *ret_seq) {
        int64_t seq = 0;
        int k;

        if (kind < 0 || kind >= _RESULT_KIND_MAX || isempty(job_id) || isempty(assignment_id) || !body)
                return -EINVAL;
        /* At FULL before the transaction starts (it cannot change inside one). */
        k = ensure_durable(r);
        if (k < 0)
                return k;
        k = exec_cached(r, "BEGIN IMMEDIATE");
        if (k < 0)
                return k;
        k = add_result_locked(r, run_id, kind, job_id, assignment_id, body, ended_at, outcome, exit_code, reason,
                              &seq);
        if (k < 0) {
                (void) exec_cached(r, "ROLLBACK");
                return k;
        }
        /* COMMIT with synchronous=FULL fsyncs the WAL: the result survives a power cut from here on,
         * and so does every lazy commit before it (the same file, synced whole). */
        k = exec_cached(r, "COMMIT");
        if (k < 0) {
                /* Not committed: leave no transaction open for the next write to fall into. */
                if (!sqlite3_get_autocommit(r->db))
                        (void) exec_cached(r, "ROLLBACK");
                return k;
        }
        if (ret_seq)
                *ret_seq = seq;
        return 0;
}

void replay_entries_free(ReplayEntry *e, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(e[i].job_id);
                free(e[i].assignment_id);
                json_object_put(e[i].body);
        }
        free(e);
}

static int entry_from_row(sqlite3_stmt *st, ReplayEntry *e) {
        const char *text = (const char *) sqlite3_column_text(st, 5);
        JsonError err;
        e->id = sqlite3_column_int64(st, 0);
        e->job_id = strdup((const char *) sqlite3_column_text(st, 1));
        e->assignment_id = strdup((const char *) sqlite3_column_text(st, 2));
        e->kind = result_kind_from_string((const char *) sqlite3_column_text(st, 3));
        e->completion_seq = sqlite3_column_int64(st, 4);
        e->attempts = sqlite3_column_int64(st, 6);
        if (!e->job_id || !e->assignment_id)
                return -ENOMEM;
        if (!text || json_parse_object(text, strlen(text), &e->body, &err) < 0)
                return -EBADMSG;
        return 0;
}

/* ---- resolves not written yet (a full disk) ------------------------------------------------ */

static bool resolve_unwritten(const Replay *r, int64_t id) {
        for (size_t i = 0; i < r->n_unwritten; i++)
                if (r->unwritten[i].id == id)
                        return true;
        return false;
}

static int resolve_write(Replay *r, int64_t id, bool accepted, const char *error) {
        return run_stmt_lazy(r,
                             "UPDATE outbox SET state = ?, last_error = ?, resolved_at = ?, attempts = attempts + 1 "
                             "WHERE id = ? AND state = 'pending'",
                             "ttii", accepted ? "accepted" : "rejected", error, (int64_t) now_realtime_usec(), id);
}

/* Writes the kept resolves, oldest first, up to the first that still cannot be written. */
static void resolve_unwritten_retry(Replay *r) {
        size_t done = 0;

        while (done < r->n_unwritten) {
                UnwrittenResolve *u = &r->unwritten[done];
                if (resolve_write(r, u->id, u->accepted, u->error) < 0)
                        break;
                free(u->error);
                done++;
        }
        if (done == 0)
                return;
        memmove(r->unwritten, r->unwritten + done, (r->n_unwritten - done) * sizeof(*r->unwritten));
        r->n_unwritten -= done;
        if (r->n_unwritten == 0)
                log_info("%s: the answers kept in memory are written.", r->path);
}

static int resolve_keep(Replay *r, int64_t id, bool accepted, const char *error) {
        UnwrittenResolve *a;
        char *e = NULL;

        if (resolve_unwritten(r, id))
                return 0;
        if (error && !(e = strdup(error)))
                return -ENOMEM;
        a = realloc(r->unwritten, (r->n_unwritten + 1) * sizeof(*a));
        if (!a) {
                free(e);
                return -ENOMEM;
        }
        r->unwritten = a;
        a[r->n_unwritten++] = (UnwrittenResolve){.id = id, .accepted = accepted, .error = e};
        return 0;
}

int replay_resolve(Replay *r, int64_t id, bool accepted, const char *error) {
        int k;

        resolve_unwritten_retry(r);
        k = resolve_write(r, id, accepted, error);
        if (k >= 0)
                return k;
        /* Left pending on disk, the result would be sent again at once, answered again, and so on
         * while the disk is full. */
        if (resolve_keep(r, id, accepted, error) >= 0)
                log_warning("%s: cannot record the answer to result %" PRIi64 "; kept in memory until it can be.",
                            r->path, id);
        return k;
}

int replay_list_pending(Replay *r, ReplayEntry **ret, size_t *ret_n) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        ReplayEntry *list = NULL;
        size_t n = 0;
        int k, rc;

        resolve_unwritten_retry(r);
        k = prepare(r,
                    "SELECT id, job_id, assignment_id, kind, completion_seq, body, attempts FROM outbox "
                    "WHERE state = 'pending' ORDER BY id",
                    &st);
        if (k < 0)
                return k;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                if (resolve_unwritten(r, sqlite3_column_int64(st, 0)))
                        continue;
                ReplayEntry *nl = realloc(list, (n + 1) * sizeof(*list));
                if (!nl) {
                        replay_entries_free(list, n);
                        return -ENOMEM;
                }
                list = nl;
                memset(&list[n], 0, sizeof(list[n]));
                k = entry_from_row(st, &list[n]);
                n++;
                if (k < 0) {
                        replay_entries_free(list, n);
                        return k;
                }
        }
        if (rc != SQLITE_DONE) {
                replay_entries_free(list, n);
                return sqlite_errno(rc) ?: -EIO;
        }
        *ret = list;
        *ret_n = n;
        return 0;
}

int replay_count_pending(Replay *r, int64_t *ret) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int k = prepare(r, "SELECT COUNT(*) FROM outbox WHERE state = 'pending'", &st);
        if (k < 0)
                return k;
        if (sqlite3_step(st) != SQLITE_ROW)
                return -EIO;
        /* Every kept resolve is of a row still pending on disk. */
        *ret = MAX(sqlite3_column_int64(st, 0) - (int64_t) r->n_unwritten, (int64_t) 0);
        return 0;
}

int replay_has_pending_job(Replay *r, const char *job_id) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int k = prepare(r, "SELECT id FROM outbox WHERE state = 'pending' AND job_id = ?", &st);
        if (k < 0)
                return k;
        sqlite3_bind_text(st, 1, job_id, -1, SQLITE_STATIC);
        while ((k = sqlite3_step(st)) == SQLITE_ROW)
                if (!resolve_unwritten(r, sqlite3_column_int64(st, 0)))
                        return 1;
        return k == SQLITE_DONE ? 0 : -EIO;
}

int replay_note_attempt(Replay *r, int64_t id, const char *error) {
        return run_stmt(r, "UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE id = ?", "ti", error, id);
}

int replay_list_orphans(Replay *r, const char *instance_id, OrphanRun **ret, size_t *ret_n) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        OrphanRun *list = NULL;
        size_t n = 0;
        int k, rc;

        k = prepare(r,
                    "SELECT id, COALESCE(pid, 0), COALESCE(proc_start, 0) FROM runs "
                    "WHERE outcome = 'running' AND (instance_id IS NULL OR instance_id != ?) ORDER BY id",
                    &st);
        if (k < 0)
                return k;
        sqlite3_bind_text(st, 1, strempty(instance_id), -1, SQLITE_STATIC);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                OrphanRun *nl = realloc(list, (n + 1) * sizeof(*list));
                if (!nl) {
                        free(list);
                        return -ENOMEM;
                }
                list = nl;
                list[n++] = (OrphanRun){ sqlite3_column_int64(st, 0), (pid_t) sqlite3_column_int64(st, 1),
                                         (uint64_t) sqlite3_column_int64(st, 2) };
        }
        if (rc != SQLITE_DONE) {
                free(list);
                return sqlite_errno(rc) ?: -EIO;
        }
        *ret = list;
        *ret_n = n;
        return 0;
}

int replay_prune(Replay *r, uint64_t older_than) {
        int k = run_stmt(r, "DELETE FROM outbox WHERE state != 'pending' AND resolved_at < ?", "i", (int64_t) older_than);
        if (k < 0)
                return k;
        return run_stmt(r, "DELETE FROM runs WHERE outcome != 'running' AND COALESCE(ended_at, started_at) < ?", "i",
                        (int64_t) older_than);
}
