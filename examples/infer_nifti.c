/* infer_nifti: segment a NIfTI volume (or a 2-D NIfTI image) with a saved model.
 *
 *   infer_nifti MODEL.safetensors IMAGE.nii[.gz] LABEL_OUT.nii[.gz] [PATCH [STRIDE]]
 *
 * MODEL is any file diffcl_model_load() reads: the model.safetensors of a training run
 * (`diffcl train`, examples/train_phantom), what diffcl_model_save() wrote, or a UA-MT /
 * SSL4MIS V-Net checkpoint converted from PyTorch with
 * `pth2safetensors.py iter_6000.pth model.safetensors --vnet dims=3,classes=2` (--vnet writes
 * the model configuration; a plain conversion holds only the weights, which
 * diffcl_module_load() reads into a V-Net you create). IMAGE is read as nibabel shows it
 * ((x, y, z), or (x, y, z, channels)) and segmented with the sliding window. A model trained
 * with a preprocessing plan (plan.h: `diffcl train` on MSD / nnU-Net folders) carries it: the
 * image then goes through diffcl_segment_planned(), which crops, normalises and resamples it
 * as in training and puts the prediction back on the input's grid; a model without one gets
 * the image z-scored per channel (never both). The label map is written with the input's
 * header, so it overlays the input in any viewer. PATCH and STRIDE are "DxHxW" (3-D; default 112x112x80 and 18x18x4, the
 * left-atrium setting) or "HxW" (2-D; default 96x96 and 48x48).
 *
 * Build against an installed libdiffcl:
 *   cc -std=c11 infer_nifti.c $(pkg-config --cflags --libs diffcl) -o infer_nifti
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <diffcl/diffcl.h>

#define CHECK(expr)                                                                          \
    do {                                                                                     \
        diffcl_status check_s_ = (expr);                                                     \
        if (check_s_ != DIFFCL_OK) {                                                         \
            fprintf(stderr, "infer_nifti: %s: %s\n", diffcl_status_string(check_s_),        \
                    diffcl_last_error());                                                    \
            exit(1);                                                                         \
        }                                                                                    \
    } while (0)

/* "112x112x80" -> {112, 112, 80}; "96x96" -> {1, 96, 96}. Returns the number of entries. */
static int parse_size(const char *s, int64_t out[3])
{
    long long v[3];
    int n = sscanf(s, "%lldx%lldx%lld", &v[0], &v[1], &v[2]);
    if (n == 3) {
        out[0] = v[0], out[1] = v[1], out[2] = v[2];
    } else if (n == 2) {
        out[0] = 1, out[1] = v[0], out[2] = v[1];
    }
    return n;
}

/* Progress of the sliding window on one line of stderr. */
static int show_progress(const char *what, int64_t done, int64_t total, const char *msg,
                         void *user)
{
    (void)msg;
    (void)user;
    fprintf(stderr, "\r%s: window %lld / %lld", what, (long long)done, (long long)total);
    if (done == total) fputc('\n', stderr);
    return 0; /* non-zero would cancel */
}

int main(int argc, char **argv)
{
    if (argc < 4 || argc > 6) {
        fprintf(stderr, "usage: %s MODEL.safetensors IMAGE.nii[.gz] LABEL_OUT.nii[.gz] "
                        "[PATCH [STRIDE]]\n", argv[0]);
        return 2;
    }
    if (!diffcl_io_has_nifti()) {
        fprintf(stderr, "infer_nifti: this libdiffcl was built without NIfTI support\n");
        return 2;
    }

    diffcl_context *ctx = NULL;
    CHECK(diffcl_context_create(NULL, &ctx)); /* all cores, log to stderr */
    CHECK(diffcl_context_set_progress(ctx, show_progress, NULL));

    /* 1. the model: its configuration travels in the file */
    diffcl_module *model = NULL;
    CHECK(diffcl_model_load(ctx, argv[1], &model));
    diffcl_module_train(model, 0); /* evaluation mode: running statistics, no dropout */
    /* its preprocessing plan, when it was trained with one (NOT_FOUND: 0.1.0 files, PNG...) */
    diffcl_plan *plan = NULL;
    diffcl_status ps = diffcl_plan_load(argv[1], &plan);
    if (ps != DIFFCL_ERR_NOT_FOUND) CHECK(ps);

    /* 2. the image, as [C, (D), H, W] */
    diffcl_tensor *raw = NULL, *image = NULL, *norm = NULL;
    diffcl_image_meta meta;
    diffcl_image_meta_init(&meta);
    CHECK(diffcl_nifti_read(ctx, argv[2], DIFFCL_NIFTI_IMAGE, &raw, &meta));
    int ndim = diffcl_tensor_ndim(raw);
    if (ndim == 4) { /* (x, y, z, channels): channels first */
        const int perm[4] = {3, 0, 1, 2};
        diffcl_tensor *p = NULL;
        CHECK(diffcl_tensor_permute(raw, perm, &p));
        CHECK(diffcl_tensor_contiguous(p, &image));
        diffcl_tensor_free(p);
    } else if (ndim == 2 || ndim == 3) {
        CHECK(diffcl_tensor_unsqueeze(raw, 0, &image));
    } else {
        fprintf(stderr, "infer_nifti: %s has %d axes; expected 2, 3 or 4\n", argv[2], ndim);
        return 1;
    }
    if (plan) /* the plan normalises: the image goes in as read */
        norm = diffcl_tensor_retain(image);
    else
        CHECK(diffcl_normalize_zscore(image, 0, &norm));
    int spatial = diffcl_tensor_ndim(norm) - 1;

    /* 3. sliding-window segmentation */
    diffcl_sliding_window_options sw;
    diffcl_sliding_window_options_init(&sw);
    if (spatial == 2) {
        const int64_t patch[3] = {1, 96, 96}, stride[3] = {1, 48, 48};
        memcpy(sw.patch, patch, sizeof patch);
        memcpy(sw.stride, stride, sizeof stride);
    }
    if (argc > 4 && parse_size(argv[4], sw.patch) != spatial) {
        fprintf(stderr, "infer_nifti: PATCH needs %d sizes, e.g. %s\n", spatial,
                spatial == 3 ? "112x112x80" : "96x96");
        return 2;
    }
    if (argc > 5 && parse_size(argv[5], sw.stride) != spatial) {
        fprintf(stderr, "infer_nifti: STRIDE needs %d sizes\n", spatial);
        return 2;
    }
    clock_t t0 = clock();
    diffcl_tensor *label = NULL;
    /* with a NULL plan this is diffcl_segment(); with one, the result is on the input grid */
    CHECK(diffcl_segment_planned(model, plan, norm, &meta, &sw, &label, NULL));
    double cpu = (double)(clock() - t0) / CLOCKS_PER_SEC;

    /* 4. the label map, with the input's geometry */
    CHECK(diffcl_nifti_write(label, argv[3], &meta));

    int64_t shape[DIFFCL_MAX_DIMS], counts[256] = {0};
    int n = diffcl_tensor_shape(label, shape);
    const uint8_t *lab = diffcl_tensor_data_const(label); /* a new, contiguous U8 tensor */
    for (int64_t i = 0; i < diffcl_tensor_numel(label); i++) counts[lab[i]]++;
    printf("%s: %s", argv[3], n == 3 ? "volume " : "image ");
    for (int i = 0; i < n; i++) printf("%s%lld", i ? "x" : "", (long long)shape[i]);
    printf(", %.1f s CPU\n", cpu);
    for (int k = 1; k < 256; k++)
        if (counts[k]) printf("  class %d: %lld voxels\n", k, (long long)counts[k]);

    diffcl_tensor_free(label);
    diffcl_tensor_free(norm);
    diffcl_tensor_free(image);
    diffcl_tensor_free(raw);
    diffcl_module_free(model);
    diffcl_plan_free(plan);
    diffcl_context_free(ctx);
    return 0;
}
