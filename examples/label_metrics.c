/* label_metrics: compare two label maps class by class (Dice, Jaccard, HD95, ASD, ASSD).
 *
 *   label_metrics PREDICTION REFERENCE [N_CLASSES]
 *
 * Files: NIfTI (.nii, .nii.gz; distances in the reference's voxel spacing, e.g. mm) or PNG
 * (8-bit or palette class indices; distances in pixels). N_CLASSES defaults to the largest
 * class in either file + 1; class 0 is the background and is not scored. Definitions are
 * medpy's (as the semi-supervised benchmarks report them): include/diffcl/metrics.h.
 *
 * Build against an installed libdiffcl:
 *   cc -std=c11 label_metrics.c $(pkg-config --cflags --libs diffcl) -o label_metrics
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <diffcl/diffcl.h>

#define CHECK(expr)                                                                          \
    do {                                                                                     \
        diffcl_status check_s_ = (expr);                                                     \
        if (check_s_ != DIFFCL_OK) {                                                         \
            fprintf(stderr, "label_metrics: %s: %s\n", diffcl_status_string(check_s_),      \
                    diffcl_last_error());                                                    \
            exit(1);                                                                         \
        }                                                                                    \
    } while (0)

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Read a label file by its extension; @meta receives the spacing of NIfTI files. */
static diffcl_tensor *read_label(diffcl_context *ctx, const char *path, diffcl_image_meta *meta)
{
    diffcl_tensor *t = NULL;
    diffcl_image_meta_init(meta);
    if (ends_with(path, ".png"))
        CHECK(diffcl_png_read_label(ctx, path, &t));
    else if (ends_with(path, ".nii") || ends_with(path, ".nii.gz"))
        CHECK(diffcl_nifti_read(ctx, path, DIFFCL_NIFTI_LABEL, &t, meta));
    else {
        fprintf(stderr, "label_metrics: %s: not .nii, .nii.gz or .png\n", path);
        exit(2);
    }
    return t;
}

/* Largest class index in a U8 label map. */
static int max_class(const diffcl_tensor *t)
{
    diffcl_tensor *c = NULL;
    CHECK(diffcl_tensor_contiguous(t, &c));
    const uint8_t *v = diffcl_tensor_data_const(c);
    int m = 0;
    for (int64_t i = 0; i < diffcl_tensor_numel(c); i++)
        if (v[i] > m) m = v[i];
    diffcl_tensor_free(c);
    return m;
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: %s PREDICTION REFERENCE [N_CLASSES]\n", argv[0]);
        return 2;
    }
    diffcl_context *ctx = NULL;
    CHECK(diffcl_context_create(NULL, &ctx));

    diffcl_image_meta pmeta, rmeta;
    diffcl_tensor *pred = read_label(ctx, argv[1], &pmeta);
    diffcl_tensor *ref = read_label(ctx, argv[2], &rmeta);
    int pc = max_class(pred), rc = max_class(ref);
    int n_classes = argc > 3 ? atoi(argv[3]) : (pc > rc ? pc : rc) + 1;
    if (n_classes < 2) n_classes = 2; /* two empty maps: score class 1 anyway */

    diffcl_metric_options mopt;
    diffcl_metric_options_init(&mopt);
    for (int i = 0; i < rmeta.ndim && i < 3; i++) mopt.spacing[i] = rmeta.spacing[i];
    mopt.empty_policy = DIFFCL_EMPTY_NAN; /* undefined distances print as nan */

    diffcl_seg_metrics *m = calloc((size_t)n_classes - 1, sizeof *m);
    if (!m) return 1;
    CHECK(diffcl_metrics_per_class(pred, ref, n_classes, &mopt, m));

    printf("class      dice   jaccard      hd95       asd      assd    voxels(pred/ref)\n");
    for (int k = 1; k < n_classes; k++) {
        const diffcl_seg_metrics *r = &m[k - 1];
        printf("%5d  %8.4f  %8.4f  %8.3f  %8.3f  %8.3f    %lld/%lld\n", k, r->dice, r->jaccard,
               r->hd95, r->asd, r->assd, (long long)r->n_pred, (long long)r->n_ref);
    }
    if (n_classes > 2) {
        double mean, sd;
        int64_t n;
        const int64_t stride = sizeof(diffcl_seg_metrics) / sizeof(double);
        CHECK(diffcl_metrics_summarize(&m[0].dice, n_classes - 1, stride, &mean, &sd, &n));
        printf(" mean  %8.4f (sd %.4f over %lld classes)\n", mean, sd, (long long)n);
    }

    free(m);
    diffcl_tensor_free(ref);
    diffcl_tensor_free(pred);
    diffcl_context_free(ctx);
    return 0;
}
