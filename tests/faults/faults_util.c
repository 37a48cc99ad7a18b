/* Helpers of the faults suite (faults_util.h). */
#include "faults_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "diffcl/checkpoint.h"
#include "diffcl/model.h"
#include "diffcl/train.h"

static char tool[4096];

void faults_set_tool(int argc, char **argv)
{
    const char *root = getenv("DIFFCL_BUILD_ROOT");
    if (argc > 1)
        snprintf(tool, sizeof tool, "%s", argv[1]);
    else
        snprintf(tool, sizeof tool, "%s/tools/diffcl", root ? root : "build");
}

const char *faults_tool(void)
{
    return tool;
}

char *faults_tmpdir(const char *what)
{
    return faults_tmpdir_in("/tmp", what);
}

char *faults_tmpdir_memory(const char *what)
{
    struct stat st;
    int shm = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0;
    return faults_tmpdir_in(shm ? "/dev/shm" : "/tmp", what);
}

char *faults_tmpdir_in(const char *base, const char *what)
{
    static char buf[8][128];
    static int k;
    char *d = buf[k++ & 7];
    snprintf(d, sizeof buf[0], "%s/diffcl_faults_%s_XXXXXX", base, what);
    ck_assert_ptr_nonnull(mkdtemp(d));
    return d;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(p);
    return 0;
}

void faults_rm_rf(const char *path)
{
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

static void redirect(int fd, const char *path)
{
    int f = open(path ? path : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (f >= 0) {
        dup2(f, fd);
        close(f);
    }
}

/* Start the child; with @p err_pipe >= 0 its stderr goes there instead of how->err. */
static pid_t start(const char *const *argv, const faults_spawn *how, int err_pipe)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid > 0) return pid;
    /* the child */
    if (how && how->fsize_limit > 0) {
        signal(SIGXFSZ, SIG_IGN); /* a write past the limit fails with EFBIG */
        struct rlimit rl = {(rlim_t)how->fsize_limit, (rlim_t)how->fsize_limit};
        if (setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(126);
    }
    for (int i = 0; how && how->env && how->env[i]; i++) putenv((char *)how->env[i]);
    redirect(STDOUT_FILENO, how ? how->out : NULL);
    if (err_pipe >= 0)
        dup2(err_pipe, STDERR_FILENO);
    else
        redirect(STDERR_FILENO, how ? how->err : NULL);
    const char *args[64];
    int n = 0;
    args[n++] = tool;
    for (int i = 0; argv[i] && n < 63; i++) args[n++] = argv[i];
    args[n] = NULL;
    execv(tool, (char *const *)args);
    _exit(127);
}

int faults_wait(pid_t pid)
{
    int st = 0;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return -1;
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
    return -1;
}

pid_t faults_start(const char *const *argv, const faults_spawn *how)
{
    return start(argv, how, -1);
}

int faults_checked_rc(int rc, const char *err_path)
{
    char *t = err_path ? faults_read_text(err_path) : NULL;
    int bad = t && (strstr(t, "Sanitizer") || strstr(t, "runtime error:"));
    free(t);
    return bad ? FAULTS_SANITIZER_RC : rc;
}

int faults_run(const char *const *argv, const faults_spawn *how)
{
    if (!how || how->fsize_limit <= 0 || !how->err)
        return faults_checked_rc(faults_wait(start(argv, how, -1)), how ? how->err : NULL);
    /* under a file-size limit the error file would be limited too: stderr comes through a pipe
     * and this process writes the file */
    int p[2];
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    pid_t pid = start(argv, how, p[1]);
    close(p[1]);
    FILE *f = fopen(how->err, "wb");
    char buf[4096];
    ssize_t k;
    while ((k = read(p[0], buf, sizeof buf)) > 0 || (k < 0 && errno == EINTR))
        if (k > 0 && f) fwrite(buf, 1, (size_t)k, f);
    close(p[0]);
    if (f) fclose(f);
    return faults_checked_rc(faults_wait(pid), how->err);
}

double faults_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

void faults_sleep_ms(double ms)
{
    if (ms <= 0) return;
    struct timespec ts = {(time_t)(ms / 1e3),
                          (long)((ms - 1e3 * (double)(time_t)(ms / 1e3)) * 1e6)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

int faults_names_with(const char *dir, const char *needle, char *buf, size_t n)
{
    DIR *d = opendir(dir);
    int count = 0;
    if (buf && n) buf[0] = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (!strstr(e->d_name, needle)) continue;
        count++;
        if (buf && strlen(buf) + strlen(e->d_name) + 2 < n) {
            if (buf[0]) strcat(buf, " ");
            strcat(buf, e->d_name);
        }
    }
    if (d) closedir(d);
    return count;
}

int faults_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

long long faults_file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

char *faults_read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *s = malloc(cap);
    size_t k;
    while (s && (k = fread(s + n, 1, cap - n - 1, f)) > 0) {
        n += k;
        if (cap - n - 1 == 0) {
            char *g = realloc(s, cap * 2);
            if (!g) {
                free(s);
                s = NULL;
            }
            s = g;
            cap *= 2;
        }
    }
    fclose(f);
    if (s) s[n] = 0;
    return s;
}

int faults_same_bytes(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        if (ca != cb) same = 0;
        if (ca == EOF || cb == EOF) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

void faults_expect_same_tensors(diffcl_context *ctx, const char *a, const char *b)
{
    diffcl_tensor_dict *da = NULL, *db = NULL;
    ck_ok(diffcl_safetensors_load(ctx, a, &da));
    ck_ok(diffcl_safetensors_load(ctx, b, &db));
    int n = diffcl_tensor_dict_size(da);
    ck_assert_msg(n == diffcl_tensor_dict_size(db), "%s holds %d tensors, %s %d", a, n, b,
                  diffcl_tensor_dict_size(db));
    for (int i = 0; i < n; i++) {
        const char *name = diffcl_tensor_dict_name(da, i);
        diffcl_tensor *ta = diffcl_tensor_dict_at(da, i), *tb = diffcl_tensor_dict_get(db, name);
        ck_assert_msg(tb != NULL, "%s: no tensor %s (%s has it)", b, name, a);
        int nd = diffcl_tensor_ndim(ta);
        int same =
            diffcl_tensor_dtype(ta) == diffcl_tensor_dtype(tb) && nd == diffcl_tensor_ndim(tb);
        for (int k = 0; same && k < nd; k++)
            same = diffcl_tensor_dim(ta, k) == diffcl_tensor_dim(tb, k);
        ck_assert_msg(same, "%s: tensor %s has another dtype or shape in %s", a, name, b);
        size_t bytes = (size_t)diffcl_tensor_numel(ta) * diffcl_dtype_size(diffcl_tensor_dtype(ta));
        ck_assert_msg(bytes == 0 ||
                          memcmp(diffcl_tensor_data(ta), diffcl_tensor_data(tb), bytes) == 0,
                      "tensor %s differs between %s and %s", name, a, b);
    }
    diffcl_tensor_dict_free(da);
    diffcl_tensor_dict_free(db);
}

void faults_expect_loadable(diffcl_context *ctx, const char *path)
{
    diffcl_tensor_dict *d = NULL;
    ck_ok(diffcl_safetensors_load(ctx, path, &d));
    int has_ds = diffcl_tensor_dict_get_meta(d, "diffcl.ds_model") != NULL;
    diffcl_tensor_dict_free(d);
    diffcl_module *m = NULL;
    diffcl_net_options no = DIFFCL_NET_OPTIONS_INIT;
    ck_ok(diffcl_trainer_load_net(ctx, path, &no, &m));
    diffcl_module_free(m);
    m = NULL;
    if (has_ds) {
        no.net = DIFFCL_NET_DS;
        ck_ok(diffcl_trainer_load_net(ctx, path, &no, &m));
        diffcl_module_free(m);
        m = NULL;
    }
    const char *base = strrchr(path, '/');
    if (base && !strcmp(base + 1, "model.safetensors")) {
        ck_ok(diffcl_model_load(ctx, path, &m));
        diffcl_module_free(m);
    }
}

uint64_t faults_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

double faults_uniform(uint64_t *state)
{
    return (double)(faults_rand(state) >> 11) * 0x1.0p-53;
}
