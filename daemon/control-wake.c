/* control-wake.c: sends wake datagrams to idle workers when a job becomes claimable (see
 * control-wake.h). Reads the store, never writes it: it runs as a listener after commit and from
 * its own timer. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "control-wake.h"
#include "jobs-internal.h"
#include "log.h"
#include "store.h"
#include "strv.h"
#include "wake-rate.h"
#include "wake-send.h"

struct ControlWake {
        Control *control;
        sd_event_source *timer; /* the earliest scheduled_at of a PENDING job */
        usec_t scheduled_done;  /* realtime: scheduled jobs due up to here were announced */
        WakeRate *rate;         /* the last datagram per worker, for --wake-interval */
        WakeRate *address_rate; /* datagrams per destination address, WAKE_MAX_PER_ADDRESS an interval */
        int wakeable;           /* workers with a wake port: -1 unknown, re-counted on registrations and removals */
        uint64_t n_sent_total, n_failed, n_held;
        RateLimit held_log;
};

ControlWake *control_wake_free(ControlWake *w) {
        if (!w)
                return NULL;
        /* The listener stays registered (listeners are never removed): make it a no-op. */
        for (size_t i = 0; w->control && i < w->control->n_listeners; i++)
                if (w->control->listeners[i].userdata == w)
                        w->control->listeners[i].userdata = NULL;
        sd_event_source_disable_unref(w->timer);
        wake_rate_free(w->rate);
        wake_rate_free(w->address_rate);
        free(w);
        return NULL;
}

void control_wake_counters(const ControlWake *w, uint64_t *ret_sent, uint64_t *ret_failed, uint64_t *ret_held) {
        *ret_sent = w ? w->n_sent_total : 0;
        *ret_failed = w ? w->n_failed : 0;
        if (ret_held)
                *ret_held = w ? w->n_held : 0;
}

static bool can_run(char *const *caps, bool needs_gpu, char *const *requirements) {
        if (needs_gpu && !strv_contains(caps, "gpu"))
                return false;
        STRV_FOREACH (req, (char **) requirements)
                if (!strv_contains(caps, *req))
                        return false;
        return true;
}

static int count_wakeable(Control *c) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r = store_prepare(c->store, "SELECT count(*) FROM workers WHERE wake_port > 0", &st);
        if (r < 0)
                return r;
        r = store_step(c->store, st);
        if (r < 0)
                return r;
        return r > 0 ? sqlite3_column_int(st, 0) : 0;
}

static void wake_one(ControlWake *w, const char *worker_id, const char *address, uint16_t port) {
        Control *c = w->control;
        usec_t now = now_monotonic_usec();
        unsigned unlogged;
        int r;

        if (!wake_rate_allow(w->rate, worker_id, now, c->settings.wake_interval))
                return;
        /* Registrations choose the address: many ids registered with one (the worker token is
         * enough) must not turn one submission into a flood aimed at it. */
        if (!wake_rate_allow_n(w->address_rate, strempty(address), now, c->settings.wake_interval,
                               WAKE_MAX_PER_ADDRESS)) {
                w->n_held++;
                if (ratelimit_allow(&w->held_log, USEC_PER_MINUTE, &unlogged))
                        log_notice("More than %d workers to wake at %s within wake-interval: the others find the "
                                   "job at their next poll (%u more not said).",
                                   WAKE_MAX_PER_ADDRESS, strna(address), unlogged);
                return;
        }
        r = wake_send(address, port, worker_id, c->worker_token);
        if (r < 0) {
                w->n_failed++;
                log_debug_errno(r, "Failed to wake worker %s at %s port %u: %m", worker_id, strna(address),
                                (unsigned) port);
                return;
        }
        w->n_sent_total++;
        log_debug("Woke worker %s at %s port %u.", worker_id, address, (unsigned) port);
}

/* Wakes every idle, non-draining worker with a wake port that could run a job needing these. */
static int wake_matching(ControlWake *w, bool needs_gpu, char *const *requirements) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        Control *c = w->control;
        int r;

        if (w->wakeable < 0)
                w->wakeable = count_wakeable(c);
        if (w->wakeable <= 0 || isempty(c->worker_token))
                return 0;
        r = store_prepare(c->store,
                          "SELECT w.worker_id, w.capabilities, w.wake_address, w.wake_port FROM workers w "
                          "WHERE w.wake_port > 0 AND w.draining = 0 AND NOT EXISTS (SELECT 1 FROM jobs j INDEXED BY jobs_held "
                          "WHERE j.worker_id = w.worker_id AND (j.status = 'ASSIGNED' OR j.status = 'RUNNING'))",
                          &st);
        if (r < 0)
                return r;
        while ((r = store_step(c->store, st)) > 0) {
                _cleanup_strv_free_ char **caps = NULL;
                if (strv_from_json_text((const char *) sqlite3_column_text(st, 1), &caps) < 0)
                        return -ENOMEM;
                if (!can_run(caps, needs_gpu, requirements))
                        continue;
                wake_one(w, (const char *) sqlite3_column_text(st, 0), (const char *) sqlite3_column_text(st, 2),
                         (uint16_t) CLAMP(sqlite3_column_int64(st, 3), 0, 65535));
        }
        return r;
}

/* Wakes the workers for the job in the current row of st: (needs_gpu, requirements JSON). */
static int wake_for_row(ControlWake *w, sqlite3_stmt *st) {
        _cleanup_strv_free_ char **reqs = NULL;
        if (strv_from_json_text((const char *) sqlite3_column_text(st, 1), &reqs) < 0)
                return -ENOMEM;
        return wake_matching(w, sqlite3_column_int(st, 0) != 0, reqs);
}

/* ---- jobs held back by scheduled_at ---- */

static void timer_arm(ControlWake *w, usec_t when) {
        Control *c = w->control;
        usec_t now = control_now(c), mono = now_monotonic_usec(), current;

        if (!w->timer || when == USEC_INFINITY)
                return;
        mono += when > now ? when - now : 0;
        if (sd_event_source_get_enabled(w->timer, NULL) > 0 && sd_event_source_get_time(w->timer, &current) >= 0 &&
            current <= mono)
                return;
        if (sd_event_source_set_time(w->timer, mono) < 0 || sd_event_source_set_enabled(w->timer, SD_EVENT_ONESHOT) < 0)
                log_warning("Failed to arm the wake-up timer of scheduled jobs.");
}

/* The earliest scheduled_at after `after` of a PENDING job, from the partial index (schema v5):
 * INDEXED BY, since without statistics the planner prefers the status index and would walk every
 * PENDING job (seconds at a million). */
static int next_scheduled(Control *c, usec_t after, usec_t *ret) {
        int r = store_query_usec(c->store,
                                 "SELECT min(scheduled_at) FROM jobs INDEXED BY jobs_scheduled "
                                 "WHERE status = 'PENDING' AND scheduled_at > 0 AND scheduled_at > ?",
                                 (int64_t) after, ret);
        if (r == 0)
                *ret = USEC_INFINITY;
        return r < 0 ? r : 0;
}

/* One pass over the idle workers per kind of job that fell due since the last tick (a nightly
 * batch of thousands is a handful of kinds), so that every kind is announced, however many. */
static int announce_due(ControlWake *w, usec_t now) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        Control *c = w->control;
        int r;

        r = store_prepare(c->store,
                          "SELECT DISTINCT needs_gpu, requirements FROM jobs INDEXED BY jobs_scheduled "
                          "WHERE status = 'PENDING' AND scheduled_at > 0 AND scheduled_at > ?1 AND scheduled_at <= ?2",
                          &st);
        if (r < 0)
                return r;
        if (store_bind_int64(st, 1, (int64_t) w->scheduled_done) < 0 || store_bind_int64(st, 2, (int64_t) now) < 0)
                return -ENOMEM;
        while ((r = store_step(c->store, st)) > 0) {
                r = wake_for_row(w, st);
                if (r < 0)
                        return r;
        }
        return r;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        ControlWake *w = userdata;
        usec_t now = control_now(w->control), next = USEC_INFINITY;
        int r;

        r = announce_due(w, now);
        if (r >= 0)
                r = next_scheduled(w->control, now, &next);
        if (r < 0)
                log_debug_errno(r, "Wake-ups for scheduled jobs failed: %m");
        w->scheduled_done = now;
        timer_arm(w, next);
        return 0;
}

/* After a step of the clock, scheduled_at (an operator's wall-clock instant) is due at another
 * moment of the loop's monotonic timer: the timer is armed again now. Forward, the jobs the step
 * made due are announced at once; backward, those announced are announced again when due anew. */
static void clock_stepped(ControlWake *w) {
        usec_t next = USEC_INFINITY, now = control_now(w->control);

        w->scheduled_done = MIN(w->scheduled_done, now);
        if (next_scheduled(w->control, w->scheduled_done, &next) < 0)
                return;
        if (w->timer)
                (void) sd_event_source_set_enabled(w->timer, SD_EVENT_OFF); /* timer_arm() only pulls in */
        timer_arm(w, next);
}

/* ---- the listener ---- */

static int on_claimable(ControlWake *w, const char *job_id) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        Control *c = w->control;
        int r;

        r = store_prepare(c->store, "SELECT needs_gpu, requirements, scheduled_at, status FROM jobs WHERE job_id = ?",
                          &st);
        if (r < 0)
                return r;
        if (store_bind_text(st, 1, job_id) < 0)
                return -ENOMEM;
        r = store_step(c->store, st);
        if (r <= 0 || !streq_ptr((const char *) sqlite3_column_text(st, 3), "PENDING"))
                return r; /* gone, or already claimed */
        usec_t at = (usec_t) sqlite3_column_int64(st, 2);
        if (at > control_now(c)) {
                timer_arm(w, at);
                return 0;
        }
        return wake_for_row(w, st);
}

static void on_event(void *userdata, const AuditEvent *e) {
        ControlWake *w = userdata;
        int r = 0;

        if (!w)
                return;
        if (streq_ptr(e->event, "worker.registered") || streq_ptr(e->event, "worker.restarted") ||
            streq_ptr(e->event, "worker.removed"))
                w->wakeable = -1; /* a wake port may have come or gone: count again when needed */
        else if ((streq_ptr(e->event, "job.submitted") || streq_ptr(e->event, "job.requeued")) && e->job_id)
                r = on_claimable(w, e->job_id);
        else if (streq_ptr(e->event, "control.clock_stepped"))
                clock_stepped(w);
        if (r < 0)
                log_debug_errno(r, "Wake-ups for event %s failed: %m", e->event);
}

int control_wake_start(Control *c) {
        _cleanup_(control_wake_freep) ControlWake *w = NULL;
        usec_t next = USEC_INFINITY;
        int r;

        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->control = c;
        w->rate = wake_rate_new();
        w->address_rate = wake_rate_new();
        if (!w->rate || !w->address_rate)
                return -ENOMEM;
        w->wakeable = -1;
        w->scheduled_done = control_now(c);
        r = sd_event_add_time(c->event, &w->timer, CLOCK_MONOTONIC, USEC_INFINITY, 10 * USEC_PER_MSEC, on_timer, w);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(w->timer, SD_EVENT_OFF);
        (void) sd_event_source_set_description(w->timer, "wake-scheduled");
        r = control_add_listener(c, on_event, w);
        if (r < 0)
                return r;
        if (next_scheduled(c, w->scheduled_done, &next) >= 0)
                timer_arm(w, next);
        c->wake = TAKE_PTR(w);
        return 0;
}
