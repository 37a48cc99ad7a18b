/**
 * @file layer.h
 * @brief Normalisation, activation, dropout, linear and container layers.
 *
 * Functional ops record their backward when an input requires grad. Module constructors
 * create PyTorch-named parameters (`weight`, `bias`) and buffers (`running_mean`,
 * `running_var`, `num_batches_tracked`).
 *
 * Ownership: every `diffcl_tensor **` output is a new tensor the caller owns
 * (diffcl_tensor_free()); every `diffcl_module **` output a new module the caller owns
 * (diffcl_module_free()) until it is handed to a container (diffcl_sequential_append()).
 *
 * Errors: DIFFCL_ERR_INVALID_ARGUMENT for a NULL tensor, context or out-pointer, a bad axis
 * or option; DIFFCL_ERR_DTYPE for an input that is not F32/F64 or dtypes that differ;
 * DIFFCL_ERR_SHAPE for shapes that do not fit; DIFFCL_ERR_OUT_OF_MEMORY; the detail is in
 * diffcl_last_error(). On error nothing is handed out.
 *
 * Thread safety: as every op, a call uses its tensors' context from one thread at a time
 * (core.h).
 */
#ifndef DIFFCL_LAYER_H
#define DIFFCL_LAYER_H

#include "diffcl/module.h"

DIFFCL_BEGIN_DECLS

/* ------------------------------------------------------------- activations ---- */

/** ReLU: max(x, 0), elementwise (F32/F64). */
DIFFCL_API diffcl_status diffcl_relu(const diffcl_tensor *x, diffcl_tensor **out);
/** Leaky ReLU: x for x > 0, else @p negative_slope * x (PyTorch's default slope is 0.01). */
DIFFCL_API diffcl_status diffcl_leaky_relu(const diffcl_tensor *x, double negative_slope,
                                           diffcl_tensor **out);
/** SiLU (swish): x * sigmoid(x). */
DIFFCL_API diffcl_status diffcl_silu(const diffcl_tensor *x, diffcl_tensor **out);
/** GELU, exact (erf) form as PyTorch's default. */
DIFFCL_API diffcl_status diffcl_gelu(const diffcl_tensor *x, diffcl_tensor **out);
/** Logistic sigmoid 1 / (1 + exp(-x)). */
DIFFCL_API diffcl_status diffcl_sigmoid(const diffcl_tensor *x, diffcl_tensor **out);
/** softplus(x) = log(1 + exp(x)), taken as x above 20 (PyTorch's defaults: beta 1, threshold 20). */
DIFFCL_API diffcl_status diffcl_softplus(const diffcl_tensor *x, diffcl_tensor **out);
/** Softmax over @p axis (the class axis is 1 for NC... tensors). */
DIFFCL_API diffcl_status diffcl_softmax(const diffcl_tensor *x, int axis, diffcl_tensor **out);
/** log(softmax(x)) over @p axis, as x - logsumexp(x) with the maximum subtracted (stable). */
DIFFCL_API diffcl_status diffcl_log_softmax(const diffcl_tensor *x, int axis, diffcl_tensor **out);

/* ------------------------------------------------------------ normalisation ---- */

/**
 * Batch normalisation over N and the spatial axes of x [N,C,...]. In training
 * (@p training = 1) it uses batch statistics and, when @p running_mean / @p running_var are
 * given, updates them in place as PyTorch does: r = (1-momentum) r + momentum * stat, with
 * the unbiased variance; in evaluation it normalises with the running statistics.
 * @p weight / @p bias ([C]) may be NULL (no affine).
 */
DIFFCL_API diffcl_status diffcl_batch_norm(const diffcl_tensor *x, diffcl_tensor *running_mean,
                                           diffcl_tensor *running_var, const diffcl_tensor *weight,
                                           const diffcl_tensor *bias, int training, double momentum,
                                           double eps, diffcl_tensor **out);
/** Group normalisation (instance norm = groups equal to channels; no running stats). */
DIFFCL_API diffcl_status diffcl_group_norm(const diffcl_tensor *x, int groups,
                                           const diffcl_tensor *weight, const diffcl_tensor *bias,
                                           double eps, diffcl_tensor **out);
/** Layer normalisation over the last axis ([..., C]); weight/bias [C] or NULL. */
DIFFCL_API diffcl_status diffcl_layer_norm(const diffcl_tensor *x, const diffcl_tensor *weight,
                                           const diffcl_tensor *bias, double eps,
                                           diffcl_tensor **out);

/* ------------------------------------------------------------------ dropout ---- */

/**
 * Dropout with probability @p p, scaling kept values by 1/(1-p). @p channelwise drops whole
 * channels (Dropout2d/3d: one draw per [n, c]). Draws come from @p key. Identity when
 * @p training is 0 or p is 0.
 */
DIFFCL_API diffcl_status diffcl_dropout(const diffcl_tensor *x, double p, int channelwise,
                                        int training, diffcl_rng_key key, diffcl_tensor **out);

/* ------------------------------------------------------------------- linear ---- */

/** y = x W^T + b over the last axis: x [..., in], W [out, in], b [out] or NULL. */
DIFFCL_API diffcl_status diffcl_linear(const diffcl_tensor *x, const diffcl_tensor *w,
                                       const diffcl_tensor *b, diffcl_tensor **out);

/* ------------------------------------------------------------------ modules ---- */

typedef enum diffcl_norm_kind {
    DIFFCL_NORM_NONE = 0,
    DIFFCL_NORM_BATCH = 1,
    DIFFCL_NORM_INSTANCE = 2,
    DIFFCL_NORM_GROUP = 3,
    DIFFCL_NORM_LAYER = 4
} diffcl_norm_kind;

/** Options of a normalisation module. */
typedef struct diffcl_norm_options {
    size_t struct_size;
    diffcl_norm_kind kind;
    int channels;
    int groups;              /**< group norm only (default 16, clamped to channels) */
    int affine;              /**< learnable weight/bias (default 1) */
    int track_running_stats; /**< batch / instance norm (default 1; PyTorch's
                                   InstanceNorm default is affine = 0, track = 0) */
    double momentum;         /**< default 0.1 */
    double eps;              /**< default 1e-5 */
} diffcl_norm_options;

#define DIFFCL_NORM_OPTIONS_INIT                                                                   \
    {                                                                                              \
        sizeof(diffcl_norm_options), DIFFCL_NORM_BATCH, 1, 16, 1, 1, 0.1, 1e-5                     \
    }
/** Fill @p opts with the defaults (same as DIFFCL_NORM_OPTIONS_INIT). */
DIFFCL_API void diffcl_norm_options_init(diffcl_norm_options *opts);
/** BatchNorm{1,2,3}d / InstanceNorm / GroupNorm / LayerNorm module (PyTorch names). */
DIFFCL_API diffcl_status diffcl_norm_create(diffcl_context *ctx, const diffcl_norm_options *opts,
                                            diffcl_module **out);

typedef enum diffcl_activation_kind {
    DIFFCL_ACT_RELU = 0,
    DIFFCL_ACT_LEAKY_RELU = 1, /**< slope 0.01 */
    DIFFCL_ACT_SILU = 2,
    DIFFCL_ACT_GELU = 3,
    DIFFCL_ACT_SIGMOID = 4
} diffcl_activation_kind;

/** Parameter-free activation module. */
DIFFCL_API diffcl_status diffcl_activation_create(diffcl_context *ctx, diffcl_activation_kind kind,
                                                  diffcl_module **out);
/**
 * Dropout module; its draws use the key (seed, stream, step, k) where step is set by
 * diffcl_module_set_step() and k counts its training forwards since, so runs are
 * reproducible from the seed and across resumes.
 */
DIFFCL_API diffcl_status diffcl_dropout_create(diffcl_context *ctx, double p, int channelwise,
                                               uint64_t seed, uint32_t stream, diffcl_module **out);
/**
 * Linear module: `weight` [out,in], `bias` [out]; PyTorch init (both uniform in
 * +-1/sqrt(in)): the weight draws from @p init_key, the bias from @p init_key with the top
 * bit of its stream flipped.
 */
DIFFCL_API diffcl_status diffcl_linear_create(diffcl_context *ctx, int in_features,
                                              int out_features, int bias, diffcl_rng_key init_key,
                                              diffcl_module **out);
/**
 * Sequential container: children named "0", "1", ... run in order.
 * diffcl_sequential_append() takes ownership of @p child (on failure it is freed, unless it
 * already belongs to another tree: DIFFCL_ERR_STATE, the child stays with its owner).
 */
DIFFCL_API diffcl_status diffcl_sequential_create(diffcl_context *ctx, diffcl_module **out);
/**
 * Append @p child to the sequential @p seq as its next child ("0", "1", ...); @p seq takes
 * ownership of it.
 * Errors: DIFFCL_ERR_STATE when @p child already belongs to a module tree (it stays with
 * its owner); DIFFCL_ERR_INVALID_ARGUMENT when @p seq is NULL or not a sequential, @p child
 * is NULL or @p seq itself, or the two have different contexts (then @p child is freed,
 * unless it is @p seq).
 */
DIFFCL_API diffcl_status diffcl_sequential_append(diffcl_module *seq, diffcl_module *child);

DIFFCL_END_DECLS

#endif /* DIFFCL_LAYER_H */
