/* A log of the per-sample random draws of a run, recorded through the context's draw hook
 * (dc_draw_report, lib/core/core_internal.h), to compare the draws of a sharded run (each rank
 * or emulated rank) with those of one process over the same global batch: every record of a
 * shard must equal the reference's record of the same (iteration, kind, stream, sample, call),
 * and together the shards must cover the reference. Header-only (static functions), shared by
 * tests/train/test_draws.c (Check) and tests/mpi/test_mpi_draws.c (a plain MPI program). */
#ifndef DIFFCL_TEST_DRAW_LOG_H
#define DIFFCL_TEST_DRAW_LOG_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core_internal.h"

typedef struct draw_rec {
    uint32_t iter; /* the training iteration (set by the test before each step) */
    uint32_t kind, stream, sample, call;
    size_t bytes;
    unsigned char *data;
    int matched;
} draw_rec;

typedef struct draw_log {
    draw_rec *r;
    size_t n, cap;
    uint32_t iter;
    int oom;
    size_t per_kind[8];
} draw_log;

static void draw_log_fn(void *user, dc_draw_kind kind, uint32_t stream, uint32_t sample,
                        uint32_t call, const void *data, size_t bytes)
{
    draw_log *l = user;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        draw_rec *r = realloc(l->r, cap * sizeof *r);
        if (!r) {
            l->oom = 1;
            return;
        }
        l->r = r;
        l->cap = cap;
    }
    draw_rec *d = &l->r[l->n];
    d->iter = l->iter;
    d->kind = (uint32_t)kind;
    d->stream = stream;
    d->sample = sample;
    d->call = call;
    d->bytes = bytes;
    d->matched = 0;
    d->data = malloc(bytes ? bytes : 1);
    if (!d->data) {
        l->oom = 1;
        return;
    }
    if (bytes) memcpy(d->data, data, bytes);
    l->n++;
    l->per_kind[(unsigned)kind & 7]++;
}

static void draw_log_attach(diffcl_context *c, draw_log *l)
{
    c->draw_trace = draw_log_fn;
    c->draw_trace_user = l;
}

static void draw_log_detach(diffcl_context *c)
{
    c->draw_trace = NULL;
    c->draw_trace_user = NULL;
}

static void draw_log_free(draw_log *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->r[i].data);
    free(l->r);
    memset(l, 0, sizeof *l);
}

static int draw_key_cmp(const draw_rec *a, const draw_rec *b)
{
    uint32_t ka[5] = {a->iter, a->kind, a->stream, a->sample, a->call};
    uint32_t kb[5] = {b->iter, b->kind, b->stream, b->sample, b->call};
    for (int i = 0; i < 5; i++)
        if (ka[i] != kb[i]) return ka[i] < kb[i] ? -1 : 1;
    return 0;
}

static int draw_qsort_cmp(const void *a, const void *b)
{
    return draw_key_cmp(a, b);
}

/* Sort the reference by key; returns the number of keys drawn twice (each must be 0: one key,
 * one draw). */
static int draw_log_index(draw_log *ref)
{
    qsort(ref->r, ref->n, sizeof *ref->r, draw_qsort_cmp);
    int dup = 0;
    for (size_t i = 1; i < ref->n; i++)
        if (draw_key_cmp(&ref->r[i - 1], &ref->r[i]) == 0) {
            if (dup < 5)
                fprintf(stderr,
                        "draw key drawn twice: iter %u kind %u stream %#x sample %u call %u\n",
                        ref->r[i].iter, ref->r[i].kind, ref->r[i].stream, ref->r[i].sample,
                        ref->r[i].call);
            dup++;
        }
    return dup;
}

static const char *draw_kind_name(uint32_t k)
{
    switch (k) {
    case DC_DRAW_TIMESTEP: return "timestep";
    case DC_DRAW_NOISE: return "noise";
    case DC_DRAW_DROPOUT: return "dropout mask";
    case DC_DRAW_VOXELS: return "contrastive voxels";
    default: return "?";
    }
}

/* Every record of @p shard against the indexed reference (marking what it matched); returns the
 * number of records that differ or have no reference, printing the first few under @p who. */
static int draw_log_compare(draw_log *ref, const draw_log *shard, const char *who)
{
    int bad = 0;
    for (size_t i = 0; i < shard->n; i++) {
        const draw_rec *s = &shard->r[i];
        draw_rec *hit = bsearch(s, ref->r, ref->n, sizeof *ref->r, draw_qsort_cmp);
        const char *why = !hit ? "not drawn by the single process"
                          : hit->bytes != s->bytes || memcmp(hit->data, s->data, s->bytes)
                              ? "differs from the single process's"
                              : NULL;
        if (hit && !why) hit->matched++;
        if (why) {
            if (bad < 5)
                fprintf(stderr, "%s: iteration %u %s (stream %#x, global sample %u, call %u) %s\n",
                        who, s->iter, draw_kind_name(s->kind), s->stream, s->sample, s->call, why);
            bad++;
        }
    }
    return bad;
}

/* Reference records matched by no shard, or by more than one. */
static int draw_log_unmatched(const draw_log *ref)
{
    int bad = 0;
    for (size_t i = 0; i < ref->n; i++)
        if (ref->r[i].matched != 1) {
            if (bad < 5)
                fprintf(
                    stderr,
                    "iteration %u %s (stream %#x, global sample %u, call %u) matched %d times\n",
                    ref->r[i].iter, draw_kind_name(ref->r[i].kind), ref->r[i].stream,
                    ref->r[i].sample, ref->r[i].call, ref->r[i].matched);
            bad++;
        }
    return bad;
}

#endif
