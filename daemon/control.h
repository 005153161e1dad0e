/* control.h: the control plane's context. One struct owns the event loop, the settings, the store,
 * the HTTP server and the bus; everything else receives a Control * and borrows from it. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "protocol.h"
#include "time-util.h"

typedef struct Store Store;
typedef struct HttpServer HttpServer;
typedef struct AuditEvent AuditEvent;
typedef struct EventStream EventStream;
typedef struct LiveMetrics LiveMetrics;
typedef struct ControlWake ControlWake;
typedef struct RetentionSweep RetentionSweep;

typedef struct ControlSettings {
        char *config;
        char *listen;            /* ADDR:PORT, used when no socket is passed by systemd */
        char *database;
        char *synchronous;       /* "full" (default) or "normal" (may lose the last commits on power loss) */
        char *admin_token_file;
        char *admin_token_previous_file;
        char *worker_token_file;
        char *worker_token_previous_file;
        char *metrics_token_file;
        char *log_level;

        usec_t lease_timeout;       /* an assignment's lease length, renewed by each heartbeat */
        usec_t disconnect_timeout;  /* heartbeat age after which a worker is DISCONNECTED */
        usec_t heartbeat_timeout;   /* heartbeat age after which a worker is OFFLINE */
        usec_t reconcile_interval;
        usec_t retry_backoff;       /* base of the exponential backoff before a retry */
        usec_t retry_backoff_max;   /* its cap */
        usec_t lost_grace;          /* how long a job lost on its last attempt waits for a late completion */
        double retry_jitter;        /* fraction of the backoff added at random, 0..1 */

        usec_t aging_window;              /* a pending job gains one priority per window waited; 0 = off */
        int64_t max_retry_jobs_per_worker;/* retried jobs one worker may hold at once; 0 = no limit */
        int64_t preempt_priority_floor;   /* jobs at or above this priority are "high" */
        int64_t preempt_backlog;          /* high backlog above this hands out only high jobs; 0 = off */
        usec_t wake_interval;             /* least time between two wake datagrams to one worker */

        int64_t job_retention_days;    /* terminal jobs (and their artifact records) */
        int64_t event_retention_days;  /* audit events */
        int64_t worker_retention_days; /* OFFLINE workers holding no job, after they were last seen */
        usec_t retention_interval;     /* how often the retention sweep runs */

        int64_t max_body_size;      /* bytes; larger requests get 413 */
        int64_t max_connections;
        int64_t max_connections_per_ip;

        bool user_bus;              /* D-Bus: own the name on the session bus (development) */
        char *ui_directory;         /* the dashboard's static files */
        char *dbus_read_group;      /* members may call the D-Bus API's reading methods */
        char *dbus_admin_group;     /* members may change things over D-Bus when polkit is absent */

        /* Security (docs/security.md). TLS is on when tls_certificate is set. */
        char *tls_certificate;      /* PEM chain, reloaded on SIGHUP */
        char *tls_key;              /* PEM key, reloaded on SIGHUP */
        char *tls_priorities;       /* GnuTLS priority string; NULL: a modern default */
        char *tls_client_ca;        /* client certificates must chain to it (mTLS); NULL: none asked */
        bool tls_bind_worker_id;    /* a worker call's worker_id must be named by its certificate */
        bool require_signed_worker_tokens; /* refuse the plain worker token on worker endpoints */
        usec_t token_clock_skew;    /* tolerance on a signed token's expiry, either way */
        usec_t signed_token_max_lifetime; /* signed tokens expiring later than now + this are refused */
        usec_t http_connection_timeout;   /* idle (or stalled) HTTP connections are closed after this */
        usec_t http_request_timeout;      /* a request not in whole this long has its connection closed */
} ControlSettings;

typedef struct ControlCounters {
        uint64_t submitted, claimed, completed, failed, retried, lost, aborted, refused;
        uint64_t journal_failures; /* audit events whose journal copy could not be sent */
        uint64_t bus_events_dropped; /* committed events not announced on D-Bus: the bus lagged */
} ControlCounters;

/* Called after an audit event's transaction has committed (journal copy, D-Bus signals, live
 * event streams, worker wake-ups). Listeners must not write to the store. */
typedef void (*ControlEventListener)(void *userdata, const AuditEvent *event);

#define CONTROL_MAX_LISTENERS 8

typedef struct Control {
        sd_event *event;
        ControlSettings settings;
        int argc;   /* kept for SIGHUP: the command line is re-applied over the reloaded file */
        char **argv;

        Store *store;
        HttpServer *http;
        sd_bus *bus;
        EventStream *event_stream; /* GET /events/stream subscribers */
        LiveMetrics *live_metrics; /* histograms and rates for GET /metrics */
        ControlWake *wake;         /* wake-ups of sleeping workers (control-wake.h) */

        /* Tokens as currently loaded; the previous ones are accepted during rotation. */
        char *admin_token, *admin_token_previous;
        char *worker_token, *worker_token_previous;
        char *metrics_token;

        sd_event_source *reconcile_timer;
        sd_event_source *retention_timer;
        sd_event_source *status_timer;
        /* The retention sweep's batches (retention.c); owned by its event source, NULL without one. */
        RetentionSweep *retention_sweep;
        /* The requirements texts the claims met, parsed (requirement-sets.h); NULL until the first. */
        struct RequirementSets *requirement_sets;

        ControlCounters counters;
        struct {
                ControlEventListener fn;
                void *userdata;
        } listeners[CONTROL_MAX_LISTENERS];
        size_t n_listeners;
        /* Told the ids of the jobs a retention batch deleted, once that deletion has committed:
         * deletions are not audited one by one, so no listener hears of them (D-Bus announces the
         * objects gone). */
        void (*on_jobs_deleted)(void *userdata, char *const *job_ids);
        void *on_jobs_deleted_userdata;

        /* Durable group commit (audit.h). */
        struct {
                bool enabled;       /* transactions of HTTP requests join one batch per loop iteration */
                bool deferring;     /* set around an HTTP handler: its commits join the batch */
                unsigned n;         /* transactions released into the open batch */
                unsigned joined;    /* of those, released by the HTTP handler running now */
                sd_event_source *flush; /* commits the open batch once the loop iteration is done */
                /* Told after each batch's COMMIT (ok) or its loss (!ok): the HTTP server releases
                 * (or fails with 500) the responses it held back. */
                void (*on_durable)(void *userdata, bool ok);
                void *userdata;
        } batch;

        usec_t started_at;
        bool shutting_down;

        /* control_now()'s anchor (control-clock.h). */
        struct {
                usec_t realtime;        /* realtime at the anchor; 0: none, control_now() reads realtime */
                usec_t elapsed;         /* CLOCK_BOOTTIME at the anchor */
                sd_event_source *watch; /* the kernel's notice that realtime was set */
                void (*on_set)(struct Control *c);
        } clock;
        /* Tests only: when clock_override is non-zero, the realtime clock reads it and
         * CLOCK_BOOTTIME reads elapsed_override. */
        usec_t clock_override;
        usec_t elapsed_override;
} Control;

/* The time the control plane's decisions use (leases, ages, backoff): realtime, except that a
 * step of the realtime clock reaches it only at the reconciler's next sweep (control-clock.h). */
usec_t control_now(const Control *c);

int control_add_listener(Control *c, ControlEventListener fn, void *userdata);

/* The core's parts that run on c->event once the store is open and the HTTP server exists
 * (worker wake-ups; control-events.c), and their teardown (safe to call when never started). */
int control_core_start(Control *c);
void control_core_stop(Control *c);
/* Hands events that just committed, in commit order, to the counters and the listeners. */
void control_emit(Control *c, AuditEvent *const *events, size_t n);
