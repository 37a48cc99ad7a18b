/* The fuzz targets of tests/fuzz: one LLVMFuzzerTestOneInput per reader of untrusted input.
 *
 * Each target is built twice from the same source (tests/fuzz/meson.build):
 *  - with replay.c, a small main() that runs every file of the committed corpus and of the past
 *    crash inputs once (suite `fuzz`, every build, gcc or clang);
 *  - with -Dfuzz=enabled and clang, as a libFuzzer binary (-fsanitize=fuzzer) for campaigns
 *    (docs/testing.md, "Fuzzing").
 * A target must accept any bytes: whatever the reader returns is fine as long as nothing
 * crashes, leaks or reads out of bounds. */
#ifndef DIFFCL_FUZZ_H
#define DIFFCL_FUZZ_H

#include <stddef.h>
#include <stdint.h>

#include <diffcl/diffcl.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One context for the whole process: 1 thread (a fuzzer wants each input to run the same way),
 * log lines dropped (readers report bad input at WARN/ERROR, which a fuzzer hits constantly). */
diffcl_context *fuzz_context(void);

/* Write @p data to a per-process file whose name ends in @p suffix (the readers that choose the
 * format by file name need it), under $DIFFCL_FUZZ_DIR, else /dev/shm when it is writable, else
 * /tmp. Returns the path (a static buffer, rewritten by the next call), or NULL when the write
 * failed: the target then skips the input. */
const char *fuzz_write_file(const uint8_t *data, size_t size, const char *suffix);

#endif
