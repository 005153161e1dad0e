/* test-retention.c: the retention sweep deletes terminal jobs (with their artifact records) and
 * audit events older than their retention, keeps everything else, and audits itself. */
#include "core-test-util.h"
#include "retention.h"
#include "store.h"
#include "tap.h"

static void test_retention_deletes_only_old_terminal_jobs_and_events(void) {
        Control *c = test_control_new();
        OpError err = {};
        size_t n;
        uint64_t jobs = 0, events = 0;
        char old_done[RANDOM_ID_SIZE], old_pending[RANDOM_ID_SIZE], new_done[RANDOM_ID_SIZE];

        c->settings.job_retention_days = 7;
        c->settings.event_retention_days = 30;
        strcpy(old_done, test_submit(c, 0));
        strcpy(old_pending, test_submit(c, 0));
        jobs_abort(c, NULL, old_done, NULL, NULL, &n, &err);
        test_advance(c, 8 * USEC_PER_DAY);
        strcpy(new_done, test_submit(c, 0));
        jobs_abort(c, NULL, new_done, NULL, NULL, &n, &err);

        is_int(retention_sweep(c, &jobs, &events), 0, "sweep");
        is_int(jobs, 1, "one job deleted");
        is_int(events, 0, "no event old enough yet");
        is_int(test_job_state(c, old_done), _JOB_STATE_INVALID,
               "the old terminal job is gone (with its artifact record)");
        is_int(test_job_state(c, old_pending), JOB_PENDING, "an old non-terminal job is kept");
        is_int(test_job_state(c, new_done), JOB_ABORTED, "a recent terminal job is kept");
        is_int(test_count_events(c, "retention.sweep", NULL), 1, "the sweep audited itself");

        test_advance(c, 31 * USEC_PER_DAY);
        is_int(retention_sweep(c, &jobs, &events), 0, "second sweep");
        is_int(events, 6, "events older than 30 days deleted, the first sweep's own included");
        is_int(test_count_events(c, "job.submitted", old_pending), 0, "including the old job's submission event");
        is_int(test_count_events(c, "retention.sweep", NULL), 1, "the new sweep's own event remains");
        test_control_free(c);
}

static void test_zero_retention_keeps_everything(void) {
        Control *c = test_control_new();
        OpError err = {};
        size_t n;
        uint64_t jobs = 9, events = 9;
        const char *id = test_submit(c, 0);
        jobs_abort(c, NULL, id, NULL, NULL, &n, &err);
        test_advance(c, 1000 * USEC_PER_DAY);
        retention_sweep(c, &jobs, &events);
        ok(jobs == 0 && events == 0, "retention 0 days: nothing deleted");
        test_control_free(c);
}

static void test_retention_handles_more_than_one_batch(void) {
        Control *c = test_control_new();
        uint64_t jobs = 0;
        c->settings.job_retention_days = 1;
        sqlite3_exec(c->store->db,
                     "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 12000) "
                     "INSERT INTO jobs (job_id, status, command, created_at, updated_at) "
                     "SELECT 'j' || i, 'COMPLETED', 'x', 1, 1 FROM n",
                     NULL, NULL, NULL);
        retention_sweep(c, &jobs, NULL);
        is_int(jobs, 12000, "12000 old jobs deleted across batches");
        test_control_free(c);
}

int main(void) {
        test_retention_deletes_only_old_terminal_jobs_and_events();
        test_zero_retention_keeps_everything();
        test_retention_handles_more_than_one_batch();
        return tap_done();
}
