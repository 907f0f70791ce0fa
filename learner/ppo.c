/*
 * ppo.c - one PPO update (see ppo.h). Dimension letters as in model.h:
 * B samples in the batch, M rows in a minibatch, T padded positions.
 */
#define _POSIX_C_SOURCE 200809L
#include "learner/ppo.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct ppo {
    model_t *policy, *critic; // borrowed
    ppo_config_t cfg;
    int max_m, max_t;
    model_acts_t *pacts, *cacts; // (max_m, max_t) each
    uint8_t *pmask, *cmask;      // weight-decay masks (n_params)
    float *dlogp, *dent, *dv;    // (max_m, max_t) gradient scratch
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

rlhf_err_t ppo_config_from(const rlhf_config_t *cfg, ppo_config_t *out, char *err, size_t errlen) {
    ppo_config_t c;
    memset(&c, 0, sizeof c);
    rl_config_default(&c.rl);
    const config_ppo_t *p = &cfg->ppo;
    c.rl.clip_eps = p->clip;
    c.rl.value_clip = p->value_clip;
    c.rl.gamma = p->gamma;
    c.rl.lambda = p->lambda;
    if (strcmp(p->kl_estimator, "k1") == 0)
        c.rl.kl_estimator = RL_KL_K1;
    else if (strcmp(p->kl_estimator, "k3") == 0)
        c.rl.kl_estimator = RL_KL_K3;
    else
        return rlhf_seterr(err, errlen, RLHF_EINVAL, "'ppo.kl_estimator' must be k1 or k3 (got '%s')", p->kl_estimator);
    c.rl.kl_adaptive = p->kl_adaptive ? 1 : 0;
    c.rl.kl_beta = p->kl_coef;
    c.rl.kl_target = p->kl_target;
    c.rl.kl_horizon = (float)p->kl_horizon;
    if (strcmp(p->reward_norm, "none") == 0)
        c.rl.reward_norm = RL_REWARD_NORM_NONE;
    else if (strcmp(p->reward_norm, "batch") == 0)
        c.rl.reward_norm = RL_REWARD_NORM_BATCH;
    else if (strcmp(p->reward_norm, "running") == 0)
        c.rl.reward_norm = RL_REWARD_NORM_RUNNING;
    else
        return rlhf_seterr(err, errlen, RLHF_EINVAL, "'ppo.reward_norm' must be none, batch or running (got '%s')",
                           p->reward_norm);
    c.rl.reward_clip = p->reward_clip;
    c.rl.adv_whiten = p->whiten_advantages ? 1 : 0;
    c.rl.entropy_coef = p->entropy_coef;
    c.rl.grpo_scale_std = p->grpo_scale_std ? 1 : 0;
    c.rl.grpo_eps = p->grpo_eps;
    rlhf_err_t e = rl_config_validate(&c.rl, err, errlen);
    if (e != RLHF_OK) return e;
    if (strcmp(cfg->run.algo, "ppo") == 0)
        c.algo = PPO_ALGO_PPO;
    else if (strcmp(cfg->run.algo, "grpo") == 0)
        c.algo = PPO_ALGO_GRPO;
    else if (strcmp(cfg->run.algo, "rloo") == 0)
        c.algo = PPO_ALGO_RLOO;
    else
        return rlhf_seterr(err, errlen, RLHF_EUNSUPPORTED,
                           "'run.algo' %s is not an online RL algorithm the learner runs (use ppo, grpo or rloo)",
                           cfg->run.algo);
    c.k = p->k;
    if (c.algo != PPO_ALGO_PPO && c.k < 2)
        return rlhf_seterr(err, errlen, RLHF_ERANGE, "run.algo %s needs ppo.k >= 2 (got %d)", cfg->run.algo, c.k);
    c.epochs = p->epochs;
    c.minibatch = p->minibatch;
    c.temperature = cfg->sampling.temperature;
    c.logprob_tol = cfg->learner.logprob_tol;
    if (c.epochs < 1 || c.minibatch < 1 || !(c.temperature > 0.0f))
        return rlhf_seterr(err, errlen, RLHF_ERANGE, "ppo.epochs, ppo.minibatch and sampling.temperature must be > 0");
    *out = c;
    return RLHF_OK;
}

rlhf_err_t ppo_critic_from_policy(model_t *critic, const model_t *policy) {
    const model_config_t *a = &policy->cfg, *b = &critic->cfg;
    if (!b->scalar_head || a->vocab_size != b->vocab_size || a->dim != b->dim || a->n_layers != b->n_layers ||
        a->n_heads != b->n_heads || a->n_kv_heads != b->n_kv_heads || a->hidden_dim != b->hidden_dim ||
        a->tied_embeddings != b->tied_embeddings)
        return RLHF_EMISMATCH;
    for (int k = 0; k < MP_COUNT; k++) {
        if (k == MP_SCORE) continue;
        if (policy->sizes[k] != critic->sizes[k]) return RLHF_EMISMATCH;
        memcpy(critic->params_mem + critic->offsets[k], policy->params_mem + policy->offsets[k],
               policy->sizes[k] * sizeof(float));
    }
    memset(critic->params_mem + critic->offsets[MP_SCORE], 0, critic->sizes[MP_SCORE] * sizeof(float));
    return RLHF_OK;
}

void ppo_destroy(ppo_t **pp) {
    if (!pp || !*pp) return;
    ppo_t *p = *pp;
    model_acts_destroy(&p->pacts);
    model_acts_destroy(&p->cacts);
    free(p->pmask);
    free(p->cmask);
    free(p->dlogp);
    free(p->dent);
    free(p->dv);
    free(p);
    *pp = NULL;
}

rlhf_err_t ppo_new(ppo_t **out, model_t *policy, model_t *critic, const ppo_config_t *cfg) {
    *out = NULL;
    if (!policy || !critic || !cfg || cfg->minibatch < 1 || !critic->cfg.scalar_head ||
        critic->cfg.max_seq_len < policy->cfg.max_seq_len || !policy->grads_mem || !critic->grads_mem)
        return RLHF_EINVAL;
    ppo_t *p = calloc(1, sizeof *p);
    if (!p) return RLHF_ENOMEM;
    p->policy = policy;
    p->critic = critic;
    p->cfg = *cfg;
    p->max_m = cfg->minibatch;
    p->max_t = policy->cfg.max_seq_len;
    size_t mt = (size_t)p->max_m * (size_t)p->max_t;
    p->pacts = model_acts_new(&policy->cfg, p->max_m, p->max_t);
    p->cacts = model_acts_new(&critic->cfg, p->max_m, p->max_t);
    p->pmask = malloc(policy->n_params);
    p->cmask = malloc(critic->n_params);
    p->dlogp = malloc(mt * sizeof(float));
    p->dent = malloc(mt * sizeof(float));
    p->dv = malloc(mt * sizeof(float));
    if (!p->pacts || !p->cacts || !p->pmask || !p->cmask || !p->dlogp || !p->dent || !p->dv) goto fail;
    model_decay_mask(policy, p->pmask);
    model_decay_mask(critic, p->cmask);
    *out = p;
    return RLHF_OK;
fail:
    ppo_destroy(&p);
    return RLHF_ENOMEM;
}

rlhf_err_t ppo_step(ppo_t *p, adamw_t *popt, adamw_t *copt, rl_state_t *st, const ppo_sample_t *samples, int n,
                    ppo_stats_t *stats) {
    const int M = p->max_m;
    const bool critic_free = p->cfg.algo != PPO_ALGO_PPO;
    if (n < 1 || n % M != 0 || (critic_free && (p->cfg.k < 2 || n % p->cfg.k != 0)) || (!critic_free && !copt))
        return RLHF_EINVAL;
    double t0 = now_s();
    int T = 1;
    for (int b = 0; b < n; b++) {
        const ppo_sample_t *s = &samples[b];
        if (s->n_prompt < 1 || s->n_completion < 1 || !s->prompt || !s->completion || !s->logprobs || !s->ref_logprobs)
            return RLHF_EINVAL;
        int len = s->n_prompt + s->n_completion;
        if (len > p->max_t) return RLHF_EINVAL;
        if (len > T) T = len;
    }
    const int B = n;
    size_t BT = (size_t)B * (size_t)T;
    int *tokens = calloc(BT, sizeof(int)), *targets = malloc(BT * sizeof(int));
    float *buf = calloc(BT * 9 + (size_t)B, sizeof(float));
    if (!tokens || !targets || !buf) {
        free(tokens), free(targets), free(buf);
        return RLHF_ENOMEM;
    }
    // (B,T) each: mask, behaviour and reference log-probs, KL, token rewards, V_old, advantages, returns, spare
    float *mask = buf, *lp_old = buf + BT, *lp_ref = buf + 2 * BT, *kl = buf + 3 * BT, *rew = buf + 4 * BT,
          *v_old = buf + 5 * BT, *adv = buf + 6 * BT, *ret = buf + 7 * BT, *scores = buf + 9 * BT; // scores (B)
    for (size_t i = 0; i < BT; i++) targets[i] = -1;
    double reward_sum = 0.0;
    for (int b = 0; b < B; b++) {
        const ppo_sample_t *s = &samples[b];
        size_t row = (size_t)b * (size_t)T;
        for (int i = 0; i < s->n_prompt; i++) tokens[row + i] = s->prompt[i];
        for (int j = 0; j < s->n_completion; j++) {
            tokens[row + s->n_prompt + j] = s->completion[j];
            size_t at = row + (size_t)(s->n_prompt - 1 + j);
            targets[at] = s->completion[j];
            mask[at] = 1.0f;
            lp_old[at] = s->logprobs[j];
            lp_ref[at] = s->ref_logprobs[j];
        }
        scores[b] = s->reward;
        reward_sum += s->reward;
    }
    ppo_stats_t S;
    memset(&S, 0, sizeof S);
    if (p->cfg.logprob_tol > 0) { // the behaviour log-probs of lag-0 samples must be the policy's own
        for (int b0 = 0; b0 < B; b0 += M) {
            int any = 0;
            for (int b = b0; b < b0 + M; b++) any |= samples[b].verify;
            if (!any) continue;
            model_forward(p->policy, p->pacts, tokens + (size_t)b0 * T, targets + (size_t)b0 * T, M, T,
                          p->cfg.temperature);
            const float *lp = model_acts_logprobs(p->pacts);
            for (int b = b0; b < b0 + M; b++) {
                if (!samples[b].verify) continue;
                size_t row = (size_t)b * T;
                double d = 0.0;
                for (int t = 0; t < T; t++)
                    if (mask[row + t] != 0.0f)
                        d = fmax(d, fabs((double)lp[row - (size_t)b0 * T + t] - lp_old[row + t]));
                S.n_verified++;
                if (!(d <= p->cfg.logprob_tol)) { // NaN fails too
                    S.n_mismatch++;
                    S.mismatch_diff = fmax(S.mismatch_diff, isnan(d) ? INFINITY : d);
                    for (int t = 0; t < T; t++) mask[row + t] = 0.0f;
                } else {
                    S.logp_diff = fmax(S.logp_diff, d);
                }
            }
        }
    }
    S.n_samples = B;
    S.n_tokens = rl_mask_count(mask, BT);
    S.reward_mean = reward_sum / B;
    S.beta = st->kl.beta;

    if (!critic_free) {
        rl_scores_normalize(scores, &st->reward, p->cfg.rl.reward_norm, p->cfg.rl.reward_clip, B);
        for (int b = 0; b < B; b += M) { // critic values at rollout time
            model_forward(p->critic, p->cacts, tokens + (size_t)b * T, NULL, M, T, 1.0f);
            memcpy(v_old + (size_t)b * T, model_acts_values(p->cacts), (size_t)M * T * sizeof(float));
        }
        S.kl = rl_kl(kl, NULL, lp_old, lp_ref, mask, p->cfg.rl.kl_estimator, B, T);
        rl_token_rewards(rew, kl, scores, mask, (float)st->kl.beta, B, T);
        rl_gae(adv, ret, rew, v_old, mask, p->cfg.rl.gamma, p->cfg.rl.lambda, B, T);
        if (p->cfg.rl.adv_whiten) rl_whiten(adv, mask, 1, BT);
    } else {
        // rew (B) holds per-sequence KL sums, ret (B) the per-sequence advantages: both (B,T) scratch here
        float *kl_seq = rew, *adv_seq = ret;
        S.kl = rl_kl(kl, kl_seq, lp_old, lp_ref, mask, p->cfg.rl.kl_estimator, B, T);
        int G = B / p->cfg.k, K = p->cfg.k;
        if (p->cfg.algo == PPO_ALGO_GRPO) {
            rl_grpo_advantages(adv_seq, scores, p->cfg.rl.grpo_scale_std, p->cfg.rl.grpo_eps, G, K);
        } else {
            for (int b = 0; b < B; b++) scores[b] -= (float)st->kl.beta * kl_seq[b];
            rl_rloo_advantages(adv_seq, scores, G, K);
        }
        rl_broadcast(adv, adv_seq, mask, B, T);
    }
    double t1 = now_s();
    S.t_prep = t1 - t0;

    double ent_w = 0, clip_w = 0, akl_w = 0, verr_w = 0, pl = 0, vl = 0, gn_sum = 0;
    int ent_n = 0, tok_n = 0, n_mb = 0;
    for (int ep = 0; ep < p->cfg.epochs; ep++) {
        for (int b = 0; b < B; b += M) {
            size_t off = (size_t)b * T, mt = (size_t)M * T;
            double ta = now_s();
            model_forward(p->policy, p->pacts, tokens + off, targets + off, M, T, p->cfg.temperature);
            memset(p->dlogp, 0, mt * sizeof(float));
            memset(p->dent, 0, mt * sizeof(float));
            rl_policy_stats_t ps;
            double ent = 0.0;
            pl += rl_policy_loss(p->dlogp, &ps, model_acts_logprobs(p->pacts), lp_old + off, adv + off, mask + off,
                                 p->cfg.rl.clip_eps, 0, M, T);
            if (p->cfg.algo == PPO_ALGO_GRPO && st->kl.beta > 0)
                pl += rl_kl_loss(p->dlogp, model_acts_logprobs(p->pacts), lp_ref + off, mask + off, (float)st->kl.beta,
                                 0, M, T);
            rl_entropy_loss(p->dent, &ent, model_acts_entropy(p->pacts), mask + off, p->cfg.rl.entropy_coef, 0, M, T);
            if (ep == 0) ent_w += ent * ps.n_tokens, ent_n += ps.n_tokens;
            clip_w += ps.clip_frac * ps.n_tokens;
            akl_w += ps.approx_kl * ps.n_tokens;
            tok_n += ps.n_tokens;
            model_zero_grads(p->policy);
            model_backward(p->policy, p->pacts, p->dlogp, p->cfg.rl.entropy_coef > 0 ? p->dent : NULL, NULL);
            float gn = 0, lr = 0;
            adamw_update(popt, p->policy->params_mem, p->policy->grads_mem, p->pmask, &gn, &lr);
            gn_sum += gn;
            S.lr = lr;
            double tb = now_s();
            S.t_policy += tb - ta;
            n_mb++;
            if (critic_free) continue;

            model_forward(p->critic, p->cacts, tokens + off, NULL, M, T, 1.0f);
            memset(p->dv, 0, mt * sizeof(float));
            rl_value_stats_t vs;
            vl += rl_value_loss(p->dv, &vs, model_acts_values(p->cacts), v_old + off, ret + off, mask + off,
                                p->cfg.rl.value_clip, 0, M, T);
            verr_w += vs.value_error * vs.n_tokens;
            if (ep == p->cfg.epochs - 1) S.explained_var += vs.explained_var * M / B;
            model_zero_grads(p->critic);
            model_backward(p->critic, p->cacts, NULL, NULL, p->dv);
            adamw_update(copt, p->critic->params_mem, p->critic->grads_mem, p->cmask, NULL, NULL);
            S.t_critic += now_s() - tb;
        }
    }
    rl_kl_ctl_update(&st->kl, &p->cfg.rl, S.kl, B);
    S.entropy = ent_n ? ent_w / ent_n : 0.0;
    S.clip_frac = tok_n ? clip_w / tok_n : 0.0;
    S.approx_kl = tok_n ? akl_w / tok_n : 0.0;
    S.value_error = tok_n ? verr_w / tok_n : 0.0;
    S.policy_loss = n_mb ? pl / n_mb : 0.0;
    S.value_loss = n_mb ? vl / n_mb : 0.0;
    S.grad_norm = n_mb ? gn_sum / n_mb : 0.0;
    S.t_total = now_s() - t0;
    free(tokens);
    free(targets);
    free(buf);
    if (stats) *stats = S;
    return RLHF_OK;
}
