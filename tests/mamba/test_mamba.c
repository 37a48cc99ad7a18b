/* Suite mamba: causal conv1d, the Mamba block (uni/bidirectional), the HF-Mamba module and
 * the V-Net with HF-Mamba: torch parity (forward and every gradient), gradient checks,
 * parameter names, initialisation. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"
#include "diffcl/mamba.h"
#include "diffcl/model.h"
#include "diffcl/scan.h"
#include "diffcl/fft.h"
#include "layer/nn_internal.h"

static diffcl_context *ctx;
static void setup(void) { ctx = test_context(); }
static void teardown(void) { diffcl_context_free(ctx); }

static diffcl_tensor *as_dtype(const diffcl_tensor *t, diffcl_dtype dt)
{
    diffcl_tensor *r = NULL;
    ck_ok(diffcl_tensor_to_dtype(t, dt, &r));
    return r;
}

static void free_all(diffcl_tensor **t, int n)
{
    for (int i = 0; i < n; i++) diffcl_tensor_free(t[i]);
}

/* ------------------------------------------------------------ conv1d ---- */

typedef struct conv_user {
    int channels_last, reverse;
} conv_user;

static diffcl_status f_conv(diffcl_tensor *const *in, int n, diffcl_tensor **out, void *user)
{
    conv_user *u = user;
    return diffcl_causal_conv1d(in[0], in[1], n > 2 ? in[2] : NULL, u->channels_last, u->reverse, out);
}

START_TEST(conv1d_gradcheck)
{
    for (int cl = 0; cl < 2; cl++)
        for (int rev = 0; rev < 2; rev++)
            for (int with_b = 0; with_b < 2; with_b++) {
                int64_t sx[3] = {2, cl ? 7 : 3, cl ? 3 : 7}, sw[3] = {3, 1, 4}, sb[1] = {3};
                diffcl_tensor *in[3] = {test_randn(ctx, DIFFCL_F64, 3, sx, 1),
                                        test_randn(ctx, DIFFCL_F64, 3, sw, 2),
                                        test_randn(ctx, DIFFCL_F64, 1, sb, 3)};
                for (int k = 0; k < 3; k++) ck_ok(diffcl_tensor_set_requires_grad(in[k], 1));
                conv_user u = {cl, rev};
                diffcl_gradcheck_result r = {sizeof r, 0, 0, 0, 0, 0, 0};
                diffcl_status s = diffcl_gradcheck(f_conv, &u, in, with_b ? 3 : 2, NULL, &r);
                ck_assert_msg(s == DIFFCL_OK, "conv1d cl=%d rev=%d bias=%d: %s", cl, rev, with_b,
                              diffcl_last_error());
                free_all(in, 3);
            }
}
END_TEST

/* Causal: out[t] = b + sum_k w[k] x[t-3+k]; reverse: out[t] = b + sum_k w[k] x[t+3-k]. */
START_TEST(conv1d_values)
{
    double xv[6] = {1, 2, 3, 4, 5, 6}, wv[4] = {0.5, -1, 2, 3}, bv = 0.25;
    int64_t sx[3] = {1, 1, 6}, sw[2] = {1, 4}, sb[1] = {1};
    diffcl_tensor *x = NULL, *w = NULL, *b = NULL, *y = NULL, *yr = NULL;
    ck_ok(diffcl_tensor_from_data(ctx, DIFFCL_F64, 3, sx, xv, &x));
    ck_ok(diffcl_tensor_from_data(ctx, DIFFCL_F64, 2, sw, wv, &w));
    ck_ok(diffcl_tensor_from_data(ctx, DIFFCL_F64, 1, sb, &bv, &b));
    ck_ok(diffcl_causal_conv1d(x, w, b, 0, 0, &y));
    ck_ok(diffcl_causal_conv1d(x, w, b, 0, 1, &yr));
    for (int t = 0; t < 6; t++) {
        double e = bv, er = bv, v, vr;
        for (int k = 0; k < 4; k++) {
            int s = t - 3 + k, sr = t + 3 - k;
            if (s >= 0) e += wv[k] * xv[s];
            if (sr < 6) er += wv[k] * xv[sr];
        }
        int64_t idx[3] = {0, 0, t};
        ck_ok(diffcl_tensor_get(y, idx, &v));
        ck_ok(diffcl_tensor_get(yr, idx, &vr));
        ck_assert(fabs(v - e) < 1e-14 && fabs(vr - er) < 1e-14);
    }
    diffcl_tensor *all[] = {x, w, b, y, yr};
    free_all(all, 5);
    int64_t bad[3] = {2, 1, 4};
    diffcl_tensor *wb = test_randn(ctx, DIFFCL_F64, 3, bad, 1), *x2 = test_randn(ctx, DIFFCL_F64, 3, sx, 1);
    ck_assert_int_eq(diffcl_causal_conv1d(x2, wb, NULL, 0, 0, &y), DIFFCL_ERR_SHAPE);
    diffcl_tensor_free(wb);
    diffcl_tensor_free(x2);
}
END_TEST

/* ------------------------------------------------------- module helpers ---- */

static diffcl_module *make_mamba(int bi, int dt_rank, uint64_t seed)
{
    diffcl_mamba_options o = DIFFCL_MAMBA_OPTIONS_INIT;
    o.d_model = 8;
    o.d_state = 4;
    o.dt_rank = dt_rank;
    o.bidirectional = bi;
    o.init_key = diffcl_rng_key_make(seed, 7, 0, 0);
    diffcl_module *m = NULL;
    ck_ok(diffcl_mamba_create(ctx, &o, &m));
    return m;
}

static diffcl_module *make_hfm_border(int channels, diffcl_hfm_combine combine, diffcl_hfm_border border,
                                      uint64_t seed)
{
    diffcl_hf_mamba_options o = DIFFCL_HF_MAMBA_OPTIONS_INIT;
    o.channels = channels;
    o.d_state = 4;
    o.combine = combine;
    o.border = border;
    o.init_key = diffcl_rng_key_make(seed, 9, 0, 0);
    diffcl_module *m = NULL;
    ck_ok(diffcl_hf_mamba_create(ctx, &o, &m));
    return m;
}

static diffcl_module *make_hfm(int channels, diffcl_hfm_combine combine, uint64_t seed)
{
    return make_hfm_border(channels, combine, DIFFCL_HFM_BORDER_PERIODIC, seed);
}

/* Load "<case>.param.<name>" entries of the fixture into the module (strict). */
static void load_params(diffcl_module *m, diffcl_tensor_dict *fx, const char *cs)
{
    diffcl_tensor_dict *d = NULL;
    ck_ok(diffcl_tensor_dict_new(ctx, &d));
    char prefix[64];
    snprintf(prefix, sizeof prefix, "%s.param.", cs);
    for (int i = 0; i < diffcl_tensor_dict_size(fx); i++) {
        const char *nm = diffcl_tensor_dict_name(fx, i);
        if (!strncmp(nm, prefix, strlen(prefix)))
            ck_ok(diffcl_tensor_dict_set(d, nm + strlen(prefix), diffcl_tensor_dict_at(fx, i)));
    }
    int missing = -1, unexpected = -1;
    ck_ok(diffcl_module_load_state_dict(m, d, NULL, &missing, &unexpected));
    ck_assert_int_eq(missing, 0);
    ck_assert_int_eq(unexpected, 0);
    diffcl_tensor_dict_free(d);
}

/* Forward x, loss sum(out * w), backward; compare out, dx and every parameter gradient. */
static void check_parity(diffcl_module *m, const char *cs, diffcl_dtype dt, double tol)
{
    diffcl_tensor_dict *fx = NULL;
    ck_ok(diffcl_safetensors_load(ctx, test_fixture_path("mamba.safetensors"), &fx));
    load_params(m, fx, cs);
    if (dt == DIFFCL_F64) ck_ok(diffcl_module_to_dtype(m, DIFFCL_F64));
    char key[160];
    snprintf(key, sizeof key, "%s.x", cs);
    diffcl_tensor *x = as_dtype(diffcl_tensor_dict_get(fx, key), dt);
    ck_ok(diffcl_tensor_set_requires_grad(x, 1));
    snprintf(key, sizeof key, "%s.w", cs);
    diffcl_tensor *w = as_dtype(diffcl_tensor_dict_get(fx, key), dt);
    diffcl_tensor *y = NULL, *yw = NULL, *L = NULL;
    ck_ok(diffcl_module_forward(m, x, &y));
    snprintf(key, sizeof key, "%s.out", cs);
    char label[160];
    snprintf(label, sizeof label, "%s %s: out", cs, diffcl_dtype_name(dt));
    test_expect_close(label, y, diffcl_tensor_dict_get(fx, key), tol);
    ck_ok(diffcl_mul(y, w, &yw));
    ck_ok(diffcl_sum_all(yw, &L));
    ck_ok(diffcl_backward(L, NULL));
    snprintf(key, sizeof key, "%s.grad.x", cs);
    snprintf(label, sizeof label, "%s %s: dx", cs, diffcl_dtype_name(dt));
    test_expect_close(label, diffcl_tensor_grad(x), diffcl_tensor_dict_get(fx, key), tol);
    snprintf(label, sizeof label, "%s %s", cs, diffcl_dtype_name(dt));
    snprintf(key, sizeof key, "%s.grad.param.", cs);
    test_check_module_grads(label, m, fx, key, tol, tol);
    diffcl_tensor *all[] = {x, w, y, yw, L};
    free_all(all, 5);
    diffcl_tensor_dict_free(fx);
}

START_TEST(mamba_parity_f32)
{
    diffcl_module *u = make_mamba(0, 2, 1), *b = make_mamba(1, 2, 1);
    check_parity(u, "mamba_uni", DIFFCL_F32, 1e-4);
    check_parity(b, "mamba_bi", DIFFCL_F32, 1e-4);
    diffcl_module_free(u);
    diffcl_module_free(b);
}
END_TEST

START_TEST(mamba_parity_f64)
{
    diffcl_module *u = make_mamba(0, 2, 1), *b = make_mamba(1, 2, 1);
    check_parity(u, "mamba_uni", DIFFCL_F64, 1e-9);
    check_parity(b, "mamba_bi", DIFFCL_F64, 1e-9);
    diffcl_module_free(u);
    diffcl_module_free(b);
}
END_TEST

START_TEST(hfm_parity_f32)
{
    diffcl_module *m2 = make_hfm(6, DIFFCL_HFM_RESIDUAL, 1), *m3 = make_hfm(6, DIFFCL_HFM_ATTENTION, 1);
    check_parity(m2, "hfm2d", DIFFCL_F32, 1e-4);
    check_parity(m3, "hfm3d", DIFFCL_F32, 1e-4);
    diffcl_module_free(m2);
    diffcl_module_free(m3);
}
END_TEST

START_TEST(hfm_parity_f64)
{
    diffcl_module *m2 = make_hfm(6, DIFFCL_HFM_RESIDUAL, 1), *m3 = make_hfm(6, DIFFCL_HFM_ATTENTION, 1);
    check_parity(m2, "hfm2d", DIFFCL_F64, 1e-9);
    check_parity(m3, "hfm3d", DIFFCL_F64, 1e-9);
    diffcl_module_free(m2);
    diffcl_module_free(m3);
}
END_TEST

/* ------------------------------------------------------ gradient checks ---- */

typedef struct mod_user {
    diffcl_module *m;
} mod_user;

static diffcl_status f_module(diffcl_tensor *const *in, int n, diffcl_tensor **out, void *user)
{
    (void)n;
    return diffcl_module_forward(((mod_user *)user)->m, in[0], out);
}

/* Check dx and every parameter gradient of module m (F64) on input shape. */
static void gradcheck_module(diffcl_module *m, int nd, const int64_t *shape, int max_checks)
{
    ck_ok(diffcl_module_to_dtype(m, DIFFCL_F64));
    int np = diffcl_module_state_count(m, DIFFCL_STATE_PARAMS);
    diffcl_tensor **in = calloc((size_t)np + 1, sizeof *in);
    in[0] = test_randn(ctx, DIFFCL_F64, nd, shape, 11);
    ck_ok(diffcl_tensor_set_requires_grad(in[0], 1));
    for (int i = 0; i < np; i++) ck_ok(diffcl_module_state_entry(m, DIFFCL_STATE_PARAMS, i, NULL, &in[i + 1], NULL));
    mod_user u = {m};
    diffcl_gradcheck_options o = DIFFCL_GRADCHECK_OPTIONS_INIT;
    o.max_checks = max_checks;
    diffcl_gradcheck_result r = {sizeof r, 0, 0, 0, 0, 0, 0};
    diffcl_status s = diffcl_gradcheck(f_module, &u, in, np + 1, &o, &r);
    const char *worst = "x";
    if (r.worst_input > 0) diffcl_module_state_entry(m, DIFFCL_STATE_PARAMS, r.worst_input - 1, &worst, NULL, NULL);
    ck_assert_msg(s == DIFFCL_OK, "%s gradcheck: %s (max abs %g, worst input %s)", diffcl_module_type(m),
                  diffcl_last_error(), r.max_abs_error, worst);
    ck_assert_int_gt(r.n_checked, np);
    diffcl_tensor_free(in[0]);
    free(in);
}

START_TEST(mamba_gradcheck)
{
    int64_t shape[3] = {2, 6, 8};
    for (int bi = 0; bi < 2; bi++) {
        diffcl_module *m = make_mamba(bi, 0, 3);
        gradcheck_module(m, 3, shape, 0);
        diffcl_module_free(m);
    }
}
END_TEST

/* dx and every parameter gradient (F64), with each FFT border: periodic, zero and reflect
 * padding (the padded split end to end in the module). */
START_TEST(hfm_gradcheck)
{
    int64_t s2[4] = {1, 4, 4, 6}, s3[5] = {1, 4, 3, 4, 3};
    for (int b = DIFFCL_HFM_BORDER_PERIODIC; b <= DIFFCL_HFM_BORDER_REFLECT; b++) {
        diffcl_module *m2 = make_hfm_border(4, DIFFCL_HFM_RESIDUAL, (diffcl_hfm_border)b, 5);
        diffcl_module *m3 = make_hfm_border(4, DIFFCL_HFM_ATTENTION, (diffcl_hfm_border)b, 6);
        gradcheck_module(m2, 4, s2, 12);
        gradcheck_module(m3, 5, s3, 12);
        diffcl_module_free(m2);
        diffcl_module_free(m3);
    }
}
END_TEST

/* ---------------------------------------------------------- FFT border ---- */

/* Reflection and zero padding: values as numpy.pad(mode="reflect" / "constant"). */
START_TEST(spatial_pad_values)
{
    int64_t shape[4] = {1, 1, 1, 3}, pad[3] = {0, 0, 2};
    diffcl_tensor *x = NULL, *y = NULL;
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_F64, 4, shape, &x));
    double *px = diffcl_tensor_data(x);
    px[0] = 1, px[1] = 2, px[2] = 3;
    const double want[2][7] = {{0, 0, 1, 2, 3, 0, 0}, {3, 2, 1, 2, 3, 2, 1}};
    for (int reflect = 0; reflect < 2; reflect++) {
        ck_ok(dc_spatial_pad(x, pad, reflect, &y));
        ck_assert_int_eq(diffcl_tensor_dim(y, 3), 7);
        const double *py = diffcl_tensor_data(y);
        for (int i = 0; i < 7; i++) ck_assert_double_eq(py[i], want[reflect][i]);
        diffcl_tensor_free(y);
    }
    pad[2] = 3; /* reflection needs pad < length */
    ck_assert_int_eq(dc_spatial_pad(x, pad, 1, &y), DIFFCL_ERR_INVALID_ARGUMENT);
    diffcl_tensor_free(x);
}
END_TEST

typedef struct pad_user {
    int64_t pad[3];
    int reflect;
} pad_user;

static diffcl_status f_pad(diffcl_tensor *const *in, int n, diffcl_tensor **out, void *user)
{
    (void)n;
    const pad_user *u = user;
    return dc_spatial_pad(in[0], u->pad, u->reflect, out);
}

START_TEST(spatial_pad_gradcheck)
{
    int64_t s2[4] = {2, 3, 5, 4}, s3[5] = {1, 2, 4, 3, 5};
    for (int reflect = 0; reflect < 2; reflect++) {
        pad_user u2 = {{0, 2, 3}, reflect}, u3 = {{2, 1, 3}, reflect};
        diffcl_tensor *x2 = test_randn(ctx, DIFFCL_F64, 4, s2, 3), *x3 = test_randn(ctx, DIFFCL_F64, 5, s3, 4);
        ck_ok(diffcl_tensor_set_requires_grad(x2, 1));
        ck_ok(diffcl_tensor_set_requires_grad(x3, 1));
        diffcl_gradcheck_result r = {sizeof r, 0, 0, 0, 0, 0, 0};
        ck_ok(diffcl_gradcheck(f_pad, &u2, &x2, 1, NULL, &r));
        ck_ok(diffcl_gradcheck(f_pad, &u3, &x3, 1, NULL, &r));
        diffcl_tensor_free(x2);
        diffcl_tensor_free(x3);
    }
}
END_TEST

/* What the border is for: a smooth ramp across a 6x6 map has no high frequencies, but the
 * periodic FFT sees a jump at the seam. Reflection removes most of that response. */
START_TEST(hfm_border_removes_the_seam)
{
    int64_t shape[4] = {1, 1, 6, 6};
    diffcl_tensor *x = NULL;
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_F64, 4, shape, &x));
    double *px = diffcl_tensor_data(x);
    for (int y = 0; y < 6; y++)
        for (int i = 0; i < 6; i++) px[y * 6 + i] = i;
    double energy[2];
    for (int reflect = 0; reflect < 2; reflect++) {
        diffcl_tensor *in = NULL, *h = NULL;
        int64_t pad[3] = {0, 2, 2};
        if (reflect) ck_ok(dc_spatial_pad(x, pad, 1, &in));
        else in = diffcl_tensor_retain(x);
        ck_ok(diffcl_freq_filter(in, NULL, &h));
        const double *ph = diffcl_tensor_data(h);
        int64_t w = diffcl_tensor_dim(h, 3), off = reflect ? 2 : 0;
        energy[reflect] = 0;
        for (int y = 0; y < 6; y++)
            for (int i = 0; i < 6; i++) energy[reflect] += ph[(y + off) * w + i + off] * ph[(y + off) * w + i + off];
        diffcl_tensor_free(in);
        diffcl_tensor_free(h);
    }
    fprintf(stderr, "high band of a ramp on a 6x6 map: energy %.3f periodic, %.3f reflected\n", energy[0], energy[1]);
    ck_assert(energy[1] < 0.25 * energy[0]);
    diffcl_tensor_free(x);
}
END_TEST

/* ------------------------------------------------------- names and init ---- */

static void check_names(const diffcl_module *m, const char *const *want, int n)
{
    ck_assert_int_eq(diffcl_module_state_count(m, DIFFCL_STATE_ALL), n);
    for (int i = 0; i < n; i++) {
        const char *nm = NULL;
        ck_ok(diffcl_module_state_entry(m, DIFFCL_STATE_ALL, i, &nm, NULL, NULL));
        ck_assert_msg(!strcmp(nm, want[i]), "entry %d is %s, expected %s", i, nm, want[i]);
    }
}

START_TEST(parameter_names)
{
    static const char *const uni[] = {"A_log", "D", "in_proj.weight", "conv1d.weight", "conv1d.bias",
                                      "x_proj.weight", "dt_proj.weight", "dt_proj.bias", "out_proj.weight"};
    static const char *const bi[] = {"A_log", "D", "A_b_log", "D_b", "in_proj.weight", "conv1d.weight",
                                     "conv1d.bias", "x_proj.weight", "dt_proj.weight", "dt_proj.bias",
                                     "conv1d_b.weight", "conv1d_b.bias", "x_proj_b.weight",
                                     "dt_proj_b.weight", "dt_proj_b.bias", "out_proj.weight"};
    diffcl_module *u = make_mamba(0, 0, 1), *b = make_mamba(1, 0, 1), *h = make_hfm(32, DIFFCL_HFM_RESIDUAL, 1);
    check_names(u, uni, 9);
    check_names(b, bi, 16);
    ck_assert_str_eq(diffcl_module_type(u), "mamba");
    ck_assert_str_eq(diffcl_module_type(h), "hf_mamba");
    /* shapes: C=8, E=16, N=4, R=ceil(8/16)=1, K=4 */
    int64_t sh[5];
    diffcl_tensor_shape(diffcl_module_find(b, "in_proj.weight"), sh);
    ck_assert(sh[0] == 32 && sh[1] == 8);
    diffcl_tensor_shape(diffcl_module_find(b, "conv1d_b.weight"), sh);
    ck_assert(sh[0] == 16 && sh[1] == 1 && sh[2] == 4);
    diffcl_tensor_shape(diffcl_module_find(b, "x_proj.weight"), sh);
    ck_assert(sh[0] == 1 + 8 && sh[1] == 16);
    diffcl_tensor_shape(diffcl_module_find(b, "dt_proj.weight"), sh);
    ck_assert(sh[0] == 16 && sh[1] == 1);
    diffcl_tensor_shape(diffcl_module_find(b, "A_b_log"), sh);
    ck_assert(sh[0] == 16 && sh[1] == 4);
    /* HF-Mamba: norm then mixer; C=32 gives dt_rank 2 */
    ck_assert_ptr_nonnull(diffcl_module_find(h, "norm.weight"));
    ck_assert_ptr_nonnull(diffcl_module_find(h, "norm.bias"));
    ck_assert_ptr_nonnull(diffcl_module_find(h, "mixer.A_b_log"));
    diffcl_tensor_shape(diffcl_module_find(h, "mixer.dt_proj_b.weight"), sh);
    ck_assert(sh[0] == 64 && sh[1] == 2);
    const char *first = NULL;
    ck_ok(diffcl_module_state_entry(h, DIFFCL_STATE_ALL, 0, &first, NULL, NULL));
    ck_assert_str_eq(first, "norm.weight");
    diffcl_module_free(u);
    diffcl_module_free(b);
    diffcl_module_free(h);
}
END_TEST

static double max_abs_diff(const diffcl_tensor *a, const diffcl_tensor *b)
{
    int64_t n = diffcl_tensor_numel(a);
    double *x = malloc((size_t)n * sizeof *x), *y = malloc((size_t)n * sizeof *y), m = 0;
    diffcl_tensor *a64 = as_dtype(a, DIFFCL_F64), *b64 = as_dtype(b, DIFFCL_F64);
    diffcl_tensor_copy_to(a64, x, (size_t)n * sizeof *x);
    diffcl_tensor_copy_to(b64, y, (size_t)n * sizeof *y);
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(x[i] - y[i]));
    free(x);
    free(y);
    diffcl_tensor_free(a64);
    diffcl_tensor_free(b64);
    return m;
}

START_TEST(initialisation)
{
    diffcl_mamba_options o = DIFFCL_MAMBA_OPTIONS_INIT;
    o.d_model = 64; /* E = 128, R = 4, N = 16 */
    o.bidirectional = 1;
    o.init_key = diffcl_rng_key_make(42, 100, 0, 0);
    diffcl_module *m = NULL, *m2 = NULL, *m3 = NULL;
    ck_ok(diffcl_mamba_create(ctx, &o, &m));
    ck_ok(diffcl_mamba_create(ctx, &o, &m2));
    o.init_key.seed = 43;
    ck_ok(diffcl_mamba_create(ctx, &o, &m3));
    const int64_t E = 128, N = 16, R = 4;
    const char *dirs[2][4] = {{"A_log", "D", "dt_proj.bias", "dt_proj.weight"},
                              {"A_b_log", "D_b", "dt_proj_b.bias", "dt_proj_b.weight"}};
    float *buf = malloc((size_t)(E * N) * sizeof *buf);
    for (int dir = 0; dir < 2; dir++) {
        ck_ok(diffcl_tensor_copy_to(diffcl_module_find(m, dirs[dir][0]), buf, (size_t)(E * N) * 4));
        for (int64_t i = 0; i < E * N; i++) ck_assert(fabsf(buf[i] - logf((float)(i % N + 1))) < 1e-6f);
        ck_ok(diffcl_tensor_copy_to(diffcl_module_find(m, dirs[dir][1]), buf, (size_t)E * 4));
        for (int64_t i = 0; i < E; i++) ck_assert(buf[i] == 1.0f);
        /* softplus(dt bias) in [dt_min, dt_max], spread over the range */
        ck_ok(diffcl_tensor_copy_to(diffcl_module_find(m, dirs[dir][2]), buf, (size_t)E * 4));
        double lo = 1, hi = 0;
        for (int64_t i = 0; i < E; i++) {
            double dt = log1p(exp((double)buf[i]));
            ck_assert_msg(dt >= 1e-3 * (1 - 1e-4) && dt <= 0.1 * (1 + 1e-4), "dt %g", dt);
            lo = fmin(lo, dt);
            hi = fmax(hi, dt);
        }
        ck_assert(lo < 3e-3 && hi > 0.03);
        ck_ok(diffcl_tensor_copy_to(diffcl_module_find(m, dirs[dir][3]), buf, (size_t)(E * R) * 4));
        for (int64_t i = 0; i < E * R; i++) ck_assert(fabsf(buf[i]) <= 0.5f); /* R^-0.5 */
    }
    ck_ok(diffcl_tensor_copy_to(diffcl_module_find(m, "conv1d.weight"), buf, (size_t)(E * 4) * 4));
    double mx = 0;
    for (int64_t i = 0; i < E * 4; i++) mx = fmax(mx, fabs(buf[i]));
    ck_assert(mx <= 0.5 && mx > 0.4); /* U(+-1/sqrt(K)) */
    free(buf);
    /* same key, same weights; another seed, other weights; the two directions differ */
    int np = diffcl_module_state_count(m, DIFFCL_STATE_PARAMS);
    for (int i = 0; i < np; i++) {
        const char *nm;
        diffcl_tensor *a, *b, *c;
        ck_ok(diffcl_module_state_entry(m, DIFFCL_STATE_PARAMS, i, &nm, &a, NULL));
        ck_ok(diffcl_module_state_entry(m2, DIFFCL_STATE_PARAMS, i, NULL, &b, NULL));
        ck_ok(diffcl_module_state_entry(m3, DIFFCL_STATE_PARAMS, i, NULL, &c, NULL));
        ck_assert_msg(max_abs_diff(a, b) == 0, "%s differs for the same key", nm);
        if (strstr(nm, "A_") != nm && strcmp(nm, "D") && strcmp(nm, "D_b"))
            ck_assert_msg(max_abs_diff(a, c) > 0, "%s identical for another seed", nm);
    }
    ck_assert(max_abs_diff(diffcl_module_find(m, "x_proj.weight"), diffcl_module_find(m, "x_proj_b.weight")) > 0);
    ck_assert(max_abs_diff(diffcl_module_find(m, "conv1d.weight"), diffcl_module_find(m, "conv1d_b.weight")) > 0);
    diffcl_module_free(m);
    diffcl_module_free(m2);
    diffcl_module_free(m3);
}
END_TEST

/* ------------------------------------------------------ module behaviour ---- */

START_TEST(hfm_shapes_and_errors)
{
    diffcl_module *h = make_hfm(8, DIFFCL_HFM_RESIDUAL, 2);
    int64_t s2[4] = {2, 8, 6, 5}, s3[5] = {1, 8, 3, 4, 5}, bad[4] = {2, 7, 6, 5};
    diffcl_tensor *x2 = test_randn(ctx, DIFFCL_F32, 4, s2, 1), *x3 = test_randn(ctx, DIFFCL_F32, 5, s3, 2);
    diffcl_tensor *xb = test_randn(ctx, DIFFCL_F32, 4, bad, 3), *y = NULL;
    ck_ok(diffcl_module_forward(h, x2, &y));
    ck_assert(diffcl_tensor_ndim(y) == 4 && diffcl_tensor_dim(y, 1) == 8 && diffcl_tensor_dim(y, 3) == 5);
    diffcl_tensor_free(y);
    ck_ok(diffcl_module_forward(h, x3, &y));
    ck_assert(diffcl_tensor_ndim(y) == 5 && diffcl_tensor_dim(y, 4) == 5);
    diffcl_tensor_free(y);
    ck_assert_int_eq(diffcl_module_forward(h, xb, &y), DIFFCL_ERR_SHAPE);
    ck_assert(strstr(diffcl_last_error(), "hf_mamba") != NULL);
    /* a constant map has no high band: the residual module returns it (up to rounding) */
    diffcl_tensor *c = NULL;
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_F32, 5, s3, &c));
    ck_ok(diffcl_tensor_fill(c, 1.5));
    ck_ok(diffcl_module_forward(h, c, &y));
    diffcl_module *mixer = diffcl_module_child(h, "mixer");
    ck_assert_ptr_nonnull(mixer);
    /* norm(~0) ~ bias = 0, mixer(0) = 0 (no biases in in_proj/out_proj) -> y ~ c */
    ck_assert_msg(max_abs_diff(y, c) < 1e-3, "constant input changed by %g", max_abs_diff(y, c));
    diffcl_tensor_free(y);
    diffcl_tensor_free(c);
    /* no-grad forward keeps no graph */
    int prev = diffcl_set_grad_enabled(ctx, 0);
    ck_ok(diffcl_module_forward(h, x3, &y));
    ck_assert_int_eq(diffcl_tensor_requires_grad(y), 0);
    diffcl_set_grad_enabled(ctx, prev);
    diffcl_tensor_free(y);
    /* bad options */
    diffcl_hf_mamba_options o = DIFFCL_HF_MAMBA_OPTIONS_INIT;
    diffcl_module *m = NULL;
    ck_assert_int_eq(diffcl_hf_mamba_create(ctx, &o, &m), DIFFCL_ERR_INVALID_ARGUMENT);
    o.channels = 4;
    o.combine = (diffcl_hfm_combine)5;
    ck_assert_int_eq(diffcl_hf_mamba_create(ctx, &o, &m), DIFFCL_ERR_INVALID_ARGUMENT);
    diffcl_mamba_options mo = DIFFCL_MAMBA_OPTIONS_INIT;
    mo.d_model = 4;
    mo.d_state = 1000;
    ck_assert_int_eq(diffcl_mamba_create(ctx, &mo, &m), DIFFCL_ERR_INVALID_ARGUMENT);
    diffcl_tensor *all[] = {x2, x3, xb};
    free_all(all, 3);
    diffcl_module_free(h);
}
END_TEST

/* The attention combine gates: x * sigmoid(t), so a zero map stays zero. */
START_TEST(hfm_attention_gates)
{
    diffcl_module *h = make_hfm(4, DIFFCL_HFM_ATTENTION, 3);
    int64_t s[4] = {1, 4, 8, 8};
    diffcl_tensor *z = NULL, *y = NULL;
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_F32, 4, s, &z));
    ck_ok(diffcl_module_forward(h, z, &y));
    ck_assert(max_abs_diff(y, z) == 0);
    diffcl_tensor_free(y);
    diffcl_tensor_free(z);
    diffcl_module_free(h);
}
END_TEST

/* The V-Net with HF-Mamba on the default levels: modules present, forward and backward run. */
START_TEST(vnet_hfm)
{
    for (int dims = 2; dims <= 3; dims++) {
        diffcl_vnet_options vo = DIFFCL_VNET_OPTIONS_INIT;
        vo.dims = dims;
        vo.n_filters = 4;
        vo.has_dropout = 0;
        vo.hf_mamba_levels = DIFFCL_HFM_DEFAULT_LEVELS;
        vo.seed = 5;
        diffcl_module *v = NULL;
        ck_ok(diffcl_vnet_create(ctx, &vo, &v));
        int n_hfm = 0;
        int n = diffcl_module_state_count(v, DIFFCL_STATE_PARAMS);
        for (int i = 0; i < n; i++) {
            const char *nm;
            ck_ok(diffcl_module_state_entry(v, DIFFCL_STATE_PARAMS, i, &nm, NULL, NULL));
            if (strstr(nm, ".mixer.A_log")) n_hfm++;
        }
        ck_assert_int_eq(n_hfm, 3);
        int64_t s3[5] = {2, 1, 16, 16, 16}, s2[4] = {2, 1, 32, 16};
        diffcl_tensor *x = dims == 3 ? test_randn(ctx, DIFFCL_F32, 5, s3, 1) : test_randn(ctx, DIFFCL_F32, 4, s2, 1);
        diffcl_tensor *logits = NULL, *L = NULL;
        ck_ok(diffcl_vnet_forward(v, x, &logits, NULL));
        ck_assert_int_eq(diffcl_tensor_dim(logits, 1), 2);
        ck_ok(diffcl_mean_all(logits, &L));
        ck_ok(diffcl_backward(L, NULL));
        /* gradients reach the HF-Mamba weights */
        int with_grad = 0;
        for (int i = 0; i < n; i++) {
            const char *nm;
            diffcl_tensor *p;
            ck_ok(diffcl_module_state_entry(v, DIFFCL_STATE_PARAMS, i, &nm, &p, NULL));
            if (strstr(nm, "hfm") && diffcl_tensor_grad(p)) with_grad++;
        }
        ck_assert_int_gt(with_grad, 3 * 10);
        diffcl_tensor_free(L);
        diffcl_tensor_free(logits);
        diffcl_tensor_free(x);
        diffcl_module_free(v);
    }
}
END_TEST

static Suite *mamba_suite(void)
{
    Suite *s = suite_create("mamba");
    TCase *tc = tcase_create("mamba");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, conv1d_gradcheck);
    tcase_add_test(tc, conv1d_values);
    tcase_add_test(tc, mamba_parity_f32);
    tcase_add_test(tc, mamba_parity_f64);
    tcase_add_test(tc, hfm_parity_f32);
    tcase_add_test(tc, hfm_parity_f64);
    tcase_add_test(tc, mamba_gradcheck);
    tcase_add_test(tc, hfm_gradcheck);
    tcase_add_test(tc, spatial_pad_values);
    tcase_add_test(tc, spatial_pad_gradcheck);
    tcase_add_test(tc, hfm_border_removes_the_seam);
    tcase_add_test(tc, parameter_names);
    tcase_add_test(tc, initialisation);
    tcase_add_test(tc, hfm_shapes_and_errors);
    tcase_add_test(tc, hfm_attention_gates);
    tcase_add_test(tc, vnet_hfm);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return test_run_suite(mamba_suite()); }
