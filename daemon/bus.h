/* bus.h: the D-Bus admin interface of entropy-control (org.entropy.Control1 on the system bus, or
 * the session bus with --user-bus). The Manager object, one object per job and per worker, the
 * authorization of callers and the signals sent after each committed audit event all live in
 * daemon/bus*.c; main() only starts and stops it. */
#pragma once

#include "control.h"

#define CONTROL_BUS_NAME              "org.entropy.Control1"
#define CONTROL_BUS_PATH              "/org/entropy/Control1"
#define CONTROL_BUS_MANAGER_INTERFACE "org.entropy.Control1.Manager"
#define CONTROL_BUS_JOB_INTERFACE     "org.entropy.Control1.Job"
#define CONTROL_BUS_WORKER_INTERFACE  "org.entropy.Control1.Worker"
#define CONTROL_BUS_JOB_PREFIX        "/org/entropy/Control1/job"
#define CONTROL_BUS_WORKER_PREFIX     "/org/entropy/Control1/worker"

/* Connects to the bus (c->settings.user_bus picks the session bus), attaches it to c->event,
 * exports the objects, requests the name asynchronously and registers the listener that turns
 * committed audit events into signals. Call once, after the store is open. A bus that cannot be
 * reached is not fatal: it logs a warning, returns 0 and keeps trying to reconnect in the
 * background, so the HTTP API keeps serving. Negative only for allocation failures. */
int control_bus_start(Control *c);

/* Releases the name, flushes pending messages and frees everything control_bus_start() set up.
 * Safe to call when the bus was never started or is disconnected. */
void control_bus_stop(Control *c);
