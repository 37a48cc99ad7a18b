/* Insertion-ordered name -> tensor dictionary with string metadata. */
#include <stdlib.h>
#include <string.h>

#include "serial/tensor_dict_internal.h"

diffcl_status diffcl_tensor_dict_new(diffcl_context *ctx, diffcl_tensor_dict **out)
{
    DC_CHECK_ARG(out, "diffcl_tensor_dict_new: out is NULL");
    *out = dc_calloc_raw(1, sizeof **out);
    if (!*out) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "diffcl_tensor_dict_new: out of memory");
    (*out)->ctx = ctx;
    return DIFFCL_OK;
}

void diffcl_tensor_dict_free(diffcl_tensor_dict *d)
{
    if (!d) return;
    for (int i = 0; i < d->n; i++) {
        free(d->names[i]);
        diffcl_tensor_free(d->tensors[i]);
    }
    for (int i = 0; i < d->n_meta; i++) {
        free(d->meta_keys[i]);
        free(d->meta_values[i]);
    }
    free(d->names);
    free(d->tensors);
    free(d->meta_keys);
    free(d->meta_values);
    free(d);
}

static int find(const diffcl_tensor_dict *d, const char *name)
{
    for (int i = 0; i < d->n; i++)
        if (!strcmp(d->names[i], name)) return i;
    return -1;
}

diffcl_status diffcl_tensor_dict_set(diffcl_tensor_dict *d, const char *name, diffcl_tensor *t)
{
    DC_CHECK_ARG(d && name && t, "diffcl_tensor_dict_set: NULL argument");
    int i = find(d, name);
    if (i >= 0) {
        diffcl_tensor *old = d->tensors[i];
        d->tensors[i] = diffcl_tensor_retain(t);
        diffcl_tensor_free(old);
        return DIFFCL_OK;
    }
    if (d->n == d->cap) {
        int cap = d->cap ? d->cap * 2 : 16;
        char **nn = dc_realloc(d->names, (size_t)cap * sizeof *nn);
        if (nn) d->names = nn;
        diffcl_tensor **tt = nn ? dc_realloc(d->tensors, (size_t)cap * sizeof *tt) : NULL;
        if (!tt) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "diffcl_tensor_dict_set: out of memory");
        d->tensors = tt;
        d->cap = cap;
    }
    char *copy = dc_strdup(name);
    if (!copy) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "diffcl_tensor_dict_set: out of memory");
    d->names[d->n] = copy;
    d->tensors[d->n] = diffcl_tensor_retain(t);
    d->n++;
    return DIFFCL_OK;
}

diffcl_tensor *diffcl_tensor_dict_get(const diffcl_tensor_dict *d, const char *name)
{
    if (!d || !name) return NULL;
    int i = find(d, name);
    return i >= 0 ? d->tensors[i] : NULL;
}

diffcl_status diffcl_tensor_dict_remove(diffcl_tensor_dict *d, const char *name)
{
    DC_CHECK_ARG(d && name, "diffcl_tensor_dict_remove: NULL argument");
    int i = find(d, name);
    if (i < 0)
        return dc_error(DIFFCL_ERR_NOT_FOUND, "diffcl_tensor_dict_remove: no tensor named %s",
                        name);
    free(d->names[i]);
    diffcl_tensor_free(d->tensors[i]);
    memmove(d->names + i, d->names + i + 1, (size_t)(d->n - i - 1) * sizeof *d->names);
    memmove(d->tensors + i, d->tensors + i + 1, (size_t)(d->n - i - 1) * sizeof *d->tensors);
    d->n--;
    return DIFFCL_OK;
}

int diffcl_tensor_dict_size(const diffcl_tensor_dict *d)
{
    return d ? d->n : 0;
}

const char *diffcl_tensor_dict_name(const diffcl_tensor_dict *d, int i)
{
    return (d && i >= 0 && i < d->n) ? d->names[i] : NULL;
}

diffcl_tensor *diffcl_tensor_dict_at(const diffcl_tensor_dict *d, int i)
{
    return (d && i >= 0 && i < d->n) ? d->tensors[i] : NULL;
}

diffcl_status diffcl_tensor_dict_set_meta(diffcl_tensor_dict *d, const char *key, const char *value)
{
    DC_CHECK_ARG(d && key && value, "diffcl_tensor_dict_set_meta: NULL argument");
    char *v = dc_strdup(value);
    if (!v) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "diffcl_tensor_dict_set_meta: out of memory");
    for (int i = 0; i < d->n_meta; i++)
        if (!strcmp(d->meta_keys[i], key)) {
            free(d->meta_values[i]);
            d->meta_values[i] = v;
            return DIFFCL_OK;
        }
    char **k = dc_realloc(d->meta_keys, (size_t)(d->n_meta + 1) * sizeof *k);
    if (k) d->meta_keys = k;
    char **vv = k ? dc_realloc(d->meta_values, (size_t)(d->n_meta + 1) * sizeof *vv) : NULL;
    char *kc = vv ? dc_strdup(key) : NULL;
    if (vv) d->meta_values = vv;
    if (!kc) {
        free(v);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "diffcl_tensor_dict_set_meta: out of memory");
    }
    d->meta_keys[d->n_meta] = kc;
    d->meta_values[d->n_meta] = v;
    d->n_meta++;
    return DIFFCL_OK;
}

const char *diffcl_tensor_dict_get_meta(const diffcl_tensor_dict *d, const char *key)
{
    if (!d || !key) return NULL;
    for (int i = 0; i < d->n_meta; i++)
        if (!strcmp(d->meta_keys[i], key)) return d->meta_values[i];
    return NULL;
}

int diffcl_tensor_dict_meta_count(const diffcl_tensor_dict *d)
{
    return d ? d->n_meta : 0;
}

const char *diffcl_tensor_dict_meta_key(const diffcl_tensor_dict *d, int i)
{
    return (d && i >= 0 && i < d->n_meta) ? d->meta_keys[i] : NULL;
}
