/* The Mamba-1 selective scan with a hand-written backward (reverse scan over chunk
 * checkpoints). The derivation is in docs/selective_scan_backward.md. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "diffcl/scan.h"
#include "tensor/tensor_internal.h"

typedef struct scan_args {
    int64_t Bn, Dn, L, N;
    int64_t chunk, nck;
    const void *u, *delta, *A, *Bt, *Ct, *D, *z, *bias;
    void *scratch; /* forward: per thread 2*L values */
    int softplus, reverse;
    int nt;
} scan_args;

typedef struct scan_grads {
    void *du, *ddelta, *dz, *dB, *dC;       /* outputs (dz, dB, dC may be NULL) */
    double *dA_part, *dD_part, *dbias_part; /* [B*D*N], [B*D], [B*D] */
    void *carry, *pb, *pc, *scratch;        /* workspace */
} scan_grads;

#include "layer/fast_math.h"

#if defined(__GNUC__) && !defined(__clang__)
#define DC_SCAN_KERNEL DC_VEC_MATH
/* for the kernels' reductions only, never around dc_expf (see fwd_outputs) */
#define DC_SCAN_ASSOC                                                                              \
    __attribute__((optimize("vect-cost-model=dynamic", "no-trapping-math", "associative-math",     \
                            "no-signed-zeros")))
#define DC_SCAN_ROW __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define DC_SCAN_KERNEL
#define DC_SCAN_ASSOC
#define DC_SCAN_ROW
#endif

DC_SCAN_KERNEL
static inline double dc_softplus(double x)
{
    return x > 20.0 ? x : log1p(exp(x));
}

/* The kernels, for float and double (they convert the void pointers above). */
#define T float
#define SFX f32
#define EXP dc_expf
#define SOFTPLUS dc_softplusf
#include "layer/selective_scan_kernels.inc"

#define T double
#define SFX f64
#define EXP exp
#define SOFTPLUS dc_softplus
#include "layer/selective_scan_kernels.inc"

void diffcl_scan_options_init(diffcl_scan_options *opts)
{
    if (!opts) return;
    diffcl_scan_options d = DIFFCL_SCAN_OPTIONS_INIT;
    *opts = d;
}

static int64_t auto_chunk(int64_t L, int chunk)
{
    if (chunk > 0) return chunk < L ? chunk : (L > 0 ? L : 1);
    /* about sqrt(L), at least 64 tokens so the one barrier per chunk stays cheap */
    int64_t c = (int64_t)ceil(sqrt((double)L));
    if (c < 64) c = 64;
    if (c > 256) c = 256;
    return c < L ? c : (L > 0 ? L : 1);
}

diffcl_status diffcl_selective_scan_memory(int64_t batch, int64_t channels, int64_t length,
                                           int64_t state, diffcl_dtype dtype, int chunk,
                                           size_t *saved_bytes, size_t *workspace_bytes)
{
    DC_CHECK_ARG(batch >= 0 && channels >= 0 && length >= 0 && state >= 0 && chunk >= 0,
                 "diffcl_selective_scan_memory: negative size");
    DC_CHECK_ARG(dc_is_float(dtype), "diffcl_selective_scan_memory: dtype %s is not f32/f64",
                 diffcl_dtype_name(dtype));
    size_t es = diffcl_dtype_size(dtype);
    int64_t c = auto_chunk(length, chunk), nck = length ? (length + c - 1) / c : 0;
    int64_t bd = batch * channels;
    if (saved_bytes) *saved_bytes = (size_t)(bd * nck * state) * es;
    if (workspace_bytes)
        *workspace_bytes =
            (size_t)(4 * bd * c * state + bd * state + 2 * batch * length * state) * es +
            (size_t)(bd * (state + 2)) * sizeof(double);
    return DIFFCL_OK;
}

/* A contiguous copy of a strided 3-D tensor (or t itself, retained, when contiguous), made
 * in parallel 32x32 tiles over the last two axes: the Mamba block hands u, delta, z, B, C in
 * as transposed views of token-major [B, L, *] tensors. */
static diffcl_tensor *contiguous3(const diffcl_tensor *t)
{
    if (t->ndim != 3 || dc_is_contiguous(t)) return dc_contiguous(t);
    diffcl_tensor *r = dc_tensor_empty(t->ctx, t->dtype, 3, t->shape);
    if (!r) return NULL;
    const int64_t n0 = t->shape[0], n1 = t->shape[1], n2 = t->shape[2];
    const int64_t s0 = t->strides[0], s1 = t->strides[1], s2 = t->strides[2];
    const int64_t TL = 32, b1 = (n1 + TL - 1) / TL, b2 = (n2 + TL - 1) / TL;
    const int f32 = t->dtype == DIFFCL_F32;
    const char *src = dc_data(t);
    char *dst = dc_data(r);
#pragma omp parallel for num_threads(dc_threads(t->ctx)) schedule(static) if (n0 * n1 * n2 > 65536)
    for (int64_t q = 0; q < n0 * b1 * b2; q++) {
        const int64_t a = q / (b1 * b2), i0 = (q / b2) % b1 * TL, j0 = q % b2 * TL;
        const int64_t i1 = i0 + TL < n1 ? i0 + TL : n1, j1 = j0 + TL < n2 ? j0 + TL : n2;
        for (int64_t i = i0; i < i1; i++)
            for (int64_t j = j0; j < j1; j++) {
                const int64_t from = a * s0 + i * s1 + j * s2, to = (a * n1 + i) * n2 + j;
                if (f32)
                    ((float *)dst)[to] = ((const float *)src)[from];
                else
                    ((double *)dst)[to] = ((const double *)src)[from];
            }
    }
    return r;
}

/* ---------------------------------------------------------------- state ---- */

enum { IN_U, IN_DELTA, IN_A, IN_B, IN_C, IN_D, IN_Z, IN_BIAS, N_IN };

typedef struct scan_state {
    diffcl_context *ctx;
    diffcl_tensor *t[N_IN]; /* detached contiguous aliases of the inputs (NULL if absent) */
    void *ckpt;
    size_t ckpt_bytes;
    int64_t Bn, Dn, L, N, chunk, nck;
    int softplus, reverse;
} scan_state;

static void scan_state_free(void *p)
{
    scan_state *s = p;
    if (!s) return;
    for (int k = 0; k < N_IN; k++) diffcl_tensor_free(s->t[k]);
    dc_free(s->ctx, s->ckpt, s->ckpt_bytes);
    free(s);
}

static void fill_args(scan_args *a, diffcl_tensor *const *t, const void *Bt, const void *Ct,
                      const scan_state *s, int nt)
{
    a->Bn = s->Bn;
    a->Dn = s->Dn;
    a->L = s->L;
    a->N = s->N;
    a->chunk = s->chunk;
    a->nck = s->nck;
    a->u = dc_data(t[IN_U]);
    a->delta = dc_data(t[IN_DELTA]);
    a->A = dc_data(t[IN_A]);
    a->Bt = Bt;
    a->Ct = Ct;
    a->D = t[IN_D] ? dc_data(t[IN_D]) : NULL;
    a->z = t[IN_Z] ? dc_data(t[IN_Z]) : NULL;
    a->bias = t[IN_BIAS] ? dc_data(t[IN_BIAS]) : NULL;
    a->softplus = s->softplus;
    a->reverse = s->reverse;
    a->nt = nt;
    a->scratch = NULL;
}

/* Bt/Ct = B/C transposed to [B, L, N] in one allocation; NULL on out-of-memory. */
static void *make_bc_t(diffcl_context *ctx, diffcl_dtype dt, const diffcl_tensor *B,
                       const diffcl_tensor *C, const scan_state *s, size_t *bytes)
{
    size_t one = (size_t)(s->Bn * s->L * s->N);
    *bytes = 2 * one * diffcl_dtype_size(dt);
    void *buf = dc_alloc(ctx, *bytes);
    if (!buf) return NULL;
    int nt = dc_threads(ctx);
    if (dt == DIFFCL_F32) {
        transpose_nl_f32(dc_f32(B), (float *)buf, s->Bn, s->N, s->L, nt);
        transpose_nl_f32(dc_f32(C), (float *)buf + one, s->Bn, s->N, s->L, nt);
    } else {
        transpose_nl_f64(dc_f64(B), (double *)buf, s->Bn, s->N, s->L, nt);
        transpose_nl_f64(dc_f64(C), (double *)buf + one, s->Bn, s->N, s->L, nt);
    }
    return buf;
}

/* ------------------------------------------------------------- backward ---- */

static void store(diffcl_tensor *t, int64_t i, double v)
{
    if (t->dtype == DIFFCL_F32)
        dc_f32(t)[i] = (float)v;
    else
        dc_f64(t)[i] = v;
}

/* dA, dD and dbias: the per-sample partial sums of the kernel (parts: dA [B,D,N], then dD and
 * dbias [B,D]) summed over the batch in order, so the result does not depend on threads. */
static diffcl_status reduce_param_grads(dc_node *node, const scan_state *s, diffcl_dtype dt,
                                        const double *parts, diffcl_tensor **gin)
{
    const int64_t Bn = s->Bn, Dn = s->Dn, N = s->N;
    const double *dA_part = parts, *dD_part = parts + Bn * Dn * N, *dbias_part = dD_part + Bn * Dn;
    int64_t sDN[2] = {Dn, N}, sD[1] = {Dn};
    int wa = dc_wants_grad(node, IN_A), wd = dc_wants_grad(node, IN_D),
        wb = dc_wants_grad(node, IN_BIAS);
    diffcl_tensor *dA = wa ? dc_tensor_empty(s->ctx, dt, 2, sDN) : NULL;
    diffcl_tensor *dD = wd ? dc_tensor_empty(s->ctx, dt, 1, sD) : NULL;
    diffcl_tensor *dbias = wb ? dc_tensor_empty(s->ctx, dt, 1, sD) : NULL;
    if ((wa && !dA) || (wd && !dD) || (wb && !dbias)) {
        diffcl_tensor_free(dA);
        diffcl_tensor_free(dD);
        diffcl_tensor_free(dbias);
        return DIFFCL_ERR_OUT_OF_MEMORY;
    }
    for (int64_t d = 0; d < Dn; d++) {
        for (int64_t n = 0; n < N && dA; n++) {
            double acc = 0;
            for (int64_t b = 0; b < Bn; b++) acc += dA_part[(b * Dn + d) * N + n];
            store(dA, d * N + n, acc);
        }
        double aD = 0, ab = 0;
        for (int64_t b = 0; b < Bn; b++) {
            aD += dD_part[b * Dn + d];
            ab += dbias_part[b * Dn + d];
        }
        if (dD) store(dD, d, aD);
        if (dbias) store(dbias, d, ab);
    }
    gin[IN_A] = dA;
    gin[IN_D] = dD;
    gin[IN_BIAS] = dbias;
    return DIFFCL_OK;
}

static diffcl_status scan_backward(dc_node *node, diffcl_tensor *g, diffcl_tensor **gin)
{
    scan_state *s = node->state;
    diffcl_context *ctx = s->ctx;
    diffcl_tensor **t = s->t;
    diffcl_dtype dt = t[IN_U]->dtype;
    size_t es = diffcl_dtype_size(dt);
    int nt = dc_threads(ctx);
    const int64_t Bn = s->Bn, Dn = s->Dn, L = s->L, N = s->N, chunk = s->chunk;
    diffcl_tensor *gc = dc_contiguous(g);
    if (!gc) return DIFFCL_ERR_OUT_OF_MEMORY;

    int64_t sBDL[3] = {Bn, Dn, L}, sBNL[3] = {Bn, N, L};
    int want_b = dc_wants_grad(node, IN_B), want_c = dc_wants_grad(node, IN_C);
    int have_z = t[IN_Z] != NULL;
    diffcl_tensor *du = dc_tensor_empty(ctx, dt, 3, sBDL),
                  *ddelta = dc_tensor_empty(ctx, dt, 3, sBDL);
    diffcl_tensor *dz = have_z ? dc_tensor_empty(ctx, dt, 3, sBDL) : NULL;
    diffcl_tensor *dB = want_b ? dc_tensor_empty(ctx, dt, 3, sBNL) : NULL;
    diffcl_tensor *dC = want_c ? dc_tensor_empty(ctx, dt, 3, sBNL) : NULL;
    size_t bc_bytes = 0;
    void *bct = make_bc_t(ctx, dt, t[IN_B], t[IN_C], s, &bc_bytes);
    size_t part_bytes = (size_t)(Bn * Dn * (N + 2)) * sizeof(double);
    double *parts = dc_calloc(ctx, part_bytes);
    size_t pbytes = (size_t)(Bn * Dn * chunk * N) * es;
    void *pb = dc_alloc(ctx, 2 * pbytes), *pc = dc_alloc(ctx, 2 * pbytes); /* two chunks each */
    size_t carry_bytes = (size_t)(Bn * Dn * N) * es;
    void *carry = dc_calloc(ctx, carry_bytes);
    size_t scratch_bytes = (size_t)nt * (size_t)(2 * chunk * N + 3 * chunk) * es;
    void *scratch = dc_alloc(ctx, scratch_bytes);
    diffcl_status st = DIFFCL_OK;
    if (!du || !ddelta || (have_z && !dz) || (want_b && !dB) || (want_c && !dC) || !bct || !parts ||
        !pb || !pc || !carry || !scratch) {
        st = dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "selective_scan backward: out of memory");
        goto done;
    }
    size_t one = (size_t)(Bn * L * N);
    double *dA_part = parts, *dD_part = parts + Bn * Dn * N, *dbias_part = dD_part + Bn * Dn;
    scan_args a;
    scan_grads gr = {dc_data(du),
                     dc_data(ddelta),
                     dz ? dc_data(dz) : NULL,
                     dB ? dc_data(dB) : NULL,
                     dC ? dc_data(dC) : NULL,
                     dA_part,
                     dD_part,
                     dbias_part,
                     carry,
                     pb,
                     pc,
                     scratch};
    if (dt == DIFFCL_F32) {
        fill_args(&a, t, bct, (float *)bct + one, s, nt);
        scan_backward_f32(&a, s->ckpt, dc_f32(gc), &gr);
    } else {
        fill_args(&a, t, bct, (double *)bct + one, s, nt);
        scan_backward_f64(&a, s->ckpt, dc_f64(gc), &gr);
    }

    st = reduce_param_grads(node, s, dt, parts, gin);
    if (st != DIFFCL_OK) goto done;
    if (dc_wants_grad(node, IN_U)) {
        gin[IN_U] = du;
        du = NULL;
    }
    if (dc_wants_grad(node, IN_DELTA)) {
        gin[IN_DELTA] = ddelta;
        ddelta = NULL;
    }
    if (have_z && dc_wants_grad(node, IN_Z)) {
        gin[IN_Z] = dz;
        dz = NULL;
    }
    gin[IN_B] = dB;
    gin[IN_C] = dC;
    dB = dC = NULL;
done:
    diffcl_tensor_free(du);
    diffcl_tensor_free(ddelta);
    diffcl_tensor_free(dz);
    diffcl_tensor_free(dB);
    diffcl_tensor_free(dC);
    diffcl_tensor_free(gc);
    dc_free(ctx, bct, bc_bytes);
    dc_free(ctx, parts, part_bytes);
    dc_free(ctx, pb, 2 * pbytes);
    dc_free(ctx, pc, 2 * pbytes);
    dc_free(ctx, carry, carry_bytes);
    dc_free(ctx, scratch, scratch_bytes);
    return st;
}

static const dc_op OP_SCAN = {"selective_scan", scan_backward, scan_state_free, 0};

/* -------------------------------------------------------------- forward ---- */

static diffcl_status check_shape(const diffcl_tensor *t, const char *what, int nd,
                                 const int64_t *want, diffcl_dtype dt, diffcl_context *ctx)
{
    const char *fn = "diffcl_selective_scan";
    if (t->dtype != dt)
        return dc_error(DIFFCL_ERR_DTYPE, "%s: %s is %s but u is %s", fn, what,
                        diffcl_dtype_name(t->dtype), diffcl_dtype_name(dt));
    if (t->ctx != ctx)
        return dc_error(DIFFCL_ERR_INVALID_ARGUMENT, "%s: %s belongs to another context", fn, what);
    int ok = t->ndim == nd;
    for (int i = 0; ok && i < nd; i++) ok = t->shape[i] == want[i];
    if (!ok) {
        char buf[96];
        int p = snprintf(buf, sizeof buf, "[");
        for (int i = 0; i < nd; i++)
            p += snprintf(buf + p, sizeof buf - (size_t)p, "%s%lld", i ? "," : "",
                          (long long)want[i]);
        snprintf(buf + p, sizeof buf - (size_t)p, "]");
        return dc_error(DIFFCL_ERR_SHAPE, "%s: %s has shape %s; expected %s", fn, what,
                        dc_shape_str(t), buf);
    }
    return DIFFCL_OK;
}

diffcl_status diffcl_selective_scan(const diffcl_tensor *u, const diffcl_tensor *delta,
                                    const diffcl_tensor *A, const diffcl_tensor *B,
                                    const diffcl_tensor *C, const diffcl_tensor *D,
                                    const diffcl_tensor *z, const diffcl_tensor *delta_bias,
                                    const diffcl_scan_options *opts, diffcl_tensor **out)
{
    const char *fn = "diffcl_selective_scan";
    DC_CHECK_ARG(out, "%s: out is NULL", fn);
    *out = NULL;
    DC_CHECK_ARG(u, "%s: u is NULL", fn);
    DC_CHECK_ARG(delta, "%s: delta is NULL", fn);
    DC_CHECK_ARG(A, "%s: A is NULL", fn);
    DC_CHECK_ARG(B, "%s: B is NULL", fn);
    DC_CHECK_ARG(C, "%s: C is NULL", fn);
    diffcl_scan_options o = DIFFCL_SCAN_OPTIONS_INIT;
    DC_TRY(dc_options_read(&o, sizeof o, opts, offsetof(diffcl_scan_options, reverse), 0, fn));
    DC_CHECK_ARG(o.chunk >= 0, "%s: chunk %d < 0", fn, o.chunk);
    if (!dc_is_float(u->dtype))
        return dc_error(DIFFCL_ERR_DTYPE, "%s: u is %s; need f32 or f64", fn,
                        diffcl_dtype_name(u->dtype));
    if (u->ndim != 3)
        return dc_error(DIFFCL_ERR_SHAPE, "%s: u has shape %s; expected [B,D,L]", fn,
                        dc_shape_str(u));
    if (A->ndim != 2)
        return dc_error(DIFFCL_ERR_SHAPE, "%s: A has shape %s; expected [D,N]", fn,
                        dc_shape_str(A));
    diffcl_context *ctx = u->ctx;
    diffcl_dtype dt = u->dtype;
    const int64_t Bn = u->shape[0], Dn = u->shape[1], L = u->shape[2], N = A->shape[1];
    int64_t sBDL[3] = {Bn, Dn, L}, sDN[2] = {Dn, N}, sBNL[3] = {Bn, N, L}, sD[1] = {Dn};
    DC_TRY(check_shape(delta, "delta", 3, sBDL, dt, ctx));
    DC_TRY(check_shape(A, "A", 2, sDN, dt, ctx));
    DC_TRY(check_shape(B, "B", 3, sBNL, dt, ctx));
    DC_TRY(check_shape(C, "C", 3, sBNL, dt, ctx));
    if (D) DC_TRY(check_shape(D, "D", 1, sD, dt, ctx));
    if (z) DC_TRY(check_shape(z, "z", 3, sBDL, dt, ctx));
    if (delta_bias) DC_TRY(check_shape(delta_bias, "delta_bias", 1, sD, dt, ctx));
    if (N > DIFFCL_SCAN_MAX_STATE)
        return dc_error(DIFFCL_ERR_UNSUPPORTED, "%s: state size N = %lld exceeds %d", fn,
                        (long long)N, DIFFCL_SCAN_MAX_STATE);

    diffcl_tensor *inputs[N_IN] = {(diffcl_tensor *)u, (diffcl_tensor *)delta,
                                   (diffcl_tensor *)A, (diffcl_tensor *)B,
                                   (diffcl_tensor *)C, (diffcl_tensor *)D,
                                   (diffcl_tensor *)z, (diffcl_tensor *)delta_bias};
    int record = ctx->grad_enabled && dc_any_requires_grad(inputs, N_IN);

    scan_state *s = dc_calloc_raw(1, sizeof *s);
    if (!s) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    s->ctx = ctx;
    s->Bn = Bn;
    s->Dn = Dn;
    s->L = L;
    s->N = N;
    s->chunk = auto_chunk(L, o.chunk);
    s->nck = L ? (L + s->chunk - 1) / s->chunk : 0;
    s->softplus = o.delta_softplus != 0;
    s->reverse = o.reverse != 0;
    diffcl_status st = DIFFCL_OK;
    for (int k = 0; k < N_IN; k++) {
        if (!inputs[k]) continue;
        diffcl_tensor *c = contiguous3(inputs[k]);
        s->t[k] = c ? dc_tensor_alias(c, c->ndim, c->shape, c->strides, c->offset) : NULL;
        diffcl_tensor_free(c);
        if (!s->t[k]) st = DIFFCL_ERR_OUT_OF_MEMORY;
    }
    diffcl_tensor *r = st == DIFFCL_OK ? dc_tensor_empty(ctx, dt, 3, sBDL) : NULL;
    size_t bc_bytes = 0;
    void *bct = r ? make_bc_t(ctx, dt, s->t[IN_B], s->t[IN_C], s, &bc_bytes) : NULL;
    int nt = dc_threads(ctx);
    size_t ws_bytes = (size_t)nt * (size_t)(2 * L) * diffcl_dtype_size(dt);
    void *ws = bct ? dc_alloc(ctx, ws_bytes) : NULL;
    if (ws && record && s->nck > 0) {
        s->ckpt_bytes = (size_t)(Bn * Dn * s->nck * N) * diffcl_dtype_size(dt);
        s->ckpt = dc_alloc(ctx, s->ckpt_bytes);
    }
    if (!r || !bct || !ws || (record && s->nck > 0 && !s->ckpt)) {
        diffcl_tensor_free(r);
        dc_free(ctx, bct, bc_bytes);
        dc_free(ctx, ws, ws_bytes);
        scan_state_free(s);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY,
                        "%s: out of memory for B=%lld D=%lld L=%lld N=%lld", fn, (long long)Bn,
                        (long long)Dn, (long long)L, (long long)N);
    }
    size_t one = (size_t)(Bn * L * N);
    if (Bn * Dn * L > 0) {
        scan_args a;
        if (dt == DIFFCL_F32) {
            fill_args(&a, s->t, bct, (float *)bct + one, s, nt);
            a.scratch = ws;
            scan_forward_f32(&a, dc_f32(r), record ? s->ckpt : NULL);
        } else {
            fill_args(&a, s->t, bct, (double *)bct + one, s, nt);
            a.scratch = ws;
            scan_forward_f64(&a, dc_f64(r), record ? s->ckpt : NULL);
        }
    }
    dc_free(ctx, bct, bc_bytes);
    dc_free(ctx, ws, ws_bytes);
    dc_node *node = record ? dc_record(r, &OP_SCAN, inputs, N_IN) : NULL;
    if (node)
        node->state = s;
    else
        scan_state_free(s);
    *out = r;
    return DIFFCL_OK;
}
