/*
 * http_server_main.c - a tiny process for the HTTP load test
 * (tests/http_load.sh, wrk) and the Prometheus scrape test
 * (tests/prometheus_scrape.sh).
 *
 * It serves /metrics, /healthz, /status and / like every role does, and
 * keeps one counter moving: a 50 ms timer sends a message over an inproc
 * PUSH -> PULL pair registered with the loop, so
 * rlhf_messages_total{queue="selftest",direction="in"} grows by 20/s and
 * rlhf_selftest_latency_seconds observes each hop. SIGTERM/SIGINT stop it
 * cleanly (exit 0, everything freed, so ASan's leak check is meaningful);
 * a second signal exits at once.
 *
 *   http_test_server [--host ADDR] [--port N] [--port-file PATH]
 *   http_test_server --free-port     print a free loopback port and exit
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/http.h"
#include "common/loop.h"
#include "common/metrics.h"

typedef struct {
    loop_t *loop;
    loop_zsock_t *push, *pull;
    loop_timer_t *tick;
    metrics_histogram_t *latency;
    uint64_t sent;
} selftest_t;

static void on_tick(loop_timer_t *t, void *ud) {
    (void)t;
    selftest_t *s = ud;
    uint64_t stamp = uv_hrtime();
    const void *bufs[1] = {&stamp};
    size_t lens[1] = {sizeof stamp};
    if (loop_zsock_send_bufs(s->push, bufs, lens, 1) == RLHF_OK) s->sent++;
}

static void on_pull(loop_zsock_t *z, zmq_msg_t *parts, size_t n, void *ud) {
    (void)z;
    selftest_t *s = ud;
    uint64_t stamp;
    if (n == 1 && zmq_msg_size(&parts[0]) == sizeof stamp) {
        memcpy(&stamp, zmq_msg_data(&parts[0]), sizeof stamp);
        metrics_histogram_observe(s->latency, (double)(uv_hrtime() - stamp) * 1e-9);
    }
}

static void on_push(loop_zsock_t *z, zmq_msg_t *parts, size_t n, void *ud) {
    (void)z, (void)parts, (void)n, (void)ud; // PUSH never receives
}

static void on_drain(loop_t *l, int signum, void *ud) {
    (void)ud;
    fprintf(stderr, "http_test_server: signal %d, stopping\n", signum);
    loop_stop(l);
}

static void status_hook(json_t *status, void *ud) {
    selftest_t *s = ud;
    json_object_set_new(status, "role", json_string("http_test_server"));
    json_object_set_new(status, "selftest_sent", json_integer((json_int_t)s->sent));
}

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        return -1;
    close(fd);
    return ntohs(a.sin_port);
}

static void usage(void) {
    fprintf(stderr, "usage: http_test_server [--host ADDR] [--port N] [--port-file PATH] | --free-port\n");
    exit(2);
}

int main(int argc, char **argv) {
    http_config_t hc = {.host = "127.0.0.1", .port = 0};
    const char *port_file = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--free-port") == 0) {
            int p = free_port();
            if (p < 0) return 1;
            printf("%d\n", p);
            return 0;
        } else if (strcmp(argv[i], "--host") == 0 && i + 1 < argc) {
            hc.host = argv[++i];
        } else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            hc.port = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--port-file") == 0 && i + 1 < argc) {
            port_file = argv[++i];
        } else {
            usage();
        }
    }

    int rc = 1;
    char err[256];
    metrics_t *m = NULL;
    loop_t *loop = NULL;
    http_server_t *srv = NULL;
    void *ctx = NULL, *push = NULL, *pull = NULL;
    selftest_t st = {0};

    if (metrics_new(&m) != RLHF_OK || metrics_register_process(m) != RLHF_OK ||
        metrics_histogram(m, "rlhf_selftest_latency_seconds", "Inproc hop latency of the self-test messages.",
                          (const double[]){1e-5, 1e-4, 1e-3, 1e-2, 1e-1}, 5, &st.latency) != RLHF_OK ||
        loop_new(&loop, &(loop_config_t){.metrics = m}) != RLHF_OK) {
        fprintf(stderr, "http_test_server: out of memory\n");
        goto done;
    }
    st.loop = loop;
    hc.metrics = m;
    if (http_server_new(loop, &hc, &srv, err, sizeof err) != RLHF_OK) {
        fprintf(stderr, "http_test_server: %s\n", err);
        goto done;
    }
    http_server_set_status_hook(srv, status_hook, &st);
    if (loop_catch_signals(loop, on_drain, NULL, NULL) != RLHF_OK) goto done;

    ctx = zmq_ctx_new();
    push = zmq_socket(ctx, ZMQ_PUSH);
    pull = zmq_socket(ctx, ZMQ_PULL);
    int linger = 0;
    zmq_setsockopt(push, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(pull, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_bind(pull, "inproc://selftest") != 0 || zmq_connect(push, "inproc://selftest") != 0 ||
        loop_zsock_add(loop, pull, "selftest", on_pull, &st, &st.pull) != RLHF_OK ||
        loop_zsock_add(loop, push, "selftest", on_push, &st, &st.push) != RLHF_OK ||
        loop_timer_new(loop, on_tick, &st, &st.tick) != RLHF_OK) {
        fprintf(stderr, "http_test_server: zmq setup failed: %s\n", zmq_strerror(zmq_errno()));
        goto done;
    }
    loop_timer_start(st.tick, 50, 50);

    if (port_file) {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", port_file);
        FILE *fp = fopen(tmp, "w");
        if (!fp || fprintf(fp, "%d\n", http_server_port(srv)) < 0 || fclose(fp) != 0 || rename(tmp, port_file) != 0) {
            fprintf(stderr, "http_test_server: cannot write %s\n", port_file);
            goto done;
        }
    }
    printf("http_test_server: listening on http://%s:%d/\n", hc.host, http_server_port(srv));
    fflush(stdout);
    loop_run(loop);
    rc = 0;

done:
    loop_timer_destroy(&st.tick);
    loop_zsock_remove(&st.push);
    loop_zsock_remove(&st.pull);
    http_server_destroy(&srv);
    loop_destroy(&loop); // runs the close callbacks
    if (push) zmq_close(push);
    if (pull) zmq_close(pull);
    if (ctx) zmq_ctx_term(ctx);
    metrics_destroy(&m);
    return rc;
}
