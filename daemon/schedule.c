/* schedule.c: picks the job a worker gets (see schedule.h for the rules). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "jobs-internal.h"
#include "schedule.h"
#include "store.h"
#include "strv.h"

/* When a job became claimable: the base of its FIFO place within one priority and of its aging.
 * A job scheduled for later has not been waiting before then. The claimable indexes (schema v10,
 * v11) are ordered by this very expression, so every ORDER BY here must spell it the same way. */
#define CLAIMABLE_AT "MAX(created_at, scheduled_at)"
#define CANDIDATE    "SELECT job_id, needs_gpu, requirements, attempt_count, " CLAIMABLE_AT " FROM jobs "

/* The claim's statements over one of two partial indexes in the same order: jobs_claimable holds
 * every PENDING job, jobs_claimable_cpu (schema v11) only those without needs_gpu. A worker
 * without the "gpu" capability reads the latter, so it never walks the GPU jobs it cannot take:
 * with thousands of them at the head of the queue, each of its polls read them all, row by row.
 * Both are walked in claim order, so what such a worker gets is unchanged. */
typedef struct ClaimQueries {
        const char *scan;          /* no aging, in claim order: ?1 now, ?2 priority floor */
        const char *next_priority; /* the highest priority below ?1, at least ?2 */
        const char *lane;          /* one priority ?1, claimable at ?2, in CLAIMABLE_AT order */
        const char *sorted;        /* by effective priority: ?1 now, ?2 floor, ?3 aging window */
} ClaimQueries;

#define CLAIM_QUERIES(index, pending)                                                                                  \
        {                                                                                                              \
                .scan = CANDIDATE "INDEXED BY " index " WHERE " pending " AND priority >= ?2 "                         \
                                  "AND scheduled_at <= ?1 ORDER BY priority DESC, " CLAIMABLE_AT ", job_id",           \
                .next_priority = "SELECT max(priority) FROM jobs INDEXED BY " index " WHERE " pending                  \
                                 " AND priority < ?1 AND priority >= ?2",                                              \
                .lane = CANDIDATE "INDEXED BY " index " WHERE " pending " AND priority = ?1 "                          \
                                  "AND scheduled_at <= ?2 ORDER BY " CLAIMABLE_AT ", job_id",                          \
                .sorted = CANDIDATE "INDEXED BY " index " WHERE " pending " AND priority >= ?2 "                       \
                                    "AND scheduled_at <= ?1 ORDER BY priority + MAX(0, (?1 - " CLAIMABLE_AT            \
                                    ") / ?3) DESC, " CLAIMABLE_AT ", job_id",                                          \
        }

static const ClaimQueries claim_any = CLAIM_QUERIES("jobs_claimable", "status = 'PENDING'");
static const ClaimQueries claim_cpu = CLAIM_QUERIES("jobs_claimable_cpu", "status = 'PENDING' AND needs_gpu = 0");

/* Whether more than preempt_backlog claimable jobs are at or above the priority floor: every such
 * job counts, GPU or not, whichever worker asks. The subquery stops counting as soon as the
 * answer is known. */
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
                          /* jobs_held: only unfinished jobs, not every job the worker ever ran (the
                           * status terms imply the partial index's, so that it may be used) */
                          "SELECT count(*) FROM jobs INDEXED BY jobs_held WHERE worker_id = ? "
                          "AND (status = 'ASSIGNED' OR status = 'RUNNING') AND attempt_count > 1",
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

/* Without aging the claim order is the partial index's own order: the scan stops at the first
 * job that fits. */
static int candidates(Control *c, const ClaimQueries *q, usec_t now, int64_t floor, sqlite3_stmt **ret) {
        int r = store_prepare(c->store, q->scan, ret);
        if (r < 0)
                return r;
        if (store_bind_int64(*ret, 1, (int64_t) now) < 0 || store_bind_int64(*ret, 2, floor) < 0)
                return -ENOMEM;
        return 0;
}

/* Whether the candidate in st's current row may go to this worker. */
static bool eligible(sqlite3_stmt *st, char *const *capabilities, bool retries_ok) {
        if (!retries_ok && sqlite3_column_int64(st, 3) > 0)
                return false;
        return capabilities_match(capabilities, sqlite3_column_int(st, 1) != 0,
                                  (const char *) sqlite3_column_text(st, 2));
}

static int take(sqlite3_stmt *st, char **ret_job_id) {
        char *id = strdup((const char *) sqlite3_column_text(st, 0));
        if (!id)
                return -ENOMEM;
        *ret_job_id = id;
        return 1;
}

/* ---- with aging: a merge of one scan per priority ----
 *
 * The effective priority priority + floor(waited / window) has no index, and sorting every PENDING
 * job per claim costs O(pending). But within one priority the job claimable longest has waited
 * longest, so each priority's jobs in CLAIMABLE_AT order (an index range of the claimable index)
 * come out in claim order already: the claim order is the merge of one such scan per distinct
 * priority, and a claim reads a few rows per priority instead of the whole queue. The distinct
 * priorities are found by seeking the index (one probe each). Past AGING_MERGE_MAX of them the
 * single sorting query is used instead. */
#define AGING_MERGE_MAX 32

typedef struct Lane {
        sqlite3_stmt *st; /* NULL once exhausted */
        int64_t priority;
} Lane;

static int next_priority_below(Control *c, const ClaimQueries *q, int64_t below, int64_t floor, bool *ret_found,
                               int64_t *ret) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r = store_prepare(c->store, q->next_priority, &st);
        if (r < 0)
                return r;
        if (store_bind_int64(st, 1, below) < 0 || store_bind_int64(st, 2, floor) < 0)
                return -ENOMEM;
        r = store_step(c->store, st);
        if (r < 0)
                return r;
        *ret_found = r > 0 && sqlite3_column_type(st, 0) != SQLITE_NULL;
        if (*ret_found)
                *ret = sqlite3_column_int64(st, 0);
        return 0;
}

/* The lanes' statements are cached copies: done with, they are only reset. */
static void lanes_done(Lane *lanes, size_t n) {
        for (size_t i = 0; i < n; i++)
                sqlite_stmt_resetp(&lanes[i].st);
}

static void lane_exhausted(Lane *l) {
        sqlite_stmt_resetp(&l->st);
        l->st = NULL;
}

/* Opens one scan per distinct priority, each stepped to its first row. Returns the number of
 * lanes, or 0 when there are more than AGING_MERGE_MAX priorities. */
static int lanes_open(Control *c, const ClaimQueries *q, usec_t now, int64_t floor, Lane lanes[AGING_MERGE_MAX]) {
        int64_t below = INT64_MAX, p;
        size_t n = 0;
        bool found;
        int r;

        for (;;) {
                r = next_priority_below(c, q, below, floor, &found, &p);
                if (r < 0 || !found)
                        break;
                if (n == AGING_MERGE_MAX) {
                        lanes_done(lanes, n); /* too many: the caller sorts instead */
                        return 0;
                }
                /* Copy n of the statement: several of these are open at once. */
                r = store_prepare_copy(c->store, q->lane, (unsigned) n, &lanes[n].st);
                if (r < 0)
                        break;
                lanes[n].priority = p;
                if (sqlite3_bind_int64(lanes[n].st, 1, p) != SQLITE_OK ||
                    sqlite3_bind_int64(lanes[n].st, 2, (int64_t) now) != SQLITE_OK) {
                        n++;
                        r = -ENOMEM;
                        break;
                }
                n++;
                r = store_step(c->store, lanes[n - 1].st);
                if (r < 0)
                        break;
                if (r == 0)
                        lane_exhausted(&lanes[n - 1]);
                if (p == INT64_MIN)
                        break;
                below = p;
        }
        if (r < 0 || n == 0) {
                lanes_done(lanes, n);
                return r < 0 ? r : 0;
        }
        return (int) n;
}

/* Column 4 of a candidate row: CLAIMABLE_AT. */
static int64_t effective(const Lane *l, usec_t now, usec_t window) {
        usec_t since = (usec_t) sqlite3_column_int64(l->st, 4);
        int64_t waited = now > since ? (int64_t) ((now - since) / window) : 0;
        return l->priority + waited;
}

/* Whether lane a's head comes before lane b's in claim order (see schedule.h). */
static bool lane_before(const Lane *a, const Lane *b, usec_t now, usec_t window) {
        int64_t ea = effective(a, now, window), eb = effective(b, now, window);
        if (ea != eb)
                return ea > eb;
        int64_t sa = sqlite3_column_int64(a->st, 4), sb = sqlite3_column_int64(b->st, 4);
        if (sa != sb)
                return sa < sb;
        return strcmp((const char *) sqlite3_column_text(a->st, 0), (const char *) sqlite3_column_text(b->st, 0)) < 0;
}

static int pick_merged(Control *c, Lane *lanes, size_t n, char *const *capabilities, bool retries_ok, usec_t now,
                       char **ret_job_id) {
        for (;;) {
                Lane *best = NULL;
                for (size_t i = 0; i < n; i++)
                        if (lanes[i].st && (!best || lane_before(&lanes[i], best, now, c->settings.aging_window)))
                                best = &lanes[i];
                if (!best)
                        return 0;
                if (eligible(best->st, capabilities, retries_ok))
                        return take(best->st, ret_job_id);
                int r = store_step(c->store, best->st);
                if (r < 0)
                        return r;
                if (r == 0)
                        lane_exhausted(best);
        }
}

/* The single query that sorts every claimable job by effective priority: for queues with more
 * distinct priorities than the merge takes. */
static int candidates_sorted(Control *c, const ClaimQueries *q, usec_t now, int64_t floor, sqlite3_stmt **ret) {
        int r = store_prepare(c->store, q->sorted, ret);
        if (r < 0)
                return r;
        if (store_bind_int64(*ret, 1, (int64_t) now) < 0 || store_bind_int64(*ret, 2, floor) < 0 ||
            store_bind_int64(*ret, 3, (int64_t) c->settings.aging_window) < 0)
                return -ENOMEM;
        return 0;
}

static int pick_scanned(Control *c, sqlite3_stmt *st, char *const *capabilities, bool retries_ok, char **ret_job_id) {
        int r;
        while ((r = store_step(c->store, st)) > 0)
                if (eligible(st, capabilities, retries_ok))
                        return take(st, ret_job_id);
        return r;
}

static int pick_aged(Control *c, const ClaimQueries *q, usec_t now, int64_t floor, char *const *capabilities,
                     bool retries_ok, char **ret_job_id) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        Lane lanes[AGING_MERGE_MAX] = {};
        int n, r;

        n = lanes_open(c, q, now, floor, lanes);
        if (n < 0)
                return n;
        if (n > 0) {
                r = pick_merged(c, lanes, (size_t) n, capabilities, retries_ok, now, ret_job_id);
                lanes_done(lanes, (size_t) n);
                return r;
        }
        r = candidates_sorted(c, q, now, floor, &st);
        if (r < 0)
                return r;
        return pick_scanned(c, st, capabilities, retries_ok, ret_job_id);
}

int schedule_pick(Control *c, const char *worker_id, char *const *capabilities, usec_t now, char **ret_job_id) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        const ClaimQueries *q = strv_contains(capabilities, "gpu") ? &claim_any : &claim_cpu;
        bool gated, retries_ok;
        int64_t floor;
        int r;

        *ret_job_id = NULL;
        r = gate_closed(c, now, &gated);
        if (r < 0)
                return r;
        r = retry_allowed(c, worker_id, &retries_ok);
        if (r < 0)
                return r;
        floor = gated ? c->settings.preempt_priority_floor : INT64_MIN;
        if (c->settings.aging_window > 0)
                return pick_aged(c, q, now, floor, capabilities, retries_ok, ret_job_id);
        r = candidates(c, q, now, floor, &st);
        if (r < 0)
                return r;
        return pick_scanned(c, st, capabilities, retries_ok, ret_job_id);
}
