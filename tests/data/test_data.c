/* Suite `data`: phantom, readers/writers, preprocessing, augmentation, sampler. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_util.h"

#include "diffcl/data.h"

static diffcl_context *ctx_threads(int n)
{
    diffcl_context_options o = DIFFCL_CONTEXT_OPTIONS_INIT;
    o.n_threads = n;
    o.log_level = DIFFCL_LOG_WARN;
    diffcl_context *ctx = NULL;
    ck_ok(diffcl_context_create(&o, &ctx));
    return ctx;
}

static int64_t count_eq(const diffcl_tensor *t, int v)
{
    const uint8_t *p = diffcl_tensor_data_const(t);
    int64_t n = diffcl_tensor_numel(t), c = 0;
    for (int64_t i = 0; i < n; i++) c += p[i] == v;
    return c;
}

static int same_bytes(const diffcl_tensor *a, const diffcl_tensor *b)
{
    if (diffcl_tensor_numel(a) != diffcl_tensor_numel(b)) return 0;
    size_t n = (size_t)diffcl_tensor_numel(a) * diffcl_dtype_size(diffcl_tensor_dtype(a));
    return memcmp(diffcl_tensor_data_const(a), diffcl_tensor_data_const(b), n) == 0;
}

/* ------------------------------------------------------------------ phantom ---- */

START_TEST(phantom_3d_shapes_and_content)
{
    diffcl_context *ctx = test_context();
    diffcl_phantom_options o = DIFFCL_PHANTOM_OPTIONS_INIT;
    diffcl_tensor *img = NULL, *lab = NULL;
    ck_ok(diffcl_phantom_case(ctx, &o, 0, &img, &lab));
    int64_t s[5];
    ck_assert_int_eq(diffcl_tensor_shape(img, s), 4);
    ck_assert(s[0] == 1 && s[1] == 64 && s[2] == 64 && s[3] == 48);
    ck_assert_int_eq(diffcl_tensor_shape(lab, s), 3);
    ck_assert(s[0] == 64 && s[1] == 64 && s[2] == 48);
    ck_assert_int_eq(diffcl_tensor_dtype(img), DIFFCL_F32);
    ck_assert_int_eq(diffcl_tensor_dtype(lab), DIFFCL_U8);
    int64_t n = diffcl_tensor_numel(lab), fg = count_eq(lab, 1);
    ck_assert_msg(fg > n / 50 && fg < n / 4, "foreground fraction %g", (double)fg / n);
    ck_assert_int_eq(count_eq(lab, 0) + fg, n);
    /* z-scored, and the foreground is brighter than the background on average */
    const float *ip = diffcl_tensor_data_const(img);
    const uint8_t *lp = diffcl_tensor_data_const(lab);
    double m = 0, m2 = 0, mf = 0, mb = 0;
    for (int64_t i = 0; i < n; i++) {
        ck_assert(isfinite(ip[i]));
        m += ip[i];
        m2 += ip[i] * ip[i];
        if (lp[i]) mf += ip[i];
        else mb += ip[i];
    }
    m /= n;
    ck_assert(fabs(m) < 1e-3 && fabs(m2 / n - 1) < 1e-3);
    ck_assert(mf / fg > mb / (n - fg) + 1.0);
    diffcl_tensor_free(img);
    diffcl_tensor_free(lab);
    diffcl_context_free(ctx);
}
END_TEST

START_TEST(phantom_deterministic_and_thread_independent)
{
    diffcl_context *c1 = ctx_threads(1), *c2 = ctx_threads(2);
    diffcl_phantom_options o = DIFFCL_PHANTOM_OPTIONS_INIT;
    o.depth = 32;
    o.height = 40;
    o.width = 24;
    o.channels = 2;
    diffcl_tensor *a = NULL, *al = NULL, *b = NULL, *bl = NULL, *c = NULL, *cl = NULL;
    ck_ok(diffcl_phantom_case(c1, &o, 3, &a, &al));
    ck_ok(diffcl_phantom_case(c2, &o, 3, &b, &bl));
    ck_assert(same_bytes(a, b) && same_bytes(al, bl));
    ck_ok(diffcl_phantom_case(c1, &o, 4, &c, &cl));
    ck_assert(!same_bytes(a, c) && !same_bytes(al, cl));
    ck_assert_int_eq(diffcl_tensor_dim(a, 0), 2);
    diffcl_tensor_free(c);
    diffcl_tensor_free(cl);
    o.seed = 99;
    ck_ok(diffcl_phantom_case(c1, &o, 3, &c, &cl));
    ck_assert(!same_bytes(al, cl));
    diffcl_tensor_free(a);
    diffcl_tensor_free(al);
    diffcl_tensor_free(b);
    diffcl_tensor_free(bl);
    diffcl_tensor_free(c);
    diffcl_tensor_free(cl);
    diffcl_context_free(c1);
    diffcl_context_free(c2);
}
END_TEST

START_TEST(phantom_2d_and_tube_class)
{
    diffcl_context *ctx = test_context();
    diffcl_phantom_options o;
    diffcl_phantom_options_init(&o);
    o.ndim = 2;
    o.tube_class = 2;
    for (int64_t k = 0; k < 8; k++) {
        diffcl_tensor *img = NULL, *lab = NULL;
        ck_ok(diffcl_phantom_case(ctx, &o, k, &img, &lab));
        int64_t s[5];
        ck_assert_int_eq(diffcl_tensor_shape(img, s), 3);
        ck_assert(s[0] == 1 && s[1] == 96 && s[2] == 96);
        ck_assert_int_eq(diffcl_tensor_shape(lab, s), 2);
        int64_t n = diffcl_tensor_numel(lab), f1 = count_eq(lab, 1), f2 = count_eq(lab, 2);
        ck_assert_msg(f1 > n / 40 && f1 < n / 3, "case %d: blob fraction %g", (int)k,
                      (double)f1 / n);
        ck_assert_msg(f2 > 0, "case %d: no tube pixels in the 2-D slice", (int)k);
        ck_assert_int_eq(count_eq(lab, 0) + f1 + f2, n);
        diffcl_tensor_free(img);
        diffcl_tensor_free(lab);
    }
    diffcl_context_free(ctx);
}
END_TEST

START_TEST(phantom_bad_options)
{
    diffcl_context *ctx = test_context();
    diffcl_phantom_options o = DIFFCL_PHANTOM_OPTIONS_INIT;
    diffcl_tensor *img = NULL;
    o.ndim = 4;
    ck_assert_int_eq(diffcl_phantom_case(ctx, &o, 0, &img, NULL), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert(strstr(diffcl_last_error(), "ndim"));
    o.ndim = 3;
    o.width = 8;
    ck_assert_int_eq(diffcl_phantom_case(ctx, &o, 0, &img, NULL), DIFFCL_ERR_INVALID_ARGUMENT);
    o.width = 0;
    ck_assert_int_eq(diffcl_phantom_case(ctx, &o, -1, &img, NULL), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_null(img);
    ck_ok(diffcl_phantom_case(ctx, NULL, 0, &img, NULL));
    diffcl_tensor_free(img);
    diffcl_context_free(ctx);
}
END_TEST

static Suite *data_suite(void)
{
    Suite *s = suite_create("data");
    TCase *tc = tcase_create("phantom");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, phantom_3d_shapes_and_content);
    tcase_add_test(tc, phantom_deterministic_and_thread_independent);
    tcase_add_test(tc, phantom_2d_and_tube_class);
    tcase_add_test(tc, phantom_bad_options);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return test_run_suite(data_suite()); }
