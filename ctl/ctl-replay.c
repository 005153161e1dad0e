/* ctl-replay.c: reads a worker's pending results (the outbox table of worker.db) and turns them
 * into a /reconnect request; prints the control plane's verdict per result. */
#include <errno.h>
#include <sqlite3.h>
#include <stdlib.h>

#include "ctl-output.h"
#include "ctl-replay.h"
#include "json-util.h"
#include "log.h"
#include "sqlite-util.h"

static int open_readonly(const char *path, sqlite3 **ret, CtlError *e) {
        _cleanup_free_ char *uri = NULL;
        sqlite3 *db = NULL;
        int rc;

        if (access(path, R_OK) < 0)
                return ctl_error_set(e, -errno, "Cannot read replay file %s: %s", path, strerror(errno));
        rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_exec(db, "SELECT count(*) FROM sqlite_master", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
                /* A WAL database in a directory we cannot write (a copy handed to us, a dead
                 * worker's disk mounted read-only): read it as an immutable file. */
                sqlite3_close_v2(db);
                db = NULL;
                if (asprintf(&uri, "file:%s?immutable=1", path) < 0)
                        return -ENOMEM;
                rc = sqlite3_open_v2(uri, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL);
        }
        if (rc != SQLITE_OK) {
                ctl_error_set(e, -EIO, "Cannot open replay file %s: %s", path,
                              db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
                sqlite3_close_v2(db);
                return -EINVAL;
        }
        *ret = db;
        return 0;
}

/* One outbox row as a /reconnect record: the body the worker would POST, plus its status. */
static int row_to_record(sqlite3_stmt *st, json_object **ret, const char **ret_worker) {
        const char *kind = (const char *) sqlite3_column_text(st, 0);
        const char *body = (const char *) sqlite3_column_text(st, 1);
        json_object *o, *w;
        JsonError jerr;

        if (!kind || !body || json_parse_object(body, strlen(body), &o, &jerr) < 0)
                return -EBADMSG;
        json_add_string(o, "status", streq(kind, "complete") ? "COMPLETED" : "FAILED");
        if (json_object_object_get_ex(o, "worker_id", &w) && json_object_is_type(w, json_type_string))
                *ret_worker = json_object_get_string(w);
        *ret = o;
        return 0;
}

int replay_file_to_reconnect(const char *path, const char *worker_id, json_object **ret, CtlError *e) {
        _cleanup_(sqlite3_close_v2p) sqlite3 *db = NULL;
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        _cleanup_json_ json_object *body = json_object_new_object(), *records = json_object_new_array();
        _cleanup_free_ char *found_worker = NULL;
        int rc, r;

        if (!body || !records)
                return -ENOMEM;
        r = open_readonly(path, &db, e);
        if (r < 0)
                return r;
        rc = sqlite3_prepare_v2(db, "SELECT kind, body FROM outbox WHERE state = 'pending' ORDER BY id", -1, &st, NULL);
        if (rc != SQLITE_OK)
                return ctl_error_set(e, -EINVAL, "%s is not a worker's replay file: %s", path, sqlite3_errmsg(db));
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                json_object *rec = NULL;
                const char *w = NULL;
                if (row_to_record(st, &rec, &w) < 0)
                        return ctl_error_set(e, -EINVAL, "%s holds a result that is not valid JSON.", path);
                if (w && !found_worker)
                        found_worker = strdup(w);
                else if (w && !streq(w, found_worker)) {
                        json_object_put(rec);
                        return ctl_error_set(e, -EINVAL, "%s holds results of several workers (%s, %s).", path,
                                             found_worker, w);
                }
                json_object_array_add(records, rec);
        }
        if (rc != SQLITE_DONE)
                return ctl_error_set(e, -EIO, "Failed to read %s: %s", path, sqlite3_errmsg(db));
        if (!worker_id)
                worker_id = found_worker;
        if (!worker_id)
                return ctl_error_set(e, -EINVAL, "%s names no worker: give --worker=ID.", path);
        if (found_worker && !streq(worker_id, found_worker))
                return ctl_error_set(e, -EINVAL, "%s holds results of worker %s, not %s.", path, found_worker,
                                     worker_id);
        json_add_string(body, "worker_id", worker_id);
        json_object_object_add(body, "completed_jobs", TAKE_PTR(records));
        *ret = TAKE_PTR(body);
        return 0;
}

int replay_print_actions(const CtlSettings *s, json_object *resp) {
        _cleanup_(table_freep) Table *t = table_new("JOB", "ASSIGNMENT", "ACTION", "RESULT", "ERROR", NULL);
        json_object *actions;
        size_t n = 0;

        if (!t)
                return log_oom(), CTL_EXIT_FAILURE;
        if (resp && json_object_object_get_ex(resp, "actions", &actions) &&
            json_object_is_type(actions, json_type_array))
                n = json_object_array_length(actions);
        for (size_t i = 0; i < n; i++) {
                json_object *a = json_object_array_get_idx(actions, i);
                const char *result = json_str(a, "result");
                const char *cells[] = {json_str(a, "job_id"), json_str(a, "assignment_id"), json_str(a, "action"),
                                       result, json_str(a, "error")};
                if (table_add_row(t, 3, color_for_state(streq_ptr(result, "ACCEPTED") ? "COMPLETED" : "FAILED"),
                                  cells) < 0)
                        return log_oom(), CTL_EXIT_FAILURE;
        }
        if (n > 0)
                table_print(t, !s->no_legend, stdout);
        if (!s->no_legend)
                printf("\n%zu action%s.\n", n, n == 1 ? "" : "s");
        return CTL_EXIT_OK;
}
