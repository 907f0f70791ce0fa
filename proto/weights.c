/*
 * weights.c - weights_announce, weights_request and weights_chunk (a
 * msgpack header frame followed by a raw data frame), the blob checksum,
 * and the ZeroMQ glue that sends a chunk without copying the blob
 * (PROTOCOL.md "Weights").
 */
#include <string.h>
#include <xxhash.h>
#include <zmq.h>

#include "proto/proto_int.h"

#define TRY PROTO__TRY

uint64_t proto_weights_checksum(const void *blob, size_t n) {
    return (uint64_t)XXH3_64bits(blob, n);
}

/* ---- weights_announce ---- */

static const char *const announce_keys[] = {"version", "size", "checksum", "chunk_max"};

int proto__dec_weights_announce(proto__dec_t *d, const msgpack_object *body, proto_msg_t *m) {
    const msgpack_object *v[4];
    proto_weights_announce_t *a = &m->weights_announce;
    TRY(proto__fields(d, body, announce_keys, 4, 0xfu, v));
    TRY(proto__get_u64(d, v[0], "version", &a->version));
    TRY(proto__get_u64(d, v[1], "size", &a->size));
    TRY(proto__get_u64(d, v[2], "checksum", &a->checksum));
    return proto__get_u32(d, v[3], "chunk_max", &a->chunk_max);
}

int proto__check_weights_announce(proto__ctx_t *c, const proto_msg_t *m) {
    const proto_weights_announce_t *a = &m->weights_announce;
    TRY(proto__check_range(c, "version", a->version, 1, UINT64_MAX));
    TRY(proto__check_range(c, "size", a->size, 1, PROTO_MAX_BLOB_BYTES));
    return proto__check_range(c, "chunk_max", a->chunk_max, 1, PROTO_MAX_CHUNK_BYTES);
}

size_t proto__bound_weights_announce(const proto_msg_t *m) {
    (void)m;
    return 8 + 4 * PROTO__FIELD;
}

int proto__pack_weights_announce(msgpack_packer *pk, const proto_msg_t *m) {
    const proto_weights_announce_t *a = &m->weights_announce;
    TRY(msgpack_pack_map(pk, 4));
    TRY(proto__pack_key(pk, "version"));
    TRY(msgpack_pack_uint64(pk, a->version));
    TRY(proto__pack_key(pk, "size"));
    TRY(msgpack_pack_uint64(pk, a->size));
    TRY(proto__pack_key(pk, "checksum"));
    TRY(msgpack_pack_uint64(pk, a->checksum));
    TRY(proto__pack_key(pk, "chunk_max"));
    return msgpack_pack_uint32(pk, a->chunk_max);
}

/* ---- weights_request ---- */

static const char *const request_keys[] = {"version", "offset", "length"};

int proto__dec_weights_request(proto__dec_t *d, const msgpack_object *body, proto_msg_t *m) {
    const msgpack_object *v[3];
    proto_weights_request_t *r = &m->weights_request;
    TRY(proto__fields(d, body, request_keys, 3, 7u, v));
    TRY(proto__get_u64(d, v[0], "version", &r->version));
    TRY(proto__get_u64(d, v[1], "offset", &r->offset));
    return proto__get_u32(d, v[2], "length", &r->length);
}

int proto__check_weights_request(proto__ctx_t *c, const proto_msg_t *m) {
    const proto_weights_request_t *r = &m->weights_request;
    TRY(proto__check_range(c, "version", r->version, 1, UINT64_MAX));
    TRY(proto__check_range(c, "length", r->length, 1, PROTO_MAX_CHUNK_BYTES));
    return proto__check_range(c, "offset", r->offset, 0, PROTO_MAX_BLOB_BYTES - r->length);
}

size_t proto__bound_weights_request(const proto_msg_t *m) {
    (void)m;
    return 8 + 3 * PROTO__FIELD;
}

int proto__pack_weights_request(msgpack_packer *pk, const proto_msg_t *m) {
    const proto_weights_request_t *r = &m->weights_request;
    TRY(msgpack_pack_map(pk, 3));
    TRY(proto__pack_key(pk, "version"));
    TRY(msgpack_pack_uint64(pk, r->version));
    TRY(proto__pack_key(pk, "offset"));
    TRY(msgpack_pack_uint64(pk, r->offset));
    TRY(proto__pack_key(pk, "length"));
    return msgpack_pack_uint32(pk, r->length);
}

/* ---- weights_chunk (header frame) ---- */

static const char *const chunk_keys[] = {"version", "offset", "length", "status", "size", "checksum"};

int proto__dec_weights_chunk(proto__dec_t *d, const msgpack_object *body, proto_msg_t *m) {
    const msgpack_object *v[6];
    proto_weights_chunk_t *k = &m->weights_chunk;
    TRY(proto__fields(d, body, chunk_keys, 6, 0x3fu, v));
    TRY(proto__get_u64(d, v[0], "version", &k->version));
    TRY(proto__get_u64(d, v[1], "offset", &k->offset));
    TRY(proto__get_u32(d, v[2], "length", &k->length));
    TRY(proto__get_u32(d, v[3], "status", &k->status));
    TRY(proto__get_u64(d, v[4], "size", &k->size));
    TRY(proto__get_u64(d, v[5], "checksum", &k->checksum));
    k->data = NULL;
    return 0;
}

int proto__check_weights_chunk(proto__ctx_t *c, const proto_msg_t *m) {
    const proto_weights_chunk_t *k = &m->weights_chunk;
    TRY(proto__check_range(c, "status", k->status, PROTO_CHUNK_OK, PROTO_CHUNK_BAD_RANGE));
    if (k->status != PROTO_CHUNK_OK) return proto__check_range(c, "length", k->length, 0, 0);
    TRY(proto__check_range(c, "version", k->version, 1, UINT64_MAX));
    TRY(proto__check_range(c, "size", k->size, 1, PROTO_MAX_BLOB_BYTES));
    TRY(proto__check_range(c, "length", k->length, 1, PROTO_MAX_CHUNK_BYTES));
    return proto__check_range(c, "offset", k->offset, 0, k->size - (k->length < k->size ? k->length : k->size));
}

size_t proto__bound_weights_chunk(const proto_msg_t *m) {
    (void)m;
    return 8 + 6 * PROTO__FIELD;
}

int proto__pack_weights_chunk(msgpack_packer *pk, const proto_msg_t *m) {
    const proto_weights_chunk_t *k = &m->weights_chunk;
    TRY(msgpack_pack_map(pk, 6));
    TRY(proto__pack_key(pk, "version"));
    TRY(msgpack_pack_uint64(pk, k->version));
    TRY(proto__pack_key(pk, "offset"));
    TRY(msgpack_pack_uint64(pk, k->offset));
    TRY(proto__pack_key(pk, "length"));
    TRY(msgpack_pack_uint32(pk, k->length));
    TRY(proto__pack_key(pk, "status"));
    TRY(msgpack_pack_uint32(pk, k->status));
    TRY(proto__pack_key(pk, "size"));
    TRY(msgpack_pack_uint64(pk, k->size));
    TRY(proto__pack_key(pk, "checksum"));
    return msgpack_pack_uint64(pk, k->checksum);
}

/* ---- ZeroMQ glue ---- */

rlhf_err_t proto_zmq_limit(void *sock) {
    int64_t max = PROTO_MAX_MSG_BYTES;
    return zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &max, sizeof(max)) == 0 ? RLHF_OK : RLHF_EIO;
}

rlhf_err_t proto_zmq_send_chunk(void *sock, const void *route, size_t route_len, const void *hdr, size_t hdr_len,
                                const void *data, size_t data_len, proto_zmq_free_fn *ffn, void *hint) {
    zmq_msg_t part;
    /* Build the data frame first, so ffn runs exactly once whatever fails. */
    zmq_msg_t body;
    if (data_len > 0) {
        if (zmq_msg_init_data(&body, (void *)data, data_len, ffn, hint) != 0) {
            if (ffn) ffn((void *)data, hint);
            return RLHF_EIO;
        }
    } else {
        zmq_msg_init(&body);
        if (ffn && data) ffn((void *)data, hint);
    }
    if (route && route_len) {
        if (zmq_msg_init_size(&part, route_len) != 0) goto fail;
        memcpy(zmq_msg_data(&part), route, route_len);
        if (zmq_msg_send(&part, sock, ZMQ_SNDMORE) < 0) {
            zmq_msg_close(&part);
            goto fail;
        }
    }
    if (zmq_send(sock, hdr, hdr_len, ZMQ_SNDMORE) < 0) goto fail;
    if (zmq_msg_send(&body, sock, 0) < 0) goto fail;
    return RLHF_OK;
fail:
    zmq_msg_close(&body); /* runs ffn */
    return RLHF_EIO;
}
