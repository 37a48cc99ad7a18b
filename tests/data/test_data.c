/* Suite `data`: phantom, readers/writers, preprocessing, augmentation, sampler. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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


/* ------------------------------------------------------------------- readers ---- */

static diffcl_tensor_dict *load_ref(diffcl_context *ctx)
{
    diffcl_tensor_dict *d = NULL;
    ck_ok(diffcl_safetensors_load(ctx, test_fixture_path("data_ref.safetensors"), &d));
    return d;
}

static diffcl_tensor *ref_get(diffcl_tensor_dict *d, const char *name)
{
    diffcl_tensor *t = diffcl_tensor_dict_get(d, name);
    ck_assert_msg(t != NULL, "data_ref has no %s", name);
    return t;
}

/* Exact equality of values (any dtypes) and shapes. */
static void assert_same_values(const diffcl_tensor *a, const diffcl_tensor *b, const char *what)
{
    int64_t sa[5], sb[5];
    int na = diffcl_tensor_shape(a, sa), nb = diffcl_tensor_shape(b, sb);
    ck_assert_msg(na == nb && !memcmp(sa, sb, sizeof(int64_t) * (size_t)na), "%s: shapes differ", what);
    ck_assert_msg(test_rel_error(a, b) == 0, "%s: values differ (rel %g)", what, test_rel_error(a, b));
}

static const char *fx(const char *rel)
{
    static char buf[4][4096];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s", test_fixture_path(rel));
    return buf[k];
}

/* A temporary copy of the LA fixture folder (case folders linked), with the given list files
 * (NULL: none). */
static const char *la_copy(const char *train_list, const char *test_list)
{
    static char dir[64];
    strcpy(dir, "/tmp/diffcl_lists_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    const char *cases[3] = {"ACASE01", "MCASE03", "ZCASE02"};
    for (int i = 0; i < 3; i++) {
        char from[4200], to[200];
        snprintf(from, sizeof from, "%s/%s", fx("data/la"), cases[i]);
        snprintf(to, sizeof to, "%s/%s", dir, cases[i]);
        ck_assert_int_eq(symlink(from, to), 0);
    }
    const char *names[2] = {"train.list", "test.list"}, *text[2] = {train_list, test_list};
    for (int k = 0; k < 2; k++) {
        if (!text[k]) continue;
        char p[200];
        snprintf(p, sizeof p, "%s/%s", dir, names[k]);
        FILE *f = fopen(p, "w");
        ck_assert_ptr_nonnull(f);
        fputs(text[k], f);
        fclose(f);
    }
    return dir;
}

static void remove_dir(const char *dir)
{
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* Issue 18: the lists a folder carries. train.list is taken by default; test.list is never
 * opened as training data; a case in both is an error; dataset.json gives the classes. */
START_TEST(dataset_folder_lists)
{
    if (!diffcl_io_has_hdf5()) return;
    diffcl_context *ctx = test_context();
    diffcl_dataset *ds = NULL;
    /* no train.list: a scan, less the test.list cases */
    const char *d = la_copy(NULL, "MCASE03\n");
    ck_ok(diffcl_dataset_open(ctx, d, NULL, &ds));
    ck_assert_int_eq(diffcl_dataset_size(ds), 2);
    ck_assert_int_eq(diffcl_dataset_find(ds, "MCASE03"), -1);
    ck_assert_ptr_null(diffcl_dataset_list(ds));
    diffcl_dataset_free(ds);
    /* a test list given on purpose opens the test cases */
    diffcl_dataset_options o = DIFFCL_DATASET_OPTIONS_INIT;
    o.list = "test.list";
    ck_ok(diffcl_dataset_open(ctx, d, &o, &ds));
    ck_assert_int_eq(diffcl_dataset_size(ds), 1);
    diffcl_dataset_free(ds);
    remove_dir(d);
    /* a train.list naming a test case */
    d = la_copy("ACASE01\nMCASE03\n", "MCASE03\n");
    ck_assert_int_eq(diffcl_dataset_open(ctx, d, NULL, &ds), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(diffcl_last_error(), "MCASE03"));
    ck_assert_ptr_nonnull(strstr(diffcl_last_error(), "test.list"));
    remove_dir(d);
    diffcl_context_free(ctx);
}
END_TEST

START_TEST(dataset_json_classes_and_training_entries)
{
    if (!diffcl_io_has_nifti()) return;
    diffcl_context *ctx = test_context();
    diffcl_dataset *ds = NULL;
    /* MSD: "training" entries are the case list, "labels" the classes, "modality" a channel */
    ck_ok(diffcl_dataset_open(ctx, fx("data/msd"), NULL, &ds));
    ck_assert_str_eq(diffcl_dataset_list(ds), "dataset.json");
    ck_assert_int_eq(diffcl_dataset_size(ds), 2);
    ck_assert_int_eq(diffcl_dataset_num_classes(ds), 2);
    ck_assert_str_eq(diffcl_dataset_class_name(ds, 1), "left atrium");
    ck_assert_str_eq(diffcl_dataset_channel_name(ds, 0), "MRI");
    ck_assert_ptr_null(diffcl_dataset_class_name(ds, 2));
    diffcl_dataset_free(ds);
    /* nnU-Net v2: "labels" as name -> index, "channel_names" */
    ck_ok(diffcl_dataset_open(ctx, fx("data/nnunet"), NULL, &ds));
    ck_assert_ptr_null(diffcl_dataset_list(ds));
    ck_assert_str_eq(diffcl_dataset_class_name(ds, 1), "fg");
    ck_assert_str_eq(diffcl_dataset_channel_name(ds, 1), "T2");
    diffcl_dataset_free(ds);
    /* region-based labels are refused with a clear error */
    char dir[] = "/tmp/diffcl_regions_XXXXXX", p[200], from[4200];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(p, sizeof p, "%s/dataset.json", dir);
    FILE *f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    fputs("{\"labels\": {\"background\": 0, \"whole tumour\": [1, 2, 3]}, "
          "\"channel_names\": {\"0\": \"T1\", \"1\": \"T2\"}, \"file_ending\": \".nii.gz\"}",
          f);
    fclose(f);
    const char *sub[2] = {"imagesTr", "labelsTr"};
    for (int k = 0; k < 2; k++) {
        snprintf(from, sizeof from, "%s/%s", fx("data/nnunet"), sub[k]);
        snprintf(p, sizeof p, "%s/%s", dir, sub[k]);
        ck_assert_int_eq(symlink(from, p), 0);
    }
    ck_assert_int_eq(diffcl_dataset_open(ctx, dir, NULL, &ds), DIFFCL_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(diffcl_last_error(), "region"));
    remove_dir(dir);
    diffcl_context_free(ctx);
}
END_TEST

START_TEST(png_read_matches_pil)
{
    diffcl_context *ctx = test_context();
    diffcl_tensor_dict *ref = load_ref(ctx);
    const char *names[] = {"slice0", "slice1", "slice2"};
    for (int i = 0; i < 3; i++) {
        char rel[256];
        diffcl_tensor *t = NULL;
        int depth = 0;
        snprintf(rel, sizeof rel, "png/images/%s.png", names[i]);
        char frel[300];
        snprintf(frel, sizeof frel, "data/%s", rel);
        ck_ok(diffcl_png_read_image(ctx, fx(frel), &t, &depth));
        ck_assert_int_eq(depth, i == 1 ? 16 : 8);
        assert_same_values(t, ref_get(ref, rel), rel);
        diffcl_tensor_free(t);
        snprintf(rel, sizeof rel, "png/labels/%s.png", names[i]);
        snprintf(frel, sizeof frel, "data/%s", rel);
        ck_ok(diffcl_png_read_label(ctx, fx(frel), &t));
        ck_assert_int_eq(diffcl_tensor_dtype(t), DIFFCL_U8);
        assert_same_values(t, ref_get(ref, rel), rel);
        diffcl_tensor_free(t);
    }
    diffcl_tensor *t = NULL;
    ck_ok(diffcl_png_read_image(ctx, fx("data/rgb.png"), &t, NULL));
    assert_same_values(t, ref_get(ref, "rgb.png"), "rgb luminance");
    diffcl_tensor_free(t);
    /* an RGB file is not a label map; a 16-bit one neither */
    ck_assert_int_eq(diffcl_png_read_label(ctx, fx("data/rgb.png"), &t), DIFFCL_ERR_FORMAT);
    ck_assert(strstr(diffcl_last_error(), "rgb.png") && strstr(diffcl_last_error(), "label"));
    ck_assert_int_eq(diffcl_png_read_label(ctx, fx("data/png/images/slice1.png"), &t),
                     DIFFCL_ERR_FORMAT);
    diffcl_tensor_dict_free(ref);
    diffcl_context_free(ctx);
}
END_TEST

static void write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert(f != NULL);
    if (n) ck_assert(fwrite(p, 1, n, f) == n);
    fclose(f);
}

/* Copy the first @p frac of file src to dst. */
static void truncate_copy(const char *src, const char *dst, double frac)
{
    FILE *f = fopen(src, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", src);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n);
    ck_assert(fread(b, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    write_bytes(dst, b, (size_t)(n * frac));
    free(b);
}

START_TEST(png_write_round_trip_and_bad_files)
{
    diffcl_context *ctx = test_context();
    int64_t s[2] = {5, 7};
    diffcl_tensor *a = NULL, *b = NULL;
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_F32, 2, s, &a));
    float *p = diffcl_tensor_data(a);
    for (int i = 0; i < 35; i++) p[i] = (float)(i * 1871 % 65536);
    const char *path = "/tmp/diffcl_test_rt16.png";
    ck_ok(diffcl_png_write(a, path, 16));
    int depth;
    ck_ok(diffcl_png_read_image(ctx, path, &b, &depth));
    ck_assert_int_eq(depth, 16);
    assert_same_values(b, a, "16-bit round trip");
    diffcl_tensor_free(b);
    diffcl_tensor *lab = NULL;
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_U8, 2, s, &lab));
    uint8_t *lp = diffcl_tensor_data(lab);
    for (int i = 0; i < 35; i++) lp[i] = (uint8_t)(i % 4);
    ck_ok(diffcl_png_write(lab, path, 8));
    ck_ok(diffcl_png_read_label(ctx, path, &b));
    assert_same_values(b, lab, "label round trip");
    diffcl_tensor_free(b);
    /* truncated and non-PNG files: clear errors naming the file */
    truncate_copy(path, "/tmp/diffcl_test_trunc.png", 0.6);
    ck_assert_int_eq(diffcl_png_read_label(ctx, "/tmp/diffcl_test_trunc.png", &b), DIFFCL_ERR_FORMAT);
    ck_assert(strstr(diffcl_last_error(), "diffcl_test_trunc.png"));
    ck_assert_ptr_null(b);
    write_bytes("/tmp/diffcl_test_notpng.png", "hello world, not a png", 22);
    ck_assert_int_eq(diffcl_png_read_image(ctx, "/tmp/diffcl_test_notpng.png", &b, NULL),
                     DIFFCL_ERR_FORMAT);
    ck_assert(strstr(diffcl_last_error(), "not a PNG"));
    ck_assert_int_eq(diffcl_png_read_image(ctx, "/tmp/diffcl_no_such.png", &b, NULL), DIFFCL_ERR_IO);
    ck_assert(strstr(diffcl_last_error(), "/tmp/diffcl_no_such.png"));
    unlink(path);
    unlink("/tmp/diffcl_test_trunc.png");
    unlink("/tmp/diffcl_test_notpng.png");
    diffcl_tensor_free(a);
    diffcl_tensor_free(lab);
    diffcl_context_free(ctx);
}
END_TEST

START_TEST(h5_layouts_match_h5py)
{
    if (!diffcl_io_has_hdf5()) {
        diffcl_context *ctx = test_context();
        diffcl_tensor *t = NULL;
        diffcl_dataset *ds = NULL;
        ck_assert_int_eq(diffcl_h5_read(ctx, fx("data/bad/nolabel.h5"), "image", &t),
                         DIFFCL_ERR_UNSUPPORTED);
        ck_assert_int_eq(diffcl_dataset_open(ctx, fx("data/la"), NULL, &ds), DIFFCL_ERR_UNSUPPORTED);
        diffcl_context_free(ctx);
        return;
    }
    diffcl_context *ctx = test_context();
    diffcl_tensor_dict *ref = load_ref(ctx);
    /* LA: <id>/mri_norm2.h5, list order kept, split by sorted id */
    diffcl_dataset_options o = DIFFCL_DATASET_OPTIONS_INIT;
    o.list = "train.list";
    diffcl_dataset *ds = NULL;
    ck_ok(diffcl_dataset_open(ctx, fx("data/la"), &o, &ds));
    ck_assert_int_eq(diffcl_dataset_layout(ds), DIFFCL_LAYOUT_H5);
    ck_assert_int_eq(diffcl_dataset_size(ds), 2);
    ck_assert_str_eq(diffcl_dataset_case_id(ds, 0), "ZCASE02");
    diffcl_split sp;
    ck_ok(diffcl_dataset_split(ds, 1, NULL, &sp));
    ck_assert(sp.n_labeled == 1 && sp.labeled[0] == 1); /* ACASE01 sorts first */
    diffcl_split_free(&sp);
    for (int64_t i = 0; i < 2; i++) {
        diffcl_tensor *img = NULL, *lab = NULL, *sq = NULL;
        ck_ok(diffcl_dataset_load(ds, i, &img, &lab, NULL));
        char key[64];
        snprintf(key, sizeof key, "la/%s.image", diffcl_dataset_case_id(ds, i));
        ck_ok(diffcl_tensor_squeeze(img, 0, &sq));
        assert_same_values(sq, ref_get(ref, key), key);
        snprintf(key, sizeof key, "la/%s.label", diffcl_dataset_case_id(ds, i));
        assert_same_values(lab, ref_get(ref, key), key);
        diffcl_tensor_free(img);
        diffcl_tensor_free(sq);
        diffcl_tensor_free(lab);
    }
    diffcl_dataset_free(ds);
    /* no list given: the folder's own train.list (UA-MT's), in its order; never test.list */
    ck_ok(diffcl_dataset_open(ctx, fx("data/la"), NULL, &ds));
    ck_assert_int_eq(diffcl_dataset_size(ds), 2);
    ck_assert_str_eq(diffcl_dataset_case_id(ds, 0), "ZCASE02");
    ck_assert_str_eq(diffcl_dataset_list(ds), "train.list");
    ck_assert_int_eq(diffcl_dataset_find(ds, "MCASE03"), -1);
    diffcl_dataset_free(ds);
    /* Pancreas flat <id>.h5 with float64 image and bool label; BraTS data/<id>.h5 int16 */
    const char *roots[2] = {"data/pancreas", "data/brats"};
    const char *keys[2] = {"pancreas/image0001_norm", "brats/BraTS19_001"};
    for (int k = 0; k < 2; k++) {
        ck_ok(diffcl_dataset_open(ctx, fx(roots[k]), NULL, &ds));
        ck_assert_int_eq(diffcl_dataset_size(ds), 1);
        diffcl_tensor *img = NULL, *lab = NULL, *sq = NULL;
        ck_ok(diffcl_dataset_load(ds, 0, &img, &lab, NULL));
        char key[128];
        snprintf(key, sizeof key, "%s.image", keys[k]);
        ck_ok(diffcl_tensor_squeeze(img, 0, &sq));
        ck_assert_double_le(test_rel_error(sq, ref_get(ref, key)), k == 0 ? 1e-7 : 0);
        snprintf(key, sizeof key, "%s.label", keys[k]);
        assert_same_values(lab, ref_get(ref, key), key);
        diffcl_tensor_free(img);
        diffcl_tensor_free(sq);
        diffcl_tensor_free(lab);
        diffcl_dataset_free(ds);
    }
    diffcl_tensor *t = NULL;
    ck_ok(diffcl_h5_read(ctx, fx("data/brats/data/BraTS19_001.h5"), "image", &t));
    ck_assert_int_eq(diffcl_tensor_dtype(t), DIFFCL_I32);
    /* write / read round trip */
    const char *names[2] = {"image", "label"};
    diffcl_tensor *u = NULL;
    ck_ok(diffcl_tensor_to_dtype(t, DIFFCL_U8, &u));
    const diffcl_tensor *ts[2] = {t, u};
    ck_ok(diffcl_h5_write("/tmp/diffcl_test_rt.h5", names, ts, 2, 4));
    diffcl_tensor *b = NULL;
    ck_ok(diffcl_h5_read(ctx, "/tmp/diffcl_test_rt.h5", "image", &b));
    assert_same_values(b, t, "h5 round trip");
    diffcl_tensor_free(b);
    /* bad files */
    ck_assert_int_eq(diffcl_h5_read(ctx, fx("data/bad/nolabel.h5"), "label", &b), DIFFCL_ERR_NOT_FOUND);
    ck_assert(strstr(diffcl_last_error(), "nolabel.h5") && strstr(diffcl_last_error(), "label"));
    /* headers claiming a shape the file cannot hold (found by fuzzing: a NULL dereference in
     * the out-of-memory message, then an allocation of the claimed size) */
    ck_assert_int_eq(diffcl_h5_read(ctx, fx("data/bad/huge_shape.h5"), "image", &b), DIFFCL_ERR_FORMAT);
    ck_assert(strstr(diffcl_last_error(), "huge_shape.h5"));
    ck_assert_int_eq(diffcl_h5_read(ctx, fx("data/bad/overflow_shape.h5"), "image", &b), DIFFCL_ERR_FORMAT);
    /* found by fuzz-h5 (tests/fuzz/regress/h5): a 12 KB file whose chunked dataset claims 209 GB,
     * and a corrupt datatype of size 0 whose label would have allocated 2.3 GB */
    char rp[4200];
    snprintf(rp, sizeof rp, "%s/tests/fuzz/regress/h5/claims-209GB-chunked.h5", getenv("DIFFCL_SOURCE_ROOT"));
    ck_assert_int_eq(diffcl_h5_read(ctx, rp, "image", &b), DIFFCL_ERR_FORMAT);
    ck_assert(strstr(diffcl_last_error(), "more than deflate can expand to"));
    snprintf(rp, sizeof rp, "%s/tests/fuzz/regress/h5/type-size-0.h5", getenv("DIFFCL_SOURCE_ROOT"));
    ck_assert_int_eq(diffcl_h5_read(ctx, rp, "label", &b), DIFFCL_ERR_FORMAT);
    ck_assert(strstr(diffcl_last_error(), "corrupt element type"));
    truncate_copy("/tmp/diffcl_test_rt.h5", "/tmp/diffcl_test_trunc.h5", 0.5);
    diffcl_status st = diffcl_h5_read(ctx, "/tmp/diffcl_test_trunc.h5", "image", &b);
    ck_assert_int_eq(st, DIFFCL_ERR_FORMAT);
    ck_assert(strstr(diffcl_last_error(), "diffcl_test_trunc.h5"));
    ck_assert_int_eq(diffcl_h5_read(ctx, fx("data/rgb.png"), "image", &b), DIFFCL_ERR_FORMAT);
    ck_assert_int_eq(diffcl_h5_read(ctx, "/tmp/diffcl_none.h5", "image", &b), DIFFCL_ERR_IO);
    ck_ok(diffcl_dataset_open(ctx, fx("data/bad/mismatch"), NULL, &ds));
    diffcl_tensor *img = NULL, *lab = NULL;
    ck_assert_int_eq(diffcl_dataset_load(ds, 0, &img, &lab, NULL), DIFFCL_ERR_FORMAT);
    ck_assert(strstr(diffcl_last_error(), "mri_norm2.h5") && strstr(diffcl_last_error(), "[6,5,4]"));
    ck_ok(diffcl_dataset_load(ds, 0, &img, NULL, NULL)); /* the label is never read */
    diffcl_tensor_free(img);
    diffcl_dataset_free(ds);
    unlink("/tmp/diffcl_test_rt.h5");
    unlink("/tmp/diffcl_test_trunc.h5");
    diffcl_tensor_free(t);
    diffcl_tensor_free(u);
    diffcl_tensor_dict_free(ref);
    diffcl_context_free(ctx);
}
END_TEST

START_TEST(nifti_layouts_match_nibabel)
{
    if (!diffcl_io_has_nifti()) {
        diffcl_context *ctx = test_context();
        diffcl_tensor *t = NULL;
        diffcl_dataset *ds = NULL;
        ck_assert_int_eq(diffcl_nifti_read(ctx, fx("data/bad/float_label.nii.gz"), DIFFCL_NIFTI_IMAGE,
                                           &t, NULL),
                         DIFFCL_ERR_UNSUPPORTED);
        ck_assert_int_eq(diffcl_dataset_open(ctx, fx("data/msd"), NULL, &ds), DIFFCL_ERR_UNSUPPORTED);
        diffcl_context_free(ctx);
        return;
    }
    diffcl_context *ctx = test_context();
    diffcl_tensor_dict *ref = load_ref(ctx);
    diffcl_dataset *ds = NULL;
    ck_ok(diffcl_dataset_open(ctx, fx("data/msd"), NULL, &ds));
    ck_assert_int_eq(diffcl_dataset_layout(ds), DIFFCL_LAYOUT_MSD);
    ck_assert_int_eq(diffcl_dataset_size(ds), 2); /* "._la_003.nii.gz" ignored */
    for (int64_t i = 0; i < 2; i++) {
        diffcl_tensor *img = NULL, *lab = NULL, *sq = NULL;
        diffcl_image_meta m;
        diffcl_image_meta_init(&m);
        ck_ok(diffcl_dataset_load(ds, i, &img, &lab, &m));
        const char *id = diffcl_dataset_case_id(ds, i);
        char key[64];
        snprintf(key, sizeof key, "msd/%s.image", id);
        ck_ok(diffcl_tensor_squeeze(img, 0, &sq));
        assert_same_values(sq, ref_get(ref, key), key);
        snprintf(key, sizeof key, "msd/%s.label", id);
        assert_same_values(lab, ref_get(ref, key), key);
        snprintf(key, sizeof key, "msd/%s.affine", id);
        diffcl_tensor *aff = NULL;
        ck_ok(diffcl_tensor_from_data(ctx, DIFFCL_F64, 2, (int64_t[]){4, 4}, m.affine, &aff));
        ck_assert_double_le(test_rel_error(aff, ref_get(ref, key)), 1e-7);
        snprintf(key, sizeof key, "msd/%s.spacing", id);
        diffcl_tensor *spc = NULL;
        ck_ok(diffcl_tensor_from_data(ctx, DIFFCL_F64, 1, (int64_t[]){3}, m.spacing, &spc));
        ck_assert_double_le(test_rel_error(spc, ref_get(ref, key)), 1e-7);
        ck_assert(m.has_nifti_header);
        if (i == 0) {
            /* a prediction written with the input's header: same geometry, new data type */
            const char *out = "/tmp/diffcl_test_pred.nii.gz";
            ck_ok(diffcl_nifti_write(lab, out, &m));
            diffcl_tensor *back = NULL;
            diffcl_image_meta m2;
            diffcl_image_meta_init(&m2);
            ck_ok(diffcl_nifti_read(ctx, out, DIFFCL_NIFTI_LABEL, &back, &m2));
            assert_same_values(back, lab, "label written with the image header");
            for (int r = 0; r < 4; r++)
                for (int c = 0; c < 4; c++) ck_assert(m2.affine[r][c] == m.affine[r][c]);
            diffcl_tensor_free(back);
            /* without a header: spacing and affine from the meta */
            diffcl_image_meta m3;
            diffcl_image_meta_init(&m3);
            m3.spacing[0] = 0.5;
            m3.spacing[1] = 2;
            m3.spacing[2] = 3;
            m3.affine[0][0] = 0.5;
            m3.affine[1][1] = 2;
            m3.affine[2][2] = 3;
            m3.affine[0][3] = -4;
            ck_ok(diffcl_nifti_write(sq, "/tmp/diffcl_test_img.nii", &m3));
            /* a missing folder: our error, before niftilib prints its own */
            ck_assert_int_eq(diffcl_nifti_write(sq, "/tmp/diffcl_no_such_dir/img.nii", &m3), DIFFCL_ERR_IO);
            ck_assert(strstr(diffcl_last_error(), "no folder '/tmp/diffcl_no_such_dir'"));
            ck_ok(diffcl_nifti_read(ctx, "/tmp/diffcl_test_img.nii", DIFFCL_NIFTI_IMAGE, &back, &m2));
            assert_same_values(back, sq, "image round trip");
            ck_assert(m2.spacing[1] == 2 && m2.affine[0][3] == -4 && m2.affine[2][2] == 3);
            diffcl_tensor_free(back);
            /* a gzip file is known by its bytes, not its name's case (the size check before
             * allocating must not take NAME.NII.GZ for an uncompressed file) */
            truncate_copy(diffcl_dataset_image_path(ds, i), "/tmp/diffcl_test_UPPER.NII.GZ", 1.0);
            ck_ok(diffcl_nifti_read(ctx, "/tmp/diffcl_test_UPPER.NII.GZ", DIFFCL_NIFTI_IMAGE, &back, NULL));
            diffcl_tensor_free(back);
            remove("/tmp/diffcl_test_UPPER.NII.GZ");
            /* a truncated gzip stream */
            truncate_copy(diffcl_dataset_image_path(ds, i), "/tmp/diffcl_test_trunc.nii.gz", 0.5);
            ck_assert_int_eq(diffcl_nifti_read(ctx, "/tmp/diffcl_test_trunc.nii.gz",
                                               DIFFCL_NIFTI_IMAGE, &back, NULL),
                             DIFFCL_ERR_FORMAT);
            ck_assert(strstr(diffcl_last_error(), "diffcl_test_trunc.nii.gz"));
            truncate_copy(diffcl_dataset_image_path(ds, i), "/tmp/diffcl_test_trunc.nii.gz", 0.01);
            ck_assert_int_eq(diffcl_nifti_read(ctx, "/tmp/diffcl_test_trunc.nii.gz",
                                               DIFFCL_NIFTI_IMAGE, &back, NULL),
                             DIFFCL_ERR_FORMAT);
            unlink(out);
            unlink("/tmp/diffcl_test_img.nii");
            unlink("/tmp/diffcl_test_trunc.nii.gz");
        }
        diffcl_tensor_free(aff);
        diffcl_tensor_free(spc);
        diffcl_tensor_free(img);
        diffcl_tensor_free(sq);
        diffcl_tensor_free(lab);
    }
    diffcl_dataset_free(ds);
    /* 4-D multi-modal with scl_slope/scl_inter: (x, y, z, c) -> [c, x, y, z] */
    ck_ok(diffcl_dataset_open(ctx, fx("data/msd4d"), NULL, &ds));
    diffcl_tensor *img = NULL, *lab = NULL, *perm = NULL;
    ck_ok(diffcl_dataset_load(ds, 0, &img, &lab, NULL));
    ck_ok(diffcl_tensor_permute(ref_get(ref, "msd4d/BRATS_001.image"), (int[]){3, 0, 1, 2}, &perm));
    assert_same_values(img, perm, "4-D image");
    assert_same_values(lab, ref_get(ref, "msd4d/BRATS_001.label"), "4-D label");
    diffcl_tensor_free(img);
    diffcl_tensor_free(lab);
    diffcl_tensor_free(perm);
    diffcl_dataset_free(ds);
    /* nnU-Net: one file per channel */
    ck_ok(diffcl_dataset_open(ctx, fx("data/nnunet"), NULL, &ds));
    ck_assert_int_eq(diffcl_dataset_layout(ds), DIFFCL_LAYOUT_NNUNET);
    ck_assert_int_eq(diffcl_dataset_size(ds), 2);
    ck_assert_str_eq(diffcl_dataset_case_id(ds, 1), "case_02");
    ck_ok(diffcl_dataset_load(ds, 1, &img, &lab, NULL));
    ck_assert_int_eq(diffcl_tensor_dim(img, 0), 2);
    for (int c = 0; c < 2; c++) {
        diffcl_tensor *ch = NULL, *sq = NULL;
        char key[64];
        ck_ok(diffcl_tensor_narrow(img, 0, c, 1, &ch));
        ck_ok(diffcl_tensor_squeeze(ch, 0, &sq));
        snprintf(key, sizeof key, "nnunet/case_02.image%d", c);
        assert_same_values(sq, ref_get(ref, key), key);
        diffcl_tensor_free(ch);
        diffcl_tensor_free(sq);
    }
    assert_same_values(lab, ref_get(ref, "nnunet/case_02.label"), "nnunet label");
    diffcl_tensor_free(img);
    diffcl_tensor_free(lab);
    diffcl_dataset_free(ds);
    /* a float label map */
    ck_assert_int_eq(diffcl_nifti_read(ctx, fx("data/bad/float_label.nii.gz"), DIFFCL_NIFTI_LABEL,
                                       &img, NULL),
                     DIFFCL_ERR_FORMAT);
    ck_assert(strstr(diffcl_last_error(), "float_label.nii.gz") && strstr(diffcl_last_error(), "label"));
    /* corrupt headers (fuzzing): dims whose product overflows, and dims claiming 140 TB */
    ck_assert_int_eq(diffcl_nifti_read(ctx, fx("data/bad/dim_overflow_5d.nii"), DIFFCL_NIFTI_IMAGE, &img, NULL),
                     DIFFCL_ERR_FORMAT);
    ck_assert_int_eq(diffcl_nifti_read(ctx, fx("data/bad/huge_dims.nii"), DIFFCL_NIFTI_IMAGE, &img, NULL),
                     DIFFCL_ERR_FORMAT);
    ck_assert(strstr(diffcl_last_error(), "header claims"));
    ck_assert_int_eq(diffcl_nifti_read(ctx, "/tmp/diffcl_none.nii.gz", DIFFCL_NIFTI_IMAGE, &img, NULL),
                     DIFFCL_ERR_IO);
    diffcl_tensor_dict_free(ref);
    diffcl_context_free(ctx);
}
END_TEST

START_TEST(png_dataset_and_detection)
{
    diffcl_context *ctx = test_context();
    diffcl_dataset *ds = NULL;
    diffcl_dataset_options o = DIFFCL_DATASET_OPTIONS_INIT;
    o.list = "train.list";
    ck_ok(diffcl_dataset_open(ctx, fx("data/png"), &o, &ds));
    ck_assert_int_eq(diffcl_dataset_layout(ds), DIFFCL_LAYOUT_PNG);
    ck_assert_int_eq(diffcl_dataset_size(ds), 2);
    diffcl_tensor *img = NULL, *lab = NULL;
    ck_ok(diffcl_dataset_load(ds, 0, &img, &lab, NULL));
    int64_t s[5];
    ck_assert_int_eq(diffcl_tensor_shape(img, s), 3);
    ck_assert(s[0] == 1 && s[1] == 16 && s[2] == 16);
    diffcl_tensor_free(img);
    diffcl_tensor_free(lab);
    diffcl_split sp;
    ck_ok(diffcl_dataset_split(ds, 1, NULL, &sp));
    diffcl_sampler_options so = DIFFCL_SAMPLER_OPTIONS_INIT;
    so.patch[1] = so.patch[2] = 12;
    so.batch_labeled = so.batch_unlabeled = 1;
    diffcl_sampler *smp = NULL;
    ck_ok(diffcl_sampler_create(ds, &sp, &so, &smp));
    ck_ok(diffcl_sampler_next(smp, 0, &img, &lab, NULL));
    ck_assert_int_eq(diffcl_tensor_shape(img, s), 4);
    ck_assert(s[0] == 2 && s[2] == 12 && s[3] == 12);
    diffcl_tensor_free(img);
    diffcl_tensor_free(lab);
    diffcl_sampler_free(smp);
    diffcl_split_free(&sp);
    diffcl_dataset_free(ds);
    o.list = "missing.list";
    ck_assert_int_eq(diffcl_dataset_open(ctx, fx("data/png"), &o, &ds), DIFFCL_ERR_IO);
    ck_assert(strstr(diffcl_last_error(), "missing.list"));
    ck_assert_int_eq(diffcl_dataset_open(ctx, fx("data/png/images"), NULL, &ds), DIFFCL_ERR_FORMAT);
    ck_assert_int_eq(diffcl_dataset_open(ctx, "/nonexistent/dir", NULL, &ds), DIFFCL_ERR_IO);
    diffcl_context_free(ctx);
}
END_TEST


static void write_text(const char *dir, const char *name, const char *text)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    write_bytes(p, text, strlen(text));
}

static void write_png_case(diffcl_context *ctx, const char *root, const char *sub, const char *id)
{
    uint8_t px[8 * 8] = {0};
    px[27] = 1;
    diffcl_tensor *t = NULL;
    ck_ok(diffcl_tensor_from_data(ctx, DIFFCL_U8, 2, (int64_t[]){8, 8}, px, &t));
    char p[4096];
    snprintf(p, sizeof p, "%s/%s/%s.png", root, sub, id);
    ck_ok(diffcl_png_write(t, p, 8));
    diffcl_tensor_free(t);
}

/* Case lists as users write them: relative to the root (data-set list and labeled list
 * alike), file names for ids; a missing image or label names the case and the files looked for. */
START_TEST(dataset_lists_and_missing_files)
{
    diffcl_context *ctx = test_context();
    char root[] = "/tmp/diffcl_test_lists_XXXXXX";
    ck_assert(mkdtemp(root) != NULL);
    char p[4096];
    const char *subs[2] = {"images", "labels"};
    for (int k = 0; k < 2; k++) {
        snprintf(p, sizeof p, "%s/%s", root, subs[k]);
        ck_assert(mkdir(p, 0777) == 0);
    }
    const char *ids[3] = {"c00", "c01", "c02"};
    for (int i = 0; i < 3; i++) {
        write_png_case(ctx, root, "images", ids[i]);
        if (i) write_png_case(ctx, root, "labels", ids[i]); /* c00 has no label */
    }
    write_text(root, "val.list", "c00.png\nc02\n");
    write_text(root, "lab.list", "c01.png\n");
    write_text(root, "typo.list", "c01\nc0099\n");
    ck_assert(access("lab.list", F_OK) != 0); /* only the root has it */

    diffcl_dataset_options o = DIFFCL_DATASET_OPTIONS_INIT;
    o.list = "val.list";
    diffcl_dataset *ds = NULL;
    ck_ok(diffcl_dataset_open(ctx, root, &o, &ds));
    ck_assert_int_eq(diffcl_dataset_size(ds), 2);
    ck_assert_str_eq(diffcl_dataset_case_id(ds, 0), "c00");
    diffcl_tensor *img = NULL, *lab = NULL;
    ck_assert_int_eq(diffcl_dataset_load(ds, 0, &img, &lab, NULL), DIFFCL_ERR_NOT_FOUND);
    const char *e = diffcl_last_error();
    ck_assert_msg(strstr(e, "no label file for case 'c00'") && strstr(e, "/labels'") &&
                      strstr(e, "looked for c00.png"),
                  "%s", e);
    ck_ok(diffcl_dataset_load(ds, 0, &img, NULL, NULL)); /* unlabeled: the label is not needed */
    diffcl_tensor_free(img);
    diffcl_dataset_free(ds);

    o.list = "typo.list";
    ck_assert_int_eq(diffcl_dataset_open(ctx, root, &o, &ds), DIFFCL_ERR_NOT_FOUND);
    e = diffcl_last_error();
    ck_assert_msg(strstr(e, "no image file for case 'c0099'") && strstr(e, "c0099.png") &&
                      strstr(e, "typo.list"),
                  "%s", e);

    ck_ok(diffcl_dataset_open(ctx, root, NULL, &ds));
    ck_assert_int_eq(diffcl_dataset_size(ds), 3);
    diffcl_split sp;
    ck_ok(diffcl_dataset_split(ds, 0, "lab.list", &sp)); /* relative to the root, as o.list */
    ck_assert(sp.n_labeled == 1 && sp.labeled[0] == 1 && sp.n_unlabeled == 2);
    diffcl_split_free(&sp);
    snprintf(p, sizeof p, "%s/lab.list", root);
    ck_ok(diffcl_dataset_split(ds, 0, p, &sp));
    ck_assert(sp.n_labeled == 1 && sp.labeled[0] == 1);
    diffcl_split_free(&sp);
    ck_assert_int_eq(diffcl_dataset_split(ds, 0, "none.list", &sp), DIFFCL_ERR_IO);
    ck_assert_msg(strstr(diffcl_last_error(), "none.list"), "%s", diffcl_last_error());
    diffcl_dataset_free(ds);

    if (diffcl_io_has_nifti()) {
        /* NIfTI: both extensions are named; nnU-Net's _0000 file names are accepted too */
        snprintf(p, sizeof p, "%s/msd.list", root);
        write_text(root, "msd.list", "la_007.nii.gz\nla_0099\n");
        o.list = p;
        ck_assert_int_eq(diffcl_dataset_open(ctx, fx("data/msd"), &o, &ds), DIFFCL_ERR_NOT_FOUND);
        e = diffcl_last_error();
        ck_assert_msg(strstr(e, "case 'la_0099'") && strstr(e, "/imagesTr'") &&
                          strstr(e, "la_0099.nii.gz, la_0099.nii"),
                      "%s", e);
        write_text(root, "msd.list", "la_007.nii.gz\n");
        ck_ok(diffcl_dataset_open(ctx, fx("data/msd"), &o, &ds));
        ck_assert_str_eq(diffcl_dataset_case_id(ds, 0), "la_007");
        diffcl_dataset_free(ds);
        write_text(root, "msd.list", "case_02_0000.nii.gz\n");
        ck_ok(diffcl_dataset_open(ctx, fx("data/nnunet"), &o, &ds));
        ck_assert_str_eq(diffcl_dataset_case_id(ds, 0), "case_02");
        diffcl_dataset_free(ds);
        /* an MSD case without its label */
        char q[4096];
        snprintf(p, sizeof p, "%s/imagesTr", root);
        ck_assert(mkdir(p, 0777) == 0);
        snprintf(p, sizeof p, "%s/imagesTr/la_003.nii.gz", root);
        snprintf(q, sizeof q, "%s", fx("data/msd/imagesTr/la_003.nii.gz"));
        ck_assert(symlink(q, p) == 0);
        snprintf(p, sizeof p, "%s/labelsTr", root);
        ck_assert(mkdir(p, 0777) == 0);
        o.layout = DIFFCL_LAYOUT_MSD;
        o.list = NULL;
        ck_ok(diffcl_dataset_open(ctx, root, &o, &ds));
        ck_assert_int_eq(diffcl_dataset_load(ds, 0, &img, &lab, NULL), DIFFCL_ERR_NOT_FOUND);
        e = diffcl_last_error();
        ck_assert_msg(strstr(e, "no label file for case 'la_003'") && strstr(e, "/labelsTr'") &&
                          strstr(e, "la_003.nii.gz, la_003.nii"),
                      "%s", e);
        diffcl_dataset_free(ds);
        snprintf(p, sizeof p, "%s/imagesTr/la_003.nii.gz", root);
        unlink(p);
        snprintf(p, sizeof p, "%s/imagesTr", root);
        rmdir(p);
        snprintf(p, sizeof p, "%s/labelsTr", root);
        rmdir(p);
        snprintf(p, sizeof p, "%s/msd.list", root);
        unlink(p);
    }
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < 2; k++) {
            snprintf(p, sizeof p, "%s/%s/%s.png", root, subs[k], ids[i]);
            unlink(p);
        }
    const char *lists[3] = {"val.list", "lab.list", "typo.list"};
    for (int k = 0; k < 3; k++) {
        snprintf(p, sizeof p, "%s/%s", root, lists[k]);
        unlink(p);
    }
    for (int k = 0; k < 2; k++) {
        snprintf(p, sizeof p, "%s/%s", root, subs[k]);
        rmdir(p);
    }
    ck_assert(rmdir(root) == 0);
    diffcl_context_free(ctx);
}
END_TEST

/* ------------------------------------------------------------- preprocessing ---- */

static diffcl_tensor *from_floats(diffcl_context *ctx, int nd, const int64_t *shape, const float *v)
{
    diffcl_tensor *t = NULL;
    ck_ok(diffcl_tensor_from_data(ctx, DIFFCL_F32, nd, shape, v, &t));
    return t;
}

START_TEST(preprocess_intensity)
{
    diffcl_context *ctx = test_context();
    float v[2 * 10];
    for (int i = 0; i < 10; i++) {
        v[i] = (float)(i + 1);            /* channel 0: 1..10 */
        v[10 + i] = i < 4 ? 0.0f : (float)(2 * i); /* channel 1: zeros and 8..18 */
    }
    int64_t s[2] = {2, 10};
    diffcl_tensor *x = from_floats(ctx, 2, s, v), *o = NULL;
    ck_ok(diffcl_clip_percentile(x, 25, 75, &o));
    const float *p = diffcl_tensor_data_const(o);
    ck_assert_float_eq_tol(p[0], 3.25f, 1e-6f); /* numpy.percentile(1..10, 25) */
    ck_assert_float_eq_tol(p[9], 7.75f, 1e-6f);
    ck_assert_float_eq(p[4], 5.0f);
    diffcl_tensor_free(o);
    ck_ok(diffcl_normalize_zscore(x, 0, &o));
    p = diffcl_tensor_data_const(o);
    ck_assert_float_eq_tol(p[0], (float)((1 - 5.5) / sqrt(8.25)), 1e-6f);
    diffcl_tensor_free(o);
    ck_ok(diffcl_normalize_zscore(x, 1, &o));
    p = diffcl_tensor_data_const(o);
    ck_assert(p[10] == 0 && p[13] == 0); /* zeros stay zero */
    double m = 0;
    for (int i = 14; i < 20; i++) m += p[i];
    ck_assert_double_eq_tol(m, 0, 1e-5);
    diffcl_tensor_free(o);
    ck_ok(diffcl_normalize_minmax(x, &o));
    p = diffcl_tensor_data_const(o);
    ck_assert(p[0] == 0 && p[9] == 1 && p[10] == 0 && p[19] == 1);
    diffcl_tensor_free(o);
    ck_ok(diffcl_ct_window(x, 2, 6, &o));
    p = diffcl_tensor_data_const(o);
    ck_assert(p[0] == 0 && p[9] == 1 && fabsf(p[2] - 0.25f) < 1e-7f);
    diffcl_tensor_free(o);
    ck_assert_int_eq(diffcl_ct_window(x, 6, 2, &o), DIFFCL_ERR_INVALID_ARGUMENT);
    diffcl_tensor_free(x);
    diffcl_context_free(ctx);
}
END_TEST

START_TEST(preprocess_resample)
{
    diffcl_context *ctx = test_context();
    /* a linear function is reproduced exactly away from the border */
    int64_t s[4] = {1, 6, 8, 5};
    float v[240];
    for (int z = 0; z < 6; z++)
        for (int y = 0; y < 8; y++)
            for (int x = 0; x < 5; x++) v[(z * 8 + y) * 5 + x] = (float)(2 * z - 0.5 * y + 3 * x);
    diffcl_tensor *t = from_floats(ctx, 4, s, v), *o = NULL, *back = NULL;
    double sp[3] = {1.0, 1.0, 1.0}, tgt[3] = {0.5, 0.5, 0.5};
    int64_t size[3];
    ck_ok(diffcl_resample(t, 3, sp, tgt, DIFFCL_INTERP_LINEAR, &o, size));
    ck_assert(size[0] == 12 && size[1] == 16 && size[2] == 10);
    const float *p = diffcl_tensor_data_const(o);
    for (int z = 1; z < 11; z++)
        for (int y = 1; y < 15; y++)
            for (int x = 1; x < 9; x++) {
                double zz = (z + 0.5) / 2 - 0.5, yy = (y + 0.5) / 2 - 0.5, xx = (x + 0.5) / 2 - 0.5;
                ck_assert_double_eq_tol(p[(z * 16 + y) * 10 + x], 2 * zz - 0.5 * yy + 3 * xx, 1e-4);
            }
    /* and back: the interior of an integer down-sampling is exact too */
    int64_t orig[3] = {6, 8, 5};
    ck_ok(diffcl_resize(o, 3, orig, DIFFCL_INTERP_LINEAR, &back));
    p = diffcl_tensor_data_const(back);
    for (int z = 1; z < 5; z++)
        for (int y = 1; y < 7; y++)
            for (int x = 1; x < 4; x++)
                ck_assert_double_eq_tol(p[(z * 8 + y) * 5 + x], v[(z * 8 + y) * 5 + x], 1e-4);
    diffcl_tensor_free(back);
    diffcl_tensor_free(o);
    /* labels: nearest keeps the class set; linear on integers is refused */
    int64_t ls[2] = {4, 6};
    uint8_t lv[24];
    for (int i = 0; i < 24; i++) lv[i] = (uint8_t)(i % 3);
    diffcl_tensor *lab = NULL;
    ck_ok(diffcl_tensor_from_data(ctx, DIFFCL_U8, 2, ls, lv, &lab));
    int64_t up[2] = {8, 12};
    ck_ok(diffcl_resize(lab, 2, up, DIFFCL_INTERP_NEAREST, &o));
    const uint8_t *q = diffcl_tensor_data_const(o);
    for (int y = 0; y < 8; y++)
        for (int x = 0; x < 12; x++) ck_assert_int_eq(q[y * 12 + x], lv[(y / 2) * 6 + x / 2]);
    diffcl_tensor_free(o);
    ck_assert_int_eq(diffcl_resize(lab, 2, up, DIFFCL_INTERP_LINEAR, &o), DIFFCL_ERR_DTYPE);
    /* identity */
    ck_ok(diffcl_resize(t, 3, orig, DIFFCL_INTERP_LINEAR, &o));
    ck_assert(same_bytes(o, t));
    diffcl_tensor_free(o);
    diffcl_tensor_free(lab);
    diffcl_tensor_free(t);
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
    tc = tcase_create("io");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, png_read_matches_pil);
    tcase_add_test(tc, png_write_round_trip_and_bad_files);
    tcase_add_test(tc, h5_layouts_match_h5py);
    tcase_add_test(tc, nifti_layouts_match_nibabel);
    tcase_add_test(tc, png_dataset_and_detection);
    tcase_add_test(tc, dataset_lists_and_missing_files);
    tcase_add_test(tc, dataset_folder_lists);
    tcase_add_test(tc, dataset_json_classes_and_training_entries);
    suite_add_tcase(s, tc);
    tc = tcase_create("preprocess");
    tcase_add_test(tc, preprocess_intensity);
    tcase_add_test(tc, preprocess_resample);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return test_run_suite(data_suite()); }
