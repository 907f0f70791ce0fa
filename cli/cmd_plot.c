/* cmd_plot.c - `rlhf plot RUN_DIR [--out PNG]`: curves of a run's metrics.jsonl. */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/plot.h"

int cmd_plot(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0) {
        fprintf(argc < 2 ? stderr : stdout, "usage: rlhf plot RUN_DIR [--out FILE.png]\n");
        return argc < 2 ? 2 : 0;
    }
    char in[PATH_MAX + 32], out[PATH_MAX + 32], err[512];
    snprintf(in, sizeof in, "%s/metrics.jsonl", argv[1]);
    snprintf(out, sizeof out, "%s/curves.png", argv[1]);
    if (argc >= 4 && strcmp(argv[2], "--out") == 0) snprintf(out, sizeof out, "%s", argv[3]);
    if (plot_metrics(in, out, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "rlhf plot: %s\n", err);
        return 1;
    }
    printf("%s\n", out);
    return 0;
}
