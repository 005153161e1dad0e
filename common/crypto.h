/* crypto.h: SHA-256, HMAC-SHA256, random identifiers and constant-time comparison (GnuTLS). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHA256_HEX_SIZE 65 /* 64 hex digits + NUL */
#define RANDOM_ID_SIZE 33  /* 128 bits as 32 hex digits + NUL */

int sha256_hex(const void *data, size_t size, char ret[SHA256_HEX_SIZE]);
/* The SHA-256 of what fd reads from where it stands to its end. */
int sha256_fd_hex(int fd, char ret[SHA256_HEX_SIZE]);
int hmac_sha256(const void *key, size_t key_size, const void *data, size_t size, unsigned char ret[32]);
int hmac_sha256_hex(const void *key, size_t key_size, const void *data, size_t size, char ret[SHA256_HEX_SIZE]);
/* A fresh random identifier (job ids, assignment ids, nonces, instance ids). */
int random_id(char ret[RANDOM_ID_SIZE]);
/* Like random_id(), but the first 48 of the 128 bits are now_usec in milliseconds (as in a UUIDv7):
 * ids made close together sort close together, so rows keyed by them stay on few B-tree pages.
 * The other 80 bits are random. For keys of tables that grow; not for secrets. */
int time_ordered_id(uint64_t now_usec, char ret[RANDOM_ID_SIZE]);
/* Compares without an early exit, so timing says nothing about where strings differ. */
bool memeq_consttime(const void *a, size_t an, const void *b, size_t bn);
bool streq_consttime(const char *a, const char *b);
void hex_encode(const unsigned char *in, size_t n, char *out);
