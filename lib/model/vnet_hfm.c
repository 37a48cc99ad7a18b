/* Builds the HF-Mamba module the V-Net places on an encoder level (lib/model/hf_mamba.c):
 * the module's defaults (Gaussian high-pass at 0.25 Nyquist, bidirectional Mamba with
 * mamba_ssm's defaults, residual combine), initialised from (seed, HFM stream, level). */
#include "diffcl/mamba.h"
#include "layer/module_internal.h"
#include "model/model_internal.h"

#define DC_STREAM_HFM_INIT 0x48460000u /* "HF": sub-streams + 0..13 per parameter */

diffcl_status dc_hfm_create_for_vnet(diffcl_context *ctx, int dims, int channels, uint64_t seed,
                                     uint32_t level, int border, diffcl_module **out)
{
    (void)dims; /* the module serves 2D and 3D feature maps alike */
    diffcl_hf_mamba_options o = DIFFCL_HF_MAMBA_OPTIONS_INIT;
    o.channels = channels;
    o.border = (diffcl_hfm_border)border;
    o.init_key = diffcl_rng_key_make(seed, DC_STREAM_HFM_INIT, level, 0);
    return diffcl_hf_mamba_create(ctx, &o, out);
}
