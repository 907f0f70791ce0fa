/*
 * sft.h - supervised fine-tuning: examples, batching, and a trainer with
 * exact resume.
 *
 * An example is prompt tokens + completion tokens; the loss is the mean
 * next-token NLL over completion tokens only (the prompt is context).
 * Sources: a jsonl file of {"prompt": str, "completion": str} lines, or a
 * built-in task's train split. The data order is a per-epoch shuffle
 * derived from (seed, epoch), so a resumed run replays exactly.
 *
 * What it is not: no packing of several examples per row, no chat template
 * beyond BOS (use tok_chat_prompt upstream if wanted).
 */
#ifndef RLHF_SFT_H
#define RLHF_SFT_H

#include <stddef.h>
#include <stdint.h>

#include "common/checkpoint.h"
#include "common/error.h"
#include "common/model.h"
#include "common/optim.h"
#include "common/task.h"

typedef struct {
    int *tokens;    // (len) prompt then completion; owned by the set's pool
    int prompt_len; // tokens of context (no loss)
    int len;        // total tokens
} sft_example_t;

typedef struct {
    sft_example_t *ex;
    int n;
    int *pool; // all tokens, owned
    size_t pool_len;
    int max_len; // longest example
} sft_data_t;

/* Load jsonl: each non-empty line an object with string fields "prompt"
 * and "completion" (other fields ignored). Prompt -> BOS + bytes,
 * completion -> bytes + EOS. Examples longer than max_len are refused with
 * the line number. */
rlhf_err_t sft_data_load_jsonl(sft_data_t *d, const char *path, int max_len, char *err, size_t errlen);
/* The examples of a task split (prompt, demonstration: task_demo). */
rlhf_err_t sft_data_from_task(sft_data_t *d, const task_t *t, int split, int max_len, char *err, size_t errlen);
void sft_data_fini(sft_data_t *d);

/* Right-pad examples idx[0..B) into tokens/targets (B, T) where T is the
 * longest of them; targets are the next token on completion positions and
 * -1 elsewhere. Returns T (<= T_cap) and the number of loss tokens in
 * *n_loss. */
int sft_data_batch(const sft_data_t *d, const int *idx, int B, int T_cap, int *tokens, int *targets, int *n_loss);

typedef struct {
    int batch;          // sequences per step
    int steps;          // total optimizer steps
    uint64_t seed;      // data order
    adamw_config_t opt; // lr schedule uses opt.total_steps
} sft_config_t;

typedef struct sft sft_t;

void sft_config_default(sft_config_t *c);
/* Trainer over model m (borrowed; grads allocated here) and data d
 * (borrowed). NULL on OOM. */
sft_t *sft_new(model_t *m, const sft_data_t *d, const sft_config_t *c);
void sft_destroy(sft_t **s);
/* One optimizer step. Returns the mean loss; *n_tokens gets loss tokens,
 * *gnorm the pre-clip gradient norm, *lr the rate used (each may be NULL). */
float sft_step(sft_t *s, int *n_tokens, float *gnorm, float *lr);
int64_t sft_steps_done(const sft_t *s);
/* Model + trainer state into dir (atomic files). */
rlhf_err_t sft_save(const sft_t *s, const char *dir, char *err, size_t errlen);
/* Restore optimizer and data position from dir (the model's weights are
 * loaded by the caller with checkpoint_load_model). */
rlhf_err_t sft_resume(sft_t *s, const char *dir, char *err, size_t errlen);

#endif
