/* diffcl_dataset_open_ex: a data set whose PNG files are read with diffcl_read_options (RGB
 * images, label maps). Kept apart from dataset.c, which reads ds->read in load_png. */
#include <stdlib.h>
#include <string.h>

#include "data/dataset_internal.h"

/* diffcl_read_options as first published (0.2). */
#define READ_OPTIONS_0_2_SIZE (offsetof(diffcl_read_options, label_map) + sizeof(const char *))

diffcl_status diffcl_dataset_open_ex(diffcl_context *ctx, const char *root,
                                     const diffcl_dataset_options *opts,
                                     const diffcl_read_options *read, diffcl_dataset **out)
{
    const char *fn = "diffcl_dataset_open_ex";
    DC_CHECK_ARG(out, "%s: out must not be NULL", fn);
    *out = NULL;
    diffcl_read_options r = DIFFCL_READ_OPTIONS_INIT;
    DC_TRY(dc_options_read(&r, sizeof r, read, READ_OPTIONS_0_2_SIZE, 0, fn));
    DC_CHECK_ARG(r.png_color == DIFFCL_PNG_COLOR_L || r.png_color == DIFFCL_PNG_COLOR_RGB,
                 "%s: png_color %d is not DIFFCL_PNG_COLOR_L (0) or DIFFCL_PNG_COLOR_RGB (1)", fn,
                 r.png_color);
    int table[256];
    if (r.label_map && *r.label_map) {
        diffcl_status s = diffcl_label_map_parse(r.label_map, table, NULL);
        if (s != DIFFCL_OK) {
            dc_error_prefix("%s", fn);
            return s;
        }
    }
    diffcl_dataset *ds = NULL;
    DC_TRY(diffcl_dataset_open(ctx, root, opts, &ds));
    if (r.label_map && *r.label_map && !(ds->label_map = dc_strdup(r.label_map))) {
        diffcl_dataset_free(ds);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    r.struct_size = sizeof r;
    r.label_map = ds->label_map;
    ds->read = r;
    *out = ds;
    return DIFFCL_OK;
}
