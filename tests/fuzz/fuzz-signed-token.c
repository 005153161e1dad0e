/* fuzz-signed-token.c: token verification on hostile input. The input is a presented token: it is
 * verified as a signed worker token (which must never crash, and never succeed unless it really
 * carries a valid HMAC), compared against a token set (constant-time compare), and, as a round
 * trip, a token made for an input-derived worker id must verify. */
#include <string.h>

#include "crypto.h"
#include "fuzz.h"
#include "macro.h"
#include "protocol.h"
#include "signed-token.h"

#define KEY "fuzz-worker-token-0123456789abcdef"
#define NOW ((usec_t) 1800000000 * USEC_PER_SEC)

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        return 0;
}

static void check_round_trip(const char *s) {
        _cleanup_free_ char *t = NULL, *who = NULL;

        if (!worker_id_is_registrable(s))
                return;
        if (signed_token_make(KEY, s, NOW + USEC_PER_MINUTE, "0011223344556677", &t) < 0)
                __builtin_trap();
        if (signed_token_verify(KEY, t, NOW, USEC_PER_SEC, 5 * USEC_PER_MINUTE, s, &who) != 0 || !streq(who, s))
                __builtin_trap();
}

/* An independent oracle for an accepted token: its last field is the HMAC-SHA256, keyed with KEY,
 * of everything before the last colon, in lowercase hex. */
static bool carries_valid_hmac(const char *token) {
        const char *colon = strrchr(token, ':');
        char want[SHA256_HEX_SIZE];

        if (!colon || hmac_sha256_hex(KEY, strlen(KEY), token, (size_t) (colon - token), want) < 0)
                return false;
        return streq(colon + 1, want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *s = fuzz_strndup(data, size), *who = NULL;
        int r;

        if (!s)
                return 0;
        r = signed_token_verify(KEY, s, NOW, 30 * USEC_PER_SEC, 5 * USEC_PER_MINUTE, NULL, &who);
        /* Accepted only with the right prefix, a worker id that is valid and the right HMAC. */
        if (r == 0 && (!signed_token_is_signed(s) || !worker_id_is_registrable(who) || !carries_valid_hmac(s)))
                __builtin_trap();
        (void) signed_token_verify(KEY, s, NOW, 30 * USEC_PER_SEC, 5 * USEC_PER_MINUTE, "w1", NULL);
        (void) streq_consttime(s, KEY);
        (void) memeq_consttime(data, size, KEY, strlen(KEY));
        check_round_trip(s);
        return 0;
}
