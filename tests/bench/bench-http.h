/* bench-http.h: the small HTTP/1.1 client side entropy-bench needs: formatting a request, parsing
 * one response out of a byte stream (Content-Length bodies only: libmicrohttpd sends them for every
 * buffer response), and one blocking call for set-up and verification outside the measured loop. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "bench-util.h"

typedef struct HttpReply {
        unsigned status;
        const char *body; /* points into the parsed data; not NUL-terminated */
        size_t body_size;
        bool close; /* the server will close the connection after this response */
} HttpReply;

/* Appends one request (keep-alive) to out. body may be NULL (no body); token may be NULL. */
int http_format_request(Buf *out, const char *method, const char *path, uint16_t port, const char *token,
                        const char *body, size_t body_size);

/* Length of the complete response at the start of data (headers and body), 0 when more bytes are
 * needed, -EPROTO for a malformed or chunked response. */
ssize_t http_parse_reply(const char *data, size_t size, HttpReply *ret);

/* One request on a fresh blocking connection, bounded by timeout. *ret_body is NUL-terminated
 * (may be empty). */
int http_call(uint16_t port, const char *method, const char *path, const char *token, const char *body,
              unsigned *ret_status, char **ret_body);
