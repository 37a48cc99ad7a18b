/* Reductions over one axis (viewed as [outer, n, inner]) and over everything. */
#include <math.h>

#include "tensor/tensor_internal.h"

enum { RED_SUM, RED_MEAN, RED_MAX, RED_ARGMAX };

static void split_axis(const diffcl_tensor *t, int a, int64_t *outer, int64_t *n, int64_t *inner)
{
    *outer = 1;
    *inner = 1;
    for (int i = 0; i < a; i++) *outer *= t->shape[i];
    for (int i = a + 1; i < t->ndim; i++) *inner *= t->shape[i];
    *n = t->shape[a];
}

static void reduced_shape(const diffcl_tensor *t, int a, int keepdim, int *nd, int64_t *sh)
{
    int k = 0;
    for (int i = 0; i < t->ndim; i++) {
        if (i == a) {
            if (keepdim) sh[k++] = 1;
        } else
            sh[k++] = t->shape[i];
    }
    *nd = k;
}

/* Broadcast a reduced gradient back over the reduced axis: [outer,1,inner] -> [outer,n,inner]. */
static diffcl_status reduce_backward(dc_node *n, diffcl_tensor *g, diffcl_tensor **gin)
{
    const diffcl_tensor *x = n->inputs[0];
    int op = (int)n->i[0], a = (int)n->i[1];
    int64_t outer, len, inner;
    split_axis(x, a, &outer, &len, &inner);
    diffcl_tensor *gc = dc_contiguous(g);
    diffcl_tensor *r = gc ? dc_tensor_new(x->ctx, x->dtype, x->ndim, x->shape) : NULL;
    if (!r) {
        diffcl_tensor_free(gc);
        return DIFFCL_ERR_OUT_OF_MEMORY;
    }
    double scale = op == RED_MEAN ? 1.0 / (double)len : 1.0;
    const int64_t *arg = op == RED_MAX ? (const int64_t *)dc_data(n->saved[0]) : NULL;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            int64_t gi = o * inner + i;
            double gv = x->dtype == DIFFCL_F32 ? dc_f32(gc)[gi] : dc_f64(gc)[gi];
            if (arg) {
                int64_t at = (o * len + arg[gi]) * inner + i;
                if (x->dtype == DIFFCL_F32)
                    dc_f32(r)[at] = (float)gv;
                else
                    dc_f64(r)[at] = gv;
                continue;
            }
            for (int64_t k = 0; k < len; k++) {
                int64_t at = (o * len + k) * inner + i;
                if (x->dtype == DIFFCL_F32)
                    dc_f32(r)[at] = (float)(gv * scale);
                else
                    dc_f64(r)[at] = gv * scale;
            }
        }
    diffcl_tensor_free(gc);
    gin[0] = r;
    return DIFFCL_OK;
}
static const dc_op OP_REDUCE = {"reduce", reduce_backward, NULL, 0};

#define REDUCE_LOOP(T)                                                                             \
    do {                                                                                           \
        const T *px = (const T *)dc_data(x);                                                       \
        for (int64_t o = 0; o < outer; o++)                                                        \
            for (int64_t i = 0; i < inner; i++) {                                                  \
                const T *p = px + o * len * inner + i;                                             \
                int64_t gi = o * inner + i;                                                        \
                if (op == RED_SUM || op == RED_MEAN) {                                             \
                    double acc = 0;                                                                \
                    for (int64_t k = 0; k < len; k++) acc += p[k * inner];                         \
                    ((T *)dc_data(r))[gi] = (T)(op == RED_MEAN ? acc / (double)len : acc);         \
                } else {                                                                           \
                    int64_t best = 0;                                                              \
                    T bv = p[0];                                                                   \
                    for (int64_t k = 1; k < len; k++)                                              \
                        if (p[k * inner] > bv || (isnan(p[k * inner]) && !isnan(bv))) {            \
                            bv = p[k * inner];                                                     \
                            best = k;                                                              \
                        }                                                                          \
                    if (argmax) argmax[gi] = best;                                                 \
                    if (op == RED_MAX) ((T *)dc_data(r))[gi] = bv;                                 \
                }                                                                                  \
            }                                                                                      \
    } while (0)

static diffcl_status reduce(const diffcl_tensor *t, int axis, int keepdim, int op,
                            diffcl_tensor **out, const char *fn)
{
    DC_CHECK_ARG(out, "%s: out is NULL", fn);
    *out = NULL;
    DC_CHECK_TENSOR(t, fn);
    if (!dc_is_float(t->dtype))
        return dc_error(DIFFCL_ERR_DTYPE, "%s: tensor is %s; need f32 or f64", fn,
                        diffcl_dtype_name(t->dtype));
    int a = dc_norm_axis(axis, t->ndim);
    if (a < 0)
        return dc_error(DIFFCL_ERR_INVALID_ARGUMENT, "%s: axis %d out of range for %s", fn, axis,
                        dc_shape_str(t));
    if (t->shape[a] == 0 && op != RED_SUM)
        return dc_error(DIFFCL_ERR_SHAPE, "%s: axis %d of %s is empty", fn, a, dc_shape_str(t));
    int nd;
    int64_t sh[DIFFCL_MAX_DIMS], outer, len, inner;
    reduced_shape(t, a, keepdim, &nd, sh);
    split_axis(t, a, &outer, &len, &inner);
    diffcl_tensor *x = dc_contiguous(t);
    if (!x) return DIFFCL_ERR_OUT_OF_MEMORY;
    diffcl_tensor *r = dc_tensor_empty(t->ctx, op == RED_ARGMAX ? DIFFCL_I64 : t->dtype, nd, sh);
    diffcl_tensor *am = NULL;
    if (r && op == RED_MAX) am = dc_tensor_empty(t->ctx, DIFFCL_I64, nd, sh);
    if (!r || (op == RED_MAX && !am)) {
        diffcl_tensor_free(x);
        diffcl_tensor_free(r);
        return DIFFCL_ERR_OUT_OF_MEMORY;
    }
    int64_t *argmax =
        op == RED_ARGMAX ? (int64_t *)dc_data(r) : (am ? (int64_t *)dc_data(am) : NULL);
    if (t->dtype == DIFFCL_F32)
        REDUCE_LOOP(float);
    else
        REDUCE_LOOP(double);
    if (op != RED_ARGMAX) {
        diffcl_tensor *in = (diffcl_tensor *)t;
        dc_node *n = dc_record(r, &OP_REDUCE, &in, 1);
        if (n) {
            n->i[0] = op;
            n->i[1] = a;
            if (am) dc_node_save(n, am);
        }
    }
    diffcl_tensor_free(am);
    diffcl_tensor_free(x);
    *out = r;
    return DIFFCL_OK;
}

diffcl_status diffcl_sum(const diffcl_tensor *a, int axis, int keepdim, diffcl_tensor **out)
{
    return reduce(a, axis, keepdim, RED_SUM, out, "diffcl_sum");
}
diffcl_status diffcl_mean(const diffcl_tensor *a, int axis, int keepdim, diffcl_tensor **out)
{
    return reduce(a, axis, keepdim, RED_MEAN, out, "diffcl_mean");
}
diffcl_status diffcl_max(const diffcl_tensor *a, int axis, int keepdim, diffcl_tensor **out)
{
    return reduce(a, axis, keepdim, RED_MAX, out, "diffcl_max");
}
diffcl_status diffcl_argmax(const diffcl_tensor *a, int axis, int keepdim, diffcl_tensor **out)
{
    return reduce(a, axis, keepdim, RED_ARGMAX, out, "diffcl_argmax");
}

static diffcl_status reduce_all(const diffcl_tensor *a, int mean, diffcl_tensor **out,
                                const char *fn)
{
    DC_CHECK_ARG(out, "%s: out is NULL", fn);
    *out = NULL;
    DC_CHECK_TENSOR(a, fn);
    int64_t n = dc_numel(a);
    diffcl_tensor *flat = NULL;
    DC_TRY(diffcl_tensor_reshape(a, 1, &n, &flat));
    diffcl_status s = reduce(flat, 0, 0, mean ? RED_MEAN : RED_SUM, out, fn);
    diffcl_tensor_free(flat);
    return s;
}

diffcl_status diffcl_sum_all(const diffcl_tensor *a, diffcl_tensor **out)
{
    return reduce_all(a, 0, out, "diffcl_sum_all");
}
diffcl_status diffcl_mean_all(const diffcl_tensor *a, diffcl_tensor **out)
{
    return reduce_all(a, 1, out, "diffcl_mean_all");
}
