/*
 * fuzz_decode.c - libFuzzer target for the decoder (`make fuzz`; excluded
 * from rlhf_proto by proto/CMakeLists.txt).
 *
 * Each input is decoded three ways: as one frame with default options; as
 * two frames split where data[0] says, through proto_decode_frames; and as
 * one frame with a small vocabulary and an accept mask from data[0]. A
 * decoder must never crash, leak or read out of bounds (ASan, UBSan), and
 * its verdict must be consistent: a reason is NONE exactly when the return
 * is RLHF_OK, and whatever it accepts, the encoder encodes again, that
 * encoding decodes, and encoding the result reproduces it byte for byte.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"

static proto_msg_t g_m, g_m2;
static proto_enc_t g_e, g_e2;

static void check(int ok) {
    if (!ok) abort();
}

static void round_trip(const proto_msg_t *m) {
    proto_reject_t why;
    check(proto_encode(&g_e, m, &why, NULL, 0) == RLHF_OK && why == PROTO_REJECT_NONE);
    check(proto_decode(&g_m2, g_e.data, g_e.len, NULL, &why, NULL, 0) == RLHF_OK);
    check(g_m2.type == m->type && g_m2.seq == m->seq && strcmp(g_m2.sender, m->sender) == 0);
    check(proto_encode(&g_e2, &g_m2, NULL, NULL, 0) == RLHF_OK);
    check(g_e2.len == g_e.len && memcmp(g_e2.data, g_e.data, g_e.len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    proto_reject_t why;
    char err[160];

    /* 1. one frame, default options */
    rlhf_err_t rc = proto_decode(&g_m, data, size, NULL, &why, err, sizeof(err));
    check((rc == RLHF_OK) == (why == PROTO_REJECT_NONE) && why < PROTO_REJECT__COUNT);
    if (rc == RLHF_OK) round_trip(&g_m);

    /* 2. two frames: header, then a data frame of the rest */
    if (size > 1) {
        size_t cut = 1 + (size_t)data[0] * (size - 1) / 255;
        const void *frames[2] = {data + 1, data + cut};
        size_t lens[2] = {cut - 1, size - cut};
        rc = proto_decode_frames(&g_m, frames, lens, 2, NULL, &why, err, sizeof(err));
        check((rc == RLHF_OK) == (why == PROTO_REJECT_NONE));
        if (rc == RLHF_OK) {
            check(g_m.type == PROTO_WEIGHTS_CHUNK && g_m.weights_chunk.length == lens[1]);
            if (lens[1]) check(memcmp(g_m.weights_chunk.data, data + cut, lens[1]) == 0);
        }
    }

    /* 3. a socket's view: small vocabulary, an accept mask */
    if (size > 0) {
        proto_decode_opts_t o = {.accept = (uint64_t)data[0] * 0x0101010101010101ull, .vocab_size = 264};
        rc = proto_decode(&g_m, data, size, &o, &why, NULL, 0);
        check((rc == RLHF_OK) == (why == PROTO_REJECT_NONE));
        if (rc == RLHF_OK) check(o.accept == 0 || (o.accept >> g_m.type & 1u));
    }
    return 0;
}
