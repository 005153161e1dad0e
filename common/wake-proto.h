/* wake-proto.h: the wake-up datagram the control plane sends to an idle worker's wake socket
 * when work arrives, shared by the sender (daemon/wake-send.c) and the receiver (worker/wake.c).
 *
 * Format: one UDP datagram of ASCII text, no trailing newline, at most WAKE_MAX_SIZE bytes:
 *
 *     entropy-wake1 <worker_id> <unix_ms> <hmac>          for an id of printable ASCII
 *     entropy-wake1e <encoded worker_id> <unix_ms> <hmac>  for an id with bytes above 0x7f
 *
 *   worker_id  the id the worker registered with: 1..128 bytes, none a space, a control character
 *              or DEL (worker_id_is_registrable() in protocol.h, the rule of POST /register)
 *   encoded    the same id with each byte above 0x7f, and each '%', written as '%' and two
 *              uppercase hex digits (percent-encoding): "w\xc3\xb6rker" is "w%C3%B6rker". Ids of
 *              printable ASCII always go in the first form, as they did before the second existed,
 *              so a worker that knows only the first form is woken as it always was.
 *   unix_ms    the sender's CLOCK_REALTIME in milliseconds since the epoch, decimal
 *   hmac       64 lowercase hex digits: HMAC-SHA256 keyed with the worker token over
 *              everything before the last space ("entropy-wake1 <worker_id> <unix_ms>")
 *
 * The receiver accepts a datagram only if it is well formed, names this worker, carries a valid
 * HMAC (compared in constant time), lies within a freshness window of the receiver's clock, and is
 * newer than the last one it accepted (so a replay inside the window is dropped). A wake-up only
 * makes the worker poll at once: a lost, delayed or forged datagram can delay work, never claim or
 * change any, because polling GET /next-job stays the only way work is claimed. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define WAKE_MAGIC         "entropy-wake1"
#define WAKE_MAGIC_ENCODED "entropy-wake1e"
#define WAKE_MAX_SIZE      512 /* the longest datagram, a 128-byte id encoded, is under 500 */

/* Writes the datagram into buf (NUL-terminated); returns its length, or -EINVAL (bad worker id),
 * -ENOBUFS (buf too small), -EIO (crypto failure). */
int wake_format(const char *worker_id, const char *token, uint64_t unix_ms, char *buf, size_t size);

/* Checks a received datagram. Returns 0 and sets *ret_unix_ms when valid; -EBADMSG when
 * malformed, -EXDEV when addressed to another worker, -EPERM when the HMAC is wrong, -ETIME when
 * outside [now_ms - window_ms, now_ms + window_ms]. */
int wake_verify(const char *msg, size_t len, const char *worker_id, const char *token, uint64_t now_ms,
                uint64_t window_ms, uint64_t *ret_unix_ms);
