/* Fuzz target: the NIfTI reader (diffcl_nifti_read over niftilib), as an image and as a label
 * map. niftilib picks the format from the file name, so an input that starts with the gzip
 * magic is written as x.nii.gz and anything else as x.nii. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int gz = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
    const char *path = fuzz_write_file(data, size, gz ? ".nii.gz" : ".nii");
    if (!path) return 0;
    for (int as = 0; as < 2; as++) {
        diffcl_tensor *t = NULL;
        diffcl_image_meta meta;
        diffcl_image_meta_init(&meta);
        diffcl_nifti_read(fuzz_context(), path, as ? DIFFCL_NIFTI_LABEL : DIFFCL_NIFTI_IMAGE, &t, &meta);
        diffcl_tensor_free(t);
    }
    return 0;
}
