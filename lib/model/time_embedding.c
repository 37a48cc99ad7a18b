/* Time conditioning of the denoiser:
 *   sinusoid(t) [N, 128] -> temb.dense.0 Linear(128, 512) -> SiLU -> temb.dense.1 Linear(512, 512)
 * and, at each conditioned stage, TembFusion: x + temb_proj(SiLU(temb))[:, :, None, None(, None)],
 * the projection a per-channel bias broadcast over the volume (dc_add_channel_bias, an op with
 * its own backward, in lib/tensor/channel_bias.c). */
#include <math.h>

#include "model/diffusion_internal.h"

/* ------------------------------------------------------------ sinusoid ---- */

diffcl_status dc_timestep_embedding(diffcl_context *ctx, const int64_t *t, int n, int dim,
                                    diffcl_dtype dtype, diffcl_tensor **out)
{
    *out = NULL;
    DC_CHECK_ARG(dim >= 4 && dim % 2 == 0, "time embedding: dim %d must be even and >= 4", dim);
    DC_CHECK_ARG(dtype == DIFFCL_F32 || dtype == DIFFCL_F64,
                 "time embedding: dtype must be f32 or f64");
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
    return diffcl_linear_create(
        ctx, in, outf, 1, diffcl_rng_key_make(seed, DC_STREAM_DIFFUSION_INIT, (*counter)++, 0),
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
    diffcl_module *l0 = diffcl_module_child(temb, "dense.0"),
                  *l1 = diffcl_module_child(temb, "dense.1");
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
