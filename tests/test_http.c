/*
 * test_http.c - the HTTP server, driven by a plain blocking-socket client
 * while the loop runs on its own thread.
 *
 * Routes (/metrics exposition and content type, /healthz, /status JSON with
 * the process hook, a replaced / page, 404), HEAD, 405 with Allow, refusals
 * that close the connection (400 malformed, 431 huge header, 414 long URL,
 * 413 body), keep-alive and pipelining, HTTP/1.0 close, 100 simultaneous
 * connections, the connection limit (503), the idle timeout, random
 * garbage on many connections, and /metrics answered within 50 ms while a
 * 500 ms job runs on the loop's worker thread. Every connection the server opened is closed
 * at the end (ASan checks that every byte was freed).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/http.h"
#include "common/loop.h"
#include "common/metrics.h"

typedef struct {
    metrics_t *m;
    loop_t *loop;
    http_server_t *srv;   // defaults
    http_server_t *small; // max_connections 4, idle timeout 300 ms
    metrics_counter_t *hits;
    pthread_t thread;
} fixture_t;

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* ---- server side ---- */

static void status_hook(json_t *status, void *ud) {
    (void)ud;
    json_object_set_new(status, "role", json_string("test"));
}

static void page(const http_request_t *req, http_response_t *res, void *ud) {
    (void)ud;
    char text[128];
    int n = snprintf(text, sizeof text, "<h1>page</h1>%s?%s", req->path, req->query);
    http_response_set(res, 200, "text/html; charset=utf-8", text, (size_t)n);
}

static void *loop_main(void *p) {
    loop_run(((fixture_t *)p)->loop);
    return NULL;
}

static int setup(void **state) {
    fixture_t *f = calloc(1, sizeof *f);
    char err[256];
    if (metrics_new(&f->m) != RLHF_OK || loop_new(&f->loop, &(loop_config_t){.metrics = f->m}) != RLHF_OK) return -1;
    metrics_family_t *fam;
    metrics_counter_family(f->m, "rlhf_messages_total", "Messages.", "queue,direction", &fam);
    metrics_counter_get(fam, (const char *[]){"work", "in"}, &f->hits);
    metrics_counter_add(f->hits, 7);
    if (http_server_new(f->loop, &(http_config_t){.port = 0, .metrics = f->m}, &f->srv, err, sizeof err) != RLHF_OK) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    http_server_set_status_hook(f->srv, status_hook, NULL);
    if (http_server_route(f->srv, "/", page, NULL) != RLHF_OK) return -1;
    if (http_server_new(f->loop, &(http_config_t){.max_connections = 4, .idle_timeout_ms = 300}, &f->small, err,
                        sizeof err) != RLHF_OK) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    if (pthread_create(&f->thread, NULL, loop_main, f) != 0) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture_t *f = *state;
    sleep_ms(100); // let the server see the clients' EOFs
    loop_stop(f->loop);
    pthread_join(f->thread, NULL);
    int open1 = http_server_connections(f->srv), open2 = http_server_connections(f->small);
    http_server_destroy(&f->srv);
    http_server_destroy(&f->small);
    loop_destroy(&f->loop);
    metrics_destroy(&f->m);
    free(f);
    if (open1 || open2) fprintf(stderr, "connections left open: %d %d\n", open1, open2);
    return open1 || open2 ? -1 : 0;
}

/* ---- client side ---- */

typedef struct {
    int fd;
    char *buf; // received, not yet consumed
    size_t len, cap;
} client_t;

typedef struct {
    int status;
    char head[8192]; // status line and headers, NUL-terminated
    char *body;      // owned, NUL-terminated
    size_t body_len;
} resp_t;

static void cl_open(client_t *c, int port) {
    memset(c, 0, sizeof *c);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(c->fd >= 0);
    struct timeval tv = {5, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(c->fd, (struct sockaddr *)&a, sizeof a), 0);
}

static void cl_close(client_t *c) {
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    free(c->buf);
    c->buf = NULL;
    c->len = c->cap = 0;
}

static void cl_send(client_t *c, const char *data, size_t len) {
    while (len > 0) {
        ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
        if (n <= 0) return; // the server may have closed early; the response tells
        data += n;
        len -= (size_t)n;
    }
}

static void cl_sends(client_t *c, const char *s) {
    cl_send(c, s, strlen(s));
}

/* Read more into the buffer: bytes read, 0 on EOF, -1 on error/timeout. */
static ssize_t cl_fill(client_t *c) {
    if (c->cap - c->len < 4096) {
        c->cap = c->cap ? 2 * c->cap : 16384;
        c->buf = realloc(c->buf, c->cap);
    }
    ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len - 1, 0);
    if (n > 0) c->len += (size_t)n;
    return n;
}

/* One response (head_only: a HEAD response, no body). 0 or -1. */
static int cl_response(client_t *c, resp_t *r, bool head_only) {
    memset(r, 0, sizeof *r);
    char *end;
    for (;;) {
        if (c->buf) c->buf[c->len] = '\0';
        if (c->buf && (end = strstr(c->buf, "\r\n\r\n"))) break;
        if (cl_fill(c) <= 0) return -1;
    }
    size_t hlen = (size_t)(end - c->buf) + 4;
    if (hlen >= sizeof r->head) return -1;
    memcpy(r->head, c->buf, hlen);
    r->head[hlen] = '\0';
    if (sscanf(r->head, "HTTP/1.1 %d", &r->status) != 1) return -1;
    const char *cl = strcasestr(r->head, "\r\nContent-Length: ");
    size_t blen = cl ? strtoul(cl + 18, NULL, 10) : 0;
    if (head_only) blen = 0;
    while (c->len < hlen + blen)
        if (cl_fill(c) <= 0) return -1;
    r->body = malloc(blen + 1);
    memcpy(r->body, c->buf + hlen, blen);
    r->body[blen] = '\0';
    r->body_len = blen;
    memmove(c->buf, c->buf + hlen + blen, c->len - hlen - blen);
    c->len -= hlen + blen;
    return 0;
}

/* The server closed the connection (EOF, or a reset after EOF). */
static bool cl_eof(client_t *c) {
    for (;;) {
        ssize_t n = cl_fill(c);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) return true;
        if (n < 0) return false; // timeout
    }
}

/* One request on a fresh connection; returns the status, fills r. */
static int get(int port, const char *req, resp_t *r) {
    client_t c;
    cl_open(&c, port);
    cl_sends(&c, req);
    int rc = cl_response(&c, r, strncmp(req, "HEAD", 4) == 0);
    cl_close(&c);
    return rc == 0 ? r->status : -1;
}

static void resp_free(resp_t *r) {
    free(r->body);
    r->body = NULL;
}

/* ---- tests ---- */

static void test_routes(void **state) {
    fixture_t *f = *state;
    int port = http_server_port(f->srv);
    assert_true(port > 0);
    resp_t r;

    assert_int_equal(get(port, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", &r), 200);
    assert_string_equal(r.body, "ok\n");
    resp_free(&r);

    assert_int_equal(get(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &r), 200);
    assert_non_null(strstr(r.head, "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    assert_non_null(strstr(r.body, "# TYPE rlhf_messages_total counter\n"));
    assert_non_null(strstr(r.body, "rlhf_messages_total{queue=\"work\",direction=\"in\"} 7\n"));
    assert_non_null(strstr(r.body, "rlhf_http_requests_total{code=\"200\"} 1\n")); // the /healthz above
    resp_free(&r);

    /* query strings are not part of the path */
    assert_int_equal(get(port, "GET /metrics?x=1 HTTP/1.1\r\n\r\n", &r), 200);
    resp_free(&r);

    assert_int_equal(get(port, "GET /status HTTP/1.1\r\n\r\n", &r), 200);
    assert_non_null(strstr(r.head, "\r\nContent-Type: application/json\r\n"));
    json_error_t jerr;
    json_t *j = json_loads(r.body, 0, &jerr);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "role")), "test");
    assert_int_equal(json_integer_value(json_object_get(j, "pid")), getpid());
    assert_true(json_is_number(json_object_get(j, "uptime_seconds")));
    json_t *series = json_object_get(json_object_get(json_object_get(j, "metrics"), "rlhf_messages_total"), "series");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(series, 0), "value")), 7);
    json_decref(j);
    resp_free(&r);

    assert_int_equal(get(port, "GET /?a=b HTTP/1.1\r\n\r\n", &r), 200);
    assert_string_equal(r.body, "<h1>page</h1>/?a=b");
    assert_non_null(strstr(r.head, "text/html"));
    resp_free(&r);

    assert_int_equal(get(port, "GET /nope HTTP/1.1\r\n\r\n", &r), 404);
    resp_free(&r);

    assert_int_equal(get(port, "HEAD /healthz HTTP/1.1\r\n\r\n", &r), 200);
    assert_non_null(strstr(r.head, "\r\nContent-Length: 3\r\n"));
    assert_int_equal(r.body_len, 0);
    resp_free(&r);

    /* absolute-form URL */
    assert_int_equal(get(port, "GET http://localhost/healthz HTTP/1.1\r\n\r\n", &r), 200);
    resp_free(&r);

    /* the built-in index on the other server */
    assert_int_equal(get(http_server_port(f->small), "GET / HTTP/1.1\r\n\r\n", &r), 200);
    assert_non_null(strstr(r.body, "/metrics"));
    resp_free(&r);
}

static void test_method(void **state) {
    fixture_t *f = *state;
    client_t c;
    resp_t r;
    cl_open(&c, http_server_port(f->srv));
    cl_sends(&c, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_int_equal(cl_response(&c, &r, false), 0);
    assert_int_equal(r.status, 405);
    assert_non_null(strstr(r.head, "\r\nAllow: GET, HEAD\r\n"));
    resp_free(&r);
    /* the connection stays usable */
    cl_sends(&c, "DELETE /x HTTP/1.1\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n");
    assert_int_equal(cl_response(&c, &r, false), 0);
    assert_int_equal(r.status, 405);
    resp_free(&r);
    assert_int_equal(cl_response(&c, &r, false), 0);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    cl_close(&c);
}

/* Send req on a new connection: expect status with "Connection: close", then EOF. */
static void expect_refused(int port, const char *req, size_t len, int status) {
    client_t c;
    resp_t r;
    cl_open(&c, port);
    cl_send(&c, req, len);
    if (cl_response(&c, &r, false) != 0) {
        print_error("no response (want %d)\n", status);
        fail();
    }
    if (r.status != status) {
        print_error("status %d, want %d\n", r.status, status);
        fail();
    }
    assert_non_null(strstr(r.head, "\r\nConnection: close\r\n"));
    assert_true(cl_eof(&c));
    resp_free(&r);
    cl_close(&c);
}

static void test_refusals(void **state) {
    fixture_t *f = *state;
    int port = http_server_port(f->srv);
    const char *bad[] = {
        "GARBAGE\r\n\r\n",
        "GET /x HTTP/9.9\r\n\r\n",
        "GET /x HTTP/1.1\r\nBad Header\r\n\r\n",
        "GET /x HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
        "GET  HTTP/1.1\r\n\r\n",
        "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", // a TLS client hello
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) expect_refused(port, bad[i], strlen(bad[i]), 400);

    /* a 16 KiB header: 431, and the client reads it (no reset) */
    size_t big = 16384;
    char *req = malloc(big + 128);
    int n = snprintf(req, big + 128, "GET /healthz HTTP/1.1\r\nX-Big: ");
    memset(req + n, 'a', big);
    strcpy(req + n + big, "\r\n\r\n");
    expect_refused(port, req, strlen(req), 431);
    /* many small headers add up too */
    char *p = req + sprintf(req, "GET /healthz HTTP/1.1\r\n");
    for (int i = 0; i < 1200; i++) p += sprintf(p, "X%d: v\r\n", i); // ~12 KB
    strcpy(p, "\r\n");
    assert_true(strlen(req) < big + 128);
    expect_refused(port, req, strlen(req), 431);
    /* a 9 KiB URL */
    n = sprintf(req, "GET /");
    memset(req + n, 'u', 9000);
    strcpy(req + n + 9000, " HTTP/1.1\r\n\r\n");
    expect_refused(port, req, strlen(req), 414);
    free(req);

    /* bodies: the limit is 0 */
    expect_refused(port, "POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n", 40, 413);
    const char *chunked = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    expect_refused(port, chunked, strlen(chunked), 413);

    /* the server is fine afterwards */
    resp_t r;
    assert_int_equal(get(port, "GET /healthz HTTP/1.1\r\n\r\n", &r), 200);
    resp_free(&r);
}

static void test_keepalive(void **state) {
    fixture_t *f = *state;
    int port = http_server_port(f->srv);
    client_t c;
    resp_t r;
    cl_open(&c, port);
    for (int i = 0; i < 3; i++) { // one after the other on one connection
        cl_sends(&c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_int_equal(cl_response(&c, &r, false), 0);
        assert_int_equal(r.status, 200);
        assert_non_null(strstr(r.head, "\r\nConnection: keep-alive\r\n"));
        resp_free(&r);
    }
    /* pipelined: three requests in one write, answers in order */
    cl_sends(&c, "GET /healthz HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\n\r\nGET /metrics HTTP/1.1\r\n\r\n");
    int want[3] = {200, 404, 200};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(cl_response(&c, &r, false), 0);
        assert_int_equal(r.status, want[i]);
        resp_free(&r);
    }
    /* a request split into single bytes */
    const char *slow = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    for (const char *s = slow; *s; s++) {
        cl_send(&c, s, 1);
        if (s - slow < 3) sleep_ms(2);
    }
    assert_int_equal(cl_response(&c, &r, false), 0);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    /* Connection: close ends it after the answer; a request pipelined behind is ignored */
    cl_sends(&c, "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n");
    assert_int_equal(cl_response(&c, &r, false), 0);
    assert_non_null(strstr(r.head, "\r\nConnection: close\r\n"));
    resp_free(&r);
    assert_true(cl_eof(&c));
    cl_close(&c);

    /* HTTP/1.0: closed after the response unless keep-alive is asked for */
    cl_open(&c, port);
    cl_sends(&c, "GET /healthz HTTP/1.0\r\n\r\n");
    assert_int_equal(cl_response(&c, &r, false), 0);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    assert_true(cl_eof(&c));
    cl_close(&c);
    cl_open(&c, port);
    cl_sends(&c, "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_int_equal(cl_response(&c, &r, false), 0);
    assert_non_null(strstr(r.head, "\r\nConnection: keep-alive\r\n"));
    resp_free(&r);
    cl_sends(&c, "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_int_equal(cl_response(&c, &r, false), 0);
    resp_free(&r);
    /* the client half-closes after its request: still answered */
    cl_sends(&c, "GET /healthz HTTP/1.1\r\n\r\n");
    shutdown(c.fd, SHUT_WR);
    assert_int_equal(cl_response(&c, &r, false), 0);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    cl_close(&c);
}

#define MANY 100

static void test_many_connections(void **state) {
    fixture_t *f = *state;
    int port = http_server_port(f->srv);
    client_t *cs = calloc(MANY, sizeof *cs);
    resp_t r;
    for (int i = 0; i < MANY; i++) cl_open(&cs[i], port);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < MANY; i++) cl_sends(&cs[i], "GET /metrics HTTP/1.1\r\n\r\n");
        for (int i = 0; i < MANY; i++) {
            assert_int_equal(cl_response(&cs[i], &r, false), 0);
            assert_int_equal(r.status, 200);
            resp_free(&r);
        }
    }
    for (int i = 0; i < MANY; i++) cl_close(&cs[i]);
    free(cs);
}

static void test_limits(void **state) {
    fixture_t *f = *state;
    int port = http_server_port(f->small);
    client_t c[6];
    resp_t r;
    for (int i = 0; i < 4; i++) {
        cl_open(&c[i], port);
        cl_sends(&c[i], "GET /healthz HTTP/1.1\r\n\r\n");
        assert_int_equal(cl_response(&c[i], &r, false), 0);
        assert_int_equal(r.status, 200);
        resp_free(&r);
    }
    for (int i = 4; i < 6; i++) { // over max_connections
        cl_open(&c[i], port);
        assert_int_equal(cl_response(&c[i], &r, false), 0);
        assert_int_equal(r.status, 503);
        resp_free(&r);
        assert_true(cl_eof(&c[i]));
        cl_close(&c[i]);
    }
    /* idle connections are closed after 300 ms */
    double t0 = (double)uv_hrtime() * 1e-9;
    for (int i = 0; i < 4; i++) assert_true(cl_eof(&c[i]));
    double dt = (double)uv_hrtime() * 1e-9 - t0;
    assert_true(dt > 0.1 && dt < 2.0);
    for (int i = 0; i < 4; i++) cl_close(&c[i]);

    /* a request dribbled slower than the timeout is cut off */
    cl_open(&c[0], port);
    cl_sends(&c[0], "GET /healthz HTTP/1.1\r\n");
    sleep_ms(150);
    cl_sends(&c[0], "X-A: 1\r\n");
    sleep_ms(200);
    assert_true(cl_eof(&c[0]));
    cl_close(&c[0]);

    /* the slots are free again */
    assert_int_equal(get(port, "GET /healthz HTTP/1.1\r\n\r\n", &r), 200);
    resp_free(&r);
}

static void test_garbage(void **state) {
    fixture_t *f = *state;
    int port = http_server_port(f->srv);
    unsigned seed = 7;
    char buf[2048];
    static const char *pieces[] = {"GET ",
                                   "/metrics",
                                   " HTTP/1.1",
                                   "\r\n",
                                   ":",
                                   "Host",
                                   " ",
                                   "\0",
                                   "\xff",
                                   "\r",
                                   "\n",
                                   "Content-Length: ",
                                   "99999999999999999999",
                                   "Transfer-Encoding: chunked",
                                   "HTTP/1.0",
                                   "Connection: close",
                                   "?",
                                   "#",
                                   "%00",
                                   "POST",
                                   "\t"};
    for (int i = 0; i < 300; i++) {
        size_t len = 0;
        int k = 1 + (int)(rand_r(&seed) % 40);
        for (int j = 0; j < k; j++) {
            if (rand_r(&seed) % 3 == 0) { // random bytes
                int m = (int)(rand_r(&seed) % 16);
                for (int b = 0; b < m && len < sizeof buf; b++) buf[len++] = (char)rand_r(&seed);
            } else {
                const char *p = pieces[rand_r(&seed) % (sizeof pieces / sizeof pieces[0])];
                size_t pl = p[0] ? strlen(p) : 1;
                if (len + pl < sizeof buf) memcpy(buf + len, p, pl), len += pl;
            }
        }
        client_t c;
        cl_open(&c, port);
        cl_send(&c, buf, len);
        if (i % 2)
            shutdown(c.fd, SHUT_WR); // half the time: EOF right after
        else {
            struct timeval tv = {0, 20000};
            setsockopt(c.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        }
        while (cl_fill(&c) > 0) { // whatever comes back, until EOF or the short timeout
        }
        cl_close(&c);
    }
    resp_t r;
    assert_int_equal(get(port, "GET /healthz HTTP/1.1\r\n\r\n", &r), 200);
    resp_free(&r);
}

/* ---- /metrics while the process computes ---- */

typedef struct {
    atomic_int running, done;
} busy_t;

static void busy_work(void *arg) {
    busy_t *b = arg;
    atomic_store(&b->running, 1);
    double t0 = (double)uv_hrtime() * 1e-9;
    volatile double x = 0;
    while ((double)uv_hrtime() * 1e-9 - t0 < 0.5) // 500 ms of CPU on the worker thread
        for (int i = 0; i < 10000; i++) x = x + i;
    atomic_store(&b->running, 0);
}

static void busy_done(loop_t *l, void *arg, bool cancelled) {
    (void)l, (void)cancelled;
    atomic_store(&((busy_t *)arg)->done, 1);
}

static void busy_submit(loop_t *l, void *arg) {
    loop_submit(l, busy_work, busy_done, arg);
} // on the loop thread

static void test_busy(void **state) {
    fixture_t *f = *state;
    int port = http_server_port(f->srv);
    busy_t b;
    atomic_init(&b.running, 0);
    atomic_init(&b.done, 0);
    assert_int_equal(loop_post(f->loop, busy_submit, &b), RLHF_OK);
    while (!atomic_load(&b.running)) sleep_ms(1);
    double worst = 0;
    int n = 0;
    client_t c;
    cl_open(&c, port);
    while (atomic_load(&b.running)) {
        resp_t r;
        double t0 = (double)uv_hrtime() * 1e-9;
        cl_sends(&c, "GET /metrics HTTP/1.1\r\n\r\n");
        assert_int_equal(cl_response(&c, &r, false), 0);
        double dt = (double)uv_hrtime() * 1e-9 - t0;
        assert_int_equal(r.status, 200);
        resp_free(&r);
        if (dt > worst) worst = dt;
        n++;
        sleep_ms(5);
    }
    cl_close(&c);
    while (!atomic_load(&b.done)) sleep_ms(1);
    print_message("busy: %d /metrics requests during a 500 ms job, slowest %.1f ms\n", n, worst * 1e3);
    assert_true(n >= 10);
    assert_true(worst < 0.050);
}

static void test_bad_config(void **state) {
    (void)state;
    loop_t *l = NULL;
    http_server_t *s = NULL;
    char err[256] = "";
    assert_int_equal(loop_new(&l, NULL), RLHF_OK);
    assert_int_equal(http_server_new(l, &(http_config_t){.host = "localhost"}, &s, err, sizeof err), RLHF_EINVAL);
    assert_non_null(strstr(err, "'localhost'"));
    assert_int_equal(http_server_new(l, &(http_config_t){.port = 70000}, &s, err, sizeof err), RLHF_EINVAL);
    assert_non_null(strstr(err, "70000"));
    /* a port in use */
    http_server_t *a = NULL;
    assert_int_equal(http_server_new(l, NULL, &a, err, sizeof err), RLHF_OK);
    int port = http_server_port(a);
    assert_int_equal(http_server_new(l, &(http_config_t){.port = port}, &s, err, sizeof err), RLHF_EIO);
    assert_non_null(strstr(err, "in use"));
    assert_null(s);
    /* IPv6 loopback, if the host has it */
    if (http_server_new(l, &(http_config_t){.host = "::1"}, &s, err, sizeof err) == RLHF_OK) {
        assert_true(http_server_port(s) > 0);
        http_server_destroy(&s);
    }
    http_server_destroy(&a);
    loop_destroy(&l);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_routes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_method, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keepalive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_connections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_busy, setup, teardown),
        cmocka_unit_test(test_bad_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
