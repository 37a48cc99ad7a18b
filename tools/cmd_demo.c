/* diffcl demo: the main job on the built-in phantom data. Trains the supervised baseline
 * and Diff-CL with the same CS, labeled set, iterations, augmentation and learning rate,
 * evaluates both on held-out phantom cases generated from another seed, prints the table
 * and writes overlays. Public API only. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <diffcl/diffcl.h>
#include <diffcl/infer.h>

#include "commands.h"
#include "args.h"

static void quiet_log(diffcl_log_level level, const char *msg, void *user)
{
    (void)user;
    if (level <= DIFFCL_LOG_WARN || strstr(msg, "val") || strstr(msg, "training "))
        fprintf(stderr, "  %s\n", msg);
}

static int progress_dots(const char *what, int64_t done, int64_t total, const char *msg, void *user)
{
    (void)msg;
    (void)user;
    if (strcmp(what, "train")) return 0; /* tiles of the evaluation: too many to show */
    if (done % 25 == 0 || done == total)
        fprintf(stderr, "  [%lld/%lld]%s", (long long)done, (long long)total,
                done == total ? "\n" : "\r");
    return 0;
}

typedef struct scores {
    double v[4][4096];
    int64_t n;
} scores;

/* Evaluate a trained CS on the held-out phantom cases. */
static diffcl_status evaluate(diffcl_context *ctx, diffcl_module *cs, const demo_args *d,
                              uint64_t seed, const char *overlay_dir, scores *sc)
{
    diffcl_dataset_options dopt = DIFFCL_DATASET_OPTIONS_INIT;
    dopt.layout = DIFFCL_LAYOUT_PHANTOM;
    dopt.phantom.ndim = 2;
    dopt.phantom.seed = seed ^ 0x7e57u; /* a different generator seed than training */
    dopt.first_case = 500000;
    dopt.n_cases = d->test_cases;
    diffcl_dataset *test = NULL;
    diffcl_status s = diffcl_dataset_open(ctx, NULL, &dopt, &test);
    diffcl_sliding_window_options sw = DIFFCL_SLIDING_WINDOW_OPTIONS_INIT;
    sw.patch[0] = 1;
    sw.patch[1] = sw.patch[2] = 96;
    sw.stride[0] = 1;
    sw.stride[1] = sw.stride[2] = 48;
    diffcl_metric_options mo = DIFFCL_METRIC_OPTIONS_INIT;
    mo.empty_policy = DIFFCL_EMPTY_DIAGONAL; /* a missed structure counts as the worst distance */
    sc->n = 0;
    diffcl_module_train(cs, 0);
    for (int64_t i = 0; s == DIFFCL_OK && i < diffcl_dataset_size(test); i++) {
        diffcl_tensor *img = NULL, *lab = NULL, *pred = NULL;
        s = diffcl_dataset_load(test, i, &img, &lab, NULL);
        if (s == DIFFCL_OK) s = diffcl_segment(cs, img, &sw, &pred, NULL);
        diffcl_seg_metrics m;
        if (s == DIFFCL_OK) s = diffcl_metrics_per_class(pred, lab, 2, &mo, &m);
        if (s == DIFFCL_OK && sc->n < 4096) {
            sc->v[0][sc->n] = m.dice;
            sc->v[1][sc->n] = m.jaccard;
            sc->v[2][sc->n] = m.hd95;
            sc->v[3][sc->n] = m.asd;
            sc->n++;
        }
        if (s == DIFFCL_OK && overlay_dir && i < 3) {
            char path[8192];
            snprintf(path, sizeof path, "%s/overlay_%s.png", overlay_dir,
                     diffcl_dataset_case_id(test, i));
            s = diffcl_overlay_png(img, pred, lab, 0, 0, path);
        }
        diffcl_tensor_free(img);
        diffcl_tensor_free(lab);
        diffcl_tensor_free(pred);
    }
    diffcl_dataset_free(test);
    return s;
}

/* Mean and sample std (n-1) of the finite values, as `diffcl eval` reports them. */
static void mean_std(const double *v, int64_t n, double *mean, double *sd)
{
    diffcl_metrics_summarize_ex(v, n, 1, 1, mean, sd, NULL);
}

int cmd_demo(int argc, char **argv)
{
    demo_args d;
    int parsed = demo_args_parse(argc, argv, &d);
    if (parsed != TOOL_ARGS_RUN) return parsed;
    diffcl_context_options co = DIFFCL_CONTEXT_OPTIONS_INIT;
    co.n_threads = d.threads;
    co.log = quiet_log;
    diffcl_context *ctx = NULL;
    if (tool_context_create(&co, &ctx) != DIFFCL_OK) {
        fprintf(stderr, "diffcl demo: %s\n", diffcl_last_error());
        return 1;
    }
    diffcl_context_set_progress(ctx, progress_dots, NULL);
    mkdir(d.out, 0777);
    static scores sc[2][100];
    const char *names[2] = {"supervised", "diffcl"};
    diffcl_status s = DIFFCL_OK;
    fprintf(
        stderr,
        "diffcl demo: 2-D phantom, %d labeled of 24 training cases, %lld iterations, %d seed(s), "
        "%d threads\n",
        d.labeled, (long long)d.iters, d.seeds, diffcl_context_threads(ctx));
    for (int k = 0; k < d.seeds && s == DIFFCL_OK; k++) {
        for (int m = 0; m < 2 && s == DIFFCL_OK; m++) {
            char dir[4096];
            snprintf(dir, sizeof dir, "%s/seed%d_%s", d.out, k, names[m]);
            diffcl_train_options o = DIFFCL_TRAIN_OPTIONS_INIT;
            o.method = m ? DIFFCL_METHOD_DIFFCL : DIFFCL_METHOD_SUPERVISED;
            o.dims = 2;
            o.labeled = d.labeled;
            o.iters = d.iters;
            o.seed = 1337 + (uint64_t)k;
            o.n_filters = d.n_filters;
            o.ds_n_filters = d.n_filters;
            o.out_dir = dir;
            if (d.no_hfm) o.hfm_levels = 0;
            if (d.ddim_steps) o.ddim_steps_train = d.ddim_steps;
            o.val_every = d.iters; /* no validation set: best = last */
            fprintf(stderr, "seed %d: training %s -> %s\n", k, names[m], dir);
            diffcl_trainer *tr = NULL;
            s = diffcl_trainer_create(ctx, &o, &tr);
            if (s == DIFFCL_OK) s = diffcl_trainer_run(tr);
            if (s == DIFFCL_OK)
                s = evaluate(ctx, diffcl_trainer_cs(tr), &d, o.seed, k == 0 ? dir : NULL,
                             &sc[m][k]);
            diffcl_trainer_free(tr);
        }
    }
    if (s != DIFFCL_OK) {
        fprintf(stderr, "diffcl demo: %s: %s\n", diffcl_status_string(s), diffcl_last_error());
        diffcl_context_free(ctx);
        return 1;
    }
    /* per seed: mean over the test cases; table: mean +- std over seeds (over cases if one seed) */
    printf("\n%d-D phantom, %d labeled, %lld iterations, %d held-out cases, %d seed(s)\n", 2,
           d.labeled, (long long)d.iters, d.test_cases, d.seeds);
    printf("%-12s %-18s %-18s %-18s %-18s\n", "method", "Dice", "Jaccard", "HD95 (px)", "ASD (px)");
    for (int m = 0; m < 2; m++) {
        printf("%-12s", names[m]);
        for (int q = 0; q < 4; q++) {
            double mean, sd;
            if (d.seeds == 1)
                mean_std(sc[m][0].v[q], sc[m][0].n, &mean, &sd);
            else {
                double per[100];
                for (int k = 0; k < d.seeds; k++) {
                    double mk, sk;
                    mean_std(sc[m][k].v[q], sc[m][k].n, &mk, &sk);
                    per[k] = mk;
                }
                mean_std(per, d.seeds, &mean, &sd);
            }
            printf(" %7.4f +- %-7.4f", mean, sd);
        }
        printf("\n");
    }
    printf("(sample std over %s; overlays in %s/seed0_*/)\n", d.seeds == 1 ? "test cases" : "seeds",
           d.out);
    diffcl_context_free(ctx);
    return 0;
}
