/* The per-sample affine blend out[n] = a[n] * x[n] + b[n] * c[n] over the batch axis, with a
 * gradient to x only (c is a constant, e.g. noise): the diffusion forward process q_sample is
 * this op with a = sqrt(alpha_bar_t), b = sqrt(1 - alpha_bar_t) and c the noise. Computed in
 * double per element, rounded once. */
#include <stdlib.h>
#include <string.h>

#include "tensor/tensor_internal.h"

/* state: double a[N]; d out / d x = a[n] */
static diffcl_status axpby_backward(dc_node *node, diffcl_tensor *g, diffcl_tensor **gin)
{
    const double *a = node->state;
    const diffcl_tensor *x = node->inputs[0];
    diffcl_tensor *gc = dc_contiguous(g);
    diffcl_tensor *r = gc ? dc_tensor_empty(x->ctx, x->dtype, x->ndim, x->shape) : NULL;
    if (!r) {
        diffcl_tensor_free(gc);
        return DIFFCL_ERR_OUT_OF_MEMORY;
    }
    int64_t N = x->shape[0], P = dc_per_sample(x);
    for (int64_t n = 0; n < N; n++)
        for (int64_t i = 0; i < P; i++) {
            int64_t j = n * P + i;
            if (r->dtype == DIFFCL_F32)
                dc_f32(r)[j] = (float)(a[n] * dc_f32(gc)[j]);
            else
                dc_f64(r)[j] = a[n] * dc_f64(gc)[j];
        }
    diffcl_tensor_free(gc);
    gin[0] = r;
    return DIFFCL_OK;
}
static const dc_op OP_AXPBY = {"per_sample_axpby", axpby_backward, free, 0};

diffcl_status dc_per_sample_axpby(const diffcl_tensor *x, const double *a, const diffcl_tensor *c,
                                  const double *b, diffcl_tensor **out)
{
    *out = NULL;
    int64_t N = x->shape[0], P = dc_per_sample(x);
    double *coef = dc_malloc((size_t)(N ? N : 1) * sizeof *coef);
    diffcl_tensor *xc = dc_contiguous(x), *cc = dc_contiguous(c);
    diffcl_tensor *r = dc_tensor_empty(x->ctx, x->dtype, x->ndim, x->shape);
    if (!coef || !xc || !cc || !r) {
        free(coef);
        diffcl_tensor_free(xc);
        diffcl_tensor_free(cc);
        diffcl_tensor_free(r);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "per-sample blend: out of memory");
    }
    if (N) memcpy(coef, a, (size_t)N * sizeof *coef);
    for (int64_t n = 0; n < N; n++)
        for (int64_t i = 0; i < P; i++) {
            int64_t j = n * P + i;
            if (r->dtype == DIFFCL_F32)
                dc_f32(r)[j] = (float)(a[n] * dc_f32(xc)[j] + b[n] * dc_f32(cc)[j]);
            else
                dc_f64(r)[j] = a[n] * dc_f64(xc)[j] + b[n] * dc_f64(cc)[j];
        }
    diffcl_tensor_free(xc);
    diffcl_tensor_free(cc);
    diffcl_tensor *in = (diffcl_tensor *)x;
    dc_node *node = dc_record(r, &OP_AXPBY, &in, 1);
    if (node)
        node->state = coef;
    else
        free(coef);
    *out = r;
    return DIFFCL_OK;
}
