/*
 * test_pipeline.c - the three programs as real processes on loopback:
 * 1 learner, 2 reward workers, 3 actors, tiny model, a few PPO steps.
 *
 *   balance     every process exits 0 (the learner by itself after run.steps,
 *               the workers on SIGTERM after draining); summary.json holds
 *               the steps and versions asked for and its counters balance
 *               exactly (tickets_check_invariants "ok", the identities of
 *               learner/tickets.h recomputed here, prompts_lost = 0, no
 *               prompt used twice, every trained sample within max_lag).
 *   on_policy   max_lag 0 with one actor: every batch is trained on rollouts
 *               of exactly the version being updated (policy_lag 0), and the
 *               learner recomputes the actor's behaviour log-probs to < 1e-4.
 *   kill9       the same as balance with one actor killed -9 and one reward worker
 *               killed -9 mid-run: their tickets are reissued or re-scored
 *               (after 10 s of silence at the latest), the run completes,
 *               the counters still balance.
 *
 * Children are started with fork/exec from RLHF_BIN_DIR and killed whatever
 * happens (a teardown and an atexit hook); ports are free ones found by
 * binding port 0.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/testprocs.h"

static int teardown(void **state) {
    (void)state;
    tp_kill_all();
    return 0;
}

static json_int_t geti(json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    if (!json_is_integer(v)) fail_msg("summary.json: '%s' missing or not an integer", k);
    return json_integer_value(v);
}

static void dump_logs(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "tail -n 8 %s/*.log >&2", dir);
    if (system(cmd) != 0) fprintf(stderr, "(no logs)\n");
}

static void run_pipeline(int kill9, int max_lag, int n_actors, int n_train) {
    if (access(RLHF_BIN_DIR "/rlhf-actor", X_OK) != 0 || access(RLHF_BIN_DIR "/rlhf-reward", X_OK) != 0) {
        fprintf(stderr, "rlhf-actor or rlhf-reward not built\n");
        fail();
    }
    char dir[] = "/tmp/rlhf_test_pipeline_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char cfgpath[256], path[300];
    snprintf(cfgpath, sizeof cfgpath, "%s/run.yaml", dir);
    int p[7];
    for (int i = 0; i < 7; i++) assert_true((p[i] = tp_free_port()) > 0);
    FILE *f = fopen(cfgpath, "w");
    assert_non_null(f);
    int steps = kill9 ? 6 : 4;
    int kill_workers = kill9 == 1;
    fprintf(f,
            "run: {out_dir: \"%s/out\", steps: %d, max_lag: %d, seed: 3}\n"
            "model: {preset: tiny}\n"
            "task: {n_train: %d, n_heldout: 16}\n"
            "ppo: {batch_prompts: 8, k: 2, minibatch: 8, epochs: 1}\n"
            "sampling: {max_new_tokens: 6}\n"
            "learner: {work_port: %d, rollouts_port: %d, score_port: %d, scored_port: %d, announce_port: %d,\n"
            "          weights_port: %d, http_port: %d, ticket_prompts: 2, threads: 1, ticket_timeout_ms: 4000,\n"
            "          score_timeout_ms: 4000, checkpoint_every: 2, eval_every: 2}\n"
            "actor: {threads: 1, batch: 8, http_port: -1}\n"
            "reward: {threads: 1, batch: 8, http_port: -1}\n",
            dir, steps, max_lag, n_train, p[0], p[1], p[2], p[3], p[4], p[5], p[6]);
    fclose(f);

    char log[300];
    snprintf(log, sizeof log, "%s/learner.log", dir);
    pid_t lp = tp_spawn("rlhf-learner", cfgpath, "L", log);
    assert_true(tp_wait_log(log, "serving on", 60)); // its ports are bound before any worker starts
    pid_t rp[2], ap[4] = {0, 0, 0, 0};
    assert_true(n_actors <= 4);
    for (int i = 0; i < 2; i++) {
        char id[16];
        snprintf(id, sizeof id, "r%d", i);
        snprintf(log, sizeof log, "%s/%s.log", dir, id);
        rp[i] = tp_spawn("rlhf-reward", cfgpath, id, log);
    }
    for (int i = 0; i < n_actors; i++) {
        char id[16];
        snprintf(id, sizeof id, "a%d", i);
        snprintf(log, sizeof log, "%s/%s.log", dir, id);
        ap[i] = tp_spawn("rlhf-actor", cfgpath, id, log);
    }
    if (kill_workers) { // once the learner has done a step, kill -9 one actor and one reward worker
        snprintf(path, sizeof path, "%s/out/metrics.jsonl", dir);
        struct timespec d = {0, 20 * 1000 * 1000};
        for (int i = 0; i < 1500; i++) {
            FILE *m = fopen(path, "r");
            long sz = 0;
            if (m) fseek(m, 0, SEEK_END), sz = ftell(m), fclose(m);
            if (sz > 0) break;
            nanosleep(&d, NULL);
        }
        kill(ap[0], SIGKILL);
        kill(rp[0], SIGKILL);
        assert_int_equal(tp_wait_exit(ap[0], 5), 1000 + SIGKILL);
        assert_int_equal(tp_wait_exit(rp[0], 5), 1000 + SIGKILL);
    }
    if (kill9 == 2) { // once a checkpoint exists, kill -9 the learner and start it again with run.resume
        snprintf(path, sizeof path, "%s/out/checkpoint/learner.json", dir);
        struct timespec d = {0, 20 * 1000 * 1000};
        for (int i = 0; i < 3000 && access(path, R_OK) != 0; i++) nanosleep(&d, NULL);
        assert_int_equal(access(path, R_OK), 0);
        kill(lp, SIGKILL);
        assert_int_equal(tp_wait_exit(lp, 5), 1000 + SIGKILL);
        snprintf(log, sizeof log, "%s/learner2.log", dir);
        setenv("RLHF_RUN_RESUME", "true", 1);
        lp = tp_spawn("rlhf-learner", cfgpath, "L2", log);
        unsetenv("RLHF_RUN_RESUME");
    }
    int lrc = tp_wait_exit(lp, 90);
    if (lrc != 0) dump_logs(dir);
    assert_int_equal(lrc, 0);
    for (int i = kill_workers ? 1 : 0; i < n_actors; i++) kill(ap[i], SIGTERM);
    for (int i = kill_workers ? 1 : 0; i < 2; i++) kill(rp[i], SIGTERM);
    for (int i = kill_workers ? 1 : 0; i < n_actors; i++) {
        int rc = tp_wait_exit(ap[i], 10);
        if (rc != 0) dump_logs(dir);
        assert_int_equal(rc, 0);
    }
    for (int i = kill_workers ? 1 : 0; i < 2; i++) {
        int rc = tp_wait_exit(rp[i], 10);
        if (rc != 0) dump_logs(dir);
        assert_int_equal(rc, 0);
    }

    snprintf(path, sizeof path, "%s/out/summary.json", dir);
    json_error_t je;
    json_t *s = json_load_file(path, 0, &je);
    assert_non_null(s);
    json_t *t = json_object_get(s, "tickets");
    assert_non_null(t);
    printf(
        "%s: steps %lld, version %lld, samples %lld, tickets issued %lld completed %lld reissued %lld superseded %lld "
        "open %lld, duplicates %lld, stale %lld, scores reissued %lld, rejected %lld, %.1f rollouts/s, %.1f s\n",
        kill9 == 2 ? "learner restart"
        : kill9    ? "kill9"
        : max_lag  ? "balance"
                   : "on-policy",
        (long long)geti(s, "steps"), (long long)geti(s, "policy_version"), (long long)geti(s, "samples_used"),
        (long long)geti(t, "tickets_issued"), (long long)geti(t, "tickets_completed"),
        (long long)geti(t, "tickets_reissued"), (long long)geti(t, "tickets_superseded"),
        (long long)geti(t, "tickets_open"), (long long)geti(t, "duplicates_dropped"),
        (long long)geti(t, "stale_dropped"), (long long)geti(t, "scores_reissued"),
        (long long)geti(s, "messages_rejected"), json_real_value(json_object_get(s, "rollouts_per_s")),
        json_real_value(json_object_get(s, "wall_seconds")));
    assert_int_equal(geti(s, "steps"), steps);
    assert_int_equal(geti(s, "policy_version"), steps + 1);
    assert_int_equal(geti(s, "samples_used"), steps * 8 * 2);
    assert_string_equal(json_string_value(json_object_get(s, "invariants")), "ok");
    assert_int_equal(geti(s, "prompts_lost"), 0);
    assert_int_equal(geti(t, "prompts_reused"), 0);
    assert_int_equal(geti(s, "messages_rejected"), 0);
    /* the identities of learner/tickets.h, recomputed from the summary */
    assert_int_equal(geti(t, "tickets_issued"), geti(t, "tickets_completed") + geti(t, "stale_dropped") +
                                                    geti(t, "tickets_superseded") + geti(t, "tickets_open"));
    assert_int_equal(geti(t, "tickets_issued") - geti(t, "tickets_reissued"),
                     geti(t, "tickets_completed") + geti(t, "jobs_open"));
    assert_int_equal(geti(t, "prompts_completed"),
                     geti(t, "epoch_prompts_done") + n_train * geti(t, "epochs_finished"));
    assert_true(geti(t, "prompts_completed") >= steps * 8); // every trained prompt was completed once
    assert_int_equal(geti(s, "tickets_issued"), geti(t, "tickets_issued"));
    assert_int_equal(geti(s, "duplicates_dropped"), geti(t, "duplicates_dropped"));
    if (kill_workers) // the dead workers' tickets went back: regenerated or re-scored
        assert_true(geti(t, "tickets_reissued") + geti(t, "scores_reissued") >= 1);
    /* every trained batch lagged at most max_lag versions */
    snprintf(path, sizeof path, "%s/out/metrics.jsonl", dir);
    FILE *m = fopen(path, "r");
    assert_non_null(m);
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, m)) {
        json_t *o = json_loads(line, 0, &je);
        assert_non_null(o);
        /* After a learner restart, rollouts of tickets the dead learner had
         * handed out still arrive and win their jobs (accepted results are
         * final: training on them is what keeps every prompt used once), so
         * the resumed learner's buffer can run one batch ahead of its
         * dispatch limit and a batch may lag one version more. */
        double lag = json_real_value(json_object_get(o, "policy_lag"));
        if (lag > max_lag) printf("step %d: policy lag %.2f\n", n + 1, lag);
        assert_true(lag <= (double)max_lag + (kill9 == 2 ? 1.0 : 0.0));
        if (max_lag == 0) // the actor's behaviour log-probs are the learner's own, to float noise
            assert_true(json_real_value(json_object_get(o, "logp_diff")) < 1e-4);
        int st = (int)json_integer_value(json_object_get(o, "step"));
        if (kill9 == 2 && st <= n) n = st - 1; // the resumed learner redoes the steps after its checkpoint
        assert_int_equal(st, ++n);
        json_decref(o);
    }
    fclose(m);
    assert_int_equal(n, steps);
    if (n_train < steps * 8) { // the epoch closed with every prompt used exactly once
        assert_true(geti(t, "epochs_finished") >= 1);
        json_t *e0 = json_array_get(json_object_get(t, "epochs"), 0);
        assert_int_equal(geti(e0, "used_once"), n_train);
        assert_int_equal(geti(e0, "unused"), 0);
        assert_int_equal(geti(e0, "reused"), 0);
    }
    json_decref(s);
    /* every actor got work: the learner hands tickets out round robin, so
     * even when the in-flight limit is below the actors' total credit (on
     * policy: one batch = 4 tickets, 4 actors x credit 2) none is starved */
    for (int i = kill_workers ? 1 : 0; i < n_actors; i++) {
        snprintf(path, sizeof path, "%s/a%d.log", dir, i);
        FILE *al = fopen(path, "r");
        assert_non_null(al);
        int tickets = 0;
        while (fgets(line, sizeof line, al)) tickets += strstr(line, "] ticket ") != NULL;
        fclose(al);
        if (tickets == 0) fprintf(stderr, "actor a%d generated no ticket\n", i);
        assert_true(tickets > 0);
    }
    snprintf(path, sizeof path, "%s/out/final/model.safetensors", dir);
    assert_int_equal(access(path, R_OK), 0);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_balance(void **state) {
    (void)state;
    run_pipeline(0, 1, 3, 19); // 4 steps x 8 prompts cross an epoch of 19 (its last job is short)
}

static void test_on_policy(void **state) {
    (void)state;
    run_pipeline(0, 0, 1, 256);
}

/* On policy with more credit than tickets in flight: every actor still gets
 * work (they would not if the learner always served its first peers). */
static void test_fair(void **state) {
    (void)state;
    run_pipeline(0, 0, 4, 256);
}

static void test_kill9(void **state) {
    (void)state;
    run_pipeline(1, 1, 3, 256);
}

/* The learner itself dies (kill -9) after a checkpoint and starts again with
 * run.resume: the workers reconnect by themselves, the run completes, and
 * every prompt is still used exactly once (the buffered samples and the
 * ticket table came back from the checkpoint). */
static void test_learner_restart(void **state) {
    (void)state;
    run_pipeline(2, 1, 2, 40); // 6 steps x 8 prompts cross an epoch of 40
}

int main(void) {
    atexit(tp_kill_all);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_balance, teardown),
        cmocka_unit_test_teardown(test_on_policy, teardown),
        cmocka_unit_test_teardown(test_fair, teardown),
        cmocka_unit_test_teardown(test_kill9, teardown),
        cmocka_unit_test_teardown(test_learner_restart, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
