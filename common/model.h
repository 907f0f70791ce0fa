/*
 * model.h - a Llama-style decoder in fp32 on the CPU.
 *
 * Token embedding, RMSNorm, rotary positions (Hugging Face "rotate_half"
 * layout), grouped-query attention, SwiGLU MLP, tied or untied LM head and an
 * optional scalar head (reward model / critic). Matrix products go through
 * OpenBLAS sgemm (kernels.h).
 *
 * What it deliberately is not: no fp16/bf16, no GPU, no dropout, no biases.
 *
 * Dimension letters, fixed for the whole project:
 *   B batch, T time (sequence), C model dim, V vocabulary, L layers,
 *   NH query heads, KVH key/value heads, HS head size (C / NH),
 *   H SwiGLU hidden size, QC = NH*HS (= C), KC = KVH*HS.
 *
 * Lifetimes (llama2.c style): model_config_t is the blueprint; model_t holds
 * the weights (one contiguous blob with named views: a weight sync is one
 * blob) and, once model_alloc_grads() is called, gradients in the same
 * layout; model_acts_t is the training run state for one (B, T);
 * kvcache_t is the generation run state.
 */
#ifndef RLHF_MODEL_H
#define RLHF_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

typedef struct {
    int vocab_size;      // V
    int dim;             // C
    int n_layers;        // L
    int n_heads;         // NH
    int n_kv_heads;      // KVH, divides NH
    int hidden_dim;      // H
    int max_seq_len;     // context length
    int tied_embeddings; // 1: the LM head is the token embedding
    int scalar_head;     // 1: a (1,C) head on the final hidden state
    float norm_eps;      // RMSNorm epsilon
    float rope_theta;    // rotary base
} model_config_t;

/* Parameter tensors, in blob order. Per-layer tensors hold all L layers
 * back to back (llm.c layout); the HF name of layer l is derived. */
enum {
    MP_EMB,       // (V, C)          model.embed_tokens.weight
    MP_ATTN_NORM, // (L, C)          model.layers.l.input_layernorm.weight
    MP_WQ,        // (L, QC, C)      model.layers.l.self_attn.q_proj.weight
    MP_WK,        // (L, KC, C)      model.layers.l.self_attn.k_proj.weight
    MP_WV,        // (L, KC, C)      model.layers.l.self_attn.v_proj.weight
    MP_WO,        // (L, C, QC)      model.layers.l.self_attn.o_proj.weight
    MP_FFN_NORM,  // (L, C)          model.layers.l.post_attention_layernorm.weight
    MP_W1,        // (L, H, C)       model.layers.l.mlp.gate_proj.weight
    MP_W3,        // (L, H, C)       model.layers.l.mlp.up_proj.weight
    MP_W2,        // (L, C, H)       model.layers.l.mlp.down_proj.weight
    MP_NORM,      // (C)             model.norm.weight
    MP_LM_HEAD,   // (V, C)          lm_head.weight   (size 0 when tied)
    MP_SCORE,     // (1, C)          score.weight     (size 0 without scalar head)
    MP_COUNT
};

/* Named views into a parameter-shaped blob (weights or gradients). */
typedef struct {
    float *emb, *attn_norm, *wq, *wk, *wv, *wo, *ffn_norm, *w1, *w3, *w2, *norm;
    float *lm_head; // == emb when tied
    float *score;   // NULL without scalar head
} model_params_t;

typedef struct {
    model_config_t cfg;
    size_t sizes[MP_COUNT]; // floats per tensor, all layers together
    size_t offsets[MP_COUNT];
    size_t n_params;   // floats in the blob
    float *params_mem; // owned, 64-byte aligned
    model_params_t w;  // views into params_mem
    float *grads_mem;  // NULL until model_alloc_grads
    model_params_t g;  // views into grads_mem
} model_t;

/* ---- config ---- */

/* Fill cfg from a preset name: tiny, small, base, stories15m.
 * Returns RLHF_ENOTFOUND for an unknown name. */
rlhf_err_t model_config_preset(model_config_t *cfg, const char *name);
/* Check every field; on error writes one sentence naming the field. */
rlhf_err_t model_config_validate(const model_config_t *cfg, char *err, size_t errlen);
/* Parameter count (floats) for a config, and the non-embedding count used
 * for FLOP estimates (excludes the token embedding, includes the LM head). */
size_t model_config_n_params(const model_config_t *cfg);
size_t model_config_n_params_nonemb(const model_config_t *cfg);

/* ---- weights ---- */

/* Allocate a model for cfg (weights zeroed). NULL on bad config or OOM. */
model_t *model_new(const model_config_t *cfg);
void model_destroy(model_t **m);
/* Deterministic init: normal(0, 0.02) matrices, scaled by 1/sqrt(2L) for the
 * residual projections (wo, w2); norms to 1; score head zero. */
void model_init_weights(model_t *m, uint64_t seed);
rlhf_err_t model_alloc_grads(model_t *m);
void model_zero_grads(model_t *m);
/* Point views at an arbitrary parameter-shaped blob. */
void model_point_params(const model_t *m, float *blob, model_params_t *views);
/* HF name and shape of tensor k, layer l (ignored for non-layer tensors).
 * Returns number of dims (1 or 2), 0 if the tensor is absent (size 0). */
int model_tensor_info(const model_t *m, int k, int l, char *name, size_t namelen, int64_t shape[2]);
/* Offset (floats) of tensor k, layer l inside the blob. */
size_t model_tensor_offset(const model_t *m, int k, int l);
/* Floats in ONE layer's slice of tensor k (all of it for non-layer tensors). */
size_t model_tensor_numel(const model_t *m, int k);
/* Weight-decay mask over the blob (n_params bytes): 1 for matrices, 0 for
 * norm gains (the GPT/Llama convention). */
void model_decay_mask(const model_t *m, uint8_t *mask);
/* Is tensor k one per layer? */
int model_tensor_per_layer(int k);

/* ---- training ---- */

typedef struct model_acts model_acts_t;

/* Activations for batches up to (B, T); T <= max_seq_len. */
model_acts_t *model_acts_new(const model_config_t *cfg, int B, int T);
void model_acts_destroy(model_acts_t **a);
size_t model_acts_bytes(const model_acts_t *a);

/*
 * Forward over tokens (B,T) (right-padded; causal attention means real
 * tokens never see padding). targets (B,T): the token to score at each
 * position, or -1 to skip. When targets is NULL the LM head is skipped (a
 * reward model or critic only needs the scalar head).
 * temperature scales logits before the softmax (1 for plain log-probs).
 * Results, borrowed, valid until the next forward:
 *   logprobs (B,T)  log p(targets) under softmax(logits/temperature); 0 where skipped
 *   entropy  (B,T)  entropy of that distribution; 0 where skipped
 *   values   (B,T)  scalar head output at every position (all zero without head)
 */
void model_forward(model_t *m, model_acts_t *a, const int *tokens, const int *targets, int B, int T, float temperature);
const float *model_acts_logprobs(const model_acts_t *a);
const float *model_acts_entropy(const model_acts_t *a);
const float *model_acts_values(const model_acts_t *a);
/* Logits (B,T,V) of the last forward (before temperature). NULL if skipped. */
const float *model_acts_logits(const model_acts_t *a);

/*
 * Backward of the last forward: given dL/dlogprobs (B,T), dL/dentropy (B,T)
 * and dL/dvalues (B,T) (each may be NULL = zero), ADDS the parameter
 * gradients into m->grads_mem (call model_zero_grads first).
 */
void model_backward(model_t *m, model_acts_t *a, const float *dlogprobs, const float *dentropy, const float *dvalues);

/* Convenience: mean next-token NLL over positions with targets >= 0, with
 * backward if do_backward. tokens (B,T), targets (B,T). Returns the loss. */
float model_sft_step(model_t *m, model_acts_t *a, const int *tokens, const int *targets, int B, int T, int do_backward);

/* ---- generation ---- */

typedef struct kvcache kvcache_t;

/* KV cache for up to B sequences ("slots") of up to T positions. */
kvcache_t *kvcache_new(const model_config_t *cfg, int B, int T);
void kvcache_destroy(kvcache_t **kv);
int kvcache_slots(const kvcache_t *kv);
int kvcache_len(const kvcache_t *kv);

/*
 * Process N token rows with the KV cache. Row i is token tokens[i] of slot
 * slot[i] at position pos[i]. All rows' keys/values are written first, then
 * row i attends to positions 0..pos[i] of its slot, so several consecutive
 * positions of one slot (a prompt prefill) and one position of many slots
 * (a decode step) are both one call, one sgemm per weight matrix.
 * logits (N,V) out, may be NULL (then the LM head is skipped).
 */
void model_step(model_t *m, kvcache_t *kv, const int *tokens, const int *slot, const int *pos, int N, float *logits);

/* ---- threads ---- */

/* Threads for BLAS and our own kernels (0 = all cores). */
void model_set_threads(int n);
int model_get_threads(void);

#endif
