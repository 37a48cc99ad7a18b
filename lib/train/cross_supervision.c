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

/* The voxels of one sample that may be drawn: U8 [V] of base != 0 (everywhere when NULL) and,
 * for k >= 0, label == k. */
static diffcl_tensor *sample_mask(diffcl_context *ctx, const float *base, const int64_t *lab,
                                  int64_t V, int64_t k)
{
    diffcl_tensor *m = dc_tensor_empty(ctx, DIFFCL_U8, 1, &V);
    if (!m) return NULL;
    uint8_t *mp = dc_data(m);
    for (int64_t i = 0; i < V; i++) mp[i] = (k < 0 || lab[i] == k) && (!base || base[i] != 0.0f);
    return m;
}

/* Each sample's quota: o->contrast_voxels is per rank and iteration, like the batch, so a
 * sample's share does not depend on the number of ranks or on which samples share its rank:
 * contrast_voxels / batch_unlabeled (at least 1; 0: none; negative: all). */
static int64_t sample_quota(const diffcl_train_options *o)
{
    if (o->contrast_voxels <= 0) return o->contrast_voxels < 0 ? -1 : 0;
    int64_t q = o->contrast_voxels / (o->batch_unlabeled > 0 ? o->batch_unlabeled : 1);
    return q > 0 ? q : 1;
}

diffcl_status dc_contrast_voxels(const diffcl_train_options *o, const diffcl_tensor *base,
                                 const diffcl_tensor *labels, const uint32_t *samples, uint32_t it,
                                 diffcl_tensor **voxels)
{
    *voxels = NULL;
    if (labels->dtype != DIFFCL_I64 || labels->ndim < 1 ||
        (base && (base->dtype != DIFFCL_F32 || dc_numel(base) != dc_numel(labels))))
        return dc_error(DIFFCL_ERR_INTERNAL, "contrastive voxels: unexpected label or mask");
    diffcl_context *ctx = labels->ctx;
    int64_t N = labels->shape[0], V = N > 0 ? dc_numel(labels) / N : 0;
    int k_n = o->n_classes, parts_per = o->contrast_balanced ? k_n : 1;
    int64_t quota = sample_quota(o);
    if (o->contrast_balanced && quota >= 0) /* an equal quota per class */
        quota = quota / k_n > 0 ? quota / k_n : 1;
    diffcl_tensor *lc = dc_contiguous(labels), *bc = base ? dc_contiguous(base) : NULL;
    diffcl_tensor **parts =
        dc_calloc_raw((size_t)(N * parts_per > 0 ? N * parts_per : 1), sizeof *parts);
    diffcl_status s = lc && (!base || bc) && parts ? DIFFCL_OK : DIFFCL_ERR_OUT_OF_MEMORY;
    for (int64_t n = 0; n < N && s == DIFFCL_OK; n++) {
        uint32_t g = samples ? samples[n] : (uint32_t)n;
        const int64_t *lab = (const int64_t *)dc_data(lc) + n * V;
        const float *b = bc ? dc_f32(bc) + n * V : NULL;
        for (int p = 0; p < parts_per && s == DIFFCL_OK; p++) {
            /* part p of sample g: index g (K + 1) + p + balanced (0 uniform, k + 1 class k) */
            uint32_t part = (uint32_t)(p + (o->contrast_balanced ? 1 : 0));
            diffcl_tensor *m = sample_mask(ctx, b, lab, V, o->contrast_balanced ? p : -1);
            diffcl_tensor **out = &parts[n * parts_per + p];
            if (!m) s = DIFFCL_ERR_OUT_OF_MEMORY;
            DC_STEP(diffcl_sample_voxels(
                m, quota,
                diffcl_rng_key_make(o->seed, STREAM_VOXELS, g * (uint32_t)(k_n + 1) + part, it),
                out));
            diffcl_tensor_free(m);
            if (s != DIFFCL_OK) break;
            int64_t *pos = dc_data(*out), cnt = dc_numel(*out);
            dc_draw_report(ctx, DC_DRAW_VOXELS, STREAM_VOXELS, g, part, pos,
                           (size_t)cnt * sizeof *pos);
            for (int64_t i = 0; i < cnt; i++) pos[i] += n * V; /* into the batch's flat voxels */
        }
    }
    if (s == DIFFCL_OK) { /* the parts one after the other: sample by sample, class by class */
        int64_t total = 0, at = 0;
        for (int64_t i = 0; i < N * parts_per; i++) total += dc_numel(parts[i]);
        *voxels = dc_tensor_empty(ctx, DIFFCL_I64, 1, &total);
        if (!*voxels) s = DIFFCL_ERR_OUT_OF_MEMORY;
        for (int64_t i = 0; s == DIFFCL_OK && i < N * parts_per; i++) {
            int64_t cnt = dc_numel(parts[i]);
            if (cnt)
                memcpy((int64_t *)dc_data(*voxels) + at, dc_data(parts[i]),
                       (size_t)cnt * sizeof(int64_t));
            at += cnt;
        }
    }
    for (int64_t i = 0; parts && i < N * parts_per; i++) diffcl_tensor_free(parts[i]);
    free(parts);
    diffcl_tensor_free(lc);
    diffcl_tensor_free(bc);
    return s;
}
