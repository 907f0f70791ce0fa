/*
 * reject.c - names of types, roles and reject reasons; per-reason counters
 * with the "log once per reason per minute" rule.
 */
#include <string.h>

#include "proto/proto.h"

const char *proto_type_name(uint32_t type) {
    switch (type) {
#define PROTO__TYPE_STR(name, code, id)                                                                                \
    case code: return #id;
        PROTO_TYPE_MAP(PROTO__TYPE_STR)
#undef PROTO__TYPE_STR
    default: return NULL;
    }
}

const char *proto_reject_reason_name(proto_reject_t r) {
    switch (r) {
#define PROTO__REJECT_STR(name, str)                                                                                   \
    case PROTO_REJECT_##name: return str;
        PROTO_REJECT_MAP(PROTO__REJECT_STR)
#undef PROTO__REJECT_STR
    default: return "unknown";
    }
}

const char *proto_role_name(uint32_t role) {
    switch (role) {
    case PROTO_ROLE_ACTOR: return "actor";
    case PROTO_ROLE_REWARD: return "reward";
    case PROTO_ROLE_LEARNER: return "learner";
    default: return NULL;
    }
}

#define PROTO__LOG_EVERY_S 60.0

void proto_rejects_init(proto_rejects_t *r) {
    memset(r->n, 0, sizeof(r->n));
    for (int i = 0; i < PROTO_REJECT__COUNT; i++) r->last_log[i] = -1.0;
}

int proto_rejects_note(proto_rejects_t *r, proto_reject_t why, double now_s) {
    if ((int)why <= PROTO_REJECT_NONE || why >= PROTO_REJECT__COUNT) return 0;
    r->n[why]++;
    if (r->last_log[why] >= 0.0 && now_s - r->last_log[why] < PROTO__LOG_EVERY_S) return 0;
    r->last_log[why] = now_s < 0.0 ? 0.0 : now_s;
    return 1;
}

uint64_t proto_rejects_total(const proto_rejects_t *r) {
    uint64_t t = 0;
    for (int i = 0; i < PROTO_REJECT__COUNT; i++) t += r->n[i];
    return t;
}
