/* job-json.c: JSON forms of jobs, workers and audit events, field names as in the wire contract. */
#include <string.h>

#include "job-json.h"
#include "json-util.h"

static void add_age(json_object *o, const char *key, usec_t seen, usec_t now) {
        json_add_double(o, key, seen && now > seen ? (double) (now - seen) / (double) USEC_PER_SEC : 0.0);
}

static void add_artifacts(json_object *o, const Job *j) {
        json_add_int64(o, "completion_seq", j->completion_seq);
        json_add_string(o, "result_summary", j->result_summary);
        json_add_string(o, "artifact_id", j->artifact_id);
        json_add_string(o, "stdout_path", j->stdout_path);
        json_add_string(o, "stderr_path", j->stderr_path);
        json_add_string(o, "stdout_sha256", j->stdout_sha256);
        json_add_string(o, "stderr_sha256", j->stderr_sha256);
        json_add_string(o, "artifact_backend", j->artifact_backend);
        json_add_string(o, "artifact_location", j->artifact_location);
        json_add_string(o, "artifact_upload_state", j->artifact_upload_state);
        json_add_string(o, "artifact_upload_error", j->artifact_upload_error);
}

json_object *job_to_json(const Job *j, usec_t now) {
        json_object *o = json_object_new_object();
        if (!o)
                return NULL;
        json_add_string(o, "job_id", j->job_id);
        json_add_string(o, "status", job_state_to_string(j->status));
        json_add_string(o, "command", j->command);
        json_add_strv(o, "args", j->args);
        json_add_string(o, "working_dir", j->working_dir);
        json_add_int64(o, "timeout_ms", j->timeout_ms);
        json_add_int64(o, "priority", j->priority);
        json_add_time(o, "scheduled_at", j->scheduled_at);
        json_add_bool(o, "needs_gpu", j->needs_gpu);
        json_add_strv(o, "requirements", j->requirements);
        json_add_time(o, "created_at", j->created_at);
        json_add_time(o, "updated_at", j->updated_at);
        json_add_int64(o, "attempt_count", j->attempt_count);
        json_add_int64(o, "max_attempts", j->max_attempts);
        json_add_string(o, "worker_id", j->worker_id);
        json_add_string(o, "assignment_id", j->assignment_id);
        json_add_time(o, "assignment_expires_at", j->assignment_expires_at);
        json_add_time(o, "retry_at", j->retry_at);
        json_add_string(o, "last_error", j->last_error);
        json_add_string(o, "result_path", j->result_path);
        if (j->has_exit_code)
                json_add_int64(o, "exit_code", j->exit_code);
        else
                json_add_string(o, "exit_code", NULL);
        json_add_string(o, "updated_by", j->updated_by);
        add_artifacts(o, j);
        if (j->worker_last_seen)
                add_age(o, "heartbeat_age_sec", j->worker_last_seen, now);
        return o;
}

json_object *job_assignment_to_json(const Job *j) {
        json_object *o = json_object_new_object();
        if (!o)
                return NULL;
        json_add_string(o, "job_id", j->job_id);
        json_add_string(o, "command", j->command);
        json_add_strv(o, "args", j->args);
        json_add_string(o, "working_dir", j->working_dir);
        json_add_int64(o, "timeout_ms", j->timeout_ms);
        json_add_int64(o, "attempt_count", j->attempt_count);
        json_add_int64(o, "max_attempts", j->max_attempts);
        json_add_string(o, "assignment_id", j->assignment_id);
        json_add_time(o, "assignment_expires_at", j->assignment_expires_at);
        json_add_int64(o, "priority", j->priority);
        json_add_bool(o, "needs_gpu", j->needs_gpu);
        json_add_strv(o, "requirements", j->requirements);
        return o;
}

json_object *worker_to_json(const Worker *w, usec_t now) {
        json_object *o = json_object_new_object();
        if (!o)
                return NULL;
        json_add_string(o, "worker_id", w->worker_id);
        json_add_string(o, "status", worker_state_to_string(w->state));
        json_add_string(o, "current_job_id", w->current_job_id);
        json_add_strv(o, "capabilities", w->capabilities);
        if (w->metrics) {
                json_object *m = json_tokener_parse(w->metrics);
                if (m)
                        json_object_object_add(o, "heartbeat_metrics", m);
        }
        json_add_time(o, "last_seen", w->last_seen);
        json_add_time(o, "registered_at", w->registered_at);
        add_age(o, "heartbeat_age_sec", w->last_seen, now);
        json_add_string(o, "instance_id", w->instance_id);
        json_add_int64(o, "heartbeat_seq", w->heartbeat_seq);
        json_add_bool(o, "draining", w->draining);
        json_add_string(o, "version", w->version);
        if (w->slots > 0)
                json_add_int64(o, "slots", w->slots);
        if (w->gpus)
                json_add_strv(o, "gpus", w->gpus);
        if (w->wake_port > 0) {
                json_add_int64(o, "wake_port", w->wake_port);
                json_add_string(o, "wake_address", w->wake_address);
        }
        return o;
}

json_object *audit_event_to_json(const AuditEvent *e) {
        json_object *o = json_object_new_object();
        if (!o)
                return NULL;
        json_add_int64(o, "id", e->id);
        json_add_time(o, "ts", e->ts);
        json_add_string(o, "component", e->component);
        json_add_string(o, "level", audit_level_to_string(e->level));
        json_add_string(o, "event", e->event);
        json_add_string(o, "message", e->message);
        if (e->request_id)
                json_add_string(o, "request_id", e->request_id);
        if (e->worker_id)
                json_add_string(o, "worker_id", e->worker_id);
        if (e->job_id)
                json_add_string(o, "job_id", e->job_id);
        if (e->assignment_id)
                json_add_string(o, "assignment_id", e->assignment_id);
        json_object *d = e->details ? json_tokener_parse(e->details) : NULL;
        json_object_object_add(o, "details", d ? d : json_object_new_object());
        return o;
}
