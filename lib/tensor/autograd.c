/* The reverse-mode engine: recording nodes, the backward walk, gradient hooks. */
#include <stdlib.h>

#include "tensor/tensor_internal.h"

int diffcl_set_grad_enabled(diffcl_context *ctx, int enabled)
{
    if (!ctx) return 0;
    int prev = ctx->grad_enabled;
    ctx->grad_enabled = enabled != 0;
    return prev;
}

int diffcl_grad_enabled(const diffcl_context *ctx)
{
    return ctx ? ctx->grad_enabled : 0;
}

int dc_any_requires_grad(diffcl_tensor *const *inputs, int n)
{
    for (int k = 0; k < n; k++)
        if (inputs[k] && inputs[k]->requires_grad) return 1;
    return 0;
}

dc_node *dc_record(diffcl_tensor *out, const dc_op *op, diffcl_tensor *const *inputs, int n)
{
    if (!out || !out->ctx->grad_enabled || !dc_any_requires_grad(inputs, n)) return NULL;
    dc_node *node = dc_calloc_raw(1, sizeof *node);
    if (!node) { /* a backward through @p out fails instead of dropping the gradient */
        out->requires_grad = 1;
        out->graph_lost = 1;
        return NULL;
    }
    node->op = op;
    node->n_inputs = n;
    for (int k = 0; k < n; k++) {
        node->inputs[k] = diffcl_tensor_retain(inputs[k]);
        if (!inputs[k]) continue;
        inputs[k]->graph_refs++;
        if (!(op->data_free_inputs >> k & 1u)) inputs[k]->graph_pins++;
    }
    out->node = node;
    out->requires_grad = 1;
    return node;
}

void dc_node_save(dc_node *node, const diffcl_tensor *t)
{
    if (!node || !t || node->n_saved >= DC_MAX_SAVED) return;
    node->saved[node->n_saved] = dc_tensor_alias(t, t->ndim, t->shape, t->strides, t->offset);
    if (!node->saved[node->n_saved++]) node->lost = 1;
}

void dc_node_free(dc_node *node)
{
    if (!node) return;
    for (int k = 0; k < node->n_inputs; k++) {
        diffcl_tensor *x = node->inputs[k];
        if (!x) continue;
        x->graph_refs--;
        if (!(node->op->data_free_inputs >> k & 1u)) x->graph_pins--;
        diffcl_tensor_free(x);
    }
    for (int k = 0; k < node->n_saved; k++) diffcl_tensor_free(node->saved[k]);
    if (node->state && node->op->free_state) node->op->free_state(node->state);
    free(node);
}

diffcl_status diffcl_tensor_set_requires_grad(diffcl_tensor *t, int requires_grad)
{
    DC_CHECK_TENSOR(t, "diffcl_tensor_set_requires_grad");
    if (t->node)
        return dc_error(
            DIFFCL_ERR_STATE,
            "diffcl_tensor_set_requires_grad: only leaf tensors can be marked; detach first");
    if (requires_grad && !dc_is_float(t->dtype))
        return dc_error(DIFFCL_ERR_DTYPE,
                        "diffcl_tensor_set_requires_grad: %s tensors cannot have gradients",
                        diffcl_dtype_name(t->dtype));
    t->requires_grad = requires_grad != 0;
    return DIFFCL_OK;
}

int diffcl_tensor_requires_grad(const diffcl_tensor *t)
{
    return t ? t->requires_grad : 0;
}

diffcl_tensor *diffcl_tensor_grad(const diffcl_tensor *t)
{
    return t ? t->grad : NULL;
}

void diffcl_tensor_zero_grad(diffcl_tensor *t)
{
    if (!t) return;
    diffcl_tensor_free(t->grad);
    t->grad = NULL;
}

diffcl_status diffcl_tensor_add_grad_hook(diffcl_tensor *t, diffcl_grad_hook_fn fn, void *user)
{
    DC_CHECK_TENSOR(t, "diffcl_tensor_add_grad_hook");
    DC_CHECK_ARG(fn, "diffcl_tensor_add_grad_hook: fn is NULL");
    DC_CHECK_ARG(!t->node && t->requires_grad,
                 "diffcl_tensor_add_grad_hook: hooks go on leaf tensors that require grad");
    dc_hook *h = dc_realloc(t->hooks, (size_t)(t->n_hooks + 1) * sizeof *h);
    if (!h) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "diffcl_tensor_add_grad_hook: out of memory");
    h[t->n_hooks].fn = fn;
    h[t->n_hooks].user = user;
    t->hooks = h;
    t->n_hooks++;
    return DIFFCL_OK;
}

void diffcl_tensor_clear_grad_hooks(diffcl_tensor *t)
{
    if (!t) return;
    free(t->hooks);
    t->hooks = NULL;
    t->n_hooks = 0;
}

/* ------------------------------------------------------------ the walk ---- */

typedef struct tlist {
    diffcl_tensor **v;
    size_t n, cap;
} tlist;

static int tlist_push(tlist *l, diffcl_tensor *t)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        diffcl_tensor **v = dc_realloc(l->v, cap * sizeof *v);
        if (!v) return 0;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = t;
    return 1;
}

enum { BW_NONE = 0, BW_VISITING = 1, BW_DONE = 2 };

/* Iterative post-order DFS: `order` ends with root last; counts consumers in bw_pending. */
static diffcl_status topo_sort(diffcl_tensor *root, tlist *order)
{
    tlist stack = {0};
    diffcl_status s = DIFFCL_OK;
    root->bw_pending = 0;
    root->bw_state = BW_VISITING;
    if (!tlist_push(&stack, root)) s = DIFFCL_ERR_OUT_OF_MEMORY;
    /* each stack entry is revisited until all its inputs are DONE */
    while (s == DIFFCL_OK && stack.n) {
        diffcl_tensor *t = stack.v[stack.n - 1];
        int pushed = 0;
        if (t->node) {
            for (int k = 0; k < t->node->n_inputs; k++) {
                diffcl_tensor *x = t->node->inputs[k];
                if (!x || !x->requires_grad) continue;
                if (x->bw_state == BW_NONE) {
                    x->bw_state = BW_VISITING;
                    x->bw_pending = 0;
                    if (!tlist_push(&stack, x)) {
                        s = DIFFCL_ERR_OUT_OF_MEMORY;
                        break;
                    }
                    pushed = 1;
                    break;
                }
            }
        }
        if (pushed || s != DIFFCL_OK) continue;
        stack.n--;
        t->bw_state = BW_DONE;
        if (t->node)
            for (int k = 0; k < t->node->n_inputs; k++) {
                diffcl_tensor *x = t->node->inputs[k];
                if (x && x->requires_grad) x->bw_pending++;
            }
        if (!tlist_push(order, diffcl_tensor_retain(t))) {
            diffcl_tensor_free(t);
            s = DIFFCL_ERR_OUT_OF_MEMORY;
        }
    }
    free(stack.v);
    if (s != DIFFCL_OK) dc_error(s, "diffcl_backward: out of memory sorting the graph");
    return s;
}

static diffcl_status accumulate(diffcl_tensor *x, diffcl_tensor *g)
{
    if (!dc_same_shape(x, g))
        return dc_error(DIFFCL_ERR_INTERNAL, "diffcl_backward: gradient %s for tensor %s",
                        dc_shape_str(g), dc_shape_str(x));
    if (!x->grad) {
        /* take the gradient over only when nothing else can see it: a backward may hand the
         * same tensor to two inputs (add), and the first accumulation would alias both */
        if (g->dtype == x->dtype && dc_is_contiguous(g) && g->refcount == 1 &&
            g->storage->refcount == 1 && g->offset == 0) {
            x->grad = diffcl_tensor_retain(g);
        } else {
            x->grad = dc_tensor_empty(x->ctx, x->dtype, x->ndim, x->shape);
            if (!x->grad) return DIFFCL_ERR_OUT_OF_MEMORY;
            dc_copy_into(x->grad, g);
        }
        return DIFFCL_OK;
    }
    dc_add_inplace(x->grad, g);
    return DIFFCL_OK;
}

static void run_hooks(diffcl_tensor *x)
{
    for (int h = 0; h < x->n_hooks; h++) x->hooks[h].fn(x, x->hooks[h].user);
}

diffcl_status diffcl_backward(diffcl_tensor *loss, const diffcl_tensor *grad)
{
    DC_CHECK_TENSOR(loss, "diffcl_backward");
    if (loss->graph_freed)
        return dc_error(DIFFCL_ERR_STATE,
                        "diffcl_backward: the graph behind this tensor was already "
                        "used by a backward pass and freed");
    if (!loss->requires_grad)
        return dc_error(DIFFCL_ERR_STATE, "diffcl_backward: tensor does not require grad "
                                          "(no parameter contributed, or grad mode was off)");
    if (!dc_is_float(loss->dtype))
        return dc_error(DIFFCL_ERR_DTYPE, "diffcl_backward: loss is %s",
                        diffcl_dtype_name(loss->dtype));
    diffcl_tensor *seed;
    if (grad) {
        if (!dc_same_shape(grad, loss))
            return dc_error(DIFFCL_ERR_SHAPE, "diffcl_backward: grad %s for loss %s",
                            dc_shape_str(grad), dc_shape_str(loss));
        seed = dc_tensor_empty(loss->ctx, loss->dtype, loss->ndim, loss->shape);
        if (seed) dc_copy_into(seed, grad);
    } else {
        seed = dc_tensor_empty(loss->ctx, loss->dtype, loss->ndim, loss->shape);
        if (seed) diffcl_tensor_fill(seed, 1.0);
    }
    if (!seed) return DIFFCL_ERR_OUT_OF_MEMORY;

    tlist order = {0};
    diffcl_status s = topo_sort(loss, &order);
    int prev = diffcl_set_grad_enabled(loss->ctx, 0);
    if (s == DIFFCL_OK) s = accumulate(loss, seed);
    diffcl_tensor_free(seed);
    if (s == DIFFCL_OK && !loss->node) run_hooks(loss);

    /* Reverse topological order: each tensor's gradient is complete when it is reached. */
    for (size_t i = order.n; i-- > 0;) {
        diffcl_tensor *t = order.v[i];
        dc_node *node = t->node;
        if (s == DIFFCL_OK && t->grad && ((node && node->lost) || (!node && t->graph_lost)))
            s = dc_error(DIFFCL_ERR_OUT_OF_MEMORY,
                         "diffcl_backward: the graph was not recorded whole (out of memory)");
        if (s == DIFFCL_OK && node && t->grad) {
            diffcl_tensor *gin[DC_MAX_INPUTS] = {0};
            s = node->op->backward(node, t->grad, gin);
            if (s != DIFFCL_OK) dc_error_prefix("diffcl_backward: in %s", node->op->name);
            /* t's gradient is used up: dropping it now lets an input take over a gradient
             * passed through unchanged (add, bias) instead of copying it */
            diffcl_tensor_free(t->grad);
            t->grad = NULL;
            for (int k = 0; k < node->n_inputs; k++) {
                diffcl_tensor *x = node->inputs[k];
                if (s == DIFFCL_OK && gin[k] && x && x->requires_grad) s = accumulate(x, gin[k]);
                diffcl_tensor_free(gin[k]);
                if (x && x->requires_grad && --x->bw_pending == 0 && !x->node && s == DIFFCL_OK)
                    run_hooks(x);
            }
        }
        /* Free the graph as we go: activations are released as soon as they are used. */
        if (node) {
            diffcl_tensor_free(t->grad);
            t->grad = NULL;
            t->node = NULL;
            t->graph_freed = 1;
            t->requires_grad = 0;
            dc_node_free(node);
        }
        t->bw_state = BW_NONE;
        t->bw_pending = 0;
        diffcl_tensor_free(t);
    }
    free(order.v);
    diffcl_set_grad_enabled(loss->ctx, prev);
    return s;
}
