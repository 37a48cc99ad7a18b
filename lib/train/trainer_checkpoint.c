/* Trainer checkpoints: both networks, optimizer, memory bank, counters and the options,
 * in one safetensors file written atomically; and resuming from it. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "model/diffusion_internal.h"
#include "model/model_internal.h"
#include "train/trainer_internal.h"

char *dc_train_options_to_json(const diffcl_train_options *o)
{
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
#define S(f) (o->f ? cJSON_AddStringToObject(j, #f, o->f) : cJSON_AddNullToObject(j, #f))
#define N(f) cJSON_AddNumberToObject(j, #f, (double)o->f)
    S(layout);
    S(data_dir);
    S(train_list);
    S(val_list);
    S(labeled_list);
    S(out_dir);
    N(dims);
    N(labeled);
    N(patch[0]);
    N(patch[1]);
    N(patch[2]);
    N(batch_labeled);
    N(batch_unlabeled);
    N(phantom_cases);
    N(method);
    N(iters);
    N(n_classes);
    N(n_filters);
    N(ds_n_filters);
    N(hfm_levels);
    N(lr);
    N(momentum);
    N(weight_decay);
    N(warmup_frac);
    N(rampup_frac);
    N(mu1);
    N(mu2);
    N(eta);
    N(tau);
    N(bank_momentum);
    N(contrast_voxels);
    N(ddim_steps_train);
    N(ddim_steps_eval);
    N(val_every);
    N(log_every);
    N(strong_unlabeled);
    N(pseudo_mask_dice);
    N(cps_variant);
    N(cps_confidence);
    N(ds_pseudo_train_mode);
    N(contrast_balanced);
    N(weak_strong);
    N(hfm_border);
    S(init_weights);
    N(fg_prob);
    N(png_color);
    S(label_map);
    N(plan);
    N(plan_ct_channels);
    N(plan_interp);
    N(reorient_ras);
#undef S
#undef N
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)o->seed); /* 64-bit exact */
    cJSON_AddStringToObject(j, "seed", seed);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

diffcl_status dc_train_options_from_json(const char *json, diffcl_train_options *o, char **strings,
                                         int n_strings)
{
    cJSON *j = cJSON_Parse(json);
    if (!j) return dc_error(DIFFCL_ERR_FORMAT, "trainer options are not valid JSON");
    diffcl_train_options d = DIFFCL_TRAIN_OPTIONS_INIT;
    *o = d;
    diffcl_status s = DIFFCL_OK;
    int k = 0;
#define S(f)                                                                                       \
    do {                                                                                           \
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, #f);                                  \
        o->f = NULL;                                                                               \
        if (cJSON_IsString(x) && k < n_strings) o->f = strings[k] = dc_strdup(x->valuestring);     \
        k++;                                                                                       \
    } while (0)
#define N(f, T)                                                                                    \
    do {                                                                                           \
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, #f);                                  \
        if (cJSON_IsNumber(x))                                                                     \
            o->f = (T)x->valuedouble;                                                              \
        else                                                                                       \
            s = dc_error(DIFFCL_ERR_FORMAT, "trainer options: field %s missing", #f);              \
    } while (0)
    S(layout);
    S(data_dir);
    S(train_list);
    S(val_list);
    S(labeled_list);
    S(out_dir);
    N(dims, int);
    N(labeled, int);
    N(patch[0], int64_t);
    N(patch[1], int64_t);
    N(patch[2], int64_t);
    N(batch_labeled, int);
    N(batch_unlabeled, int);
    N(phantom_cases, int);
    N(method, diffcl_method);
    N(iters, int64_t);
    N(n_classes, int);
    N(n_filters, int);
    N(ds_n_filters, int);
    N(hfm_levels, unsigned);
    N(lr, double);
    N(momentum, double);
    N(weight_decay, double);
    N(warmup_frac, double);
    N(rampup_frac, double);
    N(mu1, double);
    N(mu2, double);
    N(eta, double);
    N(tau, double);
    N(bank_momentum, double);
    N(contrast_voxels, int);
    N(ddim_steps_train, int);
    N(ddim_steps_eval, int);
    N(val_every, int64_t);
    N(log_every, int64_t);
    N(strong_unlabeled, int);
    N(pseudo_mask_dice, int);
    /* added in 0.2: a checkpoint without them was written by a trainer that behaved as these values */
#define N_SINCE_0_2(f, T, before)                                                                  \
    do {                                                                                           \
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, #f);                                  \
        o->f = cJSON_IsNumber(x) ? (T)x->valuedouble : (before);                                   \
    } while (0)
    N_SINCE_0_2(cps_variant, diffcl_cps_variant, DIFFCL_CPS_AGREEMENT);
    N_SINCE_0_2(cps_confidence, double, 0.0);
    N_SINCE_0_2(ds_pseudo_train_mode, int, 1);
    N_SINCE_0_2(contrast_balanced, int, 0);
    N_SINCE_0_2(weak_strong, int, 0);
    N_SINCE_0_2(hfm_border, int, 0);
    S(init_weights); /* 0.2; absent (NULL) before */
    N_SINCE_0_2(fg_prob, double, 0.0);
    N_SINCE_0_2(png_color, int, DIFFCL_PNG_COLOR_L);
    S(label_map); /* 0.2; absent (NULL) before */
    N_SINCE_0_2(plan, int, 0);
    N_SINCE_0_2(plan_ct_channels, unsigned, 0u);
    N_SINCE_0_2(plan_interp, int, 0);
    N_SINCE_0_2(reorient_ras, int, 0);
#undef N_SINCE_0_2
#undef S
#undef N
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(j, "seed");
    if (cJSON_IsString(seed))
        o->seed = strtoull(seed->valuestring, NULL, 10);
    else
        s = dc_error(DIFFCL_ERR_FORMAT, "trainer options: field seed missing");
    cJSON_Delete(j);
    return s;
}

/* Add every entry and metadata item of `src` to `dst` under `prefix`. */
static diffcl_status merge(diffcl_tensor_dict *dst, const diffcl_tensor_dict *src,
                           const char *prefix)
{
    char key[512];
    for (int i = 0; i < diffcl_tensor_dict_size(src); i++) {
        snprintf(key, sizeof key, "%s%s", prefix, diffcl_tensor_dict_name(src, i));
        DC_TRY(diffcl_tensor_dict_set(dst, key, diffcl_tensor_dict_at(src, i)));
    }
    for (int i = 0; i < diffcl_tensor_dict_meta_count(src); i++) {
        const char *k = diffcl_tensor_dict_meta_key(src, i);
        snprintf(key, sizeof key, "%s%s", prefix, k);
        DC_TRY(diffcl_tensor_dict_set_meta(dst, key, diffcl_tensor_dict_get_meta(src, k)));
    }
    return DIFFCL_OK;
}

/* Entries of `src` under `prefix`, prefix stripped (references, no copies). */
static diffcl_status extract(diffcl_context *ctx, const diffcl_tensor_dict *src, const char *prefix,
                             diffcl_tensor_dict **out)
{
    DC_TRY(diffcl_tensor_dict_new(ctx, out));
    size_t n = strlen(prefix);
    for (int i = 0; i < diffcl_tensor_dict_size(src); i++) {
        const char *name = diffcl_tensor_dict_name(src, i);
        if (strncmp(name, prefix, n)) continue;
        DC_TRY(diffcl_tensor_dict_set(*out, name + n, diffcl_tensor_dict_at(src, i)));
    }
    for (int i = 0; i < diffcl_tensor_dict_meta_count(src); i++) {
        const char *k = diffcl_tensor_dict_meta_key(src, i);
        if (strncmp(k, prefix, n)) continue;
        DC_TRY(diffcl_tensor_dict_set_meta(*out, k + n, diffcl_tensor_dict_get_meta(src, k)));
    }
    return DIFFCL_OK;
}

static diffcl_tensor *scalar_f64(diffcl_context *ctx, double v)
{
    diffcl_tensor *t = dc_tensor_empty(ctx, DIFFCL_F64, 0, NULL);
    if (t) *dc_f64(t) = v;
    return t;
}

diffcl_status dc_trainer_add_networks(const diffcl_trainer *tr, diffcl_tensor_dict *all,
                                      const char *cs_prefix)
{
    diffcl_tensor_dict *part = NULL;
    diffcl_status s = diffcl_module_state_dict(tr->cs, &part);
    if (s == DIFFCL_OK) s = merge(all, part, cs_prefix);
    diffcl_tensor_dict_free(part);
    part = NULL;
    if (s == DIFFCL_OK && tr->ds) {
        s = diffcl_module_state_dict(tr->ds, &part);
        if (s == DIFFCL_OK) s = merge(all, part, "ds.");
        diffcl_tensor_dict_free(part);
    }
    /* the configurations, so diffcl_model_load() reads the CS and diffcl_trainer_load_net() the DS */
    char *opts = s == DIFFCL_OK ? dc_train_options_to_json(&tr->o) : NULL, *cfg = NULL,
         *ds_cfg = NULL;
    if (s == DIFFCL_OK && !opts) s = dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "saving: out of memory");
    if (s == DIFFCL_OK) s = dc_model_encode(tr->cs, &cfg);
    if (s == DIFFCL_OK && tr->ds) s = dc_model_encode(tr->ds, &ds_cfg);
    if (s == DIFFCL_OK) s = diffcl_tensor_dict_set_meta(all, "diffcl.train_options", opts);
    if (s == DIFFCL_OK) s = diffcl_tensor_dict_set_meta(all, "diffcl.model", cfg);
    if (s == DIFFCL_OK && *cs_prefix)
        s = diffcl_tensor_dict_set_meta(all, "diffcl.model_prefix", cs_prefix);
    if (s == DIFFCL_OK && ds_cfg) s = diffcl_tensor_dict_set_meta(all, "diffcl.ds_model", ds_cfg);
    if (s == DIFFCL_OK && tr->plan) { /* the preprocessing plan, for diffcl_plan_load() */
        char *plan = NULL;
        s = diffcl_plan_to_json(tr->plan, &plan);
        if (s == DIFFCL_OK) s = diffcl_tensor_dict_set_meta(all, "diffcl.plan", plan);
        diffcl_plan_string_free(plan);
    }
    free(opts);
    free(cfg);
    free(ds_cfg);
    return s;
}

diffcl_status diffcl_trainer_save(const diffcl_trainer *tr, const char *path)
{
    DC_CHECK_ARG(tr && path, "diffcl_trainer_save: NULL argument");
    diffcl_tensor_dict *all = NULL, *part = NULL;
    diffcl_status s = diffcl_tensor_dict_new(tr->ctx, &all);
    if (s == DIFFCL_OK) s = dc_trainer_add_networks(tr, all, "cs.");
    if (s == DIFFCL_OK) s = diffcl_optimizer_state_dict(tr->opt, &part);
    if (s == DIFFCL_OK) s = merge(all, part, "optim.");
    diffcl_tensor_dict_free(part);
    diffcl_tensor *it = s == DIFFCL_OK ? scalar_f64(tr->ctx, (double)tr->it) : NULL;
    diffcl_tensor *best = it ? scalar_f64(tr->ctx, tr->best_dice) : NULL;
    diffcl_tensor *best_it = best ? scalar_f64(tr->ctx, (double)tr->best_it) : NULL;
    if (s == DIFFCL_OK && !best_it) s = DIFFCL_ERR_OUT_OF_MEMORY;
    if (s == DIFFCL_OK) s = diffcl_tensor_dict_set(all, "trainer.iteration", it);
    if (s == DIFFCL_OK) s = diffcl_tensor_dict_set(all, "trainer.best_dice", best);
    if (s == DIFFCL_OK) s = diffcl_tensor_dict_set(all, "trainer.best_iteration", best_it);
    if (s == DIFFCL_OK && tr->bank) s = diffcl_tensor_dict_set(all, "trainer.bank", tr->bank);
    diffcl_tensor_free(it);
    diffcl_tensor_free(best);
    diffcl_tensor_free(best_it);
    if (s == DIFFCL_OK)
        s = diffcl_tensor_dict_set_meta(all, "diffcl.version", DIFFCL_VERSION_STRING);
    if (s == DIFFCL_OK) s = diffcl_safetensors_save(all, path);
    diffcl_tensor_dict_free(all);
    return s;
}

static double dict_scalar(const diffcl_tensor_dict *d, const char *name, double dflt)
{
    diffcl_tensor *t = diffcl_tensor_dict_get(d, name);
    double v = dflt;
    if (t && dc_numel(t) == 1) diffcl_tensor_item(t, &v);
    return v;
}

diffcl_status diffcl_trainer_resume(diffcl_context *ctx, const char *run_dir, int64_t iters,
                                    diffcl_trainer **out)
{
    DC_CHECK_ARG(out, "diffcl_trainer_resume: out is NULL");
    *out = NULL;
    DC_CHECK_ARG(ctx && run_dir, "diffcl_trainer_resume: NULL argument");
    char path[4096];
    snprintf(path, sizeof path, "%s/last.safetensors", run_dir);
    struct stat st;
    if (stat(run_dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return dc_error(DIFFCL_ERR_IO, "resuming %s: no such folder", run_dir);
    if (stat(path, &st) != 0 && errno == ENOENT) /* killed before its first checkpoint */
        return dc_error(DIFFCL_ERR_IO,
                        "resuming %s: no checkpoint (%s does not exist): a run stopped before "
                        "its first checkpoint cannot be resumed; start it again",
                        run_dir, path);
    diffcl_tensor_dict *d = NULL;
    DC_TRY(diffcl_safetensors_load(ctx, path, &d));
    const char *json = diffcl_tensor_dict_get_meta(d, "diffcl.train_options");
    char *strings[DC_TRAIN_OPTION_STRINGS] = {0};
    diffcl_train_options o;
    diffcl_status s =
        json ? dc_train_options_from_json(json, &o, strings, DC_TRAIN_OPTION_STRINGS)
             : dc_error(DIFFCL_ERR_FORMAT,
                        "%s is not a trainer checkpoint (no diffcl.train_options)", path);
    diffcl_trainer *tr = NULL;
    if (s == DIFFCL_OK) {
        o.out_dir = run_dir; /* the folder may have moved */
        if (iters > 0) o.iters = iters;
        /* the CS comes from the checkpoint: its init_weights (kept as a record) are not read */
        s = dc_trainer_create(ctx, &o, 0, &tr);
    }
    for (int i = 0; i < DC_TRAIN_OPTION_STRINGS; i++) free(strings[i]);
    diffcl_tensor_dict *part = NULL;
    diffcl_load_options lo = DIFFCL_LOAD_OPTIONS_INIT;
    if (s == DIFFCL_OK) s = extract(ctx, d, "cs.", &part);
    if (s == DIFFCL_OK) s = diffcl_module_load_state_dict(tr->cs, part, &lo, NULL, NULL);
    diffcl_tensor_dict_free(part);
    part = NULL;
    if (s == DIFFCL_OK && tr->ds) {
        s = extract(ctx, d, "ds.", &part);
        if (s == DIFFCL_OK) s = diffcl_module_load_state_dict(tr->ds, part, &lo, NULL, NULL);
        diffcl_tensor_dict_free(part);
        part = NULL;
    }
    if (s == DIFFCL_OK) s = extract(ctx, d, "optim.", &part);
    if (s == DIFFCL_OK) s = diffcl_optimizer_load_state_dict(tr->opt, part);
    diffcl_tensor_dict_free(part);
    if (s == DIFFCL_OK && tr->bank) {
        diffcl_tensor *b = diffcl_tensor_dict_get(d, "trainer.bank");
        if (!b || !dc_same_shape(b, tr->bank))
            s = dc_error(DIFFCL_ERR_FORMAT, "%s: trainer.bank missing or of the wrong shape", path);
        else
            dc_copy_into(tr->bank, b);
    }
    if (s == DIFFCL_OK) {
        tr->it = (int64_t)dict_scalar(d, "trainer.iteration", 0);
        tr->best_dice = dict_scalar(d, "trainer.best_dice", NAN);
        tr->best_it = (int64_t)dict_scalar(d, "trainer.best_iteration", -1);
    }
    diffcl_tensor_dict_free(d);
    if (s != DIFFCL_OK) {
        dc_error_prefix("resuming %s", run_dir);
        diffcl_trainer_free(tr);
        return s;
    }
    *out = tr;
    return DIFFCL_OK;
}
