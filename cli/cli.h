/*
 * cli.h - subcommands of the `rlhf` program, one file each.
 * Each takes argc/argv after the subcommand name and returns the exit code.
 */
#ifndef RLHF_CLI_H
#define RLHF_CLI_H

int cmd_bench(int argc, char **argv);
int bench_transport(int argc, char **argv); /* cmd_bench_transport.c */
int cmd_sft(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_plot(int argc, char **argv);

/* Monotonic seconds. */
double cli_now(void);
/* Peak resident set size in MiB. */
double cli_peak_rss_mb(void);

#endif
