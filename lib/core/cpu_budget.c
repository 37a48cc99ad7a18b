/* How many CPUs this process may actually use: the default thread count.
 *
 * omp_get_num_procs() and sysconf count the machine (or, with libgomp, the affinity mask), but a
 * container limited by a cgroup CPU quota (docker --cpus, Kubernetes limits, systemd CPUQuota=)
 * still sees every core. Running more compute threads than the quota allows makes every
 * parallel region wait for a thread that the scheduler has throttled, which is the collapse
 * docs/performance.md ("Shared machines and containers") measures. So the default is
 *   min(CPUs in the affinity mask, ceil(quota / period)),
 * at least 1. The quota is read from cgroup v2 (cpu.max) or v1 (cpu.cfs_quota_us and
 * cpu.cfs_period_us), for the process's own cgroup and each of its ancestors: a limit set on a
 * parent applies to the children too. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core_internal.h"

/* Reads the first line of root/dir/name into buf; 0 on success. */
static int read_line(const char *root, const char *dir, const char *name, char *buf, size_t n)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s%s/%s", root, dir, name) >= (int)sizeof path) return -1;
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char *ok = fgets(buf, (int)n, f);
    fclose(f);
    return ok ? 0 : -1;
}

/* The quota of one cgroup folder as a CPU count, or 0 when it sets none. */
static double quota_of(const char *root, const char *dir, int v2)
{
    char a[128], b[128];
    if (v2) {
        if (read_line(root, dir, "cpu.max", a, sizeof a)) return 0;
        char q[64];
        double period = 0;
        if (sscanf(a, "%63s %lf", q, &period) != 2 || !strcmp(q, "max") || period <= 0) return 0;
        double quota = atof(q);
        return quota > 0 ? quota / period : 0;
    }
    if (read_line(root, dir, "cpu.cfs_quota_us", a, sizeof a) ||
        read_line(root, dir, "cpu.cfs_period_us", b, sizeof b))
        return 0;
    double quota = atof(a), period = atof(b);
    return quota > 0 && period > 0 ? quota / period : 0;
}

/* The smallest quota along the path from the cgroup to the hierarchy's root (0: none). */
static double quota_along(const char *root, const char *mount, const char *path, int v2)
{
    char dir[PATH_MAX];
    if (snprintf(dir, sizeof dir, "%s%s", mount, strcmp(path, "/") ? path : "") >= (int)sizeof dir)
        return 0;
    double best = 0;
    for (;;) {
        double q = quota_of(root, dir, v2);
        if (q > 0 && (best == 0 || q < best)) best = q;
        char *slash = strrchr(dir, '/');
        if (!slash || (size_t)(slash - dir) < strlen(mount)) break;
        *slash = '\0';
    }
    return best;
}

double dc_cgroup_cpu_quota(const char *root)
{
    if (!root) root = "";
    char path[PATH_MAX], line[PATH_MAX + 64];
    if (snprintf(path, sizeof path, "%s/proc/self/cgroup", root) >= (int)sizeof path) return 0;
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    double best = 0;
    while (fgets(line, sizeof line, f)) {
        /* "hierarchy-id:controllers:path"; v2 is "0::path" */
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2) continue;
        *c1 = *c2 = '\0';
        char *cg = c2 + 1;
        cg[strcspn(cg, "\n")] = '\0';
        const char *ctrl = c1 + 1;
        double q = 0;
        if (!strcmp(line, "0") && !*ctrl) {
            q = quota_along(root, "/sys/fs/cgroup", cg, 1);
        } else {
            /* v1: the line whose controller list holds "cpu" exactly */
            char list[256];
            snprintf(list, sizeof list, ",%s,", ctrl);
            if (!strstr(list, ",cpu,")) continue;
            q = quota_along(root, "/sys/fs/cgroup/cpu", cg, 0);
            if (q == 0) q = quota_along(root, "/sys/fs/cgroup/cpu,cpuacct", cg, 0);
            /* inside a container the path names the host's hierarchy; its own root is the mount */
            if (q == 0) q = quota_of(root, "/sys/fs/cgroup/cpu", 0);
        }
        if (q > 0 && (best == 0 || q < best)) best = q;
    }
    fclose(f);
    return best;
}

int dc_cpu_budget(int *affinity_out, double *quota_out)
{
    int n = 0;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
    if (n <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (int)c : 1;
    }
    double quota = dc_cgroup_cpu_quota("");
    if (affinity_out) *affinity_out = n;
    if (quota_out) *quota_out = quota;
    int budget = n;
    if (quota > 0) {
        double q = ceil(quota - 1e-9);
        if (q < budget) budget = (int)q;
    }
    return budget > 0 ? budget : 1;
}
