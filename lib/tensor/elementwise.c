/* Elementwise ops with NumPy broadcasting, F32 and F64, each with its backward. */
#include <math.h>

#include "tensor/tensor_internal.h"

enum { BIN_ADD, BIN_SUB, BIN_MUL, BIN_DIV };

/* Broadcast a and b; writes the out shape and per-operand strides (0 on broadcast axes). */
static diffcl_status broadcast(const diffcl_tensor *a, const diffcl_tensor *b, int *nd,
                               int64_t *shape, int64_t *sa, int64_t *sb, const char *fn)
{
    int n = a->ndim > b->ndim ? a->ndim : b->ndim;
    for (int i = 0; i < n; i++) {
        int ia = i - (n - a->ndim), ib = i - (n - b->ndim);
        int64_t da = ia >= 0 ? a->shape[ia] : 1, db = ib >= 0 ? b->shape[ib] : 1;
        if (da != db && da != 1 && db != 1)
            return dc_error(DIFFCL_ERR_SHAPE, "%s: shapes %s and %s do not broadcast", fn,
                            dc_shape_str(a), dc_shape_str(b));
        shape[i] = da == 1 ? db : da;
        sa[i] = (ia >= 0 && da != 1) ? a->strides[ia] : 0;
        sb[i] = (ib >= 0 && db != 1) ? b->strides[ib] : 0;
    }
    *nd = n;
    return DIFFCL_OK;
}

#define BINARY_LOOP(T, EXPR)                                                                       \
    do {                                                                                           \
        const T *pa = (const T *)dc_data(a), *pb = (const T *)dc_data(b);                          \
        T *po = (T *)dc_data(r);                                                                   \
        if (fast) {                                                                                \
            for (int64_t j = 0; j < total; j++) {                                                  \
                T x = pa[j], y = pb[j];                                                            \
                po[j] = (EXPR);                                                                    \
            }                                                                                      \
            break;                                                                                 \
        }                                                                                          \
        int64_t idx[DIFFCL_MAX_DIMS] = {0};                                                        \
        for (int64_t done = 0; done < total; done += inner) {                                      \
            int64_t oa = 0, ob = 0;                                                                \
            for (int i = 0; i < nd - 1; i++) {                                                     \
                oa += idx[i] * sa[i];                                                              \
                ob += idx[i] * sb[i];                                                              \
            }                                                                                      \
            const T *qa = pa + oa, *qb = pb + ob;                                                  \
            for (int64_t j = 0; j < inner; j++) {                                                  \
                T x = qa[j * ia], y = qb[j * ib];                                                  \
                po[done + j] = (EXPR);                                                             \
            }                                                                                      \
            for (int i = nd - 2; i >= 0; i--) {                                                    \
                if (++idx[i] < shape[i]) break;                                                    \
                idx[i] = 0;                                                                        \
            }                                                                                      \
        }                                                                                          \
    } while (0)

static diffcl_tensor *binary_kernel(const diffcl_tensor *a, const diffcl_tensor *b, int op,
                                    const char *fn, diffcl_status *status)
{
    int nd = 0;
    int64_t shape[DIFFCL_MAX_DIMS], sa[DIFFCL_MAX_DIMS], sb[DIFFCL_MAX_DIMS];
    *status = broadcast(a, b, &nd, shape, sa, sb, fn);
    if (*status != DIFFCL_OK) return NULL;
    diffcl_tensor *r = dc_tensor_empty(a->ctx, a->dtype, nd, shape);
    if (!r) {
        *status = DIFFCL_ERR_OUT_OF_MEMORY;
        return NULL;
    }
    int64_t total = dc_numel(r);
    if (total == 0) return r;
    int64_t inner = nd ? shape[nd - 1] : 1;
    int64_t ia = nd ? sa[nd - 1] : 0, ib = nd ? sb[nd - 1] : 0;
    int fast = dc_same_shape(a, b) && dc_is_contiguous(a) && dc_is_contiguous(b);
    if (a->dtype == DIFFCL_F32) {
        switch (op) {
        case BIN_ADD: BINARY_LOOP(float, x + y); break;
        case BIN_SUB: BINARY_LOOP(float, x - y); break;
        case BIN_MUL: BINARY_LOOP(float, x *y); break;
        default: BINARY_LOOP(float, x / y); break;
        }
    } else {
        switch (op) {
        case BIN_ADD: BINARY_LOOP(double, x + y); break;
        case BIN_SUB: BINARY_LOOP(double, x - y); break;
        case BIN_MUL: BINARY_LOOP(double, x *y); break;
        default: BINARY_LOOP(double, x / y); break;
        }
    }
    return r;
}

static diffcl_status check_float_pair(const diffcl_tensor *a, const diffcl_tensor *b,
                                      const char *fn)
{
    DC_CHECK_TENSOR(a, fn);
    DC_CHECK_TENSOR(b, fn);
    if (!dc_is_float(a->dtype) || a->dtype != b->dtype)
        return dc_error(DIFFCL_ERR_DTYPE, "%s: operands are %s and %s; need matching f32 or f64",
                        fn, diffcl_dtype_name(a->dtype), diffcl_dtype_name(b->dtype));
    if (a->ctx != b->ctx)
        return dc_error(DIFFCL_ERR_INVALID_ARGUMENT, "%s: operands belong to different contexts",
                        fn);
    return DIFFCL_OK;
}

diffcl_tensor *dc_sum_to_shape(const diffcl_tensor *g, int ndim, const int64_t *shape)
{
    diffcl_tensor *r = dc_tensor_new(g->ctx, g->dtype, ndim, shape);
    if (!r) return NULL;
    /* r's strides mapped onto g's axes (0 where r broadcast). */
    int lead = g->ndim - ndim;
    int64_t rs[DIFFCL_MAX_DIMS];
    for (int i = 0; i < g->ndim; i++) {
        int k = i - lead;
        rs[i] = (k >= 0 && shape[k] != 1) ? r->strides[k] : 0;
    }
    int64_t idx[DIFFCL_MAX_DIMS] = {0}, n = dc_numel(g);
    for (int64_t e = 0; e < n; e++) {
        int64_t og = 0, orr = 0;
        for (int i = 0; i < g->ndim; i++) {
            og += idx[i] * g->strides[i];
            orr += idx[i] * rs[i];
        }
        if (g->dtype == DIFFCL_F32)
            dc_f32(r)[orr] += dc_f32(g)[og];
        else
            dc_f64(r)[orr] += dc_f64(g)[og];
        for (int i = g->ndim - 1; i >= 0; i--) {
            if (++idx[i] < g->shape[i]) break;
            idx[i] = 0;
        }
    }
    return r;
}

void dc_add_inplace(diffcl_tensor *a, const diffcl_tensor *b)
{
    int64_t n = dc_numel(a);
    diffcl_tensor *bc = dc_contiguous(b);
    if (!bc) return;
    if (a->dtype == DIFFCL_F32) {
        float *pa = dc_f32(a);
        const float *pb = dc_f32(bc);
        for (int64_t i = 0; i < n; i++) pa[i] += pb[i];
    } else {
        double *pa = dc_f64(a);
        const double *pb = dc_f64(bc);
        for (int64_t i = 0; i < n; i++) pa[i] += pb[i];
    }
    diffcl_tensor_free(bc);
}

diffcl_tensor *dc_nograd_affine(const diffcl_tensor *a, double scale, double shift)
{
    int prev = diffcl_set_grad_enabled(a->ctx, 0);
    diffcl_tensor *r = NULL;
    diffcl_affine(a, scale, shift, &r);
    diffcl_set_grad_enabled(a->ctx, prev);
    return r;
}

/* Gradients of binary ops: computed at the broadcast shape, then summed down. */
static diffcl_status binary_backward(dc_node *n, diffcl_tensor *g, diffcl_tensor **gin)
{
    int op = (int)n->i[0];
    const diffcl_tensor *a = n->saved[0], *b = n->saved[1];
    for (int k = 0; k < 2; k++) {
        if (!dc_wants_grad(n, k)) continue;
        const diffcl_tensor *x = n->inputs[k];
        diffcl_tensor *full = NULL;
        diffcl_status s = DIFFCL_OK;
        if (op == BIN_ADD)
            full = diffcl_tensor_retain(g);
        else if (op == BIN_SUB)
            full = k == 0 ? diffcl_tensor_retain(g) : dc_nograd_affine(g, -1, 0);
        else if (op == BIN_MUL)
            full = binary_kernel(g, k == 0 ? b : a, BIN_MUL, "mul_backward", &s);
        else if (k == 0)
            full = binary_kernel(g, b, BIN_DIV, "div_backward", &s);
        else {
            /* d(a/b)/db = -a/b^2 = -(a/b)/b */
            diffcl_tensor *q = binary_kernel(a, b, BIN_DIV, "div_backward", &s);
            diffcl_tensor *q2 = q ? binary_kernel(q, b, BIN_DIV, "div_backward", &s) : NULL;
            diffcl_tensor *t = q2 ? binary_kernel(g, q2, BIN_MUL, "div_backward", &s) : NULL;
            full = t ? dc_nograd_affine(t, -1, 0) : NULL;
            diffcl_tensor_free(q);
            diffcl_tensor_free(q2);
            diffcl_tensor_free(t);
        }
        if (!full) return s != DIFFCL_OK ? s : DIFFCL_ERR_OUT_OF_MEMORY;
        if (dc_same_shape(full, x) && dc_is_contiguous(full))
            gin[k] = full;
        else {
            gin[k] = dc_sum_to_shape(full, x->ndim, x->shape);
            diffcl_tensor_free(full);
            if (!gin[k]) return DIFFCL_ERR_OUT_OF_MEMORY;
        }
    }
    return DIFFCL_OK;
}
/* operands' data come from saved[] (mul and div only); inputs[] give the shapes */
static const dc_op OP_BINARY = {"binary", binary_backward, NULL, 0x3};

static diffcl_status binary(const diffcl_tensor *a, const diffcl_tensor *b, int op,
                            diffcl_tensor **out, const char *fn)
{
    DC_CHECK_ARG(out, "%s: out is NULL", fn);
    *out = NULL;
    DC_TRY(check_float_pair(a, b, fn));
    diffcl_status s;
    diffcl_tensor *r = binary_kernel(a, b, op, fn, &s);
    if (!r) return s;
    diffcl_tensor *in[2] = {(diffcl_tensor *)a, (diffcl_tensor *)b};
    dc_node *n = dc_record(r, &OP_BINARY, in, 2);
    if (n) {
        n->i[0] = op;
        if (op == BIN_MUL || op == BIN_DIV) { /* add and sub need no operand data */
            dc_node_save(n, a);
            dc_node_save(n, b);
        }
    }
    *out = r;
    return DIFFCL_OK;
}

diffcl_status diffcl_add(const diffcl_tensor *a, const diffcl_tensor *b, diffcl_tensor **out)
{
    return binary(a, b, BIN_ADD, out, "diffcl_add");
}
diffcl_status diffcl_sub(const diffcl_tensor *a, const diffcl_tensor *b, diffcl_tensor **out)
{
    return binary(a, b, BIN_SUB, out, "diffcl_sub");
}
diffcl_status diffcl_mul(const diffcl_tensor *a, const diffcl_tensor *b, diffcl_tensor **out)
{
    return binary(a, b, BIN_MUL, out, "diffcl_mul");
}
diffcl_status diffcl_div(const diffcl_tensor *a, const diffcl_tensor *b, diffcl_tensor **out)
{
    return binary(a, b, BIN_DIV, out, "diffcl_div");
}

/* ------------------------------------------------------------------ unary ---- */

enum { UN_AFFINE, UN_EXP, UN_LOG, UN_SQRT, UN_SQUARE, UN_ABS, UN_POW };

static double unary_f(int op, double x, double p0, double p1)
{
    switch (op) {
    case UN_AFFINE: return x * p0 + p1;
    case UN_EXP: return exp(x);
    case UN_LOG: return log(x);
    case UN_SQRT: return sqrt(x);
    case UN_SQUARE: return x * x;
    case UN_ABS: return fabs(x);
    default: return pow(x, p0);
    }
}

/* derivative given input x and output y */
static double unary_df(int op, double x, double y, double p0)
{
    switch (op) {
    case UN_AFFINE: return p0;
    case UN_EXP: return y;
    case UN_LOG: return 1.0 / x;
    case UN_SQRT: return 0.5 / y;
    case UN_SQUARE: return 2.0 * x;
    case UN_ABS: return x > 0 ? 1.0 : (x < 0 ? -1.0 : 0.0);
    default: return p0 * pow(x, p0 - 1.0);
    }
}

static diffcl_status unary_backward(dc_node *n, diffcl_tensor *g, diffcl_tensor **gin)
{
    int op = (int)n->i[0];
    const diffcl_tensor *x = n->saved[0], *y = n->saved[1];
    diffcl_tensor *gc = dc_contiguous(g);
    diffcl_tensor *r = gc ? dc_tensor_empty_like(x) : NULL;
    if (!r) {
        diffcl_tensor_free(gc);
        return DIFFCL_ERR_OUT_OF_MEMORY;
    }
    int64_t m = dc_numel(x);
    if (x->dtype == DIFFCL_F32) {
        const float *px = dc_f32(x), *py = dc_f32(y), *pg = dc_f32(gc);
        float *pr = dc_f32(r);
        if (op == UN_AFFINE) {
            float k = (float)n->f[0];
            for (int64_t i = 0; i < m; i++) pr[i] = pg[i] * k;
        } else {
            for (int64_t i = 0; i < m; i++)
                pr[i] = (float)(pg[i] * unary_df(op, px[i], py[i], n->f[0]));
        }
    } else {
        const double *px = dc_f64(x), *py = dc_f64(y), *pg = dc_f64(gc);
        double *pr = dc_f64(r);
        for (int64_t i = 0; i < m; i++) pr[i] = pg[i] * unary_df(op, px[i], py[i], n->f[0]);
    }
    diffcl_tensor_free(gc);
    gin[0] = r;
    return DIFFCL_OK;
}
static const dc_op OP_UNARY = {"unary", unary_backward, NULL, 0};

static diffcl_status unary(const diffcl_tensor *a, int op, double p0, double p1,
                           diffcl_tensor **out, const char *fn)
{
    DC_CHECK_ARG(out, "%s: out is NULL", fn);
    *out = NULL;
    DC_CHECK_TENSOR(a, fn);
    if (!dc_is_float(a->dtype))
        return dc_error(DIFFCL_ERR_DTYPE, "%s: operand is %s; need f32 or f64", fn,
                        diffcl_dtype_name(a->dtype));
    diffcl_tensor *x = dc_contiguous(a);
    diffcl_tensor *r = x ? dc_tensor_empty_like(x) : NULL;
    if (!r) {
        diffcl_tensor_free(x);
        return DIFFCL_ERR_OUT_OF_MEMORY;
    }
    int64_t m = dc_numel(x);
    if (x->dtype == DIFFCL_F32) {
        const float *px = dc_f32(x);
        float *pr = dc_f32(r);
        if (op == UN_AFFINE) {
            float k = (float)p0, c = (float)p1;
            for (int64_t i = 0; i < m; i++) pr[i] = px[i] * k + c;
        } else {
            for (int64_t i = 0; i < m; i++) pr[i] = (float)unary_f(op, px[i], p0, p1);
        }
    } else {
        const double *px = dc_f64(x);
        double *pr = dc_f64(r);
        for (int64_t i = 0; i < m; i++) pr[i] = unary_f(op, px[i], p0, p1);
    }
    diffcl_tensor *in = (diffcl_tensor *)a;
    dc_node *n = dc_record(r, &OP_UNARY, &in, 1);
    if (n) {
        n->i[0] = op;
        n->f[0] = p0;
        dc_node_save(n, x);
        dc_node_save(n, r);
    }
    diffcl_tensor_free(x);
    *out = r;
    return DIFFCL_OK;
}

diffcl_status diffcl_affine(const diffcl_tensor *a, double scale, double shift, diffcl_tensor **out)
{
    return unary(a, UN_AFFINE, scale, shift, out, "diffcl_affine");
}
diffcl_status diffcl_neg(const diffcl_tensor *a, diffcl_tensor **out)
{
    return unary(a, UN_AFFINE, -1.0, 0.0, out, "diffcl_neg");
}
diffcl_status diffcl_exp(const diffcl_tensor *a, diffcl_tensor **out)
{
    return unary(a, UN_EXP, 0, 0, out, "diffcl_exp");
}
diffcl_status diffcl_log(const diffcl_tensor *a, diffcl_tensor **out)
{
    return unary(a, UN_LOG, 0, 0, out, "diffcl_log");
}
diffcl_status diffcl_sqrt(const diffcl_tensor *a, diffcl_tensor **out)
{
    return unary(a, UN_SQRT, 0, 0, out, "diffcl_sqrt");
}
diffcl_status diffcl_square(const diffcl_tensor *a, diffcl_tensor **out)
{
    return unary(a, UN_SQUARE, 0, 0, out, "diffcl_square");
}
diffcl_status diffcl_abs(const diffcl_tensor *a, diffcl_tensor **out)
{
    return unary(a, UN_ABS, 0, 0, out, "diffcl_abs");
}
diffcl_status diffcl_pow_scalar(const diffcl_tensor *a, double p, diffcl_tensor **out)
{
    return unary(a, UN_POW, p, 0, out, "diffcl_pow_scalar");
}
