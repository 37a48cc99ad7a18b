/* Pointwise activations (ReLU, LeakyReLU, SiLU, GELU, sigmoid, softplus), F32 and F64,
 * each with its hand-written backward, and the parameter-free activation module. */
#include <math.h>
#include <stdlib.h>

#include "layer/fast_math.h"
#include "layer/nn_internal.h"

enum { ACT_RELU, ACT_LEAKY, ACT_SILU, ACT_GELU, ACT_SIGMOID, ACT_SOFTPLUS };

static const char *const ACT_FN[] = {"diffcl_relu", "diffcl_leaky_relu", "diffcl_silu",
                                     "diffcl_gelu", "diffcl_sigmoid",    "diffcl_softplus"};

#define SOFTPLUS_THRESHOLD 20.0 /* PyTorch: linear above beta * x > 20 */

/* Numerically stable logistic function and PyTorch's softplus in double. Float uses the
 * branch-free dc_sigmoidf / dc_softplusf of fast_math.h, which vectorise (libm's expf kept
 * the HF-Mamba's gates scalar). */
static inline double sigm_d(double v)
{
    if (v >= 0) return 1.0 / (1.0 + exp(-v));
    double e = exp(v);
    return e / (1.0 + e);
}
static inline double softplus_d(double v)
{
    return v > SOFTPLUS_THRESHOLD ? v : log1p(exp(v));
}

/* every kernel loop: split over nt threads, vectorised within each */
/* A _Pragma in a macro is not a statement to clang-format: keep the layout. */
/* clang-format off */
#define ACT_FOR \
    _Pragma("omp parallel for simd num_threads(nt) schedule(static) if(n > DC_NN_PAR_MIN)")
/* clang-format on */

/* Forward and backward kernels for one precision: T the type, SFX f/d, EXP/ERF the math
 * functions of that precision, SIGM/SOFTPLUS its logistic and softplus. Every loop is an
 * `omp simd` loop (DC_VEC_MATH lets GCC vectorise them; those calling libm stay scalar).
 * `relu(NaN)` stays NaN as in PyTorch. */

#define T float
#define SFX f
#define EXP expf
#define ERF erff
#define SIGM dc_sigmoidf
#define SOFTPLUS dc_softplusf
#include "layer/activation_kernels.inc"
#define T double
#define SFX d
#define EXP exp
#define ERF erf
#define SIGM sigm_d
#define SOFTPLUS softplus_d
#include "layer/activation_kernels.inc"

/* saved[0] = contiguous x (y for ReLU and sigmoid, whose gradients need only the output:
 * keeping x alive too would hold one more activation per layer), saved[1] = y;
 * i[0] = kind, f[0] = slope */
static diffcl_status act_backward(dc_node *n, diffcl_tensor *g, diffcl_tensor **gin)
{
    if (!dc_wants_grad(n, 0)) return DIFFCL_OK;
    const diffcl_tensor *x = n->saved[0], *y = n->saved[1];
    diffcl_tensor *gc = dc_contiguous(g);
    diffcl_tensor *gx = gc ? dc_tensor_empty(x->ctx, x->dtype, x->ndim, x->shape) : NULL;
    if (!gx) {
        diffcl_tensor_free(gc);
        return DIFFCL_ERR_OUT_OF_MEMORY;
    }
    int kind = (int)n->i[0], nt = dc_threads(x->ctx);
    int64_t cnt = dc_numel(x);
    if (x->dtype == DIFFCL_F32)
        act_bwd_f(kind, dc_f32(x), dc_f32(y), dc_f32(gc), dc_f32(gx), cnt, (float)n->f[0], nt);
    else
        act_bwd_d(kind, dc_f64(x), dc_f64(y), dc_f64(gc), dc_f64(gx), cnt, n->f[0], nt);
    diffcl_tensor_free(gc);
    gin[0] = gx;
    return DIFFCL_OK;
}
static const dc_op OP_ACT = {"activation", act_backward, NULL, 0x1};

static diffcl_status activation(const diffcl_tensor *x, int kind, double slope, diffcl_tensor **out)
{
    const char *fn = ACT_FN[kind];
    DC_CHECK_ARG(out, "%s: out is NULL", fn);
    *out = NULL;
    DC_TRY(dc_nn_check_float(x, fn, "input"));
    diffcl_tensor *xc = dc_contiguous(x);
    diffcl_tensor *y = xc ? dc_tensor_empty(x->ctx, x->dtype, x->ndim, x->shape) : NULL;
    if (!y) {
        diffcl_tensor_free(xc);
        return DIFFCL_ERR_OUT_OF_MEMORY;
    }
    int nt = dc_threads(x->ctx);
    int64_t cnt = dc_numel(x);
    if (x->dtype == DIFFCL_F32)
        act_fwd_f(kind, dc_f32(xc), dc_f32(y), cnt, (float)slope, nt);
    else
        act_fwd_d(kind, dc_f64(xc), dc_f64(y), cnt, slope, nt);
    diffcl_tensor *in = (diffcl_tensor *)x;
    dc_node *n = dc_record(y, &OP_ACT, &in, 1);
    if (n) {
        n->i[0] = kind;
        n->f[0] = slope;
        dc_node_save(n, kind == ACT_RELU || kind == ACT_SIGMOID ? y : xc);
        dc_node_save(n, y);
    }
    diffcl_tensor_free(xc);
    *out = y;
    return DIFFCL_OK;
}

diffcl_status diffcl_relu(const diffcl_tensor *x, diffcl_tensor **out)
{
    return activation(x, ACT_RELU, 0, out);
}
diffcl_status diffcl_leaky_relu(const diffcl_tensor *x, double negative_slope, diffcl_tensor **out)
{
    return activation(x, ACT_LEAKY, negative_slope, out);
}
diffcl_status diffcl_silu(const diffcl_tensor *x, diffcl_tensor **out)
{
    return activation(x, ACT_SILU, 0, out);
}
diffcl_status diffcl_gelu(const diffcl_tensor *x, diffcl_tensor **out)
{
    return activation(x, ACT_GELU, 0, out);
}
diffcl_status diffcl_sigmoid(const diffcl_tensor *x, diffcl_tensor **out)
{
    return activation(x, ACT_SIGMOID, 0, out);
}
diffcl_status diffcl_softplus(const diffcl_tensor *x, diffcl_tensor **out)
{
    return activation(x, ACT_SOFTPLUS, 0, out);
}

/* ------------------------------------------------------------------ module ---- */

typedef struct act_impl {
    diffcl_activation_kind kind;
} act_impl;

static diffcl_status act_module_forward(diffcl_module *m, const diffcl_tensor *x,
                                        diffcl_tensor **out)
{
    const act_impl *a = m->impl;
    switch (a->kind) {
    case DIFFCL_ACT_RELU: return diffcl_relu(x, out);
    case DIFFCL_ACT_LEAKY_RELU: return diffcl_leaky_relu(x, 0.01, out);
    case DIFFCL_ACT_SILU: return diffcl_silu(x, out);
    case DIFFCL_ACT_GELU: return diffcl_gelu(x, out);
    default: return diffcl_sigmoid(x, out);
    }
}

static const dc_module_vtable ACT_VT[] = {
    {"relu", act_module_forward, free},    {"leaky_relu", act_module_forward, free},
    {"silu", act_module_forward, free},    {"gelu", act_module_forward, free},
    {"sigmoid", act_module_forward, free},
};

diffcl_status diffcl_activation_create(diffcl_context *ctx, diffcl_activation_kind kind,
                                       diffcl_module **out)
{
    DC_CHECK_ARG(out, "diffcl_activation_create: out is NULL");
    *out = NULL;
    DC_CHECK_ARG(ctx, "diffcl_activation_create: ctx is NULL");
    DC_CHECK_ARG((int)kind >= DIFFCL_ACT_RELU && (int)kind <= DIFFCL_ACT_SIGMOID,
                 "diffcl_activation_create: unknown activation kind %d", (int)kind);
    act_impl *a = dc_malloc(sizeof *a);
    if (!a) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "diffcl_activation_create: out of memory");
    a->kind = kind;
    diffcl_module *m = dc_module_new(ctx, &ACT_VT[kind], a);
    if (!m) return DIFFCL_ERR_OUT_OF_MEMORY;
    *out = m;
    return DIFFCL_OK;
}
