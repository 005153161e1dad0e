/* job-json.h: the wire contract's JSON forms of a job, a worker and an audit event. */
#pragma once

#include <json-c/json.h>

#include "audit.h"
#include "jobs.h"
#include "time-util.h"
#include "workers.h"

/* Every field of the contract's `job`; heartbeat_age_sec while a worker holds it. */
json_object *job_to_json(const Job *j, usec_t now);
/* The /next-job answer. */
json_object *job_assignment_to_json(const Job *j);
json_object *worker_to_json(const Worker *w, usec_t now);
json_object *audit_event_to_json(const AuditEvent *e);
