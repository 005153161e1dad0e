/* control-settings.c: entropy-control's option table and the checks run on what it loads. */
#include <stddef.h>

#include "control-settings-check.h"
#include "control-settings.h"
#include "log.h"
#include "macro.h"
#include "protocol.h"

#define S(field) offsetof(ControlSettings, field)

/* clang-format off: one option per two lines reads better than what it makes of this table */
static const ConfOption control_options[] = {
        {"config", 0, CONF_STRING, S(config), NULL, "FILE",
         "Config file to read instead of " CONTROL_DEFAULT_CONFIG "; empty reads none", 0, 0},
        {"listen", 0, CONF_STRING, S(listen), "127.0.0.1:8420", "ADDR:PORT",
         "Address of the HTTP API, unless systemd passes a socket", 0, 0},
        {"database", 0, CONF_STRING, S(database), CONTROL_DEFAULT_DATABASE, "PATH",
         "SQLite database holding jobs, workers and audit events", 0, 0},
        {"synchronous", 0, CONF_STRING, S(synchronous), "full", "full|normal",
         "SQLite durability: full survives power loss; normal may lose the last commits", 0, 0},
        {"admin-token-file", 0, CONF_STRING, S(admin_token_file), NULL, "FILE",
         "File holding the admin API token (else credential admin-token)", 0, 0},
        {"admin-token-previous-file", 0, CONF_STRING, S(admin_token_previous_file), NULL, "FILE",
         "File holding the previous admin token, still accepted during rotation", 0, 0},
        {"worker-token-file", 0, CONF_STRING, S(worker_token_file), NULL, "FILE",
         "File holding the worker API token (else credential worker-token)", 0, 0},
        {"worker-token-previous-file", 0, CONF_STRING, S(worker_token_previous_file), NULL, "FILE",
         "File holding the previous worker token, still accepted during rotation", 0, 0},
        {"metrics-token-file", 0, CONF_STRING, S(metrics_token_file), NULL, "FILE",
         "File holding a token that opens GET /metrics only (the admin token always does)", 0, 0},
        {"log-level", 0, CONF_STRING, S(log_level), "info", "LEVEL",
         "Least important messages logged: debug, info, notice, warning, err", 0, 0},
        {"lease-timeout", 0, CONF_TIMESPAN, S(lease_timeout), "30s", "SPAN",
         "Length of a job's lease; each worker heartbeat renews it", 0, 0},
        {"disconnect-timeout", 0, CONF_TIMESPAN, S(disconnect_timeout), "15s", "SPAN",
         "Heartbeat age after which a worker is DISCONNECTED (its jobs keep running)", 0, 0},
        {"heartbeat-timeout", 0, CONF_TIMESPAN, S(heartbeat_timeout), "30s", "SPAN",
         "Heartbeat age after which a worker is OFFLINE", 0, 0},
        {"reconcile-interval", 0, CONF_TIMESPAN, S(reconcile_interval), "5s", "SPAN",
         "Longest time between two sweeps for expired leases, lost workers and due retries", 0, 0},
        {"retry-backoff", 0, CONF_TIMESPAN, S(retry_backoff), "5s", "SPAN",
         "Base of the exponential backoff before a failed or lost job is retried", 0, 0},
        {"retry-backoff-max", 0, CONF_TIMESPAN, S(retry_backoff_max), "5min", "SPAN", "Cap on the retry backoff", 0, 0},
        {"lost-grace", 0, CONF_TIMESPAN, S(lost_grace), "5min", "SPAN",
         "How long a job lost on its last attempt waits for its worker's late completion before it is FAILED", 0, 0},
        {"retry-jitter", 0, CONF_DOUBLE, S(retry_jitter), "0.2", "FRACTION",
         "Random extra added to each backoff, as a fraction of it (0..1)", 0, 0},
        {"aging-window", 0, CONF_TIMESPAN, S(aging_window), "5min", "SPAN",
         "A pending job gains one priority point per window waited; 0 turns aging off", 0, 0},
        {"max-retry-jobs-per-worker", 0, CONF_INT, S(max_retry_jobs_per_worker), "0", "N",
         "Retried jobs one worker may hold at once; 0 means no limit", 0, 1000000},
        {"preempt-priority-floor", 0, CONF_INT, S(preempt_priority_floor), "100", "PRIORITY",
         "Jobs at or above this priority count as high priority for --preempt-backlog", 0, 0},
        {"preempt-backlog", 0, CONF_INT, S(preempt_backlog), "0", "N",
         "When more high-priority jobs than this wait, only they are handed out; 0 turns it off", 0, 100000000},
        {"wake-interval", 0, CONF_TIMESPAN, S(wake_interval), "1s", "SPAN",
         "Least time between two wake datagrams to one worker (10ms to 1h)", 0, 0},
        {"job-retention-days", 0, CONF_INT, S(job_retention_days), "30", "DAYS",
         "Days finished jobs (and their artifact records) are kept; 0 keeps them forever", 0, 36500},
        {"event-retention-days", 0, CONF_INT, S(event_retention_days), "90", "DAYS",
         "Days audit events are kept; 0 keeps them forever", 0, 36500},
        {"worker-retention-days", 0, CONF_INT, S(worker_retention_days), "0", "DAYS",
         "Days an OFFLINE worker holding no job is kept after it was last seen; 0 keeps it forever", 0, 36500},
        {"retention-interval", 0, CONF_TIMESPAN, S(retention_interval), "1h", "SPAN",
         "How often old jobs, events and workers are deleted; 0 turns the sweep off", 0, 0},
        {"max-body-size", 0, CONF_INT, S(max_body_size), "1048576", "BYTES",
         "Largest HTTP request body accepted; larger ones get 413", 1024, 64 * 1024 * 1024},
        {"max-connections", 0, CONF_INT, S(max_connections), "1024", "N", "Most HTTP connections served at once", 1,
         65536},
        {"max-connections-per-ip", 0, CONF_INT, S(max_connections_per_ip), "128", "N",
         "Most HTTP connections from one address at once; 0 means no limit", 0, 65536},
        {"user-bus", 0, CONF_BOOL, S(user_bus), "no", NULL,
         "Serve the D-Bus API on the session bus instead of the system bus (development)", 0, 0},
        {"ui-directory", 0, CONF_STRING, S(ui_directory), PKGDATADIR "/ui", "DIR",
         "Directory of the dashboard's static files, served at /ui", 0, 0},
        {"dbus-read-group", 0, CONF_STRING, S(dbus_read_group), "entropy", "GROUP",
         "Group whose members may call the D-Bus API's reading methods", 0, 0},
        {"dbus-admin-group", 0, CONF_STRING, S(dbus_admin_group), "entropy-admin", "GROUP",
         "Group whose members may change things over D-Bus (others need polkit)", 0, 0},
        {"http-connection-timeout", 0, CONF_TIMESPAN, S(http_connection_timeout), "30s", "SPAN",
         "Idle or stalled HTTP connections are closed after this", 0, 0},
        /* HTTP_REQUEST_TIMEOUT_DEFAULT_USEC (http-server.h) says why 15s. */
        {"http-request-timeout", 0, CONF_TIMESPAN, S(http_request_timeout), "15s", "SPAN",
         "A request's headers and body must arrive within this, or its connection is closed", 0, 0},
        {"tls-certificate", 0, CONF_STRING, S(tls_certificate), NULL, "FILE",
         "PEM certificate chain: serve HTTPS (with --tls-key); reloaded on SIGHUP", 0, 0},
        {"tls-key", 0, CONF_STRING, S(tls_key), NULL, "FILE", "PEM private key of --tls-certificate", 0, 0},
        {"tls-priorities", 0, CONF_STRING, S(tls_priorities), NULL, "STRING",
         "GnuTLS priority string (default: TLS 1.3 and 1.2, AEAD ciphers, ECDHE only)", 0, 0},
        {"tls-client-ca", 0, CONF_STRING, S(tls_client_ca), NULL, "FILE",
         "Require client certificates issued by this PEM CA (mTLS)", 0, 0},
        {"tls-bind-worker-id", 0, CONF_BOOL, S(tls_bind_worker_id), "no", NULL,
         "A worker call's worker_id must be its certificate's subject CN or a SAN", 0, 0},
        {"require-signed-worker-tokens", 0, CONF_BOOL, S(require_signed_worker_tokens), "no", NULL,
         "Refuse the plain worker token: workers must send signed tokens (esig1:...)", 0, 0},
        {"token-clock-skew", 0, CONF_TIMESPAN, S(token_clock_skew), "30s", "SPAN",
         "Clock difference tolerated when checking a signed token's expiry", 0, 0},
        {"signed-token-max-lifetime", 0, CONF_TIMESPAN, S(signed_token_max_lifetime), "5min", "SPAN",
         "Signed worker tokens valid for longer than this are refused", 0, 0},
};
/* clang-format on */

const ConfProgram control_program = {
        .name = "entropy-control",
        .section = "control",
        .summary = "The Entropy control plane: durable job store, scheduler, reconciler, HTTP and D-Bus APIs.",
        .usage_args = "[OPTIONS...]",
        .default_config = CONTROL_DEFAULT_CONFIG,
        .options = control_options,
        .n_options = ELEMENTSOF(control_options),
};

int control_settings_load(ControlSettings *s, int argc, char **argv) {
        return conf_load(&control_program, argc, argv, s, NULL);
}

/* Spans that must be positive and finite: zero or "infinity" would stop the loop or overflow the
 * deadlines computed from them. */
static int check_spans(const ControlSettings *s) {
        static const struct {
                const char *name;
                size_t offset;
        } spans[] = {
                {"lease-timeout", S(lease_timeout)},         {"disconnect-timeout", S(disconnect_timeout)},
                {"heartbeat-timeout", S(heartbeat_timeout)}, {"reconcile-interval", S(reconcile_interval)},
                {"retry-backoff", S(retry_backoff)},         {"retry-backoff-max", S(retry_backoff_max)},
        };
        for (size_t i = 0; i < ELEMENTSOF(spans); i++) {
                usec_t u = *(const usec_t *) ((const char *) s + spans[i].offset);
                if (u == 0 || u > 365 * USEC_PER_DAY)
                        return log_error_errno(-EINVAL, "--%s must be above 0 and at most a year.", spans[i].name);
        }
        if (s->aging_window > 365 * USEC_PER_DAY)
                return log_error_errno(-EINVAL, "--aging-window must be at most a year.");
        if (s->lost_grace > 365 * USEC_PER_DAY)
                return log_error_errno(-EINVAL, "--lost-grace must be at most a year.");
        if (s->retention_interval > 365 * USEC_PER_DAY)
                return log_error_errno(-EINVAL, "--retention-interval must be at most a year.");
        /* Shorter would let a burst of submissions flood a worker with datagrams; longer would keep
         * a worker that has just been woken from hearing of the next job for that long. */
        if (s->wake_interval < 10 * USEC_PER_MSEC || s->wake_interval > USEC_PER_HOUR)
                return log_error_errno(-EINVAL, "--wake-interval must be between 10ms and 1h.");
        return 0;
}

/* TLS and token options that only make sense together. */
static int check_security(const ControlSettings *s) {
        if (isempty(s->tls_certificate) != isempty(s->tls_key))
                return log_error_errno(-EINVAL, "--tls-certificate and --tls-key go together.");
        if (!isempty(s->tls_priorities) && isempty(s->tls_certificate))
                return log_error_errno(-EINVAL, "--tls-priorities needs --tls-certificate.");
        if (!isempty(s->tls_client_ca) && isempty(s->tls_certificate))
                return log_error_errno(-EINVAL, "--tls-client-ca needs --tls-certificate and --tls-key.");
        if (s->tls_bind_worker_id && isempty(s->tls_client_ca))
                return log_error_errno(-EINVAL, "--tls-bind-worker-id needs --tls-client-ca.");
        if (s->token_clock_skew > 10 * USEC_PER_MINUTE)
                return log_error_errno(-EINVAL, "--token-clock-skew must be at most 10min.");
        if (s->signed_token_max_lifetime == 0 || s->signed_token_max_lifetime > USEC_PER_DAY)
                return log_error_errno(-EINVAL, "--signed-token-max-lifetime must be above 0 and at most a day.");
        if (s->http_connection_timeout < USEC_PER_SEC || s->http_connection_timeout > USEC_PER_HOUR)
                return log_error_errno(-EINVAL, "--http-connection-timeout must be between 1s and 1h.");
        /* No "off": without it, a client sending a byte now and then holds a connection forever. */
        if (s->http_request_timeout < USEC_PER_SEC || s->http_request_timeout > USEC_PER_HOUR)
                return log_error_errno(-EINVAL, "--http-request-timeout must be between 1s and 1h.");
        return 0;
}

int control_settings_check(const ControlSettings *s) {
        char err[256] = "";
        int r;

        if (isempty(s->listen))
                return log_error_errno(-EINVAL, "--listen must not be empty.");
        if (isempty(s->database))
                return log_error_errno(-EINVAL, "--database must not be empty.");
        if (log_level_from_string(s->log_level) < 0)
                return log_error_errno(-EINVAL, "Unknown --log-level '%s'.", strempty(s->log_level));
        r = check_spans(s);
        if (r < 0)
                return r;
        r = check_security(s);
        if (r < 0)
                return r;
        /* The rules between the timeouts, the backoff and the knobs belong to the lease and
         * scheduling logic (control-settings-check.c): */
        r = control_settings_validate(s, err, sizeof(err));
        if (r < 0)
                return log_error_errno(r, "Invalid settings: %s", err);
        return 0;
}

void control_settings_free(ControlSettings *s) {
        conf_free(&control_program, s);
}
