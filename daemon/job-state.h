/* job-state.h: THE job state machine of design.md, as one table of legal edges, and the one
 * function through which every change of a job's status goes. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>

#include "control.h"
#include "ops.h"
#include "protocol.h"

/* Whether from -> to is an edge of the table. */
bool job_transition_allowed(JobState from, JobState to);

typedef struct JobChange {
        const char *reason;        /* for humans: audit message detail */
        const char *worker_id;     /* for the audit row; default: the job's */
        const char *assignment_id; /* for the audit row; default: the job's */
        json_object *details;      /* borrowed; extra audit details */
} JobChange;

/* Inside an open transaction: reads the job's status, checks from -> to against the table and
 * either updates status, updated_at, updated_by and writes the audit event ("job.<state>"), or
 * writes a "job.transition_refused" audit row and returns -EBUSY. -ENOENT for an unknown job.
 * ret_from (optional) receives the state the job was in. Callers update the job's other columns
 * in the same transaction, after this succeeded. */
int job_transition(Control *c, const Origin *o, const char *job_id, JobState to, const JobChange *change,
                   JobState *ret_from);
