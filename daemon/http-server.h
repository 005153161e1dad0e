/* http-server.h: libmicrohttpd driven by the control plane's sd-event loop. The server reads and
 * bounds each request, then hands a complete HttpRequest to one dispatch function and sends back
 * the HttpResponse it fills. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "macro.h"

struct MHD_Connection;
typedef struct HttpTlsConfig HttpTlsConfig;

/* A header or query argument of a request made without a connection (fuzzers, tests). */
typedef struct HttpField {
        const char *name;
        const char *value;
} HttpField;

typedef struct HttpRequest {
        const char *method; /* "GET", "POST", ... */
        const char *path;   /* without the query string */
        const char *body;   /* NUL-terminated; body_size excludes the NUL */
        size_t body_size;
        const char *request_id; /* X-Request-ID as sent (validated), or NULL */
        char remote[64];        /* peer address, for audit of refused requests */
        struct MHD_Connection *connection;
        /* Without a connection, http_request_header() and http_request_query() look here. */
        const HttpField *headers, *query;
        size_t n_headers, n_query;
        /* TLS: tls is set on an HTTPS connection. With client certificates required,
         * peer_identity and peer_names (subject CN first, then SANs, NULL-terminated) are what a
         * verified client certificate proves, and peer_error, when set, is why it did not verify
         * (the route layer refuses the request with it; GET /healthz stays open). */
        bool tls;
        const char *peer_identity;
        char *const *peer_names;
        const char *peer_error;
} HttpRequest;

#define HTTP_RESPONSE_MAX_HEADERS 4

typedef struct HttpResponse {
        unsigned status;
        char *body; /* owned, may be NULL for an empty body */
        size_t body_size;
        const char *content_type; /* static string; defaults to application/json */
        /* Extra headers (e.g. Allow on a 405); names are static strings, values owned. */
        struct {
                const char *name;
                char *value;
        } headers[HTTP_RESPONSE_MAX_HEADERS];
        size_t n_headers;
        /* A streamed body (server-sent events) instead of body: libmicrohttpd calls stream_read
         * (an MHD_ContentReaderCallback) as the client can take more, and stream_free once the
         * connection is done. The request stays in flight until then. */
        ssize_t (*stream_read)(void *userdata, uint64_t pos, char *buf, size_t max);
        void (*stream_free)(void *userdata);
        void *stream_userdata;
} HttpResponse;

/* Query-string argument, or NULL (also for a key given without "=value"). */
const char *http_request_query(const HttpRequest *req, const char *key);
/* Whether the query string names key at all, with a value or without ("?oldest_first"). */
bool http_request_has_query(const HttpRequest *req, const char *key);
const char *http_request_header(const HttpRequest *req, const char *name);

/* Fill a response (replacing whatever it held). They return 0, or -ENOMEM.
 * http_response_json() serializes body and leaves it to the caller (borrowed: put it yourself);
 * http_response_text() takes ownership of body (malloc'd). */
int http_response_json(HttpResponse *resp, unsigned status, json_object *body);
int http_response_error(HttpResponse *resp, unsigned status, const char *format, ...) _printf_(3, 4);
int http_response_text(HttpResponse *resp, unsigned status, const char *content_type, char *body, size_t size);
/* Adds a header (name: a static string; value copied). -E2BIG past HTTP_RESPONSE_MAX_HEADERS. */
int http_response_add_header(HttpResponse *resp, const char *name, const char *value);
void http_response_done(HttpResponse *resp);

/* X-Request-ID as the server accepts it: 1..128 printable ASCII characters. */
#define HTTP_REQUEST_ID_MAX 128
bool http_request_id_valid(const char *id);

/* --- The server ------------------------------------------------------------------------------ */

typedef struct HttpServer HttpServer;

/* Called once per complete request (headers and body read and bounded). It fills resp and returns
 * 0; a negative return becomes a 500 JSON error. */
typedef int (*HttpDispatch)(void *userdata, const HttpRequest *req, HttpResponse *resp);

/* Above the worker's own 10 s limit on a request, so nothing a worker still waits for is cut;
 * half the default lease, so that a server filled with stalled connections takes workers in again
 * well before their leases lapse. */
#define HTTP_REQUEST_TIMEOUT_DEFAULT_USEC (15 * UINT64_C(1000000))

typedef struct HttpServerConfig {
        const char *listen;              /* ADDR:PORT or [ADDR6]:PORT, bound when no socket is passed */
        int listen_fd;                   /* an already listening socket (socket activation), or -1 */
        size_t max_body_size;            /* larger bodies get 413 */
        unsigned max_connections;        /* 0: the library's default */
        unsigned max_connections_per_ip; /* 0: no limit */
        unsigned connection_timeout_sec; /* idle connections are closed after this */
        /* A request's line, headers and body must all be in within this, counted from the
         * connection's accept, or on a kept-alive connection from the previous answer's end plus
         * connection_timeout_sec (the most the client may idle before its next request starts).
         * Else the connection is closed: the idle timeout alone lets a client that sends a byte
         * now and then hold a connection forever. Requests that are in (answers being dispatched,
         * held for a commit, or streamed) are never cut. 0: HTTP_REQUEST_TIMEOUT_DEFAULT_USEC. */
        uint64_t request_timeout_usec;
        size_t connection_memory_limit;  /* per-connection buffer: bounds the request line + headers */
        /* HTTPS when set (http-tls.h): certificate, key, priorities and the client CA that turns
         * client-certificate checking on. NULL serves plain HTTP. */
        const HttpTlsConfig *tls;
} HttpServerConfig;

/* The socket systemd passed (exactly one stream socket expected), or -ENOENT when none was
 * passed. Clears $LISTEN_FDS so that children do not inherit it. */
int http_listen_fd_from_systemd(void);

/* Starts serving on cfg's socket from e; returns with the listening socket open. */
int http_server_new(sd_event *e, const HttpServerConfig *cfg, HttpDispatch dispatch, void *userdata, HttpServer **ret);
/* Runs the server at the next loop iteration: for code that resumed a suspended connection
 * (MHD_resume_connection) outside the server's own callbacks. */
void http_server_wake(HttpServer *s);
/* Durable group commit (daemon/audit.h): the server calls enter() before it dispatches a request
 * and leave() after, telling it whether the handler succeeded. HTTP_HOLD_WAIT: the request's
 * changes are in a batch that is not durable yet, so its response is held (the connection
 * suspended) until http_server_release_held() says the batch was committed (ok: the responses go
 * out as they are) or lost (!ok: each becomes a 500, since nothing of it was applied).
 * HTTP_HOLD_LOST: that batch is lost already, the request's answer is such a 500. */
typedef enum HttpHold {
        HTTP_HOLD_NONE,
        HTTP_HOLD_WAIT,
        HTTP_HOLD_LOST,
} HttpHold;
typedef struct HttpHoldHooks {
        void (*enter)(void *userdata);
        HttpHold (*leave)(void *userdata, bool ok);
        /* Makes the open batch durable now; false: it was lost. For a client that has shut down
         * its sending side already: libmicrohttpd closes such a connection when it resumes it,
         * before a held response goes out. */
        bool (*commit)(void *userdata);
        void *userdata;
} HttpHoldHooks;
void http_server_set_hold_hooks(HttpServer *s, const HttpHoldHooks *hooks);
/* Asked with a request's headers, before its body is read (req has no body yet): false, and the
 * body is read and thrown away instead of kept, and the request dispatched without it. Without
 * it a client with no valid token could make each connection hold a whole body's worth of
 * memory for as long as it kept sending. Called with the dispatch function's userdata. */
typedef bool (*HttpAdmitBody)(void *userdata, const HttpRequest *req);
void http_server_set_admit_body(HttpServer *s, HttpAdmitBody admit);
void http_server_release_held(HttpServer *s, bool ok);
/* Limits that may change at runtime (SIGHUP). */
void http_server_set_max_body_size(HttpServer *s, size_t max_body_size);
/* Reads the TLS certificate and key again (SIGHUP); new handshakes use them. On failure the
 * current pair stays (logged). -ENOTCONN when the server does not speak TLS. */
int http_server_reload_tls(HttpServer *s, const HttpTlsConfig *tls);
bool http_server_is_tls(const HttpServer *s);
/* Graceful stop: stops accepting connections, lets the requests in flight finish (answering them
 * with Connection: close), then calls done. Requests still unfinished after timeout are cut. */
typedef void (*HttpDrainDone)(HttpServer *s, void *userdata);
int http_server_drain(HttpServer *s, uint64_t timeout_usec, HttpDrainDone done, void *userdata);
/* Requests between their headers and the end of their response. */
unsigned http_server_n_in_flight(const HttpServer *s);
HttpServer *http_server_free(HttpServer *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(HttpServer *, http_server_free);
