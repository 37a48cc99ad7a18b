/* Suite faults, test kill: `diffcl train` killed with SIGKILL at seeded moments, then resumed.
 *
 * A tiny 2-D Diff-CL run on the phantom (HF-Mamba CS, 1 thread, a checkpoint every 2 of 12
 * iterations) is trained once straight, as the reference. Then each of RUNS runs is killed:
 *  - run 0 right after it starts training (log.csv created): before any checkpoint;
 *  - run 1 inside the first checkpoint write (the first temporary file);
 *  - runs 2-5 inside the j-th checkpoint write, j drawn from the seed over the reference's writes;
 *  - runs 6-7 at a time drawn uniformly over the reference's duration.
 * Inside a write means: between the creation of the temporary file and its rename, which the
 * test-only DIFFCL_TEST_CHECKPOINT_PAUSE_MS holds open for PAUSE_MS; the delay after the
 * creation is drawn from [0, PAUSE_MS). Runs 2-7 are, by a seeded coin, killed a second time,
 * inside a write of the resumed run. A kill fell inside a write when the killed process's
 * temporary file is still there; the test asserts at least 5 such kills.
 *
 * After every kill: last/best/model.safetensors, where they exist, load (container, CS, DS;
 * model.safetensors also by diffcl_model_load). With last.safetensors, `diffcl train --resume`
 * continues; without (killed before the first checkpoint was complete) the resume is refused
 * with an error naming last.safetensors and the run starts again with `diffcl train --out`.
 * Once finished, the run's last, best and model.safetensors hold exactly the reference's
 * tensors (byte for byte), log.csv has the reference's rows (all fields but the seconds), and
 * no temporary file is left. DIFFCL_FAULTS_SEED changes the seed (default 22). */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "faults_util.h"

#define PAUSE_MS 60
#define STR_(x) #x
#define STR(x) STR_(x)
#define RUNS 8

/* The run: 2-D, HF-Mamba CS, a checkpoint every 2 iterations, every loss term active early. */
#define TRAIN_OPTS                                                                                 \
    "--dims 2 --patch 32,32 --n-filters 4 --ds-n-filters 4 --iters 12 --val-every 2 --threads 1 "  \
    "--phantom-cases 4 --labeled 2 --val-list 2 --batch-labeled 1 --batch-unlabeled 1 --lr 0.05 "  \
    "--ddim-steps 2 --contrast-voxels 64"

typedef enum kill_mode { KILL_NEVER, KILL_AT_TIME, KILL_AT_START, KILL_IN_WRITE } kill_mode;

typedef struct kill_plan {
    kill_mode mode;
    int write;       /* KILL_IN_WRITE: the index of the write (0: the first temporary file) */
    double delay_ms; /* after the event (or the start, KILL_AT_TIME) */
} kill_plan;

static const char *mode_name(kill_mode m)
{
    switch (m) {
    case KILL_AT_TIME: return "at start";
    case KILL_AT_START: return "at log.csv";
    case KILL_IN_WRITE: return "in a write";
    default: return "never";
    }
}

static diffcl_context *ctx;
static void setup(void)
{
    ctx = test_context();
}
static void teardown(void)
{
    diffcl_context_free(ctx);
}

/* argv of `diffcl train --out dir OPTS` or `diffcl train --resume dir --threads 1`. */
static void train_argv(const char **argv, const char *dir, int resume)
{
    int n = 0;
    argv[n++] = "train";
    argv[n++] = resume ? "--resume" : "--out";
    argv[n++] = dir;
    if (resume) {
        argv[n++] = "--threads";
        argv[n++] = "1";
    } else {
        static char opts[] = TRAIN_OPTS;
        static char *words[48];
        static int n_words;
        for (char *w = n_words ? NULL : strtok(opts, " "); w; w = strtok(NULL, " "))
            words[n_words++] = w;
        for (int i = 0; i < n_words; i++) argv[n++] = words[i];
    }
    argv[n] = NULL;
}

/* Run @p argv with the pause, watching @p dir, and kill it as @p p says. Returns 1 when it was
 * killed (*pid_out: its pid), 0 when it ended first (*rc: its exit code). *writes: the
 * temporary checkpoint files it created; *at_ms: when it ended or was killed. */
static int run_and_kill(const char *dir, const char *const *argv, const kill_plan *p,
                        const char *err, int *rc, pid_t *pid_out, int *writes, double *at_ms)
{
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_ge(inotify_add_watch(fd, dir, IN_CREATE), 0);
    const char *env[] = {"DIFFCL_TEST_CHECKPOINT_PAUSE_MS=" STR(PAUSE_MS), NULL};
    faults_spawn how = {0, p->mode == KILL_NEVER ? NULL : env, NULL, err};
    double t0 = faults_now_ms();
    pid_t pid = faults_start(argv, &how);
    *pid_out = pid;
    *writes = 0;
    int fire = 0;
    for (;;) {
        int st = 0;
        if (waitpid(pid, &st, WNOHANG) == pid) { /* ended before the kill */
            *at_ms = faults_now_ms() - t0;
            *rc = faults_checked_rc(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st), err);
            close(fd);
            return 0;
        }
        double left = t0 + p->delay_ms - faults_now_ms();
        if (p->mode == KILL_AT_TIME && left <= 0) break;
        struct pollfd pfd = {fd, POLLIN, 0};
        poll(&pfd, 1, p->mode == KILL_AT_TIME ? (left < 2 ? 1 : 2) : 5);
        char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
        ssize_t n;
        while ((n = read(fd, buf, sizeof buf)) > 0) {
            for (char *q = buf; q < buf + n;) {
                const struct inotify_event *e = (const struct inotify_event *)q;
                q += sizeof *e + e->len;
                if (!e->len) continue;
                if (strstr(e->name, ".safetensors.tmp.")) {
                    if (p->mode == KILL_IN_WRITE && *writes == p->write) fire = 1;
                    ++*writes;
                }
                if (p->mode == KILL_AT_START && !strcmp(e->name, "log.csv")) fire = 1;
            }
        }
        if (fire) {
            faults_sleep_ms(p->delay_ms);
            break;
        }
    }
    kill(pid, SIGKILL);
    *at_ms = faults_now_ms() - t0;
    int r = faults_wait(pid);
    close(fd);
    if (r != 128 + SIGKILL) { /* it ended just before the signal */
        *rc = faults_checked_rc(r, err);
        return 0;
    }
    return 1;
}

/* log.csv without the seconds column (the 12th field), one string. */
static char *log_without_seconds(const char *path)
{
    char *s = faults_read_text(path);
    ck_assert_msg(s != NULL, "cannot read %s", path);
    char *out = malloc(strlen(s) + 1), *o = out;
    int field = 0;
    for (const char *c = s; *c; c++) {
        if (*c == '\n') field = -1;
        if (*c == ',') field++;
        if (field != 11) *o++ = *c; /* the comma before the seconds and the seconds */
        if (*c == '\n') field = 0;
    }
    *o = 0;
    free(s);
    return out;
}

static void expect_finished_like_reference(const char *dir, const char *ref)
{
    static const char *const files[] = {"last.safetensors", "best.safetensors",
                                        "model.safetensors"};
    for (int k = 0; k < 3; k++) {
        char a[4200], b[4200];
        snprintf(a, sizeof a, "%s/%s", dir, files[k]);
        snprintf(b, sizeof b, "%s/%s", ref, files[k]);
        faults_expect_same_tensors(ctx, a, b);
    }
    char names[1024];
    ck_assert_msg(faults_names_with(dir, ".tmp", names, sizeof names) == 0,
                  "%s: temporary files left after the resumed run finished: %s", dir, names);
    char a[4200], b[4200];
    snprintf(a, sizeof a, "%s/log.csv", dir);
    snprintf(b, sizeof b, "%s/log.csv", ref);
    char *la = log_without_seconds(a), *lb = log_without_seconds(b);
    ck_assert_msg(!strcmp(la, lb), "%s differs from the reference's log:\n%s\nreference:\n%s", a,
                  la, lb);
    free(la);
    free(lb);
    snprintf(a, sizeof a, "%s/curves.png", dir);
    ck_assert_msg(faults_exists(a), "no %s", a);
}

START_TEST(test_kills)
{
    const char *seed_env = getenv("DIFFCL_FAULTS_SEED");
    uint64_t seed = seed_env ? strtoull(seed_env, NULL, 10) : 22, rng = seed;
    char *root = faults_tmpdir_memory("kill");
    char ref[1024], dir[1024], err[1024];
    const char *argv[64];
    snprintf(ref, sizeof ref, "%s/ref", root);
    snprintf(err, sizeof err, "%s/ref.err", root);
    ck_assert_int_eq(mkdir(ref, 0755), 0);
    train_argv(argv, ref, 0);
    kill_plan never = {KILL_NEVER, 0, 0};
    int rc = -1, ref_writes = 0;
    pid_t pid;
    double t_ref = 0;
    ck_assert_int_eq(run_and_kill(ref, argv, &never, err, &rc, &pid, &ref_writes, &t_ref), 0);
    ck_assert_msg(rc == 0, "the reference run failed (exit %d), see %s", rc, err);
    printf("reference: %d checkpoint writes in %.0f ms; seed %llu, pause %d ms\n", ref_writes,
           t_ref, (unsigned long long)seed, PAUSE_MS);
    ck_assert_int_ge(ref_writes, 8);

    int kills = 0, in_write = 0, no_checkpoint = 0;
    double t0 = faults_now_ms();
    for (int r = 0; r < RUNS; r++) {
        kill_plan plan[2] = {{KILL_NEVER, 0, 0}, {KILL_NEVER, 0, 0}};
        if (r == 0) {
            plan[0] = (kill_plan){KILL_AT_START, 0, 5 * faults_uniform(&rng)};
        } else if (r == 1) {
            plan[0] = (kill_plan){KILL_IN_WRITE, 0, PAUSE_MS * faults_uniform(&rng)};
        } else if (r < 6) {
            int j = (int)(faults_rand(&rng) % (uint64_t)ref_writes);
            plan[0] = (kill_plan){KILL_IN_WRITE, j, PAUSE_MS * faults_uniform(&rng)};
        } else {
            plan[0] = (kill_plan){KILL_AT_TIME, 0, t_ref * faults_uniform(&rng)};
        }
        if (r >= 2 && faults_rand(&rng) % 2) { /* killed again while it resumes */
            int j = (int)(faults_rand(&rng) % (uint64_t)(ref_writes / 2));
            plan[1] = (kill_plan){KILL_IN_WRITE, j, PAUSE_MS * faults_uniform(&rng)};
        }
        snprintf(dir, sizeof dir, "%s/run%d", root, r);
        snprintf(err, sizeof err, "%s/run%d.err", root, r);
        ck_assert_int_eq(mkdir(dir, 0755), 0);
        train_argv(argv, dir, 0);
        char story[2048] = "";
        for (int attempt = 0;; attempt++) {
            ck_assert_int_lt(attempt, 4);
            const kill_plan *p = attempt < 2 ? &plan[attempt] : &never;
            int writes = 0;
            double at = 0;
            rc = -1;
            int killed = run_and_kill(dir, argv, p, err, &rc, &pid, &writes, &at);
            char *e = faults_read_text(err);
            size_t L = strlen(story);
            if (!killed) {
                ck_assert_msg(rc == 0, "run %d: %s exited %d:\n%s", r, argv[1], rc, e ? e : "");
                snprintf(story + L, sizeof story - L, "%s",
                         p->mode == KILL_NEVER ? " -> finished" : " -> finished before the kill");
                free(e);
                break;
            }
            free(e);
            kills++;
            /* inside a write: the killed process's temporary file is there */
            char tmp_mark[64], tmps[1024];
            snprintf(tmp_mark, sizeof tmp_mark, ".safetensors.tmp.%ld", (long)pid);
            int hit = faults_names_with(dir, tmp_mark, tmps, sizeof tmps) > 0;
            in_write += hit;
            static const char *const files[] = {"last.safetensors", "best.safetensors",
                                                "model.safetensors"};
            char present[128] = "";
            for (int k = 0; k < 3; k++) {
                char f[4200];
                snprintf(f, sizeof f, "%s/%s", dir, files[k]);
                if (!faults_exists(f)) continue;
                faults_expect_loadable(ctx, f);
                snprintf(present + strlen(present), sizeof present - strlen(present), "%s%.*s",
                         present[0] ? "+" : "", (int)(strchr(files[k], '.') - files[k]), files[k]);
            }
            L = strlen(story);
            char when[96];
            if (p->mode == KILL_IN_WRITE)
                snprintf(when, sizeof when, "in write %d + %.0f ms", p->write, p->delay_ms);
            else
                snprintf(when, sizeof when, "%s + %.0f ms", mode_name(p->mode), p->delay_ms);
            snprintf(story + L, sizeof story - L,
                     "%skilled %s, at %.0f ms, after %d writes: %s on disk%s%s", L ? " -> " : "",
                     when, at, writes, present[0] ? present : "no checkpoint",
                     hit ? ", in a write: " : "", hit ? tmps : "");
            char last[4200];
            snprintf(last, sizeof last, "%s/last.safetensors", dir);
            if (faults_exists(last)) {
                train_argv(argv, dir, 1);
            } else {
                /* before the first checkpoint: no resume, a clear error, then a fresh start */
                no_checkpoint++;
                train_argv(argv, dir, 1);
                faults_spawn how = {0, NULL, NULL, err};
                rc = faults_run(argv, &how);
                e = faults_read_text(err);
                ck_assert_msg(rc == 1 && e && strstr(e, last) && strstr(e, "no checkpoint"),
                              "run %d: resume without a checkpoint: exit %d, wanted 1 and an "
                              "error naming %s:\n%s",
                              r, rc, last, e ? e : "");
                free(e);
                train_argv(argv, dir, 0);
            }
            L = strlen(story);
            snprintf(story + L, sizeof story - L, " -> %s",
                     argv[1][2] == 'r' ? "--resume" : "--resume refused, --out again");
        }
        expect_finished_like_reference(dir, ref);
        printf("run %d: %s\n", r, story);
        faults_rm_rf(dir);
    }
    printf("%d kills, %d inside a checkpoint write, %d before the first checkpoint; kills and "
           "resumes took %.1f s\n",
           kills, in_write, no_checkpoint, (faults_now_ms() - t0) / 1e3);
    ck_assert_msg(in_write >= 5, "only %d of %d kills fell inside a checkpoint write", in_write,
                  kills);
    ck_assert_int_ge(no_checkpoint, 1);
    faults_rm_rf(root);
}
END_TEST

int main(int argc, char **argv)
{
    faults_set_tool(argc, argv);
    setvbuf(stdout, NULL, _IOLBF, 0); /* the lines of a test that then fails are kept */
    Suite *s = suite_create("faults");
    TCase *tc = tcase_create("kill");
    tcase_set_timeout(tc, 600);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_kills);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}
