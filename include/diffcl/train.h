/**
 * @file train.h
 * @brief The Diff-CL semi-supervised trainer (and its supervised baseline).
 *
 * One iteration of Diff-CL (method DIFFCL_METHOD_DIFFCL) on a batch of B_l labeled and B_u
 * unlabeled patches trains two networks with one optimizer:
 *  - CS, a V-Net with HF-Mamba modules: L^c = L^c_s + mu2(t) (L^c_p + eta L_cl);
 *  - DS, the diffusion segmentation network: L^d = L^d_s + mu1(t) L^d_p;
 * where L_s is Dice + CE on the labeled patches (the DS is trained on q_sample(one_hot*2-1, t)),
 * L^d_p trains the DS on the noised CS pseudo label, L^c_p trains the CS on the DS's DDIM
 * pseudo label, and L_cl pulls unlabeled voxel features to the class prototypes of the
 * labeled ones (InfoNCE). Pseudo-label cross-entropy counts only voxels where the two networks
 * agree, and the first warmup_frac of iterations is supervised only: the guards against the
 * collapse to background of hard pseudo labels at tiny label budgets.
 * Method DIFFCL_METHOD_SUPERVISED trains the same CS on the labeled patches alone.
 *
 * A run writes into its output folder: last.safetensors and best.safetensors (model
 * configuration, both networks, optimizer and trainer state; written atomically),
 * model.safetensors (the best CS alone, loadable by diffcl_model_load()), log.csv and
 * curves.png. Random draws are keyed by (seed, purpose, sample, iteration), so a resumed
 * run continues exactly as an uninterrupted one.
 *
 * Ownership: diffcl_trainer_create() and diffcl_trainer_resume() hand out a trainer the
 * caller owns (diffcl_trainer_free()); diffcl_trainer_cs() / diffcl_trainer_ds() return
 * borrowed modules that live as long as the trainer.
 *
 * Errors: DIFFCL_ERR_INVALID_ARGUMENT for NULL arguments or bad options, the data set's
 * DIFFCL_ERR_IO / DIFFCL_ERR_FORMAT / DIFFCL_ERR_NOT_FOUND / DIFFCL_ERR_UNSUPPORTED,
 * DIFFCL_ERR_OUT_OF_MEMORY, DIFFCL_ERR_NUMERIC for a non-finite loss, DIFFCL_ERR_CANCELLED
 * from the progress callback, and the codes named per function; the detail is in
 * diffcl_last_error().
 *
 * Thread safety: a trainer is used by one thread at a time, as its context (core.h); its
 * sampler's prefetch thread is internal.
 */
#ifndef DIFFCL_TRAIN_H
#define DIFFCL_TRAIN_H

#include "diffcl/image_io.h"
#include "diffcl/model.h"

DIFFCL_BEGIN_DECLS

typedef enum diffcl_method { DIFFCL_METHOD_DIFFCL = 0, DIFFCL_METHOD_SUPERVISED = 1 } diffcl_method;

/** How L^c_p, the CS's loss on the DS pseudo label, weighs the unlabeled voxels. */
typedef enum diffcl_cps_variant {
    DIFFCL_CPS_AGREEMENT = 0, /**< 0.1.0: CE (and Dice with pseudo_mask_dice) only where CS and
                                    DS agree; the DS cannot correct the CS */
    DIFFCL_CPS_PLAIN = 1,     /**< Dice + CE on the whole DS pseudo label (CPS) */
    DIFFCL_CPS_CONFIDENCE = 2 /**< CE weighted by the DS's smoothed confidence (cps_confidence),
                                    Dice on the whole label */
} diffcl_cps_variant;

/** Every hyper-parameter of a run; the defaults are the method brief's unless noted. */
typedef struct diffcl_train_options {
    size_t struct_size;
    /* data */
    const char *layout;       /**< "phantom" (default), "png", "la-h5", "msd", "nnunet" */
    const char *data_dir;     /**< root of the data set; NULL for the phantom */
    const char *train_list;   /**< case list of the training set; NULL: the layout's default */
    const char *val_list;     /**< validation cases; NULL: no validation (best = last) */
    int dims;                 /**< 2 (default) or 3 */
    int labeled;              /**< first N of the sorted training list are labeled; default 4 */
    const char *labeled_list; /**< or an explicit list of labeled case ids */
    int64_t patch[3];    /**< D,H,W (2-D: H,W in [1],[2]); 0: 96x96 in 2-D, 112x112x80 in 3-D */
    int batch_labeled;   /**< default 2 */
    int batch_unlabeled; /**< default 2 */
    int phantom_cases;   /**< phantom: training cases generated; default 24 */
    /* method */
    diffcl_method method;
    int64_t iters; /**< default 2000 */
    uint64_t seed; /**< default 1337 */
    /* networks */
    int n_classes;       /**< classes, background included; 0 (default): those of the data
                              set's dataset.json, else 2 (0.1.0's default was 2) */
    int n_filters;       /**< CS width; default 16 */
    int ds_n_filters;    /**< DS width; default 16 (the CS's) */
    unsigned hfm_levels; /**< CS HF-Mamba placement; default DIFFCL_HFM_DEFAULT_LEVELS */
    /* optimisation */
    double lr;            /**< SGD, default 0.01, poly decay power 0.9 */
    double momentum;      /**< default 0.9 (Nesterov) */
    double weight_decay;  /**< default 3e-5 */
    double warmup_frac;   /**< supervised-only fraction of iterations; default 0.1 */
    double rampup_frac;   /**< sigmoid ramp-up of mu over the next fraction; default 0.4 */
    double mu1;           /**< DS pseudo-supervision weight; default 1 */
    double mu2;           /**< CS pseudo-supervision weight; default 1 */
    double eta;           /**< contrastive weight; default 0.1 */
    double tau;           /**< contrastive temperature; default 0.1 */
    double bank_momentum; /**< prototype memory bank EMA; default 0.99 */
    int contrast_voxels;  /**< unlabeled voxels sampled per iteration (and MPI rank), an equal
                               quota contrast_voxels / batch_unlabeled from each unlabeled patch;
                               default 4096 */
    int ddim_steps_train; /**< DDIM steps of the DS pseudo label; default 4 */
    int ddim_steps_eval;  /**< DDIM steps when the DS is evaluated; default 10 */
    /* bookkeeping */
    const char *out_dir;  /**< run folder (created); required */
    int64_t val_every;    /**< iterations between validations; 0: iters / 10 */
    int64_t log_every;    /**< iterations between progress lines; default 10 */
    int strong_unlabeled; /**< brief's strong set (scale, blur, brightness, contrast, gamma)
                                   on the unlabeled patches; default 1 (Diff-CL only) */
    int pseudo_mask_dice; /**< the agreement mask also restricts the Dice of L^c_p; default 1
                                   (agreement variant only) */
    diffcl_cps_variant cps_variant; /**< L^c_p's voxel weighting; default DIFFCL_CPS_CONFIDENCE */
    double cps_confidence;     /**< confidence variant: 0 weighs each voxel by the DS's smoothed
                                   probability of its label; t in (0,1) keeps voxels with p >= t;
                                   default 0 */
    int ds_pseudo_train_mode;  /**< 1: the DS makes its pseudo labels in training mode (0.1.0:
                                   dropout, batch statistics, running statistics updated by
                                   every DDIM step); default 0, evaluation mode */
    int contrast_balanced;     /**< an equal voxel quota per pseudo-label class in the contrastive
                                   term (0: uniform, 0.1.0); default 1 */
    int weak_strong;           /**< 1: both networks make their pseudo labels from the weak view of
                                   each unlabeled patch (its geometry, without the intensity and
                                   blur transforms; no gradient, evaluation mode) and learn them
                                   on the strong view (FixMatch); 0: both from the one view
                                   (0.1.0); default 1 */
    int hfm_border;            /**< the CS's HF-Mamba FFT border (diffcl_hfm_border): 0 periodic
                                   (0.1.0, default), 1 zero, 2 reflect padding */
    const char *init_weights;  /**< fine-tuning: a safetensors file whose tensors the CS starts
                                   from, loaded by name where the shapes agree (a run's
                                   model.safetensors, a trainer checkpoint, a diffcl_model_save()
                                   file or a converted PyTorch state dict); an output head
                                   (out_conv) of another class count keeps its initialisation, any
                                   other shape difference is an error; the DS starts fresh. What
                                   was loaded and skipped is logged at the INFO level (WARN for
                                   tensors that match nothing). NULL (default): none. Read only by
                                   diffcl_trainer_create(); a resumed run continues from its own
                                   checkpoint */
    double fg_prob;            /**< probability that a labeled patch is centred on a random
                                   foreground voxel (nnU-Net's oversampling); default 0.33 (0.1.0
                                   and checkpoints written before: 0, uniform crops) */
    int png_color;             /**< png layout: DIFFCL_PNG_COLOR_L (default, 0.1.0: one channel,
                                   colour as luminance) or DIFFCL_PNG_COLOR_RGB (R, G, B: the
                                   networks get in_channels 3, grey images are replicated);
                                   see diffcl_read_options */
    const char *label_map;     /**< png layout: label PNG values to classes, e.g. "255:1" for
                                   0/255 masks (diffcl_read_options); every class it names must
                                   be < n_classes. NULL (default): none */
    int plan;                  /**< the preprocessing plan (plan.h), computed from the training
                                   cases, applied to every case loaded and stored in the model
                                   files: 1 on, 0 off, -1 (default) on for the NIfTI layouts (msd,
                                   nnunet), off for phantom, png and h5 (whose behaviour stays
                                   0.1.0's; checkpoints written before: 0) */
    unsigned plan_ct_channels; /**< bit c: channel c is CT whatever dataset.json says; default 0 */
    int plan_interp;           /**< image resampling: a diffcl_plan_interp (0 cubic, default;
                                    1 linear) */
    int reorient_ras;          /**< 3-D NIfTI cases turned to RAS+ when loaded (before the plan);
                                    diffcl infer does the same for such a model and puts the
                                    prediction back on the input's grid; default 0 */
} diffcl_train_options;

#define DIFFCL_TRAIN_OPTIONS_INIT                                                                  \
    {                                                                                              \
        sizeof(diffcl_train_options), "phantom", NULL, NULL, NULL, 2, 4, NULL, {0, 0, 0}, 2, 2,    \
            24, DIFFCL_METHOD_DIFFCL, 2000, 1337, 0, 16, 16, DIFFCL_HFM_DEFAULT_LEVELS, 0.01, 0.9, \
            3e-5, 0.1, 0.4, 1.0, 1.0, 0.1, 0.1, 0.99, 4096, 4, 10, NULL, 0, 10, 1, 1,              \
            DIFFCL_CPS_CONFIDENCE, 0.0, 0, 1, 1, 0, NULL, 0.33, DIFFCL_PNG_COLOR_L, NULL, -1, 0u,  \
            0, 0                                                                                   \
    }
/** Fill @p opts with the defaults (same as DIFFCL_TRAIN_OPTIONS_INIT). */
DIFFCL_API void diffcl_train_options_init(diffcl_train_options *opts);

/** Losses and state after one iteration. */
typedef struct diffcl_train_stats {
    size_t struct_size;
    int64_t iteration; /**< iterations completed */
    double loss;       /**< total */
    double cs_sup;     /**< L^c_s */
    double ds_sup;     /**< L^d_s */
    double cs_pseudo;  /**< L^c_p */
    double ds_pseudo;  /**< L^d_p */
    double contrast;   /**< L_cl */
    double mu;         /**< ramp-up factor in [0,1] */
    double lr;
    double agreement;      /**< fraction of unlabeled voxels where CS and DS agree */
    double cs_fg_fraction; /**< foreground fraction of the CS prediction on unlabeled data */
    double seconds;        /**< wall time of the iteration */
} diffcl_train_stats;

typedef struct diffcl_trainer diffcl_trainer;

/** Create a trainer (opens the data, builds the networks and the optimizer). */
DIFFCL_API diffcl_status diffcl_trainer_create(diffcl_context *ctx,
                                               const diffcl_train_options *opts,
                                               diffcl_trainer **out);
/**
 * Re-open the run in @p run_dir from its last.safetensors (options, networks, optimizer,
 * iteration, memory bank). @p iters > 0 changes the total number of iterations.
 * Errors: DIFFCL_ERR_IO when @p run_dir is not a folder or holds no last.safetensors (a run
 * stopped before its first checkpoint: "no checkpoint", start it again), else the file's.
 */
DIFFCL_API diffcl_status diffcl_trainer_resume(diffcl_context *ctx, const char *run_dir,
                                               int64_t iters, diffcl_trainer **out);
/** Release a trainer: its sampler, data sets, networks and optimizer. NULL is ignored. */
DIFFCL_API void diffcl_trainer_free(diffcl_trainer *tr);

/** One training iteration. A NaN/Inf loss returns DIFFCL_ERR_NUMERIC without updating. */
DIFFCL_API diffcl_status diffcl_trainer_step(diffcl_trainer *tr, diffcl_train_stats *stats);
/**
 * Train until the configured number of iterations: progress lines through the context's
 * log, validation every val_every iterations, checkpoints, log.csv and curves.png. The
 * progress callback may cancel (the last checkpoint is kept).
 */
DIFFCL_API diffcl_status diffcl_trainer_run(diffcl_trainer *tr);
/** Write the full trainer state to @p path atomically. */
DIFFCL_API diffcl_status diffcl_trainer_save(const diffcl_trainer *tr, const char *path);
/** Iterations completed. */
DIFFCL_API int64_t diffcl_trainer_iteration(const diffcl_trainer *tr);
/** The CS (borrowed; lives as long as the trainer). */
DIFFCL_API diffcl_module *diffcl_trainer_cs(const diffcl_trainer *tr);
/** The DS (borrowed), NULL for the supervised method. */
DIFFCL_API diffcl_module *diffcl_trainer_ds(const diffcl_trainer *tr);
/** Best validation Dice so far (NaN before any validation). */
DIFFCL_API double diffcl_trainer_best_dice(const diffcl_trainer *tr);

/* ------------------------------------------------- the trained networks ---- */

/** Which network of a trained Diff-CL pair segments (diffcl_trainer_load_net). */
typedef enum diffcl_pair_net {
    DIFFCL_NET_CS = 0, /**< the CS (V-Net + HF-Mamba), as diffcl_model_load returns it */
    DIFFCL_NET_DS = 1, /**< the DS: a seeded DDIM sample from noise, conditioned on the image */
    DIFFCL_NET_ENSEMBLE = 2 /**< the mean of the CS's and the DS's softmax */
} diffcl_pair_net;

/** Options of diffcl_trainer_load_net(). */
typedef struct diffcl_net_options {
    size_t struct_size;  /**< sizeof(diffcl_net_options) */
    diffcl_pair_net net; /**< default DIFFCL_NET_CS */
    int ddim_steps;      /**< DS sampling steps; 0 (default): the run's ddim_steps_eval */
    uint64_t seed;       /**< DS noise; 0 (default): the run's seed */
} diffcl_net_options;

#define DIFFCL_NET_OPTIONS_INIT                                                                    \
    {                                                                                              \
        sizeof(diffcl_net_options), DIFFCL_NET_CS, 0, 0                                            \
    }
/** Fill @p opts with the defaults (same as DIFFCL_NET_OPTIONS_INIT). */
DIFFCL_API void diffcl_net_options_init(diffcl_net_options *opts);

/**
 * Load one network of a Diff-CL run from @p path: the run's model.safetensors (which holds
 * the DS next to the CS) or a training checkpoint (last/best.safetensors). @p opts NULL: the
 * CS, the same module diffcl_model_load() returns. The DS and the ensemble come as one module
 * whose forward maps image windows [B, C, ...] to logits [B, n_classes, ...], for
 * diffcl_segment() and diffcl_sliding_window(). Each forward call (window) draws its DS noise
 * from (seed, call index), so one image segmented the same way gives the same result.
 *
 * Ownership: @p *out is the caller's (diffcl_module_free), in evaluation mode.
 * Errors: the file's (DIFFCL_ERR_IO, DIFFCL_ERR_FORMAT); DIFFCL_ERR_NOT_FOUND for the DS of a
 * supervised run; DIFFCL_ERR_INVALID_ARGUMENT for bad options.
 * Thread safety: the module follows its context's one-thread rule.
 */
DIFFCL_API diffcl_status diffcl_trainer_load_net(diffcl_context *ctx, const char *path,
                                                 const diffcl_net_options *opts,
                                                 diffcl_module **out);

DIFFCL_END_DECLS

#endif /* DIFFCL_TRAIN_H */
