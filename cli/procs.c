/*
 * procs.c - child processes on loopback for the commands that start a
 * pipeline (`rlhf run`, `rlhf bench pipeline`): free ports, starting a role
 * program with its log, and reading a learner's /status.
 *
 * What it deliberately is not: no supervision policy (restarts, stop order):
 * each command decides that.
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli/cli.h"

int cli_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

pid_t cli_spawn(const char *prog, char *const argv[], const char *log_path) {
    pid_t pid = fork();
    if (pid != 0) return pid; // the parent: the child's pid, or -1 (errno)
    int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
        dup2(fd, STDOUT_FILENO), dup2(fd, STDERR_FILENO);
        close(fd);
    }
    setpgid(0, 0); /* Ctrl-C reaches the launcher only; it stops the children in order */
    execv(prog, argv);
    fprintf(stderr, "rlhf: cannot start %s: %s\n", prog, strerror(errno));
    _exit(127);
}

json_t *cli_get_status(int port) {
    return cli_get_json("127.0.0.1", port, "/status", 1.0, NULL, 0);
}
