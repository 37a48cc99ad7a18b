/* curves.png: the training loss (left panel, blue, with a running mean in black) and the
 * validation Dice (right panel, red, y from 0 to 1), drawn with libpng. Axes and a light
 * grid at tenths; no text (the numbers are in log.csv). */
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/trainer_internal.h"

enum { W = 800, H = 320, PANEL = 400, MARGIN = 24 };

typedef struct canvas {
    unsigned char px[H][W][3];
} canvas;

static void put(canvas *c, int x, int y, const unsigned char rgb[3])
{
    if (x >= 0 && x < W && y >= 0 && y < H) memcpy(c->px[y][x], rgb, 3);
}

static void line(canvas *c, int x0, int y0, int x1, int y1, const unsigned char rgb[3])
{
    int dx = abs(x1 - x0), sx = x0 < x1 ? 1 : -1, dy = -abs(y1 - y0), sy = y0 < y1 ? 1 : -1,
        err = dx + dy;
    for (;;) {
        put(c, x0, y0, rgb);
        if (x0 == x1 && y0 == y1) break;
        int e2 = 2 * err;
        if (e2 >= dy) {
            err += dy;
            x0 += sx;
        }
        if (e2 <= dx) {
            err += dx;
            y0 += sy;
        }
    }
}

/* Draw a series into panel p (0 left, 1 right) with y range [lo, hi]. */
static void series(canvas *c, int p, const double *x, const double *y, int64_t n, double xmax,
                   double lo, double hi, const unsigned char rgb[3])
{
    int x0 = p * PANEL + MARGIN, x1 = (p + 1) * PANEL - MARGIN / 2, y0 = H - MARGIN,
        y1 = MARGIN / 2;
    int px = -1, py = -1;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(y[i])) continue;
        double xv = x ? x[i] : (double)(i + 1);
        int X = x0 + (int)((x1 - x0) * (xv / (xmax > 0 ? xmax : 1)));
        double t = (y[i] - lo) / (hi - lo > 0 ? hi - lo : 1);
        int Y = y0 - (int)((y0 - y1) * (t < 0 ? 0 : t > 1 ? 1 : t));
        if (px >= 0)
            line(c, px, py, X, Y, rgb);
        else
            put(c, X, Y, rgb);
        px = X;
        py = Y;
    }
}

static void frame(canvas *c, int p)
{
    static const unsigned char axis[3] = {60, 60, 60}, grid[3] = {225, 225, 225};
    int x0 = p * PANEL + MARGIN, x1 = (p + 1) * PANEL - MARGIN / 2, y0 = H - MARGIN,
        y1 = MARGIN / 2;
    for (int k = 1; k < 10; k++) {
        int y = y0 - (y0 - y1) * k / 10, x = x0 + (x1 - x0) * k / 10;
        line(c, x0, y, x1, y, grid);
        line(c, x, y0, x, y1, grid);
    }
    line(c, x0, y0, x1, y0, axis);
    line(c, x0, y0, x0, y1, axis);
}

diffcl_status dc_plot_curves(const char *path, const double *loss, int64_t n_loss,
                             const double *val_x, const double *val_y, int64_t n_val,
                             int64_t total_iters)
{
    canvas *c = malloc(sizeof *c);
    double *smooth = malloc((size_t)(n_loss > 0 ? n_loss : 1) * sizeof *smooth);
    if (!c || !smooth) {
        free(c);
        free(smooth);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "plot: out of memory");
    }
    memset(c, 255, sizeof *c);
    frame(c, 0);
    frame(c, 1);
    double lo = INFINITY, hi = -INFINITY, acc = 0;
    int64_t win = n_loss / 50 + 1, cnt = 0;
    for (int64_t i = 0; i < n_loss; i++) {
        if (isfinite(loss[i])) {
            lo = fmin(lo, loss[i]);
            hi = fmax(hi, loss[i]);
            acc += loss[i];
            cnt++;
        }
        if (i >= win && isfinite(loss[i - win])) {
            acc -= loss[i - win];
            cnt--;
        }
        smooth[i] = cnt ? acc / (double)cnt : NAN;
    }
    if (!isfinite(lo)) {
        lo = 0;
        hi = 1;
    }
    double xmax = (double)(total_iters > n_loss ? total_iters : n_loss);
    static const unsigned char blue[3] = {90, 140, 230}, black[3] = {0, 0, 0},
                               red[3] = {220, 40, 40};
    series(c, 0, NULL, loss, n_loss, xmax, 0.0 < lo ? 0.0 : lo, hi, blue);
    if (win > 1) /* a window of one would hide the loss under its own mean */
        series(c, 0, NULL, smooth, n_loss, xmax, 0.0 < lo ? 0.0 : lo, hi, black);
    series(c, 1, val_x, val_y, n_val, xmax, 0.0, 1.0, red);
    free(smooth);

    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        free(c);
        return dc_error(DIFFCL_ERR_IO, "cannot write %s", tmp);
    }
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    diffcl_status s = DIFFCL_OK;
    if (!png || !info || setjmp(png_jmpbuf(png))) {
        s = dc_error(DIFFCL_ERR_IO, "libpng failed writing %s", tmp);
    } else {
        png_init_io(png, f);
        png_set_IHDR(png, info, W, H, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                     PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
        png_write_info(png, info);
        for (int y = 0; y < H; y++) png_write_row(png, (png_bytep)c->px[y]);
        png_write_end(png, NULL);
    }
    png_destroy_write_struct(&png, &info);
    fclose(f);
    free(c);
    if (s == DIFFCL_OK && rename(tmp, path) != 0)
        s = dc_error(DIFFCL_ERR_IO, "cannot rename %s", tmp);
    if (s != DIFFCL_OK) remove(tmp);
    return s;
}
