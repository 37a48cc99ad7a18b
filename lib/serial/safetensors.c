/* The safetensors container: validated reading and atomic writing.
 *
 * Layout: 8-byte little-endian header length N, N bytes of UTF-8 JSON, the data section.
 * The JSON header is parsed and written with cJSON. Reading follows the reference
 * implementation's rules (huggingface/safetensors): the header starts with '{', is at most
 * 100 MB, every tensor's data_offsets are relative to the data section, hold exactly
 * numel * dtype-size bytes, and the tensors tile the data section without overlaps or gaps.
 * Every check happens before the first tensor is allocated, so hostile input costs at most
 * one allocation of the header's size and never a crash.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "serial/tensor_dict_internal.h"

#define ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000) /* the reference reader's limit */
#define ST_MAX_INT ((uint64_t)1 << 53)              /* integers a JSON double holds exactly */
#define ST_MAX_NUMEL ((uint64_t)INT64_MAX / 16)     /* what dc_tensor_new accepts */
#define ST_METADATA "__metadata__"

/* ------------------------------------------------------------- dtypes ---- */

typedef enum st_kind {
    ST_SAME,    /* stored as is */
    ST_HALF,    /* F16 -> F32 */
    ST_BFLOAT,  /* BF16 -> F32 */
    ST_SINT,    /* signed integer -> I64 */
    ST_UINT,    /* unsigned integer -> I64 */
    ST_BOOLEAN, /* BOOL -> I64 (0 / 1) */
    ST_NONE     /* a safetensors dtype this library cannot hold */
} st_kind;

typedef struct st_dtype {
    const char *name;
    unsigned size;
    st_kind kind;
    diffcl_dtype out;
} st_dtype;

static const st_dtype ST_DTYPES[] = {
    {"F32", 4, ST_SAME, DIFFCL_F32},
    {"F64", 8, ST_SAME, DIFFCL_F64},
    {"U8", 1, ST_SAME, DIFFCL_U8},
    {"I32", 4, ST_SAME, DIFFCL_I32},
    {"I64", 8, ST_SAME, DIFFCL_I64},
    {"F16", 2, ST_HALF, DIFFCL_F32},
    {"BF16", 2, ST_BFLOAT, DIFFCL_F32},
    {"I8", 1, ST_SINT, DIFFCL_I64},
    {"I16", 2, ST_SINT, DIFFCL_I64},
    {"U16", 2, ST_UINT, DIFFCL_I64},
    {"U32", 4, ST_UINT, DIFFCL_I64},
    {"BOOL", 1, ST_BOOLEAN, DIFFCL_I64},
    /* valid in the format, not representable here */
    {"U64", 8, ST_NONE, DIFFCL_I64},
    {"F8_E4M3", 1, ST_NONE, DIFFCL_F32},
    {"F8_E5M2", 1, ST_NONE, DIFFCL_F32},
    {"F8_E8M0", 1, ST_NONE, DIFFCL_F32},
    {"C64", 8, ST_NONE, DIFFCL_F32},
};
#define ST_N_DTYPES ((int)(sizeof ST_DTYPES / sizeof ST_DTYPES[0]))

static const st_dtype *st_dtype_find(const char *name)
{
    for (int i = 0; i < ST_N_DTYPES; i++)
        if (!strcmp(ST_DTYPES[i].name, name)) return &ST_DTYPES[i];
    return NULL;
}

static const char *st_dtype_name(diffcl_dtype d)
{
    switch (d) {
    case DIFFCL_F32: return "F32";
    case DIFFCL_F64: return "F64";
    case DIFFCL_U8: return "U8";
    case DIFFCL_I32: return "I32";
    case DIFFCL_I64: return "I64";
    }
    return NULL;
}

static int host_little_endian(void)
{
    const uint16_t one = 1;
    unsigned char c;
    memcpy(&c, &one, 1);
    return c == 1;
}

/* Reverse the bytes of each of the n elements of size es (big-endian hosts only). */
static void swap_elements(void *p, size_t n, size_t es)
{
    unsigned char *b = p;
    for (size_t i = 0; i < n; i++, b += es)
        for (size_t j = 0; j < es / 2; j++) {
            unsigned char t = b[j];
            b[j] = b[es - 1 - j];
            b[es - 1 - j] = t;
        }
}

static uint64_t le_u64(const unsigned char *b)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | b[i];
    return v;
}

static uint64_t le_uint(const unsigned char *b, unsigned size)
{
    uint64_t v = 0;
    for (int i = (int)size - 1; i >= 0; i--) v = (v << 8) | b[i];
    return v;
}

static float bits_to_float(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* IEEE binary16 -> binary32, exact (subnormals, infinities and NaN payloads kept). */
static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0) {
        if (man == 0) return bits_to_float(sign);
        int e = -1;
        do {
            e++;
            man <<= 1;
        } while (!(man & 0x400u));
        return bits_to_float(sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ffu) << 13));
    }
    if (exp == 31) return bits_to_float(sign | 0x7f800000u | (man << 13));
    return bits_to_float(sign | ((exp + 112) << 23) | (man << 13));
}

/* Convert n raw little-endian elements of type @p dt into out (F32 or I64). */
static void convert_elements(const st_dtype *dt, const unsigned char *raw, size_t n, void *out)
{
    float *of = out;
    int64_t *oi = out;
    for (size_t i = 0; i < n; i++, raw += dt->size) {
        uint64_t u = le_uint(raw, dt->size);
        switch (dt->kind) {
        case ST_HALF: of[i] = half_to_float((uint16_t)u); break;
        case ST_BFLOAT: of[i] = bits_to_float((uint32_t)u << 16); break;
        case ST_SINT: /* sign-extend */
            oi[i] = (int64_t)(u ^ ((uint64_t)1 << (8 * dt->size - 1))) -
                    (int64_t)((uint64_t)1 << (8 * dt->size - 1));
            break;
        case ST_UINT: oi[i] = (int64_t)u; break;
        case ST_BOOLEAN: oi[i] = u != 0; break;
        default: break;
        }
    }
}

/* -------------------------------------------------------------- UTF-8 ---- */

/* 1 when b[0..n) is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
static int utf8_valid(const unsigned char *b, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = b[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        int len;
        unsigned lo = 0x80, hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf)
            len = 2;
        else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            if (c == 0xe0) lo = 0xa0;
            if (c == 0xed) hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            if (c == 0xf0) lo = 0x90;
            if (c == 0xf4) hi = 0x8f;
        } else
            return 0;
        if (n - i < (size_t)len) return 0;
        if (b[i + 1] < lo || b[i + 1] > hi) return 0;
        for (int k = 2; k < len; k++)
            if (b[i + k] < 0x80 || b[i + k] > 0xbf) return 0;
        i += (size_t)len;
    }
    return 1;
}

/* ---------------------------------------------------------------- I/O ---- */

/* Read exactly n bytes at offset off; 0 on success, else an errno value (EIO for EOF). */
static int read_at(int fd, void *buf, size_t n, uint64_t off)
{
    char *p = buf;
    while (n > 0) {
        size_t chunk = n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n;
        ssize_t r = pread(fd, p, chunk, (off_t)off);
        if (r < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (r == 0) return EIO;
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

/* ------------------------------------------------------------ loading ---- */

typedef struct st_entry {
    const char *name; /* borrowed from the cJSON tree */
    const st_dtype *dt;
    int ndim;
    int64_t shape[DIFFCL_MAX_DIMS];
    uint64_t begin, end;
} st_entry;

/* A non-negative integral JSON number <= ST_MAX_INT. Returns 0 on success, else a reason. */
static const char *json_uint(const cJSON *x, uint64_t *v)
{
    if (!cJSON_IsNumber(x)) return "is not a number";
    double d = x->valuedouble;
    if (!isfinite(d)) return "is not finite";
    if (d < 0) return "is negative";
    if (d != floor(d)) return "is not an integer";
    if (d > (double)ST_MAX_INT) return "is too large";
    *v = (uint64_t)d;
    return NULL;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp((*(const st_entry *const *)a)->name, (*(const st_entry *const *)b)->name);
}

static int cmp_offsets(const void *a, const void *b)
{
    const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static void shape_text(const st_entry *e, char *buf, size_t size)
{
    int n = snprintf(buf, size, "[");
    for (int i = 0; i < e->ndim && n > 0 && (size_t)n < size; i++)
        n += snprintf(buf + n, size - (size_t)n, "%s%" PRId64, i ? "," : "", e->shape[i]);
    if (n > 0 && (size_t)n < size) snprintf(buf + n, size - (size_t)n, "]");
}

/* Validate one tensor entry of the header into @p e. */
static diffcl_status parse_entry(const char *path, const cJSON *item, uint64_t data_size,
                                 st_entry *e)
{
    const char *name = item->string;
    e->name = name;
    if (!cJSON_IsObject(item))
        return dc_error(DIFFCL_ERR_FORMAT, "%s: tensor %s: header entry is not a JSON object", path,
                        name);
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsString(dtype))
        return dc_error(DIFFCL_ERR_FORMAT, "%s: tensor %s: \"dtype\" is missing or not a string",
                        path, name);
    e->dt = st_dtype_find(dtype->valuestring);
    if (!e->dt)
        return dc_error(DIFFCL_ERR_FORMAT, "%s: tensor %s: unknown dtype \"%s\"", path, name,
                        dtype->valuestring);
    if (e->dt->kind == ST_NONE)
        return dc_error(DIFFCL_ERR_DTYPE, "%s: tensor %s: dtype %s is not supported by libdiffcl",
                        path, name, e->dt->name);
    if (!cJSON_IsArray(shape))
        return dc_error(DIFFCL_ERR_FORMAT, "%s: tensor %s: \"shape\" is missing or not an array",
                        path, name);
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > DIFFCL_MAX_DIMS)
        return dc_error(DIFFCL_ERR_UNSUPPORTED,
                        "%s: tensor %s has %d dimensions; at most %d are supported", path, name,
                        ndim, DIFFCL_MAX_DIMS);
    e->ndim = ndim;
    uint64_t numel = 1;
    int axis = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, shape)
    {
        uint64_t v = 0;
        const char *why = json_uint(x, &v);
        if (why)
            return dc_error(DIFFCL_ERR_FORMAT, "%s: tensor %s: shape entry %d (%g) %s", path, name,
                            axis, cJSON_IsNumber(x) ? x->valuedouble : 0.0, why);
        if (v > ST_MAX_NUMEL || (v > 0 && numel > ST_MAX_NUMEL / v))
            return dc_error(DIFFCL_ERR_FORMAT, "%s: tensor %s: shape has too many elements", path,
                            name);
        e->shape[axis++] = (int64_t)v;
        if (v > 0) numel *= v; /* the non-zero sizes must be allocatable too */
    }
    for (int i = 0; i < ndim; i++)
        if (e->shape[i] == 0) numel = 0;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2)
        return dc_error(DIFFCL_ERR_FORMAT,
                        "%s: tensor %s: \"data_offsets\" is missing or not [begin, end]", path,
                        name);
    const char *why = json_uint(cJSON_GetArrayItem(offs, 0), &e->begin);
    if (!why) why = json_uint(cJSON_GetArrayItem(offs, 1), &e->end);
    if (why) return dc_error(DIFFCL_ERR_FORMAT, "%s: tensor %s: a data offset %s", path, name, why);
    if (e->end < e->begin)
        return dc_error(DIFFCL_ERR_FORMAT,
                        "%s: tensor %s: data_offsets [%" PRIu64 ", %" PRIu64
                        ") end before they begin",
                        path, name, e->begin, e->end);
    if (e->end > data_size)
        return dc_error(DIFFCL_ERR_FORMAT,
                        "%s: tensor %s: data_offsets [%" PRIu64 ", %" PRIu64 ") lie outside the "
                        "data section of %" PRIu64 " bytes (truncated file?)",
                        path, name, e->begin, e->end, data_size);
    uint64_t need = numel * e->dt->size;
    if (e->end - e->begin != need) {
        char sh[160];
        shape_text(e, sh, sizeof sh);
        return dc_error(DIFFCL_ERR_FORMAT,
                        "%s: tensor %s: data_offsets [%" PRIu64 ", %" PRIu64 ") hold %" PRIu64
                        " bytes but dtype %s and shape %s need %" PRIu64,
                        path, name, e->begin, e->end, e->end - e->begin, e->dt->name, sh, need);
    }
    return DIFFCL_OK;
}

/* Validate the metadata object: string values only (null is accepted as "none"). */
static diffcl_status check_metadata(const char *path, const cJSON *meta)
{
    if (cJSON_IsNull(meta)) return DIFFCL_OK;
    if (!cJSON_IsObject(meta))
        return dc_error(DIFFCL_ERR_FORMAT, "%s: \"__metadata__\" is not a JSON object", path);
    const cJSON *x;
    cJSON_ArrayForEach(x, meta)
    {
        if (!cJSON_IsString(x))
            return dc_error(DIFFCL_ERR_FORMAT, "%s: metadata value of key %s is not a string", path,
                            x->string);
    }
    return DIFFCL_OK;
}

/* Check names are unique and the tensors tile [0, data_size) exactly (sorting @p order). */
static diffcl_status check_layout(const char *path, st_entry **order, int n, uint64_t data_size)
{
    qsort(order, (size_t)n, sizeof *order, cmp_name);
    for (int i = 1; i < n; i++)
        if (!strcmp(order[i - 1]->name, order[i]->name))
            return dc_error(DIFFCL_ERR_FORMAT, "%s: tensor %s appears twice in the header", path,
                            order[i]->name);
    qsort(order, (size_t)n, sizeof *order, cmp_offsets);
    uint64_t pos = 0;
    const st_entry *prev = NULL;
    for (int i = 0; i < n; i++) {
        const st_entry *e = order[i];
        if (e->begin < pos)
            return dc_error(DIFFCL_ERR_FORMAT,
                            "%s: tensors %s [%" PRIu64 ", %" PRIu64 ") and %s [%" PRIu64
                            ", %" PRIu64 ") overlap",
                            path, prev->name, prev->begin, prev->end, e->name, e->begin, e->end);
        if (e->begin > pos)
            return dc_error(DIFFCL_ERR_FORMAT,
                            "%s: bytes [%" PRIu64 ", %" PRIu64
                            ") of the data section, before tensor %s, "
                            "belong to no tensor",
                            path, pos, e->begin, e->name);
        pos = e->end;
        prev = e;
    }
    if (pos != data_size)
        return dc_error(DIFFCL_ERR_FORMAT,
                        "%s: the data section has %" PRIu64 " bytes but its tensors cover %" PRIu64,
                        path, data_size, pos);
    return DIFFCL_OK;
}

/* Read one validated tensor into a new tensor. */
static diffcl_status read_tensor(diffcl_context *ctx, const char *path, int fd, uint64_t data_start,
                                 const st_entry *e, diffcl_tensor **out)
{
    diffcl_tensor *t = dc_tensor_empty(ctx, e->dt->out, e->ndim, e->shape);
    if (!t) {
        dc_error_prefix("%s: tensor %s", path, e->name);
        return DIFFCL_ERR_OUT_OF_MEMORY;
    }
    size_t nbytes = (size_t)(e->end - e->begin), n = (size_t)dc_numel(t);
    int err = 0;
    if (nbytes > 0 && e->dt->kind == ST_SAME) {
        err = read_at(fd, dc_data(t), nbytes, data_start + e->begin);
        if (!err && !host_little_endian()) swap_elements(dc_data(t), n, e->dt->size);
    } else if (nbytes > 0) {
        unsigned char *raw = dc_malloc(nbytes);
        if (!raw) {
            diffcl_tensor_free(t);
            return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: tensor %s: out of memory (%zu bytes)",
                            path, e->name, nbytes);
        }
        err = read_at(fd, raw, nbytes, data_start + e->begin);
        if (!err) convert_elements(e->dt, raw, n, dc_data(t));
        free(raw);
    }
    if (err) {
        diffcl_tensor_free(t);
        return dc_error(err == EIO ? DIFFCL_ERR_FORMAT : DIFFCL_ERR_IO,
                        "%s: tensor %s: cannot read its data: %s", path, e->name,
                        err == EIO ? "file ended early (changed while reading?)" : strerror(err));
    }
    *out = t;
    return DIFFCL_OK;
}

/* Append a tensor whose name is known to be new (the header's names were checked unique),
 * without the dictionary's linear lookup: a header may list very many tensors. */
static diffcl_status dict_append(diffcl_tensor_dict *d, const char *name, diffcl_tensor *t)
{
    if (d->n == d->cap) {
        int cap = d->cap ? d->cap * 2 : 16;
        char **nn = dc_realloc(d->names, (size_t)cap * sizeof *nn);
        if (nn) d->names = nn;
        diffcl_tensor **tt = nn ? dc_realloc(d->tensors, (size_t)cap * sizeof *tt) : NULL;
        if (!tt) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "out of memory adding tensor %s", name);
        d->tensors = tt;
        d->cap = cap;
    }
    char *copy = dc_strdup(name);
    if (!copy) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "out of memory adding tensor %s", name);
    d->names[d->n] = copy;
    d->tensors[d->n] = diffcl_tensor_retain(t);
    d->n++;
    return DIFFCL_OK;
}

/* The 8-byte length and the JSON header text after it, NUL-terminated, in *hdr (malloc'd). */
static diffcl_status read_header(const char *path, int fd, uint64_t file_size, char **hdr,
                                 uint64_t *hlen_out)
{
    *hdr = NULL;
    if (file_size < 8)
        return dc_error(DIFFCL_ERR_FORMAT,
                        "%s: file has %" PRIu64 " bytes, fewer than the 8-byte header length "
                        "(truncated?)",
                        path, file_size);
    unsigned char lenbuf[8];
    int err = read_at(fd, lenbuf, 8, 0);
    if (err) return dc_error(DIFFCL_ERR_IO, "%s: cannot read: %s", path, strerror(err));
    uint64_t hlen = le_u64(lenbuf);
    if (hlen > file_size - 8)
        return dc_error(DIFFCL_ERR_FORMAT,
                        "%s: header length %" PRIu64 " exceeds the %" PRIu64 " bytes after it "
                        "(truncated or not a safetensors file)",
                        path, hlen, file_size - 8);
    if (hlen > ST_MAX_HEADER)
        return dc_error(DIFFCL_ERR_FORMAT,
                        "%s: header length %" PRIu64 " is over the limit of %" PRIu64 " bytes",
                        path, hlen, ST_MAX_HEADER);
    if (hlen < 2)
        return dc_error(DIFFCL_ERR_FORMAT, "%s: header of %" PRIu64 " bytes is too short", path,
                        hlen);
    char *h = dc_malloc((size_t)hlen + 1);
    if (!h)
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY,
                        "%s: out of memory for a header of %" PRIu64 " bytes", path, hlen);
    err = read_at(fd, h, (size_t)hlen, 8);
    if (err) {
        free(h);
        return dc_error(DIFFCL_ERR_IO, "%s: cannot read the header: %s", path, strerror(err));
    }
    h[hlen] = '\0';
    *hdr = h;
    *hlen_out = hlen;
    return DIFFCL_OK;
}

/* The header text as a JSON object: UTF-8, one object, nothing but blanks after it. */
static diffcl_status parse_header(const char *path, const char *hdr, uint64_t hlen, cJSON **out)
{
    *out = NULL;
    if (hdr[0] != '{')
        return dc_error(DIFFCL_ERR_FORMAT,
                        "%s: header does not start with '{' (not a safetensors file?)", path);
    if (!utf8_valid((const unsigned char *)hdr, (size_t)hlen))
        return dc_error(DIFFCL_ERR_FORMAT, "%s: header is not valid UTF-8", path);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(hdr, (size_t)hlen, &end, 0);
    if (!root) {
        long at = end ? (long)(end - hdr) : -1;
        return dc_error(DIFFCL_ERR_FORMAT,
                        "%s: header is not valid JSON (error near byte %ld of %" PRIu64 ")", path,
                        at, hlen);
    }
    diffcl_status s = DIFFCL_OK;
    for (const char *p = end; p < hdr + hlen && s == DIFFCL_OK; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            s = dc_error(DIFFCL_ERR_FORMAT,
                         "%s: unexpected bytes after the JSON header (at byte %ld)", path,
                         (long)(p - hdr));
    if (s == DIFFCL_OK && !cJSON_IsObject(root))
        s = dc_error(DIFFCL_ERR_FORMAT, "%s: header is not a JSON object", path);
    if (s != DIFFCL_OK) {
        cJSON_Delete(root);
        return s;
    }
    *out = root;
    return DIFFCL_OK;
}

/* The header's entries, parsed and checked: the tensors into entries[0..*n) (order[] points at
 * them, for check_layout to sort), "__metadata__" into *meta. */
static diffcl_status collect_entries(const char *path, const cJSON *root, uint64_t data_size,
                                     st_entry *entries, st_entry **order, int *n,
                                     const cJSON **meta)
{
    *n = 0;
    *meta = NULL;
    const cJSON *item;
    cJSON_ArrayForEach(item, root)
    {
        if (!item->string) /* cannot happen for a parsed object; be safe */
            return dc_error(DIFFCL_ERR_FORMAT, "%s: header entry without a name", path);
        if (!strcmp(item->string, ST_METADATA)) {
            if (*meta)
                return dc_error(DIFFCL_ERR_FORMAT, "%s: \"__metadata__\" appears twice", path);
            *meta = item;
            DC_TRY(check_metadata(path, item));
            continue;
        }
        DC_TRY(parse_entry(path, item, data_size, &entries[*n]));
        order[*n] = &entries[*n];
        (*n)++;
    }
    return check_layout(path, order, *n, data_size);
}

/* A dictionary of the metadata and the tensors, read in header order (as the writer listed
 * them) from the data that starts at byte @p data_at. */
static diffcl_status build_dict(diffcl_context *ctx, const char *path, int fd, uint64_t data_at,
                                const st_entry *entries, int n, const cJSON *meta,
                                diffcl_tensor_dict **out)
{
    diffcl_tensor_dict *d = NULL;
    DC_TRY(diffcl_tensor_dict_new(ctx, &d));
    diffcl_status s = DIFFCL_OK;
    if (meta && cJSON_IsObject(meta)) {
        const cJSON *x;
        cJSON_ArrayForEach(x, meta)
        {
            DC_STEP(diffcl_tensor_dict_set_meta(d, x->string, x->valuestring));
        }
    }
    for (int i = 0; i < n && s == DIFFCL_OK; i++) {
        diffcl_tensor *t = NULL;
        s = read_tensor(ctx, path, fd, data_at, &entries[i], &t);
        DC_STEP(dict_append(d, entries[i].name, t));
        diffcl_tensor_free(t);
    }
    if (s != DIFFCL_OK) {
        diffcl_tensor_dict_free(d);
        return s;
    }
    *out = d;
    return DIFFCL_OK;
}

/* Parse and validate the header, then read every tensor. Owns nothing of the caller's. */
static diffcl_status load_from_fd(diffcl_context *ctx, const char *path, int fd, uint64_t file_size,
                                  diffcl_tensor_dict **out)
{
    char *hdr = NULL;
    uint64_t hlen = 0;
    DC_TRY(read_header(path, fd, file_size, &hdr, &hlen));
    uint64_t data_size = file_size - 8 - hlen;
    cJSON *root = NULL;
    diffcl_status s = parse_header(path, hdr, hlen, &root);
    int total = root ? cJSON_GetArraySize(root) : 0;
    st_entry *entries = dc_calloc_raw((size_t)(total ? total : 1), sizeof *entries);
    st_entry **order = dc_calloc_raw((size_t)(total ? total : 1), sizeof *order);
    if (s == DIFFCL_OK && (!entries || !order))
        s = dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory for %d header entries", path,
                     total);
    const cJSON *meta = NULL;
    int n = 0;
    DC_STEP(collect_entries(path, root, data_size, entries, order, &n, &meta));
    DC_STEP(build_dict(ctx, path, fd, 8 + hlen, entries, n, meta, out));
    free(order);
    free(entries);
    cJSON_Delete(root);
    free(hdr);
    return s;
}

diffcl_status diffcl_safetensors_load(diffcl_context *ctx, const char *path,
                                      diffcl_tensor_dict **out)
{
    DC_CHECK_ARG(out, "diffcl_safetensors_load: out is NULL");
    *out = NULL;
    DC_CHECK_ARG(ctx && path, "diffcl_safetensors_load: NULL argument");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return dc_error(DIFFCL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    diffcl_status s;
    if (fstat(fd, &st) != 0)
        s = dc_error(DIFFCL_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        s = dc_error(DIFFCL_ERR_IO, "%s: not a regular file", path);
    else
        s = load_from_fd(ctx, path, fd, (uint64_t)st.st_size, out);
    close(fd);
    return s;
}

/* ------------------------------------------------------------- saving ---- */

static cJSON *json_uint_raw(uint64_t v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRIu64, v); /* exact, never in exponent notation */
    return cJSON_CreateRaw(buf);
}

/* Add @p item to @p obj under @p key; on failure @p item is released. Returns 1 on success. */
static int add_item(cJSON *obj, const char *key, cJSON *item)
{
    if (!item) return 0;
    if (!cJSON_AddItemToObject(obj, key, item)) {
        cJSON_Delete(item);
        return 0;
    }
    return 1;
}

static int add_array_item(cJSON *arr, cJSON *item)
{
    if (!item) return 0;
    if (!cJSON_AddItemToArray(arr, item)) {
        cJSON_Delete(item);
        return 0;
    }
    return 1;
}

/* The JSON header, space-padded to a multiple of 8 bytes; *len receives its length. */
static diffcl_status build_header(const diffcl_tensor_dict *d, const char *path, char **out,
                                  size_t *len)
{
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory building the header", path);
    int ok = 1;
    if (d->n_meta > 0) {
        cJSON *meta = cJSON_CreateObject();
        ok = add_item(root, ST_METADATA, meta);
        for (int i = 0; ok && i < d->n_meta; i++) {
            if (!utf8_valid((const unsigned char *)d->meta_keys[i], strlen(d->meta_keys[i])) ||
                !utf8_valid((const unsigned char *)d->meta_values[i], strlen(d->meta_values[i]))) {
                cJSON_Delete(root);
                return dc_error(DIFFCL_ERR_INVALID_ARGUMENT,
                                "%s: metadata key %s or its value is not valid UTF-8", path,
                                d->meta_keys[i]);
            }
            ok = add_item(meta, d->meta_keys[i], cJSON_CreateString(d->meta_values[i]));
        }
    }
    uint64_t offset = 0;
    for (int i = 0; ok && i < d->n; i++) {
        const diffcl_tensor *t = d->tensors[i];
        const char *name = d->names[i];
        const char *dt = st_dtype_name(t->dtype);
        diffcl_status err = DIFFCL_OK;
        if (!strcmp(name, ST_METADATA))
            err = dc_error(DIFFCL_ERR_INVALID_ARGUMENT, "%s: \"__metadata__\" cannot name a tensor",
                           path);
        else if (!utf8_valid((const unsigned char *)name, strlen(name)))
            err = dc_error(DIFFCL_ERR_INVALID_ARGUMENT, "%s: tensor name %s is not valid UTF-8",
                           path, name);
        else if (!dt)
            err = dc_error(DIFFCL_ERR_DTYPE, "%s: tensor %s has unknown dtype %d", path, name,
                           (int)t->dtype);
        if (err != DIFFCL_OK) {
            cJSON_Delete(root);
            return err;
        }
        uint64_t nbytes = (uint64_t)dc_numel(t) * diffcl_dtype_size(t->dtype);
        cJSON *e = cJSON_CreateObject();
        ok = add_item(root, name, e) && add_item(e, "dtype", cJSON_CreateString(dt));
        cJSON *shape = ok ? cJSON_CreateArray() : NULL;
        ok = add_item(e, "shape", shape); /* owned by e from here on */
        for (int k = 0; ok && k < t->ndim; k++)
            ok = add_array_item(shape, json_uint_raw((uint64_t)t->shape[k]));
        cJSON *offs = ok ? cJSON_CreateArray() : NULL;
        ok = add_item(e, "data_offsets", offs);
        ok = ok && add_array_item(offs, json_uint_raw(offset)) &&
             add_array_item(offs, json_uint_raw(offset + nbytes));
        offset += nbytes;
    }
    char *js = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!js)
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory building the header", path);
    size_t n = strlen(js), padded = (n + 7) / 8 * 8;
    char *buf = dc_realloc(js, padded + 1);
    if (!buf) {
        free(js);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory building the header", path);
    }
    memset(buf + n, ' ', padded - n); /* as the reference writer aligns the data section */
    buf[padded] = '\0';
    *out = buf;
    *len = padded;
    return DIFFCL_OK;
}

static int write_all(FILE *f, const void *p, size_t n)
{
    return n == 0 || fwrite(p, 1, n, f) == n;
}

/* Write header and data to an open stream; 0 on success, else an errno value. */
static int write_contents(const diffcl_tensor_dict *d, FILE *f, const char *hdr, size_t hlen)
{
    unsigned char lenbuf[8];
    for (int i = 0; i < 8; i++) lenbuf[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    errno = 0;
    if (!write_all(f, lenbuf, 8) || !write_all(f, hdr, hlen)) return errno ? errno : EIO;
    int le = host_little_endian();
    for (int i = 0; i < d->n; i++) {
        const diffcl_tensor *t = d->tensors[i];
        size_t n = (size_t)dc_numel(t), es = diffcl_dtype_size(t->dtype);
        if (n == 0) continue;
        diffcl_tensor *c = NULL;
        if (!le || !dc_is_contiguous(t)) {
            c = dc_tensor_empty(t->ctx, t->dtype, t->ndim, t->shape);
            if (!c) return ENOMEM;
            dc_copy_into(c, t);
            if (!le) swap_elements(dc_data(c), n, es);
        }
        errno = 0;
        int ok = write_all(f, dc_data(c ? c : t), n * es);
        int e = errno;
        diffcl_tensor_free(c);
        if (!ok) return e ? e : EIO;
    }
    return 0;
}

/* fsync the folder holding @p path so the rename itself is durable. */
static int sync_parent_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir;
    if (!slash)
        dir = dc_strdup(".");
    else if (slash == path)
        dir = dc_strdup("/");
    else
        dir = dc_strndup(path, (size_t)(slash - path));
    if (!dir) return ENOMEM;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(dir);
    if (fd < 0) return errno;
    int err = 0;
    if (fsync(fd) != 0 && errno != EINVAL && errno != ENOTSUP) err = errno; /* some fs can't */
    close(fd);
    return err;
}

/* Test only (docs/testing.md, "Faults"): DIFFCL_TEST_CHECKPOINT_PAUSE_MS=N sleeps N ms (at most
 * 10 s) between the complete, synced temporary file and its rename, so that a test can kill the
 * process inside a checkpoint write. Unset, empty or not a positive number: no pause. */
static void test_pause_before_rename(void)
{
    const char *v = getenv("DIFFCL_TEST_CHECKPOINT_PAUSE_MS");
    if (!v || !*v) return;
    char *end = NULL;
    long ms = strtol(v, &end, 10);
    if (*end || ms <= 0) return;
    if (ms > 10000) ms = 10000;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

diffcl_status diffcl_safetensors_save(const diffcl_tensor_dict *d, const char *path)
{
    DC_CHECK_ARG(d && path, "diffcl_safetensors_save: NULL argument");
    DC_CHECK_ARG(*path, "diffcl_safetensors_save: empty path");
    char *hdr = NULL;
    size_t hlen = 0;
    DC_TRY(build_header(d, path, &hdr, &hlen));

    size_t tlen = strlen(path) + 32;
    char *tmp = dc_malloc(tlen);
    if (!tmp) {
        free(hdr);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    }
    snprintf(tmp, tlen, "%s.tmp.%ld", path, (long)getpid());
    diffcl_status s = DIFFCL_OK;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) {
        s = dc_error(DIFFCL_ERR_IO, "%s: cannot create the temporary file %s: %s", path, tmp,
                     strerror(errno));
        goto out;
    }
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        int e = errno;
        close(fd);
        unlink(tmp);
        s = dc_error(DIFFCL_ERR_IO, "%s: cannot write %s: %s", path, tmp, strerror(e));
        goto out;
    }
    int err = write_contents(d, f, hdr, hlen);
    if (!err && fflush(f) != 0) err = errno ? errno : EIO;
    if (!err && fsync(fileno(f)) != 0) err = errno;
    if (fclose(f) != 0 && !err) err = errno ? errno : EIO;
    if (!err) test_pause_before_rename();
    if (!err && rename(tmp, path) != 0) err = errno;
    if (err) {
        unlink(tmp);
        s = dc_error(
            err == ENOMEM ? DIFFCL_ERR_OUT_OF_MEMORY : DIFFCL_ERR_IO,
            "%s: cannot write the checkpoint: %s (the previous file, if any, is unchanged)", path,
            strerror(err));
        goto out;
    }
    err = sync_parent_dir(path);
    if (err)
        s = dc_error(DIFFCL_ERR_IO, "%s: written, but syncing its folder failed: %s", path,
                     strerror(err));
out:
    free(tmp);
    free(hdr);
    return s;
}
