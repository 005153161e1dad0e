/* api.h: the HTTP API's handlers, one per endpoint of the wire contract. The route table and the
 * authentication in front of them live in http-api.c; each handler may assume the caller has the
 * role its route requires, validates everything else, and fills resp (status + JSON). A handler
 * returns 0 once resp is filled (whatever its status), negative only for failures the route layer
 * turns into 500 (e.g. -ENOMEM, a database error). */
#pragma once

#include "control.h"
#include "http-server.h"
#include "ops.h"

typedef int (*ApiHandler)(Control *c, const HttpRequest *req, HttpResponse *resp);

/* Admin endpoints (api-admin.c) */
int api_post_jobs(Control *c, const HttpRequest *req, HttpResponse *resp);
int api_get_jobs(Control *c, const HttpRequest *req, HttpResponse *resp);
int api_get_job(Control *c, const HttpRequest *req, HttpResponse *resp); /* /jobs/{id} */
int api_post_abort(Control *c, const HttpRequest *req, HttpResponse *resp);
int api_get_workers(Control *c, const HttpRequest *req, HttpResponse *resp);
int api_post_remove_worker(Control *c, const HttpRequest *req, HttpResponse *resp);
int api_get_events(Control *c, const HttpRequest *req, HttpResponse *resp);
int api_get_metrics(Control *c, const HttpRequest *req, HttpResponse *resp);

/* Worker endpoints (api-worker.c) */
int api_post_register(Control *c, const HttpRequest *req, HttpResponse *resp);
int api_get_next_job(Control *c, const HttpRequest *req, HttpResponse *resp);
int api_post_ack(Control *c, const HttpRequest *req, HttpResponse *resp);
int api_post_heartbeat(Control *c, const HttpRequest *req, HttpResponse *resp);
int api_post_complete(Control *c, const HttpRequest *req, HttpResponse *resp);
int api_post_fail(Control *c, const HttpRequest *req, HttpResponse *resp);
int api_post_reconnect(Control *c, const HttpRequest *req, HttpResponse *resp);
/* The same on behalf of someone else (D-Bus ReplayResults): the audit trail names `as` as the
 * actor of what the replay changes; NULL: the worker. */
int api_post_reconnect_as(Control *c, const HttpRequest *req, const Origin *as, HttpResponse *resp);

/* Unauthenticated */
int api_get_healthz(Control *c, const HttpRequest *req, HttpResponse *resp);
