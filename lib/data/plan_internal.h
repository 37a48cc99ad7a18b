/* The preprocessing plan inside the library (plan.c). Not exported. */
#ifndef DIFFCL_PLAN_INTERNAL_H
#define DIFFCL_PLAN_INTERNAL_H

#include <cjson/cJSON.h>

#include "diffcl/plan.h"

/* The string member @p key of JSON object @p o, or NULL. */
const char *dc_json_str_item(const cJSON *o, const char *key);
/* The "diffcl.plan" metadata of safetensors file @p path, read from its header alone, as a
 * malloc'ed string; DIFFCL_ERR_NOT_FOUND when it has none. */
diffcl_status dc_plan_load_json(const char *path, char **json);

#endif
