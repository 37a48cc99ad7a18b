/* The denoiser of the diffusion segmentation network: a V-Net-shaped network over
 * concat(image, x_t) conditioned on the timestep, and its training objective.
 *
 *   embedding_diffusion.temb   sinusoid(t) -> Linear -> SiLU -> Linear          -> temb [N, 512]
 *   embedding_diffusion.emb    1 stage (F)            -> x1 ------------------------------+
 *   encoder.block_one_dw       k2s2 conv (2F) + temb                                       |
 *   encoder.block_two          2 stages (2F)          -> x2 -------------------------+    |
 *   encoder.block_two_dw ... block_four_dw, block_five (3 stages, 16F) [+ dropout]   |    |
 *   decoder.block_five_up      k2s2 transposed conv (8F) + temb, + x4, block_six (3) ... |    |
 *   decoder.block_eight_up (F) + x1 -> block_nine (1 stage) [+ dropout] -> out_conv (1x1)
 *
 * A stage (ops.<i>) is conv k3 p1 -> ReLU -> norm -> Dropout(0.1) and then, for every stage
 * but the last of its block, + temb_fusion.temb_proj(SiLU(temb)) per channel. Down/up blocks
 * are ops.0 conv -> ops.1 ReLU -> ops.2 norm -> ops.3 TembFusion (ops.2 when no norm). Every
 * stage owns a temb_fusion, also the last ones that do not use it, so that the names and
 * shapes are exactly those of the PyTorch DenoiseModel this follows.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diffcl/layer_conv.h"
#include "diffcl/loss.h"
#include "model/diffusion_internal.h"
#include "model/model_internal.h"

typedef struct denoiser_impl {
    diffcl_diffusion_options opts;
    diffcl_diffusion_schedule *sched;
} denoiser_impl;

static void free_denoiser_impl(void *p)
{
    denoiser_impl *d = p;
    if (!d) return;
    diffcl_diffusion_schedule_free(d->sched);
    free(d);
}

static const dc_module_vtable DENOISER_VT = {"diffusion", NULL, free_denoiser_impl};
static const dc_module_vtable STAGE_VT = {"diffusion_stage", NULL, NULL};
static const dc_module_vtable BLOCK_VT = {"diffusion_block", NULL, NULL};
static const dc_module_vtable UPDOWN_VT = {"diffusion_updown", NULL, NULL};
static const dc_module_vtable PART_VT = {"diffusion_part", NULL, NULL};

void diffcl_diffusion_options_init(diffcl_diffusion_options *opts)
{
    if (!opts) return;
    diffcl_diffusion_options d = DIFFCL_DIFFUSION_OPTIONS_INIT;
    *opts = d;
}

const diffcl_diffusion_options *dc_diffusion_opts(const diffcl_module *m, const char *fn)
{
    if (!m || m->vt != &DENOISER_VT) {
        dc_error(DIFFCL_ERR_INVALID_ARGUMENT, "%s: module is %s, not a diffusion denoiser", fn,
                 m ? m->vt->type : "NULL");
        return NULL;
    }
    return &((const denoiser_impl *)m->impl)->opts;
}

const diffcl_diffusion_schedule *diffcl_diffusion_get_schedule(const diffcl_module *m)
{
    if (!m || m->vt != &DENOISER_VT) return NULL;
    return ((const denoiser_impl *)m->impl)->sched;
}

diffcl_status diffcl_diffusion_get_options(const diffcl_module *m, diffcl_diffusion_options *opts)
{
    const diffcl_diffusion_options *o = dc_diffusion_opts(m, "diffcl_diffusion_get_options");
    if (!o) return DIFFCL_ERR_INVALID_ARGUMENT;
    DC_CHECK_ARG(opts, "diffcl_diffusion_get_options: opts is NULL");
    return dc_options_write(opts, o, sizeof *o,
                            offsetof(diffcl_diffusion_options, dims) + sizeof(int), 0,
                            "diffcl_diffusion_get_options");
}

/* ------------------------------------------------------------- building ---- */

typedef struct builder {
    diffcl_context *ctx;
    const diffcl_diffusion_options *o;
    uint32_t n_init;    /* init-key index of each conv / linear */
    uint32_t n_dropout; /* dropout stream of each dropout module */
} builder;

static diffcl_status add_conv(builder *b, diffcl_module *parent, const char *name, int cin,
                              int cout, int kernel, int stride, int pad, int transposed)
{
    diffcl_conv_options co = DIFFCL_CONV_OPTIONS_INIT;
    co.in_channels = cin;
    co.out_channels = cout;
    co.transposed = transposed;
    co.geometry = diffcl_conv_geometry_make(b->o->dims, kernel, stride, pad);
    co.init_key = diffcl_rng_key_make(b->o->seed, DC_STREAM_DIFFUSION_INIT, b->n_init++, 0);
    diffcl_module *conv = NULL;
    DC_TRY(diffcl_conv_create(b->ctx, &co, &conv));
    return dc_module_add_child(parent, name, conv);
}

static diffcl_status add_norm(builder *b, diffcl_module *parent, const char *name, int channels)
{
    if (b->o->normalization == DIFFCL_NORM_NONE) return DIFFCL_OK;
    diffcl_norm_options no = DIFFCL_NORM_OPTIONS_INIT;
    no.kind = b->o->normalization;
    no.channels = channels;
    no.groups = 16;
    if (no.kind == DIFFCL_NORM_INSTANCE) { /* nn.InstanceNorm{2,3}d defaults */
        no.affine = 0;
        no.track_running_stats = 0;
    }
    diffcl_module *norm = NULL;
    DC_TRY(diffcl_norm_create(b->ctx, &no, &norm));
    return dc_module_add_child(parent, name, norm);
}

static diffcl_status add_dropout(builder *b, diffcl_module *parent, const char *name, double p)
{
    if (p <= 0) return DIFFCL_OK;
    diffcl_module *dp = NULL;
    DC_TRY(diffcl_dropout_create(b->ctx, p, 1, b->o->seed,
                                 DC_STREAM_DIFFUSION_DROPOUT + b->n_dropout++, &dp));
    return dc_module_add_child(parent, name, dp);
}

static diffcl_status add_fusion(builder *b, diffcl_module *parent, const char *name, int channels)
{
    diffcl_module *f = NULL;
    DC_TRY(
        dc_temb_fusion_create(b->ctx, b->o->time_hidden_dim, channels, b->o->seed, &b->n_init, &f));
    return dc_module_add_child(parent, name, f);
}

/* New module of type @p vt with an empty child `ops`; *ops receives the borrowed child. */
static diffcl_module *new_with_ops(builder *b, const dc_module_vtable *vt, diffcl_module **ops)
{
    diffcl_module *m = dc_module_new(b->ctx, vt, NULL);
    diffcl_module *o = m ? dc_module_new(b->ctx, &PART_VT, NULL) : NULL;
    if (!o || dc_module_add_child(m, "ops", o) != DIFFCL_OK) {
        diffcl_module_free(m);
        return NULL;
    }
    *ops = o;
    return m;
}

/* ConvBlockTemb: n_stages of ConvBlockTembOneStage under `ops`. */
static diffcl_status add_block(builder *b, diffcl_module *parent, const char *name, int n_stages,
                               int cin, int cout)
{
    diffcl_module *ops = NULL, *blk = new_with_ops(b, &BLOCK_VT, &ops);
    if (!blk) return DIFFCL_ERR_OUT_OF_MEMORY;
    diffcl_status s = DIFFCL_OK;
    for (int i = 0; s == DIFFCL_OK && i < n_stages; i++) {
        diffcl_module *st = dc_module_new(b->ctx, &STAGE_VT, NULL);
        if (!st) s = DIFFCL_ERR_OUT_OF_MEMORY;
        if (s == DIFFCL_OK) s = add_conv(b, st, "conv", i == 0 ? cin : cout, cout, 3, 1, 1, 0);
        if (s == DIFFCL_OK) s = add_dropout(b, st, "dropout", b->o->stage_dropout);
        if (s == DIFFCL_OK) s = add_norm(b, st, "norm", cout);
        if (s == DIFFCL_OK) s = add_fusion(b, st, "temb_fusion", cout);
        char idx[16];
        snprintf(idx, sizeof idx, "%d", i);
        if (s == DIFFCL_OK)
            s = dc_module_add_child(ops, idx, st);
        else
            diffcl_module_free(st);
    }
    if (s != DIFFCL_OK) {
        diffcl_module_free(blk);
        return s;
    }
    return dc_module_add_child(parent, name, blk);
}

/* DownsamplingConvBlockTemb / UpsamplingDeconvBlockTemb. */
static diffcl_status add_updown(builder *b, diffcl_module *parent, const char *name, int cin,
                                int cout, int transposed)
{
    diffcl_module *ops = NULL, *blk = new_with_ops(b, &UPDOWN_VT, &ops), *act = NULL;
    if (!blk) return DIFFCL_ERR_OUT_OF_MEMORY;
    int has_norm = b->o->normalization != DIFFCL_NORM_NONE;
    diffcl_status s = add_conv(b, ops, "0", cin, cout, 2, 2, 0, transposed);
    if (s == DIFFCL_OK) s = diffcl_activation_create(b->ctx, DIFFCL_ACT_RELU, &act);
    if (s == DIFFCL_OK) s = dc_module_add_child(ops, "1", act);
    if (s == DIFFCL_OK && has_norm) s = add_norm(b, ops, "2", cout);
    if (s == DIFFCL_OK) s = add_fusion(b, ops, has_norm ? "3" : "2", cout);
    if (s != DIFFCL_OK) {
        diffcl_module_free(blk);
        return s;
    }
    return dc_module_add_child(parent, name, blk);
}

static diffcl_status validate(const diffcl_diffusion_options *o)
{
    const char *fn = "diffcl_diffusion_create";
    DC_CHECK_ARG(o->dims == 2 || o->dims == 3, "%s: dims %d is not 2 or 3", fn, o->dims);
    DC_CHECK_ARG(o->in_channels >= 1, "%s: in_channels %d must be >= 1", fn, o->in_channels);
    DC_CHECK_ARG(o->n_classes >= 2, "%s: n_classes %d must be >= 2", fn, o->n_classes);
    DC_CHECK_ARG(o->n_filters >= 1 && o->n_filters <= 4096, "%s: n_filters %d not in [1, 4096]", fn,
                 o->n_filters);
    DC_CHECK_ARG(
        o->normalization == DIFFCL_NORM_NONE || o->normalization == DIFFCL_NORM_BATCH ||
            o->normalization == DIFFCL_NORM_GROUP || o->normalization == DIFFCL_NORM_INSTANCE,
        "%s: normalization %d is not none, batch, instance or group", fn, (int)o->normalization);
    DC_CHECK_ARG(o->stage_dropout >= 0 && o->stage_dropout < 1,
                 "%s: stage_dropout %g not in [0, 1)", fn, o->stage_dropout);
    DC_CHECK_ARG(o->dropout_p >= 0 && o->dropout_p < 1, "%s: dropout_p %g not in [0, 1)", fn,
                 o->dropout_p);
    DC_CHECK_ARG(o->target == DIFFCL_DIFFUSION_PREDICT_X0 ||
                     o->target == DIFFCL_DIFFUSION_PREDICT_EPSILON,
                 "%s: unknown target %d", fn, (int)o->target);
    DC_CHECK_ARG(o->time_embed_dim >= 4 && o->time_embed_dim % 2 == 0,
                 "%s: time_embed_dim %d must be even and >= 4", fn, o->time_embed_dim);
    DC_CHECK_ARG(o->time_hidden_dim >= 1, "%s: time_hidden_dim %d must be >= 1", fn,
                 o->time_hidden_dim);
    return DIFFCL_OK;
}

diffcl_status diffcl_diffusion_create(diffcl_context *ctx, const diffcl_diffusion_options *opts,
                                      diffcl_module **out)
{
    const char *fn = "diffcl_diffusion_create";
    DC_CHECK_ARG(out, "%s: out is NULL", fn);
    *out = NULL;
    DC_CHECK_ARG(ctx, "%s: ctx is NULL", fn);
    diffcl_diffusion_options o = DIFFCL_DIFFUSION_OPTIONS_INIT;
    DC_TRY(dc_options_read(&o, sizeof o, opts,
                           offsetof(diffcl_diffusion_options, seed) + sizeof(uint64_t), 0, fn));
    DC_TRY(validate(&o));
    denoiser_impl *impl = dc_calloc_raw(1, sizeof *impl);
    if (!impl) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    impl->opts = o;
    diffcl_status s = diffcl_diffusion_schedule_create(o.schedule, o.timesteps, &impl->sched);
    if (s != DIFFCL_OK) {
        free(impl);
        return s;
    }
    diffcl_module *m = dc_module_new(ctx, &DENOISER_VT, impl);
    if (!m) return DIFFCL_ERR_OUT_OF_MEMORY;
    builder b = {ctx, &o, 0, 0};
    int F = o.n_filters;
    diffcl_module *emb = dc_module_new(ctx, &PART_VT, NULL);
    diffcl_module *enc = dc_module_new(ctx, &PART_VT, NULL);
    diffcl_module *dec = dc_module_new(ctx, &PART_VT, NULL);
    diffcl_module *temb = NULL;
    s = emb && enc && dec ? DIFFCL_OK : DIFFCL_ERR_OUT_OF_MEMORY;
    if (s == DIFFCL_OK)
        s = dc_time_mlp_create(ctx, o.time_embed_dim, o.time_hidden_dim, o.seed, &b.n_init, &temb);
    if (s == DIFFCL_OK) s = dc_module_add_child(emb, "temb", temb);
    if (s == DIFFCL_OK) s = add_block(&b, emb, "emb", 1, o.in_channels + o.n_classes, F);
    /* encoder */
    if (s == DIFFCL_OK) s = add_updown(&b, enc, "block_one_dw", F, 2 * F, 0);
    if (s == DIFFCL_OK) s = add_block(&b, enc, "block_two", 2, 2 * F, 2 * F);
    if (s == DIFFCL_OK) s = add_updown(&b, enc, "block_two_dw", 2 * F, 4 * F, 0);
    if (s == DIFFCL_OK) s = add_block(&b, enc, "block_three", 3, 4 * F, 4 * F);
    if (s == DIFFCL_OK) s = add_updown(&b, enc, "block_three_dw", 4 * F, 8 * F, 0);
    if (s == DIFFCL_OK) s = add_block(&b, enc, "block_four", 3, 8 * F, 8 * F);
    if (s == DIFFCL_OK) s = add_updown(&b, enc, "block_four_dw", 8 * F, 16 * F, 0);
    if (s == DIFFCL_OK) s = add_block(&b, enc, "block_five", 3, 16 * F, 16 * F);
    if (s == DIFFCL_OK && o.has_dropout) s = add_dropout(&b, enc, "dropout", o.dropout_p);
    /* decoder */
    if (s == DIFFCL_OK) s = add_updown(&b, dec, "block_five_up", 16 * F, 8 * F, 1);
    if (s == DIFFCL_OK) s = add_block(&b, dec, "block_six", 3, 8 * F, 8 * F);
    if (s == DIFFCL_OK) s = add_updown(&b, dec, "block_six_up", 8 * F, 4 * F, 1);
    if (s == DIFFCL_OK) s = add_block(&b, dec, "block_seven", 3, 4 * F, 4 * F);
    if (s == DIFFCL_OK) s = add_updown(&b, dec, "block_seven_up", 4 * F, 2 * F, 1);
    if (s == DIFFCL_OK) s = add_block(&b, dec, "block_eight", 2, 2 * F, 2 * F);
    if (s == DIFFCL_OK) s = add_updown(&b, dec, "block_eight_up", 2 * F, F, 1);
    if (s == DIFFCL_OK) s = add_block(&b, dec, "block_nine", 1, F, F);
    if (s == DIFFCL_OK) s = add_conv(&b, dec, "out_conv", F, o.n_classes, 1, 1, 0, 0);
    if (s == DIFFCL_OK && o.has_dropout) s = add_dropout(&b, dec, "dropout", o.dropout_p);
    if (s == DIFFCL_OK) {
        s = dc_module_add_child(m, "embedding_diffusion", emb);
        emb = NULL;
    }
    if (s == DIFFCL_OK) {
        s = dc_module_add_child(m, "encoder", enc);
        enc = NULL;
    }
    if (s == DIFFCL_OK) {
        s = dc_module_add_child(m, "decoder", dec);
        dec = NULL;
    }
    diffcl_module_free(emb);
    diffcl_module_free(enc);
    diffcl_module_free(dec);
    if (s != DIFFCL_OK) {
        diffcl_module_free(m);
        dc_error_prefix("%s", fn);
        return s;
    }
    *out = m;
    return DIFFCL_OK;
}

/* -------------------------------------------------------------- forward ---- */

/* *x = f(*x), releasing the old value. */
static diffcl_status run_child(diffcl_module *child, diffcl_tensor **x)
{
    diffcl_tensor *y = NULL;
    diffcl_status s = dc_module_run(child, *x, &y);
    diffcl_tensor_free(*x);
    *x = y;
    return s;
}

static diffcl_status relu_inplace_ref(diffcl_tensor **x)
{
    diffcl_tensor *y = NULL;
    diffcl_status s = diffcl_relu(*x, &y);
    diffcl_tensor_free(*x);
    *x = y;
    return s;
}

static diffcl_status fuse(diffcl_module *fusion, diffcl_tensor **x, const diffcl_tensor *silu_temb)
{
    diffcl_tensor *y = NULL;
    diffcl_status s = dc_temb_fusion_forward(fusion, *x, silu_temb, &y);
    diffcl_tensor_free(*x);
    *x = y;
    return s;
}

/* ConvBlockTemb: x (borrowed) -> *out. */
static diffcl_status block_forward(diffcl_module *blk, const diffcl_tensor *x,
                                   const diffcl_tensor *silu_temb, diffcl_tensor **out)
{
    diffcl_module *ops = dc_module_get_child(blk, "ops");
    diffcl_tensor *h = diffcl_tensor_retain((diffcl_tensor *)x);
    diffcl_status s = DIFFCL_OK;
    int n = ops->n_children;
    for (int i = 0; s == DIFFCL_OK && i < n; i++) {
        diffcl_module *st = ops->children[i].m;
        s = run_child(dc_module_get_child(st, "conv"), &h);
        if (s == DIFFCL_OK) s = relu_inplace_ref(&h);
        if (s == DIFFCL_OK) s = run_child(dc_module_get_child(st, "norm"), &h);
        if (s == DIFFCL_OK) s = run_child(dc_module_get_child(st, "dropout"), &h);
        if (s == DIFFCL_OK && i < n - 1)
            s = fuse(dc_module_get_child(st, "temb_fusion"), &h, silu_temb);
    }
    if (s != DIFFCL_OK) {
        diffcl_tensor_free(h);
        return s;
    }
    *out = h;
    return DIFFCL_OK;
}

/* Down/up-sampling block: conv -> ReLU -> [norm] -> TembFusion. */
static diffcl_status updown_forward(diffcl_module *blk, const diffcl_tensor *x,
                                    const diffcl_tensor *silu_temb, diffcl_tensor **out)
{
    diffcl_module *ops = dc_module_get_child(blk, "ops");
    int n = ops->n_children;
    diffcl_tensor *h = diffcl_tensor_retain((diffcl_tensor *)x);
    diffcl_status s = run_child(ops->children[0].m, &h);
    if (s == DIFFCL_OK) s = relu_inplace_ref(&h);
    if (s == DIFFCL_OK && n == 4) s = run_child(ops->children[2].m, &h);
    if (s == DIFFCL_OK) s = fuse(ops->children[n - 1].m, &h, silu_temb);
    if (s != DIFFCL_OK) {
        diffcl_tensor_free(h);
        return s;
    }
    *out = h;
    return DIFFCL_OK;
}

static diffcl_status check_inputs(const diffcl_module *m, const diffcl_diffusion_options *o,
                                  const diffcl_tensor *x_t, const diffcl_tensor *image,
                                  const char *fn)
{
    DC_CHECK_TENSOR(x_t, fn);
    DC_CHECK_TENSOR(image, fn);
    int nd = o->dims + 2;
    /* f32 as trained; f64 after diffcl_module_to_dtype (the float64 parity check) */
    const diffcl_tensor *w = diffcl_module_find(m, "decoder.out_conv.weight");
    diffcl_dtype dt = w ? w->dtype : DIFFCL_F32;
    if (x_t->dtype != dt || image->dtype != dt)
        return dc_error(DIFFCL_ERR_DTYPE, "%s: x_t is %s and image %s; the denoiser computes in %s",
                        fn, diffcl_dtype_name(x_t->dtype), diffcl_dtype_name(image->dtype),
                        diffcl_dtype_name(dt));
    if (x_t->ndim != nd || x_t->shape[1] != o->n_classes)
        return dc_error(DIFFCL_ERR_SHAPE, "%s: x_t %s, expected [N,%d,%s]", fn, dc_shape_str(x_t),
                        o->n_classes, o->dims == 3 ? "D,H,W" : "H,W");
    if (image->ndim != nd || image->shape[1] != o->in_channels || image->shape[0] != x_t->shape[0])
        return dc_error(DIFFCL_ERR_SHAPE, "%s: image %s, expected [%lld,%d,%s]", fn,
                        dc_shape_str(image), (long long)x_t->shape[0], o->in_channels,
                        o->dims == 3 ? "D,H,W" : "H,W");
    for (int a = 2; a < nd; a++) {
        if (image->shape[a] != x_t->shape[a])
            return dc_error(DIFFCL_ERR_SHAPE, "%s: image %s and x_t %s differ in spatial size", fn,
                            dc_shape_str(image), dc_shape_str(x_t));
        if (x_t->shape[a] == 0 || x_t->shape[a] % 16)
            return dc_error(DIFFCL_ERR_SHAPE,
                            "%s: spatial size %s must be positive multiples of 16", fn,
                            dc_shape_str(x_t));
    }
    if (x_t->shape[0] < 1) return dc_error(DIFFCL_ERR_SHAPE, "%s: empty batch", fn);
    return DIFFCL_OK;
}

diffcl_status diffcl_diffusion_forward(diffcl_module *m, const diffcl_tensor *x_t,
                                       const diffcl_tensor *image, const int64_t *t,
                                       diffcl_tensor **out)
{
    const char *fn = "diffcl_diffusion_forward";
    DC_CHECK_ARG(out, "%s: out is NULL", fn);
    *out = NULL;
    const diffcl_diffusion_options *o = dc_diffusion_opts(m, fn);
    if (!o) return DIFFCL_ERR_INVALID_ARGUMENT;
    DC_CHECK_ARG(t, "%s: t is NULL", fn);
    DC_TRY(check_inputs(m, o, x_t, image, fn));
    int N = (int)x_t->shape[0];
    for (int n = 0; n < N; n++)
        if (t[n] < 0 || t[n] >= o->timesteps)
            return dc_error(DIFFCL_ERR_INVALID_ARGUMENT, "%s: t[%d] = %lld not in [0, %d)", fn, n,
                            (long long)t[n], o->timesteps);

    diffcl_module *emb = dc_module_get_child(m, "embedding_diffusion");
    diffcl_module *enc = dc_module_get_child(m, "encoder"),
                  *dec = dc_module_get_child(m, "decoder");
    diffcl_tensor *temb = NULL, *st = NULL, *h = NULL, *skip[4] = {0};
    diffcl_status s =
        dc_time_mlp_forward(dc_module_get_child(emb, "temb"), t, N, o->time_embed_dim, &temb);
    if (s == DIFFCL_OK) s = diffcl_silu(temb, &st);
    diffcl_tensor_free(temb);
    if (s == DIFFCL_OK) {
        diffcl_tensor *cat[2] = {(diffcl_tensor *)image, (diffcl_tensor *)x_t}, *x = NULL;
        s = diffcl_tensor_concat(cat, 2, 1, &x);
        if (s == DIFFCL_OK) s = block_forward(dc_module_get_child(emb, "emb"), x, st, &h);
        diffcl_tensor_free(x);
    }
    static const char *const down[4] = {"block_one_dw", "block_two_dw", "block_three_dw",
                                        "block_four_dw"};
    static const char *const encb[4] = {"block_two", "block_three", "block_four", "block_five"};
    static const char *const up[4] = {"block_five_up", "block_six_up", "block_seven_up",
                                      "block_eight_up"};
    static const char *const decb[4] = {"block_six", "block_seven", "block_eight", "block_nine"};
    for (int lv = 0; s == DIFFCL_OK && lv < 4; lv++) {
        diffcl_tensor *y = NULL;
        skip[lv] = diffcl_tensor_retain(h);
        s = updown_forward(dc_module_get_child(enc, down[lv]), h, st, &y);
        diffcl_tensor_free(h);
        h = y;
        if (s == DIFFCL_OK) {
            y = NULL;
            s = block_forward(dc_module_get_child(enc, encb[lv]), h, st, &y);
            diffcl_tensor_free(h);
            h = y;
        }
    }
    if (s == DIFFCL_OK) s = run_child(dc_module_get_child(enc, "dropout"), &h);
    for (int k = 0; s == DIFFCL_OK && k < 4; k++) {
        diffcl_tensor *y = NULL;
        s = updown_forward(dc_module_get_child(dec, up[k]), h, st, &y);
        diffcl_tensor_free(h);
        h = y;
        if (s == DIFFCL_OK) {
            y = NULL;
            s = diffcl_add(h, skip[3 - k], &y);
            diffcl_tensor_free(h);
            h = y;
        }
        if (s == DIFFCL_OK) {
            y = NULL;
            s = block_forward(dc_module_get_child(dec, decb[k]), h, st, &y);
            diffcl_tensor_free(h);
            h = y;
        }
    }
    for (int k = 0; k < 4; k++) diffcl_tensor_free(skip[k]);
    diffcl_tensor_free(st);
    if (s == DIFFCL_OK) s = run_child(dc_module_get_child(dec, "dropout"), &h);
    if (s == DIFFCL_OK) s = run_child(dc_module_get_child(dec, "out_conv"), &h);
    if (s != DIFFCL_OK) {
        diffcl_tensor_free(h);
        dc_error_prefix("%s", fn);
        return s;
    }
    *out = h;
    return DIFFCL_OK;
}

/* ---------------------------------------------------------------- labels ---- */

/* Class index of voxel i of an integer label tensor (contiguous). */
static int64_t label_at(const diffcl_tensor *l, int64_t i)
{
    switch (l->dtype) {
    case DIFFCL_U8: return ((const uint8_t *)dc_data(l))[i];
    case DIFFCL_I32: return ((const int32_t *)dc_data(l))[i];
    default: return ((const int64_t *)dc_data(l))[i];
    }
}

/* A contiguous [N, spatial...] label from [N, ...] or [N, 1, ...]; checks the dtype. */
static diffcl_status label_view(const diffcl_tensor *label, int spatial_dims, diffcl_tensor **out,
                                const char *fn)
{
    *out = NULL;
    DC_CHECK_TENSOR(label, fn);
    if (label->dtype != DIFFCL_U8 && label->dtype != DIFFCL_I32 && label->dtype != DIFFCL_I64)
        return dc_error(DIFFCL_ERR_DTYPE, "%s: label is %s; need u8, i32 or i64 class indices", fn,
                        diffcl_dtype_name(label->dtype));
    if (label->ndim == spatial_dims + 2 && label->shape[1] == 1) {
        int64_t sh[DIFFCL_MAX_DIMS];
        sh[0] = label->shape[0];
        for (int i = 2; i < label->ndim; i++) sh[i - 1] = label->shape[i];
        diffcl_tensor *c = dc_contiguous(label);
        if (!c) return DIFFCL_ERR_OUT_OF_MEMORY;
        diffcl_status s = diffcl_tensor_reshape(c, label->ndim - 1, sh, out);
        diffcl_tensor_free(c);
        return s;
    }
    if (label->ndim != spatial_dims + 1)
        return dc_error(DIFFCL_ERR_SHAPE, "%s: label %s is not [N,%s] or [N,1,%s]", fn,
                        dc_shape_str(label), spatial_dims == 3 ? "D,H,W" : "H,W",
                        spatial_dims == 3 ? "D,H,W" : "H,W");
    *out = dc_contiguous(label);
    return *out ? DIFFCL_OK : DIFFCL_ERR_OUT_OF_MEMORY;
}

diffcl_status diffcl_diffusion_encode_label(const diffcl_tensor *label, int n_classes,
                                            diffcl_tensor **x0)
{
    const char *fn = "diffcl_diffusion_encode_label";
    DC_CHECK_ARG(x0, "%s: x0 is NULL", fn);
    *x0 = NULL;
    DC_CHECK_ARG(n_classes >= 1, "%s: n_classes %d must be >= 1", fn, n_classes);
    DC_CHECK_TENSOR(label, fn);
    DC_CHECK_ARG(label->ndim >= 2, "%s: label %s needs a batch axis and spatial axes", fn,
                 dc_shape_str(label));
    /* [N,1,...] with at least one spatial axis after the 1 is the channel form */
    int spatial = label->ndim >= 3 && label->shape[1] == 1 ? label->ndim - 2 : label->ndim - 1;
    diffcl_tensor *l = NULL;
    DC_TRY(label_view(label, spatial, &l, fn));
    int64_t N = l->shape[0], S = dc_per_sample(l);
    int64_t sh[DIFFCL_MAX_DIMS];
    sh[0] = N;
    sh[1] = n_classes;
    for (int i = 1; i < l->ndim; i++) sh[i + 1] = l->shape[i];
    diffcl_tensor *r = dc_tensor_empty(label->ctx, DIFFCL_F32, l->ndim + 1, sh);
    if (!r) {
        diffcl_tensor_free(l);
        return DIFFCL_ERR_OUT_OF_MEMORY;
    }
    float *p = dc_f32(r);
    for (int64_t i = 0; i < dc_numel(r); i++) p[i] = -1.0f;
    for (int64_t n = 0; n < N; n++)
        for (int64_t v = 0; v < S; v++) {
            int64_t c = label_at(l, n * S + v);
            if (c < 0 || c >= n_classes) {
                diffcl_tensor_free(l);
                diffcl_tensor_free(r);
                return dc_error(DIFFCL_ERR_INVALID_ARGUMENT,
                                "%s: label value %lld at sample %lld voxel %lld "
                                "is not in [0, %d)",
                                fn, (long long)c, (long long)n, (long long)v, n_classes);
            }
            p[(n * n_classes + c) * S + v] = 1.0f;
        }
    diffcl_tensor_free(l);
    *x0 = r;
    return DIFFCL_OK;
}

/* ------------------------------------------------------------- objective ---- */

void diffcl_diffusion_loss_options_init(diffcl_diffusion_loss_options *opts)
{
    if (!opts) return;
    diffcl_diffusion_loss_options d = DIFFCL_DIFFUSION_LOSS_OPTIONS_INIT;
    *opts = d;
}

diffcl_status diffcl_diffusion_loss(diffcl_module *m, const diffcl_tensor *image,
                                    const diffcl_tensor *label, diffcl_rng_key key,
                                    diffcl_tensor **loss, diffcl_tensor **out)
{
    return diffcl_diffusion_loss_ex(m, image, label, key, NULL, loss, out);
}

diffcl_status diffcl_diffusion_loss_ex(diffcl_module *m, const diffcl_tensor *image,
                                       const diffcl_tensor *label, diffcl_rng_key key,
                                       const diffcl_diffusion_loss_options *opts,
                                       diffcl_tensor **loss, diffcl_tensor **out)
{
    return dc_diffusion_loss_rows(m, image, label, key, NULL, opts, loss, out);
}

diffcl_status dc_diffusion_loss_rows(diffcl_module *m, const diffcl_tensor *image,
                                     const diffcl_tensor *label, diffcl_rng_key key,
                                     const uint32_t *samples,
                                     const diffcl_diffusion_loss_options *opts,
                                     diffcl_tensor **loss, diffcl_tensor **out)
{
    const char *fn = "diffcl_diffusion_loss";
    DC_CHECK_ARG(loss, "%s: loss is NULL", fn);
    *loss = NULL;
    if (out) *out = NULL;
    const diffcl_diffusion_options *o = dc_diffusion_opts(m, fn);
    if (!o) return DIFFCL_ERR_INVALID_ARGUMENT;
    diffcl_diffusion_loss_options lo = DIFFCL_DIFFUSION_LOSS_OPTIONS_INIT;
    DC_TRY(dc_options_read(&lo, sizeof lo, opts,
                           offsetof(diffcl_diffusion_loss_options, timesteps) + sizeof(void *), 0,
                           fn));
    DC_CHECK_ARG(lo.dice_weight >= 0 && lo.ce_weight >= 0, "%s: loss weights %g, %g must be >= 0",
                 fn, lo.dice_weight, lo.ce_weight);
    DC_CHECK_TENSOR(image, fn);
    DC_CHECK_TENSOR(label, fn);
    diffcl_tensor *l = NULL;
    DC_TRY(label_view(label, o->dims, &l, fn));
    int64_t N = l->shape[0];
    if (image->ndim < 1 || image->shape[0] != N) {
        diffcl_tensor_free(l);
        return dc_error(DIFFCL_ERR_SHAPE, "%s: image %s and label %s differ in batch size", fn,
                        dc_shape_str(image), dc_shape_str(label));
    }
    const diffcl_diffusion_schedule *sched = diffcl_diffusion_get_schedule(m);
    int64_t *t = dc_malloc((size_t)(N ? N : 1) * sizeof *t);
    diffcl_tensor *x0 = NULL, *xt = NULL, *eps = NULL, *pred = NULL;
    diffcl_status s = t ? DIFFCL_OK : dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    if (s == DIFFCL_OK) {
        if (lo.timesteps)
            memcpy(t, lo.timesteps, (size_t)N * sizeof *t);
        else
            dc_diffusion_draw_timesteps(m->ctx, key, sched->T, (int)N, samples, t);
        s = diffcl_diffusion_encode_label(l, o->n_classes, &x0);
    }
    if (s == DIFFCL_OK) s = dc_diffusion_q_sample_rows(sched, x0, t, key, samples, &xt, &eps);
    if (s == DIFFCL_OK) s = diffcl_diffusion_forward(m, xt, image, t, &pred);
    if (s == DIFFCL_OK) {
        if (o->target == DIFFCL_DIFFUSION_PREDICT_X0) {
            diffcl_dice_ce_options dco = DIFFCL_DICE_CE_OPTIONS_INIT;
            dco.dice_weight = lo.dice_weight;
            dco.ce_weight = lo.ce_weight;
            dco.voxel_weight = lo.voxel_weight;
            s = diffcl_dice_ce_loss(pred, l, &dco, loss, NULL);
        } else {
            s = diffcl_mse_loss(pred, eps, lo.voxel_weight, loss);
        }
    }
    free(t);
    diffcl_tensor_free(l);
    diffcl_tensor_free(x0);
    diffcl_tensor_free(xt);
    diffcl_tensor_free(eps);
    if (s == DIFFCL_OK && out)
        *out = pred;
    else
        diffcl_tensor_free(pred);
    if (s != DIFFCL_OK) dc_error_prefix("%s", fn);
    return s;
}

/* ------------------------------------------------------------ save / load ---- */

diffcl_status diffcl_diffusion_save(const diffcl_module *m, const char *path)
{
    const char *fn = "diffcl_diffusion_save";
    if (!dc_diffusion_opts(m, fn)) return DIFFCL_ERR_INVALID_ARGUMENT;
    DC_CHECK_ARG(path, "%s: path is NULL", fn);
    char *cfg = NULL;
    DC_TRY(dc_model_encode(m, &cfg));
    const char *keys[2] = {"diffcl.model", "diffcl.version"};
    const char *vals[2] = {cfg, DIFFCL_VERSION_STRING};
    diffcl_status s = diffcl_module_save(m, path, keys, vals, 2);
    free(cfg);
    return s;
}

diffcl_status diffcl_diffusion_load(diffcl_context *ctx, const char *path, diffcl_module **out)
{
    const char *fn = "diffcl_diffusion_load";
    DC_CHECK_ARG(out, "%s: out is NULL", fn);
    *out = NULL;
    DC_CHECK_ARG(ctx && path, "%s: NULL argument", fn);
    diffcl_tensor_dict *d = NULL;
    DC_TRY(diffcl_safetensors_load(ctx, path, &d));
    diffcl_status s = dc_model_decode(ctx, d, diffcl_tensor_dict_get_meta(d, "diffcl.model"),
                                      "diffusion", NULL, NULL, path, out);
    diffcl_tensor_dict_free(d);
    return s;
}
