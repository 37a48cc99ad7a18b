/* diffcl train: the semi-supervised trainer from the command line. Public API only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <diffcl/diffcl.h>
#include <diffcl/distributed.h> /* mpirun -np N diffcl train */

#include "commands.h"
#include "options.h"

static void train_usage(FILE *f)
{
    diffcl_train_options d = DIFFCL_TRAIN_OPTIONS_INIT;
    fprintf(f,
            "usage: diffcl train --out RUN_DIR [options]      (or: diffcl train --resume RUN_DIR [--iters N])\n\n"
            "data:\n"
            "  --layout L           phantom|png|la-h5|msd|nnunet|auto (default %s without --data, auto with it;\n"
            "                       phantom needs no --data)\n"
            "  --data DIR           data set root\n"
            "  --train-list F       training case list (default: the layout's, e.g. train.list)\n"
            "  --val-list F         validation cases (phantom: a number of held-out cases); default none\n"
            "  --dims 2|3           (default %d)\n"
            "  --labeled N          first N of the sorted training list are labeled (default %d)\n"
            "  --labeled-list F     explicit labeled case ids instead\n"
            "  --patch H,W | D,H,W  patch size, multiples of 16 (default 96,96 in 2-D, 112,112,80 in 3-D)\n"
            "  --batch-labeled N    (default %d)      --batch-unlabeled N (default %d)\n"
            "  --phantom-cases N    phantom training cases (default %d)\n"
            "  --classes K          label classes including background (default %d)\n"
            "method:\n"
            "  --method M           diffcl|supervised (default diffcl)\n"
            "  --iters N            (default %lld)       --seed S (default %llu)\n"
            "  --n-filters N        CS width (default %d)   --ds-n-filters N  DS width (default %d)\n"
            "  --no-hfm             plain V-Net CS (default: HF-Mamba on the two deepest levels + bottleneck)\n"
            "  --lr X (default %g)  --momentum X (%g)  --weight-decay X (%g)\n"
            "  --warmup X (%g)  --rampup X (%g)  --mu1 X (%g)  --mu2 X (%g)  --eta X (%g)  --tau X (%g)\n"
            "  --ddim-steps N       DDIM steps of the DS pseudo label (default %d)\n"
            "  --contrast-voxels N  (default %d)\n"
            "  --no-strong          no strong augmentation of the unlabeled patches\n"
            "  --cps V              how the CS learns the DS pseudo label: confidence (default: CE weighted by\n"
            "                       the DS's confidence, Dice on the whole label), plain (CPS) or agreement\n"
            "                       (0.1.0: only where CS and DS already agree)\n"
            "  --cps-confidence X   confidence variant: keep voxels whose DS confidence is >= X (0: weigh by it)\n"
            "  --no-pseudo-mask-dice  agreement variant: its mask on the CE of L^c_p only, not on its Dice\n"
            "  --ds-pseudo-train-mode  the DS makes pseudo labels in training mode (0.1.0; default eval mode)\n"
            "  --no-contrast-balance  contrastive voxels drawn uniformly (0.1.0; default: equal per class)\n"
            "  --no-weak-strong     pseudo labels from the same view the losses see (0.1.0; default: from\n"
            "                       the weak view, losses on the strong view)\n"
            "  --hfm-border B       HF-Mamba FFT border: periodic (default, 0.1.0), zero or reflect padding\n"
            "run:\n"
            "  --out DIR            run folder (checkpoints, log.csv, curves.png); created with its parents\n"
            "  --overwrite          start over in a --out folder that already holds a run (else an error)\n"
            "  --val-every N        (default iters/10)   --threads N (default: the usable CPUs)\n",
            d.layout, d.dims, d.labeled, d.batch_labeled, d.batch_unlabeled, d.phantom_cases, d.n_classes, (long long)d.iters,
            (unsigned long long)d.seed, d.n_filters, d.ds_n_filters, d.lr, d.momentum, d.weight_decay,
            d.warmup_frac, d.rampup_frac, d.mu1, d.mu2, d.eta, d.tau, d.ddim_steps_train, d.contrast_voxels);
}

static int parse_patch(const char *s, int64_t patch[3])
{
    long v[3];
    int n = sscanf(s, "%ld,%ld,%ld", &v[0], &v[1], &v[2]);
    if (n == 2) {
        patch[0] = 1;
        patch[1] = v[0];
        patch[2] = v[1];
        return 1;
    }
    if (n == 3) {
        for (int i = 0; i < 3; i++) patch[i] = v[i];
        return 1;
    }
    return 0;
}

static void log_to_stderr(diffcl_log_level level, const char *msg, void *user)
{
    (void)user;
    fprintf(stderr, "%s%s\n", level == DIFFCL_LOG_ERROR ? "error: " : level == DIFFCL_LOG_WARN ? "warning: " : "",
            msg);
}

int cmd_train(int argc, char **argv)
{
    diffcl_train_options o = DIFFCL_TRAIN_OPTIONS_INIT;
    const char *resume = NULL;
    int threads = 0, layout_given = 0, overwrite = 0;
    int64_t iters_override = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            train_usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--no-hfm")) { o.hfm_levels = 0; continue; }
        if (!strcmp(a, "--no-strong")) { o.strong_unlabeled = 0; continue; }
        if (!strcmp(a, "--no-pseudo-mask-dice")) { o.pseudo_mask_dice = 0; continue; }
        if (!strcmp(a, "--ds-pseudo-train-mode")) { o.ds_pseudo_train_mode = 1; continue; }
        if (!strcmp(a, "--no-contrast-balance")) { o.contrast_balanced = 0; continue; }
        if (!strcmp(a, "--no-weak-strong")) { o.weak_strong = 0; continue; }
        if (!strcmp(a, "--overwrite")) { overwrite = 1; continue; }
        if (i + 1 >= argc) return opt_fail("train", "option %s needs a value", a);
        const char *v = argv[++i];
        int iv;
        double dv;
#define INT_OPT(name, lo, hi, field) \
    else if (!strcmp(a, name)) { \
        if (!opt_int(v, lo, hi, &iv)) return opt_fail("train", "bad %s %s (an integer in [%s, %s])", name, v, #lo, #hi); \
        field = iv; \
    }
#define DBL_OPT(name, lo, hi, field) \
    else if (!strcmp(a, name)) { \
        if (!opt_double(v, lo, hi, &dv)) return opt_fail("train", "bad %s %s (a number in [%s, %s])", name, v, #lo, #hi); \
        field = dv; \
    }
        if (!strcmp(a, "--layout")) o.layout = v, layout_given = 1;
        else if (!strcmp(a, "--data")) o.data_dir = v;
        else if (!strcmp(a, "--train-list")) o.train_list = v;
        else if (!strcmp(a, "--val-list")) o.val_list = v;
        else if (!strcmp(a, "--labeled-list")) o.labeled_list = v;
        else if (!strcmp(a, "--out")) o.out_dir = v;
        else if (!strcmp(a, "--resume")) resume = v;
        else if (!strcmp(a, "--method")) {
            if (!strcmp(v, "diffcl")) o.method = DIFFCL_METHOD_DIFFCL;
            else if (!strcmp(v, "supervised")) o.method = DIFFCL_METHOD_SUPERVISED;
            else return opt_fail("train", "--method %s is not diffcl|supervised", v);
        } else if (!strcmp(a, "--cps")) {
            if (!strcmp(v, "confidence")) o.cps_variant = DIFFCL_CPS_CONFIDENCE;
            else if (!strcmp(v, "plain")) o.cps_variant = DIFFCL_CPS_PLAIN;
            else if (!strcmp(v, "agreement")) o.cps_variant = DIFFCL_CPS_AGREEMENT;
            else return opt_fail("train", "--cps %s is not confidence|plain|agreement", v);
        } else if (!strcmp(a, "--hfm-border")) {
            if (!strcmp(v, "periodic")) o.hfm_border = DIFFCL_HFM_BORDER_PERIODIC;
            else if (!strcmp(v, "zero")) o.hfm_border = DIFFCL_HFM_BORDER_ZERO;
            else if (!strcmp(v, "reflect")) o.hfm_border = DIFFCL_HFM_BORDER_REFLECT;
            else return opt_fail("train", "--hfm-border %s is not periodic|zero|reflect", v);
        } else if (!strcmp(a, "--patch")) {
            if (!parse_patch(v, o.patch)) return opt_fail("train", "--patch wants H,W or D,H,W, got %s", v);
        } else if (!strcmp(a, "--seed")) {
            char *end;
            o.seed = strtoull(v, &end, 10);
            if (*end || end == v) return opt_fail("train", "bad --seed %s", v);
        }
        INT_OPT("--dims", 2, 3, o.dims)
        INT_OPT("--labeled", 1, 1000000, o.labeled)
        INT_OPT("--batch-labeled", 1, 4096, o.batch_labeled)
        INT_OPT("--batch-unlabeled", 0, 4096, o.batch_unlabeled)
        INT_OPT("--phantom-cases", 2, 1000000, o.phantom_cases)
        INT_OPT("--classes", 2, 256, o.n_classes)
        INT_OPT("--iters", 1, 2000000000, o.iters)
        INT_OPT("--n-filters", 1, 1024, o.n_filters)
        INT_OPT("--ds-n-filters", 1, 1024, o.ds_n_filters)
        INT_OPT("--ddim-steps", 1, 1000, o.ddim_steps_train)
        INT_OPT("--contrast-voxels", 0, 100000000, o.contrast_voxels)
        INT_OPT("--val-every", 1, 2000000000, o.val_every)
        INT_OPT("--threads", 0, 1024, threads)
        DBL_OPT("--lr", 0, 10, o.lr)
        DBL_OPT("--momentum", 0, 1, o.momentum)
        DBL_OPT("--weight-decay", 0, 1, o.weight_decay)
        DBL_OPT("--warmup", 0, 1, o.warmup_frac)
        DBL_OPT("--rampup", 0, 1, o.rampup_frac)
        DBL_OPT("--mu1", 0, 1000, o.mu1)
        DBL_OPT("--mu2", 0, 1000, o.mu2)
        DBL_OPT("--eta", 0, 1000, o.eta)
        DBL_OPT("--tau", 1e-6, 1000, o.tau)
        DBL_OPT("--cps-confidence", 0, 0.999999, o.cps_confidence)
        else return opt_fail("train", "unknown option %s (see 'diffcl train --help')", a);
        if (!strcmp(a, "--iters")) iters_override = o.iters;
#undef INT_OPT
#undef DBL_OPT
    }
    if (!resume && !o.out_dir) return opt_fail("train", "--out RUN_DIR is required (see 'diffcl train --help')");
    /* --data without --layout: detect the layout instead of silently training on the phantom */
    if (o.data_dir && !layout_given) o.layout = "auto";
    if (!resume) { /* a trained run is not thrown away by a repeated command line */
        char last[4200];
        snprintf(last, sizeof last, "%s/last.safetensors", o.out_dir);
        if (access(last, F_OK) == 0 && !overwrite) {
            fprintf(stderr, "diffcl train: %s already holds a run (%s): continue it with --resume %s, or start "
                            "over with --overwrite\n", o.out_dir, last, o.out_dir);
            return 1;
        }
    }
    diffcl_context_options co = DIFFCL_CONTEXT_OPTIONS_INIT;
    co.n_threads = threads;
    co.log = log_to_stderr;
    diffcl_context *ctx = NULL;
    diffcl_trainer *tr = NULL;
    /* MPI: under mpirun/srun (and built with -Dmpi=enabled) initialise MPI and train on MPI_COMM_WORLD */
    int mpi_on = 0, mpi_rank = 0, mpi_size = 1;
    diffcl_status s = diffcl_mpi_launch_init(&mpi_on, &mpi_rank, &mpi_size);
    if (s == DIFFCL_OK) s = tool_context_create(&co, &ctx);
    if (s == DIFFCL_OK)
        s = resume ? diffcl_trainer_resume(ctx, resume, iters_override, &tr) : diffcl_trainer_create(ctx, &o, &tr);
    if (s == DIFFCL_OK && overwrite && !resume && mpi_rank == 0) {
        /* --overwrite, once the new run could start (a failed start keeps the old run): the old
         * run's files go, so that a new run stopped before its first checkpoint cannot be
         * resumed, or its best model taken, as the old one */
        static const char *const old_files[] = {"last.safetensors", "best.safetensors", "model.safetensors", "log.csv",
                                                "curves.png"};
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
        if (mpi_size > 1) fprintf(stderr, "diffcl train (MPI rank %d of %d): ", mpi_rank, mpi_size);
        else fprintf(stderr, "diffcl train: ");
        fprintf(stderr, "%s: %s\n", diffcl_status_string(s), diffcl_last_error());
        rc = 1;
        if (mpi_size > 1) diffcl_mpi_abort(rc); /* the other ranks would wait forever */
    } else if (mpi_rank == 0) {
        fprintf(stderr, "done: %s/model.safetensors (best validation Dice %.4f)\n", resume ? resume : o.out_dir,
                diffcl_trainer_best_dice(tr));
    }
    diffcl_trainer_free(tr);
    diffcl_context_free(ctx);
    diffcl_mpi_launch_finalize();
    return rc;
}
