/* How the V-Net builds an HF-Mamba module for one encoder level (implemented next to the
 * HF-Mamba module; a stub returning DIFFCL_ERR_UNSUPPORTED until it exists). */
#ifndef DIFFCL_HFM_HOOK_H
#define DIFFCL_HFM_HOOK_H

#include "diffcl/module.h"

diffcl_status dc_hfm_create_for_vnet(diffcl_context *ctx, int dims, int channels, uint64_t seed,
                                     uint32_t level, diffcl_module **out);
int dc_is_vnet(const diffcl_module *m);
/* The JSON configuration diffcl_model_save() stores ("diffcl.model"); NULL with the error set. */
char *dc_model_config_json(const diffcl_module *m);

#endif
