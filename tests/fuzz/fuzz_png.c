/* Fuzz target: the PNG readers (libpng below), as an image and as a label map. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write_file(data, size, ".png");
    if (!path) return 0;
    diffcl_tensor *t = NULL;
    int depth = 0;
    diffcl_png_read_image(fuzz_context(), path, &t, &depth);
    diffcl_tensor_free(t);
    t = NULL;
    diffcl_png_read_label(fuzz_context(), path, &t);
    diffcl_tensor_free(t);
    return 0;
}
