/*
 * scorer.c - the scorer interface and the built-in task verifier.
 */
#include "reward/scorer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct scorer {
    char name[PROTO_MAX_NAME + 1];
    scorer_ops_t ops;
    void *self; // owned, freed by ops.destroy
};

static int valid_name(const char *s) {
    size_t n = s ? strlen(s) : 0;
    if (n < 1 || n > PROTO_MAX_NAME) return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7E) return 0;
    return 1;
}

rlhf_err_t scorer_new(const char *name, const scorer_ops_t *ops, void *self, scorer_t **out) {
    *out = NULL;
    if (!ops || !ops->score || !valid_name(name)) {
        if (ops && ops->destroy) ops->destroy(self);
        return RLHF_EINVAL;
    }
    scorer_t *s = calloc(1, sizeof *s);
    if (!s) {
        if (ops->destroy) ops->destroy(self);
        return RLHF_ENOMEM;
    }
    strcpy(s->name, name);
    s->ops = *ops;
    s->self = self;
    *out = s;
    return RLHF_OK;
}

void scorer_destroy(scorer_t **p) {
    if (!p || !*p) return;
    scorer_t *s = *p;
    if (s->ops.destroy) s->ops.destroy(s->self);
    free(s);
    *p = NULL;
}

const char *scorer_name(const scorer_t *s) {
    return s->name;
}

void scorer_output_invalid(scorer_output_t *out) {
    out->reward = 0.0;
    out->components[0] = (proto_named_t){SCORER_COMPONENT_INVALID, 1.0};
    out->n_components = 1;
    out->invalid = 1;
}

rlhf_err_t scorer_score(scorer_t *s, const scorer_input_t *in, scorer_output_t *out) {
    memset(out, 0, sizeof *out);
    rlhf_err_t rc = s->ops.score(s->self, in, out);
    int ok = isfinite(out->reward) && out->n_components <= PROTO_MAX_COMPONENTS;
    for (uint32_t i = 0; ok && i < out->n_components; i++)
        ok = isfinite(out->components[i].value) && valid_name(out->components[i].name);
    if (rc != RLHF_OK || !ok) scorer_output_invalid(out);
    return rc;
}

/* ---- built-in task verifier ---- */

static rlhf_err_t task_scorer_score(void *self, const scorer_input_t *in, scorer_output_t *out) {
    const task_t *t = self;
    uint64_t split = in->prompt_id >> 32, index = in->prompt_id & 0xffffffffu;
    if ((split != TASK_TRAIN && split != TASK_HELDOUT) || index >= (uint64_t)task_size(t, (int)split)) {
        scorer_output_invalid(out);
        return RLHF_OK;
    }
    /* task_score takes int tokens; int32_t is int on every platform we build for */
    _Static_assert(sizeof(int) == sizeof(int32_t), "int must be 32 bits");
    float r = task_score(t, (int)split, (int)index, (const int *)in->completion, (int)in->n_completion);
    out->reward = r;
    out->components[0] = (proto_named_t){SCORER_COMPONENT_TASK, r};
    out->n_components = 1;
    return RLHF_OK;
}

static void task_scorer_destroy(void *self) {
    task_t *t = self;
    task_destroy(&t);
}

rlhf_err_t scorer_task_new(const char *name, const task_config_t *cfg, scorer_t **out, char *err, size_t errlen) {
    *out = NULL;
    task_t *t = task_new_err(name, cfg, err, errlen);
    if (!t) return RLHF_EINVAL;
    static const scorer_ops_t ops = {task_scorer_score, task_scorer_destroy};
    rlhf_err_t rc = scorer_new(task_name(t), &ops, t, out);
    if (rc != RLHF_OK) rlhf_seterr(err, errlen, rc, "scorer '%s': %s", name, rlhf_strerror(rc));
    return rc;
}
