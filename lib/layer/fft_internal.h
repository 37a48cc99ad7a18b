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
    void *fwd;        /* r2c: rbuf -> cbuf */
    void *inv;        /* c2r: cbuf -> rbuf (destroys cbuf) */
    void *rbuf;       /* howmany * nreal reals, FFTW-aligned */
    void *cbuf;       /* howmany * ncplx complex, FFTW-aligned */
    int64_t nreal;    /* n[0] * ... * n[rank-1] */
    int64_t ncplx;    /* n[0] * ... * (n[rank-1] / 2 + 1) */
    struct dc_fft_plan *next;
} dc_fft_plan;

struct dc_fft_cache {
    dc_fft_plan *head;
    int n_plans;
    int rigor;
    int64_t hits, misses;
};

/* The plan for (x's dtype, rank, n, howmany) on ctx, planned on first use (under the
 * process-wide planner lock) and cached in ctx->fft_cache. NULL with the error set. */
dc_fft_plan *dc_fft_plan_get(diffcl_context *ctx, diffcl_dtype dtype, int rank, const int *n,
                             int howmany);

/* Execute a cached plan with new arrays. `in` (nreal*howmany reals) is preserved; `out` may
 * alias nothing else. Arrays that do not share the planned alignment go through the plan's
 * own buffers. */
void dc_fft_exec_r2c(const dc_fft_plan *p, const void *in);
void dc_fft_exec_c2r(const dc_fft_plan *p, void *out);

#endif
