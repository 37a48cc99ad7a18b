/* diffcl ensemble's arguments (args.h). */
#include <stdio.h>
#include <string.h>

#include <diffcl/diffcl.h>

#include "args.h"
#include "options.h"

static void ensemble_usage(FILE *f)
{
    fprintf(
        f, "usage: diffcl ensemble --input DIR1 DIR2 [DIR3 ...] --output DIR [--save-probs DIR]\n\n"
           "Averages the probabilities that 'diffcl infer --save-probs' wrote for the same cases\n"
           "(every <case>.nii.gz of DIR1 must be in each other DIR, with the same shape), and\n"
           "writes the argmax of the mean as <case>.nii.gz with the first folder's header, or as\n"
           "<case>.png when the probabilities are 2-D (z = 1). The mean of the softmaxes is what\n"
           "'diffcl infer' computes in one run when given several models.\n\n"
           "  --input DIR ...   2 to 16 folders of saved probabilities\n"
           "  --output DIR      the label maps (created if missing)\n"
           "  --save-probs DIR  also write the mean probabilities there\n");
}

int ensemble_args_parse(int argc, char **argv, ensemble_args *args)
{
    memset(args, 0, sizeof *args);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            ensemble_usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--input")) { /* every following argument up to the next option */
            while (i + 1 < argc && strncmp(argv[i + 1], "--", 2)) {
                if (args->n_inputs == INFER_MAX_MODELS)
                    return opt_fail("ensemble", "at most %d --input folders", INFER_MAX_MODELS);
                args->inputs[args->n_inputs++] = argv[++i];
            }
            continue;
        }
        if (i + 1 >= argc) return opt_fail("ensemble", "option %s needs a value", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--output"))
            args->output = v;
        else if (!strcmp(a, "--save-probs"))
            args->save_probs = v;
        else
            return opt_fail("ensemble", "unknown option %s (see 'diffcl ensemble --help')", a);
    }
    if (args->n_inputs < 2 || !args->output)
        return opt_fail("ensemble", "--input with at least 2 folders and --output are required");
    return TOOL_ARGS_RUN;
}
