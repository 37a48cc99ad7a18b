/* Suite core, test options: dc_options_read and dc_options_write (lib/core/options.c), the one
 * place that moves versioned option structs between header versions. A struct that an older
 * header laid out is shorter: only its fields are read, the rest keep the defaults, and a
 * result is never written past the caller's struct_size. */
#include <stddef.h>
#include <string.h>

#include "core/core_internal.h"
#include "test_util.h"

/* version 1 of a struct, and version 2 that appended a field */
typedef struct {
    size_t struct_size;
    int a;
    int b;
} opts_v1;

typedef struct {
    size_t struct_size;
    int a;
    int b;
    double c;
} opts_v2;

static const opts_v2 DEFAULTS = {sizeof(opts_v2), 1, 2, 3.5};

START_TEST(test_read_older_struct_keeps_new_defaults)
{
    opts_v1 old = {sizeof old, 10, 20};
    opts_v2 o = DEFAULTS;
    ck_assert_int_eq(dc_options_read(&o, sizeof o, &old, sizeof old, 0, "t"), DIFFCL_OK);
    ck_assert_int_eq(o.a, 10);
    ck_assert_int_eq(o.b, 20);
    ck_assert(o.c == 3.5);                      /* not in v1: the default stays */
    ck_assert_uint_eq(o.struct_size, sizeof o); /* now a whole current struct */
}
END_TEST

START_TEST(test_read_newer_struct_reads_what_it_knows)
{
    struct {
        opts_v2 v2;
        int later;
    } newer = {{sizeof newer, 7, 8, 9.0}, 42};
    opts_v2 o = DEFAULTS;
    ck_assert_int_eq(dc_options_read(&o, sizeof o, &newer, sizeof(opts_v1), 0, "t"), DIFFCL_OK);
    ck_assert_int_eq(o.a, 7);
    ck_assert(o.c == 9.0);
    ck_assert_uint_eq(o.struct_size, sizeof o);
}
END_TEST

START_TEST(test_read_policy_for_small_and_zero)
{
    opts_v2 o = DEFAULTS, src = {0, 5, 6, 7.0};
    /* refused: zero, and below the minimum layout; dst untouched */
    ck_assert_int_eq(dc_options_read(&o, sizeof o, &src, sizeof(opts_v1), 0, "fn_x"),
                     DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(diffcl_last_error(), "fn_x"));
    ck_assert_int_eq(o.a, 1);
    src.struct_size = offsetof(opts_v2, b);
    ck_assert_int_eq(dc_options_read(&o, sizeof o, &src, sizeof(opts_v1), 1, "t"),
                     DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(o.a, 1);
    /* zero as "the whole struct", where that was the function's policy */
    src.struct_size = 0;
    ck_assert_int_eq(dc_options_read(&o, sizeof o, &src, sizeof(opts_v1), 1, "t"), DIFFCL_OK);
    ck_assert_int_eq(o.a, 5);
    ck_assert(o.c == 7.0);
    /* NULL: the defaults */
    opts_v2 d = DEFAULTS;
    ck_assert_int_eq(dc_options_read(&d, sizeof d, NULL, sizeof(opts_v1), 0, "t"), DIFFCL_OK);
    ck_assert_int_eq(d.a, 1);
}
END_TEST

START_TEST(test_write_stops_at_the_callers_size)
{
    struct {
        opts_v1 v1;
        unsigned char guard[16];
    } out;
    memset(&out, 0xAB, sizeof out);
    out.v1.struct_size = sizeof out.v1;
    opts_v2 full = {sizeof full, 11, 12, 13.0};
    ck_assert_int_eq(dc_options_write(&out.v1, &full, sizeof full, 0, 1, "t"), DIFFCL_OK);
    ck_assert_int_eq(out.v1.a, 11);
    ck_assert_int_eq(out.v1.b, 12);
    ck_assert_uint_eq(out.v1.struct_size, sizeof out.v1); /* what was filled */
    for (size_t i = 0; i < sizeof out.guard; i++) ck_assert_uint_eq(out.guard[i], 0xAB);
    /* zero reads as full where that is the policy; refused where it is not */
    opts_v2 o2;
    memset(&o2, 0, sizeof o2);
    ck_assert_int_eq(dc_options_write(&o2, &full, sizeof full, 0, 1, "t"), DIFFCL_OK);
    ck_assert(o2.c == 13.0);
    ck_assert_uint_eq(o2.struct_size, sizeof o2);
    o2.struct_size = 0;
    ck_assert_int_eq(dc_options_write(&o2, &full, sizeof full, sizeof(opts_v1), 0, "t"),
                     DIFFCL_ERR_INVALID_ARGUMENT);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("options");
    TCase *tc = tcase_create("options");
    tcase_add_test(tc, test_read_older_struct_keeps_new_defaults);
    tcase_add_test(tc, test_read_newer_struct_reads_what_it_knows);
    tcase_add_test(tc, test_read_policy_for_small_and_zero);
    tcase_add_test(tc, test_write_stops_at_the_callers_size);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}
