/* wake-rate.h: the control plane's limits on wake datagrams: at most one per worker per interval
 * (--wake-interval), and at most a number per destination address. A hash table keyed by worker id
 * (or address) holds the start of its current interval and the datagrams sent in it, so that one
 * event that wakes N workers costs O(N), not the O(N^2) of a list scanned once per worker. Entries
 * older than the interval are dropped when the table would grow, so it holds about the keys sent
 * to within the last interval, and the pruning costs O(1) per send amortised. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"
#include "time-util.h"

typedef struct WakeRate WakeRate;

WakeRate *wake_rate_new(void);
WakeRate *wake_rate_free(WakeRate *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(WakeRate *, wake_rate_free);

/* Whether worker_id may get a datagram at `now` (CLOCK_MONOTONIC) when two datagrams to one worker
 * must be at least `interval` apart; records the send when it may. Out of memory, it allows the
 * send without recording it: better an extra datagram than a missed one. */
bool wake_rate_allow(WakeRate *r, const char *worker_id, usec_t now, usec_t interval);
/* The same for up to max datagrams per key in each interval, counted from the first one. */
bool wake_rate_allow_n(WakeRate *r, const char *key, usec_t now, usec_t interval, unsigned max);

/* For tests: the entries held, and the table slots looked at so far by wake_rate_allow() (the
 * unit of work of a lookup, however long the table). */
size_t wake_rate_size(const WakeRate *r);
uint64_t wake_rate_probes(const WakeRate *r);
