/* strv.c: NULL-terminated string vectors. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "strv.h"

char **strv_free(char **l) {
        STRV_FOREACH(s, l)
                free(*s);
        free(l);
        return NULL;
}

size_t strv_length(char *const *l) {
        size_t n = 0;
        if (!l)
                return 0;
        while (l[n])
                n++;
        return n;
}

bool strv_contains(char *const *l, const char *s) {
        for (size_t i = 0; l && l[i]; i++)
                if (streq(l[i], s))
                        return true;
        return false;
}

int strv_consume(char ***l, char *s) {
        size_t n;
        char **nl;

        if (!s)
                return -ENOMEM;
        n = strv_length(*l);
        nl = realloc(*l, sizeof(char *) * (n + 2));
        if (!nl) {
                free(s);
                return -ENOMEM;
        }
        nl[n] = s;
        nl[n + 1] = NULL;
        *l = nl;
        return 0;
}

int strv_extend(char ***l, const char *s) {
        return strv_consume(l, strdup(s));
}

char **strv_copy(char *const *l) {
        char **r = calloc(strv_length(l) + 1, sizeof(char *));
        if (!r)
                return NULL;
        for (size_t i = 0; l && l[i]; i++) {
                r[i] = strdup(l[i]);
                if (!r[i])
                        return strv_free(r);
        }
        return r;
}

int strv_split(const char *s, const char *separators, char ***ret) {
        _cleanup_strv_free_ char **l = calloc(1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        while (s && *s) {
                size_t skip = strspn(s, separators);
                s += skip;
                size_t n = strcspn(s, separators);
                if (n == 0)
                        break;
                if (strv_consume(&l, strndup(s, n)) < 0)
                        return -ENOMEM;
                s += n;
        }
        *ret = TAKE_PTR(l);
        return 0;
}

char *strv_join(char *const *l, const char *separator) {
        size_t sl = strlen(separator), n = 1;
        char *r, *p;

        for (size_t i = 0; l && l[i]; i++)
                n += strlen(l[i]) + (i ? sl : 0);
        r = p = malloc(n);
        if (!r)
                return NULL;
        for (size_t i = 0; l && l[i]; i++) {
                if (i) {
                        memcpy(p, separator, sl);
                        p += sl;
                }
                size_t k = strlen(l[i]);
                memcpy(p, l[i], k);
                p += k;
        }
        *p = 0;
        return r;
}

bool strv_equal(char *const *a, char *const *b) {
        size_t n = strv_length(a);
        if (n != strv_length(b))
                return false;
        for (size_t i = 0; i < n; i++)
                if (!streq(a[i], b[i]))
                        return false;
        return true;
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

void strv_sort_unique(char **l) {
        size_t n = strv_length(l), kept = 0;

        if (n < 2)
                return;
        qsort(l, n, sizeof(char *), cmp_str);
        for (size_t i = 0; i < n; i++) {
                if (kept > 0 && streq(l[kept - 1], l[i]))
                        free(l[i]);
                else
                        l[kept++] = l[i];
        }
        l[kept] = NULL;
}
