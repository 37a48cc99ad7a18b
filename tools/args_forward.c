/* diffcl forward's arguments (args.h). */
#include <stdio.h>
#include <string.h>

#include "args.h"
#include "options.h"

static void forward_usage(FILE *f)
{
    fprintf(
        f,
        "usage: diffcl forward --weights W.safetensors --input X.safetensors --output Y.safetensors\n"
        "                      [--model vnet|vnet-hfm] [--dims 3] [--in-channels 1] [--classes 2]\n"
        "                      [--n-filters 16] [--normalization batchnorm|instancenorm|groupnorm|none]\n"
        "                      [--train] [--threads N]\n\n"
        "Runs the model on the tensor named 'input' (N,C,[D,]H,W) of X and writes the logits as\n"
        "'output' to Y. Eval mode (running statistics, no dropout) unless --train.\n"
        "Defaults: --model vnet --dims 3 --in-channels 1 --classes 2 --n-filters 16\n"
        "          --normalization batchnorm --threads <usable CPUs>\n");
}

int forward_args_parse(int argc, char **argv, forward_args *args)
{
    memset(args, 0, sizeof *args);
    const char *model = "vnet", *weights = NULL, *input = NULL, *output = NULL, *norm = "batchnorm";
    int dims = 3, in_ch = 1, classes = 2, filters = 16, train = 0, threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            forward_usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--train")) {
            train = 1;
            continue;
        }
        if (i + 1 >= argc) return opt_fail("forward", "option %s needs a value", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--model"))
            model = v;
        else if (!strcmp(a, "--weights"))
            weights = v;
        else if (!strcmp(a, "--input"))
            input = v;
        else if (!strcmp(a, "--output"))
            output = v;
        else if (!strcmp(a, "--normalization"))
            norm = v;
        else if (!strcmp(a, "--dims")) {
            if (!opt_int(v, 2, 3, &dims)) return opt_fail("forward", "--dims must be 2 or 3");
        } else if (!strcmp(a, "--in-channels")) {
            if (!opt_int(v, 1, 4096, &in_ch)) return opt_fail("forward", "bad --in-channels %s", v);
        } else if (!strcmp(a, "--classes")) {
            if (!opt_int(v, 1, 4096, &classes)) return opt_fail("forward", "bad --classes %s", v);
        } else if (!strcmp(a, "--n-filters")) {
            if (!opt_int(v, 1, 4096, &filters)) return opt_fail("forward", "bad --n-filters %s", v);
        } else if (!strcmp(a, "--threads")) {
            if (!opt_int(v, 0, 1024, &threads)) return opt_fail("forward", "bad --threads %s", v);
        } else
            return opt_fail("forward", "unknown option %s (see 'diffcl forward --help')", a);
    }
    if (!weights || !input || !output)
        return opt_fail("forward", "--weights, --input and --output are required");
    diffcl_vnet_options vo;
    diffcl_vnet_options_init(&vo);
    vo.dims = dims;
    vo.in_channels = in_ch;
    vo.n_classes = classes;
    vo.n_filters = filters;
    if (!strcmp(norm, "batchnorm"))
        vo.normalization = DIFFCL_NORM_BATCH;
    else if (!strcmp(norm, "instancenorm"))
        vo.normalization = DIFFCL_NORM_INSTANCE;
    else if (!strcmp(norm, "groupnorm"))
        vo.normalization = DIFFCL_NORM_GROUP;
    else if (!strcmp(norm, "none"))
        vo.normalization = DIFFCL_NORM_NONE;
    else
        return opt_fail("forward",
                        "--normalization %s is not batchnorm|instancenorm|groupnorm|none", norm);
    if (!strcmp(model, "vnet-hfm"))
        vo.hf_mamba_levels = DIFFCL_HFM_DEFAULT_LEVELS;
    else if (strcmp(model, "vnet"))
        return opt_fail("forward", "--model %s is not vnet|vnet-hfm", model);
    vo.has_dropout = train; /* dropout only matters in training mode */
    args->vo = vo;
    args->weights = weights;
    args->input = input;
    args->output = output;
    args->train = train;
    args->threads = threads;

    return TOOL_ARGS_RUN;
}
