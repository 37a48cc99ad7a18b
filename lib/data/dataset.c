/* Data-set layouts (phantom, PNG, LA/BraTS/Pancreas h5, MSD and nnU-Net NIfTI), case lists
 * and labeled/unlabeled splits. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/dataset_internal.h"
#include "diffcl/plan.h"
#include "tensor/tensor_internal.h"

/* ---------------------------------------------------------------- lists ---- */

void diffcl_list_free(char **ids, int64_t n)
{
    if (!ids) return;
    for (int64_t i = 0; i < n; i++) free(ids[i]);
    free(ids);
}

static int push_str(char ***arr, int64_t *n, int64_t *cap, const char *s)
{
    if (*n == *cap) {
        int64_t nc = *cap ? *cap * 2 : 16;
        char **a = dc_realloc(*arr, sizeof(char *) * (size_t)nc);
        if (!a) return -1;
        *arr = a;
        *cap = nc;
    }
    char *c = dc_strdup(s);
    if (!c) return -1;
    (*arr)[(*n)++] = c;
    return 0;
}

diffcl_status diffcl_list_read(const char *path, char ***ids, int64_t *n)
{
    DC_CHECK_ARG(path && ids && n, "diffcl_list_read: path, ids and n must not be NULL");
    *ids = NULL;
    *n = 0;
    FILE *fp = fopen(path, "r");
    if (!fp)
        return dc_error(DIFFCL_ERR_IO, "diffcl_list_read: cannot open '%s': %s", path,
                        strerror(errno));
    char line[4096];
    int64_t cap = 0;
    while (fgets(line, sizeof line, fp)) {
        char *s = line, *e;
        while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n') s++;
        e = s + strlen(s);
        while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n')) *--e = 0;
        if (!*s || *s == '#') continue;
        if (push_str(ids, n, &cap, s)) {
            fclose(fp);
            diffcl_list_free(*ids, *n);
            *ids = NULL;
            *n = 0;
            return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "diffcl_list_read: out of memory");
        }
    }
    fclose(fp);
    return DIFFCL_OK;
}

/* -------------------------------------------------------------- layouts ---- */

static const char *layout_names[] = {"auto", "phantom", "png", "h5", "msd", "nnunet"};

const char *diffcl_layout_name(diffcl_layout layout)
{
    return (int)layout >= 0 && (int)layout <= 5 ? layout_names[layout] : "?";
}

diffcl_status diffcl_layout_parse(const char *name, diffcl_layout *out)
{
    DC_CHECK_ARG(name && out, "diffcl_layout_parse: name and out must not be NULL");
    for (int i = 0; i <= 5; i++)
        if (!strcmp(name, layout_names[i])) {
            *out = (diffcl_layout)i;
            return DIFFCL_OK;
        }
    if (!strcmp(name, "la") || !strcmp(name, "la-h5") || !strcmp(name, "brats") ||
        !strcmp(name, "pancreas")) {
        *out = DIFFCL_LAYOUT_H5;
        return DIFFCL_OK;
    }
    return dc_error(DIFFCL_ERR_INVALID_ARGUMENT,
                    "unknown data-set layout '%s' (phantom, png, la-h5, msd, nnunet, auto)", name);
}

void diffcl_dataset_options_init(diffcl_dataset_options *opts)
{
    if (!opts) return;
    diffcl_dataset_options d = DIFFCL_DATASET_OPTIONS_INIT;
    *opts = d;
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int ends_with(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n > m && !strcmp(s + n - m, suf);
}

static char *join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *s = dc_malloc(n);
    if (s) snprintf(s, n, "%s/%s", a, b);
    return s;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Read case list @p list: as given when absolute or present in the current folder, else
 * relative to the data root (the data set's list and the labeled list resolve alike). */
static diffcl_status read_case_list(const char *fn, const char *root, const char *list, char ***ids,
                                    int64_t *n)
{
    *ids = NULL;
    *n = 0;
    if (list[0] == '/' || is_file(list) || !root || !root[0]) return diffcl_list_read(list, ids, n);
    char *p = join(root, list);
    if (!p) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    diffcl_status s = is_file(p) ? diffcl_list_read(p, ids, n)
                                 : dc_error(DIFFCL_ERR_IO,
                                            "%s: no case list '%s' (looked in the "
                                            "current folder and in '%s')",
                                            fn, list, root);
    free(p);
    return s;
}

/* Users paste file names into lists: drop a known image extension (and nnU-Net's channel
 * suffix _0000 with it) so that "la_004.nii.gz" names case "la_004". */
static void strip_file_ext(diffcl_layout layout, char *id)
{
    static const char *const exts[] = {".nii.gz", ".nii", ".png", ".h5"};
    for (size_t k = 0; k < sizeof exts / sizeof exts[0]; k++) {
        if (!ends_with(id, exts[k])) continue;
        size_t base = strlen(id) - strlen(exts[k]);
        if (layout == DIFFCL_LAYOUT_NNUNET && base > 5 && !strncmp(id + base - 5, "_0000", 5))
            base -= 5;
        id[base] = 0;
        return;
    }
}

/* The error for a case whose image (or label) file is missing, naming the folder and the
 * file names looked for. */
static diffcl_status missing_case_file(const diffcl_dataset *ds, const char *id, int label,
                                       const char *list)
{
    const char *what = label ? "label" : "image", *sub, *chan = "";
    int nii = 1;
    switch (ds->layout) {
    case DIFFCL_LAYOUT_PNG:
        sub = label ? "labels" : "images";
        nii = 0;
        break;
    case DIFFCL_LAYOUT_NNUNET:
        sub = label ? "labelsTr" : "imagesTr";
        chan = label ? "" : "_0000";
        break;
    default: sub = label ? "labelsTr" : "imagesTr";
    }
    char looked[2200];
    if (nii)
        snprintf(looked, sizeof looked, "%.1000s%s.nii.gz, %.1000s%s.nii", id, chan, id, chan);
    else
        snprintf(looked, sizeof looked, "%.1000s.png", id);
    return dc_error(DIFFCL_ERR_NOT_FOUND,
                    "no %s file for case '%s' in '%s/%s' (looked for %s)%s%s%s", what, id, ds->root,
                    sub, looked, list ? "; the id comes from '" : "", list ? list : "",
                    list ? "'" : "");
}

/* Does folder @p dir hold a (non-hidden) file ending in @p suffix? */
static int dir_has(const char *dir, const char *suffix, const char *also)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    int found = 0;
    while (!found && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (ends_with(e->d_name, suffix) && (!also || strstr(e->d_name, also))) found = 1;
    }
    closedir(d);
    return found;
}

/* The layout of the folder @p root: DIFFCL_LAYOUT_AUTO when none is recognised, -1 when out of
 * memory (a path could not be made). */
static int detect_layout(const char *root)
{
    char *p = join(root, "imagesTr");
    if (!p) return -1;
    diffcl_layout l = DIFFCL_LAYOUT_AUTO;
    if (is_dir(p))
        l = dir_has(p, "_0000.nii.gz", NULL) || dir_has(p, "_0000.nii", NULL) ? DIFFCL_LAYOUT_NNUNET
                                                                              : DIFFCL_LAYOUT_MSD;
    free(p);
    if (l != DIFFCL_LAYOUT_AUTO) return l;
    if (!(p = join(root, "images"))) return -1;
    if (is_dir(p) && dir_has(p, ".png", NULL)) l = DIFFCL_LAYOUT_PNG;
    free(p);
    if (l != DIFFCL_LAYOUT_AUTO) return l;
    if (!(p = join(root, "data"))) return -1;
    if (dir_has(root, ".h5", NULL) || dir_has(p, ".h5", NULL)) l = DIFFCL_LAYOUT_H5;
    free(p);
    if (l != DIFFCL_LAYOUT_AUTO) return l;
    /* LA: <id>/mri_norm2.h5 */
    DIR *d = opendir(root);
    int oom = 0;
    if (d) {
        struct dirent *e;
        while (l == DIFFCL_LAYOUT_AUTO && !oom && (e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            char *c = join(root, e->d_name), *f = c ? join(c, "mri_norm2.h5") : NULL;
            if (!f) oom = 1;
            if (f && is_file(f)) l = DIFFCL_LAYOUT_H5;
            free(c);
            free(f);
        }
        closedir(d);
    }
    return oom ? -1 : (int)l;
}

/* Ids found in the folder for @p layout (sorted). */
static diffcl_status scan_ids(const char *root, diffcl_layout layout, char ***ids, int64_t *n)
{
    int64_t cap = 0;
    *ids = NULL;
    *n = 0;
    const char *sub = layout == DIFFCL_LAYOUT_PNG                                       ? "images"
                      : (layout == DIFFCL_LAYOUT_MSD || layout == DIFFCL_LAYOUT_NNUNET) ? "imagesTr"
                                                                                        : NULL;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1 && layout != DIFFCL_LAYOUT_H5) break;
        char *dir = sub ? join(root, sub) : (pass == 0 ? dc_strdup(root) : join(root, "data"));
        if (!dir) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "out of memory");
        DIR *d = opendir(dir);
        if (!d) {
            free(dir);
            if (layout == DIFFCL_LAYOUT_H5 && pass == 1) break;
            return dc_error(DIFFCL_ERR_IO, "cannot list '%s/%s': %s", root, sub ? sub : "",
                            strerror(errno));
        }
        struct dirent *e;
        int bad = 0;
        while (!bad && (e = readdir(d))) {
            const char *nm = e->d_name;
            if (nm[0] == '.') continue; /* also MSD's macOS "._x.nii.gz" resource files */
            char id[1024];
            id[0] = 0;
            size_t L = strlen(nm);
            if (L >= sizeof id) continue;
            if (layout == DIFFCL_LAYOUT_PNG && ends_with(nm, ".png")) {
                snprintf(id, sizeof id, "%.*s", (int)(L - 4), nm);
            } else if (layout == DIFFCL_LAYOUT_MSD) {
                if (ends_with(nm, ".nii.gz"))
                    snprintf(id, sizeof id, "%.*s", (int)(L - 7), nm);
                else if (ends_with(nm, ".nii"))
                    snprintf(id, sizeof id, "%.*s", (int)(L - 4), nm);
            } else if (layout == DIFFCL_LAYOUT_NNUNET) {
                const char *ext = ends_with(nm, ".nii.gz") ? ".nii.gz"
                                  : ends_with(nm, ".nii")  ? ".nii"
                                                           : NULL;
                size_t base = ext ? L - strlen(ext) : 0;
                if (ext && base > 5 && !strncmp(nm + base - 5, "_0000", 5))
                    snprintf(id, sizeof id, "%.*s", (int)(base - 5), nm);
            } else if (layout == DIFFCL_LAYOUT_H5) {
                if (ends_with(nm, ".h5"))
                    snprintf(id, sizeof id, "%.*s", (int)(L - 3), nm);
                else if (pass == 0) {
                    char *c = join(dir, nm), *f = c ? join(c, "mri_norm2.h5") : NULL;
                    if (f && is_file(f)) snprintf(id, sizeof id, "%s", nm);
                    free(c);
                    free(f);
                }
            }
            if (id[0] && push_str(ids, n, &cap, id)) bad = 1;
        }
        closedir(d);
        free(dir);
        if (bad) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "out of memory");
    }
    if (*n > 1) qsort(*ids, (size_t)*n, sizeof(char *), cmp_str);
    return DIFFCL_OK;
}

/* Resolve the image and label paths of case @p id. */
static diffcl_status case_paths(const diffcl_dataset *ds, const char *id, char **img, char **lab,
                                int *channels)
{
    char buf[4096];
    *img = *lab = NULL;
    *channels = 1;
    const char *r = ds->root;
    switch (ds->layout) {
    case DIFFCL_LAYOUT_PNG:
        snprintf(buf, sizeof buf, "%s/images/%s.png", r, id);
        *img = dc_strdup(buf);
        snprintf(buf, sizeof buf, "%s/labels/%s.png", r, id);
        *lab = dc_strdup(buf);
        break;
    case DIFFCL_LAYOUT_H5: {
        const char *pats[] = {"%s/%s/mri_norm2.h5", "%s/%s.h5",           "%s/data/%s.h5",
                              "%s/%s_norm.h5",      "%s/data/%s_norm.h5", "%s/%s"};
        for (size_t k = 0; k < sizeof pats / sizeof pats[0]; k++) {
            snprintf(buf, sizeof buf, pats[k], r, id);
            if (is_file(buf)) break;
            buf[0] = 0;
        }
        if (!buf[0])
            return dc_error(DIFFCL_ERR_NOT_FOUND,
                            "case '%s': no h5 file (tried %s/%s/mri_norm2.h5, %s/%s.h5, "
                            "%s/data/%s.h5, %s/%s_norm.h5)",
                            id, r, id, r, id, r, id, r, id);
        *img = dc_strdup(buf);
        *lab = dc_strdup(buf);
        break;
    }
    case DIFFCL_LAYOUT_MSD:
        snprintf(buf, sizeof buf, "%s/imagesTr/%s.nii.gz", r, id);
        if (!is_file(buf)) snprintf(buf, sizeof buf, "%s/imagesTr/%s.nii", r, id);
        *img = dc_strdup(buf);
        snprintf(buf, sizeof buf, "%s/labelsTr/%s.nii.gz", r, id);
        if (!is_file(buf)) snprintf(buf, sizeof buf, "%s/labelsTr/%s.nii", r, id);
        *lab = dc_strdup(buf);
        break;
    case DIFFCL_LAYOUT_NNUNET: {
        snprintf(buf, sizeof buf, "%s/imagesTr/%s_0000.nii.gz", r, id);
        const char *ext = ".nii.gz";
        if (!is_file(buf)) {
            snprintf(buf, sizeof buf, "%s/imagesTr/%s_0000.nii", r, id);
            ext = ".nii";
        }
        *img = dc_strdup(buf);
        for (int c = 1; c < 1000; c++) {
            snprintf(buf, sizeof buf, "%s/imagesTr/%s_%04d%s", r, id, c, ext);
            if (!is_file(buf)) break;
            (*channels)++;
        }
        snprintf(buf, sizeof buf, "%s/labelsTr/%s%s", r, id, ext);
        if (!is_file(buf))
            snprintf(buf, sizeof buf, "%s/labelsTr/%s%s", r, id,
                     strcmp(ext, ".nii") ? ".nii" : ".nii.gz");
        *lab = dc_strdup(buf);
        break;
    }
    default: *img = dc_strdup(""); *lab = dc_strdup("");
    }
    if (!*img || !*lab) {
        free(*img);
        free(*lab);
        *img = *lab = NULL;
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "out of memory");
    }
    return DIFFCL_OK;
}

void diffcl_dataset_free(diffcl_dataset *ds)
{
    if (!ds) return;
    diffcl_list_free(ds->ids, ds->n);
    diffcl_list_free(ds->img_paths, ds->n);
    diffcl_list_free(ds->lab_paths, ds->n);
    free(ds->channels);
    free(ds->list_source);
    dc_dataset_json_free(&ds->info);
    free(ds->root);
    free(ds->label_map);
    free(ds);
}

/* ---------------------------------------------------------- which cases ---- */

static int is_test_list(const char *list)
{
    const char *base = strrchr(list, '/');
    return !strcmp(base ? base + 1 : list, "test.list");
}

/* The ids of ROOT/test.list (extensions dropped), or none when the folder has no such list. */
static diffcl_status test_ids(const char *fn, const diffcl_dataset *ds, char ***ids, int64_t *n)
{
    *ids = NULL;
    *n = 0;
    char *p = join(ds->root, "test.list");
    if (!p) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    diffcl_status s = is_file(p) ? diffcl_list_read(p, ids, n) : DIFFCL_OK;
    free(p);
    for (int64_t i = 0; i < *n && s == DIFFCL_OK; i++) strip_file_ext(ds->layout, (*ids)[i]);
    return s;
}

/* The folder's test cases (test.list) are never training cases: an explicit or default list
 * that names one is an error; from a folder scan they are left out. */
static diffcl_status keep_out_test_cases(const char *fn, diffcl_dataset *ds, int from_scan)
{
    char **test = NULL;
    int64_t n_test = 0, kept = 0, dropped = 0;
    DC_TRY(test_ids(fn, ds, &test, &n_test));
    diffcl_status s = DIFFCL_OK;
    for (int64_t i = 0; i < ds->n && s == DIFFCL_OK; i++) {
        int in_test = 0;
        for (int64_t k = 0; k < n_test && !in_test; k++) in_test = !strcmp(ds->ids[i], test[k]);
        if (in_test && !from_scan)
            s = dc_error(DIFFCL_ERR_INVALID_ARGUMENT,
                         "%s: case '%s' is in both the training list %s and the test list "
                         "%s/test.list",
                         fn, ds->ids[i], ds->list_source, ds->root);
        else if (in_test) {
            free(ds->ids[i]);
            dropped++;
        } else {
            ds->ids[kept++] = ds->ids[i];
        }
    }
    if (s == DIFFCL_OK) ds->n = kept;
    if (s == DIFFCL_OK && dropped)
        dc_log(ds->ctx, DIFFCL_LOG_INFO, "%lld case(s) of %s/test.list left out of the data set",
               (long long)dropped, ds->root);
    diffcl_list_free(test, n_test);
    return s;
}

/* The cases of a folder data set: @p list when given; else the folder's own split, its
 * train.list or (MSD) dataset.json's training entries; else every case found, less those of
 * test.list. ds->list_source says which. */
static diffcl_status choose_cases(const char *fn, diffcl_dataset *ds, const char *list)
{
    char *train = join(ds->root, "train.list");
    if (!train) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    const char *source = list                      ? list
                         : is_file(train)          ? "train.list"
                         : ds->info.n_training > 0 ? "dataset.json"
                                                   : NULL;
    free(train);
    diffcl_status s = DIFFCL_OK;
    if (source && !(ds->list_source = dc_strdup(source)))
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    if (source && strcmp(source, "dataset.json")) {
        s = read_case_list(fn, ds->root, source, &ds->ids, &ds->n);
        for (int64_t i = 0; i < ds->n && s == DIFFCL_OK; i++)
            strip_file_ext(ds->layout, ds->ids[i]);
    } else if (source) { /* MSD's training entries, in their order */
        ds->ids = dc_calloc_raw((size_t)ds->info.n_training, sizeof *ds->ids);
        if (!ds->ids) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
        for (int64_t i = 0; i < ds->info.n_training; i++)
            if ((ds->ids[ds->n] = dc_strdup(ds->info.training[i]))) ds->n++;
        if (ds->n < ds->info.n_training)
            return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    } else {
        s = scan_ids(ds->root, ds->layout, &ds->ids, &ds->n);
    }
    /* a test list given on purpose (to open the test cases) is not checked against itself */
    if (s == DIFFCL_OK && !(list && is_test_list(list))) s = keep_out_test_cases(fn, ds, !source);
    if (s == DIFFCL_OK && ds->n == 0)
        s = dc_error(DIFFCL_ERR_NOT_FOUND, "%s: '%s' (%s layout) holds no case%s%s", fn, ds->root,
                     diffcl_layout_name(ds->layout), source ? " in " : "", source ? source : "");
    return s;
}

diffcl_status diffcl_dataset_open(diffcl_context *ctx, const char *root,
                                  const diffcl_dataset_options *opts, diffcl_dataset **out)
{
    const char *fn = "diffcl_dataset_open";
    DC_CHECK_ARG(ctx && out, "%s: ctx and out must not be NULL", fn);
    *out = NULL;
    diffcl_dataset_options o = DIFFCL_DATASET_OPTIONS_INIT;
    DC_TRY(dc_options_read(&o, sizeof o, opts, offsetof(diffcl_dataset_options, n_cases), 0, fn));
    diffcl_layout layout = (diffcl_layout)o.layout;
    DC_CHECK_ARG(o.layout >= 0 && o.layout <= DIFFCL_LAYOUT_NNUNET, "%s: unknown layout %d", fn,
                 o.layout);
    if (layout == DIFFCL_LAYOUT_AUTO && !root) layout = DIFFCL_LAYOUT_PHANTOM;
    if (layout != DIFFCL_LAYOUT_PHANTOM) {
        DC_CHECK_ARG(root, "%s: a root folder is required for the %s layout", fn,
                     diffcl_layout_name(layout));
        if (!is_dir(root)) return dc_error(DIFFCL_ERR_IO, "%s: '%s' is not a folder", fn, root);
        if (layout == DIFFCL_LAYOUT_AUTO) {
            int d = detect_layout(root);
            if (d < 0) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
            layout = (diffcl_layout)d;
        }
        if (layout == DIFFCL_LAYOUT_AUTO)
            return dc_error(DIFFCL_ERR_FORMAT,
                            "%s: '%s': no known layout (expected imagesTr/ (MSD, nnU-Net), "
                            "images/*.png, *.h5, data/*.h5 or <case>/mri_norm2.h5)",
                            fn, root);
        if (layout == DIFFCL_LAYOUT_H5 && !diffcl_io_has_hdf5())
            return dc_error(DIFFCL_ERR_UNSUPPORTED,
                            "%s: '%s' is an h5 data set, but this "
                            "libdiffcl was built without HDF5",
                            fn, root);
        if ((layout == DIFFCL_LAYOUT_MSD || layout == DIFFCL_LAYOUT_NNUNET) &&
            !diffcl_io_has_nifti())
            return dc_error(DIFFCL_ERR_UNSUPPORTED,
                            "%s: '%s' is a NIfTI data set, but this "
                            "libdiffcl was built without NIfTI",
                            fn, root);
    }
    diffcl_dataset *ds = dc_calloc_raw(1, sizeof *ds);
    if (!ds) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    ds->ctx = ctx;
    ds->layout = layout;
    ds->phantom = o.phantom;
    ds->first_case = o.first_case;
    ds->root = dc_strdup(root ? root : "");
    if (!ds->root) {
        diffcl_dataset_free(ds);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    diffcl_status s = DIFFCL_OK;
    if (layout == DIFFCL_LAYOUT_PHANTOM) {
        if (o.n_cases < 1 || o.first_case < 0 || o.first_case + o.n_cases > (int64_t)UINT32_MAX) {
            diffcl_dataset_free(ds);
            return dc_error(DIFFCL_ERR_INVALID_ARGUMENT,
                            "%s: phantom n_cases %lld / first_case %lld", fn, (long long)o.n_cases,
                            (long long)o.first_case);
        }
        int64_t cap = 0;
        for (int64_t i = 0; i < o.n_cases && s == DIFFCL_OK; i++) {
            char id[64];
            snprintf(id, sizeof id, "phantom_%03lld", (long long)(o.first_case + i));
            if (push_str(&ds->ids, &ds->n, &cap, id))
                s = dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
        }
        if (o.list) {
            /* a list selects phantom cases by id */
            char **want = NULL;
            int64_t nw = 0;
            s = diffcl_list_read(o.list, &want, &nw);
            if (s == DIFFCL_OK) {
                for (int64_t i = 0; i < nw && s == DIFFCL_OK; i++) {
                    unsigned long long k;
                    char tail;
                    if (sscanf(want[i], "phantom_%llu%c", &k, &tail) != 1)
                        s = dc_error(DIFFCL_ERR_FORMAT, "%s: '%s': '%s' is not a phantom case id",
                                     fn, o.list, want[i]);
                }
                if (s == DIFFCL_OK) {
                    diffcl_list_free(ds->ids, ds->n);
                    ds->ids = want;
                    ds->n = nw;
                    ds->first_case = 0;
                    want = NULL;
                }
                diffcl_list_free(want, nw);
            }
        }
    } else {
        s = dc_dataset_json_read(root, &ds->info);
        if (s == DIFFCL_OK) s = choose_cases(fn, ds, o.list);
    }
    if (s == DIFFCL_OK) {
        ds->img_paths = dc_calloc_raw((size_t)(ds->n ? ds->n : 1), sizeof(char *));
        ds->lab_paths = dc_calloc_raw((size_t)(ds->n ? ds->n : 1), sizeof(char *));
        ds->channels = dc_calloc_raw((size_t)(ds->n ? ds->n : 1), sizeof(int));
        if (!ds->img_paths || !ds->lab_paths || !ds->channels)
            s = dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
        for (int64_t i = 0; i < ds->n && s == DIFFCL_OK; i++) {
            if (layout == DIFFCL_LAYOUT_PHANTOM) {
                ds->img_paths[i] = dc_strdup("");
                ds->lab_paths[i] = dc_strdup("");
                ds->channels[i] = o.phantom.channels;
                continue;
            }
            s = case_paths(ds, ds->ids[i], &ds->img_paths[i], &ds->lab_paths[i], &ds->channels[i]);
            if (s == DIFFCL_OK && !is_file(ds->img_paths[i]))
                s = missing_case_file(ds, ds->ids[i], 0, o.list);
        }
    }
    if (s != DIFFCL_OK) {
        diffcl_dataset_free(ds);
        return s;
    }
    *out = ds;
    return DIFFCL_OK;
}

int64_t diffcl_dataset_size(const diffcl_dataset *ds)
{
    return ds ? ds->n : 0;
}

diffcl_layout diffcl_dataset_layout(const diffcl_dataset *ds)
{
    return ds ? ds->layout : DIFFCL_LAYOUT_AUTO;
}

const char *diffcl_dataset_case_id(const diffcl_dataset *ds, int64_t i)
{
    return ds && i >= 0 && i < ds->n ? ds->ids[i] : NULL;
}

const char *diffcl_dataset_list(const diffcl_dataset *ds)
{
    return ds ? ds->list_source : NULL;
}

int diffcl_dataset_num_classes(const diffcl_dataset *ds)
{
    return ds ? ds->info.n_classes : 0;
}

const char *diffcl_dataset_class_name(const diffcl_dataset *ds, int k)
{
    return ds && k >= 0 && k < ds->info.n_classes ? ds->info.class_names[k] : NULL;
}

const char *diffcl_dataset_channel_name(const diffcl_dataset *ds, int c)
{
    return ds && c >= 0 && c < ds->info.n_channels ? ds->info.channel_names[c] : NULL;
}

const char *diffcl_dataset_image_path(const diffcl_dataset *ds, int64_t i)
{
    return ds && i >= 0 && i < ds->n ? ds->img_paths[i] : NULL;
}

int64_t diffcl_dataset_find(const diffcl_dataset *ds, const char *id)
{
    if (!ds || !id) return -1;
    for (int64_t i = 0; i < ds->n; i++)
        if (!strcmp(ds->ids[i], id)) return i;
    return -1;
}

/* To F32 contiguous (any dtype), and prepend a channel axis. */
static diffcl_status as_image(diffcl_tensor **t, int add_channel, const char *path)
{
    diffcl_tensor *f = NULL;
    diffcl_status s = diffcl_tensor_to_dtype(*t, DIFFCL_F32, &f);
    diffcl_tensor_free(*t);
    *t = NULL;
    if (s != DIFFCL_OK) return s;
    diffcl_tensor *c = dc_contiguous(f);
    diffcl_tensor_free(f);
    if (!c) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "out of memory reading '%s'", path);
    if (add_channel) {
        s = diffcl_tensor_unsqueeze(c, 0, t);
        diffcl_tensor_free(c);
        return s;
    }
    *t = c;
    return DIFFCL_OK;
}

/* To U8 class indices, checking the values. */
static diffcl_status as_label(diffcl_tensor **t, const char *path)
{
    diffcl_tensor *in = *t;
    if (in->dtype == DIFFCL_U8) return DIFFCL_OK;
    diffcl_tensor *d = NULL;
    diffcl_status s = diffcl_tensor_to_dtype(in, DIFFCL_F64, &d);
    if (s != DIFFCL_OK) return s;
    diffcl_tensor *u = dc_tensor_empty(in->ctx, DIFFCL_U8, in->ndim, in->shape);
    diffcl_tensor *c = dc_contiguous(d);
    diffcl_tensor_free(d);
    if (!u || !c) {
        diffcl_tensor_free(u);
        diffcl_tensor_free(c);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "out of memory reading '%s'", path);
    }
    int64_t n = dc_numel(c);
    for (int64_t i = 0; i < n; i++) {
        double v = dc_f64(c)[i];
        if (!(v >= 0 && v <= 255 && v == floor(v))) {
            diffcl_tensor_free(u);
            diffcl_tensor_free(c);
            return dc_error(DIFFCL_ERR_FORMAT,
                            "'%s': label element %lld is %g (class indices 0..255 expected)", path,
                            (long long)i, v);
        }
        ((uint8_t *)dc_data(u))[i] = (uint8_t)v;
    }
    diffcl_tensor_free(c);
    diffcl_tensor_free(in);
    *t = u;
    return DIFFCL_OK;
}

static int spatial_match(const diffcl_tensor *img, const diffcl_tensor *lab)
{
    if (lab->ndim != img->ndim - 1) return 0;
    for (int a = 0; a < lab->ndim; a++)
        if (lab->shape[a] != img->shape[a + 1]) return 0;
    return 1;
}

/* One case's image [C, ...] and (when @p lab is not NULL) label, by layout. */
static diffcl_status load_phantom(const diffcl_dataset *ds, diffcl_context *ctx, int64_t i,
                                  diffcl_tensor **img, diffcl_tensor **lab, diffcl_image_meta *m)
{
    unsigned long long k = (unsigned long long)(ds->first_case + i);
    if (ds->first_case == 0 && sscanf(ds->ids[i], "phantom_%llu", &k) != 1)
        k = (unsigned long long)i;
    m->ndim = ds->phantom.ndim;
    return diffcl_phantom_case(ctx, &ds->phantom, (int64_t)k, img, lab);
}

static diffcl_status load_png(const diffcl_dataset *ds, diffcl_context *ctx, const char *ip,
                              const char *lp, diffcl_tensor **img, diffcl_tensor **lab,
                              diffcl_image_meta *m)
{
    const diffcl_read_options *ro = ds->read.struct_size ? &ds->read : NULL; /* NULL: 0.1.0 */
    m->ndim = 2;
    DC_TRY(diffcl_png_read_image_ex(ctx, ip, ro, img, NULL)); /* [C, H, W] */
    return lab ? diffcl_png_read_label_ex(ctx, lp, ro, lab) : DIFFCL_OK;
}

static diffcl_status load_h5(diffcl_context *ctx, const char *ip, const char *lp,
                             diffcl_tensor **img, diffcl_tensor **lab, diffcl_image_meta *m)
{
    DC_TRY(diffcl_h5_read(ctx, ip, "image", img));
    if ((*img)->ndim < 2 || (*img)->ndim > 4)
        return dc_error(DIFFCL_ERR_FORMAT, "'%s': dataset 'image' %s: expected 2 to 4 axes", ip,
                        dc_shape_str(*img));
    int add = (*img)->ndim <= 3; /* a 4-D image is already [C, D, H, W] */
    m->ndim = add ? (*img)->ndim : 3;
    DC_TRY(as_image(img, add, ip));
    if (!lab) return DIFFCL_OK;
    DC_TRY(diffcl_h5_read(ctx, lp, "label", lab));
    return as_label(lab, lp);
}

/* The channel files of an MSD / nnU-Net case: <id>.nii.gz, then <id>_0001.nii.gz ... (the
 * first file's name without its _0000), each 2-D or 3-D and of one shape. */
static diffcl_status read_channel_files(const diffcl_dataset *ds, diffcl_context *ctx, int64_t i,
                                        int C, diffcl_tensor **chs, int *got, diffcl_image_meta *m)
{
    const char *ip = ds->img_paths[i];
    for (int c = 0; c < C; c++) {
        char buf[4096];
        const char *path = ip;
        if (c > 0) {
            size_t L = strlen(ip);
            const char *ext = ends_with(ip, ".nii.gz") ? ".nii.gz" : ".nii";
            snprintf(buf, sizeof buf, "%.*s_%04d%s", (int)(L - strlen(ext) - 5), ip, c, ext);
            path = buf;
        }
        diffcl_tensor *t = NULL;
        DC_TRY(diffcl_nifti_read(ctx, path, DIFFCL_NIFTI_IMAGE, &t, c == 0 ? m : NULL));
        chs[(*got)++] = t;
        if (t->ndim < 2 || t->ndim > 4 || (C > 1 && t->ndim == 4))
            return dc_error(DIFFCL_ERR_FORMAT, "'%s': image %s: expected 2 or 3 axes%s", path,
                            dc_shape_str(t), C > 1 ? "" : " (or 4 with channels last)");
        if (c > 0 && !dc_same_shape(t, chs[0])) {
            char a[64];
            snprintf(a, sizeof a, "%s", dc_shape_str(chs[0]));
            return dc_error(DIFFCL_ERR_FORMAT,
                            "case '%s': channel file '%s' has shape %s, channel 0 %s", ds->ids[i],
                            path, dc_shape_str(t), a);
        }
    }
    return DIFFCL_OK;
}

/* The channels as one [C, ...] image: stacked files, or an MSD 4-D file (x, y, z, c) moved
 * to [c, x, y, z]. */
static diffcl_status stack_channels(diffcl_tensor **chs, int C, diffcl_tensor **img)
{
    diffcl_tensor *x = chs[0];
    if (C == 1 && x->ndim == 4) {
        int perm[4] = {3, 0, 1, 2};
        diffcl_tensor *p = NULL;
        DC_TRY(diffcl_tensor_permute(x, perm, &p));
        *img = dc_contiguous(p);
        diffcl_tensor_free(p);
        return *img ? DIFFCL_OK : dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "out of memory");
    }
    diffcl_tensor *u[64] = {NULL};
    diffcl_status s = DIFFCL_OK;
    int k = 0;
    for (; k < C && s == DIFFCL_OK; k++) s = diffcl_tensor_unsqueeze(chs[k], 0, &u[k]);
    if (s == DIFFCL_OK) s = diffcl_tensor_concat(u, C, 0, img);
    for (int j = 0; j < k; j++) diffcl_tensor_free(u[j]);
    return s;
}

static diffcl_status load_nifti_case(const diffcl_dataset *ds, diffcl_context *ctx, int64_t i,
                                     diffcl_tensor **img, diffcl_tensor **lab, diffcl_image_meta *m)
{
    int C = ds->channels[i];
    if (C > 64)
        return dc_error(DIFFCL_ERR_FORMAT, "case '%s': %d channel files (64 at most)", ds->ids[i],
                        C);
    diffcl_tensor *chs[64];
    int got = 0;
    diffcl_status s = read_channel_files(ds, ctx, i, C, chs, &got, m);
    if (s == DIFFCL_OK) s = stack_channels(chs, C, img);
    for (int c = 0; c < got; c++) diffcl_tensor_free(chs[c]);
    if (s == DIFFCL_OK && lab)
        s = diffcl_nifti_read(ctx, ds->lab_paths[i], DIFFCL_NIFTI_LABEL, lab, NULL);
    return s;
}

/* Image [C, x, y, z], label and geometry turned to RAS+ (diffcl_read_options.reorient_ras);
 * on failure the inputs are freed. */
static diffcl_status to_ras(diffcl_tensor **img, diffcl_tensor **lab, diffcl_image_meta *m)
{
    diffcl_orientation o;
    diffcl_tensor *ri = NULL, *rl = NULL;
    int64_t shape[3] = {(*img)->shape[1], (*img)->shape[2], (*img)->shape[3]};
    diffcl_status s = (*img)->ndim == 4 ? diffcl_orientation_to_ras(m, &o)
                                        : dc_error(DIFFCL_ERR_SHAPE, "reorient: not a 3-D image");
    DC_STEP(diffcl_reorient(*img, &o, 0, &ri));
    if (*lab) DC_STEP(diffcl_reorient(*lab, &o, 0, &rl));
    if (s == DIFFCL_OK) diffcl_reorient_meta(m, shape, &o, m);
    diffcl_tensor_free(*img);
    diffcl_tensor_free(*lab);
    *img = ri;
    *lab = rl;
    if (s != DIFFCL_OK) {
        diffcl_tensor_free(ri);
        diffcl_tensor_free(rl);
        *img = *lab = NULL;
    }
    return s;
}

diffcl_status dc_dataset_load_in(const diffcl_dataset *ds, diffcl_context *ctx, int64_t i,
                                 diffcl_tensor **image, diffcl_tensor **label,
                                 diffcl_image_meta *meta)
{
    const char *fn = "diffcl_dataset_load";
    DC_CHECK_ARG(ds && image, "%s: ds and image must not be NULL", fn);
    *image = NULL;
    if (label) *label = NULL;
    DC_CHECK_ARG(i >= 0 && i < ds->n, "%s: case %lld out of range (%lld cases)", fn, (long long)i,
                 (long long)ds->n);
    diffcl_image_meta m;
    diffcl_image_meta_init(&m);
    diffcl_tensor *img = NULL, *lab = NULL, **labp = label ? &lab : NULL;
    const char *ip = ds->img_paths[i], *lp = ds->lab_paths[i];
    diffcl_status s = DIFFCL_OK;
    /* labels are looked for only now: unlabeled cases may lack them */
    if (label && ds->layout != DIFFCL_LAYOUT_PHANTOM && ds->layout != DIFFCL_LAYOUT_H5 &&
        !is_file(lp))
        return missing_case_file(ds, ds->ids[i], 1, NULL);
    switch (ds->layout) {
    case DIFFCL_LAYOUT_PHANTOM: s = load_phantom(ds, ctx, i, &img, labp, &m); break;
    case DIFFCL_LAYOUT_PNG: s = load_png(ds, ctx, ip, lp, &img, labp, &m); break;
    case DIFFCL_LAYOUT_H5: s = load_h5(ctx, ip, lp, &img, labp, &m); break;
    case DIFFCL_LAYOUT_MSD:
    case DIFFCL_LAYOUT_NNUNET: s = load_nifti_case(ds, ctx, i, &img, labp, &m); break;
    default: s = dc_error(DIFFCL_ERR_INTERNAL, "%s: bad layout %d", fn, (int)ds->layout);
    }
    if (s == DIFFCL_OK && lab && !spatial_match(img, lab)) {
        char a[64];
        snprintf(a, sizeof a, "%s", dc_shape_str(img));
        s = dc_error(DIFFCL_ERR_FORMAT,
                     "case '%s': image '%s' [C,spatial] %s and label '%s' %s differ in shape",
                     ds->ids[i], ip, a, lp, dc_shape_str(lab));
    }
    if (s != DIFFCL_OK) {
        diffcl_tensor_free(img);
        diffcl_tensor_free(lab);
        return s;
    }
    if (ds->read.reorient_ras && m.ndim == 3 && (s = to_ras(&img, &lab, &m)) != DIFFCL_OK) {
        dc_error_prefix("case '%s'", ds->ids[i]);
        return s;
    }
    if (ds->plan) { /* the preprocessing plan of the trainer (plan.h) */
        diffcl_tensor *pi = NULL, *pl = NULL;
        diffcl_plan_geometry g = DIFFCL_PLAN_GEOMETRY_INIT;
        s = diffcl_plan_apply(ds->plan, img, lab, &m, &pi, lab ? &pl : NULL, &g);
        diffcl_tensor_free(img);
        diffcl_tensor_free(lab);
        if (s != DIFFCL_OK) {
            dc_error_prefix("case '%s'", ds->ids[i]);
            return s;
        }
        img = pi, lab = pl;
        for (int a = 0; a < 3; a++) m.spacing[a] = g.spacing[a];
        if (diffcl_plan_target_spacing(ds->plan, m.spacing) == 0) {
            int nd = g.ndim;
            for (int a = 0; a < nd; a++) m.spacing[a] = g.spacing[3 - nd + a];
        } else if (g.ndim == 2) {
            m.spacing[0] = m.spacing[1], m.spacing[1] = m.spacing[2], m.spacing[2] = 1;
        }
        m.has_nifti_header = 0; /* the header describes the file's grid, not this one */
    }
    *image = img;
    if (label) *label = lab;
    if (meta)
        (void)dc_options_write(meta, &m, sizeof m, 0, 1, "diffcl_dataset_load"); /* cannot fail */
    return DIFFCL_OK;
}

void dc_dataset_set_plan(diffcl_dataset *ds, const struct diffcl_plan *plan)
{
    if (ds) ds->plan = plan;
}

diffcl_status diffcl_dataset_load(const diffcl_dataset *ds, int64_t i, diffcl_tensor **image,
                                  diffcl_tensor **label, diffcl_image_meta *meta)
{
    DC_CHECK_ARG(ds, "diffcl_dataset_load: ds is NULL");
    return dc_dataset_load_in(ds, ds->ctx, i, image, label, meta);
}

/* ---------------------------------------------------------------- splits ---- */

void diffcl_split_free(diffcl_split *split)
{
    if (!split) return;
    free(split->labeled);
    free(split->unlabeled);
    memset(split, 0, sizeof *split);
}

static int cmp_by_id(const void *a, const void *b, void *ds)
{
    const diffcl_dataset *d = ds;
    return strcmp(d->ids[*(const int64_t *)a], d->ids[*(const int64_t *)b]);
}

diffcl_status diffcl_dataset_split(const diffcl_dataset *ds, int64_t n_labeled,
                                   const char *labeled_list, diffcl_split *out)
{
    const char *fn = "diffcl_dataset_split";
    DC_CHECK_ARG(ds && out, "%s: ds and out must not be NULL", fn);
    memset(out, 0, sizeof *out);
    int64_t n = ds->n;
    uint8_t *is_lab = dc_calloc_raw((size_t)(n ? n : 1), 1);
    int64_t *order = dc_malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    if (!is_lab || !order) {
        free(is_lab);
        free(order);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    for (int64_t i = 0; i < n; i++) order[i] = i;
    qsort_r(order, (size_t)n, sizeof *order, cmp_by_id, (void *)ds);
    diffcl_status s = DIFFCL_OK;
    if (labeled_list) {
        char **ids = NULL;
        int64_t m = 0;
        s = read_case_list(fn, ds->root, labeled_list, &ids, &m);
        for (int64_t k = 0; k < m && s == DIFFCL_OK; k++) {
            strip_file_ext(ds->layout, ids[k]);
            int64_t j = diffcl_dataset_find(ds, ids[k]);
            if (j < 0)
                s = dc_error(DIFFCL_ERR_NOT_FOUND,
                             "%s: '%s' names case '%s', which the data set lacks", fn, labeled_list,
                             ids[k]);
            else
                is_lab[j] = 1;
        }
        diffcl_list_free(ids, m);
    } else {
        if (n_labeled < 0 || n_labeled > n)
            s = dc_error(DIFFCL_ERR_INVALID_ARGUMENT, "%s: %lld labeled cases requested of %lld",
                         fn, (long long)n_labeled, (long long)n);
        for (int64_t k = 0; k < n_labeled && s == DIFFCL_OK; k++) is_lab[order[k]] = 1;
    }
    int64_t nl = 0;
    for (int64_t i = 0; i < n; i++) nl += is_lab[i];
    if (s == DIFFCL_OK) {
        out->labeled = dc_malloc(sizeof(int64_t) * (size_t)(nl ? nl : 1));
        out->unlabeled = dc_malloc(sizeof(int64_t) * (size_t)(n - nl ? n - nl : 1));
        if (!out->labeled || !out->unlabeled)
            s = dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    if (s == DIFFCL_OK)
        for (int64_t k = 0; k < n; k++) { /* both halves in id order */
            int64_t i = order[k];
            if (is_lab[i])
                out->labeled[out->n_labeled++] = i;
            else
                out->unlabeled[out->n_unlabeled++] = i;
        }
    free(is_lab);
    free(order);
    if (s != DIFFCL_OK) diffcl_split_free(out);
    return s;
}
