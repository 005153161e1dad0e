/* protocol.h: names and limits of the wire contract shared by the control plane, the worker and
 * entropyctl: job and worker states, artifact states, and the bounds on untrusted input. */
#pragma once

#include <errno.h>
#include <stdbool.h>

typedef enum JobState {
        JOB_PENDING,
        JOB_ASSIGNED,
        JOB_RUNNING,
        JOB_COMPLETED,
        JOB_FAILED,
        JOB_RETRYING,
        JOB_LOST,
        JOB_ABORTED,
        _JOB_STATE_MAX,
        _JOB_STATE_INVALID = -EINVAL,
} JobState;

typedef enum WorkerState {
        WORKER_ONLINE,
        WORKER_DISCONNECTED,
        WORKER_OFFLINE,
        WORKER_DRAINING, /* online, but takes no new assignments */
        _WORKER_STATE_MAX,
        _WORKER_STATE_INVALID = -EINVAL,
} WorkerState;

const char *job_state_to_string(JobState s);
JobState job_state_from_string(const char *s);
const char *worker_state_to_string(WorkerState s);
WorkerState worker_state_from_string(const char *s);

/* Whether POST /register accepts this worker id: 1..LIMIT_ID_LEN bytes, none of them a space, a
 * control character or DEL. Bytes above 0x7f (UTF-8) are allowed. The wake datagram
 * (wake-proto.h) can address every such id. */
bool worker_id_is_registrable(const char *id);

static inline int job_state_is_terminal(JobState s) {
        return s == JOB_COMPLETED || s == JOB_FAILED || s == JOB_ABORTED;
}

/* Bounds on untrusted input; documented in entropy(7) and docs/security.md. */
#define LIMIT_ID_LEN 128            /* job, worker, assignment ids, nonces */
#define LIMIT_COMMAND_LEN 4096
#define LIMIT_ARG_LEN 4096
#define LIMIT_ARGS 256
#define LIMIT_PATH_LEN 4096
#define LIMIT_REQUIREMENTS 64
#define LIMIT_CAPABILITY_LEN 128
#define LIMIT_TEXT_LEN 8192         /* error messages, result summaries, reasons */
#define LIMIT_RECONNECT_ENTRIES 1024
#define LIMIT_METRICS_LEN 4096      /* serialized heartbeat metrics */
#define LIMIT_VERSION_LEN 64        /* the version a worker registers with */
#define LIMIT_SLOTS 4096            /* the jobs a worker says it runs at once */
#define LIMIT_GPUS 256              /* the GPUs a worker says its slots share (one per slot at most) */
#define LIMIT_EVENTS_PAGE 1000      /* audit events in one answer (GET /events, ListEvents) */
#define EVENTS_PAGE_DEFAULT 200
#define LIMIT_BODY_DEFAULT (1024 * 1024)
