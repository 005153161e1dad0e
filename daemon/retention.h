/* retention.h: deletes what is older than its retention: terminal jobs (with their artifact
 * records, stored in the job's row) after job_retention_days, audit events after
 * event_retention_days, OFFLINE workers that hold no job worker_retention_days after they were
 * last seen (0 keeps forever). Each sweep writes its own audit event. */
#pragma once

#include <stdint.h>

#include "control.h"

typedef struct RetentionCounts {
        uint64_t jobs, events, workers;
} RetentionCounts;

/* One sweep at control_now(c). ret (optional) gets how many of each went. */
int retention_sweep(Control *c, RetentionCounts *ret);
