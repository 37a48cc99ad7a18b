/* The networks of a trained Diff-CL pair as modules that segment: the CS, the DS (a seeded
 * DDIM sample from noise, conditioned on the image), or their ensemble (the mean of the two
 * softmaxes). diffcl_segment and diffcl_sliding_window run any of them, so the DS is evaluated
 * with the same windows, flips and post-processing as the CS. */
#include <stdlib.h>
#include <string.h>

#include "eval/eval_internal.h"
#include "layer/module_internal.h"
#include "model/diffusion_internal.h"
#include "model/model_internal.h"
#include "train/trainer_internal.h"

enum { STREAM_EVAL_DDIM = 0x54520005u }; /* x_T of the DS when it segments */

typedef struct pair_impl {
    diffcl_pair_net net;
    int steps;
    uint64_t seed;
    uint32_t windows; /* forward calls so far: each draws its own noise, in order */
} pair_impl;

void diffcl_net_options_init(diffcl_net_options *opts)
{
    if (!opts) return;
    diffcl_net_options d = DIFFCL_NET_OPTIONS_INIT;
    *opts = d;
}

static diffcl_status pair_forward(diffcl_module *m, const diffcl_tensor *x, diffcl_tensor **out)
{
    pair_impl *p = m->impl;
    diffcl_tensor *lc = NULL, *ld = NULL;
    diffcl_status s = DIFFCL_OK;
    if (p->net == DIFFCL_NET_ENSEMBLE)
        s = diffcl_module_forward(dc_module_get_child(m, "cs"), x, &lc);
    if (s == DIFFCL_OK) {
        diffcl_diffusion_sample_options so = DIFFCL_DIFFUSION_SAMPLE_OPTIONS_INIT;
        so.steps = p->steps;
        so.key = diffcl_rng_key_make(p->seed, STREAM_EVAL_DDIM, 0, p->windows++);
        s = diffcl_diffusion_sample(dc_module_get_child(m, "ds"), x, &so, &ld);
    }
    if (s == DIFFCL_OK && p->net == DIFFCL_NET_ENSEMBLE)
        s = dc_log_mean_softmax((const diffcl_tensor *const[]){lc, ld}, 2, out);
    else if (s == DIFFCL_OK)
        *out = diffcl_tensor_retain(ld);
    diffcl_tensor_free(lc);
    diffcl_tensor_free(ld);
    return s;
}

static const dc_module_vtable PAIR_VT = {"diffcl_pair", pair_forward, free};

/* The DS configuration: saved with it ("diffcl.ds_model"), or, in files written before, the
 * one the trainer built from its options (build_networks in trainer.c). */
static diffcl_status ds_config(diffcl_context *ctx, const diffcl_tensor_dict *d,
                               const diffcl_train_options *o, const diffcl_module *cs, char **cfg)
{
    const char *saved = diffcl_tensor_dict_get_meta(d, "diffcl.ds_model");
    *cfg = saved ? dc_strdup(saved) : NULL;
    if (saved) return *cfg ? DIFFCL_OK : DIFFCL_ERR_OUT_OF_MEMORY;
    diffcl_vnet_options vo = DIFFCL_VNET_OPTIONS_INIT;
    DC_TRY(diffcl_vnet_get_options(cs, &vo));
    diffcl_diffusion_options dop = DIFFCL_DIFFUSION_OPTIONS_INIT;
    dop.dims = o->dims;
    dop.in_channels = vo.in_channels;
    dop.n_classes = o->n_classes;
    dop.n_filters = o->ds_n_filters;
    dop.seed = o->seed + 1;
    diffcl_module *tmp = NULL;
    DC_TRY(diffcl_diffusion_create(ctx, &dop, &tmp));
    diffcl_status s = dc_model_encode(tmp, cfg);
    diffcl_module_free(tmp);
    return s;
}

/* The DS of a Diff-CL file (under "ds.") and the run's options. */
static diffcl_status load_ds(diffcl_context *ctx, const diffcl_tensor_dict *d, const char *path,
                             const diffcl_module *cs, diffcl_train_options *o, diffcl_module **ds)
{
    const char *json = diffcl_tensor_dict_get_meta(d, "diffcl.train_options");
    if (!json)
        return dc_error(DIFFCL_ERR_FORMAT,
                        "%s: no diffcl.train_options: not a model or checkpoint of a Diff-CL run",
                        path);
    char *strings[DC_TRAIN_OPTION_STRINGS] = {0};
    diffcl_status s = dc_train_options_from_json(json, o, strings, DC_TRAIN_OPTION_STRINGS);
    for (int i = 0; i < DC_TRAIN_OPTION_STRINGS; i++) free(strings[i]);
    if (s == DIFFCL_OK && o->method != DIFFCL_METHOD_DIFFCL)
        s = dc_error(DIFFCL_ERR_NOT_FOUND, "%s: a supervised run has no DS; use the CS", path);
    char *cfg = NULL;
    if (s == DIFFCL_OK) s = ds_config(ctx, d, o, cs, &cfg);
    if (s == DIFFCL_OK) s = dc_model_decode(ctx, d, cfg, "diffusion", "ds.", NULL, path, ds);
    free(cfg);
    return s;
}

diffcl_status diffcl_trainer_load_net(diffcl_context *ctx, const char *path,
                                      const diffcl_net_options *opts, diffcl_module **out)
{
    const char *fn = "diffcl_trainer_load_net";
    DC_CHECK_ARG(out, "%s: out is NULL", fn);
    *out = NULL;
    DC_CHECK_ARG(ctx && path, "%s: NULL argument", fn);
    diffcl_net_options no = DIFFCL_NET_OPTIONS_INIT;
    DC_TRY(dc_options_read(&no, sizeof no, opts, sizeof no, 0, fn));
    DC_CHECK_ARG(no.net >= DIFFCL_NET_CS && no.net <= DIFFCL_NET_ENSEMBLE,
                 "%s: net %d is not CS, DS or ENSEMBLE", fn, (int)no.net);
    DC_CHECK_ARG(no.ddim_steps >= 0 && no.ddim_steps <= 1000, "%s: ddim_steps %d not in [0, 1000]",
                 fn, no.ddim_steps);
    diffcl_tensor_dict *d = NULL;
    DC_TRY(diffcl_safetensors_load(ctx, path, &d));
    diffcl_module *cs = NULL, *ds = NULL, *pair = NULL;
    diffcl_train_options o;
    diffcl_status s = dc_model_from_dict(ctx, d, path, &cs);
    if (s == DIFFCL_OK && no.net != DIFFCL_NET_CS) s = load_ds(ctx, d, path, cs, &o, &ds);
    diffcl_tensor_dict_free(d);
    if (s == DIFFCL_OK && no.net == DIFFCL_NET_CS) {
        *out = cs;
        return DIFFCL_OK;
    }
    pair_impl *p = s == DIFFCL_OK ? dc_calloc_raw(1, sizeof *p) : NULL;
    if (s == DIFFCL_OK && !p) s = dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    if (s == DIFFCL_OK) {
        p->net = no.net;
        p->steps = no.ddim_steps > 0 ? no.ddim_steps : o.ddim_steps_eval;
        p->seed = no.seed ? no.seed : o.seed;
        pair = dc_module_new(ctx, &PAIR_VT, p);
        if (!pair) s = DIFFCL_ERR_OUT_OF_MEMORY;
        p = NULL; /* the module owns it (or freed it) */
    }
    if (s == DIFFCL_OK) s = dc_module_add_child(pair, "cs", cs), cs = NULL;
    if (s == DIFFCL_OK) s = dc_module_add_child(pair, "ds", ds), ds = NULL;
    free(p);
    diffcl_module_free(cs);
    diffcl_module_free(ds);
    if (s != DIFFCL_OK) {
        diffcl_module_free(pair);
        return s;
    }
    diffcl_module_train(pair, 0);
    *out = pair;
    return DIFFCL_OK;
}
