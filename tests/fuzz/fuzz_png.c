/* Fuzz target: the PNG readers (libpng below), as an image (one channel, and R, G, B) and as a
 * label map (raw, and through a label map). */
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
    diffcl_read_options ro = DIFFCL_READ_OPTIONS_INIT;
    ro.png_color = DIFFCL_PNG_COLOR_RGB;
    ro.label_map = "255:1,128:2";
    t = NULL;
    diffcl_png_read_image_ex(fuzz_context(), path, &ro, &t, &depth);
    diffcl_tensor_free(t);
    t = NULL;
    diffcl_png_read_label_ex(fuzz_context(), path, &ro, &t);
    diffcl_tensor_free(t);
    return 0;
}
