/* diffcl: the command-line front end of libdiffcl. */
#include <stdio.h>
#include <string.h>

#include <diffcl/diffcl.h>

#include "commands.h"

int cmd_version(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("diffcl %s (library %s)\n", DIFFCL_VERSION_STRING, diffcl_version_string());
    return 0;
}

static const diffcl_command commands[] = {
    {"demo", "train supervised and Diff-CL on the phantom and compare them (the main job)", cmd_demo},
    {"train", "train Diff-CL (or the supervised baseline) on a data set", cmd_train},
    {"forward", "run a V-Net on a safetensors input (parity checks)", cmd_forward},
    {"infer", "segment images (NIfTI, PNG, h5) with a saved model by sliding window", cmd_infer},
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

int main(int argc, char **argv)
{
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
