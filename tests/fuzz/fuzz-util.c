/* fuzz-util.c: helpers shared by the fuzz targets. */
#include <string.h>

#include "fuzz.h"

char *fuzz_strndup(const uint8_t *data, size_t size) {
        return strndup((const char *) data, size);
}
