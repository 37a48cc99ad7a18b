/* diffcl eval: per-case and mean metrics of a folder of predicted label maps against a folder
 * of reference label maps (NIfTI, PNG or h5). Public API only. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <diffcl/diffcl.h>

#include "commands.h"
#include "args.h"
#include "options.h"

static const char *const exts[] = {".nii.gz", ".nii", ".png", ".h5"};

static int is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

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

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a > b && !strcmp(s + a - b, suf);
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

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
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

/* Read a label map of any supported format as U8, with its spacing. */
static diffcl_status read_map(diffcl_context *ctx, const char *path, diffcl_tensor **out,
                              double spacing[3])
{
    spacing[0] = spacing[1] = spacing[2] = 1.0;
    *out = NULL;
    if (ends_with(path, ".png")) return diffcl_png_read_label(ctx, path, out);
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

/* The cases of one run: their ids, maps, spacings and scores. */
typedef struct eval_set {
    int64_t n;
    char **ids;
    diffcl_tensor **pred, **ref;
    double (*spacing)[3];    /* the reference's, for --physical */
    int classes;             /* K, background included */
    diffcl_seg_metrics *res; /* [n][K - 1] */
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
    diffcl_list_free(e->ids, e->n);
}

/* Before any case: a mistyped folder is not a missing case. Returns 0 or the exit code. */
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
        if (read_map(ctx, pp, &e->pred[i], psp) != DIFFCL_OK ||
            read_map(ctx, lp, &e->ref[i], e->spacing[i]) != DIFFCL_OK) {
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

/* Per-class metrics of every case into e->res. Returns 0 or 1 (message printed). */
static int score_cases(const eval_args *a, eval_set *e)
{
    const int K = e->classes;
    e->res = calloc((size_t)e->n * (size_t)(K - 1), sizeof *e->res);
    if (!e->res) {
        fprintf(stderr, "diffcl eval: out of memory\n");
        return 1;
    }
    diffcl_metric_options mo = a->mo;
    for (int64_t i = 0; i < e->n; i++) {
        if (a->physical)
            for (int k = 0; k < 3; k++) mo.spacing[k] = e->spacing[i][k];
        if (diffcl_metrics_per_class(e->pred[i], e->ref[i], K, &mo, e->res + i * (K - 1)) !=
            DIFFCL_OK) {
            fprintf(stderr, "diffcl eval: case '%s': %s\n", e->ids[i], diffcl_last_error());
            return 1;
        }
    }
    return 0;
}

/* The per-case table on stdout (and as CSV rows in @p cf when not NULL). */
static void print_cases(const eval_set *e, FILE *cf)
{
    const int K = e->classes;
    printf("%-24s %5s %8s %8s %9s %8s %8s\n", "case", "class", "dice", "jaccard", "hd95", "asd",
           "assd");
    if (cf) fprintf(cf, "case,class,dice,jaccard,hd95,asd,assd,hd,n_pred,n_ref\n");
    for (int64_t i = 0; i < e->n; i++)
        for (int k = 1; k < K; k++) {
            const diffcl_seg_metrics *m = &e->res[i * (K - 1) + k - 1];
            printf("%-24s %5d %8.4f %8.4f %9.4f %8.4f %8.4f\n", e->ids[i], k, m->dice, m->jaccard,
                   m->hd95, m->asd, m->assd);
            if (cf)
                fprintf(cf, "%s,%d,%.10g,%.10g,%.10g,%.10g,%.10g,%.10g,%lld,%lld\n", e->ids[i], k,
                        m->dice, m->jaccard, m->hd95, m->asd, m->assd, m->hd, (long long)m->n_pred,
                        (long long)m->n_ref);
        }
}

/* Mean +- std over cases per class on stdout (and as CSV mean/std rows). */
static void print_means(const eval_set *e, int physical, FILE *cf)
{
    const int K = e->classes;
    printf("\nmean +- std over %lld case(s)%s:\n", (long long)e->n,
           physical ? " (distances in spacing units)" : " (distances in voxels)");
    const int64_t stride = (int64_t)(sizeof(diffcl_seg_metrics) / sizeof(double));
    static const char *const names[5] = {"dice", "jaccard", "hd95", "asd", "assd"};
    for (int k = 1; k < K; k++) {
        printf("class %d:", k);
        double mean[5], sd[5];
        int64_t nv[5];
        for (int f = 0; f < 5; f++) {
            /* the fields are consecutive doubles: walk one of them across cases */
            const double *base = (const double *)&e->res[k - 1] + f;
            diffcl_metrics_summarize(base, e->n, stride * (K - 1), &mean[f], &sd[f], &nv[f]);
            printf("  %s %.4f +- %.4f", names[f], mean[f], sd[f]);
            if (nv[f] != e->n) printf(" (n=%lld)", (long long)nv[f]);
        }
        printf("\n");
        if (cf) {
            fprintf(cf, "mean,%d", k);
            for (int f = 0; f < 5; f++) fprintf(cf, ",%.10g", mean[f]);
            fprintf(cf, ",,,\nstd,%d", k);
            for (int f = 0; f < 5; f++) fprintf(cf, ",%.10g", sd[f]);
            fprintf(cf, ",,,\n");
        }
    }
}

/* The tables, and the CSV when asked. Returns 0 or 1 (message printed). */
static int report(const eval_args *a, const eval_set *e)
{
    FILE *cf = NULL;
    if (a->csv && !(cf = fopen(a->csv, "w"))) {
        fprintf(stderr, "diffcl eval: cannot write '%s'\n", a->csv);
        return 1;
    }
    print_cases(e, cf);
    print_means(e, a->physical, cf);
    if (cf && fclose(cf) != 0) {
        fprintf(stderr, "diffcl eval: cannot write '%s'\n", a->csv);
        return 1;
    }
    return 0;
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
    if (!rc) rc = score_cases(&args, &e);
    if (!rc) rc = report(&args, &e);
    eval_set_free(&e);
    diffcl_context_free(ctx);
    return rc;
}
