/* Inference with the denoiser: DDIM sampling from pure noise over respaced timesteps (the
 * model given the original indices, as guided-diffusion's SpacedDiffusion/_WrappedModel),
 * the one-step "noise a map to t, denoise once" mode, and pseudo labels (argmax of the
 * Gaussian-smoothed softmax). Everything here runs with gradient recording off. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/diffusion_internal.h"

void diffcl_diffusion_sample_options_init(diffcl_diffusion_sample_options *opts)
{
    if (!opts) return;
    diffcl_diffusion_sample_options d = DIFFCL_DIFFUSION_SAMPLE_OPTIONS_INIT;
    *opts = d;
}

/* x_0 estimate [N, C, S] from the model output at x_t (all contiguous F32):
 * x0 target: 2 softmax(out) - 1; eps target: clip((x_t - sqrt(1-ab) eps) / sqrt(ab), -1, 1). */
static void x0_estimate(const diffcl_tensor *outp, const diffcl_tensor *xt,
                        diffcl_diffusion_target target, double ab, diffcl_tensor *x0)
{
    int64_t N = x0->shape[0], C = x0->shape[1], S = dc_per_sample(x0) / C;
    const float *o = dc_f32(outp), *x = dc_f32(xt);
    float *r = dc_f32(x0);
    if (target == DIFFCL_DIFFUSION_PREDICT_EPSILON) {
        double a = sqrt(ab), b = sqrt(1.0 - ab);
        for (int64_t i = 0; i < N * C * S; i++) {
            double v = (x[i] - b * o[i]) / a;
            r[i] = (float)(v < -1 ? -1 : v > 1 ? 1 : v);
        }
        return;
    }
    for (int64_t n = 0; n < N; n++)
        for (int64_t v = 0; v < S; v++) {
            const float *p = o + n * C * S + v;
            double mx = p[0], sum = 0;
            for (int64_t c = 1; c < C; c++)
                if (p[c * S] > mx) mx = p[c * S];
            for (int64_t c = 0; c < C; c++) sum += exp(p[c * S] - mx);
            for (int64_t c = 0; c < C; c++)
                r[n * C * S + c * S + v] = (float)(2.0 * exp(p[c * S] - mx) / sum - 1.0);
        }
}

/* Convert a float tensor to a contiguous F32 copy (or a retained reference). */
static diffcl_tensor *as_f32(const diffcl_tensor *t)
{
    if (t->dtype == DIFFCL_F32) return dc_contiguous(t);
    diffcl_tensor *r = dc_tensor_empty(t->ctx, DIFFCL_F32, t->ndim, t->shape);
    if (r) dc_copy_into(r, t);
    return r;
}

diffcl_status diffcl_diffusion_sample(diffcl_module *m, const diffcl_tensor *image,
                                      const diffcl_diffusion_sample_options *opts,
                                      diffcl_tensor **out)
{
    return dc_diffusion_sample_rows(m, image, opts, NULL, out);
}

diffcl_status dc_diffusion_sample_rows(diffcl_module *m, const diffcl_tensor *image,
                                       const diffcl_diffusion_sample_options *opts,
                                       const uint32_t *samples, diffcl_tensor **out)
{
    const char *fn = "diffcl_diffusion_sample";
    DC_CHECK_ARG(out, "%s: out is NULL", fn);
    *out = NULL;
    const diffcl_diffusion_options *o = dc_diffusion_opts(m, fn);
    if (!o) return DIFFCL_ERR_INVALID_ARGUMENT;
    DC_CHECK_TENSOR(image, fn);
    diffcl_diffusion_sample_options so = DIFFCL_DIFFUSION_SAMPLE_OPTIONS_INIT;
    DC_TRY(dc_options_read(&so, sizeof so, opts,
                           offsetof(diffcl_diffusion_sample_options, key) + sizeof(diffcl_rng_key),
                           0, fn));
    DC_CHECK_ARG(so.eta >= 0, "%s: eta %g must be >= 0", fn, so.eta);
    DC_CHECK_ARG(image->ndim == o->dims + 2, "%s: image %s is not [N,%d,%s]", fn,
                 dc_shape_str(image), o->in_channels, o->dims == 3 ? "D,H,W" : "H,W");
    const diffcl_diffusion_schedule *sched = diffcl_diffusion_get_schedule(m);
    int steps = so.steps;
    DC_CHECK_ARG(steps >= 1 && steps <= sched->T, "%s: steps %d not in [1, %d]", fn, steps,
                 sched->T);
    int *ts = dc_malloc((size_t)steps * sizeof *ts);
    int64_t N = image->shape[0];
    int64_t *tv = dc_malloc((size_t)(N ? N : 1) * sizeof *tv);
    int64_t sh[DIFFCL_MAX_DIMS];
    for (int i = 0; i < image->ndim; i++) sh[i] = image->shape[i];
    sh[1] = o->n_classes;
    diffcl_tensor *x = dc_tensor_empty(m->ctx, DIFFCL_F32, image->ndim, sh);
    diffcl_tensor *x0 = dc_tensor_empty(m->ctx, DIFFCL_F32, image->ndim, sh);
    diffcl_tensor *noise = so.eta > 0 ? dc_tensor_empty(m->ctx, DIFFCL_F32, image->ndim, sh) : NULL;
    diffcl_status s = DIFFCL_OK;
    if (!ts || !tv || !x || !x0 || (so.eta > 0 && !noise))
        s = dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    if (s == DIFFCL_OK) s = diffcl_diffusion_respace(sched->T, steps, so.respacing, ts);
    int prev = diffcl_set_grad_enabled(m->ctx, 0);
    if (s == DIFFCL_OK) dc_diffusion_fill_noise(x, so.key, 0, samples);
    diffcl_tensor *result = NULL;
    for (int j = steps - 1; s == DIFFCL_OK && j >= 0; j--) {
        int t = ts[j];
        for (int64_t n = 0; n < N; n++) tv[n] = t;
        diffcl_tensor *pred = NULL, *pc = NULL;
        s = diffcl_diffusion_forward(m, x, image, tv, &pred);
        if (s == DIFFCL_OK) {
            pc = as_f32(pred);
            if (!pc) s = DIFFCL_ERR_OUT_OF_MEMORY;
        }
        diffcl_tensor_free(pred);
        if (s != DIFFCL_OK) break;
        double ab = sched->alpha_bar[t];
        if (j == 0) {
            if (o->target == DIFFCL_DIFFUSION_PREDICT_X0) {
                result = pc;
            } else {
                x0_estimate(pc, x, o->target, ab, x0);
                result = diffcl_tensor_retain(x0);
                diffcl_tensor_free(pc);
            }
            break;
        }
        x0_estimate(pc, x, o->target, ab, x0);
        diffcl_tensor_free(pc);
        double ab_prev = sched->alpha_bar[ts[j - 1]];
        double sigma = so.eta * sqrt((1.0 - ab_prev) / (1.0 - ab)) * sqrt(1.0 - ab / ab_prev);
        double c_eps = sqrt(fmax(1.0 - ab_prev - sigma * sigma, 0.0));
        double ra = sqrt(1.0 / ab), rm = sqrt(1.0 / ab - 1.0), ap = sqrt(ab_prev);
        if (noise) dc_diffusion_fill_noise(noise, so.key, (uint64_t)(steps - j), samples);
        float *px = dc_f32(x);
        const float *p0 = dc_f32(x0), *pn = noise ? dc_f32(noise) : NULL;
        int64_t total = dc_numel(x);
        for (int64_t i = 0; i < total; i++) {
            double eps = (ra * px[i] - p0[i]) / rm; /* guided-diffusion _predict_eps_from_xstart */
            double v = p0[i] * ap + c_eps * eps;
            if (pn) v += sigma * pn[i];
            px[i] = (float)v;
        }
    }
    diffcl_set_grad_enabled(m->ctx, prev);
    free(ts);
    free(tv);
    diffcl_tensor_free(x);
    diffcl_tensor_free(x0);
    diffcl_tensor_free(noise);
    if (s != DIFFCL_OK) {
        diffcl_tensor_free(result);
        dc_error_prefix("%s", fn);
        return s;
    }
    *out = result;
    return DIFFCL_OK;
}

diffcl_status diffcl_diffusion_denoise_once(diffcl_module *m, const diffcl_tensor *image,
                                            const diffcl_tensor *x0, int t, diffcl_rng_key key,
                                            diffcl_tensor **out)
{
    const char *fn = "diffcl_diffusion_denoise_once";
    DC_CHECK_ARG(out, "%s: out is NULL", fn);
    *out = NULL;
    const diffcl_diffusion_options *o = dc_diffusion_opts(m, fn);
    if (!o) return DIFFCL_ERR_INVALID_ARGUMENT;
    DC_CHECK_TENSOR(image, fn);
    DC_CHECK_TENSOR(x0, fn);
    DC_CHECK_ARG(t >= 0 && t < o->timesteps, "%s: t = %d not in [0, %d)", fn, t, o->timesteps);
    DC_CHECK_ARG(x0->ndim >= 1, "%s: x0 has no batch axis", fn);
    int64_t N = x0->shape[0];
    int64_t *tv = dc_malloc((size_t)(N ? N : 1) * sizeof *tv);
    if (!tv) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    for (int64_t n = 0; n < N; n++) tv[n] = t;
    const diffcl_diffusion_schedule *sched = diffcl_diffusion_get_schedule(m);
    int prev = diffcl_set_grad_enabled(m->ctx, 0);
    diffcl_tensor *x0f = as_f32(x0), *xt = NULL, *pred = NULL;
    diffcl_status s = x0f ? DIFFCL_OK : DIFFCL_ERR_OUT_OF_MEMORY;
    if (s == DIFFCL_OK) s = diffcl_diffusion_q_sample(sched, x0f, tv, key, &xt, NULL);
    if (s == DIFFCL_OK) s = diffcl_diffusion_forward(m, xt, image, tv, &pred);
    if (s == DIFFCL_OK && o->target == DIFFCL_DIFFUSION_PREDICT_EPSILON) {
        diffcl_tensor *pc = as_f32(pred), *est = dc_tensor_empty_like(xt);
        if (pc && est) {
            x0_estimate(pc, xt, o->target, sched->alpha_bar[t], est);
            diffcl_tensor_free(pred);
            pred = est;
            est = NULL;
        } else {
            s = DIFFCL_ERR_OUT_OF_MEMORY;
        }
        diffcl_tensor_free(pc);
        diffcl_tensor_free(est);
    }
    diffcl_set_grad_enabled(m->ctx, prev);
    free(tv);
    diffcl_tensor_free(x0f);
    diffcl_tensor_free(xt);
    if (s != DIFFCL_OK) {
        diffcl_tensor_free(pred);
        dc_error_prefix("%s", fn);
        return s;
    }
    *out = pred;
    return DIFFCL_OK;
}

/* --------------------------------------------------------- pseudo labels ---- */

/* In place: 3-tap Gaussian (sigma 1) along one axis of a contiguous block [outer, len, inner],
 * renormalised by the in-bounds weights at the borders. */
static void smooth_axis(float *p, int64_t outer, int64_t len, int64_t inner, float *tmp)
{
    const double w1 = exp(-0.5); /* weights 1 at the centre, e^-1/2 at +-1 */
    for (int64_t o = 0; o < outer; o++) {
        float *b = p + o * len * inner;
        for (int64_t k = 0; k < len; k++)
            for (int64_t i = 0; i < inner; i++) {
                double acc = b[k * inner + i], wsum = 1.0;
                if (k > 0) {
                    acc += w1 * b[(k - 1) * inner + i];
                    wsum += w1;
                }
                if (k + 1 < len) {
                    acc += w1 * b[(k + 1) * inner + i];
                    wsum += w1;
                }
                tmp[k * inner + i] = (float)(acc / wsum);
            }
        memcpy(b, tmp, (size_t)(len * inner) * sizeof *tmp);
    }
}

diffcl_status diffcl_diffusion_pseudo_label(const diffcl_tensor *logits, diffcl_tensor **labels,
                                            diffcl_tensor **probs)
{
    const char *fn = "diffcl_diffusion_pseudo_label";
    DC_CHECK_ARG(labels, "%s: labels is NULL", fn);
    *labels = NULL;
    if (probs) *probs = NULL;
    DC_CHECK_TENSOR(logits, fn);
    if (!dc_is_float(logits->dtype))
        return dc_error(DIFFCL_ERR_DTYPE, "%s: logits are %s; need f32 or f64", fn,
                        diffcl_dtype_name(logits->dtype));
    if (logits->ndim < 3 || logits->ndim > 5 || logits->shape[1] < 1)
        return dc_error(DIFFCL_ERR_SHAPE, "%s: logits %s are not [N,C,(D),H,W]", fn,
                        dc_shape_str(logits));
    int64_t N = logits->shape[0], C = logits->shape[1], S = C ? dc_per_sample(logits) / C : 0;
    diffcl_tensor *p = as_f32(logits);
    int64_t lsh[DIFFCL_MAX_DIMS];
    lsh[0] = N;
    for (int i = 2; i < logits->ndim; i++) lsh[i - 1] = logits->shape[i];
    diffcl_tensor *lab = p ? dc_tensor_empty(logits->ctx, DIFFCL_I64, logits->ndim - 1, lsh) : NULL;
    diffcl_tensor *pr =
        lab ? dc_tensor_empty(logits->ctx, DIFFCL_F32, logits->ndim, logits->shape) : NULL;
    float *tmp = dc_malloc((size_t)(S ? S : 1) * sizeof *tmp);
    if (!pr || !tmp) {
        diffcl_tensor_free(p);
        diffcl_tensor_free(lab);
        diffcl_tensor_free(pr);
        free(tmp);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    const float *x = dc_f32(p);
    float *q = dc_f32(pr);
    /* softmax over classes */
    for (int64_t n = 0; n < N; n++)
        for (int64_t v = 0; v < S; v++) {
            const float *a = x + n * C * S + v;
            double mx = a[0], sum = 0;
            for (int64_t c = 1; c < C; c++)
                if (a[c * S] > mx) mx = a[c * S];
            for (int64_t c = 0; c < C; c++) sum += exp(a[c * S] - mx);
            for (int64_t c = 0; c < C; c++)
                q[n * C * S + c * S + v] = (float)(exp(a[c * S] - mx) / sum);
        }
    /* separable smoothing of each class map */
    for (int64_t nc = 0; nc < N * C; nc++) {
        float *map = q + nc * S;
        int sd = logits->ndim - 2;
        for (int a = 0; a < sd; a++) {
            int64_t outer = 1, inner = 1, len = logits->shape[2 + a];
            for (int b = 0; b < a; b++) outer *= logits->shape[2 + b];
            for (int b = a + 1; b < sd; b++) inner *= logits->shape[2 + b];
            smooth_axis(map, outer, len, inner, tmp);
        }
    }
    /* argmax */
    int64_t *l = (int64_t *)dc_data(lab);
    for (int64_t n = 0; n < N; n++)
        for (int64_t v = 0; v < S; v++) {
            const float *a = q + n * C * S + v;
            int64_t best = 0;
            for (int64_t c = 1; c < C; c++)
                if (a[c * S] > a[best * S]) best = c;
            l[n * S + v] = best;
        }
    free(tmp);
    diffcl_tensor_free(p);
    *labels = lab;
    if (probs)
        *probs = pr;
    else
        diffcl_tensor_free(pr);
    return DIFFCL_OK;
}
