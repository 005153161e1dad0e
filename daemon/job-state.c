/* job-state.c: the job state machine. The table below is design.md's, edge for edge, plus the
 * two edges design.md's lease rules require: a completion for the job's latest assignment is
 * accepted even after the job was marked LOST or RETRYING ("the work was done, nothing newer
 * exists"), which takes LOST and RETRYING to COMPLETED. job_transition() is the only code that
 * writes jobs.status. */
#include <assert.h>
#include <errno.h>
#include <stdio.h>

#include "audit.h"
#include "job-state.h"
#include "json-util.h"
#include "log.h"
#include "store.h"

#define EDGE(from, to) [from][to] = true

static const bool edges[_JOB_STATE_MAX][_JOB_STATE_MAX] = {
        EDGE(JOB_PENDING, JOB_ASSIGNED), /* claim */
        EDGE(JOB_PENDING, JOB_ABORTED),
        EDGE(JOB_ASSIGNED, JOB_RUNNING), /* ack */
        EDGE(JOB_ASSIGNED, JOB_PENDING), /* ack not received before the lease expired */
        EDGE(JOB_ASSIGNED, JOB_ABORTED),
        EDGE(JOB_RUNNING, JOB_COMPLETED),
        EDGE(JOB_RUNNING, JOB_FAILED),   /* no attempts left */
        EDGE(JOB_RUNNING, JOB_RETRYING), /* failed, attempts left */
        EDGE(JOB_RUNNING, JOB_LOST),     /* worker gone or lease expired */
        EDGE(JOB_RUNNING, JOB_ABORTED),
        EDGE(JOB_LOST, JOB_RETRYING),    /* attempts left */
        EDGE(JOB_LOST, JOB_FAILED),      /* no attempts left */
        EDGE(JOB_LOST, JOB_COMPLETED),   /* late completion of the latest assignment */
        EDGE(JOB_RETRYING, JOB_PENDING), /* backoff elapsed */
        EDGE(JOB_RETRYING, JOB_ABORTED),
        EDGE(JOB_RETRYING, JOB_COMPLETED), /* late completion of the latest assignment */
        /* COMPLETED, FAILED and ABORTED are terminal: no edges out. */
};

bool job_transition_allowed(JobState from, JobState to) {
        if (from < 0 || from >= _JOB_STATE_MAX || to < 0 || to >= _JOB_STATE_MAX)
                return false;
        return edges[from][to];
}

static const char *event_for(JobState to) {
        static const char *const names[_JOB_STATE_MAX] = {
                [JOB_PENDING] = "job.requeued",    [JOB_ASSIGNED] = "job.assigned", [JOB_RUNNING] = "job.running",
                [JOB_COMPLETED] = "job.completed", [JOB_FAILED] = "job.failed",     [JOB_RETRYING] = "job.retrying",
                [JOB_LOST] = "job.lost",           [JOB_ABORTED] = "job.aborted",
        };
        return names[to];
}

static int level_for(JobState to) {
        switch (to) {
        case JOB_FAILED:
        case JOB_LOST:
                return LOG_WARNING;
        case JOB_ABORTED:
        case JOB_RETRYING:
                return LOG_NOTICE;
        default:
                return LOG_INFO;
        }
}

typedef struct Row {
        JobState status;
        char *worker_id, *assignment_id;
} Row;

static void row_done(Row *r) {
        free(r->worker_id);
        free(r->assignment_id);
}

static int read_row(Control *c, const char *job_id, Row *ret) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r = store_prepare(c->store, "SELECT status, worker_id, assignment_id FROM jobs WHERE job_id = ?", &st);
        if (r < 0)
                return r;
        if (store_bind_text(st, 1, job_id) < 0)
                return -ENOMEM;
        r = store_step(c->store, st);
        if (r < 0)
                return r;
        if (r == 0)
                return -ENOENT;
        ret->status = job_state_from_string((const char *) sqlite3_column_text(st, 0));
        if (ret->status < 0)
                return log_error_errno(-EBADMSG, "Job %s has an unknown status in the database.", job_id);
        if (store_column_strdup(st, 1, &ret->worker_id) < 0 || store_column_strdup(st, 2, &ret->assignment_id) < 0)
                return -ENOMEM;
        return 0;
}

static int write_status(Control *c, const Origin *o, const char *job_id, JobState to, const JobColumns *columns) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r = store_prepare(c->store, columns ? columns->update : JOB_STATUS_UPDATE(""), &st);
        if (r < 0)
                return r;
        if (store_bind_text(st, 1, job_state_to_string(to)) < 0 ||
            store_bind_int64(st, 2, (int64_t) control_now(c)) < 0 || store_bind_text(st, 3, origin_actor(o)) < 0 ||
            store_bind_text(st, 4, job_id) < 0)
                return -ENOMEM;
        if (columns && columns->bind(st, columns->userdata) < 0)
                return -ENOMEM;
        r = store_step(c->store, st);
        return r < 0 ? r : 0;
}

static int audit(Control *c, const Origin *o, const char *job_id, const Row *row, JobState to, bool refused,
                 const JobChange *change) {
        _cleanup_json_ json_object *d = NULL;
        const char *reason = change ? change->reason : NULL;
        char msg[512];

        if (change && change->details) {
                if (json_object_deep_copy(change->details, &d, NULL) < 0)
                        return -ENOMEM;
        } else
                d = json_object_new_object();
        if (!d)
                return -ENOMEM;
        json_add_string(d, "from", job_state_to_string(row->status));
        json_add_string(d, "to", job_state_to_string(to));
        if (reason)
                json_add_string(d, "reason", reason);
        snprintf(msg, sizeof(msg), "Job %s %s%s -> %s%s%s", job_id, refused ? "transition refused: " : "",
                 job_state_to_string(row->status), job_state_to_string(to), reason ? ": " : "", strempty(reason));

        const char *w = change && change->worker_id ? change->worker_id : row->worker_id;
        const char *a = change && change->assignment_id ? change->assignment_id : row->assignment_id;
        return audit_record(c,
                            &(AuditRecord){.component = "jobs",
                                           .level = refused ? LOG_WARNING : level_for(to),
                                           .event = refused ? "job.transition_refused" : event_for(to),
                                           .message = msg,
                                           .origin = o,
                                           .worker_id = w,
                                           .job_id = job_id,
                                           .assignment_id = a,
                                           .details = d},
                            NULL);
}

int job_transition(Control *c, const Origin *o, const char *job_id, JobState to, const JobChange *change,
                   JobState *ret_from) {
        Row row = {};
        int r;

        assert(c->store->in_transaction);
        if (to < 0 || to >= _JOB_STATE_MAX)
                return -EINVAL;

        r = read_row(c, job_id, &row);
        if (r < 0)
                goto finish;
        if (ret_from)
                *ret_from = row.status;

        if (!job_transition_allowed(row.status, to)) {
                log_warning("Refused transition of job %s: %s -> %s.", job_id, job_state_to_string(row.status),
                            job_state_to_string(to));
                r = audit(c, o, job_id, &row, to, true, change);
                if (r >= 0)
                        r = -EBUSY;
                goto finish;
        }

        r = write_status(c, o, job_id, to, change ? change->columns : NULL);
        if (r >= 0)
                r = audit(c, o, job_id, &row, to, false, change);
finish:
        row_done(&row);
        return r;
}
