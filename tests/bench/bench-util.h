/* bench-util.h: small helpers of entropy-bench: a growable byte buffer, temporary directories,
 * free loopback ports, token files and a description of the file system under a path. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

typedef struct Buf {
        char *data;
        size_t size;  /* bytes held */
        size_t alloc; /* bytes allocated */
} Buf;

/* Makes room for extra more bytes; -ENOMEM. */
int buf_reserve(Buf *b, size_t extra);
int buf_append(Buf *b, const void *data, size_t size);
/* Appends printf output; -ENOMEM, or -EINVAL for a format error. */
int buf_printf(Buf *b, const char *format, ...) _printf_(2, 3);
/* Drops the first n bytes. */
void buf_consume(Buf *b, size_t n);
void buf_free(Buf *b);

/* A directory made with mkdtemp under base ($TMPDIR or /var/tmp when base is NULL or empty). */
int make_temp_dir(const char *base, const char *prefix, char **ret);
/* Removes a directory tree (never follows symlinks). Missing is success. */
int rm_rf(const char *path);

/* A TCP port on 127.0.0.1 that was free a moment ago. */
int free_loopback_port(uint16_t *ret);
/* Connects a socket to 127.0.0.1:port with TCP_NODELAY; non-blocking if asked. */
int connect_loopback(uint16_t port, bool nonblocking, int *ret_fd);

/* Writes a token file (mode 0600) holding token and a newline. */
int write_token_file(const char *path, const char *token);
/* A fresh random token of 32 hex digits (getrandom). */
int random_token(char ret[static 33]);

/* "ext4", "tmpfs", "xfs", ... for the file system holding path; "unknown" when not recognised. */
const char *fs_type_of(const char *path);
/* The directory of this executable, from /proc/self/exe. */
int self_directory(char **ret);

/* "http://127.0.0.1:8080" or "127.0.0.1:8080" (path ignored) to a loopback port; -EINVAL for
 * anything not on 127.0.0.1 or localhost (the bench sends load to loopback only). */
int parse_loopback_url(const char *url, uint16_t *ret_port);
