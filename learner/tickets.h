/*
 * tickets.h - the learner's ticket table: the prompt stream, who is working on
 * which prompts, deadlines, reissues, duplicates, staleness, and the counters
 * that prove every prompt of an epoch was used exactly once.
 *
 * Pure and deterministic: no sockets, no clock, no hidden randomness. Time is
 * the caller's monotonic milliseconds (now_ms), passed into every call that
 * needs it; the learner's current policy version is set with
 * tickets_set_policy_version. The same calls in the same order give the same
 * tickets, ids and counters, so a test can drive it step by step, and
 * tickets_save/tickets_load resume it exactly.
 *
 * Vocabulary.
 *   prompt   a dataset index in [0, n_prompts). The caller maps it to tokens
 *            and to the wire's prompt id.
 *   epoch    one pass over the dataset in the order of a permutation that is
 *            a function of (seed, epoch) only (Fisher-Yates on an rng_t seeded
 *            from both), so the order is never stored, only recomputed.
 *   job      a prompt set: prompts_per_ticket consecutive positions of one
 *            epoch's order (fewer at the end of an epoch; a job never spans
 *            two epochs). Its prompts never change, whatever happens.
 *   ticket   one attempt at a job, with its own id and deadline. A job's
 *            first ticket has the job's id; every REISSUE gets a NEW ticket id
 *            (attempt 2, 3, ...) for the same prompt set, the same sampling
 *            seed and a fresh deadline. Ids are monotonic from 1, never reused.
 *
 * The first completion of any attempt of a job wins; from then on every other
 * attempt of that job, and any repeat of the winner, is a late duplicate:
 * dropped and counted. An expired attempt stays eligible to win until some
 * attempt has won (its actor may be slow, not dead), so a reissue costs
 * nothing when the original comes back first.
 *
 * States of a job (two_stage adds GENERATED and SCORING; with one stage an
 * accepted result is final):
 *
 *   from                event                                       to
 *   -                   tickets_issue, fresh prompts                GENERATING
 *   GENERATING          its last live attempt expires or is         QUEUED
 *                       abandoned, or comes back stale
 *   QUEUED              tickets_issue (reissue: new ticket id)      GENERATING
 *   QUEUED, GENERATING  tickets_complete ACCEPTED                   done (one stage), GENERATED
 *   GENERATED           tickets_score_issue                         SCORING
 *   SCORING             score deadline, tickets_score_abandon       GENERATED (re-score, same id)
 *   GENERATED, SCORING  tickets_scored ACCEPTED                     done
 *   GENERATED, SCORING  tickets_scored STALE                        QUEUED (regenerate)
 *
 *   - Generation deadline: gen_timeout_ms after issue. tickets_expire marks
 *     the attempt expired; when no live attempt is left the job is QUEUED and
 *     the next tickets_issue hands it out again (queued jobs go before fresh
 *     prompts, oldest first). tickets_abandon does the same at once (the
 *     actor died or said bye).
 *   - Scoring deadline (two stages): score_timeout_ms after score_issue.
 *     A reward worker that dies mid-scoring costs a re-score, not a
 *     regeneration: the learner still holds the rollouts, so the job goes
 *     back to GENERATED and the next tickets_score_issue hands the SAME
 *     ticket id to another reward worker. Two scored replies for one ticket
 *     are interchangeable; the first wins, the other is a duplicate.
 *
 * Staleness. Let V be the current policy version and L = max_lag. Results
 * generated with version r are stale when V - r > L, or r > V (a version
 * this learner never published, e.g. from before a restart from an older
 * checkpoint). The lag is measured when results arrive: at tickets_complete,
 * and again at tickets_scored with the version recorded at stage 1. A stale
 * result is dropped and counted, and the job is queued for regeneration
 * (unless another live attempt of it is still out): its prompts go back,
 * nothing is lost. Accepted results are final: the learner must train on
 * them, not re-filter them later, or their prompts would be lost. L = 0 is
 * strictly on-policy.
 *   A ticket's policy_version is the oldest weights version that is still
 *   acceptable when it is issued, max(V - L, 1) (0 while V is 0): an actor
 *   holding that version or newer generates right away, an older one first
 *   fetches newer weights (PROTOCOL.md 4.2). It is a floor, not a target: a
 *   result generated at exactly the floor is stale if the policy moves on
 *   before it arrives, so actors should switch to each announced version
 *   between tickets. The table does not look at the version a worker holds,
 *   so an out-of-date worker still gets work; whether to serve it at all is
 *   the caller's choice.
 *
 * Epochs. Epoch e+1 may start handing out prompts once every prompt of epoch e
 * has been handed out; at most max_open_epochs epochs are open at once (an
 * epoch closes when all its prompts are done, in order). max_open_epochs = 1
 * is a strict barrier: nothing of e+1 is issued until all of e is done, so
 * actors idle while the last tickets of an epoch are out. 2 (the default)
 * lets actors start the next epoch while stragglers of the previous one are
 * reissued. Exactly-once holds per epoch either way: a prompt set belongs to
 * one epoch, and each epoch counts its own uses. When no epoch can be opened
 * (window full, or max_epochs reached) tickets_issue returns RLHF_ENOTFOUND
 * and the caller keeps the worker's credit for later.
 *
 * Partial results. A ticket's rollouts may arrive in several messages; the
 * caller assembles them (keeping the first sample per (ticket, prompt_index,
 * sample_index), validated against tickets_lookup) and calls tickets_complete
 * once, when it holds k samples for every prompt, with the oldest
 * policy_version among them. Likewise tickets_scored once per scored ticket.
 *
 * Accounting (tickets_check_invariants verifies all of it exactly):
 *   every issued ticket is, at any time, exactly one of: completed (won, and
 *   its job is done), stale (returned too old), superseded (another attempt
 *   of its job won), or open (live or expired, still in the table):
 *       tickets_issued = tickets_completed + stale_dropped + tickets_superseded + tickets_open
 *   every job's first ticket is an issue, later ones reissues:
 *       tickets_issued - tickets_reissued = tickets_completed + jobs_open
 *   every prompt handed out in an open epoch is either pending in an open job
 *   or used exactly once; every finished epoch used each prompt exactly once:
 *       prompts_completed = n_prompts * epochs_finished + sum of open epochs' done prompts
 *       prompts_lost = prompts_reused = 0
 *   duplicates_dropped and unknown_dropped count events (a ticket may come
 *   back twice), not fates.
 *
 * Not thread-safe: one table per learner, used on its loop thread.
 *
 * What it deliberately is not: no sockets, no worker bookkeeping (the caller
 * maps workers to ticket ids and calls tickets_abandon when one dies), no
 * sample storage, no token data.
 */
#ifndef RLHF_LEARNER_TICKETS_H
#define RLHF_LEARNER_TICKETS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

#define TICKETS_MAX_PROMPTS     (1u << 30) // dataset size
#define TICKETS_MAX_OPEN_EPOCHS 8
#define TICKETS_ID_BLOCK        (1ull << 40) // tickets_load(TICKETS_LOAD_RESTART) continues at the next multiple
#define TICKETS_MAX_VERSION     ((uint64_t)INT64_MAX) // policy versions and ids (they go to JSON as integers)
#define TICKETS_STATE_FORMAT    "rlhf-tickets-1"      // "format" of the saved JSON

typedef struct tickets tickets_t;

/* ---- configuration (plain data) ---- */

typedef struct {
    uint32_t n_prompts;          // dataset size, 1..TICKETS_MAX_PROMPTS
    uint64_t seed;               // epoch e's order is a function of (seed, e); also the sampling seeds
    uint32_t prompts_per_ticket; // 1..PROTO_MAX_PROMPTS, and prompts_per_ticket * k <= PROTO_MAX_SAMPLES
    uint32_t k;                  // samples per prompt, 1..PROTO_MAX_K
    uint32_t max_lag;            // versions a result may lag the current policy; 0 = on-policy
    uint32_t gen_timeout_ms;     // generation deadline, 1..PROTO_MAX_DEADLINE_MS
    uint32_t score_timeout_ms;   // scoring deadline (two_stage), 1..PROTO_MAX_DEADLINE_MS
    uint32_t max_open_epochs;    // 1..TICKETS_MAX_OPEN_EPOCHS; 1 = strict epoch barrier
    uint64_t max_epochs;         // stop opening epochs after this many; 0 = endless stream
    bool two_stage;              // a job is done when its scored results arrive (reward workers)
} tickets_config_t;

/* n_prompts 0 (must be set), seed 0, prompts_per_ticket 8, k 4, max_lag 1,
 * gen_timeout_ms 30000, score_timeout_ms 30000, max_open_epochs 2,
 * max_epochs 0, two_stage true. */
void tickets_config_default(tickets_config_t *c);
/* RLHF_EINVAL (n_prompts 0, a zero timeout or prompts_per_ticket, max_open_epochs 0) or
 * RLHF_ERANGE (above a limit), with one sentence in err naming the field. */
rlhf_err_t tickets_config_validate(const tickets_config_t *c, char *err, size_t errlen);

/* ---- lifecycle ---- */

/* New table at epoch 0, position 0, policy version 0, next id 1. cfg is
 * copied. Caller owns *out (tickets_destroy); *out is NULL on error.
 * Allocates n_prompts * max_open_epochs * 5 bytes for the epoch orders.
 * Errors: tickets_config_validate's, RLHF_ENOMEM. */
rlhf_err_t tickets_new(tickets_t **out, const tickets_config_t *cfg, char *err, size_t errlen);
/* Frees t; *p = NULL. NULL and *p == NULL are fine. */
void tickets_destroy(tickets_t **p);

/* The configuration in use (borrowed, valid until tickets_destroy). */
const tickets_config_t *tickets_config(const tickets_t *t);

/* The learner's current policy version (initially 0). Versions only go up:
 * RLHF_EINVAL if v is below the current one, RLHF_ERANGE above
 * TICKETS_MAX_VERSION. */
rlhf_err_t tickets_set_policy_version(tickets_t *t, uint64_t v);
uint64_t tickets_policy_version(const tickets_t *t);

/* ---- tickets ---- */

#define TICKETS_STATE_MAP(X)                                                                                           \
    X(QUEUED, 1, "queued")                                                                                             \
    X(GENERATING, 2, "generating")                                                                                     \
    X(GENERATED, 3, "generated")                                                                                       \
    X(SCORING, 4, "scoring")

typedef enum {
#define TICKETS__STATE_ENUM(name, code, str) TICKETS_##name = code,
    TICKETS_STATE_MAP(TICKETS__STATE_ENUM)
#undef TICKETS__STATE_ENUM
} tickets_state_t;

/* "queued", ...; "unknown" for another value. */
const char *tickets_state_name(int state);

/* One ticket as handed out or looked up (plain data). */
typedef struct {
    uint64_t id;              // this attempt's ticket id (proto_ticket_t.ticket)
    uint64_t job;             // the prompt set: id of its first ticket, shared by all attempts
    uint32_t attempt;         // 1 = first issue, 2.. = reissues; for tickets_score_issue: scoring attempt
    uint64_t epoch;           // the epoch the prompts belong to
    uint32_t first;           // position of prompts[0] in the epoch's order
    const uint32_t *prompts;  // (n_prompts) dataset indices; BORROWED from the epoch's order: valid
                              // while the job is open, and after it is done until the next tickets_issue
    uint32_t n_prompts;       // 1..prompts_per_ticket
    uint32_t k;               // samples per prompt (cfg.k)
    uint64_t policy_version;  // generate with weights version >= this
    uint64_t rollout_version; // version of the held rollouts (GENERATED/SCORING), else 0
    uint64_t seed;            // sampling seed, a function of (cfg seed, epoch, first): equal for all attempts
    uint32_t deadline_ms;     // relative deadline of the current stage (proto_ticket_t.deadline_ms)
    int64_t deadline_at_ms;   // the same, absolute in the caller's clock
    tickets_state_t state;    // of the job
    bool expired;             // this attempt is past its generation deadline (it may still win)
} tickets_ticket_t;

/* Hand out the next ticket for one unit of an actor's credit: the oldest
 * QUEUED job (a reissue: new id, attempt + 1), else the next prompts of the
 * oldest open epoch that still has fresh ones (opening a new epoch when the
 * window allows). Deadline now_ms + gen_timeout_ms. On success *out is
 * filled (prompts borrowed). RLHF_ENOTFOUND: nothing to hand out now (every
 * open prompt is out and the epoch window is full or max_epochs reached);
 * RLHF_ENOMEM, RLHF_ERANGE (ids exhausted); t is unchanged on error. */
rlhf_err_t tickets_issue(tickets_t *t, int64_t now_ms, tickets_ticket_t *out);

typedef enum { TICKETS_STAGE_GENERATE = 1, TICKETS_STAGE_SCORE = 2 } tickets_stage_t;

typedef struct {
    uint64_t id; // the ticket
    uint64_t job;
    uint32_t attempt; // generation attempt, or scoring attempt
    tickets_stage_t stage;
} tickets_expired_t;

/* Expire every live generation attempt with now_ms >= its deadline (the job
 * is QUEUED once no live attempt is left: the next tickets_issue reissues it)
 * and every scoring past its deadline (back to GENERATED: re-scored by the
 * next tickets_score_issue). Reissue candidates are reported in ticket id
 * order: the first cap in out[] (out may be NULL when cap is 0); *n_expired
 * gets how many there were in all. Never fails but RLHF_EINVAL on NULL t. */
rlhf_err_t tickets_expire(tickets_t *t, int64_t now_ms, tickets_expired_t *out, size_t cap, size_t *n_expired);

/* The actor holding ticket id is gone (heartbeat timeout, bye): expire the
 * attempt now. RLHF_OK, or RLHF_ENOTFOUND when id is not a live generation
 * attempt (already expired, resolved, or never issued): harmless. */
rlhf_err_t tickets_abandon(tickets_t *t, uint64_t id);

#define TICKETS_VERDICT_MAP(X)                                                                                         \
    X(ACCEPTED, "accepted")   /* first result of its job: use it */                                                    \
    X(DUPLICATE, "duplicate") /* its job already has a result, or this ticket already returned */                      \
    X(STALE, "stale")         /* too old a version: dropped, the prompts go back to the queue */                       \
    X(UNKNOWN, "unknown")     /* never issued here, or no results held to score */

typedef enum {
#define TICKETS__VERDICT_ENUM(name, str) TICKETS_##name,
    TICKETS_VERDICT_MAP(TICKETS__VERDICT_ENUM)
#undef TICKETS__VERDICT_ENUM
} tickets_verdict_t;

/* Static label ("accepted"), for logs and metric labels. */
const char *tickets_verdict_name(int v);

/* All rollouts of ticket id are in, generated with rollout_version (the
 * oldest among its samples). *verdict:
 *   ACCEPTED   the job's first result: single stage, the job is done (its
 *              prompts are used); two stages, the job is GENERATED and waits
 *              for a reward worker. Every other attempt of it is superseded.
 *   DUPLICATE  id was issued here but its job already has its result (or it
 *              was resolved before): drop the samples.
 *   STALE      see "Staleness"; drop the samples.
 *   UNKNOWN    id 0 or never issued: drop.
 * Everything but ACCEPTED is counted. Returns RLHF_OK (RLHF_EINVAL on NULL). */
rlhf_err_t tickets_complete(tickets_t *t, uint64_t id, uint64_t rollout_version, tickets_verdict_t *verdict);

/* Look up an open ticket (live, expired, or the winner held for scoring).
 * RLHF_ENOTFOUND when it is not in the table (resolved or never issued). */
rlhf_err_t tickets_lookup(const tickets_t *t, uint64_t id, tickets_ticket_t *out);

/* ---- the scoring stage (two_stage only; RLHF_EUNSUPPORTED otherwise) ---- */

/* Hand the oldest GENERATED job to a reward worker for one unit of its
 * credit: *out describes the winning ticket (score_work.ticket = out->id,
 * out->attempt = scoring attempt, deadline now_ms + score_timeout_ms,
 * rollout_version = the held rollouts' version). RLHF_ENOTFOUND when nothing
 * waits for scoring. */
rlhf_err_t tickets_score_issue(tickets_t *t, int64_t now_ms, tickets_ticket_t *out);

/* The reward worker scoring ticket id is gone: back to GENERATED at once
 * (re-scored, not regenerated). RLHF_ENOTFOUND when id is not being scored. */
rlhf_err_t tickets_score_abandon(tickets_t *t, uint64_t id);

/* Scored results for ticket id are in. ACCEPTED: the job is done; STALE: the
 * held rollouts' version lags too far by now, they are dropped and the job
 * is regenerated; DUPLICATE: already scored (or superseded); UNKNOWN: id 0,
 * never issued, or its rollouts are not held (never generated). */
rlhf_err_t tickets_scored(tickets_t *t, uint64_t id, tickets_verdict_t *verdict);

/* ---- counters and invariants ---- */

typedef struct {
    /* kept (saved in checkpoints) */
    uint64_t tickets_issued;     // ticket ids handed out, reissues included
    uint64_t tickets_reissued;   // of which later attempts at a prompt set
    uint64_t tickets_completed;  // jobs done (one winning ticket each)
    uint64_t tickets_superseded; // attempts made moot because another attempt of their job won
    uint64_t tickets_expired;    // generation attempts past their deadline or abandoned
    uint64_t duplicates_dropped; // results for a job that already had one (events)
    uint64_t stale_dropped;      // results whose version lagged more than max_lag (tickets)
    uint64_t unknown_dropped;    // results for ids never issued, or scored without held rollouts
    uint64_t scores_issued;      // score jobs handed to reward workers, re-scores included
    uint64_t scores_reissued;    // of which re-scores after a reward worker died or was late
    uint64_t scores_expired;     // scorings past their deadline or abandoned
    uint64_t prompts_completed;  // prompts of done jobs, over all epochs
    /* derived from the table */
    uint64_t tickets_open;       // ids still in the table (live, expired, or held for scoring)
    uint64_t jobs_open;          // prompt sets not done yet
    uint64_t prompts_pending;    // prompts in open jobs
    uint64_t prompts_lost;       // handed out, not pending, not used: must be 0
    uint64_t prompts_reused;     // used more than once in one epoch: must be 0
    uint64_t epochs_finished;    // epochs whose every prompt was used
    uint64_t epoch;              // the oldest open epoch (the current one)
    uint64_t epoch_prompts_done; // prompts of that epoch used so far
} tickets_counters_t;

/* Fill *out. Costs O(n_prompts * open epochs + open jobs) (prompts_lost and
 * prompts_reused are recounted from the table, not kept): call it for
 * metrics and summaries, not per message. */
void tickets_counters(const tickets_t *t, tickets_counters_t *out);

/* The counters as a JSON object with the names above (summary.json and
 * /status), plus "epochs": [{"epoch", "prompts", "used_once", "unused",
 * "reused"}, ...] for the finished epochs. Caller owns *out (json_decref).
 * RLHF_ENOMEM. */
rlhf_err_t tickets_counters_json(const tickets_t *t, json_t **out);

/* Per finished epoch, counted from its use table when it closed. */
typedef struct {
    uint64_t epoch;
    uint32_t prompts;   // n_prompts
    uint32_t used_once; // must equal prompts
    uint32_t unused;    // must be 0
    uint32_t reused;    // used more than once; must be 0
} tickets_epoch_t;

/* How many epochs are finished; tickets_epoch_stats(t, i) for i below that.
 * RLHF_ERANGE for another i. */
uint64_t tickets_epochs_finished(const tickets_t *t);
rlhf_err_t tickets_epoch_stats(const tickets_t *t, uint64_t i, tickets_epoch_t *out);

/* True when max_epochs > 0 and that many epochs are finished: the stream is
 * exhausted and nothing is open. */
bool tickets_finished(const tickets_t *t);

/* Verify every accounting identity of the header comment and the table's
 * internal consistency (orders are permutations; ids sorted and below the
 * next id; each job's ranges, states, live attempts and winner; each open
 * epoch's pending/done/fresh split prompt by prompt; each finished epoch used
 * every prompt exactly once). RLHF_OK, or RLHF_EMISMATCH with the first
 * violation described in err, or RLHF_ENOMEM (it allocates n_prompts bytes). */
rlhf_err_t tickets_check_invariants(const tickets_t *t, char *err, size_t errlen);

/* ---- checkpoints ---- */

/* The whole state as a JSON object (format TICKETS_STATE_FORMAT): config
 * identity (n_prompts, seed as a hex string, max_open_epochs, two_stage),
 * policy version, next id, open epochs and their positions, open jobs and
 * tickets with absolute deadlines, finished epochs and the kept counters.
 * Epoch orders and use tables are not stored: they are recomputed from
 * (seed, epoch) and from the open jobs. now_ms is stored as saved_at_ms.
 * Caller owns *out (json_decref). RLHF_ENOMEM. */
rlhf_err_t tickets_save(const tickets_t *t, int64_t now_ms, json_t **out);

#define TICKETS_LOAD_RESTART 1u

/*
 * Rebuild a table from tickets_save's JSON (j borrowed). cfg must agree with
 * the saved n_prompts, seed, max_open_epochs and two_stage (RLHF_EMISMATCH
 * naming the field); its other fields (timeouts, max_lag, k,
 * prompts_per_ticket, max_epochs) apply from now on, open jobs keep their
 * prompt sets. Deadlines are shifted by now_ms - saved_at_ms, so they keep
 * their remaining time on the new clock (with the same clock and now_ms the
 * resume is exact: the same calls then give the same results as if nothing
 * had happened).
 * flags TICKETS_LOAD_RESTART: the process that issued the open tickets is
 * gone (learner restarted from this checkpoint). Ids continue at the next
 * multiple of TICKETS_ID_BLOCK, so a late result for a ticket the old process
 * issued after the checkpoint is a duplicate, never mistaken for a new
 * ticket; every open generation attempt is expired (its prompts are reissued
 * at once, a late result can still win); rollouts held for scoring lived in
 * the old process, so those jobs are regenerated.
 * The rebuilt table passes tickets_check_invariants, or loading fails with
 * RLHF_EFORMAT naming the violation. Other errors: RLHF_EFORMAT (missing
 * key, wrong JSON type), RLHF_ERANGE (value out of range), RLHF_ENOMEM,
 * tickets_config_validate's. Caller owns *out; NULL on error.
 */
rlhf_err_t tickets_load(tickets_t **out, const tickets_config_t *cfg, const json_t *j, int64_t now_ms, unsigned flags,
                        char *err, size_t errlen);

#endif
