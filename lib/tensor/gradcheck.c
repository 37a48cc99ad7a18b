/* Finite-difference gradient checker (central differences, run in the inputs' dtype,
 * meant for F64). The output is contracted with a fixed random weighting W, so one scalar
 * L = sum(out * W) exercises every output element's gradient path. */
#include <math.h>
#include <stdlib.h>

#include "tensor/tensor_internal.h"

void diffcl_gradcheck_options_init(diffcl_gradcheck_options *opts)
{
    if (!opts) return;
    diffcl_gradcheck_options d = DIFFCL_GRADCHECK_OPTIONS_INIT;
    *opts = d;
}

/* L = sum(out * w), in double, with out read through its strides. */
static diffcl_status weighted_sum(diffcl_gradcheck_fn fn, void *user, diffcl_tensor *const *in,
                                  int n_in, const double *w, int64_t nw, double *L)
{
    diffcl_context *ctx = in[0]->ctx;
    int prev = diffcl_set_grad_enabled(ctx, 0);
    diffcl_tensor *out = NULL;
    diffcl_status s = fn(in, n_in, &out, user);
    diffcl_set_grad_enabled(ctx, prev);
    if (s != DIFFCL_OK) return s;
    diffcl_tensor *o64 = NULL;
    s = diffcl_tensor_to_dtype(out, DIFFCL_F64, &o64);
    diffcl_tensor_free(out);
    if (s != DIFFCL_OK) return s;
    if (dc_numel(o64) != nw) {
        diffcl_tensor_free(o64);
        return dc_error(DIFFCL_ERR_SHAPE, "diffcl_gradcheck: output size changed between calls");
    }
    double acc = 0;
    const double *p = dc_f64(o64);
    for (int64_t i = 0; i < nw; i++) acc += p[i] * w[i];
    diffcl_tensor_free(o64);
    *L = acc;
    return DIFFCL_OK;
}

diffcl_status diffcl_gradcheck(diffcl_gradcheck_fn fn, void *user, diffcl_tensor *const *inputs,
                               int n_inputs, const diffcl_gradcheck_options *opts,
                               diffcl_gradcheck_result *result)
{
    DC_CHECK_ARG(fn && inputs && n_inputs > 0, "diffcl_gradcheck: need a function and inputs");
    for (int k = 0; k < n_inputs; k++) DC_CHECK_TENSOR(inputs[k], "diffcl_gradcheck");
    diffcl_gradcheck_options o = DIFFCL_GRADCHECK_OPTIONS_INIT;
    (void)dc_options_read(&o, sizeof o, opts, 0, 1, "diffcl_gradcheck"); /* cannot fail */
    diffcl_gradcheck_result res = {sizeof res, 0, 0, -1, -1, 0, 0};
    diffcl_context *ctx = inputs[0]->ctx;

    /* 1. analytical gradients */
    for (int k = 0; k < n_inputs; k++) diffcl_tensor_zero_grad(inputs[k]);
    diffcl_tensor *out = NULL;
    diffcl_status s = fn(inputs, n_inputs, &out, user);
    if (s != DIFFCL_OK) return s;
    int64_t nw = dc_numel(out);
    double *w = dc_malloc((size_t)(nw ? nw : 1) * sizeof *w);
    float *wf = dc_malloc((size_t)(nw ? nw : 1) * sizeof *wf);
    diffcl_tensor *wt = w && wf ? dc_tensor_empty(ctx, out->dtype, out->ndim, out->shape) : NULL;
    if (!wt) {
        free(w);
        free(wf);
        diffcl_tensor_free(out);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "diffcl_gradcheck: out of memory");
    }
    diffcl_rng_normal(diffcl_rng_key_make(o.seed, 0x6772u, 0, 0), 0, (size_t)nw, 0.0f, 1.0f, wf);
    for (int64_t i = 0; i < nw; i++) {
        w[i] = wf[i];
        if (out->dtype == DIFFCL_F32)
            dc_f32(wt)[i] = wf[i];
        else
            dc_f64(wt)[i] = wf[i];
    }
    free(wf);
    diffcl_tensor *prod = NULL, *L = NULL;
    s = diffcl_mul(out, wt, &prod);
    if (s == DIFFCL_OK) s = diffcl_sum_all(prod, &L);
    if (s == DIFFCL_OK && L->requires_grad) s = diffcl_backward(L, NULL);
    diffcl_tensor_free(L);
    diffcl_tensor_free(prod);
    diffcl_tensor_free(out);
    diffcl_tensor_free(wt);

    /* 2. central differences, element by element */
    for (int k = 0; k < n_inputs && s == DIFFCL_OK; k++) {
        diffcl_tensor *x = inputs[k];
        if (!x->requires_grad) continue;
        int64_t n = dc_numel(x);
        int64_t step = (o.max_checks > 0 && n > o.max_checks) ? n / o.max_checks : 1;
        for (int64_t e = 0; e < n && s == DIFFCL_OK; e += step) {
            int64_t idx[DIFFCL_MAX_DIMS], rem = e;
            for (int i = x->ndim - 1; i >= 0; i--) {
                idx[i] = rem % x->shape[i];
                rem /= x->shape[i];
            }
            double x0, lp, lm, ana = 0;
            diffcl_tensor_get(x, idx, &x0);
            diffcl_tensor_set(x, idx, x0 + o.eps);
            s = weighted_sum(fn, user, inputs, n_inputs, w, nw, &lp);
            diffcl_tensor_set(x, idx, x0 - o.eps);
            if (s == DIFFCL_OK) s = weighted_sum(fn, user, inputs, n_inputs, w, nw, &lm);
            diffcl_tensor_set(x, idx, x0);
            if (s != DIFFCL_OK) break;
            if (x->grad) diffcl_tensor_get(x->grad, idx, &ana);
            double num = (lp - lm) / (2 * o.eps);
            double err = fabs(num - ana);
            double den = fmax(fmax(fabs(num), fabs(ana)), 1e-12);
            res.n_checked++;
            if (err > res.max_abs_error) {
                res.max_abs_error = err;
                res.worst_input = k;
                res.worst_index = e;
            }
            if (err / den > res.max_rel_error && err > o.atol) res.max_rel_error = err / den;
            if (!(err <= o.atol + o.rtol * fabs(num))) {
                if (res.n_failed == 0)
                    dc_error(
                        DIFFCL_ERR_NUMERIC,
                        "diffcl_gradcheck: input %d element %lld: numerical %.9g, analytical %.9g",
                        k, (long long)e, num, ana);
                res.n_failed++;
            }
        }
    }
    free(w);
    for (int k = 0; k < n_inputs; k++) diffcl_tensor_zero_grad(inputs[k]);
    if (result) (void)dc_options_write(result, &res, sizeof res, 0, 1, "diffcl_gradcheck");
    if (s != DIFFCL_OK) return s;
    return res.n_failed ? DIFFCL_ERR_NUMERIC : DIFFCL_OK;
}
