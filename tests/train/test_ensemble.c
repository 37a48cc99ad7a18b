/* Suite train, test ensemble: diffcl_ensemble_create (lib/eval/ensemble.c). Two supervised
 * runs of different seeds on the 2-D phantom; the ensemble of their models must give, through
 * the same sliding window (Gaussian weights and flips included), the mean of the members'
 * probabilities, and the argmax of that mean as its label map. The test prints the Dice of
 * both members and of the ensemble: the ensemble is expected to be near the better member,
 * not asserted to beat it (two tiny models on one case). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_util.h"
#include "diffcl/data.h"
#include "diffcl/infer.h"
#include "diffcl/metrics.h"
#include "diffcl/model.h"
#include "diffcl/train.h"

static diffcl_context *ctx;
static char run_a[64], run_b[64];

/* A short supervised run into @p dir; its model.safetensors is a member. */
static void train(char *dir, uint64_t seed)
{
    strcpy(dir, "/tmp/diffcl_ens_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    diffcl_train_options o = DIFFCL_TRAIN_OPTIONS_INIT;
    o.method = DIFFCL_METHOD_SUPERVISED;
    o.dims = 2;
    o.labeled = 4;
    o.phantom_cases = 6;
    o.patch[1] = o.patch[2] = 48;
    o.batch_labeled = 2;
    o.n_filters = 4;
    o.hfm_levels = 0;
    o.iters = 60;
    o.seed = seed;
    o.val_every = 1000000;
    o.out_dir = dir;
    diffcl_trainer *tr = NULL;
    ck_ok(diffcl_trainer_create(ctx, &o, &tr));
    ck_ok(diffcl_trainer_run(tr));
    diffcl_trainer_free(tr);
}

static diffcl_module *load(const char *dir)
{
    char path[128];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    diffcl_module *m = NULL;
    ck_ok(diffcl_model_load(ctx, path, &m));
    return m;
}

/* Once, before the tests fork: the two runs. */
static void train_runs(void)
{
    ctx = test_context();
    train(run_a, 1);
    train(run_b, 2);
    diffcl_context_free(ctx);
}

static void remove_runs(void)
{
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", run_a, run_b);
    ck_assert_int_eq(system(cmd), 0);
}

static void setup(void)
{
    ctx = test_context();
}

static void teardown(void)
{
    diffcl_context_free(ctx);
}

static double dice(const diffcl_tensor *label, const diffcl_tensor *ref)
{
    diffcl_seg_metrics m;
    ck_ok(diffcl_metrics_binary(label, ref, NULL, &m));
    return m.dice;
}

START_TEST(test_ensemble_is_the_mean_of_its_members)
{
    diffcl_phantom_options po = DIFFCL_PHANTOM_OPTIONS_INIT;
    po.ndim = 2;
    po.height = po.width = 64;
    diffcl_tensor *img = NULL, *ref = NULL;
    ck_ok(diffcl_phantom_case(ctx, &po, 17, &img, &ref)); /* not a training case */
    diffcl_sliding_window_options so = DIFFCL_SLIDING_WINDOW_OPTIONS_INIT;
    so.patch[0] = 1;
    so.patch[1] = so.patch[2] = 48;
    so.stride[0] = 1;
    so.stride[1] = so.stride[2] = 16;
    so.gaussian = 1;
    so.tta_flips = 1;
    diffcl_module *a = load(run_a), *b = load(run_b);
    diffcl_tensor *la = NULL, *pa = NULL, *lb = NULL, *pb = NULL, *le = NULL, *pe = NULL;
    diffcl_module_train(a, 0);
    diffcl_module_train(b, 0);
    ck_ok(diffcl_segment(a, img, &so, &la, &pa));
    ck_ok(diffcl_segment(b, img, &so, &lb, &pb));
    diffcl_module *members[2] = {load(run_a), load(run_b)}, *ens = NULL;
    ck_ok(diffcl_ensemble_create(ctx, members, 2, &ens));
    ck_assert_ptr_null(members[0]); /* taken */
    ck_ok(diffcl_segment(ens, img, &so, &le, &pe));

    const float *fa = diffcl_tensor_data(pa), *fb = diffcl_tensor_data(pb),
                *fe = diffcl_tensor_data(pe);
    double worst = 0, moved = 0;
    for (int64_t i = 0; i < diffcl_tensor_numel(pe); i++) {
        double mean = 0.5 * ((double)fa[i] + (double)fb[i]);
        worst = fmax(worst, fabs(fe[i] - mean));
        moved = fmax(moved, fabs((double)fa[i] - (double)fb[i]));
    }
    printf("ensemble: Dice member A %.4f, member B %.4f, ensemble %.4f; max |p_ens - mean| %.2g; "
           "max |p_A - p_B| %.3f\n",
           dice(la, ref), dice(lb, ref), dice(le, ref), worst, moved);
    ck_assert_msg(moved > 1e-3, "the two members agree everywhere: the test shows nothing");
    ck_assert_msg(worst <= 1e-6, "ensemble probabilities differ from the mean by %g", worst);
    diffcl_tensor *lm = NULL; /* the label map is the argmax of the mean */
    ck_ok(diffcl_probs_to_label(pe, &lm));
    ck_assert_int_eq(
        memcmp(diffcl_tensor_data(lm), diffcl_tensor_data(le), (size_t)diffcl_tensor_numel(le)), 0);
    diffcl_tensor *list[] = {img, ref, la, pa, lb, pb, le, pe, lm};
    for (size_t i = 0; i < sizeof list / sizeof *list; i++) diffcl_tensor_free(list[i]);
    diffcl_module_free(a);
    diffcl_module_free(b);
    diffcl_module_free(ens);
}
END_TEST

START_TEST(test_members_of_other_classes_are_refused)
{
    diffcl_vnet_options vo = DIFFCL_VNET_OPTIONS_INIT;
    vo.dims = 2;
    vo.n_filters = 2;
    vo.n_classes = 3;
    diffcl_module *members[2] = {load(run_a), NULL}, *ens = NULL;
    ck_ok(diffcl_vnet_create(ctx, &vo, &members[1]));
    ck_ok(diffcl_ensemble_create(ctx, members, 2, &ens));
    int64_t shape[3] = {1, 32, 32};
    diffcl_tensor *img = NULL, *p = NULL;
    img = test_randn(ctx, DIFFCL_F32, 3, shape, 7);
    diffcl_sliding_window_options so = DIFFCL_SLIDING_WINDOW_OPTIONS_INIT;
    so.patch[0] = so.stride[0] = 1;
    so.patch[1] = so.patch[2] = so.stride[1] = so.stride[2] = 32;
    ck_assert_int_eq(diffcl_sliding_window(ens, img, &so, &p), DIFFCL_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(diffcl_last_error(), "same classes"));
    diffcl_tensor_free(img);
    diffcl_module_free(ens);
}
END_TEST

START_TEST(test_bad_arguments_free_the_members)
{
    diffcl_module *members[2] = {load(run_a), NULL}, *ens = NULL;
    /* a NULL member: refused, and the other member is freed (LSan sees a leak otherwise) */
    ck_assert_int_eq(diffcl_ensemble_create(ctx, members, 2, &ens), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_null(ens);
    ck_assert_ptr_null(members[0]);
    ck_assert_int_eq(diffcl_ensemble_create(ctx, members, 0, &ens), DIFFCL_ERR_INVALID_ARGUMENT);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ensemble");
    TCase *tc = tcase_create("ensemble");
    tcase_add_unchecked_fixture(tc, train_runs, remove_runs);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_ensemble_is_the_mean_of_its_members);
    tcase_add_test(tc, test_members_of_other_classes_are_refused);
    tcase_add_test(tc, test_bad_arguments_free_the_members);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}
