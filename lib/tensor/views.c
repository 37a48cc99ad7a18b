/* Views (no copy) and layout ops, each with its backward. */

#include "tensor/tensor_internal.h"

static diffcl_status finish(diffcl_tensor *out, diffcl_tensor **dst)
{
    if (!out) return DIFFCL_ERR_OUT_OF_MEMORY;
    *dst = out;
    return DIFFCL_OK;
}

/* ------------------------------------------------------------- reshape ---- */

static diffcl_status reshape_backward(dc_node *n, diffcl_tensor *g, diffcl_tensor **gin)
{
    const diffcl_tensor *x = n->inputs[0];
    diffcl_tensor *gc = dc_contiguous(g);
    if (!gc) return DIFFCL_ERR_OUT_OF_MEMORY;
    int64_t st[DIFFCL_MAX_DIMS], s = 1;
    for (int i = x->ndim - 1; i >= 0; i--) {
        st[i] = s;
        s *= x->shape[i];
    }
    gin[0] = dc_tensor_alias(gc, x->ndim, x->shape, st, gc->offset);
    diffcl_tensor_free(gc);
    return gin[0] ? DIFFCL_OK : DIFFCL_ERR_OUT_OF_MEMORY;
}
static const dc_op OP_RESHAPE = {"reshape", reshape_backward, NULL, 0};

diffcl_status diffcl_tensor_reshape(const diffcl_tensor *t, int ndim, const int64_t *shape,
                                    diffcl_tensor **out)
{
    DC_CHECK_ARG(out, "diffcl_tensor_reshape: out is NULL");
    *out = NULL;
    DC_CHECK_TENSOR(t, "diffcl_tensor_reshape");
    DC_CHECK_ARG(ndim >= 0 && ndim <= DIFFCL_MAX_DIMS && (shape || ndim == 0),
                 "diffcl_tensor_reshape: bad ndim %d", ndim);
    int64_t sh[DIFFCL_MAX_DIMS], known = 1;
    int infer = -1;
    for (int i = 0; i < ndim; i++) {
        sh[i] = shape[i];
        if (shape[i] == -1) {
            DC_CHECK_ARG(infer < 0, "diffcl_tensor_reshape: more than one -1 in shape");
            infer = i;
        } else {
            DC_CHECK_ARG(shape[i] >= 0, "diffcl_tensor_reshape: negative size on axis %d", i);
            known *= shape[i];
        }
    }
    int64_t n = dc_numel(t);
    if (infer >= 0) {
        if (known == 0 || n % known)
            return dc_error(DIFFCL_ERR_SHAPE, "diffcl_tensor_reshape: cannot infer size for %s",
                            dc_shape_str(t));
        sh[infer] = n / known;
        known *= sh[infer];
    }
    if (known != n)
        return dc_error(DIFFCL_ERR_SHAPE,
                        "diffcl_tensor_reshape: %s has %lld elements, new shape %lld",
                        dc_shape_str(t), (long long)n, (long long)known);
    diffcl_tensor *c = dc_contiguous(t);
    if (!c) return DIFFCL_ERR_OUT_OF_MEMORY;
    int64_t st[DIFFCL_MAX_DIMS], s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        st[i] = s;
        s *= sh[i];
    }
    diffcl_tensor *v = dc_tensor_alias(c, ndim, sh, st, c->offset);
    diffcl_tensor_free(c);
    if (!v) return DIFFCL_ERR_OUT_OF_MEMORY;
    diffcl_tensor *in = (diffcl_tensor *)t;
    dc_record(v, &OP_RESHAPE, &in, 1);
    return finish(v, out);
}

/* ------------------------------------------------------------- permute ---- */

static diffcl_status permute_backward(dc_node *n, diffcl_tensor *g, diffcl_tensor **gin)
{
    int nd = g->ndim, inv[DIFFCL_MAX_DIMS];
    for (int i = 0; i < nd; i++) inv[n->i[i]] = i;
    int64_t sh[DIFFCL_MAX_DIMS], st[DIFFCL_MAX_DIMS];
    for (int i = 0; i < nd; i++) {
        sh[i] = g->shape[inv[i]];
        st[i] = g->strides[inv[i]];
    }
    diffcl_tensor *v = dc_tensor_alias(g, nd, sh, st, g->offset);
    if (!v) return DIFFCL_ERR_OUT_OF_MEMORY;
    gin[0] = dc_contiguous(v);
    diffcl_tensor_free(v);
    return gin[0] ? DIFFCL_OK : DIFFCL_ERR_OUT_OF_MEMORY;
}
static const dc_op OP_PERMUTE = {"permute", permute_backward, NULL, 0};

diffcl_status diffcl_tensor_permute(const diffcl_tensor *t, const int *perm, diffcl_tensor **out)
{
    DC_CHECK_ARG(out, "diffcl_tensor_permute: out is NULL");
    *out = NULL;
    DC_CHECK_TENSOR(t, "diffcl_tensor_permute");
    DC_CHECK_ARG(perm || t->ndim == 0, "diffcl_tensor_permute: perm is NULL");
    int seen[DIFFCL_MAX_DIMS] = {0};
    int64_t sh[DIFFCL_MAX_DIMS], st[DIFFCL_MAX_DIMS];
    for (int i = 0; i < t->ndim; i++) {
        int p = perm[i];
        DC_CHECK_ARG(p >= 0 && p < t->ndim && !seen[p],
                     "diffcl_tensor_permute: perm is not a permutation of 0..%d", t->ndim - 1);
        seen[p] = 1;
        sh[i] = t->shape[p];
        st[i] = t->strides[p];
    }
    diffcl_tensor *v = dc_tensor_alias(t, t->ndim, sh, st, t->offset);
    if (!v) return DIFFCL_ERR_OUT_OF_MEMORY;
    diffcl_tensor *in = (diffcl_tensor *)t;
    dc_node *n = dc_record(v, &OP_PERMUTE, &in, 1);
    if (n)
        for (int i = 0; i < t->ndim; i++) n->i[i] = perm[i];
    return finish(v, out);
}

/* --------------------------------------------------------------- slice ---- */

static diffcl_status slice_backward(dc_node *n, diffcl_tensor *g, diffcl_tensor **gin)
{
    const diffcl_tensor *x = n->inputs[0];
    diffcl_tensor *z = dc_tensor_zeros_like(x);
    if (!z) return DIFFCL_ERR_OUT_OF_MEMORY;
    int axis = (int)n->i[0];
    int64_t start = n->i[1], step = n->i[3];
    int64_t st[DIFFCL_MAX_DIMS];
    for (int i = 0; i < z->ndim; i++) st[i] = z->strides[i];
    st[axis] *= step;
    diffcl_tensor *view = dc_tensor_alias(z, g->ndim, g->shape, st, start * z->strides[axis]);
    diffcl_tensor *gc = view ? dc_contiguous(g) : NULL;
    diffcl_status s = DIFFCL_ERR_OUT_OF_MEMORY;
    if (gc)
        s = diffcl_tensor_copy_from(view, dc_data(gc),
                                    (size_t)dc_numel(gc) * diffcl_dtype_size(gc->dtype));
    diffcl_tensor_free(gc);
    diffcl_tensor_free(view);
    if (s != DIFFCL_OK) {
        diffcl_tensor_free(z);
        return s;
    }
    gin[0] = z;
    return DIFFCL_OK;
}
static const dc_op OP_SLICE = {"slice", slice_backward, NULL, 0};

diffcl_status diffcl_tensor_slice(const diffcl_tensor *t, int axis, int64_t start, int64_t stop,
                                  int64_t step, diffcl_tensor **out)
{
    DC_CHECK_ARG(out, "diffcl_tensor_slice: out is NULL");
    *out = NULL;
    DC_CHECK_TENSOR(t, "diffcl_tensor_slice");
    int a = dc_norm_axis(axis, t->ndim);
    DC_CHECK_ARG(a >= 0, "diffcl_tensor_slice: axis %d out of range for %s", axis, dc_shape_str(t));
    DC_CHECK_ARG(step >= 1, "diffcl_tensor_slice: step %lld < 1", (long long)step);
    DC_CHECK_ARG(start >= 0 && start <= stop && stop <= t->shape[a],
                 "diffcl_tensor_slice: range [%lld,%lld) out of bounds for axis %d of %s",
                 (long long)start, (long long)stop, a, dc_shape_str(t));
    int64_t sh[DIFFCL_MAX_DIMS], st[DIFFCL_MAX_DIMS];
    for (int i = 0; i < t->ndim; i++) {
        sh[i] = t->shape[i];
        st[i] = t->strides[i];
    }
    sh[a] = (stop - start + step - 1) / step;
    st[a] = t->strides[a] * step;
    diffcl_tensor *v = dc_tensor_alias(t, t->ndim, sh, st, t->offset + start * t->strides[a]);
    if (!v) return DIFFCL_ERR_OUT_OF_MEMORY;
    diffcl_tensor *in = (diffcl_tensor *)t;
    dc_node *n = dc_record(v, &OP_SLICE, &in, 1);
    if (n) {
        n->i[0] = a;
        n->i[1] = start;
        n->i[2] = stop;
        n->i[3] = step;
    }
    return finish(v, out);
}

diffcl_status diffcl_tensor_narrow(const diffcl_tensor *t, int axis, int64_t start, int64_t length,
                                   diffcl_tensor **out)
{
    DC_CHECK_ARG(length >= 0, "diffcl_tensor_narrow: negative length");
    diffcl_status s = diffcl_tensor_slice(t, axis, start, start + length, 1, out);
    if (s != DIFFCL_OK)
        dc_error_prefix("diffcl_tensor_narrow(axis %d, start %lld, length %lld)", axis,
                        (long long)start, (long long)length); /* not just "slice" */
    return s;
}

diffcl_status diffcl_tensor_unsqueeze(const diffcl_tensor *t, int axis, diffcl_tensor **out)
{
    DC_CHECK_ARG(out, "diffcl_tensor_unsqueeze: out is NULL");
    *out = NULL;
    DC_CHECK_TENSOR(t, "diffcl_tensor_unsqueeze");
    int a = dc_norm_axis(axis, t->ndim + 1);
    DC_CHECK_ARG(a >= 0 && t->ndim < DIFFCL_MAX_DIMS,
                 "diffcl_tensor_unsqueeze: axis %d invalid for %s", axis, dc_shape_str(t));
    int64_t sh[DIFFCL_MAX_DIMS];
    for (int i = 0, j = 0; i <= t->ndim; i++) sh[i] = (i == a) ? 1 : t->shape[j++];
    return diffcl_tensor_reshape(t, t->ndim + 1, sh, out);
}

diffcl_status diffcl_tensor_squeeze(const diffcl_tensor *t, int axis, diffcl_tensor **out)
{
    DC_CHECK_ARG(out, "diffcl_tensor_squeeze: out is NULL");
    *out = NULL;
    DC_CHECK_TENSOR(t, "diffcl_tensor_squeeze");
    int a = dc_norm_axis(axis, t->ndim);
    DC_CHECK_ARG(a >= 0, "diffcl_tensor_squeeze: axis %d out of range for %s", axis,
                 dc_shape_str(t));
    if (t->shape[a] != 1)
        return dc_error(DIFFCL_ERR_SHAPE, "diffcl_tensor_squeeze: axis %d of %s is not 1", a,
                        dc_shape_str(t));
    int64_t sh[DIFFCL_MAX_DIMS];
    for (int i = 0, j = 0; i < t->ndim; i++)
        if (i != a) sh[j++] = t->shape[i];
    return diffcl_tensor_reshape(t, t->ndim - 1, sh, out);
}

/* -------------------------------------------------------------- expand ---- */

static diffcl_status expand_backward(dc_node *n, diffcl_tensor *g, diffcl_tensor **gin)
{
    const diffcl_tensor *x = n->inputs[0];
    gin[0] = dc_sum_to_shape(g, x->ndim, x->shape);
    return gin[0] ? DIFFCL_OK : DIFFCL_ERR_OUT_OF_MEMORY;
}
static const dc_op OP_EXPAND = {"expand", expand_backward, NULL, 0};

diffcl_status diffcl_tensor_expand(const diffcl_tensor *t, int ndim, const int64_t *shape,
                                   diffcl_tensor **out)
{
    DC_CHECK_ARG(out, "diffcl_tensor_expand: out is NULL");
    *out = NULL;
    DC_CHECK_TENSOR(t, "diffcl_tensor_expand");
    DC_CHECK_ARG(ndim >= t->ndim && ndim <= DIFFCL_MAX_DIMS && shape,
                 "diffcl_tensor_expand: cannot expand %s to %d dims", dc_shape_str(t), ndim);
    int64_t st[DIFFCL_MAX_DIMS];
    int lead = ndim - t->ndim;
    for (int i = 0; i < ndim; i++) {
        if (i < lead) {
            st[i] = 0;
            continue;
        }
        int64_t s = t->shape[i - lead];
        if (s == shape[i])
            st[i] = t->strides[i - lead];
        else if (s == 1)
            st[i] = 0;
        else
            return dc_error(DIFFCL_ERR_SHAPE,
                            "diffcl_tensor_expand: %s cannot expand to size %lld on axis %d",
                            dc_shape_str(t), (long long)shape[i], i);
    }
    diffcl_tensor *v = dc_tensor_alias(t, ndim, shape, st, t->offset);
    if (!v) return DIFFCL_ERR_OUT_OF_MEMORY;
    diffcl_tensor *in = (diffcl_tensor *)t;
    dc_record(v, &OP_EXPAND, &in, 1);
    return finish(v, out);
}

/* ------------------------------------------------------- clone / dtype ---- */

static diffcl_status identity_backward(dc_node *n, diffcl_tensor *g, diffcl_tensor **gin)
{
    const diffcl_tensor *x = n->inputs[0];
    diffcl_tensor *r = dc_tensor_empty(x->ctx, x->dtype, x->ndim, x->shape);
    if (!r) return DIFFCL_ERR_OUT_OF_MEMORY;
    dc_copy_into(r, g); /* also converts dtype back for to_dtype */
    gin[0] = r;
    return DIFFCL_OK;
}
static const dc_op OP_CLONE = {"clone", identity_backward, NULL, 0};

diffcl_status diffcl_tensor_clone(const diffcl_tensor *t, diffcl_tensor **out)
{
    DC_CHECK_ARG(out, "diffcl_tensor_clone: out is NULL");
    *out = NULL;
    DC_CHECK_TENSOR(t, "diffcl_tensor_clone");
    diffcl_tensor *c = dc_tensor_empty_like(t);
    if (!c) return DIFFCL_ERR_OUT_OF_MEMORY;
    dc_copy_into(c, t);
    diffcl_tensor *in = (diffcl_tensor *)t;
    dc_record(c, &OP_CLONE, &in, 1);
    return finish(c, out);
}

diffcl_status diffcl_tensor_contiguous(const diffcl_tensor *t, diffcl_tensor **out)
{
    DC_CHECK_ARG(out, "diffcl_tensor_contiguous: out is NULL");
    *out = NULL;
    DC_CHECK_TENSOR(t, "diffcl_tensor_contiguous");
    if (dc_is_contiguous(t)) {
        *out = diffcl_tensor_retain((diffcl_tensor *)t);
        return DIFFCL_OK;
    }
    return diffcl_tensor_clone(t, out);
}

diffcl_status diffcl_tensor_to_dtype(const diffcl_tensor *t, diffcl_dtype dtype,
                                     diffcl_tensor **out)
{
    DC_CHECK_ARG(out, "diffcl_tensor_to_dtype: out is NULL");
    *out = NULL;
    DC_CHECK_TENSOR(t, "diffcl_tensor_to_dtype");
    if (diffcl_dtype_size(dtype) == 0)
        return dc_error(DIFFCL_ERR_DTYPE, "diffcl_tensor_to_dtype: unknown dtype %d", (int)dtype);
    diffcl_tensor *c = dc_tensor_empty(t->ctx, dtype, t->ndim, t->shape);
    if (!c) return DIFFCL_ERR_OUT_OF_MEMORY;
    dc_copy_into(c, t);
    if (dc_is_float(dtype) && dc_is_float(t->dtype)) {
        diffcl_tensor *in = (diffcl_tensor *)t;
        dc_record(c, &OP_CLONE, &in, 1);
    }
    return finish(c, out);
}

diffcl_status diffcl_tensor_detach(const diffcl_tensor *t, diffcl_tensor **out)
{
    DC_CHECK_ARG(out, "diffcl_tensor_detach: out is NULL");
    *out = NULL;
    DC_CHECK_TENSOR(t, "diffcl_tensor_detach");
    return finish(dc_tensor_alias(t, t->ndim, t->shape, t->strides, t->offset), out);
}

/* -------------------------------------------------------------- concat ---- */

static diffcl_status concat_backward(dc_node *n, diffcl_tensor *g, diffcl_tensor **gin)
{
    int axis = (int)n->i[0];
    int64_t start = 0;
    for (int k = 0; k < n->n_inputs; k++) {
        const diffcl_tensor *x = n->inputs[k];
        if (dc_wants_grad(n, k)) {
            int64_t st[DIFFCL_MAX_DIMS];
            for (int i = 0; i < g->ndim; i++) st[i] = g->strides[i];
            diffcl_tensor *v =
                dc_tensor_alias(g, x->ndim, x->shape, st, g->offset + start * g->strides[axis]);
            gin[k] = v ? dc_contiguous(v) : NULL;
            diffcl_tensor_free(v);
            if (!gin[k]) return DIFFCL_ERR_OUT_OF_MEMORY;
        }
        start += x->shape[axis];
    }
    return DIFFCL_OK;
}
static const dc_op OP_CONCAT = {"concat", concat_backward, NULL, 0};

diffcl_status diffcl_tensor_concat(diffcl_tensor *const *ts, int n, int axis, diffcl_tensor **out)
{
    DC_CHECK_ARG(out, "diffcl_tensor_concat: out is NULL");
    *out = NULL;
    DC_CHECK_ARG(ts && n >= 1, "diffcl_tensor_concat: need at least one tensor");
    DC_CHECK_ARG(n <= DC_MAX_INPUTS, "diffcl_tensor_concat: at most %d tensors", DC_MAX_INPUTS);
    for (int k = 0; k < n; k++) DC_CHECK_TENSOR(ts[k], "diffcl_tensor_concat");
    const diffcl_tensor *t0 = ts[0];
    int a = dc_norm_axis(axis, t0->ndim);
    DC_CHECK_ARG(a >= 0, "diffcl_tensor_concat: axis %d out of range for %s", axis,
                 dc_shape_str(t0));
    int64_t sh[DIFFCL_MAX_DIMS];
    for (int i = 0; i < t0->ndim; i++) sh[i] = t0->shape[i];
    sh[a] = 0;
    for (int k = 0; k < n; k++) {
        const diffcl_tensor *t = ts[k];
        if (t->dtype != t0->dtype)
            return dc_error(DIFFCL_ERR_DTYPE,
                            "diffcl_tensor_concat: tensor %d is %s, tensor 0 is %s", k,
                            diffcl_dtype_name(t->dtype), diffcl_dtype_name(t0->dtype));
        if (t->ndim != t0->ndim)
            return dc_error(DIFFCL_ERR_SHAPE, "diffcl_tensor_concat: tensor %d %s vs tensor 0 %s",
                            k, dc_shape_str(t), dc_shape_str(t0));
        for (int i = 0; i < t0->ndim; i++)
            if (i != a && t->shape[i] != t0->shape[i])
                return dc_error(DIFFCL_ERR_SHAPE,
                                "diffcl_tensor_concat: tensor %d %s vs tensor 0 %s", k,
                                dc_shape_str(t), dc_shape_str(t0));
        sh[a] += t->shape[a];
    }
    diffcl_tensor *r = dc_tensor_empty(t0->ctx, t0->dtype, t0->ndim, sh);
    if (!r) return DIFFCL_ERR_OUT_OF_MEMORY;
    int64_t start = 0;
    for (int k = 0; k < n; k++) {
        diffcl_tensor *v =
            dc_tensor_alias(r, r->ndim, ts[k]->shape, r->strides, start * r->strides[a]);
        diffcl_tensor *c = v ? dc_contiguous(ts[k]) : NULL;
        if (!c) {
            diffcl_tensor_free(v);
            diffcl_tensor_free(r);
            return DIFFCL_ERR_OUT_OF_MEMORY;
        }
        diffcl_tensor_copy_from(v, dc_data(c), (size_t)dc_numel(c) * diffcl_dtype_size(c->dtype));
        diffcl_tensor_free(c);
        diffcl_tensor_free(v);
        start += ts[k]->shape[a];
    }
    dc_node *node = dc_record(r, &OP_CONCAT, ts, n);
    if (node) node->i[0] = a;
    return finish(r, out);
}
