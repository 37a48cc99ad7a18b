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

void diffcl_image_meta_init(diffcl_image_meta *meta)
{
    if (!meta) return;
    memset(meta, 0, sizeof *meta);
    meta->struct_size = sizeof *meta;
    for (int i = 0; i < 3; i++) meta->spacing[i] = 1.0;
    for (int i = 0; i < 4; i++) meta->affine[i][i] = 1.0;
}

int dc_meta_can_hold(const diffcl_image_meta *meta, size_t field_end)
{
    return meta && meta->struct_size >= field_end;
}

typedef struct png_err {
    jmp_buf jmp;
    char msg[256];
    FILE *out;   /* writing: the stream of png_write_out */
    int sys_err; /* writing: the errno of a failed write or flush (EFBIG, ENOSPC, ...) */
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

/* Read a PNG; mode 0: image (F32 samples or luminance), 1: label (U8 indices). */
static diffcl_status png_read_any(diffcl_context *ctx, const char *path, int label_mode,
                                  diffcl_tensor **out, int *bit_depth_out)
{
    const char *fn = label_mode ? "diffcl_png_read_label" : "diffcl_png_read_image";
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
    }
    png_read_update_info(png, info);
    int channels = png_get_channels(png, info);
    int odepth = png_get_bit_depth(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    buf = malloc(rowbytes * H);
    rows = malloc(sizeof(png_bytep) * H);
    int64_t shape[2] = {(int64_t)H, (int64_t)W};
    t = (buf && rows) ? dc_tensor_empty(ctx, label_mode ? DIFFCL_U8 : DIFFCL_F32, 2, shape) : NULL;
    if (!t) png_error(png, "out of memory");
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
    return png_read_any(ctx, path, 0, out, bit_depth);
}

diffcl_status diffcl_png_read_label(diffcl_context *ctx, const char *path, diffcl_tensor **out)
{
    return png_read_any(ctx, path, 1, out, NULL);
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
    png_structp png =
        png_create_write_struct(PNG_LIBPNG_VER_STRING, &err, on_png_error, on_png_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    png_bytep *volatile rows = NULL;
    if (!png || !info || setjmp(err.jmp)) {
        png_destroy_write_struct(&png, &info);
        fclose(fp);
        unlink(tmp);
        free(rows);
        if (err.sys_err)
            return dc_error(DIFFCL_ERR_IO, "%s: cannot write '%s': %s", fn, path,
                            strerror(err.sys_err));
        return dc_error(DIFFCL_ERR_IO, "%s: cannot write '%s' (libpng: %s)", fn, path,
                        err.msg[0] ? err.msg : "out of memory");
    }
    rows = malloc(sizeof(png_bytep) * H);
    if (!rows) png_error(png, "out of memory");
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
    unsigned char *buf = malloc((size_t)H * W * bpp);
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
