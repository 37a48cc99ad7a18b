/* Suite train: the Diff-CL trainer on the phantom: exact resume, NaN handling, option
 * errors, and Diff-CL beating the supervised baseline at the same small label budget. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_util.h"
#include "diffcl/checkpoint.h"
#include "diffcl/image_io.h"
#include "diffcl/infer.h"
#include "diffcl/metrics.h"
#include "diffcl/train.h"

static diffcl_context *ctx;
static void setup(void)
{
    ctx = test_context();
}
static void teardown(void)
{
    diffcl_context_free(ctx);
}

static char *tmpdir(void)
{
    static char buf[8][64];
    static int k;
    char *d = buf[k++ & 7];
    strcpy(d, "/tmp/diffcl_train_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(d));
    return d;
}

/* A tiny but complete Diff-CL configuration (every loss term active after iteration 1). */
static diffcl_train_options tiny(const char *out, int64_t iters)
{
    diffcl_train_options o = DIFFCL_TRAIN_OPTIONS_INIT;
    o.dims = 2;
    o.labeled = 2;
    o.phantom_cases = 6;
    o.patch[1] = o.patch[2] = 32;
    o.batch_labeled = 1;
    o.batch_unlabeled = 1;
    o.n_filters = 4;
    o.ds_n_filters = 4;
    o.hfm_levels = 0;
    o.ddim_steps_train = 2;
    o.contrast_voxels = 64;
    o.iters = iters;
    o.warmup_frac = 0.25;
    o.rampup_frac = 0.25;
    o.val_every = 1000000;
    o.out_dir = out;
    return o;
}

static void expect_same_weights(diffcl_module *a, diffcl_module *b)
{
    int n = diffcl_module_state_count(a, DIFFCL_STATE_ALL);
    ck_assert_int_eq(n, diffcl_module_state_count(b, DIFFCL_STATE_ALL));
    for (int i = 0; i < n; i++) {
        const char *na;
        diffcl_tensor *ta, *tb;
        ck_ok(diffcl_module_state_entry(a, DIFFCL_STATE_ALL, i, &na, &ta, NULL));
        ck_ok(diffcl_module_state_entry(b, DIFFCL_STATE_ALL, i, NULL, &tb, NULL));
        size_t bytes = (size_t)diffcl_tensor_numel(ta) * diffcl_dtype_size(diffcl_tensor_dtype(ta));
        ck_assert_msg(memcmp(diffcl_tensor_data(ta), diffcl_tensor_data(tb), bytes) == 0,
                      "%s differs between the straight and the resumed run", na);
    }
}

START_TEST(test_resume_is_exact)
{
    /* 4 iterations straight vs 2 + resume + 2, one thread: bit-identical weights */
    const char *d1 = tmpdir(), *d2 = tmpdir();
    diffcl_train_options o = tiny(d1, 4);
    diffcl_trainer *straight = NULL, *half = NULL, *resumed = NULL;
    ck_ok(diffcl_trainer_create(ctx, &o, &straight));
    ck_ok(diffcl_trainer_run(straight));
    ck_assert_int_eq(diffcl_trainer_iteration(straight), 4);
    /* the same 4-iteration run, interrupted after 2 (its last checkpoint written) */
    o = tiny(d2, 4);
    ck_ok(diffcl_trainer_create(ctx, &o, &half));
    for (int i = 0; i < 2; i++) ck_ok(diffcl_trainer_step(half, NULL));
    char last[256];
    snprintf(last, sizeof last, "%s/last.safetensors", d2);
    ck_ok(diffcl_trainer_save(half, last));
    diffcl_trainer_free(half);
    ck_ok(diffcl_trainer_resume(ctx, d2, 0, &resumed));
    ck_assert_int_eq(diffcl_trainer_iteration(resumed), 2);
    ck_ok(diffcl_trainer_run(resumed));
    ck_assert_int_eq(diffcl_trainer_iteration(resumed), 4);
    expect_same_weights(diffcl_trainer_cs(straight), diffcl_trainer_cs(resumed));
    expect_same_weights(diffcl_trainer_ds(straight), diffcl_trainer_ds(resumed));
    /* the run folder has what the trainer promises, and the model loads on its own */
    char path[256];
    const char *files[] = {"last.safetensors", "best.safetensors", "model.safetensors", "log.csv",
                           "curves.png"};
    for (int i = 0; i < 5; i++) {
        snprintf(path, sizeof path, "%s/%s", d2, files[i]);
        ck_assert_msg(access(path, R_OK) == 0, "missing %s", path);
    }
    diffcl_module *m = NULL;
    snprintf(path, sizeof path, "%s/best.safetensors", d2);
    ck_ok(diffcl_model_load(ctx, path, &m)); /* a trainer checkpoint is also a model file */
    ck_assert_str_eq(diffcl_module_type(m), "vnet");
    diffcl_module_free(m);
    diffcl_trainer_free(straight);
    diffcl_trainer_free(resumed);
}
END_TEST

static int cancel_at_3(const char *what, int64_t done, int64_t total, const char *msg, void *user)
{
    (void)what, (void)total, (void)msg, (void)user;
    return done >= 3; /* non-zero: cancel */
}

/* log.csv's iteration column, in file order; returns the row count. */
static int log_iterations(const char *dir, long *it, int cap)
{
    char path[256], line[1024];
    snprintf(path, sizeof path, "%s/log.csv", dir);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
    ck_assert_ptr_nonnull(strstr(line, "iteration,loss"));
    int n = 0;
    while (fgets(line, sizeof line, f) && n < cap) it[n++] = strtol(line, NULL, 10);
    fclose(f);
    return n;
}

START_TEST(test_interrupted_run_resumes_its_log)
{
    /* an interrupted run logged past its last checkpoint (iteration 2 of 6, cancelled at 3):
     * after the resume log.csv has each iteration once, in order (the curves are redrawn from
     * it); model.safetensors carries the training options (infer's default window) */
    const char *d = tmpdir();
    diffcl_train_options o = tiny(d, 6);
    o.val_every = 2;
    diffcl_trainer *tr = NULL;
    ck_ok(diffcl_trainer_create(ctx, &o, &tr));
    ck_ok(diffcl_context_set_progress(ctx, cancel_at_3, NULL));
    ck_assert_int_eq(diffcl_trainer_run(tr), DIFFCL_ERR_CANCELLED);
    ck_ok(diffcl_context_set_progress(ctx, NULL, NULL));
    diffcl_trainer_free(tr);
    long it[32];
    ck_assert_int_eq(log_iterations(d, it, 32), 3);
    ck_ok(diffcl_trainer_resume(ctx, d, 0, &tr));
    ck_assert_int_eq(diffcl_trainer_iteration(tr), 2);
    ck_ok(diffcl_trainer_run(tr));
    diffcl_trainer_free(tr);
    int n = log_iterations(d, it, 32);
    ck_assert_int_eq(n, 6);
    for (int i = 0; i < n; i++) ck_assert_int_eq(it[i], i + 1);
    char path[256];
    snprintf(path, sizeof path, "%s/model.safetensors", d);
    diffcl_tensor_dict *dict = NULL;
    ck_ok(diffcl_safetensors_load(ctx, path, &dict));
    const char *json = diffcl_tensor_dict_get_meta(dict, "diffcl.train_options");
    ck_assert_ptr_nonnull(json);
    ck_assert_ptr_nonnull(strstr(json, "\"patch[1]\":32"));
    diffcl_tensor_dict_free(dict);
}
END_TEST

static char last_split_line[512];
static void grab_split_line(diffcl_log_level level, const char *msg, void *user)
{
    (void)level, (void)user;
    if (strstr(msg, "labeled /")) snprintf(last_split_line, sizeof last_split_line, "%s", msg);
}

/* A png data set of n phantom slices slice0..slice<n-1> in a new folder. */
static const char *phantom_png_set(int n)
{
    const char *d = tmpdir();
    char path[256];
    snprintf(path, sizeof path, "%s/images", d);
    ck_assert_int_eq(mkdir(path, 0755), 0);
    snprintf(path, sizeof path, "%s/labels", d);
    ck_assert_int_eq(mkdir(path, 0755), 0);
    diffcl_phantom_options po = DIFFCL_PHANTOM_OPTIONS_INIT;
    po.ndim = 2;
    po.height = po.width = 32;
    for (int i = 0; i < n; i++) {
        diffcl_tensor *img = NULL, *lab = NULL, *img2 = NULL, *img8 = NULL;
        ck_ok(diffcl_phantom_case(ctx, &po, i, &img, &lab));
        int64_t hw[2] = {32, 32};
        ck_ok(diffcl_tensor_reshape(img, 2, hw, &img2));
        ck_ok(diffcl_affine(img2, 40.0, 128.0, &img8));
        snprintf(path, sizeof path, "%s/images/slice%d.png", d, i);
        ck_ok(diffcl_png_write(img8, path, 16));
        snprintf(path, sizeof path, "%s/labels/slice%d.png", d, i);
        ck_ok(diffcl_png_write(lab, path, 8));
        diffcl_tensor_free(img);
        diffcl_tensor_free(img2);
        diffcl_tensor_free(img8);
        diffcl_tensor_free(lab);
    }
    return d;
}

START_TEST(test_validation_cases_are_not_trained_on)
{
    /* 6 slices, 2 of them in the validation list: 2 labeled + 2 unlabeled are trained on */
    const char *data = phantom_png_set(6), *out = tmpdir();
    char val[256], lab[256];
    snprintf(val, sizeof val, "%s/val.list", data);
    FILE *f = fopen(val, "w");
    ck_assert_ptr_nonnull(f);
    fputs("slice0\nslice3\n", f);
    fclose(f);
    diffcl_train_options o = tiny(out, 1);
    o.layout = "png";
    o.data_dir = data;
    o.val_list = val;
    ck_ok(diffcl_context_set_log(ctx, grab_split_line, NULL, DIFFCL_LOG_INFO));
    diffcl_trainer *tr = NULL;
    ck_ok(diffcl_trainer_create(ctx, &o, &tr));
    ck_ok(diffcl_trainer_run(tr));
    diffcl_trainer_free(tr);
    ck_ok(diffcl_context_set_log(ctx, NULL, NULL, DIFFCL_LOG_WARN));
    ck_assert_msg(strstr(last_split_line, "2 labeled / 2 unlabeled cases"), "log: %s",
                  last_split_line);
    /* more labeled cases than the non-validation ones, and a labeled case in the validation list */
    o.labeled = 5;
    ck_assert_int_eq(diffcl_trainer_create(ctx, &o, &tr), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(diffcl_last_error(), "validation list"));
    snprintf(lab, sizeof lab, "%s/labeled.list", data);
    f = fopen(lab, "w");
    ck_assert_ptr_nonnull(f);
    fputs("slice1\nslice3\n", f);
    fclose(f);
    o.labeled_list = lab;
    ck_assert_int_eq(diffcl_trainer_create(ctx, &o, &tr), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(diffcl_last_error(), "slice3"));
}
END_TEST

/* Validation segments as `diffcl infer` does: the sliding window with the training patch and
 * half-patch steps, scored by the foreground Dice. The trainer's validation Dice after the last
 * iteration equals the Dice of diffcl_segment with those options on the validation cases. */
START_TEST(test_validation_is_the_sliding_window)
{
    const char *data = phantom_png_set(6), *out = tmpdir();
    char val[256];
    snprintf(val, sizeof val, "%s/val.list", data);
    FILE *f = fopen(val, "w");
    ck_assert_ptr_nonnull(f);
    fputs("slice0\nslice3\n", f);
    fclose(f);
    diffcl_train_options o = tiny(out, 3);
    o.method = DIFFCL_METHOD_SUPERVISED;
    o.layout = "png";
    o.data_dir = data;
    o.val_list = val;
    o.val_every = 3; /* once, after the last iteration: best = that validation */
    diffcl_trainer *tr = NULL;
    ck_ok(diffcl_trainer_create(ctx, &o, &tr));
    ck_ok(diffcl_trainer_run(tr));
    diffcl_sliding_window_options so = DIFFCL_SLIDING_WINDOW_OPTIONS_INIT;
    so.patch[0] = so.stride[0] = 1;
    so.patch[1] = so.patch[2] = 32;
    so.stride[1] = so.stride[2] = 16;
    diffcl_module *cs = diffcl_trainer_cs(tr);
    diffcl_module_train(cs, 0);
    double total = 0;
    const char *ids[2] = {"slice0", "slice3"};
    for (int i = 0; i < 2; i++) {
        char p[300];
        diffcl_tensor *img = NULL, *img1 = NULL, *ref = NULL, *pred = NULL;
        snprintf(p, sizeof p, "%s/images/%s.png", data, ids[i]);
        ck_ok(diffcl_png_read_image(ctx, p, &img, NULL));
        ck_ok(diffcl_tensor_unsqueeze(img, 0, &img1));
        snprintf(p, sizeof p, "%s/labels/%s.png", data, ids[i]);
        ck_ok(diffcl_png_read_label(ctx, p, &ref));
        ck_ok(diffcl_segment(cs, img1, &so, &pred, NULL));
        diffcl_seg_metrics m;
        ck_ok(diffcl_metrics_binary(pred, ref, NULL, &m));
        total += m.dice;
        diffcl_tensor_free(img);
        diffcl_tensor_free(img1);
        diffcl_tensor_free(ref);
        diffcl_tensor_free(pred);
    }
    ck_assert_msg(fabs(diffcl_trainer_best_dice(tr) - total / 2) < 1e-12,
                  "validation Dice %.6f, sliding window %.6f", diffcl_trainer_best_dice(tr),
                  total / 2);
    diffcl_trainer_free(tr);
}
END_TEST

START_TEST(test_nan_loss_stops_cleanly)
{
    const char *d = tmpdir();
    diffcl_train_options o = tiny(d, 40);
    o.method = DIFFCL_METHOD_SUPERVISED;
    o.lr = 1e6; /* diverges within a few iterations */
    o.momentum = 0.99;
    o.val_every = 1;
    diffcl_trainer *tr = NULL;
    ck_ok(diffcl_trainer_create(ctx, &o, &tr));
    diffcl_status s = diffcl_trainer_run(tr);
    ck_assert_int_eq(s, DIFFCL_ERR_NUMERIC);
    ck_assert_ptr_nonnull(strstr(diffcl_last_error(), "loss is"));
    int64_t stopped = diffcl_trainer_iteration(tr);
    ck_assert_int_lt(stopped, 40);
    diffcl_trainer_free(tr);
    /* the last good checkpoint stays loadable and resumable */
    char path[256];
    snprintf(path, sizeof path, "%s/last.safetensors", d);
    diffcl_module *m = NULL;
    if (stopped > 0) {
        ck_ok(diffcl_model_load(ctx, path, &m));
        diffcl_module_free(m);
        ck_ok(diffcl_trainer_resume(ctx, d, 0, &tr));
        ck_assert_int_eq(diffcl_trainer_iteration(tr), stopped);
        diffcl_trainer_free(tr);
    }
}
END_TEST

START_TEST(test_option_errors)
{
    diffcl_train_options o = tiny(NULL, 4);
    diffcl_trainer *tr = NULL;
    ck_assert_int_eq(diffcl_trainer_create(ctx, &o, &tr), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(diffcl_last_error(), "out_dir"));
    o = tiny(tmpdir(), 4);
    o.patch[1] = 40;
    ck_assert_int_eq(diffcl_trainer_create(ctx, &o, &tr), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(diffcl_last_error(), "multiples of 16"));
    o = tiny(tmpdir(), 4);
    o.patch[1] = o.patch[2] =
        16; /* batch 1 of 16x16: one value per channel for batch norm at 1/16 */
    ck_assert_int_eq(diffcl_trainer_create(ctx, &o, &tr), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(diffcl_last_error(), "batch norm"));
    o = tiny(tmpdir(), 4);
    o.fg_prob = 1.5;
    ck_assert_int_eq(diffcl_trainer_create(ctx, &o, &tr), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(diffcl_last_error(), "fg_prob"));
    o = tiny(tmpdir(), 4);
    o.labeled = 6; /* every case labeled: nothing for Diff-CL's unlabeled half */
    ck_assert_int_eq(diffcl_trainer_create(ctx, &o, &tr), DIFFCL_ERR_INVALID_ARGUMENT);
    o = tiny(tmpdir(), 4);
    o.layout = "msd";
    o.data_dir = "/nonexistent/data";
    ck_assert_int_ne(diffcl_trainer_create(ctx, &o, &tr), DIFFCL_OK);
    ck_assert_int_eq(diffcl_trainer_resume(ctx, "/nonexistent/run", 0, &tr), DIFFCL_ERR_IO);
    ck_assert_ptr_null(tr);
}
END_TEST

/* Mean foreground Dice of a trainer's CS on held-out phantom slices. */
static double heldout_dice(diffcl_module *cs, int n_cases)
{
    diffcl_dataset_options dopt = DIFFCL_DATASET_OPTIONS_INIT;
    dopt.layout = DIFFCL_LAYOUT_PHANTOM;
    dopt.phantom.ndim = 2;
    dopt.phantom.seed = 99;
    dopt.first_case = 500000;
    dopt.n_cases = n_cases;
    diffcl_dataset *ds = NULL;
    ck_ok(diffcl_dataset_open(ctx, NULL, &dopt, &ds));
    diffcl_sliding_window_options sw = DIFFCL_SLIDING_WINDOW_OPTIONS_INIT;
    sw.patch[0] = sw.stride[0] = 1;
    sw.patch[1] = sw.patch[2] = 96;
    sw.stride[1] = sw.stride[2] = 48;
    double total = 0;
    for (int64_t i = 0; i < n_cases; i++) {
        diffcl_tensor *img = NULL, *lab = NULL, *pred = NULL;
        ck_ok(diffcl_dataset_load(ds, i, &img, &lab, NULL));
        ck_ok(diffcl_segment(cs, img, &sw, &pred, NULL));
        diffcl_seg_metrics m;
        ck_ok(diffcl_metrics_per_class(pred, lab, 2, NULL, &m));
        total += m.dice;
        diffcl_tensor_free(img);
        diffcl_tensor_free(lab);
        diffcl_tensor_free(pred);
    }
    diffcl_dataset_free(ds);
    return total / n_cases;
}

START_TEST(test_diffcl_beats_supervised)
{
    /* The same CS, labeled set (2 slices), iterations and learning rate; Diff-CL also sees
     * the unlabeled slices. Scaled-down runs (sanitizers) only check that both train. */
    int64_t iters = 160 / test_scale();
    double dice[2];
    for (int m = 0; m < 2; m++) {
        diffcl_train_options o = tiny(tmpdir(), iters);
        o.method = m ? DIFFCL_METHOD_DIFFCL : DIFFCL_METHOD_SUPERVISED;
        o.patch[1] = o.patch[2] = 64;
        o.phantom_cases = 12;
        o.batch_labeled = 2;
        o.batch_unlabeled = 2;
        o.n_filters = 8;
        o.ds_n_filters = 8;
        o.warmup_frac = 0.1;
        o.rampup_frac = 0.3;
        diffcl_trainer *tr = NULL;
        ck_ok(diffcl_trainer_create(ctx, &o, &tr));
        ck_ok(diffcl_trainer_run(tr));
        dice[m] = heldout_dice(diffcl_trainer_cs(tr), 12);
        diffcl_trainer_free(tr);
    }
    fprintf(stderr, "held-out Dice: supervised %.4f, Diff-CL %.4f (%lld iterations)\n", dice[0],
            dice[1], (long long)iters);
    ck_assert(isfinite(dice[0]) && isfinite(dice[1]));
    if (test_scale() == 1)
        ck_assert_msg(dice[1] > dice[0], "Diff-CL %.4f <= supervised %.4f", dice[1], dice[0]);
}
END_TEST

/* ---- fine-tuning: diffcl_train_options.init_weights ---- */

/* The log lines of the context, joined (INFO and up). */
static char log_text[16384];
static void capture_log(diffcl_log_level level, const char *msg, void *user)
{
    (void)level, (void)user;
    size_t n = strlen(log_text);
    snprintf(log_text + n, sizeof log_text - n, "%s\n", msg);
}

/* Every CS entry of @p a equal (bit for bit) to the entry of the same name in @p b, except
 * the names starting with @p except (NULL: none), which must differ. Returns the entries compared. */
static int expect_same_tensors(diffcl_module *a, diffcl_module *b, const char *except)
{
    int n = diffcl_module_state_count(a, DIFFCL_STATE_ALL), n_same = 0;
    ck_assert_int_eq(n, diffcl_module_state_count(b, DIFFCL_STATE_ALL));
    for (int i = 0; i < n; i++) {
        const char *name;
        diffcl_tensor *ta, *tb;
        ck_ok(diffcl_module_state_entry(a, DIFFCL_STATE_ALL, i, &name, &ta, NULL));
        tb = diffcl_module_find(b, name);
        ck_assert_msg(tb != NULL, "%s missing", name);
        int64_t na = diffcl_tensor_numel(ta);
        int same = na == diffcl_tensor_numel(tb) &&
                   memcmp(diffcl_tensor_data(ta), diffcl_tensor_data(tb),
                          (size_t)na * diffcl_dtype_size(diffcl_tensor_dtype(ta))) == 0;
        if (except && !strncmp(name, except, strlen(except)))
            ck_assert_msg(!same, "%s: the head was loaded", name);
        else
            ck_assert_msg(same, "%s differs from the weights file", name);
        n_same += same;
    }
    return n_same;
}

/* Eval-mode logits of a CS on a fixed 32x32 window. */
static diffcl_tensor *window_logits(diffcl_module *cs)
{
    int64_t shape[4] = {1, 1, 32, 32};
    diffcl_tensor *x = test_randn(ctx, DIFFCL_F32, 4, shape, 77), *y = NULL;
    int was = diffcl_module_is_training(cs);
    diffcl_module_train(cs, 0);
    ck_ok(diffcl_module_forward(cs, x, &y));
    diffcl_module_train(cs, was);
    diffcl_tensor_free(x);
    return y;
}

START_TEST(test_init_weights)
{
    /* a trained Diff-CL run (2 iterations), the source of the weights */
    const char *src_dir = tmpdir();
    diffcl_train_options o = tiny(src_dir, 2);
    diffcl_trainer *tr = NULL;
    ck_ok(diffcl_trainer_create(ctx, &o, &tr));
    ck_ok(diffcl_trainer_run(tr));
    diffcl_trainer_free(tr);
    char w[256], ckpt[256];
    snprintf(w, sizeof w, "%s/model.safetensors", src_dir);
    snprintf(ckpt, sizeof ckpt, "%s/last.safetensors", src_dir);
    diffcl_module *src = NULL;
    ck_ok(diffcl_model_load(ctx, w, &src));
    ck_ok(diffcl_context_set_log(ctx, capture_log, NULL, DIFFCL_LOG_INFO));

    /* same class count, another seed: the new run starts from the given weights, every tensor
     * (running statistics included) and so the iteration-0 forward */
    o = tiny(tmpdir(), 2);
    o.seed = 4242;
    o.init_weights = w;
    log_text[0] = 0;
    ck_ok(diffcl_trainer_create(ctx, &o, &tr));
    int n = diffcl_module_state_count(src, DIFFCL_STATE_ALL);
    ck_assert_int_eq(expect_same_tensors(diffcl_trainer_cs(tr), src, NULL), n);
    diffcl_tensor *got = window_logits(diffcl_trainer_cs(tr)), *want = window_logits(src);
    ck_assert_double_eq(test_rel_error(got, want), 0.0);
    diffcl_tensor_free(got);
    diffcl_tensor_free(want);
    char line[600];
    snprintf(line, sizeof line, "init-weights %s: loaded %d of the CS's %d tensors", w, n, n);
    ck_assert_msg(strstr(log_text, line) != NULL, "no '%s' in:\n%s", line, log_text);
    ck_assert_msg(strstr(log_text, "tensors of its DS (ds.*)") != NULL, "%s", log_text);
    ck_assert_ptr_null(strstr(log_text, "skipped"));
    ck_ok(diffcl_trainer_step(tr, NULL)); /* and it trains */
    diffcl_trainer_free(tr);

    /* another class count: everything but the output head, which keeps the initialisation a
     * fresh run of the same options has; the report lists the head as skipped */
    o.n_classes = 3;
    o.init_weights = NULL;
    o.out_dir = tmpdir();
    diffcl_trainer *fresh = NULL;
    ck_ok(diffcl_trainer_create(ctx, &o, &fresh));
    o.init_weights = w;
    o.out_dir = tmpdir();
    log_text[0] = 0;
    ck_ok(diffcl_trainer_create(ctx, &o, &tr));
    ck_assert_int_eq(expect_same_tensors(diffcl_trainer_cs(tr), src, "out_conv."), n - 2);
    diffcl_tensor *head = diffcl_module_find(diffcl_trainer_cs(tr), "out_conv.weight");
    diffcl_tensor *head0 = diffcl_module_find(diffcl_trainer_cs(fresh), "out_conv.weight");
    ck_assert_int_eq(diffcl_tensor_dim(head, 0), 3);
    ck_assert_double_eq(test_rel_error(head, head0), 0.0);
    snprintf(line, sizeof line, "init-weights %s: loaded %d of the CS's %d tensors", w, n - 2, n);
    ck_assert_msg(strstr(log_text, line) != NULL, "no '%s' in:\n%s", line, log_text);
    const char *skipped =
        "init-weights: skipped 2, the output head (2 classes in the file, 3 here; it keeps its "
        "initialisation): out_conv.weight: shape [2,4,1,1] in the file, [3,4,1,1] here; "
        "out_conv.bias: shape [2] in the file, [3] here";
    ck_assert_msg(strstr(log_text, skipped) != NULL, "no '%s' in:\n%s", skipped, log_text);
    ck_assert_ptr_null(strstr(log_text, "not in the file"));
    diffcl_trainer_free(tr);
    diffcl_trainer_free(fresh);

    /* a trainer checkpoint works too (the CS under its prefix; optimizer and DS ignored) */
    o = tiny(tmpdir(), 2);
    o.init_weights = ckpt;
    log_text[0] = 0;
    ck_ok(diffcl_trainer_create(ctx, &o, &tr));
    ck_assert_int_eq(expect_same_tensors(diffcl_trainer_cs(tr), src, NULL), n);
    ck_assert_msg(strstr(log_text, "entries outside the CS") != NULL, "%s", log_text);
    diffcl_trainer_free(tr);

    /* a CS with more tensors (HF-Mamba): those keep their initialisation, listed */
    o = tiny(tmpdir(), 2);
    o.hfm_levels = DIFFCL_LEVEL(5);
    o.init_weights = w;
    log_text[0] = 0;
    ck_ok(diffcl_trainer_create(ctx, &o, &tr));
    ck_assert_msg(strstr(log_text, "of the CS are not in the file and keep their initialisation: "
                                   "hfm_five.") != NULL,
                  "%s", log_text);
    diffcl_trainer_free(tr);

    /* errors leave no run folder: a missing file, another width (not just the head), a file
     * with no V-Net tensor */
    char out[256];
    snprintf(out, sizeof out, "%s/never", tmpdir());
    o = tiny(out, 2);
    o.init_weights = "/nonexistent/w.safetensors";
    ck_assert_int_eq(diffcl_trainer_create(ctx, &o, &tr), DIFFCL_ERR_IO);
    ck_assert_ptr_nonnull(strstr(diffcl_last_error(), "init-weights"));
    ck_assert_ptr_null(tr);
    o.init_weights = w;
    o.n_filters = 8;
    ck_assert_int_eq(diffcl_trainer_create(ctx, &o, &tr), DIFFCL_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(diffcl_last_error(), "only the output head may differ"));
    ck_assert_ptr_nonnull(strstr(diffcl_last_error(), "block_one.conv.0.weight: shape [4,1,3,3] "
                                                      "in the file, [8,1,3,3] here"));
    o.n_filters = 4;
    o.init_weights = test_fixture_path("io_checkpoint.safetensors");
    ck_assert_int_eq(diffcl_trainer_create(ctx, &o, &tr), DIFFCL_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(diffcl_last_error(), "no tensor of the file"));
    ck_assert_int_ne(access(out, F_OK), 0);

    /* the path is part of the run's options; a resumed run continues from its own checkpoint
     * (the weights file is not read again) exactly as a straight one */
    char copy[256], cmd[600];
    snprintf(copy, sizeof copy, "%s/w.safetensors", tmpdir());
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", w, copy);
    ck_assert_int_eq(system(cmd), 0);
    const char *d1 = tmpdir(), *d2 = tmpdir();
    o = tiny(d1, 3);
    o.n_classes = 3;
    o.init_weights = copy;
    diffcl_trainer *straight = NULL, *half = NULL, *resumed = NULL;
    ck_ok(diffcl_trainer_create(ctx, &o, &straight));
    ck_ok(diffcl_trainer_run(straight));
    o.out_dir = d2;
    ck_ok(diffcl_trainer_create(ctx, &o, &half));
    ck_ok(diffcl_trainer_step(half, NULL));
    snprintf(ckpt, sizeof ckpt, "%s/last.safetensors", d2);
    ck_ok(diffcl_trainer_save(half, ckpt));
    diffcl_trainer_free(half);
    ck_assert_int_eq(remove(copy), 0);
    ck_ok(diffcl_trainer_resume(ctx, d2, 0, &resumed));
    ck_ok(diffcl_trainer_run(resumed));
    expect_same_weights(diffcl_trainer_cs(straight), diffcl_trainer_cs(resumed));
    expect_same_weights(diffcl_trainer_ds(straight), diffcl_trainer_ds(resumed));
    diffcl_tensor_dict *d = NULL;
    ck_ok(diffcl_safetensors_load(ctx, ckpt, &d));
    ck_assert_ptr_nonnull(strstr(diffcl_tensor_dict_get_meta(d, "diffcl.train_options"), copy));
    diffcl_tensor_dict_free(d);
    diffcl_trainer_free(straight);
    diffcl_trainer_free(resumed);
    diffcl_module_free(src);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("train");
    TCase *tc = tcase_create("train");
    tcase_set_timeout(tc, 900);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_option_errors);
    tcase_add_test(tc, test_resume_is_exact);
    tcase_add_test(tc, test_interrupted_run_resumes_its_log);
    tcase_add_test(tc, test_validation_cases_are_not_trained_on);
    tcase_add_test(tc, test_validation_is_the_sliding_window);
    tcase_add_test(tc, test_nan_loss_stops_cleanly);
    tcase_add_test(tc, test_diffcl_beats_supervised);
    suite_add_tcase(s, tc);
    TCase *ft = tcase_create("fine-tuning");
    tcase_set_timeout(ft, 300);
    tcase_add_checked_fixture(ft, setup, teardown);
    tcase_add_test(ft, test_init_weights);
    suite_add_tcase(s, ft);
    return test_run_suite(s);
}
