/* Internal tensor, storage and autograd-node structures, and the helpers every op uses.
 *
 * How an op is written (the op table, ggml-style, but eager):
 *   1. compute the output with a kernel (any dtype checks first);
 *   2. `dc_node *n = dc_record(out, &OP_FOO, inputs, n_inputs);` -- NULL when no input
 *      needs a gradient or grad mode is off; otherwise save what backward needs with
 *      dc_node_save() (detached aliases, no copies) and the op's scalars in n->f / n->i;
 *   3. write `static diffcl_status foo_backward(dc_node *n, diffcl_tensor *g,
 *      diffcl_tensor **gin)` that sets gin[k] (a new tensor shaped like input k) for every
 *      input k with dc_wants_grad(n, k). The engine accumulates them.
 *   4. `static const dc_op OP_FOO = {"foo", foo_backward, NULL, 0};` -- the last field's bit k
 *      says that foo_backward never reads the data of inputs[k] (it saved what it needs),
 *      which lets an intermediate input give its memory back before backward.
 */
#ifndef DIFFCL_TENSOR_INTERNAL_H
#define DIFFCL_TENSOR_INTERNAL_H

#include "core/core_internal.h"
#include "diffcl/autograd.h"
#include "diffcl/tensor.h"

typedef struct dc_storage {
    int refcount;
    diffcl_context *ctx;
    void *data;
    size_t nbytes;
    int owned;                 /* allocated by us through ctx */
    diffcl_deleter_fn deleter; /* user memory */
    void *deleter_user;
} dc_storage;

typedef struct dc_node dc_node;
typedef diffcl_status (*dc_backward_fn)(dc_node *node, diffcl_tensor *grad_out,
                                        diffcl_tensor **grad_in);

typedef struct dc_op {
    const char *name;
    dc_backward_fn backward;
    void (*free_state)(void *state); /* frees node->state, may be NULL */
    /* Bit k set: the backward never reads the data of inputs[k] (only its shape, dtype and
     * graph links; whatever data it needs it saved with dc_node_save). An intermediate
     * tensor whose only holders are such nodes gives its storage back at once instead of
     * at backward time (see dc_tensor_graph_release in tensor.c). Unset bits are safe. */
    unsigned data_free_inputs;
} dc_op;

#define DC_MAX_INPUTS 8
#define DC_MAX_SAVED 8

struct dc_node {
    const dc_op *op;
    int n_inputs;
    diffcl_tensor *inputs[DC_MAX_INPUTS]; /* retained */
    int n_saved;
    diffcl_tensor *saved[DC_MAX_SAVED]; /* retained detached aliases */
    double f[8];                        /* op scalars */
    int64_t i[16];                      /* op integers (axes, shapes...) */
    void *state;                        /* op-specific, freed by op->free_state */
    int lost; /* a saved alias could not be made (out of memory): its backward fails */
};

typedef struct dc_hook {
    diffcl_grad_hook_fn fn;
    void *user;
} dc_hook;

struct diffcl_tensor {
    int refcount;
    diffcl_context *ctx;
    diffcl_dtype dtype;
    int ndim;
    int64_t shape[DIFFCL_MAX_DIMS];
    int64_t strides[DIFFCL_MAX_DIMS]; /* elements */
    int64_t offset;                   /* elements into storage */
    dc_storage *storage;
    int requires_grad;
    int graph_freed; /* backward already ran through this tensor */
    int graph_lost;  /* its node could not be recorded (out of memory): a backward through it
                        fails with DIFFCL_ERR_OUT_OF_MEMORY instead of dropping the gradient */
    diffcl_tensor *grad;
    dc_node *node; /* producer, NULL for leaves */
    dc_hook *hooks;
    int n_hooks;
    int bw_pending; /* backward bookkeeping */
    int bw_state;
    int graph_refs; /* references held by graph nodes' inputs[] */
    int graph_pins; /* ... of which by nodes that read the data */
};

/* ---- creation (NULL on failure with the error set) ---- */
diffcl_tensor *dc_tensor_new(diffcl_context *ctx, diffcl_dtype dtype, int ndim,
                             const int64_t *shape);
/* Uninitialised contents (faster than zeroing when every element is written). */
diffcl_tensor *dc_tensor_empty(diffcl_context *ctx, diffcl_dtype dtype, int ndim,
                               const int64_t *shape);
diffcl_tensor *dc_tensor_empty_like(const diffcl_tensor *t);
diffcl_tensor *dc_tensor_zeros_like(const diffcl_tensor *t);
/* View sharing storage with new shape/strides/offset (no graph). */
diffcl_tensor *dc_tensor_alias(const diffcl_tensor *t, int ndim, const int64_t *shape,
                               const int64_t *strides, int64_t offset);
/* Contiguous copy, or a retained @p t when already contiguous (no graph). */
diffcl_tensor *dc_contiguous(const diffcl_tensor *t);
/* Copy src into contiguous dst of the same numel, converting dtype. */
void dc_copy_into(diffcl_tensor *dst, const diffcl_tensor *src);

static inline void *dc_data(const diffcl_tensor *t)
{
    return (char *)t->storage->data + (size_t)t->offset * diffcl_dtype_size(t->dtype);
}
static inline float *dc_f32(const diffcl_tensor *t)
{
    return (float *)dc_data(t);
}
static inline double *dc_f64(const diffcl_tensor *t)
{
    return (double *)dc_data(t);
}
int64_t dc_numel(const diffcl_tensor *t);
int dc_is_contiguous(const diffcl_tensor *t);
int dc_same_shape(const diffcl_tensor *a, const diffcl_tensor *b);
int dc_is_float(diffcl_dtype d);
/* Format a shape as "[2,3,4]" into a static per-thread buffer (for messages). */
const char *dc_shape_str(const diffcl_tensor *t);
int dc_norm_axis(int axis, int ndim); /* -1 when out of range */

/* ---- autograd recording ---- */
int dc_any_requires_grad(diffcl_tensor *const *inputs, int n);
dc_node *dc_record(diffcl_tensor *out, const dc_op *op, diffcl_tensor *const *inputs, int n);
void dc_node_save(dc_node *node, const diffcl_tensor *t);
static inline int dc_wants_grad(const dc_node *n, int k)
{
    return n->inputs[k] && n->inputs[k]->requires_grad;
}
void dc_node_free(dc_node *node);

/* ---- helpers for backward functions and ops (no graph recorded) ---- */
/* Sum @p g over broadcast axes down to @p shape (ndim entries). */
diffcl_tensor *dc_sum_to_shape(const diffcl_tensor *g, int ndim, const int64_t *shape);
/* out = a + b, same shape, in place into a (contiguous a). */
void dc_add_inplace(diffcl_tensor *a, const diffcl_tensor *b);
/* a * scale + shift with grad recording off; NULL with the error set. */
diffcl_tensor *dc_nograd_affine(const diffcl_tensor *a, double scale, double shift);

#define DC_CHECK_TENSOR(t, fn)                                                                     \
    do {                                                                                           \
        if (!(t)) return dc_error(DIFFCL_ERR_INVALID_ARGUMENT, "%s: tensor is NULL", fn);          \
    } while (0)

/* out[n, c, ...] = x[n, c, ...] + b[n, c]: x [N, C, ...], b [N, C] (F32 or F64), with backward
 * (channel_bias.c). */
diffcl_status dc_add_channel_bias(const diffcl_tensor *x, const diffcl_tensor *b,
                                  diffcl_tensor **out);

/* Elements per sample: numel / shape[0] (numel for a 0-d or empty batch). */
int64_t dc_per_sample(const diffcl_tensor *x);
/* out[n] = a[n] * x[n] + b[n] * c[n] over the batch axis (x, c contiguous-able, same shape;
 * F32 or F64), computed in double and rounded once; recorded with a gradient to x only
 * (per_sample_axpby.c). */
diffcl_status dc_per_sample_axpby(const diffcl_tensor *x, const double *a, const diffcl_tensor *c,
                                  const double *b, diffcl_tensor **out);

#endif
