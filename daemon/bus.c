/* bus.c: the D-Bus connection of entropy-control. Connects to the system bus (or the session bus
 * with --user-bus), exports the objects, requests org.entropy.Control1 asynchronously, and
 * reconnects after the bus goes away (the pattern of systemd's man/sd_bus_service_reconnect.c),
 * so that a restarted dbus-daemon or dbus-broker does not leave the control plane unreachable.
 * A bus that cannot be reached at all never stops the daemon: HTTP keeps serving. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit.h"
#include "bus-internal.h"
#include "log.h"
#include "store.h"

#define RECONNECT_DELAY_MIN (1 * USEC_PER_SEC)
#define RECONNECT_DELAY_MAX (30 * USEC_PER_SEC)

static void bus_event_listener(void *userdata, const AuditEvent *event);
static int bus_connect(Bus *b);

/* The Control struct has no slot for the bus's private state; the listener table does, and it
 * is the one place control_bus_stop() can find it again without a global. */
Bus *bus_from_control(Control *c) {
        for (size_t i = 0; i < c->n_listeners; i++)
                if (c->listeners[i].fn == bus_event_listener)
                        return c->listeners[i].userdata;
        return NULL;
}

static const char *bus_address(const Bus *b) {
        const char *e;

        if (!b->c->settings.user_bus) {
                e = getenv("DBUS_SYSTEM_BUS_ADDRESS");
                return e ? e : "unix:path=/run/dbus/system_bus_socket";
        }
        return getenv("DBUS_SESSION_BUS_ADDRESS"); /* NULL: derived from $XDG_RUNTIME_DIR below */
}

static void bus_disconnect(Bus *b) {
        bus_objects_flush_cache(b);
        bus_auth_free(b); /* pending polkit queries refer to messages of this connection */
        /* Nobody heard of the queued changes on this connection; the next one starts afresh. */
        bus_objects_queue_clear(b);
        b->counts_dirty = false;
        b->name_owned = false;
        b->emit_defer = sd_event_source_disable_unref(b->emit_defer);
        if (b->bus) {
                (void) sd_bus_detach_event(b->bus);
                b->bus = sd_bus_flush_close_unref(b->bus);
        }
        b->c->bus = NULL;
}

static int on_reconnect_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Bus *b = userdata;
        int r;

        r = bus_connect(b);
        if (r < 0)
                log_warning_errno(r, "Still cannot connect to the D-Bus %s bus: %m",
                                  b->c->settings.user_bus ? "session" : "system");
        return 0;
}

/* Tries again later, backing off from 1s to 30s so a bus that stays down costs next to nothing. */
static void bus_schedule_reconnect(Bus *b) {
        int r;

        bus_disconnect(b);
        if (b->c->shutting_down)
                return;
        b->reconnect_delay =
                b->reconnect_delay == 0 ? RECONNECT_DELAY_MIN : MIN(b->reconnect_delay * 2, RECONNECT_DELAY_MAX);
        if (b->reconnect_timer) {
                r = sd_event_source_set_time_relative(b->reconnect_timer, b->reconnect_delay);
                if (r >= 0)
                        r = sd_event_source_set_enabled(b->reconnect_timer, SD_EVENT_ONESHOT);
        } else
                r = sd_event_add_time_relative(b->c->event, &b->reconnect_timer, CLOCK_MONOTONIC, b->reconnect_delay, 0,
                                               on_reconnect_timer, b);
        if (r < 0)
                log_error_errno(r, "Failed to schedule a D-Bus reconnection, the bus stays disconnected: %m");
}

static int on_disconnected(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Bus *b = userdata;

        log_warning("Lost the connection to the D-Bus %s bus; reconnecting.",
                    b->c->settings.user_bus ? "session" : "system");
        bus_schedule_reconnect(b);
        return 0;
}

static int on_name_acquired(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Bus *b = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(m);
        uint32_t result = 0;
        int r;

        if (e) {
                /* Refused by the bus policy (not the entropy user?): keep HTTP serving, say why. */
                log_warning("Failed to acquire D-Bus name %s: %s", CONTROL_BUS_NAME, e->message);
                return 1;
        }
        /* Requested without SD_BUS_NAME_QUEUE: not ours now is not ours ever on this connection. */
        r = sd_bus_message_read(m, "u", &result);
        if (r < 0 || result != 1 /* DBUS_REQUEST_NAME_REPLY_PRIMARY_OWNER */) {
                log_warning("D-Bus name %s is owned by another process; not serving on the bus.", CONTROL_BUS_NAME);
                return 1;
        }
        b->name_owned = true;
        b->reconnect_delay = 0; /* connected for real: the next outage backs off from the start */
        log_info("Acquired D-Bus name %s on the %s bus.", CONTROL_BUS_NAME,
                 b->c->settings.user_bus ? "session" : "system");
        return 1;
}

static int bus_open(Bus *b, sd_bus **ret) {
        _cleanup_(sd_bus_unrefp) sd_bus *bus = NULL;
        const char *address = bus_address(b);
        int r;

        if (b->c->settings.user_bus && !address) {
                /* sd_bus_open_user() knows how to find the session bus; it connects synchronously,
                 * which is fine for a development bus. */
                r = sd_bus_open_user(&bus);
                if (r < 0)
                        return r;
                *ret = TAKE_PTR(bus);
                return 0;
        }
        r = sd_bus_new(&bus);
        if (r < 0)
                return r;
        r = sd_bus_set_address(bus, address);
        if (r < 0)
                return r;
        r = sd_bus_set_bus_client(bus, 1);
        if (r < 0)
                return r;
        /* Waits for a bus socket that is not there yet (dbus restarting) instead of failing. */
        r = sd_bus_set_watch_bind(bus, 1);
        if (r < 0)
                return r;
        r = sd_bus_set_connected_signal(bus, 1);
        if (r < 0)
                return r;
        r = sd_bus_start(bus);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(bus);
        return 0;
}

/* With watch_bind, a missing socket is waited for quietly; say so once, so that an operator sees
 * why the name is not there (the HTTP API serves meanwhile). */
static void bus_warn_if_absent(Bus *b) {
        const char *address = bus_address(b);
        const char *path;

        if (!address || strncmp(address, "unix:path=", 10) != 0)
                return;
        path = address + 10;
        if (strchr(path, ','))
                return; /* more keys after the path: let sd-bus judge */
        if (access(path, F_OK) < 0)
                log_warning("D-Bus socket %s does not exist (yet): serving HTTP only, connecting when it appears.",
                            path);
}

static int bus_connect(Bus *b) {
        int r;

        bus_disconnect(b);
        bus_warn_if_absent(b);
        r = bus_open(b, &b->bus);
        if (r < 0)
                goto fail;
        r = bus_manager_add(b);
        if (r < 0)
                goto fail;
        r = bus_objects_add(b);
        if (r < 0)
                goto fail;
        r = sd_bus_match_signal_async(b->bus, NULL, "org.freedesktop.DBus.Local", NULL, "org.freedesktop.DBus.Local",
                                      "Disconnected", on_disconnected, NULL, b);
        if (r < 0)
                goto fail;
        r = sd_bus_request_name_async(b->bus, NULL, CONTROL_BUS_NAME, 0, on_name_acquired, b);
        if (r < 0)
                goto fail;
        r = sd_bus_attach_event(b->bus, b->c->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                goto fail;
        b->c->bus = b->bus;
        b->counts_known = false; /* a new connection: the first change is announced in full */
        b->connections++;
        return 0;
fail:
        bus_schedule_reconnect(b);
        return r;
}

/* Sends what the committed events queued. The getters of new objects and workers and the
 * counters read the store, which must hold nothing uncommitted then: a group commit opened since
 * the events came (an HTTP handler ran first) is committed now, its events join the queue, and
 * the responses it held go out a little sooner. If that commit fails, the batch is rolled back:
 * nothing uncommitted remains either. */
static void bus_emit_queued(Bus *b) {
        if (!b->bus || !b->name_owned || sd_bus_is_ready(b->bus) <= 0)
                return;
        if (b->c->store && b->c->store->batch_open)
                (void) control_flush(b->c); /* logs its failure and answers the held requests */
        /* The rows they read (a new job's properties, the counters) in one read transaction: one
         * snapshot, and SQLite's read lock on the WAL taken once instead of once per row. */
        bool read_tx = b->c->store && !b->c->store->batch_open && !b->c->store->in_transaction &&
                       store_exec(b->c->store, "BEGIN") >= 0;
        bus_objects_emit_queued(b);
        bus_manager_emit_counts(b);
        if (read_tx)
                (void) store_exec(b->c->store, "COMMIT");
}

static int on_emit(sd_event_source *s, void *userdata) {
        bus_emit_queued(userdata);
        return 0;
}

/* Once per loop iteration however many events committed: a batch of a hundred transitions sends
 * one PropertiesChanged per object and one for the counters. */
int bus_schedule_emit(Bus *b) {
        int r;

        if (!b->emit_defer) {
                r = sd_event_add_defer(b->c->event, &b->emit_defer, on_emit, b);
                if (r < 0)
                        return r;
                (void) sd_event_source_set_description(b->emit_defer, "bus-emit");
        }
        return sd_event_source_set_enabled(b->emit_defer, SD_EVENT_ONESHOT);
}

bool bus_lagging(Bus *b) {
        uint64_t queued = 0;

        if (sd_bus_get_n_queued_write(b->bus, &queued) < 0)
                queued = 0;
        if (queued >= BUS_WRITE_QUEUE_MAX && !b->lagging) {
                log_warning("D-Bus is not taking signals (%" PRIu64 " queued): committed changes are not announced "
                            "on the bus until it catches up (counted in entropy_dbus_events_dropped_total).",
                            queued);
                b->lagging = true;
        } else if (queued < BUS_WRITE_QUEUE_MAX / 2 && b->lagging) {
                log_notice("D-Bus takes signals again; %" PRIu64 " committed events in all were not announced.",
                           b->c->counters.bus_events_dropped);
                b->lagging = false;
                b->announce_unannounced = true;
                b->counts_known = false; /* the counters' own announcements were dropped too */
                b->counts_dirty = true;
        }
        return b->lagging;
}

static void bus_event_listener(void *userdata, const AuditEvent *event) {
        Bus *b = userdata;
        int r;

        /* While the connection is still being set up (waiting for the broker's socket) sd-bus would
         * queue every signal in memory until it is; nobody is listening yet, so send none. Nor
         * before the name is ours (name_owned). */
        if (!b || !b->bus || !b->name_owned || sd_bus_is_ready(b->bus) <= 0)
                return;
        if (bus_lagging(b)) {
                b->c->counters.bus_events_dropped++;
                return;
        }
        bus_manager_event(b, event);
        r = bus_objects_event(b, event);
        if (r >= 0 && (b->n_changes > 0 || b->counts_dirty))
                r = bus_schedule_emit(b);
        if (r < 0)
                log_warning_errno(r, "Failed to queue the D-Bus announcement of event %s: %m", strna(event->event));
}

static Bus *bus_free(Bus *b) {
        if (!b)
                return NULL;
        bus_disconnect(b);
        b->reconnect_timer = sd_event_source_disable_unref(b->reconnect_timer);
        free(b->read_group);
        free(b->admin_group);
        free(b);
        return NULL;
}

static int bus_groups_init(Bus *b) {
        const char *rg = b->c->settings.dbus_read_group, *ag = b->c->settings.dbus_admin_group;

        b->read_group = strdup(!isempty(rg) ? rg : BUS_READ_GROUP_DEFAULT);
        b->admin_group = strdup(!isempty(ag) ? ag : BUS_ADMIN_GROUP_DEFAULT);
        return b->read_group && b->admin_group ? 0 : -ENOMEM;
}

int control_bus_start(Control *c) {
        Bus *b;
        int r;

        if (bus_from_control(c))
                return 0;
        b = calloc(1, sizeof(Bus));
        if (!b)
                return log_oom();
        b->c = c;
        r = bus_groups_init(b);
        if (r < 0) {
                bus_free(b);
                return log_oom();
        }
        r = control_add_listener(c, bus_event_listener, b);
        if (r < 0) {
                bus_free(b);
                return log_error_errno(r, "Failed to register the D-Bus event listener: %m");
        }
        c->on_jobs_deleted = bus_objects_jobs_deleted;
        c->on_jobs_deleted_userdata = b;
        r = bus_connect(b);
        if (r < 0)
                log_warning_errno(r, "Cannot connect to the D-Bus %s bus, serving HTTP only until it appears: %m",
                                  c->settings.user_bus ? "session" : "system");
        return 0;
}

void control_bus_stop(Control *c) {
        for (size_t i = 0; i < c->n_listeners; i++)
                if (c->listeners[i].fn == bus_event_listener) {
                        Bus *b = c->listeners[i].userdata;
                        /* The listener stays registered (there is no removal) but finds no bus. */
                        c->listeners[i].userdata = NULL;
                        if (b && b->bus) {
                                /* The last changes still go out, flushed below. */
                                bus_emit_queued(b);
                                (void) sd_bus_release_name(b->bus, CONTROL_BUS_NAME);
                        }
                        bus_free(b);
                }
        c->on_jobs_deleted = NULL;
        c->on_jobs_deleted_userdata = NULL;
        c->bus = NULL;
}
