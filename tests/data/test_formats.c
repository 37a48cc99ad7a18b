/* Suite `data`, test `formats`: NIfTI-2 files (libnifti2), RGB PNG images as three channels and
 * PNG label maps given as masks (diffcl_read_options). Fixtures from
 * tests/reference/gen_formats.py (nibabel, PIL). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_util.h"

#include "diffcl/data.h"

static diffcl_tensor_dict *load_ref(diffcl_context *ctx)
{
    diffcl_tensor_dict *d = NULL;
    ck_ok(diffcl_safetensors_load(ctx, test_fixture_path("formats_ref.safetensors"), &d));
    return d;
}

static diffcl_tensor *ref_get(diffcl_tensor_dict *d, const char *name)
{
    diffcl_tensor *t = diffcl_tensor_dict_get(d, name);
    ck_assert_msg(t != NULL, "formats_ref has no %s", name);
    return t;
}

static const char *fx(const char *rel)
{
    static char buf[4][4096];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", test_fixture_path("formats"), rel);
    return buf[k];
}

/* Exact equality of values (any dtypes) and shapes. */
static void assert_same_values(const diffcl_tensor *a, const diffcl_tensor *b, const char *what)
{
    int64_t sa[5], sb[5];
    int na = diffcl_tensor_shape(a, sa), nb = diffcl_tensor_shape(b, sb);
    ck_assert_msg(na == nb && !memcmp(sa, sb, sizeof(int64_t) * (size_t)na), "%s: shapes differ",
                  what);
    ck_assert_msg(test_rel_error(a, b) == 0, "%s: values differ (rel %g)", what,
                  test_rel_error(a, b));
}

/* max |a - ref| / max |ref| of a meta's affine and spacing against the reference. */
static void assert_geometry(diffcl_context *ctx, diffcl_tensor_dict *ref, const char *name,
                            const diffcl_image_meta *m, double tol)
{
    char key[128];
    diffcl_tensor *aff = NULL, *spc = NULL;
    ck_ok(diffcl_tensor_from_data(ctx, DIFFCL_F64, 2, (int64_t[]){4, 4}, (void *)m->affine, &aff));
    ck_ok(diffcl_tensor_from_data(ctx, DIFFCL_F64, 1, (int64_t[]){3}, (void *)m->spacing, &spc));
    snprintf(key, sizeof key, "%s.affine", name);
    ck_assert_msg(test_rel_error(aff, ref_get(ref, key)) <= tol, "%s: %g", key,
                  test_rel_error(aff, ref_get(ref, key)));
    snprintf(key, sizeof key, "%s.spacing", name);
    ck_assert_msg(test_rel_error(spc, ref_get(ref, key)) <= tol, "%s: %g", key,
                  test_rel_error(spc, ref_get(ref, key)));
    diffcl_tensor_free(aff);
    diffcl_tensor_free(spc);
}

/* The NIfTI version of a file by its header size (sizeof_hdr: 348 or 540); gzip is read through
 * the library's own reader, so only uncompressed files are checked here. */
static int nifti_version_of(const char *path)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    int32_t n = 0;
    ck_assert(fread(&n, 4, 1, f) == 1);
    fclose(f);
    return n == 540 ? 2 : n == 348 ? 1 : 0;
}

/* ------------------------------------------------------------------ NIfTI-2 ---- */

START_TEST(nifti2_matches_nibabel_and_round_trips)
{
    diffcl_context *ctx = test_context();
    if (!diffcl_io_has_nifti()) {
        diffcl_tensor *t = NULL;
        ck_assert_int_eq(diffcl_nifti_read(ctx, fx("nifti2/lab.nii"), DIFFCL_NIFTI_LABEL, &t, NULL),
                         DIFFCL_ERR_UNSUPPORTED);
        diffcl_context_free(ctx);
        return;
    }
    diffcl_tensor_dict *ref = load_ref(ctx);
    /* a NIfTI-2 int16 image with scl_slope 0.5, scl_inter -3 and a rotated, anisotropic sform */
    diffcl_tensor *img = NULL, *lab = NULL, *back = NULL;
    diffcl_image_meta m, m2;
    diffcl_image_meta_init(&m);
    ck_ok(diffcl_nifti_read(ctx, fx("nifti2/img.nii.gz"), DIFFCL_NIFTI_IMAGE, &img, &m));
    int64_t shape[5];
    ck_assert_int_eq(diffcl_tensor_shape(img, shape), 3);
    ck_assert(shape[0] == 7 && shape[1] == 5 && shape[2] == 4);
    assert_same_values(img, ref_get(ref, "nifti2/img"), "NIfTI-2 image");
    assert_geometry(ctx, ref, "nifti2/img", &m, 1e-12); /* NIfTI-2 keeps float64 */
    ck_assert_int_eq(m.ndim, 3);
    ck_assert(m.has_nifti2_header && m.has_nifti_header); /* its sizes fit NIfTI-1 too */
    ck_ok(diffcl_nifti_read(ctx, fx("nifti2/lab.nii"), DIFFCL_NIFTI_LABEL, &lab, NULL));
    ck_assert_int_eq(diffcl_tensor_dtype(lab), DIFFCL_U8);
    assert_same_values(lab, ref_get(ref, "nifti2/lab"), "NIfTI-2 label");

    /* a prediction written with the NIfTI-2 input's header is NIfTI-2, with its geometry */
    const char *pred = "/tmp/diffcl_formats_pred2.nii";
    ck_ok(diffcl_nifti_write(lab, pred, &m));
    ck_assert_int_eq(nifti_version_of(pred), 2);
    diffcl_image_meta_init(&m2);
    ck_ok(diffcl_nifti_read(ctx, pred, DIFFCL_NIFTI_LABEL, &back, &m2));
    assert_same_values(back, lab, "label written with the NIfTI-2 header");
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++) ck_assert(m2.affine[r][c] == m.affine[r][c]);
    ck_assert(m2.has_nifti2_header);
    diffcl_tensor_free(back);
    /* the image itself, float32, gzip */
    ck_ok(diffcl_nifti_write(img, "/tmp/diffcl_formats_img2.nii.gz", &m));
    ck_ok(
        diffcl_nifti_read(ctx, "/tmp/diffcl_formats_img2.nii.gz", DIFFCL_NIFTI_IMAGE, &back, &m2));
    assert_same_values(back, img, "NIfTI-2 image round trip");
    ck_assert(m2.has_nifti2_header);
    assert_geometry(ctx, ref, "nifti2/img", &m2, 1e-12);
    diffcl_tensor_free(back);
    /* without the NIfTI-2 header: NIfTI-1, the same geometry in float32 */
    m.has_nifti2_header = 0;
    ck_ok(diffcl_nifti_write(lab, pred, &m));
    ck_assert_int_eq(nifti_version_of(pred), 1);
    ck_ok(diffcl_nifti_read(ctx, pred, DIFFCL_NIFTI_LABEL, &back, &m2));
    assert_same_values(back, lab, "label written as NIfTI-1");
    ck_assert(!m2.has_nifti2_header && m2.has_nifti_header);
    assert_geometry(ctx, ref, "nifti2/lab", &m2, 1e-6);
    diffcl_tensor_free(back);

    /* a caller built against 0.1.0 (meta without the NIfTI-2 fields) reads the NIfTI-2 file
     * and writes its prediction as NIfTI-1 with the same geometry */
    unsigned char raw[sizeof(diffcl_image_meta) + 16];
    memset(raw, 0xA5, sizeof raw);
    diffcl_image_meta *old = (diffcl_image_meta *)raw;
    diffcl_image_meta_init(old);
    old->struct_size = offsetof(diffcl_image_meta, nifti_header) + 348;
    memset(raw + old->struct_size, 0xA5, sizeof raw - old->struct_size);
    ck_ok(diffcl_nifti_read(ctx, fx("nifti2/lab.nii"), DIFFCL_NIFTI_LABEL, &back, old));
    for (size_t i = old->struct_size; i < sizeof raw; i++) ck_assert_int_eq(raw[i], 0xA5);
    ck_assert(old->has_nifti_header);
    ck_ok(diffcl_nifti_write(back, pred, old));
    ck_assert_int_eq(nifti_version_of(pred), 1);
    diffcl_tensor_free(back);
    ck_ok(diffcl_nifti_read(ctx, pred, DIFFCL_NIFTI_LABEL, &back, &m2));
    assert_same_values(back, lab, "0.1.0 caller's label");
    assert_geometry(ctx, ref, "nifti2/lab", &m2, 1e-6);
    diffcl_tensor_free(back);

    /* an axis longer than NIfTI-1's 32767: written as NIfTI-2 even without a header */
    diffcl_tensor *big = NULL;
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_U8, 2, (int64_t[]){40000, 2}, &big));
    ((uint8_t *)diffcl_tensor_data(big))[79999] = 3;
    ck_ok(diffcl_nifti_write(big, pred, NULL));
    ck_assert_int_eq(nifti_version_of(pred), 2);
    ck_ok(diffcl_nifti_read(ctx, pred, DIFFCL_NIFTI_LABEL, &back, &m2));
    assert_same_values(back, big, "40000 x 2 NIfTI-2");
    ck_assert(m2.has_nifti2_header && !m2.has_nifti_header);
    diffcl_tensor_free(back);
    diffcl_tensor_free(big);

    /* a NIfTI-1 input still gives a NIfTI-1 header only, and NIfTI-1 out */
    ck_ok(diffcl_nifti_read(ctx, test_fixture_path("data/msd/labelsTr/la_003.nii.gz"),
                            DIFFCL_NIFTI_LABEL, &back, &m2));
    ck_assert(m2.has_nifti_header && !m2.has_nifti2_header);
    ck_ok(diffcl_nifti_write(back, pred, &m2));
    ck_assert_int_eq(nifti_version_of(pred), 1);
    diffcl_tensor_free(back);

    unlink(pred);
    unlink("/tmp/diffcl_formats_img2.nii.gz");
    diffcl_tensor_free(img);
    diffcl_tensor_free(lab);
    diffcl_tensor_dict_free(ref);
    diffcl_context_free(ctx);
}
END_TEST

/* ---------------------------------------------------------------- PNG colour ---- */

START_TEST(png_rgb_channels_match_pil)
{
    diffcl_context *ctx = test_context();
    diffcl_tensor_dict *ref = load_ref(ctx);
    diffcl_read_options rgb = DIFFCL_READ_OPTIONS_INIT, l;
    diffcl_read_options_init(&l);
    ck_assert_uint_eq(l.struct_size, sizeof l);
    ck_assert_int_eq(l.png_color, DIFFCL_PNG_COLOR_L);
    ck_assert(l.label_map == NULL);
    rgb.png_color = DIFFCL_PNG_COLOR_RGB;
    const char *files[] = {"png_rgb/images/c0.png", "png_rgb/images/c3.png" /* grey */, "rgba.png",
                           "palette.png"};
    for (int k = 0; k < 4; k++) {
        diffcl_tensor *t = NULL, *g = NULL, *old = NULL;
        int depth = 0;
        ck_ok(diffcl_png_read_image_ex(ctx, fx(files[k]), &rgb, &t, &depth));
        ck_assert_int_eq(depth, 8);
        ck_assert_int_eq(diffcl_tensor_dim(t, 0), 3);
        assert_same_values(t, ref_get(ref, files[k]), files[k]);
        /* DIFFCL_PNG_COLOR_L (and NULL options): [1, H, W], what diffcl_png_read_image gives */
        ck_ok(diffcl_png_read_image_ex(ctx, fx(files[k]), NULL, &g, NULL));
        ck_ok(diffcl_png_read_image(ctx, fx(files[k]), &old, NULL));
        ck_assert_int_eq(diffcl_tensor_ndim(g), 3);
        ck_assert_int_eq(diffcl_tensor_dim(g, 0), 1);
        ck_assert(diffcl_tensor_numel(g) == diffcl_tensor_numel(old));
        ck_assert(!memcmp(diffcl_tensor_data_const(g), diffcl_tensor_data_const(old),
                          sizeof(float) * (size_t)diffcl_tensor_numel(old)));
        diffcl_tensor_free(g);
        ck_ok(diffcl_png_read_image_ex(ctx, fx(files[k]), &l, &g, NULL));
        ck_assert(!memcmp(diffcl_tensor_data_const(g), diffcl_tensor_data_const(old),
                          sizeof(float) * (size_t)diffcl_tensor_numel(old)));
        char key[128];
        snprintf(key, sizeof key, "%s.L", files[k]);
        if (diffcl_tensor_dict_get(ref, key))
            ck_assert(!memcmp(diffcl_tensor_data_const(old),
                              diffcl_tensor_data_const(ref_get(ref, key)),
                              sizeof(float) * (size_t)diffcl_tensor_numel(old)));
        diffcl_tensor_free(t);
        diffcl_tensor_free(g);
        diffcl_tensor_free(old);
    }
    /* 16-bit grey: raw samples in every channel */
    diffcl_tensor *t = NULL, *old = NULL;
    int depth = 0;
    ck_ok(diffcl_png_read_image_ex(ctx, test_fixture_path("data/png/images/slice1.png"), &rgb, &t,
                                   &depth));
    ck_ok(diffcl_png_read_image(ctx, test_fixture_path("data/png/images/slice1.png"), &old, NULL));
    ck_assert_int_eq(depth, 16);
    for (int c = 0; c < 3; c++)
        ck_assert(!memcmp((const float *)diffcl_tensor_data_const(t) + c * diffcl_tensor_numel(old),
                          diffcl_tensor_data_const(old),
                          sizeof(float) * (size_t)diffcl_tensor_numel(old)));
    diffcl_tensor_free(t);
    diffcl_tensor_free(old);
    /* bad options */
    rgb.png_color = 7;
    ck_assert_int_eq(diffcl_png_read_image_ex(ctx, fx(files[0]), &rgb, &t, NULL),
                     DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert(strstr(diffcl_last_error(), "png_color"));
    rgb.png_color = DIFFCL_PNG_COLOR_RGB;
    rgb.struct_size = sizeof(size_t);
    ck_assert_int_eq(diffcl_png_read_image_ex(ctx, fx(files[0]), &rgb, &t, NULL),
                     DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert(t == NULL);
    ck_assert_int_eq(diffcl_png_read_image_ex(ctx, fx("none.png"), NULL, &t, NULL), DIFFCL_ERR_IO);
    diffcl_tensor_dict_free(ref);
    diffcl_context_free(ctx);
}
END_TEST

/* ------------------------------------------------------------------ label maps ---- */

START_TEST(png_label_map)
{
    diffcl_context *ctx = test_context();
    diffcl_tensor_dict *ref = load_ref(ctx);
    int table[256], top = -1;
    ck_ok(diffcl_label_map_parse(" 255 : 1, 128:2 ", table, &top));
    ck_assert_int_eq(top, 2);
    ck_assert(table[255] == 1 && table[128] == 2 && table[0] == -1 && table[1] == -1);
    const char *bad[] = {"",        "255",         "255:",   ":1",          "256:1",
                         "255:256", "255:1;128:2", "255:1,", "255:1,255:2", "-1:0",
                         "255:1x"};
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        table[0] = 42;
        ck_assert_msg(diffcl_label_map_parse(bad[k], table, NULL) == DIFFCL_ERR_INVALID_ARGUMENT,
                      "'%s' was accepted", bad[k]);
        ck_assert_int_eq(table[0], 42);
        ck_assert(strstr(diffcl_last_error(), "label map"));
    }
    diffcl_read_options o = DIFFCL_READ_OPTIONS_INIT;
    diffcl_tensor *t = NULL;
    /* 0/255 masks; without a map the raw values */
    o.label_map = "255:1";
    ck_ok(diffcl_png_read_label_ex(ctx, fx("png_mask/labels/m1.png"), &o, &t));
    assert_same_values(t, ref_get(ref, "png_mask/labels/m1.png"), "255:1");
    diffcl_tensor_free(t);
    ck_ok(diffcl_png_read_label_ex(ctx, fx("png_mask/labels/m1.png"), NULL, &t));
    ck_assert_int_eq(((const uint8_t *)diffcl_tensor_data_const(t))[0], 0);
    int has255 = 0;
    for (int64_t i = 0; i < diffcl_tensor_numel(t); i++)
        has255 |= ((const uint8_t *)diffcl_tensor_data_const(t))[i] == 255;
    ck_assert(has255);
    diffcl_tensor_free(t);
    o.label_map = "255:1,128:2";
    ck_ok(diffcl_png_read_label_ex(ctx, fx("mask3.png"), &o, &t));
    assert_same_values(t, ref_get(ref, "mask3.png"), "255:1,128:2");
    diffcl_tensor_free(t);
    /* a value neither in the map nor a class: the file, the pixel and the value */
    o.label_map = "255:1";
    ck_assert_int_eq(diffcl_png_read_label_ex(ctx, fx("bad_mask.png"), &o, &t), DIFFCL_ERR_FORMAT);
    ck_assert(t == NULL);
    const char *e = diffcl_last_error();
    ck_assert_msg(strstr(e, "bad_mask.png") && strstr(e, "value 7") && strstr(e, "row 7") &&
                      strstr(e, "column 2") && strstr(e, "255:1") && strstr(e, "0..1"),
                  "%s", e);
    ck_assert_int_eq(diffcl_png_read_label_ex(ctx, fx("mask3.png"), &o, &t), DIFFCL_ERR_FORMAT);
    ck_assert(strstr(diffcl_last_error(), "value 128"));
    o.label_map = "255:1,7:1";
    ck_ok(diffcl_png_read_label_ex(ctx, fx("bad_mask.png"), &o, &t));
    ck_assert_int_eq(((const uint8_t *)diffcl_tensor_data_const(t))[7 * 12 + 2], 1);
    diffcl_tensor_free(t);
    o.label_map = "255:x";
    ck_assert_int_eq(diffcl_png_read_label_ex(ctx, fx("mask3.png"), &o, &t),
                     DIFFCL_ERR_INVALID_ARGUMENT);
    /* an RGB file is still not a label map */
    o.label_map = "255:1";
    ck_assert_int_eq(diffcl_png_read_label_ex(ctx, fx("png_rgb/images/c0.png"), &o, &t),
                     DIFFCL_ERR_FORMAT);
    diffcl_tensor_dict_free(ref);
    diffcl_context_free(ctx);
}
END_TEST

/* ------------------------------------------------------------------ data sets ---- */

START_TEST(dataset_png_rgb_and_label_map)
{
    diffcl_context *ctx = test_context();
    diffcl_tensor_dict *ref = load_ref(ctx);
    diffcl_read_options ro = DIFFCL_READ_OPTIONS_INIT;
    ro.png_color = DIFFCL_PNG_COLOR_RGB;
    diffcl_dataset *ds = NULL;
    ck_ok(diffcl_dataset_open_ex(ctx, fx("png_rgb"), NULL, &ro, &ds));
    ck_assert_int_eq(diffcl_dataset_layout(ds), DIFFCL_LAYOUT_PNG);
    ck_assert_int_eq(diffcl_dataset_size(ds), 4);
    for (int64_t i = 0; i < 4; i++) {
        diffcl_tensor *img = NULL, *lab = NULL;
        char key[128];
        ck_ok(diffcl_dataset_load(ds, i, &img, &lab, NULL));
        snprintf(key, sizeof key, "png_rgb/images/%s.png", diffcl_dataset_case_id(ds, i));
        assert_same_values(img, ref_get(ref, key), key); /* c3 is grey: three equal channels */
        ck_assert_int_eq(diffcl_tensor_ndim(lab), 2);
        diffcl_tensor_free(img);
        diffcl_tensor_free(lab);
    }
    /* the sampler (prefetch thread, no cache) sees three channels too */
    diffcl_split sp;
    ck_ok(diffcl_dataset_split(ds, 2, NULL, &sp));
    diffcl_sampler_options so = DIFFCL_SAMPLER_OPTIONS_INIT;
    so.patch[0] = 1;
    so.patch[1] = so.patch[2] = 16;
    so.batch_labeled = 2;
    so.batch_unlabeled = 2;
    so.prefetch = 2;
    so.cache = 0;
    diffcl_sampler *s = NULL;
    ck_ok(diffcl_sampler_create(ds, &sp, &so, &s));
    diffcl_tensor *bi = NULL, *bl = NULL;
    ck_ok(diffcl_sampler_next(s, 0, &bi, &bl, NULL));
    ck_assert_int_eq(diffcl_tensor_dim(bi, 0), 4);
    ck_assert_int_eq(diffcl_tensor_dim(bi, 1), 3);
    diffcl_tensor_free(bi);
    diffcl_tensor_free(bl);
    diffcl_sampler_free(s);
    diffcl_split_free(&sp);
    diffcl_dataset_free(ds);

    /* the same folder opened as in 0.1.0: one luminance channel */
    ck_ok(diffcl_dataset_open(ctx, fx("png_rgb"), NULL, &ds));
    diffcl_tensor *img = NULL, *lab = NULL;
    ck_ok(diffcl_dataset_load(ds, 0, &img, NULL, NULL));
    ck_assert_int_eq(diffcl_tensor_dim(img, 0), 1);
    ck_assert(!memcmp(diffcl_tensor_data_const(img),
                      diffcl_tensor_data_const(ref_get(ref, "png_rgb/images/c0.png.L")),
                      sizeof(float) * (size_t)diffcl_tensor_numel(img)));
    diffcl_tensor_free(img);
    diffcl_dataset_free(ds);

    /* 0/255 masks with a label map; the map is copied */
    char map[16];
    snprintf(map, sizeof map, "255:1");
    diffcl_read_options mo = DIFFCL_READ_OPTIONS_INIT;
    mo.label_map = map;
    diffcl_dataset_options dopt = DIFFCL_DATASET_OPTIONS_INIT;
    dopt.list = "train.list";
    ck_ok(diffcl_dataset_open_ex(ctx, fx("png_mask"), &dopt, &mo, &ds));
    snprintf(map, sizeof map, "garbage");
    ck_assert_int_eq(diffcl_dataset_size(ds), 3);
    for (int64_t i = 0; i < 3; i++) {
        char key[128];
        ck_ok(diffcl_dataset_load(ds, i, &img, &lab, NULL));
        snprintf(key, sizeof key, "png_mask/labels/%s.png", diffcl_dataset_case_id(ds, i));
        assert_same_values(lab, ref_get(ref, key), key);
        ck_assert_int_eq(diffcl_tensor_dim(img, 0), 1);
        diffcl_tensor_free(img);
        diffcl_tensor_free(lab);
    }
    diffcl_dataset_free(ds);
    /* without the map the 255s come through (the trainer's class check catches them) */
    ck_ok(diffcl_dataset_open(ctx, fx("png_mask"), NULL, &ds));
    ck_ok(diffcl_dataset_load(ds, 0, &img, &lab, NULL));
    ck_assert_int_eq(diffcl_tensor_dim(img, 0), 1);
    diffcl_tensor_free(img);
    diffcl_tensor_free(lab);
    diffcl_dataset_free(ds);
    /* a malformed map fails at open, naming it */
    mo.label_map = "255=1";
    ck_assert_int_eq(diffcl_dataset_open_ex(ctx, fx("png_mask"), NULL, &mo, &ds),
                     DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert(ds == NULL);
    ck_assert(strstr(diffcl_last_error(), "255=1") && strstr(diffcl_last_error(), "open_ex"));
    mo.label_map = NULL;
    mo.png_color = 2;
    ck_assert_int_eq(diffcl_dataset_open_ex(ctx, fx("png_mask"), NULL, &mo, &ds),
                     DIFFCL_ERR_INVALID_ARGUMENT);
    /* NULL read options: diffcl_dataset_open */
    ck_ok(diffcl_dataset_open_ex(ctx, fx("png_mask"), NULL, NULL, &ds));
    ck_assert_int_eq(diffcl_dataset_size(ds), 3);
    diffcl_dataset_free(ds);
    diffcl_tensor_dict_free(ref);
    diffcl_context_free(ctx);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("formats");
    TCase *tc = tcase_create("nifti2");
    tcase_add_test(tc, nifti2_matches_nibabel_and_round_trips);
    suite_add_tcase(s, tc);
    tc = tcase_create("png");
    tcase_add_test(tc, png_rgb_channels_match_pil);
    tcase_add_test(tc, png_label_map);
    tcase_add_test(tc, dataset_png_rgb_and_label_map);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}
