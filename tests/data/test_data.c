/* Suite `data`: phantom, readers/writers, preprocessing, augmentation, sampler. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_util.h"

#include "diffcl/data.h"

static diffcl_context *ctx_threads(int n)
{
    diffcl_context_options o = DIFFCL_CONTEXT_OPTIONS_INIT;
    o.n_threads = n;
    o.log_level = DIFFCL_LOG_WARN;
    diffcl_context *ctx = NULL;
    ck_ok(diffcl_context_create(&o, &ctx));
    return ctx;
}

static int64_t count_eq(const diffcl_tensor *t, int v)
{
    const uint8_t *p = diffcl_tensor_data_const(t);
    int64_t n = diffcl_tensor_numel(t), c = 0;
    for (int64_t i = 0; i < n; i++) c += p[i] == v;
    return c;
}

static int same_bytes(const diffcl_tensor *a, const diffcl_tensor *b)
{
    if (diffcl_tensor_numel(a) != diffcl_tensor_numel(b)) return 0;
    size_t n = (size_t)diffcl_tensor_numel(a) * diffcl_dtype_size(diffcl_tensor_dtype(a));
    return memcmp(diffcl_tensor_data_const(a), diffcl_tensor_data_const(b), n) == 0;
}

/* ------------------------------------------------------------------ phantom ---- */

START_TEST(phantom_3d_shapes_and_content)
{
    diffcl_context *ctx = test_context();
    diffcl_phantom_options o = DIFFCL_PHANTOM_OPTIONS_INIT;
    diffcl_tensor *img = NULL, *lab = NULL;
    ck_ok(diffcl_phantom_case(ctx, &o, 0, &img, &lab));
    int64_t s[5];
    ck_assert_int_eq(diffcl_tensor_shape(img, s), 4);
    ck_assert(s[0] == 1 && s[1] == 64 && s[2] == 64 && s[3] == 48);
    ck_assert_int_eq(diffcl_tensor_shape(lab, s), 3);
    ck_assert(s[0] == 64 && s[1] == 64 && s[2] == 48);
    ck_assert_int_eq(diffcl_tensor_dtype(img), DIFFCL_F32);
    ck_assert_int_eq(diffcl_tensor_dtype(lab), DIFFCL_U8);
    int64_t n = diffcl_tensor_numel(lab), fg = count_eq(lab, 1);
    ck_assert_msg(fg > n / 50 && fg < n / 4, "foreground fraction %g", (double)fg / n);
    ck_assert_int_eq(count_eq(lab, 0) + fg, n);
    /* z-scored, and the foreground is brighter than the background on average */
    const float *ip = diffcl_tensor_data_const(img);
    const uint8_t *lp = diffcl_tensor_data_const(lab);
    double m = 0, m2 = 0, mf = 0, mb = 0;
    for (int64_t i = 0; i < n; i++) {
        ck_assert(isfinite(ip[i]));
        m += ip[i];
        m2 += ip[i] * ip[i];
        if (lp[i]) mf += ip[i];
        else mb += ip[i];
    }
    m /= n;
    ck_assert(fabs(m) < 1e-3 && fabs(m2 / n - 1) < 1e-3);
    ck_assert(mf / fg > mb / (n - fg) + 1.0);
    diffcl_tensor_free(img);
    diffcl_tensor_free(lab);
    diffcl_context_free(ctx);
}
END_TEST

START_TEST(phantom_deterministic_and_thread_independent)
{
    diffcl_context *c1 = ctx_threads(1), *c2 = ctx_threads(2);
    diffcl_phantom_options o = DIFFCL_PHANTOM_OPTIONS_INIT;
    o.depth = 32;
    o.height = 40;
    o.width = 24;
    o.channels = 2;
    diffcl_tensor *a = NULL, *al = NULL, *b = NULL, *bl = NULL, *c = NULL, *cl = NULL;
    ck_ok(diffcl_phantom_case(c1, &o, 3, &a, &al));
    ck_ok(diffcl_phantom_case(c2, &o, 3, &b, &bl));
    ck_assert(same_bytes(a, b) && same_bytes(al, bl));
    ck_ok(diffcl_phantom_case(c1, &o, 4, &c, &cl));
    ck_assert(!same_bytes(a, c) && !same_bytes(al, cl));
    ck_assert_int_eq(diffcl_tensor_dim(a, 0), 2);
    diffcl_tensor_free(c);
    diffcl_tensor_free(cl);
    o.seed = 99;
    ck_ok(diffcl_phantom_case(c1, &o, 3, &c, &cl));
    ck_assert(!same_bytes(al, cl));
    diffcl_tensor_free(a);
    diffcl_tensor_free(al);
    diffcl_tensor_free(b);
    diffcl_tensor_free(bl);
    diffcl_tensor_free(c);
    diffcl_tensor_free(cl);
    diffcl_context_free(c1);
    diffcl_context_free(c2);
}
END_TEST

START_TEST(phantom_2d_and_tube_class)
{
    diffcl_context *ctx = test_context();
    diffcl_phantom_options o;
    diffcl_phantom_options_init(&o);
    o.ndim = 2;
    o.tube_class = 2;
    for (int64_t k = 0; k < 8; k++) {
        diffcl_tensor *img = NULL, *lab = NULL;
        ck_ok(diffcl_phantom_case(ctx, &o, k, &img, &lab));
        int64_t s[5];
        ck_assert_int_eq(diffcl_tensor_shape(img, s), 3);
        ck_assert(s[0] == 1 && s[1] == 96 && s[2] == 96);
        ck_assert_int_eq(diffcl_tensor_shape(lab, s), 2);
        int64_t n = diffcl_tensor_numel(lab), f1 = count_eq(lab, 1), f2 = count_eq(lab, 2);
        ck_assert_msg(f1 > n / 40 && f1 < n / 3, "case %d: blob fraction %g", (int)k,
                      (double)f1 / n);
        ck_assert_msg(f2 > 0, "case %d: no tube pixels in the 2-D slice", (int)k);
        ck_assert_int_eq(count_eq(lab, 0) + f1 + f2, n);
        diffcl_tensor_free(img);
        diffcl_tensor_free(lab);
    }
    diffcl_context_free(ctx);
}
END_TEST

START_TEST(phantom_bad_options)
{
    diffcl_context *ctx = test_context();
    diffcl_phantom_options o = DIFFCL_PHANTOM_OPTIONS_INIT;
    diffcl_tensor *img = NULL;
    o.ndim = 4;
    ck_assert_int_eq(diffcl_phantom_case(ctx, &o, 0, &img, NULL), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert(strstr(diffcl_last_error(), "ndim"));
    o.ndim = 3;
    o.width = 8;
    ck_assert_int_eq(diffcl_phantom_case(ctx, &o, 0, &img, NULL), DIFFCL_ERR_INVALID_ARGUMENT);
    o.width = 0;
    ck_assert_int_eq(diffcl_phantom_case(ctx, &o, -1, &img, NULL), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_null(img);
    ck_ok(diffcl_phantom_case(ctx, NULL, 0, &img, NULL));
    diffcl_tensor_free(img);
    diffcl_context_free(ctx);
}
END_TEST


/* ---------------------------------------------------------- sampler / augment ---- */

static diffcl_dataset *phantom_ds(diffcl_context *ctx, int ndim, int64_t n)
{
    diffcl_dataset_options o = DIFFCL_DATASET_OPTIONS_INIT;
    o.layout = DIFFCL_LAYOUT_PHANTOM;
    o.n_cases = n;
    o.phantom.ndim = ndim;
    if (ndim == 3) {
        o.phantom.depth = 32;
        o.phantom.height = 32;
        o.phantom.width = 24;
    } else {
        o.phantom.height = 48;
        o.phantom.width = 40;
    }
    diffcl_dataset *ds = NULL;
    ck_ok(diffcl_dataset_open(ctx, NULL, &o, &ds));
    return ds;
}

START_TEST(dataset_phantom_and_split)
{
    diffcl_context *ctx = test_context();
    diffcl_dataset *ds = phantom_ds(ctx, 3, 7);
    ck_assert_int_eq(diffcl_dataset_size(ds), 7);
    ck_assert_str_eq(diffcl_dataset_case_id(ds, 3), "phantom_003");
    ck_assert_int_eq(diffcl_dataset_find(ds, "phantom_005"), 5);
    ck_assert_int_eq(diffcl_dataset_layout(ds), DIFFCL_LAYOUT_PHANTOM);
    diffcl_tensor *img = NULL, *lab = NULL, *img2 = NULL;
    diffcl_image_meta meta;
    diffcl_image_meta_init(&meta);
    ck_ok(diffcl_dataset_load(ds, 2, &img, &lab, &meta));
    ck_assert_int_eq(diffcl_tensor_ndim(img), 4);
    ck_assert_int_eq(diffcl_tensor_ndim(lab), 3);
    ck_assert(meta.spacing[0] == 1 && meta.ndim == 3);
    diffcl_phantom_options po = DIFFCL_PHANTOM_OPTIONS_INIT;
    po.depth = 32;
    po.height = 32;
    po.width = 24;
    ck_ok(diffcl_phantom_case(ctx, &po, 2, &img2, NULL));
    ck_assert(same_bytes(img, img2));
    diffcl_split sp;
    ck_ok(diffcl_dataset_split(ds, 2, NULL, &sp));
    ck_assert(sp.n_labeled == 2 && sp.n_unlabeled == 5 && sp.labeled[0] == 0 && sp.labeled[1] == 1);
    diffcl_split_free(&sp);
    char path[] = "/tmp/diffcl_test_list_XXXXXX";
    int fd = mkstemp(path);
    ck_assert(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "# labeled\n phantom_004 \n\nphantom_001\r\n");
    fclose(f);
    ck_ok(diffcl_dataset_split(ds, 0, path, &sp));
    ck_assert(sp.n_labeled == 2 && sp.labeled[0] == 1 && sp.labeled[1] == 4 && sp.n_unlabeled == 5);
    diffcl_split_free(&sp);
    f = fopen(path, "w");
    fprintf(f, "phantom_001\nnope\n");
    fclose(f);
    ck_assert_int_eq(diffcl_dataset_split(ds, 0, path, &sp), DIFFCL_ERR_NOT_FOUND);
    ck_assert(strstr(diffcl_last_error(), "nope"));
    unlink(path);
    ck_assert_int_eq(diffcl_dataset_split(ds, 8, NULL, &sp), DIFFCL_ERR_INVALID_ARGUMENT);
    diffcl_layout l;
    ck_ok(diffcl_layout_parse("la-h5", &l));
    ck_assert_int_eq(l, DIFFCL_LAYOUT_H5);
    ck_assert_int_eq(diffcl_layout_parse("zip", &l), DIFFCL_ERR_INVALID_ARGUMENT);
    diffcl_tensor_free(img);
    diffcl_tensor_free(img2);
    diffcl_tensor_free(lab);
    diffcl_dataset_free(ds);
    diffcl_context_free(ctx);
}
END_TEST

static void check_batches_equal(diffcl_sampler *a, diffcl_sampler *b, uint32_t it)
{
    diffcl_tensor *ia = NULL, *la = NULL, *ib = NULL, *lb = NULL;
    int64_t ca[4], cb[4];
    ck_ok(diffcl_sampler_next(a, it, &ia, &la, ca));
    ck_ok(diffcl_sampler_next(b, it, &ib, &lb, cb));
    ck_assert_msg(same_bytes(ia, ib) && same_bytes(la, lb), "iteration %u differs", it);
    ck_assert(!memcmp(ca, cb, sizeof ca));
    diffcl_tensor_free(ia);
    diffcl_tensor_free(la);
    diffcl_tensor_free(ib);
    diffcl_tensor_free(lb);
}

START_TEST(sampler_deterministic_with_prefetch)
{
    diffcl_context *ctx = test_context();
    diffcl_dataset *ds = phantom_ds(ctx, 3, 6);
    diffcl_split sp;
    ck_ok(diffcl_dataset_split(ds, 2, NULL, &sp));
    diffcl_sampler_options o = DIFFCL_SAMPLER_OPTIONS_INIT;
    o.patch[0] = 24;
    o.patch[1] = 24;
    o.patch[2] = 16;
    o.augment.strong = 1;
    o.augment.rotate_deg = 15;
    o.augment.fg_prob = 0.5;
    o.prefetch = 0;
    diffcl_sampler *sync = NULL, *pre = NULL, *lazy = NULL;
    ck_ok(diffcl_sampler_create(ds, &sp, &o, &sync));
    o.prefetch = 3;
    ck_ok(diffcl_sampler_create(ds, &sp, &o, &pre));
    o.cache = 0;
    o.prefetch = 1;
    ck_ok(diffcl_sampler_create(ds, &sp, &o, &lazy));
    for (uint32_t it = 0; it < 5; it++) check_batches_equal(sync, pre, it);
    check_batches_equal(pre, sync, 9);  /* skipping ahead */
    check_batches_equal(pre, sync, 2);  /* going back */
    check_batches_equal(lazy, sync, 2);
    check_batches_equal(lazy, sync, 3);
    diffcl_tensor *img = NULL, *lab = NULL;
    int64_t ci[4];
    ck_ok(diffcl_sampler_next(pre, 3, &img, &lab, ci));
    int64_t s[5];
    ck_assert_int_eq(diffcl_tensor_shape(img, s), 5);
    ck_assert(s[0] == 4 && s[1] == 1 && s[2] == 24 && s[3] == 24 && s[4] == 16);
    ck_assert_int_eq(diffcl_tensor_shape(lab, s), 4);
    ck_assert(s[0] == 2 && s[1] == 24);
    ck_assert(ci[0] < 2 && ci[1] < 2 && ci[2] >= 2 && ci[3] >= 2);
    diffcl_tensor_free(img);
    diffcl_tensor_free(lab);
    /* every labeled case once per epoch */
    int seen[2] = {0, 0};
    for (uint32_t it = 0; it < 3; it++) {
        ck_ok(diffcl_sampler_next(sync, it, &img, NULL, ci));
        seen[ci[0]]++;
        seen[ci[1]]++;
        ck_assert(ci[0] != ci[1]);
        diffcl_tensor_free(img);
    }
    ck_assert(seen[0] == 3 && seen[1] == 3);
    diffcl_sampler_free(sync);
    diffcl_sampler_free(pre);
    diffcl_sampler_free(lazy);
    diffcl_split_free(&sp);
    diffcl_dataset_free(ds);
    diffcl_context_free(ctx);
}
END_TEST

START_TEST(sampler_2d_and_errors)
{
    diffcl_context *ctx = test_context();
    diffcl_dataset *ds = phantom_ds(ctx, 2, 4);
    diffcl_split sp;
    ck_ok(diffcl_dataset_split(ds, 4, NULL, &sp));
    diffcl_sampler_options o;
    diffcl_sampler_options_init(&o);
    o.patch[1] = 32;
    o.patch[2] = 32;
    diffcl_sampler *s = NULL;
    ck_assert_int_eq(diffcl_sampler_create(ds, &sp, &o, &s), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert(strstr(diffcl_last_error(), "unlabeled"));
    o.batch_unlabeled = 0;
    o.batch_labeled = 3;
    ck_ok(diffcl_sampler_create(ds, &sp, &o, &s));
    diffcl_tensor *img = NULL, *lab = NULL;
    ck_ok(diffcl_sampler_next(s, 0, &img, &lab, NULL));
    int64_t sh[5];
    ck_assert_int_eq(diffcl_tensor_shape(img, sh), 4);
    ck_assert(sh[0] == 3 && sh[1] == 1 && sh[2] == 32 && sh[3] == 32);
    ck_assert_int_eq(diffcl_tensor_shape(lab, sh), 3);
    diffcl_tensor_free(img);
    diffcl_tensor_free(lab);
    diffcl_sampler_free(s);
    diffcl_split_free(&sp);
    diffcl_dataset_free(ds);
    diffcl_context_free(ctx);
}
END_TEST

START_TEST(augment_geometry_is_exact)
{
    diffcl_context *ctx = test_context();
    diffcl_phantom_options po = DIFFCL_PHANTOM_OPTIONS_INIT;
    po.depth = 20;
    po.height = 20;
    po.width = 16;
    diffcl_tensor *img = NULL, *lab = NULL, *pi = NULL, *pl = NULL;
    ck_ok(diffcl_phantom_case(ctx, &po, 1, &img, &lab));
    const int64_t full[3] = {20, 20, 16};
    diffcl_augment_options o = DIFFCL_AUGMENT_OPTIONS_INIT;
    o.flip = 0;
    o.rot90 = 0;
    ck_ok(diffcl_augment_patch(img, lab, full, &o, diffcl_rng_key_make(1, 2, 3, 4), &pi, &pl));
    ck_assert(same_bytes(img, pi) && same_bytes(lab, pl));
    diffcl_tensor_free(pi);
    diffcl_tensor_free(pl);
    /* flips and rot90 only permute voxels: the label histogram and the image sum are kept */
    o.flip = 1;
    o.rot90 = 1;
    const float *src = diffcl_tensor_data_const(img);
    for (uint32_t k = 0; k < 6; k++) {
        ck_ok(diffcl_augment_patch(img, lab, full, &o, diffcl_rng_key_make(7, 2, k, 0), &pi, &pl));
        ck_assert_int_eq(count_eq(pl, 1), count_eq(lab, 1));
        double a = 0, b = 0;
        const float *p = diffcl_tensor_data_const(pi);
        for (int64_t i = 0; i < diffcl_tensor_numel(img); i++) {
            a += src[i];
            b += p[i];
        }
        ck_assert_double_eq_tol(a, b, 1e-3);
        diffcl_tensor_free(pi);
        diffcl_tensor_free(pl);
    }
    /* foreground-biased crops contain foreground */
    o.fg_prob = 1;
    const int64_t small[3] = {8, 8, 8};
    for (uint32_t k = 0; k < 10; k++) {
        ck_ok(diffcl_augment_patch(img, lab, small, &o, diffcl_rng_key_make(7, 2, k, 1), &pi, &pl));
        ck_assert(count_eq(pl, 0) < 8 * 8 * 8);
        diffcl_tensor_free(pi);
        diffcl_tensor_free(pl);
    }
    /* a patch larger than the case is zero-padded symmetrically */
    const int64_t big[3] = {24, 24, 20};
    o.fg_prob = 0;
    o.flip = o.rot90 = 0;
    ck_ok(diffcl_augment_patch(img, lab, big, &o, diffcl_rng_key_make(7, 2, 0, 2), &pi, &pl));
    int64_t idx[4] = {0, 2, 2, 2};
    double v0, v1;
    ck_ok(diffcl_tensor_get(pi, idx, &v0));
    int64_t idx2[4] = {0, 0, 0, 0};
    ck_ok(diffcl_tensor_get(img, idx2, &v1));
    ck_assert(v0 == v1);
    idx[1] = 1;
    ck_ok(diffcl_tensor_get(pi, idx, &v0));
    ck_assert(v0 == 0);
    diffcl_tensor_free(pi);
    diffcl_tensor_free(pl);
    /* intensity set: deterministic, changes values */
    diffcl_tensor *batch = NULL, *s1 = NULL, *s2 = NULL;
    ck_ok(diffcl_tensor_unsqueeze(img, 0, &batch));
    o.strong_prob = 1;
    ck_ok(diffcl_augment_intensity(batch, &o, diffcl_rng_key_make(3, 4, 0, 5), &s1));
    ck_ok(diffcl_augment_intensity(batch, &o, diffcl_rng_key_make(3, 4, 0, 5), &s2));
    ck_assert(same_bytes(s1, s2) && !same_bytes(s1, batch));
    diffcl_tensor_free(s1);
    diffcl_tensor_free(s2);
    diffcl_tensor_free(batch);
    diffcl_tensor_free(img);
    diffcl_tensor_free(lab);
    diffcl_context_free(ctx);
}
END_TEST

static Suite *data_suite(void)
{
    Suite *s = suite_create("data");
    TCase *tc = tcase_create("phantom");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, phantom_3d_shapes_and_content);
    tcase_add_test(tc, phantom_deterministic_and_thread_independent);
    tcase_add_test(tc, phantom_2d_and_tube_class);
    tcase_add_test(tc, phantom_bad_options);
    suite_add_tcase(s, tc);
    tc = tcase_create("sampler");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, dataset_phantom_and_split);
    tcase_add_test(tc, sampler_deterministic_with_prefetch);
    tcase_add_test(tc, sampler_2d_and_errors);
    tcase_add_test(tc, augment_geometry_is_exact);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return test_run_suite(data_suite()); }
