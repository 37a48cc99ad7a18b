/* The forward process of the diffusion segmentation network: beta schedules and their
 * alpha_bar tables, q_sample with the keyed RNG, timestep respacing (guided-diffusion's
 * space_timesteps) and the uniform timestep draws of training. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/diffusion_internal.h"

/* ------------------------------------------------------------- schedule ---- */

static double cosine_alpha_bar(double s)
{
    double c = cos((s + 0.008) / 1.008 * M_PI / 2.0);
    return c * c;
}

diffcl_status diffcl_diffusion_schedule_create(diffcl_beta_schedule kind, int timesteps,
                                               diffcl_diffusion_schedule **out)
{
    DC_CHECK_ARG(out, "diffcl_diffusion_schedule_create: out is NULL");
    *out = NULL;
    DC_CHECK_ARG(kind == DIFFCL_BETA_LINEAR || kind == DIFFCL_BETA_COSINE,
                 "diffcl_diffusion_schedule_create: unknown schedule %d", (int)kind);
    DC_CHECK_ARG(timesteps >= 2 && timesteps <= 1000000,
                 "diffcl_diffusion_schedule_create: timesteps %d not in [2, 1000000]", timesteps);
    diffcl_diffusion_schedule *s = dc_calloc_raw(1, sizeof *s);
    double *b = dc_malloc((size_t)timesteps * sizeof *b),
           *ab = dc_malloc((size_t)timesteps * sizeof *ab);
    if (!s || !b || !ab) {
        free(s);
        free(b);
        free(ab);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY,
                        "diffcl_diffusion_schedule_create: out of memory");
    }
    int T = timesteps;
    if (kind == DIFFCL_BETA_LINEAR) {
        /* numpy.linspace(scale * 1e-4, scale * 0.02, T): start + i * step, last = stop */
        double scale = 1000.0 / T, lo = scale * 0.0001, hi = scale * 0.02;
        double step = (hi - lo) / (T - 1);
        for (int i = 0; i < T; i++) b[i] = lo + i * step;
        b[T - 1] = hi;
    } else {
        for (int i = 0; i < T; i++) {
            double t1 = (double)i / T, t2 = (double)(i + 1) / T;
            double v = 1.0 - cosine_alpha_bar(t2) / cosine_alpha_bar(t1);
            b[i] = v < 0.999 ? v : 0.999;
        }
    }
    for (int i = 0; i < T; i++) {
        if (!(b[i] > 0 && b[i] < 1)) {
            double bad = b[i];
            free(s);
            free(b);
            free(ab);
            return dc_error(
                DIFFCL_ERR_INVALID_ARGUMENT,
                "diffcl_diffusion_schedule_create: beta[%d] = %g not in (0, 1) for T = %d", i, bad,
                T);
        }
        ab[i] = (i ? ab[i - 1] : 1.0) * (1.0 - b[i]);
    }
    s->kind = kind;
    s->T = T;
    s->betas = b;
    s->alpha_bar = ab;
    *out = s;
    return DIFFCL_OK;
}

void diffcl_diffusion_schedule_free(diffcl_diffusion_schedule *s)
{
    if (!s) return;
    free(s->betas);
    free(s->alpha_bar);
    free(s);
}

int diffcl_diffusion_schedule_timesteps(const diffcl_diffusion_schedule *s)
{
    return s ? s->T : 0;
}

diffcl_status diffcl_diffusion_schedule_tables(const diffcl_diffusion_schedule *s, double *betas,
                                               double *alpha_bar)
{
    DC_CHECK_ARG(s, "diffcl_diffusion_schedule_tables: schedule is NULL");
    if (betas) memcpy(betas, s->betas, (size_t)s->T * sizeof *betas);
    if (alpha_bar) memcpy(alpha_bar, s->alpha_bar, (size_t)s->T * sizeof *alpha_bar);
    return DIFFCL_OK;
}

/* ------------------------------------------------------------ respacing ---- */

diffcl_status diffcl_diffusion_respace(int timesteps, int steps, diffcl_respacing mode, int *out)
{
    DC_CHECK_ARG(out, "diffcl_diffusion_respace: out is NULL");
    DC_CHECK_ARG(timesteps >= 1 && steps >= 1 && steps <= timesteps,
                 "diffcl_diffusion_respace: cannot take %d steps out of %d", steps, timesteps);
    if (mode == DIFFCL_RESPACE_EVEN) {
        /* space_timesteps(T, [steps]): cur += (T-1)/(steps-1), Python round (half to even) */
        double stride = steps <= 1 ? 1.0 : (double)(timesteps - 1) / (steps - 1), cur = 0.0;
        for (int i = 0; i < steps; i++) {
            out[i] = (int)nearbyint(cur);
            cur += stride;
        }
        return DIFFCL_OK;
    }
    DC_CHECK_ARG(mode == DIFFCL_RESPACE_STRIDE, "diffcl_diffusion_respace: unknown mode %d",
                 (int)mode);
    for (int stride = 1; stride < timesteps; stride++) {
        if ((timesteps + stride - 1) / stride != steps) continue; /* len(range(0, T, stride)) */
        for (int i = 0; i < steps; i++) out[i] = i * stride;
        return DIFFCL_OK;
    }
    if (steps == 1 && timesteps == 1) {
        out[0] = 0;
        return DIFFCL_OK;
    }
    return dc_error(DIFFCL_ERR_INVALID_ARGUMENT,
                    "diffcl_diffusion_respace: no integer stride gives exactly %d of %d steps",
                    steps, timesteps);
}

/* ---------------------------------------------------------- random draws ---- */

void dc_diffusion_draw_timesteps(diffcl_context *ctx, diffcl_rng_key key, int T, int N,
                                 const uint32_t *samples, int64_t *out)
{
    for (int n = 0; n < N; n++) {
        diffcl_rng_key k = key;
        k.index = key.index + (samples ? samples[n] : (uint32_t)n);
        uint32_t bits;
        diffcl_rng_bits(k, DC_DIFFUSION_T_OFFSET, 1, &bits);
        out[n] = (int64_t)(((uint64_t)bits * (uint64_t)T) >> 32);
        dc_draw_report(ctx, DC_DRAW_TIMESTEP, key.stream, k.index, 0, &out[n], sizeof out[n]);
    }
}

void dc_diffusion_fill_noise(diffcl_tensor *x, diffcl_rng_key key, uint64_t k,
                             const uint32_t *samples)
{
    int64_t N = x->ndim ? x->shape[0] : 1, P = dc_per_sample(x);
    float *tmp = x->dtype == DIFFCL_F64 ? dc_malloc((size_t)(P ? P : 1) * sizeof *tmp) : NULL;
    for (int64_t n = 0; n < N; n++) {
        diffcl_rng_key kn = key;
        kn.index = key.index + (samples ? samples[n] : (uint32_t)n);
        float *f = x->dtype == DIFFCL_F32 ? dc_f32(x) + n * P : tmp;
        if (!f) continue;
        diffcl_rng_normal(kn, k * (uint64_t)P, (size_t)P, 0.0f, 1.0f, f);
        dc_draw_report(x->ctx, DC_DRAW_NOISE, key.stream, kn.index, (uint32_t)k, f,
                       (size_t)P * sizeof *f);
        if (f == tmp) {
            double *d = dc_f64(x) + n * P;
            for (int64_t i = 0; i < P; i++) d[i] = tmp[i];
        }
    }
    free(tmp);
}

/* -------------------------------------------------------------- q_sample ---- */

diffcl_status diffcl_diffusion_q_sample(const diffcl_diffusion_schedule *s, const diffcl_tensor *x0,
                                        const int64_t *t, diffcl_rng_key key, diffcl_tensor **x_t,
                                        diffcl_tensor **noise)
{
    return dc_diffusion_q_sample_rows(s, x0, t, key, NULL, x_t, noise);
}

diffcl_status dc_diffusion_q_sample_rows(const diffcl_diffusion_schedule *s,
                                         const diffcl_tensor *x0, const int64_t *t,
                                         diffcl_rng_key key, const uint32_t *samples,
                                         diffcl_tensor **x_t, diffcl_tensor **noise)
{
    const char *fn = "diffcl_diffusion_q_sample";
    DC_CHECK_ARG(x_t, "%s: x_t is NULL", fn);
    *x_t = NULL;
    if (noise) *noise = NULL;
    DC_CHECK_ARG(s, "%s: schedule is NULL", fn);
    DC_CHECK_TENSOR(x0, fn);
    DC_CHECK_ARG(t, "%s: t is NULL", fn);
    if (!dc_is_float(x0->dtype))
        return dc_error(DIFFCL_ERR_DTYPE, "%s: x0 is %s; need f32 or f64", fn,
                        diffcl_dtype_name(x0->dtype));
    if (x0->ndim < 2)
        return dc_error(DIFFCL_ERR_SHAPE, "%s: x0 %s needs a batch and a channel axis", fn,
                        dc_shape_str(x0));
    int64_t N = x0->shape[0];
    for (int64_t n = 0; n < N; n++)
        if (t[n] < 0 || t[n] >= s->T)
            return dc_error(DIFFCL_ERR_INVALID_ARGUMENT, "%s: t[%lld] = %lld not in [0, %d)", fn,
                            (long long)n, (long long)t[n], s->T);
    /* x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, differentiable in x_0 */
    double *a = dc_malloc((size_t)(N ? N : 1) * sizeof *a),
           *b = dc_malloc((size_t)(N ? N : 1) * sizeof *b);
    diffcl_tensor *eps = dc_tensor_empty(x0->ctx, x0->dtype, x0->ndim, x0->shape), *r = NULL;
    diffcl_status st =
        a && b && eps ? DIFFCL_OK : dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    if (st == DIFFCL_OK) {
        dc_diffusion_fill_noise(eps, key, 0, samples);
        for (int64_t n = 0; n < N; n++) {
            a[n] = sqrt(s->alpha_bar[t[n]]);
            b[n] = sqrt(1.0 - s->alpha_bar[t[n]]);
        }
        st = dc_per_sample_axpby(x0, a, eps, b, &r);
    }
    free(a);
    free(b);
    if (st != DIFFCL_OK) {
        diffcl_tensor_free(eps);
        return st;
    }
    *x_t = r;
    if (noise)
        *noise = eps;
    else
        diffcl_tensor_free(eps);
    return DIFFCL_OK;
}
