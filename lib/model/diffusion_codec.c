/* The diffusion denoiser in model files: its options to and from the JSON of "diffcl.model"
 * (model_codec.c's table). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/diffusion_internal.h"
#include "model/model_internal.h"

static int diffusion_owns(const diffcl_module *m)
{
    return m && !strcmp(diffcl_module_type(m), "diffusion");
}

static diffcl_status diffusion_to_json(const diffcl_module *m, cJSON *j)
{
    const diffcl_diffusion_options *o = dc_diffusion_opts(m, "saving a denoiser");
    if (!o) return DIFFCL_ERR_INVALID_ARGUMENT;
    const char *norm = dc_norm_name(o->normalization);
    if (!norm)
        return dc_error(DIFFCL_ERR_UNSUPPORTED, "normalization %d cannot be saved",
                        (int)o->normalization);
    cJSON_AddNumberToObject(j, "dims", o->dims);
    cJSON_AddNumberToObject(j, "in_channels", o->in_channels);
    cJSON_AddNumberToObject(j, "n_classes", o->n_classes);
    cJSON_AddNumberToObject(j, "n_filters", o->n_filters);
    cJSON_AddStringToObject(j, "normalization", norm);
    cJSON_AddNumberToObject(j, "stage_dropout", o->stage_dropout);
    cJSON_AddNumberToObject(j, "has_dropout", o->has_dropout);
    cJSON_AddNumberToObject(j, "dropout_p", o->dropout_p);
    cJSON_AddStringToObject(j, "schedule", o->schedule == DIFFCL_BETA_COSINE ? "cosine" : "linear");
    cJSON_AddNumberToObject(j, "timesteps", o->timesteps);
    cJSON_AddStringToObject(j, "target",
                            o->target == DIFFCL_DIFFUSION_PREDICT_EPSILON ? "epsilon" : "x0");
    cJSON_AddNumberToObject(j, "time_embed_dim", o->time_embed_dim);
    cJSON_AddNumberToObject(j, "time_hidden_dim", o->time_hidden_dim);
    char seed[32]; /* a string: JSON numbers are doubles, exact only up to 2^53 */
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)o->seed);
    cJSON_AddStringToObject(j, "seed", seed);
    return DIFFCL_OK;
}

static diffcl_status diffusion_options_from_json(const cJSON *j, diffcl_diffusion_options *o)
{
    const char *sch = dc_json_str(j, "schedule"), *tgt = dc_json_str(j, "target");
    if (!dc_json_int(j, "dims", &o->dims) || !dc_json_int(j, "in_channels", &o->in_channels) ||
        !dc_json_int(j, "n_classes", &o->n_classes) ||
        !dc_json_int(j, "n_filters", &o->n_filters) ||
        !dc_norm_from_name(dc_json_str(j, "normalization"), &o->normalization) ||
        !dc_json_num(j, "stage_dropout", &o->stage_dropout) ||
        !dc_json_int(j, "has_dropout", &o->has_dropout) ||
        !dc_json_num(j, "dropout_p", &o->dropout_p) ||
        !dc_json_int(j, "timesteps", &o->timesteps) ||
        !dc_json_int(j, "time_embed_dim", &o->time_embed_dim) ||
        !dc_json_int(j, "time_hidden_dim", &o->time_hidden_dim) || !sch || !tgt ||
        (strcmp(sch, "cosine") && strcmp(sch, "linear")) ||
        (strcmp(tgt, "epsilon") && strcmp(tgt, "x0")))
        return DIFFCL_ERR_FORMAT;
    o->schedule = !strcmp(sch, "cosine") ? DIFFCL_BETA_COSINE : DIFFCL_BETA_LINEAR;
    o->target =
        !strcmp(tgt, "epsilon") ? DIFFCL_DIFFUSION_PREDICT_EPSILON : DIFFCL_DIFFUSION_PREDICT_X0;
    const char *seed = dc_json_str(j, "seed"); /* absent in files of 0.1.0: the default */
    if (seed) o->seed = strtoull(seed, NULL, 10);
    return DIFFCL_OK;
}

static diffcl_status diffusion_build(diffcl_context *ctx, const cJSON *j,
                                     const diffcl_tensor_dict *d, const char *prefix,
                                     const char *path, diffcl_module **out)
{
    diffcl_diffusion_options o = DIFFCL_DIFFUSION_OPTIONS_INIT;
    if (diffusion_options_from_json(j, &o) != DIFFCL_OK)
        return dc_error(DIFFCL_ERR_FORMAT, "%s: incomplete or invalid denoiser configuration",
                        path);
    /* the sizes that make the network large, against the file, before anything is built: the
     * input conv (image + noised label channels), the output conv, and the time MLP (a forged
     * time_hidden_dim alone would otherwise make a network of any size; dims 0: a matrix) */
    DC_TRY(dc_check_saved_weight(d, prefix, "embedding_diffusion.emb.ops.0.conv.weight", o.dims,
                                 o.n_filters, (int64_t)o.in_channels + o.n_classes, path));
    DC_TRY(dc_check_saved_weight(d, prefix, "decoder.out_conv.weight", o.dims, o.n_classes,
                                 o.n_filters, path));
    DC_TRY(dc_check_saved_weight(d, prefix, "embedding_diffusion.temb.dense.0.weight", 0,
                                 o.time_hidden_dim, o.time_embed_dim, path));
    DC_TRY(dc_check_saved_weight(d, prefix, "embedding_diffusion.temb.dense.1.weight", 0,
                                 o.time_hidden_dim, o.time_hidden_dim, path));
    return diffcl_diffusion_create(ctx, &o, out);
}

const dc_model_codec dc_diffusion_codec = {"diffusion", diffusion_owns, diffusion_to_json,
                                           diffusion_build};
