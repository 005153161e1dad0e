/* worker.c: entropy-worker's context: set-up from the settings, signals (SIGTERM: stop,
 * SIGHUP: reload), sd_notify READY/STATUS/watchdog, socket-activated idle exit, periodic
 * maintenance (retention of records and local artifacts) and the decision to exit. */
#include <errno.h>
#include <gnutls/crypto.h>
#include <inttypes.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "executor.h"
#include "fs-util.h"
#include "gpu.h"
#include "log.h"
#include "protocol.h"
#include "strv.h"
#include "wake.h"
#include "worker.h"

int worker_arm_timer(Worker *w, sd_event_source **s, usec_t delay, sd_event_time_handler_t cb, void *userdata,
                     const char *description) {
        int k;
        if (*s) {
                k = sd_event_source_set_time_relative(*s, delay);
                if (k >= 0)
                        k = sd_event_source_set_enabled(*s, SD_EVENT_ONESHOT);
        } else {
                /* 1ms accuracy: the default (0 = 250ms slack) would delay every poll and heartbeat. */
                k = sd_event_add_time_relative(w->event, s, CLOCK_MONOTONIC, delay, USEC_PER_MSEC, cb, userdata);
                if (k >= 0)
                        (void) sd_event_source_set_description(*s, description);
        }
        if (k < 0)
                log_error_errno(k, "Cannot arm the %s timer: %m", description);
        return k;
}

usec_t worker_backoff(Worker *w, unsigned failures) {
        usec_t base = w->settings.poll_interval, cap = w->settings.backoff_max, d = base;
        uint32_t rnd = 0;

        for (unsigned i = 1; i < failures && d < cap; i++)
                d *= 2;
        d = MIN(d, cap);
        if (gnutls_rnd(GNUTLS_RND_NONCE, &rnd, sizeof(rnd)) < 0)
                rnd = (uint32_t) now_monotonic_usec();
        /* "Equal jitter": between half and all of the delay. */
        return d / 2 + (usec_t) ((double) (d / 2) * ((double) rnd / (double) UINT32_MAX));
}

size_t worker_n_finishing(Worker *w) {
        size_t n = 0;
        for (Run *r = w->finishing; r; r = r->next_finishing)
                n++;
        return n;
}

usec_t worker_start_timeout(const Worker *w) {
        usec_t t = w->settings.path_check_timeout;
        return w->watchdog > 0 ? MIN(t, w->watchdog / 3) : t;
}

/* Runs in slots and those out of them whose results are still being recorded. */
size_t worker_n_runs(Worker *w) {
        size_t n = worker_n_finishing(w);
        for (size_t i = 0; i < w->n_slots; i++)
                n += w->slots[i] != NULL;
        return n;
}

size_t worker_n_unrecorded(Worker *w) {
        size_t n = 0;
        for (Run *r = w->finishing; r; r = r->next_finishing)
                n += r->unrecorded != NULL;
        return n;
}

Run *worker_find_run(Worker *w, const char *job_id) {
        for (size_t i = 0; job_id && i < w->n_slots; i++)
                if (w->slots[i] && streq(w->slots[i]->spec->job_id, job_id))
                        return w->slots[i];
        return NULL;
}

static void add_held_job(Run *r, json_object *jobs, json_object *ids, void (*each)(Run *r, void *userdata),
                         void *userdata) {
        json_object *j = json_object_new_object();

        json_add_string(j, "job_id", r->spec->job_id);
        json_add_string(j, "assignment_id", r->spec->assignment_id);
        json_object_array_add(jobs, j);
        json_object_array_add(ids, json_object_new_string(r->spec->job_id));
        if (each)
                each(r, userdata);
}

/* Finishing runs too: the control plane takes back a job that a heartbeat or a reconnect does
 * not name, and a copy of large outputs to the shared directory may outlast a lease. */
size_t worker_add_held_jobs(Worker *w, json_object *o, void (*each)(Run *r, void *userdata), void *userdata) {
        json_object *jobs = json_object_new_array(), *ids = json_object_new_array();
        size_t n = 0;

        for (size_t i = 0; i < w->n_slots && n < LIMIT_RECONNECT_ENTRIES; i++)
                if (w->slots[i]) {
                        add_held_job(w->slots[i], jobs, ids, each, userdata);
                        n++;
                }
        for (Run *r = w->finishing; r && n < LIMIT_RECONNECT_ENTRIES; r = r->next_finishing) {
                add_held_job(r, jobs, ids, each, userdata);
                n++;
        }
        json_add_string(o, "current_job_id", json_object_get_string(json_object_array_get_idx(ids, 0)));
        json_object_object_add(o, "current_jobs", jobs);
        json_object_object_add(o, "current_job_ids", ids);
        return n;
}

/* A finishing run's process is gone, so the next job may have its slot while its outputs are
 * synced, hashed or copied: with short jobs the next claim and ack travel while the last result
 * is recorded, instead of after it. It still holds its lease and two descriptors until then, so
 * the runs, running and finishing, may be one more than the slots and no more: as many
 * descriptors as before, give or take a run's. Unbounded, a worker whose finalization is slow (a
 * hung share, a slow fsync, a huge output to hash) claimed job after job, each one more run to
 * finish and more descriptors held, until it ran out of them. */
bool worker_finishing_full(Worker *w) {
        return worker_n_runs(w) > w->n_slots;
}

/* A statvfs() per poll is cheap next to the request it may save. A state directory that cannot
 * be looked at counts as having room: the replay buffer says so itself when it cannot write. The
 * free space is noted even without a min-free-space, for the heartbeats. */
bool worker_disk_low(Worker *w) {
        uint64_t min = (uint64_t) w->settings.min_free_space;
        char free_text[32], min_text[32];
        struct statvfs sv;
        bool low = false;
        int error = 0; /* of statvfs() */

        if (statvfs(w->settings.state_directory, &sv) < 0) {
                error = -errno;
                w->disk_free_known = false;
        } else {
                w->disk_free = (uint64_t) sv.f_bavail * sv.f_frsize;
                w->disk_free_known = true;
                low = min > 0 && w->disk_free < min;
        }
        if (low == w->disk_low)
                return low;
        w->disk_low = low;
        format_bytes(free_text, sizeof(free_text), w->disk_free);
        if (low)
                log_warning("Only %s free in %s, less than min-free-space (%s): taking no new job until there is more.",
                            free_text, w->settings.state_directory, format_bytes(min_text, sizeof(min_text), min));
        else if (min == 0)
                log_notice("min-free-space is 0: taking jobs.");
        else if (error < 0)
                log_warning_errno(error, "Cannot look at the free space in %s (%m): taking jobs.",
                                  w->settings.state_directory);
        else
                log_notice("%s free in %s again: taking jobs.", free_text, w->settings.state_directory);
        worker_update_status(w);
        return low;
}

bool worker_checks_hung(Worker *w) {
        size_t n = preparer_n_hung(w->preparer);
        bool hung = n >= PREPARER_MAX_HUNG;

        if (hung == w->checks_hung)
                return hung;
        w->checks_hung = hung;
        if (hung)
                log_warning("The path checks of %zu jobs hang (a file system that does not answer?): taking no new "
                            "job until they return.",
                            n);
        else
                log_notice("Hung path checks returned: taking jobs.");
        worker_update_status(w);
        return hung;
}

const char *worker_no_new_work(Worker *w, char *buf, size_t size) {
        size_t unrecorded = worker_n_unrecorded(w);
        char free_text[32];

        if (unrecorded > 0)
                snprintf(buf, size, "%zu result(s) the replay buffer refused", unrecorded);
        else if (w->checks_hung)
                snprintf(buf, size, "%zu jobs' path checks hang (a file system that does not answer?)",
                         preparer_n_hung(w->preparer));
        else if (w->disk_low)
                snprintf(buf, size, "disk nearly full (%s free for the state directory)",
                         format_bytes(free_text, sizeof(free_text), w->disk_free));
        else
                return NULL;
        return buf;
}

int worker_free_slot(Worker *w) {
        if (worker_finishing_full(w))
                return -EBUSY;
        for (size_t i = 0; i < w->n_slots; i++)
                if (!w->slots[i])
                        return (int) i;
        return -EBUSY;
}

static void worker_send_status(Worker *w) {
        char jobs[512] = "", reason[128], held[160] = "", line[960];
        size_t off = 0, n = 0;
        int64_t pending = 0;
        const char *session = w->session == SESSION_READY ? "connected"
                              : w->session == SESSION_RECONNECTING ? "reconnecting" : "registering";

        for (size_t i = 0; i < w->n_slots; i++) {
                if (!w->slots[i])
                        continue;
                n++;
                if (off < sizeof(jobs) - 2) {
                        int k = snprintf(jobs + off, sizeof(jobs) - off, "%s%s", off ? " " : "", w->slots[i]->spec->job_id);
                        off += k > 0 ? (size_t) k : 0;
                }
        }
        (void) replay_count_pending(w->replay, &pending);
        if (worker_no_new_work(w, reason, sizeof(reason)))
                snprintf(held, sizeof(held), "; %s, no new work", reason);
        else if (worker_finishing_full(w))
                snprintf(held, sizeof(held), "; %zu job(s) finishing (outputs being synced or copied), no new work",
                         worker_n_finishing(w));
        snprintf(line, sizeof(line), "STATUS=%s%s jobs %zu/%zu%s%s; %lld result(s) to deliver%s; control plane %s",
                 w->stopping ? "Stopping; " : "", w->settings.dry_run ? "Dry run;" : "Running", n, w->n_slots,
                 n ? ": " : "", jobs, (long long) pending, held, session);
        (void) sd_notify(false, line);
        w->status_sent = now_monotonic_usec();
}

static int on_status_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        worker_send_status(userdata);
        return 0;
}

/* STATUS= changes several times per job; one datagram (and a count of the replay buffer) per
 * change was a noticeable part of a short job's cost, and of the service manager's. So at most
 * one per WORKER_STATUS_INTERVAL: the first change at once, later ones together at the end of
 * the interval, so the last state is always the one shown. */
void worker_update_status(Worker *w) {
        usec_t now = now_monotonic_usec();
        int enabled = SD_EVENT_OFF;

        if (w->status_timer && sd_event_source_get_enabled(w->status_timer, &enabled) >= 0 && enabled != SD_EVENT_OFF)
                return; /* already due */
        if (w->status_sent == 0 || now >= w->status_sent + WORKER_STATUS_INTERVAL) {
                worker_send_status(w);
                return;
        }
        if (worker_arm_timer(w, &w->status_timer, w->status_sent + WORKER_STATUS_INTERVAL - now, on_status_timer, w,
                             "status") < 0)
                worker_send_status(w);
}

static int on_idle_timer(sd_event_source *s, uint64_t usec, void *userdata);

void worker_mark_busy(Worker *w) {
        w->busy_until = now_monotonic_usec();
        if (w->socket_activated && w->settings.idle_exit > 0)
                (void) worker_arm_timer(w, &w->idle_timer, w->settings.idle_exit, on_idle_timer, w, "idle-exit");
}

static int on_idle_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Worker *w = userdata;
        int64_t pending = 0;

        (void) replay_count_pending(w->replay, &pending);
        if (worker_n_runs(w) > 0 || pending > 0 || w->stopping) {
                worker_mark_busy(w);
                return 0;
        }
        log_info("Idle for %s after socket activation; exiting until the next wake-up.",
                 format_timespan((char[64]){}, 64, w->settings.idle_exit));
        (void) sd_notify(false, "STOPPING=1\nSTATUS=Idle, exiting");
        return sd_event_exit(w->event, 0);
}

void worker_check_exit(Worker *w) {
        int64_t pending = 0;

        if (!w->stopping || worker_n_runs(w) > 0)
                return;
        (void) replay_count_pending(w->replay, &pending);
        if (pending > 0 && w->session == SESSION_READY && !w->stop_flush_tried) {
                session_flush(w); /* one delivery attempt before leaving; what fails stays buffered */
                if (w->flush_request)
                        return;
        }
        if (pending > 0)
                log_notice("%lld result(s) stay in the replay buffer for the next start.", (long long) pending);
        (void) sd_event_exit(w->event, w->exit_code);
}

static void worker_begin_stop(Worker *w) {
        if (w->stopping && w->stop_mode == STOP_MODE_WAIT) {
                log_notice("Second stop request: handing back the running jobs.");
                w->stop_mode = STOP_MODE_HANDBACK;
        } else if (w->stopping)
                return;
        w->stopping = true;
        (void) sd_notify(false, "STOPPING=1");
        log_info("Stopping (stop-mode=%s): no new work.", stop_mode_to_string(w->stop_mode));
        if (w->poll_timer)
                (void) sd_event_source_set_enabled(w->poll_timer, SD_EVENT_OFF);
        client_request_cancel(w->poll_request);
        w->poll_request = NULL;
        for (size_t i = 0; i < w->n_slots; i++) {
                Run *r = w->slots[i];
                if (!r)
                        continue;
                if (w->stop_mode == STOP_MODE_HANDBACK)
                        run_stop(r, STOP_HANDBACK, "handed back: the worker is stopping (stop-mode=handback)");
                /* Not started yet: a wait-mode stop starts nothing new. */
                else if (r->phase == RUN_ACKING || r->phase == RUN_PREPARING)
                        run_stop(r, STOP_HANDBACK, "handed back: the worker is stopping before it started");
        }
        for (Run *r = w->finishing, *next; r; r = next) {
                next = r->next_finishing;
                if (r->unrecorded)
                        run_record_again(r);
        }
        worker_update_status(w);
        worker_check_exit(w);
}

static int on_sigterm(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        worker_begin_stop(userdata);
        return 0;
}

static int worker_load_token(Worker *w) {
        _cleanup_free_ char *token = NULL;
        int k = read_secret_file(w->settings.token_file, &token);
        if (k < 0)
                return log_error_errno(k, "Failed to read the worker token from %s: %m", w->settings.token_file);
        k = client_set_token(w->client, token, w->settings.worker_id, w->settings.signed_tokens,
                             w->settings.signed_token_lifetime);
        if (k < 0)
                return log_error_errno(k, "Failed to set up the worker token: %m");
        if (w->token)
                explicit_bzero(w->token, strlen(w->token));
        free_and_replace_str(&w->token, TAKE_PTR(token));
        return 0;
}

static void settings_keep(char **new_value, char **old_value, const char *name) {
        if (!streq_ptr(*new_value, *old_value))
                log_warning("Changing %s needs a restart; keeping %s.", name, strna(*old_value));
        char *t = *new_value;
        *new_value = *old_value;
        *old_value = t;
}

static int worker_setup_capability_list(Worker *w);

static int worker_reload(Worker *w) {
        WorkerSettings n = {};
        bool caps_changed;
        int k;

        (void) sd_notify(false, "RELOADING=1");
        k = worker_settings_load(&n, w->argc, w->argv);
        if (k != 0) {
                worker_settings_free(&n);
                (void) sd_notify(false, "READY=1");
                return log_error_errno(k < 0 ? k : -EINVAL, "Reload failed; keeping the running configuration.");
        }
        settings_keep(&n.worker_id, &w->settings.worker_id, "worker-id");
        settings_keep(&n.state_directory, &w->settings.state_directory, "state-directory");
        settings_keep(&n.control_url, &w->settings.control_url, "control-url");
        settings_keep(&n.wake_listen, &w->settings.wake_listen, "wake-listen");
        settings_keep(&n.job_cgroups, &w->settings.job_cgroups, "job-cgroups");
        n.slots = w->settings.slots;
        caps_changed = !strv_equal(n.capabilities, w->settings.capabilities);
        worker_settings_free(&w->settings);
        w->settings = n;
        log_set_max_level(log_level_from_string(w->settings.log_level));
        client_set_timeout(w->client, w->settings.request_timeout);
        k = client_set_tls(w->client, w->settings.ca_file, w->settings.tls_certificate, w->settings.tls_key);
        if (k < 0)
                log_warning_errno(k, "Cannot apply the new TLS settings; keeping the old ones: %m");
        w->stop_mode = stop_mode_from_string(w->settings.stop_mode);
        w->backend = artifact_backend_from_string(w->settings.artifact_backend);
        (void) worker_load_token(w);
        if (caps_changed) {
                k = worker_setup_capability_list(w);
                if (k < 0)
                        log_warning_errno(k, "Cannot apply the new capabilities: %m");
                else
                        session_lost_registration(w); /* register again to announce them */
        }
        log_info("Configuration reloaded.");
        (void) sd_notify(false, "READY=1");
        worker_update_status(w);
        session_poll_now(w); /* a changed min-free-space, say, may let it take work at once */
        return 0;
}

static int on_sighup(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        (void) worker_reload(userdata);
        return 0;
}

/* A job's local artifacts are needed while the worker holds it in any phase: in a slot, or out of
 * it while the finisher thread renames, fsyncs and copies them (w->finishing, which
 * worker_find_run() does not look at); and while its result waits in the replay buffer. */
static bool keep_artifacts(const char *job_id, void *userdata) {
        Worker *w = userdata;

        if (worker_find_run(w, job_id))
                return true;
        for (Run *r = w->finishing; r; r = r->next_finishing)
                if (streq(r->spec->job_id, job_id))
                        return true;
        return replay_has_pending_job(w->replay, job_id) != 0;
}

int worker_prune(Worker *w, usec_t now) {
        usec_t cutoff = now > w->settings.log_retention ? now - w->settings.log_retention : 0;
        int k;

        if (w->settings.log_retention == 0) /* keep for ever, as the control plane's retention 0 does */
                return 0;

        k = replay_prune(w->replay, cutoff);
        if (k < 0)
                log_warning_errno(k, "Pruning the replay buffer failed: %m");
        return artifacts_cleanup(w->settings.state_directory, cutoff, keep_artifacts, w);
}

static int on_maintenance(sd_event_source *s, uint64_t usec, void *userdata) {
        Worker *w = userdata;
        int k;

        k = worker_prune(w, now_realtime_usec());
        if (k < 0)
                log_warning_errno(k, "Removing old artifact directories failed: %m");
        if (k > 0)
                log_info("Removed %d artifact director%s older than the log retention.", k, k == 1 ? "y" : "ies");
        (void) worker_arm_timer(w, &w->maintenance_timer, CLAMP(w->settings.log_retention / 10, USEC_PER_MINUTE,
                                                                USEC_PER_HOUR),
                                on_maintenance, w, "maintenance");
        return 0;
}

/* Runs an earlier process of this worker left running (crash, power cut) are over: kill what
 * is left of them and record that their end is unknown. The control plane learns of it from the
 * new instance id (their jobs become LOST there). */
static void worker_reap_orphans(Worker *w) {
        OrphanRun *orphans = NULL;
        size_t n = 0;

        if (replay_list_orphans(w->replay, w->instance_id, &orphans, &n) < 0)
                return;
        for (size_t i = 0; i < n; i++) {
                int killed = executor_kill_orphan_group(orphans[i].pid, orphans[i].proc_start);
                log_notice("Run %lld of an earlier worker process was interrupted%s.", (long long) orphans[i].id,
                           killed > 0 ? "; killed what was left of it" : "");
                (void) replay_run_end(w->replay, orphans[i].id, killed > 0 ? now_realtime_usec() : 0, "interrupted",
                                      -1, "the worker restarted while the job ran");
        }
        free(orphans);
}

static int worker_setup_identity(Worker *w) {
        _cleanup_free_ char *db = NULL;
        int k;

        k = mkdir_parents_and_self(w->settings.state_directory, 0700);
        if (k < 0)
                return log_error_errno(k, "Cannot create the state directory %s: %m", w->settings.state_directory);
        k = directory_writable(w->settings.state_directory);
        if (k < 0)
                return log_error_errno(k, "Cannot write to the state directory %s: %m", w->settings.state_directory);
        if (asprintf(&db, "%s/worker.db", w->settings.state_directory) < 0)
                return log_oom();
        k = replay_open(db, &w->replay);
        if (k < 0)
                return k;
        k = replay_get_nonce(w->replay, &w->nonce);
        if (k < 0)
                return log_error_errno(k, "Cannot read or create the registration nonce: %m");
        k = random_id(w->instance_id);
        if (k < 0)
                return log_error_errno(k, "Cannot create an instance id: %m");
        return 0;
}

/* The configured capabilities, and "gpu" when the slots have GPUs. */
static int worker_setup_capability_list(Worker *w) {
        _cleanup_strv_free_ char **caps = strv_copy(w->settings.capabilities);

        if (w->settings.capabilities && !caps)
                return -ENOMEM;
        if (strv_length(w->gpus) > 0 && !strv_contains(caps, "gpu") && strv_extend(&caps, "gpu") < 0)
                return -ENOMEM;
        strv_free(w->capabilities);
        w->capabilities = TAKE_PTR(caps);
        return 0;
}

/* An operator who restricts the worker's GPUs with Environment=CUDA_VISIBLE_DEVICES= means its
 * jobs: the slots share out what it names instead of every GPU detected, and when it names none,
 * the jobs get it as it is, so that CUDA hides the GPUs from them too. */
static int worker_setup_inherited_gpus(Worker *w, const char *visible) {
        const char *stopped_at;
        int k = gpu_parse_visible(visible, &w->gpus, &stopped_at);

        if (k < 0)
                return log_oom();
        if (stopped_at)
                log_notice("CUDA_VISIBLE_DEVICES=%s: CUDA sees no GPU from '%s' on; neither do the slots.", visible,
                           stopped_at);
        if (strv_length(w->gpus) == 0) {
                w->gpus_hidden = strdup(visible);
                if (!w->gpus_hidden)
                        return log_oom();
                log_info("CUDA_VISIBLE_DEVICES=%s in the worker's environment names no GPU: jobs get it as it is.",
                         visible);
        } else
                log_info("Slots get the %zu GPUs of the worker's CUDA_VISIBLE_DEVICES=%s.", strv_length(w->gpus),
                         visible);
        return 0;
}

static int worker_setup_capabilities(Worker *w) {
        const char *visible = getenv("CUDA_VISIBLE_DEVICES");
        int k;

        if (!w->settings.gpus && visible)
                k = worker_setup_inherited_gpus(w, visible);
        else
                k = gpu_detect(w->settings.gpus, "/dev", w->settings.nvidia_smi, &w->gpus);
        if (k < 0)
                return k;
        /* --gpus=none gives the jobs no GPU: CUDA is told so, or they would see every GPU. */
        if (w->settings.gpus && !w->gpus) {
                w->gpus_hidden = strdup("-1");
                if (!w->gpus_hidden)
                        return log_oom();
        }
        /* Slot i gets GPU i % n and there are at most LIMIT_GPUS slots: the rest would go unused,
         * and the control plane takes no longer a list at registration. */
        size_t n = strv_length(w->gpus);
        if (n > LIMIT_GPUS) {
                log_notice("%zu GPUs: the slots use the first %d.", n, LIMIT_GPUS);
                for (size_t i = LIMIT_GPUS; i < n; i++) {
                        free(w->gpus[i]);
                        w->gpus[i] = NULL;
                }
        }
        k = worker_setup_capability_list(w);
        return k < 0 ? log_oom() : 0;
}

/* entropy-keeper, started now rather than at the first job: a worker that cannot run jobs says
 * so when it starts. */
static int worker_setup_executor(Worker *w) {
        _cleanup_strv_free_ char **env = NULL;
        _cleanup_free_ char *path = NULL;
        int k = executor_find_keeper(&path);

        if (k >= 0)
                k = executor_build_env(environ, w->token, NULL, &env);
        if (k < 0)
                return log_oom();
        k = executor_new(path, env, &w->executor);
        if (k < 0)
                return log_error_errno(k, "Cannot start %s: %m", path);
        executor_set_other_child(w->executor, host_metrics_is_probe, w->host_metrics);
        k = executor_attach_event(w->executor, w->event);
        if (k < 0)
                return log_error_errno(k, "Cannot watch %s: %m", path);
        log_debug("Jobs start through %s (pid %d).", path, (int) executor_keeper_pid(w->executor));
        return 0;
}

/* Before any job starts: what an earlier process of this worker left in job cgroups goes. */
static int worker_setup_cgroups(Worker *w) {
        int k = job_cgroups_open(job_cgroups_mode_from_string(w->settings.job_cgroups), w->event, &w->cgroups);

        if (k < 0)
                return k;
        k = job_cgroups_sweep(w->cgroups);
        if (k < 0)
                log_warning_errno(k, "Cannot look for the job cgroups of an earlier worker process: %m");
        return 0;
}

static int worker_setup_loop(Worker *w) {
        int k;

        k = sd_event_default(&w->event);
        if (k < 0)
                return log_error_errno(k, "Cannot create the event loop: %m");
        k = sd_event_add_signal(w->event, NULL, SIGTERM, on_sigterm, w);
        if (k >= 0)
                k = sd_event_add_signal(w->event, NULL, SIGINT, on_sigterm, w);
        if (k >= 0)
                k = sd_event_add_signal(w->event, NULL, SIGHUP, on_sighup, w);
        if (k < 0)
                return log_error_errno(k, "Cannot watch signals: %m");
        k = sd_event_set_watchdog(w->event, true);
        if (k < 0)
                log_warning_errno(k, "Cannot enable the watchdog: %m");
        if (k <= 0 || sd_watchdog_enabled(false, &w->watchdog) <= 0)
                w->watchdog = 0;
        k = finisher_new(w->event, &w->finisher);
        if (k < 0)
                return log_error_errno(k, "Cannot start the artifact thread: %m");
        k = preparer_new(w->event, &w->preparer);
        if (k < 0)
                return log_error_errno(k, "Cannot set up the job checks: %m");
        k = client_new(w->event, w->settings.control_url, &w->client);
        if (k < 0)
                return log_error_errno(k, "Cannot create the HTTP client: %m");
        client_set_timeout(w->client, w->settings.request_timeout);
        k = client_set_tls(w->client, w->settings.ca_file, w->settings.tls_certificate, w->settings.tls_key);
        if (k < 0)
                return log_error_errno(k, "Cannot set up TLS for the HTTP client: %m");
        return 0;
}

int worker_new(int argc, char **argv, Worker **ret) {
        Worker *w;
        int k;

        w = calloc(1, sizeof(*w));
        if (!w)
                return log_oom();
        w->argc = argc;
        w->argv = argv;
        k = worker_settings_load(&w->settings, argc, argv);
        if (k == 0) {
                log_set_max_level(log_level_from_string(w->settings.log_level));
                w->stop_mode = stop_mode_from_string(w->settings.stop_mode);
                w->backend = artifact_backend_from_string(w->settings.artifact_backend);
                w->n_slots = (size_t) w->settings.slots;
                w->slots = calloc(w->n_slots, sizeof(Run *));
                k = w->slots ? 0 : log_oom();
        }
        if (k == 0)
                k = worker_setup_loop(w);
        if (k == 0)
                k = worker_load_token(w);
        if (k == 0)
                k = worker_setup_identity(w);
        if (k == 0)
                k = worker_setup_capabilities(w);
        if (k == 0) {
                k = host_metrics_new(w->event, w->settings.nvidia_smi, w->settings.gpu_metrics_interval,
                                     &w->host_metrics);
                if (k < 0)
                        log_error_errno(k, "Cannot set up host metrics: %m");
        }
        /* Also in a dry run: a reload may end it. */
        if (k == 0)
                k = worker_setup_executor(w);
        if (k == 0)
                k = worker_setup_cgroups(w);
        if (k == 0)
                k = wake_setup(w);
        if (k != 0) {
                worker_free(w);
                return k;
        }
        worker_reap_orphans(w);
        *ret = w;
        return 0;
}

Worker *worker_free(Worker *w) {
        if (!w)
                return NULL;
        /* Exiting before their artifacts were final (a fatal error): nothing was recorded, the
         * jobs run again elsewhere. */
        w->finisher = finisher_free(w->finisher);
        while (w->finishing) {
                Run *r = w->finishing;
                w->finishing = r->next_finishing;
                run_free(r);
        }
        for (size_t i = 0; i < w->n_slots; i++)
                if (w->slots[i]) {
                        /* Exiting with jobs still running (a fatal error): they must not outlive us. */
                        if (w->slots[i]->pid > 0)
                                run_signal(w->slots[i], SIGKILL);
                        run_free(w->slots[i]);
                }
        free(w->slots);
        w->preparer = preparer_free(w->preparer);
        executor_free(w->executor);
        job_cgroups_free(w->cgroups);
        wake_close(w);
        sd_event_source_disable_unref(w->session_timer);
        sd_event_source_disable_unref(w->poll_timer);
        sd_event_source_disable_unref(w->flush_timer);
        sd_event_source_disable_unref(w->heartbeat_timer);
        sd_event_source_disable_unref(w->idle_timer);
        sd_event_source_disable_unref(w->maintenance_timer);
        sd_event_source_disable_unref(w->status_timer);
        client_free(w->client);
        host_metrics_free(w->host_metrics);
        replay_close(w->replay);
        sd_event_unref(w->event);
        if (w->token)
                explicit_bzero(w->token, strlen(w->token));
        free(w->token);
        free(w->nonce);
        strv_free(w->capabilities);
        strv_free(w->gpus);
        free(w->gpus_hidden);
        worker_settings_free(&w->settings);
        free(w);
        return NULL;
}

int worker_run(Worker *w) {
        _cleanup_free_ char *caps = strv_join(w->capabilities, ",");
        int k;

        log_info("Worker %s starting: %zu slot(s), capabilities [%s], control plane %s%s.", w->settings.worker_id,
                 w->n_slots, strempty(caps), w->settings.control_url, w->settings.dry_run ? ", DRY RUN" : "");
        session_start(w);
        worker_mark_busy(w);
        (void) worker_arm_timer(w, &w->maintenance_timer, 10 * USEC_PER_SEC, on_maintenance, w, "maintenance");
        (void) sd_notify(false, "READY=1");
        worker_update_status(w);
        k = sd_event_loop(w->event);
        if (k < 0)
                return log_error_errno(k, "Event loop failed: %m");
        return k;
}
