/* Internal convolution kernels shared by conv.c (convolution and transposed convolution),
 * pool.c and upsample.c.
 *
 * Every 2-d case is run as a 3-d one with a leading spatial axis of size 1 (kernel 1,
 * stride 1, padding 0, dilation 1), so one set of kernels serves both.
 *
 * The three convolution primitives (per dtype, F32 and F64 from one template):
 *   fwd:         y[n]  = W  (*) x[n] + b          x [N,Ci,I], w [Co,Ci,k], y [N,Co,P]
 *   bwd_data:    dx[n] = W^T (*) dy[n]           (the adjoint of fwd in x)
 *   bwd_weight:  dW    = sum_n dy[n] (*) x[n],   db = sum dy
 * Transposed convolution is the adjoint: its forward is bwd_data, its input gradient is fwd
 * and its weight gradient bwd_weight with the roles of x and dy swapped.
 *
 * Two kernel families:
 *  - F32 on CPUs with AVX-512 (the default there): conv_avx512.c, our own GEMM micro-kernels
 *    and direct kernels; see its header for the path per convolution kind (channel-vector
 *    direct kernels for stride 1, space-to-depth + plain GEMMs for kernel == stride, ...).
 *    DIFFCL_CONV_KERNEL=blas in the environment selects the other family.
 *  - BLAS (F64 always, F32 elsewhere): conv_kernels.inc. Output voxels are cut into tiles of
 *    whole output rows so the column buffer (K = Ci*kvol rows x tile columns) stays under a
 *    bounded workspace from dc_scratch; each tile is packed (vol2col) and fed to one
 *    cblas_sgemm/dgemm. With several tiles per thread the tiles run in parallel, each thread
 *    packing its own tile and calling a single-threaded GEMM (OpenBLAS's OpenMP build runs
 *    sequentially inside a parallel region; its pthreads build is told so); otherwise tiles
 *    run one after another with parallel packing and threaded GEMM. 1x1x1 convolutions skip
 *    the columns; kernel == stride convolutions unpack by a plain scatter (no overlap); the
 *    input gradient of a stride-1 convolution is the forward convolution of dy with the
 *    flipped, transposed kernel (no scatter-add at all).
 */
#ifndef DIFFCL_CONV_INTERNAL_H
#define DIFFCL_CONV_INTERNAL_H

#include "diffcl/layer_conv.h"
#include "tensor/tensor_internal.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* OpenMP helpers (no-ops in a build without OpenMP). */
#ifdef _OPENMP
#define DC_PRAGMA(x) _Pragma(#x)
#define DC_OMP_PARALLEL_FOR(nt) DC_PRAGMA(omp parallel for num_threads(nt) schedule(static))
#define DC_OMP_PARALLEL_FOR_DYNAMIC(nt) DC_PRAGMA(omp parallel for num_threads(nt) schedule(dynamic, 1))
#define DC_OMP_PARALLEL(nt) DC_PRAGMA(omp parallel num_threads(nt))
#define DC_OMP_FOR DC_PRAGMA(omp for schedule(static))
#define DC_OMP_FOR_DYNAMIC DC_PRAGMA(omp for schedule(dynamic, 1))
static inline int dc_omp_thread(void)
{
    return omp_get_thread_num();
}
#else
#define DC_OMP_PARALLEL_FOR(nt)
#define DC_OMP_PARALLEL_FOR_DYNAMIC(nt)
#define DC_OMP_PARALLEL(nt)
#define DC_OMP_FOR
#define DC_OMP_FOR_DYNAMIC
static inline int dc_omp_thread(void)
{
    return 0;
}
#endif

/* Geometry of one convolution in 3-d form. "in" is the convolution's input side, "out" its
 * output side (for a transposed convolution these are its output and input). */
typedef struct dc_cgeo {
    int64_t n, ci, co;
    int64_t in[3], out[3];
    int k[3], s[3], p[3], d[3];
} dc_cgeo;

static inline int64_t dc_cgeo_kvol(const dc_cgeo *g)
{
    return (int64_t)g->k[0] * g->k[1] * g->k[2];
}
static inline int64_t dc_cgeo_in_vox(const dc_cgeo *g)
{
    return g->in[0] * g->in[1] * g->in[2];
}
static inline int64_t dc_cgeo_out_vox(const dc_cgeo *g)
{
    return g->out[0] * g->out[1] * g->out[2];
}

/* 1x1x1, stride 1, no padding: the convolution is a plain GEMM on the input */
static inline int dc_conv_is_pointwise(const dc_cgeo *g)
{
    for (int a = 0; a < 3; a++)
        if (g->k[a] != 1 || g->s[a] != 1 || g->p[a] != 0) return 0;
    return 1;
}

/* kernel == stride, no padding, no dilation: windows tile the input without overlap */
static inline int dc_conv_is_nonoverlap(const dc_cgeo *g)
{
    for (int a = 0; a < 3; a++)
        if (g->k[a] != g->s[a] || g->p[a] != 0 || (g->d[a] != 1 && g->k[a] != 1)) return 0;
    return 1;
}

/* stride 1 with padding <= d(k-1) on every axis: the input gradient is a forward
 * convolution of dy with the flipped kernel */
static inline int dc_conv_bwd_data_as_fwd(const dc_cgeo *g)
{
    for (int a = 0; a < 3; a++)
        if (g->s[a] != 1 || g->p[a] > g->d[a] * (g->k[a] - 1)) return 0;
    return 1;
}

/* Kernels on contiguous data. ctx gives threads and scratch. bias / db may be NULL;
 * dw may be NULL (only db wanted). The bwd_data result is overwritten, not accumulated. */
diffcl_status dc_kern_conv_fwd_f32(diffcl_context *ctx, const dc_cgeo *g, const float *x,
                                   const float *w, const float *bias, float *y);
diffcl_status dc_kern_conv_bwd_data_f32(diffcl_context *ctx, const dc_cgeo *g, const float *dy,
                                        const float *w, float *dx);
diffcl_status dc_kern_conv_bwd_weight_f32(diffcl_context *ctx, const dc_cgeo *g, const float *x,
                                          const float *dy, float *dw, float *db);
diffcl_status dc_kern_conv_fwd_f64(diffcl_context *ctx, const dc_cgeo *g, const double *x,
                                   const double *w, const double *bias, double *y);
diffcl_status dc_kern_conv_bwd_data_f64(diffcl_context *ctx, const dc_cgeo *g, const double *dy,
                                        const double *w, double *dx);
diffcl_status dc_kern_conv_bwd_weight_f64(diffcl_context *ctx, const dc_cgeo *g, const double *x,
                                          const double *dy, double *dw, double *db);

/* out[c] = sum of x [N,C,vox] over samples and voxels; x [N,C,vox] += bias[c]. */
void dc_kern_channel_sum_f32(diffcl_context *ctx, const float *x, int64_t n, int64_t c, int64_t vox,
                             float *out);
void dc_kern_channel_sum_f64(diffcl_context *ctx, const double *x, int64_t n, int64_t c,
                             int64_t vox, double *out);
void dc_kern_add_channel_bias_f32(diffcl_context *ctx, float *x, int64_t n, int64_t c, int64_t vox,
                                  const float *bias);
void dc_kern_add_channel_bias_f64(diffcl_context *ctx, double *x, int64_t n, int64_t c, int64_t vox,
                                  const double *bias);

/* Column-buffer budget per thread in bytes and the minimum tile width in output voxels
 * (tests shrink both to exercise tiling; 0 restores a default). Per context (its
 * conv_* fields): meant for tests and benchmarks. */
void dc_conv_set_tiling(diffcl_context *ctx, size_t tile_bytes, int64_t min_cols);
void dc_conv_tiling_knobs(const diffcl_context *ctx, size_t *tile_bytes, int64_t *min_cols);
/* Kernel family for F32: 0 automatic (AVX-512 when the CPU has it), 1 BLAS (cblas_sgemm),
 * 2 AVX-512 where available, 3/4 AVX-512 forcing cvec / direct for stride 1. Per context;
 * for tests and benchmarks. DIFFCL_CONV_KERNEL=blas in the environment still forces BLAS
 * for every context (the default's override, read once). */
void dc_conv_set_kernel(diffcl_context *ctx, int kernel);

/* F32 kernels with our own AVX-512 GEMM micro-kernels (conv_avx512.c); usable() tells
 * whether the CPU has AVX-512 and the BLAS family is not forced. bwd_weight fills dw only. */
int dc_kern_conv512_usable(const diffcl_context *ctx);
diffcl_status dc_kern_conv512_fwd(diffcl_context *ctx, const dc_cgeo *g, const float *x,
                                  const float *w, const float *bias, float *y);
diffcl_status dc_kern_conv512_bwd_data(diffcl_context *ctx, const dc_cgeo *g, const float *dy,
                                       const float *w, float *dx);
diffcl_status dc_kern_conv512_bwd_weight(diffcl_context *ctx, const dc_cgeo *g, const float *x,
                                         const float *dy, float *dw);
/* Force the execution mode for tests: 0 automatic, 1 tiles in parallel, 2 tiles in turn. */
void dc_conv_set_mode(diffcl_context *ctx, int mode);

/* Read a caller's geometry (struct_size-aware) into @p out, validated for @p what.
 * @p pool: kernels are windows (dilation allowed only for max pooling). */
diffcl_status dc_conv_geometry_read(const diffcl_conv_geometry *g, const char *what,
                                    diffcl_conv_geometry *out);

#endif
