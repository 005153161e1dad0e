/* http-tls-client.c: libcurl TLS settings and worker token values for the control plane's clients. */
#include <errno.h>
#include <string.h>

#include "http-tls-client.h"
#include "macro.h"
#include "signed-token.h"

int http_client_tls_apply(CURL *easy, const char *ca_file, const char *cert_file, const char *key_file) {
        CURLcode c = CURLE_OK;

        if (!easy || isempty(cert_file) != isempty(key_file))
                return -EINVAL;
        /* Never turned off: a client that skips verification hands its token to whoever answers. */
        c = curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
        if (c == CURLE_OK)
                c = curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
        if (c == CURLE_OK)
                c = curl_easy_setopt(easy, CURLOPT_SSLVERSION, (long) CURL_SSLVERSION_TLSv1_2);
        if (c == CURLE_OK && !isempty(ca_file))
                c = curl_easy_setopt(easy, CURLOPT_CAINFO, ca_file);
        if (c == CURLE_OK && !isempty(ca_file))
                /* Only the given CA: the control plane's certificate is not the public web's. */
                c = curl_easy_setopt(easy, CURLOPT_CAPATH, NULL);
        if (c == CURLE_OK && !isempty(cert_file))
                c = curl_easy_setopt(easy, CURLOPT_SSLCERT, cert_file);
        if (c == CURLE_OK && !isempty(cert_file))
                c = curl_easy_setopt(easy, CURLOPT_SSLCERTTYPE, "PEM");
        if (c == CURLE_OK && !isempty(key_file))
                c = curl_easy_setopt(easy, CURLOPT_SSLKEY, key_file);
        if (c == CURLE_OK && !isempty(key_file))
                c = curl_easy_setopt(easy, CURLOPT_SSLKEYTYPE, "PEM");
        return c == CURLE_OK ? 0 : -EIO;
}

int http_client_worker_token(const char *token, const char *worker_id, bool signed_tokens, usec_t lifetime,
                             char **ret) {
        char *t;

        if (isempty(token))
                return -EINVAL;
        if (signed_tokens)
                return signed_token_make(token, worker_id, now_realtime_usec() + lifetime, NULL, ret);
        t = strdup(token);
        if (!t)
                return -ENOMEM;
        *ret = t;
        return 0;
}
