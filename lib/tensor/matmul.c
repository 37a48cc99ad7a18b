/* Matrix products through BLAS (sgemm/dgemm), plain and batched, with backward. */
#include <cblas.h>

#include "tensor/tensor_internal.h"

/* C[b] = op(A[b]) op(B[b]) for contiguous row-major operands; accumulate if beta = 1. */
static void gemm_batched(const diffcl_tensor *a, const diffcl_tensor *b, diffcl_tensor *c,
                         int64_t batch, int64_t m, int64_t n, int64_t k, int ta, int tb,
                         double beta)
{
    int64_t sa = m * k, sb = k * n, sc = m * n;
    int lda = (int)(ta ? m : k), ldb = (int)(tb ? k : n);
    for (int64_t i = 0; i < batch; i++) {
        if (a->dtype == DIFFCL_F32)
            cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans,
                        tb ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k, 1.0f,
                        dc_f32(a) + i * sa, lda, dc_f32(b) + i * sb, ldb, (float)beta,
                        dc_f32(c) + i * sc, (int)n);
        else
            cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans,
                        tb ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k, 1.0,
                        dc_f64(a) + i * sa, lda, dc_f64(b) + i * sb, ldb, beta, dc_f64(c) + i * sc,
                        (int)n);
    }
}

/* n->i: [0]=trans_a [1]=trans_b [2]=batch [3]=m [4]=n [5]=k */
static diffcl_status matmul_backward(dc_node *nd, diffcl_tensor *g, diffcl_tensor **gin)
{
    const diffcl_tensor *a = nd->saved[0], *b = nd->saved[1];
    int ta = (int)nd->i[0], tb = (int)nd->i[1];
    int64_t batch = nd->i[2], m = nd->i[3], n = nd->i[4], k = nd->i[5];
    diffcl_tensor *gc = dc_contiguous(g);
    if (!gc) return DIFFCL_ERR_OUT_OF_MEMORY;
    diffcl_status s = DIFFCL_OK;
    if (dc_wants_grad(nd, 0)) {
        gin[0] = dc_tensor_empty_like(a);
        if (!gin[0]) s = DIFFCL_ERR_OUT_OF_MEMORY;
        /* C = A B: dA = G B^T ; with A stored transposed ([k,m]): dA^T = B G^T */
        else if (!ta)
            gemm_batched(gc, b, gin[0], batch, m, k, n, 0, !tb, 0.0);
        else
            gemm_batched(b, gc, gin[0], batch, k, m, n, tb, 1, 0.0);
    }
    if (s == DIFFCL_OK && dc_wants_grad(nd, 1)) {
        gin[1] = dc_tensor_empty_like(b);
        if (!gin[1]) s = DIFFCL_ERR_OUT_OF_MEMORY;
        /* dB = A^T G ; with B stored transposed ([n,k]): dB^T = G^T A */
        else if (!tb)
            gemm_batched(a, gc, gin[1], batch, k, n, m, !ta, 0, 0.0);
        else
            gemm_batched(gc, a, gin[1], batch, n, k, m, 1, ta, 0.0);
    }
    diffcl_tensor_free(gc);
    return s;
}
static const dc_op OP_MATMUL = {"matmul", matmul_backward, NULL, 0};

diffcl_status diffcl_matmul(const diffcl_tensor *a, const diffcl_tensor *b, int trans_a,
                            int trans_b, diffcl_tensor **out)
{
    DC_CHECK_ARG(out, "diffcl_matmul: out is NULL");
    *out = NULL;
    DC_CHECK_TENSOR(a, "diffcl_matmul");
    DC_CHECK_TENSOR(b, "diffcl_matmul");
    if (!dc_is_float(a->dtype) || a->dtype != b->dtype)
        return dc_error(DIFFCL_ERR_DTYPE, "diffcl_matmul: operands are %s and %s",
                        diffcl_dtype_name(a->dtype), diffcl_dtype_name(b->dtype));
    if (a->ndim != b->ndim || (a->ndim != 2 && a->ndim != 3))
        return dc_error(DIFFCL_ERR_SHAPE,
                        "diffcl_matmul: need two 2-d or two 3-d operands, got %s and %s",
                        dc_shape_str(a), dc_shape_str(b));
    int bat = a->ndim == 3;
    int64_t batch = bat ? a->shape[0] : 1;
    if (bat && b->shape[0] != batch)
        return dc_error(DIFFCL_ERR_SHAPE, "diffcl_matmul: batch sizes differ in %s and %s",
                        dc_shape_str(a), dc_shape_str(b));
    int64_t ar = a->shape[bat], ac = a->shape[bat + 1], br = b->shape[bat], bc = b->shape[bat + 1];
    int64_t m = trans_a ? ac : ar, k = trans_a ? ar : ac, kb = trans_b ? bc : br,
            n = trans_b ? br : bc;
    if (k != kb)
        return dc_error(DIFFCL_ERR_SHAPE, "diffcl_matmul: inner sizes differ (%s%s x %s%s)",
                        dc_shape_str(a), trans_a ? "^T" : "", dc_shape_str(b), trans_b ? "^T" : "");
    if (m > 0x7fffffff || n > 0x7fffffff || k > 0x7fffffff)
        return dc_error(DIFFCL_ERR_UNSUPPORTED, "diffcl_matmul: dimension exceeds BLAS int range");
    diffcl_tensor *ca = dc_contiguous(a), *cb = dc_contiguous(b);
    int64_t sh[3] = {batch, m, n};
    diffcl_tensor *r =
        (ca && cb) ? dc_tensor_new(a->ctx, a->dtype, a->ndim, bat ? sh : sh + 1) : NULL;
    if (!r) {
        diffcl_tensor_free(ca);
        diffcl_tensor_free(cb);
        return DIFFCL_ERR_OUT_OF_MEMORY;
    }
    if (m && n && k) gemm_batched(ca, cb, r, batch, m, n, k, trans_a != 0, trans_b != 0, 0.0);
    diffcl_tensor *in[2] = {(diffcl_tensor *)a, (diffcl_tensor *)b};
    dc_node *nd = dc_record(r, &OP_MATMUL, in, 2);
    if (nd) {
        nd->i[0] = trans_a != 0;
        nd->i[1] = trans_b != 0;
        nd->i[2] = batch;
        nd->i[3] = m;
        nd->i[4] = n;
        nd->i[5] = k;
        dc_node_save(nd, ca);
        dc_node_save(nd, cb);
    }
    diffcl_tensor_free(ca);
    diffcl_tensor_free(cb);
    *out = r;
    return DIFFCL_OK;
}
