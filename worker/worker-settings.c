/* worker-settings.c: the option table of entropy-worker and the checks on its values. */
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#include "crypto.h"
#include "fs-util.h"
#include "gpu.h"
#include "job-cgroup.h"
#include "log.h"
#include "protocol.h"
#include "signed-token.h"
#include "strv.h"
#include "worker-settings.h"

#define OPT(name, type, field, def, arg, help) \
        { name, 0, type, offsetof(WorkerSettings, field), def, arg, help, 0, 0 }

static const ConfOption worker_options[] = {
        OPT("config", CONF_STRING, config, NULL, "FILE", "Config file to read instead of /etc/entropy/worker.conf"),
        OPT("control-url", CONF_STRING, control_url, "http://127.0.0.1:8420", "URL", "Control plane base URL"),
        OPT("worker-id", CONF_STRING, worker_id, NULL, "ID",
            "Worker id (default: hostname and a hash of the machine id)"),
        OPT("token-file", CONF_STRING, token_file, "/etc/entropy/worker-token", "FILE",
            "File holding the worker token"),
        OPT("ca-file", CONF_STRING, ca_file, NULL, "FILE",
            "PEM CA certificate(s) to verify an https:// control plane against (default: the system's)"),
        OPT("tls-certificate", CONF_STRING, tls_certificate, NULL, "FILE",
            "PEM client certificate for a control plane that requires one (with --tls-key)"),
        OPT("tls-key", CONF_STRING, tls_key, NULL, "FILE", "PEM private key of --tls-certificate"),
        OPT("signed-tokens", CONF_BOOL, signed_tokens, "no", NULL,
            "Send short-lived tokens signed with the worker token instead of the token itself"),
        OPT("signed-token-lifetime", CONF_TIMESPAN, signed_token_lifetime, "2min", "SPAN",
            "Lifetime of each signed token (renewed at half of it)"),
        OPT("state-directory", CONF_STRING, state_directory, "/var/lib/entropy-worker", "DIR",
            "Replay buffer, run records and local artifacts"),
        OPT("capabilities", CONF_STRV, capabilities, NULL, "LIST", "Capabilities offered (gpu is added when detected)"),
        {"slots", 0, CONF_INT, offsetof(WorkerSettings, slots), "1", "N", "Jobs run at once", 1, 256},
        OPT("poll-interval", CONF_TIMESPAN, poll_interval, "2s", "SPAN", "Delay between polls when idle"),
        OPT("heartbeat-interval", CONF_TIMESPAN, heartbeat_interval, "5s", "SPAN", "Delay between heartbeats"),
        OPT("request-timeout", CONF_TIMESPAN, request_timeout, "10s", "SPAN", "Limit on one HTTP request"),
        OPT("backoff-max", CONF_TIMESPAN, backoff_max, "30s", "SPAN", "Cap of the backoff after errors"),
        OPT("lease-timeout", CONF_TIMESPAN, lease_timeout, "30s", "SPAN",
            "Lease length assumed when the control plane does not give one"),
        OPT("log-retention", CONF_TIMESPAN, log_retention, "7d", "SPAN",
            "How long local artifacts and records are kept (at least 1h); 0 = for ever"),
        OPT("artifact-backend", CONF_STRING, artifact_backend, "local", "local|shared",
            "Where stdout and stderr are kept"),
        OPT("shared-directory", CONF_STRING, shared_directory, NULL, "DIR",
            "Shared artifact directory (backend shared)"),
        OPT("command-allowlist", CONF_STRV, command_allowlist, NULL, "LIST",
            "Commands jobs may run (paths, globs or bare names); empty allows all"),
        OPT("workdir-allowlist", CONF_STRV, workdir_allowlist, NULL, "LIST",
            "Directories (and below) jobs may run in; empty allows all"),
        {"max-output-size", 0, CONF_INT, offsetof(WorkerSettings, max_output_size), "0", "BYTES",
         "Bytes a job may write to its stdout, and to its stderr (RLIMIT_FSIZE, for any file); 0 = no limit", 0,
         INT64_MAX},
        {"min-free-space", 0, CONF_INT, offsetof(WorkerSettings, min_free_space), "67108864", "BYTES",
         "Free space in the state directory below which no new job is taken (results still go); 0 = no check", 0,
         INT64_MAX},
        OPT("path-check-timeout", CONF_TIMESPAN, path_check_timeout, "30s", "SPAN",
            "How long the checks of a job's command and working directory may take (10ms to 1h)"),
        OPT("refuse-root", CONF_BOOL, refuse_root, "no", NULL, "Refuse to run jobs while running as root"),
        OPT("dry-run", CONF_BOOL, dry_run, "no", NULL, "Validate jobs and write simulated artifacts, run nothing"),
        OPT("job-cgroups", CONF_STRING, job_cgroups, "auto", "auto|yes|no",
            "Run each job in a cgroup of its own (auto: where the worker's cgroup is delegated to it)"),
        OPT("kill-grace", CONF_TIMESPAN, kill_grace, "10s", "SPAN", "Delay between SIGTERM and SIGKILL"),
        OPT("idle-exit", CONF_TIMESPAN, idle_exit, "60s", "SPAN",
            "Socket-activated: exit after this long idle; 0 = never"),
        OPT("wake-listen", CONF_STRING, wake_listen, NULL, "ADDR:PORT", "Wake socket when not socket-activated"),
        OPT("wake-window", CONF_TIMESPAN, wake_window, "60s", "SPAN",
            "Clock difference accepted in a wake datagram (1s to 1h)"),
        OPT("stop-mode", CONF_STRING, stop_mode, "wait", "wait|handback", "What SIGTERM does to running jobs"),
        OPT("log-level", CONF_STRING, log_level, "info", "LEVEL", "Maximum log level"),
        OPT("gpus", CONF_STRV, gpus, NULL, "LIST",
            "GPUs for the slots: indices or GPU-/MIG- UUIDs (overrides detection and CUDA_VISIBLE_DEVICES), or none"),
        OPT("nvidia-smi", CONF_STRING, nvidia_smi, "nvidia-smi", "PROGRAM",
            "Program asked for GPU utilisation and memory reported in heartbeats; empty: none"),
        OPT("gpu-metrics-interval", CONF_TIMESPAN, gpu_metrics_interval, "10s", "SPAN",
            "How often the GPU figures are read (1s to 1h)"),
};

const ConfProgram worker_conf_program = {
        .name = "entropy-worker",
        .section = "worker",
        .summary = "Entropy worker: pulls jobs from the control plane, runs them and reports their results.",
        .usage_args = "[OPTIONS...]",
        .default_config = "/etc/entropy/worker.conf", /* fixed, as the units and packages name it */
        .options = worker_options,
        .n_options = ELEMENTSOF(worker_options),
};

static const char *const stop_mode_table[_STOP_MODE_MAX] = {
        [STOP_MODE_WAIT] = "wait",
        [STOP_MODE_HANDBACK] = "handback",
};
static const char *const artifact_backend_table[_ARTIFACT_BACKEND_MAX] = {
        [ARTIFACT_BACKEND_LOCAL] = "local",
        [ARTIFACT_BACKEND_SHARED] = "shared",
};

StopMode stop_mode_from_string(const char *s) {
        for (int i = 0; s && i < _STOP_MODE_MAX; i++)
                if (streq(s, stop_mode_table[i]))
                        return i;
        return _STOP_MODE_INVALID;
}
const char *stop_mode_to_string(StopMode m) {
        return m >= 0 && m < _STOP_MODE_MAX ? stop_mode_table[m] : NULL;
}
ArtifactBackend artifact_backend_from_string(const char *s) {
        for (int i = 0; s && i < _ARTIFACT_BACKEND_MAX; i++)
                if (streq(s, artifact_backend_table[i]))
                        return i;
        return _ARTIFACT_BACKEND_INVALID;
}
const char *artifact_backend_to_string(ArtifactBackend b) {
        return b >= 0 && b < _ARTIFACT_BACKEND_MAX ? artifact_backend_table[b] : NULL;
}

int worker_default_id(const char *machine_id_path, char **ret) {
        _cleanup_free_ char *machine_id = NULL;
        char host[256] = "", mac[SHA256_HEX_SIZE];
        char *id;
        int r;

        if (gethostname(host, sizeof(host) - 1) < 0 || isempty(host))
                strcpy(host, "worker");
        r = read_secret_file(machine_id_path, &machine_id);
        if (r < 0)
                return r;
        /* Keyed by the machine id, over an application constant: systemd's recipe for
         * application-specific machine ids (sd_id128_get_machine_app_specific). */
        r = hmac_sha256_hex(machine_id, strlen(machine_id), "entropy-worker", strlen("entropy-worker"), mac);
        if (r < 0)
                return r;
        if (asprintf(&id, "%s-%.8s", host, mac) < 0)
                return -ENOMEM;
        *ret = id;
        return 0;
}

/* The control plane refuses signed tokens living longer than its --signed-token-max-lifetime
 * (5min by default); an hour is a bound on mistakes, not a recommendation. */
static int settings_validate_tls(const WorkerSettings *s) {
        if (isempty(s->tls_certificate) != isempty(s->tls_key))
                return log_error_errno(-EINVAL, "--tls-certificate and --tls-key go together.");
        if (s->signed_token_lifetime < USEC_PER_SEC || s->signed_token_lifetime > USEC_PER_HOUR)
                return log_error_errno(-EINVAL, "--signed-token-lifetime must be between 1s and 1h.");
        return 0;
}

/* Bounds on the time spans, so that a slip of the pen is refused at start instead of acting out:
 * a 0 that deletes every artifact, a window that drops every wake-up, nvidia-smi started in a
 * loop, an endless lease that wraps the worker's arithmetic. log-retention 0 keeps for ever, as
 * the control plane's retention settings do. */
static int settings_validate_spans(const WorkerSettings *s) {
        if (s->poll_interval < 10 * USEC_PER_MSEC)
                return log_error_errno(-EINVAL, "--poll-interval must be at least 10ms.");
        if (s->heartbeat_interval < 10 * USEC_PER_MSEC || s->heartbeat_interval > USEC_PER_MINUTE)
                return log_error_errno(-EINVAL, "--heartbeat-interval must be between 10ms and 1min.");
        if (s->request_timeout < 100 * USEC_PER_MSEC || s->request_timeout == USEC_INFINITY)
                return log_error_errno(-EINVAL, "--request-timeout must be finite and at least 100ms.");
        if (s->lease_timeout < USEC_PER_SEC || s->lease_timeout > USEC_PER_HOUR)
                return log_error_errno(-EINVAL, "--lease-timeout must be between 1s and 1h.");
        if (s->kill_grace > USEC_PER_HOUR)
                return log_error_errno(-EINVAL, "--kill-grace must be at most 1h.");
        if (s->log_retention != 0 && s->log_retention != USEC_INFINITY && s->log_retention < USEC_PER_HOUR)
                return log_error_errno(-EINVAL,
                                       "--log-retention must be at least 1h, or 0 or infinity to keep for ever.");
        if (s->wake_window < USEC_PER_SEC || s->wake_window > USEC_PER_HOUR)
                return log_error_errno(-EINVAL, "--wake-window must be between 1s and 1h.");
        if (s->path_check_timeout < 10 * USEC_PER_MSEC || s->path_check_timeout > USEC_PER_HOUR)
                return log_error_errno(-EINVAL, "--path-check-timeout must be between 10ms and 1h.");
        if (s->gpu_metrics_interval < USEC_PER_SEC || s->gpu_metrics_interval > USEC_PER_HOUR)
                return log_error_errno(-EINVAL, "--gpu-metrics-interval must be between 1s and 1h.");
        return 0;
}

static int settings_validate(WorkerSettings *s) {
        int r;

        if (isempty(s->control_url))
                return log_error_errno(-EINVAL, "--control-url must not be empty.");
        if (isempty(s->state_directory) || s->state_directory[0] != '/')
                return log_error_errno(-EINVAL, "--state-directory must be an absolute path.");
        if (stop_mode_from_string(s->stop_mode) < 0)
                return log_error_errno(-EINVAL, "Invalid --stop-mode '%s': expected wait or handback.", s->stop_mode);
        if (job_cgroups_mode_from_string(s->job_cgroups) < 0)
                return log_error_errno(-EINVAL, "Invalid --job-cgroups '%s': expected auto, yes or no.",
                                       s->job_cgroups);
        if (artifact_backend_from_string(s->artifact_backend) < 0)
                return log_error_errno(-EINVAL, "Invalid --artifact-backend '%s': expected local or shared.",
                                       s->artifact_backend);
        if (artifact_backend_from_string(s->artifact_backend) == ARTIFACT_BACKEND_SHARED &&
            (isempty(s->shared_directory) || s->shared_directory[0] != '/'))
                return log_error_errno(-EINVAL, "--artifact-backend=shared needs an absolute --shared-directory.");
        if (log_level_from_string(s->log_level) < 0)
                return log_error_errno(-EINVAL, "Invalid --log-level '%s'.", s->log_level);
        r = settings_validate_spans(s);
        if (r < 0)
                return r;
        r = gpu_override_check(s->gpus);
        if (r < 0)
                return r;
        if (s->backoff_max < s->poll_interval)
                s->backoff_max = s->poll_interval;
        return settings_validate_tls(s);
}

int worker_settings_load(WorkerSettings *s, int argc, char **argv) {
        int r = conf_load(&worker_conf_program, argc, argv, s, NULL);
        if (r != 0)
                return r;
        r = settings_validate(s);
        if (r < 0)
                return r;
        if (isempty(s->worker_id)) {
                char *id;
                r = worker_default_id("/etc/machine-id", &id);
                if (r < 0)
                        return log_error_errno(r, "No --worker-id given and no machine id to derive one from: %m");
                free_and_replace_str(&s->worker_id, id);
        }
        /* The control plane's rule for /register: refused here, not at every registration attempt. */
        if (strlen(s->worker_id) > LIMIT_ID_LEN)
                return log_error_errno(-EINVAL, "--worker-id is longer than %d bytes.", LIMIT_ID_LEN);
        if (!worker_id_is_registrable(s->worker_id))
                return log_error_errno(-EINVAL, "--worker-id '%s' contains a space, a control character or DEL.",
                                       s->worker_id);
        return 0;
}

void worker_settings_free(WorkerSettings *s) {
        conf_free(&worker_conf_program, s);
}
