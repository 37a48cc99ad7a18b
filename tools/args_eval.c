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
        "usage: diffcl eval --pred DIR --label DIR [--list FILE] [--csv FILE] [--classes K]\n"
        "                   [--physical] [--connectivity 1|2|3] [--empty nan|diagonal|VALUE]\n\n"
        "Scores every case of --pred (files <id>.nii.gz, <id>.nii, <id>.png or <id>.h5; with\n"
        "--list only the ids listed) against the file of the same id in --label, per foreground\n"
        "class: Dice, Jaccard, 95%% Hausdorff distance, ASD (prediction -> reference) and ASSD,\n"
        "as medpy's dc, jc, hd95, asd, assd. Prints a table per case and the mean +- std over\n"
        "cases; --csv also writes them as CSV.\n\n"
        "  --classes K      number of classes incl. background (default: largest label + 1)\n"
        "  --physical       distances in the reference's voxel spacing (NIfTI pixdim) rather\n"
        "                   than in voxels (the benchmark papers report voxels)\n"
        "  --connectivity C surface connectivity (default 1, as medpy)\n"
        "  --empty E        distances when exactly one of the masks is empty: nan (default,\n"
        "                   left out of the means), diagonal (image diagonal) or a number.\n"
        "                   Both empty: Dice 1, distances 0. One empty: Dice 0.\n"
        "h5 files are read from their dataset 'label' (or 'pred').\n");
}

int eval_args_parse(int argc, char **argv, eval_args *args)
{
    memset(args, 0, sizeof *args);
    {
        diffcl_metric_options mo = DIFFCL_METRIC_OPTIONS_INIT;
        args->mo = mo;
    }
    const char *empty = "nan";
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
        else if (!strcmp(a, "--empty"))
            empty = v;
        else if (!strcmp(a, "--classes")) {
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
    return TOOL_ARGS_RUN;
}
