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

/* ---- model files (model_codec.c): one codec per kind of network, keyed by its JSON "type" ---- */

#include <cjson/cJSON.h>

typedef struct dc_model_codec {
    const char *type;                    /* "vnet", "diffusion": the configuration's "type" */
    int (*owns)(const diffcl_module *m); /* is @p m this kind of network */
    /* add the network's options to @p j (its "type" is already there) */
    diffcl_status (*to_json)(const diffcl_module *m, cJSON *j);
    /* read the options from @p j, check the sizes that make the network large against the
     * weights of @p d under @p prefix, then create the network (weights not yet loaded) */
    diffcl_status (*build)(diffcl_context *ctx, const cJSON *j, const diffcl_tensor_dict *d,
                           const char *prefix, const char *path, diffcl_module **out);
} dc_model_codec;

extern const dc_model_codec dc_vnet_codec;      /* vnet_codec.c */
extern const dc_model_codec dc_diffusion_codec; /* diffusion_codec.c */

/* The JSON configuration of @p m as model files store it ("diffcl.model"); @p *out is the
 * caller's (free). DIFFCL_ERR_UNSUPPORTED for a module no codec owns. */
diffcl_status dc_model_encode(const diffcl_module *m, char **out);
/* Rebuild a network from configuration @p cfg (NULL: none stored, an error) and the weights of
 * @p d: under @p prefix (NULL: the top level, strictly, leaving out keys starting with @p skip).
 * @p want_type, if not NULL, is the type the caller expects. Eval mode. */
diffcl_status dc_model_decode(diffcl_context *ctx, const diffcl_tensor_dict *d, const char *cfg,
                              const char *want_type, const char *prefix, const char *skip,
                              const char *path, diffcl_module **out);

/* ---- configuration helpers (model_config.c) ---- */

/* Typed reads of a JSON field; 0 when it is absent or of the wrong type (an int must be an
 * integral number in int's range). */
int dc_json_num(const cJSON *j, const char *key, double *v);
int dc_json_int(const cJSON *j, const char *key, int *v);
const char *dc_json_str(const cJSON *j, const char *key);
/* "none" | "batchnorm" | "instancenorm" | "groupnorm" | "layernorm", as model files spell
 * them; NULL for an unknown kind. dc_norm_from_name returns 0 for an unknown (or NULL) name. */
const char *dc_norm_name(diffcl_norm_kind k);
int dc_norm_from_name(const char *s, diffcl_norm_kind *k);
/* A saved configuration is checked against the file before a model is built from it (a
 * corrupt or forged config must not allocate gigabytes): the weight prefix+name must be in
 * @p dict with dims+2 axes and leading sizes [out, in]. DIFFCL_ERR_FORMAT otherwise. */
struct diffcl_tensor_dict;
diffcl_status dc_check_saved_weight(const struct diffcl_tensor_dict *dict, const char *prefix,
                                    const char *name, int dims, int64_t out, int64_t in,
                                    const char *path);

#endif
