/* test-worker-maintenance.c: the worker's log retention (worker_prune) against the runs it holds:
 * what a run in any phase still needs stays, what nothing needs goes. And the clock a held run's
 * lease is counted on (lease.c). */
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs-util.h"
#include "macro.h"
#include "tap.h"
#include "worker.h"

static char dir[] = "/tmp/entropy-test-maintenance-XXXXXX";

static bool job_dir_exists(const char *job_id) {
        char p[PATH_MAX];
        snprintf(p, sizeof(p), "%s/artifacts/%s", dir, job_id);
        return access(p, F_OK) == 0;
}

/* A job's artifact directory as artifacts_open() leaves it, last modified two hours ago (the
 * directory's mtime is set when the run starts: a long job's is older than the retention). */
static void make_old_job_dir(const char *job_id) {
        char p[PATH_MAX];
        struct timespec old[2] = { { .tv_sec = time(NULL) - 2 * 3600 }, { .tv_sec = time(NULL) - 2 * 3600 } };

        snprintf(p, sizeof(p), "%s/artifacts/%s/as1", dir, job_id);
        if (mkdir_parents_and_self(p, 0700) < 0)
                tap_bail("mkdir %s", p);
        snprintf(p, sizeof(p), "%s/artifacts/%s", dir, job_id);
        if (utimensat(AT_FDCWD, p, old, 0) < 0)
                tap_bail("utimensat %s", p);
}

static Run *fake_run(Worker *w, const char *job_id, RunPhase phase) {
        Run *r = calloc(1, sizeof(Run));
        JobSpec *spec = calloc(1, sizeof(JobSpec));
        if (!r || !spec)
                tap_bail("calloc");
        spec->job_id = strdup(job_id);
        spec->assignment_id = strdup("as1");
        r->worker = w;
        r->spec = spec;
        r->phase = phase;
        return r;
}

static void free_fake_run(Run *r) {
        free(r->spec->job_id);
        free(r->spec->assignment_id);
        free(r->spec);
        free(r);
}

static void test_retention_spares_running_and_finishing_runs(void) {
        _cleanup_free_ char *db = NULL;
        Worker w = { .n_slots = 1 };
        Run *slot[1];

        if (asprintf(&db, "%s/worker.db", dir) < 0 || replay_open(db, &w.replay) < 0)
                tap_bail("replay_open");
        w.settings.state_directory = dir;
        w.settings.log_retention = USEC_PER_HOUR;
        slot[0] = fake_run(&w, "job-running", RUN_RUNNING);
        w.slots = slot;
        /* Out of its slot, its artifacts with the finisher thread; no result recorded yet. */
        w.finishing = fake_run(&w, "job-finishing", RUN_FINISHING);
        make_old_job_dir("job-running");
        make_old_job_dir("job-finishing");
        make_old_job_dir("job-done");

        is_int(worker_prune(&w, now_realtime_usec()), 1, "one directory removed");
        ok(!job_dir_exists("job-done"), "the directory of a job nothing holds any more is removed");
        ok(job_dir_exists("job-running"), "the directory of a running job is kept");
        ok(job_dir_exists("job-finishing"), "the directory of a finishing job (artifacts still being finalized) is kept");

        free_fake_run(slot[0]);
        free_fake_run(w.finishing);
        replay_close(w.replay);
}

/* 0 keeps for ever, as the control plane's retention 0 does; it used to delete everything. */
static void test_retention_zero_keeps_everything(void) {
        _cleanup_free_ char *db = NULL;
        Worker w = {};

        if (asprintf(&db, "%s/worker.db", dir) < 0 || replay_open(db, &w.replay) < 0)
                tap_bail("replay_open");
        w.settings.state_directory = dir;
        w.settings.log_retention = 0;
        make_old_job_dir("job-kept");
        is_int(worker_prune(&w, now_realtime_usec()), 0, "log-retention=0: nothing removed");
        ok(job_dir_exists("job-kept"), "log-retention=0: an old directory nothing holds is kept");
        replay_close(w.replay);
}

/* Leases count on CLOCK_BOOTTIME, as the control plane's do: the monotonic clock stops while the
 * host is suspended, and a lease counted on it outlasted the control plane's after a resume. A
 * send time an hour ahead of now is one no clock of this host gives yet: only the values passed
 * in can make the arithmetic come out as checked. */
static void test_lease_counts_on_boottime(void) {
        Worker w = {.n_slots = 1};
        Run *r = fake_run(&w, "job-lease", RUN_RUNNING);
        usec_t sent = now_boottime_usec() + USEC_PER_HOUR, due = 0;
        ClientReply claim = {.status = 200, .sent_boot = sent, .received_real = now_realtime_usec()};
        clockid_t clock = CLOCK_REALTIME;

        if (sd_event_new(&w.event) < 0)
                tap_bail("sd_event_new");
        w.settings.lease_timeout = 30 * USEC_PER_SEC;
        r->spec->lease_timeout_ms = 10000;
        lease_init(r, &claim);
        is_int(r->lease_base, sent, "the lease counts from the claim's send time");
        is_int(lease_stop_at(r), sent + 8 * USEC_PER_SEC, "the stop is due a fifth of the 10s lease before its end");
        lease_arm(r);
        ok(r->lease_timer && sd_event_source_get_time_clock(r->lease_timer, &clock) >= 0 && clock == CLOCK_BOOTTIME,
           "the lease timer is on CLOCK_BOOTTIME");
        ok(r->lease_timer && sd_event_source_get_time(r->lease_timer, &due) >= 0 && due == lease_stop_at(r),
           "armed for that stop");
        lease_renewed(r, sent + 5 * USEC_PER_SEC, 0);
        ok(sd_event_source_get_time(r->lease_timer, &due) >= 0 && due == sent + 13 * USEC_PER_SEC,
           "a renewal sent 5s later moves the stop by 5s");
        lease_renewed(r, sent + USEC_PER_SEC, 0);
        is_int(r->lease_base, sent + 5 * USEC_PER_SEC, "an answer to an older renewal moves nothing");
        is_int(lease_kill_grace(r), USEC_PER_SEC, "a lease stop in time gets a tenth of the lease as its grace");
        r->lease_base = now_boottime_usec() - 11 * USEC_PER_SEC;
        is_int(lease_kill_grace(r), 0, "one after the lease ran out (a suspend through it) gets none");

        lease_start(&w);
        ok(w.heartbeat_timer && sd_event_source_get_time_clock(w.heartbeat_timer, &clock) >= 0 &&
                   clock == CLOCK_BOOTTIME,
           "the heartbeat timer is on CLOCK_BOOTTIME: the first heartbeat after a resume goes out at once");

        sd_event_source_disable_unref(w.heartbeat_timer);
        sd_event_source_disable_unref(r->lease_timer);
        free_fake_run(r);
        sd_event_unref(w.event);
}

int main(void) {
        if (!mkdtemp(dir))
                tap_bail("mkdtemp");
        test_retention_spares_running_and_finishing_runs();
        test_retention_zero_keeps_everything();
        test_lease_counts_on_boottime();
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        if (system(cmd) != 0)
                diag("cleanup of %s failed", dir);
        return tap_done();
}
