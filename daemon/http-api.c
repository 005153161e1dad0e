/* http-api.c: the route table (method + path -> role -> handler) and authentication. Every
 * refusal made here is a JSON {"error": ...}; refusals for a bad or missing token or client
 * certificate, or a worker id its credentials do not name (http-auth.c), are audited without the
 * token. */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "api.h"
#include "audit.h"
#include "auth.h"
#include "http-api.h"
#include "http-auth.h"
#include "observability.h"
#include "log.h"
#include "macro.h"
#include "protocol.h"

typedef enum RouteRole {
        ROUTE_PUBLIC,  /* nothing: no token, no client certificate (/healthz) */
        ROUTE_PAGE,    /* no token, but with mTLS a client certificate (the dashboard's files) */
        ROUTE_ADMIN,   /* admin token (current or previous) */
        ROUTE_WORKER,  /* worker token (current or previous) */
        ROUTE_METRICS, /* admin token or the metrics token */
} RouteRole;

typedef struct Route {
        const char *method;
        const char *path; /* exact, or with a trailing '/' and prefix: "/jobs/" + one segment */
        bool prefix;
        RouteRole role;
        ApiHandler handler;
} Route;

static const Route routes[] = {
        {"GET", "/healthz", false, ROUTE_PUBLIC, api_get_healthz},

        {"POST", "/jobs", false, ROUTE_ADMIN, api_post_jobs},
        {"GET", "/jobs", false, ROUTE_ADMIN, api_get_jobs},
        {"GET", "/jobs/", true, ROUTE_ADMIN, api_get_job},
        {"POST", "/abort", false, ROUTE_ADMIN, api_post_abort},
        {"GET", "/workers", false, ROUTE_ADMIN, api_get_workers},
        {"POST", "/remove-worker", false, ROUTE_ADMIN, api_post_remove_worker},
        {"GET", "/events", false, ROUTE_ADMIN, api_get_events},
        {"GET", "/metrics", false, ROUTE_METRICS, api_get_metrics},
        {"GET", "/events/stream", false, ROUTE_ADMIN, api_get_events_stream},
        {"POST", "/drain", false, ROUTE_ADMIN, api_post_drain},

        /* The dashboard's page and files; they hold no data, the page asks for a token itself. */
        {"GET", "/ui", false, ROUTE_PAGE, ui_serve},
        {"GET", "/ui/", false, ROUTE_PAGE, ui_serve},
        {"GET", "/ui/", true, ROUTE_PAGE, ui_serve},

        {"POST", "/register", false, ROUTE_WORKER, api_post_register},
        {"GET", "/next-job", false, ROUTE_WORKER, api_get_next_job},
        {"POST", "/ack", false, ROUTE_WORKER, api_post_ack},
        {"POST", "/heartbeat", false, ROUTE_WORKER, api_post_heartbeat},
        {"POST", "/complete", false, ROUTE_WORKER, api_post_complete},
        {"POST", "/fail", false, ROUTE_WORKER, api_post_fail},
        {"POST", "/reconnect", false, ROUTE_WORKER, api_post_reconnect},
};

static const char *role_name(RouteRole role) {
        static const char *const names[] = {
                [ROUTE_PUBLIC] = "public",
                [ROUTE_PAGE] = "page",
                [ROUTE_ADMIN] = "admin",
                [ROUTE_WORKER] = "worker",
                [ROUTE_METRICS] = "metrics",
        };
        return names[role];
}

static unsigned role_bits(RouteRole role) {
        switch (role) {
        case ROUTE_ADMIN:
                return AUTH_ROLE_ADMIN;
        case ROUTE_WORKER:
                return AUTH_ROLE_WORKER;
        case ROUTE_METRICS:
                return AUTH_ROLE_METRICS;
        case ROUTE_PUBLIC:
                return AUTH_OPEN;
        default:
                return 0;
        }
}

/* A prefix route takes exactly one non-empty path segment of at most an id's length. */
static bool route_path_matches(const Route *r, const char *path) {
        size_t n;
        const char *rest;

        if (!r->prefix)
                return streq(r->path, path);
        n = strlen(r->path);
        if (strncmp(path, r->path, n) != 0)
                return false;
        rest = path + n;
        return !isempty(rest) && !strchr(rest, '/') && strlen(rest) <= LIMIT_ID_LEN;
}

/* The route for the request; NULL with *ret_path_known telling 405 from 404, and the methods
 * the path does take (for Allow) in allow. */
static const Route *route_find(const HttpRequest *req, bool *ret_path_known, char *allow, size_t allow_size) {
        bool known = false;

        allow[0] = 0;
        for (size_t i = 0; i < ELEMENTSOF(routes); i++) {
                const Route *r = &routes[i];
                if (!route_path_matches(r, req->path))
                        continue;
                if (streq(r->method, req->method))
                        return r;
                known = true;
                if (!strstr(allow, r->method) && strlen(allow) + strlen(r->method) + 3 < allow_size) {
                        if (allow[0])
                                strcat(allow, ", ");
                        strcat(allow, r->method);
                }
        }
        *ret_path_known = known;
        return NULL;
}

static int refuse_route(const HttpRequest *req, HttpResponse *resp, bool path_known, const char *allow) {
        int r;

        if (!path_known)
                return http_response_error(resp, 404, "no such endpoint: %.128s", req->path);
        r = http_response_error(resp, 405, "method %.16s not allowed on %.128s", req->method, req->path);
        if (r < 0)
                return r;
        return http_response_add_header(resp, "Allow", allow);
}

/* Refusals are audited (who, what, from where; never the token), a flood of them bounded by
 * audit_refused(). */
static int refuse_auth(Control *c, const Route *route, const HttpRequest *req, HttpResponse *resp,
                       const HttpAuthResult *a) {
        char what[256];
        int r;

        if (route->role == ROUTE_PAGE)
                snprintf(what, sizeof(what), "%s %.128s: %s", req->method, req->path, a->reason);
        else
                snprintf(what, sizeof(what), "%s %.128s: %s (needs the %s token)", req->method, req->path, a->reason,
                         role_name(route->role));
        /* Who: what a certificate or signed token proved, else unknown. Never the token. */
        r = audit_refused(c, "auth", a->who[0] ? a->who : NULL, req->remote, req->request_id, what);
        if (r < 0)
                log_warning_errno(r, "Failed to audit a refused request from %s: %m", req->remote);
        if (a->status == 401 && streq(a->reason, "missing token"))
                return http_response_error(resp, 401, "missing API token (X-API-Token)");
        if (a->status == 401 && (streq(a->reason, "invalid token") || streq(a->reason, "token of another role")))
                return http_response_error(resp, 401, "invalid API token for this endpoint");
        return http_response_error(resp, a->status, "%s", a->reason);
}

bool http_api_admit_body(void *userdata, const HttpRequest *req) {
        const Route *route;
        bool path_known;
        char allow[64];

        route = route_find(req, &path_known, allow, sizeof(allow));
        return route && http_auth_token_admits(userdata, req, role_bits(route->role));
}

int http_api_dispatch(void *userdata, const HttpRequest *req, HttpResponse *resp) {
        Control *c = userdata;
        HttpAuthResult auth;
        const char *rid;
        const Route *route;
        bool path_known = false;
        char allow[64];
        int r;

        route = route_find(req, &path_known, allow, sizeof(allow));
        if (!route)
                return refuse_route(req, resp, path_known, allow);

        /* Authentication first: a client without valid credentials learns that and nothing about
         * how the rest of its request would be judged. (Its refusal is audited without the
         * request id when that id is invalid: req->request_id is NULL then.) */
        r = http_auth_check(c, req, role_bits(route->role), route->role == ROUTE_WORKER, &auth);
        if (r < 0)
                return r;
        if (auth.status != 0)
                return refuse_auth(c, route, req, resp, &auth);

        rid = http_request_header(req, "X-Request-ID");
        if (rid && !http_request_id_valid(rid))
                return http_response_error(resp, 400, "X-Request-ID must be 1 to %d printable ASCII characters",
                                           HTTP_REQUEST_ID_MAX);

        r = route->handler(c, req, resp);
        if (r < 0) {
                log_error_errno(r, "%s %s failed: %m", req->method, req->path);
                return http_response_error(resp, 500, "internal error");
        }
        return 0;
}
