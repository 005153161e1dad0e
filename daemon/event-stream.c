/* event-stream.c: GET /events/stream, audit events as server-sent events (see event-stream.h):
 * the hub that formats each committed event once and queues it to the matching subscribers, the
 * per-subscriber byte queues with their bound, the backlog from the store on connect, the
 * heartbeat, and libmicrohttpd's content-reader side with suspend/resume. */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "event-stream.h"
#include "job-json.h"
#include "json-util.h"
#include "list.h"
#include "log.h"
#include "protocol.h"
#include "store.h"

struct EventSubscriber {
        EventStream *hub; /* NULL once the hub is gone: the stream then just ends */
        EventSubscriber *prev, *next;
        struct MHD_Connection *connection;

        /* Bytes not yet handed to libmicrohttpd: buf[start, size). */
        char *buf;
        size_t start, size, allocated;

        bool suspended; /* by event_stream_read(), waiting for more */
        bool resuming;  /* resumed, but libmicrohttpd has not read from it since */
        bool ending;    /* takes no more: send what is queued, then end the stream */
        bool paging;    /* catching up from the store: live events are read there, not queued */
        int64_t cursor; /* id of the last event queued (or paged past) */

        /* Filters; NULL matches anything. */
        char *job_id, *worker_id, *event, *component;
};

struct EventStream {
        Control *control;
        EventStreamLimits limits;
        EventSubscriber *subscribers;
        size_t n_subscribers;
        uint64_t n_dropped;
        bool closing;
        sd_event_source *heartbeat;
        EventStreamWake wake;
        void *wake_userdata;
        sd_event_source *wake_defer; /* calls wake from the loop, outside libmicrohttpd */
};

/* ---- subscriber queues ---------------------------------------------------------------------- */

static size_t queue_pending(const EventSubscriber *sub) {
        return sub->size - sub->start;
}

/* Appends bytes; bounded only by the caller (queue_offer() for live events). */
static int queue_append(EventSubscriber *sub, const char *data, size_t n) {
        if (sub->start > 0 && sub->start == sub->size)
                sub->start = sub->size = 0;
        if (sub->size + n > sub->allocated && sub->start > 0) {
                /* Reuse the space already sent before growing. */
                memmove(sub->buf, sub->buf + sub->start, queue_pending(sub));
                sub->size -= sub->start;
                sub->start = 0;
        }
        if (sub->size + n > sub->allocated) {
                size_t want = MAX(sub->allocated * 2, MAX(sub->size + n, (size_t) 4096));
                char *p = realloc(sub->buf, want);
                if (!p)
                        return -ENOMEM;
                sub->buf = p;
                sub->allocated = want;
        }
        memcpy(sub->buf + sub->size, data, n);
        sub->size += n;
        return 0;
}

/* Asks for an MHD_run() (see event_stream_set_wake()). Not at once: this may run inside one of
 * libmicrohttpd's callbacks (an audit event committed by an HTTP handler), and a server that
 * re-arms its timer from MHD_get_timeout() after MHD_run() would overwrite the request. A defer
 * source runs after the current dispatch, outside libmicrohttpd. */
static void hub_wake(EventStream *s) {
        if (!s || !s->wake)
                return;
        if (!s->wake_defer || sd_event_source_set_enabled(s->wake_defer, SD_EVENT_ONESHOT) < 0)
                s->wake(s->wake_userdata);
}

static int on_wake_defer(sd_event_source *src, void *userdata) {
        EventStream *s = userdata;
        s->wake(s->wake_userdata);
        return 0;
}

static void subscriber_wake(EventSubscriber *sub) {
        if (sub->suspended) {
                sub->suspended = false;
                sub->resuming = true;
                MHD_resume_connection(sub->connection);
        }
        /* Until libmicrohttpd has taken the connection back, every new byte asks again: a wake
         * lost on the way must not strand the stream. */
        if (sub->resuming)
                hub_wake(sub->hub);
}

/* Ends a subscriber's stream after what is queued. */
static void subscriber_end(EventSubscriber *sub) {
        sub->ending = true;
        subscriber_wake(sub);
}

/* A live event or heartbeat for one subscriber. A queue that would pass its bound means the client
 * cannot keep up: rather than grow or silently skip, end its stream, so that it reconnects with
 * the id of the last event it got and catches up from the store. */
static void queue_offer(EventStream *s, EventSubscriber *sub, const char *data, size_t n) {
        if (sub->ending)
                return;
        if (queue_pending(sub) + n > s->limits.queue_max || queue_append(sub, data, n) < 0) {
                s->n_dropped++;
                log_info("Event stream subscriber too slow (%zu bytes queued); ending its stream.",
                         queue_pending(sub));
                subscriber_end(sub);
                return;
        }
        subscriber_wake(sub);
}

static bool filter_matches(const char *want, const char *have) {
        return !want || streq_ptr(want, have);
}

static bool subscriber_matches(const EventSubscriber *sub, const AuditEvent *e) {
        return filter_matches(sub->job_id, e->job_id) && filter_matches(sub->worker_id, e->worker_id) &&
               filter_matches(sub->event, e->event) && filter_matches(sub->component, e->component);
}

/* ---- formatting ----------------------------------------------------------------------------- */

/* "id: ..\nevent: ..\ndata: ..\n\n". The JSON is printed plain (json-c escapes newlines inside
 * strings), so it is one data line. Event names come from audit.c's fixed table; anything else
 * with a line break is not sent as a name. */
static int event_format(const AuditEvent *e, char **ret, size_t *ret_size) {
        _cleanup_json_ json_object *o = audit_event_to_json(e);
        const char *name = e->event && !strpbrk(e->event, "\r\n") ? e->event : "message";
        char *text;
        int n;

        if (!o)
                return -ENOMEM;
        n = asprintf(&text, "id: %" PRId64 "\nevent: %s\ndata: %s\n\n", e->id, name,
                     json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        if (n < 0)
                return -ENOMEM;
        *ret = text;
        *ret_size = (size_t) n;
        return 0;
}

/* ---- the hub -------------------------------------------------------------------------------- */

static void on_audit_event(void *userdata, const AuditEvent *e) {
        EventStream *s = userdata;
        _cleanup_free_ char *text = NULL;
        size_t n = 0;
        int r;

        if (!s->subscribers)
                return;
        r = event_format(e, &text, &n);
        if (r < 0) {
                /* The subscribers would silently miss it: end their streams so they catch up. */
                log_warning_errno(r, "Failed to format event %" PRId64 " for the event streams: %m", e->id);
                for (EventSubscriber *sub = s->subscribers; sub; sub = sub->next)
                        subscriber_end(sub);
                return;
        }
        for (EventSubscriber *sub = s->subscribers; sub; sub = sub->next) {
                /* A subscriber still paging its backlog reads this one from the store in turn. */
                if (sub->paging || e->id <= sub->cursor || !subscriber_matches(sub, e))
                        continue;
                sub->cursor = e->id;
                queue_offer(s, sub, text, n);
        }
}

static void heartbeat_update(EventStream *s) {
        int r;

        if (!s->heartbeat)
                return;
        if (s->n_subscribers == 0) {
                (void) sd_event_source_set_enabled(s->heartbeat, SD_EVENT_OFF);
                return;
        }
        if (sd_event_source_get_enabled(s->heartbeat, NULL) > 0)
                return; /* already ticking */
        r = sd_event_source_set_time_relative(s->heartbeat, s->limits.heartbeat);
        if (r >= 0)
                r = sd_event_source_set_enabled(s->heartbeat, SD_EVENT_ONESHOT);
        if (r < 0)
                log_warning_errno(r, "Failed to arm the event stream heartbeat: %m");
}

/* A comment line every interval: keeps proxies from timing the stream out and, because it makes
 * libmicrohttpd write, finds clients that went away (a suspended connection notices nothing). */
static int on_heartbeat(sd_event_source *src, uint64_t usec, void *userdata) {
        static const char beat[] = ": keepalive\n\n";
        EventStream *s = userdata;

        for (EventSubscriber *sub = s->subscribers; sub; sub = sub->next)
                queue_offer(s, sub, beat, sizeof(beat) - 1);
        heartbeat_update(s);
        return 0;
}

int event_stream_new(Control *c, const EventStreamLimits *limits, EventStream **ret) {
        _cleanup_(event_stream_freep) EventStream *s = NULL;
        int r;

        assert(c && ret);
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->control = c;
        if (limits)
                s->limits = *limits;
        if (s->limits.max_subscribers == 0)
                s->limits.max_subscribers = EVENT_STREAM_MAX_SUBSCRIBERS_DEFAULT;
        if (s->limits.queue_max == 0)
                s->limits.queue_max = EVENT_STREAM_QUEUE_MAX_DEFAULT;
        if (s->limits.heartbeat == 0)
                s->limits.heartbeat = EVENT_STREAM_HEARTBEAT_DEFAULT;
        if (s->limits.backlog_max == 0)
                s->limits.backlog_max = EVENT_STREAM_BACKLOG_MAX_DEFAULT;

        if (c->event) {
                r = sd_event_add_time_relative(c->event, &s->heartbeat, CLOCK_MONOTONIC, s->limits.heartbeat, 0,
                                               on_heartbeat, s);
                if (r < 0)
                        return log_error_errno(r, "Failed to add the event stream heartbeat timer: %m");
                (void) sd_event_source_set_description(s->heartbeat, "event-stream-heartbeat");
                (void) sd_event_source_set_enabled(s->heartbeat, SD_EVENT_OFF);
        }
        r = control_add_listener(c, on_audit_event, s);
        if (r < 0)
                return log_error_errno(r, "Failed to listen to audit events for the event stream: %m");
        *ret = TAKE_PTR(s);
        return 0;
}

void event_stream_set_wake(EventStream *s, EventStreamWake wake, void *userdata) {
        s->wake = wake;
        s->wake_userdata = userdata;
        if (!wake || s->wake_defer || !s->control->event)
                return;
        if (sd_event_add_defer(s->control->event, &s->wake_defer, on_wake_defer, s) < 0 ||
            sd_event_source_set_enabled(s->wake_defer, SD_EVENT_OFF) < 0) {
                log_warning("Failed to add the event stream's wake source; waking the HTTP server directly.");
                s->wake_defer = sd_event_source_disable_unref(s->wake_defer);
                return;
        }
        (void) sd_event_source_set_description(s->wake_defer, "event-stream-wake");
}

void event_stream_close_all(EventStream *s) {
        if (!s)
                return;
        s->closing = true;
        for (EventSubscriber *sub = s->subscribers; sub; sub = sub->next)
                subscriber_end(sub);
}

EventStream *event_stream_free(EventStream *s) {
        if (!s)
                return NULL;
        /* Subscribers belong to their MHD responses; they only forget the hub. */
        for (EventSubscriber *sub = s->subscribers, *next; sub; sub = next) {
                next = sub->next;
                subscriber_end(sub);
                sub->hub = NULL;
                sub->prev = sub->next = NULL;
        }
        s->heartbeat = sd_event_source_disable_unref(s->heartbeat);
        s->wake_defer = sd_event_source_disable_unref(s->wake_defer);
        free(s);
        return NULL;
}

size_t event_stream_n_subscribers(const EventStream *s) {
        return s ? s->n_subscribers : 0;
}

uint64_t event_stream_n_dropped(const EventStream *s) {
        return s ? s->n_dropped : 0;
}

int event_stream_write_metrics(const EventStream *s, FILE *f) {
        fputs("# HELP entropy_event_stream_subscribers Open GET /events/stream connections.\n"
              "# TYPE entropy_event_stream_subscribers gauge\n", f);
        fprintf(f, "entropy_event_stream_subscribers %zu\n", event_stream_n_subscribers(s));
        fputs("# HELP entropy_event_stream_dropped_total Event streams ended because the client fell too far behind.\n"
              "# TYPE entropy_event_stream_dropped_total counter\n", f);
        fprintf(f, "entropy_event_stream_dropped_total %" PRIu64 "\n", event_stream_n_dropped(s));
        return ferror(f) ? -EIO : 0;
}

/* ---- subscribing ---------------------------------------------------------------------------- */

static void subscriber_unlink(EventSubscriber *sub) {
        EventStream *s = sub->hub;

        if (!s)
                return;
        LIST_REMOVE(s->subscribers, sub, next, prev);
        sub->hub = NULL;
        assert(s->n_subscribers > 0);
        s->n_subscribers--;
        heartbeat_update(s);
}

void event_stream_subscriber_free(void *userdata) {
        EventSubscriber *sub = userdata;

        if (!sub)
                return;
        subscriber_unlink(sub);
        free(sub->buf);
        free(sub->job_id);
        free(sub->worker_id);
        free(sub->event);
        free(sub->component);
        free(sub);
}

static int subscriber_page(EventStream *s, EventSubscriber *sub);

ssize_t event_stream_read(void *userdata, uint64_t pos, char *buf, size_t max) {
        EventSubscriber *sub = userdata;
        size_t n = MIN(queue_pending(sub), max);

        sub->resuming = false;
        if (n == 0 && sub->paging && sub->hub && !sub->ending) {
                int r = subscriber_page(sub->hub, sub);
                if (r < 0) {
                        log_warning_errno(r, "Failed to read the event stream's backlog: %m");
                        sub->ending = true; /* the client reconnects with its Last-Event-ID */
                }
                n = MIN(queue_pending(sub), max);
        }
        if (n > 0) {
                memcpy(buf, sub->buf + sub->start, n);
                sub->start += n;
                return (ssize_t) n;
        }
        if (sub->ending || !sub->hub)
                return MHD_CONTENT_READER_END_OF_STREAM;
        /* Nothing to send: park the connection until an event or heartbeat resumes it, instead
         * of having libmicrohttpd call back in a busy loop. */
        MHD_suspend_connection(sub->connection);
        sub->suspended = true;
        return 0;
}

/* "123" -> 123; anything else (sign, junk, overflow) is -EINVAL. */
static int parse_event_id(const char *s, int64_t *ret) {
        char *end;
        long long v;

        if (isempty(s) || s[0] < '0' || s[0] > '9')
                return -EINVAL;
        errno = 0;
        v = strtoll(s, &end, 10);
        if (errno != 0 || *end != 0 || v < 0)
                return -EINVAL;
        *ret = v;
        return 0;
}

/* The filter query arguments, validated like GET /events's. */
static int subscriber_set_filters(EventSubscriber *sub, const HttpRequest *req, const char **ret_bad) {
        static const struct {
                const char *key;
                size_t offset;
        } keys[] = {
                { "job_id", offsetof(EventSubscriber, job_id) },
                { "worker_id", offsetof(EventSubscriber, worker_id) },
                { "event", offsetof(EventSubscriber, event) },
                { "component", offsetof(EventSubscriber, component) },
        };

        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                const char *v = http_request_query(req, keys[i].key);
                /* Empty means no filter, as GET /events takes it. */
                if (isempty(v))
                        continue;
                if (strlen(v) > LIMIT_ID_LEN) {
                        *ret_bad = keys[i].key;
                        return -EINVAL;
                }
                char *copy = strdup(v);
                if (!copy)
                        return -ENOMEM;
                *(char **) ((char *) sub + keys[i].offset) = copy;
        }
        return 0;
}

/* The client's Last-Event-ID is ahead of every stored event: the database was restored from a
 * backup or replaced. Left there, the cursor would drop every live event until the ids caught
 * up; instead the client is told (it reloads what it shows) and follows from the newest id. */
static int subscriber_truncate(EventSubscriber *sub, int64_t newest) {
        char text[256];
        int n = snprintf(text, sizeof(text),
                         "id: %" PRId64 "\nevent: truncated\ndata: {\"newest_id\":%" PRId64
                         ",\"reason\":\"Last-Event-ID %" PRId64 " is ahead of the newest stored event\"}\n\n",
                         newest, newest, sub->cursor);
        sub->cursor = newest;
        sub->paging = false;
        return queue_append(sub, text, (size_t) n);
}

/* The stored events after the cursor that match the subscriber's filters, oldest first, one page
 * (backlog_max events) at a time: the next page is read when the client has taken this one
 * (event_stream_read()), so a long gap is sent whole without a queue that grows with it. Only
 * committed events are read (until the store's last committed id: a group commit may have a
 * batch open), and live events are left to the paging until it reaches the end. */
static int subscriber_page(EventStream *s, EventSubscriber *sub) {
        EventFilter f = {
                .component = sub->component, .event = sub->event, .worker_id = sub->worker_id,
                .job_id = sub->job_id, .since_id = sub->cursor,
                .until_id = s->control->store->committed_event_id,
                .limit = (int64_t) s->limits.backlog_max, .oldest_first = true,
        };
        AuditEvent **events = NULL;
        size_t n = 0;
        int r;

        if (f.until_id < sub->cursor)
                return subscriber_truncate(sub, f.until_id);
        if (f.until_id == sub->cursor) {
                sub->paging = false;
                return 0;
        }
        r = audit_list(s->control, &f, &events, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; r >= 0 && i < n; i++) {
                _cleanup_free_ char *text = NULL;
                size_t len;
                r = event_format(events[i], &text, &len);
                if (r >= 0)
                        r = queue_append(sub, text, len);
                if (r >= 0)
                        sub->cursor = events[i]->id;
        }
        /* A short page: everything committed is queued; from here live events come in order. */
        if (r >= 0 && n < s->limits.backlog_max) {
                sub->paging = false;
                sub->cursor = MAX(sub->cursor, f.until_id);
        }
        audit_event_array_free(events, n);
        return r;
}

static int subscriber_send_backlog(EventStream *s, EventSubscriber *sub, int64_t since_id) {
        sub->paging = true;
        sub->cursor = since_id;
        return subscriber_page(s, sub);
}

/* Last-Event-ID (a reconnecting client) wins over ?since_id= (a first connection). */
static int request_since_id(const HttpRequest *req, bool *ret_has, int64_t *ret) {
        const char *v = http_request_header(req, "Last-Event-ID");

        if (!v)
                v = http_request_query(req, "since_id");
        *ret_has = v != NULL;
        *ret = 0;
        return v ? parse_event_id(v, ret) : 0;
}

int event_stream_subscribe(EventStream *s, const HttpRequest *req, HttpResponse *resp, EventSubscriber **ret) {
        EventSubscriber *sub;
        const char *bad = NULL;
        bool has_since;
        int64_t since_id;
        char hello[64];
        int r, k;

        assert(s && req && resp && ret);
        if (request_since_id(req, &has_since, &since_id) < 0)
                return http_response_error(resp, 400, "Last-Event-ID and since_id must be an event id") ?: 1;
        if (s->closing)
                return http_response_error(resp, 503, "the control plane is stopping") ?: 1;
        if (s->n_subscribers >= s->limits.max_subscribers)
                return http_response_error(resp, 503, "too many event streams open (at most %u)",
                                           s->limits.max_subscribers) ?: 1;

        sub = calloc(1, sizeof(*sub));
        if (!sub)
                return -ENOMEM;
        sub->connection = req->connection;
        r = subscriber_set_filters(sub, req, &bad);
        if (r == -EINVAL) {
                event_stream_subscriber_free(sub);
                return http_response_error(resp, 400, "invalid %s", bad) ?: 1;
        }
        /* The retry field first, and something to send at once so that the client gets the
         * response headers now rather than with the first event. */
        k = snprintf(hello, sizeof(hello), "retry: %u\n: entropy event stream\n\n", EVENT_STREAM_RETRY_MSEC);
        if (r >= 0)
                r = queue_append(sub, hello, (size_t) k);
        if (r >= 0 && has_since)
                r = subscriber_send_backlog(s, sub, since_id);
        if (r < 0) {
                event_stream_subscriber_free(sub);
                return r;
        }

        sub->hub = s;
        LIST_PREPEND(s->subscribers, sub, next, prev);
        s->n_subscribers++;
        heartbeat_update(s);
        *ret = sub;
        return 0;
}

int event_stream_serve(EventStream *s, const HttpRequest *req, HttpResponse *resp) {
        EventSubscriber *sub = NULL;
        int r;

        r = event_stream_subscribe(s, req, resp, &sub);
        if (r != 0)
                return r < 0 ? r : 0;
        r = http_response_text(resp, 200, "text/event-stream; charset=utf-8", NULL, 0);
        if (r >= 0)
                /* Reverse proxies (nginx) would otherwise hold events back to fill a buffer. */
                r = http_response_add_header(resp, "X-Accel-Buffering", "no");
        if (r < 0) {
                event_stream_subscriber_free(sub);
                return r;
        }
        /* From here the response owns the subscriber: http_response_done() or libmicrohttpd
         * calls stream_free. */
        resp->stream_read = event_stream_read;
        resp->stream_free = event_stream_subscriber_free;
        resp->stream_userdata = sub;
        return 0;
}
