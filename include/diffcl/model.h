/**
 * @file model.h
 * @brief The convolutional segmentation network (V-Net, 2D/3D, optional HF-Mamba) and
 *        checkpoints that carry their model configuration.
 *
 * The V-Net is the one of the semi-supervised benchmark codes (UA-MT `vnet.py`): its
 * parameter and buffer names are exactly that module's PyTorch state-dict keys
 * (`block_one.conv.0.weight`, `block_one.conv.1.running_mean`, ..., `out_conv.weight`), so
 * checkpoints trained in PyTorch load unchanged (see tools/pth2safetensors.py; its --vnet mode
 * adds the configuration, so that diffcl_model_load() reads the converted file).
 *
 * Ownership: diffcl_vnet_create(), diffcl_model_load() and every `diffcl_tensor **` output
 * hand out objects the caller owns (diffcl_module_free(), diffcl_tensor_free()).
 *
 * Errors: DIFFCL_ERR_INVALID_ARGUMENT for NULL arguments or bad options, DIFFCL_ERR_SHAPE /
 * DIFFCL_ERR_DTYPE for inputs that do not fit the network, DIFFCL_ERR_OUT_OF_MEMORY,
 * DIFFCL_ERR_IO / DIFFCL_ERR_FORMAT / DIFFCL_ERR_NOT_FOUND for files; the detail is in
 * diffcl_last_error().
 *
 * Thread safety: a model is used by one thread at a time, as its context (core.h).
 */
#ifndef DIFFCL_MODEL_H
#define DIFFCL_MODEL_H

#include "diffcl/layer.h"

DIFFCL_BEGIN_DECLS

/** Encoder levels (1 = full resolution ... 5 = bottleneck) that carry an HF-Mamba module. */
#define DIFFCL_LEVEL(n) (1u << ((n)-1))
/** The default HF-Mamba placement: the two deepest encoder levels and the bottleneck. */
#define DIFFCL_HFM_DEFAULT_LEVELS (DIFFCL_LEVEL(3) | DIFFCL_LEVEL(4) | DIFFCL_LEVEL(5))

/** Options of diffcl_vnet_create(). */
typedef struct diffcl_vnet_options {
    size_t struct_size;
    int dims;                       /**< 3 (default) or 2 */
    int in_channels;                /**< default 1 */
    int n_classes;                  /**< default 2 */
    int n_filters;                  /**< default 16 */
    diffcl_norm_kind normalization; /**< default batch norm */
    int has_dropout;  /**< Dropout{2,3}d(p) on the bottleneck and last decoder feature; default 1 */
    double dropout_p; /**< default 0.5 */
    unsigned hf_mamba_levels; /**< bit mask of DIFFCL_LEVEL(n); 0 (default) = plain V-Net */
    uint64_t seed;            /**< weight initialisation and dropout draws */
    int hfm_border;           /**< diffcl_hfm_border of the HF-Mamba modules (mamba.h); default 0,
                                   periodic (0.1.0) */
} diffcl_vnet_options;

#define DIFFCL_VNET_OPTIONS_INIT                                                                   \
    {                                                                                              \
        sizeof(diffcl_vnet_options), 3, 1, 2, 16, DIFFCL_NORM_BATCH, 1, 0.5, 0u, 0, 0              \
    }
/** Fill @p opts with the defaults (same as DIFFCL_VNET_OPTIONS_INIT). */
DIFFCL_API void diffcl_vnet_options_init(diffcl_vnet_options *opts);

/** Create a V-Net. The caller owns @p *out (free with diffcl_module_free). */
DIFFCL_API diffcl_status diffcl_vnet_create(diffcl_context *ctx, const diffcl_vnet_options *opts,
                                            diffcl_module **out);
/**
 * Run the V-Net. @p logits receives [N, n_classes, (D), H, W]; @p features (may be NULL)
 * the last decoder feature [N, n_filters, ...] before dropout (for contrastive learning).
 * Spatial sizes must be multiples of 16; others give DIFFCL_ERR_SHAPE.
 * diffcl_module_forward() on a V-Net returns the logits.
 */
DIFFCL_API diffcl_status diffcl_vnet_forward(diffcl_module *vnet, const diffcl_tensor *x,
                                             diffcl_tensor **logits, diffcl_tensor **features);
/** Copy of the options a V-Net was created with (@p opts->struct_size must be set). */
DIFFCL_API diffcl_status diffcl_vnet_get_options(const diffcl_module *vnet,
                                                 diffcl_vnet_options *opts);

/**
 * Save a model with its configuration in the safetensors metadata (key "diffcl.model"),
 * atomically, so diffcl_model_load() can rebuild it without the caller knowing its options
 * (the seed included, so dropout draws continue alike). A V-Net, or a diffusion denoiser
 * (saved as diffcl_diffusion_save() does); other modules: DIFFCL_ERR_UNSUPPORTED.
 */
DIFFCL_API diffcl_status diffcl_model_save(const diffcl_module *model, const char *path);
/**
 * Rebuild a model saved by diffcl_model_save() (or any safetensors whose metadata carries
 * "diffcl.model") and load its weights strictly. The model comes back in eval mode (it is
 * loaded to be applied; diffcl_module_train(m, 1) to train it further). The caller owns
 * @p *out.
 */
DIFFCL_API diffcl_status diffcl_model_load(diffcl_context *ctx, const char *path,
                                           diffcl_module **out);

DIFFCL_END_DECLS

#endif /* DIFFCL_MODEL_H */
