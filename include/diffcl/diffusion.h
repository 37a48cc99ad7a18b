/**
 * @file diffusion.h
 * @brief The diffusion segmentation network (Diff-CL's "DS"): noise schedules, the
 *        V-Net-shaped denoiser over label maps, its training objective, DDIM sampling,
 *        one-step denoising and pseudo labels.
 *
 * The denoiser sees concat(image, x_t) on the channel axis, where x_t is a noised label map
 * with n_classes channels in x_0 space (x_0 = 2 * one_hot(label) - 1), and the timestep t.
 * By default it predicts the *logits of x_0*; the training loss is Dice + cross-entropy
 * between those logits and the label. Parameter names follow the public PyTorch
 * `DenoiseModel` (`embedding_diffusion.*`, `encoder.block_one_dw.*`, ..., `decoder.out_conv.*`)
 * and are listed in docs/diffusion.md.
 *
 * Random numbers: every draw comes from a ::diffcl_rng_key given by the caller. For batch
 * item n the key's index is `key.index + n`, so a sample's noise does not depend on which
 * batch it was drawn in. Within that key, draw k * P ... (k+1) * P - 1 (P = elements of one
 * sample's label map) is noise number k: q_sample uses k = 0, DDIM uses k = 0 for x_T and
 * k = 1, 2, ... for the stochastic part of each step (eta > 0); the training timestep of a
 * sample is draw 2^33 of its key.
 *
 * Thread safety: as every libdiffcl object, a denoiser and its schedule are used by one
 * thread at a time; different denoisers on different contexts may run concurrently.
 *
 * Ownership: the `_create` / `_load` functions and every `diffcl_tensor **` output hand out
 * objects the caller owns (diffcl_diffusion_schedule_free(), diffcl_module_free(),
 * diffcl_tensor_free()); diffcl_diffusion_get_schedule() returns a borrowed pointer that
 * lives as long as the denoiser.
 *
 * Errors: DIFFCL_ERR_INVALID_ARGUMENT for NULL handles or out-pointers and bad options,
 * DIFFCL_ERR_SHAPE / DIFFCL_ERR_DTYPE for tensors that do not fit the denoiser,
 * DIFFCL_ERR_OUT_OF_MEMORY, and the codes named per function; the detail is in
 * diffcl_last_error().
 */
#ifndef DIFFCL_DIFFUSION_H
#define DIFFCL_DIFFUSION_H

#include "diffcl/layer.h"

DIFFCL_BEGIN_DECLS

/* ------------------------------------------------------------- schedule ---- */

/** Variance schedule of the forward process. */
typedef enum diffcl_beta_schedule {
    /** betas = linspace(1e-4 * 1000/T, 0.02 * 1000/T, T) (guided-diffusion "linear"). */
    DIFFCL_BETA_LINEAR = 0,
    /** Nichol & Dhariwal: alpha_bar(s) = cos^2((s + 0.008) / 1.008 * pi / 2), betas <= 0.999. */
    DIFFCL_BETA_COSINE = 1
} diffcl_beta_schedule;

/** The tables of a forward process (betas, alpha_bar = cumprod(1 - beta)) in double. */
typedef struct diffcl_diffusion_schedule diffcl_diffusion_schedule;

/**
 * Create the schedule @p kind with @p timesteps steps (>= 2). The caller owns @p *out
 * (free with diffcl_diffusion_schedule_free). DIFFCL_ERR_INVALID_ARGUMENT for an unknown
 * kind or a bad step count.
 */
DIFFCL_API diffcl_status diffcl_diffusion_schedule_create(diffcl_beta_schedule kind, int timesteps,
                                                          diffcl_diffusion_schedule **out);
/** Release a schedule. NULL is ignored. */
DIFFCL_API void diffcl_diffusion_schedule_free(diffcl_diffusion_schedule *s);
/** Number of timesteps T (0 for NULL). */
DIFFCL_API int diffcl_diffusion_schedule_timesteps(const diffcl_diffusion_schedule *s);
/**
 * Copy the tables: @p betas[t] and @p alpha_bar[t] for t = 0..T-1 (either may be NULL;
 * each must hold T doubles).
 */
DIFFCL_API diffcl_status diffcl_diffusion_schedule_tables(const diffcl_diffusion_schedule *s,
                                                          double *betas, double *alpha_bar);

/**
 * Forward noising q(x_t | x_0): x_t[n] = sqrt(alpha_bar[t[n]]) x_0[n] + sqrt(1 - alpha_bar[t[n]]) eps[n]
 * with eps drawn from @p key (noise number 0 of batch item n, see the file comment).
 * @p x0 is [N, C, ...] (F32 or F64); @p t holds N timesteps in [0, T). Differentiable with
 * respect to @p x0. @p x_t (required) and @p noise (may be NULL) are new tensors owned by
 * the caller.
 */
DIFFCL_API diffcl_status diffcl_diffusion_q_sample(const diffcl_diffusion_schedule *s,
                                                   const diffcl_tensor *x0, const int64_t *t,
                                                   diffcl_rng_key key, diffcl_tensor **x_t,
                                                   diffcl_tensor **noise);

/** How a sampler picks its subset of the original timesteps. */
typedef enum diffcl_respacing {
    /** guided-diffusion space_timesteps(T, [k]): round(i * (T-1)/(k-1)), i = 0..k-1. */
    DIFFCL_RESPACE_EVEN = 0,
    /** guided-diffusion "ddimk": 0, s, 2s, ... with the integer stride s giving k steps. */
    DIFFCL_RESPACE_STRIDE = 1
} diffcl_respacing;

/**
 * Respace T timesteps to @p steps (1 <= steps <= T): writes the original timestep indices,
 * ascending, into @p out[0..steps). DIFFCL_ERR_INVALID_ARGUMENT when no stride gives exactly
 * @p steps steps (DIFFCL_RESPACE_STRIDE) or the counts are out of range.
 */
DIFFCL_API diffcl_status diffcl_diffusion_respace(int timesteps, int steps, diffcl_respacing mode,
                                                  int *out);

/* ------------------------------------------------------------- denoiser ---- */

/** What the denoiser's output means. */
typedef enum diffcl_diffusion_target {
    /** Logits of x_0 (Diff-CL, default); trained with Dice + cross-entropy to the label. */
    DIFFCL_DIFFUSION_PREDICT_X0 = 0,
    /** The noise eps (classic DDPM); trained with the mean squared error to the drawn noise. */
    DIFFCL_DIFFUSION_PREDICT_EPSILON = 1
} diffcl_diffusion_target;

/** Options of diffcl_diffusion_create(). */
typedef struct diffcl_diffusion_options {
    size_t struct_size;
    int dims;        /**< 3 (default) or 2 */
    int in_channels; /**< image channels, default 1 */
    int n_classes;   /**< label classes = channels of x_t and of the output, default 2 */
    int n_filters;   /**< width of the first level, default 16 (16,32,64,128,256) */
    diffcl_norm_kind normalization; /**< BATCH (default), GROUP (16 groups), INSTANCE or NONE */
    double stage_dropout;           /**< Dropout{2,3}d after every conv stage, default 0.1 */
    int has_dropout;  /**< Dropout{2,3}d(dropout_p) on the bottleneck and last feature; default 0 */
    double dropout_p; /**< default 0.5 */
    diffcl_beta_schedule schedule;  /**< default DIFFCL_BETA_LINEAR */
    int timesteps;                  /**< T, default 1000 */
    diffcl_diffusion_target target; /**< default DIFFCL_DIFFUSION_PREDICT_X0 */
    int time_embed_dim;             /**< sinusoidal embedding size, default 128 (even, >= 4) */
    int time_hidden_dim;            /**< time MLP width, default 512 (= 4 x 128) */
    uint64_t seed;                  /**< weight initialisation and dropout draws */
} diffcl_diffusion_options;

#define DIFFCL_DIFFUSION_OPTIONS_INIT                                                              \
    {                                                                                              \
        sizeof(diffcl_diffusion_options), 3, 1, 2, 16, DIFFCL_NORM_BATCH, 0.1, 0, 0.5,             \
            DIFFCL_BETA_LINEAR, 1000, DIFFCL_DIFFUSION_PREDICT_X0, 128, 512, 0                     \
    }
/** Fill @p opts with the defaults (same as DIFFCL_DIFFUSION_OPTIONS_INIT). */
DIFFCL_API void diffcl_diffusion_options_init(diffcl_diffusion_options *opts);

/**
 * Create a denoiser with its schedule. Weights are initialised as PyTorch's defaults from
 * @p opts->seed. The module starts in training mode. The caller owns @p *out (free with
 * diffcl_module_free). DIFFCL_ERR_INVALID_ARGUMENT names the bad option.
 */
DIFFCL_API diffcl_status diffcl_diffusion_create(diffcl_context *ctx,
                                                 const diffcl_diffusion_options *opts,
                                                 diffcl_module **out);
/** Copy of the options a denoiser was created with (@p opts->struct_size must be set). */
DIFFCL_API diffcl_status diffcl_diffusion_get_options(const diffcl_module *m,
                                                      diffcl_diffusion_options *opts);
/** The denoiser's schedule (borrowed; lives as long as @p m), or NULL if @p m is not one. */
DIFFCL_API const diffcl_diffusion_schedule *diffcl_diffusion_get_schedule(const diffcl_module *m);

/**
 * One denoiser pass: @p x_t [N, n_classes, (D), H, W], @p image [N, in_channels, ...] of the
 * same spatial size (a multiple of 16 on every axis), @p t N timesteps in [0, T) (original
 * indices). @p out receives [N, n_classes, ...]: x_0 logits (or eps). Recorded by autograd
 * when gradients are enabled; uses the module's train/eval mode (batch norm, dropout).
 */
DIFFCL_API diffcl_status diffcl_diffusion_forward(diffcl_module *m, const diffcl_tensor *x_t,
                                                  const diffcl_tensor *image, const int64_t *t,
                                                  diffcl_tensor **out);

/**
 * x_0 of a label map: 2 * one_hot(label) - 1 as F32 [N, n_classes, ...]. @p label holds class
 * indices (U8, I32 or I64) shaped [N, ...] or [N, 1, ...]; DIFFCL_ERR_INVALID_ARGUMENT for an
 * index outside [0, n_classes).
 */
DIFFCL_API diffcl_status diffcl_diffusion_encode_label(const diffcl_tensor *label, int n_classes,
                                                       diffcl_tensor **x0);

/**
 * The training objective on one batch: t ~ U{0..T-1} and eps from @p key, x_t = q_sample(x_0, t)
 * with x_0 = encode_label(@p label), then
 * - PREDICT_X0: loss = soft Dice (foreground classes) + cross-entropy between the output
 *   logits and @p label;
 * - PREDICT_EPSILON: loss = mean((output - eps)^2).
 * @p loss is a 0-d tensor to back-propagate; @p out (may be NULL) the denoiser output.
 * The caller owns both.
 */
DIFFCL_API diffcl_status diffcl_diffusion_loss(diffcl_module *m, const diffcl_tensor *image,
                                               const diffcl_tensor *label, diffcl_rng_key key,
                                               diffcl_tensor **loss, diffcl_tensor **out);

/** Options of diffcl_diffusion_loss_ex(). */
typedef struct diffcl_diffusion_loss_options {
    size_t struct_size;
    double dice_weight; /**< PREDICT_X0: weight of the Dice term, default 1 */
    double ce_weight;   /**< PREDICT_X0: weight of the cross-entropy term, default 1 */
    /**
     * Voxel weights / mask shaped like the label without a channel axis ([N, (D), H, W], any
     * dtype), or NULL. PREDICT_X0: the voxel weights of both Dice and CE (e.g. a confidence
     * mask for pseudo labels); PREDICT_EPSILON: sum m (out - eps)^2 / (C sum m).
     */
    const diffcl_tensor *voxel_weight;
    /** N timesteps to use instead of uniform draws (e.g. for evaluation), or NULL. */
    const int64_t *timesteps;
} diffcl_diffusion_loss_options;

#define DIFFCL_DIFFUSION_LOSS_OPTIONS_INIT                                                         \
    {                                                                                              \
        sizeof(diffcl_diffusion_loss_options), 1.0, 1.0, NULL, NULL                                \
    }
/** Fill @p opts with the defaults (same as DIFFCL_DIFFUSION_LOSS_OPTIONS_INIT). */
DIFFCL_API void diffcl_diffusion_loss_options_init(diffcl_diffusion_loss_options *opts);

/**
 * diffcl_diffusion_loss() with options (@p opts NULL: the defaults, the same as
 * diffcl_diffusion_loss). The key still draws the noise (and the timesteps when
 * @p opts->timesteps is NULL).
 */
DIFFCL_API diffcl_status diffcl_diffusion_loss_ex(diffcl_module *m, const diffcl_tensor *image,
                                                  const diffcl_tensor *label, diffcl_rng_key key,
                                                  const diffcl_diffusion_loss_options *opts,
                                                  diffcl_tensor **loss, diffcl_tensor **out);

/** Options of diffcl_diffusion_sample(). */
typedef struct diffcl_diffusion_sample_options {
    size_t struct_size;
    int steps;                  /**< respaced DDIM steps, default 10 */
    double eta;                 /**< DDIM eta, default 0 (deterministic given x_T) */
    diffcl_respacing respacing; /**< default DIFFCL_RESPACE_EVEN */
    diffcl_rng_key key;         /**< draws of x_T (and of the eta > 0 noise) */
} diffcl_diffusion_sample_options;

#define DIFFCL_DIFFUSION_SAMPLE_OPTIONS_INIT                                                       \
    {                                                                                              \
        sizeof(diffcl_diffusion_sample_options), 10, 0.0, DIFFCL_RESPACE_EVEN,                     \
        {                                                                                          \
            0, 0, 0, 0, 0                                                                          \
        }                                                                                          \
    }
/** Fill @p opts with the defaults (same as DIFFCL_DIFFUSION_SAMPLE_OPTIONS_INIT). */
DIFFCL_API void diffcl_diffusion_sample_options_init(diffcl_diffusion_sample_options *opts);

/**
 * DDIM sampling from pure noise conditioned on @p image [N, in_channels, ...]: x_T ~ N(0, I);
 * for each respaced step (the model given the original timestep) x̂_0 = 2 softmax(logits) - 1
 * (PREDICT_EPSILON: x̂_0 = clip((x_t - sqrt(1-ab) eps) / sqrt(ab), -1, 1)), then the DDIM update.
 * @p out receives the x_0 logits of the last step (PREDICT_EPSILON: the last x̂_0), shaped
 * [N, n_classes, ...]. Runs without recording gradients (no tape memory); uses the module's
 * train/eval mode as set by the caller. @p opts may be NULL for the defaults.
 */
DIFFCL_API diffcl_status diffcl_diffusion_sample(diffcl_module *m, const diffcl_tensor *image,
                                                 const diffcl_diffusion_sample_options *opts,
                                                 diffcl_tensor **out);

/**
 * One-step mode: noise the given map @p x0 [N, n_classes, ...] (in x_0 space, e.g. from
 * diffcl_diffusion_encode_label or 2 * probabilities - 1) to timestep @p t with @p key, then
 * denoise once. @p out receives the x_0 logits (PREDICT_EPSILON: x̂_0). Without gradients.
 */
DIFFCL_API diffcl_status diffcl_diffusion_denoise_once(diffcl_module *m, const diffcl_tensor *image,
                                                       const diffcl_tensor *x0, int t,
                                                       diffcl_rng_key key, diffcl_tensor **out);

/**
 * Pseudo labels from denoiser logits [N, C, (D), H, W]: softmax over classes, Gaussian smoothing
 * of each class map (kernel 3, sigma 1, separable, renormalised at the borders), then argmax.
 * @p labels receives I64 [N, (D), H, W]; @p probs (may be NULL) the smoothed probabilities
 * [N, C, ...] (F32). Not differentiable; records nothing.
 */
DIFFCL_API diffcl_status diffcl_diffusion_pseudo_label(const diffcl_tensor *logits,
                                                       diffcl_tensor **labels,
                                                       diffcl_tensor **probs);

/**
 * Save a denoiser's state dict with its options (the seed included) in the safetensors
 * metadata (key "diffcl.model": JSON with "type": "diffusion"), atomically.
 */
DIFFCL_API diffcl_status diffcl_diffusion_save(const diffcl_module *m, const char *path);
/**
 * Rebuild a denoiser saved by diffcl_diffusion_save() and load its weights strictly, in
 * eval mode. DIFFCL_ERR_FORMAT when the file does not describe a denoiser. The caller owns
 * @p *out.
 */
DIFFCL_API diffcl_status diffcl_diffusion_load(diffcl_context *ctx, const char *path,
                                               diffcl_module **out);

DIFFCL_END_DECLS

#endif /* DIFFCL_DIFFUSION_H */
