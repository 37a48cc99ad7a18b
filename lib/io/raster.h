/* An RGB canvas with lines, rectangles and text, written as PNG (raster.c): what the
 * library's pictures (curves.png) are drawn on. Text uses the embedded 7x13 bitmap font of
 * font_7x13.inc (scripts/gen-font.py), so no font library is needed at run time. */
#ifndef DIFFCL_IO_RASTER_H
#define DIFFCL_IO_RASTER_H

#include "core/core_internal.h"

typedef struct dc_raster {
    int w, h;
    unsigned char *px; /* h rows of w RGB pixels */
} dc_raster;

/* A white canvas; DIFFCL_ERR_OUT_OF_MEMORY. Free with dc_raster_free. */
diffcl_status dc_raster_init(dc_raster *r, int w, int h);
void dc_raster_free(dc_raster *r);
/* Drawing clips to the canvas. */
void dc_raster_put(dc_raster *r, int x, int y, const unsigned char rgb[3]);
void dc_raster_line(dc_raster *r, int x0, int y0, int x1, int y1, const unsigned char rgb[3]);
void dc_raster_fill(dc_raster *r, int x0, int y0, int x1, int y1, const unsigned char rgb[3]);
/* Text with its top-left corner at (x, y); ASCII 32..126 (others draw as '?'). */
void dc_raster_text(dc_raster *r, int x, int y, const char *s, const unsigned char rgb[3]);
/* The same turned a quarter left (read from bottom to top), its bottom-left corner at (x, y). */
void dc_raster_text_up(dc_raster *r, int x, int y, const char *s, const unsigned char rgb[3]);
int dc_text_width(const char *s); /* pixels */
int dc_text_height(void);
/* Write the canvas as an 8-bit RGB PNG, atomically. */
diffcl_status dc_raster_write_png(const dc_raster *r, const char *path);

#endif
