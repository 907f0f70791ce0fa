/*
 * checkpoint.h - model checkpoints in Hugging Face Llama layout, and the
 * trainer state saved beside them for exact resume.
 *
 * A checkpoint folder holds
 *   model.safetensors        F32 weights, HF names ("model.layers.3.mlp.up_proj.weight");
 *                            no lm_head.weight when tied; "score.weight" (1,C) with a scalar head
 *   config.json              HF LlamaConfig keys (+ "rlhf_scalar_head"; bos/eos/pad ids from
 *                            tokenizer.h), so transformers.LlamaForCausalLM.from_pretrained(dir)
 *                            loads it (checked by tests/check_hf_load.py)
 *   trainer_state.safetensors  optional: AdamW moments "adam.m", "adam.v" (F32, [n]) and
 *                            metadata strings: format "rlhf-trainer-state-1", step, adam_step,
 *                            data_pos, epoch (decimal), rng (4 x 16 hex digits, comma-separated),
 *                            adam.lr adam.beta1 adam.beta2 adam.eps adam.weight_decay
 *                            adam.grad_clip adam.min_lr_frac (shortest exact decimal),
 *                            adam.warmup_steps adam.total_steps
 *
 * Every file is written atomically (temp file in the same folder, fsync,
 * rename, fsync of the folder), so a crash leaves the old or the new file,
 * never a torn one. The files are replaced one by one: weights first, then
 * config.json.
 *
 * Loading validates everything against the config before copying: dtype F32,
 * exact shapes, no missing and no extra tensors. Errors write one sentence
 * into err naming the file and the key or tensor ("ckpt/config.json:
 * 'num_key_value_heads' must be an integer (got string)").
 * Codes: RLHF_EIO (OS, with strerror), RLHF_EFORMAT (bad JSON, missing key,
 * wrong JSON type, bad metadata), RLHF_ERANGE (value does not fit),
 * RLHF_EUNSUPPORTED (a Llama feature we do not implement: rope_scaling,
 * biases, another activation), RLHF_ENOTFOUND (missing tensor),
 * RLHF_EMISMATCH (wrong dtype, shape or size; unexpected tensor), plus the
 * safetensors reader's codes and whatever model_config_validate returns.
 */
#ifndef RLHF_CHECKPOINT_H
#define RLHF_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "common/model.h"
#include "common/optim.h"
#include "common/rng.h"

#define CHECKPOINT_MODEL_FILE   "model.safetensors"
#define CHECKPOINT_CONFIG_FILE  "config.json"
#define CHECKPOINT_TRAINER_FILE "trainer_state.safetensors"

/* Everything besides the weights and the optimizer moments that exact resume
 * needs. Plain data. */
typedef struct {
    int64_t step;     // trainer steps done
    rng_t rng;        // the trainer's generator
    int64_t data_pos; // position in the data/prompt stream within the epoch
    int64_t epoch;
} trainer_state_t;

/* mkdir -p dir (mode 0755). RLHF_EIO naming the component that failed. */
rlhf_err_t checkpoint_mkdirs(const char *dir, char *err, size_t errlen);

/* Write dir/model.safetensors and dir/config.json (creating dir). The model
 * is borrowed. */
rlhf_err_t checkpoint_save_model(const model_t *m, const char *dir, char *err, size_t errlen);

/* Parse dir/config.json into cfg and model_config_validate it.
 * Required keys: hidden_size, intermediate_size, num_attention_heads,
 * num_hidden_layers, vocab_size, max_position_embeddings, rms_norm_eps.
 * Optional, with Hugging Face Llama defaults: num_key_value_heads
 * (= num_attention_heads), rope_theta (10000), tie_word_embeddings (false),
 * rlhf_scalar_head (0). When present, model_type must be "llama",
 * hidden_act "silu", attention_bias/mlp_bias false, rope_scaling null and
 * head_dim hidden_size/num_attention_heads (else RLHF_EUNSUPPORTED).
 * cfg is written only on success. */
rlhf_err_t checkpoint_load_config(const char *dir, model_config_t *cfg, char *err, size_t errlen);

/* Load config and weights into a new model; caller owns *out (model_destroy).
 * *out is NULL on error. */
rlhf_err_t checkpoint_load_model(const char *dir, model_t **out, char *err, size_t errlen);

/* Write dir/trainer_state.safetensors (creating dir): opt's moments, step and
 * config, and ts. Both borrowed. */
rlhf_err_t checkpoint_save_trainer(const adamw_t *opt, const trainer_state_t *ts, const char *dir, char *err,
                                   size_t errlen);

/* Read dir/trainer_state.safetensors into opt (moments, step and config: the
 * saved config replaces opt->cfg; set a new schedule after loading if that is
 * what you want) and ts. The moment sizes must equal opt->n
 * (RLHF_EMISMATCH). Everything is validated before anything is written, so
 * on error opt and ts are untouched. */
rlhf_err_t checkpoint_load_trainer(adamw_t *opt, trainer_state_t *ts, const char *dir, char *err, size_t errlen);

/* Write len bytes to path atomically (see above). RLHF_EIO with strerror. */
rlhf_err_t checkpoint_write_file(const char *path, const void *buf, size_t len, char *err, size_t errlen);

#endif
