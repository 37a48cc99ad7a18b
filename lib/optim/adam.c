/* torch.optim.Adam / AdamW updates (1.13, single-tensor path): moments, bias corrections,
 * optional AMSGrad; L2 weight decay on the gradient (Adam) or decoupled (AdamW). */
#include <math.h>

#include "optim/optim_internal.h"

#define T float
#define SFX f32
#define SQRT sqrtf
#include "optim/adam_kernels.inc"
#define T double
#define SFX f64
#define SQRT sqrt
#include "optim/adam_kernels.inc"

diffcl_status dc_adam_update(diffcl_optimizer *opt, dc_opt_param *pi, const dc_opt_group *grp,
                             const diffcl_tensor *g)
{
    const diffcl_param_group_options *o = &grp->o;
    diffcl_tensor *p = pi->p;
    int need[DC_OPT_NBUF] = {1, 1, o->amsgrad != 0};
    for (int b = 0; b < DC_OPT_NBUF; b++)
        if (need[b] && !pi->buf[b]) {
            pi->buf[b] = dc_tensor_new(p->ctx, p->dtype, p->ndim, p->shape);
            if (!pi->buf[b]) return DIFFCL_ERR_OUT_OF_MEMORY;
        }
    pi->step++;
    double step = (double)pi->step;
    double bc1 = 1.0 - pow(o->beta1, step), bc2 = 1.0 - pow(o->beta2, step);
    double step_size = o->lr / bc1, bc2_sqrt = sqrt(bc2);
    int decoupled = opt->kind == DIFFCL_OPTIM_ADAMW;
    int64_t n = dc_numel(p);
    int nt = dc_threads(opt->ctx);
    diffcl_tensor *vmax = o->amsgrad ? pi->buf[DC_OPT_MAX_SQ] : NULL;
    if (p->dtype == DIFFCL_F32)
        adam_f32(dc_f32(p), dc_f32(g), dc_f32(pi->buf[DC_OPT_EXP_AVG]),
                 dc_f32(pi->buf[DC_OPT_EXP_AVG_SQ]), vmax ? dc_f32(vmax) : NULL, n, decoupled,
                 (float)o->lr, (float)o->weight_decay, (float)o->beta1, (float)o->beta2,
                 (float)o->eps, (float)step_size, (float)bc2_sqrt, o->maximize, nt);
    else
        adam_f64(dc_f64(p), dc_f64(g), dc_f64(pi->buf[DC_OPT_EXP_AVG]),
                 dc_f64(pi->buf[DC_OPT_EXP_AVG_SQ]), vmax ? dc_f64(vmax) : NULL, n, decoupled,
                 o->lr, o->weight_decay, o->beta1, o->beta2, o->eps, step_size, bc2_sqrt,
                 o->maximize, nt);
    return DIFFCL_OK;
}
