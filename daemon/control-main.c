/* control-main.c: entropy-control's main(). run() reads top to bottom: settings, tokens, store,
 * start-up sweep, HTTP API, D-Bus API, timers, READY=1, loop. Signals: SIGTERM/SIGINT drain the
 * HTTP server and exit 0; SIGHUP reloads the config file (under the same command line) and the
 * tokens. The watchdog is pinged from the loop itself, so a hung loop stops the pings. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "audit.h"
#include "auth.h"
#include "bus.h"
#include "control-settings.h"
#include "control.h"
#include "http-api.h"
#include "http-server.h"
#include "http-tls.h"
#include "log.h"
#include "macro.h"
#include "observability.h"
#include "reconcile.h"
#include "requirement-sets.h"
#include "retention.h"
#include "rlimit-util.h"
#include "store.h"
#include "time-util.h"

/* Requests in flight at SIGTERM get this long to finish (TimeoutStopSec= is 30s). */
#define DRAIN_TIMEOUT_USEC (5 * USEC_PER_SEC)
/* STATUS= is refreshed this often, and this soon after a change (coalescing bursts). */
#define STATUS_INTERVAL_USEC (10 * USEC_PER_SEC)
#define STATUS_DELAY_USEC    (200 * USEC_PER_MSEC)
/* Per-connection buffer of libmicrohttpd: bounds the request line and headers (bodies stream
 * through it). libmicrohttpd clears it for every request on a kept-alive connection, so its size
 * is paid per request: 16 KiB is ample for what the API sends (a token, a few headers). */
#define HTTP_CONNECTION_MEMORY_LIMIT (16 * 1024)
/* Descriptors besides the HTTP connections: the database and its WAL and index, the bus, the
 * journal, listening sockets, timers, signals, event streams being set up. */
#define NOFILE_RESERVE 64

/* ---- STATUS= -------------------------------------------------------------------------------- */

/* Every sd_notify() of the control plane: a state change systemd (or a supervisor) waits for must
 * not be lost silently, so a failed send is logged and tried again a few times. */
static void control_notify(const char *state) {
        int r = 0;

        for (int attempt = 0; attempt < 3; attempt++) {
                r = sd_notify(false, state);
                if (r >= 0)
                        return;
        }
        log_warning_errno(r, "Failed to send the service manager \"%.*s\": %m", (int) strcspn(state, "\n"), state);
}

static void control_update_status(Control *c) {
        uint64_t counts[_JOB_STATE_MAX] = {};
        char buf[512];
        size_t n = 0;
        int r;

        r = store_count_jobs_by_state(c->store, counts);
        if (r < 0) {
                log_debug_errno(r, "Failed to count jobs for STATUS=: %m");
                return;
        }
        n += snprintf(buf + n, sizeof(buf) - n, "STATUS=Jobs:");
        for (JobState s = 0; s < _JOB_STATE_MAX && n < sizeof(buf); s++) {
                char name[32];
                snprintf(name, sizeof(name), "%s", job_state_to_string(s));
                for (char *p = name; *p; p++)
                        *p = (char) tolower((unsigned char) *p);
                n += snprintf(buf + n, sizeof(buf) - n, "%s %" PRIu64 " %s", s == 0 ? "" : ",", counts[s], name);
        }
        control_notify(buf);
}

static int on_status_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Control *c = userdata;
        int r;

        control_update_status(c);
        r = sd_event_source_set_time_relative(s, STATUS_INTERVAL_USEC);
        if (r >= 0)
                r = sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        if (r < 0)
                log_warning_errno(r, "Failed to re-arm the status timer: %m");
        return 0;
}

/* After each committed event: pull the status refresh in (cheap: it only moves a timer). */
static void on_event_status(void *userdata, const AuditEvent *event) {
        Control *c = userdata;
        uint64_t next, soon;

        if (!c->status_timer || c->shutting_down)
                return;
        if (sd_event_now(c->event, CLOCK_MONOTONIC, &soon) < 0)
                return;
        soon += STATUS_DELAY_USEC;
        if (sd_event_source_get_time(c->status_timer, &next) >= 0 && next <= soon)
                return;
        if (sd_event_source_set_time(c->status_timer, soon) >= 0)
                (void) sd_event_source_set_enabled(c->status_timer, SD_EVENT_ONESHOT);
}

static int control_status_start(Control *c) {
        int r;

        r = sd_event_add_time_relative(c->event, &c->status_timer, CLOCK_MONOTONIC, STATUS_INTERVAL_USEC,
                                       50 * USEC_PER_MSEC, on_status_timer, c);
        if (r < 0)
                return log_error_errno(r, "Failed to add the status timer: %m");
        (void) sd_event_source_set_description(c->status_timer, "status");
        r = control_add_listener(c, on_event_status, c);
        if (r < 0)
                return log_error_errno(r, "Failed to register the status listener: %m");
        return 0;
}

/* ---- HTTP ----------------------------------------------------------------------------------- */

/* The TLS files of the settings, or NULL for plain HTTP. */
static const HttpTlsConfig *control_tls_config(const Control *c, HttpTlsConfig *buf) {
        if (isempty(c->settings.tls_certificate))
                return NULL;
        *buf = (HttpTlsConfig){
                .certificate = c->settings.tls_certificate,
                .key = c->settings.tls_key,
                .priorities = c->settings.tls_priorities,
                .client_ca = c->settings.tls_client_ca,
        };
        return buf;
}

static int control_http_start(Control *c) {
        HttpTlsConfig tls;
        HttpServerConfig cfg = {
                .listen = c->settings.listen,
                .listen_fd = -1,
                .max_body_size = (size_t) c->settings.max_body_size,
                .max_connections = (unsigned) c->settings.max_connections,
                .max_connections_per_ip = (unsigned) c->settings.max_connections_per_ip,
                .connection_timeout_sec = (unsigned) (c->settings.http_connection_timeout / USEC_PER_SEC),
                .request_timeout_usec = c->settings.http_request_timeout,
                .connection_memory_limit = HTTP_CONNECTION_MEMORY_LIMIT,
                .tls = control_tls_config(c, &tls),
        };
        int r;

        r = http_listen_fd_from_systemd();
        if (r >= 0)
                cfg.listen_fd = r;
        else if (r != -ENOENT)
                return r;

        r = http_server_new(c->event, &cfg, http_api_dispatch, c, &c->http);
        if (r < 0)
                return r;
        http_server_set_admit_body(c->http, http_api_admit_body);
        if (cfg.listen_fd >= 0)
                log_info("Serving the HTTP%s API on the socket passed by systemd.", cfg.tls ? "S" : "");
        else
                log_info("Serving the HTTP%s API on %s.", cfg.tls ? "S" : "", c->settings.listen);
        if (cfg.tls && !isempty(c->settings.tls_client_ca))
                log_info("Client certificates issued by %s are required%s.", c->settings.tls_client_ca,
                         c->settings.tls_bind_worker_id ? "; worker ids are bound to them" : "");
        return 0;
}

static void on_http_drained(HttpServer *s, void *userdata) {
        Control *c = userdata;

        log_info("HTTP requests drained, exiting.");
        (void) sd_event_exit(c->event, 0);
}

/* ---- signals -------------------------------------------------------------------------------- */

static int on_terminate(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Control *c = userdata;
        int r;

        if (c->shutting_down) {
                log_notice("Second termination signal, exiting without waiting for requests.");
                return sd_event_exit(c->event, 0);
        }
        c->shutting_down = true;
        control_notify("STOPPING=1\nSTATUS=Finishing the requests in flight...");
        /* Event streams never end on their own: close them so the drain waits only for real requests. */
        observability_close_streams(c);
        log_info("Received %s, stopping.", strsignal((int) si->ssi_signo));

        r = c->http ? http_server_drain(c->http, DRAIN_TIMEOUT_USEC, on_http_drained, c) : -ENOTCONN;
        if (r < 0)
                return sd_event_exit(c->event, 0);
        return 0;
}

/* TLS on or off, its priorities and the client CA are fixed when the HTTP server starts (MHD
 * takes them then); the certificate and key files may change and are reloaded. */
static void swap_str(char **a, char **b) {
        char *t = *a;
        *a = *b;
        *b = t;
}

static void settings_keep_tls(ControlSettings *cur, ControlSettings *fresh) {
        bool changed = !streq_ptr(cur->tls_priorities, fresh->tls_priorities) ||
                       !streq_ptr(cur->tls_client_ca, fresh->tls_client_ca);

        swap_str(&cur->tls_priorities, &fresh->tls_priorities);
        swap_str(&cur->tls_client_ca, &fresh->tls_client_ca);
        if (isempty(cur->tls_certificate) != isempty(fresh->tls_certificate)) {
                changed = true;
                swap_str(&cur->tls_certificate, &fresh->tls_certificate);
                swap_str(&cur->tls_key, &fresh->tls_key);
        }
        if (changed)
                log_notice("Turning TLS on or off, --tls-priorities and --tls-client-ca take effect at the next "
                           "restart.");
        /* Binding needs client certificates, which only a restart can turn on. */
        if (isempty(fresh->tls_client_ca))
                fresh->tls_bind_worker_id = false;
}

/* Moves into fresh the settings that only a restart changes, so that applying fresh keeps them. */
static void settings_keep_restart_only(ControlSettings *cur, ControlSettings *fresh) {
        struct {
                char **cur, **fresh;
                const char *what; /* NULL: kept without a notice */
        } keep[] = {
                {&cur->listen, &fresh->listen, "listen address"},
                {&cur->database, &fresh->database, "database path"},
                {&cur->synchronous, &fresh->synchronous, "synchronous mode"},
                /* The D-Bus side copies its groups when it starts (bus.c). */
                {&cur->dbus_read_group, &fresh->dbus_read_group, "--dbus-read-group"},
                {&cur->dbus_admin_group, &fresh->dbus_admin_group, "--dbus-admin-group"},
                {&cur->config, &fresh->config, NULL},
        };
        for (size_t i = 0; i < ELEMENTSOF(keep); i++) {
                if (keep[i].what && !streq_ptr(*keep[i].cur, *keep[i].fresh))
                        log_notice("A changed %s takes effect at the next restart.", keep[i].what);
                swap_str(keep[i].cur, keep[i].fresh);
        }
        /* The retention timer exists only when the sweep was on at start. */
        if ((cur->retention_interval == 0) != (fresh->retention_interval == 0)) {
                log_notice("Turning the retention sweep on or off takes effect at the next restart.");
                fresh->retention_interval = cur->retention_interval;
        }
        fresh->user_bus = cur->user_bus;
        fresh->max_connections = cur->max_connections;
        fresh->max_connections_per_ip = cur->max_connections_per_ip;
        fresh->http_connection_timeout = cur->http_connection_timeout;
        fresh->http_request_timeout = cur->http_request_timeout;
        settings_keep_tls(cur, fresh);
}

static void control_reload_tls(Control *c) {
        HttpTlsConfig tls;
        int r;

        if (!http_server_is_tls(c->http) || !control_tls_config(c, &tls))
                return;
        r = http_server_reload_tls(c->http, &tls);
        if (r < 0)
                log_error("Reloading the TLS certificate failed; the current one stays in use.");
}

/* Config file and environment again, under the original command line; then the tokens. What
 * cannot be changed without a restart (addresses, database) is kept. */
static void control_reload(Control *c) {
        _cleanup_(control_settings_free) ControlSettings fresh = {};
        ControlSettings old;
        int r;

        char reloading[128];
        snprintf(reloading, sizeof(reloading),
                 "RELOADING=1\nSTATUS=Reloading configuration...\nMONOTONIC_USEC=%" PRIu64, now_monotonic_usec());
        control_notify(reloading);

        r = control_settings_load(&fresh, c->argc, c->argv);
        if (r == 0)
                r = control_settings_check(&fresh);
        if (r != 0)
                log_error("Reloading the configuration failed; keeping the current one.");
        else {
                settings_keep_restart_only(&c->settings, &fresh);
                old = c->settings;
                c->settings = fresh;
                fresh = old; /* freed on return */
                log_set_max_level(log_level_from_string(c->settings.log_level));
                http_server_set_max_body_size(c->http, (size_t) c->settings.max_body_size);
                /* A shorter interval takes effect now, not after the tick armed with the old one. */
                reconcile_note_deadline(c, control_now(c) + c->settings.reconcile_interval);
        }

        control_reload_tls(c);

        /* With the token file paths now in effect; on failure the old tokens stay. */
        r = auth_load(c);
        if (r < 0)
                log_error("Reloading the tokens failed; the current tokens stay valid.");
        else
                log_info("Configuration and tokens reloaded.");

        control_notify("READY=1");
        control_update_status(c);
}

static int on_reload(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Control *c = userdata;

        if (!c->shutting_down)
                control_reload(c);
        return 0;
}

static int control_event_setup(Control *c) {
        sigset_t mask;
        int r;

        r = sd_event_default(&c->event);
        if (r < 0)
                return log_error_errno(r, "Failed to create the event loop: %m");

        /* sd_event_add_signal() needs the signals blocked, or they would kill us first. */
        if (sigemptyset(&mask) < 0 || sigaddset(&mask, SIGTERM) < 0 || sigaddset(&mask, SIGINT) < 0 ||
            sigaddset(&mask, SIGHUP) < 0 || sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return log_error_errno(-errno, "Failed to block signals: %m");
        /* Past a file size limit (LimitFSIZE=) a store write fails (EFBIG) and its request is
         * refused, unacknowledged, rather than the daemon being killed. */
        (void) signal(SIGXFSZ, SIG_IGN);
        r = sd_event_add_signal(c->event, NULL, SIGTERM, on_terminate, c);
        if (r >= 0)
                r = sd_event_add_signal(c->event, NULL, SIGINT, on_terminate, c);
        if (r >= 0)
                r = sd_event_add_signal(c->event, NULL, SIGHUP, on_reload, c);
        if (r < 0)
                return log_error_errno(r, "Failed to watch signals: %m");

        /* WATCHDOG=1 at half of WATCHDOG_USEC, sent by the loop itself: a hung loop stops it. */
        r = sd_event_set_watchdog(c->event, true);
        if (r < 0)
                return log_error_errno(r, "Failed to enable the watchdog: %m");
        if (r > 0)
                log_debug("Watchdog enabled.");
        return 0;
}

/* ---- start and stop ------------------------------------------------------------------------- */

static int control_open_store(Control *c) {
        int r;

        r = store_open(c->settings.database, c->settings.synchronous, &c->store);
        if (r == -EPROTO)
                return log_error_errno(r, "Database %s was written by a newer entropy-control; refusing to start.",
                                       c->settings.database);
        if (r < 0)
                return log_error_errno(r, "Failed to open database %s: %m", c->settings.database);
        return 0;
}

static void control_done(Control *c) {
        if (c->store) /* first: its record goes to every listener, as any other */
                retention_stop(c);
        control_core_stop(c);
        control_bus_stop(c);
        observability_close_streams(c);
        c->http = http_server_free(c->http);
        c->status_timer = sd_event_source_disable_unref(c->status_timer);
        reconcile_timers_stop(c);
        c->store = store_close(c->store);
        c->requirement_sets = requirement_sets_free(c->requirement_sets);
        observability_free(c);
        auth_clear(c);
        control_settings_free(&c->settings);
        c->event = sd_event_unref(c->event);
}

/* One descriptor per HTTP connection: outside a unit that sets LimitNOFILE=, the default soft limit
 * of 1024 would refuse connections below max-connections. */
static void raise_nofile_limit(const ControlSettings *s) {
        int limit = rlimit_nofile_bump();

        if (limit < 0)
                log_warning_errno(limit, "Cannot raise the limit on open files: %m");
        else if (s->max_connections + NOFILE_RESERVE > limit)
                log_warning("max-connections=%" PRIi64 " needs about %" PRIi64
                            " open files, more than the limit of %d (LimitNOFILE=): connections past it are refused.",
                            s->max_connections, s->max_connections + NOFILE_RESERVE, limit);
}

static int run(int argc, char **argv) {
        _cleanup_(control_done) Control c = {.argc = argc, .argv = argv};
        int r;

        log_set_ident("entropy-control");
        r = control_settings_load(&c.settings, argc, argv);
        if (r != 0)
                return r < 0 ? r : 0; /* 1: --help or --version printed */
        r = control_settings_check(&c.settings);
        if (r < 0)
                return r;
        log_set_max_level(log_level_from_string(c.settings.log_level));
        raise_nofile_limit(&c.settings);

        r = auth_load(&c);
        if (r < 0)
                return r;
        r = control_event_setup(&c);
        if (r < 0)
                return r;
        r = control_open_store(&c);
        if (r < 0)
                return r;
        c.started_at = now_realtime_usec();
        r = control_add_listener(&c, audit_journal_listener, &c);
        if (r < 0)
                return log_error_errno(r, "Failed to register the journal listener: %m");

        /* Before the API takes work: extend live leases, sweep what expired while we were down. */
        r = reconcile_startup(&c);
        if (r < 0)
                return log_error_errno(r, "Start-up reconciliation failed: %m");

        r = observability_setup(&c);
        if (r < 0)
                return log_error_errno(r, "Failed to set up metrics and the event stream: %m");
        r = control_http_start(&c);
        if (r < 0)
                return r;
        r = control_bus_start(&c);
        if (r < 0)
                return log_error_errno(r, "Failed to start the D-Bus API: %m");
        r = reconcile_timers_start(&c);
        if (r < 0)
                return log_error_errno(r, "Failed to start the reconciler's timers: %m");
        r = control_core_start(&c); /* the core's loop-driven parts (worker wake-ups) */
        if (r < 0)
                return r;
        r = control_status_start(&c);
        if (r < 0)
                return r;

        control_notify("READY=1");
        control_update_status(&c);
        log_info("entropy-control " PACKAGE_VERSION " ready.");

        r = sd_event_loop(c.event);
        if (r < 0)
                return log_error_errno(r, "Event loop failed: %m");
        return 0;
}

int main(int argc, char **argv) {
        int r = run(argc, argv);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
