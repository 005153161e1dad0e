/* client.c: libcurl multi inside sd-event. The pattern of systemd's curl-util.c: curl tells us
 * which sockets to watch (CURLMOPT_SOCKETFUNCTION) and when to call it back
 * (CURLMOPT_TIMERFUNCTION); we turn both into event sources and feed events back through
 * curl_multi_socket_action(). */
#include <curl/curl.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "client.h"
#include "http-tls-client.h"
#include "json-util.h"
#include "list.h"
#include "log.h"
#include "macro.h"

#define CLIENT_MAX_RESPONSE (4 * 1024 * 1024)

struct ClientRequest {
        Client *client;
        CURL *easy;
        struct curl_slist *headers;
        char *body;
        char *response;
        size_t response_size;
        bool too_large;
        ClientCallback cb;
        void *userdata;
        void (*destroy)(void *userdata);
        usec_t sent_boot, sent_real;
        char errbuf[CURL_ERROR_SIZE];
        ClientRequest *prev, *next;
};

struct Client {
        sd_event *event;
        CURLM *multi;
        sd_event_source *timer;
        char *base_url;
        usec_t timeout;
        /* The worker token and how it is sent (common/http-tls-client.h). */
        char *token;
        char *worker_id;
        bool signed_tokens;
        usec_t signed_token_lifetime;
        /* "X-API-Token: <value>". A signed value is reused until renew_at (CLOCK_REALTIME, half its
         * lifetime) rather than made per request: that keeps a getrandom() and an HMAC off every
         * request, and the half left covers requests in flight and clock skew. */
        char *token_header;
        usec_t token_made_at, token_renew_at;
        char *ca_file, *tls_certificate, *tls_key;
        ClientRequest *requests;
        unsigned n_requests;
};

static void request_free(ClientRequest *req) {
        if (!req)
                return;
        if (req->destroy)
                req->destroy(req->userdata);
        if (req->easy) {
                curl_multi_remove_handle(req->client->multi, req->easy);
                curl_easy_cleanup(req->easy);
        }
        curl_slist_free_all(req->headers);
        free(req->body);
        free(req->response);
        free(req);
}

static void request_unlink(ClientRequest *req) {
        Client *c = req->client;
        LIST_REMOVE(c->requests, req, next, prev);
        c->n_requests--;
}

static int curl_error_to_errno(CURLcode code) {
        switch (code) {
        case CURLE_OPERATION_TIMEDOUT:
                return -ETIMEDOUT;
        case CURLE_COULDNT_CONNECT:
                return -ECONNREFUSED;
        case CURLE_COULDNT_RESOLVE_HOST:
                return -EHOSTUNREACH;
        case CURLE_OUT_OF_MEMORY:
                return -ENOMEM;
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
                return -ECONNRESET;
        default:
                return -EIO;
        }
}

static void request_finish(ClientRequest *req, CURLcode code) {
        _cleanup_json_ json_object *body = NULL;
        ClientReply reply = {
                .sent_boot = req->sent_boot,
                .sent_real = req->sent_real,
                .received_real = now_realtime_usec(),
                .raw = req->response ? req->response : "",
        };

        if (code == CURLE_OK && !req->too_large) {
                curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &reply.status);
                if (req->response_size > 0) {
                        JsonError err;
                        if (json_parse(req->response, req->response_size, &body, &err) == 0)
                                reply.body = body;
                }
        } else {
                reply.error = req->too_large ? -EFBIG : curl_error_to_errno(code);
                reply.error_text = req->too_large ? "response too large"
                                   : *req->errbuf ? req->errbuf : curl_easy_strerror(code);
        }
        request_unlink(req);
        req->destroy = NULL; /* the callback owns userdata now */
        if (req->cb)
                req->cb(req->client, &reply, req->userdata);
        request_free(req);
}

static void client_process(Client *c) {
        CURLMsg *msg;
        int left;

        while ((msg = curl_multi_info_read(c->multi, &left))) {
                ClientRequest *req = NULL;
                if (msg->msg != CURLMSG_DONE)
                        continue;
                if (curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &req) != CURLE_OK || !req)
                        continue;
                request_finish(req, msg->data.result);
        }
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Client *c = userdata;
        int action = 0, running;

        if (revents & (EPOLLIN | EPOLLPRI))
                action |= CURL_CSELECT_IN;
        if (revents & EPOLLOUT)
                action |= CURL_CSELECT_OUT;
        if (revents & (EPOLLERR | EPOLLHUP))
                action |= CURL_CSELECT_ERR;
        if (curl_multi_socket_action(c->multi, fd, action, &running) != CURLM_OK)
                log_warning("curl_multi_socket_action failed on fd %d", fd);
        client_process(c);
        return 0;
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
        Client *c = userp;
        sd_event_source *src = socketp;
        uint32_t events = 0;
        int r;

        if (what == CURL_POLL_REMOVE) {
                if (src) {
                        sd_event_source_disable_unref(src);
                        curl_multi_assign(c->multi, fd, NULL);
                }
                return 0;
        }
        if (what & CURL_POLL_IN)
                events |= EPOLLIN;
        if (what & CURL_POLL_OUT)
                events |= EPOLLOUT;
        if (src) {
                r = sd_event_source_set_io_events(src, events);
                if (r >= 0)
                        r = sd_event_source_set_enabled(src, SD_EVENT_ON);
        } else {
                r = sd_event_add_io(c->event, &src, fd, events, on_io, c);
                if (r >= 0 && curl_multi_assign(c->multi, fd, src) != CURLM_OK) {
                        sd_event_source_disable_unref(src);
                        r = -EIO;
                }
        }
        if (r < 0) {
                log_error_errno(r, "Failed to watch HTTP socket %d: %m", (int) fd);
                return -1;
        }
        return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Client *c = userdata;
        int running;

        if (curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running) != CURLM_OK)
                log_warning("curl_multi_socket_action (timeout) failed");
        client_process(c);
        return 0;
}

/* curl asks for a callback after timeout_ms (-1: none). Calling curl from here is not allowed, so
 * even 0 goes through the event loop. */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp) {
        Client *c = userp;
        int r;

        if (timeout_ms < 0)
                return sd_event_source_set_enabled(c->timer, SD_EVENT_OFF) < 0 ? -1 : 0;
        r = sd_event_source_set_time_relative(c->timer, (usec_t) timeout_ms * USEC_PER_MSEC);
        if (r >= 0)
                r = sd_event_source_set_enabled(c->timer, SD_EVENT_ONESHOT);
        return r < 0 ? -1 : 0;
}

/* Runs curl on what is due now: a request just added goes out at once (on a kept-alive
 * connection: written to the socket) rather than at the next loop iteration, so it travels while
 * the caller goes on with its work (e.g. fsyncs). Callbacks never run from in here: a transfer
 * that already finished is collected by the loop, through the timer. */
static void client_kick(Client *c) {
        int running = 0;

        if (curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running) != CURLM_OK)
                return; /* the timer curl asked for when the handle was added does it */
        if ((unsigned) running < c->n_requests)
                (void) on_curl_timer(c->multi, 0, c);
}

/* Tokens are wiped before their memory is given back. */
static void free_secret(char **p) {
        if (*p)
                explicit_bzero(*p, strlen(*p));
        free(*p);
        *p = NULL;
}

static void client_forget_token(Client *c) {
        free_secret(&c->token);
        free_secret(&c->token_header);
        free(c->worker_id);
        c->worker_id = NULL;
}

int client_new(sd_event *e, const char *base_url, Client **ret) {
        Client *c;
        size_t n;
        int r;

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->event = sd_event_ref(e);
        c->timeout = 10 * USEC_PER_SEC;
        c->base_url = strdup(base_url);
        if (!c->base_url) {
                client_free(c);
                return -ENOMEM;
        }
        n = strlen(c->base_url);
        while (n > 0 && c->base_url[n - 1] == '/')
                c->base_url[--n] = 0;
        c->multi = curl_multi_init();
        if (!c->multi) {
                client_free(c);
                return -ENOMEM;
        }
        /* Accuracy 1us: 0 would mean sd-event's default slack of 250ms on every request step. */
        r = sd_event_add_time_relative(e, &c->timer, CLOCK_MONOTONIC, USEC_PER_HOUR, 1, on_timer, c);
        if (r < 0) {
                client_free(c);
                return r;
        }
        (void) sd_event_source_set_enabled(c->timer, SD_EVENT_OFF);
        (void) sd_event_source_set_description(c->timer, "curl-timer");
        if (curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket) != CURLM_OK ||
            curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c) != CURLM_OK ||
            curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer) != CURLM_OK ||
            curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c) != CURLM_OK) {
                client_free(c);
                return -EIO;
        }
        *ret = c;
        return 0;
}

Client *client_free(Client *c) {
        if (!c)
                return NULL;
        while (c->requests) {
                ClientRequest *req = c->requests;
                request_unlink(req);
                request_free(req);
        }
        if (c->multi)
                curl_multi_cleanup(c->multi);
        sd_event_source_disable_unref(c->timer);
        sd_event_unref(c->event);
        free(c->base_url);
        client_forget_token(c);
        free(c->ca_file);
        free(c->tls_certificate);
        free(c->tls_key);
        free(c);
        return NULL;
}

int client_set_token(Client *c, const char *token, const char *worker_id, bool signed_tokens, usec_t lifetime) {
        char *t, *id;

        if (isempty(token) || (signed_tokens && (isempty(worker_id) || lifetime == 0)))
                return -EINVAL;
        t = strdup(token);
        id = worker_id ? strdup(worker_id) : NULL;
        if (!t || (worker_id && !id)) {
                free_secret(&t);
                free(id);
                return -ENOMEM;
        }
        client_forget_token(c);
        c->token = t;
        c->worker_id = id;
        c->signed_tokens = signed_tokens;
        c->signed_token_lifetime = lifetime;
        return 0;
}

/* Keeps copies: libcurl reads the files itself when it connects, so a renewed certificate is
 * picked up by the next new connection. */
int client_set_tls(Client *c, const char *ca_file, const char *cert_file, const char *key_file) {
        char *ca = NULL, *cert = NULL, *key = NULL;

        if (isempty(cert_file) != isempty(key_file))
                return -EINVAL;
        if ((!isempty(ca_file) && !(ca = strdup(ca_file))) || (!isempty(cert_file) && !(cert = strdup(cert_file))) ||
            (!isempty(key_file) && !(key = strdup(key_file)))) {
                free(ca);
                free(cert);
                free(key);
                return -ENOMEM;
        }
        free_and_replace_str(&c->ca_file, ca);
        free_and_replace_str(&c->tls_certificate, cert);
        free_and_replace_str(&c->tls_key, key);
        return 0;
}

/* The header for the next request: the plain token once, or a signed one made again when half
 * its lifetime has passed (or the clock went back past the moment it was made). */
static int client_token_header(Client *c, const char **ret) {
        _cleanup_free_ char *value = NULL;
        usec_t now = now_realtime_usec();
        char *h;
        int r;

        if (c->token_header && (!c->signed_tokens || (now < c->token_renew_at && now >= c->token_made_at))) {
                *ret = c->token_header;
                return 0;
        }
        r = http_client_worker_token(c->token, c->worker_id, c->signed_tokens, c->signed_token_lifetime, &value);
        if (r < 0)
                return r;
        r = asprintf(&h, "X-API-Token: %s", value);
        explicit_bzero(value, strlen(value));
        if (r < 0)
                return -ENOMEM;
        free_secret(&c->token_header);
        c->token_header = h;
        c->token_made_at = now;
        c->token_renew_at = now + c->signed_token_lifetime / 2;
        if (c->signed_tokens) {
                char span[64];
                log_debug("Signed a new worker token for %s, valid for %s.", c->worker_id,
                          format_timespan(span, sizeof(span), c->signed_token_lifetime));
        }
        *ret = h;
        return 0;
}

void client_set_timeout(Client *c, usec_t timeout) {
        c->timeout = timeout;
}

unsigned client_n_pending(Client *c) {
        return c->n_requests;
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *userdata) {
        ClientRequest *req = userdata;
        size_t n = size * nmemb;
        char *p;

        if (req->response_size + n > CLIENT_MAX_RESPONSE) {
                req->too_large = true;
                return 0; /* aborts the transfer */
        }
        p = realloc(req->response, req->response_size + n + 1);
        if (!p)
                return 0;
        memcpy(p + req->response_size, ptr, n);
        req->response = p;
        req->response_size += n;
        p[req->response_size] = 0;
        return n;
}

static int request_setup(ClientRequest *req, const char *method, const char *url) {
        Client *c = req->client;
        CURL *e = req->easy;
        static const char *const fixed_headers[] = { "Content-Type: application/json", "Accept: application/json",
                                                     "Expect:" };
        const char *token_header;
        int r;

        r = http_client_tls_apply(e, c->ca_file, c->tls_certificate, c->tls_key);
        if (r < 0)
                return r;

        for (size_t i = 0; i < ELEMENTSOF(fixed_headers); i++) {
                struct curl_slist *l = curl_slist_append(req->headers, fixed_headers[i]);
                if (!l)
                        return -ENOMEM;
                req->headers = l;
        }
        if (c->token) {
                struct curl_slist *l;
                r = client_token_header(c, &token_header);
                if (r < 0)
                        return r;
                l = curl_slist_append(req->headers, token_header);
                if (!l)
                        return -ENOMEM;
                req->headers = l;
        }
        if (curl_easy_setopt(e, CURLOPT_URL, url) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_HTTPHEADER, req->headers) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_PRIVATE, req) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_WRITEDATA, req) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_ERRORBUFFER, req->errbuf) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
            /* Small request/response exchanges stall on delayed ACKs otherwise. */
            curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long) (c->timeout / USEC_PER_MSEC)) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long) (c->timeout / USEC_PER_MSEC)) != CURLE_OK)
                return -EIO;
#if LIBCURL_VERSION_NUM >= 0x075500
        if (curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK)
                return -EIO;
#else
        if (curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS)) != CURLE_OK)
                return -EIO;
#endif
        if (req->body && (curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body) != CURLE_OK ||
                          curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long) strlen(req->body)) != CURLE_OK))
                return -EIO;
        return 0;
}

int client_request(Client *c, const char *method, const char *path, json_object *body, ClientCallback cb,
                   void *userdata, ClientRequest **ret) {
        _cleanup_free_ char *url = NULL;
        ClientRequest *req;
        int r;

        if (asprintf(&url, "%s%s", c->base_url, path) < 0)
                return -ENOMEM;
        req = calloc(1, sizeof(*req));
        if (!req)
                return -ENOMEM;
        req->client = c;
        req->cb = cb;
        req->userdata = userdata;
        if (body) {
                req->body = strdup(json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN));
                if (!req->body) {
                        free(req);
                        return -ENOMEM;
                }
        }
        req->easy = curl_easy_init();
        if (!req->easy) {
                request_free(req);
                return -ENOMEM;
        }
        r = request_setup(req, method, url);
        if (r < 0) {
                request_free(req);
                return r;
        }
        /* CLOCK_BOOTTIME, as the control plane counts leases: the monotonic clock stops while the
         * host is suspended, and a lease counted on it would outlast the control plane's. */
        req->sent_boot = now_boottime_usec();
        req->sent_real = now_realtime_usec();
        if (curl_multi_add_handle(c->multi, req->easy) != CURLM_OK) {
                curl_easy_cleanup(req->easy);
                req->easy = NULL;
                request_free(req);
                return -EIO;
        }
        LIST_PREPEND(c->requests, req, next, prev);
        c->n_requests++;
        if (ret)
                *ret = req;
        client_kick(c);
        return 0;
}

void client_request_set_destroy(ClientRequest *req, void (*destroy)(void *userdata)) {
        req->destroy = destroy;
}

void client_request_cancel(ClientRequest *req) {
        if (!req)
                return;
        request_unlink(req);
        request_free(req);
}

bool client_reply_from_control_plane(const ClientReply *reply) {
        json_object *v;

        if (!reply->body || !json_object_is_type(reply->body, json_type_object))
                return false;
        return json_object_object_get_ex(reply->body, reply->status / 100 == 2 ? "status" : "error", &v) &&
               json_object_is_type(v, json_type_string);
}

const char *client_reply_describe_origin(const ClientReply *reply, char *buf, size_t len) {
        size_t n;

        client_reply_describe(reply, buf, len);
        n = strlen(buf);
        if (reply->status > 0 && !client_reply_from_control_plane(reply) && n < len)
                snprintf(buf + n, len - n, ", not the control plane's answer");
        return buf;
}

const char *client_reply_describe(const ClientReply *reply, char *buf, size_t len) {
        const char *msg = NULL;
        if (reply->status == 0) {
                snprintf(buf, len, "%s", strempty(reply->error_text));
                return buf;
        }
        if (reply->body && json_object_is_type(reply->body, json_type_object)) {
                json_object *e;
                if (json_object_object_get_ex(reply->body, "error", &e) && json_object_is_type(e, json_type_string))
                        msg = json_object_get_string(e);
        }
        snprintf(buf, len, "HTTP %ld%s%s", reply->status, msg ? ": " : "", strempty(msg));
        return buf;
}
