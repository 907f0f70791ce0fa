/* cmd_sft.c - placeholder until the subcommand lands. */
#include <stdio.h>

#include "cli/cli.h"

int cmd_sft(int argc, char **argv) {
    (void)argc, (void)argv;
    fprintf(stderr, "rlhf sft: not built yet\n");
    return 2;
}
