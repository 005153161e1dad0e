/* api-util.c: helpers shared by api-admin.c and api-worker.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "api-util.h"

int api_parse_body(const HttpRequest *req, HttpResponse *resp, json_object **ret) {
        JsonError err = {};
        int r;

        if (!req->body || req->body_size == 0) {
                r = http_response_error(resp, 400, "malformed JSON: empty request body");
                return r < 0 ? r : 0;
        }
        r = json_parse_object(req->body, req->body_size, ret, &err);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                r = http_response_error(resp, 400, "%s", err.message);
                return r < 0 ? r : 0;
        }
        return 1;
}

int api_reply_error(HttpResponse *resp, int r, const OpError *err) {
        unsigned status = op_error_to_http_status(r);
        const char *msg = err && err->message[0] ? err->message : NULL;

        if (status == 500)
                return r;
        if (!msg)
                msg = status == 404 ? "not found" : status == 403 ? "worker not registered" : "conflict";
        return http_response_error(resp, status, "%s", msg);
}

int api_reply_json_error(HttpResponse *resp, const JsonError *err) {
        return http_response_error(resp, 400, "%s", err->message[0] ? err->message : "invalid request");
}

int api_reply(HttpResponse *resp, unsigned status, json_object *body) {
        int r;
        if (!body)
                return -ENOMEM;
        r = http_response_json(resp, status, body);
        json_object_put(body);
        return r;
}

Origin api_origin(const HttpRequest *req, const char *actor) {
        return (Origin){.actor = actor, .request_id = req->request_id};
}

Origin api_worker_origin(const HttpRequest *req, const char *worker_id, char *buf, size_t size) {
        snprintf(buf, size, "worker:%s", worker_id ? worker_id : "?");
        return (Origin){.actor = buf, .request_id = req->request_id};
}

int api_query_int64(const HttpRequest *req, const char *key, int64_t min, int64_t max, int64_t *ret) {
        const char *v = http_request_query(req, key);
        char *end = NULL;
        long long x;

        if (!v || !*v)
                return 0;
        errno = 0;
        x = strtoll(v, &end, 10);
        if (errno != 0 || !end || *end || x < min || x > max)
                return -EINVAL;
        *ret = x;
        return 1;
}

int api_query_bool(const HttpRequest *req, const char *key, bool *ret) {
        const char *v = http_request_query(req, key);

        if (!v && !http_request_has_query(req, key))
                return 0;
        if (!v || streq(v, "true") || streq(v, "1") || streq(v, "")) /* "?oldest_first" alone means yes */
                *ret = true;
        else if (streq(v, "false") || streq(v, "0"))
                *ret = false;
        else
                return -EINVAL;
        return 1;
}
