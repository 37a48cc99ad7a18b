/* Subcommands of the `diffcl` tool. Each lives in tools/cmd_<name>.c and uses only the
 * public API (include/diffcl), like any program linking libdiffcl. */
#ifndef DIFFCL_TOOLS_COMMANDS_H
#define DIFFCL_TOOLS_COMMANDS_H

typedef struct diffcl_command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv); /* argv[0] is the subcommand name; returns exit code */
} diffcl_command;

#include <diffcl/diffcl.h>

/* diffcl_context_create for a command (diffcl.c): the library's INFO line on the thread count is
 * left out, because the command's start line says it, and it would otherwise come before every
 * error message; the options' log level applies from then on. @p co may be NULL. */
diffcl_status tool_context_create(const diffcl_context_options *co, diffcl_context **ctx);

/* Defined in their cmd_*.c files; listed in the table in diffcl.c. */
int cmd_version(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_infer(int argc, char **argv);
int cmd_ensemble(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_forward(int argc, char **argv);

#endif
