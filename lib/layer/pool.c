/* Max and average pooling (2-d and 3-d) with backward. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layer/conv_internal.h"

#define T float
#define SFX f32
#include "layer/pool_kernels.inc"
#define T double
#define SFX f64
#include "layer/pool_kernels.inc"

/* Check x and the window; fill the 3-d geometry (ci = co = channels) and y's shape. */
static diffcl_status check_pool(const char *what, const diffcl_tensor *x,
                                const diffcl_conv_geometry *gin, int is_max, dc_cgeo *cg,
                                int64_t ysh[5])
{
    DC_CHECK_TENSOR(x, what);
    diffcl_conv_geometry g = DIFFCL_CONV_GEOMETRY_INIT;
    DC_TRY(dc_conv_geometry_read(gin, what, &g));
    if (!dc_is_float(x->dtype))
        return dc_error(DIFFCL_ERR_DTYPE, "%s: input is %s (f32 or f64 needed)", what,
                        diffcl_dtype_name(x->dtype));
    if (x->ndim != g.dims + 2)
        return dc_error(DIFFCL_ERR_SHAPE, "%s: input %s has rank %d; %d-d pooling needs rank %d %s",
                        what, dc_shape_str(x), x->ndim, g.dims, g.dims + 2,
                        g.dims == 3 ? "[N,C,D,H,W]" : "[N,C,H,W]");
    const int lead = 3 - g.dims;
    memset(cg, 0, sizeof *cg);
    cg->n = x->shape[0];
    cg->ci = cg->co = x->shape[1];
    ysh[0] = x->shape[0];
    ysh[1] = x->shape[1];
    for (int a = 0; a < 3; a++) {
        cg->k[a] = 1;
        cg->s[a] = 1;
        cg->p[a] = 0;
        cg->d[a] = 1;
        cg->in[a] = cg->out[a] = 1;
    }
    for (int a = 0; a < g.dims; a++) {
        if (!is_max && g.dilation[a] != 1)
            return dc_error(DIFFCL_ERR_INVALID_ARGUMENT,
                            "%s: dilation[%d] = %d (average pooling "
                            "has no dilation)",
                            what, a, g.dilation[a]);
        if (2 * g.padding[a] > g.kernel[a])
            return dc_error(DIFFCL_ERR_INVALID_ARGUMENT,
                            "%s: padding[%d] = %d is more than half "
                            "the kernel (%d)",
                            what, a, g.padding[a], g.kernel[a]);
        const int64_t in = x->shape[2 + a];
        const int64_t ext = (int64_t)g.dilation[a] * (g.kernel[a] - 1) + 1;
        if (in + 2 * (int64_t)g.padding[a] < ext)
            return dc_error(DIFFCL_ERR_SHAPE,
                            "%s: input %s is smaller than the window on spatial "
                            "axis %d: size %lld + 2*padding %d < window %lld",
                            what, dc_shape_str(x), a, (long long)in, g.padding[a], (long long)ext);
        const int64_t o = (in + 2 * (int64_t)g.padding[a] - ext) / g.stride[a] + 1;
        cg->k[lead + a] = g.kernel[a];
        cg->s[lead + a] = g.stride[a];
        cg->p[lead + a] = g.padding[a];
        cg->d[lead + a] = g.dilation[a];
        cg->in[lead + a] = in;
        cg->out[lead + a] = o;
        ysh[2 + a] = o;
    }
    if (dc_cgeo_in_vox(cg) > 0x7fffffff)
        return dc_error(DIFFCL_ERR_UNSUPPORTED, "%s: a plane of %s exceeds 2^31 voxels", what,
                        dc_shape_str(x));
    return DIFFCL_OK;
}

/* saved: 0 the I32 argmax indices [N*C*P] */
static diffcl_status max_pool_backward(dc_node *nd, diffcl_tensor *gy, diffcl_tensor **gin)
{
    const dc_cgeo *g = nd->state;
    const diffcl_tensor *x = nd->inputs[0];
    diffcl_tensor *gyc = dc_contiguous(gy);
    gin[0] = gyc ? dc_tensor_empty(x->ctx, x->dtype, x->ndim, x->shape) : NULL;
    if (!gin[0]) {
        diffcl_tensor_free(gyc);
        return DIFFCL_ERR_OUT_OF_MEMORY;
    }
    const int32_t *idx = dc_data(nd->saved[0]);
    if (x->dtype == DIFFCL_F32)
        max_pool_bwd_f32(x->ctx, g, g->n * g->ci, dc_f32(gyc), idx, dc_f32(gin[0]));
    else
        max_pool_bwd_f64(x->ctx, g, g->n * g->ci, dc_f64(gyc), idx, dc_f64(gin[0]));
    diffcl_tensor_free(gyc);
    return DIFFCL_OK;
}
static const dc_op OP_MAX_POOL = {"max_pool", max_pool_backward, free, 0};

static diffcl_status avg_pool_backward(dc_node *nd, diffcl_tensor *gy, diffcl_tensor **gin)
{
    const dc_cgeo *g = nd->state;
    const diffcl_tensor *x = nd->inputs[0];
    diffcl_tensor *gyc = dc_contiguous(gy);
    gin[0] = gyc ? dc_tensor_empty(x->ctx, x->dtype, x->ndim, x->shape) : NULL;
    if (!gin[0]) {
        diffcl_tensor_free(gyc);
        return DIFFCL_ERR_OUT_OF_MEMORY;
    }
    if (x->dtype == DIFFCL_F32)
        avg_pool_f32(x->ctx, g, g->n * g->ci, dc_f32(gyc), dc_f32(gin[0]), 1);
    else
        avg_pool_f64(x->ctx, g, g->n * g->ci, dc_f64(gyc), dc_f64(gin[0]), 1);
    diffcl_tensor_free(gyc);
    return DIFFCL_OK;
}
static const dc_op OP_AVG_POOL = {"avg_pool", avg_pool_backward, free, 0};

static diffcl_status pool_impl(const char *what, const diffcl_tensor *x,
                               const diffcl_conv_geometry *gin, int is_max, diffcl_tensor **out)
{
    DC_CHECK_ARG(out, "%s: out is NULL", what);
    *out = NULL;
    dc_cgeo g;
    int64_t ysh[5];
    DC_TRY(check_pool(what, x, gin, is_max, &g, ysh));
    diffcl_context *ctx = x->ctx;
    const int64_t planes = g.n * g.ci;
    const int record = ctx->grad_enabled && x->requires_grad;
    diffcl_tensor *xc = dc_contiguous(x);
    diffcl_tensor *y = xc ? dc_tensor_empty(ctx, x->dtype, x->ndim, ysh) : NULL;
    diffcl_tensor *idx = NULL;
    dc_cgeo *st = NULL;
    if (y && record) {
        int64_t ish[1] = {planes * dc_cgeo_out_vox(&g)};
        st = dc_malloc(sizeof *st);
        if (is_max) idx = dc_tensor_empty(ctx, DIFFCL_I32, 1, ish);
        if (!st || (is_max && !idx)) {
            diffcl_tensor_free(y);
            y = NULL;
        }
    }
    if (!y) {
        diffcl_tensor_free(xc);
        diffcl_tensor_free(idx);
        free(st);
        return DIFFCL_ERR_OUT_OF_MEMORY;
    }
    int32_t *ip = idx ? dc_data(idx) : NULL;
    if (is_max) {
        if (x->dtype == DIFFCL_F32)
            max_pool_fwd_f32(ctx, &g, planes, dc_f32(xc), dc_f32(y), ip);
        else
            max_pool_fwd_f64(ctx, &g, planes, dc_f64(xc), dc_f64(y), ip);
    } else {
        if (x->dtype == DIFFCL_F32)
            avg_pool_f32(ctx, &g, planes, dc_f32(xc), dc_f32(y), 0);
        else
            avg_pool_f64(ctx, &g, planes, dc_f64(xc), dc_f64(y), 0);
    }
    diffcl_tensor *in[1] = {(diffcl_tensor *)x};
    dc_node *nd = record ? dc_record(y, is_max ? &OP_MAX_POOL : &OP_AVG_POOL, in, 1) : NULL;
    if (nd) {
        *st = g;
        nd->state = st;
        st = NULL;
        if (idx) dc_node_save(nd, idx);
    }
    free(st);
    diffcl_tensor_free(idx);
    diffcl_tensor_free(xc);
    *out = y;
    return DIFFCL_OK;
}

diffcl_status diffcl_max_pool(const diffcl_tensor *x, const diffcl_conv_geometry *g,
                              diffcl_tensor **out)
{
    return pool_impl("diffcl_max_pool", x, g, 1, out);
}

diffcl_status diffcl_avg_pool(const diffcl_tensor *x, const diffcl_conv_geometry *g,
                              diffcl_tensor **out)
{
    return pool_impl("diffcl_avg_pool", x, g, 0, out);
}
