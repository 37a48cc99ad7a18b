/* Nearest and (bi/tri)linear up-sampling by an integer factor (PyTorch semantics,
 * align_corners=False), with backward. Separable: one pass per spatial axis. */
#include <string.h>

#include "layer/conv_internal.h"

#define T float
#define SFX f32
#include "layer/upsample_kernels.inc"
#define T double
#define SFX f64
#include "layer/upsample_kernels.inc"

/* Run the passes over the spatial axes of shape [N,C,s...] (nsp = 2 or 3 spatial axes).
 * Forward goes last axis first, so the data grows as late as possible; the adjoint runs
 * the transposed passes in the opposite order. */
static diffcl_status run_passes(diffcl_context *ctx, diffcl_dtype dt, const int64_t *shape, int nsp,
                                int scale, int linear, int adjoint, const void *src, void *dst)
{
    const size_t esz = diffcl_dtype_size(dt);
    int64_t cur[3], nc = shape[0] * shape[1];
    for (int a = 0; a < nsp; a++) cur[a] = shape[2 + a] * (adjoint ? scale : 1);
    int64_t big = nc;
    for (int a = 0; a < nsp; a++) big *= shape[2 + a] * scale;
    /* two ping-pong buffers for the intermediate results */
    void *tmp[2] = {NULL, NULL};
    size_t tbytes = (size_t)big * esz;
    if (nsp > 1) {
        tmp[0] = dc_alloc(ctx, tbytes);
        tmp[1] = nsp > 2 ? dc_alloc(ctx, tbytes) : NULL;
        if (!tmp[0] || (nsp > 2 && !tmp[1])) {
            dc_free(ctx, tmp[0], tbytes);
            dc_free(ctx, tmp[1], tbytes);
            return DIFFCL_ERR_OUT_OF_MEMORY;
        }
    }
    const void *in = src;
    for (int step = 0; step < nsp; step++) {
        const int a = adjoint ? step : nsp - 1 - step; /* axis handled in this pass */
        int64_t outer = nc, inner = 1;
        for (int b = 0; b < a; b++) outer *= cur[b];
        for (int b = a + 1; b < nsp; b++) inner *= cur[b];
        const int64_t n = adjoint ? cur[a] / scale : cur[a];
        void *out = step == nsp - 1 ? dst : tmp[step & 1];
        if (dt == DIFFCL_F32)
            upsample_axis_f32(ctx, in, out, outer, n, inner, scale, linear, adjoint);
        else
            upsample_axis_f64(ctx, in, out, outer, n, inner, scale, linear, adjoint);
        cur[a] = adjoint ? n : n * scale;
        in = out;
    }
    if (nsp > 1) {
        dc_free(ctx, tmp[0], tbytes);
        dc_free(ctx, tmp[1], tbytes);
    }
    return DIFFCL_OK;
}

/* i[0] scale, i[1] linear */
static diffcl_status upsample_backward(dc_node *nd, diffcl_tensor *gy, diffcl_tensor **gin)
{
    const diffcl_tensor *x = nd->inputs[0];
    diffcl_tensor *gyc = dc_contiguous(gy);
    gin[0] = gyc ? dc_tensor_empty(x->ctx, x->dtype, x->ndim, x->shape) : NULL;
    diffcl_status s = gin[0] ? run_passes(x->ctx, x->dtype, x->shape, x->ndim - 2, (int)nd->i[0],
                                          (int)nd->i[1], 1, dc_data(gyc), dc_data(gin[0]))
                             : DIFFCL_ERR_OUT_OF_MEMORY;
    diffcl_tensor_free(gyc);
    return s;
}
static const dc_op OP_UPSAMPLE = {"upsample", upsample_backward, NULL, 0};

diffcl_status diffcl_upsample(const diffcl_tensor *x, int scale, diffcl_upsample_mode mode,
                              diffcl_tensor **out)
{
    DC_CHECK_ARG(out, "diffcl_upsample: out is NULL");
    *out = NULL;
    DC_CHECK_TENSOR(x, "diffcl_upsample");
    DC_CHECK_ARG(scale >= 1, "diffcl_upsample: scale %d (must be >= 1)", scale);
    DC_CHECK_ARG(mode == DIFFCL_UPSAMPLE_NEAREST || mode == DIFFCL_UPSAMPLE_LINEAR,
                 "diffcl_upsample: unknown mode %d", (int)mode);
    if (!dc_is_float(x->dtype))
        return dc_error(DIFFCL_ERR_DTYPE, "diffcl_upsample: input is %s (f32 or f64 needed)",
                        diffcl_dtype_name(x->dtype));
    if (x->ndim != 4 && x->ndim != 5)
        return dc_error(DIFFCL_ERR_SHAPE,
                        "diffcl_upsample: input %s has rank %d; need "
                        "[N,C,H,W] or [N,C,D,H,W]",
                        dc_shape_str(x), x->ndim);
    int64_t ysh[5];
    for (int a = 0; a < x->ndim; a++) ysh[a] = x->shape[a] * (a >= 2 ? scale : 1);
    diffcl_tensor *xc = dc_contiguous(x);
    diffcl_tensor *y = xc ? dc_tensor_empty(x->ctx, x->dtype, x->ndim, ysh) : NULL;
    diffcl_status s = y ? run_passes(x->ctx, x->dtype, x->shape, x->ndim - 2, scale,
                                     mode == DIFFCL_UPSAMPLE_LINEAR, 0, dc_data(xc), dc_data(y))
                        : DIFFCL_ERR_OUT_OF_MEMORY;
    diffcl_tensor_free(xc);
    if (s != DIFFCL_OK) {
        diffcl_tensor_free(y);
        return s;
    }
    diffcl_tensor *in[1] = {(diffcl_tensor *)x};
    dc_node *nd = dc_record(y, &OP_UPSAMPLE, in, 1);
    if (nd) {
        nd->i[0] = scale;
        nd->i[1] = mode == DIFFCL_UPSAMPLE_LINEAR;
    }
    *out = y;
    return DIFFCL_OK;
}
