/* torch.optim.SGD's update (1.13, single-tensor path): weight decay added to the gradient,
 * a momentum buffer created from the first step's gradient, dampening, Nesterov. */
#include "optim/optim_internal.h"

#define T float
#define SFX f32
#include "optim/sgd_kernels.inc"
#define T double
#define SFX f64
#include "optim/sgd_kernels.inc"

diffcl_status dc_sgd_update(diffcl_optimizer *opt, dc_opt_param *pi, const dc_opt_group *grp,
                            const diffcl_tensor *g)
{
    const diffcl_param_group_options *o = &grp->o;
    diffcl_tensor *p = pi->p;
    int first = 0;
    if (o->momentum != 0 && !pi->buf[DC_OPT_MOMENTUM]) {
        pi->buf[DC_OPT_MOMENTUM] = dc_tensor_empty(p->ctx, p->dtype, p->ndim, p->shape);
        if (!pi->buf[DC_OPT_MOMENTUM]) return DIFFCL_ERR_OUT_OF_MEMORY;
        first = 1;
    }
    diffcl_tensor *buf = o->momentum != 0 ? pi->buf[DC_OPT_MOMENTUM] : NULL;
    int64_t n = dc_numel(p);
    int nt = dc_threads(opt->ctx);
    if (p->dtype == DIFFCL_F32)
        sgd_f32(dc_f32(p), dc_f32(g), buf ? dc_f32(buf) : NULL, first, n, (float)o->lr,
                (float)o->weight_decay, (float)o->momentum, (float)o->dampening, o->nesterov,
                o->maximize, nt);
    else
        sgd_f64(dc_f64(p), dc_f64(g), buf ? dc_f64(buf) : NULL, first, n, o->lr, o->weight_decay,
                o->momentum, o->dampening, o->nesterov, o->maximize, nt);
    pi->step++;
    return DIFFCL_OK;
}
