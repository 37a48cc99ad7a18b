/* Fuzz target: the argument parsers of `diffcl train`, `infer`, `eval`, `demo`, `forward` and
 * `ensemble` (tools/args.h). The first byte picks the command ('0' to '5', or any other byte
 * modulo 6); the rest is its argument list, one argument per line (at most
 * 64). The parsers must take any strings: they only read argv into their structs. Their usage
 * text (--help) goes to stdout, which is sent to /dev/null once. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "fuzz.h"

enum { MAX_ARGS = 64 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int quiet;
    if (!quiet) quiet = freopen("/dev/null", "w", stdout) != NULL;
    if (size < 1) return 0;
    static const char *const cmds[] = {"train", "infer", "eval", "demo", "forward", "ensemble"};
    /* '0' train, '1' infer, '2' eval, '3' demo, '4' forward, '5' ensemble */
    int which = data[0] >= '0' && data[0] <= '5' ? data[0] - '0' : data[0] % 6;
    /* a NUL-terminated copy, cut at newlines into argv */
    char *text = malloc(size);
    if (!text) return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = 0;
    char *argv[MAX_ARGS + 2];
    int argc = 0;
    argv[argc++] = (char *)cmds[which];
    for (char *p = text; argc <= MAX_ARGS;) {
        argv[argc++] = p;
        char *nl = strchr(p, '\n');
        if (!nl) break;
        *nl = 0;
        p = nl + 1;
    }
    argv[argc] = NULL;
    if (size == 1) argc = 1; /* no argument at all */
    if (which == 0) {
        train_args a;
        train_args_parse(argc, argv, &a);
    } else if (which == 1) {
        infer_args a;
        infer_args_parse(argc, argv, &a);
    } else if (which == 2) {
        eval_args a;
        eval_args_parse(argc, argv, &a);
    } else if (which == 3) {
        demo_args a;
        demo_args_parse(argc, argv, &a);
    } else if (which == 4) {
        forward_args a;
        forward_args_parse(argc, argv, &a);
    } else {
        ensemble_args a;
        ensemble_args_parse(argc, argv, &a);
    }
    free(text);
    return 0;
}
