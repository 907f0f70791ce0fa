/* main.c - the `rlhf` command: dispatch to subcommands. */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: rlhf <command> [options]\n");
        return 2;
    }
    fprintf(stderr, "rlhf: unknown command '%s'\n", argv[1]);
    return 2;
}
