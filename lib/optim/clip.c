/* Gradient clipping by the global norm (torch.nn.utils.clip_grad_norm_). */
#include <math.h>
#include <stdlib.h>

#include "optim/optim_internal.h"

/* sum |g|^p (or max |g| when p is infinite) of one gradient, in double. */
static double grad_norm_part(const diffcl_tensor *g, double p)
{
    int64_t n = dc_numel(g);
    double acc = 0;
    int inf = isinf(p), two = p == 2.0;
    for (int64_t i = 0; i < n; i++) {
        double v = fabs(g->dtype == DIFFCL_F32 ? (double)dc_f32(g)[i] : dc_f64(g)[i]);
        if (inf)
            acc = v > acc || isnan(v) ? v : acc;
        else
            acc += two ? v * v : pow(v, p);
    }
    return acc;
}

static void scale_grad(diffcl_tensor *g, double k)
{
    int64_t n = dc_numel(g);
    if (g->dtype == DIFFCL_F32) {
        float *p = dc_f32(g), kf = (float)k;
        for (int64_t i = 0; i < n; i++) p[i] *= kf;
    } else {
        double *p = dc_f64(g);
        for (int64_t i = 0; i < n; i++) p[i] *= k;
    }
}

diffcl_status diffcl_clip_grad_norm(diffcl_tensor *const *params, int n_params, double max_norm,
                                    double norm_type, double *total_norm)
{
    static const char *fn = "diffcl_clip_grad_norm";
    if (total_norm) *total_norm = 0;
    DC_CHECK_ARG(n_params >= 0 && (params || n_params == 0), "%s: need %d parameters", fn,
                 n_params);
    DC_CHECK_ARG(norm_type > 0, "%s: norm_type is %g; need > 0 or INFINITY", fn, norm_type);
    DC_CHECK_ARG(max_norm >= 0, "%s: max_norm is %g; need >= 0", fn, max_norm);
    double acc = 0;
    int inf = isinf(norm_type);
    for (int k = 0; k < n_params; k++) {
        const diffcl_tensor *p = params[k];
        if (!p || !p->grad) continue;
        if (!dc_is_contiguous(p->grad))
            return dc_error(DIFFCL_ERR_INVALID_ARGUMENT,
                            "%s: gradient of parameter %d is not contiguous", fn, k);
        double part = grad_norm_part(p->grad, norm_type);
        if (inf)
            acc = part > acc || isnan(part) ? part : acc;
        else
            acc += part;
    }
    double norm = inf ? acc : (norm_type == 2.0 ? sqrt(acc) : pow(acc, 1.0 / norm_type));
    if (total_norm) *total_norm = norm;
    if (!isfinite(norm))
        return dc_error(DIFFCL_ERR_NUMERIC, "%s: the gradient norm is %g; gradients left unclipped",
                        fn, norm);
    double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0)
        for (int k = 0; k < n_params; k++)
            if (params[k] && params[k]->grad) scale_grad(params[k]->grad, coef);
    return DIFFCL_OK;
}

diffcl_status diffcl_optimizer_clip_grad_norm(diffcl_optimizer *opt, double max_norm,
                                              double norm_type, double *total_norm)
{
    DC_CHECK_ARG(opt, "diffcl_optimizer_clip_grad_norm: optimizer is NULL");
    diffcl_tensor **ps = dc_malloc((size_t)(opt->n_params ? opt->n_params : 1) * sizeof *ps);
    if (!ps)
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "diffcl_optimizer_clip_grad_norm: out of memory");
    for (int i = 0; i < opt->n_params; i++) ps[i] = opt->params[i].p;
    diffcl_status s = diffcl_clip_grad_norm(ps, opt->n_params, max_norm, norm_type, total_norm);
    free(ps);
    return s;
}
