/* dataset.json, as MSD and nnU-Net v2 write it: the classes and their names, the channels,
 * the file ending and (MSD) the training cases. Both forms are read:
 *   MSD:        "labels": {"0": "background", "1": "left atrium"}, "modality": {"0": "MRI"},
 *               "training": [{"image": "./imagesTr/la_003.nii.gz", "label": ...}, ...]
 *   nnU-Net v2: "labels": {"background": 0, "fg": 1}, "channel_names": {"0": "T1"},
 *               "file_ending": ".nii.gz"
 * nnU-Net's region-based labels ("whole tumour": [1, 2, 3]) are refused: the library trains one
 * softmax over exclusive classes. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/dataset_internal.h"

void dc_dataset_json_free(dc_dataset_json *j)
{
    diffcl_list_free(j->class_names, j->n_classes);
    diffcl_list_free(j->channel_names, j->n_channels);
    diffcl_list_free(j->training, j->n_training);
    free(j->file_ending);
    memset(j, 0, sizeof *j);
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t n = 0;
    for (size_t cap = 0;;) {
        if (n + 4097 > cap) {
            char *g = dc_realloc(buf, cap = 2 * cap + 8192);
            if (!g) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = g;
        }
        size_t got = fread(buf + n, 1, 4096, f);
        n += got;
        if (got < 4096) break;
    }
    fclose(f);
    buf[n] = 0;
    return buf;
}

/* names[k] for k = 0 .. n-1 from an object of "k": "name" (MSD) or "name": k (nnU-Net). */
static diffcl_status class_table(const char *path, const cJSON *labels, char ***names, int *n)
{
    int count = cJSON_GetArraySize(labels);
    *names = dc_calloc_raw((size_t)(count ? count : 1), sizeof **names);
    *n = count;
    if (!*names) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "dataset.json: out of memory");
    const cJSON *e;
    cJSON_ArrayForEach(e, labels)
    {
        const char *name = NULL;
        long k = -1;
        if (cJSON_IsString(e)) { /* MSD */
            char *end;
            k = strtol(e->string, &end, 10);
            if (*end) k = -1;
            name = e->valuestring;
        } else if (cJSON_IsNumber(e)) { /* nnU-Net v2 */
            k = (long)e->valuedouble;
            name = e->string;
        } else if (cJSON_IsArray(e)) {
            return dc_error(DIFFCL_ERR_UNSUPPORTED,
                            "%s: label \"%s\" is a region (a list of classes); region-based "
                            "training is not supported: give each class its own label",
                            path, e->string);
        }
        if (k < 0 || k >= count || !name || (*names)[k])
            return dc_error(DIFFCL_ERR_FORMAT,
                            "%s: \"labels\" must number the classes 0..%d once each (entry "
                            "\"%s\")",
                            path, count - 1, e->string);
        if (!((*names)[k] = dc_strdup(name)))
            return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "dataset.json: out of memory");
    }
    return DIFFCL_OK;
}

/* The names of an object {"0": "T1", "1": "T2"} in key order. */
static diffcl_status channel_table(const char *path, const cJSON *ch, char ***names, int *n)
{
    int count = cJSON_GetArraySize(ch);
    *names = dc_calloc_raw((size_t)(count ? count : 1), sizeof **names);
    *n = count;
    if (!*names) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "dataset.json: out of memory");
    const cJSON *e;
    cJSON_ArrayForEach(e, ch)
    {
        char *end;
        long k = strtol(e->string, &end, 10);
        if (*end || k < 0 || k >= count || !cJSON_IsString(e) || (*names)[k])
            return dc_error(DIFFCL_ERR_FORMAT,
                            "%s: channels must be numbered 0..%d once each (entry \"%s\")", path,
                            count - 1, e->string);
        if (!((*names)[k] = dc_strdup(e->valuestring)))
            return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "dataset.json: out of memory");
    }
    return DIFFCL_OK;
}

/* MSD's "training" entries as case ids: the image file's name less its ending. */
static diffcl_status training_ids(const char *path, const cJSON *tr, dc_dataset_json *j)
{
    int count = cJSON_GetArraySize(tr);
    j->training = dc_calloc_raw((size_t)(count ? count : 1), sizeof *j->training);
    if (!j->training) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "dataset.json: out of memory");
    const cJSON *e;
    cJSON_ArrayForEach(e, tr)
    {
        const cJSON *img = cJSON_GetObjectItemCaseSensitive(e, "image");
        if (!cJSON_IsString(img))
            return dc_error(DIFFCL_ERR_FORMAT, "%s: a \"training\" entry has no \"image\"", path);
        const char *base = strrchr(img->valuestring, '/');
        char *id = dc_strdup(base ? base + 1 : img->valuestring);
        if (!id) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "dataset.json: out of memory");
        char *dot = strstr(id, ".nii");
        if (dot) *dot = 0;
        j->training[j->n_training++] = id;
    }
    return DIFFCL_OK;
}

diffcl_status dc_dataset_json_read(const char *root, dc_dataset_json *j)
{
    memset(j, 0, sizeof *j);
    char path[4096];
    snprintf(path, sizeof path, "%s/dataset.json", root);
    FILE *probe = fopen(path, "rb");
    if (!probe) return DIFFCL_OK; /* none: nothing known */
    fclose(probe);
    char *text = read_all(path);
    if (!text) return dc_error(DIFFCL_ERR_IO, "%s: cannot read", path);
    cJSON *doc = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(doc)) {
        cJSON_Delete(doc);
        return dc_error(DIFFCL_ERR_FORMAT, "%s: not a JSON object", path);
    }
    j->found = 1;
    diffcl_status s = DIFFCL_OK;
    const cJSON *labels = cJSON_GetObjectItemCaseSensitive(doc, "labels");
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(doc, "channel_names");
    if (!ch) ch = cJSON_GetObjectItemCaseSensitive(doc, "modality");
    const cJSON *ending = cJSON_GetObjectItemCaseSensitive(doc, "file_ending");
    const cJSON *training = cJSON_GetObjectItemCaseSensitive(doc, "training");
    if (cJSON_IsObject(labels)) s = class_table(path, labels, &j->class_names, &j->n_classes);
    if (s == DIFFCL_OK && cJSON_IsObject(ch))
        s = channel_table(path, ch, &j->channel_names, &j->n_channels);
    if (s == DIFFCL_OK && cJSON_IsString(ending) &&
        !(j->file_ending = dc_strdup(ending->valuestring)))
        s = dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "dataset.json: out of memory");
    if (s == DIFFCL_OK && cJSON_IsArray(training) && cJSON_GetArraySize(training) > 0)
        s = training_ids(path, training, j);
    cJSON_Delete(doc);
    if (s != DIFFCL_OK) dc_dataset_json_free(j);
    return s;
}
