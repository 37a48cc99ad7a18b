/**
 * @file module.h
 * @brief Modules: a tree of named parameters, buffers and child modules, as PyTorch's nn.Module.
 *
 * Every layer and model is a ::diffcl_module. Full names join the path with dots, exactly
 * as PyTorch's state-dict keys: "block_one.conv.0.weight", "block_one.conv.1.running_mean".
 * Parameters are F32 leaf tensors with requires_grad set; buffers (running statistics,
 * counters) are not. Entries are listed in registration order, parameters and buffers of
 * a module before those of its children, the same order PyTorch's state_dict() uses.
 *
 * Ownership: a module owns its children, parameters and buffers; the getters return
 * borrowed pointers that live as long as the module. diffcl_module_forward() and
 * diffcl_module_state_dict() hand out new objects the caller owns (diffcl_tensor_free(),
 * diffcl_tensor_dict_free()).
 *
 * Errors: DIFFCL_ERR_INVALID_ARGUMENT for a NULL module, tensor or out-pointer, and the
 * codes named per function; the detail is in diffcl_last_error().
 *
 * Thread safety: a module is used by one thread at a time, as its context (core.h).
 */
#ifndef DIFFCL_MODULE_H
#define DIFFCL_MODULE_H

#include "diffcl/checkpoint.h"
#include "diffcl/tensor.h"

DIFFCL_BEGIN_DECLS

typedef struct diffcl_module diffcl_module;

/** Which entries of a module to list. */
typedef enum diffcl_state_kind {
    DIFFCL_STATE_PARAMS = 1,
    DIFFCL_STATE_BUFFERS = 2,
    DIFFCL_STATE_ALL = 3
} diffcl_state_kind;

/** Release a module, its children and its references to its tensors. NULL is ignored. */
DIFFCL_API void diffcl_module_free(diffcl_module *m);
/** Type name ("conv3d", "batchnorm", "vnet", ...); static storage. */
DIFFCL_API const char *diffcl_module_type(const diffcl_module *m);
/** The context the module computes in (borrowed). */
DIFFCL_API diffcl_context *diffcl_module_context(const diffcl_module *m);

/**
 * Run the module on one input. Modules that need more inputs (the diffusion denoiser's
 * timestep) have their own forward function and return DIFFCL_ERR_UNSUPPORTED here.
 */
DIFFCL_API diffcl_status diffcl_module_forward(diffcl_module *m, const diffcl_tensor *x,
                                               diffcl_tensor **out);

/** Training (1: batch statistics, dropout on) or evaluation (0) mode, for the whole tree. */
DIFFCL_API void diffcl_module_train(diffcl_module *m, int training);
/** @return 1 in training mode, 0 in evaluation mode (also for NULL). */
DIFFCL_API int diffcl_module_is_training(const diffcl_module *m);
/**
 * Set the random-number step of every stochastic module in the tree (dropout). Their draws
 * use the key (seed, stream, step, k) for the k-th call since the step was set, so a
 * trainer that sets step = iteration gets the same masks after a resume.
 */
DIFFCL_API void diffcl_module_set_step(diffcl_module *m, uint32_t step);

/**
 * Convert every floating-point parameter and buffer of the tree to @p dtype (F32 or F64;
 * integer buffers keep their type), like PyTorch's .double() / .float(). Gradients are
 * dropped. Call it before handing the parameters to an optimizer (which holds references
 * to the old tensors). On error the module is unchanged.
 */
DIFFCL_API diffcl_status diffcl_module_to_dtype(diffcl_module *m, diffcl_dtype dtype);

/** Drop the accumulated gradients of every parameter in the tree. */
DIFFCL_API void diffcl_module_zero_grad(diffcl_module *m);

/** Number of entries of the given kinds (a diffcl_state_kind mask) in the tree. */
DIFFCL_API int diffcl_module_state_count(const diffcl_module *m, int kinds);
/**
 * Entry @p i of the flattened tree: its full dotted name and tensor (both borrowed, valid
 * while the module lives). @p is_param (may be NULL) tells a parameter from a buffer.
 */
DIFFCL_API diffcl_status diffcl_module_state_entry(const diffcl_module *m, int kinds, int i,
                                                   const char **name, diffcl_tensor **t,
                                                   int *is_param);
/** The parameter or buffer with full name @p name (borrowed), or NULL. */
DIFFCL_API diffcl_tensor *diffcl_module_find(const diffcl_module *m, const char *name);
/** The sub-module at dotted path @p path ("block_one.conv.0"; borrowed), or NULL. */
DIFFCL_API diffcl_module *diffcl_module_child(const diffcl_module *m, const char *path);
/** Total number of parameter elements in the tree. */
DIFFCL_API int64_t diffcl_module_num_parameters(const diffcl_module *m);

/**
 * The module's state as a new dictionary of name -> tensor (the dictionary references the
 * module's own tensors; it does not copy them).
 */
DIFFCL_API diffcl_status diffcl_module_state_dict(const diffcl_module *m, diffcl_tensor_dict **out);

/** Options for diffcl_module_load_state_dict(). */
typedef struct diffcl_load_options {
    size_t struct_size;
    int strict;              /**< 1 (default): missing or unexpected keys are errors */
    const char *prefix;      /**< strip this prefix from the dictionary's keys; NULL: none */
    int strip_module_prefix; /**< 1 (default): "module." of DataParallel/DDP is stripped */
} diffcl_load_options;

#define DIFFCL_LOAD_OPTIONS_INIT                                                                   \
    {                                                                                              \
        sizeof(diffcl_load_options), 1, NULL, 1                                                    \
    }
/** Fill @p opts with the defaults (same as DIFFCL_LOAD_OPTIONS_INIT). */
DIFFCL_API void diffcl_load_options_init(diffcl_load_options *opts);

/**
 * Copy the dictionary's tensors into the module's parameters and buffers, converting any
 * dtype to the entry's (F64/F16/BF16 or integer values into F32 parameters, as
 * torch's load_state_dict copy_() does; integer buffers keep their type). A wrong shape is
 * always an error (DIFFCL_ERR_SHAPE naming the tensor and both shapes); missing or
 * unexpected keys are errors in strict mode (DIFFCL_ERR_NOT_FOUND / DIFFCL_ERR_FORMAT)
 * and warnings through the context's log otherwise. On error the module is unchanged.
 * @p n_missing / @p n_unexpected (may be NULL) receive the counts.
 */
DIFFCL_API diffcl_status diffcl_module_load_state_dict(diffcl_module *m,
                                                       const diffcl_tensor_dict *dict,
                                                       const diffcl_load_options *opts,
                                                       int *n_missing, int *n_unexpected);

/** Load a safetensors file into the module (see diffcl_module_load_state_dict). */
DIFFCL_API diffcl_status diffcl_module_load(diffcl_module *m, const char *path,
                                            const diffcl_load_options *opts);
/**
 * Save the module's state dict as safetensors, atomically, with @p n_meta metadata pairs
 * (@p meta_keys / @p meta_values may be NULL when n_meta is 0).
 */
DIFFCL_API diffcl_status diffcl_module_save(const diffcl_module *m, const char *path,
                                            const char *const *meta_keys,
                                            const char *const *meta_values, int n_meta);

DIFFCL_END_DECLS

#endif /* DIFFCL_MODULE_H */
