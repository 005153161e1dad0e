/* http-stub.c: stand-ins for the HTTP server's request and response helpers (http-server.c), so
 * that the core's unit tests call the API handlers without libmicrohttpd. Query arguments come
 * from a TestQuery passed as the request's connection. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core-test-util.h"
#include "json-util.h"

const char *http_request_query(const HttpRequest *req, const char *key) {
        const TestQuery *q = (const TestQuery *) req->connection;
        for (size_t i = 0; q && i < 8 && q->keys[i]; i++)
                if (streq(q->keys[i], key))
                        return q->values[i];
        return NULL;
}

bool http_request_has_query(const HttpRequest *req, const char *key) {
        const TestQuery *q = (const TestQuery *) req->connection;
        for (size_t i = 0; q && i < 8 && q->keys[i]; i++)
                if (streq(q->keys[i], key))
                        return true;
        return false;
}

const char *http_request_header(const HttpRequest *req, const char *name) {
        return NULL;
}

int http_response_text(HttpResponse *resp, unsigned status, const char *content_type, char *body, size_t size) {
        free(resp->body);
        resp->status = status;
        resp->content_type = content_type;
        resp->body = body;
        resp->body_size = body ? size : 0;
        return 0;
}

int http_response_json(HttpResponse *resp, unsigned status, json_object *body) {
        char *copy = strdup(json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN));
        if (!copy)
                return -ENOMEM;
        return http_response_text(resp, status, "application/json", copy, strlen(copy));
}

int http_response_error(HttpResponse *resp, unsigned status, const char *format, ...) {
        char message[512];
        va_list ap;
        va_start(ap, format);
        vsnprintf(message, sizeof(message), format, ap);
        va_end(ap);
        char *body = json_error_body(message);
        if (!body)
                return -ENOMEM;
        return http_response_text(resp, status, "application/json", body, strlen(body));
}

void http_response_done(HttpResponse *resp) {
        free(resp->body);
        *resp = (HttpResponse){};
}

/* Group commit hooks (control-events.c): without a server there is nothing to hold. */
void http_server_set_hold_hooks(HttpServer *s, const HttpHoldHooks *hooks) {
}

void http_server_release_held(HttpServer *s, bool ok) {
}
