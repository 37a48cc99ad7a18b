/* diffcl eval: per-case and mean metrics of a folder of predicted label maps against a folder
 * of reference label maps (NIfTI, PNG or h5). Public API only. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>
#include <diffcl/diffcl.h>

#include "commands.h"
#include "args.h"
#include "options.h"
#include "folds.h"
#include "paths.h"

static const char *const exts[] = {".nii.gz", ".nii", ".png", ".h5"};

/* Path of <dir>/<id><ext> for the first extension that exists, else the LA layout's
 * <dir>/<id>/mri_norm2.h5 (its dataset 'label'); 0 if none. */
static int find_case(const char *dir, const char *id, char *path, size_t n)
{
    size_t L = strlen(dir);
    while (L > 1 && dir[L - 1] == '/') L--; /* "preds/" + id without a double slash */
    for (size_t k = 0; k < sizeof exts / sizeof exts[0]; k++) {
        snprintf(path, n, "%.*s/%s%s", (int)L, dir, id, exts[k]);
        if (is_file(path)) return 1;
    }
    snprintf(path, n, "%.*s/%s/mri_norm2.h5", (int)L, dir, id);
    return is_file(path);
}

/* A --list entry may be a file name ("la_004.nii.gz"): its id is the name less the extension. */
static void strip_ext(char *id)
{
    for (size_t k = 0; k < sizeof exts / sizeof exts[0]; k++)
        if (ends_with(id, exts[k])) {
            id[strlen(id) - strlen(exts[k])] = 0;
            return;
        }
}

/* Ids of the label-map files in dir, sorted. */
static int list_dir(const char *dir, char ***ids, int64_t *n)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    int64_t cap = 0;
    *ids = NULL;
    *n = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        for (size_t k = 0; k < sizeof exts / sizeof exts[0]; k++) {
            if (!ends_with(e->d_name, exts[k])) continue;
            if (*n == cap) {
                cap = cap ? 2 * cap : 64;
                *ids = realloc(*ids, sizeof(char *) * (size_t)cap);
            }
            size_t L = strlen(e->d_name) - strlen(exts[k]);
            (*ids)[*n] = malloc(L + 1);
            memcpy((*ids)[*n], e->d_name, L);
            (*ids)[*n][L] = 0;
            (*n)++;
            break;
        }
    }
    closedir(d);
    if (*n > 1) qsort(*ids, (size_t)*n, sizeof(char *), cmp_str);
    return 1;
}

/* Read a label map of any supported format as U8, with its spacing; a PNG through
 * @p png_map (--label-map; NULL: none). */
static diffcl_status read_map(diffcl_context *ctx, const char *path, const char *png_map,
                              diffcl_tensor **out, double spacing[3])
{
    spacing[0] = spacing[1] = spacing[2] = 1.0;
    *out = NULL;
    if (ends_with(path, ".png")) {
        diffcl_read_options ro = DIFFCL_READ_OPTIONS_INIT;
        ro.label_map = png_map;
        return diffcl_png_read_label_ex(ctx, path, &ro, out);
    }
    if (ends_with(path, ".h5")) {
        diffcl_tensor *t = NULL;
        diffcl_status s = diffcl_h5_read(ctx, path, "label", &t);
        if (s == DIFFCL_ERR_NOT_FOUND) s = diffcl_h5_read(ctx, path, "pred", &t);
        if (s != DIFFCL_OK) return s;
        if (diffcl_tensor_dtype(t) == DIFFCL_U8) {
            *out = t;
            return DIFFCL_OK;
        }
        s = diffcl_tensor_to_dtype(t, DIFFCL_U8, out);
        diffcl_tensor_free(t);
        return s;
    }
    diffcl_image_meta m;
    diffcl_image_meta_init(&m);
    diffcl_status s = diffcl_nifti_read(ctx, path, DIFFCL_NIFTI_LABEL, out, &m);
    if (s == DIFFCL_OK) memcpy(spacing, m.spacing, sizeof m.spacing);
    return s;
}

/* The values reported per case and class, in this order; the names are the CSV and JSON
 * keys. The first six come from diffcl_seg_metrics; NSD only with --nsd-tol. */
enum { F_DICE, F_JACCARD, F_HD95, F_ASD, F_ASSD, F_HD, F_NSD, NF };
static const char *const FIELD[NF] = {"dice", "jaccard", "hd95", "asd_pred_to_ref",
                                      "assd", "hd",      "nsd"};
/* The table on stdout leaves HD out (as 0.1.0); CSV and JSON have it. */
static const int TABLE[] = {F_DICE, F_JACCARD, F_HD95, F_ASD, F_ASSD, F_NSD};

/* mean, std (sample, n-1) and count of the finite values */
typedef struct stat3 {
    double mean, std;
    int64_t n;
} stat3;

/* The cases of one run: their ids, maps, spacings and scores. */
typedef struct eval_set {
    int64_t n;
    char **ids;
    diffcl_tensor **pred, **ref;
    double (*spacing)[3];    /* the reference's, for --physical and the NSD */
    int classes;             /* K, background included */
    int nf;                  /* fields reported: NF with --nsd-tol, else NF - 1 */
    diffcl_seg_metrics *res; /* [n][K - 1] */
    double *val;             /* [n][K - 1][NF]: the fields of res, and the NSD */
    double *case_mean;       /* [n][NF]: per case, the mean over its foreground classes */
    stat3 *cls;              /* [K - 1][NF]: per class, over cases */
    stat3 mean[NF];          /* of case_mean, over cases */
    double fg_mean[NF];      /* nnU-Net's foreground_mean: the mean of cls[.][f].mean */
    diffcl_dataset *names;   /* the data set around --label, for its class names, or NULL */
} eval_set;

static void eval_set_free(eval_set *e)
{
    for (int64_t i = 0; i < e->n; i++) {
        if (e->pred) diffcl_tensor_free(e->pred[i]);
        if (e->ref) diffcl_tensor_free(e->ref[i]);
    }
    free(e->pred);
    free(e->ref);
    free(e->spacing);
    free(e->res);
    free(e->val);
    free(e->case_mean);
    free(e->cls);
    diffcl_list_free(e->ids, e->n);
}

/* Before any case: a mistyped folder is not a missing case. Returns 0 or the exit code. */
/* The data set whose labels --label holds (the folder's parent, as labelsTr/ or labelsTs/ of
 * an MSD or nnU-Net folder), when it has a dataset.json naming the classes; else NULL. */
static diffcl_dataset *class_names(diffcl_context *ctx, const char *label_dir)
{
    char parent[4096];
    snprintf(parent, sizeof parent, "%s/..", label_dir);
    diffcl_dataset *ds = NULL;
    if (diffcl_dataset_open(ctx, parent, NULL, &ds) != DIFFCL_OK) {
        diffcl_clear_error();
        return NULL;
    }
    if (diffcl_dataset_num_classes(ds) > 0) return ds;
    diffcl_dataset_free(ds);
    return NULL;
}

static int check_folders(const eval_args *a)
{
    const char *dirs[2][2] = {{"--pred", a->pred_dir}, {"--label", a->label_dir}};
    for (int k = 0; k < 2; k++) {
        struct stat st;
        if (stat(dirs[k][1], &st) != 0)
            return opt_fail("eval", "%s folder '%s' does not exist", dirs[k][0], dirs[k][1]);
        if (!S_ISDIR(st.st_mode))
            return opt_fail("eval", "%s '%s' is not a folder", dirs[k][0], dirs[k][1]);
    }
    return 0;
}

/* The ids to score: --list, or every label map in --pred. Returns 0 or the exit code. */
static int case_ids(const eval_args *a, eval_set *e)
{
    if (a->list) {
        if (diffcl_list_read(a->list, &e->ids, &e->n) != DIFFCL_OK)
            return opt_fail("eval", "%s", diffcl_last_error());
        for (int64_t i = 0; i < e->n; i++) strip_ext(e->ids[i]);
    } else if (!list_dir(a->pred_dir, &e->ids, &e->n)) {
        return opt_fail("eval", "cannot read the folder '%s'", a->pred_dir);
    }
    if (e->n == 0)
        return opt_fail("eval", "no label maps (.nii.gz, .nii, .png, .h5) in '%s'", a->pred_dir);
    return 0;
}

/* Read every case's prediction and reference; the class count is --classes or the largest
 * label seen + 1. Returns 0 or 1 (message printed). */
static int read_cases(diffcl_context *ctx, const eval_args *a, eval_set *e)
{
    e->pred = calloc((size_t)e->n, sizeof *e->pred);
    e->ref = calloc((size_t)e->n, sizeof *e->ref);
    e->spacing = calloc((size_t)e->n, sizeof *e->spacing);
    if (!e->pred || !e->ref || !e->spacing) {
        fprintf(stderr, "diffcl eval: out of memory for %lld cases\n", (long long)e->n);
        return 1;
    }
    int maxlab = 0;
    for (int64_t i = 0; i < e->n; i++) {
        char pp[4096], lp[4096];
        double psp[3];
        if (!find_case(a->pred_dir, e->ids[i], pp, sizeof pp)) {
            fprintf(stderr, "diffcl eval: no prediction for case '%s' in '%s'\n", e->ids[i],
                    a->pred_dir);
            return 1;
        }
        if (!find_case(a->label_dir, e->ids[i], lp, sizeof lp)) {
            fprintf(stderr, "diffcl eval: no reference for case '%s' in '%s'\n", e->ids[i],
                    a->label_dir);
            return 1;
        }
        if (read_map(ctx, pp, NULL, &e->pred[i], psp) != DIFFCL_OK ||
            read_map(ctx, lp, a->label_map, &e->ref[i], e->spacing[i]) != DIFFCL_OK) {
            fprintf(stderr, "diffcl eval: %s\n", diffcl_last_error());
            return 1;
        }
        for (int m = 0; m < 2; m++) {
            const diffcl_tensor *t = m ? e->ref[i] : e->pred[i];
            const uint8_t *d = diffcl_tensor_data_const(t);
            for (int64_t k = 0; k < diffcl_tensor_numel(t); k++)
                maxlab = d[k] > maxlab ? d[k] : maxlab;
        }
    }
    e->classes = a->classes ? a->classes : (maxlab + 1 < 2 ? 2 : maxlab + 1);
    return 0;
}

/* Per-class metrics (and NSD) of every case into e->res and e->val. Returns 0 or 1 (message
 * printed). */
static int score_cases(const eval_args *a, eval_set *e)
{
    const int K = e->classes;
    e->nf = a->nsd ? NF : NF - 1;
    e->res = calloc((size_t)e->n * (size_t)(K - 1), sizeof *e->res);
    e->val = calloc((size_t)e->n * (size_t)(K - 1) * NF, sizeof *e->val);
    double *nsd = calloc((size_t)(K - 1), sizeof *nsd);
    if (!e->res || !e->val || !nsd) {
        free(nsd);
        fprintf(stderr, "diffcl eval: out of memory\n");
        return 1;
    }
    diffcl_metric_options mo = a->mo;
    diffcl_surface_dice_options so = DIFFCL_SURFACE_DICE_OPTIONS_INIT;
    so.tolerance = a->nsd_tol;
    for (int64_t i = 0; i < e->n; i++) {
        diffcl_seg_metrics *r = e->res + i * (K - 1);
        if (a->physical)
            for (int k = 0; k < 3; k++) mo.spacing[k] = e->spacing[i][k];
        for (int k = 0; k < 3; k++) so.spacing[k] = e->spacing[i][k]; /* the NSD: always mm */
        if (diffcl_metrics_per_class(e->pred[i], e->ref[i], K, &mo, r) != DIFFCL_OK ||
            (a->nsd &&
             diffcl_surface_dice_per_class(e->pred[i], e->ref[i], K, &so, nsd) != DIFFCL_OK)) {
            fprintf(stderr, "diffcl eval: case '%s': %s\n", e->ids[i], diffcl_last_error());
            free(nsd);
            return 1;
        }
        for (int k = 0; k < K - 1; k++) {
            double *v = e->val + (i * (K - 1) + k) * NF;
            v[F_DICE] = r[k].dice;
            v[F_JACCARD] = r[k].jaccard;
            v[F_HD95] = r[k].hd95;
            v[F_ASD] = r[k].asd;
            v[F_ASSD] = r[k].assd;
            v[F_HD] = r[k].hd;
            v[F_NSD] = NAN;
            if (!a->nsd) continue;
            v[F_NSD] = nsd[k];
            /* MONAI's NSD is NaN for a class in neither map; --both-empty one reports it as
             * Dice is reported then, 1 */
            if (r[k].n_pred == 0 && r[k].n_ref == 0 && a->mo.both_empty == DIFFCL_BOTH_EMPTY_ONE)
                v[F_NSD] = 1.0;
        }
    }
    free(nsd);
    return 0;
}

/* The class means of each case, and the statistics over cases. Returns 0 or 1. */
static int summarize_cases(eval_set *e)
{
    const int K = e->classes;
    e->case_mean = calloc((size_t)e->n * NF, sizeof *e->case_mean);
    e->cls = calloc((size_t)(K - 1) * NF, sizeof *e->cls);
    if (!e->case_mean || !e->cls) {
        fprintf(stderr, "diffcl eval: out of memory\n");
        return 1;
    }
    for (int f = 0; f < NF; f++) {
        /* per case: the mean over its foreground classes (NaN left out, as nanmean) */
        for (int64_t i = 0; i < e->n; i++)
            diffcl_metrics_summarize_ex(e->val + i * (K - 1) * NF + f, K - 1, NF, 1,
                                        &e->case_mean[i * NF + f], NULL, NULL);
        /* per class and of the case means: mean +- sample std over cases */
        double fg = 0;
        for (int k = 0; k < K - 1; k++) {
            stat3 *c = &e->cls[k * NF + f];
            diffcl_metrics_summarize_ex(e->val + k * NF + f, e->n, (int64_t)(K - 1) * NF, 1,
                                        &c->mean, &c->std, &c->n);
            fg += c->mean;
        }
        stat3 *m = &e->mean[f];
        diffcl_metrics_summarize_ex(e->case_mean + f, e->n, NF, 1, &m->mean, &m->std, &m->n);
        /* nnU-Net: np.mean over the classes of the per-class nanmeans (NaN if one is NaN) */
        e->fg_mean[f] = fg / (double)(K - 1);
    }
    return 0;
}

/* The per-case table on stdout (and as CSV rows in @p cf when not NULL). */
static void print_cases(const eval_set *e, FILE *cf)
{
    const int K = e->classes, nt = e->nf == NF ? 6 : 5;
    printf("%-24s %5s", "case", "class");
    for (int t = 0; t < nt; t++) printf(" %*s", TABLE[t] == F_ASD ? 15 : 9, FIELD[TABLE[t]]);
    printf("\n");
    if (cf) {
        fprintf(cf, "case,class");
        for (int f = 0; f < F_NSD; f++) fprintf(cf, ",%s", FIELD[f]);
        fprintf(cf, ",n_pred,n_ref%s\n", e->nf == NF ? ",nsd" : "");
    }
    for (int64_t i = 0; i < e->n; i++) {
        for (int k = 1; k < K; k++) {
            const double *v = e->val + (i * (K - 1) + k - 1) * NF;
            const diffcl_seg_metrics *m = &e->res[i * (K - 1) + k - 1];
            printf("%-24s %5d", e->ids[i], k);
            for (int t = 0; t < nt; t++) printf(" %*.4f", TABLE[t] == F_ASD ? 15 : 9, v[TABLE[t]]);
            printf("\n");
            if (!cf) continue;
            fprintf(cf, "%s,%d", e->ids[i], k);
            for (int f = 0; f < F_NSD; f++) fprintf(cf, ",%.10g", v[f]);
            fprintf(cf, ",%lld,%lld", (long long)m->n_pred, (long long)m->n_ref);
            if (e->nf == NF) fprintf(cf, ",%.10g", v[F_NSD]);
            fprintf(cf, "\n");
        }
        if (K - 1 < 2) continue; /* one foreground class: the mean is that class */
        printf("%-24s %5s", e->ids[i], "mean");
        for (int t = 0; t < nt; t++)
            printf(" %*.4f", TABLE[t] == F_ASD ? 15 : 9, e->case_mean[i * NF + TABLE[t]]);
        printf("\n");
    }
}

static void print_stats(const char *label, const stat3 *s, int stride, int nt, int64_t n_cases)
{
    printf("%-11s", label);
    for (int t = 0; t < nt; t++) {
        const stat3 *x = &s[TABLE[t] * stride];
        printf("  %s %.4f +- %.4f", FIELD[TABLE[t]], x->mean, x->std);
        if (x->n != n_cases) printf(" (n=%lld)", (long long)x->n);
    }
    printf("\n");
}

/* CSV rows "mean,<class>,..." and "std,<class>,..." of one statistic. */
static void csv_stats(FILE *cf, const char *cls, const stat3 *s, int stride, int nf)
{
    for (int w = 0; w < 2; w++) {
        fprintf(cf, "%s,%s", w ? "std" : "mean", cls);
        for (int f = 0; f < F_NSD; f++)
            fprintf(cf, ",%.10g", w ? s[f * stride].std : s[f * stride].mean);
        fprintf(cf, ",,");
        if (nf == NF) fprintf(cf, ",%.10g", w ? s[F_NSD * stride].std : s[F_NSD * stride].mean);
        fprintf(cf, "\n");
    }
}

/* Mean +- std over cases per class, of the case means, and nnU-Net's foreground mean on
 * stdout (and as CSV mean/std rows). */
static void print_means(const eval_set *e, const eval_args *a, FILE *cf)
{
    const int K = e->classes, nt = e->nf == NF ? 6 : 5;
    printf("\nmean +- std over %lld case(s) (sample std; distances in %s", (long long)e->n,
           a->physical ? "spacing units" : "voxels");
    if (a->nsd) printf("; NSD at %g mm", a->nsd_tol);
    printf("):\n");
    for (int k = 1; k < K; k++) {
        char label[160];
        const char *name = diffcl_dataset_class_name(e->names, k);
        snprintf(label, sizeof label, name ? "class %d (%.100s):" : "class %d:", k, name);
        print_stats(label, &e->cls[(k - 1) * NF], 1, nt, e->n);
        if (cf) {
            char c[16];
            snprintf(c, sizeof c, "%d", k);
            csv_stats(cf, c, &e->cls[(k - 1) * NF], 1, e->nf);
        }
    }
    if (K - 1 < 2) return;
    print_stats("mean:", e->mean, 1, nt, e->n);
    if (cf) csv_stats(cf, "mean", e->mean, 1, e->nf);
    printf("foreground mean (nnU-Net, the mean of the class means):");
    for (int t = 0; t < nt; t++) printf("  %s %.4f", FIELD[TABLE[t]], e->fg_mean[TABLE[t]]);
    printf("\n");
}

/* ------------------------------------------------------------------ JSON ---- */

static cJSON *num(double v)
{
    return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull(); /* JSON has no NaN */
}

static cJSON *values_json(const double *v, int nf)
{
    cJSON *o = cJSON_CreateObject();
    for (int f = 0; o && f < nf; f++) cJSON_AddItemToObject(o, FIELD[f], num(v[f]));
    return o;
}

static cJSON *stats_json(const stat3 *s, int stride, int nf)
{
    cJSON *o = cJSON_CreateObject();
    for (int f = 0; o && f < nf; f++) {
        cJSON *x = cJSON_CreateObject();
        cJSON_AddItemToObject(x, "mean", num(s[f * stride].mean));
        cJSON_AddItemToObject(x, "std", num(s[f * stride].std));
        cJSON_AddNumberToObject(x, "n", (double)s[f * stride].n);
        cJSON_AddItemToObject(o, FIELD[f], x);
    }
    return o;
}

/* The whole report as a JSON document (cJSON_Delete it); NULL when out of memory. */
static cJSON *report_json(const eval_args *a, const eval_set *e)
{
    const int K = e->classes;
    cJSON *root = cJSON_CreateObject(), *opt = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "tool", "diffcl eval " DIFFCL_VERSION_STRING);
    cJSON_AddStringToObject(opt, "pred", a->pred_dir);
    cJSON_AddStringToObject(opt, "label", a->label_dir);
    cJSON_AddNumberToObject(opt, "classes", K);
    cJSON_AddStringToObject(opt, "distances", a->physical ? "spacing units" : "voxels");
    cJSON_AddNumberToObject(opt, "connectivity", a->mo.connectivity);
    if (a->mo.empty_policy == DIFFCL_EMPTY_VALUE)
        cJSON_AddNumberToObject(opt, "empty", a->mo.empty_value);
    else
        cJSON_AddStringToObject(opt, "empty",
                                a->mo.empty_policy == DIFFCL_EMPTY_NAN ? "nan" : "diagonal");
    cJSON_AddStringToObject(opt, "both_empty",
                            a->mo.both_empty == DIFFCL_BOTH_EMPTY_NAN ? "nan" : "one");
    if (a->nsd) cJSON_AddNumberToObject(opt, "nsd_tolerance_mm", a->nsd_tol);
    if (a->label_map) cJSON_AddStringToObject(opt, "label_map", a->label_map);
    cJSON_AddStringToObject(opt, "std", "sample (n-1)");
    cJSON_AddItemToObject(root, "options", opt);
    cJSON *cases = cJSON_AddArrayToObject(root, "cases");
    for (int64_t i = 0; cases && i < e->n; i++) {
        cJSON *c = cJSON_CreateObject(), *cl = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "case", e->ids[i]);
        for (int k = 1; k < K; k++) {
            char key[16];
            snprintf(key, sizeof key, "%d", k);
            cJSON *v = values_json(e->val + (i * (K - 1) + k - 1) * NF, e->nf);
            const diffcl_seg_metrics *m = &e->res[i * (K - 1) + k - 1];
            cJSON_AddNumberToObject(v, "n_pred", (double)m->n_pred);
            cJSON_AddNumberToObject(v, "n_ref", (double)m->n_ref);
            cJSON_AddItemToObject(cl, key, v);
        }
        cJSON_AddItemToObject(c, "classes", cl);
        cJSON_AddItemToObject(c, "mean", values_json(e->case_mean + i * NF, e->nf));
        cJSON_AddItemToArray(cases, c);
    }
    cJSON *sum = cJSON_CreateObject(), *cl = cJSON_CreateObject();
    cJSON_AddNumberToObject(sum, "n_cases", (double)e->n);
    for (int k = 1; k < K; k++) {
        char key[16];
        snprintf(key, sizeof key, "%d", k);
        cJSON_AddItemToObject(cl, key, stats_json(&e->cls[(k - 1) * NF], 1, e->nf));
    }
    cJSON_AddItemToObject(sum, "classes", cl);
    cJSON_AddItemToObject(sum, "mean", stats_json(e->mean, 1, e->nf));
    cJSON_AddItemToObject(sum, "foreground_mean", values_json(e->fg_mean, e->nf));
    cJSON_AddItemToObject(root, "summary", sum);
    return root;
}

/* Write @p text to @p path atomically: a temporary file beside it (so that rename stays on one
 * file system), flushed to disk, then renamed over @p path; on any failure the temporary file
 * is removed and @p path is left as it was. The scheme of the library's file writers
 * (lib/io: dc_tmp_path, dc_commit_tmp), which the tool, on the public API, cannot call.
 * Returns 0 or errno. */
static int write_json(const eval_args *a, const eval_set *e)
{
    cJSON *root = report_json(a, e);
    char *text = root ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!text) {
        fprintf(stderr, "diffcl eval: out of memory for the JSON summary\n");
        return 1;
    }
    size_t n = strlen(text);
    char *line = malloc(n + 2); /* end the file with a newline */
    int err = ENOMEM;
    if (line) {
        memcpy(line, text, n);
        line[n] = '\n';
        line[n + 1] = 0;
        err = write_atomic(a->json, line);
    }
    free(line);
    cJSON_free(text);
    if (err) {
        fprintf(stderr, "diffcl eval: cannot write '%s': %s\n", a->json, strerror(err));
        return 1;
    }
    return 0;
}

/* The tables, and the CSV and JSON when asked. Returns 0 or 1 (message printed). */
static int report(const eval_args *a, const eval_set *e)
{
    FILE *cf = NULL;
    if (a->csv && !(cf = fopen(a->csv, "w"))) {
        fprintf(stderr, "diffcl eval: cannot write '%s'\n", a->csv);
        return 1;
    }
    print_cases(e, cf);
    print_means(e, a, cf);
    if (cf && fclose(cf) != 0) {
        fprintf(stderr, "diffcl eval: cannot write '%s'\n", a->csv);
        return 1;
    }
    if (a->splits && folds_summarize(a->splits, e->ids, e->n, e->case_mean + F_DICE, NF)) return 1;
    return a->json ? write_json(a, e) : 0;
}

int cmd_eval(int argc, char **argv)
{
    eval_args args;
    int rc = eval_args_parse(argc, argv, &args);
    if (rc != TOOL_ARGS_RUN) return rc;
    eval_set e = {0};
    rc = check_folders(&args);
    if (!rc) rc = case_ids(&args, &e);
    diffcl_context *ctx = NULL;
    if (!rc && tool_context_create(NULL, &ctx) != DIFFCL_OK) {
        fprintf(stderr, "diffcl eval: %s\n", diffcl_last_error());
        rc = 1;
    }
    if (!rc) rc = read_cases(ctx, &args, &e);
    if (!rc) e.names = class_names(ctx, args.label_dir);
    if (!rc) rc = score_cases(&args, &e);
    if (!rc) rc = summarize_cases(&e);
    if (!rc) rc = report(&args, &e);
    eval_set_free(&e);
    diffcl_dataset_free(e.names);
    diffcl_context_free(ctx);
    return rc;
}
