/*
 * http.h - a small HTTP/1.1 server on the process's loop, for /metrics
 * (Prometheus text), /healthz, /status (JSON) and / (a page hook).
 *
 * Requests are parsed with http_parser; only GET and HEAD are served (others
 * get 405), bodies are refused beyond max_body_bytes (413), a request line
 * plus headers beyond max_header_bytes gets 431 (414 when the URL alone is too
 * long), anything malformed gets 400. After an error response the connection
 * is half-closed and the rest of the input discarded for a moment, so the
 * client reads the response instead of a reset. Keep-alive and pipelining are
 * supported; a connection idle for idle_timeout_ms (or slower than that to
 * send one whole request) is closed. Connections beyond max_connections get
 * 503 and are closed.
 *
 * Built-in routes (each can be replaced with http_server_route):
 *   /metrics  metrics_render of cfg.metrics, METRICS_CONTENT_TYPE
 *   /healthz  "ok\n"
 *   /status   {"uptime_seconds", "pid", "http_connections",
 *              "metrics": metrics_snapshot} plus whatever the status hook adds
 *   /         a short text naming the other routes
 * With cfg.metrics the server counts rlhf_http_requests_total{code}.
 *
 * All functions run on the loop thread. What it deliberately is not: no TLS,
 * no request bodies to speak of, no chunked responses, no HTTP/2.
 */
#ifndef RLHF_HTTP_H
#define RLHF_HTTP_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "common/loop.h"
#include "common/metrics.h"

#define HTTP_MAX_ROUTES 16

typedef struct http_server http_server_t;

typedef struct {
    const char *host;         // bind address (IPv4 or IPv6 literal); NULL = "127.0.0.1"
    int port;                 // 0 = ephemeral (see http_server_port)
    size_t max_header_bytes;  // request line + headers; 0 = 8192
    size_t max_body_bytes;    // 0 = no body at all
    int max_connections;      // 0 = 256
    uint64_t idle_timeout_ms; // 0 = 10000
    metrics_t *metrics;       // borrowed, may be NULL (then /metrics is empty)
} http_config_t;

/* Borrowed for the duration of the handler call. */
typedef struct {
    const char *method; // "GET" or "HEAD" (HEAD responses drop the body)
    const char *path;   // decoded no further; without the query
    const char *query;  // after '?', "" if none
} http_request_t;

/* Filled in by a handler; preset to 200, "text/plain; charset=utf-8", no body.
 * body is malloc'd and owned by the server after the handler returns;
 * content_type must stay valid (a string literal). */
typedef struct {
    int status;
    const char *content_type;
    char *body;
    size_t body_len;
} http_response_t;

typedef void (*http_handler_fn)(const http_request_t *req, http_response_t *res, void *ud);
/* Adds the process's own fields to the /status object (borrowed). */
typedef void (*http_status_fn)(json_t *status, void *ud);

/* Bind, listen and serve on loop (borrowed, must outlive the server); caller
 * owns *out (http_server_destroy). cfg is copied (host too). Errors:
 * RLHF_EINVAL (bad address or port, naming it in err), RLHF_EIO (bind/listen
 * failed, with the reason), RLHF_ENOMEM. */
rlhf_err_t http_server_new(loop_t *loop, const http_config_t *cfg, http_server_t **out, char *err, size_t errlen);

/* Close the listener and every connection; memory is released by close
 * callbacks, so the loop must run again (loop_run, or loop_destroy does it).
 * *p = NULL. */
void http_server_destroy(http_server_t **p);

/* The port actually bound (the ephemeral one when cfg.port was 0). */
int http_server_port(const http_server_t *s);

/* Serve path (exact match, e.g. "/") with fn, replacing a built-in or earlier
 * route. path is copied. RLHF_ERANGE (HTTP_MAX_ROUTES), RLHF_ENOMEM. */
rlhf_err_t http_server_route(http_server_t *s, const char *path, http_handler_fn fn, void *ud);

/* Hook called by /status after the built-in fields. */
void http_server_set_status_hook(http_server_t *s, http_status_fn fn, void *ud);

/* Open connections (for tests and /status). */
int http_server_connections(const http_server_t *s);

/* Helper for handlers: copy len bytes of body (NUL-terminated copy) with the
 * given status and content type. RLHF_ENOMEM (res then becomes a 500). */
rlhf_err_t http_response_set(http_response_t *res, int status, const char *content_type, const char *body, size_t len);

#endif
