/* Suite `metrics`: Dice, Jaccard, HD95, ASD, ASSD and the EDT against a scipy/medpy
 * reference (tests/reference/gen_metrics.py -> tests/fixtures/metrics_ref.safetensors), and
 * the surface Dice against MONAI's definition on numpy/scipy
 * (tests/reference/gen_surface_dice.py -> tests/fixtures/surface_dice_ref.safetensors). */
#include <dirent.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "test_util.h"

#include "diffcl/image_io.h"
#include "diffcl/infer.h"
#include "diffcl/metrics.h"
#include "diffcl/model.h"
#include "layer/module_internal.h"

/* A minimal safetensors reader for the fixture (F64, U8, I64 only), so this suite does
 * not depend on the checkpoint layer. */
typedef struct fixture {
    cJSON *header;
    unsigned char *data;
} fixture;

static fixture fixture_open(const char *name)
{
    fixture f = {NULL, NULL};
    FILE *fp = fopen(test_fixture_path(name), "rb");
    ck_assert_msg(fp != NULL, "cannot open fixture %s", test_fixture_path(name));
    uint64_t n = 0;
    ck_assert(fread(&n, 8, 1, fp) == 1);
    char *js = malloc(n + 1);
    ck_assert(fread(js, 1, n, fp) == n);
    js[n] = 0;
    f.header = cJSON_Parse(js);
    free(js);
    ck_assert(f.header != NULL);
    long start = ftell(fp);
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp) - start;
    fseek(fp, start, SEEK_SET);
    f.data = malloc((size_t)size + 1);
    ck_assert(fread(f.data, 1, (size_t)size, fp) == (size_t)size);
    fclose(fp);
    return f;
}

static void fixture_close(fixture *f)
{
    cJSON_Delete(f->header);
    free(f->data);
}

static diffcl_tensor *fixture_get(diffcl_context *ctx, const fixture *f, const char *name)
{
    cJSON *e = cJSON_GetObjectItemCaseSensitive(f->header, name);
    ck_assert_msg(e != NULL, "fixture has no %s", name);
    const char *dt = cJSON_GetObjectItem(e, "dtype")->valuestring;
    cJSON *shape = cJSON_GetObjectItem(e, "shape"), *off = cJSON_GetObjectItem(e, "data_offsets");
    int64_t s[5];
    int nd = cJSON_GetArraySize(shape);
    for (int i = 0; i < nd; i++) s[i] = (int64_t)cJSON_GetArrayItem(shape, i)->valuedouble;
    diffcl_dtype d = !strcmp(dt, "F64") ? DIFFCL_F64 : !strcmp(dt, "U8") ? DIFFCL_U8 : DIFFCL_I64;
    diffcl_tensor *t = NULL;
    ck_ok(diffcl_tensor_from_data(ctx, d, nd, s,
                                  f->data + (size_t)cJSON_GetArrayItem(off, 0)->valuedouble, &t));
    return t;
}

static double scalar_at(diffcl_tensor *t, int64_t i)
{
    double v;
    int64_t idx[2] = {i, 0};
    if (diffcl_tensor_ndim(t) == 1) ck_ok(diffcl_tensor_get(t, idx, &v));
    else ck_ok(diffcl_tensor_get(t, idx, &v));
    return v;
}

static void check_close(double ours, double ref, const char *what, int c, int k)
{
    double tol = 1e-9 * (fabs(ref) > 1 ? fabs(ref) : 1);
    ck_assert_msg(fabs(ours - ref) <= tol, "case %d class %d %s: ours %.12g, reference %.12g", c,
                  k, what, ours, ref);
}

START_TEST(metrics_match_medpy_reference)
{
    diffcl_context *ctx = test_context();
    fixture f = fixture_open("metrics_ref.safetensors");
    int n_cases = atoi(cJSON_GetObjectItem(cJSON_GetObjectItem(f.header, "__metadata__"),
                                           "n_cases")->valuestring);
    ck_assert_int_ge(n_cases, 8);
    for (int c = 0; c < n_cases; c++) {
        char key[64];
#define GET(field) (snprintf(key, sizeof key, "case%d." field, c), fixture_get(ctx, &f, key))
        diffcl_tensor *pred = GET("pred"), *ref = GET("ref"), *sp = GET("spacing"),
                      *conn = GET("conn"), *ncls = GET("n_classes"), *m = GET("metrics");
#undef GET
        diffcl_metric_options o = DIFFCL_METRIC_OPTIONS_INIT;
        int nd = diffcl_tensor_ndim(pred);
        for (int a = 0; a < nd; a++) o.spacing[a] = scalar_at(sp, a);
        o.connectivity = (int)scalar_at(conn, 0);
        int K = (int)scalar_at(ncls, 0);
        diffcl_seg_metrics r[4];
        ck_ok(diffcl_metrics_per_class(pred, ref, K, &o, r));
        for (int k = 1; k < K; k++) {
            double row[6];
            for (int j = 0; j < 6; j++) {
                int64_t idx[2] = {k - 1, j};
                ck_ok(diffcl_tensor_get(m, idx, &row[j]));
            }
            check_close(r[k - 1].dice, row[0], "dice", c, k);
            check_close(r[k - 1].jaccard, row[1], "jaccard", c, k);
            check_close(r[k - 1].hd95, row[2], "hd95", c, k);
            check_close(r[k - 1].asd, row[3], "asd", c, k);
            check_close(r[k - 1].assd, row[4], "assd", c, k);
            check_close(r[k - 1].hd, row[5], "hd", c, k);
        }
        if (K == 2) { /* the binary entry point agrees with the per-class one */
            diffcl_seg_metrics b;
            ck_ok(diffcl_metrics_binary(pred, ref, &o, &b));
            ck_assert(b.dice == r[0].dice && b.hd95 == r[0].hd95 && b.asd == r[0].asd);
        }
        diffcl_tensor_free(pred);
        diffcl_tensor_free(ref);
        diffcl_tensor_free(sp);
        diffcl_tensor_free(conn);
        diffcl_tensor_free(ncls);
        diffcl_tensor_free(m);
    }
    fixture_close(&f);
    diffcl_context_free(ctx);
}
END_TEST

START_TEST(edt_matches_scipy)
{
    diffcl_context *ctx = test_context();
    fixture f = fixture_open("metrics_ref.safetensors");
    diffcl_tensor *m3 = fixture_get(ctx, &f, "edt3.mask"), *d3 = fixture_get(ctx, &f, "edt3.dist");
    diffcl_tensor *s3 = fixture_get(ctx, &f, "edt3.spacing"), *ours = NULL;
    double sp[3];
    diffcl_tensor_copy_to(s3, sp, sizeof sp);
    ck_ok(diffcl_distance_transform(m3, sp, &ours));
    ck_assert_double_le(test_rel_error(ours, d3), 1e-12);
    diffcl_tensor_free(ours);
    diffcl_tensor *m2 = fixture_get(ctx, &f, "edt2.mask"), *d2 = fixture_get(ctx, &f, "edt2.dist");
    ck_ok(diffcl_distance_transform(m2, NULL, &ours));
    ck_assert_double_le(test_rel_error(ours, d2), 1e-12);
    diffcl_tensor_free(ours);
    /* no zero element: every distance is +inf */
    int64_t shp[1] = {5};
    diffcl_tensor *ones = NULL;
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_U8, 1, shp, &ones));
    ck_ok(diffcl_tensor_fill(ones, 1));
    ck_ok(diffcl_distance_transform(ones, NULL, &ours));
    double v;
    ck_assert_int_ne(diffcl_tensor_item(ours, &v), DIFFCL_OK); /* not one element */
    int64_t i0 = 2;
    ck_ok(diffcl_tensor_get(ours, &i0, &v));
    ck_assert(isinf(v));
    diffcl_tensor_free(ours);
    diffcl_tensor_free(ones);
    diffcl_tensor_free(m3);
    diffcl_tensor_free(d3);
    diffcl_tensor_free(s3);
    diffcl_tensor_free(m2);
    diffcl_tensor_free(d2);
    fixture_close(&f);
    diffcl_context_free(ctx);
}
END_TEST

static diffcl_tensor *box(diffcl_context *ctx, int64_t d, int64_t h, int64_t w, int z0, int z1,
                          int y0, int y1, int x0, int x1)
{
    int64_t s[3] = {d, h, w};
    diffcl_tensor *t = NULL;
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_U8, 3, s, &t));
    uint8_t *p = diffcl_tensor_data(t);
    for (int z = z0; z < z1; z++)
        for (int y = y0; y < y1; y++)
            for (int x = x0; x < x1; x++) p[(z * h + y) * w + x] = 1;
    return t;
}

START_TEST(empty_mask_convention)
{
    diffcl_context *ctx = test_context();
    diffcl_tensor *e = box(ctx, 8, 9, 10, 0, 0, 0, 0, 0, 0);
    diffcl_tensor *a = box(ctx, 8, 9, 10, 2, 5, 2, 6, 3, 7);
    diffcl_seg_metrics r;
    ck_ok(diffcl_metrics_binary(e, e, NULL, &r));
    ck_assert(r.dice == 1 && r.jaccard == 1 && r.hd95 == 0 && r.asd == 0 && r.assd == 0);
    ck_ok(diffcl_metrics_binary(e, a, NULL, &r));
    ck_assert(r.dice == 0 && r.jaccard == 0 && isnan(r.hd95) && isnan(r.asd) && isnan(r.assd));
    ck_assert(r.n_pred == 0 && r.n_ref == 3 * 4 * 4);
    diffcl_metric_options o;
    diffcl_metric_options_init(&o);
    o.empty_policy = DIFFCL_EMPTY_VALUE;
    o.empty_value = 373;
    ck_ok(diffcl_metrics_binary(a, e, &o, &r));
    ck_assert(r.dice == 0 && r.hd95 == 373 && r.asd == 373);
    o.empty_policy = DIFFCL_EMPTY_DIAGONAL;
    o.spacing[0] = 2;
    ck_ok(diffcl_metrics_binary(a, e, &o, &r));
    ck_assert_double_eq_tol(r.hd95, sqrt(16.0 * 16 + 81 + 100), 1e-12);
    /* identical masks */
    ck_ok(diffcl_metrics_binary(a, a, NULL, &r));
    ck_assert(r.dice == 1 && r.hd95 == 0 && r.asd == 0);
    /* a box shifted by 2 along W: surfaces 2 apart on the moving faces */
    diffcl_tensor *b = box(ctx, 8, 9, 10, 2, 5, 2, 6, 5, 9);
    ck_ok(diffcl_metrics_binary(a, b, NULL, &r));
    ck_assert_double_eq_tol(r.dice, 2.0 * 24 / 96, 1e-15);
    ck_assert_double_eq_tol(r.hd, 2.0, 1e-15);
    /* summaries skip NaN */
    double v[4] = {1, NAN, 3, 5}, m, s;
    int64_t nv;
    ck_ok(diffcl_metrics_summarize(v, 4, 1, &m, &s, &nv));
    ck_assert(nv == 3 && m == 3 && fabs(s - sqrt(8.0 / 3)) < 1e-15);
    diffcl_seg_metrics arr[2] = {r, r};
    arr[1].dice = 0.5;
    ck_ok(diffcl_metrics_summarize(&arr[0].dice, 2, sizeof(diffcl_seg_metrics) / sizeof(double),
                                   &m, &s, &nv));
    ck_assert_double_eq_tol(m, (r.dice + 0.5) / 2, 1e-15);
    diffcl_tensor_free(a);
    diffcl_tensor_free(b);
    diffcl_tensor_free(e);
    diffcl_context_free(ctx);
}
END_TEST

START_TEST(bad_arguments)
{
    diffcl_context *ctx = test_context();
    diffcl_tensor *a = box(ctx, 4, 5, 6, 1, 2, 1, 2, 1, 2), *b = box(ctx, 4, 5, 7, 1, 2, 1, 2, 1, 2);
    diffcl_seg_metrics r;
    ck_assert_int_eq(diffcl_metrics_binary(a, b, NULL, &r), DIFFCL_ERR_SHAPE);
    ck_assert(strstr(diffcl_last_error(), "[4,5,7]"));
    diffcl_metric_options o = DIFFCL_METRIC_OPTIONS_INIT;
    o.connectivity = 4;
    ck_assert_int_eq(diffcl_metrics_binary(a, a, &o, &r), DIFFCL_ERR_INVALID_ARGUMENT);
    { /* connectivity above ndim is full connectivity: 3 on 2-D maps scores as 2 */
        diffcl_tensor *a2 = NULL;
        int64_t hw[2] = {20, 6};
        ck_ok(diffcl_tensor_reshape(a, 2, hw, &a2));
        diffcl_seg_metrics r2, r3;
        o.connectivity = 2;
        ck_ok(diffcl_metrics_binary(a2, a2, &o, &r2));
        o.connectivity = 3;
        ck_ok(diffcl_metrics_binary(a2, a2, &o, &r3));
        ck_assert(r2.dice == r3.dice && r2.hd95 == r3.hd95);
        diffcl_tensor_free(a2);
    }
    o.connectivity = 1;
    o.spacing[1] = -1;
    ck_assert_int_eq(diffcl_metrics_binary(a, a, &o, &r), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(diffcl_metrics_per_class(a, a, 1, NULL, &r), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(diffcl_metrics_binary(NULL, a, NULL, &r), DIFFCL_ERR_INVALID_ARGUMENT);
    diffcl_tensor_free(a);
    diffcl_tensor_free(b);
    diffcl_context_free(ctx);
}
END_TEST

START_TEST(large_volume_is_fast)
{
    /* a 112x112x80 LA-sized pair must take well under a second */
    diffcl_context *ctx = test_context();
    diffcl_tensor *a = box(ctx, 112, 112, 80, 20, 90, 25, 85, 10, 60);
    diffcl_tensor *b = box(ctx, 112, 112, 80, 24, 92, 20, 80, 12, 66);
    diffcl_seg_metrics r;
    ck_ok(diffcl_metrics_binary(a, b, NULL, &r));
    ck_assert(r.dice > 0.7 && r.hd95 > 0);
    diffcl_tensor_free(a);
    diffcl_tensor_free(b);
    diffcl_context_free(ctx);
}
END_TEST

START_TEST(both_empty_policy)
{
    diffcl_context *ctx = test_context();
    diffcl_tensor *e = box(ctx, 6, 7, 8, 0, 0, 0, 0, 0, 0);
    diffcl_tensor *a = box(ctx, 6, 7, 8, 1, 4, 2, 5, 2, 6);
    diffcl_metric_options o;
    diffcl_metric_options_init(&o);
    ck_assert_uint_eq(o.struct_size, sizeof o);
    ck_assert_int_eq(o.both_empty, DIFFCL_BOTH_EMPTY_ONE);
    diffcl_metric_options m = DIFFCL_METRIC_OPTIONS_INIT;
    ck_assert(memcmp(&m, &o, offsetof(diffcl_metric_options, both_empty) + sizeof(int)) == 0);
    diffcl_seg_metrics r;
    /* nnU-Net: a class in neither map scores NaN, every metric */
    o.both_empty = DIFFCL_BOTH_EMPTY_NAN;
    ck_ok(diffcl_metrics_binary(e, e, &o, &r));
    ck_assert(isnan(r.dice) && isnan(r.jaccard) && isnan(r.hd95) && isnan(r.asd) && isnan(r.assd) &&
              isnan(r.hd));
    ck_assert(r.n_pred == 0 && r.n_ref == 0);
    /* only the both-empty case changes: one empty, or both present, as before */
    ck_ok(diffcl_metrics_binary(a, e, &o, &r));
    ck_assert(r.dice == 0 && isnan(r.hd95));
    ck_ok(diffcl_metrics_binary(a, a, &o, &r));
    ck_assert(r.dice == 1 && r.hd95 == 0);
    /* per class: class 2 in neither map */
    diffcl_seg_metrics pc[2];
    ck_ok(diffcl_metrics_per_class(a, a, 3, &o, pc));
    ck_assert(pc[0].dice == 1 && isnan(pc[1].dice) && isnan(pc[1].hd95));
    o.both_empty = DIFFCL_BOTH_EMPTY_ONE;
    ck_ok(diffcl_metrics_per_class(a, a, 3, &o, pc));
    ck_assert(pc[1].dice == 1 && pc[1].jaccard == 1 && pc[1].hd95 == 0 && pc[1].asd == 0);
    /* a 0.1.0 caller's struct ends before both_empty: whatever lies behind it, the default */
    o.both_empty = 12345;
    ck_assert_int_eq(diffcl_metrics_binary(e, e, &o, &r), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert(strstr(diffcl_last_error(), "both_empty"));
    o.struct_size = offsetof(diffcl_metric_options, empty_value) + sizeof(double);
    ck_ok(diffcl_metrics_binary(e, e, &o, &r));
    ck_assert(r.dice == 1 && r.hd95 == 0);
    diffcl_tensor_free(a);
    diffcl_tensor_free(e);
    diffcl_context_free(ctx);
}
END_TEST

START_TEST(summarize_ddof)
{
    double v[5] = {1, NAN, 3, 5, INFINITY}, m, s, m0, s0;
    int64_t nv;
    /* numpy: nanstd([1, 3, 5], ddof=1) = 2; ddof 0: sqrt(8/3) */
    ck_ok(diffcl_metrics_summarize_ex(v, 5, 1, 1, &m, &s, &nv));
    ck_assert(nv == 3 && m == 3 && fabs(s - 2.0) < 1e-15);
    ck_ok(diffcl_metrics_summarize_ex(v, 5, 1, 0, &m, &s, &nv));
    ck_assert(fabs(s - sqrt(8.0 / 3)) < 1e-15);
    ck_ok(diffcl_metrics_summarize(v, 5, 1, &m0, &s0, NULL));
    ck_assert(m0 == m && s0 == s); /* the 0.1.0 function is ddof 0 */
    /* stride: every other value */
    ck_ok(diffcl_metrics_summarize_ex(v, 3, 2, 1, &m, &s, &nv));
    ck_assert(nv == 2 && m == 2 && fabs(s - sqrt(2.0)) < 1e-15); /* 1, 3 (inf skipped) */
    /* one value: mean given, sample std undefined */
    ck_ok(diffcl_metrics_summarize_ex(v, 1, 1, 1, &m, &s, &nv));
    ck_assert(nv == 1 && m == 1 && isnan(s));
    ck_ok(diffcl_metrics_summarize_ex(v + 1, 1, 1, 1, &m, &s, &nv));
    ck_assert(nv == 0 && isnan(m) && isnan(s));
    ck_ok(diffcl_metrics_summarize_ex(NULL, 0, 1, 1, &m, NULL, NULL));
    ck_assert_int_eq(diffcl_metrics_summarize_ex(v, 3, 1, -1, &m, &s, &nv),
                     DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(diffcl_metrics_summarize_ex(v, 3, 0, 1, &m, &s, &nv),
                     DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(diffcl_metrics_summarize_ex(NULL, 3, 1, 1, &m, &s, &nv),
                     DIFFCL_ERR_INVALID_ARGUMENT);
}
END_TEST

START_TEST(surface_dice_matches_monai_reference)
{
    diffcl_context *ctx = test_context();
    fixture f = fixture_open("surface_dice_ref.safetensors");
    int n_cases = atoi(
        cJSON_GetObjectItem(cJSON_GetObjectItem(f.header, "__metadata__"), "n_cases")->valuestring);
    ck_assert_int_ge(n_cases, 11);
    int n_nan = 0, n_zero = 0, dims_seen[4] = {0};
    for (int c = 0; c < n_cases; c++) {
        char key[64];
#define GET(field) (snprintf(key, sizeof key, "case%d." field, c), fixture_get(ctx, &f, key))
        diffcl_tensor *pred = GET("pred"), *ref = GET("ref"), *sp = GET("spacing"),
                      *tol = GET("tolerance"), *ncls = GET("n_classes"), *want = GET("nsd");
#undef GET
        diffcl_surface_dice_options o = DIFFCL_SURFACE_DICE_OPTIONS_INIT;
        int nd = diffcl_tensor_ndim(pred);
        dims_seen[nd] = 1;
        for (int a = 0; a < nd; a++) o.spacing[a] = scalar_at(sp, a);
        o.tolerance = scalar_at(tol, 0);
        int K = (int)scalar_at(ncls, 0);
        double got[8];
        ck_ok(diffcl_surface_dice_per_class(pred, ref, K, &o, got));
        for (int k = 1; k < K; k++) {
            double w = scalar_at(want, k - 1);
            if (isnan(w)) {
                ck_assert_msg(isnan(got[k - 1]), "case %d class %d: %g, MONAI NaN", c, k,
                              got[k - 1]);
                n_nan++;
                continue;
            }
            n_zero += w == 0;
            /* a ratio of counts: the same counts give the same double */
            ck_assert_msg(got[k - 1] == w, "case %d class %d: NSD %.12g, MONAI's %.12g", c, k,
                          got[k - 1], w);
        }
        if (K == 2) { /* the binary entry point agrees */
            double b;
            ck_ok(diffcl_surface_dice(pred, ref, &o, &b));
            ck_assert(b == got[0]);
        }
        diffcl_tensor_free(pred);
        diffcl_tensor_free(ref);
        diffcl_tensor_free(sp);
        diffcl_tensor_free(tol);
        diffcl_tensor_free(ncls);
        diffcl_tensor_free(want);
    }
    ck_assert(dims_seen[2] && dims_seen[3]); /* 2-D and 3-D */
    ck_assert(n_nan >= 2 && n_zero >= 4);    /* both empty; one empty either way */
    /* binary masks against an empty one */
    diffcl_tensor *m = fixture_get(ctx, &f, "empty.mask"), *z = NULL;
    int64_t ms[5];
    int mnd = diffcl_tensor_shape(m, ms);
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_U8, mnd, ms, &z)); /* zeros */
    double v;
    ck_ok(diffcl_surface_dice(m, z, NULL, &v));
    ck_assert(v == 0);
    ck_ok(diffcl_surface_dice(z, m, NULL, &v));
    ck_assert(v == 0);
    ck_ok(diffcl_surface_dice(z, z, NULL, &v));
    ck_assert(isnan(v));
    ck_ok(diffcl_surface_dice(m, m, NULL, &v));
    ck_assert(v == 1);
    diffcl_tensor_free(m);
    diffcl_tensor_free(z);
    fixture_close(&f);
    diffcl_context_free(ctx);
}
END_TEST

START_TEST(surface_dice_tolerance_and_errors)
{
    diffcl_context *ctx = test_context();
    /* two boxes 3 voxels apart along W, spacing 0.5 there: facing faces 1.5 apart */
    diffcl_tensor *a = box(ctx, 8, 9, 12, 2, 6, 2, 7, 2, 6);
    diffcl_tensor *b = box(ctx, 8, 9, 12, 2, 6, 2, 7, 5, 9);
    diffcl_surface_dice_options o;
    diffcl_surface_dice_options_init(&o);
    ck_assert_uint_eq(o.struct_size, sizeof o);
    ck_assert(o.tolerance == 1.0 && o.spacing[0] == 0);
    o.spacing[2] = 0.5;
    double lo, at, hi;
    o.tolerance = 1.4;
    ck_ok(diffcl_surface_dice(a, b, &o, &lo));
    o.tolerance = 1.5; /* equal to the distance: counted (<=) */
    ck_ok(diffcl_surface_dice(a, b, &o, &at));
    o.tolerance = 1e9;
    ck_ok(diffcl_surface_dice(a, b, &o, &hi));
    ck_assert(lo > 0 && lo < at && at <= hi && hi == 1);
    /* larger tolerances never lower it */
    double prev = 0;
    for (double t = 0; t < 4; t += 0.25) {
        double v;
        o.tolerance = t;
        ck_ok(diffcl_surface_dice(a, b, &o, &v));
        ck_assert(v >= prev);
        prev = v;
    }
    o.tolerance = -0.5;
    ck_assert_int_eq(diffcl_surface_dice(a, b, &o, &lo), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert(strstr(diffcl_last_error(), "tolerance"));
    o.tolerance = NAN;
    ck_assert_int_eq(diffcl_surface_dice(a, b, &o, &lo), DIFFCL_ERR_INVALID_ARGUMENT);
    o.tolerance = 1;
    o.spacing[1] = -1;
    ck_assert_int_eq(diffcl_surface_dice(a, b, &o, &lo), DIFFCL_ERR_INVALID_ARGUMENT);
    o.spacing[1] = 0;
    o.struct_size = sizeof(size_t); /* below the first layout: a caller bug */
    ck_assert_int_eq(diffcl_surface_dice(a, b, &o, &lo), DIFFCL_ERR_INVALID_ARGUMENT);
    o.struct_size = sizeof o;
    ck_assert_int_eq(diffcl_surface_dice(a, b, &o, NULL), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(diffcl_surface_dice(NULL, b, &o, &lo), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(diffcl_surface_dice_per_class(a, b, 1, &o, &lo), DIFFCL_ERR_INVALID_ARGUMENT);
    diffcl_tensor *c = box(ctx, 8, 9, 11, 2, 6, 2, 7, 5, 9);
    ck_assert_int_eq(diffcl_surface_dice(a, c, &o, &lo), DIFFCL_ERR_SHAPE);
    ck_assert_int_eq(diffcl_surface_dice_per_class(a, c, 2, &o, &lo), DIFFCL_ERR_SHAPE);
    diffcl_tensor_free(c);
    diffcl_tensor_free(a);
    diffcl_tensor_free(b);
    diffcl_context_free(ctx);
}
END_TEST

/* ------------------------------------------------------------ sliding window ---- */

/* A test model: 2 classes, logit_1 - logit_0 = a * x[ch 0] + b * (position along the last
 * window axis) (b makes the result depend on where windows fall). */
typedef struct toy {
    double a, b;
    int calls;
} toy;

static diffcl_status toy_forward(diffcl_module *m, const diffcl_tensor *x, diffcl_tensor **out)
{
    toy *t = m->impl;
    t->calls++;
    int nd = diffcl_tensor_ndim(x);
    int64_t s[5];
    diffcl_tensor_shape(x, s);
    int64_t os[5];
    memcpy(os, s, sizeof os);
    os[1] = 2;
    DC_TRY(diffcl_tensor_new(diffcl_tensor_context(x), DIFFCL_F32, nd, os, out));
    int64_t sp = 1;
    for (int i = 2; i < nd; i++) sp *= s[i];
    const float *xp = diffcl_tensor_data_const(x);
    float *op = diffcl_tensor_data(*out);
    for (int64_t b = 0; b < s[0]; b++)
        for (int64_t i = 0; i < sp; i++) {
            double pos = (double)(i % s[nd - 1]);
            op[(b * 2 + 0) * sp + i] = 0;
            op[(b * 2 + 1) * sp + i] = (float)(t->a * xp[(b * s[1]) * sp + i] + t->b * pos);
        }
    return DIFFCL_OK;
}

static const dc_module_vtable TOY_VT = {"toy", toy_forward, free};

static diffcl_module *toy_new(diffcl_context *ctx, double a, double b)
{
    toy *t = calloc(1, sizeof *t);
    t->a = a;
    t->b = b;
    diffcl_module *m = dc_module_new(ctx, &TOY_VT, t);
    ck_assert(m != NULL);
    return m;
}

/* Direct transcription of UA-MT's test_single_case for the toy model (3-D, 1 channel). */
static void reference_single_case(const float *img, const int64_t d[3], const int64_t P[3],
                                  const int64_t S[3], double a, double b, double *prob1)
{
    int64_t pad[3], lo[3], sz[3], n[3];
    for (int k = 0; k < 3; k++) {
        pad[k] = d[k] < P[k] ? P[k] - d[k] : 0;
        lo[k] = pad[k] / 2;
        sz[k] = d[k] + pad[k];
        n[k] = (int64_t)ceil((double)(sz[k] - P[k]) / (double)S[k]) + 1;
    }
    int64_t V = sz[0] * sz[1] * sz[2];
    double *score = calloc((size_t)V, sizeof(double)), *cnt = calloc((size_t)V, sizeof(double));
    for (int64_t x = 0; x < n[0]; x++) {
        int64_t xs = S[0] * x < sz[0] - P[0] ? S[0] * x : sz[0] - P[0];
        for (int64_t y = 0; y < n[1]; y++) {
            int64_t ys = S[1] * y < sz[1] - P[1] ? S[1] * y : sz[1] - P[1];
            for (int64_t z = 0; z < n[2]; z++) {
                int64_t zs = S[2] * z < sz[2] - P[2] ? S[2] * z : sz[2] - P[2];
                for (int64_t i = 0; i < P[0]; i++)
                    for (int64_t j = 0; j < P[1]; j++)
                        for (int64_t k = 0; k < P[2]; k++) {
                            int64_t u = xs + i - lo[0], v = ys + j - lo[1], w = zs + k - lo[2];
                            double val = (u >= 0 && v >= 0 && w >= 0 && u < d[0] && v < d[1] && w < d[2])
                                             ? img[(u * d[1] + v) * d[2] + w]
                                             : 0.0;
                            double l1 = a * val + b * (double)k;
                            int64_t g = ((xs + i) * sz[1] + ys + j) * sz[2] + zs + k;
                            score[g] += 1.0 / (1.0 + exp(-l1));
                            cnt[g] += 1;
                        }
            }
        }
    }
    for (int64_t u = 0; u < d[0]; u++)
        for (int64_t v = 0; v < d[1]; v++)
            for (int64_t w = 0; w < d[2]; w++) {
                int64_t g = ((u + lo[0]) * sz[1] + v + lo[1]) * sz[2] + w + lo[2];
                prob1[(u * d[1] + v) * d[2] + w] = score[g] / cnt[g];
            }
    free(score);
    free(cnt);
}

START_TEST(sliding_window_matches_test_single_case)
{
    diffcl_context *ctx = test_context();
    diffcl_module *m = toy_new(ctx, 1.5, 0.3);
    /* one volume larger than the patch on two axes, smaller on the third (padding) */
    int64_t shape[4] = {1, 23, 17, 6};
    diffcl_tensor *img = test_randn(ctx, DIFFCL_F32, 4, shape, 5);
    diffcl_sliding_window_options o = DIFFCL_SLIDING_WINDOW_OPTIONS_INIT;
    o.patch[0] = 10;
    o.patch[1] = 8;
    o.patch[2] = 9;
    o.stride[0] = 4;
    o.stride[1] = 3;
    o.stride[2] = 2;
    o.batch = 3;
    diffcl_tensor *probs = NULL;
    ck_ok(diffcl_sliding_window(m, img, &o, &probs));
    int64_t ps[5];
    ck_assert_int_eq(diffcl_tensor_shape(probs, ps), 4);
    ck_assert(ps[0] == 2 && ps[1] == 23 && ps[2] == 17 && ps[3] == 6);
    int64_t d[3] = {23, 17, 6}, vol = 23 * 17 * 6;
    double *ref = malloc(sizeof(double) * (size_t)vol);
    reference_single_case(diffcl_tensor_data_const(img), d, o.patch, o.stride, 1.5, 0.3, ref);
    const float *p = diffcl_tensor_data_const(probs);
    for (int64_t i = 0; i < vol; i++) {
        ck_assert_msg(fabs(p[vol + i] - ref[i]) < 2e-6, "voxel %lld: %g vs %g", (long long)i,
                      p[vol + i], ref[i]);
        ck_assert(fabs(p[i] + p[vol + i] - 1) < 1e-5);
    }
    /* windows: ceil((23-10)/4)+1 = 5, ceil((17-8)/3)+1 = 4, 1 -> 20, in batches of 3 */
    ck_assert_int_eq(((toy *)m->impl)->calls, 7);
    free(ref);
    diffcl_tensor_free(probs);
    /* a pointwise model gives the pointwise softmax whatever the windows, weights, flips */
    diffcl_module *pw = toy_new(ctx, 2.0, 0.0);
    o.gaussian = 1;
    o.tta_flips = 1;
    diffcl_tensor *label = NULL;
    ck_ok(diffcl_segment(pw, img, &o, &label, &probs));
    p = diffcl_tensor_data_const(probs);
    const float *x = diffcl_tensor_data_const(img);
    const uint8_t *l = diffcl_tensor_data_const(label);
    for (int64_t i = 0; i < vol; i++) {
        double want = 1.0 / (1.0 + exp(-2.0 * x[i]));
        ck_assert_msg(fabs(p[vol + i] - want) < 2e-6, "pointwise voxel %lld", (long long)i);
        ck_assert_int_eq(l[i], p[vol + i] > p[i]);
    }
    diffcl_tensor_free(probs);
    diffcl_tensor_free(label);
    diffcl_module_free(pw);
    diffcl_module_free(m);
    diffcl_tensor_free(img);
    diffcl_context_free(ctx);
}
END_TEST

static int cancel_after_two(const char *what, int64_t done, int64_t total, const char *msg, void *user)
{
    (void)msg;
    int *seen = user;
    ck_assert_str_eq(what, "infer");
    ck_assert(done <= total);
    return ++*seen >= 2;
}

START_TEST(sliding_window_2d_cancel_and_errors)
{
    diffcl_context *ctx = test_context();
    diffcl_module *m = toy_new(ctx, 1.0, 0.0);
    int64_t shape[3] = {1, 30, 20};
    diffcl_tensor *img = test_randn(ctx, DIFFCL_F32, 3, shape, 9), *probs = NULL;
    diffcl_sliding_window_options o;
    diffcl_sliding_window_options_init(&o);
    o.patch[1] = 16;
    o.patch[2] = 16;
    o.stride[1] = 4;
    o.stride[2] = 4;
    ck_ok(diffcl_sliding_window(m, img, &o, &probs));
    ck_assert_int_eq(diffcl_tensor_ndim(probs), 3);
    diffcl_tensor_free(probs);
    int seen = 0;
    ck_ok(diffcl_context_set_progress(ctx, cancel_after_two, &seen));
    ck_assert_int_eq(diffcl_sliding_window(m, img, &o, &probs), DIFFCL_ERR_CANCELLED);
    ck_assert_ptr_null(probs);
    ck_assert_int_eq(seen, 2);
    ck_ok(diffcl_context_set_progress(ctx, NULL, NULL));
    o.stride[1] = 0;
    ck_assert_int_eq(diffcl_sliding_window(m, img, &o, &probs), DIFFCL_ERR_INVALID_ARGUMENT);
    int64_t bad[2] = {30, 20};
    diffcl_tensor *b = test_randn(ctx, DIFFCL_F32, 2, bad, 1);
    ck_assert_int_eq(diffcl_sliding_window(m, b, &o, &probs), DIFFCL_ERR_SHAPE);
    diffcl_tensor_free(b);
    diffcl_tensor_free(img);
    diffcl_module_free(m);
    diffcl_context_free(ctx);
}
END_TEST

START_TEST(largest_component_and_overlay)
{
    diffcl_context *ctx = test_context();
    /* class 1: a 3x3x3 cube and a separate 2-voxel blob; class 2: two single voxels touching
     * diagonally (one component with full connectivity, two with faces only) */
    diffcl_tensor *l = box(ctx, 10, 10, 10, 1, 4, 1, 4, 1, 4);
    uint8_t *p = diffcl_tensor_data(l);
    p[(7 * 10 + 7) * 10 + 7] = p[(7 * 10 + 7) * 10 + 8] = 1;
    p[(5 * 10 + 8) * 10 + 1] = 2;
    p[(6 * 10 + 9) * 10 + 2] = 2;
    diffcl_tensor *o = NULL;
    ck_ok(diffcl_largest_component(l, 0, &o));
    const uint8_t *q = diffcl_tensor_data_const(o);
    int64_t n1 = 0, n2 = 0;
    for (int i = 0; i < 1000; i++) {
        n1 += q[i] == 1;
        n2 += q[i] == 2;
    }
    ck_assert(n1 == 27 && n2 == 2);
    diffcl_tensor_free(o);
    ck_ok(diffcl_largest_component(l, 1, &o));
    q = diffcl_tensor_data_const(o);
    n2 = 0;
    for (int i = 0; i < 1000; i++) n2 += q[i] == 2;
    ck_assert_int_eq(n2, 1);
    ck_assert_int_eq(q[(5 * 10 + 8) * 10 + 1], 2); /* the first met wins ties */
    diffcl_tensor_free(o);
    /* overlay PNG of the slice with most foreground */
    int64_t is[4] = {1, 10, 10, 10};
    diffcl_tensor *img = test_randn(ctx, DIFFCL_F32, 4, is, 3);
    const char *path = "/tmp/diffcl_test_overlay.png";
    ck_ok(diffcl_overlay_png(img, l, l, 0, -1, path));
    diffcl_tensor *rgb = NULL;
    ck_ok(diffcl_png_read_image(ctx, path, &rgb, NULL));
    ck_assert(diffcl_tensor_dim(rgb, 0) == 260 && diffcl_tensor_dim(rgb, 1) == 260); /* 26x */
    diffcl_tensor_free(rgb);
    unlink(path);
    ck_assert_int_eq(diffcl_overlay_png(img, l, NULL, 3, 0, path), DIFFCL_ERR_INVALID_ARGUMENT);
    diffcl_tensor_free(img);
    diffcl_tensor_free(l);
    diffcl_context_free(ctx);
}
END_TEST


/* ------------------------------------------------------------ diffcl eval ---- */

static int run_tool(const char *args, char *out, size_t n)
{
    const char *b = getenv("DIFFCL_BUILD_ROOT");
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s/tools/diffcl %s 2>&1", b ? b : "build", args);
    FILE *p = popen(cmd, "r");
    ck_assert(p != NULL);
    size_t k = fread(out, 1, n - 1, p);
    out[k] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

START_TEST(eval_cli_matches_medpy)
{
    diffcl_context *ctx = test_context();
    diffcl_tensor_dict *ref = NULL;
    ck_ok(diffcl_safetensors_load(ctx, test_fixture_path("data_ref.safetensors"), &ref));
    static char out[65536];
    char dir[4096], args[12288];
    snprintf(dir, sizeof dir, "%s", test_fixture_path("data/eval"));
    for (int physical = 0; physical < 2; physical++) {
        const char *csv = "/tmp/diffcl_test_eval.csv";
        snprintf(args, sizeof args, "eval --pred %s/pred --label %s/label --csv %s%s", dir, dir, csv,
                 physical ? " --physical" : "");
        int rc = run_tool(args, out, sizeof out);
        ck_assert_msg(rc == 0, "diffcl eval failed (%d): %s", rc, out);
        ck_assert(strstr(out, "mean +- std"));
        diffcl_tensor *m = diffcl_tensor_dict_get(ref, physical ? "eval.metrics_physical"
                                                                : "eval.metrics_voxel");
        ck_assert(m != NULL);
        FILE *f = fopen(csv, "r");
        ck_assert(f != NULL);
        char line[1024];
        ck_assert(fgets(line, sizeof line, f)); /* header */
        int rows = 0;
        while (fgets(line, sizeof line, f)) {
            char id[64];
            int cls;
            double v[5];
            if (!strncmp(line, "mean", 4) || !strncmp(line, "std", 3)) continue;
            ck_assert_int_eq(sscanf(line, "%63[^,],%d,%lf,%lf,%lf,%lf,%lf", id, &cls, &v[0], &v[1],
                                    &v[2], &v[3], &v[4]),
                             7);
            int c = !strcmp(id, "e02");
            for (int j = 0; j < 5; j++) {
                double r;
                int64_t idx[3] = {c, cls - 1, j};
                ck_ok(diffcl_tensor_get(m, idx, &r));
                if (isnan(r)) ck_assert_msg(isnan(v[j]), "%s class %d field %d: expected NaN", id, cls, j);
                else ck_assert_msg(fabs(v[j] - r) <= 1e-8 * (1 + fabs(r)),
                                   "%s class %d field %d: %.12g vs medpy %.12g", id, cls, j, v[j], r);
            }
            rows++;
        }
        fclose(f);
        unlink(csv);
        ck_assert_int_eq(rows, 4);
    }
    /* bad arguments: one clear line, non-zero exit */
    ck_assert_int_eq(run_tool("eval --pred", out, sizeof out), 2);
    ck_assert(strstr(out, "needs a value"));
    ck_assert_int_eq(run_tool("eval --bogus 1", out, sizeof out), 2);
    snprintf(args, sizeof args, "eval --pred %s/pred --label /nonexistent", dir);
    ck_assert_int_eq(run_tool(args, out, sizeof out), 2); /* a missing folder, not a missing case */
    ck_assert(strstr(out, "'/nonexistent' does not exist"));
    snprintf(args, sizeof args, "eval --pred %s/pred --label %s", dir, dir); /* a folder without the cases */
    ck_assert_int_eq(run_tool(args, out, sizeof out), 1);
    ck_assert(strstr(out, "no reference"));
    ck_assert_int_eq(run_tool("eval --help", out, sizeof out), 0);
    ck_assert(strstr(out, "usage: diffcl eval"));
    diffcl_tensor_dict_free(ref);
    diffcl_context_free(ctx);
}
END_TEST

/* ---- `diffcl eval`: class means, --both-empty, --nsd-tol, sample std, --json ---- */

/* One eval CSV: the per-class rows and the summary rows, by name. */
#define EV_CASES 2
#define EV_CLS 3 /* foreground classes at most (--classes 4) */
#define EV_F 7   /* dice jaccard hd95 asd_pred_to_ref assd hd nsd */
typedef struct eval_csv {
    char header[512];
    double v[EV_CASES][EV_CLS][EV_F];
    double mean[EV_CLS + 1][EV_F], std[EV_CLS + 1][EV_F]; /* [EV_CLS]: the class-mean rows */
    int rows, stat_rows;
} eval_csv;

/* Split a CSV line in place at commas (empty fields kept); returns the field count. */
static int csv_split(char *line, char **f, int max)
{
    int n = 0;
    line[strcspn(line, "\r\n")] = 0;
    for (char *p = line; n < max;) {
        f[n++] = p;
        char *c = strchr(p, ',');
        if (!c) break;
        *c = 0;
        p = c + 1;
    }
    return n;
}

static void eval_csv_read(const char *path, eval_csv *r)
{
    memset(r, 0, sizeof *r);
    for (int a = 0; a < EV_CASES; a++)
        for (int k = 0; k < EV_CLS; k++)
            for (int f = 0; f < EV_F; f++) r->v[a][k][f] = -1e300; /* not seen */
    FILE *fp = fopen(path, "r");
    ck_assert_msg(fp != NULL, "no CSV %s", path);
    char line[2048], *f[16];
    ck_assert(fgets(r->header, sizeof r->header, fp));
    while (fgets(line, sizeof line, fp)) {
        int n = csv_split(line, f, 16);
        ck_assert_msg(n == 11, "CSV row with %d fields", n);
        double vals[EV_F];
        for (int j = 0; j < 6; j++) vals[j] = *f[2 + j] ? strtod(f[2 + j], NULL) : -1e300;
        vals[6] = strtod(f[10], NULL); /* nsd, after n_pred and n_ref */
        int stat = !strcmp(f[0], "mean") ? 1 : !strcmp(f[0], "std") ? 2 : 0;
        int k = !strcmp(f[1], "mean") ? EV_CLS + 1 : atoi(f[1]);
        ck_assert(k >= 1 && k <= EV_CLS + 1);
        if (stat) {
            memcpy(stat == 1 ? r->mean[k - 1] : r->std[k - 1], vals, sizeof vals);
            r->stat_rows++;
            continue;
        }
        ck_assert_msg(k <= EV_CLS, "a per-case class-mean row in the CSV");
        int c = !strcmp(f[0], "e02");
        ck_assert(c || !strcmp(f[0], "e01"));
        ck_assert(*f[8] && *f[9]); /* n_pred, n_ref */
        memcpy(r->v[c][k - 1], vals, sizeof vals);
        r->rows++;
    }
    fclose(fp);
}

/* numpy's nanmean and nanstd(ddof=1) of n values */
static void nan_stats(const double *v, int n, double *mean, double *sd)
{
    double s = 0, ss = 0;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (!isnan(v[i])) s += v[i], k++;
    *mean = k ? s / k : NAN;
    for (int i = 0; i < n; i++)
        if (!isnan(v[i])) ss += (v[i] - *mean) * (v[i] - *mean);
    *sd = k > 1 ? sqrt(ss / (k - 1)) : NAN;
}

static void expect_same(double got, double want, const char *what)
{
    if (isnan(want))
        ck_assert_msg(isnan(got), "%s: %g, expected NaN", what, got);
    else
        ck_assert_msg(fabs(got - want) <= 1e-9 * (1 + fabs(want)), "%s: %.12g, expected %.12g",
                      what, got, want);
}

/* A JSON number, or NaN for null. */
static double jnum(const cJSON *o, const char *a, const char *b, const char *c)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, a);
    if (b) x = cJSON_GetObjectItemCaseSensitive(x, b);
    if (c) x = cJSON_GetObjectItemCaseSensitive(x, c);
    ck_assert_msg(x != NULL, "JSON has no %s.%s.%s", a, b ? b : "", c ? c : "");
    if (cJSON_IsNull(x)) return NAN;
    ck_assert(cJSON_IsNumber(x));
    return x->valuedouble;
}

static cJSON *json_read(const char *path)
{
    FILE *fp = fopen(path, "r");
    ck_assert_msg(fp != NULL, "no JSON %s", path);
    static char buf[1 << 17];
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    buf[n] = 0;
    fclose(fp);
    ck_assert(n > 0 && buf[n - 1] == '\n');
    cJSON *j = cJSON_Parse(buf);
    ck_assert_msg(j != NULL, "%s is not valid JSON", path);
    return j;
}

/* The files in @p dir other than . and .. */
static int dir_count(const char *dir)
{
    DIR *d = opendir(dir);
    ck_assert(d != NULL);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

START_TEST(eval_cli_class_mean_nsd_json)
{
    diffcl_context *ctx = test_context();
    fixture f = fixture_open("surface_dice_ref.safetensors");
    diffcl_tensor *nsd_ref = fixture_get(ctx, &f, "eval.nsd"); /* [case][class], tau 2 mm */
    static char out[65536];
    char dir[4096], args[16384], tmpl[] = "/tmp/diffcl_test_eval_XXXXXX";
    snprintf(dir, sizeof dir, "%s", test_fixture_path("data/eval"));
    const char *tmp = mkdtemp(tmpl);
    ck_assert(tmp != NULL);
    char csv[256], js[256];
    snprintf(csv, sizeof csv, "%s/m.csv", tmp);
    snprintf(js, sizeof js, "%s/m.json", tmp);
    snprintf(args, sizeof args,
             "eval --pred %s/pred --label %s/label --csv %s --json %s --nsd-tol 2", dir, dir, csv,
             js);
    for (int rep = 0; rep < 2; rep++) { /* the second run replaces the JSON */
        int rc = run_tool(args, out, sizeof out);
        ck_assert_msg(rc == 0, "diffcl eval failed (%d): %s", rc, out);
        ck_assert_int_eq(dir_count(tmp), 2); /* m.csv and m.json, no temporary file left */
    }
    /* item 4: the one-directional ASD says so; item 1: a class-mean row per case */
    ck_assert(strstr(out, "asd_pred_to_ref") && !strstr(out, " asd "));
    ck_assert(strstr(out, "e01                       mean"));
    ck_assert(strstr(out, "sample std") && strstr(out, "NSD at 2 mm"));
    ck_assert(strstr(out, "foreground mean (nnU-Net"));
    eval_csv r;
    eval_csv_read(csv, &r);
    ck_assert_str_eq(r.header, "case,class,dice,jaccard,hd95,asd_pred_to_ref,assd,hd,n_pred,n_ref,"
                               "nsd\n");
    ck_assert_int_eq(r.rows, 4);
    ck_assert_int_eq(r.stat_rows, 6); /* mean, std of classes 1, 2 and of the case means */
    /* item 3: the CLI's NSD (tau in mm of the NIfTI spacing) is MONAI's */
    for (int c = 0; c < 2; c++)
        for (int k = 0; k < 2; k++) {
            int64_t idx[2] = {c, k};
            double w;
            ck_ok(diffcl_tensor_get(nsd_ref, idx, &w));
            expect_same(r.v[c][k][6], w, "nsd");
        }
    /* item 5: std over cases is the sample std; item 1: case means are nanmeans over classes */
    double cm[2][EV_F];
    for (int q = 0; q < EV_F; q++) {
        for (int k = 0; k < 2; k++) {
            double col[2] = {r.v[0][k][q], r.v[1][k][q]}, m, sd;
            nan_stats(col, 2, &m, &sd);
            expect_same(r.mean[k][q], m, "class mean over cases");
            expect_same(r.std[k][q], sd, "class sample std over cases");
        }
        for (int c = 0; c < 2; c++) {
            double sd, row[2] = {r.v[c][0][q], r.v[c][1][q]};
            nan_stats(row, 2, &cm[c][q], &sd);
        }
        double col[2] = {cm[0][q], cm[1][q]}, m, sd;
        nan_stats(col, 2, &m, &sd);
        expect_same(r.mean[EV_CLS][q], m, "mean of the case means");
        expect_same(r.std[EV_CLS][q], sd, "sample std of the case means");
    }
    /* the std is not the population one: two cases differ by |a - b|, std = |a - b| / sqrt 2 */
    expect_same(r.std[0][0], fabs(r.v[0][0][0] - r.v[1][0][0]) / sqrt(2.0), "dice std");
    /* item 6: the JSON holds the same numbers */
    cJSON *j = json_read(js);
    cJSON *cases = cJSON_GetObjectItemCaseSensitive(j, "cases");
    ck_assert_int_eq(cJSON_GetArraySize(cases), 2);
    static const char *const names[EV_F] = {"dice", "jaccard", "hd95", "asd_pred_to_ref",
                                            "assd", "hd",      "nsd"};
    for (int c = 0; c < 2; c++) {
        cJSON *jc = cJSON_GetArrayItem(cases, c);
        ck_assert_str_eq(cJSON_GetObjectItem(jc, "case")->valuestring, c ? "e02" : "e01");
        for (int q = 0; q < EV_F; q++) {
            for (int k = 0; k < 2; k++) {
                char key[4] = {(char)('1' + k), 0};
                expect_same(jnum(jc, "classes", key, names[q]), r.v[c][k][q], "JSON value");
            }
            expect_same(jnum(jc, "mean", names[q], NULL), cm[c][q], "JSON case mean");
        }
        ck_assert(jnum(jc, "classes", "1", "n_ref") > 0);
    }
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(
        cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetArrayItem(cases, 1), "classes"), "2"),
        "hd95"))); /* NaN (one empty) is null */
    cJSON *sum = cJSON_GetObjectItemCaseSensitive(j, "summary");
    for (int q = 0; q < EV_F; q++) {
        expect_same(jnum(sum, "mean", names[q], "mean"), r.mean[EV_CLS][q], "JSON mean");
        expect_same(jnum(sum, "mean", names[q], "std"), r.std[EV_CLS][q], "JSON std");
        double fg = (jnum(cJSON_GetObjectItem(sum, "classes"), "1", names[q], "mean") +
                     jnum(cJSON_GetObjectItem(sum, "classes"), "2", names[q], "mean")) /
                    2;
        expect_same(jnum(sum, "foreground_mean", names[q], NULL), fg, "nnU-Net foreground mean");
    }
    expect_same(jnum(cJSON_GetObjectItem(sum, "classes"), "2", "hd95", "n"), 1, "n of hd95");
    ck_assert_str_eq(
        cJSON_GetObjectItem(cJSON_GetObjectItem(j, "options"), "both_empty")->valuestring, "one");
    expect_same(jnum(j, "options", "nsd_tolerance_mm", NULL), 2, "tolerance");
    cJSON_Delete(j);

    /* item 2: class 3 is in neither map of either case */
    for (int nan_policy = 0; nan_policy < 2; nan_policy++) {
        snprintf(
            args, sizeof args,
            "eval --pred %s/pred --label %s/label --classes 4 --nsd-tol 2 --csv %s --json %s%s",
            dir, dir, csv, js, nan_policy ? " --both-empty nan" : "");
        int rc = run_tool(args, out, sizeof out);
        ck_assert_msg(rc == 0, "diffcl eval failed (%d): %s", rc, out);
        eval_csv r4;
        eval_csv_read(csv, &r4);
        j = json_read(js);
        for (int c = 0; c < 2; c++) {
            for (int q = 0; q < EV_F; q++) {
                double want = nan_policy ? NAN : (q < 2 || q == 6 ? 1.0 : 0.0);
                expect_same(r4.v[c][2][q], want, "class 3");
                for (int k = 0; k < 2; k++) expect_same(r4.v[c][k][q], r.v[c][k][q], "classes 1-2");
            }
            /* the case mean: over 3 classes with Dice 1 for class 3, or over the other 2 */
            double row[3] = {r4.v[c][0][0], r4.v[c][1][0], r4.v[c][2][0]}, m, sd;
            nan_stats(row, 3, &m, &sd);
            expect_same(
                jnum(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "cases"), c), "mean", "dice", NULL),
                nan_policy ? cm[c][0] : m, "case mean with class 3");
        }
        cJSON *s4 = cJSON_GetObjectItem(j, "summary");
        expect_same(jnum(cJSON_GetObjectItem(s4, "classes"), "3", "dice", "n"), nan_policy ? 0 : 2,
                    "n of class 3");
        /* nnU-Net: np.mean of the class means, NaN when a class has none */
        double fg = jnum(s4, "foreground_mean", "dice", NULL);
        ck_assert(nan_policy ? isnan(fg) : fabs(fg - (r.mean[0][0] + r.mean[1][0] + 1) / 3) < 1e-9);
        ck_assert_str_eq(
            cJSON_GetObjectItem(cJSON_GetObjectItem(j, "options"), "both_empty")->valuestring,
            nan_policy ? "nan" : "one");
        cJSON_Delete(j);
    }

    /* a JSON that cannot be written: exit 1, nothing left behind */
    snprintf(args, sizeof args, "eval --pred %s/pred --label %s/label --json %s/no/such/m.json",
             dir, dir, tmp);
    ck_assert_int_eq(run_tool(args, out, sizeof out), 1);
    ck_assert(strstr(out, "cannot write"));
    ck_assert_int_eq(dir_count(tmp), 2);
    /* bad values: one line, exit 2 */
    snprintf(args, sizeof args, "eval --pred %s/pred --label %s/label --both-empty zero", dir, dir);
    ck_assert_int_eq(run_tool(args, out, sizeof out), 2);
    ck_assert(strstr(out, "--both-empty must be one or nan"));
    snprintf(args, sizeof args, "eval --pred %s/pred --label %s/label --nsd-tol -1", dir, dir);
    ck_assert_int_eq(run_tool(args, out, sizeof out), 2);
    ck_assert(strstr(out, "--nsd-tol"));
    unlink(csv);
    unlink(js);
    rmdir(tmp);
    diffcl_tensor_free(nsd_ref);
    fixture_close(&f);
    diffcl_context_free(ctx);
}
END_TEST

START_TEST(infer_cli_matches_segment)
{
    diffcl_context *ctx = test_context();
    static char out[65536];
    char args[16384];
    for (int dims = 2; dims <= 3; dims++) {
        diffcl_vnet_options vo = DIFFCL_VNET_OPTIONS_INIT;
        vo.dims = dims;
        vo.n_filters = 2;
        vo.seed = 11;
        diffcl_module *m = NULL;
        ck_ok(diffcl_vnet_create(ctx, &vo, &m));
        diffcl_module_train(m, 0);
        const char *mp = "/tmp/diffcl_test_infer_model.safetensors";
        ck_ok(diffcl_model_save(m, mp));
        const char *in = dims == 2 ? "data/png/images/slice0.png" : "data/msd/imagesTr/la_003.nii.gz";
        const char *op = dims == 2 ? "/tmp/diffcl_test_infer.png" : "/tmp/diffcl_test_infer.nii.gz";
        char inp[4096];
        snprintf(inp, sizeof inp, "%s", test_fixture_path(in));
        snprintf(args, sizeof args, "infer --model %s --input %s --output %s --threads 1 --quiet%s", mp, inp,
                 op, dims == 3 ? " --patch 16,16,16 --stride 8,8,4 --tta" : "");
        int rc = run_tool(args, out, sizeof out);
        ck_assert_msg(rc == 0, "diffcl infer failed (%d): %s", rc, out);
        /* the same in-process */
        diffcl_tensor *img = NULL, *x = NULL, *want = NULL, *got = NULL;
        diffcl_image_meta meta, meta2;
        diffcl_image_meta_init(&meta);
        diffcl_image_meta_init(&meta2);
        if (dims == 2) ck_ok(diffcl_png_read_image(ctx, inp, &img, NULL));
        else ck_ok(diffcl_nifti_read(ctx, inp, DIFFCL_NIFTI_IMAGE, &img, &meta));
        ck_ok(diffcl_tensor_unsqueeze(img, 0, &x));
        diffcl_sliding_window_options so = DIFFCL_SLIDING_WINDOW_OPTIONS_INIT;
        if (dims == 2) { /* 13x17 -> one 16x32 window */
            so.patch[1] = 16;
            so.patch[2] = 32;
            so.stride[1] = 8;
            so.stride[2] = 16;
        } else {
            so.patch[0] = so.patch[1] = so.patch[2] = 16;
            so.stride[0] = so.stride[1] = 8;
            so.stride[2] = 4;
            so.tta_flips = 1;
        }
        ck_ok(diffcl_segment(m, x, &so, &want, NULL));
        if (dims == 2) ck_ok(diffcl_png_read_label(ctx, op, &got));
        else ck_ok(diffcl_nifti_read(ctx, op, DIFFCL_NIFTI_LABEL, &got, &meta2));
        ck_assert_msg(test_rel_error(got, want) == 0, "%d-D: the CLI's labels differ", dims);
        if (dims == 3)
            for (int r = 0; r < 4; r++)
                for (int c = 0; c < 4; c++) ck_assert(meta2.affine[r][c] == meta.affine[r][c]);
        unlink(op);
        unlink(mp);
        diffcl_tensor_free(img);
        diffcl_tensor_free(x);
        diffcl_tensor_free(want);
        diffcl_tensor_free(got);
        diffcl_module_free(m);
    }
    ck_assert_int_eq(run_tool("infer --model /nonexistent.safetensors --input x.png --output y.png", out,
                              sizeof out), 2);
    ck_assert(strstr(out, "no such input"));
    ck_assert_int_eq(run_tool("infer --input", out, sizeof out), 2);
    diffcl_context_free(ctx);
}
END_TEST

static Suite *metrics_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("metrics");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, metrics_match_medpy_reference);
    tcase_add_test(tc, edt_matches_scipy);
    tcase_add_test(tc, empty_mask_convention);
    tcase_add_test(tc, bad_arguments);
    tcase_add_test(tc, large_volume_is_fast);
    tcase_add_test(tc, both_empty_policy);
    tcase_add_test(tc, summarize_ddof);
    tcase_add_test(tc, surface_dice_matches_monai_reference);
    tcase_add_test(tc, surface_dice_tolerance_and_errors);
    suite_add_tcase(s, tc);
    tc = tcase_create("infer");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, sliding_window_matches_test_single_case);
    tcase_add_test(tc, sliding_window_2d_cancel_and_errors);
    tcase_add_test(tc, largest_component_and_overlay);
    tcase_add_test(tc, eval_cli_matches_medpy);
    tcase_add_test(tc, eval_cli_class_mean_nsd_json);
    tcase_add_test(tc, infer_cli_matches_segment);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return test_run_suite(metrics_suite()); }
