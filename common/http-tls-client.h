/* http-tls-client.h: the client side of the control plane's TLS and tokens, for entropy-worker
 * and entropyctl --url (libcurl, GnuTLS flavour): server verification against a CA, a client
 * certificate for mTLS, and the X-API-Token value a worker sends (its plain token, or a short-lived
 * signed token made from it, common/signed-token.h). */
#pragma once

#include <curl/curl.h>
#include <stdbool.h>

#include "time-util.h"

/* Signed tokens a worker makes live this long by default; the control plane refuses those living
 * longer than its --signed-token-max-lifetime (default 5min). */
#define HTTP_CLIENT_SIGNED_TOKEN_LIFETIME_DEFAULT (2 * USEC_PER_MINUTE)

/* Sets the TLS options of an easy handle: peer and host verification always on; ca_file (PEM)
 * as the only trust anchor when given (else the system's); cert_file and key_file (PEM) as the
 * client certificate when given (both or neither). TLS 1.2 at least. Returns 0, -EINVAL for a
 * certificate without its key, -EIO when libcurl refuses an option. */
int http_client_tls_apply(CURL *easy, const char *ca_file, const char *cert_file, const char *key_file);

/* The X-API-Token value for a worker request: a copy of token, or with signed on a token signed
 * with it for worker_id, valid for lifetime from now (a fresh nonce each time). Callers may
 * keep one for a while and make a new one when less than half its lifetime is left. */
int http_client_worker_token(const char *token, const char *worker_id, bool signed_tokens, usec_t lifetime,
                             char **ret);
