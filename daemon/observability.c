/* observability.c: the observability parts wired to the control plane's context (see
 * observability.h). */
#include <errno.h>

#include "api-util.h"
#include "event-stream.h"
#include "log.h"
#include "metrics-histogram.h"
#include "observability.h"
#include "ui-static.h"
#include "workers.h"

/* c->http is looked up at each wake: the streams exist before the server starts. */
static void wake_http(void *userdata) {
        Control *c = userdata;
        http_server_wake(c->http);
}

static int write_stream_metrics(const void *userdata, FILE *f) {
        return event_stream_write_metrics(userdata, f);
}

int observability_setup(Control *c) {
        int r;

        r = live_metrics_new(&c->live_metrics);
        if (r < 0)
                return log_oom();
        r = control_add_listener(c, live_metrics_listener, c->live_metrics);
        if (r < 0)
                return log_error_errno(r, "Failed to listen to audit events for the metrics: %m");
        r = event_stream_new(c, NULL, &c->event_stream);
        if (r < 0)
                return r;
        event_stream_set_wake(c->event_stream, wake_http, c);
        r = live_metrics_add_writer(c->live_metrics, write_stream_metrics, c->event_stream);
        if (r < 0)
                return log_error_errno(r, "Failed to add the event stream's metrics: %m");
        return 0;
}

void observability_close_streams(Control *c) {
        event_stream_close_all(c->event_stream);
}

void observability_free(Control *c) {
        c->event_stream = event_stream_free(c->event_stream);
        c->live_metrics = live_metrics_free(c->live_metrics);
}

int api_get_events_stream(Control *c, const HttpRequest *req, HttpResponse *resp) {
        if (!c->event_stream)
                return http_response_error(resp, 503, "event streams are not available");
        return event_stream_serve(c->event_stream, req, resp);
}

int ui_serve(Control *c, const HttpRequest *req, HttpResponse *resp) {
        return ui_serve_directory(c->settings.ui_directory ?: UI_DEFAULT_DIRECTORY, req, resp);
}

/* POST /drain {"worker_id": ..., "drain": true|false (default true)}: stop (or resume) handing
 * new jobs to a worker; what it runs is unaffected. 200 {worker_id, status, draining}. */
int api_post_drain(Control *c, const HttpRequest *req, HttpResponse *resp) {
        _cleanup_json_ json_object *o = NULL;
        _cleanup_(worker_freep) Worker *w = NULL;
        const char *worker_id;
        bool drain = true;
        JsonError jerr = {};
        int r;

        r = api_parse_body(req, resp, &o);
        if (r <= 0)
                return r;
        if (json_get_string(o, "worker_id", LIMIT_ID_LEN, true, &worker_id, &jerr) < 0 ||
            json_get_bool(o, "drain", false, &drain, &jerr) == -EINVAL)
                return api_reply_json_error(resp, &jerr);

        Origin origin = api_origin(req, "admin");
        r = worker_drain(c, &origin, worker_id, drain);
        if (r >= 0)
                r = worker_get(c, worker_id, &w);
        if (r < 0)
                return api_reply_error(resp, r, &(OpError){ .message = "no such worker" });

        json_object *body = json_object_new_object();
        if (!body)
                return -ENOMEM;
        json_add_string(body, "worker_id", w->worker_id);
        json_add_string(body, "status", worker_state_to_string(w->state));
        json_add_bool(body, "draining", w->draining);
        return api_reply(resp, 200, body);
}
