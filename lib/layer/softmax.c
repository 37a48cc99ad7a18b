/* Softmax and log-softmax over any axis, F32 and F64, with backward.
 *
 * The tensor is viewed as [outer, n, inner] around the axis. With inner == 1 (the last
 * axis) each row is contiguous; otherwise (the class axis 1 of NC... tensors) the kernel
 * walks blocks of up to SM_BLOCK inner positions at once so every load is contiguous. */
#include <math.h>

#include "layer/nn_internal.h"

#define SM_BLOCK 256

/* Kernels of one precision. One work item = (outer o, inner block b). */
#define SM_KERNELS(T, SFX, EXP, LOG)                                                          \
    static void sm_fwd_##SFX(const T *x, T *y, int64_t outer, int64_t n, int64_t inner,       \
                             int logsm, int nt)                                               \
    {                                                                                         \
        int64_t nb = (inner + SM_BLOCK - 1) / SM_BLOCK, items = outer * nb;                   \
        _Pragma("omp parallel for num_threads(nt) schedule(static) if(outer * n * inner > DC_NN_PAR_MIN)") \
        for (int64_t it = 0; it < items; it++) {                                              \
            int64_t o = it / nb, i0 = (it % nb) * SM_BLOCK;                                   \
            int64_t w = inner - i0 < SM_BLOCK ? inner - i0 : SM_BLOCK;                        \
            const T *px = x + o * n * inner + i0;                                             \
            T *py = y + o * n * inner + i0;                                                   \
            T mx[SM_BLOCK];                                                                   \
            double sum[SM_BLOCK];                                                             \
            for (int64_t j = 0; j < w; j++) { mx[j] = px[j]; sum[j] = 0; }                    \
            for (int64_t k = 1; k < n; k++)                                                   \
                for (int64_t j = 0; j < w; j++) {                                             \
                    T v = px[k * inner + j];                                                  \
                    if (v > mx[j] || isnan(v)) mx[j] = v;                                     \
                }                                                                             \
            for (int64_t k = 0; k < n; k++)                                                   \
                for (int64_t j = 0; j < w; j++) {                                             \
                    T e = EXP(px[k * inner + j] - mx[j]);                                     \
                    if (!logsm) py[k * inner + j] = e;                                        \
                    sum[j] += e;                                                              \
                }                                                                             \
            if (logsm) {                                                                      \
                T lse[SM_BLOCK];                                                              \
                for (int64_t j = 0; j < w; j++) lse[j] = mx[j] + (T)LOG((T)sum[j]);           \
                for (int64_t k = 0; k < n; k++)                                               \
                    for (int64_t j = 0; j < w; j++)                                           \
                        py[k * inner + j] = px[k * inner + j] - lse[j];                       \
            } else {                                                                          \
                T inv[SM_BLOCK];                                                              \
                for (int64_t j = 0; j < w; j++) inv[j] = (T)(1.0 / sum[j]);                   \
                for (int64_t k = 0; k < n; k++)                                               \
                    for (int64_t j = 0; j < w; j++) py[k * inner + j] *= inv[j];              \
            }                                                                                 \
        }                                                                                     \
    }                                                                                         \
    /* softmax: gx = y (g - sum g y); log-softmax: gx = g - exp(y) sum g */                   \
    static void sm_bwd_##SFX(const T *y, const T *g, T *gx, int64_t outer, int64_t n,         \
                             int64_t inner, int logsm, int nt)                                \
    {                                                                                         \
        int64_t nb = (inner + SM_BLOCK - 1) / SM_BLOCK, items = outer * nb;                   \
        _Pragma("omp parallel for num_threads(nt) schedule(static) if(outer * n * inner > DC_NN_PAR_MIN)") \
        for (int64_t it = 0; it < items; it++) {                                              \
            int64_t o = it / nb, i0 = (it % nb) * SM_BLOCK;                                   \
            int64_t w = inner - i0 < SM_BLOCK ? inner - i0 : SM_BLOCK;                        \
            size_t base = (size_t)(o * n * inner + i0);                                       \
            const T *py = y + base, *pg = g + base;                                           \
            T *pgx = gx + base;                                                               \
            double acc[SM_BLOCK];                                                             \
            for (int64_t j = 0; j < w; j++) acc[j] = 0;                                       \
            for (int64_t k = 0; k < n; k++)                                                   \
                for (int64_t j = 0; j < w; j++)                                               \
                    acc[j] += logsm ? (double)pg[k * inner + j]                               \
                                    : (double)pg[k * inner + j] * py[k * inner + j];          \
            T s[SM_BLOCK];                                                                    \
            for (int64_t j = 0; j < w; j++) s[j] = (T)acc[j];                                 \
            for (int64_t k = 0; k < n; k++)                                                   \
                for (int64_t j = 0; j < w; j++) {                                             \
                    int64_t at = k * inner + j;                                               \
                    pgx[at] = logsm ? pg[at] - EXP(py[at]) * s[j] : py[at] * (pg[at] - s[j]); \
                }                                                                             \
        }                                                                                     \
    }

SM_KERNELS(float, f, expf, logf)
SM_KERNELS(double, d, exp, log)

/* saved[0] = y; i[0] = log-softmax, i[1..3] = outer, n, inner */
static diffcl_status softmax_backward(dc_node *nd, diffcl_tensor *g, diffcl_tensor **gin)
{
    if (!dc_wants_grad(nd, 0)) return DIFFCL_OK;
    const diffcl_tensor *y = nd->saved[0];
    diffcl_tensor *gc = dc_contiguous(g);
    diffcl_tensor *gx = gc ? dc_tensor_empty_like(y) : NULL;
    if (!gx) {
        diffcl_tensor_free(gc);
        return DIFFCL_ERR_OUT_OF_MEMORY;
    }
    int nt = dc_threads(y->ctx), logsm = (int)nd->i[0];
    if (y->dtype == DIFFCL_F32)
        sm_bwd_f(dc_f32(y), dc_f32(gc), dc_f32(gx), nd->i[1], nd->i[2], nd->i[3], logsm, nt);
    else
        sm_bwd_d(dc_f64(y), dc_f64(gc), dc_f64(gx), nd->i[1], nd->i[2], nd->i[3], logsm, nt);
    diffcl_tensor_free(gc);
    gin[0] = gx;
    return DIFFCL_OK;
}
static const dc_op OP_SOFTMAX = {"softmax", softmax_backward, NULL, 0};

static diffcl_status softmax(const diffcl_tensor *x, int axis, int logsm, diffcl_tensor **out,
                             const char *fn)
{
    DC_CHECK_ARG(out, "%s: out is NULL", fn);
    *out = NULL;
    DC_TRY(dc_nn_check_float(x, fn, "input"));
    if (x->ndim == 0)
        return dc_error(DIFFCL_ERR_SHAPE, "%s: input is a 0-d scalar; need at least one axis", fn);
    int a = dc_norm_axis(axis, x->ndim);
    if (a < 0)
        return dc_error(DIFFCL_ERR_INVALID_ARGUMENT, "%s: axis %d out of range for %s", fn, axis,
                        dc_shape_str(x));
    int64_t outer = 1, n = x->shape[a], inner = dc_nn_inner(x, a + 1);
    for (int i = 0; i < a; i++) outer *= x->shape[i];
    diffcl_tensor *xc = dc_contiguous(x);
    diffcl_tensor *y = xc ? dc_tensor_empty(x->ctx, x->dtype, x->ndim, x->shape) : NULL;
    if (!y) {
        diffcl_tensor_free(xc);
        return DIFFCL_ERR_OUT_OF_MEMORY;
    }
    int nt = dc_threads(x->ctx);
    if (n > 0 && outer > 0 && inner > 0) {
        if (x->dtype == DIFFCL_F32) sm_fwd_f(dc_f32(xc), dc_f32(y), outer, n, inner, logsm, nt);
        else sm_fwd_d(dc_f64(xc), dc_f64(y), outer, n, inner, logsm, nt);
    }
    diffcl_tensor_free(xc);
    diffcl_tensor *in = (diffcl_tensor *)x;
    dc_node *nd = dc_record(y, &OP_SOFTMAX, &in, 1);
    if (nd) {
        nd->i[0] = logsm;
        nd->i[1] = outer;
        nd->i[2] = n;
        nd->i[3] = inner;
        dc_node_save(nd, y);
    }
    *out = y;
    return DIFFCL_OK;
}

diffcl_status diffcl_softmax(const diffcl_tensor *x, int axis, diffcl_tensor **out)
{
    return softmax(x, axis, 0, out, "diffcl_softmax");
}

diffcl_status diffcl_log_softmax(const diffcl_tensor *x, int axis, diffcl_tensor **out)
{
    return softmax(x, axis, 1, out, "diffcl_log_softmax");
}
