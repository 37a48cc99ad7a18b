/* Convolution and transposed convolution (2-d and 3-d): argument checks, shapes, autograd.
 * The kernels live in conv_kernels.c. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer/conv_internal.h"

void diffcl_conv_geometry_init(diffcl_conv_geometry *g)
{
    if (!g) return;
    diffcl_conv_geometry d = DIFFCL_CONV_GEOMETRY_INIT;
    *g = d;
}

diffcl_conv_geometry diffcl_conv_geometry_make(int dims, int kernel, int stride, int padding)
{
    diffcl_conv_geometry g = DIFFCL_CONV_GEOMETRY_INIT;
    g.dims = dims;
    for (int a = 0; a < 3; a++) {
        g.kernel[a] = kernel;
        g.stride[a] = stride;
        g.padding[a] = padding;
    }
    return g;
}

diffcl_status dc_conv_geometry_read(const diffcl_conv_geometry *g, const char *what,
                                    diffcl_conv_geometry *out)
{
    DC_CHECK_ARG(g, "%s: geometry is NULL", what);
    diffcl_conv_geometry o = DIFFCL_CONV_GEOMETRY_INIT;
    DC_TRY(
        dc_options_read(&o, sizeof o, g, offsetof(diffcl_conv_geometry, output_padding), 0, what));
    DC_CHECK_ARG(o.dims == 2 || o.dims == 3, "%s: geometry.dims is %d (2 or 3)", what, o.dims);
    for (int a = 0; a < o.dims; a++) {
        DC_CHECK_ARG(o.kernel[a] >= 1, "%s: kernel[%d] = %d (must be >= 1)", what, a, o.kernel[a]);
        DC_CHECK_ARG(o.stride[a] >= 1, "%s: stride[%d] = %d (must be >= 1)", what, a, o.stride[a]);
        DC_CHECK_ARG(o.padding[a] >= 0, "%s: padding[%d] = %d (must be >= 0)", what, a,
                     o.padding[a]);
        DC_CHECK_ARG(o.dilation[a] >= 1, "%s: dilation[%d] = %d (must be >= 1)", what, a,
                     o.dilation[a]);
        DC_CHECK_ARG(o.output_padding[a] >= 0, "%s: output_padding[%d] = %d (must be >= 0)", what,
                     a, o.output_padding[a]);
    }
    *out = o;
    return DIFFCL_OK;
}

/* Spatial axis a (0..2) of the 3-d form from geometry axis (a - (3 - dims)). */
static void geo_to_3d(const diffcl_conv_geometry *g, dc_cgeo *c)
{
    int lead = 3 - g->dims;
    for (int a = 0; a < 3; a++) {
        int s = a - lead;
        c->k[a] = s < 0 ? 1 : g->kernel[s];
        c->s[a] = s < 0 ? 1 : g->stride[s];
        c->p[a] = s < 0 ? 0 : g->padding[s];
        c->d[a] = s < 0 ? 1 : g->dilation[s];
    }
}

static const char *axes_name(int dims)
{
    return dims == 3 ? "[N,C,D,H,W]" : "[N,C,H,W]";
}

#define DC_INT_MAX ((int64_t)0x7fffffff)

/* Common checks of conv / conv_transpose; fills the 3-d geometry (n, channels, kernel and
 * "input"/"output" spatial sizes as the *forward convolution* sees them). */
static diffcl_status check_conv(const char *what, const diffcl_tensor *x, const diffcl_tensor *w,
                                const diffcl_tensor *b, const diffcl_conv_geometry *gin,
                                int transposed, dc_cgeo *cg, int64_t yshape[5])
{
    DC_CHECK_TENSOR(x, what);
    DC_CHECK_TENSOR(w, what);
    diffcl_conv_geometry g = DIFFCL_CONV_GEOMETRY_INIT;
    DC_TRY(dc_conv_geometry_read(gin, what, &g));
    if (!dc_is_float(x->dtype) || w->dtype != x->dtype || (b && b->dtype != x->dtype))
        return dc_error(DIFFCL_ERR_DTYPE,
                        "%s: input, weight and bias must share one float dtype "
                        "(got %s, %s, %s)",
                        what, diffcl_dtype_name(x->dtype), diffcl_dtype_name(w->dtype),
                        b ? diffcl_dtype_name(b->dtype) : "none");
    const int nd = g.dims + 2;
    if (x->ndim != nd)
        return dc_error(DIFFCL_ERR_SHAPE,
                        "%s: input %s has rank %d; a %d-d convolution needs "
                        "rank %d %s",
                        what, dc_shape_str(x), x->ndim, g.dims, nd, axes_name(g.dims));
    if (w->ndim != nd)
        return dc_error(DIFFCL_ERR_SHAPE, "%s: weight %s has rank %d; expected rank %d %s", what,
                        dc_shape_str(w), w->ndim, nd,
                        transposed ? "[Cin,Cout,k...]" : "[Cout,Cin,k...]");
    const int64_t cin = x->shape[1];
    const int64_t w_in = transposed ? w->shape[0] : w->shape[1];
    const int64_t cout = transposed ? w->shape[1] : w->shape[0];
    if (w_in != cin)
        return dc_error(DIFFCL_ERR_SHAPE,
                        "%s: channel mismatch: input %s has %lld channels, "
                        "weight %s expects %lld",
                        what, dc_shape_str(x), (long long)cin, dc_shape_str(w), (long long)w_in);
    if (cin < 1 || cout < 1)
        return dc_error(DIFFCL_ERR_SHAPE, "%s: zero channels (input %s, weight %s)", what,
                        dc_shape_str(x), dc_shape_str(w));
    for (int a = 0; a < g.dims; a++)
        if (w->shape[2 + a] != g.kernel[a])
            return dc_error(DIFFCL_ERR_SHAPE,
                            "%s: weight %s has kernel size %lld on spatial axis "
                            "%d but the geometry says %d",
                            what, dc_shape_str(w), (long long)w->shape[2 + a], a, g.kernel[a]);
    if (b && (b->ndim != 1 || b->shape[0] != cout))
        return dc_error(DIFFCL_ERR_SHAPE, "%s: bias %s must be [%lld] (one per output channel)",
                        what, dc_shape_str(b), (long long)cout);
    geo_to_3d(&g, cg);
    const int lead = 3 - g.dims;
    yshape[0] = x->shape[0];
    yshape[1] = cout;
    int64_t xsp[3] = {1, 1, 1}, ysp[3] = {1, 1, 1};
    for (int a = 0; a < g.dims; a++) {
        const int64_t in = x->shape[2 + a];
        const int64_t ext = (int64_t)g.dilation[a] * (g.kernel[a] - 1) + 1; /* dilated kernel */
        int64_t o;
        if (!transposed) {
            if (in + 2 * (int64_t)g.padding[a] < ext)
                return dc_error(DIFFCL_ERR_SHAPE,
                                "%s: input %s is smaller than the kernel on "
                                "spatial axis %d: size %lld + 2*padding %d < dilated kernel %lld",
                                what, dc_shape_str(x), a, (long long)in, g.padding[a],
                                (long long)ext);
            o = (in + 2 * (int64_t)g.padding[a] - ext) / g.stride[a] + 1;
        } else {
            if (g.output_padding[a] >= g.stride[a] && g.output_padding[a] >= g.dilation[a])
                return dc_error(DIFFCL_ERR_INVALID_ARGUMENT,
                                "%s: output_padding[%d] = %d must be "
                                "smaller than the stride (%d) or the dilation (%d)",
                                what, a, g.output_padding[a], g.stride[a], g.dilation[a]);
            o = (in - 1) * g.stride[a] - 2 * (int64_t)g.padding[a] + ext + g.output_padding[a];
            if (in < 1 || o < 1)
                return dc_error(DIFFCL_ERR_SHAPE,
                                "%s: input %s gives an empty output on spatial "
                                "axis %d (size %lld)",
                                what, dc_shape_str(x), a, (long long)o);
        }
        xsp[lead + a] = in;
        ysp[lead + a] = o;
        yshape[2 + a] = o;
    }
    cg->n = x->shape[0];
    if (!transposed) {
        cg->ci = cin;
        cg->co = cout;
        memcpy(cg->in, xsp, sizeof xsp);
        memcpy(cg->out, ysp, sizeof ysp);
    } else { /* the adjoint of a convolution from y's side to x's side */
        cg->ci = cout;
        cg->co = cin;
        memcpy(cg->in, ysp, sizeof ysp);
        memcpy(cg->out, xsp, sizeof xsp);
    }
    if (cg->ci * dc_cgeo_kvol(cg) > DC_INT_MAX || dc_cgeo_out_vox(cg) > DC_INT_MAX ||
        dc_cgeo_in_vox(cg) > DC_INT_MAX || cg->co > DC_INT_MAX)
        return dc_error(DIFFCL_ERR_UNSUPPORTED,
                        "%s: a per-sample size exceeds the BLAS int "
                        "range (input %s, weight %s)",
                        what, dc_shape_str(x), dc_shape_str(w));
    return DIFFCL_OK;
}

/* ---- dtype dispatch ---- */

static diffcl_status k_fwd(diffcl_context *ctx, const dc_cgeo *g, diffcl_dtype dt, const void *x,
                           const void *w, const void *b, void *y)
{
    return dt == DIFFCL_F32 ? dc_kern_conv_fwd_f32(ctx, g, x, w, b, y)
                            : dc_kern_conv_fwd_f64(ctx, g, x, w, b, y);
}
static diffcl_status k_bwd_data(diffcl_context *ctx, const dc_cgeo *g, diffcl_dtype dt,
                                const void *dy, const void *w, void *dx)
{
    return dt == DIFFCL_F32 ? dc_kern_conv_bwd_data_f32(ctx, g, dy, w, dx)
                            : dc_kern_conv_bwd_data_f64(ctx, g, dy, w, dx);
}
static diffcl_status k_bwd_weight(diffcl_context *ctx, const dc_cgeo *g, diffcl_dtype dt,
                                  const void *x, const void *dy, void *dw, void *db)
{
    return dt == DIFFCL_F32 ? dc_kern_conv_bwd_weight_f32(ctx, g, x, dy, dw, db)
                            : dc_kern_conv_bwd_weight_f64(ctx, g, x, dy, dw, db);
}
static void k_channel_sum(diffcl_context *ctx, diffcl_dtype dt, const void *x, int64_t n, int64_t c,
                          int64_t vox, void *out)
{
    if (dt == DIFFCL_F32)
        dc_kern_channel_sum_f32(ctx, x, n, c, vox, out);
    else
        dc_kern_channel_sum_f64(ctx, x, n, c, vox, out);
}
static void k_add_bias(diffcl_context *ctx, diffcl_dtype dt, void *x, int64_t n, int64_t c,
                       int64_t vox, const void *b)
{
    if (dt == DIFFCL_F32)
        dc_kern_add_channel_bias_f32(ctx, x, n, c, vox, b);
    else
        dc_kern_add_channel_bias_f64(ctx, x, n, c, vox, b);
}

/* ---- autograd ---- */

typedef struct conv_state {
    dc_cgeo g;
    int transposed;
} conv_state;

/* inputs: 0 x, 1 w, 2 b (optional); saved: 0 x, 1 w (contiguous) */
static diffcl_status conv_backward(dc_node *nd, diffcl_tensor *gy, diffcl_tensor **gin)
{
    const conv_state *st = nd->state;
    const dc_cgeo *g = &st->g;
    const diffcl_tensor *x = nd->saved[0], *w = nd->saved[1];
    diffcl_context *ctx = x->ctx;
    const diffcl_dtype dt = x->dtype;
    diffcl_tensor *gyc = dc_contiguous(gy);
    if (!gyc) return DIFFCL_ERR_OUT_OF_MEMORY;
    diffcl_status s = DIFFCL_OK;
    if (dc_wants_grad(nd, 0)) {
        gin[0] = dc_tensor_empty_like(x);
        if (!gin[0])
            s = DIFFCL_ERR_OUT_OF_MEMORY;
        else if (!st->transposed)
            s = k_bwd_data(ctx, g, dt, dc_data(gyc), dc_data(w), dc_data(gin[0]));
        else
            s = k_fwd(ctx, g, dt, dc_data(gyc), dc_data(w), NULL, dc_data(gin[0]));
    }
    const int want_w = dc_wants_grad(nd, 1), want_b = nd->n_inputs > 2 && dc_wants_grad(nd, 2);
    if (s == DIFFCL_OK && want_w) {
        gin[1] = dc_tensor_empty_like(w);
        if (!gin[1]) s = DIFFCL_ERR_OUT_OF_MEMORY;
    }
    if (s == DIFFCL_OK && want_b) {
        gin[2] = dc_tensor_empty_like(nd->inputs[2]);
        if (!gin[2]) s = DIFFCL_ERR_OUT_OF_MEMORY;
    }
    if (s == DIFFCL_OK && (want_w || want_b)) {
        if (!st->transposed) {
            s = k_bwd_weight(ctx, g, dt, dc_data(x), dc_data(gyc), want_w ? dc_data(gin[1]) : NULL,
                             want_b ? dc_data(gin[2]) : NULL);
        } else {
            /* y = conv^T(x): dW = bwd_weight with conv input gy and conv output grad x */
            if (want_w)
                s = k_bwd_weight(ctx, g, dt, dc_data(gyc), dc_data(x), dc_data(gin[1]), NULL);
            if (want_b)
                k_channel_sum(ctx, dt, dc_data(gyc), g->n, g->ci, dc_cgeo_in_vox(g),
                              dc_data(gin[2]));
        }
    }
    diffcl_tensor_free(gyc);
    return s;
}
/* x and w are read from saved[], the bias only for its shape */
static const dc_op OP_CONV = {"conv", conv_backward, free, 0x7};
static const dc_op OP_CONV_T = {"conv_transpose", conv_backward, free, 0x7};

static diffcl_status conv_impl(const char *what, const diffcl_tensor *x, const diffcl_tensor *w,
                               const diffcl_tensor *b, const diffcl_conv_geometry *gin,
                               int transposed, diffcl_tensor **out)
{
    DC_CHECK_ARG(out, "%s: out is NULL", what);
    *out = NULL;
    dc_cgeo g;
    int64_t ysh[5];
    DC_TRY(check_conv(what, x, w, b, gin, transposed, &g, ysh));
    diffcl_context *ctx = x->ctx;
    diffcl_tensor *xc = dc_contiguous(x), *wc = dc_contiguous(w), *bc = b ? dc_contiguous(b) : NULL;
    diffcl_tensor *y =
        (xc && wc && (!b || bc)) ? dc_tensor_empty(ctx, x->dtype, x->ndim, ysh) : NULL;
    diffcl_status s = y ? DIFFCL_OK : DIFFCL_ERR_OUT_OF_MEMORY;
    if (s == DIFFCL_OK) {
        if (!transposed) {
            s = k_fwd(ctx, &g, x->dtype, dc_data(xc), dc_data(wc), bc ? dc_data(bc) : NULL,
                      dc_data(y));
        } else {
            s = k_bwd_data(ctx, &g, x->dtype, dc_data(xc), dc_data(wc), dc_data(y));
            if (s == DIFFCL_OK && bc)
                k_add_bias(ctx, x->dtype, dc_data(y), g.n, g.ci, dc_cgeo_in_vox(&g), dc_data(bc));
        }
        if (s != DIFFCL_OK) dc_error_prefix("%s", what);
    }
    if (s == DIFFCL_OK) {
        diffcl_tensor *in[3] = {(diffcl_tensor *)x, (diffcl_tensor *)w, (diffcl_tensor *)b};
        dc_node *nd = dc_record(y, transposed ? &OP_CONV_T : &OP_CONV, in, b ? 3 : 2);
        if (nd) {
            conv_state *st = dc_malloc(sizeof *st);
            if (!st) {
                s = dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", what);
            } else {
                st->g = g;
                st->transposed = transposed;
                nd->state = st;
                dc_node_save(nd, xc);
                dc_node_save(nd, wc);
            }
        }
    }
    diffcl_tensor_free(xc);
    diffcl_tensor_free(wc);
    diffcl_tensor_free(bc);
    if (s != DIFFCL_OK) {
        diffcl_tensor_free(y);
        return s;
    }
    *out = y;
    return DIFFCL_OK;
}

diffcl_status diffcl_conv(const diffcl_tensor *x, const diffcl_tensor *w, const diffcl_tensor *b,
                          const diffcl_conv_geometry *g, diffcl_tensor **out)
{
    return conv_impl("diffcl_conv", x, w, b, g, 0, out);
}

diffcl_status diffcl_conv_transpose(const diffcl_tensor *x, const diffcl_tensor *w,
                                    const diffcl_tensor *b, const diffcl_conv_geometry *g,
                                    diffcl_tensor **out)
{
    return conv_impl("diffcl_conv_transpose", x, w, b, g, 1, out);
}
