/* strv.h: NULL-terminated string vectors. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

char **strv_free(char **l);
size_t strv_length(char *const *l);
bool strv_contains(char *const *l, const char *s);
/* Appends a copy of s; -ENOMEM on failure, l untouched. */
int strv_extend(char ***l, const char *s);
/* Takes ownership of s (freed on failure). */
int strv_consume(char ***l, char *s);
char **strv_copy(char *const *l);
/* Splits on any of the separator characters, dropping empty items. */
int strv_split(const char *s, const char *separators, char ***ret);
char *strv_join(char *const *l, const char *separator);
bool strv_equal(char *const *a, char *const *b);
/* Sorts l in place (strcmp order) and drops repeated items: a set's one spelling. */
void strv_sort_unique(char **l);

static inline void strv_freep(char ***l) {
        strv_free(*l);
}
#define _cleanup_strv_free_ __attribute__((cleanup(strv_freep)))
