/* Suite core: version, status strings, errors, context, allocation hook, logging, RNG. */
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

START_TEST(test_version)
{
    ck_assert_uint_eq(diffcl_version_number(), DIFFCL_VERSION_NUMBER);
    ck_assert_str_eq(diffcl_version_string(), DIFFCL_VERSION_STRING);
    ck_assert_int_eq(DIFFCL_VERSION_MAJOR, 0);
}
END_TEST

START_TEST(test_status_strings)
{
    ck_assert_str_eq(diffcl_status_string(DIFFCL_OK), "ok");
    ck_assert_str_eq(diffcl_status_string(DIFFCL_ERR_OUT_OF_MEMORY), "out of memory");
    ck_assert_str_eq(diffcl_status_string((diffcl_status)-999), "unknown status");
    for (int s = 0; s >= DIFFCL_ERR_DISTRIBUTED; s--)
        ck_assert_str_ne(diffcl_status_string((diffcl_status)s), "unknown status");
}
END_TEST

START_TEST(test_last_error)
{
    diffcl_clear_error();
    ck_assert_str_eq(diffcl_last_error(), "");
    ck_assert_int_eq(diffcl_context_create(NULL, NULL), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(diffcl_last_error(), "out is NULL"));
    diffcl_clear_error();
    ck_assert_str_eq(diffcl_last_error(), "");
}
END_TEST

START_TEST(test_context_threads)
{
    diffcl_context *ctx = NULL;
    ck_ok(diffcl_context_create(NULL, &ctx));
    ck_assert_int_ge(diffcl_context_threads(ctx), 1);
    ck_ok(diffcl_context_set_threads(ctx, 1));
    ck_assert_int_eq(diffcl_context_threads(ctx), 1);
    ck_assert_int_eq(diffcl_context_set_threads(ctx, -2), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(diffcl_context_threads(NULL), 0);
    diffcl_context_free(ctx);
    diffcl_context_free(NULL);
}
END_TEST

START_TEST(test_context_options_versioned)
{
    /* A caller built against a header that ended before the allocator fields. */
    diffcl_context_options o = DIFFCL_CONTEXT_OPTIONS_INIT;
    o.n_threads = 1;
    o.struct_size = offsetof(diffcl_context_options, alloc);
    diffcl_context *ctx = NULL;
    ck_ok(diffcl_context_create(&o, &ctx));
    ck_assert_int_eq(diffcl_context_threads(ctx), 1);
    diffcl_context_free(ctx);
    o.struct_size = 4;
    ck_assert_int_eq(diffcl_context_create(&o, &ctx), DIFFCL_ERR_INVALID_ARGUMENT);
    diffcl_context_options d;
    diffcl_context_options_init(&d);
    ck_assert_uint_eq(d.struct_size, sizeof d);
    ck_assert_int_eq(d.log_level, DIFFCL_LOG_INFO);
}
END_TEST

/* An allocator hook that fails after a budget: out-of-memory injection. */
typedef struct budget {
    int calls, fail_after;
    size_t live;
} budget;

static void *budget_alloc(size_t size, size_t align, void *user)
{
    budget *b = user;
    if (b->fail_after >= 0 && b->calls++ >= b->fail_after) return NULL;
    void *p = aligned_alloc(align, (size + align - 1) / align * align);
    if (p) b->live++;
    return p;
}

static void budget_free(void *p, void *user)
{
    budget *b = user;
    if (p) b->live--;
    free(p);
}

/* A one-thread context whose allocations go through @p b. */
static diffcl_context *budget_context(budget *b)
{
    diffcl_context_options o = DIFFCL_CONTEXT_OPTIONS_INIT;
    o.alloc = budget_alloc;
    o.free = budget_free;
    o.alloc_user = b;
    o.n_threads = 1;
    diffcl_context *ctx = NULL;
    ck_ok(diffcl_context_create(&o, &ctx));
    return ctx;
}

START_TEST(test_allocator_hook_and_oom)
{
    budget b = {0, -1, 0};
    diffcl_context *ctx = budget_context(&b);
    int64_t shape[2] = {64, 64};
    diffcl_tensor *t = NULL;
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_F32, 2, shape, &t));
    ck_assert(((uintptr_t)diffcl_tensor_data(t) & 63) == 0);
    ck_assert_uint_ge(diffcl_context_bytes_in_use(ctx), 64 * 64 * 4);
    size_t peak = diffcl_context_peak_bytes(ctx);
    diffcl_tensor_free(t);
    ck_assert_uint_eq(diffcl_context_bytes_in_use(ctx), 0);
    ck_assert_uint_eq(diffcl_context_peak_bytes(ctx), peak);
    b.fail_after = b.calls; /* the next allocation fails */
    t = (diffcl_tensor *)0x1;
    ck_assert_int_eq(diffcl_tensor_new(ctx, DIFFCL_F32, 2, shape, &t), DIFFCL_ERR_OUT_OF_MEMORY);
    ck_assert_ptr_null(t);
    ck_assert_ptr_nonnull(strstr(diffcl_last_error(), "out of memory"));
    /* an op that cannot allocate its output reports it too */
    b.fail_after = -1;
    diffcl_tensor *x = NULL, *y = NULL;
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_F32, 2, shape, &x));
    b.fail_after = b.calls;
    ck_assert_int_eq(diffcl_exp(x, &y), DIFFCL_ERR_OUT_OF_MEMORY);
    b.fail_after = -1;
    diffcl_tensor_free(x);
    diffcl_context_free(ctx);
    ck_assert_uint_eq(b.live, 0);
    /* alloc without free is rejected */
    diffcl_context_options o = DIFFCL_CONTEXT_OPTIONS_INIT;
    o.alloc = budget_alloc;
    o.alloc_user = &b;
    ck_assert_int_eq(diffcl_context_create(&o, &ctx), DIFFCL_ERR_INVALID_ARGUMENT);
}
END_TEST


/* The block cache: a freed large buffer serves the next request of its size class, the
 * accounting of tensors in use is unchanged by it, it never holds more than the peak, and
 * it can be turned off and emptied. */
START_TEST(test_block_cache)
{
    diffcl_context_options o = DIFFCL_CONTEXT_OPTIONS_INIT;
    o.n_threads = 1;
    diffcl_context *ctx = NULL;
    ck_ok(diffcl_context_create(&o, &ctx));
    ck_ok(diffcl_context_set_caching(ctx, 1)); /* default is off under AddressSanitizer */
    int64_t big[1] = {1 << 20}, near[1] = {(1 << 20) - 1000}, small[1] = {100};
    diffcl_tensor *a = NULL, *b = NULL;
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_F32, 1, big, &a));
    void *pa = diffcl_tensor_data(a);
    diffcl_tensor_free(a);
    ck_assert_uint_eq(diffcl_context_bytes_in_use(ctx), 0);
    ck_assert_uint_ge(diffcl_context_cached_bytes(ctx), (size_t)4 << 20);
    /* a slightly smaller request of the same class reuses the block */
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_F32, 1, near, &b));
    ck_assert_ptr_eq(diffcl_tensor_data(b), pa);
    ck_assert_uint_eq(diffcl_context_cached_bytes(ctx), 0);
    ck_assert_uint_eq(diffcl_context_bytes_in_use(ctx), (size_t)near[0] * 4);
    float *d = diffcl_tensor_data(b);
    d[near[0] - 1] = 1.f; /* the whole request is usable */
    diffcl_tensor_free(b);
    /* small buffers are not cached */
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_F32, 1, small, &a));
    size_t before = diffcl_context_cached_bytes(ctx);
    diffcl_tensor_free(a);
    ck_assert_uint_eq(diffcl_context_cached_bytes(ctx), before);
    /* in use + cached never exceeds 1.5x the peak: a larger request evicts what no longer fits */
    int64_t huge[1] = {3 << 20};
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_F32, 1, huge, &a));
    size_t limit = diffcl_context_peak_bytes(ctx) * 3 / 2;
    ck_assert_uint_le(diffcl_context_bytes_in_use(ctx) + diffcl_context_cached_bytes(ctx), limit);
    ck_assert_uint_eq(diffcl_context_cached_bytes(ctx), 0); /* 4 + 12 MiB > 1.5 x 12 MiB */
    diffcl_tensor_free(a);
    ck_assert_uint_le(diffcl_context_cached_bytes(ctx), limit);
    diffcl_context_release_cache(ctx);
    ck_assert_uint_eq(diffcl_context_cached_bytes(ctx), 0);
    /* off: nothing is kept */
    ck_ok(diffcl_context_set_caching(ctx, 0));
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_F32, 1, big, &a));
    diffcl_tensor_free(a);
    ck_assert_uint_eq(diffcl_context_cached_bytes(ctx), 0);
    ck_assert_int_eq(diffcl_context_set_caching(NULL, 1), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_uint_eq(diffcl_context_cached_bytes(NULL), 0);
    diffcl_context_release_cache(NULL);
    diffcl_context_free(ctx);
}
END_TEST

/* A context with an allocator hook sees every allocation and free: no caching behind it. */
START_TEST(test_block_cache_not_behind_hook)
{
    budget bu = {0, -1, 0};
    diffcl_context *ctx = budget_context(&bu);
    ck_ok(diffcl_context_set_caching(ctx, 1));
    int64_t big[1] = {1 << 20};
    diffcl_tensor *a = NULL;
    size_t live = bu.live;
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_F32, 1, big, &a));
    diffcl_tensor_free(a);
    ck_assert_uint_eq(bu.live, live);
    ck_assert_uint_eq(diffcl_context_cached_bytes(ctx), 0);
    diffcl_context_free(ctx);
}
END_TEST

typedef struct logbuf {
    int n;
    char last[256];
} logbuf;

static void capture_log(diffcl_log_level level, const char *msg, void *user)
{
    logbuf *l = user;
    l->n++;
    strncpy(l->last, msg, sizeof l->last - 1);
    (void)level;
}

static int cancel_progress(const char *what, int64_t done, int64_t total, const char *msg,
                           void *user)
{
    (void)what; (void)total; (void)msg;
    *(int64_t *)user = done;
    return done >= 3;
}

START_TEST(test_log_and_progress_callbacks)
{
    diffcl_context *ctx = test_context();
    logbuf l = {0, ""};
    ck_ok(diffcl_context_set_log(ctx, capture_log, &l, DIFFCL_LOG_DEBUG));
    ck_assert_int_eq(diffcl_context_set_log(ctx, capture_log, &l, (diffcl_log_level)99), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(diffcl_context_set_log(NULL, capture_log, &l, DIFFCL_LOG_DEBUG),
                     DIFFCL_ERR_INVALID_ARGUMENT);
    int64_t seen = 0;
    ck_ok(diffcl_context_set_progress(ctx, cancel_progress, &seen));
    ck_assert_int_eq(diffcl_context_set_progress(NULL, NULL, NULL), DIFFCL_ERR_INVALID_ARGUMENT);
    diffcl_context_free(ctx);
}
END_TEST

START_TEST(test_rng_counter_based)
{
    diffcl_rng_key k = diffcl_rng_key_make(42, 1, 7, 3);
    uint32_t all[1000], part[500];
    diffcl_rng_bits(k, 0, 1000, all);
    /* a fill started anywhere gives the same draws: independent of how work is split */
    diffcl_rng_bits(k, 333, 500, part);
    ck_assert_mem_eq(all + 333, part, sizeof part);
    /* different keys differ */
    uint32_t other[16];
    diffcl_rng_bits(diffcl_rng_key_make(42, 1, 7, 4), 0, 16, other);
    ck_assert_int_ne(memcmp(all, other, sizeof other), 0);
    diffcl_rng_bits(diffcl_rng_key_make(43, 1, 7, 3), 0, 16, other);
    ck_assert_int_ne(memcmp(all, other, sizeof other), 0);
    /* uniform statistics */
    static float u[100000];
    diffcl_rng_uniform(k, 0, 100000, -1.0f, 3.0f, u);
    double mean = 0, var = 0;
    for (int i = 0; i < 100000; i++) {
        ck_assert(u[i] >= -1.0f && u[i] < 3.0f);
        mean += u[i];
    }
    mean /= 100000;
    for (int i = 0; i < 100000; i++) var += (u[i] - mean) * (u[i] - mean);
    var /= 100000;
    ck_assert_double_eq_tol(mean, 1.0, 0.02);
    ck_assert_double_eq_tol(var, 16.0 / 12.0, 0.02);
    /* normal statistics, and offset-invariance of normals too */
    diffcl_rng_normal(k, 0, 100000, 2.0f, 0.5f, u);
    mean = var = 0;
    for (int i = 0; i < 100000; i++) mean += u[i];
    mean /= 100000;
    for (int i = 0; i < 100000; i++) var += (u[i] - mean) * (u[i] - mean);
    var /= 100000;
    ck_assert_double_eq_tol(mean, 2.0, 0.01);
    ck_assert_double_eq_tol(var, 0.25, 0.01);
    float a[8];
    diffcl_rng_normal(k, 5, 8, 2.0f, 0.5f, a);
    ck_assert_mem_eq(a, u + 5, sizeof a);
}
END_TEST

START_TEST(test_rng_known_answer)
{
    /* Philox-4x32-10 known-answer vector (Random123 kat_vectors: ctr 0, key 0). */
    diffcl_rng_key k = diffcl_rng_key_make(0, 0, 0, 0);
    uint32_t v[4];
    diffcl_rng_bits(k, 0, 4, v);
    ck_assert_uint_eq(v[0], 0x6627e8d5u);
    ck_assert_uint_eq(v[1], 0xe169c58du);
    ck_assert_uint_eq(v[2], 0xbc57ac4cu);
    ck_assert_uint_eq(v[3], 0x9b00dbd8u);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("core");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_version);
    tcase_add_test(tc, test_status_strings);
    tcase_add_test(tc, test_last_error);
    tcase_add_test(tc, test_context_threads);
    tcase_add_test(tc, test_context_options_versioned);
    tcase_add_test(tc, test_allocator_hook_and_oom);
    tcase_add_test(tc, test_block_cache);
    tcase_add_test(tc, test_block_cache_not_behind_hook);
    tcase_add_test(tc, test_log_and_progress_callbacks);
    tcase_add_test(tc, test_rng_counter_based);
    tcase_add_test(tc, test_rng_known_answer);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}
