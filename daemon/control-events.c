/* control-events.c: the control plane's listeners (called after each audit event commits), its
 * counters, and the start and stop of the core's loop-driven parts. */
#include <errno.h>
#include <stddef.h>

#include "audit.h"
#include "control-wake.h"
#include "http-server.h"
#include "log.h"
#include "control.h"
#include "macro.h"
#include "store.h"

int control_add_listener(Control *c, ControlEventListener fn, void *userdata) {
        if (!fn)
                return -EINVAL;
        if (c->n_listeners >= CONTROL_MAX_LISTENERS)
                return -ENOSPC;
        c->listeners[c->n_listeners].fn = fn;
        c->listeners[c->n_listeners].userdata = userdata;
        c->n_listeners++;
        return 0;
}

/* Counters follow committed events only, so a rolled-back operation never counts. */
static void count(Control *c, const AuditEvent *e) {
        static const struct {
                const char *event;
                size_t offset;
        } map[] = {
                {"job.submitted", offsetof(ControlCounters, submitted)},
                {"job.assigned", offsetof(ControlCounters, claimed)},
                {"job.completed", offsetof(ControlCounters, completed)},
                {"job.failed", offsetof(ControlCounters, failed)},
                {"job.retrying", offsetof(ControlCounters, retried)},
                {"job.lost", offsetof(ControlCounters, lost)},
                {"job.aborted", offsetof(ControlCounters, aborted)},
                {"job.transition_refused", offsetof(ControlCounters, refused)},
                {"job.assignment_stale", offsetof(ControlCounters, refused)},
                {"worker.nonce_mismatch", offsetof(ControlCounters, refused)},
                {"request.refused", offsetof(ControlCounters, refused)},
        };
        for (size_t i = 0; i < ELEMENTSOF(map); i++)
                if (streq(map[i].event, e->event))
                        (*(uint64_t *) ((char *) &c->counters + map[i].offset))++;
}

/* One listener at a time, each hearing the whole batch in commit order: the journal copies and
 * the D-Bus signals leave as two bursts instead of alternating, so journald and the bus broker
 * are woken about once per batch rather than once per event (each wake-up of a sleeping reader
 * is an inter-processor interrupt, expensive in a virtual machine). */
void control_emit(Control *c, AuditEvent *const *events, size_t n) {
        for (size_t i = 0; i < n; i++)
                count(c, events[i]);
        for (size_t l = 0; l < c->n_listeners; l++)
                for (size_t i = 0; i < n; i++)
                        c->listeners[l].fn(c->listeners[l].userdata, events[i]);
}

/* ---- group commit: the HTTP server's side (audit.h) ---- */

static void on_request_enter(void *userdata) {
        control_request_begin(userdata);
}

static HttpHold on_request_leave(void *userdata, bool ok) {
        int r = control_request_end(userdata, ok);
        return r < 0 ? HTTP_HOLD_LOST : r > 0 ? HTTP_HOLD_WAIT : HTTP_HOLD_NONE;
}

static bool on_request_commit(void *userdata) {
        return control_flush(userdata) >= 0;
}

static void on_batch_durable(void *userdata, bool ok) {
        Control *c = userdata;
        http_server_release_held(c->http, ok);
}

static void group_commit_start(Control *c) {
        if (!c->http)
                return;
        http_server_set_hold_hooks(c->http, &(HttpHoldHooks){.enter = on_request_enter,
                                                              .leave = on_request_leave,
                                                              .commit = on_request_commit,
                                                              .userdata = c});
        c->batch.on_durable = on_batch_durable;
        c->batch.userdata = c;
        c->batch.enabled = true;
}

static void group_commit_stop(Control *c) {
        c->batch.enabled = false;
        if (c->store)
                (void) control_flush(c); /* releases whatever the server still holds */
        if (c->http)
                http_server_set_hold_hooks(c->http, NULL);
        c->batch.on_durable = NULL;
        c->batch.flush = sd_event_source_disable_unref(c->batch.flush);
}

int control_core_start(Control *c) {
        int r = control_wake_start(c);
        if (r < 0)
                return log_error_errno(r, "Failed to start worker wake-ups: %m");
        group_commit_start(c);
        return 0;
}

void control_core_stop(Control *c) {
        group_commit_stop(c);
        c->wake = control_wake_free(c->wake);
}
