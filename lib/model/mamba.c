/* The Mamba block (mamba_ssm's Mamba, Vision Mamba's bidirectional "v2" variant) and its
 * depthwise causal convolution op. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diffcl/layer.h"
#include "diffcl/mamba.h"
#include "diffcl/scan.h"
#include "layer/module_internal.h"

/* ======================================================= causal conv1d op ==== */

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

DEFINE_CONV_KERNELS(float, f32)
DEFINE_CONV_KERNELS(double, f64)

/* w [C, K] (any of [C,1,K] / [C,K], contiguous) -> wT [K, C] */
static void *transpose_w(const diffcl_tensor *w, int64_t C, int64_t K)
{
    size_t es = diffcl_dtype_size(w->dtype);
    char *wT = malloc((size_t)(C * K) * es);
    if (!wT) return NULL;
    const char *src = dc_data(w);
    for (int64_t c = 0; c < C; c++)
        for (int64_t k = 0; k < K; k++) memcpy(wT + (size_t)(k * C + c) * es, src + (size_t)(c * K + k) * es, es);
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
    double *part = (want_w || want_b) ? malloc((size_t)((nparts ? nparts : 1) * stride) * sizeof(double)) : NULL;
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
                if (dst->dtype == DIFFCL_F32) dc_f32(dst)[at] = (float)acc;
                else dc_f64(dst)[at] = acc;
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
        return dc_error(DIFFCL_ERR_INVALID_ARGUMENT, "%s: tensors belong to different contexts", fn);
    conv_geom geo;
    geo.B = x->shape[0];
    geo.L = channels_last ? x->shape[1] : x->shape[2];
    geo.C = channels_last ? x->shape[2] : x->shape[1];
    int wok = (w->ndim == 3 && w->shape[0] == geo.C && w->shape[1] == 1) ||
              (w->ndim == 2 && w->shape[0] == geo.C);
    if (!wok || w->shape[w->ndim - 1] < 1)
        return dc_error(DIFFCL_ERR_SHAPE, "%s: weight has shape %s; expected [%lld,1,K] or [%lld,K]",
                        fn, dc_shape_str(w), (long long)geo.C, (long long)geo.C);
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

/* ======================================================== conv1d module ==== */

/* Child named "conv1d" / "conv1d_b": PyTorch Conv1d(E, E, K, groups=E, padding=K-1) names. */
static diffcl_status conv1d_module_forward(diffcl_module *m, const diffcl_tensor *x,
                                           diffcl_tensor **out)
{
    /* PyTorch's module returns L + K - 1 outputs; the Mamba block keeps the first L, which is
     * what the causal op computes. The standalone module forward returns those L. */
    return diffcl_causal_conv1d(x, dc_module_param(m, "weight"), dc_module_param(m, "bias"), 0, 0,
                                out);
}
static const dc_module_vtable CONV1D_VT = {"causal_conv1d", conv1d_module_forward, NULL};

/* ========================================================== Mamba block ==== */

typedef struct mamba_impl {
    diffcl_mamba_options o; /* resolved (dt_rank filled in) */
    int64_t E;
} mamba_impl;

static void free_impl(void *p) { free(p); }

/* Keep a list of temporaries released together. */
typedef struct tmp_list {
    diffcl_tensor *t[48];
    int n;
} tmp_list;

static diffcl_tensor *keep(tmp_list *l, diffcl_tensor *t)
{
    if (t && l->n < 48) l->t[l->n++] = t;
    return t;
}

static void release(tmp_list *l)
{
    for (int i = 0; i < l->n; i++) diffcl_tensor_free(l->t[i]);
    l->n = 0;
}

/* One scan direction: u = silu(conv(x)), the projections, the scan. y: [B, E, L]. */
static diffcl_status direction(diffcl_module *m, int back, diffcl_tensor *xin, diffcl_tensor *z,
                               tmp_list *tl, diffcl_tensor **y)
{
    const mamba_impl *mi = m->impl;
    const int64_t R = mi->o.dt_rank, N = mi->o.d_state;
    diffcl_module *conv = dc_module_get_child(m, back ? "conv1d_b" : "conv1d");
    diffcl_module *xproj = dc_module_get_child(m, back ? "x_proj_b" : "x_proj");
    diffcl_module *dtproj = dc_module_get_child(m, back ? "dt_proj_b" : "dt_proj");
    diffcl_tensor *A_log = dc_module_param(m, back ? "A_b_log" : "A_log");
    diffcl_tensor *D = dc_module_param(m, back ? "D_b" : "D");
    if (!conv || !xproj || !dtproj || !A_log || !D)
        return dc_error(DIFFCL_ERR_STATE, "mamba: the module is missing its %s weights",
                        back ? "reverse-direction" : "forward-direction");
    diffcl_status s = DIFFCL_OK;
    diffcl_tensor *xc = NULL, *xs = NULL, *xdbl = NULL, *dt = NULL, *dtp = NULL, *Bv = NULL, *Cv = NULL;
    diffcl_tensor *u = NULL, *delta = NULL, *Bp = NULL, *Cp = NULL, *Ae = NULL, *A = NULL;
    int perm[3] = {0, 2, 1};
    DC_STEP(diffcl_causal_conv1d(xin, dc_module_param(conv, "weight"), dc_module_param(conv, "bias"), 1,
                              back, &xc));
    keep(tl, xc);
    DC_STEP(diffcl_silu(xc, &xs));
    keep(tl, xs);
    DC_STEP(diffcl_linear(xs, dc_module_param(xproj, "weight"), dc_module_param(xproj, "bias"), &xdbl));
    keep(tl, xdbl);
    DC_STEP(diffcl_tensor_narrow(xdbl, 2, 0, R, &dt));
    keep(tl, dt);
    DC_STEP(diffcl_linear(dt, dc_module_param(dtproj, "weight"), NULL, &dtp));
    keep(tl, dtp);
    DC_STEP(diffcl_tensor_narrow(xdbl, 2, R, N, &Bv));
    keep(tl, Bv);
    DC_STEP(diffcl_tensor_narrow(xdbl, 2, R + N, N, &Cv));
    keep(tl, Cv);
    DC_STEP(diffcl_tensor_permute(xs, perm, &u));
    keep(tl, u);
    DC_STEP(diffcl_tensor_permute(dtp, perm, &delta));
    keep(tl, delta);
    DC_STEP(diffcl_tensor_permute(Bv, perm, &Bp));
    keep(tl, Bp);
    DC_STEP(diffcl_tensor_permute(Cv, perm, &Cp));
    keep(tl, Cp);
    DC_STEP(diffcl_exp(A_log, &Ae));
    keep(tl, Ae);
    DC_STEP(diffcl_neg(Ae, &A));
    keep(tl, A);
    diffcl_scan_options so = DIFFCL_SCAN_OPTIONS_INIT;
    so.delta_softplus = 1;
    so.reverse = back;
    so.chunk = mi->o.scan_chunk;
    DC_STEP(diffcl_selective_scan(u, delta, A, Bp, Cp, D, z, dc_module_param(dtproj, "bias"), &so, y));
    return s;
}

static diffcl_status mamba_forward(diffcl_module *m, const diffcl_tensor *x, diffcl_tensor **out)
{
    const mamba_impl *mi = m->impl;
    const int64_t C = mi->o.d_model, E = mi->E;
    if (x->ndim != 3 || x->shape[2] != C)
        return dc_error(DIFFCL_ERR_SHAPE, "mamba: input %s; expected tokens [B, L, %lld]",
                        dc_shape_str(x), (long long)C);
    diffcl_module *inp = dc_module_get_child(m, "in_proj"), *outp = dc_module_get_child(m, "out_proj");
    tmp_list tl = {{0}, 0};
    diffcl_status s = DIFFCL_OK;
    diffcl_tensor *xz = NULL, *xin = NULL, *zt = NULL, *z = NULL, *y = NULL, *yb = NULL, *ys = NULL;
    diffcl_tensor *yt = NULL;
    int perm[3] = {0, 2, 1};
    DC_STEP(diffcl_linear(x, dc_module_param(inp, "weight"), dc_module_param(inp, "bias"), &xz));
    keep(&tl, xz);
    DC_STEP(diffcl_tensor_narrow(xz, 2, 0, E, &xin));
    keep(&tl, xin);
    DC_STEP(diffcl_tensor_narrow(xz, 2, E, E, &zt));
    keep(&tl, zt);
    DC_STEP(diffcl_tensor_permute(zt, perm, &z));
    keep(&tl, z);
    DC_STEP(direction(m, 0, xin, z, &tl, &y));
    keep(&tl, y);
    if (mi->o.bidirectional) {
        DC_STEP(direction(m, 1, xin, z, &tl, &yb));
        keep(&tl, yb);
        DC_STEP(diffcl_add(y, yb, &ys));
        keep(&tl, ys);
    } else {
        ys = y;
    }
    DC_STEP(diffcl_tensor_permute(ys, perm, &yt));
    keep(&tl, yt);
    DC_STEP(diffcl_linear(yt, dc_module_param(outp, "weight"), dc_module_param(outp, "bias"), out));
    release(&tl);
    if (s != DIFFCL_OK) dc_error_prefix("mamba");
    return s;
}
static const dc_module_vtable MAMBA_VT = {"mamba", mamba_forward, free_impl};

void diffcl_mamba_options_init(diffcl_mamba_options *opts)
{
    if (!opts) return;
    diffcl_mamba_options d = DIFFCL_MAMBA_OPTIONS_INIT;
    *opts = d;
}

/* Sub-key of parameter p: the user's key with stream + p. */
static diffcl_rng_key subkey(diffcl_rng_key k, uint32_t p)
{
    return diffcl_rng_key_make(k.seed, k.stream + p, k.index, k.iteration);
}

static diffcl_tensor *new_param(diffcl_context *ctx, int nd, const int64_t *shape)
{
    diffcl_tensor *t = NULL;
    if (diffcl_tensor_new(ctx, DIFFCL_F32, nd, shape, &t) != DIFFCL_OK) return NULL;
    return t;
}

/* conv1d child: weight [E,1,K], bias [E], PyTorch's Conv1d init (bound 1/sqrt(K)). */
static diffcl_status make_conv1d(diffcl_context *ctx, const diffcl_mamba_options *o, int64_t E,
                                 uint32_t p, diffcl_module **out)
{
    diffcl_module *c = dc_module_new(ctx, &CONV1D_VT, NULL);
    if (!c) return DIFFCL_ERR_OUT_OF_MEMORY;
    double bound = 1.0 / sqrt((double)o->d_conv);
    int64_t ws[3] = {E, 1, o->d_conv};
    diffcl_tensor *w = new_param(ctx, 3, ws);
    diffcl_status s = w ? diffcl_tensor_fill_uniform(w, subkey(o->init_key, p), -bound, bound)
                        : DIFFCL_ERR_OUT_OF_MEMORY;
    if (s == DIFFCL_OK) s = dc_module_add_param(c, "weight", w);
    else diffcl_tensor_free(w);
    if (s == DIFFCL_OK && o->conv_bias) {
        diffcl_tensor *b = new_param(ctx, 1, &E);
        s = b ? diffcl_tensor_fill_uniform(b, subkey(o->init_key, p + 1), -bound, bound)
              : DIFFCL_ERR_OUT_OF_MEMORY;
        if (s == DIFFCL_OK) s = dc_module_add_param(c, "bias", b);
        else diffcl_tensor_free(b);
    }
    if (s != DIFFCL_OK) {
        diffcl_module_free(c);
        return s;
    }
    *out = c;
    return DIFFCL_OK;
}

/* dt_proj: Linear(R, E) with weight ~ U(+-dt_scale/sqrt(R)) and bias = softplus^-1(dt),
 * dt = exp(U[0,1) * (log dt_max - log dt_min) + log dt_min) clamped to >= dt_init_floor. */
static diffcl_status make_dt_proj(diffcl_context *ctx, const diffcl_mamba_options *o, int64_t E,
                                  uint32_t p, diffcl_module **out)
{
    diffcl_module *lin = NULL;
    DC_TRY(diffcl_linear_create(ctx, o->dt_rank, (int)E, 1, subkey(o->init_key, p), &lin));
    double std = o->dt_scale / sqrt((double)o->dt_rank);
    diffcl_status s = diffcl_tensor_fill_uniform(dc_module_param(lin, "weight"),
                                                 subkey(o->init_key, p + 1), -std, std);
    float *u = malloc((size_t)E * sizeof *u), *bias = malloc((size_t)E * sizeof *bias);
    if (!u || !bias) s = dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "mamba: out of memory");
    if (s == DIFFCL_OK) {
        diffcl_rng_uniform(subkey(o->init_key, p + 2), 0, (size_t)E, 0.0f, 1.0f, u);
        double lmin = log(o->dt_min), lmax = log(o->dt_max);
        for (int64_t e = 0; e < E; e++) {
            double dt = exp((double)u[e] * (lmax - lmin) + lmin);
            if (dt < o->dt_init_floor) dt = o->dt_init_floor;
            bias[e] = (float)(dt + log(-expm1(-dt)));
        }
        s = diffcl_tensor_copy_from(dc_module_param(lin, "bias"), bias, (size_t)E * sizeof *bias);
    }
    free(u);
    free(bias);
    if (s != DIFFCL_OK) {
        diffcl_module_free(lin);
        return s;
    }
    *out = lin;
    return DIFFCL_OK;
}

/* A_log = log(1..N) on every row, D = 1. */
static diffcl_status add_a_d(diffcl_module *m, int64_t E, int64_t N, const char *a_name,
                             const char *d_name)
{
    int64_t sa[2] = {E, N};
    diffcl_tensor *A = new_param(m->ctx, 2, sa), *D = A ? new_param(m->ctx, 1, &E) : NULL;
    if (!A || !D) {
        diffcl_tensor_free(A);
        diffcl_tensor_free(D);
        return DIFFCL_ERR_OUT_OF_MEMORY;
    }
    float *pa = dc_f32(A), *pd = dc_f32(D);
    for (int64_t e = 0; e < E; e++) {
        for (int64_t n = 0; n < N; n++) pa[e * N + n] = logf((float)(n + 1));
        pd[e] = 1.0f;
    }
    diffcl_status s = dc_module_add_param(m, a_name, A);
    if (s != DIFFCL_OK) {
        diffcl_tensor_free(D);
        return s;
    }
    return dc_module_add_param(m, d_name, D);
}

diffcl_status diffcl_mamba_create(diffcl_context *ctx, const diffcl_mamba_options *opts,
                                  diffcl_module **out)
{
    const char *fn = "diffcl_mamba_create";
    DC_CHECK_ARG(out, "%s: out is NULL", fn);
    *out = NULL;
    DC_CHECK_ARG(ctx, "%s: ctx is NULL", fn);
    DC_CHECK_ARG(opts, "%s: options are required (d_model)", fn);
    diffcl_mamba_options o = DIFFCL_MAMBA_OPTIONS_INIT;
    DC_CHECK_ARG(opts->struct_size >= offsetof(diffcl_mamba_options, init_key),
                 "%s: options.struct_size %zu too small", fn, opts->struct_size);
    memcpy(&o, opts, opts->struct_size < sizeof o ? opts->struct_size : sizeof o);
    o.struct_size = sizeof o;
    DC_CHECK_ARG(o.d_model >= 1, "%s: d_model %d must be >= 1", fn, o.d_model);
    DC_CHECK_ARG(o.d_state >= 1 && o.d_state <= DIFFCL_SCAN_MAX_STATE,
                 "%s: d_state %d not in 1..%d", fn, o.d_state, DIFFCL_SCAN_MAX_STATE);
    DC_CHECK_ARG(o.d_conv >= 1, "%s: d_conv %d must be >= 1", fn, o.d_conv);
    DC_CHECK_ARG(o.expand >= 1, "%s: expand %d must be >= 1", fn, o.expand);
    DC_CHECK_ARG(o.dt_rank >= 0, "%s: dt_rank %d must be >= 0", fn, o.dt_rank);
    DC_CHECK_ARG(o.dt_min > 0 && o.dt_max >= o.dt_min && o.dt_init_floor >= 0,
                 "%s: need 0 < dt_min (%g) <= dt_max (%g) and dt_init_floor >= 0", fn, o.dt_min,
                 o.dt_max);
    DC_CHECK_ARG(o.scan_chunk >= 0, "%s: scan_chunk %d < 0", fn, o.scan_chunk);
    DC_CHECK_ARG(o.init_key.reserved == 0, "%s: init_key.reserved must be 0", fn);
    if (o.dt_rank == 0) o.dt_rank = (o.d_model + 15) / 16;
    mamba_impl *mi = calloc(1, sizeof *mi);
    if (!mi) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    mi->o = o;
    mi->E = (int64_t)o.expand * o.d_model;
    const int64_t E = mi->E, N = o.d_state;
    const int R = o.dt_rank;
    diffcl_module *m = dc_module_new(ctx, &MAMBA_VT, mi);
    if (!m) return DIFFCL_ERR_OUT_OF_MEMORY;
    /* registration order = mamba_ssm / Vision Mamba state-dict order */
    diffcl_status s = add_a_d(m, E, N, "A_log", "D");
    if (s == DIFFCL_OK && o.bidirectional) s = add_a_d(m, E, N, "A_b_log", "D_b");
    diffcl_module *c = NULL;
    if (s == DIFFCL_OK) s = diffcl_linear_create(ctx, o.d_model, (int)(2 * E), o.bias, subkey(o.init_key, 0), &c);
    if (s == DIFFCL_OK) s = dc_module_add_child(m, "in_proj", c);
    if (s == DIFFCL_OK) s = make_conv1d(ctx, &o, E, 1, &c);
    if (s == DIFFCL_OK) s = dc_module_add_child(m, "conv1d", c);
    if (s == DIFFCL_OK) s = diffcl_linear_create(ctx, (int)E, R + 2 * o.d_state, 0, subkey(o.init_key, 3), &c);
    if (s == DIFFCL_OK) s = dc_module_add_child(m, "x_proj", c);
    if (s == DIFFCL_OK) s = make_dt_proj(ctx, &o, E, 4, &c);
    if (s == DIFFCL_OK) s = dc_module_add_child(m, "dt_proj", c);
    if (s == DIFFCL_OK && o.bidirectional) {
        s = make_conv1d(ctx, &o, E, 8, &c);
        if (s == DIFFCL_OK) s = dc_module_add_child(m, "conv1d_b", c);
        if (s == DIFFCL_OK) s = diffcl_linear_create(ctx, (int)E, R + 2 * o.d_state, 0, subkey(o.init_key, 10), &c);
        if (s == DIFFCL_OK) s = dc_module_add_child(m, "x_proj_b", c);
        if (s == DIFFCL_OK) s = make_dt_proj(ctx, &o, E, 11, &c);
        if (s == DIFFCL_OK) s = dc_module_add_child(m, "dt_proj_b", c);
    }
    if (s == DIFFCL_OK) s = diffcl_linear_create(ctx, (int)E, o.d_model, o.bias, subkey(o.init_key, 7), &c);
    if (s == DIFFCL_OK) s = dc_module_add_child(m, "out_proj", c);
    if (s != DIFFCL_OK) {
        diffcl_module_free(m);
        dc_error_prefix("%s", fn);
        return s;
    }
    *out = m;
    return DIFFCL_OK;
}
