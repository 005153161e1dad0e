/* bus-objects.c: one D-Bus object per job (/org/entropy/Control1/job/<escaped id>, interface
 * org.entropy.Control1.Job) and per worker (.../worker/<escaped id>, org.entropy.Control1.Worker),
 * served by fallback vtables whose find callbacks load the row from the store, a node enumerator
 * per prefix (so Introspect and GetManagedObjects list them) and an ObjectManager on
 * /org/entropy/Control1. Committed audit events queue the objects they changed; once the loop is
 * done with the batch (bus.c), each announces its new state with one PropertiesChanged, a new one
 * with InterfacesAdded, a removed worker with InterfacesRemoved. A job's PropertiesChanged carries
 * Status with its value and names the other properties that may have moved as invalidated: all it
 * needs is in the events, so sending it reads nothing from the store. Times are realtime
 * microseconds (0 = never), as systemd's *Timestamp properties are. */
#include <errno.h>
#include <search.h>
#include <stdlib.h>
#include <string.h>

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
DEFINE_STRING_GETTER(worker_get_version, Worker, version)
DEFINE_TYPED_GETTER(worker_get_slots, Worker, slots, 'u', uint32_t)
DEFINE_STRV_GETTER(worker_get_gpus, Worker, gpus)

static int worker_get_status(sd_bus *bus, const char *path, const char *interface, const char *property,
                             sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        const Worker *w = userdata;
        return sd_bus_message_append_basic(reply, 's', strempty(worker_state_to_string(w->state)));
}

#define CHANGE     SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE
#define INVALIDATE SD_BUS_VTABLE_PROPERTY_EMITS_INVALIDATION
#define CONST      SD_BUS_VTABLE_PROPERTY_CONST

/* Status is what watchers of a job follow: it is sent with its value, which the committed events
 * give. The other properties that change are only named as invalidated (a client Gets them when it
 * cares), so that announcing a change never loads the row. */
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
        SD_BUS_PROPERTY("UpdatedTimestamp", "t", job_get_updated, 0, INVALIDATE),
        SD_BUS_PROPERTY("AttemptCount", "u", job_get_attempt_count, 0, INVALIDATE),
        SD_BUS_PROPERTY("MaxAttempts", "u", job_get_max_attempts, 0, CONST),
        SD_BUS_PROPERTY("WorkerId", "s", job_get_worker_id, 0, INVALIDATE),
        SD_BUS_PROPERTY("AssignmentId", "s", job_get_assignment_id, 0, INVALIDATE),
        SD_BUS_PROPERTY("AssignmentExpiresTimestamp", "t", job_get_expires, 0, INVALIDATE),
        SD_BUS_PROPERTY("RetryTimestamp", "t", job_get_retry_at, 0, INVALIDATE),
        SD_BUS_PROPERTY("LastError", "s", job_get_last_error, 0, INVALIDATE),
        SD_BUS_PROPERTY("ExitCode", "i", job_get_exit_code, 0, INVALIDATE),
        SD_BUS_PROPERTY("UpdatedBy", "s", job_get_updated_by, 0, INVALIDATE),
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
        SD_BUS_PROPERTY("Version", "s", worker_get_version, 0, CHANGE),
        SD_BUS_PROPERTY("Slots", "u", worker_get_slots, 0, CHANGE),
        SD_BUS_PROPERTY("GPUs", "as", worker_get_gpus, 0, CHANGE),
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

        if (b->emit_job && streq(path, b->emit_job_path)) {
                *found = b->emit_job;
                return 1;
        }
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

/* GetManagedObjects answers with every property of every job enumerated, built in one turn of the
 * loop: about 1 KiB and 0.15 ms each. Past the bus's 32 MiB message limit (about 30,000 jobs) the
 * broker would drop our connection, and long before that the loop would stall for seconds. The
 * newest ones are what a client following the fabric wants; ListJobs pages through the rest. */
#define BUS_JOBS_ENUMERATED 1000

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
        f.limit = BUS_JOBS_ENUMERATED;
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

typedef enum BusObjectKind {
        BUS_OBJECT_JOB,
        BUS_OBJECT_WORKER,
} BusObjectKind;

struct BusChange {
        char *path; /* the key in b->changes_index */
        char *id;
        BusObjectKind kind;
        bool added;      /* new since the last emission: InterfacesAdded, with every property */
        bool removed;    /* gone since the last emission (a removed worker): InterfacesRemoved */
        JobState status; /* a job's state after its latest queued event; invalid: read the row */
};

static BusChange *bus_change_free(BusChange *ch) {
        if (!ch)
                return NULL;
        free(ch->path);
        free(ch->id);
        free(ch);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(BusChange *, bus_change_free);

static int change_compare(const void *a, const void *b) {
        return strcmp(((const BusChange *) a)->path, ((const BusChange *) b)->path);
}

static void change_keep(void *p) {
        /* The tree only indexes the changes; b->changes owns them. */
}

void bus_objects_queue_clear(Bus *b) {
        tdestroy(b->changes_index, change_keep);
        b->changes_index = NULL;
        for (size_t i = 0; i < b->n_changes; i++)
                bus_change_free(b->changes[i]);
        free(b->changes);
        b->changes = NULL;
        b->n_changes = b->n_changes_allocated = 0;
}

static int change_new(BusObjectKind kind, const char *id, bool added, bool removed, JobState status, BusChange **ret) {
        _cleanup_(bus_change_freep) BusChange *ch = calloc(1, sizeof(BusChange));
        int r;

        if (!ch)
                return -ENOMEM;
        *ch = (BusChange){.kind = kind, .added = added, .removed = removed, .status = status};
        r = kind == BUS_OBJECT_JOB ? bus_job_path(id, &ch->path) : bus_worker_path(id, &ch->path);
        if (r < 0)
                return r;
        ch->id = strdup(id);
        if (!ch->id)
                return -ENOMEM;
        *ret = TAKE_PTR(ch);
        return 0;
}

/* An object changed again before its announcement went out is announced once, in its latest
 * state: the first change keeps its place in the queue, the latest one says the status, and a
 * removal or a new registration after it says whether the object is there at the end. */
static int queue_change(Bus *b, BusObjectKind kind, const char *id, bool added, bool removed, JobState status) {
        _cleanup_(bus_change_freep) BusChange *ch = NULL;
        BusChange **slot;
        int r;

        r = change_new(kind, id, added, removed, status, &ch);
        if (r < 0)
                return r;
        slot = tsearch(ch, &b->changes_index, change_compare);
        if (!slot)
                return -ENOMEM;
        if (*slot != ch) {
                (*slot)->added = removed ? false : (*slot)->added || added;
                (*slot)->removed = added ? false : (*slot)->removed || removed;
                (*slot)->status = status;
                return 0;
        }
        if (GROW_FOR_ONE(b->changes, b->n_changes_allocated, b->n_changes, 16) < 0) {
                (void) tdelete(ch, &b->changes_index, change_compare);
                return -ENOMEM;
        }
        b->changes[b->n_changes++] = TAKE_PTR(ch);
        return 0;
}

int bus_objects_event(Bus *b, const AuditEvent *e) {
        if (!e->event)
                return 0;
        if (e->job_id && strncmp(e->event, "job.", 4) == 0) {
                /* A refused transition or a stale assignment leaves the job as it was. */
                if (streq(e->event, "job.transition_refused") || streq(e->event, "job.assignment_stale"))
                        return 0;
                bool added = streq(e->event, "job.submitted");
                JobState status = _JOB_STATE_INVALID;
                if (added)
                        status = JOB_PENDING;
                else if (e->to_state)
                        status = job_state_from_string(e->to_state);
                return queue_change(b, BUS_OBJECT_JOB, e->job_id, added, false, status);
        }
        if (e->worker_id && strncmp(e->event, "worker.", 7) == 0) {
                /* Only the registration that made the row says the state it starts in (workers.c). */
                bool added = streq(e->event, "worker.registered") && e->to_state;
                return queue_change(b, BUS_OBJECT_WORKER, e->worker_id, added, streq(e->event, "worker.removed"),
                                    _JOB_STATE_INVALID);
        }
        return 0;
}

/* Status with the value the events gave, every other changing property named as invalidated:
 * job_find() hands sd-bus this stand-in, so nothing is read from the store. */
static int emit_job_changed(Bus *b, const BusChange *ch) {
        Job stand_in = {.job_id = ch->id, .status = ch->status};
        int r;

        if (ch->status < 0) /* an event that did not say the state: the row tells */
                return sd_bus_emit_properties_changed_strv(b->bus, ch->path, CONTROL_BUS_JOB_INTERFACE, NULL);
        b->emit_job = &stand_in;
        b->emit_job_path = ch->path;
        r = sd_bus_emit_properties_changed_strv(b->bus, ch->path, CONTROL_BUS_JOB_INTERFACE, NULL);
        b->emit_job = NULL;
        b->emit_job_path = NULL;
        return r;
}

/* The rows are gone already, so the signal is built here: sd_bus_emit_object_removed() would ask
 * the objects for their interfaces. */
static int emit_object_removed(Bus *b, const char *path, const char *interface) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        r = sd_bus_message_new_signal(b->bus, &m, CONTROL_BUS_PATH, "org.freedesktop.DBus.ObjectManager",
                                      "InterfacesRemoved");
        if (r >= 0)
                r = sd_bus_message_append(m, "oas", path, 1, interface);
        if (r >= 0)
                r = sd_bus_send(b->bus, m, NULL);
        return r;
}

static int emit_job_removed(Bus *b, const char *job_id) {
        _cleanup_free_ char *path = NULL;
        int r = bus_job_path(job_id, &path);
        return r < 0 ? r : emit_object_removed(b, path, CONTROL_BUS_JOB_INTERFACE);
}

static void emit_change(Bus *b, const BusChange *ch) {
        bool job = ch->kind == BUS_OBJECT_JOB;
        int r;

        if (ch->removed)
                r = emit_object_removed(b, ch->path, job ? CONTROL_BUS_JOB_INTERFACE : CONTROL_BUS_WORKER_INTERFACE);
        else if (ch->added)
                r = sd_bus_emit_object_added(b->bus, ch->path);
        else if (job)
                r = emit_job_changed(b, ch);
        else
                /* NULL: every property that emits a change: Status, Draining, Capabilities, Version, Slots, GPUs. */
                r = sd_bus_emit_properties_changed_strv(b->bus, ch->path, CONTROL_BUS_WORKER_INTERFACE, NULL);
        /* -ENOENT: the object is gone already (retention); nobody can be told about it. */
        if (r < 0 && r != -ENOENT)
                log_debug_errno(r, "Failed to announce the change of %s %s on D-Bus: %m", job ? "job" : "worker",
                                ch->id);
}

void bus_objects_jobs_deleted(void *userdata, char *const *job_ids) {
        Bus *b = userdata;
        int r;

        if (!b || !b->bus || !b->name_owned)
                return;
        bus_objects_flush_cache(b);
        if (bus_lagging(b)) {
                b->c->counters.bus_events_dropped += strv_length(job_ids);
                return;
        }
        STRV_FOREACH (id, (char **) job_ids) {
                r = emit_job_removed(b, *id);
                if (r < 0)
                        log_debug_errno(r, "Failed to announce the removal of job %s on D-Bus: %m", *id);
        }
        /* QueueDepth counts terminal jobs too, and no audit event per deleted job says it moved. */
        b->counts_dirty = true;
        r = bus_schedule_emit(b);
        if (r < 0)
                log_warning_errno(r, "Failed to queue the D-Bus announcement of the counters: %m");
}

void bus_objects_emit_queued(Bus *b) {
        b->emitting = true;
        for (size_t i = 0; i < b->n_changes; i++)
                emit_change(b, b->changes[i]);
        b->emitting = false;
        bus_objects_queue_clear(b);
        /* The rows loaded for InterfacesAdded and the workers are stale once the next change commits. */
        bus_objects_flush_cache(b);
}
