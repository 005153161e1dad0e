/* fuzz-http-api.c: the HTTP API's request handling: routing, authentication (tokens, signed
 * tokens, certificate binding) and the JSON decoding of every endpoint, on a real Control with its
 * SQLite store in a temporary directory. The server's socket side is libmicrohttpd's; what it hands
 * over (method, path, query, headers, body) is what this fabricates:
 *
 *     METHOD /path?key=value&key2=value2
 *     Header-Name: value
 *     ...
 *     <empty line>
 *     body bytes
 *
 * A header "X-Fuzz-Peer: NAME" stands for a verified client certificate naming NAME, with
 * --tls-bind-worker-id on for that request. Tokens in the corpus are the ones set below. The store
 * keeps its state across inputs, as a long-running daemon does. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-event.h>

#include "auth.h"
#include "control-settings.h"
#include "control.h"
#include "fuzz.h"
#include "http-api.h"
#include "http-server.h"
#include "log.h"
#include "macro.h"
#include "observability.h"
#include "store.h"

#define FIELDS_MAX 32

static Control control;
static char dir[PATH_MAX];

static void cleanup(void) {
        char cmd[PATH_MAX + 16];

        observability_free(&control);
        control.store = store_close(control.store);
        auth_clear(&control);
        control_settings_free(&control.settings);
        control.event = sd_event_unref(control.event);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0)
                fprintf(stderr, "Failed to remove %s\n", dir);
}

static int set_tokens(Control *c) {
        c->admin_token = strdup("fuzz-admin-token-0123456789abcdef");
        c->worker_token = strdup("fuzz-worker-token-0123456789abcdef");
        c->worker_token_previous = strdup("fuzz-worker-token-previous-0123456789");
        c->metrics_token = strdup("fuzz-metrics-token-0123456789abcdef");
        return c->admin_token && c->worker_token && c->worker_token_previous && c->metrics_token ? 0 : -ENOMEM;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        char *args[] = {(char *) "entropy-control", (char *) "--config=", NULL};
        char db[PATH_MAX + 16];

        log_set_max_level(LOG_CRIT);
        snprintf(dir, sizeof(dir), "%s/fuzz-http-api-XXXXXX", getenv("TMPDIR") ?: "/tmp");
        if (!mkdtemp(dir))
                return 1;
        snprintf(db, sizeof(db), "%s/control.db", dir);
        /* Defaults as the daemon has them; "normal" sync: fuzzing needs throughput, not durability. */
        if (conf_load(&control_program, 2, args, &control.settings, NULL) != 0 || sd_event_new(&control.event) < 0 ||
            store_open(db, "normal", &control.store) < 0 || set_tokens(&control) < 0 || observability_setup(&control) < 0)
                return 1;
        atexit(cleanup);
        return 0;
}

#ifndef FUZZ_RECONNECT
/* Splits "a=b&c=d" in place into fields. */
static size_t parse_query(char *q, HttpField *f, size_t max) {
        size_t n = 0;

        for (char *tok = strsep(&q, "&"); tok && n < max; tok = strsep(&q, "&")) {
                char *eq = strchr(tok, '=');
                if (eq)
                        *eq++ = 0;
                f[n++] = (HttpField){tok, eq ?: ""};
        }
        return n;
}

/* Request line and headers up to the first empty line; returns the body's start. */
static char *parse_head(char *s, HttpRequest *req, HttpField *headers, HttpField *query) {
        char *line = strsep(&s, "\n"), *q;

        req->method = strsep(&line, " ") ?: "";
        req->path = line ?: "";
        q = strchr(line ?: "", '?');
        if (q) {
                *q++ = 0;
                req->n_query = parse_query(q, query, FIELDS_MAX);
        }
        while (s && *s != '\n' && req->n_headers < FIELDS_MAX) {
                char *h = strsep(&s, "\n"), *colon = strchr(h, ':');
                if (!colon)
                        continue;
                *colon++ = 0;
                headers[req->n_headers++] = (HttpField){h, colon + strspn(colon, " ")};
        }
        return s ? s + (*s == '\n') : NULL;
}
#endif

#ifdef FUZZ_RECONNECT
static const HttpField worker_token[] = {{"X-API-Token", "fuzz-worker-token-0123456789abcdef"}};
static const HttpField admin_token[] = {{"X-API-Token", "fuzz-admin-token-0123456789abcdef"}};

static void call(const char *method, const char *path, const HttpField *token, const HttpField *q, size_t n_q,
                 const char *body) {
        HttpRequest req = {.method = method, .path = path, .headers = token, .n_headers = 1, .query = q,
                           .n_query = n_q, .body = body, .body_size = strlen(body)};
        HttpResponse resp = {};

        snprintf(req.remote, sizeof(req.remote), "127.0.0.1:1");
        (void) http_api_dispatch(&control, &req, &resp);
        http_response_done(&resp);
}

/* Each input replays against worker-1 holding a fresh assignment (and older ones piling up). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const HttpField q[] = {{"worker_id", "worker-1"}};
        _cleanup_free_ char *s = fuzz_strndup(data, size);

        if (!s || size > 256 * 1024)
                return 0;
        call("POST", "/register", worker_token, NULL, 0, "{\"worker_id\":\"worker-1\"}");
        call("POST", "/jobs", admin_token, NULL, 0, "{\"command\":\"true\"}");
        call("GET", "/next-job", worker_token, q, 1, "");
        call("POST", "/reconnect", worker_token, NULL, 0, s);
        return 0;
}
#else
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *s = fuzz_strndup(data, size);
        HttpField headers[FIELDS_MAX], query[FIELDS_MAX];
        HttpRequest req = {.headers = headers, .query = query};
        HttpResponse resp = {};
        char *peer[2] = {};
        char *body;

        if (!s || size > 256 * 1024)
                return 0;
        body = parse_head(s, &req, headers, query);
        req.body = body ?: "";
        req.body_size = strlen(req.body);
        snprintf(req.remote, sizeof(req.remote), "127.0.0.1:1");
        peer[0] = (char *) http_request_header(&req, "X-Fuzz-Peer");
        control.settings.tls_bind_worker_id = peer[0] != NULL;
        if (peer[0]) {
                req.tls = true;
                req.peer_identity = peer[0];
                req.peer_names = peer;
        }
        (void) http_api_dispatch(&control, &req, &resp);
        http_response_done(&resp);
        return 0;
}
#endif
