/*
 * generate.h - batched generation with a KV cache and continuous batching.
 *
 * Up to max_batch requests decode together: each decode step is one
 * model_step() over all active slots, so the weight matrices are read once
 * per step and the products are sgemm, not one gemv per sequence. When a
 * sequence finishes, its slot is refilled from the pending requests.
 * Every request has its own RNG seed, so what it samples does not depend on
 * which other requests share the batch (up to float rounding, see
 * test_generate).
 *
 * Behaviour log-probs: for each sampled token, log softmax(logits/T) over
 * the full vocabulary (T = temperature, or 1 when greedy), before top-k/top-p
 * truncation. The learner recomputes the same quantity with
 * model_forward(..., temperature).
 */
#ifndef RLHF_GENERATE_H
#define RLHF_GENERATE_H

#include <stdint.h>

#include "common/error.h"
#include "common/model.h"
#include "common/sampler.h"

#define GEN_MAX_STOP 8

typedef struct {
    sampler_params_t sampler;
    int max_new_tokens;
    int stop_tokens[GEN_MAX_STOP];
    int n_stop;
} gen_params_t;

typedef enum { GEN_FINISH_NONE = 0, GEN_FINISH_STOP = 1, GEN_FINISH_LENGTH = 2 } gen_finish_t;

typedef struct {
    /* in (borrowed) */
    const int *prompt;
    int prompt_len;
    uint64_t seed;
    /* out: caller-allocated, max_new_tokens each */
    int *tokens;
    float *logprobs;
    int n_tokens;
    gen_finish_t finish;
} gen_request_t;

typedef struct generator generator_t;

/* Defaults: temperature 1, no top-k/top-p, 64 new tokens, stop on EOS. */
void gen_params_default(gen_params_t *p);
/* A generator for model m (borrowed; its weights may change between runs).
 * NULL on bad sizes or OOM. */
generator_t *generator_new(model_t *m, int max_batch, int max_len);
void generator_destroy(generator_t **g);
/* Generate for all n requests. RLHF_ERANGE if a prompt is empty or
 * prompt_len + max_new_tokens exceeds max_len (nothing is generated then). */
rlhf_err_t generator_run(generator_t *g, gen_request_t *reqs, int n, const gen_params_t *p);
/* Tokens processed by the last run: prompt tokens and generated tokens. */
void generator_last_counts(const generator_t *g, int64_t *prompt_tokens, int64_t *gen_tokens);

#endif
