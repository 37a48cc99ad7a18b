#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

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

int test_run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
