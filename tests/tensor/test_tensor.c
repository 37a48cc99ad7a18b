/* Suite tensor: creation, wrapping, views, copies, elementwise, reductions, matmul. */
#include <math.h>
#include <string.h>

#include "test_util.h"

static diffcl_context *ctx;
static void setup(void) { ctx = test_context(); }
static void teardown(void) { diffcl_context_free(ctx); }

static diffcl_tensor *arange(diffcl_dtype dt, int nd, const int64_t *shape)
{
    diffcl_tensor *t = NULL;
    ck_ok(diffcl_tensor_new(ctx, dt, nd, shape, &t));
    int64_t n = diffcl_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) {
        if (dt == DIFFCL_F32) ((float *)diffcl_tensor_data(t))[i] = (float)i;
        else ((double *)diffcl_tensor_data(t))[i] = (double)i;
    }
    return t;
}

static double at(const diffcl_tensor *t, int64_t i0, int64_t i1, int64_t i2)
{
    int64_t idx[3] = {i0, i1, i2};
    double v;
    ck_ok(diffcl_tensor_get(t, idx, &v));
    return v;
}

START_TEST(test_create_and_query)
{
    int64_t shape[5] = {2, 3, 4, 5, 6};
    diffcl_tensor *t = NULL;
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_F32, 5, shape, &t));
    ck_assert_int_eq(diffcl_tensor_ndim(t), 5);
    ck_assert_int_eq(diffcl_tensor_numel(t), 720);
    ck_assert_int_eq(diffcl_tensor_dim(t, -1), 6);
    ck_assert_int_eq(diffcl_tensor_dim(t, 5), -1);
    ck_assert(diffcl_tensor_is_contiguous(t));
    ck_assert(((uintptr_t)diffcl_tensor_data(t) & 63) == 0);
    int64_t st[5];
    ck_assert_int_eq(diffcl_tensor_strides(t, st), 5);
    ck_assert_int_eq(st[0], 360);
    ck_assert_int_eq(st[4], 1);
    ck_assert_ptr_eq(diffcl_tensor_context(t), ctx);
    double v;
    int64_t idx[5] = {1, 2, 3, 4, 5};
    ck_ok(diffcl_tensor_get(t, idx, &v));
    ck_assert_double_eq(v, 0.0);
    ck_assert_ptr_eq(diffcl_tensor_retain(t), t);
    diffcl_tensor_free(t);
    diffcl_tensor_free(t);
    diffcl_tensor_free(NULL);
    ck_assert_str_eq(diffcl_dtype_name(DIFFCL_I64), "i64");
    ck_assert_uint_eq(diffcl_dtype_size(DIFFCL_U8), 1);
}
END_TEST

START_TEST(test_create_errors)
{
    int64_t shape[6] = {1, 1, 1, 1, 1, 1}, neg[2] = {2, -1};
    diffcl_tensor *t = (diffcl_tensor *)0x1;
    ck_assert_int_eq(diffcl_tensor_new(ctx, DIFFCL_F32, 6, shape, &t), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_null(t);
    ck_assert_int_eq(diffcl_tensor_new(ctx, DIFFCL_F32, 2, neg, &t), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(diffcl_tensor_new(NULL, DIFFCL_F32, 1, shape, &t), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(diffcl_tensor_new(ctx, (diffcl_dtype)99, 1, shape, &t), DIFFCL_ERR_DTYPE);
    ck_assert_int_eq(diffcl_tensor_new(ctx, DIFFCL_F32, 1, shape, NULL), DIFFCL_ERR_INVALID_ARGUMENT);
    int64_t huge[2] = {INT64_MAX / 2, 4};
    ck_assert_int_eq(diffcl_tensor_new(ctx, DIFFCL_F32, 2, huge, &t), DIFFCL_ERR_INVALID_ARGUMENT); /* overflows */
    int64_t idx[1] = {7};
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_F32, 1, shape, &t));
    double v;
    ck_assert_int_eq(diffcl_tensor_get(t, idx, &v), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(diffcl_tensor_get(NULL, idx, &v), DIFFCL_ERR_INVALID_ARGUMENT);
    diffcl_tensor_free(t);
}
END_TEST

static int deleted;
static void on_delete(void *data, void *user)
{
    (void)data;
    deleted = *(int *)user;
}

START_TEST(test_wrap_user_memory)
{
    float buf[6] = {1, 2, 3, 4, 5, 6};
    int64_t shape[2] = {2, 3};
    int token = 77;
    deleted = 0;
    diffcl_tensor *t = NULL, *v = NULL;
    ck_ok(diffcl_tensor_wrap(ctx, DIFFCL_F32, 2, shape, NULL, buf, on_delete, &token, &t));
    ck_assert_ptr_eq(diffcl_tensor_data(t), buf);
    /* column view of a transposed layout, no copy */
    int perm[2] = {1, 0};
    ck_ok(diffcl_tensor_permute(t, perm, &v));
    ck_assert_ptr_eq(diffcl_tensor_data(v), buf);
    int64_t i21[2] = {2, 1};
    double w;
    ck_ok(diffcl_tensor_get(v, i21, &w));
    ck_assert_double_eq(w, 6.0); /* v[2,1] = t[1,2] */
    diffcl_tensor_free(v);
    diffcl_tensor_free(t);
    ck_assert_int_eq(deleted, 77);
    /* strided wrap: every other element */
    int64_t one[1] = {3}, stride[1] = {2};
    ck_ok(diffcl_tensor_wrap(ctx, DIFFCL_F32, 1, one, stride, buf, NULL, NULL, &t));
    float got[3];
    ck_ok(diffcl_tensor_copy_to(t, got, sizeof got));
    ck_assert_float_eq(got[0], 1);
    ck_assert_float_eq(got[1], 3);
    ck_assert_float_eq(got[2], 5);
    ck_assert_int_eq(diffcl_tensor_copy_to(t, got, 8), DIFFCL_ERR_SHAPE);
    float in[3] = {10, 30, 50};
    ck_ok(diffcl_tensor_copy_from(t, in, sizeof in));
    ck_assert_float_eq(buf[2], 30);
    ck_assert_float_eq(buf[1], 2);
    diffcl_tensor_free(t);
}
END_TEST

START_TEST(test_views)
{
    int64_t shape[3] = {2, 3, 4};
    diffcl_tensor *t = arange(DIFFCL_F32, 3, shape), *p = NULL, *s = NULL, *r = NULL, *c = NULL;
    int perm[3] = {2, 0, 1};
    ck_ok(diffcl_tensor_permute(t, perm, &p)); /* [4,2,3] */
    ck_assert_int_eq(diffcl_tensor_dim(p, 0), 4);
    ck_assert(!diffcl_tensor_is_contiguous(p));
    ck_assert_double_eq(at(p, 3, 1, 2), 1 * 12 + 2 * 4 + 3);
    ck_ok(diffcl_tensor_slice(t, 2, 1, 4, 2, &s)); /* [2,3,2] elements 1,3 */
    ck_assert_int_eq(diffcl_tensor_dim(s, 2), 2);
    ck_assert_double_eq(at(s, 1, 2, 1), 12 + 8 + 3);
    ck_assert_ptr_eq((char *)diffcl_tensor_data(s), (char *)diffcl_tensor_data(t) + 4);
    int64_t rs[2] = {-1, 4};
    ck_ok(diffcl_tensor_reshape(t, 2, rs, &r));
    ck_assert_int_eq(diffcl_tensor_dim(r, 0), 6);
    ck_assert_ptr_eq(diffcl_tensor_data(r), diffcl_tensor_data(t)); /* a view */
    diffcl_tensor_free(r);
    /* reshape of a non-contiguous view copies */
    int64_t flat[1] = {24};
    ck_ok(diffcl_tensor_reshape(p, 1, flat, &r));
    ck_assert_ptr_ne(diffcl_tensor_data(r), diffcl_tensor_data(t));
    float got[24];
    ck_ok(diffcl_tensor_copy_to(r, got, sizeof got));
    ck_assert_float_eq(got[1], 4); /* p[0,0,1] = t[0,1,0] */
    ck_ok(diffcl_tensor_contiguous(p, &c));
    ck_assert(diffcl_tensor_is_contiguous(c));
    diffcl_tensor_free(c);
    diffcl_tensor_free(r);
    /* narrow, unsqueeze, squeeze, expand */
    diffcl_tensor *n = NULL, *u = NULL, *q = NULL, *e = NULL;
    ck_ok(diffcl_tensor_narrow(t, 1, 1, 2, &n));
    ck_assert_double_eq(at(n, 0, 0, 0), 4);
    ck_ok(diffcl_tensor_unsqueeze(n, 0, &u));
    ck_assert_int_eq(diffcl_tensor_ndim(u), 4);
    ck_ok(diffcl_tensor_squeeze(u, 0, &q));
    ck_assert_int_eq(diffcl_tensor_ndim(q), 3);
    ck_assert_int_eq(diffcl_tensor_squeeze(t, 0, &e), DIFFCL_ERR_SHAPE);
    int64_t one[3] = {1, 1, 4}, big[3] = {3, 5, 4};
    diffcl_tensor *row = arange(DIFFCL_F32, 3, one);
    ck_ok(diffcl_tensor_expand(row, 3, big, &e));
    ck_assert_double_eq(at(e, 2, 4, 3), 3);
    ck_assert_int_eq(diffcl_tensor_expand(t, 3, big, &c), DIFFCL_ERR_SHAPE);
    /* errors */
    int bad[3] = {0, 0, 1};
    ck_assert_int_eq(diffcl_tensor_permute(t, bad, &c), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(diffcl_tensor_slice(t, 3, 0, 1, 1, &c), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(diffcl_tensor_slice(t, 1, 0, 9, 1, &c), DIFFCL_ERR_INVALID_ARGUMENT);
    int64_t wrong[1] = {25};
    ck_assert_int_eq(diffcl_tensor_reshape(t, 1, wrong, &c), DIFFCL_ERR_SHAPE);
    diffcl_tensor *all[] = {n, u, q, e, row, p, s, t};
    for (int i = 0; i < 8; i++) diffcl_tensor_free(all[i]);
}
END_TEST

START_TEST(test_concat_and_dtype)
{
    int64_t s1[2] = {2, 3}, s2[2] = {2, 2};
    diffcl_tensor *a = arange(DIFFCL_F32, 2, s1), *b = arange(DIFFCL_F32, 2, s2), *c = NULL;
    diffcl_tensor *ab[2] = {a, b};
    ck_ok(diffcl_tensor_concat(ab, 2, 1, &c));
    ck_assert_int_eq(diffcl_tensor_dim(c, 1), 5);
    float got[10];
    ck_ok(diffcl_tensor_copy_to(c, got, sizeof got));
    float want[10] = {0, 1, 2, 0, 1, 3, 4, 5, 2, 3};
    ck_assert_mem_eq(got, want, sizeof want);
    diffcl_tensor_free(c);
    ck_assert_int_eq(diffcl_tensor_concat(ab, 2, 0, &c), DIFFCL_ERR_SHAPE);
    diffcl_tensor *i64 = NULL, *back = NULL;
    ck_ok(diffcl_tensor_to_dtype(a, DIFFCL_I64, &i64));
    ck_assert_int_eq(((int64_t *)diffcl_tensor_data(i64))[5], 5);
    ck_ok(diffcl_tensor_to_dtype(i64, DIFFCL_F64, &back));
    ck_assert_double_eq(((double *)diffcl_tensor_data(back))[4], 4.0);
    diffcl_tensor *mixed[2] = {a, back};
    ck_assert_int_eq(diffcl_tensor_concat(mixed, 2, 1, &c), DIFFCL_ERR_DTYPE);
    double item;
    ck_assert_int_eq(diffcl_tensor_item(a, &item), DIFFCL_ERR_SHAPE);
    diffcl_tensor_free(i64);
    diffcl_tensor_free(back);
    diffcl_tensor_free(a);
    diffcl_tensor_free(b);
}
END_TEST

START_TEST(test_elementwise_broadcast)
{
    int64_t sa[3] = {2, 1, 3}, sb[2] = {4, 1};
    diffcl_tensor *a = arange(DIFFCL_F64, 3, sa), *b = arange(DIFFCL_F64, 2, sb), *r = NULL;
    ck_ok(diffcl_add(a, b, &r));
    ck_assert_int_eq(diffcl_tensor_ndim(r), 3);
    ck_assert_int_eq(diffcl_tensor_dim(r, 1), 4);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 4; j++)
            for (int k = 0; k < 3; k++) ck_assert_double_eq(at(r, i, j, k), i * 3 + k + j);
    diffcl_tensor_free(r);
    ck_ok(diffcl_mul(a, b, &r));
    ck_assert_double_eq(at(r, 1, 3, 2), 5.0 * 3.0);
    diffcl_tensor_free(r);
    ck_ok(diffcl_sub(a, b, &r));
    ck_assert_double_eq(at(r, 1, 2, 0), 3.0 - 2.0);
    diffcl_tensor_free(r);
    ck_ok(diffcl_div(b, a, &r));
    ck_assert_double_eq(at(r, 0, 3, 2), 3.0 / 2.0);
    diffcl_tensor_free(r);
    /* unary */
    ck_ok(diffcl_affine(a, 2.0, 1.0, &r));
    ck_assert_double_eq(at(r, 1, 0, 2), 11.0);
    diffcl_tensor_free(r);
    ck_ok(diffcl_exp(a, &r));
    ck_assert_double_eq_tol(at(r, 0, 0, 1), exp(1.0), 1e-12);
    diffcl_tensor_free(r);
    ck_ok(diffcl_pow_scalar(a, 1.5, &r));
    ck_assert_double_eq_tol(at(r, 1, 0, 1), pow(4.0, 1.5), 1e-12);
    diffcl_tensor_free(r);
    diffcl_tensor *x = NULL;
    ck_ok(diffcl_neg(a, &x));
    ck_ok(diffcl_abs(x, &r));
    ck_assert_double_eq(at(r, 1, 0, 2), 5.0);
    diffcl_tensor_free(r);
    ck_ok(diffcl_square(x, &r));
    ck_assert_double_eq(at(r, 1, 0, 2), 25.0);
    diffcl_tensor_free(r);
    ck_assert_int_eq(diffcl_sqrt(NULL, &r), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_ok(diffcl_sqrt(a, &r));
    ck_assert_double_eq_tol(at(r, 1, 0, 0), sqrt(3.0), 1e-12);
    diffcl_tensor_free(r);
    ck_ok(diffcl_log(a, &r));
    ck_assert(isinf(at(r, 0, 0, 0)));
    diffcl_tensor_free(r);
    diffcl_tensor_free(x);
    /* errors: non-broadcastable shapes, dtype mismatch */
    int64_t sc[2] = {3, 2};
    diffcl_tensor *c = arange(DIFFCL_F64, 2, sc), *f = arange(DIFFCL_F32, 2, sb);
    ck_assert_int_eq(diffcl_add(a, c, &r), DIFFCL_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(diffcl_last_error(), "do not broadcast"));
    ck_assert_int_eq(diffcl_add(a, f, &r), DIFFCL_ERR_DTYPE);
    diffcl_tensor *lab = NULL;
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_U8, 2, sb, &lab));
    ck_assert_int_eq(diffcl_exp(lab, &r), DIFFCL_ERR_DTYPE);
    diffcl_tensor_free(lab);
    diffcl_tensor_free(c);
    diffcl_tensor_free(f);
    diffcl_tensor_free(a);
    diffcl_tensor_free(b);
}
END_TEST

START_TEST(test_reductions)
{
    int64_t s[3] = {2, 3, 4};
    diffcl_tensor *t = arange(DIFFCL_F32, 3, s), *r = NULL;
    ck_ok(diffcl_sum(t, 1, 0, &r));
    ck_assert_int_eq(diffcl_tensor_ndim(r), 2);
    int64_t i2[2] = {1, 2};
    double v;
    ck_ok(diffcl_tensor_get(r, i2, &v));
    ck_assert_double_eq(v, (12 + 2) + (16 + 2) + (20 + 2));
    diffcl_tensor_free(r);
    ck_ok(diffcl_mean(t, -1, 1, &r));
    ck_assert_int_eq(diffcl_tensor_dim(r, 2), 1);
    ck_assert_double_eq(at(r, 1, 2, 0), 20 + 1.5);
    diffcl_tensor_free(r);
    ck_ok(diffcl_max(t, 0, 0, &r));
    ck_ok(diffcl_tensor_get(r, i2, &v));
    ck_assert_double_eq(v, 12 + 4 + 2); /* t[1,1,2] */
    diffcl_tensor_free(r);
    ck_ok(diffcl_argmax(t, 2, 0, &r));
    ck_assert_int_eq(diffcl_tensor_dtype(r), DIFFCL_I64);
    ck_ok(diffcl_tensor_get(r, i2, &v));
    ck_assert_double_eq(v, 3);
    diffcl_tensor_free(r);
    ck_ok(diffcl_sum_all(t, &r));
    ck_ok(diffcl_tensor_item(r, &v));
    ck_assert_double_eq(v, 23.0 * 24 / 2);
    diffcl_tensor_free(r);
    ck_ok(diffcl_mean_all(t, &r));
    ck_ok(diffcl_tensor_item(r, &v));
    ck_assert_double_eq(v, 11.5);
    diffcl_tensor_free(r);
    ck_assert_int_eq(diffcl_sum(t, 3, 0, &r), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(diffcl_sum(t, -4, 0, &r), DIFFCL_ERR_INVALID_ARGUMENT);
    diffcl_tensor_free(t);
}
END_TEST

START_TEST(test_matmul)
{
    int64_t sa[2] = {2, 3}, sb[2] = {3, 2}, sbt[2] = {2, 3};
    diffcl_tensor *a = arange(DIFFCL_F32, 2, sa), *b = arange(DIFFCL_F32, 2, sb), *r = NULL;
    ck_ok(diffcl_matmul(a, b, 0, 0, &r));
    float got[4];
    ck_ok(diffcl_tensor_copy_to(r, got, sizeof got));
    /* [[0,1,2],[3,4,5]] x [[0,1],[2,3],[4,5]] */
    ck_assert_float_eq(got[0], 10);
    ck_assert_float_eq(got[1], 13);
    ck_assert_float_eq(got[2], 28);
    ck_assert_float_eq(got[3], 40);
    diffcl_tensor_free(r);
    diffcl_tensor *bt = arange(DIFFCL_F32, 2, sbt);
    ck_ok(diffcl_matmul(a, bt, 0, 1, &r)); /* a bt^T */
    ck_ok(diffcl_tensor_copy_to(r, got, sizeof got));
    ck_assert_float_eq(got[1], 0 * 3 + 1 * 4 + 2 * 5);
    diffcl_tensor_free(r);
    ck_assert_int_eq(diffcl_matmul(a, a, 0, 0, &r), DIFFCL_ERR_SHAPE);
    int64_t b3[3] = {2, 2, 3};
    diffcl_tensor *x = arange(DIFFCL_F64, 3, b3), *y = arange(DIFFCL_F64, 3, b3);
    ck_ok(diffcl_matmul(x, y, 0, 1, &r));
    ck_assert_int_eq(diffcl_tensor_dim(r, 0), 2);
    ck_assert_double_eq(at(r, 1, 0, 1), 6 * 9 + 7 * 10 + 8 * 11);
    diffcl_tensor_free(r);
    diffcl_tensor_free(x);
    diffcl_tensor_free(y);
    diffcl_tensor_free(bt);
    diffcl_tensor_free(a);
    diffcl_tensor_free(b);
}
END_TEST

START_TEST(test_fills_independent_of_threads)
{
    int64_t s[2] = {37, 41};
    diffcl_tensor *a = NULL, *b = NULL;
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_F32, 2, s, &a));
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_F32, 2, s, &b));
    diffcl_rng_key k = diffcl_rng_key_make(9, 2, 0, 0);
    ck_ok(diffcl_tensor_fill_normal(a, k, 0, 1));
    ck_ok(diffcl_context_set_threads(ctx, 2));
    ck_ok(diffcl_tensor_fill_normal(b, k, 0, 1));
    ck_assert_mem_eq(diffcl_tensor_data(a), diffcl_tensor_data(b), 37 * 41 * 4);
    ck_ok(diffcl_tensor_fill(a, 2.5));
    ck_assert_float_eq(((float *)diffcl_tensor_data(a))[100], 2.5f);
    ck_ok(diffcl_tensor_fill_uniform(a, k, 3, 4));
    ck_assert(((float *)diffcl_tensor_data(a))[7] >= 3.0f);
    diffcl_tensor *lab = NULL;
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_I32, 2, s, &lab));
    ck_assert_int_eq(diffcl_tensor_fill_normal(lab, k, 0, 1), DIFFCL_ERR_DTYPE);
    ck_assert_int_eq(diffcl_tensor_fill_normal(a, k, 0, -1), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_ok(diffcl_tensor_fill(lab, 3));
    ck_assert_int_eq(((int32_t *)diffcl_tensor_data(lab))[5], 3);
    diffcl_tensor_free(lab);
    diffcl_tensor_free(a);
    diffcl_tensor_free(b);
}
END_TEST


/* Copies of 1 MiB and more are split over threads: a permuted (strided) F32 view, a
 * narrowed one and a contiguous clone must still land element for element, at 1 and 2
 * threads, and so must scatters into such views (diffcl_tensor_copy_from). */
START_TEST(test_large_copies_threaded)
{
    int64_t shape[3] = {24, 80, 160}; /* 1.2 MiB of F32 */
    diffcl_tensor *t = arange(DIFFCL_F32, 3, shape);
    for (int threads = 1; threads <= 2; threads++) {
        ck_ok(diffcl_context_set_threads(ctx, threads));
        const int perm[3] = {2, 0, 1};
        diffcl_tensor *p = NULL, *pc = NULL, *n = NULL, *nc = NULL, *c = NULL;
        ck_ok(diffcl_tensor_permute(t, perm, &p));
        ck_ok(diffcl_tensor_contiguous(p, &pc));
        const float *v = diffcl_tensor_data_const(pc);
        for (int64_t k = 0; k < 160; k++)
            for (int64_t i = 0; i < 24; i++)
                for (int64_t j = 0; j < 80; j++)
                    ck_assert_float_eq(v[(k * 24 + i) * 80 + j], (float)((i * 80 + j) * 160 + k));
        ck_ok(diffcl_tensor_narrow(t, 2, 7, 150, &n));
        ck_ok(diffcl_tensor_contiguous(n, &nc));
        v = diffcl_tensor_data_const(nc);
        for (int64_t i = 0; i < 24 * 80; i++)
            for (int64_t k = 0; k < 150; k++) ck_assert_float_eq(v[i * 150 + k], (float)(i * 160 + 7 + k));
        ck_ok(diffcl_tensor_clone(t, &c));
        ck_assert_int_eq(memcmp(diffcl_tensor_data_const(c), diffcl_tensor_data_const(t), 24 * 80 * 160 * 4), 0);
        /* and back: scatter pc's values through a permuted view of a zero tensor, and nc's
         * through a narrowed one; both must reproduce t where they write */
        diffcl_tensor *z = NULL, *zp = NULL, *zn = NULL;
        ck_ok(diffcl_tensor_new(ctx, DIFFCL_F32, 3, shape, &z)); /* zero-filled */
        ck_ok(diffcl_tensor_permute(z, perm, &zp));
        ck_ok(diffcl_tensor_copy_from(zp, diffcl_tensor_data_const(pc), (size_t)24 * 80 * 160 * 4));
        ck_assert_int_eq(memcmp(diffcl_tensor_data_const(z), diffcl_tensor_data_const(t), 24 * 80 * 160 * 4), 0);
        ck_ok(diffcl_tensor_fill(z, 0.0));
        ck_ok(diffcl_tensor_narrow(z, 2, 7, 150, &zn));
        ck_ok(diffcl_tensor_copy_from(zn, diffcl_tensor_data_const(nc), (size_t)24 * 80 * 150 * 4));
        const float *zv = diffcl_tensor_data_const(z);
        for (int64_t i = 0; i < 24 * 80; i++)
            for (int64_t k = 0; k < 160; k++)
                ck_assert_float_eq(zv[i * 160 + k], k >= 7 && k < 157 ? (float)(i * 160 + k) : 0.0f);
        diffcl_tensor_free(zp);
        diffcl_tensor_free(zn);
        diffcl_tensor_free(z);
        diffcl_tensor_free(p);
        diffcl_tensor_free(pc);
        diffcl_tensor_free(n);
        diffcl_tensor_free(nc);
        diffcl_tensor_free(c);
    }
    diffcl_tensor_free(t);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("tensor");
    TCase *tc = tcase_create("tensor");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_create_and_query);
    tcase_add_test(tc, test_create_errors);
    tcase_add_test(tc, test_large_copies_threaded);
    tcase_add_test(tc, test_wrap_user_memory);
    tcase_add_test(tc, test_views);
    tcase_add_test(tc, test_concat_and_dtype);
    tcase_add_test(tc, test_elementwise_broadcast);
    tcase_add_test(tc, test_reductions);
    tcase_add_test(tc, test_matmul);
    tcase_add_test(tc, test_fills_independent_of_threads);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}
