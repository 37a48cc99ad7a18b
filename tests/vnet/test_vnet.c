/* Suite vnet: the V-Net's names, shapes and errors, and parity with a PyTorch V-Net
 * (tests/reference/gen_vnet.py): train-mode forward, every parameter gradient, five SGD
 * steps (losses, weights, BN running statistics) and eval-mode forward. */
#include <stdio.h>
#include <math.h>
#include <string.h>
#include <unistd.h>
#include <stdlib.h>

#include "test_util.h"
#include "diffcl/diffusion.h"
#include "diffcl/model.h"
#include "diffcl/mamba.h"
#include "layer/conv_internal.h"
#include "diffcl/optim.h"

static diffcl_context *ctx;
static void setup(void) { ctx = test_context(); }
static void teardown(void) { diffcl_context_free(ctx); }

static diffcl_module *small_vnet(int dims, diffcl_norm_kind norm)
{
    diffcl_vnet_options o = DIFFCL_VNET_OPTIONS_INIT;
    o.dims = dims;
    o.n_filters = 4;
    o.normalization = norm;
    o.has_dropout = 0;
    o.seed = 7;
    diffcl_module *m = NULL;
    ck_ok(diffcl_vnet_create(ctx, &o, &m));
    return m;
}

START_TEST(test_state_dict_names)
{
    diffcl_module *m = small_vnet(3, DIFFCL_NORM_BATCH);
    /* PyTorch: ConvBlock stage = conv.0 (Conv3d), conv.1 (BN), conv.2 (ReLU), conv.3 ... */
    const char *expect[] = {"block_one.conv.0.weight", "block_one.conv.0.bias",
                            "block_one.conv.1.weight", "block_one.conv.1.running_mean",
                            "block_one.conv.1.num_batches_tracked", "block_two.conv.3.weight",
                            "block_five_up.conv.0.weight", "block_nine.conv.1.running_var",
                            "out_conv.weight", "out_conv.bias"};
    for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++)
        ck_assert_msg(diffcl_module_find(m, expect[i]) != NULL, "missing %s", expect[i]);
    ck_assert_ptr_null(diffcl_module_find(m, "block_two.conv.2.weight")); /* ReLU */
    ck_assert_int_eq(diffcl_tensor_dim(diffcl_module_find(m, "block_five_up.conv.0.weight"), 0), 64);
    ck_assert_int_eq(diffcl_tensor_dim(diffcl_module_find(m, "block_five_up.conv.0.weight"), 1), 32);
    ck_assert_int_eq(diffcl_tensor_dtype(diffcl_module_find(m, "block_one.conv.1.num_batches_tracked")),
                     DIFFCL_I64);
    /* the PyTorch V-Net has 30 convolutions (4 transposed) and, with batch norm, 29 BN layers */
    ck_assert_int_eq(diffcl_module_state_count(m, DIFFCL_STATE_PARAMS), 2 * 30 + 2 * 29);
    ck_assert_int_eq(diffcl_module_state_count(m, DIFFCL_STATE_BUFFERS), 3 * 29);
    diffcl_module_free(m);
    /* without normalisation: conv.0, conv.1 (ReLU), conv.2 */
    m = small_vnet(3, DIFFCL_NORM_NONE);
    ck_assert_ptr_nonnull(diffcl_module_find(m, "block_two.conv.2.weight"));
    ck_assert_int_eq(diffcl_module_state_count(m, DIFFCL_STATE_BUFFERS), 0);
    diffcl_module_free(m);
}
END_TEST

START_TEST(test_shapes_and_errors)
{
    diffcl_module *m = small_vnet(2, DIFFCL_NORM_GROUP);
    int64_t ok[4] = {1, 1, 32, 48}, bad[4] = {1, 1, 30, 32}, badc[4] = {1, 3, 32, 32};
    diffcl_tensor *x = test_randn(ctx, DIFFCL_F32, 4, ok, 1), *y = NULL, *f = NULL;
    ck_ok(diffcl_vnet_forward(m, x, &y, &f));
    ck_assert_int_eq(diffcl_tensor_dim(y, 1), 2);
    ck_assert_int_eq(diffcl_tensor_dim(y, 3), 48);
    ck_assert_int_eq(diffcl_tensor_dim(f, 1), 4);
    diffcl_tensor_free(y);
    diffcl_tensor_free(f);
    diffcl_tensor_free(x);
    x = test_randn(ctx, DIFFCL_F32, 4, bad, 1);
    ck_assert_int_eq(diffcl_vnet_forward(m, x, &y, NULL), DIFFCL_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(diffcl_last_error(), "multiples of 16"));
    diffcl_tensor_free(x);
    x = test_randn(ctx, DIFFCL_F32, 4, badc, 1);
    ck_assert_int_eq(diffcl_module_forward(m, x, &y), DIFFCL_ERR_SHAPE);
    diffcl_tensor_free(x);
    diffcl_module_free(m);
    diffcl_vnet_options o = DIFFCL_VNET_OPTIONS_INIT;
    o.dims = 4;
    ck_assert_int_eq(diffcl_vnet_create(ctx, &o, &m), DIFFCL_ERR_INVALID_ARGUMENT);
}
END_TEST

/* Load "init.*" of a fixture into the model. */
static void load_prefixed(diffcl_module *m, diffcl_tensor_dict *fx, const char *prefix)
{
    diffcl_load_options lo = DIFFCL_LOAD_OPTIONS_INIT;
    lo.prefix = prefix;
    lo.strict = 0; /* the fixture holds other entries too; every model key must be there: */
    int missing = -1;
    ck_ok(diffcl_module_load_state_dict(m, fx, &lo, &missing, NULL));
    ck_assert_int_eq(missing, 0);
}

static diffcl_tensor *to_dtype(diffcl_tensor *t, diffcl_dtype dt)
{
    diffcl_tensor *r = NULL;
    ck_ok(diffcl_tensor_to_dtype(t, dt, &r));
    return r;
}

static diffcl_tensor *weighted_mean(diffcl_tensor *logits, diffcl_tensor *w)
{
    diffcl_tensor *p = NULL, *l = NULL;
    ck_ok(diffcl_mul(logits, w, &p));
    ck_ok(diffcl_mean_all(p, &l));
    diffcl_tensor_free(p);
    return l;
}

/* Forward in train mode and every parameter gradient of L = mean(logits * w), in @p dt
 * (the model is converted first), against the fixture's float64 reference; @p kernel picks the
 * convolution family (0: default, AVX-512 where the CPU has it; 1: cblas_sgemm).
 *
 * float32, as users run it: logits to 1e-4, gradients network-level to max(1e-3, 3 x torch's
 * own float32 error on this fixture), both norm-wise (test_check_module_grads). About a
 * hundred of the 1.3 million ReLU inputs of the 3-D fixture lie within float32's error of the
 * kink, so another summation order (BLAS core, kernel family, CPU) flips a few of them, which
 * moves single small tensors by up to 1e-2 (tests/reference/conditioning.py).
 * float64: logits to 1e-10 and every gradient tensor to 1e-8, which no summation order can
 * reach (every ReLU input is >= 1e-9 from its kink, checked by the generator). */
static void parity(int dims, diffcl_dtype dt, int kernel)
{
    char name[64], label[96];
    snprintf(name, sizeof name, "vnet%dd.safetensors", dims);
    snprintf(label, sizeof label, "vnet%dd %s %s", dims, diffcl_dtype_name(dt), kernel ? "blas" : "default");
    diffcl_tensor_dict *fx = NULL;
    ck_ok(diffcl_safetensors_load(ctx, test_fixture_path(name), &fx));
    diffcl_module *m = small_vnet(dims, DIFFCL_NORM_BATCH);
    if (dt == DIFFCL_F64) ck_ok(diffcl_module_to_dtype(m, DIFFCL_F64));
    load_prefixed(m, fx, "init.");
    diffcl_tensor *x = to_dtype(diffcl_tensor_dict_get(fx, "x"), dt);
    diffcl_tensor *w = to_dtype(diffcl_tensor_dict_get(fx, "w"), dt);
    diffcl_module_train(m, 1);
    dc_conv_set_kernel(ctx, kernel);
    diffcl_tensor *logits = NULL;
    ck_ok(diffcl_vnet_forward(m, x, &logits, NULL));
    fprintf(stderr, "%s:\n", label);
    test_expect_close("train-mode logits", logits, diffcl_tensor_dict_get(fx, "train_logits"),
                      dt == DIFFCL_F64 ? 1e-10 : 1e-4);
    diffcl_tensor *loss = weighted_mean(logits, w);
    ck_ok(diffcl_backward(loss, NULL));
    if (dt == DIFFCL_F64) test_check_module_grads(label, m, fx, "grad.", 1e-8, 1e-8);
    else test_check_module_grads(label, m, fx, "grad.", TEST_NO_BOUND, test_f32_grad_bound(fx));
    dc_conv_set_kernel(ctx, 0);
    diffcl_tensor_free(loss);
    diffcl_tensor_free(logits);
    diffcl_tensor_free(x);
    diffcl_tensor_free(w);
    diffcl_module_free(m);
    diffcl_tensor_dict_free(fx);
}

/* Five SGD steps (lr 0.01, momentum 0.9, Nesterov, weight decay 1e-4): losses, every weight
 * and BN running statistic, eval-mode forward, in float64 against float64 (the fixture stores
 * these results rounded to float32: 6e-8 relative, hence 1e-4 here). The reference is computed
 * from exactly the stored, float32-rounded inputs, so only round-off differs. */
static void parity_trajectory_f64(int dims)
{
    char name[64];
    snprintf(name, sizeof name, "vnet%dd.safetensors", dims);
    diffcl_tensor_dict *fx = NULL;
    ck_ok(diffcl_safetensors_load(ctx, test_fixture_path(name), &fx));
    diffcl_module *m = small_vnet(dims, DIFFCL_NORM_BATCH);
    ck_ok(diffcl_module_to_dtype(m, DIFFCL_F64));
    ck_assert_int_eq(diffcl_tensor_dtype(diffcl_module_find(m, "out_conv.weight")), DIFFCL_F64);
    ck_assert_int_eq(diffcl_tensor_dtype(diffcl_module_find(m, "block_one.conv.1.num_batches_tracked")),
                     DIFFCL_I64);
    load_prefixed(m, fx, "init.");
    diffcl_tensor *x = to_dtype(diffcl_tensor_dict_get(fx, "x"), DIFFCL_F64);
    diffcl_tensor *w = to_dtype(diffcl_tensor_dict_get(fx, "w"), DIFFCL_F64);
    diffcl_optimizer *opt = NULL;
    diffcl_param_group_options so = DIFFCL_PARAM_GROUP_OPTIONS_INIT;
    so.lr = 0.01;
    so.momentum = 0.9;
    so.nesterov = 1;
    so.weight_decay = 1e-4;
    ck_ok(diffcl_optimizer_create(ctx, DIFFCL_OPTIM_SGD, &opt));
    ck_ok(diffcl_optimizer_add_module(opt, m, &so, 0, NULL));
    diffcl_module_train(m, 1);
    for (int step = 0; step < 5; step++) {
        diffcl_module_zero_grad(m);
        diffcl_tensor *logits = NULL;
        ck_ok(diffcl_vnet_forward(m, x, &logits, NULL));
        diffcl_tensor *loss = weighted_mean(logits, w);
        double lv, ref;
        ck_ok(diffcl_tensor_item(loss, &lv));
        snprintf(name, sizeof name, "loss_%d", step);
        int64_t z[1] = {0};
        ck_ok(diffcl_tensor_get(diffcl_tensor_dict_get(fx, name), z, &ref));
        ck_assert_msg(fabs(lv - ref) <= 1e-4 * fabs(ref), "step %d loss %.12g vs torch %.12g", step, lv, ref);
        ck_ok(diffcl_backward(loss, NULL));
        ck_ok(diffcl_optimizer_step(opt));
        diffcl_tensor_free(loss);
        diffcl_tensor_free(logits);
    }
    int n = diffcl_module_state_count(m, DIFFCL_STATE_ALL);
    for (int i = 0; i < n; i++) {
        const char *pn;
        diffcl_tensor *p;
        ck_ok(diffcl_module_state_entry(m, DIFFCL_STATE_ALL, i, &pn, &p, NULL));
        char key[256];
        snprintf(key, sizeof key, "final.%s", pn);
        double e = test_rel_error(p, diffcl_tensor_dict_get(fx, key));
        ck_assert_msg(e <= 1e-4, "%s after 5 SGD steps: rel error %g", pn, e);
    }
    diffcl_module_train(m, 0);
    diffcl_tensor *logits = NULL;
    ck_ok(diffcl_vnet_forward(m, x, &logits, NULL));
    double e = test_rel_error(logits, diffcl_tensor_dict_get(fx, "eval_logits"));
    ck_assert_msg(e <= 1e-4, "eval-mode logits rel error %g", e);
    diffcl_tensor_free(logits);
    diffcl_optimizer_free(opt);
    diffcl_tensor_free(x);
    diffcl_tensor_free(w);
    diffcl_module_free(m);
    diffcl_tensor_dict_free(fx);
}

START_TEST(test_parity_3d)
{
    parity(3, DIFFCL_F32, 0);
    parity(3, DIFFCL_F32, 1);
}
END_TEST

START_TEST(test_parity_2d)
{
    parity(2, DIFFCL_F32, 0);
    parity(2, DIFFCL_F32, 1);
}
END_TEST

START_TEST(test_parity_f64)
{
    parity(2, DIFFCL_F64, 0);
    parity(3, DIFFCL_F64, 0);
}
END_TEST

START_TEST(test_parity_3d_five_sgd_steps) { parity_trajectory_f64(3); }
END_TEST

START_TEST(test_model_checkpoint_roundtrip)
{
    diffcl_module *m = small_vnet(2, DIFFCL_NORM_BATCH), *back = NULL;
    char path[] = "/tmp/diffcl_vnet_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_ok(diffcl_model_save(m, path));
    ck_ok(diffcl_model_load(ctx, path, &back));
    ck_assert_str_eq(diffcl_module_type(back), "vnet");
    ck_assert_int_eq(diffcl_module_is_training(back), 0);
    diffcl_vnet_options o = DIFFCL_VNET_OPTIONS_INIT;
    ck_ok(diffcl_vnet_get_options(back, &o));
    ck_assert_int_eq(o.dims, 2);
    ck_assert_int_eq(o.n_filters, 4);
    diffcl_vnet_options om = DIFFCL_VNET_OPTIONS_INIT;
    ck_ok(diffcl_vnet_get_options(m, &om));
    ck_assert_uint_eq(o.seed, om.seed); /* the dropout draws continue alike */
    diffcl_tensor *a = diffcl_module_find(m, "block_three.conv.3.weight");
    diffcl_tensor *b = diffcl_module_find(back, "block_three.conv.3.weight");
    ck_assert_double_eq(test_rel_error(a, b), 0.0);
    diffcl_module_free(back);
    /* a configuration that does not match the weights (corrupt or forged: n_filters 2^31-1
     * overflowed, 4096 allocated gigabytes) is refused before a model is built */
    const char *forged[3] = {
        "{\"type\":\"vnet\",\"dims\":2,\"in_channels\":1,\"n_classes\":2,\"n_filters\":2147483647,"
        "\"normalization\":\"batchnorm\",\"has_dropout\":0,\"dropout_p\":0.5,\"hf_mamba_levels\":0}",
        "{\"type\":\"vnet\",\"dims\":2,\"in_channels\":100000000,\"n_classes\":2,\"n_filters\":4,"
        "\"normalization\":\"batchnorm\",\"has_dropout\":0,\"dropout_p\":0.5,\"hf_mamba_levels\":0}",
        "{\"type\":\"vnet\",\"dims\":3,\"in_channels\":1,\"n_classes\":2,\"n_filters\":4,"
        "\"normalization\":\"batchnorm\",\"has_dropout\":0,\"dropout_p\":0.5,\"hf_mamba_levels\":0}"};
    for (int k = 0; k < 3; k++) {
        const char *key = "diffcl.model";
        ck_ok(diffcl_module_save(m, path, &key, &forged[k], 1));
        ck_assert_int_eq(diffcl_model_load(ctx, path, &back), DIFFCL_ERR_FORMAT);
        ck_assert_ptr_nonnull(strstr(diffcl_last_error(), "does not match the weights"));
        ck_assert_ptr_null(back);
    }
    /* a checkpoint without configuration metadata is refused with a clear message */
    ck_ok(diffcl_module_save(m, path, NULL, NULL, 0));
    ck_assert_int_eq(diffcl_model_load(ctx, path, &back), DIFFCL_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(diffcl_last_error(), "diffcl.model"));
    /* diffcl_model_load also rebuilds a diffusion denoiser from its own metadata */
    diffcl_diffusion_options dop = DIFFCL_DIFFUSION_OPTIONS_INIT;
    dop.dims = 2;
    dop.n_filters = 4;
    dop.seed = 0xFEDCBA9876543210ull; /* beyond a double's 53 bits */
    diffcl_module *dn = NULL;
    ck_ok(diffcl_diffusion_create(ctx, &dop, &dn));
    for (int k = 0; k < 2; k++) { /* its own save, and diffcl_model_save, which writes the same */
        ck_ok(k ? diffcl_model_save(dn, path) : diffcl_diffusion_save(dn, path));
        ck_ok(diffcl_model_load(ctx, path, &back));
        ck_assert_str_eq(diffcl_module_type(back), diffcl_module_type(dn));
        diffcl_diffusion_options ob = DIFFCL_DIFFUSION_OPTIONS_INIT;
        ck_ok(diffcl_diffusion_get_options(back, &ob));
        ck_assert_uint_eq(ob.seed, dop.seed);
        diffcl_module_free(back);
    }
    diffcl_module_free(dn);
    /* an HF-Mamba border other than the periodic default survives save and load */
    diffcl_vnet_options hb = DIFFCL_VNET_OPTIONS_INIT;
    hb.dims = 2;
    hb.n_filters = 4;
    hb.hf_mamba_levels = DIFFCL_LEVEL(4);
    hb.hfm_border = DIFFCL_HFM_BORDER_REFLECT;
    diffcl_module *hm = NULL;
    ck_ok(diffcl_vnet_create(ctx, &hb, &hm));
    ck_ok(diffcl_model_save(hm, path));
    ck_ok(diffcl_model_load(ctx, path, &back));
    diffcl_vnet_options hl = DIFFCL_VNET_OPTIONS_INIT;
    ck_ok(diffcl_vnet_get_options(back, &hl));
    ck_assert_int_eq(hl.hfm_border, DIFFCL_HFM_BORDER_REFLECT);
    diffcl_module_free(back);
    diffcl_module_free(hm);
    hb.hfm_border = 7;
    ck_assert_int_eq(diffcl_vnet_create(ctx, &hb, &hm), DIFFCL_ERR_INVALID_ARGUMENT);
    remove(path);
    ck_assert_int_eq(diffcl_model_load(ctx, "/nonexistent/x.safetensors", &back), DIFFCL_ERR_IO);
    diffcl_module_free(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("vnet");
    TCase *tc = tcase_create("vnet");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_state_dict_names);
    tcase_add_test(tc, test_shapes_and_errors);
    tcase_add_test(tc, test_parity_3d);
    tcase_add_test(tc, test_parity_2d);
    tcase_add_test(tc, test_parity_f64);
    tcase_add_test(tc, test_parity_3d_five_sgd_steps);
    tcase_add_test(tc, test_model_checkpoint_roundtrip);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}
