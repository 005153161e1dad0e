/* ctl-backup.c: a consistent, durable, checked copy of the control plane's database (see
 * ctl-backup.h). */
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl-backup.h"
#include "fs-util.h"
#include "json-util.h"
#include "sqlite-util.h"

/* A checkpoint or a recovery of the control plane may hold the database for a moment. */
#define BACKUP_BUSY_TIMEOUT_MS 10000

static int open_database(const char *path, int flags, sqlite3 **ret, CtlError *e) {
        sqlite3 *db = NULL;
        int rc;

        rc = sqlite3_open_v2(path, &db, flags, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_busy_timeout(db, BACKUP_BUSY_TIMEOUT_MS);
        if (rc == SQLITE_OK)
                rc = sqlite3_exec(db, "SELECT count(*) FROM sqlite_master", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
                /* A WAL database is read through its -shm file, which readers write too: the
                 * control plane's user or root. */
                ctl_error_set(e, -EIO, "Cannot read %s: %s%s", path, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc),
                              rc == SQLITE_CANTOPEN || rc == SQLITE_READONLY
                                      ? " (run as root or as the control plane's user)"
                                      : "");
                sqlite3_close_v2(db);
                return -EIO;
        }
        *ret = db;
        return 0;
}

static int query_int64(sqlite3 *db, const char *sql, int64_t *ret) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;

        if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK || sqlite3_step(st) != SQLITE_ROW)
                return -EIO;
        *ret = sqlite3_column_int64(st, 0);
        return 0;
}

/* The tables every schema version has: anything else is not an entropy-control database. */
static int check_is_control_database(sqlite3 *db, const char *path, CtlError *e) {
        int64_t n = 0;

        if (query_int64(db,
                        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND "
                        "name IN ('jobs', 'workers', 'audit_events')",
                        &n) < 0 ||
            n != 3)
                return ctl_error_set(e, -EINVAL, "%s is not an entropy-control database.", path);
        return 0;
}

static int copy_into(sqlite3 *db, const char *database, const char *tmp, CtlError *e) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        int rc;

        rc = sqlite3_prepare_v2(db, "VACUUM INTO ?", -1, &st, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_text(st, 1, tmp, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc != SQLITE_DONE)
                return ctl_error_set(e, -EIO, "Cannot copy %s: %s", database, sqlite3_errmsg(db));
        return 0;
}

/* The copy opened again: whole (quick_check), and what it holds. */
static int check_copy(const char *path, json_object *o, CtlError *e) {
        _cleanup_(sqlite3_close_v2p) sqlite3 *db = NULL;
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        int64_t version = 0, jobs = 0, events = 0;
        const char *verdict;
        int r;

        r = open_database(path, SQLITE_OPEN_READONLY, &db, e);
        if (r < 0)
                return r;
        if (sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &st, NULL) != SQLITE_OK || sqlite3_step(st) != SQLITE_ROW)
                return ctl_error_set(e, -EIO, "Cannot check the copy %s: %s", path, sqlite3_errmsg(db));
        verdict = (const char *) sqlite3_column_text(st, 0);
        if (!streq_ptr(verdict, "ok"))
                return ctl_error_set(e, -EIO, "The copy %s is damaged: %s", path, strna(verdict));
        if (query_int64(db, "PRAGMA user_version", &version) < 0 ||
            query_int64(db, "SELECT count(*) FROM jobs", &jobs) < 0 ||
            query_int64(db, "SELECT count(*) FROM audit_events", &events) < 0)
                return ctl_error_set(e, -EIO, "Cannot read the copy %s: %s", path, sqlite3_errmsg(db));
        json_add_int64(o, "schema_version", version);
        json_add_int64(o, "jobs", jobs);
        json_add_int64(o, "audit_events", events);
        return 0;
}

/* An empty file beside path, which VACUUM INTO accepts as its target. */
static int make_temporary(const char *path, char **ret, CtlError *e) {
        _cleanup_free_ char *tmp = NULL;
        int fd;

        if (asprintf(&tmp, "%s.XXXXXX", path) < 0)
                return -ENOMEM;
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
                return ctl_error_set(e, -errno, "Cannot create a file beside %s: %s", path, strerror(errno));
        close(fd);
        *ret = TAKE_PTR(tmp);
        return 0;
}

/* The copy on disk under its name: its data, then the name, never replacing a file. */
static int make_durable(const char *tmp, const char *path, CtlError *e) {
        int r;

        r = fsync_path(tmp);
        if (r < 0)
                return ctl_error_set(e, r, "Cannot sync %s: %s", tmp, strerror(-r));
        if (link(tmp, path) < 0)
                return ctl_error_set(e, -errno, "Cannot create %s: %s", path, strerror(errno));
        (void) unlink(tmp);
        r = fsync_directory_of(path);
        if (r < 0)
                return ctl_error_set(e, r, "Cannot sync the directory of %s: %s", path, strerror(-r));
        return 0;
}

int backup_database(const char *database, const char *path, json_object **ret, CtlError *e) {
        _cleanup_(sqlite3_close_v2p) sqlite3 *db = NULL;
        _cleanup_json_ json_object *o = NULL;
        _cleanup_free_ char *tmp = NULL;
        struct stat st;
        int r;

        if (lstat(path, &st) >= 0)
                return ctl_error_set(e, -EEXIST, "%s exists: give the name of a new file.", path);
        if (errno != ENOENT)
                return ctl_error_set(e, -errno, "Cannot use %s: %s", path, strerror(errno));
        if (access(database, F_OK) < 0)
                return ctl_error_set(e, -errno, "Cannot read %s: %s", database, strerror(errno));
        r = open_database(database, SQLITE_OPEN_READONLY, &db, e);
        if (r < 0)
                return r;
        r = check_is_control_database(db, database, e);
        if (r < 0)
                return r;
        r = make_temporary(path, &tmp, e);
        if (r < 0)
                return r;
        r = copy_into(db, database, tmp, e);
        if (r >= 0)
                r = make_durable(tmp, path, e);
        if (r < 0) {
                (void) unlink(tmp);
                return r;
        }
        o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        json_add_string(o, "path", path);
        json_add_string(o, "database", database);
        if (stat(path, &st) >= 0)
                json_add_int64(o, "bytes", (int64_t) st.st_size);
        r = check_copy(path, o, e);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(o);
        return 0;
}
