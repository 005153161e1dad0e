/* job-state.h: THE job state machine of design.md, as one table of legal edges, and the one
 * function through which every change of a job's status goes. */
#pragma once

#include <json-c/json.h>
#include <sqlite3.h>
#include <stdbool.h>

#include "control.h"
#include "ops.h"
#include "protocol.h"

/* Whether from -> to is an edge of the table. */
bool job_transition_allowed(JobState from, JobState to);

/* The UPDATE that writes a transition: ?1 status, ?2 updated_at, ?3 updated_by, ?4 job_id; the
 * columns that go with the change (", worker_id = ?5, ...") take their parameters from ?5 on.
 * Use it where the literal is written once: the statement cache keys a statement by the address
 * of its SQL. */
#define JOB_STATUS_UPDATE(columns)                                                                                     \
        "UPDATE jobs SET status = ?1, updated_at = ?2, updated_by = ?3" columns " WHERE job_id = ?4"

/* Other columns that change with the status, written by the same UPDATE: one write of the row
 * (and of each index it is in) instead of two. */
typedef struct JobColumns {
        const char *update;                                  /* JOB_STATUS_UPDATE(", column = ?5, ...") */
        int (*bind)(sqlite3_stmt *st, const void *userdata); /* binds ?5 and on */
        const void *userdata;
} JobColumns;

typedef struct JobChange {
        const char *reason;        /* for humans: audit message detail */
        const char *worker_id;     /* for the audit row; default: the job's */
        const char *assignment_id; /* for the audit row; default: the job's */
        json_object *details;      /* borrowed; extra audit details */
        const JobColumns *columns; /* optional: written only if the transition is allowed */
} JobChange;

/* Inside an open transaction: reads the job's status, checks from -> to against the table and
 * either updates status, updated_at, updated_by and writes the audit event ("job.<state>"), or
 * writes a "job.transition_refused" audit row and returns -EBUSY. -ENOENT for an unknown job.
 * ret_from (optional) receives the state the job was in. The job's other columns that change with
 * it are given in change->columns, or updated by the caller in the same transaction after this
 * succeeded. */
int job_transition(Control *c, const Origin *o, const char *job_id, JobState to, const JobChange *change,
                   JobState *ret_from);
