/* time-util.c: clocks, systemd-style time span parsing and formatting, and deadline waits. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "macro.h"
#include "time-util.h"

static usec_t clock_usec(clockid_t id) {
        struct timespec ts;
        if (clock_gettime(id, &ts) < 0)
                abort();
        return (usec_t) ts.tv_sec * USEC_PER_SEC + (usec_t) ts.tv_nsec / 1000;
}

int fd_wait_readable(int fd, usec_t deadline) {
        for (;;) {
                struct pollfd p = {.fd = fd, .events = POLLIN};
                usec_t now = now_monotonic_usec();
                if (now >= deadline)
                        return 0;
                int k = poll(&p, 1, (int) MIN((deadline - now + USEC_PER_MSEC - 1) / USEC_PER_MSEC, (usec_t) INT_MAX));
                if (k > 0)
                        return 1;
                if (k < 0 && errno != EINTR)
                        return -errno;
        }
}

usec_t now_realtime_usec(void) {
        return clock_usec(CLOCK_REALTIME);
}

usec_t now_monotonic_usec(void) {
        return clock_usec(CLOCK_MONOTONIC);
}

usec_t now_boottime_usec(void) {
        return clock_usec(CLOCK_BOOTTIME);
}

static const struct {
        const char *suffix;
        usec_t usec;
} units[] = {
        /* Longest suffixes first so that "ms" is not read as "m" + "s". */
        { "seconds", USEC_PER_SEC }, { "second", USEC_PER_SEC }, { "minutes", USEC_PER_MINUTE },
        { "minute", USEC_PER_MINUTE }, { "hours", USEC_PER_HOUR }, { "hour", USEC_PER_HOUR },
        { "days", USEC_PER_DAY }, { "day", USEC_PER_DAY }, { "msec", USEC_PER_MSEC },
        { "usec", 1 }, { "min", USEC_PER_MINUTE }, { "sec", USEC_PER_SEC }, { "hr", USEC_PER_HOUR },
        { "ms", USEC_PER_MSEC }, { "us", 1 }, { "s", USEC_PER_SEC }, { "m", USEC_PER_MINUTE },
        { "h", USEC_PER_HOUR }, { "d", USEC_PER_DAY }, { "w", 7 * USEC_PER_DAY },
};

/* The longest span below infinity: 2^63-1 us, about 292 000 years. Each component and the sum are held
 * to it, so that no sum wraps and llround() never sees 2^63. */
#define TIMESPAN_MAX ((usec_t) INT64_MAX)

/* The number of one component: decimal digits with an optional fraction, as systemd takes it. strtod()
 * alone would also take hex ("0x10"), exponents ("1e3"), "inf" and "nan". */
static int parse_number(const char *s, double *ret, const char **ret_end) {
        const char *p = s;
        size_t digits = 0;
        char *end;
        double v;

        for (; isdigit((unsigned char) *p); p++)
                digits++;
        if (*p == '.')
                for (p++; isdigit((unsigned char) *p); p++)
                        digits++;
        if (digits == 0)
                return -EINVAL;
        errno = 0;
        v = strtod(s, &end);
        if (end != p)
                return -EINVAL;
        if (errno == ERANGE || !isfinite(v))
                return -ERANGE;
        *ret = v;
        *ret_end = p;
        return 0;
}

int parse_timespan(const char *s, usec_t *ret) {
        usec_t total = 0;
        bool any = false;

        if (!s)
                return -EINVAL;
        while (isspace((unsigned char) *s))
                s++;
        if (streq(s, "infinity")) {
                *ret = USEC_INFINITY;
                return 0;
        }

        while (*s) {
                const char *end;
                double v, x;
                usec_t mult = USEC_PER_SEC, part;
                int r;

                r = parse_number(s, &v, &end);
                if (r < 0)
                        return r;
                s = end;
                while (isspace((unsigned char) *s))
                        s++;
                if (isalpha((unsigned char) *s)) {
                        bool found = false;
                        for (size_t i = 0; i < ELEMENTSOF(units); i++) {
                                size_t n = strlen(units[i].suffix);
                                if (strncmp(s, units[i].suffix, n) == 0 && !isalpha((unsigned char) s[n])) {
                                        mult = units[i].usec;
                                        s += n;
                                        found = true;
                                        break;
                                }
                        }
                        if (!found)
                                return -EINVAL;
                }
                x = v * (double) mult;
                if (!(x < 0x1p63))
                        return -ERANGE;
                part = (usec_t) llround(x);
                if (part > TIMESPAN_MAX - total)
                        return -ERANGE;
                total += part;
                any = true;
                while (isspace((unsigned char) *s))
                        s++;
        }
        if (!any)
                return -EINVAL;
        *ret = total;
        return 0;
}

char *format_timespan(char *buf, size_t len, usec_t span) {
        static const struct {
                const char *suffix;
                usec_t usec;
        } table[] = {
                { "d", USEC_PER_DAY }, { "h", USEC_PER_HOUR }, { "min", USEC_PER_MINUTE },
                { "s", USEC_PER_SEC }, { "ms", USEC_PER_MSEC }, { "us", 1 },
        };
        size_t off = 0;

        if (len == 0)
                return buf;
        if (span == USEC_INFINITY) {
                snprintf(buf, len, "infinity");
                return buf;
        }
        if (span == 0) {
                snprintf(buf, len, "0");
                return buf;
        }
        buf[0] = 0;
        for (size_t i = 0; i < ELEMENTSOF(table) && span > 0; i++) {
                usec_t n = span / table[i].usec;
                if (n == 0)
                        continue;
                int k = snprintf(buf + off, len - off, "%s%llu%s", off ? " " : "", (unsigned long long) n,
                                 table[i].suffix);
                if (k < 0 || (size_t) k >= len - off)
                        break;
                off += (size_t) k;
                span -= n * table[i].usec;
        }
        return buf;
}

char *format_relative(char *buf, size_t len, usec_t when, usec_t now) {
        char span[64];
        usec_t d;

        if (when == 0) {
                snprintf(buf, len, "n/a");
                return buf;
        }
        d = when > now ? when - now : now - when;
        /* Coarsen to the biggest unit so "3min ago" reads like systemctl, not "3min 2s 41ms ago". */
        if (d >= USEC_PER_DAY)
                d -= d % USEC_PER_HOUR;
        else if (d >= USEC_PER_HOUR)
                d -= d % USEC_PER_MINUTE;
        else if (d >= USEC_PER_MINUTE)
                d -= d % USEC_PER_SEC;
        else if (d >= USEC_PER_SEC)
                d -= d % USEC_PER_SEC;
        else
                d -= d % USEC_PER_MSEC;
        format_timespan(span, sizeof(span), d);
        if (when > now)
                snprintf(buf, len, "in %s", span);
        else if (d == 0)
                snprintf(buf, len, "now");
        else
                snprintf(buf, len, "%s ago", span);
        return buf;
}

bool ratelimit_allow(RateLimit *rl, usec_t interval, unsigned *ret_suppressed) {
        usec_t now = now_monotonic_usec();

        if (rl->last != 0 && now - rl->last < interval) {
                rl->suppressed++;
                return false;
        }
        if (ret_suppressed)
                *ret_suppressed = rl->suppressed;
        rl->last = now;
        rl->suppressed = 0;
        return true;
}
