/* bus-internal.h: what the files of the D-Bus admin interface share: the Bus context, the
 * authorization entry points (bus-auth.c), the vtables (bus-manager.c, bus-objects.c) and the
 * conversions between the domain's values and D-Bus messages (bus-util.c). Not for other parts of
 * the daemon: they only see bus.h. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "bus.h"
#include "control.h"
#include "jobs.h"
#include "macro.h"
#include "protocol.h"
#include "workers.h"

#define BUS_ERROR_NO_SUCH_JOB    "org.entropy.Control1.Error.NoSuchJob"
#define BUS_ERROR_NO_SUCH_WORKER "org.entropy.Control1.Error.NoSuchWorker"
#define BUS_ERROR_INVALID_ARGS   "org.entropy.Control1.Error.InvalidArgs"
#define BUS_ERROR_ACCESS_DENIED  "org.entropy.Control1.Error.AccessDenied"
#define BUS_ERROR_CONFLICT       "org.entropy.Control1.Error.Conflict"

/* polkit action ids; dbus/org.entropy.Control1.policy defines them. */
#define BUS_ACTION_MANAGE "org.entropy.Control1.manage"
#define BUS_ACTION_SUBMIT "org.entropy.Control1.submit"
#define BUS_ACTION_ABORT  "org.entropy.Control1.abort"
#define BUS_ACTION_DRAIN  "org.entropy.Control1.drain"
#define BUS_ACTION_RELOAD "org.entropy.Control1.reload"

/* Default group names; the dbus-read-group and dbus-admin-group options override them. */
#define BUS_READ_GROUP_DEFAULT  "entropy"
#define BUS_ADMIN_GROUP_DEFAULT "entropy-admin"

typedef struct PolkitQuery PolkitQuery;
typedef struct BusChange BusChange;

/* One call, known by its sender's unique name and its serial: not a reference to the message,
 * which would keep the caller's arguments (megabytes) and file descriptors alive after the call
 * is done. A caller that reuses a serial is the same connection, with the same credentials. */
typedef struct BusCallId {
        char *sender;
        uint64_t cookie;
} BusCallId;

typedef struct Bus {
        Control *c;
        sd_bus *bus; /* also c->bus while connected; NULL between connections */
        sd_event_source *reconnect_timer;
        usec_t reconnect_delay;
        unsigned connections; /* how many times we connected, for the log */
        /* Whether we own CONTROL_BUS_NAME. Until then no signal goes out: the bus policy lets
         * only readers receive the signals of the name's owner, and would let anyone receive
         * ours while we are not it (the request not answered yet, or another process owns it). */
        bool name_owned;

        /* What committed audit events changed, sent from one defer source once the loop is done
         * with the batch (as systemd queues its units' signals): one InterfacesAdded or
         * PropertiesChanged per object however many of its events committed together, in the
         * order of their first change, then the Manager's counters. */
        sd_event_source *emit_defer;
        BusChange **changes;
        size_t n_changes, n_changes_allocated;
        void *changes_index; /* tsearch(3) tree of the changes by object path */
        bool counts_dirty;

        /* The Manager's counters as last announced: PropertiesChanged names only the ones that
         * moved. While counts_emitting, the getters answer from them instead of counting again. */
        uint64_t job_counts[_JOB_STATE_MAX];
        uint64_t worker_counts[_WORKER_STATE_MAX];
        bool counts_known;
        bool counts_emitting;

        /* The object most recently looked up by a fallback vtable's find callback: the property
         * getters of that object run right after it, so each lookup costs one query. */
        Job *cached_job;
        Worker *cached_worker;

        PolkitQuery *polkit_queries;
        /* The last call whose sender passed the read check: the getters of one GetAll each ask,
         * and the broker is asked once. */
        BusCallId read_authorized;
        /* The call whose sender bus_authorize_manage() identified last, and its uid, for the
         * audit trail's actor without asking the broker again. */
        BusCallId identified;
        uid_t identified_uid;
        /* Set while signals are dropped because the broker is not reading them (bus.c); when it
         * reads again, the next PropertiesChanged of the Manager names UnannouncedEvents and every
         * counter, so a client knows to re-read what it may have missed. */
        bool lagging;
        bool announce_unannounced;
        /* Set while we emit our own signals: property getters then run for no caller. */
        bool emitting;
        /* While a job's PropertiesChanged is built: the job as its committed events describe it
         * (id and status, the only property sent with its value), found for that path without
         * loading the row. */
        const char *emit_job_path;
        Job *emit_job;

        char *read_group;
        char *admin_group;
} Bus;

/* bus.c */
Bus *bus_from_control(Control *c);

/* bus-manager.c */
int bus_manager_add(Bus *b);
/* Sends JobStateChanged / WorkerStateChanged for the event at once (one per transition, in
 * commit order) and marks the counters for bus_manager_emit_counts(). */
void bus_manager_event(Bus *b, const AuditEvent *event);
/* PropertiesChanged for the counters that moved since the last call; reads the store. */
void bus_manager_emit_counts(Bus *b);

/* bus.c: whether the broker has stopped reading (a stalled or overloaded dbus-daemon), in which
 * case sd-bus would queue every further signal in memory without bound. Signals are
 * announcements, and the store and the journal keep the record: past BUS_WRITE_QUEUE_MAX queued
 * messages they are dropped (counted in c->counters.bus_events_dropped, logged once) until half
 * the queue has drained. */
#define BUS_WRITE_QUEUE_MAX 8192
bool bus_lagging(Bus *b);
/* Sends what is queued (b->changes, the counters when b->counts_dirty) once the loop is done with
 * the current batch. */
int bus_schedule_emit(Bus *b);

/* bus-objects.c */
int bus_objects_add(Bus *b);
/* Queues the job or worker the event changed (once per object); -ENOMEM when it cannot. A
 * worker.registered event that says the state the worker starts in (workers.c) added it, which
 * InterfacesAdded announces. */
int bus_objects_event(Bus *b, const AuditEvent *event);
/* Sends what bus_objects_event() queued and empties the queue; reads the store for new objects
 * and workers, so call it with no uncommitted change in the store. */
void bus_objects_emit_queued(Bus *b);
void bus_objects_queue_clear(Bus *b);
int bus_job_path(const char *job_id, char **ret);
int bus_worker_path(const char *worker_id, char **ret);
void bus_objects_flush_cache(Bus *b);
/* Control.on_jobs_deleted: InterfacesRemoved for each job, then the counters (userdata: the Bus). */
void bus_objects_jobs_deleted(void *userdata, char *const *job_ids);

/* bus-auth.c: each returns 1 when the caller may go on, 0 when an asynchronous polkit check is
 * under way (the handler returns 1 without replying: the message is dispatched again once polkit
 * answered), negative with error set when refused (AccessDenied, audited) or on failure. */
int bus_authorize_read(Bus *b, sd_bus_message *m, sd_bus_error *error);
int bus_authorize_manage(Bus *b, sd_bus_message *m, const char *action, sd_bus_error *error);
void bus_auth_free(Bus *b);
/* "dbus:<uid>" for the audit trail; buf of at least 32 bytes. */
const char *bus_actor(Bus *b, sd_bus_message *m, char *buf, size_t size);

/* bus-util.c */
/* Sets a named error for a negative domain return code (ops.h) and returns it; what says whether
 * an -ENOENT/-EPERM means a job or a worker. err (may be NULL) gives the message. */
typedef enum BusSubject { BUS_SUBJECT_JOB, BUS_SUBJECT_WORKER } BusSubject;
int bus_error_from_op(sd_bus_error *error, int r, BusSubject what, const char *id, const char *message);
/* Reads the value of an a{sv} entry (the variant, entered by the caller's peek) as an integer of
 * any D-Bus integer type, or a double (truncated toward zero) when allow_double. */
int bus_read_variant_int64(sd_bus_message *m, bool allow_double, int64_t *ret);
int bus_read_variant_string(sd_bus_message *m, char **ret);
int bus_read_variant_strv(sd_bus_message *m, char ***ret);
int bus_read_variant_bool(sd_bus_message *m, bool *ret);
int bus_read_variant_double(sd_bus_message *m, double *ret);
/* a{su}: state name -> count. */
int bus_append_job_counts(sd_bus_message *m, const uint64_t counts[_JOB_STATE_MAX]);
int bus_append_worker_counts(sd_bus_message *m, const uint64_t counts[_WORKER_STATE_MAX]);
