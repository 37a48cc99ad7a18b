/**
 * @file tensor.h
 * @brief N-d tensors (up to 5 dims, NCDHW), views, elementwise ops, reductions, matmul.
 *
 * A tensor is an opaque, reference-counted handle onto strided storage. Views (reshape of a
 * contiguous tensor, permute, slice, narrow, unsqueeze, squeeze, expand) share storage and copy
 * nothing. Storage is 64-byte aligned. Every op creates a new tensor in @p *out, which
 * the caller owns and releases with diffcl_tensor_free(); ops on tensors that require
 * gradients are recorded for diffcl_backward() (see autograd.h).
 *
 * Compute dtypes are F32 and F64 (F64 serves reference and gradient checks); U8, I32 and
 * I64 hold labels and counters. Binary ops broadcast as NumPy/PyTorch do and require both
 * operands of one dtype.
 *
 * Ownership: every `diffcl_tensor **out` receives a new handle (a new tensor or a view
 * sharing storage) that the caller owns and releases with diffcl_tensor_free(); release it
 * only after DIFFCL_OK (on error nothing is handed out). Pointers returned by getters
 * (diffcl_tensor_context(), diffcl_tensor_data()) are borrowed and valid while @p t lives.
 *
 * Errors: functions returning ::diffcl_status give DIFFCL_ERR_INVALID_ARGUMENT for a NULL
 * tensor, context or out-pointer, a bad axis, index, shape argument or size;
 * DIFFCL_ERR_SHAPE for shapes that do not match or broadcast; DIFFCL_ERR_DTYPE for an
 * unsupported or mismatched dtype; DIFFCL_ERR_OUT_OF_MEMORY; the detail is in
 * diffcl_last_error(). Queries on a NULL tensor return 0 (or NULL, -1 where stated).
 *
 * Thread safety: a tensor belongs to its context and is used by one thread at a time
 * (core.h); this includes diffcl_tensor_retain() and diffcl_tensor_free(), whose reference
 * counts are not atomic. diffcl_dtype_size() and diffcl_dtype_name() are thread-safe.
 */
#ifndef DIFFCL_TENSOR_H
#define DIFFCL_TENSOR_H

#include "diffcl/core.h"

DIFFCL_BEGIN_DECLS

#define DIFFCL_MAX_DIMS 5

typedef enum diffcl_dtype {
    DIFFCL_F32 = 0,
    DIFFCL_F64 = 1,
    DIFFCL_U8 = 2,
    DIFFCL_I32 = 3,
    DIFFCL_I64 = 4
} diffcl_dtype;

typedef struct diffcl_tensor diffcl_tensor;

/** Called when the last tensor viewing user memory is released. */
typedef void (*diffcl_deleter_fn)(void *data, void *user);

/** @return bytes per element of @p dtype, 0 if unknown. */
DIFFCL_API size_t diffcl_dtype_size(diffcl_dtype dtype);
/** @return "f32", "f64", "u8", "i32", "i64", or "?". */
DIFFCL_API const char *diffcl_dtype_name(diffcl_dtype dtype);

/* ------------------------------------------------------------ lifetime ---- */

/** New contiguous tensor filled with zeros. @p ndim in 0..5 (0 = scalar). */
DIFFCL_API diffcl_status diffcl_tensor_new(diffcl_context *ctx, diffcl_dtype dtype, int ndim,
                                           const int64_t *shape, diffcl_tensor **out);
/** New contiguous tensor holding a copy of @p data (row-major, numel elements of @p dtype). */
DIFFCL_API diffcl_status diffcl_tensor_from_data(diffcl_context *ctx, diffcl_dtype dtype, int ndim,
                                                 const int64_t *shape, const void *data,
                                                 diffcl_tensor **out);
/**
 * Wrap user memory without copying. @p strides are in elements (NULL: row-major).
 * @p deleter (may be NULL) is called with (data, user) when the last view is released;
 * until then the memory must stay valid. libdiffcl may write into it only through
 * functions documented as in-place (diffcl_tensor_copy_from, fills). When the call fails the
 * deleter is not called: the memory stays the caller's.
 */
DIFFCL_API diffcl_status diffcl_tensor_wrap(diffcl_context *ctx, diffcl_dtype dtype, int ndim,
                                            const int64_t *shape, const int64_t *strides,
                                            void *data, diffcl_deleter_fn deleter, void *user,
                                            diffcl_tensor **out);
/** Add a reference; returns @p t. */
DIFFCL_API diffcl_tensor *diffcl_tensor_retain(diffcl_tensor *t);
/** Drop a reference; the last one frees the tensor. NULL is ignored. */
DIFFCL_API void diffcl_tensor_free(diffcl_tensor *t);

/* ------------------------------------------------------------- queries ---- */

/** Number of axes (0 for a scalar, and for NULL). */
DIFFCL_API int diffcl_tensor_ndim(const diffcl_tensor *t);
/** Size of axis @p axis (negative counts from the end); -1 if out of range. */
DIFFCL_API int64_t diffcl_tensor_dim(const diffcl_tensor *t, int axis);
/** Copy the shape into shape[0..ndim); returns ndim. */
DIFFCL_API int diffcl_tensor_shape(const diffcl_tensor *t, int64_t shape[DIFFCL_MAX_DIMS]);
/** Copy the element strides into strides[0..ndim); returns ndim. */
DIFFCL_API int diffcl_tensor_strides(const diffcl_tensor *t, int64_t strides[DIFFCL_MAX_DIMS]);
/** Number of elements (1 for a scalar; 0 for NULL). */
DIFFCL_API int64_t diffcl_tensor_numel(const diffcl_tensor *t);
/** Element type (DIFFCL_F32 for NULL). */
DIFFCL_API diffcl_dtype diffcl_tensor_dtype(const diffcl_tensor *t);
/** 1 when the elements are row-major without gaps, else 0 (also for NULL). */
DIFFCL_API int diffcl_tensor_is_contiguous(const diffcl_tensor *t);
/** The context the tensor was made in (borrowed). */
DIFFCL_API diffcl_context *diffcl_tensor_context(const diffcl_tensor *t);
/** Address of element [0,...,0] (borrowed; valid while @p t lives). */
DIFFCL_API void *diffcl_tensor_data(diffcl_tensor *t);
/** Read-only address of element [0,...,0] (borrowed; valid while @p t lives; NULL for NULL). */
DIFFCL_API const void *diffcl_tensor_data_const(const diffcl_tensor *t);

/* ----------------------------------------------------------- copy in/out ---- */

/** Copy the elements, in row-major order, to @p buf of @p nbytes (must be numel*size). */
DIFFCL_API diffcl_status diffcl_tensor_copy_to(const diffcl_tensor *t, void *buf, size_t nbytes);
/** In place: overwrite the elements of @p t from row-major @p buf (not recorded by autograd). */
DIFFCL_API diffcl_status diffcl_tensor_copy_from(diffcl_tensor *t, const void *buf, size_t nbytes);
/** Deep copy into a new contiguous tensor (recorded by autograd). */
DIFFCL_API diffcl_status diffcl_tensor_clone(const diffcl_tensor *t, diffcl_tensor **out);
/** @p t itself (retained) if contiguous, else a contiguous copy. */
DIFFCL_API diffcl_status diffcl_tensor_contiguous(const diffcl_tensor *t, diffcl_tensor **out);
/** Convert element type (F32<->F64 differentiable; to/from integers not). */
DIFFCL_API diffcl_status diffcl_tensor_to_dtype(const diffcl_tensor *t, diffcl_dtype dtype,
                                                diffcl_tensor **out);
/** Read one element as double; @p index has ndim entries. */
DIFFCL_API diffcl_status diffcl_tensor_get(const diffcl_tensor *t, const int64_t *index,
                                           double *value);
/** In place: write one element (not recorded by autograd). */
DIFFCL_API diffcl_status diffcl_tensor_set(diffcl_tensor *t, const int64_t *index, double value);
/** Value of a one-element tensor as double. */
DIFFCL_API diffcl_status diffcl_tensor_item(const diffcl_tensor *t, double *value);

/* ---------------------------------------------------------------- fills ---- */

/** In place: set every element to @p value. */
DIFFCL_API diffcl_status diffcl_tensor_fill(diffcl_tensor *t, double value);
/** In place: uniform [lo, hi) from @p key (element i is draw i, whatever the thread count). */
DIFFCL_API diffcl_status diffcl_tensor_fill_uniform(diffcl_tensor *t, diffcl_rng_key key, double lo,
                                                    double hi);
/** In place: normal(mean, stddev) from @p key. */
DIFFCL_API diffcl_status diffcl_tensor_fill_normal(diffcl_tensor *t, diffcl_rng_key key,
                                                   double mean, double stddev);

/* ---------------------------------------------------------------- views ---- */

/** View with a new shape (one entry may be -1). Copies only if @p t is not contiguous. */
DIFFCL_API diffcl_status diffcl_tensor_reshape(const diffcl_tensor *t, int ndim,
                                               const int64_t *shape, diffcl_tensor **out);
/** View with axes reordered: out axis i is input axis perm[i]. */
DIFFCL_API diffcl_status diffcl_tensor_permute(const diffcl_tensor *t, const int *perm,
                                               diffcl_tensor **out);
/** View of elements start, start+step, ... < stop along @p axis (step >= 1). */
DIFFCL_API diffcl_status diffcl_tensor_slice(const diffcl_tensor *t, int axis, int64_t start,
                                             int64_t stop, int64_t step, diffcl_tensor **out);
/** View of @p length elements from @p start along @p axis. */
DIFFCL_API diffcl_status diffcl_tensor_narrow(const diffcl_tensor *t, int axis, int64_t start,
                                              int64_t length, diffcl_tensor **out);
/** View with a size-1 axis inserted at @p axis. */
DIFFCL_API diffcl_status diffcl_tensor_unsqueeze(const diffcl_tensor *t, int axis,
                                                 diffcl_tensor **out);
/** View without the size-1 axis @p axis. */
DIFFCL_API diffcl_status diffcl_tensor_squeeze(const diffcl_tensor *t, int axis,
                                               diffcl_tensor **out);
/** Broadcast view to @p shape (stride 0 on expanded axes). */
DIFFCL_API diffcl_status diffcl_tensor_expand(const diffcl_tensor *t, int ndim,
                                              const int64_t *shape, diffcl_tensor **out);
/** Concatenate @p n tensors of one dtype along @p axis. */
DIFFCL_API diffcl_status diffcl_tensor_concat(diffcl_tensor *const *ts, int n, int axis,
                                              diffcl_tensor **out);

/* ---------------------------------------------------------- elementwise ---- */

/** Elementwise a + b, broadcasting (both F32 or both F64). */
DIFFCL_API diffcl_status diffcl_add(const diffcl_tensor *a, const diffcl_tensor *b,
                                    diffcl_tensor **out);
/** Elementwise a - b, broadcasting. */
DIFFCL_API diffcl_status diffcl_sub(const diffcl_tensor *a, const diffcl_tensor *b,
                                    diffcl_tensor **out);
/** Elementwise a * b, broadcasting. */
DIFFCL_API diffcl_status diffcl_mul(const diffcl_tensor *a, const diffcl_tensor *b,
                                    diffcl_tensor **out);
/** Elementwise a / b, broadcasting (division by zero gives inf/NaN as in C). */
DIFFCL_API diffcl_status diffcl_div(const diffcl_tensor *a, const diffcl_tensor *b,
                                    diffcl_tensor **out);
/** out = a * scale + shift */
DIFFCL_API diffcl_status diffcl_affine(const diffcl_tensor *a, double scale, double shift,
                                       diffcl_tensor **out);
/** out = -a */
DIFFCL_API diffcl_status diffcl_neg(const diffcl_tensor *a, diffcl_tensor **out);
/** Elementwise e^a. */
DIFFCL_API diffcl_status diffcl_exp(const diffcl_tensor *a, diffcl_tensor **out);
/** Natural log; non-positive inputs give -inf/NaN as in C. */
DIFFCL_API diffcl_status diffcl_log(const diffcl_tensor *a, diffcl_tensor **out);
/** Elementwise square root; negative inputs give NaN as in C. */
DIFFCL_API diffcl_status diffcl_sqrt(const diffcl_tensor *a, diffcl_tensor **out);
/** Elementwise a * a. */
DIFFCL_API diffcl_status diffcl_square(const diffcl_tensor *a, diffcl_tensor **out);
/** Elementwise |a| (gradient 0 at 0). */
DIFFCL_API diffcl_status diffcl_abs(const diffcl_tensor *a, diffcl_tensor **out);
/** a ** p for a scalar exponent. */
DIFFCL_API diffcl_status diffcl_pow_scalar(const diffcl_tensor *a, double p, diffcl_tensor **out);

/* ----------------------------------------------------------- reductions ---- */

/** Sum over @p axis (negative from the end); @p keepdim keeps it with size 1. */
DIFFCL_API diffcl_status diffcl_sum(const diffcl_tensor *a, int axis, int keepdim,
                                    diffcl_tensor **out);
/** Mean over @p axis (negative from the end); @p keepdim keeps it with size 1. */
DIFFCL_API diffcl_status diffcl_mean(const diffcl_tensor *a, int axis, int keepdim,
                                     diffcl_tensor **out);
/** Maximum over @p axis (gradient flows to the first maximal element). */
DIFFCL_API diffcl_status diffcl_max(const diffcl_tensor *a, int axis, int keepdim,
                                    diffcl_tensor **out);
/** Index of the first maximum over @p axis, as I64 (not differentiable). */
DIFFCL_API diffcl_status diffcl_argmax(const diffcl_tensor *a, int axis, int keepdim,
                                       diffcl_tensor **out);
/** Sum of all elements, a 0-d tensor. */
DIFFCL_API diffcl_status diffcl_sum_all(const diffcl_tensor *a, diffcl_tensor **out);
/** Mean of all elements, a 0-d tensor. */
DIFFCL_API diffcl_status diffcl_mean_all(const diffcl_tensor *a, diffcl_tensor **out);

/* --------------------------------------------------------------- matmul ---- */

/**
 * Matrix product via BLAS: [M,K]x[K,N] -> [M,N], or batched [B,M,K]x[B,K,N] -> [B,M,N].
 * @p trans_a / @p trans_b use the transposed operand ([K,M] / [N,K]).
 */
DIFFCL_API diffcl_status diffcl_matmul(const diffcl_tensor *a, const diffcl_tensor *b, int trans_a,
                                       int trans_b, diffcl_tensor **out);

DIFFCL_END_DECLS

#endif /* DIFFCL_TENSOR_H */
