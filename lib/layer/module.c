/* The module tree: registration, flattened naming, modes, state dictionaries. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer/module_internal.h"

diffcl_module *dc_module_new(diffcl_context *ctx, const dc_module_vtable *vt, void *impl)
{
    diffcl_module *m = dc_calloc_raw(1, sizeof *m);
    if (!m) {
        if (impl && vt->free_impl) vt->free_impl(impl);
        dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "out of memory creating a %s module", vt->type);
        return NULL;
    }
    m->ctx = ctx;
    m->vt = vt;
    m->impl = impl;
    m->training = 1;
    return m;
}

static void invalidate(diffcl_module *m)
{
    for (; m; m = m->parent) m->flat_valid = 0;
}

static diffcl_status add_entry(diffcl_module *m, dc_entry **arr, int *n, const char *name,
                               diffcl_tensor *t)
{
    dc_entry *a = dc_realloc(*arr, (size_t)(*n + 1) * sizeof *a);
    char *nm = dc_strdup(name);
    if (!a || !nm) {
        if (a) *arr = a;
        free(nm);
        diffcl_tensor_free(t);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "out of memory registering %s", name);
    }
    a[*n].name = nm;
    a[*n].t = t;
    *arr = a;
    (*n)++;
    invalidate(m);
    return DIFFCL_OK;
}

diffcl_status dc_module_add_param(diffcl_module *m, const char *name, diffcl_tensor *t)
{
    if (!t) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "parameter %s was not created", name);
    diffcl_status s = diffcl_tensor_set_requires_grad(t, 1);
    if (s != DIFFCL_OK) {
        diffcl_tensor_free(t);
        return s;
    }
    return add_entry(m, &m->params, &m->n_params, name, t);
}

diffcl_status dc_module_add_buffer(diffcl_module *m, const char *name, diffcl_tensor *t)
{
    if (!t) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "buffer %s was not created", name);
    return add_entry(m, &m->buffers, &m->n_buffers, name, t);
}

diffcl_status dc_module_add_child(diffcl_module *m, const char *name, diffcl_module *child)
{
    if (!child) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "child module %s was not created", name);
    dc_child *a = dc_realloc(m->children, (size_t)(m->n_children + 1) * sizeof *a);
    char *nm = dc_strdup(name);
    if (!a || !nm) {
        if (a) m->children = a;
        free(nm);
        diffcl_module_free(child);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "out of memory registering %s", name);
    }
    a[m->n_children].name = nm;
    a[m->n_children].m = child;
    m->children = a;
    m->n_children++;
    child->parent = m;
    child->training = m->training;
    invalidate(m);
    return DIFFCL_OK;
}

diffcl_tensor *dc_module_param(const diffcl_module *m, const char *name)
{
    for (int i = 0; i < m->n_params; i++)
        if (!strcmp(m->params[i].name, name)) return m->params[i].t;
    return NULL;
}

diffcl_tensor *dc_module_buffer(const diffcl_module *m, const char *name)
{
    for (int i = 0; i < m->n_buffers; i++)
        if (!strcmp(m->buffers[i].name, name)) return m->buffers[i].t;
    return NULL;
}

diffcl_module *dc_module_get_child(const diffcl_module *m, const char *name)
{
    for (int i = 0; i < m->n_children; i++)
        if (!strcmp(m->children[i].name, name)) return m->children[i].m;
    return NULL;
}

diffcl_status dc_module_run(diffcl_module *child, const diffcl_tensor *x, diffcl_tensor **out)
{
    if (!child) {
        *out = diffcl_tensor_retain((diffcl_tensor *)x);
        return DIFFCL_OK;
    }
    return diffcl_module_forward(child, x, out);
}

static void free_flat(diffcl_module *m)
{
    for (int i = 0; i < m->n_flat; i++) free(m->flat[i].name);
    free(m->flat);
    m->flat = NULL;
    m->n_flat = 0;
    m->flat_valid = 0;
}

void diffcl_module_free(diffcl_module *m)
{
    if (!m) return;
    for (int i = 0; i < m->n_params; i++) {
        free(m->params[i].name);
        diffcl_tensor_free(m->params[i].t);
    }
    for (int i = 0; i < m->n_buffers; i++) {
        free(m->buffers[i].name);
        diffcl_tensor_free(m->buffers[i].t);
    }
    for (int i = 0; i < m->n_children; i++) {
        free(m->children[i].name);
        diffcl_module_free(m->children[i].m);
    }
    free(m->params);
    free(m->buffers);
    free(m->children);
    free_flat(m);
    if (m->impl && m->vt->free_impl) m->vt->free_impl(m->impl);
    free(m);
}

const char *diffcl_module_type(const diffcl_module *m)
{
    return m ? m->vt->type : NULL;
}

diffcl_context *diffcl_module_context(const diffcl_module *m)
{
    return m ? m->ctx : NULL;
}

diffcl_status diffcl_module_forward(diffcl_module *m, const diffcl_tensor *x, diffcl_tensor **out)
{
    DC_CHECK_ARG(out, "diffcl_module_forward: out is NULL");
    *out = NULL;
    DC_CHECK_ARG(m, "diffcl_module_forward: module is NULL");
    DC_CHECK_TENSOR(x, "diffcl_module_forward");
    if (!m->vt->forward)
        return dc_error(DIFFCL_ERR_UNSUPPORTED,
                        "diffcl_module_forward: a %s module needs its own "
                        "forward function",
                        m->vt->type);
    return m->vt->forward(m, x, out);
}

void diffcl_module_train(diffcl_module *m, int training)
{
    if (!m) return;
    m->training = training != 0;
    for (int i = 0; i < m->n_children; i++) diffcl_module_train(m->children[i].m, training);
}

int diffcl_module_is_training(const diffcl_module *m)
{
    return m ? m->training : 0;
}

void diffcl_module_set_step(diffcl_module *m, uint32_t step)
{
    if (!m) return;
    m->step = step;
    m->calls = 0;
    for (int i = 0; i < m->n_children; i++) diffcl_module_set_step(m->children[i].m, step);
}

void dc_module_set_samples(diffcl_module *m, const uint32_t *samples, int64_t n)
{
    if (!m) return;
    m->samples = samples;
    m->n_samples = samples ? n : 0;
    for (int i = 0; i < m->n_children; i++) dc_module_set_samples(m->children[i].m, samples, n);
}

/* Count (pass 0) or convert (pass 1) the floating entries of a tree. */
static diffcl_status convert_entries(diffcl_module *m, diffcl_dtype dtype, int is_param,
                                     dc_entry *arr, int n)
{
    for (int i = 0; i < n; i++) {
        diffcl_tensor *t = arr[i].t;
        if (!dc_is_float(t->dtype) || t->dtype == dtype) continue;
        diffcl_tensor *c = dc_tensor_empty(t->ctx, dtype, t->ndim, t->shape);
        if (!c) return DIFFCL_ERR_OUT_OF_MEMORY;
        dc_copy_into(c, t);
        if (is_param) c->requires_grad = 1;
        diffcl_tensor_free(t);
        arr[i].t = c;
    }
    (void)m;
    return DIFFCL_OK;
}

static diffcl_status convert_tree(diffcl_module *m, diffcl_dtype dtype)
{
    DC_TRY(convert_entries(m, dtype, 1, m->params, m->n_params));
    DC_TRY(convert_entries(m, dtype, 0, m->buffers, m->n_buffers));
    for (int i = 0; i < m->n_children; i++) DC_TRY(convert_tree(m->children[i].m, dtype));
    m->flat_valid = 0;
    return DIFFCL_OK;
}

/* Bytes a conversion needs, to fail before touching anything. */
static size_t convert_bytes(const diffcl_module *m, diffcl_dtype dtype)
{
    size_t b = 0;
    for (int i = 0; i < m->n_params; i++)
        if (dc_is_float(m->params[i].t->dtype) && m->params[i].t->dtype != dtype)
            b += (size_t)dc_numel(m->params[i].t) * diffcl_dtype_size(dtype);
    for (int i = 0; i < m->n_buffers; i++)
        if (dc_is_float(m->buffers[i].t->dtype) && m->buffers[i].t->dtype != dtype)
            b += (size_t)dc_numel(m->buffers[i].t) * diffcl_dtype_size(dtype);
    for (int i = 0; i < m->n_children; i++) b += convert_bytes(m->children[i].m, dtype);
    return b;
}

diffcl_status diffcl_module_to_dtype(diffcl_module *m, diffcl_dtype dtype)
{
    DC_CHECK_ARG(m, "diffcl_module_to_dtype: module is NULL");
    if (!dc_is_float(dtype))
        return dc_error(DIFFCL_ERR_DTYPE, "diffcl_module_to_dtype: %s is not f32 or f64",
                        diffcl_dtype_name(dtype));
    /* probe that the whole conversion fits, so a failure cannot leave a half-converted tree */
    size_t need = convert_bytes(m, dtype);
    void *probe = need ? dc_alloc(m->ctx, need) : NULL;
    if (need && !probe) return DIFFCL_ERR_OUT_OF_MEMORY;
    dc_free(m->ctx, probe, need);
    diffcl_status s = convert_tree(m, dtype);
    for (diffcl_module *p = m; p; p = p->parent) p->flat_valid = 0;
    return s;
}

void diffcl_module_zero_grad(diffcl_module *m)
{
    if (!m) return;
    for (int i = 0; i < m->n_params; i++) diffcl_tensor_zero_grad(m->params[i].t);
    for (int i = 0; i < m->n_children; i++) diffcl_module_zero_grad(m->children[i].m);
}

/* Append the entries of `m` under `prefix` to the flat list of `root`. */
static int flatten(diffcl_module *root, const diffcl_module *m, const char *prefix, int *cap)
{
    for (int pass = 0; pass < 2; pass++) {
        const dc_entry *arr = pass == 0 ? m->params : m->buffers;
        int n = pass == 0 ? m->n_params : m->n_buffers;
        for (int i = 0; i < n; i++) {
            if (root->n_flat == *cap) {
                int nc = *cap ? *cap * 2 : 32;
                dc_flat_entry *f = dc_realloc(root->flat, (size_t)nc * sizeof *f);
                if (!f) return 0;
                root->flat = f;
                *cap = nc;
            }
            size_t len = strlen(prefix) + strlen(arr[i].name) + 2;
            char *name = dc_malloc(len);
            if (!name) return 0;
            snprintf(name, len, "%s%s%s", prefix, *prefix ? "." : "", arr[i].name);
            root->flat[root->n_flat].name = name;
            root->flat[root->n_flat].t = arr[i].t;
            root->flat[root->n_flat].is_param = pass == 0;
            root->n_flat++;
        }
    }
    for (int i = 0; i < m->n_children; i++) {
        size_t len = strlen(prefix) + strlen(m->children[i].name) + 2;
        char *p = dc_malloc(len);
        if (!p) return 0;
        snprintf(p, len, "%s%s%s", prefix, *prefix ? "." : "", m->children[i].name);
        int ok = flatten(root, m->children[i].m, p, cap);
        free(p);
        if (!ok) return 0;
    }
    return 1;
}

static int ensure_flat(const diffcl_module *cm)
{
    diffcl_module *m = (diffcl_module *)cm; /* the cache is logically const */
    if (m->flat_valid) return 1;
    free_flat(m);
    int cap = 0;
    if (!flatten(m, m, "", &cap)) {
        free_flat(m);
        dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "out of memory listing module entries");
        return 0;
    }
    m->flat_valid = 1;
    return 1;
}

static int kind_matches(const dc_flat_entry *e, int kinds)
{
    return (e->is_param && (kinds & DIFFCL_STATE_PARAMS)) ||
           (!e->is_param && (kinds & DIFFCL_STATE_BUFFERS));
}

diffcl_status dc_module_state_count(const diffcl_module *m, int kinds, int *n)
{
    *n = 0;
    if (!m) return DIFFCL_OK;
    if (!ensure_flat(m)) return DIFFCL_ERR_OUT_OF_MEMORY; /* error set by the listing */
    *n = diffcl_module_state_count(m, kinds);
    return DIFFCL_OK;
}

int diffcl_module_state_count(const diffcl_module *m, int kinds)
{
    if (!m || !ensure_flat(m)) return 0;
    int n = 0;
    for (int i = 0; i < m->n_flat; i++) n += kind_matches(&m->flat[i], kinds);
    return n;
}

diffcl_status diffcl_module_state_entry(const diffcl_module *m, int kinds, int i, const char **name,
                                        diffcl_tensor **t, int *is_param)
{
    DC_CHECK_ARG(m, "diffcl_module_state_entry: module is NULL");
    if (!ensure_flat(m)) return DIFFCL_ERR_OUT_OF_MEMORY;
    for (int k = 0, seen = 0; k < m->n_flat; k++) {
        if (!kind_matches(&m->flat[k], kinds)) continue;
        if (seen++ == i) {
            if (name) *name = m->flat[k].name;
            if (t) *t = m->flat[k].t;
            if (is_param) *is_param = m->flat[k].is_param;
            return DIFFCL_OK;
        }
    }
    return dc_error(DIFFCL_ERR_INVALID_ARGUMENT, "diffcl_module_state_entry: index %d out of range",
                    i);
}

diffcl_tensor *diffcl_module_find(const diffcl_module *m, const char *name)
{
    if (!m || !name || !ensure_flat(m)) return NULL;
    for (int i = 0; i < m->n_flat; i++)
        if (!strcmp(m->flat[i].name, name)) return m->flat[i].t;
    return NULL;
}

diffcl_module *diffcl_module_child(const diffcl_module *m, const char *path)
{
    if (!m || !path) return NULL;
    char part[256];
    while (m && *path) {
        const char *dot = strchr(path, '.');
        size_t len = dot ? (size_t)(dot - path) : strlen(path);
        if (len >= sizeof part) return NULL;
        memcpy(part, path, len);
        part[len] = '\0';
        m = dc_module_get_child(m, part);
        path += len + (dot ? 1 : 0);
    }
    return (diffcl_module *)m;
}

int64_t diffcl_module_num_parameters(const diffcl_module *m)
{
    if (!m || !ensure_flat(m)) return 0;
    int64_t n = 0;
    for (int i = 0; i < m->n_flat; i++)
        if (m->flat[i].is_param) n += dc_numel(m->flat[i].t);
    return n;
}

diffcl_status diffcl_module_state_dict(const diffcl_module *m, diffcl_tensor_dict **out)
{
    DC_CHECK_ARG(out, "diffcl_module_state_dict: out is NULL");
    *out = NULL;
    DC_CHECK_ARG(m, "diffcl_module_state_dict: module is NULL");
    if (!ensure_flat(m)) return DIFFCL_ERR_OUT_OF_MEMORY;
    diffcl_tensor_dict *d = NULL;
    DC_TRY(diffcl_tensor_dict_new(m->ctx, &d));
    for (int i = 0; i < m->n_flat; i++) {
        diffcl_status s = diffcl_tensor_dict_set(d, m->flat[i].name, m->flat[i].t);
        if (s != DIFFCL_OK) {
            diffcl_tensor_dict_free(d);
            return s;
        }
    }
    *out = d;
    return DIFFCL_OK;
}

void diffcl_load_options_init(diffcl_load_options *opts)
{
    if (!opts) return;
    diffcl_load_options d = DIFFCL_LOAD_OPTIONS_INIT;
    *opts = d;
}
