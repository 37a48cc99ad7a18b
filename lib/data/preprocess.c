/* Intensity normalisation (z-score, min-max, percentile clip, CT window) and resampling. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_internal.h"
#include "tensor/tensor_internal.h"

/* A contiguous F32 copy of an image [C, ...] and its channel size. */
static diffcl_status image_copy(const diffcl_tensor *image, diffcl_tensor **out, int64_t *C,
                                int64_t *per, const char *fn)
{
    DC_CHECK_ARG(image && out, "%s: image and out must not be NULL", fn);
    *out = NULL;
    if (image->dtype != DIFFCL_F32)
        return dc_error(DIFFCL_ERR_DTYPE, "%s: image must be f32, not %s", fn,
                        diffcl_dtype_name(image->dtype));
    if (image->ndim < 2)
        return dc_error(DIFFCL_ERR_SHAPE, "%s: image %s: expected [C, ...spatial]", fn,
                        dc_shape_str(image));
    diffcl_tensor *o = dc_tensor_empty(image->ctx, DIFFCL_F32, image->ndim, image->shape);
    if (!o) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    dc_copy_into(o, image);
    *C = image->shape[0];
    *per = *C ? dc_numel(image) / *C : 0;
    *out = o;
    return DIFFCL_OK;
}

diffcl_status diffcl_normalize_zscore(const diffcl_tensor *image, int nonzero_only,
                                      diffcl_tensor **out)
{
    int64_t C, per;
    diffcl_tensor *o;
    DC_TRY(image_copy(image, &o, &C, &per, "diffcl_normalize_zscore"));
    for (int64_t c = 0; c < C; c++) {
        float *x = dc_f32(o) + c * per;
        double s = 0, s2 = 0;
        int64_t n = 0;
        for (int64_t i = 0; i < per; i++) {
            if (nonzero_only && x[i] == 0) continue;
            s += x[i];
            n++;
        }
        if (!n) continue;
        double m = s / (double)n;
        for (int64_t i = 0; i < per; i++) {
            if (nonzero_only && x[i] == 0) continue;
            s2 += (x[i] - m) * (x[i] - m);
        }
        double sd = sqrt(s2 / (double)n);
        double inv = sd > 1e-12 ? 1.0 / sd : 1.0;
        for (int64_t i = 0; i < per; i++) {
            if (nonzero_only && x[i] == 0) continue;
            x[i] = (float)((x[i] - m) * inv);
        }
    }
    *out = o;
    return DIFFCL_OK;
}

static void minmax_channel(float *x, int64_t n, double lo, double hi)
{
    double r = hi - lo;
    for (int64_t i = 0; i < n; i++) {
        double v = x[i] < lo ? lo : (x[i] > hi ? hi : x[i]);
        x[i] = r > 0 ? (float)((v - lo) / r) : 0.0f;
    }
}

diffcl_status diffcl_normalize_minmax(const diffcl_tensor *image, diffcl_tensor **out)
{
    int64_t C, per;
    diffcl_tensor *o;
    DC_TRY(image_copy(image, &o, &C, &per, "diffcl_normalize_minmax"));
    for (int64_t c = 0; c < C; c++) {
        float *x = dc_f32(o) + c * per;
        double lo = INFINITY, hi = -INFINITY;
        for (int64_t i = 0; i < per; i++) {
            lo = x[i] < lo ? x[i] : lo;
            hi = x[i] > hi ? x[i] : hi;
        }
        minmax_channel(x, per, lo, hi);
    }
    *out = o;
    return DIFFCL_OK;
}

diffcl_status diffcl_ct_window(const diffcl_tensor *image, double lo, double hi,
                               diffcl_tensor **out)
{
    DC_CHECK_ARG(lo < hi && isfinite(lo) && isfinite(hi), "diffcl_ct_window: window [%g, %g]", lo,
                 hi);
    int64_t C, per;
    diffcl_tensor *o;
    DC_TRY(image_copy(image, &o, &C, &per, "diffcl_ct_window"));
    minmax_channel(dc_f32(o), C * per, lo, hi);
    *out = o;
    return DIFFCL_OK;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* numpy.percentile(sorted, q), linear (see lib/eval/metrics.c). */
static double pct_sorted(const float *a, int64_t n, double q)
{
    double qq = q / 100.0;
    double virt = (double)n * qq + (1.0 + qq * -1.0) - 1.0;
    double prev = floor(virt), t = virt - prev;
    int64_t lo = (int64_t)prev, hi = lo + 1;
    if (lo < 0) lo = 0;
    if (lo > n - 1) lo = n - 1;
    if (hi > n - 1) hi = n - 1;
    double d = (double)a[hi] - a[lo];
    return t >= 0.5 ? a[hi] - d * (1.0 - t) : a[lo] + d * t;
}

diffcl_status diffcl_clip_percentile(const diffcl_tensor *image, double lo_pct, double hi_pct,
                                     diffcl_tensor **out)
{
    DC_CHECK_ARG(lo_pct >= 0 && lo_pct <= hi_pct && hi_pct <= 100,
                 "diffcl_clip_percentile: percentiles [%g, %g] not within 0..100", lo_pct, hi_pct);
    int64_t C, per;
    diffcl_tensor *o;
    DC_TRY(image_copy(image, &o, &C, &per, "diffcl_clip_percentile"));
    float *tmp = dc_malloc(sizeof(float) * (size_t)(per ? per : 1));
    if (!tmp) {
        diffcl_tensor_free(o);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "diffcl_clip_percentile: out of memory");
    }
    for (int64_t c = 0; c < C && per > 0; c++) {
        float *x = dc_f32(o) + c * per;
        memcpy(tmp, x, sizeof(float) * (size_t)per);
        qsort(tmp, (size_t)per, sizeof(float), cmp_float);
        double lo = pct_sorted(tmp, per, lo_pct), hi = pct_sorted(tmp, per, hi_pct);
        for (int64_t i = 0; i < per; i++) x[i] = (float)(x[i] < lo ? lo : (x[i] > hi ? hi : x[i]));
    }
    free(tmp);
    *out = o;
    return DIFFCL_OK;
}

/* ------------------------------------------------------------------ resampling ---- */

diffcl_status diffcl_resize(const diffcl_tensor *t, int n_spatial, const int64_t *size,
                            diffcl_interp interp, diffcl_tensor **out)
{
    const char *fn = "diffcl_resize";
    DC_CHECK_ARG(t && size && out, "%s: t, size and out must not be NULL", fn);
    *out = NULL;
    DC_CHECK_ARG(n_spatial == 2 || n_spatial == 3, "%s: n_spatial %d is not 2 or 3", fn, n_spatial);
    DC_CHECK_ARG(interp == DIFFCL_INTERP_NEAREST || interp == DIFFCL_INTERP_LINEAR,
                 "%s: unknown interpolation %d", fn, (int)interp);
    if (t->ndim < n_spatial)
        return dc_error(DIFFCL_ERR_SHAPE, "%s: tensor %s has fewer than %d axes", fn,
                        dc_shape_str(t), n_spatial);
    if (interp == DIFFCL_INTERP_LINEAR && !dc_is_float(t->dtype))
        return dc_error(DIFFCL_ERR_DTYPE,
                        "%s: linear interpolation of a %s tensor (labels need "
                        "nearest)",
                        fn, diffcl_dtype_name(t->dtype));
    int lead = t->ndim - n_spatial;
    int64_t in[3] = {1, 1, 1}, os[3] = {1, 1, 1}, outer = 1;
    for (int i = 0; i < lead; i++) outer *= t->shape[i];
    for (int i = 0; i < n_spatial; i++) {
        in[3 - n_spatial + i] = t->shape[lead + i];
        DC_CHECK_ARG(size[i] >= 1 && size[i] <= (1 << 20), "%s: size[%d] = %lld", fn, i,
                     (long long)size[i]);
        os[3 - n_spatial + i] = size[i];
    }
    int64_t oshape[DIFFCL_MAX_DIMS];
    for (int i = 0; i < t->ndim; i++) oshape[i] = i < lead ? t->shape[i] : size[i - lead];
    diffcl_tensor *c = dc_contiguous(t);
    diffcl_tensor *o = c ? dc_tensor_empty(t->ctx, t->dtype, t->ndim, oshape) : NULL;
    if (!o) {
        diffcl_tensor_free(c);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    /* per-axis source coordinates of each output index */
    double *coord[3];
    int ok = 1;
    for (int a = 0; a < 3; a++) {
        coord[a] = dc_malloc(sizeof(double) * (size_t)os[a]);
        if (!coord[a]) ok = 0;
        for (int64_t i = 0; coord[a] && i < os[a]; i++) {
            double s = (i + 0.5) * (double)in[a] / (double)os[a] - 0.5;
            if (interp == DIFFCL_INTERP_NEAREST) /* PyTorch 'nearest-exact' */
                s = floor((i + 0.5) * (double)in[a] / (double)os[a]);
            coord[a][i] = s < 0 ? 0 : (s > in[a] - 1 ? (double)(in[a] - 1) : s);
        }
    }
    if (!ok) {
        for (int a = 0; a < 3; a++) free(coord[a]);
        diffcl_tensor_free(c);
        diffcl_tensor_free(o);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    const int64_t ivol = in[0] * in[1] * in[2], ovol = os[0] * os[1] * os[2];
    const size_t es = diffcl_dtype_size(t->dtype);
#pragma omp parallel for collapse(2) schedule(static) num_threads(dc_threads(t->ctx))
    for (int64_t b = 0; b < outer; b++)
        for (int64_t z = 0; z < os[0]; z++)
            for (int64_t y = 0; y < os[1]; y++)
                for (int64_t x = 0; x < os[2]; x++) {
                    int64_t oi = b * ovol + (z * os[1] + y) * os[2] + x;
                    if (interp == DIFFCL_INTERP_NEAREST) {
                        int64_t si = b * ivol +
                                     ((int64_t)coord[0][z] * in[1] + (int64_t)coord[1][y]) * in[2] +
                                     (int64_t)coord[2][x];
                        memcpy((char *)dc_data(o) + oi * es, (const char *)dc_data(c) + si * es,
                               es);
                        continue;
                    }
                    double cz = coord[0][z], cy = coord[1][y], cx = coord[2][x];
                    int64_t z0 = (int64_t)cz, y0 = (int64_t)cy, x0 = (int64_t)cx;
                    int64_t z1 = z0 + 1 < in[0] ? z0 + 1 : z0, y1 = y0 + 1 < in[1] ? y0 + 1 : y0,
                            x1 = x0 + 1 < in[2] ? x0 + 1 : x0;
                    double fz = cz - z0, fy = cy - y0, fx = cx - x0;
                    int64_t base = b * ivol;
#define V(zz, yy, xx)                                                                              \
    (t->dtype == DIFFCL_F32 ? (double)dc_f32(c)[base + ((zz)*in[1] + (yy)) * in[2] + (xx)]         \
                            : dc_f64(c)[base + ((zz)*in[1] + (yy)) * in[2] + (xx)])
                    double v =
                        (1 - fz) * ((1 - fy) * ((1 - fx) * V(z0, y0, x0) + fx * V(z0, y0, x1)) +
                                    fy * ((1 - fx) * V(z0, y1, x0) + fx * V(z0, y1, x1))) +
                        fz * ((1 - fy) * ((1 - fx) * V(z1, y0, x0) + fx * V(z1, y0, x1)) +
                              fy * ((1 - fx) * V(z1, y1, x0) + fx * V(z1, y1, x1)));
#undef V
                    if (t->dtype == DIFFCL_F32)
                        dc_f32(o)[oi] = (float)v;
                    else
                        dc_f64(o)[oi] = v;
                }
    for (int a = 0; a < 3; a++) free(coord[a]);
    diffcl_tensor_free(c);
    *out = o;
    return DIFFCL_OK;
}

diffcl_status diffcl_resample(const diffcl_tensor *t, int n_spatial, const double *spacing,
                              const double *target_spacing, diffcl_interp interp,
                              diffcl_tensor **out, int64_t *out_size)
{
    const char *fn = "diffcl_resample";
    DC_CHECK_ARG(t && spacing && target_spacing && out, "%s: arguments must not be NULL", fn);
    DC_CHECK_ARG(n_spatial == 2 || n_spatial == 3, "%s: n_spatial %d is not 2 or 3", fn, n_spatial);
    if (t->ndim < n_spatial)
        return dc_error(DIFFCL_ERR_SHAPE, "%s: tensor %s has fewer than %d axes", fn,
                        dc_shape_str(t), n_spatial);
    int64_t size[3];
    for (int i = 0; i < n_spatial; i++) {
        DC_CHECK_ARG(spacing[i] > 0 && target_spacing[i] > 0 && isfinite(spacing[i]) &&
                         isfinite(target_spacing[i]),
                     "%s: spacing[%d] %g -> %g must be positive", fn, i, spacing[i],
                     target_spacing[i]);
        double n = (double)t->shape[t->ndim - n_spatial + i] * spacing[i] / target_spacing[i];
        size[i] = (int64_t)floor(n + 0.5);
        if (size[i] < 1) size[i] = 1;
    }
    if (out_size) memcpy(out_size, size, sizeof(int64_t) * (size_t)n_spatial);
    return diffcl_resize(t, n_spatial, size, interp, out);
}
