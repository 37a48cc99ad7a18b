/* Suite faults, test alloc (issue 22, item 1): allocation failure.
 *
 * Every allocation the library makes itself goes through its one internal allocator
 * (lib/core/alloc.c), which fails the k-th allocation after dc_alloc_fail_at(k). For each
 * scenario -- a tiny 2-D Diff-CL training step; a checkpoint resume and save; a model load,
 * diffcl_segment and diffcl_model_save; opening the png fixture data set and loading its first
 * case -- the test runs it once clean (counting its allocations N), then with k = 1..200 and 200
 * seeded k in (200, N]: a call whose k-th allocation failed returns DIFFCL_ERR_OUT_OF_MEMORY (or
 * succeeds, where the library recovers: dc_alloc gives its block cache back and tries again),
 * one that did not reach it succeeds, and everything made is freed afterwards (LeakSanitizer
 * checks at exit in the ASan build, as CI runs every suite). k = N + 1000 must succeed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/core_internal.h"
#include "faults_util.h"
#include "diffcl/data.h"
#include "diffcl/infer.h"
#include "diffcl/model.h"
#include "diffcl/train.h"

#define SWEEP_FIRST 200  /* k = 1..SWEEP_FIRST, every one */
#define SWEEP_RANDOM 200 /* then this many seeded k beyond */
#define SWEEP_SEED 0x22a110cULL

static char run_dir[512];    /* a trainer's run folder with last.safetensors */
static char model_path[600]; /* its CS, saved with diffcl_model_save */
static char out_dir[512];    /* scratch output of the scenarios */

static diffcl_context *new_context(void)
{
    diffcl_context_options o = DIFFCL_CONTEXT_OPTIONS_INIT;
    o.n_threads = 1;
    o.log_level = DIFFCL_LOG_ERROR;
    diffcl_context *c = NULL;
    return diffcl_context_create(&o, &c) == DIFFCL_OK ? c : NULL;
}

/* The tiny Diff-CL configuration of the faults and train suites. */
static diffcl_train_options tiny(const char *out)
{
    diffcl_train_options o = DIFFCL_TRAIN_OPTIONS_INIT;
    o.dims = 2;
    o.labeled = 2;
    o.phantom_cases = 4;
    o.patch[1] = o.patch[2] = 32;
    o.batch_labeled = 1;
    o.batch_unlabeled = 1;
    o.n_filters = 2;
    o.ds_n_filters = 2;
    o.hfm_levels = 1;
    o.ddim_steps_train = 2;
    o.contrast_voxels = 16;
    o.iters = 3;
    o.warmup_frac = 0.25;
    o.rampup_frac = 0.25;
    o.val_every = 1000000;
    o.out_dir = out;
    return o;
}

/* A scenario: makes a context, runs its calls, frees everything; the first error. */
typedef diffcl_status (*scenario_fn)(void);

static diffcl_status sc_train(void)
{
    diffcl_context *ctx = new_context();
    if (!ctx) return DIFFCL_ERR_OUT_OF_MEMORY;
    diffcl_train_options o = tiny(out_dir);
    diffcl_trainer *tr = NULL;
    diffcl_status s = diffcl_trainer_create(ctx, &o, &tr);
    diffcl_train_stats st = {sizeof st, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    DC_STEP(diffcl_trainer_step(tr, &st));
    diffcl_trainer_free(tr);
    diffcl_context_free(ctx);
    return s;
}

static diffcl_status sc_checkpoint(void)
{
    diffcl_context *ctx = new_context();
    if (!ctx) return DIFFCL_ERR_OUT_OF_MEMORY;
    diffcl_trainer *tr = NULL;
    char path[700];
    snprintf(path, sizeof path, "%s/ckpt.safetensors", out_dir);
    diffcl_status s = diffcl_trainer_resume(ctx, run_dir, 0, &tr);
    DC_STEP(diffcl_trainer_save(tr, path));
    diffcl_trainer_free(tr);
    diffcl_context_free(ctx);
    return s;
}

static diffcl_status sc_segment(void)
{
    diffcl_context *ctx = new_context();
    if (!ctx) return DIFFCL_ERR_OUT_OF_MEMORY;
    diffcl_module *m = NULL;
    diffcl_tensor *img = NULL, *label = NULL, *probs = NULL;
    int64_t shape[3] = {1, 24, 20};
    diffcl_status s = diffcl_model_load(ctx, model_path, &m);
    DC_STEP(diffcl_tensor_new(ctx, DIFFCL_F32, 3, shape, &img));
    if (s == DIFFCL_OK) {
        float *x = diffcl_tensor_data(img);
        for (int i = 0; i < 24 * 20; i++) x[i] = (float)((i * 7) % 13) / 13.0f;
    }
    diffcl_sliding_window_options so = DIFFCL_SLIDING_WINDOW_OPTIONS_INIT;
    so.patch[1] = so.patch[2] = 16;
    so.stride[1] = so.stride[2] = 8;
    so.largest_cc = 1;
    DC_STEP(diffcl_segment(m, img, &so, &label, &probs));
    char path[700];
    snprintf(path, sizeof path, "%s/model.safetensors", out_dir);
    DC_STEP(diffcl_model_save(m, path));
    diffcl_tensor_free(label);
    diffcl_tensor_free(probs);
    diffcl_tensor_free(img);
    diffcl_module_free(m);
    diffcl_context_free(ctx);
    return s;
}

static diffcl_status sc_dataset(void)
{
    diffcl_context *ctx = new_context();
    if (!ctx) return DIFFCL_ERR_OUT_OF_MEMORY;
    char root[1024];
    snprintf(root, sizeof root, "%s/data/png", getenv("DIFFCL_FIXTURES"));
    diffcl_dataset *ds = NULL;
    diffcl_tensor *img = NULL, *lab = NULL;
    diffcl_status s = diffcl_dataset_open(ctx, root, NULL, &ds);
    DC_STEP(diffcl_dataset_load(ds, 0, &img, &lab, NULL));
    diffcl_tensor_free(img);
    diffcl_tensor_free(lab);
    diffcl_dataset_free(ds);
    diffcl_context_free(ctx);
    return s;
}

/* One run with the k-th allocation failing (0: none); the allocations it made. */
static unsigned long long run_at(scenario_fn fn, const char *what, unsigned long long k)
{
    diffcl_clear_error();
    dc_alloc_fail_at(k);
    diffcl_status s = fn();
    unsigned long long n = dc_alloc_count(), failed = dc_alloc_failed();
    dc_alloc_fail_at(0);
    if (failed)
        ck_assert_msg(s == DIFFCL_ERR_OUT_OF_MEMORY || s == DIFFCL_OK,
                      "%s, allocation %llu failed: %s (%s), wanted DIFFCL_ERR_OUT_OF_MEMORY", what,
                      k, diffcl_status_string(s), diffcl_last_error());
    else
        ck_assert_msg(s == DIFFCL_OK, "%s, k %llu not reached (%llu allocations): %s (%s)", what, k,
                      n, diffcl_status_string(s), diffcl_last_error());
    return n;
}

static void sweep(scenario_fn fn, const char *what)
{
    double t0 = faults_now_ms();
    unsigned long long n = run_at(fn, what, 0);
    ck_assert_msg(n > 0, "%s made no counted allocation", what);
    unsigned long long last = n < SWEEP_FIRST ? n : SWEEP_FIRST, runs = 1;
    for (unsigned long long k = 1; k <= last; k++, runs++) run_at(fn, what, k);
    uint64_t st = SWEEP_SEED;
    for (int i = 0; n > SWEEP_FIRST && i < SWEEP_RANDOM; i++, runs++)
        run_at(fn, what, SWEEP_FIRST + 1 + faults_rand(&st) % (n - SWEEP_FIRST));
    /* past the end: nothing fails */
    ck_assert_msg(run_at(fn, what, n + 1000) > 0, "%s", what);
    printf("%s: %llu allocations, %llu runs, %.1f s\n", what, n, runs + 1,
           (faults_now_ms() - t0) / 1000.0);
    fflush(stdout);
}

static void setup(void)
{
    snprintf(out_dir, sizeof out_dir, "%s", faults_tmpdir("alloc_out"));
    snprintf(run_dir, sizeof run_dir, "%s", faults_tmpdir("alloc_run"));
    snprintf(model_path, sizeof model_path, "%s/model.safetensors", run_dir);
    diffcl_context *ctx = new_context();
    ck_assert_ptr_nonnull(ctx);
    diffcl_train_options o = tiny(run_dir);
    diffcl_trainer *tr = NULL;
    ck_ok(diffcl_trainer_create(ctx, &o, &tr));
    diffcl_train_stats st = {sizeof st, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    ck_ok(diffcl_trainer_step(tr, &st));
    char last[700];
    snprintf(last, sizeof last, "%s/last.safetensors", run_dir);
    ck_ok(diffcl_trainer_save(tr, last));
    diffcl_module_train(diffcl_trainer_cs(tr), 0);
    ck_ok(diffcl_model_save(diffcl_trainer_cs(tr), model_path));
    diffcl_trainer_free(tr);
    diffcl_context_free(ctx);
}

static void teardown(void)
{
    faults_rm_rf(out_dir);
    faults_rm_rf(run_dir);
}

START_TEST(alloc_train_step)
{
    sweep(sc_train, "train step");
}
END_TEST

START_TEST(alloc_checkpoint)
{
    sweep(sc_checkpoint, "checkpoint resume+save");
}
END_TEST

START_TEST(alloc_segment)
{
    sweep(sc_segment, "model load+segment+save");
}
END_TEST

START_TEST(alloc_dataset)
{
    sweep(sc_dataset, "dataset open+load");
}
END_TEST

int main(void)
{
    Suite *su = suite_create("alloc");
    TCase *tc = tcase_create("alloc");
    tcase_set_timeout(tc, 600);
    tcase_add_unchecked_fixture(tc, setup, teardown);
    tcase_add_test(tc, alloc_dataset);
    tcase_add_test(tc, alloc_segment);
    tcase_add_test(tc, alloc_checkpoint);
    tcase_add_test(tc, alloc_train_step);
    suite_add_tcase(su, tc);
    SRunner *sr = srunner_create(su);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
