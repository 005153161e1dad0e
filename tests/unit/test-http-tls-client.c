/* test-http-tls-client.c: the worker's token values and the libcurl TLS settings helper. */
#include "http-tls-client.h"
#include "macro.h"
#include "signed-token.h"
#include "tap.h"

#define TOKEN "worker-token-0123456789abcdef"

static void test_plain_token_is_a_copy(void) {
        _cleanup_free_ char *t = NULL;
        is_int(http_client_worker_token(TOKEN, "w1", false, USEC_PER_MINUTE, &t), 0, "plain token made");
        is_str(t, TOKEN, "plain token is the token itself");
}

static void test_signed_token_verifies_for_its_worker(void) {
        _cleanup_free_ char *t = NULL, *u = NULL, *who = NULL;
        usec_t now = now_realtime_usec();

        is_int(http_client_worker_token(TOKEN, "gpu-1", true, USEC_PER_MINUTE, &t), 0, "signed token made");
        ok(signed_token_is_signed(t), "it is a signed token");
        is_int(signed_token_verify(TOKEN, t, now, 30 * USEC_PER_SEC, 5 * USEC_PER_MINUTE, "gpu-1", &who), 0,
               "the control plane's check accepts it");
        is_str(who, "gpu-1", "for its worker");
        is_int(signed_token_verify(TOKEN, t, now + 2 * USEC_PER_MINUTE, 30 * USEC_PER_SEC, 5 * USEC_PER_MINUTE, NULL,
                                   NULL),
               -EKEYEXPIRED, "and it expires after its lifetime (+ skew)");
        is_int(http_client_worker_token(TOKEN, "gpu-1", true, USEC_PER_MINUTE, &u), 0, "another one");
        ok(!streq(t, u), "each carries a fresh nonce");
        char *none = NULL;
        ok(http_client_worker_token(TOKEN, "bad id", true, USEC_PER_MINUTE, &none) < 0 && !none,
           "a worker id /register refuses fails");
        ok(http_client_worker_token("", "w", false, USEC_PER_MINUTE, &none) < 0 && !none, "an empty token fails");
}

static void test_tls_options(void) {
        CURL *e = curl_easy_init();

        if (!e)
                tap_bail("curl_easy_init failed");
        is_int(http_client_tls_apply(e, NULL, NULL, NULL), 0,
               "defaults: the system CAs, no client certificate (verification: test-tls-worker.py)");
        is_int(http_client_tls_apply(e, "/etc/entropy/ca.pem", "/c.pem", "/c.key"), 0, "CA and client certificate");
        is_int(http_client_tls_apply(e, NULL, "/c.pem", NULL), -EINVAL, "a certificate without its key is refused");
        is_int(http_client_tls_apply(NULL, NULL, NULL, NULL), -EINVAL, "no handle");
        curl_easy_cleanup(e);
}

int main(void) {
        test_plain_token_is_a_copy();
        test_signed_token_verifies_for_its_worker();
        test_tls_options();
        return tap_done();
}
