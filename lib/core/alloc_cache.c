/* The context's block cache: freed large buffers are kept and handed to the next request of
 * the same size class instead of going back to the kernel.
 *
 * Why: glibc serves blocks above its mmap threshold (at most 32 MiB) with mmap and unmaps
 * them on free, so every training step faulted in and zeroed its activations again — a third
 * of a 3-D V-Net step was spent in the page-fault path (docs/performance.md). Steps repeat
 * the same shapes, so a cache keyed by size class is reused almost completely.
 *
 * Rules: only blocks of at least DC_CACHE_MIN bytes are cached (glibc's heap reuses smaller
 * ones without faults; 64 KiB because glibc mmaps from 128 KiB until a free raises its threshold,
 * and with the cache nothing is freed); sizes are rounded up to a class with at most 1/8 slack so that
 * nearby sizes share blocks; the bytes held (in use + cached) never grow past 1.5x the highest
 * bytes-in-use seen (oldest blocks are evicted first); all of it is released before an allocation
 * is reported as failed. The caller holds ctx->alloc_lock for every function here. */
#include <stdint.h>
#include <stdlib.h>

#include "core/core_internal.h"

#define DC_CACHE_MIN ((size_t)64 * 1024)

/* Lives in the first bytes of a cached (free) block. */
struct dc_cached_block {
    struct dc_cached_block *next;
    size_t size; /* the class size the block was allocated with */
};

int dc_cache_default_enabled(void)
{
#if defined(__SANITIZE_ADDRESS__)
    return 0; /* a cache would hide use-after-free from AddressSanitizer */
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    return 0;
#endif
#endif
    const char *env = getenv("DIFFCL_ALLOC_CACHE");
    return !(env && env[0] == '0');
}

size_t dc_cache_block_size(size_t size)
{
    if (size > SIZE_MAX / 2) return size; /* absurd: let the allocator refuse it, never wrap */
    if (size < DC_CACHE_MIN) return (size + DC_ALIGN - 1) / DC_ALIGN * DC_ALIGN;
    /* granularity: 1/8 of the power of two below size, at least a page */
    int top = 63 - __builtin_clzll((unsigned long long)size);
    size_t g = (size_t)1 << (top - 3);
    if (g < 4096) g = 4096;
    return (size + g - 1) / g * g;
}

/* Most bytes the context may hold (in use + cached): half the peak on top of it. With the
 * peak alone, the temporaries cached at the moment of the peak force evictions every step
 * (a 2-D Diff-CL iteration missed a fifth of its requests); with 1.5x nothing is evicted
 * in steady state and the peak RSS grew by 3 %. */
static size_t held_limit(const diffcl_context *ctx)
{
    return ctx->peak_bytes + ctx->peak_bytes / 2;
}

static void evict_oldest(diffcl_context *ctx)
{
    struct dc_cached_block **pp = &ctx->cache_head;
    if (!*pp) return;
    while ((*pp)->next) pp = &(*pp)->next;
    struct dc_cached_block *b = *pp;
    *pp = NULL;
    ctx->cached_bytes -= b->size;
    free(b);
}

void *dc_cache_take(diffcl_context *ctx, size_t size)
{
    if (!ctx->cache_enabled || ctx->alloc || size < DC_CACHE_MIN) return NULL;
    size_t cls = dc_cache_block_size(size);
    for (struct dc_cached_block **pp = &ctx->cache_head; *pp; pp = &(*pp)->next) {
        struct dc_cached_block *b = *pp;
        if (b->size == cls) {
            *pp = b->next;
            ctx->cached_bytes -= cls;
            return b;
        }
    }
    /* A miss allocates fresh memory: make room so that in use + cached stays under the limit. */
    while (ctx->cache_head && ctx->bytes_in_use + ctx->cached_bytes + cls > held_limit(ctx))
        evict_oldest(ctx);
    return NULL;
}

int dc_cache_put(diffcl_context *ctx, void *ptr, size_t size)
{
    if (!ctx->cache_enabled || ctx->alloc || size < DC_CACHE_MIN) return 0;
    size_t cls = dc_cache_block_size(size);
    if (ctx->bytes_in_use + cls > held_limit(ctx)) return 0;
    while (ctx->cache_head && ctx->bytes_in_use + ctx->cached_bytes + cls > held_limit(ctx))
        evict_oldest(ctx);
    struct dc_cached_block *b = ptr;
    b->size = cls;
    b->next = ctx->cache_head;
    ctx->cache_head = b;
    ctx->cached_bytes += cls;
    return 1;
}

void dc_cache_release_locked(diffcl_context *ctx)
{
    while (ctx->cache_head) {
        struct dc_cached_block *b = ctx->cache_head;
        ctx->cache_head = b->next;
        free(b);
    }
    ctx->cached_bytes = 0;
}

diffcl_status diffcl_context_set_caching(diffcl_context *ctx, int enabled)
{
    DC_CHECK_ARG(ctx, "diffcl_context_set_caching: ctx is NULL");
    pthread_mutex_lock(&ctx->alloc_lock);
    ctx->cache_enabled = enabled != 0;
    if (!enabled) dc_cache_release_locked(ctx);
    pthread_mutex_unlock(&ctx->alloc_lock);
    return DIFFCL_OK;
}

size_t diffcl_context_cached_bytes(const diffcl_context *ctx)
{
    if (!ctx) return 0;
    diffcl_context *c = (diffcl_context *)ctx; /* the lock is not part of the logical state */
    pthread_mutex_lock(&c->alloc_lock);
    size_t n = c->cached_bytes;
    pthread_mutex_unlock(&c->alloc_lock);
    return n;
}

void diffcl_context_release_cache(diffcl_context *ctx)
{
    if (!ctx) return;
    if (ctx->scratch) { /* the op workspace too: bytes in use then count live objects only */
        dc_free(ctx, ctx->scratch, ctx->scratch_size);
        ctx->scratch = NULL;
        ctx->scratch_size = 0;
    }
    pthread_mutex_lock(&ctx->alloc_lock);
    dc_cache_release_locked(ctx);
    pthread_mutex_unlock(&ctx->alloc_lock);
}
