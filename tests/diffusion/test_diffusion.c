/* Suite diffusion: schedules and respacing against guided-diffusion, q_sample and the time
 * bias op (finite differences in F64), the denoiser's names and PyTorch parity (forward, all
 * parameter gradients, running statistics), the objective, DDIM / one-step / pseudo labels,
 * save/load, bad input, and a tiny 2D task on which it must learn. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diffcl/diffusion.h"
#include "diffcl/optim.h"
#include "model/diffusion_internal.h"
#include "test_util.h"

static diffcl_context *ctx;
static void setup(void) { ctx = test_context(); }
static void teardown(void) { diffcl_context_free(ctx); }

static diffcl_tensor_dict *load_fixture(const char *name)
{
    diffcl_tensor_dict *d = NULL;
    ck_ok(diffcl_safetensors_load(ctx, test_fixture_path(name), &d));
    return d;
}

static diffcl_tensor *get(const diffcl_tensor_dict *d, const char *name)
{
    diffcl_tensor *t = diffcl_tensor_dict_get(d, name);
    ck_assert_msg(t != NULL, "fixture entry %s missing", name);
    return t;
}

static diffcl_tensor *to_f32(const diffcl_tensor *t)
{
    diffcl_tensor *r = NULL;
    ck_ok(diffcl_tensor_to_dtype(t, DIFFCL_F32, &r));
    return r;
}

static double max_abs(const diffcl_tensor *t)
{
    diffcl_tensor *a = NULL;
    ck_ok(diffcl_tensor_to_dtype(t, DIFFCL_F64, &a));
    const double *p = diffcl_tensor_data(a);
    double m = 0;
    for (int64_t i = 0; i < diffcl_tensor_numel(a); i++) m = fabs(p[i]) > m ? fabs(p[i]) : m;
    diffcl_tensor_free(a);
    return m;
}

static diffcl_module *small_model(int dims, int n_filters, diffcl_diffusion_target target, uint64_t seed)
{
    diffcl_diffusion_options o;
    diffcl_diffusion_options_init(&o);
    o.dims = dims;
    o.n_filters = n_filters;
    o.target = target;
    o.time_embed_dim = 16;
    o.time_hidden_dim = 32;
    o.seed = seed;
    diffcl_module *m = NULL;
    ck_ok(diffcl_diffusion_create(ctx, &o, &m));
    return m;
}

/* ------------------------------------------------------------- schedule ---- */

START_TEST(test_schedule_tables)
{
    diffcl_tensor_dict *d = load_fixture("diffusion_schedule.safetensors");
    const int Ts[2] = {1000, 50};
    for (int k = 0; k < 2; k++)
        for (int kind = 0; kind < 2; kind++) {
            int T = Ts[k];
            diffcl_diffusion_schedule *s = NULL;
            ck_ok(diffcl_diffusion_schedule_create((diffcl_beta_schedule)kind, T, &s));
            ck_assert_int_eq(diffcl_diffusion_schedule_timesteps(s), T);
            double *b = malloc((size_t)T * sizeof *b), *ab = malloc((size_t)T * sizeof *ab);
            ck_ok(diffcl_diffusion_schedule_tables(s, b, ab));
            char name[64];
            const char *kn = kind == DIFFCL_BETA_LINEAR ? "linear" : "cosine";
            snprintf(name, sizeof name, "%s_%d.betas", kn, T);
            const double *rb = diffcl_tensor_data(get(d, name));
            snprintf(name, sizeof name, "%s_%d.alpha_bar", kn, T);
            const double *rab = diffcl_tensor_data(get(d, name));
            for (int i = 0; i < T; i++) {
                ck_assert_msg(fabs(b[i] - rb[i]) <= 1e-12 * fabs(rb[i]) + 1e-15, "%s beta[%d] %.17g vs %.17g",
                              kn, i, b[i], rb[i]);
                ck_assert_msg(fabs(ab[i] - rab[i]) <= 1e-10 * fabs(rab[i]) + 1e-15,
                              "%s alpha_bar[%d] %.17g vs %.17g", kn, i, ab[i], rab[i]);
            }
            free(b);
            free(ab);
            diffcl_diffusion_schedule_free(s);
        }
    diffcl_diffusion_schedule *s = NULL;
    ck_assert_int_eq(diffcl_diffusion_schedule_create(DIFFCL_BETA_LINEAR, 1, &s), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(diffcl_diffusion_schedule_create((diffcl_beta_schedule)7, 100, &s),
                     DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_null(s);
    diffcl_tensor_dict_free(d);
}
END_TEST

START_TEST(test_respace)
{
    diffcl_tensor_dict *d = load_fixture("diffusion_schedule.safetensors");
    for (int i = 0; i < diffcl_tensor_dict_size(d); i++) {
        const char *name = diffcl_tensor_dict_name(d, i);
        int T, k;
        diffcl_respacing mode;
        if (sscanf(name, "even_%d_%d", &T, &k) == 2) mode = DIFFCL_RESPACE_EVEN;
        else if (sscanf(name, "stride_%d_%d", &T, &k) == 2) mode = DIFFCL_RESPACE_STRIDE;
        else continue;
        const diffcl_tensor *ref = diffcl_tensor_dict_at(d, i);
        ck_assert_int_eq(diffcl_tensor_numel(ref), k);
        const int64_t *r = diffcl_tensor_data_const(ref);
        int *out = malloc((size_t)k * sizeof *out);
        ck_ok(diffcl_diffusion_respace(T, k, mode, out));
        for (int j = 0; j < k; j++) ck_assert_msg(out[j] == r[j], "%s[%d]: %d vs %lld", name, j, out[j], (long long)r[j]);
        free(out);
    }
    int out[1000];
    ck_ok(diffcl_diffusion_respace(1000, 10, DIFFCL_RESPACE_EVEN, out));
    ck_assert_int_eq(out[1], 111);
    ck_assert_int_eq(out[9], 999);
    /* no stride of 10 gives exactly 7 steps, and 0 / too many steps are errors */
    ck_assert_int_eq(diffcl_diffusion_respace(10, 7, DIFFCL_RESPACE_STRIDE, out), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(diffcl_diffusion_respace(1000, 0, DIFFCL_RESPACE_EVEN, out), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(diffcl_diffusion_respace(10, 11, DIFFCL_RESPACE_EVEN, out), DIFFCL_ERR_INVALID_ARGUMENT);
    diffcl_tensor_dict_free(d);
}
END_TEST

/* ------------------------------------------------------------- q_sample ---- */

START_TEST(test_q_sample)
{
    diffcl_diffusion_schedule *s = NULL;
    ck_ok(diffcl_diffusion_schedule_create(DIFFCL_BETA_LINEAR, 1000, &s));
    double ab[1000];
    ck_ok(diffcl_diffusion_schedule_tables(s, NULL, ab));
    int64_t shape[4] = {3, 2, 32, 32};
    diffcl_tensor *x0 = test_randn(ctx, DIFFCL_F32, 4, shape, 5);
    int64_t t[3] = {0, 500, 999};
    diffcl_rng_key key = diffcl_rng_key_make(7, 3, 10, 2);
    diffcl_tensor *xt = NULL, *eps = NULL, *xt2 = NULL, *eps2 = NULL;
    ck_ok(diffcl_diffusion_q_sample(s, x0, t, key, &xt, &eps));
    ck_assert(!diffcl_tensor_requires_grad(xt));
    const float *px = diffcl_tensor_data(x0), *pt = diffcl_tensor_data(xt), *pe = diffcl_tensor_data(eps);
    int64_t P = 2 * 32 * 32;
    double mean = 0, var = 0;
    for (int n = 0; n < 3; n++)
        for (int64_t i = 0; i < P; i++) {
            int64_t j = n * P + i;
            double want = sqrt(ab[t[n]]) * px[j] + sqrt(1 - ab[t[n]]) * pe[j];
            ck_assert_msg(fabs(pt[j] - want) < 1e-5, "x_t[%lld] %g vs %g", (long long)j, pt[j], want);
            mean += pe[j];
            var += (double)pe[j] * pe[j];
        }
    mean /= 3 * P;
    var = var / (3 * P) - mean * mean;
    ck_assert_msg(fabs(mean) < 0.05 && fabs(var - 1) < 0.05, "noise mean %g var %g", mean, var);
    /* same key: same draws; batch item n uses index key.index + n, so a batch of the last
     * sample alone with index 12 reproduces it */
    ck_ok(diffcl_diffusion_q_sample(s, x0, t, key, &xt2, NULL));
    ck_assert_double_eq(test_rel_error(xt2, xt), 0);
    diffcl_tensor *last = NULL, *lastc = NULL;
    ck_ok(diffcl_tensor_narrow(x0, 0, 2, 1, &last));
    ck_ok(diffcl_tensor_contiguous(last, &lastc));
    diffcl_tensor_free(xt2);
    ck_ok(diffcl_diffusion_q_sample(s, lastc, &t[2], diffcl_rng_key_make(7, 3, 12, 2), &xt2, &eps2));
    diffcl_tensor *enarrow = NULL;
    ck_ok(diffcl_tensor_narrow(eps, 0, 2, 1, &enarrow));
    ck_assert_double_eq(test_rel_error(eps2, enarrow), 0);
    /* t out of range */
    int64_t bad[3] = {0, 1000, 1};
    diffcl_tensor *z = NULL;
    ck_assert_int_eq(diffcl_diffusion_q_sample(s, x0, bad, key, &z, NULL), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_null(z);
    diffcl_tensor_free(enarrow);
    diffcl_tensor_free(last);
    diffcl_tensor_free(lastc);
    diffcl_tensor_free(x0);
    diffcl_tensor_free(xt);
    diffcl_tensor_free(eps);
    diffcl_tensor_free(xt2);
    diffcl_tensor_free(eps2);
    diffcl_diffusion_schedule_free(s);
}
END_TEST

static diffcl_status f_q_sample(diffcl_tensor *const *in, int n, diffcl_tensor **out, void *user)
{
    (void)n;
    static const int64_t t[2] = {3, 640};
    return diffcl_diffusion_q_sample(user, in[0], t, diffcl_rng_key_make(1, 2, 3, 4), out, NULL);
}

static diffcl_status f_channel_bias(diffcl_tensor *const *in, int n, diffcl_tensor **out, void *user)
{
    (void)n;
    (void)user;
    /* square the result so the gradient depends on both inputs' values */
    diffcl_tensor *y = NULL;
    diffcl_status s = dc_add_channel_bias(in[0], in[1], &y);
    if (s == DIFFCL_OK) s = diffcl_square(y, out);
    diffcl_tensor_free(y);
    return s;
}

static void gradcheck(diffcl_gradcheck_fn fn, void *user, diffcl_tensor **in, int n)
{
    diffcl_gradcheck_result r = {sizeof r, 0, 0, 0, 0, 0, 0};
    diffcl_status s = diffcl_gradcheck(fn, user, in, n, NULL, &r);
    ck_assert_msg(s == DIFFCL_OK, "gradcheck: %s (max abs %g, rel %g)", diffcl_last_error(), r.max_abs_error,
                  r.max_rel_error);
    ck_assert_int_gt(r.n_checked, 0);
}

START_TEST(test_gradcheck_ops)
{
    diffcl_diffusion_schedule *s = NULL;
    ck_ok(diffcl_diffusion_schedule_create(DIFFCL_BETA_COSINE, 1000, &s));
    int64_t sh[4] = {2, 3, 4, 5};
    diffcl_tensor *x0 = test_randn(ctx, DIFFCL_F64, 4, sh, 11);
    ck_ok(diffcl_tensor_set_requires_grad(x0, 1));
    gradcheck(f_q_sample, s, &x0, 1);
    diffcl_tensor_free(x0);
    diffcl_diffusion_schedule_free(s);

    for (int nd = 2; nd <= 5; nd++) {
        int64_t xs[5] = {2, 3, 4, 3, 2}, bs[2] = {2, 3};
        diffcl_tensor *in[2] = {test_randn(ctx, DIFFCL_F64, nd, xs, 21), test_randn(ctx, DIFFCL_F64, 2, bs, 22)};
        ck_ok(diffcl_tensor_set_requires_grad(in[0], 1));
        ck_ok(diffcl_tensor_set_requires_grad(in[1], 1));
        gradcheck(f_channel_bias, NULL, in, 2);
        diffcl_tensor_free(in[0]);
        diffcl_tensor_free(in[1]);
    }
    /* F32 path equals F64 */
    int64_t xs[4] = {2, 3, 5, 4}, bs[2] = {2, 3};
    diffcl_tensor *x = test_randn(ctx, DIFFCL_F64, 4, xs, 1), *b = test_randn(ctx, DIFFCL_F64, 2, bs, 2);
    diffcl_tensor *xf = to_f32(x), *bf = to_f32(b), *y = NULL, *yf = NULL;
    ck_ok(dc_add_channel_bias(x, b, &y));
    ck_ok(dc_add_channel_bias(xf, bf, &yf));
    ck_assert(test_rel_error(yf, y) < 1e-6);
    diffcl_tensor *bad = NULL;
    ck_assert_int_eq(dc_add_channel_bias(x, xf, &bad), DIFFCL_ERR_DTYPE);
    ck_assert_int_eq(dc_add_channel_bias(x, x, &bad), DIFFCL_ERR_SHAPE);
    diffcl_tensor_free(x);
    diffcl_tensor_free(b);
    diffcl_tensor_free(xf);
    diffcl_tensor_free(bf);
    diffcl_tensor_free(y);
    diffcl_tensor_free(yf);
}
END_TEST

START_TEST(test_timestep_embedding)
{
    int64_t t[3] = {0, 1, 999};
    diffcl_tensor *e = NULL;
    ck_ok(dc_timestep_embedding(ctx, t, 3, 128, DIFFCL_F32, &e));
    ck_assert_int_eq(diffcl_tensor_dim(e, 1), 128);
    const float *p = diffcl_tensor_data(e);
    for (int i = 0; i < 64; i++) {
        double f = exp(-log(10000.0) * i / 63.0);
        ck_assert(fabs(p[i]) < 1e-7 && fabs(p[64 + i] - 1) < 1e-7);
        ck_assert(fabs(p[128 + i] - sin(f)) < 1e-6 && fabs(p[128 + 64 + i] - cos(f)) < 1e-6);
        ck_assert(fabs(p[256 + i] - sin(999 * f)) < 1e-6 && fabs(p[256 + 64 + i] - cos(999 * f)) < 1e-6);
    }
    diffcl_tensor_free(e);
}
END_TEST

/* --------------------------------------------------------------- names ---- */

static void expect_shape(const diffcl_module *m, const char *name, int nd, const int64_t *shape)
{
    diffcl_tensor *t = diffcl_module_find(m, name);
    ck_assert_msg(t != NULL, "%s missing", name);
    ck_assert_msg(diffcl_tensor_ndim(t) == nd, "%s: rank %d", name, diffcl_tensor_ndim(t));
    for (int i = 0; i < nd; i++)
        ck_assert_msg(diffcl_tensor_dim(t, i) == shape[i], "%s: axis %d is %lld, expected %lld", name, i,
                      (long long)diffcl_tensor_dim(t, i), (long long)shape[i]);
}

START_TEST(test_names)
{
    diffcl_module *m = NULL;
    ck_ok(diffcl_diffusion_create(ctx, NULL, &m)); /* the default: 3D, 16 filters, PyTorch sizes */
    ck_assert_str_eq(diffcl_module_type(m), "diffusion");
    ck_assert_int_eq(diffcl_module_num_parameters(m), 11214834);
    ck_assert_int_eq(diffcl_module_state_count(m, DIFFCL_STATE_PARAMS), 180);
    ck_assert_int_eq(diffcl_module_state_count(m, DIFFCL_STATE_ALL), 267);
    expect_shape(m, "embedding_diffusion.temb.dense.0.weight", 2, (int64_t[]){512, 128});
    expect_shape(m, "embedding_diffusion.temb.dense.1.bias", 1, (int64_t[]){512});
    expect_shape(m, "embedding_diffusion.emb.ops.0.conv.weight", 5, (int64_t[]){16, 3, 3, 3, 3});
    expect_shape(m, "embedding_diffusion.emb.ops.0.temb_fusion.temb_proj.weight", 2, (int64_t[]){16, 512});
    expect_shape(m, "encoder.block_one_dw.ops.0.weight", 5, (int64_t[]){32, 16, 2, 2, 2});
    expect_shape(m, "encoder.block_one_dw.ops.2.running_var", 1, (int64_t[]){32});
    expect_shape(m, "encoder.block_one_dw.ops.3.temb_proj.bias", 1, (int64_t[]){32});
    expect_shape(m, "encoder.block_five.ops.2.norm.running_mean", 1, (int64_t[]){256});
    expect_shape(m, "decoder.block_five_up.ops.0.weight", 5, (int64_t[]){256, 128, 2, 2, 2});
    expect_shape(m, "decoder.block_nine.ops.0.temb_fusion.temb_proj.weight", 2, (int64_t[]){16, 512});
    expect_shape(m, "decoder.out_conv.weight", 5, (int64_t[]){2, 16, 1, 1, 1});
    const char *first = NULL, *last = NULL;
    ck_ok(diffcl_module_state_entry(m, DIFFCL_STATE_ALL, 0, &first, NULL, NULL));
    ck_ok(diffcl_module_state_entry(m, DIFFCL_STATE_ALL, 266, &last, NULL, NULL));
    ck_assert_str_eq(first, "embedding_diffusion.temb.dense.0.weight");
    ck_assert_str_eq(last, "decoder.out_conv.bias");
    diffcl_diffusion_options o;
    diffcl_diffusion_options_init(&o);
    ck_ok(diffcl_diffusion_get_options(m, &o));
    ck_assert_int_eq(o.timesteps, 1000);
    ck_assert_ptr_nonnull(diffcl_diffusion_get_schedule(m));
    diffcl_module_free(m);

    /* bad options */
    diffcl_diffusion_options b;
    diffcl_diffusion_options_init(&b);
    b.dims = 4;
    ck_assert_int_eq(diffcl_diffusion_create(ctx, &b, &m), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_null(m);
    diffcl_diffusion_options_init(&b);
    b.time_embed_dim = 7;
    ck_assert_int_eq(diffcl_diffusion_create(ctx, &b, &m), DIFFCL_ERR_INVALID_ARGUMENT);
    diffcl_diffusion_options_init(&b);
    b.n_classes = 1;
    ck_assert_int_eq(diffcl_diffusion_create(ctx, &b, &m), DIFFCL_ERR_INVALID_ARGUMENT);
}
END_TEST

/* -------------------------------------------------------------- parity ---- */

/* Train-mode forward, every parameter gradient, the input gradients and the running statistics
 * of the denoiser against the fixture (tests/reference/gen_diffusion.py), in @p dt.
 * float32, as users run it: output and running statistics to 1e-4; gradients network-level to
 * max(1e-3, 3 x torch's own float32 error on the fixture over reroundings). ReLU before batch
 * norm makes this net's float32 gradients sensitive to summation order (torch's own float32
 * run moves by 1e-2 when inputs are rerounded by 4 ulp), so single tensors are not held in
 * float32. float64: output to 1e-10, each gradient tensor to 1e-8 (stored in float64);
 * running statistics and the eval-mode output, stored rounded to float32, to 1e-6. */
static void parity(const char *fixture, diffcl_dtype dt)
{
    diffcl_tensor_dict *d = load_fixture(fixture);
    int dims = atoi(diffcl_tensor_dict_get_meta(d, "dims"));
    char label[96];
    snprintf(label, sizeof label, "%s %s", fixture, diffcl_dtype_name(dt));
    diffcl_diffusion_options o;
    diffcl_diffusion_options_init(&o);
    o.dims = dims;
    o.n_filters = atoi(diffcl_tensor_dict_get_meta(d, "n_filters"));
    o.time_embed_dim = atoi(diffcl_tensor_dict_get_meta(d, "time_embed_dim"));
    o.time_hidden_dim = atoi(diffcl_tensor_dict_get_meta(d, "time_hidden_dim"));
    o.stage_dropout = 0;
    diffcl_module *m = NULL;
    ck_ok(diffcl_diffusion_create(ctx, &o, &m));
    if (dt == DIFFCL_F64) ck_ok(diffcl_module_to_dtype(m, DIFFCL_F64));
    diffcl_tensor_dict *init = NULL;
    ck_ok(diffcl_tensor_dict_new(ctx, &init));
    for (int i = 0; i < diffcl_tensor_dict_size(d); i++)
        if (!strncmp(diffcl_tensor_dict_name(d, i), "init.", 5))
            ck_ok(diffcl_tensor_dict_set(init, diffcl_tensor_dict_name(d, i) + 5, diffcl_tensor_dict_at(d, i)));
    int missing = -1, unexpected = -1;
    diffcl_load_options lo = DIFFCL_LOAD_OPTIONS_INIT;
    ck_ok(diffcl_module_load_state_dict(m, init, &lo, &missing, &unexpected));
    ck_assert_int_eq(missing, 0);
    ck_assert_int_eq(unexpected, 0);
    diffcl_tensor_dict_free(init);

    const int f64 = dt == DIFFCL_F64;
    const double grad_bound = f64 ? 1e-8 : test_f32_grad_bound(d);
    diffcl_tensor *image = NULL, *xt = NULL;
    ck_ok(diffcl_tensor_to_dtype(get(d, "image"), dt, &image));
    ck_ok(diffcl_tensor_to_dtype(get(d, "x_t"), dt, &xt));
    ck_ok(diffcl_tensor_set_requires_grad(image, 1));
    ck_ok(diffcl_tensor_set_requires_grad(xt, 1));
    const int64_t *t = diffcl_tensor_data_const(get(d, "t"));
    diffcl_tensor *out = NULL, *w = NULL, *prod = NULL, *loss = NULL;
    ck_ok(diffcl_tensor_to_dtype(get(d, "w"), dt, &w));
    diffcl_module_train(m, 1);
    ck_ok(diffcl_diffusion_forward(m, xt, image, t, &out));
    fprintf(stderr, "%s:\n", label);
    test_expect_close("train-mode output", out, get(d, "out"), f64 ? 1e-10 : 1e-4);
    ck_ok(diffcl_mul(out, w, &prod));
    ck_ok(diffcl_sum_all(prod, &loss));
    ck_ok(diffcl_backward(loss, NULL));
    test_check_module_grads(label, m, d, "grad.", f64 ? 1e-8 : TEST_NO_BOUND, grad_bound);
    test_expect_close("image gradient", diffcl_tensor_grad(image), get(d, "grad_image"), grad_bound);
    test_expect_close("x_t gradient", diffcl_tensor_grad(xt), get(d, "grad_x_t"), grad_bound);
    /* batch-norm running statistics after the forward */
    int n_buf = 0;
    double worst = 0;
    for (int i = 0; i < diffcl_tensor_dict_size(d); i++) {
        const char *name = diffcl_tensor_dict_name(d, i);
        if (strncmp(name, "after.", 6)) continue;
        diffcl_tensor *mine = diffcl_module_find(m, name + 6);
        ck_assert_msg(mine != NULL, "%s missing", name + 6);
        test_error e = test_error_of(mine, diffcl_tensor_dict_at(d, i));
        ck_assert_msg(e.rel <= (f64 ? 1e-6 : 1e-4), "%s: rel error %g", name + 6, e.rel);
        worst = e.rel > worst ? e.rel : worst;
        n_buf++;
    }
    fprintf(stderr, "  %d running statistics: worst rel %.2e (bound %.1e)\n", n_buf, worst, f64 ? 1e-6 : 1e-4);
    ck_assert_int_gt(n_buf, 40);
    /* evaluation mode with the updated running statistics */
    diffcl_tensor *eout = NULL, *image2 = NULL, *xt2 = NULL;
    ck_ok(diffcl_tensor_detach(image, &image2));
    ck_ok(diffcl_tensor_detach(xt, &xt2));
    diffcl_module_train(m, 0);
    int prev = diffcl_set_grad_enabled(ctx, 0);
    ck_ok(diffcl_diffusion_forward(m, xt2, image2, t, &eout));
    diffcl_set_grad_enabled(ctx, prev);
    test_expect_close("eval-mode output", eout, get(d, "eval_out"), f64 ? 1e-6 : 1e-4);
    diffcl_tensor *all[] = {eout, image2, xt2, out, w, prod, loss, image, xt};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) diffcl_tensor_free(all[i]);
    diffcl_module_free(m);
    diffcl_tensor_dict_free(d);
}

START_TEST(test_parity_2d)
{
    parity("diffusion2d.safetensors", DIFFCL_F32);
    parity("diffusion2d.safetensors", DIFFCL_F64);
}
END_TEST

START_TEST(test_parity_3d)
{
    parity("diffusion3d.safetensors", DIFFCL_F32);
    parity("diffusion3d.safetensors", DIFFCL_F64);
}
END_TEST

/* ------------------------------------------------------ labels, pseudo ---- */

START_TEST(test_encode_label)
{
    uint8_t lab[2 * 4] = {0, 1, 2, 1, 2, 2, 0, 0};
    diffcl_tensor *l = NULL, *x0 = NULL, *l1 = NULL, *x01 = NULL;
    ck_ok(diffcl_tensor_from_data(ctx, DIFFCL_U8, 3, (int64_t[]){2, 2, 2}, lab, &l));
    ck_ok(diffcl_diffusion_encode_label(l, 3, &x0));
    ck_assert_int_eq(diffcl_tensor_ndim(x0), 4);
    ck_assert_int_eq(diffcl_tensor_dim(x0, 1), 3);
    const float *p = diffcl_tensor_data(x0);
    for (int n = 0; n < 2; n++)
        for (int c = 0; c < 3; c++)
            for (int v = 0; v < 4; v++)
                ck_assert(p[(n * 3 + c) * 4 + v] == (lab[n * 4 + v] == c ? 1.0f : -1.0f));
    /* [N,1,H,W] gives the same */
    ck_ok(diffcl_tensor_from_data(ctx, DIFFCL_U8, 4, (int64_t[]){2, 1, 2, 2}, lab, &l1));
    ck_ok(diffcl_diffusion_encode_label(l1, 3, &x01));
    ck_assert_double_eq(test_rel_error(x01, x0), 0);
    diffcl_tensor *bad = NULL;
    ck_assert_int_eq(diffcl_diffusion_encode_label(l, 2, &bad), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_null(bad);
    diffcl_tensor_free(l);
    diffcl_tensor_free(x0);
    diffcl_tensor_free(l1);
    diffcl_tensor_free(x01);
}
END_TEST

/* direct (non-separable) reference of the renormalised 3x3 Gaussian on one class map */
static double smooth_ref(const double *map, int H, int W, int y, int x)
{
    double acc = 0, ws = 0;
    for (int dy = -1; dy <= 1; dy++)
        for (int dx = -1; dx <= 1; dx++) {
            int yy = y + dy, xx = x + dx;
            if (yy < 0 || yy >= H || xx < 0 || xx >= W) continue;
            double w = exp(-(dy * dy + dx * dx) / 2.0);
            acc += w * map[yy * W + xx];
            ws += w;
        }
    return acc / ws;
}

START_TEST(test_pseudo_label)
{
    const int C = 3, H = 5, W = 6;
    int64_t sh[4] = {1, C, H, W};
    diffcl_tensor *logits = test_randn(ctx, DIFFCL_F32, 4, sh, 99), *lab = NULL, *pr = NULL;
    ck_ok(diffcl_diffusion_pseudo_label(logits, &lab, &pr));
    ck_assert_int_eq(diffcl_tensor_dtype(lab), DIFFCL_I64);
    ck_assert_int_eq(diffcl_tensor_ndim(lab), 3);
    const float *lg = diffcl_tensor_data(logits), *q = diffcl_tensor_data(pr);
    const int64_t *l = diffcl_tensor_data(lab);
    double soft[3 * 30];
    for (int v = 0; v < H * W; v++) {
        double mx = -1e30, s = 0;
        for (int c = 0; c < C; c++) mx = fmax(mx, lg[c * H * W + v]);
        for (int c = 0; c < C; c++) s += exp(lg[c * H * W + v] - mx);
        for (int c = 0; c < C; c++) soft[c * H * W + v] = exp(lg[c * H * W + v] - mx) / s;
    }
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            double best = -1, sum = 0;
            int arg = 0;
            for (int c = 0; c < C; c++) {
                double r = smooth_ref(soft + c * H * W, H, W, y, x);
                ck_assert_msg(fabs(q[c * H * W + y * W + x] - r) < 1e-6, "smoothed prob (%d,%d,%d)", c, y, x);
                sum += r;
                if (r > best) {
                    best = r;
                    arg = c;
                }
            }
            ck_assert(fabs(sum - 1) < 1e-6);
            ck_assert_int_eq(l[y * W + x], arg);
        }
    diffcl_tensor_free(lab);
    diffcl_tensor_free(pr);
    /* 3D works, without the probabilities */
    int64_t s3[5] = {2, 2, 4, 4, 4};
    diffcl_tensor *l3 = test_randn(ctx, DIFFCL_F64, 5, s3, 3);
    ck_ok(diffcl_diffusion_pseudo_label(l3, &lab, NULL));
    ck_assert_int_eq(diffcl_tensor_ndim(lab), 4);
    diffcl_tensor_free(lab);
    diffcl_tensor_free(l3);
    diffcl_tensor_free(logits);
}
END_TEST

/* ------------------------------------------------------ objective, DDIM ---- */

static diffcl_tensor *disc_labels(int N, int H, int W, uint64_t seed)
{
    diffcl_tensor *l = NULL;
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_I64, 3, (int64_t[]){N, H, W}, &l));
    int64_t *p = diffcl_tensor_data(l);
    for (int n = 0; n < N; n++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                double cy = H / 2.0 + (double)((seed + n) % 5) - 2, cx = W / 2.0;
                p[(n * H + y) * W + x] = (y - cy) * (y - cy) + (x - cx) * (x - cx) < H * W / 10.0;
            }
    return l;
}

START_TEST(test_loss_and_backward)
{
    for (int target = 0; target < 2; target++) {
        diffcl_module *m = small_model(2, 2, (diffcl_diffusion_target)target, 5);
        int64_t ish[4] = {2, 1, 16, 16};
        diffcl_tensor *image = test_randn(ctx, DIFFCL_F32, 4, ish, 8), *lab = disc_labels(2, 16, 16, 0);
        diffcl_tensor *loss = NULL, *out = NULL, *loss2 = NULL, *bad0 = NULL;
        diffcl_module_set_step(m, 0);
        ck_ok(diffcl_diffusion_loss(m, image, lab, diffcl_rng_key_make(1, 9, 0, 0), &loss, &out));
        ck_assert_int_eq(diffcl_tensor_ndim(loss), 0);
        ck_assert_int_eq(diffcl_tensor_dim(out, 1), 2);
        double v = 0, v2 = 0;
        ck_ok(diffcl_tensor_item(loss, &v));
        ck_assert(isfinite(v) && v > 0);
        ck_ok(diffcl_backward(loss, NULL));
        diffcl_tensor *g = diffcl_tensor_grad(diffcl_module_find(m, "decoder.out_conv.weight"));
        ck_assert_ptr_nonnull(g);
        ck_assert(max_abs(g) > 0);
        ck_assert_ptr_nonnull(diffcl_tensor_grad(diffcl_module_find(m, "embedding_diffusion.temb.dense.0.weight")));
        /* same key and dropout step: same loss */
        diffcl_module_set_step(m, 0);
        ck_ok(diffcl_diffusion_loss(m, image, lab, diffcl_rng_key_make(1, 9, 0, 0), &loss2, NULL));
        ck_ok(diffcl_tensor_item(loss2, &v2));
        ck_assert_double_eq_tol(v, v2, 1e-6 * fabs(v));
        /* explicit timesteps equal to the drawn ones give the same loss; an all-zero mask gives 0 */
        diffcl_diffusion_loss_options lo;
        diffcl_diffusion_loss_options_init(&lo);
        int64_t tt[2];
        dc_diffusion_draw_timesteps(NULL, diffcl_rng_key_make(1, 9, 0, 0), 1000, 2, NULL, tt);
        lo.timesteps = tt;
        diffcl_tensor *loss3 = NULL, *loss4 = NULL, *zero = NULL;
        diffcl_module_set_step(m, 0);
        ck_ok(diffcl_diffusion_loss_ex(m, image, lab, diffcl_rng_key_make(1, 9, 0, 0), &lo, &loss3, NULL));
        double v3 = 0;
        ck_ok(diffcl_tensor_item(loss3, &v3));
        ck_assert_double_eq_tol(v, v3, 1e-6 * fabs(v));
        ck_ok(diffcl_tensor_new(ctx, DIFFCL_F32, 3, (int64_t[]){2, 16, 16}, &zero));
        lo.voxel_weight = zero;
        lo.timesteps = NULL;
        ck_ok(diffcl_diffusion_loss_ex(m, image, lab, diffcl_rng_key_make(1, 9, 0, 0), &lo, &loss4, NULL));
        ck_ok(diffcl_tensor_item(loss4, &v3));
        ck_assert_double_eq_tol(v3, 0.0, 1e-6);
        lo.dice_weight = -1;
        ck_assert_int_eq(diffcl_diffusion_loss_ex(m, image, lab, diffcl_rng_key_make(1, 9, 0, 0), &lo, &bad0, NULL),
                         DIFFCL_ERR_INVALID_ARGUMENT);
        diffcl_tensor_free(loss3);
        diffcl_tensor_free(loss4);
        diffcl_tensor_free(zero);
        /* a label outside [0, C) */
        int64_t *pl = diffcl_tensor_data(lab);
        pl[3] = 2;
        diffcl_tensor *bad = NULL;
        ck_assert_int_ne(diffcl_diffusion_loss(m, image, lab, diffcl_rng_key_make(1, 9, 0, 0), &bad, NULL), DIFFCL_OK);
        ck_assert_ptr_null(bad);
        diffcl_tensor_free(loss);
        diffcl_tensor_free(loss2);
        diffcl_tensor_free(out);
        diffcl_tensor_free(image);
        diffcl_tensor_free(lab);
        diffcl_module_free(m);
    }
}
END_TEST

START_TEST(test_sampling)
{
    for (int target = 0; target < 2; target++) {
        diffcl_module *m = small_model(2, 2, (diffcl_diffusion_target)target, 6);
        diffcl_module_train(m, 0);
        int64_t ish[4] = {2, 1, 16, 16};
        diffcl_tensor *image = test_randn(ctx, DIFFCL_F32, 4, ish, 8);
        diffcl_diffusion_sample_options so;
        diffcl_diffusion_sample_options_init(&so);
        so.steps = 4;
        so.key = diffcl_rng_key_make(3, 1, 0, 0);
        diffcl_tensor *a = NULL, *b = NULL, *c = NULL, *e = NULL, *one = NULL;
        diffcl_tensor *lab = disc_labels(2, 16, 16, 1), *x0 = NULL;
        ck_ok(diffcl_diffusion_encode_label(lab, 2, &x0));
        ck_ok(diffcl_diffusion_sample(m, image, &so, &a));
        ck_assert(!diffcl_tensor_requires_grad(a));
        ck_assert_int_eq(diffcl_tensor_dim(a, 1), 2);
        /* a second call leaves nothing behind (no tape, no leak; the scratch is warm) */
        size_t before = diffcl_context_bytes_in_use(ctx);
        ck_ok(diffcl_diffusion_sample(m, image, &so, &b));
        ck_assert_double_eq(test_rel_error(a, b), 0); /* deterministic from the key */
        diffcl_tensor_free(b);
        ck_assert_uint_eq(diffcl_context_bytes_in_use(ctx), before);
        ck_ok(diffcl_diffusion_sample(m, image, &so, &b));
        so.key.seed = 4;
        ck_ok(diffcl_diffusion_sample(m, image, &so, &c));
        if (target == DIFFCL_DIFFUSION_PREDICT_X0) ck_assert(test_rel_error(c, a) > 0);
        so.eta = 1.0;
        so.steps = 3;
        ck_ok(diffcl_diffusion_sample(m, image, &so, &e));
        so.steps = 1;
        so.eta = 0;
        diffcl_tensor_free(e);
        ck_ok(diffcl_diffusion_sample(m, image, &so, &e));
        if (target == DIFFCL_DIFFUSION_PREDICT_EPSILON) ck_assert(max_abs(e) <= 1.0);
        /* one-step */
        ck_ok(diffcl_diffusion_denoise_once(m, image, x0, 100, diffcl_rng_key_make(1, 1, 0, 0), &one));
        ck_assert(!diffcl_tensor_requires_grad(one));
        diffcl_tensor_free(a);
        diffcl_tensor_free(b);
        diffcl_tensor_free(c);
        diffcl_tensor_free(e);
        diffcl_tensor_free(one);
        ck_assert_int_eq(diffcl_grad_enabled(ctx), 1);
        /* bad input: wrong image rank, bad t, too many steps */
        so.steps = 2000;
        ck_assert_int_eq(diffcl_diffusion_sample(m, image, &so, &a), DIFFCL_ERR_INVALID_ARGUMENT);
        ck_assert_int_eq(diffcl_diffusion_denoise_once(m, image, x0, 1000, so.key, &a), DIFFCL_ERR_INVALID_ARGUMENT);
        diffcl_tensor_free(lab);
        diffcl_tensor_free(x0);
        diffcl_tensor_free(image);
        diffcl_module_free(m);
    }
}
END_TEST

START_TEST(test_bad_input)
{
    diffcl_module *m = small_model(2, 2, DIFFCL_DIFFUSION_PREDICT_X0, 1);
    int64_t t[2] = {1, 2};
    diffcl_tensor *img = test_randn(ctx, DIFFCL_F32, 4, (int64_t[]){2, 1, 16, 16}, 1);
    diffcl_tensor *xt = test_randn(ctx, DIFFCL_F32, 4, (int64_t[]){2, 2, 16, 16}, 2);
    diffcl_tensor *x3 = test_randn(ctx, DIFFCL_F32, 4, (int64_t[]){2, 3, 16, 16}, 2);
    diffcl_tensor *odd = test_randn(ctx, DIFFCL_F32, 4, (int64_t[]){2, 2, 16, 24}, 2);
    diffcl_tensor *f64 = test_randn(ctx, DIFFCL_F64, 4, (int64_t[]){2, 2, 16, 16}, 2);
    diffcl_tensor *out = NULL;
    ck_assert_int_eq(diffcl_diffusion_forward(m, x3, img, t, &out), DIFFCL_ERR_SHAPE);
    ck_assert_int_eq(diffcl_diffusion_forward(m, odd, img, t, &out), DIFFCL_ERR_SHAPE);
    ck_assert_int_eq(diffcl_diffusion_forward(m, f64, img, t, &out), DIFFCL_ERR_DTYPE);
    ck_assert_int_eq(diffcl_diffusion_forward(m, xt, img, (int64_t[]){1, -1}, &out), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(diffcl_diffusion_forward(m, xt, img, NULL, &out), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(diffcl_diffusion_forward(m, NULL, img, t, &out), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_null(out);
    ck_assert_int_eq(diffcl_module_forward(m, xt, &out), DIFFCL_ERR_UNSUPPORTED);
    /* not a denoiser */
    diffcl_module *lin = NULL;
    ck_ok(diffcl_linear_create(ctx, 2, 2, 1, diffcl_rng_key_make(0, 0, 0, 0), &lin));
    ck_assert_int_eq(diffcl_diffusion_forward(lin, xt, img, t, &out), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_null(diffcl_diffusion_get_schedule(lin));
    diffcl_module_free(lin);
    /* NaN input propagates (no crash) */
    float *px = diffcl_tensor_data(xt);
    px[5] = NAN;
    ck_ok(diffcl_diffusion_forward(m, xt, img, t, &out));
    diffcl_tensor_free(out);
    diffcl_tensor_free(img);
    diffcl_tensor_free(xt);
    diffcl_tensor_free(x3);
    diffcl_tensor_free(odd);
    diffcl_tensor_free(f64);
    diffcl_module_free(m);
}
END_TEST

START_TEST(test_save_load)
{
    diffcl_module *m = small_model(3, 2, DIFFCL_DIFFUSION_PREDICT_EPSILON, 12), *r = NULL;
    char path[4096];
    const char *dir = getenv("DIFFCL_BUILD_ROOT");
    snprintf(path, sizeof path, "%s/diffusion_test_save.safetensors", dir ? dir : ".");
    ck_ok(diffcl_diffusion_save(m, path));
    ck_ok(diffcl_diffusion_load(ctx, path, &r));
    diffcl_diffusion_options a, b;
    diffcl_diffusion_options_init(&a);
    diffcl_diffusion_options_init(&b);
    ck_ok(diffcl_diffusion_get_options(m, &a));
    ck_ok(diffcl_diffusion_get_options(r, &b));
    ck_assert_int_eq(b.dims, 3);
    ck_assert_int_eq(b.target, DIFFCL_DIFFUSION_PREDICT_EPSILON);
    ck_assert_int_eq(b.time_embed_dim, 16);
    ck_assert_int_eq(diffcl_module_state_count(r, DIFFCL_STATE_ALL), diffcl_module_state_count(m, DIFFCL_STATE_ALL));
    for (int i = 0; i < diffcl_module_state_count(m, DIFFCL_STATE_ALL); i++) {
        const char *name = NULL;
        diffcl_tensor *t = NULL;
        ck_ok(diffcl_module_state_entry(m, DIFFCL_STATE_ALL, i, &name, &t, NULL));
        diffcl_tensor *u = diffcl_module_find(r, name);
        ck_assert_ptr_nonnull(u);
        ck_assert_double_eq(test_rel_error(u, t), 0);
    }
    ck_assert(!diffcl_module_is_training(r));
    diffcl_module_free(r);
    r = NULL;
    /* a forged configuration: the time MLP's width is checked against the saved weights before
     * anything is built (a time_hidden_dim of 10^6 would be a 4 TB network) */
    diffcl_tensor_dict *d = NULL;
    ck_ok(diffcl_safetensors_load(ctx, path, &d));
    const char *cfg = diffcl_tensor_dict_get_meta(d, "diffcl.model");
    ck_assert_ptr_nonnull(cfg);
    const char *at = strstr(cfg, "\"time_hidden_dim\":");
    ck_assert_ptr_nonnull(at);
    char forged[2048];
    int head = (int)(at - cfg);
    const char *tail = strpbrk(at + strlen("\"time_hidden_dim\":"), ",}");
    snprintf(forged, sizeof forged, "%.*s\"time_hidden_dim\":1000000%s", head, cfg, tail);
    ck_ok(diffcl_tensor_dict_set_meta(d, "diffcl.model", forged));
    ck_ok(diffcl_safetensors_save(d, path));
    diffcl_tensor_dict_free(d);
    size_t before = diffcl_context_bytes_in_use(ctx);
    ck_assert_int_eq(diffcl_diffusion_load(ctx, path, &r), DIFFCL_ERR_FORMAT);
    ck_assert_ptr_null(r);
    ck_assert_ptr_nonnull(strstr(diffcl_last_error(), "temb.dense.0.weight"));
    ck_assert_uint_eq(diffcl_context_bytes_in_use(ctx), before);
    /* a file that is not a denoiser */
    diffcl_module *lin = NULL;
    ck_ok(diffcl_linear_create(ctx, 2, 2, 1, diffcl_rng_key_make(0, 0, 0, 0), &lin));
    ck_ok(diffcl_module_save(lin, path, NULL, NULL, 0));
    ck_assert_int_eq(diffcl_diffusion_load(ctx, path, &r), DIFFCL_ERR_FORMAT);
    ck_assert_ptr_null(r);
    ck_assert_int_eq(diffcl_diffusion_save(lin, path), DIFFCL_ERR_INVALID_ARGUMENT);
    remove(path);
    ck_assert_int_eq(diffcl_diffusion_load(ctx, path, &r), DIFFCL_ERR_IO);
    diffcl_module_free(lin);
    diffcl_module_free(m);
}
END_TEST

/* ------------------------------------------------------------ learning ---- */

/* Discs and squares of random size and place in noise, 32x32; label 1 inside the shape. */
static void toy_batch(int N, int S, uint64_t seed, uint32_t first, float *img, int64_t *lab)
{
    for (int n = 0; n < N; n++) {
        float u[4];
        diffcl_rng_uniform(diffcl_rng_key_make(seed, 77, first + (uint32_t)n, 0), 0, 4, 0.0f, 1.0f, u);
        double r = 4 + 6 * u[0], cy = r + u[1] * (S - 2 * r), cx = r + u[2] * (S - 2 * r);
        int square = u[3] < 0.5f;
        float *noise = img + (int64_t)n * S * S;
        diffcl_rng_normal(diffcl_rng_key_make(seed, 78, first + (uint32_t)n, 0), 0, (size_t)S * S, 0.0f, 0.6f,
                          noise);
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) {
                double dy = y + 0.5 - cy, dx = x + 0.5 - cx;
                int in = square ? (fabs(dy) < r * 0.886 && fabs(dx) < r * 0.886) : (dy * dy + dx * dx < r * r);
                lab[((int64_t)n * S + y) * S + x] = in;
                noise[y * S + x] += in ? 1.0f : 0.0f;
            }
    }
}

/* Dice of the foreground of argmax(logits) against lab, pooled over the batch. */
static double fg_dice(const diffcl_tensor *logits, const int64_t *lab)
{
    diffcl_tensor *am = NULL;
    ck_ok(diffcl_argmax(logits, 1, 0, &am));
    const int64_t *p = diffcl_tensor_data(am);
    double inter = 0, a = 0, b = 0;
    for (int64_t i = 0; i < diffcl_tensor_numel(am); i++) {
        inter += p[i] == 1 && lab[i] == 1;
        a += p[i] == 1;
        b += lab[i] == 1;
    }
    diffcl_tensor_free(am);
    return a + b > 0 ? 2 * inter / (a + b) : 1.0;
}

START_TEST(test_learns_toy_2d)
{
    /* one thread: the test's cost is about 10 s of CPU, and a shared 2-core machine gives
     * steadier times without a second thread pool spinning */
    diffcl_context *c2 = ctx;
    diffcl_diffusion_options o;
    diffcl_diffusion_options_init(&o);
    o.dims = 2;
    o.n_filters = 8;
    o.time_embed_dim = 64;
    o.time_hidden_dim = 128;
    o.seed = 42;
    diffcl_module *m = NULL;
    ck_ok(diffcl_diffusion_create(c2, &o, &m));
    const int S = 32, B = 8, iters = 300 / test_scale() < 40 ? 40 : 300 / test_scale();
    float *img = malloc(sizeof(float) * B * S * S);
    int64_t *lab = malloc(sizeof(int64_t) * B * S * S);
    diffcl_tensor *image = NULL, *label = NULL;
    diffcl_optimizer *opt = NULL;
    diffcl_param_group_options po;
    diffcl_param_group_options_init(&po);
    po.lr = 2e-3;
    ck_ok(diffcl_optimizer_create(c2, DIFFCL_OPTIM_ADAM, &opt));
    ck_ok(diffcl_optimizer_add_module(opt, m, &po, 0, NULL));
    double loss_first = 0, loss_last = 0;
    for (int it = 0; it < iters; it++) {
        toy_batch(B, S, 1, (uint32_t)(it * B), img, lab);
        ck_ok(diffcl_tensor_from_data(c2, DIFFCL_F32, 4, (int64_t[]){B, 1, S, S}, img, &image));
        ck_ok(diffcl_tensor_from_data(c2, DIFFCL_I64, 3, (int64_t[]){B, S, S}, lab, &label));
        diffcl_tensor *loss = NULL;
        diffcl_module_set_step(m, (uint32_t)it);
        ck_ok(diffcl_diffusion_loss(m, image, label, diffcl_rng_key_make(5, 1, (uint32_t)(it * B), (uint32_t)it),
                                    &loss, NULL));
        double v;
        ck_ok(diffcl_tensor_item(loss, &v));
        if (it < 10) loss_first += v / 10;
        if (it >= iters - 10) loss_last += v / 10;
        ck_ok(diffcl_backward(loss, NULL));
        diffcl_tensor_free(loss);
        ck_ok(diffcl_optimizer_set_lr(opt, -1, it < iters * 0.8 ? 2e-3 : 5e-4));
        ck_ok(diffcl_optimizer_step(opt));
        diffcl_optimizer_zero_grad(opt);
        diffcl_tensor_free(image);
        diffcl_tensor_free(label);
    }
    ck_assert_msg(loss_last < 0.5 * loss_first, "loss %g -> %g", loss_first, loss_last);
    /* held-out images (sample indices far from training) */
    const int NT = 16;
    float *ti = malloc(sizeof(float) * NT * S * S);
    int64_t *tl = malloc(sizeof(int64_t) * NT * S * S);
    toy_batch(NT, S, 1, 1000000u, ti, tl);
    ck_ok(diffcl_tensor_from_data(c2, DIFFCL_F32, 4, (int64_t[]){NT, 1, S, S}, ti, &image));
    ck_ok(diffcl_tensor_from_data(c2, DIFFCL_I64, 3, (int64_t[]){NT, S, S}, tl, &label));
    diffcl_module_train(m, 0);
    diffcl_diffusion_sample_options so;
    diffcl_diffusion_sample_options_init(&so);
    so.key = diffcl_rng_key_make(9, 2, 0, 0);
    diffcl_tensor *sample = NULL, *x0 = NULL, *o100 = NULL, *o900 = NULL;
    ck_ok(diffcl_diffusion_sample(m, image, &so, &sample));
    double dice = fg_dice(sample, tl);
    ck_ok(diffcl_diffusion_encode_label(label, 2, &x0));
    ck_ok(diffcl_diffusion_denoise_once(m, image, x0, 100, diffcl_rng_key_make(9, 3, 0, 0), &o100));
    ck_ok(diffcl_diffusion_denoise_once(m, image, x0, 900, diffcl_rng_key_make(9, 3, 0, 0), &o900));
    double d100 = fg_dice(o100, tl), d900 = fg_dice(o900, tl);
    fprintf(stderr, "diffusion toy: %d iterations, loss %.4f -> %.4f, DDIM Dice %.4f, one-step Dice t=100 %.4f t=900 %.4f\n",
            iters, loss_first, loss_last, dice, d100, d900);
    if (test_scale() == 1) {
        ck_assert_msg(dice >= 0.85, "DDIM sample Dice %g < 0.85", dice);
        ck_assert_msg(d100 > d900 + 0.01, "one-step Dice at t=100 (%g) not above t=900 (%g)", d100, d900);
    }
    diffcl_tensor_free(sample);
    diffcl_tensor_free(x0);
    diffcl_tensor_free(o100);
    diffcl_tensor_free(o900);
    diffcl_tensor_free(image);
    diffcl_tensor_free(label);
    free(img);
    free(lab);
    free(ti);
    free(tl);
    diffcl_optimizer_free(opt);
    diffcl_module_free(m);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("diffusion");
    TCase *tc = tcase_create("diffusion");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_schedule_tables);
    tcase_add_test(tc, test_respace);
    tcase_add_test(tc, test_q_sample);
    tcase_add_test(tc, test_gradcheck_ops);
    tcase_add_test(tc, test_timestep_embedding);
    tcase_add_test(tc, test_names);
    tcase_add_test(tc, test_parity_2d);
    tcase_add_test(tc, test_parity_3d);
    tcase_add_test(tc, test_encode_label);
    tcase_add_test(tc, test_pseudo_label);
    tcase_add_test(tc, test_loss_and_backward);
    tcase_add_test(tc, test_sampling);
    tcase_add_test(tc, test_bad_input);
    tcase_add_test(tc, test_save_load);
    suite_add_tcase(s, tc);
    TCase *learn = tcase_create("learn");
    tcase_add_checked_fixture(learn, setup, teardown);
    tcase_set_timeout(learn, 240);
    tcase_add_test(learn, test_learns_toy_2d);
    suite_add_tcase(s, learn);
    return s;
}

int main(void) { return test_run_suite(suite()); }
