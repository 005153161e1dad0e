/* http-auth.c: authentication and worker-identity binding in front of the HTTP API's handlers.
 *
 * Signed worker tokens (common/signed-token.h) are always accepted on worker endpoints: whoever can
 * make one holds the worker token, which opens those endpoints anyway, so accepting them widens
 * nothing, and lets workers move to them one by one. --require-signed-worker-tokens then refuses
 * the plain worker token, so that a token seen on the wire is worth minutes and one worker id. A
 * signed token verifies against the current worker token, or the previous one during rotation. */
#include <errno.h>
#include <string.h>

#include "auth.h"
#include "http-api.h"
#include "http-auth.h"
#include "json-util.h"
#include "log.h"
#include "macro.h"
#include "signed-token.h"
#include "strv.h"

/* Most worker ids one request may speak for (its own plus those of replayed records). */
#define CLAIMED_IDS_MAX (LIMIT_RECONNECT_ENTRIES + 1)

static int refuse(HttpAuthResult *ret, unsigned status, const char *reason) {
        ret->status = status;
        ret->reason = reason;
        return 0;
}

static void set_who(HttpAuthResult *ret, const char *who) {
        if (worker_id_is_registrable(who))
                snprintf(ret->who, sizeof(ret->who), "%s", who);
}

static const char *signed_token_reason(int r) {
        switch (r) {
        case -EKEYEXPIRED:
                return "expired signed token";
        case -ERANGE:
                return "signed token valid for longer than --signed-token-max-lifetime";
        case -EKEYREJECTED:
                return "signed token with a bad signature";
        default:
                return "malformed signed token";
        }
}

/* 0 and the worker id it was made for, or a negative signed_token_verify() code. */
static int verify_signed(Control *c, const char *token, char **ret_worker_id) {
        const char *keys[] = {c->worker_token, c->worker_token_previous};
        int r = -EKEYREJECTED;

        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                if (isempty(keys[i]))
                        continue;
                r = signed_token_verify(keys[i], token, control_now(c), c->settings.token_clock_skew,
                                        c->settings.signed_token_max_lifetime, NULL, ret_worker_id);
                /* Only a bad signature may be the other key's; any other verdict is final. */
                if (r != -EKEYREJECTED)
                        return r;
        }
        return r;
}

static void claimed_add(char ***ids, json_object *o, int *r) {
        json_object *v = NULL;

        if (*r < 0 || !json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, "worker_id", &v) ||
            !json_object_is_type(v, json_type_string))
                return; /* absent or not a string: the handler refuses it (400) */
        if (strv_length(*ids) >= CLAIMED_IDS_MAX)
                *r = -E2BIG;
        else if (!strv_contains(*ids, json_object_get_string(v)))
                *r = strv_extend(ids, json_object_get_string(v));
}

/* Every worker id the request speaks for. -EINVAL for a body that is not a JSON object: with a
 * binding to enforce, such a request is refused here rather than left to a second parser. */
static int claimed_worker_ids(const HttpRequest *req, char ***ret) {
        _cleanup_(strv_freep) char **ids = NULL;
        _cleanup_json_ json_object *o = NULL;
        json_object *a = NULL;
        JsonError jerr = {};
        const char *q;
        int r = 0;

        if (streq(req->method, "GET")) {
                q = http_request_query(req, "worker_id");
                r = q ? strv_extend(&ids, q) : 0;
                *ret = TAKE_PTR(ids);
                return r;
        }
        if (json_parse_object(req->body, req->body_size, &o, &jerr) < 0)
                return -EINVAL;
        claimed_add(&ids, o, &r);
        if (json_object_object_get_ex(o, "completed_jobs", &a) && json_object_is_type(a, json_type_array))
                for (size_t i = 0; i < json_object_array_length(a); i++)
                        claimed_add(&ids, json_object_array_get_idx(a, i), &r);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(ids);
        return 0;
}

/* A worker call must act only for the worker its signed token or certificate names. */
static int check_binding(Control *c, const HttpRequest *req, const char *signed_id, HttpAuthResult *ret) {
        _cleanup_(strv_freep) char **ids = NULL;
        /* Fails closed: with binding on, a request without a verified certificate names nobody. */
        bool bind_cert = c->settings.tls_bind_worker_id;
        int r;

        if (!signed_id && !bind_cert)
                return 0;
        r = claimed_worker_ids(req, &ids);
        if (r == -ENOMEM)
                return r;
        if (r == -EINVAL)
                return refuse(ret, 400, "malformed JSON body");
        if (r < 0)
                return refuse(ret, 400, "too many worker ids in one request");
        STRV_FOREACH(id, ids) {
                if (signed_id && !streq(*id, signed_id)) {
                        set_who(ret, signed_id);
                        return refuse(ret, 403, "worker_id does not match the worker the signed token was made for");
                }
                if (bind_cert && !strv_contains(req->peer_names, *id)) {
                        set_who(ret, req->peer_identity);
                        return refuse(ret, 403, "worker_id is not named by the client certificate");
                }
        }
        return 0;
}

static int check_token(Control *c, const char *token, unsigned roles, char **ret_signed_id, HttpAuthResult *ret) {
        unsigned granted;
        int r;

        if (isempty(token))
                return refuse(ret, 401, "missing token");
        if (strlen(token) > HTTP_API_TOKEN_MAX)
                return refuse(ret, 401, "invalid token");
        if (signed_token_is_signed(token)) {
                if (!(roles & AUTH_ROLE_WORKER))
                        return refuse(ret, 401, "signed worker token on an endpoint of another role");
                r = verify_signed(c, token, ret_signed_id);
                if (r == -ENOMEM)
                        return r;
                return r < 0 ? refuse(ret, 401, signed_token_reason(r)) : 0;
        }
        granted = auth_token_roles(c, token);
        if (!(granted & roles))
                return refuse(ret, 401, granted ? "token of another role" : "invalid token");
        if ((granted & roles) == AUTH_ROLE_WORKER && c->settings.require_signed_worker_tokens)
                return refuse(ret, 401, "plain worker token (signed tokens are required)");
        return 0;
}

bool http_auth_token_admits(Control *c, const HttpRequest *req, unsigned roles) {
        _cleanup_free_ char *signed_id = NULL;
        HttpAuthResult result = {};

        if (roles == 0 || roles == AUTH_OPEN)
                return true;
        return check_token(c, http_request_header(req, "X-API-Token"), roles, &signed_id, &result) >= 0 &&
               result.status == 0;
}

int http_auth_check(Control *c, const HttpRequest *req, unsigned roles, bool worker_route, HttpAuthResult *ret) {
        _cleanup_free_ char *signed_id = NULL;
        int r;

        *ret = (HttpAuthResult){};
        if (roles == AUTH_OPEN)
                return 0;
        /* mTLS: no valid client certificate, no API (whatever the token). */
        if (req->peer_error)
                return refuse(ret, 401, req->peer_error);
        set_who(ret, req->peer_identity);
        if (roles == 0)
                return 0;

        r = check_token(c, http_request_header(req, "X-API-Token"), roles, &signed_id, ret);
        if (r < 0 || ret->status)
                return r;
        set_who(ret, signed_id);
        if (!worker_route)
                return 0;
        return check_binding(c, req, signed_id, ret);
}
