/* control-clock.h: the control plane's clock, realtime that does not jump between two sweeps.
 *
 * Leases, heartbeat ages and backoffs are realtime instants stored in the database, so that they
 * survive a restart. A step of the realtime clock (an NTP correction, a leap second, an operator's
 * `date -s`) would otherwise shift every one of them at once: forward, every lease expires and a
 * healthy worker's job is handed to another; backward, a dead worker's jobs wait the step out.
 *
 * So control_now() advances with CLOCK_BOOTTIME (never stepped; it counts a suspend, which the
 * workers' own lease clocks count as well) from an anchor taken on realtime. The reconciler
 * re-anchors it, at each sweep, when realtime has moved away from it by CONTROL_CLOCK_STEP_MIN or
 * more, and in the same transaction shifts every stored duration deadline by that step
 * (reconcile.c). Until then every request is served on the one clock the stored deadlines were
 * made with. A change of the realtime clock pulls that sweep in at once (the watch below). A step
 * back while the control plane was stopped is followed at start-up (reconcile_startup()).
 * Instants an operator chose (scheduled_at) stay on the wall clock. */
#pragma once

#include <stdint.h>

#include "control.h"
#include "time-util.h"

/* Steps smaller than this are left alone: two clock readings a preemption apart can differ by a
 * few milliseconds, and a lease shorter by less than this changes nothing. */
#define CONTROL_CLOCK_STEP_MIN (100 * USEC_PER_MSEC)

/* The realtime clock as read now (c->clock_override in tests). */
usec_t control_realtime(const Control *c);
/* Starts control_now() at the realtime clock's reading. */
void control_clock_anchor(Control *c);
/* If realtime has moved CONTROL_CLOCK_STEP_MIN or more away from control_now(), re-anchors on it
 * and returns the step (positive: forward); otherwise 0, anchoring a clock never anchored. Both
 * from one pair of readings. */
int64_t control_clock_follow(Control *c);
/* Calls fn(c) whenever the realtime clock is set (a timerfd cancelled on set). */
int control_clock_watch_start(Control *c, void (*fn)(Control *c));
void control_clock_watch_stop(Control *c);
