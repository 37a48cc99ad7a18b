/* The frequency bands the HF-Mamba module works on, drawn by the library itself.
 *
 *   freq_bands [out.png] [cutoff]
 *
 * Takes a 2-D phantom slice, splits it with the FFT filters of fft.h (Gaussian low-pass,
 * high-pass = image - low-pass, a band-pass) and writes one PNG montage:
 *   top row:    image | low band | high band (what HF-Mamba scans) | band-pass
 *   bottom row: the masks M over the spectrum, zero frequency in the centre.
 * Uses only the public API. docs/figures/hf_bands.png is its output with the defaults.
 *
 * Build (it calls <math.h> itself, hence -lm):
 *   cc -std=c11 freq_bands.c $(pkg-config --cflags --libs diffcl) -lm -o freq_bands
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diffcl/diffcl.h"

#define CHECK(expr)                                                                       \
    do {                                                                                  \
        diffcl_status s_ = (expr);                                                        \
        if (s_ != DIFFCL_OK) {                                                            \
            fprintf(stderr, "%s: %s (%s)\n", #expr, diffcl_status_string(s_), diffcl_last_error()); \
            return 1;                                                                     \
        }                                                                                 \
    } while (0)

/* Copy panel p (H x W floats) into column slot `col`, row `row` of the montage, mapping
 * [lo, hi] to [0, 255]. */
static void put(float *mont, int64_t MW, int64_t H, int64_t W, int row, int col, const float *p,
                double lo, double hi)
{
    for (int64_t y = 0; y < H; y++)
        for (int64_t x = 0; x < W; x++) {
            double v = (p[y * W + x] - lo) / (hi - lo) * 255.0;
            mont[(row * (H + 4) + y) * MW + col * (W + 4) + x] = (float)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
}

static void range(const float *p, int64_t n, int symmetric, double *lo, double *hi)
{
    double a = p[0], b = p[0];
    for (int64_t i = 1; i < n; i++) {
        if (p[i] < a) a = p[i];
        if (p[i] > b) b = p[i];
    }
    if (symmetric) {
        double m = fmax(fabs(a), fabs(b));
        a = -m;
        b = m;
    }
    if (b <= a) b = a + 1;
    *lo = a;
    *hi = b;
}

/* Mask in FFT order -> centred (fftshift) */
static void shift(const float *m, float *out, int64_t H, int64_t W)
{
    for (int64_t y = 0; y < H; y++)
        for (int64_t x = 0; x < W; x++)
            out[((y + H / 2) % H) * W + (x + W / 2) % W] = m[y * W + x];
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "hf_bands.png";
    double cutoff = argc > 2 ? atof(argv[2]) : 0.25;
    diffcl_context *ctx = NULL;
    CHECK(diffcl_context_create(NULL, &ctx));

    diffcl_phantom_options po = DIFFCL_PHANTOM_OPTIONS_INIT;
    po.ndim = 2;
    po.height = 128;
    po.width = 128;
    diffcl_tensor *img = NULL;
    CHECK(diffcl_phantom_case(ctx, &po, 3, &img, NULL));
    const int64_t H = 128, W = 128, n = H * W;
    int64_t s4[4] = {1, 1, H, W}, s2[2] = {H, W};
    diffcl_tensor *x = NULL;
    CHECK(diffcl_tensor_reshape(img, 4, s4, &x));

    diffcl_freq_options lo = DIFFCL_FREQ_OPTIONS_INIT, bp = DIFFCL_FREQ_OPTIONS_INIT;
    lo.band = DIFFCL_FREQ_LOW;
    lo.cutoff = cutoff;
    bp.band = DIFFCL_FREQ_BAND;
    bp.cutoff = cutoff / 2;
    bp.cutoff_high = cutoff * 2;
    diffcl_freq_options hp = lo;
    hp.band = DIFFCL_FREQ_HIGH;
    diffcl_tensor *high = NULL, *low = NULL, *band = NULL;
    CHECK(diffcl_freq_split(x, &hp, &high, &low));
    CHECK(diffcl_freq_filter(x, &bp, &band));
    diffcl_tensor *masks[3] = {NULL, NULL, NULL};
    CHECK(diffcl_freq_mask(ctx, DIFFCL_F32, &lo, 2, s2, &masks[0]));
    CHECK(diffcl_freq_mask(ctx, DIFFCL_F32, &hp, 2, s2, &masks[1]));
    CHECK(diffcl_freq_mask(ctx, DIFFCL_F32, &bp, 2, s2, &masks[2]));

    const int64_t MW = 4 * (W + 4), MH = 2 * (H + 4);
    float *mont = calloc((size_t)(MW * MH), sizeof *mont), *buf = malloc((size_t)n * sizeof *buf),
          *sh = malloc((size_t)n * sizeof *sh);
    if (!mont || !buf || !sh) return 1;
    for (int64_t i = 0; i < MW * MH; i++) mont[i] = 255; /* white gutters */
    diffcl_tensor *panels[4] = {x, low, high, band};
    double a, b;
    for (int k = 0; k < 4; k++) {
        CHECK(diffcl_tensor_copy_to(panels[k], buf, (size_t)n * sizeof *buf));
        range(buf, n, k >= 2, &a, &b);
        put(mont, MW, H, W, 0, k, buf, a, b);
    }
    for (int k = 0; k < 3; k++) {
        CHECK(diffcl_tensor_copy_to(masks[k], buf, (size_t)n * sizeof *buf));
        shift(buf, sh, H, W);
        put(mont, MW, H, W, 1, k + 1, sh, 0.0, 1.0);
    }
    diffcl_tensor *mt = NULL;
    int64_t ms[2] = {MH, MW};
    CHECK(diffcl_tensor_from_data(ctx, DIFFCL_F32, 2, ms, mont, &mt));
    CHECK(diffcl_png_write(mt, path, 8));
    printf("wrote %s (%lld x %lld): image | low | high | band-pass, masks below (cutoff %.3g)\n", path,
           (long long)MW, (long long)MH, cutoff);
    free(mont);
    free(buf);
    free(sh);
    diffcl_tensor *all[] = {img, x, high, low, band, masks[0], masks[1], masks[2], mt};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) diffcl_tensor_free(all[i]);
    diffcl_context_free(ctx);
    return 0;
}
