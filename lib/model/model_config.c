/* Helpers for the configurations that model files carry as JSON ("diffcl.model"): typed field
 * reads, normalisation names, and the check of a configuration against the saved weights. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "model/model_internal.h"
#include "serial/tensor_dict_internal.h"

int dc_json_num(const cJSON *j, const char *key, double *v)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsNumber(x)) return 0;
    *v = x->valuedouble;
    return 1;
}

int dc_json_int(const cJSON *j, const char *key, int *v)
{
    double d;
    /* an integral value in int's range: 2.5 or 1e300 is a corrupt file, not 2 or INT_MAX */
    if (!dc_json_num(j, key, &d) || d != floor(d) || d < -2147483648.0 || d > 2147483647.0)
        return 0;
    *v = (int)d;
    return 1;
}

const char *dc_json_str(const cJSON *j, const char *key)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsString(x) ? x->valuestring : NULL;
}

const char *dc_norm_name(diffcl_norm_kind k)
{
    switch (k) {
    case DIFFCL_NORM_NONE: return "none";
    case DIFFCL_NORM_BATCH: return "batchnorm";
    case DIFFCL_NORM_INSTANCE: return "instancenorm";
    case DIFFCL_NORM_GROUP: return "groupnorm";
    case DIFFCL_NORM_LAYER: return "layernorm";
    }
    return NULL;
}

int dc_norm_from_name(const char *s, diffcl_norm_kind *k)
{
    static const diffcl_norm_kind kinds[] = {DIFFCL_NORM_NONE, DIFFCL_NORM_BATCH,
                                             DIFFCL_NORM_INSTANCE, DIFFCL_NORM_GROUP,
                                             DIFFCL_NORM_LAYER};
    for (size_t i = 0; s && i < sizeof kinds / sizeof kinds[0]; i++)
        if (!strcmp(s, dc_norm_name(kinds[i]))) {
            *k = kinds[i];
            return 1;
        }
    return 0;
}

diffcl_status dc_check_saved_weight(const diffcl_tensor_dict *dict, const char *prefix,
                                    const char *name, int dims, int64_t out, int64_t in,
                                    const char *path)
{
    char key[256];
    snprintf(key, sizeof key, "%s%s", prefix ? prefix : "", name);
    const diffcl_tensor *w = diffcl_tensor_dict_get(dict, key);
    if (!w)
        return dc_error(DIFFCL_ERR_FORMAT,
                        "%s: the configuration does not match the weights: no '%s'", path, key);
    if (w->ndim != dims + 2 || w->shape[0] != out || w->shape[1] != in)
        return dc_error(DIFFCL_ERR_FORMAT,
                        "%s: the configuration does not match the weights: '%s' is %s, the "
                        "configuration wants [%lld,%lld,...] with %d axes",
                        path, key, dc_shape_str(w), (long long)out, (long long)in, dims + 2);
    return DIFFCL_OK;
}
