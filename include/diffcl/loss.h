/**
 * @file loss.h
 * @brief Segmentation losses (cross-entropy, soft Dice, DiceCE, MSE), the prototype
 *        contrastive loss (InfoNCE) with its prototype helpers, and ramp-up weights.
 *
 * Every loss is a differentiable op: it returns a new 0-d tensor of the logits' dtype
 * (F32 or F64) in @p *out, owned by the caller, and records a hand-written backward when an
 * input requires gradients. Softmax is fused inside (probabilities are never stored).
 *
 * Shapes: logits [N,C,(D),H,W] (any rank 2..5: [N,C] is one voxel per sample), targets
 * [N,(D),H,W] -- the logits' shape without the class axis -- holding class indices as U8, I32
 * or I64. A target equal to the loss's `ignore_index` is skipped; any other value outside
 * [0,C) is an error (DIFFCL_ERR_INVALID_ARGUMENT naming the voxel and value). Voxel weights
 * ("masks") have the target's shape and any dtype; they are constants (no gradient flows to
 * them, nor to class weights). Wrong shapes give DIFFCL_ERR_SHAPE, wrong dtypes
 * DIFFCL_ERR_DTYPE; a non-finite loss (NaN/Inf in the logits or weights) DIFFCL_ERR_NUMERIC.
 *
 * Thread safety: as every op, a call uses its tensors' context from one thread at a time.
 *
 * Ownership: every `diffcl_tensor **` output (the losses, the prototypes, their counts, the
 * sampled indices) is a new tensor the caller owns and releases with diffcl_tensor_free().
 *
 * Errors: besides those above, DIFFCL_ERR_INVALID_ARGUMENT for NULL tensors or
 * out-pointers and bad options, DIFFCL_ERR_OUT_OF_MEMORY; the detail is in
 * diffcl_last_error().
 */
#ifndef DIFFCL_LOSS_H
#define DIFFCL_LOSS_H

#include "diffcl/tensor.h"

DIFFCL_BEGIN_DECLS

/* ------------------------------------------------------------ cross-entropy ---- */

/** Options for diffcl_cross_entropy_loss(). */
typedef struct diffcl_ce_options {
    size_t struct_size;                /**< sizeof(diffcl_ce_options) */
    const diffcl_tensor *class_weight; /**< [C] (F32/F64) or NULL: all 1 */
    const diffcl_tensor *voxel_weight; /**< target-shaped weights/mask (any dtype) or NULL */
    int64_t ignore_index;              /**< target value to skip; default -100 (PyTorch) */
} diffcl_ce_options;

#define DIFFCL_CE_OPTIONS_INIT                                                                     \
    {                                                                                              \
        sizeof(diffcl_ce_options), NULL, NULL, -100                                                \
    }
/** Fill @p opts with the defaults (same as DIFFCL_CE_OPTIONS_INIT). */
DIFFCL_API void diffcl_ce_options_init(diffcl_ce_options *opts);

/**
 * Softmax cross-entropy, PyTorch's weighted mean:
 * loss = sum_i w[y_i] m_i (-log softmax(x_i)[y_i]) / sum_i w[y_i] m_i over the voxels i whose
 * target is not ignore_index, with w the class weights and m the voxel weights (1 when NULL).
 * With a 0/1 mask this is the mean over the masked voxels (confidence-masked pseudo labels).
 * When the denominator is 0 (every voxel ignored or masked out) the loss is 0 with a zero
 * gradient (PyTorch would give NaN). @p opts may be NULL for the defaults.
 */
DIFFCL_API diffcl_status diffcl_cross_entropy_loss(const diffcl_tensor *logits,
                                                   const diffcl_tensor *target,
                                                   const diffcl_ce_options *opts,
                                                   diffcl_tensor **out);

/* ---------------------------------------------------------------- soft Dice ---- */

/** Options for diffcl_dice_loss(). */
typedef struct diffcl_dice_options {
    size_t struct_size;                /**< sizeof(diffcl_dice_options) */
    int include_background;            /**< 0 (default): classes 1..C-1; 1: all C classes */
    int per_sample;                    /**< 0 (default): one Dice per class over the batch;
                                            1: one per (sample, class), then the mean */
    int squared;                       /**< 1 (default): denominators sum p^2 + sum g^2
                                            (SSL4MIS / UA-MT); 0: sum p + sum g */
    double smooth;                     /**< default 1e-5, added to numerator and denominator */
    const diffcl_tensor *class_weight; /**< [C] (F32/F64) or NULL: all 1 */
    const diffcl_tensor *voxel_weight; /**< target-shaped weights/mask or NULL */
    int64_t ignore_index;              /**< target value treated as masked out; default -100 */
} diffcl_dice_options;

#define DIFFCL_DICE_OPTIONS_INIT                                                                   \
    {                                                                                              \
        sizeof(diffcl_dice_options), 0, 0, 1, 1e-5, NULL, NULL, -100                               \
    }
/** Fill @p opts with the defaults (same as DIFFCL_DICE_OPTIONS_INIT). */
DIFFCL_API void diffcl_dice_options_init(diffcl_dice_options *opts);

/**
 * Soft Dice loss on softmax probabilities p against one-hot targets g, the SSL4MIS
 * `DiceLoss(softmax=True)` / UA-MT `dice_loss` form. For each used class c (and each sample
 * when per_sample), with voxel weights m (ignored voxels have m = 0):
 *   I = sum m p g,  Z = sum m p^2 (or sum m p),  Y = sum m g^2 (or sum m g),
 *   dice_c = (2 I + smooth) / (Z + Y + smooth),
 * and loss = sum_c w_c (1 - dice_c) / K over the K used classes (and averaged over samples),
 * so with class weights it divides by K as SSL4MIS does, not by the weights' sum.
 * Foreground-only (the default) needs C >= 2. @p opts may be NULL for the defaults.
 */
DIFFCL_API diffcl_status diffcl_dice_loss(const diffcl_tensor *logits, const diffcl_tensor *target,
                                          const diffcl_dice_options *opts, diffcl_tensor **out);

/* ------------------------------------------------------------------- DiceCE ---- */

/** Options for diffcl_dice_ce_loss(). */
typedef struct diffcl_dice_ce_options {
    size_t struct_size;                /**< sizeof(diffcl_dice_ce_options) */
    double dice_weight;                /**< default 1 */
    double ce_weight;                  /**< default 1 */
    const diffcl_dice_options *dice;   /**< NULL: Dice defaults */
    const diffcl_ce_options *ce;       /**< NULL: cross-entropy defaults */
    const diffcl_tensor *voxel_weight; /**< NULL, or a mask used by both terms, replacing
                                            the voxel_weight of @p dice and @p ce */
} diffcl_dice_ce_options;

#define DIFFCL_DICE_CE_OPTIONS_INIT                                                                \
    {                                                                                              \
        sizeof(diffcl_dice_ce_options), 1.0, 1.0, NULL, NULL, NULL                                 \
    }
/** Fill @p opts with the defaults (same as DIFFCL_DICE_CE_OPTIONS_INIT). */
DIFFCL_API void diffcl_dice_ce_options_init(diffcl_dice_ce_options *opts);

/**
 * dice_weight * Dice + ce_weight * CE (the supervised and the pseudo-supervised loss of
 * both Diff-CL networks). @p parts (may be NULL) receives the two unweighted values
 * {dice, ce} for logging. @p opts may be NULL for the defaults.
 */
DIFFCL_API diffcl_status diffcl_dice_ce_loss(const diffcl_tensor *logits,
                                             const diffcl_tensor *target,
                                             const diffcl_dice_ce_options *opts,
                                             diffcl_tensor **out, double parts[2]);

/* ---------------------------------------------------------------------- MSE ---- */

/**
 * Mean squared error mean((input - target)^2) (F.mse_loss), with gradients to both
 * @p input and @p target (same shape and float dtype). @p mask (may be NULL, any dtype) has
 * the input's shape, or the input's shape without axis 1 (a voxel mask broadcast over the
 * channels); the result is then sum m (input - target)^2 / sum m over all elements (0 when
 * the mask is empty).
 */
DIFFCL_API diffcl_status diffcl_mse_loss(const diffcl_tensor *input, const diffcl_tensor *target,
                                         const diffcl_tensor *mask, diffcl_tensor **out);

/* ------------------------------------------------- prototype contrastive loss ---- */

/** Options for diffcl_proto_contrast_loss(). */
typedef struct diffcl_proto_contrast_options {
    size_t struct_size;                /**< sizeof(diffcl_proto_contrast_options) */
    double temperature;                /**< tau, default 0.1 */
    const diffcl_tensor *indices;      /**< I32/I64 [K] flat voxel indices into the N*(D*H*W)
                                            voxels (duplicates count twice), or NULL: all */
    const diffcl_tensor *voxel_weight; /**< target-shaped weights/mask or NULL */
    int64_t ignore_index;              /**< target value to skip; default -100 */
} diffcl_proto_contrast_options;

#define DIFFCL_PROTO_CONTRAST_OPTIONS_INIT                                                         \
    {                                                                                              \
        sizeof(diffcl_proto_contrast_options), 0.1, NULL, NULL, -100                               \
    }
/** Fill @p opts with the defaults (same as DIFFCL_PROTO_CONTRAST_OPTIONS_INIT). */
DIFFCL_API void diffcl_proto_contrast_options_init(diffcl_proto_contrast_options *opts);

/**
 * Prototype InfoNCE. @p features [N,F,(D),H,W] (F32/F64; [K,F] works too: one voxel per
 * row), @p prototypes [C,F] of the same dtype, @p target the features' shape without axis 1
 * (class per voxel, e.g. pseudo labels). Both features and prototypes are L2-normalised
 * inside (x / max(|x|, 1e-12), as F.normalize), so s_c = cos(f, proto_c) / tau and
 *   loss = sum_k m_k (-log softmax_c(s_k)[y_k]) / sum_k m_k
 * over the used voxels k: those listed by indices (or all), with target != ignore_index
 * and m_k != 0. Gradients flow to the features and, when they require grad, the
 * prototypes (usually a detached memory bank). No used voxel: loss 0, zero gradient.
 */
DIFFCL_API diffcl_status diffcl_proto_contrast_loss(const diffcl_tensor *features,
                                                    const diffcl_tensor *prototypes,
                                                    const diffcl_tensor *target,
                                                    const diffcl_proto_contrast_options *opts,
                                                    diffcl_tensor **out);

/**
 * Class prototypes (no gradient): for each class c, the average of the feature vectors of
 * the voxels labelled c, weighted by @p mask (NULL: 1; voxels with mask 0 are skipped and
 * their labels not checked), then L2-normalised. @p features [N,F,(D),H,W] (F32/F64),
 * @p labels its shape without axis 1 (U8/I32/I64, values in [0, num_classes)).
 * @p *prototypes: new [C,F] of the features' dtype; a class with no voxel gets a zero row.
 * @p counts (may be NULL): new F64 [C] with each class's total weight.
 */
DIFFCL_API diffcl_status diffcl_class_prototypes(const diffcl_tensor *features,
                                                 const diffcl_tensor *labels,
                                                 const diffcl_tensor *mask, int64_t num_classes,
                                                 diffcl_tensor **prototypes,
                                                 diffcl_tensor **counts);

/**
 * In place, no gradient: EMA update of a prototype memory bank [C,F] (F32/F64):
 * bank_c = momentum * bank_c + (1 - momentum) * new_c, then bank_c is L2-normalised. Rows
 * are updated only for classes present in this batch (@p counts [C] > 0, or a non-zero row
 * of @p new_protos when @p counts is NULL); a bank row still all zero (never set) takes
 * new_c as it is. @p momentum in [0,1], typically 0.99.
 */
DIFFCL_API diffcl_status diffcl_prototype_bank_update(diffcl_tensor *bank,
                                                      const diffcl_tensor *new_protos,
                                                      const diffcl_tensor *counts, double momentum);

/**
 * Sample at most @p max_count voxel positions where @p mask (any dtype, any shape) is
 * non-zero, uniformly without replacement, from @p key (the same key gives the same sample
 * whatever the thread count). @p *indices: new I64 [K] of flat row-major positions in
 * ascending order, K = min(max_count, number of non-zero voxels) (may be 0);
 * max_count < 0 takes them all.
 */
DIFFCL_API diffcl_status diffcl_sample_voxels(const diffcl_tensor *mask, int64_t max_count,
                                              diffcl_rng_key key, diffcl_tensor **indices);

/* ---------------------------------------------------------------- ramp-ups ---- */

/**
 * Sigmoid-shaped ramp-up (Laine & Aila; UA-MT's sigmoid_rampup):
 * mu * exp(-5 (1 - t/length)^2) with t clamped to [0, length]; mu when length <= 0.
 */
DIFFCL_API double diffcl_rampup_sigmoid(double mu, double t, double length);
/** Linear ramp-up: mu * clamp(t / length, 0, 1); mu when length <= 0. */
DIFFCL_API double diffcl_rampup_linear(double mu, double t, double length);

DIFFCL_END_DECLS

#endif /* DIFFCL_LOSS_H */
