/* wake-send.h: the control plane's side of worker wake-ups: one authenticated UDP datagram
 * (common/wake-proto.h) to a worker's wake socket, telling a sleeping or socket-activated worker
 * to poll now. Best effort by design: nothing is claimed by a wake-up, so a lost one only delays.
 *
 * What the control plane keeps per worker, from POST /register: the optional field `wake_port`
 * (1..65535; absent or 0 means the worker has no wake socket), the optional field `wake_address`
 * (an IP literal the worker asks to be woken at) and, when that is absent, the peer address of the
 * /register request itself. When a job becomes claimable (submit, retry backoff elapsed, scheduled
 * time reached), call wake_send() for idle ONLINE or DISCONNECTED workers that have a wake port and
 * whose capabilities match, at most once per worker per --wake-interval. */
#pragma once

#include <stdint.h>

/* Sends "entropy-wake1 <worker_id> <unix_ms> <hmac>" to host:port over UDP without blocking.
 * host must be a numeric IPv4 or IPv6 address (no DNS lookup, which would block the loop).
 * Returns 0, -EINVAL for a bad address, port or worker id, or the negative errno of the send. */
int wake_send(const char *host, uint16_t port, const char *worker_id, const char *worker_token);
