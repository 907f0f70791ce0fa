/*
 * ppo.h - one PPO update of a policy and its critic on a batch of scored
 * rollouts, in-process and pure: no sockets, no clock but the phase timers,
 * no files. The learner calls it on its worker thread; tests call it
 * directly on hand-made batches.
 *
 * A batch is B samples, each prompt tokens + completion tokens with the
 * behaviour log-probs the actor sent, the reference log-probs the reward
 * worker sent and one scalar task reward. They are padded into (B,T) rows
 * tokens = prompt + completion; the action of completion token j is scored at
 * position n_prompt - 1 + j (targets = the next token, mask = 1 there).
 *
 * Order of one update (learner/rl.h "One PPO batch"): raw reward mean; score
 * normalisation; critic values V_old; per-token KL to the reference and token
 * rewards (beta from the KL controller, task reward on the last completion
 * token); GAE; advantage whitening; then epochs x minibatches of policy
 * forward at the sampling temperature -> clipped surrogate (+ entropy) ->
 * backward -> AdamW, and critic forward -> clipped value loss -> backward ->
 * AdamW; last the KL controller update.
 *
 * What it deliberately is not: no critic-free variants (grpo, rloo), no
 * shuffling between epochs (minibatches are consecutive samples, so a run
 * is a pure function of its inputs), no sequence packing.
 */
#ifndef RLHF_LEARNER_PPO_H
#define RLHF_LEARNER_PPO_H

#include <stdint.h>

#include "common/config.h"
#include "common/error.h"
#include "common/model.h"
#include "common/optim.h"
#include "learner/rl.h"

/* One scored rollout; every pointer borrowed for the ppo_step call. */
typedef struct {
    const int32_t *prompt;     // (n_prompt)
    int n_prompt;              // >= 1
    const int32_t *completion; // (n_completion)
    int n_completion;          // >= 1; n_prompt + n_completion <= max_seq_len
    const float *logprobs;     // (n_completion) behaviour log-probs (the "old" policy)
    const float *ref_logprobs; // (n_completion) frozen reference log-probs
    float reward;              // task score
} ppo_sample_t;

typedef struct {
    rl_config_t rl;    // the math's hyperparameters
    int epochs;        // passes over the batch, >= 1
    int minibatch;     // samples per gradient step, >= 1
    float temperature; // sampling temperature: log-probs are log softmax(logits / T)
} ppo_config_t;

/* ppo.* and sampling.temperature of a run config. RLHF_EINVAL (unknown
 * enum text) or rl_config_validate's error, naming the key in err. */
rlhf_err_t ppo_config_from(const rlhf_config_t *cfg, ppo_config_t *out, char *err, size_t errlen);

/* What one update did: means over masked tokens unless said otherwise. */
typedef struct {
    int n_samples, n_tokens;
    double reward_mean;   // raw task reward, mean over samples (before normalisation)
    double kl;            // mean per-sequence KL(behaviour || reference), summed over tokens
    double beta;          // KL coefficient used
    double entropy;       // policy entropy (first epoch)
    double clip_frac;     // policy ratio clip fraction (all minibatches)
    double approx_kl;     // k3 KL(old || new) (all minibatches)
    double value_error;   // mean (V - R)^2
    double explained_var; // of the critic (last epoch)
    double policy_loss, value_loss;
    double grad_norm; // policy gradient norm before clipping, mean over minibatches
    double lr;        // policy learning rate of the last update
    double logp_diff; // max |log p_learner - log p_behaviour| on the first minibatch before any update:
                      // float noise when actors and learner run the same weights (lag 0)
    double t_prep, t_policy, t_critic, t_total; // seconds per phase
} ppo_stats_t;

typedef struct ppo ppo_t;

/* Scratch for updates of policy and critic (both borrowed; both need
 * model_alloc_grads; the critic has a scalar head), minibatches up to
 * cfg->minibatch rows of up to policy max_seq_len positions. Caller owns
 * *out (ppo_destroy). RLHF_EINVAL (shapes disagree), RLHF_ENOMEM. */
rlhf_err_t ppo_new(ppo_t **out, model_t *policy, model_t *critic, const ppo_config_t *cfg);
void ppo_destroy(ppo_t **p);

/*
 * One PPO update on samples (n, a multiple of cfg.minibatch). popt/copt
 * are the policy's and critic's AdamW; st the RL state carried across
 * batches (reward moments, KL beta), updated. stats may be NULL.
 * RLHF_EINVAL (n not a multiple of the minibatch, a sample too long or
 * empty), RLHF_ENOMEM. On error the models are unchanged.
 */
rlhf_err_t ppo_step(ppo_t *p, adamw_t *popt, adamw_t *copt, rl_state_t *st, const ppo_sample_t *samples, int n,
                    ppo_stats_t *stats);

/* Copy the policy's weights into a critic of the same shape plus a scalar
 * head (head zeroed). RLHF_EMISMATCH when the shapes disagree. */
rlhf_err_t ppo_critic_from_policy(model_t *critic, const model_t *policy);

#endif
