/* 2-D PNG images and label maps through libpng. */
#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <png.h>

#include "io/image_io_internal.h"
#include "tensor/tensor_internal.h"

static void image_meta_defaults(diffcl_image_meta *meta, size_t size)
{
    diffcl_image_meta d;
    memset(&d, 0, sizeof d);
    d.struct_size = size;
    for (int i = 0; i < 3; i++) d.spacing[i] = 1.0;
    for (int i = 0; i < 4; i++) d.affine[i][i] = 1.0;
    memcpy(meta, &d, size);
}

/* diffcl_image_meta grew after 0.1.0 (has_nifti2_header, nifti2_header). A program built
 * against 0.1.0 calls the DIFFCL_0.1 version, which fills only the 0.1.0 layout; programs
 * built since bind to the DIFFCL_0.2 default (docs/abi-policy.md). */
__attribute__((visibility("default"))) void dc_image_meta_init_v0_1(diffcl_image_meta *meta);
void dc_image_meta_init_v0_1(diffcl_image_meta *meta)
{
    if (!meta) return;
    image_meta_defaults(meta, offsetof(diffcl_image_meta, nifti_header) + 348);
}
__asm__(".symver dc_image_meta_init_v0_1, diffcl_image_meta_init@DIFFCL_0.1");

__attribute__((visibility("default"))) void dc_image_meta_init_v0_2(diffcl_image_meta *meta);
void dc_image_meta_init_v0_2(diffcl_image_meta *meta)
{
    if (!meta) return;
    image_meta_defaults(meta, sizeof *meta);
}
__asm__(".symver dc_image_meta_init_v0_2, diffcl_image_meta_init@@DIFFCL_0.2");

int dc_meta_can_hold(const diffcl_image_meta *meta, size_t field_end)
{
    return meta && meta->struct_size >= field_end;
}

typedef struct png_err {
    jmp_buf jmp;
    char msg[256];
    FILE *out;        /* writing: the stream of png_write_out */
    int sys_err;      /* writing: the errno of a failed write or flush (EFBIG, ENOSPC, ...) */
    volatile int oom; /* our own allocation failed: DIFFCL_ERR_OUT_OF_MEMORY, not a format error */
} png_err;

static void on_png_error(png_structp png, png_const_charp msg)
{
    png_err *e = png_get_error_ptr(png);
    snprintf(e->msg, sizeof e->msg, "%s", msg);
    longjmp(e->jmp, 1);
}

static void on_png_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

diffcl_status dc_open_for_read(const char *path, FILE **fp, const char *fn)
{
    *fp = fopen(path, "rb");
    if (!*fp) return dc_error(DIFFCL_ERR_IO, "%s: cannot open '%s': %s", fn, path, strerror(errno));
    return DIFFCL_OK;
}

/* diffcl_read_options as first published (0.2): what a caller's struct_size must reach. */
#define READ_OPTIONS_0_2_SIZE (offsetof(diffcl_read_options, label_map) + sizeof(const char *))

void diffcl_read_options_init(diffcl_read_options *opts)
{
    if (!opts) return;
    diffcl_read_options d = DIFFCL_READ_OPTIONS_INIT;
    *opts = d;
}

/* One number 0..255 of a label map at *p (spaces around it skipped); -1 if there is none. */
static int label_map_number(const char **p)
{
    const char *s = *p;
    while (*s == ' ' || *s == '\t') s++;
    if (*s < '0' || *s > '9') return -1;
    long v = 0;
    while (*s >= '0' && *s <= '9' && v <= 255) v = v * 10 + (*s++ - '0');
    while (*s == ' ' || *s == '\t') s++;
    *p = s;
    return v <= 255 ? (int)v : -1;
}

diffcl_status diffcl_label_map_parse(const char *spec, int table[256], int *max_class)
{
    const char *fn = "diffcl_label_map_parse";
    DC_CHECK_ARG(spec && table, "%s: spec and table must not be NULL", fn);
    int t[256], top = 0;
    for (int v = 0; v < 256; v++) t[v] = -1;
    const char *p = spec;
    while (*p == ' ' || *p == '\t') p++;
    if (!*p)
        return dc_error(DIFFCL_ERR_INVALID_ARGUMENT,
                        "%s: empty label map (VALUE:CLASS pairs, e.g. '255:1' or '255:1,128:2')",
                        fn);
    for (;;) {
        const char *at = p;
        int v = label_map_number(&p);
        int c = v >= 0 && *p == ':' ? (p++, label_map_number(&p)) : -1;
        if (v < 0 || c < 0 || (*p && *p != ','))
            return dc_error(DIFFCL_ERR_INVALID_ARGUMENT,
                            "%s: bad label map '%s' at '%s': expected VALUE:CLASS pairs with "
                            "VALUE and CLASS in 0..255, separated by commas (e.g. '255:1,128:2')",
                            fn, spec, at);
        if (t[v] >= 0)
            return dc_error(DIFFCL_ERR_INVALID_ARGUMENT, "%s: label map '%s' gives value %d twice",
                            fn, spec, v);
        t[v] = c;
        if (c > top) top = c;
        if (!*p) break;
        p++; /* ',' */
    }
    memcpy(table, t, sizeof t);
    if (max_class) *max_class = top;
    return DIFFCL_OK;
}

/* Apply label map @p spec (already parsed into @p table, classes 0..@p top) to the U8 label
 * @p t read from @p path: a listed value becomes its class, an unlisted one must be a class. */
static diffcl_status apply_label_map(diffcl_tensor *t, const int table[256], int top,
                                     const char *spec, const char *path, const char *fn)
{
    uint8_t *d = dc_data(t);
    int64_t W = t->shape[1], n = dc_numel(t);
    for (int64_t i = 0; i < n; i++) {
        int v = d[i];
        if (table[v] >= 0)
            d[i] = (uint8_t)table[v];
        else if (v > top)
            return dc_error(DIFFCL_ERR_FORMAT,
                            "%s: '%s': pixel (row %lld, column %lld) has value %d, which is "
                            "neither in the label map '%s' nor a class index (0..%d)",
                            fn, path, (long long)(i / W), (long long)(i % W), v, spec, top);
    }
    return DIFFCL_OK;
}

/* Read a PNG; mode 0: image (F32 samples or luminance; @p rgb: [3, H, W] R, G, B), 1: label
 * (U8 indices). */
static diffcl_status png_read_any(diffcl_context *ctx, const char *path, int label_mode, int rgb,
                                  const char *fn, diffcl_tensor **out, int *bit_depth_out)
{
    DC_CHECK_ARG(ctx && path && out, "%s: ctx, path and out must not be NULL", fn);
    *out = NULL;
    FILE *fp;
    DC_TRY(dc_open_for_read(path, &fp, fn));
    unsigned char sig[8];
    if (fread(sig, 1, 8, fp) != 8 || png_sig_cmp(sig, 0, 8)) {
        fclose(fp);
        return dc_error(DIFFCL_ERR_FORMAT, "%s: '%s' is not a PNG file (bad signature)", fn, path);
    }
    png_err err;
    err.msg[0] = 0;
    err.oom = 0;
    png_structp png =
        png_create_read_struct(PNG_LIBPNG_VER_STRING, &err, on_png_error, on_png_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_read_struct(&png, &info, NULL);
        fclose(fp);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    /* volatile: modified between setjmp and longjmp */
    diffcl_tensor *volatile t = NULL;
    png_bytep *volatile rows = NULL;
    unsigned char *volatile buf = NULL;
    if (setjmp(err.jmp)) {
        png_destroy_read_struct(&png, &info, NULL);
        fclose(fp);
        free(rows);
        free(buf);
        diffcl_tensor_free(t);
        if (err.oom) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: '%s': out of memory", fn, path);
        return dc_error(DIFFCL_ERR_FORMAT, "%s: '%s' is corrupt or truncated (libpng: %s)", fn,
                        path, err.msg);
    }
    png_init_io(png, fp);
    png_set_sig_bytes(png, 8);
    png_read_info(png, info);
    png_uint_32 W = png_get_image_width(png, info), H = png_get_image_height(png, info);
    int depth = png_get_bit_depth(png, info), ctype = png_get_color_type(png, info);
    if (label_mode) {
        if (depth == 16 || (ctype & PNG_COLOR_MASK_COLOR && ctype != PNG_COLOR_TYPE_PALETTE)) {
            png_destroy_read_struct(&png, &info, NULL);
            fclose(fp);
            return dc_error(DIFFCL_ERR_FORMAT,
                            "%s: '%s' is a %d-bit %s PNG; a label map must be 8-bit grey or "
                            "palette (class indices)",
                            fn, path, depth, (ctype & PNG_COLOR_MASK_COLOR) ? "colour" : "grey");
        }
        if (depth < 8) png_set_packing(png); /* indices, not scaled to 0..255 */
        png_set_strip_alpha(png);
    } else {
        if (ctype == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
        if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
        if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
        png_set_strip_alpha(png);
        if (rgb && !(ctype & PNG_COLOR_MASK_COLOR)) png_set_gray_to_rgb(png); /* R = G = B */
    }
    png_read_update_info(png, info);
    int channels = png_get_channels(png, info);
    int odepth = png_get_bit_depth(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    buf = dc_malloc(rowbytes * H);
    rows = dc_malloc(sizeof(png_bytep) * H);
    int64_t shape[3] = {(int64_t)H, (int64_t)W}, shape3[3] = {3, (int64_t)H, (int64_t)W};
    if (rgb && channels < 3) png_error(png, "colour conversion failed");
    t = !(buf && rows) ? NULL
        : rgb          ? dc_tensor_empty(ctx, DIFFCL_F32, 3, shape3)
                       : dc_tensor_empty(ctx, label_mode ? DIFFCL_U8 : DIFFCL_F32, 2, shape);
    if (!t) {
        err.oom = 1;
        png_error(png, "out of memory");
    }
    for (png_uint_32 y = 0; y < H; y++) rows[y] = buf + y * rowbytes;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    for (png_uint_32 y = 0; y < H; y++) {
        const unsigned char *r = rows[y];
        for (png_uint_32 x = 0; x < W; x++) {
            size_t i = (size_t)y * W + x;
            if (label_mode) {
                ((uint8_t *)dc_data(t))[i] = r[x * channels];
                continue;
            }
            if (rgb) { /* planes R, G, B of the raw samples */
                size_t plane = (size_t)H * W;
                for (int c = 0; c < 3; c++) {
                    const unsigned char *p =
                        r + ((size_t)x * channels + c) * (odepth == 16 ? 2 : 1);
                    dc_f32(t)[c * plane + i] = (float)(odepth == 16 ? (p[0] << 8 | p[1]) : p[0]);
                }
                continue;
            }
            double v;
            if (odepth == 16) {
                const unsigned char *p = r + (size_t)x * channels * 2;
                if (channels >= 3) {
                    double R = p[0] << 8 | p[1], G = p[2] << 8 | p[3], B = p[4] << 8 | p[5];
                    v = (double)(int64_t)((R * 19595 + G * 38470 + B * 7471 + 32768) / 65536);
                } else {
                    v = p[0] << 8 | p[1];
                }
            } else {
                const unsigned char *p = r + (size_t)x * channels;
                if (channels >= 3) /* PIL's convert("L"): ITU-R 601-2 luma, fixed point */
                    v = (p[0] * 19595 + p[1] * 38470 + p[2] * 7471 + 0x8000) >> 16;
                else
                    v = p[0];
            }
            dc_f32(t)[i] = (float)v;
        }
    }
    png_destroy_read_struct(&png, &info, NULL);
    fclose(fp);
    free(rows);
    free(buf);
    if (bit_depth_out) *bit_depth_out = odepth == 16 ? 16 : 8;
    *out = t;
    return DIFFCL_OK;
}

diffcl_status diffcl_png_read_image(diffcl_context *ctx, const char *path, diffcl_tensor **out,
                                    int *bit_depth)
{
    return png_read_any(ctx, path, 0, 0, "diffcl_png_read_image", out, bit_depth);
}

diffcl_status diffcl_png_read_label(diffcl_context *ctx, const char *path, diffcl_tensor **out)
{
    return png_read_any(ctx, path, 1, 0, "diffcl_png_read_label", out, NULL);
}

diffcl_status diffcl_png_read_image_ex(diffcl_context *ctx, const char *path,
                                       const diffcl_read_options *opts, diffcl_tensor **out,
                                       int *bit_depth)
{
    const char *fn = "diffcl_png_read_image_ex";
    DC_CHECK_ARG(out, "%s: out must not be NULL", fn);
    *out = NULL;
    diffcl_read_options o = DIFFCL_READ_OPTIONS_INIT;
    DC_TRY(dc_options_read(&o, sizeof o, opts, READ_OPTIONS_0_2_SIZE, 0, fn));
    DC_CHECK_ARG(o.png_color == DIFFCL_PNG_COLOR_L || o.png_color == DIFFCL_PNG_COLOR_RGB,
                 "%s: png_color %d is not DIFFCL_PNG_COLOR_L (0) or DIFFCL_PNG_COLOR_RGB (1)", fn,
                 o.png_color);
    diffcl_tensor *t = NULL;
    DC_TRY(png_read_any(ctx, path, 0, o.png_color == DIFFCL_PNG_COLOR_RGB, fn, &t, bit_depth));
    if (o.png_color == DIFFCL_PNG_COLOR_RGB) {
        *out = t;
        return DIFFCL_OK;
    }
    diffcl_status s = diffcl_tensor_unsqueeze(t, 0, out); /* [1, H, W] */
    diffcl_tensor_free(t);
    return s;
}

diffcl_status diffcl_png_read_label_ex(diffcl_context *ctx, const char *path,
                                       const diffcl_read_options *opts, diffcl_tensor **out)
{
    const char *fn = "diffcl_png_read_label_ex";
    DC_CHECK_ARG(out, "%s: out must not be NULL", fn);
    *out = NULL;
    diffcl_read_options o = DIFFCL_READ_OPTIONS_INIT;
    DC_TRY(dc_options_read(&o, sizeof o, opts, READ_OPTIONS_0_2_SIZE, 0, fn));
    int table[256], top = 0;
    int mapped = o.label_map && *o.label_map;
    if (mapped) DC_TRY(diffcl_label_map_parse(o.label_map, table, &top));
    diffcl_tensor *t = NULL;
    DC_TRY(png_read_any(ctx, path, 1, 0, fn, &t, NULL));
    diffcl_status s = mapped ? apply_label_map(t, table, top, o.label_map, path, fn) : DIFFCL_OK;
    if (s != DIFFCL_OK) {
        diffcl_tensor_free(t);
        return s;
    }
    *out = t;
    return DIFFCL_OK;
}

diffcl_status dc_tmp_path(const char *path, const char *suffix, char *tmp, size_t n)
{
    /* same folder (rename is atomic), keep the extension for libraries that look at it */
    const char *slash = strrchr(path, '/');
    size_t dir = slash ? (size_t)(slash - path + 1) : 0;
    int k = snprintf(tmp, n, "%.*s.%s.tmp%ld%s", (int)dir, path, path + dir, (long)getpid(),
                     suffix ? suffix : "");
    if (k < 0 || (size_t)k >= n)
        return dc_error(DIFFCL_ERR_INVALID_ARGUMENT, "path too long: '%s'", path);
    return DIFFCL_OK;
}

diffcl_status dc_commit_tmp(const char *tmp, const char *path, const char *fn)
{
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return dc_error(DIFFCL_ERR_IO, "%s: cannot write '%s': %s", fn, path, strerror(e));
    }
    return DIFFCL_OK;
}

/* libpng's output through stdio, keeping the reason of a failed write (libpng's own writer
 * only says "Write Error"). */
static void png_write_out(png_structp png, png_bytep data, png_size_t n)
{
    png_err *e = png_get_io_ptr(png);
    errno = 0;
    if (fwrite(data, 1, n, e->out) != n) {
        e->sys_err = errno ? errno : EIO;
        png_error(png, "Write Error");
    }
}

static void png_flush_out(png_structp png)
{
    png_err *e = png_get_io_ptr(png);
    errno = 0;
    if (fflush(e->out) != 0) {
        e->sys_err = errno ? errno : EIO;
        png_error(png, "Write Error");
    }
}

diffcl_status dc_png_write_bytes(const char *path, const unsigned char *buf, unsigned W, unsigned H,
                                 int channels, int bit_depth, const char *fn)
{
    int bpp = channels * bit_depth / 8;
    char tmp[4096];
    diffcl_status s = dc_tmp_path(path, NULL, tmp, sizeof tmp);
    FILE *fp = s == DIFFCL_OK ? fopen(tmp, "wb") : NULL;
    if (!fp) {
        return s != DIFFCL_OK ? s
                              : dc_error(DIFFCL_ERR_IO, "%s: cannot create '%s': %s", fn, path,
                                         strerror(errno));
    }
    png_err err;
    err.msg[0] = 0;
    err.out = fp;
    err.sys_err = 0;
    err.oom = 0;
    png_structp png =
        png_create_write_struct(PNG_LIBPNG_VER_STRING, &err, on_png_error, on_png_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    png_bytep *volatile rows = NULL;
    if (!png || !info || setjmp(err.jmp)) {
        png_destroy_write_struct(&png, &info);
        fclose(fp);
        unlink(tmp);
        free(rows);
        if (err.oom) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: '%s': out of memory", fn, path);
        if (err.sys_err)
            return dc_error(DIFFCL_ERR_IO, "%s: cannot write '%s': %s", fn, path,
                            strerror(err.sys_err));
        return dc_error(DIFFCL_ERR_IO, "%s: cannot write '%s' (libpng: %s)", fn, path,
                        err.msg[0] ? err.msg : "out of memory");
    }
    rows = dc_malloc(sizeof(png_bytep) * H);
    if (!rows) {
        err.oom = 1;
        png_error(png, "out of memory");
    }
    for (png_uint_32 y = 0; y < H; y++) rows[y] = (png_bytep)buf + (size_t)y * W * bpp;
    png_set_write_fn(png, &err, png_write_out, png_flush_out);
    png_set_IHDR(png, info, W, H, bit_depth,
                 channels == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    if (fclose(fp) != 0) {
        unlink(tmp);
        return dc_error(DIFFCL_ERR_IO, "%s: cannot write '%s': %s", fn, path, strerror(errno));
    }
    return dc_commit_tmp(tmp, path, fn);
}

diffcl_status diffcl_png_write(const diffcl_tensor *t, const char *path, int bit_depth)
{
    const char *fn = "diffcl_png_write";
    DC_CHECK_ARG(t && path, "%s: tensor and path must not be NULL", fn);
    int rgb = t->ndim == 3 && t->shape[2] == 3;
    if (t->ndim != 2 && !rgb)
        return dc_error(DIFFCL_ERR_SHAPE, "%s: '%s': tensor %s is not [H,W] or [H,W,3]", fn, path,
                        dc_shape_str(t));
    DC_CHECK_ARG(bit_depth == 8 || (bit_depth == 16 && !rgb),
                 "%s: '%s': bit_depth %d (8 or 16 for grey, 8 for RGB)", fn, path, bit_depth);
    DC_CHECK_ARG(t->shape[0] >= 1 && t->shape[1] >= 1 && t->shape[0] < (1 << 30) &&
                     t->shape[1] < (1 << 30),
                 "%s: '%s': empty image %s", fn, path, dc_shape_str(t));
    diffcl_tensor *d = NULL;
    DC_TRY(diffcl_tensor_to_dtype(t, DIFFCL_F64, &d));
    diffcl_tensor *c = dc_contiguous(d);
    diffcl_tensor_free(d);
    if (!c) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    const double *v = dc_f64(c);
    png_uint_32 H = (png_uint_32)t->shape[0], W = (png_uint_32)t->shape[1];
    int ch = rgb ? 3 : 1, bpp = ch * bit_depth / 8;
    double maxv = bit_depth == 16 ? 65535.0 : 255.0;
    unsigned char *buf = dc_malloc((size_t)H * W * bpp);
    if (!buf) {
        diffcl_tensor_free(c);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    for (size_t i = 0; i < (size_t)H * W * ch; i++) {
        double x = v[i];
        x = x != x ? 0 : (x < 0 ? 0 : (x > maxv ? maxv : x));
        unsigned q = (unsigned)(x + 0.5);
        if (bit_depth == 16) {
            buf[2 * i] = (unsigned char)(q >> 8);
            buf[2 * i + 1] = (unsigned char)q;
        } else {
            buf[i] = (unsigned char)q;
        }
    }
    diffcl_tensor_free(c);
    diffcl_status s = dc_png_write_bytes(path, buf, W, H, ch, bit_depth, fn);
    free(buf);
    return s;
}
