/* schedule.c: picks the job a worker gets (see schedule.h for the rules). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "jobs-internal.h"
#include "requirement-sets.h"
#include "schedule.h"
#include "store.h"
#include "strv.h"

/* When a job became claimable: the base of its FIFO place within one priority and of its aging.
 * A job scheduled for later has not been waiting before then. The claimable indexes (schema v10,
 * v13) are ordered by this very expression, so every ORDER BY here must spell it the same way. */
#define CLAIMABLE_AT "MAX(created_at, scheduled_at)"
#define CANDIDATE    "SELECT job_id, needs_gpu, requirements, attempt_count, " CLAIMABLE_AT ", priority FROM jobs "

/* The columns of a candidate row. */
enum {
        COL_JOB_ID,
        COL_NEEDS_GPU,
        COL_REQUIREMENTS,
        COL_ATTEMPT_COUNT,
        COL_CLAIMABLE_AT,
        COL_PRIORITY,
        COL_CREATED_AT,   /* oldest_first only */
        COL_SCHEDULED_AT, /* oldest_first only */
};

/* ---- by class (schema v13, v14) ----
 *
 * A class is the PENDING jobs with one needs_gpu, one requirements text and one retry flag
 * (attempt_count > 0): either a worker can take all of them or none. job_classes lists the
 * classes there are (triggers add them; the reconciler forgets the empty ones), and
 * jobs_claimable_class holds their jobs class by class, each class in claim order. So a claim
 * reads the short list, keeps the classes the worker can take, and reads only their scans: the
 * jobs it cannot take cost it nothing, however many wait ahead of its own, and their classes a
 * row of the list each. That covers a worker at its retry limit too: the retry jobs are classes
 * of their own, which it leaves out. */
#define BY_CLASS                                                                                                       \
        "INDEXED BY jobs_claimable_class WHERE status = 'PENDING' AND needs_gpu = ?3 AND requirements = ?4 "           \
        "AND (attempt_count > 0) = ?5 "

/* The classes with needs_gpu at most ?1 (1 for a worker with the "gpu" capability) and the retry
 * flag at most ?2 (0 for a worker at its retry limit), in the order of class_cmp(). */
static const char *const classes_listed =
        "SELECT needs_gpu, requirements, retry FROM job_classes WHERE needs_gpu <= ?1 AND retry <= ?2 "
        "ORDER BY needs_gpu, requirements, retry";
/* The reconciler's: the classes no PENDING job has any more, a seek each. (k.retry + 0: compared
 * as the column itself, with its INTEGER affinity, the index's retry term is not used, and a
 * fresh class's check would read every retry job of its requirements.) */
static const char *const classes_empty =
        "DELETE FROM job_classes AS k WHERE NOT EXISTS (SELECT 1 FROM jobs INDEXED BY jobs_claimable_class "
        "WHERE status = 'PENDING' AND needs_gpu = k.needs_gpu AND requirements = k.requirements "
        "AND (attempt_count > 0) = k.retry + 0)";
/* No aging: a class in claim order. ?1 now, ?2 priority floor. */
static const char *const class_scan = CANDIDATE BY_CLASS "AND priority >= ?2 AND scheduled_at <= ?1 "
                                                         "ORDER BY priority DESC, " CLAIMABLE_AT ", job_id";
/* Aging: the highest priority of a class below ?1, at least ?2. */
static const char *const class_next_priority =
        "SELECT max(priority) FROM jobs " BY_CLASS "AND priority < ?1 AND priority >= ?2";
/* Aging: one priority ?1 of a class, claimable at ?2, in CLAIMABLE_AT order. */
static const char *const class_lane = CANDIDATE BY_CLASS "AND priority = ?1 AND scheduled_at <= ?2 "
                                                         "ORDER BY " CLAIMABLE_AT ", job_id";

/* The oldest PENDING job's submission: no claimable job has waited longer (a job becomes
 * claimable at its submission or later), so none has more aging credit than it would. */
static const char *const oldest_pending = "SELECT min(created_at) FROM jobs WHERE status = 'PENDING'";

/* Past these the claim reads every claimable job in claim order instead, row by row: more
 * classes listed than are worth a match each, or (with aging) more than SCANS_MAX first jobs of a
 * priority and then more than WALK_MAX jobs walked, a few milliseconds each. */
#define CLASSES_MAX 1024
#define SCANS_MAX   1024
#define WALK_MAX    4096

/* Past SCANS_MAX: the PENDING jobs oldest first, to read what is left (walk_oldest()). */
static const char *const oldest_first =
        "SELECT job_id, needs_gpu, requirements, attempt_count, " CLAIMABLE_AT ", priority, created_at, scheduled_at "
        "FROM jobs INDEXED BY jobs_status_created WHERE status = 'PENDING' ORDER BY created_at, job_id";

/* ---- row by row, for queues beyond those limits ---- */
#define ROW_BY_ROW                                                                                                     \
        CANDIDATE "INDEXED BY jobs_claimable WHERE status = 'PENDING' AND priority >= ?2 AND scheduled_at <= ?1 "
/* No aging: in claim order, the partial index's own. */
static const char *const any_scan = ROW_BY_ROW "ORDER BY priority DESC, " CLAIMABLE_AT ", job_id";
/* Aging: sorted by effective priority, ?3 the aging window. */
static const char *const any_sorted =
        ROW_BY_ROW "ORDER BY priority + MAX(0, (?1 - " CLAIMABLE_AT ") / ?3) DESC, " CLAIMABLE_AT ", job_id";

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

static bool capabilities_match(Control *c, char *const *caps, bool needs_gpu, const char *requirements_json) {
        char *const *reqs = NULL;

        if (needs_gpu && !strv_contains((char **) caps, "gpu"))
                return false;
        if (requirement_sets_get(&c->requirement_sets, requirements_json, &reqs) < 0)
                return false;
        STRV_FOREACH (req, (char **) reqs)
                if (!strv_contains((char **) caps, *req))
                        return false;
        return true;
}

static bool retry_job(sqlite3_stmt *st) {
        return sqlite3_column_int64(st, COL_ATTEMPT_COUNT) > 0;
}

static int take(sqlite3_stmt *st, char **ret_job_id) {
        char *id = strdup((const char *) sqlite3_column_text(st, COL_JOB_ID));
        if (!id)
                return -ENOMEM;
        *ret_job_id = id;
        return 1;
}

/* ---- the classes a worker can take ---- */

typedef struct Class {
        int needs_gpu;
        char *requirements;
        int retry; /* 1: the jobs that had an attempt before (attempt_count > 0) */
        /* The highest priority whose first job the claim has not read (those above it, it has):
         * its top priority when found. With aging done once no job of it can come first. */
        int64_t unread;
        bool done;
} Class;

static void classes_free(Class *classes, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(classes[i].requirements);
        free(classes);
}

/* The order of job_classes' key, for bsearch(): requirements compare as SQLite's BINARY
 * collation does. */
static int class_cmp(const void *a, const void *b) {
        const Class *x = a, *y = b;
        if (x->needs_gpu != y->needs_gpu)
                return x->needs_gpu < y->needs_gpu ? -1 : 1;
        int d = strcmp(x->requirements, y->requirements);
        if (d != 0)
                return d;
        return x->retry == y->retry ? 0 : x->retry < y->retry ? -1 : 1;
}

static int class_add(Class **classes, size_t *n, size_t *allocated, int needs_gpu, const char *requirements,
                     int retry) {
        if (GROW_FOR_ONE(*classes, *allocated, *n, 8) < 0)
                return -ENOMEM;
        char *text = strdup(requirements);
        if (!text)
                return -ENOMEM;
        (*classes)[(*n)++] = (Class){.needs_gpu = needs_gpu, .requirements = text, .retry = retry};
        return 0;
}

/* The classes of PENDING jobs this worker can take, in class_cmp() order, into *ret (freed with
 * classes_free()). *ret_too_many past CLASSES_MAX listed. A worker without the "gpu" capability
 * does not even look at the classes of GPU jobs, nor one at its retry limit at the retry classes.
 * A class listed may have no PENDING job left: its scans find nothing. */
static int classes_find(Control *c, char *const *capabilities, bool retries_ok, Class **ret, size_t *ret_n,
                        bool *ret_too_many) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int gpu = strv_contains(capabilities, "gpu") ? 1 : 0;
        size_t listed = 0, allocated = 0;
        int r;

        *ret = NULL;
        *ret_n = 0;
        *ret_too_many = false;
        r = store_prepare(c->store, classes_listed, &st);
        if (r < 0)
                return r;
        if (store_bind_int64(st, 1, gpu) < 0 || store_bind_int64(st, 2, retries_ok ? 1 : 0) < 0)
                return -ENOMEM;
        while ((r = store_step(c->store, st)) > 0) {
                int needs_gpu = sqlite3_column_int(st, 0), retry = sqlite3_column_int(st, 2);
                const char *requirements = (const char *) sqlite3_column_text(st, 1); /* NOT NULL */
                if (++listed > CLASSES_MAX) {
                        *ret_too_many = true;
                        return 0;
                }
                if (!requirements || !capabilities_match(c, capabilities, needs_gpu, requirements))
                        continue;
                r = class_add(ret, ret_n, &allocated, needs_gpu, requirements, retry);
                if (r < 0)
                        return r;
        }
        return r;
}

int schedule_forget_empty_classes(Control *c, unsigned *ret_forgotten) {
        int r = store_run(c->store, classes_empty);
        if (r < 0)
                return r;
        if (ret_forgotten)
                *ret_forgotten = (unsigned) sqlite3_changes(c->store->db);
        return 0;
}

/* ---- the best of the classes' scans ----
 *
 * Without aging a class's scan in claim order gives its best job first, and the claim takes the
 * best of the classes' first jobs. With aging the effective priority priority + floor(waited /
 * window) has no index, and sorting every PENDING job per claim costs O(pending). But within one
 * priority of one class the job claimable longest has waited longest, so each such range of the
 * index has its best job first: the claim reads the first job of each priority of each class,
 * highest priority first (the distinct priorities found by seeking the index, one probe each),
 * and leaves a class once its priority plus the most credit any job can have is below the best
 * found: no job further down can reach it. A claim thus reads one row per scan, however deep the
 * queue, and only the priorities within the oldest job's credit of the best. When one old job
 * puts too many in reach, the rest is walked oldest first (walk_oldest()). */

typedef struct Best {
        char *job_id; /* NULL: none yet */
        int64_t effective;
        int64_t claimable_at;
} Best;

/* A candidate's effective priority: its priority, plus one per aging window it has waited. */
static int64_t effective(int64_t priority, usec_t since, usec_t now, usec_t window) {
        if (window == 0 || now <= since)
                return priority;
        return priority + (int64_t) ((now - since) / window);
}

/* Whether a candidate (effective priority e, claimable since, job_id) comes before *best in claim
 * order (see schedule.h). */
static bool before_best(const Best *best, int64_t e, int64_t since, const char *job_id) {
        if (!best->job_id)
                return true;
        if (e != best->effective)
                return e > best->effective;
        if (since != best->claimable_at)
                return since < best->claimable_at;
        return strcmp(job_id, best->job_id) < 0;
}

/* The candidate in st's current row into *best if it comes first. */
static int consider(Control *c, sqlite3_stmt *st, usec_t now, Best *best) {
        int64_t since = sqlite3_column_int64(st, COL_CLAIMABLE_AT);
        int64_t e = effective(sqlite3_column_int64(st, COL_PRIORITY), (usec_t) since, now, c->settings.aging_window);
        const char *id = (const char *) sqlite3_column_text(st, COL_JOB_ID);
        if (!before_best(best, e, since, id))
                return 0;
        char *copy = strdup(id);
        if (!copy)
                return -ENOMEM;
        free(best->job_id);
        *best = (Best){.job_id = copy, .effective = e, .claimable_at = since};
        return 0;
}

/* Prepares sql, a query of class k (the class as ?3 to ?5), with a and b as ?1 and ?2, into *st
 * and steps it to its first row. */
static int class_query(Control *c, const char *sql, int64_t a, int64_t b, const Class *k, sqlite3_stmt **st) {
        int r = store_prepare(c->store, sql, st);
        if (r < 0)
                return r;
        if (store_bind_int64(*st, 1, a) < 0 || store_bind_int64(*st, 2, b) < 0 ||
            store_bind_int64(*st, 3, k->needs_gpu) < 0 || store_bind_text(*st, 4, k->requirements) < 0 ||
            store_bind_int64(*st, 5, k->retry) < 0)
                return -ENOMEM;
        return store_step(c->store, *st);
}

/* Reads the first row of sql (a scan of class k, with a and b as ?1 and ?2) into *best if it
 * comes first. */
static int scan_first(Control *c, const char *sql, int64_t a, int64_t b, const Class *k, usec_t now, Best *best) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r = class_query(c, sql, a, b, k, &st);
        return r <= 0 ? r : consider(c, st, now, best);
}

static int class_next_priority_below(Control *c, const Class *k, int64_t below, int64_t floor, bool *ret_found,
                                     int64_t *ret) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r = class_query(c, class_next_priority, below, floor, k, &st);
        if (r < 0)
                return r;
        *ret_found = r > 0 && sqlite3_column_type(st, 0) != SQLITE_NULL;
        if (*ret_found)
                *ret = sqlite3_column_int64(st, 0);
        return 0;
}

/* The most aging credit a claimable job can have now: that of the oldest PENDING job. */
static int credit_max(Control *c, usec_t now, int64_t *ret) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r = store_prepare(c->store, oldest_pending, &st);
        if (r < 0)
                return r;
        r = store_step(c->store, st);
        if (r < 0)
                return r;
        *ret = r > 0 ? effective(0, (usec_t) sqlite3_column_int64(st, 0), now, c->settings.aging_window) : 0;
        return 0;
}

/* With aging: the first job of each priority of class k at or above floor, highest first, from
 * k->unread on, until no lower priority can reach the best (k->done) or the reads run out. */
static int class_best_aging(Control *c, Class *k, usec_t now, int64_t floor, int64_t credit, Best *best,
                            unsigned *budget) {
        int64_t p = k->unread;
        bool found = !k->done;
        int r;

        while (found) {
                /* p is at most JOBS_PRIORITY_LIMIT and credit far below INT64_MAX: no overflow */
                if (best->job_id && p + credit < best->effective)
                        break;
                if (*budget == 0) {
                        k->unread = p;
                        return 0;
                }
                (*budget)--;
                r = scan_first(c, class_lane, p, (int64_t) now, k, now, best);
                if (r < 0)
                        return r;
                if (p == INT64_MIN)
                        break;
                r = class_next_priority_below(c, k, p, floor, &found, &p);
                if (r < 0)
                        return r;
        }
        k->done = true;
        return 0;
}

/* The class among those not done that the job in st's current row belongs to, if its priority
 * is one not read yet. */
static const Class *class_unread_of(const Class *classes, size_t n, sqlite3_stmt *st) {
        const Class key = {.needs_gpu = sqlite3_column_int(st, COL_NEEDS_GPU),
                           .requirements = (char *) sqlite3_column_text(st, COL_REQUIREMENTS),
                           .retry = sqlite3_column_int64(st, COL_ATTEMPT_COUNT) > 0};

        if (!key.requirements)
                return NULL;
        const Class *k = bsearch(&key, classes, n, sizeof(Class), class_cmp); /* classes are in its order */
        return k && !k->done && sqlite3_column_int64(st, COL_PRIORITY) <= k->unread ? k : NULL;
}

/* Past the reads, what is left: the PENDING jobs oldest first. No job has more credit than one
 * submitted before it (a job becomes claimable at its submission or later), so the walk stops at
 * the first whose credit, on the highest priority not read, cannot reach the best. *ret_too_many
 * past WALK_MAX jobs. */
static int walk_oldest(Control *c, const Class *classes, size_t n, usec_t now, int64_t floor, Best *best,
                       bool *ret_too_many) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int64_t top = INT64_MIN;
        unsigned left = WALK_MAX;
        bool any = false;
        int r;

        for (size_t i = 0; i < n; i++)
                if (!classes[i].done) {
                        top = MAX(top, classes[i].unread);
                        any = true;
                }
        if (!any) /* the reads ran out on the last priority there was */
                return 0;
        r = store_prepare(c->store, oldest_first, &st);
        if (r < 0)
                return r;
        while ((r = store_step(c->store, st)) > 0) {
                usec_t created = (usec_t) sqlite3_column_int64(st, COL_CREATED_AT);
                if (best->job_id && top + effective(0, created, now, c->settings.aging_window) < best->effective)
                        return 0;
                if (left-- == 0) {
                        *ret_too_many = true;
                        return 0;
                }
                if (!class_unread_of(classes, n, st) || sqlite3_column_int64(st, COL_PRIORITY) < floor ||
                    sqlite3_column_int64(st, COL_SCHEDULED_AT) > (int64_t) now)
                        continue;
                r = consider(c, st, now, best);
                if (r < 0)
                        return r;
        }
        return r;
}

/* With aging: the classes' first jobs of each priority, then, past the reads, the walk. */
static int pick_aging(Control *c, Class *classes, size_t n, usec_t now, int64_t floor, Best *best, bool *ret_too_many) {
        unsigned budget = SCANS_MAX;
        int64_t credit = 0;
        int r;

        if (n == 0)
                return 0;
        r = credit_max(c, now, &credit);
        for (size_t i = 0; i < n && r >= 0; i++) {
                Class *k = &classes[i];
                bool found;
                /* JOBS_PRIORITY_LIMIT is far below INT64_MAX: every priority is below it */
                r = class_next_priority_below(c, k, INT64_MAX, floor, &found, &k->unread);
                k->done = !found;
                if (r >= 0)
                        r = class_best_aging(c, k, now, floor, credit, best, &budget);
        }
        if (r < 0 || budget > 0)
                return r;
        return walk_oldest(c, classes, n, now, floor, best, ret_too_many);
}

static int pick_by_class(Control *c, usec_t now, int64_t floor, char *const *capabilities, bool retries_ok,
                         char **ret_job_id, bool *ret_too_many) {
        Class *classes = NULL;
        Best best = {};
        size_t n_classes = 0;
        int r;

        r = classes_find(c, capabilities, retries_ok, &classes, &n_classes, ret_too_many);
        if (r >= 0 && !*ret_too_many && c->settings.aging_window > 0)
                r = pick_aging(c, classes, n_classes, now, floor, &best, ret_too_many);
        else if (r >= 0 && !*ret_too_many)
                for (size_t i = 0; i < n_classes && r >= 0; i++)
                        r = scan_first(c, class_scan, (int64_t) now, floor, &classes[i], now, &best);
        classes_free(classes, n_classes);
        if (r < 0 || *ret_too_many || !best.job_id) {
                free(best.job_id);
                return r;
        }
        *ret_job_id = best.job_id;
        return 1;
}

/* ---- row by row ---- */

/* Whether the candidate in st's current row may go to this worker. */
static bool eligible(Control *c, sqlite3_stmt *st, char *const *capabilities, bool retries_ok) {
        if (!retries_ok && retry_job(st))
                return false;
        return capabilities_match(c, capabilities, sqlite3_column_int(st, COL_NEEDS_GPU) != 0,
                                  (const char *) sqlite3_column_text(st, COL_REQUIREMENTS));
}

static int pick_row_by_row(Control *c, usec_t now, int64_t floor, char *const *capabilities, bool retries_ok,
                           char **ret_job_id) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        bool aging = c->settings.aging_window > 0;
        int r = store_prepare(c->store, aging ? any_sorted : any_scan, &st);
        if (r < 0)
                return r;
        if (store_bind_int64(st, 1, (int64_t) now) < 0 || store_bind_int64(st, 2, floor) < 0 ||
            (aging && store_bind_int64(st, 3, (int64_t) c->settings.aging_window) < 0))
                return -ENOMEM;
        while ((r = store_step(c->store, st)) > 0)
                if (eligible(c, st, capabilities, retries_ok))
                        return take(st, ret_job_id);
        return r;
}

int schedule_pick(Control *c, const char *worker_id, char *const *capabilities, usec_t now, char **ret_job_id) {
        bool gated, retries_ok, too_many = false;
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
        r = pick_by_class(c, now, floor, capabilities, retries_ok, ret_job_id, &too_many);
        if (r != 0 || !too_many)
                return r;
        return pick_row_by_row(c, now, floor, capabilities, retries_ok, ret_job_id);
}
