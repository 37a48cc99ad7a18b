/* Dropout (elementwise) and channel dropout (Dropout2d/3d: one draw per [n, c]), with
 * backward, and the dropout module with its (seed, stream, step, call) keys.
 *
 * Mask unit i (element i, or channel n*C + c) is kept iff draw i of the key, a uniform
 * in [0, 1), is >= p; kept values are scaled by 1/(1 - p). Draw i is a pure function of
 * (key, i), so the mask does not depend on the thread count. With sample indices
 * (dc_module_set_samples: a rank's shard of a global batch, docs/distributed.md) unit j of
 * row n, which has U units, takes draw samples[n] * U + j: the draws of global sample g
 * whatever rank and row it lands on, and the same draws as without indices when
 * samples[n] = n. */
#include <stdlib.h>

#include "layer/nn_internal.h"

#define DROP_CHUNK 4096 /* draws per work item */

/* mask[i] = draw d(i) of key >= p, for i in [0, units), where d(i) = i, or with @p samples
 * (rows of @p per_row units) d(n * per_row + j) = samples[n] * per_row + j. */
static void make_mask(diffcl_rng_key key, double p, int64_t units, int64_t per_row,
                      const uint32_t *samples, uint8_t *mask, int nt)
{
    int64_t nchunks = (units + DROP_CHUNK - 1) / DROP_CHUNK;
    const float pf = (float)p;
#pragma omp parallel for num_threads(nt) schedule(static) if (units > DC_NN_PAR_MIN)
    for (int64_t k = 0; k < nchunks; k++) {
        float u[DROP_CHUNK];
        int64_t i0 = k * DROP_CHUNK, len = units - i0 < DROP_CHUNK ? units - i0 : DROP_CHUNK;
        /* runs of consecutive draws: the whole chunk, or the part of one row in it */
        for (int64_t a = 0; a < len;) {
            int64_t i = i0 + a, run = len - a;
            uint64_t d = (uint64_t)i;
            if (samples) {
                int64_t n = i / per_row, j = i % per_row;
                if (per_row - j < run) run = per_row - j;
                d = (uint64_t)samples[n] * (uint64_t)per_row + (uint64_t)j;
            }
            diffcl_rng_uniform(key, d, (size_t)run, 0.0f, 1.0f, u + a);
            a += run;
        }
        for (int64_t j = 0; j < len; j++) mask[i0 + j] = (uint8_t)(u[j] >= pf);
    }
}

/* out[r, j] = in[r, j] * mask[r] * scale over `units` rows of `len` elements */
/* A _Pragma in a macro is not a statement to clang-format: keep the layout. */
/* clang-format off */
#define DROP_APPLY(T, in, mask, out, units, len, scale, nt)                                   \
    do {                                                                                      \
        const T *pi_ = (const T *)(in);                                                       \
        T *po_ = (T *)(out);                                                                  \
        const T sc_ = (T)(scale);                                                             \
        int64_t u_ = (units), l_ = (len);                                                     \
        _Pragma("omp parallel for num_threads(nt) schedule(static) if(u_ * l_ > DC_NN_PAR_MIN)") \
        for (int64_t r = 0; r < u_; r++) {                                                    \
            const T k_ = (mask)[r] ? sc_ : (T)0;                                              \
            for (int64_t j = 0; j < l_; j++) po_[r * l_ + j] = pi_[r * l_ + j] * k_;          \
        }                                                                                     \
    } while (0)
/* clang-format on */

static void drop_apply(const diffcl_tensor *in, const uint8_t *mask, diffcl_tensor *out,
                       int64_t units, int64_t len, double scale)
{
    int nt = dc_threads(in->ctx);
    if (in->dtype == DIFFCL_F32)
        DROP_APPLY(float, dc_data(in), mask, dc_data(out), units, len, scale, nt);
    else
        DROP_APPLY(double, dc_data(in), mask, dc_data(out), units, len, scale, nt);
}

/* saved[0] = U8 mask [units]; i[0] = units, i[1] = len; f[0] = scale */
static diffcl_status dropout_backward(dc_node *nd, diffcl_tensor *g, diffcl_tensor **gin)
{
    if (!dc_wants_grad(nd, 0)) return DIFFCL_OK;
    diffcl_tensor *gc = dc_contiguous(g);
    diffcl_tensor *gx = gc ? dc_tensor_empty_like(gc) : NULL;
    if (!gx) {
        diffcl_tensor_free(gc);
        return DIFFCL_ERR_OUT_OF_MEMORY;
    }
    drop_apply(gc, (const uint8_t *)dc_data(nd->saved[0]), gx, nd->i[0], nd->i[1], nd->f[0]);
    diffcl_tensor_free(gc);
    gin[0] = gx;
    return DIFFCL_OK;
}
static const dc_op OP_DROPOUT = {"dropout", dropout_backward, NULL, 0x1};

/* diffcl_dropout with row n keyed as sample samples[n] (NULL: n), reported to the context's
 * draw hook. */
static diffcl_status dropout_rows(const diffcl_tensor *x, double p, int channelwise, int training,
                                  diffcl_rng_key key, const uint32_t *samples, diffcl_tensor **out)
{
    static const char *fn = "diffcl_dropout";
    DC_CHECK_ARG(out, "%s: out is NULL", fn);
    *out = NULL;
    DC_TRY(dc_nn_check_float(x, fn, "input"));
    DC_CHECK_ARG(p >= 0 && p <= 1, "%s: probability %g not in [0, 1]", fn, p);
    if (channelwise && x->ndim < 2)
        return dc_error(DIFFCL_ERR_SHAPE, "%s: channel dropout needs [N,C,...], got %s", fn,
                        dc_shape_str(x));
    if (!training || p == 0) {
        *out = diffcl_tensor_retain((diffcl_tensor *)x);
        return DIFFCL_OK;
    }
    int64_t units, len;
    int64_t mshape[DIFFCL_MAX_DIMS];
    int mnd;
    if (channelwise) {
        units = x->shape[0] * x->shape[1];
        len = dc_nn_inner(x, 2);
        mnd = 2;
        mshape[0] = x->shape[0];
        mshape[1] = x->shape[1];
    } else {
        units = dc_numel(x);
        len = 1;
        mnd = x->ndim;
        for (int i = 0; i < x->ndim; i++) mshape[i] = x->shape[i];
    }
    double scale = p >= 1 ? 0.0 : 1.0 / (1.0 - p);
    diffcl_tensor *xc = dc_contiguous(x);
    diffcl_tensor *mask = xc ? dc_tensor_empty(x->ctx, DIFFCL_U8, mnd, mshape) : NULL;
    diffcl_tensor *y = mask ? dc_tensor_empty(x->ctx, x->dtype, x->ndim, x->shape) : NULL;
    if (!y) {
        diffcl_tensor_free(xc);
        diffcl_tensor_free(mask);
        return DIFFCL_ERR_OUT_OF_MEMORY;
    }
    int64_t rows = x->ndim ? x->shape[0] : 1, per_row = rows > 0 ? units / rows : 0;
    make_mask(key, p, units, per_row, samples, (uint8_t *)dc_data(mask), dc_threads(x->ctx));
    if (x->ctx->draw_trace)
        for (int64_t n = 0; n < rows; n++)
            dc_draw_report(x->ctx, DC_DRAW_DROPOUT, key.stream, samples ? samples[n] : (uint32_t)n,
                           key.iteration, (const uint8_t *)dc_data(mask) + n * per_row,
                           (size_t)per_row);
    drop_apply(xc, (const uint8_t *)dc_data(mask), y, units, len, scale);
    diffcl_tensor *in = (diffcl_tensor *)x;
    dc_node *nd = dc_record(y, &OP_DROPOUT, &in, 1);
    if (nd) {
        nd->i[0] = units;
        nd->i[1] = len;
        nd->f[0] = scale;
        dc_node_save(nd, mask);
    }
    diffcl_tensor_free(mask);
    diffcl_tensor_free(xc);
    *out = y;
    return DIFFCL_OK;
}

diffcl_status diffcl_dropout(const diffcl_tensor *x, double p, int channelwise, int training,
                             diffcl_rng_key key, diffcl_tensor **out)
{
    return dropout_rows(x, p, channelwise, training, key, NULL, out);
}

/* ------------------------------------------------------------------ module ---- */

typedef struct dropout_impl {
    double p;
    int channelwise;
    uint64_t seed;
    uint32_t stream;
} dropout_impl;

/* Training forward number k since diffcl_module_set_step(step) draws with the key
 * (seed, stream, index = step, iteration = k), row n as sample m->samples[n] when the module
 * has sample indices (dc_module_set_samples). Evaluation is the identity and draws nothing
 * (k does not advance). */
static diffcl_status dropout_forward(diffcl_module *m, const diffcl_tensor *x, diffcl_tensor **out)
{
    const dropout_impl *d = m->impl;
    diffcl_rng_key key = diffcl_rng_key_make(d->seed, d->stream, m->step, m->calls);
    int active = m->training && d->p > 0;
    if (active && m->samples && (!x || x->ndim < 1 || x->shape[0] != m->n_samples)) {
        if (out) *out = NULL;
        return dc_error(DIFFCL_ERR_SHAPE,
                        "dropout: a batch of %lld rows, but sample indices for %lld were set",
                        x && x->ndim ? (long long)x->shape[0] : 0LL, (long long)m->n_samples);
    }
    diffcl_status s =
        dropout_rows(x, d->p, d->channelwise, active, key, active ? m->samples : NULL, out);
    if (s == DIFFCL_OK && active) m->calls++;
    return s;
}

static const dc_module_vtable DROPOUT_VT = {"dropout", dropout_forward, free};
static const dc_module_vtable DROPOUT_CH_VT = {"dropout_channel", dropout_forward, free};

diffcl_status diffcl_dropout_create(diffcl_context *ctx, double p, int channelwise, uint64_t seed,
                                    uint32_t stream, diffcl_module **out)
{
    DC_CHECK_ARG(out, "diffcl_dropout_create: out is NULL");
    *out = NULL;
    DC_CHECK_ARG(ctx, "diffcl_dropout_create: ctx is NULL");
    DC_CHECK_ARG(p >= 0 && p <= 1, "diffcl_dropout_create: probability %g not in [0, 1]", p);
    dropout_impl *d = dc_malloc(sizeof *d);
    if (!d) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "diffcl_dropout_create: out of memory");
    d->p = p;
    d->channelwise = channelwise != 0;
    d->seed = seed;
    d->stream = stream;
    diffcl_module *m = dc_module_new(ctx, channelwise ? &DROPOUT_CH_VT : &DROPOUT_VT, d);
    if (!m) return DIFFCL_ERR_OUT_OF_MEMORY;
    *out = m;
    return DIFFCL_OK;
}
