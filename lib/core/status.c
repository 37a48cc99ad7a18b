/* Status strings and the per-thread last-error message. */
#include <stdio.h>
#include <string.h>

#include "core/core_internal.h"

static _Thread_local char last_error[1024];

const char *diffcl_status_string(diffcl_status status)
{
    switch (status) {
    case DIFFCL_OK: return "ok";
    case DIFFCL_ERR_INVALID_ARGUMENT: return "invalid argument";
    case DIFFCL_ERR_OUT_OF_MEMORY: return "out of memory";
    case DIFFCL_ERR_SHAPE: return "shape mismatch";
    case DIFFCL_ERR_DTYPE: return "unsupported or mismatched dtype";
    case DIFFCL_ERR_IO: return "input/output error";
    case DIFFCL_ERR_FORMAT: return "corrupt or invalid file format";
    case DIFFCL_ERR_NOT_FOUND: return "not found";
    case DIFFCL_ERR_UNSUPPORTED: return "unsupported";
    case DIFFCL_ERR_NUMERIC: return "non-finite or failed numeric check";
    case DIFFCL_ERR_CANCELLED: return "cancelled";
    case DIFFCL_ERR_STATE: return "invalid state";
    case DIFFCL_ERR_INTERNAL: return "internal error";
    case DIFFCL_ERR_DISTRIBUTED: return "distributed communication error";
    }
    return "unknown status";
}

const char *diffcl_last_error(void)
{
    return last_error;
}

void diffcl_clear_error(void)
{
    last_error[0] = '\0';
}

diffcl_status dc_error(diffcl_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return status;
}

void dc_error_prefix(const char *fmt, ...)
{
    char prefix[512], old[sizeof last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, last_error, sizeof old);
    size_t n = strlen(prefix);
    if (n > sizeof last_error - 3) n = sizeof last_error - 3;
    memcpy(last_error, prefix, n);
    memcpy(last_error + n, ": ", 2);
    size_t rest = sizeof last_error - n - 3;
    size_t m = strnlen(old, rest);
    memcpy(last_error + n + 2, old, m);
    last_error[n + 2 + m] = '\0';
}
