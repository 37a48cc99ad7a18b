/* Versioned option structs: the one place that reads and writes them across header versions.
 *
 * Every public option, statistics and metadata struct begins with `size_t struct_size`
 * (core.h). A caller built against an older header passes a shorter struct; the library must
 * read only the fields that header knew (the rest keep their defaults) and, when it fills a
 * struct for the caller, write no further than the caller's size. Each public function keeps
 * the policy it shipped with, through two parameters:
 *  - min_size: the shortest layout it accepts (0.1.0's, usually); shorter is refused;
 *  - zero_means_full: whether a struct_size of 0 reads as "the whole current struct" (the
 *    optimizer, schedule, gradcheck and loss options did so in 0.1.0) or is refused. */
#include <string.h>

#include "core/core_internal.h"

static size_t declared_size(const void *s)
{
    size_t n;
    memcpy(&n, s, sizeof n); /* struct_size is the first member of every such struct */
    return n;
}

/* The number of bytes to move, or 0 after setting the error. */
static size_t usable_size(size_t declared, size_t own, size_t min_size, int zero_means_full,
                          const char *fn)
{
    if (declared == 0 && zero_means_full) return own;
    if (declared < min_size || declared == 0) {
        dc_error(DIFFCL_ERR_INVALID_ARGUMENT,
                 "%s: struct_size %zu is too small (at least %zu; initialise the struct with its "
                 "_INIT macro)",
                 fn, declared, min_size);
        return 0;
    }
    return declared < own ? declared : own;
}

diffcl_status dc_options_read(void *dst, size_t dst_size, const void *src, size_t min_size,
                              int zero_means_full, const char *fn)
{
    if (!src) return DIFFCL_OK;
    size_t n = usable_size(declared_size(src), dst_size, min_size, zero_means_full, fn);
    if (!n) return DIFFCL_ERR_INVALID_ARGUMENT;
    memcpy(dst, src, n);
    memcpy(dst, &dst_size, sizeof dst_size); /* dst now holds a whole current struct */
    return DIFFCL_OK;
}

diffcl_status dc_options_write(void *dst, const void *src, size_t src_size, size_t min_size,
                               int zero_means_full, const char *fn)
{
    size_t n = usable_size(declared_size(dst), src_size, min_size, zero_means_full, fn);
    if (!n) return DIFFCL_ERR_INVALID_ARGUMENT;
    memcpy(dst, src, n);
    memcpy(dst, &n, sizeof n); /* tells the caller how much was filled */
    return DIFFCL_OK;
}
