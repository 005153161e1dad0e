/* ops.h: what every domain operation of the control plane shares, whatever the transport (HTTP,
 * D-Bus, the reconciler): who acts (Origin), why a request was refused (OpError), and the return
 * codes callers map to their own status codes.
 *
 * Return codes of jobs_*() and worker_*():
 *   >= 0        success; OP_NOOP (1) where a function documents a no-op outcome (a repeat of
 *               what was already applied, a terminal job, an ignored heartbeat seq)
 *   -EINVAL     invalid input (HTTP 400); nothing changed
 *   -EPERM      the worker is not registered (HTTP 403)
 *   -ENOENT     unknown job or worker, or nothing to act on (HTTP 404)
 *   -ESTALE     fencing: wrong worker or superseded/unknown assignment_id (HTTP 409); audited
 *   -EBUSY      state conflict: the job is in a state where this is not allowed (HTTP 409);
 *               audited when it was a refused transition
 *   -EEXIST     worker nonce mismatch (HTTP 409); audited
 *   other       store failure (HTTP 500)
 */
#pragma once

#include <errno.h>

#define OP_NOOP 1

typedef struct Origin {
        const char *actor;      /* "admin", "worker:<id>", "dbus:<uid>", "reconciler"; NULL = "control" */
        const char *request_id; /* X-Request-ID or similar correlation id; may be NULL */
} Origin;

/* A refusal's reason for humans, e.g. "field 'command' is required". */
typedef struct OpError {
        char message[256];
} OpError;

int op_error_set(OpError *e, int r, const char *format, ...) __attribute__((format(printf, 3, 4)));

static inline const char *origin_actor(const Origin *o) {
        return o && o->actor ? o->actor : "control";
}
static inline const char *origin_request_id(const Origin *o) {
        return o ? o->request_id : NULL;
}

/* A refusal the operation audited (or a validation failure before any change): the transaction
 * that recorded it is committed, and the caller gets the code. */
static inline int op_is_refusal(int r) {
        return r == -EINVAL || r == -EPERM || r == -ENOENT || r == -ESTALE || r == -EBUSY || r == -EEXIST;
}

/* HTTP status for a negative return code of a domain operation (500 for store failures). */
unsigned op_error_to_http_status(int r);
