/* bench-http.c: HTTP/1.1 request formatting and response parsing for entropy-bench. */
#include <poll.h>
#include <stdio.h>
#include <strings.h>
#include <sys/socket.h>

#include "bench-http.h"
#include "time-util.h"

#define HTTP_CALL_TIMEOUT_USEC (30 * USEC_PER_SEC)
#define HTTP_MAX_HEADER        16384

int http_format_request(Buf *out, const char *method, const char *path, uint16_t port, const char *token,
                        const char *body, size_t body_size) {
        int r;

        r = buf_printf(out, "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n", method, path, (unsigned) port);
        if (r >= 0 && token)
                r = buf_printf(out, "X-API-Token: %s\r\n", token);
        if (r >= 0 && body)
                r = buf_printf(out, "Content-Type: application/json\r\nContent-Length: %zu\r\n", body_size);
        if (r >= 0)
                r = buf_append(out, "\r\n", 2);
        if (r >= 0 && body)
                r = buf_append(out, body, body_size);
        return r;
}

static bool header_is(const char *line, size_t len, const char *name, const char **ret_value) {
        size_t n = strlen(name);

        if (len <= n || line[n] != ':' || strncasecmp(line, name, n) != 0)
                return false;
        line += n + 1;
        while (*line == ' ' || *line == '\t')
                line++;
        *ret_value = line;
        return true;
}

/* Reads the headers between the status line and the blank line; -EPROTO for chunked bodies. */
static int parse_headers(const char *p, const char *end, size_t *ret_length, bool *ret_has_length, bool *ret_close) {
        while (p < end) {
                const char *eol = memmem(p, (size_t) (end - p), "\r\n", 2);
                size_t len = eol ? (size_t) (eol - p) : (size_t) (end - p);
                const char *v;

                if (header_is(p, len, "Content-Length", &v)) {
                        *ret_length = strtoull(v, NULL, 10);
                        *ret_has_length = true;
                } else if (header_is(p, len, "Connection", &v))
                        *ret_close = strncasecmp(v, "close", 5) == 0;
                else if (header_is(p, len, "Transfer-Encoding", &v))
                        return -EPROTO;
                p += len + 2;
        }
        return 0;
}

ssize_t http_parse_reply(const char *data, size_t size, HttpReply *ret) {
        const char *head_end, *eol;
        size_t head, length = 0;
        bool has_length = false, close = false;
        unsigned status;
        int r;

        head_end = memmem(data, size, "\r\n\r\n", 4);
        if (!head_end)
                return size > HTTP_MAX_HEADER ? -EPROTO : 0;
        head = (size_t) (head_end - data) + 4;
        if (size < 12 || strncmp(data, "HTTP/1.", 7) != 0 || sscanf(data + 9, "%3u", &status) != 1)
                return -EPROTO;
        eol = memmem(data, head, "\r\n", 2);
        r = parse_headers(eol + 2, head_end + 2, &length, &has_length, &close);
        if (r < 0)
                return r;
        if (!has_length && status != 204 && status != 304)
                return -EPROTO; /* a body delimited by close: not something this client speaks */
        if (size - head < length)
                return 0;
        *ret = (HttpReply){.status = status, .body = data + head, .body_size = length, .close = close};
        return (ssize_t) (head + length);
}

static int send_all(int fd, const char *p, size_t n) {
        while (n > 0) {
                ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
                if (k < 0)
                        return negative_errno();
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

/* Reads until one complete response is buffered or the deadline passes. */
static ssize_t recv_reply(int fd, Buf *in, usec_t deadline, HttpReply *reply) {
        for (;;) {
                struct pollfd pfd = {.fd = fd, .events = POLLIN};
                usec_t now = now_monotonic_usec();
                ssize_t k;
                int r;

                k = http_parse_reply(in->data ? in->data : "", in->size, reply);
                if (k != 0)
                        return k;
                if (now >= deadline)
                        return -ETIMEDOUT;
                r = poll(&pfd, 1, (int) ((deadline - now) / USEC_PER_MSEC) + 1);
                if (r < 0)
                        return negative_errno();
                if (r == 0)
                        continue;
                r = buf_reserve(in, 65536);
                if (r < 0)
                        return r;
                k = recv(fd, in->data + in->size, in->alloc - in->size - 1, 0);
                if (k < 0)
                        return negative_errno();
                if (k == 0)
                        return -ECONNRESET;
                in->size += (size_t) k;
        }
}

int http_call(uint16_t port, const char *method, const char *path, const char *token, const char *body,
              unsigned *ret_status, char **ret_body) {
        _cleanup_(buf_free) Buf out = {}, in = {};
        _cleanup_close_ int fd = -EBADF;
        HttpReply reply;
        ssize_t k;
        char *copy;
        int r;

        r = http_format_request(&out, method, path, port, token, body, body ? strlen(body) : 0);
        if (r < 0)
                return r;
        r = connect_loopback(port, false, &fd);
        if (r < 0)
                return r;
        r = send_all(fd, out.data, out.size);
        if (r < 0)
                return r;
        k = recv_reply(fd, &in, now_monotonic_usec() + HTTP_CALL_TIMEOUT_USEC, &reply);
        if (k < 0)
                return (int) k;
        copy = strndup(reply.body, reply.body_size);
        if (!copy)
                return -ENOMEM;
        *ret_status = reply.status;
        *ret_body = copy;
        return 0;
}
