/* wake-proto.c: formatting and verification of wake-up datagrams (see wake-proto.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "crypto.h"
#include "macro.h"
#include "protocol.h"
#include "wake-proto.h"

/* Writes "<magic> <id field>", the part of the datagram that names the worker: WAKE_MAGIC and the
 * id itself when it is printable ASCII (the original form, which every worker understands), else
 * WAKE_MAGIC_ENCODED and the id with every byte above 0x7f, and '%', written %XX. Returns its
 * length, or -EINVAL for an id that cannot register. */
static int wake_header(const char *worker_id, char *buf, size_t size) {
        static const char hex[] = "0123456789ABCDEF";
        bool ascii = true;
        size_t n;

        if (!worker_id_is_registrable(worker_id))
                return -EINVAL;
        for (const char *p = worker_id; *p; p++)
                if ((unsigned char) *p > 0x7f)
                        ascii = false;
        if (ascii) {
                int k = snprintf(buf, size, WAKE_MAGIC " %s", worker_id);
                return k < 0 || (size_t) k >= size ? -ENOBUFS : k;
        }
        n = strlen(WAKE_MAGIC_ENCODED " ");
        if (n >= size)
                return -ENOBUFS;
        memcpy(buf, WAKE_MAGIC_ENCODED " ", n);
        for (const char *p = worker_id; *p; p++) {
                unsigned char b = (unsigned char) *p;
                if (n + 4 > size)
                        return -ENOBUFS;
                if (b > 0x7f || b == '%') {
                        buf[n++] = '%';
                        buf[n++] = hex[b >> 4];
                        buf[n++] = hex[b & 15];
                } else
                        buf[n++] = (char) b;
        }
        buf[n] = 0;
        return (int) n;
}

int wake_format(const char *worker_id, const char *token, uint64_t unix_ms, char *buf, size_t size) {
        char mac[SHA256_HEX_SIZE];
        int n, k, r;

        if (isempty(token))
                return -EINVAL;
        r = wake_header(worker_id, buf, size);
        if (r < 0)
                return r;
        n = r;
        k = snprintf(buf + n, size - (size_t) n, " %llu", (unsigned long long) unix_ms);
        if (k < 0 || (size_t) (n + k) >= size)
                return -ENOBUFS;
        n += k;
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
        char copy[WAKE_MAX_SIZE + 1], expect[SHA256_HEX_SIZE], header[WAKE_MAX_SIZE];
        const char *id, *ts, *mac;
        char *sp1, *sp2, *sp3;
        uint64_t when;
        int r;

        if (!msg || len == 0 || len > WAKE_MAX_SIZE || memchr(msg, 0, len))
                return -EBADMSG;
        memcpy(copy, msg, len);
        copy[len] = 0;
        if (strncmp(copy, WAKE_MAGIC " ", strlen(WAKE_MAGIC " ")) == 0)
                id = copy + strlen(WAKE_MAGIC " ");
        else if (strncmp(copy, WAKE_MAGIC_ENCODED " ", strlen(WAKE_MAGIC_ENCODED " ")) == 0)
                id = copy + strlen(WAKE_MAGIC_ENCODED " ");
        else
                return -EBADMSG;
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
        /* Addressed to us: the magic and id field are what we would send to ourselves. */
        r = wake_header(worker_id, header, sizeof(header));
        if (r < 0 || (size_t) r != (size_t) (sp1 - copy) || memcmp(copy, header, (size_t) r) != 0)
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
