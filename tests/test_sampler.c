/*
 * test_sampler.c - sampler against a double-precision reference written
 * here from the definitions: softmax(logits/T), top-k, nucleus.
 *
 * Frequencies come from a sweep of N_COINS evenly spaced coins, so they are
 * exact quantiles of the sampler's distribution (error ~1/N_COINS, not
 * Monte Carlo noise) and the 0.01 tolerance is never flaky.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "common/sampler.h"

#define N_COINS  20000
#define FREQ_TOL 0.01
#define VMAX     32000

static float g_scratch[2 * VMAX];
static int g_idx[VMAX];

static void random_logits(float *l, int V, float scale, uint64_t seed) {
    rng_t r;
    rng_init(&r, seed);
    for (int i = 0; i < V; i++) l[i] = scale * rng_normal(&r);
}

/* log_softmax(l / T) in double. */
static void ref_logprobs(const float *l, int V, double T, double *lp) {
    double m = -INFINITY;
    for (int i = 0; i < V; i++)
        if ((double)l[i] / T > m) m = (double)l[i] / T;
    double s = 0.0;
    for (int i = 0; i < V; i++) s += exp((double)l[i] / T - m);
    double lse = m + log(s);
    for (int i = 0; i < V; i++) lp[i] = (double)l[i] / T - lse;
}

static const float *g_sort_l;
static int cmp_rank(const void *pa, const void *pb) {
    int a = *(const int *)pa, b = *(const int *)pb;
    if (g_sort_l[a] != g_sort_l[b]) return g_sort_l[a] > g_sort_l[b] ? -1 : 1;
    return a < b ? -1 : 1;
}

/* Reference target distribution after top-k then top-p, in double:
 * probs (V) out, zero outside the kept set; returns the kept count. */
static int ref_target(const float *l, int V, double T, int top_k, double top_p, double *probs) {
    double *lp = malloc((size_t)V * sizeof(double));
    int *order = malloc((size_t)V * sizeof(int));
    ref_logprobs(l, V, T, lp);
    for (int i = 0; i < V; i++) order[i] = i;
    g_sort_l = l;
    qsort(order, (size_t)V, sizeof(int), cmp_rank);
    int k = top_k > 0 && top_k < V ? top_k : V;
    double mass_k = 0.0;
    for (int j = 0; j < k; j++) mass_k += exp(lp[order[j]]);
    int keep = k;
    if (top_p < 1.0) {
        double c = 0.0;
        for (int j = 0; j < k; j++) {
            c += exp(lp[order[j]]) / mass_k;
            if (c >= top_p) {
                keep = j + 1;
                break;
            }
        }
    }
    double kept = 0.0;
    for (int j = 0; j < keep; j++) kept += exp(lp[order[j]]);
    for (int i = 0; i < V; i++) probs[i] = 0.0;
    for (int j = 0; j < keep; j++) probs[order[j]] = exp(lp[order[j]]) / kept;
    free(lp);
    free(order);
    return keep;
}

static int g_coins = N_COINS; // fewer for the V = 32000 rows, to keep the test quick

/* Sweep the coins; counts (V) out. Checks every logprob on the way. */
static void sweep(const float *l, int V, const sampler_params_t *p, int *counts) {
    double *lp = malloc((size_t)V * sizeof(double));
    double T = p->temperature > 0 ? p->temperature : 1.0;
    ref_logprobs(l, V, T, lp);
    memset(counts, 0, (size_t)V * sizeof(int));
    double worst = 0.0;
    for (int c = 0; c < g_coins; c++) {
        float coin = ((float)c + 0.5f) / (float)g_coins;
        float got_lp = 0.0f;
        int id = sampler_sample(l, V, p, coin, g_scratch, g_idx, &got_lp);
        assert_true(id >= 0 && id < V);
        counts[id]++;
        double d = fabs((double)got_lp - lp[id]) / fmax(1.0, fabs(lp[id]));
        if (d > worst) worst = d;
    }
    if (worst > 1e-6) fprintf(stderr, "worst logprob error %g\n", worst);
    assert_true(worst <= 1e-6);
    free(lp);
}

/* Empirical frequencies match target within FREQ_TOL, and the support is
 * exactly the target's. Returns the max abs difference. */
static double check_freqs(const int *counts, const double *target, int V) {
    double worst = 0.0;
    for (int i = 0; i < V; i++) {
        double f = (double)counts[i] / g_coins;
        double d = fabs(f - target[i]);
        if (d > worst) worst = d;
        if (target[i] == 0.0 && counts[i] != 0) fail_msg("token %d sampled %d times outside the support", i, counts[i]);
    }
    if (worst > FREQ_TOL) fprintf(stderr, "worst frequency error %g\n", worst);
    assert_true(worst <= FREQ_TOL);
    return worst;
}

static void run_case(const float *l, int V, float T, int top_k, float top_p) {
    sampler_params_t p = {T, top_k, top_p};
    int *counts = malloc((size_t)V * sizeof(int));
    double *target = malloc((size_t)V * sizeof(double));
    int keep = ref_target(l, V, T > 0 ? T : 1.0, top_k, top_p, target);
    sweep(l, V, &p, counts);
    /* every kept token with mass well above 1/coins shows up */
    for (int i = 0; i < V; i++)
        if (target[i] > 3.0 / g_coins) assert_true(counts[i] > 0);
    check_freqs(counts, target, V);
    (void)keep;
    free(counts);
    free(target);
}

/* ---- tests ---- */

static void test_greedy_is_argmax(void **state) {
    (void)state;
    float l[264];
    for (int trial = 0; trial < 50; trial++) {
        random_logits(l, 264, 3.0f, 100 + (uint64_t)trial);
        int am = 0;
        for (int i = 1; i < 264; i++)
            if (l[i] > l[am]) am = i;
        sampler_params_t p = {0.0f, 0, 1.0f};
        for (int c = 0; c < 10; c++) {
            float lp;
            assert_int_equal(sampler_sample(l, 264, &p, (float)c / 10, g_scratch, g_idx, &lp), am);
            double ref[264];
            ref_logprobs(l, 264, 1.0, ref);
            assert_true(fabs(lp - ref[am]) <= 1e-6);
        }
        assert_int_equal(sampler_argmax(l, 264), am);
    }
    /* ties go to the lower id; negative and NaN temperatures are greedy */
    float t[5] = {1, 3, 2, 3, 3};
    sampler_params_t neg = {-1.0f, 0, 1.0f}, nan_t = {NAN, 0, 1.0f};
    assert_int_equal(sampler_sample(t, 5, &neg, 0.99f, g_scratch, g_idx, NULL), 1);
    assert_int_equal(sampler_sample(t, 5, &nan_t, 0.99f, g_scratch, g_idx, NULL), 1);
    assert_int_equal(sampler_argmax(t, 5), 1);
}

static void test_full_softmax_frequencies(void **state) {
    (void)state;
    float l[10] = {1.0f, 2.0f, 0.5f, -1.0f, 3.0f, 2.5f, 0.0f, -3.0f, 1.5f, 2.0f};
    run_case(l, 10, 1.0f, 0, 1.0f);
    float l264[264];
    random_logits(l264, 264, 2.0f, 5);
    run_case(l264, 264, 1.0f, 0, 1.0f);
}

static void test_temperature(void **state) {
    (void)state;
    float l[10] = {1.0f, 2.0f, 0.5f, -1.0f, 3.0f, 2.5f, 0.0f, -3.0f, 1.5f, 2.0f};
    run_case(l, 10, 0.5f, 0, 1.0f);
    run_case(l, 10, 2.0f, 0, 1.0f);
    run_case(l, 10, 0.7f, 0, 1.0f);

    /* a tiny temperature is greedy in effect; a huge one near uniform */
    int counts[10];
    sampler_params_t cold = {1e-4f, 0, 1.0f}, hot = {1e4f, 0, 1.0f};
    sweep(l, 10, &cold, counts);
    assert_int_equal(counts[4], N_COINS);
    sweep(l, 10, &hot, counts);
    for (int i = 0; i < 10; i++) assert_true(fabs((double)counts[i] / N_COINS - 0.1) < 0.01);
    /* the smallest positive float does not overflow 1/T into NaN */
    sampler_params_t frozen = {1e-45f, 0, 1.0f};
    float lp;
    assert_int_equal(sampler_sample(l, 10, &frozen, 0.5f, g_scratch, g_idx, &lp), 4);
    assert_true(isfinite(lp));
    assert_true(fabs(lp) < 1e-6);
}

static void test_top_k(void **state) {
    (void)state;
    float l[264];
    random_logits(l, 264, 1.0f, 11);
    sampler_params_t greedy = {0.0f, 0, 1.0f};
    int am = sampler_sample(l, 264, &greedy, 0.5f, g_scratch, g_idx, NULL);
    /* top_k = 1 is greedy for every coin and temperature */
    for (int c = 0; c < 1000; c++) {
        sampler_params_t p = {c % 2 ? 1.0f : 3.0f, 1, 1.0f};
        assert_int_equal(sampler_sample(l, 264, &p, (float)c / 1000, g_scratch, g_idx, NULL), am);
    }
    /* support = the k largest, frequencies = renormalised softmax */
    int ks[] = {2, 5, 40, 263, 264, 1000};
    for (size_t i = 0; i < sizeof(ks) / sizeof(ks[0]); i++) run_case(l, 264, 1.0f, ks[i], 1.0f);
    run_case(l, 264, 0.6f, 7, 1.0f);

    /* with equal logits the lower ids win */
    float flat[16];
    for (int i = 0; i < 16; i++) flat[i] = 0.25f;
    int counts[16];
    sampler_params_t p3 = {1.0f, 3, 1.0f};
    sweep(flat, 16, &p3, counts);
    for (int i = 0; i < 16; i++) {
        if (i < 3)
            assert_true(fabs((double)counts[i] / N_COINS - 1.0 / 3) < 0.01);
        else
            assert_int_equal(counts[i], 0);
    }
}

static void test_top_p(void **state) {
    (void)state;
    /* probabilities 0.5, 0.25, 0.125, 0.0625, 0.0625 (logits log2 steps) */
    float l[5];
    double q[5] = {0.5, 0.25, 0.125, 0.0625, 0.0625};
    for (int i = 0; i < 5; i++) l[i] = (float)log(q[i]);
    int counts[5];
    struct {
        float p;
        int support;
    } cases[] = {{0.3f, 1}, {0.49f, 1}, {0.6f, 2}, {0.74f, 2}, {0.8f, 3}, {0.9f, 4}, {0.99f, 5}, {0.0f, 1}};
    /* (exact boundaries such as p = 0.5 are left out: there "mass >= p"
     * hinges on the last bit of a float sum) */
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        sampler_params_t p = {1.0f, 0, cases[c].p};
        sweep(l, 5, &p, counts);
        int support = 0;
        for (int i = 0; i < 5; i++) support += counts[i] > 0;
        assert_int_equal(support, cases[c].support);
        for (int i = 0; i < cases[c].support; i++) assert_true(counts[i] > 0); // the most likely ones
        double kept = 0.0;
        for (int i = 0; i < cases[c].support; i++) kept += q[i];
        for (int i = 0; i < cases[c].support; i++)
            assert_true(fabs((double)counts[i] / N_COINS - q[i] / kept) < FREQ_TOL);
    }
    /* against the reference on random rows, with temperature */
    float l264[264];
    random_logits(l264, 264, 2.0f, 21);
    float ps[] = {0.1f, 0.5f, 0.9f, 0.95f, 0.999f};
    for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++) {
        run_case(l264, 264, 1.0f, 0, ps[i]);
        run_case(l264, 264, 0.8f, 0, ps[i]);
    }
    /* the llama2.c cutoff (1 - p) / (V - 1) is tight here: p = 0.6 and
     * masses {0.59, 0.1025 x 4} need one of the 0.1025s (the lowest id),
     * only 2.5% above the cutoff of 0.1 */
    float tight[5];
    double tq[5] = {0.59, 0.1025, 0.1025, 0.1025, 0.1025};
    for (int i = 0; i < 5; i++) tight[i] = (float)log(tq[i]);
    sampler_params_t p6 = {1.0f, 0, 0.6f};
    sweep(tight, 5, &p6, counts);
    assert_true(fabs((double)counts[0] / N_COINS - 0.59 / 0.6925) < FREQ_TOL);
    assert_true(fabs((double)counts[1] / N_COINS - 0.1025 / 0.6925) < FREQ_TOL);
    assert_int_equal(counts[2] + counts[3] + counts[4], 0);
    /* uniform row with a tiny p: the llama2.c cutoff would drop every token;
     * the nucleus must still keep one (the lowest id) */
    float flat[100];
    for (int i = 0; i < 100; i++) flat[i] = 1.0f;
    sampler_params_t tiny = {1.0f, 0, 0.001f};
    int fc[100];
    sweep(flat, 100, &tiny, fc);
    assert_int_equal(fc[0], N_COINS);
}

/* Many random rows of varied shape through the selection path. */
static void test_top_p_random_rows(void **state) {
    (void)state;
    static float l[1000];
    rng_t r;
    rng_init(&r, 77);
    g_coins = 5000;
    for (int row = 0; row < 45; row++) {
        int V = row % 3 == 0 ? 50 : row % 3 == 1 ? 264 : 1000;
        float scale = 0.3f + 4.0f * rng_float(&r);
        float top_p = 0.05f + 0.94f * rng_float(&r);
        float T = 0.5f + rng_float(&r);
        int top_k = row % 4 == 0 ? 1 + (int)rng_below(&r, (uint32_t)V) : 0;
        random_logits(l, V, scale, 1000 + (uint64_t)row);
        if (row % 5 == 0) // coarse logits: many exact ties
            for (int i = 0; i < V; i++) l[i] = roundf(l[i]);
        run_case(l, V, T, top_k, top_p);
    }
}

static void test_top_k_then_top_p(void **state) {
    (void)state;
    float l[264];
    random_logits(l, 264, 1.5f, 31);
    run_case(l, 264, 1.0f, 20, 0.8f);
    run_case(l, 264, 0.7f, 50, 0.5f);
    run_case(l, 264, 1.3f, 5, 0.99f);
    /* the nucleus is over the renormalised top-k mass: p = 0.6 of the top 2
     * of {0.5, 0.25, ...} needs both (0.5 / 0.75 = 0.667 >= 0.6 keeps 1,
     * 0.7 needs 2) */
    float q[5];
    double pq[5] = {0.5, 0.25, 0.125, 0.0625, 0.0625};
    for (int i = 0; i < 5; i++) q[i] = (float)log(pq[i]);
    int counts[5];
    sampler_params_t a = {1.0f, 2, 0.6f}, b = {1.0f, 2, 0.7f};
    sweep(q, 5, &a, counts);
    assert_int_equal(counts[0], N_COINS);
    sweep(q, 5, &b, counts);
    assert_true(fabs((double)counts[0] / N_COINS - 2.0 / 3) < FREQ_TOL);
    assert_true(fabs((double)counts[1] / N_COINS - 1.0 / 3) < FREQ_TOL);
}

static void test_large_vocab(void **state) {
    (void)state;
    static float l[VMAX];
    random_logits(l, VMAX, 3.0f, 41);
    g_coins = 4000;
    run_case(l, VMAX, 1.0f, 40, 1.0f);
    run_case(l, VMAX, 1.0f, 0, 0.9f);
    run_case(l, VMAX, 0.8f, 100, 0.95f);
    run_case(l, VMAX, 1.0f, 0, 1.0f);
    run_case(l, VMAX, 1.0f, 0, 0.3f);
    g_coins = N_COINS;
}

static void test_logprob_is_full_vocab(void **state) {
    (void)state;
    /* truncation must not renormalise the reported log-prob */
    float l[264];
    random_logits(l, 264, 2.0f, 51);
    double ref[264];
    float Ts[] = {0.5f, 1.0f, 1.7f};
    for (size_t t = 0; t < 3; t++) {
        ref_logprobs(l, 264, Ts[t], ref);
        sampler_params_t p = {Ts[t], 3, 0.5f};
        for (int c = 0; c < 100; c++) {
            float lp;
            int id = sampler_sample(l, 264, &p, (float)c / 100, g_scratch, g_idx, &lp);
            assert_true(fabs((double)lp - ref[id]) <= 1e-6 * fmax(1.0, fabs(ref[id])));
        }
    }
    /* helpers */
    double m = -INFINITY, s = 0.0;
    for (int i = 0; i < 264; i++) m = fmax(m, l[i]);
    for (int i = 0; i < 264; i++) s += exp((double)l[i] - m);
    assert_true(fabs(sampler_logsumexp(l, 264) - (m + log(s))) < 1e-5);
    float sm[264];
    memcpy(sm, l, sizeof(sm));
    sampler_softmax(sm, 264);
    double tot = 0.0;
    for (int i = 0; i < 264; i++) {
        assert_true(fabs(sm[i] - exp((double)l[i] - m) / s) < 1e-7);
        tot += sm[i];
    }
    assert_true(fabs(tot - 1.0) < 1e-5);
}

static void test_edge_inputs(void **state) {
    (void)state;
    float l[6] = {0.0f, -INFINITY, 1.0f, -INFINITY, 0.5f, -INFINITY};
    /* masked tokens are never drawn, even at the ends of the coin range */
    sampler_params_t ps[] = {{1.0f, 0, 1.0f}, {1.0f, 5, 1.0f}, {1.0f, 0, 0.99f}, {2.0f, 6, 0.999f}};
    for (size_t k = 0; k < sizeof(ps) / sizeof(ps[0]); k++) {
        float coins[] = {0.0f, 1e-9f, 0.5f, 0.99999994f, 1.0f, 2.0f, -1.0f, NAN};
        for (size_t c = 0; c < sizeof(coins) / sizeof(coins[0]); c++) {
            float lp;
            int id = sampler_sample(l, 6, &ps[k], coins[c], g_scratch, g_idx, &lp);
            assert_true(id == 0 || id == 2 || id == 4);
            assert_true(isfinite(lp));
        }
    }
    /* coin 0 is the most likely token first in rank order; coin ~1 the last
     * kept one */
    sampler_params_t plain = {1.0f, 0, 1.0f}, topk = {1.0f, 2, 1.0f};
    assert_int_equal(sampler_sample(l, 6, &plain, 0.0f, g_scratch, g_idx, NULL), 0); // scan order is by id
    assert_int_equal(sampler_sample(l, 6, &topk, 0.0f, g_scratch, g_idx, NULL), 2);
    assert_int_equal(sampler_sample(l, 6, &topk, 0.99999994f, g_scratch, g_idx, NULL), 4);
    /* V = 1, NULL params (defaults), NaN logits stay in range */
    float one = 3.0f, lp1;
    assert_int_equal(sampler_sample(&one, 1, NULL, 0.7f, g_scratch, g_idx, &lp1), 0);
    assert_true(fabs(lp1) < 1e-7);
    float bad[4] = {NAN, 1.0f, NAN, 2.0f};
    for (int c = 0; c < 10; c++) {
        int id = sampler_sample(bad, 4, NULL, (float)c / 10, g_scratch, g_idx, NULL);
        assert_true(id == 1 || id == 3);
    }
    float allnan[3] = {NAN, NAN, NAN};
    int id = sampler_sample(allnan, 3, NULL, 0.5f, g_scratch, g_idx, NULL);
    assert_true(id >= 0 && id < 3);
    assert_int_equal(sampler_sample(l, 0, NULL, 0.5f, g_scratch, g_idx, NULL), -1);
}

static void test_deterministic_given_coin(void **state) {
    (void)state;
    float l[264];
    random_logits(l, 264, 2.0f, 61);
    sampler_params_t p = {0.9f, 40, 0.9f};
    rng_t r1, r2;
    rng_init(&r1, 99);
    rng_init(&r2, 99);
    for (int i = 0; i < 1000; i++) {
        int a = sampler_sample(l, 264, &p, rng_float(&r1), g_scratch, g_idx, NULL);
        int b = sampler_sample(l, 264, &p, rng_float(&r2), g_scratch, g_idx, NULL);
        assert_int_equal(a, b);
    }
}

static int reset_coins(void **state) {
    (void)state;
    g_coins = N_COINS;
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_greedy_is_argmax, reset_coins),
        cmocka_unit_test_setup(test_full_softmax_frequencies, reset_coins),
        cmocka_unit_test_setup(test_temperature, reset_coins),
        cmocka_unit_test_setup(test_top_k, reset_coins),
        cmocka_unit_test_setup(test_top_p, reset_coins),
        cmocka_unit_test_setup(test_top_p_random_rows, reset_coins),
        cmocka_unit_test_setup(test_top_k_then_top_p, reset_coins),
        cmocka_unit_test_setup(test_large_vocab, reset_coins),
        cmocka_unit_test_setup(test_logprob_is_full_vocab, reset_coins),
        cmocka_unit_test_setup(test_edge_inputs, reset_coins),
        cmocka_unit_test_setup(test_deterministic_given_coin, reset_coins),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
