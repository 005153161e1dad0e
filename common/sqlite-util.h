/* sqlite-util.h: what the control plane's store and the worker's replay buffer share in their use
 * of SQLite: process-wide settings and the prepared-statement cache. */
#pragma once

#include <sqlite3.h>
#include <stddef.h>

#include "macro.h"

/* For a connection or a statement of one's own, not the cache's (entropyctl's reads). */
DEFINE_TRIVIAL_CLEANUP_FUNC(sqlite3 *, sqlite3_close_v2);
DEFINE_TRIVIAL_CLEANUP_FUNC(sqlite3_stmt *, sqlite3_finalize);

/* Call before the first sqlite3_open*() of the process (and before crash_vfs_from_environment(),
 * which initializes the library); later calls change nothing. */
void sqlite_library_configure(void);

/* Prepared statements keyed by the address of their SQL string literal. Every statement is a
 * literal in the source, so the cache is bounded by the code: `max` is that bound. */
typedef struct SqliteStmtCache {
        struct SqliteStmtCacheEntry {
                const char *sql;
                sqlite3_stmt *stmt;
        } *entries;
        size_t n, max;
        int (*map_errno)(int sqlite_rc); /* the owner's mapping of SQLite result codes */
} SqliteStmtCache;

void sqlite_stmt_cache_init(SqliteStmtCache *c, size_t max, int (*map_errno)(int sqlite_rc));
/* The cached statement, reset and unbound; prepared (persistent) on first use. A failure is
 * logged: -ENOSPC when the cache is full, -ENOMEM, or map_errno() of SQLite's code. */
int sqlite_stmt_cache_get(SqliteStmtCache *c, sqlite3 *db, const char *sql, sqlite3_stmt **ret);
/* Finalizes every statement (before the connection closes) and frees the cache. */
void sqlite_stmt_cache_done(SqliteStmtCache *c);

/* Handed back to the cache: reset (a SELECT left stepped would keep its read snapshot and hold
 * back checkpoints) and unbound (nothing may keep a bound pointer). */
static inline void sqlite_stmt_resetp(sqlite3_stmt **st) {
        if (*st) {
                sqlite3_reset(*st);
                sqlite3_clear_bindings(*st);
        }
}
#define _cleanup_stmt_ _cleanup_(sqlite_stmt_resetp)
