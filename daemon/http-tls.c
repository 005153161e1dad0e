/* http-tls.c: server certificate, key, priorities and client-certificate checks for the HTTP API.
 *
 * Reload on SIGHUP: libmicrohttpd cannot swap the certificate of a running daemon. Of the two ways
 * around it (restart the MHD daemon on the same listening fd, or serve the credentials from a
 * callback) this takes the callback, MHD_OPTION_HTTPS_CERT_CALLBACK2, a GnuTLS
 * gnutls_certificate_retrieve_function3 run at each handshake: a restart would have to drain or
 * cut every keep-alive connection and re-arm the event sources, while the callback changes
 * nothing but the credentials new handshakes see. The callback hands GnuTLS a fresh copy of the
 * chain and key for each handshake with GNUTLS_CERT_RETR_DEINIT_ALL, so GnuTLS frees them with the
 * session and a reload can free the old PEM at once: no handshake ever points at freed memory.
 * (The callback has no user pointer, hence the one static `serving` below: one server a process.)
 *
 * Client certificates: MHD_OPTION_HTTPS_MEM_TRUST makes libmicrohttpd *request* one, not require
 * or check it. http_tls_verify_peer() does the check each request relies on. The client CA is
 * read at start only: it is also what the CertificateRequest names, which MHD fixes at start. */
#include <assert.h>
#include <errno.h>
#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdlib.h>
#include <string.h>

#include "fs-util.h"
#include "http-tls.h"
#include "log.h"
#include "macro.h"
#include "strv.h"

/* A server chain longer than this is a configuration mistake. */
#define CHAIN_MAX 16
/* Names taken from a client certificate (CN + SANs). */
#define PEER_NAMES_MAX 16
#define PEER_NAME_MAX 256

struct HttpTls {
        char *certificate_pem;
        char *key_pem;
        size_t certificate_size, key_size;
        char *priorities;
        char *client_ca_pem;
};

static HttpTls *serving;

static void secret_free(char *s, size_t n) {
        if (!s)
                return;
        explicit_bzero(s, n);
        free(s);
}

static gnutls_datum_t datum(const char *s, size_t n) {
        return (gnutls_datum_t){.data = (unsigned char *) s, .size = (unsigned) n};
}

/* A fresh chain and key from the PEM held, as GnuTLS wants them for DEINIT_ALL. */
static int credentials_make(const HttpTls *t, gnutls_pcert_st **ret_chain, unsigned *ret_n, gnutls_privkey_t *ret_key) {
        gnutls_datum_t cert = datum(t->certificate_pem, t->certificate_size);
        gnutls_datum_t key = datum(t->key_pem, t->key_size);
        gnutls_pcert_st *chain;
        gnutls_privkey_t pk = NULL;
        unsigned n = CHAIN_MAX;
        int r;

        chain = gnutls_calloc(CHAIN_MAX, sizeof(*chain));
        if (!chain)
                return GNUTLS_E_MEMORY_ERROR;
        r = gnutls_pcert_list_import_x509_raw(chain, &n, &cert, GNUTLS_X509_FMT_PEM, 0);
        if (r < 0) {
                gnutls_free(chain);
                return r;
        }
        r = gnutls_privkey_init(&pk);
        if (r >= 0)
                r = gnutls_privkey_import_x509_raw(pk, &key, GNUTLS_X509_FMT_PEM, NULL, 0);
        if (r < 0) {
                for (unsigned i = 0; i < n; i++)
                        gnutls_pcert_deinit(&chain[i]);
                gnutls_free(chain);
                gnutls_privkey_deinit(pk);
                return r;
        }
        *ret_chain = chain;
        *ret_n = n;
        *ret_key = pk;
        return 0;
}

static void credentials_free(gnutls_pcert_st *chain, unsigned n, gnutls_privkey_t key) {
        for (unsigned i = 0; i < n; i++)
                gnutls_pcert_deinit(&chain[i]);
        gnutls_free(chain);
        gnutls_privkey_deinit(key);
}

static int on_certificate_retrieve(gnutls_session_t session, const struct gnutls_cert_retr_st *info,
                                   gnutls_pcert_st **certs, unsigned *certs_length, gnutls_ocsp_data_st **ocsp,
                                   unsigned *ocsp_length, gnutls_privkey_t *privkey, unsigned *flags) {
        int r;

        if (!serving)
                return -1;
        r = credentials_make(serving, certs, certs_length, privkey);
        if (r < 0) {
                log_error("Failed to prepare the TLS certificate for a handshake: %s", gnutls_strerror(r));
                return -1;
        }
        *ocsp = NULL;
        *ocsp_length = 0;
        *flags = GNUTLS_CERT_RETR_DEINIT_ALL;
        return 0;
}

void *http_tls_certificate_callback(void) {
        gnutls_certificate_retrieve_function3 *fn = on_certificate_retrieve;
        return (void *) fn;
}

/* The key must be the certificate's: a mismatch would only show as failed handshakes. */
static int check_pair(const HttpTls *t, const char *cert_path, const char *key_path) {
        gnutls_pcert_st *chain = NULL;
        gnutls_privkey_t key = NULL;
        gnutls_pubkey_t pub = NULL;
        unsigned char id_cert[64], id_key[64];
        size_t n_cert = sizeof(id_cert), n_key = sizeof(id_key);
        unsigned n = 0;
        int r;

        r = credentials_make(t, &chain, &n, &key);
        if (r < 0)
                return log_error_errno(-EINVAL, "Failed to load the TLS certificate %s and key %s: %s", cert_path,
                                       key_path, gnutls_strerror(r));
        if (n == 0)
                r = GNUTLS_E_NO_CERTIFICATE_FOUND;
        if (r >= 0)
                r = gnutls_pubkey_init(&pub);
        if (r >= 0)
                r = gnutls_pubkey_import_privkey(pub, key, 0, 0);
        if (r >= 0)
                r = gnutls_pubkey_get_key_id(pub, GNUTLS_KEYID_USE_SHA256, id_key, &n_key);
        if (r >= 0)
                r = gnutls_pubkey_get_key_id(chain[0].pubkey, GNUTLS_KEYID_USE_SHA256, id_cert, &n_cert);
        gnutls_pubkey_deinit(pub);
        credentials_free(chain, n, key);
        if (r < 0)
                return log_error_errno(-EINVAL, "Failed to check the TLS certificate %s against key %s: %s", cert_path,
                                       key_path, gnutls_strerror(r));
        if (n_cert != n_key || memcmp(id_cert, id_key, n_cert) != 0)
                return log_error_errno(-EINVAL, "The TLS key %s does not belong to the certificate %s.", key_path,
                                       cert_path);
        return 0;
}

static int read_pem(const char *path, const char *option, char **ret, size_t *ret_size) {
        int r;

        if (isempty(path))
                return log_error_errno(-EINVAL, "--%s is empty.", option);
        r = read_full_file(path, HTTP_TLS_FILE_MAX, ret, ret_size);
        if (r < 0)
                return log_error_errno(r, "Failed to read %s (--%s): %m", path, option);
        return 0;
}

/* Reads certificate and key into t (replacing what it held) once they load and match. */
static int load_pair(HttpTls *t, const HttpTlsConfig *cfg) {
        HttpTls fresh = {};
        int r;

        r = read_pem(cfg->certificate, "tls-certificate", &fresh.certificate_pem, &fresh.certificate_size);
        if (r >= 0)
                r = read_pem(cfg->key, "tls-key", &fresh.key_pem, &fresh.key_size);
        if (r >= 0)
                r = check_pair(&fresh, cfg->certificate, cfg->key);
        if (r < 0) {
                free(fresh.certificate_pem);
                secret_free(fresh.key_pem, fresh.key_size);
                return r;
        }
        free(t->certificate_pem);
        secret_free(t->key_pem, t->key_size);
        t->certificate_pem = fresh.certificate_pem;
        t->certificate_size = fresh.certificate_size;
        t->key_pem = fresh.key_pem;
        t->key_size = fresh.key_size;
        return 0;
}

/* A typo in the priority string would otherwise only show as MHD refusing to start. */
static int check_priorities(const char *priorities) {
        gnutls_priority_t p = NULL;
        const char *where = NULL;
        int r;

        r = gnutls_priority_init2(&p, priorities, &where, 0);
        if (r < 0)
                return log_error_errno(-EINVAL, "Invalid --tls-priorities '%s' near '%s': %s", priorities,
                                       strempty(where), gnutls_strerror(r));
        gnutls_priority_deinit(p);
        return 0;
}

static int load_client_ca(HttpTls *t, const char *path) {
        gnutls_x509_crt_t *cas = NULL;
        unsigned n = 0;
        size_t size;
        int r;

        r = read_pem(path, "tls-client-ca", &t->client_ca_pem, &size);
        if (r < 0)
                return r;
        gnutls_datum_t d = datum(t->client_ca_pem, size);
        r = gnutls_x509_crt_list_import2(&cas, &n, &d, GNUTLS_X509_FMT_PEM, 0);
        if (r < 0)
                return log_error_errno(-EINVAL, "No usable CA certificate in %s (--tls-client-ca): %s", path,
                                       gnutls_strerror(r));
        for (unsigned i = 0; i < n; i++)
                gnutls_x509_crt_deinit(cas[i]);
        gnutls_free(cas);
        if (n == 0)
                return log_error_errno(-EINVAL, "No CA certificate in %s (--tls-client-ca).", path);
        return 0;
}

int http_tls_new(const HttpTlsConfig *cfg, HttpTls **ret) {
        _cleanup_(http_tls_freep) HttpTls *t = NULL;
        int r;

        assert(cfg && ret);
        if (serving)
                return -EBUSY;
        t = calloc(1, sizeof(*t));
        if (!t)
                return log_oom();
        t->priorities = strdup(isempty(cfg->priorities) ? HTTP_TLS_DEFAULT_PRIORITIES : cfg->priorities);
        if (!t->priorities)
                return log_oom();
        r = check_priorities(t->priorities);
        if (r < 0)
                return r;
        r = load_pair(t, cfg);
        if (r < 0)
                return r;
        if (!isempty(cfg->client_ca)) {
                r = load_client_ca(t, cfg->client_ca);
                if (r < 0)
                        return r;
        }
        serving = t;
        *ret = TAKE_PTR(t);
        return 0;
}

int http_tls_reload(HttpTls *t, const HttpTlsConfig *cfg) {
        int r;

        r = load_pair(t, cfg);
        if (r < 0)
                return r;
        log_info("TLS certificate %s and key %s loaded.", cfg->certificate, cfg->key);
        return 0;
}

HttpTls *http_tls_free(HttpTls *t) {
        if (!t)
                return NULL;
        if (serving == t)
                serving = NULL;
        free(t->certificate_pem);
        secret_free(t->key_pem, t->key_size);
        free(t->priorities);
        free(t->client_ca_pem);
        free(t);
        return NULL;
}

const char *http_tls_priorities(const HttpTls *t) {
        return t->priorities;
}

const char *http_tls_client_ca_pem(const HttpTls *t) {
        return t->client_ca_pem;
}

bool http_tls_wants_client_certificate(const HttpTls *t) {
        return t && t->client_ca_pem;
}

/* ---- client certificates -------------------------------------------------------------------- */

static const char *status_reason(unsigned status) {
        if (status & GNUTLS_CERT_EXPIRED)
                return "expired client certificate";
        if (status & GNUTLS_CERT_NOT_ACTIVATED)
                return "client certificate not yet valid";
        if (status & GNUTLS_CERT_PURPOSE_MISMATCH)
                return "certificate not meant for client authentication";
        if (status & GNUTLS_CERT_REVOKED)
                return "revoked client certificate";
        return "untrusted client certificate";
}

/* Adds a name unless it holds a NUL (a classic way to fool name checks) or is too long. */
static int names_add(char ***names, const char *buf, size_t size) {
        if (size == 0 || size >= PEER_NAME_MAX || strlen(buf) != size || strv_length(*names) >= PEER_NAMES_MAX)
                return 0;
        if (strv_contains(*names, buf))
                return 0;
        return strv_extend(names, buf);
}

static int peer_names(const gnutls_datum_t *der, char ***ret) {
        _cleanup_(strv_freep) char **names = NULL;
        gnutls_x509_crt_t crt = NULL;
        char buf[PEER_NAME_MAX];
        size_t size;
        int r;

        r = gnutls_x509_crt_init(&crt);
        if (r >= 0)
                r = gnutls_x509_crt_import(crt, der, GNUTLS_X509_FMT_DER);
        if (r < 0) {
                gnutls_x509_crt_deinit(crt);
                return -EINVAL;
        }
        size = sizeof(buf);
        if (gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, buf, &size) >= 0)
                r = names_add(&names, buf, size);
        for (unsigned i = 0; r >= 0 && i < PEER_NAMES_MAX; i++) {
                unsigned critical;
                int type;

                size = sizeof(buf) - 1;
                type = gnutls_x509_crt_get_subject_alt_name(crt, i, buf, &size, &critical);
                if (type == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
                        break;
                if (type == GNUTLS_SAN_DNSNAME || type == GNUTLS_SAN_URI) {
                        buf[MIN(size, sizeof(buf) - 1)] = 0;
                        r = names_add(&names, buf, size);
                }
        }
        gnutls_x509_crt_deinit(crt);
        if (r < 0)
                return r;
        if (!names)
                return -ENOENT;
        *ret = TAKE_PTR(names);
        return 0;
}

int http_tls_verify_peer(void *session, char ***ret_names, const char **ret_reason) {
        gnutls_session_t s = session;
        gnutls_typed_vdata_st purpose = {
                .type = GNUTLS_DT_KEY_PURPOSE_OID,
                .data = (unsigned char *) GNUTLS_KP_TLS_WWW_CLIENT,
        };
        const gnutls_datum_t *chain;
        unsigned n = 0, status = 0;
        int r;

        *ret_reason = "no client certificate";
        if (!s || gnutls_certificate_type_get2(s, GNUTLS_CTYPE_PEERS) != GNUTLS_CRT_X509)
                return -EACCES;
        chain = gnutls_certificate_get_peers(s, &n);
        if (!chain || n == 0)
                return -EACCES;
        /* Chain to the CA, signatures, validity period (activation and expiry, against the
         * clock), and the extended key usage when the certificate has one. */
        r = gnutls_certificate_verify_peers(s, &purpose, 1, &status);
        if (r < 0) {
                *ret_reason = "client certificate could not be verified";
                return -EACCES;
        }
        if (status != 0) {
                *ret_reason = status_reason(status);
                return -EACCES;
        }
        r = peer_names(&chain[0], ret_names);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                *ret_reason = "client certificate names no subject";
                return -EACCES;
        }
        *ret_reason = NULL;
        return 0;
}
