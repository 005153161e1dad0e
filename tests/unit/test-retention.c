/* test-retention.c: the retention sweep deletes terminal jobs (with their artifact records),
 * audit events and OFFLINE workers holding no job older than their retention, keeps everything
 * else, audits itself, and tells Control.on_jobs_deleted which jobs went once their deletion has
 * committed. On an event loop it deletes one batch per loop iteration. */
#include <inttypes.h>
#include <sys/epoll.h>
#include <unistd.h>

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
        is_int(n_del.events, 5, "events older than 30 days deleted, the first sweep's own included");
        is_int(test_count_events(c, "job.submitted", old_pending), 1, "but not the live job's submission event");
        is_int(test_count_events(c, "retention.sweep", NULL), 1, "the new sweep's own event remains");
        ok(d.calls == 2 && strv_length(d.ids) == 2 && streq(d.ids[1], new_done),
           "the second sweep told the other terminal job, old by now");
        is_int(retention_sweep(c, &n_del), 0, "third sweep");
        is_int(d.calls, 2, "a sweep that deleted no job told nothing");
        strv_free(d.ids);
        test_control_free(c);
}

/* A job that stays live past the event retention (here scheduled far ahead) keeps its whole
 * history until it ends; the events of ended jobs, deleted ones and of no job go as before. */
static void test_event_retention_keeps_the_history_of_live_jobs(void) {
        Control *c = test_control_new();
        OpError err = {};
        size_t n;
        RetentionCounts del = {};
        char live[RANDOM_ID_SIZE], done[RANDOM_ID_SIZE];
        JobSpec spec;

        c->settings.event_retention_days = 30;
        job_spec_init(&spec);
        spec.command = "/bin/true";
        spec.scheduled_at = T0 + 60 * USEC_PER_DAY;
        strcpy(live, test_submit_spec(c, &spec));
        strcpy(done, test_submit(c, 0));
        jobs_abort(c, NULL, done, NULL, NULL, &n, &err);
        test_register(c, "w1", NULL);
        test_advance(c, 31 * USEC_PER_DAY);

        is_int(retention_sweep(c, &del), 0, "sweep");
        is_int(test_count_events(c, "job.submitted", live), 1, "the live job's old submission event is kept");
        is_int(test_count_events(c, "job.submitted", done), 0, "an ended job's old events go");
        is_int(test_count_events(c, "job.aborted", done), 0, "all of them");
        is_int(test_count_events(c, "worker.registered", NULL), 0, "so do old events of no job");

        jobs_abort(c, NULL, live, NULL, NULL, &n, &err);
        is_int(retention_sweep(c, &del), 0, "sweep once the job has ended");
        is_int(test_count_events(c, "job.submitted", live), 0, "its old events go now");
        is_int(test_count_events(c, "job.aborted", live), 1, "its recent ones stay");

        /* The inner select of retention.c's statement: a range of audit_ts, one key look-up each. */
        static const char *const sql = "SELECT id FROM audit_events e WHERE ts < 5 AND NOT EXISTS (SELECT 1 FROM "
                                       "jobs j WHERE j.job_id = e.job_id AND j.status NOT IN ('COMPLETED', "
                                       "'FAILED', 'ABORTED')) LIMIT 10";
        ok(test_plan_uses(c, sql, "audit_ts"), "old events are found in audit_ts");
        ok(test_plan_uses(c, sql, "PRIMARY KEY (job_id=?)"), "their jobs by key");
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

static int64_t query_int(Control *c, const char *sql) {
        sqlite3_stmt *st = NULL;
        int64_t v = -1;

        if (sqlite3_prepare_v2(c->store->db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
                v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        return v;
}

static void seed_old_jobs(Control *c, int from, int to) {
        char sql[512];

        snprintf(sql, sizeof(sql),
                 "WITH RECURSIVE n(i) AS (SELECT %d UNION ALL SELECT i + 1 FROM n WHERE i < %d) "
                 "INSERT INTO jobs (job_id, status, command, created_at, updated_at) "
                 "SELECT 'j' || i, 'COMPLETED', 'x', 1, 1 FROM n",
                 from, to);
        if (sqlite3_exec(c->store->db, sql, NULL, NULL, NULL) != SQLITE_OK)
                tap_bail("seeding jobs: %s", sqlite3_errmsg(c->store->db));
}

static void test_retention_handles_more_than_one_batch(void) {
        Control *c = test_control_new();
        RetentionCounts del = {};
        Deleted d;

        watch_deletions(c, &d);
        c->settings.job_retention_days = 1;
        seed_old_jobs(c, 1, 12000);
        retention_sweep(c, &del);
        is_int(del.jobs, 12000, "12000 old jobs deleted across batches");
        is_int(d.calls, 3, "told once per batch");
        is_int(strv_length(d.ids), 12000, "of every deleted job");
        ok(d.committed && strv_contains(d.ids, "j1") && strv_contains(d.ids, "j12000"),
           "each after its batch had committed");
        strv_free(d.ids);
        test_control_free(c);
}

typedef struct Served {
        Control *c;
        int64_t total;
        unsigned mid_sweep;
} Served;

/* Stands for an HTTP request waiting on the loop: its fd is never read, so it stays readable. */
static int on_readable(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Served *v = userdata;
        int64_t left = query_int(v->c, "SELECT count(*) FROM jobs");

        if (left > 0 && left < v->total)
                v->mid_sweep++;
        return 0;
}

/* The daemon's way: the sweep is started on the loop and each iteration deletes one batch at most,
 * so that what else waits on the loop is served between two batches; its audit event still
 * counts the whole sweep, and a start while it is under way does not begin another. */
static void test_retention_deletes_one_batch_per_loop_iteration(void) {
        const int total = 3 * RETENTION_BATCH + 10;
        Control *c = test_control_new();
        _cleanup_(sd_event_source_unrefp) sd_event_source *io = NULL;
        Served v = {.c = c, .total = total};
        int fds[2];
        int64_t left = total, most = 0;
        unsigned iterations = 0, batches = 0;

        c->settings.job_retention_days = 1;
        seed_old_jobs(c, 1, total);
        if (sd_event_new(&c->event) < 0 || pipe(fds) < 0 || write(fds[1], "x", 1) != 1 ||
            sd_event_add_io(c->event, &io, fds[0], EPOLLIN, on_readable, &v) < 0)
                tap_bail("setting up the loop");

        is_int(retention_sweep(c, NULL), 0, "the sweep starts on the loop");
        is_int(query_int(c, "SELECT count(*) FROM jobs"), total, "and returns before its first batch");
        /* Until the sweep has recorded itself: its last step. */
        while (test_count_events(c, "retention.sweep", NULL) == 0 && iterations < 100) {
                if (sd_event_run(c->event, USEC_PER_SEC) < 0)
                        break;
                iterations++;
                int64_t now_left = query_int(c, "SELECT count(*) FROM jobs");
                if (left - now_left > most)
                        most = left - now_left;
                batches += now_left < left;
                left = now_left;
                if (iterations == 2)
                        is_int(retention_sweep(c, NULL), 0, "a start while the sweep is under way is a no-op");
        }
        is_int(left, 0, "every old job went");
        ok(most <= RETENTION_BATCH, "no loop iteration deleted more than one batch (at most %" PRId64 ")", most);
        ok(batches >= 4, "the deletions took %u iterations", batches);
        ok(v.mid_sweep > 0, "the loop served its other source between batches (%u times)", v.mid_sweep);
        is_int(test_count_events(c, "retention.sweep", NULL), 1, "one sweep audited");
        is_int(query_int(c, "SELECT json_extract(details, '$.jobs_deleted') FROM audit_events "
                            "WHERE event = 'retention.sweep'"),
               total, "with the whole sweep's count");

        /* The batch source outlives a sweep: a later one uses it again. */
        seed_old_jobs(c, total + 1, total + 5);
        is_int(retention_sweep(c, NULL), 0, "a second sweep starts");
        for (iterations = 0; test_count_events(c, "retention.sweep", NULL) < 2 && iterations < 20; iterations++)
                (void) sd_event_run(c->event, USEC_PER_SEC);
        is_int(query_int(c, "SELECT count(*) FROM jobs"), 0, "and deletes the jobs that became old since");
        is_int(test_count_events(c, "retention.sweep", NULL), 2, "audited too");

        io = sd_event_source_unref(io);
        close(fds[0]);
        close(fds[1]);
        test_control_free(c);
}

/* The daemon stops (its loop gone) with a sweep under way: what the committed batches deleted is
 * audited then, marked interrupted, and nothing more is deleted; the next sweep starts afresh. */
static void test_a_sweep_stopped_midway_records_what_it_deleted(void) {
        const int total = 2 * RETENTION_BATCH + 10;
        Control *c = test_control_new();

        c->settings.job_retention_days = 1;
        seed_old_jobs(c, 1, total);
        if (sd_event_new(&c->event) < 0)
                tap_bail("setting up the loop");
        is_int(retention_sweep(c, NULL), 0, "the sweep starts on the loop");
        for (unsigned i = 0; i < 10 && query_int(c, "SELECT count(*) FROM jobs") == total; i++)
                (void) sd_event_run(c->event, USEC_PER_SEC);
        is_int(query_int(c, "SELECT count(*) FROM jobs"), total - RETENTION_BATCH, "one batch went");
        is_int(test_count_events(c, "retention.sweep", NULL), 0, "the sweep is not over");

        retention_stop(c);
        is_int(test_count_events(c, "retention.sweep", NULL), 1, "stopping it records it");
        is_int(query_int(c, "SELECT json_extract(details, '$.jobs_deleted') FROM audit_events "
                            "WHERE event = 'retention.sweep'"),
               RETENTION_BATCH, "with what its batches deleted");
        is_int(query_int(c, "SELECT json_extract(details, '$.interrupted') FROM audit_events "
                            "WHERE event = 'retention.sweep'"),
               1, "marked interrupted");
        for (unsigned i = 0; i < 3; i++)
                (void) sd_event_run(c->event, 10 * USEC_PER_MSEC);
        is_int(query_int(c, "SELECT count(*) FROM jobs"), total - RETENTION_BATCH, "no batch after the stop");
        retention_stop(c);
        is_int(test_count_events(c, "retention.sweep", NULL), 1, "a second stop records nothing");

        is_int(retention_sweep(c, NULL), 0, "the next sweep starts");
        for (unsigned i = 0; i < 20 && test_count_events(c, "retention.sweep", NULL) < 2; i++)
                (void) sd_event_run(c->event, USEC_PER_SEC);
        is_int(query_int(c, "SELECT count(*) FROM jobs"), 0, "and deletes the rest");
        is_int(query_int(c, "SELECT json_extract(details, '$.jobs_deleted') FROM audit_events "
                            "WHERE event = 'retention.sweep' ORDER BY id DESC LIMIT 1"),
               total - RETENTION_BATCH, "counting only its own");
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

/* Disposable worker ids (containers, CI runners) leave many old workers: they go a batch per loop
 * iteration, as jobs do, and the ones kept (here one holding a job, in the middle of the id
 * order) neither stop the sweep nor make it go round in circles. */
static void test_worker_retention_goes_in_batches(void) {
        const int total = 2 * RETENTION_WORKER_BATCH + 20;
        Control *c = test_control_new();
        int64_t left = total, most = 0;
        unsigned iterations = 0;
        char id[32];

        c->settings.worker_retention_days = 7;
        c->settings.job_retention_days = c->settings.event_retention_days = 0;
        for (int i = 0; i < total; i++) {
                snprintf(id, sizeof(id), "w-%04d", i);
                test_register(c, id, NULL);
        }
        const char *job = test_submit(c, 0);
        test_advance(c, 8 * USEC_PER_DAY);
        test_force(c, "status = 'RUNNING', worker_id = 'w-0100', assignment_id = 'a1'", job);
        if (sd_event_new(&c->event) < 0)
                tap_bail("sd_event_new");

        is_int(retention_sweep(c, NULL), 0, "the sweep starts on the loop");
        while (test_count_events(c, "retention.sweep", NULL) == 0 && iterations < 100) {
                if (sd_event_run(c->event, USEC_PER_SEC) < 0)
                        break;
                iterations++;
                int64_t now_left = query_int(c, "SELECT count(*) FROM workers");
                most = MAX(most, left - now_left);
                left = now_left;
        }
        is_int(left, 1, "every old worker went but the one holding a job");
        ok(most <= RETENTION_WORKER_BATCH, "at most %d in one loop iteration (%" PRId64 ")", RETENTION_WORKER_BATCH,
           most);
        ok(iterations >= 3, "in %u iterations", iterations);
        is_int(query_int(c, "SELECT json_extract(details, '$.workers_removed') FROM audit_events "
                            "WHERE event = 'retention.sweep'"),
               total - 1, "the sweep's event counts them all");
        test_control_free(c);
}

int main(void) {
        test_retention_deletes_only_old_terminal_jobs_and_events();
        test_event_retention_keeps_the_history_of_live_jobs();
        test_zero_or_huge_retention_keeps_everything();
        test_retention_handles_more_than_one_batch();
        test_retention_deletes_one_batch_per_loop_iteration();
        test_a_sweep_stopped_midway_records_what_it_deleted();
        test_worker_retention_removes_offline_workers_holding_no_job();
        test_worker_retention_goes_in_batches();
        return tap_done();
}
