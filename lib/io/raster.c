/* An RGB canvas with lines, rectangles and bitmap text (raster.h). */
#include <stdlib.h>
#include <string.h>

#include "io/font_7x13.inc"
#include "io/image_io_internal.h"
#include "io/raster.h"

diffcl_status dc_raster_init(dc_raster *r, int w, int h)
{
    r->w = w;
    r->h = h;
    r->px = dc_malloc((size_t)w * (size_t)h * 3);
    if (!r->px) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "raster: out of memory");
    memset(r->px, 255, (size_t)w * (size_t)h * 3);
    return DIFFCL_OK;
}

void dc_raster_free(dc_raster *r)
{
    free(r->px);
    r->px = NULL;
}

void dc_raster_put(dc_raster *r, int x, int y, const unsigned char rgb[3])
{
    if (x >= 0 && x < r->w && y >= 0 && y < r->h)
        memcpy(r->px + 3 * ((size_t)y * r->w + x), rgb, 3);
}

void dc_raster_line(dc_raster *r, int x0, int y0, int x1, int y1, const unsigned char rgb[3])
{
    int dx = abs(x1 - x0), sx = x0 < x1 ? 1 : -1, dy = -abs(y1 - y0), sy = y0 < y1 ? 1 : -1,
        err = dx + dy;
    for (;;) { /* Bresenham */
        dc_raster_put(r, x0, y0, rgb);
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

void dc_raster_fill(dc_raster *r, int x0, int y0, int x1, int y1, const unsigned char rgb[3])
{
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) dc_raster_put(r, x, y, rgb);
}

static const unsigned char *glyph(char c)
{
    return DC_FONT[(c >= 32 && c <= 126 ? c : '?') - 32];
}

void dc_raster_text(dc_raster *r, int x, int y, const char *s, const unsigned char rgb[3])
{
    for (; *s; s++, x += DC_FONT_W) {
        const unsigned char *g = glyph(*s);
        for (int gy = 0; gy < DC_FONT_H; gy++)
            for (int gx = 0; gx < DC_FONT_W; gx++)
                if (g[gy] >> (DC_FONT_W - 1 - gx) & 1) dc_raster_put(r, x + gx, y + gy, rgb);
    }
}

void dc_raster_text_up(dc_raster *r, int x, int y, const char *s, const unsigned char rgb[3])
{
    for (; *s; s++, y -= DC_FONT_W) {
        const unsigned char *g = glyph(*s);
        for (int gy = 0; gy < DC_FONT_H; gy++) /* glyph row gy becomes column x + gy */
            for (int gx = 0; gx < DC_FONT_W; gx++)
                if (g[gy] >> (DC_FONT_W - 1 - gx) & 1) dc_raster_put(r, x + gy, y - gx, rgb);
    }
}

int dc_text_width(const char *s)
{
    return (int)strlen(s) * DC_FONT_W;
}

int dc_text_height(void)
{
    return DC_FONT_H;
}

diffcl_status dc_raster_write_png(const dc_raster *r, const char *path)
{
    return dc_png_write_bytes(path, r->px, (unsigned)r->w, (unsigned)r->h, 3, 8, "plot");
}
