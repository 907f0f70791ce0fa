/*
 * codec.c - the envelope, the decode arena, typed field readers, the shared
 * semantic checks and the encode buffer. Per-type bodies live in
 * control.c, ticket.c, rollout.c, scored.c and weights.c.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto_int.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define PROTO__BIG_ENDIAN 1
#else
#define PROTO__BIG_ENDIAN 0
#endif

/* ---- error context ---- */

void proto__ctx_init(proto__ctx_t *c, const char *root, int32_t vocab, char *err, size_t errlen) {
    c->why = PROTO_REJECT_NONE;
    c->err = err;
    c->errlen = errlen;
    c->vocab = vocab > 0 && vocab <= PROTO_MAX_VOCAB ? vocab : PROTO_MAX_VOCAB;
    c->root = root;
    c->depth = 0;
    if (err && errlen) err[0] = '\0';
}

void proto__push(proto__ctx_t *c, const char *name) {
    if (c->depth < PROTO__MAX_PATH) c->seg[c->depth].name = name, c->seg[c->depth].idx = -1;
    c->depth++;
}

void proto__index(proto__ctx_t *c, int64_t idx) {
    if (c->depth > 0 && c->depth <= PROTO__MAX_PATH) c->seg[c->depth - 1].idx = idx;
}

void proto__pop(proto__ctx_t *c) {
    if (c->depth > 0) c->depth--;
}

int proto__fail(proto__ctx_t *c, proto_reject_t why, const char *field, const char *fmt, ...) {
    if (c->why != PROTO_REJECT_NONE) return -1; /* keep the first */
    c->why = why;
    if (!c->err || c->errlen == 0) return -1;
    size_t n = 0;
    int w = snprintf(c->err, c->errlen, "%s", c->root ? c->root : "message");
    n = w > 0 ? (size_t)w : 0;
    int depth = c->depth < PROTO__MAX_PATH ? c->depth : PROTO__MAX_PATH;
    for (int i = 0; i < depth && n < c->errlen; i++) {
        if (c->seg[i].idx >= 0)
            w = snprintf(c->err + n, c->errlen - n, ".%s[%lld]", c->seg[i].name, (long long)c->seg[i].idx);
        else
            w = snprintf(c->err + n, c->errlen - n, ".%s", c->seg[i].name);
        n += w > 0 ? (size_t)w : 0;
    }
    if (field && n < c->errlen) {
        w = snprintf(c->err + n, c->errlen - n, ".%s", field);
        n += w > 0 ? (size_t)w : 0;
    }
    if (n < c->errlen) {
        w = snprintf(c->err + n, c->errlen - n, ": ");
        n += w > 0 ? (size_t)w : 0;
    }
    if (n < c->errlen) {
        va_list ap;
        va_start(ap, fmt);
        w = vsnprintf(c->err + n, c->errlen - n, fmt, ap);
        va_end(ap);
        n += w > 0 ? (size_t)w : 0;
    }
    if (n < c->errlen) snprintf(c->err + n, c->errlen - n, " (%s)", proto_reject_reason_name(why));
    return -1;
}

/* ---- arena ---- */

struct proto__block {
    proto__block_t *next;
    size_t size, used;
    _Alignas(16) unsigned char data[];
};

static void arena_free_extra(proto_msg_t *m) {
    proto__block_t *b = m->mem_.extra;
    while (b) {
        proto__block_t *next = b->next;
        free(b);
        b = next;
    }
    m->mem_.extra = NULL;
}

/* Empty the arena and make its main block hold at least `want` bytes, or
 * what the last message needed (so one block serves the steady state). */
static void arena_reset(proto_msg_t *m, size_t want) {
    size_t need = m->mem_.used + m->mem_.extra_bytes;
    arena_free_extra(m);
    m->mem_.used = 0;
    m->mem_.extra_bytes = 0;
    if (need + need / 4 > want) want = need + need / 4;
    want = (want + 4095) & ~(size_t)4095;
    /* grow, or give back a block four times larger than needed (> 1 MiB) */
    if (want > m->mem_.cap || (m->mem_.cap > ((size_t)1 << 20) && m->mem_.cap / 4 > want)) {
        free(m->mem_.base);
        m->mem_.base = malloc(want);
        m->mem_.cap = m->mem_.base ? want : 0;
    }
}

void *proto__alloc(proto__dec_t *d, size_t n) {
    proto_msg_t *m = d->m;
    n = (n + 15) & ~(size_t)15;
    if (n == 0) n = 16;
    if (m->mem_.cap - m->mem_.used >= n) {
        void *p = m->mem_.base + m->mem_.used;
        m->mem_.used += n;
        return p;
    }
    proto__block_t *b = m->mem_.extra;
    if (!b || b->size - b->used < n) {
        size_t size = n > ((size_t)64 << 10) ? n : ((size_t)64 << 10);
        b = malloc(sizeof(*b) + size);
        if (!b) {
            proto__fail(&d->c, PROTO_REJECT_NO_MEMORY, NULL, "cannot allocate %zu bytes", n);
            return NULL;
        }
        b->size = size;
        b->used = 0;
        b->next = m->mem_.extra;
        m->mem_.extra = b;
    }
    void *p = b->data + b->used;
    b->used += n;
    m->mem_.extra_bytes += n;
    return p;
}

/* ---- field readers ---- */

static const char *obj_type_name(const msgpack_object *o) {
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: return "nil";
    case MSGPACK_OBJECT_BOOLEAN: return "bool";
    case MSGPACK_OBJECT_POSITIVE_INTEGER: return "uint";
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: return "negative int";
    case MSGPACK_OBJECT_FLOAT32: return "float32";
    case MSGPACK_OBJECT_FLOAT64: return "float64";
    case MSGPACK_OBJECT_STR: return "str";
    case MSGPACK_OBJECT_ARRAY: return "array";
    case MSGPACK_OBJECT_MAP: return "map";
    case MSGPACK_OBJECT_BIN: return "bin";
    case MSGPACK_OBJECT_EXT: return "ext";
    default: return "unknown";
    }
}

int proto__fields(proto__dec_t *d, const msgpack_object *map, const char *const *names, int n, uint32_t required,
                  const msgpack_object **vals) {
    for (int i = 0; i < n; i++) vals[i] = NULL;
    if (map->type != MSGPACK_OBJECT_MAP)
        return proto__fail(&d->c, PROTO_REJECT_WRONG_TYPE, NULL, "expected a map, got %s", obj_type_name(map));
    const msgpack_object_kv *kv = map->via.map.ptr;
    for (uint32_t j = 0; j < map->via.map.size; j++) {
        const msgpack_object *k = &kv[j].key;
        if (k->type != MSGPACK_OBJECT_STR)
            return proto__fail(&d->c, PROTO_REJECT_WRONG_TYPE, NULL, "map key %u is a %s, not a str", j,
                               obj_type_name(k));
        uint32_t ks = k->via.str.size;
        for (int i = 0; i < n; i++) {
            /* strnlen bounds the read of the name: keys may hold NUL bytes */
            if (ks && names[i][0] == k->via.str.ptr[0] && strnlen(names[i], ks + 1) == ks &&
                memcmp(names[i], k->via.str.ptr, ks) == 0) {
                if (vals[i]) return proto__fail(&d->c, PROTO_REJECT_DUPLICATE_FIELD, names[i], "key appears twice");
                vals[i] = &kv[j].val;
                break;
            }
        }
        /* unknown keys are ignored: forward compatibility within a version */
    }
    for (int i = 0; i < n; i++)
        if ((required >> i & 1u) && !vals[i])
            return proto__fail(&d->c, PROTO_REJECT_MISSING_FIELD, names[i], "required field is missing");
    return 0;
}

int proto__get_u64(proto__dec_t *d, const msgpack_object *o, const char *f, uint64_t *out) {
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        *out = o->via.u64;
        return 0;
    }
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        return proto__fail(&d->c, PROTO_REJECT_NEGATIVE_COUNT, f, "%lld is negative", (long long)o->via.i64);
    return proto__fail(&d->c, PROTO_REJECT_WRONG_TYPE, f, "expected an unsigned integer, got %s", obj_type_name(o));
}

int proto__get_u32(proto__dec_t *d, const msgpack_object *o, const char *f, uint32_t *out) {
    uint64_t v = 0;
    if (proto__get_u64(d, o, f, &v) < 0) return -1;
    if (v > UINT32_MAX)
        return proto__fail(&d->c, PROTO_REJECT_OUT_OF_RANGE, f, "%llu does not fit in 32 bits", (unsigned long long)v);
    *out = (uint32_t)v;
    return 0;
}

int proto__get_f64(proto__dec_t *d, const msgpack_object *o, const char *f, double *out) {
    switch (o->type) {
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: *out = o->via.f64; return 0;
    case MSGPACK_OBJECT_POSITIVE_INTEGER: *out = (double)o->via.u64; return 0;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: *out = (double)o->via.i64; return 0;
    default: return proto__fail(&d->c, PROTO_REJECT_WRONG_TYPE, f, "expected a number, got %s", obj_type_name(o));
    }
}

int proto__get_f32(proto__dec_t *d, const msgpack_object *o, const char *f, float *out) {
    double x = 0.0;
    if (proto__get_f64(d, o, f, &x) < 0) return -1;
    *out = x > FLT_MAX ? INFINITY : x < -FLT_MAX ? -INFINITY : (float)x;
    return 0;
}

int proto__get_bool(proto__dec_t *d, const msgpack_object *o, const char *f, uint32_t *out) {
    if (o->type != MSGPACK_OBJECT_BOOLEAN)
        return proto__fail(&d->c, PROTO_REJECT_WRONG_TYPE, f, "expected a bool, got %s", obj_type_name(o));
    *out = o->via.boolean ? 1u : 0u;
    return 0;
}

int proto__get_str(proto__dec_t *d, const msgpack_object *o, const char *f, size_t maxlen, const char **out) {
    if (o->type != MSGPACK_OBJECT_STR)
        return proto__fail(&d->c, PROTO_REJECT_WRONG_TYPE, f, "expected a str, got %s", obj_type_name(o));
    size_t n = o->via.str.size;
    if (n > maxlen) return proto__fail(&d->c, PROTO_REJECT_TOO_LARGE, f, "%zu bytes, limit %zu", n, maxlen);
    if (n && memchr(o->via.str.ptr, 0, n)) return proto__fail(&d->c, PROTO_REJECT_BAD_STRING, f, "contains a NUL byte");
    char *s = proto__alloc(d, n + 1);
    if (!s) return -1;
    if (n) memcpy(s, o->via.str.ptr, n);
    s[n] = '\0';
    *out = s;
    return 0;
}

static void copy_le32(void *dst, const void *src, size_t n) {
#if PROTO__BIG_ENDIAN
    const unsigned char *s = src;
    uint32_t *o = dst;
    for (size_t i = 0; i < n; i++)
        o[i] = (uint32_t)s[4 * i] | (uint32_t)s[4 * i + 1] << 8 | (uint32_t)s[4 * i + 2] << 16 |
               (uint32_t)s[4 * i + 3] << 24;
#else
    memcpy(dst, src, n * 4);
#endif
}

int proto__get_le32(proto__dec_t *d, const msgpack_object *o, const char *f, uint32_t maxn, void **out, uint32_t *n) {
    if (o->type != MSGPACK_OBJECT_BIN)
        return proto__fail(&d->c, PROTO_REJECT_WRONG_TYPE, f, "expected a bin, got %s", obj_type_name(o));
    uint32_t bytes = o->via.bin.size;
    if (bytes % 4) return proto__fail(&d->c, PROTO_REJECT_BAD_LENGTH, f, "%u bytes is not a multiple of 4", bytes);
    if (bytes / 4 > maxn)
        return proto__fail(&d->c, PROTO_REJECT_TOO_LARGE, f, "%u elements, limit %u", bytes / 4, maxn);
    *n = bytes / 4;
    *out = NULL;
    if (bytes == 0) return 0;
    void *p = proto__alloc(d, bytes);
    if (!p) return -1;
    copy_le32(p, o->via.bin.ptr, bytes / 4);
    *out = p;
    return 0;
}

int proto__get_array(proto__dec_t *d, const msgpack_object *o, const char *f, uint32_t maxn, const msgpack_object **arr,
                     uint32_t *n) {
    if (o->type != MSGPACK_OBJECT_ARRAY)
        return proto__fail(&d->c, PROTO_REJECT_WRONG_TYPE, f, "expected an array, got %s", obj_type_name(o));
    if (o->via.array.size > maxn)
        return proto__fail(&d->c, PROTO_REJECT_TOO_LARGE, f, "%u elements, limit %u", o->via.array.size, maxn);
    *arr = o->via.array.ptr;
    *n = o->via.array.size;
    return 0;
}

int proto__get_named(proto__dec_t *d, const msgpack_object *o, const char *f, uint32_t maxn, proto_reject_t nan_reason,
                     const proto_named_t **out, uint32_t *n) {
    if (o->type != MSGPACK_OBJECT_MAP)
        return proto__fail(&d->c, PROTO_REJECT_WRONG_TYPE, f, "expected a map, got %s", obj_type_name(o));
    uint32_t cnt = o->via.map.size;
    if (cnt > maxn) return proto__fail(&d->c, PROTO_REJECT_TOO_LARGE, f, "%u entries, limit %u", cnt, maxn);
    proto_named_t *v = NULL;
    if (cnt) {
        v = proto__alloc(d, sizeof(*v) * cnt);
        if (!v) return -1;
    }
    proto__push(&d->c, f);
    for (uint32_t i = 0; i < cnt; i++) {
        const msgpack_object_kv *kv = &o->via.map.ptr[i];
        proto__index(&d->c, i);
        if (proto__get_str(d, &kv->key, "name", PROTO_MAX_NAME, &v[i].name) < 0 ||
            proto__get_f64(d, &kv->val, "value", &v[i].value) < 0)
            return -1;
    }
    proto__pop(&d->c);
    *out = v;
    *n = cnt;
    return proto__check_named(&d->c, f, v, cnt, maxn, nan_reason);
}

/* ---- semantic checks ---- */

int proto__check_range(proto__ctx_t *c, const char *f, uint64_t v, uint64_t lo, uint64_t hi) {
    if (v < lo || v > hi)
        return proto__fail(c, PROTO_REJECT_OUT_OF_RANGE, f, "%llu is outside [%llu, %llu]", (unsigned long long)v,
                           (unsigned long long)lo, (unsigned long long)hi);
    return 0;
}

int proto__check_str(proto__ctx_t *c, const char *f, const char *s, size_t minlen, size_t maxlen, int cs) {
    if (!s) s = "";
    size_t n = strnlen(s, maxlen + 1);
    if (n > maxlen) return proto__fail(c, PROTO_REJECT_TOO_LARGE, f, "longer than %zu bytes", maxlen);
    if (n < minlen) return proto__fail(c, PROTO_REJECT_BAD_STRING, f, "empty");
    unsigned char lo = cs == PROTO__CS_TEXT ? 0x20 : 0x21;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < lo || ch > 0x7e)
            return proto__fail(c, PROTO_REJECT_BAD_STRING, f, "byte 0x%02x at %zu is not printable ASCII%s", ch, i,
                               cs == PROTO__CS_TEXT ? "" : " without spaces");
    }
    return 0;
}

int proto__check_tokens(proto__ctx_t *c, const char *f, const int32_t *t, uint32_t n, uint32_t minn, uint32_t maxn) {
    if (n > maxn) return proto__fail(c, PROTO_REJECT_TOO_LARGE, f, "%u tokens, limit %u", n, maxn);
    if (n < minn) return proto__fail(c, PROTO_REJECT_BAD_LENGTH, f, "%u tokens, at least %u needed", n, minn);
    if (n > 0 && !t) return proto__fail(c, PROTO_REJECT_BAD_LENGTH, f, "%u tokens but no array", n);
    uint32_t vocab = (uint32_t)c->vocab, bad = 0;
    for (uint32_t i = 0; i < n; i++) bad |= (uint32_t)t[i] >= vocab; /* negative ids wrap high */
    if (bad)
        for (uint32_t i = 0; i < n; i++)
            if ((uint32_t)t[i] >= vocab)
                return proto__fail(c, PROTO_REJECT_BAD_TOKEN, f, "token %u is %d, outside [0, %u)", i, (int)t[i],
                                   vocab);
    return 0;
}

int proto__check_floats(proto__ctx_t *c, const char *f, const float *x, uint32_t n, proto_reject_t why) {
    if (n > 0 && !x) return proto__fail(c, PROTO_REJECT_BAD_LENGTH, f, "%u values but no array", n);
    uint32_t bad = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        bad |= (u & 0x7f800000u) == 0x7f800000u;
    }
    if (bad)
        for (uint32_t i = 0; i < n; i++)
            if (!isfinite(x[i])) return proto__fail(c, why, f, "value %u is %s", i, isnan(x[i]) ? "NaN" : "infinite");
    return 0;
}

int proto__check_named(proto__ctx_t *c, const char *f, const proto_named_t *v, uint32_t n, uint32_t maxn,
                       proto_reject_t nan_reason) {
    if (n > maxn) return proto__fail(c, PROTO_REJECT_TOO_LARGE, f, "%u entries, limit %u", n, maxn);
    if (n > 0 && !v) return proto__fail(c, PROTO_REJECT_BAD_LENGTH, f, "%u entries but no array", n);
    proto__push(c, f);
    for (uint32_t i = 0; i < n; i++) {
        proto__index(c, i);
        if (proto__check_str(c, "name", v[i].name, 1, PROTO_MAX_NAME, PROTO__CS_NAME) < 0) return -1;
        if (!isfinite(v[i].value))
            return proto__fail(c, nan_reason, v[i].name, "%s", isnan(v[i].value) ? "NaN" : "infinite");
        for (uint32_t j = 0; j < i; j++)
            if (strcmp(v[j].name, v[i].name) == 0)
                return proto__fail(c, PROTO_REJECT_DUPLICATE_FIELD, v[i].name, "name appears twice");
    }
    proto__pop(c);
    return 0;
}

/* ---- packing ---- */

size_t proto__bound_str(const char *s) {
    return 5 + (s ? strlen(s) : 0);
}

int proto__pack_str(msgpack_packer *pk, const char *s) {
    if (!s) s = "";
    return msgpack_pack_str_with_body(pk, s, strlen(s));
}

int proto__pack_le32(msgpack_packer *pk, const void *words, uint32_t n) {
    if (msgpack_pack_bin(pk, (size_t)n * 4) != 0) return -1;
#if PROTO__BIG_ENDIAN
    const uint32_t *w = words;
    unsigned char tmp[1024];
    for (uint32_t i = 0; i < n;) {
        uint32_t k = 0;
        for (; k < sizeof(tmp) / 4 && i < n; k++, i++) {
            tmp[4 * k] = (unsigned char)w[i], tmp[4 * k + 1] = (unsigned char)(w[i] >> 8);
            tmp[4 * k + 2] = (unsigned char)(w[i] >> 16), tmp[4 * k + 3] = (unsigned char)(w[i] >> 24);
        }
        if (msgpack_pack_bin_body(pk, tmp, (size_t)k * 4) != 0) return -1;
    }
    return 0;
#else
    return n ? msgpack_pack_bin_body(pk, words, (size_t)n * 4) : 0;
#endif
}

int proto__pack_named(msgpack_packer *pk, const proto_named_t *v, uint32_t n) {
    if (msgpack_pack_map(pk, n) != 0) return -1;
    for (uint32_t i = 0; i < n; i++)
        if (proto__pack_str(pk, v[i].name) != 0 || msgpack_pack_double(pk, v[i].value) != 0) return -1;
    return 0;
}

/* ---- encode buffer ---- */

void proto_enc_init(proto_enc_t *e) {
    memset(e, 0, sizeof(*e));
}

void proto_enc_fini(proto_enc_t *e) {
    free(e->data);
    memset(e, 0, sizeof(*e));
}

void *proto_enc_release(proto_enc_t *e, size_t *len) {
    void *p = e->data;
    if (len) *len = e->len;
    memset(e, 0, sizeof(*e));
    return p;
}

static int enc_reserve(proto_enc_t *e, size_t extra) {
    if (e->cap - e->len >= extra) return 0;
    size_t want = e->len + extra;
    size_t cap = e->cap ? e->cap : 256;
    while (cap < want) cap = cap > SIZE_MAX / 2 ? want : cap * 2;
    char *p = realloc(e->data, cap);
    if (!p) return -1;
    e->data = p;
    e->cap = cap;
    return 0;
}

static int enc_write(void *data, const char *buf, size_t len) {
    proto_enc_t *e = data;
    if (enc_reserve(e, len) < 0) return -1;
    memcpy(e->data + e->len, buf, len);
    e->len += len;
    return 0;
}

/* ---- per-type dispatch ---- */

static int dec_body(proto__dec_t *d, const msgpack_object *body, proto_msg_t *m) {
    switch (m->type) {
#define PROTO__CASE(name, code, id)                                                                                    \
    case code: return proto__dec_##id(d, body, m);
        PROTO_TYPE_MAP(PROTO__CASE)
#undef PROTO__CASE
    default: return proto__fail(&d->c, PROTO_REJECT_UNKNOWN_TYPE, NULL, "type %u", m->type);
    }
}

static int check_body(proto__ctx_t *c, const proto_msg_t *m) {
    switch (m->type) {
#define PROTO__CASE(name, code, id)                                                                                    \
    case code: return proto__check_##id(c, m);
        PROTO_TYPE_MAP(PROTO__CASE)
#undef PROTO__CASE
    default: return proto__fail(c, PROTO_REJECT_UNKNOWN_TYPE, NULL, "type %u", m->type);
    }
}

static size_t bound_body(const proto_msg_t *m) {
    switch (m->type) {
#define PROTO__CASE(name, code, id)                                                                                    \
    case code: return proto__bound_##id(m);
        PROTO_TYPE_MAP(PROTO__CASE)
#undef PROTO__CASE
    default: return 0;
    }
}

static int pack_body(msgpack_packer *pk, const proto_msg_t *m) {
    switch (m->type) {
#define PROTO__CASE(name, code, id)                                                                                    \
    case code: return proto__pack_##id(pk, m);
        PROTO_TYPE_MAP(PROTO__CASE)
#undef PROTO__CASE
    default: return -1;
    }
}

/* ---- messages ---- */

void proto_msg_init(proto_msg_t *m) {
    memset(m, 0, sizeof(*m));
}

void proto_msg_fini(proto_msg_t *m) {
    arena_free_extra(m);
    free(m->mem_.base);
    memset(m, 0, sizeof(*m));
}

/* Zero envelope and body, keep the arena. */
static void msg_clear(proto_msg_t *m) {
    memset(m, 0, offsetof(proto_msg_t, mem_));
}

rlhf_err_t proto_msg_header(proto_msg_t *m, proto_type_t type, const char *sender, uint64_t seq) {
    msg_clear(m);
    m->type = (uint32_t)type;
    m->version = PROTO_VERSION;
    m->seq = seq;
    if (!sender) sender = "";
    size_t n = strlen(sender);
    if (n > PROTO_MAX_ID) return RLHF_ERANGE;
    memcpy(m->sender, sender, n + 1);
    return RLHF_OK;
}

int proto_msg_equal(const proto_msg_t *a, const proto_msg_t *b) {
    if (a->type != b->type || a->seq != b->seq || strcmp(a->sender, b->sender) != 0) return 0;
    proto_enc_t ea, eb;
    proto_enc_init(&ea);
    proto_enc_init(&eb);
    int eq = proto_encode(&ea, a, NULL, NULL, 0) == RLHF_OK && proto_encode(&eb, b, NULL, NULL, 0) == RLHF_OK &&
             ea.len == eb.len && memcmp(ea.data, eb.data, ea.len) == 0;
    if (eq && a->type == PROTO_WEIGHTS_CHUNK) {
        const proto_weights_chunk_t *x = &a->weights_chunk, *y = &b->weights_chunk;
        if (!x->data || !y->data)
            eq = !x->data && !y->data;
        else
            eq = memcmp(x->data, y->data, x->length) == 0;
    }
    proto_enc_fini(&ea);
    proto_enc_fini(&eb);
    return eq;
}

/* ---- decode ---- */

static rlhf_err_t reject_code(proto_reject_t why) {
    switch (why) {
    case PROTO_REJECT_NONE: return RLHF_OK;
    case PROTO_REJECT_TRUNCATED: return RLHF_ETRUNCATED;
    case PROTO_REJECT_TOO_LARGE: return RLHF_ERANGE;
    case PROTO_REJECT_NO_MEMORY: return RLHF_ENOMEM;
    default: return RLHF_EFORMAT;
    }
}

static rlhf_err_t decode_done(proto__ctx_t *c, proto_reject_t *why) {
    if (why) *why = c->why;
    return reject_code(c->why);
}

static int dec_envelope(proto__dec_t *d, const msgpack_object *env, const proto_decode_opts_t *opts,
                        const msgpack_object **body) {
    proto__ctx_t *c = &d->c;
    proto_msg_t *m = d->m;
    if (env->type != MSGPACK_OBJECT_ARRAY || env->via.array.size != 6)
        return proto__fail(c, PROTO_REJECT_BAD_ENVELOPE, NULL,
                           "expected an array of 6 (magic, version, type, "
                           "sender, seq, body)");
    const msgpack_object *e = env->via.array.ptr;
    if (e[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER || e[0].via.u64 != PROTO_MAGIC)
        return proto__fail(c, PROTO_REJECT_BAD_MAGIC, "magic", "not 0x%08X", PROTO_MAGIC);
    if (e[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER || e[1].via.u64 != PROTO_VERSION)
        return proto__fail(c, PROTO_REJECT_BAD_VERSION, "proto_version", "this receiver speaks version %u",
                           PROTO_VERSION);
    m->version = PROTO_VERSION;
    if (e[2].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return proto__fail(c, PROTO_REJECT_WRONG_TYPE, "type", "expected an unsigned integer, got %s",
                           obj_type_name(&e[2]));
    if (e[2].via.u64 > UINT32_MAX || !proto_type_name((uint32_t)e[2].via.u64))
        return proto__fail(c, PROTO_REJECT_UNKNOWN_TYPE, "type", "%llu is no message type",
                           (unsigned long long)e[2].via.u64);
    m->type = (uint32_t)e[2].via.u64;
    uint64_t accept = opts && opts->accept ? opts->accept : ~0ull;
    if (!(accept >> m->type & 1u))
        return proto__fail(c, PROTO_REJECT_UNEXPECTED_TYPE, "type", "%s is not taken on this socket",
                           proto_type_name(m->type));
    if (e[3].type != MSGPACK_OBJECT_STR)
        return proto__fail(c, PROTO_REJECT_WRONG_TYPE, "sender", "expected a str, got %s", obj_type_name(&e[3]));
    uint32_t n = e[3].via.str.size;
    if (n > PROTO_MAX_ID)
        return proto__fail(c, PROTO_REJECT_TOO_LARGE, "sender", "%u bytes, limit %u", n, PROTO_MAX_ID);
    if (n && memchr(e[3].via.str.ptr, 0, n))
        return proto__fail(c, PROTO_REJECT_BAD_STRING, "sender", "contains a NUL byte");
    memcpy(m->sender, e[3].via.str.ptr, n);
    m->sender[n] = '\0';
    if (proto__check_str(c, "sender", m->sender, 1, PROTO_MAX_ID, PROTO__CS_NAME) < 0) return -1;
    if (proto__get_u64(d, &e[4], "seq", &m->seq) < 0) return -1;
    *body = &e[5];
    return 0;
}

rlhf_err_t proto_decode(proto_msg_t *m, const void *buf, size_t len, const proto_decode_opts_t *opts,
                        proto_reject_t *why, char *err, size_t errlen) {
    proto__dec_t d;
    d.m = m;
    proto__ctx_init(&d.c, "envelope", opts ? opts->vocab_size : 0, err, errlen);
    msg_clear(m);
    if (len > PROTO_MAX_MSG_BYTES) {
        proto__fail(&d.c, PROTO_REJECT_TOO_LARGE, NULL, "%zu bytes, limit %u", len, PROTO_MAX_MSG_BYTES);
        return decode_done(&d.c, why);
    }
    if (!buf || len == 0) {
        proto__fail(&d.c, PROTO_REJECT_TRUNCATED, NULL, "empty frame");
        return decode_done(&d.c, why);
    }
    proto_reject_t r = proto__scan(buf, len, err, errlen);
    if (r != PROTO_REJECT_NONE) {
        d.c.why = r;
        if (err && errlen) {
            size_t n = strlen(err);
            snprintf(err + n, errlen - n, " (%s)", proto_reject_reason_name(r));
        }
        return decode_done(&d.c, why);
    }
    /* decoded data takes at most about the input size plus tables */
    arena_reset(m, len + len / 2 + 1024);
    if (!m->mem_.base) {
        proto__fail(&d.c, PROTO_REJECT_NO_MEMORY, NULL, "cannot allocate the decode arena");
        return decode_done(&d.c, why);
    }
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    msgpack_unpack_return ret = msgpack_unpack_next(&up, buf, len, &off);
    const msgpack_object *body = NULL;
    if (ret == MSGPACK_UNPACK_NOMEM_ERROR) {
        proto__fail(&d.c, PROTO_REJECT_NO_MEMORY, NULL, "msgpack-c could not allocate");
    } else if (ret != MSGPACK_UNPACK_SUCCESS || off != len) {
        proto__fail(&d.c, PROTO_REJECT_MALFORMED, NULL, "msgpack-c refused the message");
    } else if (dec_envelope(&d, &up.data, opts, &body) == 0) {
        d.c.root = proto_type_name(m->type);
        if (body->type != MSGPACK_OBJECT_MAP)
            proto__fail(&d.c, PROTO_REJECT_WRONG_TYPE, NULL, "body: expected a map, got %s", obj_type_name(body));
        else if (dec_body(&d, body, m) == 0)
            check_body(&d.c, m);
    }
    msgpack_unpacked_destroy(&up);
    return decode_done(&d.c, why);
}

rlhf_err_t proto_weights_chunk_attach(proto_msg_t *m, const void *data, size_t len, proto_reject_t *why, char *err,
                                      size_t errlen) {
    proto__ctx_t c;
    proto__ctx_init(&c, "weights_chunk", 0, err, errlen);
    if (m->type != PROTO_WEIGHTS_CHUNK)
        proto__fail(&c, PROTO_REJECT_BAD_FRAMES, NULL, "a data frame belongs to a weights_chunk only");
    else if (len != m->weights_chunk.length)
        proto__fail(&c, PROTO_REJECT_BAD_FRAMES, "data", "frame of %zu bytes, header says %u", len,
                    m->weights_chunk.length);
    else if (len > 0 && !data)
        proto__fail(&c, PROTO_REJECT_BAD_FRAMES, "data", "no data");
    else
        m->weights_chunk.data = len ? data : NULL;
    return decode_done(&c, why);
}

rlhf_err_t proto_decode_frames(proto_msg_t *m, const void *const *frames, const size_t *lens, size_t n,
                               const proto_decode_opts_t *opts, proto_reject_t *why, char *err, size_t errlen) {
    if (n < 1 || n > 2) {
        proto__ctx_t c;
        proto__ctx_init(&c, "message", 0, err, errlen);
        msg_clear(m);
        proto__fail(&c, PROTO_REJECT_BAD_FRAMES, NULL, "%zu frames", n);
        return decode_done(&c, why);
    }
    rlhf_err_t rc = proto_decode(m, frames[0], lens[0], opts, why, err, errlen);
    if (rc != RLHF_OK) return rc;
    int chunk = m->type == PROTO_WEIGHTS_CHUNK;
    if (chunk != (n == 2)) {
        proto__ctx_t c;
        proto__ctx_init(&c, proto_type_name(m->type), 0, err, errlen);
        proto__fail(&c, PROTO_REJECT_BAD_FRAMES, NULL, "%zu frames, expected %d", n, chunk ? 2 : 1);
        return decode_done(&c, why);
    }
    return chunk ? proto_weights_chunk_attach(m, frames[1], lens[1], why, err, errlen) : RLHF_OK;
}

/* ---- encode ---- */

rlhf_err_t proto_encode(proto_enc_t *e, const proto_msg_t *m, proto_reject_t *why, char *err, size_t errlen) {
    proto__ctx_t c;
    e->len = 0;
    const char *tname = proto_type_name(m->type);
    proto__ctx_init(&c, tname ? tname : "envelope", 0, err, errlen);
    if (!tname) {
        proto__fail(&c, PROTO_REJECT_UNKNOWN_TYPE, "type", "%u is no message type", m->type);
    } else if (strnlen(m->sender, sizeof(m->sender)) == sizeof(m->sender)) {
        proto__fail(&c, PROTO_REJECT_TOO_LARGE, "sender", "not NUL-terminated within %u bytes", PROTO_MAX_ID);
    } else if (proto__check_str(&c, "sender", m->sender, 1, PROTO_MAX_ID, PROTO__CS_NAME) == 0) {
        check_body(&c, m);
    }
    if (why) *why = c.why;
    if (c.why != PROTO_REJECT_NONE) return RLHF_EINVAL;
    size_t bound = 32 + proto__bound_str(m->sender) + bound_body(m);
    if (enc_reserve(e, bound) < 0) {
        if (why) *why = PROTO_REJECT_NO_MEMORY;
        return rlhf_seterr(err, errlen, RLHF_ENOMEM, "%s: cannot allocate %zu bytes", tname, bound);
    }
    msgpack_packer pk;
    msgpack_packer_init(&pk, e, enc_write);
    if (msgpack_pack_array(&pk, 6) != 0 || msgpack_pack_uint32(&pk, PROTO_MAGIC) != 0 ||
        msgpack_pack_uint32(&pk, PROTO_VERSION) != 0 || msgpack_pack_uint32(&pk, m->type) != 0 ||
        proto__pack_str(&pk, m->sender) != 0 || msgpack_pack_uint64(&pk, m->seq) != 0 || pack_body(&pk, m) != 0) {
        e->len = 0;
        if (why) *why = PROTO_REJECT_NO_MEMORY;
        return rlhf_seterr(err, errlen, RLHF_ENOMEM, "%s: out of memory while packing", tname);
    }
    return RLHF_OK;
}
