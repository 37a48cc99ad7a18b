/* The C half of the test vnet-pth-convert (tests/vnet/check_converted.py): the UA-MT V-Nets
 * of tests/fixtures/vnet_uamt{3,2}d.pth, converted by tools/pth2safetensors.py --vnet into
 * $DIFFCL_CONVERTED_DIR, load with diffcl_model_load() and give PyTorch's eval-mode logits
 * (tests/fixtures/vnet_uamt_expected.safetensors, tests/reference/gen_vnet_convert.py) to 1e-4. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"
#include "diffcl/model.h"

static diffcl_context *ctx;
static void setup(void)
{
    ctx = test_context();
}
static void teardown(void)
{
    diffcl_context_free(ctx);
}

#define LOGIT_TOL 1e-4 /* max |libdiffcl - PyTorch| of a logit */

static void check_converted(int dims, int in_channels, int classes)
{
    const char *dir = getenv("DIFFCL_CONVERTED_DIR");
    ck_assert_msg(dir && *dir,
                  "DIFFCL_CONVERTED_DIR is not set: run tests/vnet/check_converted.py");
    char path[1024], key[32];
    snprintf(path, sizeof path, "%s/vnet_uamt%dd.safetensors", dir, dims);
    diffcl_module *m = NULL;
    ck_ok(diffcl_model_load(ctx, path, &m));
    ck_assert_str_eq(diffcl_module_type(m), "vnet");
    ck_assert_int_eq(diffcl_module_is_training(m), 0);
    diffcl_vnet_options o = DIFFCL_VNET_OPTIONS_INIT;
    ck_ok(diffcl_vnet_get_options(m, &o));
    ck_assert_int_eq(o.dims, dims);
    ck_assert_int_eq(o.in_channels, in_channels);
    ck_assert_int_eq(o.n_classes, classes);
    ck_assert_int_eq(o.n_filters, 2);
    ck_assert_int_eq(o.normalization, DIFFCL_NORM_BATCH);
    ck_assert_uint_eq(o.hf_mamba_levels, 0);
    /* the running statistics came over too (UA-MT's 6000 iterations in the counter) */
    diffcl_tensor *nbt = diffcl_module_find(m, "block_five.conv.7.num_batches_tracked");
    ck_assert_ptr_nonnull(nbt);
    ck_assert_int_eq(*(const int64_t *)diffcl_tensor_data_const(nbt), 6000);

    diffcl_tensor_dict *want = NULL;
    ck_ok(diffcl_safetensors_load(ctx, test_fixture_path("vnet_uamt_expected.safetensors"), &want));
    snprintf(key, sizeof key, "x%dd", dims);
    const diffcl_tensor *x = diffcl_tensor_dict_get(want, key);
    snprintf(key, sizeof key, "logits%dd", dims);
    const diffcl_tensor *ref = diffcl_tensor_dict_get(want, key);
    ck_assert_ptr_nonnull(x);
    ck_assert_ptr_nonnull(ref);
    diffcl_tensor *y = NULL;
    ck_ok(diffcl_module_forward(m, x, &y));
    int64_t sy[DIFFCL_MAX_DIMS], sr[DIFFCL_MAX_DIMS];
    int ny = diffcl_tensor_shape(y, sy), nr = diffcl_tensor_shape(ref, sr);
    ck_assert_int_eq(ny, nr);
    for (int a = 0; a < ny; a++) ck_assert_int_eq(sy[a], sr[a]);
    test_error e = test_error_of(y, ref);
    fprintf(stderr, "%d-D UA-MT V-Net from %s: logits max |diff| %.3g (bound %g), rel %.3g\n", dims,
            path, e.max_abs, LOGIT_TOL, e.rel);
    ck_assert_msg(e.max_abs <= LOGIT_TOL, "%d-D logits differ from PyTorch's by %g", dims,
                  e.max_abs);
    diffcl_tensor_free(y);
    diffcl_tensor_dict_free(want);
    diffcl_module_free(m);
}

START_TEST(test_converted_3d)
{
    check_converted(3, 1, 2);
}
END_TEST
START_TEST(test_converted_2d)
{
    check_converted(2, 2, 3);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("vnet-converted");
    TCase *tc = tcase_create("converted");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_converted_3d);
    tcase_add_test(tc, test_converted_2d);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}
