/* Suite train, cross supervision: the mechanisms of issue 15, each visible on its own.
 *  - L^c_p gives the CS a gradient towards the DS label where the two disagree (every
 *    crossing variant and the default), and none there in the 0.1.0 agreement variant;
 *  - the DS makes its pseudo labels in evaluation mode: its batch-norm running statistics
 *    see only the training forwards;
 *  - weak and strong views of an unlabeled patch share their geometry. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_util.h"
#include "diffcl/data.h"
#include "diffcl/infer.h"
#include "diffcl/train.h"
#include "train/trainer_internal.h"

static diffcl_context *ctx;
static void setup(void) { ctx = test_context(); }
static void teardown(void) { diffcl_context_free(ctx); }

enum { H = 16, W = 16, R0 = 4, R1 = 12 }; /* the disagreement region: rows and columns [R0, R1) */

static int in_region(int y, int x) { return y >= R0 && y < R1 && x >= R0 && x < R1; }

/* A CS that says background everywhere (logit 1 vs -1) and a DS that says class 1 on the
 * region with confidence 0.9: returns the gradient of L^c_p on the CS logits [2, H, W]. */
static void cs_pseudo_gradient(const diffcl_train_options *o, float *grad)
{
    int64_t ls[4] = {1, 2, H, W}, ps[3] = {1, H, W};
    diffcl_tensor *logits = NULL, *pseudo = NULL, *probs = NULL, *agree = NULL, *loss = NULL;
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_F32, 4, ls, &logits));
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_I64, 3, ps, &pseudo));
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_F32, 4, ls, &probs));
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_F32, 3, ps, &agree));
    float *lg = diffcl_tensor_data(logits), *pr = diffcl_tensor_data(probs), *ag = diffcl_tensor_data(agree);
    int64_t *pl = diffcl_tensor_data(pseudo);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            int i = y * W + x, k = in_region(y, x);
            lg[i] = 1.0f;
            lg[H * W + i] = -1.0f;
            pl[i] = k;
            pr[k * H * W + i] = 0.9f;
            pr[(1 - k) * H * W + i] = 0.1f;
            ag[i] = k ? 0.0f : 1.0f; /* the CS argmax is 0 everywhere */
        }
    ck_ok(diffcl_tensor_set_requires_grad(logits, 1));
    ck_ok(dc_cs_pseudo_loss(o, logits, pseudo, probs, agree, &loss));
    ck_ok(diffcl_backward(loss, NULL));
    ck_ok(diffcl_tensor_copy_to(diffcl_tensor_grad(logits), grad, sizeof(float) * 2 * H * W));
    diffcl_tensor *all[] = {logits, pseudo, probs, agree, loss};
    for (int i = 0; i < 5; i++) diffcl_tensor_free(all[i]);
}

/* Where CS and DS disagree, gradient descent on L^c_p must raise the DS class (1) and lower
 * the CS's own (0) on every voxel; in the agreement variant the gradient there is exactly 0. */
START_TEST(test_cs_pseudo_gradient_points_to_ds_label)
{
    struct {
        const char *name;
        diffcl_cps_variant variant;
        double confidence;
        int use_default;
    } cases[] = {{"default", 0, 0, 1},
                 {"plain", DIFFCL_CPS_PLAIN, 0, 0},
                 {"confidence (soft)", DIFFCL_CPS_CONFIDENCE, 0, 0},
                 {"confidence (threshold 0.6)", DIFFCL_CPS_CONFIDENCE, 0.6, 0},
                 {"agreement (0.1.0)", DIFFCL_CPS_AGREEMENT, 0, 0}};
    float g[2 * H * W];
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        diffcl_train_options o = DIFFCL_TRAIN_OPTIONS_INIT;
        if (!cases[c].use_default) {
            o.cps_variant = cases[c].variant;
            o.cps_confidence = cases[c].confidence;
        }
        cs_pseudo_gradient(&o, g);
        double towards = 0, largest = 0;
        int n_right = 0, n = 0;
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                if (!in_region(y, x)) continue;
                int i = y * W + x;
                n++;
                n_right += g[H * W + i] < 0 && g[i] > 0; /* descent: class 1 up, class 0 down */
                towards += g[i] - g[H * W + i];
                largest = fmax(largest, fmax(fabs(g[i]), fabs(g[H * W + i])));
            }
        fprintf(stderr, "L^c_p %s: %d of %d disagreeing voxels pushed towards the DS label, mean push %.3e\n",
                cases[c].name, n_right, n, towards / n);
        if (o.cps_variant == DIFFCL_CPS_AGREEMENT) {
            ck_assert_msg(largest == 0, "agreement variant: gradient %g where CS and DS disagree", largest);
        } else {
            ck_assert_msg(n_right == n, "%s: only %d of %d disagreeing voxels pushed towards the DS label",
                          cases[c].name, n_right, n);
            ck_assert_msg(towards / n > 1e-5, "%s: push %g too small", cases[c].name, towards / n);
        }
    }
}
END_TEST

static double batches_tracked(diffcl_module *ds)
{
    double v = -1;
    const diffcl_tensor *t = diffcl_module_find(ds, "embedding_diffusion.emb.ops.0.norm.num_batches_tracked");
    ck_assert_ptr_nonnull(t);
    ck_ok(diffcl_tensor_item(t, &v));
    return v;
}

/* One Diff-CL step with the pseudo terms on from iteration 0. The DS runs two training
 * forwards (supervised and L^d_p); its DDIM steps add to the running statistics only in the
 * 0.1.0 training mode. */
START_TEST(test_ds_pseudo_labels_leave_running_statistics)
{
    double counted[2];
    for (int train_mode = 0; train_mode < 2; train_mode++) {
        char dir[] = "/tmp/diffcl_cross_XXXXXX";
        ck_assert_ptr_nonnull(mkdtemp(dir));
        diffcl_train_options o = DIFFCL_TRAIN_OPTIONS_INIT;
        o.labeled = 2;
        o.phantom_cases = 6;
        o.patch[1] = o.patch[2] = 32;
        o.batch_labeled = o.batch_unlabeled = 2;
        o.n_filters = o.ds_n_filters = 4;
        o.hfm_levels = 0;
        o.ddim_steps_train = 3;
        o.contrast_voxels = 64;
        o.iters = 1;
        o.warmup_frac = o.rampup_frac = 0;
        o.out_dir = dir;
        o.ds_pseudo_train_mode = train_mode;
        diffcl_trainer *tr = NULL;
        ck_ok(diffcl_trainer_create(ctx, &o, &tr));
        diffcl_train_stats st;
        memset(&st, 0, sizeof st);
        st.struct_size = sizeof st;
        ck_ok(diffcl_trainer_step(tr, &st));
        ck_assert(isfinite(st.cs_pseudo) && isfinite(st.ds_pseudo));
        counted[train_mode] = batches_tracked(diffcl_trainer_ds(tr));
        diffcl_trainer_free(tr);
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        ck_assert_int_eq(system(cmd), 0);
    }
    fprintf(stderr, "DS batch-norm forwards in one step: %g (evaluation-mode pseudo labels), %g (training mode)\n",
            counted[0], counted[1]);
    ck_assert_double_eq(counted[0], 2);
    ck_assert_double_eq(counted[1], 2 + 3);
}
END_TEST

/* A sampler over the 2-D phantom with the strong set always on for the unlabeled half. */
static diffcl_sampler *phantom_sampler(diffcl_dataset **ds, diffcl_split *split, int identity_intensity)
{
    diffcl_dataset_options dopt = DIFFCL_DATASET_OPTIONS_INIT;
    dopt.layout = DIFFCL_LAYOUT_PHANTOM;
    dopt.phantom.ndim = 2;
    dopt.n_cases = 6;
    ck_ok(diffcl_dataset_open(ctx, NULL, &dopt, ds));
    ck_ok(diffcl_dataset_split(*ds, 2, NULL, split));
    diffcl_sampler_options so = DIFFCL_SAMPLER_OPTIONS_INIT;
    so.patch[1] = so.patch[2] = 48;
    so.prefetch = 0;
    so.strong_unlabeled = 1;
    so.augment.strong_prob = 1;
    so.augment.scale_lo = so.augment.scale_hi = 0.8; /* a geometric part of the strong set */
    if (identity_intensity) {
        so.augment.blur_lo = so.augment.blur_hi = 0;
        so.augment.brightness_lo = so.augment.brightness_hi = 1;
        so.augment.contrast_lo = so.augment.contrast_hi = 1;
        so.augment.gamma_lo = so.augment.gamma_hi = 1;
    }
    diffcl_sampler *s = NULL;
    ck_ok(diffcl_sampler_create(*ds, split, &so, &s));
    return s;
}

static diffcl_tensor *unlabeled_half(diffcl_tensor *image, int64_t bl, int64_t bu)
{
    diffcl_tensor *u = NULL, *c = NULL;
    ck_ok(diffcl_tensor_narrow(image, 0, bl, bu, &u));
    ck_ok(diffcl_tensor_contiguous(u, &c));
    diffcl_tensor_free(u);
    return c;
}

START_TEST(test_paired_views_share_geometry)
{
    diffcl_dataset *ds[2];
    diffcl_split sp[2];
    diffcl_sampler *s[2];
    diffcl_sampler_views v[2] = {DIFFCL_SAMPLER_VIEWS_INIT, DIFFCL_SAMPLER_VIEWS_INIT};
    for (int k = 0; k < 2; k++) {
        s[k] = phantom_sampler(&ds[k], &sp[k], k == 0);
        ck_ok(diffcl_sampler_next_views(s[k], 3, &v[k], NULL));
        ck_assert_int_eq(diffcl_tensor_dim(v[k].weak, 0), 2);
        ck_assert_int_eq(diffcl_tensor_dim(v[k].image, 0), 4);
    }
    diffcl_tensor *strong0 = unlabeled_half(v[0].image, 2, 2), *strong1 = unlabeled_half(v[1].image, 2, 2);
    /* identity intensity transforms: the strong view is the weak one (the same crop, flips,
     * rotation and scale) */
    test_expect_close("strong view with identity intensity transforms vs weak view", strong0, v[0].weak, 1e-6);
    /* the weak view does not depend on the intensity settings: same geometry in both samplers */
    ck_assert_double_eq(test_rel_error(v[1].weak, v[0].weak), 0);
    /* real intensity transforms make the strong view differ */
    test_error e = test_error_of(strong1, v[1].weak);
    fprintf(stderr, "strong vs weak view with the intensity transforms: rel %.3f\n", e.rel);
    ck_assert(e.rel > 1e-2);
    /* the batch is the one diffcl_sampler_next gives */
    diffcl_tensor *img = NULL, *lab = NULL;
    ck_ok(diffcl_sampler_next(s[1], 3, &img, &lab, NULL));
    ck_assert_double_eq(test_rel_error(img, v[1].image), 0);
    ck_assert_double_eq(test_rel_error(lab, v[1].label), 0);
    diffcl_tensor *all[] = {strong0, strong1, img, lab, v[0].image, v[0].weak, v[0].label,
                            v[1].image, v[1].weak, v[1].label};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) diffcl_tensor_free(all[i]);
    for (int k = 0; k < 2; k++) {
        diffcl_sampler_free(s[k]);
        diffcl_split_free(&sp[k]);
        diffcl_dataset_free(ds[k]);
    }
}
END_TEST

/* Softmax probabilities of a network of a run over a 2-D phantom image, one window. */
static diffcl_tensor *net_probs(const char *path, diffcl_pair_net net, const diffcl_tensor *img)
{
    diffcl_net_options no = DIFFCL_NET_OPTIONS_INIT;
    no.net = net;
    no.ddim_steps = 2;
    diffcl_module *m = NULL;
    ck_ok(diffcl_trainer_load_net(ctx, path, &no, &m));
    diffcl_sliding_window_options sw = DIFFCL_SLIDING_WINDOW_OPTIONS_INIT;
    sw.patch[0] = sw.stride[0] = 1;
    sw.patch[1] = sw.stride[1] = diffcl_tensor_dim(img, 1);
    sw.patch[2] = sw.stride[2] = diffcl_tensor_dim(img, 2);
    diffcl_tensor *p = NULL;
    ck_ok(diffcl_sliding_window(m, img, &sw, &p));
    diffcl_module_free(m);
    return p;
}

static void count_warnings(diffcl_log_level level, const char *message, void *user)
{
    if (level <= DIFFCL_LOG_WARN) {
        fprintf(stderr, "unexpected warning: %s\n", message);
        ++*(int *)user;
    }
}

/* model.safetensors of a Diff-CL run holds the DS next to the CS: diffcl_model_load still
 * gives the CS; diffcl_trainer_load_net gives the DS and the ensemble, whose probabilities
 * are the mean of the two networks'. A supervised run has no DS. */
START_TEST(test_model_file_holds_the_ds)
{
    char dir[2][32] = {"/tmp/diffcl_pair_XXXXXX", "/tmp/diffcl_pair_XXXXXX"};
    char path[2][96], last[96];
    for (int k = 0; k < 2; k++) {
        ck_assert_ptr_nonnull(mkdtemp(dir[k]));
        diffcl_train_options o = DIFFCL_TRAIN_OPTIONS_INIT;
        o.labeled = 2;
        o.phantom_cases = 6;
        o.patch[1] = o.patch[2] = 32;
        o.n_filters = o.ds_n_filters = 4;
        o.hfm_levels = 0;
        o.ddim_steps_train = 2;
        o.contrast_voxels = 64;
        o.iters = 3;
        o.method = k ? DIFFCL_METHOD_SUPERVISED : DIFFCL_METHOD_DIFFCL;
        o.out_dir = dir[k];
        diffcl_trainer *tr = NULL;
        ck_ok(diffcl_trainer_create(ctx, &o, &tr));
        ck_ok(diffcl_trainer_run(tr));
        diffcl_trainer_free(tr);
        snprintf(path[k], sizeof path[k], "%s/model.safetensors", dir[k]);
    }
    snprintf(last, sizeof last, "%s/last.safetensors", dir[0]);
    diffcl_module *cs = NULL;
    int warnings = 0;
    ck_ok(diffcl_context_set_log(ctx, count_warnings, &warnings, DIFFCL_LOG_WARN));
    ck_ok(diffcl_model_load(ctx, path[0], &cs));
    ck_ok(diffcl_context_set_log(ctx, NULL, NULL, DIFFCL_LOG_WARN));
    ck_assert_int_eq(warnings, 0); /* the DS's tensors are expected there, not "unexpected keys" */
    ck_assert_str_eq(diffcl_module_type(cs), "vnet");
    diffcl_module_free(cs);
    diffcl_dataset_options dopt = DIFFCL_DATASET_OPTIONS_INIT;
    dopt.layout = DIFFCL_LAYOUT_PHANTOM;
    dopt.phantom.ndim = 2;
    dopt.n_cases = 1;
    diffcl_dataset *ds = NULL;
    diffcl_tensor *img = NULL;
    ck_ok(diffcl_dataset_open(ctx, NULL, &dopt, &ds));
    ck_ok(diffcl_dataset_load(ds, 0, &img, NULL, NULL));
    diffcl_tensor *pc = net_probs(path[0], DIFFCL_NET_CS, img), *pd = net_probs(path[0], DIFFCL_NET_DS, img);
    diffcl_tensor *pe = net_probs(path[0], DIFFCL_NET_ENSEMBLE, img), *pl = net_probs(last, DIFFCL_NET_DS, img);
    diffcl_tensor *sum = NULL, *mean = NULL;
    ck_ok(diffcl_add(pc, pd, &sum));
    ck_ok(diffcl_affine(sum, 0.5, 0.0, &mean));
    test_expect_close("ensemble vs the mean of the CS's and the DS's probabilities", pe, mean, 1e-6);
    ck_assert(test_rel_error(pd, pc) > 0); /* two networks */
    ck_assert_double_eq(test_rel_error(pl, pd), 0); /* the checkpoint holds the same DS */
    diffcl_net_options no = DIFFCL_NET_OPTIONS_INIT;
    no.net = DIFFCL_NET_DS;
    diffcl_module *m = NULL;
    ck_assert_int_eq(diffcl_trainer_load_net(ctx, path[1], &no, &m), DIFFCL_ERR_NOT_FOUND);
    ck_assert_ptr_null(m);
    diffcl_tensor *all[] = {img, pc, pd, pe, pl, sum, mean};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) diffcl_tensor_free(all[i]);
    diffcl_dataset_free(ds);
    for (int k = 0; k < 2; k++) {
        char cmd[96];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir[k]);
        ck_assert_int_eq(system(cmd), 0);
    }
}
END_TEST

int main(void)
{
    Suite *su = suite_create("cross");
    TCase *tc = tcase_create("cross");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_cs_pseudo_gradient_points_to_ds_label);
    tcase_add_test(tc, test_ds_pseudo_labels_leave_running_statistics);
    tcase_add_test(tc, test_paired_views_share_geometry);
    tcase_add_test(tc, test_model_file_holds_the_ds);
    suite_add_tcase(su, tc);
    return test_run_suite(su);
}
