/* Batch normalisation over N and the spatial axes of x [N, C, ...], F32 and F64.
 *
 * Training: batch statistics (biased variance for the normalisation), optional in-place
 * update of the running statistics as PyTorch does (momentum, unbiased variance), and a
 * backward through the batch statistics. Evaluation: the running statistics, and a
 * backward that treats the normalisation as a fixed per-channel affine map. */
#include <math.h>
#include <stdlib.h>

#include "layer/nn_internal.h"

/* node: inputs {x, weight, bias}; saved[0] = contiguous x; state = double[2C] (mean,
 * invstd); i[0] = training, i[1] = N, i[2] = C, i[3] = spatial size. */
static diffcl_status bn_backward(dc_node *nd, diffcl_tensor *g, diffcl_tensor **gin)
{
    const diffcl_tensor *x = nd->saved[0], *w = nd->inputs[1];
    const double *mean = nd->state, *invstd = mean + nd->i[2];
    int training = (int)nd->i[0], nt = dc_threads(x->ctx);
    int64_t N = nd->i[1], C = nd->i[2], S = nd->i[3], rows = N * C;
    double M = (double)(N * S);
    diffcl_tensor *gc = dc_contiguous(g);
    double *buf = gc ? dc_malloc((size_t)(6 * rows + 2 * C) * sizeof *buf) : NULL;
    if (!buf) {
        diffcl_tensor_free(gc);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "batch_norm backward: out of memory");
    }
    double *sg = buf, *sgx = sg + rows, *shift = sgx + rows, *A = shift + rows, *B = A + rows,
           *Cc = B + rows, *SG = Cc + rows, *SGX = SG + C;
    for (int64_t r = 0; r < rows; r++) shift[r] = mean[r % C];
    dc_norm_row_bwd_sums(x, gc, rows, S, shift, sg, sgx, nt);
    for (int64_t c = 0; c < C; c++) SG[c] = SGX[c] = 0;
    for (int64_t r = 0; r < rows; r++) {
        SG[r % C] += sg[r];
        SGX[r % C] += sgx[r];
    }
    diffcl_status s = DIFFCL_OK;
    if (dc_wants_grad(nd, 0)) {
        for (int64_t r = 0; r < rows; r++) {
            int64_t c = r % C;
            double wc = dc_nn_vec_get(w, c, 1.0), is = invstd[c];
            A[r] = wc * is;
            B[r] = training ? -wc * is * is * is * SGX[c] / M : 0.0;
            Cc[r] = training ? -wc * is * SG[c] / M : 0.0;
        }
        gin[0] = dc_tensor_empty(x->ctx, x->dtype, x->ndim, x->shape);
        if (!gin[0])
            s = DIFFCL_ERR_OUT_OF_MEMORY;
        else
            dc_norm_row_bwd_apply(x, gc, gin[0], rows, S, shift, A, B, Cc, nt);
    }
    if (s == DIFFCL_OK && dc_wants_grad(nd, 1)) {
        for (int64_t c = 0; c < C; c++) SGX[c] *= invstd[c];
        gin[1] = dc_nn_vec_new(x->ctx, nd->inputs[1]->dtype, C, SGX);
        if (!gin[1]) s = DIFFCL_ERR_OUT_OF_MEMORY;
    }
    if (s == DIFFCL_OK && dc_wants_grad(nd, 2)) {
        gin[2] = dc_nn_vec_new(x->ctx, nd->inputs[2]->dtype, C, SG);
        if (!gin[2]) s = DIFFCL_ERR_OUT_OF_MEMORY;
    }
    free(buf);
    diffcl_tensor_free(gc);
    return s;
}
/* x comes from saved[0]; the weight's data is read through inputs[1] */
static const dc_op OP_BATCH_NORM = {"batch_norm", bn_backward, free, 0x5};

static diffcl_status check_running(const diffcl_tensor *r, int64_t C, const char *what)
{
    if (!r) return DIFFCL_OK;
    if (!dc_is_float(r->dtype))
        return dc_error(DIFFCL_ERR_DTYPE, "diffcl_batch_norm: %s is %s; need f32 or f64", what,
                        diffcl_dtype_name(r->dtype));
    if (r->ndim != 1 || r->shape[0] != C)
        return dc_error(DIFFCL_ERR_SHAPE, "diffcl_batch_norm: %s has shape %s; expected [%lld]",
                        what, dc_shape_str(r), (long long)C);
    return DIFFCL_OK;
}

diffcl_status diffcl_batch_norm(const diffcl_tensor *x, diffcl_tensor *running_mean,
                                diffcl_tensor *running_var, const diffcl_tensor *weight,
                                const diffcl_tensor *bias, int training, double momentum,
                                double eps, diffcl_tensor **out)
{
    static const char *fn = "diffcl_batch_norm";
    DC_CHECK_ARG(out, "%s: out is NULL", fn);
    *out = NULL;
    DC_TRY(dc_nn_check_float(x, fn, "input"));
    if (x->ndim < 2)
        return dc_error(DIFFCL_ERR_SHAPE, "%s: input has shape %s; need [N,C,...] (2 to 5 axes)",
                        fn, dc_shape_str(x));
    int64_t N = x->shape[0], C = x->shape[1], S = dc_nn_inner(x, 2), rows = N * C;
    DC_TRY(dc_nn_check_vec(weight, x, C, fn, "weight"));
    DC_TRY(dc_nn_check_vec(bias, x, C, fn, "bias"));
    DC_TRY(check_running(running_mean, C, "running_mean"));
    DC_TRY(check_running(running_var, C, "running_var"));
    DC_CHECK_ARG(eps >= 0 && isfinite(eps), "%s: eps %g must be finite and >= 0", fn, eps);
    DC_CHECK_ARG(!training || (momentum >= 0 && momentum <= 1), "%s: momentum %g not in [0,1]", fn,
                 momentum);
    if (!training && (!running_mean || !running_var))
        return dc_error(DIFFCL_ERR_INVALID_ARGUMENT,
                        "%s: evaluation mode needs running_mean and running_var", fn);
    if (training && N * S <= 1)
        return dc_error(DIFFCL_ERR_SHAPE,
                        "%s: expected more than 1 value per channel when training, got input %s",
                        fn, dc_shape_str(x));

    diffcl_tensor *xc = dc_contiguous(x);
    diffcl_tensor *y = xc ? dc_tensor_empty(x->ctx, x->dtype, x->ndim, x->shape) : NULL;
    double *stats = dc_malloc((size_t)(2 * C + 1) * sizeof *stats);
    double *buf = dc_malloc((size_t)(4 * rows + 1) * sizeof *buf);
    if (!y || !stats || !buf) {
        diffcl_tensor_free(xc);
        diffcl_tensor_free(y);
        free(stats);
        free(buf);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory for input %s", fn,
                        dc_shape_str(x));
    }
    double *mean = stats, *invstd = stats + C;
    double *part = buf, *shift = part + rows, *a = shift + rows, *b = a + rows;
    int nt = dc_threads(x->ctx);
    if (training) {
        double M = (double)(N * S);
        dc_norm_row_sums(xc, rows, S, NULL, 0, part, nt);
        for (int64_t c = 0; c < C; c++) mean[c] = 0;
        for (int64_t r = 0; r < rows; r++) mean[r % C] += part[r];
        for (int64_t c = 0; c < C; c++) mean[c] /= M;
        for (int64_t r = 0; r < rows; r++) shift[r] = mean[r % C];
        dc_norm_row_sums(xc, rows, S, shift, 1, part, nt);
        double *var = a; /* scratch: C <= rows */
        for (int64_t c = 0; c < C; c++) var[c] = 0;
        for (int64_t r = 0; r < rows; r++) var[r % C] += part[r];
        for (int64_t c = 0; c < C; c++) {
            var[c] /= M;
            invstd[c] = 1.0 / sqrt(var[c] + eps);
        }
        /* running statistics, in place: r = (1 - m) r + m stat, unbiased variance */
        if (running_mean)
            for (int64_t c = 0; c < C; c++)
                b[c] = (1 - momentum) * dc_nn_vec_get(running_mean, c, 0) + momentum * mean[c];
        if (running_mean) dc_nn_vec_store(running_mean, C, b);
        if (running_var)
            for (int64_t c = 0; c < C; c++)
                b[c] = (1 - momentum) * dc_nn_vec_get(running_var, c, 0) +
                       momentum * var[c] * M / (M - 1);
        if (running_var) dc_nn_vec_store(running_var, C, b);
    } else {
        for (int64_t c = 0; c < C; c++) {
            mean[c] = dc_nn_vec_get(running_mean, c, 0);
            invstd[c] = 1.0 / sqrt(dc_nn_vec_get(running_var, c, 1) + eps);
        }
        for (int64_t r = 0; r < rows; r++) shift[r] = mean[r % C];
    }
    for (int64_t r = 0; r < rows; r++) {
        int64_t c = r % C;
        a[r] = invstd[c] * dc_nn_vec_get(weight, c, 1.0);
        b[r] = dc_nn_vec_get(bias, c, 0.0);
    }
    dc_norm_row_affine(xc, y, rows, S, shift, a, b, nt);
    free(buf);

    diffcl_tensor *in[3] = {(diffcl_tensor *)x, (diffcl_tensor *)weight, (diffcl_tensor *)bias};
    dc_node *nd = dc_record(y, &OP_BATCH_NORM, in, 3);
    if (nd) {
        nd->i[0] = training != 0;
        nd->i[1] = N;
        nd->i[2] = C;
        nd->i[3] = S;
        nd->state = stats;
        dc_node_save(nd, xc);
    } else {
        free(stats);
    }
    diffcl_tensor_free(xc);
    *out = y;
    return DIFFCL_OK;
}
