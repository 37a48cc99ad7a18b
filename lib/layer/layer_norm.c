/* Layer normalisation over the last axis of x [..., C] with per-feature affine,
 * F32 and F64, with backward. Rows run in parallel; the weight/bias gradients are summed
 * in fixed blocks of rows, so they do not depend on the thread count. */
#include <math.h>
#include <stdlib.h>

#include "layer/nn_internal.h"

#define T float
#define SFX f
#include "layer/layer_norm_kernels.inc"
#define T double
#define SFX d
#include "layer/layer_norm_kernels.inc"

/* Weight and bias (or 1 and 0) as a contiguous 2C array of the input's type. */
static void *load_affine(const diffcl_tensor *x, const diffcl_tensor *w, const diffcl_tensor *b,
                         int64_t C)
{
    size_t es = diffcl_dtype_size(x->dtype);
    void *v = dc_malloc((size_t)(2 * C + 1) * es);
    if (!v) return NULL;
    for (int64_t j = 0; j < C; j++) {
        double wj = dc_nn_vec_get(w, j, 1.0), bj = dc_nn_vec_get(b, j, 0.0);
        if (x->dtype == DIFFCL_F32) {
            ((float *)v)[j] = (float)wj;
            ((float *)v)[C + j] = (float)bj;
        } else {
            ((double *)v)[j] = wj;
            ((double *)v)[C + j] = bj;
        }
    }
    return v;
}

/* node: inputs {x, weight, bias}; saved[0] = contiguous x; state = double[2R] (mean,
 * invstd per row); i[0] = R, i[1] = C. */
static diffcl_status ln_backward(dc_node *nd, diffcl_tensor *g, diffcl_tensor **gin)
{
    const diffcl_tensor *x = nd->saved[0];
    int64_t R = nd->i[0], C = nd->i[1];
    const double *stats = nd->state;
    int nt = dc_threads(x->ctx);
    diffcl_tensor *gc = dc_contiguous(g);
    if (!gc) return DIFFCL_ERR_OUT_OF_MEMORY;
    diffcl_status s = DIFFCL_OK;
    if (dc_wants_grad(nd, 0)) {
        void *wb = load_affine(x, nd->inputs[1], NULL, C);
        gin[0] = wb ? dc_tensor_empty(x->ctx, x->dtype, x->ndim, x->shape) : NULL;
        if (!gin[0])
            s = dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "layer_norm backward: out of memory");
        else if (x->dtype == DIFFCL_F32)
            ln_bwd_x_f(dc_f32(x), dc_f32(gc), dc_f32(gin[0]), R, C, stats, wb, nt);
        else
            ln_bwd_x_d(dc_f64(x), dc_f64(gc), dc_f64(gin[0]), R, C, stats, wb, nt);
        free(wb);
    }
    if (s == DIFFCL_OK && (dc_wants_grad(nd, 1) || dc_wants_grad(nd, 2))) {
        int64_t nblk = (R + DC_NN_ROW_BLOCK - 1) / DC_NN_ROW_BLOCK;
        double *part = dc_malloc((size_t)((nblk + 1) * 2 * C + 1) * sizeof *part);
        if (!part)
            s = dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "layer_norm backward: out of memory");
        else {
            if (x->dtype == DIFFCL_F32)
                ln_bwd_wb_f(dc_f32(x), dc_f32(gc), R, C, stats, part, nt);
            else
                ln_bwd_wb_d(dc_f64(x), dc_f64(gc), R, C, stats, part, nt);
            double *tot = part + nblk * 2 * C;
            for (int64_t j = 0; j < 2 * C; j++) tot[j] = 0;
            for (int64_t k = 0; k < nblk; k++)
                for (int64_t j = 0; j < 2 * C; j++) tot[j] += part[k * 2 * C + j];
            if (dc_wants_grad(nd, 1)) {
                gin[1] = dc_nn_vec_new(x->ctx, nd->inputs[1]->dtype, C, tot);
                if (!gin[1]) s = DIFFCL_ERR_OUT_OF_MEMORY;
            }
            if (s == DIFFCL_OK && dc_wants_grad(nd, 2)) {
                gin[2] = dc_nn_vec_new(x->ctx, nd->inputs[2]->dtype, C, tot + C);
                if (!gin[2]) s = DIFFCL_ERR_OUT_OF_MEMORY;
            }
            free(part);
        }
    }
    diffcl_tensor_free(gc);
    return s;
}
static const dc_op OP_LAYER_NORM = {"layer_norm", ln_backward, free, 0};

diffcl_status diffcl_layer_norm(const diffcl_tensor *x, const diffcl_tensor *weight,
                                const diffcl_tensor *bias, double eps, diffcl_tensor **out)
{
    static const char *fn = "diffcl_layer_norm";
    DC_CHECK_ARG(out, "%s: out is NULL", fn);
    *out = NULL;
    DC_TRY(dc_nn_check_float(x, fn, "input"));
    if (x->ndim < 1)
        return dc_error(DIFFCL_ERR_SHAPE, "%s: input is a 0-d scalar; need [..., C]", fn);
    int64_t C = x->shape[x->ndim - 1];
    int64_t R = C ? dc_numel(x) / C : 0;
    DC_TRY(dc_nn_check_vec(weight, x, C, fn, "weight"));
    DC_TRY(dc_nn_check_vec(bias, x, C, fn, "bias"));
    DC_CHECK_ARG(eps >= 0 && isfinite(eps), "%s: eps %g must be finite and >= 0", fn, eps);

    diffcl_tensor *xc = dc_contiguous(x);
    diffcl_tensor *y = xc ? dc_tensor_empty(x->ctx, x->dtype, x->ndim, x->shape) : NULL;
    double *stats = dc_malloc((size_t)(2 * R + 1) * sizeof *stats);
    void *wb = load_affine(x, weight, bias, C);
    if (!y || !stats || !wb) {
        diffcl_tensor_free(xc);
        diffcl_tensor_free(y);
        free(stats);
        free(wb);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory for input %s", fn,
                        dc_shape_str(x));
    }
    int nt = dc_threads(x->ctx);
    double *mean = stats, *invstd = stats + R;
    if (R > 0 && C > 0) {
        dc_norm_row_sums(xc, R, C, NULL, 0, mean, nt);
        for (int64_t r = 0; r < R; r++) mean[r] /= (double)C;
        dc_norm_row_sums(xc, R, C, mean, 1, invstd, nt);
        for (int64_t r = 0; r < R; r++) invstd[r] = 1.0 / sqrt(invstd[r] / (double)C + eps);
        if (x->dtype == DIFFCL_F32)
            ln_fwd_f(dc_f32(xc), dc_f32(y), R, C, stats, wb, (const float *)wb + C, nt);
        else
            ln_fwd_d(dc_f64(xc), dc_f64(y), R, C, stats, wb, (const double *)wb + C, nt);
    }
    free(wb);

    diffcl_tensor *in[3] = {(diffcl_tensor *)x, (diffcl_tensor *)weight, (diffcl_tensor *)bias};
    dc_node *nd = dc_record(y, &OP_LAYER_NORM, in, 3);
    if (nd) {
        nd->i[0] = R;
        nd->i[1] = C;
        nd->state = stats;
        dc_node_save(nd, xc);
    } else {
        free(stats);
    }
    diffcl_tensor_free(xc);
    *out = y;
    return DIFFCL_OK;
}
