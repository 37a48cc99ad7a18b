/* The V-Net of the semi-supervised benchmark codes (UA-MT vnet.py), 2D or 3D, optionally
 * with HF-Mamba modules on chosen encoder levels.
 *
 *   block_one   (1 stage,  F)      -> x1 ----------------------------------+ (skip, added)
 *   block_one_dw (k2s2, 2F)                                                 |
 *   block_two   (2 stages, 2F)     -> x2 -----------------------------+     |
 *   block_two_dw (4F)                                                 |     |
 *   block_three (3 stages, 4F)     -> x3 ------------------------+    |     |
 *   block_three_dw (8F)                                          |    |     |
 *   block_four  (3 stages, 8F)     -> x4 -------------------+    |    |     |
 *   block_four_dw (16F)                                     |    |    |     |
 *   block_five  (3 stages, 16F)    -> x5 (dropout)          |    |    |     |
 *   block_five_up (8F) + x4 -> block_six (3) -> _up (4F) + x3 -> block_seven (3) -> _up (2F)
 *   + x2 -> block_eight (2) -> _up (F) + x1 -> block_nine (1) -> (dropout) -> out_conv (1x1)
 *
 * Every stage is Conv k3 p1 -> [norm] -> ReLU, in a Sequential named `conv`, so the
 * parameter names and `conv.<i>` indices match the PyTorch module for every normalisation.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diffcl/layer_conv.h"
#include "diffcl/model.h"
#include "diffcl/mamba.h"
#include "layer/module_internal.h"
#include "model/model_internal.h"

enum { STREAM_VNET_INIT = 0x564e0000u, STREAM_VNET_DROPOUT = 0x564e4400u };

typedef struct vnet_impl {
    diffcl_vnet_options opts;
} vnet_impl;

/* A block whose forward is its `conv` Sequential. */
static diffcl_status block_forward(diffcl_module *m, const diffcl_tensor *x, diffcl_tensor **out)
{
    return dc_module_run(dc_module_get_child(m, "conv"), x, out);
}
static const dc_module_vtable BLOCK_VT = {"vnet_block", block_forward, NULL};

typedef struct builder {
    diffcl_context *ctx;
    const diffcl_vnet_options *o;
    uint32_t n_convs; /* init-key index: each conv draws from its own stream position */
} builder;

static diffcl_status add_norm(builder *b, diffcl_module *seq, int channels)
{
    if (b->o->normalization == DIFFCL_NORM_NONE) return DIFFCL_OK;
    diffcl_norm_options no = DIFFCL_NORM_OPTIONS_INIT;
    no.kind = b->o->normalization;
    no.channels = channels;
    no.groups = 16;
    if (no.kind == DIFFCL_NORM_INSTANCE) { /* nn.InstanceNorm3d defaults */
        no.affine = 0;
        no.track_running_stats = 0;
    }
    diffcl_module *norm = NULL;
    DC_TRY(diffcl_norm_create(b->ctx, &no, &norm));
    return diffcl_sequential_append(seq, norm);
}

static diffcl_status add_conv(builder *b, diffcl_module *seq, int cin, int cout, int kernel,
                              int stride, int pad, int transposed)
{
    diffcl_conv_options co = DIFFCL_CONV_OPTIONS_INIT;
    co.in_channels = cin;
    co.out_channels = cout;
    co.transposed = transposed;
    co.geometry = diffcl_conv_geometry_make(b->o->dims, kernel, stride, pad);
    co.init_key = diffcl_rng_key_make(b->o->seed, STREAM_VNET_INIT, b->n_convs++, 0);
    diffcl_module *conv = NULL;
    DC_TRY(diffcl_conv_create(b->ctx, &co, &conv));
    return diffcl_sequential_append(seq, conv);
}

static diffcl_status add_relu(builder *b, diffcl_module *seq)
{
    diffcl_module *act = NULL;
    DC_TRY(diffcl_activation_create(b->ctx, DIFFCL_ACT_RELU, &act));
    return diffcl_sequential_append(seq, act);
}

/* kind 0: ConvBlock (n_stages of k3 p1); 1: DownsamplingConvBlock; 2: UpsamplingDeconvBlock */
static diffcl_status add_block(builder *b, diffcl_module *parent, const char *name, int kind,
                               int n_stages, int cin, int cout)
{
    diffcl_module *blk = dc_module_new(b->ctx, &BLOCK_VT, NULL), *seq = NULL;
    if (!blk) return DIFFCL_ERR_OUT_OF_MEMORY;
    diffcl_status s = diffcl_sequential_create(b->ctx, &seq);
    if (s == DIFFCL_OK) s = dc_module_add_child(blk, "conv", seq);
    for (int i = 0; s == DIFFCL_OK && i < (kind == 0 ? n_stages : 1); i++) {
        int in = i == 0 ? cin : cout;
        if (kind == 0)
            s = add_conv(b, seq, in, cout, 3, 1, 1, 0);
        else
            s = add_conv(b, seq, in, cout, 2, 2, 0, kind == 2);
        if (s == DIFFCL_OK) s = add_norm(b, seq, cout);
        if (s == DIFFCL_OK) s = add_relu(b, seq);
    }
    if (s != DIFFCL_OK) {
        diffcl_module_free(blk);
        return s;
    }
    return dc_module_add_child(parent, name, blk);
}

static void free_vnet_impl(void *p)
{
    free(p);
}
static diffcl_status vnet_module_forward(diffcl_module *m, const diffcl_tensor *x,
                                         diffcl_tensor **out);
static const dc_module_vtable VNET_VT = {"vnet", vnet_module_forward, free_vnet_impl};

/* diffcl_vnet_options grew after 0.1.0 (hfm_border). A program built against 0.1.0 calls the
 * DIFFCL_0.1 version, which fills only the 0.1.0 layout; programs built since bind to the
 * DIFFCL_0.2 default (docs/abi-policy.md; the pattern of diffcl_train_options_init). */
__attribute__((visibility("default"))) void dc_vnet_options_init_v0_1(diffcl_vnet_options *opts);
void dc_vnet_options_init_v0_1(diffcl_vnet_options *opts)
{
    if (!opts) return;
    diffcl_vnet_options d = DIFFCL_VNET_OPTIONS_INIT;
    d.struct_size = offsetof(diffcl_vnet_options, seed) + sizeof d.seed;
    memcpy(opts, &d, d.struct_size);
}
__asm__(".symver dc_vnet_options_init_v0_1, diffcl_vnet_options_init@DIFFCL_0.1");

__attribute__((visibility("default"))) void dc_vnet_options_init_v0_2(diffcl_vnet_options *opts);
void dc_vnet_options_init_v0_2(diffcl_vnet_options *opts)
{
    if (!opts) return;
    diffcl_vnet_options d = DIFFCL_VNET_OPTIONS_INIT;
    *opts = d;
}
__asm__(".symver dc_vnet_options_init_v0_2, diffcl_vnet_options_init@@DIFFCL_0.2");

static const char *const LEVEL_NAMES[5] = {"one", "two", "three", "four", "five"};

diffcl_status diffcl_vnet_create(diffcl_context *ctx, const diffcl_vnet_options *opts,
                                 diffcl_module **out)
{
    DC_CHECK_ARG(out, "diffcl_vnet_create: out is NULL");
    *out = NULL;
    DC_CHECK_ARG(ctx, "diffcl_vnet_create: ctx is NULL");
    diffcl_vnet_options o = DIFFCL_VNET_OPTIONS_INIT;
    DC_TRY(dc_options_read(&o, sizeof o, opts, offsetof(diffcl_vnet_options, hf_mamba_levels), 0,
                           "diffcl_vnet_create"));
    DC_CHECK_ARG(o.dims == 2 || o.dims == 3, "diffcl_vnet_create: dims %d is not 2 or 3", o.dims);
    DC_CHECK_ARG(o.in_channels >= 1 && o.n_classes >= 1 && o.n_filters >= 1,
                 "diffcl_vnet_create: channels, classes and filters must be >= 1");
    DC_CHECK_ARG(
        o.in_channels <= 4096 && o.n_classes <= 4096 &&
            o.n_filters <= 4096, /* 16 F must fit an int */
        "diffcl_vnet_create: in_channels %d, n_classes %d, n_filters %d: each must be <= 4096",
        o.in_channels, o.n_classes, o.n_filters);
    DC_CHECK_ARG(
        o.normalization == DIFFCL_NORM_NONE || o.normalization == DIFFCL_NORM_BATCH ||
            o.normalization == DIFFCL_NORM_INSTANCE || o.normalization == DIFFCL_NORM_GROUP,
        "diffcl_vnet_create: normalization %d not batch|instance|group|none", (int)o.normalization);
    DC_CHECK_ARG(o.dropout_p >= 0 && o.dropout_p < 1,
                 "diffcl_vnet_create: dropout_p %g not in [0,1)", o.dropout_p);
    DC_CHECK_ARG(o.hfm_border >= DIFFCL_HFM_BORDER_PERIODIC &&
                     o.hfm_border <= DIFFCL_HFM_BORDER_REFLECT,
                 "diffcl_vnet_create: hfm_border %d is not periodic (0), zero (1) or reflect (2)",
                 o.hfm_border);
    DC_CHECK_ARG(o.hf_mamba_levels < 32u,
                 "diffcl_vnet_create: hf_mamba_levels 0x%x names levels > 5", o.hf_mamba_levels);
    vnet_impl *impl = dc_calloc_raw(1, sizeof *impl);
    if (!impl) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "diffcl_vnet_create: out of memory");
    impl->opts = o;
    diffcl_module *m = dc_module_new(ctx, &VNET_VT, impl);
    if (!m) return DIFFCL_ERR_OUT_OF_MEMORY;
    builder b = {ctx, &o, 0};
    int F = o.n_filters;
    struct {
        const char *name;
        int kind, stages, cin, cout;
    } plan[] = {
        {"block_one", 0, 1, o.in_channels, F},
        {"block_one_dw", 1, 1, F, 2 * F},
        {"block_two", 0, 2, 2 * F, 2 * F},
        {"block_two_dw", 1, 1, 2 * F, 4 * F},
        {"block_three", 0, 3, 4 * F, 4 * F},
        {"block_three_dw", 1, 1, 4 * F, 8 * F},
        {"block_four", 0, 3, 8 * F, 8 * F},
        {"block_four_dw", 1, 1, 8 * F, 16 * F},
        {"block_five", 0, 3, 16 * F, 16 * F},
        {"block_five_up", 2, 1, 16 * F, 8 * F},
        {"block_six", 0, 3, 8 * F, 8 * F},
        {"block_six_up", 2, 1, 8 * F, 4 * F},
        {"block_seven", 0, 3, 4 * F, 4 * F},
        {"block_seven_up", 2, 1, 4 * F, 2 * F},
        {"block_eight", 0, 2, 2 * F, 2 * F},
        {"block_eight_up", 2, 1, 2 * F, F},
        {"block_nine", 0, 1, F, F},
    };
    diffcl_status s = DIFFCL_OK;
    for (size_t i = 0; s == DIFFCL_OK && i < sizeof plan / sizeof plan[0]; i++)
        s = add_block(&b, m, plan[i].name, plan[i].kind, plan[i].stages, plan[i].cin, plan[i].cout);
    if (s == DIFFCL_OK) {
        diffcl_conv_options co = DIFFCL_CONV_OPTIONS_INIT;
        co.in_channels = F;
        co.out_channels = o.n_classes;
        co.geometry = diffcl_conv_geometry_make(o.dims, 1, 1, 0);
        co.init_key = diffcl_rng_key_make(o.seed, STREAM_VNET_INIT, b.n_convs++, 0);
        diffcl_module *oc = NULL;
        s = diffcl_conv_create(ctx, &co, &oc);
        if (s == DIFFCL_OK) s = dc_module_add_child(m, "out_conv", oc);
    }
    if (s == DIFFCL_OK && o.has_dropout && o.dropout_p > 0) {
        diffcl_module *dp = NULL;
        s = diffcl_dropout_create(ctx, o.dropout_p, 1, o.seed, STREAM_VNET_DROPOUT, &dp);
        if (s == DIFFCL_OK) s = dc_module_add_child(m, "dropout", dp);
    }
    /* HF-Mamba modules on the chosen encoder levels, named hfm_<level> */
    for (int lv = 1; s == DIFFCL_OK && lv <= 5; lv++) {
        if (!(o.hf_mamba_levels & DIFFCL_LEVEL(lv))) continue;
        int ch = F << (lv - 1);
        diffcl_module *h = NULL;
        s = dc_hfm_create_for_vnet(ctx, o.dims, ch, o.seed, (uint32_t)lv, o.hfm_border, &h);
        if (s == DIFFCL_OK) {
            char name[32];
            snprintf(name, sizeof name, "hfm_%s", LEVEL_NAMES[lv - 1]);
            s = dc_module_add_child(m, name, h);
        }
    }
    if (s != DIFFCL_OK) {
        diffcl_module_free(m);
        return s;
    }
    *out = m;
    return DIFFCL_OK;
}

/* Run child `name` on x, replacing x (releases the old x). */
static diffcl_status step(diffcl_module *m, const char *name, diffcl_tensor **x)
{
    diffcl_tensor *y = NULL;
    diffcl_status s = dc_module_run(dc_module_get_child(m, name), *x, &y);
    diffcl_tensor_free(*x);
    *x = y;
    return s;
}

/* x = x + skip (releases the old x). */
static diffcl_status add_skip(diffcl_tensor **x, const diffcl_tensor *skip)
{
    diffcl_tensor *y = NULL;
    diffcl_status s = diffcl_add(*x, skip, &y);
    diffcl_tensor_free(*x);
    *x = y;
    return s;
}

diffcl_status diffcl_vnet_forward(diffcl_module *m, const diffcl_tensor *x, diffcl_tensor **logits,
                                  diffcl_tensor **features)
{
    DC_CHECK_ARG(logits, "diffcl_vnet_forward: logits is NULL");
    *logits = NULL;
    if (features) *features = NULL;
    DC_CHECK_ARG(m && m->vt == &VNET_VT, "diffcl_vnet_forward: module is not a V-Net");
    DC_CHECK_TENSOR(x, "diffcl_vnet_forward");
    const diffcl_vnet_options *o = &((vnet_impl *)m->impl)->opts;
    int nd = o->dims + 2;
    if (diffcl_tensor_ndim(x) != nd || diffcl_tensor_dim(x, 1) != o->in_channels)
        return dc_error(DIFFCL_ERR_SHAPE, "diffcl_vnet_forward: input %s, expected [N,%d,%s]",
                        dc_shape_str(x), o->in_channels, o->dims == 3 ? "D,H,W" : "H,W");
    for (int a = 2; a < nd; a++)
        if (diffcl_tensor_dim(x, a) % 16 || diffcl_tensor_dim(x, a) == 0)
            return dc_error(DIFFCL_ERR_SHAPE,
                            "diffcl_vnet_forward: input %s: spatial sizes must be "
                            "positive multiples of 16",
                            dc_shape_str(x));
    static const char *const enc[5] = {"block_one", "block_two", "block_three", "block_four",
                                       "block_five"};
    static const char *const down[4] = {"block_one_dw", "block_two_dw", "block_three_dw",
                                        "block_four_dw"};
    static const char *const dec[4] = {"block_six", "block_seven", "block_eight", "block_nine"};
    static const char *const up[4] = {"block_five_up", "block_six_up", "block_seven_up",
                                      "block_eight_up"};
    diffcl_tensor *skip[5] = {0}, *h = diffcl_tensor_retain((diffcl_tensor *)x);
    diffcl_status s = DIFFCL_OK;
    for (int lv = 0; s == DIFFCL_OK && lv < 5; lv++) {
        s = step(m, enc[lv], &h);
        if (s == DIFFCL_OK && (o->hf_mamba_levels & DIFFCL_LEVEL(lv + 1))) {
            char name[32];
            snprintf(name, sizeof name, "hfm_%s", LEVEL_NAMES[lv]);
            s = step(m, name, &h);
        }
        if (s != DIFFCL_OK) break;
        if (lv < 4) {
            skip[lv] = diffcl_tensor_retain(h);
            s = step(m, down[lv], &h);
        }
    }
    if (s == DIFFCL_OK) s = step(m, "dropout", &h); /* absent child = identity */
    for (int k = 0; s == DIFFCL_OK && k < 4; k++) {
        s = step(m, up[k], &h);
        if (s == DIFFCL_OK) s = add_skip(&h, skip[3 - k]);
        if (s == DIFFCL_OK) s = step(m, dec[k], &h);
    }
    for (int k = 0; k < 5; k++) diffcl_tensor_free(skip[k]);
    if (s == DIFFCL_OK && features) *features = diffcl_tensor_retain(h);
    if (s == DIFFCL_OK) s = step(m, "dropout", &h);
    if (s == DIFFCL_OK) s = step(m, "out_conv", &h);
    if (s != DIFFCL_OK) {
        diffcl_tensor_free(h);
        if (features) {
            diffcl_tensor_free(*features);
            *features = NULL;
        }
        dc_error_prefix("diffcl_vnet_forward");
        return s;
    }
    *logits = h;
    return DIFFCL_OK;
}

static diffcl_status vnet_module_forward(diffcl_module *m, const diffcl_tensor *x,
                                         diffcl_tensor **out)
{
    return diffcl_vnet_forward(m, x, out, NULL);
}

diffcl_status diffcl_vnet_get_options(const diffcl_module *m, diffcl_vnet_options *opts)
{
    DC_CHECK_ARG(m && m->vt == &VNET_VT, "diffcl_vnet_get_options: module is not a V-Net");
    DC_CHECK_ARG(opts, "diffcl_vnet_get_options: opts is NULL");
    return dc_options_write(opts, &((vnet_impl *)m->impl)->opts, sizeof *opts,
                            offsetof(diffcl_vnet_options, hf_mamba_levels), 0,
                            "diffcl_vnet_get_options");
}

int dc_is_vnet(const diffcl_module *m)
{
    return m && m->vt == &VNET_VT;
}
