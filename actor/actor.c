/*
 * actor.c - the actor role (actor.h): credit-based ticket pull, batched
 * generation on the loop's worker thread, chunked weight sync.
 *
 * Threads. Everything here runs on the loop thread except gen_work(), which
 * runs on the loop's worker and touches only its job and the model/generator.
 * The model's weights change only in weights_apply(), on the loop thread,
 * when no job is running: that is the "between tickets" rule.
 *
 * Ticket life: received (copied out of the decode arena into a job_t) ->
 * queued -> [waiting for weights >= policy_version] -> running on the worker
 * -> rollouts pushed, one more credit asked -> freed. A queued ticket whose
 * deadline passes is dropped (the learner reissues it) and its credit asked
 * for again.
 *
 * Weight sync: a fetch starts from the latest announce newer than the held
 * version (or the version a ticket needs). Consecutive ranges of
 * min(chunk_max, PROTO_CHUNK_BYTES) bytes are requested, up to
 * ACTOR_FETCH_WINDOW in flight; replies come back in request order, so a
 * chunk is taken only at the next expected offset (others are stale replies
 * of an abandoned attempt and are ignored). On completion the XXH3-64 is
 * checked; a mismatch, status UNKNOWN_VERSION or BAD_RANGE, or no progress
 * for ACTOR_FETCH_STALL_MS abandons the fetch, and the next announce starts
 * again.
 */
#include "actor/actor.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>
#include <zmq.h>

#include "common/log.h"
#include "common/checkpoint.h"
#include "common/generate.h"
#include "common/http.h"
#include "common/loop.h"
#include "common/model.h"
#include "proto/proto.h"

#define ACTOR_FETCH_WINDOW      4            // weights requests in flight (PROTOCOL.md 4.6)
#define ACTOR_FETCH_STALL_MS    5000         // no chunk for this long: abandon the fetch
#define ACTOR_HEARTBEAT_MS      1000         // PROTOCOL.md 4.1
#define ACTOR_PEER_DEAD_MS      10000        // learner silent this long: hello again
#define ACTOR_TICK_MS           250          // housekeeping timer
#define ACTOR_STATS_MS          5000         // stats message to the learner
#define ACTOR_LINGER_MS         1000         // ZMQ_LINGER: a closing actor does not hang
#define ACTOR_MAX_ROLLOUT_BYTES (48u << 20)  // split rollouts above this (estimate), under PROTO_MAX_MSG_BYTES
#define ACTOR_MAX_JOB_BYTES     (1ull << 30) // output buffers of one ticket

/* One ticket, copied out of the decode arena. Owned by the actor's queue,
 * then by the worker while running, then freed by gen_done. */
typedef struct job {
    struct job *next;
    struct actor *a;
    uint64_t ticket, policy_version, used_version;
    uint32_t k, n_prompts, n_samples;
    uint64_t deadline_at_ms;            // loop clock
    uint64_t recv_ns, start_ns, gen_ns; // uv_hrtime
    gen_params_t gp;
    int *ptok;             // all prompt tokens back to back
    uint32_t *poff, *plen; // (n_prompts)
    int *out_tok;          // (n_samples, gp.max_new_tokens)
    float *out_lp;         // (n_samples, gp.max_new_tokens)
    gen_request_t *reqs;   // (n_samples)
    rlhf_err_t rc;         // of generator_run
    int64_t gen_tokens;
} job_t;

struct actor {
    rlhf_config_t cfg;
    char id[PROTO_MAX_ID + 1];
    char ep_work[256], ep_rollouts[256], ep_announce[256], ep_weights[256];

    metrics_t *metrics;
    loop_t *loop;
    http_server_t *http;
    loop_timer_t *tick;
    void *zctx;
    void *s_work, *s_rollouts, *s_announce, *s_weights, *s_monitor;
    loop_zsock_t *z_work, *z_rollouts, *z_announce, *z_weights, *z_monitor;
    bool lost; // the work socket reported a disconnection: its next connection is a reconnect

    model_t *model;
    generator_t *gen;
    unsigned char *rx; // receive blob, blob_bytes, allocated once (64-byte aligned)
    size_t blob_bytes;

    /* protocol state (loop thread) */
    proto_msg_t in;  // decode target, reused
    proto_enc_t enc; // encode buffer, reused
    proto_rejects_t rejects;
    metrics_family_t *f_rejected;
    uint64_t seq;
    uint64_t last_work_send_ms, last_work_recv_ms, last_hello_ms;
    bool learner_hello_seen, learner_ever_seen;
    uint64_t start_ms;
    int exit_code; // 1 when no learner answered within actor.connect_timeout_ms

    /* tickets */
    job_t *queue, *queue_tail; // received, not started
    job_t *running;            // on the worker
    int in_hand;               // queued + running
    bool draining, stopped, destroying;

    /* weights */
    _Atomic uint64_t held;           // version in the model
    uint64_t held_checksum;          // its XXH3-64
    bool held_stale;                 // the learner's history changed (restart): refetch before any ticket
    proto_weights_announce_t latest; // newest announce (version 0 = none yet)
    bool fetching, fetch_blocked, ready;
    proto_weights_announce_t fetch; // version being fetched / ready in rx
    uint32_t fetch_chunk;           // bytes per request
    uint64_t req_off, recv_off;     // next range to request, next range expected
    uint64_t fetch_start_ns, fetch_progress_ms;

    /* rates for /status */
    double last_tokens_per_s;
    uint64_t size_logged_ms;     // last "announce of another size" log (once a minute)
    uint64_t send_err_logged_ms; // last "cannot send" log (once a minute)
    uint64_t last_stats_ms;
    _Atomic int http_port;

    /* metrics handles (borrowed from the registry) */
    metrics_counter_t *m_tickets_received, *m_tickets_completed, *m_tickets_dropped;
    metrics_counter_t *m_samples, *m_tokens, *m_prompt_tokens;
    metrics_histogram_t *m_gen_seconds, *m_sync_seconds;
    metrics_gauge_t *m_version, *m_in_progress, *m_tokens_per_s;
    metrics_family_t *f_sync_fail;
};

/* ---- logging ---- */

static void alog(const actor_t *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void alog(const actor_t *a, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    log_vline("actor", a->id, fmt, ap);
    va_end(ap);
}

static double since_s(uint64_t t0_ns) {
    return (double)(uv_hrtime() - t0_ns) * 1e-9;
}

/* ---- sending ---- */

/* Encode m (built with proto_msg_header(type, a->id)) and send it on z, copying the bytes. */
static rlhf_err_t send_msg(actor_t *a, loop_zsock_t *z, proto_msg_t *m, proto_type_t type) {
    char err[256];
    m->seq = a->seq++; // type, sender and body set by the caller (proto_msg_header first)
    rlhf_err_t rc = proto_encode(&a->enc, m, NULL, err, sizeof err);
    if (rc != RLHF_OK) {
        alog(a, "cannot encode %s: %s", proto_type_name(type), err);
        return rc;
    }
    const void *bufs[1] = {a->enc.data};
    size_t lens[1] = {a->enc.len};
    rc = loop_zsock_send_bufs(z, bufs, lens, 1);
    if (rc != RLHF_OK) {
        /* EAGAIN: the queue to an absent learner is full; say so once a minute */
        uint64_t now = loop_now_ms(a->loop);
        if (a->send_err_logged_ms == 0 || now - a->send_err_logged_ms >= 60000) {
            a->send_err_logged_ms = now + 1;
            alog(a, "cannot send %s: %s", proto_type_name(type), zmq_strerror(zmq_errno()));
        }
    }
    if (z == a->z_work && rc == RLHF_OK) a->last_work_send_ms = loop_now_ms(a->loop);
    return rc;
}

static void send_hello(actor_t *a) {
    char batch[32];
    snprintf(batch, sizeof batch, "batch=%d", a->cfg.actor.batch);
    const char *caps[2] = {"gen", batch};
    proto_msg_t m;
    proto_msg_init(&m);
    proto_msg_header(&m, PROTO_HELLO, a->id, 0);
    m.hello.role = PROTO_ROLE_ACTOR;
    m.hello.caps = caps;
    m.hello.n_caps = 2;
    m.hello.software = "rlhf-c/0.1";
    m.hello.weights_version = atomic_load(&a->held);
    send_msg(a, a->z_work, &m, PROTO_HELLO);
    a->last_hello_ms = loop_now_ms(a->loop);
}

static void request_work(actor_t *a, int credit) {
    if (credit <= 0 || a->draining) return;
    proto_msg_t m;
    proto_msg_init(&m);
    proto_msg_header(&m, PROTO_WORK_REQUEST, a->id, 0);
    m.work_request.credit = (uint32_t)credit;
    m.work_request.weights_version = atomic_load(&a->held);
    send_msg(a, a->z_work, &m, PROTO_WORK_REQUEST);
}

static void send_heartbeat(actor_t *a) {
    proto_msg_t m;
    proto_msg_init(&m);
    proto_msg_header(&m, PROTO_HEARTBEAT, a->id, 0);
    m.heartbeat.in_flight = (uint32_t)a->in_hand;
    m.heartbeat.weights_version = atomic_load(&a->held);
    send_msg(a, a->z_work, &m, PROTO_HEARTBEAT);
}

/* Our counters for the learner to export labelled by sender (optional
 * message, PROTOCOL.md 4.1). */
static void send_stats(actor_t *a) {
    proto_named_t v[6] = {
        {"gen_tokens_total", metrics_counter_value(a->m_tokens)},
        {"samples_total", metrics_counter_value(a->m_samples)},
        {"tickets_completed_total", metrics_counter_value(a->m_tickets_completed)},
        {"tickets_dropped_total", metrics_counter_value(a->m_tickets_dropped)},
        {"busy_seconds_total", metrics_histogram_sum(a->m_gen_seconds)},
        {"weights_version", (double)atomic_load(&a->held)},
    };
    proto_msg_t m;
    proto_msg_init(&m);
    proto_msg_header(&m, PROTO_STATS, a->id, 0);
    m.stats.values = v;
    m.stats.n_values = 6;
    send_msg(a, a->z_work, &m, PROTO_STATS);
    a->last_stats_ms = loop_now_ms(a->loop);
}

static void send_bye(actor_t *a, const char *reason) {
    proto_msg_t m;
    proto_msg_init(&m);
    proto_msg_header(&m, PROTO_BYE, a->id, 0);
    m.bye.reason = reason;
    send_msg(a, a->z_work, &m, PROTO_BYE);
}

/* ---- rejects: count, log once per reason per minute, drop ---- */

static void reject(actor_t *a, const char *queue, proto_reject_t why, const char *err) {
    metrics_counter_t *c = NULL;
    if (metrics_counter_get(a->f_rejected, (const char *[]){proto_reject_reason_name(why)}, &c) == RLHF_OK)
        metrics_counter_inc(c);
    if (proto_rejects_note(&a->rejects, why, (double)loop_now_ms(a->loop) * 1e-3))
        alog(a, "dropped a message on %s (%s): %s", queue, proto_reject_reason_name(why), err);
}

/* Decode a received message into a->in; false (counted, logged) if bad. */
static bool decode(actor_t *a, const char *queue, zmq_msg_t *parts, size_t n, uint64_t accept) {
    const void *frames[LOOP_MAX_PARTS];
    size_t lens[LOOP_MAX_PARTS];
    for (size_t i = 0; i < n; i++) frames[i] = zmq_msg_data(&parts[i]), lens[i] = zmq_msg_size(&parts[i]);
    proto_decode_opts_t opts = {.accept = accept, .vocab_size = a->model->cfg.vocab_size};
    proto_reject_t why = PROTO_REJECT_NONE;
    char err[256] = "";
    if (proto_decode_frames(&a->in, frames, lens, n, &opts, &why, err, sizeof err) == RLHF_OK) return true;
    reject(a, queue, why, err);
    return false;
}

/* ---- jobs ---- */

static void job_free(job_t *j) {
    if (!j) return;
    free(j->ptok), free(j->poff), free(j->plen), free(j->out_tok), free(j->out_lp), free(j->reqs);
    free(j);
}

static void update_in_progress(actor_t *a) {
    metrics_gauge_set(a->m_in_progress, a->in_hand);
}

/* A ticket leaves our hands without rollouts: the learner reissues it. */
static void job_drop(actor_t *a, job_t *j, const char *why) {
    alog(a, "dropped ticket %" PRIu64 " (%s)", j->ticket, why);
    metrics_counter_inc(a->m_tickets_dropped);
    a->in_hand--;
    update_in_progress(a);
    job_free(j);
    request_work(a, 1);
}

/* Copy a decoded ticket into a new job. NULL (with why) if it cannot run. */
static job_t *job_from_ticket(actor_t *a, const proto_ticket_t *t, const char **why) {
    const int T = a->model->cfg.max_seq_len;
    uint32_t max_new = t->sampling.max_new_tokens;
    size_t ntok = 0;
    for (uint32_t i = 0; i < t->n_prompts; i++) {
        if ((uint64_t)t->prompts[i].n_tokens + max_new > (uint64_t)T) {
            *why = "prompt + max_new_tokens exceeds model.max_seq_len";
            return NULL;
        }
        ntok += t->prompts[i].n_tokens;
    }
    uint32_t ns = t->n_prompts * t->k;
    if ((uint64_t)ns * max_new * (sizeof(int) + sizeof(float)) > ACTOR_MAX_JOB_BYTES) {
        *why = "output buffers above 1 GiB";
        return NULL;
    }
    *why = "out of memory";
    job_t *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->a = a;
    j->ticket = t->ticket;
    j->policy_version = t->policy_version;
    j->k = t->k;
    j->n_prompts = t->n_prompts;
    j->n_samples = ns;
    j->recv_ns = uv_hrtime();
    j->deadline_at_ms = loop_now_ms(a->loop) + t->deadline_ms;
    gen_params_default(&j->gp);
    j->gp.sampler.temperature = t->sampling.temperature; // 0 = greedy
    j->gp.sampler.top_k = (int)t->sampling.top_k;
    j->gp.sampler.top_p = t->sampling.top_p;
    j->gp.max_new_tokens = (int)max_new;
    j->gp.n_stop = (int)t->sampling.n_stop;
    for (uint32_t s = 0; s < t->sampling.n_stop; s++) j->gp.stop_tokens[s] = t->sampling.stop[s];
    j->ptok = malloc(sizeof(int) * (ntok ? ntok : 1));
    j->poff = malloc(sizeof(uint32_t) * t->n_prompts);
    j->plen = malloc(sizeof(uint32_t) * t->n_prompts);
    j->out_tok = malloc(sizeof(int) * (size_t)ns * max_new);
    j->out_lp = malloc(sizeof(float) * (size_t)ns * max_new);
    j->reqs = calloc(ns, sizeof(gen_request_t));
    if (!j->ptok || !j->poff || !j->plen || !j->out_tok || !j->out_lp || !j->reqs) {
        job_free(j);
        return NULL;
    }
    size_t off = 0;
    for (uint32_t i = 0; i < t->n_prompts; i++) {
        j->poff[i] = (uint32_t)off;
        j->plen[i] = t->prompts[i].n_tokens;
        for (uint32_t x = 0; x < t->prompts[i].n_tokens; x++) j->ptok[off + x] = t->prompts[i].tokens[x];
        off += t->prompts[i].n_tokens;
    }
    /* sample j of prompt i: seed + i*k + j (mod 2^64), PROTOCOL.md 4.2 */
    for (uint32_t i = 0; i < t->n_prompts; i++)
        for (uint32_t s = 0; s < t->k; s++) {
            uint32_t r = i * t->k + s;
            gen_request_t *q = &j->reqs[r];
            q->prompt = j->ptok + j->poff[i];
            q->prompt_len = (int)j->plen[i];
            q->seed = t->sampling.seed + (uint64_t)i * t->k + s;
            q->tokens = j->out_tok + (size_t)r * max_new;
            q->logprobs = j->out_lp + (size_t)r * max_new;
        }
    return j;
}

/* Worker thread: the only code off the loop thread. */
static void gen_work(void *arg) {
    job_t *j = arg;
    /* OpenMP's thread count is per thread: set it where the kernels run */
    model_set_threads(j->a->cfg.actor.threads);
    uint64_t t0 = uv_hrtime();
    j->rc = generator_run(j->a->gen, j->reqs, (int)j->n_samples, &j->gp);
    /* actor.delay_ms: stand-in for a slower model, so scaling benchmarks can
     * show the pipeline scaling past this machine's cores (sleeping uses none) */
    if (j->a->cfg.actor.delay_ms > 0) uv_sleep((unsigned)((int64_t)j->a->cfg.actor.delay_ms * (int64_t)j->n_samples));
    j->gen_ns = uv_hrtime() - t0;
    int64_t pt = 0, gt = 0;
    generator_last_counts(j->a->gen, &pt, &gt);
    j->gen_tokens = gt;
}

static void free_hint(void *data, void *hint) {
    (void)hint;
    free(data);
}

/* Push the rollouts of a finished job: one message, or several when it would
 * not fit a frame. */
static void send_rollouts(actor_t *a, job_t *j) {
    proto_sample_t *ss = calloc(j->n_samples, sizeof *ss);
    if (!ss) {
        alog(a, "out of memory for the rollouts of ticket %" PRIu64, j->ticket);
        metrics_counter_inc(a->m_tickets_dropped);
        return;
    }
    uint64_t queue_us = (j->start_ns - j->recv_ns) / 1000, gen_us = j->gen_ns / 1000;
    for (uint32_t r = 0; r < j->n_samples; r++) {
        const gen_request_t *q = &j->reqs[r];
        proto_sample_t *s = &ss[r];
        s->prompt_index = r / j->k;
        s->sample_index = r % j->k;
        s->prompt = q->prompt;
        s->n_prompt = (uint32_t)q->prompt_len;
        s->completion = q->tokens;
        s->logprobs = q->logprobs;
        s->n_completion = (uint32_t)q->n_tokens;
        s->finish = q->finish == GEN_FINISH_STOP ? PROTO_FINISH_STOP : PROTO_FINISH_LENGTH;
        s->policy_version = j->used_version;
        s->queue_us = queue_us;
        s->gen_us = gen_us;
    }
    uint32_t first = 0, msgs = 0;
    bool ok = true;
    while (first < j->n_samples && ok) {
        uint32_t n = 0;
        uint64_t bytes = 0;
        while (first + n < j->n_samples && n < PROTO_MAX_SAMPLES) {
            const proto_sample_t *s = &ss[first + n];
            uint64_t b = 128 + 4ull * s->n_prompt + 8ull * s->n_completion;
            if (n > 0 && bytes + b > ACTOR_MAX_ROLLOUT_BYTES) break;
            bytes += b, n++;
        }
        proto_msg_t m;
        proto_msg_init(&m);
        proto_msg_header(&m, PROTO_ROLLOUTS, a->id, a->seq++);
        m.rollouts.ticket = j->ticket;
        m.rollouts.samples = ss + first;
        m.rollouts.n_samples = n;
        char err[256];
        zmq_msg_t part;
        size_t len = 0;
        if (proto_encode(&a->enc, &m, NULL, err, sizeof err) != RLHF_OK) {
            alog(a, "cannot encode the rollouts of ticket %" PRIu64 ": %s", j->ticket, err);
            ok = false;
        } else {
            void *buf = proto_enc_release(&a->enc, &len);
            if (zmq_msg_init_data(&part, buf, len, free_hint, NULL) != 0) {
                free(buf);
                ok = false;
            } else if (loop_zsock_send(a->z_rollouts, &part, 1) != RLHF_OK) {
                alog(a, "cannot push the rollouts of ticket %" PRIu64 ": %s", j->ticket, zmq_strerror(zmq_errno()));
                ok = false;
            }
        }
        first += n, msgs++;
    }
    free(ss);
    if (ok && msgs > 1) alog(a, "ticket %" PRIu64 ": rollouts split into %u messages", j->ticket, msgs);
    if (!ok) {
        metrics_counter_inc(a->m_tickets_dropped);
        return;
    }
    metrics_counter_inc(a->m_tickets_completed);
}

/* ---- weights ---- */

static void maybe_fetch(actor_t *a);

/* Abandon the fetch: start again from the latest announce when it is newer
 * than the failed version, else wait for the next announce (PROTOCOL.md 4.6;
 * re-announced every 5 s), so a bad version is not fetched in a loop. */
static void sync_fail(actor_t *a, const char *reason, const char *detail) {
    metrics_counter_t *c = NULL;
    if (metrics_counter_get(a->f_sync_fail, (const char *[]){reason}, &c) == RLHF_OK) metrics_counter_inc(c);
    a->fetching = false;
    a->fetch_blocked = a->latest.version <= a->fetch.version;
    alog(a, "weights v%" PRIu64 " refused (%s): %s; %s", a->fetch.version, reason, detail,
         a->fetch_blocked ? "waiting for the next announce" : "fetching the latest announce");
    maybe_fetch(a);
}

static void fetch_pump(actor_t *a) {
    while (a->fetching && a->req_off < a->fetch.size &&
           a->req_off - a->recv_off < (uint64_t)ACTOR_FETCH_WINDOW * a->fetch_chunk) {
        uint64_t left = a->fetch.size - a->req_off;
        proto_msg_t m;
        proto_msg_init(&m);
        proto_msg_header(&m, PROTO_WEIGHTS_REQUEST, a->id, 0);
        m.weights_request.version = a->fetch.version;
        m.weights_request.offset = a->req_off;
        m.weights_request.length = (uint32_t)(left < a->fetch_chunk ? left : a->fetch_chunk);
        if (send_msg(a, a->z_weights, &m, PROTO_WEIGHTS_REQUEST) != RLHF_OK) break; // the stall timer retries
        a->req_off += m.weights_request.length;
    }
}

/* Start fetching the latest announce when it is newer than what we hold and
 * nothing else is under way. */
static void maybe_fetch(actor_t *a) {
    if (a->fetching || a->ready || a->fetch_blocked || a->latest.version == 0) return;
    if (a->latest.version <= atomic_load(&a->held) && !a->held_stale) return;
    a->fetch = a->latest;
    a->fetch_chunk = a->fetch.chunk_max < PROTO_CHUNK_BYTES ? a->fetch.chunk_max : PROTO_CHUNK_BYTES;
    a->req_off = a->recv_off = 0;
    a->fetching = true;
    a->fetch_start_ns = uv_hrtime();
    a->fetch_progress_ms = loop_now_ms(a->loop);
    alog(a, "fetching weights v%" PRIu64 " (%" PRIu64 " bytes in chunks of %u)", a->fetch.version, a->fetch.size,
         a->fetch_chunk);
    fetch_pump(a);
}

/* Swap the verified blob into the model: only between tickets. */
static void weights_apply(actor_t *a) {
    if (!a->ready || a->running) return;
    float *old = a->model->params_mem;
    a->model->params_mem = (float *)(void *)a->rx;
    a->rx = (unsigned char *)old;
    model_point_params(a->model, a->model->params_mem, &a->model->w);
    atomic_store(&a->held, a->fetch.version);
    a->held_checksum = a->fetch.checksum;
    a->held_stale = false;
    a->ready = false;
    double s = since_s(a->fetch_start_ns);
    metrics_gauge_set(a->m_version, (double)a->fetch.version);
    metrics_histogram_observe(a->m_sync_seconds, s);
    alog(a, "weights v%" PRIu64 " in use (%.3f s from fetch start)", a->fetch.version, s);
}

static void pump(actor_t *a);

static void on_weights(loop_zsock_t *z, zmq_msg_t *parts, size_t n, void *ud) {
    (void)z;
    actor_t *a = ud;
    if (!decode(a, "weights", parts, n, PROTO_ACCEPT_ACTOR_WEIGHTS)) return;
    const proto_weights_chunk_t *c = &a->in.weights_chunk;
    if (!a->fetching || c->version != a->fetch.version) return; // stale reply of an abandoned fetch
    char detail[160];
    if (c->status == PROTO_CHUNK_UNKNOWN_VERSION) {
        sync_fail(a, "unknown_version", "the learner no longer holds it");
        return;
    }
    if (c->status == PROTO_CHUNK_BAD_RANGE) {
        snprintf(detail, sizeof detail, "range %" PRIu64 "+%u refused", c->offset, c->length);
        sync_fail(a, "bad_range", detail);
        return;
    }
    if (c->size != a->fetch.size || c->checksum != a->fetch.checksum) {
        snprintf(detail, sizeof detail,
                 "chunk says size %" PRIu64 " checksum %016" PRIx64 ", the announce said %" PRIu64 " %016" PRIx64,
                 c->size, c->checksum, a->fetch.size, a->fetch.checksum);
        sync_fail(a, "mismatch", detail);
        return;
    }
    if (c->offset != a->recv_off) return; // a reply of an earlier attempt; ours follow in order
    uint64_t left = a->fetch.size - a->recv_off;
    uint64_t want = left < a->fetch_chunk ? left : a->fetch_chunk;
    if (c->length != want) {
        snprintf(detail, sizeof detail, "chunk at %" PRIu64 " has %u bytes, asked for %" PRIu64, c->offset, c->length,
                 want);
        sync_fail(a, "bad_range", detail);
        return;
    }
    memcpy(a->rx + c->offset, c->data, c->length);
    a->recv_off += c->length;
    a->fetch_progress_ms = loop_now_ms(a->loop);
    if (a->recv_off < a->fetch.size) {
        fetch_pump(a);
        return;
    }
    uint64_t sum = proto_weights_checksum(a->rx, a->fetch.size);
    if (sum != a->fetch.checksum) {
        snprintf(detail, sizeof detail, "XXH3-64 %016" PRIx64 ", the announce said %016" PRIx64, sum,
                 a->fetch.checksum);
        sync_fail(a, "checksum", detail);
        return;
    }
    a->fetching = false;
    a->ready = true;
    weights_apply(a); // now if idle, else when the running ticket is done
    pump(a);
}

static void on_announce(loop_zsock_t *z, zmq_msg_t *parts, size_t n, void *ud) {
    (void)z;
    actor_t *a = ud;
    if (!decode(a, "announce", parts, n, PROTO_ACCEPT_ACTOR_ANNOUNCE)) return;
    const proto_weights_announce_t *w = &a->in.weights_announce;
    if (w->size != a->blob_bytes) {
        metrics_counter_t *c = NULL;
        if (metrics_counter_get(a->f_sync_fail, (const char *[]){"size"}, &c) == RLHF_OK) metrics_counter_inc(c);
        uint64_t now = loop_now_ms(a->loop);
        if (a->size_logged_ms == 0 || now - a->size_logged_ms >= 60000) {
            a->size_logged_ms = now + 1;
            alog(a, "weights v%" PRIu64 " ignored: %" PRIu64 " bytes, this model's blob is %zu (model.* differs?)",
                 w->version, w->size, a->blob_bytes);
        }
        return;
    }
    a->fetch_blocked = false; // a new announce: a failed fetch may start again
    uint64_t held = atomic_load(&a->held);
    if (held > 0 && (w->version < held || (w->version == held && w->checksum != a->held_checksum))) {
        /* a restarted learner: its version numbers no longer name our weights */
        if (!a->held_stale)
            alog(a,
                 "learner announces v%" PRIu64 " while we hold v%" PRIu64 " (checksum %016" PRIx64
                 "): its history changed, refetching",
                 w->version, held, a->held_checksum);
        a->held_stale = true;
        a->latest = *w;
    } else if (w->version >= a->latest.version) {
        a->latest = *w;
    }
    maybe_fetch(a);
}

/* ---- tickets ---- */

static void gen_done(loop_t *l, void *arg, bool cancelled);

/* Start the next ticket when idle: expire what is late, wait for the weights
 * a ticket needs, apply verified weights first. */
static void pump(actor_t *a) {
    if (a->running || a->stopped) return;
    weights_apply(a);
    maybe_fetch(a);
    uint64_t now = loop_now_ms(a->loop);
    while (a->queue) {
        job_t *j = a->queue;
        if (now >= j->deadline_at_ms || a->draining) {
            a->queue = j->next;
            if (!a->queue) a->queue_tail = NULL;
            job_drop(a, j, a->draining ? "draining" : "deadline passed before it started");
            continue;
        }
        uint64_t need = j->policy_version > 0 ? j->policy_version : 1;
        if (atomic_load(&a->held) < need || a->held_stale) return; // a fetch is under way, or an announce will come
        a->queue = j->next;
        if (!a->queue) a->queue_tail = NULL;
        j->next = NULL;
        j->used_version = atomic_load(&a->held);
        j->start_ns = uv_hrtime();
        a->running = j;
        if (loop_submit(a->loop, gen_work, gen_done, j) != RLHF_OK) {
            a->running = NULL;
            job_drop(a, j, "cannot queue the generation");
            continue;
        }
        return;
    }
}

static void finish_drain(actor_t *a) {
    if (!a->draining || a->running || a->stopped) return;
    send_bye(a, "drain");
    a->stopped = true;
    alog(a, "drained: bye sent, stopping");
    loop_stop(a->loop);
}

static void gen_done(loop_t *l, void *arg, bool cancelled) {
    (void)l;
    job_t *j = arg;
    actor_t *a = j->a;
    a->running = NULL;
    if (a->destroying || cancelled) {
        job_free(j);
        return;
    }
    if (j->rc != RLHF_OK) {
        job_drop(a, j, rlhf_strerror(j->rc));
    } else {
        double s = (double)j->gen_ns * 1e-9;
        send_rollouts(a, j);
        metrics_counter_add(a->m_samples, j->n_samples);
        metrics_counter_add(a->m_tokens, (double)j->gen_tokens);
        metrics_histogram_observe(a->m_gen_seconds, s);
        a->last_tokens_per_s = s > 0 ? (double)j->gen_tokens / s : 0;
        metrics_gauge_set(a->m_tokens_per_s, a->last_tokens_per_s);
        alog(a, "ticket %" PRIu64 ": %u samples, %" PRId64 " tokens in %.3f s (%.0f tok/s), weights v%" PRIu64,
             j->ticket, j->n_samples, j->gen_tokens, s, a->last_tokens_per_s, j->used_version);
        a->in_hand--;
        update_in_progress(a);
        job_free(j);
        request_work(a, 1);
    }
    pump(a);
    finish_drain(a);
}

static void on_work(loop_zsock_t *z, zmq_msg_t *parts, size_t n, void *ud) {
    (void)z;
    actor_t *a = ud;
    if (!decode(a, "work", parts, n, PROTO_ACCEPT_ACTOR_WORK)) return;
    a->last_work_recv_ms = loop_now_ms(a->loop);
    switch (a->in.type) {
    case PROTO_HELLO:
        if (!a->learner_hello_seen)
            alog(a, "learner %s says hello (weights v%" PRIu64 ")", a->in.sender, a->in.hello.weights_version);
        a->learner_hello_seen = a->learner_ever_seen = true;
        break;
    case PROTO_HEARTBEAT: break;
    case PROTO_TICKET: {
        const proto_ticket_t *t = &a->in.ticket;
        metrics_counter_inc(a->m_tickets_received);
        a->in_hand++;
        update_in_progress(a);
        const char *why = NULL;
        job_t *j = job_from_ticket(a, t, &why);
        if (!j) {
            alog(a, "dropped ticket %" PRIu64 " (%s)", t->ticket, why);
            metrics_counter_inc(a->m_tickets_dropped);
            a->in_hand--;
            update_in_progress(a);
            request_work(a, 1);
            break;
        }
        if (a->queue_tail)
            a->queue_tail->next = j;
        else
            a->queue = j;
        a->queue_tail = j;
        pump(a);
        break;
    }
    default: break;
    }
}

/* Events of the work socket (zmq_socket_monitor): a connection after a
 * disconnection is a reconnect (counting connections instead would miss
 * the first one when it completes before the monitor is attached), maybe to a restarted learner that knows nothing of
 * us, so say hello again and ask for the credit we lack (PROTOCOL.md 4.1). */
static void on_monitor(loop_zsock_t *z, zmq_msg_t *parts, size_t n, void *ud) {
    (void)z;
    actor_t *a = ud;
    if (n < 1 || zmq_msg_size(&parts[0]) < 6) return;
    uint16_t ev;
    memcpy(&ev, zmq_msg_data(&parts[0]), sizeof ev);
    if (ev == ZMQ_EVENT_DISCONNECTED) {
        alog(a, "lost the connection to %s", a->ep_work);
        a->lost = true;
    } else if (ev == ZMQ_EVENT_CONNECTED && a->lost && !a->draining && !a->stopped) {
        a->lost = false;
        alog(a, "reconnected to %s: hello again", a->ep_work);
        a->learner_hello_seen = false;
        send_hello(a);
        request_work(a, a->cfg.actor.credit - a->in_hand);
    }
}

static void on_rollouts(loop_zsock_t *z, zmq_msg_t *parts, size_t n, void *ud) {
    (void)z, (void)parts, (void)n, (void)ud; // PUSH never receives
}

/* ---- housekeeping ---- */

static void drain_now(actor_t *a);

static void on_tick(loop_timer_t *t, void *ud) {
    (void)t;
    actor_t *a = ud;
    uint64_t now = loop_now_ms(a->loop);
    if (a->stopped) return;
    if (!a->learner_ever_seen && a->cfg.actor.connect_timeout_ms > 0 && !a->draining &&
        now - a->start_ms >= (uint64_t)a->cfg.actor.connect_timeout_ms) {
        alog(a,
             "error: no learner answered at %s within %g s (is it running? check actor.learner and "
             "learner.work_port, or raise actor.connect_timeout_ms)",
             a->ep_work, a->cfg.actor.connect_timeout_ms / 1e3);
        a->exit_code = 1;
        drain_now(a);
        return;
    }
    if (!a->draining && now - a->last_work_recv_ms >= ACTOR_PEER_DEAD_MS &&
        now - a->last_hello_ms >= ACTOR_PEER_DEAD_MS) {
        /* the learner forgets our credit on hello: ask again for what we lack */
        alog(a, "nothing from the learner for %.0f s: hello again", (double)(now - a->last_work_recv_ms) * 1e-3);
        a->learner_hello_seen = false;
        send_hello(a);
        request_work(a, a->cfg.actor.credit - a->in_hand);
    }
    if (a->learner_hello_seen && now - a->last_stats_ms >= ACTOR_STATS_MS) send_stats(a);
    if (now - a->last_work_send_ms >= ACTOR_HEARTBEAT_MS) send_heartbeat(a);
    if (a->fetching && now - a->fetch_progress_ms >= ACTOR_FETCH_STALL_MS) {
        sync_fail(a, "stalled", "no chunk for 5 s"); // the next announce (<= 5 s) starts it again
    }
    pump(a); // expires late tickets
}

static void drain_now(actor_t *a) {
    if (a->draining || a->stopped) return;
    a->draining = true;
    alog(a, "draining: %s", a->running ? "finishing the running ticket" : "no ticket running");
    pump(a); // drops what has not started
    finish_drain(a);
}

static void on_post_drain(loop_t *l, void *arg) {
    (void)l;
    drain_now(arg);
}

static void on_signal(loop_t *l, int signum, void *ud) {
    (void)l;
    actor_t *a = ud;
    alog(a, "signal %d", signum);
    drain_now(a);
}

static void status_hook(json_t *st, void *ud) {
    actor_t *a = ud;
    json_object_set_new(st, "role", json_string("actor"));
    json_object_set_new(st, "id", json_string(a->id));
    json_object_set_new(st, "learner", json_string(a->ep_work));
    json_object_set_new(st, "weights_version", json_integer((json_int_t)atomic_load(&a->held)));
    json_object_set_new(st, "fetching", a->fetching ? json_integer((json_int_t)a->fetch.version) : json_null());
    json_object_set_new(st, "tickets_in_progress", json_integer(a->in_hand));
    json_object_set_new(st, "generating", json_boolean(a->running != NULL));
    json_object_set_new(st, "tokens_per_s", json_real(a->last_tokens_per_s));
    json_object_set_new(st, "tickets_completed",
                        json_integer((json_int_t)metrics_counter_value(a->m_tickets_completed)));
    json_object_set_new(st, "tickets_dropped", json_integer((json_int_t)metrics_counter_value(a->m_tickets_dropped)));
    json_object_set_new(st, "draining", json_boolean(a->draining));
}

/* ---- lifecycle ---- */

static bool valid_id(const char *id) {
    size_t n = strlen(id);
    if (n < 1 || n > PROTO_MAX_ID) return false;
    for (size_t i = 0; i < n; i++)
        if (id[i] < 0x21 || id[i] > 0x7E) return false;
    return true;
}

static rlhf_err_t open_socket(actor_t *a, int type, const char *ep, void **out, char *err, size_t errlen) {
    void *s = zmq_socket(a->zctx, type);
    if (!s) return rlhf_seterr(err, errlen, RLHF_EIO, "zmq_socket: %s", zmq_strerror(zmq_errno()));
    int linger = ACTOR_LINGER_MS;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    if (proto_zmq_limit(s) != RLHF_OK || (type == ZMQ_SUB && zmq_setsockopt(s, ZMQ_SUBSCRIBE, "", 0) != 0)) {
        zmq_close(s);
        return rlhf_seterr(err, errlen, RLHF_EIO, "zmq_setsockopt: %s", zmq_strerror(zmq_errno()));
    }
    if (zmq_connect(s, ep) != 0) {
        zmq_close(s);
        return rlhf_seterr(err, errlen, RLHF_EINVAL, "actor.learner: cannot connect to %s: %s", ep,
                           zmq_strerror(zmq_errno()));
    }
    *out = s;
    return RLHF_OK;
}

static rlhf_err_t make_metrics(actor_t *a) {
    metrics_t *m = a->metrics;
    metrics_family_t *tickets;
    rlhf_err_t rc;
    static const double gen_bounds[] = {0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100};
    if ((rc = metrics_register_process(m)) != RLHF_OK ||
        (rc = metrics_counter_family(m, "rlhf_tickets_total", "Tickets by outcome (received, completed, dropped).",
                                     "outcome", &tickets)) != RLHF_OK ||
        (rc = metrics_counter_get(tickets, (const char *[]){"received"}, &a->m_tickets_received)) != RLHF_OK ||
        (rc = metrics_counter_get(tickets, (const char *[]){"completed"}, &a->m_tickets_completed)) != RLHF_OK ||
        (rc = metrics_counter_get(tickets, (const char *[]){"dropped"}, &a->m_tickets_dropped)) != RLHF_OK ||
        (rc = metrics_counter(m, "rlhf_samples_generated_total", "Completions generated.", &a->m_samples)) != RLHF_OK ||
        (rc = metrics_counter(m, "rlhf_tokens_generated_total", "Completion tokens generated.", &a->m_tokens)) !=
            RLHF_OK ||
        (rc = metrics_histogram(m, "rlhf_generation_seconds", "Wall time of one ticket's generation.", gen_bounds,
                                sizeof gen_bounds / sizeof gen_bounds[0], &a->m_gen_seconds)) != RLHF_OK ||
        (rc = metrics_histogram(m, "rlhf_weight_sync_seconds",
                                "From the start of a weights fetch to the version in use.", NULL, 0,
                                &a->m_sync_seconds)) != RLHF_OK ||
        (rc = metrics_gauge(m, "rlhf_weights_version", "Weights version in use (0 = none).", &a->m_version)) !=
            RLHF_OK ||
        (rc = metrics_gauge(m, "rlhf_tickets_in_progress", "Tickets held: queued or generating.", &a->m_in_progress)) !=
            RLHF_OK ||
        (rc = metrics_gauge(m, "rlhf_generation_tokens_per_second", "Tokens/s of the last ticket's generation.",
                            &a->m_tokens_per_s)) != RLHF_OK ||
        (rc = metrics_counter_family(m, "rlhf_weight_sync_failures_total",
                                     "Weight fetches refused, by reason (checksum, size, unknown_version, ...).",
                                     "reason", &a->f_sync_fail)) != RLHF_OK ||
        (rc = metrics_counter_family(m, "rlhf_messages_rejected_total",
                                     "Messages dropped as malformed or over a limit, by reason.", "reason",
                                     &a->f_rejected)) != RLHF_OK)
        return rc;
    return RLHF_OK;
}

/* The run's model shape: model.init's config.json, else the preset. */
static rlhf_err_t model_shape(const rlhf_config_t *cfg, model_config_t *mc, char *err, size_t errlen) {
    if (cfg->model.init[0]) {
        char inner[400];
        if (checkpoint_load_config(cfg->model.init, mc, inner, sizeof inner) != RLHF_OK)
            return rlhf_seterr(err, errlen, RLHF_EINVAL, "model.init: %s", inner);
        return RLHF_OK;
    }
    return config_to_model(cfg, mc, err, errlen);
}

rlhf_err_t actor_new(actor_t **out, const rlhf_config_t *cfg, const char *id, char *err, size_t errlen) {
    *out = NULL;
    const config_security_t *sec = &cfg->security;
    if (sec->server_public_key[0] || sec->client_public_key[0] || sec->client_secret_key[0])
        return rlhf_seterr(err, errlen, RLHF_EUNSUPPORTED,
                           "security.*: CurveZMQ is not supported by rlhf-actor yet; clear the security keys");
    rlhf_err_t rc = RLHF_ENOMEM;
    actor_t *a = calloc(1, sizeof *a);
    if (!a) return rlhf_seterr(err, errlen, RLHF_ENOMEM, "out of memory");
    a->cfg = *cfg;
    proto_msg_init(&a->in);
    proto_enc_init(&a->enc);
    proto_rejects_init(&a->rejects);
    atomic_init(&a->held, 0);
    atomic_init(&a->http_port, -1);
    if (id) {
        snprintf(a->id, sizeof a->id, "%s", id);
        if (strlen(id) > PROTO_MAX_ID || !valid_id(a->id)) {
            rc = rlhf_seterr(err, errlen, RLHF_EINVAL,
                             "--id: '%s' must be 1..64 printable ASCII characters without spaces", id);
            goto fail;
        }
    } else {
        char host[40] = "host";
        gethostname(host, sizeof host - 1);
        host[sizeof host - 1] = 0;
        for (char *p = host; *p; p++)
            if (*p < 0x21 || *p > 0x7E) *p = '_';
        snprintf(a->id, sizeof a->id, "actor-%s-%ld", host, (long)getpid());
    }

    model_config_t mc;
    if ((rc = model_shape(cfg, &mc, err, errlen)) != RLHF_OK) goto fail;
    if (!(a->model = model_new(&mc))) {
        rc = rlhf_seterr(err, errlen, RLHF_ENOMEM, "cannot allocate the model");
        goto fail;
    }
    a->blob_bytes = a->model->n_params * sizeof(float);
    a->rx = aligned_alloc(64, (a->blob_bytes + 63) & ~(size_t)63);
    int batch = cfg->actor.batch > 0 ? cfg->actor.batch : 1;
    if (!a->rx || !(a->gen = generator_new(a->model, batch, mc.max_seq_len))) {
        rc = rlhf_seterr(err, errlen, RLHF_ENOMEM, "cannot allocate the generator (actor.batch %d)", batch);
        goto fail;
    }
    memset(a->rx, 0, a->blob_bytes);

    if ((rc = metrics_new(&a->metrics)) != RLHF_OK || (rc = make_metrics(a)) != RLHF_OK) {
        rlhf_seterr(err, errlen, rc, "metrics: %s", rlhf_strerror(rc));
        goto fail;
    }
    if ((rc = loop_new(&a->loop, &(loop_config_t){.metrics = a->metrics, .nworkers = 1})) != RLHF_OK) {
        rlhf_seterr(err, errlen, rc, "event loop: %s", rlhf_strerror(rc));
        goto fail;
    }
    if ((rc = loop_timer_new(a->loop, on_tick, a, &a->tick)) != RLHF_OK) goto fail;

    const char *host = cfg->actor.learner;
    if ((rc = config_check_host("actor.learner", host, err, errlen)) != RLHF_OK) goto fail;
    config_endpoint(cfg, host, CONFIG_EP_WORK, a->ep_work, sizeof a->ep_work);
    config_endpoint(cfg, host, CONFIG_EP_ROLLOUTS, a->ep_rollouts, sizeof a->ep_rollouts);
    config_endpoint(cfg, host, CONFIG_EP_ANNOUNCE, a->ep_announce, sizeof a->ep_announce);
    config_endpoint(cfg, host, CONFIG_EP_WEIGHTS, a->ep_weights, sizeof a->ep_weights);
    if (!(a->zctx = zmq_ctx_new())) {
        rc = rlhf_seterr(err, errlen, RLHF_EIO, "zmq_ctx_new: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    if ((rc = open_socket(a, ZMQ_DEALER, a->ep_work, &a->s_work, err, errlen)) != RLHF_OK ||
        (rc = open_socket(a, ZMQ_PUSH, a->ep_rollouts, &a->s_rollouts, err, errlen)) != RLHF_OK ||
        (rc = open_socket(a, ZMQ_SUB, a->ep_announce, &a->s_announce, err, errlen)) != RLHF_OK ||
        (rc = open_socket(a, ZMQ_DEALER, a->ep_weights, &a->s_weights, err, errlen)) != RLHF_OK)
        goto fail;
    char mon_ep[64];
    snprintf(mon_ep, sizeof mon_ep, "inproc://actor-work-monitor-%p", (void *)a);
    if (zmq_socket_monitor(a->s_work, mon_ep, ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED) != 0 ||
        !(a->s_monitor = zmq_socket(a->zctx, ZMQ_PAIR)) || zmq_connect(a->s_monitor, mon_ep) != 0) {
        rc = rlhf_seterr(err, errlen, RLHF_EIO, "zmq_socket_monitor: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    int zero = 0;
    zmq_setsockopt(a->s_monitor, ZMQ_LINGER, &zero, sizeof zero);
    if ((rc = loop_zsock_add(a->loop, a->s_work, "work", on_work, a, &a->z_work)) != RLHF_OK ||
        (rc = loop_zsock_add(a->loop, a->s_rollouts, "rollouts", on_rollouts, a, &a->z_rollouts)) != RLHF_OK ||
        (rc = loop_zsock_add(a->loop, a->s_announce, "announce", on_announce, a, &a->z_announce)) != RLHF_OK ||
        (rc = loop_zsock_add(a->loop, a->s_weights, "weights", on_weights, a, &a->z_weights)) != RLHF_OK ||
        (rc = loop_zsock_add(a->loop, a->s_monitor, NULL, on_monitor, a, &a->z_monitor)) != RLHF_OK) {
        rlhf_seterr(err, errlen, rc, "event loop: %s", rlhf_strerror(rc));
        goto fail;
    }
    if (cfg->actor.http_port >= 0) {
        const char *host = strcmp(cfg->actor.http_bind, "*") == 0 ? "0.0.0.0" : cfg->actor.http_bind;
        http_config_t hc = {.host = host, .port = cfg->actor.http_port, .metrics = a->metrics};
        char herr[256];
        if ((rc = http_server_new(a->loop, &hc, &a->http, herr, sizeof herr)) != RLHF_OK) {
            rlhf_seterr(err, errlen, rc, "actor.http_port: %s", herr);
            goto fail;
        }
        http_server_set_status_hook(a->http, status_hook, a);
        atomic_store(&a->http_port, http_server_port(a->http));
    }
    *out = a;
    return RLHF_OK;
fail:
    actor_destroy(&a);
    return rc;
}

rlhf_err_t actor_catch_signals(actor_t *a) {
    return loop_catch_signals(a->loop, on_signal, NULL, a);
}

rlhf_err_t actor_run(actor_t *a) {
    alog(a, "connecting to %s (model %zu params, batch %d, credit %d, http %d)", a->ep_work, a->model->n_params,
         a->cfg.actor.batch, a->cfg.actor.credit, atomic_load(&a->http_port));
    uint64_t now = loop_now_ms(a->loop);
    a->last_work_recv_ms = a->start_ms = now;
    send_hello(a);
    request_work(a, a->cfg.actor.credit);
    loop_timer_start(a->tick, ACTOR_TICK_MS, ACTOR_TICK_MS);
    loop_run(a->loop);
    loop_timer_stop(a->tick);
    return a->exit_code ? RLHF_EIO : RLHF_OK;
}

void actor_stop(actor_t *a) {
    if (a && a->loop) loop_post(a->loop, on_post_drain, a);
}

void actor_destroy(actor_t **p) {
    if (!p || !*p) return;
    actor_t *a = *p;
    *p = NULL;
    a->destroying = true;
    http_server_destroy(&a->http);
    loop_zsock_remove(&a->z_work);
    loop_zsock_remove(&a->z_rollouts);
    loop_zsock_remove(&a->z_announce);
    loop_zsock_remove(&a->z_weights);
    loop_zsock_remove(&a->z_monitor);
    loop_timer_destroy(&a->tick);
    loop_destroy(&a->loop); // finishes the running job (gen_done frees it)
    while (a->queue) {
        job_t *j = a->queue;
        a->queue = j->next;
        job_free(j);
    }
    if (a->s_work && a->s_monitor) zmq_socket_monitor(a->s_work, NULL, 0);
    void *socks[5] = {a->s_work, a->s_rollouts, a->s_announce, a->s_weights, a->s_monitor};
    for (int i = 0; i < 5; i++)
        if (socks[i]) zmq_close(socks[i]);
    if (a->zctx) zmq_ctx_term(a->zctx);
    generator_destroy(&a->gen);
    model_destroy(&a->model);
    free(a->rx);
    proto_msg_fini(&a->in);
    proto_enc_fini(&a->enc);
    metrics_destroy(&a->metrics);
    free(a);
}

uint64_t actor_weights_version(const actor_t *a) {
    return atomic_load(&((actor_t *)a)->held);
}
int actor_http_port(const actor_t *a) {
    return atomic_load(&((actor_t *)a)->http_port);
}
metrics_t *actor_metrics(actor_t *a) {
    return a->metrics;
}
const char *actor_id(const actor_t *a) {
    return a->id;
}
