/* File-system helpers shared by the subcommands that read and write folders of cases. */
#ifndef DIFFCL_TOOLS_PATHS_H
#define DIFFCL_TOOLS_PATHS_H

#include <stddef.h>

int ends_with(const char *s, const char *suf); /* s ends with suf (or equals it) */
int is_dir(const char *p);
int is_file(const char *p); /* a regular file */
/* dir/name without doubling a slash the user gave ("preds/"). */
void join_path(char *buf, size_t n, const char *dir, const char *name);
/* mkdir -p: 0 when @p path is (now) a folder, else -1 with errno set. */
int make_dirs(const char *path);
/* Write @p text to @p path atomically: a temporary file beside it (hidden, pid-tagged),
 * flushed and fsync'ed, then renamed over it; the temporary file is removed on failure.
 * 0, or an errno value. */
int write_atomic(const char *path, const char *text);
/* qsort comparator for an array of C strings. */
int cmp_str(const void *a, const void *b);

#endif
