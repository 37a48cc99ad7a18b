/* Prototype InfoNCE: for each used voxel, cross-entropy over the cosine similarities of its
 * feature vector to the class prototypes, divided by the temperature. Gradients to the
 * features (through the L2 normalisation) and, optionally, to the prototypes. Computed in
 * double for both F32 and F64 inputs (the work is K x F x C, small next to the networks). */
#include <stdlib.h>

#include "loss/loss_internal.h"

#define PC_BLOCK 2048     /* voxels per partial sum */
#define PC_NORM_EPS 1e-12 /* F.normalize */

void diffcl_proto_contrast_options_init(diffcl_proto_contrast_options *opts)
{
    if (!opts) return;
    diffcl_proto_contrast_options d = DIFFCL_PROTO_CONTRAST_OPTIONS_INIT;
    *opts = d;
}

typedef struct pc_state {
    int64_t N, F, S, C, K;
    int indexed; /* voxels came from an index list (may repeat) */
    double tau, inv_den;
    int64_t *vox;     /* [K] flat voxel index n*S + s */
    int32_t *cls;     /* [K] target class */
    double *w;        /* [K] weight, or NULL (all 1) */
    double *v;        /* [C*F] normalised prototypes */
    double *pn;       /* [C] prototype norms */
    diffcl_tensor *f; /* contiguous features (detached alias) */
} pc_state;

static void pc_state_free(void *p)
{
    pc_state *st = p;
    if (!st) return;
    free(st->vox);
    free(st->cls);
    free(st->w);
    free(st->v);
    free(st->pn);
    diffcl_tensor_free(st->f);
    free(st);
}

/* Feature of voxel k, normalised: u[F]; returns |f|. */
static double pc_gather(const pc_state *st, int64_t k, double *u)
{
    const int64_t i = st->vox[k], S = st->S, n = i / S, s = i - n * S;
    double r2 = 0;
    if (st->f->dtype == DIFFCL_F32) {
        const float *x = dc_f32(st->f) + n * st->F * S + s;
        for (int64_t f = 0; f < st->F; f++) u[f] = x[f * S];
    } else {
        const double *x = dc_f64(st->f) + n * st->F * S + s;
        for (int64_t f = 0; f < st->F; f++) u[f] = x[f * S];
    }
    for (int64_t f = 0; f < st->F; f++) r2 += u[f] * u[f];
    double r = sqrt(r2), inv = 1.0 / fmax(r, PC_NORM_EPS);
    for (int64_t f = 0; f < st->F; f++) u[f] *= inv;
    return r;
}

/* Scaled similarities s[C] = u . v_c / tau and the softmax q[C]; returns -log q[y]. */
static double pc_logits(const pc_state *st, const double *u, int32_t y, double *q)
{
    double mx = -INFINITY;
    for (int64_t c = 0; c < st->C; c++) {
        const double *vc = st->v + c * st->F;
        double d = 0;
        for (int64_t f = 0; f < st->F; f++) d += u[f] * vc[f];
        q[c] = d / st->tau;
        if (q[c] > mx) mx = q[c];
    }
    double sum = 0;
    for (int64_t c = 0; c < st->C; c++) sum += exp(q[c] - mx);
    double lse = mx + log(sum), nll = lse - q[y];
    for (int64_t c = 0; c < st->C; c++) q[c] = exp(q[c] - lse);
    return nll;
}

/* d(x / max(|x|, eps)) applied to an upstream g: (g - u (u.g)) / |x|, or g / eps. */
static void pc_norm_backward(const double *u, double r, int64_t F, const double *g, double *dx)
{
    if (r > PC_NORM_EPS) {
        double dot = 0;
        for (int64_t f = 0; f < F; f++) dot += u[f] * g[f];
        for (int64_t f = 0; f < F; f++) dx[f] = (g[f] - u[f] * dot) / r;
    } else {
        for (int64_t f = 0; f < F; f++) dx[f] = g[f] / PC_NORM_EPS;
    }
}

static diffcl_status pc_backward(dc_node *n, diffcl_tensor *g, diffcl_tensor **gin)
{
    const pc_state *st = n->state;
    const int want_f = dc_wants_grad(n, 0), want_p = dc_wants_grad(n, 1);
    const diffcl_tensor *fin = n->inputs[0], *pin = n->inputs[1];
    const int64_t F = st->F, C = st->C, K = st->K;
    const int64_t nb = (K + PC_BLOCK - 1) / PC_BLOCK;
    diffcl_tensor *df = want_f ? dc_tensor_new(fin->ctx, fin->dtype, fin->ndim, fin->shape) : NULL;
    diffcl_tensor *dp = want_p ? dc_tensor_new(pin->ctx, pin->dtype, pin->ndim, pin->shape) : NULL;
    double *dfbuf =
        want_f && st->indexed ? dc_malloc((size_t)(K ? K : 1) * (size_t)F * sizeof(double)) : NULL;
    double *dvpart =
        want_p ? dc_calloc_raw((size_t)(nb ? nb : 1) * (size_t)(C * F), sizeof(double)) : NULL;
    int fail = (want_f && (!df || (st->indexed && !dfbuf))) || (want_p && (!dp || !dvpart));
    const double gs = dc_loss_gval(g) * st->inv_den;
    const int df32 = fin->dtype == DIFFCL_F32;
    int nt = dc_threads(fin->ctx);
    if (!fail && K > 0 && gs != 0) {
#pragma omp parallel num_threads(nt) if (nb > 1)
        {
            double *buf = dc_malloc((size_t)(3 * F + C) * sizeof(double));
            if (!buf) {
#pragma omp atomic write
                fail = 1;
            }
#pragma omp for schedule(static)
            for (int64_t b = 0; b < nb; b++) {
                if (!buf) continue;
                double *u = buf, *du = buf + F, *dfk = buf + 2 * F, *q = buf + 3 * F;
                double *dv = dvpart ? dvpart + b * C * F : NULL;
                int64_t e = (b + 1) * PC_BLOCK < K ? (b + 1) * PC_BLOCK : K;
                for (int64_t k = b * PC_BLOCK; k < e; k++) {
                    double r = pc_gather(st, k, u);
                    pc_logits(st, u, st->cls[k], q);
                    double scale = gs * (st->w ? st->w[k] : 1.0) / st->tau;
                    q[st->cls[k]] -= 1.0; /* dL/ds_c * tau / scale */
                    for (int64_t f = 0; f < F; f++) du[f] = 0;
                    for (int64_t c = 0; c < C; c++) {
                        double a = q[c] * scale;
                        const double *vc = st->v + c * F;
                        for (int64_t f = 0; f < F; f++) du[f] += a * vc[f];
                        if (dv)
                            for (int64_t f = 0; f < F; f++) dv[c * F + f] += a * u[f];
                    }
                    if (!want_f) continue;
                    pc_norm_backward(u, r, F, du, dfk);
                    if (st->indexed) {
                        memcpy(dfbuf + k * F, dfk, (size_t)F * sizeof(double));
                    } else { /* each voxel at most once: write in place */
                        int64_t i = st->vox[k], nn = i / st->S, s = i % st->S;
                        for (int64_t f = 0; f < F; f++) {
                            int64_t off = (nn * F + f) * st->S + s;
                            if (df32)
                                dc_f32(df)[off] = (float)dfk[f];
                            else
                                dc_f64(df)[off] = dfk[f];
                        }
                    }
                }
            }
            free(buf);
        }
        if (!fail && want_f && st->indexed) /* serial scatter-add: indices may repeat */
            for (int64_t k = 0; k < K; k++) {
                int64_t i = st->vox[k], nn = i / st->S, s = i % st->S;
                for (int64_t f = 0; f < F; f++) {
                    int64_t off = (nn * F + f) * st->S + s;
                    if (df32)
                        dc_f32(df)[off] += (float)dfbuf[k * F + f];
                    else
                        dc_f64(df)[off] += dfbuf[k * F + f];
                }
            }
        if (!fail && want_p) {
            double *dv = dc_malloc((size_t)(C * F) * sizeof(double)),
                   *dpc = dc_malloc((size_t)F * sizeof(double));
            if (!dv || !dpc) fail = 1;
            for (int64_t j = 0; !fail && j < C * F; j++) {
                double acc = 0;
                for (int64_t b = 0; b < nb; b++) acc += dvpart[b * C * F + j];
                dv[j] = acc;
            }
            for (int64_t c = 0; !fail && c < C; c++) {
                pc_norm_backward(st->v + c * F, st->pn[c], F, dv + c * F, dpc);
                for (int64_t f = 0; f < F; f++) {
                    int64_t off = c * F + f; /* dp is new and contiguous */
                    if (pin->dtype == DIFFCL_F32)
                        dc_f32(dp)[off] = (float)dpc[f];
                    else
                        dc_f64(dp)[off] = dpc[f];
                }
            }
            free(dv);
            free(dpc);
        }
    }
    free(dfbuf);
    free(dvpart);
    if (fail) {
        diffcl_tensor_free(df);
        diffcl_tensor_free(dp);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "proto_contrast backward: out of memory");
    }
    gin[0] = df;
    gin[1] = dp;
    return DIFFCL_OK;
}
static const dc_op OP_PC = {"proto_contrast", pc_backward, pc_state_free, 0};

/* The used voxels: from the index list (or all), with a label (not ignored, weight != 0). */
static diffcl_status pc_select(const char *fn, pc_state *st, const diffcl_tensor *idx,
                               const int32_t *y, const double *wv)
{
    const int64_t nvox = st->N * st->S;
    int64_t K = 0;
    if (idx) {
        if (idx->dtype != DIFFCL_I32 && idx->dtype != DIFFCL_I64)
            return dc_error(DIFFCL_ERR_DTYPE, "%s: indices are %s; need i32 or i64", fn,
                            diffcl_dtype_name(idx->dtype));
        if (idx->ndim != 1)
            return dc_error(DIFFCL_ERR_SHAPE, "%s: indices have shape %s; need [K]", fn,
                            dc_shape_str(idx));
        int64_t n = idx->shape[0];
        st->vox = dc_malloc((size_t)(n ? n : 1) * sizeof *st->vox);
        if (!st->vox) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
        const char *base = dc_data(idx);
        for (int64_t k = 0; k < n; k++) {
            const char *p = base + k * idx->strides[0] * (int64_t)diffcl_dtype_size(idx->dtype);
            int64_t i = idx->dtype == DIFFCL_I32 ? *(const int32_t *)p : *(const int64_t *)p;
            if (i < 0 || i >= nvox)
                return dc_error(DIFFCL_ERR_INVALID_ARGUMENT,
                                "%s: index %lld is %lld, outside the "
                                "%lld voxels",
                                fn, (long long)k, (long long)i, (long long)nvox);
            if (y[i] >= 0) st->vox[K++] = i;
        }
        st->indexed = 1;
    } else {
        for (int64_t i = 0; i < nvox; i++) K += y[i] >= 0;
        st->vox = dc_malloc((size_t)(K ? K : 1) * sizeof *st->vox);
        if (!st->vox) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
        K = 0;
        for (int64_t i = 0; i < nvox; i++)
            if (y[i] >= 0) st->vox[K++] = i;
    }
    st->K = K;
    st->cls = dc_malloc((size_t)(K ? K : 1) * sizeof *st->cls);
    if (wv) st->w = dc_malloc((size_t)(K ? K : 1) * sizeof *st->w);
    if (!st->cls || (wv && !st->w))
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    for (int64_t k = 0; k < K; k++) {
        st->cls[k] = y[st->vox[k]];
        if (wv) st->w[k] = wv[st->vox[k]];
    }
    return DIFFCL_OK;
}

/* Shapes, dtypes and contexts of the inputs; N, F, S of the features [N, F, spatial]. */
static diffcl_status pc_check(const char *fn, const diffcl_tensor *features,
                              const diffcl_tensor *prototypes, const diffcl_tensor *target,
                              int64_t *N, int64_t *F, int64_t *S)
{
    DC_TRY(dc_loss_split(fn, features, "features", target, "target", N, F, S));
    if (prototypes->dtype != features->dtype)
        return dc_error(DIFFCL_ERR_DTYPE, "%s: prototypes are %s, features %s; need the same dtype",
                        fn, diffcl_dtype_name(prototypes->dtype),
                        diffcl_dtype_name(features->dtype));
    if (prototypes->ndim != 2 || prototypes->shape[1] != *F || prototypes->shape[0] < 1)
        return dc_error(DIFFCL_ERR_SHAPE, "%s: prototypes have shape %s; need [C,%lld] with C >= 1",
                        fn, dc_shape_str(prototypes), (long long)*F);
    if (prototypes->ctx != features->ctx)
        return dc_error(DIFFCL_ERR_INVALID_ARGUMENT, "%s: tensors belong to different contexts",
                        fn);
    return DIFFCL_OK;
}

/* The state of one call: the voxels taken (pc_select), the features, and the prototypes
 * L2-normalised in double (st->v) with their norms (st->pn) for the backward. */
static diffcl_status pc_prepare(const char *fn, pc_state *st, const diffcl_tensor *features,
                                const diffcl_tensor *prototypes, const diffcl_tensor *target,
                                const diffcl_proto_contrast_options *o)
{
    diffcl_context *ctx = features->ctx;
    diffcl_tensor *wt = NULL, *y = NULL;
    diffcl_status s = dc_loss_weights(fn, o->voxel_weight, target, DIFFCL_F64, &wt);
    if (s == DIFFCL_OK)
        s = dc_loss_labels(fn, target, st->C, o->ignore_index, wt, dc_threads(ctx), &y);
    if (s == DIFFCL_OK)
        s = pc_select(fn, st, o->indices, (const int32_t *)dc_data(y), wt ? dc_f64(wt) : NULL);
    diffcl_tensor_free(wt);
    diffcl_tensor_free(y);
    if (s != DIFFCL_OK) return s;
    diffcl_tensor *fc = dc_contiguous(features);
    if (fc) st->f = dc_tensor_alias(fc, fc->ndim, fc->shape, fc->strides, fc->offset);
    diffcl_tensor_free(fc);
    const int64_t C = st->C, F = st->F;
    st->v = dc_malloc((size_t)(C * F > 0 ? C * F : 1) * sizeof *st->v);
    st->pn = dc_malloc((size_t)C * sizeof *st->pn);
    if (!st->f || !st->v || !st->pn)
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    for (int64_t c = 0; c < C; c++) {
        double r2 = 0, *vc = st->v + c * F;
        for (int64_t f = 0; f < F; f++) {
            int64_t off = c * prototypes->strides[0] + f * prototypes->strides[1];
            vc[f] = prototypes->dtype == DIFFCL_F32 ? (double)dc_f32(prototypes)[off]
                                                    : dc_f64(prototypes)[off];
            r2 += vc[f] * vc[f];
        }
        st->pn[c] = sqrt(r2);
        double inv = 1.0 / fmax(st->pn[c], PC_NORM_EPS);
        for (int64_t f = 0; f < F; f++) vc[f] *= inv;
    }
    return DIFFCL_OK;
}

/* The weighted sum of the voxels' InfoNCE terms and of their weights, in blocks of PC_BLOCK
 * voxels summed in order (the result does not depend on the thread count). 0, or 1 when out
 * of memory. */
static int pc_sum(const pc_state *st, int nt, double *num_out, double *den_out)
{
    const int64_t K = st->K, F = st->F, C = st->C, nb = (K + PC_BLOCK - 1) / PC_BLOCK;
    double *partial = dc_calloc_raw((size_t)(nb ? nb : 1) * 2, sizeof *partial);
    int fail = !partial;
    if (!fail && K > 0) {
#pragma omp parallel num_threads(nt) if (nb > 1)
        {
            double *buf = dc_malloc((size_t)(F + C) * sizeof(double));
            if (!buf) {
#pragma omp atomic write
                fail = 1;
            }
#pragma omp for schedule(static)
            for (int64_t b = 0; b < nb; b++) {
                if (!buf) continue;
                double num = 0, den = 0;
                int64_t e = (b + 1) * PC_BLOCK < K ? (b + 1) * PC_BLOCK : K;
                for (int64_t k = b * PC_BLOCK; k < e; k++) {
                    pc_gather(st, k, buf);
                    double nll = pc_logits(st, buf, st->cls[k], buf + F);
                    double w = st->w ? st->w[k] : 1.0;
                    num += w * nll;
                    den += w;
                }
                partial[2 * b] = num;
                partial[2 * b + 1] = den;
            }
            free(buf);
        }
    }
    double num = 0, den = 0;
    for (int64_t b = 0; !fail && b < nb; b++) {
        num += partial[2 * b];
        den += partial[2 * b + 1];
    }
    free(partial);
    *num_out = num;
    *den_out = den;
    return fail;
}

diffcl_status diffcl_proto_contrast_loss(const diffcl_tensor *features,
                                         const diffcl_tensor *prototypes,
                                         const diffcl_tensor *target,
                                         const diffcl_proto_contrast_options *opts,
                                         diffcl_tensor **out)
{
    static const char *fn = "diffcl_proto_contrast_loss";
    DC_CHECK_ARG(out, "%s: out is NULL", fn);
    *out = NULL;
    DC_CHECK_TENSOR(prototypes, fn);
    DC_CHECK_TENSOR(target, fn);
    diffcl_proto_contrast_options o;
    DC_LOSS_OPTS(o, opts, DIFFCL_PROTO_CONTRAST_OPTIONS_INIT);
    if (!(o.temperature > 0) || !isfinite(o.temperature))
        return dc_error(DIFFCL_ERR_INVALID_ARGUMENT,
                        "%s: temperature is %g; need a finite value > 0", fn, o.temperature);
    int64_t N, F, S;
    DC_TRY(pc_check(fn, features, prototypes, target, &N, &F, &S));
    pc_state *st = dc_calloc_raw(1, sizeof *st);
    if (!st) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    st->N = N;
    st->F = F;
    st->S = S;
    st->C = prototypes->shape[0];
    st->tau = o.temperature;
    double num = 0, den = 0;
    diffcl_status s = pc_prepare(fn, st, features, prototypes, target, &o);
    if (s == DIFFCL_OK && pc_sum(st, dc_threads(features->ctx), &num, &den))
        s = dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    double loss = den > 0 ? num / den : 0.0;
    if (s == DIFFCL_OK && !isfinite(loss))
        s = dc_error(DIFFCL_ERR_NUMERIC, "%s: the loss is %g: features or prototypes hold NaN/Inf",
                     fn, loss);
    diffcl_tensor *r = s == DIFFCL_OK ? dc_loss_scalar(features->ctx, features->dtype, loss) : NULL;
    if (s == DIFFCL_OK && !r) s = DIFFCL_ERR_OUT_OF_MEMORY;
    if (s != DIFFCL_OK) {
        pc_state_free(st);
        return s;
    }
    st->inv_den = den > 0 ? 1.0 / den : 0.0;
    diffcl_tensor *in[2] = {(diffcl_tensor *)features, (diffcl_tensor *)prototypes};
    dc_node *node = dc_record(r, &OP_PC, in, 2);
    if (node)
        node->state = st;
    else
        pc_state_free(st);
    *out = r;
    return DIFFCL_OK;
}
