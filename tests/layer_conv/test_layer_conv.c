/* Suite layer (layer_conv): convolution, transposed convolution, pooling, up-sampling and the
 * conv module. PyTorch parity (tests/reference/gen_layer_conv.py fixtures, F32 and F64),
 * finite-difference checks in F64, every kernel path (tiles in parallel / in turn, tiny
 * tiles), bad input, module init. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer/conv_internal.h"
#include "test_util.h"

static diffcl_context *ctx;
static void setup(void) { ctx = test_context(); }
static void teardown(void)
{
    dc_conv_set_tiling(ctx, 0, 0);
    dc_conv_set_mode(ctx, 0);
    dc_conv_set_kernel(ctx, 0);
    diffcl_context_free(ctx);
}

/* ------------------------------------------------------------ case tables ---- */

/* Mirrors CONV in gen_layer_conv.py. */
typedef struct conv_case {
    const char *name;
    int transposed, dims;
    int k[3], s[3], p[3], d[3], op[3];
    int bias;
} conv_case;

#define C3(a) {a, a, a}
static const conv_case CONV_CASES[] = {
    {"c3d_basic", 0, 3, C3(3), C3(1), C3(1), C3(1), C3(0), 1},
    {"c3d_s2", 0, 3, C3(3), C3(2), C3(1), C3(1), C3(0), 1},
    {"c3d_dil", 0, 3, C3(3), C3(1), C3(2), C3(2), C3(0), 0},
    {"c3d_aniso", 0, 3, {3, 1, 2}, {1, 2, 1}, {1, 0, 1}, C3(1), C3(0), 1},
    {"c3d_k2s2", 0, 3, C3(2), C3(2), C3(0), C3(1), C3(0), 1},
    {"c3d_k2s2_odd", 0, 3, C3(2), C3(2), C3(0), C3(1), C3(0), 1},
    {"c3d_k3s3", 0, 3, C3(3), C3(3), C3(0), C3(1), C3(0), 1},
    {"c3d_1x1", 0, 3, C3(1), C3(1), C3(0), C3(1), C3(0), 1},
    {"c3d_big", 0, 3, C3(3), C3(1), C3(1), C3(1), C3(0), 1},
    {"c3d_pad2", 0, 3, C3(3), C3(1), C3(2), C3(1), C3(0), 1},
    {"c3d_pad3", 0, 3, C3(3), C3(1), C3(3), C3(1), C3(0), 0},
    {"c2d_basic", 0, 2, C3(3), C3(1), C3(1), C3(1), C3(0), 1},
    {"c2d_s2", 0, 2, C3(3), C3(2), C3(0), C3(1), C3(0), 0},
    {"t3d_k2s2", 1, 3, C3(2), C3(2), C3(0), C3(1), C3(0), 1},
    {"t3d_general", 1, 3, C3(3), C3(2), C3(1), C3(1), C3(1), 1},
    {"t3d_k3s3", 1, 3, C3(3), C3(3), C3(0), C3(1), C3(0), 1},
    {"t3d_s1", 1, 3, C3(3), C3(1), C3(1), C3(1), C3(0), 1},
    {"t3d_dil_op", 1, 3, C3(2), C3(1), C3(0), C3(2), C3(1), 0},
    {"t3d_dil_op2", 1, 3, C3(2), C3(1), C3(2), C3(2), C3(1), 1},
    {"t2d_k2s2", 1, 2, C3(2), C3(2), C3(0), C3(1), C3(0), 1},
    {"t2d_general", 1, 2, C3(4), C3(2), C3(1), C3(1), C3(0), 1},
};
#define N_CONV ((int)(sizeof CONV_CASES / sizeof CONV_CASES[0]))

static diffcl_conv_geometry geo_of(const conv_case *c)
{
    diffcl_conv_geometry g = DIFFCL_CONV_GEOMETRY_INIT;
    g.dims = c->dims;
    for (int a = 0; a < 3; a++) {
        g.kernel[a] = c->k[a];
        g.stride[a] = c->s[a];
        g.padding[a] = c->p[a];
        g.dilation[a] = c->d[a];
        g.output_padding[a] = c->op[a];
    }
    return g;
}

/* Mirrors POOL in gen_layer_conv.py. */
typedef struct pool_case {
    const char *name;
    int is_max, dims, k, s, p, d;
} pool_case;
static const pool_case POOL_CASES[] = {
    {"max3d", 1, 3, 2, 2, 0, 1},     {"max3d_pad", 1, 3, 3, 2, 1, 1},
    {"max3d_dil", 1, 3, 2, 1, 0, 2}, {"max2d", 1, 2, 3, 2, 1, 1},
    {"avg3d", 0, 3, 2, 2, 0, 1},     {"avg3d_pad", 0, 3, 3, 2, 1, 1},
    {"avg2d", 0, 2, 3, 1, 1, 1},
};
#define N_POOL ((int)(sizeof POOL_CASES / sizeof POOL_CASES[0]))

static diffcl_conv_geometry pool_geo(const pool_case *c)
{
    diffcl_conv_geometry g = diffcl_conv_geometry_make(c->dims, c->k, c->s, c->p);
    for (int a = 0; a < 3; a++) g.dilation[a] = c->d;
    return g;
}

/* Mirrors UP in gen_layer_conv.py. */
typedef struct up_case {
    const char *name;
    int scale;
    diffcl_upsample_mode mode;
} up_case;
static const up_case UP_CASES[] = {
    {"up3d_nearest", 2, DIFFCL_UPSAMPLE_NEAREST}, {"up3d_linear", 2, DIFFCL_UPSAMPLE_LINEAR},
    {"up3d_linear_s3", 3, DIFFCL_UPSAMPLE_LINEAR}, {"up2d_nearest", 3, DIFFCL_UPSAMPLE_NEAREST},
    {"up2d_linear", 2, DIFFCL_UPSAMPLE_LINEAR},
};
#define N_UP ((int)(sizeof UP_CASES / sizeof UP_CASES[0]))

/* ---------------------------------------------------------------- helpers ---- */

static diffcl_tensor *get(diffcl_tensor_dict *d, const char *name, const char *field)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", name, field);
    diffcl_tensor *t = diffcl_tensor_dict_get(d, key);
    ck_assert_msg(t != NULL, "fixture tensor %s missing", key);
    return t;
}

/* A new leaf of dtype dt holding t's values, requiring grad. */
static diffcl_tensor *leaf(const diffcl_tensor *t, diffcl_dtype dt)
{
    diffcl_tensor *r = NULL;
    ck_ok(diffcl_tensor_to_dtype(t, dt, &r));
    ck_ok(diffcl_tensor_set_requires_grad(r, 1));
    return r;
}

static void expect_close(const char *what, const char *name, const diffcl_tensor *a,
                         const diffcl_tensor *ref, double tol)
{
    ck_assert_msg(a != NULL, "%s %s: no tensor", name, what);
    char label[160];
    snprintf(label, sizeof label, "%s %s", name, what);
    test_expect_close(label, a, ref, tol);
}

/* Backward from y with the fixture's upstream gradient. */
static void backward_with(diffcl_tensor *y, diffcl_tensor *gy_ref, diffcl_dtype dt)
{
    diffcl_tensor *gy = NULL;
    ck_ok(diffcl_tensor_to_dtype(gy_ref, dt, &gy));
    ck_ok(diffcl_backward(y, gy));
    diffcl_tensor_free(gy);
}

static diffcl_context *ctx_threads(int n)
{
    diffcl_context_options o = DIFFCL_CONTEXT_OPTIONS_INIT;
    o.n_threads = n;
    o.log_level = DIFFCL_LOG_WARN;
    diffcl_context *c = NULL;
    ck_ok(diffcl_context_create(&o, &c));
    return c;
}

/* Kernel configurations every parity case runs under: threads, tile bytes, min tile
 * width (voxels), mode of the BLAS family (0 auto, 1 tiles in parallel, 2 tiles in turn),
 * kernel family for F32 (1 cblas_sgemm, 2 AVX-512 micro-kernels, 3 / 4 the same forcing
 * the channel-vector / the padded-position path for stride 1; F64 always uses BLAS).
 * The first N_KCONF_BLAS use the BLAS family: the F64 gradient checks run under those. */
typedef struct kconf {
    int threads;
    size_t tile_bytes;
    int64_t min_cols;
    int mode;
    int kernel;
} kconf;
static const kconf KCONFS[] = {
    {1, 0, 0, 0, 1},     /* defaults, one thread */
    {2, 0, 0, 0, 1},     /* defaults, two threads */
    {2, 64, 1, 1, 1},    /* one output row per tile, tiles in parallel */
    {2, 64, 1, 2, 1},    /* one output row per tile, tiles in turn */
    {1, 2048, 20, 0, 1}, /* a few rows per tile */
    {1, 0, 0, 0, 2},     /* AVX-512, defaults */
    {2, 0, 0, 0, 2},     /* AVX-512, two threads */
    {2, 64, 1, 0, 2},    /* AVX-512, 48-voxel tiles, two threads */
    {1, 64, 1, 0, 2},    /* AVX-512, 48-voxel tiles, one thread */
    {2, 64, 1, 0, 3},    /* AVX-512, stride 1 always by channel vectors, one-plane slabs */
    {1, 0, 0, 0, 3},     /* AVX-512, stride 1 always by channel vectors */
    {2, 0, 0, 0, 4},     /* AVX-512, stride 1 always direct (padded positions) */
};
#define N_KCONF ((int)(sizeof KCONFS / sizeof KCONFS[0]))
#define N_KCONF_BLAS 5

static diffcl_context *apply_conf(const kconf *k)
{
    dc_conv_set_tiling(ctx, k->tile_bytes, k->min_cols);
    dc_conv_set_mode(ctx, k->mode);
    dc_conv_set_kernel(ctx, k->kernel);
    return ctx_threads(k->threads);
}

/* -------------------------------------------------------------- parity ---- */

static void conv_parity(diffcl_context *c, diffcl_tensor_dict *d, const conv_case *cc,
                        diffcl_dtype dt, double tol)
{
    (void)c;
    diffcl_conv_geometry g = geo_of(cc);
    diffcl_tensor *x = leaf(get(d, cc->name, "x"), dt), *w = leaf(get(d, cc->name, "w"), dt);
    diffcl_tensor *b = cc->bias ? leaf(get(d, cc->name, "b"), dt) : NULL;
    diffcl_tensor *y = NULL;
    if (cc->transposed) ck_ok(diffcl_conv_transpose(x, w, b, &g, &y));
    else ck_ok(diffcl_conv(x, w, b, &g, &y));
    char what[64];
    snprintf(what, sizeof what, "%s forward", diffcl_dtype_name(dt));
    expect_close(what, cc->name, y, get(d, cc->name, "y"), tol);
    backward_with(y, get(d, cc->name, "gy"), dt);
    snprintf(what, sizeof what, "%s input grad", diffcl_dtype_name(dt));
    expect_close(what, cc->name, diffcl_tensor_grad(x), get(d, cc->name, "gx"), tol);
    snprintf(what, sizeof what, "%s weight grad", diffcl_dtype_name(dt));
    expect_close(what, cc->name, diffcl_tensor_grad(w), get(d, cc->name, "gw"), tol);
    if (b) {
        snprintf(what, sizeof what, "%s bias grad", diffcl_dtype_name(dt));
        expect_close(what, cc->name, diffcl_tensor_grad(b), get(d, cc->name, "gb"), tol);
    }
    diffcl_tensor_free(y);
    diffcl_tensor_free(x);
    diffcl_tensor_free(w);
    diffcl_tensor_free(b);
}

/* Fixtures are loaded into the configuration's context so every tensor shares it. */
START_TEST(test_conv_parity)
{
    const kconf *k = &KCONFS[_i];
    diffcl_context *c = apply_conf(k);
    diffcl_tensor_dict *d = NULL;
    ck_ok(diffcl_safetensors_load(c, test_fixture_path("layer_conv.safetensors"), &d));
    for (int i = 0; i < N_CONV; i++) {
        conv_parity(c, d, &CONV_CASES[i], DIFFCL_F32, 1e-4);
        conv_parity(c, d, &CONV_CASES[i], DIFFCL_F64, 1e-10);
    }
    diffcl_tensor_dict_free(d);
    diffcl_context_free(c);
}
END_TEST

START_TEST(test_pool_upsample_parity)
{
    diffcl_context *c = _i ? ctx_threads(2) : ctx_threads(1);
    diffcl_tensor_dict *d = NULL;
    ck_ok(diffcl_safetensors_load(c, test_fixture_path("layer_conv.safetensors"), &d));
    for (int t = 0; t < 2; t++) {
        diffcl_dtype dt = t ? DIFFCL_F64 : DIFFCL_F32;
        double tol = t ? 1e-10 : 1e-4;
        for (int i = 0; i < N_POOL + N_UP; i++) {
            const char *name = i < N_POOL ? POOL_CASES[i].name : UP_CASES[i - N_POOL].name;
            diffcl_tensor *x = leaf(get(d, name, "x"), dt), *y = NULL;
            if (i < N_POOL) {
                diffcl_conv_geometry g = pool_geo(&POOL_CASES[i]);
                if (POOL_CASES[i].is_max) ck_ok(diffcl_max_pool(x, &g, &y));
                else ck_ok(diffcl_avg_pool(x, &g, &y));
            } else {
                const up_case *u = &UP_CASES[i - N_POOL];
                ck_ok(diffcl_upsample(x, u->scale, u->mode, &y));
            }
            expect_close(diffcl_dtype_name(dt), name, y, get(d, name, "y"), tol);
            backward_with(y, get(d, name, "gy"), dt);
            expect_close("input grad", name, diffcl_tensor_grad(x), get(d, name, "gx"), tol);
            diffcl_tensor_free(y);
            diffcl_tensor_free(x);
        }
    }
    diffcl_tensor_dict_free(d);
    diffcl_context_free(c);
}
END_TEST

/* ---------------------------------------------------------- gradcheck (F64) ---- */

typedef struct gc_conv {
    diffcl_conv_geometry g;
    int transposed;
} gc_conv;

static diffcl_status f_conv(diffcl_tensor *const *in, int n, diffcl_tensor **out, void *user)
{
    const gc_conv *u = user;
    const diffcl_tensor *b = n > 2 ? in[2] : NULL;
    return u->transposed ? diffcl_conv_transpose(in[0], in[1], b, &u->g, out)
                         : diffcl_conv(in[0], in[1], b, &u->g, out);
}

static void gradcheck(diffcl_gradcheck_fn fn, void *user, diffcl_tensor **in, int n,
                      const char *name)
{
    diffcl_gradcheck_options o = DIFFCL_GRADCHECK_OPTIONS_INIT;
    o.max_checks = 150;
    diffcl_gradcheck_result r = {sizeof r, 0, 0, 0, 0, 0, 0};
    diffcl_status s = diffcl_gradcheck(fn, user, in, n, &o, &r);
    ck_assert_msg(s == DIFFCL_OK, "gradcheck %s: %s (max abs %g, rel %g)", name,
                  diffcl_last_error(), r.max_abs_error, r.max_rel_error);
    ck_assert_int_gt(r.n_checked, 0);
}

static diffcl_tensor *rand_param(diffcl_context *c, int nd, const int64_t *shape, uint64_t seed)
{
    diffcl_tensor *t = test_randn(c, DIFFCL_F64, nd, shape, seed);
    ck_ok(diffcl_tensor_set_requires_grad(t, 1));
    return t;
}

/* Every conv case's geometry on fresh random inputs, under every kernel configuration. */
START_TEST(test_conv_gradcheck)
{
    const kconf *k = &KCONFS[_i];
    diffcl_context *c = apply_conf(k);
    static const int64_t sp3[][3] = {{5, 4, 6}, {3, 4, 3}};
    for (int i = 0; i < N_CONV; i++) {
        const conv_case *cc = &CONV_CASES[i];
        gc_conv u = {geo_of(cc), cc->transposed};
        const int64_t ci = 3, co = 2, n = 2;
        int64_t xs[5] = {n, ci, 0, 0, 0}, ws[5] = {cc->transposed ? ci : co, cc->transposed ? co : ci};
        const int64_t *sp = sp3[cc->transposed];
        for (int a = 0; a < cc->dims; a++) {
            xs[2 + a] = sp[a + 3 - cc->dims] + (cc->dims == 2 ? 2 : 0);
            ws[2 + a] = cc->k[a];
        }
        int64_t bs[1] = {co};
        diffcl_tensor *in[3] = {rand_param(c, cc->dims + 2, xs, 11 + i),
                                rand_param(c, cc->dims + 2, ws, 101 + i),
                                rand_param(c, 1, bs, 1001 + i)};
        gradcheck(f_conv, &u, in, cc->bias ? 3 : 2, cc->name);
        for (int j = 0; j < 3; j++) diffcl_tensor_free(in[j]);
    }
    diffcl_context_free(c);
}
END_TEST

typedef struct gc_pool {
    diffcl_conv_geometry g;
    int kind; /* 0 max, 1 avg, 2 nearest, 3 linear */
    int scale;
} gc_pool;

static diffcl_status f_pool(diffcl_tensor *const *in, int n, diffcl_tensor **out, void *user)
{
    (void)n;
    const gc_pool *u = user;
    switch (u->kind) {
    case 0: return diffcl_max_pool(in[0], &u->g, out);
    case 1: return diffcl_avg_pool(in[0], &u->g, out);
    case 2: return diffcl_upsample(in[0], u->scale, DIFFCL_UPSAMPLE_NEAREST, out);
    default: return diffcl_upsample(in[0], u->scale, DIFFCL_UPSAMPLE_LINEAR, out);
    }
}

START_TEST(test_pool_upsample_gradcheck)
{
    diffcl_context *c = _i ? ctx_threads(2) : ctx_threads(1);
    for (int i = 0; i < N_POOL; i++) {
        const pool_case *pc = &POOL_CASES[i];
        gc_pool u = {pool_geo(pc), pc->is_max ? 0 : 1, 1};
        int64_t xs[5] = {2, 2, 6, 7, 5};
        if (pc->dims == 2) xs[2] = 8, xs[3] = 7;
        diffcl_tensor *x = rand_param(c, pc->dims + 2, xs, 7 + i);
        gradcheck(f_pool, &u, &x, 1, pc->name);
        diffcl_tensor_free(x);
    }
    for (int i = 0; i < N_UP; i++) {
        const up_case *uc = &UP_CASES[i];
        gc_pool u = {diffcl_conv_geometry_make(3, 1, 1, 0),
                     uc->mode == DIFFCL_UPSAMPLE_NEAREST ? 2 : 3, uc->scale};
        int64_t xs[5] = {2, 2, 3, 2, 4};
        int nd = strstr(uc->name, "2d") ? 4 : 5;
        diffcl_tensor *x = rand_param(c, nd, xs, 70 + i);
        gradcheck(f_pool, &u, &x, 1, uc->name);
        diffcl_tensor_free(x);
    }
    diffcl_context_free(c);
}
END_TEST

/* The V-Net's own shapes at a small size, F32 against F64 (tiled, multi-threaded), with
 * each F32 kernel family. */
START_TEST(test_vnet_shapes_f32_vs_f64)
{
    dc_conv_set_kernel(ctx, 1 + _i);
    diffcl_context *c = ctx_threads(2);
    struct {
        int ci, co, k, s, transposed;
        int64_t sp[3];
    } cs[] = {
        {16, 16, 3, 1, 0, {12, 10, 8}}, {16, 32, 2, 2, 0, {12, 10, 8}},
        {32, 16, 2, 2, 1, {6, 5, 4}},   {1, 16, 3, 1, 0, {12, 10, 8}},
        {16, 2, 1, 1, 0, {12, 10, 8}},
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        int64_t xs[5] = {2, cs[i].ci, cs[i].sp[0], cs[i].sp[1], cs[i].sp[2]};
        int64_t ws[5] = {cs[i].transposed ? cs[i].ci : cs[i].co,
                         cs[i].transposed ? cs[i].co : cs[i].ci, cs[i].k, cs[i].k, cs[i].k};
        int64_t bs[1] = {cs[i].co};
        diffcl_conv_geometry g = diffcl_conv_geometry_make(3, cs[i].k, cs[i].s, cs[i].k == 3);
        diffcl_tensor *t64[3] = {test_randn(c, DIFFCL_F64, 5, xs, 1 + i),
                                 test_randn(c, DIFFCL_F64, 5, ws, 2 + i),
                                 test_randn(c, DIFFCL_F64, 1, bs, 3 + i)};
        diffcl_tensor *t32[3], *y[2], *gx[2], *gw[2], *gb[2];
        for (int j = 0; j < 3; j++) {
            t32[j] = leaf(t64[j], DIFFCL_F32);
            ck_ok(diffcl_tensor_set_requires_grad(t64[j], 1));
        }
        for (int v = 0; v < 2; v++) {
            diffcl_tensor **t = v ? t64 : t32;
            if (cs[i].transposed) ck_ok(diffcl_conv_transpose(t[0], t[1], t[2], &g, &y[v]));
            else ck_ok(diffcl_conv(t[0], t[1], t[2], &g, &y[v]));
            diffcl_tensor *sq = NULL, *L = NULL;
            ck_ok(diffcl_square(y[v], &sq));
            ck_ok(diffcl_sum_all(sq, &L));
            ck_ok(diffcl_backward(L, NULL));
            diffcl_tensor_free(sq);
            diffcl_tensor_free(L);
            gx[v] = diffcl_tensor_grad(t[0]);
            gw[v] = diffcl_tensor_grad(t[1]);
            gb[v] = diffcl_tensor_grad(t[2]);
        }
        expect_close("f32 forward", "vnet", y[0], y[1], 1e-5);
        expect_close("f32 input grad", "vnet", gx[0], gx[1], 1e-5);
        expect_close("f32 weight grad", "vnet", gw[0], gw[1], 1e-5);
        expect_close("f32 bias grad", "vnet", gb[0], gb[1], 1e-5);
        for (int j = 0; j < 3; j++) {
            diffcl_tensor_free(t32[j]);
            diffcl_tensor_free(t64[j]);
        }
        diffcl_tensor_free(y[0]);
        diffcl_tensor_free(y[1]);
    }
    diffcl_context_free(c);
}
END_TEST

/* Weight gradients (reduced over threads) are bitwise identical from run to run. */
START_TEST(test_deterministic)
{
    dc_conv_set_kernel(ctx, 1 + _i);
    dc_conv_set_tiling(ctx, 4096, 1);
    diffcl_context *c = ctx_threads(2);
    const int cfg[3][3] = {{8, 32, 3}, {8, 32, 2}, {4, 8, 3}}; /* ci, co, k (k2: stride 2) */
    for (int v = 0; v < 3; v++) {
        int64_t xs[5] = {2, cfg[v][0], 12, 10, 9};
        int64_t ws[5] = {cfg[v][1], cfg[v][0], cfg[v][2], cfg[v][2], cfg[v][2]};
        diffcl_tensor *x = test_randn(c, DIFFCL_F32, 5, xs, 5), *w = test_randn(c, DIFFCL_F32, 5, ws, 6);
        ck_ok(diffcl_tensor_set_requires_grad(w, 1));
        diffcl_conv_geometry g = diffcl_conv_geometry_make(3, cfg[v][2], cfg[v][2] == 2 ? 2 : 1,
                                                           cfg[v][2] == 3);
        float *first = NULL;
        size_t nb = (size_t)diffcl_tensor_numel(w) * sizeof(float);
        for (int run = 0; run < 4; run++) {
            diffcl_tensor *y = NULL, *sq = NULL, *L = NULL;
            ck_ok(diffcl_conv(x, w, NULL, &g, &y));
            ck_ok(diffcl_square(y, &sq));
            ck_ok(diffcl_sum_all(sq, &L));
            ck_ok(diffcl_backward(L, NULL));
            const float *gw = diffcl_tensor_data_const(diffcl_tensor_grad(w));
            if (!first) {
                first = malloc(nb);
                memcpy(first, gw, nb);
            } else {
                ck_assert_msg(memcmp(first, gw, nb) == 0, "case %d: weight gradient differs in run %d",
                              v, run);
            }
            diffcl_tensor_zero_grad(w);
            diffcl_tensor_free(L);
            diffcl_tensor_free(sq);
            diffcl_tensor_free(y);
        }
        free(first);
        diffcl_tensor_free(x);
        diffcl_tensor_free(w);
    }
    diffcl_context_free(c);
}
END_TEST

/* ------------------------------------------------------------- bad input ---- */

static void expect_err(diffcl_status got, diffcl_status want, const char *needle)
{
    ck_assert_msg(got == want, "expected %s, got %s: %s", diffcl_status_string(want),
                  diffcl_status_string(got), diffcl_last_error());
    if (needle)
        ck_assert_msg(strstr(diffcl_last_error(), needle) != NULL, "message '%s' lacks '%s'",
                      diffcl_last_error(), needle);
}

START_TEST(test_bad_input)
{
    int64_t xs[5] = {1, 3, 6, 6, 6}, ws[5] = {4, 2, 3, 3, 3}, ws_ok[5] = {4, 3, 3, 3, 3};
    int64_t small[5] = {1, 3, 2, 6, 6}, x4[4] = {1, 3, 6, 6}, bs[1] = {5};
    diffcl_tensor *x = test_randn(ctx, DIFFCL_F32, 5, xs, 1);
    diffcl_tensor *w_bad = test_randn(ctx, DIFFCL_F32, 5, ws, 2);
    diffcl_tensor *w = test_randn(ctx, DIFFCL_F32, 5, ws_ok, 3);
    diffcl_tensor *xsmall = test_randn(ctx, DIFFCL_F32, 5, small, 4);
    diffcl_tensor *x2d = test_randn(ctx, DIFFCL_F32, 4, x4, 5);
    diffcl_tensor *b_bad = test_randn(ctx, DIFFCL_F32, 1, bs, 6);
    diffcl_tensor *w64 = test_randn(ctx, DIFFCL_F64, 5, ws_ok, 7);
    diffcl_tensor *y = NULL;
    diffcl_conv_geometry g = diffcl_conv_geometry_make(3, 3, 1, 0);

    expect_err(diffcl_conv(x, w_bad, NULL, &g, &y), DIFFCL_ERR_SHAPE, "channel mismatch");
    ck_assert_ptr_null(y);
    expect_err(diffcl_conv(xsmall, w, NULL, &g, &y), DIFFCL_ERR_SHAPE, "smaller than the kernel");
    expect_err(diffcl_conv(x2d, w, NULL, &g, &y), DIFFCL_ERR_SHAPE, "rank 4");
    expect_err(diffcl_conv(x, w, b_bad, &g, &y), DIFFCL_ERR_SHAPE, "bias");
    expect_err(diffcl_conv(x, w64, NULL, &g, &y), DIFFCL_ERR_DTYPE, NULL);
    diffcl_conv_geometry g5 = diffcl_conv_geometry_make(3, 5, 1, 0);
    expect_err(diffcl_conv(x, w, NULL, &g5, &y), DIFFCL_ERR_SHAPE, "kernel size");
    diffcl_conv_geometry gbad = diffcl_conv_geometry_make(3, 3, 0, 0);
    expect_err(diffcl_conv(x, w, NULL, &gbad, &y), DIFFCL_ERR_INVALID_ARGUMENT, "stride");
    gbad = diffcl_conv_geometry_make(4, 3, 1, 0);
    expect_err(diffcl_conv(x, w, NULL, &gbad, &y), DIFFCL_ERR_INVALID_ARGUMENT, "dims");
    expect_err(diffcl_conv(x, w, NULL, NULL, &y), DIFFCL_ERR_INVALID_ARGUMENT, NULL);
    expect_err(diffcl_conv(NULL, w, NULL, &g, &y), DIFFCL_ERR_INVALID_ARGUMENT, NULL);
    /* padding makes a small input valid */
    diffcl_conv_geometry gp = diffcl_conv_geometry_make(3, 3, 1, 1);
    ck_ok(diffcl_conv(xsmall, w, NULL, &gp, &y));
    diffcl_tensor_free(y);
    y = NULL;

    /* transposed: weight [Cin, Cout, k], output_padding < stride or dilation */
    diffcl_conv_geometry gt = diffcl_conv_geometry_make(3, 3, 2, 0);
    expect_err(diffcl_conv_transpose(x, w, NULL, &gt, &y), DIFFCL_ERR_SHAPE, "channel mismatch");
    int64_t wts[5] = {3, 4, 3, 3, 3};
    diffcl_tensor *wt = test_randn(ctx, DIFFCL_F32, 5, wts, 8);
    gt.output_padding[0] = 2;
    expect_err(diffcl_conv_transpose(x, wt, NULL, &gt, &y), DIFFCL_ERR_INVALID_ARGUMENT,
               "output_padding");
    gt.output_padding[0] = 1;
    ck_ok(diffcl_conv_transpose(x, wt, NULL, &gt, &y));
    ck_assert_int_eq(diffcl_tensor_dim(y, 2), (6 - 1) * 2 + 3 + 1);
    ck_assert_int_eq(diffcl_tensor_dim(y, 3), (6 - 1) * 2 + 3);
    ck_assert_int_eq(diffcl_tensor_dim(y, 1), 4);
    diffcl_tensor_free(y);
    y = NULL;

    /* pooling */
    diffcl_conv_geometry pg = diffcl_conv_geometry_make(3, 3, 2, 0);
    expect_err(diffcl_max_pool(xsmall, &pg, &y), DIFFCL_ERR_SHAPE, "smaller than the window");
    expect_err(diffcl_max_pool(x2d, &pg, &y), DIFFCL_ERR_SHAPE, "rank 4");
    pg.padding[0] = 2;
    expect_err(diffcl_avg_pool(x, &pg, &y), DIFFCL_ERR_INVALID_ARGUMENT, "half");
    pg = diffcl_conv_geometry_make(3, 2, 2, 0);
    pg.dilation[1] = 2;
    expect_err(diffcl_avg_pool(x, &pg, &y), DIFFCL_ERR_INVALID_ARGUMENT, "dilation");
    ck_ok(diffcl_max_pool(x, &pg, &y));
    diffcl_tensor_free(y);
    y = NULL;

    /* up-sampling */
    int64_t v3[3] = {2, 3, 4};
    diffcl_tensor *x3 = test_randn(ctx, DIFFCL_F32, 3, v3, 9);
    expect_err(diffcl_upsample(x3, 2, DIFFCL_UPSAMPLE_LINEAR, &y), DIFFCL_ERR_SHAPE, "rank 3");
    expect_err(diffcl_upsample(x, 0, DIFFCL_UPSAMPLE_LINEAR, &y), DIFFCL_ERR_INVALID_ARGUMENT,
               "scale");
    expect_err(diffcl_upsample(x, 2, (diffcl_upsample_mode)7, &y), DIFFCL_ERR_INVALID_ARGUMENT,
               "mode");

    diffcl_tensor *all[] = {x, w_bad, w, xsmall, x2d, b_bad, w64, wt, x3};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) diffcl_tensor_free(all[i]);
}
END_TEST

/* A non-contiguous input (permuted view) gives the same result as its contiguous copy. */
START_TEST(test_strided_input_and_no_grad)
{
    int64_t xs[5] = {2, 3, 5, 6, 4}, ws[5] = {4, 3, 3, 3, 3};
    diffcl_tensor *x = test_randn(ctx, DIFFCL_F32, 5, xs, 1);
    diffcl_tensor *w = test_randn(ctx, DIFFCL_F32, 5, ws, 2);
    int perm[5] = {0, 1, 2, 4, 3};
    diffcl_tensor *xp = NULL, *xpp = NULL, *xc = NULL, *y1 = NULL, *y2 = NULL;
    ck_ok(diffcl_tensor_permute(x, perm, &xp));
    ck_ok(diffcl_tensor_contiguous(xp, &xc));
    diffcl_conv_geometry g = diffcl_conv_geometry_make(3, 3, 1, 1);
    ck_ok(diffcl_conv(xp, w, NULL, &g, &y1));
    ck_ok(diffcl_conv(xc, w, NULL, &g, &y2));
    ck_assert(test_rel_error(y1, y2) == 0);
    ck_ok(diffcl_tensor_set_requires_grad(w, 1));
    int prev = diffcl_set_grad_enabled(ctx, 0);
    diffcl_tensor *y3 = NULL, *p3 = NULL;
    ck_ok(diffcl_conv(xc, w, NULL, &g, &y3));
    ck_assert_int_eq(diffcl_tensor_requires_grad(y3), 0);
    ck_ok(diffcl_max_pool(y3, &g, &p3));
    diffcl_set_grad_enabled(ctx, prev);
    (void)xpp;
    diffcl_tensor *all[] = {x, w, xp, xc, y1, y2, y3, p3};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) diffcl_tensor_free(all[i]);
}
END_TEST

/* ---------------------------------------------------------------- module ---- */

START_TEST(test_module)
{
    for (int tr = 0; tr < 2; tr++) {
        diffcl_conv_options o = DIFFCL_CONV_OPTIONS_INIT;
        o.in_channels = 4;
        o.out_channels = 6;
        o.transposed = tr;
        o.geometry = diffcl_conv_geometry_make(3, tr ? 2 : 3, tr ? 2 : 1, tr ? 0 : 1);
        o.init_key = diffcl_rng_key_make(42, 9, 3, 0);
        diffcl_module *m = NULL;
        ck_ok(diffcl_conv_create(ctx, &o, &m));
        ck_assert_str_eq(diffcl_module_type(m), tr ? "conv_transpose3d" : "conv3d");
        ck_assert_int_eq(diffcl_module_state_count(m, DIFFCL_STATE_PARAMS), 2);
        const char *nm = NULL;
        diffcl_tensor *w = NULL, *b = NULL;
        ck_ok(diffcl_module_state_entry(m, DIFFCL_STATE_PARAMS, 0, &nm, &w, NULL));
        ck_assert_str_eq(nm, "weight");
        ck_ok(diffcl_module_state_entry(m, DIFFCL_STATE_PARAMS, 1, &nm, &b, NULL));
        ck_assert_str_eq(nm, "bias");
        const int k = tr ? 2 : 3;
        int64_t sh[5];
        ck_assert_int_eq(diffcl_tensor_shape(w, sh), 5);
        ck_assert_int_eq(sh[0], tr ? 4 : 6);
        ck_assert_int_eq(sh[1], tr ? 6 : 4);
        ck_assert_int_eq(sh[2], k);
        ck_assert_int_eq(diffcl_tensor_dim(b, 0), 6);
        ck_assert(diffcl_tensor_requires_grad(w) && diffcl_tensor_requires_grad(b));
        /* PyTorch init: U(-1/sqrt(fan_in), ..), fan_in = weight.size(1) * k^3; weight from
         * draws 0.. of the key, bias from the draws that follow */
        const int64_t nw = diffcl_tensor_numel(w);
        const float bound = (float)(1.0 / sqrt((double)sh[1] * k * k * k));
        float expect[2000];
        diffcl_rng_uniform(o.init_key, 0, (size_t)(nw + 6), -bound, bound, expect);
        const float *wd = diffcl_tensor_data_const(w), *bd = diffcl_tensor_data_const(b);
        float wmax = 0;
        for (int64_t i = 0; i < nw; i++) {
            ck_assert(wd[i] == expect[i]);
            ck_assert(fabsf(wd[i]) <= bound);
            if (fabsf(wd[i]) > wmax) wmax = fabsf(wd[i]);
        }
        ck_assert(wmax > 0.9f * bound);
        for (int i = 0; i < 6; i++) ck_assert(bd[i] == expect[nw + i]);

        /* forward = the functional op on the module's parameters */
        int64_t xs[5] = {1, 4, 4, 5, 3};
        diffcl_tensor *x = test_randn(ctx, DIFFCL_F32, 5, xs, 5), *y1 = NULL, *y2 = NULL;
        ck_ok(diffcl_module_forward(m, x, &y1));
        if (tr) ck_ok(diffcl_conv_transpose(x, w, b, &o.geometry, &y2));
        else ck_ok(diffcl_conv(x, w, b, &o.geometry, &y2));
        ck_assert(test_rel_error(y1, y2) == 0);
        ck_assert_int_eq(diffcl_tensor_dim(y1, 2), tr ? 8 : 4);
        diffcl_tensor_free(x);
        diffcl_tensor_free(y1);
        diffcl_tensor_free(y2);
        diffcl_module_free(m);
        /* everything freed: after releasing the cache and the op workspace nothing is in use */
        diffcl_context_release_cache(ctx);
        ck_assert_uint_eq(diffcl_context_bytes_in_use(ctx), 0);
    }
    /* 2-d, no bias; same key -> same weights */
    diffcl_conv_options o;
    diffcl_conv_options_init(&o);
    o.in_channels = 2;
    o.out_channels = 3;
    o.bias = 0;
    o.geometry = diffcl_conv_geometry_make(2, 3, 1, 1);
    o.init_key = diffcl_rng_key_make(7, 1, 0, 0);
    diffcl_module *m1 = NULL, *m2 = NULL;
    ck_ok(diffcl_conv_create(ctx, &o, &m1));
    ck_ok(diffcl_conv_create(ctx, &o, &m2));
    ck_assert_str_eq(diffcl_module_type(m1), "conv2d");
    ck_assert_int_eq(diffcl_module_state_count(m1, DIFFCL_STATE_ALL), 1);
    ck_assert_ptr_null(diffcl_module_find(m1, "bias"));
    ck_assert(test_rel_error(diffcl_module_find(m1, "weight"), diffcl_module_find(m2, "weight")) == 0);
    ck_assert_int_eq(diffcl_module_num_parameters(m1), 2 * 3 * 9);
    diffcl_module_free(m1);
    diffcl_module_free(m2);
    /* bad options */
    diffcl_module *m = NULL;
    o.in_channels = 0;
    expect_err(diffcl_conv_create(ctx, &o, &m), DIFFCL_ERR_INVALID_ARGUMENT, "in_channels");
    ck_assert_ptr_null(m);
}
END_TEST

static Suite *layer_conv_suite(void)
{
    Suite *s = suite_create("layer_conv");
    TCase *tc = tcase_create("conv");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_conv_parity, 0, N_KCONF);
    tcase_add_loop_test(tc, test_pool_upsample_parity, 0, 2);
    tcase_add_loop_test(tc, test_conv_gradcheck, 0, N_KCONF_BLAS);
    tcase_add_loop_test(tc, test_pool_upsample_gradcheck, 0, 2);
    tcase_add_loop_test(tc, test_vnet_shapes_f32_vs_f64, 0, 2);
    tcase_add_loop_test(tc, test_deterministic, 0, 2);
    tcase_add_test(tc, test_bad_input);
    tcase_add_test(tc, test_strided_input_and_no_grad);
    tcase_add_test(tc, test_module);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return test_run_suite(layer_conv_suite()); }
