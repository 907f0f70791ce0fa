/*
 * metrics.h - a per-process registry of counters, gauges and histograms with
 * labels, rendered as Prometheus text exposition (format 0.0.4) for /metrics
 * and as a JSON snapshot (jansson) for /status.
 *
 * One registry per process, built in main and passed down; there is no
 * default registry. A family is a metric name with a type, a help text and a
 * fixed list of label names ("queue,direction"); a series is one combination
 * of label values inside a family. Look a series up once (at start-up, or when
 * a new label value first appears) and keep the handle: handles stay valid
 * until metrics_destroy, and updating through a handle is lock-free (C11
 * atomics), so worker threads can count without contention.
 *
 *   metrics_family_t *f;
 *   metrics_counter_t *in;
 *   metrics_counter_family(m, "rlhf_messages_total", "Messages by queue.", "queue,direction", &f);
 *   metrics_counter_get(f, (const char *[]){"work", "in"}, &in);
 *   metrics_counter_inc(in);
 *
 * Registering a family twice with the same type and label names returns the
 * existing family (the first help text wins), so modules can share
 * rlhf_messages_total without coordinating; a different type, label list or
 * bucket list is RLHF_EMISMATCH. Names are checked against the Prometheus
 * rules: metric [a-zA-Z_:][a-zA-Z0-9_:]*, label [a-zA-Z_][a-zA-Z0-9_]* not
 * starting with "__" (and "le" is reserved in histograms).
 *
 * Every update function accepts a NULL handle and does nothing, so code can
 * run without a registry.
 *
 * What it deliberately is not: no summaries/quantiles, no timestamps, no
 * series removal, no protobuf or OpenMetrics format. Families and series are
 * rendered in the order they were created.
 */
#ifndef RLHF_METRICS_H
#define RLHF_METRICS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

#define METRICS_MAX_LABELS    8   // label names per family
#define METRICS_MAX_SERIES    256 // label value combinations per family (RLHF_ERANGE beyond)
#define METRICS_MAX_BUCKETS   64  // histogram upper bounds, +Inf excluded
#define METRICS_MAX_VALUE_LEN 256 // bytes per label value

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

typedef enum { METRICS_COUNTER, METRICS_GAUGE, METRICS_HISTOGRAM } metrics_type_t;

typedef struct metrics metrics_t;                     // the registry
typedef struct metrics_family metrics_family_t;       // owned by the registry
typedef struct metrics_counter metrics_counter_t;     // owned by the registry
typedef struct metrics_gauge metrics_gauge_t;         // owned by the registry
typedef struct metrics_histogram metrics_histogram_t; // owned by the registry

/* Called at the start of every render/snapshot, on the rendering thread, so a
 * process can refresh gauges computed on demand (queue depths, RSS). It may
 * look up series and update them; it must not register collectors. */
typedef void (*metrics_collect_fn)(metrics_t *m, void *ud);

/* New empty registry; caller owns *out (metrics_destroy). RLHF_ENOMEM. */
rlhf_err_t metrics_new(metrics_t **out);
/* Frees the registry and every family and series handle; *p = NULL. */
void metrics_destroy(metrics_t **p);

/* Get or create a family. labels: comma-separated label names ("queue,direction"),
 * NULL or "" for none. help: one line, may be NULL. *out is borrowed from the
 * registry. Errors: RLHF_EINVAL (bad metric or label name, duplicate label,
 * too many labels), RLHF_EMISMATCH (name registered with another type, label
 * list or bucket list), RLHF_ENOMEM. */
rlhf_err_t metrics_counter_family(metrics_t *m, const char *name, const char *help, const char *labels,
                                  metrics_family_t **out);
rlhf_err_t metrics_gauge_family(metrics_t *m, const char *name, const char *help, const char *labels,
                                metrics_family_t **out);
/* bounds: strictly increasing finite upper bounds (a trailing +Inf is
 * accepted and ignored; +Inf is always implied), nbounds <= METRICS_MAX_BUCKETS.
 * bounds NULL selects the Prometheus defaults (.005 .01 .025 .05 .1 .25 .5 1
 * 2.5 5 10, for seconds). */
rlhf_err_t metrics_histogram_family(metrics_t *m, const char *name, const char *help, const char *labels,
                                    const double *bounds, size_t nbounds, metrics_family_t **out);

/* Get or create the series with these label values (one per label name, in
 * order; NULL for a family without labels). Values are copied; any UTF-8
 * text up to METRICS_MAX_VALUE_LEN bytes (quotes, backslashes and newlines are
 * escaped on output). Thread-safe. Errors: RLHF_EMISMATCH (family of another
 * type), RLHF_EINVAL (NULL value, value too long, not UTF-8), RLHF_ERANGE (METRICS_MAX_SERIES reached), RLHF_ENOMEM. */
rlhf_err_t metrics_counter_get(metrics_family_t *f, const char *const *values, metrics_counter_t **out);
rlhf_err_t metrics_gauge_get(metrics_family_t *f, const char *const *values, metrics_gauge_t **out);
rlhf_err_t metrics_histogram_get(metrics_family_t *f, const char *const *values, metrics_histogram_t **out);

/* Shortcuts for families without labels: family and its single series. */
rlhf_err_t metrics_counter(metrics_t *m, const char *name, const char *help, metrics_counter_t **out);
rlhf_err_t metrics_gauge(metrics_t *m, const char *name, const char *help, metrics_gauge_t **out);
rlhf_err_t metrics_histogram(metrics_t *m, const char *name, const char *help, const double *bounds, size_t nbounds,
                             metrics_histogram_t **out);

/* Updates: thread-safe, lock-free, NULL handle = no-op. A counter only goes
 * up: negative or NaN increments are ignored. */
void metrics_counter_inc(metrics_counter_t *c);
void metrics_counter_add(metrics_counter_t *c, double v);
void metrics_gauge_set(metrics_gauge_t *g, double v);
void metrics_gauge_add(metrics_gauge_t *g, double v);
void metrics_histogram_observe(metrics_histogram_t *h, double v);

/* Current values (0 for NULL handles). */
double metrics_counter_value(const metrics_counter_t *c);
double metrics_gauge_value(const metrics_gauge_t *g);
uint64_t metrics_histogram_count(const metrics_histogram_t *h);
double metrics_histogram_sum(const metrics_histogram_t *h);

/* Run fn(m, ud) at the start of every render and snapshot. RLHF_ENOMEM. */
rlhf_err_t metrics_add_collector(metrics_t *m, metrics_collect_fn fn, void *ud);

/* Standard process metrics refreshed by a collector: process_cpu_seconds_total,
 * process_resident_memory_bytes, process_virtual_memory_bytes,
 * process_open_fds, process_start_time_seconds (from /proc). */
rlhf_err_t metrics_register_process(metrics_t *m);

/* Prometheus text exposition of every family with at least one series.
 * *out is NUL-terminated, caller owns it (free); *len excludes the NUL.
 * RLHF_ENOMEM. */
rlhf_err_t metrics_render(metrics_t *m, char **out, size_t *len);

/* JSON snapshot, caller owns *out (json_decref):
 *   {"name": {"type": "counter", "help": "...",
 *             "series": [{"labels": {"queue": "work"}, "value": 3}, ...]}, ...}
 * histogram series carry "count", "sum" and "buckets": [[le, cumulative], ...]
 * without the +Inf bucket (it equals count). NaN and infinities become null.
 * RLHF_ENOMEM. */
rlhf_err_t metrics_snapshot(metrics_t *m, json_t **out);

/* Name rules (see above). */
bool metrics_valid_name(const char *name);
bool metrics_valid_label_name(const char *name);

/* Shortest text that reads back to v ("0.25", "1e-06", "+Inf", "NaN");
 * buf of at least 32 bytes. Returns buf. */
const char *metrics_format_double(char *buf, size_t len, double v);

#endif
