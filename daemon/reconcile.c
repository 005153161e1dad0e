/* reconcile.c: the reconciler's sweep, its start-up pass and its timers (see reconcile.h). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>

#include "audit.h"
#include "control-clock.h"
#include "jobs-internal.h"
#include "json-util.h"
#include "log.h"
#include "reconcile.h"
#include "retention.h"
#include "schedule.h"
#include "store.h"
#include "strv.h"
#include "workers.h"

static const Origin reconciler = {.actor = "reconciler"};

usec_t reconcile_backoff(const ControlSettings *s, int64_t attempt, double u) {
        usec_t b = s->retry_backoff, cap = s->retry_backoff_max ? s->retry_backoff_max : USEC_INFINITY;

        for (int64_t i = 1; i < attempt && b < cap; i++)
                b = b > cap / 2 ? cap : b * 2;
        b = MIN(b, cap);
        double jitter = CLAMP(s->retry_jitter, 0.0, 1.0) * CLAMP(u, 0.0, 1.0);
        return b + (usec_t) ((double) b * jitter);
}

double reconcile_random_unit(void) {
        uint64_t x;
        if (getrandom(&x, sizeof(x), GRND_NONBLOCK) != sizeof(x))
                x = (uint64_t) random() << 32 ^ (uint64_t) random();
        return (double) (x >> 11) * 0x1.0p-53;
}

/* Ids of the jobs matching a query with one bound parameter (now). Collected first, so that
 * the transitions do not modify the table under a running SELECT. */
static int select_ids(Control *c, const char *sql, usec_t now, char ***ret) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r = store_prepare(c->store, sql, &st);
        if (r < 0)
                return r;
        if (store_bind_int64(st, 1, (int64_t) now) < 0)
                return -ENOMEM;
        return store_collect_strings(c->store, st, ret);
}

typedef int (*JobAction)(Control *c, const Job *j);

/* One job's transition, in a step of its own: a job whose transition fails is logged and left for
 * the next tick, and the others still move (one bad row must not hold up every recovery). 1: it
 * moved; 0: it was left; negative: the transaction is lost and the sweep with it. */
static int act_on(Control *c, const char *job_id, JobAction fn) {
        _cleanup_(job_freep) Job *j = NULL;
        size_t mark;
        int r, k;

        r = control_step_begin(c, &mark);
        if (r < 0)
                return r;
        r = jobs_get(c, job_id, &j);
        if (r >= 0)
                r = fn(c, j);
        k = control_step_end(c, mark, r >= 0);
        if (k < 0)
                return k;
        if (r < 0) {
                log_warning_errno(r, "Reconciler: job %s could not be moved, left for the next tick: %m", job_id);
                return 0;
        }
        return 1;
}

static int for_each(Control *c, const char *sql, usec_t now, JobAction fn, unsigned *changes) {
        _cleanup_strv_free_ char **ids = NULL;
        int r = select_ids(c, sql, now, &ids);
        if (r < 0)
                return r;
        STRV_FOREACH (id, ids) {
                r = act_on(c, *id, fn);
                if (r < 0)
                        return r;
                *changes += (unsigned) r;
        }
        return 0;
}

static int requeue_unacked(Control *c, const Job *j) {
        return jobs_requeue(c, &reconciler, j, "lease expired before the ack");
}

static int lose(Control *c, const Job *j) {
        return jobs_give_up(c, &reconciler, j,
                            j->assignment_expires_at <= control_now(c) ? "lease expired" : "worker unknown", true);
}

static int after_loss(Control *c, const Job *j) {
        return jobs_retry_or_fail(c, &reconciler, j, j->last_error ? j->last_error : "lost", false, 0, NULL);
}

static int requeue_retry(Control *c, const Job *j) {
        return jobs_requeue(c, &reconciler, j, "retry backoff elapsed");
}

static int sweep_locked(Control *c, usec_t now, unsigned *changes) {
        int r = workers_sweep_states(c, now);
        if (r < 0)
                return r;
        r = for_each(c, "SELECT job_id FROM jobs WHERE status = 'ASSIGNED' AND assignment_expires_at <= ?", now,
                     requeue_unacked, changes);
        if (r < 0)
                return r;
        /* Never before its lease ends, whatever its worker's state: the worker gives a job up only
         * when its lease runs out (worker/lease.c). An OFFLINE worker can still be running it
         * then: its lease may come from a claim or an ack after its last heartbeat, or have been
         * granted before a reload lowered heartbeat-timeout, and a second worker would run it too. */
        r = for_each(c,
                     "SELECT j.job_id FROM jobs j LEFT JOIN workers w ON w.worker_id = j.worker_id "
                     "WHERE j.status = 'RUNNING' AND (j.assignment_expires_at <= ?1 OR w.worker_id IS NULL)",
                     now, lose, changes);
        if (r < 0)
                return r;
        /* A LOST job with attempts left is retried at once. One lost on its last attempt waits
         * lost_grace for its worker's completion (a partitioned worker that finished replays it, and
         * the latest assignment's completion is accepted from LOST) before it is FAILED for good:
         * nothing would be retried meanwhile, so this delays no recovery. ?1: it became LOST before. */
        usec_t lost_before = now > c->settings.lost_grace ? now - c->settings.lost_grace : 0;
        r = for_each(c,
                     "SELECT job_id FROM jobs WHERE status = 'LOST' AND "
                     "(attempt_count < max_attempts OR updated_at <= ?1)",
                     lost_before, after_loss, changes);
        if (r < 0)
                return r;
        r = for_each(c, "SELECT job_id FROM jobs WHERE status = 'RETRYING' AND retry_at <= ?", now, requeue_retry,
                     changes);
        if (r < 0)
                return r;
        return schedule_forget_empty_classes(c, NULL);
}

/* ---- steps of the realtime clock (control-clock.h) ---- */

/* The stored instants that end a duration, each moved by the step (?1) so that the duration stays
 * what it was: leases, backoffs, the grace of a job lost on its last attempt (from updated_at),
 * and heartbeat ages (from last_seen, which worker retention also counts from). */
static const struct {
        const char *what;
        const char *sql;
} step_shifts[] = {
        {"leases", "UPDATE jobs SET assignment_expires_at = MAX(0, assignment_expires_at + ?1) "
                   "WHERE status IN ('ASSIGNED', 'RUNNING')"},
        {"backoffs", "UPDATE jobs SET retry_at = MAX(0, retry_at + ?1) WHERE status = 'RETRYING'"},
        {"lost", "UPDATE jobs SET updated_at = MAX(0, updated_at + ?1) WHERE status = 'LOST'"},
        {"workers", "UPDATE workers SET last_seen = MAX(0, last_seen + ?1)"},
};

static int shift_deadlines(Control *c, int64_t step, json_object *details) {
        for (size_t i = 0; i < ELEMENTSOF(step_shifts); i++) {
                _cleanup_stmt_ sqlite3_stmt *st = NULL;
                int r = store_prepare(c->store, step_shifts[i].sql, &st);
                if (r < 0)
                        return r;
                if (store_bind_int64(st, 1, step) < 0)
                        return -ENOMEM;
                r = store_step(c->store, st);
                if (r < 0)
                        return r;
                json_add_int64(details, step_shifts[i].what, sqlite3_changes(c->store->db));
        }
        return 0;
}

/* |d|, INT64_MIN included. */
static usec_t usec_abs(int64_t d) {
        return d >= 0 ? (usec_t) d : (usec_t) - (d + 1) + 1;
}

static usec_t usec_add_signed(usec_t t, int64_t d) {
        usec_t m = usec_abs(d);
        if (d >= 0)
                return t > USEC_INFINITY - m ? USEC_INFINITY : t + m;
        return t > m ? t - m : 0;
}

static int audit_step(Control *c, int64_t step, bool while_stopped, json_object *details) {
        char msg[256], span[64];

        json_add_int64(details, "step_ms", step / (int64_t) USEC_PER_MSEC);
        if (while_stopped)
                json_add_bool(details, "while_stopped", true);
        format_timespan(span, sizeof(span), usec_abs(step));
        snprintf(msg, sizeof(msg),
                 "The realtime clock was stepped %s by %s%s: leases, backoffs and heartbeat ages moved with it",
                 step < 0 ? "back" : "forward", span, while_stopped ? " while the control plane was stopped" : "");
        return audit_record(c,
                            &(AuditRecord){.component = "reconciler",
                                           .level = LOG_WARNING,
                                           .event = "control.clock_stepped",
                                           .message = msg,
                                           .origin = &reconciler,
                                           .details = details},
                            NULL);
}

/* Re-anchors control_now() on realtime if it was stepped, and moves the stored deadlines with it,
 * in the sweep's transaction: the requests served until now made them on the old anchor. */
static int follow_clock(Control *c) {
        int64_t step = control_clock_follow(c);
        if (step == 0)
                return 0;
        _cleanup_json_ json_object *d = json_object_new_object();
        if (!d)
                return -ENOMEM;
        int r = shift_deadlines(c, step, d);
        if (r < 0)
                return r;
        c->started_at = usec_add_signed(c->started_at, step);
        return audit_step(c, step, false, d);
}

/* What follow_clock() changes in memory, put back when its transaction does not commit. */
typedef struct ClockState {
        usec_t realtime, elapsed, started_at;
} ClockState;

static ClockState clock_save(const Control *c) {
        return (ClockState){c->clock.realtime, c->clock.elapsed, c->started_at};
}

static void clock_restore(Control *c, const ClockState *s) {
        c->clock.realtime = s->realtime;
        c->clock.elapsed = s->elapsed;
        c->started_at = s->started_at;
}

int reconcile_sweep(Control *c, unsigned *ret_changes) {
        _cleanup_tx_ Control *tx = NULL;
        ClockState before = clock_save(c);
        unsigned changes = 0;
        int r;

        r = control_begin(c, &tx);
        if (r < 0)
                return r;
        r = follow_clock(c);
        if (r >= 0)
                r = sweep_locked(c, control_now(c), &changes);
        if (r < 0) {
                clock_restore(c, &before);
                return log_error_errno(r, "Reconcile sweep failed: %m");
        }
        r = control_commit(&tx);
        if (r < 0) {
                clock_restore(c, &before);
                return log_error_errno(r, "Failed to commit the reconcile sweep: %m");
        }
        if (ret_changes)
                *ret_changes = changes;
        return 0;
}

/* Lowers *best to what the query gives, if it gives anything. */
static int min_of(Control *c, const char *sql, int64_t param, usec_t *best) {
        usec_t v;
        int r = store_query_usec(c->store, sql, param, &v);
        if (r > 0)
                *best = MIN(*best, v);
        return r < 0 ? r : 0;
}

int reconcile_next_deadline(Control *c, usec_t *ret) {
        usec_t best = USEC_INFINITY;
        Worker **a = NULL;
        size_t n = 0;
        int r;

        r = min_of(c, "SELECT min(assignment_expires_at) FROM jobs WHERE status IN ('ASSIGNED', 'RUNNING')", 0, &best);
        if (r >= 0)
                r = min_of(c, "SELECT min(retry_at) FROM jobs WHERE status = 'RETRYING'", 0, &best);
        /* LOST jobs with attempts left are due at once; those on their last attempt when their
         * grace ends. A bound parameter, not formatted SQL: the statement cache is keyed by the
         * SQL literal. */
        if (r >= 0)
                r = min_of(c,
                           "SELECT min(CASE WHEN attempt_count < max_attempts THEN 0 ELSE updated_at + ?1 END) "
                           "FROM jobs WHERE status = 'LOST'",
                           (int64_t) c->settings.lost_grace, &best);
        if (r < 0)
                return r;
        r = workers_list(c, &a, &n);
        if (r < 0)
                return r;
        /* A worker's state changes one microsecond after its timeout has passed (age > timeout). */
        for (size_t i = 0; i < n; i++) {
                usec_t seen = MAX(a[i]->last_seen, c->started_at);
                if (a[i]->state == WORKER_ONLINE || a[i]->state == WORKER_DRAINING)
                        best = MIN(best, seen + c->settings.disconnect_timeout + 1);
                else if (a[i]->state == WORKER_DISCONNECTED)
                        best = MIN(best, seen + c->settings.heartbeat_timeout + 1);
        }
        worker_array_free(a, n);
        *ret = best;
        return 0;
}

/* ---- start-up ---- */

/* Every live lease runs at least one lease length from now: not from its old expiry, so that
 * restarts in quick succession (a crash loop) do not stack one extension on the other and put
 * off the recovery of a dead worker's jobs by a lease length each. */
static int extend_leases(Control *c, usec_t now, int *ret_n) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r = store_prepare(c->store,
                              "UPDATE jobs SET assignment_expires_at = MAX(assignment_expires_at, ?1 + ?2) "
                              "WHERE status IN ('ASSIGNED', 'RUNNING')",
                              &st);
        if (r < 0)
                return r;
        if (store_bind_int64(st, 1, (int64_t) now) < 0 ||
            store_bind_int64(st, 2, (int64_t) c->settings.lease_timeout) < 0)
                return -ENOMEM;
        r = store_step(c->store, st);
        if (r < 0)
                return r;
        *ret_n = sqlite3_changes(c->store->db);
        return 0;
}

/* The latest instant the store holds, on the clock the last run served on: its last audit event
 * (every transition has one; the last written, not the largest time, since the events before a
 * step keep the times of the clock they were written on), or a worker's last contact (heartbeats
 * have none; a step moves them). Nothing here walks the jobs. */
static int latest_stored_instant(Control *c, usec_t *ret) {
        *ret = 0;
        return store_query_usec(c->store,
                                "SELECT max(coalesce((SELECT ts FROM audit_events ORDER BY id DESC LIMIT 1), 0), "
                                "coalesce((SELECT max(last_seen) FROM workers), 0))",
                                0, ret);
}

/* A step back of the realtime clock while the control plane was stopped: the store holds
 * instants ahead of now. Live leases would run the step out (extend_leases() only lengthens them),
 * putting off the recovery of a dead worker's jobs by its size; so every stored deadline moves
 * back by it, as a step seen while running does. A step forward cannot be told from the time the
 * control plane was down, and delays nothing: leases are extended from now either way. */
static int follow_step_while_stopped(Control *c) {
        usec_t latest = 0, now = control_now(c);
        int r;

        r = latest_stored_instant(c, &latest);
        if (r < 0)
                return r;
        if (latest <= now || latest - now < CONTROL_CLOCK_STEP_MIN)
                return 0;
        _cleanup_json_ json_object *d = json_object_new_object();
        if (!d)
                return -ENOMEM;
        int64_t step = -(int64_t) (latest - now);
        r = shift_deadlines(c, step, d);
        if (r < 0)
                return r;
        return audit_step(c, step, true, d);
}

int reconcile_startup(Control *c) {
        _cleanup_tx_ Control *tx = NULL;
        _cleanup_json_ json_object *d = json_object_new_object();
        char msg[256];
        int n = 0, r;

        if (!d)
                return log_oom();
        control_clock_anchor(c);
        if (c->started_at == 0)
                c->started_at = control_now(c);
        r = control_begin(c, &tx);
        if (r < 0)
                return log_error_errno(r, "Failed to begin the start-up reconciliation: %m");
        r = follow_step_while_stopped(c);
        if (r < 0)
                return log_error_errno(r, "Failed to follow a step of the clock while stopped: %m");
        r = extend_leases(c, control_now(c), &n);
        if (r < 0)
                return log_error_errno(r, "Failed to extend leases at start-up: %m");
        json_add_int64(d, "leases", n);
        snprintf(msg, sizeof(msg), "Control plane started: %d live leases extended to one lease length from now", n);
        r = audit_record(c,
                         &(AuditRecord){.component = "reconciler",
                                        .level = LOG_NOTICE,
                                        .event = "control.leases_extended",
                                        .message = msg,
                                        .origin = &reconciler,
                                        .details = d},
                         NULL);
        if (r < 0)
                return r;
        r = control_commit(&tx);
        if (r < 0)
                return log_error_errno(r, "Failed to commit the start-up reconciliation: %m");
        return reconcile_sweep(c, NULL);
}

/* ---- timers ---- */

/* sd-event timers run on CLOCK_MONOTONIC: convert a realtime deadline. */
static usec_t to_monotonic(Control *c, usec_t realtime) {
        usec_t now_rt = control_now(c), now_mono = now_monotonic_usec();
        return realtime <= now_rt ? now_mono : now_mono + (realtime - now_rt);
}

static void arm(Control *c) {
        usec_t deadline = USEC_INFINITY, next;

        if (reconcile_next_deadline(c, &deadline) < 0)
                deadline = USEC_INFINITY;
        next = now_monotonic_usec() + c->settings.reconcile_interval;
        /* After a sweep no deadline is past unless its job could not be moved (or the sweep
         * failed): that is retried at the next tick, not in a loop. */
        if (deadline != USEC_INFINITY && deadline > control_now(c))
                next = MIN(next, to_monotonic(c, deadline));
        next = MAX(next, now_monotonic_usec() + 10 * USEC_PER_MSEC);
        if (sd_event_source_set_time(c->reconcile_timer, next) < 0 ||
            sd_event_source_set_enabled(c->reconcile_timer, SD_EVENT_ONESHOT) < 0)
                log_error("Failed to re-arm the reconcile timer.");
}

static int on_reconcile(sd_event_source *s, uint64_t usec, void *userdata) {
        Control *c = userdata;
        /* A failed sweep is logged and retried at the next tick: the loop keeps serving. */
        (void) reconcile_sweep(c, NULL);
        arm(c);
        return 0;
}

static int on_retention(sd_event_source *s, uint64_t usec, void *userdata) {
        Control *c = userdata;
        (void) retention_sweep(c, NULL);
        if (sd_event_source_set_time(s, now_monotonic_usec() + c->settings.retention_interval) < 0 ||
            sd_event_source_set_enabled(s, SD_EVENT_ONESHOT) < 0)
                log_error("Failed to re-arm the retention timer.");
        return 0;
}

void reconcile_note_deadline(Control *c, usec_t when) {
        uint64_t current;

        if (!c->reconcile_timer || when == 0 || when == USEC_INFINITY)
                return;
        usec_t mono = to_monotonic(c, when);
        if (sd_event_source_get_time(c->reconcile_timer, &current) >= 0 && current <= mono)
                return;
        if (sd_event_source_set_time(c->reconcile_timer, mono) < 0 ||
            sd_event_source_set_enabled(c->reconcile_timer, SD_EVENT_ONESHOT) < 0)
                log_error("Failed to pull in the reconcile timer.");
}

/* A step is followed at the next sweep; the kernel's notice brings that sweep in now. */
static void on_clock_set(Control *c) {
        reconcile_note_deadline(c, control_now(c));
}

int reconcile_timers_start(Control *c) {
        int r;

        r = control_clock_watch_start(c, on_clock_set);
        if (r < 0) /* steps are still followed, at the next tick */
                log_warning_errno(r, "Failed to watch the realtime clock for steps: %m");

        /* 1ms accuracy: deadlines (ack expiry, backoff end) are promises to the operator. */
        r = sd_event_add_time(c->event, &c->reconcile_timer, CLOCK_MONOTONIC,
                              now_monotonic_usec() + c->settings.reconcile_interval, USEC_PER_MSEC, on_reconcile, c);
        if (r < 0)
                return log_error_errno(r, "Failed to add the reconcile timer: %m");
        (void) sd_event_source_set_description(c->reconcile_timer, "reconcile");
        arm(c);
        if (c->settings.retention_interval > 0) {
                r = sd_event_add_time(c->event, &c->retention_timer, CLOCK_MONOTONIC,
                                      now_monotonic_usec() + c->settings.retention_interval, USEC_PER_SEC, on_retention,
                                      c);
                if (r < 0)
                        return log_error_errno(r, "Failed to add the retention timer: %m");
                (void) sd_event_source_set_description(c->retention_timer, "retention");
        }
        return 0;
}

void reconcile_timers_stop(Control *c) {
        control_clock_watch_stop(c);
        c->reconcile_timer = sd_event_source_disable_unref(c->reconcile_timer);
        c->retention_timer = sd_event_source_disable_unref(c->retention_timer);
}
