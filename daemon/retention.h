/* retention.h: deletes what is older than its retention: terminal jobs (with their artifact
 * records, stored in the job's row) after job_retention_days, audit events after
 * event_retention_days (0 keeps forever). Each sweep writes its own audit event. */
#pragma once

#include <stdint.h>

#include "control.h"

/* One sweep at control_now(c). ret_jobs/ret_events (optional) get how many rows went. */
int retention_sweep(Control *c, uint64_t *ret_jobs, uint64_t *ret_events);
