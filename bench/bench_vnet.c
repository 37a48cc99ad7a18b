/* V-Net benchmark against PyTorch, run side by side in one invocation.
 *
 * The V-Net of the semi-supervised codes (n_filters 16, batch norm, Dropout3d(0.5) on the
 * bottleneck and the last decoder feature as in training), batch 2 x 1 x 112x112x80 by default:
 *  - train step: zero_grad + forward (train mode) + cross-entropy + backward + SGD step
 *    (lr 0.01, momentum 0.9, weight decay 1e-4: UA-MT's optimiser);
 *  - inference: eval mode, no gradient recording, forward only.
 * Each (work, thread count) is measured in a fresh process for ours (this program re-run with
 * --child) and for PyTorch (bench/torch_vnet.py, Debian's torch 1.13 through /usr/bin/python3,
 * the same V-Net as tests/reference/vnet_torch.py), with torch.set_num_threads and
 * OMP/OPENBLAS/MKL_NUM_THREADS equal to ours. Times are medians of --reps runs after one
 * discarded warm-up run, wall clock and process CPU time; memory is the process's peak RSS
 * (ru_maxrss), the RSS before the timed loop, and diffcl_context_peak_bytes.
 *
 *   bench_vnet [--size D,H,W] [--batch N] [--reps N] [--threads T] [--scaling]
 *              [--dims 2|3] [--n-filters F] [--only train|infer] [--no-torch]
 *              [--python PATH] [--script PATH]
 *
 * --scaling also measures 1 thread (ours and torch) and prints the speed-up of T threads.
 * DIFFCL_ALLOC_CACHE=0 in the environment measures the library without its block cache.
 * --dims 2 takes --size H,W. Ratios are ours / torch in time: below 1 we are faster
 * (issue 8's target is <= 0.8).
 */
#include "bench_common.h"

#ifndef BENCH_SOURCE_DIR
#define BENCH_SOURCE_DIR "bench"
#endif

typedef struct config {
    int dims, batch, reps, threads, n_filters;
    int64_t size[3]; /* 3-D: D,H,W; 2-D: H,W in [0],[1] */
} config;

static void make_input(diffcl_context *ctx, const config *c, diffcl_tensor **x, diffcl_tensor **y)
{
    int64_t xs[5] = {c->batch, 1, c->size[0], c->size[1], c->dims == 3 ? c->size[2] : 0};
    int64_t ys[4] = {c->batch, c->size[0], c->size[1], c->dims == 3 ? c->size[2] : 0};
    BENCH_CHECK(diffcl_tensor_new(ctx, DIFFCL_F32, c->dims + 2, xs, x));
    BENCH_CHECK(diffcl_tensor_fill_normal(*x, diffcl_rng_key_make(7, 1, 0, 0), 0, 1));
    BENCH_CHECK(diffcl_tensor_new(ctx, DIFFCL_U8, c->dims + 1, ys, y));
    const float *px = diffcl_tensor_data(*x);
    uint8_t *py = diffcl_tensor_data(*y);
    for (int64_t i = 0; i < diffcl_tensor_numel(*y); i++) py[i] = px[i] > 0.5f;
}

/* One measurement in this process; prints RESULT lines. */
static int child(const config *c, const char *mode)
{
    const int train = !strcmp(mode, "train");
    diffcl_context_options co = DIFFCL_CONTEXT_OPTIONS_INIT;
    co.n_threads = c->threads;
    co.log_level = DIFFCL_LOG_WARN;
    diffcl_context *ctx = NULL;
    BENCH_CHECK(diffcl_context_create(&co, &ctx));
    diffcl_vnet_options vo = DIFFCL_VNET_OPTIONS_INIT;
    vo.dims = c->dims;
    vo.n_filters = c->n_filters;
    vo.has_dropout = 1;
    vo.seed = 1;
    diffcl_module *net = NULL;
    BENCH_CHECK(diffcl_vnet_create(ctx, &vo, &net));
    diffcl_optimizer *opt = NULL;
    diffcl_param_group_options go = DIFFCL_PARAM_GROUP_OPTIONS_INIT;
    go.lr = 0.01;
    go.momentum = 0.9;
    go.weight_decay = 1e-4;
    BENCH_CHECK(diffcl_optimizer_create(ctx, DIFFCL_OPTIM_SGD, &opt));
    BENCH_CHECK(diffcl_optimizer_add_module(opt, net, &go, 0, NULL));
    diffcl_tensor *x = NULL, *y = NULL;
    make_input(ctx, c, &x, &y);

    diffcl_module_train(net, train);
    int prev = diffcl_set_grad_enabled(ctx, train);
    const double rss0 = bench_rss_mib();
    double *tw = calloc((size_t)c->reps, sizeof *tw), *tc = calloc((size_t)c->reps, sizeof *tc);
    double loss_v = NAN;
    for (int r = -1; r < c->reps; r++) {
        double w0 = bench_wall_ms(), c0 = bench_cpu_ms();
        diffcl_tensor *logits = NULL, *loss = NULL;
        if (train) {
            diffcl_module_set_step(net, (uint32_t)(r + 1));
            diffcl_optimizer_zero_grad(opt);
            BENCH_CHECK(diffcl_module_forward(net, x, &logits));
            BENCH_CHECK(diffcl_cross_entropy_loss(logits, y, NULL, &loss));
            BENCH_CHECK(diffcl_backward(loss, NULL));
            BENCH_CHECK(diffcl_optimizer_step(opt));
            diffcl_tensor_item(loss, &loss_v);
        } else {
            BENCH_CHECK(diffcl_module_forward(net, x, &logits));
        }
        diffcl_tensor_free(loss);
        diffcl_tensor_free(logits);
        if (r >= 0) {
            tw[r] = bench_wall_ms() - w0;
            tc[r] = bench_cpu_ms() - c0;
        }
    }
    diffcl_set_grad_enabled(ctx, prev);
    bench_report_times(tw, tc, c->reps, ctx, rss0);
    bench_result("threads", diffcl_context_threads(ctx));
    if (train) bench_result("loss", loss_v);
    free(tw);
    free(tc);
    diffcl_tensor_free(x);
    diffcl_tensor_free(y);
    diffcl_optimizer_free(opt);
    diffcl_module_free(net);
    diffcl_context_free(ctx);
    return 0;
}

static void size_str(const config *c, char *buf, size_t n, char sep)
{
    if (c->dims == 3)
        snprintf(buf, n, "%lld%c%lld%c%lld", (long long)c->size[0], sep, (long long)c->size[1], sep,
                 (long long)c->size[2]);
    else
        snprintf(buf, n, "%lld%c%lld", (long long)c->size[0], sep, (long long)c->size[1]);
}

static bench_kv run_ours(const config *c, const char *mode, int threads)
{
    char cmd[2048], sz[64];
    size_str(c, sz, sizeof sz, ',');
    snprintf(cmd, sizeof cmd,
             "/proc/%d/exe --child %s --dims %d --size %s --batch %d --reps %d --threads %d "
             "--n-filters %d",
             (int)getpid(), mode, c->dims, sz, c->batch, c->reps, threads, c->n_filters);
    return bench_run_child(cmd, threads, 1, "  ours: ");
}

static bench_kv run_torch(const config *c, const char *python, const char *script, const char *mode,
                          int threads)
{
    char cmd[2048], sz[64];
    size_str(c, sz, sizeof sz, ',');
    snprintf(cmd, sizeof cmd,
             "%s %s --mode %s --dims %d --size %s --batch %d --reps %d --threads %d "
             "--n-filters %d",
             python, script, mode, c->dims, sz, c->batch, c->reps, threads, c->n_filters);
    return bench_run_child(cmd, threads, 1, "  torch: ");
}

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [--size D,H,W] [--batch N] [--reps N] [--threads T] [--scaling] [--dims 2|3]\n"
            "          [--n-filters F] [--only train|infer] [--no-torch] [--python PATH] [--script PATH]\n",
            argv0);
}

int main(int argc, char **argv)
{
    config c = {3, 2, 3, 2, 16, {112, 112, 80}};
    int scaling = 0, torch = 1, size_given = 0;
    const char *child_mode = NULL, *only = NULL, *python = "/usr/bin/python3";
    char script[1024];
    snprintf(script, sizeof script, "%s/torch_vnet.py",
             getenv("DIFFCL_BENCH_DIR") ? getenv("DIFFCL_BENCH_DIR") : BENCH_SOURCE_DIR);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--size") && v) {
            int n = bench_parse_list(v, c.size, 3);
            size_given = n;
            i++;
        } else if (!strcmp(a, "--batch") && v) c.batch = atoi(v), i++;
        else if (!strcmp(a, "--reps") && v) c.reps = atoi(v), i++;
        else if (!strcmp(a, "--threads") && v) c.threads = atoi(v), i++;
        else if (!strcmp(a, "--dims") && v) c.dims = atoi(v), i++;
        else if (!strcmp(a, "--n-filters") && v) c.n_filters = atoi(v), i++;
        else if (!strcmp(a, "--only") && v) only = v, i++;
        else if (!strcmp(a, "--child") && v) child_mode = v, i++;
        else if (!strcmp(a, "--python") && v) python = v, i++;
        else if (!strcmp(a, "--script") && v) snprintf(script, sizeof script, "%s", v), i++;
        else if (!strcmp(a, "--scaling")) scaling = 1;
        else if (!strcmp(a, "--no-torch")) torch = 0;
        else {
            usage(argv[0]);
            return 2;
        }
    }
    if (c.dims != 2 && c.dims != 3) {
        usage(argv[0]);
        return 2;
    }
    if (c.dims == 2 && size_given < 2) c.size[0] = 224, c.size[1] = 192;
    if (size_given && size_given != c.dims) {
        fprintf(stderr, "--size needs %d values for --dims %d\n", c.dims, c.dims);
        return 2;
    }
    for (int a = 0; a < c.dims; a++)
        if (c.size[a] < 16 || c.size[a] % 16) {
            fprintf(stderr, "--size: every size must be a multiple of 16 (the V-Net halves it 4 times)\n");
            return 2;
        }
    if (c.reps < 1) c.reps = 1;
    if (c.threads < 1) c.threads = 1;
    if (child_mode) return child(&c, child_mode);

    char sz[64];
    size_str(&c, sz, sizeof sz, 'x');
    printf("bench_vnet: libdiffcl %s, V-Net %dD n_filters %d batchnorm dropout 0.5, batch %d x 1 x %s,\n"
           "  %d timed runs after 1 discarded (medians), fresh process per row, load average %.2f\n",
           diffcl_version_string(), c.dims, c.n_filters, c.batch, sz, c.reps, bench_loadavg());
    int tlist[2] = {c.threads, 1}, nt = scaling && c.threads != 1 ? 2 : 1;
    const char *modes[2] = {"train", "infer"};
    bench_kv ours[2][2], th[2][2];
    memset(ours, 0, sizeof ours);
    memset(th, 0, sizeof th);
    for (int ti = 0; ti < nt; ti++)
        for (int m = 0; m < 2; m++) {
            if (only && strcmp(only, modes[m])) continue;
            ours[ti][m] = run_ours(&c, modes[m], tlist[ti]);
            if (torch) th[ti][m] = run_torch(&c, python, script, modes[m], tlist[ti]);
        }

    printf("\n%-3s %-6s %10s %10s %7s %11s %11s %7s %9s %9s %9s %9s %9s\n", "thr", "work",
           "ours ms", "torch ms", "ratio", "ours cpu", "torch cpu", "ratio", "ours RSS", "torch RSS",
           "ours +RSS", "torch+RSS", "ctx peak");
    for (int ti = 0; ti < nt; ti++)
        for (int m = 0; m < 2; m++) {
            if (only && strcmp(only, modes[m])) continue;
            const bench_kv *o = &ours[ti][m], *t = &th[ti][m];
            double ow = bench_kv_get(o, "wall_ms"), tw = bench_kv_get(t, "wall_ms");
            double oc = bench_kv_get(o, "cpu_ms"), tc = bench_kv_get(t, "cpu_ms");
            double orss = bench_kv_get(o, "peak_rss_mib"), trss = bench_kv_get(t, "peak_rss_mib");
            printf("%-3d %-6s %10.1f %10.1f %7.2f %11.1f %11.1f %7.2f %9.0f %9.0f %9.0f %9.0f %9.0f\n",
                   tlist[ti], modes[m], ow, tw, bench_ratio(ow, tw), oc, tc, bench_ratio(oc, tc),
                   orss, trss, orss - bench_kv_get(o, "rss_before_mib"),
                   trss - bench_kv_get(t, "rss_before_mib"), bench_kv_get(o, "ctx_peak_mib"));
            printf("%-3s %-6s %10s %10s   spread (min..max ms): ours %.1f..%.1f  torch %.1f..%.1f\n", "",
                   "", "", "", bench_kv_get(o, "wall_min_ms"), bench_kv_get(o, "wall_max_ms"),
                   bench_kv_get(t, "wall_min_ms"), bench_kv_get(t, "wall_max_ms"));
        }
    printf("ratio = ours / torch (time; < 1: libdiffcl faster). RSS in MiB: peak of the process, and\n"
           "+RSS = peak minus the RSS just before the timed loop (the work's own memory).\n");
    if (nt == 2) {
        for (int m = 0; m < 2; m++) {
            if (only && strcmp(only, modes[m])) continue;
            printf("scaling %s 1 -> %d threads: ours x%.2f, torch x%.2f\n", modes[m], c.threads,
                   bench_ratio(bench_kv_get(&ours[1][m], "wall_ms"), bench_kv_get(&ours[0][m], "wall_ms")),
                   bench_ratio(bench_kv_get(&th[1][m], "wall_ms"), bench_kv_get(&th[0][m], "wall_ms")));
        }
    }
    printf("load average at the end: %.2f\n", bench_loadavg());

    /* machine-readable lines for bench/run-all.sh */
    char tag[96];
    for (int ti = 0; ti < nt; ti++)
        for (int m = 0; m < 2; m++) {
            if (only && strcmp(only, modes[m])) continue;
            snprintf(tag, sizeof tag, "%s_%s_%dt_ms", modes[m], sz, tlist[ti]);
            bench_summary("vnet", tag, bench_kv_get(&ours[ti][m], "wall_ms"),
                          bench_kv_get(&th[ti][m], "wall_ms"), "ms");
            if (ti == 0) {
                snprintf(tag, sizeof tag, "%s_%s_peakRSS", modes[m], sz);
                bench_summary("vnet", tag, bench_kv_get(&ours[ti][m], "peak_rss_mib"),
                              bench_kv_get(&th[ti][m], "peak_rss_mib"), "MiB");
            }
        }
    if (nt == 2)
        for (int m = 0; m < 2; m++) {
            if (only && strcmp(only, modes[m])) continue;
            snprintf(tag, sizeof tag, "%s_speedup_1to%dt", modes[m], c.threads);
            bench_summary("vnet", tag,
                          bench_ratio(bench_kv_get(&ours[1][m], "wall_ms"), bench_kv_get(&ours[0][m], "wall_ms")),
                          bench_ratio(bench_kv_get(&th[1][m], "wall_ms"), bench_kv_get(&th[0][m], "wall_ms")),
                          "x");
        }
    int bad = 0;
    for (int ti = 0; ti < nt; ti++)
        for (int m = 0; m < 2; m++)
            if ((!only || !strcmp(only, modes[m])) && !ours[ti][m].ok) bad = 1;
    return bad;
}
