/*
 * http_get.c - a tiny blocking HTTP/1.0 GET client for the `rlhf` command
 * (`rlhf run`'s status line, `rlhf top`): one request per connection, the
 * whole response read into memory, with an overall deadline.
 *
 * What it deliberately is not: no TLS, no redirects, no chunked encoding (our
 * server never sends it), no keep-alive.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli/cli.h"

#define GET_MAX_BYTES (64u << 20) // a response larger than this is refused

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int cli_parse_address(const char *addr, char *host, size_t hostlen, int *port) {
    const char *s = addr;
    if (strncmp(s, "http://", 7) == 0) s += 7;
    size_t n = strcspn(s, "/"); // drop a trailing path ("/", "/status")
    const char *colon = NULL, *h = s;
    size_t hl = 0;
    if (*s == '[') { // [v6]:port
        const char *end = memchr(s, ']', n);
        if (!end) return -1;
        h = s + 1;
        hl = (size_t)(end - h);
        colon = end + 1 < s + n && end[1] == ':' ? end + 1 : NULL;
        if (!colon && end + 1 != s + n) return -1;
    } else {
        for (size_t i = 0; i < n; i++)
            if (s[i] == ':') colon = s + i;
        hl = colon ? (size_t)(colon - s) : n;
        if (!colon && hl > 0 && strspn(s, "0123456789") == n) { // just a port
            colon = s - 1;
            hl = 0;
        }
    }
    long p = 8080;
    if (colon) {
        char *end = NULL;
        errno = 0;
        p = strtol(colon + 1, &end, 10);
        if (errno || end != s + n || end == colon + 1 || p < 1 || p > 65535) return -1;
    }
    if (hl == 0) h = "127.0.0.1", hl = 9;
    if (hl >= hostlen) return -1;
    memcpy(host, h, hl);
    host[hl] = 0;
    *port = (int)p;
    return 0;
}

/* Wait for fd to be readable (POLLIN) or writable (POLLOUT) before deadline;
 * 1 ready, 0 timed out. */
static int wait_fd(int fd, short events, double deadline) {
    for (;;) {
        double left = deadline - cli_now();
        if (left <= 0) return 0;
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, (int)(left * 1000) + 1);
        if (r > 0) return 1;
        if (r < 0 && errno != EINTR) return 0;
    }
}

static int connect_to(const char *host, int port, double deadline, char *err, size_t errlen) {
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0) return fail(err, errlen, "cannot resolve %s: %s", host, gai_strerror(rc));
    int fd = -1, last = ECONNREFUSED;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            last = errno;
            continue;
        }
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
            int e = errno, soerr = 0;
            socklen_t sl = sizeof soerr;
            if (e == EINPROGRESS && wait_fd(fd, POLLOUT, deadline) &&
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0)
                continue; // connected
            last = e == EINPROGRESS ? (soerr ? soerr : ETIMEDOUT) : e;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) return fail(err, errlen, "%s", strerror(last));
    return fd;
}

int cli_http_get(const char *host, int port, const char *path, double timeout_s, int *status, char **body, size_t *len,
                 char *err, size_t errlen) {
    *body = NULL;
    *len = 0;
    *status = 0;
    double deadline = cli_now() + timeout_s;
    int fd = connect_to(host, port, deadline, err, errlen);
    if (fd < 0) return -1;
    char req[512];
    int rl = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: %s:%d\r\nConnection: close\r\n\r\n", path, host, port);
    int rc = -1;
    char *buf = NULL;
    size_t cap = 0, n = 0;
    if (rl < 0 || (size_t)rl >= sizeof req) {
        fail(err, errlen, "request too long");
        goto done;
    }
    for (size_t off = 0; off < (size_t)rl;) {
        ssize_t w = send(fd, req + off, (size_t)rl - off, MSG_NOSIGNAL);
        if (w > 0) {
            off += (size_t)w;
        } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
            fail(err, errlen, "send: %s", strerror(errno));
            goto done;
        } else if (!wait_fd(fd, POLLOUT, deadline)) {
            fail(err, errlen, "timed out sending the request");
            goto done;
        }
    }
    /* read until the peer closes (Connection: close), or the body is whole */
    size_t want = (size_t)-1; // header + Content-Length, once known
    for (;;) {
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 1 << 16;
            char *q = nc <= GET_MAX_BYTES ? realloc(buf, nc + 1) : NULL;
            if (!q) {
                fail(err, errlen, "response larger than %u bytes", GET_MAX_BYTES);
                goto done;
            }
            buf = q;
            cap = nc;
        }
        ssize_t r = recv(fd, buf + n, cap - n, 0);
        if (r > 0) {
            n += (size_t)r;
            buf[n] = 0;
            if (want == (size_t)-1) {
                char *eoh = strstr(buf, "\r\n\r\n");
                if (eoh) {
                    const char *cl = NULL;
                    for (char *line = strstr(buf, "\r\n"); line && line < eoh; line = strstr(line + 2, "\r\n"))
                        if (strncasecmp(line + 2, "Content-Length:", 15) == 0) cl = line + 17;
                    if (cl) want = (size_t)(eoh + 4 - buf) + strtoul(cl, NULL, 10);
                }
            }
            if (n >= want) break;
        } else if (r == 0) {
            break;
        } else if (errno != EAGAIN && errno != EINTR) {
            fail(err, errlen, "recv: %s", strerror(errno));
            goto done;
        } else if (!wait_fd(fd, POLLIN, deadline)) {
            fail(err, errlen, "no answer within %.1f s", timeout_s);
            goto done;
        }
    }
    if (!buf || sscanf(buf, "HTTP/%*d.%*d %d", status) != 1) {
        fail(err, errlen, "not an HTTP response");
        goto done;
    }
    char *eoh = strstr(buf, "\r\n\r\n");
    if (!eoh) {
        fail(err, errlen, "truncated HTTP response");
        goto done;
    }
    size_t hl = (size_t)(eoh + 4 - buf);
    if (want != (size_t)-1 && n < want) {
        fail(err, errlen, "truncated HTTP response");
        goto done;
    }
    *len = (want != (size_t)-1 ? want : n) - hl;
    memmove(buf, buf + hl, *len);
    buf[*len] = 0;
    *body = buf;
    buf = NULL;
    rc = 0;
done:
    free(buf);
    close(fd);
    return rc;
}

json_t *cli_get_json(const char *host, int port, const char *path, double timeout_s, char *err, size_t errlen) {
    int status = 0;
    char *body = NULL;
    size_t len = 0;
    if (cli_http_get(host, port, path, timeout_s, &status, &body, &len, err, errlen) != 0) return NULL;
    json_t *j = NULL;
    if (status != 200) {
        fail(err, errlen, "GET %s: HTTP %d", path, status);
    } else {
        json_error_t je;
        j = json_loadb(body, len, 0, &je);
        if (!j) fail(err, errlen, "GET %s: not JSON (%s)", path, je.text);
    }
    free(body);
    return j;
}
