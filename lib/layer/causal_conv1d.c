/* The depthwise causal 1-D convolution op (mamba_ssm's short convolution, layer_conv.h): kernels,
 * backward and the public call. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diffcl/layer_conv.h"
#include "layer/module_internal.h"

/* Geometry of a conv call: B, L, C, K; channels_last picks [B,L,C] over [B,C,L]. */
typedef struct conv_geom {
    int64_t B, L, C, K;
    int channels_last;
    int reverse;
} conv_geom;

/* Input token read by tap k of output t (or the output fed by input s through tap k: the
 * same map with the direction swapped); -1 when it falls in the zero padding. */
static inline int64_t conv_src(const conv_geom *g, int64_t t, int64_t k)
{
    int64_t s = g->reverse ? t + (g->K - 1) - k : t - (g->K - 1) + k;
    return (s >= 0 && s < g->L) ? s : -1;
}
static inline int64_t conv_dst(const conv_geom *g, int64_t s, int64_t k)
{
    int64_t t = g->reverse ? s - (g->K - 1) + k : s + (g->K - 1) - k;
    return (t >= 0 && t < g->L) ? t : -1;
}

enum { ROWS = 256 }; /* rows (b, t) per block of the channels-last weight-gradient partials */

/* Kernels for T = float / double. Channels-last loops run over C innermost (vectorised, the
 * weights transposed to wT [K, C]); channels-first loops run one (b, c) row at a time.
 * Weight/bias gradients are summed in double over fixed row blocks (channels-last) or per
 * (b, c) row (channels-first), then over blocks / batch in order: no dependence on threads. */
/* A _Pragma in a macro is not a statement to clang-format: keep the layout. */
/* clang-format off */
#define DEFINE_CONV_KERNELS(T, SFX)                                                            \
    static void conv_fwd_##SFX(const conv_geom *g, const T *x, const T *w, const T *wT,       \
                               const T *bias, T *y, int nt)                                    \
    {                                                                                          \
        const int64_t B = g->B, L = g->L, C = g->C, K = g->K;                                  \
        if (g->channels_last) {                                                                \
            _Pragma("omp parallel for num_threads(nt) schedule(static) if (B * L * C * K > 32768)") \
            for (int64_t bt = 0; bt < B * L; bt++) {                                            \
                const int64_t b = bt / L, t = bt % L;                                           \
                T *restrict yr = y + bt * C;                                                    \
                for (int64_t c = 0; c < C; c++) yr[c] = bias ? bias[c] : (T)0;                  \
                for (int64_t k = 0; k < K; k++) {                                               \
                    const int64_t s = conv_src(g, t, k);                                        \
                    if (s < 0) continue;                                                        \
                    const T *restrict xr = x + (b * L + s) * C, *restrict wk = wT + k * C;      \
                    _Pragma("omp simd") for (int64_t c = 0; c < C; c++) yr[c] += wk[c] * xr[c];                     \
                }                                                                               \
            }                                                                                   \
        } else {                                                                               \
            _Pragma("omp parallel for num_threads(nt) schedule(static) if (B * L * C * K > 32768)") \
            for (int64_t bc = 0; bc < B * C; bc++) {                                            \
                const int64_t c = bc % C;                                                       \
                const T *restrict xr = x + bc * L;                                              \
                T *restrict yr = y + bc * L;                                                    \
                for (int64_t t = 0; t < L; t++) {                                               \
                    T acc = bias ? bias[c] : (T)0;                                              \
                    for (int64_t k = 0; k < K; k++) {                                           \
                        const int64_t s = conv_src(g, t, k);                                    \
                        if (s >= 0) acc += w[c * K + k] * xr[s];                                \
                    }                                                                           \
                    yr[t] = acc;                                                                \
                }                                                                               \
            }                                                                                   \
        }                                                                                      \
    }                                                                                          \
    /* dx (may be NULL) and part: per block (cl) or per (b, c) row (cf) dw [K or C*K] + db */  \
    static void conv_bwd_##SFX(const conv_geom *g, const T *x, const T *w, const T *wT,       \
                               const T *gy, T *dx, double *part, int nt)                       \
    {                                                                                          \
        const int64_t B = g->B, L = g->L, C = g->C, K = g->K;                                  \
        const int big = B * L * C * K > 32768;                                                 \
        if (g->channels_last) {                                                                \
            if (dx) {                                                                          \
                _Pragma("omp parallel for num_threads(nt) schedule(static) if (big)")          \
                for (int64_t bs = 0; bs < B * L; bs++) {                                        \
                    const int64_t b = bs / L, s0 = bs % L;                                      \
                    T *restrict dr = dx + bs * C;                                               \
                    for (int64_t c = 0; c < C; c++) dr[c] = 0;                                  \
                    for (int64_t k = 0; k < K; k++) {                                           \
                        const int64_t t = conv_dst(g, s0, k);                                   \
                        if (t < 0) continue;                                                    \
                        const T *restrict gr = gy + (b * L + t) * C, *restrict wk = wT + k * C; \
                        _Pragma("omp simd") for (int64_t c = 0; c < C; c++) dr[c] += wk[c] * gr[c];                 \
                    }                                                                           \
                }                                                                               \
            }                                                                                  \
            if (part) {                                                                        \
                const int64_t nblk = (B * L + ROWS - 1) / ROWS, stride = K * C + C;            \
                _Pragma("omp parallel for num_threads(nt) schedule(static) if (big)")          \
                for (int64_t blk = 0; blk < nblk; blk++) {                                      \
                    double *restrict pw = part + blk * stride, *restrict pbias = pw + K * C;    \
                    for (int64_t j = 0; j < stride; j++) pw[j] = 0;                             \
                    const int64_t r1 = (blk + 1) * ROWS < B * L ? (blk + 1) * ROWS : B * L;     \
                    for (int64_t bt = blk * ROWS; bt < r1; bt++) {                              \
                        const int64_t b = bt / L, t = bt % L;                                   \
                        const T *restrict gr = gy + bt * C;                                     \
                        _Pragma("omp simd") for (int64_t c = 0; c < C; c++) pbias[c] += (double)gr[c];              \
                        for (int64_t k = 0; k < K; k++) {                                       \
                            const int64_t s = conv_src(g, t, k);                                \
                            if (s < 0) continue;                                                \
                            const T *restrict xr = x + (b * L + s) * C;                         \
                            double *restrict pk = pw + k * C;                                   \
                            _Pragma("omp simd") for (int64_t c = 0; c < C; c++) pk[c] += (double)(gr[c] * xr[c]);   \
                        }                                                                       \
                    }                                                                           \
                }                                                                               \
            }                                                                                  \
        } else {                                                                               \
            _Pragma("omp parallel for num_threads(nt) schedule(static) if (big)")              \
            for (int64_t bc = 0; bc < B * C; bc++) {                                            \
                const int64_t c = bc % C;                                                       \
                const T *restrict xr = x + bc * L, *restrict gr = gy + bc * L;                  \
                if (dx) {                                                                       \
                    T *restrict dr = dx + bc * L;                                               \
                    for (int64_t s0 = 0; s0 < L; s0++) {                                        \
                        T acc = 0;                                                              \
                        for (int64_t k = 0; k < K; k++) {                                       \
                            const int64_t t = conv_dst(g, s0, k);                               \
                            if (t >= 0) acc += w[c * K + k] * gr[t];                            \
                        }                                                                       \
                        dr[s0] = acc;                                                           \
                    }                                                                           \
                }                                                                               \
                if (part) {                                                                     \
                    double *restrict pw = part + bc * (K + 1);                                  \
                    for (int64_t j = 0; j <= K; j++) pw[j] = 0;                                 \
                    for (int64_t t = 0; t < L; t++) {                                           \
                        pw[K] += (double)gr[t];                                                 \
                        for (int64_t k = 0; k < K; k++) {                                       \
                            const int64_t s = conv_src(g, t, k);                                \
                            if (s >= 0) pw[k] += (double)(gr[t] * xr[s]);                       \
                        }                                                                       \
                    }                                                                           \
                }                                                                               \
            }                                                                                   \
        }                                                                                      \
    }
/* clang-format on */

DEFINE_CONV_KERNELS(float, f32)
DEFINE_CONV_KERNELS(double, f64)

/* w [C, K] (any of [C,1,K] / [C,K], contiguous) -> wT [K, C] */
static void *transpose_w(const diffcl_tensor *w, int64_t C, int64_t K)
{
    size_t es = diffcl_dtype_size(w->dtype);
    char *wT = dc_malloc((size_t)(C * K) * es);
    if (!wT) return NULL;
    const char *src = dc_data(w);
    for (int64_t c = 0; c < C; c++)
        for (int64_t k = 0; k < K; k++)
            memcpy(wT + (size_t)(k * C + c) * es, src + (size_t)(c * K + k) * es, es);
    return wT;
}

static diffcl_status conv_backward(dc_node *n, diffcl_tensor *grad, diffcl_tensor **gin)
{
    const diffcl_tensor *x = n->saved[0], *w = n->saved[1];
    const conv_geom geo = {n->i[0], n->i[1], n->i[2], n->i[3], (int)n->i[4], (int)n->i[5]};
    const int64_t B = geo.B, C = geo.C, K = geo.K;
    int nt = dc_threads(grad->ctx);
    int want_w = dc_wants_grad(n, 1), want_b = n->inputs[2] && dc_wants_grad(n, 2);
    int64_t nparts = geo.channels_last ? (B * geo.L + ROWS - 1) / ROWS : B * C;
    int64_t stride = geo.channels_last ? K * C + C : K + 1;
    diffcl_tensor *gc = dc_contiguous(grad);
    diffcl_tensor *dx = dc_wants_grad(n, 0) ? dc_tensor_empty_like(x) : NULL;
    double *part = (want_w || want_b)
                       ? dc_malloc((size_t)((nparts ? nparts : 1) * stride) * sizeof(double))
                       : NULL;
    void *wT = transpose_w(w, C, K);
    if (want_w) gin[1] = dc_tensor_empty_like(n->inputs[1]);
    if (want_b) gin[2] = dc_tensor_empty_like(n->inputs[2]);
    if (!gc || !wT || (dc_wants_grad(n, 0) && !dx) || ((want_w || want_b) && !part) ||
        (want_w && !gin[1]) || (want_b && !gin[2])) {
        diffcl_tensor_free(gc);
        diffcl_tensor_free(dx);
        free(part);
        free(wT);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "causal_conv1d backward: out of memory");
    }
    if (x->dtype == DIFFCL_F32)
        conv_bwd_f32(&geo, dc_f32(x), dc_f32(w), wT, dc_f32(gc), dx ? dc_f32(dx) : NULL, part, nt);
    else
        conv_bwd_f64(&geo, dc_f64(x), dc_f64(w), wT, dc_f64(gc), dx ? dc_f64(dx) : NULL, part, nt);
    if (part) {
        /* sum the parts in order; dw lands in w's [C, K] order */
        for (int64_t c = 0; c < C; c++) {
            for (int64_t k = 0; k <= K; k++) {
                double acc = 0;
                if (geo.channels_last) {
                    int64_t j = k < K ? k * C + c : K * C + c;
                    for (int64_t p = 0; p < nparts; p++) acc += part[p * stride + j];
                } else {
                    for (int64_t b = 0; b < B; b++) acc += part[(b * C + c) * stride + k];
                }
                diffcl_tensor *dst = k < K ? gin[1] : gin[2];
                int64_t at = k < K ? c * K + k : c;
                if (!dst) continue;
                if (dst->dtype == DIFFCL_F32)
                    dc_f32(dst)[at] = (float)acc;
                else
                    dc_f64(dst)[at] = acc;
            }
        }
    }
    free(part);
    free(wT);
    diffcl_tensor_free(gc);
    gin[0] = dx;
    return DIFFCL_OK;
}
static const dc_op OP_CAUSAL_CONV1D = {"causal_conv1d", conv_backward, NULL, 0};

diffcl_status diffcl_causal_conv1d(const diffcl_tensor *x, const diffcl_tensor *w,
                                   const diffcl_tensor *b, int channels_last, int reverse,
                                   diffcl_tensor **out)
{
    const char *fn = "diffcl_causal_conv1d";
    DC_CHECK_ARG(out, "%s: out is NULL", fn);
    *out = NULL;
    DC_CHECK_ARG(x && w, "%s: x and w are required", fn);
    if (!dc_is_float(x->dtype) || w->dtype != x->dtype || (b && b->dtype != x->dtype))
        return dc_error(DIFFCL_ERR_DTYPE, "%s: x, w (and b) must be one of f32/f64", fn);
    if (x->ndim != 3)
        return dc_error(DIFFCL_ERR_SHAPE, "%s: x has shape %s; expected %s", fn, dc_shape_str(x),
                        channels_last ? "[B,L,C]" : "[B,C,L]");
    if (w->ctx != x->ctx || (b && b->ctx != x->ctx))
        return dc_error(DIFFCL_ERR_INVALID_ARGUMENT, "%s: tensors belong to different contexts",
                        fn);
    conv_geom geo;
    geo.B = x->shape[0];
    geo.L = channels_last ? x->shape[1] : x->shape[2];
    geo.C = channels_last ? x->shape[2] : x->shape[1];
    int wok = (w->ndim == 3 && w->shape[0] == geo.C && w->shape[1] == 1) ||
              (w->ndim == 2 && w->shape[0] == geo.C);
    if (!wok || w->shape[w->ndim - 1] < 1)
        return dc_error(DIFFCL_ERR_SHAPE,
                        "%s: weight has shape %s; expected [%lld,1,K] or [%lld,K]", fn,
                        dc_shape_str(w), (long long)geo.C, (long long)geo.C);
    if (b && (b->ndim != 1 || b->shape[0] != geo.C))
        return dc_error(DIFFCL_ERR_SHAPE, "%s: bias has shape %s; expected [%lld]", fn,
                        dc_shape_str(b), (long long)geo.C);
    geo.K = w->shape[w->ndim - 1];
    geo.channels_last = channels_last != 0;
    geo.reverse = reverse != 0;
    diffcl_tensor *xc = dc_contiguous(x), *wc = xc ? dc_contiguous(w) : NULL;
    diffcl_tensor *bc = (wc && b) ? dc_contiguous(b) : NULL;
    diffcl_tensor *y = (wc && (!b || bc)) ? dc_tensor_empty_like(xc) : NULL;
    void *wT = y ? transpose_w(wc, geo.C, geo.K) : NULL;
    if (!wT) {
        diffcl_tensor_free(xc);
        diffcl_tensor_free(wc);
        diffcl_tensor_free(bc);
        diffcl_tensor_free(y);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    int nt = dc_threads(x->ctx);
    if (x->dtype == DIFFCL_F32)
        conv_fwd_f32(&geo, dc_f32(xc), dc_f32(wc), wT, bc ? dc_f32(bc) : NULL, dc_f32(y), nt);
    else
        conv_fwd_f64(&geo, dc_f64(xc), dc_f64(wc), wT, bc ? dc_f64(bc) : NULL, dc_f64(y), nt);
    free(wT);
    diffcl_tensor *in[3] = {(diffcl_tensor *)x, (diffcl_tensor *)w, (diffcl_tensor *)b};
    dc_node *n = dc_record(y, &OP_CAUSAL_CONV1D, in, 3);
    if (n) {
        n->i[0] = geo.B;
        n->i[1] = geo.L;
        n->i[2] = geo.C;
        n->i[3] = geo.K;
        n->i[4] = geo.channels_last;
        n->i[5] = geo.reverse;
        dc_node_save(n, xc);
        dc_node_save(n, wc);
    }
    diffcl_tensor_free(xc);
    diffcl_tensor_free(wc);
    diffcl_tensor_free(bc);
    *out = y;
    return DIFFCL_OK;
}
