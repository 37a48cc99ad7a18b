/* Optimizer state export / import as a tensor dictionary (exact resume of a run). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optim/optim_internal.h"

static const char *kind_name(diffcl_optim_kind k)
{
    return k == DIFFCL_OPTIM_SGD ? "sgd" : k == DIFFCL_OPTIM_ADAM ? "adam" : "adamw";
}

/* Buffer names per slot for the optimizer's kind (NULL: slot unused). */
static const char *buf_name(diffcl_optim_kind k, int slot)
{
    static const char *const sgd[DC_OPT_NBUF] = {"momentum_buffer", NULL, NULL};
    static const char *const adam[DC_OPT_NBUF] = {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"};
    return k == DIFFCL_OPTIM_SGD ? sgd[slot] : adam[slot];
}

/* Group fields stored as 0-d F64 tensors, in this order. */
static const char *const FIELDS[] = {"lr",        "initial_lr", "weight_decay", "momentum",
                                     "dampening", "nesterov",   "beta1",        "beta2",
                                     "eps",       "amsgrad",    "maximize"};
#define N_FIELDS ((int)(sizeof FIELDS / sizeof FIELDS[0]))

static void group_to_fields(const dc_opt_group *g, double *v)
{
    const diffcl_param_group_options *o = &g->o;
    double f[N_FIELDS] = {o->lr,        g->initial_lr,       o->weight_decay,    o->momentum,
                          o->dampening, (double)o->nesterov, o->beta1,           o->beta2,
                          o->eps,       (double)o->amsgrad,  (double)o->maximize};
    memcpy(v, f, sizeof f);
}

static void fields_to_group(const double *v, diffcl_param_group_options *o, double *initial_lr)
{
    dc_opt_read_group(o, NULL);
    o->lr = v[0];
    *initial_lr = v[1];
    o->weight_decay = v[2];
    o->momentum = v[3];
    o->dampening = v[4];
    o->nesterov = v[5] != 0;
    o->beta1 = v[6];
    o->beta2 = v[7];
    o->eps = v[8];
    o->amsgrad = v[9] != 0;
    o->maximize = v[10] != 0;
}

static diffcl_status put_scalar(diffcl_context *ctx, diffcl_tensor_dict *d, const char *name,
                                double v)
{
    diffcl_tensor *t = dc_tensor_empty(ctx, DIFFCL_F64, 0, NULL);
    if (!t) return DIFFCL_ERR_OUT_OF_MEMORY;
    dc_f64(t)[0] = v;
    diffcl_status s = diffcl_tensor_dict_set(d, name, t);
    diffcl_tensor_free(t);
    return s;
}

diffcl_status diffcl_optimizer_state_dict(const diffcl_optimizer *opt, diffcl_tensor_dict **out)
{
    static const char *fn = "diffcl_optimizer_state_dict";
    DC_CHECK_ARG(out, "%s: out is NULL", fn);
    *out = NULL;
    DC_CHECK_ARG(opt, "%s: optimizer is NULL", fn);
    diffcl_tensor_dict *d = NULL;
    DC_TRY(diffcl_tensor_dict_new(opt->ctx, &d));
    char key[256];
    diffcl_status s = diffcl_tensor_dict_set_meta(d, "optimizer", kind_name(opt->kind));
    if (s == DIFFCL_OK) s = diffcl_tensor_dict_set_meta(d, "format", "diffcl-optimizer-1");
    if (s == DIFFCL_OK) s = put_scalar(opt->ctx, d, "steps", (double)opt->steps);
    for (int g = 0; g < opt->n_groups && s == DIFFCL_OK; g++) {
        const dc_opt_group *grp = &opt->groups[g];
        double v[N_FIELDS];
        group_to_fields(grp, v);
        for (int f = 0; f < N_FIELDS && s == DIFFCL_OK; f++) {
            snprintf(key, sizeof key, "param_groups.%d.%s", g, FIELDS[f]);
            s = put_scalar(opt->ctx, d, key, v[f]);
        }
        int64_t cnt = grp->count;
        diffcl_tensor *ids = s == DIFFCL_OK ? dc_tensor_empty(opt->ctx, DIFFCL_I64, 1, &cnt) : NULL;
        if (s == DIFFCL_OK && !ids) s = DIFFCL_ERR_OUT_OF_MEMORY;
        if (s == DIFFCL_OK) {
            for (int64_t k = 0; k < cnt; k++) ((int64_t *)dc_data(ids))[k] = grp->first + k;
            snprintf(key, sizeof key, "param_groups.%d.params", g);
            s = diffcl_tensor_dict_set(d, key, ids);
        }
        diffcl_tensor_free(ids);
    }
    for (int i = 0; i < opt->n_params && s == DIFFCL_OK; i++) {
        const dc_opt_param *pi = &opt->params[i];
        if (pi->name) {
            snprintf(key, sizeof key, "param.%d.name", i);
            s = diffcl_tensor_dict_set_meta(d, key, pi->name);
        }
        if (s == DIFFCL_OK && pi->step > 0) {
            snprintf(key, sizeof key, "state.%d.step", i);
            s = put_scalar(opt->ctx, d, key, (double)pi->step);
        }
        for (int b = 0; b < DC_OPT_NBUF && s == DIFFCL_OK; b++) {
            if (!pi->buf[b] || !buf_name(opt->kind, b)) continue;
            snprintf(key, sizeof key, "state.%d.%s", i, buf_name(opt->kind, b));
            s = diffcl_tensor_dict_set(d, key, pi->buf[b]);
        }
    }
    if (s != DIFFCL_OK) {
        diffcl_tensor_dict_free(d);
        return s;
    }
    *out = d;
    return DIFFCL_OK;
}

static diffcl_status get_scalar(const diffcl_tensor_dict *d, const char *key, double *v)
{
    const diffcl_tensor *t = diffcl_tensor_dict_get(d, key);
    if (!t)
        return dc_error(DIFFCL_ERR_NOT_FOUND,
                        "diffcl_optimizer_load_state_dict: entry %s is missing", key);
    if (dc_numel(t) != 1)
        return dc_error(DIFFCL_ERR_SHAPE,
                        "diffcl_optimizer_load_state_dict: %s has shape %s; need one value", key,
                        dc_shape_str(t));
    return diffcl_tensor_item(t, v);
}

/* The groups of @p dict, checked against this optimizer's (same parameters, valid options),
 * into ng[0..n_groups); the optimizer is not touched. */
static diffcl_status read_groups(const diffcl_optimizer *opt, const diffcl_tensor_dict *dict,
                                 dc_opt_group *ng, const char *fn)
{
    char key[256];
    diffcl_status s = DIFFCL_OK;
    for (int g = 0; g < opt->n_groups && s == DIFFCL_OK; g++) {
        const dc_opt_group *grp = &opt->groups[g];
        snprintf(key, sizeof key, "param_groups.%d.params", g);
        const diffcl_tensor *ids = diffcl_tensor_dict_get(dict, key);
        int ok = ids && ids->ndim == 1 && ids->shape[0] == grp->count;
        for (int64_t k = 0; ok && k < grp->count; k++) {
            double v = 0;
            diffcl_tensor_get(ids, &k, &v);
            ok = v == (double)(grp->first + k);
        }
        if (!ok) {
            s = dc_error(ids ? DIFFCL_ERR_STATE : DIFFCL_ERR_NOT_FOUND,
                         "%s: %s %s; this optimizer's group %d holds parameters %d..%d", fn, key,
                         ids ? "lists other parameters" : "is missing", g, grp->first,
                         grp->first + grp->count - 1);
            break;
        }
        double v[N_FIELDS];
        for (int f = 0; f < N_FIELDS && s == DIFFCL_OK; f++) {
            snprintf(key, sizeof key, "param_groups.%d.%s", g, FIELDS[f]);
            s = get_scalar(dict, key, &v[f]);
        }
        if (s != DIFFCL_OK) break;
        ng[g] = *grp;
        fields_to_group(v, &ng[g].o, &ng[g].initial_lr);
        s = dc_opt_check_group(fn, opt->kind, &ng[g].o);
    }
    return s;
}

/* Every state buffer of @p dict has its parameter's shape and a float type. */
static diffcl_status check_buffers(const diffcl_optimizer *opt, const diffcl_tensor_dict *dict,
                                   const char *fn)
{
    char key[256];
    diffcl_status s = DIFFCL_OK;
    for (int i = 0; i < opt->n_params && s == DIFFCL_OK; i++) {
        const diffcl_tensor *p = opt->params[i].p;
        for (int b = 0; b < DC_OPT_NBUF && s == DIFFCL_OK; b++) {
            if (!buf_name(opt->kind, b)) continue;
            snprintf(key, sizeof key, "state.%d.%s", i, buf_name(opt->kind, b));
            const diffcl_tensor *t = diffcl_tensor_dict_get(dict, key);
            if (t && (!dc_same_shape(t, p) || !dc_is_float(t->dtype))) {
                char ps[96];
                snprintf(ps, sizeof ps, "%s", dc_shape_str(p));
                s = dc_error(DIFFCL_ERR_SHAPE, "%s: %s is %s %s; parameter %d%s%s is %s", fn, key,
                             diffcl_dtype_name(t->dtype), dc_shape_str(t), i,
                             opt->params[i].name ? " " : "",
                             opt->params[i].name ? opt->params[i].name : "", ps);
            }
        }
    }
    return s;
}

diffcl_status diffcl_optimizer_load_state_dict(diffcl_optimizer *opt,
                                               const diffcl_tensor_dict *dict)
{
    static const char *fn = "diffcl_optimizer_load_state_dict";
    DC_CHECK_ARG(opt && dict, "%s: optimizer or dictionary is NULL", fn);
    const char *kind = diffcl_tensor_dict_get_meta(dict, "optimizer");
    if (!kind)
        return dc_error(DIFFCL_ERR_NOT_FOUND,
                        "%s: metadata \"optimizer\" is missing (not an optimizer state?)", fn);
    if (strcmp(kind, kind_name(opt->kind)))
        return dc_error(DIFFCL_ERR_STATE, "%s: the state is of a %s optimizer; this one is %s", fn,
                        kind, kind_name(opt->kind));
    char key[256];
    /* 1. validate everything before touching the optimizer */
    snprintf(key, sizeof key, "param_groups.%d.params", opt->n_groups);
    if (diffcl_tensor_dict_get(dict, key))
        return dc_error(DIFFCL_ERR_STATE, "%s: the state has more than this optimizer's %d groups",
                        fn, opt->n_groups);
    dc_opt_group *ng = dc_malloc((size_t)(opt->n_groups ? opt->n_groups : 1) * sizeof *ng);
    if (!ng) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    diffcl_status s = read_groups(opt, dict, ng, fn);
    double steps = 0;
    if (s == DIFFCL_OK && diffcl_tensor_dict_get(dict, "steps"))
        s = get_scalar(dict, "steps", &steps);
    DC_STEP(check_buffers(opt, dict, fn));
    /* 2. allocate the buffers that will be needed, still without changing anything */
    diffcl_tensor **fresh =
        s == DIFFCL_OK ? dc_calloc_raw((size_t)(opt->n_params ? opt->n_params : 1) * DC_OPT_NBUF,
                                       sizeof *fresh)
                       : NULL;
    if (s == DIFFCL_OK && !fresh) s = dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    for (int i = 0; i < opt->n_params && s == DIFFCL_OK; i++) {
        const diffcl_tensor *p = opt->params[i].p;
        for (int b = 0; b < DC_OPT_NBUF && s == DIFFCL_OK; b++) {
            if (!buf_name(opt->kind, b)) continue;
            snprintf(key, sizeof key, "state.%d.%s", i, buf_name(opt->kind, b));
            const diffcl_tensor *t = diffcl_tensor_dict_get(dict, key);
            if (!t) continue;
            diffcl_tensor *nb = dc_tensor_empty(p->ctx, p->dtype, p->ndim, p->shape);
            if (!nb) {
                s = DIFFCL_ERR_OUT_OF_MEMORY;
                break;
            }
            dc_copy_into(nb, t); /* a copy even when t is our own live buffer */
            fresh[i * DC_OPT_NBUF + b] = nb;
        }
    }
    double *psteps =
        s == DIFFCL_OK ? dc_calloc_raw((size_t)(opt->n_params ? opt->n_params : 1), sizeof *psteps)
                       : NULL;
    if (s == DIFFCL_OK && !psteps) s = dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    for (int i = 0; i < opt->n_params && s == DIFFCL_OK; i++) {
        snprintf(key, sizeof key, "state.%d.step", i);
        if (diffcl_tensor_dict_get(dict, key)) s = get_scalar(dict, key, &psteps[i]);
    }
    if (s != DIFFCL_OK) {
        if (fresh)
            for (int k = 0; k < opt->n_params * DC_OPT_NBUF; k++) diffcl_tensor_free(fresh[k]);
        free(fresh);
        free(psteps);
        free(ng);
        return s;
    }
    /* 3. commit */
    memcpy(opt->groups, ng, (size_t)opt->n_groups * sizeof *ng);
    for (int i = 0; i < opt->n_params; i++) {
        dc_opt_param *pi = &opt->params[i];
        pi->step = (int64_t)psteps[i];
        for (int b = 0; b < DC_OPT_NBUF; b++) {
            diffcl_tensor_free(pi->buf[b]);
            pi->buf[b] = fresh[i * DC_OPT_NBUF + b];
        }
    }
    opt->steps = (int64_t)steps;
    free(fresh);
    free(psteps);
    free(ng);
    return DIFFCL_OK;
}
