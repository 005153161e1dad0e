/* jobs.c: submit, read, claim, ack, complete, fail and abort jobs; each is one transaction whose
 * state changes go through job_transition() with their audit rows. */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "job-state.h"
#include "jobs-internal.h"
#include "json-util.h"
#include "log.h"
#include "reconcile.h"
#include "schedule.h"
#include "store.h"
#include "strv.h"
#include "workers.h"

Job *job_free(Job *j) {
        if (!j)
                return NULL;
        char **strs[] = {&j->job_id,
                         &j->command,
                         &j->working_dir,
                         &j->worker_id,
                         &j->assignment_id,
                         &j->last_error,
                         &j->result_path,
                         &j->updated_by,
                         &j->result_summary,
                         &j->artifact_id,
                         &j->stdout_path,
                         &j->stderr_path,
                         &j->stdout_sha256,
                         &j->stderr_sha256,
                         &j->artifact_backend,
                         &j->artifact_location,
                         &j->artifact_upload_state,
                         &j->artifact_upload_error};
        for (size_t i = 0; i < ELEMENTSOF(strs); i++)
                free(*strs[i]);
        strv_free(j->args);
        strv_free(j->requirements);
        free(j);
        return NULL;
}

void job_array_free(Job **a, size_t n) {
        for (size_t i = 0; i < n; i++)
                job_free(a[i]);
        free(a);
}

int strv_to_json_text(char *const *l, char **ret) {
        _cleanup_json_ json_object *a = json_object_new_array();
        if (!a)
                return -ENOMEM;
        for (size_t i = 0; l && l[i]; i++)
                if (json_object_array_add(a, json_object_new_string(l[i])) < 0)
                        return -ENOMEM;
        char *s = strdup(json_object_to_json_string_ext(a, JSON_C_TO_STRING_PLAIN));
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

int strv_from_json_text(const char *text, char ***ret) {
        _cleanup_json_ json_object *a = NULL;
        _cleanup_strv_free_ char **l = calloc(1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        /* Most jobs have no args and no requirements, and every job load reads both: skip the
         * parser (a tokener allocated and freed) for the empty list. */
        if (streq_ptr(text, "[]")) {
                *ret = TAKE_PTR(l);
                return 0;
        }
        if (!isempty(text) && json_parse(text, strlen(text), &a, NULL) >= 0 && json_object_is_type(a, json_type_array))
                for (size_t i = 0; i < json_object_array_length(a); i++) {
                        const char *s = json_object_get_string(json_object_array_get_idx(a, i));
                        if (s && strv_extend(&l, s) < 0)
                                return -ENOMEM;
                }
        *ret = TAKE_PTR(l);
        return 0;
}

int job_from_row(sqlite3_stmt *st, Job **ret) {
        _cleanup_(job_freep) Job *j = calloc(1, sizeof(*j));
        int col = 0;

        if (!j)
                return -ENOMEM;
#define STR(field) store_column_strdup(st, col++, &j->field)
#define I64(field) (j->field = sqlite3_column_int64(st, col++))
        if (STR(job_id) < 0)
                return -ENOMEM;
        j->status = job_state_from_string((const char *) sqlite3_column_text(st, col++));
        if (STR(command) < 0 || strv_from_json_text((const char *) sqlite3_column_text(st, col++), &j->args) < 0 ||
            STR(working_dir) < 0)
                return -ENOMEM;
        I64(timeout_ms);
        I64(priority);
        j->scheduled_at = (usec_t) sqlite3_column_int64(st, col++);
        j->needs_gpu = sqlite3_column_int(st, col++) != 0;
        if (strv_from_json_text((const char *) sqlite3_column_text(st, col++), &j->requirements) < 0)
                return -ENOMEM;
        j->created_at = (usec_t) sqlite3_column_int64(st, col++);
        j->updated_at = (usec_t) sqlite3_column_int64(st, col++);
        I64(attempt_count);
        I64(max_attempts);
        if (STR(worker_id) < 0 || STR(assignment_id) < 0)
                return -ENOMEM;
        j->assignment_expires_at = (usec_t) sqlite3_column_int64(st, col++);
        j->retry_at = (usec_t) sqlite3_column_int64(st, col++);
        if (STR(last_error) < 0 || STR(result_path) < 0)
                return -ENOMEM;
        j->has_exit_code = sqlite3_column_type(st, col) != SQLITE_NULL;
        I64(exit_code);
        if (STR(updated_by) < 0)
                return -ENOMEM;
        I64(completion_seq);
        if (STR(result_summary) < 0 || STR(artifact_id) < 0 || STR(stdout_path) < 0 || STR(stderr_path) < 0 ||
            STR(stdout_sha256) < 0 || STR(stderr_sha256) < 0 || STR(artifact_backend) < 0 ||
            STR(artifact_location) < 0 || STR(artifact_upload_state) < 0 || STR(artifact_upload_error) < 0)
                return -ENOMEM;
        j->worker_last_seen = (usec_t) sqlite3_column_int64(st, col++);
#undef STR
#undef I64
        if (j->status < 0)
                return log_error_errno(-EBADMSG, "Job %s has an unknown status in the database.", j->job_id);
        *ret = TAKE_PTR(j);
        return 0;
}

int jobs_finish(Control **tx, int r) {
        if (r >= 0 || op_is_refusal(r)) {
                int k = control_commit(tx);
                if (k < 0)
                        return k;
        }
        return r;
}

/* ---- submit ---- */

void job_spec_init(JobSpec *s) {
        *s = (JobSpec){.max_attempts = JOBS_DEFAULT_MAX_ATTEMPTS};
}

static int validate_strv(char *const *l, size_t max_items, size_t max_len, const char *name, OpError *err) {
        size_t n = strv_length(l);
        if (n > max_items)
                return op_error_set(err, -EINVAL, "field '%s' has more than %zu items", name, max_items);
        for (size_t i = 0; i < n; i++)
                if (strlen(l[i]) > max_len)
                        return op_error_set(err, -EINVAL, "an item of field '%s' is longer than %zu bytes", name,
                                            max_len);
        return 0;
}

int job_spec_validate(const JobSpec *s, OpError *err) {
        int r;

        if (isempty(s->command))
                return op_error_set(err, -EINVAL, "field 'command' is required and must not be empty");
        if (strlen(s->command) > LIMIT_COMMAND_LEN)
                return op_error_set(err, -EINVAL, "field 'command' is longer than %d bytes", LIMIT_COMMAND_LEN);
        if (s->working_dir && strlen(s->working_dir) > LIMIT_PATH_LEN)
                return op_error_set(err, -EINVAL, "field 'working_dir' is longer than %d bytes", LIMIT_PATH_LEN);
        if (s->max_attempts < 1 || s->max_attempts > JOBS_MAX_ATTEMPTS_LIMIT)
                return op_error_set(err, -EINVAL, "field 'max_attempts' must be between 1 and %d",
                                    JOBS_MAX_ATTEMPTS_LIMIT);
        /* Every way in (HTTP, D-Bus) ends here: the ranges hold whichever one a job came by. */
        if (s->timeout_ms < 0 || s->timeout_ms > JOBS_TIMEOUT_MS_MAX)
                return op_error_set(err, -EINVAL, "field 'timeout_ms' must be between 0 and %lld", JOBS_TIMEOUT_MS_MAX);
        if (s->priority < -JOBS_PRIORITY_LIMIT || s->priority > JOBS_PRIORITY_LIMIT)
                return op_error_set(err, -EINVAL, "field 'priority' must be between %lld and %lld",
                                    -JOBS_PRIORITY_LIMIT, JOBS_PRIORITY_LIMIT);
        if (s->scheduled_at > (usec_t) (JOBS_SCHEDULED_AT_MAX_SEC * USEC_PER_SEC))
                return op_error_set(err, -EINVAL, "field 'scheduled_at' must be Unix seconds");
        r = validate_strv(s->args, LIMIT_ARGS, LIMIT_ARG_LEN, "args", err);
        if (r < 0)
                return r;
        return validate_strv(s->requirements, LIMIT_REQUIREMENTS, LIMIT_CAPABILITY_LEN, "requirements", err);
}

/* The requirements as stored: a set, sorted and each once, so that one set is one class of the
 * claim (schedule.h) however a client lists it. */
static int requirements_text(char *const *requirements, char **ret) {
        _cleanup_strv_free_ char **set = strv_copy(requirements);
        if (!set)
                return -ENOMEM;
        strv_sort_unique(set);
        return strv_to_json_text(set, ret);
}

static int insert_job(Control *c, const Origin *o, const JobSpec *spec, const char *job_id, usec_t now) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        _cleanup_free_ char *args = NULL, *reqs = NULL;
        int r;

        if (strv_to_json_text(spec->args, &args) < 0 || requirements_text(spec->requirements, &reqs) < 0)
                return -ENOMEM;
        r = store_prepare(c->store,
                          "INSERT INTO jobs (job_id, status, command, args, working_dir, timeout_ms, priority, "
                          "scheduled_at, needs_gpu, requirements, created_at, updated_at, attempt_count, "
                          "max_attempts, updated_by) VALUES (?, 'PENDING', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
                          &st);
        if (r < 0)
                return r;
        if (store_bind_text(st, 1, job_id) < 0 || store_bind_text(st, 2, spec->command) < 0 ||
            store_bind_text(st, 3, args) < 0 || store_bind_text(st, 4, spec->working_dir) < 0 ||
            store_bind_int64(st, 5, spec->timeout_ms) < 0 || store_bind_int64(st, 6, spec->priority) < 0 ||
            store_bind_int64(st, 7, (int64_t) spec->scheduled_at) < 0 || store_bind_int64(st, 8, spec->needs_gpu) < 0 ||
            store_bind_text(st, 9, reqs) < 0 || store_bind_int64(st, 10, (int64_t) now) < 0 ||
            store_bind_int64(st, 11, (int64_t) now) < 0 || store_bind_int64(st, 12, spec->max_attempts) < 0 ||
            store_bind_text(st, 13, origin_actor(o)) < 0)
                return -ENOMEM;
        r = store_step(c->store, st);
        return r < 0 ? r : 0;
}

int jobs_submit(Control *c, const Origin *o, const JobSpec *spec, char ret_job_id[RANDOM_ID_SIZE], OpError *err) {
        _cleanup_tx_ Control *tx = NULL;
        _cleanup_json_ json_object *d = json_object_new_object();
        char job_id[RANDOM_ID_SIZE], msg[256];
        int r;

        r = job_spec_validate(spec, err);
        if (r < 0)
                return r;
        if (!d)
                return -ENOMEM;
        /* Time-ordered: the jobs a busy control plane is working on are the recent ones, and their
         * rows (and audit_job entries) then share a few pages instead of dirtying one each. */
        usec_t now = control_now(c);
        r = time_ordered_id(now, job_id);
        if (r < 0)
                return r;
        r = control_begin(c, &tx);
        if (r < 0)
                return r;
        r = insert_job(c, o, spec, job_id, now);
        if (r < 0)
                return r;
        json_add_string(d, "command", spec->command);
        json_add_int64(d, "priority", spec->priority);
        json_add_int64(d, "max_attempts", spec->max_attempts);
        snprintf(msg, sizeof(msg), "Job %s submitted by %s", job_id, origin_actor(o));
        r = audit_record(c,
                         &(AuditRecord){.component = "jobs",
                                        .level = LOG_INFO,
                                        .event = "job.submitted",
                                        .message = msg,
                                        .origin = o,
                                        .job_id = job_id,
                                        .details = d},
                         NULL);
        if (r < 0)
                return r;
        r = control_commit(&tx);
        if (r < 0)
                return r;
        memcpy(ret_job_id, job_id, RANDOM_ID_SIZE);
        return 0;
}

/* ---- read ---- */

static int load_job(Control *c, const char *job_id, Job **ret) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r = store_prepare(c->store, JOB_SELECT "WHERE j.job_id = ?", &st);
        if (r < 0)
                return r;
        if (store_bind_text(st, 1, job_id) < 0)
                return -ENOMEM;
        r = store_step(c->store, st);
        if (r < 0)
                return r;
        if (r == 0)
                return -ENOENT;
        return job_from_row(st, ret);
}

/* The columns fencing, the lease and the state machine's callers read (job_id, status, worker_id,
 * assignment_id, assignment_expires_at, attempt_count, max_attempts); every other field is left
 * empty. A worker's ack, completion and heartbeat need no more, and reading the whole row (with its
 * worker's last_seen) cost them about three times as much. */
static int load_job_lease(Control *c, const char *job_id, Job **ret) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        _cleanup_(job_freep) Job *j = NULL;
        int r = store_prepare(c->store,
                              "SELECT job_id, status, worker_id, assignment_id, assignment_expires_at, attempt_count, "
                              "max_attempts FROM jobs WHERE job_id = ?",
                              &st);
        if (r < 0)
                return r;
        if (store_bind_text(st, 1, job_id) < 0)
                return -ENOMEM;
        r = store_step(c->store, st);
        if (r < 0)
                return r;
        if (r == 0)
                return -ENOENT;
        j = calloc(1, sizeof(*j));
        if (!j || store_column_strdup(st, 0, &j->job_id) < 0 || store_column_strdup(st, 2, &j->worker_id) < 0 ||
            store_column_strdup(st, 3, &j->assignment_id) < 0)
                return -ENOMEM;
        j->status = job_state_from_string((const char *) sqlite3_column_text(st, 1));
        if (j->status < 0)
                return log_error_errno(-EBADMSG, "Job %s has an unknown status in the database.", j->job_id);
        j->assignment_expires_at = (usec_t) sqlite3_column_int64(st, 4);
        j->attempt_count = sqlite3_column_int64(st, 5);
        j->max_attempts = sqlite3_column_int64(st, 6);
        *ret = TAKE_PTR(j);
        return 0;
}

int jobs_get(Control *c, const char *job_id, Job **ret) {
        if (isempty(job_id) || strlen(job_id) > LIMIT_ID_LEN)
                return -ENOENT;
        return load_job(c, job_id, ret);
}

static int collect_jobs(Control *c, sqlite3_stmt *st, Job ***ret, size_t *ret_n) {
        Job **a = NULL;
        size_t n = 0;
        int r;

        while ((r = store_step(c->store, st)) > 0) {
                Job **p = realloc(a, (n + 1) * sizeof(*p));
                if (!p) {
                        r = -ENOMEM;
                        break;
                }
                a = p;
                r = job_from_row(st, &a[n]);
                if (r < 0)
                        break;
                n++;
        }
        if (r < 0) {
                job_array_free(a, n);
                return r;
        }
        *ret = a;
        *ret_n = n;
        return 0;
}

int jobs_list(Control *c, const JobFilter *f, Job ***ret, size_t *ret_n) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        bool by_status = f->status >= 0 && f->status < _JOB_STATE_MAX;
        size_t limit = f->limit ? MIN(f->limit, (size_t) JOBS_LIST_MAX_LIMIT) : JOBS_LIST_DEFAULT_LIMIT;
        int r;

        /* One statement per filter combination, so that each uses its index. With both filters
         * the worker's own jobs are walked (newest first, until the limit): left to itself SQLite
         * walks every job in the state, all of the cluster's COMPLETED ones for a worker with two. */
        if (by_status && f->worker_id)
                r = store_prepare(c->store,
                                  JOB_COLUMNS "FROM jobs j INDEXED BY jobs_worker " JOB_JOIN
                                                  "WHERE j.worker_id = ?2 AND j.status = ?1 "
                                                  "ORDER BY j.created_at DESC, j.job_id DESC LIMIT ?3",
                                  &st);
        else if (by_status)
                r = store_prepare(c->store,
                                  JOB_SELECT "WHERE j.status = ?1 ORDER BY j.created_at DESC, j.job_id DESC LIMIT ?3",
                                  &st);
        else if (f->worker_id)
                r = store_prepare(
                        c->store,
                        JOB_SELECT "WHERE j.worker_id = ?2 ORDER BY j.created_at DESC, j.job_id DESC LIMIT ?3", &st);
        else
                r = store_prepare(c->store, JOB_SELECT "ORDER BY j.created_at DESC, j.job_id DESC LIMIT ?3", &st);
        if (r < 0)
                return r;
        if ((by_status && store_bind_text(st, 1, job_state_to_string(f->status)) < 0) ||
            (f->worker_id && store_bind_text(st, 2, f->worker_id) < 0) || store_bind_int64(st, 3, (int64_t) limit) < 0)
                return -ENOMEM;
        return collect_jobs(c, st, ret, ret_n);
}

/* The ids sql (one parameter: the worker id) selects, in order. */
static int worker_job_ids(Control *c, const char *sql, const char *worker_id, char ***ret) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r = store_prepare(c->store, sql, &st);
        if (r < 0)
                return r;
        if (store_bind_text(st, 1, worker_id) < 0)
                return -ENOMEM;
        return store_collect_strings(c->store, st, ret);
}

/* Both walk jobs_held: only unfinished jobs, not every job the worker ever ran (the status terms
 * imply the partial index's, so that it may be used). */
int jobs_held_by(Control *c, const char *worker_id, char ***ret) {
        return worker_job_ids(c,
                              "SELECT job_id FROM jobs INDEXED BY jobs_held WHERE worker_id = ? "
                              "AND (status = 'ASSIGNED' OR status = 'RUNNING') ORDER BY job_id",
                              worker_id, ret);
}

int jobs_bound_to(Control *c, const char *worker_id, char ***ret) {
        return worker_job_ids(c,
                              "SELECT job_id FROM jobs INDEXED BY jobs_held WHERE worker_id = ? AND (status = "
                              "'ASSIGNED' OR status = 'RUNNING' OR status = 'LOST' OR status = 'RETRYING') "
                              "ORDER BY job_id",
                              worker_id, ret);
}

const char *job_not_held_reason(const Job *j, const char *worker_id, const HeldJob *h) {
        if (!j)
                return "no such job";
        if (!streq_ptr(j->worker_id, worker_id) || (j->status != JOB_RUNNING && j->status != JOB_ASSIGNED))
                return "the job is not held by this worker any more";
        if (h->assignment_id && !streq_ptr(j->assignment_id, h->assignment_id))
                return "the job is held under another assignment";
        return NULL;
}

int jobs_not_held(Control *c, const char *worker_id, const HeldJob *jobs, size_t n, char ***ret) {
        _cleanup_strv_free_ char **l = calloc(1, sizeof(char *));
        int r;

        if (!l)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                _cleanup_(job_freep) Job *j = NULL;
                r = isempty(jobs[i].job_id) || strlen(jobs[i].job_id) > LIMIT_ID_LEN
                            ? -ENOENT
                            : load_job_lease(c, jobs[i].job_id, &j);
                if (r < 0 && r != -ENOENT)
                        return r;
                if (job_not_held_reason(j, worker_id, &jobs[i]) && !strv_contains(l, jobs[i].job_id) &&
                    strv_extend(&l, jobs[i].job_id) < 0)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(l);
        return 0;
}

/* ---- columns that change with a transition, written by its UPDATE (job-state.h) ---- */

typedef struct Assignment {
        const char *worker_id, *assignment_id;
        usec_t expires;
        int attempt_delta;
} Assignment;

static int bind_assignment(sqlite3_stmt *st, const void *userdata) {
        const Assignment *a = userdata;
        if (store_bind_text(st, 5, a->worker_id) < 0 || store_bind_text(st, 6, a->assignment_id) < 0 ||
            store_bind_int64(st, 7, (int64_t) a->expires) < 0 || store_bind_int64(st, 8, a->attempt_delta) < 0)
                return -ENOMEM;
        return 0;
}

static JobColumns assignment_columns(const Assignment *a) {
        return (JobColumns){.update = JOB_STATUS_UPDATE(", worker_id = ?5, assignment_id = ?6, "
                                                        "assignment_expires_at = ?7, "
                                                        "attempt_count = MAX(0, attempt_count + ?8), retry_at = 0"),
                            .bind = bind_assignment,
                            .userdata = a};
}

static int bind_lease(sqlite3_stmt *st, const void *userdata) {
        const usec_t *expires = userdata;
        return store_bind_int64(st, 5, (int64_t) *expires);
}

static JobColumns lease_columns(const usec_t *expires) {
        return (JobColumns){
                .update = JOB_STATUS_UPDATE(", assignment_expires_at = ?5"), .bind = bind_lease, .userdata = expires};
}

typedef struct Outcome {
        const char *error;
        bool has_exit_code;
        int64_t exit_code;
        usec_t retry_at;
} Outcome;

static int bind_outcome(sqlite3_stmt *st, const void *userdata) {
        const Outcome *x = userdata;
        if (store_bind_text(st, 5, x->error) < 0 ||
            (x->has_exit_code ? store_bind_int64(st, 6, x->exit_code) : store_errno(sqlite3_bind_null(st, 6))) < 0 ||
            store_bind_int64(st, 7, (int64_t) x->retry_at) < 0)
                return -ENOMEM;
        return 0;
}

static JobColumns outcome_columns(const Outcome *x) {
        return (JobColumns){.update = JOB_STATUS_UPDATE(", last_error = coalesce(?5, last_error), "
                                                        "exit_code = coalesce(?6, exit_code), retry_at = ?7, "
                                                        "assignment_expires_at = 0"),
                            .bind = bind_outcome,
                            .userdata = x};
}

/* ---- shared transitions ---- */

int jobs_requeue(Control *c, const Origin *o, const Job *j, const char *reason) {
        /* An assignment that was never acknowledged never ran: its attempt is given back. */
        Assignment none = {.attempt_delta = j->status == JOB_ASSIGNED ? -1 : 0};
        JobColumns cols = assignment_columns(&none);
        return job_transition(c, o, j->job_id, JOB_PENDING, &(JobChange){.reason = reason, .columns = &cols}, NULL);
}

int jobs_give_up(Control *c, const Origin *o, const Job *j, const char *reason, bool work_may_be_done) {
        if (j->status == JOB_ASSIGNED)
                return jobs_requeue(c, o, j, reason);
        Outcome x = {.error = reason};
        JobColumns cols = outcome_columns(&x);
        int r = job_transition(c, o, j->job_id, JOB_LOST, &(JobChange){.reason = reason, .columns = &cols}, NULL);
        if (r < 0)
                return r;
        /* On its last attempt, a job whose worker may still finish it (cut off, not restarted) waits
         * in LOST for lost_grace, so that the completion it replays is accepted; the sweep decides
         * after that (reconcile.c). Otherwise LOST is a waypoint: decide now, in this transaction. */
        if (work_may_be_done && j->attempt_count >= j->max_attempts && c->settings.lost_grace > 0) {
                reconcile_note_deadline(c, control_now(c) + c->settings.lost_grace);
                return 0;
        }
        Job lost = *j;
        lost.status = JOB_LOST;
        return jobs_retry_or_fail(c, o, &lost, reason, false, 0, NULL);
}

int jobs_retry_or_fail(Control *c, const Origin *o, const Job *j, const char *error, bool has_exit_code,
                       int64_t exit_code, JobState *ret_state) {
        JobState to = j->attempt_count < j->max_attempts ? JOB_RETRYING : JOB_FAILED;
        Outcome x = {.error = error, .has_exit_code = has_exit_code, .exit_code = exit_code};
        JobColumns cols = outcome_columns(&x);
        int r;

        if (to == JOB_RETRYING)
                x.retry_at =
                        control_now(c) + reconcile_backoff(&c->settings, j->attempt_count, reconcile_random_unit());
        r = job_transition(c, o, j->job_id, to, &(JobChange){.reason = error, .columns = &cols}, NULL);
        if (r < 0)
                return r;
        if (to == JOB_RETRYING)
                reconcile_note_deadline(c, x.retry_at);
        if (ret_state)
                *ret_state = to;
        return 0;
}

/* ---- fencing ---- */

static int refuse_stale(Control *c, const Origin *o, const Job *j, const char *op, const char *worker_id,
                        const char *assignment_id, OpError *err) {
        _cleanup_json_ json_object *d = json_object_new_object();
        char msg[512];
        int r;

        if (!d)
                return -ENOMEM;
        json_add_string(d, "operation", op);
        json_add_string(d, "presented_worker_id", worker_id);
        json_add_string(d, "presented_assignment_id", assignment_id);
        json_add_string(d, "current_worker_id", j->worker_id);
        json_add_string(d, "current_assignment_id", j->assignment_id);
        json_add_string(d, "status", job_state_to_string(j->status));
        snprintf(msg, sizeof(msg), "Refused %s of job %s by worker %s: assignment %s is not the job's current one", op,
                 j->job_id, strna(worker_id), strna(assignment_id));
        r = audit_record(c,
                         &(AuditRecord){.component = "jobs",
                                        .level = LOG_WARNING,
                                        .event = "job.assignment_stale",
                                        .message = msg,
                                        .origin = o,
                                        .worker_id = worker_id,
                                        .job_id = j->job_id,
                                        .assignment_id = assignment_id,
                                        .details = d},
                         NULL);
        if (r < 0)
                return r;
        return op_error_set(err, -ESTALE, "assignment %s of job %s is not current (wrong worker or superseded)",
                            strna(assignment_id), j->job_id);
}

/* Loads what a worker call needs of the job (load_job_lease()) and checks the fencing token. */
static int load_fenced(Control *c, const Origin *o, const char *op, const char *job_id, const char *worker_id,
                       const char *assignment_id, Job **ret, OpError *err) {
        _cleanup_(job_freep) Job *j = NULL;
        int r;

        if (isempty(job_id) || isempty(worker_id) || isempty(assignment_id))
                return op_error_set(err, -EINVAL, "job_id, worker_id and assignment_id are required");
        r = worker_require(c, worker_id, NULL);
        if (r == -EPERM)
                return op_error_set(err, r, "worker %s is not registered", worker_id);
        if (r < 0)
                return r;
        r = load_job_lease(c, job_id, &j);
        if (r == -ENOENT)
                return op_error_set(err, r, "no job %s", job_id);
        if (r < 0)
                return r;
        if (!streq_ptr(j->worker_id, worker_id) || !streq_ptr(j->assignment_id, assignment_id))
                return refuse_stale(c, o, j, op, worker_id, assignment_id, err);
        *ret = TAKE_PTR(j);
        return 0;
}

/* ---- claim ---- */

static int claim_locked(Control *c, const Origin *o, const char *worker_id, Job **ret) {
        _cleanup_(worker_freep) Worker *w = NULL;
        _cleanup_free_ char *job_id = NULL;
        char assignment_id[RANDOM_ID_SIZE];
        usec_t now = control_now(c);
        int r;

        r = worker_require(c, worker_id, &w);
        if (r < 0)
                return r;
        if (w->restart_pending) {
                /* Asking for work after a restart without reconnecting: it runs nothing of ours. */
                r = worker_resolve_restart(c, o, worker_id, NULL, NULL);
                if (r < 0)
                        return r;
        }
        if (w->draining)
                return 0;
        r = schedule_pick(c, worker_id, w->capabilities, now, &job_id);
        if (r <= 0)
                return r;
        r = random_id(assignment_id);
        if (r < 0)
                return r;
        Assignment a = {.worker_id = worker_id,
                        .assignment_id = assignment_id,
                        .expires = now + c->settings.lease_timeout,
                        .attempt_delta = +1};
        JobColumns cols = assignment_columns(&a);
        r = job_transition(c, o, job_id, JOB_ASSIGNED,
                           &(JobChange){.worker_id = worker_id, .assignment_id = assignment_id, .columns = &cols},
                           NULL);
        if (r < 0)
                return r;
        r = load_job(c, job_id, ret);
        return r < 0 ? r : 1;
}

int jobs_claim(Control *c, const Origin *o, const char *worker_id, Job **ret) {
        _cleanup_tx_ Control *tx = NULL;
        _cleanup_(job_freep) Job *j = NULL;
        int r, k;

        *ret = NULL;
        if (isempty(worker_id) || strlen(worker_id) > LIMIT_ID_LEN)
                return -EINVAL;
        r = control_begin(c, &tx);
        if (r < 0)
                return r;
        r = claim_locked(c, o, worker_id, &j);
        k = jobs_finish(&tx, r);
        if (k < 0)
                return k;
        if (j) {
                reconcile_note_deadline(c, j->assignment_expires_at);
                *ret = TAKE_PTR(j);
        }
        return r;
}

/* ---- ack ---- */

static int ack_locked(Control *c, const Origin *o, const char *job_id, const char *worker_id, const char *assignment_id,
                      OpError *err) {
        _cleanup_(job_freep) Job *j = NULL;
        usec_t now = control_now(c);
        int r;

        r = load_fenced(c, o, "ack", job_id, worker_id, assignment_id, &j, err);
        if (r < 0)
                return r;
        if (j->status == JOB_RUNNING)
                return OP_NOOP;
        if (j->status == JOB_ASSIGNED && j->assignment_expires_at <= now) {
                /* Too late: the lease ran out before the ack. Requeue now rather than at the sweep. */
                r = jobs_requeue(c, o, j, "ack arrived after the lease expired");
                if (r < 0)
                        return r;
                return op_error_set(err, -ESTALE, "assignment %s of job %s expired before the ack", assignment_id,
                                    job_id);
        }
        /* Any other state is refused (and audited) by the state machine. */
        usec_t expires = now + c->settings.lease_timeout;
        JobColumns cols = lease_columns(&expires);
        r = job_transition(c, o, job_id, JOB_RUNNING, &(JobChange){.reason = "ack", .columns = &cols}, NULL);
        if (r == -EBUSY)
                return op_error_set(err, r, "job %s is %s, not ASSIGNED", job_id, job_state_to_string(j->status));
        return r;
}

int jobs_ack(Control *c, const Origin *o, const char *job_id, const char *worker_id, const char *assignment_id,
             OpError *err) {
        _cleanup_tx_ Control *tx = NULL;
        int r = control_begin(c, &tx);
        if (r < 0)
                return r;
        return jobs_finish(&tx, ack_locked(c, o, job_id, worker_id, assignment_id, err));
}

int jobs_renew_leases(Control *c, const char *worker_id, const HeldJob *held, size_t n_held, usec_t now) {
        int renewed = 0;

        for (size_t i = 0; i < n_held; i++) {
                _cleanup_stmt_ sqlite3_stmt *st = NULL;
                int r = store_prepare(c->store,
                                      "UPDATE jobs SET assignment_expires_at = ?1 WHERE job_id = ?2 AND worker_id = ?3 "
                                      "AND status = 'RUNNING' AND (?4 IS NULL OR assignment_id = ?4)",
                                      &st);
                if (r < 0)
                        return r;
                if (store_bind_int64(st, 1, (int64_t) (now + c->settings.lease_timeout)) < 0 ||
                    store_bind_text(st, 2, held[i].job_id) < 0 || store_bind_text(st, 3, worker_id) < 0 ||
                    store_bind_text(st, 4, held[i].assignment_id) < 0) /* NULL: any assignment of its */
                        return -ENOMEM;
                r = store_step(c->store, st);
                if (r < 0)
                        return r;
                renewed += sqlite3_changes(c->store->db);
        }
        return renewed;
}

/* ---- complete ---- */

static bool is_sha256(const char *s) {
        if (strlen(s) != 64)
                return false;
        for (const char *p = s; *p; p++)
                if (!strchr("0123456789abcdefABCDEF", *p))
                        return false;
        return true;
}

static bool ends_with(const char *s, const char *suffix) {
        size_t a = strlen(s), b = strlen(suffix);
        return a >= b && streq(s + a - b, suffix);
}

static int check_pair(const char *final, const char *tmp, const char *name, OpError *err) {
        if (!final && !tmp)
                return 0;
        if (!final || !tmp)
                return op_error_set(err, -EINVAL, "%s_path and %s_tmp_path must be given together", name, name);
        if (ends_with(final, ".tmp"))
                return op_error_set(err, -EINVAL, "%s_path must be the final name, not a .tmp file", name);
        if (strlen(tmp) != strlen(final) + 4 || strncmp(tmp, final, strlen(final)) != 0 || !ends_with(tmp, ".tmp"))
                return op_error_set(err, -EINVAL, "%s_tmp_path must be %s_path + \".tmp\"", name, name);
        return 0;
}

int completion_validate(const Completion *comp, OpError *err) {
        const char *texts[] = {comp->stdout_path, comp->stderr_path, comp->stdout_tmp_path, comp->stderr_tmp_path};
        int r;

        if (isempty(comp->job_id) || isempty(comp->worker_id) || isempty(comp->assignment_id))
                return op_error_set(err, -EINVAL, "job_id, worker_id and assignment_id are required");
        for (size_t i = 0; i < ELEMENTSOF(texts); i++)
                if (texts[i] && strlen(texts[i]) > LIMIT_PATH_LEN)
                        return op_error_set(err, -EINVAL, "artifact paths are limited to %d bytes", LIMIT_PATH_LEN);
        r = check_pair(comp->stdout_path, comp->stdout_tmp_path, "stdout", err);
        if (r < 0)
                return r;
        r = check_pair(comp->stderr_path, comp->stderr_tmp_path, "stderr", err);
        if (r < 0)
                return r;
        if ((comp->stdout_sha256 && !is_sha256(comp->stdout_sha256)) ||
            (comp->stderr_sha256 && !is_sha256(comp->stderr_sha256)))
                return op_error_set(err, -EINVAL, "stdout_sha256 and stderr_sha256 must be 64 hex digits");
        if (comp->completion_seq < 0)
                return op_error_set(err, -EINVAL, "completion_seq must not be negative");
        return 0;
}

static int bind_completion(sqlite3_stmt *st, const void *userdata) {
        const Completion *x = userdata;
        if ((x->has_exit_code ? store_bind_int64(st, 5, x->exit_code) : store_bind_text(st, 5, NULL)) < 0 ||
            store_bind_text(st, 6, x->result_summary) < 0 || store_bind_text(st, 7, x->artifact_id) < 0 ||
            store_bind_text(st, 8, x->stdout_path) < 0 || store_bind_text(st, 9, x->stderr_path) < 0 ||
            store_bind_text(st, 10, x->stdout_sha256) < 0 || store_bind_text(st, 11, x->stderr_sha256) < 0 ||
            store_bind_text(st, 12, x->artifact_backend) < 0 || store_bind_text(st, 13, x->artifact_location) < 0 ||
            store_bind_text(st, 14, x->artifact_upload_state) < 0 ||
            store_bind_text(st, 15, x->artifact_upload_error) < 0 || store_bind_int64(st, 16, x->completion_seq) < 0)
                return -ENOMEM;
        return 0;
}

static JobColumns completion_columns(const Completion *x) {
        return (JobColumns){
                .update = JOB_STATUS_UPDATE(
                        ", exit_code = ?5, result_summary = ?6, artifact_id = ?7, stdout_path = ?8, "
                        "stderr_path = ?9, stdout_sha256 = ?10, stderr_sha256 = ?11, artifact_backend = ?12, "
                        "artifact_location = ?13, artifact_upload_state = ?14, artifact_upload_error = ?15, "
                        "completion_seq = ?16, result_path = coalesce(?13, ?8), assignment_expires_at = 0, "
                        "retry_at = 0"),
                .bind = bind_completion,
                .userdata = x};
}

int jobs_complete_locked(Control *c, const Origin *o, const Completion *comp, JobState *ret_state, OpError *err) {
        _cleanup_(job_freep) Job *j = NULL;
        _cleanup_json_ json_object *d = NULL;
        int r;

        r = completion_validate(comp, err);
        if (r < 0)
                return r;
        r = load_fenced(c, o, "complete", comp->job_id, comp->worker_id, comp->assignment_id, &j, err);
        if (r < 0)
                return r;
        if (ret_state)
                *ret_state = j->status;
        if (job_state_is_terminal(j->status))
                return OP_NOOP; /* a repeat, or the job was aborted/failed meanwhile: nothing to apply */

        d = json_object_new_object();
        if (!d)
                return -ENOMEM;
        if (comp->has_exit_code)
                json_add_int64(d, "exit_code", comp->exit_code);
        json_add_int64(d, "completion_seq", comp->completion_seq);
        json_add_string(d, "stdout_sha256", comp->stdout_sha256);
        json_add_string(d, "stderr_sha256", comp->stderr_sha256);
        JobColumns cols = completion_columns(comp);
        r = job_transition(c, o, comp->job_id, JOB_COMPLETED, &(JobChange){.details = d, .columns = &cols}, NULL);
        if (r == -EBUSY)
                return op_error_set(err, r, "job %s is %s: a completion needs an acknowledged assignment", comp->job_id,
                                    job_state_to_string(j->status));
        if (r < 0)
                return r;
        if (ret_state)
                *ret_state = JOB_COMPLETED;
        return 0;
}

int jobs_complete(Control *c, const Origin *o, const Completion *comp, JobState *ret_state, OpError *err) {
        _cleanup_tx_ Control *tx = NULL;
        int r = completion_validate(comp, err);
        if (r < 0)
                return r;
        r = control_begin(c, &tx);
        if (r < 0)
                return r;
        return jobs_finish(&tx, jobs_complete_locked(c, o, comp, ret_state, err));
}

/* ---- fail ---- */

static json_object *failure_details(const Failure *f) {
        json_object *d = json_object_new_object();
        if (!d)
                return NULL;
        json_add_string(d, "failure_kind", f->failure_kind);
        json_add_bool(d, "retryable", !f->not_retryable);
        if (f->handback)
                json_add_bool(d, "handback", true);
        if (f->has_exit_code)
                json_add_int64(d, "exit_code", f->exit_code);
        return d;
}

/* "retryable": false: another attempt would end the same way (e.g. the worker's policy refused
 * the command), so attempts left do not matter. */
static int fail_for_good(Control *c, const Origin *o, const Job *j, const Failure *f, JobState *ret_state) {
        _cleanup_json_ json_object *d = failure_details(f);
        _cleanup_free_ char *reason = NULL;
        int r;

        if (!d || asprintf(&reason, "not retryable (%s): %s", f->failure_kind ?: "unspecified",
                           f->error ?: "failed") < 0)
                return -ENOMEM;
        Outcome x = {.error = reason, .has_exit_code = f->has_exit_code, .exit_code = f->exit_code};
        JobColumns cols = outcome_columns(&x);
        r = job_transition(c, o, j->job_id, JOB_FAILED, &(JobChange){.reason = reason, .details = d, .columns = &cols},
                           NULL);
        if (r < 0)
                return r;
        if (ret_state)
                *ret_state = JOB_FAILED;
        return 0;
}

static int give_back_attempt(Control *c, const char *job_id) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r = store_prepare(c->store, "UPDATE jobs SET attempt_count = MAX(0, attempt_count - 1) WHERE job_id = ?",
                              &st);
        if (r < 0)
                return r;
        if (store_bind_text(st, 1, job_id) < 0)
                return -ENOMEM;
        r = store_step(c->store, st);
        return r < 0 ? r : 0;
}

/* A worker stopping (SIGTERM, stop-mode=handback) gives the job back unfinished: not the job's
 * fault, so no attempt is counted and no backoff applies (see jobs.h). */
static int hand_back(Control *c, const Origin *o, const Job *j, const Failure *f, JobState *ret_state) {
        _cleanup_json_ json_object *d = failure_details(f);
        _cleanup_free_ char *reason = NULL;
        usec_t now = control_now(c);
        int r;

        if (!d || asprintf(&reason, "handed back by worker %s: %s", f->worker_id, f->error ?: "worker stopping") < 0)
                return -ENOMEM;
        Outcome x = {.error = reason, .has_exit_code = f->has_exit_code, .exit_code = f->exit_code, .retry_at = now};
        JobColumns cols = outcome_columns(&x);
        r = job_transition(c, o, j->job_id, JOB_RETRYING,
                           &(JobChange){.reason = reason, .details = d, .columns = &cols}, NULL);
        if (r >= 0)
                r = give_back_attempt(c, j->job_id);
        if (r < 0)
                return r;
        reconcile_note_deadline(c, now);
        if (ret_state)
                *ret_state = JOB_RETRYING;
        return 0;
}

int jobs_fail_locked(Control *c, const Origin *o, const Failure *f, JobState *ret_state, OpError *err) {
        _cleanup_(job_freep) Job *j = NULL;
        int r;

        if (f->error && strlen(f->error) > LIMIT_TEXT_LEN)
                return op_error_set(err, -EINVAL, "field 'error' is longer than %d bytes", LIMIT_TEXT_LEN);
        r = load_fenced(c, o, "fail", f->job_id, f->worker_id, f->assignment_id, &j, err);
        if (r < 0)
                return r;
        if (ret_state)
                *ret_state = j->status;
        /* Terminal: nothing to apply. RETRYING: this failure was already counted. */
        if (job_state_is_terminal(j->status) || j->status == JOB_RETRYING)
                return OP_NOOP;
        if (j->status != JOB_RUNNING && j->status != JOB_LOST) {
                /* Let the state machine refuse and audit it (e.g. ASSIGNED: a failure needs an ack). */
                r = job_transition(c, o, f->job_id, JOB_FAILED, &(JobChange){.reason = f->error}, NULL);
                if (r >= 0)
                        r = -EIO; /* cannot happen: ASSIGNED/PENDING -> FAILED are not edges */
                return r == -EBUSY ? op_error_set(err, r, "job %s is %s, not RUNNING", f->job_id,
                                                  job_state_to_string(j->status))
                                   : r;
        }
        if (f->not_retryable)
                return fail_for_good(c, o, j, f, ret_state);
        if (f->handback)
                return hand_back(c, o, j, f, ret_state);
        return jobs_retry_or_fail(c, o, j, f->error ? f->error : "failed", f->has_exit_code, f->exit_code, ret_state);
}

int jobs_fail(Control *c, const Origin *o, const Failure *f, JobState *ret_state, OpError *err) {
        _cleanup_tx_ Control *tx = NULL;
        int r = control_begin(c, &tx);
        if (r < 0)
                return r;
        return jobs_finish(&tx, jobs_fail_locked(c, o, f, ret_state, err));
}

/* ---- abort ---- */

static int abort_one(Control *c, const Origin *o, const char *job_id, const char *reason, OpError *err) {
        Outcome x = {.error = reason};
        JobColumns cols = outcome_columns(&x);
        JobState from;
        int r = job_transition(c, o, job_id, JOB_ABORTED, &(JobChange){.reason = reason, .columns = &cols}, &from);
        if (r == -EBUSY)
                return op_error_set(err, r, "job %s is %s and cannot be aborted", job_id, job_state_to_string(from));
        return r;
}

static int abort_locked(Control *c, const Origin *o, const char *job_id, const char *worker_id, const char *reason,
                        size_t *ret_aborted, OpError *err) {
        _cleanup_strv_free_ char **held = NULL;
        int r;

        if (job_id) {
                _cleanup_(job_freep) Job *j = NULL;
                r = load_job(c, job_id, &j);
                /* A job that has ended is a conflict (409) whoever held it; a live one another
                 * worker holds, or none, is nothing to abort for this worker. */
                if (r == -ENOENT ||
                    (r >= 0 && worker_id && !job_state_is_terminal(j->status) &&
                     (!streq_ptr(j->worker_id, worker_id) || (j->status != JOB_ASSIGNED && j->status != JOB_RUNNING))))
                        return op_error_set(err, -ENOENT, "nothing to abort: no job %s%s%s", job_id,
                                            worker_id ? " held by worker " : "", strempty(worker_id));
                if (r < 0)
                        return r;
                r = abort_one(c, o, job_id, reason, err);
                if (r < 0)
                        return r;
                *ret_aborted = 1;
                return 0;
        }
        r = jobs_held_by(c, worker_id, &held);
        if (r < 0)
                return r;
        if (strv_length(held) == 0)
                return op_error_set(err, -ENOENT, "nothing to abort: worker %s holds no job", worker_id);
        STRV_FOREACH (id, held) {
                r = abort_one(c, o, *id, reason, err);
                if (r < 0)
                        return r;
        }
        *ret_aborted = strv_length(held);
        return 0;
}

int jobs_abort_reason(const Origin *o, const char *reason, char **ret) {
        char *s = NULL;

        if (isempty(reason) ? asprintf(&s, "aborted by %s", origin_actor(o)) < 0 : !(s = strdup(reason)))
                return -ENOMEM;
        *ret = s;
        return 0;
}

int jobs_abort(Control *c, const Origin *o, const char *job_id, const char *worker_id, const char *reason,
               size_t *ret_aborted, OpError *err) {
        _cleanup_tx_ Control *tx = NULL;
        _cleanup_free_ char *dflt = NULL;
        size_t n = 0;
        int r;

        if (isempty(job_id) && isempty(worker_id))
                return op_error_set(err, -EINVAL, "job_id or worker_id is required");
        if ((job_id && strlen(job_id) > LIMIT_ID_LEN) || (worker_id && strlen(worker_id) > LIMIT_ID_LEN))
                return op_error_set(err, -EINVAL, "ids are limited to %d bytes", LIMIT_ID_LEN);
        if (reason && strlen(reason) > LIMIT_TEXT_LEN)
                return op_error_set(err, -EINVAL, "field 'reason' is longer than %d bytes", LIMIT_TEXT_LEN);
        if (isempty(reason)) {
                if (jobs_abort_reason(o, reason, &dflt) < 0)
                        return -ENOMEM;
                reason = dflt;
        }
        r = control_begin(c, &tx);
        if (r < 0)
                return r;
        r = jobs_finish(&tx, abort_locked(c, o, isempty(job_id) ? NULL : job_id, isempty(worker_id) ? NULL : worker_id,
                                          reason, &n, err));
        if (r >= 0 && ret_aborted)
                *ret_aborted = n;
        return r;
}
