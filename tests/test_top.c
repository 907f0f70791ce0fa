/*
 * test_top.c - `rlhf top` and the learner's live page against real processes:
 * 1 learner, 1 reward worker, 1 actor, tiny model, on loopback.
 *
 *   json         once the learner has done a few steps, `rlhf top --once
 *                --json ADDRESS` prints a snapshot with real values: the step
 *                advanced, every queue counted messages, the actor is listed
 *                with its weights version, rates are >= 0 and some > 0, the
 *                phases and the history are there; `--once` prints a text frame.
 *   page         GET / is text/html and holds the page (its marker id, the
 *                script polling /status).
 *   unreachable  `rlhf top --once --json 127.0.0.1:1` exits 1 with one line
 *                saying it cannot reach the learner.
 *
 * The run is given far more steps than it will do; the processes are killed
 * at the end (teardown and an atexit hook), whatever happens.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/testprocs.h"

static char dir[] = "/tmp/rlhf_test_top_XXXXXX";
static int http_port;

/* GET path from the learner: the whole response (headers too), malloc'd; NULL on failure. */
static char *http_get(const char *path) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct timeval tv = {.tv_sec = 2};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)http_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return NULL;
    }
    char req[256];
    snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    if (write(fd, req, strlen(req)) < 0) {
        close(fd);
        return NULL;
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    ssize_t n;
    while ((n = read(fd, buf + len, cap - len)) > 0) {
        len += (size_t)n;
        if (len == cap) buf = realloc(buf, (cap *= 2) + 1);
    }
    buf[len] = 0;
    close(fd);
    return buf;
}

/* The learner's step from /status, -1 if it does not answer. */
static int learner_step(void) {
    char *r = http_get("/status");
    char *body = r ? strstr(r, "\r\n\r\n") : NULL;
    json_t *j = body ? json_loads(body + 4, 0, NULL) : NULL;
    int step = j ? (int)json_integer_value(json_object_get(j, "step")) : -1;
    json_decref(j);
    free(r);
    return step;
}

/* Run cmd (through sh), its stdout and stderr into *out (malloc'd); exit status. */
static int run(const char *cmd, char **out) {
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t cap = 1 << 16, len = 0, n;
    char *buf = malloc(cap + 1);
    while ((n = fread(buf + len, 1, cap - len, p)) > 0) {
        len += n;
        if (len == cap) buf = realloc(buf, (cap *= 2) + 1);
    }
    buf[len] = 0;
    *out = buf;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 1000;
}

static void dump_logs(void) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "tail -n 8 %s/*.log >&2", dir);
    if (system(cmd) != 0) fprintf(stderr, "(no logs)\n");
}

/* Start the three processes and wait for the learner's third step. */
static int setup(void **state) {
    (void)state;
    assert_non_null(mkdtemp(dir));
    char cfgpath[256], log[300];
    snprintf(cfgpath, sizeof cfgpath, "%s/run.yaml", dir);
    int p[7];
    for (int i = 0; i < 7; i++) assert_true((p[i] = tp_free_port()) > 0);
    http_port = p[6];
    FILE *f = fopen(cfgpath, "w");
    assert_non_null(f);
    fprintf(f,
            "run: {out_dir: \"%s/out\", steps: 100000, max_lag: 1, seed: 5}\n"
            "model: {preset: tiny}\n"
            "task: {n_train: 256, n_heldout: 8}\n"
            "ppo: {batch_prompts: 8, k: 2, minibatch: 8, epochs: 1}\n"
            "sampling: {max_new_tokens: 6}\n"
            "learner: {work_port: %d, rollouts_port: %d, score_port: %d, scored_port: %d, announce_port: %d,\n"
            "          weights_port: %d, http_port: %d, ticket_prompts: 2, threads: 1, checkpoint_every: 0,\n"
            "          eval_every: 2}\n"
            "actor: {threads: 1, batch: 8, http_port: 0}\n"
            "reward: {threads: 1, batch: 8, http_port: 0}\n",
            dir, p[0], p[1], p[2], p[3], p[4], p[5], p[6]);
    fclose(f);
    snprintf(log, sizeof log, "%s/learner.log", dir);
    tp_spawn("rlhf-learner", cfgpath, "L", log);
    assert_true(tp_wait_log(log, "serving on", 60)); // its ports are bound before any worker starts
    snprintf(log, sizeof log, "%s/r0.log", dir);
    tp_spawn("rlhf-reward", cfgpath, "r0", log);
    snprintf(log, sizeof log, "%s/a0.log", dir);
    tp_spawn("rlhf-actor", cfgpath, "a0", log);
    struct timespec d = {0, 100 * 1000 * 1000};
    int step = -1;
    for (int i = 0; i < 1200 && step < 3; i++) { // up to 120 s (sanitizer builds are slow)
        step = learner_step();
        if (step < 3) nanosleep(&d, NULL);
    }
    if (step < 3) dump_logs();
    assert_true(step >= 3);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    tp_kill_all();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return 0;
}

static double num(const json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    if (!json_is_number(v)) fail_msg("'%s' missing or not a number", k);
    return json_number_value(v);
}

static void test_json(void **state) {
    (void)state;
    char cmd[700], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s/rlhf top --once --json 127.0.0.1:%d 2>&1", RLHF_BIN_DIR, http_port);
    int rc = run(cmd, &out);
    if (rc != 0) fprintf(stderr, "%s\n", out);
    assert_int_equal(rc, 0);
    json_error_t je;
    json_t *v = json_loads(out, 0, &je);
    if (!v) fail_msg("not JSON (%s): %.300s", je.text, out);
    free(out);
    printf("step %.0f, version %.0f, %.1f rollouts/s, %.0f tokens/s, busy %.2f, interval %.2f s\n", num(v, "step"),
           num(v, "policy_version"), num(v, "rollouts_per_s"), num(v, "tokens_per_s"), num(v, "busy_fraction"),
           num(v, "interval_s"));
    assert_true(num(v, "step") >= 3);
    assert_true(num(v, "policy_version") >= 4);
    assert_true(num(v, "interval_s") > 0.5 && num(v, "interval_s") < 5);
    assert_true(num(v, "rollouts_per_s") >= 0 && num(v, "tokens_per_s") >= 0);
    assert_true(num(v, "busy_fraction") >= 0);

    /* every queue counted messages; rates are never negative and some move */
    json_t *qs = json_object_get(v, "queues"), *q;
    assert_int_equal(json_array_size(qs), 6);
    size_t i;
    double moving = num(v, "rollouts_per_s");
    json_array_foreach(qs, i, q) {
        printf("  %-9s %8.0f messages %7.1f msg/s %8.3f MB/s\n", json_string_value(json_object_get(q, "name")),
               num(q, "messages"), num(q, "messages_per_s"), num(q, "mb_per_s"));
        assert_true(num(q, "messages") > 0);
        assert_true(num(q, "bytes") > 0);
        assert_true(num(q, "messages_per_s") >= 0 && num(q, "mb_per_s") >= 0);
        moving += num(q, "messages_per_s");
    }
    assert_true(moving > 0);

    /* the actor and the reward worker, with what they hold and delivered */
    json_t *actors = json_object_get(v, "actors"), *rewards = json_object_get(v, "reward_workers");
    assert_int_equal(json_array_size(actors), 1);
    assert_int_equal(json_array_size(rewards), 1);
    json_t *a = json_array_get(actors, 0), *r = json_array_get(rewards, 0);
    assert_string_equal(json_string_value(json_object_get(a, "id")), "a0");
    assert_true(num(a, "weights_version") >= 1);
    assert_true(num(a, "policy_lag") >= 0);
    assert_true(num(a, "samples") > 0 && num(r, "samples") > 0);
    assert_true(num(a, "samples_per_s") >= 0 && num(r, "samples_per_s") >= 0);
    assert_true(num(a, "last_seen_s") >= 0 && num(a, "last_seen_s") < 10);
    assert_string_equal(json_string_value(json_object_get(r, "id")), "r0");

    /* the last update's phases add up; the history has one entry per step */
    json_t *ph = json_object_get(v, "step_phases");
    assert_true(num(ph, "step") >= 1);
    assert_true(num(ph, "total") > 0);
    double sum = 0;
    json_t *name;
    json_array_foreach(json_object_get(ph, "order"), i, name) sum +=
        num(json_object_get(ph, "seconds"), json_string_value(name));
    assert_true(fabs(sum - num(ph, "total")) < 1e-6);
    assert_true(num(json_object_get(ph, "seconds"), "policy") > 0);
    json_t *h = json_object_get(v, "history");
    size_t n = json_array_size(json_object_get(h, "step"));
    assert_true(n >= 3 && n <= 120);
    assert_int_equal(json_array_size(json_object_get(h, "reward_mean")), n);
    assert_int_equal(json_array_size(json_object_get(h, "kl")), n);
    assert_int_equal(json_array_size(json_object_get(h, "heldout_score")), n);
    json_decref(v);

    /* the plain-text frame */
    snprintf(cmd, sizeof cmd, "%s/rlhf top --once 127.0.0.1:%d 2>&1", RLHF_BIN_DIR, http_port);
    rc = run(cmd, &out);
    if (rc != 0 || !strstr(out, "QUEUE") || !strstr(out, "a0") || !strstr(out, "r0")) fprintf(stderr, "%s\n", out);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "rollouts -> reward"));
    assert_non_null(strstr(out, "ACTORS (1)"));
    assert_non_null(strstr(out, "LAST UPDATE"));
    free(out);
}

static void test_page(void **state) {
    (void)state;
    char *r = http_get("/");
    assert_non_null(r);
    assert_non_null(strstr(r, "200 OK"));
    assert_non_null(strstr(r, "Content-Type: text/html"));
    assert_non_null(strstr(r, "id=\"rlhf-live-page\""));
    assert_non_null(strstr(r, "fetch(\"/status\""));
    assert_null(strstr(r, "http://")); // self-contained: nothing loaded from elsewhere
    assert_null(strstr(r, "https://"));
    free(r);
}

static void test_unreachable(void **state) {
    (void)state;
    char cmd[600], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s/rlhf top --once --json 127.0.0.1:1 2>&1", RLHF_BIN_DIR);
    int rc = run(cmd, &out);
    printf("%s", out);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "cannot reach the learner at 127.0.0.1:1"));
    assert_int_equal(strchr(out, '\n') - out + 1, (long)strlen(out)); // one line
    free(out);
}

int main(void) {
    atexit(tp_kill_all);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_page),
        cmocka_unit_test(test_unreachable),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
