/* Suite core, test cpu-budget: the default thread count is the CPUs this process may use, the
 * affinity mask capped by a cgroup CPU quota (lib/core/cpu_budget.c, issue 23), and it follows
 * the competition for the CPUs (lib/core/thread_adapt.c).
 *
 * The quota parser runs on fixture trees written here (cgroup v1 and v2, a limit on an
 * ancestor, no limit). The live checks run in forked children, so the test process keeps its
 * own mask: one pinned to CPU 0 with sched_setaffinity (as `taskset -c 0`), and, where this
 * machine lets us create a cgroup (root, a writable cpu hierarchy), one moved into a cgroup
 * limited to 1 CPU, as a container with `--cpus 1` would be. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/core_internal.h"
#include "test_util.h"

/* Writes text to root/rel, creating the folders on the way. */
static void put(const char *root, const char *rel, const char *text)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    for (char *p = path + strlen(root) + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            ck_assert(mkdir(path, 0755) == 0 || errno == EEXIST);
            *p = '/';
        }
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static void make_root(char *buf, size_t n)
{
    snprintf(buf, n, "/tmp/diffcl-cgroup-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(buf));
}

static void remove_tree(const char *root)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    ck_assert_int_eq(system(cmd), 0);
}

START_TEST(test_quota_v2)
{
    char root[64];
    make_root(root, sizeof root);
    put(root, "proc/self/cgroup", "0::/user.slice/job.scope\n");
    put(root, "sys/fs/cgroup/cpu.max", "max 100000\n");
    put(root, "sys/fs/cgroup/user.slice/cpu.max", "150000 100000\n"); /* the parent's limit holds */
    put(root, "sys/fs/cgroup/user.slice/job.scope/cpu.max", "max 100000\n");
    ck_assert_double_eq_tol(dc_cgroup_cpu_quota(root), 1.5, 1e-12);
    put(root, "sys/fs/cgroup/user.slice/job.scope/cpu.max", "50000 100000\n"); /* the tighter one */
    ck_assert_double_eq_tol(dc_cgroup_cpu_quota(root), 0.5, 1e-12);
    put(root, "sys/fs/cgroup/user.slice/cpu.max", "max 100000\n");
    put(root, "sys/fs/cgroup/user.slice/job.scope/cpu.max", "max 100000\n");
    ck_assert_double_eq(dc_cgroup_cpu_quota(root), 0.0);
    remove_tree(root);
}
END_TEST

START_TEST(test_quota_v1)
{
    char root[64];
    make_root(root, sizeof root);
    put(root, "proc/self/cgroup", "5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/\n");
    put(root, "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "200000\n");
    put(root, "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n");
    ck_assert_double_eq_tol(dc_cgroup_cpu_quota(root), 2.0, 1e-12);
    put(root, "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "-1\n"); /* unlimited */
    ck_assert_double_eq(dc_cgroup_cpu_quota(root), 0.0);
    /* inside the container, the host's path is absent and the mount is the container's cgroup */
    remove_tree(root);
    make_root(root, sizeof root);
    put(root, "proc/self/cgroup", "3:cpu:/kubepods/pod1/c1\n");
    put(root, "sys/fs/cgroup/cpu/cpu.cfs_quota_us", "150000\n");
    put(root, "sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n");
    ck_assert_double_eq_tol(dc_cgroup_cpu_quota(root), 1.5, 1e-12);
    remove_tree(root);
}
END_TEST

START_TEST(test_quota_absent_or_corrupt)
{
    char root[64];
    make_root(root, sizeof root);
    ck_assert_double_eq(dc_cgroup_cpu_quota(root), 0.0); /* no /proc/self/cgroup at all */
    put(root, "proc/self/cgroup", "garbage without colons\n0::/a\n");
    put(root, "sys/fs/cgroup/a/cpu.max", "nonsense\n");
    ck_assert_double_eq(dc_cgroup_cpu_quota(root), 0.0);
    put(root, "sys/fs/cgroup/a/cpu.max", "100000 0\n"); /* a zero period is no limit */
    ck_assert_double_eq(dc_cgroup_cpu_quota(root), 0.0);
    remove_tree(root);
}
END_TEST

/* In a child: the default thread count of a fresh context, as the exit status. */
static int child_default_threads(void)
{
    diffcl_context *ctx = NULL;
    if (diffcl_context_create(NULL, &ctx) != DIFFCL_OK) return 100;
    int n = diffcl_context_threads(ctx);
    diffcl_context_free(ctx);
    return n;
}

static int wait_exit(pid_t pid)
{
    int st = 0;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st));
    return WEXITSTATUS(st);
}

START_TEST(test_affinity_one_cpu)
{
    cpu_set_t mine;
    ck_assert_int_eq(sched_getaffinity(0, sizeof mine, &mine), 0);
    int first = 0;
    while (!CPU_ISSET(first, &mine)) first++;
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(first, &one);
        if (sched_setaffinity(0, sizeof one, &one)) _exit(101);
        _exit(child_default_threads());
    }
    ck_assert_int_eq(wait_exit(pid), 1);
    /* and unpinned, every CPU of the mask (or fewer, under a quota) */
    int budget = dc_cpu_budget(NULL, NULL);
    ck_assert_int_ge(budget, 1);
    ck_assert_int_le(budget, CPU_COUNT(&mine));
}
END_TEST

/* A cgroup limited to 1 CPU, where the machine lets us make one; 0 when it does not. */
static int make_limited_cgroup(char *dir, size_t n)
{
    const char *v2 = "/sys/fs/cgroup/cgroup.controllers", *v1 = "/sys/fs/cgroup/cpu";
    struct stat sb;
    int is_v2 = stat(v2, &sb) == 0;
    if (!is_v2 && stat(v1, &sb) != 0) return 0;
    snprintf(dir, n, "%s/diffcl-test-%d", is_v2 ? "/sys/fs/cgroup" : v1, (int)getpid());
    if (mkdir(dir, 0755) != 0) return 0;
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, is_v2 ? "cpu.max" : "cpu.cfs_quota_us");
    FILE *f = fopen(path, "w");
    int ok = f && fputs(is_v2 ? "100000 100000\n" : "100000\n", f) >= 0;
    if (f && fclose(f) != 0) ok = 0;
    if (ok && !is_v2) {
        snprintf(path, sizeof path, "%s/cpu.cfs_period_us", dir);
        f = fopen(path, "w");
        ok = f && fputs("100000\n", f) >= 0;
        if (f && fclose(f) != 0) ok = 0;
    }
    if (!ok) rmdir(dir);
    return ok;
}

START_TEST(test_cgroup_one_cpu)
{
    char dir[256];
    if (!make_limited_cgroup(dir, sizeof dir)) {
        fprintf(stderr, "cpu-budget: cannot create a cgroup here (not root, or no writable cpu controller); "
                        "the live cgroup check is skipped, the parser and affinity checks ran\n");
        return;
    }
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        char procs[300];
        snprintf(procs, sizeof procs, "%s/cgroup.procs", dir);
        FILE *f = fopen(procs, "w");
        if (!f || fprintf(f, "%d\n", (int)getpid()) < 0 || fclose(f) != 0) _exit(102);
        _exit(child_default_threads());
    }
    int n = wait_exit(pid);
    ck_assert_int_eq(rmdir(dir), 0);
    ck_assert_int_eq(n, 1);
}
END_TEST

START_TEST(test_threads_for_load)
{
    ck_assert_int_eq(dc_threads_for_load(2, 2, 0.0), 2);  /* alone */
    ck_assert_int_eq(dc_threads_for_load(2, 2, 0.4), 2);  /* a light neighbour */
    ck_assert_int_eq(dc_threads_for_load(2, 2, 0.7), 1);  /* a busy one */
    ck_assert_int_eq(dc_threads_for_load(2, 2, 2.0), 1);  /* never below 1 */
    ck_assert_int_eq(dc_threads_for_load(8, 64, 40.0), 8); /* a big machine with idle CPUs */
    ck_assert_int_eq(dc_threads_for_load(8, 8, 3.0), 5);
}
END_TEST

/* A busy process appears: a default count drops below the budget within a few samples; a
 * count the caller gave stays. Only the direction is checked, because other tests may load
 * the machine too (which lowers the count further, never raises it). */
START_TEST(test_threads_follow_a_busy_neighbour)
{
    diffcl_context *ctx = NULL, *fixed = NULL;
    ck_assert_int_eq(diffcl_context_create(NULL, &ctx), DIFFCL_OK);
    diffcl_context_options co = DIFFCL_CONTEXT_OPTIONS_INIT;
    co.n_threads = 2;
    ck_assert_int_eq(diffcl_context_create(&co, &fixed), DIFFCL_OK);
    int budget = diffcl_context_threads(ctx);
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (budget < 2 || online != budget || !dc_adapt_enabled_by_env()) {
        fprintf(stderr, "cpu-budget: %d usable of %ld CPUs: the live adaptation check needs all of them and >= 2\n",
                budget, online);
        diffcl_context_free(ctx);
        diffcl_context_free(fixed);
        return;
    }
    pid_t busy = fork();
    ck_assert_int_ge(busy, 0);
    if (busy == 0)
        for (volatile unsigned long x = 0;; x++) {
        }
    for (int k = 0; k < 6; k++) {
        usleep(120000);
        dc_threads_adapt(ctx);
        dc_threads_adapt(fixed);
    }
    kill(busy, SIGKILL);
    waitpid(busy, NULL, 0);
    ck_assert_int_lt(diffcl_context_threads(ctx), budget);
    ck_assert_int_eq(diffcl_context_threads(fixed), 2);
    diffcl_context_free(ctx);
    diffcl_context_free(fixed);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cpu-budget");
    TCase *tc = tcase_create("cpu-budget");
    tcase_add_test(tc, test_quota_v2);
    tcase_add_test(tc, test_quota_v1);
    tcase_add_test(tc, test_quota_absent_or_corrupt);
    tcase_add_test(tc, test_affinity_one_cpu);
    tcase_add_test(tc, test_cgroup_one_cpu);
    tcase_add_test(tc, test_threads_for_load);
    tcase_add_test(tc, test_threads_follow_a_busy_neighbour);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}
