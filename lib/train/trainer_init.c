/* Fine-tuning (diffcl_train_options.init_weights): the CS starts from the tensors of a weights
 * file that match it by name and shape. The file may be a run's model.safetensors (the CS at
 * the top, its DS under "ds."), a trainer checkpoint (the CS under its "diffcl.model_prefix"),
 * a diffcl_model_save() file or a plain (converted PyTorch) state dict, whose DataParallel
 * "module." prefixes are removed. An output head of another class count (a shape that differs
 * in the first axis of out_conv's tensors only) keeps its initialisation; every other shape
 * difference is an error, since a run that silently trained most of its layers from scratch
 * would not be the fine-tuning that was asked for. The load is one strict, atomic
 * diffcl_module_load_state_dict (entries the file does not supply are given their own tensor),
 * so on error the CS is unchanged; one log line per category says what happened. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer/module_internal.h"
#include "train/trainer_internal.h"

#define HEAD "out_conv."
#define DDP_PREFIX "module."
#define NAMES_LISTED 8 /* names in a log line before "and N more" */

/* A log line's list of names (or "name: detail" items), at most NAMES_LISTED of them. */
typedef struct name_list {
    char text[1536];
    int n;
} name_list;

static void list_add(name_list *l, const char *sep, const char *fmt, ...)
{
    if (l->n++ >= NAMES_LISTED) return;
    size_t len = strlen(l->text);
    if (len + 1 >= sizeof l->text) return;
    if (l->n > 1) snprintf(l->text + len, sizeof l->text - len, "%s", sep);
    len = strlen(l->text);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->text + len, sizeof l->text - len, fmt, ap);
    va_end(ap);
}

/* The list as the log shows it: its items, then "and N more". */
static const char *list_str(name_list *l)
{
    size_t len = strlen(l->text);
    if (l->n > NAMES_LISTED && len < sizeof l->text)
        snprintf(l->text + len, sizeof l->text - len, " and %d more", l->n - NAMES_LISTED);
    return l->text;
}

/* Shapes agree, or the entry is 0-d and the file has [1] (old PyTorch counters), as
 * diffcl_module_load_state_dict accepts them. */
static int shapes_fit(const diffcl_tensor *dst, const diffcl_tensor *src)
{
    return dc_same_shape(dst, src) || (dst->ndim == 0 && src->ndim == 1 && src->shape[0] == 1);
}

/* An output head that differs in its class count only: same rank, same sizes but the first. */
static int head_class_count_differs(const char *name, const diffcl_tensor *dst,
                                    const diffcl_tensor *src)
{
    if (strncmp(name, HEAD, strlen(HEAD)) || dst->ndim != src->ndim || dst->ndim < 1) return 0;
    for (int a = 1; a < dst->ndim; a++)
        if (dst->shape[a] != src->shape[a]) return 0;
    return dst->shape[0] != src->shape[0];
}

/* The CS entry that @p key names, after the DataParallel prefixes: NULL when none. */
static const char *cs_name(const diffcl_module *cs, const char *key)
{
    const char *name = key;
    while (!diffcl_module_find(cs, name) && !strncmp(name, DDP_PREFIX, strlen(DDP_PREFIX)))
        name += strlen(DDP_PREFIX);
    return diffcl_module_find(cs, name) ? name : NULL;
}

typedef struct init_report {
    int loaded, n_cs;
    name_list skipped;   /* the head: "name: shape A in the file, B here" */
    name_list bad_shape; /* the same, for any other tensor: an error */
    name_list missing;   /* CS entries the file does not supply */
    name_list unused;    /* file keys that name no CS entry */
    int other;           /* entries of another network or state (ds., optim., trainer.) */
    const char *other_what;
    int64_t file_classes, classes; /* of the skipped head */
} init_report;

/* Fill @p load with the CS entries the file supplies (name -> the file's tensor) and
 * @p r with what goes where. */
static diffcl_status plan(const diffcl_trainer *tr, const diffcl_tensor_dict *d,
                          diffcl_tensor_dict *load, diffcl_tensor_dict *skipped, init_report *r)
{
    const diffcl_module *cs = tr->cs;
    /* a trainer checkpoint holds the CS under a prefix; a Diff-CL model file its DS under ds. */
    const char *prefix = diffcl_tensor_dict_get_meta(d, "diffcl.model_prefix");
    const char *skip = !prefix && diffcl_tensor_dict_get_meta(d, "diffcl.ds_model") ? "ds." : NULL;
    r->other_what = prefix ? "entries outside the CS (its DS, optimizer and trainer state)"
                           : "tensors of its DS (ds.*); the DS starts from its initialisation";
    size_t plen = prefix ? strlen(prefix) : 0;
    for (int k = 0; k < diffcl_tensor_dict_size(d); k++) {
        const char *key = diffcl_tensor_dict_name(d, k);
        if ((prefix && strncmp(key, prefix, plen)) || (skip && !strncmp(key, skip, strlen(skip)))) {
            r->other++;
            continue;
        }
        const char *name = cs_name(cs, key + plen);
        if (!name) {
            list_add(&r->unused, ", ", "%s", key);
            continue;
        }
        if (diffcl_tensor_dict_get(load, name))
            return dc_error(DIFFCL_ERR_FORMAT, "%s is supplied by two keys of the file (one is %s)",
                            name, key);
        const diffcl_tensor *dst = diffcl_module_find(cs, name);
        diffcl_tensor *src = diffcl_tensor_dict_at(d, k);
        if (shapes_fit(dst, src)) {
            DC_TRY(diffcl_tensor_dict_set(load, name, src));
            r->loaded++;
        } else if (head_class_count_differs(name, dst, src)) {
            list_add(&r->skipped, "; ", "%s: shape %s in the file, %s here", name,
                     dc_shape_str(src), dc_shape_str(dst));
            DC_TRY(diffcl_tensor_dict_set(skipped, name, src));
            r->file_classes = src->shape[0];
            r->classes = dst->shape[0];
        } else {
            list_add(&r->bad_shape, "; ", "%s: shape %s in the file, %s here", name,
                     dc_shape_str(src), dc_shape_str(dst));
        }
    }
    /* the entries the file does not supply keep their own values: a strict load then copies
     * exactly the matching tensors */
    DC_TRY(dc_module_state_count(cs, DIFFCL_STATE_ALL, &r->n_cs));
    for (int i = 0; i < r->n_cs; i++) {
        const char *name;
        diffcl_tensor *t;
        DC_TRY(diffcl_module_state_entry(cs, DIFFCL_STATE_ALL, i, &name, &t, NULL));
        if (diffcl_tensor_dict_get(load, name)) continue;
        if (!diffcl_tensor_dict_get(skipped, name)) list_add(&r->missing, ", ", "%s", name);
        DC_TRY(diffcl_tensor_dict_set(load, name, t));
    }
    return DIFFCL_OK;
}

static void log_report(const diffcl_trainer *tr, init_report *r)
{
    diffcl_context *ctx = tr->ctx;
    const char *path = tr->o.init_weights;
    dc_log(ctx, DIFFCL_LOG_INFO, "init-weights %s: loaded %d of the CS's %d tensors", path,
           r->loaded, r->n_cs);
    if (r->skipped.n)
        dc_log(ctx, DIFFCL_LOG_INFO,
               "init-weights: skipped %d, the output head (%lld classes in the file, %lld here; "
               "it keeps its initialisation): %s",
               r->skipped.n, (long long)r->file_classes, (long long)r->classes,
               list_str(&r->skipped));
    if (r->missing.n)
        dc_log(ctx, DIFFCL_LOG_WARN,
               "init-weights: %d tensors of the CS are not in the file and keep their "
               "initialisation: %s",
               r->missing.n, list_str(&r->missing));
    if (r->unused.n)
        dc_log(ctx, DIFFCL_LOG_WARN,
               "init-weights: %d tensors of the file match no tensor of the CS and are ignored: %s",
               r->unused.n, list_str(&r->unused));
    if (r->other)
        dc_log(ctx, DIFFCL_LOG_INFO, "init-weights: ignored the file's %d %s", r->other,
               r->other_what);
}

diffcl_status dc_trainer_load_init_weights(diffcl_trainer *tr)
{
    const char *path = tr->o.init_weights;
    diffcl_tensor_dict *d = NULL, *load = NULL, *skipped = NULL;
    init_report r;
    memset(&r, 0, sizeof r);
    diffcl_status s = diffcl_safetensors_load(tr->ctx, path, &d);
    if (s != DIFFCL_OK) { /* the message names the file */
        dc_error_prefix("init-weights");
        return s;
    }
    s = diffcl_tensor_dict_new(tr->ctx, &load);
    if (s == DIFFCL_OK) s = diffcl_tensor_dict_new(tr->ctx, &skipped);
    if (s == DIFFCL_OK) s = plan(tr, d, load, skipped, &r);
    if (s == DIFFCL_OK && r.bad_shape.n)
        s = dc_error(DIFFCL_ERR_SHAPE,
                     "%d tensors do not fit the CS (only the output head may differ, in its "
                     "class count): %s",
                     r.bad_shape.n, list_str(&r.bad_shape));
    if (s == DIFFCL_OK && r.loaded == 0)
        s = dc_error(DIFFCL_ERR_FORMAT,
                     "no tensor of the file is a tensor of the CS (%d ignored: %s); is it a "
                     "V-Net's weights?",
                     r.unused.n, r.unused.n ? list_str(&r.unused) : "none");
    if (s == DIFFCL_OK) {
        diffcl_load_options lo = DIFFCL_LOAD_OPTIONS_INIT;
        lo.strip_module_prefix = 0; /* the keys are the CS's own names */
        s = diffcl_module_load_state_dict(tr->cs, load, &lo, NULL, NULL);
    }
    if (s == DIFFCL_OK) log_report(tr, &r);
    diffcl_tensor_dict_free(skipped);
    diffcl_tensor_dict_free(load);
    diffcl_tensor_dict_free(d);
    if (s != DIFFCL_OK) dc_error_prefix("init-weights %s", path);
    return s;
}
