/* Tensor creation, lifetime, queries and copies in and out. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/tensor_internal.h"

size_t diffcl_dtype_size(diffcl_dtype dtype)
{
    switch (dtype) {
    case DIFFCL_F32: return 4;
    case DIFFCL_F64: return 8;
    case DIFFCL_U8: return 1;
    case DIFFCL_I32: return 4;
    case DIFFCL_I64: return 8;
    }
    return 0;
}

const char *diffcl_dtype_name(diffcl_dtype dtype)
{
    switch (dtype) {
    case DIFFCL_F32: return "f32";
    case DIFFCL_F64: return "f64";
    case DIFFCL_U8: return "u8";
    case DIFFCL_I32: return "i32";
    case DIFFCL_I64: return "i64";
    }
    return "?";
}

int dc_is_float(diffcl_dtype d)
{
    return d == DIFFCL_F32 || d == DIFFCL_F64;
}

int dc_norm_axis(int axis, int ndim)
{
    if (axis < 0) axis += ndim;
    return (axis < 0 || axis >= ndim) ? -1 : axis;
}

static int64_t shape_numel(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

int64_t dc_numel(const diffcl_tensor *t)
{
    return shape_numel(t->ndim, t->shape);
}

static void contiguous_strides(int ndim, const int64_t *shape, int64_t *strides)
{
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        strides[i] = s;
        s *= shape[i];
    }
}

int64_t dc_per_sample(const diffcl_tensor *x)
{
    int64_t n = dc_numel(x);
    return x->ndim && x->shape[0] ? n / x->shape[0] : n;
}

int dc_is_contiguous(const diffcl_tensor *t)
{
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->strides[i] != s) return 0;
        s *= t->shape[i];
    }
    return 1;
}

int dc_same_shape(const diffcl_tensor *a, const diffcl_tensor *b)
{
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

const char *dc_shape_str(const diffcl_tensor *t)
{
    static _Thread_local char buf[4][96];
    static _Thread_local int which;
    char *b = buf[which++ & 3];
    int n = snprintf(b, 96, "[");
    for (int i = 0; i < t->ndim; i++)
        n += snprintf(b + n, 96 - n, "%s%lld", i ? "," : "", (long long)t->shape[i]);
    snprintf(b + n, 96 - n, "]");
    return b;
}

static diffcl_status check_shape(int ndim, const int64_t *shape, const char *fn)
{
    if (ndim < 0 || ndim > DIFFCL_MAX_DIMS)
        return dc_error(DIFFCL_ERR_INVALID_ARGUMENT, "%s: ndim %d not in 0..%d", fn, ndim,
                        DIFFCL_MAX_DIMS);
    if (ndim > 0 && !shape) return dc_error(DIFFCL_ERR_INVALID_ARGUMENT, "%s: shape is NULL", fn);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return dc_error(DIFFCL_ERR_INVALID_ARGUMENT, "%s: negative size %lld on axis %d", fn,
                            (long long)shape[i], i);
        if (shape[i] > 0 && n > INT64_MAX / 16 / shape[i])
            return dc_error(DIFFCL_ERR_INVALID_ARGUMENT,
                            "%s: shape too large: its byte size overflows 64 bits",
                            fn); /* a bad size, not a failed allocation */
        n *= shape[i];
    }
    return DIFFCL_OK;
}

static diffcl_tensor *tensor_struct(diffcl_context *ctx, diffcl_dtype dtype, int ndim,
                                    const int64_t *shape)
{
    diffcl_tensor *t = dc_calloc_raw(1, sizeof *t);
    if (!t) {
        dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "out of memory allocating a tensor");
        return NULL;
    }
    t->refcount = 1;
    t->ctx = ctx;
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    contiguous_strides(ndim, shape, t->strides);
    return t;
}

diffcl_tensor *dc_tensor_empty(diffcl_context *ctx, diffcl_dtype dtype, int ndim,
                               const int64_t *shape)
{
    if (check_shape(ndim, shape, "tensor") != DIFFCL_OK) return NULL;
    if (diffcl_dtype_size(dtype) == 0) {
        dc_error(DIFFCL_ERR_DTYPE, "unknown dtype %d", (int)dtype);
        return NULL;
    }
    diffcl_tensor *t = tensor_struct(ctx, dtype, ndim, shape);
    if (!t) return NULL;
    dc_storage *s = dc_calloc_raw(1, sizeof *s);
    size_t nbytes = (size_t)shape_numel(ndim, shape) * diffcl_dtype_size(dtype);
    void *data = s ? dc_alloc(ctx, nbytes) : NULL;
    if (!data) {
        free(s);
        free(t);
        dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "out of memory allocating a tensor of %zu bytes",
                 nbytes);
        return NULL;
    }
    s->refcount = 1;
    s->ctx = ctx;
    s->data = data;
    s->nbytes = nbytes;
    s->owned = 1;
    t->storage = s;
    return t;
}

diffcl_tensor *dc_tensor_new(diffcl_context *ctx, diffcl_dtype dtype, int ndim,
                             const int64_t *shape)
{
    diffcl_tensor *t = dc_tensor_empty(ctx, dtype, ndim, shape);
    if (t) memset(t->storage->data, 0, t->storage->nbytes);
    return t;
}

diffcl_tensor *dc_tensor_empty_like(const diffcl_tensor *t)
{
    return dc_tensor_empty(t->ctx, t->dtype, t->ndim, t->shape);
}

diffcl_tensor *dc_tensor_zeros_like(const diffcl_tensor *t)
{
    return dc_tensor_new(t->ctx, t->dtype, t->ndim, t->shape);
}

diffcl_tensor *dc_tensor_alias(const diffcl_tensor *t, int ndim, const int64_t *shape,
                               const int64_t *strides, int64_t offset)
{
    diffcl_tensor *v = tensor_struct(t->ctx, t->dtype, ndim, shape);
    if (!v) return NULL;
    for (int i = 0; i < ndim; i++) v->strides[i] = strides[i];
    v->offset = offset;
    v->storage = t->storage;
    t->storage->refcount++;
    return v;
}

diffcl_status diffcl_tensor_new(diffcl_context *ctx, diffcl_dtype dtype, int ndim,
                                const int64_t *shape, diffcl_tensor **out)
{
    DC_CHECK_ARG(out, "diffcl_tensor_new: out is NULL");
    *out = NULL;
    DC_CHECK_ARG(ctx, "diffcl_tensor_new: ctx is NULL");
    DC_TRY(check_shape(ndim, shape, "diffcl_tensor_new"));
    if (diffcl_dtype_size(dtype) == 0)
        return dc_error(DIFFCL_ERR_DTYPE, "diffcl_tensor_new: unknown dtype %d", (int)dtype);
    *out = dc_tensor_new(ctx, dtype, ndim, shape);
    return *out ? DIFFCL_OK : DIFFCL_ERR_OUT_OF_MEMORY;
}

diffcl_status diffcl_tensor_from_data(diffcl_context *ctx, diffcl_dtype dtype, int ndim,
                                      const int64_t *shape, const void *data, diffcl_tensor **out)
{
    DC_CHECK_ARG(out, "diffcl_tensor_from_data: out is NULL");
    *out = NULL;
    DC_CHECK_ARG(ctx, "diffcl_tensor_from_data: ctx is NULL");
    DC_CHECK_ARG(data, "diffcl_tensor_from_data: data is NULL");
    DC_TRY(check_shape(ndim, shape, "diffcl_tensor_from_data"));
    if (diffcl_dtype_size(dtype) == 0)
        return dc_error(DIFFCL_ERR_DTYPE, "diffcl_tensor_from_data: unknown dtype %d", (int)dtype);
    diffcl_tensor *t = dc_tensor_empty(ctx, dtype, ndim, shape);
    if (!t) return DIFFCL_ERR_OUT_OF_MEMORY;
    memcpy(t->storage->data, data, t->storage->nbytes);
    *out = t;
    return DIFFCL_OK;
}

diffcl_status diffcl_tensor_wrap(diffcl_context *ctx, diffcl_dtype dtype, int ndim,
                                 const int64_t *shape, const int64_t *strides, void *data,
                                 diffcl_deleter_fn deleter, void *user, diffcl_tensor **out)
{
    DC_CHECK_ARG(out, "diffcl_tensor_wrap: out is NULL");
    *out = NULL;
    DC_CHECK_ARG(ctx, "diffcl_tensor_wrap: ctx is NULL");
    DC_CHECK_ARG(data, "diffcl_tensor_wrap: data is NULL");
    DC_TRY(check_shape(ndim, shape, "diffcl_tensor_wrap"));
    if (diffcl_dtype_size(dtype) == 0)
        return dc_error(DIFFCL_ERR_DTYPE, "diffcl_tensor_wrap: unknown dtype %d", (int)dtype);
    if (strides)
        for (int i = 0; i < ndim; i++)
            DC_CHECK_ARG(strides[i] >= 0, "diffcl_tensor_wrap: negative stride on axis %d", i);
    diffcl_tensor *t = tensor_struct(ctx, dtype, ndim, shape);
    dc_storage *s = t ? dc_calloc_raw(1, sizeof *s) : NULL;
    if (!s) {
        free(t);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "diffcl_tensor_wrap: out of memory");
    }
    if (strides)
        for (int i = 0; i < ndim; i++) t->strides[i] = strides[i];
    s->refcount = 1;
    s->ctx = ctx;
    s->data = data;
    s->deleter = deleter;
    s->deleter_user = user;
    t->storage = s;
    *out = t;
    return DIFFCL_OK;
}

diffcl_tensor *diffcl_tensor_retain(diffcl_tensor *t)
{
    if (t) t->refcount++;
    return t;
}

static void storage_release(dc_storage *s)
{
    if (!s || --s->refcount > 0) return;
    if (s->owned)
        dc_free(s->ctx, s->data, s->nbytes);
    else if (s->deleter)
        s->deleter(s->data, s->deleter_user);
    free(s);
}

/* An intermediate result that only graph nodes still hold, none of which will read its data
 * (they saved what their backward needs), gives its storage back now: PyTorch frees such
 * activations the same way, and without it every intermediate lived until backward — a
 * third more activation memory in a conv + batch norm + ReLU network. The tensor object
 * stays for its shape and graph links; nothing can reach its data any more. */
static void graph_release(diffcl_tensor *t)
{
    if (t->node && t->storage && t->graph_pins == 0 && t->refcount == t->graph_refs &&
        !t->n_hooks) {
        storage_release(t->storage);
        t->storage = NULL;
    }
}

void diffcl_tensor_free(diffcl_tensor *t)
{
    if (!t) return;
    if (--t->refcount > 0) {
        graph_release(t);
        return;
    }
    if (t->node) dc_node_free(t->node);
    diffcl_tensor_free(t->grad);
    free(t->hooks);
    storage_release(t->storage);
    free(t);
}

/* ------------------------------------------------------------- queries ---- */

int diffcl_tensor_ndim(const diffcl_tensor *t)
{
    return t ? t->ndim : 0;
}

int64_t diffcl_tensor_dim(const diffcl_tensor *t, int axis)
{
    if (!t) return -1;
    int a = dc_norm_axis(axis, t->ndim);
    return a < 0 ? -1 : t->shape[a];
}

int diffcl_tensor_shape(const diffcl_tensor *t, int64_t shape[DIFFCL_MAX_DIMS])
{
    if (!t) return 0;
    for (int i = 0; i < t->ndim; i++) shape[i] = t->shape[i];
    return t->ndim;
}

int diffcl_tensor_strides(const diffcl_tensor *t, int64_t strides[DIFFCL_MAX_DIMS])
{
    if (!t) return 0;
    for (int i = 0; i < t->ndim; i++) strides[i] = t->strides[i];
    return t->ndim;
}

int64_t diffcl_tensor_numel(const diffcl_tensor *t)
{
    return t ? dc_numel(t) : 0;
}
diffcl_dtype diffcl_tensor_dtype(const diffcl_tensor *t)
{
    return t ? t->dtype : DIFFCL_F32;
}
int diffcl_tensor_is_contiguous(const diffcl_tensor *t)
{
    return t ? dc_is_contiguous(t) : 0;
}
diffcl_context *diffcl_tensor_context(const diffcl_tensor *t)
{
    return t ? t->ctx : NULL;
}
void *diffcl_tensor_data(diffcl_tensor *t)
{
    return t ? dc_data(t) : NULL;
}
const void *diffcl_tensor_data_const(const diffcl_tensor *t)
{
    return t ? dc_data(t) : NULL;
}

/* ---------------------------------------------------------------- copies ---- */

static double load_as_double(const void *p, diffcl_dtype d)
{
    switch (d) {
    case DIFFCL_F32: return *(const float *)p;
    case DIFFCL_F64: return *(const double *)p;
    case DIFFCL_U8: return *(const uint8_t *)p;
    case DIFFCL_I32: return *(const int32_t *)p;
    case DIFFCL_I64: return (double)*(const int64_t *)p;
    }
    return 0;
}

static void store_double(void *p, diffcl_dtype d, double v)
{
    switch (d) {
    case DIFFCL_F32: *(float *)p = (float)v; break;
    case DIFFCL_F64: *(double *)p = v; break;
    case DIFFCL_U8: *(uint8_t *)p = (uint8_t)v; break;
    case DIFFCL_I32: *(int32_t *)p = (int32_t)v; break;
    case DIFFCL_I64: *(int64_t *)p = (int64_t)v; break;
    }
}

/* Copies of 1 MiB and more are split over the context's threads: a single core cannot
 * saturate memory bandwidth, and these copies sit between parallel kernels. */
#define COPY_PAR_BYTES ((int64_t)1 << 20)

static void parallel_memcpy(void *dst, const void *src, int64_t bytes, int nt)
{
    const int64_t parts = bytes >= COPY_PAR_BYTES ? nt : 1;
#pragma omp parallel for num_threads(nt) schedule(static) if (parts > 1)
    for (int64_t k = 0; k < parts; k++) { /* 64-byte aligned pieces */
        int64_t lo = bytes * k / parts / 64 * 64,
                hi = k == parts - 1 ? bytes : bytes * (k + 1) / parts / 64 * 64;
        memcpy((char *)dst + lo, (const char *)src + lo, (size_t)(hi - lo));
    }
}

/* Element offset of row r (a row: the last axis) of t, from r's index over the outer axes. */
static inline int64_t row_offset(const diffcl_tensor *t, int64_t r)
{
    int64_t off = 0;
    for (int i = t->ndim - 2; i >= 0; i--) {
        off += (r % t->shape[i]) * t->strides[i];
        r /= t->shape[i];
    }
    return off;
}

/* Walk src in row-major order, writing contiguously to `out` as `dtype`. */
static void copy_to_buffer(void *out_, diffcl_dtype dtype, const diffcl_tensor *src)
{
    int64_t n = dc_numel(src);
    size_t es = diffcl_dtype_size(src->dtype), ed = diffcl_dtype_size(dtype);
    const char *base = dc_data(src);
    const int nt = dc_threads(src->ctx);
    if (src->dtype == dtype && dc_is_contiguous(src)) {
        parallel_memcpy(out_, base, n * (int64_t)es, nt);
        return;
    }
    if (n == 0) return;
    int nd = src->ndim;
    int64_t inner = nd ? src->shape[nd - 1] : 1, istride = nd ? src->strides[nd - 1] : 0;
    int64_t rows = inner ? n / inner : 0;
#pragma omp parallel for num_threads(nt) schedule(static) if (n * (int64_t)ed >= COPY_PAR_BYTES)
    for (int64_t r = 0; r < rows; r++) {
        const char *p = base + row_offset(src, r) * (int64_t)es;
        char *out = (char *)out_ + r * inner * (int64_t)ed;
        if (src->dtype == DIFFCL_F32 && dtype == DIFFCL_F32) {
            const float *ps = (const float *)p;
            float *po = (float *)out;
            for (int64_t j = 0; j < inner; j++) po[j] = ps[j * istride];
        } else if (src->dtype == DIFFCL_F64 && dtype == DIFFCL_F64) {
            const double *ps = (const double *)p;
            double *po = (double *)out;
            for (int64_t j = 0; j < inner; j++) po[j] = ps[j * istride];
        } else if (src->dtype == dtype) {
            for (int64_t j = 0; j < inner; j++) memcpy(out + j * ed, p + j * istride * es, es);
        } else {
            for (int64_t j = 0; j < inner; j++)
                store_double(out + j * ed, dtype, load_as_double(p + j * istride * es, src->dtype));
        }
    }
}

void dc_copy_into(diffcl_tensor *dst, const diffcl_tensor *src)
{
    copy_to_buffer(dc_data(dst), dst->dtype, src);
}

diffcl_tensor *dc_contiguous(const diffcl_tensor *t)
{
    if (dc_is_contiguous(t)) return diffcl_tensor_retain((diffcl_tensor *)t);
    diffcl_tensor *c = dc_tensor_empty_like(t);
    if (c) dc_copy_into(c, t);
    return c;
}

diffcl_status diffcl_tensor_copy_to(const diffcl_tensor *t, void *buf, size_t nbytes)
{
    DC_CHECK_TENSOR(t, "diffcl_tensor_copy_to");
    DC_CHECK_ARG(buf, "diffcl_tensor_copy_to: buf is NULL");
    size_t need = (size_t)dc_numel(t) * diffcl_dtype_size(t->dtype);
    if (nbytes != need)
        return dc_error(DIFFCL_ERR_SHAPE,
                        "diffcl_tensor_copy_to: buffer has %zu bytes, tensor %s needs %zu", nbytes,
                        dc_shape_str(t), need);
    copy_to_buffer(buf, t->dtype, t);
    return DIFFCL_OK;
}

diffcl_status diffcl_tensor_copy_from(diffcl_tensor *t, const void *buf, size_t nbytes)
{
    DC_CHECK_TENSOR(t, "diffcl_tensor_copy_from");
    DC_CHECK_ARG(buf, "diffcl_tensor_copy_from: buf is NULL");
    size_t need = (size_t)dc_numel(t) * diffcl_dtype_size(t->dtype);
    if (nbytes != need)
        return dc_error(DIFFCL_ERR_SHAPE,
                        "diffcl_tensor_copy_from: buffer has %zu bytes, tensor %s needs %zu",
                        nbytes, dc_shape_str(t), need);
    const int nt = dc_threads(t->ctx);
    char *base = dc_data(t);
    if (dc_is_contiguous(t)) {
        parallel_memcpy(base, buf, (int64_t)nbytes, nt);
        return DIFFCL_OK;
    }
    /* Scatter row by row (a row: the last axis), rows split over threads when large: narrow
     * backward and concat write through such views, and an element-wise walk cost more than
     * the ops around them. */
    const int64_t es = (int64_t)diffcl_dtype_size(t->dtype), n = dc_numel(t);
    const int nd = t->ndim;
    const int64_t inner = nd ? t->shape[nd - 1] : 1, istride = nd ? t->strides[nd - 1] : 0;
    const int64_t rows = inner ? n / inner : 0;
#pragma omp parallel for num_threads(nt) schedule(static) if ((int64_t)nbytes >= COPY_PAR_BYTES)
    for (int64_t r = 0; r < rows; r++) {
        char *dst = base + row_offset(t, r) * es;
        const char *src = (const char *)buf + r * inner * es;
        if (istride == 1)
            memcpy(dst, src, (size_t)(inner * es));
        else
            for (int64_t j = 0; j < inner; j++)
                memcpy(dst + j * istride * es, src + j * es, (size_t)es);
    }
    return DIFFCL_OK;
}

static diffcl_status element_offset(const diffcl_tensor *t, const int64_t *index, int64_t *off,
                                    const char *fn)
{
    DC_CHECK_TENSOR(t, fn);
    DC_CHECK_ARG(index || t->ndim == 0, "%s: index is NULL", fn);
    int64_t o = 0;
    for (int i = 0; i < t->ndim; i++) {
        if (index[i] < 0 || index[i] >= t->shape[i])
            return dc_error(DIFFCL_ERR_INVALID_ARGUMENT,
                            "%s: index %lld out of range for axis %d of %s", fn,
                            (long long)index[i], i, dc_shape_str(t));
        o += index[i] * t->strides[i];
    }
    *off = o;
    return DIFFCL_OK;
}

diffcl_status diffcl_tensor_get(const diffcl_tensor *t, const int64_t *index, double *value)
{
    int64_t off;
    DC_TRY(element_offset(t, index, &off, "diffcl_tensor_get"));
    DC_CHECK_ARG(value, "diffcl_tensor_get: value is NULL");
    *value =
        load_as_double((char *)dc_data(t) + off * (int64_t)diffcl_dtype_size(t->dtype), t->dtype);
    return DIFFCL_OK;
}

diffcl_status diffcl_tensor_set(diffcl_tensor *t, const int64_t *index, double value)
{
    int64_t off;
    DC_TRY(element_offset(t, index, &off, "diffcl_tensor_set"));
    store_double((char *)dc_data(t) + off * (int64_t)diffcl_dtype_size(t->dtype), t->dtype, value);
    return DIFFCL_OK;
}

diffcl_status diffcl_tensor_item(const diffcl_tensor *t, double *value)
{
    DC_CHECK_TENSOR(t, "diffcl_tensor_item");
    DC_CHECK_ARG(value, "diffcl_tensor_item: value is NULL");
    if (dc_numel(t) != 1)
        return dc_error(DIFFCL_ERR_SHAPE, "diffcl_tensor_item: tensor %s has %lld elements, not 1",
                        dc_shape_str(t), (long long)dc_numel(t));
    *value = load_as_double(dc_data(t), t->dtype);
    return DIFFCL_OK;
}

/* ---------------------------------------------------------------- fills ---- */

static diffcl_status fill_from_floats(diffcl_tensor *t, const float *vals, const char *fn)
{
    /* vals holds numel floats in row-major order */
    diffcl_tensor *src = NULL;
    diffcl_status s = diffcl_tensor_wrap(t->ctx, DIFFCL_F32, t->ndim, t->shape, NULL, (void *)vals,
                                         NULL, NULL, &src);
    if (s != DIFFCL_OK) return s;
    if (dc_is_contiguous(t)) {
        dc_copy_into(t, src);
    } else {
        diffcl_tensor *tmp = dc_tensor_empty_like(t);
        if (!tmp) {
            diffcl_tensor_free(src);
            return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
        }
        dc_copy_into(tmp, src);
        s = diffcl_tensor_copy_from(t, dc_data(tmp), tmp->storage->nbytes);
        diffcl_tensor_free(tmp);
    }
    diffcl_tensor_free(src);
    return s;
}

diffcl_status diffcl_tensor_fill(diffcl_tensor *t, double value)
{
    DC_CHECK_TENSOR(t, "diffcl_tensor_fill");
    int64_t n = dc_numel(t);
    if (dc_is_contiguous(t)) {
        char *p = dc_data(t);
        size_t es = diffcl_dtype_size(t->dtype);
        if (t->dtype == DIFFCL_F32) {
            for (int64_t i = 0; i < n; i++) ((float *)p)[i] = (float)value;
        } else {
            for (int64_t i = 0; i < n; i++) store_double(p + i * (int64_t)es, t->dtype, value);
        }
        return DIFFCL_OK;
    }
    diffcl_tensor *tmp = dc_tensor_empty_like(t);
    if (!tmp) return DIFFCL_ERR_OUT_OF_MEMORY;
    diffcl_status s = diffcl_tensor_fill(tmp, value);
    if (s == DIFFCL_OK) s = diffcl_tensor_copy_from(t, dc_data(tmp), tmp->storage->nbytes);
    diffcl_tensor_free(tmp);
    return s;
}

static diffcl_status fill_random(diffcl_tensor *t, diffcl_rng_key key, double a, double b,
                                 int normal, const char *fn)
{
    DC_CHECK_TENSOR(t, fn);
    if (!dc_is_float(t->dtype))
        return dc_error(DIFFCL_ERR_DTYPE, "%s: tensor dtype %s is not floating point", fn,
                        diffcl_dtype_name(t->dtype));
    size_t n = (size_t)dc_numel(t);
    float *vals = dc_malloc((n ? n : 1) * sizeof *vals);
    if (!vals) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    if (normal)
        diffcl_rng_normal(key, 0, n, (float)a, (float)b, vals);
    else
        diffcl_rng_uniform(key, 0, n, (float)a, (float)b, vals);
    diffcl_status s = fill_from_floats(t, vals, fn);
    free(vals);
    return s;
}

diffcl_status diffcl_tensor_fill_uniform(diffcl_tensor *t, diffcl_rng_key key, double lo, double hi)
{
    return fill_random(t, key, lo, hi, 0, "diffcl_tensor_fill_uniform");
}

diffcl_status diffcl_tensor_fill_normal(diffcl_tensor *t, diffcl_rng_key key, double mean,
                                        double stddev)
{
    DC_CHECK_ARG(
        stddev >= 0 && isfinite(stddev) && isfinite(mean),
        "diffcl_tensor_fill_normal: mean %g, stddev %g: need a finite mean and stddev >= 0", mean,
        stddev);
    return fill_random(t, key, mean, stddev, 1, "diffcl_tensor_fill_normal");
}
