/*
 * learner.c - the learner process (see learner.h).
 *
 * State lives in one learner_t. Everything but the PPO math, evaluations and
 * model checkpoints runs on the loop thread; those run on the loop's worker
 * thread through loop_submit, one job at a time (FIFO), while the loop keeps
 * handing out tickets, collecting rollouts and serving weights. The worker
 * touches only the policy, critic, optimizers, RL state and the job it was
 * given; the loop thread never reads them while a job is pending (published
 * weights are copies).
 */
#define _POSIX_C_SOURCE 200809L
#include "learner/learner.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "common/log.h"
#include "common/checkpoint.h"
#include "common/evaluate.h"
#include "common/http.h"
#include "common/loop.h"
#include "common/metrics.h"
#include "common/model.h"
#include "common/optim.h"
#include "common/rng.h"
#include "common/task.h"
#include "learner/page.h"
#include "learner/ppo.h"
#include "learner/rl.h"
#include "learner/tickets.h"
#include "proto/proto.h"

#define PEER_DEAD_MS   10000
#define ANNOUNCE_MS    5000
#define ROUTE_MAX      256
#define WPROP_RING     8   // weights versions whose propagation is tracked at once
#define STATUS_QUEUES  6   // rows of status_queues
#define STATUS_PHASES  7   // entries of status_phases
#define STATUS_HISTORY 120 // steps of reward/KL/held-out kept for sparklines
enum { SQ_WORK, SQ_ROLLOUTS, SQ_SCORE, SQ_SCORED, SQ_ANNOUNCE, SQ_WEIGHTS }; // rows of status_queues

/* A published weights version: refcounted because libzmq reads it zero-copy
 * from its own threads (proto_zmq_send_chunk) after the learner moved on. */
typedef struct {
    atomic_int refs;
    uint64_t version, checksum;
    size_t size;
    void *data; // (size) bytes, owned
} wblob_t;

typedef struct {
    uint64_t uid;             // never reused: hold records point here
    uint8_t route[ROUTE_MAX]; // ROUTER routing id
    size_t route_len;
    char name[PROTO_MAX_ID + 1]; // envelope sender
    int role;                    // PROTO_ROLE_ACTOR / REWARD
    uint32_t credit;
    uint64_t last_ms; // last message heard
    uint64_t weights_version;
    uint64_t delivered; // samples received from it: rollouts (actor) or scored (reward worker), for /status
} peer_t;

typedef struct {
    uint64_t ticket;
    uint64_t peer_uid;
    int stage; // 1 generating (actor), 2 scoring (reward worker)
} hold_t;

/* One rollout sample, owning its arrays (one block). */
typedef struct {
    int32_t *prompt, *completion;
    float *logprobs, *ref;
    uint32_t n_prompt, n_completion, finish;
    uint64_t version;
    double reward;
    int have;
} rsample_t;

/* The rollouts of one ticket, assembled from one or more messages and held
 * for scoring once complete. */
typedef struct {
    uint64_t ticket;
    uint32_t n_prompts, k;
    uint64_t prompt_ids[PROTO_MAX_PROMPTS];
    uint32_t n_have;
    int accepted; // tickets_complete said ACCEPTED: held until scored
    rsample_t *s; // (n_prompts * k), index pi * k + si
} rset_t;

typedef struct learner learner_t;

typedef enum { JOB_EVAL_BEFORE, JOB_PPO, JOB_FINAL } job_kind_t;

typedef struct {
    learner_t *l;
    job_kind_t kind;
    rsample_t *s; // (n) owned samples (JOB_PPO)
    int n;
    int step;         // the step this update makes (1-based)
    uint64_t version; // the policy's weights version when the update starts
    ppo_stats_t stats;
    rlhf_err_t rc;
    int do_eval;
    double eval; // held-out score, NAN if not evaluated
    int do_ckpt;
    double busy_s;
    double t_wait, t_eval, t_ckpt; // phase seconds for /status: batch wait before submit, eval, checkpoint
    char err[256];
} job_t;

struct learner {
    rlhf_config_t cfg;
    char id[PROTO_MAX_ID + 1];
    uint64_t seq;
    int vocab;

    /* models and training (worker thread while a job is pending) */
    model_t *policy, *critic;
    adamw_t *popt, *copt;
    ppo_config_t ppo_cfg;
    ppo_t *ppo;
    rl_state_t rl;
    task_t *task;

    /* I/O */
    loop_t *loop;
    metrics_t *metrics;
    http_server_t *http;
    void *zctx;
    void *s_work, *s_rollouts, *s_score, *s_scored, *s_announce, *s_weights;
    loop_zsock_t *z_work, *z_rollouts, *z_score, *z_scored, *z_weights;
    loop_timer_t *t_tick, *t_announce, *t_linger;
    proto_msg_t msg;
    proto_enc_t enc;
    proto_rejects_t rejects;
    metrics_family_t *f_rejected;
    metrics_gauge_t *g_step, *g_version, *g_reward, *g_kl, *g_buffered;
    metrics_counter_t *m_mismatch; // rollouts dropped by the log-prob check
    uint64_t logprob_mismatches;
    int32_t *tokbuf; // (prompts_per_ticket, max_seq_len) prompt tokens for a ticket
    proto_prompt_t *pbuf;
    proto_score_item_t *ibuf; // (PROTO_MAX_SAMPLES)

    /* work accounting */
    tickets_t *tickets;
    peer_t *peers;
    size_t n_peers, cap_peers;
    uint64_t next_uid;
    hold_t *holds;
    size_t n_holds, cap_holds;
    rset_t **rsets;
    size_t n_rsets, cap_rsets;
    rsample_t *buf; // scored samples waiting for training, FIFO
    size_t n_buf, cap_buf;
    uint64_t queued_hint;       // tickets may be QUEUED for reissue
    size_t rr_actor, rr_reward; // round-robin start of the next dispatch (peer index)
    uint64_t first_version;     // version of the first publish: 1, or the checkpoint's when resumed
    int resumed;                // started from out_dir/checkpoint (run.resume)
    uint64_t dup_samples;       // repeated (prompt_index, sample_index) within one ticket

    /* weights */
    wblob_t *blobs[2]; // [0] latest, [1] previous
    uint32_t chunk_max;
    uint64_t announce_again_ms; // loop clock: earliest extra announce
    struct {
        uint64_t version, uid_max; // 0: free slot; actors with uid <= uid_max were connected at publish
        double t_pub;
    } wprop[WPROP_RING];         // versions not yet held by every actor (see wprop_check)
    double wprop_sum, wprop_max; // propagation seconds over wprop_n versions
    uint64_t wprop_n;
    metrics_histogram_t *h_wprop; // rlhf_weights_propagation_seconds, registered on first use

    /* run */
    int step;
    int training;  // a job is pending on the worker
    int finishing; // the final job was submitted
    int done;
    int draining;
    int exit_rc;
    uint64_t linger_ms;
    double t_start, busy_s;
    double eval_before, eval_after, last_heldout;
    int last_eval_step; // step whose held-out score last_heldout is
    uint64_t samples_used, samples_scored, tokens_scored;
    double lag_sum;
    ppo_stats_t last;
    FILE *metrics_f;

    /* /status extras (rlhf top, the / page): see the "/status" section */
    metrics_counter_t *qc[STATUS_QUEUES][4]; // messages in, out, bytes in, out; looked up on first use
    int qc_ready;
    double ph[STATUS_PHASES];  // the last update's phases, seconds
    int ph_step;               // the step ph describes
    double t_idle;             // when the last update ended (the learner waits for a batch from here)
    double busy_total, t_busy; // worker seconds on updates; start of the update in flight (0: none)
    struct {
        int step;
        double reward, kl, heldout; // heldout NAN when the step did not evaluate
    } hist[STATUS_HISTORY];
    int n_hist; // steps recorded; the ring holds the last STATUS_HISTORY
};

/* ---- small helpers ---- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void lg(const learner_t *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void lg(const learner_t *l, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    log_vline("learner", l->id, fmt, ap);
    va_end(ap);
}

static rlhf_err_t grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return RLHF_OK;
    size_t n = *cap ? *cap * 2 : 16;
    while (n < need) n *= 2;
    void *q = realloc(*p, n * elem);
    if (!q) return RLHF_ENOMEM;
    *p = q;
    *cap = n;
    return RLHF_OK;
}

static void blob_unref(wblob_t *b) {
    if (b && atomic_fetch_sub(&b->refs, 1) == 1) {
        free(b->data);
        free(b);
    }
}

static void blob_zmq_free(void *data, void *hint) {
    (void)data;
    blob_unref(hint);
}

static void rsample_free(rsample_t *s) {
    free(s->prompt); // one block holds all four arrays
    memset(s, 0, sizeof *s);
}

static void rset_free(rset_t *r) {
    if (!r) return;
    for (uint32_t i = 0; i < r->n_prompts * r->k; i++) rsample_free(&r->s[i]);
    free(r->s);
    free(r);
}

static void reject(learner_t *l, proto_reject_t why, const char *detail) {
    if (proto_rejects_note(&l->rejects, why, now_s()))
        lg(l, "rejected message (%s): %s", proto_reject_reason_name(why), detail);
    if (l->f_rejected) {
        const char *v[1] = {proto_reject_reason_name(why)};
        metrics_counter_t *c = NULL;
        if (metrics_counter_get(l->f_rejected, v, &c) == RLHF_OK) metrics_counter_inc(c);
    }
}

/* Decode frames[0..n) as one message for this endpoint; on failure count and
 * log, return 0. */
static int decode(learner_t *l, zmq_msg_t *parts, size_t n, uint64_t accept) {
    const void *frames[2];
    size_t lens[2];
    if (n < 1 || n > 2) {
        reject(l, PROTO_REJECT_BAD_FRAMES, "frame count");
        return 0;
    }
    for (size_t i = 0; i < n; i++) frames[i] = zmq_msg_data(&parts[i]), lens[i] = zmq_msg_size(&parts[i]);
    proto_decode_opts_t o = {.accept = accept, .vocab_size = l->vocab};
    proto_reject_t why = PROTO_REJECT_NONE;
    char err[256] = "";
    if (proto_decode_frames(&l->msg, frames, lens, n, &o, &why, err, sizeof err) != RLHF_OK) {
        reject(l, why, err);
        return 0;
    }
    return 1;
}

/* Encode l->msg into l->enc; 0 on failure (a bug: logged). */
static int encode(learner_t *l) {
    char err[256] = "";
    if (proto_encode(&l->enc, &l->msg, NULL, err, sizeof err) != RLHF_OK) {
        lg(l, "cannot encode %s: %s", proto_type_name(l->msg.type), err);
        return 0;
    }
    return 1;
}

static void header(learner_t *l, proto_type_t type) {
    proto_msg_fini(&l->msg);
    proto_msg_init(&l->msg);
    proto_msg_header(&l->msg, type, l->id, l->seq++);
}

static void send_routed(learner_t *l, loop_zsock_t *z, const peer_t *p) {
    if (!encode(l)) return;
    const void *bufs[2] = {p->route, l->enc.data};
    size_t lens[2] = {p->route_len, l->enc.len};
    if (loop_zsock_send_bufs(z, bufs, lens, 2) != RLHF_OK) lg(l, "send to %s failed: %s", p->name, zmq_strerror(errno));
}

/* ---- peers and holds ---- */

static peer_t *peer_by_route(learner_t *l, int role, const zmq_msg_t *route) {
    size_t n = zmq_msg_size(route);
    for (size_t i = 0; i < l->n_peers; i++)
        if (l->peers[i].role == role && l->peers[i].route_len == n &&
            memcmp(l->peers[i].route, zmq_msg_data((zmq_msg_t *)route), n) == 0)
            return &l->peers[i];
    return NULL;
}

static peer_t *peer_get(learner_t *l, int role, zmq_msg_t *route, const char *name) {
    peer_t *p = peer_by_route(l, role, route);
    if (!p) {
        size_t n = zmq_msg_size(route);
        if (n == 0 || n > ROUTE_MAX) return NULL;
        if (grow((void **)&l->peers, &l->cap_peers, l->n_peers + 1, sizeof(peer_t)) != RLHF_OK) return NULL;
        p = &l->peers[l->n_peers++];
        memset(p, 0, sizeof *p);
        p->uid = ++l->next_uid;
        p->role = role;
        memcpy(p->route, zmq_msg_data(route), n);
        p->route_len = n;
        snprintf(p->name, sizeof p->name, "%s", name);
        lg(l, "%s %s joined", role == PROTO_ROLE_ACTOR ? "actor" : "reward worker", p->name);
    }
    p->last_ms = loop_now_ms(l->loop);
    return p;
}

static void hold_add(learner_t *l, uint64_t ticket, uint64_t uid, int stage) {
    if (grow((void **)&l->holds, &l->cap_holds, l->n_holds + 1, sizeof(hold_t)) != RLHF_OK) return;
    l->holds[l->n_holds++] = (hold_t){ticket, uid, stage};
}

static void hold_remove(learner_t *l, uint64_t ticket, int stage) {
    for (size_t i = 0; i < l->n_holds; i++)
        if (l->holds[i].ticket == ticket && l->holds[i].stage == stage) {
            l->holds[i] = l->holds[--l->n_holds];
            return;
        }
}

/* The peer is gone (heartbeat loss, bye): release its credit and hand its
 * tickets back to the table at once. */
static void peer_remove(learner_t *l, peer_t *p, const char *why) {
    int n = 0;
    for (size_t i = 0; i < l->n_holds;) {
        hold_t *h = &l->holds[i];
        if (h->peer_uid == p->uid) {
            if (h->stage == 1)
                tickets_abandon(l->tickets, h->ticket);
            else
                tickets_score_abandon(l->tickets, h->ticket);
            n++;
            l->holds[i] = l->holds[--l->n_holds];
        } else {
            i++;
        }
    }
    if (n) l->queued_hint++;
    lg(l, "%s %s left (%s): %d tickets handed back", p->role == PROTO_ROLE_ACTOR ? "actor" : "reward worker", p->name,
       why, n);
    *p = l->peers[--l->n_peers];
}

/* ---- rollout sets ---- */

static rset_t *rset_find(learner_t *l, uint64_t ticket, size_t *at) {
    for (size_t i = 0; i < l->n_rsets; i++)
        if (l->rsets[i]->ticket == ticket) {
            if (at) *at = i;
            return l->rsets[i];
        }
    return NULL;
}

static void rset_drop(learner_t *l, size_t at) {
    rset_free(l->rsets[at]);
    l->rsets[at] = l->rsets[--l->n_rsets];
}

/* Prompt tokens of dataset index idx into buf (cap ints); count or -1. */
static int prompt_tokens(learner_t *l, uint32_t idx, int32_t *buf, int cap) {
    return task_prompt(l->task, TASK_TRAIN, (int)idx, buf, cap);
}

/* ---- dispatch ---- */

static void dispatch_tickets(learner_t *l) {
    if (l->finishing || l->draining || l->done) return;
    /* Prompts in the pipeline (out for generation or scoring, buffered, and
     * the batch of the update in flight) stay within 1 + max_lag batches and
     * within the steps left: a batch generated while version V trains is
     * trained at V + 1, so rollouts lag by at most max_lag when they are
     * trained (actors switch to each announced version between tickets). */
    uint64_t bp = (uint64_t)l->cfg.ppo.batch_prompts;
    uint64_t batches = (uint64_t)(1 + l->cfg.run.max_lag);
    int left = l->cfg.run.steps - l->step; // the update in flight counts
    if (left < 1) return;
    if ((uint64_t)left < batches) batches = (uint64_t)left;
    uint64_t limit = bp * batches;
    uint64_t tp = tickets_config(l->tickets)->prompts_per_ticket, k = (uint64_t)l->cfg.ppo.k;
    /* Round robin, one ticket per actor per pass, each call starting after
     * the actor served last: when the pipeline limit is what holds work
     * back, an actor that just joined gets its share at once instead of
     * waiting behind the first ones forever. */
    for (bool more = true; more;) {
        more = false;
        size_t n = l->n_peers, start = l->rr_actor;
        for (size_t c = 0; c < n; c++) {
            size_t i = (start + c) % n;
            peer_t *p = &l->peers[i];
            if (p->role != PROTO_ROLE_ACTOR || p->credit <= 0) continue;
            if (l->cfg.run.max_lag == 0 && l->training) return; // on-policy: wait for the new version
            /* A ticket must fit under the limit; the one exception is when
             * nothing is out and no update runs but the buffer is still short
             * of a batch (the short last job of an epoch broke the tiling):
             * then one ticket may overshoot, or the run would stall. Its
             * leftover samples train one update later. */
            if (!l->queued_hint) {
                tickets_counters_t c;
                tickets_counters(l->tickets, &c);
                uint64_t buffered = (l->n_buf + k - 1) / k,
                         in_pipe = c.prompts_pending + buffered + (l->training ? bp : 0);
                int stuck = !l->training && c.prompts_pending == 0 && in_pipe < limit;
                if (in_pipe + tp > limit && !stuck) return;
            }
            tickets_ticket_t tk;
            rlhf_err_t e = tickets_issue(l->tickets, (int64_t)loop_now_ms(l->loop), &tk);
            if (e != RLHF_OK) {
                l->queued_hint = 0;
                return;
            }
            if (tk.attempt > 1) {
                if (l->queued_hint) l->queued_hint--;
            } else {
                l->queued_hint = 0;
            }
            int T = l->policy->cfg.max_seq_len;
            int ok = 1;
            for (uint32_t j = 0; j < tk.n_prompts; j++) {
                int n = prompt_tokens(l, tk.prompts[j], l->tokbuf + (size_t)j * T, T);
                if (n < 1) ok = 0;
                l->pbuf[j] = (proto_prompt_t){.id = ((uint64_t)TASK_TRAIN << 32) | tk.prompts[j],
                                              .tokens = l->tokbuf + (size_t)j * T,
                                              .n_tokens = (uint32_t)(n > 0 ? n : 1)};
            }
            header(l, PROTO_TICKET);
            proto_ticket_t *t = &l->msg.ticket;
            t->ticket = tk.id;
            /* Ask for the latest version, not the table's floor max(V - L, 1):
             * a batch generated now is trained after the update in flight,
             * so a rollout made at the floor would be L + 1 behind then. */
            uint64_t cur = l->blobs[0] ? l->blobs[0]->version : tk.policy_version;
            t->policy_version = cur > tk.policy_version ? cur : tk.policy_version;
            t->k = tk.k;
            t->deadline_ms = tk.deadline_ms;
            t->task = l->cfg.task.name;
            t->sampling.temperature = l->cfg.sampling.temperature;
            t->sampling.top_k = (uint32_t)l->cfg.sampling.top_k;
            t->sampling.top_p = l->cfg.sampling.top_p;
            t->sampling.max_new_tokens = (uint32_t)l->cfg.sampling.max_new_tokens;
            t->sampling.n_stop = (uint32_t)l->cfg.sampling.n_stop;
            for (int s = 0; s < l->cfg.sampling.n_stop && s < PROTO_MAX_STOP; s++)
                t->sampling.stop[s] = l->cfg.sampling.stop[s];
            t->sampling.seed = tk.seed;
            t->prompts = l->pbuf;
            t->n_prompts = tk.n_prompts;
            if (!ok) lg(l, "ticket %llu: a prompt did not fit", (unsigned long long)tk.id);
            send_routed(l, l->z_work, p);
            p->credit--;
            hold_add(l, tk.id, p->uid, 1);
            l->rr_actor = (i + 1) % n;
            more = true;
        }
    }
}

static void dispatch_scores(learner_t *l) {
    if (l->done) return;
    for (bool more = true; more;) { // round robin as in dispatch_tickets
        more = false;
        size_t n = l->n_peers, start = l->rr_reward;
        for (size_t c = 0; c < n; c++) {
            size_t i = (start + c) % n;
            peer_t *p = &l->peers[i];
            if (p->role != PROTO_ROLE_REWARD || p->credit <= 0) continue;
            tickets_ticket_t tk;
            if (tickets_score_issue(l->tickets, (int64_t)loop_now_ms(l->loop), &tk) != RLHF_OK) return;
            rset_t *r = rset_find(l, tk.id, NULL);
            if (!r || !r->accepted) { // cannot happen: accepted sets are held until scored
                lg(l, "ticket %llu to score but no rollouts held", (unsigned long long)tk.id);
                tickets_score_abandon(l->tickets, tk.id);
                return;
            }
            uint32_t n = r->n_prompts * r->k;
            for (uint32_t j = 0; j < n; j++) {
                rsample_t *s = &r->s[j];
                l->ibuf[j] = (proto_score_item_t){.prompt_index = j / r->k,
                                                  .sample_index = j % r->k,
                                                  .prompt_id = r->prompt_ids[j / r->k],
                                                  .prompt = s->prompt,
                                                  .n_prompt = s->n_prompt,
                                                  .completion = s->completion,
                                                  .n_completion = s->n_completion,
                                                  .finish = s->finish};
            }
            header(l, PROTO_SCORE_WORK);
            proto_score_work_t *w = &l->msg.score_work;
            w->ticket = tk.id;
            w->task = l->cfg.task.name;
            w->temperature = l->cfg.sampling.temperature;
            w->want_ref = 1;
            w->items = l->ibuf;
            w->n_items = n;
            send_routed(l, l->z_score, p);
            p->credit--;
            hold_add(l, tk.id, p->uid, 2);
            l->rr_reward = (i + 1) % n;
            more = true;
        }
    }
}

static void maybe_train(learner_t *l);
static void finish(learner_t *l);
static void status_count_out(learner_t *l, int q, size_t bytes);
static void status_note_step(learner_t *l, const job_t *j, double t_publish);
static void wprop_check(learner_t *l);

/* ---- weights ---- */

static void announce(learner_t *l) {
    wblob_t *b = l->blobs[0];
    if (!b) return;
    header(l, PROTO_WEIGHTS_ANNOUNCE);
    l->msg.weights_announce = (proto_weights_announce_t){
        .version = b->version, .size = b->size, .checksum = b->checksum, .chunk_max = l->chunk_max};
    if (!encode(l)) return;
    if (zmq_send(l->s_announce, l->enc.data, l->enc.len, ZMQ_DONTWAIT) >= 0)
        status_count_out(l, SQ_ANNOUNCE, l->enc.len); // PUB is not a loop socket: count here
}

/* ---- control messages (work and score endpoints) ---- */

static void on_control(learner_t *l, loop_zsock_t *z, zmq_msg_t *parts, size_t n, int role) {
    if (n < 2) {
        reject(l, PROTO_REJECT_BAD_FRAMES, "no routing frame");
        return;
    }
    if (!decode(l, parts + 1, n - 1, role == PROTO_ROLE_ACTOR ? PROTO_ACCEPT_LEARNER_WORK : PROTO_ACCEPT_LEARNER_SCORE))
        return;
    char sender[PROTO_MAX_ID + 1];
    snprintf(sender, sizeof sender, "%s", l->msg.sender);
    uint32_t type = l->msg.type;
    if (type == PROTO_BYE) {
        peer_t *p = peer_by_route(l, role, &parts[0]);
        if (p) peer_remove(l, p, "bye");
        dispatch_tickets(l);
        dispatch_scores(l);
        return;
    }
    peer_t *p = peer_get(l, role, &parts[0], sender);
    if (!p) return;
    switch (type) {
    case PROTO_HELLO:
        p->credit = 0;
        p->weights_version = l->msg.hello.weights_version;
        header(l, PROTO_HELLO);
        l->msg.hello.role = PROTO_ROLE_LEARNER;
        l->msg.hello.software = "rlhf-c/0.1";
        l->msg.hello.weights_version = l->blobs[0] ? l->blobs[0]->version : 0;
        send_routed(l, z, p);
        break;
    case PROTO_HEARTBEAT:
        p->weights_version = l->msg.heartbeat.weights_version;
        header(l, PROTO_HEARTBEAT);
        l->msg.heartbeat.weights_version = l->blobs[0] ? l->blobs[0]->version : 0;
        send_routed(l, z, p);
        break;
    case PROTO_STATS: break;
    case PROTO_WORK_REQUEST:
        p->weights_version = l->msg.work_request.weights_version;
        p->credit += l->msg.work_request.credit; // read before announce() reuses l->msg
        /* a worker without the latest weights may have missed the announce
         * (a SUB joining drops what was published before): repeat it now
         * rather than in up to 5 s, at most every 200 ms */
        if (l->blobs[0] && p->weights_version < l->blobs[0]->version && loop_now_ms(l->loop) >= l->announce_again_ms) {
            announce(l);
            l->announce_again_ms = loop_now_ms(l->loop) + 200;
        }
        if (p->credit > 4 * PROTO_MAX_CREDIT) p->credit = 4 * PROTO_MAX_CREDIT;
        dispatch_tickets(l);
        break;
    case PROTO_SCORE_REQUEST:
        p->credit += l->msg.score_request.credit;
        if (p->credit > 4 * PROTO_MAX_CREDIT) p->credit = 4 * PROTO_MAX_CREDIT;
        dispatch_scores(l);
        break;
    default: break;
    }
    if (role == PROTO_ROLE_ACTOR) wprop_check(l); // the actor may now hold a newer version
}

static void on_work(loop_zsock_t *z, zmq_msg_t *parts, size_t n, void *ud) {
    on_control(ud, z, parts, n, PROTO_ROLE_ACTOR);
}
static void on_score(loop_zsock_t *z, zmq_msg_t *parts, size_t n, void *ud) {
    on_control(ud, z, parts, n, PROTO_ROLE_REWARD);
}

/* Called right after decoding a rollouts or scored message (l->msg): the
 * sender is alive, and delivered that many samples (for /status). */
static void touch_sender(learner_t *l, int role, const char *name) {
    uint32_t n = l->msg.type == PROTO_ROLLOUTS ? l->msg.rollouts.n_samples
                 : l->msg.type == PROTO_SCORED ? l->msg.scored.n_samples
                                               : 0;
    for (size_t i = 0; i < l->n_peers; i++)
        if (l->peers[i].role == role && strcmp(l->peers[i].name, name) == 0) {
            l->peers[i].last_ms = loop_now_ms(l->loop);
            l->peers[i].delivered += n;
            n = 0; // once, should two peers share a name
        }
}

/* ---- rollouts ---- */

static void on_rollouts(loop_zsock_t *z, zmq_msg_t *parts, size_t n, void *ud) {
    (void)z;
    learner_t *l = ud;
    if (!decode(l, parts, n, PROTO_ACCEPT_LEARNER_ROLLOUTS)) return;
    touch_sender(l, PROTO_ROLE_ACTOR, l->msg.sender);
    const proto_rollouts_t *ro = &l->msg.rollouts;
    tickets_ticket_t tk;
    tickets_verdict_t v;
    if (tickets_lookup(l->tickets, ro->ticket, &tk) != RLHF_OK) {
        tickets_complete(l->tickets, ro->ticket, 0, &v); // counted as duplicate or unknown
        hold_remove(l, ro->ticket, 1);
        return;
    }
    rset_t *r = rset_find(l, ro->ticket, NULL);
    if (r && r->accepted) { // this ticket already won: a repeat
        tickets_complete(l->tickets, ro->ticket, 0, &v);
        return;
    }
    /* validate the whole message before touching anything */
    int T = l->policy->cfg.max_seq_len;
    int32_t ptok[512];
    for (uint32_t i = 0; i < ro->n_samples; i++) {
        const proto_sample_t *s = &ro->samples[i];
        char d[160];
        if (s->prompt_index >= tk.n_prompts || s->sample_index >= tk.k) {
            snprintf(d, sizeof d, "rollouts.samples[%u]: index (%u, %u) outside the ticket", i, s->prompt_index,
                     s->sample_index);
            reject(l, PROTO_REJECT_OUT_OF_RANGE, d);
            return;
        }
        int np = prompt_tokens(l, tk.prompts[s->prompt_index], ptok, (int)(sizeof ptok / sizeof ptok[0]));
        if (np < 1 || (uint32_t)np != s->n_prompt || memcmp(ptok, s->prompt, (size_t)np * sizeof(int32_t)) != 0) {
            snprintf(d, sizeof d, "rollouts.samples[%u].prompt: not the ticket's prompt", i);
            reject(l, PROTO_REJECT_OUT_OF_RANGE, d);
            return;
        }
        if ((uint64_t)s->n_prompt + s->n_completion > (uint64_t)T) {
            snprintf(d, sizeof d, "rollouts.samples[%u]: %u tokens exceed max_seq_len %d", i,
                     s->n_prompt + s->n_completion, T);
            reject(l, PROTO_REJECT_OUT_OF_RANGE, d);
            return;
        }
    }
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) return;
        r->ticket = ro->ticket;
        r->n_prompts = tk.n_prompts;
        r->k = tk.k;
        for (uint32_t j = 0; j < tk.n_prompts; j++) r->prompt_ids[j] = ((uint64_t)TASK_TRAIN << 32) | tk.prompts[j];
        r->s = calloc((size_t)tk.n_prompts * tk.k, sizeof(rsample_t));
        if (!r->s || grow((void **)&l->rsets, &l->cap_rsets, l->n_rsets + 1, sizeof(rset_t *)) != RLHF_OK) {
            rset_free(r);
            reject(l, PROTO_REJECT_NO_MEMORY, "rollouts");
            return;
        }
        l->rsets[l->n_rsets++] = r;
    }
    for (uint32_t i = 0; i < ro->n_samples; i++) {
        const proto_sample_t *s = &ro->samples[i];
        rsample_t *d = &r->s[s->prompt_index * r->k + s->sample_index];
        if (d->have) {
            l->dup_samples++;
            continue;
        }
        size_t bytes = (size_t)s->n_prompt * 4 + (size_t)s->n_completion * 12;
        char *mem = malloc(bytes);
        if (!mem) {
            reject(l, PROTO_REJECT_NO_MEMORY, "rollouts sample");
            continue;
        }
        d->prompt = (int32_t *)mem;
        d->completion = d->prompt + s->n_prompt;
        d->logprobs = (float *)(d->completion + s->n_completion);
        d->ref = d->logprobs + s->n_completion;
        memcpy(d->prompt, s->prompt, (size_t)s->n_prompt * 4);
        memcpy(d->completion, s->completion, (size_t)s->n_completion * 4);
        memcpy(d->logprobs, s->logprobs, (size_t)s->n_completion * 4);
        memset(d->ref, 0, (size_t)s->n_completion * 4);
        d->n_prompt = s->n_prompt;
        d->n_completion = s->n_completion;
        d->finish = s->finish;
        d->version = s->policy_version;
        d->have = 1;
        r->n_have++;
    }
    if (r->n_have < r->n_prompts * r->k) return;
    uint64_t oldest = UINT64_MAX;
    for (uint32_t j = 0; j < r->n_have; j++) oldest = r->s[j].version < oldest ? r->s[j].version : oldest;
    tickets_complete(l->tickets, r->ticket, oldest, &v);
    hold_remove(l, r->ticket, 1);
    if (v == TICKETS_ACCEPTED) {
        r->accepted = 1;
        dispatch_scores(l);
    } else {
        size_t at = 0;
        rset_find(l, r->ticket, &at);
        rset_drop(l, at);
        if (v == TICKETS_STALE) {
            lg(l, "ticket %llu: rollouts of version %llu are stale", (unsigned long long)tk.id,
               (unsigned long long)oldest);
            l->queued_hint++;
        }
    }
    dispatch_tickets(l);
}

/* ---- scored ---- */

static void on_scored(loop_zsock_t *z, zmq_msg_t *parts, size_t n, void *ud) {
    (void)z;
    learner_t *l = ud;
    if (!decode(l, parts, n, PROTO_ACCEPT_LEARNER_SCORED)) return;
    touch_sender(l, PROTO_ROLE_REWARD, l->msg.sender);
    const proto_scored_t *sc = &l->msg.scored;
    tickets_verdict_t v;
    size_t at = 0;
    rset_t *r = rset_find(l, sc->ticket, &at);
    if (!r || !r->accepted) {
        tickets_scored(l->tickets, sc->ticket, &v); // duplicate or unknown: counted
        return;
    }
    uint32_t total = r->n_prompts * r->k;
    char d[160];
    if (sc->n_samples != total) {
        snprintf(d, sizeof d, "scored: %u samples for a ticket of %u", sc->n_samples, total);
        reject(l, PROTO_REJECT_BAD_LENGTH, d);
        return;
    }
    uint8_t seen[PROTO_MAX_SAMPLES];
    memset(seen, 0, total);
    for (uint32_t i = 0; i < sc->n_samples; i++) {
        const proto_scored_sample_t *s = &sc->samples[i];
        if (s->prompt_index >= r->n_prompts || s->sample_index >= r->k ||
            seen[s->prompt_index * r->k + s->sample_index]) {
            snprintf(d, sizeof d, "scored.samples[%u]: index (%u, %u) outside the ticket or repeated", i,
                     s->prompt_index, s->sample_index);
            reject(l, PROTO_REJECT_OUT_OF_RANGE, d);
            return;
        }
        uint32_t j = s->prompt_index * r->k + s->sample_index;
        seen[j] = 1;
        if (s->n_ref != r->s[j].n_completion) {
            snprintf(d, sizeof d, "scored.samples[%u].ref_logprobs: %u values for %u tokens", i, s->n_ref,
                     r->s[j].n_completion);
            reject(l, s->n_ref ? PROTO_REJECT_BAD_LENGTH : PROTO_REJECT_MISSING_FIELD, d);
            return;
        }
    }
    tickets_scored(l->tickets, sc->ticket, &v);
    hold_remove(l, sc->ticket, 2);
    if (v == TICKETS_ACCEPTED) {
        if (grow((void **)&l->buf, &l->cap_buf, l->n_buf + total, sizeof(rsample_t)) != RLHF_OK) {
            lg(l, "out of memory buffering samples: ticket %llu lost", (unsigned long long)sc->ticket);
            rset_drop(l, at);
            return;
        }
        for (uint32_t i = 0; i < sc->n_samples; i++) {
            const proto_scored_sample_t *s = &sc->samples[i];
            rsample_t *x = &r->s[s->prompt_index * r->k + s->sample_index];
            memcpy(x->ref, s->ref_logprobs, (size_t)s->n_ref * 4);
            x->reward = s->reward;
        }
        for (uint32_t j = 0; j < total; j++) { // move, in (prompt, sample) order
            l->buf[l->n_buf++] = r->s[j];
            l->samples_scored++;
            l->tokens_scored += r->s[j].n_completion;
            memset(&r->s[j], 0, sizeof r->s[j]);
        }
    } else if (v == TICKETS_STALE) {
        l->queued_hint++;
    }
    rset_drop(l, at);
    maybe_train(l);
    dispatch_tickets(l);
    dispatch_scores(l);
}

/* Weights propagation: the time from publishing version v until every actor
 * connected at that moment holds >= v (hello, heartbeat and work request
 * carry the version an actor's model holds), i.e. the max over those actors.
 * Actors that join later are not waited for; a version nobody was there to
 * take, or whose actors all left, is not counted. The last WPROP_RING
 * versions are tracked; an older one still pending is forgotten. */
static void wprop_publish(learner_t *l, uint64_t version) {
    int actors = 0;
    for (size_t i = 0; i < l->n_peers; i++) actors += l->peers[i].role == PROTO_ROLE_ACTOR;
    int at = (int)(version % WPROP_RING);
    l->wprop[at].version = actors ? version : 0; // version 1 at start-up: nobody yet
    l->wprop[at].uid_max = l->next_uid;
    l->wprop[at].t_pub = now_s();
}

/* An actor reported its version (on_control): finish the versions every
 * actor they wait for now holds. */
static void wprop_check(learner_t *l) {
    for (int k = 0; k < WPROP_RING; k++) {
        if (!l->wprop[k].version) continue;
        int waiting = 0, held = 0;
        for (size_t i = 0; i < l->n_peers; i++) {
            const peer_t *p = &l->peers[i];
            if (p->role != PROTO_ROLE_ACTOR || p->uid > l->wprop[k].uid_max) continue;
            p->weights_version >= l->wprop[k].version ? held++ : waiting++;
        }
        if (waiting) continue;
        if (held) {
            double dt = now_s() - l->wprop[k].t_pub;
            l->wprop_sum += dt;
            l->wprop_max = dt > l->wprop_max ? dt : l->wprop_max;
            l->wprop_n++;
            if (!l->h_wprop && l->metrics)
                metrics_histogram(l->metrics, "rlhf_weights_propagation_seconds",
                                  "time from publishing a weights version to every connected actor holding it", NULL, 0,
                                  &l->h_wprop);
            metrics_histogram_observe(l->h_wprop, dt);
        }
        l->wprop[k].version = 0;
    }
}

/* Publish the policy's current weights as the next version (loop thread, no
 * job pending). */
static rlhf_err_t publish(learner_t *l) {
    wblob_t *b = calloc(1, sizeof *b);
    size_t size = l->policy->n_params * sizeof(float);
    void *data = b ? malloc(size) : NULL;
    if (!data) {
        free(b);
        return RLHF_ENOMEM;
    }
    memcpy(data, l->policy->params_mem, size);
    atomic_init(&b->refs, 1);
    b->data = data;
    b->size = size;
    b->version = l->blobs[0] ? l->blobs[0]->version + 1 : l->first_version ? l->first_version : 1;
    b->checksum = proto_weights_checksum(data, size);
    blob_unref(l->blobs[1]);
    l->blobs[1] = l->blobs[0];
    l->blobs[0] = b;
    tickets_set_policy_version(l->tickets, b->version);
    wprop_publish(l, b->version);
    announce(l);
    return RLHF_OK;
}

static void on_weights(loop_zsock_t *z, zmq_msg_t *parts, size_t n, void *ud) {
    learner_t *l = ud;
    if (n < 2) {
        reject(l, PROTO_REJECT_BAD_FRAMES, "no routing frame");
        return;
    }
    if (!decode(l, parts + 1, n - 1, PROTO_ACCEPT_LEARNER_WEIGHTS)) return;
    proto_weights_request_t rq = l->msg.weights_request;
    wblob_t *b = NULL;
    for (int i = 0; i < 2; i++)
        if (l->blobs[i] && l->blobs[i]->version == rq.version) b = l->blobs[i];
    header(l, PROTO_WEIGHTS_CHUNK);
    proto_weights_chunk_t *c = &l->msg.weights_chunk;
    c->version = rq.version;
    c->offset = rq.offset;
    c->status = PROTO_CHUNK_OK;
    if (!b) {
        c->status = PROTO_CHUNK_UNKNOWN_VERSION;
    } else {
        c->size = b->size;
        c->checksum = b->checksum;
        if (rq.length > l->chunk_max || rq.offset > b->size || rq.length > b->size - rq.offset)
            c->status = PROTO_CHUNK_BAD_RANGE;
    }
    c->length = c->status == PROTO_CHUNK_OK ? rq.length : 0;
    if (!encode(l)) return;
    const void *data = NULL;
    if (c->status == PROTO_CHUNK_OK) {
        atomic_fetch_add(&b->refs, 1);
        data = (const char *)b->data + rq.offset;
    }
    if (proto_zmq_send_chunk(loop_zsock_socket(z), zmq_msg_data(&parts[0]), zmq_msg_size(&parts[0]), l->enc.data,
                             l->enc.len, data, c->length, data ? blob_zmq_free : NULL, data ? b : NULL) != RLHF_OK)
        lg(l, "weights chunk send failed: %s", zmq_strerror(errno));
    else // sent around the loop (zero-copy): count here
        status_count_out(l, SQ_WEIGHTS, zmq_msg_size(&parts[0]) + l->enc.len + c->length);
    loop_zsock_kick(z);
}

/* ---- timers ---- */

static void on_tick(loop_timer_t *t, void *ud) {
    (void)t;
    learner_t *l = ud;
    uint64_t now = loop_now_ms(l->loop);
    size_t n_exp = 0;
    tickets_expire(l->tickets, (int64_t)now, NULL, 0, &n_exp);
    if (n_exp) {
        l->queued_hint += n_exp;
        lg(l, "%zu tickets past their deadline", n_exp);
    }
    for (size_t i = 0; i < l->n_peers;) {
        if (now - l->peers[i].last_ms > PEER_DEAD_MS)
            peer_remove(l, &l->peers[i], "silent for 10 s");
        else
            i++;
    }
    /* forget holds and partial rollouts of tickets the table no longer knows */
    tickets_ticket_t tk;
    for (size_t i = 0; i < l->n_holds;) {
        if (tickets_lookup(l->tickets, l->holds[i].ticket, &tk) != RLHF_OK)
            l->holds[i] = l->holds[--l->n_holds];
        else
            i++;
    }
    for (size_t i = 0; i < l->n_rsets;) {
        if (!l->rsets[i]->accepted && tickets_lookup(l->tickets, l->rsets[i]->ticket, &tk) != RLHF_OK)
            rset_drop(l, i);
        else
            i++;
    }
    dispatch_tickets(l);
    dispatch_scores(l);
}

static void on_announce(loop_timer_t *t, void *ud) {
    (void)t;
    announce(ud);
}

static void on_linger(loop_timer_t *t, void *ud) {
    (void)t;
    learner_t *l = ud;
    loop_stop(l->loop);
}

/* ---- jobs on the worker thread ---- */

static double heldout(learner_t *l) {
    int n = l->cfg.task.n_heldout > 0 ? l->cfg.task.n_heldout : 200;
    if (task_size(l->task, TASK_HELDOUT) < n) n = task_size(l->task, TASK_HELDOUT);
    if (n <= 0) return NAN;
    eval_result_t r;
    if (eval_task(l->policy, l->task, TASK_HELDOUT, n, 32, l->cfg.sampling.max_new_tokens, &r) != RLHF_OK) return NAN;
    return r.score;
}

static rlhf_err_t save_checkpoint(learner_t *l, int step, char *err, size_t errlen) {
    char dir[CONFIG_PATH_LEN + 32], cdir[CONFIG_PATH_LEN + 48];
    snprintf(dir, sizeof dir, "%s/checkpoint", l->cfg.run.out_dir);
    snprintf(cdir, sizeof cdir, "%s/checkpoint/critic", l->cfg.run.out_dir);
    trainer_state_t ts;
    memset(&ts, 0, sizeof ts);
    ts.step = step;
    rng_init(&ts.rng, l->cfg.run.seed); // unused by the learner (sampling seeds come from the ticket table)
    rlhf_err_t e = checkpoint_save_model(l->policy, dir, err, errlen);
    if (e == RLHF_OK) e = checkpoint_save_trainer(l->popt, &ts, dir, err, errlen);
    if (e == RLHF_OK) e = checkpoint_save_model(l->critic, cdir, err, errlen);
    if (e == RLHF_OK) e = checkpoint_save_trainer(l->copt, &ts, cdir, err, errlen);
    return e;
}

static void job_work(void *arg) {
    job_t *j = arg;
    learner_t *l = j->l;
    /* OpenMP's thread count is per thread: set it on this worker too */
    model_set_threads(l->cfg.learner.threads);
    double t0 = now_s();
    j->eval = NAN;
    j->rc = RLHF_OK;
    if (j->kind == JOB_PPO) {
        ppo_sample_t *ps = malloc((size_t)j->n * sizeof *ps);
        if (!ps) {
            j->rc = RLHF_ENOMEM;
            return;
        }
        for (int i = 0; i < j->n; i++) {
            rsample_t *s = &j->s[i];
            ps[i] = (ppo_sample_t){.prompt = s->prompt,
                                   .n_prompt = (int)s->n_prompt,
                                   .completion = s->completion,
                                   .n_completion = (int)s->n_completion,
                                   .logprobs = s->logprobs,
                                   .ref_logprobs = s->ref,
                                   .reward = (float)s->reward,
                                   .verify = s->version == j->version};
        }
        j->rc = ppo_step(l->ppo, l->popt, l->copt, &l->rl, ps, j->n, &j->stats);
        free(ps);
        j->busy_s = now_s() - t0;
        if (j->do_eval) j->eval = heldout(l);
        double t1 = now_s();
        j->t_eval = t1 - t0 - j->busy_s;
        if (j->do_ckpt && save_checkpoint(l, j->step, j->err, sizeof j->err) != RLHF_OK) j->rc = RLHF_EIO;
        j->t_ckpt = now_s() - t1;
    } else if (j->kind == JOB_EVAL_BEFORE) {
        j->eval = heldout(l);
    } else {
        if (j->do_eval) j->eval = heldout(l);
        char dir[CONFIG_PATH_LEN + 16];
        snprintf(dir, sizeof dir, "%s/final", l->cfg.run.out_dir);
        if (checkpoint_save_model(l->policy, dir, j->err, sizeof j->err) != RLHF_OK) j->rc = RLHF_EIO;
    }
}

static void job_free(job_t *j) {
    for (int i = 0; i < j->n; i++) rsample_free(&j->s[i]);
    free(j->s);
    free(j);
}

static json_t *jnum(double x) {
    return isfinite(x) ? json_real(x) : json_null();
}

static void write_metrics_line(learner_t *l, const job_t *j, double lag) {
    if (!l->metrics_f) return;
    const ppo_stats_t *s = &j->stats;
    json_t *o = json_pack(
        "{s:i,s:I,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:i,s:i}", "step", j->step,
        "policy_version", (json_int_t)(l->blobs[0] ? l->blobs[0]->version : 0), "reward_mean", s->reward_mean, "kl",
        s->kl, "beta", s->beta, "entropy", s->entropy, "clip_frac", s->clip_frac, "approx_kl", s->approx_kl,
        "value_error", s->value_error, "explained_var", s->explained_var, "policy_loss", s->policy_loss, "value_loss",
        s->value_loss, "grad_norm", s->grad_norm, "lr", s->lr, "policy_lag", lag, "t_prep", s->t_prep, "t_policy",
        s->t_policy, "t_critic", s->t_critic, "t_step", s->t_total, "samples", s->n_samples, "tokens", s->n_tokens);
    if (!o) return;
    json_object_set_new(o, "wall_seconds", json_real(now_s() - l->t_start));
    json_object_set_new(o, "heldout_score", jnum(j->eval));
    json_object_set_new(o, "logp_diff", json_real(s->logp_diff));
    char *line = json_dumps(o, JSON_COMPACT);
    if (line) {
        fprintf(l->metrics_f, "%s\n", line);
        fflush(l->metrics_f);
        free(line);
    }
    json_decref(o);
}

static rlhf_err_t write_summary(learner_t *l) {
    double wall = now_s() - l->t_start;
    tickets_counters_t c;
    tickets_counters(l->tickets, &c);
    char ierr[256] = "";
    rlhf_err_t inv = tickets_check_invariants(l->tickets, ierr, sizeof ierr);
    json_t *o = json_object();
    json_t *tj = NULL;
    if (!o || tickets_counters_json(l->tickets, &tj) != RLHF_OK) {
        json_decref(o);
        return RLHF_ENOMEM;
    }
    json_object_set_new(o, "steps", json_integer(l->step));
    json_object_set_new(o, "policy_version", json_integer((json_int_t)(l->blobs[0] ? l->blobs[0]->version : 0)));
    json_object_set_new(o, "samples_used", json_integer((json_int_t)l->samples_used));
    json_object_set_new(o, "logprob_mismatches", json_integer((json_int_t)l->logprob_mismatches));
    json_object_set_new(o, "tickets_issued", json_integer((json_int_t)c.tickets_issued));
    json_object_set_new(o, "tickets_completed", json_integer((json_int_t)c.tickets_completed));
    json_object_set_new(o, "tickets_reissued", json_integer((json_int_t)c.tickets_reissued));
    json_object_set_new(o, "duplicates_dropped", json_integer((json_int_t)c.duplicates_dropped));
    json_object_set_new(o, "stale_dropped", json_integer((json_int_t)c.stale_dropped));
    json_object_set_new(o, "messages_rejected", json_integer((json_int_t)proto_rejects_total(&l->rejects)));
    json_object_set_new(o, "prompts_lost", json_integer((json_int_t)c.prompts_lost));
    json_object_set_new(o, "duplicate_samples_dropped", json_integer((json_int_t)l->dup_samples));
    json_object_set_new(o, "eval_before", jnum(l->eval_before));
    json_object_set_new(o, "eval_after", jnum(l->eval_after));
    json_object_set_new(o, "wall_seconds", json_real(wall));
    json_object_set_new(o, "rollouts_per_s", json_real(wall > 0 ? (double)l->samples_scored / wall : 0.0));
    json_object_set_new(o, "tokens_per_s", json_real(wall > 0 ? (double)l->tokens_scored / wall : 0.0));
    json_object_set_new(o, "learner_busy_fraction", json_real(wall > 0 ? l->busy_s / wall : 0.0));
    json_object_set_new(o, "policy_lag_mean", json_real(l->samples_used ? l->lag_sum / (double)l->samples_used : 0.0));
    json_object_set_new(o, "weights_propagation_s_mean",
                        l->wprop_n ? json_real(l->wprop_sum / (double)l->wprop_n) : json_null());
    json_object_set_new(o, "weights_propagation_s_max", l->wprop_n ? json_real(l->wprop_max) : json_null());
    json_object_set_new(o, "weights_propagation_versions", json_integer((json_int_t)l->wprop_n));
    json_object_set_new(o, "invariants", json_string(inv == RLHF_OK ? "ok" : ierr));
    json_object_set_new(o, "tickets", tj);
    json_t *cj = config_to_json(&l->cfg);
    if (cj) json_object_set_new(o, "config", cj);
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(o);
    if (!text) return RLHF_ENOMEM;
    char path[CONFIG_PATH_LEN + 32], err[256];
    snprintf(path, sizeof path, "%s/summary.json", l->cfg.run.out_dir);
    size_t len = strlen(text);
    text[len] = '\n';
    rlhf_err_t e = checkpoint_write_file(path, text, len + 1, err, sizeof err);
    free(text);
    if (e != RLHF_OK) lg(l, "%s", err);
    return e;
}

/* ---- resume: checkpoint/learner.json and checkpoint/buffer.bin ----
 *
 * A checkpoint is the policy and critic with their optimizers (written by
 * the worker right after the update, trainer step = the learner step), then
 * on the loop thread: buffer.bin (scored samples not trained yet: the ticket
 * table counts their prompts as used, so they must survive), and last
 * learner.json (step, weights version, RL state, run counters and the ticket
 * table), written atomically: it is the commit record, and a resume checks
 * that every file carries its step. */

#define LEARNER_STATE_FORMAT "rlhf-learner-1"
static const char BUF_MAGIC[8] = {'R', 'L', 'H', 'F', 'B', 'U', 'F', '1'};

typedef struct { // buffer.bin sample header, then prompt, completion (int32), logprobs, ref (float32)
    uint32_t n_prompt, n_completion, finish, pad;
    uint64_t version;
    double reward;
} buf_rec_t;

static rlhf_err_t save_buffer(learner_t *l, int step, const char *path, char *err, size_t errlen) {
    size_t bytes = 8 + 16;
    for (size_t i = 0; i < l->n_buf; i++)
        bytes += sizeof(buf_rec_t) + ((size_t)l->buf[i].n_prompt + 3 * (size_t)l->buf[i].n_completion) * 4;
    bytes += 8;
    char *m = malloc(bytes), *at = m;
    if (!m) return rlhf_seterr(err, errlen, RLHF_ENOMEM, "out of memory saving the sample buffer");
    uint64_t hdr[2] = {(uint64_t)step, (uint64_t)l->n_buf};
    memcpy(at, BUF_MAGIC, 8), at += 8;
    memcpy(at, hdr, 16), at += 16;
    for (size_t i = 0; i < l->n_buf; i++) {
        const rsample_t *x = &l->buf[i];
        buf_rec_t r = {x->n_prompt, x->n_completion, x->finish, 0, x->version, x->reward};
        memcpy(at, &r, sizeof r), at += sizeof r;
        size_t n = ((size_t)x->n_prompt + 3 * (size_t)x->n_completion) * 4; // the sample's one block
        memcpy(at, x->prompt, n), at += n;
    }
    uint64_t sum = proto_weights_checksum(m, (size_t)(at - m));
    memcpy(at, &sum, 8), at += 8;
    rlhf_err_t e = checkpoint_write_file(path, m, (size_t)(at - m), err, errlen);
    free(m);
    return e;
}

static rlhf_err_t load_buffer(learner_t *l, int step, const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) return rlhf_seterr(err, errlen, RLHF_EIO, "%s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *m = len >= 32 ? malloc((size_t)len) : NULL;
    size_t got = m ? fread(m, 1, (size_t)len, f) : 0;
    fclose(f);
    rlhf_err_t e = RLHF_OK;
    uint64_t hdr[2], sum;
    if (!m || got != (size_t)len || memcmp(m, BUF_MAGIC, 8) != 0) {
        e = rlhf_seterr(err, errlen, RLHF_EFORMAT, "%s: not a sample buffer (bad size or magic)", path);
        goto done;
    }
    memcpy(hdr, m + 8, 16);
    memcpy(&sum, m + len - 8, 8);
    if (sum != proto_weights_checksum(m, (size_t)len - 8)) {
        e = rlhf_seterr(err, errlen, RLHF_ECHECKSUM, "%s: checksum mismatch (file damaged)", path);
        goto done;
    }
    if (hdr[0] != (uint64_t)step) {
        e = rlhf_seterr(err, errlen, RLHF_EMISMATCH, "%s: step %llu, but learner.json says %d (torn checkpoint)", path,
                        (unsigned long long)hdr[0], step);
        goto done;
    }
    const char *at = m + 24, *end = m + len - 8;
    int T = l->policy->cfg.max_seq_len;
    for (uint64_t i = 0; i < hdr[1]; i++) {
        buf_rec_t r;
        if (end - at < (ptrdiff_t)sizeof r) goto bad;
        memcpy(&r, at, sizeof r), at += sizeof r;
        if (r.n_prompt < 1 || r.n_completion < 1 || (uint64_t)r.n_prompt + r.n_completion > (uint64_t)T) goto bad;
        size_t n = ((size_t)r.n_prompt + 3 * (size_t)r.n_completion) * 4;
        if ((size_t)(end - at) < n) goto bad;
        if (grow((void **)&l->buf, &l->cap_buf, l->n_buf + 1, sizeof(rsample_t)) != RLHF_OK) {
            e = RLHF_ENOMEM;
            goto done;
        }
        rsample_t *x = &l->buf[l->n_buf];
        memset(x, 0, sizeof *x);
        char *blk = malloc(n);
        if (!blk) {
            e = RLHF_ENOMEM;
            goto done;
        }
        memcpy(blk, at, n), at += n;
        x->prompt = (int32_t *)blk;
        x->completion = x->prompt + r.n_prompt;
        x->logprobs = (float *)(x->completion + r.n_completion);
        x->ref = x->logprobs + r.n_completion;
        x->n_prompt = r.n_prompt, x->n_completion = r.n_completion, x->finish = r.finish;
        x->version = r.version, x->reward = r.reward, x->have = 1;
        l->n_buf++;
    }
    if (at != end) goto bad;
    goto done;
bad:
    e = rlhf_seterr(err, errlen, RLHF_EFORMAT, "%s: sample records do not fit the file or the model", path);
done:
    free(m);
    return e;
}

/* Called on the loop thread after a checkpointing step: the buffer, then the
 * commit record. */
static void save_resume(learner_t *l) {
    char path[CONFIG_PATH_LEN + 48], err[256];
    snprintf(path, sizeof path, "%s/checkpoint/buffer.bin", l->cfg.run.out_dir);
    if (save_buffer(l, l->step, path, err, sizeof err) != RLHF_OK) {
        lg(l, "checkpoint: %s", err);
        return;
    }
    json_t *tj = NULL;
    if (tickets_save(l->tickets, (int64_t)loop_now_ms(l->loop), &tj) != RLHF_OK) return;
    json_t *o = json_pack("{s:s, s:i, s:I, s:f, s:f, s:I, s:f, s:I, s:f, s:f, s:f, s:o}", "format",
                          LEARNER_STATE_FORMAT, "step", l->step, "policy_version",
                          (json_int_t)(l->blobs[0] ? l->blobs[0]->version : 0), "reward_mean", l->rl.reward.mean,
                          "reward_m2", l->rl.reward.m2, "reward_count", (json_int_t)l->rl.reward.count, "kl_beta",
                          l->rl.kl.beta, "samples_used", (json_int_t)l->samples_used, "lag_sum", l->lag_sum, "busy_s",
                          l->busy_s, "eval_before", isfinite(l->eval_before) ? l->eval_before : -1.0, "tickets", tj);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!text) return;
    snprintf(path, sizeof path, "%s/checkpoint/learner.json", l->cfg.run.out_dir);
    if (checkpoint_write_file(path, text, strlen(text), err, sizeof err) != RLHF_OK) lg(l, "%s", err);
    free(text);
}

static double jreal(json_t *o, const char *k, int *ok) {
    json_t *v = json_object_get(o, k);
    if (!json_is_number(v)) *ok = 0;
    return json_number_value(v);
}

/* Restore a checkpoint written by save_resume into a learner built from
 * the same config (models, optimizers and RL state allocated). On error the
 * message names the file and what is wrong. */
static rlhf_err_t load_resume(learner_t *l, const tickets_config_t *tc, char *err, size_t errlen) {
    char dir[CONFIG_PATH_LEN + 32], sub[CONFIG_PATH_LEN + 48];
    snprintf(dir, sizeof dir, "%s/checkpoint", l->cfg.run.out_dir);
    snprintf(sub, sizeof sub, "%s/learner.json", dir);
    json_error_t je;
    json_t *o = json_load_file(sub, 0, &je);
    if (!o) return rlhf_seterr(err, errlen, RLHF_EFORMAT, "%s: %s (line %d)", sub, je.text, je.line);
    rlhf_err_t e = RLHF_OK;
    int ok = json_is_string(json_object_get(o, "format")) &&
             strcmp(json_string_value(json_object_get(o, "format")), LEARNER_STATE_FORMAT) == 0;
    int step = (int)jreal(o, "step", &ok);
    uint64_t version = (uint64_t)jreal(o, "policy_version", &ok);
    l->rl.reward.mean = jreal(o, "reward_mean", &ok);
    l->rl.reward.m2 = jreal(o, "reward_m2", &ok);
    l->rl.reward.count = (int64_t)jreal(o, "reward_count", &ok);
    l->rl.kl.beta = jreal(o, "kl_beta", &ok);
    l->samples_used = (uint64_t)jreal(o, "samples_used", &ok);
    l->lag_sum = jreal(o, "lag_sum", &ok);
    l->busy_s = jreal(o, "busy_s", &ok);
    double eb = jreal(o, "eval_before", &ok);
    if (!ok || step < 1 || version < 1) {
        e = rlhf_seterr(err, errlen, RLHF_EFORMAT, "%s: not a learner checkpoint of format %s", sub,
                        LEARNER_STATE_FORMAT);
        goto done;
    }
    /* policy and critic with their optimizers, each checked against the step */
    for (int c = 0; c < 2; c++) {
        model_t *m = c ? l->critic : l->policy, *saved = NULL;
        adamw_t *opt = c ? l->copt : l->popt;
        snprintf(sub, sizeof sub, c ? "%s/critic" : "%s", dir);
        trainer_state_t ts;
        if ((e = checkpoint_load_model(sub, &saved, err, errlen)) != RLHF_OK) goto done;
        if (saved->n_params != m->n_params || saved->cfg.scalar_head != m->cfg.scalar_head) {
            model_destroy(&saved);
            e = rlhf_seterr(err, errlen, RLHF_EMISMATCH, "%s: the checkpoint's model shape differs from the config's",
                            sub);
            goto done;
        }
        memcpy(m->params_mem, saved->params_mem, m->n_params * sizeof(float));
        model_destroy(&saved);
        if ((e = checkpoint_load_trainer(opt, &ts, sub, err, errlen)) != RLHF_OK) goto done;
        if (ts.step != step) {
            e = rlhf_seterr(err, errlen, RLHF_EMISMATCH,
                            "%s: trainer step %lld, but learner.json says %d (torn "
                            "checkpoint: delete %s to start over)",
                            sub, (long long)ts.step, step, dir);
            goto done;
        }
    }
    tickets_t *t = NULL;
    if ((e = tickets_load(&t, tc, json_object_get(o, "tickets"), (int64_t)loop_now_ms(l->loop), TICKETS_LOAD_RESTART,
                          err, errlen)) != RLHF_OK)
        goto done;
    tickets_destroy(&l->tickets);
    l->tickets = t;
    snprintf(sub, sizeof sub, "%s/buffer.bin", dir);
    if ((e = load_buffer(l, step, sub, err, errlen)) != RLHF_OK) goto done;
    l->step = step;
    l->first_version = version;
    l->eval_before = eb >= 0 ? eb : NAN;
    l->resumed = 1;
done:
    json_decref(o);
    return e;
}

static void job_done(loop_t *lp, void *arg, bool cancelled) {
    (void)lp;
    job_t *j = arg;
    learner_t *l = j->l;
    if (cancelled || l->done) {
        job_free(j);
        return;
    }
    if (j->kind != JOB_EVAL_BEFORE) l->training = 0; // the eval job runs before any update
    if (j->kind == JOB_EVAL_BEFORE) {
        l->eval_before = l->last_heldout = j->eval;
        lg(l, "held-out score before training: %.4f", j->eval);
    } else if (j->kind == JOB_PPO) {
        if (j->rc != RLHF_OK) {
            lg(l, "step %d failed: %s %s", j->step, rlhf_strerror(j->rc), j->err);
            l->exit_rc = 1;
        }
        l->busy_s += j->busy_s;
        l->step = j->step;
        double lag = 0;
        uint64_t v = l->blobs[0]->version;
        for (int i = 0; i < j->n; i++) lag += (double)(v - (j->s[i].version <= v ? j->s[i].version : v));
        l->lag_sum += lag;
        l->samples_used += (uint64_t)j->n;
        l->last = j->stats;
        if (j->stats.n_mismatch > 0) {
            l->logprob_mismatches += (uint64_t)j->stats.n_mismatch;
            metrics_counter_add(l->m_mismatch, (double)j->stats.n_mismatch);
            lg(l,
               "step %d: %d of %d rollouts claiming version %llu had log-probs up to %.3g away from the policy's "
               "(learner.logprob_tol %g): left out of the update",
               j->step, j->stats.n_mismatch, j->stats.n_verified, (unsigned long long)j->version,
               j->stats.mismatch_diff, (double)l->cfg.learner.logprob_tol);
        }
        if (isfinite(j->eval)) l->last_heldout = j->eval, l->last_eval_step = j->step;
        double t_pub = now_s();
        if (publish(l) != RLHF_OK) lg(l, "out of memory publishing weights");
        status_note_step(l, j, now_s() - t_pub);
        write_metrics_line(l, j, j->n ? lag / j->n : 0.0);
        if (j->do_ckpt) save_resume(l);
        lg(l, "step %d/%d: version %llu reward %.4f kl %.4f entropy %.3f clip %.3f value_err %.4f (%.2f s)%s", j->step,
           l->cfg.run.steps, (unsigned long long)l->blobs[0]->version, j->stats.reward_mean, j->stats.kl,
           j->stats.entropy, j->stats.clip_frac, j->stats.value_error, j->stats.t_total,
           isfinite(j->eval) ? " eval" : "");
        if (l->step >= l->cfg.run.steps || l->draining) {
            job_free(j);
            finish(l);
            return;
        }
    } else { // JOB_FINAL
        l->eval_after = j->do_eval ? j->eval : l->last_heldout;
        if (j->rc != RLHF_OK) {
            lg(l, "writing final/ failed: %s", j->err);
            l->exit_rc = 1;
        }
        if (write_summary(l) != RLHF_OK) l->exit_rc = 1;
        l->done = 1;
        lg(l, "done: %d steps, version %llu, held-out %.4f -> %.4f", l->step,
           (unsigned long long)(l->blobs[0] ? l->blobs[0]->version : 0), l->eval_before, l->eval_after);
        loop_timer_start(l->t_linger, l->linger_ms, 0);
        job_free(j);
        return;
    }
    job_free(j);
    maybe_train(l);
    dispatch_tickets(l);
}

static job_t *job_new(learner_t *l, job_kind_t kind) {
    job_t *j = calloc(1, sizeof *j);
    if (j) j->l = l, j->kind = kind, j->eval = NAN;
    return j;
}

static void finish(learner_t *l) {
    if (l->finishing) return;
    l->finishing = 1;
    job_t *j = job_new(l, JOB_FINAL);
    if (j) j->do_eval = !(l->step > 0 && l->last_eval_step == l->step); // the last step's eval is the final one
    if (!j || loop_submit(l->loop, job_work, job_done, j) != RLHF_OK) {
        free(j);
        lg(l, "cannot submit the final job");
        l->exit_rc = 1;
        loop_stop(l->loop);
        return;
    }
    l->training = 1;
}

static void maybe_train(learner_t *l) {
    int B = l->cfg.ppo.batch_prompts * l->cfg.ppo.k;
    if (l->training || l->finishing || l->draining || l->step >= l->cfg.run.steps || l->n_buf < (size_t)B) return;
    job_t *j = job_new(l, JOB_PPO);
    if (j) j->s = malloc((size_t)B * sizeof(rsample_t));
    if (!j || !j->s) {
        free(j);
        return;
    }
    memcpy(j->s, l->buf, (size_t)B * sizeof(rsample_t));
    memmove(l->buf, l->buf + B, (l->n_buf - (size_t)B) * sizeof(rsample_t));
    l->n_buf -= (size_t)B;
    j->n = B;
    j->step = l->step + 1;
    j->version = l->blobs[0] ? l->blobs[0]->version : 0;
    l->t_busy = now_s();
    j->t_wait = l->t_busy - (l->t_idle > 0 ? l->t_idle : l->t_start);
    j->do_eval =
        (l->cfg.learner.eval_every > 0 && j->step % l->cfg.learner.eval_every == 0) || j->step == l->cfg.run.steps;
    j->do_ckpt = l->cfg.learner.checkpoint_every > 0 && j->step % l->cfg.learner.checkpoint_every == 0;
    if (loop_submit(l->loop, job_work, job_done, j) != RLHF_OK) {
        job_free(j);
        return;
    }
    l->training = 1;
}

/* ---- /status and metrics ---- */

/* The queues /status reports, messages and bytes from rlhf_messages_total and
 * rlhf_bytes_total (the loop counts its sockets; announce and weights chunks
 * bypass loop_zsock_send and are counted by status_count_out). */
static const struct {
    const char *name, *flow, *depth_of; // depth_of NULL: no depth
} status_queues[STATUS_QUEUES] = {
    [SQ_WORK] = {"work", "prompts -> actors", "tickets outstanding"},
    [SQ_ROLLOUTS] = {"rollouts", "rollouts <- actors", "tickets assembling"},
    [SQ_SCORE] = {"score", "rollouts -> reward", "tickets waiting for score"},
    [SQ_SCORED] = {"scored", "scores <- reward", "samples buffered"},
    [SQ_ANNOUNCE] = {"announce", "versions -> actors", NULL},
    [SQ_WEIGHTS] = {"weights", "weights -> actors", "actors behind"},
};

/* The phases of one update, in order: waiting for a full batch, rollout
 * forward (critic values, KL, GAE), policy and critic forward + backward +
 * AdamW, held-out evaluation, checkpoint, publishing the new version. */
static const char *const status_phases[STATUS_PHASES] = {"wait", "prep",       "policy", "critic",
                                                         "eval", "checkpoint", "publish"};

static void status_counters(learner_t *l) {
    if (l->qc_ready || !l->metrics) return;
    metrics_family_t *fm = NULL, *fb = NULL;
    if (metrics_counter_family(l->metrics, "rlhf_messages_total", NULL, "queue,direction", &fm) != RLHF_OK ||
        metrics_counter_family(l->metrics, "rlhf_bytes_total", NULL, "queue,direction", &fb) != RLHF_OK)
        return;
    static const char *const dir[2] = {"in", "out"};
    for (int q = 0; q < STATUS_QUEUES; q++)
        for (int d = 0; d < 2; d++) {
            if (q == SQ_ANNOUNCE && d == 0) continue; // PUB: nothing comes in
            const char *v[2] = {status_queues[q].name, dir[d]};
            metrics_counter_get(fm, v, &l->qc[q][d]);
            metrics_counter_get(fb, v, &l->qc[q][2 + d]);
        }
    l->qc_ready = 1;
}

static void status_count_out(learner_t *l, int q, size_t bytes) {
    status_counters(l);
    metrics_counter_inc(l->qc[q][1]);
    metrics_counter_add(l->qc[q][3], (double)bytes);
}

/* An update finished (job_done, loop thread): its phase times and curves. */
static void status_note_step(learner_t *l, const job_t *j, double t_publish) {
    double now = now_s();
    const double ph[STATUS_PHASES] = {j->t_wait, j->stats.t_prep, j->stats.t_policy, j->stats.t_critic,
                                      j->t_eval, j->t_ckpt,       t_publish};
    memcpy(l->ph, ph, sizeof ph);
    l->ph_step = j->step;
    if (l->t_busy > 0) l->busy_total += now - l->t_busy;
    l->t_busy = 0;
    l->t_idle = now;
    int at = l->n_hist++ % STATUS_HISTORY;
    l->hist[at].step = j->step;
    l->hist[at].reward = j->stats.reward_mean;
    l->hist[at].kl = j->stats.kl;
    l->hist[at].heldout = j->eval;
}

/* The fields rlhf top and the / page read. Counters are cumulative (a client
 * differences two snapshots and divides by the server_time difference);
 * depths and the rest are current values. */
static void status_extras(json_t *st, learner_t *l, const tickets_counters_t *c, size_t waiting) {
    double now = now_s();
    uint64_t latest = l->blobs[0] ? l->blobs[0]->version : 0;
    json_object_set_new(st, "server_time", json_real(now)); // CLOCK_MONOTONIC seconds
    json_object_set_new(st, "wall_seconds", json_real(l->t_start > 0 ? now - l->t_start : 0.0));
    json_object_set_new(st, "training", json_boolean(l->training));
    double busy = l->busy_total + (l->training && l->t_busy > 0 ? now - l->t_busy : 0.0);
    json_object_set_new(st, "totals",
                        json_pack("{s:I,s:I,s:I,s:f}", "samples_scored", (json_int_t)l->samples_scored, "tokens_scored",
                                  (json_int_t)l->tokens_scored, "samples_used", (json_int_t)l->samples_used,
                                  "busy_seconds", busy));

    size_t behind = 0, at_actors = 0, at_reward = 0;
    for (size_t i = 0; i < l->n_peers; i++)
        if (l->peers[i].role == PROTO_ROLE_ACTOR && l->peers[i].weights_version < latest) behind++;
    for (size_t i = 0; i < l->n_holds; i++) l->holds[i].stage == 1 ? at_actors++ : at_reward++;
    const double depth[STATUS_QUEUES] = {
        [SQ_WORK] = (double)c->jobs_open, [SQ_ROLLOUTS] = (double)(l->n_rsets - waiting),
        [SQ_SCORE] = (double)waiting,     [SQ_SCORED] = (double)l->n_buf,
        [SQ_WEIGHTS] = (double)behind,
    };
    status_counters(l);
    json_t *qs = json_array();
    for (int q = 0; q < STATUS_QUEUES; q++) {
        json_t *o = json_pack("{s:s,s:s,s:f,s:f,s:f,s:f}", "name", status_queues[q].name, "flow", status_queues[q].flow,
                              "messages_in", metrics_counter_value(l->qc[q][0]), "messages_out",
                              metrics_counter_value(l->qc[q][1]), "bytes_in", metrics_counter_value(l->qc[q][2]),
                              "bytes_out", metrics_counter_value(l->qc[q][3]));
        if (!o) continue;
        json_object_set_new(o, "depth", status_queues[q].depth_of ? json_real(depth[q]) : json_null());
        json_object_set_new(o, "depth_of",
                            status_queues[q].depth_of ? json_string(status_queues[q].depth_of) : json_null());
        if (q == SQ_WORK) json_object_set_new(o, "in_flight", json_integer((json_int_t)at_actors));
        if (q == SQ_SCORE) json_object_set_new(o, "in_flight", json_integer((json_int_t)at_reward));
        json_array_append_new(qs, o);
    }
    json_object_set_new(st, "queue_stats", qs);

    json_t *ps = json_array();
    uint64_t now_ms = loop_now_ms(l->loop);
    for (size_t i = 0; i < l->n_peers; i++) {
        const peer_t *p = &l->peers[i];
        int actor = p->role == PROTO_ROLE_ACTOR, held = 0;
        for (size_t h = 0; h < l->n_holds; h++) held += l->holds[h].peer_uid == p->uid;
        json_t *o = json_pack("{s:s,s:I,s:s,s:I,s:I,s:i,s:i,s:f}", "id", p->name, "uid", (json_int_t)p->uid, "role",
                              actor ? "actor" : "reward", "weights_version", (json_int_t)p->weights_version, "samples",
                              (json_int_t)p->delivered, "tickets_held", held, "credit", (int)p->credit, "last_seen_s",
                              now_ms > p->last_ms ? (double)(now_ms - p->last_ms) / 1000.0 : 0.0);
        if (!o) continue;
        uint64_t lag = latest > p->weights_version ? latest - p->weights_version : 0;
        json_object_set_new(o, "policy_lag", actor && p->weights_version ? json_integer((json_int_t)lag) : json_null());
        json_array_append_new(ps, o);
    }
    json_object_set_new(st, "peers", ps);

    json_t *ph = json_object(), *sec = json_object();
    double total = 0;
    for (int i = 0; i < STATUS_PHASES; i++) {
        json_object_set_new(sec, status_phases[i], json_real(l->ph[i]));
        total += l->ph[i];
    }
    json_object_set_new(ph, "step", json_integer(l->ph_step));
    json_object_set_new(ph, "order",
                        json_pack("[s,s,s,s,s,s,s]", status_phases[0], status_phases[1], status_phases[2],
                                  status_phases[3], status_phases[4], status_phases[5], status_phases[6]));
    json_object_set_new(ph, "seconds", sec);
    json_object_set_new(ph, "total", json_real(total));
    json_object_set_new(st, "step_phases", ph);

    json_t *hs = json_array(), *hr = json_array(), *hk = json_array(), *hh = json_array();
    int n = l->n_hist < STATUS_HISTORY ? l->n_hist : STATUS_HISTORY;
    for (int k = l->n_hist - n; k < l->n_hist; k++) {
        int at = k % STATUS_HISTORY;
        json_array_append_new(hs, json_integer(l->hist[at].step));
        json_array_append_new(hr, jnum(l->hist[at].reward));
        json_array_append_new(hk, jnum(l->hist[at].kl));
        json_array_append_new(hh, jnum(l->hist[at].heldout));
    }
    json_object_set_new(st, "history",
                        json_pack("{s:o,s:o,s:o,s:o}", "step", hs, "reward_mean", hr, "kl", hk, "heldout_score", hh));
}

static void status_hook(json_t *st, void *ud) {
    learner_t *l = ud;
    double wall = now_s() - l->t_start;
    tickets_counters_t c;
    tickets_counters(l->tickets, &c);
    json_object_set_new(st, "role", json_string("learner"));
    json_object_set_new(st, "id", json_string(l->id));
    json_object_set_new(st, "step", json_integer(l->step));
    json_object_set_new(st, "steps_total", json_integer(l->cfg.run.steps));
    json_object_set_new(st, "policy_version", json_integer((json_int_t)(l->blobs[0] ? l->blobs[0]->version : 0)));
    json_object_set_new(st, "done", json_boolean(l->done));
    json_object_set_new(st, "reward_mean", json_real(l->last.reward_mean));
    json_object_set_new(st, "kl", json_real(l->last.kl));
    json_object_set_new(st, "entropy", json_real(l->last.entropy));
    json_object_set_new(st, "heldout_score", jnum(l->last_heldout));
    json_object_set_new(st, "rollouts_per_s", json_real(wall > 0 ? (double)l->samples_scored / wall : 0.0));
    json_object_set_new(st, "tokens_per_s", json_real(wall > 0 ? (double)l->tokens_scored / wall : 0.0));
    json_object_set_new(st, "policy_lag", json_real(l->samples_used ? l->lag_sum / (double)l->samples_used : 0.0));
    size_t waiting = 0;
    for (size_t i = 0; i < l->n_rsets; i++) waiting += l->rsets[i]->accepted;
    json_t *q = json_object();
    json_object_set_new(q, "tickets_outstanding", json_integer((json_int_t)c.jobs_open));
    json_object_set_new(q, "rollouts_waiting_score", json_integer((json_int_t)waiting));
    json_object_set_new(q, "samples_buffered", json_integer((json_int_t)l->n_buf));
    json_object_set_new(st, "queues", q);
    json_t *tj = NULL;
    if (tickets_counters_json(l->tickets, &tj) == RLHF_OK) json_object_set_new(st, "tickets", tj);
    int na = 0, nr = 0;
    for (size_t i = 0; i < l->n_peers; i++) l->peers[i].role == PROTO_ROLE_ACTOR ? na++ : nr++;
    json_t *w = json_object();
    json_object_set_new(w, "actors", json_integer(na));
    json_object_set_new(w, "reward", json_integer(nr));
    json_object_set_new(st, "workers", w);
    status_extras(st, l, &c, waiting);
}

static void collect(metrics_t *m, void *ud) {
    (void)m;
    learner_t *l = ud;
    metrics_gauge_set(l->g_step, l->step);
    metrics_gauge_set(l->g_version, l->blobs[0] ? (double)l->blobs[0]->version : 0.0);
    metrics_gauge_set(l->g_reward, l->last.reward_mean);
    metrics_gauge_set(l->g_kl, l->last.kl);
    metrics_gauge_set(l->g_buffered, (double)l->n_buf);
}

/* ---- lifecycle ---- */

static rlhf_err_t open_socket(learner_t *l, int type, config_ep_t ep, void **out, char *err, size_t errlen) {
    char addr[160];
    const char *host = l->cfg.learner.bind;
    config_endpoint(&l->cfg, host, ep, addr, sizeof addr);
    void *s = zmq_socket(l->zctx, type);
    if (!s) return rlhf_seterr(err, errlen, RLHF_EIO, "zmq_socket: %s", zmq_strerror(errno));
    int linger = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    if (type != ZMQ_PUB) proto_zmq_limit(s);
    if (zmq_bind(s, addr) != 0) {
        int e = errno;
        zmq_close(s);
        return rlhf_seterr(err, errlen, RLHF_EIO,
                           "cannot bind %s: %s (is another learner running? change learner.*_port)", addr,
                           zmq_strerror(e));
    }
    *out = s;
    return RLHF_OK;
}

rlhf_err_t learner_new(learner_t **out, const rlhf_config_t *cfg, const char *id, char *err, size_t errlen) {
    *out = NULL;
    rlhf_err_t e = RLHF_OK;
    learner_t *l = calloc(1, sizeof *l);
    if (!l) return rlhf_seterr(err, errlen, RLHF_ENOMEM, "out of memory");
    l->cfg = *cfg;
    snprintf(l->id, sizeof l->id, "%s", id && *id ? id : "learner");
    l->linger_ms = 2000;
    l->eval_before = l->eval_after = l->last_heldout = NAN;
    l->chunk_max = (uint32_t)cfg->learner.weights_chunk;
    if (l->chunk_max < 1 || l->chunk_max > PROTO_MAX_CHUNK_BYTES) l->chunk_max = PROTO_CHUNK_BYTES;
    proto_msg_init(&l->msg);
    proto_enc_init(&l->enc);
    proto_rejects_init(&l->rejects);
    if (strcmp(cfg->run.algo, "ppo") != 0 && strcmp(cfg->run.algo, "grpo") != 0 && strcmp(cfg->run.algo, "rloo") != 0) {
        e = rlhf_seterr(err, errlen, RLHF_EUNSUPPORTED,
                        "'run.algo' %s is not implemented by the distributed learner (use ppo, grpo or rloo)",
                        cfg->run.algo);
        goto fail;
    }
    model_set_threads(cfg->learner.threads);

    /* models: the initial weights every role agrees on */
    model_config_t mc;
    if ((e = config_to_model(cfg, &mc, err, errlen)) != RLHF_OK) goto fail;
    if (cfg->model.init[0]) {
        if ((e = checkpoint_load_model(cfg->model.init, &l->policy, err, errlen)) != RLHF_OK) goto fail;
        mc = l->policy->cfg;
    } else {
        mc.scalar_head = 0;
        if (!(l->policy = model_new(&mc))) {
            e = rlhf_seterr(err, errlen, RLHF_ENOMEM, "cannot allocate the policy");
            goto fail;
        }
        model_init_weights(l->policy, cfg->run.seed);
    }
    model_config_t cc = l->policy->cfg;
    cc.scalar_head = 1;
    if (!(l->critic = model_new(&cc)) || model_alloc_grads(l->policy) != RLHF_OK ||
        model_alloc_grads(l->critic) != RLHF_OK) {
        e = rlhf_seterr(err, errlen, RLHF_ENOMEM, "cannot allocate the critic and gradients");
        goto fail;
    }
    if ((e = ppo_critic_from_policy(l->critic, l->policy)) != RLHF_OK) {
        rlhf_seterr(err, errlen, e, "policy and critic shapes disagree");
        goto fail;
    }
    l->vocab = l->policy->cfg.vocab_size;
    adamw_config_t pa, ca;
    config_to_adamw(cfg, &pa, &ca);
    l->popt = adamw_new(&pa, l->policy->n_params);
    l->copt = adamw_new(&ca, l->critic->n_params);
    if (!l->popt || !l->copt) {
        e = rlhf_seterr(err, errlen, RLHF_ENOMEM, "cannot allocate the optimizers");
        goto fail;
    }
    if ((e = ppo_config_from(cfg, &l->ppo_cfg, err, errlen)) != RLHF_OK) goto fail;
    rl_state_init(&l->rl, &l->ppo_cfg.rl);
    if ((e = ppo_new(&l->ppo, l->policy, l->critic, &l->ppo_cfg)) != RLHF_OK) {
        rlhf_seterr(err, errlen, e, "cannot set up the PPO step (ppo.minibatch %d)", cfg->ppo.minibatch);
        goto fail;
    }

    /* task and tickets */
    task_config_t tcfg;
    config_to_task(cfg, &tcfg);
    if (!(l->task = task_new_err(cfg->task.name, &tcfg, err, errlen))) {
        e = RLHF_EINVAL;
        goto fail;
    }
    tickets_config_t tc;
    tickets_config_default(&tc);
    tc.n_prompts = (uint32_t)task_size(l->task, TASK_TRAIN);
    tc.seed = cfg->run.seed;
    tc.prompts_per_ticket = (uint32_t)cfg->learner.ticket_prompts;
    if (tc.prompts_per_ticket > (uint32_t)cfg->ppo.batch_prompts)
        tc.prompts_per_ticket = (uint32_t)cfg->ppo.batch_prompts;
    if (cfg->run.max_lag == 0) // on-policy: tickets must tile a batch exactly
        while (cfg->ppo.batch_prompts % tc.prompts_per_ticket) tc.prompts_per_ticket--;
    tc.k = (uint32_t)cfg->ppo.k;
    tc.max_lag = (uint32_t)cfg->run.max_lag;
    tc.gen_timeout_ms = (uint32_t)cfg->learner.ticket_timeout_ms;
    tc.score_timeout_ms = (uint32_t)cfg->learner.score_timeout_ms;
    tc.max_open_epochs = (uint32_t)cfg->learner.max_open_epochs;
    tc.two_stage = true;
    if ((e = tickets_new(&l->tickets, &tc, err, errlen)) != RLHF_OK) goto fail;
    l->tokbuf = malloc((size_t)tc.prompts_per_ticket * (size_t)l->policy->cfg.max_seq_len * sizeof(int32_t));
    l->pbuf = calloc(tc.prompts_per_ticket, sizeof(proto_prompt_t));
    l->ibuf = calloc(PROTO_MAX_SAMPLES, sizeof(proto_score_item_t));
    if (!l->tokbuf || !l->pbuf || !l->ibuf) {
        e = rlhf_seterr(err, errlen, RLHF_ENOMEM, "out of memory");
        goto fail;
    }

    /* loop, metrics, sockets, HTTP */
    if ((e = metrics_new(&l->metrics)) != RLHF_OK) goto fail_mem;
    metrics_register_process(l->metrics);
    if (metrics_counter_family(l->metrics, "rlhf_messages_rejected_total", "protocol messages dropped, by reason",
                               "reason", &l->f_rejected) != RLHF_OK ||
        metrics_gauge(l->metrics, "rlhf_learner_step", "PPO updates done", &l->g_step) != RLHF_OK ||
        metrics_counter(l->metrics, "rlhf_logprob_mismatch_total",
                        "rollouts claiming the current weights whose log-probs disagreed (left out of updates)",
                        &l->m_mismatch) != RLHF_OK ||
        metrics_gauge(l->metrics, "rlhf_policy_version", "latest published weights version", &l->g_version) !=
            RLHF_OK ||
        metrics_gauge(l->metrics, "rlhf_reward_mean", "mean task reward of the last batch", &l->g_reward) != RLHF_OK ||
        metrics_gauge(l->metrics, "rlhf_kl", "mean per-sequence KL to the reference, last batch", &l->g_kl) !=
            RLHF_OK ||
        metrics_gauge(l->metrics, "rlhf_samples_buffered", "scored samples waiting for training", &l->g_buffered) !=
            RLHF_OK ||
        metrics_add_collector(l->metrics, collect, l) != RLHF_OK)
        goto fail_mem;
    loop_config_t lc = {.metrics = l->metrics, .nworkers = 1};
    if ((e = loop_new(&l->loop, &lc)) != RLHF_OK) {
        rlhf_seterr(err, errlen, e, "cannot start the event loop");
        goto fail;
    }
    if (!(l->zctx = zmq_ctx_new())) {
        e = rlhf_seterr(err, errlen, RLHF_EIO, "zmq_ctx_new failed");
        goto fail;
    }
    if ((e = open_socket(l, ZMQ_ROUTER, CONFIG_EP_WORK, &l->s_work, err, errlen)) != RLHF_OK ||
        (e = open_socket(l, ZMQ_PULL, CONFIG_EP_ROLLOUTS, &l->s_rollouts, err, errlen)) != RLHF_OK ||
        (e = open_socket(l, ZMQ_ROUTER, CONFIG_EP_SCORE, &l->s_score, err, errlen)) != RLHF_OK ||
        (e = open_socket(l, ZMQ_PULL, CONFIG_EP_SCORED, &l->s_scored, err, errlen)) != RLHF_OK ||
        (e = open_socket(l, ZMQ_PUB, CONFIG_EP_ANNOUNCE, &l->s_announce, err, errlen)) != RLHF_OK ||
        (e = open_socket(l, ZMQ_ROUTER, CONFIG_EP_WEIGHTS, &l->s_weights, err, errlen)) != RLHF_OK)
        goto fail;
    if ((e = loop_zsock_add(l->loop, l->s_work, "work", on_work, l, &l->z_work)) != RLHF_OK ||
        (e = loop_zsock_add(l->loop, l->s_rollouts, "rollouts", on_rollouts, l, &l->z_rollouts)) != RLHF_OK ||
        (e = loop_zsock_add(l->loop, l->s_score, "score", on_score, l, &l->z_score)) != RLHF_OK ||
        (e = loop_zsock_add(l->loop, l->s_scored, "scored", on_scored, l, &l->z_scored)) != RLHF_OK ||
        (e = loop_zsock_add(l->loop, l->s_weights, "weights", on_weights, l, &l->z_weights)) != RLHF_OK) {
        rlhf_seterr(err, errlen, e, "cannot register the sockets with the loop");
        goto fail;
    }
    if ((e = loop_timer_new(l->loop, on_tick, l, &l->t_tick)) != RLHF_OK ||
        (e = loop_timer_new(l->loop, on_announce, l, &l->t_announce)) != RLHF_OK ||
        (e = loop_timer_new(l->loop, on_linger, l, &l->t_linger)) != RLHF_OK)
        goto fail_mem;
    if (cfg->learner.http_port >= 0) {
        http_config_t hc = {.host = strcmp(cfg->learner.bind, "*") == 0 ? "0.0.0.0" : cfg->learner.bind,
                            .port = cfg->learner.http_port,
                            .metrics = l->metrics};
        if ((e = http_server_new(l->loop, &hc, &l->http, err, errlen)) != RLHF_OK) goto fail;
        http_server_set_status_hook(l->http, status_hook, l);
        if ((e = http_server_route(l->http, "/", page_serve, l)) != RLHF_OK) goto fail_mem; // the live page
    }

    /* the run folder */
    if ((e = checkpoint_mkdirs(cfg->run.out_dir, err, errlen)) != RLHF_OK) goto fail;
    char path[CONFIG_PATH_LEN + 32];
    snprintf(path, sizeof path, "%s/checkpoint/learner.json", cfg->run.out_dir);
    int resume = cfg->run.resume && access(path, R_OK) == 0;
    if (cfg->run.resume && !resume)
        lg(l, "run.resume: no checkpoint in %s/checkpoint yet, starting fresh", cfg->run.out_dir);
    if (resume) {
        tickets_config_t tcf = *tickets_config(l->tickets);
        if ((e = load_resume(l, &tcf, err, errlen)) != RLHF_OK) goto fail;
        lg(l, "resumed from %s: step %d, weights version %llu, %zu scored samples buffered", path, l->step,
           (unsigned long long)l->first_version, l->n_buf);
    }
    snprintf(path, sizeof path, "%s/metrics.jsonl", cfg->run.out_dir);
    if (!(l->metrics_f = fopen(path, resume ? "a" : "w"))) {
        e = rlhf_seterr(err, errlen, RLHF_EIO, "%s: %s", path, strerror(errno));
        goto fail;
    }
    if ((e = publish(l)) != RLHF_OK) goto fail_mem; // version 1, or the checkpoint's
    *out = l;
    return RLHF_OK;
fail_mem:
    if (e == RLHF_OK) e = RLHF_ENOMEM;
    rlhf_seterr(err, errlen, e, "learner set-up failed: %s", rlhf_strerror(e));
fail:
    learner_destroy(&l);
    return e;
}

void learner_destroy(learner_t **pp) {
    if (!pp || !*pp) return;
    learner_t *l = *pp;
    l->done = 1; // jobs finishing during loop_destroy are just freed
    http_server_destroy(&l->http);
    loop_zsock_remove(&l->z_work);
    loop_zsock_remove(&l->z_rollouts);
    loop_zsock_remove(&l->z_score);
    loop_zsock_remove(&l->z_scored);
    loop_zsock_remove(&l->z_weights);
    loop_timer_destroy(&l->t_tick);
    loop_timer_destroy(&l->t_announce);
    loop_timer_destroy(&l->t_linger);
    loop_destroy(&l->loop);
    void *socks[] = {l->s_work, l->s_rollouts, l->s_score, l->s_scored, l->s_announce, l->s_weights};
    for (size_t i = 0; i < sizeof socks / sizeof socks[0]; i++)
        if (socks[i]) zmq_close(socks[i]);
    if (l->zctx) zmq_ctx_term(l->zctx); // releases every zero-copy chunk
    blob_unref(l->blobs[0]);
    blob_unref(l->blobs[1]);
    metrics_destroy(&l->metrics);
    if (l->metrics_f) fclose(l->metrics_f);
    for (size_t i = 0; i < l->n_rsets; i++) rset_free(l->rsets[i]);
    free(l->rsets);
    for (size_t i = 0; i < l->n_buf; i++) rsample_free(&l->buf[i]);
    free(l->buf);
    free(l->peers);
    free(l->holds);
    free(l->tokbuf);
    free(l->pbuf);
    free(l->ibuf);
    tickets_destroy(&l->tickets);
    task_destroy(&l->task);
    ppo_destroy(&l->ppo);
    adamw_destroy(&l->popt);
    adamw_destroy(&l->copt);
    model_destroy(&l->policy);
    model_destroy(&l->critic);
    proto_msg_fini(&l->msg);
    proto_enc_fini(&l->enc);
    free(l);
    *pp = NULL;
}

static void on_drain(loop_t *lp, int signum, void *ud) {
    (void)lp;
    learner_t *l = ud;
    lg(l, "signal %d: draining (a second one exits at once)", signum);
    l->draining = 1;
    if (l->done || l->finishing) return;
    if (!l->training) finish(l); // else job_done finishes after the update in flight
}

rlhf_err_t learner_catch_signals(learner_t *l) {
    return loop_catch_signals(l->loop, on_drain, NULL, l);
}

rlhf_err_t learner_run(learner_t *l) {
    l->t_start = now_s();
    lg(l, "serving on %s (work port %d), http port %d, %zu parameters, %d steps of %d x %d samples",
       l->cfg.learner.bind, l->cfg.learner.work_port, learner_http_port(l), l->policy->n_params, l->cfg.run.steps,
       l->cfg.ppo.batch_prompts, l->cfg.ppo.k);
    loop_timer_start(l->t_tick, 200, 200);
    loop_timer_start(l->t_announce, ANNOUNCE_MS, ANNOUNCE_MS);
    if (!l->resumed) { // a resumed run keeps the eval_before of its start
        job_t *j = job_new(l, JOB_EVAL_BEFORE);
        if (!j || loop_submit(l->loop, job_work, job_done, j) != RLHF_OK) {
            free(j);
            return RLHF_ENOMEM;
        }
    } else {
        maybe_train(l); // the checkpoint's buffered samples may already make a batch
    }
    if (l->cfg.run.steps <= 0) finish(l);
    announce(l);
    loop_run(l->loop);
    if (!l->done) return RLHF_EIO;
    return l->exit_rc ? RLHF_EIO : RLHF_OK;
}

void learner_stop(learner_t *l) {
    loop_stop(l->loop);
}
void learner_set_linger_ms(learner_t *l, uint64_t ms) {
    l->linger_ms = ms;
}
int learner_http_port(const learner_t *l) {
    return l->http ? http_server_port(l->http) : -1;
}
uint64_t learner_policy_version(const learner_t *l) {
    return l->blobs[0] ? l->blobs[0]->version : 0;
}
