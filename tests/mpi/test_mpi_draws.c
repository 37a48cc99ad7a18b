/* Suite mpi (run by mpirun -np 2): the per-sample random draws of a 2-rank Diff-CL run are those
 * of one process over the same global batch (issue 22, item 6; docs/distributed.md "Random
 * draws"). Each rank trains 2 steps of a trainer attached to MPI_COMM_WORLD (batch 2 + 2 per
 * rank) with the context's draw hook recording every per-sample draw: diffusion timesteps and
 * noise of L^d_s and L^d_p, the DDIM start x_T, contrastive voxels and every dropout mask (the DS
 * makes its pseudo labels in training mode, so its DDIM steps draw masks too). Then each rank
 * trains, alone, a one-process trainer over the global batch (4 + 4) and checks that each of its
 * draws equals the single process's draw for the same global sample; the counts over both ranks
 * must cover the single process's draws exactly once. The voxels are drawn uniformly over whole
 * samples (no agreement mask, no class quotas) so that they do not depend on the pseudo labels,
 * which batch norm over another batch changes; tests/train/test_draws.c checks the quotas and
 * masks per sample. A plain program, not Check: Check's fork mode and MPI do not mix. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mpi.h>

#include "diffcl/diffcl.h"
#include "diffcl/distributed.h"
#include "../common/draw_log.h"
#include "train/trainer_internal.h"

#define BL 2
#define BU 2
#define STEPS 2
#define QUOTA 24

static int fails = 0;
#define CHECK(c, ...)                                                                              \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, " (%s)\n", diffcl_last_error());                                       \
            fails++;                                                                               \
        }                                                                                          \
    } while (0)
#define OK(expr) CHECK((expr) == DIFFCL_OK, "%s", #expr)

/* the configuration of tests/train/test_draws.c; batch k x (BL, BU) */
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
    o.contrast_voxels = QUOTA * BU * k;
    o.iters = 20;
    o.warmup_frac = 0;
    o.rampup_frac = 0.5;
    o.val_every = 1000000;
    o.out_dir = out;
    return o;
}

static void run_steps(diffcl_context *ctx, int k, int use_mpi, const char *dir, draw_log *log)
{
    diffcl_train_options o = config(dir, k);
    diffcl_trainer *tr = NULL;
    OK(diffcl_trainer_create(ctx, &o, &tr));
    if (!tr) return;
    if (use_mpi) {
        MPI_Comm world = MPI_COMM_WORLD;
        OK(diffcl_trainer_set_mpi_comm(tr, &world));
    }
    draw_log_attach(ctx, log);
    for (int it = 0; it < STEPS; it++) {
        log->iter = (uint32_t)it;
        OK(diffcl_trainer_step(tr, NULL));
    }
    draw_log_detach(ctx);
    CHECK(!log->oom, "out of memory recording the draws");
    diffcl_trainer_free(tr);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    diffcl_context_options co = DIFFCL_CONTEXT_OPTIONS_INIT;
    co.n_threads = 1;
    co.log_level = DIFFCL_LOG_WARN;
    diffcl_context *ctx = NULL;
    OK(diffcl_context_create(&co, &ctx));
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/diffcl_mpi_draws_%d_%d", (int)getppid(), rank);
    draw_log mine = {0}, ref = {0};
    run_steps(ctx, 1, 1, dir, &mine);   /* this rank's shard, under MPI */
    run_steps(ctx, size, 0, dir, &ref); /* one process, the global batch */
    CHECK(draw_log_index(&ref) == 0, "a draw key was drawn twice");
    CHECK(ref.per_kind[DC_DRAW_TIMESTEP] > 0 && ref.per_kind[DC_DRAW_NOISE] > 0 &&
              ref.per_kind[DC_DRAW_DROPOUT] > 0 && ref.per_kind[DC_DRAW_VOXELS] > 0,
          "every kind of draw occurs");
    char who[48];
    snprintf(who, sizeof who, "rank %d of %d", rank, size);
    int bad = draw_log_compare(&ref, &mine, who);
    CHECK(bad == 0, "%d of this rank's %zu draws differ from one process's", bad, mine.n);
    /* together the ranks drew each of the single process's draws once (every rank holds the
     * same sorted reference: sum the marks) */
    long long n_ref = (long long)ref.n, n_min = 0;
    MPI_Allreduce(&n_ref, &n_min, 1, MPI_LONG_LONG, MPI_MIN, MPI_COMM_WORLD);
    CHECK(n_min == n_ref, "the ranks' single-process runs drew %lld and %lld", n_min, n_ref);
    int *marks = calloc(ref.n ? ref.n : 1, sizeof *marks);
    if (marks && n_min == n_ref) {
        for (size_t i = 0; i < ref.n; i++) marks[i] = ref.r[i].matched;
        MPI_Allreduce(MPI_IN_PLACE, marks, (int)ref.n, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
        for (size_t i = 0; i < ref.n; i++) ref.r[i].matched = marks[i];
        CHECK(draw_log_unmatched(&ref) == 0, "draws of one process not drawn once by the ranks");
    }
    free(marks);
    if (rank == 0)
        printf("rank 0: %zu of one process's %zu draws (timesteps %zu, noise %zu, dropout %zu, "
               "voxels %zu), %d differ\n",
               mine.n, ref.n, mine.per_kind[DC_DRAW_TIMESTEP], mine.per_kind[DC_DRAW_NOISE],
               mine.per_kind[DC_DRAW_DROPOUT], mine.per_kind[DC_DRAW_VOXELS], bad);
    draw_log_free(&mine);
    draw_log_free(&ref);
    diffcl_context_free(ctx);
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fails++;
    int all = 0;
    MPI_Allreduce(&fails, &all, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    MPI_Finalize();
    if (rank == 0) printf("%s\n", all ? "FAILED" : "OK");
    return all ? 1 : 0;
}
