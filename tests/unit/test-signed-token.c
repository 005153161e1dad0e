/* test-signed-token.c: signed worker tokens are accepted only when intact, fresh and for the right worker. */
#include "macro.h"
#include "signed-token.h"
#include "tap.h"

#define KEY "worker-secret"
#define NOW ((usec_t) 1800000000 * USEC_PER_SEC)
#define SKEW (30 * USEC_PER_SEC)
#define LIFE (5 * USEC_PER_MINUTE)

static void test_valid_token_verifies_and_names_worker(void) {
        _cleanup_free_ char *t = NULL, *who = NULL;
        ok(signed_token_make(KEY, "gpu-box.1", NOW + USEC_PER_MINUTE, NULL, &t) == 0, "token made");
        ok(signed_token_is_signed(t), "recognised as signed");
        is_int(signed_token_verify(KEY, t, NOW, SKEW, LIFE, "gpu-box.1", &who), 0, "verifies");
        is_str(who, "gpu-box.1", "names its worker");
}

static void test_tampered_token_is_rejected(void) {
        _cleanup_free_ char *t = NULL;
        signed_token_make(KEY, "w1", NOW + USEC_PER_MINUTE, "00112233aabbccdd", &t);
        char *c = strstr(t, ":w1:");
        c[2] = '2'; /* claim to be w2 */
        is_int(signed_token_verify(KEY, t, NOW, SKEW, LIFE, NULL, NULL), -EKEYREJECTED, "changed worker id rejected");
        is_int(signed_token_verify("other-key", "esig1:w1:1:00112233aabbccdd:"
                                   "0000000000000000000000000000000000000000000000000000000000000000",
                                   NOW, SKEW, LIFE, NULL, NULL), -EKEYREJECTED, "forged mac rejected");
}

static void test_expiry_and_skew(void) {
        _cleanup_free_ char *old = NULL, *skewed = NULL, *far = NULL;
        signed_token_make(KEY, "w1", NOW - 2 * SKEW, NULL, &old);
        is_int(signed_token_verify(KEY, old, NOW, SKEW, LIFE, NULL, NULL), -EKEYEXPIRED, "expired rejected");
        signed_token_make(KEY, "w1", NOW - SKEW / 2, NULL, &skewed);
        is_int(signed_token_verify(KEY, skewed, NOW, SKEW, LIFE, NULL, NULL), 0, "within skew accepted");
        signed_token_make(KEY, "w1", NOW + 10 * LIFE, NULL, &far);
        is_int(signed_token_verify(KEY, far, NOW, SKEW, LIFE, NULL, NULL), -ERANGE, "too long-lived rejected");
}

static void test_wrong_worker_and_malformed(void) {
        _cleanup_free_ char *t = NULL;
        signed_token_make(KEY, "w1", NOW + USEC_PER_MINUTE, NULL, &t);
        is_int(signed_token_verify(KEY, t, NOW, SKEW, LIFE, "w2", NULL), -EPERM, "other worker's token refused");
        is_int(signed_token_verify(KEY, "esig1:w1:123", NOW, SKEW, LIFE, NULL, NULL), -EINVAL, "too few fields");
        is_int(signed_token_verify(KEY, "esig1:w1:x:00112233aabbccdd:00", NOW, SKEW, LIFE, NULL, NULL), -EINVAL,
               "bad expiry");
        is_int(signed_token_verify(KEY, "plain-token", NOW, SKEW, LIFE, NULL, NULL), -EINVAL, "unsigned");
        ok(signed_token_make(KEY, "a b", NOW, NULL, &t) == -EINVAL, "worker id with a space refused");
        ok(signed_token_make(KEY, "", NOW, NULL, &t) == -EINVAL, "empty worker id refused");
        ok(signed_token_make(KEY, "tab\tid", NOW, NULL, &t) == -EINVAL, "worker id with a control character refused");
}

/* Any id /register takes: UTF-8, colons (the fields are read from the right). */
static void test_every_registrable_id_round_trips(void) {
        static const char *const ids[] = {"host-1.gpu_0@lab", "gr\xc3\xbcn-\xe2\x9a\xa1", "rack:3:slot:1", ":",
                                          "a:1:b"};

        for (size_t i = 0; i < ELEMENTSOF(ids); i++) {
                _cleanup_free_ char *t = NULL, *who = NULL;
                is_int(signed_token_make(KEY, ids[i], NOW + USEC_PER_MINUTE, NULL, &t), 0, "token made for '%s'",
                       ids[i]);
                is_int(signed_token_verify(KEY, t, NOW, SKEW, LIFE, ids[i], &who), 0, "and verified");
                is_str(who, ids[i], "naming its worker");
        }
        _cleanup_free_ char *t = NULL;
        signed_token_make(KEY, "rack:3", NOW + USEC_PER_MINUTE, NULL, &t);
        is_int(signed_token_verify(KEY, t, NOW, SKEW, LIFE, "rack", NULL), -EPERM, "'rack:3' is not 'rack'");
}

int main(void) {
        test_valid_token_verifies_and_names_worker();
        test_tampered_token_is_rejected();
        test_expiry_and_skew();
        test_wrong_worker_and_malformed();
        test_every_registrable_id_round_trips();
        return tap_done();
}
