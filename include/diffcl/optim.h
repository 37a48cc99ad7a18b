/**
 * @file optim.h
 * @brief Optimizers (SGD with momentum / Nesterov, Adam, AdamW) over parameter groups,
 *        learning-rate schedules, gradient clipping, and optimizer-state checkpoints.
 *
 * The update rules are torch.optim's (1.13) to the letter: SGD's lazily created momentum
 * buffer (the first step copies the gradient, no dampening), weight decay added to the
 * gradient (SGD, Adam) or decoupled (AdamW: p *= 1 - lr * wd), Adam's bias corrections and
 * optional AMSGrad. Updates run in place on the parameters' data, are not recorded by
 * autograd, and skip parameters whose gradient is absent (as PyTorch skips grad None).
 *
 * Thread safety: an optimizer and its parameters are used by one thread at a time, as their
 * context (core.h). The learning-rate functions (diffcl_lr_*) are pure and thread-safe.
 *
 * Ownership: diffcl_optimizer_create() hands out an optimizer the caller owns
 * (diffcl_optimizer_free()); it holds its own references to the parameters it updates, so
 * diffcl_optimizer_param() returns a borrowed pointer that lives as long as the optimizer.
 * diffcl_optimizer_state_dict() hands out a new dictionary the caller owns
 * (diffcl_tensor_dict_free()).
 *
 * Errors: DIFFCL_ERR_INVALID_ARGUMENT for a NULL optimizer, out-pointer, bad group index or
 * option value, DIFFCL_ERR_OUT_OF_MEMORY, and the codes named per function; the detail is
 * in diffcl_last_error().
 */
#ifndef DIFFCL_OPTIM_H
#define DIFFCL_OPTIM_H

#include "diffcl/checkpoint.h"
#include "diffcl/module.h"

DIFFCL_BEGIN_DECLS

typedef struct diffcl_optimizer diffcl_optimizer;

/** The update rule of an optimizer (fixed at creation). */
typedef enum diffcl_optim_kind {
    DIFFCL_OPTIM_SGD = 0,  /**< torch.optim.SGD */
    DIFFCL_OPTIM_ADAM = 1, /**< torch.optim.Adam (L2 weight decay added to the gradient) */
    DIFFCL_OPTIM_ADAMW = 2 /**< torch.optim.AdamW (decoupled weight decay) */
} diffcl_optim_kind;

/** Hyper-parameters of one parameter group; fields a kind does not use are ignored. */
typedef struct diffcl_param_group_options {
    size_t struct_size;  /**< sizeof(diffcl_param_group_options) */
    double lr;           /**< learning rate, default 0.01 */
    double weight_decay; /**< default 0 (note: torch's AdamW defaults to 0.01) */
    double momentum;     /**< SGD, default 0 */
    double dampening;    /**< SGD, default 0 */
    int nesterov;        /**< SGD, default 0; needs momentum > 0 and dampening 0 */
    double beta1;        /**< Adam/AdamW, default 0.9 */
    double beta2;        /**< Adam/AdamW, default 0.999 */
    double eps;          /**< Adam/AdamW, default 1e-8 */
    int amsgrad;         /**< Adam/AdamW, default 0 */
    int maximize;        /**< ascend instead of descend, default 0 */
} diffcl_param_group_options;

#define DIFFCL_PARAM_GROUP_OPTIONS_INIT                                                            \
    {                                                                                              \
        sizeof(diffcl_param_group_options), 0.01, 0.0, 0.0, 0.0, 0, 0.9, 0.999, 1e-8, 0, 0         \
    }
/** Fill @p opts with the defaults (same as DIFFCL_PARAM_GROUP_OPTIONS_INIT). */
DIFFCL_API void diffcl_param_group_options_init(diffcl_param_group_options *opts);

/** Create an optimizer with no parameters. The caller owns @p *out (diffcl_optimizer_free). */
DIFFCL_API diffcl_status diffcl_optimizer_create(diffcl_context *ctx, diffcl_optim_kind kind,
                                                 diffcl_optimizer **out);
/** Release the optimizer, its state and its references to the parameters. NULL is ignored. */
DIFFCL_API void diffcl_optimizer_free(diffcl_optimizer *opt);
/** The optimizer's kind. */
DIFFCL_API diffcl_optim_kind diffcl_optimizer_kind(const diffcl_optimizer *opt);

/**
 * Add a parameter group. @p params: @p n_params contiguous F32/F64 leaf tensors of the
 * optimizer's context (the optimizer retains them); a tensor may belong to one group only.
 * @p names (may be NULL, or entries NULL) name them in the state dictionary's metadata.
 * @p opts may be NULL for the defaults; invalid values (lr < 0, momentum < 0, betas outside
 * [0,1), eps < 0 for Adam/AdamW (0 is allowed, as in torch.optim.Adam: a parameter whose
 * gradient stays 0 then gets 0/0 = NaN), nesterov without momentum or with dampening) give
 * DIFFCL_ERR_INVALID_ARGUMENT. @p group_index (may be NULL) receives the new group's index.
 * Parameters are numbered in the order they are added, across groups.
 */
DIFFCL_API diffcl_status diffcl_optimizer_add_group(diffcl_optimizer *opt,
                                                    diffcl_tensor *const *params, int n_params,
                                                    const char *const *names,
                                                    const diffcl_param_group_options *opts,
                                                    int *group_index);

/**
 * Add every parameter of @p module (in its state order, named by their dotted names).
 * With @p no_decay_1d set, parameters of rank <= 1 (biases, norm weights) go to a second
 * group with the same options but weight_decay 0; otherwise all go to one group.
 * @p groups (may be NULL) receives {index of the main group, index of the no-decay group},
 * -1 for a group that was not created because it would be empty.
 */
DIFFCL_API diffcl_status diffcl_optimizer_add_module(diffcl_optimizer *opt,
                                                     const diffcl_module *module,
                                                     const diffcl_param_group_options *opts,
                                                     int no_decay_1d, int groups[2]);

/** Number of parameter groups (0 for NULL). */
DIFFCL_API int diffcl_optimizer_num_groups(const diffcl_optimizer *opt);
/** Number of parameters over all groups (0 for NULL). */
DIFFCL_API int diffcl_optimizer_num_params(const diffcl_optimizer *opt);
/** Parameter @p i (borrowed), or NULL when out of range. */
DIFFCL_API diffcl_tensor *diffcl_optimizer_param(const diffcl_optimizer *opt, int i);
/** Number of completed diffcl_optimizer_step() calls (restored by load_state_dict). */
DIFFCL_API int64_t diffcl_optimizer_steps(const diffcl_optimizer *opt);

/** Copy group @p group's options into @p *opts. */
DIFFCL_API diffcl_status diffcl_optimizer_get_group(const diffcl_optimizer *opt, int group,
                                                    diffcl_param_group_options *opts);
/** Replace group @p group's options (validated as in add_group); also resets its initial lr. */
DIFFCL_API diffcl_status diffcl_optimizer_set_group(diffcl_optimizer *opt, int group,
                                                    const diffcl_param_group_options *opts);
/** Set the current learning rate of group @p group, or of every group when @p group is -1. */
DIFFCL_API diffcl_status diffcl_optimizer_set_lr(diffcl_optimizer *opt, int group, double lr);
/** The current learning rate of group @p group. */
DIFFCL_API diffcl_status diffcl_optimizer_get_lr(const diffcl_optimizer *opt, int group,
                                                 double *lr);

/** One update of every parameter that has a gradient. Not recorded by autograd. */
DIFFCL_API diffcl_status diffcl_optimizer_step(diffcl_optimizer *opt);
/** Drop the gradients of every parameter (diffcl_tensor_zero_grad on each). */
DIFFCL_API void diffcl_optimizer_zero_grad(diffcl_optimizer *opt);

/**
 * The state as a new dictionary: metadata "optimizer" ("sgd", "adam", "adamw") and
 * "param.<i>.name"; 0-d F64 tensors "steps", "param_groups.<g>.<field>" (lr, initial_lr,
 * weight_decay, momentum, dampening, nesterov, beta1, beta2, eps, amsgrad, maximize),
 * I64 "param_groups.<g>.params" (parameter numbers), and per parameter i with state
 * "state.<i>.step" (0-d F64) and its buffers "state.<i>.momentum_buffer" (SGD),
 * "state.<i>.exp_avg", "state.<i>.exp_avg_sq", "state.<i>.max_exp_avg_sq" (Adam).
 * The buffer entries reference the optimizer's live tensors (no copy): save the
 * dictionary before the next step, or clone what you keep. Caller frees the dictionary.
 */
DIFFCL_API diffcl_status diffcl_optimizer_state_dict(const diffcl_optimizer *opt,
                                                     diffcl_tensor_dict **out);
/**
 * Restore a state written by diffcl_optimizer_state_dict() into an optimizer built with
 * the same kind, groups and parameter shapes (values are copied, converting the dtype).
 * Hyper-parameters, step counts and buffers are restored; a parameter without state entries
 * gets its state cleared. A mismatch gives DIFFCL_ERR_STATE / DIFFCL_ERR_SHAPE /
 * DIFFCL_ERR_NOT_FOUND naming the entry, and leaves the optimizer unchanged.
 */
DIFFCL_API diffcl_status diffcl_optimizer_load_state_dict(diffcl_optimizer *opt,
                                                          const diffcl_tensor_dict *dict);

/* ------------------------------------------------------------ gradient clipping ---- */

/**
 * torch.nn.utils.clip_grad_norm_: the @p norm_type norm (> 0, or INFINITY) of all gradients
 * together; when it exceeds @p max_norm every gradient is scaled by max_norm / (norm + 1e-6).
 * Parameters without a gradient are skipped. @p total_norm (may be NULL) receives the norm
 * before clipping. A non-finite norm gives DIFFCL_ERR_NUMERIC and leaves the gradients as
 * they are (the caller should skip the step).
 */
DIFFCL_API diffcl_status diffcl_clip_grad_norm(diffcl_tensor *const *params, int n_params,
                                               double max_norm, double norm_type,
                                               double *total_norm);
/** diffcl_clip_grad_norm() over every parameter of @p opt. */
DIFFCL_API diffcl_status diffcl_optimizer_clip_grad_norm(diffcl_optimizer *opt, double max_norm,
                                                         double norm_type, double *total_norm);

/* --------------------------------------------------------------- LR schedules ---- */

/** Poly decay (UA-MT): base * (1 - min(it, max_iters) / max_iters)^power (power 0.9). */
DIFFCL_API double diffcl_lr_poly(double base, int64_t it, int64_t max_iters, double power);
/** Step decay (StepLR): base * gamma^floor(it / step_size). */
DIFFCL_API double diffcl_lr_step(double base, int64_t it, int64_t step_size, double gamma);
/**
 * Cosine annealing (CosineAnnealingLR's closed form):
 * min_lr + (base - min_lr) (1 + cos(pi min(it, max_iters) / max_iters)) / 2.
 */
DIFFCL_API double diffcl_lr_cosine(double base, int64_t it, int64_t max_iters, double min_lr);

typedef enum diffcl_lr_schedule_kind {
    DIFFCL_LR_CONSTANT = 0,
    DIFFCL_LR_POLY = 1,
    DIFFCL_LR_STEP = 2,
    DIFFCL_LR_COSINE = 3
} diffcl_lr_schedule_kind;

/** A learning-rate schedule (the fields its kind uses). */
typedef struct diffcl_lr_schedule {
    size_t struct_size; /**< sizeof(diffcl_lr_schedule) */
    int kind;           /**< a diffcl_lr_schedule_kind, default DIFFCL_LR_POLY */
    int64_t max_iters;  /**< poly, cosine: default 10000 */
    double power;       /**< poly: default 0.9 */
    int64_t step_size;  /**< step: default 2500 */
    double gamma;       /**< step: default 0.1 */
    double min_lr;      /**< cosine: default 0 */
} diffcl_lr_schedule;

#define DIFFCL_LR_SCHEDULE_INIT                                                                    \
    {                                                                                              \
        sizeof(diffcl_lr_schedule), DIFFCL_LR_POLY, 10000, 0.9, 2500, 0.1, 0.0                     \
    }
/** Fill @p s with the defaults (same as DIFFCL_LR_SCHEDULE_INIT). */
DIFFCL_API void diffcl_lr_schedule_init(diffcl_lr_schedule *s);
/** The schedule's learning rate at iteration @p it for base rate @p base (NULL: poly defaults). */
DIFFCL_API double diffcl_lr_schedule_value(const diffcl_lr_schedule *s, double base, int64_t it);
/**
 * Set every group's lr to the schedule's value at @p it, from the group's initial lr (its lr
 * when added or last set with diffcl_optimizer_set_group()).
 */
DIFFCL_API diffcl_status diffcl_optimizer_apply_schedule(diffcl_optimizer *opt,
                                                         const diffcl_lr_schedule *s, int64_t it);

DIFFCL_END_DECLS

#endif /* DIFFCL_OPTIM_H */
