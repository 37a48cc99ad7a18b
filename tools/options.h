/* Small argument-parsing helpers shared by the subcommands. */
#ifndef DIFFCL_TOOLS_OPTIONS_H
#define DIFFCL_TOOLS_OPTIONS_H

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* Print "diffcl CMD: message" on one line and return the exit code for bad usage (2). */
static inline int opt_fail(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "diffcl %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 2;
}

/* Parse an integer in [lo, hi]; 1 on success. */
static inline int opt_int(const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return 0;
    *out = (int)v;
    return 1;
}

/* Parse a double in [lo, hi]; 1 on success. */
static inline int opt_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) return 0;
    *out = v;
    return 1;
}

#endif
