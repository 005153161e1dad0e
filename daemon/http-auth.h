/* http-auth.h: who may call an endpoint. The token (plain, or a signed worker token), the client
 * certificate when mTLS is on, and for worker endpoints the binding of the request's worker_id to
 * the identity the token or the certificate proves. The HTTP route layer (http-api.c) runs it
 * before any handler, so the handlers (api-*.c) stay free of transport concerns. */
#pragma once

#include "control.h"
#include "http-server.h"
#include "protocol.h"

typedef struct HttpAuthResult {
        unsigned status;    /* 0: allowed; else 400, 401 or 403 */
        const char *reason; /* why not, for the audit trail and the error body (static) */
        /* Who the request claims or proves to be, for the audit trail (never a secret). */
        char who[LIMIT_ID_LEN + 1];
} HttpAuthResult;

/* The roles of an endpoint no one needs anything for, not even (with mTLS) a client certificate:
 * /healthz alone, for probes. Roles 0 is an endpoint without a token that with mTLS still needs
 * the certificate, as every other endpoint does (the dashboard's files). */
#define AUTH_OPEN (1u << 31)

/* Checks req against roles (AuthRole bits, 0 or AUTH_OPEN: see above). worker_route: the endpoint acts
 * for the worker named in the request (query worker_id, body worker_id and completed_jobs[].worker_id),
 * which a signed token or (with --tls-bind-worker-id) the client certificate must name. Returns 0
 * with ret filled, negative only on allocation failure. */
int http_auth_check(Control *c, const HttpRequest *req, unsigned roles, bool worker_route, HttpAuthResult *ret);
/* The token alone (no certificate, no worker binding, nothing audited): whether the request may
 * bring a body at all. http_auth_check() still decides once the body is in. */
bool http_auth_token_admits(Control *c, const HttpRequest *req, unsigned roles);
