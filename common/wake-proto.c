/* wake-proto.c: formatting and verification of wake-up datagrams (see wake-proto.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "crypto.h"
#include "macro.h"
#include "wake-proto.h"

static bool worker_id_valid(const char *id) {
        size_t n = id ? strlen(id) : 0;
        if (n == 0 || n > 128)
                return false;
        for (const char *p = id; *p; p++)
                if ((unsigned char) *p <= ' ' || (unsigned char) *p >= 127)
                        return false;
        return true;
}

int wake_format(const char *worker_id, const char *token, uint64_t unix_ms, char *buf, size_t size) {
        char mac[SHA256_HEX_SIZE];
        int n, k, r;

        if (!worker_id_valid(worker_id) || isempty(token))
                return -EINVAL;
        n = snprintf(buf, size, WAKE_MAGIC " %s %llu", worker_id, (unsigned long long) unix_ms);
        if (n < 0 || (size_t) n >= size)
                return -ENOBUFS;
        r = hmac_sha256_hex(token, strlen(token), buf, (size_t) n, mac);
        if (r < 0)
                return r;
        k = snprintf(buf + n, size - (size_t) n, " %s", mac);
        if (k < 0 || (size_t) (n + k) >= size)
                return -ENOBUFS;
        return n + k;
}

static int parse_ms(const char *s, size_t len, uint64_t *ret) {
        uint64_t v = 0;
        if (len == 0 || len > 19)
                return -EBADMSG;
        for (size_t i = 0; i < len; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EBADMSG;
                v = v * 10 + (uint64_t) (s[i] - '0');
        }
        *ret = v;
        return 0;
}

int wake_verify(const char *msg, size_t len, const char *worker_id, const char *token, uint64_t now_ms,
                uint64_t window_ms, uint64_t *ret_unix_ms) {
        char copy[WAKE_MAX_SIZE + 1], expect[SHA256_HEX_SIZE];
        const char *id, *ts, *mac;
        char *sp1, *sp2, *sp3;
        uint64_t when;
        int r;

        if (!msg || len == 0 || len > WAKE_MAX_SIZE || memchr(msg, 0, len))
                return -EBADMSG;
        memcpy(copy, msg, len);
        copy[len] = 0;
        if (strncmp(copy, WAKE_MAGIC " ", strlen(WAKE_MAGIC) + 1) != 0)
                return -EBADMSG;
        id = copy + strlen(WAKE_MAGIC) + 1;
        sp1 = strchr(id, ' ');
        if (!sp1)
                return -EBADMSG;
        ts = sp1 + 1;
        sp2 = strchr(ts, ' ');
        if (!sp2)
                return -EBADMSG;
        mac = sp2 + 1;
        sp3 = strchr(mac, ' ');
        if (sp3 || strlen(mac) != 64 || sp1 == id)
                return -EBADMSG;
        r = parse_ms(ts, (size_t) (sp2 - ts), &when);
        if (r < 0)
                return r;
        if ((size_t) (sp1 - id) != strlen(strempty(worker_id)) || strncmp(id, strempty(worker_id), (size_t) (sp1 - id)) != 0)
                return -EXDEV;
        if (isempty(token))
                return -EPERM;
        r = hmac_sha256_hex(token, strlen(token), copy, (size_t) (sp2 - copy), expect);
        if (r < 0)
                return r;
        if (!memeq_consttime(expect, 64, mac, 64))
                return -EPERM;
        /* Checked after the MAC so that an unauthenticated sender learns nothing about our clock. */
        if (when + window_ms < now_ms || when > now_ms + window_ms)
                return -ETIME;
        if (ret_unix_ms)
                *ret_unix_ms = when;
        return 0;
}
