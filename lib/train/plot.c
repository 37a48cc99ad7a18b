/* curves.png: the training loss (left panel: each iteration in blue, a running mean in black)
 * and the validation Dice (right panel, red markers and line, y from 0 to 1), with tick labels,
 * axis titles and legends drawn in the embedded bitmap font (lib/io/raster.h). The numbers are
 * also in log.csv. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "io/raster.h"
#include "train/trainer_internal.h"

enum { W = 900, H = 360, PANEL = 450, LEFT = 64, RIGHT = 16, TOP = 30, BOTTOM = 44 };

static const unsigned char INK[3] = {40, 40, 40}, GRID[3] = {228, 228, 228},
                           BLUE[3] = {90, 140, 230}, BLACK[3] = {0, 0, 0}, RED[3] = {220, 40, 40};

/* A panel's plotting box and its axis ranges. */
typedef struct panel {
    int x0, x1, y0, y1; /* left, right, bottom, top in pixels */
    double xmax, lo, hi;
} panel;

static panel make_panel(int p, double xmax, double lo, double hi)
{
    panel q = {p * PANEL + LEFT, (p + 1) * PANEL - RIGHT, H - BOTTOM, TOP, xmax, lo, hi};
    if (!(q.xmax > 0)) q.xmax = 1;
    if (!(q.hi > q.lo)) q.hi = q.lo + 1;
    return q;
}

static int px_x(const panel *q, double x)
{
    return q->x0 + (int)lround((q->x1 - q->x0) * (x / q->xmax));
}

static int px_y(const panel *q, double y)
{
    double t = (y - q->lo) / (q->hi - q->lo);
    return q->y0 - (int)lround((q->y0 - q->y1) * (t < 0 ? 0 : t > 1 ? 1 : t));
}

/* 1, 2 or 5 times a power of ten, about a quarter of @p range. */
static double tick_step(double range)
{
    double raw = range / 4, p = pow(10, floor(log10(raw))), m = raw / p;
    return p * (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10);
}

/* Grid, axes, tick labels, the axis titles and the panel's title. */
static void axes(dc_raster *r, const panel *q, const char *title, const char *ytitle)
{
    char buf[32];
    double sy = tick_step(q->hi - q->lo), sx = tick_step(q->xmax);
    for (double v = ceil(q->lo / sy) * sy; v <= q->hi + 1e-9 * sy; v += sy) {
        int y = px_y(q, v);
        dc_raster_line(r, q->x0, y, q->x1, y, GRID);
        snprintf(buf, sizeof buf, "%.3g", fabs(v) < 1e-12 * sy ? 0.0 : v);
        dc_raster_text(r, q->x0 - 6 - dc_text_width(buf), y - dc_text_height() / 2, buf, INK);
    }
    for (double v = 0; v <= q->xmax + 1e-9 * sx; v += sx) {
        int x = px_x(q, v);
        dc_raster_line(r, x, q->y0, x, q->y1, GRID);
        snprintf(buf, sizeof buf, "%.6g", v);
        dc_raster_text(r, x - dc_text_width(buf) / 2, q->y0 + 5, buf, INK);
    }
    dc_raster_line(r, q->x0, q->y0, q->x1, q->y0, INK);
    dc_raster_line(r, q->x0, q->y0, q->x0, q->y1, INK);
    const char *xt = "iteration";
    dc_raster_text(r, (q->x0 + q->x1 - dc_text_width(xt)) / 2, q->y0 + 24, xt, INK);
    dc_raster_text_up(r, q->x0 - LEFT + 4, (q->y0 + q->y1 + dc_text_width(ytitle)) / 2, ytitle,
                      INK);
    dc_raster_text(r, (q->x0 + q->x1 - dc_text_width(title)) / 2, 8, title, INK);
}

/* One legend entry, row @p row, at the panel's top right. */
static void legend(dc_raster *r, const panel *q, int row, const char *text,
                   const unsigned char rgb[3])
{
    int x = q->x1 - dc_text_width(text) - 30, y = q->y1 + 6 + row * (dc_text_height() + 4);
    dc_raster_fill(r, x - 2, y - 2, q->x1 - 4, y + dc_text_height() + 1,
                   (unsigned char[3]){255, 255, 255});
    dc_raster_fill(r, x, y + 5, x + 16, y + 7, rgb);
    dc_raster_text(r, x + 22, y, text, INK);
}

/* A series as a polyline; @p marks draws a 5x5 square at every point as well. */
static void series(dc_raster *r, const panel *q, const double *x, const double *y, int64_t n,
                   int marks, const unsigned char rgb[3])
{
    int px = -1, py = -1;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(y[i])) continue;
        int X = px_x(q, x ? x[i] : (double)(i + 1)), Y = px_y(q, y[i]);
        if (px >= 0) dc_raster_line(r, px, py, X, Y, rgb);
        if (marks) dc_raster_fill(r, X - 2, Y - 2, X + 2, Y + 2, rgb);
        dc_raster_put(r, X, Y, rgb);
        px = X;
        py = Y;
    }
}

/* The running mean of the last n/50 + 1 losses (NaN skipped), and the finite range. */
static void smooth_loss(const double *loss, int64_t n, double *smooth, double *lo, double *hi)
{
    double acc = 0;
    int64_t win = n / 50 + 1, cnt = 0;
    *lo = INFINITY;
    *hi = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        if (isfinite(loss[i])) {
            *lo = fmin(*lo, loss[i]);
            *hi = fmax(*hi, loss[i]);
            acc += loss[i];
            cnt++;
        }
        if (i >= win && isfinite(loss[i - win])) {
            acc -= loss[i - win];
            cnt--;
        }
        smooth[i] = cnt ? acc / (double)cnt : NAN;
    }
    if (!isfinite(*lo)) *lo = 0, *hi = 1;
}

static void dice_panel(dc_raster *r, double xmax, const double *val_x, const double *val_y,
                       int64_t n_val)
{
    panel q = make_panel(1, xmax, 0.0, 1.0);
    axes(r, &q, "validation", "Dice");
    int64_t best = -1;
    for (int64_t i = 0; i < n_val; i++)
        if (isfinite(val_y[i]) && (best < 0 || val_y[i] > val_y[best])) best = i;
    if (best < 0) {
        const char *msg = n_val ? "validation gave no Dice" : "no validation set";
        dc_raster_text(r, (q.x0 + q.x1 - dc_text_width(msg)) / 2, (q.y0 + q.y1) / 2, msg, INK);
        return;
    }
    series(r, &q, val_x, val_y, n_val, 1, RED);
    char buf[64];
    snprintf(buf, sizeof buf, "Dice (best %.3f at %.0f)", val_y[best], val_x[best]);
    legend(r, &q, 0, buf, RED);
}

diffcl_status dc_plot_curves(const char *path, const double *loss, int64_t n_loss,
                             const double *val_x, const double *val_y, int64_t n_val,
                             int64_t total_iters)
{
    dc_raster r;
    double *smooth = dc_malloc((size_t)(n_loss > 0 ? n_loss : 1) * sizeof *smooth);
    if (!smooth) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "plot: out of memory");
    diffcl_status s = dc_raster_init(&r, W, H);
    if (s != DIFFCL_OK) {
        free(smooth);
        return s;
    }
    double lo, hi, xmax = (double)(total_iters > n_loss ? total_iters : n_loss);
    smooth_loss(loss, n_loss, smooth, &lo, &hi);
    panel q = make_panel(0, xmax, 0.0 < lo ? 0.0 : lo, hi);
    axes(&r, &q, "training", "loss");
    series(&r, &q, NULL, loss, n_loss, 0, BLUE);
    legend(&r, &q, 0, "loss", BLUE);
    if (n_loss / 50 + 1 > 1) { /* a window of one would hide the loss under its own mean */
        series(&r, &q, NULL, smooth, n_loss, 0, BLACK);
        legend(&r, &q, 1, "running mean", BLACK);
    }
    dice_panel(&r, xmax, val_x, val_y, n_val);
    free(smooth);
    s = dc_raster_write_png(&r, path);
    dc_raster_free(&r);
    return s;
}
