/* Suite train, test soak: a 200-iteration 2-D Diff-CL run with every term on, validation and
 * checkpoints, then the trainer freed. Its point is the sanitizer stage of CI: LeakSanitizer
 * checks at exit that a long run leaves nothing behind, and AddressSanitizer that no step
 * misuses memory in steady state (scaled down there by DIFFCL_TEST_SCALE). The RSS over 5000
 * iterations is bench/soak.sh's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_util.h"
#include "diffcl/train.h"

START_TEST(test_two_hundred_iterations)
{
    diffcl_context *ctx = test_context();
    char dir[] = "/tmp/diffcl_soak_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    diffcl_train_options o = DIFFCL_TRAIN_OPTIONS_INIT;
    o.dims = 2;
    o.labeled = 2;
    o.phantom_cases = 6;
    o.patch[1] = o.patch[2] = 32;
    o.batch_labeled = o.batch_unlabeled = 1;
    o.n_filters = o.ds_n_filters = 4;
    o.ddim_steps_train = 2;
    o.contrast_voxels = 64;
    o.iters = 200 / test_scale();
    o.warmup_frac = 0.05;
    o.rampup_frac = 0.1;
    o.val_list = "2";
    o.val_every = o.iters / 4;
    o.out_dir = dir;
    diffcl_trainer *tr = NULL;
    ck_ok(diffcl_trainer_create(ctx, &o, &tr));
    ck_ok(diffcl_trainer_run(tr));
    ck_assert_int_eq(diffcl_trainer_iteration(tr), o.iters);
    diffcl_trainer_free(tr);
    diffcl_context_free(ctx);
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("soak");
    TCase *tc = tcase_create("soak");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_two_hundred_iterations);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}
