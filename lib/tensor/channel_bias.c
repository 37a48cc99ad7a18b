/* The per-channel bias op: out[n, c, ...] = x[n, c, ...] + b[n, c], with backward (the diffusion
 * network's time-embedding fusion adds one bias per sample and channel over the volume). */
#include "tensor/tensor_internal.h"

/* A _Pragma in a macro is not a statement to clang-format: keep the layout. */
/* clang-format off */
#define BIAS_FWD(T)                                                                        \
    do {                                                                                   \
        const T *px = (const T *)dc_data(xc), *pb = (const T *)dc_data(bc);                \
        T *po = (T *)dc_data(r);                                                           \
        _Pragma("omp parallel for num_threads(nt) schedule(static)")                       \
        for (int64_t p = 0; p < planes; p++) {                                             \
            const T v = pb[p];                                                             \
            const T *a = px + p * S;                                                       \
            T *o = po + p * S;                                                             \
            for (int64_t i = 0; i < S; i++) o[i] = a[i] + v;                               \
        }                                                                                  \
    } while (0)
/* clang-format on */

/* A _Pragma in a macro is not a statement to clang-format: keep the layout. */
/* clang-format off */
#define BIAS_BWD(T)                                                                        \
    do {                                                                                   \
        const T *pg = (const T *)dc_data(gc);                                              \
        T *pb = (T *)dc_data(gb);                                                          \
        _Pragma("omp parallel for num_threads(nt) schedule(static)")                       \
        for (int64_t p = 0; p < planes; p++) {                                             \
            double acc = 0;                                                                \
            const T *a = pg + p * S;                                                       \
            for (int64_t i = 0; i < S; i++) acc += a[i];                                   \
            pb[p] = (T)acc;                                                                \
        }                                                                                  \
    } while (0)
/* clang-format on */

static diffcl_status channel_bias_backward(dc_node *n, diffcl_tensor *g, diffcl_tensor **gin)
{
    const diffcl_tensor *x = n->inputs[0], *b = n->inputs[1];
    diffcl_tensor *gc = dc_contiguous(g);
    if (!gc) return DIFFCL_ERR_OUT_OF_MEMORY;
    if (dc_wants_grad(n, 1)) {
        int64_t planes = b->shape[0] * b->shape[1], S = planes ? dc_numel(x) / planes : 0;
        int nt = dc_threads(x->ctx);
        diffcl_tensor *gb = dc_tensor_empty(b->ctx, b->dtype, b->ndim, b->shape);
        if (!gb) {
            diffcl_tensor_free(gc);
            return DIFFCL_ERR_OUT_OF_MEMORY;
        }
        if (b->dtype == DIFFCL_F32)
            BIAS_BWD(float);
        else
            BIAS_BWD(double);
        (void)nt;
        gin[1] = gb;
    }
    if (dc_wants_grad(n, 0)) gin[0] = diffcl_tensor_retain(gc);
    diffcl_tensor_free(gc);
    return DIFFCL_OK;
}
/* x and b are read for their shapes only */
static const dc_op OP_CHANNEL_BIAS = {"channel_bias", channel_bias_backward, NULL, 0x3};

diffcl_status dc_add_channel_bias(const diffcl_tensor *x, const diffcl_tensor *b,
                                  diffcl_tensor **out)
{
    const char *fn = "channel_bias";
    DC_CHECK_ARG(out, "%s: out is NULL", fn);
    *out = NULL;
    DC_CHECK_TENSOR(x, fn);
    DC_CHECK_TENSOR(b, fn);
    if (!dc_is_float(x->dtype) || x->dtype != b->dtype)
        return dc_error(DIFFCL_ERR_DTYPE, "%s: x is %s, bias is %s; need matching f32 or f64", fn,
                        diffcl_dtype_name(x->dtype), diffcl_dtype_name(b->dtype));
    if (x->ndim < 2 || b->ndim != 2 || b->shape[0] != x->shape[0] || b->shape[1] != x->shape[1])
        return dc_error(DIFFCL_ERR_SHAPE, "%s: bias %s does not match [N, C] of x %s", fn,
                        dc_shape_str(b), dc_shape_str(x));
    diffcl_tensor *xc = dc_contiguous(x), *bc = xc ? dc_contiguous(b) : NULL;
    diffcl_tensor *r = bc ? dc_tensor_empty_like(x) : NULL;
    if (!r) {
        diffcl_tensor_free(xc);
        diffcl_tensor_free(bc);
        return DIFFCL_ERR_OUT_OF_MEMORY;
    }
    int64_t planes = x->shape[0] * x->shape[1], S = planes ? dc_numel(x) / planes : 0;
    int nt = dc_threads(x->ctx);
    if (x->dtype == DIFFCL_F32)
        BIAS_FWD(float);
    else
        BIAS_FWD(double);
    (void)nt;
    diffcl_tensor_free(xc);
    diffcl_tensor_free(bc);
    diffcl_tensor *in[2] = {(diffcl_tensor *)x, (diffcl_tensor *)b};
    dc_record(r, &OP_CHANNEL_BIAS, in, 2);
    *out = r;
    return DIFFCL_OK;
}
