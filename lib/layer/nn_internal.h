/* Helpers shared by the normalisation, activation, dropout and linear layers
 * (lib/layer/{activation,softmax,batch_norm,group_norm,layer_norm,dropout,linear}.c).
 * Nothing here is exported. */
#ifndef DIFFCL_NN_INTERNAL_H
#define DIFFCL_NN_INTERNAL_H

#include "diffcl/layer.h"
#include "layer/module_internal.h"

/* Below this many elements an elementwise kernel runs on one thread. */
#define DC_NN_PAR_MIN 32768

/* Rows per block of the deterministic blocked reductions (column sums over many rows):
 * the partial sums are laid out per block, not per thread, so results do not depend on
 * the thread count. */
#define DC_NN_ROW_BLOCK 256

/* x must be a non-NULL F32/F64 tensor; error names the function and the argument. */
static inline diffcl_status dc_nn_check_float(const diffcl_tensor *x, const char *fn,
                                              const char *what)
{
    if (!x) return dc_error(DIFFCL_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn, what);
    if (!dc_is_float(x->dtype))
        return dc_error(DIFFCL_ERR_DTYPE, "%s: %s is %s; need f32 or f64", fn, what,
                        diffcl_dtype_name(x->dtype));
    return DIFFCL_OK;
}

/* Optional per-channel vector p (weight/bias/running stat) of x's dtype and shape [c]. */
static inline diffcl_status dc_nn_check_vec(const diffcl_tensor *p, const diffcl_tensor *x,
                                            int64_t c, const char *fn, const char *what)
{
    if (!p) return DIFFCL_OK;
    if (p->dtype != x->dtype)
        return dc_error(DIFFCL_ERR_DTYPE, "%s: %s is %s but the input is %s", fn, what,
                        diffcl_dtype_name(p->dtype), diffcl_dtype_name(x->dtype));
    if (p->ndim != 1 || p->shape[0] != c)
        return dc_error(DIFFCL_ERR_SHAPE, "%s: %s has shape %s; expected [%lld]", fn, what,
                        dc_shape_str(p), (long long)c);
    if (p->ctx != x->ctx)
        return dc_error(DIFFCL_ERR_INVALID_ARGUMENT, "%s: %s belongs to another context", fn, what);
    return DIFFCL_OK;
}

/* Element i of a 1-d float tensor (any stride) as double; `dflt` when p is NULL. */
static inline double dc_nn_vec_get(const diffcl_tensor *p, int64_t i, double dflt)
{
    if (!p) return dflt;
    const char *base = (const char *)dc_data(p);
    if (p->dtype == DIFFCL_F32) return ((const float *)base)[i * p->strides[0]];
    return ((const double *)base)[i * p->strides[0]];
}

/* Copy a 1-d float tensor (or NULL -> dflt) into doubles. */
static inline void dc_nn_vec_load(const diffcl_tensor *p, int64_t c, double dflt, double *out)
{
    for (int64_t i = 0; i < c; i++) out[i] = dc_nn_vec_get(p, i, dflt);
}

/* New contiguous 1-d tensor of @p dtype holding v[0..c) (NULL on failure, error set). */
static inline diffcl_tensor *dc_nn_vec_new(diffcl_context *ctx, diffcl_dtype dtype, int64_t c,
                                           const double *v)
{
    diffcl_tensor *t = dc_tensor_empty(ctx, dtype, 1, &c);
    if (!t) return NULL;
    for (int64_t i = 0; i < c; i++) {
        if (dtype == DIFFCL_F32)
            dc_f32(t)[i] = (float)v[i];
        else
            dc_f64(t)[i] = v[i];
    }
    return t;
}

/* Write v[0..c) into a 1-d float tensor in place (any stride); not recorded by autograd. */
static inline void dc_nn_vec_store(diffcl_tensor *p, int64_t c, const double *v)
{
    char *base = (char *)dc_data(p);
    for (int64_t i = 0; i < c; i++) {
        if (p->dtype == DIFFCL_F32)
            ((float *)base)[i * p->strides[0]] = (float)v[i];
        else
            ((double *)base)[i * p->strides[0]] = v[i];
    }
}

/* Product of x's axes [from, ndim). */
static inline int64_t dc_nn_inner(const diffcl_tensor *x, int from)
{
    int64_t s = 1;
    for (int i = from; i < x->ndim; i++) s *= x->shape[i];
    return s;
}

/* Key of a layer's bias initialisation: the layer's init key with the top bit of its
 * stream flipped, so weight and bias draw independent numbers from one key. */
static inline diffcl_rng_key dc_bias_init_key(diffcl_rng_key key)
{
    key.stream ^= 0x80000000u;
    return key;
}

/* ---- row kernels shared by batch, group and instance norm (norm_kernels.c) ----
 * x, g, gx, y are contiguous F32/F64 tensors viewed as [rows, len]; per-row coefficient
 * arrays are doubles. Rows run in parallel on nt threads; every sum is accumulated in
 * double within one row, so results do not depend on the thread count. */

/* out[r] = sum_j (x[r,j] - shift[r]) (squared = 0) or sum_j (x[r,j] - shift[r])^2;
 * shift NULL means 0. */
void dc_norm_row_sums(const diffcl_tensor *x, int64_t rows, int64_t len, const double *shift,
                      int squared, double *out, int nt);
/* y[r,j] = (x[r,j] - shift[r]) * a[r] + b[r] */
void dc_norm_row_affine(const diffcl_tensor *x, diffcl_tensor *y, int64_t rows, int64_t len,
                        const double *shift, const double *a, const double *b, int nt);
/* sg[r] = sum_j g[r,j]; sgx[r] = sum_j g[r,j] (x[r,j] - shift[r]) */
void dc_norm_row_bwd_sums(const diffcl_tensor *x, const diffcl_tensor *g, int64_t rows, int64_t len,
                          const double *shift, double *sg, double *sgx, int nt);
/* gx[r,j] = A[r] g[r,j] + B[r] (x[r,j] - shift[r]) + C[r] */
void dc_norm_row_bwd_apply(const diffcl_tensor *x, const diffcl_tensor *g, diffcl_tensor *gx,
                           int64_t rows, int64_t len, const double *shift, const double *A,
                           const double *B, const double *C, int nt);

/* Pad the spatial axes of [N,C,(D),H,W] (F32/F64) by pad[a] voxels on both sides (pad[] in
 * D,H,W order; a 2-D map uses pad[1..2]): zeros, or reflection as PyTorch's "reflect"
 * (pad < length). Recorded for autograd (spatial_pad.c). */
diffcl_status dc_spatial_pad(const diffcl_tensor *x, const int64_t pad[3], int reflect,
                             diffcl_tensor **out);

#endif
