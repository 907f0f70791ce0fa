/*
 * test_proto.c - the wire codec: round trip of every message type (field by
 * field, compared here independently of the library), and a table of
 * malformed inputs each rejected with the right reason.
 *
 * Malformed messages are made by decoding a valid message into a msgpack-c
 * tree, changing one thing (a field's type or sign, a key deleted or
 * doubled, a length) and packing it again, so every field of every type is
 * covered without hand-written byte strings; a few raw byte strings cover
 * what a tree cannot express (huge headers, truncation, reserved bytes).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "proto/proto.h"
#include "tests/proto_samples.h"

/* ---- helpers ---- */

static proto_reject_t decode_reason_opts(const void *buf, size_t len, const proto_decode_opts_t *opts) {
    proto_msg_t m;
    proto_reject_t why = PROTO_REJECT__COUNT;
    char err[256];
    proto_msg_init(&m);
    rlhf_err_t rc = proto_decode(&m, buf, len, opts, &why, err, sizeof(err));
    /* the return code and the reason agree */
    if (why == PROTO_REJECT_NONE)
        assert_int_equal(rc, RLHF_OK);
    else
        assert_int_not_equal(rc, RLHF_OK), assert_true(err[0] != '\0');
    proto_msg_fini(&m);
    return why;
}

static proto_reject_t decode_reason(const void *buf, size_t len) {
    return decode_reason_opts(buf, len, NULL);
}

#define assert_reason(got, want)                                                                                       \
    do {                                                                                                               \
        proto_reject_t g_ = (got), w_ = (want);                                                                        \
        if (g_ != w_)                                                                                                  \
            fail_msg("%s:%d: got %s, want %s", __FILE__, __LINE__, proto_reject_reason_name(g_),                       \
                     proto_reject_reason_name(w_));                                                                    \
    } while (0)

static void encode_sample(proto_type_t t, proto_enc_t *e, ps_store_t *st) {
    proto_msg_t m;
    char err[256];
    ps_build(t, &m, st);
    rlhf_err_t rc = proto_encode(e, &m, NULL, err, sizeof(err));
    if (rc != RLHF_OK) fail_msg("encode %s: %s", proto_type_name(t), err);
}

/* msgpack-c tree of an encoded message, to mutate and pack again. */
typedef struct {
    msgpack_unpacked up;
    msgpack_object *root;
} tree_t;

static void tree_load(tree_t *t, const void *buf, size_t len) {
    msgpack_unpacked_init(&t->up);
    size_t off = 0;
    assert_int_equal(msgpack_unpack_next(&t->up, buf, len, &off), MSGPACK_UNPACK_SUCCESS);
    t->root = &t->up.data;
}

static void tree_free(tree_t *t) {
    msgpack_unpacked_destroy(&t->up);
}

static msgpack_object *tree_body(tree_t *t) {
    return &t->root->via.array.ptr[5];
}

static proto_reject_t tree_decode_opts(const msgpack_object *root, const proto_decode_opts_t *opts) {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    assert_int_equal(msgpack_pack_object(&pk, *root), 0);
    proto_reject_t r = decode_reason_opts(sb.data, sb.size, opts);
    msgpack_sbuffer_destroy(&sb);
    return r;
}

static proto_reject_t tree_decode(const msgpack_object *root) {
    return tree_decode_opts(root, NULL);
}

/* Every map key/value pair under o, with the key of the map holding it. */
typedef struct {
    msgpack_object_kv *kv[512];
    msgpack_object *map[512];
    char parent[512][32];
    int n;
} kvs_t;

static void collect(msgpack_object *o, const char *parent, kvs_t *k) {
    if (o->type == MSGPACK_OBJECT_ARRAY) {
        for (uint32_t i = 0; i < o->via.array.size; i++) collect(&o->via.array.ptr[i], parent, k);
    } else if (o->type == MSGPACK_OBJECT_MAP) {
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            msgpack_object_kv *kv = &o->via.map.ptr[i];
            assert_true(k->n < 512);
            k->kv[k->n] = kv;
            k->map[k->n] = o;
            snprintf(k->parent[k->n], sizeof(k->parent[0]), "%s", parent);
            k->n++;
            char key[32];
            snprintf(key, sizeof(key), "%.*s", (int)kv->key.via.str.size, kv->key.via.str.ptr);
            collect(&kv->val, key, k);
        }
    }
}

static int key_is(const msgpack_object_kv *kv, const char *key) {
    return kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == strlen(key) &&
           memcmp(kv->key.via.str.ptr, key, strlen(key)) == 0;
}

/* Find the first kv with this key (and parent, if given). */
static msgpack_object_kv *find_kv(tree_t *t, const char *parent, const char *key) {
    static kvs_t k;
    k.n = 0;
    collect(tree_body(t), "body", &k);
    for (int i = 0; i < k.n; i++)
        if (key_is(k.kv[i], key) && (!parent || strcmp(k.parent[i], parent) == 0)) return k.kv[i];
    fail_msg("no field %s.%s", parent ? parent : "*", key);
    return NULL;
}

static msgpack_object obj_str(const char *s) {
    msgpack_object o = {.type = MSGPACK_OBJECT_STR};
    o.via.str.ptr = s, o.via.str.size = (uint32_t)strlen(s);
    return o;
}

static msgpack_object obj_uint(uint64_t v) {
    msgpack_object o = {.type = MSGPACK_OBJECT_POSITIVE_INTEGER};
    o.via.u64 = v;
    return o;
}

static msgpack_object obj_int(int64_t v) {
    msgpack_object o = {.type = v < 0 ? MSGPACK_OBJECT_NEGATIVE_INTEGER : MSGPACK_OBJECT_POSITIVE_INTEGER};
    o.via.i64 = v;
    return o;
}

static msgpack_object obj_f64(double v) {
    msgpack_object o = {.type = MSGPACK_OBJECT_FLOAT64};
    o.via.f64 = v;
    return o;
}

static msgpack_object obj_bin(const void *p, uint32_t n) {
    msgpack_object o = {.type = MSGPACK_OBJECT_BIN};
    o.via.bin.ptr = p, o.via.bin.size = n;
    return o;
}

/* ---- field-by-field equality, written from the struct definitions ---- */

static void eq_str(const char *a, const char *b) {
    assert_string_equal(a ? a : "", b ? b : "");
}

static void eq_i32(const int32_t *a, const int32_t *b, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) assert_int_equal(a[i], b[i]);
}

static void eq_f32(const float *a, const float *b, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) assert_memory_equal(&a[i], &b[i], 4); /* bit exact */
}

static void eq_named(const proto_named_t *a, uint32_t na, const proto_named_t *b, uint32_t nb) {
    assert_int_equal(na, nb);
    for (uint32_t i = 0; i < na; i++) {
        eq_str(a[i].name, b[i].name);
        assert_true(a[i].value == b[i].value);
    }
}

static void eq_msg(const proto_msg_t *a, const proto_msg_t *b) {
    assert_int_equal(a->type, b->type);
    assert_string_equal(a->sender, b->sender);
    assert_int_equal(a->seq, b->seq);
    switch (a->type) {
    case PROTO_HELLO:
        assert_int_equal(a->hello.role, b->hello.role);
        assert_int_equal(a->hello.n_caps, b->hello.n_caps);
        for (uint32_t i = 0; i < a->hello.n_caps; i++) eq_str(a->hello.caps[i], b->hello.caps[i]);
        eq_str(a->hello.software, b->hello.software);
        assert_int_equal(a->hello.weights_version, b->hello.weights_version);
        break;
    case PROTO_HEARTBEAT:
        assert_int_equal(a->heartbeat.in_flight, b->heartbeat.in_flight);
        assert_int_equal(a->heartbeat.weights_version, b->heartbeat.weights_version);
        break;
    case PROTO_BYE: eq_str(a->bye.reason, b->bye.reason); break;
    case PROTO_STATS: eq_named(a->stats.values, a->stats.n_values, b->stats.values, b->stats.n_values); break;
    case PROTO_WORK_REQUEST:
        assert_int_equal(a->work_request.credit, b->work_request.credit);
        assert_int_equal(a->work_request.weights_version, b->work_request.weights_version);
        break;
    case PROTO_SCORE_REQUEST: assert_int_equal(a->score_request.credit, b->score_request.credit); break;
    case PROTO_TICKET: {
        const proto_ticket_t *x = &a->ticket, *y = &b->ticket;
        assert_int_equal(x->ticket, y->ticket);
        assert_int_equal(x->policy_version, y->policy_version);
        assert_int_equal(x->k, y->k);
        assert_int_equal(x->deadline_ms, y->deadline_ms);
        eq_str(x->task, y->task);
        assert_true(x->sampling.temperature == y->sampling.temperature);
        assert_int_equal(x->sampling.top_k, y->sampling.top_k);
        assert_true(x->sampling.top_p == y->sampling.top_p);
        assert_int_equal(x->sampling.max_new_tokens, y->sampling.max_new_tokens);
        assert_int_equal(x->sampling.n_stop, y->sampling.n_stop);
        eq_i32(x->sampling.stop, y->sampling.stop, x->sampling.n_stop);
        assert_int_equal(x->sampling.seed, y->sampling.seed);
        assert_int_equal(x->n_prompts, y->n_prompts);
        for (uint32_t i = 0; i < x->n_prompts; i++) {
            assert_int_equal(x->prompts[i].id, y->prompts[i].id);
            assert_int_equal(x->prompts[i].n_tokens, y->prompts[i].n_tokens);
            eq_i32(x->prompts[i].tokens, y->prompts[i].tokens, x->prompts[i].n_tokens);
        }
        break;
    }
    case PROTO_ROLLOUTS: {
        assert_int_equal(a->rollouts.ticket, b->rollouts.ticket);
        assert_int_equal(a->rollouts.n_samples, b->rollouts.n_samples);
        for (uint32_t i = 0; i < a->rollouts.n_samples; i++) {
            const proto_sample_t *x = &a->rollouts.samples[i], *y = &b->rollouts.samples[i];
            assert_int_equal(x->prompt_index, y->prompt_index);
            assert_int_equal(x->sample_index, y->sample_index);
            assert_int_equal(x->n_prompt, y->n_prompt);
            eq_i32(x->prompt, y->prompt, x->n_prompt);
            assert_int_equal(x->n_completion, y->n_completion);
            eq_i32(x->completion, y->completion, x->n_completion);
            eq_f32(x->logprobs, y->logprobs, x->n_completion);
            assert_int_equal(x->finish, y->finish);
            assert_int_equal(x->policy_version, y->policy_version);
            assert_int_equal(x->queue_us, y->queue_us);
            assert_int_equal(x->gen_us, y->gen_us);
        }
        break;
    }
    case PROTO_SCORE_WORK: {
        const proto_score_work_t *x = &a->score_work, *y = &b->score_work;
        assert_int_equal(x->ticket, y->ticket);
        eq_str(x->task, y->task);
        assert_true(x->temperature == y->temperature);
        assert_int_equal(x->want_ref, y->want_ref);
        assert_int_equal(x->n_items, y->n_items);
        for (uint32_t i = 0; i < x->n_items; i++) {
            const proto_score_item_t *p = &x->items[i], *q = &y->items[i];
            assert_int_equal(p->prompt_index, q->prompt_index);
            assert_int_equal(p->sample_index, q->sample_index);
            assert_int_equal(p->prompt_id, q->prompt_id);
            assert_int_equal(p->n_prompt, q->n_prompt);
            eq_i32(p->prompt, q->prompt, p->n_prompt);
            assert_int_equal(p->n_completion, q->n_completion);
            eq_i32(p->completion, q->completion, p->n_completion);
            assert_int_equal(p->finish, q->finish);
        }
        break;
    }
    case PROTO_SCORED: {
        assert_int_equal(a->scored.ticket, b->scored.ticket);
        assert_int_equal(a->scored.n_samples, b->scored.n_samples);
        for (uint32_t i = 0; i < a->scored.n_samples; i++) {
            const proto_scored_sample_t *x = &a->scored.samples[i], *y = &b->scored.samples[i];
            assert_int_equal(x->prompt_index, y->prompt_index);
            assert_int_equal(x->sample_index, y->sample_index);
            assert_true(x->reward == y->reward);
            eq_named(x->components, x->n_components, y->components, y->n_components);
            assert_int_equal(x->n_ref, y->n_ref);
            eq_f32(x->ref_logprobs, y->ref_logprobs, x->n_ref);
            assert_int_equal(x->score_us, y->score_us);
        }
        break;
    }
    case PROTO_WEIGHTS_ANNOUNCE:
        assert_int_equal(a->weights_announce.version, b->weights_announce.version);
        assert_int_equal(a->weights_announce.size, b->weights_announce.size);
        assert_int_equal(a->weights_announce.checksum, b->weights_announce.checksum);
        assert_int_equal(a->weights_announce.chunk_max, b->weights_announce.chunk_max);
        break;
    case PROTO_WEIGHTS_REQUEST:
        assert_int_equal(a->weights_request.version, b->weights_request.version);
        assert_int_equal(a->weights_request.offset, b->weights_request.offset);
        assert_int_equal(a->weights_request.length, b->weights_request.length);
        break;
    case PROTO_WEIGHTS_CHUNK:
        assert_int_equal(a->weights_chunk.version, b->weights_chunk.version);
        assert_int_equal(a->weights_chunk.offset, b->weights_chunk.offset);
        assert_int_equal(a->weights_chunk.length, b->weights_chunk.length);
        assert_int_equal(a->weights_chunk.status, b->weights_chunk.status);
        assert_int_equal(a->weights_chunk.size, b->weights_chunk.size);
        assert_int_equal(a->weights_chunk.checksum, b->weights_chunk.checksum);
        assert_non_null(b->weights_chunk.data);
        assert_memory_equal(a->weights_chunk.data, b->weights_chunk.data, a->weights_chunk.length);
        break;
    default: fail_msg("unknown type %u", a->type);
    }
}

/* ---- round trips ---- */

static void test_round_trip(void **state) {
    (void)state;
    static ps_store_t st;
    proto_enc_t e;
    proto_enc_init(&e);
    proto_msg_t got;
    proto_msg_init(&got); /* one message decoded into again and again: arena reuse */
    for (int rep = 0; rep < 2; rep++) {
        for (int i = 0; i < PS_N_TYPES; i++) {
            proto_msg_t m;
            proto_reject_t why;
            char err[256];
            ps_build(ps_types[i], &m, &st);
            assert_int_equal(proto_encode(&e, &m, &why, err, sizeof(err)), RLHF_OK);
            assert_int_equal(why, PROTO_REJECT_NONE);
            const void *frames[2] = {e.data, m.weights_chunk.data};
            size_t lens[2] = {e.len, m.weights_chunk.length};
            size_t nf = ps_types[i] == PROTO_WEIGHTS_CHUNK ? 2 : 1;
            rlhf_err_t rc = proto_decode_frames(&got, frames, lens, nf, NULL, &why, err, sizeof(err));
            if (rc != RLHF_OK) fail_msg("%s: %s", proto_type_name(ps_types[i]), err);
            assert_int_equal(got.version, PROTO_VERSION);
            eq_msg(&m, &got);
            assert_true(proto_msg_equal(&m, &got));
            /* decoded memory is the message's own: scribble over the input */
            memset(e.data, 0xee, e.len);
            eq_msg(&m, &got);
        }
    }
    /* steady state: one arena block, no overflow blocks */
    assert_null(got.mem_.extra);
    proto_msg_fini(&got);
    proto_enc_fini(&e);
}

static void test_encoding_is_bin_and_sized(void **state) {
    (void)state;
    static ps_store_t st;
    proto_enc_t e;
    proto_enc_init(&e);
    encode_sample(PROTO_ROLLOUTS, &e, &st);
    /* 8 samples: 12 prompt + n completion tokens + n log-probs, 4 bytes each, and little else */
    size_t payload = 0;
    for (int i = 0; i < PS_SAMPLES; i++) payload += 4 * (PS_PROMPT + 2 * (PS_GEN - (size_t)i));
    assert_true(e.len > payload && e.len < payload + 8 * 160 + 64);
    /* the first sample's completion is one bin32/bin16 record of 4*256 bytes */
    const unsigned char needle[] = {0xc5, 0x04, 0x00}; /* bin16, 1024 bytes */
    int found = 0;
    for (size_t i = 0; i + 3 <= e.len && !found; i++) found = memcmp(e.data + i, needle, 3) == 0;
    assert_true(found);
    /* release hands over the bytes; the encoder is reusable */
    size_t len;
    void *p = proto_enc_release(&e, &len);
    assert_non_null(p);
    assert_int_equal(e.len, 0);
    free(p);
    encode_sample(PROTO_HELLO, &e, &st);
    assert_true(e.len > 0);
    proto_enc_fini(&e);
}

/* Decoding accepts what another encoder may reasonably write: ints where
 * floats belong, float64 where float32 is used, unknown keys, keys in any
 * order, and minimal integer widths. */
static void test_lenient_inputs(void **state) {
    (void)state;
    static ps_store_t st;
    proto_enc_t e;
    proto_enc_init(&e);
    encode_sample(PROTO_TICKET, &e, &st);
    tree_t t;
    tree_load(&t, e.data, e.len);
    find_kv(&t, "sampling", "temperature")->val = obj_uint(1);    /* int where a float belongs */
    find_kv(&t, "sampling", "top_p")->val = obj_f64(0.5);         /* float64 */
    find_kv(&t, "body", "task")->key = obj_str("x_future_field"); /* unknown key, ignored */
    assert_reason(tree_decode(t.root), PROTO_REJECT_NONE);
    /* reverse the body's key order */
    msgpack_object *b = tree_body(&t);
    for (uint32_t i = 0, j = b->via.map.size - 1; i < j; i++, j--) {
        msgpack_object_kv tmp = b->via.map.ptr[i];
        b->via.map.ptr[i] = b->via.map.ptr[j];
        b->via.map.ptr[j] = tmp;
    }
    assert_reason(tree_decode(t.root), PROTO_REJECT_NONE);
    tree_free(&t);
    /* nil ref_logprobs is "absent" */
    encode_sample(PROTO_SCORED, &e, &st);
    tree_load(&t, e.data, e.len);
    find_kv(&t, "samples", "ref_logprobs")->val.type = MSGPACK_OBJECT_NIL;
    assert_reason(tree_decode(t.root), PROTO_REJECT_NONE);
    tree_free(&t);
    proto_enc_fini(&e);
}

/* ---- malformed: generic mutations of every field of every type ---- */

/* Optional keys per type (absent is valid); entries of the named maps
 * "components" and "values" may be deleted too. */
static int optional_key(proto_type_t type, const char *parent, const msgpack_object_kv *kv) {
    static const struct {
        proto_type_t t;
        const char *key;
    } opt[] = {{PROTO_HELLO, "caps"},
               {PROTO_HELLO, "software"},
               {PROTO_HELLO, "weights_version"},
               {PROTO_HEARTBEAT, "in_flight"},
               {PROTO_HEARTBEAT, "weights_version"},
               {PROTO_BYE, "reason"},
               {PROTO_TICKET, "task"},
               {PROTO_TICKET, "top_k"},
               {PROTO_TICKET, "top_p"},
               {PROTO_TICKET, "stop"},
               {PROTO_ROLLOUTS, "queue_us"},
               {PROTO_ROLLOUTS, "gen_us"},
               {PROTO_SCORE_WORK, "task"},
               {PROTO_SCORE_WORK, "temperature"},
               {PROTO_SCORE_WORK, "want_ref"},
               {PROTO_SCORED, "components"},
               {PROTO_SCORED, "ref_logprobs"},
               {PROTO_SCORED, "score_us"}};
    if (strcmp(parent, "components") == 0 || strcmp(parent, "values") == 0) return 1;
    for (size_t i = 0; i < sizeof(opt) / sizeof(opt[0]); i++)
        if (opt[i].t == type && key_is(kv, opt[i].key)) return 1;
    return 0;
}

typedef enum { MUT_WRONG_TYPE, MUT_NEGATIVE, MUT_DELETE, MUT_DUPLICATE } mutation_t;

static void mutate_every_field(mutation_t mut) {
    static ps_store_t st;
    proto_enc_t e;
    proto_enc_init(&e);
    int tried = 0;
    for (int ti = 0; ti < PS_N_TYPES; ti++) {
        proto_type_t type = ps_types[ti];
        encode_sample(type, &e, &st);
        static kvs_t k;
        tree_t t;
        tree_load(&t, e.data, e.len);
        k.n = 0;
        collect(tree_body(&t), "body", &k);
        int n = k.n;
        tree_free(&t);
        for (int i = 0; i < n; i++) {
            tree_load(&t, e.data, e.len); /* fresh tree: one mutation at a time */
            k.n = 0;
            collect(tree_body(&t), "body", &k);
            msgpack_object_kv *kv = k.kv[i];
            msgpack_object *map = k.map[i];
            proto_reject_t want;
            char key[40];
            snprintf(key, sizeof(key), "%.*s", (int)kv->key.via.str.size, kv->key.via.str.ptr);
            switch (mut) {
            case MUT_WRONG_TYPE:
                kv->val = kv->val.type == MSGPACK_OBJECT_STR ? obj_uint(7) : obj_str("x");
                want = PROTO_REJECT_WRONG_TYPE;
                break;
            case MUT_NEGATIVE:
                if (kv->val.type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
                    tree_free(&t);
                    continue;
                }
                kv->val = obj_int(-1);
                want = PROTO_REJECT_NEGATIVE_COUNT;
                break;
            case MUT_DELETE:
                want = optional_key(type, k.parent[i], kv) ? PROTO_REJECT_NONE : PROTO_REJECT_MISSING_FIELD;
                memmove(kv, kv + 1, (size_t)(map->via.map.ptr + map->via.map.size - (kv + 1)) * sizeof(*kv));
                map->via.map.size--;
                break;
            case MUT_DUPLICATE: {
                msgpack_object_kv *nk = msgpack_zone_malloc(t.up.zone, sizeof(*nk) * (map->via.map.size + 1));
                memcpy(nk, map->via.map.ptr, sizeof(*nk) * map->via.map.size);
                nk[map->via.map.size] = *kv;
                map->via.map.ptr = nk;
                map->via.map.size++;
                want = PROTO_REJECT_DUPLICATE_FIELD;
                break;
            }
            }
            proto_reject_t got = tree_decode(t.root);
            if (got != want)
                fail_msg("%s %s.%s mutation %d: got %s, want %s", proto_type_name(type), k.parent[i], key, (int)mut,
                         proto_reject_reason_name(got), proto_reject_reason_name(want));
            tried++;
            tree_free(&t);
        }
    }
    assert_true(tried > 40);
    proto_enc_fini(&e);
}

static void test_every_field_wrong_type(void **state) {
    (void)state;
    mutate_every_field(MUT_WRONG_TYPE);
}

static void test_every_field_negative(void **state) {
    (void)state;
    mutate_every_field(MUT_NEGATIVE);
}

static void test_every_field_deleted(void **state) {
    (void)state;
    mutate_every_field(MUT_DELETE);
}

static void test_every_field_duplicated(void **state) {
    (void)state;
    mutate_every_field(MUT_DUPLICATE);
}

/* ---- malformed: truncation at every byte, trailing bytes ---- */

static void test_truncated_everywhere(void **state) {
    (void)state;
    static ps_store_t st;
    proto_enc_t e;
    proto_enc_init(&e);
    for (int ti = 0; ti < PS_N_TYPES; ti++) {
        encode_sample(ps_types[ti], &e, &st);
        for (size_t n = 0; n < e.len; n++) {
            proto_reject_t got = decode_reason(e.data, n);
            if (got != PROTO_REJECT_TRUNCATED)
                fail_msg("%s cut at %zu/%zu: %s", proto_type_name(ps_types[ti]), n, e.len,
                         proto_reject_reason_name(got));
        }
        /* exactly sized copies so ASan sees any read past the end */
        char *cut = malloc(e.len + 1);
        for (size_t n = 1; n < e.len; n += 1 + n / 8) {
            memcpy(cut, e.data, n);
            assert_reason(decode_reason(cut, n), PROTO_REJECT_TRUNCATED);
        }
        memcpy(cut, e.data, e.len);
        cut[e.len] = 0x00;
        assert_reason(decode_reason(cut, e.len + 1), PROTO_REJECT_TRAILING_BYTES);
        assert_reason(decode_reason(cut, e.len), PROTO_REJECT_NONE);
        free(cut);
    }
    proto_enc_fini(&e);
}

/* ---- malformed: raw byte strings ---- */

static void test_raw_bytes(void **state) {
    (void)state;
    /* envelope prefix: [0x524C4846, 1, 12 (rollouts), "x", 0, ...] */
#define ENV 0x96, 0xce, 0x52, 0x4c, 0x48, 0x46, 0x01, 0x0c, 0xa1, 'x', 0x00
    static const struct {
        const char *name;
        unsigned char bytes[32];
        size_t len;
        proto_reject_t want;
    } cases[] = {
        {"empty", {0}, 0, PROTO_REJECT_TRUNCATED},
        {"array32 of 4G elements", {0xdd, 0xff, 0xff, 0xff, 0xff}, 5, PROTO_REJECT_TOO_LARGE},
        {"map32 above object limit", {0xdf, 0x00, 0x10, 0x00, 0x01, 0x00}, 6, PROTO_REJECT_TOO_LARGE},
        {"array32 of 16 in 3 bytes", {0xdd, 0x00, 0x00, 0x00, 0x10, 0x01, 0x02, 0x03}, 8, PROTO_REJECT_TRUNCATED},
        {"bin32 of 4 GiB", {ENV, 0xc6, 0xff, 0xff, 0xff, 0xff}, 16, PROTO_REJECT_TOO_LARGE},
        {"str32 of 2 GiB", {ENV, 0xdb, 0x80, 0x00, 0x00, 0x00}, 16, PROTO_REJECT_TOO_LARGE},
        {"bin8 past the end", {ENV, 0xc4, 0x10, 0x00}, 14, PROTO_REJECT_TRUNCATED},
        {"reserved byte 0xc1", {ENV, 0xc1}, 12, PROTO_REJECT_MALFORMED},
        {"ext body is a bin", {ENV, 0xd4, 0x01, 0x00}, 14, PROTO_REJECT_WRONG_TYPE},
        {"body is an array", {ENV, 0x90}, 12, PROTO_REJECT_WRONG_TYPE},
        {"not an array", {0x80}, 1, PROTO_REJECT_BAD_ENVELOPE},
        {"an int", {0x05}, 1, PROTO_REJECT_BAD_ENVELOPE},
        {"array of 5",
         {0x95, 0xce, 0x52, 0x4c, 0x48, 0x46, 0x01, 0x0c, 0xa1, 'x', 0x00},
         11,
         PROTO_REJECT_BAD_ENVELOPE},
        {"magic 0", {0x96, 0x00, 0x01, 0x0c, 0xa1, 'x', 0x00, 0x80}, 8, PROTO_REJECT_BAD_MAGIC},
        {"magic as str",
         {0x96, 0xa4, 'R', 'L', 'H', 'F', 0x01, 0x0c, 0xa1, 'x', 0x00, 0x80},
         12,
         PROTO_REJECT_BAD_MAGIC},
        {"version 2",
         {0x96, 0xce, 0x52, 0x4c, 0x48, 0x46, 0x02, 0x0c, 0xa1, 'x', 0x00, 0x80},
         12,
         PROTO_REJECT_BAD_VERSION},
        {"version -1",
         {0x96, 0xce, 0x52, 0x4c, 0x48, 0x46, 0xff, 0x0c, 0xa1, 'x', 0x00, 0x80},
         12,
         PROTO_REJECT_BAD_VERSION},
        {"type 99",
         {0x96, 0xce, 0x52, 0x4c, 0x48, 0x46, 0x01, 0x63, 0xa1, 'x', 0x00, 0x80},
         12,
         PROTO_REJECT_UNKNOWN_TYPE},
        {"type 2^40",
         {0x96, 0xce, 0x52, 0x4c, 0x48, 0x46, 0x01, 0xcf, 0, 0, 1, 0, 0, 0, 0, 12, 0xa1, 'x', 0x00, 0x80},
         20,
         PROTO_REJECT_UNKNOWN_TYPE},
        {"type as str",
         {0x96, 0xce, 0x52, 0x4c, 0x48, 0x46, 0x01, 0xa1, 'r', 0xa1, 'x', 0x00, 0x80},
         13,
         PROTO_REJECT_WRONG_TYPE},
        {"sender empty",
         {0x96, 0xce, 0x52, 0x4c, 0x48, 0x46, 0x01, 0x02, 0xa0, 0x00, 0x80},
         11,
         PROTO_REJECT_BAD_STRING},
        {"sender with space",
         {0x96, 0xce, 0x52, 0x4c, 0x48, 0x46, 0x01, 0x02, 0xa2, 'a', ' ', 0x00, 0x80},
         13,
         PROTO_REJECT_BAD_STRING},
        {"sender with NUL",
         {0x96, 0xce, 0x52, 0x4c, 0x48, 0x46, 0x01, 0x02, 0xa2, 'a', 0, 0x00, 0x80},
         13,
         PROTO_REJECT_BAD_STRING},
        {"sender as int",
         {0x96, 0xce, 0x52, 0x4c, 0x48, 0x46, 0x01, 0x02, 0x07, 0x00, 0x80},
         11,
         PROTO_REJECT_WRONG_TYPE},
        {"seq negative",
         {0x96, 0xce, 0x52, 0x4c, 0x48, 0x46, 0x01, 0x02, 0xa1, 'x', 0xff, 0x80},
         12,
         PROTO_REJECT_NEGATIVE_COUNT},
        {"seq float",
         {0x96, 0xce, 0x52, 0x4c, 0x48, 0x46, 0x01, 0x02, 0xa1, 'x', 0xca, 0, 0, 0, 0, 0x80},
         16,
         PROTO_REJECT_WRONG_TYPE},
        {"heartbeat, empty body",
         {0x96, 0xce, 0x52, 0x4c, 0x48, 0x46, 0x01, 0x02, 0xa1, 'x', 0x00, 0x80},
         12,
         PROTO_REJECT_NONE},
        {"heartbeat, non-str key",
         {0x96, 0xce, 0x52, 0x4c, 0x48, 0x46, 0x01, 0x02, 0xa1, 'x', 0x00, 0x81, 0x01, 0x02},
         14,
         PROTO_REJECT_WRONG_TYPE},
        /* a known name, a NUL, then more: an unknown key (found by the fuzzer: no read past the name) */
        {"key with a NUL",
         {0x96, 0xce, 0x52, 0x4c, 0x48, 0x46, 0x01, 0x02, 0xa1, 'x', 0x00, 0x81, 0xb2, 'i', 'n', '_',
          'f',  'l',  'i',  'g',  'h',  't',  0,    'a',  'b',  'c', 'd',  'e',  'f',  'g', 'h', 0x01},
         32,
         PROTO_REJECT_NONE},
        {"trailing byte",
         {0x96, 0xce, 0x52, 0x4c, 0x48, 0x46, 0x01, 0x02, 0xa1, 'x', 0x00, 0x80, 0x00},
         13,
         PROTO_REJECT_TRAILING_BYTES},
    };
#undef ENV
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        /* exact-size heap copy so ASan catches any over-read */
        unsigned char *p = malloc(cases[i].len ? cases[i].len : 1);
        memcpy(p, cases[i].bytes, cases[i].len);
        proto_reject_t got = decode_reason(cases[i].len ? p : NULL, cases[i].len);
        if (got != cases[i].want)
            fail_msg("%s: got %s, want %s", cases[i].name, proto_reject_reason_name(got),
                     proto_reject_reason_name(cases[i].want));
        free(p);
    }
    /* a frame above the limit is refused before it is read */
    static const unsigned char one = 0x90;
    assert_reason(decode_reason(&one, (size_t)PROTO_MAX_MSG_BYTES + 1), PROTO_REJECT_TOO_LARGE);
    /* nesting: an unknown field holding 20 nested arrays */
    unsigned char deep[64] = {0x96, 0xce, 0x52, 0x4c, 0x48, 0x46, 0x01, 0x02, 0xa1, 'x', 0x00, 0x81, 0xa1, 'z'};
    size_t n = 14;
    for (int i = 0; i < 20; i++) deep[n++] = 0x91;
    deep[n++] = 0x00;
    assert_reason(decode_reason(deep, n), PROTO_REJECT_TOO_DEEP);
    /* ... and 10 levels are fine (unknown fields are ignored) */
    n = 14;
    for (int i = 0; i < 10; i++) deep[n++] = 0x91;
    deep[n++] = 0x00;
    assert_reason(decode_reason(deep, n), PROTO_REJECT_NONE);
}

/* ---- malformed: specific values ---- */

typedef struct {
    const char *name;
    proto_type_t type;
    const char *parent, *key; /* field to change (parent NULL: first match) */
    int kind;                 /* what to put there */
    double num;
    proto_reject_t want;
} value_case_t;

enum {
    V_UINT,
    V_INT,
    V_F64,
    V_F32,
    V_STR_LEN,
    V_STR_BYTE,
    V_BIN_SHRINK,
    V_TOKEN,
    V_LOGPROB,
    V_REF_LOGPROB,
    V_BIG_BIN,
    V_EMPTY_BIN,
    V_EMPTY_ARRAY,
    V_ARRAY_GROW,
    V_MAX_COMPONENTS
};

static const value_case_t value_cases[] = {
    {"k = 0", PROTO_TICKET, "body", "k", V_UINT, 0, PROTO_REJECT_OUT_OF_RANGE},
    {"k = 257", PROTO_TICKET, "body", "k", V_UINT, 257, PROTO_REJECT_OUT_OF_RANGE},
    {"k above 32 bits", PROTO_TICKET, "body", "k", V_UINT, 4294967296.0, PROTO_REJECT_OUT_OF_RANGE},
    {"deadline 0", PROTO_TICKET, "body", "deadline_ms", V_UINT, 0, PROTO_REJECT_OUT_OF_RANGE},
    {"prompts x k above limit", PROTO_TICKET, "body", "prompts", V_ARRAY_GROW, 17, PROTO_REJECT_TOO_LARGE},
    {"temperature -1", PROTO_TICKET, "sampling", "temperature", V_F64, -1, PROTO_REJECT_OUT_OF_RANGE},
    {"temperature NaN", PROTO_TICKET, "sampling", "temperature", V_F64, NAN, PROTO_REJECT_OUT_OF_RANGE},
    {"temperature inf", PROTO_TICKET, "sampling", "temperature", V_F64, INFINITY, PROTO_REJECT_OUT_OF_RANGE},
    {"temperature 1e300", PROTO_TICKET, "sampling", "temperature", V_F64, 1e300, PROTO_REJECT_OUT_OF_RANGE},
    {"top_p 0", PROTO_TICKET, "sampling", "top_p", V_F64, 0, PROTO_REJECT_OUT_OF_RANGE},
    {"top_p 1.5", PROTO_TICKET, "sampling", "top_p", V_F64, 1.5, PROTO_REJECT_OUT_OF_RANGE},
    {"top_k 2^31", PROTO_TICKET, "sampling", "top_k", V_UINT, 2147483648.0, PROTO_REJECT_OUT_OF_RANGE},
    {"max_new_tokens 0", PROTO_TICKET, "sampling", "max_new_tokens", V_UINT, 0, PROTO_REJECT_OUT_OF_RANGE},
    {"max_new_tokens 65537", PROTO_TICKET, "sampling", "max_new_tokens", V_UINT, 65537, PROTO_REJECT_OUT_OF_RANGE},
    {"stop tokens 9", PROTO_TICKET, "sampling", "stop", V_BIG_BIN, 9, PROTO_REJECT_TOO_LARGE},
    {"stop bin 7 bytes", PROTO_TICKET, "sampling", "stop", V_BIN_SHRINK, 1, PROTO_REJECT_BAD_LENGTH},
    {"stop token -1", PROTO_TICKET, "sampling", "stop", V_TOKEN, -1, PROTO_REJECT_BAD_TOKEN},
    {"task 65 bytes", PROTO_TICKET, "body", "task", V_STR_LEN, 65, PROTO_REJECT_TOO_LARGE},
    {"task with space", PROTO_TICKET, "body", "task", V_STR_BYTE, ' ', PROTO_REJECT_BAD_STRING},
    {"task with 0xff", PROTO_TICKET, "body", "task", V_STR_BYTE, 0xff, PROTO_REJECT_BAD_STRING},
    {"prompt empty", PROTO_TICKET, "prompts", "tokens", V_EMPTY_BIN, 0, PROTO_REJECT_BAD_LENGTH},
    {"prompt bin 19 bytes", PROTO_TICKET, "prompts", "tokens", V_BIN_SHRINK, 1, PROTO_REJECT_BAD_LENGTH},
    {"prompt token -1", PROTO_TICKET, "prompts", "tokens", V_TOKEN, -1, PROTO_REJECT_BAD_TOKEN},
    {"prompt token 2^24", PROTO_TICKET, "prompts", "tokens", V_TOKEN, 16777216, PROTO_REJECT_BAD_TOKEN},
    {"prompt 65537 tokens", PROTO_TICKET, "prompts", "tokens", V_BIG_BIN, 65537, PROTO_REJECT_TOO_LARGE},
    {"no prompts", PROTO_TICKET, "body", "prompts", V_EMPTY_ARRAY, 0, PROTO_REJECT_BAD_LENGTH},
    {"1025 prompts", PROTO_TICKET, "body", "prompts", V_ARRAY_GROW, 1025, PROTO_REJECT_TOO_LARGE},
    {"sampling is an array", PROTO_TICKET, "body", "sampling", V_EMPTY_ARRAY, 0, PROTO_REJECT_WRONG_TYPE},
    {"finish 0", PROTO_ROLLOUTS, "samples", "finish", V_UINT, 0, PROTO_REJECT_OUT_OF_RANGE},
    {"finish 3", PROTO_ROLLOUTS, "samples", "finish", V_UINT, 3, PROTO_REJECT_OUT_OF_RANGE},
    {"prompt_index 1024", PROTO_ROLLOUTS, "samples", "prompt_index", V_UINT, 1024, PROTO_REJECT_OUT_OF_RANGE},
    {"sample_index 256", PROTO_ROLLOUTS, "samples", "sample_index", V_UINT, 256, PROTO_REJECT_OUT_OF_RANGE},
    {"logprobs bin 1023 bytes", PROTO_ROLLOUTS, "samples", "logprobs", V_BIN_SHRINK, 1, PROTO_REJECT_BAD_LENGTH},
    {"logprobs one short", PROTO_ROLLOUTS, "samples", "logprobs", V_BIN_SHRINK, 4, PROTO_REJECT_BAD_LENGTH},
    {"logprob NaN", PROTO_ROLLOUTS, "samples", "logprobs", V_LOGPROB, NAN, PROTO_REJECT_NAN_LOGPROB},
    {"logprob -inf", PROTO_ROLLOUTS, "samples", "logprobs", V_LOGPROB, -INFINITY, PROTO_REJECT_NAN_LOGPROB},
    {"completion bin 1023 bytes", PROTO_ROLLOUTS, "samples", "completion", V_BIN_SHRINK, 1, PROTO_REJECT_BAD_LENGTH},
    {"completion token 2^31-1", PROTO_ROLLOUTS, "samples", "completion", V_TOKEN, 2147483647.0, PROTO_REJECT_BAD_TOKEN},
    {"completion empty", PROTO_ROLLOUTS, "samples", "completion", V_EMPTY_BIN, 0, PROTO_REJECT_BAD_LENGTH},
    {"no samples", PROTO_ROLLOUTS, "body", "samples", V_EMPTY_ARRAY, 0, PROTO_REJECT_BAD_LENGTH},
    {"4097 samples", PROTO_ROLLOUTS, "body", "samples", V_ARRAY_GROW, 4097, PROTO_REJECT_TOO_LARGE},
    {"samples is a map", PROTO_ROLLOUTS, "body", "ticket", V_F64, 1.0, PROTO_REJECT_WRONG_TYPE},
    {"reward NaN", PROTO_SCORED, "samples", "reward", V_F64, NAN, PROTO_REJECT_NAN_REWARD},
    {"reward +inf", PROTO_SCORED, "samples", "reward", V_F64, INFINITY, PROTO_REJECT_NAN_REWARD},
    {"reward -inf", PROTO_SCORED, "samples", "reward", V_F64, -INFINITY, PROTO_REJECT_NAN_REWARD},
    {"reward float32 NaN", PROTO_SCORED, "samples", "reward", V_F32, NAN, PROTO_REJECT_NAN_REWARD},
    {"component NaN", PROTO_SCORED, "components", "correct", V_F64, NAN, PROTO_REJECT_NAN_REWARD},
    {"17 components", PROTO_SCORED, "samples", "components", V_MAX_COMPONENTS, 17, PROTO_REJECT_TOO_LARGE},
    {"component name 65 bytes", PROTO_SCORED, "components", "correct", V_STR_LEN, 65, PROTO_REJECT_TOO_LARGE},
    {"ref logprob inf", PROTO_SCORED, "samples", "ref_logprobs", V_REF_LOGPROB, INFINITY, PROTO_REJECT_NAN_LOGPROB},
    {"ref logprobs bin 119 bytes", PROTO_SCORED, "samples", "ref_logprobs", V_BIN_SHRINK, 1, PROTO_REJECT_BAD_LENGTH},
    {"stat NaN", PROTO_STATS, "values", "queue_depth", V_F64, NAN, PROTO_REJECT_OUT_OF_RANGE},
    {"score_work temperature 0", PROTO_SCORE_WORK, "body", "temperature", V_F64, 0, PROTO_REJECT_OUT_OF_RANGE},
    {"score_work token 264 ok at default vocab", PROTO_SCORE_WORK, "samples", "prompt", V_TOKEN, 264,
     PROTO_REJECT_NONE},
    {"role bogus", PROTO_HELLO, "body", "role", V_STR_LEN, 5, PROTO_REJECT_OUT_OF_RANGE},
    {"software with a control byte", PROTO_HELLO, "body", "software", V_STR_BYTE, 0x01, PROTO_REJECT_BAD_STRING},
    {"credit 0", PROTO_WORK_REQUEST, "body", "credit", V_UINT, 0, PROTO_REJECT_OUT_OF_RANGE},
    {"credit 1025", PROTO_SCORE_REQUEST, "body", "credit", V_UINT, 1025, PROTO_REJECT_OUT_OF_RANGE},
    {"bye reason 257 bytes", PROTO_BYE, "body", "reason", V_STR_LEN, 257, PROTO_REJECT_TOO_LARGE},
    {"announce version 0", PROTO_WEIGHTS_ANNOUNCE, "body", "version", V_UINT, 0, PROTO_REJECT_OUT_OF_RANGE},
    {"announce size 0", PROTO_WEIGHTS_ANNOUNCE, "body", "size", V_UINT, 0, PROTO_REJECT_OUT_OF_RANGE},
    {"announce chunk_max 32 MiB", PROTO_WEIGHTS_ANNOUNCE, "body", "chunk_max", V_UINT, 33554432,
     PROTO_REJECT_OUT_OF_RANGE},
    {"request length 0", PROTO_WEIGHTS_REQUEST, "body", "length", V_UINT, 0, PROTO_REJECT_OUT_OF_RANGE},
    {"request length 16 MiB + 1", PROTO_WEIGHTS_REQUEST, "body", "length", V_UINT, 16777217, PROTO_REJECT_OUT_OF_RANGE},
    {"request offset 2^63", PROTO_WEIGHTS_REQUEST, "body", "offset", V_UINT, 9223372036854775808.0,
     PROTO_REJECT_OUT_OF_RANGE},
    {"chunk status 3", PROTO_WEIGHTS_CHUNK, "body", "status", V_UINT, 3, PROTO_REJECT_OUT_OF_RANGE},
    {"chunk error with data", PROTO_WEIGHTS_CHUNK, "body", "status", V_UINT, 1, PROTO_REJECT_OUT_OF_RANGE},
    {"chunk past the blob", PROTO_WEIGHTS_CHUNK, "body", "offset", V_UINT, 3500, PROTO_REJECT_OUT_OF_RANGE},
};

static void test_bad_values(void **state) {
    (void)state;
    static ps_store_t st;
    static int32_t big[65537 + 64];
    static char names[17][8];
    proto_enc_t e;
    proto_enc_init(&e);
    for (size_t ci = 0; ci < sizeof(value_cases) / sizeof(value_cases[0]); ci++) {
        const value_case_t *vc = &value_cases[ci];
        encode_sample(vc->type, &e, &st);
        tree_t t;
        tree_load(&t, e.data, e.len);
        msgpack_object_kv *kv = find_kv(&t, vc->parent, vc->key);
        msgpack_object *v = &kv->val;
        static char sbuf[300];
        static unsigned char bbuf[4096];
        switch (vc->kind) {
        case V_UINT: *v = obj_uint((uint64_t)vc->num); break;
        case V_INT: *v = obj_int((int64_t)vc->num); break;
        case V_F64: *v = obj_f64(vc->num); break;
        case V_F32:
            *v = obj_f64(vc->num);
            v->type = MSGPACK_OBJECT_FLOAT32;
            break;
        case V_STR_LEN: /* a string of num bytes; for a named-map entry, the key */
            memset(sbuf, 'a', sizeof(sbuf));
            sbuf[(int)vc->num] = '\0';
            if (strcmp(vc->parent, "components") == 0)
                kv->key = obj_str(sbuf);
            else
                *v = obj_str(sbuf);
            break;
        case V_STR_BYTE:
            snprintf(sbuf, sizeof(sbuf), "%.*s", (int)v->via.str.size, v->via.str.ptr);
            sbuf[1] = (char)(int)vc->num;
            *v = obj_str(sbuf);
            break;
        case V_BIN_SHRINK: v->via.bin.size -= (uint32_t)vc->num; break;
        case V_TOKEN: {
            memcpy(bbuf, v->via.bin.ptr, v->via.bin.size);
            int32_t tok = (int32_t)(int64_t)vc->num;
            memcpy(bbuf, &tok, 4); /* little-endian host */
            *v = obj_bin(bbuf, v->via.bin.size);
            break;
        }
        case V_LOGPROB:
        case V_REF_LOGPROB: {
            memcpy(bbuf, v->via.bin.ptr, v->via.bin.size);
            float x = (float)vc->num;
            memcpy(bbuf + 8, &x, 4);
            *v = obj_bin(bbuf, v->via.bin.size);
            break;
        }
        case V_BIG_BIN:
            for (int i = 0; i < (int)vc->num; i++) big[i] = 65;
            *v = obj_bin(big, 4u * (uint32_t)vc->num);
            break;
        case V_EMPTY_BIN: *v = obj_bin(bbuf, 0); break;
        case V_EMPTY_ARRAY:
            v->type = MSGPACK_OBJECT_ARRAY;
            v->via.array.size = 0;
            v->via.array.ptr = NULL;
            break;
        case V_ARRAY_GROW: {
            uint32_t n = (uint32_t)vc->num;
            msgpack_object *a = msgpack_zone_malloc(t.up.zone, sizeof(*a) * n);
            for (uint32_t i = 0; i < n; i++) a[i] = v->via.array.ptr[0];
            v->via.array.ptr = a;
            v->via.array.size = n;
            break;
        }
        case V_MAX_COMPONENTS: {
            msgpack_object_kv *m = msgpack_zone_malloc(t.up.zone, sizeof(*m) * 17);
            for (int i = 0; i < 17; i++) {
                snprintf(names[i], sizeof(names[i]), "c%d", i);
                m[i].key = obj_str(names[i]);
                m[i].val = obj_f64(0.0);
            }
            v->type = MSGPACK_OBJECT_MAP;
            v->via.map.ptr = m;
            v->via.map.size = 17;
            break;
        }
        }
        if (strcmp(vc->name, "prompts x k above limit") == 0) /* 17 prompts x 256 > 4096 */
            find_kv(&t, "body", "k")->val = obj_uint(256);
        if (strcmp(vc->name, "samples is a map") == 0) { /* the samples array as a map */
            msgpack_object *s = &find_kv(&t, "body", "samples")->val;
            s->type = MSGPACK_OBJECT_MAP;
            s->via.map.size = 0;
            *v = obj_uint(42);
        }
        proto_reject_t got = tree_decode(t.root);
        if (got != vc->want)
            fail_msg("%s: got %s, want %s", vc->name, proto_reject_reason_name(got),
                     proto_reject_reason_name(vc->want));
        tree_free(&t);
    }
    proto_enc_fini(&e);
}

static void test_vocab_and_accept_opts(void **state) {
    (void)state;
    static ps_store_t st;
    proto_enc_t e;
    proto_enc_init(&e);
    encode_sample(PROTO_ROLLOUTS, &e, &st);
    proto_decode_opts_t o = {.accept = PROTO_ACCEPT_LEARNER_ROLLOUTS, .vocab_size = 264};
    assert_reason(decode_reason_opts(e.data, e.len, &o), PROTO_REJECT_NONE);
    o.vocab_size = 100; /* sample tokens go up to 263 */
    assert_reason(decode_reason_opts(e.data, e.len, &o), PROTO_REJECT_BAD_TOKEN);
    o.vocab_size = 264;
    o.accept = PROTO_ACCEPT_LEARNER_SCORED;
    assert_reason(decode_reason_opts(e.data, e.len, &o), PROTO_REJECT_UNEXPECTED_TYPE);
    encode_sample(PROTO_SCORED, &e, &st);
    assert_reason(decode_reason_opts(e.data, e.len, &o), PROTO_REJECT_NONE);
    o.accept = PROTO_ACCEPT_ACTOR_WORK;
    assert_reason(decode_reason_opts(e.data, e.len, &o), PROTO_REJECT_UNEXPECTED_TYPE);
    proto_enc_fini(&e);
}

static void test_frames(void **state) {
    (void)state;
    static ps_store_t st;
    proto_enc_t e;
    proto_enc_init(&e);
    proto_msg_t m, got;
    proto_reject_t why;
    char err[256];
    proto_msg_init(&got);
    ps_build(PROTO_WEIGHTS_CHUNK, &m, &st);
    assert_int_equal(proto_encode(&e, &m, NULL, NULL, 0), RLHF_OK);
    const void *f[3] = {e.data, st.chunk, st.chunk};
    size_t l[3] = {e.len, 1000, 1000};
    assert_int_equal(proto_decode_frames(&got, f, l, 2, NULL, &why, err, sizeof(err)), RLHF_OK);
    assert_ptr_equal(got.weights_chunk.data, st.chunk); /* borrowed, not copied */
    assert_int_equal(proto_decode_frames(&got, f, l, 1, NULL, &why, err, sizeof(err)), RLHF_EFORMAT);
    assert_reason(why, PROTO_REJECT_BAD_FRAMES);
    assert_int_equal(proto_decode_frames(&got, f, l, 3, NULL, &why, err, sizeof(err)), RLHF_EFORMAT);
    assert_reason(why, PROTO_REJECT_BAD_FRAMES);
    assert_int_equal(proto_decode_frames(&got, f, l, 0, NULL, &why, err, sizeof(err)), RLHF_EFORMAT);
    assert_reason(why, PROTO_REJECT_BAD_FRAMES);
    l[1] = 999;
    assert_int_equal(proto_decode_frames(&got, f, l, 2, NULL, &why, err, sizeof(err)), RLHF_EFORMAT);
    assert_reason(why, PROTO_REJECT_BAD_FRAMES);
    assert_non_null(strstr(err, "999"));
    /* header alone, then attach */
    assert_int_equal(proto_decode(&got, e.data, e.len, NULL, &why, NULL, 0), RLHF_OK);
    assert_null(got.weights_chunk.data);
    assert_int_equal(proto_weights_chunk_attach(&got, st.chunk, 1000, &why, NULL, 0), RLHF_OK);
    /* an error chunk carries an empty data frame */
    m.weights_chunk = (proto_weights_chunk_t){.version = 9, .status = PROTO_CHUNK_UNKNOWN_VERSION};
    assert_int_equal(proto_encode(&e, &m, NULL, NULL, 0), RLHF_OK);
    f[0] = e.data, l[0] = e.len, l[1] = 0;
    assert_int_equal(proto_decode_frames(&got, f, l, 2, NULL, &why, NULL, 0), RLHF_OK);
    assert_int_equal(got.weights_chunk.status, PROTO_CHUNK_UNKNOWN_VERSION);
    /* any other type is one frame */
    encode_sample(PROTO_HELLO, &e, &st);
    f[0] = e.data, l[0] = e.len;
    assert_int_equal(proto_decode_frames(&got, f, l, 1, NULL, &why, NULL, 0), RLHF_OK);
    assert_int_equal(proto_decode_frames(&got, f, l, 2, NULL, &why, NULL, 0), RLHF_EFORMAT);
    assert_reason(why, PROTO_REJECT_BAD_FRAMES);
    proto_msg_fini(&got);
    proto_enc_fini(&e);
}

/* The encoder refuses what the decoder would reject, with the same reason. */
static void test_encoder_refuses(void **state) {
    (void)state;
    static ps_store_t st;
    proto_enc_t e;
    proto_enc_init(&e);
    proto_msg_t m;
    proto_reject_t why;
    char err[256];

    ps_build(PROTO_ROLLOUTS, &m, &st);
    st.logprobs[3][10] = NAN;
    assert_int_equal(proto_encode(&e, &m, &why, err, sizeof(err)), RLHF_EINVAL);
    assert_reason(why, PROTO_REJECT_NAN_LOGPROB);
    assert_int_equal(e.len, 0);
    assert_non_null(strstr(err, "rollouts.samples[3].logprobs"));

    ps_build(PROTO_SCORED, &m, &st);
    st.scored[1].reward = INFINITY;
    assert_int_equal(proto_encode(&e, &m, &why, err, sizeof(err)), RLHF_EINVAL);
    assert_reason(why, PROTO_REJECT_NAN_REWARD);

    ps_build(PROTO_SCORED, &m, &st);
    st.components[0][1].name = "correct"; /* duplicate name */
    assert_int_equal(proto_encode(&e, &m, &why, err, sizeof(err)), RLHF_EINVAL);
    assert_reason(why, PROTO_REJECT_DUPLICATE_FIELD);

    ps_build(PROTO_HELLO, &m, &st);
    m.hello.role = 9;
    assert_int_equal(proto_encode(&e, &m, &why, err, sizeof(err)), RLHF_EINVAL);
    assert_reason(why, PROTO_REJECT_OUT_OF_RANGE);

    ps_build(PROTO_TICKET, &m, &st);
    st.tokens[1][3] = -5;
    assert_int_equal(proto_encode(&e, &m, &why, err, sizeof(err)), RLHF_EINVAL);
    assert_reason(why, PROTO_REJECT_BAD_TOKEN);
    assert_non_null(strstr(err, "ticket.prompts[1].tokens"));

    ps_build(PROTO_HEARTBEAT, &m, &st);
    m.sender[0] = '\0';
    assert_int_equal(proto_encode(&e, &m, &why, err, sizeof(err)), RLHF_EINVAL);
    assert_reason(why, PROTO_REJECT_BAD_STRING);
    m.type = 77;
    assert_int_equal(proto_encode(&e, &m, &why, err, sizeof(err)), RLHF_EINVAL);
    assert_reason(why, PROTO_REJECT_UNKNOWN_TYPE);

    char longid[PROTO_MAX_ID + 2];
    memset(longid, 'a', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    assert_int_equal(proto_msg_header(&m, PROTO_HEARTBEAT, longid, 1), RLHF_ERANGE);
    longid[PROTO_MAX_ID] = '\0';
    assert_int_equal(proto_msg_header(&m, PROTO_HEARTBEAT, longid, 1), RLHF_OK);
    assert_int_equal(proto_encode(&e, &m, &why, err, sizeof(err)), RLHF_OK);
    proto_enc_fini(&e);
}

static void test_reject_names_and_counters(void **state) {
    (void)state;
    /* every reason has a distinct Prometheus-safe label */
    for (int i = 0; i < PROTO_REJECT__COUNT; i++) {
        const char *a = proto_reject_reason_name((proto_reject_t)i);
        assert_true(strlen(a) > 0);
        for (const char *p = a; *p; p++) assert_true((*p >= 'a' && *p <= 'z') || *p == '_');
        for (int j = 0; j < i; j++) assert_string_not_equal(a, proto_reject_reason_name((proto_reject_t)j));
    }
    assert_string_equal(proto_reject_reason_name(PROTO_REJECT_NAN_REWARD), "nan_reward");
    assert_string_equal(proto_reject_reason_name(PROTO_REJECT__COUNT), "unknown");
    assert_string_equal(proto_type_name(PROTO_ROLLOUTS), "rollouts");
    assert_null(proto_type_name(5));
    proto_rejects_t r;
    proto_rejects_init(&r);
    assert_int_equal(proto_rejects_note(&r, PROTO_REJECT_TRUNCATED, 0.0), 1);  /* first: log */
    assert_int_equal(proto_rejects_note(&r, PROTO_REJECT_TRUNCATED, 30.0), 0); /* same minute: count only */
    assert_int_equal(proto_rejects_note(&r, PROTO_REJECT_BAD_MAGIC, 30.0), 1); /* other reason: log */
    assert_int_equal(proto_rejects_note(&r, PROTO_REJECT_TRUNCATED, 60.5), 1); /* a minute later: log */
    assert_int_equal(proto_rejects_note(&r, PROTO_REJECT_NONE, 60.5), 0);
    assert_int_equal(r.n[PROTO_REJECT_TRUNCATED], 3);
    assert_int_equal(r.n[PROTO_REJECT_BAD_MAGIC], 1);
    assert_int_equal(proto_rejects_total(&r), 4);
}

/* A big message then small ones: the arena grows once, then is reused. */
static void test_arena_reuse(void **state) {
    (void)state;
    static ps_store_t st;
    static int32_t toks[60000];
    static float lps[60000];
    proto_enc_t e;
    proto_msg_t m, got;
    proto_enc_init(&e);
    proto_msg_init(&got);
    ps_build(PROTO_ROLLOUTS, &m, &st);
    for (int i = 0; i < 60000; i++) toks[i] = i % 264, lps[i] = -1.0f;
    st.samples[0].completion = toks, st.samples[0].logprobs = lps, st.samples[0].n_completion = 60000;
    assert_int_equal(proto_encode(&e, &m, NULL, NULL, 0), RLHF_OK);
    for (int rep = 0; rep < 3; rep++) {
        assert_int_equal(proto_decode(&got, e.data, e.len, NULL, NULL, NULL, 0), RLHF_OK);
        assert_int_equal(got.rollouts.samples[0].n_completion, 60000);
        assert_int_equal(got.rollouts.samples[0].completion[59999], 59999 % 264);
    }
    assert_null(got.mem_.extra);
    encode_sample(PROTO_HELLO, &e, &st);
    for (int rep = 0; rep < 3; rep++) assert_int_equal(proto_decode(&got, e.data, e.len, NULL, NULL, NULL, 0), RLHF_OK);
    assert_string_equal(got.hello.caps[1], "ref_logprobs");
    proto_msg_fini(&got);
    proto_enc_fini(&e);
}

/* ---- ZeroMQ: a chunk goes out zero-copy, its free function runs once ---- */

static int g_freed;
static void count_free(void *data, void *hint) {
    (void)data;
    (*(int *)hint)++;
}

static void test_zmq_chunk(void **state) {
    (void)state;
    static ps_store_t st;
    void *ctx = zmq_ctx_new();
    void *router = zmq_socket(ctx, ZMQ_ROUTER), *dealer = zmq_socket(ctx, ZMQ_DEALER);
    assert_int_equal(proto_zmq_limit(router), RLHF_OK);
    assert_int_equal(proto_zmq_limit(dealer), RLHF_OK);
    assert_int_equal(zmq_bind(router, "tcp://127.0.0.1:*"), 0);
    char ep[256];
    size_t eplen = sizeof(ep);
    zmq_getsockopt(router, ZMQ_LAST_ENDPOINT, ep, &eplen);
    assert_int_equal(zmq_connect(dealer, ep), 0);

    proto_enc_t e;
    proto_msg_t m, got;
    proto_enc_init(&e);
    proto_msg_init(&got);
    ps_build(PROTO_WEIGHTS_REQUEST, &m, &st);
    assert_int_equal(proto_encode(&e, &m, NULL, NULL, 0), RLHF_OK);
    assert_true(zmq_send(dealer, e.data, e.len, 0) >= 0);

    char id[256], req[256];
    int idn = zmq_recv(router, id, sizeof(id), 0);
    int rn = zmq_recv(router, req, sizeof(req), 0);
    assert_true(idn > 0 && rn > 0);
    proto_decode_opts_t o = {.accept = PROTO_ACCEPT_LEARNER_WEIGHTS};
    assert_int_equal(proto_decode(&got, req, (size_t)rn, &o, NULL, NULL, 0), RLHF_OK);
    assert_int_equal(got.weights_request.length, 1000);

    ps_build(PROTO_WEIGHTS_CHUNK, &m, &st);
    assert_int_equal(proto_encode(&e, &m, NULL, NULL, 0), RLHF_OK);
    g_freed = 0;
    assert_int_equal(proto_zmq_send_chunk(router, id, (size_t)idn, e.data, e.len, st.chunk, 1000, count_free, &g_freed),
                     RLHF_OK);

    zmq_msg_t f[2];
    const void *frames[2];
    size_t lens[2];
    for (int i = 0; i < 2; i++) {
        zmq_msg_init(&f[i]);
        assert_true(zmq_msg_recv(&f[i], dealer, 0) >= 0);
        frames[i] = zmq_msg_data(&f[i]);
        lens[i] = zmq_msg_size(&f[i]);
        assert_int_equal(zmq_msg_more(&f[i]), i == 0);
    }
    o.accept = PROTO_ACCEPT_ACTOR_WEIGHTS;
    assert_int_equal(proto_decode_frames(&got, frames, lens, 2, &o, NULL, NULL, 0), RLHF_OK);
    eq_msg(&m, &got);
    zmq_msg_close(&f[0]);
    zmq_msg_close(&f[1]);
    int linger = 0;
    zmq_setsockopt(router, ZMQ_LINGER, &linger, sizeof(linger));
    zmq_setsockopt(dealer, ZMQ_LINGER, &linger, sizeof(linger));
    zmq_close(router);
    zmq_close(dealer);
    zmq_ctx_term(ctx);
    assert_int_equal(g_freed, 1);
    proto_msg_fini(&got);
    proto_enc_fini(&e);
}

static void test_checksum(void **state) {
    (void)state;
    unsigned char b[100];
    for (int i = 0; i < 100; i++) b[i] = (unsigned char)i;
    uint64_t h = proto_weights_checksum(b, 100);
    assert_true(h == proto_weights_checksum(b, 100));
    b[50] ^= 1;
    assert_true(h != proto_weights_checksum(b, 100));
    /* XXH3_64bits of the empty input, seed 0 (the xxHash reference value) */
    assert_true(proto_weights_checksum("", 0) == 0x2D06800538D394C2ull);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_encoding_is_bin_and_sized),
        cmocka_unit_test(test_lenient_inputs),
        cmocka_unit_test(test_every_field_wrong_type),
        cmocka_unit_test(test_every_field_negative),
        cmocka_unit_test(test_every_field_deleted),
        cmocka_unit_test(test_every_field_duplicated),
        cmocka_unit_test(test_truncated_everywhere),
        cmocka_unit_test(test_raw_bytes),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_vocab_and_accept_opts),
        cmocka_unit_test(test_frames),
        cmocka_unit_test(test_encoder_refuses),
        cmocka_unit_test(test_reject_names_and_counters),
        cmocka_unit_test(test_arena_reuse),
        cmocka_unit_test(test_zmq_chunk),
        cmocka_unit_test(test_checksum),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
