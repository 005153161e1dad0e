/* worker-settings.h: entropy-worker's options (one table: flags, ENTROPY_* variables, [worker]
 * keys of /etc/entropy/worker.conf and --help) and the values derived from them at start-up
 * (worker id from the machine id, GPU list, capabilities). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "conf.h"
#include "time-util.h"

typedef enum StopMode {
        STOP_MODE_WAIT,     /* SIGTERM: take no new work, let running jobs finish and report */
        STOP_MODE_HANDBACK, /* SIGTERM: stop running jobs and hand them back with /fail */
        _STOP_MODE_MAX,
        _STOP_MODE_INVALID = -EINVAL,
} StopMode;

typedef enum ArtifactBackend {
        ARTIFACT_BACKEND_LOCAL,  /* kept under the state directory, removed after log-retention */
        ARTIFACT_BACKEND_SHARED, /* also copied into <shared-directory>/<job_id>/ */
        _ARTIFACT_BACKEND_MAX,
        _ARTIFACT_BACKEND_INVALID = -EINVAL,
} ArtifactBackend;

typedef struct WorkerSettings {
        char *config;
        char *control_url;
        char *worker_id;
        char *token_file;
        char *ca_file;         /* PEM CA the control plane's certificate must chain to */
        char *tls_certificate; /* PEM client certificate for mTLS (with tls_key) */
        char *tls_key;
        bool signed_tokens; /* send short-lived signed tokens instead of the token */
        usec_t signed_token_lifetime;
        char *state_directory;
        char **capabilities;
        int64_t slots;
        usec_t poll_interval;
        usec_t heartbeat_interval;
        usec_t request_timeout;
        usec_t backoff_max;   /* cap of the error backoff of polls and replays */
        usec_t lease_timeout; /* fallback lease length when the control plane does not say */
        usec_t log_retention;
        char *artifact_backend;
        char *shared_directory;
        char **command_allowlist;
        char **workdir_allowlist;
        int64_t max_output_size; /* bytes a job may write to its stdout, and its stderr; 0 = no limit */
        int64_t min_free_space;  /* bytes free in state_directory below which no job is taken; 0 = no check */
        usec_t path_check_timeout; /* the policy's checks of a job (prepare.h), past which it fails here */
        bool refuse_root;
        bool dry_run;
        char *job_cgroups; /* auto|yes|no (job-cgroup.h); read at start-up only */
        usec_t kill_grace;
        usec_t idle_exit;   /* socket-activated: exit after this long without work; 0 = never */
        char *wake_listen;  /* ADDR:PORT for a wake socket when not socket-activated */
        usec_t wake_window; /* accepted clock difference of a wake datagram */
        char *stop_mode;
        char *log_level;
        char **gpus; /* override of detection: indices, or "none" */
        char *nvidia_smi;           /* program asked for GPU figures; "" = none */
        usec_t gpu_metrics_interval;
} WorkerSettings;

extern const ConfProgram worker_conf_program;

/* Loads settings from defaults, file, environment and argv (see conf_load for return values) and
 * validates them. */
int worker_settings_load(WorkerSettings *s, int argc, char **argv);
void worker_settings_free(WorkerSettings *s);

StopMode stop_mode_from_string(const char *s);
const char *stop_mode_to_string(StopMode m);
ArtifactBackend artifact_backend_from_string(const char *s);
const char *artifact_backend_to_string(ArtifactBackend b);

/* The default worker id: "<hostname>-<8 hex>", the hex being an HMAC-SHA256 of the machine id
 * keyed for this application, so it is stable across restarts and reinstalls but does not reveal
 * the machine id itself. */
int worker_default_id(const char *machine_id_path, char **ret);
