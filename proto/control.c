/*
 * control.c - the small control messages: hello, heartbeat, bye, stats,
 * work_request and score_request (PROTOCOL.md "Control messages").
 */
#include <string.h>

#include "proto/proto_int.h"

#define TRY PROTO__TRY

/* ---- hello ---- */

static const char *const hello_keys[] = {"role", "caps", "software", "weights_version"};
enum { HE_ROLE, HE_CAPS, HE_SOFTWARE, HE_WV, HE__N };

int proto__dec_hello(proto__dec_t *d, const msgpack_object *body, proto_msg_t *m) {
    const msgpack_object *v[HE__N];
    proto_hello_t *h = &m->hello;
    TRY(proto__fields(d, body, hello_keys, HE__N, 1u << HE_ROLE, v));
    const char *role;
    TRY(proto__get_str(d, v[HE_ROLE], "role", PROTO_MAX_NAME, &role));
    for (uint32_t r = PROTO_ROLE_ACTOR; r <= PROTO_ROLE_LEARNER; r++)
        if (strcmp(role, proto_role_name(r)) == 0) h->role = r;
    if (!h->role)
        return proto__fail(&d->c, PROTO_REJECT_OUT_OF_RANGE, "role", "'%s' is not actor, reward or learner", role);
    if (v[HE_CAPS]) {
        const msgpack_object *a;
        uint32_t n;
        TRY(proto__get_array(d, v[HE_CAPS], "caps", PROTO_MAX_CAPS, &a, &n));
        const char **caps = n ? proto__alloc(d, sizeof(char *) * n) : NULL;
        if (n && !caps) return -1;
        proto__push(&d->c, "caps");
        for (uint32_t i = 0; i < n; i++) {
            proto__index(&d->c, i);
            TRY(proto__get_str(d, &a[i], NULL, PROTO_MAX_NAME, &caps[i]));
        }
        proto__pop(&d->c);
        h->caps = caps;
        h->n_caps = n;
    }
    h->software = "";
    if (v[HE_SOFTWARE]) TRY(proto__get_str(d, v[HE_SOFTWARE], "software", PROTO_MAX_NAME, &h->software));
    if (v[HE_WV]) TRY(proto__get_u64(d, v[HE_WV], "weights_version", &h->weights_version));
    return 0;
}

int proto__check_hello(proto__ctx_t *c, const proto_msg_t *m) {
    const proto_hello_t *h = &m->hello;
    if (!proto_role_name(h->role))
        return proto__fail(c, PROTO_REJECT_OUT_OF_RANGE, "role", "%u is not actor (1), reward (2) or learner (3)",
                           h->role);
    if (h->n_caps > PROTO_MAX_CAPS)
        return proto__fail(c, PROTO_REJECT_TOO_LARGE, "caps", "%u entries, limit %u", h->n_caps, PROTO_MAX_CAPS);
    if (h->n_caps && !h->caps)
        return proto__fail(c, PROTO_REJECT_BAD_LENGTH, "caps", "%u entries but no array", h->n_caps);
    proto__push(c, "caps");
    for (uint32_t i = 0; i < h->n_caps; i++) {
        proto__index(c, i);
        TRY(proto__check_str(c, NULL, h->caps[i], 1, PROTO_MAX_NAME, PROTO__CS_NAME));
    }
    proto__pop(c);
    return proto__check_str(c, "software", h->software, 0, PROTO_MAX_NAME, PROTO__CS_TEXT);
}

size_t proto__bound_hello(const proto_msg_t *m) {
    const proto_hello_t *h = &m->hello;
    size_t b = 16 + 4 * PROTO__FIELD + PROTO_MAX_NAME + proto__bound_str(h->software);
    for (uint32_t i = 0; i < h->n_caps; i++) b += proto__bound_str(h->caps[i]);
    return b;
}

int proto__pack_hello(msgpack_packer *pk, const proto_msg_t *m) {
    const proto_hello_t *h = &m->hello;
    int has_sw = h->software && h->software[0];
    TRY(msgpack_pack_map(pk, 2 + (size_t)has_sw + (h->weights_version != 0)));
    TRY(proto__pack_key(pk, "role"));
    TRY(proto__pack_str(pk, proto_role_name(h->role)));
    TRY(proto__pack_key(pk, "caps"));
    TRY(msgpack_pack_array(pk, h->n_caps));
    for (uint32_t i = 0; i < h->n_caps; i++) TRY(proto__pack_str(pk, h->caps[i]));
    if (has_sw) {
        TRY(proto__pack_key(pk, "software"));
        TRY(proto__pack_str(pk, h->software));
    }
    if (h->weights_version) {
        TRY(proto__pack_key(pk, "weights_version"));
        TRY(msgpack_pack_uint64(pk, h->weights_version));
    }
    return 0;
}

/* ---- heartbeat ---- */

static const char *const heartbeat_keys[] = {"in_flight", "weights_version"};
enum { HB_INFLIGHT, HB_WV, HB__N };

int proto__dec_heartbeat(proto__dec_t *d, const msgpack_object *body, proto_msg_t *m) {
    const msgpack_object *v[HB__N];
    TRY(proto__fields(d, body, heartbeat_keys, HB__N, 0, v));
    if (v[HB_INFLIGHT]) TRY(proto__get_u32(d, v[HB_INFLIGHT], "in_flight", &m->heartbeat.in_flight));
    if (v[HB_WV]) TRY(proto__get_u64(d, v[HB_WV], "weights_version", &m->heartbeat.weights_version));
    return 0;
}

int proto__check_heartbeat(proto__ctx_t *c, const proto_msg_t *m) {
    (void)c, (void)m;
    return 0;
}

size_t proto__bound_heartbeat(const proto_msg_t *m) {
    (void)m;
    return 8 + 2 * PROTO__FIELD;
}

int proto__pack_heartbeat(msgpack_packer *pk, const proto_msg_t *m) {
    TRY(msgpack_pack_map(pk, 2));
    TRY(proto__pack_key(pk, "in_flight"));
    TRY(msgpack_pack_uint32(pk, m->heartbeat.in_flight));
    TRY(proto__pack_key(pk, "weights_version"));
    TRY(msgpack_pack_uint64(pk, m->heartbeat.weights_version));
    return 0;
}

/* ---- bye ---- */

static const char *const bye_keys[] = {"reason"};

int proto__dec_bye(proto__dec_t *d, const msgpack_object *body, proto_msg_t *m) {
    const msgpack_object *v[1];
    TRY(proto__fields(d, body, bye_keys, 1, 0, v));
    m->bye.reason = "";
    if (v[0]) TRY(proto__get_str(d, v[0], "reason", PROTO_MAX_REASON, &m->bye.reason));
    return 0;
}

int proto__check_bye(proto__ctx_t *c, const proto_msg_t *m) {
    return proto__check_str(c, "reason", m->bye.reason, 0, PROTO_MAX_REASON, PROTO__CS_TEXT);
}

size_t proto__bound_bye(const proto_msg_t *m) {
    return 8 + PROTO__FIELD + proto__bound_str(m->bye.reason);
}

int proto__pack_bye(msgpack_packer *pk, const proto_msg_t *m) {
    int has = m->bye.reason && m->bye.reason[0];
    TRY(msgpack_pack_map(pk, (size_t)has));
    if (has) {
        TRY(proto__pack_key(pk, "reason"));
        TRY(proto__pack_str(pk, m->bye.reason));
    }
    return 0;
}

/* ---- stats ---- */

static const char *const stats_keys[] = {"values"};

int proto__dec_stats(proto__dec_t *d, const msgpack_object *body, proto_msg_t *m) {
    const msgpack_object *v[1];
    TRY(proto__fields(d, body, stats_keys, 1, 1u, v));
    return proto__get_named(d, v[0], "values", PROTO_MAX_STATS, PROTO_REJECT_OUT_OF_RANGE, &m->stats.values,
                            &m->stats.n_values);
}

int proto__check_stats(proto__ctx_t *c, const proto_msg_t *m) {
    return proto__check_named(c, "values", m->stats.values, m->stats.n_values, PROTO_MAX_STATS,
                              PROTO_REJECT_OUT_OF_RANGE);
}

size_t proto__bound_stats(const proto_msg_t *m) {
    size_t b = 8 + PROTO__FIELD;
    for (uint32_t i = 0; i < m->stats.n_values; i++) b += proto__bound_str(m->stats.values[i].name) + PROTO__HDR;
    return b;
}

int proto__pack_stats(msgpack_packer *pk, const proto_msg_t *m) {
    TRY(msgpack_pack_map(pk, 1));
    TRY(proto__pack_key(pk, "values"));
    return proto__pack_named(pk, m->stats.values, m->stats.n_values);
}

/* ---- work_request and score_request ---- */

static const char *const request_keys[] = {"credit", "weights_version"};
enum { RQ_CREDIT, RQ_WV, RQ__N };

static int dec_request(proto__dec_t *d, const msgpack_object *body, proto_work_request_t *r, int with_version) {
    const msgpack_object *v[RQ__N];
    TRY(proto__fields(d, body, request_keys, with_version ? RQ__N : 1, with_version ? 3u : 1u, v));
    TRY(proto__get_u32(d, v[RQ_CREDIT], "credit", &r->credit));
    if (with_version) TRY(proto__get_u64(d, v[RQ_WV], "weights_version", &r->weights_version));
    return 0;
}

static int pack_request(msgpack_packer *pk, const proto_work_request_t *r, int with_version) {
    TRY(msgpack_pack_map(pk, with_version ? 2 : 1));
    TRY(proto__pack_key(pk, "credit"));
    TRY(msgpack_pack_uint32(pk, r->credit));
    if (with_version) {
        TRY(proto__pack_key(pk, "weights_version"));
        TRY(msgpack_pack_uint64(pk, r->weights_version));
    }
    return 0;
}

int proto__dec_work_request(proto__dec_t *d, const msgpack_object *body, proto_msg_t *m) {
    return dec_request(d, body, &m->work_request, 1);
}

int proto__check_work_request(proto__ctx_t *c, const proto_msg_t *m) {
    return proto__check_range(c, "credit", m->work_request.credit, 1, PROTO_MAX_CREDIT);
}

size_t proto__bound_work_request(const proto_msg_t *m) {
    (void)m;
    return 8 + 2 * PROTO__FIELD;
}

int proto__pack_work_request(msgpack_packer *pk, const proto_msg_t *m) {
    return pack_request(pk, &m->work_request, 1);
}

int proto__dec_score_request(proto__dec_t *d, const msgpack_object *body, proto_msg_t *m) {
    return dec_request(d, body, &m->score_request, 0);
}

int proto__check_score_request(proto__ctx_t *c, const proto_msg_t *m) {
    return proto__check_range(c, "credit", m->score_request.credit, 1, PROTO_MAX_CREDIT);
}

size_t proto__bound_score_request(const proto_msg_t *m) {
    (void)m;
    return 8 + PROTO__FIELD;
}

int proto__pack_score_request(msgpack_packer *pk, const proto_msg_t *m) {
    return pack_request(pk, &m->score_request, 0);
}
