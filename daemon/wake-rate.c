/* wake-rate.c: the limits on wake datagrams (see wake-rate.h): an open-addressing hash table
 * with linear probing, at most half full. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "wake-rate.h"

#define WAKE_RATE_MIN_SLOTS 16

typedef struct WakeRateEntry {
        char *key; /* NULL: a free slot */
        uint64_t hash;
        usec_t at;      /* monotonic time of the first datagram of the key's current interval */
        unsigned count; /* datagrams in that interval */
} WakeRateEntry;

struct WakeRate {
        WakeRateEntry *slots;
        size_t n_slots; /* a power of two */
        size_t n_entries;
        uint64_t seed;
        uint64_t probes;
};

/* FNV-1a from a random start, then the splitmix64 finalizer so that the low bits, which pick the
 * slot, depend on every byte. Not a keyed hash: ids could still be made to collide, but only by
 * registering them (with the worker token), and a collision costs probes, not correctness. */
static uint64_t hash_id(uint64_t seed, const char *s) {
        uint64_t h = 0xcbf29ce484222325ULL ^ seed;
        for (; *s; s++)
                h = (h ^ (unsigned char) *s) * 0x100000001b3ULL;
        h ^= h >> 30;
        h *= 0xbf58476d1ce4e5b9ULL;
        h ^= h >> 27;
        h *= 0x94d049bb133111ebULL;
        return h ^ (h >> 31);
}

WakeRate *wake_rate_new(void) {
        WakeRate *r = calloc(1, sizeof(*r));
        if (!r)
                return NULL;
        if (getrandom(&r->seed, sizeof(r->seed), GRND_NONBLOCK) != (ssize_t) sizeof(r->seed))
                r->seed = now_monotonic_usec() ^ (uint64_t) (uintptr_t) r;
        return r;
}

WakeRate *wake_rate_free(WakeRate *r) {
        if (!r)
                return NULL;
        for (size_t i = 0; i < r->n_slots; i++)
                free(r->slots[i].key);
        free(r->slots);
        free(r);
        return NULL;
}

size_t wake_rate_size(const WakeRate *r) {
        return r ? r->n_entries : 0;
}

uint64_t wake_rate_probes(const WakeRate *r) {
        return r ? r->probes : 0;
}

/* The slot holding key, or the free slot where it would go. The table is never full. */
static WakeRateEntry *slot_find(WakeRate *r, const char *key, uint64_t hash) {
        size_t mask = r->n_slots - 1;
        for (size_t i = (size_t) hash & mask;; i = (i + 1) & mask) {
                WakeRateEntry *e = &r->slots[i];
                r->probes++;
                if (!e->key || (e->hash == hash && strcmp(e->key, key) == 0))
                        return e;
        }
}

/* Makes room for one more entry: drops the entries older than the interval (they would allow a
 * send anyway) and sizes the table at four times what is left, so that at least a quarter of it
 * fills before the next rebuild: each rebuild is paid for by as many inserts as it costs. */
static int rebuild(WakeRate *r, usec_t now, usec_t interval) {
        size_t live = 0, n_slots = WAKE_RATE_MIN_SLOTS;
        WakeRateEntry *slots;

        for (size_t i = 0; i < r->n_slots; i++) {
                WakeRateEntry *e = &r->slots[i];
                if (e->key && now < e->at + interval)
                        live++;
        }
        while (n_slots < 4 * (live + 1))
                n_slots *= 2;
        slots = calloc(n_slots, sizeof(*slots));
        if (!slots)
                return -ENOMEM;
        WakeRate next = {.slots = slots, .n_slots = n_slots, .seed = r->seed, .probes = r->probes};
        for (size_t i = 0; i < r->n_slots; i++) {
                WakeRateEntry *e = &r->slots[i];
                if (!e->key)
                        continue;
                if (now >= e->at + interval) {
                        free(e->key);
                        continue;
                }
                *slot_find(&next, e->key, e->hash) = *e;
                next.n_entries++;
        }
        free(r->slots);
        *r = next;
        return 0;
}

bool wake_rate_allow_n(WakeRate *r, const char *key, usec_t now, usec_t interval, unsigned max) {
        uint64_t hash = hash_id(r->seed, key);
        WakeRateEntry *e;

        if (r->n_slots > 0) {
                e = slot_find(r, key, hash);
                if (e->key) {
                        if (now >= e->at + interval)
                                *e = (WakeRateEntry){.key = e->key, .hash = hash, .at = now, .count = 1};
                        else if (e->count < max)
                                e->count++;
                        else
                                return false;
                        return true;
                }
        }
        if (2 * (r->n_entries + 1) > r->n_slots && rebuild(r, now, interval) < 0)
                return true; /* out of memory: better an extra datagram than a missed one */
        char *copy = strdup(key);
        if (!copy)
                return true;
        e = slot_find(r, key, hash);
        *e = (WakeRateEntry){.key = copy, .hash = hash, .at = now, .count = 1};
        r->n_entries++;
        return true;
}

bool wake_rate_allow(WakeRate *r, const char *worker_id, usec_t now, usec_t interval) {
        return wake_rate_allow_n(r, worker_id, now, interval, 1);
}
