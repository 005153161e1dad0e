/* protocol.c: string forms of the states, from one table each; the worker id rule. */
#include <string.h>

#include "macro.h"
#include "protocol.h"

static const char *const job_state_table[_JOB_STATE_MAX] = {
        [JOB_PENDING] = "PENDING",     [JOB_ASSIGNED] = "ASSIGNED", [JOB_RUNNING] = "RUNNING",
        [JOB_COMPLETED] = "COMPLETED", [JOB_FAILED] = "FAILED",     [JOB_RETRYING] = "RETRYING",
        [JOB_LOST] = "LOST",           [JOB_ABORTED] = "ABORTED",
};

static const char *const worker_state_table[_WORKER_STATE_MAX] = {
        [WORKER_ONLINE] = "ONLINE",
        [WORKER_DISCONNECTED] = "DISCONNECTED",
        [WORKER_OFFLINE] = "OFFLINE",
        [WORKER_DRAINING] = "DRAINING",
};

static int lookup(const char *const *table, int n, const char *s) {
        if (!s)
                return -EINVAL;
        for (int i = 0; i < n; i++)
                if (table[i] && streq(table[i], s))
                        return i;
        return -EINVAL;
}

const char *job_state_to_string(JobState s) {
        return s >= 0 && s < _JOB_STATE_MAX ? job_state_table[s] : NULL;
}

JobState job_state_from_string(const char *s) {
        return (JobState) lookup(job_state_table, _JOB_STATE_MAX, s);
}

const char *worker_state_to_string(WorkerState s) {
        return s >= 0 && s < _WORKER_STATE_MAX ? worker_state_table[s] : NULL;
}

WorkerState worker_state_from_string(const char *s) {
        return (WorkerState) lookup(worker_state_table, _WORKER_STATE_MAX, s);
}

bool worker_id_is_registrable(const char *id) {
        size_t n = id ? strlen(id) : 0;
        if (n == 0 || n > LIMIT_ID_LEN)
                return false;
        for (const char *p = id; *p; p++)
                if ((unsigned char) *p < 0x21 || *p == 0x7f)
                        return false;
        return true;
}
