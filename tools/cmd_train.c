/* diffcl train: the semi-supervised trainer from the command line. Public API only. */
#include <stdio.h>
#include <unistd.h>

#include <diffcl/diffcl.h>
#include <diffcl/distributed.h> /* mpirun -np N diffcl train */

#include "commands.h"
#include "args.h"
#include "folds.h"

static void log_to_stderr(diffcl_log_level level, const char *msg, void *user)
{
    (void)user;
    fprintf(stderr, "%s%s\n",
            level == DIFFCL_LOG_ERROR  ? "error: "
            : level == DIFFCL_LOG_WARN ? "warning: "
                                       : "",
            msg);
}

int cmd_train(int argc, char **argv)
{
    train_args args;
    int parsed = train_args_parse(argc, argv, &args);
    if (parsed != TOOL_ARGS_RUN) return parsed;
    diffcl_train_options o = args.o;
    const char *resume = args.resume;
    int overwrite = args.overwrite;
    if (!resume) { /* a trained run is not thrown away by a repeated command line */
        char last[4200];
        snprintf(last, sizeof last, "%s/last.safetensors", o.out_dir);
        if (access(last, F_OK) == 0 && !overwrite) {
            fprintf(
                stderr,
                "diffcl train: %s already holds a run (%s): continue it with --resume %s, or start "
                "over with --overwrite\n",
                o.out_dir, last, o.out_dir);
            return 1;
        }
    }
    diffcl_context_options co = DIFFCL_CONTEXT_OPTIONS_INIT;
    co.n_threads = args.threads;
    co.log = log_to_stderr;
    diffcl_context *ctx = NULL;
    diffcl_trainer *tr = NULL;
    /* MPI: under mpirun/srun (and built with -Dmpi=enabled) initialise MPI and train on MPI_COMM_WORLD */
    int mpi_on = 0, mpi_rank = 0, mpi_size = 1;
    diffcl_status s = diffcl_mpi_launch_init(&mpi_on, &mpi_rank, &mpi_size);
    if (s == DIFFCL_OK) s = tool_context_create(&co, &ctx);
    if (s == DIFFCL_OK && args.folds && folds_prepare(ctx, &args)) {
        diffcl_context_free(ctx);
        diffcl_mpi_launch_finalize();
        return 1;
    }
    o = args.o; /* with the fold's lists */
    if (s == DIFFCL_OK)
        s = resume ? diffcl_trainer_resume(ctx, resume, args.iters_override, &tr)
                   : diffcl_trainer_create(ctx, &o, &tr);
    if (s == DIFFCL_OK && overwrite && !resume && mpi_rank == 0) {
        /* --overwrite, once the new run could start (a failed start keeps the old run): the old
         * run's files go, so that a new run stopped before its first checkpoint cannot be
         * resumed, or its best model taken, as the old one */
        static const char *const old_files[] = {"last.safetensors", "best.safetensors",
                                                "model.safetensors", "log.csv", "curves.png"};
        for (size_t k = 0; k < sizeof old_files / sizeof old_files[0]; k++) {
            char p[4200];
            snprintf(p, sizeof p, "%s/%s", o.out_dir, old_files[k]);
            remove(p);
        }
    }
    if (s == DIFFCL_OK && mpi_on) s = diffcl_trainer_use_mpi_world(tr);
    if (s == DIFFCL_OK) s = diffcl_trainer_run(tr);
    int rc = 0;
    if (s != DIFFCL_OK) {
        if (mpi_size > 1)
            fprintf(stderr, "diffcl train (MPI rank %d of %d): ", mpi_rank, mpi_size);
        else
            fprintf(stderr, "diffcl train: ");
        fprintf(stderr, "%s: %s\n", diffcl_status_string(s), diffcl_last_error());
        rc = 1;
        if (mpi_size > 1) diffcl_mpi_abort(rc); /* the other ranks would wait forever */
    } else if (mpi_rank == 0) {
        fprintf(stderr, "done: %s/model.safetensors (best validation Dice %.4f)\n",
                resume ? resume : o.out_dir, diffcl_trainer_best_dice(tr));
    }
    diffcl_trainer_free(tr);
    diffcl_context_free(ctx);
    diffcl_mpi_launch_finalize();
    return rc;
}
