/* One-machine data-parallel scaling of the Diff-CL trainer over MPI (issue 10 part 4).
 *
 * Run the same global batch both ways and compare the step times:
 *   mpirun -np 1 bench_mpi --threads 2 --bl 4 --bu 4     # 1 rank x 2 threads, batch 4+4
 *   mpirun -np 2 bench_mpi --threads 1 --bl 2 --bu 2     # 2 ranks x 1 thread, 2+2 per rank
 * (bench/run-mpi.sh does both). Prints the median step time over --iters timed iterations
 * (after --warm untimed ones; each step's time is the slowest rank's), global samples per
 * second, and the gradient bytes all-reduced per step by each rank.
 *
 *   bench_mpi [--iters N] [--warm N] [--bl N] [--bu N] [--threads T] [--n-filters F]
 *             [--patch H,W] [--method diffcl|supervised] [--no-hfm]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mpi.h>

#include <diffcl/diffcl.h>
#include <diffcl/distributed.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#define TRY(e)                                                                              \
    do {                                                                                    \
        diffcl_status s_ = (e);                                                             \
        if (s_ != DIFFCL_OK) {                                                              \
            fprintf(stderr, "bench_mpi: %s failed: %s\n", #e, diffcl_last_error());         \
            MPI_Abort(MPI_COMM_WORLD, 1);                                                   \
        }                                                                                   \
    } while (0)

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    int iters = 10, warm = 2, threads = 1;
    diffcl_train_options o = DIFFCL_TRAIN_OPTIONS_INIT;
    o.dims = 2;
    o.warmup_frac = 0; /* every step runs all the Diff-CL terms */
    o.rampup_frac = 0;
    o.phantom_cases = 12;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(a, "--no-hfm")) { o.hfm_levels = 0; continue; }
        if (!strcmp(a, "--iters")) iters = atoi(v);
        else if (!strcmp(a, "--warm")) warm = atoi(v);
        else if (!strcmp(a, "--bl")) o.batch_labeled = atoi(v);
        else if (!strcmp(a, "--bu")) o.batch_unlabeled = atoi(v);
        else if (!strcmp(a, "--threads")) threads = atoi(v);
        else if (!strcmp(a, "--n-filters")) o.n_filters = o.ds_n_filters = atoi(v);
        else if (!strcmp(a, "--patch")) {
            long h = 0, w = 0;
            if (sscanf(v, "%ld,%ld", &h, &w) == 2) { o.patch[0] = 1; o.patch[1] = h; o.patch[2] = w; }
        } else if (!strcmp(a, "--method")) o.method = !strcmp(v, "supervised") ? DIFFCL_METHOD_SUPERVISED : DIFFCL_METHOD_DIFFCL;
        else {
            if (rank == 0) fprintf(stderr, "bench_mpi: unknown option %s\n", a);
            MPI_Abort(MPI_COMM_WORLD, 2);
        }
        i++;
    }
    o.iters = warm + iters;
    char dir[] = "/tmp/diffcl-bench-mpi-XXXXXX";
    if (rank == 0 && !mkdtemp(dir)) MPI_Abort(MPI_COMM_WORLD, 3);
    MPI_Bcast(dir, (int)sizeof dir, MPI_CHAR, 0, MPI_COMM_WORLD);
    o.out_dir = dir;
    diffcl_context_options co = DIFFCL_CONTEXT_OPTIONS_INIT;
    co.n_threads = threads;
    diffcl_context *ctx = NULL;
    diffcl_trainer *tr = NULL;
    TRY(diffcl_context_create(&co, &ctx));
    TRY(diffcl_trainer_create(ctx, &o, &tr));
    if (size > 1) {
        MPI_Comm world = MPI_COMM_WORLD;
        TRY(diffcl_trainer_set_mpi_comm(tr, &world));
    }
    double *t = calloc((size_t)iters, sizeof *t);
    for (int i = 0; i < warm + iters; i++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = now();
        TRY(diffcl_trainer_step(tr, NULL));
        double dt = now() - t0, mx = dt;
        MPI_Allreduce(&dt, &mx, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        if (i >= warm) t[i - warm] = mx;
    }
    qsort(t, (size_t)iters, sizeof *t, cmp);
    double med = t[iters / 2];
    long long bytes = (long long)diffcl_trainer_allreduce_bytes(tr);
    if (rank == 0) {
        int gb = size * (o.batch_labeled + (o.method == DIFFCL_METHOD_DIFFCL ? o.batch_unlabeled : 0));
        printf("bench_mpi: %s, %d rank(s) x %d thread(s), batch %d+%d per rank (global %d), patch %lldx%lld: "
               "median step %.3f s (min %.3f), %.2f samples/s, %lld gradient bytes all-reduced per step per rank\n",
               o.method == DIFFCL_METHOD_DIFFCL ? "Diff-CL" : "supervised", size, threads, o.batch_labeled,
               o.method == DIFFCL_METHOD_DIFFCL ? o.batch_unlabeled : 0, gb,
               (long long)(o.patch[1] ? o.patch[1] : 96), (long long)(o.patch[2] ? o.patch[2] : 96), med, t[0],
               gb / med, bytes);
        char cmd[256];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    }
    free(t);
    diffcl_trainer_free(tr);
    diffcl_context_free(ctx);
    MPI_Finalize();
    return 0;
}
