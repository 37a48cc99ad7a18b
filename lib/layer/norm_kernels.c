/* Row kernels of the normalisation layers: a tensor [N, C, spatial...] is a set of
 * N*C contiguous rows of `spatial` elements; batch norm groups the rows by channel,
 * group/instance norm by (sample, group). See nn_internal.h for the contracts. */
#include "layer/nn_internal.h"

#define PAR_IF (rows * len > DC_NN_PAR_MIN)

#define NORM_ROW_KERNELS(T, SFX)                                                              \
    static void row_sums_##SFX(const T *x, int64_t rows, int64_t len, const double *shift,    \
                               int squared, double *out, int nt)                              \
    {                                                                                         \
        _Pragma("omp parallel for num_threads(nt) schedule(static) if(PAR_IF)")               \
        for (int64_t r = 0; r < rows; r++) {                                                  \
            const T *p = x + r * len;                                                         \
            double s0 = shift ? shift[r] : 0.0, acc = 0;                                      \
            /* simd reductions: a sequential double sum cannot vectorise, and these passes \
             * are a tenth of a 2-D V-Net step */                                           \
            if (squared) {                                                                    \
                _Pragma("omp simd reduction(+ : acc)")                                        \
                for (int64_t j = 0; j < len; j++) {                                           \
                    double d = (double)p[j] - s0;                                             \
                    acc += d * d;                                                             \
                }                                                                             \
            } else {                                                                          \
                _Pragma("omp simd reduction(+ : acc)")                                        \
                for (int64_t j = 0; j < len; j++) acc += (double)p[j] - s0;                   \
            }                                                                                 \
            out[r] = acc;                                                                     \
        }                                                                                     \
    }                                                                                         \
    static void row_affine_##SFX(const T *x, T *y, int64_t rows, int64_t len,                 \
                                 const double *shift, const double *a, const double *b, int nt) \
    {                                                                                         \
        _Pragma("omp parallel for num_threads(nt) schedule(static) if(PAR_IF)")               \
        for (int64_t r = 0; r < rows; r++) {                                                  \
            const T *p = x + r * len;                                                         \
            T *q = y + r * len;                                                               \
            const T s0 = (T)shift[r], ar = (T)a[r], br = (T)b[r];                             \
            _Pragma("omp simd")                                                               \
            for (int64_t j = 0; j < len; j++) q[j] = (p[j] - s0) * ar + br;                   \
        }                                                                                     \
    }                                                                                         \
    static void row_bwd_sums_##SFX(const T *x, const T *g, int64_t rows, int64_t len,         \
                                   const double *shift, double *sg, double *sgx, int nt)      \
    {                                                                                         \
        _Pragma("omp parallel for num_threads(nt) schedule(static) if(PAR_IF)")               \
        for (int64_t r = 0; r < rows; r++) {                                                  \
            const T *p = x + r * len, *q = g + r * len;                                       \
            double s0 = shift[r], a0 = 0, a1 = 0;                                             \
            _Pragma("omp simd reduction(+ : a0, a1)")                                         \
            for (int64_t j = 0; j < len; j++) {                                               \
                a0 += (double)q[j];                                                           \
                a1 += (double)q[j] * ((double)p[j] - s0);                                     \
            }                                                                                 \
            sg[r] = a0;                                                                       \
            sgx[r] = a1;                                                                      \
        }                                                                                     \
    }                                                                                         \
    static void row_bwd_apply_##SFX(const T *x, const T *g, T *gx, int64_t rows, int64_t len, \
                                    const double *shift, const double *A, const double *B,    \
                                    const double *C, int nt)                                  \
    {                                                                                         \
        _Pragma("omp parallel for num_threads(nt) schedule(static) if(PAR_IF)")               \
        for (int64_t r = 0; r < rows; r++) {                                                  \
            const T *p = x + r * len, *q = g + r * len;                                       \
            T *o = gx + r * len;                                                              \
            const T s0 = (T)shift[r], ar = (T)A[r], br = (T)B[r], cr = (T)C[r];               \
            _Pragma("omp simd")                                                               \
            for (int64_t j = 0; j < len; j++) o[j] = ar * q[j] + br * (p[j] - s0) + cr;       \
        }                                                                                     \
    }

NORM_ROW_KERNELS(float, f)
NORM_ROW_KERNELS(double, d)

void dc_norm_row_sums(const diffcl_tensor *x, int64_t rows, int64_t len, const double *shift,
                      int squared, double *out, int nt)
{
    if (x->dtype == DIFFCL_F32) row_sums_f(dc_f32(x), rows, len, shift, squared, out, nt);
    else row_sums_d(dc_f64(x), rows, len, shift, squared, out, nt);
}

void dc_norm_row_affine(const diffcl_tensor *x, diffcl_tensor *y, int64_t rows, int64_t len,
                        const double *shift, const double *a, const double *b, int nt)
{
    if (x->dtype == DIFFCL_F32) row_affine_f(dc_f32(x), dc_f32(y), rows, len, shift, a, b, nt);
    else row_affine_d(dc_f64(x), dc_f64(y), rows, len, shift, a, b, nt);
}

void dc_norm_row_bwd_sums(const diffcl_tensor *x, const diffcl_tensor *g, int64_t rows,
                          int64_t len, const double *shift, double *sg, double *sgx, int nt)
{
    if (x->dtype == DIFFCL_F32) row_bwd_sums_f(dc_f32(x), dc_f32(g), rows, len, shift, sg, sgx, nt);
    else row_bwd_sums_d(dc_f64(x), dc_f64(g), rows, len, shift, sg, sgx, nt);
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
