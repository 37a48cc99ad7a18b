/* The labeled/unlabeled batch sampler with a background prefetch thread.
 *
 * Batch `it` is a pure function of (seed, it): labeled slot b takes sample number
 * k = it * B_l + b of a keyed per-epoch permutation of the labeled cases (each case once
 * per epoch), unlabeled slots likewise, and sample b's augmentation draws from the key
 * (seed, DIFFCL_STREAM_AUGMENT, b, it). The worker thread prepares it+1, it+2, ... into
 * plain buffers (no context is touched off the caller's thread: cases come from the cache,
 * or are loaded into a private context); the caller's thread wraps them into tensors. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/augment_internal.h"
#include "data/dataset_internal.h"
#include "tensor/tensor_internal.h"

typedef struct raw_case {
    float *img;
    uint8_t *lab;
    int C;
    int two_d;
    int64_t dims[3];
} raw_case;

typedef struct batch {
    uint32_t it;
    float *img;
    float *weak; /* the unlabeled patches before intensity and blur (diffcl_sampler_next_views) */
    uint8_t *lab;
    int64_t *idx;
    diffcl_status status;
    char err[512];
    struct batch *next;
} batch;

struct diffcl_sampler {
    const diffcl_dataset *ds;
    diffcl_sampler_options o;
    diffcl_augment_options aug_l, aug_u;
    int64_t *lab, n_lab, *unl, n_unl;
    raw_case *cache; /* by data-set index; NULL when loading on demand */
    int C, two_d;
    int64_t P[3];
    diffcl_context *wctx; /* worker's private context (on-demand loading) */
    /* prefetch */
    int threaded;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    uint64_t gen;
    uint32_t next_it; /* next iteration the worker prepares */
    int count;
    batch *head, *tail;
};

void diffcl_sampler_options_init(diffcl_sampler_options *opts)
{
    if (!opts) return;
    diffcl_sampler_options d = DIFFCL_SAMPLER_OPTIONS_INIT;
    *opts = d;
}

static void *aligned_buf(size_t n)
{
    size_t r = (n + 63) / 64 * 64;
    return dc_aligned_alloc(64, r ? r : 64);
}

static void raw_free(raw_case *c)
{
    free(c->img);
    free(c->lab);
    memset(c, 0, sizeof *c);
}

/* Load case i into raw buffers (label only when want_label). */
static diffcl_status raw_load(const diffcl_sampler *s, diffcl_context *ctx, int64_t i,
                              int want_label, raw_case *rc)
{
    memset(rc, 0, sizeof *rc);
    diffcl_tensor *img = NULL, *lab = NULL;
    DC_TRY(dc_dataset_load_in(s->ds, ctx, i, &img, want_label ? &lab : NULL, NULL));
    int C, two_d;
    int64_t dims[3];
    diffcl_status st = dc_image_dims(img, &C, dims, &two_d, "sampler");
    if (st == DIFFCL_OK) {
        size_t vol = (size_t)(dims[0] * dims[1] * dims[2]);
        rc->img = dc_malloc(sizeof(float) * vol * (size_t)C);
        rc->lab = lab ? dc_malloc(vol) : NULL;
        if (!rc->img || (lab && !rc->lab)) {
            st = dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "sampler: out of memory loading case '%s'",
                          s->ds->ids[i]);
        } else {
            diffcl_tensor_copy_to(img, rc->img, sizeof(float) * vol * (size_t)C);
            if (lab) diffcl_tensor_copy_to(lab, rc->lab, vol);
            rc->C = C;
            rc->two_d = two_d;
            memcpy(rc->dims, dims, sizeof dims);
        }
    }
    diffcl_tensor_free(img);
    diffcl_tensor_free(lab);
    if (st != DIFFCL_OK) raw_free(rc);
    return st;
}

/* Sample number k of a keyed per-epoch permutation of list[0..n). */
static int64_t pick(const diffcl_sampler *s, const int64_t *list, int64_t n, uint32_t stream,
                    uint64_t k, int64_t *scratch)
{
    uint64_t epoch = k / (uint64_t)n, pos = k % (uint64_t)n;
    dc_draw d = dc_draw_make(s->o.seed, stream, 0, (uint32_t)epoch);
    d.key.reserved = 0;
    for (int64_t i = 0; i < n; i++) scratch[i] = i;
    for (int64_t i = n - 1; i > 0; i--) { /* Fisher-Yates */
        int64_t j = dc_draw_int(&d, i + 1), t = scratch[i];
        scratch[i] = scratch[j];
        scratch[j] = t;
    }
    return list[scratch[pos]];
}

static diffcl_status make_batch(diffcl_sampler *s, diffcl_context *load_ctx, uint32_t it, batch *b,
                                int n_threads)
{
    const int Bl = s->o.batch_labeled, Bu = s->o.batch_unlabeled, B = Bl + Bu;
    const int64_t pvol = s->P[0] * s->P[1] * s->P[2];
    b->it = it;
    b->img = aligned_buf(sizeof(float) * (size_t)(B * s->C * pvol));
    b->lab = aligned_buf((size_t)((Bl ? Bl : 1) * pvol));
    b->idx = dc_malloc(sizeof(int64_t) * (size_t)B);
    if (Bu > 0) {
        b->weak = aligned_buf(sizeof(float) * (size_t)(Bu * s->C * pvol));
        if (!b->weak)
            return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "sampler: out of memory for a batch");
    }
    int64_t nmax = s->n_lab > s->n_unl ? s->n_lab : s->n_unl;
    int64_t *scratch = dc_malloc(sizeof(int64_t) * (size_t)(nmax ? nmax : 1));
    if (!b->img || !b->lab || !b->idx || !scratch) {
        free(scratch);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "sampler: out of memory for a batch");
    }
    diffcl_status st = DIFFCL_OK;
    for (int slot = 0; slot < B && st == DIFFCL_OK; slot++) {
        int labeled = slot < Bl;
        int64_t ci = labeled ? pick(s, s->lab, s->n_lab, DIFFCL_STREAM_SAMPLE_LABELED,
                                    (uint64_t)it * (uint64_t)Bl + (uint64_t)slot, scratch)
                             : pick(s, s->unl, s->n_unl, DIFFCL_STREAM_SAMPLE_UNLABELED,
                                    (uint64_t)it * (uint64_t)Bu + (uint64_t)(slot - Bl), scratch);
        b->idx[slot] = ci;
        raw_case tmp, *rc = s->cache ? &s->cache[ci] : &tmp;
        if (!s->cache) {
            st = raw_load(s, load_ctx, ci, labeled, &tmp);
            if (st != DIFFCL_OK) break;
        }
        if (rc->C != s->C || rc->two_d != s->two_d) {
            st = dc_error(DIFFCL_ERR_FORMAT,
                          "sampler: case '%s' has %d channel(s) and %d-D images, the first case %d "
                          "and %d-D",
                          s->ds->ids[ci], rc->C, rc->two_d ? 2 : 3, s->C, s->two_d ? 2 : 3);
        } else {
            diffcl_rng_key key =
                diffcl_rng_key_make(s->o.seed, DIFFCL_STREAM_AUGMENT, (uint32_t)slot, it);
            if (dc_kern_augment(
                    rc->img, labeled ? rc->lab : NULL, rc->C, rc->dims, rc->two_d, s->P,
                    labeled ? &s->aug_l : &s->aug_u, key, b->img + (int64_t)slot * s->C * pvol,
                    labeled ? b->lab + (int64_t)slot * pvol : NULL,
                    !labeled && b->weak ? b->weak + (int64_t)(slot - Bl) * s->C * pvol : NULL,
                    n_threads))
                st = dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "sampler: out of memory augmenting");
        }
        if (!s->cache) raw_free(&tmp);
    }
    free(scratch);
    return st;
}

static void batch_free(batch *b)
{
    if (!b) return;
    free(b->img);
    free(b->weak);
    free(b->lab);
    free(b->idx);
    free(b);
}

static void *worker(void *arg)
{
    diffcl_sampler *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->stop && s->count >= s->o.prefetch) pthread_cond_wait(&s->cv, &s->mu);
        if (s->stop) break;
        uint32_t it = s->next_it++;
        uint64_t gen = s->gen;
        pthread_mutex_unlock(&s->mu);
        batch *b = dc_calloc_raw(1, sizeof *b);
        if (b) {
            diffcl_clear_error();
            b->status = make_batch(s, s->wctx, it, b, 1);
            if (b->status != DIFFCL_OK) snprintf(b->err, sizeof b->err, "%s", diffcl_last_error());
        }
        pthread_mutex_lock(&s->mu);
        if (!b) { /* out of memory: try this iteration again */
            if (gen == s->gen) s->next_it = it;
            continue;
        }
        if (gen != s->gen || s->stop) {
            batch_free(b);
            continue;
        }
        b->next = NULL;
        if (s->tail)
            s->tail->next = b;
        else
            s->head = b;
        s->tail = b;
        s->count++;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

void diffcl_sampler_free(diffcl_sampler *s)
{
    if (!s) return;
    if (s->threaded) {
        pthread_mutex_lock(&s->mu);
        s->stop = 1;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->th, NULL);
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
    }
    while (s->head) {
        batch *n = s->head->next;
        batch_free(s->head);
        s->head = n;
    }
    if (s->cache)
        for (int64_t i = 0; i < s->ds->n; i++) raw_free(&s->cache[i]);
    free(s->cache);
    free(s->lab);
    free(s->unl);
    diffcl_context_free(s->wctx);
    free(s);
}

/* A context for the worker thread that never touches OpenBLAS's process-wide settings. */
static diffcl_context *private_context(void)
{
    diffcl_context *c = dc_calloc_raw(1, sizeof *c);
    if (!c) return NULL;
    c->n_threads = 1;
    c->log_level = DIFFCL_LOG_WARN;
    c->grad_enabled = 0;
    return c;
}

diffcl_status diffcl_sampler_create(const diffcl_dataset *ds, const diffcl_split *split,
                                    const diffcl_sampler_options *opts, diffcl_sampler **out)
{
    const char *fn = "diffcl_sampler_create";
    DC_CHECK_ARG(ds && split && out, "%s: ds, split and out must not be NULL", fn);
    *out = NULL;
    diffcl_sampler_options o = DIFFCL_SAMPLER_OPTIONS_INIT;
    DC_TRY(dc_options_read(&o, sizeof o, opts, offsetof(diffcl_sampler_options, augment), 0, fn));
    DC_CHECK_ARG(o.batch_labeled >= 0 && o.batch_unlabeled >= 0 &&
                     o.batch_labeled + o.batch_unlabeled >= 1 &&
                     o.batch_labeled + o.batch_unlabeled <= 1024,
                 "%s: batch sizes %d + %d", fn, o.batch_labeled, o.batch_unlabeled);
    DC_CHECK_ARG(o.prefetch >= 0 && o.prefetch <= 64, "%s: prefetch %d not in 0..64", fn,
                 o.prefetch);
    DC_CHECK_ARG(o.batch_labeled == 0 || split->n_labeled > 0,
                 "%s: %d labeled samples per batch but the split has no labeled case", fn,
                 o.batch_labeled);
    DC_CHECK_ARG(o.batch_unlabeled == 0 || split->n_unlabeled > 0,
                 "%s: %d unlabeled samples per batch but the split has no unlabeled case", fn,
                 o.batch_unlabeled);
    for (int64_t i = 0; i < split->n_labeled; i++)
        DC_CHECK_ARG(split->labeled[i] >= 0 && split->labeled[i] < ds->n,
                     "%s: labeled index %lld out of range", fn, (long long)split->labeled[i]);
    for (int64_t i = 0; i < split->n_unlabeled; i++)
        DC_CHECK_ARG(split->unlabeled[i] >= 0 && split->unlabeled[i] < ds->n,
                     "%s: unlabeled index %lld out of range", fn, (long long)split->unlabeled[i]);
    diffcl_augment_options aug;
    DC_TRY(dc_augment_read_options(&o.augment, &aug, fn));
    diffcl_sampler *s = dc_calloc_raw(1, sizeof *s);
    if (!s) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    s->ds = ds;
    s->o = o;
    s->aug_l = aug;
    s->aug_u = aug;
    s->aug_u.strong = o.strong_unlabeled;
    s->aug_u.fg_prob = 0;
    s->n_lab = split->n_labeled;
    s->n_unl = split->n_unlabeled;
    s->lab = dc_malloc(sizeof(int64_t) * (size_t)(s->n_lab ? s->n_lab : 1));
    s->unl = dc_malloc(sizeof(int64_t) * (size_t)(s->n_unl ? s->n_unl : 1));
    diffcl_status st = DIFFCL_OK;
    if (!s->lab || !s->unl) st = dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    if (st == DIFFCL_OK) {
        memcpy(s->lab, split->labeled, sizeof(int64_t) * (size_t)s->n_lab);
        memcpy(s->unl, split->unlabeled, sizeof(int64_t) * (size_t)s->n_unl);
    }
    /* the first case fixes channels and dimensionality */
    raw_case first;
    memset(&first, 0, sizeof first);
    if (st == DIFFCL_OK) st = raw_load(s, ds->ctx, s->n_lab ? s->lab[0] : s->unl[0], 0, &first);
    if (st == DIFFCL_OK) {
        s->C = first.C;
        s->two_d = first.two_d;
        s->P[0] = s->two_d ? 1 : o.patch[0];
        s->P[1] = o.patch[1];
        s->P[2] = o.patch[2];
        for (int a = 0; a < 3; a++)
            if (s->P[a] < 1 || s->P[a] > 4096)
                st = dc_error(DIFFCL_ERR_INVALID_ARGUMENT, "%s: patch[%d] = %lld out of range", fn,
                              a, (long long)s->P[a]);
    }
    raw_free(&first);
    if (st == DIFFCL_OK && o.cache) {
        s->cache = dc_calloc_raw((size_t)ds->n, sizeof(raw_case));
        if (!s->cache) st = dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
        for (int64_t i = 0; i < s->n_lab && st == DIFFCL_OK; i++)
            if (!s->cache[s->lab[i]].img)
                st = raw_load(s, ds->ctx, s->lab[i], 1, &s->cache[s->lab[i]]);
        for (int64_t i = 0; i < s->n_unl && st == DIFFCL_OK; i++)
            if (!s->cache[s->unl[i]].img)
                st = raw_load(s, ds->ctx, s->unl[i], 0, &s->cache[s->unl[i]]);
    }
    if (st == DIFFCL_OK && !o.cache && o.prefetch > 0) {
        s->wctx = private_context();
        if (!s->wctx) st = dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    if (st == DIFFCL_OK && o.prefetch > 0) {
        pthread_mutex_init(&s->mu, NULL);
        pthread_cond_init(&s->cv, NULL);
        s->next_it = 0;
        if (pthread_create(&s->th, NULL, worker, s) != 0) {
            pthread_mutex_destroy(&s->mu);
            pthread_cond_destroy(&s->cv);
            st = dc_error(DIFFCL_ERR_INTERNAL, "%s: cannot start the prefetch thread", fn);
        } else {
            s->threaded = 1;
        }
    }
    if (st != DIFFCL_OK) {
        diffcl_sampler_free(s);
        return st;
    }
    *out = s;
    return DIFFCL_OK;
}

static void free_deleter(void *data, void *user)
{
    (void)user;
    free(data);
}

/* The prepared batch of @p iteration (the worker's, or made now without prefetch). */
static diffcl_status take_batch(diffcl_sampler *s, uint32_t iteration, const char *fn, batch **out)
{
    *out = NULL;
    batch *b = NULL;
    if (s->threaded) {
        pthread_mutex_lock(&s->mu);
        /* is `iteration` in the sequence the worker is producing? */
        uint32_t first = s->head ? s->head->it : s->next_it;
        if (!(iteration >= first && iteration < s->next_it + (uint32_t)s->o.prefetch + 1)) {
            s->gen++;
            while (s->head) {
                batch *n = s->head->next;
                batch_free(s->head);
                s->head = n;
            }
            s->tail = NULL;
            s->count = 0;
            s->next_it = iteration;
            pthread_cond_broadcast(&s->cv);
        }
        for (;;) {
            while (s->head && s->head->it < iteration) { /* skipped iterations */
                batch *n = s->head->next;
                batch_free(s->head);
                s->head = n;
                if (!n) s->tail = NULL;
                s->count--;
                pthread_cond_broadcast(&s->cv);
            }
            if (s->head && s->head->it == iteration) break;
            pthread_cond_wait(&s->cv, &s->mu);
        }
        b = s->head;
        s->head = b->next;
        if (!s->head) s->tail = NULL;
        s->count--;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
    } else {
        b = dc_calloc_raw(1, sizeof *b);
        if (!b) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
        b->status = make_batch(s, s->ds->ctx, iteration, b, dc_threads(s->ds->ctx));
        if (b->status != DIFFCL_OK) snprintf(b->err, sizeof b->err, "%s", diffcl_last_error());
    }
    if (b->status != DIFFCL_OK) {
        diffcl_status st = dc_error(b->status, "%s", b->err);
        batch_free(b);
        return st;
    }
    *out = b;
    return DIFFCL_OK;
}

/* Hand @p buf over to a new tensor [n, C, patch] (or [n, patch] for labels: C = 0). */
static diffcl_status wrap(diffcl_sampler *s, int64_t n, int C, diffcl_dtype dt, void **buf,
                          diffcl_tensor **out)
{
    int64_t shape[5];
    int nd = 0;
    shape[nd++] = n;
    if (C) shape[nd++] = C;
    for (int a = s->two_d ? 1 : 0; a < 3; a++) shape[nd++] = s->P[a];
    diffcl_status st =
        diffcl_tensor_wrap(s->ds->ctx, dt, nd, shape, NULL, *buf, free_deleter, NULL, out);
    if (st == DIFFCL_OK) *buf = NULL;
    return st;
}

/* The tensors of a batch; frees @p b. */
static diffcl_status hand_out(diffcl_sampler *s, batch *b, diffcl_tensor **image,
                              diffcl_tensor **weak, diffcl_tensor **label, int64_t *case_index)
{
    const int Bl = s->o.batch_labeled, Bu = s->o.batch_unlabeled;
    diffcl_tensor *ti = NULL, *tw = NULL, *tl = NULL;
    diffcl_status st = wrap(s, Bl + Bu, s->C, DIFFCL_F32, (void **)&b->img, &ti);
    if (st == DIFFCL_OK && weak && Bu > 0)
        st = wrap(s, Bu, s->C, DIFFCL_F32, (void **)&b->weak, &tw);
    if (st == DIFFCL_OK && label) st = wrap(s, Bl, 0, DIFFCL_U8, (void **)&b->lab, &tl);
    if (st == DIFFCL_OK && case_index)
        memcpy(case_index, b->idx, sizeof(int64_t) * (size_t)(Bl + Bu));
    batch_free(b);
    if (st != DIFFCL_OK) {
        diffcl_tensor_free(ti);
        diffcl_tensor_free(tw);
        return st;
    }
    *image = ti;
    if (weak) *weak = tw;
    if (label) *label = tl;
    return DIFFCL_OK;
}

diffcl_status diffcl_sampler_next(diffcl_sampler *s, uint32_t iteration, diffcl_tensor **image,
                                  diffcl_tensor **label, int64_t *case_index)
{
    const char *fn = "diffcl_sampler_next";
    DC_CHECK_ARG(s && image, "%s: sampler and image must not be NULL", fn);
    *image = NULL;
    if (label) *label = NULL;
    batch *b = NULL;
    DC_TRY(take_batch(s, iteration, fn, &b));
    return hand_out(s, b, image, NULL, label, case_index);
}

diffcl_status diffcl_sampler_next_views(diffcl_sampler *s, uint32_t iteration,
                                        diffcl_sampler_views *views, int64_t *case_index)
{
    const char *fn = "diffcl_sampler_next_views";
    DC_CHECK_ARG(s && views, "%s: sampler and views must not be NULL", fn);
    DC_CHECK_ARG(views->struct_size >= sizeof *views,
                 "%s: views.struct_size %zu too small (use "
                 "DIFFCL_SAMPLER_VIEWS_INIT)",
                 fn, views->struct_size);
    views->image = views->weak = views->label = NULL;
    batch *b = NULL;
    DC_TRY(take_batch(s, iteration, fn, &b));
    return hand_out(s, b, &views->image, &views->weak, &views->label, case_index);
}
