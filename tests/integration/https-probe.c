/* https-probe.c: one request to the control plane through the client helpers the worker and
 * entropyctl use (common/http-tls-client.h) over libcurl with GnuTLS, so that the integration tests
 * prove that client side against the real daemon:
 *
 *   https-probe URL CA [CERT KEY] [--token T] [--worker-id ID --signed] [--post JSON]
 *
 * Prints "<status> <body>" and exits 0 when an HTTP answer came, 2 when the transfer failed
 * (printing curl's error). */
#include <stdio.h>
#include <string.h>

#include "http-tls-client.h"
#include "macro.h"

static size_t on_data(char *p, size_t size, size_t n, void *userdata) {
        fwrite(p, size, n, stdout);
        return size * n;
}

typedef struct Args {
        const char *url, *ca, *cert, *key, *token, *worker_id, *post;
        bool signed_tokens;
} Args;

static int parse(int argc, char **argv, Args *a) {
        int pos = 0;
        for (int i = 1; i < argc; i++) {
                if (streq(argv[i], "--token") && i + 1 < argc)
                        a->token = argv[++i];
                else if (streq(argv[i], "--worker-id") && i + 1 < argc)
                        a->worker_id = argv[++i];
                else if (streq(argv[i], "--post") && i + 1 < argc)
                        a->post = argv[++i];
                else if (streq(argv[i], "--signed"))
                        a->signed_tokens = true;
                else if (pos < 4) {
                        const char **slots[] = {&a->url, &a->ca, &a->cert, &a->key};
                        *slots[pos++] = argv[i];
                } else
                        return -EINVAL;
        }
        return a->url && a->ca ? 0 : -EINVAL;
}

int main(int argc, char **argv) {
        char err[CURL_ERROR_SIZE] = "", header[8192];
        _cleanup_free_ char *token = NULL;
        struct curl_slist *headers = NULL;
        Args a = {};
        long status = 0;
        CURL *e;
        int r;

        if (parse(argc, argv, &a) < 0) {
                fprintf(stderr, "usage: https-probe URL CA [CERT KEY] [--token T] [--worker-id ID --signed] [--post JSON]\n");
                return 64;
        }
        e = curl_easy_init();
        if (!e || http_client_tls_apply(e, a.ca, a.cert, a.key) < 0)
                return 3;
        if (a.token) {
                r = http_client_worker_token(a.token, a.worker_id, a.signed_tokens,
                                             HTTP_CLIENT_SIGNED_TOKEN_LIFETIME_DEFAULT, &token);
                if (r < 0)
                        return 3;
                snprintf(header, sizeof(header), "X-API-Token: %s", token);
                headers = curl_slist_append(headers, header);
        }
        if (a.post) {
                headers = curl_slist_append(headers, "Content-Type: application/json");
                curl_easy_setopt(e, CURLOPT_POSTFIELDS, a.post);
        }
        curl_easy_setopt(e, CURLOPT_URL, a.url);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, err);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(e, CURLOPT_TIMEOUT, 20L);
        if (curl_easy_perform(e) != CURLE_OK) {
                printf("error %s\n", err);
                r = 2;
        } else {
                curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
                printf("\n%ld\n", status);
                r = 0;
        }
        curl_slist_free_all(headers);
        curl_easy_cleanup(e);
        return r;
}
