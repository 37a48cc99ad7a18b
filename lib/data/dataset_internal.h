/* The data-set handle (internal). */
#ifndef DIFFCL_DATASET_INTERNAL_H
#define DIFFCL_DATASET_INTERNAL_H

#include "data/data_internal.h"

struct diffcl_dataset {
    diffcl_context *ctx;
    diffcl_layout layout;
    char *root;
    int64_t n;
    char **ids;
    char **img_paths;
    char **lab_paths;
    int *channels; /* channel files per case (nnU-Net) */
    diffcl_phantom_options phantom;
    int64_t first_case;
    diffcl_read_options read; /* PNG colour and label map (diffcl_dataset_open_ex) */
    char *label_map;          /* read.label_map's own copy */
};

/* diffcl_dataset_load into another context (the sampler's worker uses a private one).
 * Reads nothing but @p ds's immutable fields: safe from any thread. */
diffcl_status dc_dataset_load_in(const diffcl_dataset *ds, diffcl_context *ctx, int64_t i,
                                 diffcl_tensor **image, diffcl_tensor **label,
                                 diffcl_image_meta *meta);

#endif
