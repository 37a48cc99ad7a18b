/* File-system helpers of the subcommands (paths.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

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
