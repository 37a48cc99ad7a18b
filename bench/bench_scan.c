/* Benchmark: the selective scan (forward, forward+backward) and the FFT frequency split,
 * with PyTorch (bench/torch_scan.py: mamba_ssm's selective_scan_ref in torch, and torch.fft)
 * run in the same invocation on the same machine and thread count.
 *
 *   bench_scan [--threads N] [--reps N] [--quick] [--no-torch] [--python PATH]
 *
 * Scan: B=2, D=128, N=16, L = 14*14*10*8 = 15680 and 14*14*10 = 1960 (the V-Net's level 3
 * and bottleneck token counts); tokens/s counts B*L tokens per pass; ns/(token*channel)
 * shows the cost growing linearly in L. Split: a 2x64x28x28x20 F32 tensor, forward
 * (high + low) and backward. Times are medians; peak memory is the context's peak bytes.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "diffcl/diffcl.h"
#include "diffcl/fft.h"
#include "diffcl/mamba.h"
#include "diffcl/scan.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

#define CHECK(expr)                                                                       \
    do {                                                                                  \
        diffcl_status s_ = (expr);                                                        \
        if (s_ != DIFFCL_OK) {                                                            \
            fprintf(stderr, "%s: %s (%s)\n", #expr, diffcl_status_string(s_), diffcl_last_error()); \
            exit(1);                                                                      \
        }                                                                                 \
    } while (0)

static diffcl_tensor *randn(diffcl_context *ctx, int nd, const int64_t *shape, uint64_t seed,
                            double mean, double sd)
{
    diffcl_tensor *t = NULL;
    CHECK(diffcl_tensor_new(ctx, DIFFCL_F32, nd, shape, &t));
    CHECK(diffcl_tensor_fill_normal(t, diffcl_rng_key_make(seed, 1, 0, 0), mean, sd));
    return t;
}

typedef struct scan_result {
    int64_t L;
    double fwd_ms, fwdbwd_ms;
    size_t peak;
} scan_result;

static scan_result bench_scan(diffcl_context *ctx, int64_t L, int reps)
{
    const int64_t B = 2, D = 128, N = 16;
    int64_t sBDL[3] = {B, D, L}, sDN[2] = {D, N}, sBNL[3] = {B, N, L}, sD[1] = {D};
    diffcl_tensor *u = randn(ctx, 3, sBDL, 1, 0, 1), *dl = randn(ctx, 3, sBDL, 2, -2, 1);
    diffcl_tensor *A = randn(ctx, 2, sDN, 3, -1, 0.3), *Bm = randn(ctx, 3, sBNL, 4, 0, 1);
    diffcl_tensor *Cm = randn(ctx, 3, sBNL, 5, 0, 1), *Dv = randn(ctx, 1, sD, 6, 1, 0.1);
    diffcl_tensor *z = randn(ctx, 3, sBDL, 7, 0, 1), *bias = randn(ctx, 1, sD, 8, 0, 0.1);
    diffcl_tensor *all[8] = {u, dl, A, Bm, Cm, Dv, z, bias};
    diffcl_scan_options o = DIFFCL_SCAN_OPTIONS_INIT;
    o.delta_softplus = 1;
    double *tf = malloc((size_t)reps * sizeof *tf), *tb = malloc((size_t)reps * sizeof *tb);
    scan_result r = {L, 0, 0, 0};
    /* forward only (no grad) */
    int prev = diffcl_set_grad_enabled(ctx, 0);
    for (int i = -1; i < reps; i++) {
        diffcl_tensor *y = NULL;
        double t0 = now_s();
        CHECK(diffcl_selective_scan(u, dl, A, Bm, Cm, Dv, z, bias, &o, &y));
        if (i >= 0) tf[i] = (now_s() - t0) * 1e3;
        diffcl_tensor_free(y);
    }
    diffcl_set_grad_enabled(ctx, prev);
    /* forward + backward, gradients for all eight inputs */
    for (int k = 0; k < 8; k++) CHECK(diffcl_tensor_set_requires_grad(all[k], 1));
    size_t base = diffcl_context_bytes_in_use(ctx);
    size_t peak = 0;
    for (int i = -1; i < reps; i++) {
        diffcl_tensor *y = NULL, *L1 = NULL;
        for (int k = 0; k < 8; k++) diffcl_tensor_zero_grad(all[k]);
        size_t p0 = diffcl_context_peak_bytes(ctx);
        (void)p0;
        double t0 = now_s();
        CHECK(diffcl_selective_scan(u, dl, A, Bm, Cm, Dv, z, bias, &o, &y));
        CHECK(diffcl_sum_all(y, &L1));
        CHECK(diffcl_backward(L1, NULL));
        if (i >= 0) tb[i] = (now_s() - t0) * 1e3;
        diffcl_tensor_free(L1);
        diffcl_tensor_free(y);
        size_t pk = diffcl_context_peak_bytes(ctx);
        if (pk > peak) peak = pk;
    }
    r.fwd_ms = median(tf, reps);
    r.fwdbwd_ms = median(tb, reps);
    r.peak = peak > base ? peak - base : 0;
    for (int k = 0; k < 8; k++) diffcl_tensor_free(all[k]);
    free(tf);
    free(tb);
    return r;
}

typedef struct fft_result {
    double fwd_ms, fwdbwd_ms;
} fft_result;

static fft_result bench_fft(diffcl_context *ctx, int reps)
{
    int64_t shape[5] = {2, 64, 28, 28, 20};
    diffcl_tensor *x = randn(ctx, 5, shape, 9, 0, 1);
    double *tf = malloc((size_t)reps * sizeof *tf), *tb = malloc((size_t)reps * sizeof *tb);
    int prev = diffcl_set_grad_enabled(ctx, 0);
    for (int i = -1; i < reps; i++) {
        diffcl_tensor *h = NULL, *l = NULL;
        double t0 = now_s();
        CHECK(diffcl_freq_split(x, NULL, &h, &l));
        if (i >= 0) tf[i] = (now_s() - t0) * 1e3;
        diffcl_tensor_free(h);
        diffcl_tensor_free(l);
    }
    diffcl_set_grad_enabled(ctx, prev);
    CHECK(diffcl_tensor_set_requires_grad(x, 1));
    for (int i = -1; i < reps; i++) {
        diffcl_tensor *h = NULL, *L1 = NULL;
        diffcl_tensor_zero_grad(x);
        double t0 = now_s();
        CHECK(diffcl_freq_filter(x, NULL, &h));
        CHECK(diffcl_sum_all(h, &L1));
        CHECK(diffcl_backward(L1, NULL));
        if (i >= 0) tb[i] = (now_s() - t0) * 1e3;
        diffcl_tensor_free(L1);
        diffcl_tensor_free(h);
    }
    fft_result r = {median(tf, reps), median(tb, reps)};
    diffcl_tensor_free(x);
    free(tf);
    free(tb);
    return r;
}

/* The whole HF-Mamba module at the V-Net's level 3 (64 channels, 28x28x20 at 112x112x80). */
static fft_result bench_hfm(diffcl_context *ctx, int reps)
{
    diffcl_hf_mamba_options o = DIFFCL_HF_MAMBA_OPTIONS_INIT;
    o.channels = 64;
    o.init_key = diffcl_rng_key_make(1, 2, 3, 0);
    diffcl_module *m = NULL;
    CHECK(diffcl_hf_mamba_create(ctx, &o, &m));
    int64_t shape[5] = {2, 64, 28, 28, 20};
    diffcl_tensor *x = randn(ctx, 5, shape, 10, 0, 1);
    double *tf = malloc((size_t)reps * sizeof *tf), *tb = malloc((size_t)reps * sizeof *tb);
    int prev = diffcl_set_grad_enabled(ctx, 0);
    for (int i = -1; i < reps; i++) {
        diffcl_tensor *y = NULL;
        double t0 = now_s();
        CHECK(diffcl_module_forward(m, x, &y));
        if (i >= 0) tf[i] = (now_s() - t0) * 1e3;
        diffcl_tensor_free(y);
    }
    diffcl_set_grad_enabled(ctx, prev);
    CHECK(diffcl_tensor_set_requires_grad(x, 1));
    for (int i = -1; i < reps; i++) {
        diffcl_tensor *y = NULL, *L1 = NULL;
        diffcl_module_zero_grad(m);
        diffcl_tensor_zero_grad(x);
        double t0 = now_s();
        CHECK(diffcl_module_forward(m, x, &y));
        CHECK(diffcl_sum_all(y, &L1));
        CHECK(diffcl_backward(L1, NULL));
        if (i >= 0) tb[i] = (now_s() - t0) * 1e3;
        diffcl_tensor_free(L1);
        diffcl_tensor_free(y);
    }
    fft_result r = {median(tf, reps), median(tb, reps)};
    diffcl_tensor_free(x);
    diffcl_module_free(m);
    free(tf);
    free(tb);
    return r;
}

/* Torch numbers by key ("scan_fwd_1960" ...), from torch_scan.py's "key value" lines. */
typedef struct kv {
    char key[64];
    double v;
} kv;
static kv TORCH[32];
static int n_torch;

static double torch_get(const char *key)
{
    for (int i = 0; i < n_torch; i++)
        if (!strcmp(TORCH[i].key, key)) return TORCH[i].v;
    return NAN;
}

static void run_torch(const char *python, const char *script, int threads, int reps, int quick)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s %s --threads %d --reps %d%s", python, script, threads, reps,
             quick ? " --quick" : "");
    FILE *p = popen(cmd, "r");
    if (!p) return;
    char line[256];
    while (fgets(line, sizeof line, p)) {
        char k[64];
        double v;
        if (sscanf(line, "RESULT %63s %lf", k, &v) == 2 && n_torch < 32) {
            snprintf(TORCH[n_torch].key, sizeof TORCH[n_torch].key, "%s", k);
            TORCH[n_torch++].v = v;
        } else {
            fputs(line, stdout);
        }
    }
    pclose(p);
}

int main(int argc, char **argv)
{
    int threads = 2, reps = 5, quick = 0, torch = 1;
    const char *python = "/usr/bin/python3";
    char script[1024];
    snprintf(script, sizeof script, "%s/torch_scan.py",
             getenv("DIFFCL_BENCH_DIR") ? getenv("DIFFCL_BENCH_DIR") : BENCH_SOURCE_DIR);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--python") && i + 1 < argc) python = argv[++i];
        else if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--no-torch")) torch = 0;
        else {
            fprintf(stderr, "usage: %s [--threads N] [--reps N] [--quick] [--no-torch] [--python PATH]\n",
                    argv[0]);
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    diffcl_context_options co = DIFFCL_CONTEXT_OPTIONS_INIT;
    co.n_threads = threads;
    diffcl_context *ctx = NULL;
    CHECK(diffcl_context_create(&co, &ctx));
    printf("libdiffcl %s, threads %d, reps %d (medians)\n", diffcl_version_string(),
           diffcl_context_threads(ctx), reps);

    int64_t Ls[2] = {14 * 14 * 10, 14 * 14 * 10 * 8};
    int nL = quick ? 1 : 2;
    scan_result sr[2];
    for (int i = 0; i < nL; i++) sr[i] = bench_scan(ctx, Ls[i], reps);
    fft_result fr = bench_fft(ctx, reps);
    fft_result hr = bench_hfm(ctx, reps);
    if (torch) run_torch(python, script, threads, quick ? 1 : (reps < 3 ? reps : 3), quick);

    printf("\nselective scan, B=2 D=128 N=16 (z, D, delta_bias, softplus; grads of all inputs)\n");
    printf("%-8s %-10s %10s %12s %14s %12s %12s\n", "L", "impl", "fwd ms", "fwd+bwd ms",
           "fwd+bwd tok/s", "ns/(tok*ch)", "peak MiB");
    for (int i = 0; i < nL; i++) {
        double tok = 2.0 * (double)sr[i].L;
        printf("%-8lld %-10s %10.2f %12.2f %14.0f %12.2f %12.1f\n", (long long)sr[i].L, "diffcl",
               sr[i].fwd_ms, sr[i].fwdbwd_ms, tok / (sr[i].fwdbwd_ms * 1e-3),
               sr[i].fwdbwd_ms * 1e6 / (tok * 128), (double)sr[i].peak / (1 << 20));
        char k1[64], k2[64];
        snprintf(k1, sizeof k1, "scan_fwd_%lld", (long long)sr[i].L);
        snprintf(k2, sizeof k2, "scan_fwdbwd_%lld", (long long)sr[i].L);
        double tf = torch_get(k1), tb = torch_get(k2);
        if (!isnan(tb)) {
            printf("%-8lld %-10s %10.2f %12.2f %14.0f %12.2f %12s\n", (long long)sr[i].L, "torch",
                   tf, tb, tok / (tb * 1e-3), tb * 1e6 / (tok * 128), "-");
            printf("%-8s %-10s %10.1fx %11.1fx\n", "", "speedup", tf / sr[i].fwd_ms, tb / sr[i].fwdbwd_ms);
        }
    }
    if (nL == 2)
        printf("cost growth L %lld -> %lld (x%.0f): fwd+bwd time x%.2f (linear = x%.0f)\n",
               (long long)Ls[0], (long long)Ls[1], (double)Ls[1] / Ls[0],
               sr[1].fwdbwd_ms / sr[0].fwdbwd_ms, (double)Ls[1] / Ls[0]);

    printf("\nFFT split, 2x64x28x28x20 f32 (Gaussian high-pass, cutoff 0.25)\n");
    printf("%-10s %14s %16s\n", "impl", "split fwd ms", "filter fwd+bwd ms");
    printf("%-10s %14.2f %16.2f\n", "diffcl", fr.fwd_ms, fr.fwdbwd_ms);
    double tf = torch_get("fft_fwd"), tb = torch_get("fft_fwdbwd");
    if (!isnan(tf)) {
        printf("%-10s %14.2f %16.2f\n", "torch.fft", tf, tb);
        printf("%-10s %13.1fx %15.1fx\n", "speedup", tf / fr.fwd_ms, tb / fr.fwdbwd_ms);
    }
    printf("\nHF-Mamba module (bidirectional, residual), x 2x64x28x28x20 f32 (no torch counterpart)\n");
    printf("%-10s %14s %16s\n", "impl", "fwd ms", "fwd+bwd ms");
    printf("%-10s %14.2f %16.2f\n", "diffcl", hr.fwd_ms, hr.fwdbwd_ms);
    printf("\npeak bytes in the context: %.1f MiB\n", (double)diffcl_context_peak_bytes(ctx) / (1 << 20));
    diffcl_context_free(ctx);
    return 0;
}
