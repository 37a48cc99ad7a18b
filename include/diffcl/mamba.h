/**
 * @file mamba.h
 * @brief The Mamba block (uni- or bidirectional), its causal depthwise convolution, and the
 *        HF-Mamba module that runs a Mamba block over the high-frequency band of a feature map.
 *
 * Parameter names follow mamba_ssm's `Mamba` module and Vision Mamba's bidirectional
 * ("v2") block, so their state dicts load unchanged:
 *
 *     A_log [E,N], D [E], (A_b_log [E,N], D_b [E]),
 *     in_proj.weight [2E,C], conv1d.weight [E,1,K], conv1d.bias [E],
 *     x_proj.weight [R+2N,E], dt_proj.weight [E,R], dt_proj.bias [E],
 *     (conv1d_b.weight, conv1d_b.bias, x_proj_b.weight, dt_proj_b.weight, dt_proj_b.bias,)
 *     out_proj.weight [C,E]
 *
 * with C = d_model, E = expand * C, N = d_state, K = d_conv, R = dt_rank; the `_b` entries
 * exist only in bidirectional blocks. The HF-Mamba module holds `norm.weight`, `norm.bias`
 * (the LayerNorm over channels) and the block as `mixer.*`.
 *
 * Ownership: every `diffcl_tensor **` output is a new tensor the caller owns
 * (diffcl_tensor_free()); the `_create` functions hand out a module the caller owns
 * (diffcl_module_free()).
 *
 * Errors: DIFFCL_ERR_INVALID_ARGUMENT for NULL arguments or bad options, DIFFCL_ERR_SHAPE /
 * DIFFCL_ERR_DTYPE for tensors that do not fit, DIFFCL_ERR_OUT_OF_MEMORY; the detail is in
 * diffcl_last_error().
 *
 * Thread safety: as every op and module, a call uses its context from one thread at a time
 * (core.h).
 */
#ifndef DIFFCL_MAMBA_H
#define DIFFCL_MAMBA_H

#include "diffcl/fft.h"
#include "diffcl/layer_conv.h" /* diffcl_causal_conv1d, declared there since 0.2 */
#include "diffcl/module.h"

DIFFCL_BEGIN_DECLS

/* -------------------------------------------------------------- Mamba block ---- */

/** Options of diffcl_mamba_create(). Defaults are mamba_ssm's. */
typedef struct diffcl_mamba_options {
    size_t struct_size;      /**< sizeof(diffcl_mamba_options) */
    int d_model;             /**< C, the token width (required, >= 1) */
    int d_state;             /**< N, default 16 (at most DIFFCL_SCAN_MAX_STATE) */
    int d_conv;              /**< K, default 4 */
    int expand;              /**< E = expand * C, default 2 */
    int dt_rank;             /**< R; 0 (default): ceil(C / 16) */
    double dt_min;           /**< default 1e-3: the initial step sizes softplus(dt_proj.bias) */
    double dt_max;           /**<   are log-uniform in [dt_min, dt_max] ... */
    double dt_init_floor;    /**<   ... and at least this; default 1e-4 */
    double dt_scale;         /**< dt_proj.weight ~ U(+-dt_scale / sqrt(R)); default 1 */
    int conv_bias;           /**< default 1 */
    int bias;                /**< in_proj / out_proj biases; default 0 */
    int bidirectional;       /**< 1: add the reverse scan with its own `_b` weights (outputs
                                  summed before out_proj); default 0 */
    int scan_chunk;          /**< selective-scan checkpoint interval; 0 (default) = auto */
    diffcl_rng_key init_key; /**< initialisation draws (parameter p uses stream + p) */
} diffcl_mamba_options;

#define DIFFCL_MAMBA_OPTIONS_INIT                                                                  \
    {                                                                                              \
        sizeof(diffcl_mamba_options), 0, 16, 4, 2, 0, 1e-3, 0.1, 1e-4, 1.0, 1, 0, 0, 0,            \
        {                                                                                          \
            0, 0, 0, 0, 0                                                                          \
        }                                                                                          \
    }
/** Fill @p opts with the defaults (same as DIFFCL_MAMBA_OPTIONS_INIT). */
DIFFCL_API void diffcl_mamba_options_init(diffcl_mamba_options *opts);

/**
 * Create a Mamba block (module type "mamba"). Its forward (diffcl_module_forward) maps
 * tokens [B, L, C] to [B, L, C]:
 *   x, z = in_proj(h).split(E); x = silu(conv1d(x)); dt, B, C = x_proj(x).split(R, N, N);
 *   y = scan(x, dt_proj(dt), -exp(A_log), B, C, D, z, dt_proj.bias, softplus)
 *       [+ the same with the `_b` weights scanned from the last token to the first];
 *   out = out_proj(y).
 * Initialisation as mamba_ssm (A_log = log(1..N), D = 1, inverse-softplus dt bias, PyTorch
 * defaults for the linear and conv layers); the reverse direction is initialised the same
 * way. The caller owns @p *out (diffcl_module_free).
 */
DIFFCL_API diffcl_status diffcl_mamba_create(diffcl_context *ctx, const diffcl_mamba_options *opts,
                                             diffcl_module **out);

/* ------------------------------------------------------------ HF-Mamba module ---- */

/** How the HF-Mamba output is combined with the input feature map F. */
typedef enum diffcl_hfm_combine {
    DIFFCL_HFM_RESIDUAL = 0, /**< F + HFM(F_high) (default) */
    DIFFCL_HFM_ATTENTION = 1 /**< F * sigmoid(HFM(F_high)) */
} diffcl_hfm_combine;

/** Options of diffcl_hf_mamba_create(). */
/** The border of the HF-Mamba FFT: the patch as one period (the FFT's own, 0.1.0), or padded
 * with zeros or by reflection, filtered, and cropped back. At the small grids of the deep
 * V-Net levels the periodic seam between opposite borders is most of the high band. */
typedef enum diffcl_hfm_border {
    DIFFCL_HFM_BORDER_PERIODIC = 0,
    DIFFCL_HFM_BORDER_ZERO = 1,
    DIFFCL_HFM_BORDER_REFLECT = 2
} diffcl_hfm_border;

typedef struct diffcl_hf_mamba_options {
    size_t struct_size;         /**< sizeof(diffcl_hf_mamba_options) */
    int channels;               /**< C of the feature maps (required, >= 1) */
    diffcl_freq_window window;  /**< high-pass shape, default DIFFCL_WINDOW_GAUSSIAN */
    double cutoff;              /**< high-pass cutoff, fraction of Nyquist; default 0.25 */
    diffcl_hfm_combine combine; /**< default DIFFCL_HFM_RESIDUAL */
    int bidirectional;          /**< default 1 (token order plus reversed order) */
    int d_state;                /**< default 16 */
    int d_conv;                 /**< default 4 */
    int expand;                 /**< default 2 */
    int dt_rank;                /**< 0 (default): ceil(C / 16) */
    double norm_eps;            /**< LayerNorm epsilon, default 1e-5 */
    int scan_chunk;             /**< 0 (default) = auto */
    diffcl_rng_key init_key;    /**< initialisation draws */
    diffcl_hfm_border border;   /**< what the FFT sees beyond the patch; default
                                     DIFFCL_HFM_BORDER_PERIODIC (0.1.0) */
    int border_pad;             /**< voxels padded on each side of each spatial axis with a
                                     ZERO or REFLECT border; 0 (default): a quarter of the
                                     axis, at least 1 (reflection: at most length - 1) */
} diffcl_hf_mamba_options;

#define DIFFCL_HF_MAMBA_OPTIONS_INIT                                                               \
    {                                                                                              \
        sizeof(diffcl_hf_mamba_options), 0, DIFFCL_WINDOW_GAUSSIAN, 0.25, DIFFCL_HFM_RESIDUAL, 1,  \
            16, 4, 2, 0, 1e-5, 0, {0, 0, 0, 0, 0}, DIFFCL_HFM_BORDER_PERIODIC, 0                   \
    }
/** Fill @p opts with the defaults (same as DIFFCL_HF_MAMBA_OPTIONS_INIT). */
DIFFCL_API void diffcl_hf_mamba_options_init(diffcl_hf_mamba_options *opts);

/**
 * Create an HF-Mamba module (type "hf_mamba") for feature maps of @p opts->channels channels.
 * Its single-input forward (diffcl_module_forward) takes x [N, C, H, W] or [N, C, D, H, W]
 * (F32, or F64 after diffcl_module_to_dtype) and returns a tensor of the same shape:
 *   F_high = high-pass(x) (FFT, fft.h); tokens = F_high as [N, D*H*W, C] (row-major voxels);
 *   t = mixer(norm(tokens)); back to [N, C, ...];  out = x + t  or  x * sigmoid(t).
 * The caller owns @p *out.
 */
DIFFCL_API diffcl_status diffcl_hf_mamba_create(diffcl_context *ctx,
                                                const diffcl_hf_mamba_options *opts,
                                                diffcl_module **out);

DIFFCL_END_DECLS

#endif /* DIFFCL_MAMBA_H */
