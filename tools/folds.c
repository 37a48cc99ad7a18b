/* Cross-validation folds for diffcl train, as nnU-Net makes them: the training cases, sorted by
 * id, shuffled with a fixed seed and cut into K contiguous folds (sklearn's KFold); fold k
 * validates on its part and trains on the rest. The split is written once, to a splits file
 * shared by the K runs (by default splits.json next to the run folders), in nnU-Net's
 * splits_final.json form: [{"train": [ids], "val": [ids]}, ...]. A later run reuses it, and
 * refuses it when it was made for other cases or another K, so the folds of one experiment
 * never overlap. Public API only, plus cJSON for the file. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <libgen.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "folds.h"
#include "paths.h"

enum { FOLD_SEED = 12345 }; /* nnU-Net's KFold random_state */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The training cases of the run's data set (its layout and --train-list), sorted. */
static int case_ids(diffcl_context *ctx, const diffcl_train_options *o, char ***ids, int *n)
{
    diffcl_dataset_options dopt = DIFFCL_DATASET_OPTIONS_INIT;
    diffcl_layout layout;
    diffcl_dataset *ds = NULL;
    diffcl_status s = diffcl_layout_parse(o->layout ? o->layout : "phantom", &layout);
    if (s == DIFFCL_OK && layout == DIFFCL_LAYOUT_PHANTOM) {
        fprintf(stderr, "diffcl train: --folds needs a data set (--data), not the phantom\n");
        return 1;
    }
    dopt.layout = layout;
    dopt.list = o->train_list;
    if (s == DIFFCL_OK) s = diffcl_dataset_open(ctx, o->data_dir, &dopt, &ds);
    if (s != DIFFCL_OK) {
        fprintf(stderr, "diffcl train: %s\n", diffcl_last_error());
        return 1;
    }
    int count = (int)diffcl_dataset_size(ds), ok = 1;
    *ids = calloc((size_t)(count ? count : 1), sizeof **ids);
    *n = *ids ? count : 0;
    for (int i = 0; i < *n; i++) ok &= ((*ids)[i] = strdup(diffcl_dataset_case_id(ds, i))) != NULL;
    diffcl_dataset_free(ds);
    if (!*ids || !ok) {
        fprintf(stderr, "diffcl train: out of memory\n");
        return 1;
    }
    qsort(*ids, (size_t)*n, sizeof **ids, cmp_str);
    return 0;
}

/* K folds of @p ids as JSON: a seeded shuffle, then contiguous parts (the first n % K one
 * case larger), each part sorted. */
static cJSON *make_splits(char **ids, int n, int k_folds)
{
    int *order = malloc(sizeof(int) * (size_t)(n ? n : 1));
    cJSON *root = cJSON_CreateArray();
    if (!order || !root) {
        free(order);
        cJSON_Delete(root);
        return NULL;
    }
    for (int i = 0; i < n; i++) order[i] = i;
    uint64_t st = FOLD_SEED;
    for (int i = n - 1; i > 0; i--) { /* Fisher-Yates */
        int j = (int)(splitmix64(&st) % (uint64_t)(i + 1)), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    int *pos = malloc(sizeof(int) * (size_t)(n ? n : 1)); /* where case i went */
    for (int p = 0; pos && p < n; p++) pos[order[p]] = p;
    for (int f = 0, start = 0; pos && f < k_folds; f++) {
        int size = n / k_folds + (f < n % k_folds);
        cJSON *fold = cJSON_CreateObject(), *train = cJSON_CreateArray(),
              *val = cJSON_CreateArray();
        for (int i = 0; i < n; i++) /* id order within each list */
            cJSON_AddItemToArray(pos[i] >= start && pos[i] < start + size ? val : train,
                                 cJSON_CreateString(ids[i]));
        cJSON_AddItemToObject(fold, "train", train);
        cJSON_AddItemToObject(fold, "val", val);
        cJSON_AddItemToArray(root, fold);
        start += size;
    }
    if (!pos) {
        cJSON_Delete(root);
        root = NULL;
    }
    free(pos);
    free(order);
    return root;
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            char *g = realloc(buf, cap = 2 * cap + 8192);
            if (!g) break;
            buf = g;
        }
        size_t got = fread(buf + n, 1, 4096, f);
        n += got;
        if (got < 4096) break;
    }
    fclose(f);
    if (buf) buf[n] = 0;
    return buf;
}

/* An existing splits file: K folds whose parts together are exactly @p ids. 0 or 1. */
static int check_splits(const cJSON *root, const char *path, char **ids, int n, int k_folds)
{
    if (!cJSON_IsArray(root) || cJSON_GetArraySize(root) != k_folds) {
        fprintf(stderr,
                "diffcl train: %s does not hold %d folds; use another --splits file for another "
                "--folds\n",
                path, k_folds);
        return 1;
    }
    int seen = 0;
    for (int f = 0; f < k_folds; f++) {
        const cJSON *val = cJSON_GetObjectItem(cJSON_GetArrayItem(root, f), "val");
        const cJSON *id;
        cJSON_ArrayForEach(id, val)
        {
            int known = cJSON_IsString(id) &&
                        bsearch(&id->valuestring, ids, (size_t)n, sizeof *ids, cmp_str);
            if (!known) {
                fprintf(stderr,
                        "diffcl train: %s was made for other cases ('%s' is not a training "
                        "case here)\n",
                        path, cJSON_IsString(id) ? id->valuestring : "?");
                return 1;
            }
            seen++;
        }
    }
    if (seen != n) {
        fprintf(stderr, "diffcl train: %s covers %d cases, the data set has %d\n", path, seen, n);
        return 1;
    }
    return 0;
}

/* The splits file: read and checked, or made and written. */
static cJSON *load_or_make(const char *path, char **ids, int n, int k_folds)
{
    char *text = is_file(path) ? read_text(path) : NULL;
    if (text) {
        cJSON *root = cJSON_Parse(text);
        free(text);
        if (!root) fprintf(stderr, "diffcl train: %s is not valid JSON\n", path);
        if (root && check_splits(root, path, ids, n, k_folds)) {
            cJSON_Delete(root);
            return NULL;
        }
        if (root) fprintf(stderr, "folds: reusing %s\n", path);
        return root;
    }
    cJSON *root = make_splits(ids, n, k_folds);
    char *out = root ? cJSON_Print(root) : NULL;
    char parent[4300];
    snprintf(parent, sizeof parent, "%s", path);
    make_dirs(dirname(parent));                       /* the folder of the runs may not exist yet */
    int err = out ? write_atomic(path, out) : ENOMEM; /* a crash leaves the old file or none */
    free(out);
    if (err) {
        fprintf(stderr, "diffcl train: cannot write %s: %s\n", path, strerror(err));
        cJSON_Delete(root);
        return NULL;
    }
    fprintf(stderr, "folds: wrote %s (%d folds of %d cases, seed %d)\n", path, k_folds, n,
            FOLD_SEED);
    return root;
}

/* Write the strings of @p list one per line. 0 or 1. */
static int write_list(const char *path, const cJSON *list)
{
    FILE *f = fopen(path, "w");
    const cJSON *id;
    int ok = f != NULL;
    cJSON_ArrayForEach(id, list) if (ok) ok = fprintf(f, "%s\n", id->valuestring) > 0;
    if (f) ok = fclose(f) == 0 && ok;
    if (!ok) fprintf(stderr, "diffcl train: cannot write %s: %s\n", path, strerror(errno));
    return !ok;
}

/* The user's labeled list cut to the fold's training part, into @p path. 0 or 1. */
static int cut_labeled(const train_args *a, const cJSON *train, const char *path)
{
    char **lab = NULL;
    int64_t n = 0;
    if (diffcl_list_read(a->o.labeled_list, &lab, &n) != DIFFCL_OK) {
        fprintf(stderr, "diffcl train: %s\n", diffcl_last_error());
        return 1;
    }
    cJSON *kept = cJSON_CreateArray();
    int dropped = 0;
    for (int64_t i = 0; kept && i < n; i++) {
        const cJSON *id;
        int in = 0;
        cJSON_ArrayForEach(id, train) in |= !strcmp(id->valuestring, lab[i]);
        if (in)
            cJSON_AddItemToArray(kept, cJSON_CreateString(lab[i]));
        else
            dropped++;
    }
    diffcl_list_free(lab, n);
    int rc = !kept || write_list(path, kept);
    if (!rc)
        fprintf(stderr,
                "folds: %d of the labeled cases are in fold %d's validation part, %d stay\n",
                dropped, a->fold, cJSON_GetArraySize(kept));
    cJSON_Delete(kept);
    return rc;
}

int folds_prepare(diffcl_context *ctx, train_args *a)
{
    char **ids = NULL;
    int n = 0, rc = case_ids(ctx, &a->o, &ids, &n);
    if (!rc && n < a->folds) {
        fprintf(stderr, "diffcl train: %d training cases cannot make %d folds\n", n, a->folds);
        rc = 1;
    }
    char dir[4096], splits[4200];
    snprintf(dir, sizeof dir, "%s", a->o.out_dir);
    if (a->splits)
        snprintf(splits, sizeof splits, "%s", a->splits);
    else
        snprintf(splits, sizeof splits, "%s/splits.json", dirname(dir));
    cJSON *root = rc ? NULL : load_or_make(splits, ids, n, a->folds);
    rc = rc || !root;
    const cJSON *fold = root ? cJSON_GetArrayItem(root, a->fold) : NULL;
    if (!rc && make_dirs(a->o.out_dir)) {
        fprintf(stderr, "diffcl train: cannot create %s: %s\n", a->o.out_dir, strerror(errno));
        rc = 1;
    }
    char val_path[4200], lab_path[4200], *abs = rc ? NULL : realpath(a->o.out_dir, NULL);
    snprintf(val_path, sizeof val_path, "%s/fold%d.val.list", abs ? abs : ".", a->fold);
    snprintf(lab_path, sizeof lab_path, "%s/fold%d.labeled.list", abs ? abs : ".", a->fold);
    free(abs);
    if (!rc) rc = write_list(val_path, cJSON_GetObjectItem(fold, "val"));
    if (!rc && a->o.labeled_list) rc = cut_labeled(a, cJSON_GetObjectItem(fold, "train"), lab_path);
    if (!rc) {
        /* the run keeps these paths: they outlive this function in static storage */
        static char val_keep[4200], lab_keep[4200];
        memcpy(val_keep, val_path, sizeof val_keep);
        memcpy(lab_keep, lab_path, sizeof lab_keep);
        a->o.val_list = val_keep;
        if (a->o.labeled_list) a->o.labeled_list = lab_keep;
        fprintf(stderr, "folds: fold %d of %d validates on %d case(s), trains on %d\n", a->fold,
                a->folds, cJSON_GetArraySize(cJSON_GetObjectItem(fold, "val")),
                cJSON_GetArraySize(cJSON_GetObjectItem(fold, "train")));
    }
    cJSON_Delete(root);
    for (int i = 0; i < n; i++) free(ids[i]);
    free(ids);
    return rc;
}

/* The fold of case @p id in @p root, or -1. */
static int fold_of(const cJSON *root, const char *id)
{
    for (int f = 0; f < cJSON_GetArraySize(root); f++) {
        const cJSON *x;
        cJSON_ArrayForEach(x, cJSON_GetObjectItem(cJSON_GetArrayItem(root, f), "val"))
        {
            if (cJSON_IsString(x) && !strcmp(x->valuestring, id)) return f;
        }
    }
    return -1;
}

int folds_summarize(const char *path, char *const *ids, int64_t n, const double *dice,
                    int64_t stride)
{
    char *text = read_text(path);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (!cJSON_IsArray(root) || cJSON_GetArraySize(root) < 1) {
        fprintf(stderr, "diffcl eval: %s is not a splits file (a JSON list of folds)\n", path);
        cJSON_Delete(root);
        return 1;
    }
    int k_folds = cJSON_GetArraySize(root), rc = 0;
    double *sum = calloc((size_t)k_folds, sizeof *sum),
           *means = calloc((size_t)k_folds, sizeof *means);
    int64_t *cnt = calloc((size_t)k_folds, sizeof *cnt);
    for (int64_t i = 0; sum && means && cnt && i < n && !rc; i++) {
        int f = fold_of(root, ids[i]);
        if (f < 0) {
            fprintf(stderr, "diffcl eval: case '%s' is in no fold of %s\n", ids[i], path);
            rc = 1;
        } else if (dice[i * stride] == dice[i * stride]) { /* NaN left out */
            sum[f] += dice[i * stride];
            cnt[f]++;
        }
    }
    if (!sum || !means || !cnt) rc = fprintf(stderr, "diffcl eval: out of memory\n") > 0;
    int used = 0;
    for (int f = 0; f < k_folds && !rc; f++) {
        int size = cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetArrayItem(root, f), "val"));
        if (cnt[f] == 0) {
            printf("fold %d: no scored case (of %d)\n", f, size);
            continue;
        }
        means[used++] = sum[f] / (double)cnt[f];
        printf("fold %d: Dice %.4f over %lld of its %d validation cases\n", f, means[used - 1],
               (long long)cnt[f], size);
    }
    if (!rc) {
        double m = 0, sd = 0;
        int64_t nm = 0;
        diffcl_metrics_summarize_ex(means, used, 1, 1, &m, &sd, &nm);
        printf("over %d folds: Dice %.4f +- %.4f (sample std of the fold means)\n", used, m, sd);
    }
    free(sum);
    free(means);
    free(cnt);
    cJSON_Delete(root);
    return rc;
}
