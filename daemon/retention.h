/* retention.h: deletes what is older than its retention: terminal jobs (with their artifact
 * records, stored in the job's row) after job_retention_days, audit events after
 * event_retention_days (except those of a job that has not ended), OFFLINE workers that hold no
 * job worker_retention_days after they were last seen (0 keeps forever). Each sweep writes its
 * own audit event (retention.sweep), whose counts cover the whole sweep; a sweep that the daemon's
 * exit stops midway records what it did, with "interrupted": true.
 *
 * Rows go in batches of at most RETENTION_BATCH, each its own transaction (workers
 * RETENTION_WORKER_BATCH, a transaction each). With an event loop
 * (Control.event) a sweep runs one batch per loop iteration: HTTP requests, heartbeats and the
 * watchdog are served between two batches, so that a large backlog never holds the loop for
 * long. */
#pragma once

#include <stdint.h>

#include "control.h"

#define RETENTION_BATCH 5000
/* Workers go one transaction each (worker_remove(), audited): fewer to a batch. */
#define RETENTION_WORKER_BATCH 64

typedef struct RetentionCounts {
        uint64_t jobs, events, workers;
} RetentionCounts;

/* A sweep at control_now(c). With c->event: starts it (its batches then run one per loop
 * iteration) and returns at once; a sweep still under way is left to finish instead. Without one
 * (tests): runs it whole, and ret (optional) gets how many of each went. */
int retention_sweep(Control *c, RetentionCounts *ret);

/* At exit, before the store closes: a sweep under way stops and records what its committed
 * batches deleted (retention.sweep, "interrupted": true). */
void retention_stop(Control *c);
