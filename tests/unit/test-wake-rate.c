/* test-wake-rate.c: the limits on wake datagrams (wake-rate.h): the rules themselves, and
 * that one event waking many workers costs a bounded number of table probes per worker (an
 * unsorted list scanned per worker costs as many probes as there are workers). */
#include <stdio.h>
#include <time.h>

#include "tap.h"
#include "wake-rate.h"

#define T0       (1000 * USEC_PER_SEC)
#define INTERVAL (100 * USEC_PER_MSEC)
#define MANY     20000

static void test_rule(void) {
        _cleanup_(wake_rate_freep) WakeRate *r = wake_rate_new();

        ok(r, "created");
        ok(wake_rate_allow(r, "w1", T0, INTERVAL), "the first datagram to a worker is allowed");
        ok(!wake_rate_allow(r, "w1", T0, INTERVAL), "a second one at the same time is refused");
        ok(!wake_rate_allow(r, "w1", T0 + INTERVAL - 1, INTERVAL), "and so is one just within the interval");
        ok(wake_rate_allow(r, "w2", T0 + 1, INTERVAL), "another worker is not held back by the first");
        ok(wake_rate_allow(r, "w1", T0 + INTERVAL, INTERVAL), "once the interval has passed, allowed again");
        ok(!wake_rate_allow(r, "w1", T0 + INTERVAL + 1, INTERVAL), "counted from that datagram");
        ok(wake_rate_allow(r, "w1", T0 + INTERVAL + 1, 1), "the interval is the caller's (a reload may change it)");
        ok(wake_rate_allow(r, "w1", T0 + INTERVAL + 1, 0) && wake_rate_allow(r, "w1", T0 + INTERVAL + 1, 0),
           "an interval of 0 limits nothing");
        ok(wake_rate_allow(r, "w\xc3\xa9", T0, INTERVAL) && !wake_rate_allow(r, "w\xc3\xa9", T0, INTERVAL),
           "non-ASCII ids are keys like any other");
        is_int((int) wake_rate_size(r), 3, "three workers held");
}

/* Reference counts of work for MANY workers: each event below is one pass over all of them. */
/* Up to max per key and interval (the per-address budget), counted from the interval's first. */
static void test_rule_with_a_budget(void) {
        _cleanup_(wake_rate_freep) WakeRate *r = wake_rate_new();
        int allowed = 0;

        for (int i = 0; i < 5; i++)
                allowed += wake_rate_allow_n(r, "192.0.2.1", T0 + (usec_t) i, INTERVAL, 3);
        is_int(allowed, 3, "three of five within the interval");
        ok(wake_rate_allow_n(r, "192.0.2.2", T0 + 5, INTERVAL, 3), "another key has its own budget");
        ok(!wake_rate_allow_n(r, "192.0.2.1", T0 + INTERVAL - 1, INTERVAL, 3), "none more until the interval ends");
        for (allowed = 0; allowed < 5 && wake_rate_allow_n(r, "192.0.2.1", T0 + INTERVAL, INTERVAL, 3); allowed++)
                ;
        is_int(allowed, 3, "then three again, in the next interval");
}

static void test_many_workers_cost_a_bounded_number_of_probes(void) {
        _cleanup_(wake_rate_freep) WakeRate *r = wake_rate_new();
        char id[32];
        int allowed = 0, refused = 0, again = 0;
        clock_t started = clock();

        for (int i = 0; i < MANY; i++) {
                snprintf(id, sizeof(id), "worker-%05d", i);
                allowed += wake_rate_allow(r, id, T0, INTERVAL);
        }
        for (int i = 0; i < MANY; i++) {
                snprintf(id, sizeof(id), "worker-%05d", i);
                refused += !wake_rate_allow(r, id, T0 + INTERVAL / 2, INTERVAL);
        }
        for (int i = 0; i < MANY; i++) {
                snprintf(id, sizeof(id), "worker-%05d", i);
                again += wake_rate_allow(r, id, T0 + INTERVAL, INTERVAL);
        }
        double cpu = (double) (clock() - started) / CLOCKS_PER_SEC;
        uint64_t probes = wake_rate_probes(r);

        is_int(allowed, MANY, "%d workers are each allowed their first datagram", MANY);
        is_int(refused, MANY, "each is refused a second one within the interval");
        is_int(again, MANY, "each is allowed again after it");
        is_int((int) wake_rate_size(r), MANY, "one entry per worker");
        /* A table at most half full needs a few probes per lookup (rebuilds included); a list
         * scanned per lookup needs up to MANY: 3 * MANY^2 / 2 = 600 million here. */
        ok(probes <= 3 * 8 * (uint64_t) MANY, "%llu probes for %d lookups: at most 8 each", (unsigned long long) probes,
           3 * MANY);
        /* For the reader only (the probe count is the bound): the table takes milliseconds, the
         * list seconds. */
        diag("%d lookups took %.3f s of CPU", 3 * MANY, cpu);
}

/* Workers woken once and never again do not stay in the table forever: the entries older than the
 * interval go when the table would grow. */
static void test_stale_entries_are_pruned(void) {
        _cleanup_(wake_rate_freep) WakeRate *r = wake_rate_new();
        char id[32];

        for (int round = 0; round < 50; round++)
                for (int i = 0; i < 1000; i++) {
                        snprintf(id, sizeof(id), "r%d-w%d", round, i);
                        if (!wake_rate_allow(r, id, T0 + (usec_t) round * INTERVAL, INTERVAL))
                                tap_bail("a new worker was refused");
                }
        /* At most the table's half of four times one interval's workers, 4096 slots. */
        ok(wake_rate_size(r) <= 2048, "after 50 intervals of 1000 new workers each, %zu entries held (at most 2048)",
           wake_rate_size(r));
        snprintf(id, sizeof(id), "r%d-w%d", 49, 999);
        ok(!wake_rate_allow(r, id, T0 + 49 * INTERVAL, INTERVAL), "the latest workers are still held back");
}

int main(void) {
        test_rule();
        test_rule_with_a_budget();
        test_many_workers_cost_a_bounded_number_of_probes();
        test_stale_entries_are_pruned();
        return tap_done();
}
