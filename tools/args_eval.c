/* diffcl eval's arguments (args.h). */
#include <stdio.h>
#include <string.h>

#include <diffcl/diffcl.h>

#include "args.h"
#include "options.h"

static void eval_usage(FILE *f)
{
    fprintf(
        f,
        "usage: diffcl eval --pred DIR --label DIR [--list FILE] [--csv FILE] [--json FILE]\n"
        "                   [--classes K] [--physical] [--connectivity 1|2|3]\n"
        "                   [--empty nan|diagonal|VALUE] [--both-empty one|nan] [--nsd-tol MM]\n"
        "                   [--splits FILE] [--label-map MAP]\n\n"
        "Scores every case of --pred (files <id>.nii.gz, <id>.nii, <id>.png or <id>.h5; with\n"
        "--list only the ids listed) against the file of the same id in --label, per foreground\n"
        "class: Dice, Jaccard, 95%% Hausdorff distance, asd_pred_to_ref (the one-directional ASD\n"
        "from the prediction to the reference) and ASSD, as medpy's dc, jc, hd95, asd, assd;\n"
        "with --nsd-tol also the normalised surface Dice, as MONAI's compute_surface_dice.\n"
        "Prints a table per case with the mean over its foreground classes, then mean +- std\n"
        "over cases (sample std, n-1; NaN values left out) per class and of the case means, and\n"
        "nnU-Net's foreground mean (the mean of the class means). --csv and --json also write\n"
        "them.\n\n"
        "  --classes K      number of classes incl. background (default: largest label + 1)\n"
        "  --physical       distances in the reference's voxel spacing (NIfTI pixdim) rather\n"
        "                   than in voxels (the benchmark papers report voxels)\n"
        "  --connectivity C surface connectivity (default 1, as medpy)\n"
        "  --empty E        distances when exactly one of the masks is empty: nan (default,\n"
        "                   left out of the means), diagonal (image diagonal) or a number.\n"
        "                   One empty: Dice 0, NSD 0.\n"
        "  --both-empty B   a class in neither map (default one): one gives Dice 1, distances\n"
        "                   0, NSD 1; nan gives NaN for all, left out of the means, as nnU-Net\n"
        "                   (Dice) and MONAI (NSD) do: use nan to compare with them.\n"
        "  --nsd-tol MM     also the NSD with this tolerance in mm, on the reference's spacing\n"
        "                   whether or not --physical is given (1 for PNG and h5 files)\n"
        "  --json FILE      per-case values, case means, means and stds as JSON (NaN: null),\n"
        "                   written atomically\n"
        "  --splits FILE    the cross-validation folds that train wrote (splits.json): also the mean\n"
        "                   Dice of each fold's validation cases, and mean +- std over folds\n"
        "  --label-map MAP  reference PNGs' values as classes, VALUE:CLASS pairs, e.g. 255:1 for\n"
        "                   0/255 masks (as train --label-map); other values must be classes\n"
        "                   of the map\n"
        "h5 files are read from their dataset 'label' (or 'pred').\n");
}

int eval_args_parse(int argc, char **argv, eval_args *args)
{
    memset(args, 0, sizeof *args);
    {
        diffcl_metric_options mo = DIFFCL_METRIC_OPTIONS_INIT;
        args->mo = mo;
    }
    const char *empty = "nan", *both_empty = "one";
    int conn = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            eval_usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--physical")) {
            args->physical = 1;
            continue;
        }
        if (i + 1 >= argc) return opt_fail("eval", "option %s needs a value", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--pred"))
            args->pred_dir = v;
        else if (!strcmp(a, "--label"))
            args->label_dir = v;
        else if (!strcmp(a, "--list"))
            args->list = v;
        else if (!strcmp(a, "--csv"))
            args->csv = v;
        else if (!strcmp(a, "--json"))
            args->json = v;
        else if (!strcmp(a, "--splits"))
            args->splits = v;
        else if (!strcmp(a, "--label-map")) {
            int table[256];
            if (diffcl_label_map_parse(v, table, NULL) != DIFFCL_OK)
                return opt_fail("eval",
                                "bad --label-map '%s': VALUE:CLASS pairs such as 255:1 or "
                                "255:1,128:2 (0..255, each value once)",
                                v);
            args->label_map = v;
        } else if (!strcmp(a, "--empty"))
            empty = v;
        else if (!strcmp(a, "--both-empty"))
            both_empty = v;
        else if (!strcmp(a, "--nsd-tol")) {
            if (!opt_double(v, 0, 1e300, &args->nsd_tol))
                return opt_fail("eval", "--nsd-tol must be a distance >= 0 in mm, not '%s'", v);
            args->nsd = 1;
        } else if (!strcmp(a, "--classes")) {
            if (!opt_int(v, 2, 256, &args->classes))
                return opt_fail("eval", "--classes must be 2..256, not '%s'", v);
        } else if (!strcmp(a, "--connectivity")) {
            if (!opt_int(v, 1, 3, &conn))
                return opt_fail("eval", "--connectivity must be 1, 2 or 3");
        } else
            return opt_fail("eval", "unknown option %s (see 'diffcl eval --help')", a);
    }
    if (!args->pred_dir || !args->label_dir)
        return opt_fail("eval", "--pred and --label are required");
    args->mo.connectivity = conn;
    if (!strcmp(empty, "nan"))
        args->mo.empty_policy = DIFFCL_EMPTY_NAN;
    else if (!strcmp(empty, "diagonal"))
        args->mo.empty_policy = DIFFCL_EMPTY_DIAGONAL;
    else if (opt_double(empty, 0, 1e300, &args->mo.empty_value))
        args->mo.empty_policy = DIFFCL_EMPTY_VALUE;
    else
        return opt_fail("eval", "--empty must be nan, diagonal or a number >= 0, not '%s'", empty);
    if (!strcmp(both_empty, "one"))
        args->mo.both_empty = DIFFCL_BOTH_EMPTY_ONE;
    else if (!strcmp(both_empty, "nan"))
        args->mo.both_empty = DIFFCL_BOTH_EMPTY_NAN;
    else
        return opt_fail("eval", "--both-empty must be one or nan, not '%s'", both_empty);
    return TOOL_ARGS_RUN;
}
