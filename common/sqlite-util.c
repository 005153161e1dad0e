/* sqlite-util.c: process-wide SQLite settings and the prepared-statement cache (sqlite-util.h). */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include "log.h"
#include "sqlite-util.h"

void sqlite_library_configure(void) {
        static bool done = false;

        if (done)
                return;
        done = true;
        /* SQLite keeps memory statistics by default, taking a global mutex on every one of its
         * many allocations; nothing here reads them. Settable only before the library
         * initializes: if it already has, the call fails and the default stays. */
        (void) sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

void sqlite_stmt_cache_init(SqliteStmtCache *c, size_t max, int (*map_errno)(int sqlite_rc)) {
        *c = (SqliteStmtCache){.max = max, .map_errno = map_errno};
}

static struct SqliteStmtCacheEntry *cache_find(SqliteStmtCache *c, const char *sql) {
        for (size_t i = 0; i < c->n; i++)
                if (c->entries[i].sql == sql)
                        return &c->entries[i];
        return NULL;
}

int sqlite_stmt_cache_get(SqliteStmtCache *c, sqlite3 *db, const char *sql, sqlite3_stmt **ret) {
        struct SqliteStmtCacheEntry *e = cache_find(c, sql);
        sqlite3_stmt *st = NULL;
        int rc;

        if (e) {
                sqlite_stmt_resetp(&e->stmt);
                *ret = e->stmt;
                return 0;
        }
        if (c->n >= c->max)
                return log_error_errno(-ENOSPC, "Prepared statement cache full (%zu statements); raise its bound.",
                                       c->max);
        if (!c->entries) {
                c->entries = calloc(c->max, sizeof(*c->entries));
                if (!c->entries)
                        return log_oom();
        }
        rc = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL);
        if (rc != SQLITE_OK)
                return log_error_errno(c->map_errno(rc) ?: -EIO, "Failed to prepare SQL (%s): %s", sqlite3_errmsg(db),
                                       sql);
        c->entries[c->n++] = (struct SqliteStmtCacheEntry){.sql = sql, .stmt = st};
        *ret = st;
        return 0;
}

void sqlite_stmt_cache_done(SqliteStmtCache *c) {
        for (size_t i = 0; i < c->n; i++)
                sqlite3_finalize(c->entries[i].stmt);
        free(c->entries);
        *c = (SqliteStmtCache){};
}
