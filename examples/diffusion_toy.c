/* diffusion_toy: train the Diff-CL diffusion segmentation network (the "DS") on a tiny 2D task
 * -- discs and squares of random size and place in noise, 32x32 -- then
 *   - sample label maps with DDIM from pure noise conditioned on held-out images,
 *   - noise the true label maps to several t and denoise them once,
 * and write a PNG montage: one row per held-out image with
 *   image | true label | x_t (foreground channel) and one-step label for each t | DDIM label.
 * It is the longer version of the learning test of the `diffusion` suite and uses only the
 * public API (include/diffcl) and the shared library.
 *
 * usage: diffusion_toy [OUT_DIR [ITERATIONS [THREADS]]]   (defaults: ., 1500, 0 = all cores)
 *
 * Build (it calls <math.h> itself, hence -lm):
 *   cc -std=c11 diffusion_toy.c $(pkg-config --cflags --libs diffcl) -lm -o diffusion_toy
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diffcl/diffcl.h"

#define S 32      /* image side */
#define B 8       /* training batch */
#define NT 32     /* held-out images */
#define ZOOM 4    /* montage pixels per image pixel */

#define CHECK(expr)                                                                          \
    do {                                                                                     \
        diffcl_status check_s_ = (expr);                                                     \
        if (check_s_ != DIFFCL_OK) {                                                         \
            fprintf(stderr, "%s:%d: %s -> %s: %s\n", __FILE__, __LINE__, #expr,              \
                    diffcl_status_string(check_s_), diffcl_last_error());                    \
            exit(1);                                                                         \
        }                                                                                    \
    } while (0)

/* Discs and squares of random size and place in Gaussian noise; label 1 inside the shape. */
static void toy_batch(int n_images, uint64_t seed, uint32_t first, float *img, int64_t *lab)
{
    for (int n = 0; n < n_images; n++) {
        float u[4];
        diffcl_rng_uniform(diffcl_rng_key_make(seed, 77, first + (uint32_t)n, 0), 0, 4, 0.0f, 1.0f, u);
        double r = 4 + 6 * u[0], cy = r + u[1] * (S - 2 * r), cx = r + u[2] * (S - 2 * r);
        int square = u[3] < 0.5f;
        float *im = img + (size_t)n * S * S;
        diffcl_rng_normal(diffcl_rng_key_make(seed, 78, first + (uint32_t)n, 0), 0, (size_t)S * S, 0.0f,
                          0.6f, im);
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) {
                double dy = y + 0.5 - cy, dx = x + 0.5 - cx;
                int in = square ? (fabs(dy) < r * 0.886 && fabs(dx) < r * 0.886) : (dy * dy + dx * dx < r * r);
                lab[((size_t)n * S + y) * S + x] = in;
                im[y * S + x] += in ? 1.0f : 0.0f;
            }
    }
}

/* Foreground Dice of argmax(logits [N,2,S,S]) against lab, pooled over the batch; the
 * argmax is written to pred (N*S*S) when not NULL. */
static double fg_dice(const diffcl_tensor *logits, const int64_t *lab, int n_images, int64_t *pred)
{
    diffcl_tensor *am = NULL;
    CHECK(diffcl_argmax(logits, 1, 0, &am));
    const int64_t *p = diffcl_tensor_data_const(am);
    double inter = 0, a = 0, b = 0;
    for (int64_t i = 0; i < (int64_t)n_images * S * S; i++) {
        inter += p[i] == 1 && lab[i] == 1;
        a += p[i] == 1;
        b += lab[i] == 1;
        if (pred) pred[i] = p[i];
    }
    diffcl_tensor_free(am);
    return a + b > 0 ? 2 * inter / (a + b) : 1.0;
}

/* ---- montage ---- */

typedef struct montage {
    int rows, cols, w, h;
    float *pix; /* grey 0..255 */
} montage;

static void tile(montage *m, int row, int col, const float *v, double lo, double hi)
{
    int x0 = 2 + col * (S * ZOOM + 2), y0 = 2 + row * (S * ZOOM + 2);
    for (int y = 0; y < S * ZOOM; y++)
        for (int x = 0; x < S * ZOOM; x++) {
            double t = (v[(y / ZOOM) * S + x / ZOOM] - lo) / (hi - lo);
            t = t < 0 ? 0 : t > 1 ? 1 : t;
            m->pix[(size_t)(y0 + y) * m->w + x0 + x] = (float)(255.0 * t);
        }
}

static void tile_labels(montage *m, int row, int col, const int64_t *l)
{
    float v[S * S];
    for (int i = 0; i < S * S; i++) v[i] = (float)l[i];
    tile(m, row, col, v, 0, 1);
}

int main(int argc, char **argv)
{
    const char *out_dir = argc > 1 ? argv[1] : ".";
    int iters = argc > 2 ? atoi(argv[2]) : 1500;
    int threads = argc > 3 ? atoi(argv[3]) : 0;
    if (iters < 1) iters = 1;

    diffcl_context_options co = DIFFCL_CONTEXT_OPTIONS_INIT;
    co.n_threads = threads;
    diffcl_context *ctx = NULL;
    CHECK(diffcl_context_create(&co, &ctx));

    diffcl_diffusion_options o;
    diffcl_diffusion_options_init(&o);
    o.dims = 2;
    o.n_filters = 8;
    o.time_embed_dim = 64;
    o.time_hidden_dim = 128;
    o.seed = 42;
    diffcl_module *m = NULL;
    CHECK(diffcl_diffusion_create(ctx, &o, &m));
    printf("denoiser: 2D, %d filters, %lld parameters, T = %d\n", o.n_filters,
           (long long)diffcl_module_num_parameters(m), o.timesteps);

    diffcl_optimizer *opt = NULL;
    diffcl_param_group_options po;
    diffcl_param_group_options_init(&po);
    po.lr = 2e-3;
    CHECK(diffcl_optimizer_create(ctx, DIFFCL_OPTIM_ADAM, &opt));
    CHECK(diffcl_optimizer_add_module(opt, m, &po, 0, NULL));

    float *img = malloc(sizeof(float) * B * S * S);
    int64_t *lab = malloc(sizeof(int64_t) * B * S * S);
    double running = 0;
    for (int it = 0; it < iters; it++) {
        toy_batch(B, 1, (uint32_t)(it * B), img, lab);
        diffcl_tensor *image = NULL, *label = NULL, *loss = NULL;
        CHECK(diffcl_tensor_from_data(ctx, DIFFCL_F32, 4, (int64_t[]){B, 1, S, S}, img, &image));
        CHECK(diffcl_tensor_from_data(ctx, DIFFCL_I64, 3, (int64_t[]){B, S, S}, lab, &label));
        diffcl_module_set_step(m, (uint32_t)it);
        CHECK(diffcl_diffusion_loss(m, image, label, diffcl_rng_key_make(5, 1, (uint32_t)(it * B), (uint32_t)it),
                                    &loss, NULL));
        double v = 0;
        CHECK(diffcl_tensor_item(loss, &v));
        running = it ? 0.95 * running + 0.05 * v : v;
        CHECK(diffcl_backward(loss, NULL));
        CHECK(diffcl_optimizer_set_lr(opt, -1, diffcl_lr_poly(2e-3, it, iters, 0.9)));
        CHECK(diffcl_optimizer_step(opt));
        diffcl_optimizer_zero_grad(opt);
        diffcl_tensor_free(loss);
        diffcl_tensor_free(image);
        diffcl_tensor_free(label);
        if ((it + 1) % 100 == 0 || it + 1 == iters) printf("iteration %5d  loss %.4f\n", it + 1, running);
    }
    free(img);
    free(lab);

    /* held-out images */
    float *ti = malloc(sizeof(float) * NT * S * S);
    int64_t *tl = malloc(sizeof(int64_t) * NT * S * S), *pred = malloc(sizeof(int64_t) * NT * S * S);
    toy_batch(NT, 1, 1000000u, ti, tl);
    diffcl_tensor *image = NULL, *label = NULL, *x0 = NULL, *sample = NULL;
    CHECK(diffcl_tensor_from_data(ctx, DIFFCL_F32, 4, (int64_t[]){NT, 1, S, S}, ti, &image));
    CHECK(diffcl_tensor_from_data(ctx, DIFFCL_I64, 3, (int64_t[]){NT, S, S}, tl, &label));
    CHECK(diffcl_diffusion_encode_label(label, 2, &x0));
    diffcl_module_train(m, 0);

    const int ts[3] = {100, 500, 900};
    const int ncols = 2 + 2 * 3 + 1, nrows = 4;
    montage mt = {nrows, ncols, 2 + ncols * (S * ZOOM + 2), 2 + nrows * (S * ZOOM + 2), NULL};
    mt.pix = calloc((size_t)mt.w * mt.h, sizeof(float));
    for (int r = 0; r < nrows; r++) {
        tile(&mt, r, 0, ti + (size_t)r * S * S, -1.5, 2.5);
        tile_labels(&mt, r, 1, tl + (size_t)r * S * S);
    }

    printf("one-step denoising of the noised true label (held-out Dice):\n");
    const int all_t[7] = {0, 50, 100, 300, 500, 700, 900};
    for (int k = 0; k < 7; k++) {
        diffcl_tensor *one = NULL;
        CHECK(diffcl_diffusion_denoise_once(m, image, x0, all_t[k], diffcl_rng_key_make(9, 3, 0, 0), &one));
        printf("  t = %3d  Dice %.4f\n", all_t[k], fg_dice(one, tl, NT, NULL));
        diffcl_tensor_free(one);
    }
    for (int k = 0; k < 3; k++) {
        /* the x_t the one-step mode sees: q_sample with the same key */
        diffcl_tensor *xt = NULL, *one = NULL;
        int64_t tv[NT];
        for (int n = 0; n < NT; n++) tv[n] = ts[k];
        CHECK(diffcl_diffusion_q_sample(diffcl_diffusion_get_schedule(m), x0, tv, diffcl_rng_key_make(9, 3, 0, 0),
                                        &xt, NULL));
        CHECK(diffcl_diffusion_denoise_once(m, image, x0, ts[k], diffcl_rng_key_make(9, 3, 0, 0), &one));
        fg_dice(one, tl, NT, pred);
        const float *px = diffcl_tensor_data_const(xt);
        for (int r = 0; r < nrows; r++) {
            tile(&mt, r, 2 + 2 * k, px + ((size_t)r * 2 + 1) * S * S, -2.5, 2.5); /* foreground channel */
            tile_labels(&mt, r, 3 + 2 * k, pred + (size_t)r * S * S);
        }
        diffcl_tensor_free(xt);
        diffcl_tensor_free(one);
    }

    diffcl_diffusion_sample_options so;
    diffcl_diffusion_sample_options_init(&so);
    so.key = diffcl_rng_key_make(9, 2, 0, 0);
    for (int steps = 1; steps <= 10; steps = steps < 4 ? steps * 2 : steps + 6) {
        so.steps = steps;
        diffcl_tensor_free(sample);
        CHECK(diffcl_diffusion_sample(m, image, &so, &sample));
        printf("DDIM from pure noise, %2d steps: held-out Dice %.4f\n", steps, fg_dice(sample, tl, NT, pred));
    }
    diffcl_tensor *plabel = NULL;
    CHECK(diffcl_diffusion_pseudo_label(sample, &plabel, NULL));
    printf("pseudo labels (smoothed softmax, 10 steps): held-out Dice ");
    {
        const int64_t *p = diffcl_tensor_data_const(plabel);
        double inter = 0, a = 0, b = 0;
        for (int i = 0; i < NT * S * S; i++) {
            inter += p[i] == 1 && tl[i] == 1;
            a += p[i] == 1;
            b += tl[i] == 1;
        }
        printf("%.4f\n", 2 * inter / (a + b));
    }
    for (int r = 0; r < nrows; r++) tile_labels(&mt, r, ncols - 1, pred + (size_t)r * S * S);

    diffcl_tensor *pic = NULL;
    CHECK(diffcl_tensor_from_data(ctx, DIFFCL_F32, 2, (int64_t[]){mt.h, mt.w}, mt.pix, &pic));
    char path[4096];
    snprintf(path, sizeof path, "%s/diffusion_toy.png", out_dir);
    CHECK(diffcl_png_write(pic, path, 8));
    printf("wrote %s: rows = held-out images; columns = image, true label, then x_t and the one-step\n"
           "label at t = 100, 500, 900, then the 10-step DDIM label\n", path);
    snprintf(path, sizeof path, "%s/diffusion_toy.safetensors", out_dir);
    CHECK(diffcl_diffusion_save(m, path));
    printf("wrote %s\n", path);

    diffcl_tensor_free(pic);
    diffcl_tensor_free(plabel);
    diffcl_tensor_free(sample);
    diffcl_tensor_free(x0);
    diffcl_tensor_free(image);
    diffcl_tensor_free(label);
    free(mt.pix);
    free(ti);
    free(tl);
    free(pred);
    diffcl_optimizer_free(opt);
    diffcl_module_free(m);
    diffcl_context_free(ctx);
    return 0;
}
