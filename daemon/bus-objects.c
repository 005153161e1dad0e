/* bus-objects.c: one D-Bus object per job (/org/entropy/Control1/job/<escaped id>, interface
 * org.entropy.Control1.Job) and per worker (.../worker/<escaped id>, org.entropy.Control1.Worker),
 * served by fallback vtables whose find callbacks load the row from the store, a node enumerator
 * per prefix (so Introspect and GetManagedObjects list them) and an ObjectManager on
 * /org/entropy/Control1. After each committed audit event the affected object announces its new
 * state with PropertiesChanged, a new job with InterfacesAdded. Times are realtime microseconds
 * (0 = never), as systemd's *Timestamp properties are. */
#include <errno.h>
#include <stdlib.h>

#include "audit.h"
#include "bus-internal.h"
#include "log.h"
#include "strv.h"

int bus_job_path(const char *job_id, char **ret) {
        return sd_bus_path_encode(CONTROL_BUS_JOB_PREFIX, job_id, ret);
}

int bus_worker_path(const char *worker_id, char **ret) {
        return sd_bus_path_encode(CONTROL_BUS_WORKER_PREFIX, worker_id, ret);
}

void bus_objects_flush_cache(Bus *b) {
        b->cached_job = job_free(b->cached_job);
        b->cached_worker = worker_free(b->cached_worker);
}

/* --- Getters ------------------------------------------------------------------------------- */

#define DEFINE_STRING_GETTER(name, type, field)                                                                        \
        static int name(sd_bus *bus, const char *path, const char *interface, const char *property,                    \
                        sd_bus_message *reply, void *userdata, sd_bus_error *error) {                                  \
                const type *o = userdata;                                                                              \
                return sd_bus_message_append_basic(reply, 's', strempty(o->field));                                    \
        }
#define DEFINE_TYPED_GETTER(name, type, field, sig, ctype)                                                             \
        static int name(sd_bus *bus, const char *path, const char *interface, const char *property,                    \
                        sd_bus_message *reply, void *userdata, sd_bus_error *error) {                                  \
                const type *o = userdata;                                                                              \
                ctype v = (ctype) o->field;                                                                            \
                return sd_bus_message_append_basic(reply, sig, &v);                                                    \
        }
#define DEFINE_STRV_GETTER(name, type, field)                                                                          \
        static int name(sd_bus *bus, const char *path, const char *interface, const char *property,                    \
                        sd_bus_message *reply, void *userdata, sd_bus_error *error) {                                  \
                const type *o = userdata;                                                                              \
                return sd_bus_message_append_strv(reply, o->field);                                                    \
        }

DEFINE_STRING_GETTER(job_get_id, Job, job_id)
DEFINE_STRING_GETTER(job_get_command, Job, command)
DEFINE_STRING_GETTER(job_get_working_dir, Job, working_dir)
DEFINE_STRING_GETTER(job_get_worker_id, Job, worker_id)
DEFINE_STRING_GETTER(job_get_assignment_id, Job, assignment_id)
DEFINE_STRING_GETTER(job_get_last_error, Job, last_error)
DEFINE_STRING_GETTER(job_get_result_path, Job, result_path)
DEFINE_STRING_GETTER(job_get_updated_by, Job, updated_by)
DEFINE_STRING_GETTER(job_get_result_summary, Job, result_summary)
DEFINE_STRING_GETTER(job_get_stdout_path, Job, stdout_path)
DEFINE_STRING_GETTER(job_get_stderr_path, Job, stderr_path)
DEFINE_STRING_GETTER(job_get_stdout_sha256, Job, stdout_sha256)
DEFINE_STRING_GETTER(job_get_stderr_sha256, Job, stderr_sha256)
DEFINE_STRING_GETTER(job_get_artifact_backend, Job, artifact_backend)
DEFINE_STRING_GETTER(job_get_artifact_location, Job, artifact_location)
DEFINE_STRING_GETTER(job_get_artifact_upload_state, Job, artifact_upload_state)
DEFINE_STRV_GETTER(job_get_args, Job, args)
DEFINE_STRV_GETTER(job_get_requirements, Job, requirements)
DEFINE_TYPED_GETTER(job_get_timeout, Job, timeout_ms, 't', uint64_t)
DEFINE_TYPED_GETTER(job_get_priority, Job, priority, 'x', int64_t)
DEFINE_TYPED_GETTER(job_get_scheduled, Job, scheduled_at, 't', uint64_t)
DEFINE_TYPED_GETTER(job_get_created, Job, created_at, 't', uint64_t)
DEFINE_TYPED_GETTER(job_get_updated, Job, updated_at, 't', uint64_t)
DEFINE_TYPED_GETTER(job_get_expires, Job, assignment_expires_at, 't', uint64_t)
DEFINE_TYPED_GETTER(job_get_retry_at, Job, retry_at, 't', uint64_t)
DEFINE_TYPED_GETTER(job_get_attempt_count, Job, attempt_count, 'u', uint32_t)
DEFINE_TYPED_GETTER(job_get_max_attempts, Job, max_attempts, 'u', uint32_t)
DEFINE_TYPED_GETTER(job_get_needs_gpu, Job, needs_gpu, 'b', int)

static int job_get_status(sd_bus *bus, const char *path, const char *interface, const char *property,
                          sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        const Job *j = userdata;
        return sd_bus_message_append_basic(reply, 's', strempty(job_state_to_string(j->status)));
}

/* -1 until the job's process has exited: exit codes themselves are never negative. */
static int job_get_exit_code(sd_bus *bus, const char *path, const char *interface, const char *property,
                             sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        const Job *j = userdata;
        int32_t v = j->has_exit_code ? (int32_t) j->exit_code : -1;
        return sd_bus_message_append_basic(reply, 'i', &v);
}

DEFINE_STRING_GETTER(worker_get_id, Worker, worker_id)
DEFINE_STRING_GETTER(worker_get_current_job, Worker, current_job_id)
DEFINE_STRING_GETTER(worker_get_metrics, Worker, metrics)
DEFINE_STRV_GETTER(worker_get_capabilities, Worker, capabilities)
DEFINE_TYPED_GETTER(worker_get_last_seen, Worker, last_seen, 't', uint64_t)
DEFINE_TYPED_GETTER(worker_get_registered, Worker, registered_at, 't', uint64_t)
DEFINE_TYPED_GETTER(worker_get_draining, Worker, draining, 'b', int)

static int worker_get_status(sd_bus *bus, const char *path, const char *interface, const char *property,
                             sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        const Worker *w = userdata;
        return sd_bus_message_append_basic(reply, 's', strempty(worker_state_to_string(w->state)));
}

#define CHANGE     SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE
#define INVALIDATE SD_BUS_VTABLE_PROPERTY_EMITS_INVALIDATION
#define CONST      SD_BUS_VTABLE_PROPERTY_CONST

static const sd_bus_vtable job_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Id", "s", job_get_id, 0, CONST),
        SD_BUS_PROPERTY("Status", "s", job_get_status, 0, CHANGE),
        SD_BUS_PROPERTY("Command", "s", job_get_command, 0, CONST),
        SD_BUS_PROPERTY("Args", "as", job_get_args, 0, CONST),
        SD_BUS_PROPERTY("WorkingDirectory", "s", job_get_working_dir, 0, CONST),
        SD_BUS_PROPERTY("TimeoutMSec", "t", job_get_timeout, 0, CONST),
        SD_BUS_PROPERTY("Priority", "x", job_get_priority, 0, CONST),
        SD_BUS_PROPERTY("ScheduledTimestamp", "t", job_get_scheduled, 0, CONST),
        SD_BUS_PROPERTY("NeedsGPU", "b", job_get_needs_gpu, 0, CONST),
        SD_BUS_PROPERTY("Requirements", "as", job_get_requirements, 0, CONST),
        SD_BUS_PROPERTY("CreatedTimestamp", "t", job_get_created, 0, CONST),
        SD_BUS_PROPERTY("UpdatedTimestamp", "t", job_get_updated, 0, CHANGE),
        SD_BUS_PROPERTY("AttemptCount", "u", job_get_attempt_count, 0, CHANGE),
        SD_BUS_PROPERTY("MaxAttempts", "u", job_get_max_attempts, 0, CONST),
        SD_BUS_PROPERTY("WorkerId", "s", job_get_worker_id, 0, CHANGE),
        SD_BUS_PROPERTY("AssignmentId", "s", job_get_assignment_id, 0, CHANGE),
        SD_BUS_PROPERTY("AssignmentExpiresTimestamp", "t", job_get_expires, 0, INVALIDATE),
        SD_BUS_PROPERTY("RetryTimestamp", "t", job_get_retry_at, 0, INVALIDATE),
        SD_BUS_PROPERTY("LastError", "s", job_get_last_error, 0, CHANGE),
        SD_BUS_PROPERTY("ExitCode", "i", job_get_exit_code, 0, CHANGE),
        SD_BUS_PROPERTY("UpdatedBy", "s", job_get_updated_by, 0, CHANGE),
        SD_BUS_PROPERTY("ResultPath", "s", job_get_result_path, 0, INVALIDATE),
        SD_BUS_PROPERTY("ResultSummary", "s", job_get_result_summary, 0, INVALIDATE),
        SD_BUS_PROPERTY("StdoutPath", "s", job_get_stdout_path, 0, INVALIDATE),
        SD_BUS_PROPERTY("StderrPath", "s", job_get_stderr_path, 0, INVALIDATE),
        SD_BUS_PROPERTY("StdoutSHA256", "s", job_get_stdout_sha256, 0, INVALIDATE),
        SD_BUS_PROPERTY("StderrSHA256", "s", job_get_stderr_sha256, 0, INVALIDATE),
        SD_BUS_PROPERTY("ArtifactBackend", "s", job_get_artifact_backend, 0, INVALIDATE),
        SD_BUS_PROPERTY("ArtifactLocation", "s", job_get_artifact_location, 0, INVALIDATE),
        SD_BUS_PROPERTY("ArtifactUploadState", "s", job_get_artifact_upload_state, 0, INVALIDATE),
        SD_BUS_VTABLE_END};

/* Heartbeats move LastSeenTimestamp and CurrentJobId without an audit event: no signal for those
 * (EmitsChangedSignal=false in the introspection); read them when needed. */
static const sd_bus_vtable worker_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Id", "s", worker_get_id, 0, CONST),
        SD_BUS_PROPERTY("Status", "s", worker_get_status, 0, CHANGE),
        SD_BUS_PROPERTY("Draining", "b", worker_get_draining, 0, CHANGE),
        SD_BUS_PROPERTY("Capabilities", "as", worker_get_capabilities, 0, CHANGE),
        SD_BUS_PROPERTY("CurrentJobId", "s", worker_get_current_job, 0, 0),
        SD_BUS_PROPERTY("LastSeenTimestamp", "t", worker_get_last_seen, 0, 0),
        SD_BUS_PROPERTY("RegisteredTimestamp", "t", worker_get_registered, 0, CONST),
        SD_BUS_PROPERTY("Metrics", "s", worker_get_metrics, 0, 0),
        SD_BUS_VTABLE_END};

/* --- Lookup and enumeration ----------------------------------------------------------------- */

static int job_find(sd_bus *bus, const char *path, const char *interface, void *userdata, void **found,
                    sd_bus_error *error) {
        Bus *b = userdata;
        _cleanup_free_ char *id = NULL;
        Job *j = NULL;
        int r;

        r = sd_bus_path_decode(path, CONTROL_BUS_JOB_PREFIX, &id);
        if (r <= 0)
                return r;
        r = bus_authorize_read(b, sd_bus_get_current_message(bus), error);
        if (r < 0)
                return r;
        r = jobs_get(b->c, id, &j);
        if (r == -ENOENT || r == -EINVAL)
                return 0;
        if (r < 0)
                return r;
        job_free(b->cached_job);
        b->cached_job = j;
        *found = j;
        return 1;
}

static int worker_find(sd_bus *bus, const char *path, const char *interface, void *userdata, void **found,
                       sd_bus_error *error) {
        Bus *b = userdata;
        _cleanup_free_ char *id = NULL;
        Worker *w = NULL;
        int r;

        r = sd_bus_path_decode(path, CONTROL_BUS_WORKER_PREFIX, &id);
        if (r <= 0)
                return r;
        r = bus_authorize_read(b, sd_bus_get_current_message(bus), error);
        if (r < 0)
                return r;
        r = worker_get(b->c, id, &w);
        if (r == -ENOENT || r == -EINVAL)
                return 0;
        if (r < 0)
                return r;
        worker_free(b->cached_worker);
        b->cached_worker = w;
        *found = w;
        return 1;
}

static int job_enumerate(sd_bus *bus, const char *prefix, void *userdata, char ***nodes, sd_bus_error *error) {
        Bus *b = userdata;
        _cleanup_strv_free_ char **l = NULL;
        JobFilter f = JOB_FILTER_ALL;
        Job **jobs = NULL;
        size_t n = 0;
        int r;

        r = bus_authorize_read(b, sd_bus_get_current_message(bus), error);
        if (r < 0)
                return r;
        f.limit = JOBS_LIST_MAX_LIMIT;
        r = jobs_list(b->c, &f, &jobs, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n && r >= 0; i++) {
                char *p = NULL;
                r = bus_job_path(jobs[i]->job_id, &p);
                if (r >= 0)
                        r = strv_consume(&l, p);
        }
        job_array_free(jobs, n);
        if (r < 0)
                return r;
        *nodes = TAKE_PTR(l);
        return 0;
}

static int worker_enumerate(sd_bus *bus, const char *prefix, void *userdata, char ***nodes, sd_bus_error *error) {
        Bus *b = userdata;
        _cleanup_strv_free_ char **l = NULL;
        Worker **workers = NULL;
        size_t n = 0;
        int r;

        r = bus_authorize_read(b, sd_bus_get_current_message(bus), error);
        if (r < 0)
                return r;
        r = workers_list(b->c, &workers, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n && r >= 0; i++) {
                char *p = NULL;
                r = bus_worker_path(workers[i]->worker_id, &p);
                if (r >= 0)
                        r = strv_consume(&l, p);
        }
        worker_array_free(workers, n);
        if (r < 0)
                return r;
        *nodes = TAKE_PTR(l);
        return 0;
}

int bus_objects_add(Bus *b) {
        int r;

        r = sd_bus_add_fallback_vtable(b->bus, NULL, CONTROL_BUS_JOB_PREFIX, CONTROL_BUS_JOB_INTERFACE, job_vtable,
                                       job_find, b);
        if (r < 0)
                return r;
        r = sd_bus_add_node_enumerator(b->bus, NULL, CONTROL_BUS_JOB_PREFIX, job_enumerate, b);
        if (r < 0)
                return r;
        r = sd_bus_add_fallback_vtable(b->bus, NULL, CONTROL_BUS_WORKER_PREFIX, CONTROL_BUS_WORKER_INTERFACE,
                                       worker_vtable, worker_find, b);
        if (r < 0)
                return r;
        r = sd_bus_add_node_enumerator(b->bus, NULL, CONTROL_BUS_WORKER_PREFIX, worker_enumerate, b);
        if (r < 0)
                return r;
        return sd_bus_add_object_manager(b->bus, NULL, CONTROL_BUS_PATH);
}

/* --- After each committed event ------------------------------------------------------------- */

static void emit_job_changed(Bus *b, const char *job_id, bool added) {
        _cleanup_free_ char *path = NULL;
        int r;

        r = bus_job_path(job_id, &path);
        if (r < 0)
                return;
        if (added)
                r = sd_bus_emit_object_added(b->bus, path);
        else
                r = sd_bus_emit_properties_changed(b->bus, path, CONTROL_BUS_JOB_INTERFACE, "Status",
                                                   "UpdatedTimestamp", "AttemptCount", "WorkerId", "AssignmentId",
                                                   "LastError", "ExitCode", "UpdatedBy", "AssignmentExpiresTimestamp",
                                                   "RetryTimestamp", "ResultPath", "ResultSummary", NULL);
        /* -ENOENT: the job is gone already (retention); nobody can be told about it. */
        if (r < 0 && r != -ENOENT)
                log_debug_errno(r, "Failed to announce the change of job %s on D-Bus: %m", job_id);
}

static void emit_worker_changed(Bus *b, const char *worker_id, bool added) {
        _cleanup_free_ char *path = NULL;
        int r;

        r = bus_worker_path(worker_id, &path);
        if (r < 0)
                return;
        if (added)
                r = sd_bus_emit_object_added(b->bus, path);
        else
                r = sd_bus_emit_properties_changed(b->bus, path, CONTROL_BUS_WORKER_INTERFACE, "Status", "Draining",
                                                   "Capabilities", NULL);
        if (r < 0 && r != -ENOENT)
                log_debug_errno(r, "Failed to announce the change of worker %s on D-Bus: %m", worker_id);
}

void bus_objects_event(Bus *b, const AuditEvent *e) {
        if (!e->event)
                return;
        b->emitting = true;
        if (e->job_id && strncmp(e->event, "job.", 4) == 0)
                emit_job_changed(b, e->job_id, streq(e->event, "job.submitted"));
        else if (e->worker_id && strncmp(e->event, "worker.", 7) == 0)
                emit_worker_changed(b, e->worker_id, streq(e->event, "worker.registered"));
        b->emitting = false;
        /* The objects looked up for the signals are stale once the next change commits. */
        bus_objects_flush_cache(b);
}
