/* Normalisation modules with PyTorch's parameter and buffer names:
 *   BatchNorm{1,2,3}d  weight, bias (affine); running_mean, running_var (F32 [C]) and
 *                      num_batches_tracked (I64, 0-d) when track_running_stats
 *   InstanceNorm{1,2,3}d  the same entries, by the same options. PyTorch's defaults are
 *                      affine = 0 and track_running_stats = 0 (no entries at all); the
 *                      option struct's defaults are BatchNorm's, so set both to 0 for them.
 *   GroupNorm          weight, bias (affine)
 *   LayerNorm          weight, bias (affine), over the last axis of size `channels`
 *   NONE               an identity module without entries
 * The forward uses the module's training flag as PyTorch does: batch norm uses batch
 * statistics in training or when it tracks no running statistics, and then updates the
 * running statistics and increments num_batches_tracked (training only). */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>

#include "layer/nn_internal.h"

typedef struct norm_impl {
    diffcl_norm_options o;
} norm_impl;

void diffcl_norm_options_init(diffcl_norm_options *opts)
{
    if (!opts) return;
    diffcl_norm_options d = DIFFCL_NORM_OPTIONS_INIT;
    *opts = d;
}

static diffcl_status check_channels(const diffcl_module *m, const diffcl_tensor *x, int axis)
{
    const norm_impl *n = m->impl;
    if (!x) return dc_error(DIFFCL_ERR_INVALID_ARGUMENT, "%s: input is NULL", m->vt->type);
    int need = axis < 0 ? 1 : 2;
    if (x->ndim < need)
        return dc_error(DIFFCL_ERR_SHAPE, "%s: input has shape %s; need %s", m->vt->type,
                        dc_shape_str(x), axis < 0 ? "[..., C]" : "[N,C,...]");
    int64_t c = x->shape[axis < 0 ? x->ndim - 1 : axis];
    if (c != n->o.channels)
        return dc_error(DIFFCL_ERR_SHAPE, "%s: input %s has %lld channels; the module has %d",
                        m->vt->type, dc_shape_str(x), (long long)c, n->o.channels);
    return DIFFCL_OK;
}

static void count_batch(diffcl_module *m)
{
    diffcl_tensor *nbt = dc_module_buffer(m, "num_batches_tracked");
    if (nbt && nbt->dtype == DIFFCL_I64) (*(int64_t *)dc_data(nbt))++;
}

static diffcl_status batch_forward(diffcl_module *m, const diffcl_tensor *x, diffcl_tensor **out)
{
    const norm_impl *n = m->impl;
    DC_TRY(check_channels(m, x, 1));
    diffcl_tensor *rm = dc_module_buffer(m, "running_mean"),
                  *rv = dc_module_buffer(m, "running_var");
    int track = rm && rv;
    int batch_stats = m->training || !track;
    DC_TRY(diffcl_batch_norm(x, track ? rm : NULL, track ? rv : NULL, dc_module_param(m, "weight"),
                             dc_module_param(m, "bias"), batch_stats, n->o.momentum, n->o.eps,
                             out));
    if (m->training && track) count_batch(m);
    return DIFFCL_OK;
}

/* Running statistics of instance norm, as PyTorch: the batch average of each instance's
 * mean and unbiased variance, blended with momentum. */
static diffcl_status instance_update_running(const norm_impl *n, const diffcl_tensor *x,
                                             diffcl_tensor *rm, diffcl_tensor *rv)
{
    int64_t N = x->shape[0], C = x->shape[1], S = dc_nn_inner(x, 2), rows = N * C;
    diffcl_tensor *xc = dc_contiguous(x);
    double *buf = xc ? dc_malloc((size_t)(2 * rows + 2 * C + 1) * sizeof *buf) : NULL;
    if (!buf) {
        diffcl_tensor_free(xc);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "instancenorm: out of memory");
    }
    double *mean = buf, *sq = mean + rows, *nm = sq + rows, *nv = nm + C;
    int nt = dc_threads(x->ctx);
    dc_norm_row_sums(xc, rows, S, NULL, 0, mean, nt);
    for (int64_t r = 0; r < rows; r++) mean[r] /= (double)S;
    dc_norm_row_sums(xc, rows, S, mean, 1, sq, nt);
    double mom = n->o.momentum;
    for (int64_t c = 0; c < C; c++) {
        double am = 0, av = 0;
        for (int64_t b = 0; b < N; b++) {
            am += mean[b * C + c];
            av += sq[b * C + c] / (double)(S - 1);
        }
        nm[c] = (1 - mom) * dc_nn_vec_get(rm, c, 0) + mom * am / (double)N;
        nv[c] = (1 - mom) * dc_nn_vec_get(rv, c, 1) + mom * av / (double)N;
    }
    dc_nn_vec_store(rm, C, nm);
    dc_nn_vec_store(rv, C, nv);
    free(buf);
    diffcl_tensor_free(xc);
    return DIFFCL_OK;
}

static diffcl_status instance_forward(diffcl_module *m, const diffcl_tensor *x, diffcl_tensor **out)
{
    const norm_impl *n = m->impl;
    DC_TRY(check_channels(m, x, 1));
    diffcl_tensor *rm = dc_module_buffer(m, "running_mean"),
                  *rv = dc_module_buffer(m, "running_var");
    diffcl_tensor *w = dc_module_param(m, "weight"), *b = dc_module_param(m, "bias");
    int track = rm && rv;
    if (track && !m->training) /* normalise with the running statistics */
        return diffcl_batch_norm(x, rm, rv, w, b, 0, n->o.momentum, n->o.eps, out);
    if (dc_nn_inner(x, 2) <= 1)
        return dc_error(
            DIFFCL_ERR_SHAPE,
            "instancenorm: expected more than 1 spatial element per channel, got input %s",
            dc_shape_str(x));
    DC_TRY(diffcl_group_norm(x, n->o.channels, w, b, n->o.eps, out));
    if (track && m->training) {
        diffcl_status s = instance_update_running(n, x, rm, rv);
        if (s != DIFFCL_OK) {
            diffcl_tensor_free(*out);
            *out = NULL;
            return s;
        }
        count_batch(m);
    }
    return DIFFCL_OK;
}

static diffcl_status group_forward(diffcl_module *m, const diffcl_tensor *x, diffcl_tensor **out)
{
    const norm_impl *n = m->impl;
    DC_TRY(check_channels(m, x, 1));
    return diffcl_group_norm(x, n->o.groups, dc_module_param(m, "weight"),
                             dc_module_param(m, "bias"), n->o.eps, out);
}

static diffcl_status layer_forward(diffcl_module *m, const diffcl_tensor *x, diffcl_tensor **out)
{
    const norm_impl *n = m->impl;
    DC_TRY(check_channels(m, x, -1));
    return diffcl_layer_norm(x, dc_module_param(m, "weight"), dc_module_param(m, "bias"), n->o.eps,
                             out);
}

static diffcl_status identity_forward(diffcl_module *m, const diffcl_tensor *x, diffcl_tensor **out)
{
    (void)m;
    *out = diffcl_tensor_retain((diffcl_tensor *)x);
    return DIFFCL_OK;
}

static const dc_module_vtable NORM_VT[] = {
    {"identity", identity_forward, free},     {"batchnorm", batch_forward, free},
    {"instancenorm", instance_forward, free}, {"groupnorm", group_forward, free},
    {"layernorm", layer_forward, free},
};

static diffcl_tensor *filled(diffcl_context *ctx, diffcl_dtype dt, int nd, int64_t c, double v)
{
    diffcl_tensor *t = dc_tensor_new(ctx, dt, nd, &c);
    if (t && v != 0) diffcl_tensor_fill(t, v);
    return t;
}

diffcl_status diffcl_norm_create(diffcl_context *ctx, const diffcl_norm_options *opts,
                                 diffcl_module **out)
{
    static const char *fn = "diffcl_norm_create";
    DC_CHECK_ARG(out, "%s: out is NULL", fn);
    *out = NULL;
    DC_CHECK_ARG(ctx, "%s: ctx is NULL", fn);
    diffcl_norm_options o = DIFFCL_NORM_OPTIONS_INIT;
    DC_TRY(dc_options_read(&o, sizeof o, opts, offsetof(diffcl_norm_options, groups), 0, fn));
    DC_CHECK_ARG((int)o.kind >= DIFFCL_NORM_NONE && (int)o.kind <= DIFFCL_NORM_LAYER,
                 "%s: unknown normalisation kind %d", fn, (int)o.kind);
    DC_CHECK_ARG(o.channels >= 1, "%s: channels %d must be >= 1", fn, o.channels);
    DC_CHECK_ARG(o.eps >= 0 && isfinite(o.eps), "%s: eps %g must be finite and >= 0", fn, o.eps);
    DC_CHECK_ARG(o.momentum >= 0 && o.momentum <= 1, "%s: momentum %g not in [0,1]", fn,
                 o.momentum);
    if (o.kind == DIFFCL_NORM_GROUP) {
        DC_CHECK_ARG(o.groups >= 1, "%s: groups %d must be >= 1", fn, o.groups);
        if (o.groups > o.channels) o.groups = o.channels;
        DC_CHECK_ARG(o.channels % o.groups == 0, "%s: %d groups do not divide %d channels", fn,
                     o.groups, o.channels);
    }
    norm_impl *impl = dc_malloc(sizeof *impl);
    if (!impl) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    impl->o = o;
    diffcl_module *m = dc_module_new(ctx, &NORM_VT[o.kind], impl);
    if (!m) return DIFFCL_ERR_OUT_OF_MEMORY;
    diffcl_status s = DIFFCL_OK;
    int64_t C = o.channels;
    if (o.kind != DIFFCL_NORM_NONE && o.affine) {
        s = dc_module_add_param(m, "weight", filled(ctx, DIFFCL_F32, 1, C, 1.0));
        if (s == DIFFCL_OK) s = dc_module_add_param(m, "bias", filled(ctx, DIFFCL_F32, 1, C, 0.0));
    }
    if (s == DIFFCL_OK && o.track_running_stats &&
        (o.kind == DIFFCL_NORM_BATCH || o.kind == DIFFCL_NORM_INSTANCE)) {
        s = dc_module_add_buffer(m, "running_mean", filled(ctx, DIFFCL_F32, 1, C, 0.0));
        if (s == DIFFCL_OK)
            s = dc_module_add_buffer(m, "running_var", filled(ctx, DIFFCL_F32, 1, C, 1.0));
        if (s == DIFFCL_OK)
            s = dc_module_add_buffer(m, "num_batches_tracked", filled(ctx, DIFFCL_I64, 0, 1, 0.0));
    }
    if (s != DIFFCL_OK) {
        diffcl_module_free(m);
        return s;
    }
    *out = m;
    return DIFFCL_OK;
}
