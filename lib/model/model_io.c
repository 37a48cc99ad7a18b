/* diffcl_model_save / diffcl_model_load: model files that carry their network's configuration
 * ("diffcl.model" metadata, JSON), written and read through the codec table of model_codec.c. */
#include <stdlib.h>

#include "diffcl/model.h"
#include "layer/module_internal.h"
#include "model/model_internal.h"

diffcl_status diffcl_model_save(const diffcl_module *m, const char *path)
{
    DC_CHECK_ARG(m && path, "diffcl_model_save: NULL argument");
    char *cfg = NULL;
    diffcl_status s = dc_model_encode(m, &cfg);
    if (s != DIFFCL_OK) {
        dc_error_prefix("diffcl_model_save");
        return s;
    }
    const char *keys[2] = {"diffcl.model", "diffcl.version"};
    const char *vals[2] = {cfg, DIFFCL_VERSION_STRING};
    s = diffcl_module_save(m, path, keys, vals, 2);
    free(cfg);
    return s;
}

diffcl_status dc_model_from_dict(diffcl_context *ctx, const diffcl_tensor_dict *d, const char *path,
                                 diffcl_module **out)
{
    /* a trainer checkpoint holds the model under a prefix next to other state; a Diff-CL model
     * file holds the CS at the top and its DS under "ds." */
    const char *prefix = diffcl_tensor_dict_get_meta(d, "diffcl.model_prefix");
    const char *skip = !prefix && diffcl_tensor_dict_get_meta(d, "diffcl.ds_model") ? "ds." : NULL;
    return dc_model_decode(ctx, d, diffcl_tensor_dict_get_meta(d, "diffcl.model"), NULL, prefix,
                           skip, path, out);
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
