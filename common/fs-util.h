/* fs-util.h: reading, durable writing and directory helpers, and sizes as people read them. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Reads a whole file, refusing one larger than max_size (-EFBIG). The result is NUL-terminated. */
int read_full_file(const char *path, size_t max_size, char **ret, size_t *ret_size);
/* Reads a one-line secret (token) file, stripping whitespace (spaces, tabs, CR, LF) at both ends; empty
 * is -ENODATA, more than one line -EBADMSG. */
int read_secret_file(const char *path, char **ret);
/* The same for a secret from elsewhere (an environment variable), in place: strips whitespace at
 * both ends; empty is -ENODATA, more than one line -EBADMSG. */
int secret_strip(char *s);
/* Writes via a temporary file, fsyncs it, renames it in place and fsyncs the directory. */
int write_file_durable(const char *path, const void *data, size_t size, mode_t mode);
int fsync_directory_of(const char *path);
int fsync_path(const char *path);
/* Makes path and the directories above it that are missing. Returns how many it made (always
 * the last components of path: a directory that exists has every one above it), or -errno. */
int mkdir_parents_and_self(const char *path, mode_t mode);
/* Makes the entries of path's last n components durable, by an fsync of the directory above each:
 * what a new directory needs besides its own fsync (n as mkdir_parents_and_self() returned). */
int fsync_parents(const char *path, unsigned n);
/* Checks that dir is a directory this process can create files in. */
int directory_writable(const char *dir);
/* 1024-based, one decimal: "3.8 MiB"; under 1 KiB in bytes. Returns buf. */
char *format_bytes(char *buf, size_t size, uint64_t bytes);
