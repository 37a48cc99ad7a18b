/* Loading and saving a module's state (parameters and buffers) as PyTorch does.
 *
 * diffcl_module_load_state_dict works in two phases so that a failed load leaves the
 * module untouched: (1) resolve every dictionary key to an entry of the module, check
 * shapes, dtypes and value ranges, and prepare converted copies where the dtypes differ;
 * (2) only when everything passed, copy into the module's tensors (plain memory copies
 * that cannot fail).
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serial/tensor_dict_internal.h"
#include "layer/module_internal.h"

#define DDP_PREFIX "module."
#define DDP_PREFIX_LEN 7
#define LIST_MAX 8 /* names listed in a message before "and N more" */

typedef struct load_slot {
    const char *key;         /* dictionary key that supplies the entry, NULL: missing */
    diffcl_tensor *src;      /* the dictionary's tensor (borrowed) */
    diffcl_tensor *prepared; /* contiguous copy in the entry's dtype (owned), or NULL */
} load_slot;

typedef struct name_index {
    const char *name;
    int entry;
} name_index;

static int cmp_index(const void *a, const void *b)
{
    return strcmp(((const name_index *)a)->name, ((const name_index *)b)->name);
}

static int lookup(const name_index *idx, int n, const char *name)
{
    name_index key = {name, -1};
    const name_index *hit = bsearch(&key, idx, (size_t)n, sizeof *idx, cmp_index);
    return hit ? hit->entry : -1;
}

/* Append ", name" to a list message, keeping at most LIST_MAX names. */
static void list_add(char *buf, size_t size, int *count, const char *name)
{
    if (*count < LIST_MAX) {
        size_t len = strlen(buf);
        if (len < size) snprintf(buf + len, size - len, "%s%s", *count ? ", " : "", name);
    }
    (*count)++;
}

static void list_finish(char *buf, size_t size, int count)
{
    size_t len = strlen(buf);
    if (count > LIST_MAX && len < size)
        snprintf(buf + len, size - len, " and %d more", count - LIST_MAX);
}

static int is_int_dtype(diffcl_dtype d)
{
    return d == DIFFCL_U8 || d == DIFFCL_I32 || d == DIFFCL_I64;
}

static int64_t load_i64(const void *p, diffcl_dtype d, int64_t i)
{
    switch (d) {
    case DIFFCL_U8: return ((const uint8_t *)p)[i];
    case DIFFCL_I32: return ((const int32_t *)p)[i];
    case DIFFCL_I64: return ((const int64_t *)p)[i];
    default: return 0;
    }
}

static double load_f64(const void *p, diffcl_dtype d, int64_t i)
{
    switch (d) {
    case DIFFCL_F32: return ((const float *)p)[i];
    case DIFFCL_F64: return ((const double *)p)[i];
    default: return (double)load_i64(p, d, i);
    }
}

/* Convert the contiguous @p src into the contiguous @p dst (same numel), checking that
 * integer destinations can hold every value exactly. */
static diffcl_status convert_into(diffcl_tensor *dst, const diffcl_tensor *src, const char *name)
{
    const void *in = dc_data(src);
    void *out = dc_data(dst);
    int64_t n = dc_numel(src);
    if (!is_int_dtype(dst->dtype)) {
        for (int64_t i = 0; i < n; i++) {
            double v = load_f64(in, src->dtype, i);
            if (dst->dtype == DIFFCL_F32)
                ((float *)out)[i] = (float)v;
            else
                ((double *)out)[i] = v;
        }
        return DIFFCL_OK;
    }
    int64_t lo = dst->dtype == DIFFCL_U8 ? 0 : dst->dtype == DIFFCL_I32 ? INT32_MIN : INT64_MIN;
    int64_t hi = dst->dtype == DIFFCL_U8 ? 255 : dst->dtype == DIFFCL_I32 ? INT32_MAX : INT64_MAX;
    for (int64_t i = 0; i < n; i++) {
        int64_t v;
        if (is_int_dtype(src->dtype)) {
            v = load_i64(in, src->dtype, i);
        } else {
            double f = load_f64(in, src->dtype, i);
            /* 2^63 is exactly representable; anything >= it does not fit */
            if (!(f == floor(f)) || f < -9223372036854775808.0 || f >= 9223372036854775808.0)
                return dc_error(DIFFCL_ERR_DTYPE,
                                "%s: element %lld (%g) of the %s tensor is not an integer "
                                "and cannot be stored in the %s buffer",
                                name, (long long)i, f, diffcl_dtype_name(src->dtype),
                                diffcl_dtype_name(dst->dtype));
            v = (int64_t)f;
        }
        if (v < lo || v > hi)
            return dc_error(DIFFCL_ERR_DTYPE,
                            "%s: element %lld (%lld) is out of range for the %s buffer", name,
                            (long long)i, (long long)v, diffcl_dtype_name(dst->dtype));
        switch (dst->dtype) {
        case DIFFCL_U8: ((uint8_t *)out)[i] = (uint8_t)v; break;
        case DIFFCL_I32: ((int32_t *)out)[i] = (int32_t)v; break;
        default: ((int64_t *)out)[i] = v; break;
        }
    }
    return DIFFCL_OK;
}

/* Shapes agree, or the entry is 0-d and the file has [1] (old PyTorch checkpoints). */
static int shapes_compatible(const diffcl_tensor *dst, const diffcl_tensor *src)
{
    if (dc_same_shape(dst, src)) return 1;
    return dst->ndim == 0 && src->ndim == 1 && src->shape[0] == 1;
}

/* Phase 1 for one matched entry: a converted or contiguous copy when needed. */
static diffcl_status prepare(load_slot *slot, diffcl_tensor *dst, const char *name)
{
    diffcl_tensor *src = slot->src;
    if (src->dtype == dst->dtype && dc_is_contiguous(src)) return DIFFCL_OK; /* used as is */
    diffcl_tensor *c = dc_contiguous(src);
    if (!c) {
        dc_error_prefix("%s", name);
        return DIFFCL_ERR_OUT_OF_MEMORY;
    }
    if (c->dtype == dst->dtype) {
        slot->prepared = c;
        return DIFFCL_OK;
    }
    diffcl_tensor *p = dc_tensor_empty(dst->ctx, dst->dtype, dst->ndim, dst->shape);
    if (!p) {
        diffcl_tensor_free(c);
        dc_error_prefix("%s", name);
        return DIFFCL_ERR_OUT_OF_MEMORY;
    }
    diffcl_status s = convert_into(p, c, name);
    diffcl_tensor_free(c);
    if (s != DIFFCL_OK) {
        diffcl_tensor_free(p);
        return s;
    }
    slot->prepared = p;
    return DIFFCL_OK;
}

static diffcl_status read_options(const diffcl_load_options *opts, diffcl_load_options *o)
{
    diffcl_load_options d = DIFFCL_LOAD_OPTIONS_INIT;
    *o = d;
    return dc_options_read(o, sizeof *o, opts, offsetof(diffcl_load_options, strict) + sizeof(int),
                           0, "diffcl_module_load_state_dict");
}

diffcl_status diffcl_module_load_state_dict(diffcl_module *m, const diffcl_tensor_dict *dict,
                                            const diffcl_load_options *opts, int *n_missing,
                                            int *n_unexpected)
{
    return dc_module_load_state_dict_skip(m, dict, opts, NULL, n_missing, n_unexpected);
}

/* What a load will do, decided before anything changes: for each module entry the key that
 * supplies it (slots, by entry), and what is wrong. */
typedef struct load_plan {
    int n;            /* module entries */
    load_slot *slots; /* [n] */
    name_index *idx;  /* [n] entry names, sorted for lookup */
    char unexpected[512], missing[512], shape_msg[700], dup_msg[700];
    int n_unexp, n_miss, n_shape_err;
} load_plan;

/* The module entry that dictionary key @p key loads: the key itself after @p prefix, then with
 * each leading "module." removed. -1 when none; *eligible is 0 when the key lies outside the
 * prefix (another module's entry), *name the key's name inside the module. */
static int resolve_key(const load_plan *p, const diffcl_load_options *o, const char *prefix,
                       const char *key, int *eligible, const char **name)
{
    size_t plen = prefix ? strlen(prefix) : 0;
    const char *c = key;
    *eligible = 0;
    for (;;) {
        const char *cand = c;
        int ok = 1;
        if (prefix) {
            ok = !strncmp(c, prefix, plen);
            cand = c + plen;
        }
        if (ok) {
            *eligible = 1;
            *name = cand;
            int entry = lookup(p->idx, p->n, cand);
            if (entry >= 0) return entry;
        }
        if (!o->strip_module_prefix || strncmp(c, DDP_PREFIX, DDP_PREFIX_LEN)) return -1;
        c += DDP_PREFIX_LEN;
    }
}

/* Give every dictionary key its module entry; note unexpected keys, keys that supply the
 * same entry twice and wrong shapes; then list the entries no key supplies. */
static void plan_keys(load_plan *p, const diffcl_module *m, const diffcl_tensor_dict *dict,
                      const diffcl_load_options *o, const char *skip)
{
    const char *prefix = o->prefix && *o->prefix ? o->prefix : NULL;
    for (int k = 0; k < dict->n; k++) {
        const char *key = dict->names[k], *name = NULL;
        if (skip && !strncmp(key, skip, strlen(skip))) continue; /* another network's entries */
        int eligible, entry = resolve_key(p, o, prefix, key, &eligible, &name);
        if (!eligible) continue; /* outside the prefix: another module's entries */
        if (entry < 0) {
            list_add(p->unexpected, sizeof p->unexpected, &p->n_unexp, key);
            continue;
        }
        load_slot *slot = &p->slots[entry];
        const diffcl_tensor *dst = m->flat[entry].t;
        diffcl_tensor *src = dict->tensors[k];
        if (slot->key) {
            if (!p->dup_msg[0])
                snprintf(p->dup_msg, sizeof p->dup_msg, "%s: supplied by two keys, %s and %s", name,
                         slot->key, key);
            continue;
        }
        slot->key = key;
        slot->src = src;
        if (!shapes_compatible(dst, src) && p->n_shape_err++ == 0) {
            if (strcmp(key, name))
                snprintf(p->shape_msg, sizeof p->shape_msg,
                         "%s: expected shape %s, file has %s (key %s)", name, dc_shape_str(dst),
                         dc_shape_str(src), key);
            else
                snprintf(p->shape_msg, sizeof p->shape_msg, "%s: expected shape %s, file has %s",
                         name, dc_shape_str(dst), dc_shape_str(src));
        }
    }
    for (int i = 0; i < p->n; i++)
        if (!p->slots[i].key) list_add(p->missing, sizeof p->missing, &p->n_miss, m->flat[i].name);
    list_finish(p->unexpected, sizeof p->unexpected, p->n_unexp);
    list_finish(p->missing, sizeof p->missing, p->n_miss);
}

/* Wrong shapes and duplicates are errors even when not strict; missing or unexpected keys
 * are errors when strict. */
static diffcl_status plan_verdict(const load_plan *p, int strict)
{
    if (p->n_shape_err > 1)
        return dc_error(DIFFCL_ERR_SHAPE, "%s (and %d more tensors with a wrong shape)",
                        p->shape_msg, p->n_shape_err - 1);
    if (p->n_shape_err) return dc_error(DIFFCL_ERR_SHAPE, "%s", p->shape_msg);
    if (p->dup_msg[0]) return dc_error(DIFFCL_ERR_FORMAT, "%s", p->dup_msg);
    if (!strict || (!p->n_miss && !p->n_unexp)) return DIFFCL_OK;
    char both[1100];
    if (p->n_miss && p->n_unexp)
        snprintf(both, sizeof both, "%d missing key%s: %s; %d unexpected key%s: %s", p->n_miss,
                 p->n_miss > 1 ? "s" : "", p->missing, p->n_unexp, p->n_unexp > 1 ? "s" : "",
                 p->unexpected);
    else if (p->n_miss)
        snprintf(both, sizeof both, "%d missing key%s: %s", p->n_miss, p->n_miss > 1 ? "s" : "",
                 p->missing);
    else
        snprintf(both, sizeof both, "%d unexpected key%s: %s", p->n_unexp,
                 p->n_unexp > 1 ? "s" : "", p->unexpected);
    return dc_error(p->n_miss ? DIFFCL_ERR_NOT_FOUND : DIFFCL_ERR_FORMAT,
                    "load_state_dict (strict): %s", both);
}

/* Phase 2: copies that cannot fail (sizes checked in phase 1). */
static diffcl_status plan_commit(const load_plan *p, diffcl_module *m)
{
    for (int i = 0; i < p->n; i++) {
        if (!p->slots[i].key) continue;
        diffcl_tensor *dst = m->flat[i].t;
        const diffcl_tensor *from = p->slots[i].prepared ? p->slots[i].prepared : p->slots[i].src;
        if (from == dst || (dc_data(from) == dc_data(dst) && dc_is_contiguous(dst))) continue;
        size_t nbytes = (size_t)dc_numel(dst) * diffcl_dtype_size(dst->dtype);
        if (diffcl_tensor_copy_from(dst, dc_data(from), nbytes) !=
            DIFFCL_OK) /* unreachable: sizes checked */
            return dc_error(DIFFCL_ERR_INTERNAL, "%s: copy failed after validation: %s",
                            m->flat[i].name, diffcl_last_error());
    }
    return DIFFCL_OK;
}

diffcl_status dc_module_load_state_dict_skip(diffcl_module *m, const diffcl_tensor_dict *dict,
                                             const diffcl_load_options *opts, const char *skip,
                                             int *n_missing, int *n_unexpected)
{
    if (n_missing) *n_missing = 0;
    if (n_unexpected) *n_unexpected = 0;
    DC_CHECK_ARG(m && dict, "diffcl_module_load_state_dict: NULL argument");
    diffcl_load_options o;
    DC_TRY(read_options(opts, &o));
    load_plan p = {.n = diffcl_module_state_count(m, DIFFCL_STATE_ALL)}; /* builds m->flat */
    if (!m->flat_valid) return DIFFCL_ERR_OUT_OF_MEMORY; /* error set by the listing */
    p.slots = dc_calloc_raw((size_t)(p.n ? p.n : 1), sizeof *p.slots);
    p.idx = dc_calloc_raw((size_t)(p.n ? p.n : 1), sizeof *p.idx);
    if (!p.slots || !p.idx) {
        free(p.slots);
        free(p.idx);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "diffcl_module_load_state_dict: out of memory");
    }
    for (int i = 0; i < p.n; i++) {
        p.idx[i].name = m->flat[i].name;
        p.idx[i].entry = i;
    }
    qsort(p.idx, (size_t)p.n, sizeof *p.idx, cmp_index);
    plan_keys(&p, m, dict, &o, skip);
    if (n_missing) *n_missing = p.n_miss;
    if (n_unexpected) *n_unexpected = p.n_unexp;
    diffcl_status s = plan_verdict(&p, o.strict);
    /* Phase 1: conversions and range checks, before anything changes. */
    for (int i = 0; i < p.n && s == DIFFCL_OK; i++)
        if (p.slots[i].key) s = prepare(&p.slots[i], m->flat[i].t, m->flat[i].name);
    if (s == DIFFCL_OK && p.n_miss)
        dc_log(m->ctx, DIFFCL_LOG_WARN, "load_state_dict: %d missing key%s: %s", p.n_miss,
               p.n_miss > 1 ? "s" : "", p.missing);
    if (s == DIFFCL_OK && p.n_unexp)
        dc_log(m->ctx, DIFFCL_LOG_WARN, "load_state_dict: %d unexpected key%s: %s", p.n_unexp,
               p.n_unexp > 1 ? "s" : "", p.unexpected);
    if (s == DIFFCL_OK) s = plan_commit(&p, m);
    for (int i = 0; i < p.n; i++) diffcl_tensor_free(p.slots[i].prepared);
    free(p.slots);
    free(p.idx);
    return s;
}

diffcl_status diffcl_module_load(diffcl_module *m, const char *path,
                                 const diffcl_load_options *opts)
{
    DC_CHECK_ARG(m && path, "diffcl_module_load: NULL argument");
    diffcl_tensor_dict *d = NULL;
    DC_TRY(diffcl_safetensors_load(m->ctx, path, &d));
    diffcl_status s = diffcl_module_load_state_dict(m, d, opts, NULL, NULL);
    if (s != DIFFCL_OK) dc_error_prefix("%s", path);
    diffcl_tensor_dict_free(d);
    return s;
}

diffcl_status diffcl_module_save(const diffcl_module *m, const char *path,
                                 const char *const *meta_keys, const char *const *meta_values,
                                 int n_meta)
{
    DC_CHECK_ARG(m && path, "diffcl_module_save: NULL argument");
    DC_CHECK_ARG(n_meta >= 0, "diffcl_module_save: n_meta is negative");
    DC_CHECK_ARG(n_meta == 0 || (meta_keys && meta_values),
                 "diffcl_module_save: metadata arrays are NULL");
    for (int i = 0; i < n_meta; i++)
        DC_CHECK_ARG(meta_keys[i] && meta_values[i], "diffcl_module_save: metadata pair %d is NULL",
                     i);
    diffcl_tensor_dict *d = NULL;
    DC_TRY(diffcl_module_state_dict(m, &d));
    diffcl_status s = DIFFCL_OK;
    for (int i = 0; i < n_meta && s == DIFFCL_OK; i++)
        s = diffcl_tensor_dict_set_meta(d, meta_keys[i], meta_values[i]);
    if (s == DIFFCL_OK) s = diffcl_safetensors_save(d, path);
    diffcl_tensor_dict_free(d);
    return s;
}
