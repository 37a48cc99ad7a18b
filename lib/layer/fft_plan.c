/* FFTW plans: the per-context cache, the process-wide planner lock, threads, wisdom.
 *
 * FFTW facts this file is built on:
 * - Only fftw_execute* is thread-safe; the planner, fftw_destroy_plan and the wisdom
 *   functions share global state, so every call to them holds `planner_lock`.
 * - fftwf_init_threads() must run once before any threaded plan is made (pthread_once);
 *   fftwf_plan_with_nthreads() is global planner state, set under the lock right before
 *   each plan, so the thread count becomes part of the plan (and of the cache key).
 * - A plan executed on new arrays needs arrays with the alignment it was planned with
 *   (fftwf_alignment_of); the plans are made on fftwf_malloc'd buffers, and arrays that do
 *   not match go through an fftwf_malloc'd buffer. New-array execution of one plan from
 *   several threads at once is allowed (fftw_execute_dft_* are thread-safe).
 * - An out-of-place c2r destroys its input; r2c preserves it.
 * - FFTW_ESTIMATE (the default rigor) never times anything, so plans and results are the
 *   same on every run; MEASURE/PATIENT plans may differ unless wisdom is imported.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fftw3.h>

#include "diffcl_config.h"
#include "layer/fft_internal.h"

static pthread_mutex_t planner_lock = PTHREAD_MUTEX_INITIALIZER;

#if DIFFCL_HAVE_FFTW_THREADS
static pthread_once_t threads_once = PTHREAD_ONCE_INIT;
static int threads_ok;
static void init_threads(void)
{
    threads_ok = fftwf_init_threads() != 0;
}
#endif

static unsigned rigor_flags(int rigor)
{
    switch (rigor) {
    case DIFFCL_FFT_MEASURE: return FFTW_MEASURE;
    case DIFFCL_FFT_PATIENT: return FFTW_PATIENT;
    default: return FFTW_ESTIMATE;
    }
}

/* Called with the planner lock held. */
static void plan_destroy_locked(dc_fft_plan *p)
{
    if (!p) return;
    if (p->dtype == DIFFCL_F32) {
        if (p->fwd) fftwf_destroy_plan((fftwf_plan)p->fwd);
        if (p->inv) fftwf_destroy_plan((fftwf_plan)p->inv);
        fftwf_free(p->rbuf);
        fftwf_free(p->cbuf);
    } else {
        if (p->fwd) fftw_destroy_plan((fftw_plan)p->fwd);
        if (p->inv) fftw_destroy_plan((fftw_plan)p->inv);
        fftw_free(p->rbuf);
        fftw_free(p->cbuf);
    }
    free(p);
}

static void cache_clear(struct dc_fft_cache *c)
{
    if (!c) return;
    pthread_mutex_lock(&planner_lock);
    dc_fft_plan *p = c->head;
    while (p) {
        dc_fft_plan *next = p->next;
        plan_destroy_locked(p);
        p = next;
    }
    pthread_mutex_unlock(&planner_lock);
    c->head = NULL;
    c->n_plans = 0;
}

static void cache_free(struct dc_fft_cache *c)
{
    cache_clear(c);
    free(c);
}

static struct dc_fft_cache *cache_of(diffcl_context *ctx)
{
    if (!ctx->fft_cache) {
        ctx->fft_cache = dc_calloc_raw(1, sizeof *ctx->fft_cache);
        if (!ctx->fft_cache) {
            dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "fft: out of memory creating the plan cache");
            return NULL;
        }
        ctx->fft_cache->rigor = DIFFCL_FFT_ESTIMATE;
        ctx->fft_cache_free = cache_free;
    }
    return ctx->fft_cache;
}

/* Plan one r2c/c2r pair; called with the planner lock held. */
static dc_fft_plan *plan_make_locked(diffcl_dtype dtype, int rank, const int *n, int howmany,
                                     int threads, int rigor)
{
    dc_fft_plan *p = dc_calloc_raw(1, sizeof *p);
    if (!p) return NULL;
    p->dtype = dtype;
    p->rank = rank;
    p->howmany = howmany;
    p->threads = threads;
    p->rigor = rigor;
    p->nreal = 1;
    for (int i = 0; i < rank; i++) {
        p->n[i] = n[i];
        p->nreal *= n[i];
    }
    p->ncplx = p->nreal / n[rank - 1] * (n[rank - 1] / 2 + 1);
    size_t nr = (size_t)(p->nreal * howmany), nc = (size_t)(p->ncplx * howmany);
    unsigned flags = rigor_flags(rigor);
    int nn[3] = {n[0], rank > 1 ? n[1] : 1, rank > 2 ? n[2] : 1};
    if (dtype == DIFFCL_F32) {
        p->rbuf = fftwf_alloc_real(nr);
        p->cbuf = fftwf_alloc_complex(nc);
        if (!p->rbuf || !p->cbuf) goto fail;
#if DIFFCL_HAVE_FFTW_THREADS
        if (threads_ok) fftwf_plan_with_nthreads(threads);
#endif
        p->fwd =
            fftwf_plan_many_dft_r2c(rank, nn, howmany, (float *)p->rbuf, NULL, 1, (int)p->nreal,
                                    (fftwf_complex *)p->cbuf, NULL, 1, (int)p->ncplx, flags);
        p->inv =
            fftwf_plan_many_dft_c2r(rank, nn, howmany, (fftwf_complex *)p->cbuf, NULL, 1,
                                    (int)p->ncplx, (float *)p->rbuf, NULL, 1, (int)p->nreal, flags);
    } else {
        /* double precision (gradient checks): single-threaded, no threads library needed */
        p->rbuf = fftw_alloc_real(nr);
        p->cbuf = fftw_alloc_complex(nc);
        if (!p->rbuf || !p->cbuf) goto fail;
        p->fwd =
            fftw_plan_many_dft_r2c(rank, nn, howmany, (double *)p->rbuf, NULL, 1, (int)p->nreal,
                                   (fftw_complex *)p->cbuf, NULL, 1, (int)p->ncplx, flags);
        p->inv =
            fftw_plan_many_dft_c2r(rank, nn, howmany, (fftw_complex *)p->cbuf, NULL, 1,
                                   (int)p->ncplx, (double *)p->rbuf, NULL, 1, (int)p->nreal, flags);
    }
    if (!p->fwd || !p->inv) goto fail;
    return p;
fail:
    plan_destroy_locked(p);
    return NULL;
}

dc_fft_plan *dc_fft_plan_get(diffcl_context *ctx, diffcl_dtype dtype, int rank, const int *n,
                             int howmany, int threads)
{
    struct dc_fft_cache *c = cache_of(ctx);
    if (!c) return NULL;
    if (dtype != DIFFCL_F32 || threads < 1) threads = 1;
#if !DIFFCL_HAVE_FFTW_THREADS
    threads = 1;
#endif
    for (dc_fft_plan *p = c->head; p; p = p->next) {
        if (p->dtype != dtype || p->rank != rank || p->howmany != howmany ||
            p->threads != threads || p->rigor != c->rigor)
            continue;
        int same = 1;
        for (int i = 0; i < rank; i++) same &= p->n[i] == n[i];
        if (same) {
            c->hits++;
            return p;
        }
    }
#if DIFFCL_HAVE_FFTW_THREADS
    if (dtype == DIFFCL_F32) pthread_once(&threads_once, init_threads);
#endif
    pthread_mutex_lock(&planner_lock);
    dc_fft_plan *p = plan_make_locked(dtype, rank, n, howmany, threads, c->rigor);
    pthread_mutex_unlock(&planner_lock);
    if (!p) {
        dc_error(DIFFCL_ERR_INTERNAL,
                 "fft: FFTW could not plan a %d-d %s transform of %d x [%d,%d,%d] "
                 "(out of memory?)",
                 rank, diffcl_dtype_name(dtype), howmany, n[0], rank > 1 ? n[1] : 1,
                 rank > 2 ? n[2] : 1);
        return NULL;
    }
    c->misses++;
    p->next = c->head;
    c->head = p;
    c->n_plans++;
    return p;
}

void *dc_fft_alloc(diffcl_dtype dtype, size_t bytes)
{
    return dtype == DIFFCL_F32 ? fftwf_malloc(bytes) : fftw_malloc(bytes);
}

void dc_fft_free(diffcl_dtype dtype, void *ptr)
{
    if (!ptr) return;
    if (dtype == DIFFCL_F32)
        fftwf_free(ptr);
    else
        fftw_free(ptr);
}

void dc_fft_exec_r2c(const dc_fft_plan *p, const void *in, void *cbuf, void *rtmp)
{
    size_t bytes = (size_t)(p->nreal * p->howmany) * diffcl_dtype_size(p->dtype);
    if (p->dtype == DIFFCL_F32) {
        if (fftwf_alignment_of((float *)in) != fftwf_alignment_of((float *)p->rbuf)) {
            memcpy(rtmp, in, bytes);
            in = rtmp;
        }
        fftwf_execute_dft_r2c((fftwf_plan)p->fwd, (float *)in, (fftwf_complex *)cbuf);
    } else {
        if (fftw_alignment_of((double *)in) != fftw_alignment_of((double *)p->rbuf)) {
            memcpy(rtmp, in, bytes);
            in = rtmp;
        }
        fftw_execute_dft_r2c((fftw_plan)p->fwd, (double *)in, (fftw_complex *)cbuf);
    }
}

void dc_fft_exec_c2r(const dc_fft_plan *p, void *cbuf, void *out, void *rtmp)
{
    size_t bytes = (size_t)(p->nreal * p->howmany) * diffcl_dtype_size(p->dtype);
    if (p->dtype == DIFFCL_F32) {
        if (fftwf_alignment_of((float *)out) == fftwf_alignment_of((float *)p->rbuf)) {
            fftwf_execute_dft_c2r((fftwf_plan)p->inv, (fftwf_complex *)cbuf, (float *)out);
        } else {
            fftwf_execute_dft_c2r((fftwf_plan)p->inv, (fftwf_complex *)cbuf, (float *)rtmp);
            memcpy(out, rtmp, bytes);
        }
    } else {
        if (fftw_alignment_of((double *)out) == fftw_alignment_of((double *)p->rbuf)) {
            fftw_execute_dft_c2r((fftw_plan)p->inv, (fftw_complex *)cbuf, (double *)out);
        } else {
            fftw_execute_dft_c2r((fftw_plan)p->inv, (fftw_complex *)cbuf, (double *)rtmp);
            memcpy(out, rtmp, bytes);
        }
    }
}

/* ---------------------------------------------------------------- public ---- */

diffcl_status diffcl_fft_set_rigor(diffcl_context *ctx, diffcl_fft_rigor rigor)
{
    DC_CHECK_ARG(ctx, "diffcl_fft_set_rigor: ctx is NULL");
    DC_CHECK_ARG(rigor >= DIFFCL_FFT_ESTIMATE && rigor <= DIFFCL_FFT_PATIENT,
                 "diffcl_fft_set_rigor: rigor %d is not ESTIMATE, MEASURE or PATIENT", (int)rigor);
    struct dc_fft_cache *c = cache_of(ctx);
    if (!c) return DIFFCL_ERR_OUT_OF_MEMORY;
    if (c->rigor != (int)rigor) cache_clear(c);
    c->rigor = (int)rigor;
    return DIFFCL_OK;
}

diffcl_status diffcl_fft_cache_clear(diffcl_context *ctx)
{
    DC_CHECK_ARG(ctx, "diffcl_fft_cache_clear: ctx is NULL");
    cache_clear(ctx->fft_cache);
    return DIFFCL_OK;
}

diffcl_status diffcl_fft_cache_stats(const diffcl_context *ctx, int *n_plans, int64_t *hits,
                                     int64_t *misses)
{
    DC_CHECK_ARG(ctx, "diffcl_fft_cache_stats: ctx is NULL");
    const struct dc_fft_cache *c = ctx->fft_cache;
    if (n_plans) *n_plans = c ? c->n_plans : 0;
    if (hits) *hits = c ? c->hits : 0;
    if (misses) *misses = c ? c->misses : 0;
    return DIFFCL_OK;
}

diffcl_status diffcl_fft_wisdom_export(const char *path)
{
    DC_CHECK_ARG(path, "diffcl_fft_wisdom_export: path is NULL");
    pthread_mutex_lock(&planner_lock);
    int ok = fftwf_export_wisdom_to_filename(path);
    pthread_mutex_unlock(&planner_lock);
    if (!ok) return dc_error(DIFFCL_ERR_IO, "diffcl_fft_wisdom_export: cannot write %s", path);
    return DIFFCL_OK;
}

diffcl_status diffcl_fft_wisdom_import(const char *path)
{
    DC_CHECK_ARG(path, "diffcl_fft_wisdom_import: path is NULL");
    FILE *f = fopen(path, "rb");
    if (!f) return dc_error(DIFFCL_ERR_IO, "diffcl_fft_wisdom_import: cannot open %s", path);
    fclose(f);
    pthread_mutex_lock(&planner_lock);
    int ok = fftwf_import_wisdom_from_filename(path);
    pthread_mutex_unlock(&planner_lock);
    if (!ok)
        return dc_error(DIFFCL_ERR_FORMAT,
                        "diffcl_fft_wisdom_import: %s is not FFTW (single "
                        "precision) wisdom",
                        path);
    return DIFFCL_OK;
}

diffcl_status diffcl_fft_wisdom_export_string(char **out)
{
    DC_CHECK_ARG(out, "diffcl_fft_wisdom_export_string: out is NULL");
    pthread_mutex_lock(&planner_lock);
    char *w = fftwf_export_wisdom_to_string();
    pthread_mutex_unlock(&planner_lock);
    *out = w;
    if (!w)
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "diffcl_fft_wisdom_export_string: out of memory");
    return DIFFCL_OK;
}

diffcl_status diffcl_fft_wisdom_import_string(const char *wisdom)
{
    DC_CHECK_ARG(wisdom, "diffcl_fft_wisdom_import_string: wisdom is NULL");
    pthread_mutex_lock(&planner_lock);
    int ok = fftwf_import_wisdom_from_string(wisdom);
    pthread_mutex_unlock(&planner_lock);
    if (!ok)
        return dc_error(DIFFCL_ERR_FORMAT, "diffcl_fft_wisdom_import_string: not FFTW (single "
                                           "precision) wisdom");
    return DIFFCL_OK;
}

/* fftwf_export_wisdom_to_string allocates with malloc (FFTW's documentation: free it with
 * free()). */
void diffcl_fft_wisdom_string_free(char *wisdom)
{
    free(wisdom);
}

void diffcl_fft_wisdom_forget(void)
{
    pthread_mutex_lock(&planner_lock);
    fftwf_forget_wisdom();
    pthread_mutex_unlock(&planner_lock);
}
