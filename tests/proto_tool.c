/*
 * proto_tool.c - a small driver of the C codec for tests and the fuzzer:
 *
 *   proto_tool samples DIR     write one valid message of every type as
 *                              DIR/<type>.msg (the fuzzer's seed corpus;
 *                              a weights_chunk's data frame goes to
 *                              DIR/weights_chunk.data) and its JSON as .json
 *   proto_tool decode FILE...  decode each file as one frame, print JSON
 *   proto_tool serve [EP]      ROUTER bound on EP (default tcp://127.0.0.1:*);
 *                              prints the endpoint, then answers every
 *                              request [frames...] with [json, frames of the
 *                              decoded message encoded again by C]; a
 *                              request "quit" ends it.
 *
 * The JSON mirrors the wire body (PROTOCOL.md) with every default filled
 * in, bins as arrays of numbers, floats printed exactly (%.17g); a rejected
 * message prints {"reject": "<reason>", "detail": "..."}.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "proto/proto.h"
#include "tests/proto_samples.h"

static void j_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const char *p = s ? s : ""; *p; p++) {
        if (*p == '"' || *p == '\\') fputc('\\', f);
        if ((unsigned char)*p < 0x20)
            fprintf(f, "\\u%04x", (unsigned char)*p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static void j_i32s(FILE *f, const int32_t *t, uint32_t n) {
    fputc('[', f);
    for (uint32_t i = 0; i < n; i++) fprintf(f, "%s%d", i ? "," : "", (int)t[i]);
    fputc(']', f);
}

static void j_f32s(FILE *f, const float *x, uint32_t n) {
    fputc('[', f);
    for (uint32_t i = 0; i < n; i++) fprintf(f, "%s%.17g", i ? "," : "", (double)x[i]);
    fputc(']', f);
}

static void j_named(FILE *f, const proto_named_t *v, uint32_t n) {
    fputc('{', f);
    for (uint32_t i = 0; i < n; i++) {
        if (i) fputc(',', f);
        j_str(f, v[i].name);
        fprintf(f, ":%.17g", v[i].value);
    }
    fputc('}', f);
}

#define U64(x) ((unsigned long long)(x))

static void j_msg(FILE *f, const proto_msg_t *m) {
    fprintf(f, "{\"type\":\"%s\",\"sender\":", proto_type_name(m->type));
    j_str(f, m->sender);
    fprintf(f, ",\"seq\":%llu,\"body\":{", U64(m->seq));
    switch (m->type) {
    case PROTO_HELLO:
        fprintf(f, "\"role\":\"%s\",\"caps\":[", proto_role_name(m->hello.role));
        for (uint32_t i = 0; i < m->hello.n_caps; i++) {
            if (i) fputc(',', f);
            j_str(f, m->hello.caps[i]);
        }
        fprintf(f, "],\"software\":");
        j_str(f, m->hello.software);
        fprintf(f, ",\"weights_version\":%llu", U64(m->hello.weights_version));
        break;
    case PROTO_HEARTBEAT:
        fprintf(f, "\"in_flight\":%u,\"weights_version\":%llu", m->heartbeat.in_flight,
                U64(m->heartbeat.weights_version));
        break;
    case PROTO_BYE:
        fprintf(f, "\"reason\":");
        j_str(f, m->bye.reason);
        break;
    case PROTO_STATS:
        fprintf(f, "\"values\":");
        j_named(f, m->stats.values, m->stats.n_values);
        break;
    case PROTO_WORK_REQUEST:
        fprintf(f, "\"credit\":%u,\"weights_version\":%llu", m->work_request.credit,
                U64(m->work_request.weights_version));
        break;
    case PROTO_SCORE_REQUEST: fprintf(f, "\"credit\":%u", m->score_request.credit); break;
    case PROTO_TICKET: {
        const proto_ticket_t *t = &m->ticket;
        const proto_sampling_t *s = &t->sampling;
        fprintf(f, "\"ticket\":%llu,\"policy_version\":%llu,\"k\":%u,\"deadline_ms\":%u,\"task\":", U64(t->ticket),
                U64(t->policy_version), t->k, t->deadline_ms);
        j_str(f, t->task);
        fprintf(f, ",\"sampling\":{\"temperature\":%.17g,\"top_k\":%u,\"top_p\":%.17g,\"max_new_tokens\":%u,\"stop\":",
                (double)s->temperature, s->top_k, (double)s->top_p, s->max_new_tokens);
        j_i32s(f, s->stop, s->n_stop);
        fprintf(f, ",\"seed\":%llu},\"prompts\":[", U64(s->seed));
        for (uint32_t i = 0; i < t->n_prompts; i++) {
            fprintf(f, "%s{\"id\":%llu,\"tokens\":", i ? "," : "", U64(t->prompts[i].id));
            j_i32s(f, t->prompts[i].tokens, t->prompts[i].n_tokens);
            fputc('}', f);
        }
        fputc(']', f);
        break;
    }
    case PROTO_ROLLOUTS:
        fprintf(f, "\"ticket\":%llu,\"samples\":[", U64(m->rollouts.ticket));
        for (uint32_t i = 0; i < m->rollouts.n_samples; i++) {
            const proto_sample_t *s = &m->rollouts.samples[i];
            fprintf(f, "%s{\"prompt_index\":%u,\"sample_index\":%u,\"prompt\":", i ? "," : "", s->prompt_index,
                    s->sample_index);
            j_i32s(f, s->prompt, s->n_prompt);
            fprintf(f, ",\"completion\":");
            j_i32s(f, s->completion, s->n_completion);
            fprintf(f, ",\"logprobs\":");
            j_f32s(f, s->logprobs, s->n_completion);
            fprintf(f, ",\"finish\":%u,\"policy_version\":%llu,\"queue_us\":%llu,\"gen_us\":%llu}", s->finish,
                    U64(s->policy_version), U64(s->queue_us), U64(s->gen_us));
        }
        fputc(']', f);
        break;
    case PROTO_SCORE_WORK: {
        const proto_score_work_t *w = &m->score_work;
        fprintf(f, "\"ticket\":%llu,\"task\":", U64(w->ticket));
        j_str(f, w->task);
        fprintf(f, ",\"temperature\":%.17g,\"want_ref\":%s,\"samples\":[", (double)w->temperature,
                w->want_ref ? "true" : "false");
        for (uint32_t i = 0; i < w->n_items; i++) {
            const proto_score_item_t *s = &w->items[i];
            fprintf(f, "%s{\"prompt_index\":%u,\"sample_index\":%u,\"prompt_id\":%llu,\"prompt\":", i ? "," : "",
                    s->prompt_index, s->sample_index, U64(s->prompt_id));
            j_i32s(f, s->prompt, s->n_prompt);
            fprintf(f, ",\"completion\":");
            j_i32s(f, s->completion, s->n_completion);
            fprintf(f, ",\"finish\":%u}", s->finish);
        }
        fputc(']', f);
        break;
    }
    case PROTO_SCORED:
        fprintf(f, "\"ticket\":%llu,\"samples\":[", U64(m->scored.ticket));
        for (uint32_t i = 0; i < m->scored.n_samples; i++) {
            const proto_scored_sample_t *s = &m->scored.samples[i];
            fprintf(f, "%s{\"prompt_index\":%u,\"sample_index\":%u,\"reward\":%.17g,\"components\":", i ? "," : "",
                    s->prompt_index, s->sample_index, s->reward);
            j_named(f, s->components, s->n_components);
            fprintf(f, ",\"ref_logprobs\":");
            if (s->n_ref)
                j_f32s(f, s->ref_logprobs, s->n_ref);
            else
                fprintf(f, "null");
            fprintf(f, ",\"score_us\":%llu}", U64(s->score_us));
        }
        fputc(']', f);
        break;
    case PROTO_WEIGHTS_ANNOUNCE:
        fprintf(f, "\"version\":%llu,\"size\":%llu,\"checksum\":%llu,\"chunk_max\":%u",
                U64(m->weights_announce.version), U64(m->weights_announce.size), U64(m->weights_announce.checksum),
                m->weights_announce.chunk_max);
        break;
    case PROTO_WEIGHTS_REQUEST:
        fprintf(f, "\"version\":%llu,\"offset\":%llu,\"length\":%u", U64(m->weights_request.version),
                U64(m->weights_request.offset), m->weights_request.length);
        break;
    case PROTO_WEIGHTS_CHUNK: {
        const proto_weights_chunk_t *k = &m->weights_chunk;
        fprintf(f,
                "\"version\":%llu,\"offset\":%llu,\"length\":%u,\"status\":%u,\"size\":%llu,\"checksum\":%llu,"
                "\"data_xxh3\":%llu",
                U64(k->version), U64(k->offset), k->length, k->status, U64(k->size), U64(k->checksum),
                U64(k->data ? proto_weights_checksum(k->data, k->length) : 0));
        break;
    }
    default: break;
    }
    fprintf(f, "}}");
}

static void j_reject(FILE *f, proto_reject_t why, const char *detail) {
    fprintf(f, "{\"reject\":\"%s\",\"detail\":", proto_reject_reason_name(why));
    j_str(f, detail);
    fputc('}', f);
}

static int write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(p, 1, n, f) != n)) {
        fprintf(stderr, "proto_tool: cannot write %s: %s\n", path, strerror(errno));
        if (f) fclose(f);
        return -1;
    }
    return fclose(f);
}

static int cmd_samples(const char *dir) {
    static ps_store_t st;
    proto_enc_t e;
    proto_enc_init(&e);
    char path[4096], err[256];
    int rc = 0;
    for (int i = 0; i < PS_N_TYPES && rc == 0; i++) {
        proto_msg_t m;
        ps_build(ps_types[i], &m, &st);
        if (proto_encode(&e, &m, NULL, err, sizeof(err)) != RLHF_OK) {
            fprintf(stderr, "proto_tool: %s\n", err);
            rc = 1;
            break;
        }
        const char *name = proto_type_name(m.type);
        snprintf(path, sizeof(path), "%s/%s.msg", dir, name);
        rc |= write_file(path, e.data, e.len);
        if (m.type == PROTO_WEIGHTS_CHUNK) {
            snprintf(path, sizeof(path), "%s/%s.data", dir, name);
            rc |= write_file(path, m.weights_chunk.data, m.weights_chunk.length);
        }
        snprintf(path, sizeof(path), "%s/%s.json", dir, name);
        FILE *f = fopen(path, "w");
        if (!f) {
            rc = 1;
            break;
        }
        j_msg(f, &m);
        fputc('\n', f);
        fclose(f);
    }
    proto_enc_fini(&e);
    return rc ? 1 : 0;
}

static int cmd_decode(int n, char **files) {
    proto_msg_t m;
    proto_msg_init(&m);
    int bad = 0;
    for (int i = 0; i < n; i++) {
        FILE *f = fopen(files[i], "rb");
        if (!f) {
            fprintf(stderr, "proto_tool: cannot open %s\n", files[i]);
            return 2;
        }
        fseek(f, 0, SEEK_END);
        long len = ftell(f);
        fseek(f, 0, SEEK_SET);
        char *buf = malloc(len > 0 ? (size_t)len : 1);
        size_t got = len > 0 ? fread(buf, 1, (size_t)len, f) : 0;
        fclose(f);
        proto_reject_t why;
        char err[256];
        if (proto_decode(&m, buf, got, NULL, &why, err, sizeof(err)) == RLHF_OK) {
            j_msg(stdout, &m);
        } else {
            j_reject(stdout, why, err);
            bad = 1;
        }
        fputc('\n', stdout);
        free(buf);
    }
    proto_msg_fini(&m);
    return bad;
}

static int cmd_serve(const char *ep) {
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_ROUTER);
    proto_zmq_limit(s);
    if (zmq_bind(s, ep) != 0) {
        fprintf(stderr, "proto_tool: cannot bind %s: %s\n", ep, zmq_strerror(errno));
        return 2;
    }
    char bound[256];
    size_t blen = sizeof(bound);
    zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, bound, &blen);
    printf("%s\n", bound);
    fflush(stdout);
    proto_msg_t m;
    proto_enc_t e;
    proto_msg_init(&m);
    proto_enc_init(&e);
    for (;;) {
        zmq_msg_t f[4];
        int n = 0, more = 1;
        while (more) {
            zmq_msg_t part;
            zmq_msg_init(&part);
            if (zmq_msg_recv(&part, s, 0) < 0) {
                zmq_msg_close(&part);
                goto done;
            }
            more = zmq_msg_more(&part);
            if (n < 4)
                f[n++] = part;
            else
                zmq_msg_close(&part);
        }
        if (n == 2 && zmq_msg_size(&f[1]) == 4 && memcmp(zmq_msg_data(&f[1]), "quit", 4) == 0) {
            zmq_send(s, zmq_msg_data(&f[0]), zmq_msg_size(&f[0]), ZMQ_SNDMORE);
            zmq_send(s, "bye", 3, 0);
            for (int i = 0; i < n; i++) zmq_msg_close(&f[i]);
            break;
        }
        const void *frames[3];
        size_t lens[3];
        for (int i = 1; i < n; i++) frames[i - 1] = zmq_msg_data(&f[i]), lens[i - 1] = zmq_msg_size(&f[i]);
        proto_reject_t why;
        char err[256];
        char *json = NULL;
        size_t jlen = 0;
        FILE *jf = open_memstream(&json, &jlen);
        int ok = proto_decode_frames(&m, frames, lens, (size_t)(n - 1), NULL, &why, err, sizeof(err)) == RLHF_OK;
        if (ok)
            j_msg(jf, &m);
        else
            j_reject(jf, why, err);
        fclose(jf);
        zmq_send(s, zmq_msg_data(&f[0]), zmq_msg_size(&f[0]), ZMQ_SNDMORE);
        if (ok && proto_encode(&e, &m, NULL, err, sizeof(err)) == RLHF_OK) {
            int chunk = m.type == PROTO_WEIGHTS_CHUNK;
            zmq_send(s, json, jlen, ZMQ_SNDMORE);
            zmq_send(s, e.data, e.len, chunk ? ZMQ_SNDMORE : 0);
            if (chunk) zmq_send(s, m.weights_chunk.data, m.weights_chunk.length, 0);
        } else {
            zmq_send(s, json, jlen, 0);
        }
        free(json);
        for (int i = 0; i < n; i++) zmq_msg_close(&f[i]);
    }
done:
    proto_msg_fini(&m);
    proto_enc_fini(&e);
    int linger = 1000;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger));
    zmq_close(s);
    zmq_ctx_term(ctx);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[1], "samples") == 0) return cmd_samples(argv[2]);
    if (argc >= 3 && strcmp(argv[1], "decode") == 0) return cmd_decode(argc - 2, argv + 2);
    if (argc >= 2 && strcmp(argv[1], "serve") == 0) return cmd_serve(argc >= 3 ? argv[2] : "tcp://127.0.0.1:*");
    fprintf(stderr, "usage: proto_tool samples DIR | decode FILE... | serve [ENDPOINT]\n");
    return 2;
}
