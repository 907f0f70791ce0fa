/*
 * rollout.c - rollouts (actor -> learner: samples with behaviour log-probs)
 * and score_work (learner -> reward worker: the samples to score), the two
 * messages whose size is dominated by token arrays (PROTOCOL.md
 * "rollouts", "score_work").
 */
#include <string.h>

#include "proto/proto_int.h"

#define TRY PROTO__TRY

/* ---- rollouts ---- */

static const char *const rollouts_keys[] = {"ticket", "samples"};
enum { RO_TICKET, RO_SAMPLES, RO__N };

static const char *const sample_keys[] = {"prompt_index", "sample_index",   "prompt",   "completion", "logprobs",
                                          "finish",       "policy_version", "queue_us", "gen_us"};
enum { SA_PI, SA_SI, SA_PROMPT, SA_COMPLETION, SA_LOGPROBS, SA_FINISH, SA_POLICY, SA_QUEUE, SA_GEN, SA__N };
#define SA_REQUIRED 0x7fu /* all but the timings */

static int dec_sample(proto__dec_t *d, const msgpack_object *o, proto_sample_t *s) {
    const msgpack_object *v[SA__N];
    void *p;
    uint32_t n_lp;
    TRY(proto__fields(d, o, sample_keys, SA__N, SA_REQUIRED, v));
    TRY(proto__get_u32(d, v[SA_PI], "prompt_index", &s->prompt_index));
    TRY(proto__get_u32(d, v[SA_SI], "sample_index", &s->sample_index));
    TRY(proto__get_le32(d, v[SA_PROMPT], "prompt", PROTO_MAX_TOKENS, &p, &s->n_prompt));
    s->prompt = p;
    TRY(proto__get_le32(d, v[SA_COMPLETION], "completion", PROTO_MAX_TOKENS, &p, &s->n_completion));
    s->completion = p;
    TRY(proto__get_le32(d, v[SA_LOGPROBS], "logprobs", PROTO_MAX_TOKENS, &p, &n_lp));
    s->logprobs = p;
    if (n_lp != s->n_completion)
        return proto__fail(&d->c, PROTO_REJECT_BAD_LENGTH, "logprobs", "%u log-probs for %u completion tokens", n_lp,
                           s->n_completion);
    TRY(proto__get_u32(d, v[SA_FINISH], "finish", &s->finish));
    TRY(proto__get_u64(d, v[SA_POLICY], "policy_version", &s->policy_version));
    s->queue_us = s->gen_us = 0;
    if (v[SA_QUEUE]) TRY(proto__get_u64(d, v[SA_QUEUE], "queue_us", &s->queue_us));
    if (v[SA_GEN]) TRY(proto__get_u64(d, v[SA_GEN], "gen_us", &s->gen_us));
    return 0;
}

int proto__dec_rollouts(proto__dec_t *d, const msgpack_object *body, proto_msg_t *m) {
    const msgpack_object *v[RO__N], *a;
    uint32_t n;
    TRY(proto__fields(d, body, rollouts_keys, RO__N, 3u, v));
    TRY(proto__get_u64(d, v[RO_TICKET], "ticket", &m->rollouts.ticket));
    TRY(proto__get_array(d, v[RO_SAMPLES], "samples", PROTO_MAX_SAMPLES, &a, &n));
    proto_sample_t *s = n ? proto__alloc(d, sizeof(*s) * n) : NULL;
    if (n && !s) return -1;
    proto__push(&d->c, "samples");
    for (uint32_t i = 0; i < n; i++) {
        proto__index(&d->c, i);
        TRY(dec_sample(d, &a[i], &s[i]));
    }
    proto__pop(&d->c);
    m->rollouts.samples = s;
    m->rollouts.n_samples = n;
    return 0;
}

static int check_samples_count(proto__ctx_t *c, const void *arr, uint32_t n) {
    if (n > PROTO_MAX_SAMPLES)
        return proto__fail(c, PROTO_REJECT_TOO_LARGE, "samples", "%u samples, limit %u", n, PROTO_MAX_SAMPLES);
    if (n == 0 || !arr) return proto__fail(c, PROTO_REJECT_BAD_LENGTH, "samples", "at least one sample needed");
    return 0;
}

static int check_common(proto__ctx_t *c, uint32_t pi, uint32_t si, uint32_t finish) {
    TRY(proto__check_range(c, "prompt_index", pi, 0, PROTO_MAX_PROMPTS - 1));
    TRY(proto__check_range(c, "sample_index", si, 0, PROTO_MAX_K - 1));
    return proto__check_range(c, "finish", finish, PROTO_FINISH_STOP, PROTO_FINISH_LENGTH);
}

int proto__check_rollouts(proto__ctx_t *c, const proto_msg_t *m) {
    const proto_rollouts_t *r = &m->rollouts;
    TRY(check_samples_count(c, r->samples, r->n_samples));
    proto__push(c, "samples");
    for (uint32_t i = 0; i < r->n_samples; i++) {
        const proto_sample_t *s = &r->samples[i];
        proto__index(c, i);
        TRY(check_common(c, s->prompt_index, s->sample_index, s->finish));
        TRY(proto__check_tokens(c, "prompt", s->prompt, s->n_prompt, 1, PROTO_MAX_TOKENS));
        TRY(proto__check_tokens(c, "completion", s->completion, s->n_completion, 1, PROTO_MAX_TOKENS));
        TRY(proto__check_floats(c, "logprobs", s->logprobs, s->n_completion, PROTO_REJECT_NAN_LOGPROB));
    }
    proto__pop(c);
    return 0;
}

size_t proto__bound_rollouts(const proto_msg_t *m) {
    const proto_rollouts_t *r = &m->rollouts;
    size_t b = 16 + 2 * PROTO__FIELD;
    for (uint32_t i = 0; i < r->n_samples; i++)
        b += 8 + SA__N * PROTO__FIELD + 4 * ((size_t)r->samples[i].n_prompt + 2 * (size_t)r->samples[i].n_completion);
    return b;
}

int proto__pack_rollouts(msgpack_packer *pk, const proto_msg_t *m) {
    const proto_rollouts_t *r = &m->rollouts;
    TRY(msgpack_pack_map(pk, 2));
    TRY(proto__pack_key(pk, "ticket"));
    TRY(msgpack_pack_uint64(pk, r->ticket));
    TRY(proto__pack_key(pk, "samples"));
    TRY(msgpack_pack_array(pk, r->n_samples));
    for (uint32_t i = 0; i < r->n_samples; i++) {
        const proto_sample_t *s = &r->samples[i];
        TRY(msgpack_pack_map(pk, 7 + (size_t)(s->queue_us != 0) + (size_t)(s->gen_us != 0)));
        TRY(proto__pack_key(pk, "prompt_index"));
        TRY(msgpack_pack_uint32(pk, s->prompt_index));
        TRY(proto__pack_key(pk, "sample_index"));
        TRY(msgpack_pack_uint32(pk, s->sample_index));
        TRY(proto__pack_key(pk, "prompt"));
        TRY(proto__pack_le32(pk, s->prompt, s->n_prompt));
        TRY(proto__pack_key(pk, "completion"));
        TRY(proto__pack_le32(pk, s->completion, s->n_completion));
        TRY(proto__pack_key(pk, "logprobs"));
        TRY(proto__pack_le32(pk, s->logprobs, s->n_completion));
        TRY(proto__pack_key(pk, "finish"));
        TRY(msgpack_pack_uint32(pk, s->finish));
        TRY(proto__pack_key(pk, "policy_version"));
        TRY(msgpack_pack_uint64(pk, s->policy_version));
        if (s->queue_us) {
            TRY(proto__pack_key(pk, "queue_us"));
            TRY(msgpack_pack_uint64(pk, s->queue_us));
        }
        if (s->gen_us) {
            TRY(proto__pack_key(pk, "gen_us"));
            TRY(msgpack_pack_uint64(pk, s->gen_us));
        }
    }
    return 0;
}

/* ---- score_work ---- */

static const char *const score_work_keys[] = {"ticket", "task", "temperature", "want_ref", "samples"};
enum { SW_TICKET, SW_TASK, SW_TEMP, SW_WANTREF, SW_SAMPLES, SW__N };
#define SW_REQUIRED (1u << SW_TICKET | 1u << SW_SAMPLES)

static const char *const item_keys[] = {"prompt_index", "sample_index", "prompt_id", "prompt", "completion", "finish"};
enum { IT_PI, IT_SI, IT_PID, IT_PROMPT, IT_COMPLETION, IT_FINISH, IT__N };

int proto__dec_score_work(proto__dec_t *d, const msgpack_object *body, proto_msg_t *m) {
    const msgpack_object *v[SW__N], *a;
    proto_score_work_t *w = &m->score_work;
    uint32_t n;
    TRY(proto__fields(d, body, score_work_keys, SW__N, SW_REQUIRED, v));
    TRY(proto__get_u64(d, v[SW_TICKET], "ticket", &w->ticket));
    w->task = "";
    if (v[SW_TASK]) TRY(proto__get_str(d, v[SW_TASK], "task", PROTO_MAX_NAME, &w->task));
    w->temperature = 1.0f;
    if (v[SW_TEMP]) TRY(proto__get_f32(d, v[SW_TEMP], "temperature", &w->temperature));
    w->want_ref = 0;
    if (v[SW_WANTREF]) TRY(proto__get_bool(d, v[SW_WANTREF], "want_ref", &w->want_ref));
    TRY(proto__get_array(d, v[SW_SAMPLES], "samples", PROTO_MAX_SAMPLES, &a, &n));
    proto_score_item_t *it = n ? proto__alloc(d, sizeof(*it) * n) : NULL;
    if (n && !it) return -1;
    proto__push(&d->c, "samples");
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *iv[IT__N];
        void *p;
        proto__index(&d->c, i);
        TRY(proto__fields(d, &a[i], item_keys, IT__N, (1u << IT__N) - 1, iv));
        TRY(proto__get_u32(d, iv[IT_PI], "prompt_index", &it[i].prompt_index));
        TRY(proto__get_u32(d, iv[IT_SI], "sample_index", &it[i].sample_index));
        TRY(proto__get_u64(d, iv[IT_PID], "prompt_id", &it[i].prompt_id));
        TRY(proto__get_le32(d, iv[IT_PROMPT], "prompt", PROTO_MAX_TOKENS, &p, &it[i].n_prompt));
        it[i].prompt = p;
        TRY(proto__get_le32(d, iv[IT_COMPLETION], "completion", PROTO_MAX_TOKENS, &p, &it[i].n_completion));
        it[i].completion = p;
        TRY(proto__get_u32(d, iv[IT_FINISH], "finish", &it[i].finish));
    }
    proto__pop(&d->c);
    w->items = it;
    w->n_items = n;
    return 0;
}

int proto__check_score_work(proto__ctx_t *c, const proto_msg_t *m) {
    const proto_score_work_t *w = &m->score_work;
    TRY(proto__check_str(c, "task", w->task, 0, PROTO_MAX_NAME, PROTO__CS_NAME));
    if (!(w->temperature > 0.0f && w->temperature <= PROTO_MAX_TEMPERATURE))
        return proto__fail(c, PROTO_REJECT_OUT_OF_RANGE, "temperature", "%g is outside (0, %g]", (double)w->temperature,
                           (double)PROTO_MAX_TEMPERATURE);
    TRY(proto__check_range(c, "want_ref", w->want_ref, 0, 1));
    TRY(check_samples_count(c, w->items, w->n_items));
    proto__push(c, "samples");
    for (uint32_t i = 0; i < w->n_items; i++) {
        const proto_score_item_t *it = &w->items[i];
        proto__index(c, i);
        TRY(check_common(c, it->prompt_index, it->sample_index, it->finish));
        TRY(proto__check_tokens(c, "prompt", it->prompt, it->n_prompt, 1, PROTO_MAX_TOKENS));
        TRY(proto__check_tokens(c, "completion", it->completion, it->n_completion, 1, PROTO_MAX_TOKENS));
    }
    proto__pop(c);
    return 0;
}

size_t proto__bound_score_work(const proto_msg_t *m) {
    const proto_score_work_t *w = &m->score_work;
    size_t b = 16 + SW__N * PROTO__FIELD + proto__bound_str(w->task);
    for (uint32_t i = 0; i < w->n_items; i++)
        b += 8 + IT__N * PROTO__FIELD + 4 * ((size_t)w->items[i].n_prompt + (size_t)w->items[i].n_completion);
    return b;
}

int proto__pack_score_work(msgpack_packer *pk, const proto_msg_t *m) {
    const proto_score_work_t *w = &m->score_work;
    int has_task = w->task && w->task[0];
    TRY(msgpack_pack_map(pk, 4 + (size_t)has_task));
    TRY(proto__pack_key(pk, "ticket"));
    TRY(msgpack_pack_uint64(pk, w->ticket));
    if (has_task) {
        TRY(proto__pack_key(pk, "task"));
        TRY(proto__pack_str(pk, w->task));
    }
    TRY(proto__pack_key(pk, "temperature"));
    TRY(msgpack_pack_float(pk, w->temperature));
    TRY(proto__pack_key(pk, "want_ref"));
    TRY(w->want_ref ? msgpack_pack_true(pk) : msgpack_pack_false(pk));
    TRY(proto__pack_key(pk, "samples"));
    TRY(msgpack_pack_array(pk, w->n_items));
    for (uint32_t i = 0; i < w->n_items; i++) {
        const proto_score_item_t *it = &w->items[i];
        TRY(msgpack_pack_map(pk, IT__N));
        TRY(proto__pack_key(pk, "prompt_index"));
        TRY(msgpack_pack_uint32(pk, it->prompt_index));
        TRY(proto__pack_key(pk, "sample_index"));
        TRY(msgpack_pack_uint32(pk, it->sample_index));
        TRY(proto__pack_key(pk, "prompt_id"));
        TRY(msgpack_pack_uint64(pk, it->prompt_id));
        TRY(proto__pack_key(pk, "prompt"));
        TRY(proto__pack_le32(pk, it->prompt, it->n_prompt));
        TRY(proto__pack_key(pk, "completion"));
        TRY(proto__pack_le32(pk, it->completion, it->n_completion));
        TRY(proto__pack_key(pk, "finish"));
        TRY(msgpack_pack_uint32(pk, it->finish));
    }
    return 0;
}
