/* control-wake.h: waking sleeping workers when work arrives (the sending side is wake-send.h).
 *
 * A listener on committed audit events: when a job becomes claimable (job.submitted, and
 * job.requeued, which is every way back to PENDING: a retry's backoff elapsed, an ack that never
 * came, a handback), each worker that could take it gets one wake datagram: it registered a wake
 * port, is not draining, holds no job (idle, or OFFLINE: a socket-activated worker exits when idle),
 * and has the capabilities the job needs (gpu, requirements). A job held back by scheduled_at is
 * announced when that time comes, by a timer on the earliest such job.
 *
 * At most one datagram per worker per --wake-interval (default 1s; read at each send, so a reload
 * applies it; wake-rate.h), and at most WAKE_MAX_PER_ADDRESS to one address in that interval: a
 * registration names the address, so ids registered by the hundred with one address could
 * otherwise aim a flood at it. Best effort and never blocking (a non-blocking UDP sendto to a numeric
 * address): a lost wake-up only delays a job until the worker's next poll, a failed send is logged
 * at debug level and otherwise ignored. */
#pragma once

#include "control.h"
#include "macro.h"

#define WAKE_MAX_PER_ADDRESS 64

typedef struct ControlWake ControlWake;

/* Registers the listener and the scheduled-job timer on c->event. */
int control_wake_start(Control *c);
ControlWake *control_wake_free(ControlWake *w);
DEFINE_TRIVIAL_CLEANUP_FUNC(ControlWake *, control_wake_free);

/* Counters, for tests and metrics: datagrams sent, sends that failed, and datagrams held back by
 * the per-address limit (ret_held may be NULL). */
void control_wake_counters(const ControlWake *w, uint64_t *ret_sent, uint64_t *ret_failed, uint64_t *ret_held);
