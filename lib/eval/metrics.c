/* Segmentation metrics (medpy's dc, jc, hd95, asd, assd; MONAI's surface Dice) on an exact
 * Euclidean distance transform (Felzenszwalb & Huttenlocher, "Distance Transforms of Sampled
 * Functions", 2012). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diffcl/metrics.h"
#include "tensor/tensor_internal.h"

/* diffcl_metric_options grew after 0.1.0 (both_empty). A program built against 0.1.0 calls the
 * DIFFCL_0.1 version, which fills only the 0.1.0 layout; programs built since bind to the
 * DIFFCL_0.2 default (docs/abi-policy.md; the pattern of diffcl_train_options_init). */
__attribute__((visibility("default"))) void
dc_metric_options_init_v0_1(diffcl_metric_options *opts);
void dc_metric_options_init_v0_1(diffcl_metric_options *opts)
{
    if (!opts) return;
    diffcl_metric_options d = DIFFCL_METRIC_OPTIONS_INIT;
    d.struct_size = offsetof(diffcl_metric_options, empty_value) + sizeof d.empty_value;
    memcpy(opts, &d, d.struct_size);
}
__asm__(".symver dc_metric_options_init_v0_1, diffcl_metric_options_init@DIFFCL_0.1");

__attribute__((visibility("default"))) void
dc_metric_options_init_v0_2(diffcl_metric_options *opts);
void dc_metric_options_init_v0_2(diffcl_metric_options *opts)
{
    if (!opts) return;
    diffcl_metric_options d = DIFFCL_METRIC_OPTIONS_INIT;
    *opts = d;
}
__asm__(".symver dc_metric_options_init_v0_2, diffcl_metric_options_init@@DIFFCL_0.2");

void diffcl_surface_dice_options_init(diffcl_surface_dice_options *opts)
{
    if (!opts) return;
    diffcl_surface_dice_options d = DIFFCL_SURFACE_DICE_OPTIONS_INIT;
    *opts = d;
}

/* ------------------------------------------------------------------ the EDT ---- */

/* 1-D squared distance transform of f[0..n) (INFINITY = no feature) sampled at positions
 * i * s: d[i] = min_q (f[q] + (s (i - q))^2). v, z are workspaces of n and n+1. */
static void edt_1d(const double *f, double *d, int64_t n, double s, int64_t *v, double *z)
{
    int64_t k = -1;
    for (int64_t q = 0; q < n; q++) {
        if (f[q] == INFINITY) continue;
        double xq = (double)q * s, fq = f[q] + xq * xq;
        while (k >= 0) {
            double xv = (double)v[k] * s;
            double zz = (fq - (f[v[k]] + xv * xv)) / (2.0 * (xq - xv));
            if (zz <= z[k])
                k--;
            else {
                k++;
                v[k] = q;
                z[k] = zz;
                z[k + 1] = INFINITY;
                break;
            }
        }
        if (k < 0) {
            k = 0;
            v[0] = q;
            z[0] = -INFINITY;
            z[1] = INFINITY;
        }
    }
    if (k < 0) {
        for (int64_t i = 0; i < n; i++) d[i] = INFINITY;
        return;
    }
    int64_t j = 0;
    for (int64_t i = 0; i < n; i++) {
        double x = (double)i * s;
        while (z[j + 1] < x) j++;
        double dx = x - (double)v[j] * s;
        d[i] = dx * dx + f[v[j]];
    }
}

/* In place: g holds 0 at features and INFINITY elsewhere over dims[0..3) (row-major);
 * on return the squared distances. Returns 0 or -1 (out of memory). */
static int edt_squared(double *g, const int64_t dims[3], const double sp[3])
{
    int64_t maxn = dims[0] > dims[1] ? dims[0] : dims[1];
    if (dims[2] > maxn) maxn = dims[2];
    double *f = dc_malloc(sizeof(double) * (size_t)maxn * 2 + sizeof(double) * (size_t)(maxn + 1));
    int64_t *v = dc_malloc(sizeof(int64_t) * (size_t)maxn);
    if (!f || !v) {
        free(f);
        free(v);
        return -1;
    }
    double *d = f + maxn, *z = d + maxn;
    const int64_t stride[3] = {dims[1] * dims[2], dims[2], 1};
    for (int a = 2; a >= 0; a--) {
        int64_t n = dims[a];
        if (n == 1 && a != 2) continue;
        int64_t total = dims[0] * dims[1] * dims[2] / n;
        for (int64_t line = 0; line < total; line++) {
            /* decompose line index over the other two axes */
            int64_t base = 0, rem = line;
            for (int b = 2; b >= 0; b--) {
                if (b == a) continue;
                base += (rem % dims[b]) * stride[b];
                rem /= dims[b];
            }
            double *p = g + base;
            for (int64_t i = 0; i < n; i++) f[i] = p[i * stride[a]];
            edt_1d(f, d, n, sp[a], v, z);
            for (int64_t i = 0; i < n; i++) p[i * stride[a]] = d[i];
        }
    }
    free(f);
    free(v);
    return 0;
}

/* Read any dtype as a 0/1 mask into a contiguous byte array. */
static uint8_t *to_mask(const diffcl_tensor *t, int cls)
{
    int64_t n = dc_numel(t);
    uint8_t *m = dc_malloc((size_t)(n ? n : 1));
    if (!m) return NULL;
    diffcl_tensor *c = dc_contiguous(t);
    if (!c) {
        free(m);
        return NULL;
    }
    const void *p = dc_data(c);
    for (int64_t i = 0; i < n; i++) {
        double v;
        switch (c->dtype) {
        case DIFFCL_F32: v = ((const float *)p)[i]; break;
        case DIFFCL_F64: v = ((const double *)p)[i]; break;
        case DIFFCL_U8: v = ((const uint8_t *)p)[i]; break;
        case DIFFCL_I32: v = ((const int32_t *)p)[i]; break;
        default: v = (double)((const int64_t *)p)[i]; break;
        }
        m[i] = cls < 0 ? (v != 0) : (v == (double)cls);
    }
    diffcl_tensor_free(c);
    return m;
}

static diffcl_status spatial_dims(const diffcl_tensor *t, int64_t dims[3], const char *fn)
{
    if (t->ndim < 1 || t->ndim > 3)
        return dc_error(DIFFCL_ERR_SHAPE, "%s: mask of shape %s: expected 1 to 3 axes", fn,
                        dc_shape_str(t));
    dims[0] = dims[1] = dims[2] = 1;
    for (int i = 0; i < t->ndim; i++) dims[3 - t->ndim + i] = t->shape[i];
    return DIFFCL_OK;
}

diffcl_status diffcl_distance_transform(const diffcl_tensor *mask, const double *spacing,
                                        diffcl_tensor **out)
{
    DC_CHECK_ARG(mask && out, "diffcl_distance_transform: mask and out must not be NULL");
    *out = NULL;
    int64_t dims[3];
    DC_TRY(spatial_dims(mask, dims, "diffcl_distance_transform"));
    double sp[3] = {1, 1, 1};
    for (int i = 0; i < mask->ndim; i++) {
        if (!spacing) break;
        DC_CHECK_ARG(spacing[i] > 0 && isfinite(spacing[i]),
                     "diffcl_distance_transform: spacing[%d] = %g is not positive", i, spacing[i]);
        sp[3 - mask->ndim + i] = spacing[i];
    }
    uint8_t *m = to_mask(mask, -1);
    diffcl_tensor *o = m ? dc_tensor_empty(mask->ctx, DIFFCL_F64, mask->ndim, mask->shape) : NULL;
    if (!o) {
        free(m);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "diffcl_distance_transform: out of memory");
    }
    double *g = dc_f64(o);
    int64_t n = dc_numel(mask);
    for (int64_t i = 0; i < n; i++) g[i] = m[i] ? INFINITY : 0.0;
    free(m);
    if (edt_squared(g, dims, sp)) {
        diffcl_tensor_free(o);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "diffcl_distance_transform: out of memory");
    }
    for (int64_t i = 0; i < n; i++) g[i] = sqrt(g[i]);
    *out = o;
    return DIFFCL_OK;
}

/* ------------------------------------------------------------------ surfaces ---- */

/* border = mask & ~erode(mask), erosion with the connectivity-c cross/cube, outside = 0. */
static void surface(const uint8_t *m, uint8_t *border, const int64_t dims[3], int conn, int ndim)
{
    int offs[27][3], n_off = 0;
    for (int dz = -1; dz <= 1; dz++)
        for (int dy = -1; dy <= 1; dy++)
            for (int dx = -1; dx <= 1; dx++) {
                int l1 = abs(dz) + abs(dy) + abs(dx);
                if (l1 == 0 || l1 > conn) continue;
                /* axes that do not exist in a lower-rank mask have no neighbours */
                if (ndim < 3 && dz) continue;
                if (ndim < 2 && dy) continue;
                offs[n_off][0] = dz;
                offs[n_off][1] = dy;
                offs[n_off][2] = dx;
                n_off++;
            }
    const int64_t D = dims[0], H = dims[1], W = dims[2];
    for (int64_t z = 0; z < D; z++)
        for (int64_t y = 0; y < H; y++)
            for (int64_t x = 0; x < W; x++) {
                int64_t i = (z * H + y) * W + x;
                if (!m[i]) {
                    border[i] = 0;
                    continue;
                }
                int b = 0;
                for (int k = 0; k < n_off && !b; k++) {
                    int64_t zz = z + offs[k][0], yy = y + offs[k][1], xx = x + offs[k][2];
                    if (zz < 0 || zz >= D || yy < 0 || yy >= H || xx < 0 || xx >= W)
                        b = 1;
                    else if (!m[(zz * H + yy) * W + xx])
                        b = 1;
                }
                border[i] = (uint8_t)b;
            }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* numpy.percentile(a, q) with its default 'linear' method, step by step as numpy 1.24 does
 * (virtual index n*q + (1 - q) - 1, then _lerp); sorts a. */
static double percentile(double *a, int64_t n, double q)
{
    qsort(a, (size_t)n, sizeof *a, cmp_double);
    double qq = q / 100.0;
    double virt = (double)n * qq + (1.0 + qq * -1.0) - 1.0;
    double prev = floor(virt);
    double t = virt - prev;
    int64_t lo = (int64_t)prev, hi = lo + 1;
    if (lo < 0) lo = 0;
    if (lo > n - 1) lo = n - 1;
    if (hi > n - 1) hi = n - 1;
    double d = a[hi] - a[lo];
    return t >= 0.5 ? a[hi] - d * (1.0 - t) : a[lo] + d * t;
}

/* Distances from the voxels of border `from` to the nearest voxel of border `to`, both
 * inside the box [lo, hi). Appends to dist, returns the count or -1. */
static int64_t border_distances(const uint8_t *from, const uint8_t *to, const int64_t dims[3],
                                const int64_t lo[3], const int64_t hi[3], const double sp[3],
                                double *dist)
{
    int64_t bd[3] = {hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]};
    int64_t bn = bd[0] * bd[1] * bd[2];
    double *g = dc_malloc(sizeof(double) * (size_t)bn);
    if (!g) return -1;
    for (int64_t z = 0; z < bd[0]; z++)
        for (int64_t y = 0; y < bd[1]; y++)
            for (int64_t x = 0; x < bd[2]; x++) {
                int64_t i = ((z + lo[0]) * dims[1] + y + lo[1]) * dims[2] + x + lo[2];
                g[(z * bd[1] + y) * bd[2] + x] = to[i] ? 0.0 : INFINITY;
            }
    if (edt_squared(g, bd, sp)) {
        free(g);
        return -1;
    }
    int64_t k = 0;
    for (int64_t z = 0; z < bd[0]; z++)
        for (int64_t y = 0; y < bd[1]; y++)
            for (int64_t x = 0; x < bd[2]; x++) {
                int64_t i = ((z + lo[0]) * dims[1] + y + lo[1]) * dims[2] + x + lo[2];
                if (from[i]) dist[k++] = sqrt(g[(z * bd[1] + y) * bd[2] + x]);
            }
    free(g);
    return k;
}

static diffcl_status read_options(const diffcl_metric_options *opts, int ndim,
                                  diffcl_metric_options *o, double sp[3], const char *fn)
{
    diffcl_metric_options d = DIFFCL_METRIC_OPTIONS_INIT;
    *o = d;
    DC_TRY(
        dc_options_read(o, sizeof *o, opts, offsetof(diffcl_metric_options, connectivity), 0, fn));
    DC_CHECK_ARG(o->connectivity >= 1 && o->connectivity <= 3, "%s: connectivity %d is not in 1..3",
                 fn, o->connectivity);
    if (o->connectivity > ndim)
        o->connectivity = ndim; /* above ndim: full connectivity, as 0.1.0 */
    DC_CHECK_ARG(o->empty_policy >= DIFFCL_EMPTY_NAN && o->empty_policy <= DIFFCL_EMPTY_DIAGONAL,
                 "%s: unknown empty_policy %d", fn, o->empty_policy);
    DC_CHECK_ARG(o->both_empty == DIFFCL_BOTH_EMPTY_ONE || o->both_empty == DIFFCL_BOTH_EMPTY_NAN,
                 "%s: unknown both_empty %d", fn, o->both_empty);
    sp[0] = sp[1] = sp[2] = 1;
    for (int i = 0; i < ndim; i++) {
        double s = o->spacing[i];
        DC_CHECK_ARG(s >= 0 && isfinite(s), "%s: spacing[%d] = %g is negative or not finite", fn, i,
                     s);
        sp[3 - ndim + i] = s > 0 ? s : 1.0;
    }
    return DIFFCL_OK;
}

/* Both masks non-empty: their surfaces at connectivity @p conn, and in a new array *dist (the
 * caller frees it) the distances from each voxel of S(p) to S(r), k1 of them, then from each
 * voxel of S(r) to S(p), k2 of them. */
static diffcl_status surface_distances(const uint8_t *p, const uint8_t *r, const int64_t dims[3],
                                       int ndim, int conn, const double sp[3], double **dist,
                                       int64_t *k1, int64_t *k2)
{
    int64_t n = dims[0] * dims[1] * dims[2];
    uint8_t *pb = dc_malloc((size_t)n * 2);
    if (!pb) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "metrics: out of memory");
    uint8_t *rb = pb + n;
    surface(p, pb, dims, conn, ndim);
    surface(r, rb, dims, conn, ndim);
    /* bounding box of both surfaces: the EDT restricted to it is exact at its voxels,
     * since every feature (surface voxel) lies inside it */
    int64_t lo[3] = {dims[0], dims[1], dims[2]}, hi[3] = {0, 0, 0}, n_pb = 0, n_rb = 0;
    for (int64_t z = 0; z < dims[0]; z++)
        for (int64_t y = 0; y < dims[1]; y++)
            for (int64_t x = 0; x < dims[2]; x++) {
                int64_t i = (z * dims[1] + y) * dims[2] + x;
                if (!(pb[i] | rb[i])) continue;
                n_pb += pb[i];
                n_rb += rb[i];
                int64_t c[3] = {z, y, x};
                for (int a = 0; a < 3; a++) {
                    if (c[a] < lo[a]) lo[a] = c[a];
                    if (c[a] + 1 > hi[a]) hi[a] = c[a] + 1;
                }
            }
    double *d = dc_malloc(sizeof(double) * (size_t)(n_pb + n_rb));
    if (!d) {
        free(pb);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "metrics: out of memory");
    }
    *k1 = border_distances(pb, rb, dims, lo, hi, sp, d);
    *k2 = *k1 < 0 ? -1 : border_distances(rb, pb, dims, lo, hi, sp, d + *k1);
    free(pb);
    if (*k1 < 0 || *k2 < 0) {
        free(d);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "metrics: out of memory");
    }
    *dist = d;
    return DIFFCL_OK;
}

/* Metrics of two 0/1 masks over dims. */
static diffcl_status mask_metrics(const uint8_t *p, const uint8_t *r, const int64_t dims[3],
                                  int ndim, const diffcl_metric_options *o, const double sp[3],
                                  diffcl_seg_metrics *out)
{
    int64_t n = dims[0] * dims[1] * dims[2], np_ = 0, nr = 0, inter = 0;
    for (int64_t i = 0; i < n; i++) {
        np_ += p[i];
        nr += r[i];
        inter += p[i] & r[i];
    }
    memset(out, 0, sizeof *out);
    out->n_pred = np_;
    out->n_ref = nr;
    if (np_ == 0 && nr == 0) {
        if (o->both_empty == DIFFCL_BOTH_EMPTY_NAN)
            out->dice = out->jaccard = out->hd95 = out->asd = out->assd = out->hd = NAN;
        else
            out->dice = out->jaccard = 1.0; /* distances 0 */
        return DIFFCL_OK;
    }
    out->dice = 2.0 * (double)inter / (double)(np_ + nr);
    out->jaccard = (double)inter / (double)(np_ + nr - inter);
    if (np_ == 0 || nr == 0) {
        double v = NAN;
        if (o->empty_policy == DIFFCL_EMPTY_VALUE)
            v = o->empty_value;
        else if (o->empty_policy == DIFFCL_EMPTY_DIAGONAL) {
            v = 0;
            for (int a = 0; a < 3; a++) v += (double)(dims[a] * dims[a]) * sp[a] * sp[a];
            v = sqrt(v);
        }
        out->hd95 = out->asd = out->assd = out->hd = v;
        return DIFFCL_OK;
    }
    double *dist = NULL;
    int64_t k1 = 0, k2 = 0;
    DC_TRY(surface_distances(p, r, dims, ndim, o->connectivity, sp, &dist, &k1, &k2));
    double s1 = 0, s2 = 0, mx = 0;
    for (int64_t i = 0; i < k1; i++) s1 += dist[i];
    for (int64_t i = 0; i < k2; i++) s2 += dist[k1 + i];
    for (int64_t i = 0; i < k1 + k2; i++) mx = dist[i] > mx ? dist[i] : mx;
    out->asd = s1 / (double)k1;
    out->assd = 0.5 * (out->asd + s2 / (double)k2);
    out->hd = mx;
    out->hd95 = percentile(dist, k1 + k2, 95.0);
    free(dist);
    return DIFFCL_OK;
}

static diffcl_status check_pair(const diffcl_tensor *pred, const diffcl_tensor *ref,
                                int64_t dims[3], const char *fn)
{
    DC_CHECK_ARG(pred && ref, "%s: pred and ref must not be NULL", fn);
    DC_TRY(spatial_dims(pred, dims, fn));
    if (!dc_same_shape(pred, ref)) {
        char a[128];
        snprintf(a, sizeof a, "%s", dc_shape_str(pred));
        return dc_error(DIFFCL_ERR_SHAPE, "%s: prediction shape %s differs from reference %s", fn,
                        a, dc_shape_str(ref));
    }
    return DIFFCL_OK;
}

diffcl_status diffcl_metrics_binary(const diffcl_tensor *pred, const diffcl_tensor *ref,
                                    const diffcl_metric_options *opts, diffcl_seg_metrics *out)
{
    const char *fn = "diffcl_metrics_binary";
    DC_CHECK_ARG(out, "%s: out is NULL", fn);
    int64_t dims[3];
    DC_TRY(check_pair(pred, ref, dims, fn));
    diffcl_metric_options o;
    double sp[3];
    DC_TRY(read_options(opts, pred->ndim, &o, sp, fn));
    uint8_t *p = to_mask(pred, -1), *r = p ? to_mask(ref, -1) : NULL;
    diffcl_status s = (p && r) ? mask_metrics(p, r, dims, pred->ndim, &o, sp, out)
                               : dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    free(p);
    free(r);
    return s;
}

diffcl_status diffcl_metrics_per_class(const diffcl_tensor *pred, const diffcl_tensor *ref,
                                       int n_classes, const diffcl_metric_options *opts,
                                       diffcl_seg_metrics *out)
{
    const char *fn = "diffcl_metrics_per_class";
    DC_CHECK_ARG(out, "%s: out is NULL", fn);
    DC_CHECK_ARG(n_classes >= 2 && n_classes <= 256, "%s: n_classes %d not in 2..256", fn,
                 n_classes);
    int64_t dims[3];
    DC_TRY(check_pair(pred, ref, dims, fn));
    diffcl_metric_options o;
    double sp[3];
    DC_TRY(read_options(opts, pred->ndim, &o, sp, fn));
    diffcl_status s = DIFFCL_OK;
    for (int k = 1; k < n_classes && s == DIFFCL_OK; k++) {
        uint8_t *p = to_mask(pred, k), *r = p ? to_mask(ref, k) : NULL;
        s = (p && r) ? mask_metrics(p, r, dims, pred->ndim, &o, sp, &out[k - 1])
                     : dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
        free(p);
        free(r);
    }
    return s;
}

diffcl_status diffcl_metrics_summarize_ex(const double *values, int64_t n, int64_t stride, int ddof,
                                          double *mean, double *std, int64_t *n_valid)
{
    const char *fn = "diffcl_metrics_summarize_ex";
    DC_CHECK_ARG(values || n == 0, "%s: values is NULL", fn);
    DC_CHECK_ARG(n >= 0 && stride >= 1, "%s: bad n %lld or stride %lld", fn, (long long)n,
                 (long long)stride);
    DC_CHECK_ARG(ddof >= 0, "%s: ddof %d is negative", fn, ddof);
    double s = 0;
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        double v = values[i * stride];
        if (isfinite(v)) {
            s += v;
            k++;
        }
    }
    double m = k ? s / (double)k : NAN, ss = 0;
    for (int64_t i = 0; i < n && k; i++) {
        double v = values[i * stride];
        if (isfinite(v)) ss += (v - m) * (v - m);
    }
    if (mean) *mean = m;
    if (std) *std = k > ddof ? sqrt(ss / (double)(k - ddof)) : NAN;
    if (n_valid) *n_valid = k;
    return DIFFCL_OK;
}

diffcl_status diffcl_metrics_summarize(const double *values, int64_t n, int64_t stride,
                                       double *mean, double *std, int64_t *n_valid)
{
    DC_CHECK_ARG(values || n == 0, "diffcl_metrics_summarize: values is NULL");
    DC_CHECK_ARG(n >= 0 && stride >= 1, "diffcl_metrics_summarize: bad n %lld or stride %lld",
                 (long long)n, (long long)stride);
    return diffcl_metrics_summarize_ex(values, n, stride, 0, mean, std, n_valid);
}

/* ------------------------------------------------------------ surface Dice ---- */

static diffcl_status read_nsd_options(const diffcl_surface_dice_options *opts, int ndim,
                                      double *tol, double sp[3], const char *fn)
{
    diffcl_surface_dice_options o = DIFFCL_SURFACE_DICE_OPTIONS_INIT;
    DC_TRY(dc_options_read(&o, sizeof o, opts, sizeof o, 0, fn));
    DC_CHECK_ARG(o.tolerance >= 0 && isfinite(o.tolerance),
                 "%s: tolerance %g is negative or not finite", fn, o.tolerance);
    *tol = o.tolerance;
    sp[0] = sp[1] = sp[2] = 1;
    for (int i = 0; i < ndim; i++) {
        double s = o.spacing[i];
        DC_CHECK_ARG(s >= 0 && isfinite(s), "%s: spacing[%d] = %g is negative or not finite", fn, i,
                     s);
        sp[3 - ndim + i] = s > 0 ? s : 1.0;
    }
    return DIFFCL_OK;
}

/* NSD of two 0/1 masks over dims (MONAI's compute_surface_dice, use_subvoxels False). */
static diffcl_status mask_nsd(const uint8_t *p, const uint8_t *r, const int64_t dims[3], int ndim,
                              double tol, const double sp[3], double *out)
{
    int64_t n = dims[0] * dims[1] * dims[2], np_ = 0, nr = 0;
    for (int64_t i = 0; i < n; i++) {
        np_ += p[i];
        nr += r[i];
    }
    if (np_ == 0 && nr == 0) {
        *out = NAN; /* MONAI: the class is in neither mask */
        return DIFFCL_OK;
    }
    if (np_ == 0 || nr == 0) {
        *out = 0.0; /* every boundary voxel is infinitely far from the other's empty boundary */
        return DIFFCL_OK;
    }
    double *dist = NULL;
    int64_t k1 = 0, k2 = 0;
    /* MONAI's get_mask_edges: scipy's default structuring element, the connectivity-1 cross */
    DC_TRY(surface_distances(p, r, dims, ndim, 1, sp, &dist, &k1, &k2));
    /* MONAI keeps the distances as float32 and compares them with the threshold in float32 */
    const float t = (float)tol;
    int64_t within = 0;
    for (int64_t i = 0; i < k1 + k2; i++) within += (float)dist[i] <= t;
    free(dist);
    *out = (double)within / (double)(k1 + k2);
    return DIFFCL_OK;
}

diffcl_status diffcl_surface_dice(const diffcl_tensor *pred, const diffcl_tensor *ref,
                                  const diffcl_surface_dice_options *opts, double *out)
{
    const char *fn = "diffcl_surface_dice";
    DC_CHECK_ARG(out, "%s: out is NULL", fn);
    int64_t dims[3];
    DC_TRY(check_pair(pred, ref, dims, fn));
    double tol, sp[3];
    DC_TRY(read_nsd_options(opts, pred->ndim, &tol, sp, fn));
    uint8_t *p = to_mask(pred, -1), *r = p ? to_mask(ref, -1) : NULL;
    diffcl_status s = (p && r) ? mask_nsd(p, r, dims, pred->ndim, tol, sp, out)
                               : dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    free(p);
    free(r);
    return s;
}

diffcl_status diffcl_surface_dice_per_class(const diffcl_tensor *pred, const diffcl_tensor *ref,
                                            int n_classes, const diffcl_surface_dice_options *opts,
                                            double *out)
{
    const char *fn = "diffcl_surface_dice_per_class";
    DC_CHECK_ARG(out, "%s: out is NULL", fn);
    DC_CHECK_ARG(n_classes >= 2 && n_classes <= 256, "%s: n_classes %d not in 2..256", fn,
                 n_classes);
    int64_t dims[3];
    DC_TRY(check_pair(pred, ref, dims, fn));
    double tol, sp[3];
    DC_TRY(read_nsd_options(opts, pred->ndim, &tol, sp, fn));
    diffcl_status s = DIFFCL_OK;
    for (int k = 1; k < n_classes && s == DIFFCL_OK; k++) {
        uint8_t *p = to_mask(pred, k), *r = p ? to_mask(ref, k) : NULL;
        s = (p && r) ? mask_nsd(p, r, dims, pred->ndim, tol, sp, &out[k - 1])
                     : dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
        free(p);
        free(r);
    }
    return s;
}
