/* The library's one internal allocator (issue 22): every allocation libdiffcl makes itself goes
 * through these wrappers or through dc_alloc (context.c), which calls dc_aligned_alloc. Each call
 * counts; a test may arm a failure so that the k-th allocation after arming returns NULL
 * (dc_alloc_fail_at, or DIFFCL_ALLOC_FAIL_AT=k in the environment, read once). Test-only: see
 * docs/testing.md, "Allocation failure". */
#include <stdlib.h>
#include <string.h>

#include "core_internal.h"

/* The allocations counted since arming, and the one to fail (0: none). Atomics: OpenMP threads
 * and the sampler's prefetch thread allocate too. */
static unsigned long long alloc_count;
static unsigned long long alloc_fail_k;
static unsigned long long alloc_failed;
static pthread_once_t alloc_env_once = PTHREAD_ONCE_INIT;

static void alloc_read_env(void)
{
    const char *e = getenv("DIFFCL_ALLOC_FAIL_AT");
    if (e && *e) {
        char *end = NULL;
        unsigned long long k = strtoull(e, &end, 10);
        if (end && *end == 0 && k > 0) {
            __atomic_store_n(&alloc_count, 0, __ATOMIC_RELAXED);
            __atomic_store_n(&alloc_fail_k, k, __ATOMIC_RELAXED);
        }
    }
}

void dc_alloc_fail_at(unsigned long long k)
{
    pthread_once(&alloc_env_once, alloc_read_env);
    __atomic_store_n(&alloc_fail_k, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&alloc_count, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&alloc_failed, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&alloc_fail_k, k, __ATOMIC_SEQ_CST);
}

unsigned long long dc_alloc_count(void)
{
    return __atomic_load_n(&alloc_count, __ATOMIC_SEQ_CST);
}

unsigned long long dc_alloc_failed(void)
{
    return __atomic_load_n(&alloc_failed, __ATOMIC_SEQ_CST);
}

/* Count one allocation; 1 when it is the one to fail. */
static int alloc_tick(void)
{
    pthread_once(&alloc_env_once, alloc_read_env);
    unsigned long long n = __atomic_add_fetch(&alloc_count, 1, __ATOMIC_RELAXED);
    unsigned long long k = __atomic_load_n(&alloc_fail_k, __ATOMIC_RELAXED);
    if (k != 0 && n == k) {
        __atomic_add_fetch(&alloc_failed, 1, __ATOMIC_RELAXED);
        return 1;
    }
    return 0;
}

int dc_alloc_tick(void)
{
    return alloc_tick();
}

void *dc_malloc(size_t size)
{
    return alloc_tick() ? NULL : malloc(size);
}

void *dc_calloc_raw(size_t n, size_t size)
{
    return alloc_tick() ? NULL : calloc(n, size);
}

void *dc_realloc(void *ptr, size_t size)
{
    return alloc_tick() ? NULL : realloc(ptr, size);
}

void *dc_aligned_alloc(size_t align, size_t size)
{
    return alloc_tick() ? NULL : aligned_alloc(align, size);
}

char *dc_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = dc_malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

char *dc_strndup(const char *s, size_t max)
{
    size_t n = strnlen(s, max);
    char *p = dc_malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}
