/*
 * proto_samples.h - one valid, deterministic message of every protocol type
 * (header-only; for test_proto.c and proto_tool.c, which writes them as the
 * fuzzer's seed corpus).
 *
 * ps_build() fills m with borrowed pointers into st, which must outlive m's
 * use. Contents exercise every field, optional ones included.
 */
#ifndef RLHF_PROTO_SAMPLES_H
#define RLHF_PROTO_SAMPLES_H

#include <stdio.h>
#include <string.h>

#include "common/rng.h"
#include "proto/proto.h"

#define PS_SAMPLES 8 /* rollouts: 8 samples of PS_GEN tokens, as in the benchmark */
#define PS_PROMPT  12
#define PS_GEN     256

typedef struct {
    const char *caps[3];
    proto_named_t named[4];
    int32_t tokens[PS_SAMPLES][PS_PROMPT + PS_GEN];
    float logprobs[PS_SAMPLES][PS_GEN];
    proto_prompt_t prompts[3];
    proto_sample_t samples[PS_SAMPLES];
    proto_score_item_t items[4];
    proto_scored_sample_t scored[3];
    proto_named_t components[3][2];
    unsigned char chunk[1000];
} ps_store_t;

static const proto_type_t ps_types[] = {PROTO_HELLO,        PROTO_HEARTBEAT,        PROTO_BYE,
                                        PROTO_STATS,        PROTO_WORK_REQUEST,     PROTO_TICKET,
                                        PROTO_ROLLOUTS,     PROTO_SCORE_REQUEST,    PROTO_SCORE_WORK,
                                        PROTO_SCORED,       PROTO_WEIGHTS_ANNOUNCE, PROTO_WEIGHTS_REQUEST,
                                        PROTO_WEIGHTS_CHUNK};
#define PS_N_TYPES ((int)(sizeof(ps_types) / sizeof(ps_types[0])))

static inline void ps_build(proto_type_t t, proto_msg_t *m, ps_store_t *st) {
    rng_t r;
    rng_init(&r, 1000 + (uint64_t)t);
    memset(st, 0, sizeof(*st));
    for (int s = 0; s < PS_SAMPLES; s++) {
        for (int i = 0; i < PS_PROMPT + PS_GEN; i++) st->tokens[s][i] = (int32_t)rng_below(&r, 264);
        for (int i = 0; i < PS_GEN; i++) st->logprobs[s][i] = -4.0f * rng_float(&r);
    }
    proto_msg_init(m);
    proto_msg_header(m, t, "test-0", 1000 + (uint64_t)t);
    switch (t) {
    case PROTO_HELLO:
        st->caps[0] = "gen", st->caps[1] = "ref_logprobs", st->caps[2] = "batch=32";
        m->hello = (proto_hello_t){.role = PROTO_ROLE_ACTOR,
                                   .caps = st->caps,
                                   .n_caps = 3,
                                   .software = "rlhf-c/0.1 (test)",
                                   .weights_version = 7};
        break;
    case PROTO_HEARTBEAT: m->heartbeat = (proto_heartbeat_t){.in_flight = 3, .weights_version = 9}; break;
    case PROTO_BYE: m->bye.reason = "SIGTERM: draining"; break;
    case PROTO_STATS:
        st->named[0] = (proto_named_t){"gen_tokens_total", 123456.0};
        st->named[1] = (proto_named_t){"busy_seconds_total", 1.5};
        st->named[2] = (proto_named_t){"queue_depth", 0.0};
        m->stats = (proto_stats_t){.values = st->named, .n_values = 3};
        break;
    case PROTO_WORK_REQUEST: m->work_request = (proto_work_request_t){.credit = 2, .weights_version = 5}; break;
    case PROTO_TICKET: {
        static const uint32_t lens[3] = {5, 17, 1};
        for (int i = 0; i < 3; i++)
            st->prompts[i] =
                (proto_prompt_t){.id = (1ull << 32) + 100u + (uint64_t)i, .tokens = st->tokens[i], .n_tokens = lens[i]};
        proto_sampling_t s = {.temperature = 0.7f,
                              .top_k = 40,
                              .top_p = 0.95f,
                              .max_new_tokens = 128,
                              .n_stop = 2,
                              .seed = 0xdeadbeefcafeull};
        s.stop[0] = 258, s.stop[1] = 262;
        m->ticket = (proto_ticket_t){.ticket = 42,
                                     .policy_version = 5,
                                     .k = 4,
                                     .deadline_ms = 30000,
                                     .task = "add",
                                     .sampling = s,
                                     .prompts = st->prompts,
                                     .n_prompts = 3};
        break;
    }
    case PROTO_ROLLOUTS:
        for (int i = 0; i < PS_SAMPLES; i++)
            st->samples[i] = (proto_sample_t){.prompt_index = (uint32_t)i / 4,
                                              .sample_index = (uint32_t)i % 4,
                                              .prompt = st->tokens[i],
                                              .n_prompt = PS_PROMPT,
                                              .completion = st->tokens[i] + PS_PROMPT,
                                              .logprobs = st->logprobs[i],
                                              .n_completion = PS_GEN - (uint32_t)i,
                                              .finish = i % 2 ? PROTO_FINISH_STOP : PROTO_FINISH_LENGTH,
                                              .policy_version = 5,
                                              .queue_us = 1000u * (uint64_t)i,
                                              .gen_us = 250000 + (uint64_t)i};
        m->rollouts = (proto_rollouts_t){.ticket = 42, .samples = st->samples, .n_samples = PS_SAMPLES};
        break;
    case PROTO_SCORE_REQUEST: m->score_request = (proto_work_request_t){.credit = 3}; break;
    case PROTO_SCORE_WORK:
        for (int i = 0; i < 4; i++)
            st->items[i] = (proto_score_item_t){.prompt_index = (uint32_t)i / 2,
                                                .sample_index = (uint32_t)i % 2,
                                                .prompt_id = 77u + (uint64_t)i / 2,
                                                .prompt = st->tokens[i],
                                                .n_prompt = PS_PROMPT,
                                                .completion = st->tokens[i] + PS_PROMPT,
                                                .n_completion = 30u + (uint32_t)i,
                                                .finish = PROTO_FINISH_STOP};
        m->score_work = (proto_score_work_t){
            .ticket = 42, .task = "add", .temperature = 0.7f, .want_ref = 1, .items = st->items, .n_items = 4};
        break;
    case PROTO_SCORED:
        for (int i = 0; i < 3; i++) {
            st->components[i][0] = (proto_named_t){"correct", i == 1 ? 1.0 : 0.0};
            st->components[i][1] = (proto_named_t){"length_penalty", -0.01 * i};
            st->scored[i] = (proto_scored_sample_t){.prompt_index = 0,
                                                    .sample_index = (uint32_t)i,
                                                    .reward = i == 1 ? 0.99 : -0.02 * i,
                                                    .components = i < 2 ? st->components[i] : NULL,
                                                    .n_components = i < 2 ? 2 : 0,
                                                    .ref_logprobs = i != 1 ? st->logprobs[i] : NULL,
                                                    .n_ref = i != 1 ? 30u + (uint32_t)i : 0,
                                                    .score_us = i ? 1234u : 0};
        }
        m->scored = (proto_scored_t){.ticket = 42, .samples = st->scored, .n_samples = 3};
        break;
    case PROTO_WEIGHTS_ANNOUNCE:
        m->weights_announce = (proto_weights_announce_t){
            .version = 3, .size = 4000, .checksum = 0x0123456789abcdefull, .chunk_max = PROTO_CHUNK_BYTES};
        break;
    case PROTO_WEIGHTS_REQUEST:
        m->weights_request = (proto_weights_request_t){.version = 3, .offset = 1000, .length = 1000};
        break;
    case PROTO_WEIGHTS_CHUNK:
        for (int i = 0; i < 1000; i++) st->chunk[i] = (unsigned char)(i * 7 + 3);
        m->weights_chunk = (proto_weights_chunk_t){.version = 3,
                                                   .offset = 1000,
                                                   .length = 1000,
                                                   .status = PROTO_CHUNK_OK,
                                                   .size = 4000,
                                                   .checksum = 0x0123456789abcdefull,
                                                   .data = st->chunk};
        break;
    default: break;
    }
}

#endif
