/* test-reconcile.c: the reconciler: ack expiry, lease expiry and worker loss, LOST -> RETRYING or
 * FAILED, backoff (exponential, capped, jittered within bounds), the start-up lease extension,
 * the documented recovery bound, worker states, and the timer against a real sd-event loop. */
#include <math.h>

#include "control-clock.h"
#include "core-test-util.h"
#include "reconcile.h"
#include "store.h"
#include "tap.h"

static void test_unacked_assignment_returns_to_pending_at_expiry(void) {
        Control *c = test_control_new();
        test_register(c, "w1", NULL);
        test_submit(c, 0);
        _cleanup_(job_freep) Job *j = test_claim(c, "w1");
        test_advance(c, c->settings.lease_timeout - 1);
        test_sweep(c);
        is_int(test_job_state(c, j->job_id), JOB_ASSIGNED, "still ASSIGNED 1us before expiry");
        test_advance(c, 1);
        test_sweep(c);
        is_int(test_job_state(c, j->job_id), JOB_PENDING, "PENDING at expiry");
        is_int(test_count_events(c, "job.requeued", j->job_id), 1, "requeue audited");
        test_control_free(c);
}

static void test_running_job_with_expired_lease_is_lost_then_retried(void) {
        Control *c = test_control_new();
        OpError err = {};
        test_register(c, "w1", NULL);
        test_submit(c, 0);
        _cleanup_(job_freep) Job *j = test_claim_and_ack(c, "w1");
        /* Heartbeats keep the worker ONLINE but without the job's... the lease is renewed by them,
         * so stop heartbeating and expire the lease before the worker goes OFFLINE. */
        test_advance(c, c->settings.lease_timeout);
        test_sweep(c);
        is_int(test_count_events(c, "job.lost", j->job_id), 1, "RUNNING with an expired lease: LOST");
        is_int(test_job_state(c, j->job_id), JOB_RETRYING, "then RETRYING (attempts left) in the same sweep");
        _cleanup_(job_freep) Job *r = NULL;
        jobs_get(c, j->job_id, &r);
        ok(r->retry_at == control_now(c) + c->settings.retry_backoff, "backoff scheduled");
        test_advance(c, c->settings.retry_backoff - 1);
        test_sweep(c);
        is_int(test_job_state(c, j->job_id), JOB_RETRYING, "not before the backoff");
        test_advance(c, 1);
        test_sweep(c);
        is_int(test_job_state(c, j->job_id), JOB_PENDING, "PENDING when the backoff elapsed");
        (void) err;
        test_control_free(c);
}

static void test_lost_with_no_attempts_left_fails(void) {
        Control *c = test_control_new();
        JobSpec s;
        job_spec_init(&s);
        s.command = "x";
        s.max_attempts = 1;
        test_register(c, "w1", NULL);
        const char *id = test_submit_spec(c, &s);
        _cleanup_(job_freep) Job *j = test_claim_and_ack(c, "w1");
        test_advance(c, c->settings.lease_timeout);
        test_sweep(c);
        is_int(test_job_state(c, id), JOB_FAILED, "LOST with no attempts left: FAILED");
        test_control_free(c);
}

/* The design's promise that the latest assignment's completion is accepted after a loss holds on
 * the last attempt too: the job waits lost_grace in LOST before FAILED. */
static void test_last_attempt_lost_waits_grace_for_late_completion(void) {
        Control *c = test_control_new();
        OpError err = {};
        JobState st;
        JobSpec s;
        job_spec_init(&s);
        s.command = "x";
        s.max_attempts = 1;
        c->settings.lost_grace = 30 * USEC_PER_SEC;
        test_register(c, "w1", NULL);
        const char *id = test_submit_spec(c, &s);
        _cleanup_(job_freep) Job *j = test_claim_and_ack(c, "w1");
        test_advance(c, c->settings.lease_timeout);
        test_sweep(c);
        is_int(test_job_state(c, id), JOB_LOST, "lost on its last attempt: stays LOST during the grace");
        usec_t deadline = USEC_INFINITY;
        /* Not an immediate sweep (a LOST job used to be decided at once), and no later than the grace's end. */
        ok(reconcile_next_deadline(c, &deadline) >= 0 && deadline > control_now(c) &&
                   deadline <= control_now(c) + c->settings.lost_grace,
           "the next sweep is due by the end of the grace, not at once");
        Completion x = {.job_id = j->job_id, .worker_id = "w1", .assignment_id = j->assignment_id,
                        .has_exit_code = true, .completion_seq = 1};
        test_advance(c, c->settings.lost_grace - 1);
        test_sweep(c);
        is_int(jobs_complete(c, NULL, &x, &st, &err), 0, "the partitioned worker's completion is accepted");
        is_int(test_job_state(c, id), JOB_COMPLETED, "COMPLETED, not FAILED");

        /* Another job, whose worker never comes back, fails when the grace ends. */
        const char *id2 = test_submit_spec(c, &s);
        _cleanup_(job_freep) Job *j2 = test_claim_and_ack(c, "w1");
        test_advance(c, c->settings.lease_timeout);
        test_sweep(c);
        test_advance(c, c->settings.lost_grace - 1);
        test_sweep(c);
        is_int(test_job_state(c, id2), JOB_LOST, "still LOST 1us before the grace ends");
        test_advance(c, 1);
        test_sweep(c);
        is_int(test_job_state(c, id2), JOB_FAILED, "FAILED when the grace ended");
        (void) j2;
        test_control_free(c);
}

static void test_worker_states_follow_heartbeat_age(void) {
        Control *c = test_control_new();
        OpError err = {};
        uint64_t counts[_WORKER_STATE_MAX];
        test_register(c, "w1", NULL);
        test_submit(c, 0);
        _cleanup_(job_freep) Job *j = test_claim_and_ack(c, "w1");
        /* A lease as long as the heartbeat timeout, so that only the worker state decides. */
        c->settings.lease_timeout = c->settings.heartbeat_timeout;
        worker_heartbeat(c, NULL, "w1", j->job_id, 1, NULL, &err);

        test_advance(c, c->settings.disconnect_timeout + 1);
        test_sweep(c);
        workers_count_by_state(c, counts, NULL);
        is_int(counts[WORKER_DISCONNECTED], 1, "past disconnect_timeout: DISCONNECTED");
        is_int(test_job_state(c, j->job_id), JOB_RUNNING, "its job keeps running");
        is_int(test_count_events(c, "worker.disconnected", NULL), 1, "state change audited");

        worker_heartbeat(c, NULL, "w1", j->job_id, 2, NULL, &err);
        workers_count_by_state(c, counts, NULL);
        is_int(counts[WORKER_ONLINE], 1, "a heartbeat brings it back ONLINE");
        is_int(test_count_events(c, "worker.online", NULL), 1, "audited");

        test_advance(c, c->settings.heartbeat_timeout + 1);
        test_sweep(c);
        workers_count_by_state(c, counts, NULL);
        is_int(counts[WORKER_OFFLINE], 1, "past heartbeat_timeout: OFFLINE");
        is_int(test_count_events(c, "job.lost", j->job_id), 1, "its RUNNING job is LOST");
        test_control_free(c);
}

static void test_backoff_is_exponential_capped_and_jittered_within_bounds(void) {
        ControlSettings s = {.retry_backoff = 2 * USEC_PER_SEC, .retry_backoff_max = 60 * USEC_PER_SEC};
        is_int(reconcile_backoff(&s, 1, 0) / USEC_PER_SEC, 2, "attempt 1: base");
        is_int(reconcile_backoff(&s, 2, 0) / USEC_PER_SEC, 4, "attempt 2: doubled");
        is_int(reconcile_backoff(&s, 5, 0) / USEC_PER_SEC, 32, "attempt 5: 2*2^4");
        is_int(reconcile_backoff(&s, 6, 0) / USEC_PER_SEC, 60, "attempt 6: capped");
        is_int(reconcile_backoff(&s, 1000, 0) / USEC_PER_SEC, 60, "huge attempt: capped, no overflow");
        s.retry_jitter = 0.5;
        ok(reconcile_backoff(&s, 1, 0.999999) < 3 * USEC_PER_SEC, "jitter adds at most 50%% of the backoff");
        ok(reconcile_backoff(&s, 6, 0.999999) < 90 * USEC_PER_SEC, "and at most 50%% above the cap");
        bool in_bounds = true;
        double lo = 1, hi = 0;
        for (int i = 0; i < 2000; i++) {
                double u = reconcile_random_unit();
                usec_t b = reconcile_backoff(&s, 2, u);
                in_bounds = in_bounds && u >= 0 && u < 1 && b >= 4 * USEC_PER_SEC && b < 6 * USEC_PER_SEC;
                lo = fmin(lo, u), hi = fmax(hi, u);
        }
        ok(in_bounds, "2000 random backoffs within [b, b * 1.5)");
        ok(lo < 0.05 && hi > 0.95, "the jitter spans its range (%.3f..%.3f)", lo, hi);
}

static void test_startup_extends_live_leases(void) {
        Control *c = test_control_new();
        test_register(c, "w1", NULL);
        test_submit(c, 0);
        test_submit(c, 0);
        _cleanup_(job_freep) Job *running = test_claim_and_ack(c, "w1");
        _cleanup_(job_freep) Job *assigned = test_claim(c, "w1");
        /* The control plane was down for a minute: every lease expired meanwhile. */
        test_advance(c, 60 * USEC_PER_SEC);
        c->started_at = control_now(c);
        is_int(reconcile_startup(c), 0, "start-up reconciliation");
        is_int(test_job_state(c, running->job_id), JOB_RUNNING, "RUNNING job not punished for our downtime");
        is_int(test_job_state(c, assigned->job_id), JOB_ASSIGNED, "nor the ASSIGNED one");
        _cleanup_(job_freep) Job *r = NULL;
        jobs_get(c, running->job_id, &r);
        ok(r->assignment_expires_at == control_now(c) + c->settings.lease_timeout, "lease extended by a lease length");
        _cleanup_(worker_freep) Worker *w = NULL;
        worker_get(c, "w1", &w);
        is_int(w->state, WORKER_ONLINE, "the worker's silence during our downtime does not count");
        is_int(test_count_events(c, "control.leases_extended", NULL), 1, "the extension is audited");
        /* A crash loop: another restart a moment later does not add a second lease length. */
        test_advance(c, USEC_PER_SEC);
        is_int(reconcile_startup(c), 0, "a second start-up reconciliation");
        job_freep(&r);
        r = NULL;
        jobs_get(c, running->job_id, &r);
        ok(r->assignment_expires_at == control_now(c) + c->settings.lease_timeout,
           "restarts do not stack extensions: one lease length from the last start");
        /* If nothing renews, the extended lease still expires. */
        test_advance(c, c->settings.lease_timeout);
        test_sweep(c);
        is_int(test_job_state(c, running->job_id), JOB_RETRYING, "after a further lease length without renewal: lost");
        test_control_free(c);
}

static void test_worker_power_loss_requeues_within_bound(void) {
        Control *c = test_control_new();
        OpError err = {};
        usec_t tick = c->settings.reconcile_interval;
        test_register(c, "w1", NULL);
        test_register(c, "w2", NULL);
        const char *id = test_submit(c, 0);
        char job[RANDOM_ID_SIZE];
        strcpy(job, id);
        _cleanup_(job_freep) Job *j = test_claim_and_ack(c, "w1");
        usec_t last_heartbeat = control_now(c);
        worker_heartbeat(c, NULL, "w1", job, 1, NULL, &err);
        usec_t bound = last_heartbeat + c->settings.heartbeat_timeout + tick + c->settings.retry_backoff;

        /* w1 loses power. The reconciler ticks every interval; w2 polls every tick too. */
        usec_t claimed_at = 0;
        for (usec_t t = 0; t <= 2 * (bound - last_heartbeat) && !claimed_at; t += tick) {
                test_advance(c, tick);
                worker_heartbeat(c, NULL, "w2", NULL, (int64_t) (t / tick) + 1, NULL, &err);
                test_sweep(c);
                Job *k = test_claim(c, "w2");
                if (k)
                        claimed_at = control_now(c);
                job_free(k);
        }
        ok(claimed_at > 0, "the job reached the second worker");
        ok(claimed_at <= bound,
           "within heartbeat_timeout + one tick + backoff (%llums after the last heartbeat, bound %llums)",
           (unsigned long long) ((claimed_at - last_heartbeat) / USEC_PER_MSEC),
           (unsigned long long) ((bound - last_heartbeat) / USEC_PER_MSEC));
        test_control_free(c);
}

/* The worker gives a job up when its lease runs out, counted from its claim if no heartbeat
 * renewed it since: its worker going OFFLINE first (no heartbeat for heartbeat_timeout) must not
 * hand the job to another worker while it may still run it. */
static void test_offline_worker_keeps_its_job_until_the_lease_ends(void) {
        Control *c = test_control_new();
        OpError err = {};
        test_register(c, "w1", NULL);
        worker_heartbeat(c, NULL, "w1", NULL, 1, NULL, &err);
        test_advance(c, c->settings.heartbeat_timeout * 9 / 10);
        test_submit(c, 0);
        _cleanup_(job_freep) Job *j = test_claim_and_ack(c, "w1");
        usec_t claimed_at = control_now(c);

        test_advance(c, c->settings.heartbeat_timeout / 5);
        test_sweep(c);
        uint64_t counts[_WORKER_STATE_MAX] = {};
        ok(workers_count_by_state(c, counts, NULL) >= 0 && counts[WORKER_OFFLINE] == 1, "the worker is OFFLINE");
        is_int(test_job_state(c, j->job_id), JOB_RUNNING, "its job is still RUNNING: its lease is not over");
        test_advance(c, claimed_at + c->settings.lease_timeout - control_now(c) - 1);
        test_sweep(c);
        is_int(test_job_state(c, j->job_id), JOB_RUNNING, "1us before the lease ends, too");
        test_advance(c, 1);
        test_sweep(c);
        is_int(test_count_events(c, "job.lost", j->job_id), 1, "LOST when it ends");
        test_control_free(c);
}

/* A reload that lowers heartbeat_timeout leaves the leases already granted as they were. */
static void test_lowered_heartbeat_timeout_does_not_cut_a_lease(void) {
        Control *c = test_control_new();
        OpError err = {};
        test_register(c, "w1", NULL);
        test_submit(c, 0);
        _cleanup_(job_freep) Job *j = test_claim_and_ack(c, "w1");
        worker_heartbeat(c, NULL, "w1", j->job_id, 1, NULL, &err);
        usec_t renewed_at = control_now(c);

        c->settings.heartbeat_timeout = c->settings.lease_timeout / 4;
        test_advance(c, c->settings.lease_timeout / 2);
        test_sweep(c);
        is_int(test_job_state(c, j->job_id), JOB_RUNNING, "RUNNING past the new heartbeat timeout, within its lease");
        test_advance(c, renewed_at + c->settings.lease_timeout - control_now(c));
        test_sweep(c);
        is_int(test_count_events(c, "job.lost", j->job_id), 1, "LOST when its lease ends");
        test_control_free(c);
}

/* A restart gives workers a fresh start, but does not bring back one that was OFFLINE: the audit
 * trail said "worker.online" for dead workers after every restart. */
static void test_restart_leaves_an_offline_worker_offline(void) {
        Control *c = test_control_new();
        OpError err = {};
        uint64_t counts[_WORKER_STATE_MAX] = {};
        test_register(c, "gone", NULL);
        test_register(c, "away", NULL);
        test_advance(c, c->settings.disconnect_timeout + 1);
        test_sweep(c);
        test_advance(c, c->settings.heartbeat_timeout - c->settings.disconnect_timeout);
        worker_heartbeat(c, NULL, "away", NULL, 1, NULL, &err);
        test_advance(c, c->settings.disconnect_timeout + 1);
        test_sweep(c);
        is_int(test_count_events(c, "worker.offline", NULL), 1, "one worker OFFLINE before the restart");

        c->started_at = control_now(c);
        test_sweep(c);
        ok(workers_count_by_state(c, counts, NULL) >= 0 && counts[WORKER_OFFLINE] == 1 && counts[WORKER_ONLINE] == 1,
           "after it: the OFFLINE one still OFFLINE, the DISCONNECTED one given a fresh start");
        is_int(test_count_events(c, "worker.online", NULL), 2,
               "worker.online only for the fresh start and the heartbeat");
        worker_heartbeat(c, NULL, "gone", NULL, 1, NULL, &err);
        ok(workers_count_by_state(c, counts, NULL) >= 0 && counts[WORKER_ONLINE] == 2, "contact brings it back");
        test_control_free(c);
}

static void test_next_deadline_is_earliest_lease_or_backoff(void) {
        Control *c = test_control_new();
        usec_t d;
        test_register(c, "w1", NULL);
        reconcile_next_deadline(c, &d);
        ok(d == T0 + c->settings.disconnect_timeout + 1, "idle: the worker's disconnect deadline");
        test_submit(c, 0);
        _cleanup_(job_freep) Job *j = test_claim(c, "w1");
        reconcile_next_deadline(c, &d);
        ok(d == T0 + c->settings.lease_timeout, "an ASSIGNED lease's expiry is the next deadline");
        test_control_free(c);
}

static int on_exit_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        return sd_event_exit(sd_event_source_get_event(s), 0);
}

static void test_timer_fires_at_lease_expiry_in_a_real_loop(void) {
        Control *c = test_control_new();
        sd_event_source *stop = NULL;
        /* Real clock for this one; short lease so the loop runs for ~50ms. */
        c->clock_override = 0;
        c->clock.realtime = 0; /* not anchored: control_now() reads the realtime clock */
        c->started_at = now_realtime_usec();
        c->settings.lease_timeout = 30 * USEC_PER_MSEC;
        c->settings.reconcile_interval = 10 * USEC_PER_SEC;
        if (sd_event_new(&c->event) < 0)
                tap_bail("sd_event_new");
        test_register(c, "w1", NULL);
        test_submit(c, 0);
        ok(reconcile_timers_start(c) == 0, "timers started");
        _cleanup_(job_freep) Job *j = test_claim(c, "w1");
        sd_event_add_time_relative(c->event, &stop, CLOCK_MONOTONIC, 80 * USEC_PER_MSEC, 0, on_exit_timer, NULL);
        sd_event_loop(c->event);
        sd_event_source_unref(stop);
        is_int(test_job_state(c, j->job_id), JOB_PENDING,
               "the reconcile timer was pulled in to the lease expiry (interval is 10s)");
        test_control_free(c);
}

/* A healthy worker's job survives a forward step of the control plane's clock (NTP): its lease
 * moves with the step, and requests served between the step and the sweep that follows it are
 * on the clock their deadlines were made with. */
static void test_forward_clock_step_ends_no_lease(void) {
        Control *c = test_control_new();
        OpError err = {};
        test_register(c, "w1", NULL);
        test_register(c, "w2", NULL);
        test_submit(c, 0);
        test_submit(c, 0);
        _cleanup_(job_freep) Job *j = test_claim_and_ack(c, "w1");
        _cleanup_(job_freep) Job *quiet = test_claim_and_ack(c, "w2");
        test_advance(c, 5 * USEC_PER_SEC);
        test_step_clock(c, 60 * USEC_PER_SEC);
        ok(control_now(c) == T0 + 5 * USEC_PER_SEC, "until a sweep follows it, the step does not reach control_now()");
        is_int(worker_heartbeat(c, NULL, "w1", j->job_id, 1, NULL, &err), 0, "a heartbeat renews the lease meanwhile");
        is_int(test_sweep(c), 0, "the sweep that follows the step ends nothing");
        is_int(test_job_state(c, quiet->job_id), JOB_RUNNING, "not even the lease no heartbeat renewed since the step");
        ok(control_now(c) == c->clock_override, "control_now() is on the stepped clock after it");
        is_int(test_count_events(c, "control.clock_stepped", NULL), 1, "the step is audited");
        _cleanup_(job_freep) Job *r = NULL;
        jobs_get(c, j->job_id, &r);
        ok(r->assignment_expires_at == control_now(c) + c->settings.lease_timeout,
           "the renewed lease still runs one lease length");
        _cleanup_(worker_freep) Worker *w = NULL;
        worker_get(c, "w1", &w);
        is_int(w->state, WORKER_ONLINE, "the worker is still ONLINE");
        worker_freep(&w);
        w = NULL;
        worker_get(c, "w2", &w);
        is_int(w->state, WORKER_ONLINE, "and so is the quiet one: its heartbeat age moved with the step");
        test_advance(c, c->settings.lease_timeout - 1);
        test_sweep(c);
        is_int(test_job_state(c, j->job_id), JOB_RUNNING, "RUNNING until its lease ends");
        test_advance(c, 1);
        test_sweep(c);
        is_int(test_count_events(c, "job.lost", j->job_id), 1, "LOST when it ends");
        is_int(test_count_events(c, "control.clock_stepped", NULL), 1, "one step, one event");
        test_control_free(c);
}

/* A backward step does not put off the recovery of a dead worker's job by its size. */
static void test_backward_clock_step_delays_no_recovery(void) {
        Control *c = test_control_new();
        test_register(c, "w1", NULL);
        test_submit(c, 0);
        _cleanup_(job_freep) Job *j = test_claim_and_ack(c, "w1");
        test_step_clock(c, -(int64_t) USEC_PER_HOUR);
        test_sweep(c);
        is_int(test_count_events(c, "control.clock_stepped", NULL), 1, "the step back is audited");
        ok(control_now(c) == T0 - USEC_PER_HOUR, "control_now() followed it");
        test_advance(c, c->settings.lease_timeout);
        test_sweep(c);
        is_int(test_count_events(c, "job.lost", j->job_id), 1,
               "the job is LOST one lease length after the last contact");
        test_advance(c, c->settings.heartbeat_timeout - c->settings.lease_timeout + 1);
        test_sweep(c);
        _cleanup_(worker_freep) Worker *w = NULL;
        worker_get(c, "w1", &w);
        is_int(w->state, WORKER_OFFLINE, "the silent worker is OFFLINE after heartbeat_timeout, not an hour later");
        test_control_free(c);
}

/* A step back while the control plane was stopped: at start-up the store holds instants ahead of
 * its clock, and the deadlines move back with the step, so that a dead worker's job is recovered
 * one lease length after the start, not an hour more. A start after plain downtime sees no step. */
static void test_backward_step_while_stopped_delays_no_recovery(void) {
        Control *c = test_control_new();
        test_register(c, "w1", NULL);
        test_submit(c, 0);
        _cleanup_(job_freep) Job *j = test_claim_and_ack(c, "w1");
        test_advance(c, 10 * USEC_PER_SEC);
        test_step_clock(c, -(int64_t) USEC_PER_HOUR); /* while stopped */
        is_int(reconcile_startup(c), 0, "start-up");
        is_int(test_count_events(c, "control.clock_stepped", NULL), 1, "the step back is seen and audited");
        _cleanup_(job_freep) Job *r = NULL;
        jobs_get(c, j->job_id, &r);
        ok(r && r->assignment_expires_at == control_now(c) + c->settings.lease_timeout,
           "the live lease runs one lease length from the start");
        test_advance(c, c->settings.lease_timeout);
        test_sweep(c);
        is_int(test_count_events(c, "job.lost", j->job_id), 1, "the job is LOST one lease length after the start");

        test_advance(c, 5 * USEC_PER_MINUTE); /* stopped for five minutes, the clock untouched */
        is_int(reconcile_startup(c), 0, "another start-up");
        is_int(test_count_events(c, "control.clock_stepped", NULL), 1, "after plain downtime: no step");
        test_control_free(c);
}

static void test_retry_backoff_moves_with_a_step(void) {
        Control *c = test_control_new();
        test_register(c, "w1", NULL);
        test_submit(c, 0);
        _cleanup_(job_freep) Job *j = test_claim_and_ack(c, "w1");
        test_advance(c, c->settings.lease_timeout);
        test_sweep(c);
        is_int(test_job_state(c, j->job_id), JOB_RETRYING, "RETRYING, backoff running");
        test_step_clock(c, 10 * c->settings.retry_backoff);
        test_sweep(c);
        is_int(test_job_state(c, j->job_id), JOB_RETRYING, "a forward step does not end the backoff");
        test_advance(c, c->settings.retry_backoff);
        test_sweep(c);
        is_int(test_job_state(c, j->job_id), JOB_PENDING, "which ends when its length has passed");
        test_control_free(c);
}

static void test_small_clock_corrections_are_left_alone(void) {
        Control *c = test_control_new();
        test_register(c, "w1", NULL);
        test_submit(c, 0);
        _cleanup_(job_freep) Job *j = test_claim_and_ack(c, "w1");
        test_step_clock(c, (int64_t) (CONTROL_CLOCK_STEP_MIN - 1));
        test_sweep(c);
        test_step_clock(c, -(int64_t) (CONTROL_CLOCK_STEP_MIN - 1));
        test_sweep(c);
        is_int(test_count_events(c, "control.clock_stepped", NULL), 0, "steps under %llums are not followed",
               (unsigned long long) (CONTROL_CLOCK_STEP_MIN / USEC_PER_MSEC));
        _cleanup_(job_freep) Job *r = NULL;
        jobs_get(c, j->job_id, &r);
        ok(r->assignment_expires_at == T0 + c->settings.lease_timeout, "the lease is where it was");
        test_control_free(c);
}

/* A job whose transition fails (here: a trigger refuses its row's update, as a constraint would)
 * is left alone, and the sweep still moves every other job; it is retried at the next tick, not in
 * a busy loop. */
static void test_one_job_that_cannot_move_holds_up_no_other(void) {
        Control *c = test_control_new();
        uint64_t at;
        test_register(c, "w1", NULL);
        test_submit(c, 0);
        test_submit(c, 0);
        _cleanup_(job_freep) Job *bad = test_claim_and_ack(c, "w1");
        _cleanup_(job_freep) Job *good = test_claim_and_ack(c, "w1");
        char sql[256];
        snprintf(sql, sizeof(sql),
                 "CREATE TEMP TRIGGER refuse BEFORE UPDATE ON jobs WHEN OLD.job_id = '%s' "
                 "BEGIN SELECT RAISE(ABORT, 'refused'); END",
                 bad->job_id);
        if (sqlite3_exec(c->store->db, sql, NULL, NULL, NULL) != SQLITE_OK)
                tap_bail("cannot create the trigger");
        test_advance(c, c->settings.lease_timeout);
        is_int(test_sweep(c), 1, "the sweep succeeds and moves the other job");
        is_int(test_job_state(c, good->job_id), JOB_RETRYING, "the other job moved");
        is_int(test_job_state(c, bad->job_id), JOB_RUNNING, "the broken one is left as it was");
        is_int(test_count_events(c, "job.lost", bad->job_id), 0, "nothing of its failed step is audited");
        if (sd_event_new(&c->event) < 0)
                tap_bail("sd_event_new");
        ok(reconcile_timers_start(c) == 0, "timers started");
        ok(sd_event_source_get_time(c->reconcile_timer, &at) >= 0 &&
                   at + 100 * USEC_PER_MSEC >= now_monotonic_usec() + c->settings.reconcile_interval,
           "its past deadline arms the timer for the next tick, not at once");
        test_control_free(c);
}

/* A worker whose change of state cannot be stored (a trigger refuses it) is left as it was, and
 * neither the other workers' changes nor the jobs' recovery wait for it. Before, the one failure
 * rolled the whole sweep back, leases included. */
/* The state stored for a worker (what its changes are audited against), not the derived one. */
static char *stored_state(Control *c, const char *worker_id) {
        sqlite3_stmt *st = NULL;
        char *state = NULL;
        if (sqlite3_prepare_v2(c->store->db, "SELECT state FROM workers WHERE worker_id = ?", -1, &st, NULL) !=
            SQLITE_OK)
                tap_bail("cannot prepare");
        sqlite3_bind_text(st, 1, worker_id, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW)
                state = strdup((const char *) sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
        return state;
}

static void test_one_worker_that_cannot_move_holds_up_no_other(void) {
        Control *c = test_control_new();
        test_register(c, "bad", NULL);
        test_register(c, "good", NULL);
        test_submit(c, 0);
        _cleanup_(job_freep) Job *j = test_claim_and_ack(c, "good");
        if (sqlite3_exec(c->store->db,
                         "CREATE TEMP TRIGGER refuse BEFORE UPDATE OF state ON workers WHEN OLD.worker_id = 'bad' "
                         "BEGIN SELECT RAISE(ABORT, 'refused'); END",
                         NULL, NULL, NULL) != SQLITE_OK)
                tap_bail("cannot create the trigger");
        test_advance(c, MAX(c->settings.heartbeat_timeout, c->settings.lease_timeout) + 1);
        ok(test_sweep(c) >= 0, "the sweep succeeds");
        _cleanup_free_ char *bad = stored_state(c, "bad"), *good = stored_state(c, "good");
        is_str(good, "OFFLINE", "the other worker is stored OFFLINE");
        is_str(bad, "ONLINE", "the refused one is left as it was");
        is_int(test_count_events(c, "worker.offline", NULL), 1, "one worker.offline audited, not the refused one's");
        is_int(test_job_state(c, j->job_id), JOB_RETRYING, "and the job, its lease over, was lost and is retried");
        sqlite3_exec(c->store->db, "DROP TRIGGER temp.refuse", NULL, NULL, NULL);
        ok(test_sweep(c) >= 0, "the next sweep succeeds");
        _cleanup_free_ char *later = stored_state(c, "bad");
        is_str(later, "OFFLINE", "and moves the one left");
        is_int(test_count_events(c, "worker.offline", NULL), 2, "audited then");
        test_control_free(c);
}

int main(void) {
        test_unacked_assignment_returns_to_pending_at_expiry();
        test_running_job_with_expired_lease_is_lost_then_retried();
        test_lost_with_no_attempts_left_fails();
        test_last_attempt_lost_waits_grace_for_late_completion();
        test_worker_states_follow_heartbeat_age();
        test_backoff_is_exponential_capped_and_jittered_within_bounds();
        test_startup_extends_live_leases();
        test_worker_power_loss_requeues_within_bound();
        test_offline_worker_keeps_its_job_until_the_lease_ends();
        test_lowered_heartbeat_timeout_does_not_cut_a_lease();
        test_restart_leaves_an_offline_worker_offline();
        test_next_deadline_is_earliest_lease_or_backoff();
        test_timer_fires_at_lease_expiry_in_a_real_loop();
        test_forward_clock_step_ends_no_lease();
        test_backward_clock_step_delays_no_recovery();
        test_backward_step_while_stopped_delays_no_recovery();
        test_retry_backoff_moves_with_a_step();
        test_small_clock_corrections_are_left_alone();
        test_one_job_that_cannot_move_holds_up_no_other();
        test_one_worker_that_cannot_move_holds_up_no_other();
        return tap_done();
}
