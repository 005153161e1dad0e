/* test-job-state.c: the job state machine, edge by edge: every legal edge of design.md's table
 * is taken (status written, audit row in the same transaction), every other pair is refused
 * (status unchanged, a refusal audit row). */
#include "audit.h"
#include "core-test-util.h"
#include "job-state.h"
#include "store.h"
#include "tap.h"

/* design.md's table, written out independently of job-state.c, plus the late-completion edges
 * its lease rules require (LOST/RETRYING -> COMPLETED for the latest assignment). */
static bool expected_edge(JobState from, JobState to) {
        static const JobState edges[][2] = {
                {JOB_PENDING, JOB_ASSIGNED},   {JOB_PENDING, JOB_ABORTED},  {JOB_ASSIGNED, JOB_RUNNING},
                {JOB_ASSIGNED, JOB_PENDING},   {JOB_ASSIGNED, JOB_ABORTED}, {JOB_RUNNING, JOB_COMPLETED},
                {JOB_RUNNING, JOB_FAILED},     {JOB_RUNNING, JOB_RETRYING}, {JOB_RUNNING, JOB_LOST},
                {JOB_RUNNING, JOB_ABORTED},    {JOB_LOST, JOB_RETRYING},    {JOB_LOST, JOB_FAILED},
                {JOB_LOST, JOB_COMPLETED},     {JOB_RETRYING, JOB_PENDING}, {JOB_RETRYING, JOB_ABORTED},
                {JOB_RETRYING, JOB_COMPLETED},
        };
        for (size_t i = 0; i < ELEMENTSOF(edges); i++)
                if (edges[i][0] == from && edges[i][1] == to)
                        return true;
        return false;
}

static void test_table_matches_design(void) {
        int mismatches = 0;
        for (int f = 0; f < _JOB_STATE_MAX; f++)
                for (int t = 0; t < _JOB_STATE_MAX; t++)
                        if (job_transition_allowed(f, t) != expected_edge(f, t)) {
                                diag("mismatch %s -> %s", job_state_to_string(f), job_state_to_string(t));
                                mismatches++;
                        }
        is_int(mismatches, 0, "the transition table is design.md's, edge for edge");
        ok(!job_transition_allowed(JOB_COMPLETED, JOB_PENDING) && !job_transition_allowed(JOB_FAILED, JOB_RETRYING) &&
                   !job_transition_allowed(JOB_ABORTED, JOB_PENDING),
           "terminal states have no way out");
        ok(!job_transition_allowed(_JOB_STATE_INVALID, JOB_PENDING) && !job_transition_allowed(JOB_PENDING, 99),
           "out-of-range states are refused");
}

static int count_all_events(Control *c) {
        sqlite3_stmt *st = NULL;
        int n = -1;
        sqlite3_prepare_v2(c->store->db, "SELECT count(*) FROM audit_events", -1, &st, NULL);
        if (sqlite3_step(st) == SQLITE_ROW)
                n = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        return n;
}

static void walk_pair(Control *c, JobState from, JobState to, int *bad) {
        _cleanup_tx_ Control *tx = NULL;
        char set[64];
        const char *id = test_submit(c, 0);
        int before, r;

        snprintf(set, sizeof(set), "status = '%s'", job_state_to_string(from));
        test_force(c, set, id);
        before = count_all_events(c);
        if (control_begin(c, &tx) < 0)
                tap_bail("begin");
        r = job_transition(c, NULL, id, to, &(JobChange){.reason = "test"}, NULL);
        if (control_commit(&tx) < 0)
                tap_bail("commit");
        JobState now = test_job_state(c, id);
        bool legal = expected_edge(from, to);
        bool good = legal ? r == 0 && now == to : r == -EBUSY && now == from;
        good = good && count_all_events(c) == before + 1;
        if (!good) {
                diag("%s -> %s: r=%d state=%s", job_state_to_string(from), job_state_to_string(to), r,
                     job_state_to_string(now));
                (*bad)++;
        }
}

static void test_every_edge_legal_and_illegal(void) {
        Control *c = test_control_new();
        int bad = 0;
        for (int f = 0; f < _JOB_STATE_MAX; f++)
                for (int t = 0; t < _JOB_STATE_MAX; t++)
                        walk_pair(c, f, t, &bad);
        is_int(bad, 0, "all %d pairs: legal edges applied with one audit row, illegal ones refused with one",
               _JOB_STATE_MAX * _JOB_STATE_MAX);
        /* 16 legal edges, the remaining 48 pairs refused and audited. */
        is_int(test_count_events(c, "job.transition_refused", NULL), 64 - 16, "each refused pair wrote a refusal row");
        is_int(test_count_events(c, "job.completed", NULL), 3, "legal edges wrote their own event rows");
        test_control_free(c);
}

static void test_refused_transition_is_audited_and_changes_nothing(void) {
        Control *c = test_control_new();
        _cleanup_tx_ Control *tx = NULL;
        const char *id = test_submit(c, 0);
        test_force(c, "status = 'COMPLETED'", id);
        control_begin(c, &tx);
        is_int(job_transition(c, NULL, id, JOB_PENDING, NULL, NULL), -EBUSY, "COMPLETED -> PENDING refused");
        control_commit(&tx);
        is_int(test_job_state(c, id), JOB_COMPLETED, "status unchanged");
        is_int(test_count_events(c, "job.transition_refused", id), 1, "refusal audited with the job id");
        test_control_free(c);
}

static void test_transition_of_unknown_job_is_enoent(void) {
        Control *c = test_control_new();
        _cleanup_tx_ Control *tx = NULL;
        control_begin(c, &tx);
        is_int(job_transition(c, NULL, "nope", JOB_ASSIGNED, NULL, NULL), -ENOENT, "unknown job");
        control_rollback(c);
        tx = NULL;
        test_control_free(c);
}

static void test_rolled_back_transition_leaves_no_trace(void) {
        Control *c = test_control_new();
        const char *id = test_submit(c, 0);
        {
                _cleanup_tx_ Control *tx = NULL;
                control_begin(c, &tx);
                ok(job_transition(c, NULL, id, JOB_ASSIGNED, NULL, NULL) == 0, "transition inside a transaction");
                /* tx goes out of scope un-committed: rolled back */
        }
        is_int(test_job_state(c, id), JOB_PENDING, "status rolled back");
        is_int(test_count_events(c, "job.assigned", id), 0, "its audit row rolled back with it");
        test_control_free(c);
}

int main(void) {
        test_table_matches_design();
        test_every_edge_legal_and_illegal();
        test_refused_transition_is_audited_and_changes_nothing();
        test_transition_of_unknown_job_is_enoent();
        test_rolled_back_transition_leaves_no_trace();
        return tap_done();
}
