/* Data-parallel training over MPI: gradient all-reduce buckets started from the
 * gradient-ready hooks, sharding of the sampler's global batch, prototypes over all ranks,
 * and the trainer's public entry points (include/diffcl/distributed.h). Everything that
 * touches MPI is behind DIFFCL_HAVE_MPI (meson feature `mpi`); without it the public
 * functions return DIFFCL_ERR_UNSUPPORTED and a trainer never has a dc_dist. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diffcl_config.h"
#include "train/distributed_internal.h"
#include "train/trainer_internal.h"

#if DIFFCL_HAVE_MPI
#include <mpi.h>
#endif

int diffcl_mpi_available(void)
{
    return DIFFCL_HAVE_MPI ? 1 : 0;
}

/* ------------------------------------------------------------ sharding ---- */

/* New tensor made of the rows rows[0..n) of src along axis 0. */
static diffcl_status take_rows(const diffcl_tensor *src, const int64_t *rows, int64_t n,
                               diffcl_tensor **out)
{
    diffcl_tensor *c = dc_contiguous(src);
    if (!c) return DIFFCL_ERR_OUT_OF_MEMORY;
    int64_t shape[DIFFCL_MAX_DIMS];
    memcpy(shape, c->shape, sizeof shape);
    shape[0] = n;
    diffcl_tensor *t = dc_tensor_empty(c->ctx, c->dtype, c->ndim, shape);
    if (!t) {
        diffcl_tensor_free(c);
        return DIFFCL_ERR_OUT_OF_MEMORY;
    }
    size_t row =
        (size_t)(c->shape[0] ? dc_numel(c) / c->shape[0] : 0) * diffcl_dtype_size(c->dtype);
    for (int64_t k = 0; k < n; k++)
        memcpy((char *)dc_data(t) + (size_t)k * row,
               (const char *)dc_data(c) + (size_t)rows[k] * row, row);
    diffcl_tensor_free(c);
    *out = t;
    return DIFFCL_OK;
}

diffcl_status dc_dist_shard(int rank, int size, int bl, int bu, const diffcl_tensor *image,
                            const diffcl_tensor *label, diffcl_tensor **image_out,
                            diffcl_tensor **label_out)
{
    DC_CHECK_ARG(image && image_out && size >= 1 && rank >= 0 && rank < size && bl >= 0 && bu >= 0,
                 "dc_dist_shard: bad arguments");
    int64_t gl = (int64_t)size * bl, gu = (int64_t)size * bu;
    if (image->shape[0] != gl + gu || (label && label->shape[0] != gl))
        return dc_error(
            DIFFCL_ERR_SHAPE,
            "sharding: the global batch has %lld images / %lld labels, expected %lld / %lld",
            (long long)image->shape[0], label ? (long long)label->shape[0] : -1LL,
            (long long)(gl + gu), (long long)gl);
    int64_t *rows = dc_malloc((size_t)(bl + bu + 1) * sizeof *rows);
    if (!rows) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "sharding: out of memory");
    /* labeled r, r+S, ...; then unlabeled gl + r, gl + r + S, ... */
    for (int k = 0; k < bl; k++) rows[k] = rank + (int64_t)k * size;
    for (int k = 0; k < bu; k++) rows[bl + k] = gl + rank + (int64_t)k * size;
    diffcl_status s = take_rows(image, rows, bl + bu, image_out);
    if (s == DIFFCL_OK && label && label_out) {
        s = take_rows(label, rows, bl, label_out);
        if (s != DIFFCL_OK) {
            diffcl_tensor_free(*image_out);
            *image_out = NULL;
        }
    }
    free(rows);
    return s;
}

#if DIFFCL_HAVE_MPI
/* ----------------------------------------------------------------- MPI ---- */

typedef struct bucket {
    int first, count; /* parameters [first, first + count) of the bucket order */
    int64_t n;        /* floats: the parameters' elements, then one has-grad flag each */
    float *buf;
    int ready;
    int launched;
} bucket;

typedef struct hook_arg {
    dc_dist *d;
    int index; /* position in the bucket order */
} hook_arg;

struct dc_dist {
    MPI_Comm comm;
    int rank, size;
    int n_params;
    diffcl_tensor **
        params; /* bucket order: reverse of registration (backward reaches the last layers first) */
    int *bucket_of;
    int64_t *offset; /* in the bucket's buffer */
    char *got;
    hook_arg *args;
    bucket *b;
    MPI_Request *reqs; /* one per bucket, contiguous for MPI_Testall */
    int n_buckets, next_launch, active, from_hooks;
    int64_t bytes;
    diffcl_status hook_status;
};

static diffcl_status mpi_fail(int rc, const char *what)
{
    char msg[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return dc_error(DIFFCL_ERR_DISTRIBUTED,
                    "MPI: %s failed: %s (a rank may have died; the last checkpoint is kept)", what,
                    msg);
}

int dc_dist_rank(const dc_dist *d)
{
    return d ? d->rank : 0;
}
int dc_dist_size(const dc_dist *d)
{
    return d ? d->size : 1;
}
int64_t dc_dist_bytes(const dc_dist *d)
{
    return d ? d->bytes : 0;
}

static void launch_ready(dc_dist *d)
{
    /* in bucket order on every rank, whatever order the hooks fired in */
    while (d->next_launch < d->n_buckets &&
           d->b[d->next_launch].ready == d->b[d->next_launch].count) {
        int k = d->next_launch++;
        bucket *b = &d->b[k];
        int rc = MPI_Iallreduce(MPI_IN_PLACE, b->buf, (int)b->n, MPI_FLOAT, MPI_SUM, d->comm,
                                &d->reqs[k]);
        if (rc != MPI_SUCCESS && d->hook_status == DIFFCL_OK)
            d->hook_status = mpi_fail(rc, "MPI_Iallreduce");
        b->launched = 1;
    }
}

static void copy_grad(dc_dist *d, int i)
{
    diffcl_tensor *p = d->params[i];
    bucket *b = &d->b[d->bucket_of[i]];
    float *dst = b->buf + d->offset[i];
    int64_t n = dc_numel(p);
    diffcl_tensor *g = p->grad ? dc_contiguous(p->grad) : NULL;
    if (g)
        memcpy(dst, dc_f32(g), (size_t)n * sizeof(float));
    else
        memset(dst, 0, (size_t)n * sizeof(float));
    /* the flag slots follow the elements of the whole bucket */
    b->buf[b->n - b->count + (i - b->first)] = g ? 1.0f : 0.0f;
    diffcl_tensor_free(g);
    d->got[i] = 1;
    b->ready++;
}

static void grad_ready(diffcl_tensor *param, void *user)
{
    hook_arg *a = user;
    dc_dist *d = a->d;
    (void)param;
    if (!d->active || d->got[a->index]) return;
    copy_grad(d, a->index);
    launch_ready(d);
    if (d->next_launch > 0) {
        int flag; /* let the library progress the launched reductions */
        MPI_Testall(d->next_launch, d->reqs, &flag, MPI_STATUSES_IGNORE);
    }
}

void dc_dist_free(dc_dist *d)
{
    if (!d) return;
    for (int i = 0; i < d->n_params; i++) diffcl_tensor_clear_grad_hooks(d->params[i]);
    for (int k = 0; k < d->n_buckets; k++) free(d->b[k].buf);
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin && d->comm != MPI_COMM_NULL) MPI_Comm_free(&d->comm);
    free(d->b);
    free(d->reqs);
    free(d->params);
    free(d->bucket_of);
    free(d->offset);
    free(d->got);
    free(d->args);
    free(d);
}

diffcl_status dc_dist_create(void *comm_ptr, diffcl_tensor *const *params, int n_params,
                             dc_dist **out)
{
    DC_CHECK_ARG(out && comm_ptr && (params || n_params == 0), "dc_dist_create: NULL argument");
    *out = NULL;
    int init = 0;
    MPI_Initialized(&init);
    if (!init)
        return dc_error(DIFFCL_ERR_STATE,
                        "MPI is not initialised (call MPI_Init before attaching a communicator)");
    for (int i = 0; i < n_params; i++)
        if (params[i]->dtype != DIFFCL_F32)
            return dc_error(DIFFCL_ERR_DTYPE,
                            "data-parallel training needs F32 parameters (parameter %d is not)", i);
    dc_dist *d = dc_calloc_raw(1, sizeof *d);
    if (!d) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "dc_dist_create: out of memory");
    d->comm = MPI_COMM_NULL;
    int rc = MPI_Comm_dup(*(MPI_Comm *)comm_ptr, &d->comm);
    if (rc != MPI_SUCCESS) {
        free(d);
        return mpi_fail(rc, "MPI_Comm_dup");
    }
    MPI_Comm_set_errhandler(d->comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(d->comm, &d->rank);
    MPI_Comm_size(d->comm, &d->size);
    d->n_params = n_params;
    size_t np = n_params > 0 ? (size_t)n_params : 1;
    d->params = dc_calloc_raw(np, sizeof *d->params);
    d->bucket_of = dc_calloc_raw(np, sizeof *d->bucket_of);
    d->offset = dc_calloc_raw(np, sizeof *d->offset);
    d->got = dc_calloc_raw(np, 1);
    d->args = dc_calloc_raw(np, sizeof *d->args);
    d->b = dc_calloc_raw(np, sizeof *d->b);
    d->reqs = dc_calloc_raw(np, sizeof *d->reqs);
    if (!d->reqs || !d->params || !d->bucket_of || !d->offset || !d->got || !d->args || !d->b) {
        dc_dist_free(d);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "dc_dist_create: out of memory");
    }
    /* buckets of about DIFFCL_MPI_BUCKET_MB (default 4) MiB in reverse registration order */
    double mb = getenv("DIFFCL_MPI_BUCKET_MB") ? atof(getenv("DIFFCL_MPI_BUCKET_MB")) : 4.0;
    int64_t cap = (int64_t)(mb > 0 ? mb * 262144.0 : 1048576.0);
    for (int i = 0; i < n_params; i++) d->params[i] = params[n_params - 1 - i];
    int64_t fill = 0;
    for (int i = 0; i < n_params; i++) {
        int64_t n = dc_numel(d->params[i]);
        if (d->n_buckets == 0 || (fill > 0 && fill + n > cap)) {
            d->b[d->n_buckets].first = i;
            d->n_buckets++;
            fill = 0;
        }
        bucket *b = &d->b[d->n_buckets - 1];
        d->bucket_of[i] = d->n_buckets - 1;
        d->offset[i] = fill;
        b->count++;
        fill += n;
        b->n = fill;
        d->bytes += n * (int64_t)sizeof(float);
    }
    diffcl_status s = DIFFCL_OK;
    for (int k = 0; k < d->n_buckets && s == DIFFCL_OK; k++) {
        d->b[k].n += d->b[k].count; /* the has-grad flags */
        d->reqs[k] = MPI_REQUEST_NULL;
        d->b[k].buf = dc_malloc((size_t)d->b[k].n * sizeof(float));
        if (!d->b[k].buf)
            s = dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "dc_dist_create: out of memory for the buckets");
    }
    for (int i = 0; i < n_params && s == DIFFCL_OK; i++) {
        d->args[i].d = d;
        d->args[i].index = i;
        s = diffcl_tensor_add_grad_hook(d->params[i], grad_ready, &d->args[i]);
    }
    if (s != DIFFCL_OK) {
        dc_dist_free(d);
        return s;
    }
    *out = d;
    return DIFFCL_OK;
}

diffcl_status dc_dist_broadcast(dc_dist *d, diffcl_tensor *extra)
{
    if (!d) return DIFFCL_OK;
    for (int i = 0; i < d->n_params; i++) {
        int rc =
            MPI_Bcast(dc_f32(d->params[i]), (int)dc_numel(d->params[i]), MPI_FLOAT, 0, d->comm);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Bcast of the parameters");
    }
    if (extra) {
        if (extra->dtype != DIFFCL_F32 || !dc_is_contiguous(extra))
            return dc_error(DIFFCL_ERR_DTYPE,
                            "dc_dist_broadcast: the extra tensor must be contiguous F32");
        int rc = MPI_Bcast(dc_f32(extra), (int)dc_numel(extra), MPI_FLOAT, 0, d->comm);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Bcast of the memory bank");
    }
    return DIFFCL_OK;
}

void dc_dist_begin_backward(dc_dist *d)
{
    if (!d) return;
    memset(d->got, 0, (size_t)d->n_params);
    for (int k = 0; k < d->n_buckets; k++) {
        d->b[k].ready = 0;
        d->b[k].launched = 0;
        d->reqs[k] = MPI_REQUEST_NULL;
    }
    d->next_launch = 0;
    d->hook_status = DIFFCL_OK;
    d->active = 1;
}

void dc_dist_bucket_stats(const dc_dist *d, int *from_hooks, int *total)
{
    if (from_hooks) *from_hooks = d ? d->from_hooks : 0;
    if (total) *total = d ? d->n_buckets : 0;
}

diffcl_status dc_dist_finish_backward(dc_dist *d)
{
    if (!d) return DIFFCL_OK;
    d->active = 0;
    d->from_hooks = d->next_launch;
    /* parameters whose hook did not fire (no gradient on this rank) contribute zeros */
    for (int i = 0; i < d->n_params; i++)
        if (!d->got[i]) copy_grad(d, i);
    launch_ready(d);
    diffcl_status s = d->hook_status;
    for (int k = 0; k < d->n_buckets; k++) {
        int rc = MPI_Wait(&d->reqs[k], MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS && s == DIFFCL_OK)
            s = mpi_fail(rc, "waiting for the gradient all-reduce");
    }
    if (s != DIFFCL_OK) return s;
    float inv = 1.0f / (float)d->size;
    for (int i = 0; i < d->n_params; i++) {
        diffcl_tensor *p = d->params[i];
        bucket *b = &d->b[d->bucket_of[i]];
        float flag = b->buf[b->n - b->count + (i - b->first)];
        if (flag == 0.0f) { /* no rank had a gradient: leave none, as one process would */
            diffcl_tensor_zero_grad(p);
            continue;
        }
        if (!p->grad || !dc_is_contiguous(p->grad) || p->grad->dtype != DIFFCL_F32) {
            diffcl_tensor_zero_grad(p);
            p->grad = dc_tensor_new(p->ctx, DIFFCL_F32, p->ndim, p->shape);
            if (!p->grad) return DIFFCL_ERR_OUT_OF_MEMORY;
        }
        const float *src = b->buf + d->offset[i];
        float *g = dc_f32(p->grad);
        int64_t n = dc_numel(p);
        for (int64_t j = 0; j < n; j++) g[j] = src[j] * inv;
    }
    return DIFFCL_OK;
}

diffcl_status dc_dist_agree(dc_dist *d, diffcl_status local, int64_t iteration, double *vals, int n)
{
    if (!d) return local;
    double buf[32];
    if (n > 31) n = 31;
    buf[0] = local == DIFFCL_OK ? 0.0 : 1.0;
    for (int i = 0; i < n; i++) buf[1 + i] = vals[i];
    int rc = MPI_Allreduce(MPI_IN_PLACE, buf, n + 1, MPI_DOUBLE, MPI_SUM, d->comm);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Allreduce of the step status");
    for (int i = 0; i < n; i++) vals[i] = buf[1 + i] / d->size;
    if (local != DIFFCL_OK) return local;
    if (buf[0] > 0)
        return dc_error(
            DIFFCL_ERR_NUMERIC,
            "iteration %lld: %d of %d ranks failed (non-finite loss or error; see their "
            "messages); stopping before the update",
            (long long)iteration, (int)buf[0], d->size);
    return DIFFCL_OK;
}

diffcl_status dc_dist_prototypes(dc_dist *d, const diffcl_tensor *features,
                                 const diffcl_tensor *labels, int n_classes, diffcl_tensor *protos,
                                 diffcl_tensor *counts)
{
    if (!d) return DIFFCL_OK;
    int64_t N = features->shape[0], F = features->shape[1],
            V = N && F ? dc_numel(features) / (N * F) : 0;
    if (dc_numel(labels) != N * V || protos->shape[0] != n_classes || protos->shape[1] != F)
        return dc_error(DIFFCL_ERR_SHAPE,
                        "cross-rank prototypes: features %s, labels %s, prototypes %s do not match",
                        dc_shape_str(features), dc_shape_str(labels), dc_shape_str(protos));
    diffcl_tensor *fc = dc_contiguous(features), *lc = dc_contiguous(labels), *pc = NULL;
    size_t m = (size_t)n_classes * (size_t)(F + 1);
    double *acc = dc_calloc_raw(m, sizeof *acc);
    diffcl_status s = fc && lc && acc ? DIFFCL_OK : DIFFCL_ERR_OUT_OF_MEMORY;
    if (s == DIFFCL_OK) {
        double *cnt = acc + (size_t)n_classes * (size_t)F;
        for (int64_t n = 0; n < N; n++)
            for (int64_t v = 0; v < V; v++) {
                int64_t idx = n * V + v, c;
                switch (lc->dtype) {
                case DIFFCL_U8: c = ((const uint8_t *)dc_data(lc))[idx]; break;
                case DIFFCL_I32: c = ((const int32_t *)dc_data(lc))[idx]; break;
                default: c = ((const int64_t *)dc_data(lc))[idx]; break;
                }
                if (c < 0 || c >= n_classes) continue;
                cnt[c] += 1.0;
                for (int64_t f = 0; f < F; f++) {
                    size_t at = (size_t)((n * F + f) * V + v);
                    acc[c * F + f] +=
                        fc->dtype == DIFFCL_F64 ? dc_f64(fc)[at] : (double)dc_f32(fc)[at];
                }
            }
        int rc = MPI_Allreduce(MPI_IN_PLACE, acc, (int)m, MPI_DOUBLE, MPI_SUM, d->comm);
        if (rc != MPI_SUCCESS) s = mpi_fail(rc, "MPI_Allreduce of the prototypes");
    }
    if (s == DIFFCL_OK) {
        const double *cnt = acc + (size_t)n_classes * (size_t)F;
        for (int c = 0; c < n_classes; c++) {
            double nrm = 0;
            for (int64_t f = 0; f < F; f++) nrm += acc[c * F + f] * acc[c * F + f];
            nrm = sqrt(nrm);
            for (int64_t f = 0; f < F; f++) {
                double v =
                    cnt[c] > 0 && nrm > 0 ? acc[c * F + f] / (nrm > 1e-12 ? nrm : 1e-12) : 0.0;
                if (protos->dtype == DIFFCL_F64)
                    dc_f64(protos)[c * F + f] = v;
                else
                    dc_f32(protos)[c * F + f] = (float)v;
            }
            if (counts) dc_f64(counts)[c] = cnt[c];
        }
    }
    diffcl_tensor_free(pc);
    diffcl_tensor_free(fc);
    diffcl_tensor_free(lc);
    free(acc);
    return s;
}

/* ------------------------------------------------------- public, MPI ---- */

static int g_we_initialised = 0;

static int under_launcher(void)
{
    const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK",
                          "MPI_LOCALNRANKS"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
        if (getenv(vars[i])) return 1;
    return 0;
}

diffcl_status diffcl_mpi_launch_init(int *launched, int *rank, int *size)
{
    DC_CHECK_ARG(launched, "diffcl_mpi_launch_init: launched is NULL");
    *launched = 0;
    if (rank) *rank = 0;
    if (size) *size = 1;
    int init = 0;
    MPI_Initialized(&init);
    if (!init) {
        if (!under_launcher()) return DIFFCL_OK;
        int provided = 0;
        int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Init_thread");
        g_we_initialised = 1;
    }
    *launched = 1;
    if (rank) MPI_Comm_rank(MPI_COMM_WORLD, rank);
    if (size) MPI_Comm_size(MPI_COMM_WORLD, size);
    return DIFFCL_OK;
}

void diffcl_mpi_abort(int code)
{
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (init && !fin) MPI_Abort(MPI_COMM_WORLD, code);
}

void diffcl_mpi_launch_finalize(void)
{
    int fin = 0;
    MPI_Finalized(&fin);
    if (g_we_initialised && !fin) MPI_Finalize();
    g_we_initialised = 0;
}

diffcl_status diffcl_trainer_use_mpi_world(diffcl_trainer *tr)
{
    DC_CHECK_ARG(tr, "diffcl_trainer_use_mpi_world: trainer is NULL");
    int init = 0, size = 1;
    MPI_Initialized(&init);
    if (!init) return DIFFCL_OK;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size <= 1) return DIFFCL_OK;
    MPI_Comm world = MPI_COMM_WORLD;
    return diffcl_trainer_set_mpi_comm(tr, &world);
}

diffcl_status diffcl_trainer_set_mpi_comm(diffcl_trainer *tr, void *comm_ptr)
{
    DC_CHECK_ARG(tr && comm_ptr, "diffcl_trainer_set_mpi_comm: NULL argument");
    int n = diffcl_optimizer_num_params(tr->opt);
    diffcl_tensor **params = dc_calloc_raw(n > 0 ? (size_t)n : 1, sizeof *params);
    if (!params)
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "diffcl_trainer_set_mpi_comm: out of memory");
    for (int i = 0; i < n; i++) params[i] = diffcl_optimizer_param(tr->opt, i);
    dc_dist *d = NULL;
    diffcl_status s = dc_dist_create(comm_ptr, params, n, &d);
    free(params);
    if (s == DIFFCL_OK) s = dc_dist_broadcast(d, tr->bank);
    /* the global batch's sampler and this rank's shard, its draws keyed by global sample */
    if (s == DIFFCL_OK) s = dc_trainer_set_shard(tr, d->rank, d->size);
    if (s != DIFFCL_OK) {
        dc_dist_free(d);
        return s;
    }
    dc_dist_free(tr->dist);
    tr->dist = d;
    return DIFFCL_OK;
}

#else /* !DIFFCL_HAVE_MPI */

int dc_dist_rank(const dc_dist *d)
{
    (void)d;
    return 0;
}
int dc_dist_size(const dc_dist *d)
{
    (void)d;
    return 1;
}
int64_t dc_dist_bytes(const dc_dist *d)
{
    (void)d;
    return 0;
}
void dc_dist_bucket_stats(const dc_dist *d, int *from_hooks, int *total)
{
    (void)d;
    if (from_hooks) *from_hooks = 0;
    if (total) *total = 0;
}
void dc_dist_free(dc_dist *d)
{
    (void)d;
}
void dc_dist_begin_backward(dc_dist *d)
{
    (void)d;
}
diffcl_status dc_dist_finish_backward(dc_dist *d)
{
    (void)d;
    return DIFFCL_OK;
}
diffcl_status dc_dist_broadcast(dc_dist *d, diffcl_tensor *extra)
{
    (void)d;
    (void)extra;
    return DIFFCL_OK;
}
diffcl_status dc_dist_agree(dc_dist *d, diffcl_status local, int64_t iteration, double *vals, int n)
{
    (void)d;
    (void)iteration;
    (void)vals;
    (void)n;
    return local;
}
diffcl_status dc_dist_prototypes(dc_dist *d, const diffcl_tensor *features,
                                 const diffcl_tensor *labels, int n_classes, diffcl_tensor *protos,
                                 diffcl_tensor *counts)
{
    (void)d;
    (void)features;
    (void)labels;
    (void)n_classes;
    (void)protos;
    (void)counts;
    return DIFFCL_OK;
}
diffcl_status dc_dist_create(void *comm_ptr, diffcl_tensor *const *params, int n_params,
                             dc_dist **out)
{
    (void)comm_ptr;
    (void)params;
    (void)n_params;
    if (out) *out = NULL;
    return dc_error(DIFFCL_ERR_UNSUPPORTED,
                    "libdiffcl was built without MPI (meson setup -Dmpi=enabled)");
}
diffcl_status diffcl_trainer_set_mpi_comm(diffcl_trainer *tr, void *comm_ptr)
{
    (void)tr;
    (void)comm_ptr;
    return dc_error(DIFFCL_ERR_UNSUPPORTED,
                    "diffcl_trainer_set_mpi_comm: libdiffcl was built without MPI "
                    "(meson setup -Dmpi=enabled)");
}
diffcl_status diffcl_mpi_launch_init(int *launched, int *rank, int *size)
{
    if (launched) *launched = 0;
    if (rank) *rank = 0;
    if (size) *size = 1;
    return DIFFCL_OK;
}
void diffcl_mpi_launch_finalize(void) {}
void diffcl_mpi_abort(int code)
{
    (void)code;
}
diffcl_status diffcl_trainer_use_mpi_world(diffcl_trainer *tr)
{
    (void)tr;
    return DIFFCL_OK;
}

#endif /* DIFFCL_HAVE_MPI */

int diffcl_trainer_rank(const diffcl_trainer *tr)
{
    return tr ? dc_dist_rank(tr->dist) : 0;
}
int diffcl_trainer_world_size(const diffcl_trainer *tr)
{
    return tr ? dc_dist_size(tr->dist) : 1;
}
int64_t diffcl_trainer_allreduce_bytes(const diffcl_trainer *tr)
{
    return tr ? dc_dist_bytes(tr->dist) : 0;
}
