/* fuzz-wake.c: the worker's wake datagram check (common/wake-proto.h) on hostile datagrams. It must
 * never crash, and accept only what wake_format() would have made with the right token. */
#include <string.h>

#include "fuzz.h"
#include "macro.h"
#include "wake-proto.h"

#define TOKEN "fuzz-worker-token-0123456789abcdef"
#define NOW_MS UINT64_C(1800000000000)

static const char *const ids[] = {"worker-1", "w\xc3\xb6rker-1"};

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char again[WAKE_MAX_SIZE + 1];
        uint64_t ms = 0;

        if (size > 2 * WAKE_MAX_SIZE)
                return 0;
        /* An id of printable ASCII (the first form) and a UTF-8 one (the percent-encoded form). */
        for (size_t i = 0; i < ELEMENTSOF(ids); i++)
                if (wake_verify((const char *) data, size, ids[i], TOKEN, NOW_MS, 60000, &ms) == 0) {
                        /* Whatever it accepted must be exactly what the sender formats for that time. */
                        int n = wake_format(ids[i], TOKEN, ms, again, sizeof(again));
                        if (n < 0 || (size_t) n != size || memcmp(again, data, size) != 0)
                                __builtin_trap();
                }
        return 0;
}
