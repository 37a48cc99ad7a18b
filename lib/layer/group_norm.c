/* Group normalisation of x [N, C, ...]: statistics per (sample, group of C/groups
 * channels) over those channels and the spatial axes, per-channel affine. Instance norm
 * is groups == C. F32 and F64, with backward. No running statistics. */
#include <math.h>
#include <stdlib.h>

#include "layer/nn_internal.h"

/* node: inputs {x, weight, bias}; saved[0] = contiguous x; state = double[2 N G] (mean,
 * invstd per (n, g)); i[0] = N, i[1] = C, i[2] = S, i[3] = G. */
static diffcl_status gn_backward(dc_node *nd, diffcl_tensor *g, diffcl_tensor **gin)
{
    const diffcl_tensor *x = nd->saved[0], *w = nd->inputs[1];
    int64_t N = nd->i[0], C = nd->i[1], S = nd->i[2], G = nd->i[3], Cg = C / G, rows = N * C;
    const double *mean = nd->state, *invstd = mean + N * G;
    double K = (double)(Cg * S);
    int nt = dc_threads(x->ctx);
    diffcl_tensor *gc = dc_contiguous(g);
    double *buf = gc ? dc_malloc((size_t)(6 * rows + 2 * C) * sizeof *buf) : NULL;
    if (!buf) {
        diffcl_tensor_free(gc);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "group_norm backward: out of memory");
    }
    double *sg = buf, *sgx = sg + rows, *shift = sgx + rows, *A = shift + rows, *B = A + rows,
           *Cc = B + rows, *GW = Cc + rows, *GB = GW + C;
    for (int64_t r = 0; r < rows; r++) shift[r] = mean[r / Cg]; /* r / Cg = n G + g */
    dc_norm_row_bwd_sums(x, gc, rows, S, shift, sg, sgx, nt);
    diffcl_status s = DIFFCL_OK;
    if (dc_wants_grad(nd, 0)) {
        for (int64_t ng = 0; ng < N * G; ng++) {
            double sgy = 0, sgyx = 0, is = invstd[ng];
            for (int64_t r = ng * Cg; r < (ng + 1) * Cg; r++) {
                double wc = dc_nn_vec_get(w, r % C, 1.0);
                sgy += wc * sg[r];
                sgyx += wc * sgx[r];
            }
            sgyx *= is; /* sum of gy * xhat */
            for (int64_t r = ng * Cg; r < (ng + 1) * Cg; r++) {
                A[r] = dc_nn_vec_get(w, r % C, 1.0) * is;
                B[r] = -is * is * sgyx / K;
                Cc[r] = -is * sgy / K;
            }
        }
        gin[0] = dc_tensor_empty(x->ctx, x->dtype, x->ndim, x->shape);
        if (!gin[0])
            s = DIFFCL_ERR_OUT_OF_MEMORY;
        else
            dc_norm_row_bwd_apply(x, gc, gin[0], rows, S, shift, A, B, Cc, nt);
    }
    for (int64_t c = 0; c < C; c++) GW[c] = GB[c] = 0;
    for (int64_t r = 0; r < rows; r++) {
        GW[r % C] += invstd[r / Cg] * sgx[r];
        GB[r % C] += sg[r];
    }
    if (s == DIFFCL_OK && dc_wants_grad(nd, 1)) {
        gin[1] = dc_nn_vec_new(x->ctx, nd->inputs[1]->dtype, C, GW);
        if (!gin[1]) s = DIFFCL_ERR_OUT_OF_MEMORY;
    }
    if (s == DIFFCL_OK && dc_wants_grad(nd, 2)) {
        gin[2] = dc_nn_vec_new(x->ctx, nd->inputs[2]->dtype, C, GB);
        if (!gin[2]) s = DIFFCL_ERR_OUT_OF_MEMORY;
    }
    free(buf);
    diffcl_tensor_free(gc);
    return s;
}
static const dc_op OP_GROUP_NORM = {"group_norm", gn_backward, free, 0};

diffcl_status diffcl_group_norm(const diffcl_tensor *x, int groups, const diffcl_tensor *weight,
                                const diffcl_tensor *bias, double eps, diffcl_tensor **out)
{
    static const char *fn = "diffcl_group_norm";
    DC_CHECK_ARG(out, "%s: out is NULL", fn);
    *out = NULL;
    DC_TRY(dc_nn_check_float(x, fn, "input"));
    if (x->ndim < 2)
        return dc_error(DIFFCL_ERR_SHAPE, "%s: input has shape %s; need [N,C,...] (2 to 5 axes)",
                        fn, dc_shape_str(x));
    int64_t N = x->shape[0], C = x->shape[1], S = dc_nn_inner(x, 2), G = groups;
    if (groups <= 0 || C % G != 0)
        return dc_error(DIFFCL_ERR_INVALID_ARGUMENT,
                        "%s: %d groups do not divide the %lld channels of input %s", fn, groups,
                        (long long)C, dc_shape_str(x));
    DC_TRY(dc_nn_check_vec(weight, x, C, fn, "weight"));
    DC_TRY(dc_nn_check_vec(bias, x, C, fn, "bias"));
    DC_CHECK_ARG(eps >= 0 && isfinite(eps), "%s: eps %g must be finite and >= 0", fn, eps);
    int64_t Cg = C / G, rows = N * C, NG = N * G;
    double K = (double)(Cg * S);

    diffcl_tensor *xc = dc_contiguous(x);
    diffcl_tensor *y = xc ? dc_tensor_empty(x->ctx, x->dtype, x->ndim, x->shape) : NULL;
    double *stats = dc_malloc((size_t)(2 * NG + 1) * sizeof *stats);
    double *buf = dc_malloc((size_t)(4 * rows + 1) * sizeof *buf);
    if (!y || !stats || !buf) {
        diffcl_tensor_free(xc);
        diffcl_tensor_free(y);
        free(stats);
        free(buf);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory for input %s", fn,
                        dc_shape_str(x));
    }
    double *mean = stats, *invstd = stats + NG;
    double *part = buf, *shift = part + rows, *a = shift + rows, *b = a + rows;
    int nt = dc_threads(x->ctx);
    dc_norm_row_sums(xc, rows, S, NULL, 0, part, nt);
    for (int64_t ng = 0; ng < NG; ng++) {
        double acc = 0;
        for (int64_t r = ng * Cg; r < (ng + 1) * Cg; r++) acc += part[r];
        mean[ng] = K > 0 ? acc / K : 0;
    }
    for (int64_t r = 0; r < rows; r++) shift[r] = mean[r / Cg];
    dc_norm_row_sums(xc, rows, S, shift, 1, part, nt);
    for (int64_t ng = 0; ng < NG; ng++) {
        double acc = 0;
        for (int64_t r = ng * Cg; r < (ng + 1) * Cg; r++) acc += part[r];
        invstd[ng] = 1.0 / sqrt((K > 0 ? acc / K : 0) + eps);
    }
    for (int64_t r = 0; r < rows; r++) {
        a[r] = invstd[r / Cg] * dc_nn_vec_get(weight, r % C, 1.0);
        b[r] = dc_nn_vec_get(bias, r % C, 0.0);
    }
    dc_norm_row_affine(xc, y, rows, S, shift, a, b, nt);
    free(buf);

    diffcl_tensor *in[3] = {(diffcl_tensor *)x, (diffcl_tensor *)weight, (diffcl_tensor *)bias};
    dc_node *nd = dc_record(y, &OP_GROUP_NORM, in, 3);
    if (nd) {
        nd->i[0] = N;
        nd->i[1] = C;
        nd->i[2] = S;
        nd->i[3] = G;
        nd->state = stats;
        dc_node_save(nd, xc);
    } else {
        free(stats);
    }
    diffcl_tensor_free(xc);
    *out = y;
    return DIFFCL_OK;
}
