/* signed-token.c: making and verifying short-lived HMAC-signed worker tokens. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "macro.h"
#include "protocol.h"
#include "signed-token.h"

bool signed_token_is_signed(const char *token) {
        return token && strncmp(token, SIGNED_TOKEN_PREFIX, strlen(SIGNED_TOKEN_PREFIX)) == 0;
}

static bool nonce_is_valid(const char *nonce) {
        size_t n = strlen(nonce);
        if (n < 8 || n > 64)
                return false;
        for (const char *p = nonce; *p; p++)
                if (!isxdigit((unsigned char) *p))
                        return false;
        return true;
}

int signed_token_make(const char *key, const char *worker_id, usec_t expires_at, const char *nonce, char **ret) {
        char random_nonce[RANDOM_ID_SIZE], mac[SHA256_HEX_SIZE];
        _cleanup_free_ char *payload = NULL;
        int r;

        if (isempty(key) || !worker_id_is_registrable(worker_id))
                return -EINVAL;
        if (!nonce) {
                r = random_id(random_nonce);
                if (r < 0)
                        return r;
                nonce = random_nonce;
        }
        if (!nonce_is_valid(nonce))
                return -EINVAL;
        if (asprintf(&payload, SIGNED_TOKEN_PREFIX "%s:%llu:%s", worker_id,
                     (unsigned long long) (expires_at / USEC_PER_MSEC), nonce) < 0)
                return -ENOMEM;
        r = hmac_sha256_hex(key, strlen(key), payload, strlen(payload), mac);
        if (r < 0)
                return r;
        if (asprintf(ret, "%s:%s", payload, mac) < 0)
                return -ENOMEM;
        return 0;
}

int signed_token_verify(const char *key, const char *token, usec_t now, usec_t skew, usec_t max_lifetime,
                        const char *expected_worker_id, char **ret_worker_id) {
        _cleanup_free_ char *copy = NULL;
        char *fields[4], *p, *end, mac[SHA256_HEX_SIZE];
        unsigned long long expires_ms;
        usec_t expires_at;
        size_t n = 0;
        int r;

        if (isempty(key) || !signed_token_is_signed(token) || strlen(token) > 512)
                return -EINVAL;
        copy = strdup(token + strlen(SIGNED_TOKEN_PREFIX));
        if (!copy)
                return -ENOMEM;
        /* From the right: the worker id, first, may hold colons itself (any id /register takes). */
        for (n = ELEMENTSOF(fields) - 1; n > 0; n--) {
                p = strrchr(copy, ':');
                if (!p)
                        return -EINVAL; /* fewer than four fields */
                *p = 0;
                fields[n] = p + 1;
        }
        fields[0] = copy;
        if (!worker_id_is_registrable(fields[0]) || !nonce_is_valid(fields[2]) || strlen(fields[3]) != 64)
                return -EINVAL;
        errno = 0;
        expires_ms = strtoull(fields[1], &end, 10);
        if (errno != 0 || end == fields[1] || *end || !isdigit((unsigned char) fields[1][0]) ||
            expires_ms > UINT64_MAX / USEC_PER_MSEC)
                return -EINVAL;

        /* Verify the signature over the exact bytes received before trusting any field. */
        size_t payload_len = strlen(token) - 65;
        r = hmac_sha256_hex(key, strlen(key), token, payload_len, mac);
        if (r < 0)
                return r;
        if (!memeq_consttime(mac, 64, fields[3], 64))
                return -EKEYREJECTED;

        expires_at = (usec_t) expires_ms * USEC_PER_MSEC;
        if (expires_at + skew < now)
                return -EKEYEXPIRED;
        if (expires_at > now + max_lifetime + skew)
                return -ERANGE;
        if (expected_worker_id && !streq(expected_worker_id, fields[0]))
                return -EPERM;
        if (ret_worker_id) {
                *ret_worker_id = strdup(fields[0]);
                if (!*ret_worker_id)
                        return -ENOMEM;
        }
        return 0;
}
