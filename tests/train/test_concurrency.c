/* Suite train, two contexts in two threads (issue 22, item 5; docs/conventions.md "Threads and
 * contexts", docs/testing.md "Concurrency"): one thread segments a small 3-D volume with
 * diffcl_segment (a V-Net with HF-Mamba, so FFTW plans are made and run; Gaussian windows and
 * flips), the other trains a few Diff-CL steps (CS with HF-Mamba, DS, the sampler's prefetch
 * thread), each on its own 1-thread context, at the same time. Both must give bit for bit what
 * they give one after the other: the labels and probabilities, the weights of both networks and
 * the losses. CONC_ROUNDS (default 2) sets how many concurrent rounds are compared; under
 * ThreadSanitizer this test is the one that exercises the library's shared state
 * (docs/testing.md). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "test_util.h"
#include "diffcl/infer.h"
#include "diffcl/model.h"
#include "diffcl/train.h"

enum { TRAIN_STEPS = 6 };

/* ------------------------------------------------------------ the two jobs ---- */

typedef struct infer_job {
    diffcl_status s;
    char err[256];
    unsigned char *label, *probs; /* the results' bytes */
    size_t label_bytes, probs_bytes;
} infer_job;

typedef struct train_job {
    diffcl_status s;
    char err[256];
    char dir[64];
    unsigned char *weights; /* every state entry of the CS and the DS, one after the other */
    size_t weights_bytes;
    double loss[TRAIN_STEPS];
} train_job;

static diffcl_context *make_context(void)
{
    diffcl_context_options o = DIFFCL_CONTEXT_OPTIONS_INIT;
    o.n_threads = 1;
    o.log_level = DIFFCL_LOG_WARN;
    diffcl_context *c = NULL;
    return diffcl_context_create(&o, &c) == DIFFCL_OK ? c : NULL;
}

static unsigned char *copy_bytes(diffcl_tensor *t, size_t *bytes)
{
    *bytes = (size_t)diffcl_tensor_numel(t) * diffcl_dtype_size(diffcl_tensor_dtype(t));
    unsigned char *b = malloc(*bytes ? *bytes : 1);
    if (b && *bytes) memcpy(b, diffcl_tensor_data(t), *bytes);
    return b;
}

#define JOB_TRY(job, expr)                                                                         \
    do {                                                                                           \
        if ((job)->s == DIFFCL_OK) {                                                               \
            (job)->s = (expr);                                                                     \
            if ((job)->s != DIFFCL_OK)                                                             \
                snprintf((job)->err, sizeof(job)->err, "%s: %s", #expr, diffcl_last_error());      \
        }                                                                                          \
    } while (0)

static void *run_infer(void *arg)
{
    infer_job *j = arg;
    diffcl_context *c = make_context();
    if (!c) {
        j->s = DIFFCL_ERR_OUT_OF_MEMORY;
        return NULL;
    }
    diffcl_vnet_options vo = DIFFCL_VNET_OPTIONS_INIT;
    vo.dims = 3;
    vo.n_filters = 4;
    vo.hf_mamba_levels = DIFFCL_HFM_DEFAULT_LEVELS;
    vo.seed = 21;
    diffcl_module *net = NULL;
    diffcl_tensor *img = NULL, *label = NULL, *probs = NULL;
    int64_t shape[4] = {1, 20, 40, 40};
    j->s = DIFFCL_OK;
    JOB_TRY(j, diffcl_vnet_create(c, &vo, &net));
    JOB_TRY(j, diffcl_tensor_new(c, DIFFCL_F32, 4, shape, &img));
    JOB_TRY(j, diffcl_tensor_fill_normal(img, diffcl_rng_key_make(8, 1, 0, 0), 0, 1));
    if (j->s == DIFFCL_OK) diffcl_module_train(net, 0);
    diffcl_sliding_window_options so = DIFFCL_SLIDING_WINDOW_OPTIONS_INIT;
    so.patch[0] = 16;
    so.patch[1] = so.patch[2] = 32;
    so.stride[0] = 4;
    so.stride[1] = so.stride[2] = 8;
    so.gaussian = 1;
    so.tta_flips = 1;
    so.batch = 2;
    JOB_TRY(j, diffcl_segment(net, img, &so, &label, &probs));
    if (j->s == DIFFCL_OK) {
        j->label = copy_bytes(label, &j->label_bytes);
        j->probs = copy_bytes(probs, &j->probs_bytes);
    }
    diffcl_tensor_free(img);
    diffcl_tensor_free(label);
    diffcl_tensor_free(probs);
    diffcl_module_free(net);
    diffcl_context_free(c);
    return NULL;
}

static void append_weights(train_job *j, diffcl_module *m)
{
    int n = diffcl_module_state_count(m, DIFFCL_STATE_ALL);
    for (int i = 0; i < n && j->s == DIFFCL_OK; i++) {
        diffcl_tensor *t = NULL;
        JOB_TRY(j, diffcl_module_state_entry(m, DIFFCL_STATE_ALL, i, NULL, &t, NULL));
        if (j->s != DIFFCL_OK) break;
        size_t b = 0;
        unsigned char *w = copy_bytes(t, &b);
        unsigned char *all = w ? realloc(j->weights, j->weights_bytes + b + 1) : NULL;
        if (!all) {
            free(w);
            j->s = DIFFCL_ERR_OUT_OF_MEMORY;
            break;
        }
        memcpy(all + j->weights_bytes, w, b);
        j->weights = all;
        j->weights_bytes += b;
        free(w);
    }
}

static void *run_train(void *arg)
{
    train_job *j = arg;
    diffcl_context *c = make_context();
    if (!c) {
        j->s = DIFFCL_ERR_OUT_OF_MEMORY;
        return NULL;
    }
    diffcl_train_options o = DIFFCL_TRAIN_OPTIONS_INIT;
    o.dims = 2;
    o.labeled = 2;
    o.phantom_cases = 6;
    o.patch[1] = o.patch[2] = 32;
    o.batch_labeled = 2;
    o.batch_unlabeled = 2;
    o.n_filters = 4;
    o.ds_n_filters = 4;
    o.ddim_steps_train = 2;
    o.contrast_voxels = 64;
    o.iters = 20;
    o.warmup_frac = 0;
    o.rampup_frac = 0.5;
    o.val_every = 1000000;
    o.out_dir = j->dir;
    diffcl_trainer *tr = NULL;
    j->s = DIFFCL_OK;
    JOB_TRY(j, diffcl_trainer_create(c, &o, &tr));
    for (int it = 0; it < TRAIN_STEPS && j->s == DIFFCL_OK; it++) {
        diffcl_train_stats st;
        memset(&st, 0, sizeof st);
        st.struct_size = sizeof st;
        JOB_TRY(j, diffcl_trainer_step(tr, &st));
        j->loss[it] = st.loss;
    }
    if (j->s == DIFFCL_OK) append_weights(j, diffcl_trainer_cs(tr));
    if (j->s == DIFFCL_OK) append_weights(j, diffcl_trainer_ds(tr));
    diffcl_trainer_free(tr);
    diffcl_context_free(c);
    return NULL;
}

/* ------------------------------------------------------------------ test ---- */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void jobs_free(infer_job *a, train_job *b)
{
    free(a->label);
    free(a->probs);
    free(b->weights);
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf %s", b->dir);
    ck_assert_int_eq(system(cmd), 0);
}

static void jobs_init(infer_job *a, train_job *b)
{
    memset(a, 0, sizeof *a);
    memset(b, 0, sizeof *b);
    strcpy(b->dir, "/tmp/diffcl_conc_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(b->dir));
}

static void expect_same(const infer_job *a, const train_job *b, const infer_job *ra,
                        const train_job *rb, int round)
{
    ck_assert_msg(a->s == DIFFCL_OK, "round %d, inference: %s", round, a->err);
    ck_assert_msg(b->s == DIFFCL_OK, "round %d, training: %s", round, b->err);
    ck_assert(a->label_bytes == ra->label_bytes && a->probs_bytes == ra->probs_bytes);
    ck_assert_msg(memcmp(a->label, ra->label, a->label_bytes) == 0,
                  "round %d: the labels differ from the sequential run's", round);
    ck_assert_msg(memcmp(a->probs, ra->probs, a->probs_bytes) == 0,
                  "round %d: the probabilities differ from the sequential run's", round);
    for (int it = 0; it < TRAIN_STEPS; it++)
        ck_assert_msg(memcmp(&b->loss[it], &rb->loss[it], sizeof b->loss[it]) == 0,
                      "round %d: step %d's loss %.17g, sequentially %.17g", round, it, b->loss[it],
                      rb->loss[it]);
    ck_assert(b->weights_bytes == rb->weights_bytes && b->weights_bytes > 0);
    ck_assert_msg(memcmp(b->weights, rb->weights, b->weights_bytes) == 0,
                  "round %d: the trained weights differ from the sequential run's", round);
}

START_TEST(test_two_contexts_two_threads)
{
    /* one after the other, each in a thread of its own */
    infer_job ra;
    train_job rb;
    jobs_init(&ra, &rb);
    pthread_t th;
    double t0 = now();
    ck_assert_int_eq(pthread_create(&th, NULL, run_infer, &ra), 0);
    pthread_join(th, NULL);
    double t1 = now();
    ck_assert_int_eq(pthread_create(&th, NULL, run_train, &rb), 0);
    pthread_join(th, NULL);
    double t2 = now();
    ck_assert_msg(ra.s == DIFFCL_OK, "inference: %s", ra.err);
    ck_assert_msg(rb.s == DIFFCL_OK, "training: %s", rb.err);
    /* the same at the same time */
    const char *env = getenv("CONC_ROUNDS");
    int rounds = env && atoi(env) > 0 ? atoi(env) : 2;
    double t3 = now();
    for (int round = 0; round < rounds; round++) {
        infer_job a;
        train_job b;
        jobs_init(&a, &b);
        pthread_t ta, tb;
        ck_assert_int_eq(pthread_create(&tb, NULL, run_train, &b), 0);
        ck_assert_int_eq(pthread_create(&ta, NULL, run_infer, &a), 0);
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
        expect_same(&a, &b, &ra, &rb, round);
        jobs_free(&a, &b);
    }
    fprintf(stderr,
            "%d concurrent rounds: labels, probabilities (%zu bytes), %d losses and %zu bytes of "
            "weights as one after the other (sequentially: inference %.2f s, training %.2f s; "
            "a concurrent round %.2f s)\n",
            rounds, ra.probs_bytes, TRAIN_STEPS, rb.weights_bytes, t1 - t0, t2 - t1,
            (now() - t3) / rounds);
    jobs_free(&ra, &rb);
}
END_TEST

int main(void)
{
    Suite *su = suite_create("concurrency");
    TCase *tc = tcase_create("concurrency");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_two_contexts_two_threads);
    suite_add_tcase(su, tc);
    return test_run_suite(su);
}
