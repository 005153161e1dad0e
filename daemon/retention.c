/* retention.c: the retention sweep. Rows go in batches, each its own transaction, so that a
 * large backlog never holds the loop (and the write lock) for long. */
#include <errno.h>
#include <stdio.h>

#include "audit.h"
#include "json-util.h"
#include "log.h"
#include "retention.h"
#include "store.h"

#define RETENTION_BATCH 5000

static const Origin retention_origin = {.actor = "retention"};

static int delete_batch(Control *c, const char *sql, usec_t cutoff, uint64_t *deleted) {
        _cleanup_tx_ Control *tx = NULL;
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r, n;

        r = control_begin(c, &tx);
        if (r < 0)
                return r;
        r = store_prepare(c->store, sql, &st);
        if (r < 0)
                return r;
        if (store_bind_int64(st, 1, (int64_t) cutoff) < 0 || store_bind_int64(st, 2, RETENTION_BATCH) < 0)
                return -ENOMEM;
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

static int delete_all(Control *c, const char *sql, int64_t days, uint64_t *deleted) {
        usec_t now = control_now(c), span = (usec_t) days * USEC_PER_DAY;
        int r;

        if (days <= 0 || span > now)
                return 0;
        do
                r = delete_batch(c, sql, now - span, deleted);
        while (r == RETENTION_BATCH);
        return r < 0 ? r : 0;
}

static int record(Control *c, uint64_t jobs, uint64_t events) {
        _cleanup_tx_ Control *tx = NULL;
        _cleanup_json_ json_object *d = json_object_new_object();
        char msg[256];
        int r;

        if (!d)
                return -ENOMEM;
        json_add_int64(d, "jobs_deleted", (int64_t) jobs);
        json_add_int64(d, "events_deleted", (int64_t) events);
        json_add_int64(d, "job_retention_days", c->settings.job_retention_days);
        json_add_int64(d, "event_retention_days", c->settings.event_retention_days);
        snprintf(msg, sizeof(msg), "Retention sweep deleted %llu jobs and %llu audit events", (unsigned long long) jobs,
                 (unsigned long long) events);
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

int retention_sweep(Control *c, uint64_t *ret_jobs, uint64_t *ret_events) {
        uint64_t jobs = 0, events = 0;
        int r;

        /* Terminal jobs only: their artifact records live in the same row and go with it. */
        r = delete_all(c,
                       "DELETE FROM jobs WHERE job_id IN (SELECT job_id FROM jobs WHERE status IN "
                       "('COMPLETED', 'FAILED', 'ABORTED') AND updated_at < ?1 LIMIT ?2)",
                       c->settings.job_retention_days, &jobs);
        if (r < 0)
                return log_error_errno(r, "Retention sweep of jobs failed: %m");
        r = delete_all(c, "DELETE FROM audit_events WHERE id IN (SELECT id FROM audit_events WHERE ts < ?1 LIMIT ?2)",
                       c->settings.event_retention_days, &events);
        if (r < 0)
                return log_error_errno(r, "Retention sweep of audit events failed: %m");
        r = record(c, jobs, events);
        if (r < 0)
                return log_error_errno(r, "Failed to record the retention sweep: %m");
        if (ret_jobs)
                *ret_jobs = jobs;
        if (ret_events)
                *ret_events = events;
        return 0;
}
