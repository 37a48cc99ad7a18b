/* The compute context: threads, allocation accounting, scratch, callbacks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cblas.h>

#include "core/core_internal.h"

void diffcl_context_options_init(diffcl_context_options *opts)
{
    if (!opts) return;
    diffcl_context_options d = DIFFCL_CONTEXT_OPTIONS_INIT;
    *opts = d;
}

diffcl_status diffcl_context_create(const diffcl_context_options *opts, diffcl_context **out)
{
    DC_CHECK_ARG(out, "diffcl_context_create: out is NULL");
    *out = NULL;
    diffcl_context_options o = DIFFCL_CONTEXT_OPTIONS_INIT;
    DC_TRY(dc_options_read(&o, sizeof o, opts, offsetof(diffcl_context_options, alloc), 0,
                           "diffcl_context_create"));
    DC_CHECK_ARG(o.n_threads >= 0, "diffcl_context_create: n_threads %d < 0", o.n_threads);
    DC_CHECK_ARG(o.log_level >= DIFFCL_LOG_ERROR && o.log_level <= DIFFCL_LOG_DEBUG,
                 "diffcl_context_create: log_level %d is not a diffcl_log_level (0..3)",
                 (int)o.log_level);
    DC_CHECK_ARG((o.alloc == NULL) == (o.free == NULL),
                 "diffcl_context_create: alloc and free hooks must be set together");
    diffcl_context *ctx =
        o.alloc ? o.alloc(sizeof *ctx, DC_ALIGN, o.alloc_user) : dc_calloc_raw(1, sizeof *ctx);
    if (!ctx) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "diffcl_context_create: out of memory");
    memset(ctx, 0, sizeof *ctx);
    ctx->alloc = o.alloc;
    ctx->free = o.free;
    ctx->alloc_user = o.alloc_user;
    ctx->log = o.log;
    ctx->log_user = o.log_user;
    ctx->log_level = o.log_level;
    ctx->grad_enabled = 1;
    pthread_mutex_init(&ctx->alloc_lock, NULL);
    ctx->cache_enabled = dc_cache_default_enabled();
    diffcl_status s = diffcl_context_set_threads(ctx, o.n_threads);
    if (s != DIFFCL_OK) {
        diffcl_context_free(ctx);
        return s;
    }
    *out = ctx;
    return DIFFCL_OK;
}

void diffcl_context_free(diffcl_context *ctx)
{
    if (!ctx) return;
    if (ctx->fft_cache && ctx->fft_cache_free) ctx->fft_cache_free(ctx->fft_cache);
    if (ctx->scratch) dc_free(ctx, ctx->scratch, ctx->scratch_size);
    dc_cache_release_locked(ctx);
    pthread_mutex_destroy(&ctx->alloc_lock);
    if (ctx->alloc)
        ctx->free(ctx, ctx->alloc_user);
    else
        free(ctx);
}

diffcl_status diffcl_context_set_threads(diffcl_context *ctx, int n_threads)
{
    DC_CHECK_ARG(ctx, "diffcl_context_set_threads: ctx is NULL");
    DC_CHECK_ARG(n_threads >= 0, "diffcl_context_set_threads: n_threads %d < 0", n_threads);
    ctx->threads_auto = n_threads == 0 && dc_adapt_enabled_by_env();
    ctx->adapt_samples = 0;
    ctx->others_avg = 0;
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    ctx->threads_online = online > 0 ? (int)online : 1;
    if (n_threads == 0) {
        int affinity = 0;
        double quota = 0;
        n_threads = dc_cpu_budget(&affinity, &quota);
        if (quota > 0)
            dc_log(ctx, DIFFCL_LOG_INFO,
                   "%d threads: %d CPUs in the affinity mask, cgroup CPU quota %.2f", n_threads,
                   affinity, quota);
        else
            dc_log(ctx, DIFFCL_LOG_INFO,
                   "%d threads: the CPUs in the affinity mask, no cgroup CPU quota", n_threads);
    }
    ctx->n_threads = ctx->threads_budget = n_threads;
    /* One pool serves BLAS and our kernels: tell OpenBLAS the same count. */
    openblas_set_num_threads(ctx->n_threads);
    return DIFFCL_OK;
}

int diffcl_context_threads(const diffcl_context *ctx)
{
    return ctx ? ctx->n_threads : 0;
}

diffcl_status diffcl_context_set_log(diffcl_context *ctx, diffcl_log_fn fn, void *user,
                                     diffcl_log_level level)
{
    DC_CHECK_ARG(ctx, "diffcl_context_set_log: ctx is NULL");
    DC_CHECK_ARG(level >= DIFFCL_LOG_ERROR && level <= DIFFCL_LOG_DEBUG,
                 "diffcl_context_set_log: level %d is not a diffcl_log_level (0..3)", (int)level);
    ctx->log = fn;
    ctx->log_user = user;
    ctx->log_level = level;
    return DIFFCL_OK;
}

diffcl_status diffcl_context_set_progress(diffcl_context *ctx, diffcl_progress_fn fn, void *user)
{
    DC_CHECK_ARG(ctx, "diffcl_context_set_progress: ctx is NULL");
    ctx->progress = fn;
    ctx->progress_user = user;
    return DIFFCL_OK;
}

size_t diffcl_context_bytes_in_use(const diffcl_context *ctx)
{
    return ctx ? ctx->bytes_in_use : 0;
}

size_t diffcl_context_peak_bytes(const diffcl_context *ctx)
{
    return ctx ? ctx->peak_bytes : 0;
}

/* Fresh memory from the hook or the C library; large blocks get their cache class size so
 * that any block can later be cached and serve every request of its class. */
static void *system_alloc(diffcl_context *ctx, size_t size)
{
    if (ctx && ctx->alloc)
        return dc_alloc_tick() ? NULL : ctx->alloc(size, DC_ALIGN, ctx->alloc_user);
    return dc_aligned_alloc(DC_ALIGN, dc_cache_block_size(size));
}

void *dc_alloc(diffcl_context *ctx, size_t size)
{
    if (size == 0) size = DC_ALIGN;
    if (!ctx) {
        void *p = system_alloc(NULL, size);
        if (!p) dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "out of memory allocating %zu bytes", size);
        return p;
    }
    pthread_mutex_lock(&ctx->alloc_lock);
    void *p = dc_cache_take(ctx, size);
    if (!p) p = system_alloc(ctx, size);
    if (!p && ctx->cache_head) { /* give the cache back before failing */
        dc_cache_release_locked(ctx);
        p = system_alloc(ctx, size);
    }
    if (p) {
        ctx->bytes_in_use += size;
        if (ctx->bytes_in_use > ctx->peak_bytes) ctx->peak_bytes = ctx->bytes_in_use;
    }
    pthread_mutex_unlock(&ctx->alloc_lock);
    if (!p) dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "out of memory allocating %zu bytes", size);
    return p;
}

void *dc_calloc(diffcl_context *ctx, size_t size)
{
    void *p = dc_alloc(ctx, size);
    if (p) memset(p, 0, size);
    return p;
}

void dc_free(diffcl_context *ctx, void *ptr, size_t size)
{
    if (!ptr) return;
    if (size == 0) size = DC_ALIGN;
    if (!ctx) {
        free(ptr);
        return;
    }
    pthread_mutex_lock(&ctx->alloc_lock);
    ctx->bytes_in_use -= size;
    int kept = dc_cache_put(ctx, ptr, size);
    pthread_mutex_unlock(&ctx->alloc_lock);
    if (kept) return;
    if (ctx->alloc)
        ctx->free(ptr, ctx->alloc_user);
    else
        free(ptr);
}

void *dc_scratch(diffcl_context *ctx, size_t size)
{
    if (size <= ctx->scratch_size) return ctx->scratch;
    dc_free(ctx, ctx->scratch, ctx->scratch_size);
    ctx->scratch = NULL;
    ctx->scratch_size = 0;
    void *p = dc_alloc(ctx, size);
    if (!p) return NULL;
    ctx->scratch = p;
    ctx->scratch_size = size;
    return p;
}

void dc_log(diffcl_context *ctx, diffcl_log_level level, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (ctx && ctx->log) {
        if ((int)level <= ctx->log_level) ctx->log(level, line, ctx->log_user);
        return;
    }
    int threshold = ctx ? ctx->log_level : DIFFCL_LOG_WARN;
    if ((int)level <= threshold) fprintf(stderr, "diffcl: %s\n", line);
}

int dc_progress(diffcl_context *ctx, const char *what, int64_t done, int64_t total,
                const char *message)
{
    if (!ctx || !ctx->progress) return 0;
    return ctx->progress(what, done, total, message ? message : "", ctx->progress_user);
}
