/*
 * proto_int.h - helpers shared inside proto/ (not a public header).
 *
 * Decoding is three steps: proto__scan() walks the raw bytes without
 * allocating (so msgpack-c never sizes a zone from a hostile count), then
 * msgpack-c builds the object tree, then a per-type proto__dec_*() copies
 * the fields into the message's arena with type and length checks. The
 * semantic checks (ranges, finite numbers, token ids) live in
 * proto__check_*(), shared by decode and encode.
 */
#ifndef RLHF_PROTO_INT_H
#define RLHF_PROTO_INT_H

#include <msgpack.h>
#include <stdarg.h>
#include <stdint.h>

#include "proto/proto.h"

/* ---- error context: reason, detail line, field path ---- */

#define PROTO__MAX_PATH 8

typedef struct {
    proto_reject_t why; /* first failure wins */
    char *err;
    size_t errlen;
    int32_t vocab;
    const char *root; /* type name */
    int depth;
    struct {
        const char *name;
        int64_t idx; /* -1: none */
    } seg[PROTO__MAX_PATH];
} proto__ctx_t;

void proto__ctx_init(proto__ctx_t *c, const char *root, int32_t vocab, char *err, size_t errlen);
/* Descend into field name (then optionally an element idx); pop leaves it. */
void proto__push(proto__ctx_t *c, const char *name);
void proto__index(proto__ctx_t *c, int64_t idx);
void proto__pop(proto__ctx_t *c);
/* Record a failure at field (may be NULL) under the current path; returns -1. */
int proto__fail(proto__ctx_t *c, proto_reject_t why, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- raw scan ---- */

/* Structural walk of one msgpack object filling buf[0..len): returns NONE,
 * or TRUNCATED / TRAILING_BYTES / MALFORMED / TOO_DEEP / TOO_LARGE. */
proto_reject_t proto__scan(const unsigned char *buf, size_t len, char *err, size_t errlen);

/* ---- decoding context and field readers ---- */

typedef struct {
    proto__ctx_t c;
    proto_msg_t *m; /* owner of the arena */
} proto__dec_t;

/* 8-byte aligned arena memory owned by the message; NULL (and no_memory
 * recorded) on failure. */
void *proto__alloc(proto__dec_t *d, size_t n);

/* Collect the values of a map's known keys into vals[0..n) (NULL when
 * absent); unknown string keys are skipped. Fails on a non-map, a non-str
 * key, a duplicate known key or a missing required one (bit i of required). */
int proto__fields(proto__dec_t *d, const msgpack_object *map, const char *const *names, int n, uint32_t required,
                  const msgpack_object **vals);

int proto__get_u64(proto__dec_t *d, const msgpack_object *o, const char *f, uint64_t *out);
int proto__get_u32(proto__dec_t *d, const msgpack_object *o, const char *f, uint32_t *out);
/* float32, float64 or an integer */
int proto__get_f64(proto__dec_t *d, const msgpack_object *o, const char *f, double *out);
/* as get_f64, rounded to float (beyond float range: +-inf, caught by range checks) */
int proto__get_f32(proto__dec_t *d, const msgpack_object *o, const char *f, float *out);
int proto__get_bool(proto__dec_t *d, const msgpack_object *o, const char *f, uint32_t *out);
/* str of at most maxlen bytes, copied NUL-terminated into the arena
 * (charset checked later by proto__check_str). */
int proto__get_str(proto__dec_t *d, const msgpack_object *o, const char *f, size_t maxlen, const char **out);
/* bin of little-endian 32-bit words (int32 or float32), at most maxn,
 * copied into the arena; *out NULL when n == 0. */
int proto__get_le32(proto__dec_t *d, const msgpack_object *o, const char *f, uint32_t maxn, void **out, uint32_t *n);
/* array header: *arr points at the elements, at most maxn */
int proto__get_array(proto__dec_t *d, const msgpack_object *o, const char *f, uint32_t maxn, const msgpack_object **arr,
                     uint32_t *n);
/* map of name -> number: names checked as PROTO__CS_NAME, values finite
 * (nan_reason when not), names distinct */
int proto__get_named(proto__dec_t *d, const msgpack_object *o, const char *f, uint32_t maxn, proto_reject_t nan_reason,
                     const proto_named_t **out, uint32_t *n);

/* ---- semantic checks (decode and encode) ---- */

enum {
    PROTO__CS_NAME = 0, /* printable ASCII 0x21..0x7e */
    PROTO__CS_TEXT = 1  /* printable ASCII 0x20..0x7e */
};
int proto__check_str(proto__ctx_t *c, const char *f, const char *s, size_t minlen, size_t maxlen, int cs);
int proto__check_tokens(proto__ctx_t *c, const char *f, const int32_t *t, uint32_t n, uint32_t minn, uint32_t maxn);
int proto__check_floats(proto__ctx_t *c, const char *f, const float *x, uint32_t n, proto_reject_t why);
int proto__check_named(proto__ctx_t *c, const char *f, const proto_named_t *v, uint32_t n, uint32_t maxn,
                       proto_reject_t nan_reason);
int proto__check_range(proto__ctx_t *c, const char *f, uint64_t v, uint64_t lo, uint64_t hi);

/* ---- packing ---- */

/* Bytes a str / bin / map key takes at most, for buffer bounds. */
#define PROTO__HDR   9  /* largest scalar: uint64 / float64 with its type byte */
#define PROTO__FIELD 40 /* a key (<= 23 bytes) and a scalar value */
#define PROTO__TRY(x)                                                                                                  \
    do {                                                                                                               \
        if ((x) < 0) return -1;                                                                                        \
    } while (0)
size_t proto__bound_str(const char *s);

/* key: a string literal (its length is known at compile time) */
#define proto__pack_key(pk, key) msgpack_pack_str_with_body((pk), "" key, sizeof(key) - 1)
int proto__pack_str(msgpack_packer *pk, const char *s);
int proto__pack_le32(msgpack_packer *pk, const void *words, uint32_t n);
int proto__pack_named(msgpack_packer *pk, const proto_named_t *v, uint32_t n);

/* ---- per-type hooks: dec fills m's body from the body map, check
 * validates it, bound is an upper bound of its packed size, pack writes it ---- */

#define PROTO__HOOKS(name)                                                                                             \
    int proto__dec_##name(proto__dec_t *d, const msgpack_object *body, proto_msg_t *m);                                \
    int proto__check_##name(proto__ctx_t *c, const proto_msg_t *m);                                                    \
    size_t proto__bound_##name(const proto_msg_t *m);                                                                  \
    int proto__pack_##name(msgpack_packer *pk, const proto_msg_t *m);

PROTO__HOOKS(hello)
PROTO__HOOKS(heartbeat)
PROTO__HOOKS(bye)
PROTO__HOOKS(stats)
PROTO__HOOKS(work_request)
PROTO__HOOKS(score_request)
PROTO__HOOKS(ticket)
PROTO__HOOKS(rollouts)
PROTO__HOOKS(score_work)
PROTO__HOOKS(scored)
PROTO__HOOKS(weights_announce)
PROTO__HOOKS(weights_request)
PROTO__HOOKS(weights_chunk)

#endif
