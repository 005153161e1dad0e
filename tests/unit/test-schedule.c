/* test-schedule.c: claim order and every scheduling knob: priority, when a job became claimable
 * (created_at or a later scheduled_at), job id, scheduled_at, needs_gpu, requirements, queue
 * aging, max retry jobs per worker and the high-priority preemption gate; that the claim query
 * uses its partial index, a worker without GPUs reads no GPU job, and none reads the jobs of the
 * classes it cannot take, listed (v14) or, past the list's limit, row by row; that the reconciler
 * forgets empty classes; and that a database from schema v9 claims in the same order. */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "core-test-util.h"
#include "macro.h"
#include "protocol.h"
#include "reconcile.h"
#include "requirement-sets.h"
#include "store-schema.h"
#include "store.h"
#include "strv.h"
#include "tap.h"

static char *claim_id(Control *c, const char *worker_id) {
        Job *j = test_claim(c, worker_id);
        if (!j)
                return NULL;
        char *id = strdup(j->job_id);
        job_free(j);
        return id;
}

static void test_claim_order_priority_then_age_then_id(void) {
        Control *c = test_control_new();
        char low[RANDOM_ID_SIZE], high[RANDOM_ID_SIZE], old[RANDOM_ID_SIZE], young[RANDOM_ID_SIZE];
        test_register(c, "w1", NULL);
        strcpy(low, test_submit(c, 1));
        test_advance(c, USEC_PER_SEC);
        strcpy(old, test_submit(c, 5));
        test_advance(c, USEC_PER_SEC);
        strcpy(young, test_submit(c, 5));
        strcpy(high, test_submit(c, 9));
        _cleanup_free_ char *a = claim_id(c, "w1"), *b = claim_id(c, "w1"), *d = claim_id(c, "w1"),
                            *e = claim_id(c, "w1");
        is_str(a, high, "highest priority first");
        is_str(b, old, "then, at equal priority, the older");
        is_str(d, young, "then the younger");
        is_str(e, low, "lowest priority last");

        /* Same priority and created_at: job id decides. */
        const char *x = test_submit(c, 0);
        char first[RANDOM_ID_SIZE], second[RANDOM_ID_SIZE];
        strcpy(first, x);
        strcpy(second, test_submit(c, 0));
        if (strcmp(first, second) > 0) {
                char t[RANDOM_ID_SIZE];
                strcpy(t, first), strcpy(first, second), strcpy(second, t);
        }
        _cleanup_free_ char *f = claim_id(c, "w1");
        is_str(f, first, "equal priority and time: the smaller job id first");
        test_control_free(c);
}

static void test_scheduled_at_is_respected(void) {
        Control *c = test_control_new();
        JobSpec s;
        job_spec_init(&s);
        s.command = "x";
        s.scheduled_at = T0 + 60 * USEC_PER_SEC;
        test_register(c, "w1", NULL);
        test_submit_spec(c, &s);
        _cleanup_free_ char *none = claim_id(c, "w1");
        ok(!none, "not claimable before scheduled_at");
        test_advance(c, 60 * USEC_PER_SEC);
        _cleanup_free_ char *now = claim_id(c, "w1");
        ok(now, "claimable at scheduled_at");
        test_control_free(c);
}

/* Submits a job of this priority, claimable from scheduled_at (0: at once), into id. */
static void submit_scheduled(Control *c, int64_t priority, usec_t scheduled_at, char id[RANDOM_ID_SIZE]) {
        JobSpec s;
        job_spec_init(&s);
        s.command = "x";
        s.priority = priority;
        s.scheduled_at = scheduled_at;
        strcpy(id, test_submit_spec(c, &s));
}

/* Within one priority, FIFO by when a job became claimable: a job submitted early for a later
 * time queues behind those that were waiting when it fell due, and ahead of later ones. */
static void test_fifo_by_claimable_time(void) {
        Control *c = test_control_new();
        char sched[RANDOM_ID_SIZE], waiting[RANDOM_ID_SIZE], later[RANDOM_ID_SIZE];
        test_register(c, "w1", NULL);
        submit_scheduled(c, 0, T0 + 60 * USEC_PER_SEC, sched);
        test_advance(c, 30 * USEC_PER_SEC);
        submit_scheduled(c, 0, 0, waiting);
        test_advance(c, 60 * USEC_PER_SEC);
        submit_scheduled(c, 0, 0, later);
        _cleanup_free_ char *a = claim_id(c, "w1"), *b = claim_id(c, "w1"), *d = claim_id(c, "w1");
        is_str(a, waiting, "claimable since T0+30s: first, though submitted after the scheduled job");
        is_str(b, sched, "the job scheduled for T0+60s next");
        is_str(d, later, "the job submitted at T0+90s last");
        test_control_free(c);
}

/* With aging, a job scheduled a day ahead gains nothing for the day before it was due: once due
 * it waits its turn behind jobs of its priority that have waited longer, and behind a higher one. */
static void test_scheduled_job_ages_from_when_it_became_due(void) {
        Control *c = test_control_new();
        char sched[RANDOM_ID_SIZE], waiting[RANDOM_ID_SIZE], high[RANDOM_ID_SIZE];
        test_register(c, "w1", NULL);
        c->settings.aging_window = 60 * USEC_PER_SEC;
        submit_scheduled(c, 0, T0 + 24 * USEC_PER_HOUR, sched);
        test_advance(c, 24 * USEC_PER_HOUR - 10 * 60 * USEC_PER_SEC);
        submit_scheduled(c, 0, 0, waiting);
        submit_scheduled(c, 3, 0, high);
        test_advance(c, 10 * 60 * USEC_PER_SEC); /* the scheduled job is due: waiting +10, high 3+10 */
        _cleanup_free_ char *a = claim_id(c, "w1"), *b = claim_id(c, "w1"), *d = claim_id(c, "w1");
        is_str(a, high, "aged 10 windows at priority 3: first");
        is_str(b, waiting, "aged 10 windows at priority 0: next");
        is_str(d, sched, "the job due just now, not credited the day before: last");
        test_control_free(c);
}

static void test_gpu_and_requirements_match_capabilities(void) {
        Control *c = test_control_new();
        JobSpec s;
        char *reqs[] = {(char *) "cuda", (char *) "linux", NULL};
        job_spec_init(&s);
        s.command = "x";
        s.needs_gpu = true;
        test_register(c, "cpu", "linux,cuda");
        test_register(c, "gpu", "gpu,linux");
        test_register(c, "full", "gpu,cuda,linux,avx");
        char gpu_job[RANDOM_ID_SIZE], req_job[RANDOM_ID_SIZE];
        strcpy(gpu_job, test_submit_spec(c, &s));
        s.needs_gpu = false;
        s.requirements = reqs;
        strcpy(req_job, test_submit_spec(c, &s));

        _cleanup_free_ char *a = claim_id(c, "cpu");
        is_str(a, req_job, "a worker without gpu skips the GPU job but takes one whose requirements it meets");
        _cleanup_free_ char *b = claim_id(c, "gpu");
        is_str(b, gpu_job, "the gpu worker takes the GPU job");
        test_submit_spec(c, &s);
        _cleanup_free_ char *d = claim_id(c, "gpu");
        ok(!d, "a worker missing one requirement (cuda) gets nothing");
        _cleanup_free_ char *e = claim_id(c, "full");
        ok(e, "a worker with every requirement gets it");
        test_control_free(c);
}

static void test_queue_aging_lifts_old_low_priority_jobs(void) {
        Control *c = test_control_new();
        char old_low[RANDOM_ID_SIZE], new_high[RANDOM_ID_SIZE];
        test_register(c, "w1", NULL);
        strcpy(old_low, test_submit(c, 0));
        test_advance(c, 10 * USEC_PER_SEC);
        strcpy(new_high, test_submit(c, 3));

        c->settings.aging_window = 0;
        {
                _cleanup_free_ char *id = claim_id(c, "w1");
                is_str(id, new_high, "without aging: priority wins");
                test_force(c, "status = 'PENDING', worker_id = NULL, assignment_id = NULL", id);
        }
        c->settings.aging_window = 5 * USEC_PER_SEC; /* waited 10s: +2, 0+2 < 3 */
        {
                _cleanup_free_ char *id = claim_id(c, "w1");
                is_str(id, new_high, "aged by 2: still below 3");
                test_force(c, "status = 'PENDING', worker_id = NULL, assignment_id = NULL", id);
        }
        c->settings.aging_window = 2 * USEC_PER_SEC; /* +5 vs 3 */
        {
                _cleanup_free_ char *id = claim_id(c, "w1");
                is_str(id, old_low, "aged by 5: the old low-priority job overtakes");
        }
        test_control_free(c);
}

static void test_max_retry_jobs_per_worker(void) {
        Control *c = test_control_new();
        test_register(c, "w1", NULL);
        char r1[RANDOM_ID_SIZE], r2[RANDOM_ID_SIZE], fresh[RANDOM_ID_SIZE];
        strcpy(r1, test_submit(c, 9));
        strcpy(r2, test_submit(c, 9));
        strcpy(fresh, test_submit(c, 0));
        /* Two jobs that already had an attempt. */
        test_force(c, "attempt_count = 1", r1);
        test_force(c, "attempt_count = 1", r2);
        c->settings.max_retry_jobs_per_worker = 1;
        _cleanup_free_ char *a = claim_id(c, "w1");
        ok(a && (streq(a, r1) || streq(a, r2)), "the first retry job is handed out");
        _cleanup_free_ char *b = claim_id(c, "w1");
        is_str(b, fresh, "with one retry job held, the next retry job is skipped for a fresh one");
        _cleanup_free_ char *d = claim_id(c, "w1");
        ok(!d, "and no second retry job");
        test_register(c, "w2", NULL);
        _cleanup_free_ char *e = claim_id(c, "w2");
        ok(e, "another worker may take it");
        test_control_free(c);
}

/* More than preempt_backlog jobs at or above the priority floor pending: lower jobs wait, even
 * for a worker that cannot run the high ones. A worker that can still gets high jobs. */
static void test_preemption_gate_hands_out_only_high_priority(void) {
        Control *c = test_control_new();
        char *reqs[] = {(char *) "special", NULL};
        char low[RANDOM_ID_SIZE], low2[RANDOM_ID_SIZE];
        JobSpec s;

        test_register(c, "plain", NULL);
        test_register(c, "w1", "special");
        job_spec_init(&s);
        s.command = "x";
        s.priority = 10;
        s.requirements = reqs;
        c->settings.preempt_priority_floor = 10;
        c->settings.preempt_backlog = 2;
        strcpy(low, test_submit(c, 0));
        test_advance(c, USEC_PER_MSEC); /* the older low job first: ids of one millisecond are in random order */
        strcpy(low2, test_submit(c, 0));
        test_submit_spec(c, &s);
        test_submit_spec(c, &s);
        _cleanup_free_ char *a = claim_id(c, "plain");
        is_str(a, low, "2 high jobs pending, not above the backlog of 2: the gate is open");
        test_submit_spec(c, &s);
        _cleanup_free_ char *b = claim_id(c, "plain");
        ok(!b, "3 high jobs pending: gate closed, a worker that cannot run them gets no low job either");
        _cleanup_free_ char *h = claim_id(c, "w1");
        ok(h && !streq(h, low2), "while one that can gets a high job");
        test_submit_spec(c, &s);
        c->settings.preempt_backlog = 0;
        _cleanup_free_ char *d = claim_id(c, "plain");
        is_str(d, low2, "gate off: the low job is handed out");
        test_control_free(c);
}

static void test_claim_query_uses_the_partial_index(void) {
        Control *c = test_control_new();
        sqlite3_stmt *st = NULL;
        char plan[1024] = "";
        sqlite3_prepare_v2(c->store->db,
                           "EXPLAIN QUERY PLAN SELECT job_id FROM jobs INDEXED BY jobs_claimable WHERE status = "
                           "'PENDING' AND priority >= -9 "
                           "AND scheduled_at <= 5 ORDER BY priority DESC, MAX(created_at, scheduled_at), job_id",
                           -1, &st, NULL);
        while (sqlite3_step(st) == SQLITE_ROW) {
                strncat(plan, (const char *) sqlite3_column_text(st, 3), sizeof(plan) - strlen(plan) - 2);
                strcat(plan, ";");
        }
        sqlite3_finalize(st);
        ok(strstr(plan, "jobs_claimable") && !strstr(plan, "TEMP B-TREE"),
           "claim walks jobs_claimable in order, no sort: %s", plan);
        test_control_free(c);
}

static char *query_plan(Control *c, const char *sql) {
        sqlite3_stmt *st = NULL;
        char plan[1024] = "";
        sqlite3_prepare_v2(c->store->db, sql, -1, &st, NULL);
        while (st && sqlite3_step(st) == SQLITE_ROW) {
                strncat(plan, (const char *) sqlite3_column_text(st, 3), sizeof(plan) - strlen(plan) - 2);
                strcat(plan, ";");
        }
        sqlite3_finalize(st);
        return strdup(plan);
}

static void test_aging_claim_seeks_per_priority_without_sorting(void) {
        Control *c = test_control_new();
        _cleanup_free_ char *lane = query_plan(
                c, "EXPLAIN QUERY PLAN SELECT job_id FROM jobs INDEXED BY jobs_claimable WHERE status = 'PENDING' "
                   "AND priority = 3 AND scheduled_at <= 5 ORDER BY MAX(created_at, scheduled_at), job_id");
        _cleanup_free_ char *seek = query_plan(
                c, "EXPLAIN QUERY PLAN SELECT max(priority) FROM jobs INDEXED BY jobs_claimable WHERE status = "
                   "'PENDING' AND priority < 9 AND priority >= -9");
        ok(strstr(lane, "jobs_claimable (priority=?)") && !strstr(lane, "TEMP B-TREE"),
           "one priority's jobs come out of the index in claimable order: %s", lane);
        ok(strstr(seek, "jobs_claimable") && !strstr(seek, "TEMP B-TREE"), "the next priority is one seek: %s",
           seek);
        test_control_free(c);
}

/* The job the claim order (schedule.h) puts first for a worker with capabilities caps (comma
 * separated), by one query that sorts every claimable job it can take; only jobs without an
 * earlier attempt when fresh_only (a worker at its retry limit). Empty when there is none. */
static void reference_pick(Control *c, const char *caps, bool fresh_only, int64_t floor, char want[64]) {
        sqlite3_stmt *st = NULL;
        want[0] = 0;
        sqlite3_prepare_v2(c->store->db,
                           "SELECT job_id FROM jobs WHERE status = 'PENDING' AND scheduled_at <= ?1 "
                           "AND (needs_gpu = 0 OR instr(',' || ?3 || ',', ',gpu,') > 0) "
                           "AND NOT EXISTS (SELECT 1 FROM json_each(requirements) r "
                           "                WHERE instr(',' || ?3 || ',', ',' || r.value || ',') = 0) "
                           "AND (?4 = 0 OR attempt_count = 0) AND priority >= ?5 "
                           "ORDER BY priority + (CASE WHEN ?2 > 0 THEN MAX(0, (?1 - MAX(created_at, scheduled_at)) "
                           "/ ?2) ELSE 0 END) DESC, MAX(created_at, scheduled_at), job_id LIMIT 1",
                           -1, &st, NULL);
        sqlite3_bind_int64(st, 1, (int64_t) c->clock_override);
        sqlite3_bind_int64(st, 2, (int64_t) c->settings.aging_window);
        sqlite3_bind_text(st, 3, caps ? caps : "", -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 4, fresh_only);
        sqlite3_bind_int64(st, 5, floor);
        if (sqlite3_step(st) == SQLITE_ROW)
                snprintf(want, 64, "%s", sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
}

static void reference_next(Control *c, const char *caps, bool fresh_only, char want[64]) {
        reference_pick(c, caps, fresh_only, INT64_MIN, want);
}

/* Claims for worker_id (registered with caps) until it gets nothing, each claim checked against
 * reference_next(): whether every one matched and both ran out together; *ret_n gets how many
 * were claimed. */
static bool claims_follow(Control *c, const char *worker_id, const char *caps, bool fresh_only, int *ret_n) {
        bool same = true;
        int n = 0;

        for (;;) {
                char want[64];
                reference_next(c, caps, fresh_only, want);
                _cleanup_free_ char *got = claim_id(c, worker_id);
                if (!got || !want[0]) {
                        same = same && !got && !want[0];
                        break;
                }
                same = same && streq(got, want);
                n++;
                test_advance(c, USEC_PER_SEC / 3);
        }
        *ret_n = n;
        return same;
}

static bool claims_follow_reference(Control *c, const char *worker_id, const char *caps, int *ret_n) {
        return claims_follow(c, worker_id, caps, false, ret_n);
}

/* The first jobs of the per-priority scans hand jobs out in exactly the order of the sorting
 * query: with few priorities or many, in a young queue (the oldest job's credit leaves most
 * priorities unread) or one an hour old (every priority read), and past the scans a claim reads
 * (the sorting query itself). One job in ten is scheduled a little ahead, so that its claimable
 * time is not its submission time. */
static void check_aging_order(int n_jobs, int n_priorities, usec_t age, const char *what) {
        Control *c = test_control_new();
        int n = 0;
        test_register(c, "w1", NULL);
        c->settings.aging_window = 3 * USEC_PER_SEC;
        for (int i = 0; i < n_jobs; i++) {
                char id[RANDOM_ID_SIZE];
                submit_scheduled(c, (i * 7) % n_priorities,
                                 i % 10 == 3 ? c->clock_override + (usec_t) (i % 4) * 7 * USEC_PER_SEC : 0, id);
                test_advance(c, (usec_t) ((i * 13) % 5) * USEC_PER_SEC / 2);
        }
        test_advance(c, age);
        bool same = claims_follow_reference(c, "w1", NULL, &n);
        ok(same && n == n_jobs, "%s: all %d jobs in the sorted order (%d claimed)", what, n_jobs, n);
        test_control_free(c);
}

/* Past the reads: 2,000 priorities and one job submitted 1,500 aging windows before them, at
 * priority 0. Its credit keeps 1,500 priorities in reach of the best, more than a claim reads
 * one by one; what is left is walked oldest first, and the claims still follow the sorting
 * query. */
static void test_aging_claim_past_the_reads_walks_the_oldest(void) {
        Control *c = test_control_new();
        bool same = true;
        char ancient[RANDOM_ID_SIZE];
        int n = 0;

        test_register(c, "w1", NULL);
        c->settings.aging_window = 3 * USEC_PER_SEC;
        submit_scheduled(c, 0, 0, ancient);
        test_advance(c, 1500 * 3 * USEC_PER_SEC);
        for (int i = 0; i < 2000; i++) {
                char id[RANDOM_ID_SIZE];
                submit_scheduled(c, (i * 7) % 2000, 0, id);
        }
        for (; n < 200 && same; n++) {
                char want[64];
                reference_next(c, NULL, false, want);
                _cleanup_free_ char *got = claim_id(c, "w1");
                same = got && streq(got, want) && !streq(got, ancient);
                test_advance(c, USEC_PER_SEC / 3);
        }
        ok(same, "the first %d claims follow the sorting query, the old job not yet among them", n);
        test_control_free(c);
}

static void test_aging_claim_matches_the_sorted_order(void) {
        check_aging_order(90, 5, 0, "5 priorities");
        check_aging_order(90, 45, 0, "45 priorities, young");
        check_aging_order(90, 45, USEC_PER_HOUR, "45 priorities, an hour old");
        check_aging_order(1030, 1030, USEC_PER_HOUR, "1,030 priorities an hour old: more scans than a claim reads");
}

/* A worker without GPUs gets the jobs without needs_gpu in the claim order, with GPU jobs of every
 * priority ahead of, among and behind them; a GPU worker still takes the head of the queue. */
static void check_cpu_worker_order(usec_t aging_window, int n_priorities, const char *what) {
        Control *c = test_control_new();
        char head[RANDOM_ID_SIZE];
        int n = 0, cpu_jobs = 0;
        JobSpec s;

        test_register(c, "cpu", "linux");
        test_register(c, "gpu", "gpu,linux");
        c->settings.aging_window = aging_window;
        job_spec_init(&s);
        s.command = "x";
        s.priority = 50;
        s.needs_gpu = true;
        strcpy(head, test_submit_spec(c, &s));
        for (int i = 0; i < 90; i++) {
                s.priority = (i * 7) % n_priorities;
                s.needs_gpu = i % 3 == 1;
                s.scheduled_at = i % 10 == 3 ? c->clock_override + (usec_t) (i % 4) * 7 * USEC_PER_SEC : 0;
                test_submit_spec(c, &s);
                cpu_jobs += !s.needs_gpu;
                test_advance(c, (usec_t) ((i * 13) % 5) * USEC_PER_SEC / 2);
        }
        bool same = claims_follow_reference(c, "cpu", "linux", &n);
        ok(same && n == cpu_jobs, "%s: the CPU worker gets all %d CPU jobs in claim order (%d claimed)", what, cpu_jobs,
           n);
        _cleanup_free_ char *g = claim_id(c, "gpu");
        is_str(g, head, "%s: the GPU worker takes the GPU job at the head", what);
        test_control_free(c);
}

static void test_cpu_worker_gets_cpu_jobs_in_claim_order(void) {
        check_cpu_worker_order(0, 4, "no aging");
        check_cpu_worker_order(3 * USEC_PER_SEC, 4, "aging, 4 priorities");
        check_cpu_worker_order(3 * USEC_PER_SEC, 50, "aging, 50 priorities");
}

/* Jobs of n_classes classes: none, or requirement "r<k>", k = 1..n_classes - 1; every fifth one
 * needs a GPU as well. Workers taking some classes, others, and all they can (a worker has at most
 * LIMIT_REQUIREMENTS capabilities: "gpu", r1 to r63) get exactly the jobs they can take, in the
 * claim order of the sorting query. */
static void check_class_order(usec_t aging_window, int n_priorities, int n_classes, const char *what) {
        Control *c = test_control_new();
        _cleanup_free_ char *all = strdup("gpu");
        int got[3] = {}, takeable = 0;
        bool same[3];
        JobSpec s;

        for (int k = 1; k < MIN(n_classes, LIMIT_REQUIREMENTS); k++) {
                char *more = NULL;
                if (asprintf(&more, "%s,r%d", all, k) < 0)
                        tap_bail("out of memory");
                free(all);
                all = more;
        }
        test_register(c, "some", "linux,r1,r3");
        test_register(c, "gpu", "gpu,r2");
        test_register(c, "all", all);
        c->settings.aging_window = aging_window;
        job_spec_init(&s);
        s.command = "x";
        for (int i = 0; i < 150; i++) {
                char req[16], *reqs[] = {req, NULL};
                int k = i % n_classes;
                snprintf(req, sizeof(req), "r%d", k);
                s.requirements = k > 0 ? reqs : NULL;
                s.needs_gpu = i % 5 == 2;
                s.priority = (i * 11) % n_priorities;
                s.scheduled_at = i % 10 == 3 ? c->clock_override + (usec_t) (i % 4) * 7 * USEC_PER_SEC : 0;
                test_submit_spec(c, &s);
                takeable += k < LIMIT_REQUIREMENTS;
                test_advance(c, (usec_t) ((i * 13) % 5) * USEC_PER_SEC / 2);
        }
        same[0] = claims_follow_reference(c, "some", "linux,r1,r3", &got[0]);
        same[1] = claims_follow_reference(c, "gpu", "gpu,r2", &got[1]);
        test_advance(c, 30 * USEC_PER_SEC); /* every scheduled job is due */
        same[2] = claims_follow_reference(c, "all", all, &got[2]);
        ok(same[0] && same[1] && same[2] && got[0] > 0 && got[1] > 0 && got[0] + got[1] + got[2] == takeable,
           "%s: each worker gets the jobs it can take in claim order (%d, %d, %d of %d)", what, got[0], got[1], got[2],
           takeable);
        test_control_free(c);
}

static void test_classes_merge_in_claim_order(void) {
        check_class_order(0, 4, 6, "6 classes, no aging");
        check_class_order(3 * USEC_PER_SEC, 3, 6, "6 classes x 3 priorities, aging");
        check_class_order(3 * USEC_PER_SEC, 9, 6, "6 classes x 9 priorities, aging");
        check_class_order(0, 4, 70, "70 classes");
        check_class_order(3 * USEC_PER_SEC, 4, 70, "70 classes, aging");
}

/* 120 jobs needing nothing, r1, or r2 (which the workers here lack), of priorities 0 to
 * n_priorities - 1, one in ten scheduled a little ahead, and one in four (out of step with the
 * requirements) with an earlier attempt. *ret_fresh and *ret_retry: how many of each a worker
 * with "linux,r1" can take. */
static void submit_retry_mixture(Control *c, int n_priorities, int *ret_fresh, int *ret_retry) {
        JobSpec s;

        *ret_fresh = *ret_retry = 0;
        job_spec_init(&s);
        s.command = "x";
        for (int i = 0; i < 120; i++) {
                char req[16], *reqs[] = {req, NULL};
                int k = i % 3;
                bool retry = i % 4 == 1;
                snprintf(req, sizeof(req), "r%d", k);
                s.requirements = k > 0 ? reqs : NULL;
                s.priority = (i * 11) % n_priorities;
                s.scheduled_at = i % 10 == 3 ? c->clock_override + (usec_t) (i % 4) * 7 * USEC_PER_SEC : 0;
                const char *id = test_submit_spec(c, &s);
                if (retry)
                        test_force(c, "attempt_count = 1", id);
                if (k < 2)
                        (*(retry ? ret_retry : ret_fresh))++;
                test_advance(c, (usec_t) ((i * 13) % 5) * USEC_PER_SEC / 2);
        }
}

/* Retry jobs are classes of their own: a worker without a retry limit gets them merged with the
 * fresh ones in claim order; one that holds its limit gets every fresh job it can take in claim
 * order and no retry job, which another worker may still take. */
static void check_retry_classes(usec_t aging_window, int n_priorities, const char *what) {
        Control *c = test_control_new();
        int fresh, retry, got;
        JobSpec s;

        test_register(c, "free", "linux,r1");
        c->settings.aging_window = aging_window;
        submit_retry_mixture(c, n_priorities, &fresh, &retry);
        bool same = claims_follow_reference(c, "free", "linux,r1", &got);
        ok(same && got == fresh + retry, "%s: without a limit, fresh and retry jobs in claim order (%d of %d)", what,
           got, fresh + retry);
        test_control_free(c);

        c = test_control_new();
        test_register(c, "held", "linux,r1");
        test_register(c, "other", "linux,r1");
        c->settings.aging_window = aging_window;
        c->settings.max_retry_jobs_per_worker = 1;
        job_spec_init(&s);
        s.command = "x";
        s.priority = 100;
        char first[RANDOM_ID_SIZE];
        strcpy(first, test_submit_spec(c, &s));
        test_force(c, "attempt_count = 1", first);
        _cleanup_free_ char *held = claim_id(c, "held");
        submit_retry_mixture(c, n_priorities, &fresh, &retry);
        same = claims_follow(c, "held", "linux,r1", true, &got);
        ok(same && streq_ptr(held, first) && got == fresh,
           "%s: at its retry limit, every fresh job in claim order and no retry job (%d of %d)", what, got, fresh);
        _cleanup_(job_freep) Job *other = test_claim(c, "other");
        ok(other && other->attempt_count > 1, "%s: another worker takes a retry job", what);
        test_control_free(c);
}

static void test_retry_jobs_are_classes_of_their_own(void) {
        check_retry_classes(0, 4, "no aging");
        check_retry_classes(3 * USEC_PER_SEC, 3, "aging, 3 priorities");
        check_retry_classes(3 * USEC_PER_SEC, 9, "aging, 9 priorities");
}

static int count_op(void *userdata) {
        (*(long *) userdata)++;
        return 0;
}

/* SQLite virtual machine instructions one claim of worker_id executes: a measure of the rows it
 * reads that does not depend on the machine's speed or load. */
static long claim_ops(Control *c, const char *worker_id, char **ret_id) {
        long ops = 0;
        sqlite3_progress_handler(c->store->db, 1, count_op, &ops);
        *ret_id = claim_id(c, worker_id);
        sqlite3_progress_handler(c->store->db, 0, NULL, NULL);
        return ops;
}

/* n PENDING jobs of one class that had `attempts` attempts, submitted an hour ago. */
static void add_jobs_attempted(Control *c, int n, int64_t priority, bool needs_gpu, const char *requirements,
                               int attempts) {
        char sql[768], *msg = NULL;
        static int next = 0;
        snprintf(sql, sizeof(sql),
                 "WITH RECURSIVE k(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM k WHERE x < %d) "
                 "INSERT INTO jobs (job_id, status, command, priority, needs_gpu, requirements, attempt_count, "
                 "created_at, updated_at) "
                 "SELECT printf('bulk%%08d', x + %d), 'PENDING', 'x', %lld, %d, '%s', %d, %lld, 0 FROM k",
                 n, next, (long long) priority, needs_gpu, requirements, attempts,
                 (long long) c->clock_override - USEC_PER_HOUR);
        next += n;
        if (sqlite3_exec(c->store->db, sql, NULL, NULL, &msg) != SQLITE_OK)
                tap_bail("bulk jobs: %s", msg);
}

static void add_jobs(Control *c, int n, int64_t priority, bool needs_gpu, const char *requirements) {
        add_jobs_attempted(c, n, priority, needs_gpu, requirements, 0);
}

/* Adds the jobs the worker may not take ahead of its own: a few, or (many) a hundred times more. */
typedef void (*AddAhead)(Control *c, bool many);

/* The worker's empty poll does the same work behind many such jobs as behind a few (it does not
 * read them; before, it read them all, row by row), and it gets the job it may take behind them.
 * Frees c. */
static void check_flat_poll(Control *c, const char *worker_id, AddAhead add, const char *ahead, const char *what) {
        char *none_few = NULL, *none_many = NULL, *got = NULL;
        char own[RANDOM_ID_SIZE];

        add(c, false);
        long few = claim_ops(c, worker_id, &none_few);
        add(c, true);
        long many = claim_ops(c, worker_id, &none_many);
        ok(!none_few && !none_many && many < few + 100,
           "%s: an empty poll behind %s costs what it does behind a hundredth of them (%ld, %ld VM steps)", what, ahead,
           many, few);
        submit_scheduled(c, 0, 0, own);
        long behind = claim_ops(c, worker_id, &got);
        is_str(got, own, "%s: the job it may take behind them is claimed (%ld VM steps)", what, behind);
        free(got);
        free(none_few);
        free(none_many);
        test_control_free(c);
}

static void add_gpu_jobs(Control *c, bool many) {
        add_jobs(c, many ? 2000 : 20, 5, true, "[]");
}

static void test_cpu_worker_poll_reads_no_gpu_job(void) {
        for (int aging = 0; aging <= 1; aging++) {
                Control *c = test_control_new();
                test_register(c, "cpu", NULL);
                c->settings.aging_window = aging ? 5 * 60 * USEC_PER_SEC : 0;
                check_flat_poll(c, "cpu", add_gpu_jobs, "2,020 GPU jobs", aging ? "aging" : "no aging");
        }
}

static void add_unmet_jobs(Control *c, bool many) {
        add_jobs(c, many ? 2000 : 20, 5, false, "[\"cuda\"]");
        add_jobs(c, many ? 1000 : 10, 5, false, "[\"avx512\",\"linux\"]");
}

static void test_poll_reads_no_job_needing_what_its_worker_lacks(void) {
        for (int aging = 0; aging <= 1; aging++) {
                Control *c = test_control_new();
                test_register(c, "cpu", "linux");
                c->settings.aging_window = aging ? 5 * 60 * USEC_PER_SEC : 0;
                check_flat_poll(c, "cpu", add_unmet_jobs, "3,030 jobs needing what it lacks",
                                aging ? "aging" : "no aging");
        }
}

/* With aging, a claim behind 100,000 jobs of 40 priorities reads what it does behind 1,000: the
 * first job of each priority within the oldest job's credit of the best, not a sort of the queue
 * (which it was past 32 such scans, before). */
static void test_aging_claim_among_many_priorities_is_flat(void) {
        Control *c = test_control_new();
        char *few_id = NULL, *many_id = NULL;

        test_register(c, "w", NULL);
        c->settings.aging_window = 5 * 60 * USEC_PER_SEC;
        for (int p = 0; p < 40; p++)
                add_jobs(c, 25, p, false, "[]");
        long few = claim_ops(c, "w", &few_id);
        for (int p = 0; p < 40; p++)
                add_jobs(c, 2475, p, false, "[]");
        long many = claim_ops(c, "w", &many_id);
        ok(few_id && many_id && many < few + 100,
           "a claim behind 100,000 jobs of 40 priorities costs what it does behind 1,000 (%ld, %ld VM steps)", many,
           few);
        free(few_id);
        free(many_id);
        test_control_free(c);
}

/* The same past the reads: 2,000 priorities and a job a year old at priority 0, which comes
 * first. A claim reads 1,024 priorities' first jobs and then walks the oldest two, behind 2,000
 * jobs or 40,000: before, it sorted them. */
/* Adds one job at priority 0 submitted a year ago; its id into id. */
static void add_year_old_job(Control *c, char id[64]) {
        sqlite3_stmt *st = NULL;
        add_jobs(c, 1, 0, false, "[]");
        sqlite3_prepare_v2(c->store->db, "SELECT max(job_id) FROM jobs WHERE job_id LIKE 'bulk%'", -1, &st, NULL);
        if (!st || sqlite3_step(st) != SQLITE_ROW)
                tap_bail("no bulk job");
        snprintf(id, 64, "%s", sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
        test_force(c, "created_at = created_at - 365 * 86400 * 1000000", id);
}

static void test_aging_claim_past_the_reads_is_flat(void) {
        Control *c = test_control_new();
        char *few_id = NULL, *many_id = NULL, old1[64], old2[64];

        test_register(c, "w", NULL);
        c->settings.aging_window = 5 * 60 * USEC_PER_SEC;
        for (int p = 0; p < 2000; p++)
                add_jobs(c, 1, p, false, "[]");
        add_year_old_job(c, old1);
        long few = claim_ops(c, "w", &few_id);
        is_str(few_id, old1, "the year-old job comes first");
        add_year_old_job(c, old2);
        for (int p = 0; p < 2000; p++)
                add_jobs(c, 19, p, false, "[]");
        long many = claim_ops(c, "w", &many_id);
        ok(streq_ptr(many_id, old2) && many < few + 1000,
           "and behind 40,000 jobs of 2,000 priorities it costs what it did behind 2,000 (%ld, %ld VM steps)", many,
           few);
        free(few_id);
        free(many_id);
        test_control_free(c);
}

static void add_retry_jobs(Control *c, bool many) {
        add_jobs_attempted(c, many ? 2000 : 20, 5, false, "[]", 1);
        add_jobs_attempted(c, many ? 1000 : 10, 3, false, "[]", 2);
}

/* The same for a worker that holds its limit of retry jobs, behind retry jobs. */
static void test_poll_at_the_retry_limit_reads_no_retry_job(void) {
        for (int aging = 0; aging <= 1; aging++) {
                Control *c = test_control_new();
                test_register(c, "w", NULL);
                c->settings.aging_window = aging ? 5 * 60 * USEC_PER_SEC : 0;
                c->settings.max_retry_jobs_per_worker = 1;
                add_jobs_attempted(c, 1, 9, false, "[]", 1);
                free(claim_id(c, "w")); /* held: its one retry job */
                check_flat_poll(c, "w", add_retry_jobs, "3,030 retry jobs",
                                aging ? "aging, at its retry limit" : "no aging, at its retry limit");
        }
}

static int64_t count_of(Control *c, const char *sql, int64_t a, int64_t b) {
        sqlite3_stmt *st = NULL;
        int64_t n = -1;
        sqlite3_prepare_v2(c->store->db, sql, -1, &st, NULL);
        sqlite3_bind_int64(st, 1, a);
        sqlite3_bind_int64(st, 2, b);
        if (sqlite3_step(st) == SQLITE_ROW)
                n = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        return n;
}

/* The jobs of 200 requirements texts the worker lacks, of 40 priorities above those of its own
 * jobs: n of each class. */
static void add_many_classes(Control *c, int n) {
        for (int k = 0; k < 200; k++) {
                char reqs[32];
                snprintf(reqs, sizeof(reqs), "[\"t%d\"]", k);
                add_jobs(c, n, 40 + k % 40, false, reqs);
        }
        for (int p = 0; p < 40; p++)
                add_jobs(c, (n * 5 + 3) / 4, p, false, p % 2 ? "[]" : "[\"linux\"]");
}

/* Jobs of 200 requirements texts the worker lacks, ahead of its own: a claim behind 100,000 jobs
 * reads what it does behind 1,000, with aging and without. It reads the list of classes, not
 * their jobs; before schema v14 more than 64 texts sent it row by row (every job ahead of its
 * own read, and with aging every PENDING job sorted, per claim). */
static void test_claim_among_many_classes_is_flat(void) {
        for (int aging = 0; aging <= 1; aging++) {
                Control *c = test_control_new();
                char *few_id = NULL, *many_id = NULL;

                test_register(c, "w", "linux");
                c->settings.aging_window = aging ? 5 * 60 * USEC_PER_SEC : 0;
                add_many_classes(c, 4);
                long few = claim_ops(c, "w", &few_id);
                add_many_classes(c, 396);
                long many = claim_ops(c, "w", &many_id);
                ok(few_id && many_id && many < few + 100,
                   "%s: a claim behind 100,000 jobs of 200 classes it cannot take costs what it does behind 1,000 "
                   "(%ld, %ld VM steps)",
                   aging ? "aging" : "no aging", many, few);
                free(few_id);
                free(many_id);
                test_control_free(c);
        }
}

/* Each requirements text is parsed once: a second claim among 200 classes parses none, whatever
 * it matches; the memo reads a text that is not a list as no requirement, as a job load does,
 * and forgets everything rather than grow past its bound. */
static void test_requirements_texts_are_parsed_once(void) {
        Control *c = test_control_new();
        char *first = NULL, *second = NULL;
        char *const *set = NULL;

        test_register(c, "w", "linux");
        add_many_classes(c, 2);
        free(claim_id(c, "w"));
        size_t parsed = requirement_sets_parsed(c->requirement_sets);
        first = claim_id(c, "w");
        second = claim_id(c, "w");
        ok(first && second && parsed >= 200 && requirement_sets_parsed(c->requirement_sets) == parsed,
           "claims among 200 classes parse each requirements text once (%zu texts)", parsed);

        RequirementSets *m = NULL;
        ok(requirement_sets_get(&m, "[\"b\",\"a\"]", &set) == 0 && set && streq_ptr(set[0], "b") &&
                   streq_ptr(set[1], "a") && !set[2],
           "a text reads as its list");
        ok(requirement_sets_get(&m, "{\"a\":1}", &set) == 0 && set && !set[0] &&
                   requirement_sets_get(&m, "not json", &set) == 0 && set && !set[0],
           "a text that is not a list reads as no requirement");
        for (int i = 0; i < REQUIREMENT_SETS_MAX + 10; i++) {
                char text[32];
                snprintf(text, sizeof(text), "[\"r%d\"]", i);
                if (requirement_sets_get(&m, text, &set) < 0)
                        tap_bail("requirement_sets_get");
        }
        ok(requirement_sets_size(m) <= REQUIREMENT_SETS_MAX && requirement_sets_size(m) > 0,
           "the memo stays within its bound (%zu texts held after %d)", requirement_sets_size(m),
           REQUIREMENT_SETS_MAX + 13);
        size_t most = 0;
        for (int i = 0; i < 300; i++) { /* texts of 64 items of 100 bytes: about 6.6 KB each */
                _cleanup_free_ char *text = NULL;
                char item[128];
                size_t len = 0;
                text = malloc(64 * 110 + 8);
                if (!text)
                        tap_bail("out of memory");
                text[len++] = '[';
                for (int k = 0; k < 64; k++) {
                        snprintf(item, sizeof(item), "%s\"%03d-%03d-%090d\"", k ? "," : "", i, k, 0);
                        memcpy(text + len, item, strlen(item));
                        len += strlen(item);
                }
                memcpy(text + len, "]", 2);
                if (requirement_sets_get(&m, text, &set) < 0 || !set || !set[63])
                        tap_bail("requirement_sets_get of a long text");
                most = MAX(most, requirement_sets_bytes(m));
        }
        ok(most <= REQUIREMENT_SETS_BYTES_MAX && most > REQUIREMENT_SETS_BYTES_MAX / 2,
           "and within its bytes, however long the texts (%zu bytes at most)", most);
        requirement_sets_free(m);
        free(first);
        free(second);
        test_control_free(c);
}

static long classes_listed(Control *c) {
        return (long) count_of(c, "SELECT count(*) FROM job_classes", 0, 0);
}

/* The reconciler forgets a class once no job of it is PENDING; a job back in PENDING (its lease
 * ran out before the ack) lists its class again and is claimed. */
static void test_empty_classes_are_forgotten_and_listed_again(void) {
        Control *c = test_control_new();
        JobSpec s;
        char *reqs[] = {(char *) "cuda", NULL};

        test_register(c, "w", "cuda");
        job_spec_init(&s);
        s.command = "x";
        s.requirements = reqs;
        const char *id = test_submit_spec(c, &s);
        char want[RANDOM_ID_SIZE];
        snprintf(want, sizeof(want), "%s", id);
        is_int(classes_listed(c), 1, "a submitted job lists its class");
        _cleanup_free_ char *first = claim_id(c, "w");
        is_int(classes_listed(c), 1, "a claim does not write the list");
        ok(reconcile_sweep(c, NULL) == 0 && classes_listed(c) == 0,
           "the reconciler forgets the class once its last job is claimed");
        test_advance(c, c->settings.lease_timeout + USEC_PER_SEC);
        ok(reconcile_sweep(c, NULL) == 0 && classes_listed(c) == 1,
           "the job requeued when its lease ran out before the ack lists it again");
        _cleanup_free_ char *again = claim_id(c, "w");
        ok(first && again && streq(first, want) && streq(again, want), "and it is claimed again");
        test_control_free(c);
}

/* More classes listed than a claim matches (1,030 requirements texts the worker lacks, among its
 * own jobs of 7 priorities): it reads the queue row by row, sorted with aging, and still hands
 * out exactly the jobs the worker can take in claim order. */
static void test_past_the_class_list_claims_row_by_row(void) {
        for (int aging = 0; aging <= 1; aging++) {
                Control *c = test_control_new();
                int n = 0;

                test_register(c, "w", "linux");
                c->settings.aging_window = aging ? 3 * USEC_PER_SEC : 0;
                for (int k = 0; k < 1030; k++) {
                        char reqs[32];
                        snprintf(reqs, sizeof(reqs), "[\"t%d\"]", k);
                        add_jobs(c, 1, k % 7, false, reqs);
                        if (k % 10 == 0)
                                add_jobs(c, 1, k % 7, false, k % 20 ? "[]" : "[\"linux\"]");
                }
                bool same = claims_follow_reference(c, "w", "linux", &n);
                ok(same && n == 103, "%s: the jobs it can take among 1,030 classes, in claim order (%d of 103)",
                   aging ? "aging" : "no aging", n);
                test_control_free(c);
        }
}

/* What the reference must apply for worker "w": only fresh jobs while it holds its limit of retry
 * jobs; only high-priority jobs while the preemption gate is closed. */
static void reference_rules(Control *c, bool *ret_fresh_only, int64_t *ret_floor) {
        const ControlSettings *set = &c->settings;
        *ret_fresh_only = set->max_retry_jobs_per_worker > 0 &&
                          count_of(c,
                                   "SELECT count(*) FROM jobs WHERE worker_id = 'w' AND status IN ('ASSIGNED', "
                                   "'RUNNING') AND attempt_count > 1 AND ?1 = ?2",
                                   0, 0) >= set->max_retry_jobs_per_worker;
        *ret_floor = set->preempt_backlog > 0 &&
                                     count_of(c,
                                              "SELECT count(*) FROM jobs WHERE status = 'PENDING' AND priority >= ?1 "
                                              "AND scheduled_at <= ?2",
                                              set->preempt_priority_floor,
                                              (int64_t) c->clock_override) > set->preempt_backlog
                             ? set->preempt_priority_floor
                             : INT64_MIN;
}

/* Random queues, each claimed to the end by one worker and checked claim by claim against the
 * sorting query: priorities, jobs scheduled a little ahead, GPU jobs, requirements out of three,
 * retry jobs, with and without aging (windows short enough that jobs age during the run), with
 * and without a retry limit and the preemption gate, workers of four kinds of capabilities.
 * Fixed seeds: a failure names its seed and repeats. */
static void test_random_queues_follow_the_reference(void) {
        static const char *const caps[] = {NULL, "a", "a,b", "a,c,gpu"};
        static const char *const reqs[] = {NULL, "a", "b", "c"};
        static const usec_t windows[] = {0, 2 * USEC_PER_SEC, 30 * USEC_PER_SEC};
        int failed = 0, claims = 0;

        for (unsigned seed = 1; seed <= 24; seed++) {
                uint64_t x = seed * 0x9E3779B97F4A7C15ULL;
#define RAND(n) ((int) ((x = x * 6364136223846793005ULL + 1442695040888963407ULL) >> 33) % (n))
                Control *c = test_control_new();
                const char *w_caps = caps[RAND(4)];
                JobSpec s;

                test_register(c, "w", w_caps);
                c->settings.aging_window = windows[RAND(3)];
                c->settings.max_retry_jobs_per_worker = RAND(3);
                c->settings.preempt_backlog = RAND(2) ? 3 : 0;
                c->settings.preempt_priority_floor = 7;
                job_spec_init(&s);
                s.command = "x";
                for (int i = 0; i < 60; i++) {
                        char *list[3] = {NULL, NULL, NULL};
                        int k = RAND(4), m = RAND(4);
                        list[0] = (char *) reqs[k];
                        list[1] = k > 0 && m > 0 && m != k ? (char *) reqs[m] : NULL;
                        s.requirements = k > 0 ? list : NULL;
                        s.priority = RAND(10);
                        s.needs_gpu = RAND(5) == 0;
                        s.scheduled_at = RAND(8) == 0 ? c->clock_override + (usec_t) RAND(20) * USEC_PER_SEC : 0;
                        const char *id = test_submit_spec(c, &s);
                        if (RAND(4) == 0)
                                test_force(c, "attempt_count = 1", id);
                        test_advance(c, (usec_t) RAND(3) * USEC_PER_SEC);
                }
                for (;;) {
                        char want[64];
                        bool fresh_only;
                        int64_t floor;
                        reference_rules(c, &fresh_only, &floor);
                        reference_pick(c, w_caps, fresh_only, floor, want);
                        _cleanup_free_ char *got = claim_id(c, "w");
                        if (!got && !want[0])
                                break;
                        if (!got || !streq(got, want)) {
                                failed++;
                                diag("seed %u: claimed %s, the sorting query says %s", seed, got ? got : "(none)",
                                     want[0] ? want : "(none)");
                                break;
                        }
                        claims++;
                        test_advance(c, USEC_PER_SEC / 2);
                }
#undef RAND
                test_control_free(c);
        }
        ok(failed == 0 && claims > 24 * 10, "24 random queues: every claim as the sorting query says (%d claims)",
           claims);
}

static void test_class_claim_uses_its_partial_index(void) {
        Control *c = test_control_new();
        ok(test_plan_uses(
                   c,
                   "SELECT needs_gpu, requirements, retry FROM job_classes WHERE needs_gpu <= ?1 AND retry <= ?2 "
                   "ORDER BY needs_gpu, requirements, retry",
                   "job_classes USING PRIMARY KEY (needs_gpu<?)"),
           "the list of classes comes in the order of its key, no sort");
        ok(test_plan_uses(c,
                          "SELECT max(priority) FROM jobs INDEXED BY jobs_claimable_class WHERE status = 'PENDING' AND "
                          "needs_gpu = ?3 AND requirements = ?4 AND (attempt_count > 0) = ?5 AND priority < ?1 AND "
                          "priority >= ?2",
                          "jobs_claimable_class (needs_gpu=? AND requirements=? AND <expr>=? AND priority>? AND "
                          "priority<?)"),
           "a class's highest priority below another is one seek");
        ok(test_plan_uses(
                   c,
                   "DELETE FROM job_classes AS k WHERE NOT EXISTS (SELECT 1 FROM jobs INDEXED BY "
                   "jobs_claimable_class WHERE status = 'PENDING' AND needs_gpu = k.needs_gpu AND requirements = "
                   "k.requirements AND (attempt_count > 0) = k.retry + 0)",
                   "jobs_claimable_class (needs_gpu=? AND requirements=? AND <expr>=?)"),
           "the reconciler finds an empty class in one seek, its retry flag included");
        ok(test_plan_uses(c,
                          "SELECT job_id FROM jobs INDEXED BY jobs_claimable_class WHERE status = 'PENDING' AND "
                          "needs_gpu = ?3 AND requirements = ?4 AND (attempt_count > 0) = ?5 AND priority >= ?2 AND "
                          "scheduled_at <= ?1 ORDER BY priority DESC, MAX(created_at, scheduled_at), job_id",
                          "jobs_claimable_class (needs_gpu=? AND requirements=? AND <expr>=? AND priority>?)"),
           "a class comes out of the index in claim order, no sort");
        ok(test_plan_uses(c,
                          "SELECT job_id FROM jobs INDEXED BY jobs_claimable_class WHERE status = 'PENDING' AND "
                          "needs_gpu = ?3 AND requirements = ?4 AND (attempt_count > 0) = ?5 AND priority = ?1 AND "
                          "scheduled_at <= ?2 ORDER BY MAX(created_at, scheduled_at), job_id",
                          "jobs_claimable_class (needs_gpu=? AND requirements=? AND <expr>=? AND priority=?)"),
           "and so does one priority of it, for the claim with aging");
        ok(test_plan_uses(c, "SELECT min(created_at) FROM jobs WHERE status = 'PENDING'",
                          "jobs_status_created (status=?)"),
           "the oldest PENDING job, whose credit bounds every other's, is one seek");
        ok(test_plan_uses(c,
                          "SELECT job_id, created_at FROM jobs INDEXED BY jobs_status_created WHERE status = 'PENDING' "
                          "ORDER BY created_at, job_id",
                          "jobs_status_created (status=?)"),
           "and the walk past the reads takes them oldest first, no sort");
        test_control_free(c);
}

/* A database schema v9 left behind: its claim index was ordered by created_at. Migrated, it keeps
 * every row and claims by claimable time. */
static void make_v9_database(const char *path) {
        sqlite3 *db = NULL;
        char sql[2048];
        if (sqlite3_open(path, &db) != SQLITE_OK || store_schema_migrate(db, 9) < 0)
                tap_bail("cannot build a v9 database");
        /* Times in seconds before T0: "sched" was submitted first, for a time after "early". */
        snprintf(sql, sizeof(sql),
                 "INSERT INTO jobs (job_id, status, command, priority, scheduled_at, created_at, updated_at) VALUES "
                 "('sched', 'PENDING', 'x', 0, %1$lld - 300000000, %1$lld - 900000000, 0),"
                 "('early', 'PENDING', 'x', 0, 0, %1$lld - 600000000, 0),"
                 "('late', 'PENDING', 'x', 0, 0, %1$lld - 100000000, 0),"
                 "('high', 'PENDING', 'x', 1, 0, %1$lld - 50000000, 0),"
                 "('ahead', 'PENDING', 'x', 9, %1$lld + 3600000000, %1$lld - 950000000, 0),"
                 "('done', 'COMPLETED', 'x', 9, 0, %1$lld - 990000000, 0);",
                 (long long) T0);
        char *msg = NULL;
        if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
                tap_bail("v9 data: %s", msg);
        sqlite3_close(db);
}

static void test_v9_database_migrates_and_claims_by_claimable_time(void) {
        Control *c = test_control_new();
        char path[PATH_MAX + 16];
        static const char *const order[] = {"high", "early", "sched", "late"};
        int v = 0;

        store_close(c->store);
        snprintf(path, sizeof(path), "%s/v9.db", test_control_dir(c));
        make_v9_database(path);
        if (store_open(path, NULL, &c->store) < 0)
                tap_bail("store_open of the v9 database failed");
        store_user_version(c->store, &v);
        is_int(v, STORE_SCHEMA_VERSION, "the v9 database is migrated");
        ok(test_plan_uses(c,
                          "SELECT job_id FROM jobs INDEXED BY jobs_claimable WHERE status = 'PENDING' AND "
                          "priority >= ?2 AND scheduled_at <= ?1 ORDER BY priority DESC, "
                          "MAX(created_at, scheduled_at), job_id",
                          "jobs_claimable"),
           "its claim index is ordered by claimable time: the claim sorts nothing");
        test_register(c, "w1", NULL);
        for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
                _cleanup_free_ char *id = claim_id(c, "w1");
                is_str(id, order[i], "claim %zu after the migration: %s", i + 1, order[i]);
        }
        _cleanup_free_ char *none = claim_id(c, "w1");
        ok(!none, "the job scheduled an hour ahead is not claimable yet");
        is_int(test_job_state(c, "ahead"), JOB_PENDING, "it is kept, PENDING");
        is_int(test_job_state(c, "done"), JOB_COMPLETED, "and so is the finished job");
        test_control_free(c);
}

int main(void) {
        test_claim_order_priority_then_age_then_id();
        test_scheduled_at_is_respected();
        test_fifo_by_claimable_time();
        test_scheduled_job_ages_from_when_it_became_due();
        test_gpu_and_requirements_match_capabilities();
        test_queue_aging_lifts_old_low_priority_jobs();
        test_max_retry_jobs_per_worker();
        test_preemption_gate_hands_out_only_high_priority();
        test_claim_query_uses_the_partial_index();
        test_aging_claim_seeks_per_priority_without_sorting();
        test_aging_claim_matches_the_sorted_order();
        test_aging_claim_past_the_reads_walks_the_oldest();
        test_cpu_worker_gets_cpu_jobs_in_claim_order();
        test_cpu_worker_poll_reads_no_gpu_job();
        test_classes_merge_in_claim_order();
        test_retry_jobs_are_classes_of_their_own();
        test_poll_reads_no_job_needing_what_its_worker_lacks();
        test_poll_at_the_retry_limit_reads_no_retry_job();
        test_aging_claim_among_many_priorities_is_flat();
        test_aging_claim_past_the_reads_is_flat();
        test_claim_among_many_classes_is_flat();
        test_requirements_texts_are_parsed_once();
        test_past_the_class_list_claims_row_by_row();
        test_empty_classes_are_forgotten_and_listed_again();
        test_random_queues_follow_the_reference();
        test_class_claim_uses_its_partial_index();
        test_v9_database_migrates_and_claims_by_claimable_time();
        return tap_done();
}
