/* requirement-sets.h: the requirements texts a claim meets (a job's requirements as stored, a JSON
 * list), each parsed once and kept, so that a claim among many classes, or one reading the queue
 * row by row, matches a text against its worker's capabilities without parsing it again. A text
 * always stands for the same set, so nothing ever goes stale; the memo forgets everything rather
 * than hold more than REQUIREMENT_SETS_MAX texts or REQUIREMENT_SETS_BYTES_MAX bytes of them (a
 * text may be 64 items of 128 bytes). */
#pragma once

#include <stddef.h>

#include "macro.h"

#define REQUIREMENT_SETS_MAX       4096
#define REQUIREMENT_SETS_BYTES_MAX (1024 * 1024)

typedef struct RequirementSets RequirementSets;

RequirementSets *requirement_sets_free(RequirementSets *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(RequirementSets *, requirement_sets_free);

/* The requirements of text (anything that is not a list reads as none, as a job load reads it),
 * into *ret: valid until the next call. *m is created on first use. */
int requirement_sets_get(RequirementSets **m, const char *text, char *const **ret);

/* For tests: the texts held, their bytes (texts and sets), and the texts parsed so far. */
size_t requirement_sets_size(const RequirementSets *m);
size_t requirement_sets_bytes(const RequirementSets *m);
size_t requirement_sets_parsed(const RequirementSets *m);
