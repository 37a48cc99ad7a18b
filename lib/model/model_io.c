/* Checkpoints that carry their model's configuration ("diffcl.model" metadata, JSON). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "diffcl/diffusion.h"
#include "diffcl/model.h"
#include "layer/module_internal.h"
#include "model/diffusion_internal.h"
#include "model/model_internal.h"

const char *dc_norm_name(diffcl_norm_kind k)
{
    switch (k) {
    case DIFFCL_NORM_BATCH: return "batchnorm";
    case DIFFCL_NORM_INSTANCE: return "instancenorm";
    case DIFFCL_NORM_GROUP: return "groupnorm";
    default: return "none";
    }
}

int dc_norm_from_name(const char *s, diffcl_norm_kind *k)
{
    if (!strcmp(s, "batchnorm")) *k = DIFFCL_NORM_BATCH;
    else if (!strcmp(s, "instancenorm")) *k = DIFFCL_NORM_INSTANCE;
    else if (!strcmp(s, "groupnorm")) *k = DIFFCL_NORM_GROUP;
    else if (!strcmp(s, "none")) *k = DIFFCL_NORM_NONE;
    else return 0;
    return 1;
}

/* The JSON configuration of a model, or NULL (error set) for models without one. */
char *dc_model_config_json(const diffcl_module *m)
{
    if (!dc_is_vnet(m)) {
        dc_error(DIFFCL_ERR_UNSUPPORTED, "diffcl_model_save: a %s module has no saved configuration",
                 diffcl_module_type(m));
        return NULL;
    }
    diffcl_vnet_options o = DIFFCL_VNET_OPTIONS_INIT;
    diffcl_vnet_get_options(m, &o);
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    cJSON_AddStringToObject(j, "type", "vnet");
    cJSON_AddNumberToObject(j, "dims", o.dims);
    cJSON_AddNumberToObject(j, "in_channels", o.in_channels);
    cJSON_AddNumberToObject(j, "n_classes", o.n_classes);
    cJSON_AddNumberToObject(j, "n_filters", o.n_filters);
    cJSON_AddStringToObject(j, "normalization", dc_norm_name(o.normalization));
    cJSON_AddNumberToObject(j, "has_dropout", o.has_dropout);
    cJSON_AddNumberToObject(j, "dropout_p", o.dropout_p);
    cJSON_AddNumberToObject(j, "hf_mamba_levels", o.hf_mamba_levels);
    if (o.hfm_border) cJSON_AddNumberToObject(j, "hfm_border", o.hfm_border); /* absent: periodic (0.1.0) */
    char seed[32]; /* a string: JSON numbers are doubles, exact only up to 2^53 */
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)o.seed);
    cJSON_AddStringToObject(j, "seed", seed);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!s) dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "diffcl_model_save: out of memory");
    return s;
}

diffcl_status diffcl_model_save(const diffcl_module *m, const char *path)
{
    if (m && !strcmp(diffcl_module_type(m), "diffusion")) return diffcl_diffusion_save(m, path); /* as load reads */
    DC_CHECK_ARG(m && path, "diffcl_model_save: NULL argument");
    char *cfg = dc_model_config_json(m);
    if (!cfg) return DIFFCL_ERR_UNSUPPORTED;
    const char *keys[2] = {"diffcl.model", "diffcl.version"};
    const char *vals[2] = {cfg, DIFFCL_VERSION_STRING};
    diffcl_status s = diffcl_module_save(m, path, keys, vals, 2);
    free(cfg);
    return s;
}

diffcl_status dc_check_saved_weight(const diffcl_tensor_dict *dict, const char *prefix, const char *name,
                                    int dims, int64_t out, int64_t in, const char *path)
{
    char key[256];
    snprintf(key, sizeof key, "%s%s", prefix ? prefix : "", name);
    const diffcl_tensor *w = diffcl_tensor_dict_get(dict, key);
    if (!w)
        return dc_error(DIFFCL_ERR_FORMAT, "%s: the configuration does not match the weights: no '%s'", path, key);
    if (w->ndim != dims + 2 || w->shape[0] != out || w->shape[1] != in)
        return dc_error(DIFFCL_ERR_FORMAT, "%s: the configuration does not match the weights: '%s' is %s, the "
                                           "configuration wants [%lld,%lld,...] with %d axes", path, key,
                        dc_shape_str(w), (long long)out, (long long)in, dims + 2);
    return DIFFCL_OK;
}

static int get_int(const cJSON *j, const char *key, int *v)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsNumber(x)) return 0;
    *v = x->valueint;
    return 1;
}

diffcl_status dc_model_from_dict(diffcl_context *ctx, const diffcl_tensor_dict *d, const char *path,
                                 diffcl_module **out)
{
    *out = NULL;
    const char *cfg = diffcl_tensor_dict_get_meta(d, "diffcl.model");
    diffcl_status s = DIFFCL_OK;
    cJSON *j = cfg ? cJSON_Parse(cfg) : NULL;
    diffcl_vnet_options o = DIFFCL_VNET_OPTIONS_INIT;
    if (!cfg) {
        s = dc_error(DIFFCL_ERR_FORMAT, "%s: no \"diffcl.model\" metadata; load the weights into a model "
                                        "you create with diffcl_module_load()", path);
    } else if (!j) {
        s = dc_error(DIFFCL_ERR_FORMAT, "%s: \"diffcl.model\" metadata is not valid JSON", path);
    } else {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(j, "type");
        const cJSON *norm = cJSON_GetObjectItemCaseSensitive(j, "normalization");
        const cJSON *dp = cJSON_GetObjectItemCaseSensitive(j, "dropout_p");
        int levels = 0;
        if (cJSON_IsString(type) && !strcmp(type->valuestring, "diffusion")) {
            /* the diffusion denoiser reads its own configuration */
            cJSON_Delete(j);
            return dc_diffusion_from_dict(ctx, d, cfg, NULL, path, out);
        }
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "vnet"))
            s = dc_error(DIFFCL_ERR_UNSUPPORTED, "%s: model type %s is not supported", path,
                         cJSON_IsString(type) ? type->valuestring : "(missing)");
        else if (!get_int(j, "dims", &o.dims) || !get_int(j, "in_channels", &o.in_channels) ||
                 !get_int(j, "n_classes", &o.n_classes) || !get_int(j, "n_filters", &o.n_filters) ||
                 !get_int(j, "has_dropout", &o.has_dropout) || !cJSON_IsString(norm) ||
                 !dc_norm_from_name(norm->valuestring, &o.normalization) || !cJSON_IsNumber(dp) ||
                 !get_int(j, "hf_mamba_levels", &levels))
            s = dc_error(DIFFCL_ERR_FORMAT, "%s: incomplete or invalid V-Net configuration: %s", path, cfg);
        else {
            o.dropout_p = dp->valuedouble;
            o.hf_mamba_levels = (unsigned)levels;
            int border = 0;
            if (cJSON_GetObjectItemCaseSensitive(j, "hfm_border") && !get_int(j, "hfm_border", &border))
                s = dc_error(DIFFCL_ERR_FORMAT, "%s: invalid hfm_border in %s", path, cfg);
            o.hfm_border = border;
            const cJSON *seed = cJSON_GetObjectItemCaseSensitive(j, "seed"); /* absent before 0.2 */
            if (cJSON_IsString(seed)) o.seed = strtoull(seed->valuestring, NULL, 10);
        }
    }
    cJSON_Delete(j);
    diffcl_module *m = NULL;
    const char *prefix = diffcl_tensor_dict_get_meta(d, "diffcl.model_prefix");
    if (s == DIFFCL_OK)
        s = dc_check_saved_weight(d, prefix, "block_one.conv.0.weight", o.dims, o.n_filters, o.in_channels, path);
    if (s == DIFFCL_OK) s = dc_check_saved_weight(d, prefix, "out_conv.weight", o.dims, o.n_classes, o.n_filters, path);
    if (s == DIFFCL_OK) s = diffcl_vnet_create(ctx, &o, &m);
    if (s == DIFFCL_OK) {
        /* a trainer checkpoint holds the model under a prefix next to other state */
        diffcl_load_options lo = DIFFCL_LOAD_OPTIONS_INIT;
        int missing = 0;
        const char *skip = NULL;
        if (prefix) { /* a trainer checkpoint: the CS under its prefix, next to other state */
            lo.prefix = prefix;
            lo.strict = 0;
        } else if (diffcl_tensor_dict_get_meta(d, "diffcl.ds_model")) {
            skip = "ds."; /* a Diff-CL model file: the CS, and the DS under "ds." */
        }
        s = dc_module_load_state_dict_skip(m, d, &lo, skip, &missing, NULL);
        if (s == DIFFCL_OK && missing)
            s = dc_error(DIFFCL_ERR_NOT_FOUND, "%d model tensors are missing", missing);
        if (s != DIFFCL_OK) dc_error_prefix("%s", path);
    }
    if (s != DIFFCL_OK) {
        diffcl_module_free(m);
        return s;
    }
    diffcl_module_train(m, 0);
    *out = m;
    return DIFFCL_OK;
}

diffcl_status diffcl_model_load(diffcl_context *ctx, const char *path, diffcl_module **out)
{
    DC_CHECK_ARG(out, "diffcl_model_load: out is NULL");
    *out = NULL;
    DC_CHECK_ARG(ctx && path, "diffcl_model_load: NULL argument");
    diffcl_tensor_dict *d = NULL;
    DC_TRY(diffcl_safetensors_load(ctx, path, &d));
    diffcl_status s = dc_model_from_dict(ctx, d, path, out);
    diffcl_tensor_dict_free(d);
    return s;
}
