/* bench-stats.c: exact latency percentiles from kept samples. */
#include <errno.h>
#include <stdlib.h>

#include "bench-stats.h"
#include "macro.h"

int latency_add(Latency *l, usec_t sample) {
        uint32_t v = sample > UINT32_MAX ? UINT32_MAX : (uint32_t) sample;

        if (l->n >= l->alloc) {
                size_t n;
                uint32_t *p;

                if (l->alloc >= LATENCY_MAX_SAMPLES) {
                        l->dropped++;
                        return 0;
                }
                n = l->alloc ? MIN(l->alloc * 2, (size_t) LATENCY_MAX_SAMPLES) : 4096;
                p = realloc(l->samples, n * sizeof(uint32_t));
                if (!p) {
                        l->dropped++;
                        return l->alloc ? 0 : -ENOMEM;
                }
                l->samples = p;
                l->alloc = n;
        }
        l->samples[l->n++] = v;
        l->sum += v;
        l->max = MAX(l->max, v);
        return 0;
}

static int cmp_u32(const void *a, const void *b) {
        uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;
        return x < y ? -1 : x > y;
}

void latency_finish(Latency *l) {
        if (l->n > 1)
                qsort(l->samples, l->n, sizeof(uint32_t), cmp_u32);
}

usec_t latency_percentile(const Latency *l, double p) {
        size_t i;

        if (l->n == 0)
                return 0;
        /* Nearest rank: the smallest sample with at least p% of samples at or below it. */
        i = (size_t) ((p / 100.0) * (double) l->n + 0.999999);
        i = CLAMP(i, (size_t) 1, l->n);
        return l->samples[i - 1];
}

usec_t latency_mean(const Latency *l) {
        return l->n ? l->sum / l->n : 0;
}

void latency_free(Latency *l) {
        free(l->samples);
        *l = (Latency){};
}
