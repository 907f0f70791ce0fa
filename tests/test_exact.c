/*
 * test_exact.c - the transport changes nothing: one learner, one reward
 * worker and one actor as separate processes, max_lag 0, fixed seeds, end
 * with weights bit-identical to an in-process loop that runs the same PPO
 * steps with no sockets at all.
 *
 * The reference loop does, in one thread, what the three programs do:
 *   prompts  the learner's ticket table (learner/tickets.h) with the same
 *            config hands out the same prompt sets and sampling seeds;
 *   actor    one generator of actor.batch slots runs each ticket's
 *            prompts x k requests, sample j of prompt i seeded seed + i*k + j;
 *   reward   the task verifier, and reference log-probs from one forward
 *            over the ticket's rows (reward.batch covers a whole ticket);
 *   learner  the batch is the tickets' samples in order, prompt-major, and
 *            goes through the same ppo_step.
 * Every role runs one compute thread, so every sgemm has the same shape.
 * The policy starts from a short in-test SFT on one-digit sums so rewards
 * are not all zero (a random policy never answers right, and PPO on zero
 * rewards at step 1 moves nothing but weight decay).
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/checkpoint.h"
#include "common/config.h"
#include "common/generate.h"
#include "common/model.h"
#include "common/optim.h"
#include "common/sft.h"
#include "common/task.h"
#include "learner/ppo.h"
#include "learner/tickets.h"
#include "tests/testprocs.h"

#define STEPS 3

static pid_t kids[3]; // learner, reward worker, actor

static int teardown(void **state) {
    (void)state;
    tp_kill_all();
    return 0;
}

/* A policy that sometimes answers one-digit sums right. */
static void make_init(const rlhf_config_t *cfg, const char *dir) {
    char err[256];
    model_config_t mc;
    assert_int_equal(config_to_model(cfg, &mc, err, sizeof err), RLHF_OK);
    model_t *m = model_new(&mc);
    assert_non_null(m);
    model_init_weights(m, 11);
    assert_int_equal(model_alloc_grads(m), RLHF_OK);
    task_config_t tc;
    config_to_task(cfg, &tc);
    task_t *t = task_new_err(cfg->task.name, &tc, err, sizeof err);
    assert_non_null(t);
    sft_data_t d;
    assert_int_equal(sft_data_from_task(&d, t, TASK_TRAIN, mc.max_seq_len, err, sizeof err), RLHF_OK);
    sft_config_t sc;
    sft_config_default(&sc);
    sc.batch = 32;
    sc.steps = 250;
    sc.opt.lr = 3e-3f;
    sc.opt.warmup_steps = 20;
    sc.opt.total_steps = sc.steps;
    sft_t *s = sft_new(m, &d, &sc);
    assert_non_null(s);
    float loss = 0;
    for (int i = 0; i < sc.steps; i++) loss = sft_step(s, NULL, NULL, NULL);
    printf("init: %d SFT steps on one-digit sums, loss %.3f\n", sc.steps, loss);
    assert_int_equal(checkpoint_save_model(m, dir, err, sizeof err), RLHF_OK);
    sft_destroy(&s);
    sft_data_fini(&d);
    task_destroy(&t);
    model_destroy(&m);
}

/* The reference: STEPS PPO updates in this thread. Leaves the policy's
 * weights in *out (caller frees) and the mean reward seen in *reward. */
static void reference_loop(const rlhf_config_t *cfg, float **out, double *reward) {
    char err[256];
    model_set_threads(1);
    model_t *pol = NULL, *ref = NULL;
    assert_int_equal(checkpoint_load_model(cfg->model.init, &pol, err, sizeof err), RLHF_OK);
    assert_int_equal(checkpoint_load_model(cfg->model.init, &ref, err, sizeof err), RLHF_OK);
    model_config_t cc = pol->cfg;
    cc.scalar_head = 1;
    model_t *critic = model_new(&cc);
    assert_non_null(critic);
    assert_int_equal(model_alloc_grads(pol), RLHF_OK);
    assert_int_equal(model_alloc_grads(critic), RLHF_OK);
    assert_int_equal(ppo_critic_from_policy(critic, pol), RLHF_OK);
    adamw_config_t pa, ca;
    config_to_adamw(cfg, &pa, &ca);
    adamw_t *popt = adamw_new(&pa, pol->n_params), *copt = adamw_new(&ca, critic->n_params);
    ppo_config_t pc;
    assert_int_equal(ppo_config_from(cfg, &pc, err, sizeof err), RLHF_OK);
    rl_state_t st;
    rl_state_init(&st, &pc.rl);
    ppo_t *ppo = NULL;
    assert_int_equal(ppo_new(&ppo, pol, critic, &pc), RLHF_OK);

    task_config_t tcfg;
    config_to_task(cfg, &tcfg);
    task_t *task = task_new_err(cfg->task.name, &tcfg, err, sizeof err);
    assert_non_null(task);
    tickets_config_t tc; // as learner_new builds it
    tickets_config_default(&tc);
    tc.n_prompts = (uint32_t)task_size(task, TASK_TRAIN);
    tc.seed = cfg->run.seed;
    tc.prompts_per_ticket = (uint32_t)cfg->learner.ticket_prompts;
    tc.k = (uint32_t)cfg->ppo.k;
    tc.max_lag = 0;
    tc.gen_timeout_ms = (uint32_t)cfg->learner.ticket_timeout_ms;
    tc.score_timeout_ms = (uint32_t)cfg->learner.score_timeout_ms;
    tc.max_open_epochs = (uint32_t)cfg->learner.max_open_epochs;
    tc.two_stage = true;
    tickets_t *tk = NULL;
    assert_int_equal(tickets_new(&tk, &tc, err, sizeof err), RLHF_OK);
    assert_int_equal(cfg->ppo.batch_prompts % cfg->learner.ticket_prompts, 0);

    const int K = cfg->ppo.k, TP = cfg->learner.ticket_prompts, NT = cfg->ppo.batch_prompts / TP;
    const int B = cfg->ppo.batch_prompts * K, maxnew = cfg->sampling.max_new_tokens, S = pol->cfg.max_seq_len;
    generator_t *gen = generator_new(pol, cfg->actor.batch, S);
    assert_non_null(gen);
    int32_t *prompts = malloc(sizeof(int32_t) * (size_t)B * S), *comps = malloc(sizeof(int32_t) * (size_t)B * S);
    int *ptok = malloc(sizeof(int) * (size_t)TP * S), *otok = malloc(sizeof(int) * (size_t)TP * K * maxnew);
    float *olp = malloc(sizeof(float) * (size_t)TP * K * maxnew);
    float *blp = malloc(sizeof(float) * (size_t)B * S), *rlp = malloc(sizeof(float) * (size_t)B * S);
    int *rtok = malloc(sizeof(int) * (size_t)TP * K * S), *rtgt = malloc(sizeof(int) * (size_t)TP * K * S);
    gen_request_t *rq = calloc((size_t)TP * K, sizeof *rq);
    ppo_sample_t *ps = calloc((size_t)B, sizeof *ps);
    model_acts_t *ra = model_acts_new(&ref->cfg, TP * K, S);
    assert_true(prompts && comps && ptok && otok && olp && blp && rlp && rtok && rtgt && rq && ps && ra);

    double rsum = 0;
    int rn = 0;
    for (int step = 1; step <= STEPS; step++) {
        assert_int_equal(tickets_set_policy_version(tk, (uint64_t)step), RLHF_OK);
        int b = 0;
        for (int ti = 0; ti < NT; ti++) {
            tickets_ticket_t t;
            assert_int_equal(tickets_issue(tk, 0, &t), RLHF_OK);
            int np = (int)t.n_prompts, plen[64];
            assert_true(np <= TP);
            /* actor: the ticket's requests through one generator */
            gen_params_t gp;
            gen_params_default(&gp);
            gp.sampler.temperature = cfg->sampling.temperature;
            gp.sampler.top_k = cfg->sampling.top_k;
            gp.sampler.top_p = cfg->sampling.top_p;
            gp.max_new_tokens = maxnew;
            gp.n_stop = cfg->sampling.n_stop;
            for (int i = 0; i < cfg->sampling.n_stop; i++) gp.stop_tokens[i] = cfg->sampling.stop[i];
            for (int i = 0; i < np; i++) {
                plen[i] = task_prompt(task, TASK_TRAIN, (int)t.prompts[i], ptok + (size_t)i * S, S);
                assert_true(plen[i] > 0);
                for (int s = 0; s < K; s++) {
                    int r = i * K + s;
                    rq[r] = (gen_request_t){.prompt = ptok + (size_t)i * S,
                                            .prompt_len = plen[i],
                                            .seed = t.seed + (uint64_t)i * (uint64_t)K + (uint64_t)s,
                                            .tokens = otok + (size_t)r * maxnew,
                                            .logprobs = olp + (size_t)r * maxnew};
                }
            }
            assert_int_equal(generator_run(gen, rq, np * K, &gp), RLHF_OK);
            /* reward worker: one reference forward over the ticket's rows */
            int T = 0;
            for (int r = 0; r < np * K; r++) T = plen[r / K] + rq[r].n_tokens > T ? plen[r / K] + rq[r].n_tokens : T;
            for (int x = 0; x < np * K * T; x++) rtok[x] = 0, rtgt[x] = -1;
            for (int r = 0; r < np * K; r++) {
                int i = r / K, n = rq[r].n_tokens, *row = rtok + (size_t)r * T, *trow = rtgt + (size_t)r * T;
                for (int x = 0; x < plen[i]; x++) row[x] = ptok[(size_t)i * S + x];
                for (int x = 0; x < n; x++)
                    row[plen[i] + x] = otok[(size_t)r * maxnew + x], trow[plen[i] - 1 + x] = row[plen[i] + x];
            }
            model_forward(ref, ra, rtok, rtgt, np * K, T, cfg->sampling.temperature);
            const float *lp = model_acts_logprobs(ra);
            /* learner: the samples in order */
            for (int r = 0; r < np * K; r++, b++) {
                int i = r / K, n = rq[r].n_tokens;
                assert_true(b < B && n >= 1);
                int32_t *pp = prompts + (size_t)b * S, *cp = comps + (size_t)b * S;
                for (int x = 0; x < plen[i]; x++) pp[x] = ptok[(size_t)i * S + x];
                for (int x = 0; x < n; x++) cp[x] = otok[(size_t)r * maxnew + x];
                memcpy(blp + (size_t)b * S, olp + (size_t)r * maxnew, sizeof(float) * (size_t)n);
                memcpy(rlp + (size_t)b * S, lp + (size_t)r * T + plen[i] - 1, sizeof(float) * (size_t)n);
                float score = task_score(task, TASK_TRAIN, (int)t.prompts[i], otok + (size_t)r * maxnew, n);
                rsum += score, rn++;
                ps[b] = (ppo_sample_t){.prompt = pp,
                                       .n_prompt = plen[i],
                                       .completion = cp,
                                       .n_completion = n,
                                       .logprobs = blp + (size_t)b * S,
                                       .ref_logprobs = rlp + (size_t)b * S,
                                       .reward = score,
                                       .verify = 1};
            }
        }
        assert_int_equal(b, B);
        ppo_stats_t stats;
        assert_int_equal(ppo_step(ppo, popt, copt, &st, ps, B, &stats), RLHF_OK);
        printf("reference step %d: reward %.3f kl %.4g logp diff %.3g\n", step, stats.reward_mean, stats.kl,
               stats.logp_diff);
        assert_int_equal(stats.n_mismatch, 0);
    }
    *reward = rn ? rsum / rn : 0;
    *out = malloc(sizeof(float) * pol->n_params);
    memcpy(*out, pol->params_mem, sizeof(float) * pol->n_params);

    free(prompts), free(comps), free(ptok), free(otok), free(olp), free(blp), free(rlp), free(rtok), free(rtgt);
    free(rq), free(ps);
    model_acts_destroy(&ra);
    generator_destroy(&gen);
    tickets_destroy(&tk);
    task_destroy(&task);
    ppo_destroy(&ppo);
    adamw_destroy(&popt);
    adamw_destroy(&copt);
    model_destroy(&critic);
    model_destroy(&ref);
    model_destroy(&pol);
}

static void test_bit_identical(void **state) {
    (void)state;
    char dir[] = "/tmp/rlhf_test_exact_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char cfgpath[300], init[300], path[300], log[300];
    snprintf(cfgpath, sizeof cfgpath, "%s/run.yaml", dir);
    snprintf(init, sizeof init, "%s/init", dir);
    int p[7];
    for (int i = 0; i < 7; i++) assert_true((p[i] = tp_free_port()) > 0);
    FILE *f = fopen(cfgpath, "w");
    assert_non_null(f);
    fprintf(f,
            "run: {out_dir: \"%s/out\", steps: %d, max_lag: 0, seed: 5}\n"
            "model: {preset: tiny, init: \"%s\"}\n"
            "task: {min_digits: 1, max_digits: 1, n_train: 80, n_heldout: 4}\n"
            "ppo: {batch_prompts: 8, k: 2, minibatch: 8, epochs: 2, lr: 1.0e-3, critic_lr: 1.0e-3}\n"
            "sampling: {max_new_tokens: 4}\n"
            "learner: {work_port: %d, rollouts_port: %d, score_port: %d, scored_port: %d, announce_port: %d,\n"
            "          weights_port: %d, http_port: %d, ticket_prompts: 4, threads: 1, checkpoint_every: 0,\n"
            "          eval_every: 0}\n"
            "actor: {threads: 1, batch: 8, credit: 2, http_port: -1}\n"
            "reward: {threads: 1, batch: 8, credit: 2, http_port: -1}\n",
            dir, STEPS, init, p[0], p[1], p[2], p[3], p[4], p[5], p[6]);
    fclose(f);
    rlhf_config_t cfg;
    config_init(&cfg);
    char err[256];
    assert_int_equal(config_load(&cfg, cfgpath, err, sizeof err), RLHF_OK);
    make_init(&cfg, init);

    snprintf(log, sizeof log, "%s/learner.log", dir);
    kids[0] = tp_spawn("rlhf-learner", cfgpath, "L", log);
    assert_true(tp_wait_log(log, "serving on", 60)); // its ports are bound before any worker starts
    snprintf(log, sizeof log, "%s/reward.log", dir);
    kids[1] = tp_spawn("rlhf-reward", cfgpath, "r0", log);
    snprintf(log, sizeof log, "%s/actor.log", dir);
    kids[2] = tp_spawn("rlhf-actor", cfgpath, "a0", log);

    float *want = NULL;
    double reward = 0;
    reference_loop(&cfg, &want, &reward); // meanwhile the processes run

    int lrc = tp_wait_exit(kids[0], 120);
    if (lrc != 0) {
        snprintf(path, sizeof path, "tail -n 20 %s/*.log >&2", dir);
        if (system(path) != 0) fprintf(stderr, "(no logs)\n");
    }
    assert_int_equal(lrc, 0);
    kill(kids[1], SIGTERM);
    kill(kids[2], SIGTERM);
    assert_int_equal(tp_wait_exit(kids[1], 10), 0);
    assert_int_equal(tp_wait_exit(kids[2], 10), 0);

    snprintf(path, sizeof path, "%s/out/final", dir);
    model_t *got = NULL;
    assert_int_equal(checkpoint_load_model(path, &got, err, sizeof err), RLHF_OK);
    size_t n = got->n_params, differ = 0;
    double maxd = 0;
    for (size_t i = 0; i < n; i++)
        if (memcmp(&got->params_mem[i], &want[i], sizeof(float)) != 0) {
            differ++;
            double d = fabs((double)got->params_mem[i] - want[i]);
            maxd = d > maxd ? d : maxd;
        }
    snprintf(path, sizeof path, "%s/out/summary.json", dir);
    json_error_t je;
    json_t *s = json_load_file(path, 0, &je);
    assert_non_null(s);
    printf("distributed vs in-process after %d steps (mean reward %.3f): %zu of %zu weights differ (max %.3g); "
           "stale %lld, log-prob mismatches %lld\n",
           STEPS, reward, differ, n, maxd, (long long)json_integer_value(json_object_get(s, "stale_dropped")),
           (long long)json_integer_value(json_object_get(s, "logprob_mismatches")));
    assert_true(reward > 0.02); // the updates had something to learn from
    assert_int_equal(json_integer_value(json_object_get(s, "steps")), STEPS);
    assert_int_equal(differ, 0);
    json_decref(s);
    model_destroy(&got);
    free(want);
    snprintf(path, sizeof path, "rm -rf %s", dir);
    if (system(path) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_bit_identical, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
