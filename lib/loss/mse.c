/* Mean squared error with an optional element or voxel mask, gradients to both operands
 * (the epsilon-prediction diffusion objective). F32 and F64. */
#include <stdlib.h>

#include "loss/loss_internal.h"

#define MSE_BLOCK 4096

typedef struct mse_state {
    int64_t n;    /* elements */
    int64_t C, S; /* voxel mask broadcast over axis 1 when C > 0 */
    double scale; /* 2 / den */
    diffcl_tensor *a, *b, *m;
} mse_state;

static void mse_state_free(void *p)
{
    mse_state *st = p;
    if (!st) return;
    diffcl_tensor_free(st->a);
    diffcl_tensor_free(st->b);
    diffcl_tensor_free(st->m);
    free(st);
}

/* mask index of element i */
static inline int64_t mse_mi(const mse_state *st, int64_t i)
{
    return st->C > 0 ? (i / (st->C * st->S)) * st->S + i % st->S : i;
}

#define T float
#define SFX f32
#include "loss/mse_kernels.inc"
#define T double
#define SFX f64
#include "loss/mse_kernels.inc"

static diffcl_status mse_backward(dc_node *n, diffcl_tensor *g, diffcl_tensor **gin)
{
    const mse_state *st = n->state;
    const diffcl_tensor *a = n->inputs[0], *b = n->inputs[1];
    diffcl_tensor *da =
        dc_wants_grad(n, 0) ? dc_tensor_empty(a->ctx, a->dtype, a->ndim, a->shape) : NULL;
    diffcl_tensor *db =
        dc_wants_grad(n, 1) ? dc_tensor_empty(b->ctx, b->dtype, b->ndim, b->shape) : NULL;
    if ((dc_wants_grad(n, 0) && !da) || (dc_wants_grad(n, 1) && !db)) {
        diffcl_tensor_free(da);
        diffcl_tensor_free(db);
        return DIFFCL_ERR_OUT_OF_MEMORY;
    }
    double gs = dc_loss_gval(g) * st->scale;
    int nt = dc_threads(a->ctx);
    if (a->dtype == DIFFCL_F32)
        mse_bwd_f32(st, gs, da ? dc_f32(da) : NULL, db ? dc_f32(db) : NULL, nt);
    else
        mse_bwd_f64(st, gs, da ? dc_f64(da) : NULL, db ? dc_f64(db) : NULL, nt);
    gin[0] = da;
    gin[1] = db;
    return DIFFCL_OK;
}
static const dc_op OP_MSE = {"mse", mse_backward, mse_state_free, 0};

diffcl_status diffcl_mse_loss(const diffcl_tensor *input, const diffcl_tensor *target,
                              const diffcl_tensor *mask, diffcl_tensor **out)
{
    static const char *fn = "diffcl_mse_loss";
    DC_CHECK_ARG(out, "%s: out is NULL", fn);
    *out = NULL;
    DC_CHECK_TENSOR(input, fn);
    DC_CHECK_TENSOR(target, fn);
    if (!dc_is_float(input->dtype) || input->dtype != target->dtype)
        return dc_error(DIFFCL_ERR_DTYPE, "%s: input is %s and target %s; need matching f32 or f64",
                        fn, diffcl_dtype_name(input->dtype), diffcl_dtype_name(target->dtype));
    if (!dc_same_shape(input, target)) {
        char is[96];
        snprintf(is, sizeof is, "%s", dc_shape_str(input));
        return dc_error(DIFFCL_ERR_SHAPE, "%s: input %s and target %s differ in shape", fn, is,
                        dc_shape_str(target));
    }
    if (input->ctx != target->ctx || (mask && mask->ctx != input->ctx))
        return dc_error(DIFFCL_ERR_INVALID_ARGUMENT, "%s: tensors belong to different contexts",
                        fn);
    mse_state *st = dc_calloc_raw(1, sizeof *st);
    if (!st) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    st->n = dc_numel(input);
    diffcl_status s = DIFFCL_OK;
    if (mask) {
        if (!dc_same_shape(mask, input)) {
            int64_t N = 0, C = 0, S = 0;
            s = input->ndim >= 2 ? dc_loss_split(fn, input, "input", mask, "mask", &N, &C, &S)
                                 : dc_error(DIFFCL_ERR_SHAPE,
                                            "%s: mask has shape %s; the input "
                                            "has rank %d, so it must match it",
                                            fn, dc_shape_str(mask), input->ndim);
            st->C = C;
            st->S = S;
        }
        if (s == DIFFCL_OK) s = dc_loss_weights(fn, mask, mask, input->dtype, &st->m);
    }
    diffcl_tensor *ac = s == DIFFCL_OK ? dc_contiguous(input) : NULL;
    diffcl_tensor *bc = ac ? dc_contiguous(target) : NULL;
    if (s == DIFFCL_OK && !bc) s = DIFFCL_ERR_OUT_OF_MEMORY;
    if (s == DIFFCL_OK) {
        st->a = dc_tensor_alias(ac, ac->ndim, ac->shape, ac->strides, ac->offset);
        st->b = dc_tensor_alias(bc, bc->ndim, bc->shape, bc->strides, bc->offset);
        if (!st->a || !st->b) s = DIFFCL_ERR_OUT_OF_MEMORY;
    }
    diffcl_tensor_free(ac);
    diffcl_tensor_free(bc);
    int64_t nb = (st->n + MSE_BLOCK - 1) / MSE_BLOCK;
    double *partial =
        s == DIFFCL_OK ? dc_malloc((size_t)(nb ? nb : 1) * 2 * sizeof *partial) : NULL;
    if (s == DIFFCL_OK && !partial) s = dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    if (s != DIFFCL_OK) {
        mse_state_free(st);
        return s;
    }
    int nt = dc_threads(input->ctx);
    if (input->dtype == DIFFCL_F32)
        mse_fwd_f32(st, partial, nt);
    else
        mse_fwd_f64(st, partial, nt);
    double acc = 0, den = 0;
    for (int64_t k = 0; k < nb; k++) {
        acc += partial[2 * k];
        den += partial[2 * k + 1];
    }
    free(partial);
    double loss = den > 0 ? acc / den : 0.0;
    if (!isfinite(loss)) {
        mse_state_free(st);
        return dc_error(DIFFCL_ERR_NUMERIC, "%s: the loss is %g: the operands hold NaN/Inf", fn,
                        loss);
    }
    st->scale = den > 0 ? 2.0 / den : 0.0;
    diffcl_tensor *r = dc_loss_scalar(input->ctx, input->dtype, loss);
    if (!r) {
        mse_state_free(st);
        return DIFFCL_ERR_OUT_OF_MEMORY;
    }
    diffcl_tensor *in[2] = {(diffcl_tensor *)input, (diffcl_tensor *)target};
    dc_node *node = dc_record(r, &OP_MSE, in, 2);
    if (node)
        node->state = st;
    else
        mse_state_free(st);
    *out = r;
    return DIFFCL_OK;
}
