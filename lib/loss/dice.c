/* Soft Dice loss on fused softmax probabilities (SSL4MIS DiceLoss / UA-MT dice_loss),
 * foreground-only or all classes, batch or per-sample, squared or plain denominators,
 * class and voxel weights. F32 and F64. */
#include <stdlib.h>

#include "loss/loss_internal.h"

void diffcl_dice_options_init(diffcl_dice_options *opts)
{
    if (!opts) return;
    diffcl_dice_options d = DIFFCL_DICE_OPTIONS_INIT;
    *opts = d;
}

typedef struct dice_state {
    int64_t N, C, S;
    int64_t c0; /* first class used (0 or 1) */
    int64_t G;  /* groups: N when per-sample, else 1 */
    int squared;
    double *coef;       /* [G][C][2]: dL/dI and dL/dZ per unit upstream gradient */
    diffcl_tensor *x;   /* contiguous logits (detached alias) */
    diffcl_tensor *y;   /* I32 labels, -1 = skipped */
    diffcl_tensor *m;   /* voxel weights (logits dtype) or NULL */
    diffcl_tensor *lse; /* per-voxel log-sum-exp [N*S] */
} dice_state;

static void dice_state_free(void *p)
{
    dice_state *st = p;
    if (!st) return;
    free(st->coef);
    diffcl_tensor_free(st->x);
    diffcl_tensor_free(st->y);
    diffcl_tensor_free(st->m);
    diffcl_tensor_free(st->lse);
    free(st);
}

#define T float
#define SFX f32
#define EXP expf
#include "loss/dice_kernels.inc"
#define T double
#define SFX f64
#define EXP exp
#include "loss/dice_kernels.inc"

static diffcl_status dice_backward(dc_node *n, diffcl_tensor *g, diffcl_tensor **gin)
{
    const dice_state *st = n->state;
    if (!dc_wants_grad(n, 0)) return DIFFCL_OK;
    const diffcl_tensor *in = n->inputs[0];
    diffcl_tensor *dx = dc_tensor_empty(in->ctx, in->dtype, in->ndim, in->shape);
    if (!dx) return DIFFCL_ERR_OUT_OF_MEMORY;
    int nt = dc_threads(in->ctx);
    if (in->dtype == DIFFCL_F32)
        dice_bwd_f32(st, dc_loss_gval(g), dc_f32(dx), nt);
    else
        dice_bwd_f64(st, dc_loss_gval(g), dc_f64(dx), nt);
    gin[0] = dx;
    return DIFFCL_OK;
}
static const dc_op OP_DICE = {"dice", dice_backward, dice_state_free, 0};

diffcl_status diffcl_dice_loss(const diffcl_tensor *logits, const diffcl_tensor *target,
                               const diffcl_dice_options *opts, diffcl_tensor **out)
{
    static const char *fn = "diffcl_dice_loss";
    DC_CHECK_ARG(out, "%s: out is NULL", fn);
    *out = NULL;
    DC_CHECK_TENSOR(target, fn);
    diffcl_dice_options o;
    DC_LOSS_OPTS(o, opts, DIFFCL_DICE_OPTIONS_INIT);
    if (!(o.smooth >= 0) || !isfinite(o.smooth))
        return dc_error(DIFFCL_ERR_INVALID_ARGUMENT, "%s: smooth is %g; need a finite value >= 0",
                        fn, o.smooth);
    dice_state *st = dc_calloc_raw(1, sizeof *st);
    if (!st) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    double *cw = NULL, *partial = NULL, *sums = NULL;
    diffcl_status s = dc_loss_split(fn, logits, "logits", target, "target", &st->N, &st->C, &st->S);
    if (s == DIFFCL_OK && !o.include_background && st->C < 2)
        s = dc_error(DIFFCL_ERR_SHAPE,
                     "%s: foreground-only Dice needs at least 2 classes; "
                     "logits have %lld",
                     fn, (long long)st->C);
    if (s == DIFFCL_OK) s = dc_loss_class_weights(fn, o.class_weight, st->C, &cw);
    if (s == DIFFCL_OK) s = dc_loss_weights(fn, o.voxel_weight, target, logits->dtype, &st->m);
    if (s == DIFFCL_OK)
        s = dc_loss_labels(fn, target, st->C, o.ignore_index, st->m, dc_threads(logits->ctx),
                           &st->y);
    diffcl_tensor *xc = s == DIFFCL_OK ? dc_contiguous(logits) : NULL;
    if (s == DIFFCL_OK && !xc) s = DIFFCL_ERR_OUT_OF_MEMORY;
    if (s != DIFFCL_OK) {
        free(cw);
        dice_state_free(st);
        return s;
    }
    st->x = dc_tensor_alias(xc, xc->ndim, xc->shape, xc->strides, xc->offset);
    diffcl_tensor_free(xc);
    diffcl_context *ctx = logits->ctx;
    const int64_t C = st->C;
    st->c0 = o.include_background ? 0 : 1;
    st->G = o.per_sample ? st->N : 1;
    st->squared = o.squared != 0;
    int record = ctx->grad_enabled && logits->requires_grad;
    int64_t nvox = st->N * st->S;
    int64_t nb = (st->S + DC_LOSS_BLOCK - 1) / DC_LOSS_BLOCK, total = st->N * nb;
    partial = dc_malloc((size_t)(total ? total : 1) * (size_t)C * 3 * sizeof *partial);
    sums = dc_calloc_raw((size_t)(st->G ? st->G : 1) * (size_t)C * 3, sizeof *sums);
    st->coef = dc_calloc_raw((size_t)(st->G ? st->G : 1) * (size_t)C * 2, sizeof *st->coef);
    if (record) st->lse = dc_tensor_empty(ctx, logits->dtype, 1, &nvox);
    if (!st->x || !partial || !sums || !st->coef || (record && !st->lse)) {
        free(cw);
        free(partial);
        free(sums);
        dice_state_free(st);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    int nt = dc_threads(ctx);
    if (logits->dtype == DIFFCL_F32)
        dice_fwd_f32(st, st->lse ? dc_f32(st->lse) : NULL, partial, nt);
    else
        dice_fwd_f64(st, st->lse ? dc_f64(st->lse) : NULL, partial, nt);
    /* reduce the block partials in a fixed order */
    for (int64_t b = 0; b < total; b++) {
        int64_t grp = st->G > 1 ? b / nb : 0;
        for (int64_t k = 0; k < C * 3; k++) sums[grp * C * 3 + k] += partial[b * C * 3 + k];
    }
    free(partial);
    const double K = (double)(C - st->c0), scale = 1.0 / ((double)st->G * K);
    double loss = 0;
    for (int64_t grp = 0; grp < st->G; grp++)
        for (int64_t c = st->c0; c < C; c++) {
            const double *sm = sums + (grp * C + c) * 3;
            double I = sm[0], D = sm[1] + sm[2] + o.smooth, wc = cw ? cw[c] : 1.0;
            double num = 2 * I + o.smooth;
            loss += wc * (1.0 - num / D) * scale;
            st->coef[(grp * C + c) * 2] = -wc * scale * 2.0 / D;          /* dL/dI */
            st->coef[(grp * C + c) * 2 + 1] = wc * scale * num / (D * D); /* dL/dZ */
        }
    free(sums);
    free(cw);
    if (!isfinite(loss)) {
        dice_state_free(st);
        return dc_error(DIFFCL_ERR_NUMERIC, "%s: the loss is %g: logits or weights hold NaN/Inf%s",
                        fn, loss, o.smooth == 0 ? " (or smooth = 0 with an empty class)" : "");
    }
    diffcl_tensor *r = dc_loss_scalar(ctx, logits->dtype, loss);
    if (!r) {
        dice_state_free(st);
        return DIFFCL_ERR_OUT_OF_MEMORY;
    }
    diffcl_tensor *in = (diffcl_tensor *)logits;
    dc_node *node = dc_record(r, &OP_DICE, &in, 1);
    if (node)
        node->state = st;
    else
        dice_state_free(st);
    *out = r;
    return DIFFCL_OK;
}
