/* schedule.c: picks the job a worker gets (see schedule.h for the rules). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "jobs-internal.h"
#include "schedule.h"
#include "store.h"
#include "strv.h"

/* Whether more than preempt_backlog claimable jobs are at or above the priority floor. The
 * subquery stops counting as soon as the answer is known. */
static int gate_closed(Control *c, usec_t now, bool *ret) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        const ControlSettings *s = &c->settings;
        int r;

        *ret = false;
        if (s->preempt_backlog <= 0)
                return 0;
        r = store_prepare(c->store,
                          "SELECT count(*) FROM (SELECT 1 FROM jobs INDEXED BY jobs_claimable WHERE status = 'PENDING' "
                          "AND priority >= ? "
                          "AND scheduled_at <= ? LIMIT ?)",
                          &st);
        if (r < 0)
                return r;
        if (store_bind_int64(st, 1, s->preempt_priority_floor) < 0 || store_bind_int64(st, 2, (int64_t) now) < 0 ||
            store_bind_int64(st, 3, s->preempt_backlog + 1) < 0)
                return -ENOMEM;
        r = store_step(c->store, st);
        if (r < 0)
                return r;
        *ret = sqlite3_column_int64(st, 0) > s->preempt_backlog;
        return 0;
}

/* Whether the worker may take one more retry job. */
static int retry_allowed(Control *c, const char *worker_id, bool *ret) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int64_t max = c->settings.max_retry_jobs_per_worker;
        int r;

        *ret = true;
        if (max <= 0)
                return 0;
        r = store_prepare(c->store,
                          "SELECT count(*) FROM jobs WHERE worker_id = ? AND status IN ('ASSIGNED', 'RUNNING') "
                          "AND attempt_count > 1",
                          &st);
        if (r < 0)
                return r;
        if (store_bind_text(st, 1, worker_id) < 0)
                return -ENOMEM;
        r = store_step(c->store, st);
        if (r < 0)
                return r;
        *ret = sqlite3_column_int64(st, 0) < max;
        return 0;
}

static bool capabilities_match(char *const *caps, bool needs_gpu, const char *requirements_json) {
        _cleanup_strv_free_ char **reqs = NULL;

        if (needs_gpu && !strv_contains((char **) caps, "gpu"))
                return false;
        if (strv_from_json_text(requirements_json, &reqs) < 0)
                return false;
        STRV_FOREACH (req, reqs)
                if (!strv_contains((char **) caps, *req))
                        return false;
        return true;
}

static int candidates(Control *c, usec_t now, int64_t floor, sqlite3_stmt **ret) {
        usec_t window = c->settings.aging_window;
        int r;

        /* INDEXED BY: the planner, without statistics, prefers the (status, created_at) index and
         * sorts; the partial index holds only PENDING rows, already in claim order. Without aging
         * the scan stops at the first fit. With aging, SQLite sorts the PENDING rows (still never
         * touching terminal ones). */
        if (window == 0)
                r = store_prepare(
                        c->store,
                        "SELECT job_id, needs_gpu, requirements, attempt_count FROM jobs INDEXED BY jobs_claimable "
                        "WHERE status = 'PENDING' AND priority >= ?2 AND scheduled_at <= ?1 "
                        "ORDER BY priority DESC, created_at, job_id",
                        ret);
        else
                r = store_prepare(
                        c->store,
                        "SELECT job_id, needs_gpu, requirements, attempt_count FROM jobs INDEXED BY jobs_claimable "
                        "WHERE status = 'PENDING' AND priority >= ?2 AND scheduled_at <= ?1 "
                        "ORDER BY priority + MAX(0, (?1 - created_at) / ?3) DESC, created_at, job_id",
                        ret);
        if (r < 0)
                return r;
        if (store_bind_int64(*ret, 1, (int64_t) now) < 0 || store_bind_int64(*ret, 2, floor) < 0 ||
            (window && store_bind_int64(*ret, 3, (int64_t) window) < 0))
                return -ENOMEM;
        return 0;
}

int schedule_pick(Control *c, const char *worker_id, char *const *capabilities, usec_t now, char **ret_job_id) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        bool gated, retries_ok;
        int r;

        *ret_job_id = NULL;
        r = gate_closed(c, now, &gated);
        if (r < 0)
                return r;
        r = retry_allowed(c, worker_id, &retries_ok);
        if (r < 0)
                return r;
        r = candidates(c, now, gated ? c->settings.preempt_priority_floor : INT64_MIN, &st);
        if (r < 0)
                return r;
        while ((r = store_step(c->store, st)) > 0) {
                if (!retries_ok && sqlite3_column_int64(st, 3) > 0)
                        continue;
                if (!capabilities_match(capabilities, sqlite3_column_int(st, 1) != 0,
                                        (const char *) sqlite3_column_text(st, 2)))
                        continue;
                char *id = strdup((const char *) sqlite3_column_text(st, 0));
                if (!id)
                        return -ENOMEM;
                *ret_job_id = id;
                return 1;
        }
        return r;
}
