/* Shared raw-buffer helpers of the data layer: keyed draws, Gaussian blur, interpolation. */
#include <math.h>
#include <stdlib.h>

#include "data/data_internal.h"

double dc_draw_uniform(dc_draw *d, double lo, double hi)
{
    uint32_t b[2];
    diffcl_rng_bits(d->key, d->offset, 2, b);
    d->offset += 2;
    /* 53 random bits -> [0, 1) */
    double u =
        ((double)(b[0] >> 5) * 67108864.0 + (double)(b[1] >> 6)) * (1.0 / 9007199254740992.0);
    return lo + (hi - lo) * u;
}

int64_t dc_draw_int(dc_draw *d, int64_t n)
{
    if (n <= 1) {
        d->offset += 2;
        return 0;
    }
    int64_t v = (int64_t)dc_draw_uniform(d, 0.0, (double)n);
    return v < n ? v : n - 1;
}

double dc_draw_normal(dc_draw *d)
{
    double u1 = dc_draw_uniform(d, 0.0, 1.0), u2 = dc_draw_uniform(d, 0.0, 1.0);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

static inline int64_t reflect_index(int64_t i, int64_t n)
{
    /* scipy 'reflect' (half-sample symmetric): ... b a | a b c | c b ... */
    if (n == 1) return 0;
    int64_t period = 2 * n;
    i %= period;
    if (i < 0) i += period;
    return i < n ? i : period - 1 - i;
}

/* Blur along one axis of a [outer, n, inner] view. */
static int blur_axis(float *buf, int64_t outer, int64_t n, int64_t inner, double sigma,
                     int n_threads)
{
    if (sigma <= 0 || n <= 1) return 0;
    int radius = (int)(4.0 * sigma + 0.5);
    if (radius < 1) radius = 1;
    double *k = dc_malloc(sizeof(double) * (size_t)(2 * radius + 1));
    if (!k) return -1;
    double ks = 0;
    for (int j = -radius; j <= radius; j++)
        ks += k[j + radius] = exp(-0.5 * j * j / (sigma * sigma));
    for (int j = 0; j <= 2 * radius; j++) k[j] /= ks;
    int failed = 0;
#pragma omp parallel num_threads(n_threads)
    {
        double *line = dc_malloc(sizeof(double) * (size_t)(n + 2 * radius));
        if (!line) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for collapse(2) schedule(static)
        for (int64_t o = 0; o < outer; o++)
            for (int64_t in = 0; in < inner; in++) {
                if (!line) continue;
                float *p = buf + o * n * inner + in;
                for (int64_t i = -radius; i < n + radius; i++)
                    line[i + radius] = p[reflect_index(i, n) * inner];
                for (int64_t i = 0; i < n; i++) {
                    double acc = 0;
                    const double *l = line + i;
                    for (int j = 0; j <= 2 * radius; j++) acc += k[j] * l[j];
                    p[i * inner] = (float)acc;
                }
            }
        free(line);
    }
    free(k);
    return failed ? -1 : 0;
}

int dc_kern_gauss_blur(float *buf, int64_t n_volumes, const int64_t dims[3], const double sigma[3],
                       int n_threads)
{
    int64_t vol = dims[0] * dims[1] * dims[2];
    if (n_threads < 1) n_threads = 1;
    for (int64_t v = 0; v < n_volumes; v++) {
        float *b = buf + v * vol;
        if (blur_axis(b, 1, dims[0], dims[1] * dims[2], sigma[0], n_threads) ||
            blur_axis(b, dims[0], dims[1], dims[2], sigma[1], n_threads) ||
            blur_axis(b, dims[0] * dims[1], dims[2], 1, sigma[2], n_threads))
            return -1;
    }
    return 0;
}
