/* An ensemble of segmentation networks as one module: its forward maps a window to the log of
 * the mean of the members' softmaxes. The sliding window takes the softmax of what a module
 * returns, and softmax(log p) = p when p sums to 1, so every window, flip and Gaussian weight
 * of diffcl_segment applies to the ensemble exactly as to one network, and the ensemble's
 * probabilities are the mean of the members' (the averaging is linear). */
#include <stdio.h>

#include "diffcl/infer.h"
#include "diffcl/layer.h"
#include "eval/eval_internal.h"
#include "layer/module_internal.h"
#include "tensor/tensor_internal.h"

diffcl_status dc_log_mean_softmax(const diffcl_tensor *const *logits, int n, diffcl_tensor **out)
{
    *out = NULL;
    diffcl_tensor *sum = NULL, *mean = NULL;
    diffcl_status s = DIFFCL_OK;
    for (int i = 0; i < n && s == DIFFCL_OK; i++) {
        diffcl_tensor *p = NULL, *acc = NULL;
        s = diffcl_softmax(logits[i], 1, &p);
        if (s == DIFFCL_OK && sum && !dc_same_shape(sum, p))
            s = dc_error(DIFFCL_ERR_SHAPE,
                         "ensemble: member %d gives %s, member 0 gives %s (the members must "
                         "have the same classes)",
                         i, dc_shape_str(p), dc_shape_str(sum));
        if (s == DIFFCL_OK) s = sum ? diffcl_add(sum, p, &acc) : (acc = diffcl_tensor_retain(p), s);
        diffcl_tensor_free(p);
        diffcl_tensor_free(sum);
        sum = acc;
    }
    DC_STEP(diffcl_affine(sum, 1.0 / n, 0.0, &mean));
    DC_STEP(diffcl_log(mean, out));
    diffcl_tensor_free(sum);
    diffcl_tensor_free(mean);
    return s;
}

static diffcl_status ensemble_forward(diffcl_module *m, const diffcl_tensor *x, diffcl_tensor **out)
{
    diffcl_tensor *logits[DIFFCL_ENSEMBLE_MAX] = {0};
    diffcl_status s = DIFFCL_OK;
    for (int i = 0; i < m->n_children && s == DIFFCL_OK; i++)
        s = diffcl_module_forward(m->children[i].m, x, &logits[i]);
    DC_STEP(dc_log_mean_softmax((const diffcl_tensor *const *)logits, m->n_children, out));
    for (int i = 0; i < m->n_children; i++) diffcl_tensor_free(logits[i]);
    return s;
}

static const dc_module_vtable ENSEMBLE_VT = {"diffcl_ensemble", ensemble_forward, NULL};

/* The members are the ensemble's from the call on: freed here when it fails. */
static void free_members(diffcl_module **members, int n)
{
    for (int i = 0; members && i < n; i++) {
        diffcl_module_free(members[i]);
        members[i] = NULL;
    }
}

diffcl_status diffcl_ensemble_create(diffcl_context *ctx, diffcl_module **members, int n,
                                     diffcl_module **out)
{
    const char *fn = "diffcl_ensemble_create";
    if (out) *out = NULL;
    diffcl_status s = DIFFCL_OK;
    if (!out || !ctx || !members || n < 1 || n > DIFFCL_ENSEMBLE_MAX)
        s = dc_error(DIFFCL_ERR_INVALID_ARGUMENT,
                     "%s: need a context, an output and 1..%d members (got %d)", fn,
                     DIFFCL_ENSEMBLE_MAX, n);
    for (int i = 0; s == DIFFCL_OK && i < n; i++)
        if (!members[i]) s = dc_error(DIFFCL_ERR_INVALID_ARGUMENT, "%s: member %d is NULL", fn, i);
    diffcl_module *e = s == DIFFCL_OK ? dc_module_new(ctx, &ENSEMBLE_VT, NULL) : NULL;
    if (s == DIFFCL_OK && !e) s = dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    for (int i = 0; s == DIFFCL_OK && i < n; i++) {
        char name[16];
        snprintf(name, sizeof name, "m%d", i);
        s = dc_module_add_child(e, name, members[i]); /* frees the member when it fails */
        members[i] = NULL;
    }
    if (s != DIFFCL_OK) {
        free_members(members, n);
        diffcl_module_free(e);
        return s;
    }
    diffcl_module_train(e, 0);
    *out = e;
    return DIFFCL_OK;
}
