/* Suite mpi (run by mpirun -np 2): 2 ranks x batch b give the same weights as 1 rank x batch
 * 2b. A 2-D V-Net (16 filters) with group norm (no mixing of samples) and dropout off, trained
 * 6 steps with a cross-entropy loss (mean over voxels: equal-sized patches make it a mean of
 * per-sample terms) and Nesterov SGD (lr 0.01, momentum 0.9) with weight decay; each rank takes its shard of the same
 * seeded sampler's global batch, gradients are all-reduced in buckets started from the
 * gradient-ready hooks (dc_dist). Rank 0 then trains, in one process, (a) a fresh copy on the
 * whole global batch and (b) a copy that accumulates the global batch's shards (the same
 * arithmetic as the ranks' average, without MPI), and checks
 *   max|w_2ranks - w_batch2b| / max|w| <= 1e-5 (measured 1.2e-7 with the cblas_sgemm convolutions
 *   this test selects; 3.9e-5 with the AVX-512 kernels of e129891, EQ_CONV=auto)
 *   max|w_2ranks - w_accumulated| / max|w| <= 1e-6 (measured 0: the all-reduce is exact here).
 * (a) differs from the 2-rank run only by float rounding (batch 4 vs two batches of 2 through
 * the convolution kernels), which training amplifies step by step: at lr 0.05 about 5x per
 * step (5 steps: 1e-7 to 5e-5 depending on the conv kernels in the build); at lr 0.01 it stays
 * near 1e-7 for 6 steps (8 steps: 4e-6). With 4 filters the group norm of the 2x2 bottleneck
 * normalises 4 values per group and amplifies it far more. Knobs for investigating: EQ_STEPS,
 * EQ_LR, EQ_NF, EQ_NORM (diffcl_norm_kind), EQ_DEBUG.
 * Also: the cross-rank prototypes equal those of the whole batch, the ranks' weights are
 * bit-identical, and the buckets are started from the hooks. A plain program, not Check:
 * Check's fork mode and MPI do not mix. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "diffcl/diffcl.h"
#include "diffcl/distributed.h"
#include "train/distributed_internal.h"

static int STEPS = 6;
#define BL 2 /* per-rank batch */
#define TOL 1e-5     /* max|w_2ranks - w_1rank| / max|w_1rank| over all weights */
#define TOL_FLOOR 1e-6 /* max|w_2ranks - w_accumulated| / max|w|: the same arithmetic without MPI */

static int fails = 0;
#define CHECK(c, ...)                                                             \
    do {                                                                          \
        if (!(c)) {                                                               \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                  \
            fprintf(stderr, __VA_ARGS__);                                         \
            fprintf(stderr, " (%s)\n", diffcl_last_error());                      \
            fails++;                                                              \
        }                                                                         \
    } while (0)
#define OK(expr) CHECK((expr) == DIFFCL_OK, "%s", #expr)

typedef struct run {
    diffcl_dataset *ds;
    diffcl_split split;
    diffcl_sampler *sampler;
    diffcl_module *net;
    diffcl_optimizer *opt;
} run;

static void run_open(diffcl_context *ctx, run *r, int global_batch)
{
    memset(r, 0, sizeof *r);
    diffcl_dataset_options dopt = DIFFCL_DATASET_OPTIONS_INIT;
    dopt.layout = DIFFCL_LAYOUT_PHANTOM;
    dopt.n_cases = 8;
    dopt.phantom.ndim = 2;
    dopt.phantom.seed = 5;
    OK(diffcl_dataset_open(ctx, NULL, &dopt, &r->ds));
    OK(diffcl_dataset_split(r->ds, 8, NULL, &r->split));
    diffcl_sampler_options so = DIFFCL_SAMPLER_OPTIONS_INIT;
    so.seed = 77;
    so.patch[0] = 1;
    so.patch[1] = 32;
    so.patch[2] = 32;
    so.batch_labeled = global_batch;
    so.batch_unlabeled = 0;
    so.prefetch = 0;
    OK(diffcl_sampler_create(r->ds, &r->split, &so, &r->sampler));
    diffcl_vnet_options vo = DIFFCL_VNET_OPTIONS_INIT;
    vo.dims = 2;
    vo.n_filters = getenv("EQ_NF") ? atoi(getenv("EQ_NF")) : 16;
    vo.normalization = getenv("EQ_NORM") ? (diffcl_norm_kind)atoi(getenv("EQ_NORM")) : DIFFCL_NORM_GROUP;
    vo.has_dropout = 0;
    vo.seed = 11;
    OK(diffcl_vnet_create(ctx, &vo, &r->net));
    diffcl_param_group_options go = DIFFCL_PARAM_GROUP_OPTIONS_INIT;
    go.lr = getenv("EQ_LR") ? atof(getenv("EQ_LR")) : 0.01;
    go.momentum = 0.9;
    go.nesterov = 1;
    go.weight_decay = 1e-4;
    OK(diffcl_optimizer_create(ctx, DIFFCL_OPTIM_SGD, &r->opt));
    OK(diffcl_optimizer_add_module(r->opt, r->net, &go, 0, NULL));
    diffcl_module_train(r->net, 1);
}

static void run_close(run *r)
{
    diffcl_optimizer_free(r->opt);
    diffcl_module_free(r->net);
    diffcl_sampler_free(r->sampler);
    diffcl_split_free(&r->split);
    diffcl_dataset_free(r->ds);
}

/* One SGD step of one process on the global batch accumulated in `size` shards (the float
 * noise floor: the same arithmetic as the ranks' average, without MPI). */
static void step_accum(run *r, diffcl_tensor *gi, diffcl_tensor *gl, int size)
{
    diffcl_optimizer_zero_grad(r->opt);
    for (int k = 0; k < size; k++) {
        diffcl_tensor *img = NULL, *lab = NULL, *logits = NULL, *loss = NULL, *scaled = NULL;
        OK(dc_dist_shard(k, size, BL, 0, gi, gl, &img, &lab));
        OK(diffcl_vnet_forward(r->net, img, &logits, NULL));
        OK(diffcl_cross_entropy_loss(logits, lab, NULL, &loss));
        OK(diffcl_affine(loss, 1.0 / size, 0.0, &scaled));
        OK(diffcl_backward(scaled, NULL));
        diffcl_tensor *ts[] = {img, lab, logits, loss, scaled};
        for (size_t q = 0; q < 5; q++) diffcl_tensor_free(ts[q]);
    }
    OK(diffcl_optimizer_step(r->opt));
}

/* One SGD step on image/label (this process's part of the batch). */
static void step(run *r, dc_dist *d, diffcl_tensor *image, diffcl_tensor *label, double *loss_out)
{
    diffcl_tensor *logits = NULL, *loss = NULL;
    OK(diffcl_vnet_forward(r->net, image, &logits, NULL));
    OK(diffcl_cross_entropy_loss(logits, label, NULL, &loss));
    if (loss_out) diffcl_tensor_item(loss, loss_out);
    diffcl_optimizer_zero_grad(r->opt);
    dc_dist_begin_backward(d);
    OK(diffcl_backward(loss, NULL));
    OK(dc_dist_finish_backward(d));
    OK(diffcl_optimizer_step(r->opt));
    diffcl_tensor_free(logits);
    diffcl_tensor_free(loss);
}

int main(int argc, char **argv)
{
    /* The cblas_sgemm convolutions: this test is about sharding and the all-reduce, not about the
     * AVX-512 kernels, whose batch-size-dependent rounding (and, at e129891, gradient error:
     * suite vnet) would be amplified by training into the comparison with batch 2b.
     * EQ_CONV=auto keeps the default kernels. */
    if (!getenv("EQ_CONV") || strcmp(getenv("EQ_CONV"), "auto")) setenv("DIFFCL_CONV_KERNEL", "blas", 1);
    MPI_Init(&argc, &argv);
    if (getenv("EQ_STEPS")) STEPS = atoi(getenv("EQ_STEPS"));
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    diffcl_context_options co = DIFFCL_CONTEXT_OPTIONS_INIT;
    co.n_threads = 1;
    diffcl_context *ctx = NULL;
    OK(diffcl_context_create(&co, &ctx));
    CHECK(diffcl_mpi_available() == 1, "diffcl_mpi_available");

    /* --- the data-parallel run --- */
    run r;
    run_open(ctx, &r, BL * size);
    int n = diffcl_optimizer_num_params(r.opt);
    diffcl_tensor **params = calloc((size_t)n, sizeof *params);
    for (int i = 0; i < n; i++) params[i] = diffcl_optimizer_param(r.opt, i);
    dc_dist *d = NULL;
    MPI_Comm world = MPI_COMM_WORLD;
    setenv("DIFFCL_MPI_BUCKET_MB", "0.01", 1); /* several buckets even for this small net */
    OK(dc_dist_create(&world, params, n, &d));
    CHECK(dc_dist_size(d) == size && dc_dist_rank(d) == rank, "rank/size");
    CHECK(dc_dist_bytes(d) > 0, "bytes");
    OK(dc_dist_broadcast(d, NULL));
    double loss_sum = 0;
    for (uint32_t it = 0; it < (uint32_t)STEPS; it++) {
        diffcl_tensor *gi = NULL, *gl = NULL, *img = NULL, *lab = NULL;
        OK(diffcl_sampler_next(r.sampler, it, &gi, &gl, NULL));
        OK(dc_dist_shard(rank, size, BL, 0, gi, gl, &img, &lab));
        CHECK(img && diffcl_tensor_dim(img, 0) == BL, "shard size");
        double l = 0;
        step(&r, d, img, lab, &l);
        loss_sum += l;
        /* cross-rank prototypes: from each rank's shard of the V-Net features == from the whole batch */
        if (it == 0) {
            diffcl_tensor *gf = NULL, *glog = NULL, *f = NULL, *fl = NULL, *pr = NULL, *cn = NULL, *gpr = NULL,
                          *gcn = NULL;
            int prev = diffcl_set_grad_enabled(ctx, 0);
            OK(diffcl_vnet_forward(r.net, gi, &glog, &gf));
            diffcl_set_grad_enabled(ctx, prev);
            OK(dc_dist_shard(rank, size, BL, 0, gf, gl, &f, &fl));
            OK(diffcl_class_prototypes(f, fl, NULL, 2, &pr, &cn));
            OK(dc_dist_prototypes(d, f, fl, 2, pr, cn));
            OK(diffcl_class_prototypes(gf, gl, NULL, 2, &gpr, &gcn));
            double num = 0, den = 0;
            const float *a = diffcl_tensor_data(pr), *b = diffcl_tensor_data(gpr);
            for (int64_t j = 0; j < diffcl_tensor_numel(pr); j++) {
                num = fmax(num, fabs((double)a[j] - b[j]));
                den = fmax(den, fabs((double)b[j]));
            }
            const double *c1 = diffcl_tensor_data(cn), *c2 = diffcl_tensor_data(gcn);
            CHECK(den > 0 && num / den <= 1e-5, "cross-rank prototypes differ: %.3g", den > 0 ? num / den : -1.0);
            CHECK(c1[0] == c2[0] && c1[1] == c2[1], "cross-rank prototype counts differ: %g,%g vs %g,%g", c1[0], c1[1],
                  c2[0], c2[1]);
            if (rank == 0) printf("cross-rank prototypes: max rel error %.3g, counts %g/%g\n", den > 0 ? num / den : -1.0, c1[0], c1[1]);
            diffcl_tensor *ts[] = {gf, glog, f, fl, pr, cn, gpr, gcn};
            for (size_t k = 0; k < sizeof ts / sizeof *ts; k++) diffcl_tensor_free(ts[k]);
        }
        diffcl_tensor_free(gi);
        diffcl_tensor_free(gl);
        diffcl_tensor_free(img);
        diffcl_tensor_free(lab);
    }
    (void)loss_sum;
    int from_hooks = 0, total = 0;
    dc_dist_bucket_stats(d, &from_hooks, &total);
    if (rank == 0) printf("buckets: %d of %d started from the gradient-ready hooks during backward\n", from_hooks, total);
    CHECK(total > 1 && from_hooks >= total - 1, "buckets launched from hooks: %d of %d", from_hooks, total);

    /* the ranks agree bit for bit */
    for (int i = 0; i < n; i++) {
        diffcl_tensor *p = params[i];
        int64_t m = diffcl_tensor_numel(p);
        float *mine = malloc((size_t)m * sizeof(float)), *root = malloc((size_t)m * sizeof(float));
        memcpy(mine, diffcl_tensor_data(p), (size_t)m * sizeof(float));
        memcpy(root, mine, (size_t)m * sizeof(float));
        MPI_Bcast(root, (int)m, MPI_FLOAT, 0, MPI_COMM_WORLD);
        CHECK(memcmp(mine, root, (size_t)m * sizeof(float)) == 0, "rank %d: parameter %d differs from rank 0's", rank, i);
        free(mine);
        free(root);
    }

    /* --- rank 0: the same steps in one process on the whole global batch --- */
    if (rank == 0) {
        run ref;
        run_open(ctx, &ref, BL * size);
        for (uint32_t it = 0; it < (uint32_t)STEPS; it++) {
            diffcl_tensor *gi = NULL, *gl = NULL;
            OK(diffcl_sampler_next(ref.sampler, it, &gi, &gl, NULL));
            step(&ref, NULL, gi, gl, NULL);
            diffcl_tensor_free(gi);
            diffcl_tensor_free(gl);
        }
        /* metrics: (1) max|w_2 - w_1| / max|w_1| over all weights; (2) per tensor, the difference
         * relative to how far the weights moved from their initial values, worst tensor */
        run acc;
        run_open(ctx, &acc, BL * size);
        for (uint32_t it = 0; it < (uint32_t)STEPS; it++) {
            diffcl_tensor *gi = NULL, *gl = NULL;
            OK(diffcl_sampler_next(acc.sampler, it, &gi, &gl, NULL));
            step_accum(&acc, gi, gl, size);
            diffcl_tensor_free(gi);
            diffcl_tensor_free(gl);
        }
        double floor_diff = 0, acc_diff = 0;
        for (int i = 0; i < n; i++) {
            const float *a = diffcl_tensor_data(diffcl_optimizer_param(acc.opt, i));
            const float *b = diffcl_tensor_data(diffcl_optimizer_param(ref.opt, i));
            const float *c = diffcl_tensor_data(params[i]);
            for (int64_t j = 0; j < diffcl_tensor_numel(params[i]); j++) {
                floor_diff = fmax(floor_diff, fabs((double)a[j] - b[j]));
                acc_diff = fmax(acc_diff, fabs((double)a[j] - c[j]));
            }
        }
        run_close(&acc);
        run init;
        run_open(ctx, &init, BL);
        double max_diff = 0, max_w = 0, worst = 0, moved = 0;
        for (int i = 0; i < n; i++) {
            const float *a = diffcl_tensor_data(params[i]);
            const float *b = diffcl_tensor_data(diffcl_optimizer_param(ref.opt, i));
            const float *w0 = diffcl_tensor_data(diffcl_optimizer_param(init.opt, i));
            int64_t m = diffcl_tensor_numel(params[i]);
            double diff = 0, upd = 0;
            for (int64_t j = 0; j < m; j++) {
                diff = fmax(diff, fabs((double)a[j] - b[j]));
                upd = fmax(upd, fabs((double)b[j] - w0[j]));
                max_w = fmax(max_w, fabs((double)b[j]));
            }
            max_diff = fmax(max_diff, diff);
            moved = fmax(moved, upd);
            if (upd > 0 && diff / upd > worst) worst = diff / upd;
            if (getenv("EQ_DEBUG") && upd > 0 && diff / upd > 1e-4) printf("  param %d: diff %.3g, update %.3g\n", i, diff, upd);
        }
        run_close(&init);
        double global = max_w > 0 ? max_diff / max_w : max_diff;
        double vs_acc = max_w > 0 ? acc_diff / max_w : acc_diff;
        printf("float noise floor (1 process, the global batch accumulated in %d shards, vs batch %d): max|dw|/max|w| "
               "%.3g\n", size, BL * size, max_w > 0 ? floor_diff / max_w : floor_diff);
        printf("mpi equivalence: %d ranks x batch %d vs 1 rank x batch %d after %d steps: max|dw|/max|w| %.3g "
               "(tolerance %.1g); vs the accumulated-shard run %.3g (tolerance %.1g); worst tensor max|dw| / its largest "
               "update %.3g; largest update %.3g; %lld gradient bytes all-reduced per step\n",
               size, BL, BL * size, STEPS, global, TOL, vs_acc, TOL_FLOOR, worst, moved, (long long)dc_dist_bytes(d));
        /* The batch-4 run sums the same gradients in another order. On a CPU whose BLAS core
         * flips a ReLU decision between the two orders, they part by ~1e-4 (OpenBLAS's
         * Cooperlake core on Zen 4) while the accumulated-shard run, the same order as the 2
         * ranks, stays identical (vs_acc, checked to 1e-6 below). So the batch-4 comparison is
         * held to TOL above the noise floor this run measured between the two orders. */
        double floor_rel = max_w > 0 ? floor_diff / max_w : floor_diff;
        CHECK(global <= TOL + floor_rel, "weights differ: %.3g > %.1g + noise floor %.3g", global, TOL,
              floor_rel);
        CHECK(vs_acc <= TOL_FLOOR, "2 ranks differ from the accumulated-shard run: %.3g > %.1g", vs_acc, TOL_FLOOR);
        CHECK(moved > 1e-3, "weights did not move (%.3g)", moved);
        run_close(&ref);
    }
    /* a failure on one rank stops every rank before the update; logged values are means */
    {
        double vals[2] = {(double)rank, 1.0};
        diffcl_status local = rank == size - 1 ? DIFFCL_ERR_NUMERIC : DIFFCL_OK;
        diffcl_status s = dc_dist_agree(d, local, 7, vals, 2);
        CHECK(size == 1 ? s == DIFFCL_ERR_NUMERIC : s != DIFFCL_OK, "rank %d: a failure on rank %d was not seen", rank,
              size - 1);
        CHECK(fabs(vals[0] - (size - 1) / 2.0) < 1e-12 && vals[1] == 1.0, "agreement means %g %g", vals[0], vals[1]);
        double ok_vals[1] = {0};
        CHECK(dc_dist_agree(d, DIFFCL_OK, 8, ok_vals, 1) == DIFFCL_OK, "agreement when every rank passed");
    }
    dc_dist_free(d);
    free(params);
    run_close(&r);
    diffcl_context_free(ctx);
    int all = 0;
    MPI_Allreduce(&fails, &all, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    MPI_Finalize();
    if (rank == 0) printf("%s\n", all ? "FAILED" : "PASSED");
    return all ? 1 : 0;
}
