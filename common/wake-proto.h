/* wake-proto.h: the wake-up datagram the control plane sends to an idle worker's wake socket
 * when work arrives, shared by the sender (daemon/wake-send.c) and the receiver (worker/wake.c).
 *
 * Format: one UDP datagram of ASCII text, no trailing newline, at most WAKE_MAX_SIZE bytes:
 *
 *     entropy-wake1 <worker_id> <unix_ms> <hmac>
 *
 *   worker_id  the id the worker registered with (1..128 characters, no whitespace)
 *   unix_ms    the sender's CLOCK_REALTIME in milliseconds since the epoch, decimal
 *   hmac       64 lowercase hex digits: HMAC-SHA256 keyed with the worker token over the
 *              text "entropy-wake1 <worker_id> <unix_ms>" (everything before the last space)
 *
 * The receiver accepts a datagram only if it is well formed, names this worker, carries a valid
 * HMAC (compared in constant time), lies within a freshness window of the receiver's clock, and is
 * newer than the last one it accepted (so a replay inside the window is dropped). A wake-up only
 * makes the worker poll at once: a lost, delayed or forged datagram can delay work, never claim or
 * change any, because polling GET /next-job stays the only way work is claimed. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define WAKE_MAGIC "entropy-wake1"
#define WAKE_MAX_SIZE 512

/* Writes the datagram into buf (NUL-terminated); returns its length, or -EINVAL (bad worker id),
 * -ENOBUFS (buf too small), -EIO (crypto failure). */
int wake_format(const char *worker_id, const char *token, uint64_t unix_ms, char *buf, size_t size);

/* Checks a received datagram. Returns 0 and sets *ret_unix_ms when valid; -EBADMSG when
 * malformed, -EXDEV when addressed to another worker, -EPERM when the HMAC is wrong, -ETIME when
 * outside [now_ms - window_ms, now_ms + window_ms]. */
int wake_verify(const char *msg, size_t len, const char *worker_id, const char *token, uint64_t now_ms,
                uint64_t window_ms, uint64_t *ret_unix_ms);
