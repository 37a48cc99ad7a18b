/* Diff-CL training-iteration benchmark (issue 7 part 5), with PyTorch run side by side.
 *
 * 2-D, patch 224x192 (H x W), batch 2 labeled + 2 unlabeled by default. Rows, each measured in
 * a fresh process (this program re-run with --child) so that peak RSS belongs to one row:
 *  - diffcl      diffcl_trainer_step, method Diff-CL, with warm-up and ramp-up set to 0 so that
 *                every iteration runs all terms (CS + DS supervised, DDIM pseudo label, CPS both
 *                ways, contrastive loss) at full weight;
 *  - supervised  diffcl_trainer_step, method supervised: the same CS (V-Net + HF-Mamba) on the
 *                labeled patches alone;
 *  - cs_step     the same CS step through the model API (forward, Dice+CE, backward, SGD
 *                Nesterov step): the supervised iteration without the trainer's sampler;
 *  - vnet_step   the plain 2-D V-Net (no HF-Mamba) step through the model API, the exact
 *                counterpart of bench/torch_train.py's PyTorch step (tests/reference/vnet_torch.py
 *                V-Net, Dice + CE, SGD Nesterov), which is the torch column.
 * PyTorch rows, each in a fresh interpreter:
 *  - torch V-Net     bench/torch_train.py: the plain 2-D V-Net step (vnet_step's counterpart);
 *  - torch Diff-CL   bench/torch_diffcl.py --mode diffcl: the same Diff-CL iteration written with
 *                    torch built-ins (CS = V-Net + HF-Mamba on the same levels and sizes, DS =
 *                    tests/reference/gen_diffusion.py's DenoiseModel, DDIM pseudo label with the
 *                    trainer's ddim_steps_train, CPS both ways, contrastive loss, one SGD step),
 *                    its scan vectorised over batch, channels and state; it prints its time per
 *                    part (CS fwd, DS fwd, DDIM, losses, backward, step), shown here;
 *  - torch CS step   bench/torch_diffcl.py --mode cs: the same CS on the labeled patches, Dice+CE,
 *                    SGD (the supervised iteration's counterpart).
 * The trainer reads a data set of --cases phantom slices generated at the patch size through
 * the public API (diffcl_phantom_case + diffcl_h5_write, or diffcl_png_write without HDF5)
 * into a temporary folder: the trainer's own phantom layout has no size option and is 96x96
 * in 2-D, which the sampler would zero-pad to the patch (same cost, less realistic data);
 * --layout phantom uses it.
 *
 *   bench_train [--patch H,W] [--bl N] [--bu N] [--reps N] [--threads T] [--n-filters F]
 *               [--hfm-levels MASK] [--layout h5|png|phantom] [--no-torch] [--python PATH]
 *               [--script PATH] [--diffcl-script PATH] [--torch-scan chunked|loop|autograd] [--keep DIR]
 *               [--ddim-steps N] [--rounds R]
 *
 * --rounds R: run every row R times (at most 9), alternating, and report each row's median
 * round and the per-round Diff-CL / supervised ratios: on this VM a whole process sometimes
 * runs 25 % slower, which one round per row cannot tell from a real difference.
 * --ddim-steps N: DDIM steps of the DS pseudo label in the Diff-CL iteration, ours and
 * PyTorch's (default: the trainer's ddim_steps_train, 4 as in the brief).
 * DIFFCL_ALLOC_CACHE=0 in the environment measures the library without its block cache.
 * Targets: diffcl <= 3x supervised (issue 7); supervised <= 0.8x the PyTorch CS step (issue 7,
 * like for like; the plain PyTorch V-Net step is kept as a row); diffcl <= 0.8x the PyTorch
 * Diff-CL iteration (issue 8).
 * Ratios are in time (< 1: the first is faster).
 */
#include <sys/stat.h>

#include "bench_common.h"


#ifndef BENCH_SOURCE_DIR
#define BENCH_SOURCE_DIR "bench"
#endif

typedef struct config {
    int64_t patch[2];
    int bl, bu, reps, threads, n_filters, cases;
    int ddim_steps; /* 0: the trainer's default ddim_steps_train */
    int rounds;     /* every row this many times, alternating (process-to-process noise) */
    unsigned hfm;
    const char *layout, *data;
} config;

static void rm_rf(const char *dir)
{
    if (!dir || !*dir) return;
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

/* Phantom slices at the patch size as a data set the trainer can open: h5 (one <id>.h5 per
 * case holding "image" F32 [H, W], z-scored, and "label" U8 [H, W]), or png (images 16-bit as
 * z * 1000 + 32768, labels 8-bit; the png layout keeps raw sample values). */
static void make_data_set(const config *c, const char *dir)
{
    diffcl_context *ctx = NULL;
    diffcl_context_options co = DIFFCL_CONTEXT_OPTIONS_INIT;
    co.n_threads = c->threads;
    BENCH_CHECK(diffcl_context_create(&co, &ctx));
    const int png = !strcmp(c->layout, "png");
    char path[1200];
    if (png) {
        snprintf(path, sizeof path, "%s/images", dir);
        mkdir(path, 0755);
        snprintf(path, sizeof path, "%s/labels", dir);
        mkdir(path, 0755);
    }
    diffcl_phantom_options po = DIFFCL_PHANTOM_OPTIONS_INIT;
    po.ndim = 2;
    po.height = c->patch[0];
    po.width = c->patch[1];
    for (int i = 0; i < c->cases; i++) {
        diffcl_tensor *img = NULL, *lab = NULL, *img2 = NULL, *img16 = NULL;
        BENCH_CHECK(diffcl_phantom_case(ctx, &po, i, &img, &lab));
        int64_t hw[2] = {c->patch[0], c->patch[1]};
        BENCH_CHECK(diffcl_tensor_reshape(img, 2, hw, &img2));
        if (png) {
            BENCH_CHECK(diffcl_affine(img2, 1000.0, 32768.0, &img16));
            snprintf(path, sizeof path, "%s/images/case_%03d.png", dir, i);
            BENCH_CHECK(diffcl_png_write(img16, path, 16));
            snprintf(path, sizeof path, "%s/labels/case_%03d.png", dir, i);
            BENCH_CHECK(diffcl_png_write(lab, path, 8));
        } else {
            const char *names[2] = {"image", "label"};
            const diffcl_tensor *ts[2] = {img2, lab};
            snprintf(path, sizeof path, "%s/case_%03d.h5", dir, i);
            BENCH_CHECK(diffcl_h5_write(path, names, ts, 2, 0));
        }
        diffcl_tensor_free(img);
        diffcl_tensor_free(img2);
        diffcl_tensor_free(img16);
        diffcl_tensor_free(lab);
    }
    diffcl_context_free(ctx);
}

/* Index of the round whose row (at v[round * stride]) has the median wall time; rounds that
 * failed count as slowest. */
static int median_round(const bench_kv *v, int stride, int rounds)
{
    double w[9];
    int idx[9];
    for (int i = 0; i < rounds; i++) {
        const bench_kv *k = v + (size_t)i * (size_t)stride;
        w[i] = k->ok ? bench_kv_get(k, "wall_ms") : INFINITY;
        idx[i] = i;
    }
    for (int i = 1; i < rounds; i++) /* insertion sort of a handful */
        for (int j = i; j > 0 && w[idx[j]] < w[idx[j - 1]]; j--) {
            int t = idx[j];
            idx[j] = idx[j - 1];
            idx[j - 1] = t;
        }
    return idx[rounds / 2];
}

static int child_trainer(diffcl_context *ctx, const config *c, diffcl_method method)
{
    char out[] = "/tmp/bench_train_run_XXXXXX";
    if (!mkdtemp(out)) {
        perror("mkdtemp");
        return 1;
    }
    diffcl_train_options o = DIFFCL_TRAIN_OPTIONS_INIT;
    o.layout = c->layout;
    o.data_dir = strcmp(c->layout, "phantom") ? c->data : NULL;
    o.dims = 2;
    o.patch[0] = 1;
    o.patch[1] = c->patch[0];
    o.patch[2] = c->patch[1];
    o.batch_labeled = c->bl;
    o.batch_unlabeled = c->bu;
    o.labeled = 4;
    o.phantom_cases = c->cases;
    o.method = method;
    o.iters = 1000;
    o.warmup_frac = 0; /* every iteration the full Diff-CL iteration (mu = 1) */
    o.rampup_frac = 0;
    o.n_filters = c->n_filters;
    o.ds_n_filters = c->n_filters;
    if (c->ddim_steps > 0) o.ddim_steps_train = c->ddim_steps;
    o.hfm_levels = c->hfm;
    o.out_dir = out;
    o.log_every = 1000000;
    diffcl_trainer *tr = NULL;
    BENCH_CHECK(diffcl_trainer_create(ctx, &o, &tr));
    double *tw = calloc((size_t)c->reps, sizeof *tw), *tc = calloc((size_t)c->reps, sizeof *tc);
    const double rss0 = bench_rss_mib();
    diffcl_train_stats st;
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    for (int r = -1; r < c->reps; r++) {
        double w0 = bench_wall_ms(), c0 = bench_cpu_ms();
        BENCH_CHECK(diffcl_trainer_step(tr, &st));
        if (r >= 0) {
            tw[r] = bench_wall_ms() - w0;
            tc[r] = bench_cpu_ms() - c0;
        }
    }
    bench_report_times(tw, tc, c->reps, ctx, rss0);
    bench_result("loss", st.loss);
    bench_result("mu", st.mu);
    printf("last iteration: loss %.4f (CS sup %.4f, DS sup %.4f, CS pseudo %.4f, DS pseudo %.4f, "
           "contrast %.4f), mu %.2f, agreement %.3f\n",
           st.loss, st.cs_sup, st.ds_sup, st.cs_pseudo, st.ds_pseudo, st.contrast, st.mu, st.agreement);
    free(tw);
    free(tc);
    diffcl_trainer_free(tr);
    rm_rf(out);
    return 0;
}

/* One supervised step of a 2-D V-Net (with or without HF-Mamba) through the model API. */
static int child_step(diffcl_context *ctx, const config *c, unsigned hfm)
{
    diffcl_vnet_options vo = DIFFCL_VNET_OPTIONS_INIT;
    vo.dims = 2;
    vo.n_filters = c->n_filters;
    vo.has_dropout = 1;
    vo.hf_mamba_levels = hfm;
    vo.seed = 1;
    diffcl_module *net = NULL;
    BENCH_CHECK(diffcl_vnet_create(ctx, &vo, &net));
    diffcl_param_group_options go = DIFFCL_PARAM_GROUP_OPTIONS_INIT;
    go.lr = 0.01;
    go.momentum = 0.9;
    go.nesterov = 1;
    go.weight_decay = 3e-5;
    diffcl_optimizer *opt = NULL;
    BENCH_CHECK(diffcl_optimizer_create(ctx, DIFFCL_OPTIM_SGD, &opt));
    BENCH_CHECK(diffcl_optimizer_add_module(opt, net, &go, 0, NULL));
    int64_t xs[4] = {c->bl, 1, c->patch[0], c->patch[1]}, ys[3] = {c->bl, c->patch[0], c->patch[1]};
    diffcl_tensor *x = NULL, *y = NULL;
    BENCH_CHECK(diffcl_tensor_new(ctx, DIFFCL_F32, 4, xs, &x));
    BENCH_CHECK(diffcl_tensor_fill_normal(x, diffcl_rng_key_make(7, 1, 0, 0), 0, 1));
    BENCH_CHECK(diffcl_tensor_new(ctx, DIFFCL_U8, 3, ys, &y));
    const float *px = diffcl_tensor_data(x);
    uint8_t *py = diffcl_tensor_data(y);
    for (int64_t i = 0; i < diffcl_tensor_numel(y); i++) py[i] = px[i] > 0.5f;
    diffcl_module_train(net, 1);
    double *tw = calloc((size_t)c->reps, sizeof *tw), *tc = calloc((size_t)c->reps, sizeof *tc);
    const double rss0 = bench_rss_mib();
    double loss_v = NAN;
    for (int r = -1; r < c->reps; r++) {
        double w0 = bench_wall_ms(), c0 = bench_cpu_ms();
        diffcl_tensor *logits = NULL, *loss = NULL;
        diffcl_module_set_step(net, (uint32_t)(r + 1));
        diffcl_optimizer_zero_grad(opt);
        BENCH_CHECK(diffcl_vnet_forward(net, x, &logits, NULL));
        BENCH_CHECK(diffcl_dice_ce_loss(logits, y, NULL, &loss, NULL));
        BENCH_CHECK(diffcl_backward(loss, NULL));
        BENCH_CHECK(diffcl_optimizer_step(opt));
        diffcl_tensor_item(loss, &loss_v);
        diffcl_tensor_free(loss);
        diffcl_tensor_free(logits);
        if (r >= 0) {
            tw[r] = bench_wall_ms() - w0;
            tc[r] = bench_cpu_ms() - c0;
        }
    }
    bench_report_times(tw, tc, c->reps, ctx, rss0);
    bench_result("loss", loss_v);
    free(tw);
    free(tc);
    diffcl_tensor_free(x);
    diffcl_tensor_free(y);
    diffcl_optimizer_free(opt);
    diffcl_module_free(net);
    return 0;
}

static int child(const config *c, const char *what)
{
    diffcl_context_options co = DIFFCL_CONTEXT_OPTIONS_INIT;
    co.n_threads = c->threads;
    co.log_level = DIFFCL_LOG_WARN;
    diffcl_context *ctx = NULL;
    BENCH_CHECK(diffcl_context_create(&co, &ctx));
    int rc;
    if (!strcmp(what, "diffcl")) rc = child_trainer(ctx, c, DIFFCL_METHOD_DIFFCL);
    else if (!strcmp(what, "supervised")) rc = child_trainer(ctx, c, DIFFCL_METHOD_SUPERVISED);
    else if (!strcmp(what, "cs_step")) rc = child_step(ctx, c, c->hfm);
    else if (!strcmp(what, "vnet_step")) rc = child_step(ctx, c, 0);
    else {
        fprintf(stderr, "unknown --child %s\n", what);
        rc = 2;
    }
    diffcl_context_free(ctx);
    return rc;
}

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [--patch H,W] [--bl N] [--bu N] [--reps N] [--threads T] [--n-filters F]\n"
            "          [--hfm-levels MASK] [--layout h5|png|phantom] [--cases N] [--no-torch]\n"
            "          [--python PATH] [--script PATH] [--diffcl-script PATH]\n"
            "          [--torch-scan chunked|loop|autograd] [--keep DIR] [--ddim-steps N]\n"
            "          [--rounds R]\n",
            argv0);
}

int main(int argc, char **argv)
{
    config c = {{224, 192}, 2, 2, 3, 2, 16, 24, 0, 1, DIFFCL_HFM_DEFAULT_LEVELS, NULL, NULL};
    int torch = 1;
    const char *child_what = NULL, *python = "/usr/bin/python3", *keep = NULL;
    const char *torch_scan = "chunked";
    char script[1024], dscript[1024];
    const char *bdir = getenv("DIFFCL_BENCH_DIR") ? getenv("DIFFCL_BENCH_DIR") : BENCH_SOURCE_DIR;
    snprintf(script, sizeof script, "%s/torch_train.py", bdir);
    snprintf(dscript, sizeof dscript, "%s/torch_diffcl.py", bdir);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--patch") && v) {
            if (bench_parse_list(v, c.patch, 2) != 2) {
                usage(argv[0]);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--bl") && v) c.bl = atoi(v), i++;
        else if (!strcmp(a, "--bu") && v) c.bu = atoi(v), i++;
        else if (!strcmp(a, "--reps") && v) c.reps = atoi(v), i++;
        else if (!strcmp(a, "--threads") && v) c.threads = atoi(v), i++;
        else if (!strcmp(a, "--n-filters") && v) c.n_filters = atoi(v), i++;
        else if (!strcmp(a, "--ddim-steps") && v) c.ddim_steps = atoi(v), i++;
        else if (!strcmp(a, "--rounds") && v) c.rounds = atoi(v), i++;
        else if (!strcmp(a, "--hfm-levels") && v) c.hfm = (unsigned)strtoul(v, NULL, 0), i++;
        else if (!strcmp(a, "--layout") && v) c.layout = v, i++;
        else if (!strcmp(a, "--data") && v) c.data = v, i++;
        else if (!strcmp(a, "--cases") && v) c.cases = atoi(v), i++;
        else if (!strcmp(a, "--child") && v) child_what = v, i++;
        else if (!strcmp(a, "--python") && v) python = v, i++;
        else if (!strcmp(a, "--script") && v) snprintf(script, sizeof script, "%s", v), i++;
        else if (!strcmp(a, "--diffcl-script") && v) snprintf(dscript, sizeof dscript, "%s", v), i++;
        else if (!strcmp(a, "--torch-scan") && v) torch_scan = v, i++;
        else if (!strcmp(a, "--keep") && v) keep = v, i++;
        else if (!strcmp(a, "--no-torch")) torch = 0;
        else {
            usage(argv[0]);
            return 2;
        }
    }
    for (int a = 0; a < 2; a++)
        if (c.patch[a] < 16 || c.patch[a] % 16) {
            fprintf(stderr, "--patch: sizes must be multiples of 16\n");
            return 2;
        }
    if (!c.layout) c.layout = diffcl_io_has_hdf5() ? "h5" : "png";
    if (strcmp(c.layout, "h5") && strcmp(c.layout, "png") && strcmp(c.layout, "phantom")) {
        usage(argv[0]);
        return 2;
    }
    if (c.reps < 1) c.reps = 1;
    if (c.threads < 1) c.threads = 1;
    if (c.cases < 6) c.cases = 6;
    if (child_what) return child(&c, child_what);

    /* the data set, made once for every row */
    char dir[1024] = "";
    if (strcmp(c.layout, "phantom")) {
        if (keep) {
            snprintf(dir, sizeof dir, "%s", keep);
            mkdir(dir, 0755);
        } else {
            snprintf(dir, sizeof dir, "/tmp/bench_train_data_XXXXXX");
            if (!mkdtemp(dir)) {
                perror("mkdtemp");
                return 1;
            }
        }
        make_data_set(&c, dir);
    }
    printf("bench_train: libdiffcl %s, 2-D patch %lldx%lld, batch %d labeled + %d unlabeled, threads %d,\n"
           "  CS V-Net n_filters %d + HF-Mamba levels 0x%x, DS n_filters %d; data: %s (%d cases %s);\n"
           "  %d timed iterations after 1 discarded (medians), fresh process per row, load average %.2f\n",
           diffcl_version_string(), (long long)c.patch[0], (long long)c.patch[1], c.bl, c.bu, c.threads,
           c.n_filters, c.hfm, c.n_filters, c.layout, c.cases,
           strcmp(c.layout, "phantom") ? "phantom slices at the patch size" : "96x96, zero-padded to the patch",
           c.reps, bench_loadavg());

    const char *rows[4] = {"diffcl", "supervised", "cs_step", "vnet_step"};
    /* PyTorch rows: 0 V-Net step (torch_train.py), 1 Diff-CL iteration, 2 CS step (torch_diffcl.py) */
    enum { MAX_ROUNDS = 9 };
    if (c.rounds < 1) c.rounds = 1;
    if (c.rounds > MAX_ROUNDS) c.rounds = MAX_ROUNDS;
    static bench_kv ours_r[MAX_ROUNDS][4], th_r[MAX_ROUNDS][3];
    bench_kv ours[4], th[3];
    memset(th_r, 0, sizeof th_r);
    diffcl_train_options defaults = DIFFCL_TRAIN_OPTIONS_INIT; /* what the trainer runs */
    for (int q = 0; q < c.rounds * 4; q++) { /* round q / 4, row q % 4 */
        const int r = q % 4;
        bench_kv *ro = ours_r[q / 4], *rt = th_r[q / 4];
        char cmd[2048];
        snprintf(cmd, sizeof cmd,
                 "/proc/%d/exe --child %s --patch %lld,%lld --bl %d --bu %d --reps %d --threads %d "
                 "--n-filters %d --hfm-levels %u --ddim-steps %d --layout %s --cases %d%s%s",
                 (int)getpid(), rows[r], (long long)c.patch[0], (long long)c.patch[1], c.bl, c.bu,
                 c.reps, c.threads, c.n_filters, c.hfm, c.ddim_steps, c.layout, c.cases, *dir ? " --data " : "", dir);
        ro[r] = bench_run_child(cmd, c.threads, 1, "  ours: ");
        if (!torch) continue;
        /* each PyTorch row right after its counterpart, so that load drift hits both alike */
        if (r == 0 || r == 1) {
            snprintf(cmd, sizeof cmd,
                     "%s %s --mode %s --size %lld,%lld --bl %d --bu %d --reps %d --threads %d --n-filters %d "
                     "--hfm-levels 0x%x --ddim-steps %d --contrast-voxels %d --scan %s",
                     python, dscript, r == 0 ? "diffcl" : "cs", (long long)c.patch[0], (long long)c.patch[1],
                     c.bl, c.bu, c.reps, c.threads, c.n_filters, c.hfm,
                     c.ddim_steps > 0 ? c.ddim_steps : defaults.ddim_steps_train,
                     defaults.contrast_voxels, torch_scan);
            rt[1 + r] = bench_run_child(cmd, c.threads, 1, "  torch: ");
        } else if (r == 3) {
            snprintf(cmd, sizeof cmd, "%s %s --size %lld,%lld --batch %d --reps %d --threads %d --n-filters %d",
                     python, script, (long long)c.patch[0], (long long)c.patch[1], c.bl, c.reps, c.threads,
                     c.n_filters);
            rt[0] = bench_run_child(cmd, c.threads, 1, "  torch: ");
        }
    }
    if (*dir && !keep) rm_rf(dir);
    /* each row: the round with its median wall time; the per-round Diff-CL / supervised ratios
     * compare two processes started back to back */
    for (int r = 0; r < 4; r++) ours[r] = ours_r[median_round(ours_r[0] + r, 4, c.rounds)][r];
    for (int k = 0; k < 3; k++) th[k] = th_r[median_round(th_r[0] + k, 3, c.rounds)][k];
    if (c.rounds > 1) {
        double q[MAX_ROUNDS];
        printf("\nper round, Diff-CL / supervised iteration:");
        for (int i = 0; i < c.rounds; i++) {
            q[i] = bench_ratio(bench_kv_get(&ours_r[i][0], "wall_ms"), bench_kv_get(&ours_r[i][1], "wall_ms"));
            printf(" %.2f", q[i]);
        }
        printf("  (median %.2f)\n", bench_median(q, c.rounds));
    }

    printf("\n%-38s %10s %7s %7s %10s %9s %9s %9s\n", "row", "ms", "min", "max", "cpu ms", "peak RSS",
           "+RSS", "ctx peak");
    const char *desc[4] = {"Diff-CL iteration (trainer)", "supervised iteration (trainer)",
                           "CS step, model API (HF-Mamba)", "plain V-Net 2D step, model API"};
    for (int r = 0; r < 4; r++) {
        const bench_kv *o = &ours[r];
        printf("%-38s %10.1f %7.1f %7.1f %10.1f %9.0f %9.0f %9.0f\n", desc[r], bench_kv_get(o, "wall_ms"),
               bench_kv_get(o, "wall_min_ms"), bench_kv_get(o, "wall_max_ms"), bench_kv_get(o, "cpu_ms"),
               bench_kv_get(o, "peak_rss_mib"),
               bench_kv_get(o, "peak_rss_mib") - bench_kv_get(o, "rss_before_mib"),
               bench_kv_get(o, "ctx_peak_mib"));
    }
    const char *tdesc[3] = {"PyTorch V-Net 2D step (torch_train)", "PyTorch Diff-CL iteration",
                            "PyTorch CS step (V-Net + HF-Mamba)"};
    for (int k = 0; k < 3; k++) {
        const bench_kv *t = &th[k];
        if (!t->ok) continue;
        printf("%-38s %10.1f %7.1f %7.1f %10.1f %9.0f %9.0f %9s\n", tdesc[k], bench_kv_get(t, "wall_ms"),
               bench_kv_get(t, "wall_min_ms"), bench_kv_get(t, "wall_max_ms"), bench_kv_get(t, "cpu_ms"),
               bench_kv_get(t, "peak_rss_mib"),
               bench_kv_get(t, "peak_rss_mib") - bench_kv_get(t, "rss_before_mib"), "-");
    }
    if (th[1].ok || th[2].ok) {
        static const char *const parts[6] = {"cs_fwd", "ds_fwd", "ddim", "losses", "backward", "step"};
        printf("\nPyTorch time per part (median ms, torch_diffcl.py --scan %s):\n", torch_scan);
        printf("  %-12s", "");
        for (int p = 0; p < 6; p++) printf(" %9s", parts[p]);
        printf("\n");
        for (int k = 1; k < 3; k++) {
            if (!th[k].ok) continue;
            printf("  %-12s", k == 1 ? "Diff-CL" : "CS step");
            for (int p = 0; p < 6; p++) {
                char key[48];
                snprintf(key, sizeof key, "part_%s_ms", parts[p]);
                const double v = bench_kv_get(&th[k], key);
                if (isnan(v)) printf(" %9s", "-");
                else printf(" %9.1f", v);
            }
            printf("\n");
        }
    }
    const double tv = bench_kv_get(&th[0], "wall_ms"), tcpu = bench_kv_get(&th[0], "cpu_ms");
    const double td = bench_kv_get(&th[1], "wall_ms"), tcs = bench_kv_get(&th[2], "wall_ms");
    const double d = bench_kv_get(&ours[0], "wall_ms"), s = bench_kv_get(&ours[1], "wall_ms"),
                 cs = bench_kv_get(&ours[2], "wall_ms"), v = bench_kv_get(&ours[3], "wall_ms");
    printf("\nratios (time):\n");
    printf("  Diff-CL / supervised iteration             %6.2f   (issue 7's target <= 3, withdrawn by issue 15)\n", bench_ratio(d, s));
    printf("  Diff-CL iteration / PyTorch Diff-CL        %6.2f   (issue 15 target <= 0.6; cpu-time ratio %.2f)\n",
           bench_ratio(d, td), bench_ratio(bench_kv_get(&ours[0], "cpu_ms"), bench_kv_get(&th[1], "cpu_ms")));
    printf("  supervised iteration / PyTorch CS step     %6.2f   (issue 7 target <= 0.8; same CS on both sides)\n",
           bench_ratio(s, tcs));
    printf("  CS step (model API) / PyTorch CS step      %6.2f   (cpu-time ratio %.2f)\n", bench_ratio(cs, tcs),
           bench_ratio(bench_kv_get(&ours[2], "cpu_ms"), bench_kv_get(&th[2], "cpu_ms")));
    printf("  supervised iteration / PyTorch V-Net step  %6.2f   (CS has HF-Mamba, torch's V-Net has not)\n",
           bench_ratio(s, tv));
    printf("  CS step (model API) / PyTorch V-Net step   %6.2f\n", bench_ratio(cs, tv));
    printf("  plain V-Net step / PyTorch V-Net step      %6.2f   (same network; cpu-time ratio %.2f)\n",
           bench_ratio(v, tv), bench_ratio(bench_kv_get(&ours[3], "cpu_ms"), tcpu));
    printf("  HF-Mamba cost: CS step / plain V-Net step  %6.2f   (PyTorch: CS step / V-Net step %.2f)\n",
           bench_ratio(cs, v), bench_ratio(tcs, tv));
    printf("  trainer overhead: supervised / CS step     %6.2f\n", bench_ratio(s, cs));
    printf("peak RSS (MiB): Diff-CL ours %.0f / torch %.0f = %.2f; supervised ours %.0f / torch CS step %.0f = %.2f\n",
           bench_kv_get(&ours[0], "peak_rss_mib"), bench_kv_get(&th[1], "peak_rss_mib"),
           bench_ratio(bench_kv_get(&ours[0], "peak_rss_mib"), bench_kv_get(&th[1], "peak_rss_mib")),
           bench_kv_get(&ours[1], "peak_rss_mib"), bench_kv_get(&th[2], "peak_rss_mib"),
           bench_ratio(bench_kv_get(&ours[1], "peak_rss_mib"), bench_kv_get(&th[2], "peak_rss_mib")));
    printf("load average at the end: %.2f\n", bench_loadavg());

    char tag[96];
    const long long ph = (long long)c.patch[0], pw = (long long)c.patch[1];
    snprintf(tag, sizeof tag, "diffcl_iter_over_OUR_supervised_%lldx%lld", ph, pw);
    bench_summary("train", tag, d, s, "ms");
    snprintf(tag, sizeof tag, "supervised_iter_vs_torch_vnet_%lldx%lld", ph, pw);
    bench_summary("train", tag, s, tv, "ms");
    snprintf(tag, sizeof tag, "vnet2d_step_%lldx%lld", ph, pw);
    bench_summary("train", tag, v, tv, "ms");
    if (th[1].ok) {
        snprintf(tag, sizeof tag, "diffcl_iter_vs_torch_diffcl_%lldx%lld", ph, pw);
        bench_summary("train", tag, d, td, "ms");
        snprintf(tag, sizeof tag, "diffcl_iter_peakRSS_%lldx%lld", ph, pw);
        bench_summary("train", tag, bench_kv_get(&ours[0], "peak_rss_mib"), bench_kv_get(&th[1], "peak_rss_mib"),
                      "MiB");
    }
    if (th[2].ok) {
        snprintf(tag, sizeof tag, "supervised_iter_vs_torch_cs_step_%lldx%lld", ph, pw);
        bench_summary("train", tag, s, tcs, "ms");
        snprintf(tag, sizeof tag, "supervised_iter_peakRSS_%lldx%lld", ph, pw);
        bench_summary("train", tag, bench_kv_get(&ours[1], "peak_rss_mib"), bench_kv_get(&th[2], "peak_rss_mib"),
                      "MiB");
    }
    for (int r = 0; r < 4; r++)
        if (!ours[r].ok) return 1;
    return 0;
}
