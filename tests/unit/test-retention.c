/* test-retention.c: the retention sweep deletes terminal jobs (with their artifact records),
 * audit events and OFFLINE workers holding no job older than their retention, keeps everything
 * else, audits itself, and tells Control.on_jobs_deleted which jobs went once their deletion has
 * committed. */
#include <inttypes.h>

#include "core-test-util.h"
#include "retention.h"
#include "store.h"
#include "strv.h"
#include "tap.h"

typedef struct Deleted {
        Control *c;
        char **ids; /* every id told, in order */
        unsigned calls;
        bool committed; /* every call came with no transaction open and the rows gone */
} Deleted;

static void on_jobs_deleted(void *userdata, char *const *job_ids) {
        Deleted *d = userdata;

        d->calls++;
        if (!sqlite3_get_autocommit(d->c->store->db))
                d->committed = false;
        STRV_FOREACH (id, (char **) job_ids) {
                if (test_job_state(d->c, *id) != _JOB_STATE_INVALID)
                        d->committed = false;
                (void) strv_extend(&d->ids, *id);
        }
}

static void watch_deletions(Control *c, Deleted *d) {
        *d = (Deleted){.c = c, .committed = true};
        c->on_jobs_deleted = on_jobs_deleted;
        c->on_jobs_deleted_userdata = d;
}

static void test_retention_deletes_only_old_terminal_jobs_and_events(void) {
        Control *c = test_control_new();
        OpError err = {};
        size_t n;
        RetentionCounts n_del = {};
        char old_done[RANDOM_ID_SIZE], old_pending[RANDOM_ID_SIZE], new_done[RANDOM_ID_SIZE];
        Deleted d;

        watch_deletions(c, &d);
        c->settings.job_retention_days = 7;
        c->settings.event_retention_days = 30;
        strcpy(old_done, test_submit(c, 0));
        strcpy(old_pending, test_submit(c, 0));
        jobs_abort(c, NULL, old_done, NULL, NULL, &n, &err);
        test_advance(c, 8 * USEC_PER_DAY);
        strcpy(new_done, test_submit(c, 0));
        jobs_abort(c, NULL, new_done, NULL, NULL, &n, &err);

        is_int(retention_sweep(c, &n_del), 0, "sweep");
        is_int(n_del.jobs, 1, "one job deleted");
        is_int(n_del.events, 0, "no event old enough yet");
        is_int(test_job_state(c, old_done), _JOB_STATE_INVALID,
               "the old terminal job is gone (with its artifact record)");
        is_int(test_job_state(c, old_pending), JOB_PENDING, "an old non-terminal job is kept");
        is_int(test_job_state(c, new_done), JOB_ABORTED, "a recent terminal job is kept");
        is_int(test_count_events(c, "retention.sweep", NULL), 1, "the sweep audited itself");
        ok(strv_length(d.ids) == 1 && streq(d.ids[0], old_done), "on_jobs_deleted told the deleted job's id");
        ok(d.committed, "after its deletion had committed");

        test_advance(c, 31 * USEC_PER_DAY);
        is_int(retention_sweep(c, &n_del), 0, "second sweep");
        is_int(n_del.events, 6, "events older than 30 days deleted, the first sweep's own included");
        is_int(test_count_events(c, "job.submitted", old_pending), 0, "including the old job's submission event");
        is_int(test_count_events(c, "retention.sweep", NULL), 1, "the new sweep's own event remains");
        ok(d.calls == 2 && strv_length(d.ids) == 2 && streq(d.ids[1], new_done),
           "the second sweep told the other terminal job, old by now");
        is_int(retention_sweep(c, &n_del), 0, "third sweep");
        is_int(d.calls, 2, "a sweep that deleted no job told nothing");
        strv_free(d.ids);
        test_control_free(c);
}

/* 0 means keep everything; so does an operator's "forever", a number of days large enough that
 * days * USEC_PER_DAY would wrap around to hours. */
static void test_zero_or_huge_retention_keeps_everything(void) {
        static const int64_t days[] = {0, 213503983};
        for (size_t i = 0; i < ELEMENTSOF(days); i++) {
                Control *c = test_control_new();
                OpError err = {};
                size_t n;
                RetentionCounts del = {9, 9, 9};
                _cleanup_(worker_freep) Worker *w = NULL;
                const char *id = test_submit(c, 0);
                jobs_abort(c, NULL, id, NULL, NULL, &n, &err);
                test_register(c, "w-idle", NULL);
                test_advance(c, 1000 * USEC_PER_DAY);
                c->settings.job_retention_days = c->settings.event_retention_days = days[i];
                c->settings.worker_retention_days = days[i];
                retention_sweep(c, &del);
                ok(del.jobs == 0 && del.events == 0 && del.workers == 0, "retention %" PRId64 " days: nothing deleted",
                   days[i]);
                is_int(test_job_state(c, id), JOB_ABORTED, "the 1000-day-old job is kept");
                is_int(worker_get(c, "w-idle", &w), 0, "so is the worker last seen 1000 days ago");
                test_control_free(c);
        }
}

static void test_retention_handles_more_than_one_batch(void) {
        Control *c = test_control_new();
        RetentionCounts del = {};
        Deleted d;

        watch_deletions(c, &d);
        c->settings.job_retention_days = 1;
        sqlite3_exec(c->store->db,
                     "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 12000) "
                     "INSERT INTO jobs (job_id, status, command, created_at, updated_at) "
                     "SELECT 'j' || i, 'COMPLETED', 'x', 1, 1 FROM n",
                     NULL, NULL, NULL);
        retention_sweep(c, &del);
        is_int(del.jobs, 12000, "12000 old jobs deleted across batches");
        is_int(d.calls, 3, "told once per batch");
        is_int(strv_length(d.ids), 12000, "of every deleted job");
        ok(d.committed && strv_contains(d.ids, "j1") && strv_contains(d.ids, "j12000"),
           "each after its batch had committed");
        strv_free(d.ids);
        test_control_free(c);
}

static void test_worker_retention_removes_offline_workers_holding_no_job(void) {
        Control *c = test_control_new();
        RetentionCounts del = {};
        Worker *w = NULL;

        c->settings.worker_retention_days = 7;
        c->settings.job_retention_days = c->settings.event_retention_days = 0;
        test_register(c, "w-gone", NULL);
        test_register(c, "w-busy", NULL);
        const char *id = test_submit(c, 0);
        test_advance(c, 8 * USEC_PER_DAY);
        test_register(c, "w-recent", NULL);
        /* Set up directly: a job w-busy still holds (a lease long enough to outlast its silence). */
        test_force(c, "status = 'RUNNING', worker_id = 'w-busy', assignment_id = 'a1'", id);

        is_int(retention_sweep(c, &del), 0, "sweep");
        is_int(del.workers, 1, "one worker removed");
        is_int(worker_get(c, "w-gone", &w), -ENOENT, "the OFFLINE worker that holds nothing is gone");
        is_int(worker_get(c, "w-busy", &w), 0, "one that still holds a job is kept");
        w = worker_free(w);
        is_int(worker_get(c, "w-recent", &w), 0, "one seen within the retention is kept");
        w = worker_free(w);
        is_int(test_count_events(c, "worker.removed", NULL), 1, "the removal is audited");

        /* A job LOST under its assignment still binds it: its result would be accepted. */
        test_force(c, "status = 'LOST'", id);
        is_int(retention_sweep(c, &del), 0, "sweep with the job LOST");
        is_int(del.workers, 0, "w-busy is kept while its job is LOST");

        /* Right after a restart every worker counts as seen then: none is OFFLINE yet. */
        test_force(c, "status = 'COMPLETED'", id);
        c->started_at = c->clock_override;
        is_int(retention_sweep(c, &del), 0, "sweep just after a restart");
        is_int(del.workers, 0, "w-busy, its job done, waits until it is OFFLINE again");
        test_advance(c, c->settings.heartbeat_timeout + USEC_PER_SEC);
        is_int(retention_sweep(c, &del), 0, "sweep once it is");
        is_int(del.workers, 1, "now it goes");
        test_control_free(c);
}

int main(void) {
        test_retention_deletes_only_old_terminal_jobs_and_events();
        test_zero_or_huge_retention_keeps_everything();
        test_retention_handles_more_than_one_batch();
        test_worker_retention_removes_offline_workers_holding_no_job();
        return tap_done();
}
