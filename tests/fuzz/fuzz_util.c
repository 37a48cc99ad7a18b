/* Helpers shared by the fuzz targets (fuzz.h). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"

static void drop_log(diffcl_log_level level, const char *message, void *user)
{
    (void)level;
    (void)message;
    (void)user;
}

static diffcl_context *shared_ctx;

static void free_shared_ctx(void)
{
    diffcl_context_free(shared_ctx);
    shared_ctx = NULL;
}

diffcl_context *fuzz_context(void)
{
    if (shared_ctx) return shared_ctx;
    diffcl_context_options o = DIFFCL_CONTEXT_OPTIONS_INIT;
    o.n_threads = 1;
    o.log = drop_log;
    o.log_level = DIFFCL_LOG_ERROR;
    if (diffcl_context_create(&o, &shared_ctx) != DIFFCL_OK) {
        fprintf(stderr, "fuzz: cannot create a context: %s\n", diffcl_last_error());
        abort();
    }
    atexit(free_shared_ctx); /* LeakSanitizer runs after atexit handlers */
    return shared_ctx;
}

static const char *fuzz_dir(void)
{
    const char *d = getenv("DIFFCL_FUZZ_DIR");
    if (d && *d) return d;
    return access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
}

const char *fuzz_write_file(const uint8_t *data, size_t size, const char *suffix)
{
    static char path[4096];
    snprintf(path, sizeof path, "%s/diffcl-fuzz-%ld%s", fuzz_dir(), (long)getpid(), suffix);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) return NULL;
    size_t done = 0;
    while (done < size) {
        ssize_t w = write(fd, data + done, size - done);
        if (w <= 0) break;
        done += (size_t)w;
    }
    return close(fd) == 0 && done == size ? path : NULL;
}
