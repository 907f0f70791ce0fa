/*
 * test_metrics.c - the metrics registry and its two renderings.
 *
 * Exact Prometheus text for a small registry (labelled counters, a gauge, a
 * histogram with its buckets, _sum and _count), escaping of help texts and
 * label values, name validation, get-or-create semantics of families and
 * series, the JSON snapshot, and 4 threads incrementing the same counter and
 * histogram whose totals must come out exact.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/metrics.h"

static void assert_text(metrics_t *m, const char *want) {
    char *got = NULL;
    size_t len = 0;
    assert_int_equal(metrics_render(m, &got, &len), RLHF_OK);
    assert_int_equal(len, strlen(got));
    if (strcmp(got, want) != 0) {
        print_error("exposition differs.\n--- got ---\n%s--- want ---\n%s", got, want);
        free(got);
        fail();
    }
    free(got);
}

static void test_exposition(void **state) {
    (void)state;
    metrics_t *m = NULL;
    metrics_family_t *msgs, *lat;
    metrics_counter_t *work_in, *work_out, *up;
    metrics_gauge_t *depth;
    metrics_histogram_t *h;
    assert_int_equal(metrics_new(&m), RLHF_OK);

    assert_int_equal(metrics_counter_family(m, "rlhf_messages_total", "Messages by queue.", "queue,direction", &msgs),
                     RLHF_OK);
    assert_int_equal(metrics_counter_get(msgs, (const char *[]){"work", "in"}, &work_in), RLHF_OK);
    assert_int_equal(metrics_counter_get(msgs, (const char *[]){"work", "out"}, &work_out), RLHF_OK);
    assert_int_equal(metrics_gauge(m, "rlhf_queue_depth", "Items waiting.", &depth), RLHF_OK);
    assert_int_equal(
        metrics_histogram_family(m, "rlhf_step_seconds", "Step time.", "phase", (const double[]){0.1, 0.5, 1}, 3, &lat),
        RLHF_OK);
    assert_int_equal(metrics_histogram_get(lat, (const char *[]){"fwd"}, &h), RLHF_OK);
    /* a labelled family without series is not rendered */
    metrics_family_t *unused;
    assert_int_equal(metrics_counter_family(m, "rlhf_unused_total", "Nothing yet.", "x", &unused), RLHF_OK);
    assert_int_equal(metrics_counter(m, "rlhf_up_total", NULL, &up), RLHF_OK);

    metrics_counter_inc(work_in);
    metrics_counter_inc(work_in);
    metrics_counter_add(work_in, 3);
    metrics_counter_add(work_out, 0.25);
    metrics_counter_add(work_out, -7);  // ignored: counters only go up
    metrics_counter_add(work_out, NAN); // ignored
    metrics_gauge_set(depth, 7);
    metrics_gauge_add(depth, -9.5);
    metrics_histogram_observe(h, 0.05);
    metrics_histogram_observe(h, 0.1); // le is inclusive
    metrics_histogram_observe(h, 0.7);
    metrics_histogram_observe(h, 3);
    metrics_counter_inc(NULL); // no-op on NULL handles
    metrics_gauge_set(NULL, 1);
    metrics_histogram_observe(NULL, 1);

    assert_text(m, "# HELP rlhf_messages_total Messages by queue.\n"
                   "# TYPE rlhf_messages_total counter\n"
                   "rlhf_messages_total{queue=\"work\",direction=\"in\"} 5\n"
                   "rlhf_messages_total{queue=\"work\",direction=\"out\"} 0.25\n"
                   "# HELP rlhf_queue_depth Items waiting.\n"
                   "# TYPE rlhf_queue_depth gauge\n"
                   "rlhf_queue_depth -2.5\n"
                   "# HELP rlhf_step_seconds Step time.\n"
                   "# TYPE rlhf_step_seconds histogram\n"
                   "rlhf_step_seconds_bucket{phase=\"fwd\",le=\"0.1\"} 2\n"
                   "rlhf_step_seconds_bucket{phase=\"fwd\",le=\"0.5\"} 2\n"
                   "rlhf_step_seconds_bucket{phase=\"fwd\",le=\"1\"} 3\n"
                   "rlhf_step_seconds_bucket{phase=\"fwd\",le=\"+Inf\"} 4\n"
                   "rlhf_step_seconds_sum{phase=\"fwd\"} 3.85\n"
                   "rlhf_step_seconds_count{phase=\"fwd\"} 4\n"
                   "# TYPE rlhf_up_total counter\n"
                   "rlhf_up_total 0\n");

    assert_true(metrics_counter_value(work_in) == 5.0);
    assert_true(metrics_gauge_value(depth) == -2.5);
    assert_int_equal(metrics_histogram_count(h), 4);
    assert_true(fabs(metrics_histogram_sum(h) - 3.85) < 1e-12);
    metrics_destroy(&m);
    assert_null(m);
    metrics_destroy(&m); // idempotent
}

static void test_escaping(void **state) {
    (void)state;
    metrics_t *m = NULL;
    metrics_family_t *f;
    metrics_gauge_t *g;
    assert_int_equal(metrics_new(&m), RLHF_OK);
    assert_int_equal(metrics_gauge_family(m, "rlhf_x", "Back\\slash and\nnewline, \"quotes\" kept.", "reason", &f),
                     RLHF_OK);
    assert_int_equal(metrics_gauge_get(f, (const char *[]){"a\"b\\c\nd, é"}, &g), RLHF_OK);
    metrics_gauge_set(g, 1e-6);
    metrics_gauge_t *inf, *nan;
    assert_int_equal(metrics_gauge_get(f, (const char *[]){"inf"}, &inf), RLHF_OK);
    assert_int_equal(metrics_gauge_get(f, (const char *[]){"nan"}, &nan), RLHF_OK);
    metrics_gauge_set(inf, -INFINITY);
    metrics_gauge_set(nan, NAN);
    assert_text(m, "# HELP rlhf_x Back\\\\slash and\\nnewline, \"quotes\" kept.\n"
                   "# TYPE rlhf_x gauge\n"
                   "rlhf_x{reason=\"a\\\"b\\\\c\\nd, é\"} 1e-06\n"
                   "rlhf_x{reason=\"inf\"} -Inf\n"
                   "rlhf_x{reason=\"nan\"} NaN\n");
    /* label values must be UTF-8 */
    metrics_gauge_t *bad = NULL;
    assert_int_equal(metrics_gauge_get(f, (const char *[]){"\xff\xfe"}, &bad), RLHF_EINVAL);
    assert_int_equal(metrics_gauge_get(f, (const char *[]){"\xc0\xaf"}, &bad), RLHF_EINVAL);     // overlong '/'
    assert_int_equal(metrics_gauge_get(f, (const char *[]){"\xed\xa0\x80"}, &bad), RLHF_EINVAL); // surrogate
    assert_int_equal(metrics_gauge_get(f, (const char *[]){"caf\xc3"}, &bad), RLHF_EINVAL);      // truncated
    assert_int_equal(metrics_gauge_get(f, (const char *[]){NULL}, &bad), RLHF_EINVAL);
    assert_null(bad);

    char buf[40];
    assert_string_equal(metrics_format_double(buf, sizeof buf, 0.1), "0.1");
    assert_string_equal(metrics_format_double(buf, sizeof buf, 1.0 / 3), "0.3333333333333333");
    assert_string_equal(metrics_format_double(buf, sizeof buf, 123456789012.0), "123456789012");
    assert_string_equal(metrics_format_double(buf, sizeof buf, -0.0), "0");
    assert_string_equal(metrics_format_double(buf, sizeof buf, 1e300), "1e+300");
    assert_string_equal(metrics_format_double(buf, sizeof buf, INFINITY), "+Inf");
    metrics_destroy(&m);
}

static void test_names(void **state) {
    (void)state;
    assert_true(metrics_valid_name("rlhf_messages_total"));
    assert_true(metrics_valid_name("a:b_c9"));
    assert_true(metrics_valid_name("_x"));
    assert_false(metrics_valid_name(""));
    assert_false(metrics_valid_name(NULL));
    assert_false(metrics_valid_name("9lives"));
    assert_false(metrics_valid_name("has-dash"));
    assert_false(metrics_valid_name("has space"));
    assert_false(metrics_valid_name("dot.ted"));
    assert_true(metrics_valid_label_name("queue"));
    assert_true(metrics_valid_label_name("_q1"));
    assert_false(metrics_valid_label_name("__reserved"));
    assert_false(metrics_valid_label_name("a:b"));
    assert_false(metrics_valid_label_name("1a"));
    assert_false(metrics_valid_label_name(""));

    metrics_t *m = NULL;
    metrics_family_t *f = NULL, *g = NULL;
    assert_int_equal(metrics_new(&m), RLHF_OK);
    assert_int_equal(metrics_counter_family(m, "bad-name", "", NULL, &f), RLHF_EINVAL);
    assert_int_equal(metrics_counter_family(m, "ok_total", "", "a,a", &f), RLHF_EINVAL);  // duplicate label
    assert_int_equal(metrics_counter_family(m, "ok_total", "", "a,,b", &f), RLHF_EINVAL); // empty label
    assert_int_equal(metrics_counter_family(m, "ok_total", "", "__x", &f), RLHF_EINVAL);
    assert_int_equal(metrics_counter_family(m, "ok_total", "", "a,b,c,d,e,f,g,h,i", &f), RLHF_EINVAL); // > 8
    assert_int_equal(metrics_histogram_family(m, "h_seconds", "", "le", NULL, 0, &f), RLHF_EINVAL);
    assert_int_equal(metrics_histogram_family(m, "h_seconds", "", NULL, (const double[]){1, 1}, 2, &f), RLHF_EINVAL);
    assert_int_equal(metrics_histogram_family(m, "h_seconds", "", NULL, (const double[]){2, 1}, 2, &f), RLHF_EINVAL);
    assert_int_equal(metrics_histogram_family(m, "h_seconds", "", NULL, (const double[]){NAN}, 1, &f), RLHF_EINVAL);
    assert_null(f);

    /* get-or-create: same definition returns the same family (spaces ignored) */
    assert_int_equal(metrics_counter_family(m, "ok_total", "first", "queue,direction", &f), RLHF_OK);
    assert_int_equal(metrics_counter_family(m, "ok_total", "second", " queue , direction ", &g), RLHF_OK);
    assert_ptr_equal(f, g);
    assert_int_equal(metrics_counter_family(m, "ok_total", "", "queue", &g), RLHF_EMISMATCH);
    assert_int_equal(metrics_gauge_family(m, "ok_total", "", "queue,direction", &g), RLHF_EMISMATCH);
    /* a histogram's trailing +Inf is implied */
    assert_int_equal(metrics_histogram_family(m, "h_seconds", "", NULL, (const double[]){1, 2, INFINITY}, 3, &f),
                     RLHF_OK);
    assert_int_equal(metrics_histogram_family(m, "h_seconds", "", NULL, (const double[]){1, 2}, 2, &g), RLHF_OK);
    assert_ptr_equal(f, g);
    assert_int_equal(metrics_histogram_family(m, "h_seconds", "", NULL, (const double[]){1, 3}, 2, &g), RLHF_EMISMATCH);

    /* series: same values, same handle; wrong type; limit */
    metrics_family_t *c;
    metrics_counter_t *a, *b;
    metrics_gauge_t *wrong;
    assert_int_equal(metrics_counter_family(m, "s_total", "", "k", &c), RLHF_OK);
    assert_int_equal(metrics_counter_get(c, (const char *[]){"x"}, &a), RLHF_OK);
    assert_int_equal(metrics_counter_get(c, (const char *[]){"x"}, &b), RLHF_OK);
    assert_ptr_equal(a, b);
    assert_int_equal(metrics_gauge_get(c, (const char *[]){"x"}, &wrong), RLHF_EMISMATCH);
    char v[16];
    for (int i = 1; i < METRICS_MAX_SERIES; i++) {
        snprintf(v, sizeof v, "v%d", i);
        assert_int_equal(metrics_counter_get(c, (const char *[]){v}, &b), RLHF_OK);
    }
    assert_int_equal(metrics_counter_get(c, (const char *[]){"one_too_many"}, &b), RLHF_ERANGE);
    metrics_destroy(&m);
}

static void test_snapshot(void **state) {
    (void)state;
    metrics_t *m = NULL;
    metrics_family_t *f;
    metrics_counter_t *c;
    metrics_histogram_t *h;
    assert_int_equal(metrics_new(&m), RLHF_OK);
    assert_int_equal(metrics_counter_family(m, "rlhf_bytes_total", "Bytes.", "queue,direction", &f), RLHF_OK);
    assert_int_equal(metrics_counter_get(f, (const char *[]){"rollouts", "in"}, &c), RLHF_OK);
    metrics_counter_add(c, 1024);
    assert_int_equal(metrics_histogram(m, "rlhf_gen_seconds", "Generation.", (const double[]){1, 2}, 2, &h), RLHF_OK);
    metrics_histogram_observe(h, 0.5);
    metrics_histogram_observe(h, 1.5);
    metrics_histogram_observe(h, 9);

    json_t *snap = NULL;
    assert_int_equal(metrics_snapshot(m, &snap), RLHF_OK);
    char *text = json_dumps(snap, JSON_COMPACT);
    const char *want = "{\"rlhf_bytes_total\":{\"type\":\"counter\",\"help\":\"Bytes.\",\"series\":[{\"labels\":"
                       "{\"queue\":\"rollouts\",\"direction\":\"in\"},\"value\":1024}]},"
                       "\"rlhf_gen_seconds\":{\"type\":\"histogram\",\"help\":\"Generation.\",\"series\":[{\"labels\":"
                       "{},\"buckets\":[[1,1],[2,2]],\"count\":3,\"sum\":11}]}}";
    if (strcmp(text, want) != 0) {
        print_error("snapshot\n got %s\nwant %s\n", text, want);
        free(text);
        json_decref(snap);
        fail();
    }
    free(text);
    json_decref(snap);
    metrics_destroy(&m);
}

static void collect(metrics_t *m, void *ud) {
    (void)m;
    metrics_gauge_set(ud, 42);
}

static void test_collector_and_process(void **state) {
    (void)state;
    metrics_t *m = NULL;
    metrics_gauge_t *g;
    assert_int_equal(metrics_new(&m), RLHF_OK);
    assert_int_equal(metrics_gauge(m, "rlhf_on_demand", "Set by a collector.", &g), RLHF_OK);
    assert_int_equal(metrics_add_collector(m, collect, g), RLHF_OK);
    assert_int_equal(metrics_register_process(m), RLHF_OK);
    assert_int_equal(metrics_register_process(m), RLHF_OK); // once only
    char *text;
    size_t len;
    assert_int_equal(metrics_render(m, &text, &len), RLHF_OK);
    assert_non_null(strstr(text, "rlhf_on_demand 42\n"));
    assert_non_null(strstr(text, "# TYPE process_resident_memory_bytes gauge\n"));
    const char *rss = strstr(text, "\nprocess_resident_memory_bytes ");
    assert_non_null(rss);
    assert_true(strtod(rss + 31, NULL) > 1e5);
    const char *start = strstr(text, "\nprocess_start_time_seconds ");
    assert_non_null(start);
    assert_true(strtod(start + 28, NULL) > 1.5e9);
    assert_non_null(strstr(text, "\nprocess_open_fds "));
    free(text);
    metrics_destroy(&m);
}

#define THREADS    4
#define PER_THREAD 200000

typedef struct {
    metrics_family_t *fam;
    metrics_counter_t *shared;
    metrics_histogram_t *h;
    int id;
} worker_arg_t;

static void *hammer(void *p) {
    worker_arg_t *a = p;
    char label[8];
    snprintf(label, sizeof label, "t%d", a->id % 2);
    for (int i = 0; i < PER_THREAD; i++) {
        metrics_counter_inc(a->shared);
        metrics_histogram_observe(a->h, (i % 3) * 0.5); // 0, 0.5, 1
        if (i % 1000 == 0) {                            // concurrent lookups of the same and new series
            metrics_counter_t *c;
            if (metrics_counter_get(a->fam, (const char *[]){label}, &c) == RLHF_OK) metrics_counter_inc(c);
        }
    }
    return NULL;
}

static void test_concurrent(void **state) {
    (void)state;
    metrics_t *m = NULL;
    worker_arg_t args[THREADS];
    pthread_t th[THREADS];
    metrics_family_t *fam;
    metrics_counter_t *shared;
    metrics_histogram_t *h;
    assert_int_equal(metrics_new(&m), RLHF_OK);
    assert_int_equal(metrics_counter(m, "rlhf_hits_total", "", &shared), RLHF_OK);
    assert_int_equal(metrics_counter_family(m, "rlhf_per_total", "", "t", &fam), RLHF_OK);
    assert_int_equal(metrics_histogram(m, "rlhf_obs_seconds", "", (const double[]){0.25, 0.75}, 2, &h), RLHF_OK);
    for (int i = 0; i < THREADS; i++) {
        args[i] = (worker_arg_t){fam, shared, h, i};
        assert_int_equal(pthread_create(&th[i], NULL, hammer, &args[i]), 0);
    }
    /* scrape while they run: _count always equals the +Inf bucket */
    for (int k = 0; k < 20; k++) {
        char *text;
        size_t len;
        assert_int_equal(metrics_render(m, &text, &len), RLHF_OK);
        const char *inf = strstr(text, "rlhf_obs_seconds_bucket{le=\"+Inf\"} ");
        const char *cnt = strstr(text, "rlhf_obs_seconds_count ");
        assert_non_null(inf);
        assert_non_null(cnt);
        assert_true(strtod(inf + 35, NULL) == strtod(cnt + 23, NULL));
        free(text);
    }
    for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
    assert_true(metrics_counter_value(shared) == (double)THREADS * PER_THREAD);
    assert_int_equal(metrics_histogram_count(h), (uint64_t)THREADS * PER_THREAD);
    /* each thread observes 0, 0.5, 1 in turn: PER_THREAD/3 full rounds + remainder */
    double per = (PER_THREAD / 3) * 1.5 + (PER_THREAD % 3 >= 2 ? 0.5 : 0);
    assert_true(metrics_histogram_sum(h) == THREADS * per);
    metrics_counter_t *t0, *t1;
    assert_int_equal(metrics_counter_get(fam, (const char *[]){"t0"}, &t0), RLHF_OK);
    assert_int_equal(metrics_counter_get(fam, (const char *[]){"t1"}, &t1), RLHF_OK);
    assert_true(metrics_counter_value(t0) + metrics_counter_value(t1) == THREADS * (PER_THREAD / 1000));
    metrics_destroy(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exposition),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_snapshot),
        cmocka_unit_test(test_collector_and_process),
        cmocka_unit_test(test_concurrent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
