/* crypto.c: hashing, HMAC and randomness through GnuTLS, the project's one crypto library. */
#include <errno.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <string.h>
#include <unistd.h>

#include "crypto.h"
#include "macro.h"

void hex_encode(const unsigned char *in, size_t n, char *out) {
        static const char digits[] = "0123456789abcdef";
        for (size_t i = 0; i < n; i++) {
                out[2 * i] = digits[in[i] >> 4];
                out[2 * i + 1] = digits[in[i] & 15];
        }
        out[2 * n] = 0;
}

int sha256_hex(const void *data, size_t size, char ret[SHA256_HEX_SIZE]) {
        unsigned char digest[32];
        if (gnutls_hash_fast(GNUTLS_DIG_SHA256, data, size, digest) < 0)
                return -EIO;
        hex_encode(digest, sizeof(digest), ret);
        return 0;
}

static void hash_deinitp(gnutls_hash_hd_t *h) {
        if (*h)
                gnutls_hash_deinit(*h, NULL);
}

int sha256_fd_hex(int fd, char ret[SHA256_HEX_SIZE]) {
        _cleanup_(hash_deinitp) gnutls_hash_hd_t h = NULL;
        unsigned char digest[32];
        char buf[65536];

        if (gnutls_hash_init(&h, GNUTLS_DIG_SHA256) < 0)
                return -EIO;
        for (;;) {
                ssize_t k = read(fd, buf, sizeof(buf));
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        break;
                if (gnutls_hash(h, buf, (size_t) k) < 0)
                        return -EIO;
        }
        gnutls_hash_output(h, digest);
        hex_encode(digest, sizeof(digest), ret);
        return 0;
}

int hmac_sha256(const void *key, size_t key_size, const void *data, size_t size, unsigned char ret[32]) {
        if (gnutls_hmac_fast(GNUTLS_MAC_SHA256, key, key_size, data, size, ret) < 0)
                return -EIO;
        return 0;
}

int hmac_sha256_hex(const void *key, size_t key_size, const void *data, size_t size, char ret[SHA256_HEX_SIZE]) {
        unsigned char mac[32];
        int r = hmac_sha256(key, key_size, data, size, mac);
        if (r < 0)
                return r;
        hex_encode(mac, sizeof(mac), ret);
        return 0;
}

int random_id(char ret[RANDOM_ID_SIZE]) {
        unsigned char b[16];
        if (gnutls_rnd(GNUTLS_RND_NONCE, b, sizeof(b)) < 0)
                return -EIO;
        hex_encode(b, sizeof(b), ret);
        return 0;
}

int time_ordered_id(uint64_t now_usec, char ret[RANDOM_ID_SIZE]) {
        uint64_t ms = now_usec / 1000;
        unsigned char b[16];

        for (size_t i = 0; i < 6; i++)
                b[i] = (unsigned char) (ms >> (40 - 8 * i));
        if (gnutls_rnd(GNUTLS_RND_NONCE, b + 6, sizeof(b) - 6) < 0)
                return -EIO;
        hex_encode(b, sizeof(b), ret);
        return 0;
}

bool memeq_consttime(const void *a, size_t an, const void *b, size_t bn) {
        const unsigned char *x = a, *y = b;
        unsigned char d = an != bn;
        size_t n = MAX(an, bn);

        for (size_t i = 0; i < n; i++)
                d |= (unsigned char) ((i < an ? x[i] : 0) ^ (i < bn ? y[i] : 0));
        return d == 0;
}

bool streq_consttime(const char *a, const char *b) {
        if (!a || !b)
                return false;
        return memeq_consttime(a, strlen(a), b, strlen(b));
}
