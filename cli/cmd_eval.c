/* cmd_eval.c - placeholder until the subcommand lands. */
#include <stdio.h>

#include "cli/cli.h"

int cmd_eval(int argc, char **argv) {
    (void)argc, (void)argv;
    fprintf(stderr, "rlhf eval: not built yet\n");
    return 2;
}
