/* Suite train, sharded draws (issue 22, item 6; docs/distributed.md "Random draws"): a rank's
 * shard of the global batch draws, for each global sample, what one process training on the
 * whole global batch draws for it: diffusion timesteps and noise (L^d_s, L^d_p), the DDIM start
 * x_T of the DS pseudo label, the contrastive voxels and every dropout mask (CS and DS, DDIM in
 * training mode included). The ranks are emulated in one process (dc_trainer_set_shard without
 * MPI: the same sampler, sharding and keying as under MPI, without the all-reduce), which is
 * enough for the draws of the first steps: none depends on the weights. tests/mpi/
 * test_mpi_draws.c checks the same with real ranks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_util.h"
#include "draw_log.h"
#include "diffcl/diffusion.h"
#include "diffcl/loss.h"
#include "diffcl/train.h"
#include "layer/module_internal.h"
#include "model/diffusion_internal.h"
#include "train/trainer_internal.h"

static diffcl_context *ctx;
static void setup(void)
{
    ctx = test_context();
}
static void teardown(void)
{
    diffcl_context_free(ctx);
}

enum { RANKS = 2, BL = 2, BU = 2, STEPS = 2, QUOTA = 24 };

static char *tmpdir(void)
{
    static char buf[4][64];
    static int k;
    char *d = buf[k++ & 3];
    strcpy(d, "/tmp/diffcl_draws_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(d));
    return d;
}

static void rmdir_r(const char *d)
{
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf %s", d);
    ck_assert_int_eq(system(cmd), 0);
}

/* Diff-CL with every per-sample draw active from iteration 0: dropout in both networks (the
 * DS's DDIM in training mode too), and contrastive voxels drawn uniformly over whole samples
 * (no agreement mask, no class quotas), so that they depend on the keys only and not on the
 * pseudo labels, which batch norm over another batch changes. Batch @p k x (BL, BU). */
static diffcl_train_options config(const char *out, int k)
{
    diffcl_train_options o = DIFFCL_TRAIN_OPTIONS_INIT;
    o.dims = 2;
    o.labeled = 3;
    o.phantom_cases = 8;
    o.patch[1] = o.patch[2] = 32;
    o.batch_labeled = BL * k;
    o.batch_unlabeled = BU * k;
    o.n_filters = 4;
    o.ds_n_filters = 4;
    o.hfm_levels = 0;
    o.ddim_steps_train = 2;
    o.ds_pseudo_train_mode = 1;
    o.contrast_balanced = 0;
    o.cps_variant = DIFFCL_CPS_PLAIN;
    o.contrast_voxels = QUOTA * BU * k; /* per rank, like the batch: QUOTA per sample */
    o.iters = 20;
    o.warmup_frac = 0;
    o.rampup_frac = 0.5;
    o.val_every = 1000000;
    o.out_dir = out;
    return o;
}

/* STEPS steps of a trainer (rank @p rank of @p size; size 1: one process) into @p log. */
static void run_steps(int k, int rank, int size, draw_log *log)
{
    const char *dir = tmpdir();
    diffcl_train_options o = config(dir, k);
    diffcl_trainer *tr = NULL;
    ck_ok(diffcl_trainer_create(ctx, &o, &tr));
    if (size > 1) ck_ok(dc_trainer_set_shard(tr, rank, size));
    draw_log_attach(ctx, log);
    for (int it = 0; it < STEPS; it++) {
        log->iter = (uint32_t)it;
        diffcl_train_stats st;
        memset(&st, 0, sizeof st);
        st.struct_size = sizeof st;
        ck_ok(diffcl_trainer_step(tr, &st));
        ck_assert_msg(st.mu > 0, "the unlabeled terms must run from iteration 0");
    }
    draw_log_detach(ctx);
    ck_assert(!log->oom);
    diffcl_trainer_free(tr);
    rmdir_r(dir);
}

START_TEST(test_shards_draw_as_one_process)
{
    draw_log ref = {0}, shard[RANKS] = {{0}};
    run_steps(RANKS, 0, 1, &ref); /* one process, the global batch */
    ck_assert_int_eq(draw_log_index(&ref), 0);
    fprintf(stderr,
            "one process, %d steps: %zu timesteps, %zu noise fields, %zu dropout masks, %zu "
            "voxel sets\n",
            STEPS, ref.per_kind[DC_DRAW_TIMESTEP], ref.per_kind[DC_DRAW_NOISE],
            ref.per_kind[DC_DRAW_DROPOUT], ref.per_kind[DC_DRAW_VOXELS]);
    /* every kind of draw, for every sample: (L^d_s + L^d_p) timesteps and eps, x_T */
    ck_assert_uint_eq(ref.per_kind[DC_DRAW_TIMESTEP], (size_t)STEPS * RANKS * (BL + BU));
    ck_assert_uint_eq(ref.per_kind[DC_DRAW_NOISE], (size_t)STEPS * RANKS * (BL + 2 * BU));
    ck_assert_uint_eq(ref.per_kind[DC_DRAW_VOXELS], (size_t)STEPS * RANKS * BU);
    ck_assert_uint_gt(ref.per_kind[DC_DRAW_DROPOUT], (size_t)STEPS * RANKS * (BL + BU));
    int bad = 0;
    for (int r = 0; r < RANKS; r++) {
        run_steps(1, r, RANKS, &shard[r]);
        char who[32];
        snprintf(who, sizeof who, "rank %d of %d", r, RANKS);
        bad += draw_log_compare(&ref, &shard[r], who);
    }
    bad += draw_log_unmatched(&ref);
    ck_assert_uint_eq(shard[0].n + shard[1].n, ref.n);
    ck_assert_msg(bad == 0, "%d draws of the shards differ from one process's", bad);
    draw_log_free(&ref);
    for (int r = 0; r < RANKS; r++) draw_log_free(&shard[r]);
}
END_TEST

/* A random label map [N, H, W] (I64, 3 classes) and a 0/1 mask (F32), as global batch rows. */
static void rows_of(const diffcl_tensor *g, const uint32_t *rows, int n, diffcl_tensor **out)
{
    diffcl_tensor **parts = calloc((size_t)n, sizeof *parts);
    for (int i = 0; i < n; i++) ck_ok(diffcl_tensor_narrow(g, 0, rows[i], 1, &parts[i]));
    ck_ok(diffcl_tensor_concat(parts, n, 0, out));
    for (int i = 0; i < n; i++) diffcl_tensor_free(parts[i]);
    free(parts);
}

START_TEST(test_contrast_voxels_per_sample)
{
    /* the class-balanced quotas and the agreement mask of the default and 0.1.0 variants, on
     * label maps that differ per sample: each sample's voxels depend on its global index and
     * its own labels only */
    enum { N = 4, HH = 16, WW = 16, K = 3 };
    int64_t sh[3] = {N, HH, WW};
    diffcl_tensor *lab = NULL, *base = NULL;
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_I64, 3, sh, &lab));
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_F32, 3, sh, &base));
    int64_t *lp = diffcl_tensor_data(lab);
    float *bp = diffcl_tensor_data(base);
    uint32_t bits[N * HH * WW];
    diffcl_rng_bits(diffcl_rng_key_make(3, 1, 0, 0), 0, N * HH * WW, bits);
    for (int i = 0; i < N * HH * WW; i++) {
        int n = i / (HH * WW);
        lp[i] = (int64_t)((bits[i] >> 4) % (uint32_t)(n == 2 ? 2 : K)); /* sample 2 lacks class 2 */
        bp[i] = (bits[i] & 3) != 0;
    }
    for (int balanced = 0; balanced <= 1; balanced++)
        for (int masked = 0; masked <= 1; masked++) {
            diffcl_train_options o = DIFFCL_TRAIN_OPTIONS_INIT;
            o.n_classes = K;
            o.contrast_balanced = balanced;
            o.batch_unlabeled = N;
            o.contrast_voxels = 30 * N; /* 30 per sample, 10 per class */
            draw_log ref = {0}, sh_log[RANKS] = {{0}};
            diffcl_tensor *v = NULL;
            draw_log_attach(ctx, &ref);
            ck_ok(dc_contrast_voxels(&o, masked ? base : NULL, lab, NULL, 7, &v));
            draw_log_detach(ctx);
            ck_assert_int_eq(draw_log_index(&ref), 0);
            ck_assert_uint_eq(ref.n, (size_t)(N * (balanced ? K : 1)));
            /* every position is a voxel of its sample that the mask and the class allow */
            const int64_t *vp = diffcl_tensor_data(v);
            int64_t nv = diffcl_tensor_numel(v), per[N] = {0};
            for (int64_t i = 0; i < nv; i++) {
                ck_assert(vp[i] >= 0 && vp[i] < N * HH * WW);
                ck_assert(!masked || bp[vp[i]] != 0);
                per[vp[i] / (HH * WW)]++;
            }
            for (int n = 0; n < N; n++) /* sample 2 has no class 2: 20 of its 30 */
                ck_assert_int_eq(per[n], balanced && n == 2 ? 20 : 30);
            diffcl_tensor_free(v);
            int bad = 0;
            o.batch_unlabeled = N / RANKS;
            o.contrast_voxels = 30 * N / RANKS;
            for (int r = 0; r < RANKS; r++) {
                uint32_t rows[N / RANKS];
                for (int i = 0; i < N / RANKS; i++) rows[i] = (uint32_t)(r + i * RANKS);
                diffcl_tensor *l_r = NULL, *b_r = NULL;
                rows_of(lab, rows, N / RANKS, &l_r);
                rows_of(base, rows, N / RANKS, &b_r);
                draw_log_attach(ctx, &sh_log[r]);
                ck_ok(dc_contrast_voxels(&o, masked ? b_r : NULL, l_r, rows, 7, &v));
                draw_log_detach(ctx);
                diffcl_tensor_free(v);
                diffcl_tensor_free(l_r);
                diffcl_tensor_free(b_r);
                bad += draw_log_compare(&ref, &sh_log[r], "contrastive voxels of a shard");
                draw_log_free(&sh_log[r]);
            }
            bad += draw_log_unmatched(&ref);
            ck_assert_msg(bad == 0, "balanced %d masked %d: %d voxel sets differ", balanced, masked,
                          bad);
            draw_log_free(&ref);
        }
    diffcl_tensor_free(lab);
    diffcl_tensor_free(base);
}
END_TEST

static int same_bytes(diffcl_tensor *a, diffcl_tensor *b)
{
    size_t n = (size_t)diffcl_tensor_numel(a) * diffcl_dtype_size(diffcl_tensor_dtype(a));
    return diffcl_tensor_numel(a) == diffcl_tensor_numel(b) &&
           memcmp(diffcl_tensor_data(a), diffcl_tensor_data(b), n) == 0;
}

START_TEST(test_row_keys_leave_one_process_unchanged)
{
    /* With sample indices equal to the rows (one rank), dropout and the diffusion draws are
     * those of the public functions, bit for bit; with other indices a row draws as the sample
     * it is given. */
    int64_t xs[4] = {3, 8, 4, 4};
    diffcl_tensor *x = test_randn(ctx, DIFFCL_F32, 4, xs, 5);
    diffcl_module *drop = NULL;
    ck_ok(diffcl_dropout_create(ctx, 0.5, 1, 11, 0x77, &drop));
    diffcl_tensor *y0 = NULL, *y1 = NULL, *y2 = NULL, *row = NULL, *row_ref = NULL;
    diffcl_module_set_step(drop, 4);
    ck_ok(diffcl_module_forward(drop, x, &y0));
    uint32_t ident[3] = {0, 1, 2}, perm[3] = {2, 0, 1};
    dc_module_set_samples(drop, ident, 3);
    diffcl_module_set_step(drop, 4);
    ck_ok(diffcl_module_forward(drop, x, &y1));
    ck_assert(same_bytes(y0, y1));
    /* row 0 keyed as sample 2 drops what row 2 dropped without indices (same input rows) */
    diffcl_tensor *x2 = NULL, *xr = NULL;
    ck_ok(diffcl_tensor_narrow(x, 0, 2, 1, &xr));
    diffcl_tensor *parts[3] = {xr, xr, xr};
    ck_ok(diffcl_tensor_concat(parts, 3, 0, &x2));
    dc_module_set_samples(drop, perm, 3);
    diffcl_module_set_step(drop, 4);
    ck_ok(diffcl_module_forward(drop, x2, &y2));
    ck_ok(diffcl_tensor_narrow(y2, 0, 0, 1, &row));
    ck_ok(diffcl_tensor_narrow(y0, 0, 2, 1, &row_ref));
    ck_assert_double_eq(test_rel_error(row, row_ref), 0);
    /* a batch of another size than the indices is an error, not a silent mis-keying */
    diffcl_tensor *y3 = NULL, *x_short = NULL;
    diffcl_tensor_free(row);
    ck_ok(diffcl_tensor_narrow(x, 0, 0, 2, &x_short));
    ck_assert_int_eq(diffcl_module_forward(drop, x_short, &y3), DIFFCL_ERR_SHAPE);
    ck_assert_ptr_null(y3);
    dc_module_set_samples(drop, NULL, 0);
    ck_ok(diffcl_module_forward(drop, x_short, &y3));
    diffcl_tensor *all[] = {x, y0, y1, y2, row_ref, x2, xr, x_short, y3};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) diffcl_tensor_free(all[i]);
    diffcl_module_free(drop);

    /* the diffusion objective and DDIM: identity indices = the public functions */
    diffcl_diffusion_options dop = DIFFCL_DIFFUSION_OPTIONS_INIT;
    dop.dims = 2;
    dop.n_filters = 4;
    dop.normalization = DIFFCL_NORM_GROUP;
    dop.time_embed_dim = 8;
    dop.time_hidden_dim = 16;
    dop.seed = 3;
    diffcl_module *ds = NULL;
    ck_ok(diffcl_diffusion_create(ctx, &dop, &ds));
    int64_t is[4] = {2, 1, 16, 16}, ls[3] = {2, 16, 16};
    diffcl_tensor *img = test_randn(ctx, DIFFCL_F32, 4, is, 6);
    diffcl_tensor *lab = NULL;
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_I64, 3, ls, &lab));
    int64_t *lp = diffcl_tensor_data(lab);
    for (int i = 0; i < 2 * 16 * 16; i++) lp[i] = (i / 16 + i % 16) % 3 == 0;
    diffcl_rng_key key = diffcl_rng_key_make(9, 0x54520001u, 0, 5);
    diffcl_tensor *l0 = NULL, *l1 = NULL, *o0 = NULL, *o1 = NULL;
    diffcl_module_set_step(ds, 5);
    ck_ok(diffcl_diffusion_loss(ds, img, lab, key, &l0, &o0));
    dc_module_set_samples(ds, ident, 2);
    diffcl_module_set_step(ds, 5);
    ck_ok(dc_diffusion_loss_rows(ds, img, lab, key, ident, NULL, &l1, &o1));
    ck_assert(same_bytes(l0, l1));
    ck_assert(same_bytes(o0, o1));
    diffcl_diffusion_sample_options so = DIFFCL_DIFFUSION_SAMPLE_OPTIONS_INIT;
    so.steps = 2;
    so.eta = 0.5; /* the stochastic steps' noise too */
    so.key = diffcl_rng_key_make(9, 0x54520003u, 0, 5);
    diffcl_tensor *s0 = NULL, *s1 = NULL;
    dc_module_set_samples(ds, NULL, 0);
    diffcl_module_set_step(ds, 5);
    ck_ok(diffcl_diffusion_sample(ds, img, &so, &s0));
    dc_module_set_samples(ds, ident, 2);
    diffcl_module_set_step(ds, 5);
    ck_ok(dc_diffusion_sample_rows(ds, img, &so, ident, &s1));
    ck_assert(same_bytes(s0, s1));
    diffcl_tensor *more[] = {img, lab, l0, l1, o0, o1, s0, s1};
    for (size_t i = 0; i < sizeof more / sizeof more[0]; i++) diffcl_tensor_free(more[i]);
    diffcl_module_free(ds);
}
END_TEST

int main(void)
{
    Suite *su = suite_create("draws");
    TCase *tc = tcase_create("draws");
    tcase_set_timeout(tc, 240);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_row_keys_leave_one_process_unchanged);
    tcase_add_test(tc, test_contrast_voxels_per_sample);
    tcase_add_test(tc, test_shards_draw_as_one_process);
    suite_add_tcase(su, tc);
    return test_run_suite(su);
}
