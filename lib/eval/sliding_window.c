/* Sliding-window inference (the benchmark codes' test_single_case), largest connected
 * component, colour overlays. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diffcl/image_io.h"
#include "diffcl/infer.h"
#include "tensor/tensor_internal.h"

void diffcl_sliding_window_options_init(diffcl_sliding_window_options *opts)
{
    if (!opts) return;
    diffcl_sliding_window_options d = DIFFCL_SLIDING_WINDOW_OPTIONS_INIT;
    *opts = d;
}

static diffcl_status read_opts(const diffcl_sliding_window_options *in,
                               diffcl_sliding_window_options *o, int two_d, const char *fn)
{
    diffcl_sliding_window_options d = DIFFCL_SLIDING_WINDOW_OPTIONS_INIT;
    *o = d;
    DC_TRY(dc_options_read(o, sizeof *o, in, offsetof(diffcl_sliding_window_options, gaussian), 0,
                           fn));
    for (int a = two_d ? 1 : 0; a < 3; a++) {
        DC_CHECK_ARG(o->patch[a] >= 1 && o->patch[a] <= 4096, "%s: patch[%d] = %lld out of range",
                     fn, a, (long long)o->patch[a]);
        DC_CHECK_ARG(o->stride[a] >= 1, "%s: stride[%d] = %lld must be >= 1", fn, a,
                     (long long)o->stride[a]);
    }
    DC_CHECK_ARG(o->batch >= 1 && o->batch <= 256, "%s: batch %d not in 1..256", fn, o->batch);
    return DIFFCL_OK;
}

static float *gaussian_map(const int64_t P[3], int two_d)
{
    float *w = dc_malloc(sizeof(float) * (size_t)(P[0] * P[1] * P[2]));
    if (!w) return NULL;
    double *g[3];
    for (int a = 0; a < 3; a++) {
        g[a] = dc_malloc(sizeof(double) * (size_t)P[a]);
        double sigma = P[a] / 8.0, c = (P[a] - 1) * 0.5;
        for (int64_t i = 0; g[a] && i < P[a]; i++)
            g[a][i] = (two_d && a == 0) ? 1.0 : exp(-0.5 * (i - c) * (i - c) / (sigma * sigma));
    }
    if (!g[0] || !g[1] || !g[2]) {
        for (int a = 0; a < 3; a++) free(g[a]);
        free(w);
        return NULL;
    }
    double mx = 0, mn = INFINITY;
    for (int64_t z = 0; z < P[0]; z++)
        for (int64_t y = 0; y < P[1]; y++)
            for (int64_t x = 0; x < P[2]; x++) {
                double v = g[0][z] * g[1][y] * g[2][x];
                w[(z * P[1] + y) * P[2] + x] = (float)v;
                mx = v > mx ? v : mx;
            }
    int64_t n = P[0] * P[1] * P[2];
    for (int64_t i = 0; i < n; i++) {
        w[i] = (float)(w[i] / mx);
        if (w[i] > 0 && w[i] < mn) mn = w[i];
    }
    for (int64_t i = 0; i < n; i++)
        if (w[i] <= 0) w[i] = (float)mn; /* nnU-Net: no zero weights */
    for (int a = 0; a < 3; a++) free(g[a]);
    return w;
}

/* One sliding-window run: the geometry of the padded image and its windows, and the
 * accumulators. Indices (z, y, x) run over a padded volume of size[]; a 2-D image has depth 1. */
typedef struct sw_run {
    const char *fn;
    diffcl_context *ctx;
    diffcl_module *model;
    const diffcl_sliding_window_options *o;
    int two_d, n_spatial, n_flips;
    int64_t C, K; /* input channels; classes, once known */
    int64_t dims[3], P[3], S[3], padlo[3], size[3], nwin[3];
    int64_t total, pvol, vol, svol; /* windows; voxels of a window, image, padded image */
    diffcl_tensor *img;             /* the image, contiguous */
    float *wmap, *cnt, *score;      /* window weights; weight and score sums */
    int64_t *starts;                /* [batch][3] window origins in the padded volume */
} sw_run;

/* The padded size (centred, up to one patch) and the window grid: ceil((size - P) / S) + 1
 * windows per axis, the last one flush with the end. */
static void sw_geometry(sw_run *r, const diffcl_tensor *image)
{
    const diffcl_sliding_window_options *o = r->o;
    r->C = image->shape[0];
    int64_t dims[3] = {r->two_d ? 1 : image->shape[1], image->shape[image->ndim - 2],
                       image->shape[image->ndim - 1]};
    int64_t P[3] = {r->two_d ? 1 : o->patch[0], o->patch[1], o->patch[2]};
    int64_t S[3] = {r->two_d ? 1 : o->stride[0], o->stride[1], o->stride[2]};
    for (int a = 0; a < 3; a++) {
        r->dims[a] = dims[a];
        r->P[a] = P[a];
        r->S[a] = S[a];
        int64_t pad = dims[a] < P[a] ? P[a] - dims[a] : 0;
        r->padlo[a] = pad / 2;
        r->size[a] = dims[a] + pad;
        r->nwin[a] = (r->size[a] - P[a] + S[a] - 1) / S[a] + 1; /* ceil((size-P)/S) + 1 */
    }
    r->total = r->nwin[0] * r->nwin[1] * r->nwin[2];
    r->pvol = P[0] * P[1] * P[2];
    r->vol = dims[0] * dims[1] * dims[2];
    r->svol = r->size[0] * r->size[1] * r->size[2];
    r->n_spatial = r->two_d ? 2 : 3;
    r->n_flips = o->tta_flips ? 1 << r->n_spatial : 1;
}

static void sw_free(sw_run *r)
{
    diffcl_tensor_free(r->img);
    free(r->wmap);
    free(r->cnt);
    free(r->starts);
    free(r->score);
}

/* Origins of windows w0 .. w0+B-1 (x fastest), clamped so the last window ends at the edge. */
static void sw_window_starts(sw_run *r, int64_t w0, int B)
{
    for (int b = 0; b < B; b++) {
        int64_t w = w0 + b, ix = w % r->nwin[2], iy = (w / r->nwin[2]) % r->nwin[1],
                iz = w / (r->nwin[2] * r->nwin[1]);
        int64_t ii[3] = {iz, iy, ix};
        for (int a = 0; a < 3; a++) {
            int64_t s = r->S[a] * ii[a], mx = r->size[a] - r->P[a];
            r->starts[3 * b + a] = s < mx ? s : mx;
        }
    }
}

/* The B windows as one [B, C, (D,) H, W] input, flipped along the axes of @p flip; zero
 * outside the image (the padding). */
static diffcl_status sw_gather(sw_run *r, int B, const int flip[3], diffcl_tensor **win)
{
    int64_t ishape[5];
    int nd = 0;
    ishape[nd++] = B;
    ishape[nd++] = r->C;
    for (int a = r->two_d ? 1 : 0; a < 3; a++) ishape[nd++] = r->P[a];
    *win = dc_tensor_empty(r->ctx, DIFFCL_F32, nd, ishape);
    if (!*win) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", r->fn);
    float *wp = dc_f32(*win);
    const float *src = dc_f32(r->img);
    const int64_t *P = r->P, *dims = r->dims, C = r->C, vol = r->vol;
    for (int b = 0; b < B; b++)
        for (int64_t c = 0; c < C; c++)
#pragma omp parallel for collapse(2) schedule(static) num_threads(dc_threads(r->ctx))
            for (int64_t z = 0; z < P[0]; z++)
                for (int64_t y = 0; y < P[1]; y++)
                    for (int64_t x = 0; x < P[2]; x++) {
                        int64_t q[3] = {flip[0] ? P[0] - 1 - z : z, flip[1] ? P[1] - 1 - y : y,
                                        flip[2] ? P[2] - 1 - x : x};
                        int64_t v[3];
                        int inside = 1;
                        for (int a = 0; a < 3; a++) {
                            v[a] = r->starts[3 * b + a] + q[a] - r->padlo[a];
                            if (v[a] < 0 || v[a] >= dims[a]) inside = 0;
                        }
                        wp[((b * C + c) * P[0] + z) * P[1] * P[2] + y * P[2] + x] =
                            inside ? src[c * vol + (v[0] * dims[1] + v[1]) * dims[2] + v[2]] : 0.0f;
                    }
    return DIFFCL_OK;
}

/* The model's output for a window batch must be f32 [B, K, same spatial size], with the same
 * K every time; the first one fixes K and allocates the score sums. */
static diffcl_status sw_check_output(sw_run *r, const diffcl_tensor *oc, const diffcl_tensor *win)
{
    const int B = (int)win->shape[0];
    int ok =
        oc->ndim == win->ndim && oc->shape[0] == B && oc->dtype == DIFFCL_F32 && oc->shape[1] >= 1;
    for (int a = 2; ok && a < win->ndim; a++) ok = oc->shape[a] == win->shape[a];
    if (ok && r->K && oc->shape[1] != r->K) ok = 0;
    if (!ok) {
        char a[64];
        snprintf(a, sizeof a, "%s", dc_shape_str(oc));
        return dc_error(DIFFCL_ERR_SHAPE,
                        "%s: the model mapped a window [%lld,%lld,...] to %s %s; expected f32 "
                        "[%d, classes, same spatial size]",
                        r->fn, (long long)B, (long long)r->C, diffcl_dtype_name(oc->dtype), a, B);
    }
    if (!r->K) {
        r->K = oc->shape[1];
        r->score = dc_calloc_raw((size_t)(r->K * r->svol), sizeof(float));
        if (!r->score)
            return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory for the score map", r->fn);
    }
    return DIFFCL_OK;
}

/* Add each window's softmax (flipped back, weighted) and its weight into the sums. */
static void sw_accumulate(sw_run *r, const diffcl_tensor *oc, int B, const int flip[3])
{
    const float *op = dc_f32(oc);
    const int64_t *P = r->P, *size = r->size, K = r->K, pvol = r->pvol, svol = r->svol;
    const float *wmap = r->wmap;
    float *score = r->score, *cnt = r->cnt;
    for (int b = 0; b < B; b++)
#pragma omp parallel for collapse(2) schedule(static) num_threads(dc_threads(r->ctx))
        for (int64_t z = 0; z < P[0]; z++)
            for (int64_t y = 0; y < P[1]; y++)
                for (int64_t x = 0; x < P[2]; x++) {
                    int64_t pi = (z * P[1] + y) * P[2] + x;
                    const float *l = op + b * K * pvol + pi;
                    double mx = l[0];
                    for (int64_t k = 1; k < K; k++) mx = l[k * pvol] > mx ? l[k * pvol] : mx;
                    double sum = 0;
                    for (int64_t k = 0; k < K; k++) sum += exp(l[k * pvol] - mx);
                    int64_t q[3] = {flip[0] ? P[0] - 1 - z : z, flip[1] ? P[1] - 1 - y : y,
                                    flip[2] ? P[2] - 1 - x : x};
                    const int64_t *st = r->starts + 3 * b;
                    int64_t g = ((st[0] + q[0]) * size[1] + st[1] + q[1]) * size[2] + st[2] + q[2];
                    float wt = wmap ? wmap[(q[0] * P[1] + q[1]) * P[2] + q[2]] : 1.0f;
                    for (int64_t k = 0; k < K; k++)
                        score[k * svol + g] += (float)(wt * exp(l[k * pvol] - mx) / sum);
                    cnt[g] += wt;
                }
}

/* Windows w0 .. w0+B-1 under every flip: gather, forward, check, accumulate. */
static diffcl_status sw_batch(sw_run *r, int64_t w0, int B)
{
    sw_window_starts(r, w0, B);
    for (int f = 0; f < r->n_flips; f++) {
        /* flip bit k flips spatial axis k (of the n_spatial present) */
        int flip[3] = {0, 0, 0};
        for (int k = 0; k < r->n_spatial; k++) flip[3 - r->n_spatial + k] = (f >> k) & 1;
        diffcl_tensor *win = NULL, *out = NULL;
        DC_TRY(sw_gather(r, B, flip, &win));
        diffcl_status st = diffcl_module_forward(r->model, win, &out);
        diffcl_tensor *oc = st == DIFFCL_OK ? dc_contiguous(out) : NULL;
        diffcl_tensor_free(out);
        if (st == DIFFCL_OK && !oc)
            st = dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", r->fn);
        if (st == DIFFCL_OK) st = sw_check_output(r, oc, win);
        if (st == DIFFCL_OK) sw_accumulate(r, oc, B, flip);
        diffcl_tensor_free(oc);
        diffcl_tensor_free(win);
        if (st != DIFFCL_OK) return st;
    }
    return DIFFCL_OK;
}

/* The averaged probabilities, cropped from the padded volume: [K, (D,) H, W]. */
static diffcl_status sw_result(const sw_run *r, diffcl_tensor **out)
{
    int64_t oshape[4];
    int nd = 0;
    oshape[nd++] = r->K;
    for (int a = r->two_d ? 1 : 0; a < 3; a++) oshape[nd++] = r->dims[a];
    diffcl_tensor *res = dc_tensor_empty(r->ctx, DIFFCL_F32, nd, oshape);
    if (!res) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", r->fn);
    float *rp = dc_f32(res);
    const int64_t *dims = r->dims, *size = r->size, *padlo = r->padlo;
    for (int64_t k = 0; k < r->K; k++)
        for (int64_t z = 0; z < dims[0]; z++)
            for (int64_t y = 0; y < dims[1]; y++)
                for (int64_t x = 0; x < dims[2]; x++) {
                    int64_t g = ((z + padlo[0]) * size[1] + y + padlo[1]) * size[2] + x + padlo[2];
                    rp[k * r->vol + (z * dims[1] + y) * dims[2] + x] =
                        r->score[k * r->svol + g] / r->cnt[g];
                }
    *out = res;
    return DIFFCL_OK;
}

diffcl_status diffcl_sliding_window(diffcl_module *model, const diffcl_tensor *image,
                                    const diffcl_sliding_window_options *opts,
                                    diffcl_tensor **probs)
{
    const char *fn = "diffcl_sliding_window";
    DC_CHECK_ARG(model && image && probs, "%s: model, image and probs must not be NULL", fn);
    *probs = NULL;
    if ((image->ndim != 3 && image->ndim != 4) || image->dtype != DIFFCL_F32)
        return dc_error(image->dtype != DIFFCL_F32 ? DIFFCL_ERR_DTYPE : DIFFCL_ERR_SHAPE,
                        "%s: image %s %s: expected f32 [C,D,H,W] or [C,H,W]", fn,
                        diffcl_dtype_name(image->dtype), dc_shape_str(image));
    diffcl_sliding_window_options o;
    DC_TRY(read_opts(opts, &o, image->ndim == 3, fn));
    sw_run r = {.fn = fn, .ctx = image->ctx, .model = model, .o = &o, .two_d = image->ndim == 3};
    sw_geometry(&r, image);
    r.img = dc_contiguous(image);
    r.wmap = o.gaussian ? gaussian_map(r.P, r.two_d) : NULL;
    r.cnt = dc_calloc_raw((size_t)r.svol, sizeof(float));
    r.starts = dc_malloc(sizeof(int64_t) * 3 * (size_t)o.batch);
    if (!r.img || (o.gaussian && !r.wmap) || !r.cnt || !r.starts) {
        sw_free(&r);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    diffcl_status st = DIFFCL_OK;
    int prev_grad = diffcl_set_grad_enabled(r.ctx, 0);
    for (int64_t w0 = 0; w0 < r.total && st == DIFFCL_OK; w0 += o.batch) {
        int B = (int)(r.total - w0 < o.batch ? r.total - w0 : o.batch);
        dc_threads_adapt(r.ctx); /* a default thread count follows the load (thread_adapt.c) */
        st = sw_batch(&r, w0, B);
        if (st == DIFFCL_OK && dc_progress(r.ctx, "infer", w0 + B, r.total, NULL))
            st = dc_error(DIFFCL_ERR_CANCELLED,
                          "%s: cancelled by the progress callback after %lld of "
                          "%lld windows",
                          fn, (long long)(w0 + B), (long long)r.total);
    }
    diffcl_set_grad_enabled(r.ctx, prev_grad);
    if (st == DIFFCL_OK) st = sw_result(&r, probs);
    sw_free(&r);
    return st;
}

/* ------------------------------------------------------------ components ---- */

diffcl_status diffcl_largest_component(const diffcl_tensor *label, int connectivity,
                                       diffcl_tensor **out)
{
    const char *fn = "diffcl_largest_component";
    DC_CHECK_ARG(label && out, "%s: label and out must not be NULL", fn);
    *out = NULL;
    if (label->dtype != DIFFCL_U8 || label->ndim < 2 || label->ndim > 3)
        return dc_error(label->dtype != DIFFCL_U8 ? DIFFCL_ERR_DTYPE : DIFFCL_ERR_SHAPE,
                        "%s: label %s %s: expected u8 with 2 or 3 axes", fn,
                        diffcl_dtype_name(label->dtype), dc_shape_str(label));
    int nd = label->ndim;
    if (connectivity == 0) connectivity = nd;
    DC_CHECK_ARG(connectivity >= 1 && connectivity <= nd, "%s: connectivity %d not in 1..%d", fn,
                 connectivity, nd);
    int64_t dims[3] = {nd == 2 ? 1 : label->shape[0], label->shape[nd - 2], label->shape[nd - 1]};
    int64_t n = dims[0] * dims[1] * dims[2];
    diffcl_tensor *c = dc_contiguous(label);
    diffcl_tensor *o = c ? dc_tensor_empty(label->ctx, DIFFCL_U8, nd, label->shape) : NULL;
    int32_t *comp = dc_malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
    int64_t *queue = dc_malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    int64_t *csize = NULL;
    int64_t best[256] = {0}, best_size[256] = {0};
    if (!o || !comp || !queue) goto oom;
    const uint8_t *L = dc_data(c);
    int offs[26][3], n_off = 0;
    for (int dz = -1; dz <= 1; dz++)
        for (int dy = -1; dy <= 1; dy++)
            for (int dx = -1; dx <= 1; dx++) {
                int l1 = abs(dz) + abs(dy) + abs(dx);
                if (!l1 || l1 > connectivity || (nd == 2 && dz)) continue;
                offs[n_off][0] = dz;
                offs[n_off][1] = dy;
                offs[n_off][2] = dx;
                n_off++;
            }
    for (int64_t i = 0; i < n; i++) comp[i] = -1;
    int64_t n_comp = 0, cap = 0;
    for (int64_t s = 0; s < n; s++) {
        if (!L[s] || comp[s] >= 0) continue;
        if (n_comp == cap) {
            cap = cap ? cap * 2 : 64;
            int64_t *t = dc_realloc(csize, sizeof(int64_t) * (size_t)cap);
            if (!t) goto oom;
            csize = t;
        }
        int64_t head = 0, tail = 0, cnt = 0;
        comp[s] = (int32_t)n_comp;
        queue[tail++] = s;
        while (head < tail) {
            int64_t v = queue[head++];
            cnt++;
            int64_t z = v / (dims[1] * dims[2]), y = (v / dims[2]) % dims[1], x = v % dims[2];
            for (int k = 0; k < n_off; k++) {
                int64_t zz = z + offs[k][0], yy = y + offs[k][1], xx = x + offs[k][2];
                if (zz < 0 || yy < 0 || xx < 0 || zz >= dims[0] || yy >= dims[1] || xx >= dims[2])
                    continue;
                int64_t u = (zz * dims[1] + yy) * dims[2] + xx;
                if (L[u] == L[s] && comp[u] < 0) {
                    comp[u] = (int32_t)n_comp;
                    queue[tail++] = u;
                }
            }
        }
        csize[n_comp] = cnt;
        if (cnt > best_size[L[s]]) {
            best_size[L[s]] = cnt;
            best[L[s]] = n_comp;
        }
        n_comp++;
    }
    uint8_t *O = dc_data(o);
    for (int64_t i = 0; i < n; i++) O[i] = (L[i] && comp[i] == best[L[i]]) ? L[i] : 0;
    free(comp);
    free(queue);
    free(csize);
    diffcl_tensor_free(c);
    *out = o;
    return DIFFCL_OK;
oom:
    free(comp);
    free(queue);
    free(csize);
    diffcl_tensor_free(c);
    diffcl_tensor_free(o);
    return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
}

diffcl_status diffcl_probs_to_label(const diffcl_tensor *probs, diffcl_tensor **label)
{
    const char *fn = "diffcl_probs_to_label";
    DC_CHECK_ARG(label, "%s: label must not be NULL", fn);
    *label = NULL;
    DC_CHECK_TENSOR(probs, fn);
    if (probs->dtype != DIFFCL_F32)
        return dc_error(DIFFCL_ERR_DTYPE, "%s: probabilities must be F32", fn);
    int64_t K = probs->ndim >= 3 ? probs->shape[0] : 0;
    if (probs->ndim < 3 || probs->ndim > 4 || K < 1 || K > 256)
        return dc_error(DIFFCL_ERR_SHAPE,
                        "%s: probabilities %s are not [K, (D,) H, W] with 1 <= K <= 256", fn,
                        dc_shape_str(probs));
    diffcl_tensor *pc = dc_contiguous(probs);
    diffcl_tensor *l = dc_tensor_empty(probs->ctx, DIFFCL_U8, probs->ndim - 1, probs->shape + 1);
    if (!pc || !l) {
        diffcl_tensor_free(pc);
        diffcl_tensor_free(l);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    int64_t vol = dc_numel(l);
    const float *pp = dc_f32(pc);
    uint8_t *lp = dc_data(l);
    for (int64_t i = 0; i < vol; i++) {
        int64_t best = 0;
        for (int64_t k = 1; k < K; k++)
            if (pp[k * vol + i] > pp[best * vol + i]) best = k; /* first maximum, as argmax */
        lp[i] = (uint8_t)best;
    }
    diffcl_tensor_free(pc);
    *label = l;
    return DIFFCL_OK;
}

void diffcl_sliding_window_default_stride(diffcl_sliding_window_options *opts)
{
    if (!opts) return;
    static const int64_t la_stride[3] = {18, 18, 4};
    int la = opts->patch[0] == 112 && opts->patch[1] == 112 && opts->patch[2] == 80;
    for (int a = 0; a < 3; a++)
        opts->stride[a] = la ? la_stride[a] : (opts->patch[a] / 2 > 0 ? opts->patch[a] / 2 : 1);
}

diffcl_status diffcl_segment(diffcl_module *model, const diffcl_tensor *image,
                             const diffcl_sliding_window_options *opts, diffcl_tensor **label,
                             diffcl_tensor **probs)
{
    const char *fn = "diffcl_segment";
    DC_CHECK_ARG(label, "%s: label must not be NULL", fn);
    *label = NULL;
    if (probs) *probs = NULL;
    diffcl_sliding_window_options o = DIFFCL_SLIDING_WINDOW_OPTIONS_INIT;
    DC_TRY(dc_options_read(&o, sizeof o, opts, 0, 0, fn)); /* checked by diffcl_sliding_window */
    diffcl_tensor *p = NULL;
    DC_TRY(diffcl_sliding_window(model, image, opts, &p));
    diffcl_tensor *l = NULL;
    diffcl_status st = diffcl_probs_to_label(p, &l);
    if (st != DIFFCL_OK) {
        diffcl_tensor_free(p);
        return st;
    }
    if (o.largest_cc) {
        diffcl_tensor *cc = NULL;
        st = diffcl_largest_component(l, 0, &cc);
        diffcl_tensor_free(l);
        if (st != DIFFCL_OK) {
            diffcl_tensor_free(p);
            return st;
        }
        l = cc;
    }
    *label = l;
    if (probs)
        *probs = p;
    else
        diffcl_tensor_free(p);
    return DIFFCL_OK;
}

/* --------------------------------------------------------------- overlays ---- */

static int cmp_f(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* The integer upscaling of an overlay: the short side becomes at least 256 px, unless that
 * would make the long side over 8192 px. */
static int64_t overlay_scale(int64_t rows, int64_t cols)
{
    int64_t short_side = rows < cols ? rows : cols, long_side = rows < cols ? cols : rows;
    int64_t up = (256 + short_side - 1) / short_side, cap = 8192 / long_side;
    up = up > cap ? cap : up;
    return up < 1 ? 1 : up;
}

/* Does output pixel (y, x) of a map upscaled @p up times lie within @p w pixels of another
 * value of @p m, seen from a pixel of value @p m != 0 (inner boundary) or, with @p outer, from a
 * pixel next to a non-zero one (outer boundary)? The image border counts as 0. */
static int on_edge(const uint8_t *m, int64_t R, int64_t C, int64_t up, int64_t y, int64_t x, int w,
                   int outer)
{
    uint8_t v = m[(y / up) * C + x / up];
    if (outer ? v != 0 : v == 0) return 0;
    for (int d = -w; d <= w; d++)
        for (int axis = 0; axis < 2; axis++) {
            int64_t yy = y + (axis ? d : 0), xx = x + (axis ? 0 : d);
            uint8_t n =
                yy < 0 || xx < 0 || yy >= R * up || xx >= C * up ? 0 : m[(yy / up) * C + xx / up];
            if (outer ? n != 0 : n != v) return 1;
        }
    return 0;
}

/* The upscaled slice in grey (1st..99th percentile), the label's classes outlined in colour on
 * their inner boundary, and the reference outlined in white on its outer boundary, so that a
 * perfect prediction shows both lines side by side. */
static void overlay_paint(uint8_t *out, const float *sl, const uint8_t *lab, const uint8_t *ref,
                          int64_t R, int64_t C, int64_t up, double lo, double hi)
{
    static const uint8_t pal[7][3] = {{230, 25, 75},  {60, 180, 75},  {0, 130, 200}, {255, 225, 25},
                                      {145, 30, 180}, {70, 240, 240}, {245, 130, 48}};
    int w = up >= 4 ? 1 : 0; /* lines 2 px wide once the pixels are large enough */
    for (int64_t y = 0; y < R * up; y++)
        for (int64_t x = 0; x < C * up; x++) {
            int64_t i = (y / up) * C + x / up;
            uint8_t *o = out + 3 * (y * C * up + x);
            double g = hi > lo ? (sl[i] - lo) / (hi - lo) : 0.5;
            g = g < 0 ? 0 : (g > 1 ? 1 : g);
            o[0] = o[1] = o[2] = (uint8_t)(g * 255 + 0.5);
            if (ref && on_edge(ref, R, C, up, y, x, w + 1, 1)) o[0] = o[1] = o[2] = 255;
            if (lab && on_edge(lab, R, C, up, y, x, w + 1, 0)) memcpy(o, pal[(lab[i] - 1) % 7], 3);
        }
}

diffcl_status diffcl_overlay_png(const diffcl_tensor *image, const diffcl_tensor *label,
                                 const diffcl_tensor *reference, int axis, int64_t index,
                                 const char *path)
{
    const char *fn = "diffcl_overlay_png";
    DC_CHECK_ARG(image && path, "%s: image and path must not be NULL", fn);
    if ((image->ndim != 3 && image->ndim != 4) || image->dtype != DIFFCL_F32)
        return dc_error(image->dtype != DIFFCL_F32 ? DIFFCL_ERR_DTYPE : DIFFCL_ERR_SHAPE,
                        "%s: image %s %s: expected f32 [C,D,H,W] or [C,H,W]", fn,
                        diffcl_dtype_name(image->dtype), dc_shape_str(image));
    const int two_d = image->ndim == 3;
    int64_t dims[3] = {two_d ? 1 : image->shape[1], image->shape[image->ndim - 2],
                       image->shape[image->ndim - 1]};
    const diffcl_tensor *maps[2] = {label, reference};
    for (int m = 0; m < 2; m++) {
        const diffcl_tensor *t = maps[m];
        if (!t) continue;
        int ok = t->dtype == DIFFCL_U8 && t->ndim == image->ndim - 1;
        for (int a = 0; ok && a < t->ndim; a++) ok = t->shape[a] == image->shape[a + 1];
        if (!ok)
            return dc_error(DIFFCL_ERR_SHAPE, "%s: %s %s does not match the image %s", fn,
                            m ? "reference" : "label", dc_shape_str(t), dc_shape_str(image));
    }
    if (two_d) {
        axis = 0;
        index = 0;
    }
    DC_CHECK_ARG(axis >= 0 && axis <= 2, "%s: axis %d not in 0..2", fn, axis);
    DC_CHECK_ARG(index >= -1 && index < dims[axis], "%s: slice %lld out of range (0..%lld)", fn,
                 (long long)index, (long long)dims[axis] - 1);
    diffcl_tensor *ic = dc_contiguous(image), *lc = label ? dc_contiguous(label) : NULL,
                  *rc = reference ? dc_contiguous(reference) : NULL;
    const float *I = ic ? dc_f32(ic) : NULL;
    const uint8_t *Lp = lc ? dc_data(lc) : NULL, *Rp = rc ? dc_data(rc) : NULL;
    if (index < 0) {
        int64_t best = -1, bi = dims[axis] / 2;
        for (int64_t s = 0; Lp && s < dims[axis]; s++) {
            int64_t cntv = 0;
            for (int64_t z = 0; z < dims[0]; z++)
                for (int64_t y = 0; y < dims[1]; y++)
                    for (int64_t x = 0; x < dims[2]; x++) {
                        int64_t c3[3] = {z, y, x};
                        if (c3[axis] == s) cntv += Lp[(z * dims[1] + y) * dims[2] + x] != 0;
                    }
            if (cntv > best) {
                best = cntv;
                bi = s;
            }
        }
        index = bi;
    }
    /* slice axes: the two spatial axes other than `axis`, in order */
    int ra = axis == 0 ? 1 : 0, ca = axis == 2 ? 1 : 2;
    int64_t R = dims[ra], Cc = dims[ca];
    int64_t up = overlay_scale(R, Cc), shape[3] = {R * up, Cc * up, 3};
    diffcl_tensor *rgb = dc_tensor_new(image->ctx, DIFFCL_U8, 3, shape);
    float *sl = dc_malloc(sizeof(float) * (size_t)(R * Cc)),
          *sorted = dc_malloc(sizeof(float) * (size_t)(R * Cc));
    uint8_t *lab = dc_calloc_raw((size_t)(R * Cc), 1), *ref = dc_calloc_raw((size_t)(R * Cc), 1);
    diffcl_status st = DIFFCL_OK;
    if (!ic || (label && !lc) || (reference && !rc) || !rgb || !sl || !sorted || !lab || !ref) {
        st = dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
        goto done;
    }
    for (int64_t r = 0; r < R; r++)
        for (int64_t c = 0; c < Cc; c++) {
            int64_t p3[3];
            p3[axis] = index;
            p3[ra] = r;
            p3[ca] = c;
            int64_t v = (p3[0] * dims[1] + p3[1]) * dims[2] + p3[2];
            sl[r * Cc + c] = I[v];
            if (Lp) lab[r * Cc + c] = Lp[v];
            if (Rp) ref[r * Cc + c] = Rp[v];
        }
    memcpy(sorted, sl, sizeof(float) * (size_t)(R * Cc));
    qsort(sorted, (size_t)(R * Cc), sizeof(float), cmp_f);
    double lo = sorted[(int64_t)((R * Cc - 1) * 0.01)], hi = sorted[(int64_t)((R * Cc - 1) * 0.99)];
    overlay_paint(dc_data(rgb), sl, Lp ? lab : NULL, Rp ? ref : NULL, R, Cc, up, lo, hi);
    st = diffcl_png_write(rgb, path, 8);
done:
    diffcl_tensor_free(ic);
    diffcl_tensor_free(lc);
    diffcl_tensor_free(rc);
    diffcl_tensor_free(rgb);
    free(sl);
    free(sorted);
    free(lab);
    free(ref);
    return st;
}
