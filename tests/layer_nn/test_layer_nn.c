/* Suite layer: activations, softmax, normalisations, dropout, linear and their modules.
 * Finite-difference checks in F64 for every op; PyTorch parity (float64 references from
 * tests/reference/gen_layer_nn.py) for both the F64 and the F32 paths. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

#define TOL_F32 1e-4
#define TOL_F64 1e-9

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

/* ------------------------------------------------------------------ helpers ---- */

static diffcl_tensor *ref(const char *name)
{
    if (!fx) ck_ok(diffcl_safetensors_load(ctx, test_fixture_path("layer_nn.safetensors"), &fx));
    diffcl_tensor *t = diffcl_tensor_dict_get(fx, name);
    ck_assert_msg(t != NULL, "fixture layer_nn.safetensors has no tensor %s", name);
    return t;
}

/* A fresh leaf copy of a fixture tensor in dtype dt (caller frees). */
static diffcl_tensor *ref_as(const char *name, diffcl_dtype dt)
{
    diffcl_tensor *c = NULL, *r = NULL;
    ck_ok(diffcl_tensor_to_dtype(ref(name), dt, &c));
    ck_ok(diffcl_tensor_clone(c, &r));
    diffcl_tensor_free(c);
    return r;
}

static void expect_close(const diffcl_tensor *got, const char *ref_name, double tol,
                         const char *what)
{
    diffcl_tensor *want = ref(ref_name);
    int64_t sg[DIFFCL_MAX_DIMS], sw[DIFFCL_MAX_DIMS];
    int ng = diffcl_tensor_shape(got, sg), nw = diffcl_tensor_shape(want, sw);
    ck_assert_msg(ng == nw && !memcmp(sg, sw, (size_t)ng * sizeof sg[0]),
                  "%s: shape differs from %s", what, ref_name);
    char label[160];
    snprintf(label, sizeof label, "%s vs %s", what, ref_name);
    test_expect_close(label, got, want, tol);
}

static diffcl_tensor *param(int nd, const int64_t *shape, uint64_t seed)
{
    diffcl_tensor *t = test_randn(ctx, DIFFCL_F64, nd, shape, seed);
    ck_ok(diffcl_tensor_set_requires_grad(t, 1));
    return t;
}

static void gradcheck(diffcl_gradcheck_fn fn, void *user, diffcl_tensor **in, int n)
{
    diffcl_gradcheck_result r = {sizeof r, 0, 0, 0, 0, 0, 0};
    diffcl_status s = diffcl_gradcheck(fn, user, in, n, NULL, &r);
    ck_assert_msg(s == DIFFCL_OK, "gradcheck: %s (max abs %g, rel %g)", diffcl_last_error(),
                  r.max_abs_error, r.max_rel_error);
    ck_assert_int_gt(r.n_checked, 0);
}

/* Run fn on fixture inputs in F64 and F32; compare the output with `y` and the gradients of
 * sum(out * g) with grads[k] (NULL: input k needs no gradient). */
static void parity(diffcl_gradcheck_fn fn, void *user, const char *const *in_names, int n,
                   const char *g, const char *y, const char *const *grads)
{
    for (int pass = 0; pass < 2; pass++) {
        diffcl_dtype dt = pass == 0 ? DIFFCL_F64 : DIFFCL_F32;
        double tol = pass == 0 ? TOL_F64 : TOL_F32;
        diffcl_tensor *in[4] = {0};
        for (int k = 0; k < n; k++) {
            in[k] = ref_as(in_names[k], dt);
            if (grads[k]) ck_ok(diffcl_tensor_set_requires_grad(in[k], 1));
        }
        diffcl_tensor *out = NULL, *gt = ref_as(g, dt);
        ck_ok(fn(in, n, &out, user));
        expect_close(out, y, tol, dt == DIFFCL_F32 ? "f32 output" : "f64 output");
        ck_ok(diffcl_backward(out, gt));
        for (int k = 0; k < n; k++) {
            if (!grads[k]) continue;
            ck_assert_msg(diffcl_tensor_grad(in[k]) != NULL, "no gradient for %s", in_names[k]);
            expect_close(diffcl_tensor_grad(in[k]), grads[k], tol,
                         dt == DIFFCL_F32 ? "f32 gradient" : "f64 gradient");
        }
        diffcl_tensor_free(out);
        diffcl_tensor_free(gt);
        for (int k = 0; k < n; k++) diffcl_tensor_free(in[k]);
    }
}

static void expect_error(diffcl_status got, diffcl_status want, const char *needle)
{
    ck_assert_msg(got == want, "expected %s, got %s (%s)", diffcl_status_string(want),
                  diffcl_status_string(got), diffcl_last_error());
    ck_assert_msg(strstr(diffcl_last_error(), needle) != NULL,
                  "error message \"%s\" does not mention \"%s\"", diffcl_last_error(), needle);
}

static int64_t numel_of(int nd, const int64_t *s)
{
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= s[i];
    return n;
}

/* ------------------------------------------------------- functions under test ---- */

enum { A_RELU, A_LEAKY, A_LEAKY02, A_SILU, A_GELU, A_SIGMOID, A_SOFTPLUS, A_COUNT };
static const char *const ACT_NAMES[A_COUNT] = {"relu", "leaky_relu", "leaky_relu02", "silu",
                                               "gelu", "sigmoid",    "softplus"};

static diffcl_status f_act(diffcl_tensor *const *in, int n, diffcl_tensor **out, void *user)
{
    (void)n;
    switch (*(int *)user) {
    case A_RELU: return diffcl_relu(in[0], out);
    case A_LEAKY: return diffcl_leaky_relu(in[0], 0.01, out);
    case A_LEAKY02: return diffcl_leaky_relu(in[0], 0.2, out);
    case A_SILU: return diffcl_silu(in[0], out);
    case A_GELU: return diffcl_gelu(in[0], out);
    case A_SIGMOID: return diffcl_sigmoid(in[0], out);
    default: return diffcl_softplus(in[0], out);
    }
}

typedef struct sm_case {
    int log, axis;
} sm_case;

static diffcl_status f_softmax(diffcl_tensor *const *in, int n, diffcl_tensor **out, void *user)
{
    (void)n;
    const sm_case *c = user;
    return c->log ? diffcl_log_softmax(in[0], c->axis, out) : diffcl_softmax(in[0], c->axis, out);
}

typedef struct bn_case {
    diffcl_tensor *rm, *rv;
    int training;
} bn_case;

/* inputs: x [, weight, bias] */
static diffcl_status f_bn(diffcl_tensor *const *in, int n, diffcl_tensor **out, void *user)
{
    const bn_case *c = user;
    return diffcl_batch_norm(in[0], c->rm, c->rv, n > 1 ? in[1] : NULL, n > 2 ? in[2] : NULL,
                             c->training, 0.1, 1e-5, out);
}

static diffcl_status f_gn(diffcl_tensor *const *in, int n, diffcl_tensor **out, void *user)
{
    return diffcl_group_norm(in[0], *(int *)user, n > 1 ? in[1] : NULL, n > 2 ? in[2] : NULL,
                             1e-5, out);
}

static diffcl_status f_ln(diffcl_tensor *const *in, int n, diffcl_tensor **out, void *user)
{
    (void)user;
    return diffcl_layer_norm(in[0], n > 1 ? in[1] : NULL, n > 2 ? in[2] : NULL, 1e-5, out);
}

static diffcl_status f_linear(diffcl_tensor *const *in, int n, diffcl_tensor **out, void *user)
{
    (void)user;
    return diffcl_linear(in[0], in[1], n > 2 ? in[2] : NULL, out);
}

typedef struct drop_case {
    double p;
    int channelwise;
    diffcl_rng_key key;
} drop_case;

static diffcl_status f_dropout(diffcl_tensor *const *in, int n, diffcl_tensor **out, void *user)
{
    (void)n;
    const drop_case *c = user;
    return diffcl_dropout(in[0], c->p, c->channelwise, 1, c->key, out);
}

/* ------------------------------------------------------------ activations ---- */

START_TEST(test_activation_parity)
{
    for (int a = 0; a < A_COUNT; a++) {
        char y[64], gx[64];
        snprintf(y, sizeof y, "%s_y", ACT_NAMES[a]);
        snprintf(gx, sizeof gx, "%s_gx", ACT_NAMES[a]);
        const char *in[1] = {"act_x"}, *gr[1] = {gx};
        parity(f_act, &a, in, 1, "act_g", y, gr);
    }
}
END_TEST

START_TEST(test_activation_gradcheck)
{
    int64_t s[3] = {2, 3, 7};
    diffcl_tensor *x = param(3, s, 11);
    /* spread the inputs and put some above the softplus threshold (20) */
    double v;
    int64_t idx[3] = {0, 0, 0};
    for (int i = 0; i < 7; i++) {
        idx[2] = i;
        ck_ok(diffcl_tensor_get(x, idx, &v));
        ck_ok(diffcl_tensor_set(x, idx, 20.5 + 3 * i + v * 0.1));
    }
    idx[1] = 1;
    for (int i = 0; i < 7; i++) {
        idx[2] = i;
        ck_ok(diffcl_tensor_get(x, idx, &v));
        ck_ok(diffcl_tensor_set(x, idx, v * 4));
    }
    diffcl_tensor *in[1] = {x};
    for (int a = 0; a < A_COUNT; a++) gradcheck(f_act, &a, in, 1);
    diffcl_tensor_free(x);
}
END_TEST

START_TEST(test_activation_values)
{
    double xs[5] = {-2.0, -0.0, 0.0, 1.5, 30.0};
    int64_t n = 5;
    diffcl_tensor *x = NULL, *y = NULL;
    ck_ok(diffcl_tensor_from_data(ctx, DIFFCL_F64, 1, &n, xs, &x));
    double out[5];
    ck_ok(diffcl_softplus(x, &y));
    ck_ok(diffcl_tensor_copy_to(y, out, sizeof out));
    ck_assert(out[4] == 30.0); /* linear above the threshold */
    ck_assert(fabs(out[0] - log1p(exp(-2.0))) < 1e-15);
    diffcl_tensor_free(y);
    ck_ok(diffcl_gelu(x, &y));
    ck_ok(diffcl_tensor_copy_to(y, out, sizeof out));
    ck_assert(fabs(out[3] - 0.5 * 1.5 * (1 + erf(1.5 / sqrt(2.0)))) < 1e-15);
    diffcl_tensor_free(y);
    ck_ok(diffcl_relu(x, &y));
    ck_ok(diffcl_tensor_copy_to(y, out, sizeof out));
    ck_assert(out[0] == 0 && out[3] == 1.5);
    diffcl_tensor_free(y);
    diffcl_tensor_free(x);
}
END_TEST

/* ---------------------------------------------------------------- softmax ---- */

START_TEST(test_softmax_parity)
{
    const char *in[1] = {"sm_x"};
    sm_case cases[4] = {{0, 1}, {0, -1}, {1, 1}, {1, 3}};
    const char *names[4][2] = {{"softmax_c_y", "softmax_c_gx"},
                               {"softmax_last_y", "softmax_last_gx"},
                               {"log_softmax_c_y", "log_softmax_c_gx"},
                               {"log_softmax_last_y", "log_softmax_last_gx"}};
    for (int i = 0; i < 4; i++) {
        const char *gr[1] = {names[i][1]};
        parity(f_softmax, &cases[i], in, 1, "sm_g", names[i][0], gr);
    }
}
END_TEST

START_TEST(test_softmax_gradcheck)
{
    int64_t s[4] = {2, 3, 2, 5};
    diffcl_tensor *in[1] = {param(4, s, 12)};
    for (int log = 0; log < 2; log++)
        for (int axis = -1; axis < 4; axis++) {
            sm_case c = {log, axis};
            gradcheck(f_softmax, &c, in, 1);
        }
    diffcl_tensor_free(in[0]);
}
END_TEST

START_TEST(test_softmax_large_inner)
{
    /* inner size above one block (256) exercises the blocked class-axis kernel */
    int64_t s[3] = {2, 3, 600};
    diffcl_tensor *x = test_randn(ctx, DIFFCL_F32, 3, s, 13), *y = NULL, *sum = NULL;
    ck_ok(diffcl_affine(x, 30.0, 0.0, &y)); /* large logits: needs the max shift */
    diffcl_tensor_free(x);
    x = y;
    ck_ok(diffcl_softmax(x, 1, &y));
    ck_ok(diffcl_sum(y, 1, 0, &sum));
    float v[1200];
    ck_ok(diffcl_tensor_copy_to(sum, v, sizeof v));
    for (int i = 0; i < 1200; i++) ck_assert_msg(fabsf(v[i] - 1.0f) < 1e-5f, "sum %g", v[i]);
    diffcl_tensor_free(sum);
    diffcl_tensor_free(y);
    diffcl_tensor_free(x);
}
END_TEST

/* ------------------------------------------------------------- batch norm ---- */

START_TEST(test_batch_norm_parity)
{
    for (int pass = 0; pass < 2; pass++) {
        diffcl_dtype dt = pass == 0 ? DIFFCL_F64 : DIFFCL_F32;
        double tol = pass == 0 ? TOL_F64 : TOL_F32;
        /* running statistics stay F32 in the modules; here they follow the pass */
        bn_case c = {ref_as("bn_rm0", dt), ref_as("bn_rv0", dt), 1};
        for (int step = 0; step < 3; step++) {
            char nx[32], ng[32], ny[32], ngx[32], ngw[32], ngb[32], nrm[32], nrv[32];
            snprintf(nx, sizeof nx, "bn_x%d", step);
            snprintf(ng, sizeof ng, "bn_g%d", step);
            snprintf(ny, sizeof ny, "bn_train%d_y", step);
            snprintf(ngx, sizeof ngx, "bn_train%d_gx", step);
            snprintf(ngw, sizeof ngw, "bn_train%d_gw", step);
            snprintf(ngb, sizeof ngb, "bn_train%d_gb", step);
            snprintf(nrm, sizeof nrm, "bn_rm%d", step + 1);
            snprintf(nrv, sizeof nrv, "bn_rv%d", step + 1);
            diffcl_tensor *in[3] = {ref_as(nx, dt), ref_as("bn_w", dt), ref_as("bn_b", dt)};
            for (int k = 0; k < 3; k++) ck_ok(diffcl_tensor_set_requires_grad(in[k], 1));
            diffcl_tensor *y = NULL, *g = ref_as(ng, dt);
            ck_ok(f_bn(in, 3, &y, &c));
            expect_close(y, ny, tol, "batch norm train output");
            expect_close(c.rm, nrm, tol, "running_mean");
            expect_close(c.rv, nrv, tol, "running_var");
            ck_ok(diffcl_backward(y, g));
            expect_close(diffcl_tensor_grad(in[0]), ngx, tol, "batch norm train dx");
            expect_close(diffcl_tensor_grad(in[1]), ngw, tol, "batch norm train dweight");
            expect_close(diffcl_tensor_grad(in[2]), ngb, tol, "batch norm train dbias");
            diffcl_tensor_free(y);
            diffcl_tensor_free(g);
            for (int k = 0; k < 3; k++) diffcl_tensor_free(in[k]);
        }
        /* evaluation with the running statistics after three steps */
        c.training = 0;
        const char *gr[3] = {"bn_eval_gx", "bn_eval_gw", "bn_eval_gb"};
        diffcl_tensor *t[3] = {ref_as("bn_x0", dt), ref_as("bn_w", dt), ref_as("bn_b", dt)};
        for (int k = 0; k < 3; k++) ck_ok(diffcl_tensor_set_requires_grad(t[k], 1));
        diffcl_tensor *y = NULL, *g = ref_as("bn_g0", dt);
        ck_ok(f_bn(t, 3, &y, &c));
        expect_close(y, "bn_eval_y", tol, "batch norm eval output");
        expect_close(c.rm, "bn_rm3", tol, "running_mean unchanged in eval");
        ck_ok(diffcl_backward(y, g));
        for (int k = 0; k < 3; k++) expect_close(diffcl_tensor_grad(t[k]), gr[k], tol, "batch norm eval grad");
        diffcl_tensor_free(y);
        diffcl_tensor_free(g);
        for (int k = 0; k < 3; k++) diffcl_tensor_free(t[k]);
        diffcl_tensor_free(c.rm);
        diffcl_tensor_free(c.rv);
    }
    /* BatchNorm1d on [N, C], no affine and no running statistics */
    bn_case c1 = {NULL, NULL, 1};
    const char *in1[1] = {"bn1d_x"}, *gr1[1] = {"bn1d_gx"};
    parity(f_bn, &c1, in1, 1, "bn1d_g", "bn1d_y", gr1);
}
END_TEST

START_TEST(test_batch_norm_gradcheck)
{
    int64_t s[4] = {3, 4, 2, 3}, c = 4;
    diffcl_tensor *in[3] = {param(4, s, 14), param(1, &c, 15), param(1, &c, 16)};
    diffcl_tensor *rm = NULL, *rv = NULL;
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_F64, 1, &c, &rm));
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_F64, 1, &c, &rv));
    ck_ok(diffcl_tensor_fill(rv, 0.7));
    bn_case train = {NULL, NULL, 1}, train_rs = {rm, rv, 1}, eval = {rm, rv, 0};
    gradcheck(f_bn, &train, in, 3);    /* through the batch statistics */
    gradcheck(f_bn, &train, in, 1);    /* no affine */
    gradcheck(f_bn, &train_rs, in, 3); /* updating running stats does not change the math */
    gradcheck(f_bn, &eval, in, 3);     /* fixed affine */
    int64_t s2[2] = {5, 4};
    diffcl_tensor *x2 = param(2, s2, 17);
    diffcl_tensor *in2[3] = {x2, in[1], in[2]};
    gradcheck(f_bn, &train, in2, 3); /* BatchNorm1d */
    diffcl_tensor_free(x2);
    diffcl_tensor_free(rm);
    diffcl_tensor_free(rv);
    for (int k = 0; k < 3; k++) diffcl_tensor_free(in[k]);
}
END_TEST

START_TEST(test_batch_norm_errors)
{
    int64_t s1 = 4, s4[4] = {2, 4, 3, 3}, c3 = 3, one[3] = {1, 4, 1};
    diffcl_tensor *x1 = test_randn(ctx, DIFFCL_F32, 1, &s1, 1), *x = test_randn(ctx, DIFFCL_F32, 4, s4, 2);
    diffcl_tensor *w3 = test_randn(ctx, DIFFCL_F32, 1, &c3, 3), *w64 = test_randn(ctx, DIFFCL_F64, 1, &s1, 4);
    diffcl_tensor *xo = test_randn(ctx, DIFFCL_F32, 3, one, 5), *xi = NULL, *y = NULL;
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_I32, 4, s4, &xi));
    expect_error(diffcl_batch_norm(x1, NULL, NULL, NULL, NULL, 1, 0.1, 1e-5, &y), DIFFCL_ERR_SHAPE,
                 "diffcl_batch_norm");
    expect_error(diffcl_batch_norm(x, NULL, NULL, w3, NULL, 1, 0.1, 1e-5, &y), DIFFCL_ERR_SHAPE,
                 "weight");
    expect_error(diffcl_batch_norm(x, NULL, NULL, w64, NULL, 1, 0.1, 1e-5, &y), DIFFCL_ERR_DTYPE,
                 "weight");
    expect_error(diffcl_batch_norm(xi, NULL, NULL, NULL, NULL, 1, 0.1, 1e-5, &y), DIFFCL_ERR_DTYPE,
                 "i32");
    expect_error(diffcl_batch_norm(x, NULL, NULL, NULL, NULL, 0, 0.1, 1e-5, &y),
                 DIFFCL_ERR_INVALID_ARGUMENT, "running_mean");
    expect_error(diffcl_batch_norm(x, w3, NULL, NULL, NULL, 1, 0.1, 1e-5, &y), DIFFCL_ERR_SHAPE,
                 "running_mean");
    expect_error(diffcl_batch_norm(xo, NULL, NULL, NULL, NULL, 1, 0.1, 1e-5, &y), DIFFCL_ERR_SHAPE,
                 "more than 1 value");
    ck_assert_ptr_null(y);
    diffcl_tensor_free(x1);
    diffcl_tensor_free(x);
    diffcl_tensor_free(w3);
    diffcl_tensor_free(w64);
    diffcl_tensor_free(xo);
    diffcl_tensor_free(xi);
}
END_TEST

/* ------------------------------------------------------ group / instance norm ---- */

START_TEST(test_group_norm_parity)
{
    int groups = 3, inst = 3;
    const char *in[3] = {"gn_x", "gn_w", "gn_b"}, *gr[3] = {"gn_gx", "gn_gw", "gn_gb"};
    parity(f_gn, &groups, in, 3, "gn_g", "gn_y", gr);
    /* instance norm = one group per channel */
    const char *iin[3] = {"in_x", "in_w", "in_b"};
    const char *igr[1] = {"in_gx"};
    parity(f_gn, &inst, iin, 1, "in_g", "in_y", igr);
    const char *agr[3] = {"in_aff_gx", "in_aff_gw", "in_aff_gb"};
    parity(f_gn, &inst, iin, 3, "in_g", "in_aff_y", agr);
}
END_TEST

START_TEST(test_group_norm_gradcheck)
{
    int64_t s[4] = {2, 6, 3, 2}, c = 6;
    diffcl_tensor *in[3] = {param(4, s, 18), param(1, &c, 19), param(1, &c, 20)};
    int groups[4] = {1, 2, 3, 6};
    for (int i = 0; i < 4; i++) {
        gradcheck(f_gn, &groups[i], in, 3);
        gradcheck(f_gn, &groups[i], in, 1);
    }
    diffcl_tensor_free(in[0]);
    diffcl_tensor_free(in[1]);
    diffcl_tensor_free(in[2]);
}
END_TEST

START_TEST(test_group_norm_errors)
{
    int64_t s[3] = {2, 6, 4}, c = 6;
    diffcl_tensor *x = test_randn(ctx, DIFFCL_F32, 3, s, 1), *w = test_randn(ctx, DIFFCL_F32, 1, &c, 2);
    diffcl_tensor *y = NULL;
    expect_error(diffcl_group_norm(x, 4, NULL, NULL, 1e-5, &y), DIFFCL_ERR_INVALID_ARGUMENT,
                 "groups");
    expect_error(diffcl_group_norm(x, 0, NULL, NULL, 1e-5, &y), DIFFCL_ERR_INVALID_ARGUMENT,
                 "groups");
    int64_t c4 = 4;
    diffcl_tensor *w4 = test_randn(ctx, DIFFCL_F32, 1, &c4, 3);
    expect_error(diffcl_group_norm(x, 2, w4, NULL, 1e-5, &y), DIFFCL_ERR_SHAPE, "weight");
    ck_ok(diffcl_group_norm(x, 2, w, NULL, 1e-5, &y));
    diffcl_tensor_free(y);
    diffcl_tensor_free(w4);
    diffcl_tensor_free(w);
    diffcl_tensor_free(x);
}
END_TEST

/* ------------------------------------------------------------- layer norm ---- */

START_TEST(test_layer_norm_parity)
{
    const char *in[3] = {"ln_x", "ln_w", "ln_b"}, *gr[3] = {"ln_gx", "ln_gw", "ln_gb"};
    parity(f_ln, NULL, in, 3, "ln_g", "ln_y", gr);
}
END_TEST

START_TEST(test_layer_norm_gradcheck)
{
    int64_t s[3] = {3, 2, 5}, c = 5;
    diffcl_tensor *in[3] = {param(3, s, 21), param(1, &c, 22), param(1, &c, 23)};
    gradcheck(f_ln, NULL, in, 3);
    gradcheck(f_ln, NULL, in, 1);
    /* more rows than one reduction block (256) */
    int64_t big[2] = {300, 3}, c3 = 3;
    diffcl_tensor *in2[3] = {param(2, big, 24), param(1, &c3, 25), param(1, &c3, 26)};
    diffcl_gradcheck_options o = DIFFCL_GRADCHECK_OPTIONS_INIT;
    o.max_checks = 60;
    diffcl_gradcheck_result r = {sizeof r, 0, 0, 0, 0, 0, 0};
    diffcl_status st = diffcl_gradcheck(f_ln, NULL, in2, 3, &o, &r);
    ck_assert_msg(st == DIFFCL_OK, "gradcheck: %s", diffcl_last_error());
    for (int k = 0; k < 3; k++) {
        diffcl_tensor_free(in[k]);
        diffcl_tensor_free(in2[k]);
    }
}
END_TEST

START_TEST(test_layer_norm_errors)
{
    int64_t s[2] = {3, 5}, c = 4;
    diffcl_tensor *x = test_randn(ctx, DIFFCL_F32, 2, s, 1), *w = test_randn(ctx, DIFFCL_F32, 1, &c, 2);
    diffcl_tensor *y = NULL, *sc = NULL;
    expect_error(diffcl_layer_norm(x, w, NULL, 1e-5, &y), DIFFCL_ERR_SHAPE, "weight");
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_F32, 0, NULL, &sc));
    expect_error(diffcl_layer_norm(sc, NULL, NULL, 1e-5, &y), DIFFCL_ERR_SHAPE, "0-d");
    diffcl_tensor_free(sc);
    diffcl_tensor_free(w);
    diffcl_tensor_free(x);
}
END_TEST

/* ----------------------------------------------------------------- linear ---- */

START_TEST(test_linear_parity)
{
    const char *in[3] = {"lin_x", "lin_w", "lin_b"}, *gr[3] = {"lin_gx", "lin_gw", "lin_gb"};
    parity(f_linear, NULL, in, 3, "lin_g", "lin_y", gr);
}
END_TEST

START_TEST(test_linear_gradcheck)
{
    int64_t sx[3] = {2, 3, 4}, sw[2] = {5, 4}, sb = 5, s1 = 4;
    diffcl_tensor *in[3] = {param(3, sx, 27), param(2, sw, 28), param(1, &sb, 29)};
    gradcheck(f_linear, NULL, in, 3);
    gradcheck(f_linear, NULL, in, 2);
    diffcl_tensor *v = param(1, &s1, 30);
    diffcl_tensor *in1[3] = {v, in[1], in[2]};
    gradcheck(f_linear, NULL, in1, 3); /* 1-d input */
    diffcl_tensor_free(v);
    for (int k = 0; k < 3; k++) diffcl_tensor_free(in[k]);
}
END_TEST

START_TEST(test_linear_errors)
{
    int64_t sx[2] = {3, 4}, sw[2] = {5, 3}, sb = 4;
    diffcl_tensor *x = test_randn(ctx, DIFFCL_F32, 2, sx, 1), *w = test_randn(ctx, DIFFCL_F32, 2, sw, 2);
    diffcl_tensor *b = test_randn(ctx, DIFFCL_F32, 1, &sb, 3), *w1 = test_randn(ctx, DIFFCL_F32, 1, &sb, 4);
    diffcl_tensor *xd = test_randn(ctx, DIFFCL_F64, 2, sx, 5), *y = NULL;
    expect_error(diffcl_linear(x, w, NULL, &y), DIFFCL_ERR_SHAPE, "features");
    expect_error(diffcl_linear(x, w1, NULL, &y), DIFFCL_ERR_SHAPE, "[out, in]");
    expect_error(diffcl_linear(xd, w, NULL, &y), DIFFCL_ERR_DTYPE, "weight");
    int64_t sw2[2] = {5, 4};
    diffcl_tensor *w2 = test_randn(ctx, DIFFCL_F32, 2, sw2, 6);
    expect_error(diffcl_linear(x, w2, b, &y), DIFFCL_ERR_SHAPE, "bias");
    ck_ok(diffcl_linear(x, w2, NULL, &y));
    ck_assert_int_eq(diffcl_tensor_dim(y, 1), 5);
    diffcl_tensor_free(y);
    diffcl_tensor_free(w2);
    diffcl_tensor_free(x);
    diffcl_tensor_free(w);
    diffcl_tensor_free(b);
    diffcl_tensor_free(w1);
    diffcl_tensor_free(xd);
}
END_TEST

/* ---------------------------------------------------------------- dropout ---- */

static float *values_f32(const diffcl_tensor *t)
{
    int64_t n = diffcl_tensor_numel(t);
    float *v = malloc((size_t)n * sizeof *v);
    ck_ok(diffcl_tensor_copy_to(t, v, (size_t)n * sizeof *v));
    return v;
}

static diffcl_tensor *ones_f32(int nd, const int64_t *s)
{
    diffcl_tensor *t = NULL;
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_F32, nd, s, &t));
    ck_ok(diffcl_tensor_fill(t, 1.0));
    return t;
}

START_TEST(test_dropout_statistics)
{
    const double ps[3] = {0.1, 0.3, 0.5};
    int64_t n = 200000;
    diffcl_tensor *x = ones_f32(1, &n);
    for (int i = 0; i < 3; i++) {
        double p = ps[i];
        diffcl_tensor *y = NULL;
        ck_ok(diffcl_dropout(x, p, 0, 1, diffcl_rng_key_make(7, 3, (uint32_t)i, 0), &y));
        float *v = values_f32(y);
        int64_t kept = 0;
        float scale = (float)(1.0 / (1.0 - p));
        for (int64_t k = 0; k < n; k++) {
            ck_assert_msg(v[k] == 0.0f || v[k] == scale, "value %g is neither 0 nor %g", v[k], scale);
            kept += v[k] != 0.0f;
        }
        double rate = (double)kept / (double)n, sd = sqrt(p * (1 - p) / (double)n);
        ck_assert_msg(fabs(rate - (1 - p)) < 5 * sd, "keep rate %g for p=%g", rate, p);
        free(v);
        diffcl_tensor_free(y);
    }
    diffcl_tensor_free(x);
}
END_TEST

START_TEST(test_dropout_channelwise)
{
    int64_t s[5] = {8, 256, 2, 2, 3};
    diffcl_tensor *x = ones_f32(5, s), *y = NULL;
    double p = 0.4;
    ck_ok(diffcl_dropout(x, p, 1, 1, diffcl_rng_key_make(9, 1, 0, 0), &y));
    float *v = values_f32(y);
    int64_t units = 8 * 256, S = 12, kept = 0;
    for (int64_t u = 0; u < units; u++) {
        for (int64_t j = 1; j < S; j++)
            ck_assert_msg(v[u * S + j] == v[u * S], "channel %lld is not dropped as a whole",
                          (long long)u);
        kept += v[u * S] != 0.0f;
        ck_assert(v[u * S] == 0.0f || v[u * S] == (float)(1.0 / (1.0 - p)));
    }
    double rate = (double)kept / (double)units, sd = sqrt(p * (1 - p) / (double)units);
    ck_assert_msg(fabs(rate - (1 - p)) < 5 * sd, "channel keep rate %g", rate);
    free(v);
    diffcl_tensor_free(y);
    diffcl_tensor_free(x);
}
END_TEST

START_TEST(test_dropout_thread_independent)
{
    diffcl_context_options o = DIFFCL_CONTEXT_OPTIONS_INIT;
    o.n_threads = 2;
    o.log_level = DIFFCL_LOG_WARN;
    diffcl_context *ctx2 = NULL;
    ck_ok(diffcl_context_create(&o, &ctx2));
    int64_t s[2] = {300, 401};
    diffcl_rng_key key = diffcl_rng_key_make(42, 5, 6, 7);
    for (int ch = 0; ch < 2; ch++) {
        diffcl_tensor *a = test_randn(ctx, DIFFCL_F32, 2, s, 31), *b = test_randn(ctx2, DIFFCL_F32, 2, s, 31);
        diffcl_tensor *ya = NULL, *yb = NULL;
        ck_ok(diffcl_dropout(a, 0.25, ch, 1, key, &ya));
        ck_ok(diffcl_dropout(b, 0.25, ch, 1, key, &yb));
        float *va = values_f32(ya), *vb = values_f32(yb);
        ck_assert(memcmp(va, vb, sizeof(float) * 300 * 401) == 0);
        free(va);
        free(vb);
        /* a different key gives a different mask */
        diffcl_tensor *yc = NULL;
        ck_ok(diffcl_dropout(a, 0.25, ch, 1, diffcl_rng_key_make(42, 5, 6, 8), &yc));
        ck_assert(test_rel_error(yc, ya) > 0);
        diffcl_tensor_free(yc);
        diffcl_tensor_free(ya);
        diffcl_tensor_free(yb);
        diffcl_tensor_free(a);
        diffcl_tensor_free(b);
    }
    diffcl_context_free(ctx2);
}
END_TEST

START_TEST(test_dropout_identity_and_grad)
{
    int64_t s[3] = {2, 3, 4};
    diffcl_tensor *x = test_randn(ctx, DIFFCL_F32, 3, s, 32), *y = NULL;
    diffcl_rng_key key = diffcl_rng_key_make(1, 2, 3, 4);
    ck_ok(diffcl_dropout(x, 0.5, 0, 0, key, &y)); /* eval */
    ck_assert(test_rel_error(y, x) == 0);
    diffcl_tensor_free(y);
    ck_ok(diffcl_dropout(x, 0.0, 1, 1, key, &y)); /* p = 0 */
    ck_assert(test_rel_error(y, x) == 0);
    diffcl_tensor_free(y);
    ck_ok(diffcl_dropout(x, 1.0, 0, 1, key, &y)); /* p = 1: everything dropped */
    float *v = values_f32(y);
    for (int i = 0; i < 24; i++) ck_assert(v[i] == 0.0f);
    free(v);
    diffcl_tensor_free(y);
    expect_error(diffcl_dropout(x, 1.5, 0, 1, key, &y), DIFFCL_ERR_INVALID_ARGUMENT, "probability");
    int64_t s1 = 5;
    diffcl_tensor *x1 = test_randn(ctx, DIFFCL_F32, 1, &s1, 33);
    expect_error(diffcl_dropout(x1, 0.5, 1, 1, key, &y), DIFFCL_ERR_SHAPE, "channel");
    diffcl_tensor_free(x1);
    diffcl_tensor_free(x);

    /* gradient: the same mask and scale */
    int64_t sg[4] = {2, 3, 2, 2};
    for (int ch = 0; ch < 2; ch++) {
        drop_case c = {0.4, ch, key};
        diffcl_tensor *in[1] = {param(4, sg, 34)};
        gradcheck(f_dropout, &c, in, 1);
        diffcl_tensor_free(in[0]);
    }
}
END_TEST

START_TEST(test_dropout_module)
{
    diffcl_module *m = NULL;
    ck_ok(diffcl_dropout_create(ctx, 0.5, 1, 77, 9, &m));
    ck_assert_str_eq(diffcl_module_type(m), "dropout_channel");
    ck_assert_int_eq(diffcl_module_state_count(m, DIFFCL_STATE_ALL), 0);
    int64_t s[3] = {4, 32, 3};
    diffcl_tensor *x = ones_f32(3, s), *y0 = NULL, *y1 = NULL, *y2 = NULL, *ref0 = NULL, *ref1 = NULL;
    diffcl_module_set_step(m, 5);
    ck_ok(diffcl_module_forward(m, x, &y0));
    ck_ok(diffcl_module_forward(m, x, &y1));
    /* key (seed, stream, step, k) for the k-th call since the step was set */
    ck_ok(diffcl_dropout(x, 0.5, 1, 1, diffcl_rng_key_make(77, 9, 5, 0), &ref0));
    ck_ok(diffcl_dropout(x, 0.5, 1, 1, diffcl_rng_key_make(77, 9, 5, 1), &ref1));
    ck_assert(test_rel_error(y0, ref0) == 0);
    ck_assert(test_rel_error(y1, ref1) == 0);
    ck_assert(test_rel_error(y0, y1) > 0);
    diffcl_module_set_step(m, 5); /* a resume replays the same masks */
    ck_ok(diffcl_module_forward(m, x, &y2));
    ck_assert(test_rel_error(y2, ref0) == 0);
    diffcl_tensor_free(y2);
    diffcl_module_train(m, 0);
    ck_ok(diffcl_module_forward(m, x, &y2));
    ck_assert(test_rel_error(y2, x) == 0);
    diffcl_tensor_free(y2);
    diffcl_module_train(m, 1); /* evaluation did not advance the call counter */
    ck_ok(diffcl_module_forward(m, x, &y2));
    ck_assert(test_rel_error(y2, ref1) == 0);
    diffcl_tensor_free(y2);
    diffcl_tensor_free(y0);
    diffcl_tensor_free(y1);
    diffcl_tensor_free(ref0);
    diffcl_tensor_free(ref1);
    diffcl_tensor_free(x);
    diffcl_module_free(m);
    expect_error(diffcl_dropout_create(ctx, -0.1, 0, 1, 1, &m), DIFFCL_ERR_INVALID_ARGUMENT,
                 "probability");
}
END_TEST

/* ------------------------------------------------------------ thread counts ---- */

/* The reductions of norms, softmax and the linear bias gradient are laid out per row or
 * per fixed block, so 1 and 2 threads give bit-identical results. */
START_TEST(test_thread_count_independent)
{
    diffcl_context_options o = DIFFCL_CONTEXT_OPTIONS_INIT;
    o.n_threads = 2;
    o.log_level = DIFFCL_LOG_WARN;
    diffcl_context *ctx2 = NULL;
    ck_ok(diffcl_context_create(&o, &ctx2));
    int64_t s[5] = {2, 8, 6, 20, 30}, c = 8;
    diffcl_context *cs[2] = {ctx, ctx2};
    float *res[2][6];
    for (int k = 0; k < 2; k++) {
        diffcl_tensor *x = test_randn(cs[k], DIFFCL_F32, 5, s, 40);
        diffcl_tensor *w = test_randn(cs[k], DIFFCL_F32, 1, &c, 41);
        diffcl_tensor *rm = NULL, *rv = NULL, *y[6] = {0};
        ck_ok(diffcl_tensor_new(cs[k], DIFFCL_F32, 1, &c, &rm));
        ck_ok(diffcl_tensor_new(cs[k], DIFFCL_F32, 1, &c, &rv));
        ck_ok(diffcl_tensor_set_requires_grad(x, 1));
        ck_ok(diffcl_tensor_set_requires_grad(w, 1));
        ck_ok(diffcl_batch_norm(x, rm, rv, w, NULL, 1, 0.1, 1e-5, &y[0]));
        ck_ok(diffcl_group_norm(x, 4, w, NULL, 1e-5, &y[1]));
        ck_ok(diffcl_softmax(x, 1, &y[2]));
        ck_ok(diffcl_gelu(x, &y[3]));
        int64_t lsh[2] = {2 * 8 * 6 * 20, 30};
        diffcl_tensor *x2 = NULL;
        ck_ok(diffcl_tensor_reshape(x, 2, lsh, &x2));
        ck_ok(diffcl_layer_norm(x2, NULL, NULL, 1e-5, &y[4]));
        diffcl_tensor_free(x2);
        /* one loss through everything, then the input gradient */
        diffcl_tensor *l = NULL, *acc = NULL, *t = NULL;
        for (int i = 0; i < 5; i++) {
            ck_ok(diffcl_sum_all(y[i], &t));
            if (acc) {
                diffcl_tensor *a2 = NULL;
                ck_ok(diffcl_add(acc, t, &a2));
                diffcl_tensor_free(acc);
                diffcl_tensor_free(t);
                acc = a2;
            } else acc = t;
        }
        /* weight the outputs non-uniformly so the gradients are not trivially zero */
        diffcl_tensor *sq = NULL;
        ck_ok(diffcl_square(y[0], &sq));
        ck_ok(diffcl_sum_all(sq, &t));
        ck_ok(diffcl_add(acc, t, &l));
        diffcl_tensor_free(sq);
        diffcl_tensor_free(t);
        diffcl_tensor_free(acc);
        ck_ok(diffcl_backward(l, NULL));
        for (int i = 0; i < 5; i++) res[k][i] = values_f32(y[i]);
        res[k][5] = values_f32(diffcl_tensor_grad(x));
        diffcl_tensor_free(l);
        for (int i = 0; i < 5; i++) diffcl_tensor_free(y[i]);
        diffcl_tensor_free(rm);
        diffcl_tensor_free(rv);
        diffcl_tensor_free(w);
        diffcl_tensor_free(x);
    }
    int64_t n = numel_of(5, s);
    for (int i = 0; i < 6; i++) {
        ck_assert_msg(memcmp(res[0][i], res[1][i], (size_t)n * sizeof(float)) == 0,
                      "result %d differs between 1 and 2 threads", i);
        free(res[0][i]);
        free(res[1][i]);
    }
    diffcl_context_free(ctx2);
}
END_TEST

/* ---------------------------------------------------------------- modules ---- */

typedef struct entry_want {
    const char *name;
    int ndim;
    int64_t dim0;
    diffcl_dtype dtype;
    int is_param;
} entry_want;

static void expect_entries(const diffcl_module *m, const entry_want *want, int n)
{
    ck_assert_int_eq(diffcl_module_state_count(m, DIFFCL_STATE_ALL), n);
    for (int i = 0; i < n; i++) {
        const char *name = NULL;
        diffcl_tensor *t = NULL;
        int is_param = -1;
        ck_ok(diffcl_module_state_entry(m, DIFFCL_STATE_ALL, i, &name, &t, &is_param));
        ck_assert_str_eq(name, want[i].name);
        ck_assert_int_eq(diffcl_tensor_ndim(t), want[i].ndim);
        if (want[i].ndim) ck_assert_int_eq(diffcl_tensor_dim(t, 0), want[i].dim0);
        ck_assert_int_eq(diffcl_tensor_dtype(t), want[i].dtype);
        ck_assert_int_eq(is_param, want[i].is_param);
        ck_assert_int_eq(diffcl_tensor_requires_grad(t), want[i].is_param);
    }
}

static diffcl_module *norm(diffcl_norm_kind kind, int channels, int affine, int track)
{
    diffcl_norm_options o;
    diffcl_norm_options_init(&o);
    o.kind = kind;
    o.channels = channels;
    o.affine = affine;
    o.track_running_stats = track;
    diffcl_module *m = NULL;
    ck_ok(diffcl_norm_create(ctx, &o, &m));
    return m;
}

static void load_param(diffcl_module *m, const char *name, const char *ref_name)
{
    diffcl_tensor *t = diffcl_module_find(m, name), *v = ref_as(ref_name, DIFFCL_F32);
    float buf[64];
    int64_t n = diffcl_tensor_numel(v);
    ck_ok(diffcl_tensor_copy_to(v, buf, (size_t)n * sizeof(float)));
    ck_ok(diffcl_tensor_copy_from(t, buf, (size_t)n * sizeof(float)));
    diffcl_tensor_free(v);
}

static double nbt_value(const diffcl_module *m)
{
    double v = -1;
    ck_ok(diffcl_tensor_item(diffcl_module_find(m, "num_batches_tracked"), &v));
    return v;
}

START_TEST(test_batchnorm_module)
{
    /* nn.BatchNorm3d(4).state_dict(): weight, bias, running_mean, running_var,
     * num_batches_tracked (int64, shape []) */
    diffcl_module *m = norm(DIFFCL_NORM_BATCH, 4, 1, 1);
    entry_want want[5] = {{"weight", 1, 4, DIFFCL_F32, 1},
                          {"bias", 1, 4, DIFFCL_F32, 1},
                          {"running_mean", 1, 4, DIFFCL_F32, 0},
                          {"running_var", 1, 4, DIFFCL_F32, 0},
                          {"num_batches_tracked", 0, 0, DIFFCL_I64, 0}};
    expect_entries(m, want, 5);
    ck_assert_str_eq(diffcl_module_type(m), "batchnorm");
    load_param(m, "weight", "bn_w");
    load_param(m, "bias", "bn_b");
    load_param(m, "running_mean", "bn_rm0");
    load_param(m, "running_var", "bn_rv0");
    ck_assert(diffcl_module_is_training(m));
    for (int step = 0; step < 3; step++) {
        char nx[16], ny[32];
        snprintf(nx, sizeof nx, "bn_x%d", step);
        snprintf(ny, sizeof ny, "bn_train%d_y", step);
        diffcl_tensor *x = ref_as(nx, DIFFCL_F32), *y = NULL;
        ck_ok(diffcl_module_forward(m, x, &y));
        expect_close(y, ny, TOL_F32, "BatchNorm module train output");
        diffcl_tensor_free(y);
        diffcl_tensor_free(x);
    }
    ck_assert(nbt_value(m) == 3.0);
    expect_close(diffcl_module_find(m, "running_mean"), "bn_rm3", TOL_F32, "module running_mean");
    expect_close(diffcl_module_find(m, "running_var"), "bn_rv3", TOL_F32, "module running_var");
    diffcl_module_train(m, 0);
    diffcl_tensor *x = ref_as("bn_x0", DIFFCL_F32), *y = NULL;
    ck_ok(diffcl_module_forward(m, x, &y));
    expect_close(y, "bn_eval_y", TOL_F32, "BatchNorm module eval output");
    ck_assert(nbt_value(m) == 3.0); /* evaluation does not count */
    diffcl_tensor_free(y);
    /* wrong channel count */
    int64_t s[3] = {2, 5, 3};
    diffcl_tensor *bad = test_randn(ctx, DIFFCL_F32, 3, s, 1);
    expect_error(diffcl_module_forward(m, bad, &y), DIFFCL_ERR_SHAPE, "channels");
    diffcl_tensor_free(bad);
    diffcl_module_free(m);

    /* no affine, no running statistics: nothing registered, batch statistics always */
    m = norm(DIFFCL_NORM_BATCH, 4, 0, 0);
    ck_assert_int_eq(diffcl_module_state_count(m, DIFFCL_STATE_ALL), 0);
    diffcl_tensor *y1 = NULL, *y2 = NULL;
    ck_ok(diffcl_module_forward(m, x, &y1));
    diffcl_module_train(m, 0);
    ck_ok(diffcl_module_forward(m, x, &y2));
    ck_assert(test_rel_error(y2, y1) == 0);
    diffcl_tensor_free(y1);
    diffcl_tensor_free(y2);
    diffcl_tensor_free(x);
    diffcl_module_free(m);
}
END_TEST

START_TEST(test_instancenorm_module)
{
    /* PyTorch's InstanceNorm3d defaults: affine=False, track_running_stats=False */
    diffcl_module *m = norm(DIFFCL_NORM_INSTANCE, 3, 0, 0);
    ck_assert_int_eq(diffcl_module_state_count(m, DIFFCL_STATE_ALL), 0);
    ck_assert_str_eq(diffcl_module_type(m), "instancenorm");
    diffcl_tensor *x = ref_as("in_x", DIFFCL_F32), *y = NULL;
    ck_ok(diffcl_module_forward(m, x, &y));
    expect_close(y, "in_y", TOL_F32, "InstanceNorm module");
    diffcl_tensor_free(y);
    diffcl_module_train(m, 0); /* no running stats: instance statistics in eval too */
    ck_ok(diffcl_module_forward(m, x, &y));
    expect_close(y, "in_y", TOL_F32, "InstanceNorm module eval");
    diffcl_tensor_free(y);
    diffcl_module_free(m);

    /* InstanceNorm3d(3, affine=True, track_running_stats=True) */
    m = norm(DIFFCL_NORM_INSTANCE, 3, 1, 1);
    entry_want want[5] = {{"weight", 1, 3, DIFFCL_F32, 1},
                          {"bias", 1, 3, DIFFCL_F32, 1},
                          {"running_mean", 1, 3, DIFFCL_F32, 0},
                          {"running_var", 1, 3, DIFFCL_F32, 0},
                          {"num_batches_tracked", 0, 0, DIFFCL_I64, 0}};
    expect_entries(m, want, 5);
    load_param(m, "weight", "in_w");
    load_param(m, "bias", "in_b");
    ck_ok(diffcl_module_forward(m, x, &y));
    expect_close(y, "in_aff_y", TOL_F32, "InstanceNorm affine module");
    expect_close(diffcl_module_find(m, "running_mean"), "in_rm1", TOL_F32, "instance running_mean");
    expect_close(diffcl_module_find(m, "running_var"), "in_rv1", TOL_F32, "instance running_var");
    ck_assert(nbt_value(m) == 1.0);
    diffcl_tensor_free(y);
    diffcl_tensor_free(x);
    diffcl_module_free(m);
}
END_TEST

START_TEST(test_group_layer_norm_modules)
{
    diffcl_norm_options o = DIFFCL_NORM_OPTIONS_INIT;
    o.kind = DIFFCL_NORM_GROUP;
    o.channels = 6;
    o.groups = 3;
    diffcl_module *m = NULL;
    ck_ok(diffcl_norm_create(ctx, &o, &m));
    entry_want gw[2] = {{"weight", 1, 6, DIFFCL_F32, 1}, {"bias", 1, 6, DIFFCL_F32, 1}};
    expect_entries(m, gw, 2);
    ck_assert_str_eq(diffcl_module_type(m), "groupnorm");
    load_param(m, "weight", "gn_w");
    load_param(m, "bias", "gn_b");
    diffcl_tensor *x = ref_as("gn_x", DIFFCL_F32), *y = NULL;
    ck_ok(diffcl_module_forward(m, x, &y));
    expect_close(y, "gn_y", TOL_F32, "GroupNorm module");
    diffcl_tensor_free(y);
    diffcl_tensor_free(x);
    diffcl_module_free(m);
    /* default 16 groups are clamped to 8 channels; 6 channels with 4 groups is an error */
    diffcl_norm_options_init(&o);
    o.kind = DIFFCL_NORM_GROUP;
    o.channels = 8;
    ck_ok(diffcl_norm_create(ctx, &o, &m));
    diffcl_module_free(m);
    o.channels = 6;
    o.groups = 4;
    expect_error(diffcl_norm_create(ctx, &o, &m), DIFFCL_ERR_INVALID_ARGUMENT, "groups");
    ck_assert_ptr_null(m);

    diffcl_norm_options_init(&o);
    o.kind = DIFFCL_NORM_LAYER;
    o.channels = 8;
    ck_ok(diffcl_norm_create(ctx, &o, &m));
    entry_want lw[2] = {{"weight", 1, 8, DIFFCL_F32, 1}, {"bias", 1, 8, DIFFCL_F32, 1}};
    expect_entries(m, lw, 2);
    load_param(m, "weight", "ln_w");
    load_param(m, "bias", "ln_b");
    x = ref_as("ln_x", DIFFCL_F32);
    ck_ok(diffcl_module_forward(m, x, &y));
    expect_close(y, "ln_y", TOL_F32, "LayerNorm module");
    diffcl_tensor_free(y);
    diffcl_tensor_free(x);
    int64_t s[2] = {3, 7};
    x = test_randn(ctx, DIFFCL_F32, 2, s, 1);
    expect_error(diffcl_module_forward(m, x, &y), DIFFCL_ERR_SHAPE, "channels");
    diffcl_tensor_free(x);
    diffcl_module_free(m);

    diffcl_norm_options_init(&o);
    o.kind = DIFFCL_NORM_NONE;
    o.channels = 8;
    ck_ok(diffcl_norm_create(ctx, &o, &m));
    ck_assert_int_eq(diffcl_module_state_count(m, DIFFCL_STATE_ALL), 0);
    diffcl_module_free(m);
    o.channels = 0;
    expect_error(diffcl_norm_create(ctx, &o, &m), DIFFCL_ERR_INVALID_ARGUMENT, "channels");
}
END_TEST

START_TEST(test_linear_module)
{
    diffcl_rng_key key = diffcl_rng_key_make(3, 0x4c490000u, 2, 0);
    diffcl_module *m = NULL, *m2 = NULL, *nb = NULL;
    ck_ok(diffcl_linear_create(ctx, 25, 7, 1, key, &m));
    ck_assert_str_eq(diffcl_module_type(m), "linear");
    entry_want want[2] = {{"weight", 2, 7, DIFFCL_F32, 1}, {"bias", 1, 7, DIFFCL_F32, 1}};
    expect_entries(m, want, 2);
    ck_assert_int_eq(diffcl_tensor_dim(diffcl_module_find(m, "weight"), 1), 25);
    /* PyTorch init: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias */
    float *w = values_f32(diffcl_module_find(m, "weight")), *b = values_f32(diffcl_module_find(m, "bias"));
    double lo = 1, hi = -1;
    for (int i = 0; i < 175; i++) {
        ck_assert(fabsf(w[i]) <= 0.2f);
        lo = fmin(lo, w[i]);
        hi = fmax(hi, w[i]);
    }
    ck_assert(lo < -0.15 && hi > 0.15);
    for (int i = 0; i < 7; i++) ck_assert(fabsf(b[i]) <= 0.2f);
    ck_assert(memcmp(w, b, 7 * sizeof(float)) != 0); /* independent draws */
    /* the same key gives the same parameters */
    ck_ok(diffcl_linear_create(ctx, 25, 7, 1, key, &m2));
    ck_assert(test_rel_error(diffcl_module_find(m2, "weight"), diffcl_module_find(m, "weight")) == 0);
    ck_assert(test_rel_error(diffcl_module_find(m2, "bias"), diffcl_module_find(m, "bias")) == 0);
    ck_ok(diffcl_linear_create(ctx, 25, 7, 0, key, &nb));
    ck_assert_int_eq(diffcl_module_state_count(nb, DIFFCL_STATE_ALL), 1);
    int64_t s[2] = {3, 25};
    diffcl_tensor *x = test_randn(ctx, DIFFCL_F32, 2, s, 1), *y = NULL, *r = NULL;
    ck_ok(diffcl_module_forward(m, x, &y));
    ck_ok(diffcl_linear(x, diffcl_module_find(m, "weight"), diffcl_module_find(m, "bias"), &r));
    ck_assert(test_rel_error(y, r) == 0);
    ck_assert_int_eq(diffcl_tensor_dim(y, 1), 7);
    free(w);
    free(b);
    diffcl_tensor_free(y);
    diffcl_tensor_free(r);
    diffcl_tensor_free(x);
    diffcl_module_free(m);
    diffcl_module_free(m2);
    diffcl_module_free(nb);
    expect_error(diffcl_linear_create(ctx, 0, 7, 1, key, &m), DIFFCL_ERR_INVALID_ARGUMENT,
                 "in_features");
}
END_TEST

START_TEST(test_activation_modules)
{
    static const char *const types[5] = {"relu", "leaky_relu", "silu", "gelu", "sigmoid"};
    int64_t s[2] = {4, 6};
    diffcl_tensor *x = test_randn(ctx, DIFFCL_F32, 2, s, 50);
    for (int k = 0; k < 5; k++) {
        diffcl_module *m = NULL;
        ck_ok(diffcl_activation_create(ctx, (diffcl_activation_kind)k, &m));
        ck_assert_str_eq(diffcl_module_type(m), types[k]);
        ck_assert_int_eq(diffcl_module_state_count(m, DIFFCL_STATE_ALL), 0);
        diffcl_tensor *y = NULL, *r = NULL;
        ck_ok(diffcl_module_forward(m, x, &y));
        int a = k == 0 ? A_RELU : k == 1 ? A_LEAKY : k == 2 ? A_SILU : k == 3 ? A_GELU : A_SIGMOID;
        diffcl_tensor *in[1] = {x};
        ck_ok(f_act(in, 1, &r, &a));
        ck_assert(test_rel_error(y, r) == 0);
        diffcl_tensor_free(y);
        diffcl_tensor_free(r);
        diffcl_module_free(m);
    }
    diffcl_module *m = NULL;
    expect_error(diffcl_activation_create(ctx, (diffcl_activation_kind)9, &m),
                 DIFFCL_ERR_INVALID_ARGUMENT, "activation");
    diffcl_tensor_free(x);
}
END_TEST

START_TEST(test_sequential)
{
    diffcl_module *seq = NULL, *l0 = NULL, *act = NULL, *drop = NULL, *l3 = NULL, *bn = NULL;
    ck_ok(diffcl_sequential_create(ctx, &seq));
    ck_ok(diffcl_linear_create(ctx, 5, 4, 1, diffcl_rng_key_make(1, 1, 0, 0), &l0));
    ck_ok(diffcl_activation_create(ctx, DIFFCL_ACT_RELU, &act));
    ck_ok(diffcl_dropout_create(ctx, 0.5, 0, 3, 4, &drop));
    ck_ok(diffcl_linear_create(ctx, 4, 3, 1, diffcl_rng_key_make(1, 1, 1, 0), &l3));
    bn = norm(DIFFCL_NORM_BATCH, 3, 1, 1);
    diffcl_module *kids[5] = {l0, act, drop, l3, bn};
    for (int i = 0; i < 5; i++) ck_ok(diffcl_sequential_append(seq, kids[i]));
    ck_assert_str_eq(diffcl_module_type(seq), "sequential");
    entry_want want[9] = {{"0.weight", 2, 4, DIFFCL_F32, 1},
                          {"0.bias", 1, 4, DIFFCL_F32, 1},
                          {"3.weight", 2, 3, DIFFCL_F32, 1},
                          {"3.bias", 1, 3, DIFFCL_F32, 1},
                          {"4.weight", 1, 3, DIFFCL_F32, 1},
                          {"4.bias", 1, 3, DIFFCL_F32, 1},
                          {"4.running_mean", 1, 3, DIFFCL_F32, 0},
                          {"4.running_var", 1, 3, DIFFCL_F32, 0},
                          {"4.num_batches_tracked", 0, 0, DIFFCL_I64, 0}};
    expect_entries(seq, want, 9);
    ck_assert_ptr_eq(diffcl_module_child(seq, "1"), act);
    ck_assert_str_eq(diffcl_module_type(diffcl_module_child(seq, "2")), "dropout");
    ck_assert_int_eq(diffcl_module_num_parameters(seq), 4 * 5 + 4 + 3 * 4 + 3 + 3 + 3);

    /* eval: the forward is the composition of the children, dropout off */
    diffcl_module_train(seq, 0);
    ck_assert(!diffcl_module_is_training(drop) && !diffcl_module_is_training(bn));
    int64_t s[2] = {6, 5};
    diffcl_tensor *x = test_randn(ctx, DIFFCL_F32, 2, s, 60), *y = NULL, *cur = NULL;
    ck_ok(diffcl_module_forward(seq, x, &y));
    cur = diffcl_tensor_retain(x);
    for (int i = 0; i < 5; i++) {
        diffcl_tensor *nx = NULL;
        ck_ok(diffcl_module_forward(kids[i], cur, &nx));
        diffcl_tensor_free(cur);
        cur = nx;
    }
    ck_assert(test_rel_error(y, cur) == 0);
    diffcl_tensor_free(cur);
    diffcl_tensor_free(y);
    /* train: batch statistics and dropout; gradients reach every parameter */
    diffcl_module_train(seq, 1);
    ck_assert(diffcl_module_is_training(drop) && diffcl_module_is_training(bn));
    diffcl_tensor *sum = NULL;
    ck_ok(diffcl_module_forward(seq, x, &y));
    ck_ok(diffcl_sum_all(y, &sum));
    ck_ok(diffcl_backward(sum, NULL));
    ck_assert(nbt_value(bn) == 1.0);
    for (int i = 0; i < diffcl_module_state_count(seq, DIFFCL_STATE_PARAMS); i++) {
        const char *name = NULL;
        diffcl_tensor *t = NULL;
        ck_ok(diffcl_module_state_entry(seq, DIFFCL_STATE_PARAMS, i, &name, &t, NULL));
        ck_assert_msg(diffcl_tensor_grad(t) != NULL, "%s has no gradient", name);
    }
    diffcl_tensor_free(sum);
    diffcl_tensor_free(y);

    /* errors: an owned child, a non-sequential parent, an error inside a child */
    expect_error(diffcl_sequential_append(seq, act), DIFFCL_ERR_STATE, "already belongs");
    diffcl_module *relu = NULL;
    ck_ok(diffcl_activation_create(ctx, DIFFCL_ACT_RELU, &relu));
    expect_error(diffcl_sequential_append(l0, relu), DIFFCL_ERR_INVALID_ARGUMENT, "not a sequential");
    int64_t sb[2] = {6, 7};
    diffcl_tensor *bad = test_randn(ctx, DIFFCL_F32, 2, sb, 61);
    expect_error(diffcl_module_forward(seq, bad, &y), DIFFCL_ERR_SHAPE, "sequential child 0");
    diffcl_tensor_free(bad);

    /* an empty sequential is the identity */
    diffcl_module *empty = NULL;
    ck_ok(diffcl_sequential_create(ctx, &empty));
    ck_ok(diffcl_module_forward(empty, x, &y));
    ck_assert(test_rel_error(y, x) == 0);
    diffcl_tensor_free(y);
    diffcl_module_free(empty);
    diffcl_tensor_free(x);
    diffcl_module_free(seq);
}
END_TEST

static Suite *layer_suite(void)
{
    Suite *s = suite_create("layer");
    TCase *t = tcase_create("nn");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_set_timeout(t, 60);
    tcase_add_test(t, test_activation_parity);
    tcase_add_test(t, test_activation_gradcheck);
    tcase_add_test(t, test_activation_values);
    tcase_add_test(t, test_softmax_parity);
    tcase_add_test(t, test_softmax_gradcheck);
    tcase_add_test(t, test_softmax_large_inner);
    tcase_add_test(t, test_batch_norm_parity);
    tcase_add_test(t, test_batch_norm_gradcheck);
    tcase_add_test(t, test_batch_norm_errors);
    tcase_add_test(t, test_group_norm_parity);
    tcase_add_test(t, test_group_norm_gradcheck);
    tcase_add_test(t, test_group_norm_errors);
    tcase_add_test(t, test_layer_norm_parity);
    tcase_add_test(t, test_layer_norm_gradcheck);
    tcase_add_test(t, test_layer_norm_errors);
    tcase_add_test(t, test_linear_parity);
    tcase_add_test(t, test_linear_gradcheck);
    tcase_add_test(t, test_linear_errors);
    tcase_add_test(t, test_dropout_statistics);
    tcase_add_test(t, test_dropout_channelwise);
    tcase_add_test(t, test_dropout_thread_independent);
    tcase_add_test(t, test_dropout_identity_and_grad);
    tcase_add_test(t, test_dropout_module);
    tcase_add_test(t, test_thread_count_independent);
    tcase_add_test(t, test_batchnorm_module);
    tcase_add_test(t, test_instancenorm_module);
    tcase_add_test(t, test_group_layer_norm_modules);
    tcase_add_test(t, test_linear_module);
    tcase_add_test(t, test_activation_modules);
    tcase_add_test(t, test_sequential);
    suite_add_tcase(s, t);
    return s;
}

int main(void) { return test_run_suite(layer_suite()); }
