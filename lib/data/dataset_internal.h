/* The data-set handle (internal). */
#ifndef DIFFCL_DATASET_INTERNAL_H
#define DIFFCL_DATASET_INTERNAL_H

#include "data/data_internal.h"

/* What a folder's dataset.json says (dataset_json.c); all zero when it has none. */
typedef struct dc_dataset_json {
    int found;
    int n_classes;      /* background included; 0: no "labels" */
    char **class_names; /* [n_classes] */
    int n_channels;     /* 0: no "channel_names" / "modality" */
    char **channel_names;
    char *file_ending; /* or NULL */
    char **training;   /* MSD's "training" entries as case ids, or NULL */
    int64_t n_training;
} dc_dataset_json;

/* Read ROOT/dataset.json, if there is one. DIFFCL_ERR_FORMAT for a malformed file,
 * DIFFCL_ERR_UNSUPPORTED for region-based labels. */
diffcl_status dc_dataset_json_read(const char *root, dc_dataset_json *j);
void dc_dataset_json_free(dc_dataset_json *j);

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
    char *list_source;        /* the list in use ("train.list", "dataset.json", a path) or NULL */
    dc_dataset_json info;     /* the folder's dataset.json */
    diffcl_read_options read; /* PNG colour and label map (diffcl_dataset_open_ex) */
    char *label_map;          /* read.label_map's own copy */
    const struct diffcl_plan *plan; /* borrowed: applied by every load (dc_dataset_set_plan) */
};

/* Apply @p plan (borrowed; NULL: none) to every case @p ds loads from now on: image and label
 * as diffcl_plan_apply() makes them, the meta's spacing the plan's target. The trainer sets it
 * before it creates its sampler and keeps the plan alive as long as the data set. */
void dc_dataset_set_plan(diffcl_dataset *ds, const struct diffcl_plan *plan);

/* diffcl_dataset_load into another context (the sampler's worker uses a private one).
 * Reads nothing but @p ds's immutable fields: safe from any thread. */
diffcl_status dc_dataset_load_in(const diffcl_dataset *ds, diffcl_context *ctx, int64_t i,
                                 diffcl_tensor **image, diffcl_tensor **label,
                                 diffcl_image_meta *meta);

#endif
