/* Shared helpers of the loss layer: input validation and conversion (logits / labels /
 * weights), the blocked log-sum-exp kernel, and the fixed block size that makes every
 * reduction independent of the thread count (per-block partials, summed in order). */
#ifndef DIFFCL_LOSS_INTERNAL_H
#define DIFFCL_LOSS_INTERNAL_H

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "diffcl/loss.h"
#include "tensor/tensor_internal.h"

/* Voxels per block of the segmentation kernels (and per partial sum). */
#define DC_LOSS_BLOCK 256

/* Copy the caller's options over the defaults, only the fields its header version knew. */
#define DC_LOSS_OPTS(dst, src, INIT)                                                               \
    do {                                                                                           \
        __typeof__(dst) dc_def_ = INIT;                                                            \
        (dst) = dc_def_;                                                                           \
        (void)dc_options_read(&(dst), sizeof(dst), (src), 0, 1, "loss options");                   \
    } while (0)

/* Element i of a contiguous tensor of any dtype, as double. */
static inline double dc_loss_load(const void *p, diffcl_dtype d, int64_t i)
{
    switch (d) {
    case DIFFCL_F32: return ((const float *)p)[i];
    case DIFFCL_F64: return ((const double *)p)[i];
    case DIFFCL_U8: return ((const uint8_t *)p)[i];
    case DIFFCL_I32: return ((const int32_t *)p)[i];
    case DIFFCL_I64: return (double)((const int64_t *)p)[i];
    }
    return 0;
}

/* Element i of a contiguous integer tensor as int64 (floats truncated). */
static inline int64_t dc_loss_label(const void *p, diffcl_dtype d, int64_t i)
{
    switch (d) {
    case DIFFCL_U8: return ((const uint8_t *)p)[i];
    case DIFFCL_I32: return ((const int32_t *)p)[i];
    case DIFFCL_I64: return ((const int64_t *)p)[i];
    case DIFFCL_F32: return (int64_t)((const float *)p)[i];
    case DIFFCL_F64: return (int64_t)((const double *)p)[i];
    }
    return 0;
}

/*
 * Check @p x [N,C,...] (float, rank 2..5) against @p t (x's shape without axis 1) and
 * report N, C and S (voxels per sample). @p xname / @p tname name them in messages.
 * @p t may be NULL (only x is checked).
 */
diffcl_status dc_loss_split(const char *fn, const diffcl_tensor *x, const char *xname,
                            const diffcl_tensor *t, const char *tname, int64_t *N, int64_t *C,
                            int64_t *S);

/*
 * Voxel weights: @p w must have @p like's shape (any dtype). Returns a new contiguous tensor
 * of @p dtype in @p *out, or NULL in @p *out when @p w is NULL. NaN or negative weights are
 * rejected.
 */
diffcl_status dc_loss_weights(const char *fn, const diffcl_tensor *w, const diffcl_tensor *like,
                              diffcl_dtype dtype, diffcl_tensor **out);

/*
 * Class labels as a new I32 tensor [numel(t)]: values in [0, n_classes), -1 where the target
 * is @p ignore_index or the weight @p w (a dc_loss_weights() result, may be NULL) is 0.
 * Any other value is an error naming the voxel.
 */
diffcl_status dc_loss_labels(const char *fn, const diffcl_tensor *t, int64_t n_classes,
                             int64_t ignore_index, const diffcl_tensor *w, int n_threads,
                             diffcl_tensor **out);

/* Class weights [C] (float tensor) as a malloc'ed double array; NULL in *out when cw is NULL. */
diffcl_status dc_loss_class_weights(const char *fn, const diffcl_tensor *cw, int64_t C,
                                    double **out);

/* A new 0-d tensor of @p dtype holding @p v (NULL on failure, error set). */
diffcl_tensor *dc_loss_scalar(diffcl_context *ctx, diffcl_dtype dtype, double v);

/* The value of a 0-d (or one-element) upstream gradient. */
static inline double dc_loss_gval(const diffcl_tensor *g)
{
    return g->dtype == DIFFCL_F32 ? (double)dc_f32(g)[0] : dc_f64(g)[0];
}

/*
 * Log-sum-exp over the class axis for B <= DC_LOSS_BLOCK consecutive voxels: x points at
 * class 0 of the first voxel, classes are S apart. Loops run class-outer, voxel-inner so
 * they vectorise over voxels.
 */
#define T float
#define SFX f32
#define EXP expf
#define LOG logf
#include "loss/lse_block_kernels.inc"
#define T double
#define SFX f64
#define EXP exp
#define LOG log
#include "loss/lse_block_kernels.inc"

#endif
