/* The Mamba block (mamba_ssm's Mamba, Vision Mamba's bidirectional "v2" variant). Its depthwise
 * causal convolution op is lib/layer/causal_conv1d.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "diffcl/layer.h"
#include "diffcl/mamba.h"
#include "diffcl/scan.h"
#include "layer/module_internal.h"

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

static void free_impl(void *p)
{
    free(p);
}

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
    diffcl_tensor *xc = NULL, *xs = NULL, *xdbl = NULL, *dt = NULL, *dtp = NULL, *Bv = NULL,
                  *Cv = NULL;
    diffcl_tensor *u = NULL, *delta = NULL, *Bp = NULL, *Cp = NULL, *Ae = NULL, *A = NULL;
    int perm[3] = {0, 2, 1};
    DC_STEP(diffcl_causal_conv1d(xin, dc_module_param(conv, "weight"),
                                 dc_module_param(conv, "bias"), 1, back, &xc));
    keep(tl, xc);
    DC_STEP(diffcl_silu(xc, &xs));
    keep(tl, xs);
    DC_STEP(
        diffcl_linear(xs, dc_module_param(xproj, "weight"), dc_module_param(xproj, "bias"), &xdbl));
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
    DC_STEP(
        diffcl_selective_scan(u, delta, A, Bp, Cp, D, z, dc_module_param(dtproj, "bias"), &so, y));
    return s;
}

static diffcl_status mamba_forward(diffcl_module *m, const diffcl_tensor *x, diffcl_tensor **out)
{
    const mamba_impl *mi = m->impl;
    const int64_t C = mi->o.d_model, E = mi->E;
    if (x->ndim != 3 || x->shape[2] != C)
        return dc_error(DIFFCL_ERR_SHAPE, "mamba: input %s; expected tokens [B, L, %lld]",
                        dc_shape_str(x), (long long)C);
    diffcl_module *inp = dc_module_get_child(m, "in_proj"),
                  *outp = dc_module_get_child(m, "out_proj");
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
    if (s == DIFFCL_OK)
        s = dc_module_add_param(c, "weight", w);
    else
        diffcl_tensor_free(w);
    if (s == DIFFCL_OK && o->conv_bias) {
        diffcl_tensor *b = new_param(ctx, 1, &E);
        s = b ? diffcl_tensor_fill_uniform(b, subkey(o->init_key, p + 1), -bound, bound)
              : DIFFCL_ERR_OUT_OF_MEMORY;
        if (s == DIFFCL_OK)
            s = dc_module_add_param(c, "bias", b);
        else
            diffcl_tensor_free(b);
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
    float *u = dc_malloc((size_t)E * sizeof *u), *bias = dc_malloc((size_t)E * sizeof *bias);
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
    DC_TRY(dc_options_read(&o, sizeof o, opts, offsetof(diffcl_mamba_options, init_key), 0, fn));
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
    mamba_impl *mi = dc_calloc_raw(1, sizeof *mi);
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
    if (s == DIFFCL_OK)
        s = diffcl_linear_create(ctx, o.d_model, (int)(2 * E), o.bias, subkey(o.init_key, 0), &c);
    if (s == DIFFCL_OK) s = dc_module_add_child(m, "in_proj", c);
    if (s == DIFFCL_OK) s = make_conv1d(ctx, &o, E, 1, &c);
    if (s == DIFFCL_OK) s = dc_module_add_child(m, "conv1d", c);
    if (s == DIFFCL_OK)
        s = diffcl_linear_create(ctx, (int)E, R + 2 * o.d_state, 0, subkey(o.init_key, 3), &c);
    if (s == DIFFCL_OK) s = dc_module_add_child(m, "x_proj", c);
    if (s == DIFFCL_OK) s = make_dt_proj(ctx, &o, E, 4, &c);
    if (s == DIFFCL_OK) s = dc_module_add_child(m, "dt_proj", c);
    if (s == DIFFCL_OK && o.bidirectional) {
        s = make_conv1d(ctx, &o, E, 8, &c);
        if (s == DIFFCL_OK) s = dc_module_add_child(m, "conv1d_b", c);
        if (s == DIFFCL_OK)
            s = diffcl_linear_create(ctx, (int)E, R + 2 * o.d_state, 0, subkey(o.init_key, 10), &c);
        if (s == DIFFCL_OK) s = dc_module_add_child(m, "x_proj_b", c);
        if (s == DIFFCL_OK) s = make_dt_proj(ctx, &o, E, 11, &c);
        if (s == DIFFCL_OK) s = dc_module_add_child(m, "dt_proj_b", c);
    }
    if (s == DIFFCL_OK)
        s = diffcl_linear_create(ctx, (int)E, o.d_model, o.bias, subkey(o.init_key, 7), &c);
    if (s == DIFFCL_OK) s = dc_module_add_child(m, "out_proj", c);
    if (s != DIFFCL_OK) {
        diffcl_module_free(m);
        dc_error_prefix("%s", fn);
        return s;
    }
    *out = m;
    return DIFFCL_OK;
}
