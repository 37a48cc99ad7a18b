/* The preprocessing plan (plan.h): nnU-Net's intensity rules per channel, a target spacing and
 * the crop to the non-zero region; computed from the training cases, kept as JSON in model
 * files ("diffcl.plan"), applied to a case and inverted for its prediction. docs/data.md. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "data/data_internal.h"
#include "data/plan_internal.h"
#include "diffcl/plan.h"
#include "tensor/tensor_internal.h"

#define PLAN_VERSION 1
#define ANISOTROPY 3.0       /* nnU-Net's threshold for a separate low-resolution axis */
#define MASK_NORM_RATIO 0.75 /* use_mask_for_norm when cropping keeps < 3/4 (median) */
#define CT_SAMPLES 100000    /* foreground voxels kept per case for the CT statistics */
#define CT_LO 0.5            /* percentiles of the CT clip */
#define CT_HI 99.5
#define MAX_JSON (64u << 20) /* a safetensors header larger than this is not read */

typedef struct plan_channel {
    char *name;
    int scheme, use_mask;
    double lo, hi, mean, std;
} plan_channel;

struct diffcl_plan {
    int ndim, C;
    plan_channel *ch;
    int resample;
    double target[3];
    int interp, lowres_linear, crop;
};

void diffcl_plan_options_init(diffcl_plan_options *opts)
{
    if (!opts) return;
    diffcl_plan_options d = DIFFCL_PLAN_OPTIONS_INIT;
    *opts = d;
}

void diffcl_plan_free(diffcl_plan *p)
{
    if (!p) return;
    for (int c = 0; p->ch && c < p->C; c++) free(p->ch[c].name);
    free(p->ch);
    free(p);
}

void diffcl_plan_string_free(char *s)
{
    free(s);
}

static diffcl_plan *plan_new(int ndim, int C)
{
    diffcl_plan *p = dc_calloc_raw(1, sizeof *p);
    if (!p) return NULL;
    p->ch = dc_calloc_raw((size_t)(C > 0 ? C : 1), sizeof *p->ch);
    if (!p->ch) {
        free(p);
        return NULL;
    }
    p->ndim = ndim;
    p->C = C;
    for (int a = 0; a < 3; a++) p->target[a] = 1.0;
    return p;
}

int diffcl_plan_num_channels(const diffcl_plan *p)
{
    return p ? p->C : 0;
}
int diffcl_plan_ndim(const diffcl_plan *p)
{
    return p ? p->ndim : 0;
}

int diffcl_plan_target_spacing(const diffcl_plan *p, double spacing[3])
{
    if (!p || !spacing) return -1;
    for (int a = 0; a < 3; a++) spacing[a] = p->target[a];
    return p->resample;
}

diffcl_status diffcl_plan_channel(const diffcl_plan *p, int c, diffcl_plan_channel_info *info)
{
    DC_CHECK_ARG(p && info, "diffcl_plan_channel: NULL argument");
    DC_CHECK_ARG(c >= 0 && c < p->C, "diffcl_plan_channel: channel %d out of range (%d)", c, p->C);
    diffcl_plan_channel_info i = DIFFCL_PLAN_CHANNEL_INFO_INIT;
    i.scheme = p->ch[c].scheme;
    i.use_mask = p->ch[c].use_mask;
    i.clip_lo = p->ch[c].lo;
    i.clip_hi = p->ch[c].hi;
    i.mean = p->ch[c].mean;
    i.std = p->ch[c].std;
    return dc_options_write(info, &i, sizeof i, sizeof(size_t) + sizeof(int), 0,
                            "diffcl_plan_channel");
}

/* ------------------------------------------------------------- resampling ---- */

enum { K_NEAREST = 0, K_LINEAR = 1, K_CUBIC = 2 };

/* Keys' cubic convolution kernel, a = -0.5. */
static double cubic_w(double x)
{
    x = fabs(x);
    if (x <= 1) return (1.5 * x - 2.5) * x * x + 1;
    if (x < 2) return ((-0.5 * x + 2.5) * x - 4) * x + 2;
    return 0;
}

/* Resample axis @p axis of a contiguous block [outer, n_in, inner] to n_out samples. Centres
 * map as diffcl_resize (align_corners=False), the border clamped. Returns NULL when out of
 * memory. The same size copies. */
static float *resample_axis(const float *in, int64_t outer, int64_t n_in, int64_t inner,
                            int64_t n_out, int kind)
{
    float *out = dc_malloc((size_t)(outer * n_out * inner) * sizeof *out);
    if (!out) return NULL;
    if (n_out == n_in) {
        memcpy(out, in, (size_t)(outer * n_in * inner) * sizeof *out);
        return out;
    }
    double scale = (double)n_in / (double)n_out;
    for (int64_t j = 0; j < n_out; j++) {
        double src = (j + 0.5) * scale - 0.5;
        int64_t idx[4];
        double w[4];
        int nw = 0;
        if (kind == K_NEAREST) {
            int64_t i = (int64_t)floor((j + 0.5) * scale);
            idx[0] = i < n_in ? i : n_in - 1;
            w[0] = 1;
            nw = 1;
        } else if (kind == K_LINEAR) {
            if (src < 0) src = 0;
            int64_t i0 = (int64_t)floor(src);
            if (i0 > n_in - 1) i0 = n_in - 1;
            int64_t i1 = i0 + 1 < n_in ? i0 + 1 : n_in - 1;
            double f = src - (double)i0;
            idx[0] = i0, w[0] = 1 - f, idx[1] = i1, w[1] = f;
            nw = 2;
        } else {
            int64_t i0 = (int64_t)floor(src);
            double f = src - (double)i0;
            for (int k = 0; k < 4; k++) {
                int64_t i = i0 - 1 + k;
                idx[k] = i < 0 ? 0 : (i >= n_in ? n_in - 1 : i);
                w[k] = cubic_w(f - (k - 1));
            }
            nw = 4;
        }
        for (int64_t o = 0; o < outer; o++) {
            float *dst = out + (o * n_out + j) * inner;
            const float *base = in + o * n_in * inner;
            for (int64_t x = 0; x < inner; x++) {
                double v = 0;
                for (int k = 0; k < nw; k++) v += w[k] * base[idx[k] * inner + x];
                dst[x] = (float)v;
            }
        }
    }
    return out;
}

/* Resample n_vol volumes of spatial shape @p in (nd axes) to @p out, axis a with kinds[a].
 * The result is a new malloc'ed buffer, or NULL when out of memory. */
static float *resample_volumes(const float *src, int64_t n_vol, int nd, const int64_t *in,
                               const int64_t *out, const int *kinds)
{
    int64_t cur[3];
    for (int a = 0; a < nd; a++) cur[a] = in[a];
    size_t total = (size_t)n_vol;
    for (int a = 0; a < nd; a++) total *= (size_t)in[a];
    float *buf = dc_malloc((total ? total : 1) * sizeof *buf);
    if (!buf) return NULL;
    memcpy(buf, src, total * sizeof *buf);
    for (int a = 0; a < nd; a++) {
        if (cur[a] == out[a]) continue;
        int64_t outer = n_vol, inner = 1;
        for (int b = 0; b < a; b++) outer *= cur[b];
        for (int b = a + 1; b < nd; b++) inner *= cur[b];
        float *next = resample_axis(buf, outer, cur[a], inner, out[a], kinds[a]);
        free(buf);
        if (!next) return NULL;
        buf = next;
        cur[a] = out[a];
    }
    return buf;
}

/* The low-resolution axis of a case (nnU-Net's get_do_separate_z on the case's spacing,
 * else on the target's), or -1. */
static int lowres_axis(int nd, const double *spacing, const double *target)
{
    for (int pass = 0; pass < 2; pass++) {
        const double *s = pass ? target : spacing;
        double mx = s[0], mn = s[0];
        int am = 0;
        for (int a = 1; a < nd; a++) {
            if (s[a] > mx) mx = s[a], am = a;
            if (s[a] < mn) mn = s[a];
        }
        if (mn > 0 && mx / mn > ANISOTROPY) return am;
    }
    return -1;
}

/* Per-axis kinds for images (@p image) or for label maps and probabilities. */
static void axis_kinds(const diffcl_plan *p, int nd, const double *spacing, int image, int *kinds)
{
    int low = lowres_axis(nd, spacing, p->target + (3 - nd));
    for (int a = 0; a < nd; a++) {
        if (a == low)
            kinds[a] = p->lowres_linear ? K_LINEAR : K_NEAREST;
        else
            kinds[a] = image && p->interp == DIFFCL_PLAN_INTERP_CUBIC ? K_CUBIC : K_LINEAR;
    }
}

/* ---------------------------------------------------------- case geometry ---- */

/* The box of voxels where any channel is non-zero; the whole image when none is. */
static void nonzero_box(const float *x, int64_t C, int nd, const int64_t *sh, int64_t *lo,
                        int64_t *hi)
{
    int64_t per = 1;
    for (int a = 0; a < nd; a++) per *= sh[a], lo[a] = sh[a], hi[a] = 0;
    int any = 0;
    for (int64_t i = 0; i < per; i++) {
        int nz = 0;
        for (int64_t c = 0; c < C && !nz; c++) nz = x[c * per + i] != 0;
        if (!nz) continue;
        any = 1;
        int64_t r = i;
        for (int a = nd - 1; a >= 0; a--) {
            int64_t v = r % sh[a];
            r /= sh[a];
            if (v < lo[a]) lo[a] = v;
            if (v + 1 > hi[a]) hi[a] = v + 1;
        }
    }
    if (!any)
        for (int a = 0; a < nd; a++) lo[a] = 0, hi[a] = sh[a];
}

/* Copy the box [lo, hi) of n_vol volumes of shape sh (nd axes) into a new buffer. */
static float *crop_volumes(const float *x, int64_t n_vol, int nd, const int64_t *sh,
                           const int64_t *lo, const int64_t *hi)
{
    int64_t s3[3] = {1, 1, 1}, l3[3] = {0, 0, 0}, h3[3] = {1, 1, 1};
    for (int a = 0; a < nd; a++)
        s3[3 - nd + a] = sh[a], l3[3 - nd + a] = lo[a], h3[3 - nd + a] = hi[a];
    int64_t n0 = h3[0] - l3[0], n1 = h3[1] - l3[1], n2 = h3[2] - l3[2];
    float *o = dc_malloc((size_t)(n_vol * n0 * n1 * n2 + 1) * sizeof *o);
    if (!o) return NULL;
    float *d = o;
    for (int64_t v = 0; v < n_vol; v++)
        for (int64_t i = l3[0]; i < h3[0]; i++)
            for (int64_t j = l3[1]; j < h3[1]; j++) {
                const float *src = x + ((v * s3[0] + i) * s3[1] + j) * s3[2] + l3[2];
                memcpy(d, src, (size_t)n2 * sizeof *d);
                d += n2;
            }
    return o;
}

/* Spatial info of an image [C, ...] checked against the plan (ndim, channels). */
static diffcl_status image_dims(const diffcl_plan *p, const diffcl_tensor *image, int *nd,
                                int64_t *sh, const char *fn)
{
    if (image->dtype != DIFFCL_F32)
        return dc_error(DIFFCL_ERR_DTYPE, "%s: image must be f32, not %s", fn,
                        diffcl_dtype_name(image->dtype));
    *nd = image->ndim - 1;
    if (*nd != p->ndim || image->shape[0] != p->C)
        return dc_error(DIFFCL_ERR_SHAPE,
                        "%s: image %s does not fit the plan (%d channels, %d spatial axes)", fn,
                        dc_shape_str(image), p->C, p->ndim);
    for (int a = 0; a < *nd; a++) sh[a] = image->shape[a + 1];
    return DIFFCL_OK;
}

/* ------------------------------------------------------------ computation ---- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* numpy.percentile (linear) of sorted values. */
static double percentile(const double *v, int64_t n, double q)
{
    if (n <= 0) return 0;
    double pos = q / 100.0 * (double)(n - 1);
    int64_t i = (int64_t)floor(pos);
    if (i >= n - 1) return v[n - 1];
    double f = pos - (double)i;
    return v[i] + f * (v[i + 1] - v[i]);
}

static double median(double *v, int64_t n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

typedef struct fg_values {
    double *v;
    int64_t n, cap;
} fg_values;

static int fg_push(fg_values *f, double x)
{
    if (f->n == f->cap) {
        int64_t cap = f->cap ? 2 * f->cap : 65536;
        double *v = dc_realloc(f->v, (size_t)cap * sizeof *v);
        if (!v) return -1;
        f->v = v, f->cap = cap;
    }
    f->v[f->n++] = x;
    return 0;
}

static int channel_is_ct(const diffcl_dataset *ds, int c, unsigned forced)
{
    if (c < 32 && (forced >> c) & 1u) return 1;
    const char *name = diffcl_dataset_channel_name(ds, c);
    return name && !strcasecmp(name, "CT");
}

static int channel_no_norm(const diffcl_dataset *ds, int c)
{
    const char *name = diffcl_dataset_channel_name(ds, c);
    return name && (!strcasecmp(name, "noNorm") || !strcasecmp(name, "none"));
}

/* The plan's channels from the first case: names and schemes (CT from dataset.json or the
 * options, none for noNorm, else z-score), and the CT foreground samples to fill (NULL when
 * no channel is CT). */
static diffcl_status plan_channels(const diffcl_dataset *ds, const diffcl_plan_options *o, int nd,
                                   int C, diffcl_plan **p, fg_values **fg, const char *fn)
{
    *p = plan_new(nd, C);
    *fg = dc_calloc_raw((size_t)C, sizeof **fg);
    if (!*p || !*fg) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    int any_ct = 0;
    for (int c = 0; c < C; c++) {
        const char *name = diffcl_dataset_channel_name(ds, c);
        if (name && !((*p)->ch[c].name = dc_strdup(name)))
            return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
        (*p)->ch[c].scheme = channel_is_ct(ds, c, o->ct_channels) ? DIFFCL_PLAN_CT
                             : channel_no_norm(ds, c)             ? DIFFCL_PLAN_NONE
                                                                  : DIFFCL_PLAN_ZSCORE;
        any_ct |= (*p)->ch[c].scheme == DIFFCL_PLAN_CT;
    }
    if (!any_ct) {
        free(*fg);
        *fg = NULL;
    }
    return DIFFCL_OK;
}

/* Up to CT_SAMPLES label-foreground intensities of each CT channel of one labeled case, every
 * k-th voxel (deterministic). */
static diffcl_status sample_ct_foreground(const diffcl_plan *p, fg_values *fg,
                                          const diffcl_tensor *img, const diffcl_tensor *lab,
                                          int64_t per, const char *fn)
{
    const uint8_t *l = (const uint8_t *)diffcl_tensor_data_const(lab);
    int64_t n_fg = 0;
    for (int64_t v = 0; v < per; v++) n_fg += l[v] != 0;
    int64_t step = n_fg > CT_SAMPLES ? (n_fg + CT_SAMPLES - 1) / CT_SAMPLES : 1;
    for (int c = 0; c < p->C; c++) {
        if (p->ch[c].scheme != DIFFCL_PLAN_CT) continue;
        const float *x = dc_f32(img) + (int64_t)c * per;
        int64_t seen = 0;
        for (int64_t v = 0; v < per; v++) {
            if (!l[v] || seen++ % step) continue;
            if (fg_push(&fg[c], x[v]))
                return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
        }
    }
    return DIFFCL_OK;
}

/* The plan's numbers from what the cases gave: target spacing (given, else the median), the
 * z-score mask rule, the CT clip range, mean and std. */
static diffcl_status plan_statistics(diffcl_plan *p, const diffcl_plan_options *opts,
                                     double *const sp[3], double *ratio, int64_t n_all,
                                     fg_values *fg, const char *fn)
{
    const diffcl_plan_options o = *opts;
    const int nd = p->ndim, C = p->C;
    diffcl_status s = DIFFCL_OK;
    p->resample = o.resample;
    p->interp = o.interp;
    p->lowres_linear = o.lowres_linear;
    p->crop = o.crop;
    /* 2-D plans keep their spacing in entries 1 and 2, as diffcl_plan_geometry */
    int given = o.target_spacing[0] > 0 || o.target_spacing[1] > 0 || o.target_spacing[2] > 0;
    for (int a = 0; a < nd; a++) {
        double t = given ? o.target_spacing[3 - nd + a] : median(sp[a], n_all);
        if (!(t > 0)) {
            s = dc_error(DIFFCL_ERR_INVALID_ARGUMENT, "%s: target spacing %g of axis %d", fn, t, a);
            break;
        }
        p->target[3 - nd + a] = t;
    }
    int use_mask = median(ratio, n_all) < MASK_NORM_RATIO && o.crop;
    for (int c = 0; c < C && s == DIFFCL_OK; c++) {
        plan_channel *pc = &p->ch[c];
        if (pc->scheme == DIFFCL_PLAN_ZSCORE) pc->use_mask = use_mask;
        if (pc->scheme != DIFFCL_PLAN_CT) continue;
        if (!fg[c].n) {
            s = dc_error(DIFFCL_ERR_INVALID_ARGUMENT,
                         "%s: CT channel %d: the labeled cases have no foreground voxel", fn, c);
            break;
        }
        double sum = 0, sum2 = 0;
        for (int64_t v = 0; v < fg[c].n; v++) sum += fg[c].v[v];
        pc->mean = sum / (double)fg[c].n;
        for (int64_t v = 0; v < fg[c].n; v++)
            sum2 += (fg[c].v[v] - pc->mean) * (fg[c].v[v] - pc->mean);
        pc->std = sqrt(sum2 / (double)fg[c].n);
        qsort(fg[c].v, (size_t)fg[c].n, sizeof(double), cmp_double);
        pc->lo = percentile(fg[c].v, fg[c].n, CT_LO);
        pc->hi = percentile(fg[c].v, fg[c].n, CT_HI);
    }
    return s;
}

diffcl_status diffcl_plan_compute(const diffcl_dataset *ds, const diffcl_split *split,
                                  const diffcl_plan_options *opts, diffcl_plan **out)
{
    const char *fn = "diffcl_plan_compute";
    DC_CHECK_ARG(out, "%s: out is NULL", fn);
    *out = NULL;
    DC_CHECK_ARG(ds, "%s: ds is NULL", fn);
    diffcl_plan_options o = DIFFCL_PLAN_OPTIONS_INIT;
    DC_TRY(dc_options_read(&o, sizeof o, opts, sizeof o, 0, fn));
    DC_CHECK_ARG(o.interp == DIFFCL_PLAN_INTERP_CUBIC || o.interp == DIFFCL_PLAN_INTERP_LINEAR,
                 "%s: bad interp %d", fn, o.interp);
    for (int a = 0; a < 3; a++)
        DC_CHECK_ARG(o.target_spacing[a] >= 0 && isfinite(o.target_spacing[a]),
                     "%s: bad target spacing %g", fn, o.target_spacing[a]);
    int64_t n_lab = split ? split->n_labeled : diffcl_dataset_size(ds);
    int64_t n_all = split ? split->n_labeled + split->n_unlabeled : n_lab;
    DC_CHECK_ARG(n_all > 0, "%s: no training case", fn);
    double *sp[3] = {NULL, NULL, NULL}, *ratio = NULL;
    fg_values *fg = NULL;
    diffcl_plan *p = NULL;
    diffcl_status s = DIFFCL_OK;
    int nd = 0, C = 0;
    for (int a = 0; a < 3 && s == DIFFCL_OK; a++)
        if (!(sp[a] = dc_malloc((size_t)n_all * sizeof(double)))) s = DIFFCL_ERR_OUT_OF_MEMORY;
    if (s == DIFFCL_OK && !(ratio = dc_malloc((size_t)n_all * sizeof(double))))
        s = DIFFCL_ERR_OUT_OF_MEMORY;
    if (s != DIFFCL_OK) s = dc_error(s, "%s: out of memory", fn);
    for (int64_t k = 0; k < n_all && s == DIFFCL_OK; k++) {
        int labeled = k < n_lab;
        int64_t i = !split ? k : labeled ? split->labeled[k] : split->unlabeled[k - n_lab];
        diffcl_tensor *img = NULL, *lab = NULL;
        diffcl_image_meta m;
        diffcl_image_meta_init(&m);
        int want_label = labeled && fg != NULL;
        if (k == 0) want_label = labeled; /* channels are unknown yet: read it to be sure */
        s = diffcl_dataset_load(ds, i, &img, want_label ? &lab : NULL, &m);
        if (s != DIFFCL_OK) break;
        if (k == 0) {
            nd = img->ndim - 1;
            C = (int)img->shape[0];
            s = plan_channels(ds, &o, nd, C, &p, &fg, fn);
        } else if (img->ndim - 1 != nd || img->shape[0] != C) {
            s = dc_error(DIFFCL_ERR_SHAPE, "%s: case '%s' has shape %s, the first one %d channels",
                         fn, diffcl_dataset_case_id(ds, i), dc_shape_str(img), C);
        }
        if (s == DIFFCL_OK) {
            int64_t sh[3], lo[3], hi[3], per = 1, box = 1;
            for (int a = 0; a < nd; a++) sh[a] = img->shape[a + 1];
            nonzero_box(dc_f32(img), C, nd, sh, lo, hi);
            for (int a = 0; a < nd; a++) per *= sh[a], box *= hi[a] - lo[a];
            ratio[k] = per ? (double)box / (double)per : 1.0;
            for (int a = 0; a < nd; a++) sp[a][k] = m.spacing[a];
            if (fg && lab) s = sample_ct_foreground(p, fg, img, lab, per, fn);
        }
        diffcl_tensor_free(img);
        diffcl_tensor_free(lab);
    }
    if (s == DIFFCL_OK) s = plan_statistics(p, &o, sp, ratio, n_all, fg, fn);
    for (int c = 0; fg && c < C; c++) free(fg[c].v);
    free(fg);
    for (int a = 0; a < 3; a++) free(sp[a]);
    free(ratio);
    if (s != DIFFCL_OK) {
        diffcl_plan_free(p);
        return s;
    }
    *out = p;
    return DIFFCL_OK;
}

/* ------------------------------------------------------------------- JSON ---- */

static const char *scheme_name(int s)
{
    return s == DIFFCL_PLAN_CT ? "ct" : s == DIFFCL_PLAN_NONE ? "none" : "zscore";
}

diffcl_status diffcl_plan_to_json(const diffcl_plan *p, char **out)
{
    DC_CHECK_ARG(out, "diffcl_plan_to_json: out is NULL");
    *out = NULL;
    DC_CHECK_ARG(p, "diffcl_plan_to_json: plan is NULL");
    cJSON *j = cJSON_CreateObject(), *chs = cJSON_CreateArray(), *ts = cJSON_CreateArray();
    int ok = j && chs && ts;
    if (ok) {
        cJSON_AddNumberToObject(j, "version", PLAN_VERSION);
        cJSON_AddNumberToObject(j, "ndim", p->ndim);
        cJSON_AddNumberToObject(j, "resample", p->resample);
        for (int a = 3 - p->ndim; a < 3; a++)
            cJSON_AddItemToArray(ts, cJSON_CreateNumber(p->target[a]));
        cJSON_AddItemToObject(j, "target_spacing", ts);
        ts = NULL;
        cJSON_AddStringToObject(j, "interp",
                                p->interp == DIFFCL_PLAN_INTERP_CUBIC ? "cubic" : "linear");
        cJSON_AddStringToObject(j, "lowres_interp", p->lowres_linear ? "linear" : "nearest");
        cJSON_AddNumberToObject(j, "crop", p->crop);
        for (int c = 0; c < p->C; c++) {
            cJSON *x = cJSON_CreateObject();
            if (!x) {
                ok = 0;
                break;
            }
            if (p->ch[c].name) cJSON_AddStringToObject(x, "name", p->ch[c].name);
            cJSON_AddStringToObject(x, "scheme", scheme_name(p->ch[c].scheme));
            cJSON_AddNumberToObject(x, "use_mask", p->ch[c].use_mask);
            if (p->ch[c].scheme == DIFFCL_PLAN_CT) {
                cJSON_AddNumberToObject(x, "clip_lo", p->ch[c].lo);
                cJSON_AddNumberToObject(x, "clip_hi", p->ch[c].hi);
                cJSON_AddNumberToObject(x, "mean", p->ch[c].mean);
                cJSON_AddNumberToObject(x, "std", p->ch[c].std);
            }
            cJSON_AddItemToArray(chs, x);
        }
        cJSON_AddItemToObject(j, "channels", chs);
        chs = NULL;
    }
    char *txt = ok ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    cJSON_Delete(chs);
    cJSON_Delete(ts);
    if (!txt) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "diffcl_plan_to_json: out of memory");
    *out = txt;
    return DIFFCL_OK;
}

static int json_number(const cJSON *o, const char *key, double *v)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(x)) return 0;
    *v = x->valuedouble;
    return 1;
}

diffcl_status diffcl_plan_from_json(const char *json, diffcl_plan **out)
{
    const char *fn = "diffcl_plan_from_json";
    DC_CHECK_ARG(out, "%s: out is NULL", fn);
    *out = NULL;
    DC_CHECK_ARG(json, "%s: json is NULL", fn);
    cJSON *j = cJSON_Parse(json);
    if (!j) return dc_error(DIFFCL_ERR_FORMAT, "%s: the plan is not valid JSON", fn);
    double version = 0, ndim = 0, resample = 0, crop = 1;
    const cJSON *chs = cJSON_GetObjectItemCaseSensitive(j, "channels");
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(j, "target_spacing");
    diffcl_status s = DIFFCL_OK;
    if (!json_number(j, "version", &version) || !json_number(j, "ndim", &ndim) ||
        !json_number(j, "resample", &resample) || !cJSON_IsArray(chs) || !cJSON_IsArray(ts) ||
        (ndim != 2 && ndim != 3) || cJSON_GetArraySize(ts) != (int)ndim ||
        cJSON_GetArraySize(chs) < 1)
        s = dc_error(DIFFCL_ERR_FORMAT,
                     "%s: fields version, ndim, resample, target_spacing or "
                     "channels missing or malformed",
                     fn);
    else if (version > PLAN_VERSION)
        s = dc_error(DIFFCL_ERR_UNSUPPORTED, "%s: plan version %g is newer than this library's %d",
                     fn, version, PLAN_VERSION);
    json_number(j, "crop", &crop);
    diffcl_plan *p = NULL;
    if (s == DIFFCL_OK && !(p = plan_new((int)ndim, cJSON_GetArraySize(chs))))
        s = dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    if (s == DIFFCL_OK) {
        p->resample = resample != 0;
        p->crop = crop != 0;
        const char *in = dc_json_str_item(j, "interp"), *lr = dc_json_str_item(j, "lowres_interp");
        p->interp =
            in && !strcmp(in, "linear") ? DIFFCL_PLAN_INTERP_LINEAR : DIFFCL_PLAN_INTERP_CUBIC;
        p->lowres_linear = lr && !strcmp(lr, "linear");
        for (int a = 0; a < p->ndim; a++) {
            const cJSON *x = cJSON_GetArrayItem(ts, a);
            if (!cJSON_IsNumber(x) || !(x->valuedouble > 0))
                s = dc_error(DIFFCL_ERR_FORMAT, "%s: bad target_spacing", fn);
            else
                p->target[3 - p->ndim + a] = x->valuedouble;
        }
        for (int c = 0; c < p->C && s == DIFFCL_OK; c++) {
            const cJSON *x = cJSON_GetArrayItem(chs, c);
            const char *sc = dc_json_str_item(x, "scheme"), *name = dc_json_str_item(x, "name");
            plan_channel *pc = &p->ch[c];
            double um = 0;
            json_number(x, "use_mask", &um);
            pc->use_mask = um != 0;
            if (name && !(pc->name = dc_strdup(name))) {
                s = dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
                break;
            }
            if (sc && !strcmp(sc, "zscore")) {
                pc->scheme = DIFFCL_PLAN_ZSCORE;
            } else if (sc && !strcmp(sc, "none")) {
                pc->scheme = DIFFCL_PLAN_NONE;
            } else if (sc && !strcmp(sc, "ct")) {
                pc->scheme = DIFFCL_PLAN_CT;
                if (!json_number(x, "clip_lo", &pc->lo) || !json_number(x, "clip_hi", &pc->hi) ||
                    !json_number(x, "mean", &pc->mean) || !json_number(x, "std", &pc->std))
                    s = dc_error(DIFFCL_ERR_FORMAT, "%s: CT channel %d lacks its statistics", fn,
                                 c);
            } else {
                s = dc_error(DIFFCL_ERR_FORMAT, "%s: channel %d: unknown scheme '%s'", fn, c,
                             sc ? sc : "(none)");
            }
        }
    }
    cJSON_Delete(j);
    if (s != DIFFCL_OK) {
        diffcl_plan_free(p);
        return s;
    }
    *out = p;
    return DIFFCL_OK;
}

const char *dc_json_str_item(const cJSON *o, const char *key)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(x) ? x->valuestring : NULL;
}

diffcl_status dc_plan_load_json(const char *path, char **json)
{
    *json = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return dc_error(DIFFCL_ERR_IO, "cannot open %s", path);
    unsigned char b[8];
    diffcl_status s = DIFFCL_OK;
    char *hdr = NULL;
    uint64_t n = 0;
    if (fread(b, 1, 8, f) != 8) {
        s = dc_error(DIFFCL_ERR_FORMAT, "%s: not a safetensors file", path);
    } else {
        for (int i = 7; i >= 0; i--) n = n << 8 | b[i];
        if (n == 0 || n > MAX_JSON)
            s = dc_error(DIFFCL_ERR_FORMAT, "%s: bad safetensors header length", path);
    }
    if (s == DIFFCL_OK && !(hdr = dc_malloc((size_t)n + 1)))
        s = dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    if (s == DIFFCL_OK && fread(hdr, 1, (size_t)n, f) != (size_t)n)
        s = dc_error(DIFFCL_ERR_FORMAT, "%s: truncated safetensors header", path);
    fclose(f);
    if (s != DIFFCL_OK) {
        free(hdr);
        return s;
    }
    hdr[n] = 0;
    cJSON *root = cJSON_Parse(hdr);
    free(hdr);
    if (!root) return dc_error(DIFFCL_ERR_FORMAT, "%s: the safetensors header is not JSON", path);
    const char *pj =
        dc_json_str_item(cJSON_GetObjectItemCaseSensitive(root, "__metadata__"), "diffcl.plan");
    if (!pj)
        s = dc_error(DIFFCL_ERR_NOT_FOUND, "%s: the model file has no preprocessing plan", path);
    else if (!(*json = dc_strdup(pj)))
        s = dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    cJSON_Delete(root);
    return s;
}

diffcl_status diffcl_plan_load(const char *path, diffcl_plan **out)
{
    DC_CHECK_ARG(out, "diffcl_plan_load: out is NULL");
    *out = NULL;
    DC_CHECK_ARG(path, "diffcl_plan_load: path is NULL");
    char *json = NULL;
    DC_TRY(dc_plan_load_json(path, &json));
    diffcl_status s = diffcl_plan_from_json(json, out);
    free(json);
    if (s != DIFFCL_OK) dc_error_prefix("%s", path);
    return s;
}

/* ------------------------------------------------------- apply and invert ---- */

/* Normalise the channels of a cropped buffer [C, per] in place; @p mask (per voxels: any
 * channel non-zero before normalisation) restricts the z-score of use_mask channels. */
static void normalize(const diffcl_plan *p, float *x, int64_t per, const uint8_t *mask)
{
    for (int64_t c = 0; c < p->C; c++) {
        const plan_channel *pc = &p->ch[c];
        float *y = x + c * per;
        if (pc->scheme == DIFFCL_PLAN_NONE) continue;
        if (pc->scheme == DIFFCL_PLAN_CT) {
            double inv = 1.0 / (pc->std > 1e-8 ? pc->std : 1e-8);
            for (int64_t i = 0; i < per; i++) {
                double v = y[i] < pc->lo ? pc->lo : y[i] > pc->hi ? pc->hi : y[i];
                y[i] = (float)((v - pc->mean) * inv);
            }
            continue;
        }
        const uint8_t *mk = pc->use_mask ? mask : NULL;
        double sum = 0, sum2 = 0;
        int64_t n = 0;
        for (int64_t i = 0; i < per; i++) {
            if (mk && !mk[i]) continue;
            sum += y[i];
            n++;
        }
        double m = n ? sum / (double)n : 0;
        for (int64_t i = 0; i < per; i++) {
            if (mk && !mk[i]) continue;
            sum2 += (y[i] - m) * (y[i] - m);
        }
        double sd = n ? sqrt(sum2 / (double)n) : 0;
        double inv = 1.0 / (sd > 1e-8 ? sd : 1e-8);
        for (int64_t i = 0; i < per; i++) y[i] = mk && !mk[i] ? 0.0f : (float)((y[i] - m) * inv);
    }
}

static diffcl_tensor *tensor_from(diffcl_context *ctx, diffcl_dtype dt, int64_t lead, int nd,
                                  const int64_t *sh)
{
    int64_t shape[4];
    int n = 0;
    if (lead >= 0) shape[n++] = lead;
    for (int a = 0; a < nd; a++) shape[n++] = sh[a];
    return dc_tensor_empty(ctx, dt, n, shape);
}

/* The label through the plan: cropped as the image, one-hot maps resampled (linear, the
 * low-resolution axis as the plan says) to the planned shape @p ns, argmax. */
static diffcl_status plan_label(const diffcl_plan *p, const diffcl_tensor *label, int nd,
                                const int64_t sh[3], const int64_t lo[3], const int64_t hi[3],
                                const int64_t ns[3], const double spacing[3], diffcl_tensor **out,
                                const char *fn)
{
    diffcl_status s = DIFFCL_OK;
    int64_t cs[3], per = 1;
    for (int a = 0; a < nd; a++) cs[a] = hi[a] - lo[a], per *= cs[a];
    float *lf = NULL;
    diffcl_tensor *ol = NULL;
    /* the label: one-hot maps, linear (low-resolution axis as the plan), argmax */
    const uint8_t *l = (const uint8_t *)diffcl_tensor_data((diffcl_tensor *)label);
    int64_t full = 1, nper = 1;
    for (int a = 0; a < nd; a++) full *= sh[a], nper *= ns[a];
    int K = 1;
    for (int64_t i = 0; i < full; i++)
        if (l[i] + 1 > K) K = l[i] + 1;
    diffcl_tensor *lc = tensor_from(label->ctx, DIFFCL_F32, -1, nd, sh);
    if (!lc) s = dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    float *oh = NULL;
    if (s == DIFFCL_OK) {
        float *lv = dc_f32(lc);
        for (int64_t i = 0; i < full; i++) lv[i] = (float)l[i];
        lf = crop_volumes(lv, 1, nd, sh, lo, hi);
        oh = lf ? dc_malloc((size_t)(K * per) * sizeof *oh) : NULL;
    }
    diffcl_tensor_free(lc);
    float *r = NULL;
    int lk[3];
    axis_kinds(p, nd, spacing, 0, lk);
    if (oh) {
        for (int k = 0; k < K; k++)
            for (int64_t i = 0; i < per; i++) oh[k * per + i] = lf[i] == (float)k ? 1.0f : 0.0f;
        int same = 1;
        for (int a = 0; a < nd; a++) same &= ns[a] == cs[a];
        r = same ? NULL : resample_volumes(oh, K, nd, cs, ns, lk);
        if (same) r = oh, oh = NULL;
    }
    ol = r ? tensor_from(label->ctx, DIFFCL_U8, -1, nd, ns) : NULL;
    if (ol) {
        uint8_t *d = (uint8_t *)diffcl_tensor_data(ol);
        for (int64_t i = 0; i < nper; i++) {
            int best = 0;
            for (int k = 1; k < K; k++)
                if (r[k * nper + i] > r[best * nper + i]) best = k;
            d[i] = (uint8_t)best;
        }
    } else if (s == DIFFCL_OK) {
        s = dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    free(oh);
    free(r);
    free(lf);
    *out = ol;
    return s;
}

diffcl_status diffcl_plan_apply(const diffcl_plan *p, const diffcl_tensor *image,
                                const diffcl_tensor *label, const diffcl_image_meta *meta,
                                diffcl_tensor **out_image, diffcl_tensor **out_label,
                                diffcl_plan_geometry *geom)
{
    const char *fn = "diffcl_plan_apply";
    DC_CHECK_ARG(out_image, "%s: out_image is NULL", fn);
    *out_image = NULL;
    if (out_label) *out_label = NULL;
    DC_CHECK_ARG(p && image, "%s: plan and image must not be NULL", fn);
    DC_CHECK_ARG(!label || out_label, "%s: a label needs out_label", fn);
    int nd = 0;
    int64_t sh[3];
    DC_TRY(image_dims(p, image, &nd, sh, fn));
    if (label) {
        int ok = label->dtype == DIFFCL_U8 && label->ndim == nd;
        for (int a = 0; ok && a < nd; a++) ok = label->shape[a] == sh[a];
        if (!ok)
            return dc_error(DIFFCL_ERR_SHAPE, "%s: label %s does not match image %s", fn,
                            dc_shape_str(label), dc_shape_str(image));
    }
    diffcl_image_meta m;
    diffcl_image_meta_init(&m);
    if (meta) DC_TRY(dc_options_read(&m, sizeof m, meta, sizeof m, 1, fn));
    double spacing[3];
    for (int a = 0; a < nd; a++) spacing[a] = m.spacing[a] > 0 ? m.spacing[a] : 1.0;
    int64_t C = p->C, lo[3] = {0, 0, 0}, hi[3], cs[3], ns[3];
    for (int a = 0; a < nd; a++) hi[a] = sh[a];
    diffcl_tensor *ic = dc_tensor_empty(image->ctx, DIFFCL_F32, image->ndim, image->shape);
    if (!ic) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    dc_copy_into(ic, image); /* contiguous */
    if (p->crop) nonzero_box(dc_f32(ic), C, nd, sh, lo, hi);
    int64_t per = 1;
    for (int a = 0; a < nd; a++) cs[a] = hi[a] - lo[a], per *= cs[a];
    float *x = crop_volumes(dc_f32(ic), C, nd, sh, lo, hi);
    uint8_t *mask = dc_malloc((size_t)per + 1);
    diffcl_status s = DIFFCL_OK;
    if (!x || !mask) s = dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    if (s == DIFFCL_OK) {
        for (int64_t i = 0; i < per; i++) {
            int nz = 0;
            for (int64_t c = 0; c < C && !nz; c++) nz = x[c * per + i] != 0;
            mask[i] = (uint8_t)nz;
        }
        normalize(p, x, per, mask);
    }
    free(mask);
    /* target shape: round(n * spacing / target), at least 1 */
    for (int a = 0; a < nd; a++) {
        double t = p->target[3 - nd + a];
        ns[a] = p->resample ? (int64_t)llround((double)cs[a] * spacing[a] / t) : cs[a];
        if (ns[a] < 1) ns[a] = 1;
    }
    int kinds[3];
    diffcl_tensor *oi = NULL, *ol = NULL;
    if (s == DIFFCL_OK) {
        axis_kinds(p, nd, spacing, 1, kinds);
        float *r = resample_volumes(x, C, nd, cs, ns, kinds);
        oi = r ? tensor_from(image->ctx, DIFFCL_F32, C, nd, ns) : NULL;
        if (oi) memcpy(dc_f32(oi), r, (size_t)dc_numel(oi) * sizeof(float));
        free(r);
        if (!oi) s = dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    if (s == DIFFCL_OK && label) s = plan_label(p, label, nd, sh, lo, hi, ns, spacing, &ol, fn);
    free(x);
    diffcl_tensor_free(ic);
    if (s != DIFFCL_OK) {
        diffcl_tensor_free(oi);
        diffcl_tensor_free(ol);
        return s;
    }
    if (geom) {
        diffcl_plan_geometry g = DIFFCL_PLAN_GEOMETRY_INIT;
        g.ndim = nd;
        for (int a = 0; a < nd; a++) {
            int b = 3 - nd + a;
            g.shape[b] = sh[a], g.crop_lo[b] = lo[a], g.crop_hi[b] = hi[a];
            g.planned[b] = ns[a], g.spacing[b] = spacing[a];
        }
        if (nd == 2) g.shape[0] = g.crop_hi[0] = g.planned[0] = 1;
        s = dc_options_write(geom, &g, sizeof g, sizeof g, 1, fn);
        if (s != DIFFCL_OK) {
            diffcl_tensor_free(oi);
            diffcl_tensor_free(ol);
            return s;
        }
    }
    *out_image = oi;
    if (out_label) *out_label = ol;
    return DIFFCL_OK;
}

diffcl_status diffcl_plan_invert(const diffcl_plan *p, const diffcl_tensor *probs,
                                 const diffcl_plan_geometry *geom, diffcl_tensor **out)
{
    const char *fn = "diffcl_plan_invert";
    DC_CHECK_ARG(out, "%s: out is NULL", fn);
    *out = NULL;
    DC_CHECK_ARG(p && probs && geom, "%s: NULL argument", fn);
    diffcl_plan_geometry g = DIFFCL_PLAN_GEOMETRY_INIT;
    DC_TRY(dc_options_read(&g, sizeof g, geom, sizeof g, 0, fn));
    int nd = g.ndim;
    DC_CHECK_ARG(nd == 2 || nd == 3, "%s: geometry has %d axes", fn, nd);
    if (probs->dtype != DIFFCL_F32 || probs->ndim != nd + 1)
        return dc_error(DIFFCL_ERR_SHAPE, "%s: probabilities %s: expected F32 [K, planned]", fn,
                        dc_shape_str(probs));
    int64_t sh[3], lo[3], hi[3], cs[3], ns[3], K = probs->shape[0];
    for (int a = 0; a < nd; a++) {
        int b = 3 - nd + a;
        sh[a] = g.shape[b], lo[a] = g.crop_lo[b], hi[a] = g.crop_hi[b], ns[a] = g.planned[b];
        cs[a] = hi[a] - lo[a];
        if (probs->shape[a + 1] != ns[a] || lo[a] < 0 || cs[a] < 1 || hi[a] > sh[a])
            return dc_error(DIFFCL_ERR_SHAPE, "%s: probabilities %s do not fit the geometry", fn,
                            dc_shape_str(probs));
    }
    diffcl_tensor *pc = dc_tensor_empty(probs->ctx, DIFFCL_F32, probs->ndim, probs->shape);
    if (!pc) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    dc_copy_into(pc, probs);
    double spacing[3];
    for (int a = 0; a < nd; a++) spacing[a] = g.spacing[3 - nd + a];
    int kinds[3];
    axis_kinds(p, nd, spacing, 0, kinds);
    float *r = resample_volumes(dc_f32(pc), K, nd, ns, cs, kinds);
    diffcl_tensor_free(pc);
    diffcl_tensor *o = r ? tensor_from(probs->ctx, DIFFCL_F32, K, nd, sh) : NULL;
    if (!o) {
        free(r);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    int64_t s3[3] = {1, 1, 1}, l3[3] = {0, 0, 0}, c3[3] = {1, 1, 1};
    for (int a = 0; a < nd; a++)
        s3[3 - nd + a] = sh[a], l3[3 - nd + a] = lo[a], c3[3 - nd + a] = cs[a];
    float *d = dc_f32(o);
    int64_t per = s3[0] * s3[1] * s3[2];
    for (int64_t k = 0; k < K; k++)
        for (int64_t i = 0; i < per; i++) d[k * per + i] = k == 0 ? 1.0f : 0.0f;
    for (int64_t k = 0; k < K; k++)
        for (int64_t i = 0; i < c3[0]; i++)
            for (int64_t j = 0; j < c3[1]; j++)
                memcpy(d + ((k * s3[0] + i + l3[0]) * s3[1] + j + l3[1]) * s3[2] + l3[2],
                       r + ((k * c3[0] + i) * c3[1] + j) * c3[2], (size_t)c3[2] * sizeof *d);
    free(r);
    *out = o;
    return DIFFCL_OK;
}
