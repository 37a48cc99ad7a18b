/* Suite scan: the selective scan against mamba_ssm's selective_scan_ref (torch, float64
 * autograd), gradient checks, checkpoint memory, determinism across thread counts. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"
#include "diffcl/scan.h"

static diffcl_context *ctx;
static void setup(void) { ctx = test_context(); }
static void teardown(void) { diffcl_context_free(ctx); }

/* mirrored from tests/reference/gen_scan.py */
typedef struct scase {
    const char *name;
    int b, d, L, n;
    int has_d, has_z, has_bias, softplus, reverse;
} scase;
static const scase CASES[] = {
    {"full", 2, 5, 37, 4, 1, 1, 1, 1, 0},
    {"plain", 1, 3, 20, 3, 0, 0, 0, 0, 0},
    {"reverse", 2, 4, 29, 5, 1, 1, 1, 1, 1},
    {"mamba16", 1, 8, 24, 16, 1, 0, 1, 1, 0},
};
#define N_CASES ((int)(sizeof CASES / sizeof CASES[0]))
static const char *IN_NAMES[8] = {"u", "delta", "A", "B", "C", "D", "z", "delta_bias"};

static diffcl_tensor *as_dtype(const diffcl_tensor *t, diffcl_dtype dt)
{
    diffcl_tensor *r = NULL;
    ck_ok(diffcl_tensor_to_dtype(t, dt, &r));
    return r;
}

/* Load a case's 8 inputs (NULL where absent) converted to dt, requiring grad. */
static void load_inputs(diffcl_tensor_dict *d, const scase *c, diffcl_dtype dt, diffcl_tensor **in)
{
    char key[96];
    for (int k = 0; k < 8; k++) {
        snprintf(key, sizeof key, "%s.%s", c->name, IN_NAMES[k]);
        diffcl_tensor *t = diffcl_tensor_dict_get(d, key);
        in[k] = NULL;
        if (!t) {
            ck_assert_msg(k >= 5, "fixture %s missing", key);
            continue;
        }
        in[k] = as_dtype(t, dt);
        ck_ok(diffcl_tensor_set_requires_grad(in[k], 1));
    }
}

static diffcl_status run_scan(diffcl_tensor *const *in, const scase *c, int chunk,
                              diffcl_tensor **out)
{
    diffcl_scan_options o = DIFFCL_SCAN_OPTIONS_INIT;
    o.delta_softplus = c->softplus;
    o.reverse = c->reverse;
    o.chunk = chunk;
    return diffcl_selective_scan(in[0], in[1], in[2], in[3], in[4], in[5], in[6], in[7], &o, out);
}

static void check_case(const scase *c, diffcl_dtype dt, int chunk, double tol)
{
    diffcl_tensor_dict *d = NULL;
    ck_ok(diffcl_safetensors_load(ctx, test_fixture_path("selective_scan.safetensors"), &d));
    diffcl_tensor *in[8];
    load_inputs(d, c, dt, in);
    char key[96];
    snprintf(key, sizeof key, "%s.w", c->name);
    diffcl_tensor *w = as_dtype(diffcl_tensor_dict_get(d, key), dt);
    diffcl_tensor *y = NULL, *yw = NULL, *L = NULL;
    ck_ok(run_scan(in, c, chunk, &y));
    snprintf(key, sizeof key, "%s.out", c->name);
    char label[160];
    snprintf(label, sizeof label, "%s %s chunk %d: out", c->name, diffcl_dtype_name(dt), chunk);
    test_expect_close(label, y, diffcl_tensor_dict_get(d, key), tol);
    ck_ok(diffcl_mul(y, w, &yw));
    ck_ok(diffcl_sum_all(yw, &L));
    ck_ok(diffcl_backward(L, NULL));
    for (int k = 0; k < 8; k++) {
        if (!in[k]) continue;
        snprintf(key, sizeof key, "%s.grad.%s", c->name, IN_NAMES[k]);
        diffcl_tensor *ref = diffcl_tensor_dict_get(d, key);
        ck_assert_msg(ref != NULL, "fixture %s missing", key);
        ck_assert_msg(diffcl_tensor_grad(in[k]) != NULL, "%s: no gradient for %s", c->name, IN_NAMES[k]);
        snprintf(label, sizeof label, "%s %s chunk %d: d%s", c->name, diffcl_dtype_name(dt), chunk,
                 IN_NAMES[k]);
        test_expect_close(label, diffcl_tensor_grad(in[k]), ref, tol);
    }
    for (int k = 0; k < 8; k++) diffcl_tensor_free(in[k]);
    diffcl_tensor_free(L);
    diffcl_tensor_free(yw);
    diffcl_tensor_free(y);
    diffcl_tensor_free(w);
    diffcl_tensor_dict_free(d);
}

START_TEST(fixture_f32)
{
    for (int c = 0; c < N_CASES; c++) check_case(&CASES[c], DIFFCL_F32, 0, 1e-4);
}
END_TEST

START_TEST(fixture_f64)
{
    for (int c = 0; c < N_CASES; c++) check_case(&CASES[c], DIFFCL_F64, 0, 1e-10);
}
END_TEST

START_TEST(fixture_chunks)
{
    /* the checkpoint interval changes memory, not results */
    int chunks[4] = {1, 3, 7, 1000};
    for (int c = 0; c < N_CASES; c++)
        for (int k = 0; k < 4; k++) {
            check_case(&CASES[c], DIFFCL_F32, chunks[k], 1e-4);
            check_case(&CASES[c], DIFFCL_F64, chunks[k], 1e-10);
        }
}
END_TEST

/* ---- gradient checks (F64 finite differences, all eight inputs) ---- */

typedef struct gc_user {
    scase c;
    int chunk;
} gc_user;

static diffcl_status f_scan(diffcl_tensor *const *in, int n, diffcl_tensor **out, void *user)
{
    gc_user *u = user;
    diffcl_tensor *all[8] = {0};
    /* inputs come packed without the absent ones; unpack per the case */
    int k = 0;
    for (int i = 0; i < 8; i++) {
        int present = i < 5 || (i == 5 && u->c.has_d) || (i == 6 && u->c.has_z) ||
                      (i == 7 && u->c.has_bias);
        if (present) all[i] = in[k++];
    }
    ck_assert_int_eq(k, n);
    return run_scan(all, &u->c, u->chunk, out);
}

static void gradcheck_case(const scase *c, int chunk)
{
    diffcl_tensor *in[8];
    int n = 0;
    int64_t sBDL[3] = {c->b, c->d, c->L}, sDN[2] = {c->d, c->n}, sBNL[3] = {c->b, c->n, c->L},
            sD[1] = {c->d};
    in[n++] = test_randn(ctx, DIFFCL_F64, 3, sBDL, 1);
    diffcl_tensor *dl = test_randn(ctx, DIFFCL_F64, 3, sBDL, 2), *dl2 = NULL;
    /* without softplus, keep delta positive and small */
    if (!c->softplus) {
        diffcl_tensor *sq = NULL;
        ck_ok(diffcl_square(dl, &sq));
        ck_ok(diffcl_affine(sq, 0.2, 0.05, &dl2));
        diffcl_tensor_free(sq);
        diffcl_tensor_free(dl);
        dl = dl2;
    }
    in[n++] = dl;
    diffcl_tensor *a0 = test_randn(ctx, DIFFCL_F64, 2, sDN, 3), *a1 = NULL, *a2 = NULL;
    ck_ok(diffcl_exp(a0, &a1));
    ck_ok(diffcl_neg(a1, &a2));
    diffcl_tensor_free(a0);
    diffcl_tensor_free(a1);
    in[n++] = a2;
    in[n++] = test_randn(ctx, DIFFCL_F64, 3, sBNL, 4);
    in[n++] = test_randn(ctx, DIFFCL_F64, 3, sBNL, 5);
    if (c->has_d) in[n++] = test_randn(ctx, DIFFCL_F64, 1, sD, 6);
    if (c->has_z) in[n++] = test_randn(ctx, DIFFCL_F64, 3, sBDL, 7);
    if (c->has_bias) in[n++] = test_randn(ctx, DIFFCL_F64, 1, sD, 8);
    for (int k = 0; k < n; k++) ck_ok(diffcl_tensor_set_requires_grad(in[k], 1));
    gc_user u = {*c, chunk};
    diffcl_gradcheck_options o = DIFFCL_GRADCHECK_OPTIONS_INIT;
    diffcl_gradcheck_result r = {sizeof r, 0, 0, 0, 0, 0, 0};
    diffcl_status s = diffcl_gradcheck(f_scan, &u, in, n, &o, &r);
    ck_assert_msg(s == DIFFCL_OK, "gradcheck %s chunk %d: %s (max abs %g, rel %g, input %d)",
                  c->name, chunk, diffcl_last_error(), r.max_abs_error, r.max_rel_error,
                  r.worst_input);
    ck_assert_int_gt(r.n_checked, 0);
    for (int k = 0; k < n; k++) diffcl_tensor_free(in[k]);
}

START_TEST(gradcheck_all_inputs)
{
    scase full = {"full", 2, 3, 9, 3, 1, 1, 1, 1, 0};
    scase plain = {"plain", 1, 2, 7, 2, 0, 0, 0, 0, 0};
    scase rev = {"reverse", 2, 2, 8, 3, 1, 1, 1, 1, 1};
    scase no_z = {"no_z", 1, 3, 6, 4, 1, 0, 1, 1, 0};
    gradcheck_case(&full, 0);
    gradcheck_case(&full, 2);
    gradcheck_case(&plain, 3);
    gradcheck_case(&rev, 0);
    gradcheck_case(&rev, 3);
    gradcheck_case(&no_z, 1);
}
END_TEST

/* Reverse == flip inputs, forward scan, flip output (via narrowing one token at a time). */
START_TEST(reverse_is_flip)
{
    int64_t b = 2, d = 3, L = 11, n = 4;
    int64_t sBDL[3] = {b, d, L}, sDN[2] = {d, n}, sBNL[3] = {b, n, L};
    diffcl_tensor *u = test_randn(ctx, DIFFCL_F64, 3, sBDL, 1), *dl = test_randn(ctx, DIFFCL_F64, 3, sBDL, 2);
    diffcl_tensor *A0 = test_randn(ctx, DIFFCL_F64, 2, sDN, 3), *A = NULL;
    ck_ok(diffcl_affine(A0, 0.0, -0.7, &A));
    diffcl_tensor *B = test_randn(ctx, DIFFCL_F64, 3, sBNL, 4), *C = test_randn(ctx, DIFFCL_F64, 3, sBNL, 5);
    diffcl_tensor *z = test_randn(ctx, DIFFCL_F64, 3, sBDL, 6);
    /* flipped copies */
    diffcl_tensor *src[5] = {u, dl, B, C, z}, *fl[5];
    for (int i = 0; i < 5; i++) {
        ck_ok(diffcl_tensor_clone(src[i], &fl[i]));
        int64_t sh[DIFFCL_MAX_DIMS];
        diffcl_tensor_shape(src[i], sh);
        for (int64_t p = 0; p < sh[0]; p++)
            for (int64_t q = 0; q < sh[1]; q++)
                for (int64_t t = 0; t < L; t++) {
                    int64_t i0[3] = {p, q, t}, i1[3] = {p, q, L - 1 - t};
                    double v;
                    ck_ok(diffcl_tensor_get(src[i], i0, &v));
                    ck_ok(diffcl_tensor_set(fl[i], i1, v));
                }
    }
    diffcl_scan_options o = DIFFCL_SCAN_OPTIONS_INIT;
    o.delta_softplus = 1;
    diffcl_tensor *yf = NULL, *yr = NULL;
    ck_ok(diffcl_selective_scan(fl[0], fl[1], A, fl[2], fl[3], NULL, fl[4], NULL, &o, &yf));
    o.reverse = 1;
    ck_ok(diffcl_selective_scan(u, dl, A, B, C, NULL, z, NULL, &o, &yr));
    for (int64_t p = 0; p < b; p++)
        for (int64_t q = 0; q < d; q++)
            for (int64_t t = 0; t < L; t++) {
                int64_t i0[3] = {p, q, t}, i1[3] = {p, q, L - 1 - t};
                double v0, v1;
                ck_ok(diffcl_tensor_get(yr, i0, &v0));
                ck_ok(diffcl_tensor_get(yf, i1, &v1));
                ck_assert(fabs(v0 - v1) <= 1e-14 * (1 + fabs(v1)));
            }
    for (int i = 0; i < 5; i++) diffcl_tensor_free(fl[i]);
    diffcl_tensor *all[] = {u, dl, A0, A, B, C, z, yf, yr};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) diffcl_tensor_free(all[i]);
}
END_TEST

/* Outputs and every gradient bit-identical for 1, 2 and 3 threads. */
START_TEST(thread_count_independent)
{
    diffcl_tensor_dict *d = NULL;
    ck_ok(diffcl_safetensors_load(ctx, test_fixture_path("selective_scan.safetensors"), &d));
    const scase *c = &CASES[0];
    diffcl_tensor *ref_out = NULL, *ref_g[8] = {0};
    for (int nt = 1; nt <= 3; nt++) {
        ck_ok(diffcl_context_set_threads(ctx, nt));
        diffcl_tensor *in[8], *y = NULL, *L = NULL;
        load_inputs(d, c, DIFFCL_F32, in);
        ck_ok(run_scan(in, c, 5, &y));
        ck_ok(diffcl_sum_all(y, &L));
        ck_ok(diffcl_backward(L, NULL));
        if (nt == 1) {
            ck_ok(diffcl_tensor_clone(y, &ref_out));
            for (int k = 0; k < 8; k++)
                if (in[k]) ck_ok(diffcl_tensor_clone(diffcl_tensor_grad(in[k]), &ref_g[k]));
        } else {
            ck_assert(test_rel_error(y, ref_out) == 0);
            for (int k = 0; k < 8; k++)
                if (in[k])
                    ck_assert_msg(test_rel_error(diffcl_tensor_grad(in[k]), ref_g[k]) == 0,
                                  "d%s differs with %d threads", IN_NAMES[k], nt);
        }
        for (int k = 0; k < 8; k++) diffcl_tensor_free(in[k]);
        diffcl_tensor_free(L);
        diffcl_tensor_free(y);
    }
    diffcl_tensor_free(ref_out);
    for (int k = 0; k < 8; k++) diffcl_tensor_free(ref_g[k]);
    diffcl_tensor_dict_free(d);
}
END_TEST

/* What the forward keeps for the backward is O(B*D*N*L/chunk), not O(B*D*N*L). */
START_TEST(checkpoint_memory)
{
    int64_t b = 1, dd = 16, L = 4096, n = 16;
    size_t saved = 0, ws = 0;
    ck_ok(diffcl_selective_scan_memory(b, dd, L, n, DIFFCL_F32, 64, &saved, &ws));
    ck_assert_uint_eq(saved, (size_t)(b * dd * n * (L / 64)) * 4);
    int64_t sBDL[3] = {b, dd, L}, sDN[2] = {dd, n}, sBNL[3] = {b, n, L};
    diffcl_tensor *u = test_randn(ctx, DIFFCL_F32, 3, sBDL, 1), *dl = test_randn(ctx, DIFFCL_F32, 3, sBDL, 2);
    diffcl_tensor *A = NULL, *A0 = test_randn(ctx, DIFFCL_F32, 2, sDN, 3);
    ck_ok(diffcl_affine(A0, 0.0, -1.0, &A));
    diffcl_tensor *B = test_randn(ctx, DIFFCL_F32, 3, sBNL, 4), *C = test_randn(ctx, DIFFCL_F32, 3, sBNL, 5);
    ck_ok(diffcl_tensor_set_requires_grad(u, 1));
    ck_ok(diffcl_tensor_set_requires_grad(A, 1));
    diffcl_scan_options o = DIFFCL_SCAN_OPTIONS_INIT;
    o.delta_softplus = 1;
    o.chunk = 64;
    size_t before = diffcl_context_bytes_in_use(ctx);
    diffcl_tensor *y = NULL;
    ck_ok(diffcl_selective_scan(u, dl, A, B, C, NULL, NULL, NULL, &o, &y));
    size_t kept = diffcl_context_bytes_in_use(ctx) - before;
    size_t out_bytes = (size_t)(b * dd * L) * 4, full_states = (size_t)(b * dd * n * L) * 4;
    ck_assert_uint_eq(kept, out_bytes + saved);
    ck_assert(kept < full_states / 8);
    diffcl_tensor *Ls = NULL;
    ck_ok(diffcl_sum_all(y, &Ls));
    ck_ok(diffcl_backward(Ls, NULL));
    ck_assert_ptr_nonnull(diffcl_tensor_grad(A));
    diffcl_tensor *all[] = {u, dl, A0, A, B, C, y, Ls};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) diffcl_tensor_free(all[i]);
}
END_TEST

START_TEST(no_grad_keeps_nothing)
{
    int64_t sBDL[3] = {1, 4, 50}, sDN[2] = {4, 8}, sBNL[3] = {1, 8, 50};
    diffcl_tensor *u = test_randn(ctx, DIFFCL_F32, 3, sBDL, 1), *dl = test_randn(ctx, DIFFCL_F32, 3, sBDL, 2);
    diffcl_tensor *A = test_randn(ctx, DIFFCL_F32, 2, sDN, 3);
    diffcl_tensor *B = test_randn(ctx, DIFFCL_F32, 3, sBNL, 4), *C = test_randn(ctx, DIFFCL_F32, 3, sBNL, 5);
    ck_ok(diffcl_tensor_set_requires_grad(u, 1));
    int prev = diffcl_set_grad_enabled(ctx, 0);
    size_t before = diffcl_context_bytes_in_use(ctx);
    diffcl_tensor *y = NULL;
    ck_ok(diffcl_selective_scan(u, dl, A, B, C, NULL, NULL, NULL, NULL, &y));
    ck_assert_uint_eq(diffcl_context_bytes_in_use(ctx) - before, 4 * 50 * 4);
    ck_assert_int_eq(diffcl_tensor_requires_grad(y), 0);
    diffcl_set_grad_enabled(ctx, prev);
    diffcl_tensor *all[] = {u, dl, A, B, C, y};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) diffcl_tensor_free(all[i]);
}
END_TEST

START_TEST(non_contiguous_inputs)
{
    /* u and delta as transposed views of [B, L, D] tensors (how the Mamba block hands them) */
    int64_t b = 2, d = 3, L = 10, n = 4;
    int64_t sBLD[3] = {b, L, d}, sDN[2] = {d, n}, sBNL[3] = {b, n, L};
    diffcl_tensor *u0 = test_randn(ctx, DIFFCL_F64, 3, sBLD, 1), *d0 = test_randn(ctx, DIFFCL_F64, 3, sBLD, 2);
    int perm[3] = {0, 2, 1};
    diffcl_tensor *u = NULL, *dl = NULL, *uc = NULL, *dc = NULL;
    ck_ok(diffcl_tensor_permute(u0, perm, &u));
    ck_ok(diffcl_tensor_permute(d0, perm, &dl));
    ck_ok(diffcl_tensor_contiguous(u, &uc));
    ck_ok(diffcl_tensor_contiguous(dl, &dc));
    diffcl_tensor *A = test_randn(ctx, DIFFCL_F64, 2, sDN, 3);
    diffcl_tensor *B = test_randn(ctx, DIFFCL_F64, 3, sBNL, 4), *C = test_randn(ctx, DIFFCL_F64, 3, sBNL, 5);
    diffcl_tensor *y1 = NULL, *y2 = NULL;
    diffcl_scan_options o = DIFFCL_SCAN_OPTIONS_INIT;
    o.delta_softplus = 1;
    ck_ok(diffcl_selective_scan(u, dl, A, B, C, NULL, NULL, NULL, &o, &y1));
    ck_ok(diffcl_selective_scan(uc, dc, A, B, C, NULL, NULL, NULL, &o, &y2));
    ck_assert(test_rel_error(y1, y2) == 0);
    diffcl_tensor *all[] = {u0, d0, u, dl, uc, dc, A, B, C, y1, y2};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) diffcl_tensor_free(all[i]);
}
END_TEST

START_TEST(bad_inputs)
{
    int64_t sBDL[3] = {2, 3, 5}, sDN[2] = {3, 4}, sBNL[3] = {2, 4, 5}, bad[3] = {2, 4, 6}, sD[1] = {3};
    diffcl_tensor *u = test_randn(ctx, DIFFCL_F32, 3, sBDL, 1), *dl = test_randn(ctx, DIFFCL_F32, 3, sBDL, 2);
    diffcl_tensor *A = test_randn(ctx, DIFFCL_F32, 2, sDN, 3), *B = test_randn(ctx, DIFFCL_F32, 3, sBNL, 4);
    diffcl_tensor *C = test_randn(ctx, DIFFCL_F32, 3, sBNL, 5), *Cb = test_randn(ctx, DIFFCL_F32, 3, bad, 5);
    diffcl_tensor *D64 = test_randn(ctx, DIFFCL_F64, 1, sD, 6), *y = NULL;
    ck_assert_int_eq(diffcl_selective_scan(u, dl, A, B, Cb, NULL, NULL, NULL, NULL, &y), DIFFCL_ERR_SHAPE);
    ck_assert(strstr(diffcl_last_error(), "C has shape [2,4,6]; expected [2,4,5]") != NULL);
    ck_assert_int_eq(diffcl_selective_scan(u, dl, A, B, C, D64, NULL, NULL, NULL, &y), DIFFCL_ERR_DTYPE);
    ck_assert_int_eq(diffcl_selective_scan(u, NULL, A, B, C, NULL, NULL, NULL, NULL, &y),
                     DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(diffcl_selective_scan(u, dl, A, B, C, NULL, NULL, NULL, NULL, NULL),
                     DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(diffcl_selective_scan(A, dl, A, B, C, NULL, NULL, NULL, NULL, &y), DIFFCL_ERR_SHAPE);
    diffcl_scan_options o = DIFFCL_SCAN_OPTIONS_INIT;
    o.chunk = -1;
    ck_assert_int_eq(diffcl_selective_scan(u, dl, A, B, C, NULL, NULL, NULL, &o, &y),
                     DIFFCL_ERR_INVALID_ARGUMENT);
    int64_t sbig[2] = {3, 300}, sbigB[3] = {2, 300, 5};
    diffcl_tensor *Abig = test_randn(ctx, DIFFCL_F32, 2, sbig, 1), *Bbig = test_randn(ctx, DIFFCL_F32, 3, sbigB, 1);
    ck_assert_int_eq(diffcl_selective_scan(u, dl, Abig, Bbig, Bbig, NULL, NULL, NULL, NULL, &y),
                     DIFFCL_ERR_UNSUPPORTED);
    /* NaN in delta propagates to the output (no crash, no hang) */
    int64_t i0[3] = {0, 0, 0};
    ck_ok(diffcl_tensor_set(dl, i0, NAN));
    ck_ok(diffcl_selective_scan(u, dl, A, B, C, NULL, NULL, NULL, NULL, &y));
    double v;
    ck_ok(diffcl_tensor_get(y, i0, &v));
    ck_assert(isnan(v));
    diffcl_tensor *all[] = {u, dl, A, B, C, Cb, D64, y, Abig, Bbig};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) diffcl_tensor_free(all[i]);
}
END_TEST

static Suite *scan_suite(void)
{
    Suite *s = suite_create("scan");
    TCase *tc = tcase_create("scan");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, fixture_f32);
    tcase_add_test(tc, fixture_f64);
    tcase_add_test(tc, fixture_chunks);
    tcase_add_test(tc, gradcheck_all_inputs);
    tcase_add_test(tc, reverse_is_flip);
    tcase_add_test(tc, thread_count_independent);
    tcase_add_test(tc, checkpoint_memory);
    tcase_add_test(tc, no_grad_keeps_nothing);
    tcase_add_test(tc, non_contiguous_inputs);
    tcase_add_test(tc, bad_inputs);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return test_run_suite(scan_suite()); }
