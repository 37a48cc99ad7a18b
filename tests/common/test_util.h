/* Helpers shared by the unit tests. */
#ifndef DIFFCL_TEST_UTIL_H
#define DIFFCL_TEST_UTIL_H

#include <check.h>
#include <math.h>

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
/* ---- parity against reference tensors (PyTorch fixtures) ----
 * The metric is norm-wise: ||got - ref||_2 / ||ref||_2, with max|got - ref| beside it. A
 * per-element max error is a poor parity measure for gradients: one ReLU input that another
 * summation order puts across its kink moves single elements by 1e-2 while the tensor moves by
 * 1e-5. Every check prints its measured error beside its bound, so drift shows before a test
 * fails. */
typedef struct test_error {
    double rel;       /* ||got - ref|| / scale (scale = ||ref|| unless given) */
    double max_abs;   /* max |got - ref| */
    double ref_norm;  /* ||ref||_2 */
    double diff_norm; /* ||got - ref||_2 */
} test_error;

/* Errors of @p got against @p ref (any float dtypes, same element count); NaN fails. */
test_error test_error_of(const diffcl_tensor *got, const diffcl_tensor *ref);
/* Print "what: rel E (bound B), max abs M" and fail the test when E > bound. */
void test_expect_close(const char *what, const diffcl_tensor *got, const diffcl_tensor *ref,
                       double bound);

/* Parameter gradients of a module against "<prefix><parameter name>" entries of @p ref.
 *
 * Per tensor, norm-wise; a tensor whose reference is near zero (RMS below TEST_NEAR_ZERO of
 * the network's gradient RMS: the bias of a convolution followed by batch norm) is measured
 * against the network's gradient scale (network RMS * sqrt(numel)) instead of its own norm.
 * Network-level: ||g - r|| / ||r|| over all parameters at once.
 * @p tensor_bound holds every tensor (TEST_NO_BOUND: printed, not asserted), @p network_bound
 * the network-level error. Float64 checks hold both tightly. Float32 checks of whole ReLU
 * networks hold the network-level error only: a ReLU input within float32's error of its kink,
 * which another summation order flips, moves a small tensor downstream by 1e-3..1e-2 and the
 * network by ~1e-5 (tests/reference/conditioning.py).
 * A parameter the graph never reached (no gradient) passes only when its reference is zero.
 * Prints one summary line with the errors beside their bounds; DIFFCL_TEST_VERBOSE=1 lists
 * every tensor above a tenth of the bound. Returns the network-level error. */
#define TEST_NEAR_ZERO 1e-2
#define TEST_NO_BOUND INFINITY
double test_check_module_grads(const char *label, diffcl_module *m, const diffcl_tensor_dict *ref,
                               const char *prefix, double tensor_bound, double network_bound);

/* The float32 network-level gradient bound of a fixture: max(1e-3, 3 x torch's own float32
 * error on it over reroundings), from its "torch_f32_grad_err" metadata
 * (tests/reference/conditioning.py); 1e-3 when absent. */
double test_f32_grad_bound(const diffcl_tensor_dict *fixture);

/* One line naming the BLAS core (openblas_get_corename) and the convolution kernel family in
 * use, printed by test_run_suite so that every test log says which paths it exercised. */
void test_print_kernels(void);

/* Run a Check suite; returns the process exit code. */
int test_run_suite(Suite *s);

#endif
