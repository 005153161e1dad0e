/* workers.h: worker registration, heartbeats and worker state.
 *
 * State is derived from the age of the last contact (registration, heartbeat, or any other call
 * the worker makes for itself: worker_contact()), counted from no earlier than the control plane's
 * own start (a restarted control plane does not hold its downtime against workers), except for a
 * worker already stored OFFLINE, which only contact brings back:
 *   ONLINE        age <= disconnect_timeout
 *   DRAINING      ONLINE, but worker_drain() was called: it gets no new assignments
 *   DISCONNECTED  age > disconnect_timeout: its jobs keep running, not yet lost
 *   OFFLINE       age > heartbeat_timeout (its RUNNING jobs become LOST when their leases end)
 * The last derived state is stored so that changes are audited (worker.online, .disconnected,
 * .offline) by workers_sweep_states() and the contact that brings a worker back.
 *
 * Instances: each worker process start presents a fresh instance_id at /register. A changed
 * instance id means the worker restarted; it is recorded as a pending restart and the jobs the
 * worker holds are resolved at its next /reconnect (the jobs it still claims are kept, the others
 * given up at once: RUNNING -> LOST, ASSIGNED -> PENDING). A restarted worker that asks for work
 * (/next-job) or heartbeats before reconnecting claims nothing but the jobs its heartbeat reports
 * (under their own assignments: worker_restart_claims()), and its other jobs are given up then.
 * A completion for a given-up job's latest assignment is still accepted (jobs.h). Registering
 * without an instance_id never triggers this. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "control.h"
#include "macro.h"
#include "ops.h"
#include "protocol.h"
#include "time-util.h"

typedef struct Worker {
        char *worker_id;
        char *instance_id;
        char **capabilities;
        char *current_job_id;  /* as last reported by a heartbeat or reconnect */
        char *metrics;         /* JSON text of the last heartbeat's metrics, or NULL */
        int64_t heartbeat_seq; /* highest accepted; -1 before the first */
        usec_t last_seen;      /* last registration, accepted heartbeat or contact (worker_contact()) */
        usec_t registered_at;  /* first registration */
        bool draining;
        bool restart_pending; /* new instance id not yet reconciled */
        WorkerState state;    /* derived at load time (see top) */
        WorkerState stored;   /* as last stored (and audited) */
        bool has_nonce;
        uint16_t wake_port;   /* the worker's wake socket (wake-send.h); 0: none */
        char *wake_address;   /* numeric IP to send wake-ups to; NULL with no wake port */
        char *version;        /* as the worker registered; NULL: not said (an older worker) */
        int64_t slots;        /* jobs it runs at once, as it registered; 0: not said */
        char **gpus;          /* the GPUs its slots share, as it registered; NULL: not said */
} Worker;

Worker *worker_free(Worker *w);
DEFINE_TRIVIAL_CLEANUP_FUNC(Worker *, worker_free);
void worker_array_free(Worker **a, size_t n);

typedef struct WorkerRegistration {
        const char *worker_id;   /* required, <= LIMIT_ID_LEN */
        const char *nonce;       /* optional; the first one presented is pinned */
        const char *instance_id; /* optional; a new value per process start */
        char **capabilities;
        int64_t wake_port;        /* optional, 1..65535; 0: no wake socket */
        const char *wake_address; /* optional numeric IPv4/IPv6 address; the caller defaults it to the
                                   * request's peer address when a wake_port is given */
        /* What the worker says it is, shown to operators, not used for scheduling (its
         * capabilities are): optional, each registration replaces them. */
        const char *version; /* <= LIMIT_VERSION_LEN printable ASCII */
        int64_t slots;       /* 1..LIMIT_SLOTS; 0: not said */
        char **gpus;         /* <= LIMIT_GPUS ids; NULL: not said */
} WorkerRegistration;

/* Whether s is a numeric IPv4 or IPv6 address (what wake-ups can be sent to without a lookup). */
bool ip_address_is_numeric(const char *s);

/* Registers or re-registers. The first registration that presents a nonce pins it; any later
 * registration must present the same nonce, else -EEXIST (audited, nothing changes). Updates the
 * capabilities, version, slots, GPUs and the wake socket (each registration replaces it: a worker started without one
 * is not woken), marks the worker seen. Returns 0, or 1 when the instance id changed (restart). */
int worker_register(Control *c, const Origin *o, const WorkerRegistration *reg, OpError *err);

/* A job a worker says it runs, and under which assignment (NULL: not said). Borrowed strings. */
typedef struct HeldJob {
        const char *job_id;
        const char *assignment_id;
} HeldJob;

/* What a heartbeat reports. jobs: the wire's current_job_id, current_job_ids and current_jobs
 * merged (at most LIMIT_RECONNECT_ENTRIES); the first is stored as the worker's current_job_id. */
typedef struct Heartbeat {
        const char *worker_id;
        int64_t seq;
        const char *metrics_json; /* JSON text <= LIMIT_METRICS_LEN, may be NULL */
        const HeldJob *jobs;
        size_t n_jobs;
} Heartbeat;

/* A heartbeat: seq must be above the last accepted one, else OP_NOOP (ignored, nothing changes);
 * each registration restarts the count (a new process counts from 0 again). Stores the current
 * job and metrics, marks the worker seen, renews the leases of the RUNNING jobs it holds, and
 * after a restart (new instance id) gives up the held jobs it does not report. -EPERM
 * unregistered.
 * ret_abort (optional; also on OP_NOOP) receives the reported jobs the worker must stop at once
 * because it no longer holds them under the reported assignment: aborted, reassigned, lost,
 * terminal or unknown (the wire's abort_jobs). */
int worker_heartbeat_report(Control *c, const Origin *o, const Heartbeat *hb, char ***ret_abort, OpError *err);
/* The same with one current job (or none) and no abort list. */
int worker_heartbeat(Control *c, const Origin *o, const char *worker_id, const char *current_job_id, int64_t seq,
                     const char *metrics_json, OpError *err);

/* Contact from any call a worker makes for itself (/next-job, /ack, /complete, /fail,
 * /reconnect, a /heartbeat ignored for its seq): the worker is alive, whether or not its
 * heartbeats get through. As a heartbeat does, it brings a DISCONNECTED or OFFLINE worker back
 * ONLINE (DRAINING if it drains), audited as worker.online (worker.drain), and marks it seen.
 * Writes only when that changes its stored state or last_seen is due for a refresh (a fraction of
 * disconnect_timeout old, see workers.c): a worker polling often costs one row read per call.
 * Opens its own transaction when it writes. Returns 1 when it wrote, 0 when nothing was due,
 * -EPERM when the worker is not registered. */
int worker_contact(Control *c, const Origin *o, const char *worker_id);

/* Stops (drain = true) or resumes handing new jobs to a worker. Running jobs are unaffected. */
int worker_drain(Control *c, const Origin *o, const char *worker_id, bool drain);

/* Forgets a worker for good: its row goes, audited as worker.removed. Only an OFFLINE worker
 * with no job bound to it (ASSIGNED or RUNNING, or LOST or RETRYING under its assignment, whose
 * result it may still report or replay): -EBUSY otherwise, -ENOENT unknown (reasons in err). Its
 * jobs' history keeps its id; if it comes back it registers again as a new worker. */
int worker_remove(Control *c, const Origin *o, const char *worker_id, OpError *err);

int worker_get(Control *c, const char *worker_id, Worker **ret);
int workers_list(Control *c, Worker ***ret, size_t *ret_n);
/* Workers by state and, if ret_no_new_work is given, how many of those ONLINE or DRAINING last
 * said in a heartbeat that they ask for no new job (no_new_work in its metrics: results they
 * could not record, path checks that hang, a nearly full disk). */
int workers_count_by_state(Control *c, uint64_t counts[_WORKER_STATE_MAX], uint64_t *ret_no_new_work);

/* The state a worker is in at `now`, from its last_seen and drain flag (see top). */
WorkerState worker_state_at(const Control *c, const Worker *w, usec_t now);

/* Inside an open transaction (reconciler): re-derives every worker's state, stores and audits
 * changes, each worker's in a step of its own (one that fails is logged and left for the next
 * sweep). Returns the number of workers that changed state; negative only when the transaction
 * is lost. */
int workers_sweep_states(Control *c, usec_t now);

/* Inside an open transaction: the ids of the jobs in held that the worker holds under the
 * assignment it reports with each (any of its own where it reports none), by the rule of the
 * heartbeat's abort_jobs: what a restarted worker claims. A job reported under another assignment
 * is not claimed: the worker's run is of an assignment that was superseded, and no process of the
 * restarted worker runs the current one, so keeping it would leave the job stranded until its
 * lease ran out. Returns their number. */
int worker_restart_claims(Control *c, const char *worker_id, const HeldJob *held, size_t n_held, char ***ret);

/* Inside an open transaction: when the worker has a pending restart, gives up the jobs it holds
 * except those in claimed (may be NULL; see worker_restart_claims()) and clears the flag.
 * Returns the number given up; their ids in *ret_given_up when that is not NULL. */
int worker_resolve_restart(Control *c, const Origin *o, const char *worker_id, char *const *claimed,
                           char ***ret_given_up);

/* Inside an open transaction: loads a registered worker, -EPERM when unknown. With ret NULL, only
 * checks that it is registered, without loading the row. */
int worker_require(Control *c, const char *worker_id, Worker **ret);
