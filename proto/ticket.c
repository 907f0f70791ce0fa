/*
 * ticket.c - the ticket: prompts (token arrays as bin of int32 LE),
 * sampling parameters, samples per prompt, policy version and deadline
 * (PROTOCOL.md "ticket").
 */
#include <math.h>
#include <string.h>

#include "proto/proto_int.h"

#define TRY PROTO__TRY

static const char *const ticket_keys[] = {"ticket", "policy_version", "k",      "deadline_ms",
                                          "task",   "sampling",       "prompts"};
enum { TK_TICKET, TK_POLICY, TK_K, TK_DEADLINE, TK_TASK, TK_SAMPLING, TK_PROMPTS, TK__N };
#define TK_REQUIRED                                                                                                    \
    (1u << TK_TICKET | 1u << TK_POLICY | 1u << TK_K | 1u << TK_DEADLINE | 1u << TK_SAMPLING | 1u << TK_PROMPTS)

static const char *const sampling_keys[] = {"temperature", "top_k", "top_p", "max_new_tokens", "stop", "seed"};
enum { SP_TEMP, SP_TOPK, SP_TOPP, SP_MAXNEW, SP_STOP, SP_SEED, SP__N };
#define SP_REQUIRED (1u << SP_TEMP | 1u << SP_MAXNEW | 1u << SP_SEED)

static const char *const prompt_keys[] = {"id", "tokens"};
enum { PR_ID, PR_TOKENS, PR__N };

static int dec_sampling(proto__dec_t *d, const msgpack_object *o, proto_sampling_t *s) {
    const msgpack_object *v[SP__N];
    proto__push(&d->c, "sampling");
    TRY(proto__fields(d, o, sampling_keys, SP__N, SP_REQUIRED, v));
    TRY(proto__get_f32(d, v[SP_TEMP], "temperature", &s->temperature));
    s->top_k = 0;
    if (v[SP_TOPK]) TRY(proto__get_u32(d, v[SP_TOPK], "top_k", &s->top_k));
    s->top_p = 1.0f;
    if (v[SP_TOPP]) TRY(proto__get_f32(d, v[SP_TOPP], "top_p", &s->top_p));
    TRY(proto__get_u32(d, v[SP_MAXNEW], "max_new_tokens", &s->max_new_tokens));
    s->n_stop = 0;
    if (v[SP_STOP]) {
        void *p;
        TRY(proto__get_le32(d, v[SP_STOP], "stop", PROTO_MAX_STOP, &p, &s->n_stop));
        if (s->n_stop) memcpy(s->stop, p, sizeof(int32_t) * s->n_stop);
    }
    TRY(proto__get_u64(d, v[SP_SEED], "seed", &s->seed));
    proto__pop(&d->c);
    return 0;
}

int proto__dec_ticket(proto__dec_t *d, const msgpack_object *body, proto_msg_t *m) {
    const msgpack_object *v[TK__N];
    proto_ticket_t *t = &m->ticket;
    TRY(proto__fields(d, body, ticket_keys, TK__N, TK_REQUIRED, v));
    TRY(proto__get_u64(d, v[TK_TICKET], "ticket", &t->ticket));
    TRY(proto__get_u64(d, v[TK_POLICY], "policy_version", &t->policy_version));
    TRY(proto__get_u32(d, v[TK_K], "k", &t->k));
    TRY(proto__get_u32(d, v[TK_DEADLINE], "deadline_ms", &t->deadline_ms));
    t->task = "";
    if (v[TK_TASK]) TRY(proto__get_str(d, v[TK_TASK], "task", PROTO_MAX_NAME, &t->task));
    TRY(dec_sampling(d, v[TK_SAMPLING], &t->sampling));
    const msgpack_object *a;
    uint32_t n;
    TRY(proto__get_array(d, v[TK_PROMPTS], "prompts", PROTO_MAX_PROMPTS, &a, &n));
    proto_prompt_t *p = n ? proto__alloc(d, sizeof(*p) * n) : NULL;
    if (n && !p) return -1;
    proto__push(&d->c, "prompts");
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *pv[PR__N];
        void *tok;
        proto__index(&d->c, i);
        TRY(proto__fields(d, &a[i], prompt_keys, PR__N, 3u, pv));
        TRY(proto__get_u64(d, pv[PR_ID], "id", &p[i].id));
        TRY(proto__get_le32(d, pv[PR_TOKENS], "tokens", PROTO_MAX_TOKENS, &tok, &p[i].n_tokens));
        p[i].tokens = tok;
    }
    proto__pop(&d->c);
    t->prompts = p;
    t->n_prompts = n;
    return 0;
}

int proto__check_ticket(proto__ctx_t *c, const proto_msg_t *m) {
    const proto_ticket_t *t = &m->ticket;
    const proto_sampling_t *s = &t->sampling;
    TRY(proto__check_range(c, "k", t->k, 1, PROTO_MAX_K));
    TRY(proto__check_range(c, "deadline_ms", t->deadline_ms, 1, PROTO_MAX_DEADLINE_MS));
    TRY(proto__check_str(c, "task", t->task, 0, PROTO_MAX_NAME, PROTO__CS_NAME));
    proto__push(c, "sampling");
    if (!(s->temperature >= 0.0f && s->temperature <= PROTO_MAX_TEMPERATURE)) /* NaN fails too */
        return proto__fail(c, PROTO_REJECT_OUT_OF_RANGE, "temperature", "%g is outside [0, %g]", (double)s->temperature,
                           (double)PROTO_MAX_TEMPERATURE);
    if (!(s->top_p > 0.0f && s->top_p <= 1.0f))
        return proto__fail(c, PROTO_REJECT_OUT_OF_RANGE, "top_p", "%g is outside (0, 1]", (double)s->top_p);
    TRY(proto__check_range(c, "top_k", s->top_k, 0, INT32_MAX));
    TRY(proto__check_range(c, "max_new_tokens", s->max_new_tokens, 1, PROTO_MAX_TOKENS));
    TRY(proto__check_tokens(c, "stop", s->stop, s->n_stop, 0, PROTO_MAX_STOP));
    proto__pop(c);
    if (t->n_prompts > PROTO_MAX_PROMPTS)
        return proto__fail(c, PROTO_REJECT_TOO_LARGE, "prompts", "%u prompts, limit %u", t->n_prompts,
                           PROTO_MAX_PROMPTS);
    if (t->n_prompts == 0 || !t->prompts)
        return proto__fail(c, PROTO_REJECT_BAD_LENGTH, "prompts", "a ticket needs at least one prompt");
    if ((uint64_t)t->n_prompts * t->k > PROTO_MAX_SAMPLES)
        return proto__fail(c, PROTO_REJECT_TOO_LARGE, "prompts", "%u prompts x k=%u samples, limit %u", t->n_prompts,
                           t->k, PROTO_MAX_SAMPLES);
    proto__push(c, "prompts");
    for (uint32_t i = 0; i < t->n_prompts; i++) {
        proto__index(c, i);
        TRY(proto__check_tokens(c, "tokens", t->prompts[i].tokens, t->prompts[i].n_tokens, 1, PROTO_MAX_TOKENS));
    }
    proto__pop(c);
    return 0;
}

size_t proto__bound_ticket(const proto_msg_t *m) {
    const proto_ticket_t *t = &m->ticket;
    size_t b = 16 + 7 * PROTO__FIELD + proto__bound_str(t->task) + 8 + 6 * PROTO__FIELD + 4 * PROTO_MAX_STOP;
    for (uint32_t i = 0; i < t->n_prompts; i++) b += 8 + 2 * PROTO__FIELD + 4 * (size_t)t->prompts[i].n_tokens;
    return b;
}

int proto__pack_ticket(msgpack_packer *pk, const proto_msg_t *m) {
    const proto_ticket_t *t = &m->ticket;
    const proto_sampling_t *s = &t->sampling;
    int has_task = t->task && t->task[0];
    TRY(msgpack_pack_map(pk, 6 + (size_t)has_task));
    TRY(proto__pack_key(pk, "ticket"));
    TRY(msgpack_pack_uint64(pk, t->ticket));
    TRY(proto__pack_key(pk, "policy_version"));
    TRY(msgpack_pack_uint64(pk, t->policy_version));
    TRY(proto__pack_key(pk, "k"));
    TRY(msgpack_pack_uint32(pk, t->k));
    TRY(proto__pack_key(pk, "deadline_ms"));
    TRY(msgpack_pack_uint32(pk, t->deadline_ms));
    if (has_task) {
        TRY(proto__pack_key(pk, "task"));
        TRY(proto__pack_str(pk, t->task));
    }
    TRY(proto__pack_key(pk, "sampling"));
    TRY(msgpack_pack_map(pk, 6));
    TRY(proto__pack_key(pk, "temperature"));
    TRY(msgpack_pack_float(pk, s->temperature));
    TRY(proto__pack_key(pk, "top_k"));
    TRY(msgpack_pack_uint32(pk, s->top_k));
    TRY(proto__pack_key(pk, "top_p"));
    TRY(msgpack_pack_float(pk, s->top_p));
    TRY(proto__pack_key(pk, "max_new_tokens"));
    TRY(msgpack_pack_uint32(pk, s->max_new_tokens));
    TRY(proto__pack_key(pk, "stop"));
    TRY(proto__pack_le32(pk, s->stop, s->n_stop));
    TRY(proto__pack_key(pk, "seed"));
    TRY(msgpack_pack_uint64(pk, s->seed));
    TRY(proto__pack_key(pk, "prompts"));
    TRY(msgpack_pack_array(pk, t->n_prompts));
    for (uint32_t i = 0; i < t->n_prompts; i++) {
        TRY(msgpack_pack_map(pk, 2));
        TRY(proto__pack_key(pk, "id"));
        TRY(msgpack_pack_uint64(pk, t->prompts[i].id));
        TRY(proto__pack_key(pk, "tokens"));
        TRY(proto__pack_le32(pk, t->prompts[i].tokens, t->prompts[i].n_tokens));
    }
    return 0;
}
