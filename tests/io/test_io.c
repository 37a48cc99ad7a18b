/* Suite io: safetensors read/write (PyTorch fixture, every dtype, metadata, hostile files,
 * atomic saves) and module state-dict loading (strict / non-strict, prefixes, dtypes). */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "layer/module_internal.h"
#include "test_util.h"

static diffcl_context *ctx;
static char tmpdir[256];

static void setup(void)
{
    ctx = test_context();
    snprintf(tmpdir, sizeof tmpdir, "/tmp/diffcl-io-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
            chmod(p, 0700);
            remove_tree(p);
        } else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static void teardown(void)
{
    diffcl_context_free(ctx);
    remove_tree(tmpdir);
}

static const char *tmp_path(const char *name)
{
    static char buf[4][512];
    static int which;
    char *b = buf[which++ & 3];
    snprintf(b, 512, "%s/%s", tmpdir, name);
    return b;
}

static unsigned char *read_bytes(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    ck_assert_uint_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void write_bytes(const char *path, const void *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    if (n) ck_assert_uint_eq(fwrite(b, 1, n, f), n);
    fclose(f);
}

/* Write a safetensors file from a JSON header (padded to 8 bytes) and raw data. */
static void write_st(const char *path, const char *json, const void *data, size_t n)
{
    size_t hl = strlen(json), padded = (hl + 7) / 8 * 8;
    size_t total = 8 + padded + n;
    unsigned char *b = calloc(1, total);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    memcpy(b + 8, json, hl);
    memset(b + 8 + hl, ' ', padded - hl);
    if (n) memcpy(b + 8 + padded, data, n);
    write_bytes(path, b, total);
    free(b);
}

static int count_temp_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

static diffcl_tensor *filled(diffcl_dtype dt, int nd, const int64_t *shape, uint64_t seed)
{
    diffcl_tensor *t = NULL;
    ck_ok(diffcl_tensor_new(ctx, dt, nd, shape, &t));
    int64_t n = diffcl_tensor_numel(t);
    void *p = diffcl_tensor_data(t);
    diffcl_rng_key key = diffcl_rng_key_make(seed, 7, 0, 0);
    for (int64_t i = 0; i < n; i++) {
        uint32_t r[2];
        diffcl_rng_bits(key, (uint64_t)i * 2, 2, r);
        switch (dt) {
        case DIFFCL_F32: ((float *)p)[i] = (float)((int32_t)r[0]) / 1e6f; break;
        case DIFFCL_F64: ((double *)p)[i] = (double)(int32_t)r[0] / 3e5 + r[1] * 1e-12; break;
        case DIFFCL_U8: ((uint8_t *)p)[i] = (uint8_t)r[0]; break;
        case DIFFCL_I32: ((int32_t *)p)[i] = (int32_t)r[0]; break;
        case DIFFCL_I64: ((int64_t *)p)[i] = (int64_t)(((uint64_t)r[0] << 32) | r[1]); break;
        }
    }
    return t;
}

/* Same dtype, shape and row-major bytes. */
static void assert_same_tensor(const diffcl_tensor *a, const diffcl_tensor *b, const char *what)
{
    ck_assert_msg(diffcl_tensor_dtype(a) == diffcl_tensor_dtype(b), "%s: dtype %s vs %s", what,
                  diffcl_dtype_name(diffcl_tensor_dtype(a)), diffcl_dtype_name(diffcl_tensor_dtype(b)));
    int64_t sa[DIFFCL_MAX_DIMS], sb[DIFFCL_MAX_DIMS];
    int na = diffcl_tensor_shape(a, sa), nb = diffcl_tensor_shape(b, sb);
    ck_assert_msg(na == nb, "%s: ndim %d vs %d", what, na, nb);
    for (int i = 0; i < na; i++) ck_assert_msg(sa[i] == sb[i], "%s: axis %d", what, i);
    size_t n = (size_t)diffcl_tensor_numel(a) * diffcl_dtype_size(diffcl_tensor_dtype(a));
    unsigned char *x = malloc(n + 1), *y = malloc(n + 1);
    ck_ok(diffcl_tensor_copy_to(a, x, n));
    ck_ok(diffcl_tensor_copy_to(b, y, n));
    ck_assert_msg(memcmp(x, y, n) == 0, "%s: contents differ", what);
    free(x);
    free(y);
}

/* Every element as double (row-major). */
static double *as_doubles(const diffcl_tensor *t)
{
    int64_t n = diffcl_tensor_numel(t);
    double *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    diffcl_tensor *d = NULL;
    ck_ok(diffcl_tensor_to_dtype(t, DIFFCL_F64, &d));
    ck_ok(diffcl_tensor_copy_to(d, v, (size_t)n * sizeof *v));
    diffcl_tensor_free(d);
    return v;
}

static int64_t *as_int64(const diffcl_tensor *t)
{
    int64_t n = diffcl_tensor_numel(t);
    int64_t *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    const void *p = diffcl_tensor_data_const(t);
    ck_assert(diffcl_tensor_is_contiguous(t));
    for (int64_t i = 0; i < n; i++) {
        switch (diffcl_tensor_dtype(t)) {
        case DIFFCL_U8: v[i] = ((const uint8_t *)p)[i]; break;
        case DIFFCL_I32: v[i] = ((const int32_t *)p)[i]; break;
        case DIFFCL_I64: v[i] = ((const int64_t *)p)[i]; break;
        default: ck_abort_msg("not an integer tensor");
        }
    }
    return v;
}

/* ------------------------------------------------------- PyTorch fixture ---- */

static diffcl_dtype dtype_for_torch(const char *torch_dtype)
{
    if (!strcmp(torch_dtype, "float32") || !strcmp(torch_dtype, "float16") || !strcmp(torch_dtype, "bfloat16"))
        return DIFFCL_F32;
    if (!strcmp(torch_dtype, "float64")) return DIFFCL_F64;
    if (!strcmp(torch_dtype, "uint8")) return DIFFCL_U8;
    if (!strcmp(torch_dtype, "int32")) return DIFFCL_I32;
    return DIFFCL_I64; /* int64, int8, int16, bool */
}

START_TEST(test_fixture_values)
{
    diffcl_tensor_dict *got = NULL, *want = NULL;
    ck_ok(diffcl_safetensors_load(ctx, test_fixture_path("io_checkpoint.safetensors"), &got));
    ck_ok(diffcl_safetensors_load(ctx, test_fixture_path("io_checkpoint_expected.safetensors"), &want));
    ck_assert_int_eq(diffcl_tensor_dict_size(got), diffcl_tensor_dict_size(want));
    ck_assert_int_eq(diffcl_tensor_dict_size(got), 16);
    ck_assert_str_eq(diffcl_tensor_dict_name(got, 0), "block.conv.weight"); /* header order kept */
    ck_assert_str_eq(diffcl_tensor_dict_get_meta(got, "format"), "pt");
    ck_assert_str_eq(diffcl_tensor_dict_get_meta(got, "source"), "gen_checkpoint.py");
    for (int i = 0; i < diffcl_tensor_dict_size(want); i++) {
        const char *name = diffcl_tensor_dict_name(want, i);
        const diffcl_tensor *w = diffcl_tensor_dict_at(want, i), *g = diffcl_tensor_dict_get(got, name);
        ck_assert_msg(g != NULL, "%s missing", name);
        char mk[128];
        snprintf(mk, sizeof mk, "dtype.%s", name);
        const char *td = diffcl_tensor_dict_get_meta(want, mk);
        ck_assert_ptr_nonnull(td);
        ck_assert_msg(diffcl_tensor_dtype(g) == dtype_for_torch(td), "%s: torch %s loaded as %s", name, td,
                      diffcl_dtype_name(diffcl_tensor_dtype(g)));
        snprintf(mk, sizeof mk, "ndim.%s", name);
        ck_assert_ptr_nonnull(diffcl_tensor_dict_get_meta(want, mk));
        int64_t sg[DIFFCL_MAX_DIMS], sw[DIFFCL_MAX_DIMS];
        int ng = diffcl_tensor_shape(g, sg), nw = diffcl_tensor_shape(w, sw);
        ck_assert_msg(ng == atoi(diffcl_tensor_dict_get_meta(want, mk)), "%s: rank %d", name, ng);
        if (ng > 0) { /* st_io stores 0-d as [1] */
            ck_assert_int_eq(ng, nw);
            for (int k = 0; k < ng; k++) ck_assert_int_eq(sg[k], sw[k]);
        }
        ck_assert_int_eq(diffcl_tensor_numel(g), diffcl_tensor_numel(w));
        int64_t n = diffcl_tensor_numel(w);
        if (diffcl_tensor_dtype(w) == DIFFCL_F64) { /* widening is exact: compare bit for bit */
            double *a = as_doubles(g), *b = as_doubles(w);
            for (int64_t k = 0; k < n; k++)
                ck_assert_msg(memcmp(&a[k], &b[k], sizeof(double)) == 0, "%s[%lld]: %.17g vs %.17g", name,
                              (long long)k, a[k], b[k]);
            free(a);
            free(b);
        } else {
            int64_t *a = as_int64(g), *b = as_int64(w);
            for (int64_t k = 0; k < n; k++)
                ck_assert_msg(a[k] == b[k], "%s[%lld]: %lld vs %lld", name, (long long)k, (long long)a[k],
                              (long long)b[k]);
            free(a);
            free(b);
        }
    }
    /* a few values checked independently of the expected file */
    ck_assert_int_eq(*(const int64_t *)diffcl_tensor_data_const(diffcl_tensor_dict_get(got, "block.bn.num_batches_tracked")),
                     123456789012LL);
    const float *h = diffcl_tensor_data_const(diffcl_tensor_dict_get(got, "half"));
    ck_assert(h[0] == 1.5f && h[1] == -2.25f);
    ck_assert(h[3] == 0.0f && signbit(h[3]));
    ck_assert(h[5] == ldexpf(1.0f, -24)); /* smallest F16 subnormal */
    ck_assert(h[7] == 65504.0f && isinf(h[9]) && h[9] > 0 && isinf(h[10]) && h[10] < 0);
    const uint8_t *mask = diffcl_tensor_data_const(diffcl_tensor_dict_get(got, "mask"));
    ck_assert_int_eq(mask[5], 255);
    const int64_t *small = diffcl_tensor_data_const(diffcl_tensor_dict_get(got, "small"));
    ck_assert_int_eq(small[0], -128);
    const int32_t *index = diffcl_tensor_data_const(diffcl_tensor_dict_get(got, "index"));
    ck_assert_int_eq(index[0], INT32_MIN);
    const int64_t *flags = diffcl_tensor_data_const(diffcl_tensor_dict_get(got, "flags"));
    ck_assert(flags[0] == 1 && flags[1] == 0 && flags[2] == 1);
    ck_assert_int_eq(diffcl_tensor_numel(diffcl_tensor_dict_get(got, "empty")), 0);
    ck_assert_int_eq(diffcl_tensor_ndim(diffcl_tensor_dict_get(got, "scalar")), 0);
    diffcl_tensor_dict_free(got);
    diffcl_tensor_dict_free(want);
}
END_TEST

/* ----------------------------------------------------------- round trips ---- */

START_TEST(test_roundtrip_every_dtype)
{
    diffcl_tensor_dict *d = NULL, *back = NULL;
    ck_ok(diffcl_tensor_dict_new(ctx, &d));
    const int64_t s5[5] = {2, 1, 3, 2, 2}, s2[2] = {3, 4}, s0[1] = {0}, se[2] = {0, 5};
    diffcl_dtype dts[5] = {DIFFCL_F32, DIFFCL_F64, DIFFCL_U8, DIFFCL_I32, DIFFCL_I64};
    for (int i = 0; i < 5; i++) {
        char name[64];
        diffcl_tensor *t = filled(dts[i], 2, s2, 10 + (uint64_t)i);
        snprintf(name, sizeof name, "matrix.%s", diffcl_dtype_name(dts[i]));
        ck_ok(diffcl_tensor_dict_set(d, name, t));
        diffcl_tensor_free(t);
        t = filled(dts[i], 0, s0, 20 + (uint64_t)i);
        snprintf(name, sizeof name, "scalar.%s", diffcl_dtype_name(dts[i]));
        ck_ok(diffcl_tensor_dict_set(d, name, t));
        diffcl_tensor_free(t);
        t = filled(dts[i], 5, s5, 30 + (uint64_t)i);
        snprintf(name, sizeof name, "five.%s", diffcl_dtype_name(dts[i]));
        ck_ok(diffcl_tensor_dict_set(d, name, t));
        diffcl_tensor_free(t);
        t = filled(dts[i], 2, se, 0);
        snprintf(name, sizeof name, "empty.%s", diffcl_dtype_name(dts[i]));
        ck_ok(diffcl_tensor_dict_set(d, name, t));
        diffcl_tensor_free(t);
    }
    /* a non-contiguous view is written in row-major order */
    diffcl_tensor *m = filled(DIFFCL_F32, 2, s2, 99), *mt = NULL;
    const int perm[2] = {1, 0};
    ck_ok(diffcl_tensor_permute(m, perm, &mt));
    ck_ok(diffcl_tensor_dict_set(d, "transposed", mt));
    const char *path = tmp_path("all.safetensors");
    ck_ok(diffcl_safetensors_save(d, path));
    ck_assert_int_eq(count_temp_files(tmpdir), 0);
    ck_ok(diffcl_safetensors_load(ctx, path, &back));
    ck_assert_int_eq(diffcl_tensor_dict_size(back), diffcl_tensor_dict_size(d));
    for (int i = 0; i < diffcl_tensor_dict_size(d); i++) {
        const char *name = diffcl_tensor_dict_name(d, i);
        ck_assert_str_eq(diffcl_tensor_dict_name(back, i), name);
        assert_same_tensor(diffcl_tensor_dict_get(back, name), diffcl_tensor_dict_at(d, i), name);
    }
    ck_assert(diffcl_tensor_is_contiguous(diffcl_tensor_dict_get(back, "transposed")));
    ck_assert_int_eq(diffcl_tensor_dim(diffcl_tensor_dict_get(back, "transposed"), 0), 4);

    /* layout: header length a multiple of 8, space padding, data right after */
    size_t len;
    unsigned char *b = read_bytes(path, &len);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | b[i];
    ck_assert_uint_eq(hl % 8, 0);
    ck_assert_int_eq(b[8], '{');
    ck_assert_uint_le(8 + hl, len);
    /* saving what was loaded gives the same bytes */
    const char *path2 = tmp_path("again.safetensors");
    ck_ok(diffcl_safetensors_save(back, path2));
    size_t len2;
    unsigned char *b2 = read_bytes(path2, &len2);
    ck_assert_uint_eq(len, len2);
    ck_assert(memcmp(b, b2, len) == 0);
    free(b);
    free(b2);
    diffcl_tensor_free(m);
    diffcl_tensor_free(mt);
    diffcl_tensor_dict_free(d);
    diffcl_tensor_dict_free(back);
}
END_TEST

START_TEST(test_metadata_roundtrip)
{
    diffcl_tensor_dict *d = NULL, *back = NULL;
    ck_ok(diffcl_tensor_dict_new(ctx, &d));
    ck_ok(diffcl_tensor_dict_set_meta(d, "diffcl.model", "{\"type\":\"vnet\",\"dims\":3}"));
    ck_ok(diffcl_tensor_dict_set_meta(d, "quote\"back\\slash", "line1\nline2\ttab"));
    ck_ok(diffcl_tensor_dict_set_meta(d, "unicode", "Dice \xc3\xa9t\xc3\xa9 \xe2\x9c\x93"));
    ck_ok(diffcl_tensor_dict_set_meta(d, "empty", ""));
    const int64_t s[1] = {3};
    diffcl_tensor *t = filled(DIFFCL_F32, 1, s, 1);
    ck_ok(diffcl_tensor_dict_set(d, "w", t));
    diffcl_tensor_free(t);
    const char *path = tmp_path("meta.safetensors");
    ck_ok(diffcl_safetensors_save(d, path));
    ck_ok(diffcl_safetensors_load(ctx, path, &back));
    ck_assert_str_eq(diffcl_tensor_dict_get_meta(back, "diffcl.model"), "{\"type\":\"vnet\",\"dims\":3}");
    ck_assert_str_eq(diffcl_tensor_dict_get_meta(back, "quote\"back\\slash"), "line1\nline2\ttab");
    ck_assert_str_eq(diffcl_tensor_dict_get_meta(back, "unicode"), "Dice \xc3\xa9t\xc3\xa9 \xe2\x9c\x93");
    ck_assert_str_eq(diffcl_tensor_dict_get_meta(back, "empty"), "");
    ck_assert_ptr_null(diffcl_tensor_dict_get_meta(back, "absent"));
    diffcl_tensor_dict_free(back);

    /* no metadata, no tensors: still a valid file */
    diffcl_tensor_dict *e = NULL;
    ck_ok(diffcl_tensor_dict_new(ctx, &e));
    ck_ok(diffcl_safetensors_save(e, tmp_path("empty.safetensors")));
    ck_ok(diffcl_safetensors_load(ctx, tmp_path("empty.safetensors"), &back));
    ck_assert_int_eq(diffcl_tensor_dict_size(back), 0);
    ck_assert_ptr_null(diffcl_tensor_dict_get_meta(back, "format"));
    diffcl_tensor_dict_free(back);
    diffcl_tensor_dict_free(e);

    /* "__metadata__" cannot name a tensor; invalid UTF-8 is refused */
    t = filled(DIFFCL_F32, 1, s, 2);
    ck_ok(diffcl_tensor_dict_set(d, "__metadata__", t));
    ck_assert_int_eq(diffcl_safetensors_save(d, tmp_path("bad.safetensors")), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_ok(diffcl_tensor_dict_remove(d, "__metadata__"));
    ck_ok(diffcl_tensor_dict_set(d, "bad\xff", t));
    ck_assert_int_eq(diffcl_safetensors_save(d, tmp_path("bad.safetensors")), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(access(tmp_path("bad.safetensors"), F_OK), -1);
    ck_assert_int_eq(count_temp_files(tmpdir), 0);
    diffcl_tensor_free(t);
    diffcl_tensor_dict_free(d);
}
END_TEST

/* -------------------------------------------------------- hostile input ---- */

static void expect_load_error(const char *path, diffcl_status want, const char *needle, const char *what)
{
    diffcl_tensor_dict *d = (diffcl_tensor_dict *)&d; /* must be reset to NULL */
    diffcl_clear_error();
    diffcl_status s = diffcl_safetensors_load(ctx, path, &d);
    ck_assert_msg(s == want, "%s: got %s (%s), want %s", what, diffcl_status_string(s), diffcl_last_error(),
                  diffcl_status_string(want));
    ck_assert_msg(d == NULL, "%s: out not cleared", what);
    ck_assert_msg(strstr(diffcl_last_error(), path) != NULL, "%s: message lacks the path: %s", what,
                  diffcl_last_error());
    if (needle)
        ck_assert_msg(strstr(diffcl_last_error(), needle) != NULL, "%s: message lacks \"%s\": %s", what, needle,
                      diffcl_last_error());
}

/* A small valid file's bytes. */
static unsigned char *valid_file(size_t *len)
{
    diffcl_tensor_dict *d = NULL;
    ck_ok(diffcl_tensor_dict_new(ctx, &d));
    const int64_t s1[1] = {3}, s2[2] = {2, 2};
    diffcl_tensor *a = filled(DIFFCL_F32, 1, s1, 1), *b = filled(DIFFCL_I64, 2, s2, 2);
    ck_ok(diffcl_tensor_dict_set(d, "alpha", a));
    ck_ok(diffcl_tensor_dict_set(d, "beta", b));
    ck_ok(diffcl_tensor_dict_set_meta(d, "k", "v"));
    ck_ok(diffcl_safetensors_save(d, tmp_path("valid.safetensors")));
    diffcl_tensor_free(a);
    diffcl_tensor_free(b);
    diffcl_tensor_dict_free(d);
    return read_bytes(tmp_path("valid.safetensors"), len);
}

START_TEST(test_truncated_and_bad_length)
{
    size_t len;
    unsigned char *b = valid_file(&len);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | b[i];
    const char *p = tmp_path("cut.safetensors");
    /* truncated at several points: inside the length, inside the header, inside the data */
    size_t cuts[] = {0, 1, 7, 8, 9, 8 + (size_t)hl / 2, 8 + (size_t)hl - 1, 8 + (size_t)hl, 8 + (size_t)hl + 1,
                     len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "cut at %zu of %zu", cuts[i], len);
        write_bytes(p, b, cuts[i]);
        expect_load_error(p, DIFFCL_ERR_FORMAT, NULL, what);
    }
    /* every other truncation point too: an error, never a crash */
    for (size_t n = 0; n < len; n++) {
        write_bytes(p, b, n);
        diffcl_tensor_dict *d = NULL;
        ck_assert_int_eq(diffcl_safetensors_load(ctx, p, &d), DIFFCL_ERR_FORMAT);
        ck_assert_ptr_null(d);
    }
    /* header length larger than the file, and absurdly large */
    unsigned char *c = malloc(len);
    memcpy(c, b, len);
    uint64_t bad[] = {len - 7, len, (uint64_t)1 << 40, UINT64_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        for (int k = 0; k < 8; k++) c[k] = (unsigned char)(bad[i] >> (8 * k));
        write_bytes(p, c, len);
        expect_load_error(p, DIFFCL_ERR_FORMAT, "header length", "header length too large");
    }
    /* header length smaller than the JSON: the JSON is cut */
    for (int k = 0; k < 8; k++) c[k] = (unsigned char)((hl - 8) >> (8 * k));
    write_bytes(p, c, len);
    expect_load_error(p, DIFFCL_ERR_FORMAT, NULL, "header length too small");
    free(c);
    free(b);
}
END_TEST

typedef struct bad_case {
    const char *what;
    const char *json;
    size_t data_len;
    diffcl_status want;
    const char *needle; /* in the message besides the path */
} bad_case;

START_TEST(test_corrupt_headers)
{
    static const bad_case cases[] = {
        {"bad JSON", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4, DIFFCL_ERR_FORMAT, "JSON"},
        {"not an object", "[{\"a\":1}]", 0, DIFFCL_ERR_FORMAT, "'{'"},
        {"trailing garbage", "{}xyz", 0, DIFFCL_ERR_FORMAT, "after the JSON"},
        {"entry not an object", "{\"a\":5}", 0, DIFFCL_ERR_FORMAT, "a: header entry"},
        {"offsets out of range", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4,
         DIFFCL_ERR_FORMAT, "tensor a"},
        {"offsets far out of range",
         "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4000000000000,4000000000004]}}", 4,
         DIFFCL_ERR_FORMAT, "tensor a"},
        {"offsets reversed", "{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,0]}}", 4, DIFFCL_ERR_FORMAT,
         "tensor a"},
        {"overlap",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
         12, DIFFCL_ERR_FORMAT, "overlap"},
        {"same range twice",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
         8, DIFFCL_ERR_FORMAT, "overlap"},
        {"gap",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
         12, DIFFCL_ERR_FORMAT, "tensor b"},
        {"unused trailing data", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8,
         DIFFCL_ERR_FORMAT, "cover"},
        {"size mismatch", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, DIFFCL_ERR_FORMAT,
         "need 12"},
        {"unknown dtype", "{\"a\":{\"dtype\":\"F17\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, DIFFCL_ERR_FORMAT,
         "F17"},
        {"unsupported dtype", "{\"a\":{\"dtype\":\"U64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8, DIFFCL_ERR_DTYPE,
         "U64"},
        {"dtype not a string", "{\"a\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, DIFFCL_ERR_FORMAT,
         "dtype"},
        {"no dtype", "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, DIFFCL_ERR_FORMAT, "dtype"},
        {"no shape", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, DIFFCL_ERR_FORMAT, "shape"},
        {"no offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, DIFFCL_ERR_FORMAT, "data_offsets"},
        {"three offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 4, DIFFCL_ERR_FORMAT,
         "data_offsets"},
        {"negative offset", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4, DIFFCL_ERR_FORMAT,
         "negative"},
        {"negative shape", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, DIFFCL_ERR_FORMAT,
         "negative"},
        {"fractional shape", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4,
         DIFFCL_ERR_FORMAT, "integer"},
        {"string shape", "{\"a\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4,
         DIFFCL_ERR_FORMAT, "not a number"},
        {"shape not an array", "{\"a\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,4]}}", 4, DIFFCL_ERR_FORMAT,
         "shape"},
        {"huge shape", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,4]}}", 4, DIFFCL_ERR_FORMAT,
         "too large"},
        {"overflowing shape",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,4]}}", 4,
         DIFFCL_ERR_FORMAT, "too many"},
        {"zero times huge", "{\"a\":{\"dtype\":\"F32\",\"shape\":[0,9007199254740992,9007199254740992],"
                            "\"data_offsets\":[0,0]}}",
         0, DIFFCL_ERR_FORMAT, "tensor a"},
        {"six dimensions", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1,
         DIFFCL_ERR_UNSUPPORTED, "tensor a"},
        {"duplicate name",
         "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
         "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
         2, DIFFCL_ERR_FORMAT, "twice"},
        {"metadata not an object", "{\"__metadata__\":[1]}", 0, DIFFCL_ERR_FORMAT, "__metadata__"},
        {"metadata value not a string", "{\"__metadata__\":{\"epoch\":7}}", 0, DIFFCL_ERR_FORMAT, "epoch"},
        {"invalid UTF-8", "{\"a\xff\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
         DIFFCL_ERR_FORMAT, "UTF-8"},
        {"overlong UTF-8", "{\"a\xc0\xaf\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
         DIFFCL_ERR_FORMAT, "UTF-8"},
    };
    unsigned char data[64];
    memset(data, 0x3f, sizeof data);
    const char *p = tmp_path("bad.safetensors");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_st(p, cases[i].json, data, cases[i].data_len);
        expect_load_error(p, cases[i].want, cases[i].needle, cases[i].what);
    }
    /* NUL inside the header */
    static const char nul[] = "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}\0    ";
    unsigned char buf[8 + 64 + 1];
    memset(buf, 0, sizeof buf);
    buf[0] = 64;
    memcpy(buf + 8, nul, sizeof nul - 1);
    buf[8 + 20] = '\0';
    write_bytes(p, buf, sizeof buf);
    expect_load_error(p, DIFFCL_ERR_FORMAT, NULL, "NUL in header");
    /* nesting far beyond cJSON's limit */
    size_t depth = 5000;
    char *deep = malloc(2 * depth + 16);
    size_t k = 0;
    k += (size_t)sprintf(deep, "{\"a\":");
    for (size_t i = 0; i < depth; i++) deep[k++] = '[';
    for (size_t i = 0; i < depth; i++) deep[k++] = ']';
    deep[k++] = '}';
    deep[k] = '\0';
    write_st(p, deep, NULL, 0);
    expect_load_error(p, DIFFCL_ERR_FORMAT, NULL, "deep nesting");
    free(deep);
    /* a zero-size tensor with offsets at the end is fine; so is an empty header object */
    write_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                "\"z\":{\"dtype\":\"F64\",\"shape\":[0,7],\"data_offsets\":[4,4]},\"__metadata__\":null}",
             data, 4);
    diffcl_tensor_dict *d = NULL;
    ck_ok(diffcl_safetensors_load(ctx, p, &d));
    ck_assert_int_eq(diffcl_tensor_dict_size(d), 2);
    diffcl_tensor_dict_free(d);
}
END_TEST

START_TEST(test_missing_and_not_regular)
{
    expect_load_error(tmp_path("does-not-exist.safetensors"), DIFFCL_ERR_IO, "does-not-exist", "missing file");
    expect_load_error(tmpdir, DIFFCL_ERR_IO, NULL, "directory");
    diffcl_tensor_dict *d = NULL;
    ck_assert_int_eq(diffcl_safetensors_load(ctx, NULL, &d), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(diffcl_safetensors_load(ctx, "x", NULL), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(diffcl_safetensors_save(NULL, "x"), DIFFCL_ERR_INVALID_ARGUMENT);
}
END_TEST

/* Random byte corruption of a valid file: any status, never a crash or a leak. */
START_TEST(test_random_corruption)
{
    size_t len;
    unsigned char *b = valid_file(&len);
    unsigned char *c = malloc(len);
    const char *p = tmp_path("fuzz.safetensors");
    diffcl_rng_key key = diffcl_rng_key_make(2024, 3, 0, 0);
    int n_err = 0, n = 400;
    for (int it = 0; it < n; it++) {
        memcpy(c, b, len);
        uint32_t r[8];
        diffcl_rng_bits(key, (uint64_t)it * 8, 8, r);
        int flips = 1 + (int)(r[0] % 3);
        for (int f = 0; f < flips; f++) {
            size_t pos = r[1 + 2 * f] % len;
            c[pos] = (unsigned char)r[2 + 2 * f];
        }
        write_bytes(p, c, len);
        diffcl_tensor_dict *d = NULL;
        diffcl_status s = diffcl_safetensors_load(ctx, p, &d);
        if (s == DIFFCL_OK) {
            ck_assert_ptr_nonnull(d);
            diffcl_tensor_dict_free(d);
        } else {
            ck_assert_ptr_null(d);
            ck_assert(s == DIFFCL_ERR_FORMAT || s == DIFFCL_ERR_DTYPE || s == DIFFCL_ERR_UNSUPPORTED);
            ck_assert(strstr(diffcl_last_error(), p) != NULL);
            n_err++;
        }
    }
    ck_assert_int_gt(n_err, n / 4); /* most header hits are caught */
    free(c);
    free(b);
}
END_TEST

/* ---------------------------------------------------------- atomic save ---- */

static diffcl_tensor_dict *dict_of_size(int64_t n, uint64_t seed)
{
    diffcl_tensor_dict *d = NULL;
    ck_ok(diffcl_tensor_dict_new(ctx, &d));
    diffcl_tensor *t = filled(DIFFCL_F32, 1, &n, seed);
    ck_ok(diffcl_tensor_dict_set(d, "w", t));
    diffcl_tensor_free(t);
    return d;
}

START_TEST(test_save_unwritable)
{
    diffcl_tensor_dict *d = dict_of_size(16, 1);
    const char *p = "/nonexistent-diffcl-dir/sub/x.safetensors";
    diffcl_clear_error();
    ck_assert_int_eq(diffcl_safetensors_save(d, p), DIFFCL_ERR_IO);
    ck_assert_ptr_nonnull(strstr(diffcl_last_error(), p));
    /* a path below a regular file */
    write_bytes(tmp_path("file"), "x", 1);
    ck_assert_int_eq(diffcl_safetensors_save(d, tmp_path("file/x.safetensors")), DIFFCL_ERR_IO);
    /* the target is a directory: the rename fails, the directory stays, no temp remains */
    ck_assert_int_eq(mkdir(tmp_path("adir"), 0700), 0);
    ck_assert_int_eq(diffcl_safetensors_save(d, tmp_path("adir")), DIFFCL_ERR_IO);
    struct stat st;
    ck_assert_int_eq(stat(tmp_path("adir"), &st), 0);
    ck_assert(S_ISDIR(st.st_mode));
    ck_assert_int_eq(count_temp_files(tmpdir), 0);
    /* a read-only folder (permissions do not bind root) */
    if (geteuid() != 0) {
        ck_assert_int_eq(mkdir(tmp_path("ro"), 0500), 0);
        ck_assert_int_eq(diffcl_safetensors_save(d, tmp_path("ro/x.safetensors")), DIFFCL_ERR_IO);
        ck_assert_int_eq(count_temp_files(tmp_path("ro")), 0);
    }
    diffcl_tensor_dict_free(d);
}
END_TEST

START_TEST(test_failed_save_keeps_previous_file)
{
    const char *p = tmp_path("ckpt.safetensors");
    diffcl_tensor_dict *small = dict_of_size(64, 1), *big = dict_of_size(1 << 16, 2);
    ck_ok(diffcl_safetensors_save(small, p));
    size_t len;
    unsigned char *before = read_bytes(p, &len);

    /* A child process whose file-size limit is smaller than the new checkpoint: the write
     * fails half way (EFBIG, as on a full disk). Works as root too. */
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl;
        getrlimit(RLIMIT_FSIZE, &rl);
        rl.rlim_cur = 4096;
        if (setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(100);
        diffcl_status s = diffcl_safetensors_save(big, p);
        int named = strstr(diffcl_last_error(), p) != NULL;
        diffcl_tensor_dict_free(small); /* clean exit under valgrind --error-exitcode too */
        diffcl_tensor_dict_free(big);
        free(before);
        diffcl_context_free(ctx);
        _exit(s == DIFFCL_ERR_IO && named ? 0 : 1);
    }
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    ck_assert_msg(WEXITSTATUS(status) == 0, "child save did not fail with IO naming the path (%d)",
                  WEXITSTATUS(status));
    size_t len2;
    unsigned char *after = read_bytes(p, &len2);
    ck_assert_uint_eq(len, len2);
    ck_assert(memcmp(before, after, len) == 0);
    ck_assert_int_eq(count_temp_files(tmpdir), 0);
    free(after);

    /* an invalid dictionary fails before touching the file */
    diffcl_tensor *t = filled(DIFFCL_F32, 1, (const int64_t[]){2}, 3);
    ck_ok(diffcl_tensor_dict_set(big, "__metadata__", t));
    diffcl_tensor_free(t);
    ck_assert_int_eq(diffcl_safetensors_save(big, p), DIFFCL_ERR_INVALID_ARGUMENT);
    after = read_bytes(p, &len2);
    ck_assert_uint_eq(len, len2);
    ck_assert(memcmp(before, after, len) == 0);
    free(after);

    /* and a successful save replaces it */
    ck_ok(diffcl_tensor_dict_remove(big, "__metadata__"));
    ck_ok(diffcl_safetensors_save(big, p));
    after = read_bytes(p, &len2);
    ck_assert_uint_gt(len2, len);
    ck_assert_int_eq(count_temp_files(tmpdir), 0);
    free(after);
    free(before);
    diffcl_tensor_dict_free(small);
    diffcl_tensor_dict_free(big);
}
END_TEST

/* --------------------------------------------------------- module loads ---- */

static const dc_module_vtable TEST_VT = {"test", NULL, NULL};

/* net: block.conv.{weight,bias}, block.bn.{weight,bias,running_mean,running_var,
 * num_batches_tracked(I64, 0-d)}, head.weight [3,4] -- the fixture's names. */
static diffcl_module *make_net(uint64_t seed)
{
    diffcl_module *net = dc_module_new(ctx, &TEST_VT, NULL), *block = dc_module_new(ctx, &TEST_VT, NULL);
    diffcl_module *conv = dc_module_new(ctx, &TEST_VT, NULL), *bn = dc_module_new(ctx, &TEST_VT, NULL);
    diffcl_module *head = dc_module_new(ctx, &TEST_VT, NULL);
    ck_assert(net && block && conv && bn && head);
    const int64_t sw[4] = {4, 2, 3, 3}, s4[1] = {4}, sh[2] = {3, 4};
    ck_ok(dc_module_add_param(conv, "weight", filled(DIFFCL_F32, 4, sw, seed + 1)));
    ck_ok(dc_module_add_param(conv, "bias", filled(DIFFCL_F32, 1, s4, seed + 2)));
    ck_ok(dc_module_add_param(bn, "weight", filled(DIFFCL_F32, 1, s4, seed + 3)));
    ck_ok(dc_module_add_param(bn, "bias", filled(DIFFCL_F32, 1, s4, seed + 4)));
    ck_ok(dc_module_add_buffer(bn, "running_mean", filled(DIFFCL_F32, 1, s4, seed + 5)));
    ck_ok(dc_module_add_buffer(bn, "running_var", filled(DIFFCL_F32, 1, s4, seed + 6)));
    diffcl_tensor *nbt = NULL;
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_I64, 0, NULL, &nbt));
    *(int64_t *)diffcl_tensor_data(nbt) = (int64_t)seed;
    ck_ok(dc_module_add_buffer(bn, "num_batches_tracked", nbt));
    ck_ok(dc_module_add_param(head, "weight", filled(DIFFCL_F32, 2, sh, seed + 7)));
    ck_ok(dc_module_add_child(block, "conv", conv));
    ck_ok(dc_module_add_child(block, "bn", bn));
    ck_ok(dc_module_add_child(net, "block", block));
    ck_ok(dc_module_add_child(net, "head", head));
    ck_assert_int_eq(diffcl_module_state_count(net, DIFFCL_STATE_ALL), 8);
    return net;
}

/* Deep copy of the module's state (to check it did not change). */
static diffcl_tensor_dict *snapshot(const diffcl_module *m)
{
    diffcl_tensor_dict *d = NULL;
    ck_ok(diffcl_tensor_dict_new(ctx, &d));
    int n = diffcl_module_state_count(m, DIFFCL_STATE_ALL);
    for (int i = 0; i < n; i++) {
        const char *name;
        diffcl_tensor *t, *c = NULL;
        ck_ok(diffcl_module_state_entry(m, DIFFCL_STATE_ALL, i, &name, &t, NULL));
        ck_ok(diffcl_tensor_contiguous(t, &c));
        diffcl_tensor *copy = NULL;
        ck_ok(diffcl_tensor_from_data(ctx, diffcl_tensor_dtype(c), diffcl_tensor_ndim(c),
                                      (int64_t[]){diffcl_tensor_dim(c, 0), diffcl_tensor_dim(c, 1),
                                                  diffcl_tensor_dim(c, 2), diffcl_tensor_dim(c, 3), 0},
                                      diffcl_tensor_data(c), &copy));
        ck_ok(diffcl_tensor_dict_set(d, name, copy));
        diffcl_tensor_free(copy);
        diffcl_tensor_free(c);
    }
    return d;
}

static void assert_module_equals(const diffcl_module *m, const diffcl_tensor_dict *snap, const char *what)
{
    ck_assert_int_eq(diffcl_module_state_count(m, DIFFCL_STATE_ALL), diffcl_tensor_dict_size(snap));
    for (int i = 0; i < diffcl_tensor_dict_size(snap); i++) {
        const char *name = diffcl_tensor_dict_name(snap, i);
        char w[256];
        snprintf(w, sizeof w, "%s: %s", what, name);
        assert_same_tensor(diffcl_module_find(m, name), diffcl_tensor_dict_at(snap, i), w);
    }
}

/* The state dict of a module as a fresh dictionary of copies, with keys renamed. */
static diffcl_tensor_dict *state_copy(const diffcl_module *m, const char *key_prefix)
{
    diffcl_tensor_dict *s = snapshot(m), *d = NULL;
    ck_ok(diffcl_tensor_dict_new(ctx, &d));
    for (int i = 0; i < diffcl_tensor_dict_size(s); i++) {
        char k[256];
        snprintf(k, sizeof k, "%s%s", key_prefix, diffcl_tensor_dict_name(s, i));
        ck_ok(diffcl_tensor_dict_set(d, k, diffcl_tensor_dict_at(s, i)));
    }
    diffcl_tensor_dict_free(s);
    return d;
}

typedef struct log_capture {
    char text[4096];
    int warnings;
} log_capture;

static void capture_log(diffcl_log_level level, const char *msg, void *user)
{
    log_capture *c = user;
    if (level == DIFFCL_LOG_WARN) c->warnings++;
    size_t n = strlen(c->text);
    snprintf(c->text + n, sizeof c->text - n, "%s\n", msg);
}

START_TEST(test_module_strict_and_non_strict)
{
    diffcl_module *src = make_net(100), *dst = make_net(200);
    diffcl_tensor_dict *good = state_copy(src, "");
    diffcl_tensor_dict *orig = snapshot(dst), *want = snapshot(src);
    diffcl_load_options o = DIFFCL_LOAD_OPTIONS_INIT;
    int nm = -1, nu = -1;

    /* missing key: strict error naming it, module unchanged */
    diffcl_tensor_dict *d = state_copy(src, "");
    ck_ok(diffcl_tensor_dict_remove(d, "block.bn.running_var"));
    ck_assert_int_eq(diffcl_module_load_state_dict(dst, d, &o, &nm, &nu), DIFFCL_ERR_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(diffcl_last_error(), "block.bn.running_var"));
    ck_assert_int_eq(nm, 1);
    ck_assert_int_eq(nu, 0);
    assert_module_equals(dst, orig, "after missing");
    /* non-strict: loads the rest, warns through the log */
    log_capture cap = {"", 0};
    ck_ok(diffcl_context_set_log(ctx, capture_log, &cap, DIFFCL_LOG_DEBUG));
    o.strict = 0;
    ck_ok(diffcl_module_load_state_dict(dst, d, &o, &nm, &nu));
    ck_assert_int_eq(nm, 1);
    ck_assert_int_eq(nu, 0);
    ck_assert_int_eq(cap.warnings, 1);
    ck_assert_ptr_nonnull(strstr(cap.text, "block.bn.running_var"));
    assert_same_tensor(diffcl_module_find(dst, "block.conv.weight"), diffcl_tensor_dict_get(want, "block.conv.weight"),
                       "non-strict");
    assert_same_tensor(diffcl_module_find(dst, "block.bn.running_var"),
                       diffcl_tensor_dict_get(orig, "block.bn.running_var"), "missing stays");
    diffcl_tensor_dict_free(d);
    o.strict = 1;

    /* unexpected key */
    diffcl_module_free(dst);
    dst = make_net(200);
    d = state_copy(src, "");
    const int64_t s3[1] = {3};
    diffcl_tensor *extra = filled(DIFFCL_F32, 1, s3, 5);
    ck_ok(diffcl_tensor_dict_set(d, "extra.thing", extra));
    diffcl_tensor_free(extra);
    ck_assert_int_eq(diffcl_module_load_state_dict(dst, d, &o, &nm, &nu), DIFFCL_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(diffcl_last_error(), "extra.thing"));
    ck_assert_int_eq(nm, 0);
    ck_assert_int_eq(nu, 1);
    assert_module_equals(dst, orig, "after unexpected");
    o.strict = 0;
    ck_ok(diffcl_module_load_state_dict(dst, d, &o, &nm, &nu));
    ck_assert_int_eq(nu, 1);
    assert_module_equals(dst, want, "non-strict with extra");
    diffcl_tensor_dict_free(d);
    o.strict = 1;

    /* both */
    diffcl_module_free(dst);
    dst = make_net(200);
    d = state_copy(src, "");
    ck_ok(diffcl_tensor_dict_remove(d, "head.weight"));
    extra = filled(DIFFCL_F32, 1, s3, 5);
    ck_ok(diffcl_tensor_dict_set(d, "head.wieght", extra));
    diffcl_tensor_free(extra);
    ck_assert_int_eq(diffcl_module_load_state_dict(dst, d, &o, &nm, &nu), DIFFCL_ERR_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(diffcl_last_error(), "head.weight"));
    ck_assert_ptr_nonnull(strstr(diffcl_last_error(), "head.wieght"));
    assert_module_equals(dst, orig, "after both");
    diffcl_tensor_dict_free(d);

    /* strict success */
    ck_ok(diffcl_module_load_state_dict(dst, good, NULL, &nm, &nu));
    ck_assert_int_eq(nm + nu, 0);
    assert_module_equals(dst, want, "strict");
    ck_assert(diffcl_tensor_requires_grad(diffcl_module_find(dst, "head.weight")));
    ck_ok(diffcl_context_set_log(ctx, NULL, NULL, DIFFCL_LOG_WARN));

    /* options with a bad struct_size */
    diffcl_load_options bad = DIFFCL_LOAD_OPTIONS_INIT;
    bad.struct_size = 0;
    ck_assert_int_eq(diffcl_module_load_state_dict(dst, good, &bad, NULL, NULL), DIFFCL_ERR_INVALID_ARGUMENT);
    diffcl_tensor_dict_free(good);
    diffcl_tensor_dict_free(orig);
    diffcl_tensor_dict_free(want);
    diffcl_module_free(src);
    diffcl_module_free(dst);
}
END_TEST

START_TEST(test_module_shape_errors)
{
    diffcl_module *src = make_net(100), *dst = make_net(200);
    diffcl_tensor_dict *orig = snapshot(dst);
    diffcl_load_options o = DIFFCL_LOAD_OPTIONS_INIT;
    for (int strict = 1; strict >= 0; strict--) {
        o.strict = strict;
        diffcl_tensor_dict *d = state_copy(src, "");
        const int64_t s5[1] = {5};
        diffcl_tensor *wrong = filled(DIFFCL_F32, 1, s5, 9);
        ck_ok(diffcl_tensor_dict_set(d, "block.conv.bias", wrong));
        diffcl_tensor_free(wrong);
        diffcl_clear_error();
        ck_assert_int_eq(diffcl_module_load_state_dict(dst, d, &o, NULL, NULL), DIFFCL_ERR_SHAPE);
        const char *msg = diffcl_last_error();
        ck_assert_msg(strstr(msg, "block.conv.bias") && strstr(msg, "[4]") && strstr(msg, "[5]"), "message: %s", msg);
        assert_module_equals(dst, orig, "after shape error");
        diffcl_tensor_dict_free(d);
    }
    /* the same through a DDP key: the message names both */
    o.strict = 1;
    diffcl_tensor_dict *d = state_copy(src, "module.");
    const int64_t s23[2] = {2, 3};
    diffcl_tensor *wrong = filled(DIFFCL_F32, 2, s23, 9);
    ck_ok(diffcl_tensor_dict_set(d, "module.head.weight", wrong));
    diffcl_tensor_free(wrong);
    ck_assert_int_eq(diffcl_module_load_state_dict(dst, d, &o, NULL, NULL), DIFFCL_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(diffcl_last_error(), "module.head.weight"));
    ck_assert_ptr_nonnull(strstr(diffcl_last_error(), "[3,4]"));
    ck_assert_ptr_nonnull(strstr(diffcl_last_error(), "[2,3]"));
    assert_module_equals(dst, orig, "after DDP shape error");
    diffcl_tensor_dict_free(d);
    diffcl_tensor_dict_free(orig);
    diffcl_module_free(src);
    diffcl_module_free(dst);
}
END_TEST

START_TEST(test_module_prefixes)
{
    diffcl_module *src = make_net(100), *dst = make_net(200);
    diffcl_tensor_dict *want = snapshot(src), *orig = snapshot(dst);
    diffcl_load_options o = DIFFCL_LOAD_OPTIONS_INIT;
    int nm, nu;

    /* DataParallel / DDP keys */
    diffcl_tensor_dict *d = state_copy(src, "module.");
    o.strip_module_prefix = 0;
    ck_assert_int_eq(diffcl_module_load_state_dict(dst, d, &o, &nm, &nu), DIFFCL_ERR_NOT_FOUND);
    ck_assert_int_eq(nm, 8);
    ck_assert_int_eq(nu, 8);
    assert_module_equals(dst, orig, "no strip");
    o.strip_module_prefix = 1;
    ck_ok(diffcl_module_load_state_dict(dst, d, &o, &nm, &nu));
    ck_assert_int_eq(nm + nu, 0);
    assert_module_equals(dst, want, "module. stripped");
    diffcl_tensor_dict_free(d);

    /* a combined checkpoint: "model." for this module, "ema." for another */
    diffcl_module_free(dst);
    dst = make_net(200);
    diffcl_module *other = make_net(300);
    d = state_copy(src, "model.");
    diffcl_tensor_dict *e = state_copy(other, "ema.");
    for (int i = 0; i < diffcl_tensor_dict_size(e); i++)
        ck_ok(diffcl_tensor_dict_set(d, diffcl_tensor_dict_name(e, i), diffcl_tensor_dict_at(e, i)));
    o.prefix = "model.";
    ck_ok(diffcl_module_load_state_dict(dst, d, &o, &nm, &nu));
    ck_assert_int_eq(nm + nu, 0);
    assert_module_equals(dst, want, "prefix model.");
    /* DDP keys under a prefix written by a wrapped model: "module.model.x" */
    diffcl_tensor_dict_free(d);
    diffcl_tensor_dict_free(e);
    diffcl_module_free(dst);
    dst = make_net(200);
    d = state_copy(src, "module.model.");
    ck_ok(diffcl_module_load_state_dict(dst, d, &o, &nm, &nu));
    assert_module_equals(dst, want, "module.model.");
    diffcl_tensor_dict_free(d);

    /* a key present both with and without "module." is an error, not a silent pick */
    o.prefix = NULL;
    d = state_copy(src, "");
    diffcl_tensor_dict *dd = state_copy(other, "module.");
    ck_ok(diffcl_tensor_dict_set(d, "module.head.weight", diffcl_tensor_dict_get(dd, "module.head.weight")));
    diffcl_tensor_dict *before = snapshot(dst);
    ck_assert_int_eq(diffcl_module_load_state_dict(dst, d, &o, NULL, NULL), DIFFCL_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(diffcl_last_error(), "head.weight"));
    assert_module_equals(dst, before, "duplicate key");
    diffcl_tensor_dict_free(before);
    diffcl_tensor_dict_free(dd);
    diffcl_tensor_dict_free(d);
    diffcl_tensor_dict_free(want);
    diffcl_tensor_dict_free(orig);
    diffcl_module_free(other);
    diffcl_module_free(src);
    diffcl_module_free(dst);
}
END_TEST

START_TEST(test_module_dtypes)
{
    diffcl_module *src = make_net(100), *dst = make_net(200);
    diffcl_tensor_dict *orig = snapshot(dst);
    diffcl_load_options o = DIFFCL_LOAD_OPTIONS_INIT;
    /* F64 parameters, I32 counter given as [1] (old checkpoints): converted */
    diffcl_tensor_dict *d = state_copy(src, "");
    for (int i = 0; i < diffcl_tensor_dict_size(d); i++) {
        diffcl_tensor *t = diffcl_tensor_dict_at(d, i), *c = NULL;
        if (diffcl_tensor_dtype(t) != DIFFCL_F32) continue;
        ck_ok(diffcl_tensor_to_dtype(t, DIFFCL_F64, &c));
        ck_ok(diffcl_tensor_dict_set(d, diffcl_tensor_dict_name(d, i), c));
        diffcl_tensor_free(c);
    }
    const int64_t s1[1] = {1};
    int32_t count = 77;
    diffcl_tensor *cnt = NULL;
    ck_ok(diffcl_tensor_from_data(ctx, DIFFCL_I32, 1, s1, &count, &cnt));
    ck_ok(diffcl_tensor_dict_set(d, "block.bn.num_batches_tracked", cnt));
    diffcl_tensor_free(cnt);
    ck_ok(diffcl_module_load_state_dict(dst, d, &o, NULL, NULL));
    diffcl_tensor *w = diffcl_module_find(dst, "block.conv.weight");
    ck_assert_int_eq(diffcl_tensor_dtype(w), DIFFCL_F32);
    assert_same_tensor(w, diffcl_module_find(src, "block.conv.weight"), "F64 -> F32");
    diffcl_tensor *nbt = diffcl_module_find(dst, "block.bn.num_batches_tracked");
    ck_assert_int_eq(diffcl_tensor_dtype(nbt), DIFFCL_I64);
    ck_assert_int_eq(diffcl_tensor_ndim(nbt), 0);
    ck_assert_int_eq(*(const int64_t *)diffcl_tensor_data_const(nbt), 77);
    diffcl_tensor_dict_free(d);

    /* a failure found while converting the last entry leaves every earlier one unchanged */
    diffcl_module_free(dst);
    dst = make_net(200);
    d = state_copy(src, "");
    double frac = 2.5;
    diffcl_tensor *bad = NULL;
    ck_ok(diffcl_tensor_from_data(ctx, DIFFCL_F64, 0, NULL, &frac, &bad));
    ck_ok(diffcl_tensor_dict_set(d, "block.bn.num_batches_tracked", bad));
    diffcl_tensor_free(bad);
    ck_assert_int_eq(diffcl_module_load_state_dict(dst, d, &o, NULL, NULL), DIFFCL_ERR_DTYPE);
    ck_assert_ptr_nonnull(strstr(diffcl_last_error(), "block.bn.num_batches_tracked"));
    assert_module_equals(dst, orig, "after dtype error");
    /* an integral float is accepted for an integer buffer */
    frac = 41.0;
    ck_ok(diffcl_tensor_from_data(ctx, DIFFCL_F64, 0, NULL, &frac, &bad));
    ck_ok(diffcl_tensor_dict_set(d, "block.bn.num_batches_tracked", bad));
    diffcl_tensor_free(bad);
    ck_ok(diffcl_module_load_state_dict(dst, d, &o, NULL, NULL));
    ck_assert_int_eq(*(const int64_t *)diffcl_tensor_data_const(diffcl_module_find(dst, "block.bn.num_batches_tracked")),
                     41);
    diffcl_tensor_dict_free(d);

    /* out of range for a U8 buffer */
    diffcl_module *m = dc_module_new(ctx, &TEST_VT, NULL);
    diffcl_tensor *mask = NULL;
    const int64_t s2[1] = {2};
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_U8, 1, s2, &mask));
    ck_ok(dc_module_add_buffer(m, "mask", mask));
    int64_t vals[2] = {1, 256};
    diffcl_tensor *big = NULL;
    ck_ok(diffcl_tensor_from_data(ctx, DIFFCL_I64, 1, s2, vals, &big));
    ck_ok(diffcl_tensor_dict_new(ctx, &d));
    ck_ok(diffcl_tensor_dict_set(d, "mask", big));
    ck_assert_int_eq(diffcl_module_load_state_dict(m, d, &o, NULL, NULL), DIFFCL_ERR_DTYPE);
    ck_assert_ptr_nonnull(strstr(diffcl_last_error(), "mask"));
    ck_assert_int_eq(((const uint8_t *)diffcl_tensor_data_const(mask))[0], 0);
    vals[1] = 255;
    diffcl_tensor_free(big);
    ck_ok(diffcl_tensor_from_data(ctx, DIFFCL_I64, 1, s2, vals, &big));
    ck_ok(diffcl_tensor_dict_set(d, "mask", big));
    ck_ok(diffcl_module_load_state_dict(m, d, &o, NULL, NULL));
    ck_assert_int_eq(((const uint8_t *)diffcl_tensor_data_const(mask))[1], 255);
    diffcl_tensor_free(big);
    diffcl_tensor_dict_free(d);
    diffcl_module_free(m);
    diffcl_tensor_dict_free(orig);
    diffcl_module_free(src);
    diffcl_module_free(dst);
}
END_TEST

START_TEST(test_module_from_pytorch_fixture)
{
    diffcl_module *net = make_net(200);
    diffcl_tensor_dict *orig = snapshot(net), *want = NULL;
    const char *path = test_fixture_path("io_checkpoint.safetensors");
    ck_ok(diffcl_safetensors_load(ctx, test_fixture_path("io_checkpoint_expected.safetensors"), &want));
    /* strict: the fixture has tensors the module lacks */
    diffcl_load_options o = DIFFCL_LOAD_OPTIONS_INIT;
    ck_assert_int_eq(diffcl_module_load(net, path, &o), DIFFCL_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(diffcl_last_error(), path));
    ck_assert_ptr_nonnull(strstr(diffcl_last_error(), "half"));
    assert_module_equals(net, orig, "strict fixture");
    o.strict = 0;
    ck_ok(diffcl_module_load(net, path, &o));
    /* every module entry has torch's value: F64 head.weight rounded to F32, I64 counter exact */
    int n = diffcl_module_state_count(net, DIFFCL_STATE_ALL);
    for (int i = 0; i < n; i++) {
        const char *name;
        diffcl_tensor *t;
        ck_ok(diffcl_module_state_entry(net, DIFFCL_STATE_ALL, i, &name, &t, NULL));
        const diffcl_tensor *w = diffcl_tensor_dict_get(want, name);
        ck_assert_ptr_nonnull(w);
        int64_t k = diffcl_tensor_numel(t);
        ck_assert_int_eq(k, diffcl_tensor_numel(w));
        if (diffcl_tensor_dtype(t) == DIFFCL_I64) {
            ck_assert_int_eq(*(const int64_t *)diffcl_tensor_data_const(t), 123456789012LL);
            continue;
        }
        ck_assert_int_eq(diffcl_tensor_dtype(t), DIFFCL_F32);
        const float *a = diffcl_tensor_data_const(t);
        const double *b = diffcl_tensor_data_const(w);
        for (int64_t j = 0; j < k; j++) ck_assert_msg(a[j] == (float)b[j], "%s[%lld]", name, (long long)j);
    }
    /* missing file */
    ck_assert_int_eq(diffcl_module_load(net, tmp_path("nope.safetensors"), &o), DIFFCL_ERR_IO);
    ck_assert_ptr_nonnull(strstr(diffcl_last_error(), "nope.safetensors"));
    diffcl_tensor_dict_free(orig);
    diffcl_tensor_dict_free(want);
    diffcl_module_free(net);
}
END_TEST

START_TEST(test_module_save_load_roundtrip)
{
    diffcl_module *a = make_net(100), *b = make_net(200);
    const char *keys[2] = {"diffcl.model", "epoch"}, *vals[2] = {"{\"type\":\"test\"}", "12"};
    const char *path = tmp_path("net.safetensors");
    ck_ok(diffcl_module_save(a, path, keys, vals, 2));
    ck_ok(diffcl_module_load(b, path, NULL));
    diffcl_tensor_dict *want = snapshot(a);
    assert_module_equals(b, want, "round trip");
    diffcl_tensor_dict *d = NULL;
    ck_ok(diffcl_safetensors_load(ctx, path, &d));
    ck_assert_str_eq(diffcl_tensor_dict_get_meta(d, "epoch"), "12");
    ck_assert_str_eq(diffcl_tensor_dict_get_meta(d, "diffcl.model"), "{\"type\":\"test\"}");
    ck_assert_int_eq(diffcl_tensor_dtype(diffcl_tensor_dict_get(d, "block.bn.num_batches_tracked")), DIFFCL_I64);
    ck_assert_str_eq(diffcl_tensor_dict_name(d, 0), "block.conv.weight"); /* state_dict order */
    diffcl_tensor_dict_free(d);
    /* no metadata */
    ck_ok(diffcl_module_save(a, path, NULL, NULL, 0));
    ck_assert_int_eq(diffcl_module_save(a, path, NULL, NULL, 1), DIFFCL_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(diffcl_module_save(a, "/nonexistent-diffcl-dir/x.safetensors", NULL, NULL, 0), DIFFCL_ERR_IO);
    ck_assert_int_eq(count_temp_files(tmpdir), 0);
    diffcl_tensor_dict_free(want);
    diffcl_module_free(a);
    diffcl_module_free(b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("io");
    TCase *st = tcase_create("safetensors");
    tcase_add_checked_fixture(st, setup, teardown);
    tcase_add_test(st, test_fixture_values);
    tcase_add_test(st, test_roundtrip_every_dtype);
    tcase_add_test(st, test_metadata_roundtrip);
    tcase_add_test(st, test_truncated_and_bad_length);
    tcase_add_test(st, test_corrupt_headers);
    tcase_add_test(st, test_missing_and_not_regular);
    tcase_add_test(st, test_random_corruption);
    tcase_add_test(st, test_save_unwritable);
    tcase_add_test(st, test_failed_save_keeps_previous_file);
    suite_add_tcase(s, st);
    TCase *mt = tcase_create("module");
    tcase_add_checked_fixture(mt, setup, teardown);
    tcase_add_test(mt, test_module_strict_and_non_strict);
    tcase_add_test(mt, test_module_shape_errors);
    tcase_add_test(mt, test_module_prefixes);
    tcase_add_test(mt, test_module_dtypes);
    tcase_add_test(mt, test_module_from_pytorch_fixture);
    tcase_add_test(mt, test_module_save_load_roundtrip);
    suite_add_tcase(s, mt);
    return test_run_suite(s);
}
