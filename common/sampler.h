/*
 * sampler.h - draw the next token from a row of logits: greedy, temperature,
 * top-k and top-p (nucleus), llama2.c style.
 *
 * The caller passes the coin (uniform in [0, 1)): there is no hidden RNG, so
 * a seeded rng_t (rng.h) makes generation reproducible. All memory is the
 * caller's: the sampler never allocates, and is thread-safe on distinct
 * scratch buffers.
 *
 * Dimension letters: V vocabulary.
 *
 * What it deliberately is not: no repetition/frequency penalties, no min-p,
 * no batching (one row per call; a batch is a loop over rows).
 */
#ifndef RLHF_SAMPLER_H
#define RLHF_SAMPLER_H

typedef struct {
    float temperature; // <= 0 (or NaN): greedy argmax
    int top_k;         // <= 0 or >= V: off
    float top_p;       // >= 1: off; else the nucleus keeps at least one token
} sampler_params_t;

/* temperature 1, top_k off, top_p off: plain ancestral sampling. */
void sampler_params_default(sampler_params_t *p);

/*
 * Sample one token id in [0, V) from logits (V).
 *
 * Order of operations: logits / temperature -> softmax over all V -> keep
 * the top_k most likely -> keep the smallest most-likely prefix of those
 * whose renormalised mass is >= top_p -> pick the token where the coin
 * falls in the cumulative distribution of what is left (laid out by id
 * without truncation, best first after top-k, in rank blocks after top-p
 * alone: the same coin always gives the same token). Ties in likelihood
 * are ordered by lower id (so greedy and top_k = 1 return the lowest-id
 * argmax, and a tie at the top-k or top-p boundary keeps the lower id).
 * A coin outside [0, 1) is clamped.
 *
 * *logprob (logprob may be NULL) receives the log-probability of the
 * returned token under softmax(logits / temperature) over the FULL
 * vocabulary, before any truncation; for greedy, under softmax(logits)
 * (temperature 1). This is the behaviour log-prob PPO needs.
 *
 * Logits may be -INFINITY (masked tokens are never sampled while a finite
 * logit exists); NaN counts as -INFINITY. When no logit is finite, or one
 * is +INFINITY, there is no softmax: the argmax is returned and *logprob
 * is NaN. p NULL means sampler_params_default. Returns -1 only for NULL
 * logits or V <= 0.
 *
 * scratch (2*V floats) and idx_scratch (V ints) are caller-owned work space;
 * their contents on return are unspecified. Cost: O(V) for greedy and plain
 * sampling, O(V log k) for top-k (then O(k) for a top-p on top), expected
 * O(V) for top-p alone (a selection, no sort).
 */
int sampler_sample(const float *logits, int V, const sampler_params_t *p, float coin, float *scratch, int *idx_scratch,
                   float *logprob);

/* Index of the largest of x (n), the lowest index among equals; NaN never
 * wins unless every value is NaN or -INFINITY (then 0). n > 0. */
int sampler_argmax(const float *x, int n);

/* log(sum(exp(x))) over x (n), max-shifted, accumulated in double. */
float sampler_logsumexp(const float *x, int n);

/* x (n) <- softmax(x), max-shifted, accumulated in double. */
void sampler_softmax(float *x, int n);

#endif
