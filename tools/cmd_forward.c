/* diffcl forward: run a V-Net (optionally with HF-Mamba) on a safetensors input, for users
 * checking a model against another implementation. Public API only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <diffcl/diffcl.h>
#include <diffcl/model.h>

#include "commands.h"
#include "options.h"

static void forward_usage(FILE *f)
{
    fprintf(f,
            "usage: diffcl forward --weights W.safetensors --input X.safetensors --output Y.safetensors\n"
            "                      [--model vnet|vnet-hfm] [--dims 3] [--in-channels 1] [--classes 2]\n"
            "                      [--n-filters 16] [--normalization batchnorm|instancenorm|groupnorm|none]\n"
            "                      [--train] [--threads N]\n\n"
            "Runs the model on the tensor named 'input' (N,C,[D,]H,W) of X and writes the logits as\n"
            "'output' to Y. Eval mode (running statistics, no dropout) unless --train.\n"
            "Defaults: --model vnet --dims 3 --in-channels 1 --classes 2 --n-filters 16\n"
            "          --normalization batchnorm --threads <usable CPUs>\n");
}

int cmd_forward(int argc, char **argv)
{
    const char *model = "vnet", *weights = NULL, *input = NULL, *output = NULL, *norm = "batchnorm";
    int dims = 3, in_ch = 1, classes = 2, filters = 16, train = 0, threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            forward_usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--train")) { train = 1; continue; }
        if (i + 1 >= argc) return opt_fail("forward", "option %s needs a value", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--weights")) weights = v;
        else if (!strcmp(a, "--input")) input = v;
        else if (!strcmp(a, "--output")) output = v;
        else if (!strcmp(a, "--normalization")) norm = v;
        else if (!strcmp(a, "--dims")) { if (!opt_int(v, 2, 3, &dims)) return opt_fail("forward", "--dims must be 2 or 3"); }
        else if (!strcmp(a, "--in-channels")) { if (!opt_int(v, 1, 4096, &in_ch)) return opt_fail("forward", "bad --in-channels %s", v); }
        else if (!strcmp(a, "--classes")) { if (!opt_int(v, 1, 4096, &classes)) return opt_fail("forward", "bad --classes %s", v); }
        else if (!strcmp(a, "--n-filters")) { if (!opt_int(v, 1, 4096, &filters)) return opt_fail("forward", "bad --n-filters %s", v); }
        else if (!strcmp(a, "--threads")) { if (!opt_int(v, 0, 1024, &threads)) return opt_fail("forward", "bad --threads %s", v); }
        else return opt_fail("forward", "unknown option %s (see 'diffcl forward --help')", a);
    }
    if (!weights || !input || !output)
        return opt_fail("forward", "--weights, --input and --output are required");
    diffcl_vnet_options vo = DIFFCL_VNET_OPTIONS_INIT;
    vo.dims = dims;
    vo.in_channels = in_ch;
    vo.n_classes = classes;
    vo.n_filters = filters;
    if (!strcmp(norm, "batchnorm")) vo.normalization = DIFFCL_NORM_BATCH;
    else if (!strcmp(norm, "instancenorm")) vo.normalization = DIFFCL_NORM_INSTANCE;
    else if (!strcmp(norm, "groupnorm")) vo.normalization = DIFFCL_NORM_GROUP;
    else if (!strcmp(norm, "none")) vo.normalization = DIFFCL_NORM_NONE;
    else return opt_fail("forward", "--normalization %s is not batchnorm|instancenorm|groupnorm|none", norm);
    if (!strcmp(model, "vnet-hfm")) vo.hf_mamba_levels = DIFFCL_HFM_DEFAULT_LEVELS;
    else if (strcmp(model, "vnet")) return opt_fail("forward", "--model %s is not vnet|vnet-hfm", model);
    vo.has_dropout = train; /* dropout only matters in training mode */

    diffcl_context_options co = DIFFCL_CONTEXT_OPTIONS_INIT;
    co.n_threads = threads;
    diffcl_context *ctx = NULL;
    diffcl_module *m = NULL;
    diffcl_tensor_dict *in = NULL, *out = NULL;
    diffcl_tensor *logits = NULL;
    diffcl_status s = tool_context_create(&co, &ctx);
    if (s == DIFFCL_OK) s = diffcl_vnet_create(ctx, &vo, &m);
    if (s == DIFFCL_OK) s = diffcl_module_load(m, weights, NULL);
    if (s == DIFFCL_OK) s = diffcl_safetensors_load(ctx, input, &in);
    diffcl_tensor *x = NULL;
    if (s == DIFFCL_OK) {
        diffcl_tensor *raw = diffcl_tensor_dict_get(in, "input");
        if (!raw) {
            fprintf(stderr, "diffcl forward: %s has no tensor named 'input'\n", input);
            s = DIFFCL_ERR_NOT_FOUND;
        } else {
            s = diffcl_tensor_to_dtype(raw, DIFFCL_F32, &x);
        }
    }
    if (s == DIFFCL_OK) {
        diffcl_module_train(m, train);
        int prev = diffcl_set_grad_enabled(ctx, 0);
        s = diffcl_vnet_forward(m, x, &logits, NULL);
        diffcl_set_grad_enabled(ctx, prev);
    }
    if (s == DIFFCL_OK) s = diffcl_tensor_dict_new(ctx, &out);
    if (s == DIFFCL_OK) s = diffcl_tensor_dict_set(out, "output", logits);
    if (s == DIFFCL_OK) s = diffcl_safetensors_save(out, output);
    int rc = 0;
    if (s != DIFFCL_OK) {
        if (s != DIFFCL_ERR_NOT_FOUND || diffcl_last_error()[0])
            fprintf(stderr, "diffcl forward: %s: %s\n", diffcl_status_string(s), diffcl_last_error());
        rc = 1;
    }
    diffcl_tensor_free(x);
    diffcl_tensor_free(logits);
    diffcl_tensor_dict_free(in);
    diffcl_tensor_dict_free(out);
    diffcl_module_free(m);
    diffcl_context_free(ctx);
    return rc;
}
