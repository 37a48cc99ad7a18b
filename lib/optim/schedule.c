/* Learning-rate schedules as pure functions, and applying one to an optimizer's groups. */
#include <math.h>

#include "optim/optim_internal.h"

double diffcl_lr_poly(double base, int64_t it, int64_t max_iters, double power)
{
    if (max_iters <= 0) return base;
    double t = it < 0 ? 0 : (it > max_iters ? (double)max_iters : (double)it);
    return base * pow(1.0 - t / (double)max_iters, power);
}

double diffcl_lr_step(double base, int64_t it, int64_t step_size, double gamma)
{
    if (step_size <= 0 || it < 0) return base;
    return base * pow(gamma, (double)(it / step_size));
}

double diffcl_lr_cosine(double base, int64_t it, int64_t max_iters, double min_lr)
{
    if (max_iters <= 0) return base;
    double t = it < 0 ? 0 : (it > max_iters ? (double)max_iters : (double)it);
    return min_lr + (base - min_lr) * (1.0 + cos(M_PI * t / (double)max_iters)) / 2.0;
}

void diffcl_lr_schedule_init(diffcl_lr_schedule *s)
{
    if (!s) return;
    diffcl_lr_schedule d = DIFFCL_LR_SCHEDULE_INIT;
    *s = d;
}

static void read_schedule(diffcl_lr_schedule *dst, const diffcl_lr_schedule *src)
{
    diffcl_lr_schedule d = DIFFCL_LR_SCHEDULE_INIT;
    *dst = d;
    (void)dc_options_read(dst, sizeof *dst, src, 0, 1, "diffcl_lr_schedule"); /* cannot fail */
}

double diffcl_lr_schedule_value(const diffcl_lr_schedule *s, double base, int64_t it)
{
    diffcl_lr_schedule o;
    read_schedule(&o, s);
    switch (o.kind) {
    case DIFFCL_LR_POLY: return diffcl_lr_poly(base, it, o.max_iters, o.power);
    case DIFFCL_LR_STEP: return diffcl_lr_step(base, it, o.step_size, o.gamma);
    case DIFFCL_LR_COSINE: return diffcl_lr_cosine(base, it, o.max_iters, o.min_lr);
    default: return base;
    }
}

diffcl_status diffcl_optimizer_apply_schedule(diffcl_optimizer *opt, const diffcl_lr_schedule *s,
                                              int64_t it)
{
    DC_CHECK_ARG(opt, "diffcl_optimizer_apply_schedule: optimizer is NULL");
    diffcl_lr_schedule o;
    read_schedule(&o, s);
    DC_CHECK_ARG(o.kind >= DIFFCL_LR_CONSTANT && o.kind <= DIFFCL_LR_COSINE,
                 "diffcl_optimizer_apply_schedule: unknown schedule kind %d", o.kind);
    for (int g = 0; g < opt->n_groups; g++) { /* validate all before changing any */
        double lr = diffcl_lr_schedule_value(&o, opt->groups[g].initial_lr, it);
        if (!(lr >= 0) || !isfinite(lr))
            return dc_error(DIFFCL_ERR_INVALID_ARGUMENT,
                            "diffcl_optimizer_apply_schedule: group %d "
                            "would get lr %g",
                            g, lr);
    }
    for (int g = 0; g < opt->n_groups; g++)
        opt->groups[g].o.lr = diffcl_lr_schedule_value(&o, opt->groups[g].initial_lr, it);
    return DIFFCL_OK;
}
