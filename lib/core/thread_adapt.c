/* Thread count that follows the competition for the CPUs (issue 23; docs/performance.md,
 * "Shared machines and containers").
 *
 * Our parallel regions split their work evenly between the threads and end at a barrier. When
 * another process runs on one of our cores, the thread that shares it runs at half speed and
 * every region waits for it: a 2-thread training step on 2 cores with one busy neighbour was
 * 4-5x slower than alone (11x with OpenMP's long spin), where one thread alone would lose only
 * 1.5x. No wait policy fixes both cases: a short spin is fast alone and slow under contention,
 * passive waiting the other way round (measured in the doc).
 *
 * So a context whose thread count was left to the library (n_threads 0) re-chooses it at the
 * start of each unit of work (a training step, a sliding-window batch): as many threads as
 * there are CPUs that other processes left free, between 1 and the CPU budget (cpu_budget.c).
 * Other processes' use is the machine's busy CPU time (/proc/stat) minus this process's own,
 * over the time since the last sample (at least 50 ms), averaged over the last samples so that
 * one quiet moment of a neighbour does not flip the count. (A count of runnable threads, the
 * first try, was useless: our own OpenMP threads wake and sleep faster than /proc can be
 * read.) A count given by the caller is never changed, and DIFFCL_ADAPT_THREADS=0 turns the
 * adaptation off. Counting processes on every CPU of the
 * machine never lowers the count on a large machine that has enough idle CPUs: the free CPUs
 * are counted machine-wide. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cblas.h>

#include "core/core_internal.h"

/* CPU time spent by the whole machine (every CPU, not idle or waiting for I/O), in seconds,
 * from the first line of /proc/stat; -1 if unknown. */
static double machine_busy_seconds(void)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return -1;
    unsigned long long v[8] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    long hz = sysconf(_SC_CLK_TCK);
    if (n < 8 || hz <= 0) return -1;
    /* user nice system idle iowait irq softirq steal: all but idle and iowait */
    return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)hz;
}

static double clock_seconds(clockid_t id)
{
    struct timespec ts;
    if (clock_gettime(id, &ts)) return -1;
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int dc_adapt_enabled_by_env(void)
{
    const char *e = getenv("DIFFCL_ADAPT_THREADS");
    return !(e && !strcmp(e, "0"));
}

int dc_threads_for_load(int budget, int online, double others)
{
    int free_cpus = online - (int)lround(others);
    int n = free_cpus < budget ? free_cpus : budget;
    return n < 1 ? 1 : n;
}

void dc_threads_adapt(diffcl_context *ctx)
{
    if (!ctx || !ctx->threads_auto || ctx->threads_budget <= 1) return;
    /* called per sliding-window batch too: only the clock until a sample is due */
    double wall = clock_seconds(CLOCK_MONOTONIC);
    double dt = wall - ctx->adapt_wall;
    if (wall < 0 || (ctx->adapt_samples > 0 && dt < 0.05))
        return; /* /proc/stat counts 10 ms ticks */
    double own = clock_seconds(CLOCK_PROCESS_CPUTIME_ID), busy = machine_busy_seconds();
    int online = ctx->threads_online;
    if (own < 0 || busy < 0 || online < 1) return;
    if (ctx->adapt_samples > 0) {
        /* CPUs used by other processes over the interval: the machine's busy time minus ours */
        double others = ((busy - ctx->adapt_busy) - (own - ctx->adapt_own)) / dt;
        if (others < 0) others = 0;
        ctx->others_avg = ctx->adapt_samples > 1 ? 0.5 * ctx->others_avg + 0.5 * others : others;
    }
    ctx->adapt_samples++;
    ctx->adapt_wall = wall;
    ctx->adapt_own = own;
    ctx->adapt_busy = busy;
    if (ctx->adapt_samples < 2) return;
    int n = dc_threads_for_load(ctx->threads_budget, online, ctx->others_avg);
    if (n == ctx->n_threads) return;
    dc_log(ctx, DIFFCL_LOG_DEBUG, "threads %d -> %d: other processes use %.2f of %d CPUs",
           ctx->n_threads, n, ctx->others_avg, online);
    __atomic_store_n(&ctx->n_threads, n, __ATOMIC_RELAXED); /* see dc_threads */
    openblas_set_num_threads(n);
}
