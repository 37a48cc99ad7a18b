/* Convolution benchmark: the V-Net's convolution shapes at batch 2, 112x112x80.
 *
 * For every shape: median wall time of the forward (no grad), the input gradient and the
 * weight gradient (each a diffcl_backward with only that input requiring grad), the
 * effective GFLOP/s (2*Cin*Cout*k^3*voxels, voxels = output voxels of a convolution, input
 * voxels of a transposed one) and the ratio to a cblas_sgemm 2048^3 measured in the same run.
 * With --torch FILE (written by `bench/torch_conv.py --out FILE`) it adds the speed-up over
 * PyTorch per column (>1: we are faster). "seed" is the time diffcl_backward spends copying
 * the given output gradient into its seed before the convolution's backward runs: it is
 * included in dX and dW (torch_conv.py calls convolution_backward, which has no such copy).
 *
 *   bench_conv [--reps N] [--threads T] [--only TAG,...] [--torch FILE] [--cpu] [--min]
 *
 * --cpu times with the process CPU clock instead of the wall clock; --min reports the
 * fastest of the runs instead of the median (both for a machine shared with other work;
 * torch_conv.py has the same flags).
 *
 * Built on the public API (plus cblas for the peak); links the shared library.
 */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "diffcl/diffcl.h"

typedef struct shape {
    const char *tag;
    int ci, co;
    int64_t sp[3];
    int k, s, p, transposed;
} shape;

/* same table as bench/torch_conv.py (no bias in either) */
static const shape SHAPES[] = {
    {"in1", 1, 16, {112, 112, 80}, 3, 1, 1, 0},
    {"c16", 16, 16, {112, 112, 80}, 3, 1, 1, 0},
    {"dn16", 16, 32, {112, 112, 80}, 2, 2, 0, 0},
    {"c32", 32, 32, {56, 56, 40}, 3, 1, 1, 0},
    {"dn32", 32, 64, {56, 56, 40}, 2, 2, 0, 0},
    {"c64", 64, 64, {28, 28, 20}, 3, 1, 1, 0},
    {"dn64", 64, 128, {28, 28, 20}, 2, 2, 0, 0},
    {"c128", 128, 128, {14, 14, 10}, 3, 1, 1, 0},
    {"dn128", 128, 256, {14, 14, 10}, 2, 2, 0, 0},
    {"c256", 256, 256, {7, 7, 5}, 3, 1, 1, 0},
    {"up256", 256, 128, {7, 7, 5}, 2, 2, 0, 1},
    {"up128", 128, 64, {14, 14, 10}, 2, 2, 0, 1},
    {"up64", 64, 32, {28, 28, 20}, 2, 2, 0, 1},
    {"up32", 32, 16, {56, 56, 40}, 2, 2, 0, 1},
    {"out16", 16, 2, {112, 112, 80}, 1, 1, 0, 0},
};
#define N_SHAPES ((int)(sizeof SHAPES / sizeof SHAPES[0]))
#define BATCH 2

static clockid_t g_clock = CLOCK_MONOTONIC;

/* wall time, or with --cpu the process's CPU time (all threads): steadier on a shared box */
static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(g_clock, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int g_min = 0; /* --min: report the fastest run instead of the median */

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    if (g_min) return v[0];
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

#define CHECK(expr)                                                                       \
    do {                                                                                  \
        diffcl_status s_ = (expr);                                                        \
        if (s_ != DIFFCL_OK) {                                                            \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #expr, diffcl_last_error()); \
            exit(1);                                                                      \
        }                                                                                 \
    } while (0)

static diffcl_status run(const shape *sh, const diffcl_conv_geometry *g, diffcl_tensor *x,
                         diffcl_tensor *w, diffcl_tensor **y)
{
    return sh->transposed ? diffcl_conv_transpose(x, w, NULL, g, y) : diffcl_conv(x, w, NULL, g, y);
}

/* torch reference times, by tag */
typedef struct tref {
    char tag[32];
    double ms[3];
} tref;

static int load_torch(const char *path, tref *out, int max)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        exit(1);
    }
    int n = 0;
    while (n < max && fscanf(f, "%31s %lf %lf %lf", out[n].tag, &out[n].ms[0], &out[n].ms[1],
                             &out[n].ms[2]) == 4)
        n++;
    fclose(f);
    return n;
}

static double sgemm_peak(int reps)
{
    const int n = 2048;
    float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n),
          *c = malloc(sizeof(float) * n * n);
    for (int i = 0; i < n * n; i++) {
        a[i] = (float)((i * 7) % 13) * 0.1f;
        b[i] = (float)((i * 3) % 11) * 0.1f;
    }
    double t[16];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
    for (int r = 0; r < reps; r++) {
        double t0 = now_ms();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
        t[r] = now_ms() - t0;
    }
    free(a);
    free(b);
    free(c);
    return 2.0 * n * n * (double)n / (median(t, reps) * 1e-3) / 1e9;
}

int main(int argc, char **argv)
{
    int reps = 5, threads = 2;
    const char *only = NULL, *torch = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--torch") && i + 1 < argc) torch = argv[++i];
        else if (!strcmp(argv[i], "--cpu")) g_clock = CLOCK_PROCESS_CPUTIME_ID;
        else if (!strcmp(argv[i], "--min")) g_min = 1;
        else {
            fprintf(stderr, "usage: %s [--reps N] [--threads T] [--only TAG,...] [--torch FILE] [--cpu] [--min]\n",
                    argv[0]);
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    if (reps > 15) reps = 15;
    tref tr[64];
    int ntr = torch ? load_torch(torch, tr, 64) : 0;

    diffcl_context_options o = DIFFCL_CONTEXT_OPTIONS_INIT;
    o.n_threads = threads;
    diffcl_context *ctx = NULL;
    CHECK(diffcl_context_create(&o, &ctx));
    const double peak = sgemm_peak(3);
    printf("libdiffcl %s, threads %d, %s clock, %s of %d, %s (parallel mode %d)\n",
           diffcl_version_string(), diffcl_context_threads(ctx),
           g_clock == CLOCK_MONOTONIC ? "wall" : "cpu", g_min ? "min" : "median", reps,
           openblas_get_config(), openblas_get_parallel());
    printf("sgemm 2048^3: %.1f GFLOP/s (same run)\n", peak);
    printf("%-20s %9s %6s %9s %6s %9s %6s %6s  %5s%s\n", "shape", "fwd ms", "GF/s", "dX ms", "GF/s",
           "dW ms", "GF/s", "seed", "%peak", torch ? "   torch/ours fwd    dX    dW" : "");
    double tot[3] = {0, 0, 0}, ttot[3] = {0, 0, 0};
    for (int si = 0; si < N_SHAPES; si++) {
        const shape *sh = &SHAPES[si];
        if (only) {
            char pat[40];
            snprintf(pat, sizeof pat, ",%s,", sh->tag);
            char list[512];
            snprintf(list, sizeof list, ",%s,", only);
            if (!strstr(list, pat)) continue;
        }
        diffcl_conv_geometry g = diffcl_conv_geometry_make(3, sh->k, sh->s, sh->p);
        int64_t xs[5] = {BATCH, sh->ci, sh->sp[0], sh->sp[1], sh->sp[2]};
        int64_t ws[5] = {sh->transposed ? sh->ci : sh->co, sh->transposed ? sh->co : sh->ci,
                         sh->k, sh->k, sh->k};
        diffcl_tensor *x = NULL, *w = NULL, *y = NULL, *gy = NULL;
        CHECK(diffcl_tensor_new(ctx, DIFFCL_F32, 5, xs, &x));
        CHECK(diffcl_tensor_new(ctx, DIFFCL_F32, 5, ws, &w));
        CHECK(diffcl_tensor_fill_normal(x, diffcl_rng_key_make(1, 1, si, 0), 0, 1));
        CHECK(diffcl_tensor_fill_normal(w, diffcl_rng_key_make(1, 2, si, 0), 0, 0.05));
        int prev = diffcl_set_grad_enabled(ctx, 0);
        CHECK(run(sh, &g, x, w, &y));
        diffcl_set_grad_enabled(ctx, prev);
        int64_t ys[5];
        diffcl_tensor_shape(y, ys);
        CHECK(diffcl_tensor_new(ctx, DIFFCL_F32, 5, ys, &gy));
        CHECK(diffcl_tensor_fill_normal(gy, diffcl_rng_key_make(1, 3, si, 0), 0, 1));
        const int64_t vox = sh->transposed ? BATCH * sh->sp[0] * sh->sp[1] * sh->sp[2]
                                           : diffcl_tensor_numel(y) / sh->co;
        const double flop = 2.0 * sh->ci * sh->co * sh->k * sh->k * sh->k * (double)vox;
        diffcl_tensor_free(y);
        y = NULL;

        double ms[3], t[16];
        /* forward, no grad */
        prev = diffcl_set_grad_enabled(ctx, 0);
        for (int r = -1; r < reps; r++) {
            double t0 = now_ms();
            CHECK(run(sh, &g, x, w, &y));
            diffcl_tensor_free(y);
            if (r >= 0) t[r] = now_ms() - t0;
        }
        diffcl_set_grad_enabled(ctx, prev);
        ms[0] = median(t, reps);
        /* input gradient, then weight gradient: backward only */
        for (int which = 0; which < 2; which++) {
            diffcl_tensor *leaf = which ? w : x;
            CHECK(diffcl_tensor_set_requires_grad(leaf, 1));
            for (int r = -1; r < reps; r++) {
                CHECK(run(sh, &g, x, w, &y));
                double t0 = now_ms();
                CHECK(diffcl_backward(y, gy));
                if (r >= 0) t[r] = now_ms() - t0;
                diffcl_tensor_free(y);
                diffcl_tensor_zero_grad(leaf);
            }
            CHECK(diffcl_tensor_set_requires_grad(leaf, 0));
            ms[1 + which] = median(t, reps);
        }
        /* diffcl_backward(y, gy) first copies gy into its seed: time that copy alone, it is
         * part of the dX and dW columns (torch's convolution_backward has no such copy) */
        double seed_ms;
        for (int r = -1; r < reps; r++) {
            diffcl_tensor *cp = NULL;
            double t0 = now_ms();
            CHECK(diffcl_tensor_clone(gy, &cp));
            if (r >= 0) t[r] = now_ms() - t0;
            diffcl_tensor_free(cp);
        }
        seed_ms = median(t, reps);
        char desc[40];
        snprintf(desc, sizeof desc, "%s %d->%d %c%ds%d", sh->tag, sh->ci, sh->co,
                 sh->transposed ? 'T' : 'k', sh->k, sh->s);
        double gf[3];
        for (int c = 0; c < 3; c++) {
            gf[c] = flop / (ms[c] * 1e-3) / 1e9;
            tot[c] += ms[c];
        }
        printf("%-20s %9.2f %6.1f %9.2f %6.1f %9.2f %6.1f %6.2f  %5.0f", desc, ms[0], gf[0], ms[1],
               gf[1], ms[2], gf[2], seed_ms, 100.0 * gf[0] / peak);
        for (int i = 0; i < ntr; i++)
            if (!strcmp(tr[i].tag, sh->tag)) {
                printf("   %13.2f %5.2f %5.2f", tr[i].ms[0] / ms[0], tr[i].ms[1] / ms[1],
                       tr[i].ms[2] / ms[2]);
                for (int c = 0; c < 3; c++) ttot[c] += tr[i].ms[c];
            }
        printf("\n");
        fflush(stdout);
        diffcl_tensor_free(x);
        diffcl_tensor_free(w);
        diffcl_tensor_free(gy);
    }
    printf("%-20s %9.2f %6s %9.2f %6s %9.2f", "total", tot[0], "", tot[1], "", tot[2]);
    if (ntr && ttot[0] > 0)
        printf(" %6s %6s %5s   %13.2f %5.2f %5.2f", "", "", "", ttot[0] / tot[0], ttot[1] / tot[1],
               ttot[2] / tot[2]);
    printf("\n");
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("peak RSS %.0f MB, context peak %.0f MB\n", ru.ru_maxrss / 1024.0,
           diffcl_context_peak_bytes(ctx) / 1048576.0);
    diffcl_context_free(ctx);
    return 0;
}
