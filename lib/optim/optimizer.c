/* The optimizer handle: parameter groups, options, learning rates, step and zero_grad. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layer/module_internal.h"
#include "optim/optim_internal.h"

void diffcl_param_group_options_init(diffcl_param_group_options *opts)
{
    if (!opts) return;
    diffcl_param_group_options d = DIFFCL_PARAM_GROUP_OPTIONS_INIT;
    *opts = d;
}

void dc_opt_read_group(diffcl_param_group_options *dst, const diffcl_param_group_options *src)
{
    diffcl_param_group_options d = DIFFCL_PARAM_GROUP_OPTIONS_INIT;
    *dst = d;
    (void)dc_options_read(dst, sizeof *dst, src, 0, 1, "diffcl_param_group"); /* cannot fail */
}

diffcl_status dc_opt_check_group(const char *fn, diffcl_optim_kind kind,
                                 const diffcl_param_group_options *o)
{
    if (!(o->lr >= 0) || !isfinite(o->lr))
        return dc_error(DIFFCL_ERR_INVALID_ARGUMENT, "%s: lr is %g; need a finite value >= 0", fn,
                        o->lr);
    if (!(o->weight_decay >= 0) || !isfinite(o->weight_decay))
        return dc_error(DIFFCL_ERR_INVALID_ARGUMENT, "%s: weight_decay is %g; need >= 0", fn,
                        o->weight_decay);
    if (kind == DIFFCL_OPTIM_SGD) {
        if (!(o->momentum >= 0) || !isfinite(o->momentum))
            return dc_error(DIFFCL_ERR_INVALID_ARGUMENT, "%s: momentum is %g; need >= 0", fn,
                            o->momentum);
        if (!isfinite(o->dampening))
            return dc_error(DIFFCL_ERR_INVALID_ARGUMENT, "%s: dampening is %g", fn, o->dampening);
        if (o->nesterov && (o->momentum <= 0 || o->dampening != 0))
            return dc_error(DIFFCL_ERR_INVALID_ARGUMENT,
                            "%s: Nesterov momentum requires a momentum > 0 and zero dampening "
                            "(momentum %g, dampening %g)",
                            fn, o->momentum, o->dampening);
    } else {
        if (!(o->beta1 >= 0 && o->beta1 < 1) || !(o->beta2 >= 0 && o->beta2 < 1))
            return dc_error(DIFFCL_ERR_INVALID_ARGUMENT, "%s: betas are (%g, %g); need [0,1)", fn,
                            o->beta1, o->beta2);
        if (!(o->eps >= 0) || !isfinite(o->eps))
            return dc_error(DIFFCL_ERR_INVALID_ARGUMENT, "%s: eps is %g; need >= 0", fn, o->eps);
    }
    return DIFFCL_OK;
}

diffcl_status diffcl_optimizer_create(diffcl_context *ctx, diffcl_optim_kind kind,
                                      diffcl_optimizer **out)
{
    DC_CHECK_ARG(out, "diffcl_optimizer_create: out is NULL");
    *out = NULL;
    DC_CHECK_ARG(ctx, "diffcl_optimizer_create: context is NULL");
    DC_CHECK_ARG(kind == DIFFCL_OPTIM_SGD || kind == DIFFCL_OPTIM_ADAM ||
                     kind == DIFFCL_OPTIM_ADAMW,
                 "diffcl_optimizer_create: unknown optimizer kind %d", (int)kind);
    diffcl_optimizer *o = dc_calloc_raw(1, sizeof *o);
    if (!o) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "diffcl_optimizer_create: out of memory");
    o->ctx = ctx;
    o->kind = kind;
    *out = o;
    return DIFFCL_OK;
}

void diffcl_optimizer_free(diffcl_optimizer *opt)
{
    if (!opt) return;
    for (int i = 0; i < opt->n_params; i++) {
        dc_opt_param *p = &opt->params[i];
        diffcl_tensor_free(p->p);
        free(p->name);
        for (int b = 0; b < DC_OPT_NBUF; b++) diffcl_tensor_free(p->buf[b]);
    }
    free(opt->params);
    free(opt->groups);
    free(opt);
}

diffcl_optim_kind diffcl_optimizer_kind(const diffcl_optimizer *opt)
{
    return opt ? opt->kind : DIFFCL_OPTIM_SGD;
}

diffcl_status diffcl_optimizer_add_group(diffcl_optimizer *opt, diffcl_tensor *const *params,
                                         int n_params, const char *const *names,
                                         const diffcl_param_group_options *opts, int *group_index)
{
    static const char *fn = "diffcl_optimizer_add_group";
    DC_CHECK_ARG(opt, "%s: optimizer is NULL", fn);
    DC_CHECK_ARG(n_params >= 0 && (params || n_params == 0), "%s: need %d parameters", fn,
                 n_params);
    diffcl_param_group_options o;
    dc_opt_read_group(&o, opts);
    DC_TRY(dc_opt_check_group(fn, opt->kind, &o));
    for (int k = 0; k < n_params; k++) {
        const diffcl_tensor *t = params[k];
        const char *nm = names && names[k] ? names[k] : "(unnamed)";
        if (!t) return dc_error(DIFFCL_ERR_INVALID_ARGUMENT, "%s: parameter %d is NULL", fn, k);
        if (!dc_is_float(t->dtype))
            return dc_error(DIFFCL_ERR_DTYPE, "%s: parameter %d %s is %s; need f32 or f64", fn, k,
                            nm, diffcl_dtype_name(t->dtype));
        if (t->node)
            return dc_error(DIFFCL_ERR_INVALID_ARGUMENT, "%s: parameter %d %s is not a leaf tensor",
                            fn, k, nm);
        if (!dc_is_contiguous(t))
            return dc_error(DIFFCL_ERR_INVALID_ARGUMENT, "%s: parameter %d %s is not contiguous",
                            fn, k, nm);
        if (t->ctx != opt->ctx)
            return dc_error(DIFFCL_ERR_INVALID_ARGUMENT,
                            "%s: parameter %d %s belongs to another context", fn, k, nm);
        for (int i = 0; i < opt->n_params; i++)
            if (opt->params[i].p == t)
                return dc_error(DIFFCL_ERR_INVALID_ARGUMENT,
                                "%s: parameter %d %s is already in group %d", fn, k, nm,
                                opt->params[i].group);
        for (int j = 0; j < k; j++)
            if (params[j] == t)
                return dc_error(DIFFCL_ERR_INVALID_ARGUMENT, "%s: parameter %d %s is listed twice",
                                fn, k, nm);
    }
    if (opt->n_groups == opt->cap_groups) {
        int cap = opt->cap_groups ? 2 * opt->cap_groups : 4;
        dc_opt_group *g = dc_realloc(opt->groups, (size_t)cap * sizeof *g);
        if (!g) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
        opt->groups = g;
        opt->cap_groups = cap;
    }
    if (opt->n_params + n_params > opt->cap_params) {
        int cap = opt->cap_params ? opt->cap_params : 16;
        while (cap < opt->n_params + n_params) cap *= 2;
        dc_opt_param *p = dc_realloc(opt->params, (size_t)cap * sizeof *p);
        if (!p) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
        opt->params = p;
        opt->cap_params = cap;
    }
    int gi = opt->n_groups;
    for (int k = 0; k < n_params; k++) {
        dc_opt_param *p = &opt->params[opt->n_params + k];
        memset(p, 0, sizeof *p);
        p->group = gi;
        if (names && names[k]) {
            p->name = dc_strdup(names[k]);
            if (!p->name) {
                for (int j = 0; j < k; j++) free(opt->params[opt->n_params + j].name);
                return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
            }
        }
    }
    for (int k = 0; k < n_params; k++)
        opt->params[opt->n_params + k].p = diffcl_tensor_retain(params[k]);
    dc_opt_group *g = &opt->groups[gi];
    g->o = o;
    g->initial_lr = o.lr;
    g->first = opt->n_params;
    g->count = n_params;
    opt->n_params += n_params;
    opt->n_groups++;
    if (group_index) *group_index = gi;
    return DIFFCL_OK;
}

diffcl_status diffcl_optimizer_add_module(diffcl_optimizer *opt, const diffcl_module *module,
                                          const diffcl_param_group_options *opts, int no_decay_1d,
                                          int groups[2])
{
    static const char *fn = "diffcl_optimizer_add_module";
    DC_CHECK_ARG(opt && module, "%s: optimizer or module is NULL", fn);
    if (groups) groups[0] = groups[1] = -1;
    diffcl_param_group_options o;
    dc_opt_read_group(&o, opts);
    DC_TRY(dc_opt_check_group(fn, opt->kind, &o));
    int n = 0;
    DC_TRY(dc_module_state_count(module, DIFFCL_STATE_PARAMS, &n));
    diffcl_tensor **ts[2] = {dc_malloc((size_t)(n ? n : 1) * sizeof(diffcl_tensor *)),
                             dc_malloc((size_t)(n ? n : 1) * sizeof(diffcl_tensor *))};
    const char **nm[2] = {dc_malloc((size_t)(n ? n : 1) * sizeof(char *)),
                          dc_malloc((size_t)(n ? n : 1) * sizeof(char *))};
    int cnt[2] = {0, 0};
    diffcl_status s = DIFFCL_OK;
    if (!ts[0] || !ts[1] || !nm[0] || !nm[1])
        s = dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    for (int i = 0; i < n && s == DIFFCL_OK; i++) {
        const char *name = NULL;
        diffcl_tensor *t = NULL;
        s = diffcl_module_state_entry(module, DIFFCL_STATE_PARAMS, i, &name, &t, NULL);
        if (s != DIFFCL_OK) break;
        int k = no_decay_1d && t->ndim <= 1 ? 1 : 0;
        ts[k][cnt[k]] = t;
        nm[k][cnt[k]++] = name;
    }
    diffcl_param_group_options nd = o;
    nd.weight_decay = 0;
    if (s == DIFFCL_OK && cnt[0])
        s = diffcl_optimizer_add_group(opt, ts[0], cnt[0], nm[0], &o, groups ? &groups[0] : NULL);
    if (s == DIFFCL_OK && cnt[1])
        s = diffcl_optimizer_add_group(opt, ts[1], cnt[1], nm[1], &nd, groups ? &groups[1] : NULL);
    for (int k = 0; k < 2; k++) {
        free(ts[k]);
        free((void *)nm[k]);
    }
    return s;
}

int diffcl_optimizer_num_groups(const diffcl_optimizer *opt)
{
    return opt ? opt->n_groups : 0;
}
int diffcl_optimizer_num_params(const diffcl_optimizer *opt)
{
    return opt ? opt->n_params : 0;
}
int64_t diffcl_optimizer_steps(const diffcl_optimizer *opt)
{
    return opt ? opt->steps : 0;
}

diffcl_tensor *diffcl_optimizer_param(const diffcl_optimizer *opt, int i)
{
    return opt && i >= 0 && i < opt->n_params ? opt->params[i].p : NULL;
}

#define CHECK_GROUP(opt, group, fn)                                                                \
    do {                                                                                           \
        DC_CHECK_ARG(opt, "%s: optimizer is NULL", fn);                                            \
        DC_CHECK_ARG((group) >= 0 && (group) < (opt)->n_groups,                                    \
                     "%s: group %d out of range (the optimizer has %d)", fn, (group),              \
                     (opt)->n_groups);                                                             \
    } while (0)

diffcl_status diffcl_optimizer_get_group(const diffcl_optimizer *opt, int group,
                                         diffcl_param_group_options *opts)
{
    CHECK_GROUP(opt, group, "diffcl_optimizer_get_group");
    DC_CHECK_ARG(opts, "diffcl_optimizer_get_group: opts is NULL");
    return dc_options_write(opts, &opt->groups[group].o, sizeof *opts, 0, 1,
                            "diffcl_optimizer_get_group");
}

diffcl_status diffcl_optimizer_set_group(diffcl_optimizer *opt, int group,
                                         const diffcl_param_group_options *opts)
{
    CHECK_GROUP(opt, group, "diffcl_optimizer_set_group");
    diffcl_param_group_options o;
    dc_opt_read_group(&o, opts);
    DC_TRY(dc_opt_check_group("diffcl_optimizer_set_group", opt->kind, &o));
    opt->groups[group].o = o;
    opt->groups[group].initial_lr = o.lr;
    return DIFFCL_OK;
}

diffcl_status diffcl_optimizer_set_lr(diffcl_optimizer *opt, int group, double lr)
{
    DC_CHECK_ARG(opt, "diffcl_optimizer_set_lr: optimizer is NULL");
    DC_CHECK_ARG(lr >= 0 && isfinite(lr),
                 "diffcl_optimizer_set_lr: lr is %g; need a finite value >= 0", lr);
    if (group == -1) {
        for (int g = 0; g < opt->n_groups; g++) opt->groups[g].o.lr = lr;
        return DIFFCL_OK;
    }
    CHECK_GROUP(opt, group, "diffcl_optimizer_set_lr");
    opt->groups[group].o.lr = lr;
    return DIFFCL_OK;
}

diffcl_status diffcl_optimizer_get_lr(const diffcl_optimizer *opt, int group, double *lr)
{
    CHECK_GROUP(opt, group, "diffcl_optimizer_get_lr");
    DC_CHECK_ARG(lr, "diffcl_optimizer_get_lr: lr is NULL");
    *lr = opt->groups[group].o.lr;
    return DIFFCL_OK;
}

diffcl_status diffcl_optimizer_step(diffcl_optimizer *opt)
{
    DC_CHECK_ARG(opt, "diffcl_optimizer_step: optimizer is NULL");
    for (int i = 0; i < opt->n_params; i++) {
        dc_opt_param *pi = &opt->params[i];
        const diffcl_tensor *grad = pi->p->grad;
        if (!grad) continue;
        if (!dc_same_shape(grad, pi->p) || grad->dtype != pi->p->dtype)
            return dc_error(DIFFCL_ERR_STATE,
                            "diffcl_optimizer_step: parameter %d %s: gradient %s %s "
                            "does not match the parameter",
                            i, pi->name ? pi->name : "", diffcl_dtype_name(grad->dtype),
                            dc_shape_str(grad));
        diffcl_tensor *g = dc_contiguous(grad);
        if (!g) return DIFFCL_ERR_OUT_OF_MEMORY;
        const dc_opt_group *grp = &opt->groups[pi->group];
        diffcl_status s = opt->kind == DIFFCL_OPTIM_SGD ? dc_sgd_update(opt, pi, grp, g)
                                                        : dc_adam_update(opt, pi, grp, g);
        diffcl_tensor_free(g);
        if (s != DIFFCL_OK) return s;
    }
    opt->steps++;
    return DIFFCL_OK;
}

void diffcl_optimizer_zero_grad(diffcl_optimizer *opt)
{
    if (!opt) return;
    for (int i = 0; i < opt->n_params; i++) diffcl_tensor_zero_grad(opt->params[i].p);
}
