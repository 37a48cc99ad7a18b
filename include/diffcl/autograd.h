/**
 * @file autograd.h
 * @brief Reverse-mode automatic differentiation (eager, define-by-run).
 *
 * Every op on a tensor that requires gradients runs at once and links its output to a
 * graph node holding the op's hand-written backward and what it saved. diffcl_backward()
 * walks that graph from a scalar loss in reverse topological order, accumulates gradients
 * into the leaves (parameters) and frees the graph. Nothing is recorded while gradients are
 * disabled on the context (diffcl_set_grad_enabled(ctx, 0): the no-grad scope).
 * Ownership: diffcl_tensor_detach() hands out a new view the caller owns (release it with
 * diffcl_tensor_free()); diffcl_tensor_grad() returns a borrowed pointer, valid until the
 * gradient is dropped (diffcl_tensor_zero_grad(), the tensor's release).
 *
 * Errors: functions returning ::diffcl_status give DIFFCL_ERR_INVALID_ARGUMENT for a NULL
 * tensor or out-pointer, plus the codes named in their comments; the detail is in
 * diffcl_last_error().
 *
 * Thread safety: as every object of a context (core.h), a tensor and its graph are used by
 * one thread at a time. The grad mode belongs to the context. Gradient hooks run on the
 * thread that calls diffcl_backward().
 */
#ifndef DIFFCL_AUTOGRAD_H
#define DIFFCL_AUTOGRAD_H

#include "diffcl/tensor.h"

DIFFCL_BEGIN_DECLS

/** Mark a leaf tensor (F32/F64) as a parameter whose gradient is wanted. */
DIFFCL_API diffcl_status diffcl_tensor_set_requires_grad(diffcl_tensor *t, int requires_grad);
/** @return 1 when @p t requires gradients (a parameter, or computed from one), else 0 (also for NULL). */
DIFFCL_API int diffcl_tensor_requires_grad(const diffcl_tensor *t);
/** The accumulated gradient of a leaf (borrowed), or NULL if none yet. */
DIFFCL_API diffcl_tensor *diffcl_tensor_grad(const diffcl_tensor *t);
/** Drop the accumulated gradient (the next backward starts from zero). */
DIFFCL_API void diffcl_tensor_zero_grad(diffcl_tensor *t);
/** A view of @p t's data with no graph history and no gradient requirement. */
DIFFCL_API diffcl_status diffcl_tensor_detach(const diffcl_tensor *t, diffcl_tensor **out);

/**
 * Back-propagate from @p loss. @p grad is d(objective)/d(loss) with loss's shape (else
 * DIFFCL_ERR_SHAPE), converted to loss's dtype (0.1.0 behaviour; torch would refuse a
 * mismatch); NULL means ones (the usual case for a scalar loss). Gradients accumulate (+=) into the leaves'
 * grad tensors. The graph behind @p loss is freed afterwards: a second call fails with
 * DIFFCL_ERR_STATE.
 */
DIFFCL_API diffcl_status diffcl_backward(diffcl_tensor *loss, const diffcl_tensor *grad);

/**
 * Enable or disable graph recording on @p ctx; returns the previous setting, so a no-grad
 * scope is `int prev = diffcl_set_grad_enabled(ctx, 0); ...; diffcl_set_grad_enabled(ctx, prev);`
 */
DIFFCL_API int diffcl_set_grad_enabled(diffcl_context *ctx, int enabled);
/** @return 1 when @p ctx records graphs (the default), 0 in a no-grad scope or for NULL. */
DIFFCL_API int diffcl_grad_enabled(const diffcl_context *ctx);

/**
 * Called during diffcl_backward() once a leaf's gradient for this pass is complete (no later
 * node will add to it): the point where gradient clipping or an all-reduce can start.
 */
typedef void (*diffcl_grad_hook_fn)(diffcl_tensor *param, void *user);
/** Add a gradient-ready hook to a leaf that requires grad. Hooks run in insertion order. */
DIFFCL_API diffcl_status diffcl_tensor_add_grad_hook(diffcl_tensor *t, diffcl_grad_hook_fn fn,
                                                     void *user);
/** Remove every hook of @p t. */
DIFFCL_API void diffcl_tensor_clear_grad_hooks(diffcl_tensor *t);

/* --------------------------------------------------- gradient checking ---- */

/**
 * A function under test: from @p inputs computes one output tensor into @p *out (any shape;
 * the checker contracts it with a fixed random weighting to get a scalar).
 */
typedef diffcl_status (*diffcl_gradcheck_fn)(diffcl_tensor *const *inputs, int n_inputs,
                                             diffcl_tensor **out, void *user);

/** Options for diffcl_gradcheck(). */
typedef struct diffcl_gradcheck_options {
    size_t struct_size;
    double eps;     /**< central-difference step, default 1e-6 */
    double atol;    /**< default 1e-5 */
    double rtol;    /**< default 1e-4: pass iff |num - ana| <= atol + rtol * |num| */
    int max_checks; /**< elements probed per input (evenly spaced); 0 = all */
    uint64_t seed;  /**< for the output weighting */
} diffcl_gradcheck_options;

#define DIFFCL_GRADCHECK_OPTIONS_INIT                                                              \
    {                                                                                              \
        sizeof(diffcl_gradcheck_options), 1e-6, 1e-5, 1e-4, 0, 1234                                \
    }
/** Fill @p opts with the defaults (same as DIFFCL_GRADCHECK_OPTIONS_INIT). */
DIFFCL_API void diffcl_gradcheck_options_init(diffcl_gradcheck_options *opts);

/** Result of diffcl_gradcheck(). */
typedef struct diffcl_gradcheck_result {
    size_t struct_size;
    double max_abs_error; /**< max |numerical - analytical| */
    double max_rel_error; /**< max |num - ana| / max(|num|, |ana|, 1e-12) */
    int worst_input;      /**< input index of the worst element */
    int64_t worst_index;  /**< flat element index of it */
    int64_t n_checked;
    int n_failed;
} diffcl_gradcheck_result;

/**
 * Compare analytical gradients (diffcl_backward) with central finite differences. The
 * inputs should be F64 tensors; those with requires_grad set are checked. Returns DIFFCL_OK
 * when every probed element passes, DIFFCL_ERR_NUMERIC when some fails (details in
 * @p result and diffcl_last_error()), or the error of @p fn. @p result may be NULL.
 */
DIFFCL_API diffcl_status diffcl_gradcheck(diffcl_gradcheck_fn fn, void *user,
                                          diffcl_tensor *const *inputs, int n_inputs,
                                          const diffcl_gradcheck_options *opts,
                                          diffcl_gradcheck_result *result);

DIFFCL_END_DECLS

#endif /* DIFFCL_AUTOGRAD_H */
