/* diffcl: the command-line front end of libdiffcl. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <diffcl/diffcl.h>

#include "commands.h"

int cmd_version(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("diffcl %s (library %s)\n", DIFFCL_VERSION_STRING, diffcl_version_string());
    const char *policy = getenv("OMP_WAIT_POLICY"), *spin = getenv("GOMP_SPINCOUNT");
    if (getenv("DIFFCL_SET_SPINCOUNT"))
        printf("openmp wait: GOMP_SPINCOUNT=%s (diffcl's default)\n", spin ? spin : "?");
    else if (policy || spin)
        printf("openmp wait: %s%s%s%s%s (from the environment)\n", policy ? "OMP_WAIT_POLICY=" : "",
               policy ? policy : "", policy && spin ? " " : "", spin ? "GOMP_SPINCOUNT=" : "",
               spin ? spin : "");
    else
        printf("openmp wait: libgomp's default\n");
    return 0;
}

diffcl_status tool_context_create(const diffcl_context_options *co, diffcl_context **ctx)
{
    diffcl_context_options o = DIFFCL_CONTEXT_OPTIONS_INIT;
    if (co) o = *co;
    int level = o.log_level;
    if (o.log_level > DIFFCL_LOG_WARN) o.log_level = DIFFCL_LOG_WARN;
    diffcl_status s = diffcl_context_create(&o, ctx);
    if (s == DIFFCL_OK)
        s = diffcl_context_set_log(*ctx, o.log, o.log_user, (diffcl_log_level)level);
    return s;
}

static const diffcl_command commands[] = {
    {"demo", "train supervised and Diff-CL on the phantom and compare them (the main job)",
     cmd_demo},
    {"train", "train Diff-CL (or the supervised baseline) on a data set", cmd_train},
    {"forward", "run a V-Net on a safetensors input (parity checks)", cmd_forward},
    {"infer", "segment images (NIfTI, PNG, h5) with a saved model by sliding window", cmd_infer},
    {"ensemble", "average the probabilities saved by 'infer --save-probs' into label maps",
     cmd_ensemble},
    {"eval", "score predicted label maps against references (Dice, Jaccard, HD95, ASD)", cmd_eval},
    {"version", "print the library version", cmd_version},
    /* subcommands register here, one line each */
};

static void usage(FILE *f)
{
    fprintf(f, "usage: diffcl <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'diffcl <command> --help' describes a command's options.\n");
}

/* OpenMP threads that wait at a barrier spin for about 300000 iterations (libgomp's default)
 * before they sleep. On a machine where another process wants a core, that spinning takes the
 * time slice the late thread needs, and a 2-thread run collapsed to 1/11 of its speed
 * (docs/performance.md, "Shared machines and containers"). A short spin keeps the idle-machine
 * speed and yields under contention. libgomp reads its environment once, when it is loaded,
 * before main runs, so the only way to change the default is to start again with the variable
 * set: when the user has set neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT, set the spin count and
 * re-execute this program once. If the exec fails, run on with libgomp's default. */
#define DIFFCL_DEFAULT_SPINCOUNT "10000"

static void apply_wait_policy(char **argv)
{
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return;
    /* under valgrind the new image would run outside it */
    const char *preload = getenv("LD_PRELOAD");
    if (preload && strstr(preload, "vgpreload")) return;
    if (setenv("GOMP_SPINCOUNT", DIFFCL_DEFAULT_SPINCOUNT, 1) != 0) return;
    setenv("DIFFCL_SET_SPINCOUNT", "1", 1); /* for `diffcl version`; child processes inherit both */
    execv("/proc/self/exe", argv);
    unsetenv("GOMP_SPINCOUNT"); /* the exec failed: libgomp's default stays in force */
    unsetenv("DIFFCL_SET_SPINCOUNT");
}

int main(int argc, char **argv)
{
    apply_wait_policy(argv);
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) return cmd_version(argc - 1, argv + 1);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "diffcl: unknown command '%s' (see 'diffcl --help')\n", argv[1]);
    return 2;
}
