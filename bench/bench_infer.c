/* Sliding-window inference benchmark (issue 8), with PyTorch run side by side.
 *
 * One volume [1, D, H, W] (default 1 x 144 x 144 x 96, random N(0,1) values) segmented by a 3-D
 * V-Net (n_filters 16, batch norm, eval mode, no HF-Mamba) through the public API:
 * diffcl_segment() = diffcl_sliding_window() (windows of --patch, default the LA patch
 * 112 x 112 x 80, at the LA strides 18, 18, 4 -- DIFFCL_SLIDING_WINDOW_OPTIONS_INIT, the
 * benchmark codes' test_single_case: windows start at min(stride * i, size - patch) for
 * i < ceil((size - patch) / stride) + 1, one window per forward, softmax probabilities of
 * overlapping windows averaged) + argmax. No test-time flips; --gaussian weights every window
 * by nnU-Net's Gaussian on both sides (default: plain averaging, as UA-MT).
 * The PyTorch side, bench/torch_infer.py, runs tests/reference/vnet_torch.py's V-Net in eval
 * mode under torch.no_grad() over the same windows (test_single_case written with torch
 * tensors), then argmax.
 *
 * Each side runs in a fresh process (ours: this program re-run with --child), so that peak RSS
 * (getrusage ru_maxrss) belongs to it alone: one window forward as warm-up, then the median of
 * --reps whole-volume runs (min and max printed too).
 *
 *   bench_infer [--volume D,H,W] [--patch D,H,W] [--stride D,H,W] [--gaussian] [--reps N]
 *               [--threads T] [--n-filters F] [--no-torch] [--python PATH] [--script PATH]
 * Ratios are ours / PyTorch in time (< 1: libdiffcl is faster); issue 8's target is <= 0.8.
 */
#include "bench_common.h"

#ifndef BENCH_SOURCE_DIR
#define BENCH_SOURCE_DIR "bench"
#endif

typedef struct config {
    int64_t vol[3], patch[3], stride[3];
    int gaussian, reps, threads, n_filters;
} config;

static int64_t n_windows(const config *c)
{
    int64_t n = 1;
    for (int a = 0; a < 3; a++) {
        int64_t size = c->vol[a] > c->patch[a] ? c->vol[a] : c->patch[a];
        n *= (size - c->patch[a] + c->stride[a] - 1) / c->stride[a] + 1;
    }
    return n;
}

static int child(const config *c)
{
    diffcl_context_options co = DIFFCL_CONTEXT_OPTIONS_INIT;
    co.n_threads = c->threads;
    co.log_level = DIFFCL_LOG_WARN;
    diffcl_context *ctx = NULL;
    BENCH_CHECK(diffcl_context_create(&co, &ctx));
    diffcl_vnet_options vo = DIFFCL_VNET_OPTIONS_INIT;
    vo.dims = 3;
    vo.n_filters = c->n_filters;
    vo.seed = 1;
    diffcl_module *net = NULL;
    BENCH_CHECK(diffcl_vnet_create(ctx, &vo, &net));
    diffcl_module_train(net, 0);
    int64_t is[4] = {1, c->vol[0], c->vol[1], c->vol[2]};
    diffcl_tensor *img = NULL;
    BENCH_CHECK(diffcl_tensor_new(ctx, DIFFCL_F32, 4, is, &img));
    BENCH_CHECK(diffcl_tensor_fill_normal(img, diffcl_rng_key_make(7, 1, 0, 0), 0, 1));
    diffcl_sliding_window_options so = DIFFCL_SLIDING_WINDOW_OPTIONS_INIT;
    for (int a = 0; a < 3; a++) {
        so.patch[a] = c->patch[a];
        so.stride[a] = c->stride[a];
    }
    so.gaussian = c->gaussian;
    so.tta_flips = 0;
    so.batch = 1;
    { /* warm-up: one window forward */
        int64_t ws[5] = {1, 1, c->patch[0], c->patch[1], c->patch[2]};
        diffcl_tensor *w = NULL, *out = NULL;
        BENCH_CHECK(diffcl_tensor_new(ctx, DIFFCL_F32, 5, ws, &w));
        int prev = diffcl_set_grad_enabled(ctx, 0);
        BENCH_CHECK(diffcl_module_forward(net, w, &out));
        diffcl_set_grad_enabled(ctx, prev);
        diffcl_tensor_free(out);
        diffcl_tensor_free(w);
    }
    double *tw = calloc((size_t)c->reps, sizeof *tw), *tc = calloc((size_t)c->reps, sizeof *tc);
    const double rss0 = bench_rss_mib();
    double fg = NAN;
    for (int r = 0; r < c->reps; r++) {
        diffcl_tensor *label = NULL, *probs = NULL;
        double w0 = bench_wall_ms(), c0 = bench_cpu_ms();
        BENCH_CHECK(diffcl_segment(net, img, &so, &label, &probs));
        tw[r] = bench_wall_ms() - w0;
        tc[r] = bench_cpu_ms() - c0;
        const uint8_t *l = diffcl_tensor_data(label);
        int64_t n = diffcl_tensor_numel(label), k = 0;
        for (int64_t i = 0; i < n; i++) k += l[i] != 0;
        fg = (double)k / (double)n;
        diffcl_tensor_free(label);
        diffcl_tensor_free(probs);
    }
    bench_report_times(tw, tc, c->reps, ctx, rss0);
    bench_result("windows", (double)n_windows(c));
    bench_result("fg_fraction", fg);
    free(tw);
    free(tc);
    diffcl_tensor_free(img);
    diffcl_module_free(net);
    diffcl_context_free(ctx);
    return 0;
}

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [--volume D,H,W] [--patch D,H,W] [--stride D,H,W] [--gaussian] [--reps N]\n"
            "          [--threads T] [--n-filters F] [--no-torch] [--python PATH] [--script PATH]\n",
            argv0);
}

int main(int argc, char **argv)
{
    diffcl_sliding_window_options dso = DIFFCL_SLIDING_WINDOW_OPTIONS_INIT; /* the LA defaults */
    config c = {{144, 144, 96}, {0, 0, 0}, {0, 0, 0}, dso.gaussian, 3, 2, 16};
    for (int a = 0; a < 3; a++) {
        c.patch[a] = dso.patch[a];
        c.stride[a] = dso.stride[a];
    }
    int torch = 1, is_child = 0;
    const char *python = "/usr/bin/python3";
    char script[1024];
    snprintf(script, sizeof script, "%s/torch_infer.py",
             getenv("DIFFCL_BENCH_DIR") ? getenv("DIFFCL_BENCH_DIR") : BENCH_SOURCE_DIR);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t *list = !strcmp(a, "--volume") ? c.vol : !strcmp(a, "--patch") ? c.patch
                      : !strcmp(a, "--stride") ? c.stride : NULL;
        if (list && v) {
            if (bench_parse_list(v, list, 3) != 3) {
                usage(argv[0]);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--reps") && v) c.reps = atoi(v), i++;
        else if (!strcmp(a, "--threads") && v) c.threads = atoi(v), i++;
        else if (!strcmp(a, "--n-filters") && v) c.n_filters = atoi(v), i++;
        else if (!strcmp(a, "--python") && v) python = v, i++;
        else if (!strcmp(a, "--script") && v) snprintf(script, sizeof script, "%s", v), i++;
        else if (!strcmp(a, "--gaussian")) c.gaussian = 1;
        else if (!strcmp(a, "--no-torch")) torch = 0;
        else if (!strcmp(a, "--child")) is_child = 1;
        else {
            usage(argv[0]);
            return 2;
        }
    }
    for (int a = 0; a < 3; a++)
        if (c.patch[a] < 16 || c.patch[a] % 16 || c.vol[a] < 1 || c.stride[a] < 1) {
            fprintf(stderr, "--patch sizes must be multiples of 16; volume and strides >= 1\n");
            return 2;
        }
    if (c.reps < 1) c.reps = 1;
    if (c.threads < 0) c.threads = 0; /* 0: the library's default (usable CPUs, following the load) */
    if (is_child) return child(&c);

    const int64_t nw = n_windows(&c);
    printf("bench_infer: libdiffcl %s, sliding window over 1x%lldx%lldx%lld, patch %lldx%lldx%lld, strides "
           "%lld,%lld,%lld (%lld windows, one per forward), %s averaging, no TTA;\n"
           "  3-D V-Net n_filters %d, eval, no grad; threads %d; median of %d runs after a one-window "
           "warm-up, fresh process per side; load average %.2f\n",
           diffcl_version_string(), (long long)c.vol[0], (long long)c.vol[1], (long long)c.vol[2],
           (long long)c.patch[0], (long long)c.patch[1], (long long)c.patch[2], (long long)c.stride[0],
           (long long)c.stride[1], (long long)c.stride[2], (long long)nw, c.gaussian ? "Gaussian" : "plain",
           c.n_filters, c.threads, c.reps, bench_loadavg());
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "/proc/%d/exe --child --volume %lld,%lld,%lld --patch %lld,%lld,%lld --stride %lld,%lld,%lld "
             "--reps %d --threads %d --n-filters %d%s",
             (int)getpid(), (long long)c.vol[0], (long long)c.vol[1], (long long)c.vol[2], (long long)c.patch[0],
             (long long)c.patch[1], (long long)c.patch[2], (long long)c.stride[0], (long long)c.stride[1],
             (long long)c.stride[2], c.reps, c.threads, c.n_filters, c.gaussian ? " --gaussian" : "");
    bench_kv ours = bench_run_child(cmd, c.threads, 1, "  ours: "), th;
    memset(&th, 0, sizeof th);
    if (torch) {
        snprintf(cmd, sizeof cmd,
                 "%s %s --volume %lld,%lld,%lld --patch %lld,%lld,%lld --stride %lld,%lld,%lld --reps %d "
                 "--threads %d --n-filters %d%s",
                 python, script, (long long)c.vol[0], (long long)c.vol[1], (long long)c.vol[2],
                 (long long)c.patch[0], (long long)c.patch[1], (long long)c.patch[2], (long long)c.stride[0],
                 (long long)c.stride[1], (long long)c.stride[2], c.reps, c.threads, c.n_filters,
                 c.gaussian ? " --gaussian" : "");
        th = bench_run_child(cmd, c.threads, 1, "  torch: ");
    }
    printf("\n%-30s %10s %9s %9s %10s %9s %9s %9s %8s\n", "side", "ms", "min", "max", "cpu ms", "peak RSS",
           "+RSS", "ctx peak", "windows");
    const bench_kv *sides[2] = {&ours, &th};
    const char *names[2] = {"libdiffcl (diffcl_segment)", "PyTorch (test_single_case)"};
    for (int k = 0; k < 2; k++) {
        const bench_kv *r = sides[k];
        if (!r->ok) continue;
        printf("%-30s %10.1f %9.1f %9.1f %10.1f %9.0f %9.0f %9.0f %8.0f\n", names[k], bench_kv_get(r, "wall_ms"),
               bench_kv_get(r, "wall_min_ms"), bench_kv_get(r, "wall_max_ms"), bench_kv_get(r, "cpu_ms"),
               bench_kv_get(r, "peak_rss_mib"), bench_kv_get(r, "peak_rss_mib") - bench_kv_get(r, "rss_before_mib"),
               bench_kv_get(r, "ctx_peak_mib"), bench_kv_get(r, "windows"));
    }
    const double ow = bench_kv_get(&ours, "wall_ms"), tw = bench_kv_get(&th, "wall_ms");
    const double orss = bench_kv_get(&ours, "peak_rss_mib"), trss = bench_kv_get(&th, "peak_rss_mib");
    printf("\nratios ours / PyTorch: time %.2f (issue 8 target <= 0.8), cpu time %.2f, peak RSS %.2f; "
           "per window %.1f / %.1f ms\n",
           bench_ratio(ow, tw), bench_ratio(bench_kv_get(&ours, "cpu_ms"), bench_kv_get(&th, "cpu_ms")),
           bench_ratio(orss, trss), ow / (double)nw, tw / (double)nw);
    printf("load average at the end: %.2f\n", bench_loadavg());
    char tag[96];
    snprintf(tag, sizeof tag, "sliding_window_%lldx%lldx%lld_ms", (long long)c.vol[0], (long long)c.vol[1],
             (long long)c.vol[2]);
    bench_summary("infer", tag, ow, tw, "ms");
    snprintf(tag, sizeof tag, "sliding_window_%lldx%lldx%lld_peakRSS", (long long)c.vol[0], (long long)c.vol[1],
             (long long)c.vol[2]);
    bench_summary("infer", tag, orss, trss, "MiB");
    return ours.ok && (!torch || th.ok) ? 0 : 1;
}
