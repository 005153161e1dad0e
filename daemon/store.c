/* store.c: opening, configuring and migrating the SQLite database; statements and transactions. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "audit.h"
#include "crash-vfs.h"
#include "fs-util.h"
#include "log.h"
#include "store-schema.h"
#include "store.h"
#include "strv.h"

int store_errno(int rc) {
        switch (rc & 0xff) {
        case SQLITE_OK:
        case SQLITE_ROW:
        case SQLITE_DONE:
                return 0;
        case SQLITE_NOMEM:
                return -ENOMEM;
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
                return -EAGAIN; /* not -EBUSY: that is the domain's "state conflict" (ops.h) */
        case SQLITE_READONLY:
        case SQLITE_PERM:
        case SQLITE_AUTH:
                return -EACCES;
        case SQLITE_NOTADB:
        case SQLITE_CORRUPT:
                return -EBADMSG;
        case SQLITE_FULL:
                return -ENOSPC;
        case SQLITE_CONSTRAINT:
                return -ENOTUNIQ;
        case SQLITE_TOOBIG:
                return -E2BIG;
        default:
                return -EIO;
        }
}

/* SQLite's allocator, with free lists for small blocks. Debian's SQLite is built without its
 * lookaside pool, so every statement step allocates and frees small blocks through here: about 380
 * per job lifecycle, plus the 1 KiB chunks of the in-memory sub-journal (temp_store = MEMORY;
 * every request of a group commit is a savepoint, and the first change of each page inside one
 * copies the page there, four chunks a page, about 180 per lifecycle). glibc's tcache keeps only
 * seven blocks of a size, so a batch's worth of them went through its slower bins. Blocks up to
 * 1 KiB are rounded up to a multiple of 16 and kept on a bounded list per size when freed (at most
 * POOL_KEPT of each, 256 of the 1 KiB chunks: about 1.3 MiB in all), and reused as they are.
 * Like SQLite's default allocator, each block starts with its size. The control plane is
 * single-threaded, and its SQLite memory statistics (the mutex around the allocator) are off. */
#define POOL_GRAIN   16
#define POOL_MAX     1024 /* memjournal.c's MEMJOURNAL_DFLT_FILECHUNKSIZE */
#define POOL_CLASSES (POOL_MAX / POOL_GRAIN)
/* Under AddressSanitizer nothing is kept: a block SQLite freed (a column's text after a reset,
 * say) must stay poisoned for the sanitizer to see it used. */
#if defined(__has_feature) /* clang */
#if __has_feature(address_sanitizer)
#define STORE_ASAN 1
#endif
#elif defined(__SANITIZE_ADDRESS__) /* gcc */
#define STORE_ASAN 1
#endif
#ifdef STORE_ASAN
#define POOL_KEPT       0
#define POOL_CHUNK_KEPT 0
#else
#define POOL_KEPT       32
#define POOL_CHUNK_KEPT 256
#endif

typedef struct PoolBlock {
        struct PoolBlock *next;
} PoolBlock;

static struct {
        PoolBlock *head[POOL_CLASSES];
        unsigned n[POOL_CLASSES];
} pool;

static int mem_roundup(int n) {
        if (n > 0 && n <= POOL_MAX)
                return (n + POOL_GRAIN - 1) & ~(POOL_GRAIN - 1);
        return (n + 7) & ~7;
}

static size_t pool_class(int n) {
        return (size_t) (n / POOL_GRAIN - 1);
}

static bool pool_holds(int n) {
        return n > 0 && n <= POOL_MAX && n % POOL_GRAIN == 0;
}

/* Sizes are rounded as mem_roundup() says, as SQLite's own allocator does: SQLite may use all of
 * what xSize reports. */
static void *mem_malloc(int n) {
        int64_t *p;

        n = mem_roundup(n);
        if (pool_holds(n)) {
                size_t c = pool_class(n);
                PoolBlock *b = pool.head[c];
                if (b) {
                        pool.head[c] = b->next;
                        pool.n[c]--;
                        return b;
                }
        }
        p = malloc((size_t) n + sizeof(int64_t));
        if (!p)
                return NULL;
        p[0] = n;
        return p + 1;
}

static int mem_size(void *q) {
        return q ? (int) ((int64_t *) q)[-1] : 0;
}

static void mem_free(void *q) {
        int n;

        if (!q)
                return;
        n = mem_size(q);
        if (pool_holds(n)) {
                size_t c = pool_class(n);
                if (pool.n[c] < (n == POOL_MAX ? POOL_CHUNK_KEPT : POOL_KEPT)) {
                        PoolBlock *b = q;
                        b->next = pool.head[c];
                        pool.head[c] = b;
                        pool.n[c]++;
                        return;
                }
        }
        free((int64_t *) q - 1);
}

static void *mem_realloc(void *q, int n) {
        int64_t *p;
        int old = mem_size(q);

        n = mem_roundup(n);
        if (n == old)
                return q;
        if (pool_holds(old) || pool_holds(n)) {
                void *d = mem_malloc(n);
                if (!d)
                        return NULL;
                memcpy(d, q, (size_t) MIN(n, old));
                mem_free(q);
                return d;
        }
        p = realloc((int64_t *) q - 1, (size_t) n + sizeof(int64_t));
        if (!p)
                return NULL;
        p[0] = n;
        return p + 1;
}

static int mem_init(void *userdata) {
        return SQLITE_OK;
}

static void mem_shutdown(void *userdata) {
        for (size_t c = 0; c < POOL_CLASSES; c++)
                while (pool.head[c]) {
                        PoolBlock *b = pool.head[c];
                        pool.head[c] = b->next;
                        free((int64_t *) b - 1);
                }
        memset(&pool, 0, sizeof(pool));
}

static void store_memory_configure(void) {
        static const sqlite3_mem_methods methods = {
                .xMalloc = mem_malloc,
                .xFree = mem_free,
                .xRealloc = mem_realloc,
                .xSize = mem_size,
                .xRoundup = mem_roundup,
                .xInit = mem_init,
                .xShutdown = mem_shutdown,
        };
        /* Only before SQLite initializes; if it already has, its default allocator stays. */
        (void) sqlite3_config(SQLITE_CONFIG_MALLOC, &methods);
}

static void chmod_if_exists(const char *path, const char *suffix) {
        char p[4096];
        snprintf(p, sizeof(p), "%s%s", path, suffix);
        if (chmod(p, 0600) < 0 && errno != ENOENT)
                log_warning("Failed to restrict %s to mode 0600: %m", p);
}

static int check_directory(const char *path) {
        _cleanup_free_ char *copy = strdup(path);
        int r;

        if (!copy)
                return log_oom();
        const char *dir = dirname(copy);
        r = directory_writable(dir);
        if (r < 0)
                return log_error_errno(r, "Database directory %s is not writable by this user: %m", dir);
        return 0;
}

static int configure(Store *s, const char *synchronous) {
        int r;

        /* A single connection owned by the loop: a short wait only covers outside readers (the
         * sqlite3 shell, a backup) holding a lock for a moment. */
        sqlite3_busy_timeout(s->db, 1000);
        sqlite3_extended_result_codes(s->db, 1);

        /* The first statement reading the file is where "not a database" shows. */
        int rc = sqlite3_exec(s->db, "SELECT count(*) FROM sqlite_master", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
                r = store_errno(rc);
                return log_error_errno(r, "%s is not a usable SQLite database (%s): %m", s->path,
                                       sqlite3_errmsg(s->db));
        }

        sqlite3_stmt *st = NULL;
        rc = sqlite3_prepare_v2(s->db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
        if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW &&
            !streq((const char *) sqlite3_column_text(st, 0), "wal"))
                rc = SQLITE_ERROR;
        sqlite3_finalize(st);
        if (rc != SQLITE_OK) {
                r = store_errno(rc);
                return log_error_errno(r, "Failed to switch %s to WAL mode: %m", s->path);
        }

        /* FULL: each commit is on disk before we acknowledge it. NORMAL (operator's choice) may
         * lose the last commits on power loss, but never corrupts. */
        r = store_exec(s, synchronous && streq(synchronous, "normal") ? "PRAGMA synchronous = NORMAL"
                                                                      : "PRAGMA synchronous = FULL");
        if (r < 0)
                return r;
        return store_exec(s, "PRAGMA foreign_keys = OFF");
}

static int load_committed_event_id(Store *s) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r = store_prepare(s, "SELECT coalesce(max(id), 0) FROM audit_events", &st);
        if (r < 0)
                return r;
        r = store_step(s, st);
        if (r < 0)
                return r;
        s->committed_event_id = r > 0 ? sqlite3_column_int64(st, 0) : 0;
        return 0;
}

int store_open(const char *path, const char *synchronous, Store **ret) {
        _cleanup_(store_closep) Store *s = NULL;
        int r, rc;

        if (isempty(path))
                return -EINVAL;
        if (synchronous && !streq(synchronous, "full") && !streq(synchronous, "normal")) {
                log_error("Invalid synchronous mode '%s': expected 'full' or 'normal'.", synchronous);
                return -EINVAL;
        }
        r = check_directory(path);
        if (r < 0)
                return r;

        s = calloc(1, sizeof(*s));
        if (!s)
                return log_oom();
        sqlite_stmt_cache_init(&s->stmts, STORE_STMT_CACHE, store_errno);
        s->path = strdup(path);
        if (!s->path)
                return log_oom();

        store_memory_configure();
        sqlite_library_configure();
        /* Created 0600 from the start; SQLite gives -wal and -shm the database file's mode. */
        /* Test-only power-cut simulation (common/crash-vfs.h); never with synchronous=normal,
         * where the WAL index could point other readers at frames held in memory. */
        const char *vfs = crash_vfs_from_environment();
        if (vfs && synchronous && streq(synchronous, "normal")) {
                log_warning("Not using the crash-simulating VFS with synchronous=normal.");
                vfs = NULL;
        }
        mode_t old = umask(0077);
        rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, vfs);
        if (rc == SQLITE_OK)
                rc = sqlite3_exec(s->db, "PRAGMA user_version", NULL, NULL, NULL);
        umask(old);
        if (rc != SQLITE_OK) {
                int e = s->db ? sqlite3_system_errno(s->db) : 0;
                r = e > 0 ? -e : store_errno(rc);
                return log_error_errno(r, "Failed to open database %s (%s): %m", path,
                                       s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        }

        r = configure(s, synchronous);
        if (r < 0)
                return r;
        chmod_if_exists(path, "");
        chmod_if_exists(path, "-wal");
        chmod_if_exists(path, "-shm");

        /* A migration that builds an index sorts every row it covers: in temporary files (SQLite
         * unlinks them at once), not in memory as the store's own temporary data is kept from then
         * on (about 70 MiB per million PENDING jobs for v12's, where the store otherwise runs in
         * 15 MiB). */
        r = store_exec(s, "PRAGMA temp_store = FILE");
        if (r >= 0)
                r = store_schema_migrate(s->db, STORE_SCHEMA_VERSION);
        if (r >= 0)
                r = store_exec(s, "PRAGMA temp_store = MEMORY");
        if (r < 0)
                return log_error_errno(r, "Cannot use database %s: %m", path);
        r = load_committed_event_id(s);
        if (r < 0)
                return log_error_errno(r, "Cannot read the audit events of %s: %m", path);

        *ret = TAKE_PTR(s);
        return 0;
}

Store *store_close(Store *s) {
        if (!s)
                return NULL;
        if (s->in_transaction)
                store_rollback(s);
        sqlite_stmt_cache_done(&s->stmts);
        if (s->db)
                sqlite3_close_v2(s->db);
        for (size_t i = 0; i < s->n_pending; i++)
                audit_event_free(s->pending[i]);
        free(s->pending);
        for (size_t i = 0; i < s->n_batch_pending; i++)
                audit_event_free(s->batch_pending[i]);
        free(s->batch_pending);
        free(s->path);
        free(s);
        return NULL;
}

int store_exec(Store *s, const char *sql) {
        char *msg = NULL;
        int rc = sqlite3_exec(s->db, sql, NULL, NULL, &msg);
        if (rc != SQLITE_OK) {
                int r = store_errno(rc);
                log_error("SQL failed on %s: %s", s->path, msg ? msg : sqlite3_errstr(rc));
                sqlite3_free(msg);
                return r;
        }
        return 0;
}

int store_prepare(Store *s, const char *sql, sqlite3_stmt **ret) {
        return sqlite_stmt_cache_get(&s->stmts, s->db, sql, ret);
}

int store_step(Store *s, sqlite3_stmt *st) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
                return 1;
        if (rc == SQLITE_DONE)
                return 0;
        /* SQLite's words, not strerror() of the errno it maps to: a refused constraint is
         * -ENOTUNIQ for the callers, but "Name not unique on network" says nothing to a reader. */
        const char *msg = sqlite3_errmsg(s->db), *kind = sqlite3_errstr(rc);
        if (streq(msg, kind))
                return log_error_errno(store_errno(rc), "SQL step failed on %s: %s", s->path, msg);
        return log_error_errno(store_errno(rc), "SQL step failed on %s: %s (%s)", s->path, msg, kind);
}

int store_collect_strings(Store *s, sqlite3_stmt *st, char ***ret) {
        _cleanup_strv_free_ char **l = calloc(1, sizeof(char *));
        int r;

        if (!l)
                return -ENOMEM;
        while ((r = store_step(s, st)) > 0)
                if (strv_extend(&l, (const char *) sqlite3_column_text(st, 0)) < 0)
                        return -ENOMEM;
        if (r < 0)
                return r;
        *ret = TAKE_PTR(l);
        return 0;
}

int store_query_usec(Store *s, const char *sql, int64_t param, usec_t *ret) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r;

        r = store_prepare(s, sql, &st);
        if (r < 0)
                return r;
        if (sqlite3_bind_parameter_count(st) > 0 && store_bind_int64(st, 1, param) < 0)
                return -ENOMEM;
        r = store_step(s, st);
        if (r <= 0 || sqlite3_column_type(st, 0) == SQLITE_NULL)
                return r < 0 ? r : 0;
        *ret = (usec_t) sqlite3_column_int64(st, 0);
        return 1;
}

int store_bind_text(sqlite3_stmt *st, int idx, const char *v) {
        int rc = v ? sqlite3_bind_text(st, idx, v, -1, SQLITE_STATIC) : sqlite3_bind_null(st, idx);
        return store_errno(rc);
}

int store_bind_int64(sqlite3_stmt *st, int idx, int64_t v) {
        return store_errno(sqlite3_bind_int64(st, idx, v));
}

int store_column_strdup(sqlite3_stmt *st, int col, char **ret) {
        const unsigned char *t = sqlite3_column_text(st, col);
        if (!t) {
                *ret = NULL;
                return 0;
        }
        char *d = strdup((const char *) t);
        if (!d)
                return -ENOMEM;
        *ret = d;
        return 0;
}

int store_run(Store *s, const char *sql) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r = store_prepare(s, sql, &st);
        if (r < 0)
                return r;
        r = store_step(s, st);
        return r < 0 ? r : 0;
}

int store_begin(Store *s) {
        assert(!s->in_transaction && !s->batch_open);
        /* IMMEDIATE: take the write lock now, so a transaction never fails half-way on a lock. */
        int r = store_run(s, "BEGIN IMMEDIATE");
        if (r < 0)
                return r;
        s->in_transaction = true;
        return 0;
}

int store_commit(Store *s) {
        assert(s->in_transaction && !s->batch_open);
        int r = store_run(s, "COMMIT");
        if (r < 0) {
                store_rollback(s);
                return r;
        }
        s->in_transaction = false;
        s->n_commits++;
        return 0;
}

void store_rollback(Store *s) {
        if (!s->in_transaction && !s->batch_open)
                return;
        /* Fails only when SQLite already rolled back on its own (e.g. after SQLITE_FULL). */
        if (!sqlite3_get_autocommit(s->db))
                (void) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        s->in_transaction = false;
        s->batch_open = false;
}

int store_batch_begin(Store *s) {
        assert(!s->in_transaction && !s->batch_open);
        int r = store_run(s, "BEGIN IMMEDIATE");
        if (r < 0)
                return r;
        s->batch_open = true;
        return 0;
}

int store_batch_tx_begin(Store *s) {
        assert(s->batch_open && !s->in_transaction);
        int r = store_run(s, "SAVEPOINT tx");
        if (r < 0)
                return r;
        s->in_transaction = true;
        return 0;
}

/* Whether the batch's outer transaction is still there: after some errors (SQLITE_FULL, IOERR,
 * NOMEM) SQLite rolls the whole transaction back on its own, savepoints and all. */
static bool batch_alive(Store *s) {
        return !sqlite3_get_autocommit(s->db);
}

int store_batch_tx_release(Store *s) {
        assert(s->batch_open && s->in_transaction);
        int r = store_run(s, "RELEASE tx");
        s->in_transaction = false;
        if (r >= 0 && !batch_alive(s))
                r = -EIO;
        return r;
}

int store_batch_tx_rollback(Store *s) {
        assert(s->batch_open && s->in_transaction);
        s->in_transaction = false;
        if (!batch_alive(s))
                return -EIO;
        /* ROLLBACK TO keeps the savepoint open: release it too, so the next one starts afresh. */
        int r = store_run(s, "ROLLBACK TO tx");
        if (r >= 0)
                r = store_run(s, "RELEASE tx");
        if (r >= 0 && !batch_alive(s))
                r = -EIO;
        return r;
}

int store_step_begin(Store *s) {
        assert(s->in_transaction);
        return store_run(s, "SAVEPOINT step");
}

int store_step_end(Store *s, bool keep) {
        assert(s->in_transaction);
        if (sqlite3_get_autocommit(s->db))
                return -EIO;
        int r = keep ? 0 : store_run(s, "ROLLBACK TO step");
        if (r >= 0)
                r = store_run(s, "RELEASE step");
        if (r >= 0 && sqlite3_get_autocommit(s->db))
                r = -EIO;
        return r;
}

int store_batch_commit(Store *s) {
        assert(s->batch_open && !s->in_transaction);
        int r = store_run(s, "COMMIT");
        if (r < 0) {
                store_rollback(s);
                return r;
        }
        s->batch_open = false;
        s->n_commits++;
        return 0;
}

int store_user_version(Store *s, int *ret) {
        sqlite3_stmt *st = NULL;
        int r = store_prepare(s, "PRAGMA user_version", &st);
        if (r < 0)
                return r;
        r = store_step(s, st);
        if (r > 0)
                *ret = sqlite3_column_int(st, 0);
        sqlite3_reset(st);
        return r < 0 ? r : 0;
}

int store_database_size(Store *s, uint64_t *ret) {
        char wal[4096];
        struct stat a, b;

        if (stat(s->path, &a) < 0)
                return -errno;
        snprintf(wal, sizeof(wal), "%s-wal", s->path);
        *ret = (uint64_t) a.st_size + (stat(wal, &b) == 0 ? (uint64_t) b.st_size : 0);
        return 0;
}

int store_count_jobs_by_state(Store *s, uint64_t counts[_JOB_STATE_MAX]) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r;

        memset(counts, 0, sizeof(uint64_t) * _JOB_STATE_MAX);
        /* Kept by triggers (schema v4), so this reads a handful of rows however many jobs exist. */
        r = store_prepare(s, "SELECT status, n FROM job_counts", &st);
        if (r < 0)
                return r;
        while ((r = store_step(s, st)) > 0) {
                JobState js = job_state_from_string((const char *) sqlite3_column_text(st, 0));
                if (js >= 0)
                        counts[js] = (uint64_t) sqlite3_column_int64(st, 1);
        }
        return r;
}
