/* Softmax cross-entropy over the class axis with class weights, ignore_index and voxel
 * weights (PyTorch's weighted mean), fused: the forward keeps only the per-voxel log-sum-exp,
 * the backward writes softmax - one_hot scaled by each voxel's weight. F32 and F64. */
#include <stdlib.h>

#include "loss/loss_internal.h"

void diffcl_ce_options_init(diffcl_ce_options *opts)
{
    if (!opts) return;
    diffcl_ce_options d = DIFFCL_CE_OPTIONS_INIT;
    *opts = d;
}

typedef struct ce_state {
    int64_t N, C, S;
    double inv_den;     /* 1 / sum of weights, 0 when nothing counted */
    double *cw;         /* class weights or NULL */
    diffcl_tensor *x;   /* contiguous logits (detached alias) */
    diffcl_tensor *y;   /* I32 labels, -1 = skipped */
    diffcl_tensor *m;   /* voxel weights (logits dtype) or NULL */
    diffcl_tensor *lse; /* per-voxel log-sum-exp [N*S] */
} ce_state;

static void ce_state_free(void *p)
{
    ce_state *st = p;
    if (!st) return;
    free(st->cw);
    diffcl_tensor_free(st->x);
    diffcl_tensor_free(st->y);
    diffcl_tensor_free(st->m);
    diffcl_tensor_free(st->lse);
    free(st);
}

#define T float
#define SFX f32
#define EXP expf
#include "loss/cross_entropy_kernels.inc"
#define T double
#define SFX f64
#define EXP exp
#include "loss/cross_entropy_kernels.inc"

static diffcl_status ce_backward(dc_node *n, diffcl_tensor *g, diffcl_tensor **gin)
{
    const ce_state *st = n->state;
    if (!dc_wants_grad(n, 0)) return DIFFCL_OK;
    const diffcl_tensor *in = n->inputs[0];
    diffcl_tensor *dx = dc_tensor_empty(in->ctx, in->dtype, in->ndim, in->shape);
    if (!dx) return DIFFCL_ERR_OUT_OF_MEMORY;
    double gs = dc_loss_gval(g) * st->inv_den;
    int nt = dc_threads(in->ctx);
    if (in->dtype == DIFFCL_F32)
        ce_bwd_f32(st, gs, dc_f32(dx), nt);
    else
        ce_bwd_f64(st, gs, dc_f64(dx), nt);
    gin[0] = dx;
    return DIFFCL_OK;
}
static const dc_op OP_CE = {"cross_entropy", ce_backward, ce_state_free, 0};

diffcl_status diffcl_cross_entropy_loss(const diffcl_tensor *logits, const diffcl_tensor *target,
                                        const diffcl_ce_options *opts, diffcl_tensor **out)
{
    static const char *fn = "diffcl_cross_entropy_loss";
    DC_CHECK_ARG(out, "%s: out is NULL", fn);
    *out = NULL;
    DC_CHECK_TENSOR(target, fn);
    diffcl_ce_options o;
    DC_LOSS_OPTS(o, opts, DIFFCL_CE_OPTIONS_INIT);
    ce_state *st = dc_calloc_raw(1, sizeof *st);
    if (!st) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    diffcl_status s = dc_loss_split(fn, logits, "logits", target, "target", &st->N, &st->C, &st->S);
    if (s == DIFFCL_OK) s = dc_loss_class_weights(fn, o.class_weight, st->C, &st->cw);
    if (s == DIFFCL_OK) s = dc_loss_weights(fn, o.voxel_weight, target, logits->dtype, &st->m);
    if (s == DIFFCL_OK)
        s = dc_loss_labels(fn, target, st->C, o.ignore_index, st->m, dc_threads(logits->ctx),
                           &st->y);
    diffcl_tensor *xc = s == DIFFCL_OK ? dc_contiguous(logits) : NULL;
    if (s == DIFFCL_OK && !xc) s = DIFFCL_ERR_OUT_OF_MEMORY;
    if (s != DIFFCL_OK) {
        ce_state_free(st);
        return s;
    }
    st->x = dc_tensor_alias(xc, xc->ndim, xc->shape, xc->strides, xc->offset);
    diffcl_tensor_free(xc);
    diffcl_context *ctx = logits->ctx;
    int record = ctx->grad_enabled && logits->requires_grad;
    int64_t nvox = st->N * st->S;
    int64_t nb = (st->S + DC_LOSS_BLOCK - 1) / DC_LOSS_BLOCK, total = st->N * nb;
    double *partial = dc_malloc((size_t)(total ? total : 1) * 2 * sizeof *partial);
    if (record) st->lse = dc_tensor_empty(ctx, logits->dtype, 1, &nvox);
    if (!st->x || !partial || (record && !st->lse)) {
        free(partial);
        ce_state_free(st);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    int nt = dc_threads(ctx);
    if (logits->dtype == DIFFCL_F32)
        ce_fwd_f32(st, st->lse ? dc_f32(st->lse) : NULL, partial, nt);
    else
        ce_fwd_f64(st, st->lse ? dc_f64(st->lse) : NULL, partial, nt);
    double num = 0, den = 0;
    for (int64_t b = 0; b < total; b++) {
        num += partial[2 * b];
        den += partial[2 * b + 1];
    }
    free(partial);
    double loss = den > 0 ? num / den : 0.0;
    if (!isfinite(loss)) {
        ce_state_free(st);
        return dc_error(DIFFCL_ERR_NUMERIC, "%s: the loss is %g: logits or weights hold NaN/Inf",
                        fn, loss);
    }
    st->inv_den = den > 0 ? 1.0 / den : 0.0;
    diffcl_tensor *r = dc_loss_scalar(ctx, logits->dtype, loss);
    if (!r) {
        ce_state_free(st);
        return DIFFCL_ERR_OUT_OF_MEMORY;
    }
    diffcl_tensor *in = (diffcl_tensor *)logits;
    dc_node *node = dc_record(r, &OP_CE, &in, 1);
    if (node)
        node->state = st;
    else
        ce_state_free(st);
    *out = r;
    return DIFFCL_OK;
}
