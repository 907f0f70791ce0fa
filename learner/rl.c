/*
 * rl.c - the RL math of the learner (see rl.h).
 *
 * Per-token arithmetic is done in double from the float inputs and rounded
 * once on store; every sum is a double. At the sizes the learner sees
 * (B*T of a few thousand) this costs nothing next to one model forward.
 */
#include "learner/rl.h"

#include <math.h>

#define RL_WHITEN_EPS 1e-8 // inside the square root: x / sqrt(var + eps)

#define ON(mask, i) ((mask)[i] != 0.0f)

/* ---- configuration ---- */

void rl_config_default(rl_config_t *c) {
    *c = (rl_config_t){
        .clip_eps = 0.2f,
        .value_clip = 0.2f,
        .gamma = 1.0f,
        .lambda = 0.95f,
        .kl_estimator = RL_KL_K1,
        .kl_adaptive = 0,
        .kl_beta = 0.05f,
        .kl_target = 6.0f,
        .kl_horizon = 10000.0f,
        .reward_norm = RL_REWARD_NORM_RUNNING,
        .reward_clip = 10.0f,
        .adv_whiten = 1,
        .entropy_coef = 0.0f,
        .grpo_scale_std = 1,
        .grpo_eps = 1e-4f,
    };
}

rlhf_err_t rl_config_validate(const rl_config_t *c, char *err, size_t errlen) {
#define CHECK(cond, ...)                                                                                               \
    if (!(cond)) return rlhf_seterr(err, errlen, RLHF_ERANGE, __VA_ARGS__)
    /* written so that NaN fails every check */
    CHECK(c->clip_eps > 0 && c->clip_eps < 1, "clip_eps must be in (0, 1) (got %g); 0.2 is usual", (double)c->clip_eps);
    CHECK(c->value_clip <= 0 || isfinite(c->value_clip),
          "value_clip must be finite, or <= 0 to disable value clipping (got %g)", (double)c->value_clip);
    CHECK(!isnan(c->value_clip), "value_clip must be a number (got nan)");
    CHECK(c->gamma >= 0 && c->gamma <= 1, "gamma must be in [0, 1] (got %g)", (double)c->gamma);
    CHECK(c->lambda >= 0 && c->lambda <= 1, "lambda must be in [0, 1] (got %g)", (double)c->lambda);
    CHECK(c->kl_estimator == RL_KL_K1 || c->kl_estimator == RL_KL_K3,
          "kl_estimator must be k1 (%d) or k3 (%d) (got %d)", RL_KL_K1, RL_KL_K3, (int)c->kl_estimator);
    CHECK(c->kl_adaptive == 0 || c->kl_adaptive == 1, "kl_adaptive must be 0 or 1 (got %d)", c->kl_adaptive);
    CHECK(c->kl_beta >= 0 && isfinite(c->kl_beta), "kl_beta must be finite and >= 0 (got %g)", (double)c->kl_beta);
    CHECK(c->kl_target > 0 && isfinite(c->kl_target), "kl_target must be finite and > 0 (got %g nats per sequence)",
          (double)c->kl_target);
    CHECK(c->kl_horizon > 0 && isfinite(c->kl_horizon), "kl_horizon must be finite and > 0 (got %g samples)",
          (double)c->kl_horizon);
    CHECK(c->reward_norm == RL_REWARD_NORM_NONE || c->reward_norm == RL_REWARD_NORM_BATCH ||
              c->reward_norm == RL_REWARD_NORM_RUNNING,
          "reward_norm must be none (%d), batch (%d) or running (%d) (got %d)", RL_REWARD_NORM_NONE,
          RL_REWARD_NORM_BATCH, RL_REWARD_NORM_RUNNING, (int)c->reward_norm);
    CHECK(!isnan(c->reward_clip) && (c->reward_clip <= 0 || isfinite(c->reward_clip)),
          "reward_clip must be finite, or <= 0 to disable clipping (got %g)", (double)c->reward_clip);
    CHECK(c->adv_whiten == 0 || c->adv_whiten == 1, "adv_whiten must be 0 or 1 (got %d)", c->adv_whiten);
    CHECK(c->entropy_coef >= 0 && isfinite(c->entropy_coef), "entropy_coef must be finite and >= 0 (got %g)",
          (double)c->entropy_coef);
    CHECK(c->grpo_scale_std == 0 || c->grpo_scale_std == 1, "grpo_scale_std must be 0 or 1 (got %d)",
          c->grpo_scale_std);
    CHECK(c->grpo_eps > 0 && isfinite(c->grpo_eps), "grpo_eps must be finite and > 0 (got %g)", (double)c->grpo_eps);
#undef CHECK
    return RLHF_OK;
}

void rl_state_init(rl_state_t *s, const rl_config_t *c) {
    s->reward = (rl_moments_t){0.0, 0.0, 0};
    rl_kl_ctl_init(&s->kl, c);
}

/* ---- helpers ---- */

int rl_mask_count(const float *mask, size_t n) {
    int k = 0;
    for (size_t i = 0; i < n; i++) k += ON(mask, i);
    return k;
}

/* Mean and population variance of x over the selected entries (two passes,
 * double). Returns the count. */
static size_t masked_moments(double *mean_out, double *var_out, const float *x, const float *mask, size_t n) {
    double s = 0.0;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!mask || ON(mask, i)) s += x[i], k++;
    double mean = k ? s / (double)k : 0.0, ss = 0.0;
    for (size_t i = 0; i < n; i++)
        if (!mask || ON(mask, i)) {
            double d = x[i] - mean;
            ss += d * d;
        }
    *mean_out = mean;
    *var_out = k ? ss / (double)k : 0.0;
    return k;
}

void rl_whiten(float *x, const float *mask, int shift_mean, size_t n) {
    double mean, var;
    if (masked_moments(&mean, &var, x, mask, n) == 0) return;
    double rstd = 1.0 / sqrt(var + RL_WHITEN_EPS), back = shift_mean ? 0.0 : mean;
    for (size_t i = 0; i < n; i++)
        if (!mask || ON(mask, i)) x[i] = (float)((x[i] - mean) * rstd + back);
}

void rl_moments_update(rl_moments_t *m, const float *x, int n) {
    if (n <= 0) return;
    double bmean, bvar;
    masked_moments(&bmean, &bvar, x, NULL, (size_t)n);
    /* Chan, Golub & LeVeque: merge (count, mean, M2) of two sets */
    double na = (double)m->count, nb = (double)n, tot = na + nb, delta = bmean - m->mean;
    m->mean += delta * nb / tot;
    m->m2 += bvar * nb + delta * delta * na * nb / tot;
    m->count += n;
}

double rl_moments_var(const rl_moments_t *m) {
    return m->count > 0 ? m->m2 / (double)m->count : 0.0;
}

/* ---- 1. KL penalty and token rewards ---- */

double rl_kl(float *kl, float *kl_seq, const float *logp_old, const float *logp_ref, const float *mask, rl_kl_est_t est,
             int B, int T) {
    double total = 0.0;
    int n_seq = 0;
    for (int b = 0; b < B; b++) {
        double s = 0.0;
        int n = 0;
        for (int t = 0; t < T; t++) {
            size_t i = (size_t)b * T + t;
            if (!ON(mask, i)) {
                kl[i] = 0.0f;
                continue;
            }
            double d = (double)logp_old[i] - logp_ref[i];
            double k = est == RL_KL_K3 ? expm1(-d) + d : d; // exp(-d) - 1 + d, exact for small d
            kl[i] = (float)k;
            s += k;
            n++;
        }
        if (kl_seq) kl_seq[b] = (float)s;
        if (n) total += s, n_seq++;
    }
    return n_seq ? total / n_seq : 0.0;
}

void rl_token_rewards(float *rewards, const float *kl, const float *scores, const float *mask, float beta, int B,
                      int T) {
    for (int b = 0; b < B; b++) {
        int last = -1;
        for (int t = 0; t < T; t++) {
            size_t i = (size_t)b * T + t;
            if (ON(mask, i)) {
                rewards[i] = (float)(-(double)beta * kl[i]);
                last = t;
            } else {
                rewards[i] = 0.0f;
            }
        }
        if (last >= 0) {
            size_t i = (size_t)b * T + last;
            rewards[i] = (float)(-(double)beta * kl[i] + scores[b]);
        }
    }
}

/* ---- 2. Task score normalisation and clipping ---- */

void rl_scores_normalize(float *scores, rl_moments_t *running, rl_reward_norm_t mode, float clip, int B) {
    if (B <= 0) return;
    if (mode == RL_REWARD_NORM_BATCH) {
        rl_whiten(scores, NULL, 1, (size_t)B);
    } else if (mode == RL_REWARD_NORM_RUNNING) {
        rl_moments_update(running, scores, B);
        double rstd = 1.0 / sqrt(rl_moments_var(running) + RL_WHITEN_EPS);
        for (int b = 0; b < B; b++) scores[b] = (float)((scores[b] - running->mean) * rstd);
    }
    if (clip > 0)
        for (int b = 0; b < B; b++) scores[b] = fminf(fmaxf(scores[b], -clip), clip);
}

/* ---- 3. GAE ---- */

void rl_gae(float *adv, float *ret, const float *rewards, const float *values, const float *mask, float gamma,
            float lambda, int B, int T) {
    double g = gamma, gl = (double)gamma * lambda;
    for (int b = 0; b < B; b++) {
        double next_v = 0.0, next_a = 0.0; // past the last action: terminal
        for (int t = T - 1; t >= 0; t--) {
            size_t i = (size_t)b * T + t;
            if (!ON(mask, i)) {
                adv[i] = ret[i] = 0.0f;
                continue;
            }
            double v = values[i];
            double delta = rewards[i] + g * next_v - v;
            double a = delta + gl * next_a;
            adv[i] = (float)a;
            ret[i] = (float)(a + v);
            next_v = v, next_a = a;
        }
    }
}

/* ---- 5-7. Losses ---- */

/* The divisor of a token mean: the caller's n_tokens, or this call's count. */
static double mean_divisor(double n_tokens, int count) {
    return n_tokens > 0 ? n_tokens : (double)count;
}

double rl_policy_loss(float *dlogp, rl_policy_stats_t *stats, const float *logp_new, const float *logp_old,
                      const float *adv, const float *mask, float clip_eps, double n_tokens, int B, int T) {
    size_t n = (size_t)B * T;
    int count = rl_mask_count(mask, n);
    double div = mean_divisor(n_tokens, count);
    double lo = 1.0 - (double)clip_eps, hi = 1.0 + (double)clip_eps;
    double loss = 0.0, n_clip = 0.0, kl = 0.0, rsum = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!ON(mask, i)) continue;
        double log_ratio = (double)logp_new[i] - logp_old[i], ratio = exp(log_ratio), A = adv[i];
        double unclipped = ratio * A, clipped = fmin(fmax(ratio, lo), hi) * A;
        if (clipped < unclipped) { // the clipped branch is the min: constant in logp_new
            loss -= clipped;
            n_clip += 1.0;
        } else { // d(-ratio*A)/dlogp_new = -ratio*A
            loss -= unclipped;
            dlogp[i] += (float)(-unclipped / div);
        }
        kl += (ratio - 1.0) - log_ratio;
        rsum += ratio;
    }
    if (stats) {
        double k = count ? (double)count : 1.0;
        *stats = (rl_policy_stats_t){n_clip / k, kl / k, count ? rsum / k : 0.0, count};
    }
    return count ? loss / div : 0.0;
}

double rl_entropy_loss(float *dentropy, double *mean_entropy, const float *entropy, const float *mask, float coef,
                       double n_tokens, int B, int T) {
    size_t n = (size_t)B * T;
    int count = rl_mask_count(mask, n);
    double div = mean_divisor(n_tokens, count), s = 0.0;
    float g = count ? (float)(-(double)coef / div) : 0.0f;
    for (size_t i = 0; i < n; i++) {
        if (!ON(mask, i)) continue;
        s += entropy[i];
        dentropy[i] += g;
    }
    if (mean_entropy) *mean_entropy = count ? s / count : 0.0;
    return count ? -(double)coef * s / div : 0.0;
}

double rl_value_loss(float *dvalues, rl_value_stats_t *stats, const float *v_new, const float *v_old, const float *ret,
                     const float *mask, float value_clip, double n_tokens, int B, int T) {
    size_t n = (size_t)B * T;
    int count = rl_mask_count(mask, n);
    double div = mean_divisor(n_tokens, count), eps = value_clip;
    double loss = 0.0, sq_err = 0.0, n_clip = 0.0;
    /* explained variance from two-pass moments of R and of V_new - R */
    double mr = 0.0, me = 0.0, var_r = 0.0, var_e = 0.0;
    for (size_t i = 0; i < n; i++)
        if (ON(mask, i)) mr += ret[i], me += (double)v_new[i] - ret[i];
    if (count) mr /= count, me /= count;
    for (size_t i = 0; i < n; i++) {
        if (!ON(mask, i)) continue;
        double vn = v_new[i], R = ret[i], e = vn - R, g = e, l = e * e;
        if (eps > 0) {
            double d = vn - v_old[i];
            /* inside the band V_clip == V_new exactly (float inputs, double sums) */
            double vc = d > eps ? v_old[i] + eps : d < -eps ? v_old[i] - eps : vn, ec = vc - R;
            if (ec * ec > l) {
                l = ec * ec;
                g = d > eps || d < -eps ? 0.0 : ec; // dV_clip/dV_new is 0 outside the band
                n_clip += 1.0;
            }
        }
        loss += 0.5 * l;
        dvalues[i] += (float)(g / div);
        sq_err += e * e;
        var_r += (R - mr) * (R - mr), var_e += (e - me) * (e - me);
    }
    if (stats) {
        double k = count ? (double)count : 1.0;
        double ev = var_r > 0 ? 1.0 - var_e / var_r : 0.0;
        *stats = (rl_value_stats_t){ev, sq_err / k, n_clip / k, count};
    }
    return count ? loss / div : 0.0;
}

double rl_kl_loss(float *dlogp, const float *logp_new, const float *logp_ref, const float *mask, float coef,
                  double n_tokens, int B, int T) {
    size_t n = (size_t)B * T;
    int count = rl_mask_count(mask, n);
    double div = mean_divisor(n_tokens, count), c = coef, s = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!ON(mask, i)) continue;
        double x = (double)logp_ref[i] - logp_new[i], em1 = expm1(x);
        s += em1 - x;                        // exp(x) - x - 1
        dlogp[i] += (float)(-c * em1 / div); // d/dlogp_new = -(exp(x) - 1)
    }
    return count ? c * s / div : 0.0;
}

/* ---- 8. KL controllers ---- */

void rl_kl_ctl_init(rl_kl_ctl_t *ctl, const rl_config_t *c) {
    ctl->beta = c->kl_beta;
}

void rl_kl_ctl_update(rl_kl_ctl_t *ctl, const rl_config_t *c, double kl, int n_steps) {
    if (!c->kl_adaptive || isnan(kl)) return; // a NaN batch must not poison beta
    double e = fmin(fmax(kl / c->kl_target - 1.0, -0.2), 0.2);
    ctl->beta *= 1.0 + e * n_steps / c->kl_horizon;
}

/* ---- 9. Critic-free baselines and best-of-k ---- */

rlhf_err_t rl_grpo_advantages(float *adv, const float *scores, int scale_std, float eps, int G, int K) {
    if (K < 2) return RLHF_EINVAL;
    for (int g = 0; g < G; g++) {
        const float *s = scores + (size_t)g * K;
        double mean, var;
        masked_moments(&mean, &var, s, NULL, (size_t)K);
        double std = sqrt(var * K / (K - 1)); // unbiased, as torch.std
        double scale = scale_std ? 1.0 / (std + eps) : 1.0;
        for (int k = 0; k < K; k++) adv[(size_t)g * K + k] = (float)((s[k] - mean) * scale);
    }
    return RLHF_OK;
}

rlhf_err_t rl_rloo_advantages(float *adv, const float *scores, int G, int K) {
    if (K < 2) return RLHF_EINVAL;
    for (int g = 0; g < G; g++) {
        const float *s = scores + (size_t)g * K;
        double sum = 0.0;
        for (int k = 0; k < K; k++) sum += s[k];
        for (int k = 0; k < K; k++) adv[(size_t)g * K + k] = (float)(s[k] - (sum - s[k]) / (K - 1));
    }
    return RLHF_OK;
}

void rl_broadcast(float *out, const float *seq, const float *mask, int B, int T) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            size_t i = (size_t)b * T + t;
            out[i] = ON(mask, i) ? seq[b] : 0.0f;
        }
}

void rl_best_of_k(int *best, const float *scores, int G, int K) {
    for (int g = 0; g < G; g++) {
        int bi = g * K;
        for (int k = 1; k < K; k++) {
            int b = g * K + k;
            /* strictly greater keeps the lowest index on ties; NaN never wins,
             * and a number beats a NaN incumbent */
            if (scores[b] > scores[bi] || (isnan(scores[bi]) && !isnan(scores[b]))) bi = b;
        }
        best[g] = bi;
    }
}
