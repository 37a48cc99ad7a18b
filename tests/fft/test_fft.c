/* Suite fft: frequency filters (FFTW), the split, plan cache, thread safety, wisdom. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_util.h"
#include "diffcl/fft.h"

static diffcl_context *ctx;
static void setup(void) { ctx = test_context(); }
static void teardown(void) { diffcl_context_free(ctx); }

/* mirrored from tests/reference/gen_fft.py */
typedef struct fcase {
    const char *name;
    diffcl_freq_band band;
    diffcl_freq_window window;
    double cutoff, cutoff_high;
} fcase;
static const fcase CASES[] = {
    {"high_gauss", DIFFCL_FREQ_HIGH, DIFFCL_WINDOW_GAUSSIAN, 0.25, 0.5},
    {"low_gauss", DIFFCL_FREQ_LOW, DIFFCL_WINDOW_GAUSSIAN, 0.3, 0.5},
    {"band_gauss", DIFFCL_FREQ_BAND, DIFFCL_WINDOW_GAUSSIAN, 0.2, 0.6},
    {"high_ideal", DIFFCL_FREQ_HIGH, DIFFCL_WINDOW_IDEAL, 0.33, 0.5},
    {"low_ideal", DIFFCL_FREQ_LOW, DIFFCL_WINDOW_IDEAL, 0.37, 0.5},
    {"band_box", DIFFCL_FREQ_BAND, DIFFCL_WINDOW_BOX, 0.21, 0.55},
};
#define N_CASES ((int)(sizeof CASES / sizeof CASES[0]))

static diffcl_freq_options opts_of(const fcase *c)
{
    diffcl_freq_options o = DIFFCL_FREQ_OPTIONS_INIT;
    o.band = c->band;
    o.window = c->window;
    o.cutoff = c->cutoff;
    o.cutoff_high = c->cutoff_high;
    return o;
}

static diffcl_tensor *get(diffcl_tensor_dict *d, const char *name)
{
    diffcl_tensor *t = diffcl_tensor_dict_get(d, name);
    ck_assert_msg(t != NULL, "fixture tensor %s missing", name);
    return t;
}

static diffcl_tensor *as_dtype(diffcl_tensor *t, diffcl_dtype dt)
{
    diffcl_tensor *r = NULL;
    ck_ok(diffcl_tensor_to_dtype(t, dt, &r));
    return r;
}

/* Output and input gradient of sum(filter(x) * w) against the torch fixtures. */
static void check_fixture(diffcl_dtype dt, double tol)
{
    diffcl_tensor_dict *d = NULL;
    ck_ok(diffcl_safetensors_load(ctx, test_fixture_path("fft_filters.safetensors"), &d));
    const char *tags[2] = {"2d", "3d"};
    for (int ti = 0; ti < 2; ti++) {
        char key[128];
        snprintf(key, sizeof key, "%s.x", tags[ti]);
        diffcl_tensor *x0 = get(d, key);
        snprintf(key, sizeof key, "%s.w", tags[ti]);
        diffcl_tensor *w = as_dtype(get(d, key), dt);
        for (int c = 0; c < N_CASES; c++) {
            diffcl_freq_options o = opts_of(&CASES[c]);
            diffcl_tensor *x = as_dtype(x0, dt);
            ck_ok(diffcl_tensor_set_requires_grad(x, 1));
            diffcl_tensor *y = NULL, *yw = NULL, *L = NULL;
            ck_ok(diffcl_freq_filter(x, &o, &y));
            snprintf(key, sizeof key, "%s.%s.out", tags[ti], CASES[c].name);
            double e = test_rel_error(y, get(d, key));
            ck_assert_msg(e <= tol, "%s %s: output rel error %g > %g", key,
                          diffcl_dtype_name(dt), e, tol);
            ck_ok(diffcl_mul(y, w, &yw));
            ck_ok(diffcl_sum_all(yw, &L));
            ck_ok(diffcl_backward(L, NULL));
            snprintf(key, sizeof key, "%s.%s.grad", tags[ti], CASES[c].name);
            e = test_rel_error(diffcl_tensor_grad(x), get(d, key));
            ck_assert_msg(e <= tol, "%s %s: grad rel error %g > %g", key, diffcl_dtype_name(dt),
                          e, tol);
            /* the mask itself */
            int64_t shp[3];
            int rank = diffcl_tensor_ndim(x) - 2;
            for (int i = 0; i < rank; i++) shp[i] = diffcl_tensor_dim(x, 2 + i);
            diffcl_tensor *m = NULL;
            ck_ok(diffcl_freq_mask(ctx, DIFFCL_F64, &o, rank, shp, &m));
            snprintf(key, sizeof key, "%s.%s.mask", tags[ti], CASES[c].name);
            e = test_rel_error(m, get(d, key));
            ck_assert_msg(e <= 1e-12, "%s: mask rel error %g", key, e);
            diffcl_tensor_free(m);
            diffcl_tensor_free(L);
            diffcl_tensor_free(yw);
            diffcl_tensor_free(y);
            diffcl_tensor_free(x);
        }
        diffcl_tensor_free(w);
    }
    diffcl_tensor_dict_free(d);
}

START_TEST(fixture_f32) { check_fixture(DIFFCL_F32, 1e-4); }
END_TEST

START_TEST(fixture_f64) { check_fixture(DIFFCL_F64, 1e-10); }
END_TEST

/* Mask value at integer frequency vector k on grid n (full spectrum, FFT order). */
static double mask_at(const diffcl_freq_options *o, int rank, const int64_t *n, const int64_t *k)
{
    diffcl_tensor *m = NULL;
    ck_ok(diffcl_freq_mask(ctx, DIFFCL_F64, o, rank, n, &m));
    int64_t idx[3];
    for (int i = 0; i < rank; i++) idx[i] = ((k[i] % n[i]) + n[i]) % n[i];
    double v = 0;
    ck_ok(diffcl_tensor_get(m, idx, &v));
    diffcl_tensor_free(m);
    return v;
}

/* A (co)sinusoid of integer frequency k is scaled by exactly M(k). */
static void check_sinusoids(diffcl_dtype dt, int rank, double tol)
{
    int64_t n2[2] = {12, 9}, n3[3] = {6, 8, 7};
    const int64_t *n = rank == 2 ? n2 : n3;
    /* frequency vectors: zero, low, mixed, negative, Nyquist on the even axis */
    int64_t ks[][3] = {{0, 0, 0}, {1, 0, 0}, {0, 1, 2}, {2, -3, 1}, {-1, 2, 3}, {3, 4, 0}, {6, 0, 0}};
    int nk = (int)(sizeof ks / sizeof ks[0]);
    int64_t shape[5] = {1, 2, n[0], n[1], rank == 3 ? n[2] : 0};
    int64_t total = 2 * n[0] * n[1] * (rank == 3 ? n[2] : 1);
    double *buf = malloc((size_t)total * sizeof *buf), *got = malloc((size_t)total * sizeof *got);
    for (int c = 0; c < N_CASES; c++) {
        diffcl_freq_options o = opts_of(&CASES[c]);
        for (int q = 0; q < nk; q++) {
            int64_t k[3] = {ks[q][0], ks[q][1], rank == 3 ? ks[q][2] : 0};
            double M = mask_at(&o, rank, n, k);
            /* channel 0: cos, channel 1: sin (phase-shifted) */
            int64_t i = 0;
            for (int ch = 0; ch < 2; ch++)
                for (int64_t a = 0; a < n[0]; a++)
                    for (int64_t b = 0; b < n[1]; b++)
                        for (int64_t e = 0; e < (rank == 3 ? n[2] : 1); e++) {
                            double ph = 2 * M_PI * ((double)(k[0] * a) / n[0] + (double)(k[1] * b) / n[1] +
                                                    (rank == 3 ? (double)(k[2] * e) / n[2] : 0));
                            buf[i++] = ch == 0 ? cos(ph) : cos(ph + 0.7);
                        }
            diffcl_tensor *x = NULL, *y = NULL;
            ck_ok(diffcl_tensor_new(ctx, DIFFCL_F64, rank + 2, shape, &x));
            ck_ok(diffcl_tensor_copy_from(x, buf, (size_t)total * sizeof *buf));
            diffcl_tensor *xd = as_dtype(x, dt);
            ck_ok(diffcl_freq_filter(xd, &o, &y));
            diffcl_tensor *y64 = as_dtype(y, DIFFCL_F64);
            ck_ok(diffcl_tensor_copy_to(y64, got, (size_t)total * sizeof *got));
            double md = 0;
            for (int64_t j = 0; j < total; j++) md = fmax(md, fabs(got[j] - M * buf[j]));
            ck_assert_msg(md <= tol, "%dD %s %s k=(%lld,%lld,%lld) M=%g: max deviation %g", rank,
                          CASES[c].name, diffcl_dtype_name(dt), (long long)k[0], (long long)k[1],
                          (long long)k[2], M, md);
            diffcl_tensor_free(y64);
            diffcl_tensor_free(y);
            diffcl_tensor_free(xd);
            diffcl_tensor_free(x);
        }
    }
    free(buf);
    free(got);
}

START_TEST(sinusoid_2d)
{
    check_sinusoids(DIFFCL_F64, 2, 1e-12);
    check_sinusoids(DIFFCL_F32, 2, 2e-6);
}
END_TEST

START_TEST(sinusoid_3d)
{
    check_sinusoids(DIFFCL_F64, 3, 1e-12);
    check_sinusoids(DIFFCL_F32, 3, 2e-6);
}
END_TEST

START_TEST(mask_values)
{
    /* the high-pass is 0 at DC, 1 - exp(-1/2) at r = sigma; band-pass 0 at DC */
    diffcl_freq_options o = DIFFCL_FREQ_OPTIONS_INIT;
    int64_t n[2] = {16, 16}, k0[2] = {0, 0}, k2[2] = {2, 0};
    ck_assert(fabs(mask_at(&o, 2, n, k0)) < 1e-15);
    /* nu = 2*2/16 = 0.25 = sigma */
    ck_assert(fabs(mask_at(&o, 2, n, k2) - (1 - exp(-0.5))) < 1e-14);
    o.band = DIFFCL_FREQ_BAND;
    ck_assert(fabs(mask_at(&o, 2, n, k0)) < 1e-15);
    o.band = DIFFCL_FREQ_LOW;
    ck_assert(fabs(mask_at(&o, 2, n, k0) - 1) < 1e-15);
}
END_TEST

typedef struct gc_user {
    diffcl_freq_options o;
} gc_user;

static diffcl_status f_filter(diffcl_tensor *const *in, int n, diffcl_tensor **out, void *user)
{
    (void)n;
    return diffcl_freq_filter(in[0], &((gc_user *)user)->o, out);
}

static diffcl_status f_split(diffcl_tensor *const *in, int n, diffcl_tensor **out, void *user)
{
    (void)n;
    diffcl_tensor *h = NULL, *l = NULL, *l2 = NULL;
    diffcl_status s = diffcl_freq_split(in[0], &((gc_user *)user)->o, &h, &l);
    if (s == DIFFCL_OK) s = diffcl_square(l, &l2); /* make the two parts enter differently */
    if (s == DIFFCL_OK) s = diffcl_add(h, l2, out);
    diffcl_tensor_free(h);
    diffcl_tensor_free(l);
    diffcl_tensor_free(l2);
    return s;
}

static void gradcheck_one(diffcl_gradcheck_fn fn, gc_user *u, int nd, const int64_t *shape)
{
    diffcl_tensor *x = test_randn(ctx, DIFFCL_F64, nd, shape, 77);
    ck_ok(diffcl_tensor_set_requires_grad(x, 1));
    diffcl_gradcheck_result r = {sizeof r, 0, 0, 0, 0, 0, 0};
    diffcl_status s = diffcl_gradcheck(fn, u, &x, 1, NULL, &r);
    ck_assert_msg(s == DIFFCL_OK, "gradcheck: %s (max abs %g, rel %g)", diffcl_last_error(),
                  r.max_abs_error, r.max_rel_error);
    ck_assert_int_gt(r.n_checked, 0);
    diffcl_tensor_free(x);
}

START_TEST(gradcheck_filters)
{
    int64_t s2[4] = {2, 2, 5, 6}, s3[5] = {1, 2, 3, 4, 5};
    for (int c = 0; c < N_CASES; c++) {
        gc_user u = {opts_of(&CASES[c])};
        gradcheck_one(f_filter, &u, 4, s2);
        gradcheck_one(f_filter, &u, 5, s3);
    }
    gc_user u = {DIFFCL_FREQ_OPTIONS_INIT};
    gradcheck_one(f_split, &u, 4, s2);
    gradcheck_one(f_split, &u, 5, s3);
    /* 2-D transforms over the last two axes of a 5-D tensor */
    u.o.spatial_dims = 2;
    gradcheck_one(f_filter, &u, 5, s3);
}
END_TEST

START_TEST(split_sums_to_input)
{
    int64_t shape[5] = {2, 3, 5, 8, 6};
    diffcl_tensor *x = test_randn(ctx, DIFFCL_F32, 5, shape, 5);
    diffcl_tensor *h = NULL, *l = NULL, *sum = NULL, *lp = NULL;
    diffcl_freq_options o = DIFFCL_FREQ_OPTIONS_INIT;
    ck_ok(diffcl_freq_split(x, &o, &h, &l));
    ck_ok(diffcl_add(h, l, &sum));
    ck_assert(test_rel_error(sum, x) <= 1e-6);
    /* low part == the low-pass filter of the same window */
    o.band = DIFFCL_FREQ_LOW;
    ck_ok(diffcl_freq_filter(x, &o, &lp));
    ck_assert_msg(test_rel_error(l, lp) <= 1e-5, "low %g", test_rel_error(l, lp));
    diffcl_tensor_free(lp);
    diffcl_tensor_free(sum);
    diffcl_tensor_free(h);
    diffcl_tensor_free(l);
    /* one of the outputs may be skipped */
    ck_ok(diffcl_freq_split(x, NULL, NULL, &l));
    ck_assert_ptr_nonnull(l);
    diffcl_tensor_free(l);
    ck_assert_int_eq(diffcl_freq_split(x, NULL, NULL, NULL), DIFFCL_ERR_INVALID_ARGUMENT);
    diffcl_tensor_free(x);
}
END_TEST

START_TEST(non_contiguous_input)
{
    int64_t shape[4] = {3, 2, 6, 10};
    diffcl_tensor *x = test_randn(ctx, DIFFCL_F32, 4, shape, 9), *xp = NULL, *xc = NULL;
    int perm[4] = {1, 0, 2, 3};
    ck_ok(diffcl_tensor_permute(x, perm, &xp));
    ck_ok(diffcl_tensor_contiguous(xp, &xc));
    diffcl_tensor *a = NULL, *b = NULL;
    ck_ok(diffcl_freq_filter(xp, NULL, &a));
    ck_ok(diffcl_freq_filter(xc, NULL, &b));
    ck_assert(test_rel_error(a, b) == 0);
    /* a view starting at an odd element offset (not FFTW-aligned) */
    diffcl_tensor *nx = NULL, *nc = NULL, *c1 = NULL, *c2 = NULL;
    ck_ok(diffcl_tensor_narrow(x, 0, 1, 2, &nx));
    ck_ok(diffcl_tensor_clone(nx, &nc));
    ck_ok(diffcl_freq_filter(nx, NULL, &c1));
    ck_ok(diffcl_freq_filter(nc, NULL, &c2));
    ck_assert(test_rel_error(c1, c2) == 0);
    diffcl_tensor *v = NULL, *vo = NULL, *vc = NULL, *vco = NULL;
    ck_ok(diffcl_tensor_narrow(x, 3, 1, 9, &v)); /* odd offset, strided */
    ck_ok(diffcl_tensor_clone(v, &vc));
    ck_ok(diffcl_freq_filter(v, NULL, &vo));
    ck_ok(diffcl_freq_filter(vc, NULL, &vco));
    ck_assert(test_rel_error(vo, vco) == 0);
    diffcl_tensor *tensors[] = {x, xp, xc, a, b, nx, nc, c1, c2, v, vo, vc, vco};
    for (size_t i = 0; i < sizeof tensors / sizeof tensors[0]; i++) diffcl_tensor_free(tensors[i]);
}
END_TEST

START_TEST(plan_cache)
{
    int n_plans = -1;
    int64_t hits = -1, misses = -1;
    ck_ok(diffcl_fft_cache_stats(ctx, &n_plans, &hits, &misses));
    ck_assert_int_eq(n_plans, 0);
    int64_t s1[4] = {2, 3, 8, 8}, s2[5] = {1, 3, 4, 8, 8};
    diffcl_tensor *x = test_randn(ctx, DIFFCL_F32, 4, s1, 1), *y = test_randn(ctx, DIFFCL_F32, 5, s2, 2);
    diffcl_tensor *o = NULL;
    for (int i = 0; i < 3; i++) {
        ck_ok(diffcl_freq_filter(x, NULL, &o));
        diffcl_tensor_free(o);
    }
    ck_ok(diffcl_fft_cache_stats(ctx, &n_plans, &hits, &misses));
    ck_assert_int_eq(n_plans, 1);
    ck_assert_int_eq(misses, 1);
    ck_assert_int_eq(hits, 2);
    ck_ok(diffcl_freq_filter(y, NULL, &o));
    diffcl_tensor_free(o);
    ck_ok(diffcl_fft_cache_stats(ctx, &n_plans, NULL, NULL));
    ck_assert_int_eq(n_plans, 2);
    /* the thread count is part of the plan */
    ck_ok(diffcl_context_set_threads(ctx, 2));
    ck_ok(diffcl_freq_filter(x, NULL, &o));
    diffcl_tensor_free(o);
    ck_ok(diffcl_fft_cache_stats(ctx, &n_plans, NULL, NULL));
    ck_assert_int_ge(n_plans, 2); /* 3 when FFTW threads are built in */
    ck_ok(diffcl_fft_cache_clear(ctx));
    ck_ok(diffcl_fft_cache_stats(ctx, &n_plans, NULL, NULL));
    ck_assert_int_eq(n_plans, 0);
    /* rigor change empties the cache; MEASURE plans give the same result to rounding */
    diffcl_tensor *ref = NULL, *meas = NULL;
    ck_ok(diffcl_freq_filter(x, NULL, &ref));
    ck_ok(diffcl_fft_set_rigor(ctx, DIFFCL_FFT_MEASURE));
    ck_ok(diffcl_fft_cache_stats(ctx, &n_plans, NULL, NULL));
    ck_assert_int_eq(n_plans, 0);
    ck_ok(diffcl_freq_filter(x, NULL, &meas));
    ck_assert(test_rel_error(meas, ref) <= 1e-6);
    ck_assert_int_eq(diffcl_fft_set_rigor(ctx, (diffcl_fft_rigor)7), DIFFCL_ERR_INVALID_ARGUMENT);
    diffcl_tensor_free(ref);
    diffcl_tensor_free(meas);
    diffcl_tensor_free(x);
    diffcl_tensor_free(y);
}
END_TEST

START_TEST(reproducible)
{
    int64_t s[5] = {2, 4, 6, 10, 8};
    diffcl_tensor *x = test_randn(ctx, DIFFCL_F32, 5, s, 3), *a = NULL, *b = NULL;
    ck_ok(diffcl_freq_filter(x, NULL, &a));
    ck_ok(diffcl_fft_cache_clear(ctx));
    ck_ok(diffcl_freq_filter(x, NULL, &b));
    ck_assert(test_rel_error(a, b) == 0); /* ESTIMATE: same plan, bit-identical */
    diffcl_tensor_free(a);
    diffcl_tensor_free(b);
    diffcl_tensor_free(x);
}
END_TEST

/* Several threads, each with its own context, planning and filtering at once. */
typedef struct worker {
    int id;
    double err;
    int failed;
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    diffcl_context_options o = DIFFCL_CONTEXT_OPTIONS_INIT;
    o.n_threads = 1 + w->id % 2;
    o.log_level = DIFFCL_LOG_WARN;
    diffcl_context *c = NULL;
    if (diffcl_context_create(&o, &c) != DIFFCL_OK) {
        w->failed = 1;
        return NULL;
    }
    for (int it = 0; it < 12 && !w->failed; it++) {
        int64_t shape[4] = {1, 2, 6 + (it + w->id) % 5, 4 + 2 * (it % 3)};
        int64_t total = 2 * shape[2] * shape[3];
        diffcl_tensor *x = NULL, *y = NULL;
        if (diffcl_tensor_new(c, DIFFCL_F64, 4, shape, &x) != DIFFCL_OK) { w->failed = 1; break; }
        /* a single cosine along W with k = 1: known answer M(k) x */
        double *buf = malloc((size_t)total * sizeof *buf);
        for (int64_t i = 0; i < total; i++)
            buf[i] = cos(2 * M_PI * (double)(i % shape[3]) / (double)shape[3]);
        diffcl_tensor_copy_from(x, buf, (size_t)total * sizeof *buf);
        diffcl_freq_options fo = DIFFCL_FREQ_OPTIONS_INIT;
        diffcl_tensor *xf = NULL;
        diffcl_tensor_to_dtype(x, it % 2 ? DIFFCL_F32 : DIFFCL_F64, &xf);
        if (diffcl_freq_filter(xf, &fo, &y) != DIFFCL_OK) w->failed = 1;
        else {
            diffcl_tensor *y64 = NULL;
            diffcl_tensor_to_dtype(y, DIFFCL_F64, &y64);
            double *got = malloc((size_t)total * sizeof *got);
            diffcl_tensor_copy_to(y64, got, (size_t)total * sizeof *got);
            double nu = 2.0 / (double)shape[3];
            double M = 1 - exp(-nu * nu / (2 * 0.25 * 0.25));
            for (int64_t i = 0; i < total; i++) w->err = fmax(w->err, fabs(got[i] - M * buf[i]));
            free(got);
            diffcl_tensor_free(y64);
        }
        free(buf);
        diffcl_tensor_free(y);
        diffcl_tensor_free(xf);
        diffcl_tensor_free(x);
        if (it % 4 == 3) diffcl_fft_cache_clear(c); /* destroy plans while others plan */
    }
    diffcl_context_free(c);
    return NULL;
}

START_TEST(concurrent_contexts)
{
    enum { NT = 6 };
    pthread_t th[NT];
    worker w[NT];
    for (int i = 0; i < NT; i++) {
        w[i].id = i;
        w[i].err = 0;
        w[i].failed = 0;
        ck_assert_int_eq(pthread_create(&th[i], NULL, work, &w[i]), 0);
    }
    for (int i = 0; i < NT; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < NT; i++) {
        ck_assert_msg(!w[i].failed, "worker %d failed: %s", i, diffcl_last_error());
        ck_assert_msg(w[i].err < 2e-6, "worker %d: error %g", i, w[i].err);
    }
}
END_TEST

START_TEST(wisdom)
{
    /* plan something with MEASURE so there is wisdom to export */
    ck_ok(diffcl_fft_set_rigor(ctx, DIFFCL_FFT_MEASURE));
    int64_t s[4] = {1, 1, 16, 16};
    diffcl_tensor *x = test_randn(ctx, DIFFCL_F32, 4, s, 4), *y = NULL;
    ck_ok(diffcl_freq_filter(x, NULL, &y));
    char *w = NULL;
    ck_ok(diffcl_fft_wisdom_export_string(&w));
    ck_assert_ptr_nonnull(w);
    ck_assert(strstr(w, "fftw") != NULL);
    diffcl_fft_wisdom_forget();
    ck_ok(diffcl_fft_wisdom_import_string(w));
    diffcl_fft_wisdom_string_free(w);

    char path[256];
    snprintf(path, sizeof path, "%s/diffcl_wisdom_%ld.txt",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (long)getpid());
    ck_ok(diffcl_fft_wisdom_export(path));
    ck_ok(diffcl_fft_wisdom_import(path));
    FILE *f = fopen(path, "w");
    fputs("this is not wisdom", f);
    fclose(f);
    ck_assert_int_eq(diffcl_fft_wisdom_import(path), DIFFCL_ERR_FORMAT);
    remove(path);
    ck_assert_int_eq(diffcl_fft_wisdom_import(path), DIFFCL_ERR_IO);
    ck_assert_int_eq(diffcl_fft_wisdom_import_string("(garbage"), DIFFCL_ERR_FORMAT);
    ck_assert_int_eq(diffcl_fft_wisdom_export("/nonexistent-dir/x/wisdom"), DIFFCL_ERR_IO);
    diffcl_tensor_free(y);
    diffcl_tensor_free(x);
}
END_TEST

START_TEST(bad_inputs)
{
    diffcl_tensor *y = NULL;
    int64_t s3[3] = {2, 4, 4}, s2[2] = {4, 4}, s4[4] = {1, 1, 4, 4};
    diffcl_tensor *x2 = test_randn(ctx, DIFFCL_F32, 2, s2, 1);
    ck_assert_int_eq(diffcl_freq_filter(x2, NULL, &y), DIFFCL_ERR_SHAPE);
    ck_assert(strstr(diffcl_last_error(), "diffcl_freq_filter") != NULL);
    diffcl_tensor *x3 = test_randn(ctx, DIFFCL_F32, 3, s3, 1);
    ck_assert_int_eq(diffcl_freq_filter(x3, NULL, &y), DIFFCL_ERR_SHAPE);
    diffcl_freq_options o = DIFFCL_FREQ_OPTIONS_INIT;
    o.spatial_dims = 2; /* [B, H, W] with spatial_dims 2 is fine */
    ck_ok(diffcl_freq_filter(x3, &o, &y));
    diffcl_tensor_free(y);
    diffcl_tensor *u8 = NULL;
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_U8, 4, s4, &u8));
    ck_assert_int_eq(diffcl_freq_filter(u8, NULL, &y), DIFFCL_ERR_DTYPE);
    diffcl_tensor *x4 = test_randn(ctx, DIFFCL_F32, 4, s4, 1);
    o = (diffcl_freq_options)DIFFCL_FREQ_OPTIONS_INIT;
    o.cutoff = 0;
    ck_assert_int_eq(diffcl_freq_filter(x4, &o, &y), DIFFCL_ERR_INVALID_ARGUMENT);
    o.cutoff = 0.4;
    o.band = DIFFCL_FREQ_BAND;
    o.cutoff_high = 0.3;
    ck_assert_int_eq(diffcl_freq_filter(x4, &o, &y), DIFFCL_ERR_INVALID_ARGUMENT);
    o = (diffcl_freq_options)DIFFCL_FREQ_OPTIONS_INIT;
    o.window = (diffcl_freq_window)9;
    ck_assert_int_eq(diffcl_freq_filter(x4, &o, &y), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(diffcl_freq_filter(NULL, NULL, &y), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(diffcl_freq_filter(x4, NULL, NULL), DIFFCL_ERR_INVALID_ARGUMENT);
    int64_t bad[2] = {0, 4};
    ck_assert_int_eq(diffcl_freq_mask(ctx, DIFFCL_F32, NULL, 2, bad, &y), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(diffcl_freq_mask(ctx, DIFFCL_F32, NULL, 4, s4, &y), DIFFCL_ERR_INVALID_ARGUMENT);
    /* a NaN input gives NaN out, not a crash */
    double nanv = NAN;
    int64_t idx[4] = {0, 0, 1, 1};
    ck_ok(diffcl_tensor_set(x4, idx, nanv));
    ck_ok(diffcl_freq_filter(x4, NULL, &y));
    double v = 0;
    ck_ok(diffcl_tensor_get(y, idx, &v));
    ck_assert(isnan(v));
    diffcl_tensor_free(y);
    diffcl_tensor_free(x2);
    diffcl_tensor_free(x3);
    diffcl_tensor_free(x4);
    diffcl_tensor_free(u8);
}
END_TEST

START_TEST(no_grad_scope)
{
    int64_t s[4] = {1, 2, 4, 4};
    diffcl_tensor *x = test_randn(ctx, DIFFCL_F32, 4, s, 1), *y = NULL;
    ck_ok(diffcl_tensor_set_requires_grad(x, 1));
    int prev = diffcl_set_grad_enabled(ctx, 0);
    ck_ok(diffcl_freq_filter(x, NULL, &y));
    ck_assert_int_eq(diffcl_tensor_requires_grad(y), 0);
    diffcl_set_grad_enabled(ctx, prev);
    diffcl_tensor_free(y);
    diffcl_tensor_free(x);
}
END_TEST

static Suite *fft_suite(void)
{
    Suite *s = suite_create("fft");
    TCase *tc = tcase_create("fft");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, fixture_f32);
    tcase_add_test(tc, fixture_f64);
    tcase_add_test(tc, sinusoid_2d);
    tcase_add_test(tc, sinusoid_3d);
    tcase_add_test(tc, mask_values);
    tcase_add_test(tc, gradcheck_filters);
    tcase_add_test(tc, split_sums_to_input);
    tcase_add_test(tc, non_contiguous_input);
    tcase_add_test(tc, plan_cache);
    tcase_add_test(tc, reproducible);
    tcase_add_test(tc, concurrent_contexts);
    tcase_add_test(tc, wisdom);
    tcase_add_test(tc, bad_inputs);
    tcase_add_test(tc, no_grad_scope);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return test_run_suite(fft_suite()); }
