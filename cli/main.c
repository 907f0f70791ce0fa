/* main.c - the `rlhf` command: dispatch to subcommands. */
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "cli/cli.h"
#include "common/kernels.h"

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* VmHWM, not getrusage's ru_maxrss: the latter survives execve, so a
 * benchmark started from a big parent (python with torch loaded) would
 * report the parent's peak. */
double cli_peak_rss_mb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %lf kB", &kb) == 1) break;
    if (f) fclose(f);
    if (kb < 0) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        kb = (double)ru.ru_maxrss;
    }
    return kb / 1024.0;
}

static void usage(FILE *f) {
    fprintf(f, "usage: rlhf <command> [options]\n"
               "\n"
               "commands:\n"
               "  run      the whole lifecycle on this machine: SFT, then learner, reward workers, actors\n"
               "  sft      supervised fine-tuning on a jsonl file or a built-in task\n"
               "  sample   generate from a checkpoint\n"
               "  eval     score a checkpoint on a built-in task's held-out split\n"
               "  bench    benchmarks (bench model, bench transport)\n"
               "  plot     curves of a run folder's metrics.jsonl (PNG)\n"
               "  top      live view of a running learner: queues, actors, step phases, curves\n"
               "\n"
               "`rlhf <command> --help` describes each command.\n");
}

int main(int argc, char **argv) {
    kernels_init_process(argv);
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "bench") == 0) return cmd_bench(argc - 1, argv + 1);
    if (strcmp(cmd, "sft") == 0) return cmd_sft(argc - 1, argv + 1);
    if (strcmp(cmd, "sample") == 0) return cmd_sample(argc - 1, argv + 1);
    if (strcmp(cmd, "eval") == 0) return cmd_eval(argc - 1, argv + 1);
    if (strcmp(cmd, "run") == 0) return cmd_run(argc - 1, argv + 1);
    if (strcmp(cmd, "plot") == 0) return cmd_plot(argc - 1, argv + 1);
    if (strcmp(cmd, "top") == 0) return cmd_top(argc - 1, argv + 1);
    fprintf(stderr, "rlhf: unknown command '%s' (try `rlhf --help`)\n", cmd);
    return 2;
}
