/* ctl-http.c: entropyctl's HTTP transport (--url), for a control plane on another host. It speaks
 * the admin endpoints of the wire contract with the admin token (--token-file or
 * $ENTROPY_ADMIN_TOKEN), and /reconnect with the worker token for `replay`. libcurl's easy
 * interface is enough: the CLI makes one request at a time. */
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "ctl-output.h"
#include "ctl.h"
#include "fs-util.h"
#include "http-tls-client.h"
#include "json-util.h"
#include "log.h"
#include "strv.h"

#define WAIT_POLL_USEC (250 * USEC_PER_MSEC)
#define MAX_RESPONSE   (64 * 1024 * 1024)

typedef struct HttpBackend {
        Backend base;
        CURL *curl;
        char *url; /* without a trailing slash */
        char *admin_token;
        char *worker_token;
        /* submit --wait: states seen in the job's events, oldest first, and the last event id. */
        json_object *wait_states;
        int64_t wait_after;
} HttpBackend;

typedef struct Buffer {
        char *data;
        size_t size;
} Buffer;

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata) {
        Buffer *b = userdata;
        size_t n = size * nmemb;
        char *p;

        if (b->size + n > MAX_RESPONSE)
                return 0;
        p = realloc(b->data, b->size + n + 1);
        if (!p)
                return 0;
        memcpy(p + b->size, ptr, n);
        b->size += n;
        p[b->size] = 0;
        b->data = p;
        return n;
}

static int status_to_errno(long status) {
        switch (status) {
        case 400:
        case 405:
        case 413:
                return -EINVAL;
        case 401:
        case 403:
                return -EACCES;
        case 404:
                return -ENOENT;
        case 409:
                return -EBUSY;
        case 503:
                return -ECONNREFUSED;
        default:
                return -EIO;
        }
}

static int load_token(const char *file, const char *env, char **ret, CtlError *e) {
        const char *v;
        int r;

        /* An empty --token-file= (or ENTROPY_TOKEN_FILE=) is no file, as an empty assignment
         * resets a setting elsewhere: the variable is used then. */
        if (!isempty(file)) {
                r = read_secret_file(file, ret);
                if (r < 0)
                        /* A missing file is a wrong argument (exit 2), not a missing job (4). */
                        return ctl_error_set(e, r == -EACCES ? r : -EINVAL, "Failed to read token file %s: %s", file,
                                             strerror(-r));
                return 0;
        }
        v = getenv(env);
        if (isempty(v))
                return 0;
        /* Stripped like a file: `export ENTROPY_ADMIN_TOKEN="$(cat file)"` or a stray space must
         * not turn into a 401. Only whitespace counts as unset. */
        _cleanup_free_ char *t = strdup(v);
        if (!t)
                return -ENOMEM;
        r = secret_strip(t);
        if (r == -ENODATA)
                return 0;
        if (r < 0)
                return ctl_error_set(e, -EINVAL, "$%s holds more than one line; a token is one line.", env);
        *ret = TAKE_PTR(t);
        return 0;
}

/* The easy handle's options for one request; TLS verification is set up on every request since
 * curl_easy_reset() clears it. */
static int request_setup(HttpBackend *h, const char *method, const char *url, struct curl_slist *headers,
                         const char *payload, Buffer *resp, char *curl_error) {
        CURL *c = h->curl;
        int r;

        curl_easy_reset(c);
        r = http_client_tls_apply(c, h->base.settings->ca_file, h->base.settings->tls_certificate,
                                  h->base.settings->tls_key);
        if (r < 0)
                return r;
        if (curl_easy_setopt(c, CURLOPT_URL, url) != CURLE_OK ||
            curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method) != CURLE_OK ||
            curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers) != CURLE_OK ||
            curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data) != CURLE_OK ||
            curl_easy_setopt(c, CURLOPT_WRITEDATA, resp) != CURLE_OK ||
            curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curl_error) != CURLE_OK ||
            curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L) != CURLE_OK ||
            curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
            curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long) (h->base.settings->timeout / USEC_PER_MSEC)) != CURLE_OK ||
            curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK)
                return -EIO;
        if (payload && curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload) != CURLE_OK)
                return -EIO;
        return 0;
}

/* What a failed transfer means for the exit status: a URL this program cannot use is a wrong
 * argument, an answer too large a failure, the rest an unreachable control plane. */
static int perform_error(HttpBackend *h, CURLcode cc, const char *curl_error, CtlError *e) {
        const char *why = *curl_error ? curl_error : curl_easy_strerror(cc);

        switch (cc) {
        case CURLE_UNSUPPORTED_PROTOCOL:
        case CURLE_URL_MALFORMAT:
                return ctl_error_set(e, -EINVAL, "Cannot use --url=%s: %s (http:// or https:// only)", h->url, why);
        case CURLE_WRITE_ERROR:
                return ctl_error_set(e, -EFBIG, "The answer of %s is larger than %d MiB, or memory ran out.", h->url,
                                     MAX_RESPONSE / (1024 * 1024));
        default:
                ctl_error_set(e, 0, "Failed to reach %s: %s", h->url, why);
                return -ECONNREFUSED;
        }
}

/* A 1xx or 3xx final answer (a redirect from a front proxy, say) did not do what was asked: it is
 * no success. Redirects are not followed, since the token would go along. */
static int unexpected_status(HttpBackend *h, long status, CtlError *e) {
        const char *location = NULL;

        (void) curl_easy_getinfo(h->curl, CURLINFO_REDIRECT_URL, &location);
        return ctl_error_set(e, -EIO, "Unexpected answer from %s: HTTP %ld%s%s; check --url.", h->url, status,
                             location ? ", redirected to " : "", strempty(location));
}

/* One request: method, path (with query), optional JSON body; *ret_body gets the parsed answer
 * (NULL when empty). Statuses >= 400 become negative errnos with the server's message, other
 * statuses outside 2xx -EIO. */
static int request(HttpBackend *h, const char *method, const char *path, json_object *body, const char *token,
                   long *ret_status, json_object **ret_body, CtlError *e) {
        _cleanup_free_ char *url = NULL, *token_header = NULL;
        Buffer resp = {};
        struct curl_slist *headers = NULL;
        const char *payload = NULL;
        char curl_error[CURL_ERROR_SIZE] = "";
        long status = 0;
        CURLcode cc;
        int r = 0;

        if (!token)
                return ctl_error_set(e, -EACCES, "No admin token: give --token-file or set $ENTROPY_ADMIN_TOKEN.");
        if (asprintf(&url, "%s%s", h->url, path) < 0 || asprintf(&token_header, "X-API-Token: %s", token) < 0)
                return -ENOMEM;
        headers = curl_slist_append(NULL, token_header);
        if (!headers)
                return -ENOMEM;
        if (body) {
                struct curl_slist *l = curl_slist_append(headers, "Content-Type: application/json");
                if (!l) {
                        curl_slist_free_all(headers);
                        return -ENOMEM;
                }
                headers = l;
                payload = json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN);
        }

        r = request_setup(h, method, url, headers, payload, &resp, curl_error);
        if (r < 0) {
                curl_slist_free_all(headers);
                return ctl_error_set(e, r, "Failed to set up the request to %s: %s", h->url,
                                     r == -EINVAL ? "--tls-certificate and --tls-key go together"
                                                  : "libcurl refused an option");
        }
        cc = curl_easy_perform(h->curl);
        curl_slist_free_all(headers);
        if (cc != CURLE_OK) {
                free(resp.data);
                return perform_error(h, cc, curl_error, e);
        }
        curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &status);

        _cleanup_json_ json_object *parsed = NULL;
        if (resp.size > 0) {
                JsonError jerr;
                if (json_parse(resp.data, resp.size, &parsed, &jerr) < 0)
                        parsed = NULL; /* not JSON: the status still says what happened */
        }
        free(resp.data);
        if (status >= 400) {
                const char *msg = NULL;
                json_object *m;
                if (parsed && json_object_object_get_ex(parsed, "error", &m))
                        msg = json_object_get_string(m);
                r = status_to_errno(status);
                ctl_error_set(e, 0, "%s (HTTP %ld)", msg ? msg : "Request refused", status);
                if (ret_status)
                        *ret_status = status;
                return r;
        }
        if (status < 200 || status >= 300)
                return unexpected_status(h, status, e);
        if (ret_status)
                *ret_status = status;
        if (parsed)
                json_normalize(parsed);
        if (ret_body)
                *ret_body = TAKE_PTR(parsed);
        return 0;
}

static char *escape(HttpBackend *h, const char *s) {
        char *c = curl_easy_escape(h->curl, s, 0);
        char *copy = c ? strdup(c) : NULL;
        curl_free(c);
        return copy;
}

/* Appends "&key=value" (or "?key=value" for the first) to *q. */
static int query_add(HttpBackend *h, char **q, const char *key, const char *value) {
        _cleanup_free_ char *v = NULL;
        char *n;

        if (!value)
                return 0;
        v = escape(h, value);
        if (!v || asprintf(&n, "%s%c%s=%s", strempty(*q), isempty(*q) ? '?' : '&', key, v) < 0)
                return -ENOMEM;
        free(*q);
        *q = n;
        return 0;
}

static int http_submit(Backend *base, json_object *spec, char **ret_job_id, CtlError *e) {
        HttpBackend *h = (HttpBackend *) base;
        _cleanup_json_ json_object *resp = NULL;
        const char *id;
        int r;

        r = request(h, "POST", "/jobs", spec, h->admin_token, NULL, &resp, e);
        if (r < 0)
                return r;
        id = json_str(resp, "job_id");
        if (!id)
                return ctl_error_set(e, -EBADMSG, "The control plane answered without a job_id.");
        *ret_job_id = strdup(id);
        return *ret_job_id ? 0 : -ENOMEM;
}

static int get_array(HttpBackend *h, const char *path, json_object **ret, CtlError *e) {
        _cleanup_json_ json_object *resp = NULL;
        int r;

        r = request(h, "GET", path, NULL, h->admin_token, NULL, &resp, e);
        if (r < 0)
                return r;
        if (!resp || !json_object_is_type(resp, json_type_array))
                return ctl_error_set(e, -EBADMSG, "The control plane's answer to %s is not a list.", path);
        *ret = TAKE_PTR(resp);
        return 0;
}

static int http_list_jobs(Backend *base, const char *state, const char *worker, json_object **ret, CtlError *e) {
        HttpBackend *h = (HttpBackend *) base;
        _cleanup_free_ char *q = NULL, *path = NULL;

        if (query_add(h, &q, "status", state) < 0 || query_add(h, &q, "worker_id", worker) < 0 ||
            asprintf(&path, "/jobs%s", strempty(q)) < 0)
                return -ENOMEM;
        return get_array(h, path, ret, e);
}

static int http_get_job(Backend *base, const char *job_id, json_object **ret, CtlError *e) {
        HttpBackend *h = (HttpBackend *) base;
        _cleanup_free_ char *id = escape(h, job_id), *path = NULL;
        _cleanup_json_ json_object *resp = NULL;
        int r;

        if (!id || asprintf(&path, "/jobs/%s", id) < 0)
                return -ENOMEM;
        r = request(h, "GET", path, NULL, h->admin_token, NULL, &resp, e);
        if (r < 0)
                return r;
        if (!resp || !json_object_is_type(resp, json_type_object))
                return ctl_error_set(e, -EBADMSG, "The control plane's answer to %s is not a job.", path);
        *ret = TAKE_PTR(resp);
        return 0;
}

/* A 2xx answer without the field the contract promises comes from something else than a control
 * plane (a --url that leads elsewhere): nothing is known to have been done. */
static int expect_field(HttpBackend *h, json_object *resp, const char *path, const char *field, CtlError *e) {
        if (resp && json_object_is_type(resp, json_type_object) && json_object_object_get_ex(resp, field, NULL))
                return 0;
        return ctl_error_set(e, -EBADMSG, "The answer of %s to %s has no '%s': is --url a control plane?", h->url, path,
                             field);
}

static int http_abort(HttpBackend *h, const char *key, const char *id, const char *reason, json_object **ret,
                      CtlError *e) {
        _cleanup_json_ json_object *body = json_object_new_object();
        _cleanup_json_ json_object *resp = NULL;
        int r;

        if (!body)
                return -ENOMEM;
        json_add_string(body, key, id);
        if (!isempty(reason))
                json_add_string(body, "reason", reason);
        r = request(h, "POST", "/abort", body, h->admin_token, NULL, &resp, e);
        if (r >= 0)
                r = expect_field(h, resp, "/abort", "aborted_jobs", e);
        if (r >= 0)
                *ret = TAKE_PTR(resp);
        return r;
}

/* The answer's reason is the one the jobs keep, the default the control plane made included. */
static int abort_reason(json_object *resp, char **ret) {
        const char *kept = json_str(resp, "reason");
        char *s = NULL;

        if (kept && !(s = strdup(kept)))
                return -ENOMEM;
        *ret = s;
        return 0;
}

static int http_abort_job(Backend *base, const char *job_id, const char *reason, char **ret_reason, CtlError *e) {
        _cleanup_json_ json_object *resp = NULL;
        int r;

        r = http_abort((HttpBackend *) base, "job_id", job_id, reason, &resp, e);
        if (r < 0)
                return r;
        return abort_reason(resp, ret_reason);
}

static int http_abort_worker(Backend *base, const char *worker_id, const char *reason, uint64_t *ret_n,
                             char **ret_reason, CtlError *e) {
        _cleanup_json_ json_object *resp = NULL;
        int r;

        r = http_abort((HttpBackend *) base, "worker_id", worker_id, reason, &resp, e);
        if (r == -ENOENT && e && strncmp(e->message, "nothing to abort", strlen("nothing to abort")) == 0) {
                /* The D-Bus API answers 0 for this, and so do we. Any other 404 (a --url whose
                 * path leads to no such endpoint) stays an error. */
                *ret_n = 0;
                *ret_reason = NULL;
                return 0;
        }
        if (r < 0)
                return r;
        *ret_n = (uint64_t) json_int(resp, "aborted_jobs", 0);
        return abort_reason(resp, ret_reason);
}

static int http_list_workers(Backend *base, json_object **ret, CtlError *e) {
        return get_array((HttpBackend *) base, "/workers", ret, e);
}

static int http_events(Backend *base, const EventQuery *q, json_object **ret, CtlError *e) {
        HttpBackend *h = (HttpBackend *) base;
        _cleanup_free_ char *qs = NULL, *path = NULL;
        char since[32], limit[32];

        snprintf(since, sizeof(since), "%" PRId64, q->after_id);
        snprintf(limit, sizeof(limit), "%" PRId64, q->limit);
        if (query_add(h, &qs, "job_id", q->job_id) < 0 || query_add(h, &qs, "worker_id", q->worker_id) < 0 ||
            query_add(h, &qs, "event", q->event) < 0 ||
            query_add(h, &qs, "oldest_first", q->oldest_first ? "true" : NULL) < 0 ||
            query_add(h, &qs, "since_id", q->after_id > 0 ? since : NULL) < 0 ||
            query_add(h, &qs, "limit", q->limit > 0 ? limit : NULL) < 0 ||
            asprintf(&path, "/events%s", strempty(qs)) < 0)
                return -ENOMEM;
        return get_array(h, path, ret, e);
}

/* POST /drain {"worker_id", "drain"}: the HTTP twin of DrainWorker/ResumeWorker. */
static int http_drain(Backend *base, const char *worker_id, bool drain, CtlError *e) {
        HttpBackend *h = (HttpBackend *) base;
        _cleanup_json_ json_object *body = json_object_new_object();
        _cleanup_json_ json_object *resp = NULL;

        if (!body)
                return -ENOMEM;
        json_add_string(body, "worker_id", worker_id);
        json_add_bool(body, "drain", drain);
        int r = request(h, "POST", "/drain", body, h->admin_token, NULL, &resp, e);
        return r < 0 ? r : expect_field(h, resp, "/drain", "draining", e);
}

/* POST /remove-worker {"worker_id"}: the HTTP twin of RemoveWorker. */
static int http_remove_worker(Backend *base, const char *worker_id, CtlError *e) {
        HttpBackend *h = (HttpBackend *) base;
        _cleanup_json_ json_object *body = json_object_new_object();
        _cleanup_json_ json_object *resp = NULL;

        if (!body)
                return -ENOMEM;
        json_add_string(body, "worker_id", worker_id);
        int r = request(h, "POST", "/remove-worker", body, h->admin_token, NULL, &resp, e);
        return r < 0 ? r : expect_field(h, resp, "/remove-worker", "status", e);
}

/* Reconciling and reloading are administration of the local host: the wire contract has no
 * endpoint for them, so they need D-Bus on that host. */
static int http_reconcile(Backend *base, uint64_t *ret_changes, CtlError *e) {
        return ctl_error_set(e, -EOPNOTSUPP, "reconcile needs D-Bus on the control plane's host (no HTTP endpoint).");
}

static int http_reload(Backend *base, CtlError *e) {
        return ctl_error_set(e, -EOPNOTSUPP, "reload needs D-Bus on the control plane's host (no HTTP endpoint).");
}

static int http_replay(Backend *base, json_object *body, json_object **ret, CtlError *e) {
        HttpBackend *h = (HttpBackend *) base;

        if (!h->worker_token)
                return ctl_error_set(e, -EACCES,
                                     "replay posts to the worker endpoint /reconnect: give --worker-token-file "
                                     "or set $ENTROPY_WORKER_TOKEN.");
        return request(h, "POST", "/reconnect", body, h->worker_token, NULL, ret, e);
}

/* The job's next state from the audit trail, so that no transition is missed between two polls
 * (GET /jobs/{id} would only show where the job is at each poll). */
static const char *event_new_state(json_object *ev) {
        json_object *details, *to;
        const char *name = json_str(ev, "event");

        if (streq_ptr(name, "job.submitted"))
                return "PENDING";
        if (!name || strncmp(name, "job.", 4) != 0 || streq(name, "job.transition_refused") ||
            streq(name, "job.assignment_stale"))
                return NULL;
        if (!json_object_object_get_ex(ev, "details", &details) || !json_object_object_get_ex(details, "to", &to))
                return NULL;
        return json_object_get_string(to);
}

/* Queues a state for http_wait_state() to print. */
static int wait_state_push(HttpBackend *h, const char *state) {
        json_object *s = json_object_new_string(state);
        if (!s || json_object_array_add(h->wait_states, s) < 0) {
                json_object_put(s);
                return -ENOMEM;
        }
        return 0;
}

/* Fetches the job's events above h->wait_after and queues the states they moved it to. Oldest
 * first: should more than a page have come since the last poll, the next poll gets the rest. */
static int http_poll_transitions(HttpBackend *h, const char *job_id, CtlError *e) {
        _cleanup_json_ json_object *events = NULL;
        EventQuery q = {.job_id = job_id, .after_id = h->wait_after, .limit = 1000, .oldest_first = true};
        int r;

        r = http_events(&h->base, &q, &events, e);
        if (r < 0)
                return r;
        for (size_t i = 0; i < json_object_array_length(events); i++) {
                json_object *ev = json_object_array_get_idx(events, i);
                const char *state = event_new_state(ev);
                h->wait_after = MAX(h->wait_after, json_int(ev, "id", 0));
                if (state && wait_state_push(h, state) < 0)
                        return -ENOMEM;
        }
        return 0;
}

static int http_wait_state(Backend *base, const char *job_id, char **state, CtlError *e) {
        HttpBackend *h = (HttpBackend *) base;
        int r;

        if (!*state) {
                h->wait_after = 0;
                json_object_array_del_idx(h->wait_states, 0, json_object_array_length(h->wait_states));
        }
        for (;;) {
                while (json_object_array_length(h->wait_states) > 0) {
                        _cleanup_free_ char *next =
                                strdup(json_object_get_string(json_object_array_get_idx(h->wait_states, 0)));
                        json_object_array_del_idx(h->wait_states, 0, 1);
                        if (!next)
                                return -ENOMEM;
                        if (!streq_ptr(next, *state)) {
                                free(*state);
                                *state = TAKE_PTR(next);
                                return 0;
                        }
                }
                if (h->wait_after > 0) {
                        struct timespec ts = {.tv_nsec = (long) (WAIT_POLL_USEC * 1000)};
                        nanosleep(&ts, NULL);
                }
                r = http_poll_transitions(h, job_id, e);
                if (r < 0)
                        return r;
                if (h->wait_after == 0) {
                        /* No event at all (trimmed by retention?): fall back to the job itself,
                         * then look for events once more. Any that came in between tell the way
                         * to its state in order; taking the state and printing them after it
                         * would step back. Still none: every later event comes after the state. */
                        _cleanup_json_ json_object *job = NULL;
                        r = http_get_job(base, job_id, &job, e);
                        if (r < 0)
                                return r;
                        r = http_poll_transitions(h, job_id, e);
                        if (r < 0)
                                return r;
                        if (h->wait_after == 0) {
                                r = wait_state_push(h, strempty(json_str(job, "status")));
                                if (r < 0)
                                        return r;
                                h->wait_after = 1;
                        }
                }
        }
}

static void http_backend_free(Backend *base) {
        HttpBackend *h = (HttpBackend *) base;
        if (h->curl)
                curl_easy_cleanup(h->curl);
        free(h->url);
        free(h->admin_token);
        free(h->worker_token);
        json_object_put(h->wait_states);
        free(h);
        curl_global_cleanup();
}

static const BackendOps http_ops = {
        .name = "HTTP",
        .submit = http_submit,
        .list_jobs = http_list_jobs,
        .get_job = http_get_job,
        .abort_job = http_abort_job,
        .abort_worker = http_abort_worker,
        .list_workers = http_list_workers,
        .drain = http_drain,
        .remove_worker = http_remove_worker,
        .events = http_events,
        .reconcile = http_reconcile,
        .reload = http_reload,
        .replay = http_replay,
        .wait_state = http_wait_state,
        .free = http_backend_free,
};

int backend_http_new(const CtlSettings *s, Backend **ret, CtlError *e) {
        HttpBackend *h;
        size_t n;
        int r;

        if (isempty(s->tls_certificate) != isempty(s->tls_key))
                return ctl_error_set(e, -EINVAL, "--tls-certificate and --tls-key go together.");
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return ctl_error_set(e, -EIO, "Failed to initialize libcurl.");
        h = calloc(1, sizeof(HttpBackend));
        if (!h) {
                curl_global_cleanup();
                return -ENOMEM;
        }
        h->base.ops = &http_ops;
        h->base.settings = s;
        h->url = strdup(s->url);
        h->curl = curl_easy_init();
        h->wait_states = json_object_new_array();
        if (!h->url || !h->curl || !h->wait_states) {
                http_backend_free(&h->base);
                return -ENOMEM;
        }
        n = strlen(h->url);
        while (n > 0 && h->url[n - 1] == '/')
                h->url[--n] = 0;
        r = load_token(s->token_file, "ENTROPY_ADMIN_TOKEN", &h->admin_token, e);
        if (r >= 0)
                r = load_token(s->worker_token_file, "ENTROPY_WORKER_TOKEN", &h->worker_token, e);
        if (r < 0) {
                http_backend_free(&h->base);
                return r;
        }
        *ret = &h->base;
        return 0;
}
