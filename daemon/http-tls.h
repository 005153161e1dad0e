/* http-tls.h: the control plane's TLS material for libmicrohttpd: the server certificate and key
 * (reloadable on SIGHUP), the priority string, the CA that client certificates must chain to, and
 * the verification of a connection's client certificate (libmicrohttpd only *requests* one). */
#pragma once

#include <stdbool.h>

#include "macro.h"

/* Modern default: TLS 1.3 and 1.2 only, AEAD ciphers only, forward-secret key exchange only. */
#define HTTP_TLS_DEFAULT_PRIORITIES                                                                        \
        "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-CIPHER-ALL:+AES-256-GCM:+AES-128-GCM:+CHACHA20-POLY1305:" \
        "-MAC-ALL:+AEAD:-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA"

/* PEM files are small; anything larger than this is not a certificate chain or a key. */
#define HTTP_TLS_FILE_MAX (1024 * 1024)

typedef struct HttpTls HttpTls;

typedef struct HttpTlsConfig {
        const char *certificate; /* PEM chain: the server's certificate first */
        const char *key;         /* PEM private key */
        const char *priorities;  /* GnuTLS priority string; NULL: HTTP_TLS_DEFAULT_PRIORITIES */
        const char *client_ca;   /* PEM CA(s) client certificates must chain to; NULL: no mTLS */
} HttpTlsConfig;

/* Loads and checks the certificate, key (they must belong together), priorities and client CA.
 * Errors are logged naming the file. Only one HttpTls serves at a time (see http-tls.c). */
int http_tls_new(const HttpTlsConfig *cfg, HttpTls **ret);
/* Reads the certificate and key again (all or nothing: on failure the current pair stays and the
 * error is logged). New handshakes use the new pair; established connections keep theirs. */
int http_tls_reload(HttpTls *t, const HttpTlsConfig *cfg);
HttpTls *http_tls_free(HttpTls *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(HttpTls *, http_tls_free);

const char *http_tls_priorities(const HttpTls *t);
/* The client CA as PEM text for MHD_OPTION_HTTPS_MEM_TRUST, or NULL when mTLS is off. */
const char *http_tls_client_ca_pem(const HttpTls *t);
bool http_tls_wants_client_certificate(const HttpTls *t);
/* The gnutls_certificate_retrieve_function3 for MHD_OPTION_HTTPS_CERT_CALLBACK2 (a void * here so
 * that this header does not need GnuTLS). */
void *http_tls_certificate_callback(void);

/* Verifies the client certificate of a TLS session (a gnutls_session_t) against the client CA:
 * present, chaining to the CA, within its validity period, fit for client authentication. On
 * success returns 0 and the names it proves (subject CN first, then DNS and URI SANs; a
 * NULL-terminated list the caller frees with strv_free). On refusal returns -EACCES with
 * *ret_reason a static description ("no client certificate", "untrusted client certificate",
 * "expired client certificate", ...). */
int http_tls_verify_peer(void *session, char ***ret_names, const char **ret_reason);
