/*
 * http.c - HTTP/1.1 server on libuv + http_parser (see http.h).
 *
 * A connection is READING (parsing requests, answering each as soon as it is
 * complete, in order) or LINGERING (an error or "Connection: close" response
 * is queued: the write side is shut down after it, and input is read and
 * discarded until EOF, LINGER_MAX_BYTES or the linger timeout). Lingering
 * avoids closing a socket with unread input, which makes the kernel send a
 * reset that can destroy the response before the client reads it.
 *
 * Memory: a connection owns two libuv handles (tcp, timer) and is freed when
 * both close callbacks have run; the server is freed when it was destroyed and
 * its last handle (listener or connection) has closed. Every response is one
 * malloc'd buffer (headers + body) freed in its write callback.
 */
#include "common/http.h"

#include <http_parser.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define READ_BUF_BYTES    65536
#define WRITE_PAUSE_BYTES (1u << 20) // stop reading while this much output is queued
#define LINGER_MS         1000
#define LINGER_MAX_BYTES  (1u << 20)
#define MAX_CODES         16

typedef struct http_conn conn_t;

typedef struct {
    char *path; // owned
    http_handler_fn fn;
    void *ud;
} route_t;

struct http_server {
    loop_t *loop;  // borrowed
    uv_loop_t *uv; // borrowed
    http_config_t cfg;
    char *host; // owned copy of cfg.host
    int port;
    uv_tcp_t listener;
    int open_handles; // listener + connection handles not yet closed
    bool destroyed;
    route_t routes[HTTP_MAX_ROUTES];
    int nroutes;
    http_status_fn status_fn;
    void *status_ud;
    conn_t *conns; // open (not closing) connections
    int nconns;
    uint64_t start_ns;
    metrics_family_t *f_requests;
    struct {
        int code;
        metrics_counter_t *c;
    } codes[MAX_CODES];
    int ncodes;
    char rbuf[READ_BUF_BYTES]; // read buffer, consumed synchronously by each read callback
};

enum { C_READING, C_LINGERING };

struct http_conn {
    http_server_t *srv; // borrowed
    uv_tcp_t tcp;
    uv_timer_t timer; // idle/request timeout, then linger timeout
    uv_shutdown_t shutdown_req;
    http_parser parser;
    int state;
    bool closing;
    int nopen;       // of tcp and timer
    bool paused;     // reading stopped for output back-pressure
    bool want_close; // the current response ends the connection
    char *url;       // current request's URL, owned, grows up to max_header_bytes
    size_t url_len, url_cap;
    size_t head_bytes; // bytes of URL and headers of the current request
    size_t body_bytes;
    int err_status; // set by a parser callback that refused the request
    size_t linger_bytes;
    struct http_conn *prev, *next;
};

typedef struct {
    uv_write_t req;
    conn_t *c;
    uv_buf_t buf; // points just past this struct
} wreq_t;

static void conn_resume_reading(conn_t *c);

/* ---- lifetime ---- */

static void server_maybe_free(http_server_t *s) {
    if (!s->destroyed || s->open_handles > 0) return;
    for (int i = 0; i < s->nroutes; i++) free(s->routes[i].path);
    free(s->host);
    free(s);
}

static void listener_closed(uv_handle_t *h) {
    http_server_t *s = h->data;
    s->open_handles--;
    server_maybe_free(s);
}

static void conn_handle_closed(uv_handle_t *h) {
    conn_t *c = h->data;
    http_server_t *s = c->srv;
    s->open_handles--;
    if (--c->nopen == 0) {
        free(c->url);
        free(c);
    }
    server_maybe_free(s);
}

static void conn_close(conn_t *c) {
    if (c->closing) return;
    c->closing = true;
    http_server_t *s = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    s->nconns--;
    uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
    uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
}

static void timer_fired(uv_timer_t *t) {
    conn_close(t->data);
}

static void shutdown_done(uv_shutdown_t *req, int status) {
    conn_t *c = req->data;
    if (status < 0 && status != UV_ECANCELED) conn_close(c);
}

/* Stop serving: the queued responses go out, then FIN; input is discarded
 * until EOF or the linger timeout. */
static void conn_finish(conn_t *c) {
    if (c->closing || c->state == C_LINGERING) return;
    c->state = C_LINGERING;
    uv_timer_start(&c->timer, timer_fired, LINGER_MS, 0);
    c->shutdown_req.data = c;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, shutdown_done) != 0) conn_close(c);
}

/* ---- responses ---- */

static metrics_counter_t *code_counter(http_server_t *s, int code) {
    if (!s->f_requests) return NULL;
    for (int i = 0; i < s->ncodes; i++)
        if (s->codes[i].code == code) return s->codes[i].c;
    if (s->ncodes == MAX_CODES) return NULL;
    char label[8];
    snprintf(label, sizeof label, "%d", code);
    metrics_counter_t *c = NULL;
    if (metrics_counter_get(s->f_requests, (const char *[]){label}, &c) != RLHF_OK) return NULL;
    s->codes[s->ncodes].code = code;
    s->codes[s->ncodes++].c = c;
    return c;
}

static void after_write(uv_write_t *req, int status) {
    wreq_t *w = (wreq_t *)req;
    conn_t *c = w->c;
    free(w);
    if (c->closing) return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (c->paused && uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) < WRITE_PAUSE_BYTES / 4) {
        c->paused = false;
        conn_resume_reading(c);
    }
}

/* Queue one response; takes ownership of body. */
static void conn_respond(conn_t *c, int status, const char *ctype, char *body, size_t blen, bool head_only,
                         bool close) {
    http_server_t *s = c->srv;
    metrics_counter_inc(code_counter(s, status));
    const char *fmt = "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%sConnection: %s\r\n\r\n";
    const char *allow = status == 405 ? "Allow: GET, HEAD\r\n" : "";
    const char *conn = close ? "close" : "keep-alive";
    const char *reason = http_status_str((enum http_status)status);
    int hlen = snprintf(NULL, 0, fmt, status, reason, ctype, blen, allow, conn);
    size_t send_body = head_only ? 0 : blen;
    wreq_t *w = hlen < 0 ? NULL : malloc(sizeof *w + (size_t)hlen + 1 + send_body);
    if (!w) {
        free(body);
        conn_close(c);
        return;
    }
    char *out = (char *)(w + 1);
    snprintf(out, (size_t)hlen + 1, fmt, status, reason, ctype, blen, allow, conn);
    if (send_body) memcpy(out + hlen, body, send_body);
    free(body);
    w->c = c;
    w->buf = uv_buf_init(out, (unsigned)((size_t)hlen + send_body));
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &w->buf, 1, after_write) != 0) {
        free(w);
        conn_close(c);
        return;
    }
    if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > WRITE_PAUSE_BYTES && !c->paused) {
        c->paused = true;
        uv_read_stop((uv_stream_t *)&c->tcp);
    }
}

/* Plain-text response "<reason>\n". */
static void conn_respond_reason(conn_t *c, int status, bool close) {
    const char *reason = http_status_str((enum http_status)status);
    size_t n = strlen(reason);
    char *body = malloc(n + 2);
    if (body) {
        memcpy(body, reason, n);
        body[n] = '\n';
        body[n + 1] = '\0';
    }
    conn_respond(c, status, "text/plain; charset=utf-8", body, body ? n + 1 : 0, false, close);
}

/* An error response that ends the connection. */
static void conn_fail(conn_t *c, int status) {
    conn_respond_reason(c, status, true);
    conn_finish(c);
}

rlhf_err_t http_response_set(http_response_t *res, int status, const char *content_type, const char *body, size_t len) {
    char *copy = malloc(len + 1);
    free(res->body);
    res->body = NULL;
    res->body_len = 0;
    if (!copy) {
        res->status = 500;
        return RLHF_ENOMEM;
    }
    if (len) memcpy(copy, body, len);
    copy[len] = '\0';
    res->status = status;
    res->content_type = content_type;
    res->body = copy;
    res->body_len = len;
    return RLHF_OK;
}

/* ---- built-in routes ---- */

static void route_metrics(const http_request_t *req, http_response_t *res, void *ud) {
    (void)req;
    http_server_t *s = ud;
    res->content_type = METRICS_CONTENT_TYPE;
    if (!s->cfg.metrics) return;
    if (metrics_render(s->cfg.metrics, &res->body, &res->body_len) != RLHF_OK) res->status = 500;
}

static void route_healthz(const http_request_t *req, http_response_t *res, void *ud) {
    (void)req, (void)ud;
    http_response_set(res, 200, "text/plain; charset=utf-8", "ok\n", 3);
}

static void route_index(const http_request_t *req, http_response_t *res, void *ud) {
    (void)req, (void)ud;
    static const char text[] = "rlhf: see /metrics, /healthz, /status\n";
    http_response_set(res, 200, "text/plain; charset=utf-8", text, sizeof text - 1);
}

static void route_status(const http_request_t *req, http_response_t *res, void *ud) {
    (void)req;
    http_server_t *s = ud;
    json_t *root = json_object(), *snap = NULL;
    if (!root) goto fail;
    json_object_set_new(root, "uptime_seconds", json_real((double)(uv_hrtime() - s->start_ns) * 1e-9));
    json_object_set_new(root, "pid", json_integer((json_int_t)getpid()));
    json_object_set_new(root, "http_connections", json_integer(s->nconns));
    if (s->cfg.metrics) {
        if (metrics_snapshot(s->cfg.metrics, &snap) != RLHF_OK) goto fail;
        json_object_set_new(root, "metrics", snap);
    }
    if (s->status_fn) s->status_fn(root, s->status_ud);
    res->body = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(12));
    if (!res->body) goto fail;
    res->body_len = strlen(res->body);
    res->content_type = "application/json";
    json_decref(root);
    return;
fail:
    json_decref(root);
    res->status = 500;
}

/* ---- requests ---- */

static void dispatch(conn_t *c) {
    http_server_t *s = c->srv;
    http_parser *p = &c->parser;
    bool keep = http_should_keep_alive(p) && !p->upgrade;
    bool head = p->method == HTTP_HEAD;
    if (p->method != HTTP_GET && !head) {
        conn_respond_reason(c, 405, !keep);
        c->want_close = !keep;
        return;
    }
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(c->url, c->url_len, 0, &u) != 0) {
        conn_fail(c, 400);
        c->want_close = true;
        return;
    }
    /* the URL buffer has room: cut path and query into strings in place */
    char empty[1] = "", root[2] = "/";
    char *path = root, *query = empty;
    char *q = NULL;
    if (u.field_set & (1 << UF_QUERY)) {
        q = c->url + u.field_data[UF_QUERY].off;
        q[u.field_data[UF_QUERY].len] = '\0';
        query = q;
    }
    if (u.field_set & (1 << UF_PATH)) {
        path = c->url + u.field_data[UF_PATH].off;
        path[u.field_data[UF_PATH].len] = '\0'; // overwrites '?' or '#' or the spare byte
    }
    http_request_t req = {head ? "HEAD" : "GET", path, query};
    http_response_t res = {200, "text/plain; charset=utf-8", NULL, 0};
    const route_t *r = NULL;
    for (int i = 0; i < s->nroutes; i++)
        if (strcmp(s->routes[i].path, path) == 0) r = &s->routes[i];
    if (r) {
        r->fn(&req, &res, r->ud);
        if (!res.content_type) res.content_type = "text/plain; charset=utf-8";
        if (res.status < 100 || res.status > 599) res.status = 500;
        if (!res.body) res.body_len = 0;
    } else {
        http_response_set(&res, 404, "text/plain; charset=utf-8", "Not Found\n", 10);
    }
    conn_respond(c, res.status, res.content_type, res.body, res.body_len, head, !keep);
    c->want_close = !keep;
}

static conn_t *pconn(http_parser *p) {
    return p->data;
}

static int on_message_begin(http_parser *p) {
    conn_t *c = pconn(p);
    c->url_len = 0;
    c->head_bytes = 0;
    c->body_bytes = 0;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len) {
    conn_t *c = pconn(p);
    size_t max = c->srv->cfg.max_header_bytes;
    c->head_bytes += len;
    if (c->url_len + len > max) {
        c->err_status = 414;
        return -1;
    }
    if (c->url_len + len + 1 > c->url_cap) { // + 1: room for a NUL
        size_t cap = c->url_cap ? c->url_cap : 256;
        while (cap < c->url_len + len + 1) cap *= 2;
        char *grown = realloc(c->url, cap);
        if (!grown) {
            c->err_status = 500;
            return -1;
        }
        c->url = grown;
        c->url_cap = cap;
    }
    memcpy(c->url + c->url_len, at, len);
    c->url_len += len;
    c->url[c->url_len] = '\0';
    return 0;
}

static int on_header_data(http_parser *p, const char *at, size_t len) {
    (void)at;
    conn_t *c = pconn(p);
    c->head_bytes += len + 2; // + ": " or "\r\n", roughly
    if (c->head_bytes > c->srv->cfg.max_header_bytes) {
        c->err_status = 431;
        return -1;
    }
    return 0;
}

static int on_headers_complete(http_parser *p) {
    conn_t *c = pconn(p);
    if (p->http_major != 1) { // HTTP/0.9 request lines ("GET /x") and anything newer
        c->err_status = 400;
        return -1;
    }
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > c->srv->cfg.max_body_bytes) {
        c->err_status = 413;
        return -1;
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len) {
    (void)at;
    conn_t *c = pconn(p);
    c->body_bytes += len;
    if (c->body_bytes > c->srv->cfg.max_body_bytes) {
        c->err_status = 413;
        return -1;
    }
    return 0;
}

static int on_message_complete(http_parser *p) {
    conn_t *c = pconn(p);
    dispatch(c);
    if (c->want_close || c->closing) return -1; // stop parsing: the connection ends here
    uv_timer_start(&c->timer, timer_fired, c->srv->cfg.idle_timeout_ms, 0);
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_data,
    .on_header_value = on_header_data,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- connections ---- */

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)suggested;
    conn_t *c = h->data;
    *buf = uv_buf_init(c->srv->rbuf, sizeof c->srv->rbuf);
}

static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
    conn_t *c = stream->data;
    if (c->closing || nread == 0) return;
    if (nread < 0) {
        /* EOF: answer what was asked before closing (the client may have shut
         * down its write side only); errors: close now */
        if (nread == UV_EOF && c->state == C_READING && uv_stream_get_write_queue_size(stream) > 0) {
            uv_read_stop(stream);
            conn_finish(c);
        } else {
            conn_close(c);
        }
        return;
    }
    if (c->state == C_LINGERING) {
        c->linger_bytes += (size_t)nread;
        if (c->linger_bytes > LINGER_MAX_BYTES) conn_close(c);
        return;
    }
    http_parser_execute(&c->parser, &parser_settings, buf->base, (size_t)nread);
    if (c->closing || c->state == C_LINGERING) return;
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    if (c->want_close || c->parser.upgrade) {
        conn_finish(c); // the response said "close"; nothing more is parsed
    } else if (e != HPE_OK) {
        int status = c->err_status ? c->err_status : e == HPE_HEADER_OVERFLOW ? 431 : 400;
        conn_fail(c, status);
    }
}

static void conn_resume_reading(conn_t *c) {
    if (!c->closing) uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
}

static void on_connection(uv_stream_t *server, int status) {
    http_server_t *s = server->data;
    if (status < 0 || s->destroyed) return;
    conn_t *c = calloc(1, sizeof *c);
    if (!c) {
        /* cannot even say 503: accept into a throwaway handle would need
         * memory too; leave it in the backlog */
        return;
    }
    c->srv = s;
    uv_tcp_init(s->uv, &c->tcp);
    uv_timer_init(s->uv, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->nopen = 2;
    s->open_handles += 2;
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    c->state = C_READING;
    if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) != 0) {
        conn_close(c);
        return;
    }
    if (s->nconns > s->cfg.max_connections) {
        if (s->nconns > 2 * s->cfg.max_connections)
            conn_close(c); // far over the limit: not even an answer
        else
            conn_fail(c, 503);
        return;
    }
    uv_timer_start(&c->timer, timer_fired, s->cfg.idle_timeout_ms, 0);
}

/* ---- server ---- */

rlhf_err_t http_server_route(http_server_t *s, const char *path, http_handler_fn fn, void *ud) {
    if (!s || !path || !fn) return RLHF_EINVAL;
    for (int i = 0; i < s->nroutes; i++) {
        if (strcmp(s->routes[i].path, path) == 0) {
            s->routes[i].fn = fn;
            s->routes[i].ud = ud;
            return RLHF_OK;
        }
    }
    if (s->nroutes == HTTP_MAX_ROUTES) return RLHF_ERANGE;
    char *copy = strdup(path);
    if (!copy) return RLHF_ENOMEM;
    s->routes[s->nroutes++] = (route_t){copy, fn, ud};
    return RLHF_OK;
}

void http_server_set_status_hook(http_server_t *s, http_status_fn fn, void *ud) {
    s->status_fn = fn;
    s->status_ud = ud;
}

int http_server_port(const http_server_t *s) {
    return s->port;
}

int http_server_connections(const http_server_t *s) {
    return s->nconns;
}

rlhf_err_t http_server_new(loop_t *loop, const http_config_t *cfg, http_server_t **out, char *err, size_t errlen) {
    *out = NULL;
    if (!loop) return rlhf_seterr(err, errlen, RLHF_EINVAL, "http: no loop");
    http_config_t c = cfg ? *cfg : (http_config_t){0};
    if (!c.host) c.host = "127.0.0.1";
    if (!c.max_header_bytes) c.max_header_bytes = 8192;
    if (c.max_header_bytes > 65535) c.max_header_bytes = 65535; // http_parser_parse_url offsets are 16-bit
    if (c.max_connections <= 0) c.max_connections = 256;
    if (!c.idle_timeout_ms) c.idle_timeout_ms = 10000;
    if (c.port < 0 || c.port > 65535)
        return rlhf_seterr(err, errlen, RLHF_EINVAL, "http: port %d out of range (use 0..65535, 0 = any free port)",
                           c.port);
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
        struct sockaddr_storage ss;
    } addr;
    int bad = strchr(c.host, ':') ? uv_ip6_addr(c.host, c.port, &addr.in6) : uv_ip4_addr(c.host, c.port, &addr.in4);
    if (bad)
        return rlhf_seterr(err, errlen, RLHF_EINVAL,
                           "http: bind address '%s' is not an IP address (use e.g. 127.0.0.1, 0.0.0.0 or ::1)", c.host);

    http_server_t *s = calloc(1, sizeof *s);
    if (!s) return rlhf_seterr(err, errlen, RLHF_ENOMEM, "http: out of memory");
    s->loop = loop;
    s->uv = loop_uv(loop);
    s->start_ns = uv_hrtime();
    s->host = strdup(c.host);
    c.host = s->host;
    s->cfg = c;
    rlhf_err_t rc = RLHF_ENOMEM;
    if (!s->host) {
        free(s);
        return rlhf_seterr(err, errlen, RLHF_ENOMEM, "http: out of memory");
    }
    if (c.metrics &&
        (rc = metrics_counter_family(c.metrics, "rlhf_http_requests_total", "HTTP responses sent, by status code.",
                                     "code", &s->f_requests)) != RLHF_OK) {
        rlhf_seterr(err, errlen, rc, "http: cannot register rlhf_http_requests_total: %s", rlhf_strerror(rc));
        free(s->host);
        free(s);
        return rc;
    }
    uv_tcp_init(s->uv, &s->listener);
    s->listener.data = s;
    s->open_handles = 1;

    int uerr = uv_tcp_bind(&s->listener, &addr.sa, 0);
    if (!uerr) uerr = uv_listen((uv_stream_t *)&s->listener, 128, on_connection);
    if (uerr) {
        rc = rlhf_seterr(err, errlen, RLHF_EIO, "http: cannot listen on %s:%d: %s", c.host, c.port, uv_strerror(uerr));
        goto fail;
    }
    int alen = sizeof addr;
    if ((uerr = uv_tcp_getsockname(&s->listener, &addr.sa, &alen)) != 0) {
        rc = rlhf_seterr(err, errlen, RLHF_EIO, "http: getsockname: %s", uv_strerror(uerr));
        goto fail;
    }
    s->port = ntohs(addr.sa.sa_family == AF_INET6 ? addr.in6.sin6_port : addr.in4.sin_port);
    if ((rc = http_server_route(s, "/metrics", route_metrics, s)) != RLHF_OK ||
        (rc = http_server_route(s, "/healthz", route_healthz, s)) != RLHF_OK ||
        (rc = http_server_route(s, "/status", route_status, s)) != RLHF_OK ||
        (rc = http_server_route(s, "/", route_index, s)) != RLHF_OK) {
        rlhf_seterr(err, errlen, rc, "http: out of memory");
        goto fail;
    }
    *out = s;
    return RLHF_OK;
fail:
    http_server_destroy(&s);
    return rc;
}

void http_server_destroy(http_server_t **p) {
    if (!p || !*p) return;
    http_server_t *s = *p;
    *p = NULL;
    s->destroyed = true;
    while (s->conns) conn_close(s->conns); // unlinks the head
    uv_close((uv_handle_t *)&s->listener, listener_closed);
}
