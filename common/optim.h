/*
 * optim.h - AdamW with decoupled weight decay, global-norm gradient
 * clipping, and a warm-up + cosine/constant learning-rate schedule.
 *
 * Moments live in two blobs in the parameter layout (so they checkpoint as
 * the parameters do). Weight decay applies to matrices only (1-D norm gains
 * are exempt), as in the GPT/Llama recipes; the caller passes a mask.
 */
#ifndef RLHF_OPTIM_H
#define RLHF_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

typedef struct {
    float lr;           // peak learning rate
    float beta1, beta2; // Llama 2: 0.9, 0.95
    float eps;          // 1e-5 (Llama 2) / 1e-8
    float weight_decay; // 0.1
    float grad_clip;    // global norm; <= 0 disables
    int warmup_steps;
    int total_steps;   // for cosine; 0 = constant after warm-up
    float min_lr_frac; // cosine floor as a fraction of lr
} adamw_config_t;

typedef struct {
    adamw_config_t cfg;
    size_t n;     // floats
    float *m, *v; // (n) first and second moments, owned
    int64_t step; // updates done
} adamw_t;

void adamw_config_default(adamw_config_t *c);
/* NULL on OOM. */
adamw_t *adamw_new(const adamw_config_t *cfg, size_t n);
void adamw_destroy(adamw_t **o);

/* Learning rate for 0-based step s: linear warm-up to lr over warmup_steps,
 * then cosine to min_lr_frac*lr at total_steps (or constant if total 0). */
float adamw_lr_at(const adamw_config_t *c, int64_t s);

/* L2 norm of grads (n), accumulated in double. */
float grad_global_norm(const float *grads, size_t n);

/*
 * One update. Clips grads in place to cfg.grad_clip (if > 0), then
 * param -= lr * (mhat / (sqrt(vhat) + eps) + wd * decay_mask * param).
 * decay_mask (n) may be NULL (decay everything). Returns the pre-clip
 * gradient norm in *gnorm_out (may be NULL) and the lr used in *lr_out.
 */
void adamw_update(adamw_t *o, float *params, float *grads, const uint8_t *decay_mask, float *gnorm_out, float *lr_out);

#endif
