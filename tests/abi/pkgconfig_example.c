/* Built by the pkg-config test against an installed libdiffcl:
 *   cc -std=c11 pkgconfig_example.c $(pkg-config --cflags --libs diffcl)
 * Uses only the public API: a context, two tensors, one op, the version. */
#include <stdio.h>

#include <diffcl/diffcl.h>

#define CHECK(expr)                                                                  \
    do {                                                                             \
        diffcl_status s_ = (expr);                                                   \
        if (s_ != DIFFCL_OK) {                                                       \
            fprintf(stderr, "%s: %s (%s)\n", #expr, diffcl_status_string(s_),        \
                    diffcl_last_error());                                            \
            return 1;                                                                \
        }                                                                            \
    } while (0)

int main(void)
{
    diffcl_context *ctx = NULL;
    diffcl_tensor *a = NULL, *b = NULL, *c = NULL, *s = NULL;
    const int64_t shape[2] = {2, 3};
    const float va[6] = {1, 2, 3, 4, 5, 6};
    const float vb[6] = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f};
    double sum = 0;

    printf("diffcl %s (header %s)\n", diffcl_version_string(), DIFFCL_VERSION_STRING);
    CHECK(diffcl_context_create(NULL, &ctx));
    CHECK(diffcl_tensor_from_data(ctx, DIFFCL_F32, 2, shape, va, &a));
    CHECK(diffcl_tensor_from_data(ctx, DIFFCL_F32, 2, shape, vb, &b));
    CHECK(diffcl_mul(a, b, &c));
    CHECK(diffcl_sum_all(c, &s));
    CHECK(diffcl_tensor_item(s, &sum));
    printf("sum = %g\n", sum);
    diffcl_tensor_free(s);
    diffcl_tensor_free(c);
    diffcl_tensor_free(b);
    diffcl_tensor_free(a);
    diffcl_context_free(ctx);
    return 0;
}
