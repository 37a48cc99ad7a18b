/**
 * @file core.h
 * @brief Status codes, error messages, the compute context, logging and the counter-based RNG.
 *
 * Conventions used by every libdiffcl function:
 * - Functions return a ::diffcl_status; 0 (DIFFCL_OK) is success, errors are negative.
 *   On error, diffcl_last_error() returns a message with the detail, kept per thread.
 * - Results come back through out-pointers; the caller owns what a `_new`, `_create`,
 *   `_load` or `_wrap` returns and releases it with the matching `_free`.
 * - A getter's result (a borrowed pointer) lives as long as its parent handle.
 * - Option structs begin with `size_t struct_size`; initialise them with their `_INIT`
 *   macro or `_init()` function so fields can be appended in later versions.
 * - A context and everything created from it is used by one thread at a time; separate
 *   contexts may be used concurrently from separate threads.
 *
 * Errors: the context functions return DIFFCL_ERR_INVALID_ARGUMENT for a NULL context or
 * out-pointer and bad option values (n_threads < 0, an alloc hook without a free hook),
 * diffcl_context_create() also DIFFCL_ERR_OUT_OF_MEMORY.
 *
 * Thread safety: diffcl_status_string(), diffcl_last_error() / diffcl_clear_error() (each
 * thread has its own message) and the RNG functions (pure functions of their arguments)
 * may be called from any thread at any time. The context functions follow the rule above:
 * one thread at a time per context.
 */
#ifndef DIFFCL_CORE_H
#define DIFFCL_CORE_H

#include <stddef.h>
#include <stdint.h>

#include "diffcl/export.h"
#include "diffcl/version.h"

DIFFCL_BEGIN_DECLS

/** Result of every fallible call. Values are part of the ABI and never renumbered. */
typedef enum diffcl_status {
    DIFFCL_OK = 0,
    DIFFCL_ERR_INVALID_ARGUMENT = -1, /**< NULL handle, bad option value, bad axis */
    DIFFCL_ERR_OUT_OF_MEMORY = -2,    /**< an allocation failed */
    DIFFCL_ERR_SHAPE = -3,            /**< tensor shapes do not match or broadcast */
    DIFFCL_ERR_DTYPE = -4,            /**< unsupported or mismatched element type */
    DIFFCL_ERR_IO = -5,               /**< a file could not be opened, read or written */
    DIFFCL_ERR_FORMAT = -6,           /**< a file is corrupt, truncated or not what it claims */
    DIFFCL_ERR_NOT_FOUND = -7,        /**< a named tensor, key, file or case is missing */
    DIFFCL_ERR_UNSUPPORTED = -8,      /**< valid request this build cannot serve */
    DIFFCL_ERR_NUMERIC = -9,          /**< NaN or Inf where a finite value is required */
    DIFFCL_ERR_CANCELLED = -10,       /**< the progress callback asked to stop */
    DIFFCL_ERR_STATE = -11,           /**< call not valid in the object's current state */
    DIFFCL_ERR_INTERNAL = -12,        /**< a bug in libdiffcl; please report it */
    DIFFCL_ERR_DISTRIBUTED = -13      /**< a peer process failed or communication broke */
} diffcl_status;

/** @return a static, human-readable name for @p status ("out of memory"). Thread-safe. */
DIFFCL_API const char *diffcl_status_string(diffcl_status status);

/**
 * @return the detail of the last error raised on the calling thread, e.g.
 * "block_one.conv.0.weight: expected shape [16,1,3,3,3], file has [8,1,3,3,3]";
 * "" if none. Valid until the next libdiffcl call on this thread.
 */
DIFFCL_API const char *diffcl_last_error(void);

/** Forget the calling thread's last error message. */
DIFFCL_API void diffcl_clear_error(void);

/* ---------------------------------------------------------------- logging ---- */

typedef enum diffcl_log_level {
    DIFFCL_LOG_ERROR = 0,
    DIFFCL_LOG_WARN = 1,
    DIFFCL_LOG_INFO = 2,
    DIFFCL_LOG_DEBUG = 3
} diffcl_log_level;

/** Receives one log line (no trailing newline). */
typedef void (*diffcl_log_fn)(diffcl_log_level level, const char *message, void *user);

/**
 * Receives progress of long operations (training iterations, sliding-window tiles).
 * @p what names the operation ("train", "infer"), @p done / @p total count its steps.
 * @return 0 to continue, non-zero to cancel (the operation returns DIFFCL_ERR_CANCELLED).
 */
typedef int (*diffcl_progress_fn)(const char *what, int64_t done, int64_t total,
                                  const char *message, void *user);

/* ---------------------------------------------------------------- context ---- */

/** Owns thread count, scratch memory, FFT plans, allocator hook, callbacks. */
typedef struct diffcl_context diffcl_context;

/** Allocator hook: must return memory aligned to @p alignment (a power of two, >= 64). */
typedef void *(*diffcl_alloc_fn)(size_t size, size_t alignment, void *user);
typedef void (*diffcl_free_fn)(void *ptr, void *user);

/** Options for diffcl_context_create(). */
typedef struct diffcl_context_options {
    size_t struct_size;    /**< sizeof(diffcl_context_options) */
    int n_threads;         /**< 0: the CPUs this process may use: the affinity mask,
                                      capped by a cgroup CPU quota (docs/performance.md) */
    diffcl_alloc_fn alloc; /**< NULL: aligned malloc */
    diffcl_free_fn free;   /**< must be set when alloc is */
    void *alloc_user;
    diffcl_log_fn log; /**< NULL: lines up to log_level go to stderr */
    void *log_user;
    int log_level; /**< a diffcl_log_level; more verbose levels are dropped */
} diffcl_context_options;

#define DIFFCL_CONTEXT_OPTIONS_INIT                                                                \
    {                                                                                              \
        sizeof(diffcl_context_options), 0, NULL, NULL, NULL, NULL, NULL, DIFFCL_LOG_INFO           \
    }

/** Fill @p opts with the defaults (same as DIFFCL_CONTEXT_OPTIONS_INIT). */
DIFFCL_API void diffcl_context_options_init(diffcl_context_options *opts);

/**
 * Create a context. @p opts may be NULL for defaults. The caller owns @p *out and
 * releases it with diffcl_context_free() after every tensor and model made from it.
 */
DIFFCL_API diffcl_status diffcl_context_create(const diffcl_context_options *opts,
                                               diffcl_context **out);
/** Release a context. NULL is ignored. */
DIFFCL_API void diffcl_context_free(diffcl_context *ctx);

/**
 * Set the number of compute threads (0 = the CPUs this process may use: its affinity mask,
 * capped by a cgroup CPU quota; logged at DIFFCL_LOG_INFO). With 0 the count also follows
 * the load: at each training step and sliding-window batch it becomes the CPUs that other
 * processes leave free, between 1 and that budget (results do not depend on the thread
 * count; `DIFFCL_ADAPT_THREADS=0` in the environment turns this off). A count given here
 * is never changed. Also sets OpenBLAS's and FFTW's counts so the libraries never
 * oversubscribe the cores. OpenBLAS's count is process-wide: contexts with different counts
 * in one process take turns setting it.
 */
DIFFCL_API diffcl_status diffcl_context_set_threads(diffcl_context *ctx, int n_threads);
/** @return the thread count in use now (>= 1; it follows the load when the count was left to
 *  the library), or 0 for a NULL context. */
DIFFCL_API int diffcl_context_threads(const diffcl_context *ctx);

/** Redirect log lines; @p fn NULL restores the default (stderr). */
DIFFCL_API diffcl_status diffcl_context_set_log(diffcl_context *ctx, diffcl_log_fn fn, void *user,
                                                diffcl_log_level level);
/** Install a progress callback (NULL removes it). */
DIFFCL_API diffcl_status diffcl_context_set_progress(diffcl_context *ctx, diffcl_progress_fn fn,
                                                     void *user);

/** Bytes currently allocated through this context (tensors and scratch). */
DIFFCL_API size_t diffcl_context_bytes_in_use(const diffcl_context *ctx);
/** Highest value diffcl_context_bytes_in_use() has reached. */
DIFFCL_API size_t diffcl_context_peak_bytes(const diffcl_context *ctx);

/**
 * Turn the context's block cache on or off. With the cache on (the default, except in
 * AddressSanitizer builds, where it would hide use-after-free), large tensor buffers freed
 * by one training step are kept and handed to the next step instead of going back to the
 * kernel, which would fault in and zero every page again. The cache never lets the memory
 * held (in use + cached) grow past 1.5 times the highest bytes-in-use seen so far
 * (diffcl_context_peak_bytes()), releases everything before reporting out-of-memory, and applies only to the built-in allocator
 * (contexts with an alloc hook see every allocation). Turning it off releases the cache.
 * The environment variable DIFFCL_ALLOC_CACHE=0 sets the default to off.
 * Not thread-safe with respect to other calls on the same context.
 * @return DIFFCL_ERR_INVALID_ARGUMENT for a NULL context.
 */
DIFFCL_API diffcl_status diffcl_context_set_caching(diffcl_context *ctx, int enabled);
/** Bytes held by the block cache (freed buffers kept for reuse); 0 for a NULL context. */
DIFFCL_API size_t diffcl_context_cached_bytes(const diffcl_context *ctx);
/**
 * Give every cached block, and the context's scratch workspace (op temporaries such as
 * im2col columns), back to the system allocator: afterwards diffcl_context_bytes_in_use()
 * counts live tensors, modules and optimizers only. NULL is ignored.
 */
DIFFCL_API void diffcl_context_release_cache(diffcl_context *ctx);

/* -------------------------------------------------------------------- RNG ---- */

/**
 * Key of the counter-based generator (Philox-4x32-10). Every random number libdiffcl
 * draws is a pure function of (seed, stream, index, iteration, element position), so
 * results do not depend on thread count, process count or on resuming a run.
 * @p stream names the purpose (weight init, dropout, noise, augmentation...),
 * @p index is e.g. a sample index, @p iteration the training iteration.
 *
 * Fixed layout: a 24-byte value passed by value, without struct_size; it never changes
 * within a major version (docs/abi-policy.md). Build it with diffcl_rng_key_make().
 */
typedef struct diffcl_rng_key {
    uint64_t seed;
    uint32_t stream;
    uint32_t index;
    uint32_t iteration;
    uint32_t reserved; /**< must be 0 */
} diffcl_rng_key;

/** Build a key. */
DIFFCL_API diffcl_rng_key diffcl_rng_key_make(uint64_t seed, uint32_t stream, uint32_t index,
                                              uint32_t iteration);
/** Fill out[0..n) with 32-bit draws number offset, offset+1, ... of @p key. */
DIFFCL_API void diffcl_rng_bits(diffcl_rng_key key, uint64_t offset, size_t n, uint32_t *out);
/** Fill out[0..n) with uniform floats in [lo, hi), draws offset... of @p key. */
DIFFCL_API void diffcl_rng_uniform(diffcl_rng_key key, uint64_t offset, size_t n, float lo,
                                   float hi, float *out);
/** Fill out[0..n) with normal floats (Box-Muller), draws offset... of @p key. */
DIFFCL_API void diffcl_rng_normal(diffcl_rng_key key, uint64_t offset, size_t n, float mean,
                                  float stddev, float *out);

DIFFCL_END_DECLS

#endif /* DIFFCL_CORE_H */
