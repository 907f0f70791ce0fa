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
int cmd_top(int argc, char **argv);

/* Monotonic seconds. */
double cli_now(void);
/* Peak resident set size in MiB. */
double cli_peak_rss_mb(void);

/* http_get.c: a tiny blocking HTTP/1.0 client. */
#include <jansson.h>
#include <stddef.h>
/* "host:port", "http://host:port[/...]", "[v6]:port", "host" (port 8080) or
 * "port" (host 127.0.0.1) -> host (NUL-terminated, hostlen bytes at most) and
 * port. 0, or -1 when the text is not an address. */
int cli_parse_address(const char *addr, char *host, size_t hostlen, int *port);
/* GET path from host:port within timeout_s seconds (connect included). 0 with
 * the HTTP status and *body (malloc'd, NUL-terminated, *len bytes; caller
 * frees); -1 with one line in err (e.g. "Connection refused"). */
int cli_http_get(const char *host, int port, const char *path, double timeout_s, int *status, char **body, size_t *len,
                 char *err, size_t errlen);
/* GET path and parse it as JSON: caller owns the result (json_decref); NULL
 * with one line in err on failure (unreachable, not 200, not JSON). err may
 * be NULL. */
json_t *cli_get_json(const char *host, int port, const char *path, double timeout_s, char *err, size_t errlen);

/* procs.c: pipeline processes on loopback (rlhf run, rlhf bench pipeline). */
#include <sys/types.h>
/* A TCP port on 127.0.0.1 free right now, or -1. */
int cli_free_port(void);
/* Start prog with argv (NULL-terminated, argv[0] = prog) in its own process
 * group (Ctrl-C reaches the caller only), stdout and stderr appended to
 * log_path. The child's pid, or -1 (errno) when fork fails; an exec failure
 * is logged and the child exits 127. */
pid_t cli_spawn(const char *prog, char *const argv[], const char *log_path);
/* GET http://127.0.0.1:port/status -> JSON (caller decrefs), NULL on any failure. */
json_t *cli_get_status(int port);
/* cmd_bench_pipeline.c */
int bench_pipeline(int argc, char **argv);

#endif
