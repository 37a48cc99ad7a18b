/* Suite `metrics`: Dice, Jaccard, HD95, ASD, ASSD and the EDT against a scipy/medpy
 * reference (tests/reference/gen_metrics.py -> tests/fixtures/metrics_ref.safetensors). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "test_util.h"

#include "diffcl/metrics.h"

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
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return test_run_suite(metrics_suite()); }
