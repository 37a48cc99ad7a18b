/* Row kernels of the normalisation layers: a tensor [N, C, spatial...] is a set of
 * N*C contiguous rows of `spatial` elements; batch norm groups the rows by channel,
 * group/instance norm by (sample, group). See nn_internal.h for the contracts. */
#include "layer/nn_internal.h"

#define PAR_IF (rows * len > DC_NN_PAR_MIN)

#define T float
#define SFX f
#include "layer/norm_row_kernels.inc"
#define T double
#define SFX d
#include "layer/norm_row_kernels.inc"

void dc_norm_row_sums(const diffcl_tensor *x, int64_t rows, int64_t len, const double *shift,
                      int squared, double *out, int nt)
{
    if (x->dtype == DIFFCL_F32)
        row_sums_f(dc_f32(x), rows, len, shift, squared, out, nt);
    else
        row_sums_d(dc_f64(x), rows, len, shift, squared, out, nt);
}

void dc_norm_row_affine(const diffcl_tensor *x, diffcl_tensor *y, int64_t rows, int64_t len,
                        const double *shift, const double *a, const double *b, int nt)
{
    if (x->dtype == DIFFCL_F32)
        row_affine_f(dc_f32(x), dc_f32(y), rows, len, shift, a, b, nt);
    else
        row_affine_d(dc_f64(x), dc_f64(y), rows, len, shift, a, b, nt);
}

void dc_norm_row_bwd_sums(const diffcl_tensor *x, const diffcl_tensor *g, int64_t rows, int64_t len,
                          const double *shift, double *sg, double *sgx, int nt)
{
    if (x->dtype == DIFFCL_F32)
        row_bwd_sums_f(dc_f32(x), dc_f32(g), rows, len, shift, sg, sgx, nt);
    else
        row_bwd_sums_d(dc_f64(x), dc_f64(g), rows, len, shift, sg, sgx, nt);
}

void dc_norm_row_bwd_apply(const diffcl_tensor *x, const diffcl_tensor *g, diffcl_tensor *gx,
                           int64_t rows, int64_t len, const double *shift, const double *A,
                           const double *B, const double *C, int nt)
{
    if (x->dtype == DIFFCL_F32)
        row_bwd_apply_f(dc_f32(x), dc_f32(g), dc_f32(gx), rows, len, shift, A, B, C, nt);
    else
        row_bwd_apply_d(dc_f64(x), dc_f64(g), dc_f64(gx), rows, len, shift, A, B, C, nt);
}
