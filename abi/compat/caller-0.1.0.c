/* A program written against the frozen 0.1.0 headers (abi/0.1.0/include), linked and run
 * against the current libdiffcl.so.0: what an application built when 0.1.0 was released
 * does with a newer library of the same soname. abi/compat/run-caller.sh builds it with
 * only -I abi/0.1.0/include, links it against a stub exporting the 0.1.0 symbol versions and
 * runs it (test abi-0.1.0-caller of the abi suite, and scripts/check-abi.sh).
 *
 * It exercises the rule that keeps old binaries working: option structs carry their size,
 * the library reads only struct_size bytes of what a caller passes, and writes only
 * struct_size bytes of what it fills. Every struct the library fills sits in front of a
 * canary that must survive the call.
 *
 * Exit 0 and "OK" on success; a message and exit 1 on the first problem. */
#define _POSIX_C_SOURCE 200809L /* mkstemp, mkdtemp */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <diffcl/diffcl.h>
#include <diffcl/scan.h> /* not in the 0.1.0 umbrella header */

#if DIFFCL_VERSION_NUMBER != 100
#error "caller-0.1.0.c must be compiled against the frozen 0.1.0 headers (-I abi/0.1.0/include)"
#endif

#define CHECK(expr)                                                                          \
    do {                                                                                     \
        diffcl_status check_s_ = (expr);                                                     \
        if (check_s_ != DIFFCL_OK) {                                                         \
            fprintf(stderr, "%s:%d: %s -> %s: %s\n", __FILE__, __LINE__, #expr,              \
                    diffcl_status_string(check_s_), diffcl_last_error());                    \
            exit(1);                                                                         \
        }                                                                                    \
    } while (0)

#define EXPECT(cond, ...)                                                                    \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                                  \
            fprintf(stderr, __VA_ARGS__);                                                    \
            fputc('\n', stderr);                                                             \
            exit(1);                                                                         \
        }                                                                                    \
    } while (0)

#define CANARY 0x5a5a5a5a5a5a5a5aull

/* A 0.1.0 struct followed by a canary the library must not touch. */
struct vnet_opts_guarded {
    diffcl_vnet_options o;
    unsigned long long canary;
};
struct stats_guarded {
    diffcl_train_stats s;
    unsigned long long canary;
};

/* An _init() function of the library fills a 0.1.0-sized struct: it must neither write
 * past it nor claim a larger struct_size (a grown struct needs the old init kept under its
 * old version node, docs/abi-policy.md). */
#define INIT_GUARDED(T, init_fn)                                                             \
    do {                                                                                     \
        struct {                                                                             \
            T s;                                                                             \
            unsigned long long canary;                                                       \
        } g_;                                                                                \
        memset(&g_, 0, sizeof g_);                                                           \
        g_.canary = CANARY;                                                                  \
        init_fn(&g_.s);                                                                      \
        EXPECT(g_.canary == CANARY, #init_fn " wrote past the 0.1.0 size of " #T);          \
        EXPECT(g_.s.struct_size == sizeof(T), #init_fn " set struct_size %zu; 0.1.0's is %zu", \
               g_.s.struct_size, sizeof(T));                                                 \
    } while (0)

static void check_init_functions(void)
{
    INIT_GUARDED(diffcl_augment_options, diffcl_augment_options_init);
    INIT_GUARDED(diffcl_ce_options, diffcl_ce_options_init);
    INIT_GUARDED(diffcl_context_options, diffcl_context_options_init);
    INIT_GUARDED(diffcl_conv_geometry, diffcl_conv_geometry_init);
    INIT_GUARDED(diffcl_conv_options, diffcl_conv_options_init);
    INIT_GUARDED(diffcl_dataset_options, diffcl_dataset_options_init);
    INIT_GUARDED(diffcl_dice_ce_options, diffcl_dice_ce_options_init);
    INIT_GUARDED(diffcl_dice_options, diffcl_dice_options_init);
    INIT_GUARDED(diffcl_diffusion_loss_options, diffcl_diffusion_loss_options_init);
    INIT_GUARDED(diffcl_diffusion_options, diffcl_diffusion_options_init);
    INIT_GUARDED(diffcl_diffusion_sample_options, diffcl_diffusion_sample_options_init);
    INIT_GUARDED(diffcl_freq_options, diffcl_freq_options_init);
    INIT_GUARDED(diffcl_gradcheck_options, diffcl_gradcheck_options_init);
    INIT_GUARDED(diffcl_image_meta, diffcl_image_meta_init);
    INIT_GUARDED(diffcl_load_options, diffcl_load_options_init);
    INIT_GUARDED(diffcl_lr_schedule, diffcl_lr_schedule_init);
    INIT_GUARDED(diffcl_metric_options, diffcl_metric_options_init);
    INIT_GUARDED(diffcl_norm_options, diffcl_norm_options_init);
    INIT_GUARDED(diffcl_param_group_options, diffcl_param_group_options_init);
    INIT_GUARDED(diffcl_phantom_options, diffcl_phantom_options_init);
    INIT_GUARDED(diffcl_proto_contrast_options, diffcl_proto_contrast_options_init);
    INIT_GUARDED(diffcl_sampler_options, diffcl_sampler_options_init);
    INIT_GUARDED(diffcl_scan_options, diffcl_scan_options_init);
    INIT_GUARDED(diffcl_sliding_window_options, diffcl_sliding_window_options_init);
    INIT_GUARDED(diffcl_train_options, diffcl_train_options_init);
    INIT_GUARDED(diffcl_vnet_options, diffcl_vnet_options_init);
}

static void quiet_log(diffcl_log_level level, const char *msg, void *user)
{
    (void)level;
    (void)msg;
    (void)user;
}

int main(void)
{
    /* The library is of the same major and at least as new as the headers. */
    unsigned v = diffcl_version_number();
    EXPECT(v / 10000 == DIFFCL_VERSION_MAJOR && v >= DIFFCL_VERSION_NUMBER,
           "library %s is not a 0.x >= 0.1.0 library", diffcl_version_string());
    printf("headers %s, library %s\n", DIFFCL_VERSION_STRING, diffcl_version_string());

    check_init_functions();

    /* context options: _INIT macro of 0.1.0 */
    diffcl_context_options copt = DIFFCL_CONTEXT_OPTIONS_INIT;
    copt.n_threads = 1;
    copt.log = quiet_log;
    diffcl_context *ctx = NULL;
    CHECK(diffcl_context_create(&copt, &ctx));
    EXPECT(diffcl_context_threads(ctx) == 1, "n_threads of a 0.1.0 options struct was not read");

    /* the same defaults through the _init() function */
    diffcl_context_options copt2;
    memset(&copt2, 0xff, sizeof copt2);
    diffcl_context_options_init(&copt2);
    EXPECT(copt2.n_threads == 0 && copt2.log == NULL && copt2.log_level == DIFFCL_LOG_INFO,
           "diffcl_context_options_init of the library disagrees with the 0.1.0 layout");

    /* a 2-D phantom case (option struct passed in) */
    diffcl_phantom_options popt = DIFFCL_PHANTOM_OPTIONS_INIT;
    popt.ndim = 2;
    popt.height = popt.width = 32;
    diffcl_tensor *img = NULL, *lab = NULL;
    CHECK(diffcl_phantom_case(ctx, &popt, 0, &img, &lab));
    int64_t shape[DIFFCL_MAX_DIMS];
    EXPECT(diffcl_tensor_shape(img, shape) == 3 && shape[0] == 1 && shape[1] == 32 &&
               shape[2] == 32, "phantom image is not [1, 32, 32]");

    /* a data set whose options embed the phantom options */
    diffcl_dataset_options dopt = DIFFCL_DATASET_OPTIONS_INIT;
    dopt.layout = DIFFCL_LAYOUT_PHANTOM;
    dopt.n_cases = 3;
    dopt.phantom = popt;
    diffcl_dataset *ds = NULL;
    CHECK(diffcl_dataset_open(ctx, NULL, &dopt, &ds));
    EXPECT(diffcl_dataset_size(ds) == 3, "data set of 3 phantom cases has %lld",
           (long long)diffcl_dataset_size(ds));
    diffcl_dataset_free(ds);

    /* a small 2-D V-Net; the library fills a 0.1.0-sized options struct */
    diffcl_vnet_options vopt = DIFFCL_VNET_OPTIONS_INIT;
    vopt.dims = 2;
    vopt.n_filters = 4;
    vopt.has_dropout = 0;
    vopt.seed = 7;
    diffcl_module *net = NULL;
    CHECK(diffcl_vnet_create(ctx, &vopt, &net));
    struct vnet_opts_guarded got;
    memset(&got, 0, sizeof got);
    got.o.struct_size = sizeof got.o;
    got.canary = CANARY;
    CHECK(diffcl_vnet_get_options(net, &got.o));
    EXPECT(got.canary == CANARY, "diffcl_vnet_get_options wrote past the 0.1.0 struct_size");
    EXPECT(got.o.dims == 2 && got.o.n_filters == 4 && got.o.seed == 7,
           "diffcl_vnet_get_options returned other options");

    /* sliding-window segmentation with 0.1.0 options, then metrics with 0.1.0 options */
    diffcl_module_train(net, 0);
    diffcl_sliding_window_options sw = DIFFCL_SLIDING_WINDOW_OPTIONS_INIT;
    sw.patch[0] = sw.stride[0] = 1;
    sw.patch[1] = sw.patch[2] = 32;
    sw.stride[1] = sw.stride[2] = 16;
    diffcl_tensor *pred = NULL;
    CHECK(diffcl_segment(net, img, &sw, &pred, NULL));
    diffcl_metric_options mopt = DIFFCL_METRIC_OPTIONS_INIT;
    diffcl_seg_metrics m;
    CHECK(diffcl_metrics_binary(lab, lab, &mopt, &m));
    EXPECT(m.dice == 1.0 && m.hd95 == 0.0, "label against itself: dice %g hd95 %g", m.dice,
           m.hd95);
    CHECK(diffcl_metrics_per_class(pred, lab, 2, &mopt, &m));
    EXPECT(m.dice >= 0.0 && m.dice <= 1.0, "dice %g out of [0, 1]", m.dice);

    /* a model checkpoint round trip with 0.1.0 load options */
    char path[] = "/tmp/diffcl-abi-compat-XXXXXX";
    int fd = mkstemp(path);
    EXPECT(fd >= 0, "mkstemp failed");
    close(fd);
    CHECK(diffcl_model_save(net, path));
    diffcl_module *again = NULL;
    CHECK(diffcl_model_load(ctx, path, &again));
    diffcl_load_options lopt = DIFFCL_LOAD_OPTIONS_INIT;
    CHECK(diffcl_module_load(again, path, &lopt));
    remove(path);
    diffcl_module_free(again);

    /* two trainer iterations on the phantom; the library fills a 0.1.0 stats struct */
    char run_dir[] = "/tmp/diffcl-abi-compat-run-XXXXXX";
    EXPECT(mkdtemp(run_dir) != NULL, "mkdtemp failed");
    diffcl_train_options topt = DIFFCL_TRAIN_OPTIONS_INIT;
    topt.dims = 2;
    topt.labeled = 2;
    topt.phantom_cases = 4;
    topt.patch[1] = topt.patch[2] = 32;
    topt.batch_labeled = topt.batch_unlabeled = 1;
    topt.n_filters = topt.ds_n_filters = 4;
    topt.hfm_levels = 0;
    topt.ddim_steps_train = 2;
    topt.contrast_voxels = 64;
    topt.iters = 2;
    topt.val_every = 1000000;
    topt.out_dir = run_dir;
    diffcl_trainer *tr = NULL;
    CHECK(diffcl_trainer_create(ctx, &topt, &tr));
    for (int i = 0; i < 2; i++) {
        struct stats_guarded st;
        memset(&st, 0, sizeof st);
        st.s.struct_size = sizeof st.s;
        st.canary = CANARY;
        CHECK(diffcl_trainer_step(tr, &st.s));
        EXPECT(st.canary == CANARY, "diffcl_trainer_step wrote past the 0.1.0 struct_size");
        EXPECT(st.s.iteration == i + 1 && isfinite(st.s.loss), "iteration %lld loss %g",
               (long long)st.s.iteration, st.s.loss);
    }
    diffcl_trainer_free(tr);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", run_dir);
    EXPECT(system(cmd) == 0, "could not remove %s", run_dir);

    /* errors still come back as 0.1.0 status codes with a message */
    diffcl_tensor *bad = NULL;
    diffcl_status s = diffcl_tensor_new(ctx, DIFFCL_F32, 9, shape, &bad);
    EXPECT(s == DIFFCL_ERR_INVALID_ARGUMENT || s == DIFFCL_ERR_SHAPE,
           "9-d tensor: status %d", (int)s);
    EXPECT(diffcl_last_error()[0] != '\0', "no error message");

    diffcl_tensor_free(pred);
    diffcl_module_free(net);
    diffcl_tensor_free(lab);
    diffcl_tensor_free(img);
    diffcl_context_free(ctx);
    printf("OK\n");
    return 0;
}
