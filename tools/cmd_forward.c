/* diffcl forward: run a V-Net (optionally with HF-Mamba) on a safetensors input, for users
 * checking a model against another implementation. Public API only. */
#include <stdio.h>

#include <diffcl/diffcl.h>
#include <diffcl/model.h>

#include "commands.h"
#include "args.h"

int cmd_forward(int argc, char **argv)
{
    forward_args args;
    int parsed = forward_args_parse(argc, argv, &args);
    if (parsed != TOOL_ARGS_RUN) return parsed;
    diffcl_vnet_options vo = args.vo;
    const char *weights = args.weights, *input = args.input, *output = args.output;
    int train = args.train, threads = args.threads;
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
            fprintf(stderr, "diffcl forward: %s: %s\n", diffcl_status_string(s),
                    diffcl_last_error());
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
