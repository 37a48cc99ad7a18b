/* Internal module structure: how layers and models build their trees.
 *
 * A layer is written as:
 *   typedef struct { ...hyper-parameters... } conv_impl;
 *   static diffcl_status conv_forward(diffcl_module *m, const diffcl_tensor *x,
 *                                     diffcl_tensor **out) { conv_impl *c = m->impl; ... }
 *   static const dc_module_vtable CONV_VT = {"conv3d", conv_forward, free};
 *   diffcl_module *m = dc_module_new(ctx, &CONV_VT, impl);
 *   dc_module_add_param(m, "weight", w);   // takes the reference, sets requires_grad
 *   dc_module_add_buffer(m, "running_mean", rm);
 *   dc_module_add_child(m, "conv", child); // takes ownership of child
 */
#ifndef DIFFCL_MODULE_INTERNAL_H
#define DIFFCL_MODULE_INTERNAL_H

#include "diffcl/module.h"
#include "tensor/tensor_internal.h"

typedef struct dc_module_vtable {
    const char *type;
    /* NULL: the module cannot run on one input (DIFFCL_ERR_UNSUPPORTED). */
    diffcl_status (*forward)(diffcl_module *m, const diffcl_tensor *x, diffcl_tensor **out);
    void (*free_impl)(void *impl); /* may be NULL */
} dc_module_vtable;

typedef struct dc_entry {
    char *name;
    diffcl_tensor *t;
} dc_entry;

typedef struct dc_child {
    char *name;
    diffcl_module *m;
} dc_child;

typedef struct dc_flat_entry {
    char *name;       /* full dotted name */
    diffcl_tensor *t; /* borrowed */
    int is_param;
} dc_flat_entry;

struct diffcl_module {
    diffcl_context *ctx;
    const dc_module_vtable *vt;
    void *impl;
    int training;
    int n_params, n_buffers, n_children;
    dc_entry *params;
    dc_entry *buffers;
    dc_child *children;
    /* flattened view, rebuilt lazily after the tree changes */
    dc_flat_entry *flat;
    int n_flat;
    int flat_valid;
    diffcl_module *parent;
    uint32_t step;  /* RNG step (diffcl_module_set_step) */
    uint32_t calls; /* stochastic forwards since the step was set */
    /* The index each batch row's random draws are keyed by (dc_module_set_samples): borrowed,
     * n_samples entries; NULL: row n is sample n. */
    const uint32_t *samples;
    int64_t n_samples;
};

/* NULL on out-of-memory (error set); impl is freed with vt->free_impl on failure. */
diffcl_module *dc_module_new(diffcl_context *ctx, const dc_module_vtable *vt, void *impl);
/* Each takes over the caller's reference (also on failure, where it is released). */
/* diffcl_module_state_count that tells out-of-memory apart from an empty module. */
diffcl_status dc_module_state_count(const diffcl_module *m, int kinds, int *n);
diffcl_status dc_module_add_param(diffcl_module *m, const char *name, diffcl_tensor *t);
diffcl_status dc_module_add_buffer(diffcl_module *m, const char *name, diffcl_tensor *t);
diffcl_status dc_module_add_child(diffcl_module *m, const char *name, diffcl_module *child);
/* Direct (non-dotted) lookups; NULL when absent. */
diffcl_tensor *dc_module_param(const diffcl_module *m, const char *name);
diffcl_tensor *dc_module_buffer(const diffcl_module *m, const char *name);
diffcl_module *dc_module_get_child(const diffcl_module *m, const char *name);
/* Run a child's forward (NULL child = identity, returns a retained x). */
diffcl_status dc_module_run(diffcl_module *child, const diffcl_tensor *x, diffcl_tensor **out);

/* Key the per-sample random draws (dropout masks) of @p m and its descendants by @p samples:
 * batch row n draws as sample samples[n] (its global index in a sharded batch,
 * docs/distributed.md). Borrowed: @p samples must stay valid while it is set; NULL (n 0)
 * restores row n = sample n. A stochastic forward on a batch of another size fails with
 * DIFFCL_ERR_SHAPE. */
void dc_module_set_samples(diffcl_module *m, const uint32_t *samples, int64_t n);

/* diffcl_module_load_state_dict that passes over the keys starting with @p skip (NULL: none),
 * as if they were another module's: a Diff-CL model file holds the DS under "ds." next to the
 * CS, and loading the CS must neither warn about nor count them (lib/layer/module_io.c). */
diffcl_status dc_module_load_state_dict_skip(diffcl_module *m, const diffcl_tensor_dict *dict,
                                             const diffcl_load_options *opts, const char *skip,
                                             int *n_missing, int *n_unexpected);

#endif
