/**
 * @file infer.h
 * @brief Whole-volume inference: sliding window over any module, averaged softmax,
 * largest-connected-component cleanup, colour overlays.
 *
 * The sliding window is the benchmark codes' `test_single_case` (UA-MT / SSL4MIS / MC-Net):
 * a volume smaller than the patch is zero-padded symmetrically (the smaller half before),
 * windows start at min(stride * i, size - patch) for i < ceil((size - patch) / stride) + 1 on
 * every axis, the softmax probabilities of overlapping windows are averaged and the
 * padding is cropped away. Options add Gaussian importance weighting (nnU-Net) and
 * test-time flips. Progress is reported through the context's progress callback as
 * ("infer", windows done, windows total), and a non-zero return cancels
 * (DIFFCL_ERR_CANCELLED).
 *
 * Ownership: every `diffcl_tensor **` output is a new tensor in the input's context that the
 * caller owns (diffcl_tensor_free()).
 *
 * Errors: DIFFCL_ERR_INVALID_ARGUMENT for NULL arguments or bad options, DIFFCL_ERR_SHAPE /
 * DIFFCL_ERR_DTYPE for inputs the model cannot take, DIFFCL_ERR_OUT_OF_MEMORY,
 * DIFFCL_ERR_CANCELLED, whatever the model's forward returns, and the codes named per
 * function; the detail is in diffcl_last_error().
 *
 * Thread safety: a call uses the model's context from one thread at a time (core.h).
 */
#ifndef DIFFCL_INFER_H
#define DIFFCL_INFER_H

#include "diffcl/module.h"
#include "diffcl/plan.h"
#include "diffcl/tensor.h"

DIFFCL_BEGIN_DECLS

/** Options of diffcl_sliding_window() and diffcl_segment(). */
typedef struct diffcl_sliding_window_options {
    size_t struct_size;
    int64_t patch[3];  /**< window D, H, W (2-D images: patch[1..2]); default 112, 112, 80 (LA) */
    int64_t stride[3]; /**< default 18, 18, 4 (LA); Pancreas 16,16,16; BraTS 64,64,64 */
    int gaussian;      /**< 1: weight each window by a Gaussian (sigma = patch/8); default 0 */
    int tta_flips;     /**< 1: average over every flip of the spatial axes; default 0 */
    int batch;         /**< windows per forward call; default 1 */
    int largest_cc;    /**< diffcl_segment: keep each class's largest component; default 0 */
} diffcl_sliding_window_options;

#define DIFFCL_SLIDING_WINDOW_OPTIONS_INIT                                                         \
    {                                                                                              \
        sizeof(diffcl_sliding_window_options), {112, 112, 80}, {18, 18, 4}, 0, 0, 1, 0             \
    }
/** Fill @p opts with the defaults (same as DIFFCL_SLIDING_WINDOW_OPTIONS_INIT). */
DIFFCL_API void diffcl_sliding_window_options_init(diffcl_sliding_window_options *opts);

/**
 * The strides `diffcl infer` and the trainer's validation use for the window in
 * opts->patch: LA's 18, 18, 4 for its 112x112x80 patch, else half the patch (at least 1) on
 * each axis. Only opts->stride is written.
 */
DIFFCL_API void diffcl_sliding_window_default_stride(diffcl_sliding_window_options *opts);

/**
 * Averaged softmax probabilities of @p model over @p image (F32 [C, D, H, W] or [C, H, W]):
 * @p probs receives F32 [K, D, H, W] / [K, H, W] with K the model's output channels. The
 * model sees windows [B, C, patch...] through diffcl_module_forward(), with gradient
 * recording off; put it in evaluation mode first (diffcl_module_train(model, 0)).
 * Errors: the model's, DIFFCL_ERR_SHAPE for a bad image or model output, DIFFCL_ERR_CANCELLED.
 */
DIFFCL_API diffcl_status diffcl_sliding_window(diffcl_module *model, const diffcl_tensor *image,
                                               const diffcl_sliding_window_options *opts,
                                               diffcl_tensor **probs);

/**
 * Segment @p image: sliding window, argmax, then (with opts->largest_cc) the largest
 * connected component of each class. @p label receives U8 [D, H, W] / [H, W]; @p probs (may be
 * NULL) the probabilities. The spatial shape equals the input's, so the input's geometry
 * (diffcl_image_meta) applies to the result.
 */
DIFFCL_API diffcl_status diffcl_segment(diffcl_module *model, const diffcl_tensor *image,
                                        const diffcl_sliding_window_options *opts,
                                        diffcl_tensor **label, diffcl_tensor **probs);

/**
 * diffcl_segment() through a plan: apply @p plan to @p image (geometry from @p meta), run
 * the sliding window on the planned image, invert the probabilities to the input grid, take
 * the argmax and (opts->largest_cc) the largest components. @p label receives U8 of the
 * input's spatial shape, so the input's header and affine apply to it; @p probs (may be NULL)
 * the probabilities on the input grid. @p plan NULL: exactly diffcl_segment().
 */
DIFFCL_API diffcl_status diffcl_segment_planned(diffcl_module *model, const diffcl_plan *plan,
                                                const diffcl_tensor *image,
                                                const diffcl_image_meta *meta,
                                                const diffcl_sliding_window_options *opts,
                                                diffcl_tensor **label, diffcl_tensor **probs);

/**
 * The label map of probabilities @p probs (F32 [K, D, H, W] or [K, H, W], K <= 256): the
 * argmax over K, the first class on ties (numpy's argmax). New U8 tensor of the spatial shape.
 * For probabilities saved by `diffcl infer --save-probs` and averaged, as `diffcl ensemble`
 * does. Errors: DIFFCL_ERR_DTYPE, DIFFCL_ERR_SHAPE, DIFFCL_ERR_OUT_OF_MEMORY.
 */
DIFFCL_API diffcl_status diffcl_probs_to_label(const diffcl_tensor *probs, diffcl_tensor **label);

/** The most members diffcl_ensemble_create() takes. */
#define DIFFCL_ENSEMBLE_MAX 64

/**
 * An ensemble of @p n segmentation networks (1..DIFFCL_ENSEMBLE_MAX) as one module, for
 * diffcl_segment() and diffcl_sliding_window(): its forward returns the log of the mean of
 * the members' softmaxes over the class axis, so the probabilities diffcl_segment() gives
 * for the ensemble are the mean of those it gives for each member, with the same windows,
 * flips and weights. The members must take the same input and give the same classes (a
 * forward with different output shapes fails with DIFFCL_ERR_SHAPE). Members may be any
 * modules with a forward: V-Nets from diffcl_model_load(), networks from
 * diffcl_trainer_load_net(), other ensembles.
 *
 * Ownership: the call takes the members, whether it succeeds or fails: each members[i] is
 * set to NULL, and belongs to @p *out (freed with it by diffcl_module_free()) or was freed.
 * @p *out is the caller's, in evaluation mode.
 * Errors: DIFFCL_ERR_INVALID_ARGUMENT (no context, n out of range, a NULL member),
 * DIFFCL_ERR_OUT_OF_MEMORY.
 * Thread safety: as a module: one thread at a time, with the members' context.
 */
DIFFCL_API diffcl_status diffcl_ensemble_create(diffcl_context *ctx, diffcl_module **members, int n,
                                                diffcl_module **out);

/**
 * Keep, for every non-zero class of the label map @p label (U8, 2 or 3 axes), only its
 * largest connected component (others become 0), as the benchmark codes' getLargestCC
 * with skimage.measure.label. @p connectivity 1 (faces) .. ndim (full, the default when 0).
 * Ties keep the component met first in row-major order. New U8 tensor.
 */
DIFFCL_API diffcl_status diffcl_largest_component(const diffcl_tensor *label, int connectivity,
                                                  diffcl_tensor **out);

/**
 * Write a colour overlay PNG of one slice: the image (channel 0, scaled to its 1st-99th
 * percentile in the slice) in grey, upscaled (nearest neighbour) by an integer factor to at
 * least 256 pixels on its short side (while the long side stays within 8192); the label's classes outlined in colour
 * along their inner boundary, and @p reference (may be NULL) outlined in white along its
 * outer boundary, so that a perfect prediction shows both lines side by side. Before 0.2 the
 * overlay kept the image's size and filled the classes. @p image F32 [C, D, H, W] or
 * [C, H, W]; @p label U8 of the spatial shape (may be NULL). For 3-D, @p axis (0, 1, 2 of
 * D, H, W) and @p index choose the slice; index -1 takes the slice with the most
 * foreground of @p label (or the middle one). 2-D images ignore both.
 */
DIFFCL_API diffcl_status diffcl_overlay_png(const diffcl_tensor *image, const diffcl_tensor *label,
                                            const diffcl_tensor *reference, int axis, int64_t index,
                                            const char *path);

DIFFCL_END_DECLS

#endif /* DIFFCL_INFER_H */
