/* DiceCE = dice_weight * Dice + ce_weight * CE, composed from the two fused losses through
 * recorded ops (the autograd engine sums their gradients into the logits). */
#include "loss/loss_internal.h"

void diffcl_dice_ce_options_init(diffcl_dice_ce_options *opts)
{
    if (!opts) return;
    diffcl_dice_ce_options d = DIFFCL_DICE_CE_OPTIONS_INIT;
    *opts = d;
}

diffcl_status diffcl_dice_ce_loss(const diffcl_tensor *logits, const diffcl_tensor *target,
                                  const diffcl_dice_ce_options *opts, diffcl_tensor **out,
                                  double parts[2])
{
    static const char *fn = "diffcl_dice_ce_loss";
    DC_CHECK_ARG(out, "%s: out is NULL", fn);
    *out = NULL;
    diffcl_dice_ce_options o;
    DC_LOSS_OPTS(o, opts, DIFFCL_DICE_CE_OPTIONS_INIT);
    if (!isfinite(o.dice_weight) || !isfinite(o.ce_weight))
        return dc_error(DIFFCL_ERR_INVALID_ARGUMENT, "%s: weights must be finite (dice %g, ce %g)",
                        fn, o.dice_weight, o.ce_weight);
    diffcl_dice_options dopt;
    diffcl_ce_options copt;
    DC_LOSS_OPTS(dopt, o.dice, DIFFCL_DICE_OPTIONS_INIT);
    DC_LOSS_OPTS(copt, o.ce, DIFFCL_CE_OPTIONS_INIT);
    if (o.voxel_weight) dopt.voxel_weight = copt.voxel_weight = o.voxel_weight;

    diffcl_tensor *d = NULL, *c = NULL, *dw = NULL, *cwt = NULL;
    diffcl_status s = diffcl_dice_loss(logits, target, &dopt, &d);
    if (s == DIFFCL_OK) s = diffcl_cross_entropy_loss(logits, target, &copt, &c);
    if (s == DIFFCL_OK && parts) {
        diffcl_tensor_item(d, &parts[0]);
        diffcl_tensor_item(c, &parts[1]);
    }
    if (s == DIFFCL_OK) s = diffcl_affine(d, o.dice_weight, 0.0, &dw);
    if (s == DIFFCL_OK) s = diffcl_affine(c, o.ce_weight, 0.0, &cwt);
    if (s == DIFFCL_OK) s = diffcl_add(dw, cwt, out);
    if (s != DIFFCL_OK) dc_error_prefix("%s", fn);
    diffcl_tensor_free(d);
    diffcl_tensor_free(c);
    diffcl_tensor_free(dw);
    diffcl_tensor_free(cwt);
    return s;
}
