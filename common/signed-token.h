/* signed-token.h: short-lived signed worker tokens.
 *
 *   esig1:<worker_id>:<expires_at_unix_ms>:<nonce>:<hmac>
 *
 * The worker id is any that POST /register takes (worker_id_is_registrable(): UTF-8 and colons
 * too), read from the right; it travels as it is, in the X-API-Token header.
 * hmac is HMAC-SHA256, keyed with the shared worker token, over everything before the last colon,
 * in lower-case hex. The worker makes one per request window and sends it as X-API-Token; the
 * control plane verifies it with the same function, so both sides agree by construction. A stolen
 * signed token is useful only until it expires and only for the worker id it names. */
#pragma once

#include <stdbool.h>

#include "time-util.h"

#define SIGNED_TOKEN_PREFIX "esig1:"

bool signed_token_is_signed(const char *token);

/* nonce may be NULL (a random one is made). */
int signed_token_make(const char *key, const char *worker_id, usec_t expires_at, const char *nonce, char **ret);

/* 0 when valid at `now` within `skew` either way and no longer-lived than max_lifetime (+ skew);
 * -EINVAL malformed, -EKEYREJECTED bad signature, -EKEYEXPIRED expired, -ERANGE expiry too far in
 * the future, -EPERM signed for a worker other than expected_worker_id (when given). On success
 * *ret_worker_id (if given) receives the worker id it was made for. */
int signed_token_verify(const char *key, const char *token, usec_t now, usec_t skew, usec_t max_lifetime,
                        const char *expected_worker_id, char **ret_worker_id);
