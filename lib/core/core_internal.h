/* Internal core services: error raising, context-owned allocation, logging, threads.
 * Every layer above includes this; nothing here is exported. */
#ifndef DIFFCL_CORE_INTERNAL_H
#define DIFFCL_CORE_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "diffcl/core.h"

#define DC_ALIGN 64

struct dc_fft_cache; /* owned by the context, defined by the FFT layer */

/* What a per-sample random draw is (dc_draw_report). */
typedef enum dc_draw_kind {
    DC_DRAW_TIMESTEP = 1, /* a diffusion training timestep: one int64 */
    DC_DRAW_NOISE = 2,    /* one sample's N(0,1) noise number `call` (eps, x_T): floats */
    DC_DRAW_DROPOUT = 3,  /* one sample's dropout mask of forward number `call`: bytes */
    DC_DRAW_VOXELS = 4    /* one sample's contrastive voxels (flat positions within the sample,
                             part `call`): int64 */
} dc_draw_kind;

/* Test hook: called for every per-sample random draw with the key's stream and the index the
 * draw was keyed by (the sample's global index in a sharded training step, docs/distributed.md),
 * on the thread that made the call. */
typedef void (*dc_draw_trace_fn)(void *user, dc_draw_kind kind, uint32_t stream, uint32_t sample,
                                 uint32_t call, const void *data, size_t bytes);

struct diffcl_context {
    int n_threads; /* the threads of the next parallel region */
    /* n_threads left to the library: re-chosen by dc_threads_adapt between 1 and the budget
     * (thread_adapt.c); threads_online is the machine's CPU count, others_avg the running mean
     * of the CPUs other processes use, adapt_* the clocks of the last sample */
    int threads_auto, threads_budget, threads_online, adapt_samples;
    double others_avg, adapt_wall, adapt_own, adapt_busy;
    diffcl_alloc_fn alloc;
    diffcl_free_fn free;
    void *alloc_user;
    diffcl_log_fn log;
    void *log_user;
    int log_level;
    diffcl_progress_fn progress;
    void *progress_user;
    int grad_enabled;
    size_t bytes_in_use;
    size_t peak_bytes;
    /* Block cache (alloc_cache.c): freed large buffers kept for the next step, newest
     * first. Guarded by alloc_lock together with the byte counters, because the sampler's
     * prefetch thread allocates through the same context. */
    pthread_mutex_t alloc_lock;
    int cache_enabled;
    struct dc_cached_block *cache_head;
    size_t cached_bytes;
    /* reusable scratch buffer for op workspaces (im2col columns, ...) */
    void *scratch;
    size_t scratch_size;
    /* FFT plan cache, created on first use by the fft layer and freed with the context */
    struct dc_fft_cache *fft_cache;
    void (*fft_cache_free)(struct dc_fft_cache *);
    /* Convolution knobs for tests and benchmarks (lib/layer/conv_internal.h): the column
     * budget per thread and the minimum tile width (0: the planner's defaults), the execution
     * mode (0 automatic, 1 tiles in parallel, 2 in turn) and the F32 kernel family (0
     * automatic, 1 BLAS, 3/4 AVX-512 forcing cvec / direct). Per context, so that two
     * contexts in two threads cannot change each other's kernels. */
    size_t conv_tile_bytes;
    int64_t conv_min_cols;
    int conv_mode, conv_kernel;
    /* Test hook of the per-sample draws (dc_draw_report); NULL: off. */
    dc_draw_trace_fn draw_trace;
    void *draw_trace_user;
};

/* Record an error message for diffcl_last_error() and return @p status. */
diffcl_status dc_error(diffcl_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Prepend "prefix: " to the current error message (for context like a file name). */
void dc_error_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The library's one allocator for memory outside a context (alloc.c): malloc, calloc, realloc,
 * aligned_alloc, strdup and strndup that count every call, released with free(). A test-only
 * switch fails the k-th allocation after arming (docs/testing.md, "Allocation failure"):
 * dc_alloc_fail_at(k) re-arms (0: off) and resets the count; the environment variable
 * DIFFCL_ALLOC_FAIL_AT=k arms it at the first allocation. dc_alloc_count: allocations since
 * arming; dc_alloc_failed: how many were failed. dc_alloc_tick counts one allocation made by
 * other means (a user's allocator hook) and says 1 when it must fail. */
void *dc_malloc(size_t size);
void *dc_calloc_raw(size_t n, size_t size);
void *dc_realloc(void *ptr, size_t size);
void *dc_aligned_alloc(size_t align, size_t size);
char *dc_strdup(const char *s);
char *dc_strndup(const char *s, size_t max);
void dc_alloc_fail_at(unsigned long long k);
unsigned long long dc_alloc_count(void);
unsigned long long dc_alloc_failed(void);
int dc_alloc_tick(void);

/* Allocation through the context's hook; 64-byte aligned; NULL on failure (error set). */
void *dc_alloc(diffcl_context *ctx, size_t size);
void *dc_calloc(diffcl_context *ctx, size_t size);
void dc_free(diffcl_context *ctx, void *ptr, size_t size);

/* Block cache behind dc_alloc/dc_free (alloc_cache.c). */
int dc_cache_default_enabled(void);
void *dc_cache_take(diffcl_context *ctx, size_t size);         /* lock held; NULL: miss */
int dc_cache_put(diffcl_context *ctx, void *ptr, size_t size); /* lock held; 1: kept */
void dc_cache_release_locked(diffcl_context *ctx);
size_t dc_cache_block_size(size_t size); /* bytes a cached block of @p size really has */

/* Scratch workspace owned by the context: valid until the next dc_scratch call. */
void *dc_scratch(diffcl_context *ctx, size_t size);

void dc_log(diffcl_context *ctx, diffcl_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Report progress; returns non-zero when the user asked to cancel. */
int dc_progress(diffcl_context *ctx, const char *what, int64_t done, int64_t total,
                const char *message);

/* The CPUs this process may use (cpu_budget.c): min(affinity mask, ceil(cgroup CPU quota)),
 * at least 1; the default thread count. The out-pointers (may be NULL) get the two parts
 * (quota 0: none set). dc_cgroup_cpu_quota reads /proc/self/cgroup and the cgroup files under
 * @p root ("" for the live system; a folder of fixtures in tests). */
int dc_cpu_budget(int *affinity_out, double *quota_out);
double dc_cgroup_cpu_quota(const char *root);

/* Contention-aware thread count (thread_adapt.c). dc_threads_adapt re-chooses n_threads of a
 * context whose count was left to the library, at the start of a unit of work (a training
 * step, a sliding-window batch); dc_threads_for_load is its rule: the @p online CPUs not
 * taken by the @p others CPUs that other processes use, between 1 and @p budget. */
void dc_threads_adapt(diffcl_context *ctx);
int dc_threads_for_load(int budget, int online, double others);
int dc_adapt_enabled_by_env(void); /* 0 when DIFFCL_ADAPT_THREADS=0 */

/* Report a per-sample draw to the context's test hook, if any (see dc_draw_trace_fn). */
static inline void dc_draw_report(const diffcl_context *ctx, dc_draw_kind kind, uint32_t stream,
                                  uint32_t sample, uint32_t call, const void *data, size_t bytes)
{
    if (ctx && ctx->draw_trace)
        ctx->draw_trace(ctx->draw_trace_user, kind, stream, sample, call, data, bytes);
}

/* Thread count to hand OpenMP regions. */
/* Relaxed atomic: dc_threads_adapt may change the count between steps while the sampler's
 * prefetch thread reads it. */
static inline int dc_threads(const diffcl_context *ctx)
{
    return ctx ? __atomic_load_n(&ctx->n_threads, __ATOMIC_RELAXED) : 1;
}

/* Versioned option structs (options.c). dc_options_read copies the fields of @p src that its
 * struct_size covers over @p dst (which holds the defaults) and sets dst's struct_size to
 * @p dst_size; a NULL @p src leaves dst alone. dc_options_write fills the caller's @p dst from
 * the library's @p src up to dst's struct_size and stores the size it filled. A struct_size
 * below @p min_size is DIFFCL_ERR_INVALID_ARGUMENT, except 0 when @p zero_means_full (then the
 * whole struct). @p fn names the public function in the message. */
diffcl_status dc_options_read(void *dst, size_t dst_size, const void *src, size_t min_size,
                              int zero_means_full, const char *fn);
diffcl_status dc_options_write(void *dst, const void *src, size_t src_size, size_t min_size,
                               int zero_means_full, const char *fn);

#define DC_CHECK_ARG(cond, ...)                                                                    \
    do {                                                                                           \
        if (!(cond)) return dc_error(DIFFCL_ERR_INVALID_ARGUMENT, __VA_ARGS__);                    \
    } while (0)

#define DC_TRY(expr)                                                                               \
    do {                                                                                           \
        diffcl_status dc_try_s_ = (expr);                                                          \
        if (dc_try_s_ != DIFFCL_OK) return dc_try_s_;                                              \
    } while (0)

/* DC_STEP(expr): evaluate @p expr only while the status `s` in scope is still DIFFCL_OK, and
 * keep the first error. For a chain of steps followed by one clean-up path, where DC_TRY's
 * early return would leak what the earlier steps made. */
#define DC_STEP(expr)                                                                              \
    do {                                                                                           \
        if (s == DIFFCL_OK) s = (expr);                                                            \
    } while (0)

#endif
