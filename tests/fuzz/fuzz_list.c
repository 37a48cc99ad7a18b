/* Fuzz target: case lists (diffcl_list_read): train.list, test.list, --labeled-list. */
#include "fuzz.h"

static volatile char sink; /* keeps the reads from being optimised away */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write_file(data, size, ".list");
    char **ids = NULL;
    int64_t n = 0;
    if (!path || diffcl_list_read(path, &ids, &n) != DIFFCL_OK) return 0;
    for (int64_t i = 0; i < n; i++) sink ^= ids[i][0];
    diffcl_list_free(ids, n);
    return 0;
}
