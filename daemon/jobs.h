/* jobs.h: the domain operations on jobs, each one SQLite transaction with its audit rows. They
 * take plain C values (no JSON, no HTTP) so that the HTTP handlers, the D-Bus API and the tests
 * share them. Return codes: see ops.h. Every state change goes through job_transition()
 * (job-state.h); the fencing token of every worker call is the job's latest assignment_id.
 *
 * Idempotency, precisely:
 *  - jobs_complete()/jobs_fail() with the job's latest assignment (and its worker) on a job that
 *    is already terminal (COMPLETED, FAILED, ABORTED) change nothing and return OP_NOOP with the
 *    job's real state: this covers a repeat of an applied completion and a completion racing an
 *    abort. jobs_fail() on a RETRYING job with its latest assignment is likewise OP_NOOP (the
 *    failure was already counted).
 *  - A completion for the latest assignment is applied even when the job was meanwhile marked
 *    LOST or RETRYING (the work was done and nothing newer exists; design.md).
 *  - Any call naming another assignment (superseded, or never issued) or another worker than
 *    the job's is refused with -ESTALE and audited ("job.assignment_stale"); nothing is applied.
 *  - A repeat of an ack on a RUNNING job with the same assignment is OP_NOOP.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "control.h"
#include "crypto.h"
#include "macro.h"
#include "ops.h"
#include "protocol.h"
#include "time-util.h"

#define JOBS_DEFAULT_MAX_ATTEMPTS 3
#define JOBS_MAX_ATTEMPTS_LIMIT   1000
/* Priorities stay far from the int64 limits so that aging can add to them without overflow. */
#define JOBS_PRIORITY_LIMIT       1000000000LL
#define JOBS_TIMEOUT_MS_MAX       (INT32_MAX * 1000LL) /* what a worker accepts */
#define JOBS_SCHEDULED_AT_MAX_SEC 1e11                 /* Unix seconds, year ~5138 */
#define JOBS_LIST_DEFAULT_LIMIT   1000
#define JOBS_LIST_MAX_LIMIT       100000

typedef struct Job {
        char *job_id;
        JobState status;
        char *command;
        char **args;
        char *working_dir;
        int64_t timeout_ms; /* 0 = none */
        int64_t priority;
        usec_t scheduled_at; /* 0 = now */
        bool needs_gpu;
        char **requirements;
        usec_t created_at, updated_at;
        int64_t attempt_count, max_attempts;
        char *worker_id;     /* of the latest assignment */
        char *assignment_id; /* latest assignment, the fencing token */
        usec_t assignment_expires_at;
        usec_t retry_at; /* RETRYING: when the backoff ends */
        char *last_error;
        char *result_path;
        bool has_exit_code;
        int64_t exit_code;
        char *updated_by;

        /* Completion and artifact record (wire contract /complete). */
        int64_t completion_seq;
        char *result_summary;
        char *artifact_id;
        char *stdout_path, *stderr_path;
        char *stdout_sha256, *stderr_sha256;
        char *artifact_backend, *artifact_location, *artifact_upload_state, *artifact_upload_error;

        usec_t worker_last_seen; /* of the holding worker, while ASSIGNED or RUNNING; else 0 */
} Job;

Job *job_free(Job *j);
DEFINE_TRIVIAL_CLEANUP_FUNC(Job *, job_free);
void job_array_free(Job **a, size_t n);

/* A submission. Initialize with job_spec_init() for the defaults. Borrowed strings. */
typedef struct JobSpec {
        const char *command; /* required */
        char **args;
        const char *working_dir;
        int64_t max_attempts; /* default 3, 1..JOBS_MAX_ATTEMPTS_LIMIT */
        int64_t timeout_ms;   /* >= 0, 0 = none */
        int64_t priority;
        usec_t scheduled_at; /* 0 = claimable at once */
        bool needs_gpu;
        char **requirements; /* capabilities the worker must have */
} JobSpec;

void job_spec_init(JobSpec *s);
/* Checks a spec against protocol.h's bounds; -EINVAL with err naming the field. */
int job_spec_validate(const JobSpec *s, OpError *err);

int jobs_submit(Control *c, const Origin *o, const JobSpec *spec, char ret_job_id[RANDOM_ID_SIZE], OpError *err);

int jobs_get(Control *c, const char *job_id, Job **ret);

typedef struct JobFilter {
        JobState status;       /* _JOB_STATE_INVALID for any */
        const char *worker_id; /* NULL for any */
        size_t limit;          /* 0 = JOBS_LIST_DEFAULT_LIMIT */
} JobFilter;
#define JOB_FILTER_ALL ((JobFilter){.status = _JOB_STATE_INVALID})

/* Newest first (created_at, then job_id, descending). */
int jobs_list(Control *c, const JobFilter *f, Job ***ret, size_t *ret_n);

/* Claims the next eligible job for a registered worker (schedule.h decides which): PENDING ->
 * ASSIGNED with a fresh assignment_id, expiry now + lease_timeout, attempt_count + 1.
 * Returns 1 and *ret on a claim, 0 (and *ret = NULL) when nothing is eligible or the worker is
 * draining, -EPERM for an unregistered worker. */
int jobs_claim(Control *c, const Origin *o, const char *worker_id, Job **ret);

/* ASSIGNED -> RUNNING. -ESTALE for another worker or assignment, -EBUSY when the lease already
 * expired (the job went back to PENDING or elsewhere), OP_NOOP for a repeated ack. */
int jobs_ack(Control *c, const Origin *o, const char *job_id, const char *worker_id, const char *assignment_id,
             OpError *err);

typedef struct HeldJob HeldJob;

/* Inside an open transaction (heartbeat, reconnect): pushes to now + lease_timeout the lease of
 * each reported job that is RUNNING for this worker (under the reported assignment, when one is
 * given). Only what the worker says it holds is renewed: a job it has let go of, or never heard
 * was acknowledged, expires and is recovered. ASSIGNED jobs are not renewed, so that an ack that
 * never comes still expires. Returns the number of leases renewed. */
int jobs_renew_leases(Control *c, const char *worker_id, const HeldJob *held, size_t n_held, usec_t now);

typedef struct Completion {
        const char *job_id, *worker_id, *assignment_id;
        int64_t completion_seq;
        bool has_exit_code;
        int64_t exit_code;
        const char *result_summary;
        const char *artifact_id;
        const char *stdout_path, *stderr_path;
        const char *stdout_tmp_path, *stderr_tmp_path;
        const char *stdout_sha256, *stderr_sha256;
        const char *artifact_backend, *artifact_location, *artifact_upload_state, *artifact_upload_error;
} Completion;

/* The artifact contract: each tmp path must be its final path + ".tmp", final paths must not end
 * in ".tmp", SHA-256s are 64 hex digits. -EINVAL with err otherwise. */
int completion_validate(const Completion *comp, OpError *err);

/* RUNNING (or, for the latest assignment, LOST/RETRYING) -> COMPLETED, storing the result and
 * artifact record. 0 applied, OP_NOOP (see top), negative as in ops.h. *ret_state is the job's
 * state afterwards. */
int jobs_complete(Control *c, const Origin *o, const Completion *comp, JobState *ret_state, OpError *err);

typedef struct Failure {
        const char *job_id, *worker_id, *assignment_id;
        bool has_exit_code;
        int64_t exit_code;
        const char *error;
        const char *failure_kind; /* the worker's classification ("exit", "policy", ...); may be NULL */
        bool not_retryable;       /* the wire's "retryable": false: fail for good whatever attempts are left */
        bool handback;            /* the worker gives the job back unfinished (it is stopping): no attempt counted */
} Failure;

/* RUNNING or LOST -> RETRYING (attempts left, backoff scheduled) or FAILED. *ret_state is the
 * state the job is really in afterwards.
 *   not_retryable: RUNNING/LOST -> FAILED at once (e.g. refused by the worker's policy: another
 *     attempt would be refused the same way); the reason is audited.
 *   handback: RUNNING/LOST -> RETRYING with the attempt given back (attempt_count - 1) and no
 *     backoff (retry_at = now), so the next sweep, pulled in to now, makes it PENDING for another
 *     worker. Through RETRYING rather than straight to PENDING so that the state machine keeps
 *     its table and a repeat of the same /fail stays a no-op (RETRYING with the latest
 *     assignment, below). not_retryable wins over handback. */
int jobs_fail(Control *c, const Origin *o, const Failure *fail, JobState *ret_state, OpError *err);

/* The reason an abort keeps in last_error: the one given, or "aborted by <actor>" when none is. */
int jobs_abort_reason(const Origin *o, const char *reason, char **ret);
/* Aborts one job (job_id), every job a worker holds (worker_id; ASSIGNED or RUNNING), or with
 * both, that job if that worker holds it. The reason is kept in last_error. -ENOENT nothing to
 * abort, -EBUSY the job is terminal (or LOST, which cannot be aborted: it becomes RETRYING or
 * FAILED at the next sweep). */
int jobs_abort(Control *c, const Origin *o, const char *job_id, const char *worker_id, const char *reason,
               size_t *ret_aborted, OpError *err);

/* One replayed record of /reconnect: a completion (status COMPLETED) or a failure (FAILED). */
typedef struct ReplayEntry {
        JobState status;
        Completion completion; /* for COMPLETED; job_id/worker_id/assignment_id used for both */
        Failure failure;       /* for FAILED */
        /* Why the record was refused as it stands (a field missing or out of range), NULL for one
         * that parsed. Such a record is answered REJECTED and nothing else: completion.job_id and
         * .assignment_id hold what it said, if anything, so that the worker can find it in its
         * buffer and drop it. */
        const char *invalid;
} ReplayEntry;

typedef struct ReconnectAction {
        char *job_id;
        char *assignment_id;
        const char *action; /* "complete", "fail", "keep", "lost" (static strings) */
        bool accepted;
        char *error;    /* why REJECTED; NULL when ACCEPTED */
        JobState state; /* the job's state afterwards, _JOB_STATE_INVALID if unknown */
} ReconnectAction;

void reconnect_actions_free(ReconnectAction *a, size_t n);

/* A worker reconnects (after a partition or a restart): applies each replayed record as
 * jobs_complete()/jobs_fail() would (a no-op repeat counts as ACCEPTED), then reconciles the jobs
 * it says it still runs (held: the wire's current_job_id, current_job_ids and current_jobs, the
 * last with their assignments). A job the worker holds that it neither claims nor replayed is
 * given up at once (RUNNING -> LOST, ASSIGNED -> PENDING) when the worker presented a new instance
 * id since it last reconciled (workers.h); after a mere partition it is kept and left to its lease.
 * A claimed job is kept ("keep" ACCEPTED) when it is the worker's, ASSIGNED or RUNNING, under the
 * reported assignment if one is given: the rule of the heartbeat's abort_jobs (job_not_held_reason()).
 * Only a RUNNING one has its lease renewed; an ASSIGNED one waits for its ack as before. Any other
 * claim is REJECTED, naming the job's current assignment, so that the worker kills its run. Each
 * replay entry gets one action, each claimed job one "keep" action, each job given up one "lost"
 * action. Returns -EPERM for an unregistered worker; per-entry refusals, invalid records among
 * them, are REJECTED actions. */
int jobs_reconnect(Control *c, const Origin *o, const char *worker_id, const HeldJob *held, size_t n_held,
                   const ReplayEntry *entries, size_t n_entries, ReconnectAction **ret, size_t *ret_n);
