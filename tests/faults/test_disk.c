/* Suite faults, test disk: full disks and refused writes.
 *
 * Each scenario runs in a forked child, so that a file-size limit (RLIMIT_FSIZE with SIGXFSZ
 * ignored: writes past it fail with EFBIG) or a mount namespace (a small tmpfs: ENOSPC; a
 * read-only tmpfs or bind mount: EROFS) ends with it. The child reports a message through a
 * pipe and its exit status: 0 passed, 1 failed, 77 skipped (no mount namespace, no tmpfs: the
 * test prints "skip: ..." and passes, as the cli suite does for missing formats).
 *
 * Checkpoints (diffcl_trainer_save, diffcl_trainer_run, `diffcl train --resume`): a failed write
 * is DIFFCL_ERR_IO with a message naming the file and the reason, the previous checkpoint keeps
 * its bytes and loads, and no temporary file is left.
 * `diffcl infer` (a folder of NIfTI, PNG and h5 cases, labels, --save-probs and --overlay):
 * each case that failed is named on stderr with the reason, every file under a final name is
 * complete (byte for byte the output of an unconstrained run), no temporary file is left. */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "faults_util.h"
#include "diffcl/checkpoint.h"
#include "diffcl/image_io.h"
#include "diffcl/train.h"

/* ------------------------------------------------------- child scenarios ---- */

typedef int (*scenario_fn)(void *arg, char *msg, size_t n);

/* Run @p fn in a forked child; its exit status (0 pass, 1 fail, 77 skip), its message in @p msg. */
static int in_child(scenario_fn fn, void *arg, char *msg, size_t n)
{
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(p[0]);
        char m[8192] = "";
        int rc = fn(arg, m, sizeof m);
        ssize_t w = write(p[1], m, strlen(m));
        (void)w;
        _exit(rc);
    }
    close(p[1]);
    size_t got = 0;
    ssize_t k;
    while (got + 1 < n && (k = read(p[0], msg + got, n - got - 1)) > 0) got += (size_t)k;
    msg[got] = 0;
    close(p[0]);
    return faults_wait(pid);
}

/* Fail the scenario with a message (in a child: no Check assertions there). */
#define CHILD_CHECK(cond, ...)                                                                     \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            int k_ = snprintf(msg, n, "%s:%d: ", __FILE__, __LINE__);                              \
            if (k_ > 0 && (size_t)k_ < n) snprintf(msg + k_, n - (size_t)k_, __VA_ARGS__);         \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

/* Fail the test unless the scenario passed; print its message; a skip passes with its line. */
static void expect_scenario(const char *what, scenario_fn fn, void *arg)
{
    char msg[8192];
    int rc = in_child(fn, arg, msg, sizeof msg);
    if (rc == 77) {
        printf("skip: %s: %s\n", what, msg);
        return;
    }
    ck_assert_msg(rc == 0, "%s: exit %d: %s", what, rc, msg);
    printf("%s: passed%s%s\n", what, msg[0] ? ": " : "", msg);
}

/* A private mount namespace (the mounts end with the child) with a tmpfs of @p size bytes at
 * @p dir, read-only if asked. 0, or 77 with the reason in @p msg. */
static int private_tmpfs(const char *dir, long long size, int readonly, char *msg, size_t n)
{
    if (unshare(CLONE_NEWNS) != 0) {
        snprintf(msg, n, "no mount namespace (unshare: %s)", strerror(errno));
        return 77;
    }
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
        snprintf(msg, n, "cannot make the mounts private: %s", strerror(errno));
        return 77;
    }
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        snprintf(msg, n, "mkdir %s: %s", dir, strerror(errno));
        return 1;
    }
    char opts[64];
    snprintf(opts, sizeof opts, "size=%lld", size);
    if (mount("tmpfs", dir, "tmpfs", readonly ? MS_RDONLY : 0, opts) != 0) {
        snprintf(msg, n, "cannot mount a tmpfs on %s: %s", dir, strerror(errno));
        return 77;
    }
    return 0;
}

/* In a private mount namespace, make the existing folder @p dir read-only (a bind mount). */
static int private_readonly(const char *dir, char *msg, size_t n)
{
    if (unshare(CLONE_NEWNS) != 0) {
        snprintf(msg, n, "no mount namespace (unshare: %s)", strerror(errno));
        return 77;
    }
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount(dir, dir, NULL, MS_BIND, NULL) != 0 ||
        mount(NULL, dir, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) != 0) {
        snprintf(msg, n, "cannot bind-mount %s read-only: %s", dir, strerror(errno));
        return 77;
    }
    return 0;
}

static void limit_file_size(long long bytes)
{
    signal(SIGXFSZ, SIG_IGN); /* the write fails with EFBIG instead of killing the process */
    struct rlimit rl = {(rlim_t)bytes, (rlim_t)bytes};
    setrlimit(RLIMIT_FSIZE, &rl);
}

static diffcl_context *child_context(void)
{
    diffcl_context_options o = DIFFCL_CONTEXT_OPTIONS_INIT;
    o.n_threads = 1;
    o.log_level = DIFFCL_LOG_ERROR;
    diffcl_context *c = NULL;
    return diffcl_context_create(&o, &c) == DIFFCL_OK ? c : NULL;
}

/* The tiny Diff-CL configuration of the train suite (every loss term active early). */
static diffcl_train_options tiny(const char *out, int64_t iters)
{
    diffcl_train_options o = DIFFCL_TRAIN_OPTIONS_INIT;
    o.dims = 2;
    o.labeled = 2;
    o.phantom_cases = 6;
    o.patch[1] = o.patch[2] = 32;
    o.batch_labeled = 1;
    o.batch_unlabeled = 1;
    o.n_filters = 4;
    o.ds_n_filters = 4;
    o.hfm_levels = 0;
    o.ddim_steps_train = 2;
    o.contrast_voxels = 64;
    o.iters = iters;
    o.warmup_frac = 0.25;
    o.rampup_frac = 0.25;
    o.val_every = 1000000;
    o.out_dir = out;
    return o;
}

static int copy_file(const char *from, const char *to)
{
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    int ok = a && b, c;
    while (ok && (c = fgetc(a)) != EOF) ok = fputc(c, b) != EOF;
    if (a) fclose(a);
    if (b && fclose(b) != 0) ok = 0;
    return ok;
}

/* ---------------------------------------------------------- checkpoints ---- */

typedef struct ckpt_case {
    char root[256];  /* the test's folder */
    char dir[1024];  /* the run folder */
    char copy[1024]; /* the previous last.safetensors, copied outside the folder */
} ckpt_case;

static ckpt_case new_ckpt_case(const char *what)
{
    ckpt_case c;
    snprintf(c.root, sizeof c.root, "%s", faults_tmpdir(what));
    snprintf(c.dir, sizeof c.dir, "%s/run", c.root);
    snprintf(c.copy, sizeof c.copy, "%s/previous.safetensors", c.root);
    ck_assert_int_eq(mkdir(c.dir, 0755), 0);
    return c;
}

/* In the child: a trainer in c->dir and its first last.safetensors (copied to c->copy); then
 * one more step, so that the next save differs. */
static int first_checkpoint(const ckpt_case *c, diffcl_context **ctx, diffcl_trainer **tr,
                            char *last, size_t last_n, char *msg, size_t n)
{
    *ctx = child_context();
    CHILD_CHECK(*ctx, "no context");
    diffcl_train_options o = tiny(c->dir, 3);
    CHILD_CHECK(diffcl_trainer_create(*ctx, &o, tr) == DIFFCL_OK, "trainer: %s",
                diffcl_last_error());
    snprintf(last, last_n, "%s/last.safetensors", c->dir);
    CHILD_CHECK(diffcl_trainer_save(*tr, last) == DIFFCL_OK, "first save: %s", diffcl_last_error());
    CHILD_CHECK(copy_file(last, c->copy), "cannot copy %s", last);
    diffcl_train_stats st = {sizeof st, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    CHILD_CHECK(diffcl_trainer_step(*tr, &st) == DIFFCL_OK, "step: %s", diffcl_last_error());
    return 0;
}

/* A failed save: DIFFCL_ERR_IO naming @p path and @p reason; the previous file unchanged;
 * no temporary file in the folder. */
static int expect_failed_save(diffcl_status s, const char *path, const char *reason,
                              const ckpt_case *c, char *msg, size_t n)
{
    const char *e = diffcl_last_error();
    CHILD_CHECK(s == DIFFCL_ERR_IO, "status %s (%s), wanted DIFFCL_ERR_IO", diffcl_status_string(s),
                e);
    CHILD_CHECK(strstr(e, path) && strstr(e, reason), "message '%s' does not name %s and '%s'", e,
                path, reason);
    char last[1100];
    snprintf(last, sizeof last, "%s/last.safetensors", c->dir);
    CHILD_CHECK(faults_same_bytes(last, c->copy), "%s changed", last);
    char names[1024];
    CHILD_CHECK(faults_names_with(c->dir, ".tmp", names, sizeof names) == 0,
                "temporary files left: %s", names);
    return 0;
}

/* The previous checkpoint resumes (iteration 0) and its networks load. */
static int expect_previous_loads(const ckpt_case *c, char *msg, size_t n)
{
    diffcl_context *ctx = child_context();
    diffcl_trainer *tr = NULL;
    CHILD_CHECK(diffcl_trainer_resume(ctx, c->dir, 0, &tr) == DIFFCL_OK, "resume: %s",
                diffcl_last_error());
    CHILD_CHECK(diffcl_trainer_iteration(tr) == 0, "resumed at iteration %lld, wanted 0",
                (long long)diffcl_trainer_iteration(tr));
    diffcl_trainer_free(tr);
    char last[1100];
    snprintf(last, sizeof last, "%s/last.safetensors", c->dir);
    diffcl_net_options no = DIFFCL_NET_OPTIONS_INIT;
    for (int k = 0; k < 2; k++) {
        diffcl_module *m = NULL;
        no.net = k ? DIFFCL_NET_DS : DIFFCL_NET_CS;
        CHILD_CHECK(diffcl_trainer_load_net(ctx, last, &no, &m) == DIFFCL_OK, "load: %s",
                    diffcl_last_error());
        diffcl_module_free(m);
    }
    diffcl_context_free(ctx);
    return 0;
}

/* EFBIG: last.safetensors rewritten under a file-size limit of half its size, by
 * diffcl_trainer_save and then by diffcl_trainer_run (which writes best first). */
static int scenario_checkpoint_efbig(void *arg, char *msg, size_t n)
{
    const ckpt_case *c = arg;
    diffcl_context *ctx = NULL;
    diffcl_trainer *tr = NULL;
    char last[1100], best[1100];
    int rc = first_checkpoint(c, &ctx, &tr, last, sizeof last, msg, n);
    if (rc) return rc;
    limit_file_size(faults_file_size(last) / 2);
    rc = expect_failed_save(diffcl_trainer_save(tr, last), last, strerror(EFBIG), c, msg, n);
    if (rc) return rc;
    snprintf(best, sizeof best, "%s/best.safetensors", c->dir);
    rc = expect_failed_save(diffcl_trainer_run(tr), best, strerror(EFBIG), c, msg, n);
    if (rc) return rc;
    CHILD_CHECK(!faults_exists(best), "%s exists", best);
    snprintf(msg, n, "%s", diffcl_last_error());
    diffcl_trainer_free(tr);
    diffcl_context_free(ctx);
    return 0;
}

/* EFBIG on log.csv: a limit that the header fits and the rows soon do not. */
static int scenario_log_efbig(void *arg, char *msg, size_t n)
{
    const ckpt_case *c = arg;
    diffcl_context *ctx = child_context();
    CHILD_CHECK(ctx, "no context");
    diffcl_train_options o = tiny(c->dir, 50);
    diffcl_trainer *tr = NULL;
    CHILD_CHECK(diffcl_trainer_create(ctx, &o, &tr) == DIFFCL_OK, "trainer: %s",
                diffcl_last_error());
    limit_file_size(400);
    char log[1100];
    snprintf(log, sizeof log, "%s/log.csv", c->dir);
    diffcl_status s = diffcl_trainer_run(tr);
    const char *e = diffcl_last_error();
    CHILD_CHECK(s == DIFFCL_ERR_IO && strstr(e, log) && strstr(e, strerror(EFBIG)),
                "%s: %s, wanted DIFFCL_ERR_IO naming %s and '%s'", diffcl_status_string(s), e, log,
                strerror(EFBIG));
    CHILD_CHECK(diffcl_trainer_iteration(tr) < 50, "the run went on to iteration %lld",
                (long long)diffcl_trainer_iteration(tr));
    snprintf(msg, n, "%s (at iteration %lld)", e, (long long)diffcl_trainer_iteration(tr));
    diffcl_trainer_free(tr);
    diffcl_context_free(ctx);
    return 0;
}

START_TEST(test_checkpoint_efbig)
{
    ckpt_case c = new_ckpt_case("efbig");
    expect_scenario("checkpoint over RLIMIT_FSIZE", scenario_checkpoint_efbig, &c);
    char msg[4096];
    ck_assert_msg(expect_previous_loads(&c, msg, sizeof msg) == 0, "%s", msg);
    faults_rm_rf(c.root);
    ckpt_case l = new_ckpt_case("log");
    expect_scenario("log.csv over RLIMIT_FSIZE", scenario_log_efbig, &l);
    faults_rm_rf(l.root);
}
END_TEST

/* ENOSPC: the run folder is a tmpfs that holds last.safetensors and half of another. */
static int scenario_checkpoint_enospc(void *arg, char *msg, size_t n)
{
    const ckpt_case *c = arg;
    diffcl_context *ctx = child_context();
    CHILD_CHECK(ctx, "no context");
    /* the checkpoint's size, from a save outside the folder */
    diffcl_train_options o = tiny(c->dir, 3);
    diffcl_trainer *tr = NULL;
    CHILD_CHECK(diffcl_trainer_create(ctx, &o, &tr) == DIFFCL_OK, "trainer: %s",
                diffcl_last_error());
    CHILD_CHECK(diffcl_trainer_save(tr, c->copy) == DIFFCL_OK, "save: %s", diffcl_last_error());
    long long size = faults_file_size(c->copy);
    int rc = private_tmpfs(c->dir, size + size / 2, 0, msg, n);
    if (rc) return rc;
    char last[1100];
    snprintf(last, sizeof last, "%s/last.safetensors", c->dir);
    CHILD_CHECK(diffcl_trainer_save(tr, last) == DIFFCL_OK, "first save: %s", diffcl_last_error());
    CHILD_CHECK(faults_same_bytes(last, c->copy), "the two first saves differ");
    diffcl_train_stats st = {sizeof st, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    CHILD_CHECK(diffcl_trainer_step(tr, &st) == DIFFCL_OK, "step: %s", diffcl_last_error());
    rc = expect_failed_save(diffcl_trainer_save(tr, last), last, strerror(ENOSPC), c, msg, n);
    if (rc) return rc;
    struct statvfs vs;
    CHILD_CHECK(statvfs(c->dir, &vs) == 0, "statvfs: %s", strerror(errno));
    long long free_bytes = (long long)vs.f_bavail * (long long)vs.f_frsize;
    CHILD_CHECK(free_bytes >= size / 2 - 8192,
                "%lld bytes free after the failed save: the "
                "temporary file still takes space",
                free_bytes);
    char saved[4096];
    snprintf(saved, sizeof saved, "%s", diffcl_last_error());
    diffcl_trainer_free(tr);
    diffcl_context_free(ctx);
    rc = expect_previous_loads(c, msg, n); /* inside the namespace: the tmpfs ends with it */
    if (rc) return rc;
    snprintf(msg, n, "%s", saved);
    return 0;
}

START_TEST(test_checkpoint_enospc)
{
    ckpt_case c = new_ckpt_case("enospc");
    expect_scenario("checkpoint on a full tmpfs", scenario_checkpoint_enospc, &c);
    faults_rm_rf(c.root);
}
END_TEST

/* EROFS: the run folder becomes read-only (a bind mount) after the first checkpoint; a new
 * run folder below it cannot be made. */
static int scenario_checkpoint_readonly(void *arg, char *msg, size_t n)
{
    const ckpt_case *c = arg;
    diffcl_context *ctx = NULL;
    diffcl_trainer *tr = NULL;
    char last[1100];
    int rc = first_checkpoint(c, &ctx, &tr, last, sizeof last, msg, n);
    if (rc) return rc;
    rc = private_readonly(c->dir, msg, n);
    if (rc) return rc;
    const char *rofs = strerror(EROFS);
    rc = expect_failed_save(diffcl_trainer_save(tr, last), last, rofs, c, msg, n);
    if (rc) return rc;
    char log[1100];
    snprintf(log, sizeof log, "%s/log.csv", c->dir);
    rc = expect_failed_save(diffcl_trainer_run(tr), log, rofs, c, msg, n);
    if (rc) return rc;
    char sub[1100];
    snprintf(sub, sizeof sub, "%s/sub", c->dir);
    diffcl_train_options o = tiny(sub, 3);
    diffcl_trainer *t2 = NULL;
    diffcl_status s = diffcl_trainer_create(ctx, &o, &t2);
    CHILD_CHECK(
        s == DIFFCL_ERR_IO && strstr(diffcl_last_error(), sub) && strstr(diffcl_last_error(), rofs),
        "a run folder in a read-only folder: %s: %s", diffcl_status_string(s), diffcl_last_error());
    snprintf(msg, n, "%s", diffcl_last_error());
    diffcl_trainer_free(tr);
    diffcl_context_free(ctx);
    return expect_previous_loads(c, msg + strlen(msg), n - strlen(msg));
}

START_TEST(test_checkpoint_readonly)
{
    ckpt_case c = new_ckpt_case("rofs");
    expect_scenario("checkpoint in a read-only folder", scenario_checkpoint_readonly, &c);
    faults_rm_rf(c.root);
}
END_TEST

/* `diffcl train --resume` under RLIMIT_FSIZE: the run stops at its next checkpoint with the
 * reason, last.safetensors keeps its bytes, and a resume without the limit finishes. */
START_TEST(test_train_resume_efbig)
{
    char *root = faults_tmpdir("train");
    char run[1100], err[1100], copy[1100], last[1200];
    snprintf(run, sizeof run, "%s/run", root);
    snprintf(err, sizeof err, "%s/err", root);
    snprintf(copy, sizeof copy, "%s/previous.safetensors", root);
    snprintf(last, sizeof last, "%s/last.safetensors", run);
    const char *train[] = {"train",
                           "--out",
                           run,
                           "--dims",
                           "2",
                           "--patch",
                           "32,32",
                           "--n-filters",
                           "4",
                           "--ds-n-filters",
                           "4",
                           "--no-hfm",
                           "--iters",
                           "2",
                           "--val-every",
                           "1",
                           "--threads",
                           "1",
                           "--phantom-cases",
                           "4",
                           "--labeled",
                           "2",
                           "--val-list",
                           "2",
                           "--batch-labeled",
                           "1",
                           "--batch-unlabeled",
                           "1",
                           "--ddim-steps",
                           "2",
                           NULL};
    faults_spawn how = {0, NULL, NULL, err};
    ck_assert_int_eq(faults_run(train, &how), 0);
    ck_assert(copy_file(last, copy));
    const char *resume[] = {"train", "--resume", run, "--iters", "4", "--threads", "1", NULL};
    how.fsize_limit = faults_file_size(last) / 2;
    int rc = faults_run(resume, &how);
    char *e = faults_read_text(err);
    ck_assert_msg(
        rc == 1 && e && strstr(e, run) && strstr(e, ".safetensors") && strstr(e, strerror(EFBIG)),
        "resume over RLIMIT_FSIZE: exit %d, wanted 1 and the file and reason:\n%s", rc, e ? e : "");
    printf("train --resume over RLIMIT_FSIZE: %s", e);
    free(e);
    ck_assert_msg(faults_same_bytes(last, copy), "%s changed", last);
    char names[1024];
    ck_assert_msg(faults_names_with(run, ".tmp", names, sizeof names) == 0,
                  "temporary files left: %s", names);
    how.fsize_limit = 0;
    rc = faults_run(resume, &how);
    e = faults_read_text(err);
    ck_assert_msg(rc == 0, "resume without the limit: exit %d:\n%s", rc, e ? e : "");
    free(e);
    diffcl_context *ctx = test_context();
    diffcl_trainer *tr = NULL;
    ck_ok(diffcl_trainer_resume(ctx, run, 0, &tr));
    ck_assert_int_eq(diffcl_trainer_iteration(tr), 4);
    diffcl_trainer_free(tr);
    diffcl_context_free(ctx);
    faults_rm_rf(root);
}
END_TEST

/* ---------------------------------------------------------------- infer ---- */

static char infer_root[1024], model_path[1200], input_dir[1200], ref_dir[1200];
static const char *const SUBDIRS[] = {"out", "probs", "overlay"};
#define MAX_CASES 4
static char case_names[MAX_CASES][64]; /* input file names */
static int n_cases;

static void infer_argv(const char **argv, const char *out_root)
{
    static char paths[3][1200];
    for (int k = 0; k < 3; k++) snprintf(paths[k], sizeof paths[k], "%s/%s", out_root, SUBDIRS[k]);
    const char *a[] = {
        "infer",        "--model", model_path,  "--input", input_dir,   "--output", paths[0],
        "--save-probs", paths[1],  "--overlay", paths[2],  "--threads", "1",        NULL};
    for (int i = 0;; i++) {
        argv[i] = a[i];
        if (!a[i]) break;
    }
}

/* A tiny supervised 2-D model and a folder of cases: NIfTI, PNG and h5 where built. */
static void infer_setup(void)
{
    snprintf(infer_root, sizeof infer_root, "%s", faults_tmpdir("infer"));
    char run[1100], err[1100];
    snprintf(run, sizeof run, "%s/model", infer_root);
    snprintf(err, sizeof err, "%s/train.err", infer_root);
    const char *train[] = {"train",
                           "--out",
                           run,
                           "--method",
                           "supervised",
                           "--no-hfm",
                           "--dims",
                           "2",
                           "--patch",
                           "32,32",
                           "--n-filters",
                           "4",
                           "--iters",
                           "1",
                           "--phantom-cases",
                           "3",
                           "--labeled",
                           "2",
                           "--batch-labeled",
                           "1",
                           "--threads",
                           "1",
                           NULL};
    faults_spawn how = {0, NULL, NULL, err};
    ck_assert_int_eq(faults_run(train, &how), 0);
    snprintf(model_path, sizeof model_path, "%s/model.safetensors", run);
    snprintf(input_dir, sizeof input_dir, "%s/in", infer_root);
    ck_assert_int_eq(mkdir(input_dir, 0755), 0);
    diffcl_context *ctx = test_context();
    n_cases = 0;
    for (int k = 0; k < MAX_CASES; k++) {
        const char *ext = k == 1 ? "png" : k == 3 ? "h5" : "nii.gz";
        if (k == 3 && !diffcl_io_has_hdf5()) continue;
        if (k != 1 && k != 3 && !diffcl_io_has_nifti()) continue;
        int64_t shape[2] = {40 + 8 * k, 48};
        diffcl_tensor *x = test_randn(ctx, DIFFCL_F32, 2, shape, 100 + (uint64_t)k), *y = NULL;
        snprintf(case_names[n_cases], sizeof case_names[0], "case%d.%s", k, ext);
        char p[1400];
        snprintf(p, sizeof p, "%s/%s", input_dir, case_names[n_cases]);
        if (k == 1) {
            ck_ok(diffcl_affine(x, 40.0, 128.0, &y));
            ck_ok(diffcl_png_write(y, p, 8));
            diffcl_tensor_free(y);
        } else if (k == 3) {
            const char *names[1] = {"image"};
            const diffcl_tensor *ts[1] = {x};
            ck_ok(diffcl_h5_write(p, names, ts, 1, 4));
        } else {
            ck_ok(diffcl_nifti_write(x, p, NULL));
        }
        diffcl_tensor_free(x);
        n_cases++;
    }
    diffcl_context_free(ctx);
    /* the reference: every output of an unconstrained run */
    snprintf(ref_dir, sizeof ref_dir, "%s/ref", infer_root);
    ck_assert_int_eq(mkdir(ref_dir, 0755), 0);
    const char *argv[32];
    infer_argv(argv, ref_dir);
    snprintf(err, sizeof err, "%s/ref.err", infer_root);
    how.err = err;
    int rc = faults_run(argv, &how);
    ck_assert_msg(rc == 0, "reference infer: exit %d, see %s", rc, err);
}

static void infer_teardown(void)
{
    faults_rm_rf(infer_root);
}

/* The case id of input @p i (its name less the extension). */
static void case_id(int i, char *id, size_t n)
{
    snprintf(id, n, "%.40s", case_names[i]);
    char *dot = strchr(id, '.');
    if (dot) *dot = 0;
}

/* Whether output @p f is complete: the same bytes as the reference @p ref, or for h5 (whose
 * object headers carry the time they were written) the same "label" dataset. */
static int same_output(const char *f, const char *ref)
{
    size_t L = strlen(f);
    if (L < 3 || strcmp(f + L - 3, ".h5")) return faults_same_bytes(f, ref);
    diffcl_context *ctx = child_context();
    diffcl_tensor *a = NULL, *b = NULL;
    int same = ctx && diffcl_h5_read(ctx, f, "label", &a) == DIFFCL_OK &&
               diffcl_h5_read(ctx, ref, "label", &b) == DIFFCL_OK &&
               diffcl_tensor_numel(a) == diffcl_tensor_numel(b) &&
               diffcl_tensor_dtype(a) == diffcl_tensor_dtype(b) &&
               !memcmp(diffcl_tensor_data(a), diffcl_tensor_data(b),
                       (size_t)diffcl_tensor_numel(a) * diffcl_dtype_size(diffcl_tensor_dtype(a)));
    diffcl_tensor_free(a);
    diffcl_tensor_free(b);
    diffcl_context_free(ctx);
    return same;
}

/* What an infer into @p out_root left: every file under a final name equal to the reference's
 * (same_output: so complete), no temporary file; the cases named on stderr (@p err_text) as failed, with
 * @p reason, in @p failed. 0 or 1 with @p msg. */
static int check_infer_outputs(const char *out_root, const char *err_text, const char *reason,
                               int *failed, int *n_failed, char *msg, size_t n)
{
    *n_failed = 0;
    for (int i = 0; i < n_cases; i++) {
        char id[64], line[1600];
        case_id(i, id, sizeof id);
        snprintf(line, sizeof line, "diffcl infer: %s/%s: ", input_dir, case_names[i]);
        const char *at = strstr(err_text, line);
        failed[i] = at != NULL;
        if (!at) continue;
        (*n_failed)++;
        const char *eol = strchr(at, '\n');
        size_t len = eol ? (size_t)(eol - at) : strlen(at);
        char one[2048];
        snprintf(one, sizeof one, "%.*s", (int)(len < sizeof one ? len : sizeof one - 1), at);
        CHILD_CHECK(strstr(one, reason) && strstr(one, out_root),
                    "the error of case %s does not name the file written and '%s': %s", id, reason,
                    one);
    }
    for (int k = 0; k < 3; k++) {
        char dir[1400], names[2048];
        snprintf(dir, sizeof dir, "%s/%s", out_root, SUBDIRS[k]);
        CHILD_CHECK(faults_names_with(dir, ".tmp", names, sizeof names) == 0,
                    "temporary files left in %s: %s", dir, names);
        for (int i = 0; i < n_cases; i++) {
            char id[64], f[2048], ref[2048];
            case_id(i, id, sizeof id);
            const char *ext = strchr(case_names[i], '.') + 1;
            snprintf(f, sizeof f, "%s/%s.%s", dir, id, k == 0 ? ext : k == 1 ? "nii.gz" : "png");
            snprintf(ref, sizeof ref, "%s/%s/%s.%s", ref_dir, SUBDIRS[k], id,
                     k == 0   ? ext
                     : k == 1 ? "nii.gz"
                              : "png");
            if (!faults_exists(f)) {
                CHILD_CHECK(failed[i], "case %s: no %s, and no error named the case", id, f);
                continue;
            }
            CHILD_CHECK(same_output(f, ref),
                        "%s is not the complete file (%lld bytes, "
                        "the unconstrained run wrote %lld)",
                        f, faults_file_size(f), faults_file_size(ref));
        }
    }
    return 0;
}

/* The largest file the reference wrote into @p sub, and the smallest. */
static void ref_sizes(const char *sub, long long *min, long long *max)
{
    *min = -1;
    *max = 0;
    for (int i = 0; i < n_cases; i++) {
        char id[64], f[2048];
        case_id(i, id, sizeof id);
        const char *ext = !strcmp(sub, "out")     ? strchr(case_names[i], '.') + 1
                          : !strcmp(sub, "probs") ? "nii.gz"
                                                  : "png";
        snprintf(f, sizeof f, "%s/%s/%s.%s", ref_dir, sub, id, ext);
        long long s = faults_file_size(f);
        ck_assert_msg(s > 0, "reference output %s missing", f);
        if (s > *max) *max = s;
        if (*min < 0 || s < *min) *min = s;
    }
}

/* diffcl infer with a file-size limit of @p limit bytes; @p all_fail: every case must fail. */
static void infer_with_limit(const char *what, long long limit, int all_fail)
{
    char out[1200], err[1300];
    snprintf(out, sizeof out, "%s/%s", infer_root, what);
    snprintf(err, sizeof err, "%s/%s.err", infer_root, what);
    ck_assert_int_eq(mkdir(out, 0755), 0);
    const char *argv[32];
    infer_argv(argv, out);
    faults_spawn how = {limit, NULL, NULL, err};
    int rc = faults_run(argv, &how);
    char *e = faults_read_text(err);
    ck_assert_msg(rc == 1, "%s: exit %d, wanted 1:\n%s", what, rc, e ? e : "");
    int failed[MAX_CASES], n_failed = 0;
    char msg[4096];
    int bad =
        check_infer_outputs(out, e ? e : "", strerror(EFBIG), failed, &n_failed, msg, sizeof msg);
    printf("infer, RLIMIT_FSIZE %lld bytes: %d of %d cases failed; stderr:\n%s", limit, n_failed,
           n_cases, e ? e : "");
    ck_assert_msg(!bad, "%s: %s", what, msg);
    if (all_fail)
        ck_assert_msg(n_failed == n_cases, "%s: %d of %d cases failed", what, n_failed, n_cases);
    free(e);
}

START_TEST(test_infer_efbig)
{
    long long lmin, lmax, pmin, pmax, omin, omax;
    ref_sizes("out", &lmin, &lmax);
    ref_sizes("probs", &pmin, &pmax);
    ref_sizes("overlay", &omin, &omax);
    printf("reference outputs: labels %lld-%lld bytes, probabilities %lld-%lld, overlays "
           "%lld-%lld\n",
           lmin, lmax, pmin, pmax, omin, omax);
    /* the labels fit, the probabilities do not (every case fails on them) */
    ck_assert_msg(pmin > lmax + 1,
                  "the probability maps (from %lld bytes) must be larger than "
                  "the labels (up to %lld) for this test",
                  pmin, lmax);
    infer_with_limit("labels-fit", lmax + 1, 1);
    /* the largest label (h5 where built) is cut in its middle: libhdf5 1.10.8 crashed at exit
     * after the failed H5Fclose of such a file */
    infer_with_limit("half-largest-label", lmax / 2, 1);
    /* nothing fits: a partial label file under every name */
    infer_with_limit("nothing-fits", lmin / 2, 1);
}
END_TEST

/* ENOSPC: the outputs go to a tmpfs that holds about half of them. */
static int scenario_infer_enospc(void *arg, char *msg, size_t n)
{
    (void)arg;
    char out[1200], err[1300];
    snprintf(out, sizeof out, "%s/full", infer_root);
    snprintf(err, sizeof err, "%s/full.err", infer_root);
    long long pages = 0;
    for (int k = 0; k < 3; k++) {
        char dir[1400];
        snprintf(dir, sizeof dir, "%s/%s", ref_dir, SUBDIRS[k]);
        for (int i = 0; i < n_cases; i++) {
            char id[64], f[2048];
            case_id(i, id, sizeof id);
            const char *ext = strchr(case_names[i], '.') + 1;
            snprintf(f, sizeof f, "%s/%s.%s", dir, id, k == 0 ? ext : k == 1 ? "nii.gz" : "png");
            pages += (faults_file_size(f) + 4095) / 4096;
        }
    }
    int rc = private_tmpfs(out, 4096 * (pages / 2 > 0 ? pages / 2 : 1), 0, msg, n);
    if (rc) return rc;
    const char *argv[32];
    infer_argv(argv, out);
    faults_spawn how = {0, NULL, NULL, err};
    rc = faults_run(argv, &how);
    char *e = faults_read_text(err);
    CHILD_CHECK(rc == 1, "exit %d, wanted 1:\n%s", rc, e ? e : "");
    int failed[MAX_CASES], n_failed = 0;
    rc = check_infer_outputs(out, e ? e : "", strerror(ENOSPC), failed, &n_failed, msg, n);
    if (rc) return rc;
    CHILD_CHECK(n_failed > 0, "no case failed on a tmpfs of %lld pages:\n%s", pages / 2, e);
    snprintf(msg, n, "a tmpfs of %lld of the %lld pages needed: %d of %d cases failed; stderr:\n%s",
             pages / 2, pages, n_failed, n_cases, e);
    free(e);
    return 0;
}

START_TEST(test_infer_enospc)
{
    expect_scenario("infer into a full tmpfs", scenario_infer_enospc, NULL);
}
END_TEST

/* EROFS: infer into an existing read-only folder, and into a new folder inside one. */
static int scenario_infer_readonly(void *arg, char *msg, size_t n)
{
    (void)arg;
    char ro[1200], err[1300];
    snprintf(ro, sizeof ro, "%s/ro", infer_root);
    snprintf(err, sizeof err, "%s/ro.err", infer_root);
    int rc = private_tmpfs(ro, 1 << 20, 0, msg, n);
    if (rc) return rc;
    for (int k = 0; k < 3; k++) {
        char dir[1400];
        snprintf(dir, sizeof dir, "%s/%s", ro, SUBDIRS[k]);
        CHILD_CHECK(mkdir(dir, 0755) == 0, "mkdir %s: %s", dir, strerror(errno));
    }
    if (mount(NULL, ro, NULL, MS_REMOUNT | MS_RDONLY, NULL) != 0) {
        snprintf(msg, n, "cannot remount the tmpfs read-only: %s", strerror(errno));
        return 77;
    }
    const char *argv[32];
    infer_argv(argv, ro);
    faults_spawn how = {0, NULL, NULL, err};
    rc = faults_run(argv, &how);
    char *e = faults_read_text(err);
    CHILD_CHECK(rc == 1, "exit %d, wanted 1:\n%s", rc, e ? e : "");
    int failed[MAX_CASES], n_failed = 0;
    rc = check_infer_outputs(ro, e ? e : "", strerror(EROFS), failed, &n_failed, msg, n);
    if (rc) return rc;
    CHILD_CHECK(n_failed == n_cases, "%d of %d cases failed:\n%s", n_failed, n_cases, e);
    free(e);
    /* a folder to create inside the read-only one */
    char sub[1400];
    snprintf(sub, sizeof sub, "%s/new", ro);
    const char *a2[] = {"infer",    "--model", model_path,  "--input", input_dir,
                        "--output", sub,       "--threads", "1",       NULL};
    rc = faults_run(a2, &how);
    e = faults_read_text(err);
    CHILD_CHECK(rc == 1 && e && strstr(e, sub) && strstr(e, strerror(EROFS)),
                "infer into a new folder in a read-only one: exit %d:\n%s", rc, e ? e : "");
    snprintf(msg, n, "%s", e);
    free(e);
    return 0;
}

START_TEST(test_infer_readonly)
{
    expect_scenario("infer into a read-only folder", scenario_infer_readonly, NULL);
}
END_TEST

int main(int argc, char **argv)
{
    faults_set_tool(argc, argv);
    setvbuf(stdout, NULL, _IOLBF, 0); /* the lines of a test that then fails are kept */
    Suite *s = suite_create("faults");
    TCase *tc = tcase_create("checkpoint");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_checkpoint_efbig);
    tcase_add_test(tc, test_checkpoint_enospc);
    tcase_add_test(tc, test_checkpoint_readonly);
    tcase_add_test(tc, test_train_resume_efbig);
    suite_add_tcase(s, tc);
    TCase *ti = tcase_create("infer");
    tcase_set_timeout(ti, 120);
    tcase_add_unchecked_fixture(ti, infer_setup, infer_teardown);
    tcase_add_test(ti, test_infer_efbig);
    tcase_add_test(ti, test_infer_enospc);
    tcase_add_test(ti, test_infer_readonly);
    suite_add_tcase(s, ti);
    return test_run_suite(s);
}
