/* tap.h: a minimal Test Anything Protocol producer for automake's tap-driver.sh.
 *
 *   static void test_claim_order(void) { ok(x == 1, "claim order is priority first"); }
 *   int main(void) { test_claim_order(); return tap_done(); }
 *
 * The plan is printed at the end, so tests need not count their assertions. */
#pragma once

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tap_count_;
static int tap_failed_;

__attribute__((format(printf, 4, 5), unused)) static int tap_ok_(int cond, const char *file, int line,
                                                                  const char *fmt, ...) {
        va_list ap;
        tap_count_++;
        printf("%sok %d - ", cond ? "" : "not ", tap_count_);
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        printf("\n");
        if (!cond) {
                tap_failed_++;
                printf("#   Failed at %s:%d\n", file, line);
        }
        fflush(stdout);
        return cond;
}

#define ok(cond, ...) tap_ok_(!!(cond), __FILE__, __LINE__, __VA_ARGS__)
#define is_int(got, want, ...)                                                                    \
        do {                                                                                      \
                long long g_ = (long long) (got), w_ = (long long) (want);                        \
                if (!ok(g_ == w_, __VA_ARGS__))                                                   \
                        printf("#   got %lld, want %lld\n", g_, w_);                              \
        } while (0)
#define is_str(got, want, ...)                                                                    \
        do {                                                                                      \
                const char *g_ = (got), *w_ = (want);                                             \
                if (!ok(g_ && w_ ? strcmp(g_, w_) == 0 : g_ == w_, __VA_ARGS__))                  \
                        printf("#   got '%s', want '%s'\n", g_ ? g_ : "(null)", w_ ? w_ : "(null)"); \
        } while (0)
#define diag(...)                          \
        do {                               \
                printf("# ");              \
                printf(__VA_ARGS__);       \
                printf("\n");              \
        } while (0)

/* Aborts the whole test program: for set-up that later assertions depend on. */
#define tap_bail(...)                      \
        do {                               \
                printf("Bail out! ");      \
                printf(__VA_ARGS__);       \
                printf("\n");              \
                exit(1);                   \
        } while (0)

__attribute__((unused)) static int tap_skip_all(const char *why) {
        printf("1..0 # SKIP %s\n", why);
        return 0;
}

__attribute__((unused)) static int tap_done(void) {
        printf("1..%d\n", tap_count_);
        return tap_failed_ ? 1 : 0;
}
