/*
 * cmd_bench_transport.c - `rlhf bench transport`: what the protocol costs on
 * top of plain ZeroMQ, over tcp://127.0.0.1 between two threads of one
 * process (one context), libzmq perf/local_thr style: warm up, start the
 * clock at the first counted message, report msg/s and MB/s (10^6 bytes)
 * and the ratio to the ceiling measured in the same run. Best of --reps.
 *
 *   raw_*        PUSH/PULL of opaque frames of the rollout message's size,
 *                sent zero-copy from one constant buffer
 *   rollout_*    the same sockets carrying real rollouts messages (8 samples
 *                of 256 completion tokens with behaviour log-probs): encode
 *                -> send -> receive -> decode (validated, copied out)
 *   weights_*    a --blob-mib parameter blob fetched over ROUTER/DEALER with
 *                weights_request / weights_chunk (--chunk-kib chunks,
 *                --window requests in flight; the server sends each chunk
 *                zero-copy from the blob, the client copies it into one
 *                buffer allocated once and reused), against one plain
 *                zero-copy transfer of the whole blob on the same sockets.
 *                The checksum (XXH3) of the fetched blob is verified after
 *                the clock stops and reported as weights_verify_ms.
 *
 * What it deliberately is not: not a multi-host test, not a latency test.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "cli/cli.h"
#include "common/rng.h"
#include "proto/proto.h"

#define BT_SAMPLES 8
#define BT_GEN     256
#define BT_PROMPT  32
#define BT_WARMUP  500

typedef struct {
    int count, reps, window, json;
    size_t blob_bytes, chunk_bytes;
} bt_opts_t;

static void bt_usage(FILE *f) {
    fprintf(f, "usage: rlhf bench transport [--count N] [--reps R] [--blob-mib M] [--chunk-kib K] [--window W]\n"
               "                            [--json]\n");
}

static int bt_endpoint(void *sock, char *ep, size_t len) {
    size_t n = len;
    return zmq_getsockopt(sock, ZMQ_LAST_ENDPOINT, ep, &n);
}

/* A peer that died must not hang the benchmark: receives time out. */
static void *bt_socket(void *ctx, int type) {
    void *s = zmq_socket(ctx, type);
    int ms = 30000;
    if (s) zmq_setsockopt(s, ZMQ_RCVTIMEO, &ms, sizeof(ms));
    return s;
}

static void bt_close(void *sock) {
    int linger = 0;
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof(linger));
    zmq_close(sock);
}

/* ---- the rollout message ---- */

typedef struct {
    int32_t tokens[BT_SAMPLES][BT_PROMPT + BT_GEN];
    float logprobs[BT_SAMPLES][BT_GEN];
    proto_sample_t samples[BT_SAMPLES];
    proto_msg_t msg;
} bt_rollout_t;

static void bt_rollout_build(bt_rollout_t *r) {
    rng_t g;
    rng_init(&g, 7);
    for (int s = 0; s < BT_SAMPLES; s++) {
        for (int i = 0; i < BT_PROMPT + BT_GEN; i++) r->tokens[s][i] = (int32_t)rng_below(&g, 264);
        for (int i = 0; i < BT_GEN; i++) r->logprobs[s][i] = -3.0f * rng_float(&g);
        r->samples[s] = (proto_sample_t){.prompt_index = (uint32_t)s / 4,
                                         .sample_index = (uint32_t)s % 4,
                                         .prompt = r->tokens[s],
                                         .n_prompt = BT_PROMPT,
                                         .completion = r->tokens[s] + BT_PROMPT,
                                         .logprobs = r->logprobs[s],
                                         .n_completion = BT_GEN,
                                         .finish = PROTO_FINISH_LENGTH,
                                         .policy_version = 1,
                                         .queue_us = 100,
                                         .gen_us = 250000};
    }
    proto_msg_init(&r->msg);
    proto_msg_header(&r->msg, PROTO_ROLLOUTS, "bench-actor", 0);
    r->msg.rollouts = (proto_rollouts_t){.ticket = 1, .samples = r->samples, .n_samples = BT_SAMPLES};
}

/* ---- PUSH/PULL: raw frames or rollouts ---- */

typedef struct {
    void *ctx;
    char ep[256];
    int count;   /* warm-up included */
    int rollout; /* 0: raw frames of raw_len bytes */
    const char *raw;
    size_t raw_len;
    bt_rollout_t *r;
    int rc;
} bt_push_t;

static void bt_free(void *data, void *hint) {
    (void)hint;
    free(data);
}

static void *bt_push_main(void *p) {
    bt_push_t *a = p;
    void *s = zmq_socket(a->ctx, ZMQ_PUSH);
    proto_enc_t e;
    proto_enc_init(&e);
    a->rc = zmq_connect(s, a->ep);
    for (int i = 0; i < a->count && a->rc == 0; i++) {
        if (!a->rollout) { /* the ceiling: zero-copy from one constant buffer, no allocation, no copy */
            zmq_msg_t m;
            zmq_msg_init_data(&m, (void *)a->raw, a->raw_len, NULL, NULL);
            if (zmq_msg_send(&m, s, 0) < 0) {
                zmq_msg_close(&m);
                a->rc = -1;
            }
            continue;
        }
        a->r->msg.seq = (uint64_t)i;
        a->r->msg.rollouts.ticket = (uint64_t)i;
        if (proto_encode(&e, &a->r->msg, NULL, NULL, 0) != RLHF_OK) {
            a->rc = -1;
            break;
        }
        /* hand the encoded bytes to libzmq: no copy on send */
        size_t len;
        void *data = proto_enc_release(&e, &len);
        zmq_msg_t m;
        zmq_msg_init_data(&m, data, len, bt_free, NULL);
        if (zmq_msg_send(&m, s, 0) < 0) {
            zmq_msg_close(&m);
            a->rc = -1;
        }
    }
    proto_enc_fini(&e);
    int linger = -1; /* deliver everything before close */
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger));
    zmq_close(s);
    return NULL;
}

/* Receive count messages (decoding them for rollouts); returns msgs/s over
 * the messages after the warm-up, or -1. */
static double bt_pushpull(void *ctx, int count, int rollout, const char *raw, size_t raw_len, bt_rollout_t *r) {
    void *s = bt_socket(ctx, ZMQ_PULL);
    proto_zmq_limit(s);
    bt_push_t a = {.ctx = ctx, .count = count + BT_WARMUP, .rollout = rollout, .raw = raw, .raw_len = raw_len, .r = r};
    if (zmq_bind(s, "tcp://127.0.0.1:*") != 0 || bt_endpoint(s, a.ep, sizeof(a.ep)) != 0) {
        bt_close(s);
        return -1;
    }
    pthread_t th;
    pthread_create(&th, NULL, bt_push_main, &a);
    proto_msg_t m;
    proto_msg_init(&m);
    proto_decode_opts_t opts = {.accept = PROTO_ACCEPT_LEARNER_ROLLOUTS, .vocab_size = 264};
    double t0 = 0;
    int bad = 0;
    uint64_t sum = 0;
    for (int i = 0; i < count + BT_WARMUP; i++) {
        if (i == BT_WARMUP) t0 = cli_now();
        zmq_msg_t z;
        zmq_msg_init(&z);
        if (zmq_msg_recv(&z, s, 0) < 0) {
            bad = 1;
            break;
        }
        if (rollout) {
            if (proto_decode(&m, zmq_msg_data(&z), zmq_msg_size(&z), &opts, NULL, NULL, 0) != RLHF_OK ||
                m.rollouts.n_samples != BT_SAMPLES)
                bad = 1;
            else
                sum += (uint64_t)m.rollouts.samples[BT_SAMPLES - 1].completion[BT_GEN - 1];
        } else {
            sum += ((const unsigned char *)zmq_msg_data(&z))[zmq_msg_size(&z) - 1];
        }
        zmq_msg_close(&z);
    }
    double dt = cli_now() - t0;
    pthread_join(th, NULL);
    proto_msg_fini(&m);
    bt_close(s);
    if (bad || a.rc != 0 || sum == 0xffffffffffffffffull) return -1;
    return count / dt;
}

/* ---- weights: ROUTER server, DEALER clients ---- */

typedef struct {
    void *router;
    const unsigned char *blob;
    size_t size;
    uint64_t version, checksum;
    uint32_t chunk_max;
    int rc;
} bt_server_t;

/* Serves weights_request with zero-copy chunks; a frame "raw" gets the whole
 * blob as one zero-copy frame; a bye message stops it. */
static void *bt_server_main(void *p) {
    bt_server_t *sv = p;
    proto_msg_t m, reply;
    proto_enc_t e;
    proto_msg_init(&m);
    proto_msg_init(&reply);
    proto_enc_init(&e);
    proto_decode_opts_t opts = {.accept = PROTO_ACCEPT_LEARNER_WEIGHTS | PROTO_BIT(PROTO_BYE)};
    proto_rejects_t rejects;
    proto_rejects_init(&rejects);
    zmq_msg_t f[2];
    zmq_msg_init(&f[0]);
    zmq_msg_init(&f[1]);
    for (;;) {
        /* [routing id][request]; any other shape is bad_frames */
        int n = 0, more = 1, fail = 0;
        while (more) {
            zmq_msg_t part;
            zmq_msg_init(&part);
            if (zmq_msg_recv(&part, sv->router, 0) < 0) {
                zmq_msg_close(&part);
                fail = 1;
                break;
            }
            more = zmq_msg_more(&part);
            if (n < 2) zmq_msg_move(&f[n], &part);
            zmq_msg_close(&part);
            n++;
        }
        if (fail) {
            sv->rc = -1;
            break;
        }
        const void *id = zmq_msg_data(&f[0]);
        size_t idn = zmq_msg_size(&f[0]);
        const char *req = zmq_msg_data(&f[1]);
        size_t rn = zmq_msg_size(&f[1]);
        if (n != 2) {
            proto_rejects_note(&rejects, PROTO_REJECT_BAD_FRAMES, cli_now());
            continue;
        }
        if (rn == 3 && memcmp(req, "raw", 3) == 0) {
            zmq_msg_t z;
            zmq_send(sv->router, id, idn, ZMQ_SNDMORE);
            zmq_msg_init_data(&z, (void *)sv->blob, sv->size, NULL, NULL);
            if (zmq_msg_send(&z, sv->router, 0) < 0) zmq_msg_close(&z);
            continue;
        }
        proto_reject_t why;
        if (proto_decode(&m, req, rn, &opts, &why, NULL, 0) != RLHF_OK) {
            proto_rejects_note(&rejects, why, cli_now());
            continue; /* malformed: drop, count, never reply */
        }
        if (m.type == PROTO_BYE) break;
        const proto_weights_request_t *rq = &m.weights_request;
        proto_msg_header(&reply, PROTO_WEIGHTS_CHUNK, "bench-learner", m.seq);
        proto_weights_chunk_t *c = &reply.weights_chunk;
        c->version = rq->version, c->offset = rq->offset, c->size = sv->size, c->checksum = sv->checksum;
        if (rq->version != sv->version)
            c->status = PROTO_CHUNK_UNKNOWN_VERSION;
        else if (rq->offset > sv->size || rq->length > sv->size - rq->offset || rq->length > sv->chunk_max)
            c->status = PROTO_CHUNK_BAD_RANGE;
        else
            c->status = PROTO_CHUNK_OK, c->length = rq->length;
        if (proto_encode(&e, &reply, NULL, NULL, 0) != RLHF_OK ||
            proto_zmq_send_chunk(sv->router, id, idn, e.data, e.len, c->length ? sv->blob + c->offset : NULL, c->length,
                                 NULL, NULL) != RLHF_OK)
            sv->rc = -1;
    }
    zmq_msg_close(&f[0]);
    zmq_msg_close(&f[1]);
    if (proto_rejects_total(&rejects)) sv->rc = -1; /* our own client sends nothing bad */
    proto_msg_fini(&m);
    proto_msg_fini(&reply);
    proto_enc_fini(&e);
    return NULL;
}

static int bt_send_msg(void *sock, proto_enc_t *e, const proto_msg_t *m) {
    if (proto_encode(e, m, NULL, NULL, 0) != RLHF_OK) return -1;
    return zmq_send(sock, e->data, e->len, 0) < 0 ? -1 : 0;
}

/* Fetch the whole blob in chunks into dst; seconds, or -1. */
static double bt_fetch(void *dealer, const bt_server_t *sv, unsigned char *dst, const bt_opts_t *o) {
    proto_enc_t e;
    proto_msg_t req, got;
    proto_enc_init(&e);
    proto_msg_init(&req);
    proto_msg_init(&got);
    proto_decode_opts_t opts = {.accept = PROTO_ACCEPT_ACTOR_WEIGHTS};
    size_t next = 0, done = 0;
    int inflight = 0, bad = 0;
    uint64_t seq = 0;
    double t0 = cli_now();
    while (done < sv->size && !bad) {
        while (inflight < o->window && next < sv->size) {
            size_t len = sv->size - next < o->chunk_bytes ? sv->size - next : o->chunk_bytes;
            proto_msg_header(&req, PROTO_WEIGHTS_REQUEST, "bench-actor", seq++);
            req.weights_request =
                (proto_weights_request_t){.version = sv->version, .offset = next, .length = (uint32_t)len};
            if (bt_send_msg(dealer, &e, &req) != 0) bad = 1;
            next += len;
            inflight++;
        }
        zmq_msg_t f[2];
        zmq_msg_init(&f[0]);
        zmq_msg_init(&f[1]);
        if (zmq_msg_recv(&f[0], dealer, 0) < 0 || !zmq_msg_more(&f[0]) || zmq_msg_recv(&f[1], dealer, 0) < 0 ||
            zmq_msg_more(&f[1])) {
            bad = 1;
        } else {
            const void *frames[2] = {zmq_msg_data(&f[0]), zmq_msg_data(&f[1])};
            size_t lens[2] = {zmq_msg_size(&f[0]), zmq_msg_size(&f[1])};
            const proto_weights_chunk_t *c = &got.weights_chunk;
            if (proto_decode_frames(&got, frames, lens, 2, &opts, NULL, NULL, 0) != RLHF_OK ||
                c->status != PROTO_CHUNK_OK || c->offset > sv->size || c->length > sv->size - c->offset) {
                bad = 1;
            } else {
                memcpy(dst + c->offset, c->data, c->length);
                done += c->length;
                inflight--;
            }
        }
        zmq_msg_close(&f[0]);
        zmq_msg_close(&f[1]);
    }
    double dt = cli_now() - t0;
    proto_msg_fini(&req);
    proto_msg_fini(&got);
    proto_enc_fini(&e);
    return bad ? -1 : dt;
}

/* One plain zero-copy transfer of the whole blob; seconds, or -1. */
static double bt_fetch_raw(void *dealer, const bt_server_t *sv) {
    double t0 = cli_now();
    if (zmq_send(dealer, "raw", 3, 0) < 0) return -1;
    zmq_msg_t z;
    zmq_msg_init(&z);
    int n = zmq_msg_recv(&z, dealer, 0);
    double dt = cli_now() - t0;
    int ok = n >= 0 && zmq_msg_size(&z) == sv->size &&
             ((const unsigned char *)zmq_msg_data(&z))[sv->size - 1] == sv->blob[sv->size - 1];
    zmq_msg_close(&z);
    return ok ? dt : -1;
}

typedef struct {
    double fetch_s, raw_s, verify_s;
    int ok;
} bt_weights_t;

/* blob and dst (blob_bytes each) stay the caller's: free them after the
 * context is terminated, as libzmq reads blob without copying. */
static bt_weights_t bt_weights(void *ctx, const bt_opts_t *o, unsigned char *blob, unsigned char *dst) {
    bt_weights_t res = {.fetch_s = 1e30, .raw_s = 1e30};
    bt_server_t sv = {.size = o->blob_bytes, .version = 1, .chunk_max = PROTO_MAX_CHUNK_BYTES};
    void *dealer = NULL, *raw = NULL;
    /* a parameter-like blob; every page of both buffers touched before timing */
    for (size_t i = 0; i < o->blob_bytes / 4; i++) ((float *)blob)[i] = (float)(i % 1000) * 1e-3f;
    memset(dst, 0, o->blob_bytes);
    sv.blob = blob;
    sv.checksum = proto_weights_checksum(blob, o->blob_bytes);
    sv.router = bt_socket(ctx, ZMQ_ROUTER);
    proto_zmq_limit(sv.router);
    int64_t unlimited = -1; /* for the raw DEALER, which receives the blob in one frame */
    char ep[256];
    if (zmq_bind(sv.router, "tcp://127.0.0.1:*") != 0 || bt_endpoint(sv.router, ep, sizeof(ep)) != 0) goto out;
    dealer = bt_socket(ctx, ZMQ_DEALER);
    raw = bt_socket(ctx, ZMQ_DEALER);
    proto_zmq_limit(dealer);
    zmq_setsockopt(raw, ZMQ_MAXMSGSIZE, &unlimited, sizeof(unlimited));
    zmq_connect(dealer, ep);
    zmq_connect(raw, ep);
    pthread_t th;
    pthread_create(&th, NULL, bt_server_main, &sv);
    /* warm-up: one chunked fetch (connections, allocator) then measure */
    res.ok = bt_fetch(dealer, &sv, dst, o) > 0;
    for (int r = 0; r < o->reps && res.ok; r++) {
        double raw_s = bt_fetch_raw(raw, &sv);
        memset(dst, 0xff, 4096); /* the fetch must really write the buffer */
        double fetch_s = bt_fetch(dealer, &sv, dst, o);
        res.ok = raw_s > 0 && fetch_s > 0;
        if (raw_s < res.raw_s) res.raw_s = raw_s;
        if (fetch_s < res.fetch_s) res.fetch_s = fetch_s;
    }
    double t0 = cli_now();
    if (res.ok) res.ok = proto_weights_checksum(dst, o->blob_bytes) == sv.checksum;
    res.verify_s = cli_now() - t0;
    /* stop the server */
    proto_enc_t e;
    proto_msg_t bye;
    proto_enc_init(&e);
    proto_msg_init(&bye);
    proto_msg_header(&bye, PROTO_BYE, "bench-actor", 0);
    if (bt_send_msg(dealer, &e, &bye) != 0) res.ok = 0;
    proto_enc_fini(&e);
    pthread_join(th, NULL);
    if (sv.rc != 0) res.ok = 0;
out:
    if (dealer) bt_close(dealer);
    if (raw) bt_close(raw);
    if (sv.router) bt_close(sv.router);
    return res;
}

int bench_transport(int argc, char **argv);

int bench_transport(int argc, char **argv) {
    bt_opts_t o = {
        .count = 20000, .reps = 3, .window = 4, .blob_bytes = (size_t)256 << 20, .chunk_bytes = PROTO_CHUNK_BYTES};
    static struct option opts[] = {{"count", required_argument, 0, 'n'},    {"reps", required_argument, 0, 'r'},
                                   {"blob-mib", required_argument, 0, 'b'}, {"chunk-kib", required_argument, 0, 'c'},
                                   {"window", required_argument, 0, 'w'},   {"json", no_argument, 0, 'j'},
                                   {"help", no_argument, 0, 'h'},           {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'n': o.count = atoi(optarg); break;
        case 'r': o.reps = atoi(optarg); break;
        case 'b': o.blob_bytes = (size_t)atol(optarg) << 20; break;
        case 'c': o.chunk_bytes = (size_t)atol(optarg) << 10; break;
        case 'w': o.window = atoi(optarg); break;
        case 'j': o.json = 1; break;
        case 'h': bt_usage(stdout); return 0;
        default: bt_usage(stderr); return 2;
        }
    }
    if (o.count <= 0 || o.reps <= 0 || o.window <= 0 || o.blob_bytes == 0 || o.chunk_bytes == 0 ||
        o.chunk_bytes > PROTO_MAX_CHUNK_BYTES) {
        fprintf(stderr,
                "rlhf bench transport: --count, --reps, --window and --blob-mib must be positive, "
                "--chunk-kib in 1..%u\n",
                PROTO_MAX_CHUNK_BYTES >> 10);
        return 2;
    }

    bt_rollout_t *r = malloc(sizeof(*r));
    unsigned char *blob = aligned_alloc(4096, o.blob_bytes), *dst = aligned_alloc(4096, o.blob_bytes);
    proto_enc_t e;
    proto_enc_init(&e);
    if (!r || !blob || !dst) {
        fprintf(stderr, "rlhf bench transport: out of memory\n");
        return 1;
    }
    bt_rollout_build(r);
    if (proto_encode(&e, &r->msg, NULL, NULL, 0) != RLHF_OK) {
        fprintf(stderr, "rlhf bench transport: cannot encode the rollout message\n");
        return 1;
    }
    size_t msg_bytes = e.len;
    void *ctx = zmq_ctx_new();

    double raw = 0, rollout = 0;
    for (int rep = 0; rep < o.reps; rep++) { /* interleaved, best of each */
        double a = bt_pushpull(ctx, o.count, 0, e.data, e.len, r);
        double b = bt_pushpull(ctx, o.count, 1, NULL, 0, r);
        if (a < 0 || b < 0) {
            fprintf(stderr, "rlhf bench transport: push/pull run failed\n");
            return 1;
        }
        raw = a > raw ? a : raw;
        rollout = b > rollout ? b : rollout;
        if (!o.json) fprintf(stderr, "\rpush/pull rep %d/%d", rep + 1, o.reps);
    }
    if (!o.json) fprintf(stderr, "\n");
    bt_weights_t w = bt_weights(ctx, &o, blob, dst);
    zmq_ctx_term(ctx); /* libzmq is done with the zero-copy blob only now */
    proto_enc_fini(&e);
    proto_msg_fini(&r->msg);
    free(r);
    free(blob);
    free(dst);
    if (!w.ok) {
        fprintf(stderr, "rlhf bench transport: weights fetch failed or checksum mismatch\n");
        return 1;
    }
    double mb = 1e-6 * (double)msg_bytes, blob_mb = 1e-6 * (double)o.blob_bytes;
    double wmb = blob_mb / w.fetch_s, wraw = blob_mb / w.raw_s;
    if (o.json) {
        printf("{\"msg_bytes\":%zu,\"raw_msgs_per_s\":%.0f,\"raw_mb_per_s\":%.1f,\"rollout_msgs_per_s\":%.0f,"
               "\"rollout_mb_per_s\":%.1f,\"rollout_vs_raw\":%.3f,\"blob_bytes\":%zu,\"chunk_bytes\":%zu,"
               "\"window\":%d,\"weights_mb_per_s\":%.1f,\"weights_raw_mb_per_s\":%.1f,\"weights_vs_raw\":%.3f,"
               "\"weights_verify_ms\":%.1f,\"weights_verified_mb_per_s\":%.1f}\n",
               msg_bytes, raw, raw * mb, rollout, rollout * mb, rollout / raw, o.blob_bytes, o.chunk_bytes, o.window,
               wmb, wraw, wmb / wraw, 1e3 * w.verify_s, blob_mb / (w.fetch_s + w.verify_s));
    } else {
        printf("rollout message: %d samples x %d tokens + log-probs, %zu bytes\n", BT_SAMPLES, BT_GEN, msg_bytes);
        printf("raw push/pull        %10.0f msg/s %8.1f MB/s\n", raw, raw * mb);
        printf("rollouts enc+dec     %10.0f msg/s %8.1f MB/s   ratio %.3f\n", rollout, rollout * mb, rollout / raw);
        printf("weights raw (1 msg)  %10.1f MB/s  (%zu MiB blob)\n", wraw, o.blob_bytes >> 20);
        printf("weights chunked      %10.1f MB/s  (%zu KiB chunks, window %d)   ratio %.3f, verify %.1f ms\n", wmb,
               o.chunk_bytes >> 10, o.window, wmb / wraw, 1e3 * w.verify_s);
    }
    return 0;
}
