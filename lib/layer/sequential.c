/* Sequential container: children named "0", "1", ... run in order (PyTorch nn.Sequential). */
#include <stdio.h>

#include "diffcl/layer.h"
#include "layer/module_internal.h"

static diffcl_status seq_forward(diffcl_module *m, const diffcl_tensor *x, diffcl_tensor **out)
{
    diffcl_tensor *cur = diffcl_tensor_retain((diffcl_tensor *)x);
    for (int i = 0; i < m->n_children; i++) {
        diffcl_tensor *next = NULL;
        diffcl_status s = diffcl_module_forward(m->children[i].m, cur, &next);
        diffcl_tensor_free(cur);
        if (s != DIFFCL_OK) {
            dc_error_prefix("sequential child %s (%s)", m->children[i].name,
                            diffcl_module_type(m->children[i].m));
            return s;
        }
        cur = next;
    }
    *out = cur;
    return DIFFCL_OK;
}

static const dc_module_vtable SEQ_VT = {"sequential", seq_forward, NULL};

diffcl_status diffcl_sequential_create(diffcl_context *ctx, diffcl_module **out)
{
    DC_CHECK_ARG(out, "diffcl_sequential_create: out is NULL");
    *out = NULL;
    DC_CHECK_ARG(ctx, "diffcl_sequential_create: ctx is NULL");
    *out = dc_module_new(ctx, &SEQ_VT, NULL);
    return *out ? DIFFCL_OK : DIFFCL_ERR_OUT_OF_MEMORY;
}

/* On failure the child is freed, except when it already belongs to a tree (DIFFCL_ERR_STATE),
 * where it stays with its owner. */
diffcl_status diffcl_sequential_append(diffcl_module *seq, diffcl_module *child)
{
    if (child && child->parent)
        return dc_error(DIFFCL_ERR_STATE,
                        "diffcl_sequential_append: the %s module already belongs to a module tree",
                        child->vt->type);
    diffcl_status s = DIFFCL_OK;
    if (!seq || !child || child == seq)
        s = dc_error(DIFFCL_ERR_INVALID_ARGUMENT,
                     "diffcl_sequential_append: need a sequential module and another child module");
    else if (seq->vt != &SEQ_VT)
        s = dc_error(DIFFCL_ERR_INVALID_ARGUMENT,
                     "diffcl_sequential_append: module is a %s, not a sequential", seq->vt->type);
    else if (child->ctx != seq->ctx)
        s = dc_error(DIFFCL_ERR_INVALID_ARGUMENT,
                     "diffcl_sequential_append: child belongs to another context");
    if (s != DIFFCL_OK) {
        if (child != seq) diffcl_module_free(child);
        return s;
    }
    char name[16];
    snprintf(name, sizeof name, "%d", seq->n_children);
    /* the child joins in the container's mode and RNG step */
    diffcl_module_train(child, seq->training);
    diffcl_module_set_step(child, seq->step);
    return dc_module_add_child(seq, name, child);
}
