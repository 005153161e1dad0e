/* retention.c: the retention sweep, one batch per step, each its own transaction (retention.h):
 * a large backlog holds neither the loop nor the write lock for long. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "audit.h"
#include "json-util.h"
#include "log.h"
#include "retention.h"
#include "store.h"
#include "strv.h"
#include "workers.h"

typedef enum RetentionPhase {
        PHASE_JOBS,
        PHASE_EVENTS,
        PHASE_WORKERS,
        _PHASE_MAX,
} RetentionPhase;

struct RetentionSweep {
        Control *c;
        sd_event_source *step; /* runs the next batch; floating: the loop owns it, and it this struct */
        bool running;
        usec_t before[_PHASE_MAX]; /* each phase's cutoff, fixed when the sweep starts; 0: off */
        RetentionPhase phase;
        RetentionCounts n;
        char *worker_cursor; /* the last worker id looked at; NULL: none yet */
};

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
static int delete_old_jobs(Control *c, usec_t cutoff, char ***ret_ids) {
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

/* Returns how many went: fewer than RETENTION_BATCH once no old one is left. */
static int delete_jobs_batch(RetentionSweep *s, usec_t cutoff, uint64_t *deleted) {
        Control *c = s->c;
        _cleanup_strv_free_ char **ids = NULL;
        size_t n;
        int r;

        r = delete_old_jobs(c, cutoff, &ids);
        if (r < 0)
                return r;
        n = strv_length(ids);
        *deleted += n;
        if (n > 0 && c->on_jobs_deleted)
                c->on_jobs_deleted(c->on_jobs_deleted_userdata, ids);
        return (int) n;
}

/* Returns how many went, as delete_jobs_batch() does. A job still live (scheduled far ahead, or
 * running for long) keeps all its history however old: its events go once it has ended. Each
 * batch walks past such kept events again (in audit_ts order), one look-up by key in jobs each. */
static int delete_events_batch(RetentionSweep *s, usec_t cutoff, uint64_t *deleted) {
        Control *c = s->c;
        _cleanup_tx_ Control *tx = NULL;
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r, n;

        r = control_begin(c, &tx);
        if (r < 0)
                return r;
        r = prepare_batch(c,
                          "DELETE FROM audit_events WHERE id IN (SELECT id FROM audit_events e WHERE ts < ?1 "
                          "AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.job_id = e.job_id "
                          "AND j.status NOT IN ('COMPLETED', 'FAILED', 'ABORTED')) LIMIT ?2)",
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

/* Workers last seen before cutoff, at most RETENTION_WORKER_BATCH past the last one looked at
 * (in id order), each removed in its own transaction (an fsync) by worker_remove(), audited as
 * worker.removed. One that is not OFFLINE (the control plane started less than the heartbeat
 * timeout ago) or still holds a job is left for a later sweep. Returns how many were looked at:
 * fewer than RETENTION_WORKER_BATCH once none is left. */
static int delete_workers(RetentionSweep *s, usec_t cutoff, uint64_t *deleted) {
        Control *c = s->c;
        _cleanup_strv_free_ char **ids = NULL;
        int r;

        {
                _cleanup_stmt_ sqlite3_stmt *st = NULL;
                r = store_prepare(c->store,
                                  "SELECT worker_id FROM workers WHERE last_seen < ?1 AND worker_id > ?2 "
                                  "ORDER BY worker_id LIMIT ?3",
                                  &st);
                if (r < 0)
                        return r;
                if (store_bind_int64(st, 1, (int64_t) cutoff) < 0 ||
                    store_bind_text(st, 2, strempty(s->worker_cursor)) < 0 ||
                    store_bind_int64(st, 3, RETENTION_WORKER_BATCH) < 0)
                        return -ENOMEM;
                r = store_collect_strings(c->store, st, &ids);
                if (r < 0)
                        return r;
        }
        STRV_FOREACH (id, ids) {
                OpError err = {};
                r = worker_remove(c, &retention_origin, *id, &err);
                if (r == -EBUSY || r == -ENOENT)
                        log_debug("Retention keeps worker %s for now: %s", *id, err.message);
                else if (r < 0)
                        return r;
                else
                        (*deleted)++;
        }
        if (ids && ids[0]) {
                char *last = strdup(ids[strv_length(ids) - 1]);
                if (!last)
                        return -ENOMEM;
                free_and_replace_str(&s->worker_cursor, last);
        }
        return (int) strv_length(ids);
}

/* The moment before which rows older than `days` go; 0: keep everything. */
static usec_t retention_cutoff(Control *c, int64_t days) {
        usec_t now = control_now(c);
        /* Checked before multiplying: a "keep forever" number of days must not wrap around. */
        if (days <= 0 || (uint64_t) days > now / USEC_PER_DAY)
                return 0;
        return now - (usec_t) days * USEC_PER_DAY;
}

static int record(Control *c, const RetentionCounts *n, bool interrupted) {
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
        if (interrupted)
                json_add_bool(d, "interrupted", true);
        snprintf(msg, sizeof(msg), "Retention sweep %s %llu jobs and %llu audit events, removed %llu workers",
                 interrupted ? "stopped before its end; it deleted" : "deleted", (unsigned long long) n->jobs,
                 (unsigned long long) n->events, (unsigned long long) n->workers);
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

static const struct {
        const char *what;
        int (*batch)(RetentionSweep *s, usec_t cutoff, uint64_t *deleted);
        int size; /* a batch that returns fewer ends the phase */
} phases[_PHASE_MAX] = {
        [PHASE_JOBS] = {"jobs", delete_jobs_batch, RETENTION_BATCH},
        [PHASE_EVENTS] = {"audit events", delete_events_batch, RETENTION_BATCH},
        [PHASE_WORKERS] = {"workers", delete_workers, RETENTION_WORKER_BATCH},
};

static uint64_t *phase_count(RetentionCounts *n, RetentionPhase p) {
        return p == PHASE_JOBS ? &n->jobs : p == PHASE_EVENTS ? &n->events : &n->workers;
}

/* Moves on to the next phase that is on (its cutoff not 0), or to _PHASE_MAX. */
static void sweep_skip_off(RetentionSweep *s) {
        while (s->phase < _PHASE_MAX && s->before[s->phase] == 0)
                s->phase++;
}

static void sweep_start(RetentionSweep *s, Control *c) {
        s->c = c;
        s->running = true;
        s->before[PHASE_JOBS] = retention_cutoff(c, c->settings.job_retention_days);
        s->before[PHASE_EVENTS] = retention_cutoff(c, c->settings.event_retention_days);
        s->before[PHASE_WORKERS] = retention_cutoff(c, c->settings.worker_retention_days);
        s->phase = PHASE_JOBS;
        s->n = (RetentionCounts){};
        free_and_replace_str(&s->worker_cursor, NULL);
        sweep_skip_off(s);
}

/* One batch. Returns 1 while there is more to do, 0 once the sweep is done and recorded, < 0 if it
 * failed: what went before the failure is recorded all the same (each batch has committed). */
static int sweep_step(RetentionSweep *s) {
        int r = 0, k;

        if (s->phase < _PHASE_MAX) {
                r = phases[s->phase].batch(s, s->before[s->phase], phase_count(&s->n, s->phase));
                if (r < 0)
                        log_error_errno(r, "Retention sweep of %s failed: %m", phases[s->phase].what);
                else if (r < phases[s->phase].size) {
                        s->phase++;
                        sweep_skip_off(s);
                }
                if (r >= 0 && s->phase < _PHASE_MAX)
                        return 1;
        }
        s->running = false;
        free_and_replace_str(&s->worker_cursor, NULL);
        k = record(s->c, &s->n, false);
        if (k < 0)
                log_error_errno(k, "Failed to record the retention sweep: %m");
        return r < 0 ? r : k;
}

static int sweep_arm(RetentionSweep *s) {
        int r;

        /* Due now, to the microsecond (accuracy 1): the loop dispatches one source per iteration, so
         * what is pending by then (HTTP requests, heartbeats, the watchdog) goes between two
         * batches, and nothing else delays the next one. */
        r = sd_event_source_set_time_relative(s->step, 0);
        if (r >= 0)
                r = sd_event_source_set_enabled(s->step, SD_EVENT_ONESHOT);
        if (r < 0) {
                s->running = false;
                return log_error_errno(r, "Failed to schedule the retention sweep's next batch: %m");
        }
        return 0;
}

static int on_step(sd_event_source *es, uint64_t usec, void *userdata) {
        RetentionSweep *s = userdata;

        if (sweep_step(s) > 0)
                (void) sweep_arm(s);
        return 0;
}

/* When the loop is freed (at exit; a sweep under way was recorded by retention_stop()). */
static void sweep_destroy(void *userdata) {
        RetentionSweep *s = userdata;

        s->c->retention_sweep = NULL;
        free(s->worker_cursor);
        free(s);
}

/* c->retention_sweep, whose step source the loop owns (it outlives no loop, and needs freeing by
 * no one else). */
static int sweep_new(Control *c) {
        _cleanup_free_ RetentionSweep *s = calloc(1, sizeof(*s));
        _cleanup_(sd_event_source_unrefp) sd_event_source *step = NULL;
        int r;

        if (!s)
                return -ENOMEM;
        r = sd_event_add_time(c->event, &step, CLOCK_MONOTONIC, 0, 1, on_step, s);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(step, "retention-batch");
        r = sd_event_source_set_enabled(step, SD_EVENT_OFF);
        if (r < 0)
                return r;
        r = sd_event_source_set_floating(step, true);
        if (r < 0)
                return r;
        s->c = c;
        s->step = step;
        (void) sd_event_source_set_destroy_callback(step, sweep_destroy);
        c->retention_sweep = TAKE_PTR(s);
        return 0;
}

/* Without a loop: every batch at once. */
static int sweep_whole(Control *c, RetentionCounts *ret) {
        RetentionSweep s = {};
        int r;

        sweep_start(&s, c);
        do
                r = sweep_step(&s);
        while (r > 0);
        if (ret)
                *ret = s.n;
        return r;
}

int retention_sweep(Control *c, RetentionCounts *ret) {
        int r;

        if (!c->event)
                return sweep_whole(c, ret);
        if (ret)
                *ret = (RetentionCounts){};
        if (!c->retention_sweep) {
                r = sweep_new(c);
                if (r < 0)
                        return log_error_errno(r, "Failed to set up the retention sweep: %m");
        }
        if (c->retention_sweep->running) {
                log_debug("A retention sweep is still under way; no new one starts.");
                return 0;
        }
        sweep_start(c->retention_sweep, c);
        return sweep_arm(c->retention_sweep);
}

/* The batches done have committed: what they deleted is said, not left to the next start's
 * sweep, which counts only what it deletes itself. */
void retention_stop(Control *c) {
        RetentionSweep *s = c->retention_sweep;
        int r;

        if (!s || !s->running)
                return;
        s->running = false;
        (void) sd_event_source_set_enabled(s->step, SD_EVENT_OFF);
        log_info("Stopping with the retention sweep under way; the next start sweeps again.");
        r = record(c, &s->n, true);
        if (r < 0)
                log_error_errno(r, "Failed to record the retention sweep: %m");
}
