/* core-test-util.h: a Control on a temporary directory with a controllable clock, and shortcuts
 * for the unit tests of the control plane core. */
#pragma once

#include "control.h"
#include "http-server.h"
#include "jobs.h"
#include "workers.h"

#define T0 ((usec_t) 1700000000ULL * USEC_PER_SEC)

/* A Control with its store open in a fresh temp dir, clock at T0 (anchored), short test settings:
 * lease 10s, disconnect 15s, heartbeat 30s, reconcile 1s, backoff 2s (cap 60s, no jitter). */
Control *test_control_new(void);
void test_control_free(Control *c);
const char *test_control_dir(const Control *c);

static inline void test_advance(Control *c, usec_t by) {
        c->clock_override += by;
        c->elapsed_override += by;
}

/* A step of the realtime clock alone (an NTP correction); negative: backward. */
static inline void test_step_clock(Control *c, int64_t by) {
        c->clock_override = (usec_t) ((int64_t) c->clock_override + by);
}

/* Registers a worker with comma-separated capabilities; bails out on failure. */
void test_register(Control *c, const char *worker_id, const char *caps);
/* Submits a job with priority; returns its id (static buffer per call rotated among 8). */
const char *test_submit(Control *c, int64_t priority);
const char *test_submit_spec(Control *c, const JobSpec *spec);
/* Claims for a worker and returns the job (caller frees) or NULL. */
Job *test_claim(Control *c, const char *worker_id);
/* Claim + ack; bails out if nothing was claimed. */
Job *test_claim_and_ack(Control *c, const char *worker_id);
JobState test_job_state(Control *c, const char *job_id);
/* Rows in audit_events with this event name (and job id, if not NULL). */
int test_count_events(Control *c, const char *event, const char *job_id);
/* Forces a job's columns for set-up (tests only: production code changes status only through
 * job_transition()). */
void test_force(Control *c, const char *sql_set, const char *job_id);
int test_sweep(Control *c);
/* The query plan of sql searches (or walks in order) `index`, and sorts nothing. */
bool test_plan_uses(Control *c, const char *sql, const char *index);

/* HTTP request/response helpers over the stubbed server functions (http-stub.c). */
typedef struct TestQuery {
        const char *keys[8];
        const char *values[8];
} TestQuery;
HttpRequest test_request(const char *method, const char *path, const char *body, TestQuery *q);
