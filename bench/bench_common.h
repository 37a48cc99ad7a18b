/* Helpers shared by bench_vnet.c and bench_train.c: clocks, medians, memory readings, and
 * running a measurement in a fresh process (this program re-executed with --child, or the
 * PyTorch script) whose "RESULT key value" lines are collected.
 *
 * Every measurement runs in its own process so that the peak RSS (getrusage ru_maxrss, a
 * per-process high-water mark) belongs to that measurement alone, and so that ours and
 * PyTorch's start from the same state. The thread count is set for both through
 * OMP_NUM_THREADS / OPENBLAS_NUM_THREADS / MKL_NUM_THREADS in the child's environment, plus
 * the context's n_threads (ours) and torch.set_num_threads (theirs).
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "diffcl/diffcl.h"

#define BENCH_CHECK(expr)                                                                      \
    do {                                                                                       \
        diffcl_status s_ = (expr);                                                             \
        if (s_ != DIFFCL_OK) {                                                                 \
            fprintf(stderr, "%s:%d: %s: %s (%s)\n", __FILE__, __LINE__, #expr,                 \
                    diffcl_status_string(s_), diffcl_last_error());                            \
            exit(1);                                                                           \
        }                                                                                      \
    } while (0)

static inline double bench_clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}
static inline double bench_wall_ms(void) { return bench_clock_ms(CLOCK_MONOTONIC); }
static inline double bench_cpu_ms(void) { return bench_clock_ms(CLOCK_PROCESS_CPUTIME_ID); }

static int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of v[0..n) (sorts v). */
static inline double bench_median(double *v, int n)
{
    if (n <= 0) return NAN;
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Current resident set size in MiB (VmRSS of /proc/self/status), NAN if unavailable. */
static inline double bench_rss_mib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return NAN;
    char line[256];
    double kb = NAN;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) {
            kb = atof(line + 6);
            break;
        }
    fclose(f);
    return kb / 1024.0;
}

/* Peak resident set size of this process so far, MiB (ru_maxrss is in KiB on Linux). */
static inline double bench_peak_rss_mib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

/* 1-minute load average, NAN if unavailable. */
static inline double bench_loadavg(void)
{
    double l = NAN;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = NAN;
        fclose(f);
    }
    return l;
}

/* Parse "a,b,c" into up to n int64 values; returns how many were read. */
static inline int bench_parse_list(const char *s, int64_t *out, int n)
{
    int k = 0;
    while (s && *s && k < n) {
        char *end = NULL;
        long long v = strtoll(s, &end, 10);
        if (end == s) break;
        out[k++] = (int64_t)v;
        s = *end == ',' || *end == 'x' ? end + 1 : end;
    }
    return k;
}

/* The results of one child process: "RESULT key value" lines. */
#define BENCH_MAX_KV 48
typedef struct bench_kv {
    int n;
    char key[BENCH_MAX_KV][48];
    double v[BENCH_MAX_KV];
    int ok; /* the child exited with status 0 and printed at least one RESULT */
} bench_kv;

static inline double bench_kv_get(const bench_kv *r, const char *key)
{
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->key[i], key)) return r->v[i];
    return NAN;
}

/* Child side: one result line. */
static inline void bench_result(const char *key, double v)
{
    printf("RESULT %s %.6f\n", key, v);
    fflush(stdout);
}

/*
 * Run "OMP_NUM_THREADS=T OPENBLAS_NUM_THREADS=T MKL_NUM_THREADS=T <cmd>" and collect its
 * RESULT lines; every other line is echoed with @p prefix when @p echo is set (errors always
 * reach stderr, which is not captured).
 */
static inline bench_kv bench_run_child(const char *cmd, int threads, int echo, const char *prefix)
{
    bench_kv r;
    memset(&r, 0, sizeof r);
    char full[4096];
    snprintf(full, sizeof full,
             "OMP_NUM_THREADS=%d OPENBLAS_NUM_THREADS=%d MKL_NUM_THREADS=%d %s", threads,
             threads, threads, cmd);
    fflush(stdout);
    FILE *p = popen(full, "r");
    if (!p) {
        fprintf(stderr, "cannot run: %s\n", full);
        return r;
    }
    char line[1024];
    while (fgets(line, sizeof line, p)) {
        char k[48];
        double v;
        if (sscanf(line, "RESULT %47s %lf", k, &v) == 2) {
            if (r.n < BENCH_MAX_KV) {
                snprintf(r.key[r.n], sizeof r.key[r.n], "%s", k);
                r.v[r.n++] = v;
            }
        } else if (echo) {
            printf("%s%s", prefix ? prefix : "", line);
        }
    }
    int st = pclose(p);
    r.ok = st == 0 && r.n > 0;
    if (st != 0) fprintf(stderr, "child failed (status %d): %s\n", st, full);
    return r;
}

/* Ratio a/b, NAN when either is missing. */
static inline double bench_ratio(double a, double b)
{
    return (isnan(a) || isnan(b) || b <= 0) ? NAN : a / b;
}

/* One line "SUMMARY <bench> <item> <ours> <torch> <unit>" for bench/run-all.sh. */
static inline void bench_summary(const char *bench, const char *item, double ours, double torch,
                                 const char *unit)
{
    printf("SUMMARY %s %s %.3f %.3f %s\n", bench, item, ours, torch, unit);
}

/* The timing lines every child prints: median, min and max wall time of @p n runs, median
 * CPU time, RSS before the timed loop, peak RSS and the context's peak bytes. Sorts @p tw
 * and @p tc in place. */
static inline void bench_report_times(double *tw, double *tc, int n, diffcl_context *ctx, double rss0)
{
    double lo = tw[0], hi = tw[0];
    for (int r = 1; r < n; r++) {
        lo = tw[r] < lo ? tw[r] : lo;
        hi = tw[r] > hi ? tw[r] : hi;
    }
    bench_result("wall_ms", bench_median(tw, n));
    bench_result("wall_min_ms", lo);
    bench_result("wall_max_ms", hi);
    bench_result("cpu_ms", bench_median(tc, n));
    bench_result("rss_before_mib", rss0);
    bench_result("peak_rss_mib", bench_peak_rss_mib());
    bench_result("ctx_peak_mib", (double)diffcl_context_peak_bytes(ctx) / 1048576.0);
}

#endif /* BENCH_COMMON_H */
