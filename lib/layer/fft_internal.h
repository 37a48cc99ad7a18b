/* The FFT plan cache (lib/layer/fft_plan.c) used by the frequency filters (fft_split.c).
 * Nothing here is exported. */
#ifndef DIFFCL_FFT_INTERNAL_H
#define DIFFCL_FFT_INTERNAL_H

#include "diffcl/fft.h"
#include "tensor/tensor_internal.h"

/* One cached pair of r2c / c2r plans for `howmany` transforms of size n[0..rank), packed
 * contiguously (real stride nreal, complex stride ncplx), with the buffers they were planned
 * on. The plans are fftwf_plan (F32) or fftw_plan (F64), stored as void pointers. */
typedef struct dc_fft_plan {
    diffcl_dtype dtype;
    int rank;
    int n[3];
    int howmany;
    int threads;
    int rigor;
    void *fwd;     /* r2c: rbuf -> cbuf */
    void *inv;     /* c2r: cbuf -> rbuf (destroys cbuf) */
    void *rbuf;    /* howmany * nreal reals, FFTW-aligned */
    void *cbuf;    /* howmany * ncplx complex, FFTW-aligned */
    int64_t nreal; /* n[0] * ... * n[rank-1] */
    int64_t ncplx; /* n[0] * ... * (n[rank-1] / 2 + 1) */
    struct dc_fft_plan *next;
} dc_fft_plan;

struct dc_fft_cache {
    dc_fft_plan *head;
    int n_plans;
    int rigor;
    int64_t hits, misses;
};

/* The plan for (dtype, rank, n, howmany) executed by `threads` FFTW threads (1 for F64 and
 * in builds without FFTW threads), planned on first use (under the process-wide planner
 * lock) and cached in ctx->fft_cache. NULL with the error set. */
dc_fft_plan *dc_fft_plan_get(diffcl_context *ctx, diffcl_dtype dtype, int rank, const int *n,
                             int howmany, int threads);

/* Execute a cached plan on new arrays: r2c from `in` (howmany*nreal reals, preserved) into
 * `cbuf`, c2r from `cbuf` (destroyed) into `out`. `cbuf` must have the planned alignment
 * (the plan's own cbuf, or an fftw(f)_malloc'd buffer); `in` / `out` that do not share the
 * planned alignment go through `rtmp` (howmany*nreal reals with the planned alignment). */
void dc_fft_exec_r2c(const dc_fft_plan *p, const void *in, void *cbuf, void *rtmp);
void dc_fft_exec_c2r(const dc_fft_plan *p, void *cbuf, void *out, void *rtmp);
/* fftw(f)_malloc / fftw(f)_free for the plan's precision. */
void *dc_fft_alloc(diffcl_dtype dtype, size_t bytes);
void dc_fft_free(diffcl_dtype dtype, void *p);

#endif
