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
 *
 * Ownership: diffcl_dataset_open() and diffcl_sampler_create() hand out handles the caller
 * owns (diffcl_dataset_free(), diffcl_sampler_free()); diffcl_list_read() and
 * diffcl_dataset_split() hand out malloc'ed arrays released with diffcl_list_free() /
 * diffcl_split_free(); every `diffcl_tensor **` output is a new tensor the caller owns
 * (diffcl_tensor_free()). Strings returned by the data-set getters are borrowed and live as
 * long as the data set.
 *
 * Errors: DIFFCL_ERR_INVALID_ARGUMENT for NULL handles, out-pointers or bad option values,
 * DIFFCL_ERR_OUT_OF_MEMORY, and the codes named per function (file access: DIFFCL_ERR_IO,
 * DIFFCL_ERR_FORMAT, DIFFCL_ERR_UNSUPPORTED as image_io.h); the detail is in
 * diffcl_last_error().
 *
 * Thread safety: a data set, a sampler and the tensors they make belong to their context
 * and are used by one thread at a time (core.h). A sampler with prefetch > 0 runs a
 * background thread of its own that reads the data set and loads cases into a private
 * context; the caller needs no locking for it, but must free the sampler before the data
 * set. diffcl_list_read(), diffcl_list_free(), diffcl_layout_name() and
 * diffcl_layout_parse() are thread-safe.
 */
#ifndef DIFFCL_DATA_H
#define DIFFCL_DATA_H

#include "diffcl/image_io.h"
#include "diffcl/tensor.h"

DIFFCL_BEGIN_DECLS

/* RNG streams used by the data layer (the `stream` of a diffcl_rng_key). */
#define DIFFCL_STREAM_PHANTOM 0x44500000u          /**< phantom shapes */
#define DIFFCL_STREAM_PHANTOM_NOISE 0x44504e00u    /**< phantom noise (index = case) */
#define DIFFCL_STREAM_SAMPLE_LABELED 0x44534c00u   /**< labeled case order */
#define DIFFCL_STREAM_SAMPLE_UNLABELED 0x44535500u /**< unlabeled case order */
#define DIFFCL_STREAM_AUGMENT 0x44410000u          /**< crop / flip / rotation / strong set */

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
    uint64_t seed;     /**< default 1234 */
    int ndim;          /**< 3 (default) or 2 */
    int64_t depth;     /**< D (3-D only); 0: 64 */
    int64_t height;    /**< H; 0: 64 in 3-D, 96 in 2-D */
    int64_t width;     /**< W; 0: 48 in 3-D, 96 in 2-D */
    int channels;      /**< image channels (modalities with different contrasts); default 1 */
    int max_tubes;     /**< 2..max_tubes tubes per case; default 4 (0: none) */
    int tube_class;    /**< class of the tubes: 1 (default, part of the atrium) or 2 */
    int distractors;   /**< unlabeled bright structures; default 1 */
    double noise;      /**< Rician noise sigma relative to the foreground level; 0.08 */
    double bias;       /**< bias-field amplitude (log scale); 0.25 */
    double blur_sigma; /**< partial-volume blur in voxels; 0.7 */
    int normalize;     /**< 1 (default): z-score the image (as LA's mri_norm2.h5) */
} diffcl_phantom_options;

#define DIFFCL_PHANTOM_OPTIONS_INIT                                                                \
    {                                                                                              \
        sizeof(diffcl_phantom_options), 1234, 3, 0, 0, 0, 1, 4, 1, 1, 0.08, 0.25, 0.7, 1           \
    }
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

/* --------------------------------------------------------------- case lists ---- */

/**
 * Read a case list (train.list / test.list): one id per line; blank lines, surrounding
 * white space and lines starting with '#' are ignored. @p ids receives a malloc'ed array of
 * @p n malloc'ed strings; release with diffcl_list_free(). Missing file: DIFFCL_ERR_IO.
 */
DIFFCL_API diffcl_status diffcl_list_read(const char *path, char ***ids, int64_t *n);
/** Release what diffcl_list_read() returned. NULL is ignored. */
DIFFCL_API void diffcl_list_free(char **ids, int64_t n);

/* ----------------------------------------------------------------- data sets ---- */

/** On-disk layouts (docs/data.md). */
typedef enum diffcl_layout {
    DIFFCL_LAYOUT_AUTO = 0,    /**< detect from the folder's contents */
    DIFFCL_LAYOUT_PHANTOM = 1, /**< the built-in phantom (no files) */
    DIFFCL_LAYOUT_PNG = 2,     /**< images/<id>.png, labels/<id>.png */
    DIFFCL_LAYOUT_H5 = 3,      /**< LA <id>/mri_norm2.h5, or BraTS/Pancreas (data/)<id>.h5 */
    DIFFCL_LAYOUT_MSD = 4,     /**< imagesTr/<id>.nii.gz (3-D or 4-D), labelsTr/<id>.nii.gz */
    DIFFCL_LAYOUT_NNUNET = 5   /**< imagesTr/<id>_0000.nii.gz (one file per channel), labelsTr/ */
} diffcl_layout;

/** @return "phantom", "png", "h5", "msd", "nnunet" or "auto". */
DIFFCL_API const char *diffcl_layout_name(diffcl_layout layout);
/** Parse a layout name (as diffcl_layout_name); DIFFCL_ERR_INVALID_ARGUMENT if unknown. */
DIFFCL_API diffcl_status diffcl_layout_parse(const char *name, diffcl_layout *out);

typedef struct diffcl_dataset diffcl_dataset;

/** Options of diffcl_dataset_open(). */
typedef struct diffcl_dataset_options {
    size_t struct_size;
    int layout;         /**< a diffcl_layout; default AUTO */
    const char *list;   /**< case list file (absolute or relative to the root), e.g.
                              "train.list"; NULL: every case found, sorted by id */
    int64_t n_cases;    /**< phantom: number of cases (default 20); ids "phantom_000"... */
    int64_t first_case; /**< phantom: index of the first case (test sets use another range) */
    diffcl_phantom_options phantom; /**< phantom: generator options */
} diffcl_dataset_options;

#define DIFFCL_DATASET_OPTIONS_INIT                                                                \
    {                                                                                              \
        sizeof(diffcl_dataset_options), DIFFCL_LAYOUT_AUTO, NULL, 20, 0,                           \
            DIFFCL_PHANTOM_OPTIONS_INIT                                                            \
    }
/** Fill @p opts with the defaults (same as DIFFCL_DATASET_OPTIONS_INIT). */
DIFFCL_API void diffcl_dataset_options_init(diffcl_dataset_options *opts);

/**
 * Open a data set rooted at @p root (NULL for the phantom). The case ids come from
 * @p opts->list when set, else from the folder (sorted). Nothing but the list and the
 * folder listing is read here. The caller owns @p *out (diffcl_dataset_free). Errors:
 * DIFFCL_ERR_IO (no such folder / list), DIFFCL_ERR_FORMAT (no layout recognised),
 * DIFFCL_ERR_UNSUPPORTED (an h5/NIfTI layout in a build without that library).
 */
DIFFCL_API diffcl_status diffcl_dataset_open(diffcl_context *ctx, const char *root,
                                             const diffcl_dataset_options *opts,
                                             diffcl_dataset **out);
/**
 * diffcl_dataset_open() with @p read saying how the files are read (0.2; NULL: as
 * diffcl_dataset_open()): for the png layout, images with read->png_color (RGB: every image
 * [3, H, W], grey ones as three equal channels) and labels through read->label_map (copied; a
 * 0/255 mask with "255:1"). The other layouts ignore it. Errors as diffcl_dataset_open(), and
 * DIFFCL_ERR_INVALID_ARGUMENT for a malformed label map or a bad png_color; a label value
 * outside the map is DIFFCL_ERR_FORMAT when the case is loaded. The caller owns @p *out.
 */
DIFFCL_API diffcl_status diffcl_dataset_open_ex(diffcl_context *ctx, const char *root,
                                                const diffcl_dataset_options *opts,
                                                const diffcl_read_options *read,
                                                diffcl_dataset **out);
/** Release a data set and its case list. NULL is ignored. Free its samplers first. */
DIFFCL_API void diffcl_dataset_free(diffcl_dataset *ds);
/** Number of cases. */
DIFFCL_API int64_t diffcl_dataset_size(const diffcl_dataset *ds);
/** The layout in use (resolved when opened with AUTO). */
DIFFCL_API diffcl_layout diffcl_dataset_layout(const diffcl_dataset *ds);
/** Id of case @p i (borrowed, lives as long as @p ds), or NULL when out of range. */
DIFFCL_API const char *diffcl_dataset_case_id(const diffcl_dataset *ds, int64_t i);
/** Index of the case named @p id, or -1. */
DIFFCL_API int64_t diffcl_dataset_find(const diffcl_dataset *ds, const char *id);
/** Path of case @p i's image file (first channel file for nnU-Net; "" for the phantom). */
DIFFCL_API const char *diffcl_dataset_image_path(const diffcl_dataset *ds, int64_t i);
/**
 * The case list the data set was opened with: the options' list as given, "train.list" (the
 * folder's own, taken by default, as UA-MT and SSL4MIS folders have one), "dataset.json" (MSD's
 * "training" entries, taken by default when there is no train.list), or NULL when the cases
 * are every case found in the folder. Without a list given, the cases of the folder's
 * test.list are never opened: a default list naming one is DIFFCL_ERR_INVALID_ARGUMENT at
 * diffcl_dataset_open(), a folder scan leaves them out. Owned by @p ds.
 */
DIFFCL_API const char *diffcl_dataset_list(const diffcl_dataset *ds);
/** Classes (background included) in the folder's dataset.json "labels"; 0 without one. */
DIFFCL_API int diffcl_dataset_num_classes(const diffcl_dataset *ds);
/** Name of class @p k from dataset.json ("background", ...), or NULL. Owned by @p ds. */
DIFFCL_API const char *diffcl_dataset_class_name(const diffcl_dataset *ds, int k);
/** Name of image channel @p c from dataset.json ("channel_names" or MSD's "modality"), or
 * NULL. Owned by @p ds. */
DIFFCL_API const char *diffcl_dataset_channel_name(const diffcl_dataset *ds, int c);

/**
 * Load case @p i: @p image receives F32 [C, D, H, W] (3-D) or [C, H, W] (2-D); @p label
 * (may be NULL: the label file is then never opened) U8 [D, H, W] / [H, W]; @p meta (may be
 * NULL) the spacing, affine and NIfTI header. Image and label of different spatial shapes,
 * multi-channel files whose channels differ, or a non-integer label give DIFFCL_ERR_FORMAT
 * naming the files. Tensors are made in @p ds's context; the caller owns them.
 */
DIFFCL_API diffcl_status diffcl_dataset_load(const diffcl_dataset *ds, int64_t i,
                                             diffcl_tensor **image, diffcl_tensor **label,
                                             diffcl_image_meta *meta);

/* -------------------------------------------------------------------- splits ---- */

/**
 * Labeled / unlabeled case indices into a data set, filled by diffcl_dataset_split()
 * (the arrays are the library's: release them with diffcl_split_free()).
 *
 * Fixed layout: this struct has no struct_size and never changes within a major version
 * (docs/abi-policy.md); another kind of split (e.g. a validation part) would come with a
 * new, size-versioned struct and function.
 */
typedef struct diffcl_split {
    int64_t *labeled;
    int64_t n_labeled;
    int64_t *unlabeled;
    int64_t n_unlabeled;
} diffcl_split;

/**
 * Split @p ds: with @p labeled_list (a file of ids) those cases are labeled; otherwise the
 * first @p n_labeled cases in id order (strcmp) are. All other cases are unlabeled (their
 * label files are never read by the sampler). Release with diffcl_split_free().
 * An id of the list missing from the data set is DIFFCL_ERR_NOT_FOUND.
 */
DIFFCL_API diffcl_status diffcl_dataset_split(const diffcl_dataset *ds, int64_t n_labeled,
                                              const char *labeled_list, diffcl_split *out);
/** Release the arrays of @p split and zero it. */
DIFFCL_API void diffcl_split_free(diffcl_split *split);

/* -------------------------------------------------------------- augmentation ---- */

/** Options of the patch sampler's augmentation (docs/data.md). */
typedef struct diffcl_augment_options {
    size_t struct_size;
    double fg_prob;     /**< probability that a crop is centred on a random foreground voxel
                                (labeled cases only); default 0 (uniform crops, as UA-MT) */
    int flip;           /**< random flips of the spatial axes; default 1 */
    int rot90;          /**< random multiple of 90 degrees in the rotation plane; default 1 */
    double rotate_deg;  /**< extra random rotation in [-a, a] degrees; default 0 */
    int strong;         /**< apply the strong set below; default 0 */
    double strong_prob; /**< probability of each strong transform; default 0.5 */
    double scale_lo, scale_hi;           /**< zoom factor range; 0.7, 1.0 */
    double blur_lo, blur_hi;             /**< Gaussian blur sigma (voxels); 0.7, 1.3 */
    double brightness_lo, brightness_hi; /**< multiplicative; 0.7, 1.3 */
    double contrast_lo, contrast_hi;     /**< around the mean; 0.7, 1.3 */
    double gamma_lo, gamma_hi;           /**< on the min-max range; 0.7, 1.3 */
} diffcl_augment_options;

#define DIFFCL_AUGMENT_OPTIONS_INIT                                                                \
    {                                                                                              \
        sizeof(diffcl_augment_options), 0.0, 1, 1, 0.0, 0, 0.5, 0.7, 1.0, 0.7, 1.3, 0.7, 1.3, 0.7, \
            1.3, 0.7, 1.3                                                                          \
    }
/** Fill @p opts with the defaults (same as DIFFCL_AUGMENT_OPTIONS_INIT). */
DIFFCL_API void diffcl_augment_options_init(diffcl_augment_options *opts);

/**
 * Draw one augmented patch from a case: crop (padding symmetrically with zeros when the
 * case is smaller than @p patch), flips, rotation, scale (trilinear image, nearest label)
 * and, with opts->strong, the intensity transforms. @p image F32 [C, D, H, W] or
 * [C, H, W]; @p label (may be NULL) U8 of the spatial shape. @p patch has 3 entries
 * (D, H, W; for 2-D images patch[0] is ignored). All draws come from @p key. Outputs are
 * new tensors in @p image's context (patch_label NULL when label is NULL).
 */
DIFFCL_API diffcl_status diffcl_augment_patch(const diffcl_tensor *image,
                                              const diffcl_tensor *label, const int64_t patch[3],
                                              const diffcl_augment_options *opts,
                                              diffcl_rng_key key, diffcl_tensor **patch_image,
                                              diffcl_tensor **patch_label);

/**
 * The strong intensity set alone (blur, brightness, contrast, gamma; no geometry) on a batch
 * [N, C, ...]: sample n uses the key (key.seed, key.stream, n, key.iteration) with
 * key.index ignored. A new tensor; the input is unchanged. For weak/strong views.
 */
DIFFCL_API diffcl_status diffcl_augment_intensity(const diffcl_tensor *batch,
                                                  const diffcl_augment_options *opts,
                                                  diffcl_rng_key key, diffcl_tensor **out);

/* ------------------------------------------------------------------- sampler ---- */

typedef struct diffcl_sampler diffcl_sampler;

/** Options of diffcl_sampler_create(). */
typedef struct diffcl_sampler_options {
    size_t struct_size;
    uint64_t seed;        /**< default 1337 */
    int64_t patch[3];     /**< D, H, W (2-D: H, W in patch[1..2]); default 112, 112, 80 */
    int batch_labeled;    /**< default 2 */
    int batch_unlabeled;  /**< default 2 */
    int prefetch;         /**< batches prepared ahead by a background thread; 0: none; 2 */
    int cache;            /**< 1 (default): keep the split's cases in memory */
    int strong_unlabeled; /**< 1: strong set on the unlabeled half too (default 0) */
    diffcl_augment_options augment;
} diffcl_sampler_options;

#define DIFFCL_SAMPLER_OPTIONS_INIT                                                                \
    {                                                                                              \
        sizeof(diffcl_sampler_options), 1337, {112, 112, 80}, 2, 2, 2, 1, 0,                       \
            DIFFCL_AUGMENT_OPTIONS_INIT                                                            \
    }
/** Fill @p opts with the defaults (same as DIFFCL_SAMPLER_OPTIONS_INIT). */
DIFFCL_API void diffcl_sampler_options_init(diffcl_sampler_options *opts);

/**
 * Create a labeled/unlabeled batch sampler over @p ds (which must outlive it). Labeled
 * cases are visited in a keyed random order per epoch (each once per epoch), unlabeled ones
 * likewise; sample b of iteration it uses the key (seed, DIFFCL_STREAM_AUGMENT, b, it), so a
 * batch is a pure function of (seed, iteration). With prefetch > 0 a background thread
 * prepares iterations it+1, it+2, ... while the caller trains on it.
 */
DIFFCL_API diffcl_status diffcl_sampler_create(const diffcl_dataset *ds, const diffcl_split *split,
                                               const diffcl_sampler_options *opts,
                                               diffcl_sampler **out);
/** Stop the prefetch thread and release the sampler. NULL is ignored. */
DIFFCL_API void diffcl_sampler_free(diffcl_sampler *s);
/**
 * The batch of @p iteration: @p image [B_l + B_u, C, D, H, W] (or [B, C, H, W]), labeled
 * samples first; @p label [B_l, D, H, W] U8 (NULL-able argument). @p case_index (may be
 * NULL) receives B_l + B_u data-set indices. New tensors in the data set's context.
 */
DIFFCL_API diffcl_status diffcl_sampler_next(diffcl_sampler *s, uint32_t iteration,
                                             diffcl_tensor **image, diffcl_tensor **label,
                                             int64_t *case_index);

/** A batch with paired views of its unlabeled half (diffcl_sampler_next_views). */
typedef struct diffcl_sampler_views {
    size_t struct_size;   /**< sizeof(diffcl_sampler_views) */
    diffcl_tensor *image; /**< [B_l + B_u, C, ...]: as diffcl_sampler_next; the unlabeled
                                patches carry every augmentation (the strong view) */
    diffcl_tensor *weak;  /**< [B_u, C, ...]: the same unlabeled patches, same geometry (crop,
                                rotation, flips, scale), without the intensity and blur
                                transforms (the weak view); NULL when B_u is 0 */
    diffcl_tensor *label; /**< [B_l, ...] U8 */
} diffcl_sampler_views;

#define DIFFCL_SAMPLER_VIEWS_INIT                                                                  \
    {                                                                                              \
        sizeof(diffcl_sampler_views), NULL, NULL, NULL                                             \
    }

/**
 * The batch of @p iteration with weak and strong views of its unlabeled samples, for
 * FixMatch-style training: pseudo labels from the weak view, losses on the strong one. The
 * batch is the same as diffcl_sampler_next's (any sampler: each batch keeps the weak copies,
 * one memcpy of the unlabeled patches); the views differ only where strong_unlabeled applies
 * the intensity and blur transforms. The tensors in @p views are new and owned by the caller;
 * @p case_index as in diffcl_sampler_next.
 */
DIFFCL_API diffcl_status diffcl_sampler_next_views(diffcl_sampler *s, uint32_t iteration,
                                                   diffcl_sampler_views *views,
                                                   int64_t *case_index);

/* ------------------------------------------------------------- preprocessing ---- */

/**
 * Z-score each channel of @p image (F32 [C, ...spatial]): (x - mean) / std with the
 * population std. With @p nonzero_only the statistics come from the non-zero voxels and only
 * those are normalised (zeros stay 0: nnU-Net's "use the non-zero mask" for MRI). A channel
 * with std 0 is only centred. New tensor in @p image's context.
 */
DIFFCL_API diffcl_status diffcl_normalize_zscore(const diffcl_tensor *image, int nonzero_only,
                                                 diffcl_tensor **out);
/** Rescale each channel to [0, 1] by its minimum and maximum (a constant channel gives 0). */
DIFFCL_API diffcl_status diffcl_normalize_minmax(const diffcl_tensor *image, diffcl_tensor **out);
/**
 * Clip each channel to its [@p lo_pct, @p hi_pct] percentiles (0..100, numpy's linear
 * interpolation), e.g. 0.5 and 99.5 as nnU-Net does for CT.
 */
DIFFCL_API diffcl_status diffcl_clip_percentile(const diffcl_tensor *image, double lo_pct,
                                                double hi_pct, diffcl_tensor **out);
/**
 * CT window: clip to [@p lo, @p hi] (e.g. -125, 275 HU for the pancreas) and rescale to [0, 1].
 */
DIFFCL_API diffcl_status diffcl_ct_window(const diffcl_tensor *image, double lo, double hi,
                                          diffcl_tensor **out);

/** Interpolation of diffcl_resize() / diffcl_resample(). */
typedef enum diffcl_interp {
    DIFFCL_INTERP_NEAREST = 0, /**< for label maps */
    DIFFCL_INTERP_LINEAR = 1   /**< (bi/tri)linear, for images */
} diffcl_interp;

/**
 * Resize the last @p n_spatial (2 or 3) axes of @p t to @p size (n_spatial entries); leading
 * axes (channels) are kept. Sample centres map as PyTorch's interpolate with
 * align_corners=False: src = (dst + 0.5) * in / out - 0.5, clamped at the border. Any dtype;
 * integer tensors require DIFFCL_INTERP_NEAREST. New tensor of @p t's dtype.
 */
DIFFCL_API diffcl_status diffcl_resize(const diffcl_tensor *t, int n_spatial, const int64_t *size,
                                       diffcl_interp interp, diffcl_tensor **out);
/**
 * Resample the last @p n_spatial axes from @p spacing to @p target_spacing: the new size of
 * an axis is round(n * spacing / target). @p out_size (may be NULL) receives it; resample
 * back with diffcl_resize() to the original size.
 */
DIFFCL_API diffcl_status diffcl_resample(const diffcl_tensor *t, int n_spatial,
                                         const double *spacing, const double *target_spacing,
                                         diffcl_interp interp, diffcl_tensor **out,
                                         int64_t *out_size);

DIFFCL_END_DECLS

#endif /* DIFFCL_DATA_H */
