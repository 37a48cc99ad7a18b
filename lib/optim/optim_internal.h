/* Internal optimizer structures shared by the optim layer's files. */
#ifndef DIFFCL_OPTIM_INTERNAL_H
#define DIFFCL_OPTIM_INTERNAL_H

#include "diffcl/optim.h"
#include "tensor/tensor_internal.h"

/* Buffer slots: SGD uses 0 (momentum); Adam 0 (exp_avg), 1 (exp_avg_sq), 2 (max_exp_avg_sq). */
enum { DC_OPT_MOMENTUM = 0, DC_OPT_EXP_AVG = 0, DC_OPT_EXP_AVG_SQ = 1, DC_OPT_MAX_SQ = 2 };
#define DC_OPT_NBUF 3

/* Elements above which the update kernels go parallel. */
#define DC_OPT_PAR_MIN 16384

typedef struct dc_opt_param {
    diffcl_tensor *p; /* retained */
    char *name;       /* may be NULL */
    int group;
    int64_t step;                    /* updates applied (Adam's bias-correction step) */
    diffcl_tensor *buf[DC_OPT_NBUF]; /* contiguous, the parameter's dtype, or NULL */
} dc_opt_param;

typedef struct dc_opt_group {
    diffcl_param_group_options o;
    double initial_lr;
    int first, count; /* parameters [first, first + count) */
} dc_opt_group;

struct diffcl_optimizer {
    diffcl_context *ctx;
    diffcl_optim_kind kind;
    int n_params, cap_params;
    dc_opt_param *params;
    int n_groups, cap_groups;
    dc_opt_group *groups;
    int64_t steps;
};

/* One SGD / Adam(W) update of parameter @p pi with its (contiguous) gradient @p g. */
diffcl_status dc_sgd_update(diffcl_optimizer *opt, dc_opt_param *pi, const dc_opt_group *grp,
                            const diffcl_tensor *g);
diffcl_status dc_adam_update(diffcl_optimizer *opt, dc_opt_param *pi, const dc_opt_group *grp,
                             const diffcl_tensor *g);

/* Validate group options (message names @p fn). */
diffcl_status dc_opt_check_group(const char *fn, diffcl_optim_kind kind,
                                 const diffcl_param_group_options *o);

/* Copy the caller's group options over the defaults (only the fields its version knew). */
void dc_opt_read_group(diffcl_param_group_options *dst, const diffcl_param_group_options *src);

#endif
