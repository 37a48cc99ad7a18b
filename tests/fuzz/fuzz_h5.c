/* Fuzz target: the h5 data-set reader (diffcl_h5_read over libhdf5), on the two data sets the
 * LA / BraTS / pancreas layouts read. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write_file(data, size, ".h5");
    if (!path) return 0;
    static const char *const names[] = {"image", "label"};
    for (int i = 0; i < 2; i++) {
        diffcl_tensor *t = NULL;
        diffcl_h5_read(fuzz_context(), path, names[i], &t);
        diffcl_tensor_free(t);
    }
    return 0;
}
