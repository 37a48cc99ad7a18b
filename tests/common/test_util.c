#include "test_util.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer/conv_internal.h"

int test_scale(void)
{
    const char *s = getenv("DIFFCL_TEST_SCALE");
    int v = s ? atoi(s) : 1;
    return v > 0 ? v : 1;
}

const char *test_fixture_path(const char *name)
{
    static char buf[4096];
    const char *dir = getenv("DIFFCL_FIXTURES");
    snprintf(buf, sizeof buf, "%s/%s", dir ? dir : "tests/fixtures", name);
    return buf;
}

diffcl_context *test_context(void)
{
    diffcl_context_options o = DIFFCL_CONTEXT_OPTIONS_INIT;
    o.n_threads = 1;
    o.log_level = DIFFCL_LOG_WARN;
    diffcl_context *ctx = NULL;
    ck_assert_int_eq(diffcl_context_create(&o, &ctx), DIFFCL_OK);
    return ctx;
}

diffcl_tensor *test_randn(diffcl_context *ctx, diffcl_dtype dtype, int ndim,
                          const int64_t *shape, uint64_t seed)
{
    diffcl_tensor *t = NULL;
    ck_assert_int_eq(diffcl_tensor_new(ctx, dtype, ndim, shape, &t), DIFFCL_OK);
    ck_assert_int_eq(diffcl_tensor_fill_normal(t, diffcl_rng_key_make(seed, 1, 0, 0), 0, 1),
                     DIFFCL_OK);
    return t;
}

double test_rel_error(const diffcl_tensor *a, const diffcl_tensor *b)
{
    int64_t n = diffcl_tensor_numel(b);
    ck_assert_int_eq(diffcl_tensor_numel(a), n);
    double *x = malloc((size_t)(n ? n : 1) * sizeof *x), *y = malloc((size_t)(n ? n : 1) * sizeof *y);
    diffcl_tensor *a64 = NULL, *b64 = NULL;
    ck_assert_int_eq(diffcl_tensor_to_dtype(a, DIFFCL_F64, &a64), DIFFCL_OK);
    ck_assert_int_eq(diffcl_tensor_to_dtype(b, DIFFCL_F64, &b64), DIFFCL_OK);
    diffcl_tensor_copy_to(a64, x, (size_t)n * sizeof *x);
    diffcl_tensor_copy_to(b64, y, (size_t)n * sizeof *y);
    double md = 0, mr = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(x[i] - y[i]);
        if (!(d <= md)) md = d; /* NaN propagates as failure */
        if (fabs(y[i]) > mr) mr = fabs(y[i]);
    }
    free(x);
    free(y);
    diffcl_tensor_free(a64);
    diffcl_tensor_free(b64);
    return mr > 0 ? md / mr : md;
}

/* Copy of @p t as a malloc'ed double array (caller frees). */
static double *as_doubles(const diffcl_tensor *t, int64_t *n)
{
    *n = diffcl_tensor_numel(t);
    double *v = malloc((size_t)(*n ? *n : 1) * sizeof *v);
    diffcl_tensor *t64 = NULL;
    ck_assert_ptr_nonnull(v);
    ck_assert_int_eq(diffcl_tensor_to_dtype(t, DIFFCL_F64, &t64), DIFFCL_OK);
    diffcl_tensor_copy_to(t64, v, (size_t)*n * sizeof *v);
    diffcl_tensor_free(t64);
    return v;
}

test_error test_error_of(const diffcl_tensor *got, const diffcl_tensor *ref)
{
    int64_t n, m;
    double *x = as_doubles(got, &n), *y = as_doubles(ref, &m);
    ck_assert_int_eq(n, m);
    test_error e = {0, 0, 0, 0};
    for (int64_t i = 0; i < n; i++) {
        double d = x[i] - y[i];
        if (!(fabs(d) <= e.max_abs)) e.max_abs = fabs(d); /* NaN propagates as failure */
        e.diff_norm += d * d;
        e.ref_norm += y[i] * y[i];
    }
    free(x);
    free(y);
    e.diff_norm = sqrt(e.diff_norm);
    e.ref_norm = sqrt(e.ref_norm);
    e.rel = e.ref_norm > 0 ? e.diff_norm / e.ref_norm : e.diff_norm;
    if (isnan(e.max_abs)) e.rel = NAN;
    return e;
}

void test_expect_close(const char *what, const diffcl_tensor *got, const diffcl_tensor *ref,
                       double bound)
{
    test_error e = test_error_of(got, ref);
    fprintf(stderr, "  %s: rel %.2e (bound %.1e), max abs %.2e\n", what, e.rel, bound, e.max_abs);
    ck_assert_msg(e.rel <= bound, "%s: rel error %g > bound %g (max abs %g)", what, e.rel, bound,
                  e.max_abs);
}

/* The reference's total squared norm and element count over the module's parameters. */
static void reference_scale(const char *label, diffcl_module *m, const diffcl_tensor_dict *ref,
                            const char *prefix, double *sum_sq, int64_t *total)
{
    char key[256];
    *sum_sq = 0;
    *total = 0;
    for (int i = 0; i < diffcl_module_state_count(m, DIFFCL_STATE_PARAMS); i++) {
        const char *pn;
        ck_assert_int_eq(diffcl_module_state_entry(m, DIFFCL_STATE_PARAMS, i, &pn, NULL, NULL), DIFFCL_OK);
        snprintf(key, sizeof key, "%s%s", prefix, pn);
        const diffcl_tensor *r = diffcl_tensor_dict_get(ref, key);
        ck_assert_msg(r != NULL, "%s: reference lacks %s", label, key);
        test_error z = test_error_of(r, r);
        *sum_sq += z.ref_norm * z.ref_norm;
        *total += diffcl_tensor_numel(r);
    }
}

double test_check_module_grads(const char *label, diffcl_module *m, const diffcl_tensor_dict *ref,
                               const char *prefix, double tensor_bound, double network_bound)
{
    int n = diffcl_module_state_count(m, DIFFCL_STATE_PARAMS), n_net_scale = 0;
    double ref_sq, diff_sq = 0, worst = 0, worst_abs = 0;
    int64_t total;
    const char *worst_name = "";
    char key[256];
    reference_scale(label, m, ref, prefix, &ref_sq, &total);
    double net_rms = total ? sqrt(ref_sq / (double)total) : 0;
    for (int i = 0; i < n; i++) {
        const char *pn;
        diffcl_tensor *p;
        ck_assert_int_eq(diffcl_module_state_entry(m, DIFFCL_STATE_PARAMS, i, &pn, &p, NULL), DIFFCL_OK);
        snprintf(key, sizeof key, "%s%s", prefix, pn);
        const diffcl_tensor *r = diffcl_tensor_dict_get(ref, key), *g = diffcl_tensor_grad(p);
        test_error e = test_error_of(g ? g : r, r);
        if (!g) { /* never reached by the graph: only right where the reference is zero too */
            ck_assert_msg(e.ref_norm == 0, "%s: %s has no gradient; the reference's norm is %g", label,
                          pn, e.ref_norm);
            continue;
        }
        diff_sq += e.diff_norm * e.diff_norm;
        double net_scale = net_rms * sqrt((double)diffcl_tensor_numel(r));
        if (e.ref_norm < TEST_NEAR_ZERO * net_scale) {
            e.rel = net_scale > 0 ? e.diff_norm / net_scale : e.diff_norm;
            n_net_scale++;
        }
        if (getenv("DIFFCL_TEST_VERBOSE") && !(e.rel <= tensor_bound / 10))
            fprintf(stderr, "    %s: rel %.2e, max abs %.2e, |ref| %.2e\n", pn, e.rel, e.max_abs, e.ref_norm);
        if (!(e.rel <= worst)) {
            worst = e.rel;
            worst_name = pn;
            worst_abs = e.max_abs;
        }
    }
    double net = ref_sq > 0 ? sqrt(diff_sq / ref_sq) : sqrt(diff_sq);
    if (isnan(worst)) net = NAN;
    fprintf(stderr, "  %s: %d parameter gradients; network rel %.2e (bound %.1e); worst tensor rel "
            "%.2e (bound %.1e) at %s (max abs %.2e); %d near zero, against the network's scale\n",
            label, n, net, network_bound, worst, tensor_bound, worst_name, worst_abs, n_net_scale);
    ck_assert_msg(net <= network_bound, "%s: network-level gradient rel error %g > bound %g", label, net,
                  network_bound);
    ck_assert_msg(worst <= tensor_bound, "%s: gradient of %s: rel error %g > bound %g", label, worst_name,
                  worst, tensor_bound);
    return net;
}

double test_f32_grad_bound(const diffcl_tensor_dict *fixture)
{
    const char *v = diffcl_tensor_dict_get_meta(fixture, "torch_f32_grad_err");
    double torch_err = v ? atof(v) : 0;
    return torch_err * 3 > 1e-3 ? torch_err * 3 : 1e-3;
}

void test_print_kernels(void)
{
    const char *cf = getenv("DIFFCL_CONV_KERNEL");
    diffcl_context_options o = DIFFCL_CONTEXT_OPTIONS_INIT;
    o.n_threads = 1;
    o.log_level = DIFFCL_LOG_ERROR;
    diffcl_context *c = NULL; /* a new context: the default kernel family (not a Check call: this
                               * runs before the suite) */
    if (diffcl_context_create(&o, &c) != DIFFCL_OK) return;
    fprintf(stderr, "kernels: OpenBLAS core %s (OPENBLAS_CORETYPE=%s); convolutions %s "
            "(DIFFCL_CONV_KERNEL=%s)\n", openblas_get_corename(),
            getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "unset",
            dc_kern_conv512_usable(c) ? "AVX-512" : "cblas_sgemm", cf ? cf : "unset");
    diffcl_context_free(c);
}

int test_run_suite(Suite *s)
{
    test_print_kernels();
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
