/* File-system helpers of the subcommands (paths.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "paths.h"

int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

int is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* dir/name without doubling a slash the user gave ("preds/"). */
void join_path(char *buf, size_t n, const char *dir, const char *name)
{
    size_t L = strlen(dir);
    while (L > 1 && dir[L - 1] == '/') L--;
    snprintf(buf, n, "%.*s/%s", (int)L, dir, name);
}

/* mkdir -p: 0 when @p path is (now) a folder, else -1 with errno set. */
int make_dirs(const char *path)
{
    char p[4096];
    if (snprintf(p, sizeof p, "%s", path) >= (int)sizeof p) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *c = p + 1; *c; c++) {
        if (*c != '/') continue;
        *c = 0;
        if (mkdir(p, 0777) && errno != EEXIST) return -1;
        *c = '/';
    }
    if (mkdir(p, 0777) && errno != EEXIST) return -1;
    if (!is_dir(p)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

int write_atomic(const char *path, const char *text)
{
    const char *slash = strrchr(path, '/');
    size_t dir = slash ? (size_t)(slash - path + 1) : 0;
    char tmp[4200];
    int k = snprintf(tmp, sizeof tmp, "%.*s.%s.tmp%ld", (int)dir, path, path + dir, (long)getpid());
    if (k < 0 || (size_t)k >= sizeof tmp) return ENAMETOOLONG;
    FILE *f = fopen(tmp, "w");
    if (!f) return errno;
    size_t n = strlen(text);
    int err = fwrite(text, 1, n, f) == n ? 0 : (errno ? errno : EIO);
    if (!err && fflush(f) != 0) err = errno ? errno : EIO;
    if (!err && fsync(fileno(f)) != 0 && errno != EINVAL) err = errno;
    if (fclose(f) != 0 && !err) err = errno ? errno : EIO;
    if (!err && rename(tmp, path) != 0) err = errno;
    if (err) unlink(tmp);
    return err;
}

int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}
