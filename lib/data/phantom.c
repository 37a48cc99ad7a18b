/* The built-in phantom data set: an atrium-like blob with attached tubes, a distractor,
 * bias field, partial-volume blur and Rician-like noise; a pure function of
 * (seed, case index, options). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_internal.h"
#include "tensor/tensor_internal.h"

#define N_PERTURB 5
#define MAX_TUBES 8
#define TUBE_SEGS 12

void diffcl_phantom_options_init(diffcl_phantom_options *opts)
{
    if (!opts) return;
    diffcl_phantom_options d = DIFFCL_PHANTOM_OPTIONS_INIT;
    *opts = d;
}

typedef struct tube {
    double p[TUBE_SEGS + 1][3]; /* polyline */
    double radius;
    double lo[3], hi[3]; /* bounding box incl. radius */
} tube;

typedef struct shape {
    double c[3], r[3], rmean;
    double f[N_PERTURB][3], a[N_PERTURB], ph[N_PERTURB];
    int n_tubes;
    tube t[MAX_TUBES];
    int n_distractors;
    double dc[2][2], dr[2]; /* distractor cylinders along axis 0: centre (y, x), radius */
    double bias_k[4][3], bias_ph[4], bias_w[4];
} shape;

static double blob_boundary(const shape *s, const double dir[3])
{
    double R = 1.0;
    for (int k = 0; k < N_PERTURB; k++)
        R += s->a[k] *
             cos(2.0 * M_PI * (s->f[k][0] * dir[0] + s->f[k][1] * dir[1] + s->f[k][2] * dir[2]) +
                 s->ph[k]);
    return R;
}

static double blob_sdf(const shape *s, const double p[3])
{
    double u[3], rho = 0;
    for (int a = 0; a < 3; a++) {
        u[a] = (p[a] - s->c[a]) / s->r[a];
        rho += u[a] * u[a];
    }
    rho = sqrt(rho);
    if (rho < 1e-9) return -s->rmean;
    double dir[3] = {u[0] / rho, u[1] / rho, u[2] / rho};
    return (rho - blob_boundary(s, dir)) * s->rmean;
}

static double seg_dist2(const double p[3], const double a[3], const double b[3], double *t)
{
    double ab[3], ap[3], l2 = 0, dot = 0;
    for (int k = 0; k < 3; k++) {
        ab[k] = b[k] - a[k];
        ap[k] = p[k] - a[k];
        l2 += ab[k] * ab[k];
        dot += ab[k] * ap[k];
    }
    double u = l2 > 0 ? dot / l2 : 0;
    if (u < 0) u = 0;
    if (u > 1) u = 1;
    double d2 = 0;
    for (int k = 0; k < 3; k++) {
        double e = ap[k] - u * ab[k];
        d2 += e * e;
    }
    *t = u;
    return d2;
}

static double tubes_sdf(const shape *s, const double p[3])
{
    double best = 1e30;
    for (int i = 0; i < s->n_tubes; i++) {
        const tube *t = &s->t[i];
        if (p[0] < t->lo[0] || p[0] > t->hi[0] || p[1] < t->lo[1] || p[1] > t->hi[1] ||
            p[2] < t->lo[2] || p[2] > t->hi[2])
            continue;
        for (int g = 0; g < TUBE_SEGS; g++) {
            double u;
            double d = sqrt(seg_dist2(p, t->p[g], t->p[g + 1], &u));
            double frac = (g + u) / TUBE_SEGS;
            double sd = d - t->radius * (1.0 - 0.3 * frac);
            if (sd < best) best = sd;
        }
    }
    return best;
}

static double distractor_sdf(const shape *s, const double p[3])
{
    double best = 1e30;
    for (int i = 0; i < s->n_distractors; i++) {
        double dy = p[1] - s->dc[i][0], dx = p[2] - s->dc[i][1];
        double d = sqrt(dy * dy + dx * dx) - s->dr[i];
        if (d < best) best = d;
    }
    return best;
}

static void make_shape(const diffcl_phantom_options *o, int64_t index, const double dims[3],
                       shape *s)
{
    dc_draw d = dc_draw_make(o->seed, DIFFCL_STREAM_PHANTOM, (uint32_t)index, 0);
    memset(s, 0, sizeof *s);
    double m = dims[0];
    for (int a = 1; a < 3; a++) m = dims[a] < m ? dims[a] : m;
    s->rmean = 0;
    for (int a = 0; a < 3; a++) {
        s->c[a] = dims[a] * (0.5 + dc_draw_uniform(&d, -0.07, 0.07));
        double ra = dims[a] * dc_draw_uniform(&d, 0.17, 0.23);
        double rm = m * dc_draw_uniform(&d, 0.2, 0.26);
        s->r[a] = ra < rm ? ra : rm;
        s->rmean += s->r[a] / 3.0;
    }
    for (int k = 0; k < N_PERTURB; k++) {
        for (int a = 0; a < 3; a++) s->f[k][a] = dc_draw_uniform(&d, -1.2, 1.2);
        s->a[k] = dc_draw_uniform(&d, 0.02, 0.06);
        s->ph[k] = dc_draw_uniform(&d, 0, 2 * M_PI);
    }
    int max_tubes = o->max_tubes > MAX_TUBES ? MAX_TUBES : o->max_tubes;
    double nt_draw = dc_draw_uniform(&d, 0, 1);
    if (max_tubes <= 0)
        s->n_tubes = 0;
    else if (max_tubes == 1)
        s->n_tubes = 1;
    else
        s->n_tubes = 2 + (int)(nt_draw * (max_tubes - 1));
    if (s->n_tubes > max_tubes) s->n_tubes = max_tubes;
    for (int i = 0; i < s->n_tubes; i++) {
        tube *t = &s->t[i];
        double dir[3], n = 0;
        for (int a = 0; a < 3; a++) dir[a] = dc_draw_normal(&d);
        /* spread the tubes around: bias the in-plane angle by the tube number */
        double ang = 2 * M_PI * (i + dc_draw_uniform(&d, -0.3, 0.3)) / s->n_tubes;
        dir[1] += 1.5 * cos(ang);
        dir[2] += 1.5 * sin(ang);
        if (o->ndim == 2) dir[0] *= 0.15;
        for (int a = 0; a < 3; a++) n += dir[a] * dir[a];
        n = sqrt(n) + 1e-12;
        for (int a = 0; a < 3; a++) dir[a] /= n;
        double bend[3];
        for (int a = 0; a < 3; a++) bend[a] = dc_draw_normal(&d);
        if (o->ndim == 2) bend[0] *= 0.15;
        double bd = bend[0] * dir[0] + bend[1] * dir[1] + bend[2] * dir[2], bn = 0;
        for (int a = 0; a < 3; a++) {
            bend[a] -= bd * dir[a];
            bn += bend[a] * bend[a];
        }
        bn = sqrt(bn) + 1e-12;
        double R = blob_boundary(s, dir);
        double len = m * dc_draw_uniform(&d, 0.28, 0.42);
        double curv = dc_draw_uniform(&d, 0.1, 0.35);
        t->radius = m * dc_draw_uniform(&d, 0.045, 0.07);
        if (t->radius < 1.6) t->radius = 1.6;
        double p0[3], p1[3], p2[3];
        for (int a = 0; a < 3; a++) {
            p0[a] = s->c[a] + s->r[a] * dir[a] * R * 0.75;
            p2[a] = p0[a] + dir[a] * len;
            p1[a] = p0[a] + dir[a] * len * 0.5 + bend[a] / bn * len * curv;
        }
        for (int a = 0; a < 3; a++) {
            t->lo[a] = 1e30;
            t->hi[a] = -1e30;
        }
        for (int g = 0; g <= TUBE_SEGS; g++) {
            double u = (double)g / TUBE_SEGS;
            for (int a = 0; a < 3; a++) {
                double v = (1 - u) * (1 - u) * p0[a] + 2 * u * (1 - u) * p1[a] + u * u * p2[a];
                t->p[g][a] = v;
                if (v - t->radius - 2 < t->lo[a]) t->lo[a] = v - t->radius - 2;
                if (v + t->radius + 2 > t->hi[a]) t->hi[a] = v + t->radius + 2;
            }
        }
    }
    s->n_distractors = o->distractors > 2 ? 2 : (o->distractors < 0 ? 0 : o->distractors);
    for (int i = 0; i < s->n_distractors; i++) {
        /* a spine/aorta-like cylinder along axis 0, placed in a corner away from the blob */
        double qy = dc_draw_uniform(&d, 0, 1) < 0.5 ? 0.18 : 0.82;
        double qx = (i == 0) == (dc_draw_uniform(&d, 0, 1) < 0.5) ? 0.2 : 0.8;
        s->dc[i][0] = dims[1] * (qy + dc_draw_uniform(&d, -0.04, 0.04));
        s->dc[i][1] = dims[2] * (qx + dc_draw_uniform(&d, -0.04, 0.04));
        s->dr[i] = m * dc_draw_uniform(&d, 0.06, 0.09);
    }
    for (int j = 0; j < 4; j++) {
        for (int a = 0; a < 3; a++) s->bias_k[j][a] = dc_draw_uniform(&d, -1.0, 1.0);
        s->bias_ph[j] = dc_draw_uniform(&d, 0, 2 * M_PI);
        s->bias_w[j] = dc_draw_uniform(&d, 0.3, 1.0);
    }
}

/* Contrast of channel c: background, foreground, distractor levels. */
static void channel_levels(int c, double lv[3])
{
    static const double table[4][3] = {
        {0.30, 1.00, 0.72}, {0.75, 0.35, 0.95}, {0.45, 0.90, 0.25}, {0.20, 0.60, 1.00}};
    for (int k = 0; k < 3; k++) lv[k] = table[c % 4][k];
}

static diffcl_status check_options(const diffcl_phantom_options *o)
{
    DC_CHECK_ARG(o->ndim == 2 || o->ndim == 3, "diffcl_phantom_case: ndim %d is not 2 or 3",
                 o->ndim);
    DC_CHECK_ARG(o->depth >= 16 && o->height >= 16 && o->width >= 16,
                 "diffcl_phantom_case: size %lldx%lldx%lld below the minimum 16",
                 (long long)o->depth, (long long)o->height, (long long)o->width);
    DC_CHECK_ARG((double)o->depth * (double)o->height * (double)o->width < 4.0e9,
                 "diffcl_phantom_case: volume too large");
    DC_CHECK_ARG(o->channels >= 1 && o->channels <= 16,
                 "diffcl_phantom_case: channels %d not in 1..16", o->channels);
    DC_CHECK_ARG(o->tube_class == 1 || o->tube_class == 2,
                 "diffcl_phantom_case: tube_class %d is not 1 or 2", o->tube_class);
    DC_CHECK_ARG(o->noise >= 0 && o->bias >= 0 && o->blur_sigma >= 0 && isfinite(o->noise) &&
                     isfinite(o->bias) && isfinite(o->blur_sigma),
                 "diffcl_phantom_case: noise, bias and blur_sigma must be finite and >= 0");
    return DIFFCL_OK;
}

/* The caller's options over the defaults, with the size defaults of 2-D and 3-D cases. */
static diffcl_status phantom_options(const diffcl_phantom_options *opts, diffcl_phantom_options *o)
{
    diffcl_phantom_options d = DIFFCL_PHANTOM_OPTIONS_INIT;
    *o = d;
    DC_TRY(dc_options_read(o, sizeof *o, opts, offsetof(diffcl_phantom_options, ndim), 0,
                           "diffcl_phantom_case"));
    if (o->ndim == 2) {
        o->depth = o->depth ? o->depth : 16;
        if (!o->height) o->height = 96;
        if (!o->width) o->width = 96;
    } else {
        if (!o->depth) o->depth = 64;
        if (!o->height) o->height = 64;
        if (!o->width) o->width = 48;
    }
    return check_options(o);
}

/* Where a case is sampled: the 3-D object in dims; a 2-D case is the plane z0 through it. */
typedef struct phantom_grid {
    shape s;
    int two_d;
    double z0, dims[3];
    int64_t D, H, W, vol;
} phantom_grid;

/* Occupancy of the structures (o_fg) and of the distractor (o_dis) per voxel, and the label. */
static void phantom_rasterise(diffcl_context *ctx, const phantom_grid *g, int tube_class,
                              float *o_fg, float *o_dis, uint8_t *lp)
{
    const int64_t D = g->D, H = g->H, W = g->W;
#pragma omp parallel for collapse(2) schedule(static) num_threads(dc_threads(ctx))
    for (int64_t z = 0; z < D; z++)
        for (int64_t y = 0; y < H; y++)
            for (int64_t x = 0; x < W; x++) {
                double p[3] = {g->two_d ? g->z0 : (double)z + 0.5, (double)y + 0.5,
                               (double)x + 0.5};
                double sb = blob_sdf(&g->s, p), st = tubes_sdf(&g->s, p),
                       sd = distractor_sdf(&g->s, p);
                double sf = sb < st ? sb : st;
                int64_t i = (z * H + y) * W + x;
                double of = 0.5 - sf, od = 0.5 - sd;
                o_fg[i] = (float)(of < 0 ? 0 : of > 1 ? 1 : of);
                o_dis[i] = (float)(od < 0 ? 0 : od > 1 ? 1 : od);
                if (lp) lp[i] = sb < 0 ? 1 : (st < 0 ? (uint8_t)tube_class : 0);
            }
}

/* A smooth multiplicative bias field and Rician noise (the magnitude of a complex Gaussian
 * around the value): @p noise holds 2 draws per voxel. */
static void phantom_bias_noise(diffcl_context *ctx, const phantom_grid *g, double bias,
                               double sigma, const float *noise, float *ch)
{
    const int64_t D = g->D, H = g->H, W = g->W;
    const shape *s = &g->s;
#pragma omp parallel for collapse(2) schedule(static) num_threads(dc_threads(ctx))
    for (int64_t z = 0; z < D; z++)
        for (int64_t y = 0; y < H; y++)
            for (int64_t x = 0; x < W; x++) {
                int64_t i = (z * H + y) * W + x;
                double q[3] = {(g->two_d ? g->z0 : z + 0.5) / g->dims[0], (y + 0.5) / g->dims[1],
                               (x + 0.5) / g->dims[2]};
                double b = 0;
                for (int j = 0; j < 4; j++)
                    b +=
                        s->bias_w[j] * cos(M_PI * (s->bias_k[j][0] * q[0] + s->bias_k[j][1] * q[1] +
                                                   s->bias_k[j][2] * q[2]) +
                                           s->bias_ph[j]);
                double v = ch[i] * exp(bias * 0.5 * b);
                double re = v + sigma * noise[2 * i], im = sigma * noise[2 * i + 1];
                v = sqrt(re * re + im * im);
                ch[i] = (float)v;
            }
}

/* Zero mean, unit variance; serial sums, so the result does not depend on the thread count. */
static void phantom_normalise(float *ch, int64_t vol)
{
    double sum = 0, sum2 = 0;
    for (int64_t i = 0; i < vol; i++) {
        sum += ch[i];
        sum2 += (double)ch[i] * ch[i];
    }
    double mean = sum / (double)vol, var = sum2 / (double)vol - mean * mean;
    double sd = var > 1e-20 ? sqrt(var) : 1.0;
    for (int64_t i = 0; i < vol; i++) ch[i] = (float)((ch[i] - mean) / sd);
}

/* Channel @p c: its tissue levels blended by occupancy, blurred (the partial-volume effect),
 * biased, noised and optionally normalised. 0, or 1 when the blur ran out of memory. */
static int phantom_channel(diffcl_context *ctx, const phantom_grid *g,
                           const diffcl_phantom_options *o, int64_t index, int c, const float *o_fg,
                           const float *o_dis, float *noise, float *ch)
{
    double lv[3];
    channel_levels(c, lv);
    for (int64_t i = 0; i < g->vol; i++) {
        double v = lv[0];
        v += (lv[2] - v) * o_dis[i];
        v += (lv[1] - v) * o_fg[i];
        ch[i] = (float)v;
    }
    const int64_t dims_v[3] = {g->D, g->H, g->W};
    const double sig[3] = {g->two_d ? 0 : o->blur_sigma, o->blur_sigma, o->blur_sigma};
    int failed = dc_kern_gauss_blur(ch, 1, dims_v, sig, dc_threads(ctx)) != 0;
    diffcl_rng_normal(
        diffcl_rng_key_make(o->seed, DIFFCL_STREAM_PHANTOM_NOISE, (uint32_t)index, (uint32_t)c), 0,
        (size_t)g->vol * 2, 0.0f, 1.0f, noise);
    phantom_bias_noise(ctx, g, o->bias, o->noise * (lv[1] > lv[0] ? lv[1] : lv[0]), noise, ch);
    if (o->normalize) phantom_normalise(ch, g->vol);
    return failed;
}

diffcl_status diffcl_phantom_case(diffcl_context *ctx, const diffcl_phantom_options *opts,
                                  int64_t index, diffcl_tensor **image, diffcl_tensor **label)
{
    DC_CHECK_ARG(ctx && image, "diffcl_phantom_case: ctx and image must not be NULL");
    *image = NULL;
    if (label) *label = NULL;
    DC_CHECK_ARG(index >= 0 && index <= (int64_t)UINT32_MAX,
                 "diffcl_phantom_case: case index %lld out of range", (long long)index);
    diffcl_phantom_options o;
    DC_TRY(phantom_options(opts, &o));
    phantom_grid g = {.two_d = o.ndim == 2};
    g.dims[0] = g.two_d ? (double)(o.height < o.width ? o.height : o.width) : (double)o.depth;
    g.dims[1] = (double)o.height;
    g.dims[2] = (double)o.width;
    make_shape(&o, index, g.dims, &g.s);
    if (g.two_d) {
        dc_draw dz = dc_draw_make(o.seed, DIFFCL_STREAM_PHANTOM, (uint32_t)index, 1);
        g.z0 = g.s.c[0] + g.s.r[0] * dc_draw_uniform(&dz, -0.15, 0.15);
    }
    g.D = g.two_d ? 1 : o.depth;
    g.H = o.height;
    g.W = o.width;
    g.vol = g.D * g.H * g.W;
    int64_t ishape[4], lshape[3];
    int ind = 0, lnd = 0;
    ishape[ind++] = o.channels;
    if (!g.two_d) ishape[ind++] = lshape[lnd++] = g.D;
    ishape[ind++] = lshape[lnd++] = g.H;
    ishape[ind++] = lshape[lnd++] = g.W;
    diffcl_tensor *img = dc_tensor_empty(ctx, DIFFCL_F32, ind, ishape);
    diffcl_tensor *lab = label ? dc_tensor_empty(ctx, DIFFCL_U8, lnd, lshape) : NULL;
    float *occ = dc_malloc(sizeof(float) * (size_t)g.vol * 2),
          *noise = dc_malloc(sizeof(float) * (size_t)g.vol * 2);
    int failed = !img || (label && !lab) || !occ || !noise;
    if (!failed)
        phantom_rasterise(ctx, &g, o.tube_class, occ, occ + g.vol,
                          lab ? (uint8_t *)dc_data(lab) : NULL);
    for (int c = 0; c < o.channels && !failed; c++)
        failed = phantom_channel(ctx, &g, &o, index, c, occ, occ + g.vol, noise,
                                 dc_f32(img) + (int64_t)c * g.vol);
    free(occ);
    free(noise);
    if (failed) {
        diffcl_tensor_free(img);
        diffcl_tensor_free(lab);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "diffcl_phantom_case: out of memory");
    }
    *image = img;
    if (label) *label = lab;
    return DIFFCL_OK;
}
