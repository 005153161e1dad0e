/* macro.h: cleanup helpers, ownership transfer and small language conveniences shared by every program. */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _noreturn_ __attribute__((noreturn))
#define _likely_(x) __builtin_expect(!!(x), 1)
#define _unlikely_(x) __builtin_expect(!!(x), 0)

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define CLAMP(x, lo, hi) MIN(MAX((x), (lo)), (hi))

/* Hands ownership out of a cleanup-managed variable. */
#define TAKE_PTR(p)                        \
        ({                                 \
                typeof(p) _tp_ = (p);      \
                (p) = NULL;                \
                _tp_;                      \
        })
#define TAKE_FD(fd)                        \
        ({                                 \
                int _tfd_ = (fd);          \
                (fd) = -EBADF;             \
                _tfd_;                     \
        })

/* Room for one more item in an array of *allocated items of `size` bytes, n of them in use: the
 * array doubles, from `first` items. 0, or -ENOMEM with the array as it was. Use GROW_FOR_ONE(). */
static inline int grow_for_one(void **array, size_t *allocated, size_t n, size_t size, size_t first) {
        if (n < *allocated)
                return 0;
        size_t k = *allocated > 0 ? *allocated * 2 : first;
        void *p = reallocarray(*array, k, size);
        if (!p)
                return -ENOMEM;
        *array = p;
        *allocated = k;
        return 0;
}
#define GROW_FOR_ONE(array, allocated, n, first)                                                                       \
        grow_for_one((void **) &(array), &(allocated), (n), sizeof(*(array)), (first))

#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)          \
        static inline void func##p(type *p) {            \
                if (*p)                                  \
                        func(*p);                        \
        }

static inline void freep(void *p) {
        free(*(void **) p);
}
#define _cleanup_free_ _cleanup_(freep)

static inline void closep(int *fd) {
        if (*fd >= 0)
                close(*fd);
}
#define _cleanup_close_ _cleanup_(closep)

static inline void fclosep(FILE **f) {
        if (*f)
                fclose(*f);
}
#define _cleanup_fclose_ _cleanup_(fclosep)

static inline bool streq(const char *a, const char *b) {
        return strcmp(a, b) == 0;
}
static inline bool streq_ptr(const char *a, const char *b) {
        if (!a || !b)
                return a == b;
        return strcmp(a, b) == 0;
}
static inline bool isempty(const char *s) {
        return !s || !*s;
}
static inline const char *strempty(const char *s) {
        return s ? s : "";
}
static inline const char *strna(const char *s) {
        return s ? s : "n/a";
}

static inline int negative_errno(void) {
        return errno > 0 ? -errno : -EIO;
}

/* Frees *p and replaces it with v (which may be NULL). */
static inline void free_and_replace_str(char **p, char *v) {
        free(*p);
        *p = v;
}

#define STRV_FOREACH(s, l) for (char **s = (l); s && *s; s++)
