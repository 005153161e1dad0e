/* bench-stats.h: latency samples and their percentiles. Every sample is kept (up to a cap, so
 * memory stays bounded) and sorted once at the end: exact percentiles, no histogram buckets. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "time-util.h"

#define LATENCY_MAX_SAMPLES (8U * 1024U * 1024U)

typedef struct Latency {
        uint32_t *samples; /* microseconds */
        size_t n, alloc;
        uint64_t dropped; /* samples beyond the cap, not recorded */
        uint64_t sum;
        uint32_t max;
} Latency;

/* Records one sample (saturated at ~71 min); -ENOMEM only when the first allocation fails. */
int latency_add(Latency *l, usec_t sample);
/* Sorts the samples (once; later calls are cheap until another sample is added). */
void latency_finish(Latency *l);
/* p in [0, 100], of sorted samples; 0 when empty. */
usec_t latency_percentile(const Latency *l, double p);
usec_t latency_mean(const Latency *l);
void latency_free(Latency *l);
