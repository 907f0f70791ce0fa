/*
 * testprocs.h - start and reap the real programs in multi-process tests
 * (header-only; include once per test program).
 *
 * Children are started from RLHF_BIN_DIR with "--config FILE --id ID" and
 * stderr to a log file; tp_kill_all (register it with atexit and call it in
 * teardowns) kills whatever is still running, whatever happened.
 */
#ifndef RLHF_TESTPROCS_H
#define RLHF_TESTPROCS_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TP_MAXKIDS 8
static pid_t tp_kids[TP_MAXKIDS];
static int tp_nkids;

static inline void tp_kill_all(void) {
    for (int i = 0; i < tp_nkids; i++)
        if (tp_kids[i] > 0) {
            kill(tp_kids[i], SIGKILL);
            waitpid(tp_kids[i], NULL, 0);
            tp_kids[i] = 0;
        }
    tp_nkids = 0;
}

/* A TCP port on 127.0.0.1 free right now, or -1. */
static inline int tp_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

/* Start RLHF_BIN_DIR/prog --config cfg --id id with stderr into log. */
static inline pid_t tp_spawn(const char *prog, const char *cfg, const char *id, const char *log) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", RLHF_BIN_DIR, prog);
    pid_t p = fork();
    if (p == 0) {
        FILE *f = freopen(log, "w", stderr);
        (void)f;
        execl(path, prog, "--config", cfg, "--id", id, (char *)NULL);
        _exit(127);
    }
    if (p > 0 && tp_nkids < TP_MAXKIDS) tp_kids[tp_nkids++] = p;
    return p;
}

/* Wait for pid up to timeout_s: its exit status (0..255), 1000 + signal, or
 * -1 on timeout (then it is still running and still killed by tp_kill_all). */
static inline int tp_wait_exit(pid_t pid, double timeout_s) {
    struct timespec d = {0, 50 * 1000 * 1000};
    for (double t = 0; t < timeout_s; t += 0.05) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            for (int i = 0; i < tp_nkids; i++)
                if (tp_kids[i] == pid) tp_kids[i] = 0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : 1000 + WTERMSIG(st);
        }
        nanosleep(&d, NULL);
    }
    return -1;
}

/* Wait up to timeout_s for a line containing needle in the file at path (a
 * child's log): 1 when seen, 0 on timeout. Used to let the learner bind its
 * picked ports before the workers start: their own ephemeral ports (HTTP on
 * port 0, outgoing connections) could otherwise take one of them first. */
static inline int tp_wait_log(const char *path, const char *needle, double timeout_s) {
    struct timespec d = {0, 20 * 1000 * 1000};
    char line[1024];
    for (double t = 0; t < timeout_s; t += 0.02) {
        FILE *f = fopen(path, "r");
        int seen = 0;
        while (f && !seen && fgets(line, sizeof line, f)) seen = strstr(line, needle) != NULL;
        if (f) fclose(f);
        if (seen) return 1;
        nanosleep(&d, NULL);
    }
    return 0;
}

#endif
