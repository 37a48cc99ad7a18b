/**
 * @file metrics.h
 * @brief Segmentation metrics as the semi-supervised benchmarks report them (medpy's `dc`,
 * `jc`, `hd95`, `asd`, `assd`) and MONAI's normalised surface Dice, on an exact Euclidean
 * distance transform.
 *
 * Definitions (docs/data.md has the long form). For a predicted mask P and a reference R
 * (non-zero = foreground), with surfaces S(X) = X minus its binary erosion by the
 * structuring element of the given connectivity (voxels outside the image count as
 * background, as scipy's binary_erosion with border_value 0), and d(x, S) the Euclidean
 * distance (in spacing units) from x to the nearest voxel of S:
 * - Dice = 2|P∩R| / (|P|+|R|), Jaccard = |P∩R| / |P∪R|;
 * - ASD = mean over x in S(P) of d(x, S(R))  (one-directional, result -> reference, as medpy);
 * - ASSD = (ASD(P,R) + ASD(R,P)) / 2;
 * - HD95 = 95th percentile (linear interpolation, numpy's default) of the pooled distances
 *   {d(x, S(R)) : x in S(P)} ∪ {d(y, S(P)) : y in S(R)}.
 *
 * Empty masks (medpy raises): both empty -> Dice = Jaccard = 1, distances 0 (default; with
 * diffcl_metric_options.both_empty = DIFFCL_BOTH_EMPTY_NAN every metric is NaN, as nnU-Net);
 * exactly one empty -> Dice = Jaccard = 0 and the distances follow
 * diffcl_metric_options.empty_policy (default NaN). NaN values are left out of the means by
 * diffcl_metrics_summarize_ex() (nnU-Net's and MONAI's nanmean).
 *
 * NSD (diffcl_surface_dice()) is MONAI's compute_surface_dice (use_subvoxels False): with the
 * surfaces above at connectivity 1, NSD = (|{x in S(P): d(x, S(R)) <= tau}| + |{y in S(R):
 * d(y, S(P)) <= tau}|) / (|S(P)| + |S(R)|); NaN when both masks are empty, 0 when one is.
 *
 * Ownership: diffcl_distance_transform() hands out a new tensor the caller owns
 * (diffcl_tensor_free()); the other functions fill caller-provided memory.
 *
 * Thread safety: as every call on tensors, a metric function uses its tensors' context from
 * one thread at a time (core.h); it computes on the calling thread only (no context
 * threads). diffcl_metrics_summarize(), diffcl_metrics_summarize_ex() and the two
 * _options_init() functions touch no tensor and are thread-safe.
 */
#ifndef DIFFCL_METRICS_H
#define DIFFCL_METRICS_H

#include "diffcl/tensor.h"

DIFFCL_BEGIN_DECLS

/** Distances reported when exactly one of prediction and reference is empty. */
typedef enum diffcl_empty_policy {
    DIFFCL_EMPTY_NAN = 0,     /**< NaN (default): "undefined", skipped by summaries */
    DIFFCL_EMPTY_VALUE = 1,   /**< diffcl_metric_options.empty_value */
    DIFFCL_EMPTY_DIAGONAL = 2 /**< the image diagonal in spacing units (a worst case) */
} diffcl_empty_policy;

/** Metrics reported for a class that neither prediction nor reference contains. */
typedef enum diffcl_both_empty_policy {
    DIFFCL_BOTH_EMPTY_ONE = 0, /**< Dice = Jaccard = 1, distances 0 (default, as 0.1.0) */
    DIFFCL_BOTH_EMPTY_NAN = 1  /**< every metric NaN, left out of the means (nnU-Net) */
} diffcl_both_empty_policy;

/** Options of the metric functions. */
typedef struct diffcl_metric_options {
    size_t struct_size;
    double spacing[3]; /**< per spatial axis, in the tensor's axis order; 0: 1 (voxel units) */
    int connectivity; /**< surface structuring element, 1 (default, medpy) .. 3; above ndim = ndim */
    int empty_policy;   /**< a diffcl_empty_policy: distances when exactly one mask is empty */
    double empty_value; /**< used with DIFFCL_EMPTY_VALUE */
    int both_empty;     /**< a diffcl_both_empty_policy: both masks empty (default ONE, as 0.1.0) */
} diffcl_metric_options;

#define DIFFCL_METRIC_OPTIONS_INIT                                                                 \
    {                                                                                              \
        sizeof(diffcl_metric_options), {0.0, 0.0, 0.0}, 1, DIFFCL_EMPTY_NAN, 0.0,                  \
            DIFFCL_BOTH_EMPTY_ONE                                                                  \
    }
/**
 * Fill @p opts with the defaults (same as DIFFCL_METRIC_OPTIONS_INIT). A program built against
 * 0.1.0 headers binds to a version that fills only the 0.1.0 layout (its struct_size says so).
 */
DIFFCL_API void diffcl_metric_options_init(diffcl_metric_options *opts);

/**
 * Metrics of one binary mask pair (one class of one case).
 *
 * Fixed layout: unlike the option structs this result has no struct_size, and it never
 * changes within a major version (docs/abi-policy.md): callers allocate arrays of it for
 * diffcl_metrics_per_class() and walk one field with a stride in doubles
 * (diffcl_metrics_summarize()). Further metrics will come in a new, size-versioned struct
 * filled by a new function.
 */
typedef struct diffcl_seg_metrics {
    double dice;
    double jaccard;
    double hd95;
    double asd; /**< prediction -> reference */
    double assd;
    double hd;      /**< maximum of the pooled surface distances (Hausdorff) */
    int64_t n_pred; /**< foreground voxels of the prediction */
    int64_t n_ref;  /**< foreground voxels of the reference */
} diffcl_seg_metrics;

/**
 * Metrics of @p pred against @p ref: tensors of one shape with 1 to 3 axes, any dtype,
 * non-zero = foreground (use spacing in the same axis order). Errors:
 * DIFFCL_ERR_SHAPE (shapes differ or more than 3 axes), DIFFCL_ERR_INVALID_ARGUMENT
 * (NULL, bad connectivity or spacing), DIFFCL_ERR_OUT_OF_MEMORY. Runs on the calling
 * thread only (no context threads). On an error the contents of @p out are unspecified.
 */
DIFFCL_API diffcl_status diffcl_metrics_binary(const diffcl_tensor *pred, const diffcl_tensor *ref,
                                               const diffcl_metric_options *opts,
                                               diffcl_seg_metrics *out);

/**
 * Per-class metrics of two label maps (integer class indices, same shape): out[k - 1] gets
 * class k for k = 1 .. n_classes - 1 (class 0 is the background and is not scored), so
 * @p out holds n_classes - 1 elements. Errors: as diffcl_metrics_binary(), and
 * DIFFCL_ERR_INVALID_ARGUMENT for n_classes outside 2..256; on an error the entries from
 * the failing class on are unspecified.
 */
DIFFCL_API diffcl_status diffcl_metrics_per_class(const diffcl_tensor *pred,
                                                  const diffcl_tensor *ref, int n_classes,
                                                  const diffcl_metric_options *opts,
                                                  diffcl_seg_metrics *out);

/**
 * Mean and population standard deviation (numpy's std, ddof 0) of the finite values of
 * @p values[0..n) taken @p stride doubles apart (stride 1 for a plain array; use
 * sizeof(diffcl_seg_metrics)/sizeof(double) to walk one field of an array of results).
 * NaN entries are skipped; @p n_valid (may be NULL) receives how many were used. With no
 * finite value mean and std are NaN. Errors: DIFFCL_ERR_INVALID_ARGUMENT when @p values
 * is NULL with n > 0, n < 0 or stride < 1. Same as diffcl_metrics_summarize_ex() with
 * ddof 0; the diffcl tool reports the sample standard deviation (ddof 1).
 */
DIFFCL_API diffcl_status diffcl_metrics_summarize(const double *values, int64_t n, int64_t stride,
                                                  double *mean, double *std, int64_t *n_valid);

/**
 * As diffcl_metrics_summarize(), with the standard deviation's delta degrees of freedom:
 * std = sqrt(sum (v - mean)^2 / (k - @p ddof)) over the k finite values, as numpy's
 * nanstd(ddof=...): 0 for the population std, 1 for the sample std (pandas, R, what the
 * diffcl tool prints). With k <= @p ddof the std is NaN (the mean is still given when k > 0).
 * Errors: DIFFCL_ERR_INVALID_ARGUMENT when @p values is NULL with n > 0, n < 0, stride < 1 or
 * ddof < 0.
 */
DIFFCL_API diffcl_status diffcl_metrics_summarize_ex(const double *values, int64_t n,
                                                     int64_t stride, int ddof, double *mean,
                                                     double *std, int64_t *n_valid);

/** Options of diffcl_surface_dice() and diffcl_surface_dice_per_class(). */
typedef struct diffcl_surface_dice_options {
    size_t struct_size;
    double spacing[3]; /**< per spatial axis, in the tensor's axis order; 0: 1 (voxel units) */
    double tolerance;  /**< tau, in the units of spacing (mm with a NIfTI's pixdim); default 1 */
} diffcl_surface_dice_options;

#define DIFFCL_SURFACE_DICE_OPTIONS_INIT                                                           \
    {                                                                                              \
        sizeof(diffcl_surface_dice_options), {0.0, 0.0, 0.0}, 1.0                                  \
    }
/** Fill @p opts with the defaults (same as DIFFCL_SURFACE_DICE_OPTIONS_INIT). */
DIFFCL_API void diffcl_surface_dice_options_init(diffcl_surface_dice_options *opts);

/**
 * Normalised surface Dice of @p pred against @p ref at the tolerance opts->tolerance, exactly as
 * MONAI's compute_surface_dice (monai.metrics, use_subvoxels False, euclidean distance):
 * the boundary S(X) of a mask is X minus its binary erosion by the connectivity-1 cross
 * (voxels outside the image count as background; MONAI's get_mask_edges), d is the
 * Euclidean distance in spacing units (exact EDT, as scipy's distance_transform_edt with
 * sampling), and
 *
 *     NSD = (|{x in S(P): d(x, S(R)) <= tau}| + |{y in S(R): d(y, S(P)) <= tau}|)
 *           / (|S(P)| + |S(R)|).
 *
 * Distances and tau are compared in single precision, as MONAI compares its float32
 * distances (a distance equal to tau counts as within it). Both masks empty: NaN (MONAI's
 * "class absent"); exactly one empty: 0. Boundary voxels are counted, not weighted by
 * area (DeepMind's surface-distance package weights them, so its values differ).
 *
 * @p pred and @p ref: tensors of one shape with 1 to 3 axes, any dtype, non-zero =
 * foreground; @p opts NULL: the defaults (voxel units, tau = 1). Result in @p *out.
 * Errors: DIFFCL_ERR_SHAPE (shapes differ or more than 3 axes), DIFFCL_ERR_INVALID_ARGUMENT
 * (NULL, a struct_size below this struct's, a negative or non-finite spacing or tolerance),
 * DIFFCL_ERR_OUT_OF_MEMORY; @p *out is then unspecified.
 */
DIFFCL_API diffcl_status diffcl_surface_dice(const diffcl_tensor *pred, const diffcl_tensor *ref,
                                             const diffcl_surface_dice_options *opts, double *out);

/**
 * Per-class NSD of two label maps (integer class indices, same shape), as
 * diffcl_surface_dice() on the masks (map == k): out[k - 1] gets class k for
 * k = 1 .. n_classes - 1, so @p out holds n_classes - 1 doubles (MONAI's
 * include_background False). Errors: as diffcl_surface_dice(), and
 * DIFFCL_ERR_INVALID_ARGUMENT for n_classes outside 2..256; on an error the entries from the
 * failing class on are unspecified.
 */
DIFFCL_API diffcl_status diffcl_surface_dice_per_class(const diffcl_tensor *pred,
                                                       const diffcl_tensor *ref, int n_classes,
                                                       const diffcl_surface_dice_options *opts,
                                                       double *out);

/**
 * Exact Euclidean distance transform (Felzenszwalb-Huttenlocher, separable), as
 * scipy.ndimage.distance_transform_edt: for every non-zero element of @p mask (1 to 3 axes,
 * any dtype) the distance to the nearest zero element, 0 on zeros, in units of @p spacing
 * (NULL: 1 per axis; else one positive value per axis). If @p mask has no zero element,
 * every distance is +inf. @p out receives a new F64 tensor of @p mask's shape, in @p mask's
 * context, that the caller owns (diffcl_tensor_free()). Errors: DIFFCL_ERR_INVALID_ARGUMENT
 * (NULL, a spacing that is not positive and finite), DIFFCL_ERR_SHAPE (not 1 to 3 axes),
 * DIFFCL_ERR_OUT_OF_MEMORY.
 */
DIFFCL_API diffcl_status diffcl_distance_transform(const diffcl_tensor *mask, const double *spacing,
                                                   diffcl_tensor **out);

DIFFCL_END_DECLS

#endif /* DIFFCL_METRICS_H */
