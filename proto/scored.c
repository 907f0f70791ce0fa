/*
 * scored.c - scored rollouts (reward worker -> learner): per sample a
 * scalar reward, named components and optional reference log-probs
 * (PROTOCOL.md "scored").
 */
#include <math.h>
#include <string.h>

#include "proto/proto_int.h"

#define TRY PROTO__TRY

static const char *const scored_keys[] = {"ticket", "samples"};
enum { SC_TICKET, SC_SAMPLES, SC__N };

static const char *const ss_keys[] = {"prompt_index", "sample_index", "reward",
                                      "components",   "ref_logprobs", "score_us"};
enum { SS_PI, SS_SI, SS_REWARD, SS_COMPONENTS, SS_REF, SS_US, SS__N };
#define SS_REQUIRED (1u << SS_PI | 1u << SS_SI | 1u << SS_REWARD)

int proto__dec_scored(proto__dec_t *d, const msgpack_object *body, proto_msg_t *m) {
    const msgpack_object *v[SC__N], *a;
    uint32_t n;
    TRY(proto__fields(d, body, scored_keys, SC__N, 3u, v));
    TRY(proto__get_u64(d, v[SC_TICKET], "ticket", &m->scored.ticket));
    TRY(proto__get_array(d, v[SC_SAMPLES], "samples", PROTO_MAX_SAMPLES, &a, &n));
    proto_scored_sample_t *s = n ? proto__alloc(d, sizeof(*s) * n) : NULL;
    if (n && !s) return -1;
    proto__push(&d->c, "samples");
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *sv[SS__N];
        proto__index(&d->c, i);
        memset(&s[i], 0, sizeof(s[i]));
        TRY(proto__fields(d, &a[i], ss_keys, SS__N, SS_REQUIRED, sv));
        TRY(proto__get_u32(d, sv[SS_PI], "prompt_index", &s[i].prompt_index));
        TRY(proto__get_u32(d, sv[SS_SI], "sample_index", &s[i].sample_index));
        TRY(proto__get_f64(d, sv[SS_REWARD], "reward", &s[i].reward));
        if (sv[SS_COMPONENTS])
            TRY(proto__get_named(d, sv[SS_COMPONENTS], "components", PROTO_MAX_COMPONENTS, PROTO_REJECT_NAN_REWARD,
                                 &s[i].components, &s[i].n_components));
        if (sv[SS_REF] && sv[SS_REF]->type != MSGPACK_OBJECT_NIL) {
            void *p;
            TRY(proto__get_le32(d, sv[SS_REF], "ref_logprobs", PROTO_MAX_TOKENS, &p, &s[i].n_ref));
            s[i].ref_logprobs = p;
        }
        if (sv[SS_US]) TRY(proto__get_u64(d, sv[SS_US], "score_us", &s[i].score_us));
    }
    proto__pop(&d->c);
    m->scored.samples = s;
    m->scored.n_samples = n;
    return 0;
}

int proto__check_scored(proto__ctx_t *c, const proto_msg_t *m) {
    const proto_scored_t *r = &m->scored;
    if (r->n_samples > PROTO_MAX_SAMPLES)
        return proto__fail(c, PROTO_REJECT_TOO_LARGE, "samples", "%u samples, limit %u", r->n_samples,
                           PROTO_MAX_SAMPLES);
    if (r->n_samples == 0 || !r->samples)
        return proto__fail(c, PROTO_REJECT_BAD_LENGTH, "samples", "at least one sample needed");
    proto__push(c, "samples");
    for (uint32_t i = 0; i < r->n_samples; i++) {
        const proto_scored_sample_t *s = &r->samples[i];
        proto__index(c, i);
        TRY(proto__check_range(c, "prompt_index", s->prompt_index, 0, PROTO_MAX_PROMPTS - 1));
        TRY(proto__check_range(c, "sample_index", s->sample_index, 0, PROTO_MAX_K - 1));
        if (!isfinite(s->reward))
            return proto__fail(c, PROTO_REJECT_NAN_REWARD, "reward", "%s", isnan(s->reward) ? "NaN" : "infinite");
        TRY(proto__check_named(c, "components", s->components, s->n_components, PROTO_MAX_COMPONENTS,
                               PROTO_REJECT_NAN_REWARD));
        if (s->n_ref > PROTO_MAX_TOKENS)
            return proto__fail(c, PROTO_REJECT_TOO_LARGE, "ref_logprobs", "%u values, limit %u", s->n_ref,
                               PROTO_MAX_TOKENS);
        TRY(proto__check_floats(c, "ref_logprobs", s->ref_logprobs, s->n_ref, PROTO_REJECT_NAN_LOGPROB));
    }
    proto__pop(c);
    return 0;
}

size_t proto__bound_scored(const proto_msg_t *m) {
    const proto_scored_t *r = &m->scored;
    size_t b = 16 + SC__N * PROTO__FIELD;
    for (uint32_t i = 0; i < r->n_samples; i++) {
        const proto_scored_sample_t *s = &r->samples[i];
        b += 8 + SS__N * PROTO__FIELD + 4 * (size_t)s->n_ref;
        for (uint32_t j = 0; j < s->n_components; j++) b += proto__bound_str(s->components[j].name) + PROTO__HDR;
    }
    return b;
}

int proto__pack_scored(msgpack_packer *pk, const proto_msg_t *m) {
    const proto_scored_t *r = &m->scored;
    TRY(msgpack_pack_map(pk, 2));
    TRY(proto__pack_key(pk, "ticket"));
    TRY(msgpack_pack_uint64(pk, r->ticket));
    TRY(proto__pack_key(pk, "samples"));
    TRY(msgpack_pack_array(pk, r->n_samples));
    for (uint32_t i = 0; i < r->n_samples; i++) {
        const proto_scored_sample_t *s = &r->samples[i];
        size_t nf = 3 + (size_t)(s->n_components > 0) + (size_t)(s->n_ref > 0) + (size_t)(s->score_us != 0);
        TRY(msgpack_pack_map(pk, nf));
        TRY(proto__pack_key(pk, "prompt_index"));
        TRY(msgpack_pack_uint32(pk, s->prompt_index));
        TRY(proto__pack_key(pk, "sample_index"));
        TRY(msgpack_pack_uint32(pk, s->sample_index));
        TRY(proto__pack_key(pk, "reward"));
        TRY(msgpack_pack_double(pk, s->reward));
        if (s->n_components) {
            TRY(proto__pack_key(pk, "components"));
            TRY(proto__pack_named(pk, s->components, s->n_components));
        }
        if (s->n_ref) {
            TRY(proto__pack_key(pk, "ref_logprobs"));
            TRY(proto__pack_le32(pk, s->ref_logprobs, s->n_ref));
        }
        if (s->score_us) {
            TRY(proto__pack_key(pk, "score_us"));
            TRY(msgpack_pack_uint64(pk, s->score_us));
        }
    }
    return 0;
}
