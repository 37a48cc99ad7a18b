/* Helpers shared by the unit tests. */
#ifndef DIFFCL_TEST_UTIL_H
#define DIFFCL_TEST_UTIL_H

#include <check.h>

#include "diffcl/diffcl.h"

/* Fail the test with diffcl_last_error() when a call does not return DIFFCL_OK. */
#define ck_ok(expr)                                                                      \
    do {                                                                                 \
        diffcl_status ck_ok_s_ = (expr);                                                 \
        ck_assert_msg(ck_ok_s_ == DIFFCL_OK, "%s -> %s: %s", #expr,                     \
                      diffcl_status_string(ck_ok_s_), diffcl_last_error());              \
    } while (0)

/* Divide iteration counts of learning tests by DIFFCL_TEST_SCALE (sanitizer builds). */
int test_scale(void);
/* Path of a committed fixture file (tests/fixtures/NAME); static buffer. */
const char *test_fixture_path(const char *name);
/* A context with 1 thread and log output silenced below WARN. */
diffcl_context *test_context(void);
/* New F64 tensor of the given shape filled from normal(0,1) with a seed. */
diffcl_tensor *test_randn(diffcl_context *ctx, diffcl_dtype dtype, int ndim,
                          const int64_t *shape, uint64_t seed);
/* max|a-b| / max|b| over all elements (b the reference); shapes must match. */
double test_rel_error(const diffcl_tensor *a, const diffcl_tensor *b);
/* Run a Check suite; returns the process exit code. */
int test_run_suite(Suite *s);

#endif
