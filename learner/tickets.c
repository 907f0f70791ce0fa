/*
 * tickets.c - the learner's ticket table (the contract is in tickets.h).
 *
 * Representation. Open epochs live in a ring of max_open_epochs slots (epoch e
 * in slot e % W), each holding its order perm[] (recomputed from (seed, e)
 * when the epoch opens) and a use count per prompt. Open jobs are an array
 * sorted by id (a job's id is its first ticket's id, so creating one
 * appends); a job's prompts are perm[first .. first+n) of its epoch, so no
 * prompt list is stored per job. Open tickets are an array sorted by id too
 * (issuing appends), searched by bisection. Every scan walks these sorted
 * arrays, which makes each decision a function of the call sequence alone and
 * the saved state canonical.
 *
 * Costs: issue O(open jobs) (the oldest queued job is found by a scan),
 * complete O(open tickets) (other attempts are swept), expire O(open
 * tickets * log jobs). Open tickets are bounded by the workers' credit, so
 * these stay small; nothing here is per prompt except opening an epoch and
 * the counters' recount.
 */
#include "learner/tickets.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json_util.h"
#include "common/rng.h"
#include "proto/proto.h"

#define NONE SIZE_MAX

typedef struct {
    uint64_t id;          // ticket id
    uint64_t job;         // id of its job
    uint64_t min_version; // policy_version the ticket was issued with
    int64_t deadline_ms;  // absolute generation deadline
    uint32_t attempt;     // 1.. within its job
    bool expired;         // past its deadline or abandoned; may still win
} tk_ticket_t;

typedef struct {
    uint64_t id;       // its first ticket's id
    uint64_t epoch;    // open epoch the prompts belong to
    uint32_t first, n; // prompts: the epoch's perm[first .. first+n)
    tickets_state_t state;
    uint32_t attempts;         // generation attempts issued
    uint32_t live;             // QUEUED/GENERATING: its tickets that have not expired; else 0
    uint64_t winner;           // GENERATED/SCORING: the ticket whose rollouts are held
    uint64_t rollout_version;  // GENERATED/SCORING: their version
    int64_t score_deadline_ms; // SCORING
    uint32_t score_attempts;   // scorings of the held rollouts
} tk_job_t;

typedef struct {
    uint32_t *perm;   // (n_prompts) dataset index at each position of the epoch's order
    uint8_t *uses;    // (n_prompts) per dataset index: accepted completions, saturating at 255
    uint32_t pos;     // positions [0, pos) were handed out
    uint32_t done;    // prompts with uses >= 1
    uint32_t pending; // prompts in open jobs
} tk_epoch_t;

struct tickets {
    tickets_config_t cfg;
    uint64_t version;              // the learner's current policy version
    uint64_t next_id;              // next ticket id
    uint64_t epoch_lo, epoch_next; // open epochs are [epoch_lo, epoch_next)
    tk_epoch_t *ep;                // (max_open_epochs) ring
    tk_job_t *jobs;                // (n_jobs) open jobs by increasing id
    size_t n_jobs, cap_jobs;
    tk_ticket_t *tks; // (n_tks) open tickets by increasing id
    size_t n_tks, cap_tks;
    tickets_epoch_t *hist; // (n_hist == epoch_lo) finished epochs; cap >= epoch_next
    size_t n_hist, cap_hist;
    tickets_counters_t c; // the kept counters; derived fields unused here
};

/* The counters kept in the table (and checkpoints), and those recounted. */
#define KEPT_COUNTERS(X)                                                                                               \
    X(tickets_issued)                                                                                                  \
    X(tickets_reissued)                                                                                                \
    X(tickets_completed)                                                                                               \
    X(tickets_superseded)                                                                                              \
    X(tickets_expired)                                                                                                 \
    X(duplicates_dropped)                                                                                              \
    X(stale_dropped)                                                                                                   \
    X(unknown_dropped)                                                                                                 \
    X(scores_issued)                                                                                                   \
    X(scores_reissued)                                                                                                 \
    X(scores_expired)                                                                                                  \
    X(prompts_completed)
#define DERIVED_COUNTERS(X)                                                                                            \
    X(tickets_open)                                                                                                    \
    X(jobs_open)                                                                                                       \
    X(prompts_pending)                                                                                                 \
    X(prompts_lost)                                                                                                    \
    X(prompts_reused)                                                                                                  \
    X(epochs_finished)                                                                                                 \
    X(epoch)                                                                                                           \
    X(epoch_prompts_done)

typedef struct {
    const char *name;
    size_t off;
} counter_field_t;

#define COUNTER_FIELD(f) {#f, offsetof(tickets_counters_t, f)},
static const counter_field_t kept_counters[] = {KEPT_COUNTERS(COUNTER_FIELD)};
static const counter_field_t derived_counters[] = {DERIVED_COUNTERS(COUNTER_FIELD)};
#undef COUNTER_FIELD
#define N_KEPT    (sizeof kept_counters / sizeof kept_counters[0])
#define N_DERIVED (sizeof derived_counters / sizeof derived_counters[0])

static uint64_t *counter_at(tickets_counters_t *c, const counter_field_t *f) {
    return (uint64_t *)((char *)c + f->off);
}
static uint64_t counter_get(const tickets_counters_t *c, const counter_field_t *f) {
    return *(const uint64_t *)((const char *)c + f->off);
}

/* ---- names ---- */

const char *tickets_state_name(int state) {
    switch (state) {
#define TICKETS__STATE_STR(name, code, str)                                                                            \
    case code: return str;
        TICKETS_STATE_MAP(TICKETS__STATE_STR)
#undef TICKETS__STATE_STR
    }
    return "unknown";
}

const char *tickets_verdict_name(int v) {
    static const char *const names[] = {
#define TICKETS__VERDICT_STR(name, str) str,
        TICKETS_VERDICT_MAP(TICKETS__VERDICT_STR)
#undef TICKETS__VERDICT_STR
    };
    if (v < 0 || (size_t)v >= sizeof names / sizeof names[0]) return "unknown";
    return names[v];
}

/* ---- configuration ---- */

void tickets_config_default(tickets_config_t *c) {
    memset(c, 0, sizeof *c);
    c->prompts_per_ticket = 8;
    c->k = 4;
    c->max_lag = 1;
    c->gen_timeout_ms = 30000;
    c->score_timeout_ms = 30000;
    c->max_open_epochs = 2;
    c->two_stage = true;
}

rlhf_err_t tickets_config_validate(const tickets_config_t *c, char *err, size_t errlen) {
    if (!c) return rlhf_seterr(err, errlen, RLHF_EINVAL, "tickets: no configuration given.");
    if (c->n_prompts == 0)
        return rlhf_seterr(err, errlen, RLHF_EINVAL, "tickets: n_prompts must be at least 1 (the dataset size).");
    if (c->n_prompts > TICKETS_MAX_PROMPTS)
        return rlhf_seterr(err, errlen, RLHF_ERANGE, "tickets: n_prompts %" PRIu32 " is above the limit %u.",
                           c->n_prompts, TICKETS_MAX_PROMPTS);
    if (c->prompts_per_ticket == 0 || c->prompts_per_ticket > PROTO_MAX_PROMPTS)
        return rlhf_seterr(err, errlen, c->prompts_per_ticket ? RLHF_ERANGE : RLHF_EINVAL,
                           "tickets: prompts_per_ticket %" PRIu32 " must be in 1..%u.", c->prompts_per_ticket,
                           PROTO_MAX_PROMPTS);
    if (c->k == 0 || c->k > PROTO_MAX_K)
        return rlhf_seterr(err, errlen, c->k ? RLHF_ERANGE : RLHF_EINVAL, "tickets: k %" PRIu32 " must be in 1..%u.",
                           c->k, PROTO_MAX_K);
    if ((uint64_t)c->prompts_per_ticket * c->k > PROTO_MAX_SAMPLES)
        return rlhf_seterr(err, errlen, RLHF_ERANGE,
                           "tickets: prompts_per_ticket * k = %" PRIu64 " is above %u samples per ticket; lower one.",
                           (uint64_t)c->prompts_per_ticket * c->k, PROTO_MAX_SAMPLES);
    if (c->gen_timeout_ms == 0 || c->gen_timeout_ms > PROTO_MAX_DEADLINE_MS)
        return rlhf_seterr(err, errlen, c->gen_timeout_ms ? RLHF_ERANGE : RLHF_EINVAL,
                           "tickets: gen_timeout_ms %" PRIu32 " must be in 1..%u.", c->gen_timeout_ms,
                           PROTO_MAX_DEADLINE_MS);
    if (c->two_stage && (c->score_timeout_ms == 0 || c->score_timeout_ms > PROTO_MAX_DEADLINE_MS))
        return rlhf_seterr(err, errlen, c->score_timeout_ms ? RLHF_ERANGE : RLHF_EINVAL,
                           "tickets: score_timeout_ms %" PRIu32 " must be in 1..%u.", c->score_timeout_ms,
                           PROTO_MAX_DEADLINE_MS);
    if (c->max_open_epochs == 0 || c->max_open_epochs > TICKETS_MAX_OPEN_EPOCHS)
        return rlhf_seterr(err, errlen, c->max_open_epochs ? RLHF_ERANGE : RLHF_EINVAL,
                           "tickets: max_open_epochs %" PRIu32 " must be in 1..%d.", c->max_open_epochs,
                           TICKETS_MAX_OPEN_EPOCHS);
    return RLHF_OK;
}

/* ---- small helpers ---- */

static rlhf_err_t reserve(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return RLHF_OK;
    size_t nc = *cap ? *cap : 16;
    while (nc < need) {
        if (nc > SIZE_MAX / 2 / elem) return RLHF_ENOMEM;
        nc *= 2;
    }
    void *q = realloc(*p, nc * elem);
    if (!q) return RLHF_ENOMEM;
    *p = q;
    *cap = nc;
    return RLHF_OK;
}

static int64_t add_ms(int64_t now_ms, uint32_t ms) {
    return now_ms > INT64_MAX - (int64_t)ms ? INT64_MAX : now_ms + (int64_t)ms;
}

static tk_epoch_t *slot(const tickets_t *t, uint64_t epoch) {
    return &t->ep[epoch % t->cfg.max_open_epochs];
}

/* Epoch e's order: Fisher-Yates driven by a generator seeded from (seed, e). */
static void epoch_order(uint32_t *perm, uint32_t n, uint64_t seed, uint64_t epoch) {
    rng_t r;
    rng_init(&r, rng_mix(seed ^ 0x7469636b65747321ull) ^ rng_mix(epoch)); // "tickets!"
    for (uint32_t i = 0; i < n; i++) perm[i] = i;
    for (uint32_t i = n - 1; i > 0; i--) {
        uint32_t j = rng_below(&r, i + 1);
        uint32_t x = perm[i];
        perm[i] = perm[j];
        perm[j] = x;
    }
}

static void epoch_open(tickets_t *t, uint64_t epoch) {
    tk_epoch_t *s = slot(t, epoch);
    epoch_order(s->perm, t->cfg.n_prompts, t->cfg.seed, epoch);
    memset(s->uses, 0, t->cfg.n_prompts);
    s->pos = s->done = s->pending = 0;
}

/* Same for every attempt at a prompt set, distinct between prompt sets. */
static uint64_t sample_seed(const tickets_t *t, uint64_t epoch, uint32_t first) {
    return rng_mix(rng_mix(t->cfg.seed ^ 0x73616d706c657321ull) ^ (rng_mix(epoch) + first)); // "samples!"
}

/* The oldest version whose results are still acceptable: max(V - L, 1), 0 while V is 0. */
static uint64_t min_version(const tickets_t *t) {
    uint64_t v = t->version, l = t->cfg.max_lag;
    if (v == 0) return 0;
    return v > l ? v - l : 1;
}

static bool is_stale(const tickets_t *t, uint64_t r) {
    return r > t->version || t->version - r > t->cfg.max_lag;
}

static size_t tk_find(const tickets_t *t, uint64_t id) {
    size_t lo = 0, hi = t->n_tks;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->tks[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < t->n_tks && t->tks[lo].id == id ? lo : NONE;
}

static size_t job_find(const tickets_t *t, uint64_t id) {
    size_t lo = 0, hi = t->n_jobs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->jobs[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < t->n_jobs && t->jobs[lo].id == id ? lo : NONE;
}

static void tk_remove(tickets_t *t, size_t i) {
    memmove(&t->tks[i], &t->tks[i + 1], (t->n_tks - i - 1) * sizeof *t->tks);
    t->n_tks--;
}

/* Append a ticket for job (capacity reserved by the caller). */
static tk_ticket_t *tk_push(tickets_t *t, uint64_t job, uint32_t attempt, int64_t now_ms) {
    tk_ticket_t *k = &t->tks[t->n_tks++];
    k->id = t->next_id++;
    k->job = job;
    k->min_version = min_version(t);
    k->deadline_ms = add_ms(now_ms, t->cfg.gen_timeout_ms);
    k->attempt = attempt;
    k->expired = false;
    return k;
}

static void fill(const tickets_t *t, const tk_job_t *j, const tk_ticket_t *k, tickets_ticket_t *out) {
    memset(out, 0, sizeof *out);
    out->id = k->id;
    out->job = j->id;
    out->attempt = k->attempt;
    out->epoch = j->epoch;
    out->first = j->first;
    out->prompts = slot(t, j->epoch)->perm + j->first;
    out->n_prompts = j->n;
    out->k = t->cfg.k;
    out->policy_version = k->min_version;
    out->seed = sample_seed(t, j->epoch, j->first);
    out->state = j->state;
    out->expired = k->expired;
    if (j->state == TICKETS_GENERATED || j->state == TICKETS_SCORING) out->rollout_version = j->rollout_version;
    if (j->state == TICKETS_SCORING) {
        out->attempt = j->score_attempts;
        out->deadline_ms = t->cfg.score_timeout_ms;
        out->deadline_at_ms = j->score_deadline_ms;
    } else {
        out->deadline_ms = t->cfg.gen_timeout_ms;
        out->deadline_at_ms = k->deadline_ms;
    }
}

/* A live generation attempt stops counting: expired or its actor is gone. */
static void attempt_expire(tickets_t *t, tk_job_t *j, tk_ticket_t *k) {
    k->expired = true;
    j->live--;
    t->c.tickets_expired++;
    if (j->live == 0 && j->state == TICKETS_GENERATING) j->state = TICKETS_QUEUED;
}

/* Drop every ticket of job but keep: their results can no longer win. */
static void supersede_others(tickets_t *t, uint64_t job, uint64_t keep) {
    size_t w = 0;
    for (size_t r = 0; r < t->n_tks; r++) {
        if (t->tks[r].job == job && t->tks[r].id != keep) {
            t->c.tickets_superseded++;
            continue;
        }
        t->tks[w++] = t->tks[r];
    }
    t->n_tks = w;
}

/* Close finished epochs in order, recording how each prompt was used. */
static void epochs_close(tickets_t *t) {
    uint32_t n = t->cfg.n_prompts;
    while (t->epoch_lo < t->epoch_next) {
        const tk_epoch_t *s = slot(t, t->epoch_lo);
        if (s->done < n) break;
        tickets_epoch_t h = {.epoch = t->epoch_lo, .prompts = n};
        for (uint32_t p = 0; p < n; p++) {
            if (s->uses[p] == 0)
                h.unused++;
            else if (s->uses[p] == 1)
                h.used_once++;
            else
                h.reused++;
        }
        t->hist[t->n_hist++] = h; // capacity reserved when the epoch opened
        t->epoch_lo++;
    }
}

/* The job's result is final: its prompts are used; the job leaves the table. */
static void job_done(tickets_t *t, size_t ji) {
    const tk_job_t *j = &t->jobs[ji];
    tk_epoch_t *s = slot(t, j->epoch);
    for (uint32_t i = j->first; i < j->first + j->n; i++) {
        uint32_t p = s->perm[i];
        if (s->uses[p] == 0) s->done++;
        if (s->uses[p] < UINT8_MAX) s->uses[p]++;
    }
    s->pending -= j->n;
    t->c.tickets_completed++;
    t->c.prompts_completed += j->n;
    memmove(&t->jobs[ji], &t->jobs[ji + 1], (t->n_jobs - ji - 1) * sizeof *t->jobs);
    t->n_jobs--;
    epochs_close(t);
}

/* ---- lifecycle ---- */

rlhf_err_t tickets_new(tickets_t **out, const tickets_config_t *cfg, char *err, size_t errlen) {
    if (!out) return rlhf_seterr(err, errlen, RLHF_EINVAL, "tickets: no output pointer.");
    *out = NULL;
    rlhf_err_t rc = tickets_config_validate(cfg, err, errlen);
    if (rc != RLHF_OK) return rc;
    tickets_t *t = calloc(1, sizeof *t);
    if (!t) goto nomem;
    t->cfg = *cfg;
    t->next_id = 1;
    t->ep = calloc(cfg->max_open_epochs, sizeof *t->ep);
    if (!t->ep) goto nomem;
    for (uint32_t i = 0; i < cfg->max_open_epochs; i++) {
        t->ep[i].perm = malloc((size_t)cfg->n_prompts * sizeof *t->ep[i].perm);
        t->ep[i].uses = calloc(cfg->n_prompts, 1);
        if (!t->ep[i].perm || !t->ep[i].uses) goto nomem;
    }
    if (reserve((void **)&t->hist, &t->cap_hist, 16, sizeof *t->hist) != RLHF_OK) goto nomem;
    *out = t;
    return RLHF_OK;
nomem:
    tickets_destroy(&t);
    return rlhf_seterr(err, errlen, RLHF_ENOMEM, "tickets: out of memory for %" PRIu32 " prompts.", cfg->n_prompts);
}

void tickets_destroy(tickets_t **p) {
    if (!p || !*p) return;
    tickets_t *t = *p;
    if (t->ep) {
        for (uint32_t i = 0; i < t->cfg.max_open_epochs; i++) {
            free(t->ep[i].perm);
            free(t->ep[i].uses);
        }
    }
    free(t->ep);
    free(t->jobs);
    free(t->tks);
    free(t->hist);
    free(t);
    *p = NULL;
}

const tickets_config_t *tickets_config(const tickets_t *t) {
    return &t->cfg;
}

rlhf_err_t tickets_set_policy_version(tickets_t *t, uint64_t v) {
    if (!t || v < t->version) return RLHF_EINVAL;
    if (v > TICKETS_MAX_VERSION) return RLHF_ERANGE;
    t->version = v;
    return RLHF_OK;
}

uint64_t tickets_policy_version(const tickets_t *t) {
    return t->version;
}

/* ---- tickets ---- */

rlhf_err_t tickets_issue(tickets_t *t, int64_t now_ms, tickets_ticket_t *out) {
    if (!t || !out) return RLHF_EINVAL;
    if (t->next_id >= TICKETS_MAX_VERSION) return RLHF_ERANGE;
    if (reserve((void **)&t->tks, &t->cap_tks, t->n_tks + 1, sizeof *t->tks) != RLHF_OK) return RLHF_ENOMEM;

    /* A queued job first (oldest first): its prompts were handed out before. */
    for (size_t i = 0; i < t->n_jobs; i++) {
        tk_job_t *j = &t->jobs[i];
        if (j->state != TICKETS_QUEUED) continue;
        j->attempts++;
        j->live++;
        j->state = TICKETS_GENERATING;
        t->c.tickets_issued++;
        t->c.tickets_reissued++;
        fill(t, j, tk_push(t, j->id, j->attempts, now_ms), out);
        return RLHF_OK;
    }

    /* Fresh prompts from the oldest open epoch that has some, or a new epoch. */
    uint64_t e = t->epoch_lo;
    while (e < t->epoch_next && slot(t, e)->pos == t->cfg.n_prompts) e++;
    if (reserve((void **)&t->jobs, &t->cap_jobs, t->n_jobs + 1, sizeof *t->jobs) != RLHF_OK) return RLHF_ENOMEM;
    if (e == t->epoch_next) {
        if (e - t->epoch_lo >= t->cfg.max_open_epochs) return RLHF_ENOTFOUND;
        if (t->cfg.max_epochs && e >= t->cfg.max_epochs) return RLHF_ENOTFOUND;
        if (reserve((void **)&t->hist, &t->cap_hist, e + 1, sizeof *t->hist) != RLHF_OK) return RLHF_ENOMEM;
        epoch_open(t, e);
        t->epoch_next++;
    }
    tk_epoch_t *s = slot(t, e);
    uint32_t n = t->cfg.n_prompts - s->pos;
    if (n > t->cfg.prompts_per_ticket) n = t->cfg.prompts_per_ticket;
    tk_job_t *j = &t->jobs[t->n_jobs++]; // its id is above every open job's: the array stays sorted
    *j = (tk_job_t){
        .id = t->next_id, .epoch = e, .first = s->pos, .n = n, .state = TICKETS_GENERATING, .attempts = 1, .live = 1};
    s->pos += n;
    s->pending += n;
    t->c.tickets_issued++;
    fill(t, j, tk_push(t, j->id, 1, now_ms), out);
    return RLHF_OK;
}

rlhf_err_t tickets_expire(tickets_t *t, int64_t now_ms, tickets_expired_t *out, size_t cap, size_t *n_expired) {
    if (!t) return RLHF_EINVAL;
    size_t n = 0;
    for (size_t i = 0; i < t->n_tks; i++) {
        tk_ticket_t *k = &t->tks[i];
        size_t ji = job_find(t, k->job);
        if (ji == NONE) continue; // impossible in a consistent table (tickets_check_invariants)
        tk_job_t *j = &t->jobs[ji];
        tickets_expired_t x = {.id = k->id, .job = j->id};
        if ((j->state == TICKETS_QUEUED || j->state == TICKETS_GENERATING) && !k->expired && now_ms >= k->deadline_ms) {
            attempt_expire(t, j, k);
            x.attempt = k->attempt;
            x.stage = TICKETS_STAGE_GENERATE;
        } else if (j->state == TICKETS_SCORING && k->id == j->winner && now_ms >= j->score_deadline_ms) {
            j->state = TICKETS_GENERATED; // the rollouts are still held: re-score them
            t->c.scores_expired++;
            x.attempt = j->score_attempts;
            x.stage = TICKETS_STAGE_SCORE;
        } else {
            continue;
        }
        if (out && n < cap) out[n] = x;
        n++;
    }
    if (n_expired) *n_expired = n;
    return RLHF_OK;
}

rlhf_err_t tickets_abandon(tickets_t *t, uint64_t id) {
    if (!t) return RLHF_EINVAL;
    size_t ki = tk_find(t, id);
    if (ki == NONE) return RLHF_ENOTFOUND;
    tk_ticket_t *k = &t->tks[ki];
    size_t ji = job_find(t, k->job);
    if (ji == NONE || k->expired) return RLHF_ENOTFOUND;
    tk_job_t *j = &t->jobs[ji];
    if (j->state != TICKETS_QUEUED && j->state != TICKETS_GENERATING) return RLHF_ENOTFOUND;
    attempt_expire(t, j, k);
    return RLHF_OK;
}

rlhf_err_t tickets_complete(tickets_t *t, uint64_t id, uint64_t rollout_version, tickets_verdict_t *verdict) {
    if (!t || !verdict) return RLHF_EINVAL;
    size_t ki = (id == 0 || id >= t->next_id) ? NONE : tk_find(t, id);
    size_t ji = ki == NONE ? NONE : job_find(t, t->tks[ki].job);
    if (id == 0 || id >= t->next_id || (ki != NONE && ji == NONE)) {
        t->c.unknown_dropped++;
        *verdict = TICKETS_UNKNOWN;
        return RLHF_OK;
    }
    if (ki == NONE) { // issued here and resolved since: its job has its result
        t->c.duplicates_dropped++;
        *verdict = TICKETS_DUPLICATE;
        return RLHF_OK;
    }
    tk_job_t *j = &t->jobs[ji];
    if (j->state == TICKETS_GENERATED || j->state == TICKETS_SCORING) { // the winner's rollouts, again
        t->c.duplicates_dropped++;
        *verdict = TICKETS_DUPLICATE;
        return RLHF_OK;
    }
    if (is_stale(t, rollout_version)) {
        bool live = !t->tks[ki].expired;
        tk_remove(t, ki);
        t->c.stale_dropped++;
        if (live) {
            j->live--;
            if (j->live == 0) j->state = TICKETS_QUEUED; // regenerate these prompts
        }
        *verdict = TICKETS_STALE;
        return RLHF_OK;
    }
    supersede_others(t, j->id, id);
    j->live = 0;
    if (t->cfg.two_stage) {
        j->state = TICKETS_GENERATED;
        j->winner = id;
        j->rollout_version = rollout_version;
        j->score_attempts = 0;
    } else {
        tk_remove(t, tk_find(t, id));
        job_done(t, ji);
    }
    *verdict = TICKETS_ACCEPTED;
    return RLHF_OK;
}

rlhf_err_t tickets_lookup(const tickets_t *t, uint64_t id, tickets_ticket_t *out) {
    if (!t || !out) return RLHF_EINVAL;
    size_t ki = tk_find(t, id);
    if (ki == NONE) return RLHF_ENOTFOUND;
    size_t ji = job_find(t, t->tks[ki].job);
    if (ji == NONE) return RLHF_ENOTFOUND;
    fill(t, &t->jobs[ji], &t->tks[ki], out);
    return RLHF_OK;
}

/* ---- scoring stage ---- */

rlhf_err_t tickets_score_issue(tickets_t *t, int64_t now_ms, tickets_ticket_t *out) {
    if (!t || !out) return RLHF_EINVAL;
    if (!t->cfg.two_stage) return RLHF_EUNSUPPORTED;
    for (size_t i = 0; i < t->n_jobs; i++) {
        tk_job_t *j = &t->jobs[i];
        if (j->state != TICKETS_GENERATED) continue;
        size_t ki = tk_find(t, j->winner);
        if (ki == NONE) continue; // impossible in a consistent table
        j->state = TICKETS_SCORING;
        j->score_deadline_ms = add_ms(now_ms, t->cfg.score_timeout_ms);
        j->score_attempts++;
        t->c.scores_issued++;
        if (j->score_attempts > 1) t->c.scores_reissued++;
        fill(t, j, &t->tks[ki], out);
        return RLHF_OK;
    }
    return RLHF_ENOTFOUND;
}

rlhf_err_t tickets_score_abandon(tickets_t *t, uint64_t id) {
    if (!t) return RLHF_EINVAL;
    if (!t->cfg.two_stage) return RLHF_EUNSUPPORTED;
    size_t ki = tk_find(t, id);
    size_t ji = ki == NONE ? NONE : job_find(t, t->tks[ki].job);
    if (ji == NONE || t->jobs[ji].state != TICKETS_SCORING || t->jobs[ji].winner != id) return RLHF_ENOTFOUND;
    t->jobs[ji].state = TICKETS_GENERATED;
    t->c.scores_expired++;
    return RLHF_OK;
}

rlhf_err_t tickets_scored(tickets_t *t, uint64_t id, tickets_verdict_t *verdict) {
    if (!t || !verdict) return RLHF_EINVAL;
    if (!t->cfg.two_stage) return RLHF_EUNSUPPORTED;
    size_t ki = (id == 0 || id >= t->next_id) ? NONE : tk_find(t, id);
    size_t ji = ki == NONE ? NONE : job_find(t, t->tks[ki].job);
    if (id == 0 || id >= t->next_id || (ki != NONE && ji == NONE)) {
        t->c.unknown_dropped++;
        *verdict = TICKETS_UNKNOWN;
        return RLHF_OK;
    }
    if (ki == NONE) { // scored before, or its job was done by another attempt
        t->c.duplicates_dropped++;
        *verdict = TICKETS_DUPLICATE;
        return RLHF_OK;
    }
    tk_job_t *j = &t->jobs[ji];
    if (j->state != TICKETS_GENERATED && j->state != TICKETS_SCORING) { // no rollouts held: nothing was scored
        t->c.unknown_dropped++;
        *verdict = TICKETS_UNKNOWN;
        return RLHF_OK;
    }
    tk_remove(t, ki); // the winner is resolved either way
    if (is_stale(t, j->rollout_version)) {
        t->c.stale_dropped++;
        j->state = TICKETS_QUEUED; // the held rollouts are useless now: regenerate
        j->winner = 0;
        j->rollout_version = 0;
        j->score_attempts = 0;
        *verdict = TICKETS_STALE;
        return RLHF_OK;
    }
    job_done(t, ji);
    *verdict = TICKETS_ACCEPTED;
    return RLHF_OK;
}

/* ---- counters ---- */

/* Recount lost and reused prompts from the use tables and the open jobs. */
static void prompt_scan(const tickets_t *t, uint64_t *lost, uint64_t *reused) {
    *lost = *reused = 0;
    for (size_t h = 0; h < t->n_hist; h++) {
        *lost += t->hist[h].unused;
        *reused += t->hist[h].reused;
    }
    for (uint64_t e = t->epoch_lo; e < t->epoch_next; e++) {
        const tk_epoch_t *s = slot(t, e);
        uint32_t i = 0;
        for (size_t ji = 0; ji < t->n_jobs; ji++) { // an epoch's jobs are in position order
            const tk_job_t *j = &t->jobs[ji];
            if (j->epoch != e) continue;
            for (; i < j->first && i < s->pos; i++) *lost += s->uses[s->perm[i]] == 0;
            if (j->first + j->n > i) i = j->first + j->n;
        }
        for (; i < s->pos; i++) *lost += s->uses[s->perm[i]] == 0;
        for (uint32_t p = 0; p < t->cfg.n_prompts; p++) *reused += s->uses[p] > 1;
    }
}

void tickets_counters(const tickets_t *t, tickets_counters_t *out) {
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < N_KEPT; i++) *counter_at(out, &kept_counters[i]) = counter_get(&t->c, &kept_counters[i]);
    out->tickets_open = t->n_tks;
    out->jobs_open = t->n_jobs;
    for (size_t i = 0; i < t->n_jobs; i++) out->prompts_pending += t->jobs[i].n;
    prompt_scan(t, &out->prompts_lost, &out->prompts_reused);
    out->epochs_finished = t->n_hist;
    out->epoch = t->epoch_lo;
    out->epoch_prompts_done = t->epoch_lo < t->epoch_next ? slot(t, t->epoch_lo)->done : 0;
}

uint64_t tickets_epochs_finished(const tickets_t *t) {
    return t->n_hist;
}

rlhf_err_t tickets_epoch_stats(const tickets_t *t, uint64_t i, tickets_epoch_t *out) {
    if (!t || !out) return RLHF_EINVAL;
    if (i >= t->n_hist) return RLHF_ERANGE;
    *out = t->hist[i];
    return RLHF_OK;
}

bool tickets_finished(const tickets_t *t) {
    return t->cfg.max_epochs && t->n_hist >= t->cfg.max_epochs;
}

/* JSON integers are int64; every value here is below TICKETS_MAX_VERSION. */
static json_t *jint(uint64_t x) {
    return json_integer((json_int_t)x);
}

static void put(json_t *o, const char *key, json_t *v, int *bad) {
    if (json_object_set_new(o, key, v) != 0) *bad = 1;
}

static void app(json_t *a, json_t *v, int *bad) {
    if (json_array_append_new(a, v) != 0) *bad = 1;
}

static json_t *epochs_json(const tickets_t *t) {
    json_t *a = json_array();
    int bad = !a;
    for (size_t i = 0; i < t->n_hist && !bad; i++) {
        const tickets_epoch_t *h = &t->hist[i];
        app(a,
            json_pack("{s:I, s:I, s:I, s:I, s:I}", "epoch", (json_int_t)h->epoch, "prompts", (json_int_t)h->prompts,
                      "used_once", (json_int_t)h->used_once, "unused", (json_int_t)h->unused, "reused",
                      (json_int_t)h->reused),
            &bad);
    }
    if (bad) json_decref(a);
    return bad ? NULL : a;
}

rlhf_err_t tickets_counters_json(const tickets_t *t, json_t **out) {
    if (!t || !out) return RLHF_EINVAL;
    tickets_counters_t c;
    tickets_counters(t, &c);
    json_t *o = json_object();
    int bad = !o;
    for (size_t i = 0; i < N_KEPT; i++) put(o, kept_counters[i].name, jint(counter_get(&c, &kept_counters[i])), &bad);
    for (size_t i = 0; i < N_DERIVED; i++)
        put(o, derived_counters[i].name, jint(counter_get(&c, &derived_counters[i])), &bad);
    put(o, "epochs", epochs_json(t), &bad);
    if (bad) {
        json_decref(o);
        *out = NULL;
        return RLHF_ENOMEM;
    }
    *out = o;
    return RLHF_OK;
}

/* ---- invariants ---- */

#define BAD(...) rlhf_seterr(err, errlen, RLHF_EMISMATCH, __VA_ARGS__)

/* Per open job: how many of its tickets are in the table, and how many live. */
typedef struct {
    uint32_t total, live, winner;
} job_tally_t;

static rlhf_err_t check_jobs(const tickets_t *t, const job_tally_t *tally, uint64_t *pending, char *err,
                             size_t errlen) {
    uint32_t end[TICKETS_MAX_OPEN_EPOCHS] = {0}; // per open epoch: end of the previous job's range
    for (size_t i = 0; i < t->n_jobs; i++) {
        const tk_job_t *j = &t->jobs[i];
        const job_tally_t *y = &tally[i];
        if (j->id == 0 || j->id >= t->next_id) return BAD("job %" PRIu64 " was never issued", j->id);
        if (i && j->id <= t->jobs[i - 1].id) return BAD("jobs are not sorted at job %" PRIu64, j->id);
        if (j->epoch < t->epoch_lo || j->epoch >= t->epoch_next)
            return BAD("job %" PRIu64 " is in epoch %" PRIu64 ", which is not open", j->id, j->epoch);
        uint64_t ei = j->epoch - t->epoch_lo;
        const tk_epoch_t *s = slot(t, j->epoch);
        if (j->n == 0 || j->first < end[ei] || (uint64_t)j->first + j->n > s->pos)
            return BAD("job %" PRIu64 ": positions [%" PRIu32 ", %" PRIu64 ") of epoch %" PRIu64
                       " overlap another job or were not handed out",
                       j->id, j->first, (uint64_t)j->first + j->n, j->epoch);
        end[ei] = j->first + j->n;
        pending[ei] += j->n;
        if (j->attempts == 0) return BAD("job %" PRIu64 " has no attempt", j->id);
        switch (j->state) {
        case TICKETS_QUEUED:
        case TICKETS_GENERATING:
            if (j->live != y->live)
                return BAD("job %" PRIu64 " counts %" PRIu32 " live attempts, the table holds %" PRIu32, j->id, j->live,
                           y->live);
            if ((j->state == TICKETS_GENERATING) != (j->live > 0))
                return BAD("job %" PRIu64 " is %s with %" PRIu32 " live attempts", j->id, tickets_state_name(j->state),
                           j->live);
            break;
        case TICKETS_GENERATED:
        case TICKETS_SCORING:
            if (!t->cfg.two_stage)
                return BAD("job %" PRIu64 " is %s in a single-stage table", j->id, tickets_state_name(j->state));
            if (y->total != 1 || y->winner != 1 || j->live != 0)
                return BAD("job %" PRIu64 " is %s but holds %" PRIu32 " tickets (winner %" PRIu64 " present: %s)",
                           j->id, tickets_state_name(j->state), y->total, j->winner, y->winner ? "yes" : "no");
            if (j->rollout_version > t->version)
                return BAD("job %" PRIu64 " holds rollouts of version %" PRIu64 ", newer than the policy %" PRIu64,
                           j->id, j->rollout_version, t->version);
            if (j->state == TICKETS_SCORING && j->score_attempts == 0)
                return BAD("job %" PRIu64 " is scoring without a scoring attempt", j->id);
            break;
        default: return BAD("job %" PRIu64 " has an invalid state %d", j->id, (int)j->state);
        }
    }
    return RLHF_OK;
}

static rlhf_err_t check_epochs(const tickets_t *t, const uint64_t *pending, uint8_t *seen, char *err, size_t errlen) {
    uint32_t n = t->cfg.n_prompts;
    uint64_t done_sum = 0;
    for (uint64_t e = t->epoch_lo; e < t->epoch_next; e++) {
        const tk_epoch_t *s = slot(t, e);
        if (s->pos > n) return BAD("epoch %" PRIu64 " handed out %" PRIu32 " of %" PRIu32 " prompts", e, s->pos, n);
        memset(seen, 0, n);
        for (uint32_t i = 0; i < n; i++) {
            if (s->perm[i] >= n || seen[s->perm[i]])
                return BAD("epoch %" PRIu64 ": the order is not a permutation (position %" PRIu32 ")", e, i);
            seen[s->perm[i]] = 1;
        }
        if (s->pending != pending[e - t->epoch_lo])
            return BAD("epoch %" PRIu64 " counts %" PRIu32 " pending prompts, its open jobs hold %" PRIu64, e,
                       s->pending, pending[e - t->epoch_lo]);
        /* Position by position: pending (in an open job) -> unused; handed out
         * and not pending -> used exactly once; not handed out -> unused. */
        uint32_t i = 0, done = 0;
        for (size_t ji = 0; ji <= t->n_jobs; ji++) {
            const tk_job_t *j = ji < t->n_jobs ? &t->jobs[ji] : NULL;
            if (j && j->epoch != e) continue;
            uint32_t stop = j ? j->first : s->pos;
            for (; i < stop; i++) {
                uint8_t u = s->uses[s->perm[i]];
                if (u == 0)
                    return BAD("epoch %" PRIu64 ": prompt %" PRIu32 " (position %" PRIu32
                               ") was handed out, is in no open job and was never used: lost",
                               e, s->perm[i], i);
                if (u > 1)
                    return BAD("epoch %" PRIu64 ": prompt %" PRIu32 " was used %u times", e, s->perm[i], (unsigned)u);
                done++;
            }
            if (!j) break;
            for (; i < j->first + j->n; i++)
                if (s->uses[s->perm[i]] != 0)
                    return BAD("epoch %" PRIu64 ": prompt %" PRIu32 " is pending in job %" PRIu64
                               " but was already used",
                               e, s->perm[i], j->id);
        }
        for (; i < n; i++)
            if (s->uses[s->perm[i]] != 0)
                return BAD("epoch %" PRIu64 ": prompt %" PRIu32 " was used before it was handed out", e, s->perm[i]);
        if (s->done != done || (uint64_t)s->done + s->pending != s->pos)
            return BAD("epoch %" PRIu64 ": done %" PRIu32 " (counted %" PRIu32 ") + pending %" PRIu32
                       " != handed out %" PRIu32,
                       e, s->done, done, s->pending, s->pos);
        if (e == t->epoch_lo && done == n) return BAD("epoch %" PRIu64 " is complete but was not closed", e);
        done_sum += done;
    }
    for (size_t h = 0; h < t->n_hist; h++) {
        const tickets_epoch_t *r = &t->hist[h];
        if (r->epoch != h || r->prompts != n)
            return BAD("finished epoch record %zu is for epoch %" PRIu64 " with %" PRIu32 " prompts", h, r->epoch,
                       r->prompts);
        if (r->used_once != n || r->unused || r->reused)
            return BAD("epoch %" PRIu64 ": %" PRIu32 " of %" PRIu32 " prompts used exactly once (%" PRIu32
                       " never, %" PRIu32 " more than once)",
                       r->epoch, r->used_once, n, r->unused, r->reused);
    }
    const tickets_counters_t *c = &t->c;
    if (c->prompts_completed != (uint64_t)n * t->n_hist + done_sum)
        return BAD("prompts_completed %" PRIu64 " != %" PRIu32 " x %zu finished epochs + %" PRIu64
                   " done in open epochs",
                   c->prompts_completed, n, t->n_hist, done_sum);
    return RLHF_OK;
}

rlhf_err_t tickets_check_invariants(const tickets_t *t, char *err, size_t errlen) {
    if (!t) return rlhf_seterr(err, errlen, RLHF_EINVAL, "tickets: no table.");
    const tickets_counters_t *c = &t->c;
    if (t->next_id == 0) return BAD("next ticket id is 0");
    if (t->epoch_lo > t->epoch_next || t->epoch_next - t->epoch_lo > t->cfg.max_open_epochs)
        return BAD("open epochs [%" PRIu64 ", %" PRIu64 ") do not fit the window of %" PRIu32, t->epoch_lo,
                   t->epoch_next, t->cfg.max_open_epochs);
    if (t->n_hist != t->epoch_lo || t->cap_hist < t->epoch_next)
        return BAD("%zu finished epoch records for %" PRIu64 " finished epochs", t->n_hist, t->epoch_lo);

    /* ticket fates */
    if (c->tickets_issued != c->tickets_completed + c->stale_dropped + c->tickets_superseded + t->n_tks)
        return BAD("tickets_issued %" PRIu64 " != completed %" PRIu64 " + stale %" PRIu64 " + superseded %" PRIu64
                   " + open %zu",
                   c->tickets_issued, c->tickets_completed, c->stale_dropped, c->tickets_superseded, t->n_tks);
    if (c->tickets_reissued > c->tickets_issued ||
        c->tickets_issued - c->tickets_reissued != c->tickets_completed + t->n_jobs)
        return BAD("tickets_issued %" PRIu64 " - reissued %" PRIu64 " != completed %" PRIu64 " + open jobs %zu",
                   c->tickets_issued, c->tickets_reissued, c->tickets_completed, t->n_jobs);
    if (c->tickets_reissued > c->tickets_expired + c->stale_dropped)
        return BAD("tickets_reissued %" PRIu64 " > expired %" PRIu64 " + stale %" PRIu64, c->tickets_reissued,
                   c->tickets_expired, c->stale_dropped);
    if (c->scores_reissued > c->scores_issued || c->scores_reissued > c->scores_expired)
        return BAD("scores_reissued %" PRIu64 " exceeds scores_issued %" PRIu64 " or scores_expired %" PRIu64,
                   c->scores_reissued, c->scores_issued, c->scores_expired);

    rlhf_err_t rc = RLHF_OK;
    job_tally_t *tally = calloc(t->n_jobs ? t->n_jobs : 1, sizeof *tally);
    uint8_t *seen = malloc(t->cfg.n_prompts);
    if (!tally || !seen) {
        rc = rlhf_seterr(err, errlen, RLHF_ENOMEM, "tickets: out of memory checking invariants.");
        goto out;
    }
    for (size_t i = 0; i < t->n_tks; i++) {
        const tk_ticket_t *k = &t->tks[i];
        if (k->id == 0 || k->id >= t->next_id) {
            rc = BAD("ticket %" PRIu64 " is not below the next id %" PRIu64, k->id, t->next_id);
            goto out;
        }
        if (i && k->id <= t->tks[i - 1].id) {
            rc = BAD("tickets are not sorted at ticket %" PRIu64, k->id);
            goto out;
        }
        size_t ji = job_find(t, k->job);
        if (ji == NONE) {
            rc = BAD("ticket %" PRIu64 " belongs to job %" PRIu64 ", which is not open", k->id, k->job);
            goto out;
        }
        const tk_job_t *j = &t->jobs[ji];
        if (k->id < j->id || k->attempt == 0 || k->attempt > j->attempts || k->min_version > t->version) {
            rc = BAD("ticket %" PRIu64 " (attempt %" PRIu32 ", version %" PRIu64 ") does not fit job %" PRIu64
                     " (%" PRIu32 " attempts, policy %" PRIu64 ")",
                     k->id, k->attempt, k->min_version, j->id, j->attempts, t->version);
            goto out;
        }
        tally[ji].total++;
        tally[ji].live += !k->expired;
        tally[ji].winner += k->id == j->winner;
    }
    uint64_t pending[TICKETS_MAX_OPEN_EPOCHS] = {0};
    rc = check_jobs(t, tally, pending, err, errlen);
    if (rc == RLHF_OK) rc = check_epochs(t, pending, seen, err, errlen);
out:
    free(tally);
    free(seen);
    return rc;
}

#undef BAD

/* ---- checkpoints ---- */

rlhf_err_t tickets_save(const tickets_t *t, int64_t now_ms, json_t **out) {
    if (!t || !out) return RLHF_EINVAL;
    *out = NULL;
    json_t *root = json_object();
    int bad = !root;
    char seed[24];
    snprintf(seed, sizeof seed, "0x%016" PRIx64, t->cfg.seed);
    put(root, "format", json_string(TICKETS_STATE_FORMAT), &bad);
    put(root, "n_prompts", jint(t->cfg.n_prompts), &bad);
    put(root, "seed", json_string(seed), &bad);
    put(root, "max_open_epochs", jint(t->cfg.max_open_epochs), &bad);
    put(root, "two_stage", json_boolean(t->cfg.two_stage), &bad);
    put(root, "saved_at_ms", json_integer(now_ms), &bad);
    put(root, "policy_version", jint(t->version), &bad);
    put(root, "next_id", jint(t->next_id), &bad);
    put(root, "epoch_lo", jint(t->epoch_lo), &bad);
    put(root, "epoch_next", jint(t->epoch_next), &bad);

    json_t *a = json_array();
    for (uint64_t e = t->epoch_lo; a && e < t->epoch_next; e++)
        app(a, json_pack("{s:I, s:I}", "epoch", (json_int_t)e, "pos", (json_int_t)slot(t, e)->pos), &bad);
    put(root, "open_epochs", a, &bad);

    a = json_array();
    for (size_t i = 0; a && i < t->n_jobs; i++) {
        const tk_job_t *j = &t->jobs[i];
        app(a,
            json_pack("{s:I, s:I, s:I, s:I, s:s, s:I, s:I, s:I, s:I, s:I}", "id", (json_int_t)j->id, "epoch",
                      (json_int_t)j->epoch, "first", (json_int_t)j->first, "n", (json_int_t)j->n, "state",
                      tickets_state_name(j->state), "attempts", (json_int_t)j->attempts, "winner",
                      (json_int_t)j->winner, "rollout_version", (json_int_t)j->rollout_version, "score_deadline_ms",
                      (json_int_t)j->score_deadline_ms, "score_attempts", (json_int_t)j->score_attempts),
            &bad);
    }
    put(root, "jobs", a, &bad);

    a = json_array();
    for (size_t i = 0; a && i < t->n_tks; i++) {
        const tk_ticket_t *k = &t->tks[i];
        app(a,
            json_pack("{s:I, s:I, s:I, s:I, s:I, s:b}", "id", (json_int_t)k->id, "job", (json_int_t)k->job, "attempt",
                      (json_int_t)k->attempt, "policy_version", (json_int_t)k->min_version, "deadline_ms",
                      (json_int_t)k->deadline_ms, "expired", (int)k->expired),
            &bad);
    }
    put(root, "tickets", a, &bad);

    put(root, "finished_epochs", epochs_json(t), &bad);

    json_t *cs = json_object();
    for (size_t i = 0; cs && i < N_KEPT; i++)
        put(cs, kept_counters[i].name, jint(counter_get(&t->c, &kept_counters[i])), &bad);
    put(root, "counters", cs, &bad);

    if (bad) {
        json_decref(root);
        return RLHF_ENOMEM;
    }
    *out = root;
    return RLHF_OK;
}

/* -- reading the saved JSON: every error names the key -- */

typedef struct {
    char *err;
    size_t errlen;
    char where[64]; // "jobs[3]." or ""
} rd_t;

static rlhf_err_t rd_get(rd_t *r, const json_t *o, const char *key, json_type type, const char *what, json_t **out) {
    json_t *v = json_object_get(o, key);
    if (!v) return rlhf_seterr(r->err, r->errlen, RLHF_EFORMAT, "tickets state: '%s%s' is missing.", r->where, key);
    bool ok = json_typeof(v) == type || (type == JSON_TRUE && json_is_boolean(v));
    if (!ok)
        return rlhf_seterr(r->err, r->errlen, RLHF_EFORMAT, "tickets state: '%s%s' must be %s (got %s).", r->where, key,
                           what, common__json_kind(v));
    *out = v;
    return RLHF_OK;
}

static rlhf_err_t rd_u64(rd_t *r, const json_t *o, const char *key, uint64_t max, uint64_t *out) {
    json_t *v = NULL;
    rlhf_err_t rc = rd_get(r, o, key, JSON_INTEGER, "an integer", &v);
    if (rc != RLHF_OK) return rc;
    json_int_t x = json_integer_value(v);
    if (x < 0 || (uint64_t)x > max)
        return rlhf_seterr(r->err, r->errlen, RLHF_ERANGE,
                           "tickets state: '%s%s' = %" PRId64 " is out of range 0..%" PRIu64 ".", r->where, key,
                           (int64_t)x, max);
    *out = (uint64_t)x;
    return RLHF_OK;
}

static rlhf_err_t rd_u32(rd_t *r, const json_t *o, const char *key, uint32_t *out) {
    uint64_t x = 0;
    rlhf_err_t rc = rd_u64(r, o, key, UINT32_MAX, &x);
    if (rc == RLHF_OK) *out = (uint32_t)x;
    return rc;
}

static rlhf_err_t rd_i64(rd_t *r, const json_t *o, const char *key, int64_t *out) {
    json_t *v = NULL;
    rlhf_err_t rc = rd_get(r, o, key, JSON_INTEGER, "an integer", &v);
    if (rc == RLHF_OK) *out = (int64_t)json_integer_value(v);
    return rc;
}

static rlhf_err_t rd_bool(rd_t *r, const json_t *o, const char *key, bool *out) {
    json_t *v = NULL;
    rlhf_err_t rc = rd_get(r, o, key, JSON_TRUE, "a boolean", &v);
    if (rc == RLHF_OK) *out = json_is_true(v);
    return rc;
}

static rlhf_err_t rd_array(rd_t *r, const json_t *o, const char *key, size_t want, json_t **out) {
    rlhf_err_t rc = rd_get(r, o, key, JSON_ARRAY, "an array", out);
    if (rc == RLHF_OK && want != NONE && json_array_size(*out) != want)
        return rlhf_seterr(r->err, r->errlen, RLHF_EFORMAT, "tickets state: '%s%s' has %zu entries, expected %zu.",
                           r->where, key, json_array_size(*out), want);
    return rc;
}

/* Element i of array key, which must be an object; sets r->where for its fields. */
static rlhf_err_t rd_elem(rd_t *r, const json_t *a, const char *key, size_t i, json_t **out) {
    json_t *v = json_array_get(a, i);
    snprintf(r->where, sizeof r->where, "%s[%zu].", key, i);
    if (!json_is_object(v))
        return rlhf_seterr(r->err, r->errlen, RLHF_EFORMAT, "tickets state: '%s[%zu]' must be an object (got %s).", key,
                           i, common__json_kind(v));
    *out = v;
    return RLHF_OK;
}

static rlhf_err_t identity_matches(rd_t *r, const json_t *j, const tickets_config_t *cfg) {
    json_t *v = NULL;
    rlhf_err_t rc = rd_get(r, j, "format", JSON_STRING, "a string", &v);
    if (rc != RLHF_OK) return rc;
    if (strcmp(json_string_value(v), TICKETS_STATE_FORMAT) != 0)
        return rlhf_seterr(r->err, r->errlen, RLHF_EFORMAT, "tickets state: format '%s' is not '%s'.",
                           json_string_value(v), TICKETS_STATE_FORMAT);
    uint64_t n = 0, w = 0;
    bool two = false;
    if ((rc = rd_u64(r, j, "n_prompts", TICKETS_MAX_PROMPTS, &n)) != RLHF_OK) return rc;
    if ((rc = rd_u64(r, j, "max_open_epochs", TICKETS_MAX_OPEN_EPOCHS, &w)) != RLHF_OK) return rc;
    if ((rc = rd_bool(r, j, "two_stage", &two)) != RLHF_OK) return rc;
    if ((rc = rd_get(r, j, "seed", JSON_STRING, "a hex string", &v)) != RLHF_OK) return rc;
    const char *s = json_string_value(v);
    char *end = NULL;
    uint64_t seed = strncmp(s, "0x", 2) == 0 ? strtoull(s + 2, &end, 16) : 0;
    if (!end || end == s + 2 || *end != '\0')
        return rlhf_seterr(r->err, r->errlen, RLHF_EFORMAT, "tickets state: 'seed' '%s' is not 0x and hex digits.", s);
    if (n != cfg->n_prompts)
        return rlhf_seterr(r->err, r->errlen, RLHF_EMISMATCH,
                           "tickets state: saved with n_prompts %" PRIu64 ", the config has %" PRIu32
                           " (resume with the same dataset).",
                           n, cfg->n_prompts);
    if (seed != cfg->seed)
        return rlhf_seterr(r->err, r->errlen, RLHF_EMISMATCH,
                           "tickets state: saved with seed %s, the config has 0x%016" PRIx64
                           " (the epoch orders would differ).",
                           s, cfg->seed);
    if (w != cfg->max_open_epochs)
        return rlhf_seterr(r->err, r->errlen, RLHF_EMISMATCH,
                           "tickets state: saved with max_open_epochs %" PRIu64 ", the config has %" PRIu32 ".", w,
                           cfg->max_open_epochs);
    if (two != cfg->two_stage)
        return rlhf_seterr(r->err, r->errlen, RLHF_EMISMATCH,
                           "tickets state: saved with two_stage %s, the config has %s.", two ? "true" : "false",
                           cfg->two_stage ? "true" : "false");
    return RLHF_OK;
}

static rlhf_err_t load_jobs(rd_t *r, tickets_t *t, const json_t *a) {
    rlhf_err_t rc;
    size_t n = json_array_size(a);
    if (reserve((void **)&t->jobs, &t->cap_jobs, n, sizeof *t->jobs) != RLHF_OK) return RLHF_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        json_t *o = NULL, *st = NULL;
        tk_job_t j = {0};
        uint64_t score_attempts = 0, attempts = 0;
        if ((rc = rd_elem(r, a, "jobs", i, &o)) != RLHF_OK) return rc;
        if ((rc = rd_u64(r, o, "id", t->next_id - 1, &j.id)) != RLHF_OK) return rc;
        if ((rc = rd_u64(r, o, "epoch", TICKETS_MAX_VERSION, &j.epoch)) != RLHF_OK) return rc;
        if ((rc = rd_u32(r, o, "first", &j.first)) != RLHF_OK) return rc;
        if ((rc = rd_u32(r, o, "n", &j.n)) != RLHF_OK) return rc;
        if ((rc = rd_u64(r, o, "attempts", UINT32_MAX, &attempts)) != RLHF_OK) return rc;
        if ((rc = rd_u64(r, o, "winner", t->next_id - 1, &j.winner)) != RLHF_OK) return rc;
        if ((rc = rd_u64(r, o, "rollout_version", TICKETS_MAX_VERSION, &j.rollout_version)) != RLHF_OK) return rc;
        if ((rc = rd_i64(r, o, "score_deadline_ms", &j.score_deadline_ms)) != RLHF_OK) return rc;
        if ((rc = rd_u64(r, o, "score_attempts", UINT32_MAX, &score_attempts)) != RLHF_OK) return rc;
        if ((rc = rd_get(r, o, "state", JSON_STRING, "a string", &st)) != RLHF_OK) return rc;
        j.attempts = (uint32_t)attempts;
        j.score_attempts = (uint32_t)score_attempts;
        j.state = 0;
        for (int s = TICKETS_QUEUED; s <= TICKETS_SCORING; s++)
            if (strcmp(json_string_value(st), tickets_state_name(s)) == 0) j.state = (tickets_state_t)s;
        if (j.state == 0)
            return rlhf_seterr(r->err, r->errlen, RLHF_EFORMAT, "tickets state: '%sstate' '%s' is no job state.",
                               r->where, json_string_value(st));
        if (j.epoch < t->epoch_lo || j.epoch >= t->epoch_next || j.n == 0 ||
            (uint64_t)j.first + j.n > slot(t, j.epoch)->pos)
            return rlhf_seterr(r->err, r->errlen, RLHF_ERANGE,
                               "tickets state: '%sepoch', 'first', 'n': positions [%" PRIu32 ", %" PRIu64
                               ") of epoch %" PRIu64 " were not handed out in an open epoch.",
                               r->where, j.first, (uint64_t)j.first + j.n, j.epoch);
        if (i && j.id <= t->jobs[i - 1].id)
            return rlhf_seterr(r->err, r->errlen, RLHF_EFORMAT, "tickets state: 'jobs' are not sorted by id at %zu.",
                               i);
        t->jobs[t->n_jobs++] = j;
    }
    return RLHF_OK;
}

static rlhf_err_t load_tickets(rd_t *r, tickets_t *t, const json_t *a, int64_t shift) {
    rlhf_err_t rc;
    size_t n = json_array_size(a);
    if (reserve((void **)&t->tks, &t->cap_tks, n, sizeof *t->tks) != RLHF_OK) return RLHF_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        json_t *o = NULL;
        tk_ticket_t k = {0};
        uint64_t attempt = 0;
        if ((rc = rd_elem(r, a, "tickets", i, &o)) != RLHF_OK) return rc;
        if ((rc = rd_u64(r, o, "id", t->next_id - 1, &k.id)) != RLHF_OK) return rc;
        if ((rc = rd_u64(r, o, "job", t->next_id - 1, &k.job)) != RLHF_OK) return rc;
        if ((rc = rd_u64(r, o, "attempt", UINT32_MAX, &attempt)) != RLHF_OK) return rc;
        if ((rc = rd_u64(r, o, "policy_version", t->version, &k.min_version)) != RLHF_OK) return rc;
        if ((rc = rd_i64(r, o, "deadline_ms", &k.deadline_ms)) != RLHF_OK) return rc;
        if ((rc = rd_bool(r, o, "expired", &k.expired)) != RLHF_OK) return rc;
        k.attempt = (uint32_t)attempt;
        k.deadline_ms += shift;
        if (i && k.id <= t->tks[i - 1].id)
            return rlhf_seterr(r->err, r->errlen, RLHF_EFORMAT, "tickets state: 'tickets' are not sorted by id at %zu.",
                               i);
        size_t ji = job_find(t, k.job);
        if (ji == NONE)
            return rlhf_seterr(r->err, r->errlen, RLHF_EFORMAT,
                               "tickets state: '%sjob' %" PRIu64 " is not an open job.", r->where, k.job);
        tk_job_t *j = &t->jobs[ji];
        if ((j->state == TICKETS_QUEUED || j->state == TICKETS_GENERATING) && !k.expired) j->live++;
        t->tks[t->n_tks++] = k;
    }
    return RLHF_OK;
}

/* Rebuild each open epoch's order and use table: handed-out positions are
 * used once unless an open job holds them. */
static void rebuild_uses(tickets_t *t) {
    for (uint64_t e = t->epoch_lo; e < t->epoch_next; e++) {
        tk_epoch_t *s = slot(t, e);
        uint32_t pos = s->pos;
        epoch_open(t, e);
        s->pos = pos;
        for (uint32_t i = 0; i < pos; i++) s->uses[s->perm[i]] = 1;
        for (size_t ji = 0; ji < t->n_jobs; ji++) {
            const tk_job_t *j = &t->jobs[ji];
            if (j->epoch != e) continue;
            for (uint32_t i = j->first; i < j->first + j->n; i++) s->uses[s->perm[i]] = 0;
            s->pending += j->n;
        }
        for (uint32_t p = 0; p < t->cfg.n_prompts; p++) s->done += s->uses[p] != 0;
    }
}

/* The old process is gone: fresh ids, open attempts expired, held rollouts lost. */
static rlhf_err_t restart(tickets_t *t) {
    uint64_t next = (t->next_id / TICKETS_ID_BLOCK + 1) * TICKETS_ID_BLOCK;
    if (next >= TICKETS_MAX_VERSION) return RLHF_ERANGE;
    t->next_id = next;
    for (size_t i = 0; i < t->n_tks; i++) {
        tk_ticket_t *k = &t->tks[i];
        tk_job_t *j = &t->jobs[job_find(t, k->job)];
        if (j->state == TICKETS_GENERATED || j->state == TICKETS_SCORING) {
            j->state = TICKETS_QUEUED; // k is its winner and only ticket: now an expired attempt
            j->winner = 0;
            j->rollout_version = 0;
            j->score_attempts = 0;
            k->expired = true;
            t->c.tickets_expired++;
        } else if (!k->expired) {
            attempt_expire(t, j, k);
        }
    }
    return RLHF_OK;
}

rlhf_err_t tickets_load(tickets_t **out, const tickets_config_t *cfg, const json_t *j, int64_t now_ms, unsigned flags,
                        char *err, size_t errlen) {
    if (!out) return rlhf_seterr(err, errlen, RLHF_EINVAL, "tickets: no output pointer.");
    *out = NULL;
    if (!cfg || !j) return rlhf_seterr(err, errlen, RLHF_EINVAL, "tickets: no config or state to load.");
    if (!json_is_object(j))
        return rlhf_seterr(err, errlen, RLHF_EFORMAT, "tickets state: must be a JSON object (got %s).",
                           common__json_kind(j));
    rd_t r = {.err = err, .errlen = errlen};
    tickets_t *t = NULL;
    json_t *a = NULL, *o = NULL;
    int64_t saved_at = 0;
    uint64_t x = 0;
    rlhf_err_t rc = identity_matches(&r, j, cfg);
    if (rc != RLHF_OK) return rc;
    if ((rc = tickets_new(&t, cfg, err, errlen)) != RLHF_OK) return rc;

    if ((rc = rd_i64(&r, j, "saved_at_ms", &saved_at)) != RLHF_OK) goto fail;
    if ((rc = rd_u64(&r, j, "policy_version", TICKETS_MAX_VERSION, &t->version)) != RLHF_OK) goto fail;
    if ((rc = rd_u64(&r, j, "next_id", TICKETS_MAX_VERSION - 1, &t->next_id)) != RLHF_OK) goto fail;
    if (t->next_id == 0) {
        rc = rlhf_seterr(err, errlen, RLHF_ERANGE, "tickets state: 'next_id' must be at least 1.");
        goto fail;
    }
    if ((rc = rd_u64(&r, j, "epoch_lo", TICKETS_MAX_VERSION, &t->epoch_lo)) != RLHF_OK) goto fail;
    if ((rc = rd_u64(&r, j, "epoch_next", TICKETS_MAX_VERSION, &t->epoch_next)) != RLHF_OK) goto fail;
    if (t->epoch_next < t->epoch_lo || t->epoch_next - t->epoch_lo > cfg->max_open_epochs) {
        rc =
            rlhf_seterr(err, errlen, RLHF_ERANGE,
                        "tickets state: open epochs [%" PRIu64 ", %" PRIu64 ") do not fit max_open_epochs %" PRIu32 ".",
                        t->epoch_lo, t->epoch_next, cfg->max_open_epochs);
        goto fail;
    }
    if (reserve((void **)&t->hist, &t->cap_hist, t->epoch_next + 1, sizeof *t->hist) != RLHF_OK) goto nomem;

    if ((rc = rd_array(&r, j, "open_epochs", t->epoch_next - t->epoch_lo, &a)) != RLHF_OK) goto fail;
    for (size_t i = 0; i < json_array_size(a); i++) {
        if ((rc = rd_elem(&r, a, "open_epochs", i, &o)) != RLHF_OK) goto fail;
        if ((rc = rd_u64(&r, o, "epoch", TICKETS_MAX_VERSION, &x)) != RLHF_OK) goto fail;
        if (x != t->epoch_lo + i) {
            rc = rlhf_seterr(err, errlen, RLHF_EFORMAT,
                             "tickets state: 'open_epochs[%zu].epoch' is %" PRIu64 ", expected %" PRIu64 ".", i, x,
                             t->epoch_lo + i);
            goto fail;
        }
        if ((rc = rd_u64(&r, o, "pos", cfg->n_prompts, &x)) != RLHF_OK) goto fail;
        slot(t, t->epoch_lo + i)->pos = (uint32_t)x;
    }
    r.where[0] = '\0';

    if ((rc = rd_array(&r, j, "finished_epochs", t->epoch_lo, &a)) != RLHF_OK) goto fail;
    for (size_t i = 0; i < json_array_size(a); i++) {
        tickets_epoch_t *h = &t->hist[t->n_hist];
        if ((rc = rd_elem(&r, a, "finished_epochs", i, &o)) != RLHF_OK) goto fail;
        if ((rc = rd_u64(&r, o, "epoch", TICKETS_MAX_VERSION, &h->epoch)) != RLHF_OK) goto fail;
        if ((rc = rd_u32(&r, o, "prompts", &h->prompts)) != RLHF_OK) goto fail;
        if ((rc = rd_u32(&r, o, "used_once", &h->used_once)) != RLHF_OK) goto fail;
        if ((rc = rd_u32(&r, o, "unused", &h->unused)) != RLHF_OK) goto fail;
        if ((rc = rd_u32(&r, o, "reused", &h->reused)) != RLHF_OK) goto fail;
        t->n_hist++;
    }
    r.where[0] = '\0';

    if ((rc = rd_array(&r, j, "jobs", NONE, &a)) != RLHF_OK) goto fail;
    if ((rc = load_jobs(&r, t, a)) != RLHF_OK) goto fail;
    r.where[0] = '\0';
    if ((rc = rd_array(&r, j, "tickets", NONE, &a)) != RLHF_OK) goto fail;
    if ((rc = load_tickets(&r, t, a, now_ms - saved_at)) != RLHF_OK) goto fail;
    r.where[0] = '\0';
    for (size_t i = 0; i < t->n_jobs; i++)
        if (t->jobs[i].state == TICKETS_SCORING) t->jobs[i].score_deadline_ms += now_ms - saved_at;

    if ((rc = rd_get(&r, j, "counters", JSON_OBJECT, "an object", &o)) != RLHF_OK) goto fail;
    snprintf(r.where, sizeof r.where, "counters.");
    for (size_t i = 0; i < N_KEPT; i++)
        if ((rc = rd_u64(&r, o, kept_counters[i].name, TICKETS_MAX_VERSION, counter_at(&t->c, &kept_counters[i]))) !=
            RLHF_OK)
            goto fail;

    rebuild_uses(t);
    char why[256];
    if ((rc = tickets_check_invariants(t, why, sizeof why)) != RLHF_OK) {
        rc = rlhf_seterr(err, errlen, rc == RLHF_ENOMEM ? RLHF_ENOMEM : RLHF_EFORMAT,
                         "tickets state: inconsistent: %s.", why);
        goto fail;
    }
    if ((flags & TICKETS_LOAD_RESTART) && (rc = restart(t)) != RLHF_OK) {
        rc = rlhf_seterr(err, errlen, rc, "tickets state: ticket ids exhausted.");
        goto fail;
    }
    *out = t;
    return RLHF_OK;
nomem:
    rc = rlhf_seterr(err, errlen, RLHF_ENOMEM, "tickets state: out of memory.");
fail:
    tickets_destroy(&t);
    return rc;
}
