/* jobs-internal.h: job operations shared by jobs.c, jobs-reconnect.c, workers.c and reconcile.c.
 * Each runs inside the caller's open transaction and changes state only via job_transition(). */
#pragma once

#include <sqlite3.h>

#include "jobs.h"

/* SELECT list and FROM clause that job_from_row() reads; JOB_COLUMNS "FROM jobs j [INDEXED BY ...]"
 * JOB_JOIN where a statement names its index. */
#define JOB_SELECT JOB_COLUMNS "FROM jobs j " JOB_JOIN
#define JOB_JOIN   "LEFT JOIN workers w ON w.worker_id = j.worker_id "
#define JOB_COLUMNS                                                                                                    \
        "SELECT j.job_id, j.status, j.command, j.args, j.working_dir, j.timeout_ms, j.priority, "                      \
        "j.scheduled_at, j.needs_gpu, j.requirements, j.created_at, j.updated_at, j.attempt_count, "                   \
        "j.max_attempts, j.worker_id, j.assignment_id, j.assignment_expires_at, j.retry_at, j.last_error, "            \
        "j.result_path, j.exit_code, j.updated_by, j.completion_seq, j.result_summary, j.artifact_id, "                \
        "j.stdout_path, j.stderr_path, j.stdout_sha256, j.stderr_sha256, j.artifact_backend, "                         \
        "j.artifact_location, j.artifact_upload_state, j.artifact_upload_error, "                                      \
        "CASE WHEN j.status IN ('ASSIGNED', 'RUNNING') THEN w.last_seen END "

int job_from_row(sqlite3_stmt *st, Job **ret);

/* ASSIGNED -> PENDING (the attempt is given back: the job never ran) or RETRYING -> PENDING; the
 * assignment is cleared. */
int jobs_requeue(Control *c, const Origin *o, const Job *j, const char *reason);
/* RUNNING -> LOST, or ASSIGNED -> PENDING: the worker no longer has the job. */
/* RUNNING -> LOST, then RETRYING or FAILED at once, except that with work_may_be_done (the worker
 * was cut off, not restarted) a job on its last attempt stays LOST for lost_grace. */
int jobs_give_up(Control *c, const Origin *o, const Job *j, const char *reason, bool work_may_be_done);
/* RUNNING or LOST -> RETRYING (backoff scheduled) or FAILED by attempts left. */
int jobs_retry_or_fail(Control *c, const Origin *o, const Job *j, const char *error, bool has_exit_code,
                       int64_t exit_code, JobState *ret_state);

int jobs_complete_locked(Control *c, const Origin *o, const Completion *comp, JobState *ret_state, OpError *err);
int jobs_fail_locked(Control *c, const Origin *o, const Failure *f, JobState *ret_state, OpError *err);

/* Of the jobs a worker reports running (workers.h HeldJob), those it must stop: not held by it
 * (ASSIGNED or RUNNING under its worker id), or held under another assignment than reported. */
typedef struct HeldJob HeldJob;
int jobs_not_held(Control *c, const char *worker_id, const HeldJob *jobs, size_t n, char ***ret);
/* The rule both the heartbeat and /reconnect go by: why the job j (NULL: none) that the worker
 * reports as h is not its own (NULL: it is, ASSIGNED or RUNNING, under h's assignment if h says
 * one). */
const char *job_not_held_reason(const Job *j, const char *worker_id, const HeldJob *h);

/* Ids of the jobs a worker holds (ASSIGNED or RUNNING). */
int jobs_held_by(Control *c, const char *worker_id, char ***ret);
/* Those and the jobs whose result from the worker would still be accepted: LOST or RETRYING keep
 * its assignment until they are handed to someone else (and a replay of its results must find it
 * registered). */
int jobs_bound_to(Control *c, const char *worker_id, char ***ret);

/* Commits *tx when r is success or a refusal (its audit rows are kept), else leaves it for the
 * cleanup to roll back. Returns r, or the commit's error. */
int jobs_finish(Control **tx, int r);

/* JSON array text <-> string vector, for the args/requirements/capabilities columns. */
int strv_to_json_text(char *const *l, char **ret);
int strv_from_json_text(const char *text, char ***ret);
