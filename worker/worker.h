/* worker.h: entropy-worker's context. One Worker owns the event loop, the settings, the HTTP
 * client, the replay buffer, the wake sockets, the executor (entropy-keeper), the artifact
 * thread, one Run per busy slot and the runs whose results are being recorded; every other file
 * receives a Worker * and borrows from it.
 *
 *   worker.c     set-up, signals (SIGTERM stop, SIGHUP reload), sd_notify, maintenance, exit
 *   session.c    register -> reconnect -> poll, result delivery (outbox flush), error backoff
 *   run.c        one job: ack, policy, start, timeout, stop, result
 *   lease.c      heartbeats and the lease each running job holds
 *   wake.c       wake-up datagrams (socket activation or --wake-listen)
 *   executor.c, job-cgroup.c, finisher.c, artifacts.c, replay.c, policy.c, prepare.c, gpu.c,
 *   client.c: the mechanisms they use; keeper.c is entropy-keeper, the helper program executor.c talks to */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "artifacts.h"
#include "client.h"
#include "crypto.h"
#include "executor.h"
#include "finisher.h"
#include "host-metrics.h"
#include "job-cgroup.h"
#include "json-util.h"
#include "prepare.h"
#include "replay.h"
#include "time-util.h"
#include "worker-settings.h"

typedef struct Worker Worker;

typedef struct JobSpec {
        char *job_id;
        char *assignment_id;
        char *command;
        char **args;
        char *working_dir;
        int64_t timeout_ms;      /* 0: none */
        int64_t attempt;         /* attempt_count as the control plane numbers it */
        int64_t max_attempts;
        double expires_at;       /* assignment_expires_at, Unix seconds; 0 if not given */
        int64_t lease_timeout_ms;/* lease length if the control plane says; 0 otherwise */
} JobSpec;

/* Parses a GET /next-job answer; *ret_error says which field was wrong. */
int job_spec_from_json(json_object *o, JobSpec **ret, char *error, size_t error_size);
JobSpec *job_spec_free(JobSpec *s);

typedef enum RunPhase {
        RUN_ACKING,    /* claimed, /ack in flight: held, not started (policy and files prepared) */
        RUN_PREPARING, /* ack accepted, the policy's checks still running (prepare.h) */
        RUN_STARTING,  /* ack accepted: recorded, its process being started (executor_start) */
        RUN_RUNNING,   /* process running */
        RUN_STOPPING,  /* signalled, waiting for it to exit */
        RUN_FINISHING, /* exited, out of its slot: artifacts being made durable (finisher.c), or its
                        * result waiting to be recorded again (Run.unrecorded) */
} RunPhase;

typedef enum StopReason {
        STOP_NONE,
        STOP_TIMEOUT,  /* timeout_ms elapsed */
        STOP_LEASE,    /* the lease could not be renewed in time */
        STOP_ABORT,    /* the control plane says the job is no longer ours */
        STOP_HANDBACK, /* SIGTERM with stop-mode=handback */
} StopReason;

/* A result the replay buffer refused (disk full, I/O error), kept to be recorded again. */
typedef struct UnrecordedResult {
        int kind; /* ResultKind */
        json_object *body;
        char *outcome, *reason;
        int64_t exit_code;
} UnrecordedResult;

typedef struct Run {
        Worker *worker;
        size_t slot;
        JobSpec *spec;
        RunPhase phase;
        StopReason stop_reason;
        char *stop_detail;

        /* Prepared while the ack is in flight (run_prepare). */
        Preparation *preparation;       /* the policy's checks, while they run */
        sd_event_source *prepare_timer; /* path-check-timeout */
        int policy;          /* POLICY_ALLOW, _REFUSE, _NOTFOUND or -errno */
        char *policy_reason; /* why not allowed */
        char *exec_path, *workdir;
        int artifacts_error; /* artifacts_open() failed with this */

        ExecutorStart *start; /* its process's start, while entropy-keeper has not answered */
        pid_t pid;
        uint64_t cgroup_id; /* job-cgroup.h; 0: none */
        int64_t run_id;     /* replay.runs row */
        usec_t started_real, started_mono;
        ArtifactSet *artifacts;

        sd_event_source *child_source;
        sd_event_source *timeout_timer; /* job timeout */
        sd_event_source *kill_timer;    /* SIGKILL after the grace */
        sd_event_source *lease_timer;
        sd_event_source *ack_timer;     /* retry of a failed /ack */
        ClientRequest *ack_request;
        unsigned ack_attempts;

        usec_t lease_length;
        usec_t lease_base; /* CLOCK_BOOTTIME send time of the last call that renewed the lease */

        /* From the process's exit, kept while its artifacts are finalized. */
        siginfo_t exit_info;
        usec_t exited_real, exited_mono;
        struct Run *next_finishing; /* Worker.finishing */

        /* Its result, while the replay buffer cannot take it: tried again after a backoff. */
        UnrecordedResult *unrecorded;
        sd_event_source *record_timer;
        unsigned record_failures;
} Run;

typedef enum SessionState {
        SESSION_REGISTERING,
        SESSION_RECONNECTING,
        SESSION_READY,
} SessionState;

#define WORKER_MAX_WAKE_FDS 8
#define WORKER_STATUS_INTERVAL (100 * USEC_PER_MSEC) /* at most one STATUS= update per interval */

struct Worker {
        sd_event *event;
        WorkerSettings settings;
        int argc;
        char **argv;

        char *token;
        char *nonce;
        char instance_id[RANDOM_ID_SIZE];
        char **capabilities; /* configured plus detected (gpu) */
        char **gpus;
        char *gpus_hidden; /* the worker's own CUDA_VISIBLE_DEVICES when it left no GPU: its jobs get it */
        HostMetrics *host_metrics; /* CPU, memory and GPU figures for heartbeats */
        StopMode stop_mode;
        ArtifactBackend backend;

        Client *client;
        Replay *replay;
        Executor *executor;
        JobCgroups *cgroups; /* NULL: jobs run in the worker's cgroup */
        Finisher *finisher;
        Preparer *preparer;
        Run *finishing; /* runs whose process exited, out of their slots, artifacts being finalized */

        Run **slots;
        size_t n_slots;

        SessionState session;
        unsigned session_failures, poll_failures, flush_failures;
        ClientRequest *session_request, *poll_request, *flush_request;
        sd_event_source *session_timer, *poll_timer, *flush_timer;
        sd_event_source *heartbeat_timer;
        unsigned heartbeats_in_flight;
        RateLimit heartbeat_refused_log; /* refused heartbeats: a warning at most once a minute */
        unsigned heartbeat_seq_failures; /* reservations failed in a row: seqs go on in memory */
        usec_t heartbeat_seq_retry;      /* monotonic; the next reservation is tried from then */
        RateLimit heartbeat_seq_log;     /* failed reservations: an error at most once a minute */
        usec_t last_contact; /* monotonic time of the last answer from the control plane */
        usec_t watchdog;     /* WatchdogSec= of the service; 0: none */

        int wake_fds[WORKER_MAX_WAKE_FDS];
        sd_event_source *wake_sources[WORKER_MAX_WAKE_FDS];
        size_t n_wake;
        uint16_t wake_port;
        uint64_t wake_last_ms;
        bool socket_activated;
        usec_t busy_until;  /* monotonic; idle-exit counts from here */
        sd_event_source *idle_timer;

        sd_event_source *maintenance_timer;
        sd_event_source *status_timer; /* a STATUS= update held back (worker_update_status) */
        usec_t status_sent;            /* monotonic time of the last one sent */
        bool disk_low;                 /* below min-free-space at the last look: no new job */
        uint64_t disk_free;            /* bytes free in the state directory at the last look */
        bool disk_free_known;          /* that look succeeded */
        bool checks_hung;              /* PREPARER_MAX_HUNG path checks hang at the last look: no new job */
        bool stopping;
        bool stop_flush_tried;
        int exit_code;
};

/* worker.c */
int worker_new(int argc, char **argv, Worker **ret);
Worker *worker_free(Worker *w);
int worker_run(Worker *w);
size_t worker_n_runs(Worker *w);
/* How long a job's start may keep the loop waiting for entropy-keeper (ExecSpec.start_timeout):
 * path-check-timeout, at most a third of the watchdog's interval. */
usec_t worker_start_timeout(const Worker *w);
size_t worker_n_finishing(Worker *w);                /* out of their slots, results not recorded yet */
size_t worker_n_unrecorded(Worker *w);               /* held runs whose result the replay buffer refused */
Run *worker_find_run(Worker *w, const char *job_id); /* in a slot; not the finishing runs */
/* Log retention: removes run records and local artifact directories older than log-retention
 * before `now` (realtime), except those of jobs the worker still holds or has a result of to
 * deliver. Returns the number of directories removed. */
int worker_prune(Worker *w, usec_t now);
/* Names the jobs this worker holds an assignment for in o's current_job_id, current_jobs
 * [{job_id, assignment_id}] and current_job_ids, as a heartbeat and a reconnect send them: the
 * runs in slots, then the finishing ones (process exited, result not recorded yet), at most
 * LIMIT_RECONNECT_ENTRIES. `each`, if given, is called for every run listed. Returns how many. */
size_t worker_add_held_jobs(Worker *w, json_object *o, void (*each)(Run *r, void *userdata), void *userdata);
/* Whether the state directory has less free space than min-free-space: looked at before each
 * poll, the change logged. Jobs write their outputs there and results go to the replay buffer
 * there: a job taken on a full disk would be held until its result fits. */
bool worker_disk_low(Worker *w);
/* Whether PREPARER_MAX_HUNG path checks given up on still hang (prepare.h): each new job sent
 * to the same mount would hang one more. Looked at before each poll, the change logged. */
bool worker_checks_hung(Worker *w);
/* Why the worker asks for no new job until there is room again: results the replay buffer
 * refused, path checks that hang, or a nearly full disk. Written to buf and returned; NULL when
 * none holds. STATUS= and the heartbeats say the same. (Runs finishing beyond the slots hold new jobs back too, but
 * only until a result is recorded: STATUS= says so, the heartbeats do not.) */
const char *worker_no_new_work(Worker *w, char *buf, size_t size);
/* Index of a free slot, or -EBUSY: also while worker_finishing_full(). */
int worker_free_slot(Worker *w);
/* The runs in slots and the finishing ones are one more than the slots: no new job until a
 * finishing one is recorded. */
bool worker_finishing_full(Worker *w);
void worker_update_status(Worker *w);
void worker_mark_busy(Worker *w);
/* Exits the loop once stopping and nothing is left to wait for. */
void worker_check_exit(Worker *w);
/* Delay after n consecutive failures: poll-interval doubled per failure up to backoff-max, with
 * jitter in [50%, 100%] so that workers that failed together do not retry together. */
usec_t worker_backoff(Worker *w, unsigned failures);
int worker_arm_timer(Worker *w, sd_event_source **s, usec_t delay, sd_event_time_handler_t cb, void *userdata,
                     const char *description);

/* session.c */
void session_start(Worker *w);
void session_lost_registration(Worker *w); /* a 403: register again */
void session_poll_now(Worker *w);
void session_flush(Worker *w);
void session_note_contact(Worker *w);

/* run.c */
int run_claim(Worker *w, size_t slot, JobSpec *spec, const ClientReply *reply);
void run_stop(Run *r, StopReason reason, const char *detail);
void run_abort(Run *r, const char *detail); /* SIGKILL the group at once */
/* Signals the job's process group and, where it has a cgroup, what left the group too. */
void run_signal(Run *r, int sig);
Run *run_free(Run *r);
/* Tries again to record the result of a run held because the replay buffer refused it. */
void run_record_again(Run *r);

/* lease.c */
void lease_start(Worker *w);
void lease_init(Run *r, const ClientReply *claim_reply);
void lease_renewed(Run *r, usec_t sent_boot, usec_t length); /* length 0: as it was */
/* When the worker starts stopping the run for its lease (CLOCK_BOOTTIME, as lease_base): a
 * margin before a lease length from the sending of the last renewal that succeeded. */
usec_t lease_stop_at(const Run *r);
/* The SIGTERM-to-SIGKILL grace a lease stop may take: a tenth of the lease, none once the lease
 * has run out (after a suspend). */
usec_t lease_kill_grace(const Run *r);
void lease_arm(Run *r); /* (re)arms the lease timer, on CLOCK_BOOTTIME, for lease_stop_at() */
void lease_handle_abort_signals(Worker *w, json_object *body);
/* The next heartbeat seq, strictly increasing across restarts: the replay buffer's, reserved in
 * durable blocks, or, while a reservation cannot be written (a full disk), counted on in memory
 * past it, the reservation tried again after the error backoff (worker_backoff). */
uint64_t lease_next_heartbeat_seq(Worker *w);
/* Once per process, before the first heartbeat (lease_start does it): the sequence goes on from
 * the realtime clock in milliseconds when that is ahead, above any seq an earlier process sent
 * without a reservation. */
void lease_seed_heartbeat_seq(Worker *w);

/* wake.c */
int wake_setup(Worker *w);
void wake_close(Worker *w);
