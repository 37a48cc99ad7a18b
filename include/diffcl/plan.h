/**
 * @file plan.h
 * @brief The preprocessing plan (nnU-Net style): per-channel intensity normalisation, a
 * target spacing and cropping to the non-zero region, computed from the training cases,
 * stored in the model file and applied again (and inverted) at inference.
 *
 * A plan is computed at the start of training (diffcl_plan_compute(), trainer option `plan`),
 * applied to every case the trainer loads, and written next to the model configuration in
 * the metadata of model.safetensors and of the checkpoints (key "diffcl.plan", JSON).
 * diffcl_plan_load() reads it back; diffcl_segment_planned() (infer.h) applies it to an image,
 * runs the sliding window and puts the result back on the input grid. See docs/data.md ("The
 * preprocessing plan") for the rules and where they differ from nnU-Net.
 *
 * Ownership: diffcl_plan_compute(), diffcl_plan_from_json() and diffcl_plan_load() hand out
 * a plan the caller owns (diffcl_plan_free()); diffcl_plan_to_json() a string released with
 * diffcl_plan_string_free(); every `diffcl_tensor **` output is a new tensor in the input's
 * context that the caller owns.
 *
 * Errors: DIFFCL_ERR_INVALID_ARGUMENT for NULL arguments or bad options, DIFFCL_ERR_SHAPE for
 * images that do not fit the plan (another channel count or dimensionality),
 * DIFFCL_ERR_FORMAT for malformed plan JSON, DIFFCL_ERR_NOT_FOUND for a model file without a
 * plan, the data set's and the files' codes; the detail is in diffcl_last_error().
 *
 * Thread safety: a plan is immutable once made: it may be read (applied, inverted, printed)
 * from several threads at once. Tensors follow their context's one-thread rule.
 */
#ifndef DIFFCL_PLAN_H
#define DIFFCL_PLAN_H

#include "diffcl/data.h"

DIFFCL_BEGIN_DECLS

typedef struct diffcl_plan diffcl_plan;

/** Intensity scheme of one channel. */
typedef enum diffcl_plan_scheme {
    DIFFCL_PLAN_ZSCORE = 0, /**< z-score per case (non-CT), over the non-zero mask if use_mask */
    DIFFCL_PLAN_CT = 1,     /**< clip to the data set's foreground percentiles, global z-score */
    DIFFCL_PLAN_NONE = 2    /**< unchanged */
} diffcl_plan_scheme;

/** Image interpolation of the resampling. */
typedef enum diffcl_plan_interp {
    DIFFCL_PLAN_INTERP_CUBIC = 0, /**< cubic convolution (default) */
    DIFFCL_PLAN_INTERP_LINEAR = 1 /**< (bi/tri)linear */
} diffcl_plan_interp;

/** Options of diffcl_plan_compute(). */
typedef struct diffcl_plan_options {
    size_t struct_size;
    unsigned ct_channels;     /**< bit c set: channel c is CT whatever channel_names says;
                                   default 0 (CT only where dataset.json names it "CT") */
    int resample;             /**< 1 (default): resample to target_spacing; 0: keep the grid */
    double target_spacing[3]; /**< D, H, W; all 0 (default): the median spacing of the cases */
    int interp;               /**< a diffcl_plan_interp for images; default cubic */
    int lowres_linear;        /**< anisotropic cases (max/min spacing > 3): 1 interpolates the
                                   low-resolution axis linearly, 0 (default) nearest, as nnU-Net */
    int crop;                 /**< 1 (default): crop to the non-zero region */
} diffcl_plan_options;

#define DIFFCL_PLAN_OPTIONS_INIT                                                                   \
    {                                                                                              \
        sizeof(diffcl_plan_options), 0u, 1, {0.0, 0.0, 0.0}, DIFFCL_PLAN_INTERP_CUBIC, 0, 1        \
    }
/** Fill @p opts with the defaults (same as DIFFCL_PLAN_OPTIONS_INIT). */
DIFFCL_API void diffcl_plan_options_init(diffcl_plan_options *opts);

/** One channel's normalisation as planned (diffcl_plan_channel). */
typedef struct diffcl_plan_channel_info {
    size_t struct_size; /**< sizeof(diffcl_plan_channel_info), set by the caller */
    int scheme;         /**< a diffcl_plan_scheme */
    int use_mask;       /**< z-score: statistics over, and applied to, the non-zero mask only */
    double clip_lo;     /**< CT: 0.5th percentile of the labeled cases' foreground */
    double clip_hi;     /**< CT: 99.5th percentile */
    double mean;        /**< CT: mean of that foreground */
    double std;         /**< CT: its standard deviation (population) */
} diffcl_plan_channel_info;

#define DIFFCL_PLAN_CHANNEL_INFO_INIT                                                              \
    {                                                                                              \
        sizeof(diffcl_plan_channel_info), 0, 0, 0.0, 0.0, 0.0, 0.0                                 \
    }

/**
 * Where a case went when the plan was applied, for diffcl_plan_invert(). Filled by
 * diffcl_plan_apply(); the caller sets struct_size.
 */
typedef struct diffcl_plan_geometry {
    size_t struct_size; /**< sizeof(diffcl_plan_geometry), set by the caller */
    int ndim;           /**< spatial axes: 2 or 3 (2-D uses entries 1 and 2) */
    int64_t shape[3];   /**< the input's spatial shape */
    int64_t crop_lo[3]; /**< the non-zero box: [crop_lo, crop_hi) of the input grid */
    int64_t crop_hi[3];
    int64_t planned[3]; /**< the spatial shape the network sees */
    double spacing[3];  /**< the input's spacing */
} diffcl_plan_geometry;

#define DIFFCL_PLAN_GEOMETRY_INIT                                                                  \
    {                                                                                              \
        sizeof(diffcl_plan_geometry), 0, {0, 0, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0},               \
        {                                                                                          \
            1.0, 1.0, 1.0                                                                          \
        }                                                                                          \
    }

/**
 * Compute a plan from the training cases of @p ds: the cases of @p split (labeled and
 * unlabeled; NULL: every case, all labeled). Spacing and the non-zero crop come from every
 * case; the CT statistics from the labeled cases' label foreground only. Reads each case once.
 * Errors: the data set's, DIFFCL_ERR_INVALID_ARGUMENT (no case, bad options).
 */
DIFFCL_API diffcl_status diffcl_plan_compute(const diffcl_dataset *ds, const diffcl_split *split,
                                             const diffcl_plan_options *opts, diffcl_plan **out);
/** Release a plan. NULL is ignored. */
DIFFCL_API void diffcl_plan_free(diffcl_plan *plan);

/** The plan as JSON (a new string: diffcl_plan_string_free()). */
DIFFCL_API diffcl_status diffcl_plan_to_json(const diffcl_plan *plan, char **out);
/** Release a string of diffcl_plan_to_json(). NULL is ignored. */
DIFFCL_API void diffcl_plan_string_free(char *s);
/** Parse a plan written by diffcl_plan_to_json(). DIFFCL_ERR_FORMAT when malformed. */
DIFFCL_API diffcl_status diffcl_plan_from_json(const char *json, diffcl_plan **out);
/**
 * The plan of a model file (model.safetensors or a training checkpoint): its "diffcl.plan"
 * metadata. DIFFCL_ERR_NOT_FOUND when the file has none (0.1.0 files, runs without a plan).
 */
DIFFCL_API diffcl_status diffcl_plan_load(const char *path, diffcl_plan **out);

/** Image channels the plan was made for. */
DIFFCL_API int diffcl_plan_num_channels(const diffcl_plan *plan);
/** Spatial axes (2 or 3) the plan was made for. */
DIFFCL_API int diffcl_plan_ndim(const diffcl_plan *plan);
/**
 * The target spacing (D, H, W; 2-D in entries 1 and 2) into @p spacing. @return 1 when the
 * plan resamples, 0 when it keeps each case's grid (spacing then unchanged), -1 for NULL.
 */
DIFFCL_API int diffcl_plan_target_spacing(const diffcl_plan *plan, double spacing[3]);
/** Channel @p c's normalisation into @p info (struct_size set by the caller). */
DIFFCL_API diffcl_status diffcl_plan_channel(const diffcl_plan *plan, int c,
                                             diffcl_plan_channel_info *info);

/**
 * Apply the plan to one case: crop to the non-zero region (of any channel), normalise each
 * channel, resample to the target spacing. @p image F32 [C, D, H, W] / [C, H, W] with the
 * plan's channels; @p label (may be NULL) U8 of the spatial shape; @p meta (NULL: unit
 * spacing) its geometry. @p out_image (and @p out_label when @p label is given) receive new
 * tensors; @p geom (may be NULL) where the case went, for diffcl_plan_invert().
 */
DIFFCL_API diffcl_status diffcl_plan_apply(const diffcl_plan *plan, const diffcl_tensor *image,
                                           const diffcl_tensor *label,
                                           const diffcl_image_meta *meta, diffcl_tensor **out_image,
                                           diffcl_tensor **out_label, diffcl_plan_geometry *geom);
/**
 * Put probabilities @p probs (F32 [K, planned...]) back on the input grid of @p geom:
 * resampled to the crop's size (linear; the low-resolution axis of an anisotropic case as
 * the plan says) and padded into the input shape, class 0 having probability 1 outside the
 * crop. New F32 [K, shape...] tensor.
 */
DIFFCL_API diffcl_status diffcl_plan_invert(const diffcl_plan *plan, const diffcl_tensor *probs,
                                            const diffcl_plan_geometry *geom, diffcl_tensor **out);

DIFFCL_END_DECLS

#endif /* DIFFCL_PLAN_H */
