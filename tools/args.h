/* The argument parsers of `diffcl train`, `infer`, `eval`, `demo` and `forward`, kept apart from the commands that
 * run them so that each can be read at once and fuzzed alone (tests/fuzz/fuzz_args.c).
 *
 * A parser reads argv (argv[0] is the subcommand name) into its struct and touches nothing else:
 * no file is opened or stat'ed, no context is made. It returns TOOL_ARGS_RUN when the command
 * should run, or else the exit code to return at once: 0 after --help (usage on stdout), 2 after a
 * usage error (one line on stderr, via opt_fail). The strings in the struct point into argv.
 * Checks that need the file system (does the input exist, is a run already there) belong to the
 * command. */
#ifndef DIFFCL_TOOLS_ARGS_H
#define DIFFCL_TOOLS_ARGS_H

#include <stdint.h>

#include <diffcl/diffcl.h>

#define TOOL_ARGS_RUN (-1)

typedef struct train_args {
    diffcl_train_options o;
    const char *resume; /* --resume RUN_DIR, or NULL */
    int threads;        /* 0: the library's default */
    int overwrite;
    int64_t iters_override; /* --iters given with --resume; 0 otherwise */
    int folds, fold;        /* --folds K --fold k (folds.c); folds 0: no cross-validation */
    const char *splits;     /* --splits FILE; NULL: splits.json beside the run folder */
} train_args;

int train_args_parse(int argc, char **argv, train_args *a);

#define INFER_MAX_MODELS 16

typedef struct infer_args {
    const char *model_paths[INFER_MAX_MODELS]; /* --model, once per ensemble member */
    int n_models;
    const char *input, *output, *overlay_dir;
    const char *save_probs; /* --save-probs DIR, or NULL */
    const char *list;       /* --list FILE: only these case ids of an input folder */
    int reorient;           /* --reorient-ras */
    const char *normalize;  /* none|zscore|zscore-nonzero|minmax */
    int no_plan;            /* --no-plan: ignore the model's preprocessing plan */
    diffcl_net_options net;
    int64_t patch[3], stride[3]; /* given by --patch / --stride or --preset */
    int patch_given, stride_given;
    int threads, tta, gaussian, lcc, batch, quiet;
} infer_args;

int infer_args_parse(int argc, char **argv, infer_args *a);

typedef struct ensemble_args {
    const char *inputs[INFER_MAX_MODELS]; /* folders of saved probabilities */
    int n_inputs;
    const char *output, *save_probs;
} ensemble_args;

int ensemble_args_parse(int argc, char **argv, ensemble_args *a);

typedef struct eval_args {
    const char *pred_dir, *label_dir, *list, *csv, *json;
    int classes; /* 0: the largest label + 1 */
    int physical;
    diffcl_metric_options mo; /* connectivity and the two empty-mask policies */
    int nsd;                  /* --nsd-tol given */
    double nsd_tol;           /* its tolerance, mm */
    const char *splits;       /* --splits FILE: also a summary per cross-validation fold */
    const char *label_map;    /* --label-map MAP: for reference PNGs (diffcl_read_options) */
} eval_args;

int eval_args_parse(int argc, char **argv, eval_args *a);

typedef struct demo_args {
    int64_t iters;
    int labeled, seeds, threads, test_cases, n_filters, no_hfm;
    int ddim_steps; /* 0: the trainer's default (ddim_steps_train) */
    const char *out;
} demo_args;

int demo_args_parse(int argc, char **argv, demo_args *args);

typedef struct forward_args {
    diffcl_vnet_options vo; /* the model to build, from --model, --dims, ... --normalization */
    const char *weights, *input, *output;
    int train, threads;
} forward_args;

int forward_args_parse(int argc, char **argv, forward_args *args);

#endif
