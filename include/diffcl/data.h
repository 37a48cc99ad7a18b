/**
 * @file data.h
 * @brief Data sets: the built-in phantom, data-set layouts, splits, augmentation and the
 * labeled/unlabeled batch sampler.
 *
 * Axis conventions (see docs/data.md): an image is F32 [C, D, H, W] (3-D) or [C, H, W]
 * (2-D); a label map is U8 [D, H, W] or [H, W] holding class indices. (D, H, W) is the
 * order in which h5py and nibabel show an array, i.e. (x, y, z) for NIfTI volumes, so a
 * "patch 112x112x80" of the benchmark codes is D=112, H=112, W=80.
 *
 * Everything random is drawn from diffcl_rng_* with keys (seed, stream, index, iteration),
 * so results depend neither on the thread count nor on resuming a run.
 */
#ifndef DIFFCL_DATA_H
#define DIFFCL_DATA_H

#include "diffcl/tensor.h"

DIFFCL_BEGIN_DECLS

/* RNG streams used by the data layer (the `stream` of a diffcl_rng_key). */
#define DIFFCL_STREAM_PHANTOM 0x44500000u       /**< phantom shapes */
#define DIFFCL_STREAM_PHANTOM_NOISE 0x44504e00u /**< phantom noise (index = case) */
#define DIFFCL_STREAM_SAMPLE_LABELED 0x44534c00u   /**< labeled case order */
#define DIFFCL_STREAM_SAMPLE_UNLABELED 0x44535500u /**< unlabeled case order */
#define DIFFCL_STREAM_AUGMENT 0x44410000u       /**< crop / flip / rotation / strong set */

/* ---------------------------------------------------------------- phantom ---- */

/**
 * Options of the built-in synthetic data set. Each case is an irregular atrium-like blob
 * with 2 to max_tubes attached tubes (the "pulmonary veins"), an unlabeled distractor, a
 * smooth multiplicative bias field, partial-volume blur and Rician-like noise. A case is a
 * pure function of (seed, case index, options). The 2-D variant is a plane through the
 * 3-D object (tubes are drawn mostly in that plane).
 */
typedef struct diffcl_phantom_options {
    size_t struct_size;
    uint64_t seed;       /**< default 1234 */
    int ndim;            /**< 3 (default) or 2 */
    int64_t depth;       /**< D (3-D only); 0: 64 */
    int64_t height;      /**< H; 0: 64 in 3-D, 96 in 2-D */
    int64_t width;       /**< W; 0: 48 in 3-D, 96 in 2-D */
    int channels;        /**< image channels (modalities with different contrasts); default 1 */
    int max_tubes;       /**< 2..max_tubes tubes per case; default 4 (0: none) */
    int tube_class;      /**< class of the tubes: 1 (default, part of the atrium) or 2 */
    int distractors;     /**< unlabeled bright structures; default 1 */
    double noise;        /**< Rician noise sigma relative to the foreground level; 0.08 */
    double bias;         /**< bias-field amplitude (log scale); 0.25 */
    double blur_sigma;   /**< partial-volume blur in voxels; 0.7 */
    int normalize;       /**< 1 (default): z-score the image (as LA's mri_norm2.h5) */
} diffcl_phantom_options;

#define DIFFCL_PHANTOM_OPTIONS_INIT \
    { sizeof(diffcl_phantom_options), 1234, 3, 0, 0, 0, 1, 4, 1, 1, 0.08, 0.25, 0.7, 1 }
/** Fill @p opts with the defaults (same as DIFFCL_PHANTOM_OPTIONS_INIT). */
DIFFCL_API void diffcl_phantom_options_init(diffcl_phantom_options *opts);

/**
 * Generate phantom case @p index. @p image receives a new F32 [C, D, H, W] (3-D) or
 * [C, H, W] (2-D) tensor, @p label (may be NULL) a new U8 [D, H, W] or [H, W] map with
 * classes 0 (background), 1 (atrium) and, when tube_class is 2, 2 (tubes). The caller owns
 * both. Deterministic and independent of the thread count. @p opts NULL: defaults.
 * Errors: DIFFCL_ERR_INVALID_ARGUMENT for bad options (sizes < 16, ndim not 2/3...).
 * Thread-safety: as any call on @p ctx.
 */
DIFFCL_API diffcl_status diffcl_phantom_case(diffcl_context *ctx,
                                             const diffcl_phantom_options *opts, int64_t index,
                                             diffcl_tensor **image, diffcl_tensor **label);

DIFFCL_END_DECLS

#endif /* DIFFCL_DATA_H */
