/* Suite io, test orientation: diffcl_orientation_to_ras, diffcl_reorient and
 * diffcl_reorient_meta. Every voxel keeps its value and its world position; the inverse
 * restores the input exactly; and two stores of one image with different axis orders and
 * directions reach the same RAS+ array, so a network sees the same input whichever way the
 * scan was written (the rotated-header case of issue 18). */
#include <string.h>

#include "test_util.h"
#include "diffcl/image_io.h"
#include "diffcl/infer.h"
#include "diffcl/model.h"

static diffcl_context *ctx;
static void setup(void)
{
    ctx = test_context();
}
static void teardown(void)
{
    diffcl_context_free(ctx);
}

/* An affine whose voxel axes point along -S, +R and -A, with anisotropic spacing. */
static void oblique_meta(diffcl_image_meta *m)
{
    diffcl_image_meta_init(m);
    m->ndim = 3;
    double A[4][4] = {{0, 0.7, 0, -10}, {0, 0, -2.5, 20}, {-0.9, 0, 0, 30}, {0, 0, 0, 1}};
    memcpy(m->affine, A, sizeof A);
    m->spacing[0] = 0.9;
    m->spacing[1] = 0.7;
    m->spacing[2] = 2.5;
}

static void world(const diffcl_image_meta *m, const int64_t i[3], double w[3])
{
    for (int r = 0; r < 3; r++)
        w[r] = m->affine[r][0] * (double)i[0] + m->affine[r][1] * (double)i[1] +
               m->affine[r][2] * (double)i[2] + m->affine[r][3];
}

START_TEST(test_values_keep_their_world_position)
{
    diffcl_image_meta m, mr;
    oblique_meta(&m);
    diffcl_orientation o;
    ck_ok(diffcl_orientation_to_ras(&m, &o));
    /* R is voxel axis 1, A axis 2 reversed, S axis 0 reversed */
    ck_assert(o.perm[0] == 1 && o.perm[1] == 2 && o.perm[2] == 0);
    ck_assert(!o.flip[0] && o.flip[1] && o.flip[2]);
    int64_t shape[4] = {2, 4, 5, 6};
    diffcl_tensor *t = test_randn(ctx, DIFFCL_F32, 4, shape, 11), *r = NULL, *back = NULL;
    ck_ok(diffcl_reorient(t, &o, 0, &r));
    ck_assert(diffcl_tensor_dim(r, 1) == 5 && diffcl_tensor_dim(r, 2) == 6 &&
              diffcl_tensor_dim(r, 3) == 4);
    diffcl_reorient_meta(&m, shape + 1, &o, &mr);
    ck_assert(mr.spacing[0] == 0.7 && mr.spacing[1] == 2.5 && mr.spacing[2] == 0.9);
    for (int j = 0; j < 3; j++) ck_assert(mr.affine[j][j] > 0); /* RAS+: a positive diagonal */
    const float *tv = diffcl_tensor_data(t), *rv = diffcl_tensor_data(r);
    for (int64_t c = 0; c < 2; c++)
        for (int64_t a = 0; a < 5; a++)
            for (int64_t b = 0; b < 6; b++)
                for (int64_t d = 0; d < 4; d++) {
                    int64_t ri[3] = {a, b, d}, ti[3];
                    double wr[3], wt[3];
                    world(&mr, ri, wr);
                    /* the input voxel at the same world position */
                    ti[1] = a;
                    ti[2] = 6 - 1 - b;
                    ti[0] = 4 - 1 - d;
                    world(&m, ti, wt);
                    for (int k = 0; k < 3; k++) ck_assert_double_eq_tol(wr[k], wt[k], 1e-9);
                    ck_assert(rv[((c * 5 + a) * 6 + b) * 4 + d] ==
                              tv[((c * 4 + ti[0]) * 5 + ti[1]) * 6 + ti[2]]);
                }
    ck_ok(diffcl_reorient(r, &o, 1, &back));
    ck_assert_int_eq(memcmp(diffcl_tensor_data(back), tv, sizeof(float) * 2 * 4 * 5 * 6), 0);
    diffcl_tensor_free(t);
    diffcl_tensor_free(r);
    diffcl_tensor_free(back);
}
END_TEST

START_TEST(test_two_stores_reach_the_same_ras_array)
{
    diffcl_image_meta m, m2;
    oblique_meta(&m);
    int64_t shape[3] = {4, 5, 6};
    diffcl_tensor *t = test_randn(ctx, DIFFCL_F32, 3, shape, 5), *t2 = NULL, *a = NULL, *b = NULL;
    /* the same image stored another way: axes (2, 0, 1), the middle one reversed */
    diffcl_orientation other = {{2, 0, 1}, {0, 1, 0}}, o1, o2;
    ck_ok(diffcl_reorient(t, &other, 0, &t2));
    diffcl_reorient_meta(&m, shape, &other, &m2);
    ck_ok(diffcl_orientation_to_ras(&m, &o1));
    ck_ok(diffcl_orientation_to_ras(&m2, &o2));
    ck_ok(diffcl_reorient(t, &o1, 0, &a));
    ck_ok(diffcl_reorient(t2, &o2, 0, &b));
    ck_assert_int_eq(memcmp(diffcl_tensor_data(a), diffcl_tensor_data(b), sizeof(float) * 120), 0);
    /* a RAS+ image stays as it is */
    diffcl_image_meta id;
    diffcl_image_meta_init(&id);
    ck_ok(diffcl_orientation_to_ras(&id, &o1));
    ck_assert(o1.perm[0] == 0 && o1.perm[1] == 1 && o1.perm[2] == 2);
    ck_assert(!o1.flip[0] && !o1.flip[1] && !o1.flip[2]);
    diffcl_tensor_free(t);
    diffcl_tensor_free(t2);
    diffcl_tensor_free(a);
    diffcl_tensor_free(b);
}
END_TEST

/* Segmenting through RAS+ (what diffcl infer --reorient-ras does): the same scan stored with
 * a rotated header gives the same probabilities (so the same segmentation), on its own grid. */
static diffcl_tensor *segment_ras(diffcl_module *net, const diffcl_tensor *img,
                                  const diffcl_image_meta *m)
{
    diffcl_orientation o;
    diffcl_tensor *x = NULL, *lab = NULL, *back = NULL;
    diffcl_sliding_window_options so = DIFFCL_SLIDING_WINDOW_OPTIONS_INIT;
    for (int a = 0; a < 3; a++) so.patch[a] = so.stride[a] = 16;
    ck_ok(diffcl_orientation_to_ras(m, &o));
    ck_ok(diffcl_reorient(img, &o, 0, &x));
    ck_ok(diffcl_sliding_window(net, x, &so, &lab)); /* probabilities [K, ...] */
    ck_ok(diffcl_reorient(lab, &o, 1, &back));
    diffcl_tensor_free(x);
    diffcl_tensor_free(lab);
    return back;
}

START_TEST(test_rotated_header_segments_the_same)
{
    diffcl_vnet_options vo = DIFFCL_VNET_OPTIONS_INIT;
    vo.dims = 3;
    vo.n_filters = 2;
    vo.has_dropout = 0;
    diffcl_module *net = NULL;
    ck_ok(diffcl_vnet_create(ctx, &vo, &net));
    diffcl_module_train(net, 0);
    diffcl_image_meta m, m2;
    oblique_meta(&m);
    int64_t shape[4] = {1, 16, 32, 32};
    diffcl_tensor *img = test_randn(ctx, DIFFCL_F32, 4, shape, 3), *img2 = NULL, *want = NULL;
    diffcl_orientation other = {{2, 0, 1}, {1, 0, 1}};
    ck_ok(diffcl_reorient(img, &other, 0, &img2));
    diffcl_reorient_meta(&m, shape + 1, &other, &m2);
    diffcl_tensor *l1 = segment_ras(net, img, &m), *l2 = segment_ras(net, img2, &m2);
    ck_ok(diffcl_reorient(l1, &other, 0, &want)); /* the first result, stored the second way */
    ck_assert_int_eq(memcmp(diffcl_tensor_data(want), diffcl_tensor_data(l2),
                            4 * (size_t)diffcl_tensor_numel(l2)),
                     0);
    /* without reorientation the two stores give different probabilities (the test has teeth) */
    diffcl_sliding_window_options so = DIFFCL_SLIDING_WINDOW_OPTIONS_INIT;
    for (int a = 0; a < 3; a++) so.patch[a] = so.stride[a] = 16;
    diffcl_tensor *p1 = NULL, *p2 = NULL, *p1r = NULL;
    ck_ok(diffcl_sliding_window(net, img, &so, &p1));
    ck_ok(diffcl_sliding_window(net, img2, &so, &p2));
    ck_ok(diffcl_reorient(p1, &other, 0, &p1r));
    ck_assert_int_ne(memcmp(diffcl_tensor_data(p1r), diffcl_tensor_data(p2),
                            4 * (size_t)diffcl_tensor_numel(p2)),
                     0);
    diffcl_tensor *list[] = {img, img2, want, l1, l2, p1, p2, p1r};
    for (size_t i = 0; i < sizeof list / sizeof *list; i++) diffcl_tensor_free(list[i]);
    diffcl_module_free(net);
}
END_TEST

START_TEST(test_bad_arguments)
{
    diffcl_image_meta m;
    diffcl_image_meta_init(&m);
    memset(m.affine, 0, sizeof m.affine);
    diffcl_orientation o;
    ck_assert_int_eq(diffcl_orientation_to_ras(&m, &o), DIFFCL_ERR_INVALID_ARGUMENT);
    int64_t shape[2] = {3, 3};
    diffcl_tensor *t = test_randn(ctx, DIFFCL_F32, 2, shape, 1), *r = NULL;
    diffcl_orientation ok = {{0, 1, 2}, {0, 0, 0}}, bad = {{0, 0, 2}, {0, 0, 0}};
    ck_assert_int_eq(diffcl_reorient(t, &ok, 0, &r), DIFFCL_ERR_SHAPE);
    int64_t s3[3] = {2, 2, 2};
    diffcl_tensor *t3 = test_randn(ctx, DIFFCL_F32, 3, s3, 1);
    ck_assert_int_eq(diffcl_reorient(t3, &bad, 0, &r), DIFFCL_ERR_INVALID_ARGUMENT);
    diffcl_tensor_free(t);
    diffcl_tensor_free(t3);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("orientation");
    TCase *tc = tcase_create("orientation");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_values_keep_their_world_position);
    tcase_add_test(tc, test_two_stores_reach_the_same_ras_array);
    tcase_add_test(tc, test_rotated_header_segments_the_same);
    tcase_add_test(tc, test_bad_arguments);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}
