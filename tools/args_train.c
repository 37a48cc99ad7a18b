/* diffcl train's arguments (args.h): the options of diffcl_train_options from the command line. */
#include <stddef.h>
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
/* A string option: 1 if @p a is one (and was stored). */
static int train_string(const char *a, const char *v, train_args *args, int *layout_given)
{
    static const struct {
        const char *name;
        size_t off; /* of a const char * in train_args */
    } opts[] = {{"--data", offsetof(train_args, o.data_dir)},
                {"--train-list", offsetof(train_args, o.train_list)},
                {"--val-list", offsetof(train_args, o.val_list)},
                {"--labeled-list", offsetof(train_args, o.labeled_list)},
                {"--out", offsetof(train_args, o.out_dir)},
                {"--resume", offsetof(train_args, resume)},
                {"--splits", offsetof(train_args, splits)},
                {"--init-weights", offsetof(train_args, o.init_weights)},
                {"--layout", offsetof(train_args, o.layout)}};
    for (size_t k = 0; k < sizeof opts / sizeof opts[0]; k++)
        if (!strcmp(a, opts[k].name)) {
            memcpy((char *)args + opts[k].off, &v, sizeof v);
            if (!strcmp(a, "--layout")) *layout_given = 1;
            return 1;
        }
    return 0;
}

/* A keyword option (--method, --cps, --hfm-border, --plan, --plan-interp): 1 if @p a is one;
 * *rc is then 0, or opt_fail's exit code for a keyword it does not know. */
static int train_keyword(const char *a, const char *v, train_args *args, int *rc)
{
    static const struct {
        const char *name, *words; /* words: "w1|w2|..." in the order of values */
        int values[3];
        size_t off; /* of an int in train_args */
    } opts[] = {{"--method",
                 "diffcl|supervised",
                 {DIFFCL_METHOD_DIFFCL, DIFFCL_METHOD_SUPERVISED},
                 offsetof(train_args, o.method)},
                {"--cps",
                 "confidence|plain|agreement",
                 {DIFFCL_CPS_CONFIDENCE, DIFFCL_CPS_PLAIN, DIFFCL_CPS_AGREEMENT},
                 offsetof(train_args, o.cps_variant)},
                {"--hfm-border",
                 "periodic|zero|reflect",
                 {DIFFCL_HFM_BORDER_PERIODIC, DIFFCL_HFM_BORDER_ZERO, DIFFCL_HFM_BORDER_REFLECT},
                 offsetof(train_args, o.hfm_border)},
                {"--plan", "auto|on|off", {-1, 1, 0}, offsetof(train_args, o.plan)},
                {"--plan-interp",
                 "cubic|linear",
                 {DIFFCL_PLAN_INTERP_CUBIC, DIFFCL_PLAN_INTERP_LINEAR},
                 offsetof(train_args, o.plan_interp)}};
    for (size_t k = 0; k < sizeof opts / sizeof opts[0]; k++) {
        if (strcmp(a, opts[k].name)) continue;
        const char *w = opts[k].words;
        for (int i = 0; *w; i++) {
            size_t len = strcspn(w, "|");
            if (strlen(v) == len && !strncmp(v, w, len)) {
                memcpy((char *)args + opts[k].off, &opts[k].values[i], sizeof(int));
                *rc = 0;
                return 1;
            }
            w += len + (w[len] == '|');
        }
        *rc = opt_fail("train", "%s %s is not %s", a, v, opts[k].words);
        return 1;
    }
    return 0;
}

/* --ct-channels: a comma-separated list of channel indices as a bit mask; -1 if malformed. */
static long ct_mask(const char *v)
{
    unsigned mask = 0;
    for (const char *q = v; *q;) {
        char *end;
        long c = strtol(q, &end, 10);
        if (end == q || c < 0 || c > 31 || (*end && *end != ',')) return -1;
        mask |= 1u << c;
        q = *end ? end + 1 : end;
    }
    return (long)mask;
}

/* The options that take a parsed value (--label-map, --ct-channels, --patch, --seed): 1 if @p a
 * is one; *rc is then 0 or opt_fail's exit code. */
static int train_parsed(const char *a, const char *v, train_args *args, int *rc)
{
    int table[256];
    char *end;
    *rc = 0;
    if (!strcmp(a, "--label-map")) {
        if (diffcl_label_map_parse(v, table, NULL) != DIFFCL_OK)
            *rc = opt_fail("train",
                           "bad --label-map '%s': VALUE:CLASS pairs such as 255:1 or "
                           "255:1,128:2 (0..255, each value once)",
                           v);
        args->o.label_map = v;
    } else if (!strcmp(a, "--ct-channels")) {
        long m = ct_mask(v);
        if (m < 0)
            *rc = opt_fail("train", "--ct-channels wants channel indices like 0,2, got %s", v);
        args->o.plan_ct_channels = (unsigned)m;
    } else if (!strcmp(a, "--patch")) {
        if (!parse_patch(v, args->o.patch))
            *rc = opt_fail("train", "--patch wants H,W or D,H,W, got %s", v);
    } else if (!strcmp(a, "--seed")) {
        args->o.seed = strtoull(v, &end, 10);
        if (*end || end == v) *rc = opt_fail("train", "bad --seed %s", v);
    } else {
        return 0;
    }
    return 1;
}

/* A numeric option: 0 when applied, or opt_fail's exit code (also for an unknown option). */
static int train_number(const char *a, const char *v, train_args *args)
{
    int iv;
    double dv;
#define INT_OPT(name, lo, hi, field)                                                               \
    if (!strcmp(a, name)) {                                                                        \
        if (!opt_int(v, lo, hi, &iv))                                                              \
            return opt_fail("train", "bad %s %s (an integer in [%s, %s])", name, v, #lo, #hi);     \
        field = iv;                                                                                \
        return 0;                                                                                  \
    }
#define DBL_OPT(name, lo, hi, field)                                                               \
    if (!strcmp(a, name)) {                                                                        \
        if (!opt_double(v, lo, hi, &dv))                                                           \
            return opt_fail("train", "bad %s %s (a number in [%s, %s])", name, v, #lo, #hi);       \
        field = dv;                                                                                \
        return 0;                                                                                  \
    }
    INT_OPT("--dims", 2, 3, args->o.dims)
    INT_OPT("--labeled", 1, 1000000, args->o.labeled)
    INT_OPT("--batch-labeled", 1, 4096, args->o.batch_labeled)
    INT_OPT("--batch-unlabeled", 0, 4096, args->o.batch_unlabeled)
    INT_OPT("--phantom-cases", 2, 1000000, args->o.phantom_cases)
    INT_OPT("--classes", 2, 256, args->o.n_classes)
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
#undef INT_OPT
#undef DBL_OPT
    if (!strcmp(a, "--iters")) {
        if (!opt_int(v, 1, 2000000000, &iv))
            return opt_fail("train", "bad --iters %s (an integer in [1, 2000000000])", v);
        args->o.iters = args->iters_override = iv;
        return 0;
    }
    return opt_fail("train", "unknown option %s (see 'diffcl train --help')", a);
}

/* An option with the value @p v: 0 when applied, or opt_fail's exit code. */
static int train_value(const char *a, const char *v, train_args *args, int *layout_given)
{
    int rc = 0;
    if (train_string(a, v, args, layout_given)) return 0;
    if (train_keyword(a, v, args, &rc) || train_parsed(a, v, args, &rc)) return rc;
    return train_number(a, v, args);
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
