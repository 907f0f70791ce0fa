/*
 * test_generate.c - batched KV-cache generation: behaviour log-probs equal
 * a full forward at the same temperature; results do not depend on batch
 * composition; seeds, stop tokens, length limits, greedy and continuous
 * batching (more requests than slots) behave.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/generate.h"
#include "common/tokenizer.h"
#include "tests/testutil.h"

enum { MAXNEW = 20, NREQ = 7 };

typedef struct {
    model_t *m;
    int prompts[NREQ][8];
    int plen[NREQ];
} fixture_t;

static int setup(void **state) {
    fixture_t *f = calloc(1, sizeof(*f));
    model_config_t cfg;
    model_config_preset(&cfg, "tiny");
    f->m = model_new(&cfg);
    model_init_weights(f->m, 11);
    for (size_t i = 0; i < f->m->n_params; i++) f->m->params_mem[i] *= 4.0f;
    rng_t r;
    rng_init(&r, 3);
    for (int i = 0; i < NREQ; i++) {
        f->plen[i] = 1 + (int)rng_below(&r, 8);
        f->prompts[i][0] = TOK_BOS;
        for (int t = 1; t < f->plen[i]; t++) f->prompts[i][t] = 'a' + (int)rng_below(&r, 26);
    }
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture_t *f = *state;
    model_destroy(&f->m);
    free(f);
    return 0;
}

typedef struct {
    int tokens[NREQ][MAXNEW];
    float lp[NREQ][MAXNEW];
    gen_request_t req[NREQ];
} outs_t;

static void make_reqs(fixture_t *f, outs_t *o, int n, const uint64_t *seeds) {
    for (int i = 0; i < n; i++) {
        o->req[i] = (gen_request_t){.prompt = f->prompts[i],
                                    .prompt_len = f->plen[i],
                                    .seed = seeds[i],
                                    .tokens = o->tokens[i],
                                    .logprobs = o->lp[i]};
    }
}

static void test_logprobs_match_forward(void **state) {
    fixture_t *f = *state;
    gen_params_t p;
    gen_params_default(&p);
    p.sampler.temperature = 0.7f;
    p.max_new_tokens = MAXNEW;
    generator_t *g = generator_new(f->m, 4, 32);
    assert_non_null(g);
    outs_t *o = calloc(1, sizeof(*o));
    uint64_t seeds[NREQ] = {1, 2, 3, 4, 5, 6, 7};
    make_reqs(f, o, NREQ, seeds);
    assert_int_equal(generator_run(g, o->req, NREQ, &p), RLHF_OK);
    /* re-score every finished sequence with one padded forward */
    int T = 32;
    model_acts_t *a = model_acts_new(&f->m->cfg, NREQ, T);
    int tok[NREQ * 32], tgt[NREQ * 32];
    for (int i = 0; i < NREQ * T; i++) tok[i] = TOK_PAD, tgt[i] = -1;
    for (int i = 0; i < NREQ; i++) {
        int n = 0;
        for (int t = 0; t < f->plen[i]; t++) tok[i * T + n++] = f->prompts[i][t];
        for (int t = 0; t < o->req[i].n_tokens; t++) {
            tgt[i * T + n - 1] = o->tokens[i][t];
            tok[i * T + n++] = o->tokens[i][t];
        }
    }
    model_forward(f->m, a, tok, tgt, NREQ, T, 0.7f);
    const float *lp = model_acts_logprobs(a);
    double maxd = 0;
    int count = 0;
    for (int i = 0; i < NREQ; i++)
        for (int t = 0; t < o->req[i].n_tokens; t++) {
            double d = fabs(lp[i * T + f->plen[i] - 1 + t] - o->lp[i][t]);
            maxd = d > maxd ? d : maxd;
            count++;
        }
    printf("generation vs forward at T=0.7: %d behaviour log-probs, max |diff| %.3e\n", count, maxd);
    assert_true(count > NREQ);
    assert_true(maxd < 1e-4);
    model_acts_destroy(&a);
    generator_destroy(&g);
    free(o);
}

static void test_batch_independent_and_seeded(void **state) {
    fixture_t *f = *state;
    gen_params_t p;
    gen_params_default(&p);
    p.max_new_tokens = MAXNEW;
    p.sampler.top_k = 40;
    p.sampler.top_p = 0.95f;
    uint64_t seeds[NREQ] = {10, 20, 30, 40, 50, 60, 70};
    outs_t *all = calloc(1, sizeof(*all)), *one = calloc(1, sizeof(*one)), *again = calloc(1, sizeof(*again));
    generator_t *g = generator_new(f->m, 3, 32); /* 3 slots, 7 requests: slots get refilled */
    make_reqs(f, all, NREQ, seeds);
    assert_int_equal(generator_run(g, all->req, NREQ, &p), RLHF_OK);
    double maxd = 0;
    for (int i = 0; i < NREQ; i++) {
        /* the same request alone */
        one->req[0] = (gen_request_t){.prompt = f->prompts[i],
                                      .prompt_len = f->plen[i],
                                      .seed = seeds[i],
                                      .tokens = one->tokens[0],
                                      .logprobs = one->lp[0]};
        assert_int_equal(generator_run(g, one->req, 1, &p), RLHF_OK);
        assert_int_equal(one->req[0].n_tokens, all->req[i].n_tokens);
        assert_memory_equal(one->tokens[0], all->tokens[i], sizeof(int) * (size_t)one->req[0].n_tokens);
        for (int t = 0; t < one->req[0].n_tokens; t++) maxd = fmax(maxd, fabs(one->lp[0][t] - all->lp[i][t]));
        assert_true(all->req[i].finish == GEN_FINISH_STOP || all->req[i].finish == GEN_FINISH_LENGTH);
        if (all->req[i].finish == GEN_FINISH_STOP)
            assert_int_equal(all->tokens[i][all->req[i].n_tokens - 1], TOK_EOS);
        else
            assert_int_equal(all->req[i].n_tokens, MAXNEW);
    }
    printf("alone vs batched: same tokens, log-prob max |diff| %.3e\n", maxd);
    assert_true(maxd < 1e-4);
    /* same seeds: identical; different seeds: different */
    make_reqs(f, again, NREQ, seeds);
    generator_run(g, again->req, NREQ, &p);
    assert_memory_equal(again->tokens, all->tokens, sizeof(all->tokens));
    uint64_t seeds2[NREQ] = {11, 21, 31, 41, 51, 61, 71};
    make_reqs(f, again, NREQ, seeds2);
    generator_run(g, again->req, NREQ, &p);
    assert_memory_not_equal(again->tokens, all->tokens, sizeof(all->tokens));
    generator_destroy(&g);
    free(all), free(one), free(again);
}

static void test_greedy_stop_and_limits(void **state) {
    fixture_t *f = *state;
    gen_params_t p;
    gen_params_default(&p);
    p.sampler.temperature = 0.0f;
    p.max_new_tokens = 5;
    p.n_stop = 0;
    generator_t *g = generator_new(f->m, 2, 16);
    outs_t *o = calloc(1, sizeof(*o));
    uint64_t seeds[NREQ] = {1, 2, 3, 4, 5, 6, 7};
    make_reqs(f, o, 2, seeds);
    assert_int_equal(generator_run(g, o->req, 2, &p), RLHF_OK);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(o->req[i].n_tokens, 5);
        assert_int_equal(o->req[i].finish, GEN_FINISH_LENGTH);
    }
    /* greedy ignores the seed */
    outs_t *o2 = calloc(1, sizeof(*o2));
    uint64_t seeds2[NREQ] = {99, 98, 0, 0, 0, 0, 0};
    make_reqs(f, o2, 2, seeds2);
    generator_run(g, o2->req, 2, &p);
    assert_memory_equal(o2->tokens[0], o->tokens[0], sizeof(int) * 5);
    /* greedy step 1 is the argmax of a direct step */
    kvcache_t *kv = kvcache_new(&f->m->cfg, 1, 16);
    float *logits = malloc(sizeof(float) * 16 * f->m->cfg.vocab_size);
    int slot[8] = {0}, pos[8];
    for (int t = 0; t < f->plen[0]; t++) pos[t] = t;
    model_step(f->m, kv, f->prompts[0], slot, pos, f->plen[0], logits);
    const float *z = logits + (size_t)(f->plen[0] - 1) * f->m->cfg.vocab_size;
    assert_int_equal(o->tokens[0][0], sampler_argmax(z, f->m->cfg.vocab_size));
    /* stop on the token greedy produces second: stops right there */
    p.stop_tokens[0] = o->tokens[0][1];
    p.n_stop = 1;
    make_reqs(f, o2, 1, seeds);
    generator_run(g, o2->req, 1, &p);
    assert_int_equal(o2->req[0].finish, GEN_FINISH_STOP);
    assert_true(o2->req[0].n_tokens <= 2);
    /* too long a request is refused */
    p.max_new_tokens = 16;
    make_reqs(f, o2, 1, seeds);
    assert_int_equal(generator_run(g, o2->req, 1, &p), RLHF_ERANGE);
    free(logits);
    kvcache_destroy(&kv);
    generator_destroy(&g);
    free(o), free(o2);
}

int main(void) {
    model_set_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_logprobs_match_forward),
        cmocka_unit_test(test_batch_independent_and_seeded),
        cmocka_unit_test(test_greedy_stop_and_limits),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
