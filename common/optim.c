/* optim.c - AdamW, clipping and LR schedule (see optim.h). */
#include "common/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void adamw_config_default(adamw_config_t *c) {
    c->lr = 3e-4f;
    c->beta1 = 0.9f;
    c->beta2 = 0.95f;
    c->eps = 1e-5f;
    c->weight_decay = 0.1f;
    c->grad_clip = 1.0f;
    c->warmup_steps = 0;
    c->total_steps = 0;
    c->min_lr_frac = 0.1f;
}

adamw_t *adamw_new(const adamw_config_t *cfg, size_t n) {
    adamw_t *o = calloc(1, sizeof(*o));
    if (!o) return NULL;
    o->cfg = *cfg;
    o->n = n;
    o->m = calloc(n ? n : 1, sizeof(float));
    o->v = calloc(n ? n : 1, sizeof(float));
    if (!o->m || !o->v) {
        adamw_destroy(&o);
        return NULL;
    }
    return o;
}

void adamw_destroy(adamw_t **p) {
    if (!p || !*p) return;
    free((*p)->m);
    free((*p)->v);
    free(*p);
    *p = NULL;
}

float adamw_lr_at(const adamw_config_t *c, int64_t s) {
    if (c->warmup_steps > 0 && s < c->warmup_steps) return c->lr * (float)(s + 1) / (float)c->warmup_steps;
    if (c->total_steps <= 0) return c->lr;
    int64_t decay = c->total_steps - c->warmup_steps;
    if (decay <= 0) return c->lr;
    double frac = (double)(s - c->warmup_steps) / (double)decay;
    if (frac > 1.0) frac = 1.0;
    double cosv = 0.5 * (1.0 + cos(M_PI * frac));
    double minlr = c->lr * c->min_lr_frac;
    return (float)(minlr + (c->lr - minlr) * cosv);
}

float grad_global_norm(const float *g, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)g[i] * g[i];
    return (float)sqrt(s);
}

void adamw_update(adamw_t *o, float *params, float *grads, const uint8_t *decay_mask, float *gnorm_out, float *lr_out) {
    const adamw_config_t *c = &o->cfg;
    float gnorm = grad_global_norm(grads, o->n);
    float scale = 1.0f;
    if (c->grad_clip > 0 && gnorm > c->grad_clip) scale = c->grad_clip / (gnorm + 1e-6f);
    float lr = adamw_lr_at(c, o->step);
    o->step++;
    float b1 = c->beta1, b2 = c->beta2;
    float bc1 = 1.0f - powf(b1, (float)o->step);
    float bc2 = 1.0f - powf(b2, (float)o->step);
    float wd = c->weight_decay;
    size_t n = o->n;
    float *m = o->m, *v = o->v;
#ifdef RLHF_OPENMP
#pragma omp parallel for schedule(static) if (n > 65536)
#endif
    for (size_t i = 0; i < n; i++) {
        float g = grads[i] * scale;
        grads[i] = g;
        float mi = b1 * m[i] + (1.0f - b1) * g;
        float vi = b2 * v[i] + (1.0f - b2) * g * g;
        m[i] = mi;
        v[i] = vi;
        float mhat = mi / bc1, vhat = vi / bc2;
        float decay = (decay_mask == NULL || decay_mask[i]) ? wd : 0.0f;
        params[i] -= lr * (mhat / (sqrtf(vhat) + c->eps) + decay * params[i]);
    }
    if (gnorm_out) *gnorm_out = gnorm;
    if (lr_out) *lr_out = lr;
}
