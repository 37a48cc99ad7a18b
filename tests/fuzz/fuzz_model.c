/* Fuzz target: model files (diffcl_model_load and diffcl_trainer_load_net): the metadata that
 * says which network to build and with which options, then the strict weight check. Every input
 * is loaded as the CS with diffcl_model_load; one that mentions the DS's metadata key is also
 * loaded as the ensemble of a Diff-CL run, which reads the DS and the pair's configuration. */
#include <string.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write_file(data, size, ".safetensors");
    if (!path) return 0;
    diffcl_module *m = NULL;
    diffcl_model_load(fuzz_context(), path, &m);
    diffcl_module_free(m);
    if (memmem(data, size, "diffcl.ds_model", 15)) {
        diffcl_net_options o = DIFFCL_NET_OPTIONS_INIT;
        o.net = DIFFCL_NET_ENSEMBLE;
        m = NULL;
        diffcl_trainer_load_net(fuzz_context(), path, &o, &m);
        diffcl_module_free(m);
    }
    return 0;
}
