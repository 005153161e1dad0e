/* http-server.h: libmicrohttpd driven by the control plane's sd-event loop. The server reads and
 * bounds each request, then hands a complete HttpRequest to one dispatch function and sends back
 * the HttpResponse it fills. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <systemd/sd-event.h>

#include "macro.h"

struct MHD_Connection;

typedef struct HttpRequest {
        const char *method;  /* "GET", "POST", ... */
        const char *path;    /* without the query string */
        const char *body;    /* NUL-terminated; body_size excludes the NUL */
        size_t body_size;
        const char *request_id; /* X-Request-ID as sent (validated), or NULL */
        char remote[64];        /* peer address, for audit of refused requests */
        struct MHD_Connection *connection;
} HttpRequest;

typedef struct HttpResponse {
        unsigned status;
        char *body; /* owned, may be NULL for an empty body */
        size_t body_size;
        const char *content_type; /* static string; defaults to application/json */
} HttpResponse;

/* Query-string argument, or NULL. */
const char *http_request_query(const HttpRequest *req, const char *key);
const char *http_request_header(const HttpRequest *req, const char *name);

/* Fill a response. They return 0, or -ENOMEM. */
int http_response_json(HttpResponse *resp, unsigned status, json_object *body);
int http_response_error(HttpResponse *resp, unsigned status, const char *format, ...) _printf_(3, 4);
int http_response_text(HttpResponse *resp, unsigned status, const char *content_type, char *body, size_t size);
void http_response_done(HttpResponse *resp);
