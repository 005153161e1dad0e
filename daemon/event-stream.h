/* event-stream.h: GET /events/stream, the audit trail as server-sent events for live following
 * (the dashboard, `entropyctl events --follow`).
 *
 * One EventStream per control plane is registered with control_add_listener(): every audit event
 * that commits is formatted once as
 *
 *     id: <event id>\nevent: <event name>\ndata: <the event's JSON, as GET /events gives it>\n\n
 *
 * and queued to each subscriber whose filters it matches. A subscriber that sends Last-Event-ID
 * (or ?since_id=) first receives the stored events after that id, oldest first, so that a client
 * that reconnects misses nothing. Comments (": keepalive") are sent every heartbeat interval so
 * that proxies keep the connection and dead clients are noticed.
 *
 * Bounds: at most max_subscribers streams (503 beyond); each subscriber's queue holds at most
 * queue_max bytes. A subscriber too slow to keep up is not allowed to grow the daemon's memory:
 * once its queue is full it gets no new events, receives what is queued and its stream ends;
 * it reconnects with the Last-Event-ID of the last event it received and catches up from the
 * store. The backlog is sent whole, however long the gap: it is read from the store oldest first,
 * backlog_max events at a time, each page when the client has taken the previous one (so memory
 * stays bounded by a page), and live events join once the paging has reached the end.
 *
 * Transport: the response is streamed by libmicrohttpd (MHD_create_response_from_callback with
 * event_stream_read / event_stream_subscriber_free). When a subscriber's queue is empty the reader
 * suspends its connection (MHD_suspend_connection) and a new event or heartbeat resumes it, so
 * an idle stream costs no CPU. The HTTP server must therefore run MHD with
 * MHD_ALLOW_SUSPEND_RESUME, and event_stream_close_all() must run before MHD_stop_daemon()
 * (libmicrohttpd refuses to stop with suspended connections) and when a graceful drain starts
 * (a stream never finishes on its own). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "control.h"
#include "http-server.h"
#include "macro.h"
#include "time-util.h"

typedef struct EventStream EventStream;
typedef struct EventSubscriber EventSubscriber;

#define EVENT_STREAM_MAX_SUBSCRIBERS_DEFAULT 32
#define EVENT_STREAM_QUEUE_MAX_DEFAULT ((size_t) 1024 * 1024)
#define EVENT_STREAM_HEARTBEAT_DEFAULT (5 * USEC_PER_SEC)
#define EVENT_STREAM_BACKLOG_MAX_DEFAULT 500
/* What a client waits before reconnecting (the SSE retry field). */
#define EVENT_STREAM_RETRY_MSEC 2000

typedef struct EventStreamLimits {
        unsigned max_subscribers; /* 0: the default */
        size_t queue_max;         /* bytes per subscriber; 0: the default */
        usec_t heartbeat;         /* 0: the default */
        size_t backlog_max;       /* events read from the store per backlog page; 0: the default */
} EventStreamLimits;

/* Registers the listener on c and a heartbeat timer on c->event. limits may be NULL. The listener
 * cannot be removed from c: free the EventStream only once nothing emits events any more (after
 * the store's last transaction), and after the HTTP server is gone. */
int event_stream_new(Control *c, const EventStreamLimits *limits, EventStream **ret);
EventStream *event_stream_free(EventStream *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(EventStream *, event_stream_free);

/* Resuming a suspended connection (MHD_resume_connection) does not wake an event loop that drives
 * libmicrohttpd from outside (no internal thread, so no ITC): someone must call MHD_run() again.
 * The EventStream calls wake(userdata) after resuming connections; the HTTP server's
 * http_server_wake() (which schedules its MHD_run) is meant for it. Without a wake, streams only
 * move when other HTTP traffic runs the server. */
typedef void (*EventStreamWake)(void *userdata);
void event_stream_set_wake(EventStream *s, EventStreamWake wake, void *userdata);

/* Ends every stream (each still gets what is queued) and refuses new ones with 503. Resumes all
 * suspended connections, as libmicrohttpd requires before MHD_stop_daemon(). */
void event_stream_close_all(EventStream *s);

/* GET /events/stream: validates the request (Last-Event-ID or ?since_id=, and the filters
 * ?job_id= &worker_id= &event= &component=), queues the backlog and registers a subscriber.
 *   0  *ret is the new subscriber: answer 200 text/event-stream with a streamed body read by
 *      event_stream_read(*ret, ...) and freed by event_stream_subscriber_free(*ret) (which the
 *      caller also calls itself if it cannot start the response)
 *   1  resp holds an error answer (400 bad id or filter, 503 too many streams or closing)
 *   <0 failure (-ENOMEM, a database error): the route layer answers 500 */
int event_stream_subscribe(EventStream *s, const HttpRequest *req, HttpResponse *resp, EventSubscriber **ret);

/* The whole handler on an EventStream: event_stream_subscribe(), then resp becomes a 200
 * text/event-stream answer streamed through resp->stream_read/stream_free (http-server.h).
 * Returns 0 once resp is filled, negative as event_stream_subscribe(). */
int event_stream_serve(EventStream *s, const HttpRequest *req, HttpResponse *resp);

/* A libmicrohttpd MHD_ContentReaderCallback: copies queued bytes; when none are queued, suspends
 * the connection and returns 0 (it is resumed when there is more); MHD_CONTENT_READER_END_OF_STREAM
 * once the stream is ended and drained. */
ssize_t event_stream_read(void *userdata, uint64_t pos, char *buf, size_t max);
/* A MHD_ContentReaderFreeCallback: the connection is done; unregisters and frees the subscriber. */
void event_stream_subscriber_free(void *userdata);

size_t event_stream_n_subscribers(const EventStream *s);
/* Number of subscribers dropped because their queue overflowed (since start). */
uint64_t event_stream_n_dropped(const EventStream *s);
/* Both as Prometheus metrics (entropy_event_stream_subscribers, _dropped_total), for GET /metrics. */
int event_stream_write_metrics(const EventStream *s, FILE *f);
