/* Suite optim: SGD (momentum, dampening, Nesterov, weight decay), Adam and AdamW (AMSGrad)
 * over two parameter groups against torch.optim (tests/reference/gen_optim.py, float64
 * references, F64 and F32 paths), exact resume through a saved state dictionary, LR
 * schedules against torch's schedulers, gradient clipping against clip_grad_norm_, and
 * argument / state errors. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_util.h"

#define TOL_F32 1e-4
#define TOL_F64 1e-12
#define NP 3
#define STEPS 5

static diffcl_context *ctx;
static diffcl_tensor_dict *fx;

static void setup(void)
{
    ctx = test_context();
    fx = NULL;
}
static void teardown(void)
{
    diffcl_tensor_dict_free(fx);
    fx = NULL;
    diffcl_context_free(ctx);
}

static diffcl_tensor *ref(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static diffcl_tensor *ref(const char *fmt, ...)
{
    char name[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    if (!fx) ck_ok(diffcl_safetensors_load(ctx, test_fixture_path("optim.safetensors"), &fx));
    diffcl_tensor *t = diffcl_tensor_dict_get(fx, name);
    ck_assert_msg(t != NULL, "fixture optim.safetensors has no tensor %s", name);
    return t;
}

static diffcl_tensor *copy_as(const diffcl_tensor *src, diffcl_dtype dt)
{
    diffcl_tensor *c = NULL, *r = NULL;
    ck_ok(diffcl_tensor_to_dtype(src, dt, &c));
    ck_ok(diffcl_tensor_clone(c, &r));
    diffcl_tensor_free(c);
    return r;
}

static void expect_close(const diffcl_tensor *got, const diffcl_tensor *want, double tol,
                         const char *what)
{
    ck_assert_msg(got != NULL, "%s: missing", what);
    ck_assert_int_eq(diffcl_tensor_numel(got), diffcl_tensor_numel(want));
    double e = test_rel_error(got, want);
    ck_assert_msg(e <= tol, "%s: relative error %g > %g", what, e, tol);
}

/* Give every parameter the gradient grad.<k>.<i> (through backward of sum(p * g)). */
static void set_grads(diffcl_tensor **p, int k)
{
    for (int i = 0; i < NP; i++) {
        diffcl_tensor_zero_grad(p[i]);
        diffcl_tensor *g = copy_as(ref("grad.%d.%d", k, i), diffcl_tensor_dtype(p[i]));
        diffcl_tensor *m = NULL, *l = NULL;
        ck_ok(diffcl_mul(p[i], g, &m));
        ck_ok(diffcl_sum_all(m, &l));
        ck_ok(diffcl_backward(l, NULL));
        diffcl_tensor_free(l);
        diffcl_tensor_free(m);
        diffcl_tensor_free(g);
    }
}

/* Field-by-field (struct padding is indeterminate, so no memcmp). */
static int same_group(const diffcl_param_group_options *a, const diffcl_param_group_options *b)
{
    return a->lr == b->lr && a->weight_decay == b->weight_decay && a->momentum == b->momentum &&
           a->dampening == b->dampening && a->nesterov == b->nesterov && a->beta1 == b->beta1 &&
           a->beta2 == b->beta2 && a->eps == b->eps && a->amsgrad == b->amsgrad &&
           a->maximize == b->maximize;
}

static const char *const KIND[3] = {"sgd", "adam", "adamw"};

/* The optimizer of the fixture: groups {p0, p2} and {p1} with the generator's options. */
static diffcl_optimizer *make_opt(int kind, diffcl_tensor **p)
{
    diffcl_optimizer *o = NULL;
    ck_ok(diffcl_optimizer_create(ctx, (diffcl_optim_kind)kind, &o));
    diffcl_param_group_options g0 = DIFFCL_PARAM_GROUP_OPTIONS_INIT, g1 = DIFFCL_PARAM_GROUP_OPTIONS_INIT;
    if (kind == DIFFCL_OPTIM_SGD) {
        g0.lr = 0.01, g0.momentum = 0.9, g0.nesterov = 1, g0.weight_decay = 3e-5;
        g1.lr = 0.02, g1.momentum = 0.9, g1.dampening = 0.1;
    } else if (kind == DIFFCL_OPTIM_ADAM) {
        g0.lr = 1e-3, g0.weight_decay = 1e-2;
        g1.lr = 2e-3, g1.amsgrad = 1;
    } else {
        g0.lr = 1e-3, g0.weight_decay = 1e-2;
        g1.lr = 5e-3, g1.weight_decay = 0.1, g1.beta1 = 0.8, g1.beta2 = 0.99, g1.eps = 1e-6;
        g1.amsgrad = 1;
    }
    diffcl_tensor *a[2] = {p[0], p[2]};
    const char *names[2] = {"p0", "p2"};
    int gi = -1;
    ck_ok(diffcl_optimizer_add_group(o, a, 2, names, &g0, &gi));
    ck_assert_int_eq(gi, 0);
    ck_ok(diffcl_optimizer_add_group(o, &p[1], 1, NULL, &g1, &gi));
    ck_assert_int_eq(gi, 1);
    return o;
}

/* Parameter number in the optimizer (add order) of fixture parameter i. */
static const int OPT_INDEX[NP] = {0, 2, 1};

static void step_once(diffcl_optimizer *o, diffcl_tensor **p, int kind, int k)
{
    set_grads(p, k);
    if (kind == DIFFCL_OPTIM_SGD) {
        diffcl_lr_schedule s = DIFFCL_LR_SCHEDULE_INIT;
        s.kind = DIFFCL_LR_POLY;
        s.max_iters = 10;
        s.power = 0.9;
        ck_ok(diffcl_optimizer_apply_schedule(o, &s, k));
    }
    ck_ok(diffcl_optimizer_step(o));
}

static void check_params(diffcl_tensor **p, int kind, int after, double tol, const char *tag)
{
    for (int i = 0; i < NP; i++) {
        char what[96];
        snprintf(what, sizeof what, "%s %s p%d after step %d", tag, KIND[kind], i, after);
        expect_close(p[i], ref("%s.p%d.%d", KIND[kind], after, i), tol, what);
    }
}

static void check_buffers(diffcl_optimizer *o, int kind, double tol)
{
    static const char *const bufs[2][3] = {{"momentum_buffer", NULL, NULL},
                                           {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"}};
    diffcl_tensor_dict *sd = NULL;
    ck_ok(diffcl_optimizer_state_dict(o, &sd));
    ck_assert_str_eq(diffcl_tensor_dict_get_meta(sd, "optimizer"), KIND[kind]);
    for (int i = 0; i < NP; i++)
        for (int b = 0; b < 3; b++) {
            const char *bn = bufs[kind != DIFFCL_OPTIM_SGD][b];
            if (!bn) continue;
            char key[96], rk[96];
            snprintf(key, sizeof key, "state.%d.%s", OPT_INDEX[i], bn);
            snprintf(rk, sizeof rk, "%s.%s.%d", KIND[kind], bn, i);
            diffcl_tensor *got = diffcl_tensor_dict_get(sd, key);
            diffcl_tensor *want = diffcl_tensor_dict_get(fx, rk);
            if (!want) { /* amsgrad only in group 1 */
                ck_assert_msg(got == NULL, "%s should not exist", key);
                continue;
            }
            expect_close(got, want, tol, key);
        }
    diffcl_tensor *st = NULL;
    char key[64];
    snprintf(key, sizeof key, "state.%d.step", OPT_INDEX[0]);
    st = diffcl_tensor_dict_get(sd, key);
    ck_assert_ptr_nonnull(st);
    double v = 0;
    ck_ok(diffcl_tensor_item(st, &v));
    ck_assert_double_eq(v, STEPS);
    ck_ok(diffcl_tensor_item(diffcl_tensor_dict_get(sd, "steps"), &v));
    ck_assert_double_eq(v, STEPS);
    ck_assert_str_eq(diffcl_tensor_dict_get_meta(sd, "param.0.name"), "p0");
    diffcl_tensor_dict_free(sd);
}

static diffcl_tensor **make_params(diffcl_dtype dt)
{
    diffcl_tensor **p = calloc(NP, sizeof *p);
    for (int i = 0; i < NP; i++) {
        p[i] = copy_as(ref("init.%d", i), dt);
        ck_ok(diffcl_tensor_set_requires_grad(p[i], 1));
    }
    return p;
}

static void free_params(diffcl_tensor **p)
{
    for (int i = 0; i < NP; i++) diffcl_tensor_free(p[i]);
    free(p);
}

/* _i: kind * 2 + (F32 ? 1 : 0) */
START_TEST(test_parity)
{
    int kind = _i / 2;
    diffcl_dtype dt = (_i & 1) ? DIFFCL_F32 : DIFFCL_F64;
    double tol = (_i & 1) ? TOL_F32 : TOL_F64;
    diffcl_tensor **p = make_params(dt);
    diffcl_optimizer *o = make_opt(kind, p);
    ck_assert_int_eq(diffcl_optimizer_kind(o), kind);
    for (int k = 0; k < STEPS; k++) {
        step_once(o, p, kind, k);
        if (k + 1 == 3 || k + 1 == 5) check_params(p, kind, k + 1, tol, diffcl_dtype_name(dt));
    }
    check_buffers(o, kind, tol);
    ck_assert_int_eq(diffcl_optimizer_steps(o), STEPS);
    diffcl_optimizer_free(o);
    free_params(p);
}
END_TEST

/* Run 3 steps, save the state to a file, build a fresh optimizer over copies of the
 * parameters, load, run 2 more: bit-identical to the uninterrupted run. */
START_TEST(test_resume_exact)
{
    int kind = _i;
    diffcl_tensor **p = make_params(DIFFCL_F64), **q = make_params(DIFFCL_F64);
    diffcl_optimizer *o = make_opt(kind, p);
    for (int k = 0; k < 3; k++) step_once(o, p, kind, k);
    char path[] = "/tmp/diffcl_optim_state_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    diffcl_tensor_dict *sd = NULL, *back = NULL;
    ck_ok(diffcl_optimizer_state_dict(o, &sd));
    ck_ok(diffcl_safetensors_save(sd, path));
    diffcl_tensor_dict_free(sd);
    ck_ok(diffcl_safetensors_load(ctx, path, &back));
    unlink(path);
    for (int i = 0; i < NP; i++) /* the model checkpoint: copy the parameter values */
        ck_ok(diffcl_tensor_copy_from(q[i], diffcl_tensor_data(p[i]),
                                      (size_t)diffcl_tensor_numel(p[i]) * sizeof(double)));
    diffcl_optimizer *o2 = make_opt(kind, q);
    diffcl_param_group_options g;
    g.struct_size = sizeof g;
    ck_ok(diffcl_optimizer_load_state_dict(o2, back));
    diffcl_tensor_dict_free(back);
    ck_assert_int_eq(diffcl_optimizer_steps(o2), 3);
    ck_ok(diffcl_optimizer_get_group(o2, 1, &g));
    diffcl_param_group_options g1;
    g1.struct_size = sizeof g1;
    ck_ok(diffcl_optimizer_get_group(o, 1, &g1));
    ck_assert(same_group(&g, &g1));
    for (int k = 3; k < STEPS; k++) {
        step_once(o, p, kind, k);
        step_once(o2, q, kind, k);
    }
    for (int i = 0; i < NP; i++) ck_assert_double_eq(test_rel_error(q[i], p[i]), 0.0);
    check_params(q, kind, STEPS, TOL_F64, "resumed");
    /* a live state dict loads back into its own optimizer unchanged */
    ck_ok(diffcl_optimizer_state_dict(o, &sd));
    ck_ok(diffcl_optimizer_load_state_dict(o, sd));
    diffcl_tensor_dict_free(sd);
    check_buffers(o, kind, TOL_F64);
    diffcl_optimizer_free(o);
    diffcl_optimizer_free(o2);
    free_params(p);
    free_params(q);
}
END_TEST

START_TEST(test_state_dict_errors)
{
    diffcl_tensor **p = make_params(DIFFCL_F64);
    diffcl_optimizer *sgd = make_opt(DIFFCL_OPTIM_SGD, p);
    for (int k = 0; k < 2; k++) step_once(sgd, p, DIFFCL_OPTIM_SGD, k);
    diffcl_tensor_dict *sd = NULL;
    ck_ok(diffcl_optimizer_state_dict(sgd, &sd));
    /* wrong kind */
    diffcl_optimizer *adam = make_opt(DIFFCL_OPTIM_ADAM, p);
    ck_assert_int_eq(diffcl_optimizer_load_state_dict(adam, sd), DIFFCL_ERR_STATE);
    ck_assert_ptr_nonnull(strstr(diffcl_last_error(), "sgd"));
    diffcl_optimizer_free(adam);
    /* different groups */
    diffcl_optimizer *one = NULL;
    ck_ok(diffcl_optimizer_create(ctx, DIFFCL_OPTIM_SGD, &one));
    ck_ok(diffcl_optimizer_add_group(one, p, NP, NULL, NULL, NULL));
    ck_assert_int_eq(diffcl_optimizer_load_state_dict(one, sd), DIFFCL_ERR_STATE);
    diffcl_optimizer_free(one);
    /* a buffer of the wrong shape: the optimizer is left unchanged */
    diffcl_tensor *bad = NULL;
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_F64, 1, (int64_t[]){7}, &bad));
    ck_ok(diffcl_tensor_dict_set(sd, "state.1.momentum_buffer", bad));
    diffcl_tensor_free(bad);
    diffcl_tensor_dict *before = NULL, *after = NULL;
    diffcl_tensor_dict *snap = NULL;
    ck_ok(diffcl_optimizer_state_dict(sgd, &before));
    ck_ok(diffcl_tensor_dict_new(ctx, &snap));
    for (int i = 0; i < diffcl_tensor_dict_size(before); i++) {
        diffcl_tensor *c = NULL;
        ck_ok(diffcl_tensor_clone(diffcl_tensor_dict_at(before, i), &c));
        ck_ok(diffcl_tensor_dict_set(snap, diffcl_tensor_dict_name(before, i), c));
        diffcl_tensor_free(c);
    }
    ck_assert_int_eq(diffcl_optimizer_load_state_dict(sgd, sd), DIFFCL_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(diffcl_last_error(), "state.1.momentum_buffer"));
    ck_ok(diffcl_optimizer_state_dict(sgd, &after));
    ck_assert_int_eq(diffcl_tensor_dict_size(after), diffcl_tensor_dict_size(snap));
    for (int i = 0; i < diffcl_tensor_dict_size(snap); i++)
        ck_assert_double_eq(test_rel_error(diffcl_tensor_dict_get(after, diffcl_tensor_dict_name(snap, i)),
                                           diffcl_tensor_dict_at(snap, i)), 0.0);
    /* a missing hyper-parameter */
    ck_ok(diffcl_tensor_dict_remove(sd, "state.1.momentum_buffer"));
    ck_ok(diffcl_tensor_dict_remove(sd, "param_groups.1.lr"));
    ck_assert_int_eq(diffcl_optimizer_load_state_dict(sgd, sd), DIFFCL_ERR_NOT_FOUND);
    /* not an optimizer state */
    diffcl_tensor_dict *empty = NULL;
    ck_ok(diffcl_tensor_dict_new(ctx, &empty));
    ck_assert_int_eq(diffcl_optimizer_load_state_dict(sgd, empty), DIFFCL_ERR_NOT_FOUND);
    diffcl_tensor_dict_free(empty);
    diffcl_tensor_dict_free(before);
    diffcl_tensor_dict_free(after);
    diffcl_tensor_dict_free(snap);
    diffcl_tensor_dict_free(sd);
    diffcl_optimizer_free(sgd);
    free_params(p);
}
END_TEST

START_TEST(test_groups_and_errors)
{
    diffcl_tensor **p = make_params(DIFFCL_F64);
    diffcl_optimizer *o = NULL;
    ck_assert_int_eq(diffcl_optimizer_create(ctx, (diffcl_optim_kind)7, &o), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_ok(diffcl_optimizer_create(ctx, DIFFCL_OPTIM_SGD, &o));
    diffcl_param_group_options g = DIFFCL_PARAM_GROUP_OPTIONS_INIT;
    g.nesterov = 1; /* without momentum */
    ck_assert_int_eq(diffcl_optimizer_add_group(o, p, 1, NULL, &g, NULL), DIFFCL_ERR_INVALID_ARGUMENT);
    g.nesterov = 0;
    g.lr = -1;
    ck_assert_int_eq(diffcl_optimizer_add_group(o, p, 1, NULL, &g, NULL), DIFFCL_ERR_INVALID_ARGUMENT);
    g.lr = 0.1;
    ck_ok(diffcl_optimizer_add_group(o, p, 2, NULL, &g, NULL));
    /* a parameter twice, an integer tensor, a non-leaf */
    ck_assert_int_eq(diffcl_optimizer_add_group(o, &p[1], 1, NULL, &g, NULL), DIFFCL_ERR_INVALID_ARGUMENT);
    diffcl_tensor *lab = NULL, *sq = NULL;
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_I64, 1, (int64_t[]){3}, &lab));
    ck_assert_int_eq(diffcl_optimizer_add_group(o, &lab, 1, NULL, &g, NULL), DIFFCL_ERR_DTYPE);
    ck_ok(diffcl_square(p[2], &sq));
    ck_assert_int_eq(diffcl_optimizer_add_group(o, &sq, 1, NULL, &g, NULL), DIFFCL_ERR_INVALID_ARGUMENT);
    g.lr = 0.5;
    ck_ok(diffcl_optimizer_add_group(o, &p[2], 1, NULL, &g, NULL));
    ck_assert_int_eq(diffcl_optimizer_num_groups(o), 2);
    ck_assert_int_eq(diffcl_optimizer_num_params(o), 3);
    ck_assert_ptr_eq(diffcl_optimizer_param(o, 2), p[2]);
    ck_assert_ptr_null(diffcl_optimizer_param(o, 3));
    double lr = 0;
    ck_ok(diffcl_optimizer_get_lr(o, 1, &lr));
    ck_assert_double_eq(lr, 0.5);
    ck_ok(diffcl_optimizer_set_lr(o, -1, 0.25));
    ck_ok(diffcl_optimizer_get_lr(o, 0, &lr));
    ck_assert_double_eq(lr, 0.25);
    ck_assert_int_eq(diffcl_optimizer_set_lr(o, 2, 0.1), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(diffcl_optimizer_get_lr(o, -1, &lr), DIFFCL_ERR_INVALID_ARGUMENT);
    /* a schedule starts from the initial lr, not the current one */
    diffcl_lr_schedule s = DIFFCL_LR_SCHEDULE_INIT;
    s.kind = DIFFCL_LR_STEP;
    s.step_size = 2;
    s.gamma = 0.1;
    ck_ok(diffcl_optimizer_apply_schedule(o, &s, 5));
    ck_ok(diffcl_optimizer_get_lr(o, 1, &lr));
    ck_assert_double_eq_tol(lr, 0.5 * 0.01, 1e-15);
    /* only parameters with a gradient move; plain SGD has no state */
    double before[5], after[5];
    ck_ok(diffcl_tensor_copy_to(p[1], before, sizeof before));
    diffcl_tensor *m = NULL, *l = NULL;
    ck_ok(diffcl_square(p[0], &m));
    ck_ok(diffcl_sum_all(m, &l));
    ck_ok(diffcl_backward(l, NULL));
    ck_ok(diffcl_optimizer_step(o));
    ck_ok(diffcl_tensor_copy_to(p[1], after, sizeof after));
    ck_assert(!memcmp(before, after, sizeof before));
    diffcl_tensor_dict *sd = NULL;
    ck_ok(diffcl_optimizer_state_dict(o, &sd));
    ck_assert_ptr_null(diffcl_tensor_dict_get(sd, "state.0.momentum_buffer"));
    diffcl_tensor_dict_free(sd);
    diffcl_optimizer_zero_grad(o);
    ck_assert_ptr_null(diffcl_tensor_grad(p[0]));
    /* set_group resets the initial lr */
    diffcl_param_group_options got;
    got.struct_size = sizeof got;
    ck_ok(diffcl_optimizer_get_group(o, 0, &got));
    got.lr = 0.3;
    got.momentum = 0.5;
    ck_ok(diffcl_optimizer_set_group(o, 0, &got));
    s.kind = DIFFCL_LR_CONSTANT;
    ck_ok(diffcl_optimizer_apply_schedule(o, &s, 100));
    ck_ok(diffcl_optimizer_get_lr(o, 0, &lr));
    ck_assert_double_eq(lr, 0.3);
    diffcl_tensor_free(l);
    diffcl_tensor_free(m);
    diffcl_tensor_free(sq);
    diffcl_tensor_free(lab);
    diffcl_optimizer_free(o);
    diffcl_optimizer_free(NULL);
    free_params(p);
}
END_TEST

START_TEST(test_add_module_no_decay)
{
    diffcl_module *seq = NULL, *lin = NULL, *bn = NULL;
    ck_ok(diffcl_sequential_create(ctx, &seq));
    ck_ok(diffcl_linear_create(ctx, 4, 3, 1, diffcl_rng_key_make(1, 2, 0, 0), &lin));
    ck_ok(diffcl_sequential_append(seq, lin));
    diffcl_norm_options no = DIFFCL_NORM_OPTIONS_INIT;
    no.channels = 3;
    ck_ok(diffcl_norm_create(ctx, &no, &bn));
    ck_ok(diffcl_sequential_append(seq, bn));
    diffcl_optimizer *o = NULL;
    ck_ok(diffcl_optimizer_create(ctx, DIFFCL_OPTIM_SGD, &o));
    diffcl_param_group_options g = DIFFCL_PARAM_GROUP_OPTIONS_INIT;
    g.momentum = 0.9;
    g.nesterov = 1;
    g.weight_decay = 1e-4;
    int groups[2] = {-2, -2};
    ck_ok(diffcl_optimizer_add_module(o, seq, &g, 1, groups));
    ck_assert_int_eq(groups[0], 0);
    ck_assert_int_eq(groups[1], 1);
    ck_assert_int_eq(diffcl_optimizer_num_params(o), diffcl_module_state_count(seq, DIFFCL_STATE_PARAMS));
    diffcl_param_group_options got;
    got.struct_size = sizeof got;
    ck_ok(diffcl_optimizer_get_group(o, 1, &got));
    ck_assert_double_eq(got.weight_decay, 0.0);
    ck_assert_int_eq(got.nesterov, 1);
    ck_ok(diffcl_optimizer_get_group(o, 0, &got));
    ck_assert_double_eq(got.weight_decay, 1e-4);
    ck_assert_ptr_eq(diffcl_optimizer_param(o, 0), diffcl_module_find(seq, "0.weight"));
    diffcl_tensor_dict *sd = NULL;
    ck_ok(diffcl_optimizer_state_dict(o, &sd));
    ck_assert_str_eq(diffcl_tensor_dict_get_meta(sd, "param.0.name"), "0.weight");
    diffcl_tensor_dict_free(sd);
    /* everything in one group without the split */
    diffcl_optimizer *o2 = NULL;
    ck_ok(diffcl_optimizer_create(ctx, DIFFCL_OPTIM_ADAMW, &o2));
    ck_ok(diffcl_optimizer_add_module(o2, seq, NULL, 0, groups));
    ck_assert_int_eq(groups[0], 0);
    ck_assert_int_eq(groups[1], -1);
    ck_assert_int_eq(diffcl_optimizer_num_groups(o2), 1);
    diffcl_optimizer_free(o2);
    diffcl_optimizer_free(o);
    diffcl_module_free(seq);
}
END_TEST

START_TEST(test_lr_schedules)
{
    double base = 0.1;
    for (int it = 0; it < 13; it++) {
        double v;
        int64_t at = it;
        ck_ok(diffcl_tensor_get(ref("lr_step"), &at, &v));
        ck_assert_double_eq_tol(diffcl_lr_step(base, it, 3, 0.5), v, 1e-15);
        ck_ok(diffcl_tensor_get(ref("lr_poly"), &at, &v));
        ck_assert_double_eq_tol(diffcl_lr_poly(base, it, 10, 0.9), v, 1e-12);
        if (it <= 10) {
            ck_ok(diffcl_tensor_get(ref("lr_cosine"), &at, &v));
            ck_assert_double_eq_tol(diffcl_lr_cosine(base, it, 10, 1e-3), v, 1e-12);
        }
    }
    diffcl_lr_schedule s;
    diffcl_lr_schedule_init(&s);
    ck_assert_int_eq(s.kind, DIFFCL_LR_POLY);
    ck_assert_double_eq(diffcl_lr_schedule_value(&s, 0.01, 0), 0.01);
    ck_assert_double_eq_tol(diffcl_lr_schedule_value(NULL, 0.01, 5000), 0.01 * pow(0.5, 0.9), 1e-15);
    ck_assert_double_eq(diffcl_lr_schedule_value(&s, 0.01, 20000), 0.0);
    s.kind = DIFFCL_LR_COSINE;
    s.max_iters = 100;
    ck_assert_double_eq_tol(diffcl_lr_schedule_value(&s, 1.0, 50), 0.5, 1e-15);
}
END_TEST

START_TEST(test_clip_grad_norm)
{
    static const char *const tags[3] = {"clip2", "clipinf", "clipnone"};
    const double max_norm[3] = {1.0, 0.5, 100.0}, type[3] = {2.0, INFINITY, 2.0};
    for (int dt = 0; dt < 2; dt++)
        for (int c = 0; c < 3; c++) {
            diffcl_dtype t = dt ? DIFFCL_F32 : DIFFCL_F64;
            diffcl_tensor **p = make_params(t);
            set_grads(p, 0);
            double norm = 0, want = 0;
            if (c == 0) {
                ck_ok(diffcl_clip_grad_norm(p, NP, max_norm[c], type[c], &norm));
            } else {
                diffcl_optimizer *o = make_opt(DIFFCL_OPTIM_ADAM, p);
                ck_ok(diffcl_optimizer_clip_grad_norm(o, max_norm[c], type[c], &norm));
                diffcl_optimizer_free(o);
            }
            ck_ok(diffcl_tensor_item(ref("%s.norm", tags[c]), &want));
            ck_assert_double_eq_tol(norm, want, (dt ? 1e-5 : 1e-12) * want);
            for (int i = 0; i < NP; i++)
                expect_close(diffcl_tensor_grad(p[i]), ref("%s.%d", tags[c], i), dt ? TOL_F32 : TOL_F64,
                             tags[c]);
            free_params(p);
        }
    /* a NaN gradient: error, gradients untouched */
    diffcl_tensor **p = make_params(DIFFCL_F64);
    set_grads(p, 0);
    ck_ok(diffcl_tensor_set(diffcl_tensor_grad(p[1]), (int64_t[]){2}, NAN));
    double norm = 0;
    ck_assert_int_eq(diffcl_clip_grad_norm(p, NP, 1.0, 2.0, &norm), DIFFCL_ERR_NUMERIC);
    ck_assert(isnan(norm));
    expect_close(diffcl_tensor_grad(p[0]), ref("grad.0.0"), 0.0, "untouched gradient");
    ck_assert_int_eq(diffcl_clip_grad_norm(p, NP, 1.0, 0.0, &norm), DIFFCL_ERR_INVALID_ARGUMENT);
    free_params(p);
}
END_TEST

START_TEST(test_options_init)
{
    diffcl_param_group_options a, a0 = DIFFCL_PARAM_GROUP_OPTIONS_INIT;
    diffcl_param_group_options_init(&a);
    ck_assert(same_group(&a, &a0));
    ck_assert_uint_eq(a.struct_size, sizeof a);
    ck_assert_double_eq(a.lr, 0.01);
    ck_assert_double_eq(a.beta2, 0.999);
    diffcl_lr_schedule s, s0 = DIFFCL_LR_SCHEDULE_INIT;
    diffcl_lr_schedule_init(&s);
    ck_assert(s.struct_size == s0.struct_size && s.kind == s0.kind && s.max_iters == s0.max_iters &&
              s.power == s0.power && s.step_size == s0.step_size && s.gamma == s0.gamma &&
              s.min_lr == s0.min_lr);
    ck_assert_double_eq(s.power, 0.9);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("optim");
    TCase *tc = tcase_create("optim");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_parity, 0, 6);
    tcase_add_loop_test(tc, test_resume_exact, 0, 3);
    tcase_add_test(tc, test_state_dict_errors);
    tcase_add_test(tc, test_groups_and_errors);
    tcase_add_test(tc, test_add_module_no_decay);
    tcase_add_test(tc, test_lr_schedules);
    tcase_add_test(tc, test_clip_grad_norm);
    tcase_add_test(tc, test_options_init);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}
