/* Validation of the CS during training: segment whole cases, score foreground Dice. */
#include <math.h>
#include <stdlib.h>

#include "diffcl/metrics.h"
#include "train/trainer_internal.h"

diffcl_status dc_segment_case(diffcl_module *cs, const diffcl_tensor *image, diffcl_tensor **labels)
{
    /* Pad every spatial axis symmetrically up to a multiple of 16 (the V-Net halves it four
     * times), run the whole case at once in eval mode, crop the argmax back. */
    *labels = NULL;
    int nd = image->ndim; /* C + spatial */
    int64_t shape[DIFFCL_MAX_DIMS], lo[DIFFCL_MAX_DIMS] = {0};
    shape[0] = 1;
    shape[1] = image->shape[0];
    for (int a = 1; a < nd; a++) {
        int64_t n = image->shape[a], p = (n + 15) / 16 * 16;
        shape[a + 1] = p;
        lo[a] = (p - n) / 2;
    }
    diffcl_tensor *x = dc_tensor_new(image->ctx, DIFFCL_F32, nd + 1, shape);
    if (!x) return DIFFCL_ERR_OUT_OF_MEMORY;
    int64_t off = 0;
    for (int a = 1; a < nd; a++) off += lo[a] * x->strides[a + 1];
    diffcl_tensor *dst = dc_tensor_alias(x, nd, image->shape, x->strides + 1, off);
    diffcl_tensor *src = dst ? dc_contiguous(image) : NULL;
    diffcl_status s =
        src ? diffcl_tensor_copy_from(dst, dc_data(src), (size_t)dc_numel(src) * sizeof(float))
            : DIFFCL_ERR_OUT_OF_MEMORY;
    diffcl_tensor_free(src);
    diffcl_tensor_free(dst);
    int was_training = diffcl_module_is_training(cs);
    int prev = diffcl_set_grad_enabled(image->ctx, 0);
    diffcl_module_train(cs, 0);
    diffcl_tensor *logits = NULL, *am = NULL;
    if (s == DIFFCL_OK) s = diffcl_vnet_forward(cs, x, &logits, NULL);
    if (s == DIFFCL_OK) s = diffcl_argmax(logits, 1, 0, &am); /* [1, spatial...] */
    diffcl_module_train(cs, was_training);
    diffcl_set_grad_enabled(image->ctx, prev);
    if (s == DIFFCL_OK) {
        int64_t off2 = 0;
        for (int a = 1; a < nd; a++) off2 += lo[a] * am->strides[a];
        diffcl_tensor *crop = dc_tensor_alias(am, nd - 1, image->shape + 1, am->strides + 1, off2);
        *labels = crop ? dc_contiguous(crop) : NULL;
        diffcl_tensor_free(crop);
        if (!*labels) s = DIFFCL_ERR_OUT_OF_MEMORY;
    }
    diffcl_tensor_free(logits);
    diffcl_tensor_free(am);
    diffcl_tensor_free(x);
    return s;
}

diffcl_status dc_trainer_validate(diffcl_trainer *tr, double *mean_dice)
{
    *mean_dice = NAN;
    if (!tr->val_set) return DIFFCL_OK;
    int64_t n = diffcl_dataset_size(tr->val_set);
    int k = tr->o.n_classes - 1;
    double total = 0;
    int64_t counted = 0;
    diffcl_seg_metrics *m = calloc((size_t)k, sizeof *m);
    if (!m) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "validation: out of memory");
    diffcl_metric_options mo = DIFFCL_METRIC_OPTIONS_INIT;
    diffcl_status s = DIFFCL_OK;
    for (int64_t i = 0; i < n && s == DIFFCL_OK; i++) {
        diffcl_tensor *img = NULL, *lab = NULL, *pred = NULL;
        s = diffcl_dataset_load(tr->val_set, i, &img, &lab, NULL);
        if (s == DIFFCL_OK && !lab)
            s = dc_error(DIFFCL_ERR_NOT_FOUND, "validation case %s has no label",
                         diffcl_dataset_case_id(tr->val_set, i));
        if (s == DIFFCL_OK) s = dc_segment_case(tr->cs, img, &pred);
        if (s == DIFFCL_OK) s = diffcl_metrics_per_class(pred, lab, tr->o.n_classes, &mo, m);
        for (int c = 0; s == DIFFCL_OK && c < k; c++) {
            total += m[c].dice;
            counted++;
        }
        diffcl_tensor_free(img);
        diffcl_tensor_free(lab);
        diffcl_tensor_free(pred);
    }
    free(m);
    if (s == DIFFCL_OK && counted) *mean_dice = total / (double)counted;
    return s;
}
