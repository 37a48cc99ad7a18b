/* Input validation and conversion shared by the losses (see loss_internal.h). */
#include <stdio.h>
#include <stdlib.h>

#include "loss/loss_internal.h"

diffcl_status dc_loss_split(const char *fn, const diffcl_tensor *x, const char *xname,
                            const diffcl_tensor *t, const char *tname, int64_t *N, int64_t *C,
                            int64_t *S)
{
    DC_CHECK_TENSOR(x, fn);
    if (!dc_is_float(x->dtype))
        return dc_error(DIFFCL_ERR_DTYPE, "%s: %s is %s; need f32 or f64", fn, xname,
                        diffcl_dtype_name(x->dtype));
    if (x->ndim < 2)
        return dc_error(DIFFCL_ERR_SHAPE, "%s: %s has shape %s; need [N,C,...] (2 to 5 axes)", fn,
                        xname, dc_shape_str(x));
    int64_t s = 1;
    for (int i = 2; i < x->ndim; i++) s *= x->shape[i];
    *N = x->shape[0];
    *C = x->shape[1];
    *S = s;
    if (!t) return DIFFCL_OK;
    int ok = t->ndim == x->ndim - 1 && t->shape[0] == x->shape[0];
    for (int i = 2; ok && i < x->ndim; i++) ok = t->shape[i - 1] == x->shape[i];
    if (!ok) {
        char xs[96];
        snprintf(xs, sizeof xs, "%s", dc_shape_str(x));
        return dc_error(DIFFCL_ERR_SHAPE,
                        "%s: %s has shape %s; for %s %s it must be [N,...] "
                        "(%s's shape without axis 1)",
                        fn, tname, dc_shape_str(t), xname, xs, xname);
    }
    if (t->ctx != x->ctx)
        return dc_error(DIFFCL_ERR_INVALID_ARGUMENT, "%s: %s and %s belong to different contexts",
                        fn, xname, tname);
    return DIFFCL_OK;
}

diffcl_status dc_loss_weights(const char *fn, const diffcl_tensor *w, const diffcl_tensor *like,
                              diffcl_dtype dtype, diffcl_tensor **out)
{
    *out = NULL;
    if (!w) return DIFFCL_OK;
    if (!dc_same_shape(w, like)) {
        char ls[96];
        snprintf(ls, sizeof ls, "%s", dc_shape_str(like));
        return dc_error(DIFFCL_ERR_SHAPE, "%s: voxel weight has shape %s; need the target's %s", fn,
                        dc_shape_str(w), ls);
    }
    diffcl_tensor *r = dc_tensor_empty(like->ctx, dtype, 1, (int64_t[]){dc_numel(w)});
    if (!r) return DIFFCL_ERR_OUT_OF_MEMORY;
    dc_copy_into(r, w);
    int64_t n = dc_numel(r), bad = -1;
    for (int64_t i = 0; i < n && bad < 0; i++) {
        double v = dtype == DIFFCL_F32 ? (double)dc_f32(r)[i] : dc_f64(r)[i];
        if (!(v >= 0) || isinf(v)) bad = i;
    }
    if (bad >= 0) {
        double v = dtype == DIFFCL_F32 ? (double)dc_f32(r)[bad] : dc_f64(r)[bad];
        diffcl_tensor_free(r);
        return dc_error(isnan(v) || isinf(v) ? DIFFCL_ERR_NUMERIC : DIFFCL_ERR_INVALID_ARGUMENT,
                        "%s: voxel weight %lld is %g; weights must be finite and >= 0", fn,
                        (long long)bad, v);
    }
    *out = r;
    return DIFFCL_OK;
}

diffcl_status dc_loss_labels(const char *fn, const diffcl_tensor *t, int64_t n_classes,
                             int64_t ignore_index, const diffcl_tensor *w, int n_threads,
                             diffcl_tensor **out)
{
    *out = NULL;
    DC_CHECK_TENSOR(t, fn);
    if (t->dtype != DIFFCL_U8 && t->dtype != DIFFCL_I32 && t->dtype != DIFFCL_I64)
        return dc_error(DIFFCL_ERR_DTYPE, "%s: target is %s; need class indices as u8, i32 or i64",
                        fn, diffcl_dtype_name(t->dtype));
    diffcl_tensor *tc = dc_contiguous(t);
    int64_t n = tc ? dc_numel(tc) : 0;
    diffcl_tensor *r = tc ? dc_tensor_empty(t->ctx, DIFFCL_I32, 1, &n) : NULL;
    if (!r) {
        diffcl_tensor_free(tc);
        return DIFFCL_ERR_OUT_OF_MEMORY;
    }
    const void *src = dc_data(tc);
    int32_t *dst = (int32_t *)dc_data(r);
    const void *wp = w ? dc_data(w) : NULL;
    diffcl_dtype wd = w ? w->dtype : DIFFCL_F32;
    int64_t bad = n; /* first offending voxel */
#pragma omp parallel for num_threads(n_threads) schedule(static) reduction(min : bad) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        int64_t v = dc_loss_label(src, tc->dtype, i);
        if (v == ignore_index || (wp && dc_loss_load(wp, wd, i) == 0)) {
            dst[i] = -1;
        } else if (v < 0 || v >= n_classes) {
            dst[i] = -1;
            if (i < bad) bad = i;
        } else {
            dst[i] = (int32_t)v;
        }
    }
    if (bad < n) {
        long long v = (long long)dc_loss_label(src, tc->dtype, bad);
        diffcl_tensor_free(tc);
        diffcl_tensor_free(r);
        if (ignore_index == INT64_MIN) /* the caller has no ignore_index */
            return dc_error(DIFFCL_ERR_INVALID_ARGUMENT,
                            "%s: target voxel %lld has class %lld, outside [0,%lld)", fn,
                            (long long)bad, v, (long long)n_classes);
        return dc_error(DIFFCL_ERR_INVALID_ARGUMENT,
                        "%s: target voxel %lld has class %lld, outside [0,%lld) and not the "
                        "ignore_index %lld",
                        fn, (long long)bad, v, (long long)n_classes, (long long)ignore_index);
    }
    diffcl_tensor_free(tc);
    *out = r;
    return DIFFCL_OK;
}

diffcl_status dc_loss_class_weights(const char *fn, const diffcl_tensor *cw, int64_t C,
                                    double **out)
{
    *out = NULL;
    if (!cw) return DIFFCL_OK;
    if (!dc_is_float(cw->dtype))
        return dc_error(DIFFCL_ERR_DTYPE, "%s: class weight is %s; need f32 or f64", fn,
                        diffcl_dtype_name(cw->dtype));
    if (cw->ndim != 1 || cw->shape[0] != C)
        return dc_error(DIFFCL_ERR_SHAPE, "%s: class weight has shape %s; need [%lld]", fn,
                        dc_shape_str(cw), (long long)C);
    double *w = dc_malloc((size_t)(C ? C : 1) * sizeof *w);
    if (!w) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    for (int64_t c = 0; c < C; c++) {
        w[c] = cw->dtype == DIFFCL_F32 ? (double)dc_f32(cw)[c * cw->strides[0]]
                                       : dc_f64(cw)[c * cw->strides[0]];
        if (!isfinite(w[c]) || w[c] < 0) {
            double v = w[c];
            free(w);
            return dc_error(isfinite(v) ? DIFFCL_ERR_INVALID_ARGUMENT : DIFFCL_ERR_NUMERIC,
                            "%s: class weight %lld is %g; weights must be finite and >= 0", fn,
                            (long long)c, v);
        }
    }
    *out = w;
    return DIFFCL_OK;
}

diffcl_tensor *dc_loss_scalar(diffcl_context *ctx, diffcl_dtype dtype, double v)
{
    diffcl_tensor *r = dc_tensor_empty(ctx, dtype, 0, NULL);
    if (!r) return NULL;
    if (dtype == DIFFCL_F32)
        dc_f32(r)[0] = (float)v;
    else
        dc_f64(r)[0] = v;
    return r;
}
