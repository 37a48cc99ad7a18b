/* train_phantom: train Diff-CL on the built-in 2-D phantom for a few iterations.
 *
 *   train_phantom OUT_DIR [ITERATIONS [THREADS]]      (defaults: 100 iterations, all cores)
 *
 * Four labeled and twenty unlabeled phantom slices; the two networks of Diff-CL (the CS
 * V-Net with HF-Mamba modules and the diffusion DS) are trained with one optimizer, one
 * diffcl_trainer_step() per iteration. Afterwards OUT_DIR holds
 *   model.safetensors        the CS with its configuration (examples/infer_nifti, diffcl infer)
 *   last.safetensors         the whole trainer state (diffcl_trainer_resume continues from it)
 *   heldout_image.nii.gz     a phantom slice the networks never saw, and its reference
 *   heldout_label.nii.gz     label (when the library has NIfTI support), to try the others on.
 * For a full run with validation, checkpoints and curves use diffcl_trainer_run() (or
 * `diffcl train`).
 *
 * Build against an installed libdiffcl:
 *   cc -std=c11 train_phantom.c $(pkg-config --cflags --libs diffcl) -o train_phantom
 */
#include <stdio.h>
#include <stdlib.h>

#include <diffcl/diffcl.h>

#define CHECK(expr)                                                                          \
    do {                                                                                     \
        diffcl_status check_s_ = (expr);                                                     \
        if (check_s_ != DIFFCL_OK) {                                                         \
            fprintf(stderr, "train_phantom: %s: %s\n", diffcl_status_string(check_s_),      \
                    diffcl_last_error());                                                    \
            exit(1);                                                                         \
        }                                                                                    \
    } while (0)

static void path_in(char *buf, size_t n, const char *dir, const char *name)
{
    snprintf(buf, n, "%s/%s", dir, name);
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: %s OUT_DIR [ITERATIONS [THREADS]]\n", argv[0]);
        return 2;
    }
    const char *out = argv[1];
    long iters = argc > 2 ? strtol(argv[2], NULL, 10) : 100;
    int threads = argc > 3 ? atoi(argv[3]) : 0;
    if (iters < 1) {
        fprintf(stderr, "train_phantom: ITERATIONS must be >= 1\n");
        return 2;
    }

    diffcl_context_options copt;
    diffcl_context_options_init(&copt);
    copt.n_threads = threads;
    copt.log_level = DIFFCL_LOG_WARN;
    diffcl_context *ctx = NULL;
    CHECK(diffcl_context_create(&copt, &ctx));

    /* The method's defaults (train.h), scaled down to a small 2-D problem. */
    diffcl_train_options o;
    diffcl_train_options_init(&o);
    o.layout = "phantom";
    o.dims = 2;
    o.phantom_cases = 24; /* training slices ... */
    o.labeled = 4;        /* ... of which the first 4 are labeled */
    o.patch[1] = o.patch[2] = 64;
    o.n_filters = o.ds_n_filters = 8;
    o.iters = iters;
    o.val_every = 1000000; /* no validation set in this example */
    o.out_dir = out;       /* created */

    diffcl_trainer *tr = NULL;
    CHECK(diffcl_trainer_create(ctx, &o, &tr));
    printf("%lld CS parameters; %ld iterations\n",
           (long long)diffcl_module_num_parameters(diffcl_trainer_cs(tr)), iters);
    for (long it = 0; it < iters; it++) {
        diffcl_train_stats st;
        st.struct_size = sizeof st; /* the library fills what this program knows */
        CHECK(diffcl_trainer_step(tr, &st));
        if (it == 0 || (it + 1) % (iters < 10 ? 1 : iters / 10) == 0)
            printf("it %4lld  loss %.3f  (CS sup %.3f, DS sup %.3f, pseudo %.3f/%.3f, "
                   "contrast %.3f)  mu %.2f  lr %.4f  %.2f s\n",
                   (long long)st.iteration, st.loss, st.cs_sup, st.ds_sup, st.cs_pseudo,
                   st.ds_pseudo, st.contrast, st.mu, st.lr, st.seconds);
    }

    char path[4096];
    path_in(path, sizeof path, out, "model.safetensors");
    CHECK(diffcl_model_save(diffcl_trainer_cs(tr), path));
    printf("wrote %s\n", path);
    path_in(path, sizeof path, out, "last.safetensors");
    CHECK(diffcl_trainer_save(tr, path));
    printf("wrote %s\n", path);

    if (diffcl_io_has_nifti()) {
        /* A held-out slice: another seed and a case index far from the training range. */
        diffcl_phantom_options popt;
        diffcl_phantom_options_init(&popt);
        popt.ndim = 2;
        popt.seed = 99;
        diffcl_tensor *image = NULL, *label = NULL, *slice = NULL;
        CHECK(diffcl_phantom_case(ctx, &popt, 100000, &image, &label));
        CHECK(diffcl_tensor_squeeze(image, 0, &slice)); /* [1, H, W] -> [H, W] */
        path_in(path, sizeof path, out, "heldout_image.nii.gz");
        CHECK(diffcl_nifti_write(slice, path, NULL));
        printf("wrote %s\n", path);
        path_in(path, sizeof path, out, "heldout_label.nii.gz");
        CHECK(diffcl_nifti_write(label, path, NULL));
        printf("wrote %s\n", path);
        diffcl_tensor_free(slice);
        diffcl_tensor_free(label);
        diffcl_tensor_free(image);
    }

    diffcl_trainer_free(tr);
    diffcl_context_free(ctx);
    return 0;
}
