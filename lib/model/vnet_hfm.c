/* Builds the HF-Mamba module the V-Net places on an encoder level. */
#include "layer/module_internal.h"
#include "model/hfm_hook.h"

diffcl_status dc_hfm_create_for_vnet(diffcl_context *ctx, int dims, int channels, uint64_t seed,
                                     uint32_t level, diffcl_module **out)
{
    (void)ctx; (void)dims; (void)channels; (void)seed; (void)level;
    *out = NULL;
    return dc_error(DIFFCL_ERR_UNSUPPORTED, "HF-Mamba modules are not available in this build yet");
}
