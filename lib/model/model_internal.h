/* Model-layer internals shared by the V-Net, the denoiser and the model checkpoints. */
#ifndef DIFFCL_MODEL_INTERNAL_H
#define DIFFCL_MODEL_INTERNAL_H

/* How the V-Net builds the HF-Mamba module of one encoder level (lib/model/vnet_hfm.c). */

#include "diffcl/layer.h"
#include "diffcl/module.h"

diffcl_status dc_hfm_create_for_vnet(diffcl_context *ctx, int dims, int channels, uint64_t seed,
                                     uint32_t level, int border, diffcl_module **out);
int dc_is_vnet(const diffcl_module *m);
/* diffcl_model_load on a dictionary already read from @p path (named in messages). */
diffcl_status dc_model_from_dict(diffcl_context *ctx, const diffcl_tensor_dict *d, const char *path,
                                 diffcl_module **out);
/* The JSON configuration diffcl_model_save() stores ("diffcl.model"); NULL with the error set. */
char *dc_model_config_json(const diffcl_module *m);
/* "batchnorm" | "instancenorm" | "groupnorm" | "none", as the checkpoints spell them. */
const char *dc_norm_name(diffcl_norm_kind k);
int dc_norm_from_name(const char *s, diffcl_norm_kind *k);
/* A saved configuration is checked against the file before a model is built from it (a
 * corrupt or forged config must not allocate gigabytes): the weight prefix+name must be in
 * @p dict with dims+2 axes and leading sizes [out, in]. DIFFCL_ERR_FORMAT otherwise. */
struct diffcl_tensor_dict;
diffcl_status dc_check_saved_weight(const struct diffcl_tensor_dict *dict, const char *prefix, const char *name,
                                    int dims, int64_t out, int64_t in, const char *path);

#endif
