/* time-util.h: clocks, systemd-style time spans ("500ms", "8s", "2min") and their formatting,
 * and waiting for a descriptor until a deadline. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef uint64_t usec_t;

#define USEC_INFINITY ((usec_t) UINT64_MAX)
#define USEC_PER_MSEC ((usec_t) 1000ULL)
#define USEC_PER_SEC ((usec_t) 1000000ULL)
#define USEC_PER_MINUTE (60ULL * USEC_PER_SEC)
#define USEC_PER_HOUR (60ULL * USEC_PER_MINUTE)
#define USEC_PER_DAY (24ULL * USEC_PER_HOUR)

usec_t now_realtime_usec(void);
usec_t now_monotonic_usec(void);
/* CLOCK_BOOTTIME: like CLOCK_MONOTONIC (never stepped), but counts the time the machine was suspended. */
usec_t now_boottime_usec(void);

/* Blocks until fd is readable (or its other end is gone), or until deadline (CLOCK_MONOTONIC):
 * 1 readable, 0 the deadline passed, -errno when poll() fails (EINTR is waited through). */
int fd_wait_readable(int fd, usec_t deadline);

/* Parses a span in systemd's syntax; a bare number is seconds. "infinity" gives USEC_INFINITY. Numbers are
 * decimal (no hex, no exponent); a span of 2^63 us (about 292 000 years) or more is -ERANGE. */
int parse_timespan(const char *s, usec_t *ret);
/* "1min 30s", "500ms", "0". */
char *format_timespan(char *buf, size_t len, usec_t span);
/* "3min ago", "in 2s", relative to now (both realtime usec). */
char *format_relative(char *buf, size_t len, usec_t when, usec_t now);

/* A message that may repeat for as long as its cause lasts, said at most once an interval. */
typedef struct RateLimit {
        usec_t last;         /* monotonic; 0: never said */
        unsigned suppressed; /* times it was not said since */
} RateLimit;

/* Whether to say it now; if so, *ret_suppressed (may be NULL) is how many times it was not said
 * since it last was. */
bool ratelimit_allow(RateLimit *rl, usec_t interval, unsigned *ret_suppressed);

/* Unix seconds (as a JSON number with fractional part) from realtime usec. */
static inline double usec_to_unix_seconds(usec_t u) {
        return (double) u / (double) USEC_PER_SEC;
}
