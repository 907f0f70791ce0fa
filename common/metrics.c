/*
 * metrics.c - counters, gauges and histograms with labels; Prometheus text
 * exposition 0.0.4 and a JSON snapshot (see metrics.h).
 *
 * Concurrency: the family list and each family's series array change only
 * under the registry mutex (registration, series creation, rendering). Values
 * are C11 atomics: a counter or gauge is a double stored as its bit pattern
 * and added to with a compare-and-swap loop; a histogram keeps one atomic
 * count per bucket (not cumulative) plus an atomic sum, and a scrape derives
 * the cumulative counts and _count from the buckets, so _count always equals
 * the +Inf bucket even while observations are racing with the scrape.
 */
#include "common/metrics.h"

#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* One labelled time series. The typed handles below wrap it as their only
 * member, so a handle converts to and from its series_t with a cast. */
typedef struct {
    metrics_family_t *fam;     // borrowed
    char **values;             // (nlabels) owned copies
    _Atomic uint64_t bits;     // counter/gauge value: a double's bit pattern
    _Atomic uint64_t sum_bits; // histogram: sum of observations (double bits)
    _Atomic uint64_t *counts;  // histogram: (nbounds + 1) per-bucket counts, last = +Inf; owned
} series_t;

struct metrics_counter {
    series_t s;
};
struct metrics_gauge {
    series_t s;
};
struct metrics_histogram {
    series_t s;
};

struct metrics_family {
    metrics_t *reg; // borrowed
    metrics_type_t type;
    char *name; // owned
    char *help; // owned, "" if none
    int nlabels;
    char *labels[METRICS_MAX_LABELS]; // owned
    int nbounds;
    double *bounds; // (nbounds) owned, histograms only
    int nseries, capseries;
    series_t **series; // (nseries) owned, creation order
    struct metrics_family *next;
};

typedef struct {
    metrics_collect_fn fn;
    void *ud;
} collector_t;

/* Handles of metrics_register_process(). */
typedef struct {
    metrics_counter_t *cpu;
    metrics_gauge_t *rss, *vsz, *fds, *start;
} proc_metrics_t;

struct metrics {
    pthread_mutex_t mu;
    metrics_family_t *head, *tail; // creation order
    int ncollectors, capcollectors;
    collector_t *collectors; // owned
    proc_metrics_t *proc;    // owned, NULL until metrics_register_process
};

static const double default_bounds[] = {.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10};

/* ---- atomics on doubles ---- */

static uint64_t d2u(double d) {
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static double u2d(uint64_t u) {
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static void atomic_add_double(_Atomic uint64_t *p, double v) {
    uint64_t old = atomic_load_explicit(p, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(p, &old, d2u(u2d(old) + v), memory_order_relaxed,
                                                  memory_order_relaxed)) {
    }
}

/* ---- names ---- */

bool metrics_valid_name(const char *s) {
    if (!s || !*s) return false;
    for (const char *p = s; *p; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
                  (p != s && c >= '0' && c <= '9');
        if (!ok) return false;
    }
    return true;
}

bool metrics_valid_label_name(const char *s) {
    if (!s || !*s || strncmp(s, "__", 2) == 0) return false;
    for (const char *p = s; *p; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (p != s && c >= '0' && c <= '9');
        if (!ok) return false;
    }
    return true;
}

/* Split "a,b" into owned names (spaces around names allowed). */
static rlhf_err_t parse_labels(const char *spec, metrics_type_t type, char **names, int *n) {
    *n = 0;
    if (!spec) return RLHF_OK;
    const char *p = spec;
    while (*p == ' ') p++;
    if (!*p) return RLHF_OK;
    for (;;) {
        const char *start = p;
        while (*p && *p != ',') p++;
        const char *end = p;
        while (start < end && *start == ' ') start++;
        while (end > start && end[-1] == ' ') end--;
        if (*n == METRICS_MAX_LABELS) return RLHF_EINVAL;
        char *name = strndup(start, (size_t)(end - start));
        if (!name) return RLHF_ENOMEM;
        names[(*n)++] = name;
        if (!metrics_valid_label_name(name)) return RLHF_EINVAL;
        if (type == METRICS_HISTOGRAM && strcmp(name, "le") == 0) return RLHF_EINVAL;
        for (int i = 0; i + 1 < *n; i++)
            if (strcmp(names[i], name) == 0) return RLHF_EINVAL;
        if (!*p) return RLHF_OK;
        p++; // ','
    }
}

/* ---- registry ---- */

rlhf_err_t metrics_new(metrics_t **out) {
    *out = NULL;
    metrics_t *m = calloc(1, sizeof *m);
    if (!m) return RLHF_ENOMEM;
    if (pthread_mutex_init(&m->mu, NULL) != 0) {
        free(m);
        return RLHF_ENOMEM;
    }
    *out = m;
    return RLHF_OK;
}

static void series_free(series_t *s, int nlabels) {
    if (!s) return;
    for (int i = 0; i < nlabels; i++) free(s->values[i]);
    free(s->values);
    free(s->counts);
    free(s);
}

static void family_free(metrics_family_t *f) {
    if (!f) return;
    for (int i = 0; i < f->nseries; i++) series_free(f->series[i], f->nlabels);
    free(f->series);
    for (int i = 0; i < f->nlabels; i++) free(f->labels[i]);
    free(f->bounds);
    free(f->name);
    free(f->help);
    free(f);
}

void metrics_destroy(metrics_t **p) {
    if (!p || !*p) return;
    metrics_t *m = *p;
    for (metrics_family_t *f = m->head, *next; f; f = next) {
        next = f->next;
        family_free(f);
    }
    free(m->collectors);
    free(m->proc);
    pthread_mutex_destroy(&m->mu);
    free(m);
    *p = NULL;
}

static bool same_definition(const metrics_family_t *f, metrics_type_t type, char **labels, int nlabels,
                            const double *bounds, int nbounds) {
    if (f->type != type || f->nlabels != nlabels) return false;
    for (int i = 0; i < nlabels; i++)
        if (strcmp(f->labels[i], labels[i]) != 0) return false;
    if (type == METRICS_HISTOGRAM) {
        if (f->nbounds != nbounds) return false;
        for (int i = 0; i < nbounds; i++)
            if (f->bounds[i] != bounds[i]) return false;
    }
    return true;
}

static rlhf_err_t family_get(metrics_t *m, metrics_type_t type, const char *name, const char *help, const char *labels,
                             const double *bounds, size_t nbounds, metrics_family_t **out) {
    char *names[METRICS_MAX_LABELS] = {0};
    int nnames = 0;
    metrics_family_t *f = NULL;
    rlhf_err_t rc;

    *out = NULL;
    if (!m || !metrics_valid_name(name)) return RLHF_EINVAL;
    if (type == METRICS_HISTOGRAM) {
        if (!bounds) {
            bounds = default_bounds;
            nbounds = sizeof default_bounds / sizeof default_bounds[0];
        }
        if (nbounds > 0 && isinf(bounds[nbounds - 1]) && bounds[nbounds - 1] > 0) nbounds--;
        if (nbounds > METRICS_MAX_BUCKETS) return RLHF_EINVAL;
        for (size_t i = 0; i < nbounds; i++) {
            if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1]))) return RLHF_EINVAL;
        }
    } else {
        nbounds = 0;
    }
    rc = parse_labels(labels, type, names, &nnames);
    if (rc != RLHF_OK) goto fail;

    pthread_mutex_lock(&m->mu);
    for (metrics_family_t *g = m->head; g; g = g->next) {
        if (strcmp(g->name, name) != 0) continue;
        rc = same_definition(g, type, names, nnames, bounds, (int)nbounds) ? RLHF_OK : RLHF_EMISMATCH;
        pthread_mutex_unlock(&m->mu);
        if (rc == RLHF_OK) *out = g;
        goto out; // frees the parsed names either way
    }
    rc = RLHF_ENOMEM;
    f = calloc(1, sizeof *f);
    if (!f) goto fail_locked;
    f->reg = m;
    f->type = type;
    f->name = strdup(name);
    f->help = strdup(help ? help : "");
    if (!f->name || !f->help) goto fail_locked;
    if (nbounds) {
        f->bounds = malloc(nbounds * sizeof *f->bounds);
        if (!f->bounds) goto fail_locked;
        memcpy(f->bounds, bounds, nbounds * sizeof *f->bounds);
    }
    f->nbounds = (int)nbounds;
    memcpy(f->labels, names, sizeof names);
    f->nlabels = nnames;
    nnames = 0; // moved into f
    if (m->tail)
        m->tail->next = f;
    else
        m->head = f;
    m->tail = f;
    pthread_mutex_unlock(&m->mu);
    *out = f;
    return RLHF_OK;

fail_locked:
    pthread_mutex_unlock(&m->mu);
    family_free(f);
fail:
out:
    for (int i = 0; i < nnames; i++) free(names[i]);
    return rc;
}

rlhf_err_t metrics_counter_family(metrics_t *m, const char *name, const char *help, const char *labels,
                                  metrics_family_t **out) {
    return family_get(m, METRICS_COUNTER, name, help, labels, NULL, 0, out);
}

rlhf_err_t metrics_gauge_family(metrics_t *m, const char *name, const char *help, const char *labels,
                                metrics_family_t **out) {
    return family_get(m, METRICS_GAUGE, name, help, labels, NULL, 0, out);
}

rlhf_err_t metrics_histogram_family(metrics_t *m, const char *name, const char *help, const char *labels,
                                    const double *bounds, size_t nbounds, metrics_family_t **out) {
    return family_get(m, METRICS_HISTOGRAM, name, help, labels, bounds, nbounds, out);
}

/* Well-formed UTF-8 (no overlongs, surrogates or code points past U+10FFFF),
 * as Prometheus and JSON require of label values. */
static bool utf8_valid(const char *str) {
    const unsigned char *s = (const unsigned char *)str;
    while (*s) {
        unsigned c = *s;
        int n;
        unsigned cp;
        if (c < 0x80) {
            s++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            n = 1, cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2, cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3, cp = c & 0x07;
        } else {
            return false;
        }
        for (int i = 1; i <= n; i++) {
            if ((s[i] & 0xC0) != 0x80) return false; // also stops at the NUL
            cp = (cp << 6) | (s[i] & 0x3F);
        }
        static const unsigned min_cp[4] = {0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        s += n + 1;
    }
    return true;
}

/* Find or create the series of f with these values. */
static rlhf_err_t series_get(metrics_family_t *f, metrics_type_t type, const char *const *values, series_t **out) {
    *out = NULL;
    if (!f) return RLHF_EINVAL;
    if (f->type != type) return RLHF_EMISMATCH;
    for (int i = 0; i < f->nlabels; i++) {
        if (!values || !values[i] || strlen(values[i]) > METRICS_MAX_VALUE_LEN || !utf8_valid(values[i]))
            return RLHF_EINVAL;
    }
    metrics_t *m = f->reg;
    rlhf_err_t rc = RLHF_OK;
    series_t *s = NULL;
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < f->nseries; i++) {
        series_t *t = f->series[i];
        int j = 0;
        while (j < f->nlabels && strcmp(t->values[j], values[j]) == 0) j++;
        if (j == f->nlabels) {
            *out = t;
            goto done;
        }
    }
    if (f->nseries == METRICS_MAX_SERIES) {
        rc = RLHF_ERANGE;
        goto done;
    }
    rc = RLHF_ENOMEM;
    if (f->nseries == f->capseries) {
        int cap = f->capseries ? 2 * f->capseries : 4;
        series_t **grown = realloc(f->series, (size_t)cap * sizeof *grown);
        if (!grown) goto done;
        f->series = grown;
        f->capseries = cap;
    }
    /* the typed wrappers all have the size of series_t */
    s = calloc(1, sizeof(struct metrics_histogram));
    if (!s) goto done;
    s->fam = f;
    s->values = calloc((size_t)f->nlabels + 1, sizeof *s->values);
    if (!s->values) goto done;
    for (int i = 0; i < f->nlabels; i++) {
        s->values[i] = strdup(values[i]);
        if (!s->values[i]) goto done;
    }
    if (type == METRICS_HISTOGRAM) {
        s->counts = calloc((size_t)f->nbounds + 1, sizeof *s->counts);
        if (!s->counts) goto done;
    }
    atomic_init(&s->bits, d2u(0.0));
    atomic_init(&s->sum_bits, d2u(0.0));
    f->series[f->nseries++] = s;
    *out = s;
    s = NULL;
    rc = RLHF_OK;
done:
    pthread_mutex_unlock(&m->mu);
    series_free(s, f->nlabels);
    return rc;
}

rlhf_err_t metrics_counter_get(metrics_family_t *f, const char *const *values, metrics_counter_t **out) {
    series_t *s;
    rlhf_err_t rc = series_get(f, METRICS_COUNTER, values, &s);
    *out = (metrics_counter_t *)s;
    return rc;
}

rlhf_err_t metrics_gauge_get(metrics_family_t *f, const char *const *values, metrics_gauge_t **out) {
    series_t *s;
    rlhf_err_t rc = series_get(f, METRICS_GAUGE, values, &s);
    *out = (metrics_gauge_t *)s;
    return rc;
}

rlhf_err_t metrics_histogram_get(metrics_family_t *f, const char *const *values, metrics_histogram_t **out) {
    series_t *s;
    rlhf_err_t rc = series_get(f, METRICS_HISTOGRAM, values, &s);
    *out = (metrics_histogram_t *)s;
    return rc;
}

rlhf_err_t metrics_counter(metrics_t *m, const char *name, const char *help, metrics_counter_t **out) {
    metrics_family_t *f;
    *out = NULL;
    rlhf_err_t rc = metrics_counter_family(m, name, help, NULL, &f);
    return rc != RLHF_OK ? rc : metrics_counter_get(f, NULL, out);
}

rlhf_err_t metrics_gauge(metrics_t *m, const char *name, const char *help, metrics_gauge_t **out) {
    metrics_family_t *f;
    *out = NULL;
    rlhf_err_t rc = metrics_gauge_family(m, name, help, NULL, &f);
    return rc != RLHF_OK ? rc : metrics_gauge_get(f, NULL, out);
}

rlhf_err_t metrics_histogram(metrics_t *m, const char *name, const char *help, const double *bounds, size_t nbounds,
                             metrics_histogram_t **out) {
    metrics_family_t *f;
    *out = NULL;
    rlhf_err_t rc = metrics_histogram_family(m, name, help, NULL, bounds, nbounds, &f);
    return rc != RLHF_OK ? rc : metrics_histogram_get(f, NULL, out);
}

/* ---- updates ---- */

void metrics_counter_inc(metrics_counter_t *c) {
    metrics_counter_add(c, 1.0);
}

void metrics_counter_add(metrics_counter_t *c, double v) {
    if (!c || !(v >= 0)) return; // also drops NaN
    atomic_add_double(&c->s.bits, v);
}

void metrics_gauge_set(metrics_gauge_t *g, double v) {
    if (g) atomic_store_explicit(&g->s.bits, d2u(v), memory_order_relaxed);
}

void metrics_gauge_add(metrics_gauge_t *g, double v) {
    if (g) atomic_add_double(&g->s.bits, v);
}

void metrics_histogram_observe(metrics_histogram_t *h, double v) {
    if (!h) return;
    const metrics_family_t *f = h->s.fam;
    int lo = 0, hi = f->nbounds; // first bucket with v <= bound; NaN lands in +Inf
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (v <= f->bounds[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    if (isnan(v)) lo = f->nbounds;
    atomic_fetch_add_explicit(&h->s.counts[lo], 1, memory_order_relaxed);
    atomic_add_double(&h->s.sum_bits, v);
}

double metrics_counter_value(const metrics_counter_t *c) {
    return c ? u2d(atomic_load_explicit(&((metrics_counter_t *)c)->s.bits, memory_order_relaxed)) : 0.0;
}

double metrics_gauge_value(const metrics_gauge_t *g) {
    return g ? u2d(atomic_load_explicit(&((metrics_gauge_t *)g)->s.bits, memory_order_relaxed)) : 0.0;
}

uint64_t metrics_histogram_count(const metrics_histogram_t *h) {
    if (!h) return 0;
    uint64_t n = 0;
    for (int i = 0; i <= h->s.fam->nbounds; i++)
        n += atomic_load_explicit(&((metrics_histogram_t *)h)->s.counts[i], memory_order_relaxed);
    return n;
}

double metrics_histogram_sum(const metrics_histogram_t *h) {
    return h ? u2d(atomic_load_explicit(&((metrics_histogram_t *)h)->s.sum_bits, memory_order_relaxed)) : 0.0;
}

/* ---- collectors ---- */

rlhf_err_t metrics_add_collector(metrics_t *m, metrics_collect_fn fn, void *ud) {
    if (!m || !fn) return RLHF_EINVAL;
    rlhf_err_t rc = RLHF_OK;
    pthread_mutex_lock(&m->mu);
    if (m->ncollectors == m->capcollectors) {
        int cap = m->capcollectors ? 2 * m->capcollectors : 4;
        collector_t *grown = realloc(m->collectors, (size_t)cap * sizeof *grown);
        if (!grown) {
            rc = RLHF_ENOMEM;
            goto done;
        }
        m->collectors = grown;
        m->capcollectors = cap;
    }
    m->collectors[m->ncollectors++] = (collector_t){fn, ud};
done:
    pthread_mutex_unlock(&m->mu);
    return rc;
}

/* Run the collectors without holding the mutex (they look up series). */
static void run_collectors(metrics_t *m) {
    for (int i = 0;; i++) {
        pthread_mutex_lock(&m->mu);
        collector_t c = {0};
        if (i < m->ncollectors) c = m->collectors[i];
        pthread_mutex_unlock(&m->mu);
        if (!c.fn) return;
        c.fn(m, c.ud);
    }
}

/* Read a whole small /proc file into buf (NUL-terminated); bytes or -1. */
static long read_small(const char *path, char *buf, size_t len) {
    FILE *fp = fopen(path, "r");
    if (!fp) return -1;
    size_t n = fread(buf, 1, len - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    return (long)n;
}

static void proc_collect(metrics_t *m, void *ud) {
    (void)m;
    proc_metrics_t *p = ud;
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        double cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
                     ru.ru_stime.tv_usec * 1e-6;
        atomic_store_explicit(&p->cpu->s.bits, d2u(cpu), memory_order_relaxed); // monotonic by nature
    }
    char buf[256];
    long page = sysconf(_SC_PAGESIZE);
    unsigned long long vsz_pages, rss_pages;
    if (read_small("/proc/self/statm", buf, sizeof buf) > 0 && sscanf(buf, "%llu %llu", &vsz_pages, &rss_pages) == 2) {
        metrics_gauge_set(p->vsz, (double)vsz_pages * page);
        metrics_gauge_set(p->rss, (double)rss_pages * page);
    }
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        int n = 0;
        for (struct dirent *e; (e = readdir(d));)
            if (e->d_name[0] != '.') n++;
        closedir(d);
        metrics_gauge_set(p->fds, n - 1); // minus the directory's own fd
    }
}

/* Process start: boot time (/proc/stat btime) + starttime ticks (/proc/self/stat field 22). */
static double proc_start_time(void) {
    char buf[4096];
    double btime = -1, ticks = -1;
    if (read_small("/proc/stat", buf, sizeof buf) > 0) {
        const char *b = strstr(buf, "\nbtime ");
        if (b) btime = strtod(b + 7, NULL);
    }
    if (read_small("/proc/self/stat", buf, sizeof buf) > 0) {
        const char *p = strrchr(buf, ')'); // comm may contain spaces
        for (int field = 2; p && field < 22; field++) p = strchr(p + 1, ' ');
        if (p) ticks = strtod(p + 1, NULL);
    }
    if (btime < 0 || ticks < 0) return (double)time(NULL);
    return btime + ticks / (double)sysconf(_SC_CLK_TCK);
}

rlhf_err_t metrics_register_process(metrics_t *m) {
    if (!m) return RLHF_EINVAL;
    if (m->proc) return RLHF_OK;
    proc_metrics_t *p = calloc(1, sizeof *p);
    if (!p) return RLHF_ENOMEM;
    rlhf_err_t rc;
    if ((rc = metrics_counter(m, "process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
                              &p->cpu)) != RLHF_OK ||
        (rc = metrics_gauge(m, "process_resident_memory_bytes", "Resident memory size in bytes.", &p->rss)) !=
            RLHF_OK ||
        (rc = metrics_gauge(m, "process_virtual_memory_bytes", "Virtual memory size in bytes.", &p->vsz)) != RLHF_OK ||
        (rc = metrics_gauge(m, "process_open_fds", "Number of open file descriptors.", &p->fds)) != RLHF_OK ||
        (rc = metrics_gauge(m, "process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
                            &p->start)) != RLHF_OK)
        goto fail;
    metrics_gauge_set(p->start, proc_start_time());
    if ((rc = metrics_add_collector(m, proc_collect, p)) != RLHF_OK) goto fail;
    m->proc = p;
    return RLHF_OK;
fail:
    free(p);
    return rc;
}

/* ---- text exposition ---- */

const char *metrics_format_double(char *buf, size_t len, double v) {
    if (!buf || len == 0) return ""; /* also tells gcc -O3 + ASan that buf is not NULL */
    if (isnan(v)) {
        snprintf(buf, len, "NaN");
    } else if (isinf(v)) {
        snprintf(buf, len, v > 0 ? "+Inf" : "-Inf");
    } else if (v == floor(v) && fabs(v) < 9007199254740992.0) { // integral and exact: plain digits
        snprintf(buf, len, "%.0f", v == 0 ? 0.0 : v);
    } else {
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(buf, len, "%.*g", prec, v);
            if (strtod(buf, NULL) == v) break;
        }
    }
    return buf;
}

/* Growable text buffer; on allocation failure sets oom and ignores further appends. */
typedef struct {
    char *buf;
    size_t len, cap;
    bool oom;
} sb_t;

static bool sb_reserve(sb_t *b, size_t extra) {
    if (b->oom) return false;
    if (b->len + extra + 1 <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra + 1) cap *= 2;
    char *grown = realloc(b->buf, cap);
    if (!grown) {
        b->oom = true;
        return false;
    }
    b->buf = grown;
    b->cap = cap;
    return true;
}

static void sb_putn(sb_t *b, const char *s, size_t n) {
    if (!sb_reserve(b, n)) return;
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = '\0';
}

static void sb_puts(sb_t *b, const char *s) {
    sb_putn(b, s, strlen(s));
}

/* Escape backslash and newline (and the double quote when quoted). */
static void sb_escaped(sb_t *b, const char *s, bool quote) {
    for (const char *p = s; *p; p++) {
        if (*p == '\\')
            sb_putn(b, "\\\\", 2);
        else if (*p == '\n')
            sb_putn(b, "\\n", 2);
        else if (quote && *p == '"')
            sb_putn(b, "\\\"", 2);
        else
            sb_putn(b, p, 1);
    }
}

static void sb_double(sb_t *b, double v) {
    char num[40];
    sb_puts(b, metrics_format_double(num, sizeof num, v));
}

/* name{l1="v1",...,extra_name="extra_value"} value\n */
static void sb_sample(sb_t *b, const metrics_family_t *f, const char *suffix, const series_t *s, const char *extra_name,
                      const char *extra_value, double v) {
    sb_puts(b, f->name);
    sb_puts(b, suffix);
    if (f->nlabels || extra_name) {
        sb_putn(b, "{", 1);
        for (int i = 0; i < f->nlabels; i++) {
            if (i) sb_putn(b, ",", 1);
            sb_puts(b, f->labels[i]);
            sb_putn(b, "=\"", 2);
            sb_escaped(b, s->values[i], true);
            sb_putn(b, "\"", 1);
        }
        if (extra_name) {
            if (f->nlabels) sb_putn(b, ",", 1);
            sb_puts(b, extra_name);
            sb_putn(b, "=\"", 2);
            sb_puts(b, extra_value);
            sb_putn(b, "\"", 1);
        }
        sb_putn(b, "}", 1);
    }
    sb_putn(b, " ", 1);
    sb_double(b, v);
    sb_putn(b, "\n", 1);
}

static const char *type_name(metrics_type_t t) {
    return t == METRICS_COUNTER ? "counter" : t == METRICS_GAUGE ? "gauge" : "histogram";
}

rlhf_err_t metrics_render(metrics_t *m, char **out, size_t *len) {
    *out = NULL;
    if (len) *len = 0;
    if (!m) return RLHF_EINVAL;
    run_collectors(m);
    sb_t b = {0};
    sb_reserve(&b, 0);
    pthread_mutex_lock(&m->mu);
    for (const metrics_family_t *f = m->head; f; f = f->next) {
        if (f->nseries == 0) continue;
        if (f->help[0]) {
            sb_puts(&b, "# HELP ");
            sb_puts(&b, f->name);
            sb_putn(&b, " ", 1);
            sb_escaped(&b, f->help, false);
            sb_putn(&b, "\n", 1);
        }
        sb_puts(&b, "# TYPE ");
        sb_puts(&b, f->name);
        sb_putn(&b, " ", 1);
        sb_puts(&b, type_name(f->type));
        sb_putn(&b, "\n", 1);
        for (int i = 0; i < f->nseries; i++) {
            series_t *s = f->series[i];
            if (f->type != METRICS_HISTOGRAM) {
                sb_sample(&b, f, "", s, NULL, NULL, u2d(atomic_load_explicit(&s->bits, memory_order_relaxed)));
                continue;
            }
            uint64_t cum = 0;
            char le[40];
            for (int k = 0; k <= f->nbounds; k++) {
                cum += atomic_load_explicit(&s->counts[k], memory_order_relaxed);
                metrics_format_double(le, sizeof le, k < f->nbounds ? f->bounds[k] : INFINITY);
                sb_sample(&b, f, "_bucket", s, "le", le, (double)cum);
            }
            sb_sample(&b, f, "_sum", s, NULL, NULL, u2d(atomic_load_explicit(&s->sum_bits, memory_order_relaxed)));
            sb_sample(&b, f, "_count", s, NULL, NULL, (double)cum);
        }
    }
    pthread_mutex_unlock(&m->mu);
    if (b.oom) {
        free(b.buf);
        return RLHF_ENOMEM;
    }
    *out = b.buf;
    if (len) *len = b.len;
    return RLHF_OK;
}

/* ---- JSON snapshot ---- */

/* Integers as JSON integers, other finite values as reals, the rest as null. */
static json_t *json_number(double v) {
    if (!isfinite(v)) return json_null();
    if (v == floor(v) && fabs(v) < 9007199254740992.0) return json_integer((json_int_t)v);
    return json_real(v);
}

/* json_object_set_new that records a failure instead of returning it. */
static void jset(json_t *obj, const char *key, json_t *val, bool *ok) {
    if (!val || json_object_set_new(obj, key, val) != 0) *ok = false;
}

static void jappend(json_t *arr, json_t *val, bool *ok) {
    if (!val || json_array_append_new(arr, val) != 0) *ok = false;
}

rlhf_err_t metrics_snapshot(metrics_t *m, json_t **out) {
    *out = NULL;
    if (!m) return RLHF_EINVAL;
    run_collectors(m);
    json_t *root = json_object();
    bool ok = root != NULL;
    pthread_mutex_lock(&m->mu);
    for (const metrics_family_t *f = m->head; f && ok; f = f->next) {
        if (f->nseries == 0) continue;
        json_t *jf = json_object(), *arr = json_array();
        if (!jf || !arr) {
            json_decref(jf);
            json_decref(arr);
            ok = false;
            break;
        }
        jset(root, f->name, jf, &ok);
        jset(jf, "type", json_string(type_name(f->type)), &ok);
        jset(jf, "help", json_string(f->help), &ok);
        jset(jf, "series", arr, &ok);
        for (int i = 0; i < f->nseries && ok; i++) {
            series_t *s = f->series[i];
            json_t *js = json_object(), *labels = json_object();
            if (!js || !labels) {
                json_decref(js);
                json_decref(labels);
                ok = false;
                break;
            }
            jappend(arr, js, &ok);
            jset(js, "labels", labels, &ok);
            for (int k = 0; k < f->nlabels; k++)
                jset(labels, f->labels[k], json_stringn(s->values[k], strlen(s->values[k])), &ok);
            if (f->type != METRICS_HISTOGRAM) {
                jset(js, "value", json_number(u2d(atomic_load_explicit(&s->bits, memory_order_relaxed))), &ok);
                continue;
            }
            json_t *buckets = json_array();
            jset(js, "buckets", buckets, &ok);
            uint64_t cum = 0;
            for (int k = 0; k <= f->nbounds && ok; k++) {
                cum += atomic_load_explicit(&s->counts[k], memory_order_relaxed);
                if (k == f->nbounds) break;
                json_t *pair = json_array();
                jappend(buckets, pair, &ok);
                if (!ok) break;
                jappend(pair, json_number(f->bounds[k]), &ok);
                jappend(pair, json_integer((json_int_t)cum), &ok);
            }
            jset(js, "count", json_integer((json_int_t)cum), &ok);
            jset(js, "sum", json_number(u2d(atomic_load_explicit(&s->sum_bits, memory_order_relaxed))), &ok);
        }
    }
    pthread_mutex_unlock(&m->mu);
    if (!ok) {
        json_decref(root);
        return RLHF_ENOMEM;
    }
    *out = root;
    return RLHF_OK;
}
