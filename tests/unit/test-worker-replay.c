/* test-worker-replay.c: the replay buffer: results committed before they are sent (they survive
 * a crash right after), delivery order, resolution, sequence numbers that only go up across
 * restarts (also when their reservation cannot be written: lease.c), the nonce kept forever, run
 * records, and which commits are fsynced (lazy run records and resolves, durable results). */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>

#include "json-util.h"
#include "macro.h"
#include "replay.h"
#include "tap.h"
#include "time-util.h"
#include "worker.h"

static char dir[] = "/tmp/entropy-test-replay-XXXXXX";
static char db[256];

static json_object *body_for(const char *job) {
        json_object *o = json_object_new_object();
        json_add_string(o, "job_id", job);
        json_add_int64(o, "exit_code", 0);
        return o;
}

static int add(Replay *r, const char *job, const char *assignment, ResultKind kind, int64_t *seq) {
        json_object *b = body_for(job);
        int k = replay_add_result(r, 0, kind, job, assignment, b, now_realtime_usec(), "exited", 0, NULL, seq);
        json_object_put(b);
        return k;
}

static void test_nonce_is_kept_forever(void) {
        _cleanup_free_ char *a = NULL, *b = NULL, *c = NULL;
        Replay *r = NULL;
        ok(replay_open(db, &r) == 0, "open");
        ok(replay_get_nonce(r, &a) == 0 && replay_get_nonce(r, &b) == 0 && streq(a, b), "same nonce twice");
        replay_close(r);
        ok(replay_open(db, &r) == 0 && replay_get_nonce(r, &c) == 0 && streq(a, c), "same nonce after reopen");
        replay_close(r);
}

static void test_heartbeat_seq_increases_across_restarts(void) {
        uint64_t last = 0, s = 0;
        bool increasing = true;
        for (int round = 0; round < 3; round++) {
                Replay *r = NULL;
                if (replay_open(db, &r) < 0)
                        tap_bail("open");
                /* Enough to cross a reservation block in one round. */
                for (int i = 0; i < REPLAY_SEQ_BLOCK + 5; i++) {
                        if (replay_next_heartbeat_seq(r, &s) < 0 || s <= last)
                                increasing = false;
                        last = s;
                }
                replay_close(r); /* like a crash: nothing is written at close */
        }
        ok(increasing, "heartbeat seq strictly increasing across 3 restarts (last %llu)", (unsigned long long) last);
}

/* What a full disk does to a reservation: the write fails (here the connection is made
 * read-only). */
static void refuse_writes(Replay *r, bool refuse) {
        if (sqlite3_exec(r->db, refuse ? "PRAGMA query_only = 1" : "PRAGMA query_only = 0", NULL, NULL, NULL) !=
            SQLITE_OK)
                tap_bail("PRAGMA query_only");
}

/* Heartbeats are at least 10ms apart (heartbeat-interval); the seqs sent without a reservation
 * rely on it across a restart. */
static uint64_t next_heartbeat_seq_paced(Worker *w) {
        nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
        return lease_next_heartbeat_seq(w);
}

/* A reservation that cannot be written (a full disk) used to stop the heartbeats, and with them
 * the renewal of every lease of the worker. Their seqs go on in memory past it, strictly
 * increasing; a restart before a reservation is written again starts above them, and the next
 * one that can be written covers them all. */
static void test_heartbeat_seq_goes_on_when_the_reservation_fails(void) {
        Worker w = {}, w2 = {};
        Replay *r3 = NULL;
        uint64_t last = 0, s;
        bool increasing = true;

        if (replay_open(db, &w.replay) < 0)
                tap_bail("open");
        lease_seed_heartbeat_seq(&w);
        refuse_writes(w.replay, true);
        /* To the end of what is reserved (nothing, after the seed), then past it. */
        for (int i = 0; i <= REPLAY_SEQ_BLOCK && w.heartbeat_seq_failures == 0; i++) {
                s = lease_next_heartbeat_seq(&w);
                increasing = increasing && s > last;
                last = s;
        }
        for (int i = 0; i < 3; i++) {
                s = next_heartbeat_seq_paced(&w);
                increasing = increasing && s > last;
                last = s;
        }
        ok(increasing && w.heartbeat_seq_failures > 0, "seqs go on, strictly increasing, while reservations fail");
        replay_close(w.replay); /* a crash: nothing more is written */

        if (replay_open(db, &w2.replay) < 0)
                tap_bail("open");
        lease_seed_heartbeat_seq(&w2);
        s = lease_next_heartbeat_seq(&w2);
        ok(s > last, "a restart starts above every seq sent without a reservation (%llu > %llu)",
           (unsigned long long) s, (unsigned long long) last);
        last = s;
        refuse_writes(w2.replay, true);
        for (int i = 0; i < REPLAY_SEQ_BLOCK + 5; i++) { /* across a reservation boundary */
                s = lease_next_heartbeat_seq(&w2);
                increasing = increasing && s > last;
                last = s;
        }
        ok(increasing && w2.heartbeat_seq_failures > 0, "and across a reservation that fails");
        refuse_writes(w2.replay, false);
        s = lease_next_heartbeat_seq(&w2);
        ok(s > last && w2.heartbeat_seq_failures == 0, "the reservation is tried again and written once it can be");
        last = s;
        replay_close(w2.replay);
        if (replay_open(db, &r3) < 0)
                tap_bail("open");
        ok(r3->hb_seq >= last, "the reservation written covers every seq sent (%llu >= %llu)",
           (unsigned long long) r3->hb_seq, (unsigned long long) last);
        replay_close(r3);
}

static void test_results_are_ordered_and_resolved(void) {
        Replay *r = NULL;
        ReplayEntry *e = NULL;
        size_t n = 0;
        int64_t s1, s2, s3, pending = -1;

        if (replay_open(db, &r) < 0)
                tap_bail("open");
        ok(add(r, "j1", "a1", RESULT_COMPLETE, &s1) == 0 && add(r, "j2", "a2", RESULT_FAIL, &s2) == 0 &&
                   add(r, "j3", "a3", RESULT_COMPLETE, &s3) == 0,
           "three results recorded");
        ok(s1 < s2 && s2 < s3, "completion seqs increase: %lld %lld %lld", (long long) s1, (long long) s2,
           (long long) s3);
        is_int(add(r, "j1", "a1", RESULT_FAIL, NULL), -EEXIST, "a second result for one assignment refused");
        ok(replay_list_pending(r, &e, &n) == 0 && n == 3, "three pending");
        ok(n == 3 && streq(e[0].job_id, "j1") && streq(e[1].job_id, "j2") && streq(e[2].job_id, "j3"),
           "oldest first");
        ok(n == 3 && e[1].kind == RESULT_FAIL && e[0].kind == RESULT_COMPLETE, "kinds kept");
        if (n == 3) {
                json_object *v;
                ok(json_object_object_get_ex(e[0].body, "completion_seq", &v) && json_object_get_int64(v) == s1,
                   "body carries its completion_seq");
                ok(replay_resolve(r, e[0].id, true, NULL) == 0, "accept first");
                ok(replay_resolve(r, e[1].id, false, "HTTP 409: superseded") == 0, "reject second for good");
        }
        replay_entries_free(e, n);
        ok(replay_count_pending(r, &pending) == 0 && pending == 1, "one left pending");
        ok(replay_has_pending_job(r, "j3") == 1 && replay_has_pending_job(r, "j1") == 0, "pending by job");
        replay_close(r);

        int64_t seq_after;
        ok(replay_open(db, &r) == 0 && replay_completion_seq(r, &seq_after) == 0 && seq_after == s3,
           "completion seq persisted (a refused duplicate consumed none)");
        ok(add(r, "j4", "a4", RESULT_COMPLETE, &s1) == 0 && s1 == s3 + 1, "and continues after reopen");
        ok(replay_prune(r, now_realtime_usec() + USEC_PER_SEC) == 0, "prune");
        ok(replay_count_pending(r, &pending) == 0 && pending == 2, "pruning keeps pending results");
        replay_close(r);
}

/* An answer that a full disk keeps from being written is kept in memory: the result is no longer
 * pending (it would be sent, and answered, again and again), and the answer is written by the
 * first listing that can write. */
static void test_answer_that_cannot_be_written_is_kept(void) {
        char path[sizeof(db) + 16];
        ReplayEntry *e = NULL;
        Replay *r = NULL;
        int64_t pending = -1, id;
        size_t n = 0;

        snprintf(path, sizeof(path), "%s/kept.db", dir);
        if (replay_open(path, &r) < 0 || add(r, "k1", "a1", RESULT_COMPLETE, NULL) < 0 ||
            add(r, "k2", "a2", RESULT_COMPLETE, NULL) < 0 || replay_list_pending(r, &e, &n) < 0 || n != 2)
                tap_bail("setup");
        id = e[0].id;
        replay_entries_free(e, n);
        refuse_writes(r, true);
        ok(replay_resolve(r, id, true, NULL) < 0 && r->n_unwritten == 1, "the answer cannot be written: kept");
        ok(replay_list_pending(r, &e, &n) == 0 && n == 1 && streq(e[0].job_id, "k2"), "the result is no longer listed");
        replay_entries_free(e, n);
        ok(replay_count_pending(r, &pending) == 0 && pending == 1, "nor counted");
        ok(replay_has_pending_job(r, "k1") == 0 && replay_has_pending_job(r, "k2") == 1, "nor pending by job");
        refuse_writes(r, false);
        ok(replay_list_pending(r, &e, &n) == 0 && n == 1 && r->n_unwritten == 0, "the next listing writes it");
        replay_entries_free(e, n);
        replay_close(r);
        ok(replay_open(path, &r) == 0 && replay_count_pending(r, &pending) == 0 && pending == 1,
           "on disk after a restart");
        replay_close(r);
}

/* The process that recorded a result dies by SIGKILL right after replay_add_result returned:
 * the result is there for the next process. */
static void test_result_survives_kill_right_after_commit(void) {
        pid_t pid = fork();
        int status;
        Replay *r = NULL;
        ReplayEntry *e = NULL;
        size_t n = 0;
        bool found = false;

        if (pid == 0) {
                Replay *c = NULL;
                if (replay_open(db, &c) < 0 || add(c, "crash-job", "crash-a", RESULT_COMPLETE, NULL) < 0)
                        _exit(1);
                raise(SIGKILL);
                _exit(2);
        }
        waitpid(pid, &status, 0);
        ok(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "writer killed after the commit");
        if (replay_open(db, &r) < 0)
                tap_bail("open");
        if (replay_list_pending(r, &e, &n) == 0)
                for (size_t i = 0; i < n; i++)
                        found = found || streq(e[i].job_id, "crash-job");
        ok(found, "result found by the next process");
        replay_entries_free(e, n);
        replay_close(r);
}

static void test_run_records_and_orphans(void) {
        Replay *r = NULL;
        OrphanRun *o = NULL;
        size_t n = 0;
        int64_t id1, id2;
        RunRecord rec = { "jr", "ar", 1, 0, "instance-A", now_realtime_usec() };

        if (replay_open(db, &r) < 0)
                tap_bail("open");
        ok(replay_run_begin(r, &rec, &id1) == 0 && replay_run_set_pid(r, id1, 4242, 777) == 0, "run recorded");
        rec.assignment_id = "ar2";
        ok(replay_run_begin(r, &rec, &id2) == 0 && replay_run_end(r, id2, now_realtime_usec(), "exited", 0, NULL) == 0,
           "second run ended");
        ok(replay_list_orphans(r, "instance-A", &o, &n) == 0 && n == 0, "own instance's runs are not orphans");
        free(o);
        ok(replay_list_orphans(r, "instance-B", &o, &n) == 0 && n == 1 && o[0].id == id1 && o[0].pid == 4242 &&
                   o[0].proc_start == 777,
           "a later instance sees the unfinished run with its pid");
        free(o);
        replay_close(r);
}

static int sync_level(Replay *r) {
        sqlite3_stmt *st = NULL;
        int level = -1;
        if (sqlite3_prepare_v2(r->db, "PRAGMA synchronous", -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
                level = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        return level;
}

static bool has_run(Replay *r, const char *job_id, const char *outcome) {
        sqlite3_stmt *st = NULL;
        bool found = false;
        if (sqlite3_prepare_v2(r->db, "SELECT 1 FROM runs WHERE job_id = ? AND outcome = ?", -1, &st, NULL) ==
            SQLITE_OK) {
                sqlite3_bind_text(st, 1, job_id, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 2, outcome, -1, SQLITE_STATIC);
                found = sqlite3_step(st) == SQLITE_ROW;
        }
        sqlite3_finalize(st);
        return found;
}

/* Run records and resolves are committed without an fsync of their own (synchronous=NORMAL, 1);
 * a result is committed at FULL (2) whatever came before it. */
static void test_lazy_writes_and_durable_results(void) {
        Replay *r = NULL;
        RunRecord rec = { "lazy-job", "lazy-a", 1, 0, "instance-L", now_realtime_usec() };
        ReplayEntry *e = NULL;
        size_t n = 0;
        int64_t id, seq;

        if (replay_open(db, &r) < 0)
                tap_bail("open");
        is_int(sync_level(r), 2, "opened at synchronous=FULL");
        ok(replay_run_begin(r, &rec, &id) == 0 && replay_run_set_pid(r, id, 4343, 1) == 0, "run recorded");
        is_int(sync_level(r), 1, "a run record is a lazy commit (NORMAL)");
        json_object *b = body_for("lazy-job");
        ok(replay_add_result(r, id, RESULT_COMPLETE, "lazy-job", "lazy-a", b, now_realtime_usec(), "exited", 0, NULL,
                             &seq) == 0,
           "result recorded after lazy writes");
        json_object_put(b);
        is_int(sync_level(r), 2, "the result was committed at FULL");
        ok(replay_list_pending(r, &e, &n) == 0 && n > 0, "result pending");
        for (size_t i = 0; i < n; i++)
                if (streq(e[i].job_id, "lazy-job"))
                        ok(replay_resolve(r, e[i].id, true, NULL) == 0, "resolved");
        replay_entries_free(e, n);
        is_int(sync_level(r), 1, "a resolve is a lazy commit");
        ok(replay_prune(r, 0) == 0, "prune");
        is_int(sync_level(r), 2, "any other write is committed at FULL again");
        replay_close(r);
}

/* A lazy commit is written to the WAL before it returns: a process that dies right after it
 * (kill -9, the crash the orphan scan is for) loses nothing. */
static void test_lazy_write_survives_kill(void) {
        pid_t pid = fork();
        int status;
        Replay *r = NULL;

        if (pid == 0) {
                Replay *c = NULL;
                RunRecord rec = { "killed-job", "killed-a", 1, 0, "instance-K", now_realtime_usec() };
                int64_t id;
                if (replay_open(db, &c) < 0 || replay_run_begin(c, &rec, &id) < 0 ||
                    replay_run_set_pid(c, id, 4444, 2) < 0)
                        _exit(1);
                raise(SIGKILL);
                _exit(2);
        }
        waitpid(pid, &status, 0);
        ok(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "writer killed after a lazy commit");
        if (replay_open(db, &r) < 0)
                tap_bail("open");
        ok(has_run(r, "killed-job", "running"), "its run record is there for the next process");
        replay_close(r);
}

/* Under the test-only crash VFS nothing is lazy: other processes read worker.db while the worker
 * runs, and could not see frames the VFS holds back. */
static void test_crash_vfs_commits_everything_durably(void) {
        pid_t pid = fork();
        int status;

        if (pid == 0) {
                Replay *c = NULL;
                RunRecord rec = { "vfs-job", "vfs-a", 1, 0, "instance-V", now_realtime_usec() };
                int64_t id;
                setenv("ENTROPY_CRASH_VFS", "1", 1);
                if (replay_open(db, &c) < 0 || replay_run_begin(c, &rec, &id) < 0)
                        _exit(1);
                _exit(!c->lazy_allowed && sync_level(c) == 2 ? 0 : 3);
        }
        waitpid(pid, &status, 0);
        ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "a run record under the crash VFS is committed at FULL");
}

int main(void) {
        if (!mkdtemp(dir))
                tap_bail("mkdtemp");
        snprintf(db, sizeof(db), "%s/worker.db", dir);
        test_nonce_is_kept_forever();
        test_heartbeat_seq_increases_across_restarts();
        test_heartbeat_seq_goes_on_when_the_reservation_fails();
        test_results_are_ordered_and_resolved();
        test_answer_that_cannot_be_written_is_kept();
        test_result_survives_kill_right_after_commit();
        test_run_records_and_orphans();
        test_lazy_writes_and_durable_results();
        test_lazy_write_survives_kill();
        test_crash_vfs_commits_everything_durably();
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        if (system(cmd) != 0)
                diag("cleanup failed");
        return tap_done();
}
