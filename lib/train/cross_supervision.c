/* Cross pseudo supervision of the CS by the DS, and the contrastive voxel sample.
 *
 * L^c_p is the CS's Dice + CE against the DS's pseudo label. Which voxels count, and how
 * much, is the variant (diffcl_cps_variant). In 0.1.0 only the agreement variant existed:
 * CE, and by default Dice, only where the CS's own argmax equals the DS label. Every
 * weighted voxel then has the CS's own label as its target, so L^c_p was self-training and
 * the DS could never correct the CS. The plain and confidence variants give the CS a gradient
 * towards the DS label exactly where the two disagree. */
#include <stdlib.h>
#include <string.h>

#include "diffcl/loss.h"
#include "train/trainer_internal.h"

/* Per-voxel weight of the DS label: its smoothed probability, or 1/0 above/below a threshold. */
static diffcl_status confidence_weight(const diffcl_tensor *pseudo, const diffcl_tensor *probs,
                                       double threshold, diffcl_tensor **out)
{
    *out = NULL;
    if (!probs || probs->dtype != DIFFCL_F32 || probs->ndim != pseudo->ndim + 1 ||
        probs->shape[0] != pseudo->shape[0])
        return dc_error(DIFFCL_ERR_SHAPE,
                        "cross supervision: the DS probabilities do not match its pseudo label");
    diffcl_tensor *w = dc_tensor_empty(pseudo->ctx, DIFFCL_F32, pseudo->ndim, pseudo->shape);
    if (!w) return DIFFCL_ERR_OUT_OF_MEMORY;
    int64_t n = pseudo->shape[0], c = probs->shape[1], v = dc_numel(pseudo) / (n ? n : 1);
    const int64_t *lab = dc_data(pseudo);
    const float *p = dc_f32(probs);
    float *wp = dc_f32(w);
    for (int64_t b = 0; b < n; b++)
        for (int64_t i = 0; i < v; i++) {
            int64_t k = lab[b * v + i];
            float conf = k >= 0 && k < c ? p[(b * c + k) * v + i] : 0.0f;
            wp[b * v + i] = threshold > 0 ? (conf >= threshold ? 1.0f : 0.0f) : conf;
        }
    *out = w;
    return DIFFCL_OK;
}

diffcl_status dc_cs_pseudo_loss(const diffcl_train_options *o, const diffcl_tensor *logits,
                                const diffcl_tensor *pseudo, const diffcl_tensor *probs,
                                const diffcl_tensor *agree, diffcl_tensor **loss)
{
    *loss = NULL;
    diffcl_ce_options ce = DIFFCL_CE_OPTIONS_INIT;
    diffcl_dice_ce_options dce = DIFFCL_DICE_CE_OPTIONS_INIT;
    dce.ce = &ce;
    diffcl_tensor *w = NULL;
    switch (o->cps_variant) {
    case DIFFCL_CPS_AGREEMENT: /* 0.1.0: both terms only where the CS already agrees */
        if (!agree)
            return dc_error(DIFFCL_ERR_INVALID_ARGUMENT,
                            "cross supervision: agreement mask missing");
        ce.voxel_weight = agree;
        if (o->pseudo_mask_dice) dce.voxel_weight = agree;
        break;
    case DIFFCL_CPS_PLAIN: /* CPS (Chen et al. 2021): the whole pseudo label, no weighting */ break;
    case DIFFCL_CPS_CONFIDENCE: /* CE trusts confident DS voxels; Dice sees the whole label */
        DC_TRY(confidence_weight(pseudo, probs, o->cps_confidence, &w));
        ce.voxel_weight = w;
        break;
    default:
        return dc_error(DIFFCL_ERR_INVALID_ARGUMENT, "cross supervision: unknown variant %d",
                        (int)o->cps_variant);
    }
    diffcl_status s = diffcl_dice_ce_loss(logits, pseudo, &dce, loss, NULL);
    diffcl_tensor_free(w);
    return s;
}

/* U8 mask: base (or everywhere when NULL) and label == k. */
static diffcl_tensor *class_mask(const diffcl_tensor *base, const diffcl_tensor *labels, int64_t k)
{
    diffcl_tensor *m = dc_tensor_empty(labels->ctx, DIFFCL_U8, labels->ndim, labels->shape);
    if (!m) return NULL;
    const int64_t *lab = dc_data(labels);
    const float *b = base ? dc_f32(base) : NULL;
    uint8_t *mp = dc_data(m);
    for (int64_t i = 0; i < dc_numel(labels); i++) mp[i] = lab[i] == k && (!b || b[i] != 0.0f);
    return m;
}

diffcl_status dc_contrast_voxels(const diffcl_train_options *o, const diffcl_tensor *base,
                                 const diffcl_tensor *labels, uint32_t it, diffcl_tensor **voxels)
{
    *voxels = NULL;
    if (!o->contrast_balanced) { /* 0.1.0: uniform over the mask (or every voxel), mostly background */
        diffcl_tensor *all = NULL;
        if (!base) {
            all = dc_tensor_empty(labels->ctx, DIFFCL_U8, labels->ndim, labels->shape);
            if (!all) return DIFFCL_ERR_OUT_OF_MEMORY;
            memset(dc_data(all), 1, (size_t)dc_numel(all));
        }
        diffcl_status s =
            diffcl_sample_voxels(base ? base : all, o->contrast_voxels,
                                 diffcl_rng_key_make(o->seed, STREAM_VOXELS, 0, it), voxels);
        diffcl_tensor_free(all);
        return s;
    }
    /* class-balanced: an equal quota per class, so the foreground is not drowned out */
    int k_n = o->n_classes;
    int64_t quota = o->contrast_voxels / k_n > 0 ? o->contrast_voxels / k_n : 1;
    diffcl_tensor **parts = calloc((size_t)k_n, sizeof *parts);
    if (!parts) return DIFFCL_ERR_OUT_OF_MEMORY;
    diffcl_status s = DIFFCL_OK;
    for (int k = 0; k < k_n && s == DIFFCL_OK; k++) {
        diffcl_tensor *m = class_mask(base, labels, k);
        if (!m) s = DIFFCL_ERR_OUT_OF_MEMORY;
        if (s == DIFFCL_OK)
            s = diffcl_sample_voxels(
                m, quota, diffcl_rng_key_make(o->seed, STREAM_VOXELS, (uint32_t)k + 1, it),
                &parts[k]);
        diffcl_tensor_free(m);
    }
    if (s == DIFFCL_OK) s = diffcl_tensor_concat(parts, k_n, 0, voxels);
    for (int k = 0; k < k_n; k++) diffcl_tensor_free(parts[k]);
    free(parts);
    return s;
}
