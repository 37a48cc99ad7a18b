/* Suite autograd: the engine, hooks, no-grad, and a finite-difference check of every op. */
#include <math.h>
#include <string.h>

#include "test_util.h"

static diffcl_context *ctx;
static void setup(void) { ctx = test_context(); }
static void teardown(void) { diffcl_context_free(ctx); }

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

/* ---- one function per op under test; `user` selects a variant ---- */

static diffcl_status f_binary(diffcl_tensor *const *in, int n, diffcl_tensor **out, void *user)
{
    (void)n;
    switch (*(int *)user) {
    case 0: return diffcl_add(in[0], in[1], out);
    case 1: return diffcl_sub(in[0], in[1], out);
    case 2: return diffcl_mul(in[0], in[1], out);
    default: return diffcl_div(in[0], in[1], out);
    }
}

static diffcl_status f_unary(diffcl_tensor *const *in, int n, diffcl_tensor **out, void *user)
{
    (void)n;
    diffcl_tensor *pos = NULL;
    diffcl_status s;
    switch (*(int *)user) {
    case 0: return diffcl_affine(in[0], -1.5, 0.25, out);
    case 1: return diffcl_exp(in[0], out);
    case 2: return diffcl_square(in[0], out);
    case 3: return diffcl_abs(in[0], out);
    default:
        /* log, sqrt and pow on a positive argument: 1.5 + x^2 */
        s = diffcl_square(in[0], &pos);
        if (s == DIFFCL_OK) {
            diffcl_tensor *p2 = NULL;
            s = diffcl_affine(pos, 1.0, 1.5, &p2);
            diffcl_tensor_free(pos);
            pos = p2;
        }
        if (s != DIFFCL_OK) return s;
        int which = *(int *)user;
        s = which == 4 ? diffcl_log(pos, out) : which == 5 ? diffcl_sqrt(pos, out)
                                                             : diffcl_pow_scalar(pos, -0.7, out);
        diffcl_tensor_free(pos);
        return s;
    }
}

static diffcl_status f_reduce(diffcl_tensor *const *in, int n, diffcl_tensor **out, void *user)
{
    (void)n;
    switch (*(int *)user) {
    case 0: return diffcl_sum(in[0], 1, 0, out);
    case 1: return diffcl_mean(in[0], -1, 1, out);
    case 2: return diffcl_max(in[0], 0, 0, out);
    case 3: return diffcl_sum_all(in[0], out);
    default: return diffcl_mean_all(in[0], out);
    }
}

static diffcl_status f_matmul(diffcl_tensor *const *in, int n, diffcl_tensor **out, void *user)
{
    (void)n;
    int v = *(int *)user;
    return diffcl_matmul(in[0], in[1], v & 1, (v >> 1) & 1, out);
}

static diffcl_status f_views(diffcl_tensor *const *in, int n, diffcl_tensor **out, void *user)
{
    (void)n;
    diffcl_tensor *a = NULL, *b = NULL;
    diffcl_status s;
    int perm[3] = {2, 0, 1};
    int64_t rs[2] = {4, -1}, ex[4] = {2, 2, 3, 4};
    switch (*(int *)user) {
    case 0: s = diffcl_tensor_permute(in[0], perm, &a); break;
    case 1: s = diffcl_tensor_slice(in[0], 2, 1, 4, 2, &a); break;
    case 2: s = diffcl_tensor_reshape(in[0], 2, rs, &a); break;
    case 3: {
        diffcl_tensor *u = NULL;
        s = diffcl_tensor_narrow(in[0], 1, 0, 1, &u);
        if (s == DIFFCL_OK) s = diffcl_tensor_expand(u, 4, ex, &a);
        diffcl_tensor_free(u);
        break;
    }
    case 4: {
        diffcl_tensor *two[2] = {in[0], in[1]};
        s = diffcl_tensor_concat(two, 2, 1, &a);
        break;
    }
    case 5: {
        diffcl_tensor *u = NULL;
        s = diffcl_tensor_unsqueeze(in[0], 1, &u);
        if (s == DIFFCL_OK) s = diffcl_tensor_squeeze(u, 1, &a);
        diffcl_tensor_free(u);
        break;
    }
    default: {
        diffcl_tensor *f32 = NULL;
        s = diffcl_tensor_permute(in[0], perm, &f32);
        if (s == DIFFCL_OK) s = diffcl_tensor_clone(f32, &a);
        diffcl_tensor_free(f32);
        break;
    }
    }
    if (s != DIFFCL_OK) return s;
    /* square so the gradient depends on the values that moved */
    s = diffcl_square(a, &b);
    diffcl_tensor_free(a);
    *out = b;
    return s;
}

START_TEST(test_gradcheck_binary_broadcast)
{
    int64_t sa[3] = {2, 1, 3}, sb[2] = {4, 1};
    diffcl_tensor *in[2] = {param(3, sa, 1), param(2, sb, 2)};
    /* keep the divisor away from zero */
    diffcl_tensor *d = NULL;
    diffcl_tensor_set_requires_grad(in[1], 0);
    ck_ok(diffcl_affine(in[1], 0.1, 2.0, &d));
    diffcl_tensor_free(in[1]);
    in[1] = d;
    ck_ok(diffcl_tensor_set_requires_grad(in[1], 1));
    for (int op = 0; op < 4; op++) gradcheck(f_binary, &op, in, 2);
    diffcl_tensor_free(in[0]);
    diffcl_tensor_free(in[1]);
}
END_TEST

START_TEST(test_gradcheck_unary)
{
    int64_t s[2] = {3, 5};
    diffcl_tensor *in[1] = {param(2, s, 3)};
    for (int op = 0; op < 7; op++) gradcheck(f_unary, &op, in, 1);
    diffcl_tensor_free(in[0]);
}
END_TEST

START_TEST(test_gradcheck_reductions)
{
    int64_t s[3] = {3, 4, 5};
    diffcl_tensor *in[1] = {param(3, s, 4)};
    for (int op = 0; op < 5; op++) gradcheck(f_reduce, &op, in, 1);
    diffcl_tensor_free(in[0]);
}
END_TEST

START_TEST(test_gradcheck_matmul)
{
    for (int v = 0; v < 4; v++) {
        int ta = v & 1, tb = (v >> 1) & 1;
        int64_t sa[2] = {ta ? 4 : 3, ta ? 3 : 4}, sb[2] = {tb ? 5 : 4, tb ? 4 : 5};
        diffcl_tensor *in[2] = {param(2, sa, 5), param(2, sb, 6)};
        gradcheck(f_matmul, &v, in, 2);
        diffcl_tensor_free(in[0]);
        diffcl_tensor_free(in[1]);
    }
    int64_t ba[3] = {2, 3, 4}, bb[3] = {2, 5, 4};
    diffcl_tensor *in[2] = {param(3, ba, 7), param(3, bb, 8)};
    int v = 2; /* batched, B transposed */
    gradcheck(f_matmul, &v, in, 2);
    diffcl_tensor_free(in[0]);
    diffcl_tensor_free(in[1]);
}
END_TEST

START_TEST(test_gradcheck_views)
{
    int64_t s[3] = {2, 3, 4}, s2[3] = {2, 2, 4};
    diffcl_tensor *in[2] = {param(3, s, 9), param(3, s2, 10)};
    for (int op = 0; op < 7; op++) gradcheck(f_views, &op, in, 2);
    diffcl_tensor_free(in[0]);
    diffcl_tensor_free(in[1]);
}
END_TEST

static diffcl_status f_detached(diffcl_tensor *const *in, int n, diffcl_tensor **out, void *user)
{
    (void)n; (void)user;
    diffcl_tensor *d = NULL;
    diffcl_status s = diffcl_tensor_detach(in[0], &d);
    if (s == DIFFCL_OK) s = diffcl_mul(in[0], d, out); /* true grad 2x, analytic x */
    diffcl_tensor_free(d);
    return s;
}

START_TEST(test_gradcheck_catches_wrong_gradient)
{
    int64_t s[1] = {6};
    diffcl_tensor *in[1] = {param(1, s, 11)};
    diffcl_gradcheck_result r = {sizeof r, 0, 0, 0, 0, 0, 0};
    ck_assert_int_eq(diffcl_gradcheck(f_detached, NULL, in, 1, NULL, &r), DIFFCL_ERR_NUMERIC);
    ck_assert_int_eq(r.n_failed, 6);
    ck_assert_ptr_nonnull(strstr(diffcl_last_error(), "analytical"));
    diffcl_tensor_free(in[0]);
}
END_TEST

START_TEST(test_backward_accumulates_and_frees)
{
    int64_t s[1] = {3};
    double xv[3] = {1, 2, 3};
    diffcl_tensor *x = NULL, *y = NULL, *l = NULL;
    ck_ok(diffcl_tensor_from_data(ctx, DIFFCL_F64, 1, s, xv, &x));
    ck_ok(diffcl_tensor_set_requires_grad(x, 1));
    for (int pass = 1; pass <= 2; pass++) {
        ck_ok(diffcl_square(x, &y));
        ck_ok(diffcl_sum_all(y, &l));
        ck_ok(diffcl_backward(l, NULL));
        /* graph is freed: a second backward through it is refused */
        ck_assert_int_eq(diffcl_backward(l, NULL), DIFFCL_ERR_STATE);
        double g[3];
        ck_ok(diffcl_tensor_copy_to(diffcl_tensor_grad(x), g, sizeof g));
        ck_assert_double_eq(g[2], 6.0 * pass); /* accumulates across passes */
        diffcl_tensor_free(l);
        diffcl_tensor_free(y);
    }
    diffcl_tensor_zero_grad(x);
    ck_assert_ptr_null(diffcl_tensor_grad(x));
    /* explicit upstream gradient */
    ck_ok(diffcl_affine(x, 3.0, 0.0, &y));
    double up[3] = {1, 10, 100};
    diffcl_tensor *g = NULL;
    ck_ok(diffcl_tensor_from_data(ctx, DIFFCL_F64, 1, s, up, &g));
    ck_ok(diffcl_backward(y, g));
    double got[3];
    ck_ok(diffcl_tensor_copy_to(diffcl_tensor_grad(x), got, sizeof got));
    ck_assert_double_eq(got[1], 30.0);
    diffcl_tensor_free(g);
    diffcl_tensor_free(y);
    /* nothing requires grad */
    diffcl_tensor *c = NULL;
    ck_ok(diffcl_tensor_from_data(ctx, DIFFCL_F64, 1, s, xv, &c));
    ck_ok(diffcl_sum_all(c, &l));
    ck_assert_int_eq(diffcl_backward(l, NULL), DIFFCL_ERR_STATE);
    diffcl_tensor_free(l);
    ck_assert_int_eq(diffcl_backward(NULL, NULL), DIFFCL_ERR_INVALID_ARGUMENT);
    /* integer tensors cannot require grad; non-leaves cannot be marked */
    diffcl_tensor *lab = NULL;
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_I64, 1, s, &lab));
    ck_assert_int_eq(diffcl_tensor_set_requires_grad(lab, 1), DIFFCL_ERR_DTYPE);
    ck_ok(diffcl_square(x, &y));
    ck_assert_int_eq(diffcl_tensor_set_requires_grad(y, 0), DIFFCL_ERR_STATE);
    diffcl_tensor_free(y);
    diffcl_tensor_free(lab);
    diffcl_tensor_free(c);
    diffcl_tensor_free(x);
}
END_TEST

START_TEST(test_no_grad_scope)
{
    int64_t s[1] = {4};
    diffcl_tensor *x = param(1, s, 12), *y = NULL;
    ck_assert_int_eq(diffcl_grad_enabled(ctx), 1);
    int prev = diffcl_set_grad_enabled(ctx, 0);
    ck_assert_int_eq(prev, 1);
    ck_ok(diffcl_exp(x, &y));
    ck_assert_int_eq(diffcl_tensor_requires_grad(y), 0);
    diffcl_set_grad_enabled(ctx, prev);
    diffcl_tensor_free(y);
    ck_ok(diffcl_exp(x, &y));
    ck_assert_int_eq(diffcl_tensor_requires_grad(y), 1);
    diffcl_tensor_free(y);
    diffcl_tensor_free(x);
}
END_TEST

typedef struct hook_log {
    int order[8];
    int n;
    int saw_grad;
} hook_log;
static hook_log hl;

static void hook_a(diffcl_tensor *p, void *user)
{
    hl.order[hl.n++] = *(int *)user;
    if (diffcl_tensor_grad(p)) hl.saw_grad++;
}

START_TEST(test_grad_ready_hooks)
{
    int64_t s[2] = {3, 3};
    diffcl_tensor *w1 = param(2, s, 13), *w2 = param(2, s, 14), *x = param(2, s, 15);
    int id1 = 1, id2 = 2;
    memset(&hl, 0, sizeof hl);
    ck_ok(diffcl_tensor_add_grad_hook(w1, hook_a, &id1));
    ck_ok(diffcl_tensor_add_grad_hook(w2, hook_a, &id2));
    /* loss = sum(w2 (w1 x) + w1): w1 has two consumers, its hook must fire once, at the end */
    diffcl_tensor *h = NULL, *o = NULL, *o2 = NULL, *l = NULL;
    ck_ok(diffcl_matmul(w1, x, 0, 0, &h));
    ck_ok(diffcl_matmul(w2, h, 0, 0, &o));
    ck_ok(diffcl_add(o, w1, &o2));
    ck_ok(diffcl_sum_all(o2, &l));
    ck_ok(diffcl_backward(l, NULL));
    ck_assert_int_eq(hl.n, 2);
    ck_assert_int_eq(hl.saw_grad, 2);
    ck_assert_int_eq(hl.order[0], 2); /* w2's gradient is complete first */
    ck_assert_int_eq(hl.order[1], 1);
    diffcl_tensor_clear_grad_hooks(w1);
    ck_assert_int_eq(diffcl_tensor_add_grad_hook(h, hook_a, &id1), DIFFCL_ERR_INVALID_ARGUMENT);
    diffcl_tensor *all[] = {h, o, o2, l, w1, w2, x};
    for (int i = 0; i < 7; i++) diffcl_tensor_free(all[i]);
}
END_TEST

START_TEST(test_graph_memory_released)
{
    int64_t s[2] = {64, 64};
    diffcl_tensor *x = param(2, s, 16);
    size_t before = diffcl_context_bytes_in_use(ctx);
    diffcl_tensor *a = NULL, *b = NULL, *l = NULL;
    ck_ok(diffcl_exp(x, &a));
    ck_ok(diffcl_square(a, &b));
    diffcl_tensor_free(a); /* kept alive by the graph */
    ck_ok(diffcl_sum_all(b, &l));
    diffcl_tensor_free(b);
    ck_assert_uint_gt(diffcl_context_bytes_in_use(ctx), before + 2 * 64 * 64 * 8);
    ck_ok(diffcl_backward(l, NULL));
    diffcl_tensor_free(l);
    /* only x's gradient remains */
    ck_assert_uint_eq(diffcl_context_bytes_in_use(ctx), before + 64 * 64 * 8);
    diffcl_tensor_free(x);
}
END_TEST


/* An intermediate that only graph nodes hold, none of which reads its data in backward,
 * gives its memory back when the caller frees it; one that a node still reads stays. The
 * gradient through both is still exact: d/dx sum(exp(relu(x + x))) = 2 exp(2x) [x > 0]. */
START_TEST(test_intermediate_released_before_backward)
{
    int64_t s[2] = {64, 64};
    const size_t one = 64 * 64 * 8;
    diffcl_tensor *x = param(2, s, 17);
    size_t before = diffcl_context_bytes_in_use(ctx);
    diffcl_tensor *a = NULL, *r = NULL, *e = NULL, *l = NULL;
    ck_ok(diffcl_add(x, x, &a));
    ck_ok(diffcl_relu(a, &r));
    ck_assert_uint_eq(diffcl_context_bytes_in_use(ctx), before + 2 * one);
    diffcl_tensor_free(a); /* relu's backward needs only its output: a's memory goes */
    ck_assert_uint_eq(diffcl_context_bytes_in_use(ctx), before + one);
    ck_ok(diffcl_exp(r, &e));
    diffcl_tensor_free(r); /* still needed (exp's node keeps its input): stays */
    ck_assert_uint_ge(diffcl_context_bytes_in_use(ctx), before + 2 * one);
    ck_ok(diffcl_sum_all(e, &l));
    diffcl_tensor_free(e);
    ck_ok(diffcl_backward(l, NULL));
    diffcl_tensor_free(l);
    ck_assert_uint_eq(diffcl_context_bytes_in_use(ctx), before + one); /* x's gradient */
    const double *xv = diffcl_tensor_data_const(x);
    const double *g = diffcl_tensor_data_const(diffcl_tensor_grad(x));
    for (int i = 0; i < 64 * 64; i++) {
        double want = xv[i] > 0 ? 2.0 * exp(2.0 * xv[i]) : 0.0;
        ck_assert_double_eq_tol(g[i], want, 1e-12 * (1.0 + fabs(want)));
    }
    diffcl_tensor_free(x);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("autograd");
    TCase *tc = tcase_create("autograd");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_gradcheck_binary_broadcast);
    tcase_add_test(tc, test_gradcheck_unary);
    tcase_add_test(tc, test_gradcheck_reductions);
    tcase_add_test(tc, test_gradcheck_matmul);
    tcase_add_test(tc, test_gradcheck_views);
    tcase_add_test(tc, test_gradcheck_catches_wrong_gradient);
    tcase_add_test(tc, test_backward_accumulates_and_frees);
    tcase_add_test(tc, test_no_grad_scope);
    tcase_add_test(tc, test_grad_ready_hooks);
    tcase_add_test(tc, test_graph_memory_released);
    tcase_add_test(tc, test_intermediate_released_before_backward);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}
