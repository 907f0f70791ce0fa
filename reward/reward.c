/*
 * reward.c - the reward worker role (see reward.h for the contract).
 *
 * Threads: everything touching sockets, timers, counters of the conversation
 * and the job queue runs on the loop thread. A job (one score_work) is
 * computed on the loop's single worker thread by job_compute, which reads
 * only the job, the reference model (its weights are never written after
 * reward_new) and the immutable scorer, and writes only the job and the
 * reusable activations (used by one job at a time: jobs run strictly one
 * after another). Metrics handles are thread-safe.
 */
#include "reward/reward.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/checkpoint.h"
#include "common/http.h"
#include "common/loop.h"
#include "common/metrics.h"
#include "common/model.h"
#include "proto/proto.h"
#include "reward/scorer.h"

#define REWARD_TICK_MS      250
#define REWARD_HEARTBEAT_MS 1000
#define REWARD_SILENCE_MS   10000
#define REWARD_LINGER_MS    1000
#define REWARD_LOG_EVERY_S  60.0
#define REWARD_STATS_MS     5000 // stats to the learner (protocol: at most 1/s)

enum { DROP_OVER_CREDIT, DROP_DRAINING, DROP_NO_MEMORY, DROP_FAILED, DROP_SEND_FAILED, DROP__COUNT };
static const char *const drop_reason[DROP__COUNT] = {"over_credit", "draining", "no_memory", "failed", "send_failed"};

typedef struct job job_t;
struct job {
    job_t *next;
    reward_t *r;     // borrowed back-pointer
    proto_msg_t msg; // the decoded score_work, owned
    uint64_t seq;    // envelope seq reserved for the scored message
    /* results, written by job_compute */
    rlhf_err_t rc; // RLHF_OK, or why nothing can be sent (err says more)
    char err[160];
    void *bytes; // (len) the encoded scored message, owned (free)
    size_t len;
    double seconds; // wall time of job_compute
    double reward_sum;
    uint32_t n_invalid, n_too_long, n_bad_task;
    uint64_t first_invalid_id; // prompt id of the first invalid sample, for the log
};

struct reward {
    rlhf_config_t cfg;
    char id[PROTO_MAX_ID + 1];
    char score_ep[CONFIG_NAME_LEN + 32], scored_ep[CONFIG_NAME_LEN + 32];

    metrics_t *metrics;
    loop_t *loop;
    http_server_t *http;
    void *zctx, *score_sock, *scored_sock; // owned zmq context and sockets
    loop_zsock_t *zscore, *zscored;        // registrations, owned by the loop
    void *mon_sock;                        // PAIR receiving the score socket's connect events
    loop_zsock_t *zmon;
    bool lost; // the score socket reported a disconnection: its next connection is a reconnect
    loop_timer_t *tick;

    model_t *ref;          // frozen reference, owned
    uint64_t ref_checksum; // XXH3-64 of its blob: equals the learner's version 1
    model_acts_t *acts;    // (acts_B, acts_T), owned; worker thread only
    int acts_B, acts_T;
    scorer_t *scorer; // owned

    /* conversation state (loop thread) */
    proto_enc_t enc; // encoder for control messages
    proto_rejects_t rejects;
    uint64_t seq;
    int credit_free;      // credit granted to the learner and not used yet
    job_t *qhead, *qtail; // received, not started
    int n_queued;
    job_t *running; // submitted to the worker thread
    uint64_t last_tx_ms, last_rx_ms, last_hello_ms, last_stats_ms;
    bool started, draining, bye_sent, heard_learner, ever_heard;
    uint64_t start_ms;
    int exit_code; // 1 when no learner answered within reward.connect_timeout_ms
    double last_invalid_log, last_drop_log[DROP__COUNT];
    uint64_t jobs_done, samples_scored, samples_invalid;
    double reward_mean, busy_seconds;

    /* metrics handles (borrowed from the registry) */
    metrics_family_t *f_rejected;
    metrics_counter_t *m_jobs, *m_samples, *m_invalid, *m_busy, *m_dropped[DROP__COUNT];
    metrics_counter_t *m_rejected[PROTO_REJECT__COUNT];
    metrics_histogram_t *m_seconds;
    metrics_gauge_t *m_reward_mean, *m_in_flight, *m_credit_free;
};

/* ---- small helpers ---- */

static void rlog(const reward_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void rlog(const reward_t *r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    log_vline("reward", r->id, fmt, ap);
    va_end(ap);
}

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int valid_id(const char *s) {
    size_t n = s ? strlen(s) : 0;
    if (n < 1 || n > PROTO_MAX_ID) return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7E) return 0;
    return 1;
}

static int in_flight(const reward_t *r) {
    return r->n_queued + (r->running ? 1 : 0);
}

static void job_free(job_t *j) {
    if (!j) return;
    proto_msg_fini(&j->msg);
    free(j->bytes);
    free(j);
}

static void note_drop(reward_t *r, int why, uint64_t ticket) {
    metrics_counter_inc(r->m_dropped[why]);
    double now = mono_s();
    if (r->last_drop_log[why] < 0 || now - r->last_drop_log[why] >= REWARD_LOG_EVERY_S) {
        r->last_drop_log[why] = now;
        rlog(r, "dropped score job for ticket %llu: %s (logged once per minute)", (unsigned long long)ticket,
             drop_reason[why]);
    }
}

/* Encode m (header set by the caller) and send it on z. */
static rlhf_err_t send_msg(reward_t *r, loop_zsock_t *z, proto_msg_t *m) {
    char err[256];
    rlhf_err_t rc = proto_encode(&r->enc, m, NULL, err, sizeof err);
    if (rc != RLHF_OK) {
        rlog(r, "cannot encode %s: %s", proto_type_name(m->type), err);
        return rc;
    }
    const void *bufs[1] = {r->enc.data};
    size_t lens[1] = {r->enc.len};
    rc = loop_zsock_send_bufs(z, bufs, lens, 1);
    if (rc == RLHF_OK && z == r->zscore) r->last_tx_ms = loop_now_ms(r->loop);
    return rc;
}

static void send_hello(reward_t *r) {
    char cap_scorer[PROTO_MAX_NAME + 8], cap_batch[32];
    snprintf(cap_scorer, sizeof cap_scorer, "scorer:%s", scorer_name(r->scorer));
    snprintf(cap_batch, sizeof cap_batch, "batch=%d", r->cfg.reward.batch);
    const char *caps[] = {"ref_logprobs", cap_scorer, cap_batch};
    proto_msg_t m;
    proto_msg_init(&m);
    proto_msg_header(&m, PROTO_HELLO, r->id, r->seq++);
    m.hello = (proto_hello_t){.role = PROTO_ROLE_REWARD, .caps = caps, .n_caps = 3, .software = "rlhf-c/0.1"};
    if (send_msg(r, r->zscore, &m) != RLHF_OK) rlog(r, "cannot send hello: %s", zmq_strerror(zmq_errno()));
    r->last_hello_ms = loop_now_ms(r->loop);
}

/* Grant n more score jobs to the learner. */
static void send_credit(reward_t *r, int n) {
    if (n <= 0) return;
    proto_msg_t m;
    proto_msg_init(&m);
    proto_msg_header(&m, PROTO_SCORE_REQUEST, r->id, r->seq++);
    m.score_request = (proto_work_request_t){.credit = (uint32_t)n};
    if (send_msg(r, r->zscore, &m) == RLHF_OK)
        r->credit_free += n;
    else
        rlog(r, "cannot send score_request: %s", zmq_strerror(zmq_errno()));
}

static void send_heartbeat(reward_t *r) {
    proto_msg_t m;
    proto_msg_init(&m);
    proto_msg_header(&m, PROTO_HEARTBEAT, r->id, r->seq++);
    m.heartbeat = (proto_heartbeat_t){.in_flight = (uint32_t)in_flight(r)};
    send_msg(r, r->zscore, &m); // a lost heartbeat is not worth a log line
}

static void send_bye(reward_t *r, const char *reason) {
    proto_msg_t m;
    proto_msg_init(&m);
    proto_msg_header(&m, PROTO_BYE, r->id, r->seq++);
    m.bye = (proto_bye_t){.reason = reason};
    if (send_msg(r, r->zscore, &m) != RLHF_OK) rlog(r, "cannot send bye: %s", zmq_strerror(zmq_errno()));
    r->bye_sent = true;
}

/* The worker's own counters for the learner to export (PROTOCOL.md 4.1). */
static void send_stats(reward_t *r) {
    proto_named_t v[] = {
        {"score_jobs_total", (double)r->jobs_done},
        {"samples_scored_total", (double)r->samples_scored},
        {"samples_invalid_total", (double)r->samples_invalid},
        {"busy_seconds_total", r->busy_seconds},
        {"jobs_in_flight", (double)in_flight(r)},
        {"reward_mean", r->reward_mean},
    };
    proto_msg_t m;
    proto_msg_init(&m);
    proto_msg_header(&m, PROTO_STATS, r->id, r->seq++);
    m.stats = (proto_stats_t){.values = v, .n_values = sizeof v / sizeof v[0]};
    send_msg(r, r->zscore, &m);
    r->last_stats_ms = loop_now_ms(r->loop);
}

static void update_gauges(reward_t *r) {
    metrics_gauge_set(r->m_in_flight, in_flight(r));
    metrics_gauge_set(r->m_credit_free, r->credit_free);
}

/* ---- the compute side (worker thread) ---- */

/* Tokens per reference forward: reward.batch rows of up to this many
 * tokens; longer sequences go fewer to a forward, so activations (logits
 * grow as rows * T * V, attention as rows * T^2) stay bounded whatever the
 * context length. */
#define REWARD_ROW_TOKENS 64

static int token_budget(const reward_t *r) {
    int B = r->cfg.reward.batch > 0 ? r->cfg.reward.batch : 1;
    return B * REWARD_ROW_TOKENS;
}

/* Rows of length T one forward may take. */
static int rows_for(const reward_t *r, int T) {
    int B = r->cfg.reward.batch > 0 ? r->cfg.reward.batch : 1, n = token_budget(r) / (T > 0 ? T : 1);
    return n < 1 ? 1 : n > B ? B : n;
}

/* Make the activations hold (B, T): T rounded up to a power of two (capped
 * at the context) and as many rows as the token budget gives that T, so a
 * stream of similar lengths allocates once. */
static rlhf_err_t ensure_acts(reward_t *r, int B, int T) {
    if (r->acts && B <= r->acts_B && T <= r->acts_T) return RLHF_OK;
    int maxT = r->ref->cfg.max_seq_len, newT = 16;
    while (newT < T) newT *= 2;
    if (newT > maxT) newT = maxT;
    int newB = rows_for(r, newT);
    if (newB < B) newB = B;
    model_acts_destroy(&r->acts);
    r->acts_B = r->acts_T = 0;
    r->acts = model_acts_new(&r->ref->cfg, newB, newT);
    if (!r->acts) return RLHF_ENOMEM;
    r->acts_B = newB, r->acts_T = newT;
    return RLHF_OK;
}

/*
 * Reference log-probs for the rows idx[0..n) of the job (each fits the
 * context): tokens (n, T) = prompt ++ completion right-padded, targets the
 * next token at every position that predicts a completion token. Writes
 * ref + off[i] (n_completion floats per row) and adds the forward's time,
 * split evenly, to us[i]. RLHF_ENOMEM when activations or scratch cannot be
 * allocated (nothing written then).
 */
static rlhf_err_t ref_batch(reward_t *r, const proto_score_work_t *w, const uint32_t *idx, int n, float *ref,
                            const size_t *off, double *us) {
    int T = 0;
    for (int b = 0; b < n; b++) {
        const proto_score_item_t *it = &w->items[idx[b]];
        int len = (int)(it->n_prompt + it->n_completion);
        if (len > T) T = len;
    }
    rlhf_err_t rc = ensure_acts(r, n, T);
    if (rc != RLHF_OK) return rc;
    size_t BT = (size_t)n * T;
    int *tok = malloc(sizeof(int) * BT), *tgt = malloc(sizeof(int) * BT);
    if (!tok || !tgt) {
        free(tok), free(tgt);
        return RLHF_ENOMEM;
    }
    for (size_t i = 0; i < BT; i++) tok[i] = 0, tgt[i] = -1; // pad: causal attention never looks right
    for (int b = 0; b < n; b++) {
        const proto_score_item_t *it = &w->items[idx[b]];
        int np = (int)it->n_prompt, nc = (int)it->n_completion;
        int *row = tok + (size_t)b * T, *trow = tgt + (size_t)b * T;
        for (int t = 0; t < np; t++) row[t] = it->prompt[t];
        for (int t = 0; t < nc; t++) row[np + t] = it->completion[t];
        /* position p predicts token p+1: completion token t is predicted at np-1+t */
        for (int t = 0; t < nc; t++) trow[np - 1 + t] = it->completion[t];
    }
    double t0 = mono_s();
    model_forward(r->ref, r->acts, tok, tgt, n, T, w->temperature);
    const float *lp = model_acts_logprobs(r->acts);
    for (int b = 0; b < n; b++) {
        const proto_score_item_t *it = &w->items[idx[b]];
        memcpy(ref + off[idx[b]], lp + (size_t)b * T + it->n_prompt - 1, sizeof(float) * it->n_completion);
    }
    double dt_us = (mono_s() - t0) * 1e6 / n;
    for (int b = 0; b < n; b++) us[idx[b]] += dt_us;
    free(tok), free(tgt);
    return RLHF_OK;
}

static void job_compute(void *arg) {
    job_t *j = arg;
    reward_t *r = j->r;
    const proto_score_work_t *w = &j->msg.score_work;
    uint32_t n = w->n_items;
    double t_start = mono_s();
    int maxT = r->ref->cfg.max_seq_len;
    /* OpenMP's thread count is per calling thread: set it on this one */
    model_set_threads(r->cfg.reward.threads);
    int bad_task = w->task[0] != '\0' && strcmp(w->task, scorer_name(r->scorer)) != 0;

    scorer_output_t *outs = calloc(n, sizeof *outs);
    proto_scored_sample_t *ss = calloc(n, sizeof *ss);
    size_t *off = calloc(n, sizeof *off);
    double *us = calloc(n, sizeof *us);
    uint32_t *idx = calloc(n, sizeof *idx);
    uint8_t *fits = calloc(n, 1);
    float *ref = NULL;
    proto_enc_t enc;
    proto_enc_init(&enc);
    j->rc = RLHF_ENOMEM;
    if (!outs || !ss || !off || !us || !idx || !fits) goto fail;

    size_t total = 0;
    for (uint32_t i = 0; i < n; i++) {
        const proto_score_item_t *it = &w->items[i];
        off[i] = total;
        total += it->n_completion;
        fits[i] = (uint64_t)it->n_prompt + it->n_completion <= (uint64_t)maxT;
    }
    if (w->want_ref && !(ref = malloc(sizeof(float) * (total ? total : 1)))) goto fail;

    /* rewards */
    for (uint32_t i = 0; i < n; i++) {
        const proto_score_item_t *it = &w->items[i];
        double t0 = mono_s();
        if (!fits[i]) {
            scorer_output_invalid(&outs[i]);
            j->n_too_long++;
        } else if (bad_task) {
            scorer_output_invalid(&outs[i]);
            j->n_bad_task++;
        } else {
            scorer_input_t in = {it->prompt_id, it->prompt, it->n_prompt, it->completion, it->n_completion, it->finish};
            scorer_score(r->scorer, &in, &outs[i]);
        }
        if (outs[i].invalid && j->n_invalid++ == 0) j->first_invalid_id = it->prompt_id;
        us[i] += (mono_s() - t0) * 1e6;
    }

    /* reference log-probs, reward.batch rows per forward */
    if (w->want_ref) {
        /* rows in order, a forward whenever the next row would not fit the
         * rows allowed at the longest length so far */
        int nb = 0, T = 0;
        for (uint32_t i = 0; i <= n; i++) {
            int len = i < n ? (int)(w->items[i].n_prompt + w->items[i].n_completion) : 0;
            int full = i == n || (fits[i] && nb > 0 && nb + 1 > rows_for(r, len > T ? len : T));
            if (full && nb > 0) {
                rlhf_err_t rc = ref_batch(r, w, idx, nb, ref, off, us);
                if (rc != RLHF_OK) {
                    snprintf(j->err, sizeof j->err, "reference forward of %d rows: %s", nb, rlhf_strerror(rc));
                    j->rc = rc;
                    goto fail;
                }
                nb = 0, T = 0;
            }
            if (i < n && fits[i]) {
                idx[nb++] = i;
                if (len > T) T = len;
            }
        }
    }

    for (uint32_t i = 0; i < n; i++) {
        const proto_score_item_t *it = &w->items[i];
        proto_scored_sample_t *s = &ss[i];
        s->prompt_index = it->prompt_index;
        s->sample_index = it->sample_index;
        if (w->want_ref && fits[i]) {
            const float *lp = ref + off[i];
            int finite = 1;
            for (uint32_t t = 0; t < it->n_completion; t++) finite &= isfinite(lp[t]) != 0;
            if (finite) {
                s->ref_logprobs = lp;
                s->n_ref = it->n_completion;
            } else if (!outs[i].invalid) { // never send NaN: a neutral, flagged sample instead
                scorer_output_invalid(&outs[i]);
                if (j->n_invalid++ == 0) j->first_invalid_id = it->prompt_id;
            }
        }
        s->reward = outs[i].reward;
        s->components = outs[i].components;
        s->n_components = outs[i].n_components;
        s->score_us = (uint64_t)(us[i] + 0.5);
        j->reward_sum += outs[i].reward;
    }

    proto_msg_t m;
    proto_msg_init(&m);
    proto_msg_header(&m, PROTO_SCORED, r->id, j->seq);
    m.scored = (proto_scored_t){.ticket = w->ticket, .samples = ss, .n_samples = n};
    j->rc = proto_encode(&enc, &m, NULL, j->err, sizeof j->err);
    if (j->rc != RLHF_OK) goto fail;
    j->bytes = proto_enc_release(&enc, &j->len);

fail:
    if (j->rc == RLHF_ENOMEM && !j->err[0]) snprintf(j->err, sizeof j->err, "out of memory");
    proto_enc_fini(&enc);
    free(outs), free(ss), free(off), free(us), free(idx), free(fits), free(ref);
    j->seconds = mono_s() - t_start;
}

/* ---- the loop side ---- */

static void maybe_start(reward_t *r);
static void finish_drain(reward_t *r);

static void free_bytes(void *data, void *hint) {
    (void)hint;
    free(data);
}

static void job_done(loop_t *l, void *arg, bool cancelled) {
    (void)l;
    job_t *j = arg;
    reward_t *r = j->r;
    r->running = NULL;
    if (cancelled) { // the loop is being destroyed
        job_free(j);
        return;
    }
    const proto_score_work_t *w = &j->msg.score_work;
    bool sent = false;
    if (j->rc != RLHF_OK) {
        rlog(r, "score job for ticket %llu failed: %s", (unsigned long long)w->ticket, j->err);
        note_drop(r, DROP_FAILED, w->ticket);
    } else {
        zmq_msg_t part; // zero-copy: libzmq frees the bytes once sent (or dropped)
        if (zmq_msg_init_data(&part, j->bytes, j->len, free_bytes, NULL) != 0) {
            note_drop(r, DROP_NO_MEMORY, w->ticket);
        } else {
            j->bytes = NULL;
            if (loop_zsock_send(r->zscored, &part, 1) == RLHF_OK)
                sent = true;
            else
                note_drop(r, DROP_SEND_FAILED, w->ticket);
        }
    }
    if (sent) {
        r->jobs_done++;
        r->samples_scored += w->n_items;
        r->samples_invalid += j->n_invalid;
        r->reward_mean = j->reward_sum / w->n_items;
        r->busy_seconds += j->seconds;
        metrics_counter_add(r->m_busy, j->seconds);
        metrics_counter_inc(r->m_jobs);
        metrics_counter_add(r->m_samples, w->n_items);
        metrics_counter_add(r->m_invalid, j->n_invalid);
        metrics_histogram_observe(r->m_seconds, j->seconds);
        metrics_gauge_set(r->m_reward_mean, r->reward_mean);
        if (r->jobs_done == 1)
            rlog(r, "first job scored: ticket %llu, %u samples in %.3f s, reward mean %.3f",
                 (unsigned long long)w->ticket, w->n_items, j->seconds, r->reward_mean);
    }
    if (j->n_invalid) {
        double now = mono_s();
        if (r->last_invalid_log < 0 || now - r->last_invalid_log >= REWARD_LOG_EVERY_S) {
            r->last_invalid_log = now;
            rlog(r,
                 "ticket %llu: %u invalid samples scored 0 (%u too long for the context of %d, %u for task '%s' "
                 "not scored here, rest: prompt id names no problem, first id %llu) (logged once per minute)",
                 (unsigned long long)w->ticket, j->n_invalid, j->n_too_long, r->ref->cfg.max_seq_len, j->n_bad_task,
                 w->task, (unsigned long long)j->first_invalid_id);
        }
    }
    job_free(j);
    /* the slot is free again: grant it back, unless leaving */
    if (!r->draining) send_credit(r, 1);
    update_gauges(r);
    if (r->draining && !r->running)
        finish_drain(r);
    else
        maybe_start(r);
}

static void maybe_start(reward_t *r) {
    if (r->running || !r->qhead) return;
    job_t *j = r->qhead;
    r->qhead = j->next;
    if (!r->qhead) r->qtail = NULL;
    r->n_queued--;
    j->next = NULL;
    j->seq = r->seq++;
    if (loop_submit(r->loop, job_compute, job_done, j) != RLHF_OK) {
        note_drop(r, DROP_NO_MEMORY, j->msg.score_work.ticket);
        job_free(j);
        if (!r->draining) send_credit(r, 1);
        return;
    }
    r->running = j;
}

static void on_score_work(reward_t *r, job_t *j) {
    uint64_t ticket = j->msg.score_work.ticket;
    if (r->draining) {
        note_drop(r, DROP_DRAINING, ticket);
        job_free(j);
        return;
    }
    if (r->credit_free <= 0) {
        note_drop(r, DROP_OVER_CREDIT, ticket);
        job_free(j);
        return;
    }
    r->credit_free--;
    if (r->qtail)
        r->qtail->next = j;
    else
        r->qhead = j;
    r->qtail = j;
    r->n_queued++;
    maybe_start(r);
    update_gauges(r);
}

static void note_reject(reward_t *r, proto_reject_t why, const char *sender, const char *err) {
    metrics_counter_inc(r->m_rejected[why]);
    if (proto_rejects_note(&r->rejects, why, mono_s()))
        rlog(r, "dropped a message from %s on score: %s (%s; logged once per reason per minute)",
             sender && sender[0] ? sender : "?", proto_reject_reason_name(why), err);
}

static void on_score(loop_zsock_t *z, zmq_msg_t *parts, size_t nparts, void *ud) {
    (void)z;
    reward_t *r = ud;
    const void *frames[LOOP_MAX_PARTS];
    size_t lens[LOOP_MAX_PARTS];
    for (size_t i = 0; i < nparts; i++) frames[i] = zmq_msg_data(&parts[i]), lens[i] = zmq_msg_size(&parts[i]);
    proto_decode_opts_t opts = {.accept = PROTO_ACCEPT_REWARD_SCORE, .vocab_size = r->ref->cfg.vocab_size};
    proto_reject_t why = PROTO_REJECT_NONE;
    char err[256] = "";

    /* Every message is decoded straight into a fresh job: a score_work then
     * becomes the job without a copy; control messages are freed at once. */
    job_t *j = calloc(1, sizeof *j);
    if (!j) {
        note_reject(r, PROTO_REJECT_NO_MEMORY, NULL, "out of memory");
        return;
    }
    j->r = r;
    proto_msg_init(&j->msg);
    rlhf_err_t rc = proto_decode_frames(&j->msg, frames, lens, nparts, &opts, &why, err, sizeof err);
    if (rc != RLHF_OK) {
        note_reject(r, why == PROTO_REJECT_NONE ? PROTO_REJECT_MALFORMED : why, j->msg.sender, err);
        job_free(j);
        return;
    }
    r->last_rx_ms = loop_now_ms(r->loop);
    switch (j->msg.type) {
    case PROTO_SCORE_WORK: on_score_work(r, j); return;
    case PROTO_HELLO:
        if (!r->heard_learner)
            rlog(r, "learner %s answered hello (weights version %llu)", j->msg.sender,
                 (unsigned long long)j->msg.hello.weights_version);
        r->heard_learner = r->ever_heard = true;
        break;
    default: // heartbeat: being heard is all it says
        break;
    }
    job_free(j);
}

static void on_scored(loop_zsock_t *z, zmq_msg_t *parts, size_t nparts, void *ud) {
    (void)z, (void)parts, (void)nparts, (void)ud; // a PUSH socket never receives
}

/* The learner may have restarted and forgotten us: hello again, and re-grant
 * every slot not holding a job (hello resets its credit). */
static void hello_again(reward_t *r) {
    r->heard_learner = false;
    send_hello(r);
    r->credit_free = 0;
    send_credit(r, r->cfg.reward.credit - in_flight(r));
}

/* Events of the score socket (zmq_socket_monitor): a connection after a
 * disconnection (not "after the first": the first may complete before the
 * monitor is attached) is a learner that came back (restarted, perhaps from a checkpoint),
 * which knows nothing of us: say hello at once instead of after the silence
 * timeout, since its heartbeats would otherwise keep us from noticing. */
static void on_monitor(loop_zsock_t *z, zmq_msg_t *parts, size_t n, void *ud) {
    (void)z;
    reward_t *r = ud;
    if (n < 1 || zmq_msg_size(&parts[0]) < 6) return;
    uint16_t ev;
    memcpy(&ev, zmq_msg_data(&parts[0]), sizeof ev);
    if (ev == ZMQ_EVENT_DISCONNECTED) {
        rlog(r, "lost the connection to %s", r->score_ep);
        r->lost = true;
    } else if (ev == ZMQ_EVENT_CONNECTED && r->lost && r->started && !r->draining && !r->bye_sent) {
        r->lost = false;
        rlog(r, "reconnected to %s: hello again", r->score_ep);
        hello_again(r);
    }
}

static void on_tick(loop_timer_t *t, void *ud) {
    (void)t;
    reward_t *r = ud;
    uint64_t now = loop_now_ms(r->loop);
    if (r->bye_sent) return;
    if (!r->ever_heard && r->cfg.reward.connect_timeout_ms > 0 && !r->draining &&
        now - r->start_ms >= (uint64_t)r->cfg.reward.connect_timeout_ms) {
        rlog(r,
             "error: no learner answered at %s within %g s (is it running? check reward.learner and "
             "learner.score_port, or raise reward.connect_timeout_ms)",
             r->score_ep, r->cfg.reward.connect_timeout_ms / 1e3);
        r->exit_code = 1;
        reward_stop(r);
        return;
    }
    if (now - r->last_rx_ms >= REWARD_SILENCE_MS && now - r->last_hello_ms >= REWARD_SILENCE_MS && !r->draining) {
        rlog(r, "no word from the learner at %s for %.0f s: saying hello again", r->score_ep,
             (double)(now - r->last_rx_ms) / 1e3);
        hello_again(r);
    }
    if (now - r->last_stats_ms >= REWARD_STATS_MS && !r->draining) send_stats(r);
    if (now - r->last_tx_ms >= REWARD_HEARTBEAT_MS) send_heartbeat(r);
    update_gauges(r);
}

static void finish_drain(reward_t *r) {
    if (r->bye_sent) return;
    send_bye(r, "drain");
    rlog(r, "drained: %llu jobs, %llu samples scored; bye sent", (unsigned long long)r->jobs_done,
         (unsigned long long)r->samples_scored);
    loop_timer_stop(r->tick);
    loop_stop(r->loop);
}

void reward_stop(reward_t *r) {
    if (r->draining) return;
    r->draining = true;
    int dropped = 0;
    while (r->qhead) {
        job_t *j = r->qhead;
        r->qhead = j->next;
        note_drop(r, DROP_DRAINING, j->msg.score_work.ticket);
        job_free(j);
        dropped++;
    }
    r->qtail = NULL;
    r->n_queued = 0;
    rlog(r, "draining: %s, %d queued jobs dropped (the learner re-scores them)",
         r->running ? "finishing the running job" : "no job running", dropped);
    update_gauges(r);
    if (!r->running && r->started) finish_drain(r);
}

static void on_signal(loop_t *l, int signum, void *ud) {
    (void)l;
    reward_t *r = ud;
    rlog(r, "signal %d: stopping (a second signal exits at once)", signum);
    reward_stop(r);
}

static void status_hook(json_t *st, void *ud) {
    reward_t *r = ud;
    json_object_set_new(st, "role", json_string("reward"));
    json_object_set_new(st, "id", json_string(r->id));
    json_object_set_new(st, "learner", json_string(r->score_ep));
    json_object_set_new(st, "scorer", json_string(scorer_name(r->scorer)));
    json_object_set_new(st, "jobs_done", json_integer((json_int_t)r->jobs_done));
    json_object_set_new(st, "samples_scored", json_integer((json_int_t)r->samples_scored));
    json_object_set_new(st, "samples_invalid", json_integer((json_int_t)r->samples_invalid));
    json_object_set_new(st, "busy_seconds", json_real(r->busy_seconds));
    json_object_set_new(st, "in_flight", json_integer(in_flight(r)));
    json_object_set_new(st, "credit", json_integer(r->cfg.reward.credit));
    json_object_set_new(st, "credit_free", json_integer(r->credit_free));
    json_object_set_new(st, "reward_mean", r->jobs_done ? json_real(r->reward_mean) : json_null());
    json_object_set_new(st, "messages_rejected", json_integer((json_int_t)proto_rejects_total(&r->rejects)));
    json_object_set_new(st, "learner_silent_s", json_real((double)(loop_now_ms(r->loop) - r->last_rx_ms) / 1e3));
    json_object_set_new(st, "draining", json_boolean(r->draining));
    char ck[32];
    snprintf(ck, sizeof ck, "%016llx", (unsigned long long)r->ref_checksum);
    json_object_set_new(st, "reference_checksum", json_string(ck));
}

/* ---- construction ---- */

static rlhf_err_t build_metrics(reward_t *r) {
    rlhf_err_t rc;
    metrics_t *m = r->metrics;
    metrics_family_t *fd;
    static const double secs[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
    if ((rc = metrics_register_process(m)) != RLHF_OK ||
        (rc = metrics_counter(m, "rlhf_score_jobs_total", "Score jobs (score_work messages) scored and sent.",
                              &r->m_jobs)) != RLHF_OK ||
        (rc = metrics_counter(m, "rlhf_samples_scored_total", "Samples scored and sent.", &r->m_samples)) != RLHF_OK ||
        (rc = metrics_counter(m, "rlhf_samples_invalid_total",
                              "Samples scored 0 as invalid (unknown prompt id or task, too long).", &r->m_invalid)) !=
            RLHF_OK ||
        (rc = metrics_counter(m, "rlhf_score_busy_seconds_total", "Seconds spent computing score jobs.", &r->m_busy)) !=
            RLHF_OK ||
        (rc = metrics_counter_family(m, "rlhf_score_jobs_dropped_total", "Score jobs dropped, by reason.", "reason",
                                     &fd)) != RLHF_OK ||
        (rc = metrics_counter_family(m, "rlhf_messages_rejected_total",
                                     "Messages dropped as malformed or over a limit, by reason.", "reason",
                                     &r->f_rejected)) != RLHF_OK ||
        (rc = metrics_histogram(m, "rlhf_scoring_seconds", "Wall time to score one job (rewards + reference).", secs,
                                sizeof secs / sizeof secs[0], &r->m_seconds)) != RLHF_OK ||
        (rc = metrics_gauge(m, "rlhf_reward_mean", "Mean reward of the last job scored.", &r->m_reward_mean)) !=
            RLHF_OK ||
        (rc = metrics_gauge(m, "rlhf_score_jobs_in_flight", "Score jobs held (queued or computing).",
                            &r->m_in_flight)) != RLHF_OK ||
        (rc = metrics_gauge(m, "rlhf_score_credit_free", "Credit granted to the learner and not used yet.",
                            &r->m_credit_free)) != RLHF_OK)
        return rc;
    for (int i = 0; i < DROP__COUNT; i++)
        if ((rc = metrics_counter_get(fd, (const char *[]){drop_reason[i]}, &r->m_dropped[i])) != RLHF_OK) return rc;
    for (int i = 1; i < PROTO_REJECT__COUNT; i++)
        if ((rc = metrics_counter_get(r->f_rejected, (const char *[]){proto_reject_reason_name((proto_reject_t)i)},
                                      &r->m_rejected[i])) != RLHF_OK)
            return rc;
    return RLHF_OK;
}

/* The run's initial weights, as every role builds them. */
static rlhf_err_t build_reference(reward_t *r, char *err, size_t errlen) {
    const rlhf_config_t *c = &r->cfg;
    rlhf_err_t rc;
    if (c->model.init[0]) {
        char e[384];
        if ((rc = checkpoint_load_model(c->model.init, &r->ref, e, sizeof e)) != RLHF_OK)
            return rlhf_seterr(err, errlen, rc, "model.init: %s", e);
    } else {
        model_config_t mc;
        if ((rc = config_to_model(c, &mc, err, errlen)) != RLHF_OK) return rc;
        if (!(r->ref = model_new(&mc))) return rlhf_seterr(err, errlen, RLHF_ENOMEM, "reference model: out of memory");
        model_init_weights(r->ref, c->run.seed);
    }
    r->ref_checksum = proto_weights_checksum(r->ref->params_mem, r->ref->n_params * sizeof(float));
    return RLHF_OK;
}

static rlhf_err_t open_socket(reward_t *r, int type, const char *ep, void **out, char *err, size_t errlen) {
    void *s = zmq_socket(r->zctx, type);
    int linger = REWARD_LINGER_MS;
    if (!s) return rlhf_seterr(err, errlen, RLHF_EIO, "zmq_socket: %s", zmq_strerror(zmq_errno()));
    *out = s;
    if (proto_zmq_limit(s) != RLHF_OK || zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger) != 0)
        return rlhf_seterr(err, errlen, RLHF_EIO, "zmq_setsockopt: %s", zmq_strerror(zmq_errno()));
    if (zmq_connect(s, ep) != 0)
        return rlhf_seterr(err, errlen, RLHF_EINVAL, "reward.learner: cannot connect to %s (%s)", ep,
                           zmq_strerror(zmq_errno()));
    return RLHF_OK;
}

rlhf_err_t reward_new(const rlhf_config_t *cfg, const char *id, reward_t **out, char *err, size_t errlen) {
    *out = NULL;
    if (!valid_id(id))
        return rlhf_seterr(err, errlen, RLHF_EINVAL, "--id must be 1..%d printable ASCII characters without space",
                           PROTO_MAX_ID);
    const config_security_t *sec = &cfg->security;
    if (sec->server_public_key[0] || sec->client_public_key[0] || sec->client_secret_key[0])
        return rlhf_seterr(err, errlen, RLHF_EUNSUPPORTED,
                           "security.*: CurveZMQ is not supported by rlhf-reward yet; clear the security keys");
    reward_t *r = calloc(1, sizeof *r);
    if (!r) return rlhf_seterr(err, errlen, RLHF_ENOMEM, "out of memory");
    rlhf_err_t rc;
    r->cfg = *cfg;
    strcpy(r->id, id);
    proto_enc_init(&r->enc);
    proto_rejects_init(&r->rejects);
    r->last_invalid_log = -1;
    for (int i = 0; i < DROP__COUNT; i++) r->last_drop_log[i] = -1;
    if (r->cfg.reward.credit < 1) r->cfg.reward.credit = 1;
    if (r->cfg.reward.credit > PROTO_MAX_CREDIT) r->cfg.reward.credit = PROTO_MAX_CREDIT;
    if ((rc = config_check_host("reward.learner", cfg->reward.learner, err, errlen)) != RLHF_OK) goto fail;
    config_endpoint(cfg, cfg->reward.learner, CONFIG_EP_SCORE, r->score_ep, sizeof r->score_ep);
    config_endpoint(cfg, cfg->reward.learner, CONFIG_EP_SCORED, r->scored_ep, sizeof r->scored_ep);

    model_set_threads(cfg->reward.threads);
    if ((rc = build_reference(r, err, errlen)) != RLHF_OK) goto fail;
    task_config_t tc;
    config_to_task(cfg, &tc);
    if ((rc = scorer_task_new(cfg->task.name, &tc, &r->scorer, err, errlen)) != RLHF_OK) goto fail;

    if ((rc = metrics_new(&r->metrics)) != RLHF_OK || (rc = build_metrics(r)) != RLHF_OK ||
        (rc = loop_new(&r->loop, &(loop_config_t){.metrics = r->metrics, .nworkers = 1})) != RLHF_OK) {
        rlhf_seterr(err, errlen, rc, "metrics/loop: %s", rlhf_strerror(rc));
        goto fail;
    }
    rc = RLHF_EIO;
    if (!(r->zctx = zmq_ctx_new())) {
        rlhf_seterr(err, errlen, rc, "zmq_ctx_new: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    if ((rc = open_socket(r, ZMQ_DEALER, r->score_ep, &r->score_sock, err, errlen)) != RLHF_OK ||
        (rc = open_socket(r, ZMQ_PUSH, r->scored_ep, &r->scored_sock, err, errlen)) != RLHF_OK)
        goto fail;
    char mon_ep[64];
    snprintf(mon_ep, sizeof mon_ep, "inproc://reward-score-monitor-%p", (void *)r);
    if (zmq_socket_monitor(r->score_sock, mon_ep, ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED) != 0 ||
        !(r->mon_sock = zmq_socket(r->zctx, ZMQ_PAIR)) || zmq_connect(r->mon_sock, mon_ep) != 0) {
        rc = rlhf_seterr(err, errlen, RLHF_EIO, "zmq_socket_monitor: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    int zero = 0;
    zmq_setsockopt(r->mon_sock, ZMQ_LINGER, &zero, sizeof zero);
    if ((rc = loop_zsock_add(r->loop, r->mon_sock, NULL, on_monitor, r, &r->zmon)) != RLHF_OK ||
        (rc = loop_zsock_add(r->loop, r->score_sock, "score", on_score, r, &r->zscore)) != RLHF_OK ||
        (rc = loop_zsock_add(r->loop, r->scored_sock, "scored", on_scored, r, &r->zscored)) != RLHF_OK ||
        (rc = loop_timer_new(r->loop, on_tick, r, &r->tick)) != RLHF_OK ||
        (rc = loop_catch_signals(r->loop, on_signal, NULL, r)) != RLHF_OK) {
        rlhf_seterr(err, errlen, rc, "loop: %s", rlhf_strerror(rc));
        goto fail;
    }
    if (cfg->reward.http_port >= 0) {
        const char *host = strcmp(cfg->reward.http_bind, "*") == 0 ? "0.0.0.0" : cfg->reward.http_bind;
        http_config_t hc = {.host = host, .port = cfg->reward.http_port, .metrics = r->metrics};
        char e[256];
        if ((rc = http_server_new(r->loop, &hc, &r->http, e, sizeof e)) != RLHF_OK) {
            rlhf_seterr(err, errlen, rc, "reward.http_port: %s", e);
            goto fail;
        }
        http_server_set_status_hook(r->http, status_hook, r);
    }
    *out = r;
    return RLHF_OK;

fail:
    reward_destroy(&r);
    return rc;
}

int reward_http_port(const reward_t *r) {
    return r->http ? http_server_port(r->http) : -1;
}

rlhf_err_t reward_run(reward_t *r) {
    const model_config_t *mc = &r->ref->cfg;
    rlog(r,
         "scoring task '%s' for %s -> %s; reference %s (%zu params, L%d C%d ctx %d, checksum %016llx); credit %d, "
         "http %d",
         scorer_name(r->scorer), r->score_ep, r->scored_ep,
         r->cfg.model.init[0] ? r->cfg.model.init : r->cfg.model.preset, r->ref->n_params, mc->n_layers, mc->dim,
         mc->max_seq_len, (unsigned long long)r->ref_checksum, r->cfg.reward.credit, reward_http_port(r));
    uint64_t now = loop_now_ms(r->loop);
    r->last_rx_ms = r->last_stats_ms = r->start_ms = now; // the silence and stats clocks start now
    r->started = true;
    if (r->draining) { // stopped before it began
        finish_drain(r);
    } else {
        send_hello(r);
        send_credit(r, r->cfg.reward.credit);
        loop_timer_start(r->tick, REWARD_TICK_MS, REWARD_TICK_MS);
    }
    rlhf_err_t rc = loop_run(r->loop);
    return rc == RLHF_OK && r->exit_code ? RLHF_EIO : rc;
}

void reward_destroy(reward_t **p) {
    if (!p || !*p) return;
    reward_t *r = *p;
    while (r->qhead) {
        job_t *j = r->qhead;
        r->qhead = j->next;
        job_free(j);
    }
    http_server_destroy(&r->http);
    loop_zsock_remove(&r->zscore);
    loop_zsock_remove(&r->zscored);
    loop_zsock_remove(&r->zmon);
    loop_timer_destroy(&r->tick);
    loop_destroy(&r->loop); // a running job finishes; its done(cancelled) frees it
    if (r->score_sock && r->mon_sock) zmq_socket_monitor(r->score_sock, NULL, 0);
    if (r->mon_sock) zmq_close(r->mon_sock);
    if (r->score_sock) zmq_close(r->score_sock);
    if (r->scored_sock) zmq_close(r->scored_sock);
    if (r->zctx) zmq_ctx_term(r->zctx); // flushes for up to REWARD_LINGER_MS
    metrics_destroy(&r->metrics);
    scorer_destroy(&r->scorer);
    model_acts_destroy(&r->acts);
    model_destroy(&r->ref);
    proto_enc_fini(&r->enc);
    free(r);
    *p = NULL;
}
