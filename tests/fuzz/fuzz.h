/* fuzz.h: the libFuzzer entry points every tests/fuzz/fuzz-*.c target defines. With clang and
 * --enable-fuzzers each target is linked with -fsanitize=fuzzer; every build also links it with
 * fuzz-main.c, which replays the checked-in corpus (tests/fuzz/corpus/<target>/) under make check,
 * so that each corpus file, and each crash once turned into one, stays a regression test. */
#pragma once

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A NUL-terminated copy of the input (fuzzers hand out unterminated buffers), or NULL. */
char *fuzz_strndup(const uint8_t *data, size_t size);
