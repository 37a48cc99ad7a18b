/* Helpers of the faults suite: running the diffcl tool in a child process (with a file-size
 * limit, killed, in a mount namespace), listing run folders and comparing checkpoints. */
#ifndef DIFFCL_FAULTS_UTIL_H
#define DIFFCL_FAULTS_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "test_util.h"

/* The diffcl tool: argv[1] of the test (meson passes it), else $DIFFCL_BUILD_ROOT/tools/diffcl. */
void faults_set_tool(int argc, char **argv);
const char *faults_tool(void);

/* A new folder <base>/diffcl_faults_<what>_XXXXXX (static buffer, 8 in rotation). */
char *faults_tmpdir_in(const char *base, const char *what);
/* ... in /tmp. */
char *faults_tmpdir(const char *what);
/* ... in /dev/shm where it is a writable folder (a tmpfs: no disk traffic for the many
 * checkpoints of the kill test, whose fsyncs cost nothing there), else /tmp. */
char *faults_tmpdir_memory(const char *what);
/* rm -rf @p path (ignores errors). */
void faults_rm_rf(const char *path);

/* How a child runs. fsize_limit > 0: RLIMIT_FSIZE in bytes with SIGXFSZ ignored, so that a
 * write past it fails with EFBIG instead of killing the process. env: "NAME=VALUE" strings
 * added to the environment (NULL-terminated, or NULL). out/err: files for stdout/stderr
 * (NULL: /dev/null). */
typedef struct faults_spawn {
    long long fsize_limit;
    const char *const *env;
    const char *out;
    const char *err;
} faults_spawn;

/* Start `diffcl argv...` (argv NULL-terminated, without the tool itself). */
pid_t faults_start(const char *const *argv, const faults_spawn *how);
/* Wait for @p pid: its exit code, or 128 + the signal that ended it. */
int faults_wait(pid_t pid);
/* Start and wait; FAULTS_SANITIZER_RC instead of the exit code when the child's error file
 * holds a sanitizer report (a leak report does not change the exit code of a failing run). */
int faults_run(const char *const *argv, const faults_spawn *how);
#define FAULTS_SANITIZER_RC 99
/* @p rc, or FAULTS_SANITIZER_RC when the file @p err_path holds a sanitizer report. */
int faults_checked_rc(int rc, const char *err_path);

/* Milliseconds on the monotonic clock. */
double faults_now_ms(void);
void faults_sleep_ms(double ms);

/* Names in folder @p dir that contain @p needle, joined by ' ' into @p buf; the count. */
int faults_names_with(const char *dir, const char *needle, char *buf, size_t n);
int faults_exists(const char *path);
long long faults_file_size(const char *path);
/* The whole file as a NUL-terminated string (malloc'ed), NULL when unreadable. */
char *faults_read_text(const char *path);
/* Byte-for-byte equality of two files. */
int faults_same_bytes(const char *a, const char *b);

/* Fail unless the safetensors files @p a and @p b hold the same tensors (names, dtypes,
 * shapes) with the same bytes. The metadata is not compared (it names the run folder). */
void faults_expect_same_tensors(diffcl_context *ctx, const char *a, const char *b);
/* Fail unless the checkpoint or model @p path loads: the container, the CS (as
 * diffcl_trainer_load_net and, for model.safetensors, diffcl_model_load return it) and the DS. */
void faults_expect_loadable(diffcl_context *ctx, const char *path);

/* splitmix64: the test's seeded generator. */
uint64_t faults_rand(uint64_t *state);
/* Uniform in [0, 1). */
double faults_uniform(uint64_t *state);

#endif
