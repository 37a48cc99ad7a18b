/* Fuzz target: the safetensors reader (diffcl_safetensors_load), its JSON header, the dtype
 * conversions and the offsets it checks. A loaded dictionary is walked, so that every tensor
 * and metadata string it hands out is read. */
#include "fuzz.h"

static volatile uint8_t sink; /* keeps the reads from being optimised away */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write_file(data, size, ".safetensors");
    diffcl_tensor_dict *d = NULL;
    if (!path || diffcl_safetensors_load(fuzz_context(), path, &d) != DIFFCL_OK) return 0;
    for (int i = 0; i < diffcl_tensor_dict_size(d); i++) {
        const diffcl_tensor *t = diffcl_tensor_dict_at(d, i);
        const uint8_t *p = diffcl_tensor_data_const(t);
        size_t bytes = (size_t)diffcl_tensor_numel(t) * diffcl_dtype_size(diffcl_tensor_dtype(t));
        if (bytes) sink ^= p[0] ^ p[bytes - 1];
        sink ^= (uint8_t)diffcl_tensor_dict_name(d, i)[0];
    }
    for (int i = 0; i < diffcl_tensor_dict_meta_count(d); i++) {
        const char *k = diffcl_tensor_dict_meta_key(d, i);
        sink ^= (uint8_t)diffcl_tensor_dict_get_meta(d, k)[0];
    }
    diffcl_tensor_dict_free(d);
    return 0;
}
