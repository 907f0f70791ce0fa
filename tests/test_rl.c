/*
 * test_rl.c - learner/rl.c against a float64 PyTorch reference, finite
 * differences, hand-computed cases, and one PPO step through the tiny model.
 *
 * The reference is tests/fixtures/rl_ref.json, written by tests/rl_ref.py
 * (committed, so ctest never needs Python). Its inputs are float32 values and
 * its outputs float64 computed from them, including the loss gradients by
 * torch autograd; every quantity prints its largest absolute difference and
 * that difference relative to the reference's largest magnitude, and fails
 * beyond TOL_REL. rl.c computes per token in double and rounds once on store,
 * so what is left is float32 rounding of the outputs (unit roundoff 6e-8);
 * measured at most 6e-8 relative (Release -O3 and ASan builds alike).
 * TOL_REL = 1e-6 leaves 15x, while the small deliberate errors of
 * test_checks_can_fail (lambda 0.95 -> 0.951, clip 0.2 -> 0.21) move the
 * checked values by 3e-3 relative or more.
 * Finite differences use h = 2^-12 on float inputs (exact offsets) and double
 * losses; the truncation error (h^2/6) L''' is ~1e-8 relative, measured at
 * most 4e-7 (the KL loss, whose gradient 1 - exp(x) can be small where L'''
 * is not), against TOL_FD = 1e-5.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "common/model.h"
#include "common/optim.h"
#include "learner/rl.h"
#include "tests/testutil.h"

#define TOL_REL 1e-6 // vs the reference: max |C - ref| / max |ref|
#define TOL_FD  1e-5 // analytic vs central difference: relative to max(|g|, 1e-2 * max |g|)

/* |a - b| <= tol in double (cmocka's assert_float_equal rounds to float) */
#define assert_near(a, b, tol)                                                                                         \
    do {                                                                                                               \
        double a_ = (a), b_ = (b);                                                                                     \
        if (!(fabs(a_ - b_) <= (tol))) fail_msg("%s = %.17g, want %.17g (tol %g)", #a, a_, b_, (double)(tol));         \
    } while (0)

/* ---- fixture ---- */

typedef struct {
    json_t *root;
    int B, T, G, K;
    void *keep[256]; // arrays handed out, freed at teardown
    int n_keep;
} fixture_t;

static const json_t *jpath(const json_t *root, const char *path) {
    char buf[256], *save = NULL;
    snprintf(buf, sizeof buf, "%s", path);
    const json_t *j = root;
    for (char *tok = strtok_r(buf, ".", &save); tok && j; tok = strtok_r(NULL, ".", &save))
        j = json_is_array(j) ? json_array_get(j, (size_t)atoi(tok)) : json_object_get(j, tok);
    if (!j) fprintf(stderr, "rl_ref.json: no \"%s\"; regenerate with /usr/bin/python3 tests/rl_ref.py\n", path);
    return j;
}

static void *keep(fixture_t *f, void *p) {
    assert_true(f->n_keep < (int)(sizeof f->keep / sizeof f->keep[0]));
    f->keep[f->n_keep++] = p;
    return p;
}

static double num(const fixture_t *f, const char *path) {
    const json_t *j = jpath(f->root, path);
    assert_true(j && json_is_number(j));
    return json_number_value(j);
}

/* A numeric array of exactly n elements, as double (kept until teardown). */
static double *dbl(fixture_t *f, const char *path, size_t n) {
    const json_t *j = jpath(f->root, path);
    assert_true(j && json_is_array(j));
    if (json_array_size(j) != n)
        fprintf(stderr, "rl_ref.json: %s has %zu numbers, want %zu\n", path, json_array_size(j), n);
    assert_int_equal(json_array_size(j), n);
    double *d = keep(f, malloc(sizeof(double) * (n ? n : 1)));
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(j, i);
        assert_true(json_is_number(e));
        d[i] = json_number_value(e);
    }
    return d;
}

/* The same as float: fixture inputs are float32 values, so this is exact. */
static float *flt(fixture_t *f, const char *path, size_t n) {
    double *d = dbl(f, path, n);
    float *x = keep(f, malloc(sizeof(float) * (n ? n : 1)));
    for (size_t i = 0; i < n; i++) x[i] = (float)d[i];
    return x;
}

static float *zeros(fixture_t *f, size_t n) {
    return keep(f, tu_zeros(n));
}

static int setup(void **state) {
    fixture_t *f = calloc(1, sizeof *f);
    char path[1024];
    json_error_t je;
    snprintf(path, sizeof path, "%s/rl_ref.json", RLHF_FIXTURES);
    f->root = json_load_file(path, 0, &je);
    if (!f->root) {
        fprintf(stderr, "cannot load %s: %s (line %d); regenerate with /usr/bin/python3 tests/rl_ref.py\n", path,
                je.text, je.line);
        free(f);
        return -1;
    }
    f->B = (int)json_integer_value(json_object_get(f->root, "B"));
    f->T = (int)json_integer_value(json_object_get(f->root, "T"));
    f->G = (int)json_integer_value(json_object_get(f->root, "G"));
    f->K = (int)json_integer_value(json_object_get(f->root, "K"));
    if (f->B <= 0 || f->T <= 0 || f->G <= 0 || f->K <= 0) {
        fprintf(stderr, "rl_ref.json: bad dims B=%d T=%d G=%d K=%d\n", f->B, f->T, f->G, f->K);
        json_decref(f->root);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture_t *f = *state;
    for (int i = 0; i < f->n_keep; i++) free(f->keep[i]);
    json_decref(f->root);
    free(f);
    return 0;
}

/* Free what a test handed out (fixture data stays parsed). */
static void release(fixture_t *f) {
    for (int i = 0; i < f->n_keep; i++) free(f->keep[i]);
    f->n_keep = 0;
}

/* ---- comparisons: print, then return 1 on failure ---- */

static int g_quiet; // test_checks_can_fail: print only the checks that trip, as intended

static int check_arr(const char *name, const float *got, const double *want, size_t n, double tol) {
    double dmax = 0.0, rmax = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (d > dmax || isnan(d)) dmax = isnan(d) ? INFINITY : d;
        rmax = fmax(rmax, fabs(want[i]));
    }
    double rel = dmax / fmax(rmax, 1e-30);
    int bad = !(rel <= tol);
    if (!g_quiet || bad)
        printf("  %-26s max |diff| %.2e  rel %.2e  (max |ref| %.3g)%s\n", name, dmax, rel, rmax,
               bad ? (g_quiet ? "  tripped, as intended" : "  FAIL") : "");
    return bad;
}

static int check_num(const char *name, double got, double want, double tol) {
    double d = fabs(got - want), rel = d / fmax(fabs(want), 1e-30);
    int bad = !(rel <= tol || d == 0.0);
    if (!g_quiet || bad)
        printf("  %-26s %.9g vs ref %.9g  |diff| %.2e  rel %.2e%s\n", name, got, want, d, rel,
               bad ? (g_quiet ? "  tripped, as intended" : "  FAIL") : "");
    return bad;
}

/* ---- against the reference ---- */

static void test_ref_kl_and_rewards(void **state) {
    fixture_t *f = *state;
    int B = f->B, T = f->T;
    size_t n = (size_t)B * T;
    const float *mask = flt(f, "inputs.mask", n), *old = flt(f, "inputs.logp_old", n);
    const float *ref = flt(f, "inputs.logp_ref", n);
    float *kl = zeros(f, n), *kl_seq = zeros(f, B), *rew = zeros(f, n);
    int bad = 0;
    printf("KL and token rewards (B=%d, T=%d, %d action tokens):\n", B, T, rl_mask_count(mask, n));
    double mk1 = rl_kl(kl, kl_seq, old, ref, mask, RL_KL_K1, B, T);
    bad += check_arr("kl k1", kl, dbl(f, "expect.kl_k1", n), n, TOL_REL);
    bad += check_arr("kl_seq k1", kl_seq, dbl(f, "expect.kl_seq_k1", B), B, TOL_REL);
    bad += check_num("kl seq mean k1", mk1, num(f, "expect.kl_mean_k1"), TOL_REL);
    double mk3 = rl_kl(kl, kl_seq, old, ref, mask, RL_KL_K3, B, T);
    bad += check_arr("kl k3", kl, dbl(f, "expect.kl_k3", n), n, TOL_REL);
    bad += check_arr("kl_seq k3", kl_seq, dbl(f, "expect.kl_seq_k3", B), B, TOL_REL);
    bad += check_num("kl seq mean k3", mk3, num(f, "expect.kl_mean_k3"), TOL_REL);
    /* rewards from the float32 k1 KL and the float32 normalised scores */
    const float *kl1 = flt(f, "expect.kl_k1", n), *scores = flt(f, "expect.scores_running", B);
    rl_token_rewards(rew, kl1, scores, mask, (float)num(f, "params.beta"), B, T);
    bad += check_arr("token rewards", rew, dbl(f, "expect.rewards", n), n, TOL_REL);
    release(f);
    assert_int_equal(bad, 0);
}

static void test_ref_scores(void **state) {
    fixture_t *f = *state;
    int B = f->B, bad = 0;
    float clip = (float)num(f, "params.reward_clip");
    float *s = flt(f, "inputs.scores", B);
    const float *prev = flt(f, "inputs.prev_scores", 10);
    float *s0 = keep(f, malloc(sizeof(float) * B));
    memcpy(s0, s, sizeof(float) * B);
    printf("task score normalisation (clip %g):\n", (double)clip);
    rl_moments_t mo = {0};
    rl_moments_update(&mo, prev, 10);
    rl_scores_normalize(s, &mo, RL_REWARD_NORM_RUNNING, clip, B);
    bad += check_arr("running", s, dbl(f, "expect.scores_running", B), B, TOL_REL);
    bad += check_num("running mean", mo.mean, num(f, "expect.running_state.mean"), 1e-12);
    bad += check_num("running m2", mo.m2, num(f, "expect.running_state.m2"), 1e-12);
    assert_int_equal(mo.count, (int64_t)num(f, "expect.running_state.count"));
    memcpy(s, s0, sizeof(float) * B);
    rl_scores_normalize(s, NULL, RL_REWARD_NORM_BATCH, clip, B);
    bad += check_arr("batch", s, dbl(f, "expect.scores_batch", B), B, TOL_REL);
    memcpy(s, s0, sizeof(float) * B);
    rl_scores_normalize(s, NULL, RL_REWARD_NORM_NONE, clip, B);
    bad += check_arr("clip only", s, dbl(f, "expect.scores_clip_only", B), B, 0.0);
    memcpy(s, s0, sizeof(float) * B);
    rl_scores_normalize(s, NULL, RL_REWARD_NORM_NONE, 0.0f, B); /* nothing at all */
    assert_memory_equal(s, s0, sizeof(float) * B);
    release(f);
    assert_int_equal(bad, 0);
}

static int gae_case(fixture_t *f, int c, float dlambda) {
    int B = f->B, T = f->T, bad = 0;
    size_t n = (size_t)B * T;
    char p[96], name[64];
    snprintf(p, sizeof p, "expect.gae.%d.gamma", c);
    float gamma = (float)num(f, p);
    snprintf(p, sizeof p, "expect.gae.%d.lam", c);
    float lambda = (float)num(f, p) + dlambda;
    float *adv = zeros(f, n), *ret = zeros(f, n);
    rl_gae(adv, ret, flt(f, "expect.rewards", n), flt(f, "inputs.values_old", n), flt(f, "inputs.mask", n), gamma,
           lambda, B, T);
    snprintf(p, sizeof p, "expect.gae.%d.adv", c);
    snprintf(name, sizeof name, "adv (g=%g l=%g)", (double)gamma, (double)lambda);
    bad += check_arr(name, adv, dbl(f, p, n), n, TOL_REL);
    snprintf(p, sizeof p, "expect.gae.%d.ret", c);
    snprintf(name, sizeof name, "ret (g=%g l=%g)", (double)gamma, (double)lambda);
    bad += check_arr(name, ret, dbl(f, p, n), n, TOL_REL);
    return bad;
}

static void test_ref_gae_whiten(void **state) {
    fixture_t *f = *state;
    int B = f->B, T = f->T, bad = 0;
    size_t n = (size_t)B * T;
    printf("GAE and advantage whitening:\n");
    for (int c = 0; c < 3; c++) bad += gae_case(f, c, 0.0f);
    const float *mask = flt(f, "inputs.mask", n);
    float *a = flt(f, "expect.gae.0.adv", n), *a2 = keep(f, malloc(sizeof(float) * n));
    memcpy(a2, a, sizeof(float) * n);
    rl_whiten(a, mask, 1, n);
    bad += check_arr("whitened", a, dbl(f, "expect.adv_white", n), n, TOL_REL);
    rl_whiten(a2, mask, 0, n);
    bad += check_arr("whitened, mean kept", a2, dbl(f, "expect.adv_white_noshift", n), n, TOL_REL);
    release(f);
    assert_int_equal(bad, 0);
}

/* The loss checks, with an optional wrong clip to prove they can fail. */
static int losses(fixture_t *f, float dclip) {
    int B = f->B, T = f->T, bad = 0;
    size_t n = (size_t)B * T;
    const float *mask = flt(f, "inputs.mask", n), *lnew = flt(f, "inputs.logp_new", n);
    const float *lold = flt(f, "inputs.logp_old", n), *adv = flt(f, "expect.adv_white", n);
    float *g = zeros(f, n);

    rl_policy_stats_t ps;
    double L = rl_policy_loss(g, &ps, lnew, lold, adv, mask, (float)num(f, "params.clip_eps") + dclip, 0, B, T);
    bad += check_num("policy loss", L, num(f, "expect.policy.loss"), TOL_REL);
    bad += check_arr("policy dL/dlogp_new", g, dbl(f, "expect.policy.dlogp", n), n, TOL_REL);
    bad += check_num("policy clip_frac", ps.clip_frac, num(f, "expect.policy.clip_frac"), 1e-12);
    bad += check_num("policy approx_kl", ps.approx_kl, num(f, "expect.policy.approx_kl"), TOL_REL);
    bad += check_num("policy ratio_mean", ps.ratio_mean, num(f, "expect.policy.ratio_mean"), TOL_REL);
    if (dclip != 0.0f) return bad;
    assert_int_equal(ps.n_tokens, rl_mask_count(mask, n));

    memset(g, 0, sizeof(float) * n);
    double ment;
    L = rl_entropy_loss(g, &ment, flt(f, "inputs.entropy", n), mask, (float)num(f, "params.entropy_coef"), 0, B, T);
    bad += check_num("entropy loss", L, num(f, "expect.entropy.loss"), TOL_REL);
    bad += check_arr("entropy dL/dentropy", g, dbl(f, "expect.entropy.dentropy", n), n, TOL_REL);
    bad += check_num("entropy mean", ment, num(f, "expect.entropy.mean"), TOL_REL);

    const float *vn = flt(f, "inputs.values_new", n), *vo = flt(f, "inputs.values_old", n);
    const float *ret = flt(f, "expect.gae.0.ret", n);
    static const char *const which[2] = {"value", "value_noclip"};
    for (int k = 0; k < 2; k++) {
        char p[96], name[64];
        rl_value_stats_t vs;
        memset(g, 0, sizeof(float) * n);
        L = rl_value_loss(g, &vs, vn, vo, ret, mask, k == 0 ? (float)num(f, "params.value_clip") : 0.0f, 0, B, T);
#define VCHECK(field, got, tol)                                                                                        \
    snprintf(p, sizeof p, "expect.%s.%s", which[k], field);                                                            \
    snprintf(name, sizeof name, "%s %s", k == 0 ? "value" : "value(noclip)", field);                                   \
    bad += check_num(name, got, num(f, p), tol)
        VCHECK("loss", L, TOL_REL);
        VCHECK("explained_var", vs.explained_var, TOL_REL);
        VCHECK("value_error", vs.value_error, TOL_REL);
        VCHECK("clip_frac", vs.clip_frac, 1e-12);
#undef VCHECK
        snprintf(p, sizeof p, "expect.%s.dvalues", which[k]);
        snprintf(name, sizeof name, "%s dL/dV_new", k == 0 ? "value" : "value(noclip)");
        bad += check_arr(name, g, dbl(f, p, n), n, TOL_REL);
    }

    memset(g, 0, sizeof(float) * n);
    L = rl_kl_loss(g, lnew, flt(f, "inputs.logp_ref", n), mask, (float)num(f, "params.kl_coef"), 0, B, T);
    bad += check_num("kl loss (k3, GRPO)", L, num(f, "expect.kl_loss.loss"), TOL_REL);
    bad += check_arr("kl loss dL/dlogp_new", g, dbl(f, "expect.kl_loss.dlogp", n), n, TOL_REL);
    return bad;
}

static void test_ref_losses(void **state) {
    fixture_t *f = *state;
    printf("losses and gradients (autograd reference):\n");
    int bad = losses(f, 0.0f);
    release(f);
    assert_int_equal(bad, 0);
}

static void test_ref_kl_ctl_and_critic_free(void **state) {
    fixture_t *f = *state;
    int G = f->G, K = f->K, B = G * K, bad = 0;
    printf("adaptive KL controller and critic-free baselines (G=%d, K=%d):\n", G, K);
    rl_config_t c;
    rl_config_default(&c);
    c.kl_adaptive = 1;
    c.kl_beta = (float)num(f, "params.kl_beta0");
    c.kl_target = (float)num(f, "params.kl_target");
    c.kl_horizon = (float)num(f, "params.kl_horizon");
    rl_kl_ctl_t ctl;
    rl_kl_ctl_init(&ctl, &c);
    const double *kls = dbl(f, "expect.kl_ctl.kls", 5), *betas = dbl(f, "expect.kl_ctl.betas", 5);
    float got[5];
    for (int i = 0; i < 5; i++) {
        rl_kl_ctl_update(&ctl, &c, kls[i], (int)num(f, "params.kl_n_steps"));
        got[i] = (float)ctl.beta;
        bad += fabs(ctl.beta - betas[i]) > 1e-12 * betas[i];
    }
    bad += check_arr("adaptive beta", got, betas, 5, 1e-7);

    const float *s = flt(f, "inputs.scores_group", B);
    float *adv = zeros(f, B);
    assert_int_equal(rl_grpo_advantages(adv, s, 1, (float)num(f, "params.grpo_eps"), G, K), RLHF_OK);
    bad += check_arr("grpo", adv, dbl(f, "expect.grpo", B), B, TOL_REL);
    assert_int_equal(rl_grpo_advantages(adv, s, 0, (float)num(f, "params.grpo_eps"), G, K), RLHF_OK);
    bad += check_arr("grpo (no std)", adv, dbl(f, "expect.grpo_nostd", B), B, TOL_REL);
    assert_int_equal(rl_rloo_advantages(adv, s, G, K), RLHF_OK);
    bad += check_arr("rloo", adv, dbl(f, "expect.rloo", B), B, TOL_REL);
    int best[8];
    rl_best_of_k(best, s, G, K);
    const double *want = dbl(f, "expect.best_of_k", G);
    for (int g = 0; g < G; g++) {
        printf("  best of group %d: %d (ref %d)\n", g, best[g], (int)want[g]);
        bad += best[g] != (int)want[g];
    }
    /* broadcast the first B rows' GRPO advantages onto the batch's tokens */
    int Bt = f->B, T = f->T;
    size_t n = (size_t)Bt * T;
    assert_true(Bt <= B);
    float *tok = zeros(f, n);
    assert_int_equal(rl_grpo_advantages(adv, s, 1, (float)num(f, "params.grpo_eps"), G, K), RLHF_OK);
    rl_broadcast(tok, adv, flt(f, "inputs.mask", n), Bt, T);
    bad += check_arr("grpo broadcast", tok, dbl(f, "expect.grpo_tokens", n), n, TOL_REL);
    release(f);
    assert_int_equal(bad, 0);
}

/* The checks above must be able to fail: a wrong lambda or clip trips them. */
static void test_checks_can_fail(void **state) {
    fixture_t *f = *state;
    g_quiet = 1;
    int gae_bad = gae_case(f, 0, 0.001f);
    int pol_bad = losses(f, 0.01f);
    g_quiet = 0;
    printf("deliberate errors detected: lambda +0.001 -> %d failing checks, clip +0.01 -> %d\n", gae_bad, pol_bad);
    release(f);
    assert_true(gae_bad > 0);
    assert_true(pol_bad > 0);
}

/* ---- finite differences ---- */

/* Inputs of the finite-difference checks, loaded once per test. */
typedef struct {
    const float *mask, *logp_old, *logp_ref, *adv, *values_old, *ret;
    float clip_eps, value_clip;
    int B, T;
} fd_inputs_t;

typedef double (*loss_fn)(const fd_inputs_t *in, float *x, float *grad);

static double fd_policy(const fd_inputs_t *in, float *x, float *g) {
    return rl_policy_loss(g, NULL, x, in->logp_old, in->adv, in->mask, in->clip_eps, 0, in->B, in->T);
}
static double fd_value(const fd_inputs_t *in, float *x, float *g) {
    return rl_value_loss(g, NULL, x, in->values_old, in->ret, in->mask, in->value_clip, 0, in->B, in->T);
}
static double fd_kl(const fd_inputs_t *in, float *x, float *g) {
    return rl_kl_loss(g, x, in->logp_ref, in->mask, 0.04f, 0, in->B, in->T);
}
static double fd_entropy(const fd_inputs_t *in, float *x, float *g) {
    return rl_entropy_loss(g, NULL, x, in->mask, 0.01f, 0, in->B, in->T);
}

/* Distance of x[i] from the loss's kinks, in the units of x. */
static double kink_policy(const fd_inputs_t *in, const float *x, size_t i) {
    double log_ratio = (double)x[i] - in->logp_old[i], eps = in->clip_eps;
    return fmin(fabs(log_ratio - log(1 - eps)), fabs(log_ratio - log(1 + eps))); // band edges
}
static double kink_value(const fd_inputs_t *in, const float *x, size_t i) {
    double vo = in->values_old[i], R = in->ret[i], eps = in->value_clip, d = x[i] - vo;
    double k = fmin(fabs(d - eps), fabs(d + eps)); // band edges
    /* outside the band the two terms tie where V_new - R = -(V_clip - R) */
    double vc = d > 0 ? vo + eps : vo - eps;
    return fmin(k, fabs(x[i] - (2 * R - vc)));
}
static double kink_none(const fd_inputs_t *in, const float *x, size_t i) {
    (void)in, (void)x, (void)i;
    return INFINITY;
}

static int fd_check(fixture_t *f, const fd_inputs_t *in, const char *name, const char *input, loss_fn L,
                    double (*kink)(const fd_inputs_t *, const float *, size_t)) {
    size_t n = (size_t)in->B * in->T;
    const float h = 0x1p-12f; // x +- h is exact in float for |x| < 2048
    float *x = flt(f, input, n), *g = zeros(f, n), *scratch = zeros(f, n);
    L(in, x, g);
    double gmax = tu_maxabs1(g, n), worst = 0.0;
    int checked = 0, skipped = 0;
    for (size_t i = 0; i < n; i++) {
        if (kink(in, x, i) < 4 * h) {
            skipped++;
            continue;
        }
        float x0 = x[i];
        x[i] = x0 + h;
        double lp = L(in, x, scratch);
        x[i] = x0 - h;
        double lm = L(in, x, scratch);
        x[i] = x0;
        double fd = (lp - lm) / (2.0 * h), d = fabs(fd - g[i]) / fmax(fabs(g[i]), 1e-2 * gmax);
        worst = fmax(worst, d);
        checked++;
    }
    int bad = !(worst <= TOL_FD);
    printf("  %-22s %d entries (%d near a kink skipped): max rel |fd - analytic| %.2e%s\n", name, checked, skipped,
           worst, bad ? "  FAIL" : "");
    return bad;
}

static void test_finite_differences(void **state) {
    fixture_t *f = *state;
    printf("central differences (h = 2^-12) of the losses vs their gradients, every position:\n");
    size_t n = (size_t)f->B * f->T;
    const fd_inputs_t in = {
        .mask = flt(f, "inputs.mask", n),
        .logp_old = flt(f, "inputs.logp_old", n),
        .logp_ref = flt(f, "inputs.logp_ref", n),
        .adv = flt(f, "expect.adv_white", n),
        .values_old = flt(f, "inputs.values_old", n),
        .ret = flt(f, "expect.gae.0.ret", n),
        .clip_eps = (float)num(f, "params.clip_eps"),
        .value_clip = (float)num(f, "params.value_clip"),
        .B = f->B,
        .T = f->T,
    };
    int bad = 0;
    bad += fd_check(f, &in, "policy d/dlogp_new", "inputs.logp_new", fd_policy, kink_policy);
    bad += fd_check(f, &in, "value d/dV_new", "inputs.values_new", fd_value, kink_value);
    bad += fd_check(f, &in, "kl loss d/dlogp_new", "inputs.logp_new", fd_kl, kink_none);
    bad += fd_check(f, &in, "entropy d/dentropy", "inputs.entropy", fd_entropy, kink_none);
    release(f);
    assert_int_equal(bad, 0);
}

/* ---- conventions: ADD semantics, accumulation over calls ---- */

static void test_add_and_accumulate(void **state) {
    fixture_t *f = *state;
    int B = f->B, T = f->T;
    size_t n = (size_t)B * T;
    const float *mask = flt(f, "inputs.mask", n), *lnew = flt(f, "inputs.logp_new", n);
    const float *lold = flt(f, "inputs.logp_old", n), *adv = flt(f, "expect.adv_white", n);
    const float *vn = flt(f, "inputs.values_new", n), *vo = flt(f, "inputs.values_old", n);
    const float *ret = flt(f, "expect.gae.0.ret", n);
    float clip = (float)num(f, "params.clip_eps"), vclip = (float)num(f, "params.value_clip");
    float *g1 = zeros(f, n), *g2 = zeros(f, n), *v1 = zeros(f, n), *v2 = zeros(f, n);

    /* one call over the batch vs two calls over rows [0,3) and [3,B) with the total count */
    double L1 = rl_policy_loss(g1, NULL, lnew, lold, adv, mask, clip, 0, B, T);
    double V1 = rl_value_loss(v1, NULL, vn, vo, ret, mask, vclip, 0, B, T);
    double ntok = rl_mask_count(mask, n), L2 = 0.0, V2 = 0.0;
    int b0 = 3;
    size_t o = (size_t)b0 * T;
    L2 += rl_policy_loss(g2, NULL, lnew, lold, adv, mask, clip, ntok, b0, T);
    L2 += rl_policy_loss(g2 + o, NULL, lnew + o, lold + o, adv + o, mask + o, clip, ntok, B - b0, T);
    V2 += rl_value_loss(v2, NULL, vn, vo, ret, mask, vclip, ntok, b0, T);
    V2 += rl_value_loss(v2 + o, NULL, vn + o, vo + o, ret + o, mask + o, vclip, ntok, B - b0, T);
    printf("split in two calls with n_tokens = %g: policy loss |diff| %.2e, grad %.2e; value loss %.2e, grad %.2e\n",
           ntok, fabs(L1 - L2), tu_maxabs(g1, g2, n), fabs(V1 - V2), tu_maxabs(v1, v2, n));
    assert_true(fabs(L1 - L2) < 1e-12 && fabs(V1 - V2) < 1e-12);
    assert_true(tu_maxabs(g1, g2, n) == 0.0 && tu_maxabs(v1, v2, n) == 0.0);

    /* gradients ADD: a buffer holding 1 ends up 1 + gradient */
    for (size_t i = 0; i < n; i++) g2[i] = 1.0f;
    rl_policy_loss(g2, NULL, lnew, lold, adv, mask, clip, 0, B, T);
    for (size_t i = 0; i < n; i++) assert_near(g2[i], 1.0f + g1[i], 1e-7);
    release(f);
}

/* ---- hand-computed cases ---- */

static void test_gae_hand(void **state) {
    (void)state;
    enum { B = 2, T = 6 };
    /* row 0: prompt 1, actions at 1..4, padding at 5; row 1: actions at 0, 1, 4 (hole at 2, 3) */
    const float mask[B * T] = {0, 1, 1, 1, 1, 0, 1, 1, 0, 0, 1, 0};
    const float r[B * T] = {9, 0.5f, -0.25f, 1, 2, 9, 1, -1, 9, 9, 3, 9}; // 9s must be ignored
    const float v[B * T] = {9, 0.1f, 0.2f, -0.3f, 0.4f, 9, 0.5f, 0.25f, 9, 9, -1, 9};
    float adv[B * T], ret[B * T];
    /* gamma = lambda = 1: A = reward-to-go - V, R = reward-to-go */
    rl_gae(adv, ret, r, v, mask, 1.0f, 1.0f, B, T);
    const float togo[B * T] = {0, 3.25f, 2.75f, 3, 2, 0, 3, 2, 0, 0, 3, 0};
    for (int i = 0; i < B * T; i++) {
        assert_near(ret[i], togo[i], 1e-6);
        assert_near(adv[i], mask[i] ? togo[i] - v[i] : 0.0f, 1e-6);
    }
    /* gamma = 0: one-step, A = r - V whatever lambda */
    rl_gae(adv, ret, r, v, mask, 0.0f, 0.7f, B, T);
    for (int i = 0; i < B * T; i++) assert_near(adv[i], mask[i] ? r[i] - v[i] : 0.0f, 1e-6);
    /* lambda = 0: TD(0), A_t = r_t + gamma V_next - V_t; the hole in row 1 links t=1 to t=4 */
    rl_gae(adv, ret, r, v, mask, 0.5f, 0.0f, B, T);
    assert_near(adv[1], 0.5f + 0.5f * 0.2f - 0.1f, 1e-6);
    assert_near(adv[4], 2.0f - 0.4f, 1e-6); // last action: next value 0
    assert_near(adv[T + 1], -1.0f + 0.5f * -1.0f - 0.25f, 1e-6);
    printf("GAE hand cases (gamma=lambda=1 is reward-to-go minus V, gamma=0, lambda=0 across a hole): ok\n");
}

static void test_rewards_hand(void **state) {
    (void)state;
    enum { B = 3, T = 4 };
    const float mask[B * T] = {0, 1, 1, 0, 1, 1, 1, 1, 0, 0, 0, 0};
    const float kl[B * T] = {7, 1, 2, 7, -1, 0, 0, 0.5f, 7, 7, 7, 7}; // 7s are not actions
    const float scores[B] = {10, 20, 30};
    float r[B * T];
    rl_token_rewards(r, kl, scores, mask, 0.5f, B, T);
    const float want[B * T] = {0, -0.5f, -1 + 10, 0, 0.5f, 0, 0, -0.25f + 20, 0, 0, 0, 0};
    for (int i = 0; i < B * T; i++) assert_near(r[i], want[i], 1e-6);
    /* KL: empty rows do not count in the per-sequence mean */
    const float old[B * T] = {0, -1, -2, 0, -1, -1, -1, -1, 0, 0, 0, 0};
    const float ref[B * T] = {5, -2, -2, 5, -1, -1.5f, -1, -1, 5, 5, 5, 5};
    float k[B * T], ks[B];
    double mean = rl_kl(k, ks, old, ref, mask, RL_KL_K1, B, T);
    assert_near(ks[0], 1.0f, 1e-6);
    assert_near(ks[1], 0.5f, 1e-6);
    assert_near(ks[2], 0.0f, 0);
    assert_near(mean, 0.75, 1e-6);
    /* k3 is non-negative and zero where the policies agree */
    rl_kl(k, ks, old, ref, mask, RL_KL_K3, B, T);
    for (int i = 0; i < B * T; i++) assert_true(k[i] >= 0.0f);
    assert_near(k[2], 0.0f, 0);
    assert_near(k[1], expf(-1.0f) + 1.0f - 1.0f, 1e-6);
    printf("token rewards, KL per sequence: ok\n");
}

static void test_critic_free_hand(void **state) {
    (void)state;
    /* K = 2: RLOO's baseline is the other sample, so A_i = r_i - r_j (the full
     * difference); mean-centring (GRPO without std) gives half of it */
    const float s2[4] = {1, 0, 0.25f, 0.75f};
    float a[6];
    assert_int_equal(rl_rloo_advantages(a, s2, 2, 2), RLHF_OK);
    assert_near(a[0], 1.0f, 1e-7);
    assert_near(a[1], -1.0f, 1e-7);
    assert_near(a[2], -0.5f, 1e-7);
    assert_near(a[3], 0.5f, 1e-7);
    /* GRPO K=2: (r - mean)/std with the unbiased std |r1 - r2|/sqrt(2) -> +-1/sqrt(2) */
    assert_int_equal(rl_grpo_advantages(a, s2, 1, 1e-4f, 2, 2), RLHF_OK);
    assert_near(a[0], 0.5 / (M_SQRT1_2 + 1e-4), 1e-6);
    assert_near(a[3], 0.25 / (0.5 * M_SQRT1_2 + 1e-4), 1e-6);
    assert_int_equal(rl_grpo_advantages(a, s2, 0, 1e-4f, 2, 2), RLHF_OK);
    assert_near(a[0], 0.5f, 1e-7);
    assert_near(a[3], 0.25f, 1e-7);
    /* a constant group has zero advantage, not NaN */
    const float same[3] = {2, 2, 2};
    assert_int_equal(rl_grpo_advantages(a, same, 1, 1e-4f, 1, 3), RLHF_OK);
    for (int i = 0; i < 3; i++) assert_near(a[i], 0.0f, 0);
    /* K < 2 has no baseline */
    a[0] = 42.0f;
    assert_int_equal(rl_grpo_advantages(a, same, 1, 1e-4f, 3, 1), RLHF_EINVAL);
    assert_int_equal(rl_rloo_advantages(a, same, 3, 1), RLHF_EINVAL);
    assert_near(a[0], 42.0f, 0);
    /* best of k: ties -> lowest index, NaN never wins, K = 1 picks itself */
    const float s[9] = {1, 3, 3, NAN, -5, NAN, NAN, NAN, NAN};
    int best[3];
    rl_best_of_k(best, s, 3, 3);
    assert_int_equal(best[0], 1);
    assert_int_equal(best[1], 4);
    assert_int_equal(best[2], 6);
    rl_best_of_k(best, s, 2, 1);
    assert_int_equal(best[0], 0);
    assert_int_equal(best[1], 1);
    printf("RLOO (K=2: r_i - r_j), GRPO (no std, K=2: half of it), best-of-k ties and NaN: ok\n");
}

static void test_policy_value_hand(void **state) {
    (void)state;
    /* one token each: ratio e^0.5 with A=+1 is clipped (grad 0), with A=-1 it is not */
    const float m1[1] = {1}, lold[1] = {-1}, lnew[1] = {-0.5f};
    float g[1] = {0};
    rl_policy_stats_t ps;
    double L = rl_policy_loss(g, &ps, lnew, lold, (const float[]){1}, m1, 0.2f, 0, 1, 1);
    assert_near(L, -1.2, 1e-6);
    assert_near(g[0], 0.0f, 0);
    assert_near(ps.clip_frac, 1.0, 0);
    assert_near(ps.approx_kl, exp(0.5) - 1 - 0.5, 1e-9);
    L = rl_policy_loss(g, &ps, lnew, lold, (const float[]){-1}, m1, 0.2f, 0, 1, 1);
    assert_near(L, exp(0.5), 1e-6);
    assert_near(g[0], (float)exp(0.5), 1e-6);
    assert_near(ps.clip_frac, 0.0, 0);
    /* value: V_new moved 0.5 past V_old toward R -> clipped term larger, grad 0 */
    float dv[1] = {0};
    rl_value_stats_t vs;
    L = rl_value_loss(dv, &vs, (const float[]){1.5f}, (const float[]){1.0f}, (const float[]){2.0f}, m1, 0.2f, 0, 1, 1);
    assert_near(L, 0.5 * 0.8 * 0.8, 1e-6);
    assert_near(dv[0], 0.0f, 0);
    /* ...moved away from R: the unclipped term is larger, full gradient */
    L = rl_value_loss(dv, &vs, (const float[]){0.5f}, (const float[]){1.0f}, (const float[]){2.0f}, m1, 0.2f, 0, 1, 1);
    assert_near(L, 0.5 * 1.5 * 1.5, 1e-6);
    assert_near(dv[0], -1.5f, 1e-6);
    /* an empty mask: zero loss, zero gradient, no NaN anywhere */
    const float m0[2] = {0, 0};
    float g2[2] = {0, 0};
    assert_near(rl_policy_loss(g2, &ps, lnew, lold, (const float[]){1, 1}, m0, 0.2f, 0, 1, 2), 0.0, 0);
    assert_near(rl_value_loss(g2, &vs, lnew, lold, lold, m0, 0.2f, 0, 1, 2), 0.0, 0);
    double ment = -1;
    assert_near(rl_entropy_loss(g2, &ment, lnew, m0, 0.1f, 0, 1, 2), 0.0, 0);
    assert_near(rl_kl_loss(g2, lnew, lold, m0, 0.1f, 0, 1, 2), 0.0, 0);
    assert_true(!isnan(ps.approx_kl) && !isnan(vs.explained_var) && ment == 0.0);
    assert_near(g2[0], 0.0f, 0);
    assert_near(g2[1], 0.0f, 0);
    printf("policy and value loss branches by hand, empty mask: ok\n");
}

static void test_moments_and_whiten(void **state) {
    (void)state;
    /* running moments over several updates equal the statistics of the concatenation */
    rl_moments_t m = {0};
    const float x[7] = {1, 2, 4, 8, -3, 0.5f, 10};
    rl_moments_update(&m, x, 3);
    rl_moments_update(&m, x + 3, 0);
    rl_moments_update(&m, x + 3, 1);
    rl_moments_update(&m, x + 4, 3);
    double mean = 0, var = 0;
    for (int i = 0; i < 7; i++) mean += x[i] / 7.0;
    for (int i = 0; i < 7; i++) var += (x[i] - mean) * (x[i] - mean) / 7.0;
    assert_int_equal(m.count, 7);
    assert_near(m.mean, mean, 1e-12);
    assert_near(rl_moments_var(&m), var, 1e-12);
    /* whitening leaves unmasked entries alone; a single entry whitens to 0 */
    float y[4] = {5, 6, 7, 8};
    const float mk[4] = {0, 1, 0, 0};
    rl_whiten(y, mk, 1, 4);
    assert_near(y[0], 5.0f, 0);
    assert_near(y[1], 0.0f, 0);
    assert_near(y[2], 7.0f, 0);
    /* a constant batch of scores normalises to 0, not to NaN */
    float s[3] = {1, 1, 1};
    rl_scores_normalize(s, NULL, RL_REWARD_NORM_BATCH, 5.0f, 3);
    for (int i = 0; i < 3; i++) assert_near(s[i], 0.0f, 0);
    printf("running moments across updates, whitening edge cases: ok\n");
}

static void test_kl_ctl(void **state) {
    (void)state;
    rl_config_t c;
    rl_config_default(&c);
    rl_state_t st;
    rl_state_init(&st, &c);
    assert_near(st.kl.beta, c.kl_beta, 0);
    assert_int_equal(st.reward.count, 0);
    rl_kl_ctl_update(&st.kl, &c, 100.0, 512); /* fixed: nothing moves */
    assert_near(st.kl.beta, c.kl_beta, 0);
    c.kl_adaptive = 1;
    double b0 = st.kl.beta;
    rl_kl_ctl_update(&st.kl, &c, 100.0, 1000); /* error clipped at +0.2 */
    assert_near(st.kl.beta, b0 * (1 + 0.2 * 1000 / 10000.0), 1e-12);
    b0 = st.kl.beta;
    rl_kl_ctl_update(&st.kl, &c, NAN, 1000);
    assert_near(st.kl.beta, b0, 0);
    rl_kl_ctl_update(&st.kl, &c, 3.0, 1000); /* error -0.5 clipped at -0.2 */
    assert_near(st.kl.beta, b0 * (1 - 0.2 * 0.1), 1e-12);
    b0 = st.kl.beta;
    rl_kl_ctl_update(&st.kl, &c, 6.6, 1000); /* error +0.1 */
    assert_near(st.kl.beta, b0 * (1 + 0.1 * 0.1), 1e-9);
    printf("KL controllers (fixed, adaptive with clipped error, NaN KL ignored): ok\n");
}

static void test_config(void **state) {
    (void)state;
    rl_config_t c, d;
    char err[256];
    rl_config_default(&d);
    assert_int_equal(rl_config_validate(&d, err, sizeof err), RLHF_OK);
    assert_near(d.clip_eps, 0.2f, 0);
    assert_near(d.lambda, 0.95f, 0);
    assert_near(d.gamma, 1.0f, 0);
    /* one bad field at a time; the message must name it */
#define EXPECT_BAD(field, stmt)                                                                                        \
    do {                                                                                                               \
        c = d;                                                                                                         \
        stmt;                                                                                                          \
        err[0] = '\0';                                                                                                 \
        assert_int_equal(rl_config_validate(&c, err, sizeof err), RLHF_ERANGE);                                        \
        if (!strstr(err, field)) fail_msg("error for %s: \"%s\"", field, err);                                         \
    } while (0)
    EXPECT_BAD("clip_eps", c.clip_eps = 0.0f);
    EXPECT_BAD("clip_eps", c.clip_eps = 1.0f);
    EXPECT_BAD("clip_eps", c.clip_eps = NAN);
    EXPECT_BAD("value_clip", c.value_clip = INFINITY);
    EXPECT_BAD("value_clip", c.value_clip = NAN);
    EXPECT_BAD("gamma", c.gamma = 1.01f);
    EXPECT_BAD("lambda", c.lambda = -0.1f);
    EXPECT_BAD("kl_estimator", c.kl_estimator = (rl_kl_est_t)7);
    EXPECT_BAD("kl_adaptive", c.kl_adaptive = 2);
    EXPECT_BAD("kl_beta", c.kl_beta = -0.01f);
    EXPECT_BAD("kl_target", c.kl_target = 0.0f);
    EXPECT_BAD("kl_horizon", c.kl_horizon = -1.0f);
    EXPECT_BAD("reward_norm", c.reward_norm = (rl_reward_norm_t)3);
    EXPECT_BAD("reward_clip", c.reward_clip = NAN);
    EXPECT_BAD("adv_whiten", c.adv_whiten = -1);
    EXPECT_BAD("entropy_coef", c.entropy_coef = -1.0f);
    EXPECT_BAD("grpo_scale_std", c.grpo_scale_std = 3);
    EXPECT_BAD("grpo_eps", c.grpo_eps = 0.0f);
#undef EXPECT_BAD
    /* disabling switches are fine */
    c = d;
    c.value_clip = 0.0f, c.reward_clip = -1.0f, c.kl_beta = 0.0f, c.lambda = 1.0f, c.gamma = 0.0f;
    assert_int_equal(rl_config_validate(&c, NULL, 0), RLHF_OK);
    printf("config defaults validate; each bad field is named: ok\n");
}

/* ---- end to end through the tiny model ---- */

enum { EB = 2, ET = 10 };

/* tokens/targets for two rows: prompt 4 tokens, completion 5 (row 0) and 3 (row 1) */
static void e2e_batch(int *tokens, int *targets, float *mask, int V) {
    rng_t r;
    rng_init(&r, 7);
    for (int i = 0; i < EB * ET; i++) tokens[i] = (int)rng_below(&r, (uint32_t)V);
    for (int b = 0; b < EB; b++) {
        int comp = b == 0 ? 5 : 3;
        for (int t = 0; t < ET; t++) {
            int i = b * ET + t;
            int act = t >= 3 && t < 3 + comp; // logprob at t scores tokens[t+1]
            targets[i] = act ? tokens[i + 1] : -1;
            mask[i] = (float)act;
        }
    }
}

static void e2e_policy_step(float adv_value, int j) {
    model_config_t cfg;
    assert_int_equal(model_config_preset(&cfg, "tiny"), RLHF_OK);
    model_t *m = model_new(&cfg);
    assert_non_null(m);
    model_init_weights(m, 1234);
    assert_int_equal(model_alloc_grads(m), RLHF_OK);
    model_acts_t *a = model_acts_new(&cfg, EB, ET);
    adamw_config_t oc;
    adamw_config_default(&oc);
    oc.lr = 1e-3f, oc.weight_decay = 0.0f;
    adamw_t *opt = adamw_new(&oc, m->n_params);
    int tokens[EB * ET], targets[EB * ET];
    float mask[EB * ET], adv[EB * ET] = {0}, old[EB * ET], dlogp[EB * ET] = {0}, after[EB * ET];
    e2e_batch(tokens, targets, mask, cfg.vocab_size);
    assert_true(mask[j] != 0.0f);
    adv[j] = adv_value;

    model_forward(m, a, tokens, targets, EB, ET, 1.0f);
    memcpy(old, model_acts_logprobs(a), sizeof old);
    rl_policy_stats_t ps;
    double L0 = rl_policy_loss(dlogp, &ps, old, old, adv, mask, 0.2f, 0, EB, ET);
    assert_near(ps.ratio_mean, 1.0, 0); /* on-policy: ratio 1, nothing clipped */
    assert_near(ps.clip_frac, 0.0, 0);
    model_zero_grads(m);
    model_backward(m, a, dlogp, NULL, NULL);
    float gnorm;
    adamw_update(opt, m->params_mem, m->grads_mem, NULL, &gnorm, NULL);

    model_forward(m, a, tokens, targets, EB, ET, 1.0f);
    memcpy(after, model_acts_logprobs(a), sizeof after);
    memset(dlogp, 0, sizeof dlogp);
    double L1 = rl_policy_loss(dlogp, &ps, after, old, adv, mask, 0.2f, 0, EB, ET);
    printf("  A=%+g at token %d: log-prob %.5f -> %.5f (%+.2e), surrogate loss %.6f -> %.6f, grad norm %.3e\n",
           (double)adv_value, j, (double)old[j], (double)after[j], (double)(after[j] - old[j]), L0, L1, (double)gnorm);
    assert_true(gnorm > 0.0f);
    if (adv_value > 0)
        assert_true(after[j] > old[j]);
    else
        assert_true(after[j] < old[j]);
    assert_true(L1 < L0);
    adamw_destroy(&opt);
    model_acts_destroy(&a);
    model_destroy(&m);
}

static void test_ppo_step_tiny_model(void **state) {
    (void)state;
    printf("one PPO update of the tiny model on a fixed batch (AdamW lr 1e-3):\n");
    e2e_policy_step(+1.0f, 5);
    e2e_policy_step(-1.0f, ET + 4);

    /* the critic: one step on the clipped value loss lowers it */
    model_config_t cfg;
    model_config_preset(&cfg, "tiny");
    cfg.scalar_head = 1;
    model_t *m = model_new(&cfg);
    model_init_weights(m, 99);
    assert_int_equal(model_alloc_grads(m), RLHF_OK);
    model_acts_t *a = model_acts_new(&cfg, EB, ET);
    adamw_config_t oc;
    adamw_config_default(&oc);
    oc.lr = 1e-3f;
    adamw_t *opt = adamw_new(&oc, m->n_params);
    int tokens[EB * ET], targets[EB * ET];
    float mask[EB * ET], ret[EB * ET], vold[EB * ET], dv[EB * ET] = {0};
    e2e_batch(tokens, targets, mask, cfg.vocab_size);
    for (int i = 0; i < EB * ET; i++) ret[i] = mask[i] * (i % 2 ? 0.5f : -0.25f);
    model_forward(m, a, tokens, NULL, EB, ET, 1.0f);
    memcpy(vold, model_acts_values(a), sizeof vold);
    rl_value_stats_t vs;
    double L0 = rl_value_loss(dv, &vs, vold, vold, ret, mask, 0.2f, 0, EB, ET);
    model_zero_grads(m);
    model_backward(m, a, NULL, NULL, dv);
    adamw_update(opt, m->params_mem, m->grads_mem, NULL, NULL, NULL);
    model_forward(m, a, tokens, NULL, EB, ET, 1.0f);
    memset(dv, 0, sizeof dv);
    double L1 = rl_value_loss(dv, &vs, model_acts_values(a), vold, ret, mask, 0.2f, 0, EB, ET);
    printf("  critic value loss %.6f -> %.6f (explained variance %.3f)\n", L0, L1, vs.explained_var);
    assert_true(L1 < L0);
    adamw_destroy(&opt);
    model_acts_destroy(&a);
    model_destroy(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ref_kl_and_rewards),
        cmocka_unit_test(test_ref_scores),
        cmocka_unit_test(test_ref_gae_whiten),
        cmocka_unit_test(test_ref_losses),
        cmocka_unit_test(test_ref_kl_ctl_and_critic_free),
        cmocka_unit_test(test_checks_can_fail),
        cmocka_unit_test(test_finite_differences),
        cmocka_unit_test(test_add_and_accumulate),
        cmocka_unit_test(test_gae_hand),
        cmocka_unit_test(test_rewards_hand),
        cmocka_unit_test(test_critic_free_hand),
        cmocka_unit_test(test_policy_value_hand),
        cmocka_unit_test(test_moments_and_whiten),
        cmocka_unit_test(test_kl_ctl),
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_ppo_step_tiny_model),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
