/* diffcl demo's arguments (args.h). */
#include <stdio.h>
#include <string.h>

#include "args.h"
#include "options.h"

static void demo_usage(FILE *f)
{
    fprintf(
        f,
        "usage: diffcl demo [--iters N] [--labeled N] [--seeds K] [--test-cases N] [--n-filters N]\n"
        "                   [--no-hfm] [--ddim-steps N] [--threads N] [--out DIR]\n\n"
        "Trains the supervised baseline and Diff-CL on the built-in 2-D phantom (a few labeled\n"
        "slices, the rest unlabeled), evaluates both on held-out phantom cases from another seed\n"
        "and prints Dice / Jaccard / HD95 / ASD (mean +- sample std over cases, over seeds with\n"
        "--seeds above 1). Overlays go to DIR.\n"
        "--ddim-steps sets the DDIM steps of the DS pseudo label in training (the speed /\n"
        "accuracy knob of the Diff-CL iteration; default the trainer's, 4).\n"
        "Defaults: --iters 300 --labeled 2 --seeds 1 --test-cases 20 --n-filters 16\n"
        "          --out demo-run --threads <usable CPUs>\n");
}

int demo_args_parse(int argc, char **argv, demo_args *args)
{
    demo_args dflt = {300, 2, 1, 0, 20, 16, 0, 0, "demo-run"};
    *args = dflt;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int iv;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            demo_usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--no-hfm")) {
            args->no_hfm = 1;
            continue;
        }
        if (i + 1 >= argc) return opt_fail("demo", "option %s needs a value", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--out"))
            args->out = v;
        else if (!strcmp(a, "--iters") && opt_int(v, 1, 100000000, &iv))
            args->iters = iv;
        else if (!strcmp(a, "--labeled") && opt_int(v, 1, 1000, &iv))
            args->labeled = iv;
        else if (!strcmp(a, "--seeds") && opt_int(v, 1, 100, &iv))
            args->seeds = iv;
        else if (!strcmp(a, "--test-cases") && opt_int(v, 1, 4096, &iv))
            args->test_cases = iv;
        else if (!strcmp(a, "--n-filters") && opt_int(v, 1, 1024, &iv))
            args->n_filters = iv;
        else if (!strcmp(a, "--threads") && opt_int(v, 0, 1024, &iv))
            args->threads = iv;
        else if (!strcmp(a, "--ddim-steps") && opt_int(v, 1, 1000, &iv))
            args->ddim_steps = iv;
        else
            return opt_fail("demo", "bad option %s %s (see 'diffcl demo --help')", a, v);
    }
    return TOOL_ARGS_RUN;
}
