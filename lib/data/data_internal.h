/* Internal helpers of the data layer (raw-buffer kernels usable from worker threads: they
 * touch no context). Not exported. */
#ifndef DIFFCL_DATA_INTERNAL_H
#define DIFFCL_DATA_INTERNAL_H

#include <stdint.h>

#include "core/core_internal.h"
#include "diffcl/data.h"

/* Sequential draws from one key: a tiny stream over diffcl_rng_uniform. */
typedef struct dc_draw {
    diffcl_rng_key key;
    uint64_t offset;
} dc_draw;

static inline dc_draw dc_draw_make(uint64_t seed, uint32_t stream, uint32_t index,
                                   uint32_t iteration)
{
    dc_draw d;
    d.key = diffcl_rng_key_make(seed, stream, index, iteration);
    d.offset = 0;
    return d;
}
/* Uniform in [lo, hi). */
double dc_draw_uniform(dc_draw *d, double lo, double hi);
/* Uniform integer in [0, n) (n >= 1). */
int64_t dc_draw_int(dc_draw *d, int64_t n);
/* Standard normal. */
double dc_draw_normal(dc_draw *d);

/* In-place separable Gaussian blur of a contiguous volume dims[0] x dims[1] x dims[2]
 * (use dims[0] = 1 for 2-D), sigma per axis in voxels (0: axis untouched); the kernel is
 * truncated at 4 sigma and the border mirrored as scipy.ndimage's mode 'reflect'.
 * @p n_volumes consecutive volumes are blurred. Returns 0, or -1 when out of memory. */
int dc_kern_gauss_blur(float *buf, int64_t n_volumes, const int64_t dims[3], const double sigma[3],
                       int n_threads);

#endif
