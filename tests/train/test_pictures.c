/* Suite train, test pictures: what curves.png and the overlays show, read back pixel by pixel
 * with libpng. curves.png has tick labels and axis titles (dark text left of and under each
 * panel), the validation Dice as red markers when validation ran and the words "no validation
 * set" otherwise; an overlay is upscaled to 256 px or more on its short side, with the
 * prediction outlined in colour and the reference in white. */
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_util.h"
#include "diffcl/data.h"
#include "diffcl/infer.h"
#include "diffcl/train.h"

static diffcl_context *ctx;
static void setup(void)
{
    ctx = test_context();
}
static void teardown(void)
{
    diffcl_context_free(ctx);
}

typedef struct rgb_image {
    int w, h;
    unsigned char *px;
} rgb_image;

static rgb_image read_rgb(const char *path)
{
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    ck_assert_msg(png_image_begin_read_from_file(&im, path), "%s: %s", path, im.message);
    im.format = PNG_FORMAT_RGB;
    rgb_image out = {(int)im.width, (int)im.height, malloc(PNG_IMAGE_SIZE(im))};
    ck_assert(out.px && png_image_finish_read(&im, NULL, out.px, 0, NULL));
    return out;
}

enum { INK, RED, WHITE, COLOUR };

/* Pixels of a kind in the box [x0, x1) x [y0, y1). */
static int count(const rgb_image *im, int x0, int y0, int x1, int y1, int kind)
{
    int n = 0;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) {
            const unsigned char *p = im->px + 3 * (y * im->w + x);
            int grey = p[0] == p[1] && p[1] == p[2];
            n += kind == INK     ? p[0] < 100 && p[1] < 100 && p[2] < 100
                 : kind == RED   ? p[0] > 200 && p[1] < 80 && p[2] < 80
                 : kind == WHITE ? p[0] == 255 && grey
                                 : !grey;
        }
    return n;
}

static void run(const char *dir, const char *val_list)
{
    diffcl_train_options o = DIFFCL_TRAIN_OPTIONS_INIT;
    o.method = DIFFCL_METHOD_SUPERVISED;
    o.dims = 2;
    o.labeled = 2;
    o.phantom_cases = 4;
    o.patch[1] = o.patch[2] = 32;
    o.batch_labeled = 2;
    o.n_filters = 2;
    o.hfm_levels = 0;
    o.iters = 12;
    o.val_every = 4;
    o.val_list = val_list;
    o.out_dir = dir;
    diffcl_trainer *tr = NULL;
    ck_ok(diffcl_trainer_create(ctx, &o, &tr));
    ck_ok(diffcl_trainer_run(tr));
    diffcl_trainer_free(tr);
}

/* The layout of plot.c: two 450-px panels, margins left 64, right 16, top 30, bottom 44. */
START_TEST(test_curves_have_text_and_the_validation_dice)
{
    char dir[] = "/tmp/diffcl_pic_XXXXXX", path[64];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    run(dir, "2"); /* two held-out phantom cases */
    snprintf(path, sizeof path, "%s/curves.png", dir);
    rgb_image im = read_rgb(path);
    ck_assert(im.w == 900 && im.h == 360);
    for (int p = 0; p < 2; p++) {
        int x0 = 450 * p + 64;
        ck_assert_msg(count(&im, x0 - 60, 30, x0 - 4, 316, INK) > 40, "panel %d: no y labels", p);
        ck_assert_msg(count(&im, x0, 320, x0 + 370, 360, INK) > 60, "panel %d: no x labels", p);
        ck_assert_msg(count(&im, x0, 0, x0 + 370, 24, INK) > 20, "panel %d: no title", p);
    }
    /* one 5x5 marker per validation (iterations 4, 8, 12), and a red legend swatch */
    ck_assert_int_ge(count(&im, 514, 30, 884, 316, RED), 3 * 25);
    free(im.px);
    /* the same run without a validation set says so, and draws no Dice */
    run(dir, NULL);
    im = read_rgb(path);
    ck_assert_int_eq(count(&im, 514, 30, 884, 316, RED), 0);
    ck_assert_msg(count(&im, 600, 160, 800, 190, INK) > 40, "no 'no validation set' text");
    free(im.px);
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

START_TEST(test_overlay_is_upscaled_with_two_outlines)
{
    diffcl_phantom_options po = DIFFCL_PHANTOM_OPTIONS_INIT;
    po.ndim = 2;
    po.height = po.width = 96;
    diffcl_tensor *img = NULL, *ref = NULL, *pred = NULL;
    ck_ok(diffcl_phantom_case(ctx, &po, 3, &img, &ref));
    ck_ok(diffcl_largest_component(ref, 1, &pred)); /* a prediction a little off */
    const char *path = "/tmp/diffcl_test_overlay_pic.png";
    ck_ok(diffcl_overlay_png(img, pred, ref, 0, -1, path));
    rgb_image im = read_rgb(path);
    ck_assert(im.w == 288 && im.h == 288); /* 96 px upscaled 3x */
    int coloured = count(&im, 0, 0, im.w, im.h, COLOUR),
        white = count(&im, 0, 0, im.w, im.h, WHITE);
    ck_assert_int_gt(coloured, 100); /* the prediction's outline */
    ck_assert_int_gt(white, 100);    /* the reference's */
    /* outlines, not fills: far fewer coloured pixels than the class covers (9 per voxel) */
    const unsigned char *lp = diffcl_tensor_data(pred);
    int area = 0;
    for (int64_t i = 0; i < diffcl_tensor_numel(pred); i++) area += lp[i] != 0;
    ck_assert_int_lt(coloured, 9 * area / 2);
    free(im.px);
    /* without label and reference: the grey image only */
    ck_ok(diffcl_overlay_png(img, NULL, NULL, 0, -1, path));
    im = read_rgb(path);
    ck_assert_int_eq(count(&im, 0, 0, im.w, im.h, COLOUR), 0);
    free(im.px);
    unlink(path);
    diffcl_tensor_free(img);
    diffcl_tensor_free(ref);
    diffcl_tensor_free(pred);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pictures");
    TCase *tc = tcase_create("pictures");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_curves_have_text_and_the_validation_dice);
    tcase_add_test(tc, test_overlay_is_upscaled_with_two_outlines);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}
