/* Softmax and log-softmax over any axis, F32 and F64, with backward.
 *
 * The tensor is viewed as [outer, n, inner] around the axis. With inner == 1 (the last
 * axis) each row is contiguous; otherwise (the class axis 1 of NC... tensors) the kernel
 * walks blocks of up to SM_BLOCK inner positions at once so every load is contiguous. */
#include <math.h>

#include "layer/nn_internal.h"

#define SM_BLOCK 256

/* Kernels of one precision. One work item = (outer o, inner block b). */
#define T float
#define SFX f
#define EXP expf
#define LOG logf
#include "layer/softmax_kernels.inc"
#define T double
#define SFX d
#define EXP exp
#define LOG log
#include "layer/softmax_kernels.inc"

/* saved[0] = y; i[0] = log-softmax, i[1..3] = outer, n, inner */
static diffcl_status softmax_backward(dc_node *nd, diffcl_tensor *g, diffcl_tensor **gin)
{
    if (!dc_wants_grad(nd, 0)) return DIFFCL_OK;
    const diffcl_tensor *y = nd->saved[0];
    diffcl_tensor *gc = dc_contiguous(g);
    diffcl_tensor *gx = gc ? dc_tensor_empty_like(y) : NULL;
    if (!gx) {
        diffcl_tensor_free(gc);
        return DIFFCL_ERR_OUT_OF_MEMORY;
    }
    int nt = dc_threads(y->ctx), logsm = (int)nd->i[0];
    if (y->dtype == DIFFCL_F32)
        sm_bwd_f(dc_f32(y), dc_f32(gc), dc_f32(gx), nd->i[1], nd->i[2], nd->i[3], logsm, nt);
    else
        sm_bwd_d(dc_f64(y), dc_f64(gc), dc_f64(gx), nd->i[1], nd->i[2], nd->i[3], logsm, nt);
    diffcl_tensor_free(gc);
    gin[0] = gx;
    return DIFFCL_OK;
}
static const dc_op OP_SOFTMAX = {"softmax", softmax_backward, NULL, 0};

static diffcl_status softmax(const diffcl_tensor *x, int axis, int logsm, diffcl_tensor **out,
                             const char *fn)
{
    DC_CHECK_ARG(out, "%s: out is NULL", fn);
    *out = NULL;
    DC_TRY(dc_nn_check_float(x, fn, "input"));
    if (x->ndim == 0)
        return dc_error(DIFFCL_ERR_SHAPE, "%s: input is a 0-d scalar; need at least one axis", fn);
    int a = dc_norm_axis(axis, x->ndim);
    if (a < 0)
        return dc_error(DIFFCL_ERR_INVALID_ARGUMENT, "%s: axis %d out of range for %s", fn, axis,
                        dc_shape_str(x));
    int64_t outer = 1, n = x->shape[a], inner = dc_nn_inner(x, a + 1);
    for (int i = 0; i < a; i++) outer *= x->shape[i];
    diffcl_tensor *xc = dc_contiguous(x);
    diffcl_tensor *y = xc ? dc_tensor_empty(x->ctx, x->dtype, x->ndim, x->shape) : NULL;
    if (!y) {
        diffcl_tensor_free(xc);
        return DIFFCL_ERR_OUT_OF_MEMORY;
    }
    int nt = dc_threads(x->ctx);
    if (n > 0 && outer > 0 && inner > 0) {
        if (x->dtype == DIFFCL_F32)
            sm_fwd_f(dc_f32(xc), dc_f32(y), outer, n, inner, logsm, nt);
        else
            sm_fwd_d(dc_f64(xc), dc_f64(y), outer, n, inner, logsm, nt);
    }
    diffcl_tensor_free(xc);
    diffcl_tensor *in = (diffcl_tensor *)x;
    dc_node *nd = dc_record(y, &OP_SOFTMAX, &in, 1);
    if (nd) {
        nd->i[0] = logsm;
        nd->i[1] = outer;
        nd->i[2] = n;
        nd->i[3] = inner;
        dc_node_save(nd, y);
    }
    *out = y;
    return DIFFCL_OK;
}

diffcl_status diffcl_softmax(const diffcl_tensor *x, int axis, diffcl_tensor **out)
{
    return softmax(x, axis, 0, out, "diffcl_softmax");
}

diffcl_status diffcl_log_softmax(const diffcl_tensor *x, int axis, diffcl_tensor **out)
{
    return softmax(x, axis, 1, out, "diffcl_log_softmax");
}
