/* Suite loss: cross-entropy, soft Dice, DiceCE, MSE and the prototype InfoNCE -- PyTorch
 * parity (float64 references from tests/reference/gen_loss.py) for the F64 and F32 paths,
 * finite-difference checks in F64 of every loss wrt every differentiable input, bad-input
 * errors, thread-count invariance, and the prototype / sampling / ramp-up helpers. */
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
    if (!fx) ck_ok(diffcl_safetensors_load(ctx, test_fixture_path("loss.safetensors"), &fx));
    diffcl_tensor *t = diffcl_tensor_dict_get(fx, name);
    ck_assert_msg(t != NULL, "fixture loss.safetensors has no tensor %s", name);
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

static void expect_close(const diffcl_tensor *got, const char *ref_name, double tol, const char *what)
{
    diffcl_tensor *want = ref(ref_name);
    ck_assert_msg(got != NULL, "%s: no tensor to compare with %s", what, ref_name);
    ck_assert_int_eq(diffcl_tensor_numel(got), diffcl_tensor_numel(want));
    double e = test_rel_error(got, want);
    ck_assert_msg(e <= tol, "%s vs %s: relative error %g > %g", what, ref_name, e, tol);
}

static double item(const diffcl_tensor *t)
{
    double v = NAN;
    ck_ok(diffcl_tensor_item(t, &v));
    return v;
}

/* ------------------------------------------------------- the cases under test ---- */

enum {
    CE_PLAIN, CE_WIGN, CE_MASK, CE_ALL, CE_2D,
    DICE_SSL4MIS, DICE_SSL4MIS_W, DICE_UAMT, DICE_FG, DICE_PS, DICE_MASK, DICE_2D,
    DCE, DCE_MASK, MSE, MSE_MASK, PC_ALL, PC_IDX, N_CASES
};

typedef struct loss_case {
    const char *name;        /* fixture prefix */
    const char *in[2];       /* differentiable inputs (fixture names) */
    const char *grad[2];     /* fixture gradient suffixes */
} loss_case;

static const loss_case CASES[N_CASES] = {
    {"ce_plain", {"x3", NULL}, {"gx", NULL}},
    {"ce_wign", {"x3", NULL}, {"gx", NULL}},
    {"ce_mask", {"x3", NULL}, {"gx", NULL}},
    {"ce_all", {"x3", NULL}, {"gx", NULL}},
    {"ce_2d", {"x2", NULL}, {"gx", NULL}},
    {"dice_ssl4mis", {"x3", NULL}, {"gx", NULL}},
    {"dice_ssl4mis_w", {"x3", NULL}, {"gx", NULL}},
    {"dice_uamt", {"xb", NULL}, {"gx", NULL}},
    {"dice_fg", {"x3", NULL}, {"gx", NULL}},
    {"dice_ps", {"x3", NULL}, {"gx", NULL}},
    {"dice_mask", {"x3", NULL}, {"gx", NULL}},
    {"dice_2d", {"x2", NULL}, {"gx", NULL}},
    {"dce", {"x3", NULL}, {"gx", NULL}},
    {"dce_mask", {"x3", NULL}, {"gx", NULL}},
    {"mse", {"mse_a", "mse_b"}, {"gx", "gt"}},
    {"mse_mask", {"mse_a", "mse_b"}, {"gx", "gt"}},
    {"pc_all", {"pc_f", "pc_p"}, {"gf", "gp"}},
    {"pc_idx", {"pc_f", "pc_p"}, {"gf", "gp"}},
};

/* Run case *user on inputs in[] (targets, masks and weights come from the fixture). */
static diffcl_status run_case(diffcl_tensor *const *in, int n, diffcl_tensor **out, void *user)
{
    (void)n;
    int c = *(const int *)user;
    diffcl_ce_options ce = DIFFCL_CE_OPTIONS_INIT;
    diffcl_dice_options dice = DIFFCL_DICE_OPTIONS_INIT;
    diffcl_dice_ce_options dce = DIFFCL_DICE_CE_OPTIONS_INIT;
    diffcl_proto_contrast_options pc = DIFFCL_PROTO_CONTRAST_OPTIONS_INIT;
    switch (c) {
    case CE_PLAIN: return diffcl_cross_entropy_loss(in[0], ref("y3"), NULL, out);
    case CE_WIGN:
        ce.class_weight = ref("cw3");
        ce.ignore_index = 255;
        return diffcl_cross_entropy_loss(in[0], ref("y3_ign_u8"), &ce, out);
    case CE_MASK:
        ce.voxel_weight = ref("m3");
        return diffcl_cross_entropy_loss(in[0], ref("y3"), &ce, out);
    case CE_ALL:
        ce.class_weight = ref("cw3");
        ce.voxel_weight = ref("m3");
        ce.ignore_index = 255;
        return diffcl_cross_entropy_loss(in[0], ref("y3_ign_u8"), &ce, out);
    case CE_2D: return diffcl_cross_entropy_loss(in[0], ref("y2_i32"), &ce, out);
    case DICE_SSL4MIS:
        dice.include_background = 1;
        return diffcl_dice_loss(in[0], ref("y3"), &dice, out);
    case DICE_SSL4MIS_W:
        dice.include_background = 1;
        dice.class_weight = ref("dice_w");
        return diffcl_dice_loss(in[0], ref("y3"), &dice, out);
    case DICE_UAMT: return diffcl_dice_loss(in[0], ref("yb_u8"), NULL, out);
    case DICE_FG: return diffcl_dice_loss(in[0], ref("y3"), &dice, out);
    case DICE_PS:
        dice.per_sample = 1;
        dice.squared = 0;
        dice.smooth = 1.0;
        return diffcl_dice_loss(in[0], ref("y3"), &dice, out);
    case DICE_MASK:
        dice.include_background = 1;
        dice.voxel_weight = ref("m3");
        dice.ignore_index = 255;
        return diffcl_dice_loss(in[0], ref("y3_ign_u8"), &dice, out);
    case DICE_2D:
        dice.per_sample = 1;
        return diffcl_dice_loss(in[0], ref("y2_i32"), &dice, out);
    case DCE: return diffcl_dice_ce_loss(in[0], ref("y3"), NULL, out, NULL);
    case DCE_MASK:
        dce.dice_weight = 0.5;
        dce.ce_weight = 2.0;
        dce.voxel_weight = ref("m3");
        return diffcl_dice_ce_loss(in[0], ref("y3"), &dce, out, NULL);
    case MSE: return diffcl_mse_loss(in[0], in[1], NULL, out);
    case MSE_MASK: return diffcl_mse_loss(in[0], in[1], ref("mse_m"), out);
    case PC_ALL: return diffcl_proto_contrast_loss(in[0], in[1], ref("pc_y"), NULL, out);
    default:
        pc.indices = ref("pc_idx");
        pc.voxel_weight = ref("pc_m");
        return diffcl_proto_contrast_loss(in[0], in[1], ref("pc_y"), &pc, out);
    }
}

static int n_inputs(int c) { return CASES[c].in[1] ? 2 : 1; }

static void parity_case(int c, diffcl_dtype dt)
{
    const loss_case *lc = &CASES[c];
    int n = n_inputs(c);
    double tol = dt == DIFFCL_F32 ? TOL_F32 : TOL_F64;
    diffcl_tensor *in[2] = {NULL, NULL}, *loss = NULL;
    for (int k = 0; k < n; k++) {
        in[k] = ref_as(lc->in[k], dt);
        ck_ok(diffcl_tensor_set_requires_grad(in[k], 1));
    }
    ck_ok(run_case(in, n, &loss, &c));
    ck_assert_int_eq(diffcl_tensor_dtype(loss), dt);
    ck_assert_int_eq(diffcl_tensor_ndim(loss), 0);
    char name[96], what[128];
    snprintf(name, sizeof name, "%s_loss", lc->name);
    snprintf(what, sizeof what, "%s %s loss", lc->name, diffcl_dtype_name(dt));
    expect_close(loss, name, tol, what);
    ck_ok(diffcl_backward(loss, NULL));
    for (int k = 0; k < n; k++) {
        snprintf(name, sizeof name, "%s_%s", lc->name, lc->grad[k]);
        snprintf(what, sizeof what, "%s %s d/d%s", lc->name, diffcl_dtype_name(dt), lc->in[k]);
        ck_assert_int_eq(diffcl_tensor_dtype(diffcl_tensor_grad(in[k])), dt);
        expect_close(diffcl_tensor_grad(in[k]), name, tol, what);
        diffcl_tensor_free(in[k]);
    }
    diffcl_tensor_free(loss);
}

/* ------------------------------------------------------------------ parity ---- */

START_TEST(test_parity_f64)
{
    parity_case(_i, DIFFCL_F64);
}
END_TEST

START_TEST(test_parity_f32)
{
    parity_case(_i, DIFFCL_F32);
}
END_TEST

/* --------------------------------------------------------------- gradcheck ---- */

START_TEST(test_gradcheck)
{
    int c = _i, n = n_inputs(c);
    diffcl_tensor *in[2] = {NULL, NULL};
    for (int k = 0; k < n; k++) {
        in[k] = ref_as(CASES[c].in[k], DIFFCL_F64);
        ck_ok(diffcl_tensor_set_requires_grad(in[k], 1));
    }
    diffcl_gradcheck_options o = DIFFCL_GRADCHECK_OPTIONS_INIT;
    o.max_checks = 97;
    diffcl_gradcheck_result r = {sizeof r, 0, 0, 0, 0, 0, 0};
    diffcl_status s = diffcl_gradcheck(run_case, &c, in, n, &o, &r);
    ck_assert_msg(s == DIFFCL_OK, "gradcheck %s: %s (max abs %g, rel %g)", CASES[c].name,
                  diffcl_last_error(), r.max_abs_error, r.max_rel_error);
    ck_assert_int_gt(r.n_checked, 0);
    for (int k = 0; k < n; k++) diffcl_tensor_free(in[k]);
}
END_TEST

/* Gradcheck with random logits of several ranks ([N,C], 2D, 3D) and every loss. */
static diffcl_status f_small(diffcl_tensor *const *in, int n, diffcl_tensor **out, void *user)
{
    (void)n;
    diffcl_tensor *const *t = (diffcl_tensor *const *)user; /* t[0] target, t[1] mask */
    diffcl_dice_options d = DIFFCL_DICE_OPTIONS_INIT;
    d.per_sample = 1;
    d.voxel_weight = t[1];
    diffcl_dice_ce_options o = DIFFCL_DICE_CE_OPTIONS_INIT;
    o.dice = &d;
    o.ce_weight = 0.7;
    return diffcl_dice_ce_loss(in[0], t[0], &o, out, NULL);
}

START_TEST(test_gradcheck_ranks)
{
    int64_t shapes[3][5] = {{5, 3}, {2, 3, 4, 3}, {1, 4, 2, 3, 2}};
    int nds[3] = {2, 4, 5};
    for (int v = 0; v < 3; v++) {
        int nd = nds[v];
        diffcl_tensor *x = test_randn(ctx, DIFFCL_F64, nd, shapes[v], 100 + v);
        ck_ok(diffcl_tensor_set_requires_grad(x, 1));
        int64_t ts[4];
        ts[0] = shapes[v][0];
        for (int i = 2; i < nd; i++) ts[i - 1] = shapes[v][i];
        diffcl_tensor *y = NULL, *m = NULL;
        ck_ok(diffcl_tensor_new(ctx, DIFFCL_I64, nd - 1, ts, &y));
        ck_ok(diffcl_tensor_new(ctx, DIFFCL_F64, nd - 1, ts, &m));
        int64_t nv = diffcl_tensor_numel(y), C = shapes[v][1];
        int64_t *yp = diffcl_tensor_data(y);
        double *mp = diffcl_tensor_data(m);
        for (int64_t i = 0; i < nv; i++) {
            yp[i] = (i * 7 + v) % C;
            mp[i] = (i % 5 == 3) ? 0.0 : 0.5 + 0.1 * (double)(i % 3);
        }
        diffcl_tensor *tm[2] = {y, m};
        diffcl_gradcheck_result r = {sizeof r, 0, 0, 0, 0, 0, 0};
        diffcl_status s = diffcl_gradcheck(f_small, tm, &x, 1, NULL, &r);
        ck_assert_msg(s == DIFFCL_OK, "rank %d: %s", nd, diffcl_last_error());
        diffcl_tensor_free(x);
        diffcl_tensor_free(y);
        diffcl_tensor_free(m);
    }
}
END_TEST

/* ------------------------------------------------------------- behaviour ---- */

START_TEST(test_all_ignored_is_zero)
{
    int64_t xs[3] = {2, 3, 4}, ys[2] = {2, 4};
    diffcl_tensor *x = test_randn(ctx, DIFFCL_F64, 3, xs, 7), *y = NULL, *l = NULL;
    ck_ok(diffcl_tensor_set_requires_grad(x, 1));
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_I32, 2, ys, &y));
    ck_ok(diffcl_tensor_fill(y, -100));
    ck_ok(diffcl_cross_entropy_loss(x, y, NULL, &l));
    ck_assert_double_eq(item(l), 0.0);
    ck_ok(diffcl_backward(l, NULL));
    double g[24];
    ck_ok(diffcl_tensor_copy_to(diffcl_tensor_grad(x), g, sizeof g));
    for (int i = 0; i < 24; i++) ck_assert_double_eq(g[i], 0.0);
    diffcl_tensor_free(l);
    /* an all-zero mask: same for the InfoNCE */
    int64_t ps[2] = {2, 3};
    diffcl_tensor *p = test_randn(ctx, DIFFCL_F64, 2, ps, 8), *m = NULL;
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_U8, 2, ys, &m));
    ck_ok(diffcl_tensor_fill(y, 1));
    diffcl_proto_contrast_options o = DIFFCL_PROTO_CONTRAST_OPTIONS_INIT;
    o.voxel_weight = m;
    ck_ok(diffcl_proto_contrast_loss(x, p, y, &o, &l));
    ck_assert_double_eq(item(l), 0.0);
    diffcl_tensor_free(l);
    diffcl_tensor *all[] = {x, y, p, m};
    for (int i = 0; i < 4; i++) diffcl_tensor_free(all[i]);
}
END_TEST

START_TEST(test_no_grad_and_parts)
{
    diffcl_tensor *x = ref_as("x3", DIFFCL_F64), *l = NULL;
    ck_ok(diffcl_tensor_set_requires_grad(x, 1));
    int prev = diffcl_set_grad_enabled(ctx, 0);
    double parts[2] = {0, 0};
    ck_ok(diffcl_dice_ce_loss(x, ref("y3"), NULL, &l, parts));
    diffcl_set_grad_enabled(ctx, prev);
    ck_assert_int_eq(diffcl_tensor_requires_grad(l), 0);
    ck_assert_double_eq_tol(item(l), item(ref("dce_loss")), 1e-12);
    ck_assert_double_eq_tol(parts[0], item(ref("dice_fg_loss")), 1e-12);
    ck_assert_double_eq_tol(parts[1], item(ref("ce_plain_loss")), 1e-12);
    diffcl_tensor_free(l);
    diffcl_tensor_free(x);
}
END_TEST

/* Non-contiguous logits (a permuted view) give the same loss and gradient. */
START_TEST(test_strided_logits)
{
    diffcl_tensor *x = ref_as("x3", DIFFCL_F64), *xp = NULL, *xv = NULL, *l = NULL;
    int perm[5] = {0, 1, 2, 4, 3}; /* swap H and W twice: a strided view of the same values */
    ck_ok(diffcl_tensor_permute(x, perm, &xp));
    diffcl_tensor *xc = NULL;
    ck_ok(diffcl_tensor_clone(xp, &xc)); /* contiguous [N,C,D,W,H] */
    ck_ok(diffcl_tensor_set_requires_grad(xc, 1));
    ck_ok(diffcl_tensor_permute(xc, perm, &xv)); /* strided [N,C,D,H,W] == x */
    ck_assert_int_eq(diffcl_tensor_is_contiguous(xv), 0);
    ck_ok(diffcl_dice_loss(xv, ref("y3"), NULL, &l));
    ck_assert_double_eq_tol(item(l), item(ref("dice_fg_loss")), 1e-12);
    ck_ok(diffcl_backward(l, NULL));
    diffcl_tensor *g = NULL;
    ck_ok(diffcl_tensor_permute(diffcl_tensor_grad(xc), perm, &g));
    double e = test_rel_error(g, ref("dice_fg_gx"));
    ck_assert_msg(e < 1e-10, "strided gradient error %g", e);
    diffcl_tensor *all[] = {g, l, xv, xc, xp, x};
    for (int i = 0; i < 6; i++) diffcl_tensor_free(all[i]);
}
END_TEST

/* Results are bit-identical whatever the thread count (fixed-order partial sums). */
START_TEST(test_thread_invariance)
{
    diffcl_context_options co = DIFFCL_CONTEXT_OPTIONS_INIT;
    co.n_threads = 2;
    co.log_level = DIFFCL_LOG_WARN;
    diffcl_context *ctx2 = NULL;
    ck_ok(diffcl_context_create(&co, &ctx2));
    int64_t xs[5] = {2, 3, 6, 16, 16}, ys[4] = {2, 6, 16, 16};
    double l1[3], l2[3];
    diffcl_tensor *g1[3] = {NULL}, *g2[3] = {NULL};
    for (int pass = 0; pass < 2; pass++) {
        diffcl_context *c = pass ? ctx2 : ctx;
        diffcl_tensor *x = test_randn(c, DIFFCL_F32, 5, xs, 31), *y = NULL, *l = NULL;
        ck_ok(diffcl_tensor_new(c, DIFFCL_U8, 4, ys, &y));
        uint8_t *yp = diffcl_tensor_data(y);
        for (int64_t i = 0; i < diffcl_tensor_numel(y); i++) yp[i] = (uint8_t)((i * 2654435761u) % 3);
        for (int k = 0; k < 3; k++) {
            diffcl_tensor *xk = NULL;
            ck_ok(diffcl_tensor_clone(x, &xk));
            ck_ok(diffcl_tensor_set_requires_grad(xk, 1));
            if (k == 0) ck_ok(diffcl_cross_entropy_loss(xk, y, NULL, &l));
            else if (k == 1) ck_ok(diffcl_dice_loss(xk, y, NULL, &l));
            else {
                diffcl_tensor *p = test_randn(c, DIFFCL_F32, 2, (int64_t[]){3, 3}, 5);
                ck_ok(diffcl_proto_contrast_loss(xk, p, y, NULL, &l));
                diffcl_tensor_free(p);
            }
            (pass ? l2 : l1)[k] = item(l);
            ck_ok(diffcl_backward(l, NULL));
            (pass ? g2 : g1)[k] = diffcl_tensor_retain(diffcl_tensor_grad(xk));
            diffcl_tensor_free(l);
            diffcl_tensor_free(xk);
        }
        diffcl_tensor_free(x);
        diffcl_tensor_free(y);
    }
    for (int k = 0; k < 3; k++) {
        ck_assert_msg(l1[k] == l2[k], "loss %d differs across thread counts: %.17g vs %.17g", k,
                      l1[k], l2[k]);
        ck_assert_double_eq(test_rel_error(g1[k], g2[k]), 0.0);
        diffcl_tensor_free(g1[k]);
        diffcl_tensor_free(g2[k]);
    }
    diffcl_context_free(ctx2);
}
END_TEST

/* ----------------------------------------------------------------- errors ---- */

START_TEST(test_errors)
{
    diffcl_tensor *x = ref_as("x3", DIFFCL_F64), *l = NULL, *bad = NULL;
    /* target of the wrong shape */
    ck_assert_int_eq(diffcl_cross_entropy_loss(x, ref("y2_i32"), NULL, &l), DIFFCL_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(diffcl_last_error(), "target"));
    ck_assert_ptr_null(l);
    ck_assert_int_eq(diffcl_dice_loss(x, ref("mse_m"), NULL, &l), DIFFCL_ERR_SHAPE);
    /* float targets */
    ck_assert_int_eq(diffcl_cross_entropy_loss(x, ref("m3"), NULL, &l), DIFFCL_ERR_DTYPE);
    /* integer logits */
    ck_assert_int_eq(diffcl_cross_entropy_loss(ref("y3"), ref("y3"), NULL, &l), DIFFCL_ERR_DTYPE);
    /* class out of range (255 is not the ignore_index by default) */
    ck_assert_int_eq(diffcl_cross_entropy_loss(x, ref("y3_ign_u8"), NULL, &l),
                     DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(diffcl_last_error(), "255"));
    ck_assert_int_eq(diffcl_dice_loss(x, ref("y3_ign_u8"), NULL, &l), DIFFCL_ERR_INVALID_ARGUMENT);
    /* class weight of the wrong size, negative smooth, bad voxel weight shape */
    diffcl_ce_options ce = DIFFCL_CE_OPTIONS_INIT;
    ce.class_weight = ref("dice_w");
    ck_ok(diffcl_cross_entropy_loss(x, ref("y3"), &ce, &l));
    diffcl_tensor_free(l);
    ce.class_weight = ref("pc_idx");
    ck_assert_int_eq(diffcl_cross_entropy_loss(x, ref("y3"), &ce, &l), DIFFCL_ERR_DTYPE);
    ce.class_weight = ref("x2");
    ck_assert_int_eq(diffcl_cross_entropy_loss(x, ref("y3"), &ce, &l), DIFFCL_ERR_SHAPE);
    ce.class_weight = NULL;
    ce.voxel_weight = ref("mse_m");
    ck_assert_int_eq(diffcl_cross_entropy_loss(x, ref("y3"), &ce, &l), DIFFCL_ERR_SHAPE);
    diffcl_dice_options d = DIFFCL_DICE_OPTIONS_INIT;
    d.smooth = -1;
    ck_assert_int_eq(diffcl_dice_loss(x, ref("y3"), &d, &l), DIFFCL_ERR_INVALID_ARGUMENT);
    /* NaN in the logits */
    int64_t at[5] = {1, 2, 3, 4, 5};
    ck_ok(diffcl_tensor_set(x, at, NAN));
    ck_assert_int_eq(diffcl_cross_entropy_loss(x, ref("y3"), NULL, &l), DIFFCL_ERR_NUMERIC);
    ck_assert_int_eq(diffcl_dice_loss(x, ref("y3"), NULL, &l), DIFFCL_ERR_NUMERIC);
    /* a NaN weight */
    ck_ok(diffcl_tensor_clone(ref("m3"), &bad));
    ck_ok(diffcl_tensor_set(bad, (int64_t[]){0, 0, 0, 1}, NAN));
    diffcl_tensor *x2 = ref_as("x3", DIFFCL_F64);
    ce.voxel_weight = bad;
    ck_assert_int_eq(diffcl_cross_entropy_loss(x2, ref("y3"), &ce, &l), DIFFCL_ERR_NUMERIC);
    /* foreground Dice needs two classes */
    int64_t s1[3] = {2, 1, 4}, t1[2] = {2, 4};
    diffcl_tensor *x1 = test_randn(ctx, DIFFCL_F64, 3, s1, 3), *y1 = NULL;
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_U8, 2, t1, &y1));
    ck_assert_int_eq(diffcl_dice_loss(x1, y1, NULL, &l), DIFFCL_ERR_SHAPE);
    /* MSE */
    ck_assert_int_eq(diffcl_mse_loss(ref("mse_a"), x2, NULL, &l), DIFFCL_ERR_SHAPE);
    ck_assert_int_eq(diffcl_mse_loss(ref("mse_a"), ref("mse_b"), ref("m3"), &l), DIFFCL_ERR_SHAPE);
    /* InfoNCE: prototypes of the wrong width, indices out of range, bad temperature */
    diffcl_proto_contrast_options pc = DIFFCL_PROTO_CONTRAST_OPTIONS_INIT;
    ck_assert_int_eq(diffcl_proto_contrast_loss(ref("pc_f"), ref("cw3"), ref("pc_y"), &pc, &l),
                     DIFFCL_ERR_SHAPE);
    diffcl_tensor *idx = NULL;
    ck_ok(diffcl_tensor_from_data(ctx, DIFFCL_I64, 1, (int64_t[]){2}, (int64_t[]){3, 120}, &idx));
    pc.indices = idx;
    ck_assert_int_eq(diffcl_proto_contrast_loss(ref("pc_f"), ref("pc_p"), ref("pc_y"), &pc, &l),
                     DIFFCL_ERR_INVALID_ARGUMENT);
    pc.indices = NULL;
    pc.temperature = 0;
    ck_assert_int_eq(diffcl_proto_contrast_loss(ref("pc_f"), ref("pc_p"), ref("pc_y"), &pc, &l),
                     DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(diffcl_cross_entropy_loss(NULL, ref("y3"), NULL, &l), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(diffcl_cross_entropy_loss(x, ref("y3"), NULL, NULL), DIFFCL_ERR_INVALID_ARGUMENT);
    diffcl_tensor *all[] = {x, x2, bad, x1, y1, idx};
    for (int i = 0; i < 6; i++) diffcl_tensor_free(all[i]);
}
END_TEST

/* An options struct from an older, shorter header version keeps the new fields' defaults. */
START_TEST(test_old_struct_size)
{
    diffcl_tensor *x = ref_as("x3", DIFFCL_F64), *l = NULL;
    diffcl_dice_options d = DIFFCL_DICE_OPTIONS_INIT;
    d.include_background = 1;
    d.class_weight = ref("x2"); /* beyond the declared size: must not be read */
    d.struct_size = offsetof(diffcl_dice_options, class_weight);
    ck_ok(diffcl_dice_loss(x, ref("y3"), &d, &l));
    ck_assert_double_eq_tol(item(l), item(ref("dice_ssl4mis_loss")), 1e-12);
    diffcl_tensor_free(l);
    diffcl_tensor_free(x);
}
END_TEST

/* --------------------------------------------------------------- helpers ---- */

START_TEST(test_class_prototypes_and_bank)
{
    for (int dt = 0; dt < 2; dt++) {
        diffcl_dtype t = dt ? DIFFCL_F32 : DIFFCL_F64;
        diffcl_tensor *f = ref_as("pc_f", t), *p = NULL, *cnt = NULL;
        ck_ok(diffcl_class_prototypes(f, ref("pc_y"), ref("pc_m"), 3, &p, &cnt));
        ck_assert_int_eq(diffcl_tensor_dtype(p), t);
        expect_close(p, "proto_ref", dt ? TOL_F32 : TOL_F64, "class prototypes");
        expect_close(cnt, "proto_counts", 1e-12, "class counts");
        diffcl_tensor *bank = ref_as("bank0", t);
        ck_ok(diffcl_prototype_bank_update(bank, p, cnt, 0.99));
        expect_close(bank, "bank1", dt ? TOL_F32 : TOL_F64, "bank update");
        /* an empty class leaves its row alone; a zero row takes the new prototype */
        double c0[3] = {0, 5, 2};
        diffcl_tensor *counts = NULL, *zero = NULL;
        ck_ok(diffcl_tensor_from_data(ctx, DIFFCL_F64, 1, (int64_t[]){3}, c0, &counts));
        diffcl_tensor *b2 = NULL;
        ck_ok(diffcl_tensor_clone(bank, &b2));
        ck_ok(diffcl_tensor_new(ctx, t, 2, (int64_t[]){3, 8}, &zero));
        ck_ok(diffcl_prototype_bank_update(zero, p, counts, 0.99));
        double r0, r1;
        ck_ok(diffcl_tensor_get(zero, (int64_t[]){0, 0}, &r0));
        ck_assert_double_eq(r0, 0.0);
        ck_ok(diffcl_tensor_get(zero, (int64_t[]){1, 3}, &r0));
        ck_ok(diffcl_tensor_get(p, (int64_t[]){1, 3}, &r1));
        ck_assert_double_eq_tol(r0, r1, 1e-6);
        ck_assert_int_eq(diffcl_prototype_bank_update(bank, p, NULL, 1.5), DIFFCL_ERR_INVALID_ARGUMENT);
        ck_assert_int_eq(diffcl_prototype_bank_update(bank, f, NULL, 0.9), DIFFCL_ERR_SHAPE);
        diffcl_tensor *all[] = {f, p, cnt, bank, counts, zero, b2};
        for (int i = 0; i < 7; i++) diffcl_tensor_free(all[i]);
    }
    diffcl_tensor *p = NULL;
    ck_assert_int_eq(diffcl_class_prototypes(ref("pc_f"), ref("pc_y"), NULL, 2, &p, NULL),
                     DIFFCL_ERR_INVALID_ARGUMENT); /* label 2 >= 2 classes */
    ck_assert_ptr_null(p);
}
END_TEST

START_TEST(test_sample_voxels)
{
    int64_t s[3] = {2, 10, 10};
    diffcl_tensor *m = NULL, *a = NULL, *b = NULL, *c = NULL;
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_U8, 3, s, &m));
    uint8_t *mp = diffcl_tensor_data(m);
    int nz = 0;
    for (int i = 0; i < 200; i++) nz += (mp[i] = (uint8_t)(i % 3 == 0));
    diffcl_rng_key k = diffcl_rng_key_make(42, 7, 0, 3);
    ck_ok(diffcl_sample_voxels(m, 25, k, &a));
    ck_ok(diffcl_sample_voxels(m, 25, k, &b));
    ck_assert_int_eq(diffcl_tensor_numel(a), 25);
    ck_assert_double_eq(test_rel_error(a, b), 0.0);
    const int64_t *ap = diffcl_tensor_data(a);
    for (int i = 0; i < 25; i++) {
        ck_assert(mp[ap[i]]);
        if (i) ck_assert_int_lt(ap[i - 1], ap[i]);
    }
    ck_ok(diffcl_sample_voxels(m, -1, k, &c));
    ck_assert_int_eq(diffcl_tensor_numel(c), nz);
    diffcl_tensor_free(b);
    ck_ok(diffcl_sample_voxels(m, 25, diffcl_rng_key_make(42, 7, 0, 4), &b));
    ck_assert_double_ne(test_rel_error(a, b), 0.0);
    diffcl_tensor *all[] = {m, a, b, c};
    for (int i = 0; i < 4; i++) diffcl_tensor_free(all[i]);
}
END_TEST

START_TEST(test_rampups)
{
    ck_assert_double_eq_tol(diffcl_rampup_sigmoid(1.0, 0, 40), exp(-5.0), 1e-15);
    ck_assert_double_eq_tol(diffcl_rampup_sigmoid(2.0, 20, 40), 2.0 * exp(-5.0 * 0.25), 1e-15);
    ck_assert_double_eq(diffcl_rampup_sigmoid(0.1, 40, 40), 0.1);
    ck_assert_double_eq(diffcl_rampup_sigmoid(0.1, 400, 40), 0.1);
    ck_assert_double_eq_tol(diffcl_rampup_sigmoid(1.0, -5, 40), exp(-5.0), 1e-15);
    ck_assert_double_eq(diffcl_rampup_sigmoid(0.3, 0, 0), 0.3);
    ck_assert_double_eq(diffcl_rampup_linear(2.0, 10, 40), 0.5);
    ck_assert_double_eq(diffcl_rampup_linear(2.0, 50, 40), 2.0);
    ck_assert_double_eq(diffcl_rampup_linear(2.0, -1, 40), 0.0);
    ck_assert_double_eq(diffcl_rampup_linear(2.0, 3, 0), 2.0);
}
END_TEST

START_TEST(test_options_init)
{
    diffcl_ce_options a, a0 = DIFFCL_CE_OPTIONS_INIT;
    diffcl_dice_options b, b0 = DIFFCL_DICE_OPTIONS_INIT;
    diffcl_dice_ce_options c, c0 = DIFFCL_DICE_CE_OPTIONS_INIT;
    diffcl_proto_contrast_options d, d0 = DIFFCL_PROTO_CONTRAST_OPTIONS_INIT;
    diffcl_ce_options_init(&a);
    diffcl_dice_options_init(&b);
    diffcl_dice_ce_options_init(&c);
    diffcl_proto_contrast_options_init(&d);
    /* field by field: struct padding is indeterminate */
    ck_assert(a.struct_size == a0.struct_size && a.class_weight == a0.class_weight &&
              a.voxel_weight == a0.voxel_weight && a.ignore_index == a0.ignore_index);
    ck_assert(b.struct_size == b0.struct_size && b.include_background == b0.include_background &&
              b.per_sample == b0.per_sample && b.squared == b0.squared && b.smooth == b0.smooth &&
              b.class_weight == b0.class_weight && b.voxel_weight == b0.voxel_weight &&
              b.ignore_index == b0.ignore_index);
    ck_assert(c.struct_size == c0.struct_size && c.dice_weight == c0.dice_weight &&
              c.ce_weight == c0.ce_weight && c.dice == c0.dice && c.ce == c0.ce &&
              c.voxel_weight == c0.voxel_weight);
    ck_assert(d.struct_size == d0.struct_size && d.temperature == d0.temperature &&
              d.indices == d0.indices && d.voxel_weight == d0.voxel_weight &&
              d.ignore_index == d0.ignore_index);
    ck_assert_int_eq(b.squared, 1);
    ck_assert_int_eq(b.include_background, 0);
    ck_assert_int_eq(a.ignore_index, -100);
    ck_assert_double_eq(b.smooth, 1e-5);
    ck_assert_double_eq(d.temperature, 0.1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("loss");
    TCase *tc = tcase_create("loss");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_parity_f64, 0, N_CASES);
    tcase_add_loop_test(tc, test_parity_f32, 0, N_CASES);
    tcase_add_loop_test(tc, test_gradcheck, 0, N_CASES);
    tcase_add_test(tc, test_gradcheck_ranks);
    tcase_add_test(tc, test_all_ignored_is_zero);
    tcase_add_test(tc, test_no_grad_and_parts);
    tcase_add_test(tc, test_strided_logits);
    tcase_add_test(tc, test_thread_invariance);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_old_struct_size);
    tcase_add_test(tc, test_class_prototypes_and_bank);
    tcase_add_test(tc, test_sample_voxels);
    tcase_add_test(tc, test_rampups);
    tcase_add_test(tc, test_options_init);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}
