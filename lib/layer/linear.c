/* Linear layer over the last axis: y = x W^T + b, x [..., in], W [out, in], b [out].
 * Forward and input/weight gradients are BLAS GEMMs (sgemm / dgemm); the bias gradient
 * is a column sum over fixed blocks of rows (independent of the thread count).
 *
 * The module initialises as PyTorch's nn.Linear.reset_parameters: weight and bias
 * uniform(-1/sqrt(in), 1/sqrt(in)); the weight from the init key, the bias from the same
 * key with its stream's top bit flipped (dc_bias_init_key). */
#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "layer/nn_internal.h"

static void gemm(diffcl_dtype dt, int ta, int tb, int64_t m, int64_t n, int64_t k, const void *a,
                 int64_t lda, const void *b, int64_t ldb, double beta, void *c, int64_t ldc)
{
    if (dt == DIFFCL_F32)
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    (int)m, (int)n, (int)k, 1.0f, a, (int)lda, b, (int)ldb, (float)beta, c,
                    (int)ldc);
    else
        cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    (int)m, (int)n, (int)k, 1.0, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

/* out[j] = sum_r g[r, j] over M rows of N columns, in double, blocked by rows. */
/* A _Pragma in a macro is not a statement to clang-format: keep the layout. */
/* clang-format off */
#define COLSUM(T, g, M, N, out, nt)                                                           \
    do {                                                                                      \
        const T *pg_ = (const T *)(g);                                                        \
        int64_t nblk_ = ((M) + DC_NN_ROW_BLOCK - 1) / DC_NN_ROW_BLOCK;                        \
        _Pragma("omp parallel for num_threads(nt) schedule(static) if((M) * (N) > DC_NN_PAR_MIN)") \
        for (int64_t k_ = 0; k_ < nblk_; k_++) {                                              \
            double *acc_ = part + k_ * (N);                                                   \
            for (int64_t j = 0; j < (N); j++) acc_[j] = 0;                                    \
            int64_t r1_ = (k_ + 1) * DC_NN_ROW_BLOCK < (M) ? (k_ + 1) * DC_NN_ROW_BLOCK : (M); \
            for (int64_t r = k_ * DC_NN_ROW_BLOCK; r < r1_; r++)                              \
                for (int64_t j = 0; j < (N); j++) acc_[j] += (double)pg_[r * (N) + j];        \
        }                                                                                     \
        for (int64_t j = 0; j < (N); j++) (out)[j] = 0;                                       \
        for (int64_t k_ = 0; k_ < nblk_; k_++)                                                \
            for (int64_t j = 0; j < (N); j++) (out)[j] += part[k_ * (N) + j];                 \
    } while (0)
/* clang-format on */

static diffcl_status column_sums(const diffcl_tensor *g, int64_t M, int64_t N, double *out)
{
    int64_t nblk = (M + DC_NN_ROW_BLOCK - 1) / DC_NN_ROW_BLOCK;
    double *part = dc_malloc((size_t)(nblk * N + 1) * sizeof *part);
    if (!part) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "linear backward: out of memory");
    int nt = dc_threads(g->ctx);
    if (g->dtype == DIFFCL_F32)
        COLSUM(float, dc_data(g), M, N, out, nt);
    else
        COLSUM(double, dc_data(g), M, N, out, nt);
    free(part);
    return DIFFCL_OK;
}

/* node: inputs {x, w, b}; saved[0] = contiguous x, saved[1] = contiguous w;
 * i[0] = M (rows), i[1] = in, i[2] = out. */
static diffcl_status linear_backward(dc_node *nd, diffcl_tensor *g, diffcl_tensor **gin)
{
    const diffcl_tensor *x = nd->saved[0], *w = nd->saved[1];
    int64_t M = nd->i[0], K = nd->i[1], N = nd->i[2];
    diffcl_tensor *gc = dc_contiguous(g);
    if (!gc) return DIFFCL_ERR_OUT_OF_MEMORY;
    diffcl_status s = DIFFCL_OK;
    if (dc_wants_grad(nd, 0)) { /* dX [M,K] = G [M,N] W [N,K] */
        gin[0] = dc_tensor_new(x->ctx, x->dtype, x->ndim, x->shape);
        if (!gin[0])
            s = DIFFCL_ERR_OUT_OF_MEMORY;
        else if (M && K && N)
            gemm(x->dtype, 0, 0, M, K, N, dc_data(gc), N, dc_data(w), K, 0.0, dc_data(gin[0]), K);
    }
    if (s == DIFFCL_OK && dc_wants_grad(nd, 1)) { /* dW [N,K] = G^T X */
        gin[1] = dc_tensor_new(w->ctx, w->dtype, 2, w->shape);
        if (!gin[1])
            s = DIFFCL_ERR_OUT_OF_MEMORY;
        else if (M && K && N)
            gemm(x->dtype, 1, 0, N, K, M, dc_data(gc), N, dc_data(x), K, 0.0, dc_data(gin[1]), K);
    }
    if (s == DIFFCL_OK && dc_wants_grad(nd, 2)) {
        double *sums = dc_malloc((size_t)(N + 1) * sizeof *sums);
        if (!sums)
            s = dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "linear backward: out of memory");
        else
            s = column_sums(gc, M, N, sums);
        if (s == DIFFCL_OK) {
            gin[2] = dc_nn_vec_new(x->ctx, nd->inputs[2]->dtype, N, sums);
            if (!gin[2]) s = DIFFCL_ERR_OUT_OF_MEMORY;
        }
        free(sums);
    }
    diffcl_tensor_free(gc);
    return s;
}
static const dc_op OP_LINEAR = {"linear", linear_backward, NULL, 0};

diffcl_status diffcl_linear(const diffcl_tensor *x, const diffcl_tensor *w, const diffcl_tensor *b,
                            diffcl_tensor **out)
{
    static const char *fn = "diffcl_linear";
    DC_CHECK_ARG(out, "%s: out is NULL", fn);
    *out = NULL;
    DC_TRY(dc_nn_check_float(x, fn, "input"));
    DC_TRY(dc_nn_check_float(w, fn, "weight"));
    if (w->dtype != x->dtype)
        return dc_error(DIFFCL_ERR_DTYPE, "%s: weight is %s but the input is %s", fn,
                        diffcl_dtype_name(w->dtype), diffcl_dtype_name(x->dtype));
    if (x->ndim < 1)
        return dc_error(DIFFCL_ERR_SHAPE, "%s: input is a 0-d scalar; need [..., in]", fn);
    if (w->ndim != 2)
        return dc_error(DIFFCL_ERR_SHAPE, "%s: weight has shape %s; need [out, in]", fn,
                        dc_shape_str(w));
    if (w->ctx != x->ctx)
        return dc_error(DIFFCL_ERR_INVALID_ARGUMENT, "%s: weight belongs to another context", fn);
    int64_t K = x->shape[x->ndim - 1], N = w->shape[0];
    if (w->shape[1] != K) {
        char ws[64];
        snprintf(ws, sizeof ws, "%s", dc_shape_str(w));
        return dc_error(DIFFCL_ERR_SHAPE,
                        "%s: input %s has %lld features but weight %s expects %lld", fn,
                        dc_shape_str(x), (long long)K, ws, (long long)w->shape[1]);
    }
    DC_TRY(dc_nn_check_vec(b, x, N, fn, "bias"));
    int64_t M = K ? dc_numel(x) / K : 1;
    for (int i = 0; i < x->ndim - 1 && !K; i++) M *= x->shape[i];
    if (M > INT_MAX || N > INT_MAX || K > INT_MAX)
        return dc_error(DIFFCL_ERR_UNSUPPORTED, "%s: %s x %s exceeds the BLAS int range", fn,
                        dc_shape_str(x), dc_shape_str(w));

    int64_t shape[DIFFCL_MAX_DIMS];
    for (int i = 0; i < x->ndim - 1; i++) shape[i] = x->shape[i];
    shape[x->ndim - 1] = N;
    diffcl_tensor *xc = dc_contiguous(x), *wc = xc ? dc_contiguous(w) : NULL;
    diffcl_tensor *y = wc ? dc_tensor_empty(x->ctx, x->dtype, x->ndim, shape) : NULL;
    if (!y) {
        diffcl_tensor_free(xc);
        diffcl_tensor_free(wc);
        return DIFFCL_ERR_OUT_OF_MEMORY;
    }
    /* y = bias rows (or 0), then y += X W^T */
    int nt = dc_threads(x->ctx);
    if (x->dtype == DIFFCL_F32) {
        float *py = dc_f32(y);
#pragma omp parallel for num_threads(nt) schedule(static) if (M * N > DC_NN_PAR_MIN)
        for (int64_t r = 0; r < M; r++)
            for (int64_t j = 0; j < N; j++) py[r * N + j] = (float)dc_nn_vec_get(b, j, 0.0);
    } else {
        double *py = dc_f64(y);
#pragma omp parallel for num_threads(nt) schedule(static) if (M * N > DC_NN_PAR_MIN)
        for (int64_t r = 0; r < M; r++)
            for (int64_t j = 0; j < N; j++) py[r * N + j] = dc_nn_vec_get(b, j, 0.0);
    }
    if (M && N && K)
        gemm(x->dtype, 0, 1, M, N, K, dc_data(xc), K, dc_data(wc), K, 1.0, dc_data(y), N);

    diffcl_tensor *in[3] = {(diffcl_tensor *)x, (diffcl_tensor *)w, (diffcl_tensor *)b};
    dc_node *nd = dc_record(y, &OP_LINEAR, in, 3);
    if (nd) {
        nd->i[0] = M;
        nd->i[1] = K;
        nd->i[2] = N;
        dc_node_save(nd, xc);
        dc_node_save(nd, wc);
    }
    diffcl_tensor_free(xc);
    diffcl_tensor_free(wc);
    *out = y;
    return DIFFCL_OK;
}

/* ------------------------------------------------------------------ module ---- */

static diffcl_status linear_forward(diffcl_module *m, const diffcl_tensor *x, diffcl_tensor **out)
{
    return diffcl_linear(x, dc_module_param(m, "weight"), dc_module_param(m, "bias"), out);
}
static const dc_module_vtable LINEAR_VT = {"linear", linear_forward, NULL};

diffcl_status diffcl_linear_create(diffcl_context *ctx, int in_features, int out_features, int bias,
                                   diffcl_rng_key init_key, diffcl_module **out)
{
    DC_CHECK_ARG(out, "diffcl_linear_create: out is NULL");
    *out = NULL;
    DC_CHECK_ARG(ctx, "diffcl_linear_create: ctx is NULL");
    DC_CHECK_ARG(in_features > 0 && out_features > 0,
                 "diffcl_linear_create: in_features %d and out_features %d must be > 0",
                 in_features, out_features);
    DC_CHECK_ARG(init_key.reserved == 0, "diffcl_linear_create: init_key.reserved must be 0");
    double bound = 1.0 / sqrt((double)in_features);
    int64_t wshape[2] = {out_features, in_features}, bshape = out_features;
    diffcl_module *m = dc_module_new(ctx, &LINEAR_VT, NULL);
    if (!m) return DIFFCL_ERR_OUT_OF_MEMORY;
    diffcl_tensor *w = dc_tensor_empty(ctx, DIFFCL_F32, 2, wshape);
    diffcl_status s =
        w ? diffcl_tensor_fill_uniform(w, init_key, -bound, bound) : DIFFCL_ERR_OUT_OF_MEMORY;
    if (s != DIFFCL_OK)
        diffcl_tensor_free(w);
    else
        s = dc_module_add_param(m, "weight", w);
    if (s == DIFFCL_OK && bias) {
        diffcl_tensor *bt = dc_tensor_empty(ctx, DIFFCL_F32, 1, &bshape);
        s = bt ? diffcl_tensor_fill_uniform(bt, dc_bias_init_key(init_key), -bound, bound)
               : DIFFCL_ERR_OUT_OF_MEMORY;
        if (s != DIFFCL_OK)
            diffcl_tensor_free(bt);
        else
            s = dc_module_add_param(m, "bias", bt);
    }
    if (s != DIFFCL_OK) {
        diffcl_module_free(m);
        return s;
    }
    *out = m;
    return DIFFCL_OK;
}
