/* jobs-reconnect.c: /reconnect, where a worker back from a partition or a restart replays the
 * results it kept and says which jobs it still runs; one transaction for the whole exchange. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "jobs-internal.h"
#include "json-util.h"
#include "log.h"
#include "store.h"
#include "strv.h"
#include "workers.h"

void reconnect_actions_free(ReconnectAction *a, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(a[i].job_id);
                free(a[i].assignment_id);
                free(a[i].error);
        }
        free(a);
}

typedef struct Actions {
        ReconnectAction *a;
        size_t n;
} Actions;

static int action_add(Actions *x, const char *job_id, const char *assignment_id, const char *action, int r,
                      const char *error, JobState state) {
        ReconnectAction *p = realloc(x->a, (x->n + 1) * sizeof(*p));
        if (!p)
                return -ENOMEM;
        x->a = p;
        p = &x->a[x->n];
        *p = (ReconnectAction){.action = action, .accepted = r >= 0, .state = state};
        if ((job_id && !(p->job_id = strdup(job_id))) ||
            (assignment_id && !(p->assignment_id = strdup(assignment_id))) ||
            (r < 0 && !(p->error = strdup(error ? error : "refused")))) {
                free(p->job_id);
                free(p->assignment_id);
                return -ENOMEM;
        }
        x->n++;
        return 0;
}

static const char *replay_action(JobState status) {
        return status == JOB_COMPLETED ? "complete" : status == JOB_FAILED ? "fail" : "unknown";
}

/* An id as the worker sent it, if it is one: a record refused for its shape may carry anything
 * there, of any length, and the audit row keeps only what a real id could be. */
static const char *id_or_null(const char *s) {
        return !isempty(s) && strlen(s) <= LIMIT_ID_LEN ? s : NULL;
}

/* The audit of one refused record. The worker drops a REJECTED record from its buffer, so
 * without it an operator would never learn that a result the worker kept was refused. It is a
 * request.refused event (what: "replay"), the event of a refusal that changes nothing; a record
 * refused by the fencing or the state machine also has their event (job.assignment_stale,
 * job.transition_refused), which does not say that it came from a replay. Bounded by the
 * request: one event per record, at most LIMIT_RECONNECT_ENTRIES records, each event of bounded
 * size (ids cut to what an id can be, reasons are OpError or JsonError messages). */
static int audit_rejected(Control *c, const Origin *o, const char *worker_id, const char *job_id,
                          const char *assignment_id, const char *action, const char *reason) {
        _cleanup_json_ json_object *d = json_object_new_object();
        char msg[512];

        if (!d)
                return -ENOMEM;
        job_id = id_or_null(job_id);
        assignment_id = id_or_null(assignment_id);
        json_add_string(d, "what", "replay");
        json_add_string(d, "who", worker_id);
        json_add_string(d, "action", action);
        reason = isempty(reason) ? "refused" : reason;
        json_add_string(d, "reason", reason);
        snprintf(msg, sizeof(msg), "Refused replayed record (%s) of job %s from worker %s: %s", action, strna(job_id),
                 worker_id, reason);
        return audit_record(c,
                            &(AuditRecord){.component = "jobs",
                                           .level = LOG_WARNING,
                                           .event = "request.refused",
                                           .message = msg,
                                           .origin = o,
                                           .worker_id = worker_id,
                                           .job_id = job_id,
                                           .assignment_id = assignment_id,
                                           .details = d},
                            NULL);
}

static int replay_one(Control *c, const Origin *o, const char *worker_id, const ReplayEntry *e, Actions *x) {
        OpError err = {};
        JobState state = _JOB_STATE_INVALID;
        const char *job_id, *assignment_id, *action;
        int r;

        /* Refused as it stands, named as the worker sent it: the worker drops it from its buffer
         * (a refusal of the whole request would be retried for ever, the record with it). */
        if (e->invalid) {
                r = audit_rejected(c, o, worker_id, e->completion.job_id, e->completion.assignment_id,
                                   replay_action(e->status), e->invalid);
                if (r < 0)
                        return r;
                return action_add(x, e->completion.job_id, e->completion.assignment_id, replay_action(e->status),
                                  -EINVAL, e->invalid, _JOB_STATE_INVALID);
        }
        if (e->status == JOB_COMPLETED) {
                Completion comp = e->completion;
                if (!comp.worker_id)
                        comp.worker_id = worker_id;
                job_id = comp.job_id, assignment_id = comp.assignment_id, action = "complete";
                r = streq(comp.worker_id, worker_id) ? jobs_complete_locked(c, o, &comp, &state, &err)
                                                     : op_error_set(&err, -EINVAL, "record of another worker");
        } else if (e->status == JOB_FAILED) {
                Failure f = e->failure;
                if (!f.worker_id)
                        f.worker_id = worker_id;
                job_id = f.job_id, assignment_id = f.assignment_id, action = "fail";
                r = streq(f.worker_id, worker_id) ? jobs_fail_locked(c, o, &f, &state, &err)
                                                  : op_error_set(&err, -EINVAL, "record of another worker");
        } else {
                job_id = e->completion.job_id, assignment_id = e->completion.assignment_id, action = "unknown";
                r = op_error_set(&err, -EINVAL, "status must be COMPLETED or FAILED");
        }
        /* A refusal rejects this entry only; a store failure fails the whole reconnect. */
        if (r < 0 && !op_is_refusal(r))
                return r;
        if (r < 0) {
                int k = audit_rejected(c, o, worker_id, job_id, assignment_id, action, err.message);
                if (k < 0)
                        return k;
        }
        return action_add(x, job_id, assignment_id, action, r, err.message, state);
}

/* The rule of the heartbeat's abort_jobs (job_not_held_reason()). */
static int keep_one(Control *c, const char *worker_id, const HeldJob *h, Actions *x) {
        _cleanup_(job_freep) Job *j = NULL;
        const char *why;
        int r;

        r = jobs_get(c, h->job_id, &j);
        if (r < 0 && r != -ENOENT)
                return r;
        why = job_not_held_reason(j, worker_id, h);
        /* REJECTED tells the worker to stop: the action names the job's current assignment, not
         * the one its run has, so the worker kills that run as it would for abort_jobs. */
        return action_add(x, h->job_id, j ? j->assignment_id : NULL, "keep", why ? -EBUSY : 0, why,
                          j ? j->status : _JOB_STATE_INVALID);
}

static int keep_claimed(Control *c, const char *worker_id, const HeldJob *held, size_t n_held, Actions *x) {
        int r;

        for (size_t i = 0; i < n_held; i++) {
                r = keep_one(c, worker_id, &held[i], x);
                if (r < 0)
                        return r;
        }
        /* Fenced by the reported assignments, and RUNNING jobs only: an ASSIGNED job is kept but
         * its lease is left alone, so that an ack that never comes still expires. */
        r = jobs_renew_leases(c, worker_id, held, n_held, control_now(c));
        return r < 0 ? r : 0;
}

static int note_worker(Control *c, const Origin *o, const char *worker_id, char *const *claimed, size_t n_replayed,
                       size_t n_lost) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        _cleanup_json_ json_object *d = json_object_new_object();
        char msg[256];
        int r;

        if (!d)
                return -ENOMEM;
        r = store_prepare(c->store, "UPDATE workers SET current_job_id = ? WHERE worker_id = ?", &st);
        if (r < 0)
                return r;
        if (store_bind_text(st, 1, claimed ? claimed[0] : NULL) < 0 || store_bind_text(st, 2, worker_id) < 0)
                return -ENOMEM;
        r = store_step(c->store, st);
        if (r < 0)
                return r;
        json_add_int64(d, "replayed", (int64_t) n_replayed);
        json_add_int64(d, "claimed", (int64_t) strv_length((char **) claimed));
        json_add_int64(d, "given_up", (int64_t) n_lost);
        snprintf(msg, sizeof(msg), "Worker %s reconnected: %zu records replayed, %zu jobs given up", worker_id,
                 n_replayed, n_lost);
        return audit_record(c,
                            &(AuditRecord){.component = "workers",
                                           .level = LOG_INFO,
                                           .event = "worker.reconnected",
                                           .message = msg,
                                           .origin = o,
                                           .worker_id = worker_id,
                                           .details = d},
                            NULL);
}

static int reconnect_locked(Control *c, const Origin *o, const char *worker_id, const HeldJob *held, size_t n_held,
                            const ReplayEntry *entries, size_t n_entries, Actions *x) {
        _cleanup_(worker_freep) Worker *w = NULL;
        _cleanup_strv_free_ char **lost = NULL, **restart_claims = NULL, **claimed = calloc(n_held + 1, sizeof(char *));
        int r;

        if (!claimed)
                return -ENOMEM;
        for (size_t i = 0; i < n_held; i++)
                if (!(claimed[i] = strdup(held[i].job_id)))
                        return -ENOMEM;
        r = worker_require(c, worker_id, &w);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n_entries; i++) {
                r = replay_one(c, o, worker_id, &entries[i], x);
                if (r < 0)
                        return r;
        }
        /* What it still holds is what it claims, under the job's own assignment. A job whose
         * replayed result was applied is not held any more; one whose result was refused (an old
         * assignment, no ack) and that the restarted worker does not claim is lost like any other;
         * so is one it claims under another assignment, which its keep action tells it to stop. */
        if (w->restart_pending) {
                r = worker_restart_claims(c, worker_id, held, n_held, &restart_claims);
                if (r < 0)
                        return r;
        }
        r = worker_resolve_restart(c, o, worker_id, restart_claims, &lost);
        if (r < 0)
                return r;
        STRV_FOREACH (id, lost) {
                r = action_add(x, *id, NULL, "lost", 0, NULL, _JOB_STATE_INVALID);
                if (r < 0)
                        return r;
        }
        r = keep_claimed(c, worker_id, held, n_held, x);
        if (r < 0)
                return r;
        return note_worker(c, o, worker_id, claimed, n_entries, strv_length(lost));
}

int jobs_reconnect(Control *c, const Origin *o, const char *worker_id, const HeldJob *held, size_t n_held,
                   const ReplayEntry *entries, size_t n_entries, ReconnectAction **ret, size_t *ret_n) {
        _cleanup_tx_ Control *tx = NULL;
        Actions x = {};
        int r;

        if (isempty(worker_id) || strlen(worker_id) > LIMIT_ID_LEN)
                return -EINVAL;
        if (n_entries > LIMIT_RECONNECT_ENTRIES || n_held > LIMIT_RECONNECT_ENTRIES)
                return -EINVAL;
        for (size_t i = 0; i < n_held; i++)
                if (isempty(held[i].job_id))
                        return -EINVAL;
        r = control_begin(c, &tx);
        if (r < 0)
                return r;
        r = jobs_finish(&tx, reconnect_locked(c, o, worker_id, held, n_held, entries, n_entries, &x));
        if (r < 0) {
                reconnect_actions_free(x.a, x.n);
                return r;
        }
        /* States of "lost" actions (and of refused records' jobs) are filled in now that the
         * transaction is done. */
        for (size_t i = 0; i < x.n; i++)
                if (x.a[i].state < 0 && x.a[i].job_id) {
                        _cleanup_(job_freep) Job *j = NULL;
                        if (jobs_get(c, x.a[i].job_id, &j) >= 0)
                                x.a[i].state = j->status;
                }
        *ret = x.a;
        *ret_n = x.n;
        return 0;
}
