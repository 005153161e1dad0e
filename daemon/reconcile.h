/* reconcile.h: the reconciler, which moves jobs whose time has come.
 *
 * reconcile_sweep(), at start-up and then on a timer:
 *   ASSIGNED with an expired lease          -> PENDING (the ack never came; the attempt is given back)
 *   RUNNING with an expired lease (whatever
 *     its worker's state), or of no worker  -> LOST
 *   LOST                                    -> RETRYING (attempts left) or FAILED
 *   RETRYING whose backoff has elapsed      -> PENDING
 * Backoff before attempt n+1: retry_backoff * 2^(n-1), capped at retry_backoff_max, plus a
 * uniformly random extra of up to retry_jitter times that.
 *
 * The timer fires every reconcile_interval, and earlier when a deadline (lease expiry, backoff
 * end, a worker's heartbeat timeout) comes first: after each sweep it is armed for the earliest
 * known deadline, and jobs_claim() pulls it in for a new lease.
 *
 * Recovery bound: a job whose worker lost power at T (its last contact: heartbeat, claim or ack)
 * is claimable again by T + lease_timeout + reconcile_interval + its backoff at the latest
 * (lease_timeout <= heartbeat_timeout): its lease expires by T + lease_timeout, whose deadline
 * arms the timer, it goes LOST -> RETRYING in that sweep, and RETRYING -> PENDING when the timer
 * fires at its backoff's end. Its worker's OFFLINE state does not make it LOST any sooner.
 *
 * Each job moves in a step of its own: one whose transition fails is logged and left for the
 * next tick, and the others still move.
 *
 * Each sweep first follows a step of the realtime clock (control-clock.h): it moves every lease,
 * backoff, lost grace and heartbeat age by the step, and re-anchors control_now().
 *
 * reconcile_startup(): before the API accepts work, anchors the clock, extends every live lease
 * (ASSIGNED, RUNNING) to max(expiry, now + lease_timeout), so that workers that could not reach a
 * stopped control plane are not punished for its downtime, then sweeps. */
#pragma once

#include <stdint.h>

#include "control.h"
#include "time-util.h"

int reconcile_startup(Control *c);
/* One sweep at control_now(c); ret_changes (optional) gets the number of transitions made. */
int reconcile_sweep(Control *c, unsigned *ret_changes);
/* Adds c->reconcile_timer, c->retention_timer and the watch on the realtime clock to c->event. */
int reconcile_timers_start(Control *c);
void reconcile_timers_stop(Control *c);
/* Pulls the reconcile timer in so that it fires no later than `when` (realtime usec). */
void reconcile_note_deadline(Control *c, usec_t when);

/* The backoff before retrying after attempt `attempt` (>= 1); u in [0, 1) picks the jitter. */
usec_t reconcile_backoff(const ControlSettings *s, int64_t attempt, double u);
/* A uniformly distributed double in [0, 1). */
double reconcile_random_unit(void);
/* The earliest deadline the reconciler knows of, or USEC_INFINITY. */
int reconcile_next_deadline(Control *c, usec_t *ret);
