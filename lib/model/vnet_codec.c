/* The V-Net (and V-Net with HF-Mamba) in model files: its options to and from the JSON of
 * "diffcl.model" (model_codec.c's table). */
#include <stdio.h>
#include <stdlib.h>

#include "diffcl/model.h"
#include "layer/module_internal.h"
#include "model/model_internal.h"

static int vnet_owns(const diffcl_module *m)
{
    return dc_is_vnet(m);
}

static diffcl_status vnet_to_json(const diffcl_module *m, cJSON *j)
{
    diffcl_vnet_options o = DIFFCL_VNET_OPTIONS_INIT;
    DC_TRY(diffcl_vnet_get_options(m, &o));
    const char *norm = dc_norm_name(o.normalization);
    if (!norm)
        return dc_error(DIFFCL_ERR_UNSUPPORTED, "normalization %d cannot be saved",
                        (int)o.normalization);
    cJSON_AddNumberToObject(j, "dims", o.dims);
    cJSON_AddNumberToObject(j, "in_channels", o.in_channels);
    cJSON_AddNumberToObject(j, "n_classes", o.n_classes);
    cJSON_AddNumberToObject(j, "n_filters", o.n_filters);
    cJSON_AddStringToObject(j, "normalization", norm);
    cJSON_AddNumberToObject(j, "has_dropout", o.has_dropout);
    cJSON_AddNumberToObject(j, "dropout_p", o.dropout_p);
    cJSON_AddNumberToObject(j, "hf_mamba_levels", o.hf_mamba_levels);
    if (o.hfm_border)
        cJSON_AddNumberToObject(j, "hfm_border", o.hfm_border); /* absent: periodic (0.1.0) */
    char seed[32]; /* a string: JSON numbers are doubles, exact only up to 2^53 */
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)o.seed);
    cJSON_AddStringToObject(j, "seed", seed);
    return DIFFCL_OK;
}

static diffcl_status vnet_options_from_json(const cJSON *j, diffcl_vnet_options *o)
{
    int levels = 0, border = 0;
    if (!dc_json_int(j, "dims", &o->dims) || !dc_json_int(j, "in_channels", &o->in_channels) ||
        !dc_json_int(j, "n_classes", &o->n_classes) ||
        !dc_json_int(j, "n_filters", &o->n_filters) ||
        !dc_json_int(j, "has_dropout", &o->has_dropout) ||
        !dc_norm_from_name(dc_json_str(j, "normalization"), &o->normalization) ||
        !dc_json_num(j, "dropout_p", &o->dropout_p) ||
        !dc_json_int(j, "hf_mamba_levels", &levels) ||
        (cJSON_GetObjectItemCaseSensitive(j, "hfm_border") &&
         !dc_json_int(j, "hfm_border", &border)))
        return DIFFCL_ERR_FORMAT;
    o->hf_mamba_levels = (unsigned)levels;
    o->hfm_border = border;
    const char *seed = dc_json_str(j, "seed"); /* absent before 0.2 */
    if (seed) o->seed = strtoull(seed, NULL, 10);
    return DIFFCL_OK;
}

static diffcl_status vnet_build(diffcl_context *ctx, const cJSON *j, const diffcl_tensor_dict *d,
                                const char *prefix, const char *path, diffcl_module **out)
{
    diffcl_vnet_options o = DIFFCL_VNET_OPTIONS_INIT;
    if (vnet_options_from_json(j, &o) != DIFFCL_OK)
        return dc_error(DIFFCL_ERR_FORMAT, "%s: incomplete or invalid V-Net configuration", path);
    /* the sizes that make the network large, against the file, before anything is built */
    DC_TRY(dc_check_saved_weight(d, prefix, "block_one.conv.0.weight", o.dims, o.n_filters,
                                 o.in_channels, path));
    DC_TRY(dc_check_saved_weight(d, prefix, "out_conv.weight", o.dims, o.n_classes, o.n_filters,
                                 path));
    return diffcl_vnet_create(ctx, &o, out);
}

const dc_model_codec dc_vnet_codec = {"vnet", vnet_owns, vnet_to_json, vnet_build};
