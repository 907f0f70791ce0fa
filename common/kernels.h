/*
 * kernels.h - the forward/backward kernels of the transformer, fp32.
 *
 * Conventions (llm.c): arguments are outputs, then inputs, then dimensions.
 * Backward kernels take d-prefixed buffers and ADD into them. Every
 * BLAS-backed kernel has a plain _naive twin used as the reference in tests.
 *
 * Letters: N rows (= B*T flattened), C in-channels, OC out-channels,
 * B batch, T time, NH query heads, KVH key/value heads, HS head size, V vocab.
 *
 * What it is not: no fused or quantised kernels; attention stores the full
 * (T,T) probability matrix for backward (fine for T <= a few hundred).
 */
#ifndef RLHF_KERNELS_H
#define RLHF_KERNELS_H

#include <stddef.h>

/* inp (N,C), weight (OC,C) -> out (N,OC) = inp @ weight^T; accumulate: out += */
void matmul_forward(float *out, const float *inp, const float *weight, int N, int C, int OC, int accumulate);
void matmul_forward_naive(float *out, const float *inp, const float *weight, int N, int C, int OC, int accumulate);
/* dout (N,OC) -> dinp (N,C) += dout @ weight, dweight (OC,C) += dout^T @ inp.
 * dinp or dweight may be NULL to skip. */
void matmul_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight, int N,
                     int C, int OC);
void matmul_backward_naive(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight, int N,
                           int C, int OC);

/* tokens (N), emb (V,C) -> out (N,C) */
void embedding_forward(float *out, const int *tokens, const float *emb, int N, int C);
/* demb (V,C) += scatter of dout (N,C) */
void embedding_backward(float *demb, const float *dout, const int *tokens, int N, int C);

/* inp (N,C), weight (C) -> out (N,C) = inp * rstd * weight, rstd (N) */
void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int N, int C, float eps);
void rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                      const float *rstd, int N, int C);

/* Rotary tables for positions [0, T): cos/sin (T, HS/2), computed in double. */
void rope_table(float *cosv, float *sinv, int T, int HS, float theta);
/* x (N, nh, HS) rotated in place, row i at position pos[i] (HF rotate_half). */
void rope_forward(float *x, const float *cosv, const float *sinv, const int *pos, int N, int nh, int HS);
/* dx (N, nh, HS): in place, the transpose rotation (gradient of rope_forward). */
void rope_backward(float *dx, const float *cosv, const float *sinv, const int *pos, int N, int nh, int HS);

/* h1, h3 (N) -> out (N) = silu(h1) * h3 (N = rows * H) */
void swiglu_forward(float *out, const float *h1, const float *h3, size_t N);
void swiglu_backward(float *dh1, float *dh3, const float *dout, const float *h1, const float *h3, size_t N);

/*
 * Causal attention over full sequences.
 * q (B,T,NH,HS), k v (B,T,KVH,HS) -> out (B,T,NH,HS), att (B,NH,T,T) probabilities.
 * Query head h reads key/value head h / (NH/KVH).
 */
void attention_forward(float *out, float *att, const float *q, const float *k, const float *v, int B, int T, int NH,
                       int KVH, int HS);
void attention_forward_naive(float *out, float *att, const float *q, const float *k, const float *v, int B, int T,
                             int NH, int KVH, int HS);
/* dq (B,T,NH,HS), dk dv (B,T,KVH,HS) += ...; scratch: B*NH*T*T floats. */
void attention_backward(float *dq, float *dk, float *dv, float *scratch, const float *dout, const float *att,
                        const float *q, const float *k, const float *v, int B, int T, int NH, int KVH, int HS);
void attention_backward_naive(float *dq, float *dk, float *dv, const float *dout, const float *att, const float *q,
                              const float *k, const float *v, int B, int T, int NH, int KVH, int HS);

/*
 * Per-row log-prob of a target and entropy under softmax(logits * inv_temp).
 * logits (N,V), targets (N) (-1 = skip) -> logprobs (N), entropy (N), lse (N)
 * (log-sum-exp of the scaled logits). Skipped rows get 0, 0 and their lse.
 */
void logprob_forward(float *logprobs, float *entropy, float *lse, const float *logits, const int *targets, int N, int V,
                     float inv_temp);
/* dlogits (N,V) += d(dlogprobs.logprobs + dentropy.entropy)/dlogits; either
 * d-input may be NULL. */
void logprob_backward(float *dlogits, const float *dlogprobs, const float *dentropy, const float *logits,
                      const float *lse, const float *entropy, const int *targets, int N, int V, float inv_temp);

/*
 * Call first in main(). OpenMP workers that spin-wait between regions are
 * fast on an idle machine and collapse when another process wants the same
 * cores (an actor beside a learner on one laptop). libgomp reads its wait
 * policy only at start-up, so unless the user set OMP_WAIT_POLICY or
 * GOMP_SPINCOUNT this sets a short spin (GOMP_SPINCOUNT=RLHF_SPINCOUNT)
 * and re-executes the program once. Returns only if no re-exec happened.
 */
#define RLHF_SPINCOUNT "1000"
void kernels_init_process(char **argv);

/* Threads used by kernels and BLAS (0 = all cores). */
void kernels_set_threads(int n);
int kernels_get_threads(void);

#endif
