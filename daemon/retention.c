/* retention.c: the retention sweep. Rows go in batches, each its own transaction, so that a
 * large backlog never holds the loop (and the write lock) for long. */
#include <errno.h>
#include <stdio.h>

#include "audit.h"
#include "json-util.h"
#include "log.h"
#include "retention.h"
#include "store.h"
#include "strv.h"
#include "workers.h"

#define RETENTION_BATCH 5000

static const Origin retention_origin = {.actor = "retention"};

/* A batch statement: ?1 the cutoff, ?2 the batch size. */
static int prepare_batch(Control *c, const char *sql, usec_t cutoff, sqlite3_stmt **ret) {
        int r = store_prepare(c->store, sql, ret);
        if (r < 0)
                return r;
        if (store_bind_int64(*ret, 1, (int64_t) cutoff) < 0 || store_bind_int64(*ret, 2, RETENTION_BATCH) < 0)
                return -ENOMEM;
        return 0;
}

/* One batch of old terminal jobs (their artifact records live in the same row and go with them):
 * their ids first, then each row by its key, so that once the deletion has committed their
 * objects can be announced as gone (Control.on_jobs_deleted). DELETE ... RETURNING would do both
 * in one statement but needs SQLite 3.35, and configure accepts 3.31. */
static int delete_jobs_batch(Control *c, usec_t cutoff, char ***ret_ids) {
        _cleanup_tx_ Control *tx = NULL;
        _cleanup_stmt_ sqlite3_stmt *sel = NULL, *del = NULL;
        _cleanup_strv_free_ char **ids = NULL;
        int r;

        r = control_begin(c, &tx);
        if (r < 0)
                return r;
        r = prepare_batch(c,
                          /* created_at (never after updated_at) lets the status index narrow the
                           * walk to the old rows instead of every terminal job. */
                          "SELECT job_id FROM jobs WHERE status IN ('COMPLETED', 'FAILED', 'ABORTED') "
                          "AND created_at < ?1 AND updated_at < ?1 LIMIT ?2",
                          cutoff, &sel);
        if (r < 0)
                return r;
        r = store_collect_strings(c->store, sel, &ids);
        if (r < 0)
                return r;
        r = store_prepare(c->store, "DELETE FROM jobs WHERE job_id = ?", &del);
        if (r < 0)
                return r;
        STRV_FOREACH (id, ids) {
                if (store_bind_text(del, 1, *id) < 0)
                        return -ENOMEM;
                r = store_step(c->store, del);
                if (r < 0)
                        return r;
                sqlite3_reset(del);
        }
        r = control_commit(&tx);
        if (r < 0)
                return r;
        *ret_ids = TAKE_PTR(ids);
        return 0;
}

static int delete_jobs(Control *c, usec_t cutoff, uint64_t *deleted) {
        size_t n;
        int r;

        do {
                _cleanup_strv_free_ char **ids = NULL;
                r = delete_jobs_batch(c, cutoff, &ids);
                if (r < 0)
                        return r;
                n = strv_length(ids);
                *deleted += n;
                if (n > 0 && c->on_jobs_deleted)
                        c->on_jobs_deleted(c->on_jobs_deleted_userdata, ids);
        } while (n == RETENTION_BATCH);
        return 0;
}

static int delete_events_batch(Control *c, usec_t cutoff, uint64_t *deleted) {
        _cleanup_tx_ Control *tx = NULL;
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r, n;

        r = control_begin(c, &tx);
        if (r < 0)
                return r;
        r = prepare_batch(c,
                          "DELETE FROM audit_events WHERE id IN (SELECT id FROM audit_events WHERE ts < ?1 LIMIT ?2)",
                          cutoff, &st);
        if (r < 0)
                return r;
        r = store_step(c->store, st);
        if (r < 0)
                return r;
        n = sqlite3_changes(c->store->db);
        sqlite3_reset(st);
        r = control_commit(&tx);
        if (r < 0)
                return r;
        *deleted += (uint64_t) n;
        return n;
}

static int delete_events(Control *c, usec_t cutoff, uint64_t *deleted) {
        int r;

        do
                r = delete_events_batch(c, cutoff, deleted);
        while (r == RETENTION_BATCH);
        return r < 0 ? r : 0;
}

/* Workers last seen before cutoff, each removed in its own transaction by worker_remove(),
 * audited as worker.removed. One that is not OFFLINE (the control plane started less than the
 * heartbeat timeout ago) or still holds a job is left for a later sweep. */
static int delete_workers(Control *c, usec_t cutoff, uint64_t *deleted) {
        _cleanup_strv_free_ char **ids = NULL;
        int r;

        {
                _cleanup_stmt_ sqlite3_stmt *st = NULL;
                r = store_prepare(c->store, "SELECT worker_id FROM workers WHERE last_seen < ? ORDER BY worker_id",
                                  &st);
                if (r < 0)
                        return r;
                if (store_bind_int64(st, 1, (int64_t) cutoff) < 0)
                        return -ENOMEM;
                r = store_collect_strings(c->store, st, &ids);
                if (r < 0)
                        return r;
        }
        STRV_FOREACH (id, ids) {
                OpError err = {};
                r = worker_remove(c, &retention_origin, *id, &err);
                if (r == -EBUSY || r == -ENOENT) {
                        log_debug("Retention keeps worker %s for now: %s", *id, err.message);
                        continue;
                }
                if (r < 0)
                        return r;
                (*deleted)++;
        }
        return 0;
}

/* The moment before which rows older than `days` go; 0: keep everything. */
static usec_t retention_cutoff(Control *c, int64_t days) {
        usec_t now = control_now(c);
        /* Checked before multiplying: a "keep forever" number of days must not wrap around. */
        if (days <= 0 || (uint64_t) days > now / USEC_PER_DAY)
                return 0;
        return now - (usec_t) days * USEC_PER_DAY;
}

static int record(Control *c, const RetentionCounts *n) {
        _cleanup_tx_ Control *tx = NULL;
        _cleanup_json_ json_object *d = json_object_new_object();
        char msg[256];
        int r;

        if (!d)
                return -ENOMEM;
        json_add_int64(d, "jobs_deleted", (int64_t) n->jobs);
        json_add_int64(d, "events_deleted", (int64_t) n->events);
        json_add_int64(d, "workers_removed", (int64_t) n->workers);
        json_add_int64(d, "job_retention_days", c->settings.job_retention_days);
        json_add_int64(d, "event_retention_days", c->settings.event_retention_days);
        json_add_int64(d, "worker_retention_days", c->settings.worker_retention_days);
        snprintf(msg, sizeof(msg), "Retention sweep deleted %llu jobs and %llu audit events, removed %llu workers",
                 (unsigned long long) n->jobs, (unsigned long long) n->events, (unsigned long long) n->workers);
        r = control_begin(c, &tx);
        if (r < 0)
                return r;
        r = audit_record(c,
                         &(AuditRecord){.component = "retention",
                                        .level = LOG_INFO,
                                        .event = "retention.sweep",
                                        .message = msg,
                                        .origin = &retention_origin,
                                        .details = d},
                         NULL);
        if (r < 0)
                return r;
        return control_commit(&tx);
}

int retention_sweep(Control *c, RetentionCounts *ret) {
        usec_t jobs_before = retention_cutoff(c, c->settings.job_retention_days);
        usec_t events_before = retention_cutoff(c, c->settings.event_retention_days);
        usec_t workers_before = retention_cutoff(c, c->settings.worker_retention_days);
        RetentionCounts n = {};
        int r, k;

        r = jobs_before > 0 ? delete_jobs(c, jobs_before, &n.jobs) : 0;
        if (r < 0)
                log_error_errno(r, "Retention sweep of jobs failed: %m");
        if (r >= 0 && events_before > 0 && (r = delete_events(c, events_before, &n.events)) < 0)
                log_error_errno(r, "Retention sweep of audit events failed: %m");
        if (r >= 0 && workers_before > 0 && (r = delete_workers(c, workers_before, &n.workers)) < 0)
                log_error_errno(r, "Retention sweep of workers failed: %m");
        /* What went before a failure is recorded all the same: each batch has committed. */
        k = record(c, &n);
        if (k < 0)
                log_error_errno(k, "Failed to record the retention sweep: %m");
        if (ret)
                *ret = n;
        return r < 0 ? r : k;
}
