/* diffcl train's arguments (args.h): the options of diffcl_train_options from the command line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <diffcl/diffcl.h>

#include "args.h"
#include "options.h"

static void train_usage(FILE *f)
{
    diffcl_train_options d = DIFFCL_TRAIN_OPTIONS_INIT;
    fprintf(
        f,
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
        "  --classes K          label classes including background (default: dataset.json's, else 2)\n"
        "  --fg-prob X          probability that a labeled patch is centred on a foreground voxel\n"
        "                       (default %g, as nnU-Net; 0: uniform crops as 0.1.0)\n"
        "  --label-map MAP      png layout: label PNG values as classes, VALUE:CLASS pairs, e.g.\n"
        "                       255:1 for 0/255 masks or 255:1,128:2 (default: none, the values\n"
        "                       are the classes); other values must be classes of the map\n"
        "  --rgb                png layout: RGB images as three channels R, G, B (grey ones\n"
        "                       replicated); the model takes 3 channels (default: one channel,\n"
        "                       colour as luminance)\n"
        "  --reorient-ras       3-D NIfTI cases turned to RAS+ when loaded (infer then does the same\n"
        "                       for this model and writes on the input's grid)\n"
        "  --plan auto|on|off   preprocessing plan (docs/data.md): crop to the non-zero region,\n"
        "                       per-channel normalisation (CT: dataset percentiles and statistics),\n"
        "                       resampling to the median spacing; stored in the model for\n"
        "                       diffcl infer (default auto: on for msd and nnunet, off otherwise)\n"
        "  --ct-channels L      channels (0,1,...) treated as CT whatever dataset.json says\n"
        "  --plan-interp I      image resampling: cubic (default) or linear\n"
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
        "  --init-weights W     fine-tune: the CS starts from the tensors of W that match it (a run's\n"
        "                       model.safetensors, a checkpoint or a converted PyTorch state dict); an\n"
        "                       output head of another --classes is skipped; the log lists what was\n"
        "                       loaded and skipped (default: none, a fresh start)\n"
        "run:\n"
        "  --out DIR            run folder (checkpoints, log.csv, curves.png); created with its parents\n"
        "  --overwrite          start over in a --out folder that already holds a run (else an error)\n"
        "  --val-every N        (default iters/10)   --threads N (default: the usable CPUs)\n"
        "folds:\n"
        "  --folds K --fold k   cross-validation: train on all folds but k, validate on fold k\n"
        "                       (k from 0; the fold's cases are left out of training)\n"
        "  --splits F           the K folds (default: splits.json beside the run folder; made\n"
        "                       with a fixed seed if missing, reused by the other folds)\n",
        d.layout, d.dims, d.labeled, d.batch_labeled, d.batch_unlabeled, d.phantom_cases, d.fg_prob,
        (long long)d.iters, (unsigned long long)d.seed, d.n_filters, d.ds_n_filters, d.lr,
        d.momentum, d.weight_decay, d.warmup_frac, d.rampup_frac, d.mu1, d.mu2, d.eta, d.tau,
        d.ddim_steps_train, d.contrast_voxels);
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

/* A flag without a value: 1 if @p a is one (and was applied). */
static int train_flag(const char *a, train_args *args)
{
    if (!strcmp(a, "--reorient-ras")) {
        args->o.reorient_ras = 1;
        return 1;
    }
    if (!strcmp(a, "--no-hfm")) {
        args->o.hfm_levels = 0;
        return 1;
    }
    if (!strcmp(a, "--no-strong")) {
        args->o.strong_unlabeled = 0;
        return 1;
    }
    if (!strcmp(a, "--no-pseudo-mask-dice")) {
        args->o.pseudo_mask_dice = 0;
        return 1;
    }
    if (!strcmp(a, "--ds-pseudo-train-mode")) {
        args->o.ds_pseudo_train_mode = 1;
        return 1;
    }
    if (!strcmp(a, "--no-contrast-balance")) {
        args->o.contrast_balanced = 0;
        return 1;
    }
    if (!strcmp(a, "--no-weak-strong")) {
        args->o.weak_strong = 0;
        return 1;
    }
    if (!strcmp(a, "--overwrite")) {
        args->overwrite = 1;
        return 1;
    }
    if (!strcmp(a, "--rgb")) {
        args->o.png_color = DIFFCL_PNG_COLOR_RGB;
        return 1;
    }
    return 0;
}

/* An option with the value @p v: 0 when applied, or opt_fail's exit code. */
static int train_value(const char *a, const char *v, train_args *args, int *layout_given)
{
    int iv;
    double dv;
#define INT_OPT(name, lo, hi, field)                                                               \
    else if (!strcmp(a, name))                                                                     \
    {                                                                                              \
        if (!opt_int(v, lo, hi, &iv))                                                              \
            return opt_fail("train", "bad %s %s (an integer in [%s, %s])", name, v, #lo, #hi);     \
        field = iv;                                                                                \
    }
#define DBL_OPT(name, lo, hi, field)                                                               \
    else if (!strcmp(a, name))                                                                     \
    {                                                                                              \
        if (!opt_double(v, lo, hi, &dv))                                                           \
            return opt_fail("train", "bad %s %s (a number in [%s, %s])", name, v, #lo, #hi);       \
        field = dv;                                                                                \
    }
    if (!strcmp(a, "--layout"))
        args->o.layout = v, *layout_given = 1;
    else if (!strcmp(a, "--data"))
        args->o.data_dir = v;
    else if (!strcmp(a, "--train-list"))
        args->o.train_list = v;
    else if (!strcmp(a, "--val-list"))
        args->o.val_list = v;
    else if (!strcmp(a, "--labeled-list"))
        args->o.labeled_list = v;
    else if (!strcmp(a, "--out"))
        args->o.out_dir = v;
    else if (!strcmp(a, "--resume"))
        args->resume = v;
    else if (!strcmp(a, "--splits"))
        args->splits = v;
    else if (!strcmp(a, "--init-weights"))
        args->o.init_weights = v;
    else if (!strcmp(a, "--label-map")) {
        int table[256];
        if (diffcl_label_map_parse(v, table, NULL) != DIFFCL_OK)
            return opt_fail("train",
                            "bad --label-map '%s': VALUE:CLASS pairs such as 255:1 or "
                            "255:1,128:2 (0..255, each value once)",
                            v);
        args->o.label_map = v;
    } else if (!strcmp(a, "--method")) {
        if (!strcmp(v, "diffcl"))
            args->o.method = DIFFCL_METHOD_DIFFCL;
        else if (!strcmp(v, "supervised"))
            args->o.method = DIFFCL_METHOD_SUPERVISED;
        else
            return opt_fail("train", "--method %s is not diffcl|supervised", v);
    } else if (!strcmp(a, "--cps")) {
        if (!strcmp(v, "confidence"))
            args->o.cps_variant = DIFFCL_CPS_CONFIDENCE;
        else if (!strcmp(v, "plain"))
            args->o.cps_variant = DIFFCL_CPS_PLAIN;
        else if (!strcmp(v, "agreement"))
            args->o.cps_variant = DIFFCL_CPS_AGREEMENT;
        else
            return opt_fail("train", "--cps %s is not confidence|plain|agreement", v);
    } else if (!strcmp(a, "--hfm-border")) {
        if (!strcmp(v, "periodic"))
            args->o.hfm_border = DIFFCL_HFM_BORDER_PERIODIC;
        else if (!strcmp(v, "zero"))
            args->o.hfm_border = DIFFCL_HFM_BORDER_ZERO;
        else if (!strcmp(v, "reflect"))
            args->o.hfm_border = DIFFCL_HFM_BORDER_REFLECT;
        else
            return opt_fail("train", "--hfm-border %s is not periodic|zero|reflect", v);
    } else if (!strcmp(a, "--plan")) {
        if (!strcmp(v, "auto"))
            args->o.plan = -1;
        else if (!strcmp(v, "on"))
            args->o.plan = 1;
        else if (!strcmp(v, "off"))
            args->o.plan = 0;
        else
            return opt_fail("train", "--plan %s is not auto|on|off", v);
    } else if (!strcmp(a, "--plan-interp")) {
        if (!strcmp(v, "cubic"))
            args->o.plan_interp = DIFFCL_PLAN_INTERP_CUBIC;
        else if (!strcmp(v, "linear"))
            args->o.plan_interp = DIFFCL_PLAN_INTERP_LINEAR;
        else
            return opt_fail("train", "--plan-interp %s is not cubic|linear", v);
    } else if (!strcmp(a, "--ct-channels")) {
        /* a comma-separated list of channel indices */
        unsigned mask = 0;
        const char *q = v;
        while (*q) {
            char *end;
            long c = strtol(q, &end, 10);
            if (end == q || c < 0 || c > 31 || (*end && *end != ','))
                return opt_fail("train", "--ct-channels wants channel indices like 0,2, got %s", v);
            mask |= 1u << c;
            q = *end ? end + 1 : end;
        }
        args->o.plan_ct_channels = mask;
    } else if (!strcmp(a, "--patch")) {
        if (!parse_patch(v, args->o.patch))
            return opt_fail("train", "--patch wants H,W or D,H,W, got %s", v);
    } else if (!strcmp(a, "--seed")) {
        char *end;
        args->o.seed = strtoull(v, &end, 10);
        if (*end || end == v) return opt_fail("train", "bad --seed %s", v);
    }
    INT_OPT("--dims", 2, 3, args->o.dims)
    INT_OPT("--labeled", 1, 1000000, args->o.labeled)
    INT_OPT("--batch-labeled", 1, 4096, args->o.batch_labeled)
    INT_OPT("--batch-unlabeled", 0, 4096, args->o.batch_unlabeled)
    INT_OPT("--phantom-cases", 2, 1000000, args->o.phantom_cases)
    INT_OPT("--classes", 2, 256, args->o.n_classes)
    INT_OPT("--iters", 1, 2000000000, args->o.iters)
    INT_OPT("--n-filters", 1, 1024, args->o.n_filters)
    INT_OPT("--ds-n-filters", 1, 1024, args->o.ds_n_filters)
    INT_OPT("--ddim-steps", 1, 1000, args->o.ddim_steps_train)
    INT_OPT("--contrast-voxels", 0, 100000000, args->o.contrast_voxels)
    INT_OPT("--val-every", 1, 2000000000, args->o.val_every)
    INT_OPT("--threads", 0, 1024, args->threads)
    INT_OPT("--folds", 2, 100, args->folds)
    INT_OPT("--fold", 0, 99, args->fold)
    DBL_OPT("--lr", 0, 10, args->o.lr)
    DBL_OPT("--momentum", 0, 1, args->o.momentum)
    DBL_OPT("--weight-decay", 0, 1, args->o.weight_decay)
    DBL_OPT("--warmup", 0, 1, args->o.warmup_frac)
    DBL_OPT("--rampup", 0, 1, args->o.rampup_frac)
    DBL_OPT("--mu1", 0, 1000, args->o.mu1)
    DBL_OPT("--mu2", 0, 1000, args->o.mu2)
    DBL_OPT("--eta", 0, 1000, args->o.eta)
    DBL_OPT("--tau", 1e-6, 1000, args->o.tau)
    DBL_OPT("--cps-confidence", 0, 0.999999, args->o.cps_confidence)
    DBL_OPT("--fg-prob", 0, 1, args->o.fg_prob)
    else return opt_fail("train", "unknown option %s (see 'diffcl train --help')", a);
    if (!strcmp(a, "--iters")) args->iters_override = args->o.iters;
    return 0;
#undef INT_OPT
#undef DBL_OPT
}

int train_args_parse(int argc, char **argv, train_args *args)
{
    memset(args, 0, sizeof *args);
    diffcl_train_options_init(&args->o);
    int layout_given = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            train_usage(stdout);
            return 0;
        }
        if (train_flag(a, args)) continue;
        if (i + 1 >= argc) return opt_fail("train", "option %s needs a value", a);
        int rc = train_value(a, argv[++i], args, &layout_given);
        if (rc) return rc;
    }
    if (args->resume && args->o.init_weights)
        return opt_fail("train",
                        "--init-weights starts a new run; --resume %s continues from its "
                        "own checkpoint",
                        args->resume);
    if (args->o.init_weights && !*args->o.init_weights)
        return opt_fail("train", "--init-weights needs a file name");
    if (!args->resume && !args->o.out_dir)
        return opt_fail("train", "--out RUN_DIR is required (see 'diffcl train --help')");
    if (args->folds && (args->fold >= args->folds || args->resume || args->o.val_list))
        return opt_fail("train", "--fold k needs 0 <= k < --folds, a new run and no --val-list");
    if (!args->folds && (args->fold || args->splits))
        return opt_fail("train", "--fold and --splits go with --folds K");
    /* --data without --layout: detect the layout instead of silently training on the phantom */
    if (args->o.data_dir && !layout_given) args->o.layout = "auto";
    return TOOL_ARGS_RUN;
}
