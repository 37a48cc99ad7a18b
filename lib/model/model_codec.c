/* Model files: which network a file holds and how to rebuild it. One table, one entry per kind
 * of network (its JSON "type"); saving finds the entry that owns the module, loading dispatches
 * once on the type of the configuration already read with the dictionary. */
#include <string.h>

#include "model/model_internal.h"
#include "layer/module_internal.h"

static const dc_model_codec *const codecs[] = {&dc_vnet_codec, &dc_diffusion_codec};
enum { N_CODECS = sizeof codecs / sizeof codecs[0] };

diffcl_status dc_model_encode(const diffcl_module *m, char **out)
{
    *out = NULL;
    const dc_model_codec *c = NULL;
    for (int i = 0; i < N_CODECS && !c; i++)
        if (codecs[i]->owns(m)) c = codecs[i];
    if (!c)
        return dc_error(DIFFCL_ERR_UNSUPPORTED, "a %s module has no saved configuration",
                        m ? diffcl_module_type(m) : "NULL");
    cJSON *j = cJSON_CreateObject();
    diffcl_status s = j && cJSON_AddStringToObject(j, "type", c->type) ? c->to_json(m, j)
                                                                       : DIFFCL_ERR_OUT_OF_MEMORY;
    if (s == DIFFCL_OK) *out = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (s == DIFFCL_ERR_OUT_OF_MEMORY || (s == DIFFCL_OK && !*out))
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "saving a model configuration: out of memory");
    return s;
}

diffcl_status dc_model_decode(diffcl_context *ctx, const diffcl_tensor_dict *d, const char *cfg,
                              const char *want_type, const char *prefix, const char *skip,
                              const char *path, diffcl_module **out)
{
    *out = NULL;
    if (!cfg)
        return dc_error(DIFFCL_ERR_FORMAT,
                        "%s: no \"diffcl.model\" metadata; load the weights into a model "
                        "you create with diffcl_module_load()",
                        path);
    cJSON *j = cJSON_Parse(cfg);
    if (!j)
        return dc_error(DIFFCL_ERR_FORMAT, "%s: the model configuration is not valid JSON", path);
    const char *type = dc_json_str(j, "type");
    const dc_model_codec *c = NULL;
    for (int i = 0; type && i < N_CODECS && !c; i++)
        if (!strcmp(type, codecs[i]->type)) c = codecs[i];
    diffcl_status s = DIFFCL_OK;
    if (!c)
        s = dc_error(DIFFCL_ERR_UNSUPPORTED, "%s: model type %s is not supported", path,
                     type ? type : "(missing)");
    else if (want_type && strcmp(type, want_type))
        s = dc_error(DIFFCL_ERR_FORMAT, "%s: the model is a %s, not a %s", path, type, want_type);
    diffcl_module *m = NULL;
    if (s == DIFFCL_OK) s = c->build(ctx, j, d, prefix, path, &m);
    cJSON_Delete(j);
    if (s == DIFFCL_OK) {
        /* under a prefix (a checkpoint, or the DS of a Diff-CL file) the file holds other
         * entries too, but every tensor of the model must be there */
        diffcl_load_options lo = DIFFCL_LOAD_OPTIONS_INIT;
        if (prefix) {
            lo.prefix = prefix;
            lo.strict = 0;
        }
        int missing = 0;
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
