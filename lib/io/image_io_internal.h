/* Internal helpers shared by the image readers (png_io.c, h5_io.c, nifti_io.c). */
#ifndef DIFFCL_IMAGE_IO_INTERNAL_H
#define DIFFCL_IMAGE_IO_INTERNAL_H

#include <stddef.h>
#include <stdio.h>

#include "core/core_internal.h"
#include "diffcl/image_io.h"

/* fopen(path, "rb") or DIFFCL_ERR_IO naming the file. */
diffcl_status dc_open_for_read(const char *path, FILE **fp, const char *fn);
/* A temporary name next to @p path (hidden, pid-tagged), ending in @p suffix. */
diffcl_status dc_tmp_path(const char *path, const char *suffix, char *tmp, size_t n);
/* rename(tmp, path), removing tmp on failure. */
diffcl_status dc_commit_tmp(const char *tmp, const char *path, const char *fn);
/* Encode @p buf (H rows of W pixels of @p channels 1 or 3 samples of @p bit_depth 8 or 16,
 * big-endian) as a PNG at @p path, atomically (temporary file + rename). */
diffcl_status dc_png_write_bytes(const char *path, const unsigned char *buf, unsigned W, unsigned H,
                                 int channels, int bit_depth, const char *fn);
/* Does @p meta (caller's struct_size) reach byte @p field_end? */
int dc_meta_can_hold(const diffcl_image_meta *meta, size_t field_end);

#endif
