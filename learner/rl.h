/*
 * rl.h - the RL math of the learner: KL penalty and token rewards, reward
 * normalisation, GAE, advantage whitening, the PPO clipped surrogate, the
 * entropy bonus, the clipped value loss, KL controllers, and the critic-free
 * baselines (GRPO, RLOO) and best-of-k selection.
 *
 * What it deliberately is not: no I/O, no networking, no model calls, no
 * allocation, no threads. Every function is a loop over caller-owned arrays,
 * borrowed for the call and never retained; the learner feeds it what
 * model_forward returned and hands the d-buffers it fills to model_backward
 * (common/model.h). Output arrays must not alias inputs unless a function
 * says "in place".
 *
 * Dimension letters (B, T as in common/model.h):
 *   B sequences in the batch, T positions (padded), G prompt groups,
 *   K samples per prompt; critic-free functions take B = G*K sequences laid
 *   out group by group (sequence b is sample b % K of prompt b / K).
 *
 * Per-token arrays are (B,T) floats indexed like model_forward's outputs:
 * position t holds the log-prob of the action taken there (targets[t]), the
 * entropy of that distribution and the critic's value of the state it was
 * taken in (the prefix tokens[0..t]). mask (B,T) is 1 on action (completion)
 * tokens and 0 on prompt and padding; any non-zero value counts as 1. The
 * completion tokens of a row need not be contiguous: the MDP steps from one
 * action token to the next, skipping unmasked positions (tool output, say).
 * Outputs at unmasked positions are written as 0 unless a function says
 * otherwise. Sums and means are accumulated in double.
 *
 * One PPO batch, in order (the functions below, top to bottom; log the raw
 * scores before normalising them):
 *   rl_scores_normalize(scores, &st.reward, cfg.reward_norm, cfg.reward_clip, B);
 *   kl_seq_mean = rl_kl(kl, NULL, logp_old, logp_ref, mask, cfg.kl_estimator, B, T);
 *   rl_token_rewards(rewards, kl, scores, mask, st.kl.beta, B, T);
 *   rl_gae(adv, ret, rewards, values_old, mask, cfg.gamma, cfg.lambda, B, T);
 *   if (cfg.adv_whiten) rl_whiten(adv, mask, 1, B * T);
 *   per minibatch, per epoch: forward policy and critic, zero dlogp/dent/dv, then
 *     rl_policy_loss(dlogp, &ps, logp_new, logp_old, adv, mask, cfg.clip_eps, 0, B, T);
 *     rl_entropy_loss(dent, &ent, entropy, mask, cfg.entropy_coef, 0, B, T);
 *     rl_value_loss(dv, &vs, v_new, v_old, ret, mask, cfg.value_clip, 0, B, T);
 *     model_backward(policy, ..., dlogp, dent, NULL); model_backward(critic, ..., NULL, NULL, dv);
 *   rl_kl_ctl_update(&st.kl, &cfg, kl_seq_mean, B);
 * (logp_old are the behaviour log-probs the actor sent: with max_lag > 0 the
 * ratio corrects for the policy that actually generated the rollout.)
 *
 * Loss reduction. The losses are token-level means over the masked tokens of
 * the whole minibatch: every action token weighs the same, so a long
 * completion counts more than a short one. The alternative, a mean per
 * sequence then over sequences (original GRPO, early OpenRLHF), gives each
 * sample equal weight but makes a token's gradient scale with 1/length, which
 * favours short correct answers and long wrong ones (the length bias that
 * DAPO and Dr. GRPO point out). With the token mean the gradient of a token
 * does not depend on which sequence it sits in.
 *
 * Gradient accumulation. The loss functions take n_tokens, the count the mean
 * divides by: pass 0 to use the masked tokens of this call, or the minibatch
 * total (rl_mask_count over all of it) when the minibatch is split across
 * several calls, so that the calls' losses and gradients sum exactly to the
 * one-call result. The stats they fill are means over this call's tokens and
 * carry that count (stats.n_tokens) for weighting.
 *
 * Gradients: the loss functions ADD dL/d(input) into their d-buffer (llm.c
 * convention), so several terms can share one buffer; zero it first.
 */
#ifndef RLHF_LEARNER_RL_H
#define RLHF_LEARNER_RL_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

/* ---- configuration ---- */

typedef enum {
    RL_KL_K1, // log p_old - log p_ref (unbiased, can be negative per token; InstructGPT, OpenRLHF default)
    RL_KL_K3, // exp(ref - old) - (ref - old) - 1 (unbiased, always >= 0; Schulman's k3)
} rl_kl_est_t;

typedef enum {
    RL_REWARD_NORM_NONE,    // scores as the reward workers sent them
    RL_REWARD_NORM_BATCH,   // whiten with this batch's mean and std
    RL_REWARD_NORM_RUNNING, // whiten with a running mean and std over all batches so far (rl_moments_t)
} rl_reward_norm_t;

/*
 * Hyperparameters. Defaults (rl_config_default) follow InstructGPT
 * (Ouyang et al. 2022) and Llama 2 (Touvron et al. 2023), with OpenRLHF/TRL
 * where those papers are silent, scaled to small models on short completions:
 *   clip_eps 0.2       PPO ratio clip, every recipe.
 *   value_clip 0.2     OpenRLHF / TRL (cliprange_value); in reward units.
 *   gamma 1.0          no discount: one terminal reward per episode (InstructGPT, TRL).
 *   lambda 0.95        GAE lambda (TRL, OpenRLHF).
 *   kl_estimator k1    the per-token penalty log p_old - log p_ref (InstructGPT, OpenRLHF).
 *   kl_adaptive 0      fixed beta, as InstructGPT and Llama 2 trained.
 *   kl_beta 0.05       InstructGPT used 0.02, Llama 2 0.01 (7B/13B) and 0.005 (34B/70B) over
 *                      completions of hundreds of tokens. Ours are tens of tokens from a
 *                      small model, so the summed KL of a sequence is smaller for the same
 *                      per-token drift; a larger beta keeps the sequence-level trade-off
 *                      between task reward (O(1)) and drift comparable.
 *   kl_target 6.0      nats per sequence, summed over tokens (Ziegler et al. 2019, TRL).
 *   kl_horizon 10000   samples (TRL); with n_steps = batch size per update.
 *   reward_norm running, reward_clip 10   OpenRLHF-style running normalisation, then a
 *                      clip at 10 (in std units when normalising; OpenRLHF's reward clip).
 *   adv_whiten 1       TRL and OpenRLHF whiten advantages.
 *   entropy_coef 0     neither InstructGPT nor Llama 2 use an entropy bonus.
 *   grpo_scale_std 1, grpo_eps 1e-4   DeepSeekMath GRPO as in TRL's GRPOTrainer.
 * The schedule (epochs, minibatches, optimizer) belongs to the learner loop,
 * not here.
 */
typedef struct {
    float clip_eps;           // PPO ratio clip, in (0, 1)
    float value_clip;         // value clip around V_old; <= 0 disables (plain squared error)
    float gamma;              // discount, in [0, 1]
    float lambda;             // GAE lambda, in [0, 1]
    rl_kl_est_t kl_estimator; // estimator of the per-token penalty
    int kl_adaptive;          // 0 fixed beta, 1 Ziegler et al. proportional controller
    float kl_beta;            // beta (initial beta when adaptive), >= 0
    float kl_target;          // adaptive: target KL per sequence (nats), > 0
    float kl_horizon;         // adaptive: horizon in samples, > 0
    rl_reward_norm_t reward_norm;
    float reward_clip;  // clip task scores to [-c, c] after normalising; <= 0 disables
    int adv_whiten;     // 1: whiten advantages over the batch's masked tokens
    float entropy_coef; // entropy bonus weight, >= 0
    int grpo_scale_std; // 1: GRPO divides by the group std; 0: mean-centred only (Dr. GRPO)
    float grpo_eps;     // GRPO: (r - mean) / (std + eps), > 0
} rl_config_t;

void rl_config_default(rl_config_t *c);
/* Check every field. On error returns RLHF_ERANGE and writes one sentence
 * naming the field, its value and the allowed range into err (may be NULL). */
rlhf_err_t rl_config_validate(const rl_config_t *c, char *err, size_t errlen);

/* ---- state that lives across batches (checkpoint it for exact resume) ---- */

/* Running moments (Chan et al.'s parallel update): mean and variance of all
 * values seen, exactly as if computed over their concatenation. */
typedef struct {
    double mean;   // mean of the values seen
    double m2;     // sum of squared deviations from mean
    int64_t count; // values seen
} rl_moments_t;

/* The KL coefficient. Only beta changes; the controller's constants stay in
 * rl_config_t (config and run state have different lifetimes). */
typedef struct {
    double beta;
} rl_kl_ctl_t;

/* Everything rl.c keeps between batches: plain data, save it field by field. */
typedef struct {
    rl_moments_t reward; // running moments of raw task scores (RL_REWARD_NORM_RUNNING)
    rl_kl_ctl_t kl;
} rl_state_t;

/* reward moments empty, kl.beta = c->kl_beta */
void rl_state_init(rl_state_t *s, const rl_config_t *c);

/* ---- helpers ---- */

/* Number of non-zero entries of mask (n). */
int rl_mask_count(const float *mask, size_t n);

/*
 * Whiten x in place over the entries where mask != 0 (mask may be NULL: all n):
 *   x <- (x - mean) / sqrt(var + 1e-8)     (shift_mean = 1)
 *   x <- (x - mean) / sqrt(var + 1e-8) + mean   (shift_mean = 0: rescale only)
 * with mean and the population variance (divide by the count, as OpenRLHF)
 * computed in double. Entries where mask == 0 are left untouched. Nothing
 * happens when no entry is selected.
 * x (n), mask (n) or NULL.
 */
void rl_whiten(float *x, const float *mask, int shift_mean, size_t n);

/* Add the values x (n) to the running moments m. */
void rl_moments_update(rl_moments_t *m, const float *x, int n);
/* Population variance of everything seen (0 when empty). */
double rl_moments_var(const rl_moments_t *m);

/* ---- 1. KL penalty and token rewards ---- */

/*
 * Per-token KL estimate of the behaviour policy against the frozen reference:
 *   k1: kl = logp_old - logp_ref
 *   k3: kl = exp(logp_ref - logp_old) - (logp_ref - logp_old) - 1
 * kl (B,T) out (0 where unmasked); kl_seq (B) out, may be NULL: the sum over
 * each row's masked tokens. Returns the mean of the per-sequence sums over
 * the sequences with at least one masked token (0 if none): the quantity
 * the adaptive controller targets and the "KL" a run logs.
 * logp_old (B,T), logp_ref (B,T), mask (B,T).
 */
double rl_kl(float *kl, float *kl_seq, const float *logp_old, const float *logp_ref, const float *mask, rl_kl_est_t est,
             int B, int T);

/*
 * Token rewards: rewards = -beta * kl on masked tokens, plus scores[b] on the
 * LAST masked token of row b; 0 elsewhere. A row without masked tokens gets
 * no reward at all (its score is dropped).
 * rewards (B,T) out; kl (B,T), scores (B), mask (B,T).
 */
void rl_token_rewards(float *rewards, const float *kl, const float *scores, const float *mask, float beta, int B,
                      int T);

/* ---- 2. Task score normalisation and clipping ---- */

/*
 * Normalise the batch's scalar task scores in place, then clip to
 * [-clip, clip] (clip <= 0: no clip):
 *   NONE     scores unchanged before the clip
 *   BATCH    (s - mean) / sqrt(var + 1e-8) over this batch (rl_whiten)
 *   RUNNING  first add this batch to *running, then (s - mean) / sqrt(var + 1e-8)
 *            with the running mean and population variance (OpenRLHF/TRL style:
 *            the statistics include the current batch)
 * scores (B) in/out. running: required for RUNNING, ignored (may be NULL)
 * otherwise; updated in place.
 */
void rl_scores_normalize(float *scores, rl_moments_t *running, rl_reward_norm_t mode, float clip, int B);

/* ---- 3. GAE ---- */

/*
 * Generalised advantage estimation over each row's masked tokens, right to
 * left, with the value after the last masked token taken as 0 (the episode
 * ends there):
 *   delta_t = r_t + gamma * V_next - V_t,   A_t = delta_t + gamma * lambda * A_next
 *   R_t = A_t + V_t       (the critic's regression target)
 * where "next" is the next masked position of the same row. Rewards and
 * values at unmasked positions are ignored. With gamma = lambda = 1,
 * A_t = (sum of rewards from t on) - V_t.
 * adv (B,T), ret (B,T) out (0 where unmasked); rewards (B,T),
 * values (B,T) (critic values at rollout time), mask (B,T).
 */
void rl_gae(float *adv, float *ret, const float *rewards, const float *values, const float *mask, float gamma,
            float lambda, int B, int T);

/* ---- 5-7. Losses (each ADDS its gradient; see the top of the file) ---- */

typedef struct {
    double clip_frac;  // fraction of tokens where the clipped branch is active (gradient 0)
    double approx_kl;  // mean((ratio - 1) - log ratio): k3 estimate of KL(old || new)
    double ratio_mean; // mean of ratio = exp(logp_new - logp_old)
    int n_tokens;      // masked tokens these means are over
} rl_policy_stats_t;

/*
 * PPO clipped surrogate:
 *   ratio = exp(logp_new - logp_old)
 *   L = -(1/n) sum_masked min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A)
 * with n = n_tokens, or this call's masked count when n_tokens <= 0.
 * ADDS dL/dlogp_new into dlogp: -ratio * A / n where the unclipped branch
 * is the minimum (always when ratio lies inside the clip range), exactly 0
 * where the clipped branch is strictly smaller (A > 0 and ratio > 1 + eps,
 * or A < 0 and ratio < 1 - eps). Returns L. stats may be NULL.
 * dlogp (B,T) in/out; logp_new (B,T) from this forward, logp_old (B,T)
 * behaviour log-probs, adv (B,T), mask (B,T).
 */
double rl_policy_loss(float *dlogp, rl_policy_stats_t *stats, const float *logp_new, const float *logp_old,
                      const float *adv, const float *mask, float clip_eps, double n_tokens, int B, int T);

/*
 * Entropy bonus: L = -coef * (1/n) sum_masked entropy. ADDS -coef/n into
 * dentropy on masked tokens. *mean_entropy (may be NULL) gets the mean
 * entropy over this call's masked tokens (also when coef is 0). Returns L.
 * dentropy (B,T) in/out; entropy (B,T), mask (B,T).
 */
double rl_entropy_loss(float *dentropy, double *mean_entropy, const float *entropy, const float *mask, float coef,
                       double n_tokens, int B, int T);

typedef struct {
    double explained_var; // 1 - Var(R - V_new) / Var(R) over masked tokens (0 when Var(R) == 0)
    double value_error;   // mean (V_new - R)^2, unclipped
    double clip_frac;     // fraction of tokens where the clipped term is the larger one
    int n_tokens;
} rl_value_stats_t;

/*
 * Clipped value loss (PPO2 / OpenRLHF / TRL):
 *   V_clip = V_old + clip(V_new - V_old, -eps_v, eps_v)
 *   L = 0.5 * (1/n) sum_masked max((V_new - R)^2, (V_clip - R)^2)
 * With value_clip <= 0: L = 0.5 * (1/n) sum_masked (V_new - R)^2.
 * ADDS dL/dV_new into dvalues: (V_new - R)/n where the unclipped term is the
 * max, 0 where the clipped term is larger and V_new is outside the band.
 * Returns L; stats may be NULL.
 * dvalues (B,T) in/out; v_new (B,T) from this forward, v_old (B,T) at
 * rollout time, ret (B,T) the GAE returns, mask (B,T).
 */
double rl_value_loss(float *dvalues, rl_value_stats_t *stats, const float *v_new, const float *v_old, const float *ret,
                     const float *mask, float value_clip, double n_tokens, int B, int T);

/*
 * KL to the reference as a loss term (GRPO, DeepSeekMath eq. 4), the k3
 * estimator of KL(new || ref) per token:
 *   L = coef * (1/n) sum_masked exp(logp_ref - logp_new) - (logp_ref - logp_new) - 1
 * ADDS coef * (1 - exp(logp_ref - logp_new)) / n into dlogp. Returns L.
 * PPO puts the KL in the reward instead (rl_token_rewards); use one or the other.
 * dlogp (B,T) in/out; logp_new (B,T), logp_ref (B,T), mask (B,T).
 */
double rl_kl_loss(float *dlogp, const float *logp_new, const float *logp_ref, const float *mask, float coef,
                  double n_tokens, int B, int T);

/* ---- 8. KL controllers ---- */

/* ctl->beta = c->kl_beta */
void rl_kl_ctl_init(rl_kl_ctl_t *ctl, const rl_config_t *c);
/*
 * After a batch whose mean per-sequence KL was kl (rl_kl's return) over
 * n_steps samples. Fixed (c->kl_adaptive == 0): no change. Adaptive
 * (Ziegler et al. 2019, TRL's AdaptiveKLController):
 *   e = clip(kl / kl_target - 1, -0.2, 0.2);  beta <- beta * (1 + e * n_steps / kl_horizon)
 */
void rl_kl_ctl_update(rl_kl_ctl_t *ctl, const rl_config_t *c, double kl, int n_steps);

/* ---- 9. Critic-free baselines and best-of-k ---- */

/*
 * GRPO group-relative advantages (Shao et al. 2024):
 *   adv[b] = (scores[b] - mean_g) / (std_g + eps)   (scale_std = 1)
 *   adv[b] =  scores[b] - mean_g                    (scale_std = 0)
 * with mean_g and the unbiased (K - 1) std of b's group, as torch.std in
 * DeepSeekMath and TRL. Returns RLHF_EINVAL (writing nothing) if K < 2.
 * adv (B) out, scores (B), B = G*K.
 */
rlhf_err_t rl_grpo_advantages(float *adv, const float *scores, int scale_std, float eps, int G, int K);

/*
 * RLOO (Ahmadian et al. 2024): adv[b] = scores[b] - mean of the other K - 1
 * scores of its group (= K/(K-1) * (scores[b] - mean_g)). Returns
 * RLHF_EINVAL (writing nothing) if K < 2.
 * adv (B) out, scores (B), B = G*K.
 */
rlhf_err_t rl_rloo_advantages(float *adv, const float *scores, int G, int K);

/* Per-sequence values onto tokens: out[b,t] = seq[b] where mask != 0, else 0.
 * out (B,T) out; seq (B), mask (B,T). */
void rl_broadcast(float *out, const float *seq, const float *mask, int B, int T);

/*
 * Rejection sampling: best[g] = the sequence index b (in 0..B) of the
 * highest score in group g; ties go to the lowest index; NaN scores lose
 * to any number (an all-NaN group picks its first sample).
 * best (G) out, scores (B), B = G*K, K >= 1.
 */
void rl_best_of_k(int *best, const float *scores, int G, int K);

#endif
