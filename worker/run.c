/* run.c: one job on one slot, from the claim to the recorded result:
 *
 *   claim (GET /next-job answered) -> POST /ack (meanwhile: the policy on a thread, artifact files) -> start
 *   -> exit -> finishing (artifacts made durable on the finisher's thread) -> result
 *
 * A finishing run is out of its slot, and the next job is asked for as it leaves it; the runs,
 * running and finishing, are at most one more than the slots (worker_free_slot).
 *
 * A result is committed to the replay buffer before it is sent (session_flush). A run stopped
 * because the control plane says the job is not ours any more (abort, reassignment) produces no
 * result: there is nothing it could apply. */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "executor.h"
#include "gpu.h"
#include "json-util.h"
#include "log.h"
#include "policy.h"
#include "protocol.h"
#include "strv.h"
#include "worker.h"

extern char **environ;

JobSpec *job_spec_free(JobSpec *s) {
        if (!s)
                return NULL;
        free(s->job_id);
        free(s->assignment_id);
        free(s->command);
        strv_free(s->args);
        free(s->working_dir);
        free(s);
        return NULL;
}

static int dup_field(json_object *o, const char *key, size_t max, bool required, char **ret, JsonError *err) {
        const char *s = NULL;
        int r = json_get_string(o, key, max, required, &s, err);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

int job_spec_from_json(json_object *o, JobSpec **ret, char *error, size_t error_size) {
        JobSpec *s;
        JsonError err = {};
        int r;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        r = dup_field(o, "job_id", LIMIT_ID_LEN, true, &s->job_id, &err);
        if (r >= 0)
                r = dup_field(o, "assignment_id", LIMIT_ID_LEN, true, &s->assignment_id, &err);
        if (r >= 0)
                r = dup_field(o, "command", LIMIT_COMMAND_LEN, true, &s->command, &err);
        if (r >= 0)
                r = dup_field(o, "working_dir", LIMIT_PATH_LEN, false, &s->working_dir, &err);
        if (r >= 0) {
                r = json_get_strv(o, "args", LIMIT_ARGS, LIMIT_ARG_LEN, false, &s->args, &err);
                r = r == -ENOENT ? 0 : r;
        }
        if (r >= 0) {
                r = json_get_int64(o, "timeout_ms", 0, INT64_MAX / 1000, false, &s->timeout_ms, &err);
                r = r == -ENOENT ? 0 : r;
        }
        if (r >= 0) {
                r = json_get_int64(o, "attempt_count", 0, INT32_MAX, false, &s->attempt, &err);
                r = r == -ENOENT ? 0 : r;
        }
        if (r >= 0) {
                r = json_get_int64(o, "max_attempts", 0, INT32_MAX, false, &s->max_attempts, &err);
                r = r == -ENOENT ? 0 : r;
        }
        if (r >= 0) {
                r = json_get_double(o, "assignment_expires_at", false, &s->expires_at, &err);
                r = r == -ENOENT ? 0 : r;
        }
        if (r >= 0) {
                r = json_get_int64(o, "lease_timeout_ms", 1, INT32_MAX, false, &s->lease_timeout_ms, &err);
                r = r == -ENOENT ? 0 : r;
        }
        if (r >= 0 && isempty(s->command)) {
                snprintf(err.message, sizeof(err.message), "field 'command' is empty");
                r = -EINVAL;
        }
        if (r < 0) {
                snprintf(error, error_size, "%s", err.message);
                job_spec_free(s);
                return r;
        }
        *ret = s;
        return 0;
}

static UnrecordedResult *unrecorded_free(UnrecordedResult *u) {
        if (!u)
                return NULL;
        json_object_put(u->body);
        free(u->outcome);
        free(u->reason);
        free(u);
        return NULL;
}

static UnrecordedResult *unrecorded_new(ResultKind kind, json_object *body, const char *outcome, int64_t exit_code,
                                        const char *reason) {
        UnrecordedResult *u = calloc(1, sizeof(*u));
        if (!u)
                return NULL;
        *u = (UnrecordedResult){kind, json_object_get(body), strdup(outcome), reason ? strdup(reason) : NULL,
                                exit_code};
        if (!u->outcome || (reason && !u->reason))
                return unrecorded_free(u);
        return u;
}

Run *run_free(Run *r) {
        if (!r)
                return NULL;
        sd_event_source_disable_unref(r->child_source);
        sd_event_source_disable_unref(r->timeout_timer);
        sd_event_source_disable_unref(r->kill_timer);
        sd_event_source_disable_unref(r->lease_timer);
        sd_event_source_disable_unref(r->ack_timer);
        sd_event_source_disable_unref(r->record_timer);
        unrecorded_free(r->unrecorded);
        client_request_cancel(r->ack_request);
        executor_start_cancel(r->worker->executor, r->start);
        preparation_abandon(r->worker->preparer, r->preparation, false);
        sd_event_source_disable_unref(r->prepare_timer);
        /* A run that ends here rather than in on_child_exit (its start failed, the worker exits). */
        job_cgroup_release(r->worker->cgroups, r->cgroup_id);
        /* Prepared for a start that never came (the ack refused, the job given up): no run, no
         * files. */
        if (r->phase == RUN_ACKING || r->phase == RUN_PREPARING)
                artifacts_discard(r->artifacts);
        artifacts_free(r->artifacts);
        free(r->exec_path);
        free(r->workdir);
        free(r->policy_reason);
        job_spec_free(r->spec);
        free(r->stop_detail);
        free(r);
        return NULL;
}

static void run_hold_unrecorded(Run *r);

void run_signal(Run *r, int sig) {
        (void) executor_signal_group(r->pid, sig);
        (void) job_cgroup_signal(r->worker->cgroups, r->cgroup_id, r->pid, sig);
}

/* Frees the run and its slot, then lets the worker take new work (or finish stopping). A run whose
 * result could not be recorded is kept instead (run_hold_unrecorded). */
static void run_release(Run *r) {
        Worker *w = r->worker;
        if (r->slot < w->n_slots && w->slots[r->slot] == r)
                w->slots[r->slot] = NULL;
        if (r->unrecorded)
                run_hold_unrecorded(r);
        else
                run_free(r);
        worker_mark_busy(w);
        worker_update_status(w);
        session_poll_now(w);
        worker_check_exit(w);
}

static json_object *result_base(Run *r) {
        Worker *w = r->worker;
        json_object *o = json_object_new_object();
        json_add_string(o, "job_id", r->spec->job_id);
        json_add_string(o, "worker_id", w->settings.worker_id);
        json_add_string(o, "assignment_id", r->spec->assignment_id);
        json_add_string(o, "instance_id", w->instance_id);
        json_add_int64(o, "attempt", r->spec->attempt);
        if (r->started_real)
                json_add_time(o, "started_at", r->started_real);
        json_add_time(o, "finished_at", r->exited_real ? r->exited_real : now_realtime_usec());
        return o;
}

/* Commits the result to the replay buffer, then hands it to the delivery loop. */
static void run_record_result(Run *r, ResultKind kind, json_object *body, const char *outcome, int64_t exit_code,
                              const char *reason) {
        Worker *w = r->worker;
        int64_t seq;
        int k;

        k = replay_add_result(w->replay, r->run_id, kind, r->spec->job_id, r->spec->assignment_id, body,
                              r->exited_real ? r->exited_real : now_realtime_usec(), outcome, exit_code, reason,
                              &seq);
        if (k >= 0) {
                log_info("Job %s (assignment %s): %s recorded (completion seq %lld)%s%s", r->spec->job_id,
                         r->spec->assignment_id, outcome, (long long) seq, reason ? ": " : "", strempty(reason));
                session_flush(w);
                return;
        }
        /* Sent unrecorded, a crash before its delivery would lose it unnoticed: it is kept in
         * memory and recorded when the buffer takes it again (a full disk freed). Stopping, there
         * is no later: the job runs again when its lease runs out. */
        if (!w->stopping)
                r->unrecorded = unrecorded_new(kind, body, outcome, exit_code, reason);
        if (r->unrecorded)
                log_error_errno(k,
                                "Job %s: cannot record its result (%s) in the replay buffer: %m; holding the job "
                                "and trying again.",
                                r->spec->job_id, outcome);
        else
                log_error_errno(k,
                                "Job %s: cannot record its result (%s) in the replay buffer: %m; it is lost, the "
                                "job runs again when its lease runs out.",
                                r->spec->job_id, outcome);
}

static int on_record_timer(sd_event_source *s, uint64_t usec, void *userdata);
static void run_detach(Run *r);

/* Out of its slot but still held: heartbeats renew its lease and its artifacts are kept, while
 * the worker takes no new work (session.c: may_poll), whose result would not fit either. */
static void run_hold_unrecorded(Run *r) {
        run_detach(r);
        (void) worker_arm_timer(r->worker, &r->record_timer, worker_backoff(r->worker, ++r->record_failures),
                                on_record_timer, r, "record-retry");
}

static void finishing_remove(Run *r);

/* Once more; when stopping this is the last try. */
void run_record_again(Run *r) {
        UnrecordedResult *u = TAKE_PTR(r->unrecorded);

        finishing_remove(r);
        run_record_result(r, u->kind, u->body, u->outcome, u->exit_code, u->reason);
        unrecorded_free(u);
        run_release(r);
}

static int on_record_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        run_record_again(userdata);
        return 0;
}

static void run_fail(Run *r, const char *kind, bool retryable, int64_t exit_code, const char *outcome,
                     const char *error) {
        json_object *body = result_base(r);
        json_add_int64(body, "exit_code", exit_code);
        json_add_string(body, "error", error);
        json_add_bool(body, "retryable", retryable);
        json_add_string(body, "failure_kind", kind);
        if (r->stop_reason == STOP_HANDBACK)
                json_add_bool(body, "handback", true);
        if (r->artifacts && r->artifacts->finalized)
                artifacts_add_json(r->artifacts, r->spec->assignment_id, body);
        if (r->run_id == 0) {
                RunRecord rec = { r->spec->job_id, r->spec->assignment_id, r->spec->attempt, (int64_t) r->slot,
                                  r->worker->instance_id, now_realtime_usec() };
                (void) replay_run_begin(r->worker->replay, &rec, &r->run_id);
        }
        run_record_result(r, RESULT_FAIL, body, outcome, exit_code, error);
        json_object_put(body);
}

static void run_complete(Run *r, int64_t exit_code, const char *summary, const char *outcome, bool dry_run) {
        json_object *body = result_base(r);
        json_add_int64(body, "exit_code", exit_code);
        json_add_string(body, "result_summary", summary);
        if (dry_run)
                json_add_bool(body, "dry_run", true);
        artifacts_add_json(r->artifacts, r->spec->assignment_id, body);
        run_record_result(r, RESULT_COMPLETE, body, outcome, exit_code, NULL);
        json_object_put(body);
}

static const char *stop_outcome(StopReason reason) {
        switch (reason) {
        case STOP_TIMEOUT:
                return "timeout";
        case STOP_LEASE:
                return "lease-expired";
        case STOP_ABORT:
                return "aborted";
        case STOP_HANDBACK:
                return "handback";
        default:
                return "failed";
        }
}

/* finalized: what finalizing the artifacts returned. */
static void run_report_exit(Run *r, const siginfo_t *si, int finalized) {
        char summary[512], err[1024], how[256];
        double secs = (double) (r->exited_mono - r->started_mono) / USEC_PER_SEC;
        bool signaled = si->si_code != CLD_EXITED;
        int64_t exit_code = signaled ? 128 + si->si_status : si->si_status;

        if (finalized < 0) {
                snprintf(err, sizeof(err), "could not finalize stdout/stderr in %s: %s", r->artifacts->dir,
                         artifacts_strerror(finalized));
                run_fail(r, "artifacts", true, exit_code, "failed", err);
                return;
        }
        if (r->worker->backend == ARTIFACT_BACKEND_SHARED && streq(r->artifacts->upload_state, "failed"))
                log_warning("Job %s: shared artifact copy failed, reporting local files: %s", r->spec->job_id,
                            strna(r->artifacts->upload_error));
        if (r->stop_reason != STOP_NONE) {
                snprintf(err, sizeof(err), "%s", strempty(r->stop_detail));
                run_fail(r, stop_outcome(r->stop_reason), true, exit_code, stop_outcome(r->stop_reason), err);
                return;
        }
        if (signaled)
                snprintf(how, sizeof(how), "killed by signal %s after %.3fs", strsignal(si->si_status), secs);
        else
                snprintf(how, sizeof(how), "exited with status %d after %.3fs", si->si_status, secs);
        /* Before the exit status: a job past its limit may have taken the failed write and exited 0. */
        if (artifacts_output_limit_error(r->artifacts, signaled && si->si_status == SIGXFSZ, how, err, sizeof(err)) >
            0) {
                run_fail(r, "output-limit", true, exit_code, "failed", err);
                return;
        }
        if (!signaled && si->si_status == 0) {
                snprintf(summary, sizeof(summary), "exit 0 after %.3fs; stdout %llu bytes, stderr %llu bytes", secs,
                         (unsigned long long) r->artifacts->out.size, (unsigned long long) r->artifacts->err.size);
                run_complete(r, 0, summary, "exited", false);
                return;
        }
        run_fail(r, signaled ? "signal" : "exit", true, exit_code, "failed", how);
}

static void finishing_remove(Run *r) {
        for (Run **p = &r->worker->finishing; *p; p = &(*p)->next_finishing)
                if (*p == r) {
                        *p = r->next_finishing;
                        return;
                }
}

/* On the event loop, once the finisher has made the artifacts durable (or failed to). */
static void on_artifacts_final(void *userdata, int result) {
        Run *r = userdata;

        finishing_remove(r);
        run_report_exit(r, &r->exit_info, result);
        run_release(r);
}

/* Out of its slot: the process is gone, what is left is recording it, and it counts among the
 * finishing runs until then (worker_free_slot). Nothing may signal the group any more (its number
 * is free for reuse). */
static void run_detach(Run *r) {
        Worker *w = r->worker;

        r->timeout_timer = sd_event_source_disable_unref(r->timeout_timer);
        r->kill_timer = sd_event_source_disable_unref(r->kill_timer);
        r->lease_timer = sd_event_source_disable_unref(r->lease_timer);
        if (r->slot < w->n_slots && w->slots[r->slot] == r)
                w->slots[r->slot] = NULL;
        r->phase = RUN_FINISHING;
        r->next_finishing = w->finishing;
        w->finishing = r;
}

/* How long the copy of a run's outputs to the shared directory may take (more for large ones, see
 * finisher.h) before the local files are reported instead: a slow share gets several leases, a
 * hung one holds the job, its slot and its lease no longer than that. */
static usec_t run_copy_timeout(const Run *r) {
        return 4 * r->lease_length;
}

static int on_child_exit(sd_event_source *s, const siginfo_t *si, void *userdata) {
        Run *r = userdata;
        Worker *w = r->worker;
        int k;

        /* Whatever the job left behind in its group or its cgroup goes with it: nothing of a
         * finished run may keep writing to its files or run on past its lease. */
        (void) executor_signal_group(r->pid, SIGKILL);
        job_cgroup_release(w->cgroups, r->cgroup_id);
        r->cgroup_id = 0;
        /* sd-event reaps the job only when this callback returns: its group number is still ours. */
        executor_forget(w->executor, r->pid);
        r->child_source = sd_event_source_disable_unref(r->child_source);
        r->exited_real = now_realtime_usec();
        r->exited_mono = now_monotonic_usec();
        if (r->stop_reason == STOP_ABORT) {
                log_info("Job %s (assignment %s) stopped: %s", r->spec->job_id, r->spec->assignment_id,
                         strempty(r->stop_detail));
                (void) replay_run_end(w->replay, r->run_id, r->exited_real, "aborted",
                                      si->si_code == CLD_EXITED ? si->si_status : 128 + si->si_status,
                                      r->stop_detail);
                run_release(r);
                return 0;
        }
        /* Its artifacts are fsynced (and copied) on the finisher's thread; its result is
         * recorded (and sent) when they are durable. Meanwhile its slot asks for the next job,
         * unless another run is finishing already (worker_free_slot). */
        r->exit_info = *si;
        run_detach(r);
        worker_update_status(w);
        k = finisher_submit(w->finisher, r->artifacts,
                            w->backend == ARTIFACT_BACKEND_SHARED ? w->settings.shared_directory : NULL,
                            r->spec->job_id, r->spec->assignment_id, run_copy_timeout(r), on_artifacts_final, r);
        if (k < 0)
                on_artifacts_final(r, k);
        else
                session_poll_now(w);
        return 0;
}

static int on_kill_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Run *r = userdata;
        log_warning("Job %s did not exit after SIGTERM, sending SIGKILL to its process group%s.", r->spec->job_id,
                    r->cgroup_id ? " and its cgroup" : "");
        run_signal(r, SIGKILL);
        return 0;
}

/* Whether the SIGKILL of a stopping run is due later than `grace` from now (or not at all). */
static bool kill_due_after(Run *r, usec_t grace) {
        uint64_t due;
        int enabled;

        if (!r->kill_timer || sd_event_source_get_enabled(r->kill_timer, &enabled) < 0 || enabled == SD_EVENT_OFF ||
            sd_event_source_get_time(r->kill_timer, &due) < 0)
                return true;
        return due > now_monotonic_usec() + grace;
}

void run_stop(Run *r, StopReason reason, const char *detail) {
        Worker *w = r->worker;
        usec_t grace = w->settings.kill_grace;

        if (r->phase == RUN_ACKING && reason == STOP_HANDBACK && r->ack_request) {
                /* The control plane may have taken the ack already (the job RUNNING there): its
                 * answer says whether there is a job to hand back (on_ack), rather than leaving it
                 * to run out its lease and lose an attempt. */
                log_info("Job %s will not start: %s; waiting for the answer to its ack.", r->spec->job_id,
                         strempty(detail));
                r->stop_reason = reason;
                free_and_replace_str(&r->stop_detail, detail ? strdup(detail) : NULL);
                return;
        }
        if (r->phase == RUN_ACKING) {
                log_info("Job %s given up before it started: %s", r->spec->job_id, strempty(detail));
                run_release(r);
                return;
        }
        if (r->phase == RUN_PREPARING || r->phase == RUN_STARTING) {
                /* RUNNING at the control plane: handed back, it is retried without losing an
                 * attempt, as after an ack accepted while stopping (on_ack). A process whose start
                 * entropy-keeper has not answered yet is killed as soon as it does. */
                log_info("Job %s given up before it started: %s", r->spec->job_id, strempty(detail));
                executor_start_cancel(w->executor, TAKE_PTR(r->start));
                if (reason == STOP_HANDBACK) {
                        r->stop_reason = reason;
                        run_fail(r, "handback", true, -1, "handback", strempty(detail));
                } else if (r->phase == RUN_STARTING)
                        (void) replay_run_end(w->replay, r->run_id, now_realtime_usec(), "aborted", -1, detail);
                run_release(r);
                return;
        }
        if (r->stop_reason == STOP_NONE || reason == STOP_ABORT) {
                r->stop_reason = reason;
                free(r->stop_detail);
                r->stop_detail = detail ? strdup(detail) : NULL;
        }
        /* A lease stop must be over before the lease ends, whatever the configured grace. */
        if (reason == STOP_LEASE)
                grace = MIN(grace, lease_kill_grace(r));
        if (r->phase == RUN_STOPPING && reason != STOP_ABORT) {
                /* Already stopping (timeout, hand-back) when the lease is lost as well: the rest
                 * of that grace may outlast the lease, and the job may then run on next to its
                 * rerun elsewhere. */
                if (reason == STOP_LEASE && kill_due_after(r, grace))
                        (void) worker_arm_timer(w, &r->kill_timer, grace, on_kill_timer, r, "kill-grace");
                return;
        }
        r->phase = RUN_STOPPING;
        r->timeout_timer = sd_event_source_disable_unref(r->timeout_timer);
        if (reason == STOP_ABORT) {
                run_signal(r, SIGKILL);
                return;
        }
        log_info("Stopping job %s: %s", r->spec->job_id, strempty(detail));
        run_signal(r, SIGTERM);
        (void) worker_arm_timer(w, &r->kill_timer, grace, on_kill_timer, r, "kill-grace");
}

void run_abort(Run *r, const char *detail) {
        log_warning("Job %s (assignment %s): %s; killing its process group.", r->spec->job_id, r->spec->assignment_id,
                    detail);
        run_stop(r, STOP_ABORT, detail);
}

static int on_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Run *r = userdata;
        char detail[256], span[64], grace[64];
        snprintf(detail, sizeof(detail), "timed out after %s (SIGTERM, then SIGKILL after %s)",
                 format_timespan(span, sizeof(span), (usec_t) r->spec->timeout_ms * USEC_PER_MSEC),
                 format_timespan(grace, sizeof(grace), r->worker->settings.kill_grace));
        run_stop(r, STOP_TIMEOUT, detail);
        return 0;
}

static void run_dry(Run *r, const char *exec_path, const char *workdir) {
        _cleanup_free_ char *args = strv_join(r->spec->args, " ");
        char summary[256];
        int k;

        dprintf(r->artifacts->out.fd, "entropy-worker dry run: would run %s %s in %s\n", exec_path, strempty(args),
                workdir ? workdir : r->artifacts->dir);
        k = artifacts_finalize(r->artifacts);
        if (k < 0) {
                run_fail(r, "artifacts", true, -1, "failed", "could not write dry-run artifacts");
                return;
        }
        snprintf(summary, sizeof(summary), "dry run: %s validated, nothing executed", r->spec->command);
        run_complete(r, 0, summary, "dry-run", true);
}

static void on_started(void *userdata, int k, pid_t pid, const char *step);

/* Asks entropy-keeper to start the process (on_started() goes on). Returns 1 when the run failed
 * here already (recorded), < 0 when it could not be asked. */
static int run_spawn(Run *r, const char *exec_path, const char *workdir) {
        Worker *w = r->worker;
        _cleanup_strv_free_ char **env = NULL, **argv = NULL;
        _cleanup_close_ int cgroup_procs = -EBADF;
        JobEnv je = { r->spec->job_id, r->spec->assignment_id, r->spec->attempt, (int64_t) r->slot,
                      gpu_for_slot(w->gpus, r->slot) ?: w->gpus_hidden };
        int k;

        k = executor_build_env(environ, w->token, &je, &env);
        if (k >= 0)
                k = executor_build_argv(r->spec->command, r->spec->args, &argv);
        if (k >= 0 && w->cgroups) {
                k = job_cgroup_create(w->cgroups, &r->cgroup_id, &cgroup_procs);
                if (k < 0) {
                        char msg[512];
                        snprintf(msg, sizeof(msg), "could not start %s: cannot make its cgroup below %s: %s", exec_path,
                                 job_cgroups_path(w->cgroups), strerror(-k));
                        run_fail(r, "spawn", true, 127, "failed", msg);
                        return 1;
                }
        }
        if (k < 0)
                return k;
        ExecSpec spec = {exec_path,
                         argv,
                         env,
                         workdir ? workdir : r->artifacts->dir,
                         r->artifacts->out.fd,
                         r->artifacts->err.fd,
                         (uint64_t) w->settings.max_output_size,
                         cgroup_procs > 0 ? cgroup_procs : 0,
                         worker_start_timeout(w)};
        /* The limit the job runs under is the one its output is held to, whatever a reload sets. */
        r->artifacts->max_size = spec.max_output_size;
        return executor_start(w->executor, &spec, on_started, r, &r->start);
}

/* entropy-keeper's answer: the process runs (or could not start). */
static void on_started(void *userdata, int k, pid_t pid, const char *step) {
        Run *r = userdata;
        Worker *w = r->worker;
        uint64_t start = 0;

        r->start = NULL;
        if (k < 0) {
                char msg[512], span[64];
                if (k == -ETIMEDOUT)
                        snprintf(msg, sizeof(msg),
                                 "could not start %s: its start did not return within %s (path-check-timeout): "
                                 "its working directory or program on a file system that does not answer?",
                                 r->exec_path, format_timespan(span, sizeof(span), worker_start_timeout(w)));
                else
                        snprintf(msg, sizeof(msg), "could not start %s: %s failed: %s", r->exec_path, step,
                                 strerror(-k));
                run_fail(r, "spawn", true, 127, "failed", msg);
                run_release(r);
                return;
        }
        r->pid = pid;
        (void) proc_start_time(r->pid, &start);
        k = replay_run_set_pid(w->replay, r->run_id, r->pid, start);
        if (k < 0)
                log_warning_errno(k, "Job %s: cannot record pid %d: %m", r->spec->job_id, (int) r->pid);
        k = sd_event_add_child(w->event, &r->child_source, r->pid, WEXITED, on_child_exit, r);
        if (k < 0) {
                /* Unwatched, it would run on beside its rerun elsewhere: end it now. */
                run_signal(r, SIGKILL);
                executor_forget(w->executor, r->pid);
                (void) waitpid(r->pid, NULL, 0);
                r->pid = 0;
                run_fail(r, "spawn", true, -1, "failed", "could not watch the job's process");
                run_release(r);
                return;
        }
        r->phase = RUN_RUNNING;
        log_info("Job %s (assignment %s, attempt %lld) started as pid %d on slot %zu.", r->spec->job_id,
                 r->spec->assignment_id, (long long) r->spec->attempt, (int) r->pid, r->slot);
        if (r->spec->timeout_ms > 0)
                (void) worker_arm_timer(w, &r->timeout_timer, (usec_t) r->spec->timeout_ms * USEC_PER_MSEC, on_timeout,
                                        r, "job-timeout");
        worker_update_status(w);
}

static void run_start(Run *r);

/* The policy's answer: with it, the artifact files. */
static void on_prepared(void *userdata, PrepareResult *res) {
        Run *r = userdata;
        Worker *w = r->worker;

        r->preparation = NULL;
        r->prepare_timer = sd_event_source_disable_unref(r->prepare_timer);
        r->policy = res->verdict;
        r->exec_path = TAKE_PTR(res->exec_path);
        r->workdir = TAKE_PTR(res->workdir);
        r->policy_reason = TAKE_PTR(res->reason);
        if (r->policy == POLICY_ALLOW)
                r->artifacts_error = artifacts_open(w->settings.state_directory, r->spec->job_id,
                                                    r->spec->assignment_id, &r->artifacts);
        if (r->phase == RUN_PREPARING)
                run_start(r);
}

/* The checks hang (a file system that does not answer): the job fails here, to be retried on a
 * worker whose file systems answer, and the thread is left to return when this one does. */
static int on_prepare_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Run *r = userdata;
        Worker *w = r->worker;
        char span[64];

        preparation_abandon(w->preparer, TAKE_PTR(r->preparation), true);
        r->policy = POLICY_NOTFOUND;
        if (asprintf(&r->policy_reason,
                     "the checks of command '%s' and working directory '%s' did not return within %s "
                     "(path-check-timeout): a file system that does not answer?",
                     r->spec->command, strempty(r->spec->working_dir),
                     format_timespan(span, sizeof(span), w->settings.path_check_timeout)) < 0)
                r->policy_reason = NULL; /* "out of memory" is said instead */
        log_warning("Job %s: %s", r->spec->job_id, strna(r->policy_reason));
        if (r->phase == RUN_PREPARING)
                run_start(r);
        worker_update_status(w);
        return 0;
}

/* While the ack is in flight: the policy's decision and the artifact files, the work of a start
 * that does not depend on the answer. Nothing runs and nothing is recorded before the ack is
 * accepted; what a refused ack leaves is removed by run_free(). The checks run on a thread of
 * their own (prepare.h), so that a path on a file system that does not answer holds up this job
 * only. */
static void run_prepare(Run *r) {
        Worker *w = r->worker;
        Policy p = { w->settings.command_allowlist, w->settings.workdir_allowlist, w->settings.refuse_root,
                     geteuid(), NULL };
        int k;

        k = preparer_start(w->preparer, &p, r->spec->command, r->spec->working_dir, on_prepared, r, &r->preparation);
        if (k >= 0)
                k = worker_arm_timer(w, &r->prepare_timer, w->settings.path_check_timeout, on_prepare_timeout, r,
                                     "path-check-timeout");
        if (k < 0) {
                preparation_abandon(w->preparer, TAKE_PTR(r->preparation), false);
                r->policy = POLICY_NOTFOUND;
                if (asprintf(&r->policy_reason, "cannot check the job's command and working directory: %s",
                             strerror(-k)) < 0)
                        r->policy_reason = NULL;
        }
}

/* After a successful ack: the policy's decision applies, then the process starts (or a dry run is
 * written). */
static void run_start(Run *r) {
        Worker *w = r->worker;
        RunRecord rec = { r->spec->job_id, r->spec->assignment_id, r->spec->attempt, (int64_t) r->slot,
                          w->instance_id, 0 };
        int k;

        if (r->policy != POLICY_ALLOW) {
                bool refused = r->policy == POLICY_REFUSE;
                const char *reason = r->policy_reason ? r->policy_reason : "out of memory";
                log_warning("Job %s refused: %s", r->spec->job_id, reason);
                run_fail(r, refused ? "policy" : "not-found", !refused, -1, refused ? "refused" : "failed", reason);
                run_release(r);
                return;
        }
        if (r->artifacts_error < 0) {
                char msg[256];
                snprintf(msg, sizeof(msg), "cannot create artifact files: %s", strerror(-r->artifacts_error));
                run_fail(r, "artifacts", true, -1, "failed", msg);
                run_release(r);
                return;
        }
        r->phase = RUN_STARTING;
        r->started_real = rec.started_at = now_realtime_usec();
        r->started_mono = now_monotonic_usec();
        /* Before the process exists: every run that happened has a record (replay.h says why a
         * lazy commit is enough for it). */
        k = replay_run_begin(w->replay, &rec, &r->run_id);
        if (k < 0)
                log_error_errno(k, "Job %s: cannot record the run start: %m", r->spec->job_id);
        if (w->settings.dry_run) {
                run_dry(r, r->exec_path, r->workdir);
                run_release(r);
                return;
        }
        /* on_started() goes on, unless the run failed here already. */
        k = run_spawn(r, r->exec_path, r->workdir);
        if (k < 0) {
                char msg[256];
                snprintf(msg, sizeof(msg), "could not start %s: %s", r->exec_path, strerror(-k));
                run_fail(r, "spawn", true, -1, "failed", msg);
        }
        if (k != 0)
                run_release(r);
}

static int send_ack(Run *r);

static int on_ack_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        (void) send_ack(userdata);
        return 0;
}

static void on_ack(Client *c, const ClientReply *reply, void *userdata) {
        Run *r = userdata;
        char buf[256];

        r->ack_request = NULL;
        bool ours = client_reply_from_control_plane(reply);
        if (reply->status == 200 && ours && r->stop_reason == STOP_HANDBACK) {
                session_note_contact(r->worker);
                log_info("Job %s acknowledged while stopping; handing it back.", r->spec->job_id);
                run_fail(r, "handback", true, -1, "handback", r->stop_detail);
                run_release(r);
                return;
        }
        if (reply->status == 200 && ours) {
                session_note_contact(r->worker);
                if (r->preparation) { /* started when the checks return, or give up */
                        r->phase = RUN_PREPARING;
                        return;
                }
                run_start(r);
                return;
        }
        client_reply_describe_origin(reply, buf, sizeof(buf));
        if (reply->status == 403)
                session_lost_registration(r->worker);
        if (ours && (reply->status == 409 || reply->status == 404 || reply->status == 400 || reply->status == 403)) {
                log_warning("Ack of job %s refused (%s); not running it.", r->spec->job_id, buf);
                run_release(r);
                return;
        }
        /* Transport error, 5xx, or an answer that is not the control plane's: the lease timer drops
         * the job if no ack gets through in time. */
        if (r->stop_reason == STOP_HANDBACK) {
                log_warning("Ack of job %s failed (%s) while stopping; giving it up.", r->spec->job_id, buf);
                run_release(r);
                return;
        }
        log_warning("Ack of job %s failed (%s); retrying.", r->spec->job_id, buf);
        r->ack_attempts++;
        (void) worker_arm_timer(r->worker, &r->ack_timer, MIN(100 * USEC_PER_MSEC << MIN(r->ack_attempts, 5u),
                                                              r->worker->settings.poll_interval),
                                on_ack_retry, r, "ack-retry");
}

/* Returns < 0 if the ack could not be sent: the run is released then. */
static int send_ack(Run *r) {
        Worker *w = r->worker;
        _cleanup_json_ json_object *body = json_object_new_object();
        int k;

        json_add_string(body, "job_id", r->spec->job_id);
        json_add_string(body, "worker_id", w->settings.worker_id);
        json_add_string(body, "assignment_id", r->spec->assignment_id);
        json_add_string(body, "instance_id", w->instance_id);
        k = client_request(w->client, "POST", "/ack", body, on_ack, r, &r->ack_request);
        if (k < 0) {
                log_error_errno(k, "Cannot send ack for job %s: %m", r->spec->job_id);
                run_release(r);
                return k;
        }
        return 0;
}

int run_claim(Worker *w, size_t slot, JobSpec *spec, const ClientReply *reply) {
        Run *r = calloc(1, sizeof(*r));
        if (!r) {
                job_spec_free(spec);
                return -ENOMEM;
        }
        r->worker = w;
        r->slot = slot;
        r->spec = spec;
        r->phase = RUN_ACKING;
        w->slots[slot] = r;
        log_info("Claimed job %s (assignment %s, attempt %lld): %s", spec->job_id, spec->assignment_id,
                 (long long) spec->attempt, spec->command);
        lease_init(r, reply);
        lease_arm(r);
        worker_mark_busy(w);
        if (send_ack(r) >= 0)
                run_prepare(r);
        return 0;
}
