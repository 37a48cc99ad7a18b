/* diffcl_segment_planned: the sliding window on an image prepared by a preprocessing plan,
 * the probabilities put back on the input grid (plan.h). */
#include "core/core_internal.h"
#include "diffcl/infer.h"

diffcl_status diffcl_segment_planned(diffcl_module *model, const diffcl_plan *plan,
                                     const diffcl_tensor *image, const diffcl_image_meta *meta,
                                     const diffcl_sliding_window_options *opts,
                                     diffcl_tensor **label, diffcl_tensor **probs)
{
    const char *fn = "diffcl_segment_planned";
    DC_CHECK_ARG(label, "%s: label must not be NULL", fn);
    *label = NULL;
    if (probs) *probs = NULL;
    if (!plan) return diffcl_segment(model, image, opts, label, probs);
    DC_CHECK_ARG(model && image, "%s: model and image must not be NULL", fn);
    diffcl_sliding_window_options o = DIFFCL_SLIDING_WINDOW_OPTIONS_INIT;
    DC_TRY(dc_options_read(&o, sizeof o, opts, 0, 0, fn)); /* checked by diffcl_sliding_window */
    diffcl_plan_geometry g = DIFFCL_PLAN_GEOMETRY_INIT;
    diffcl_tensor *planned = NULL, *pp = NULL, *p = NULL, *l = NULL;
    diffcl_status s = diffcl_plan_apply(plan, image, NULL, meta, &planned, NULL, &g);
    if (s == DIFFCL_OK) s = diffcl_sliding_window(model, planned, opts, &pp);
    diffcl_tensor_free(planned);
    if (s == DIFFCL_OK) s = diffcl_plan_invert(plan, pp, &g, &p);
    diffcl_tensor_free(pp);
    if (s == DIFFCL_OK) s = diffcl_probs_to_label(p, &l);
    if (s == DIFFCL_OK && o.largest_cc) {
        diffcl_tensor *cc = NULL;
        s = diffcl_largest_component(l, 0, &cc);
        diffcl_tensor_free(l);
        l = cc;
    }
    if (s != DIFFCL_OK) {
        diffcl_tensor_free(p);
        diffcl_tensor_free(l);
        return s;
    }
    *label = l;
    if (probs)
        *probs = p;
    else
        diffcl_tensor_free(p);
    return DIFFCL_OK;
}
