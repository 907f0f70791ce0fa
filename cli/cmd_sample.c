/* cmd_sample.c - placeholder until the subcommand lands. */
#include <stdio.h>

#include "cli/cli.h"

int cmd_sample(int argc, char **argv) {
    (void)argc, (void)argv;
    fprintf(stderr, "rlhf sample: not built yet\n");
    return 2;
}
