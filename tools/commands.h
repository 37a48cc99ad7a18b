/* Subcommands of the `diffcl` tool. Each lives in tools/cmd_<name>.c and uses only the
 * public API (include/diffcl), like any program linking libdiffcl. */
#ifndef DIFFCL_TOOLS_COMMANDS_H
#define DIFFCL_TOOLS_COMMANDS_H

typedef struct diffcl_command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv); /* argv[0] is the subcommand name; returns exit code */
} diffcl_command;

/* Defined in their cmd_*.c files; listed in the table in diffcl.c. */
int cmd_version(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_infer(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_forward(int argc, char **argv);

#endif
