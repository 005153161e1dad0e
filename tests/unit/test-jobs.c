/* test-jobs.c: the worker protocol at the domain level: claim, ack, heartbeat, complete, fail,
 * abort, reconnect; fencing by assignment_id and the idempotency rules of jobs.h. */
#include "audit.h"
#include "core-test-util.h"
#include "reconcile.h"
#include "store.h"
#include "strv.h"
#include "tap.h"

static Completion completion_for(const Job *j, const char *worker_id) {
        return (Completion){.job_id = j->job_id,
                            .worker_id = worker_id,
                            .assignment_id = j->assignment_id,
                            .has_exit_code = true,
                            .exit_code = 0,
                            .completion_seq = 1,
                            .stdout_path = "/var/lib/w/out",
                            .stdout_tmp_path = "/var/lib/w/out.tmp",
                            .stderr_path = "/var/lib/w/err",
                            .stderr_tmp_path = "/var/lib/w/err.tmp",
                            .stdout_sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"};
}

static void test_claim_assigns_fresh_assignment_with_lease(void) {
        Control *c = test_control_new();
        test_register(c, "w1", NULL);
        const char *id = test_submit(c, 0);
        _cleanup_(job_freep) Job *j = test_claim(c, "w1");
        ok(j && streq(j->job_id, id), "the job is claimed");
        is_int(j->status, JOB_ASSIGNED, "ASSIGNED");
        ok(j->assignment_id && strlen(j->assignment_id) == 32, "a fresh 128-bit assignment id");
        ok(j->assignment_expires_at == T0 + c->settings.lease_timeout, "expiry is now + lease_timeout");
        is_int(j->attempt_count, 1, "attempt_count incremented");
        is_str(j->worker_id, "w1", "worker recorded");
        _cleanup_(job_freep) Job *none = test_claim(c, "w1");
        ok(!none, "nothing left: 0 and no job");
        test_control_free(c);
}

static void test_unregistered_worker_is_refused(void) {
        Control *c = test_control_new();
        Job *j = NULL;
        OpError err = {};
        test_submit(c, 0);
        is_int(jobs_claim(c, NULL, "ghost", &j), -EPERM, "claim by an unregistered worker: -EPERM");
        is_int(worker_heartbeat(c, NULL, "ghost", NULL, 1, NULL, &err), -EPERM, "heartbeat too");
        test_control_free(c);
}

static void test_ack_moves_to_running_and_repeat_is_noop(void) {
        Control *c = test_control_new();
        OpError err = {};
        test_register(c, "w1", NULL);
        test_submit(c, 0);
        _cleanup_(job_freep) Job *j = test_claim(c, "w1");
        is_int(jobs_ack(c, NULL, j->job_id, "w1", j->assignment_id, &err), 0, "ack applied");
        is_int(test_job_state(c, j->job_id), JOB_RUNNING, "RUNNING");
        is_int(jobs_ack(c, NULL, j->job_id, "w1", j->assignment_id, &err), OP_NOOP, "repeated ack is a no-op");
        is_int(jobs_ack(c, NULL, j->job_id, "w2", j->assignment_id, &err), -EPERM, "ack from an unknown worker: 403");
        test_register(c, "w2", NULL);
        is_int(jobs_ack(c, NULL, j->job_id, "w2", j->assignment_id, &err), -ESTALE, "ack from the wrong worker: 409");
        is_int(jobs_ack(c, NULL, j->job_id, "w1", "0000", &err), -ESTALE, "ack with a wrong assignment: 409");
        is_int(jobs_ack(c, NULL, "nope", "w1", j->assignment_id, &err), -ENOENT, "ack of an unknown job: 404");
        test_control_free(c);
}

static void test_ack_after_lease_expiry_is_refused_and_requeues(void) {
        Control *c = test_control_new();
        OpError err = {};
        test_register(c, "w1", NULL);
        test_submit(c, 0);
        _cleanup_(job_freep) Job *j = test_claim(c, "w1");
        test_advance(c, c->settings.lease_timeout);
        is_int(jobs_ack(c, NULL, j->job_id, "w1", j->assignment_id, &err), -ESTALE, "late ack refused: 409");
        _cleanup_(job_freep) Job *after = NULL;
        jobs_get(c, j->job_id, &after);
        is_int(after->status, JOB_PENDING, "job back to PENDING");
        is_int(after->attempt_count, 0, "the unacknowledged attempt is given back");
        ok(!after->assignment_id, "assignment cleared");
        test_control_free(c);
}

static void test_completion_stores_result_and_duplicate_is_noop(void) {
        Control *c = test_control_new();
        OpError err = {};
        JobState st;
        test_register(c, "w1", NULL);
        test_submit(c, 0);
        _cleanup_(job_freep) Job *j = test_claim_and_ack(c, "w1");
        Completion x = completion_for(j, "w1");
        is_int(jobs_complete(c, NULL, &x, &st, &err), 0, "completion applied");
        is_int(st, JOB_COMPLETED, "COMPLETED");
        is_int(jobs_complete(c, NULL, &x, &st, &err), OP_NOOP, "the same completion again is a no-op");
        is_int(st, JOB_COMPLETED, "and reports COMPLETED");
        is_int(test_count_events(c, "job.completed", j->job_id), 1, "completed exactly once");
        _cleanup_(job_freep) Job *after = NULL;
        jobs_get(c, j->job_id, &after);
        is_str(after->stdout_sha256, x.stdout_sha256, "stdout SHA-256 stored");
        is_str(after->stdout_path, "/var/lib/w/out", "final stdout path stored");
        ok(after->has_exit_code && after->exit_code == 0, "exit code stored");
        is_int(after->completion_seq, 1, "completion_seq stored");
        test_control_free(c);
}

static void test_artifact_contract_is_enforced(void) {
        Control *c = test_control_new();
        OpError err = {};
        test_register(c, "w1", NULL);
        test_submit(c, 0);
        _cleanup_(job_freep) Job *j = test_claim_and_ack(c, "w1");
        Completion x = completion_for(j, "w1");
        x.stdout_tmp_path = "/var/lib/w/other.tmp";
        is_int(jobs_complete(c, NULL, &x, NULL, &err), -EINVAL, "tmp name not final + .tmp: refused");
        x = completion_for(j, "w1");
        x.stdout_path = "/var/lib/w/out.tmp";
        x.stdout_tmp_path = "/var/lib/w/out.tmp.tmp";
        is_int(jobs_complete(c, NULL, &x, NULL, &err), -EINVAL, "final name ending in .tmp: refused");
        x = completion_for(j, "w1");
        x.stderr_tmp_path = NULL;
        is_int(jobs_complete(c, NULL, &x, NULL, &err), -EINVAL, "final name without its tmp name: refused");
        x = completion_for(j, "w1");
        x.stdout_sha256 = "xyz";
        is_int(jobs_complete(c, NULL, &x, NULL, &err), -EINVAL, "malformed SHA-256: refused");
        is_int(test_job_state(c, j->job_id), JOB_RUNNING, "nothing changed");
        test_control_free(c);
}

static void test_superseded_assignment_is_refused(void) {
        Control *c = test_control_new();
        OpError err = {};
        JobState st;
        test_register(c, "w1", NULL);
        test_register(c, "w2", NULL);
        test_submit(c, 0);
        _cleanup_(job_freep) Job *first = test_claim(c, "w1");
        /* w1 never acks: the lease runs out and w2 gets the job. */
        test_advance(c, c->settings.lease_timeout + USEC_PER_SEC);
        test_sweep(c);
        _cleanup_(job_freep) Job *second = test_claim_and_ack(c, "w2");
        ok(!streq(first->assignment_id, second->assignment_id), "the second assignment is new");
        Completion stale = completion_for(first, "w1");
        is_int(jobs_complete(c, NULL, &stale, &st, &err), -ESTALE, "completion with the superseded assignment: 409");
        Failure f = {.job_id = first->job_id, .worker_id = "w1", .assignment_id = first->assignment_id};
        is_int(jobs_fail(c, NULL, &f, &st, &err), -ESTALE, "failure with it: 409");
        is_int(test_count_events(c, "job.assignment_stale", first->job_id), 2, "both refusals audited");
        is_int(test_job_state(c, first->job_id), JOB_RUNNING, "never applied: w2 still runs it");
        Completion good = completion_for(second, "w2");
        is_int(jobs_complete(c, NULL, &good, &st, &err), 0, "the current assignment completes");
        is_int(jobs_complete(c, NULL, &stale, &st, &err), -ESTALE, "a stale one stays refused after completion");
        test_control_free(c);
}

static void test_completion_of_latest_assignment_accepted_after_lost(void) {
        Control *c = test_control_new();
        OpError err = {};
        JobState st;
        test_register(c, "w1", NULL);
        test_submit(c, 0);
        _cleanup_(job_freep) Job *j = test_claim_and_ack(c, "w1");
        /* Lease expires without renewal: LOST, then RETRYING in the same sweep. */
        test_advance(c, c->settings.lease_timeout + 1);
        test_sweep(c);
        is_int(test_job_state(c, j->job_id), JOB_RETRYING, "lost job is RETRYING");
        Completion x = completion_for(j, "w1");
        is_int(jobs_complete(c, NULL, &x, &st, &err), 0, "late completion of the latest assignment accepted");
        is_int(st, JOB_COMPLETED, "COMPLETED");
        test_control_free(c);
}

static void test_fail_retries_then_fails_and_repeat_is_noop(void) {
        Control *c = test_control_new();
        OpError err = {};
        JobState st;
        JobSpec s;
        job_spec_init(&s);
        s.command = "/bin/false";
        s.max_attempts = 2;
        test_register(c, "w1", NULL);
        const char *id = test_submit_spec(c, &s);

        _cleanup_(job_freep) Job *a = test_claim_and_ack(c, "w1");
        Failure f = {.job_id = id,
                     .worker_id = "w1",
                     .assignment_id = a->assignment_id,
                     .has_exit_code = true,
                     .exit_code = 3,
                     .error = "exit 3"};
        is_int(jobs_fail(c, NULL, &f, &st, &err), 0, "failure applied");
        is_int(st, JOB_RETRYING, "attempts left: RETRYING");
        is_int(jobs_fail(c, NULL, &f, &st, &err), OP_NOOP, "the same failure again is a no-op");
        is_int(st, JOB_RETRYING, "and reports the real state");
        _cleanup_(job_freep) Job *r1 = NULL;
        jobs_get(c, id, &r1);
        ok(r1->retry_at == T0 + c->settings.retry_backoff, "retry after the base backoff (attempt 1)");
        is_str(r1->last_error, "exit 3", "error kept");

        test_advance(c, c->settings.retry_backoff);
        test_sweep(c);
        _cleanup_(job_freep) Job *b = test_claim_and_ack(c, "w1");
        is_int(b->attempt_count, 2, "second attempt");
        f.assignment_id = b->assignment_id;
        is_int(jobs_fail(c, NULL, &f, &st, &err), 0, "second failure applied");
        is_int(st, JOB_FAILED, "no attempts left: FAILED");
        is_int(jobs_fail(c, NULL, &f, &st, &err), OP_NOOP, "failure of a terminal job is a no-op");
        Completion x = completion_for(b, "w1");
        is_int(jobs_complete(c, NULL, &x, &st, &err), OP_NOOP, "completion of a FAILED job is a no-op");
        is_int(st, JOB_FAILED, "reporting FAILED");
        test_control_free(c);
}

static void test_fail_before_ack_is_refused(void) {
        Control *c = test_control_new();
        OpError err = {};
        test_register(c, "w1", NULL);
        test_submit(c, 0);
        _cleanup_(job_freep) Job *j = test_claim(c, "w1");
        Failure f = {.job_id = j->job_id, .worker_id = "w1", .assignment_id = j->assignment_id, .error = "x"};
        is_int(jobs_fail(c, NULL, &f, NULL, &err), -EBUSY, "failure of an ASSIGNED job: 409");
        is_int(test_count_events(c, "job.transition_refused", j->job_id), 1, "audited as a refused transition");
        test_control_free(c);
}

static void test_heartbeat_seq_and_lease_renewal(void) {
        Control *c = test_control_new();
        OpError err = {};
        test_register(c, "w1", NULL);
        test_submit(c, 0);
        _cleanup_(job_freep) Job *j = test_claim_and_ack(c, "w1");
        test_advance(c, 5 * USEC_PER_SEC);
        is_int(worker_heartbeat(c, NULL, "w1", j->job_id, 5, "{\"load\":1}", &err), 0, "heartbeat accepted");
        _cleanup_(job_freep) Job *after = NULL;
        jobs_get(c, j->job_id, &after);
        ok(after->assignment_expires_at == T0 + 5 * USEC_PER_SEC + c->settings.lease_timeout, "lease renewed");
        is_int(worker_heartbeat(c, NULL, "w1", j->job_id, 5, NULL, &err), OP_NOOP, "same seq ignored");
        is_int(worker_heartbeat(c, NULL, "w1", j->job_id, 4, NULL, &err), OP_NOOP, "older seq ignored");
        _cleanup_(worker_freep) Worker *w = NULL;
        worker_get(c, "w1", &w);
        is_int(w->heartbeat_seq, 5, "seq kept at the highest");
        is_str(w->metrics, "{\"load\":1}", "metrics stored (not overwritten by ignored ones)");
        is_str(w->current_job_id, j->job_id, "current job stored");
        char big[LIMIT_METRICS_LEN + 2];
        memset(big, 'x', sizeof(big) - 1);
        big[sizeof(big) - 1] = 0;
        is_int(worker_heartbeat(c, NULL, "w1", NULL, 6, big, &err), -EINVAL, "oversized metrics refused");
        test_control_free(c);
}

/* A worker that no longer reports a job (it never heard its ack was applied, or let it go) must not
 * keep its lease alive by heartbeating: the job expires and is recovered. */
static void test_heartbeat_renews_only_the_jobs_reported(void) {
        Control *c = test_control_new();
        OpError err = {};
        test_register(c, "w1", NULL);
        test_submit(c, 0);
        test_submit(c, 0);
        test_submit(c, 0);
        _cleanup_(job_freep) Job *a = test_claim_and_ack(c, "w1");
        _cleanup_(job_freep) Job *b = test_claim_and_ack(c, "w1");
        _cleanup_(job_freep) Job *d = test_claim_and_ack(c, "w1");
        test_advance(c, 5 * USEC_PER_SEC);
        HeldJob held[] = { { a->job_id, a->assignment_id }, { d->job_id, "not-its-assignment" } };
        Heartbeat hb = { .worker_id = "w1", .seq = 1, .jobs = held, .n_jobs = 2 };
        is_int(worker_heartbeat_report(c, NULL, &hb, NULL, &err), 0, "heartbeat accepted");
        usec_t renewed = T0 + 5 * USEC_PER_SEC + c->settings.lease_timeout;
        _cleanup_(job_freep) Job *a2 = NULL, *b2 = NULL, *d2 = NULL;
        jobs_get(c, a->job_id, &a2);
        jobs_get(c, b->job_id, &b2);
        jobs_get(c, d->job_id, &d2);
        ok(a2->assignment_expires_at == renewed, "the reported job's lease is renewed");
        ok(b2->assignment_expires_at == b->assignment_expires_at, "an unreported job's lease is not");
        ok(d2->assignment_expires_at == d->assignment_expires_at, "nor one reported under another assignment");
        test_advance(c, c->settings.lease_timeout - 5 * USEC_PER_SEC);
        test_sweep(c);
        is_int(test_count_events(c, "job.lost", b->job_id), 1, "the unreported job is lost at its expiry");
        is_int(test_job_state(c, a->job_id), JOB_RUNNING, "the reported one still runs");
        test_control_free(c);
}

static void test_heartbeat_does_not_renew_unacked_assignment(void) {
        Control *c = test_control_new();
        OpError err = {};
        test_register(c, "w1", NULL);
        test_submit(c, 0);
        _cleanup_(job_freep) Job *j = test_claim(c, "w1");
        test_advance(c, 5 * USEC_PER_SEC);
        /* Reported by the worker, even under its assignment: still not renewed until acked. */
        HeldJob held = {j->job_id, j->assignment_id};
        Heartbeat hb = {.worker_id = "w1", .seq = 1, .jobs = &held, .n_jobs = 1};
        _cleanup_strv_free_ char **abort_jobs = NULL;
        is_int(worker_heartbeat_report(c, NULL, &hb, &abort_jobs, &err), 0, "heartbeat reporting the ASSIGNED job");
        _cleanup_(job_freep) Job *after = NULL;
        jobs_get(c, j->job_id, &after);
        ok(after->assignment_expires_at == j->assignment_expires_at, "an ASSIGNED lease is not renewed");
        /* Acked, the same report renews it: the test above would see a renewal. */
        is_int(jobs_ack(c, NULL, j->job_id, "w1", j->assignment_id, &err), 0, "ack");
        hb.seq = 2;
        strv_free(abort_jobs);
        abort_jobs = NULL;
        is_int(worker_heartbeat_report(c, NULL, &hb, &abort_jobs, &err), 0, "heartbeat reporting it RUNNING");
        job_freep(&after);
        after = NULL;
        jobs_get(c, j->job_id, &after);
        ok(after->assignment_expires_at == control_now(c) + c->settings.lease_timeout, "a RUNNING lease is");
        test_control_free(c);
}

static void test_abort(void) {
        Control *c = test_control_new();
        OpError err = {};
        size_t n = 0;
        test_register(c, "w1", NULL);
        const char *pending = test_submit(c, 0);
        is_int(jobs_abort(c, NULL, pending, NULL, "operator said so", &n, &err), 0, "abort a PENDING job");
        is_int(n, 1, "one job aborted");
        _cleanup_(job_freep) Job *a = NULL;
        jobs_get(c, pending, &a);
        is_int(a->status, JOB_ABORTED, "ABORTED");
        is_str(a->last_error, "operator said so", "reason kept in last_error");
        is_int(jobs_abort(c, NULL, pending, NULL, NULL, &n, &err), -EBUSY, "abort of a terminal job: 409");
        is_int(jobs_abort(c, NULL, "nope", NULL, NULL, &n, &err), -ENOENT, "unknown job: 404");
        is_int(jobs_abort(c, NULL, NULL, "w1", NULL, &n, &err), -ENOENT, "worker holding nothing: 404");
        is_int(jobs_abort(c, NULL, NULL, NULL, NULL, &n, &err), -EINVAL, "neither id: 400");

        test_submit(c, 0);
        test_submit(c, 0);
        _cleanup_(job_freep) Job *r1 = test_claim_and_ack(c, "w1");
        _cleanup_(job_freep) Job *r2 = test_claim(c, "w1");
        is_int(jobs_abort(c, NULL, NULL, "w1", "host retired", &n, &err), 0, "abort all of a worker's jobs");
        is_int(n, 2, "both held jobs aborted");
        is_int(test_job_state(c, r1->job_id), JOB_ABORTED, "the running one");
        is_int(test_job_state(c, r2->job_id), JOB_ABORTED, "the assigned one");
        JobState st;
        Completion x = completion_for(r1, "w1");
        is_int(jobs_complete(c, NULL, &x, &st, &err), OP_NOOP, "a completion racing the abort is a no-op");
        is_int(st, JOB_ABORTED, "reporting ABORTED");
        test_control_free(c);
}

static void test_nonce_must_match_first_registration(void) {
        Control *c = test_control_new();
        OpError err = {};
        WorkerRegistration reg = {.worker_id = "w1", .nonce = "n1"};
        is_int(worker_register(c, NULL, &reg, &err), 0, "first registration pins the nonce");
        is_int(worker_register(c, NULL, &reg, &err), 0, "same nonce again is fine");
        reg.nonce = "n2";
        is_int(worker_register(c, NULL, &reg, &err), -EEXIST, "another nonce: 409");
        reg.nonce = NULL;
        is_int(worker_register(c, NULL, &reg, &err), -EEXIST, "no nonce once pinned: 409");
        is_int(test_count_events(c, "worker.nonce_mismatch", NULL), 2, "mismatches audited");
        reg.worker_id = "bad id";
        is_int(worker_register(c, NULL, &reg, &err), -EINVAL, "worker id with a space: 400");
        test_control_free(c);
}

/* Registers worker_id as its process instance_id: 1 when that is a restart (a new instance). */
static int register_instance(Control *c, const char *worker_id, const char *instance_id) {
        WorkerRegistration reg = {.worker_id = worker_id, .instance_id = instance_id};
        OpError err = {};
        return worker_register(c, NULL, &reg, &err);
}

static void test_restart_loses_unclaimed_jobs_and_reconnect_keeps_claimed(void) {
        Control *c = test_control_new();
        ReconnectAction *a = NULL;
        size_t n = 0;
        register_instance(c, "w1", "i1");
        test_submit(c, 0);
        test_submit(c, 0);
        test_submit(c, 0);
        _cleanup_(job_freep) Job *kept = test_claim_and_ack(c, "w1");
        _cleanup_(job_freep) Job *dropped = test_claim_and_ack(c, "w1");
        _cleanup_(job_freep) Job *done = test_claim_and_ack(c, "w1");

        is_int(register_instance(c, "w1", "i2"), 1, "a new instance id is reported as a restart");
        is_int(test_job_state(c, dropped->job_id), JOB_RUNNING,
               "jobs are not lost before the worker says what it runs");

        ReplayEntry e[2] = {
                {.status = JOB_COMPLETED, .completion = completion_for(done, "w1")},
                {.status = JOB_COMPLETED, .completion = completion_for(kept, "w1")},
        };
        e[1].completion.assignment_id = "forged";
        HeldJob claimed[] = {{.job_id = kept->job_id}};
        is_int(jobs_reconnect(c, NULL, "w1", claimed, 1, e, 2, &a, &n), 0, "reconnect");
        is_int(n, 4, "two replay actions, one lost, one keep");
        ok(streq(a[0].action, "complete") && a[0].accepted, "replayed completion ACCEPTED");
        ok(streq(a[1].action, "complete") && !a[1].accepted && a[1].error, "forged assignment REJECTED with error");
        ok(streq(a[2].action, "lost") && streq(a[2].job_id, dropped->job_id), "unclaimed job given up");
        ok(streq(a[3].action, "keep") && a[3].accepted && streq(a[3].job_id, kept->job_id), "claimed job kept");
        is_int(test_job_state(c, done->job_id), JOB_COMPLETED, "replayed job COMPLETED");
        is_int(test_job_state(c, dropped->job_id), JOB_RETRYING, "unclaimed job LOST at once, now RETRYING");
        is_int(test_count_events(c, "job.lost", dropped->job_id), 1, "its loss audited");
        is_int(test_job_state(c, kept->job_id), JOB_RUNNING, "claimed job still RUNNING");
        reconnect_actions_free(a, n);

        /* A second reconnect after a mere partition changes nothing. */
        is_int(jobs_reconnect(c, NULL, "w1", claimed, 1, e, 1, &a, &n), 0, "reconnect again");
        ok(n == 2 && a[0].accepted && a[0].state == JOB_COMPLETED, "repeat of an applied completion ACCEPTED (no-op)");
        reconnect_actions_free(a, n);
        is_int(jobs_reconnect(c, NULL, "ghost", NULL, 0, NULL, 0, &a, &n), -EPERM, "unregistered worker: 403");
        test_control_free(c);
}

/* A replayed result the control plane refuses (here: of an older assignment) does not make the
 * job it names count as still held: the restarted worker does not claim it, so it is lost. */
static void test_restart_loses_an_unclaimed_job_whose_replay_is_refused(void) {
        Control *c = test_control_new();
        ReconnectAction *a = NULL;
        size_t n = 0;
        register_instance(c, "w1", "i1");
        test_submit(c, 0);
        _cleanup_(job_freep) Job *j = test_claim_and_ack(c, "w1");
        register_instance(c, "w1", "i2");
        ReplayEntry e[1] = {{.status = JOB_COMPLETED, .completion = completion_for(j, "w1")}};
        e[0].completion.assignment_id = "an-older-assignment";
        is_int(jobs_reconnect(c, NULL, "w1", NULL, 0, e, 1, &a, &n), 0, "reconnect claiming nothing");
        ok(n == 2 && streq(a[0].action, "complete") && !a[0].accepted, "the replayed result REJECTED");
        ok(n == 2 && streq(a[1].action, "lost") && streq(a[1].job_id, j->job_id), "its job given up");
        is_int(test_job_state(c, j->job_id), JOB_RETRYING, "LOST at once, now RETRYING");
        reconnect_actions_free(a, n);
        test_control_free(c);
}

static void test_restarted_worker_polling_loses_its_jobs(void) {
        Control *c = test_control_new();
        register_instance(c, "w1", "i1");
        test_submit(c, 0);
        _cleanup_(job_freep) Job *j = test_claim_and_ack(c, "w1");
        register_instance(c, "w1", "i2");
        _cleanup_(job_freep) Job *again = test_claim(c, "w1");
        is_int(test_job_state(c, j->job_id), JOB_RETRYING,
               "the job held before the restart was lost at the first poll");
        ok(!again, "and is not claimable before its backoff");
        test_control_free(c);
}

static void test_reconnect_rejects_claim_of_job_not_held(void) {
        Control *c = test_control_new();
        ReconnectAction *a = NULL;
        size_t n = 0;
        test_register(c, "w1", NULL);
        const char *id = test_submit(c, 0);
        HeldJob claimed[] = {{.job_id = id}, {.job_id = "unknown"}};
        is_int(jobs_reconnect(c, NULL, "w1", claimed, 2, NULL, 0, &a, &n), 0, "reconnect");
        ok(n == 2 && !a[0].accepted && !a[1].accepted, "claims of jobs it does not hold are REJECTED");
        reconnect_actions_free(a, n);
        test_control_free(c);
}

/* A record the HTTP layer could not parse is answered REJECTED with its reason, named as sent;
 * the records after it are still applied. */
static void test_reconnect_rejects_an_invalid_record_alone(void) {
        Control *c = test_control_new();
        ReconnectAction *a = NULL;
        size_t n = 0;
        test_register(c, "w1", NULL);
        test_submit(c, 0);
        test_submit(c, 0);
        _cleanup_(job_freep) Job *bad = test_claim_and_ack(c, "w1");
        _cleanup_(job_freep) Job *good = test_claim_and_ack(c, "w1");
        ReplayEntry e[2] = {
                {.status = JOB_FAILED, .invalid = "field 'exit_code' out of range"},
                {.status = JOB_COMPLETED, .completion = completion_for(good, "w1")},
        };
        e[0].completion.job_id = bad->job_id;
        e[0].completion.assignment_id = bad->assignment_id;
        is_int(jobs_reconnect(c, NULL, "w1", NULL, 0, e, 2, &a, &n), 0, "reconnect");
        ok(n == 2 && streq(a[0].action, "fail") && !a[0].accepted && streq_ptr(a[0].error, e[0].invalid) &&
                   streq_ptr(a[0].job_id, bad->job_id) && streq_ptr(a[0].assignment_id, bad->assignment_id),
           "the invalid record REJECTED with its reason, named as sent");
        ok(n == 2 && a[1].accepted, "the next record ACCEPTED");
        is_int(test_job_state(c, bad->job_id), JOB_RUNNING, "the invalid record changed nothing");
        is_int(test_job_state(c, good->job_id), JOB_COMPLETED, "the valid one applied");
        reconnect_actions_free(a, n);
        test_control_free(c);
}

/* As for /heartbeat (jobs_not_held()): a job claimed under another assignment is not kept. */
static void test_reconnect_rejects_keep_under_another_assignment(void) {
        Control *c = test_control_new();
        ReconnectAction *a = NULL;
        size_t n = 0;
        test_register(c, "w1", NULL);
        test_submit(c, 0);
        _cleanup_(job_freep) Job *j = test_claim_and_ack(c, "w1");
        HeldJob claimed[] = {{.job_id = j->job_id, .assignment_id = "forged"}};
        is_int(jobs_reconnect(c, NULL, "w1", claimed, 1, NULL, 0, &a, &n), 0, "reconnect");
        ok(n == 1 && streq(a[0].action, "keep") && !a[0].accepted && a[0].error, "the keep REJECTED");
        ok(n == 1 && streq_ptr(a[0].assignment_id, j->assignment_id), "naming the job's own assignment");
        reconnect_actions_free(a, n);
        test_control_free(c);
}

static void test_submit_validates(void) {
        Control *c = test_control_new();
        OpError err = {};
        char id[RANDOM_ID_SIZE];
        JobSpec s;
        job_spec_init(&s);
        is_int(s.max_attempts, 3, "max_attempts defaults to 3");
        is_int(jobs_submit(c, NULL, &s, id, &err), -EINVAL, "missing command refused");
        ok(strstr(err.message, "command") != NULL, "message names the field: %s", err.message);
        s.command = "x";
        s.max_attempts = 0;
        is_int(jobs_submit(c, NULL, &s, id, &err), -EINVAL, "max_attempts 0 refused");
        s.max_attempts = 1;
        s.timeout_ms = -1;
        is_int(jobs_submit(c, NULL, &s, id, &err), -EINVAL, "negative timeout refused");
        /* The same ranges for every way in: D-Bus hands over any int64. */
        s.timeout_ms = JOBS_TIMEOUT_MS_MAX + 1;
        is_int(jobs_submit(c, NULL, &s, id, &err), -EINVAL, "a timeout no worker accepts refused");
        s.timeout_ms = 0;
        s.priority = INT64_MAX;
        is_int(jobs_submit(c, NULL, &s, id, &err), -EINVAL, "priority INT64_MAX refused (aging would overflow)");
        s.priority = -JOBS_PRIORITY_LIMIT - 1;
        is_int(jobs_submit(c, NULL, &s, id, &err), -EINVAL, "priority below the limit refused");
        s.priority = 0;
        s.scheduled_at = (usec_t) INT64_MAX;
        is_int(jobs_submit(c, NULL, &s, id, &err), -EINVAL, "scheduled_at beyond the year 5000 refused");
        uint64_t counts[_JOB_STATE_MAX];
        store_count_jobs_by_state(c->store, counts);
        is_int(counts[JOB_PENDING], 0, "nothing was stored");
        test_control_free(c);
}

/* Requirements are a set: however a client lists them, the job has them sorted and each once, and
 * two lists of one set make one class of the claim. */
static void test_requirements_are_stored_as_a_set(void) {
        Control *c = test_control_new();
        OpError err = {};
        char a[RANDOM_ID_SIZE], b[RANDOM_ID_SIZE];
        char *listed[] = {"linux", "cuda", "linux", NULL}, *other_order[] = {"cuda", "linux", NULL};
        JobSpec s;

        job_spec_init(&s);
        s.command = "x";
        s.requirements = listed;
        is_int(jobs_submit(c, NULL, &s, a, &err), 0, "submitted with a repeated requirement");
        s.requirements = other_order;
        is_int(jobs_submit(c, NULL, &s, b, &err), 0, "submitted with the same set in another order");
        _cleanup_(job_freep) Job *ja = NULL, *jb = NULL;
        ok(jobs_get(c, a, &ja) == 0 && jobs_get(c, b, &jb) == 0, "both stored");
        _cleanup_free_ char *ra = ja ? strv_join(ja->requirements, ",") : NULL;
        is_str(ra, "cuda,linux", "sorted, each once");
        ok(ja && jb && strv_equal(ja->requirements, jb->requirements), "the same set, the same list");
        sqlite3_stmt *st = NULL;
        sqlite3_prepare_v2(c->store->db, "SELECT count(DISTINCT requirements) FROM jobs", -1, &st, NULL);
        ok(sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 1, "one class of the claim");
        sqlite3_finalize(st);
        test_control_free(c);
}

static void test_list_newest_first_with_filters(void) {
        Control *c = test_control_new();
        Job **jobs = NULL;
        size_t n = 0;
        test_register(c, "w1", NULL);
        const char *a = test_submit(c, 0);
        test_advance(c, 1);
        const char *b = test_submit(c, 0);
        char keep_a[RANDOM_ID_SIZE], keep_b[RANDOM_ID_SIZE];
        strcpy(keep_a, a);
        strcpy(keep_b, b);
        _cleanup_(job_freep) Job *j = test_claim(c, "w1");
        JobFilter f = JOB_FILTER_ALL;
        jobs_list(c, &f, &jobs, &n);
        ok(n == 2 && streq(jobs[0]->job_id, keep_b) && streq(jobs[1]->job_id, keep_a), "newest first");
        job_array_free(jobs, n);
        f.status = JOB_ASSIGNED;
        jobs_list(c, &f, &jobs, &n);
        ok(n == 1 && streq(jobs[0]->job_id, keep_a), "status filter");
        ok(n == 1 && jobs[0]->worker_last_seen == T0, "the holder's last heartbeat is joined in");
        job_array_free(jobs, n);
        f = JOB_FILTER_ALL;
        f.worker_id = "w1";
        jobs_list(c, &f, &jobs, &n);
        ok(n == 1, "worker filter");
        job_array_free(jobs, n);
        f.worker_id = "w2";
        jobs_list(c, &f, &jobs, &n);
        ok(n == 0, "other worker: none");
        job_array_free(jobs, n);
        test_control_free(c);
}

static void test_drain_stops_new_assignments(void) {
        Control *c = test_control_new();
        test_register(c, "w1", NULL);
        test_submit(c, 0);
        is_int(worker_drain(c, NULL, "w1", true), 0, "drain");
        _cleanup_(worker_freep) Worker *w = NULL;
        worker_get(c, "w1", &w);
        is_int(w->state, WORKER_DRAINING, "DRAINING");
        Job *j = test_claim(c, "w1");
        ok(!j, "a draining worker gets nothing");
        worker_drain(c, NULL, "w1", false);
        j = test_claim(c, "w1");
        ok(j, "resumed: it gets the job");
        job_free(j);
        is_int(worker_drain(c, NULL, "ghost", true), -ENOENT, "unknown worker: 404");

        /* A worker that is away keeps its state, but the request is audited all the same. */
        test_advance(c, c->settings.disconnect_timeout + USEC_PER_SEC);
        reconcile_sweep(c, NULL);
        _cleanup_(worker_freep) Worker *away = NULL;
        worker_get(c, "w1", &away);
        ok(away->state == WORKER_DISCONNECTED || away->state == WORKER_OFFLINE, "w1 is away");
        is_int(worker_drain(c, NULL, "w1", true), 0, "drain while away");
        is_int(test_count_events(c, "worker.drain_requested", NULL), 1, "audited as requested");
        is_int(worker_drain(c, NULL, "w1", true), 0, "drain again");
        is_int(test_count_events(c, "worker.drain_requested", NULL), 1, "a repeat changes nothing, audits nothing");
        is_int(worker_drain(c, NULL, "w1", false), 0, "resume while away");
        is_int(test_count_events(c, "worker.resume_requested", NULL), 1, "audited as requested");
        test_control_free(c);
}

static void test_non_retryable_failure_fails_at_once(void) {
        Control *c = test_control_new();
        OpError err = {};
        JobState st;
        test_register(c, "w1", NULL);
        const char *id = test_submit(c, 0); /* 3 attempts */
        _cleanup_(job_freep) Job *a = test_claim_and_ack(c, "w1");
        Failure f = {.job_id = id,
                     .worker_id = "w1",
                     .assignment_id = a->assignment_id,
                     .error = "command not in the allowlist",
                     .failure_kind = "policy",
                     .not_retryable = true};
        is_int(jobs_fail(c, NULL, &f, &st, &err), 0, "non-retryable failure applied");
        is_int(st, JOB_FAILED, "FAILED although attempts are left");
        _cleanup_(job_freep) Job *after = NULL;
        jobs_get(c, id, &after);
        is_int(after->attempt_count, 1, "one attempt counted");
        ok(after->last_error && strstr(after->last_error, "not retryable (policy)"), "the reason is kept: %s",
           strna(after->last_error));
        is_int(test_count_events(c, "job.failed", id), 1, "audited as job.failed");
        is_int(jobs_fail(c, NULL, &f, &st, &err), OP_NOOP, "a repeat is a no-op");
        test_control_free(c);
}

static void test_handback_requeues_without_counting_an_attempt(void) {
        Control *c = test_control_new();
        OpError err = {};
        JobState st;
        JobSpec s;
        job_spec_init(&s);
        s.command = "sleep";
        s.max_attempts = 1; /* a counted attempt would make any failure final */
        test_register(c, "w1", NULL);
        test_register(c, "w2", NULL);
        const char *id = test_submit_spec(c, &s);
        _cleanup_(job_freep) Job *a = test_claim_and_ack(c, "w1");
        Failure f = {.job_id = id,
                     .worker_id = "w1",
                     .assignment_id = a->assignment_id,
                     .has_exit_code = true,
                     .exit_code = 143,
                     .error = "handed back: the worker is stopping",
                     .failure_kind = "handback",
                     .handback = true};
        is_int(jobs_fail(c, NULL, &f, &st, &err), 0, "handback applied");
        is_int(st, JOB_RETRYING, "RETRYING (through the table), not FAILED");
        _cleanup_(job_freep) Job *r1 = NULL;
        jobs_get(c, id, &r1);
        is_int(r1->attempt_count, 0, "the attempt is given back");
        ok(r1->retry_at == T0, "no backoff: retry_at is now");
        is_int(jobs_fail(c, NULL, &f, &st, &err), OP_NOOP, "a repeat of the handback is a no-op");
        is_int(test_sweep(c), 1, "the next sweep (no time passed) requeues it");
        is_int(test_job_state(c, id), JOB_PENDING, "PENDING");
        _cleanup_(job_freep) Job *b = test_claim_and_ack(c, "w2");
        ok(b && streq(b->job_id, id), "another worker gets it");
        is_int(b->attempt_count, 1, "as its first counted attempt");
        test_control_free(c);
}

static bool strv_eq1(char **l, const char *a) {
        return strv_length(l) == 1 && streq(l[0], a);
}

static void test_heartbeat_names_jobs_to_abort(void) {
        Control *c = test_control_new();
        OpError err = {};
        test_register(c, "w1", NULL);
        test_submit(c, 0);
        test_submit(c, 0);
        _cleanup_(job_freep) Job *a = test_claim_and_ack(c, "w1");
        _cleanup_(job_freep) Job *b = test_claim_and_ack(c, "w1");
        HeldJob held[] = {{a->job_id, a->assignment_id}, {b->job_id, b->assignment_id}, {"no-such-job", NULL}};
        Heartbeat hb = {.worker_id = "w1", .seq = 1, .jobs = held, .n_jobs = 2};
        char **abort_jobs = NULL;

        is_int(worker_heartbeat_report(c, NULL, &hb, &abort_jobs, &err), 0, "heartbeat with two jobs");
        is_int((int) strv_length(abort_jobs), 0, "both held: nothing to abort");
        strv_free(abort_jobs);

        size_t n = 0;
        is_int(jobs_abort(c, NULL, a->job_id, NULL, "test", &n, &err), 0, "job a aborted");
        hb.seq = 2;
        is_int(worker_heartbeat_report(c, NULL, &hb, &abort_jobs, &err), 0, "next heartbeat");
        ok(strv_eq1(abort_jobs, a->job_id), "the aborted job is named");
        strv_free(abort_jobs);

        held[1].assignment_id = "an-older-assignment";
        hb.seq = 1; /* ignored as old, still answered */
        is_int(worker_heartbeat_report(c, NULL, &hb, &abort_jobs, &err), OP_NOOP, "an old seq is ignored");
        is_int((int) strv_length(abort_jobs), 2, "and still names the aborted job and the reassigned one");
        strv_free(abort_jobs);

        hb.n_jobs = 3;
        hb.seq = 3;
        held[1].assignment_id = b->assignment_id;
        is_int(worker_heartbeat_report(c, NULL, &hb, &abort_jobs, &err), 0, "heartbeat naming an unknown job");
        ok(strv_length(abort_jobs) == 2 && strv_contains(abort_jobs, "no-such-job"), "unknown jobs are named too");
        strv_free(abort_jobs);
        test_control_free(c);
}

static void test_heartbeat_after_restart_keeps_every_reported_job(void) {
        Control *c = test_control_new();
        OpError err = {};
        register_instance(c, "w1", "i1");
        test_submit(c, 0);
        test_submit(c, 0);
        test_submit(c, 0);
        _cleanup_(job_freep) Job *a = test_claim_and_ack(c, "w1");
        _cleanup_(job_freep) Job *b = test_claim_and_ack(c, "w1");
        _cleanup_(job_freep) Job *x = test_claim_and_ack(c, "w1");
        is_int(register_instance(c, "w1", "i2"), 1, "restart");
        HeldJob held[] = {{a->job_id, a->assignment_id}, {b->job_id, NULL}};
        Heartbeat hb = {.worker_id = "w1", .seq = 1, .jobs = held, .n_jobs = 2};
        char **abort_jobs = NULL;
        is_int(worker_heartbeat_report(c, NULL, &hb, &abort_jobs, &err), 0, "heartbeat before the reconnect");
        is_int(test_job_state(c, a->job_id), JOB_RUNNING, "first reported job kept");
        is_int(test_job_state(c, b->job_id), JOB_RUNNING, "second reported job kept (current_job_ids)");
        ok(test_job_state(c, x->job_id) != JOB_RUNNING, "the unreported one is given up");
        is_int((int) strv_length(abort_jobs), 0, "nothing to abort among the reported");
        strv_free(abort_jobs);
        test_control_free(c);
}

static void test_registration_keeps_wake_socket(void) {
        Control *c = test_control_new();
        OpError err = {};
        WorkerRegistration reg = {.worker_id = "w1", .wake_port = 4000, .wake_address = "127.0.0.1"};
        is_int(worker_register(c, NULL, &reg, &err), 0, "registration with a wake port");
        _cleanup_(worker_freep) Worker *w = NULL;
        worker_get(c, "w1", &w);
        ok(w && w->wake_port == 4000 && streq_ptr(w->wake_address, "127.0.0.1"), "wake port and address stored");
        reg.wake_address = "localhost";
        is_int(worker_register(c, NULL, &reg, &err), -EINVAL, "a host name is refused (numeric only)");
        reg.wake_address = "::1";
        reg.wake_port = 70000;
        is_int(worker_register(c, NULL, &reg, &err), -EINVAL, "a port above 65535 is refused");
        reg.wake_port = 0;
        is_int(worker_register(c, NULL, &reg, &err), 0, "registration without one");
        _cleanup_(worker_freep) Worker *w2 = NULL;
        worker_get(c, "w1", &w2);
        ok(w2 && w2->wake_port == 0 && !w2->wake_address, "clears it: that process cannot be woken");
        test_control_free(c);
}

static void test_remove_worker_only_when_offline_and_holding_nothing(void) {
        Control *c = test_control_new();
        OpError err = {};
        WorkerRegistration reg = {.worker_id = "w1", .nonce = "first-host"};
        Worker *w = NULL;

        is_int(worker_register(c, NULL, &reg, &err), 0, "w1 registers with a nonce");
        const char *id = test_submit(c, 0);
        _cleanup_(job_freep) Job *a = test_claim_and_ack(c, "w1");
        is_int(worker_remove(c, NULL, "ghost", &err), -ENOENT, "an unknown worker: 404");
        is_int(worker_remove(c, NULL, "w1", &err), -EBUSY, "an ONLINE worker: 409");
        ok(strstr(err.message, "ONLINE") != NULL, "saying it is ONLINE (%s)", err.message);

        /* Silent for longer than the heartbeat timeout, before the reconciler has made its job LOST. */
        test_advance(c, c->settings.heartbeat_timeout + USEC_PER_SEC);
        is_int(worker_remove(c, NULL, "w1", &err), -EBUSY, "an OFFLINE worker still holding a job: 409");
        ok(strstr(err.message, id) != NULL, "naming the job (%s)", err.message);
        is_int(worker_get(c, "w1", &w), 0, "a refusal keeps the worker");
        w = worker_free(w);

        reconcile_sweep(c, NULL);
        is_int(test_job_state(c, id), JOB_RETRYING, "the reconciler took its job back (LOST, then RETRYING)");
        is_int(worker_remove(c, NULL, "w1", &err), -EBUSY, "its late result would still be accepted: 409");
        ok(strstr(err.message, "may still report") != NULL, "saying so (%s)", err.message);
        test_advance(c, c->settings.retry_backoff + USEC_PER_SEC);
        reconcile_sweep(c, NULL);
        is_int(test_job_state(c, id), JOB_PENDING, "the job waits for another worker");
        is_int(worker_remove(c, NULL, "w1", &err), 0, "then it can be removed");
        is_int(worker_get(c, "w1", &w), -ENOENT, "it is gone");
        is_int(test_count_events(c, "worker.removed", NULL), 1, "audited");
        sqlite3_stmt *st = NULL;
        sqlite3_prepare_v2(c->store->db, "SELECT count(*) FROM audit_events WHERE worker_id = 'w1' AND job_id = ?",
                           -1, &st, NULL);
        sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
        ok(st && sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) >= 3,
           "its job's history keeps its id (assigned, running, lost)");
        sqlite3_finalize(st);
        is_int(worker_remove(c, NULL, "w1", &err), -ENOENT, "removing it again: 404");

        reg.nonce = "second-host";
        is_int(worker_register(c, NULL, &reg, &err), 0, "the id registers again, with any nonce");
        is_int(worker_get(c, "w1", &w), 0, "as a new worker");
        ok(w && w->state == WORKER_ONLINE, "ONLINE");
        w = worker_free(w);
        test_control_free(c);
}

/* A restarted worker that reports a job under an assignment that is not the job's has no process
 * running the job's own: the job is given up at once, as any it does not claim (it used to be
 * kept, and stranded until its lease ran out). Through /reconnect and through /heartbeat. */
static void test_restart_gives_up_a_job_claimed_under_another_assignment(void) {
        Control *c = test_control_new();
        ReconnectAction *a = NULL;
        size_t n = 0;
        OpError err = {};
        register_instance(c, "w1", "i1");
        test_submit(c, 0);
        test_submit(c, 0);
        _cleanup_(job_freep) Job *j = test_claim_and_ack(c, "w1");
        is_int(register_instance(c, "w1", "i2"), 1, "restart");

        HeldJob claimed[] = {{.job_id = j->job_id, .assignment_id = "an-older-assignment"}};
        is_int(jobs_reconnect(c, NULL, "w1", claimed, 1, NULL, 0, &a, &n), 0, "reconnect");
        bool lost = false, kept = false;
        for (size_t i = 0; i < n; i++) {
                lost |= streq(a[i].action, "lost") && streq_ptr(a[i].job_id, j->job_id);
                kept |= streq(a[i].action, "keep") && a[i].accepted;
        }
        ok(lost, "the job claimed under another assignment is given up");
        ok(!kept, "and not kept");
        is_int(test_job_state(c, j->job_id), JOB_RETRYING, "LOST at once, now RETRYING");
        reconnect_actions_free(a, n);

        _cleanup_(job_freep) Job *h = test_claim_and_ack(c, "w1");
        is_int(register_instance(c, "w1", "i3"), 1, "another restart");
        HeldJob reported[] = {{.job_id = h->job_id, .assignment_id = "an-older-assignment"}};
        Heartbeat hb = {.worker_id = "w1", .seq = 1, .jobs = reported, .n_jobs = 1};
        char **abort_jobs = NULL;
        is_int(worker_heartbeat_report(c, NULL, &hb, &abort_jobs, &err), 0, "heartbeat before the reconnect");
        is_int(test_job_state(c, h->job_id), JOB_RETRYING, "a heartbeat's job under another assignment: given up");
        ok(strv_contains(abort_jobs, h->job_id), "and listed in abort_jobs");
        strv_free(abort_jobs);
        test_control_free(c);
}

/* Each replayed record that is refused leaves one audit event, request.refused with what
 * "replay", naming the worker, the job where there is one and the reason: the worker drops a
 * REJECTED record, so the operator would otherwise never learn of it. Accepted records add none. */
static void test_reconnect_audits_each_rejected_record(void) {
        Control *c = test_control_new();
        ReconnectAction *a = NULL;
        size_t n = 0;
        char overlong[LIMIT_ID_LEN + 64];
        test_register(c, "w1", NULL);
        for (int i = 0; i < 4; i++)
                test_submit(c, 0);
        _cleanup_(job_freep) Job *bad = test_claim_and_ack(c, "w1");
        _cleanup_(job_freep) Job *other = test_claim_and_ack(c, "w1");
        _cleanup_(job_freep) Job *stale = test_claim_and_ack(c, "w1");
        _cleanup_(job_freep) Job *good = test_claim_and_ack(c, "w1");
        memset(overlong, 'x', sizeof(overlong) - 1);
        overlong[sizeof(overlong) - 1] = 0;
        ReplayEntry e[6] = {
                {.status = JOB_COMPLETED, .invalid = "field 'exit_code' out of range"},
                {.status = JOB_COMPLETED, .invalid = "field 'job_id' is longer than 128 bytes"},
                {.status = JOB_COMPLETED, .completion = completion_for(good, "w1")},
                {.status = JOB_COMPLETED, .completion = completion_for(other, "w2")},
                {.status = JOB_COMPLETED, .completion = completion_for(stale, "w1")},
                {.status = JOB_COMPLETED, .completion = completion_for(good, "w1")},
        };
        e[0].completion.job_id = bad->job_id;
        e[1].completion.job_id = overlong;
        e[2].completion.job_id = "no-such-job";
        e[4].completion.assignment_id = "forged";
        int before = test_count_events(c, "request.refused", NULL);
        is_int(jobs_reconnect(c, NULL, "w1", NULL, 0, e, 6, &a, &n), 0, "reconnect");
        ok(n == 6 && !a[0].accepted && !a[1].accepted && !a[2].accepted && !a[3].accepted && !a[4].accepted &&
                   a[5].accepted,
           "five records REJECTED, the last ACCEPTED");
        reconnect_actions_free(a, n);
        is_int(test_count_events(c, "request.refused", NULL) - before, 5, "one audit event per rejected record");

        AuditEvent **ev = NULL;
        size_t m = 0;
        EventFilter f = {.event = "request.refused", .limit = 10, .oldest_first = true};
        is_int(audit_list(c, &f, &ev, &m), 0, "list them");
        const char *want[] = {bad->job_id, NULL, "no-such-job", other->job_id, stale->job_id};
        bool named = m == 5, replay = m == 5, bounded = true;
        for (size_t i = 0; i < m && i < 5; i++) {
                named &= streq_ptr(ev[i]->job_id, want[i]) && streq_ptr(ev[i]->worker_id, "w1");
                replay &= strstr(ev[i]->details, "\"what\":\"replay\"") && strstr(ev[i]->details, "\"reason\":\"") &&
                          !strstr(ev[i]->details, "\"reason\":\"\"");
                bounded &= strlen(ev[i]->message) < 600 && !strstr(ev[i]->details, overlong);
        }
        ok(named, "each names the worker, and the job where it is an id");
        ok(replay, "each says it was a replay, and why it was refused");
        ok(bounded, "an overlong job id is not copied into the audit trail");
        ok(m == 5 && strstr(ev[3]->details, "another worker") && strstr(ev[2]->details, "no job"), "reasons: %s; %s",
           m == 5 ? ev[3]->details : "", m == 5 ? ev[2]->details : "");
        is_int(test_count_events(c, "job.assignment_stale", stale->job_id), 1,
               "the stale one has its fencing event too");
        audit_event_array_free(ev, m);
        test_control_free(c);
}

int main(void) {
        test_claim_assigns_fresh_assignment_with_lease();
        test_heartbeat_renews_only_the_jobs_reported();
        test_unregistered_worker_is_refused();
        test_ack_moves_to_running_and_repeat_is_noop();
        test_ack_after_lease_expiry_is_refused_and_requeues();
        test_completion_stores_result_and_duplicate_is_noop();
        test_artifact_contract_is_enforced();
        test_superseded_assignment_is_refused();
        test_completion_of_latest_assignment_accepted_after_lost();
        test_fail_retries_then_fails_and_repeat_is_noop();
        test_fail_before_ack_is_refused();
        test_heartbeat_seq_and_lease_renewal();
        test_heartbeat_does_not_renew_unacked_assignment();
        test_abort();
        test_nonce_must_match_first_registration();
        test_restart_loses_unclaimed_jobs_and_reconnect_keeps_claimed();
        test_restart_loses_an_unclaimed_job_whose_replay_is_refused();
        test_restarted_worker_polling_loses_its_jobs();
        test_reconnect_rejects_claim_of_job_not_held();
        test_reconnect_rejects_an_invalid_record_alone();
        test_reconnect_rejects_keep_under_another_assignment();
        test_submit_validates();
        test_requirements_are_stored_as_a_set();
        test_list_newest_first_with_filters();
        test_drain_stops_new_assignments();
        test_non_retryable_failure_fails_at_once();
        test_handback_requeues_without_counting_an_attempt();
        test_heartbeat_names_jobs_to_abort();
        test_heartbeat_after_restart_keeps_every_reported_job();
        test_registration_keeps_wake_socket();
        test_remove_worker_only_when_offline_and_holding_nothing();
        test_restart_gives_up_a_job_claimed_under_another_assignment();
        test_reconnect_audits_each_rejected_record();
        return tap_done();
}
