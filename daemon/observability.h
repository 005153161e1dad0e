/* observability.h: how the observability parts (issue 9) plug into the control plane: the live
 * metrics (metrics-histogram.h), the event stream (event-stream.h), the dashboard's files
 * (ui-static.h) and the one admin endpoint the dashboard needs that the wire contract lacks
 * (POST /drain). Each function here only adapts a Control to those modules, which know nothing
 * of Control's fields and are tested on their own.
 *
 * GET /metrics and GET /next-job call metrics-histogram.h directly (it is in the core library):
 *   write_metrics():   r = live_metrics_write(c->live_metrics, now_monotonic_usec(), f);
 *   api_get_next_job(): live_metrics_observe_claim(c->live_metrics, <jobs_claim() duration>, j,
 *                                                  control_now(c));
 * observability_setup() adds the event stream's metrics to what live_metrics_write() writes.
 *
 * It needs, in control.h: `EventStream *event_stream;` and `LiveMetrics *live_metrics;` in
 * Control, `char *ui_directory;` in ControlSettings (option "ui-directory"). */
#pragma once

#include "control.h"
#include "http-server.h"

/* In main(), once c->event and the store exist and before the HTTP server starts: creates
 * c->live_metrics and c->event_stream and registers their listeners. */
int observability_setup(Control *c);
/* When shutdown begins, before http_server_drain() (a stream never ends on its own, so the drain
 * would wait for its timeout) and in any case before http_server_free() (libmicrohttpd must not
 * be stopped with suspended connections). */
void observability_close_streams(Control *c);
/* After the HTTP server is freed and the last transaction is done (the listeners stay registered
 * in c and must not be called afterwards). */
void observability_free(Control *c);

/* Handlers for the route table (http-api.c). */
int api_get_events_stream(Control *c, const HttpRequest *req, HttpResponse *resp); /* admin */
int api_post_drain(Control *c, const HttpRequest *req, HttpResponse *resp);        /* admin */
int ui_serve(Control *c, const HttpRequest *req, HttpResponse *resp);              /* public */
