/* http-server.c: the control plane's HTTP server. libmicrohttpd runs in its epoll mode with no
 * thread of its own: its epoll fd is one io source of the sd-event loop and its timeouts one
 * one-shot timer, as in systemd-journal-remote. Each request's headers and body are read and
 * bounded here, then handed whole to the dispatch function (http-api.c); the HttpResponse it
 * fills is sent back with the headers every response carries.
 *
 * TLS (http-tls.c): with a certificate configured the daemon runs with MHD_USE_TLS and takes its
 * credentials from http-tls.c's callback (so that SIGHUP can replace them); with a client CA, each
 * request's client certificate is verified here and the result handed to the route layer in the
 * HttpRequest (peer_identity, peer_error).
 *
 * Group commit (the control plane core's, daemon/audit.h): a request whose changes wait in a batch
 * not yet durable has its response held: MHD_suspend_connection() in request_finish(), and
 * MHD_resume_connection() from http_server_release_held() once the batch's COMMIT is done
 * (MHD_ALLOW_SUSPEND_RESUME is on, and a resume wakes the loop through MHD's ITC, which sits in
 * the epoll set we watch); MHD then calls on_request() again and the response goes out.
 *
 * Request deadline: libmicrohttpd's connection timeout measures idleness only, so a client sending
 * a byte now and then would keep a connection (and, a few of them, every connection) forever. Each
 * connection therefore has a deadline by which its request must be in whole (see
 * HttpServerConfig.request_timeout_usec); one timer cuts those past it with shutdown(), which MHD
 * then sees as the client going away and cleans up as it does any closed connection. */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>

#include "http-server.h"
#include "http-tls.h"
#include "json-util.h"
#include "list.h"
#include "log.h"
#include "macro.h"
#include "strv.h"
#include "time-util.h"

#define LISTEN_BACKLOG 1024

struct HttpServer {
        sd_event *event;
        struct MHD_Daemon *daemon;
        sd_event_source *io_source;    /* MHD's epoll fd */
        sd_event_source *timer_source; /* MHD_get_timeout(), one-shot */
        sd_event_source *wake_source;  /* a run soon, for resumed connections (defer, one-shot) */

        HttpDispatch dispatch;
        HttpAdmitBody admit_body; /* NULL: every body is kept */
        void *userdata;
        size_t max_body_size;
        HttpTls *tls; /* NULL: plain HTTP */

        unsigned n_connections;
        unsigned max_connections; /* 0: the library's default */
        unsigned n_in_flight;

        bool draining;
        bool drain_reported;
        sd_event_source *drain_timer; /* the bound on draining */
        sd_event_source *drain_defer; /* reports completion outside MHD's callbacks */
        HttpDrainDone drain_done;
        void *drain_userdata;

        HttpHoldHooks hold;             /* group commit: see http_server_set_hold_hooks() */
        struct RequestState *held;      /* requests whose responses wait for a commit */

        /* Request deadline: every open connection, and the timer for the earliest deadline. */
        usec_t request_timeout;
        usec_t idle_timeout; /* MHD's connection timeout; 0: none */
        struct ConnectionState *connections;
        sd_event_source *deadline_timer;
};

/* One connection, from its accept to its close (MHD's socket context). */
typedef struct ConnectionState {
        HttpServer *server;
        int fd; /* MHD's; open until after MHD_CONNECTION_NOTIFY_CLOSED, which frees this */
        /* When the request being received must be in; USEC_INFINITY while the answer is ours to
         * give (dispatched, held for a commit, streamed) or once cut. */
        usec_t deadline;
        bool cut;
        struct ConnectionState *prev, *next;
} ConnectionState;

/* One request, from its headers to the end of its response (MHD's *con_cls). */
typedef struct RequestState {
        HttpServer *server;
        char *body;
        size_t size, allocated;
        bool refused;    /* a response was queued early (413); MHD reads no more of the body */
        bool too_large;  /* a body without Content-Length grew past the limit: discarded, 413 at its end */
        bool unadmitted; /* admit_body() said no: the body is discarded, the request dispatched without it */
        size_t discarded;

        /* Group commit: the response, held with the connection suspended until its batch is
         * durable (released, ok) or lost (released, !ok: a 500 goes instead). */
        struct MHD_Connection *connection;
        HttpResponse held;
        bool holding, released, release_ok;
        struct RequestState *held_prev, *held_next;
} RequestState;

/* A body past the limit is read and thrown away so that the client gets its 413 (MHD takes no
 * response in the middle of a body); past this multiple of the limit, the connection is closed
 * instead (or, for a declared length, answered at once). */
#define DISCARD_FACTOR 4

/* ---- responses ------------------------------------------------------------------------------ */

static void *mfree_or_null(void *p) {
        free(p);
        return NULL;
}

static void response_clear_body(HttpResponse *resp) {
        resp->body = mfree_or_null(resp->body);
        resp->body_size = 0;
}

void http_response_done(HttpResponse *resp) {
        if (!resp)
                return;
        response_clear_body(resp);
        if (resp->stream_free)
                resp->stream_free(resp->stream_userdata);
        for (size_t i = 0; i < resp->n_headers; i++)
                free(resp->headers[i].value);
        *resp = (HttpResponse){};
}

int http_response_text(HttpResponse *resp, unsigned status, const char *content_type, char *body, size_t size) {
        response_clear_body(resp);
        resp->status = status;
        resp->content_type = content_type;
        resp->body = body;
        resp->body_size = body ? size : 0;
        return 0;
}

int http_response_json(HttpResponse *resp, unsigned status, json_object *body) {
        const char *text;
        char *copy;

        text = json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!text)
                return -ENOMEM;
        copy = strdup(text);
        if (!copy)
                return -ENOMEM;
        return http_response_text(resp, status, "application/json", copy, strlen(copy));
}

int http_response_error(HttpResponse *resp, unsigned status, const char *format, ...) {
        char message[512];
        va_list ap;
        char *body;

        va_start(ap, format);
        vsnprintf(message, sizeof(message), format, ap);
        va_end(ap);

        body = json_error_body(message);
        if (!body)
                return -ENOMEM;
        return http_response_text(resp, status, "application/json", body, strlen(body));
}

int http_response_add_header(HttpResponse *resp, const char *name, const char *value) {
        char *v;

        if (resp->n_headers >= HTTP_RESPONSE_MAX_HEADERS)
                return -E2BIG;
        v = strdup(value);
        if (!v)
                return -ENOMEM;
        resp->headers[resp->n_headers].name = name;
        resp->headers[resp->n_headers].value = v;
        resp->n_headers++;
        return 0;
}

static bool http_response_has_header(const HttpResponse *resp, const char *name) {
        for (size_t i = 0; i < resp->n_headers; i++)
                if (strcasecmp(resp->headers[i].name, name) == 0)
                        return true;
        return false;
}

/* ---- requests ------------------------------------------------------------------------------- */

bool http_request_has_query(const HttpRequest *req, const char *key) {
        const char *value = NULL;
        size_t size = 0;

        if (req->connection)
                return MHD_lookup_connection_value_n(req->connection, MHD_GET_ARGUMENT_KIND, key, strlen(key), &value,
                                                     &size) == MHD_YES;
        for (size_t i = 0; req->query && i < req->n_query; i++)
                if (streq_ptr(req->query[i].name, key))
                        return true;
        return false;
}

const char *http_request_query(const HttpRequest *req, const char *key) {
        if (req->connection)
                return MHD_lookup_connection_value(req->connection, MHD_GET_ARGUMENT_KIND, key);
        for (size_t i = 0; req->query && i < req->n_query; i++)
                if (streq_ptr(req->query[i].name, key))
                        return req->query[i].value;
        return NULL;
}

const char *http_request_header(const HttpRequest *req, const char *name) {
        if (req->connection)
                return MHD_lookup_connection_value(req->connection, MHD_HEADER_KIND, name);
        /* Header names are case-insensitive, as MHD compares them. */
        for (size_t i = 0; req->headers && i < req->n_headers; i++)
                if (req->headers[i].name && strcasecmp(req->headers[i].name, name) == 0)
                        return req->headers[i].value;
        return NULL;
}

bool http_request_id_valid(const char *id) {
        size_t n = 0;

        if (!id)
                return false;
        for (const char *p = id; *p; p++, n++)
                if (n >= HTTP_REQUEST_ID_MAX || (unsigned char) *p < 0x20 || (unsigned char) *p > 0x7e)
                        return false;
        return n > 0;
}

static void connection_remote(struct MHD_Connection *conn, char *buf, size_t size) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        const struct sockaddr *sa = ci ? ci->client_addr : NULL;
        char host[INET6_ADDRSTRLEN] = "";

        snprintf(buf, size, "unknown");
        if (!sa)
                return;
        if (sa->sa_family == AF_INET &&
            inet_ntop(AF_INET, &((const struct sockaddr_in *) sa)->sin_addr, host, sizeof(host)))
                snprintf(buf, size, "%s:%u", host, ntohs(((const struct sockaddr_in *) sa)->sin_port));
        else if (sa->sa_family == AF_INET6 &&
                 inet_ntop(AF_INET6, &((const struct sockaddr_in6 *) sa)->sin6_addr, host, sizeof(host)))
                snprintf(buf, size, "[%s]:%u", host, ntohs(((const struct sockaddr_in6 *) sa)->sin6_port));
}

/* Queues resp on conn with the headers every response carries. Consumes resp. */
static enum MHD_Result send_response(HttpServer *s, struct MHD_Connection *conn, HttpResponse *resp) {
        const char *request_id = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-ID");
        struct MHD_Response *r;
        enum MHD_Result ret;
        bool ok = true;

        if (resp->stream_read)
                r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, resp->stream_read,
                                                      resp->stream_userdata, resp->stream_free);
        else if (resp->body)
                r = MHD_create_response_from_buffer(resp->body_size, resp->body, MHD_RESPMEM_MUST_FREE);
        else
                r = MHD_create_response_from_buffer(0, (void *) "", MHD_RESPMEM_PERSISTENT);
        if (!r) {
                http_response_done(resp);
                return MHD_NO;
        }
        /* Now the response's: MHD frees the buffer, and calls stream_free when the stream ends. */
        resp->body = NULL;
        resp->stream_read = NULL;
        resp->stream_free = NULL;

        ok = ok && MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, resp->content_type ?: "application/json") ==
                           MHD_YES;
        /* Job and worker state changes from one moment to the next: no cache may keep it, unless
         * the handler knows better (the dashboard's static files). */
        if (!http_response_has_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL))
                ok = ok && MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") == MHD_YES;
        if (http_request_id_valid(request_id))
                ok = ok && MHD_add_response_header(r, "X-Request-ID", request_id) == MHD_YES;
        for (size_t i = 0; i < resp->n_headers; i++)
                ok = ok && MHD_add_response_header(r, resp->headers[i].name, resp->headers[i].value) == MHD_YES;
        /* Draining: tell keep-alive clients to go, so that their connections do not hold the stop. */
        if (s->draining)
                ok = ok && MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close") == MHD_YES;

        ret = ok ? MHD_queue_response(conn, resp->status ?: MHD_HTTP_INTERNAL_SERVER_ERROR, r) : MHD_NO;
        MHD_destroy_response(r);
        http_response_done(resp);
        return ret;
}

static enum MHD_Result send_error(HttpServer *s, struct MHD_Connection *conn, unsigned status, const char *message) {
        HttpResponse resp = {};

        if (http_response_error(&resp, status, "%s", message) < 0)
                return MHD_NO;
        return send_response(s, conn, &resp);
}

static void request_drop_body(RequestState *st) {
        st->body = mfree_or_null(st->body);
        st->size = st->allocated = 0;
}

static enum MHD_Result refuse_too_large(HttpServer *s, struct MHD_Connection *conn) {
        char message[128];

        snprintf(message, sizeof(message), "request body larger than %zu bytes", s->max_body_size);
        log_debug("Refusing a request body larger than %zu bytes.", s->max_body_size);
        return send_error(s, conn, MHD_HTTP_CONTENT_TOO_LARGE, message);
}

static enum MHD_Result count_content_length(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
        unsigned *n = cls;

        if (key && strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0)
                (*n)++;
        return MHD_YES;
}

/* Two Content-Length headers, or one beside Transfer-Encoding: a body whose end two parties on
 * the way may see in different places (request smuggling; RFC 9112, 6.3). libmicrohttpd 0.9.75
 * picks one and keeps the connection; such a request is refused instead, and the connection
 * closed after the answer, so that no byte of that body is read as a request of its own. */
static bool request_framing_ambiguous(struct MHD_Connection *conn, const char *cl, const char *te) {
        unsigned n = 0;

        if (!cl)
                return false;
        if (te)
                return true;
        (void) MHD_get_connection_values(conn, MHD_HEADER_KIND, count_content_length, &n);
        return n > 1;
}

static enum MHD_Result refuse_ambiguous_framing(HttpServer *s, struct MHD_Connection *conn) {
        HttpResponse resp = {};

        log_debug("Refusing a request with both Content-Length and Transfer-Encoding, or two Content-Length.");
        if (http_response_error(&resp, MHD_HTTP_BAD_REQUEST,
                                "a request may carry one Content-Length, or Transfer-Encoding, not both") < 0 ||
            http_response_add_header(&resp, MHD_HTTP_HEADER_CONNECTION, "close") < 0) {
                http_response_done(&resp);
                return MHD_NO;
        }
        return send_response(s, conn, &resp);
}

/* First call for a request: only its headers are known. A declared length over the limit is
 * answered before a byte of the body is read when the client waits for that answer (Expect:
 * 100-continue) or the body is huge. Otherwise the body is read and thrown away and the 413 sent
 * after it: a client still sending when the server answers and closes would get a reset instead
 * of the answer. */
static enum MHD_Result request_begin(HttpServer *s, RequestState *st, struct MHD_Connection *conn, const char *url,
                                     const char *method) {
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        const char *expect = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT);
        const char *te = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
        unsigned long long n;
        char *end;

        if (request_framing_ambiguous(conn, cl, te)) {
                st->refused = true;
                return refuse_ambiguous_framing(s, conn);
        }
        if ((cl || te) && s->admit_body &&
            !s->admit_body(s->userdata, &(HttpRequest){.method = method, .path = url, .body = "", .connection = conn}))
                st->unadmitted = true;
        if (!cl)
                return MHD_YES;
        errno = 0;
        n = strtoull(cl, &end, 10);
        /* MHD has already refused a malformed Content-Length; anything odd here is too large. */
        if (errno == 0 && end != cl && n <= s->max_body_size)
                return MHD_YES;
        if (errno == 0 && end != cl && n / DISCARD_FACTOR <= s->max_body_size &&
            !(expect && strcasecmp(expect, "100-continue") == 0)) {
                st->too_large = true;
                return MHD_YES;
        }
        st->refused = true;
        return refuse_too_large(s, conn);
}

static int request_append(HttpServer *s, RequestState *st, const char *data, size_t n) {
        size_t need;

        if (n > s->max_body_size - st->size || st->size >= s->max_body_size)
                return -EFBIG;
        need = st->size + n + 1;
        if (need > st->allocated) {
                size_t a = MAX(need, MIN(st->allocated * 2, s->max_body_size + 1));
                char *p = realloc(st->body, a);
                if (!p)
                        return -ENOMEM;
                st->body = p;
                st->allocated = a;
        }
        memcpy(st->body + st->size, data, n);
        st->size += n;
        st->body[st->size] = 0;
        return 0;
}

/* With client certificates required: what the connection's certificate proves, or why it proves
 * nothing. Verified for each request (cheap next to the request itself), so nothing about a
 * connection is cached that a renegotiation could change. */
static int request_verify_peer(HttpServer *s, struct MHD_Connection *conn, HttpRequest *req, char ***ret_names) {
        const union MHD_ConnectionInfo *ci;
        int r;

        req->tls = s->tls != NULL;
        if (!http_tls_wants_client_certificate(s->tls))
                return 0;
        ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
        r = http_tls_verify_peer(ci ? ci->tls_session : NULL, ret_names, &req->peer_error);
        if (r == -EACCES)
                return 0;
        if (r < 0)
                return r;
        req->peer_names = *ret_names;
        req->peer_identity = (*ret_names)[0];
        return 0;
}

/* ---- request deadline ----------------------------------------------------------------------- */

/* A cut a quarter of a second late does no harm; sharing the loop's other wake-ups helps. */
#define DEADLINE_ACCURACY_USEC (250 * USEC_PER_MSEC)

static usec_t server_now(HttpServer *s) {
        usec_t now;

        if (sd_event_now(s->event, CLOCK_MONOTONIC, &now) < 0)
                now = now_monotonic_usec();
        return now;
}

/* Makes the timer fire no later than `when`. Most new deadlines are later than the one armed: the
 * sweep that one runs finds them, so the timer moves only when a deadline comes before it. */
static void deadline_timer_arm(HttpServer *s, usec_t when) {
        usec_t armed;
        int enabled, r;

        if (!s->deadline_timer)
                return;
        if (sd_event_source_get_enabled(s->deadline_timer, &enabled) >= 0 && enabled != SD_EVENT_OFF &&
            sd_event_source_get_time(s->deadline_timer, &armed) >= 0 && armed <= when)
                return;
        r = sd_event_source_set_time(s->deadline_timer, when);
        if (r >= 0)
                r = sd_event_source_set_enabled(s->deadline_timer, SD_EVENT_ONESHOT);
        if (r < 0)
                log_warning_errno(r, "Failed to arm the HTTP request deadline, stalled requests may hold "
                                     "their connections: %m");
}

static ConnectionState *connection_state(struct MHD_Connection *conn) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

        /* NULL once on_connection() has freed it (its CLOSED notice clears the context). */
        return ci ? ci->socket_context : NULL;
}

/* The connection waits for a request that must be in whole by `deadline`. */
static void connection_expect_request(ConnectionState *c, usec_t deadline) {
        c->deadline = deadline;
        deadline_timer_arm(c->server, deadline);
}

/* The request on conn is in whole: from now on its connection waits for us, not for the client,
 * however long its answer takes (a group commit, an event stream). */
static void connection_request_in(struct MHD_Connection *conn) {
        ConnectionState *c = connection_state(conn);

        if (c)
                c->deadline = USEC_INFINITY;
}

/* The answer is out and the connection stays open for the next request. Its first byte may come
 * as late as the idle timeout allows (which MHD enforces), and the rest within the request
 * timeout of that; the server does not see that first byte, so it allows for both. */
static void connection_answered(HttpServer *s, struct MHD_Connection *conn) {
        ConnectionState *c = connection_state(conn);

        if (c && !c->cut)
                connection_expect_request(c, server_now(s) + s->idle_timeout + s->request_timeout);
}

/* Shuts the socket down both ways. MHD, which watches it, reads the end of input at its next run
 * and closes and frees the connection as for any client that went away: the fd stays MHD's and
 * open until then, and nothing of MHD's is touched from here. */
static void connection_cut(ConnectionState *c) {
        if (shutdown(c->fd, SHUT_RDWR) < 0)
                log_debug_errno(-errno, "Failed to shut down a stalled HTTP connection: %m");
        c->deadline = USEC_INFINITY;
        c->cut = true;
}

static int on_deadline(sd_event_source *src, uint64_t usec, void *userdata) {
        HttpServer *s = userdata;
        usec_t now = server_now(s), next = USEC_INFINITY;
        char span[64];
        unsigned n = 0;

        for (ConnectionState *c = s->connections; c; c = c->next)
                if (c->deadline <= now) {
                        connection_cut(c);
                        n++;
                } else
                        next = MIN(next, c->deadline);
        if (n > 0)
                log_info("Closed %u HTTP connection(s) whose request was not in whole within %s.", n,
                         format_timespan(span, sizeof(span), s->request_timeout));
        if (next != USEC_INFINITY)
                deadline_timer_arm(s, next);
        return 0;
}

static void connection_opened(HttpServer *s, struct MHD_Connection *conn, void **socket_context) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        ConnectionState *c;
        int one = 1;

        s->n_connections++;
        if (!ci)
                return;
        /* Small request/response exchanges otherwise stall on delayed ACKs. */
        if (setsockopt(ci->connect_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
                log_debug_errno(-errno, "Failed to set TCP_NODELAY on a connection: %m");
        c = calloc(1, sizeof(*c));
        if (!c) {
                /* Without a deadline a client could hold it forever: it is not served. */
                (void) log_oom();
                (void) shutdown(ci->connect_fd, SHUT_RDWR);
                return;
        }
        *c = (ConnectionState){.server = s, .fd = ci->connect_fd};
        LIST_PREPEND(s->connections, c, next, prev);
        *socket_context = c;
        connection_expect_request(c, server_now(s) + s->request_timeout);
}

static void connection_closed(HttpServer *s, void **socket_context) {
        ConnectionState *c = *socket_context;

        /* At its connection limit MHD takes the listening socket out of its epoll set, and puts it
         * back only at the start of a later run: one is needed now, or the clients waiting in the
         * backlog wait for whatever timer comes next (none, with no connection left). */
        if (s->wake_source && (s->max_connections == 0 || s->n_connections >= s->max_connections))
                http_server_wake(s);
        if (s->n_connections > 0)
                s->n_connections--;
        if (!c)
                return;
        LIST_REMOVE(s->connections, c, next, prev);
        free(c);
        /* MHD may still ask for it (MHD_CONNECTION_INFO_SOCKET_CONTEXT) on the way out. */
        *socket_context = NULL;
}

/* ---- group commit: responses held until their changes are durable ------------------------- */

static void held_unlink(HttpServer *s, RequestState *st) {
        if (st->held_prev)
                st->held_prev->held_next = st->held_next;
        else if (s->held == st)
                s->held = st->held_next;
        if (st->held_next)
                st->held_next->held_prev = st->held_prev;
        st->held_prev = st->held_next = NULL;
}

/* Keeps the response and suspends the connection; MHD calls on_request() again once
 * http_server_release_held() resumes it, and the response (or a 500) is queued then. */
static enum MHD_Result request_hold(HttpServer *s, RequestState *st, struct MHD_Connection *conn,
                                    HttpResponse *resp) {
        st->held = *resp;
        *resp = (HttpResponse){};
        st->connection = conn;
        st->holding = true;
        st->released = false;
        st->held_prev = NULL;
        st->held_next = s->held;
        if (s->held)
                s->held->held_prev = st;
        s->held = st;
        MHD_suspend_connection(conn);
        return MHD_YES;
}

/* The answer instead of resp when the batch that held the request's changes was lost. */
static enum MHD_Result send_not_durable(HttpServer *s, struct MHD_Connection *conn, HttpResponse *resp) {
        http_response_done(resp);
        return send_error(s, conn, MHD_HTTP_INTERNAL_SERVER_ERROR,
                          "the change could not be made durable; nothing was applied");
}

static enum MHD_Result request_send_held(HttpServer *s, RequestState *st, struct MHD_Connection *conn) {
        st->holding = false;
        if (st->release_ok)
                return send_response(s, conn, &st->held);
        return send_not_durable(s, conn, &st->held);
}

void http_server_set_hold_hooks(HttpServer *s, const HttpHoldHooks *hooks) {
        s->hold = hooks ? *hooks : (HttpHoldHooks){};
}

void http_server_set_admit_body(HttpServer *s, HttpAdmitBody admit) {
        s->admit_body = admit;
}

void http_server_release_held(HttpServer *s, bool ok) {
        if (!s || !s->held)
                return;
        while (s->held) {
                RequestState *st = s->held;
                held_unlink(s, st);
                st->released = true;
                st->release_ok = ok;
                MHD_resume_connection(st->connection);
        }
        /* Resumed connections are taken back at the next MHD_run(). */
        http_server_wake(s);
}

/* Whether the client has shut down its sending side (or the connection) already: nothing is
 * left to read but the end. libmicrohttpd 0.9.75 takes that end, read when it resumes a
 * suspended connection, for an aborted request and closes it before a held response goes out;
 * such a request is committed at once instead of held. A FIN that arrives while the response is
 * held (the commit's fraction of a millisecond) still loses it. */
static bool peer_done_sending(struct MHD_Connection *conn) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        char c;

        return ci && recv(ci->connect_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

/* Every path of the API is printable ASCII. Anything else (as libmicrohttpd decoded it from %XX)
 * is refused here, once, rather than echoed into error bodies and the audit trail, where it would
 * make JSON that strict clients cannot read. */
static bool path_printable(const char *path) {
        for (const unsigned char *p = (const unsigned char *) path; *p; p++)
                if (*p < 0x21 || *p > 0x7e)
                        return false;
        return true;
}

/* Last call: the whole request is here. */
static enum MHD_Result request_finish(HttpServer *s, RequestState *st, struct MHD_Connection *conn, const char *url,
                                      const char *method) {
        const char *rid = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-ID");
        HttpRequest req = {
                .method = method,
                .path = url,
                .body = st->body ?: "",
                .body_size = st->size,
                .request_id = http_request_id_valid(rid) ? rid : NULL,
                .connection = conn,
        };
        _cleanup_(strv_freep) char **peer_names = NULL;
        HttpResponse resp = {};
        int r;

        if (!path_printable(url))
                return send_error(s, conn, MHD_HTTP_BAD_REQUEST, "the path must be printable ASCII");
        connection_remote(conn, req.remote, sizeof(req.remote));
        r = request_verify_peer(s, conn, &req, &peer_names);
        if (s->hold.enter)
                s->hold.enter(s->hold.userdata);
        if (r >= 0)
                r = s->dispatch(s->userdata, &req, &resp);
        HttpHold held = s->hold.leave ? s->hold.leave(s->hold.userdata, r >= 0) : HTTP_HOLD_NONE;
        if (r < 0) {
                log_error_errno(r, "Failed to handle %s %s: %m", method, url);
                http_response_done(&resp);
                return send_error(s, conn, MHD_HTTP_INTERNAL_SERVER_ERROR,
                                  held == HTTP_HOLD_LOST ? "internal error; nothing was applied" : "internal error");
        }
        if (held == HTTP_HOLD_LOST)
                return send_not_durable(s, conn, &resp);
        bool hold = held == HTTP_HOLD_WAIT;
        if (hold && s->hold.commit && peer_done_sending(conn)) {
                hold = false;
                if (!s->hold.commit(s->hold.userdata))
                        return send_not_durable(s, conn, &resp);
                /* No more requests can come: close after the answer rather than at the timeout. */
                (void) http_response_add_header(&resp, "Connection", "close");
        }
        if (hold)
                return request_hold(s, st, conn, &resp);
        return send_response(s, conn, &resp);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
        HttpServer *s = cls;
        RequestState *st = *con_cls;
        int r;

        if (!st) {
                st = calloc(1, sizeof(*st));
                if (!st)
                        return MHD_NO; /* MHD closes the connection */
                st->server = s;
                *con_cls = st;
                s->n_in_flight++;
                enum MHD_Result ret = request_begin(s, st, conn, url, method);
                if (st->refused) /* answered without its body */
                        connection_request_in(conn);
                return ret;
        }
        if (st->holding)
                /* Resumed by http_server_release_held(): its batch is decided. */
                return st->released ? request_send_held(s, st, conn) : MHD_YES;
        if (st->refused) {
                /* Answered already; MHD reads no more body after an early response. */
                *upload_data_size = 0;
                return MHD_YES;
        }
        if (*upload_data_size > 0 && (st->too_large || st->unadmitted)) {
                st->discarded += *upload_data_size;
                *upload_data_size = 0;
                return st->discarded / DISCARD_FACTOR > s->max_body_size ? MHD_NO : MHD_YES;
        }
        if (*upload_data_size > 0) {
                r = request_append(s, st, upload_data, *upload_data_size);
                if (r == -EFBIG) {
                        st->too_large = true;
                        st->discarded = st->size + *upload_data_size;
                        request_drop_body(st);
                        r = 0;
                }
                *upload_data_size = 0;
                return r < 0 ? MHD_NO : MHD_YES;
        }
        connection_request_in(conn);
        if (st->too_large)
                return refuse_too_large(s, conn);
        return request_finish(s, st, conn, url, method);
}

static void on_request_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                                 enum MHD_RequestTerminationCode toe) {
        HttpServer *s = cls;
        RequestState *st = *con_cls;

        if (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
                connection_answered(s, conn);
        if (!st)
                return;
        if (st->holding) {
                held_unlink(s, st);
                http_response_done(&st->held);
        }
        free(st->body);
        free(st);
        *con_cls = NULL;
        assert(s->n_in_flight > 0);
        s->n_in_flight--;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe) {
        HttpServer *s = cls;

        if (toe == MHD_CONNECTION_NOTIFY_STARTED)
                connection_opened(s, conn, socket_context);
        else if (toe == MHD_CONNECTION_NOTIFY_CLOSED)
                connection_closed(s, socket_context);
}

_printf_(2, 0) static void on_mhd_log(void *cls, const char *format, va_list ap) {
        char buf[512];

        vsnprintf(buf, sizeof(buf), format, ap);
        buf[strcspn(buf, "\n")] = 0;
        /* Mostly what clients got wrong (bad requests, resets): not worth more than debug. */
        log_debug("microhttpd: %s", buf);
}

/* ---- the loop ------------------------------------------------------------------------------- */

static void server_check_drained(HttpServer *s);

/* Whether the timer is armed already, no later than `relative` from now. A connection's idle
 * timeout moves forward with each of its requests, so libmicrohttpd's timeout changes on almost
 * every run; moving the timer each time would cost a timerfd_settime() per loop iteration. An
 * earlier deadline is kept instead: it fires, the run finds little to do and arms the next one. */
static bool timer_armed_before(HttpServer *s, usec_t relative) {
        usec_t now, armed;
        int enabled;

        if (sd_event_source_get_enabled(s->timer_source, &enabled) < 0 || enabled == SD_EVENT_OFF)
                return false;
        if (sd_event_source_get_time(s->timer_source, &armed) < 0 ||
            sd_event_now(s->event, CLOCK_MONOTONIC, &now) < 0)
                return false;
        return armed <= now + relative; /* relative is capped at a day: no overflow */
}

static void server_arm_timer(HttpServer *s) {
        MHD_UNSIGNED_LONG_LONG ms = 0;
        int r;

        if (MHD_get_timeout(s->daemon, &ms) != MHD_YES) {
                (void) sd_event_source_set_enabled(s->timer_source, SD_EVENT_OFF);
                return;
        }
        /* 0 means "run me again at once" (a connection still has unread input, which with
         * edge-triggered epoll lasts until its next read returns EAGAIN: after nearly every
         * request). The defer source does that without a timerfd_settime() there and back, each
         * a VM exit on a virtual machine. */
        if (ms == 0) {
                http_server_wake(s);
                return;
        }
        /* Relative milliseconds, where sd-event wants microseconds; cap far-off values. */
        ms = MIN(ms, (MHD_UNSIGNED_LONG_LONG) 24 * 3600 * 1000);
        if (timer_armed_before(s, (usec_t) ms * USEC_PER_MSEC))
                return;
        r = sd_event_source_set_time_relative(s->timer_source, (usec_t) ms * USEC_PER_MSEC);
        if (r >= 0)
                r = sd_event_source_set_enabled(s->timer_source, SD_EVENT_ONESHOT);
        if (r < 0)
                log_warning_errno(r, "Failed to arm the HTTP timer, connections may time out late: %m");
}

static void server_run(HttpServer *s) {
        if (MHD_run(s->daemon) != MHD_YES)
                log_debug("MHD_run() reported a failure.");
        server_arm_timer(s);
        server_check_drained(s);
}

static int on_io(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        server_run(userdata);
        return 0;
}

static int on_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        server_run(userdata);
        return 0;
}

static int on_wake(sd_event_source *src, void *userdata) {
        server_run(userdata);
        return 0;
}

/* ---- listening socket ----------------------------------------------------------------------- */

int http_listen_fd_from_systemd(void) {
        int n, r;

        n = sd_listen_fds(true);
        if (n < 0)
                return log_error_errno(n, "Failed to read the sockets passed by systemd: %m");
        if (n == 0)
                return -ENOENT;
        if (n > 1)
                return log_error_errno(-E2BIG, "Got %d sockets from systemd, expected one (the HTTP port).", n);
        r = sd_is_socket(SD_LISTEN_FDS_START, AF_UNSPEC, SOCK_STREAM, 1);
        if (r < 0)
                return log_error_errno(r, "Failed to check the socket passed by systemd: %m");
        if (r == 0)
                return log_error_errno(-ENOTSOCK, "The socket passed by systemd is not a listening stream socket.");
        return SD_LISTEN_FDS_START;
}

/* "ADDR:PORT" or "[ADDR6]:PORT" into host and port strings. */
static int listen_split(const char *address, char *host, size_t host_size, const char **ret_port) {
        const char *colon, *start = address, *end;

        if (address[0] == '[') {
                start = address + 1;
                end = strchr(start, ']');
                if (!end || end[1] != ':')
                        return -EINVAL;
                colon = end + 1;
        } else {
                colon = strrchr(address, ':');
                if (!colon)
                        return -EINVAL;
                end = colon;
        }
        if (end == start || (size_t) (end - start) >= host_size || isempty(colon + 1))
                return -EINVAL;
        memcpy(host, start, end - start);
        host[end - start] = 0;
        *ret_port = colon + 1;
        return 0;
}

static int listen_bind(const char *address) {
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
        struct addrinfo *ai = NULL;
        _cleanup_close_ int fd = -EBADF;
        char host[256];
        const char *port;
        int one = 1, r;

        r = listen_split(address, host, sizeof(host), &port);
        if (r < 0)
                return log_error_errno(r, "Invalid --listen address '%s': expected ADDR:PORT or [ADDR6]:PORT.",
                                       address);
        r = getaddrinfo(host, port, &hints, &ai);
        if (r != 0)
                return log_error_errno(-EADDRNOTAVAIL, "Failed to resolve --listen address '%s': %s", address,
                                       gai_strerror(r));
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                r = -errno;
        else if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
                 setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ||
                 bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, LISTEN_BACKLOG) < 0)
                r = -errno;
        freeaddrinfo(ai);
        if (r < 0)
                return log_error_errno(r, "Failed to listen on %s: %m", address);
        return TAKE_FD(fd);
}

/* ---- start and stop ------------------------------------------------------------------------- */

static unsigned server_flags(const HttpServer *s) {
        /* No thread of its own: sd-event drives it. Suspend/resume (and with it the ITC that
         * MHD_quiesce_daemon also wants) is on for the requests that will wait for a commit. */
        return MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | (s->tls ? MHD_USE_TLS : 0);
}

#define SERVER_OPTIONS_MAX 16

static void option_add(struct MHD_OptionItem *opts, size_t *n, enum MHD_OPTION option, intptr_t value, void *ptr) {
        assert(*n < SERVER_OPTIONS_MAX - 1); /* room for the MHD_OPTION_END */
        opts[(*n)++] = (struct MHD_OptionItem){option, value, ptr};
}

/* The credentials come from http-tls.c's callback rather than MHD_OPTION_HTTPS_MEM_CERT/KEY: MHD
 * cannot swap those in a running daemon, and SIGHUP must (see http-tls.c). */
static void server_tls_options(const HttpServer *s, struct MHD_OptionItem *opts, size_t *n) {
        const char *ca;

        if (!s->tls)
                return;
        option_add(opts, n, MHD_OPTION_HTTPS_CERT_CALLBACK2, 0, http_tls_certificate_callback());
        option_add(opts, n, MHD_OPTION_HTTPS_PRIORITIES, 0, (void *) http_tls_priorities(s->tls));
        ca = http_tls_client_ca_pem(s->tls);
        /* The trust makes MHD *request* a certificate; request_verify_peer() requires it. */
        if (ca)
                option_add(opts, n, MHD_OPTION_HTTPS_MEM_TRUST, 0, (void *) ca);
}

static int server_start_daemon(HttpServer *s, const HttpServerConfig *cfg, int fd) {
        struct MHD_OptionItem opts[SERVER_OPTIONS_MAX];
        size_t n = 0;

        /* The logger first, or MHD logs the options before it to stderr itself. */
        option_add(opts, &n, MHD_OPTION_EXTERNAL_LOGGER, (intptr_t) on_mhd_log, NULL);
        option_add(opts, &n, MHD_OPTION_LISTEN_SOCKET, fd, NULL);
        option_add(opts, &n, MHD_OPTION_NOTIFY_COMPLETED, (intptr_t) on_request_completed, s);
        option_add(opts, &n, MHD_OPTION_NOTIFY_CONNECTION, (intptr_t) on_connection, s);
        option_add(opts, &n, MHD_OPTION_CONNECTION_TIMEOUT, cfg->connection_timeout_sec, NULL);
        option_add(opts, &n, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (intptr_t) cfg->connection_memory_limit, NULL);
        option_add(opts, &n, MHD_OPTION_PER_IP_CONNECTION_LIMIT, cfg->max_connections_per_ip, NULL);
        if (cfg->max_connections > 0)
                option_add(opts, &n, MHD_OPTION_CONNECTION_LIMIT, cfg->max_connections, NULL);
        server_tls_options(s, opts, &n);
        opts[n] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};

        if (s->tls && MHD_is_feature_supported(MHD_FEATURE_HTTPS_CERT_CALLBACK2) != MHD_YES)
                return log_error_errno(-EOPNOTSUPP, "This libmicrohttpd cannot serve TLS with a certificate callback.");
        s->daemon = MHD_start_daemon(server_flags(s), 0, NULL, NULL, on_request, s, MHD_OPTION_ARRAY, opts,
                                     MHD_OPTION_END);
        if (!s->daemon)
                return log_error_errno(-EINVAL, "Failed to start the HTTP server (libmicrohttpd refused its options).");
        return 0;
}

static int server_attach(HttpServer *s) {
        const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_EPOLL_FD);
        int r;

        if (!info)
                return log_error_errno(-EINVAL, "libmicrohttpd gave no epoll fd.");
        r = sd_event_add_io(s->event, &s->io_source, info->epoll_fd, EPOLLIN, on_io, s);
        if (r < 0)
                return log_error_errno(r, "Failed to watch the HTTP server's epoll fd: %m");
        (void) sd_event_source_set_description(s->io_source, "http-io");
        /* Accuracy 1us: MHD's short timeouts must not wait for sd-event's default 250ms
         * coalescing. (A timeout of 0 goes to the defer source below instead.) */
        r = sd_event_add_time(s->event, &s->timer_source, CLOCK_MONOTONIC, USEC_INFINITY, 1, on_timer, s);
        if (r < 0)
                return log_error_errno(r, "Failed to add the HTTP timer: %m");
        (void) sd_event_source_set_description(s->timer_source, "http-timer");
        r = sd_event_add_time(s->event, &s->deadline_timer, CLOCK_MONOTONIC, USEC_INFINITY, DEADLINE_ACCURACY_USEC,
                              on_deadline, s);
        if (r < 0)
                return log_error_errno(r, "Failed to add the HTTP request deadline timer: %m");
        (void) sd_event_source_set_description(s->deadline_timer, "http-request-deadline");
        /* A defer source, not the timer set to "now": every group commit resumes connections, and
         * moving the timer there and back cost two timerfd_settime() per batch. */
        r = sd_event_add_defer(s->event, &s->wake_source, on_wake, s);
        if (r < 0)
                return log_error_errno(r, "Failed to add the HTTP wake-up: %m");
        (void) sd_event_source_set_enabled(s->wake_source, SD_EVENT_OFF);
        (void) sd_event_source_set_description(s->wake_source, "http-wake");
        server_arm_timer(s);
        return 0;
}

int http_server_new(sd_event *e, const HttpServerConfig *cfg, HttpDispatch dispatch, void *userdata, HttpServer **ret) {
        _cleanup_(http_server_freep) HttpServer *s = NULL;
        _cleanup_close_ int fd = -EBADF;
        int r;

        assert(e && cfg && dispatch && ret);
        if (cfg->max_body_size == 0)
                return -EINVAL;

        s = calloc(1, sizeof(*s));
        if (!s)
                return log_oom();
        s->event = sd_event_ref(e);
        s->dispatch = dispatch;
        s->userdata = userdata;
        s->max_body_size = cfg->max_body_size;
        s->max_connections = cfg->max_connections;
        s->request_timeout = cfg->request_timeout_usec ?: HTTP_REQUEST_TIMEOUT_DEFAULT_USEC;
        s->idle_timeout = (usec_t) cfg->connection_timeout_sec * USEC_PER_SEC;
        if (cfg->tls) {
                r = http_tls_new(cfg->tls, &s->tls);
                if (r < 0)
                        return r;
        }

        if (cfg->listen_fd >= 0)
                fd = cfg->listen_fd;
        else {
                fd = listen_bind(cfg->listen);
                if (fd < 0)
                        return fd;
        }
        r = server_start_daemon(s, cfg, fd);
        if (r < 0)
                return r;
        TAKE_FD(fd); /* MHD's now; closed by MHD_quiesce_daemon()'s caller or MHD_stop_daemon() */

        r = server_attach(s);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(s);
        return 0;
}

void http_server_wake(HttpServer *s) {
        int r;

        if (!s)
                return;
        r = sd_event_source_set_enabled(s->wake_source, SD_EVENT_ONESHOT);
        if (r < 0)
                log_warning_errno(r, "Failed to wake the HTTP server: %m");
}

void http_server_set_max_body_size(HttpServer *s, size_t max_body_size) {
        if (max_body_size > 0)
                s->max_body_size = max_body_size;
}

int http_server_reload_tls(HttpServer *s, const HttpTlsConfig *tls) {
        if (!s || !s->tls)
                return -ENOTCONN;
        return http_tls_reload(s->tls, tls);
}

bool http_server_is_tls(const HttpServer *s) {
        return s && s->tls;
}

unsigned http_server_n_in_flight(const HttpServer *s) {
        return s ? s->n_in_flight : 0;
}

/* ---- draining ------------------------------------------------------------------------------- */

static int on_drain_report(sd_event_source *src, void *userdata) {
        HttpServer *s = userdata;

        if (s->drain_done)
                s->drain_done(s, s->drain_userdata);
        return 0;
}

static void drain_report(HttpServer *s) {
        int r;

        if (s->drain_reported)
                return;
        s->drain_reported = true;
        /* Not from inside MHD's callbacks: the owner may stop the server when told. */
        r = sd_event_add_defer(s->event, &s->drain_defer, on_drain_report, s);
        if (r < 0) {
                log_warning_errno(r, "Failed to schedule the end of draining, reporting it now: %m");
                on_drain_report(NULL, s);
        }
}

static void server_check_drained(HttpServer *s) {
        if (s->draining && s->n_in_flight == 0)
                drain_report(s);
}

static int on_drain_timeout(sd_event_source *src, uint64_t usec, void *userdata) {
        HttpServer *s = userdata;

        log_warning("%u HTTP request(s) still unfinished at the end of the drain period; cutting them.",
                    s->n_in_flight);
        drain_report(s);
        return 0;
}

int http_server_drain(HttpServer *s, uint64_t timeout_usec, HttpDrainDone done, void *userdata) {
        int fd, r;

        if (s->draining)
                return 0;
        /* Take in what has already arrived, so that a request whose bytes beat the signal is served. */
        (void) MHD_run(s->daemon);

        s->draining = true;
        s->drain_done = done;
        s->drain_userdata = userdata;
        fd = MHD_quiesce_daemon(s->daemon);
        if (fd >= 0)
                close(fd); /* with socket activation, systemd keeps its own copy for the next start */

        r = sd_event_add_time_relative(s->event, &s->drain_timer, CLOCK_MONOTONIC, timeout_usec, 0, on_drain_timeout,
                                       s);
        if (r < 0)
                return log_error_errno(r, "Failed to add the drain timer: %m");
        log_info("Stopped accepting HTTP connections; %u request(s) in flight.", s->n_in_flight);
        server_arm_timer(s);
        server_check_drained(s);
        return 0;
}

HttpServer *http_server_free(HttpServer *s) {
        if (!s)
                return NULL;
        s->io_source = sd_event_source_disable_unref(s->io_source);
        s->timer_source = sd_event_source_disable_unref(s->timer_source);
        s->wake_source = sd_event_source_disable_unref(s->wake_source);
        s->drain_timer = sd_event_source_disable_unref(s->drain_timer);
        s->drain_defer = sd_event_source_disable_unref(s->drain_defer);
        s->deadline_timer = sd_event_source_disable_unref(s->deadline_timer);
        /* Closes every connection; on_request_completed() frees what each request still held,
         * on_connection() what each connection did. */
        if (s->daemon)
                MHD_stop_daemon(s->daemon);
        /* None should be left; if MHD skipped a notice, free the rest rather than leak it. */
        while (s->connections) {
                ConnectionState *c = s->connections;
                s->connections = c->next;
                free(c);
        }
        http_tls_free(s->tls); /* after MHD: no handshake can call for the credentials any more */
        sd_event_unref(s->event);
        free(s);
        return NULL;
}
