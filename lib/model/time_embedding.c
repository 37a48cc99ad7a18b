/* Time conditioning of the denoiser:
 *   sinusoid(t) [N, 128] -> temb.dense.0 Linear(128, 512) -> SiLU -> temb.dense.1 Linear(512, 512)
 * and, at each conditioned stage, TembFusion: x + temb_proj(SiLU(temb))[:, :, None, None(, None)],
 * the projection a per-channel bias broadcast over the volume (dc_add_channel_bias, an op with
 * its own backward). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/diffusion_internal.h"

/* ------------------------------------------------------------ sinusoid ---- */

diffcl_status dc_timestep_embedding(diffcl_context *ctx, const int64_t *t, int n, int dim,
                                    diffcl_dtype dtype, diffcl_tensor **out)
{
    *out = NULL;
    DC_CHECK_ARG(dim >= 4 && dim % 2 == 0, "time embedding: dim %d must be even and >= 4", dim);
    DC_CHECK_ARG(dtype == DIFFCL_F32 || dtype == DIFFCL_F64, "time embedding: dtype must be f32 or f64");
    int64_t shape[2] = {n, dim};
    diffcl_tensor *e = dc_tensor_empty(ctx, dtype, 2, shape);
    if (!e) return DIFFCL_ERR_OUT_OF_MEMORY;
    int half = dim / 2;
    double step = log(10000.0) / (half - 1);
    for (int k = 0; k < n; k++)
        for (int i = 0; i < half; i++) {
            double a = (double)t[k] * exp(-step * i);
            int64_t at = (int64_t)k * dim + i;
            if (dtype == DIFFCL_F64) {
                dc_f64(e)[at] = sin(a);
                dc_f64(e)[at + half] = cos(a);
            } else {
                dc_f32(e)[at] = (float)sin(a);
                dc_f32(e)[at + half] = (float)cos(a);
            }
        }
    *out = e;
    return DIFFCL_OK;
}

/* ----------------------------------------------------- container module ---- */

static const dc_module_vtable CONTAINER_VT = {"diffusion_container", NULL, NULL};

static diffcl_status make_linear(diffcl_context *ctx, int in, int outf, uint64_t seed,
                                 uint32_t *counter, diffcl_module **out)
{
    return diffcl_linear_create(ctx, in, outf, 1,
                                diffcl_rng_key_make(seed, DC_STREAM_DIFFUSION_INIT, (*counter)++, 0),
                                out);
}

diffcl_status dc_time_mlp_create(diffcl_context *ctx, int dim, int hidden, uint64_t seed,
                                 uint32_t *init_counter, diffcl_module **out)
{
    *out = NULL;
    diffcl_module *temb = dc_module_new(ctx, &CONTAINER_VT, NULL);
    diffcl_module *dense = dc_module_new(ctx, &CONTAINER_VT, NULL);
    if (!temb || !dense) {
        diffcl_module_free(temb);
        diffcl_module_free(dense);
        return DIFFCL_ERR_OUT_OF_MEMORY;
    }
    diffcl_status s = dc_module_add_child(temb, "dense", dense);
    diffcl_module *l0 = NULL, *l1 = NULL;
    if (s == DIFFCL_OK) s = make_linear(ctx, dim, hidden, seed, init_counter, &l0);
    if (s == DIFFCL_OK) s = dc_module_add_child(dense, "0", l0);
    if (s == DIFFCL_OK) s = make_linear(ctx, hidden, hidden, seed, init_counter, &l1);
    if (s == DIFFCL_OK) s = dc_module_add_child(dense, "1", l1);
    if (s != DIFFCL_OK) {
        diffcl_module_free(temb);
        return s;
    }
    *out = temb;
    return DIFFCL_OK;
}

diffcl_status dc_time_mlp_forward(diffcl_module *temb, const int64_t *t, int n, int dim,
                                  diffcl_tensor **out)
{
    *out = NULL;
    diffcl_module *l0 = diffcl_module_child(temb, "dense.0"), *l1 = diffcl_module_child(temb, "dense.1");
    if (!l0 || !l1) return dc_error(DIFFCL_ERR_INTERNAL, "time embedding: dense layers missing");
    diffcl_tensor *e = NULL, *h = NULL, *a = NULL;
    /* the embedding in the layers' dtype: float32 as trained, float64 after module_to_dtype */
    diffcl_tensor *w0 = diffcl_module_find(l0, "weight");
    diffcl_status s = dc_timestep_embedding(temb->ctx, t, n, dim, w0 ? w0->dtype : DIFFCL_F32, &e);
    if (s == DIFFCL_OK) s = diffcl_module_forward(l0, e, &h);
    if (s == DIFFCL_OK) s = diffcl_silu(h, &a);
    if (s == DIFFCL_OK) s = diffcl_module_forward(l1, a, out);
    diffcl_tensor_free(e);
    diffcl_tensor_free(h);
    diffcl_tensor_free(a);
    return s;
}

/* ---------------------------------------------------------- TembFusion ---- */

diffcl_status dc_temb_fusion_create(diffcl_context *ctx, int hidden, int channels, uint64_t seed,
                                    uint32_t *init_counter, diffcl_module **out)
{
    *out = NULL;
    diffcl_module *f = dc_module_new(ctx, &CONTAINER_VT, NULL), *proj = NULL;
    if (!f) return DIFFCL_ERR_OUT_OF_MEMORY;
    diffcl_status s = make_linear(ctx, hidden, channels, seed, init_counter, &proj);
    if (s == DIFFCL_OK) s = dc_module_add_child(f, "temb_proj", proj);
    if (s != DIFFCL_OK) {
        diffcl_module_free(f);
        return s;
    }
    *out = f;
    return DIFFCL_OK;
}

diffcl_status dc_temb_fusion_forward(diffcl_module *fusion, const diffcl_tensor *x,
                                     const diffcl_tensor *silu_temb, diffcl_tensor **out)
{
    *out = NULL;
    diffcl_module *proj = dc_module_get_child(fusion, "temb_proj");
    if (!proj) return dc_error(DIFFCL_ERR_INTERNAL, "temb_fusion: temb_proj missing");
    diffcl_tensor *b = NULL;
    diffcl_status s = diffcl_module_forward(proj, silu_temb, &b);
    if (s == DIFFCL_OK) s = dc_add_channel_bias(x, b, out);
    diffcl_tensor_free(b);
    return s;
}

/* ------------------------------------------------- per-channel bias op ---- */

#define BIAS_FWD(T)                                                                        \
    do {                                                                                   \
        const T *px = (const T *)dc_data(xc), *pb = (const T *)dc_data(bc);                \
        T *po = (T *)dc_data(r);                                                           \
        _Pragma("omp parallel for num_threads(nt) schedule(static)")                       \
        for (int64_t p = 0; p < planes; p++) {                                             \
            const T v = pb[p];                                                             \
            const T *a = px + p * S;                                                       \
            T *o = po + p * S;                                                             \
            for (int64_t i = 0; i < S; i++) o[i] = a[i] + v;                               \
        }                                                                                  \
    } while (0)

#define BIAS_BWD(T)                                                                        \
    do {                                                                                   \
        const T *pg = (const T *)dc_data(gc);                                              \
        T *pb = (T *)dc_data(gb);                                                          \
        _Pragma("omp parallel for num_threads(nt) schedule(static)")                       \
        for (int64_t p = 0; p < planes; p++) {                                             \
            double acc = 0;                                                                \
            const T *a = pg + p * S;                                                       \
            for (int64_t i = 0; i < S; i++) acc += a[i];                                   \
            pb[p] = (T)acc;                                                                \
        }                                                                                  \
    } while (0)

static diffcl_status channel_bias_backward(dc_node *n, diffcl_tensor *g, diffcl_tensor **gin)
{
    const diffcl_tensor *x = n->inputs[0], *b = n->inputs[1];
    diffcl_tensor *gc = dc_contiguous(g);
    if (!gc) return DIFFCL_ERR_OUT_OF_MEMORY;
    if (dc_wants_grad(n, 1)) {
        int64_t planes = b->shape[0] * b->shape[1], S = planes ? dc_numel(x) / planes : 0;
        int nt = dc_threads(x->ctx);
        diffcl_tensor *gb = dc_tensor_empty(b->ctx, b->dtype, b->ndim, b->shape);
        if (!gb) {
            diffcl_tensor_free(gc);
            return DIFFCL_ERR_OUT_OF_MEMORY;
        }
        if (b->dtype == DIFFCL_F32) BIAS_BWD(float);
        else BIAS_BWD(double);
        (void)nt;
        gin[1] = gb;
    }
    if (dc_wants_grad(n, 0)) gin[0] = diffcl_tensor_retain(gc);
    diffcl_tensor_free(gc);
    return DIFFCL_OK;
}
/* x and b are read for their shapes only */
static const dc_op OP_CHANNEL_BIAS = {"channel_bias", channel_bias_backward, NULL, 0x3};

diffcl_status dc_add_channel_bias(const diffcl_tensor *x, const diffcl_tensor *b, diffcl_tensor **out)
{
    const char *fn = "channel_bias";
    DC_CHECK_ARG(out, "%s: out is NULL", fn);
    *out = NULL;
    DC_CHECK_TENSOR(x, fn);
    DC_CHECK_TENSOR(b, fn);
    if (!dc_is_float(x->dtype) || x->dtype != b->dtype)
        return dc_error(DIFFCL_ERR_DTYPE, "%s: x is %s, bias is %s; need matching f32 or f64", fn,
                        diffcl_dtype_name(x->dtype), diffcl_dtype_name(b->dtype));
    if (x->ndim < 2 || b->ndim != 2 || b->shape[0] != x->shape[0] || b->shape[1] != x->shape[1])
        return dc_error(DIFFCL_ERR_SHAPE, "%s: bias %s does not match [N, C] of x %s", fn,
                        dc_shape_str(b), dc_shape_str(x));
    diffcl_tensor *xc = dc_contiguous(x), *bc = xc ? dc_contiguous(b) : NULL;
    diffcl_tensor *r = bc ? dc_tensor_empty_like(x) : NULL;
    if (!r) {
        diffcl_tensor_free(xc);
        diffcl_tensor_free(bc);
        return DIFFCL_ERR_OUT_OF_MEMORY;
    }
    int64_t planes = x->shape[0] * x->shape[1], S = planes ? dc_numel(x) / planes : 0;
    int nt = dc_threads(x->ctx);
    if (x->dtype == DIFFCL_F32) BIAS_FWD(float);
    else BIAS_FWD(double);
    (void)nt;
    diffcl_tensor_free(xc);
    diffcl_tensor_free(bc);
    diffcl_tensor *in[2] = {(diffcl_tensor *)x, (diffcl_tensor *)b};
    dc_record(r, &OP_CHANNEL_BIAS, in, 2);
    *out = r;
    return DIFFCL_OK;
}
