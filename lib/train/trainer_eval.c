/* Validation of the CS during training, as `diffcl infer` then segments the test cases: the
 * sliding window over the whole case with the training patch and half-patch steps (LA's
 * 18,18,4 for its 112,112,80 patch), averaged softmax, argmax. Scored by the foreground Dice
 * only, so a validation costs one segmentation per case and no distance transforms. */
#include <math.h>
#include <stdlib.h>

#include "diffcl/infer.h"
#include "train/trainer_internal.h"

/* The window of `diffcl infer` for a model trained with this patch. */
static diffcl_sliding_window_options window_of(const diffcl_train_options *o)
{
    diffcl_sliding_window_options so = DIFFCL_SLIDING_WINDOW_OPTIONS_INIT;
    for (int a = 0; a < 3; a++) so.patch[a] = o->patch[a];
    diffcl_sliding_window_default_stride(&so);
    return so;
}

/* Dice of class k between two label maps; NaN when both lack it. */
static double dice_of(const uint8_t *p, const uint8_t *r, int64_t n, int k)
{
    int64_t inter = 0, np = 0, nr = 0;
    for (int64_t i = 0; i < n; i++) {
        np += p[i] == k;
        nr += r[i] == k;
        inter += p[i] == k && r[i] == k;
    }
    return np + nr ? 2.0 * (double)inter / (double)(np + nr) : NAN;
}

diffcl_status dc_segment_case(diffcl_trainer *tr, const diffcl_tensor *image,
                              diffcl_tensor **labels)
{
    diffcl_sliding_window_options so = window_of(&tr->o);
    int was_training = diffcl_module_is_training(tr->cs);
    diffcl_module_train(tr->cs, 0);
    diffcl_status s = diffcl_segment(tr->cs, image, &so, labels, NULL);
    diffcl_module_train(tr->cs, was_training);
    return s;
}

diffcl_status dc_trainer_validate(diffcl_trainer *tr, double *mean_dice)
{
    *mean_dice = NAN;
    if (!tr->val_set) return DIFFCL_OK;
    int64_t n = diffcl_dataset_size(tr->val_set), counted = 0;
    double total = 0;
    diffcl_status s = DIFFCL_OK;
    for (int64_t i = 0; i < n && s == DIFFCL_OK; i++) {
        diffcl_tensor *img = NULL, *lab = NULL, *pred = NULL, *ref = NULL;
        s = diffcl_dataset_load(tr->val_set, i, &img, &lab, NULL);
        if (s == DIFFCL_OK && !lab)
            s = dc_error(DIFFCL_ERR_NOT_FOUND, "validation case %s has no label",
                         diffcl_dataset_case_id(tr->val_set, i));
        if (s == DIFFCL_OK) s = dc_segment_case(tr, img, &pred);
        if (s == DIFFCL_OK) s = diffcl_tensor_to_dtype(lab, DIFFCL_U8, &ref);
        if (s == DIFFCL_OK && dc_numel(ref) != dc_numel(pred))
            s = dc_error(DIFFCL_ERR_SHAPE, "validation case %s: label %s, prediction %s",
                         diffcl_dataset_case_id(tr->val_set, i), dc_shape_str(ref),
                         dc_shape_str(pred));
        for (int k = 1; s == DIFFCL_OK && k < tr->o.n_classes; k++) {
            /* a class in neither map counts as 1, as the 0.1.0 metrics did */
            double d = dice_of(dc_data(pred), dc_data(ref), dc_numel(ref), k);
            total += isnan(d) ? 1.0 : d;
            counted++;
        }
        diffcl_tensor_free(img);
        diffcl_tensor_free(lab);
        diffcl_tensor_free(pred);
        diffcl_tensor_free(ref);
    }
    if (s == DIFFCL_OK && counted) *mean_dice = total / (double)counted;
    return s;
}
