/**
 * @file scan.h
 * @brief The Mamba-1 selective scan (S6), forward and backward, on the CPU.
 *
 * Semantics are those of mamba_ssm's `selective_scan_ref` (variable B and C, one state
 * matrix A per channel), for every batch b, channel d and token t:
 *
 *     delta_t = softplus(delta[b,d,t] + delta_bias[d])   (or without softplus)
 *     h_t[n]  = exp(delta_t * A[d,n]) * h_{t-1}[n] + delta_t * B[b,n,t] * u[b,d,t],  h_{-1} = 0
 *     y_t     = sum_n C[b,n,t] * h_t[n] + D[d] * u[b,d,t]
 *     out     = y * silu(z[b,d,t])                       (when z is given)
 *
 * The backward is a reverse scan (see docs/selective_scan_backward.md): the forward keeps
 * only the states at chunk boundaries (memory B*D*N*ceil(L/chunk) values), and the
 * backward recomputes each chunk's states from its checkpoint before walking it
 * backwards. Work is spread over batch x channels with OpenMP; the reductions over
 * channels (dB, dC) and over batch (dA, dD, d delta_bias) are done in a fixed order, so
 * results do not depend on the thread count.
 *
 * Ownership: every `diffcl_tensor **` output is a new tensor the caller owns
 * (diffcl_tensor_free()).
 *
 * Errors: DIFFCL_ERR_INVALID_ARGUMENT for NULL arguments or bad options, DIFFCL_ERR_SHAPE /
 * DIFFCL_ERR_DTYPE for tensors that do not fit, DIFFCL_ERR_OUT_OF_MEMORY; the detail is in
 * diffcl_last_error().
 *
 * Thread safety: a call uses its tensors' context from one thread at a time (core.h);
 * diffcl_selective_scan_memory() is pure and thread-safe.
 */
#ifndef DIFFCL_SCAN_H
#define DIFFCL_SCAN_H

#include "diffcl/tensor.h"

DIFFCL_BEGIN_DECLS

/** Largest state size (N) the scan supports. */
#define DIFFCL_SCAN_MAX_STATE 256

/** Options of diffcl_selective_scan(). */
typedef struct diffcl_scan_options {
    size_t struct_size; /**< sizeof(diffcl_scan_options) */
    int delta_softplus; /**< 1: delta = softplus(delta + bias) (Mamba); default 0, as
                              mamba_ssm's selective_scan_fn */
    int reverse;        /**< 1: scan from the last token to the first; equal to flipping
                              u, delta, B, C, z along L, scanning, and flipping the output */
    int chunk;          /**< tokens between state checkpoints for the backward; 0 (default):
                              about sqrt(L) */
} diffcl_scan_options;

#define DIFFCL_SCAN_OPTIONS_INIT                                                                   \
    {                                                                                              \
        sizeof(diffcl_scan_options), 0, 0, 0                                                       \
    }
/** Fill @p opts with the defaults (same as DIFFCL_SCAN_OPTIONS_INIT). */
DIFFCL_API void diffcl_scan_options_init(diffcl_scan_options *opts);

/**
 * Selective scan. Shapes: @p u, @p delta [B,D,L]; @p A [D,N]; @p B, @p C [B,N,L];
 * @p D [D] or NULL; @p z [B,D,L] or NULL; @p delta_bias [D] or NULL. All of one float dtype
 * (F32, or F64 for reference and gradient checks) and one context; any strides.
 * @p *out receives a new [B,D,L] tensor owned by the caller; the op is recorded for
 * autograd (gradients for every input that requires them). @p opts may be NULL.
 * Errors: DIFFCL_ERR_INVALID_ARGUMENT, DIFFCL_ERR_SHAPE (naming the tensor and both shapes),
 * DIFFCL_ERR_DTYPE, DIFFCL_ERR_UNSUPPORTED (N > DIFFCL_SCAN_MAX_STATE),
 * DIFFCL_ERR_OUT_OF_MEMORY.
 */
DIFFCL_API diffcl_status diffcl_selective_scan(
    const diffcl_tensor *u, const diffcl_tensor *delta, const diffcl_tensor *A,
    const diffcl_tensor *B, const diffcl_tensor *C, const diffcl_tensor *D, const diffcl_tensor *z,
    const diffcl_tensor *delta_bias, const diffcl_scan_options *opts, diffcl_tensor **out);

/**
 * Bytes the scan's backward keeps between forward and backward (the chunk checkpoints) and
 * the backward's peak workspace, for the given sizes and chunk (0 = auto). For planning
 * memory; either out-pointer may be NULL.
 */
DIFFCL_API diffcl_status diffcl_selective_scan_memory(int64_t batch, int64_t channels,
                                                      int64_t length, int64_t state,
                                                      diffcl_dtype dtype, int chunk,
                                                      size_t *saved_bytes, size_t *workspace_bytes);

DIFFCL_END_DECLS

#endif /* DIFFCL_SCAN_H */
