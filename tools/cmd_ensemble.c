/* diffcl ensemble: average the probabilities that `diffcl infer --save-probs` wrote (one
 * folder per model) and write the argmax of the mean. Public API only. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <diffcl/diffcl.h>

#include "args.h"
#include "commands.h"
#include "paths.h"

/* The <case>.nii.gz files of @p dir, sorted. -1 when the folder cannot be read. */
static int64_t list_cases(const char *dir, char ***out)
{
    *out = NULL;
    DIR *d = opendir(dir);
    if (!d) return -1;
    char **names = NULL;
    int64_t n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || !ends_with(e->d_name, ".nii.gz")) continue;
        char **grown = realloc(names, sizeof *names * (size_t)(n + 1));
        char *name = grown ? strdup(e->d_name) : NULL;
        if (grown) names = grown;
        if (!name) break; /* out of memory: the cases so far */
        names[n++] = name;
    }
    closedir(d);
    if (n > 1) qsort(names, (size_t)n, sizeof *names, cmp_str);
    *out = names;
    return n;
}

static int same_shape(const diffcl_tensor *x, const diffcl_tensor *y)
{
    if (diffcl_tensor_ndim(x) != diffcl_tensor_ndim(y)) return 0;
    for (int i = 0; i < diffcl_tensor_ndim(x); i++)
        if (diffcl_tensor_dim(x, i) != diffcl_tensor_dim(y, i)) return 0;
    return 1;
}

/* The mean over the folders of one case's probabilities (x, y, z, K), and the first's header.
 * 0, or 1 after printing why not. */
static int mean_probs(diffcl_context *ctx, const ensemble_args *a, const char *name,
                      diffcl_tensor **mean, diffcl_image_meta *meta)
{
    diffcl_tensor *sum = NULL;
    diffcl_status s = DIFFCL_OK;
    int rc = 0;
    for (int k = 0; k < a->n_inputs && !rc; k++) {
        char path[4096];
        join_path(path, sizeof path, a->inputs[k], name);
        diffcl_tensor *p = NULL, *acc = NULL;
        s = diffcl_nifti_read(ctx, path, DIFFCL_NIFTI_IMAGE, &p, k == 0 ? meta : NULL);
        if (s != DIFFCL_OK) {
            fprintf(stderr, "diffcl ensemble: %s\n", diffcl_last_error());
            rc = 1;
        } else if (diffcl_tensor_ndim(p) != 4 || (sum && !same_shape(sum, p))) {
            fprintf(stderr,
                    "diffcl ensemble: %s: not probabilities (x, y, z, K) of the shape in '%s'\n",
                    path, a->inputs[0]);
            rc = 1;
        } else if ((s = sum ? diffcl_add(sum, p, &acc) : (acc = diffcl_tensor_retain(p), s)) !=
                   DIFFCL_OK) {
            fprintf(stderr, "diffcl ensemble: %s: %s\n", path, diffcl_last_error());
            rc = 1;
        }
        diffcl_tensor_free(p);
        diffcl_tensor_free(sum);
        sum = acc;
    }
    if (!rc && diffcl_affine(sum, 1.0 / a->n_inputs, 0.0, mean) != DIFFCL_OK) {
        fprintf(stderr, "diffcl ensemble: %s: %s\n", name, diffcl_last_error());
        rc = 1;
    }
    diffcl_tensor_free(sum);
    return rc;
}

/* The argmax of @p mean (x, y, z, K) as NIfTI with @p meta, or PNG when z = 1. */
static diffcl_status write_label(const diffcl_tensor *mean, const char *out_dir, const char *name,
                                 const diffcl_image_meta *meta)
{
    int perm[4] = {3, 0, 1, 2};
    diffcl_tensor *kxyz = NULL, *label = NULL, *flat = NULL;
    diffcl_status s = diffcl_tensor_permute(mean, perm, &kxyz);
    if (s == DIFFCL_OK) s = diffcl_probs_to_label(kxyz, &label);
    char path[4096], file[1100];
    int png = s == DIFFCL_OK && diffcl_tensor_dim(label, 2) == 1;
    snprintf(file, sizeof file, "%.*s%s", (int)(strlen(name) - strlen(".nii.gz")), name,
             png ? ".png" : ".nii.gz");
    join_path(path, sizeof path, out_dir, file);
    if (s == DIFFCL_OK && png) s = diffcl_tensor_squeeze(label, 2, &flat);
    if (s == DIFFCL_OK)
        s = png ? diffcl_png_write(flat, path, 8) : diffcl_nifti_write(label, path, meta);
    diffcl_tensor_free(kxyz);
    diffcl_tensor_free(label);
    diffcl_tensor_free(flat);
    return s;
}

static int run_case(diffcl_context *ctx, const ensemble_args *a, const char *name)
{
    diffcl_tensor *mean = NULL;
    diffcl_image_meta meta;
    diffcl_image_meta_init(&meta);
    if (mean_probs(ctx, a, name, &mean, &meta)) return 1;
    diffcl_status s = write_label(mean, a->output, name, &meta);
    if (s == DIFFCL_OK && a->save_probs) {
        char path[4096];
        join_path(path, sizeof path, a->save_probs, name);
        s = diffcl_nifti_write(mean, path, &meta);
    }
    diffcl_tensor_free(mean);
    if (s != DIFFCL_OK) {
        fprintf(stderr, "diffcl ensemble: %s: %s\n", name, diffcl_last_error());
        return 1;
    }
    return 0;
}

int cmd_ensemble(int argc, char **argv)
{
    ensemble_args args;
    int rc = ensemble_args_parse(argc, argv, &args);
    if (rc != TOOL_ARGS_RUN) return rc;
    rc = 0;
    for (int k = 0; k < args.n_inputs; k++)
        if (!is_dir(args.inputs[k])) {
            fprintf(stderr, "diffcl ensemble: --input '%s' is not a folder\n", args.inputs[k]);
            return 2;
        }
    char **names = NULL;
    int64_t n = list_cases(args.inputs[0], &names);
    if (n <= 0) {
        fprintf(stderr, "diffcl ensemble: no <case>.nii.gz probabilities in '%s'\n",
                args.inputs[0]);
        free(names);
        return 1;
    }
    const char *dirs[2] = {args.output, args.save_probs};
    for (int k = 0; k < 2 && !rc; k++)
        if (dirs[k] && make_dirs(dirs[k])) {
            fprintf(stderr, "diffcl ensemble: cannot create the folder '%s': %s\n", dirs[k],
                    strerror(errno));
            rc = 1;
        }
    diffcl_context *ctx = NULL;
    if (!rc && tool_context_create(NULL, &ctx) != DIFFCL_OK) {
        fprintf(stderr, "diffcl ensemble: %s\n", diffcl_last_error());
        rc = 1;
    }
    for (int64_t i = 0; i < n; i++) {
        if (ctx) rc |= run_case(ctx, &args, names[i]);
        free(names[i]);
    }
    free(names);
    if (ctx && !rc)
        printf("%lld cases: the mean of %d folders -> %s\n", (long long)n, args.n_inputs,
               args.output);
    diffcl_context_free(ctx);
    return rc;
}
