/**
 * @file layer_conv.h
 * @brief Convolution, transposed convolution, pooling and up-sampling (2D and 3D).
 *
 * Tensors are NCHW (2D) or NCDHW (3D), F32 (F64 for reference and gradient checks).
 * Weights follow PyTorch: conv [Cout, Cin, k...], transposed conv [Cin, Cout, k...].
 * Each functional op records its backward when an input requires grad; each module
 * owns `weight` and (optionally) `bias` named as PyTorch's Conv/ConvTranspose layers.
 *
 * Ownership: every `diffcl_tensor **` output is a new tensor the caller owns
 * (diffcl_tensor_free()); diffcl_conv_create() hands out a module the caller owns
 * (diffcl_module_free()).
 *
 * Errors: DIFFCL_ERR_INVALID_ARGUMENT for a NULL tensor or out-pointer and a bad geometry,
 * DIFFCL_ERR_DTYPE for non-float or mixed dtypes, DIFFCL_ERR_SHAPE for shapes that do not
 * fit, DIFFCL_ERR_OUT_OF_MEMORY; the detail is in diffcl_last_error().
 *
 * Thread safety: as every op, a call uses its tensors' context from one thread at a time
 * (core.h).
 */
#ifndef DIFFCL_LAYER_CONV_H
#define DIFFCL_LAYER_CONV_H

#include "diffcl/module.h"

DIFFCL_BEGIN_DECLS

/**
 * Geometry of a convolution or pooling window: one entry per spatial axis (2 or 3 used).
 *
 * Fixed layout, although it begins with struct_size: it is embedded in
 * ::diffcl_conv_options before another member, so it cannot grow within a major version
 * (docs/abi-policy.md); set struct_size with DIFFCL_CONV_GEOMETRY_INIT,
 * diffcl_conv_geometry_init() or diffcl_conv_geometry_make() all the same.
 */
typedef struct diffcl_conv_geometry {
    size_t struct_size;
    int dims; /**< 2 or 3 spatial dimensions */
    int kernel[3];
    int stride[3];
    int padding[3];        /**< zero padding on both sides */
    int output_padding[3]; /**< transposed convolution only */
    int dilation[3];       /**< default 1 */
} diffcl_conv_geometry;

#define DIFFCL_CONV_GEOMETRY_INIT                                                                  \
    {                                                                                              \
        sizeof(diffcl_conv_geometry), 3, {3, 3, 3}, {1, 1, 1}, {0, 0, 0}, {0, 0, 0},               \
        {                                                                                          \
            1, 1, 1                                                                                \
        }                                                                                          \
    }
/** Fill @p g with the defaults (same as DIFFCL_CONV_GEOMETRY_INIT). */
DIFFCL_API void diffcl_conv_geometry_init(diffcl_conv_geometry *g);
/** Geometry with the same kernel, stride and padding on every axis. */
DIFFCL_API diffcl_conv_geometry diffcl_conv_geometry_make(int dims, int kernel, int stride,
                                                          int padding);

/**
 * Convolution: x [N,Cin,(D),H,W], w [Cout,Cin,k...], b [Cout] or NULL.
 * DIFFCL_ERR_SHAPE for mismatched channels or an input smaller than the kernel.
 */
DIFFCL_API diffcl_status diffcl_conv(const diffcl_tensor *x, const diffcl_tensor *w,
                                     const diffcl_tensor *b, const diffcl_conv_geometry *g,
                                     diffcl_tensor **out);
/** Transposed convolution: x [N,Cin,...], w [Cin,Cout,k...], b [Cout] or NULL. */
DIFFCL_API diffcl_status diffcl_conv_transpose(const diffcl_tensor *x, const diffcl_tensor *w,
                                               const diffcl_tensor *b,
                                               const diffcl_conv_geometry *g, diffcl_tensor **out);
/** Max pooling (padding with -inf). */
DIFFCL_API diffcl_status diffcl_max_pool(const diffcl_tensor *x, const diffcl_conv_geometry *g,
                                         diffcl_tensor **out);
/** Average pooling (count_include_pad = true, as PyTorch's default). */
DIFFCL_API diffcl_status diffcl_avg_pool(const diffcl_tensor *x, const diffcl_conv_geometry *g,
                                         diffcl_tensor **out);

typedef enum diffcl_upsample_mode {
    DIFFCL_UPSAMPLE_NEAREST = 0,
    DIFFCL_UPSAMPLE_LINEAR = 1 /**< bilinear / trilinear, align_corners = false */
} diffcl_upsample_mode;

/** Up-sample the spatial axes by integer @p scale (2D or 3D from x's rank). */
DIFFCL_API diffcl_status diffcl_upsample(const diffcl_tensor *x, int scale,
                                         diffcl_upsample_mode mode, diffcl_tensor **out);

/** Options of a convolution module. */
typedef struct diffcl_conv_options {
    size_t struct_size;
    int in_channels;
    int out_channels;
    int bias;       /**< 1 (default): learnable bias */
    int transposed; /**< 1: ConvTranspose */
    diffcl_conv_geometry geometry;
    diffcl_rng_key init_key; /**< PyTorch reset_parameters (kaiming-uniform a=sqrt(5)) */
} diffcl_conv_options;

#define DIFFCL_CONV_OPTIONS_INIT                                                                   \
    {                                                                                              \
        sizeof(diffcl_conv_options), 1, 1, 1, 0, DIFFCL_CONV_GEOMETRY_INIT,                        \
        {                                                                                          \
            0, 0, 0, 0, 0                                                                          \
        }                                                                                          \
    }
/** Fill @p opts with the defaults (same as DIFFCL_CONV_OPTIONS_INIT). */
DIFFCL_API void diffcl_conv_options_init(diffcl_conv_options *opts);

/**
 * Create a Conv{2,3}d / ConvTranspose{2,3}d module with parameters `weight` and `bias`,
 * initialised as PyTorch's reset_parameters (bound 1/sqrt(fan_in); for transposed conv
 * fan_in = weight.size(1) * kernel volume) from @p opts->init_key: the weight takes draws
 * 0 .. numel(weight)-1 of the key in row-major order, the bias the next Cout draws.
 */
DIFFCL_API diffcl_status diffcl_conv_create(diffcl_context *ctx, const diffcl_conv_options *opts,
                                            diffcl_module **out);

/* ------------------------------------------------------- causal convolution ---- */

/**
 * Depthwise causal 1-D convolution over the token axis: PyTorch's
 * `Conv1d(C, C, K, groups=C, padding=K-1)(x)[..., :L]` (mamba_ssm's short convolution).
 * @p x is [B, C, L] when @p channels_last is 0, or [B, L, C] when it is 1 (the output has the
 * same layout); @p w is [C, 1, K] or [C, K]; @p b is [C] or NULL. With @p reverse = 1 the
 * convolution is anti-causal (output t sees inputs t .. t+K-1): the same as flipping x along
 * L, convolving and flipping back. F32 or F64; recorded for autograd.
 */
DIFFCL_API diffcl_status diffcl_causal_conv1d(const diffcl_tensor *x, const diffcl_tensor *w,
                                              const diffcl_tensor *b, int channels_last,
                                              int reverse, diffcl_tensor **out);

DIFFCL_END_DECLS

#endif /* DIFFCL_LAYER_CONV_H */
