/* requirement-sets.c: requirements texts, each parsed once (see requirement-sets.h): an array
 * sorted by text, searched by halves. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "jobs-internal.h"
#include "requirement-sets.h"
#include "strv.h"

typedef struct Entry {
        char *text;
        char **set;
} Entry;

struct RequirementSets {
        Entry *entries;
        size_t n, allocated;
        size_t bytes; /* of the texts and sets held */
        size_t parsed;
};

static size_t entry_bytes(const char *text, char *const *set) {
        size_t b = strlen(text) + 1 + sizeof(char *);
        STRV_FOREACH (i, (char **) set)
                b += strlen(*i) + 1 + sizeof(char *);
        return b;
}

static void forget_all(RequirementSets *m) {
        for (size_t i = 0; i < m->n; i++) {
                free(m->entries[i].text);
                strv_free(m->entries[i].set);
        }
        m->n = 0;
        m->bytes = 0;
}

RequirementSets *requirement_sets_free(RequirementSets *m) {
        if (!m)
                return NULL;
        forget_all(m);
        free(m->entries);
        free(m);
        return NULL;
}

/* Where text is, or would go: *ret_found tells which. */
static size_t position(const RequirementSets *m, const char *text, bool *ret_found) {
        size_t lo = 0, hi = m->n;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int d = strcmp(text, m->entries[mid].text);
                if (d == 0) {
                        *ret_found = true;
                        return mid;
                }
                if (d < 0)
                        hi = mid;
                else
                        lo = mid + 1;
        }
        *ret_found = false;
        return lo;
}

static int insert(RequirementSets *m, size_t at, const char *text, char **set, size_t bytes) {
        if (GROW_FOR_ONE(m->entries, m->allocated, m->n, 16) < 0)
                return -ENOMEM;
        char *copy = strdup(text);
        if (!copy)
                return -ENOMEM;
        memmove(m->entries + at + 1, m->entries + at, (m->n - at) * sizeof(Entry));
        m->entries[at] = (Entry){.text = copy, .set = set};
        m->n++;
        m->bytes += bytes;
        return 0;
}

int requirement_sets_get(RequirementSets **m, const char *text, char *const **ret) {
        _cleanup_strv_free_ char **set = NULL;
        bool found;
        int r;

        if (!*m) {
                *m = calloc(1, sizeof(RequirementSets));
                if (!*m)
                        return -ENOMEM;
        }
        size_t at = position(*m, text, &found);
        if (found) {
                *ret = (*m)->entries[at].set;
                return 0;
        }
        r = strv_from_json_text(text, &set);
        if (r < 0)
                return r;
        (*m)->parsed++;
        size_t bytes = entry_bytes(text, set);
        if ((*m)->n >= REQUIREMENT_SETS_MAX || (*m)->bytes + bytes > REQUIREMENT_SETS_BYTES_MAX) {
                forget_all(*m);
                at = 0;
        }
        r = insert(*m, at, text, set, bytes);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(set);
        return 0;
}

size_t requirement_sets_size(const RequirementSets *m) {
        return m ? m->n : 0;
}

size_t requirement_sets_bytes(const RequirementSets *m) {
        return m ? m->bytes : 0;
}

size_t requirement_sets_parsed(const RequirementSets *m) {
        return m ? m->parsed : 0;
}
