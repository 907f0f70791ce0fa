/*
 * test_actor.c - the actor against a FAKE LEARNER: zmq sockets bound on free
 * tcp ports of 127.0.0.1 and driven by the test thread with zmq_poll, tiny
 * model preset.
 *
 *   inprocess   actor_new/actor_run on a thread, stopped with actor_stop:
 *               hello + work_request with credit; v1 announced and served in
 *               chunks -> the actor reports version 1; a ticket of 3 "add"
 *               prompts, k = 2 -> 6 samples whose behaviour log-probs equal
 *               model_forward on the same weights at the ticket's
 *               temperature (max difference printed); the same ticket twice
 *               gives identical completions, equal to a local generator
 *               seeded seed + i*k + j; v2 announced together
 *               with a ticket that needs it -> rollouts say 2 and match v2;
 *               a corrupted v3 (checksum mismatch) is refused and counted,
 *               the actor keeps v2 and takes v3 on the next good announce;
 *               malformed messages on work, announce and weights are dropped
 *               and counted, the actor keeps working; a ticket whose weights
 *               never come is dropped at its deadline and its credit asked
 *               for again; the learner's work socket closes and binds again
 *               -> hello and the credit again; a restarted run announcing
 *               v1 with other weights is refetched; actor_stop -> bye.
 *   program     the real build/rlhf-actor as a child: hello, weights, a
 *               ticket, heartbeats, /status and /metrics over HTTP; SIGTERM
 *               during a 2048-sample ticket -> its rollouts, bye, exit 0.
 *               The child is killed whatever happens (teardown).
 *   bad_config  unknown key, wrong type, missing file, bad --id, a learner
 *               host that does not resolve: one line on
 *               stderr naming it, exit status 2.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>
#include <zmq.h>

#include "actor/actor.h"
#include "common/config.h"
#include "common/generate.h"
#include "common/model.h"
#include "common/task.h"
#include "common/tokenizer.h"
#include "proto/proto.h"

#define TEMP    0.7f
#define MAX_NEW 8
#define CHUNK   (64u << 10) // small chunks: a tiny model's blob is ~17 of them

static double now_s(void) {
    return (double)uv_hrtime() * 1e-9;
}

/* ---- the fake learner ---- */

typedef struct {
    uint64_t version;
    unsigned char *served; // what the weights socket sends (maybe corrupted)
    size_t size;
    uint64_t checksum; // what the announce says (of the good blob)
} fl_version_t;

typedef struct {
    void *ctx, *work, *rollouts, *announce, *weights, *dummy[2];
    int port[6];                           // work, rollouts, score, scored, announce, weights
    unsigned char route[256], wroute[256]; // routing ids of the actor on work and weights
    size_t route_len, wroute_len;
    proto_msg_t in, roll;
    proto_enc_t enc;
    uint64_t seq;
    int vocab;
    /* what the actor said */
    int n_hello, n_hello_gen_cap, n_stats, n_work_req, n_heartbeat, n_bye, n_weights_req, n_bad;
    uint64_t credit_sum, last_wr_version;
    uint64_t hello_role;
    /* rollouts: the last one received, decoded into roll */
    int n_rollouts;
    uint64_t last_rollouts_ticket;
    /* weights served */
    fl_version_t ver[4];
    int nver;
    uint64_t announce_version; // 0 = announce nothing
    uint32_t deadline_ms;      // of the tickets sent
    double last_announce;
} fl_t;

static void *fl_bind(fl_t *f, int type, int *port) {
    void *s = zmq_socket(f->ctx, type);
    assert_non_null(s);
    int linger = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    assert_int_equal(proto_zmq_limit(s), RLHF_OK);
    assert_int_equal(zmq_bind(s, "tcp://127.0.0.1:*"), 0);
    char ep[128];
    size_t len = sizeof ep;
    assert_int_equal(zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, ep, &len), 0);
    *port = atoi(strrchr(ep, ':') + 1);
    return s;
}

static void fl_init(fl_t *f, int vocab) {
    memset(f, 0, sizeof *f);
    f->vocab = vocab;
    f->ctx = zmq_ctx_new();
    assert_non_null(f->ctx);
    f->work = fl_bind(f, ZMQ_ROUTER, &f->port[0]);
    f->rollouts = fl_bind(f, ZMQ_PULL, &f->port[1]);
    f->dummy[0] = fl_bind(f, ZMQ_PULL, &f->port[2]);
    f->dummy[1] = fl_bind(f, ZMQ_PULL, &f->port[3]);
    f->announce = fl_bind(f, ZMQ_PUB, &f->port[4]);
    f->weights = fl_bind(f, ZMQ_ROUTER, &f->port[5]);
    proto_msg_init(&f->in);
    proto_msg_init(&f->roll);
    proto_enc_init(&f->enc);
}

static void fl_fini(fl_t *f) {
    void *s[] = {f->work, f->rollouts, f->dummy[0], f->dummy[1], f->announce, f->weights};
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++)
        if (s[i]) zmq_close(s[i]);
    if (f->ctx) zmq_ctx_term(f->ctx);
    for (int i = 0; i < f->nver; i++) free(f->ver[i].served);
    proto_msg_fini(&f->in);
    proto_msg_fini(&f->roll);
    proto_enc_fini(&f->enc);
}

/* The learner's side of the config: --set values for the actor. */
static void fl_config(const fl_t *f, rlhf_config_t *cfg) {
    static const char *keys[6] = {"learner.work_port",   "learner.rollouts_port", "learner.score_port",
                                  "learner.scored_port", "learner.announce_port", "learner.weights_port"};
    char err[256], v[32];
    config_init(cfg);
    for (int i = 0; i < 6; i++) {
        snprintf(v, sizeof v, "%d", f->port[i]);
        assert_int_equal(config_set(cfg, keys[i], v, err, sizeof err), RLHF_OK);
    }
    assert_int_equal(config_set(cfg, "model.preset", "tiny", err, sizeof err), RLHF_OK);
    assert_int_equal(config_set(cfg, "actor.batch", "4", err, sizeof err), RLHF_OK);
    assert_int_equal(config_set(cfg, "actor.threads", "1", err, sizeof err), RLHF_OK);
    assert_int_equal(config_set(cfg, "actor.credit", "2", err, sizeof err), RLHF_OK);
    assert_int_equal(config_set(cfg, "actor.http_port", "0", err, sizeof err), RLHF_OK);
}

static void fl_encode(fl_t *f, proto_msg_t *m) {
    char err[256];
    m->seq = f->seq++;
    rlhf_err_t rc = proto_encode(&f->enc, m, NULL, err, sizeof err);
    if (rc != RLHF_OK) fprintf(stderr, "fake learner: encode: %s\n", err);
    assert_int_equal(rc, RLHF_OK);
}

/* Send raw bytes to the actor on work (routed). */
static void fl_send_work_raw(fl_t *f, const void *buf, size_t len) {
    assert_true(f->route_len > 0);
    assert_int_equal(zmq_send(f->work, f->route, f->route_len, ZMQ_SNDMORE), (int)f->route_len);
    assert_int_equal(zmq_send(f->work, buf, len, 0), (int)len);
}

static void fl_send_work(fl_t *f, proto_msg_t *m) {
    fl_encode(f, m);
    fl_send_work_raw(f, f->enc.data, f->enc.len);
}

static void fl_announce(fl_t *f, const fl_version_t *v) {
    proto_msg_t m;
    proto_msg_init(&m);
    proto_msg_header(&m, PROTO_WEIGHTS_ANNOUNCE, "learner", 0);
    m.weights_announce.version = v->version;
    m.weights_announce.size = v->size;
    m.weights_announce.checksum = v->checksum;
    m.weights_announce.chunk_max = CHUNK;
    fl_encode(f, &m);
    assert_int_equal(zmq_send(f->announce, f->enc.data, f->enc.len, 0), (int)f->enc.len);
}

/* Publish a version: blob copied; corrupt flips one byte of what is served. */
static fl_version_t *fl_publish(fl_t *f, uint64_t version, const void *blob, size_t size, bool corrupt) {
    fl_version_t *v = NULL;
    for (int i = 0; i < f->nver; i++)
        if (f->ver[i].version == version) v = &f->ver[i];
    if (!v) {
        assert_true(f->nver < 4);
        v = &f->ver[f->nver++];
        v->served = malloc(size);
        assert_non_null(v->served);
    }
    v->version = version, v->size = size;
    memcpy(v->served, blob, size);
    v->checksum = proto_weights_checksum(blob, size);
    if (corrupt) v->served[size / 2] ^= 0x40;
    f->announce_version = version;
    f->last_announce = 0;
    return v;
}

static void fl_recv_parts(void *s, zmq_msg_t *parts, size_t *n, size_t cap) {
    *n = 0;
    for (;;) {
        zmq_msg_t tmp, *p = *n < cap ? &parts[*n] : &tmp;
        zmq_msg_init(p);
        assert_true(zmq_msg_recv(p, s, 0) >= 0);
        int more = zmq_msg_more(p);
        if (p == &tmp)
            zmq_msg_close(p);
        else
            (*n)++;
        if (!more) break;
    }
}

static void fl_on_work(fl_t *f) {
    zmq_msg_t parts[4];
    size_t n;
    fl_recv_parts(f->work, parts, &n, 4);
    if (n == 2) {
        f->route_len = zmq_msg_size(&parts[0]);
        memcpy(f->route, zmq_msg_data(&parts[0]), f->route_len);
        proto_reject_t why;
        proto_decode_opts_t o = {.accept = PROTO_ACCEPT_LEARNER_WORK};
        if (proto_decode(&f->in, zmq_msg_data(&parts[1]), zmq_msg_size(&parts[1]), &o, &why, NULL, 0) == RLHF_OK) {
            switch (f->in.type) {
            case PROTO_HELLO: {
                f->n_hello++;
                f->hello_role = f->in.hello.role;
                for (uint32_t i = 0; i < f->in.hello.n_caps; i++)
                    if (strcmp(f->in.hello.caps[i], "gen") == 0) f->n_hello_gen_cap++;
                proto_msg_t m;
                proto_msg_init(&m);
                proto_msg_header(&m, PROTO_HELLO, "learner", 0);
                m.hello.role = PROTO_ROLE_LEARNER;
                m.hello.weights_version = f->announce_version;
                fl_send_work(f, &m);
                break;
            }
            case PROTO_HEARTBEAT: {
                f->n_heartbeat++;
                proto_msg_t m;
                proto_msg_init(&m);
                proto_msg_header(&m, PROTO_HEARTBEAT, "learner", 0);
                fl_send_work(f, &m);
                break;
            }
            case PROTO_WORK_REQUEST:
                f->n_work_req++;
                f->credit_sum += f->in.work_request.credit;
                f->last_wr_version = f->in.work_request.weights_version;
                break;
            case PROTO_BYE: f->n_bye++; break;
            case PROTO_STATS:
                for (uint32_t i = 0; i < f->in.stats.n_values; i++)
                    if (strcmp(f->in.stats.values[i].name, "gen_tokens_total") == 0) f->n_stats++;
                break;
            default: break;
            }
        } else {
            f->n_bad++;
        }
    } else {
        f->n_bad++;
    }
    for (size_t i = 0; i < n; i++) zmq_msg_close(&parts[i]);
}

static void fl_on_weights(fl_t *f) {
    zmq_msg_t parts[4];
    size_t n;
    fl_recv_parts(f->weights, parts, &n, 4);
    proto_reject_t why;
    proto_decode_opts_t o = {.accept = PROTO_ACCEPT_LEARNER_WEIGHTS};
    if (n == 2 &&
        proto_decode(&f->in, zmq_msg_data(&parts[1]), zmq_msg_size(&parts[1]), &o, &why, NULL, 0) == RLHF_OK) {
        f->n_weights_req++;
        f->wroute_len = zmq_msg_size(&parts[0]);
        memcpy(f->wroute, zmq_msg_data(&parts[0]), f->wroute_len);
        const proto_weights_request_t r = f->in.weights_request;
        const fl_version_t *v = NULL;
        for (int i = 0; i < f->nver; i++)
            if (f->ver[i].version == r.version) v = &f->ver[i];
        proto_msg_t m;
        proto_msg_init(&m);
        proto_msg_header(&m, PROTO_WEIGHTS_CHUNK, "learner", 0);
        m.weights_chunk.version = r.version;
        m.weights_chunk.offset = r.offset;
        const void *data = NULL;
        size_t dlen = 0;
        if (!v) {
            m.weights_chunk.status = PROTO_CHUNK_UNKNOWN_VERSION;
        } else if (r.offset + r.length > v->size || r.length > CHUNK) {
            m.weights_chunk.status = PROTO_CHUNK_BAD_RANGE;
        } else {
            m.weights_chunk.length = r.length;
            data = v->served + r.offset, dlen = r.length;
        }
        if (v) m.weights_chunk.size = v->size, m.weights_chunk.checksum = v->checksum;
        fl_encode(f, &m);
        assert_int_equal(proto_zmq_send_chunk(f->weights, zmq_msg_data(&parts[0]), zmq_msg_size(&parts[0]), f->enc.data,
                                              f->enc.len, data, dlen, NULL, NULL),
                         RLHF_OK);
    } else {
        f->n_bad++;
    }
    for (size_t i = 0; i < n; i++) zmq_msg_close(&parts[i]);
}

static void fl_on_rollouts(fl_t *f) {
    zmq_msg_t parts[4];
    size_t n;
    fl_recv_parts(f->rollouts, parts, &n, 4);
    proto_reject_t why;
    char err[256] = "";
    proto_decode_opts_t o = {.accept = PROTO_ACCEPT_LEARNER_ROLLOUTS, .vocab_size = f->vocab};
    if (n == 1 && proto_decode(&f->roll, zmq_msg_data(&parts[0]), zmq_msg_size(&parts[0]), &o, &why, err, sizeof err) ==
                      RLHF_OK) {
        f->n_rollouts++;
        f->last_rollouts_ticket = f->roll.rollouts.ticket;
    } else {
        fprintf(stderr, "fake learner: bad rollouts: %s\n", err);
        f->n_bad++;
    }
    for (size_t i = 0; i < n; i++) zmq_msg_close(&parts[i]);
}

/* Serve for up to ms milliseconds; re-announce the current version every
 * 300 ms (the real learner does it every 5 s). */
static void fl_poll(fl_t *f, int ms) {
    double end = now_s() + ms * 1e-3;
    do {
        if (f->announce_version && now_s() - f->last_announce > 0.3) {
            for (int i = 0; i < f->nver; i++)
                if (f->ver[i].version == f->announce_version) fl_announce(f, &f->ver[i]);
            f->last_announce = now_s();
        }
        zmq_pollitem_t it[3] = {
            {f->work, 0, ZMQ_POLLIN, 0}, {f->weights, 0, ZMQ_POLLIN, 0}, {f->rollouts, 0, ZMQ_POLLIN, 0}};
        int left = (int)((end - now_s()) * 1e3);
        if (zmq_poll(it, 3, left < 0 ? 0 : (left > 50 ? 50 : left)) > 0) {
            if (it[0].revents & ZMQ_POLLIN) fl_on_work(f);
            if (it[1].revents & ZMQ_POLLIN) fl_on_weights(f);
            if (it[2].revents & ZMQ_POLLIN) fl_on_rollouts(f);
        }
    } while (now_s() < end);
}

#define WAIT_UNTIL(f, cond, secs)                                                                                      \
    do {                                                                                                               \
        double end_ = now_s() + (secs);                                                                                \
        while (!(cond) && now_s() < end_) fl_poll((f), 20);                                                            \
        if (!(cond)) fail_msg("timed out waiting for: %s", #cond);                                                     \
    } while (0)

/* Send a ticket of the first n "add" training prompts. */
static void fl_send_ticket(fl_t *f, const task_t *task, uint64_t id, uint64_t policy_version, uint32_t n, uint32_t k,
                           uint64_t seed) {
    int toks[8][64];
    proto_prompt_t prompts[8];
    assert_true(n <= 8);
    for (uint32_t i = 0; i < n; i++) {
        int len = task_prompt(task, TASK_TRAIN, (int)i, toks[i], 64);
        assert_true(len > 0);
        prompts[i].id = i;
        prompts[i].tokens = (const int32_t *)toks[i];
        prompts[i].n_tokens = (uint32_t)len;
    }
    proto_msg_t m;
    proto_msg_init(&m);
    proto_msg_header(&m, PROTO_TICKET, "learner", 0);
    m.ticket.ticket = id;
    m.ticket.policy_version = policy_version;
    m.ticket.k = k;
    m.ticket.deadline_ms = f->deadline_ms ? f->deadline_ms : 30000;
    m.ticket.task = "add";
    m.ticket.sampling.temperature = TEMP;
    m.ticket.sampling.top_p = 1.0f;
    m.ticket.sampling.max_new_tokens = MAX_NEW;
    m.ticket.sampling.stop[0] = TOK_EOS;
    m.ticket.sampling.n_stop = 1;
    m.ticket.sampling.seed = seed;
    m.ticket.prompts = prompts;
    m.ticket.n_prompts = n;
    fl_send_work(f, &m);
}

/* Check the last rollouts: shape, tokens, finish, version, and log-probs
 * against model_forward of ref at TEMP. Returns the max |difference|. */
static double check_rollouts(const fl_t *f, model_t *ref, uint32_t n_prompts, uint32_t k, uint64_t version) {
    const proto_rollouts_t *r = &f->roll.rollouts;
    assert_int_equal(r->n_samples, n_prompts * k);
    int seen[8][8] = {{0}};
    double maxdiff = 0;
    model_acts_t *acts = model_acts_new(&ref->cfg, 1, ref->cfg.max_seq_len);
    assert_non_null(acts);
    for (uint32_t s = 0; s < r->n_samples; s++) {
        const proto_sample_t *x = &r->samples[s];
        assert_true(x->prompt_index < n_prompts && x->sample_index < k);
        seen[x->prompt_index][x->sample_index]++;
        assert_int_equal(x->policy_version, version);
        assert_true(x->n_completion >= 1 && x->n_completion <= MAX_NEW);
        bool stopped = x->completion[x->n_completion - 1] == TOK_EOS;
        assert_int_equal(x->finish, stopped ? PROTO_FINISH_STOP : PROTO_FINISH_LENGTH);
        if (!stopped) assert_int_equal(x->n_completion, MAX_NEW);
        int T = (int)(x->n_prompt + x->n_completion);
        int tokens[256], targets[256];
        for (uint32_t t = 0; t < x->n_prompt; t++) tokens[t] = x->prompt[t];
        for (uint32_t t = 0; t < x->n_completion; t++) {
            assert_true(x->completion[t] >= 0 && x->completion[t] < ref->cfg.vocab_size);
            if (t + 1 < x->n_completion) assert_int_not_equal(x->completion[t], TOK_EOS); // stops end it
            tokens[x->n_prompt + t] = x->completion[t];
        }
        for (int t = 0; t < T; t++) targets[t] = t + 1 < T ? tokens[t + 1] : -1;
        model_forward(ref, acts, tokens, targets, 1, T, TEMP);
        const float *lp = model_acts_logprobs(acts);
        for (uint32_t t = 0; t < x->n_completion; t++) {
            double d = fabs((double)lp[x->n_prompt - 1 + t] - x->logprobs[t]);
            if (!(d <= maxdiff)) maxdiff = d;
        }
    }
    for (uint32_t i = 0; i < n_prompts; i++)
        for (uint32_t j = 0; j < k; j++) assert_int_equal(seen[i][j], 1);
    model_acts_destroy(&acts);
    return maxdiff;
}

/* Completions of the last rollouts, flattened with separators, for equality. */
static size_t rollouts_fingerprint(const fl_t *f, int *out, size_t cap) {
    size_t n = 0;
    const proto_rollouts_t *r = &f->roll.rollouts;
    for (uint32_t s = 0; s < r->n_samples; s++) {
        const proto_sample_t *x = &r->samples[s];
        if (n + 3 + x->n_completion > cap) break;
        out[n++] = (int)x->prompt_index, out[n++] = (int)x->sample_index;
        for (uint32_t t = 0; t < x->n_completion; t++) out[n++] = x->completion[t];
        out[n++] = -1;
    }
    return n;
}

static double counter_value(metrics_t *m, const char *family, const char *label, const char *value) {
    metrics_family_t *f;
    metrics_counter_t *c;
    assert_int_equal(metrics_counter_family(m, family, NULL, label, &f), RLHF_OK);
    assert_int_equal(metrics_counter_get(f, value ? (const char *[]){value} : NULL, &c), RLHF_OK);
    return metrics_counter_value(c);
}

static double rejected_total(metrics_t *m) {
    double sum = 0;
    for (int r = 1; r < PROTO_REJECT__COUNT; r++)
        sum += counter_value(m, "rlhf_messages_rejected_total", "reason", proto_reject_reason_name((proto_reject_t)r));
    return sum + counter_value(m, "rlhf_messages_rejected_total", "reason", "too_many_parts");
}

static model_t *ref_model(uint64_t seed) {
    model_config_t mc;
    assert_int_equal(model_config_preset(&mc, "tiny"), RLHF_OK);
    model_t *m = model_new(&mc);
    assert_non_null(m);
    model_init_weights(m, seed);
    return m;
}

/* ---- in-process ---- */

static void *run_thread(void *arg) {
    actor_run(arg);
    return NULL;
}

typedef struct {
    fl_t fl;
    actor_t *actor;
    pthread_t th;
    bool th_started;
    pid_t child;
    model_t *v1, *v2, *v3;
    task_t *task;
} ctx_t;

static int setup(void **state) {
    ctx_t *c = calloc(1, sizeof *c);
    c->child = -1;
    c->v1 = ref_model(1);
    c->v2 = ref_model(2);
    c->v3 = ref_model(3);
    c->task = task_new("add", NULL);
    fl_init(&c->fl, c->v1->cfg.vocab_size);
    *state = c;
    return 0;
}

static int teardown(void **state) {
    ctx_t *c = *state;
    if (c->child > 0) {
        kill(c->child, SIGKILL);
        waitpid(c->child, NULL, 0);
    }
    if (c->th_started) {
        actor_stop(c->actor);
        pthread_join(c->th, NULL);
    }
    actor_destroy(&c->actor);
    fl_fini(&c->fl);
    model_destroy(&c->v1);
    model_destroy(&c->v2);
    model_destroy(&c->v3);
    task_destroy(&c->task);
    free(c);
    return 0;
}

static void test_inprocess(void **state) {
    ctx_t *c = *state;
    fl_t *f = &c->fl;
    rlhf_config_t cfg;
    fl_config(f, &cfg);
    char err[256];
    assert_int_equal(actor_new(&c->actor, &cfg, "test-actor-1", err, sizeof err), RLHF_OK);
    metrics_t *m = actor_metrics(c->actor);
    assert_int_equal(pthread_create(&c->th, NULL, run_thread, c->actor), 0);
    c->th_started = true;
    const size_t bytes = c->v1->n_params * sizeof(float);

    /* hello, then work_request with credit 2 and no weights */
    WAIT_UNTIL(f, f->n_hello >= 1 && f->n_work_req >= 1, 10);
    assert_int_equal(f->hello_role, PROTO_ROLE_ACTOR);
    assert_true(f->n_hello_gen_cap >= 1);
    assert_int_equal(f->credit_sum, 2);
    assert_int_equal(f->last_wr_version, 0);
    assert_int_equal(actor_weights_version(c->actor), 0);

    /* a ticket for v1 before any weights: it waits, then runs once v1 is in */
    fl_send_ticket(f, c->task, 100, 1, 3, 2, 42);
    fl_poll(f, 200);
    assert_int_equal(f->n_rollouts, 0);
    fl_publish(f, 1, c->v1->params_mem, bytes, false);
    WAIT_UNTIL(f, actor_weights_version(c->actor) == 1, 15);
    assert_true(f->n_weights_req >= (int)((bytes + CHUNK - 1) / CHUNK));
    WAIT_UNTIL(f, f->n_rollouts == 1, 15);
    assert_int_equal(f->last_rollouts_ticket, 100);
    double d1 = check_rollouts(f, c->v1, 3, 2, 1);
    printf("v1: max |behaviour log-prob - model_forward| = %.3g\n", d1);
    assert_true(d1 < 1e-4);
    int fp1[512], fp2[512];
    size_t n1 = rollouts_fingerprint(f, fp1, 512);
    /* sample j of prompt i used seed + i*k + j: a local generator agrees */
    {
        generator_t *g = generator_new(c->v1, 4, c->v1->cfg.max_seq_len);
        assert_non_null(g);
        gen_params_t gp;
        gen_params_default(&gp);
        gp.sampler.temperature = TEMP;
        gp.max_new_tokens = MAX_NEW;
        int ptok[3][64], otok[6][MAX_NEW];
        float olp[6][MAX_NEW];
        gen_request_t rq[6];
        for (int i = 0; i < 3; i++) {
            int len = task_prompt(c->task, TASK_TRAIN, i, ptok[i], 64);
            for (int j = 0; j < 2; j++)
                rq[i * 2 + j] = (gen_request_t){.prompt = ptok[i],
                                                .prompt_len = len,
                                                .seed = 42 + (uint64_t)i * 2 + j,
                                                .tokens = otok[i * 2 + j],
                                                .logprobs = olp[i * 2 + j]};
        }
        assert_int_equal(generator_run(g, rq, 6, &gp), RLHF_OK);
        const proto_rollouts_t *r = &f->roll.rollouts;
        for (uint32_t s = 0; s < r->n_samples; s++) {
            const proto_sample_t *x = &r->samples[s];
            const gen_request_t *q = &rq[x->prompt_index * 2 + x->sample_index];
            assert_int_equal(x->n_completion, q->n_tokens);
            assert_memory_equal(x->completion, q->tokens, sizeof(int) * x->n_completion);
        }
        generator_destroy(&g);
    }
    WAIT_UNTIL(f, f->credit_sum == 3, 5); // one more credit after the ticket
    assert_int_equal(f->last_wr_version, 1);

    /* seeds honoured: the same ticket again gives the same completions */
    fl_send_ticket(f, c->task, 101, 1, 3, 2, 42);
    WAIT_UNTIL(f, f->n_rollouts == 2, 15);
    assert_int_equal(f->last_rollouts_ticket, 101);
    size_t n2 = rollouts_fingerprint(f, fp2, 512);
    assert_int_equal(n1, n2);
    assert_memory_equal(fp1, fp2, n1 * sizeof(int));
    /* and another seed gives other completions (6 samples of up to 8 tokens) */
    fl_send_ticket(f, c->task, 102, 1, 3, 2, 4242);
    WAIT_UNTIL(f, f->n_rollouts == 3, 15);
    n2 = rollouts_fingerprint(f, fp2, 512);
    assert_true(n1 != n2 || memcmp(fp1, fp2, n1 * sizeof(int)) != 0);

    /* v2 announced with a ticket that needs it: rollouts say 2 and match v2 */
    fl_publish(f, 2, c->v2->params_mem, bytes, false);
    fl_send_ticket(f, c->task, 103, 2, 3, 2, 7);
    WAIT_UNTIL(f, f->n_rollouts == 4, 15);
    assert_int_equal(f->last_rollouts_ticket, 103);
    assert_int_equal(actor_weights_version(c->actor), 2);
    double d2 = check_rollouts(f, c->v2, 3, 2, 2);
    printf("v2: max |behaviour log-prob - model_forward| = %.3g\n", d2);
    assert_true(d2 < 1e-4);
    assert_int_equal(counter_value(m, "rlhf_tickets_total", "outcome", "completed"), 4);

    /* a corrupted v3 is refused and counted; the actor stays on v2 */
    fl_publish(f, 3, c->v3->params_mem, bytes, true);
    WAIT_UNTIL(f, counter_value(m, "rlhf_weight_sync_failures_total", "reason", "checksum") >= 1, 15);
    assert_int_equal(actor_weights_version(c->actor), 2);
    fl_send_ticket(f, c->task, 104, 2, 3, 2, 7);
    WAIT_UNTIL(f, f->n_rollouts == 5, 15);
    check_rollouts(f, c->v2, 3, 2, 2);
    /* the next good announce of v3 is taken */
    fl_publish(f, 3, c->v3->params_mem, bytes, false);
    WAIT_UNTIL(f, actor_weights_version(c->actor) == 3, 15);
    printf("checksum failures counted: %.0f\n",
           counter_value(m, "rlhf_weight_sync_failures_total", "reason", "checksum"));

    /* malformed messages on every socket are dropped and counted */
    double rej0 = rejected_total(m);
    static const unsigned char junk[] = {0xc1, 0x00, 0x01};
    fl_send_work_raw(f, junk, sizeof junk); // malformed
    fl_send_work_raw(f, "", 0);             // truncated
    {
        proto_msg_t x; // a bye from the learner: unexpected_type
        proto_msg_init(&x);
        proto_msg_header(&x, PROTO_BYE, "learner", 0);
        fl_send_work(f, &x);
    }
    {
        unsigned char bad[64]; // a heartbeat with a wrong magic
        proto_msg_t x;
        proto_msg_init(&x);
        proto_msg_header(&x, PROTO_HEARTBEAT, "learner", 0);
        fl_encode(f, &x);
        memcpy(bad, f->enc.data, f->enc.len);
        bad[2] ^= 0xff; // inside the magic's uint32
        fl_send_work_raw(f, bad, f->enc.len);
    }
    assert_int_equal(zmq_send(f->announce, junk, sizeof junk, 0), (int)sizeof junk);
    {
        proto_msg_t x; // a chunk header without its data frame: bad_frames
        proto_msg_init(&x);
        proto_msg_header(&x, PROTO_WEIGHTS_CHUNK, "learner", 0);
        x.weights_chunk.version = 3, x.weights_chunk.offset = 0, x.weights_chunk.length = 4;
        x.weights_chunk.size = bytes, x.weights_chunk.checksum = 1;
        fl_encode(f, &x);
        assert_true(f->wroute_len > 0);
        assert_int_equal(zmq_send(f->weights, f->wroute, f->wroute_len, ZMQ_SNDMORE), (int)f->wroute_len);
        assert_int_equal(zmq_send(f->weights, f->enc.data, f->enc.len, 0), (int)f->enc.len);
    }
    const int sent_bad = 6; // 4 on work, 1 on announce, 1 on weights
    WAIT_UNTIL(f, rejected_total(m) >= rej0 + sent_bad, 10);
    printf("rejected: %.0f messages\n", rejected_total(m) - rej0);
    assert_true(counter_value(m, "rlhf_messages_rejected_total", "reason", "malformed") >= 2);
    assert_true(counter_value(m, "rlhf_messages_rejected_total", "reason", "unexpected_type") >= 1);
    assert_true(counter_value(m, "rlhf_messages_rejected_total", "reason", "bad_magic") >= 1);
    assert_true(counter_value(m, "rlhf_messages_rejected_total", "reason", "truncated") >= 1);
    assert_true(counter_value(m, "rlhf_messages_rejected_total", "reason", "bad_frames") >= 1);
    /* still working */
    fl_send_ticket(f, c->task, 105, 3, 3, 2, 9);
    WAIT_UNTIL(f, f->n_rollouts == 6, 15);
    double d3 = check_rollouts(f, c->v3, 3, 2, 3);
    assert_true(d3 < 1e-4);

    /* a ticket whose weights never come is dropped at its deadline, and its credit asked for again */
    uint64_t credit0 = f->credit_sum;
    f->deadline_ms = 300;
    fl_send_ticket(f, c->task, 106, 9, 1, 1, 1);
    f->deadline_ms = 0;
    WAIT_UNTIL(f, counter_value(m, "rlhf_tickets_total", "outcome", "dropped") == 1, 5);
    WAIT_UNTIL(f, f->credit_sum == credit0 + 1, 5);
    assert_int_equal(f->n_rollouts, 6);

    /* the learner restarts (its work socket closes and binds again): the actor
     * reconnects, says hello again and asks for its whole credit */
    int hellos = f->n_hello;
    credit0 = f->credit_sum;
    zmq_close(f->work);
    fl_poll(f, 300);
    f->work = zmq_socket(f->ctx, ZMQ_ROUTER);
    assert_non_null(f->work);
    int linger = 0;
    zmq_setsockopt(f->work, ZMQ_LINGER, &linger, sizeof linger);
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", f->port[0]);
    assert_int_equal(zmq_bind(f->work, ep), 0);
    WAIT_UNTIL(f, f->n_hello > hellos && f->credit_sum >= credit0 + 2, 15);
    fl_send_ticket(f, c->task, 107, 3, 3, 2, 9);
    WAIT_UNTIL(f, f->n_rollouts == 7, 15);
    assert_int_equal(f->last_rollouts_ticket, 107);

    /* a fresh learner run announces v1 again, with other weights: the actor
     * must not take its v3 for that run's v1; it refetches first */
    fl_publish(f, 1, c->v2->params_mem, bytes, false);
    WAIT_UNTIL(f, actor_weights_version(c->actor) == 1, 15);
    fl_send_ticket(f, c->task, 108, 1, 3, 2, 9);
    WAIT_UNTIL(f, f->n_rollouts == 8, 15);
    assert_true(check_rollouts(f, c->v2, 3, 2, 1) < 1e-4);

    /* drain: bye, run returns */
    actor_stop(c->actor);
    WAIT_UNTIL(f, f->n_bye == 1, 10);
    pthread_join(c->th, NULL);
    c->th_started = false;
    assert_int_equal(f->n_bad, 0);
    assert_true(f->n_stats >= 1);
}

/* ---- the real program ---- */

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* GET path from 127.0.0.1:port; the body (NUL-terminated) into buf. */
static bool http_get(int port, const char *path, char *buf, size_t cap) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0) close(fd);
        return false;
    }
    char req[256];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return false;
    }
    size_t got = 0;
    ssize_t r;
    while (got + 1 < cap && (r = read(fd, buf + got, cap - 1 - got)) > 0) got += (size_t)r;
    buf[got] = 0;
    close(fd);
    char *body = strstr(buf, "\r\n\r\n");
    if (!body) return false;
    memmove(buf, body + 4, strlen(body + 4) + 1);
    return true;
}

static void test_program(void **state) {
    ctx_t *c = *state;
    fl_t *f = &c->fl;
    const size_t bytes = c->v1->n_params * sizeof(float);
    int http = free_port();
    char sets[8][64];
    const char *keys[6] = {"learner.work_port",   "learner.rollouts_port", "learner.score_port",
                           "learner.scored_port", "learner.announce_port", "learner.weights_port"};
    for (int i = 0; i < 6; i++) snprintf(sets[i], sizeof sets[i], "%s=%d", keys[i], f->port[i]);
    snprintf(sets[6], sizeof sets[6], "actor.http_port=%d", http);
    c->child = fork();
    assert_true(c->child >= 0);
    if (c->child == 0) {
        execl(RLHF_BIN_DIR "/rlhf-actor", "rlhf-actor", "--learner", "127.0.0.1", "--id", "child-actor", "--set",
              "model.preset=tiny", "--set", "actor.batch=4", "--set", "actor.credit=1", "--set", sets[0], "--set",
              sets[1], "--set", sets[2], "--set", sets[3], "--set", sets[4], "--set", sets[5], "--set", sets[6],
              (char *)NULL);
        _exit(127);
    }
    WAIT_UNTIL(f, f->n_hello >= 1 && f->n_work_req >= 1, 15);
    assert_int_equal(f->credit_sum, 1);
    fl_publish(f, 1, c->v1->params_mem, bytes, false);
    fl_send_ticket(f, c->task, 7, 1, 3, 2, 5);
    WAIT_UNTIL(f, f->n_rollouts == 1, 20);
    double d = check_rollouts(f, c->v1, 3, 2, 1);
    printf("program: max |behaviour log-prob - model_forward| = %.3g\n", d);
    assert_true(d < 1e-4);
    /* heartbeats flow while idle */
    WAIT_UNTIL(f, f->n_heartbeat >= 1, 5);

    char body[16384];
    assert_true(http_get(http, "/status", body, sizeof body));
    assert_non_null(strstr(body, "\"role\": \"actor\"") ? body : strstr(body, "\"role\":\"actor\""));
    assert_true(strstr(body, "\"weights_version\": 1") || strstr(body, "\"weights_version\":1"));
    assert_true(http_get(http, "/metrics", body, sizeof body));
    assert_non_null(strstr(body, "rlhf_tickets_total{outcome=\"completed\"} 1"));
    assert_non_null(strstr(body, "rlhf_weights_version 1"));
    assert_non_null(strstr(body, "rlhf_samples_generated_total 6"));

    /* SIGTERM while a big ticket (8 prompts x 256 samples) is being generated:
     * the actor finishes it, pushes its rollouts, says bye and exits 0 */
    fl_send_ticket(f, c->task, 8, 1, 8, 256, 11);
    double t_end = now_s() + 10;
    bool generating = false;
    while (!generating && now_s() < t_end) {
        fl_poll(f, 5);
        generating = http_get(http, "/status", body, sizeof body) &&
                     (strstr(body, "\"generating\": true") || strstr(body, "\"generating\":true"));
    }
    assert_true(generating);
    assert_int_equal(f->n_rollouts, 1);
    kill(c->child, SIGTERM);
    WAIT_UNTIL(f, f->n_bye == 1 && f->n_rollouts == 2, 30);
    assert_int_equal(f->last_rollouts_ticket, 8);
    assert_int_equal(f->roll.rollouts.n_samples, 8 * 256);
    int st = 0;
    double end = now_s() + 10;
    pid_t w = 0;
    while ((w = waitpid(c->child, &st, WNOHANG)) == 0 && now_s() < end) fl_poll(f, 20);
    assert_int_equal(w, c->child);
    c->child = -1;
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

/* Run the program with args; its exit status and stderr (NUL-terminated). */
static int run_program(const char *const *args, char *out, size_t cap) {
    int fd[2];
    assert_int_equal(pipe(fd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fd[1], 2);
        close(fd[0]);
        execv(RLHF_BIN_DIR "/rlhf-actor", (char *const *)args);
        _exit(127);
    }
    close(fd[1]);
    size_t got = 0;
    ssize_t r;
    while (got + 1 < cap && (r = read(fd[0], out + got, cap - 1 - got)) > 0) got += (size_t)r;
    out[got] = 0;
    close(fd[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* A bad configuration: one line naming the key, exit status 2. */
static void test_bad_config(void **state) {
    (void)state;
    char out[4096];
    const char *unknown[] = {"rlhf-actor", "--set", "actor.bacth=4", NULL};
    assert_int_equal(run_program(unknown, out, sizeof out), 2);
    printf("%s", out);
    assert_int_equal(count_lines(out), 1);
    assert_non_null(strstr(out, "actor.bacth"));
    const char *wrong[] = {"rlhf-actor", "--set", "actor.credit=lots", NULL};
    assert_int_equal(run_program(wrong, out, sizeof out), 2);
    printf("%s", out);
    assert_int_equal(count_lines(out), 1);
    assert_non_null(strstr(out, "actor.credit"));
    const char *nofile[] = {"rlhf-actor", "--config", "/nonexistent/x.yaml", NULL};
    assert_int_equal(run_program(nofile, out, sizeof out), 2);
    printf("%s", out);
    assert_int_equal(count_lines(out), 1);
    const char *badid[] = {"rlhf-actor", "--set", "model.preset=tiny", "--id", "two words", NULL};
    assert_int_equal(run_program(badid, out, sizeof out), 2);
    printf("%s", out);
    assert_int_equal(count_lines(out), 1);
    assert_non_null(strstr(out, "--id"));
    /* a learner address that does not resolve: exit 2 at once, naming the key */
    const char *badhost[] = {"rlhf-actor", "--set", "model.preset=tiny", "--set", "actor.learner=no-such-host.invalid",
                             NULL};
    assert_int_equal(run_program(badhost, out, sizeof out), 2);
    printf("%s", out);
    assert_int_equal(count_lines(out), 1);
    assert_non_null(strstr(out, "actor.learner"));
    /* an address where no learner answers: exit 1 after actor.connect_timeout_ms, saying so */
    char port[64];
    int fd = socket(AF_INET, SOCK_STREAM, 0); // a free port nobody listens on
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t sl = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    close(fd);
    snprintf(port, sizeof port, "learner.work_port=%d", ntohs(sa.sin_port));
    const char *nolearner[] = {"rlhf-actor",
                               "--set",
                               "model.preset=tiny",
                               "--set",
                               port,
                               "--set",
                               "actor.connect_timeout_ms=800",
                               "--set",
                               "actor.http_port=-1",
                               NULL};
    assert_int_equal(run_program(nolearner, out, sizeof out), 1);
    printf("%s", out);
    assert_non_null(strstr(out, "no learner answered"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_inprocess, setup, teardown),
        cmocka_unit_test_setup_teardown(test_program, setup, teardown),
        cmocka_unit_test(test_bad_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
