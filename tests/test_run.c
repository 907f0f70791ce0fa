/*
 * test_run.c - `rlhf run` with the default settings (what `make run` does),
 * end to end: SFT on the careless demonstrations, then the learner, a reward
 * worker and two actors as processes. Asserts the headline of the pipeline
 * issue: the held-out score after RL is >= 0.8 and at least 0.3 above the
 * score the SFT stage left; every ticket completed, no prompt lost, the run
 * folder complete. Prints the wall time (the goal is about 5 minutes on
 * 2 cores; it is measured, not asserted: CI machines differ).
 *
 * Label "long" (about 2 minutes, serial): `make test` runs it, `make
 * test-asan` leaves it out (the sanitized build is too slow for it to say
 * anything about the default's speed, and the same code paths run in
 * test_pipeline under the sanitizers).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static json_int_t geti(json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    if (!json_is_integer(v)) fail_msg("summary.json: '%s' missing or not an integer", k);
    return json_integer_value(v);
}

static void test_default_run(void **state) {
    (void)state;
    char dir[] = "/tmp/rlhf_test_run_XXXXXX", cmd[1024], path[600];
    assert_non_null(mkdtemp(dir));
    /* the defaults, but any free HTTP port (8080 may be taken) and no terminal status line */
    snprintf(cmd, sizeof cmd, "%s/rlhf run --out %s/run --set learner.http_port=0 > %s/run.log 2>&1", RLHF_BIN_DIR, dir,
             dir);
    double t0 = now_s();
    int st = system(cmd);
    double wall = now_s() - t0;
    if (st != 0) {
        snprintf(path, sizeof path, "tail -n 30 %s/run.log >&2; tail -n 10 %s/run/logs/*.log >&2", dir, dir);
        if (system(path) != 0) fprintf(stderr, "(no logs)\n");
    }
    assert_int_equal(st, 0);
    snprintf(path, sizeof path, "%s/run/summary.json", dir);
    json_error_t je;
    json_t *s = json_load_file(path, 0, &je);
    assert_non_null(s);
    double before = json_number_value(json_object_get(s, "eval_before"));
    double after = json_number_value(json_object_get(s, "eval_after"));
    printf("rlhf run (defaults): %.0f s wall, held-out %.3f -> %.3f, %lld steps, tickets %lld issued %lld "
           "completed, busy %.2f, %.1f rollouts/s\n",
           wall, before, after, (long long)geti(s, "steps"), (long long)geti(s, "tickets_issued"),
           (long long)geti(s, "tickets_completed"), json_number_value(json_object_get(s, "learner_busy_fraction")),
           json_number_value(json_object_get(s, "rollouts_per_s")));
    assert_true(after >= 0.8);
    assert_true(after - before >= 0.3);
    assert_int_equal(geti(s, "prompts_lost"), 0);
    assert_int_equal(geti(s, "messages_rejected"), 0);
    assert_int_equal(geti(s, "tickets_issued"), geti(s, "tickets_completed") + geti(s, "stale_dropped"));
    json_decref(s);
    const char *files[] = {"metrics.jsonl", "curves.png", "final/model.safetensors", "final/config.json",
                           "sft/model.safetensors"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/run/%s", dir, files[i]);
        if (access(path, R_OK) != 0) fprintf(stderr, "missing %s\n", path);
        assert_int_equal(access(path, R_OK), 0);
    }
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_default_run)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
