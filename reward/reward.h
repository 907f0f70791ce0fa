/*
 * reward.h - the reward worker role: asks the learner for rollouts to score
 * (credit-based pull), scores them, computes reference log-probs, and pushes
 * the results back (proto/PROTOCOL.md 4.1, 4.4, 4.5, 5).
 *
 * One reward_t per process, built in main and passed down. It owns
 *   - the loop (common/loop.h) with a DEALER on the learner's `score`
 *     endpoint and a PUSH on `scored`, a 250 ms tick for heartbeats and the
 *     learner-silence check, and the HTTP server (/metrics /healthz /status);
 *   - the frozen REFERENCE model: the run's initial weights, built exactly as
 *     every role builds them (model.init checkpoint, else model.preset +
 *     overrides with model_init_weights(run.seed)), so it equals the
 *     learner's weights version 1 without any file being copied;
 *   - the scorer (reward/scorer.h): the built-in verifier of task.name.
 *
 * Conversation. On start: hello {role reward, caps ref_logprobs,
 * scorer:<task>, batch=N}, then score_request {credit = reward.credit}. Each
 * score_work consumes one credit; at most `credit` jobs are held (queued or
 * being computed) at any time, and a score_work beyond the credit granted is
 * dropped and counted. Jobs are computed one at a time on the loop's worker
 * thread (loop_submit): every sample is scored, and when want_ref every
 * completion token gets log p_ref(token | prefix) under softmax(logits /
 * temperature) from one model_forward over prompt + completion (rows padded
 * into batches of reward.batch). The result is one scored message, then a
 * score_request {credit 1}. A heartbeat goes out after 1 s without other
 * traffic on `score`; after 10 s without hearing the learner the worker says
 * hello again and re-grants its free credit (the learner forgets credit on
 * hello). Every 5 s a stats message carries the worker's counters.
 *
 * A sample whose prompt id names no problem of the task, whose prompt +
 * completion does not fit the reference model's context, or whose score_work
 * names a task this worker does not score gets reward 0 and the component
 * "invalid": 1 (and no ref_logprobs when they cannot be computed); it is
 * counted and logged at most once per minute. Malformed messages are dropped,
 * counted in rlhf_messages_rejected_total{reason} and logged once per reason
 * per minute. Nothing a peer sends stops the worker.
 *
 * SIGTERM/SIGINT: stop taking work, drop queued jobs, finish the running
 * one and send its scored message, send bye, return from reward_run. A second
 * signal exits at once.
 *
 * Metrics: rlhf_score_jobs_total, rlhf_samples_scored_total,
 * rlhf_samples_invalid_total, rlhf_score_jobs_dropped_total{reason},
 * rlhf_score_busy_seconds_total,
 * rlhf_scoring_seconds (histogram, per job), rlhf_reward_mean (last job),
 * rlhf_score_jobs_in_flight, rlhf_score_credit_free, plus the loop's
 * message/byte/reject counters and the process metrics.
 *
 * What it deliberately is not: no learned reward models, combinations or
 * external scorers yet (scorer.h is where they plug in); no CurveZMQ yet
 * (reward_new refuses security.* keys rather than run unencrypted).
 */
#ifndef RLHF_REWARD_H
#define RLHF_REWARD_H

#include "common/config.h"
#include "common/error.h"

typedef struct reward reward_t;

/*
 * Build the worker from cfg (copied) with sender id `id` (1..PROTO_MAX_ID
 * printable ASCII without space, copied): reference model, scorer, loop,
 * sockets (connected; nothing sent before reward_run), HTTP server, signal
 * handlers. Caller owns *out (reward_destroy). On error *out is NULL and err
 * holds one line naming the cause (bad id, checkpoint, task, address, port).
 */
rlhf_err_t reward_new(const rlhf_config_t *cfg, const char *id, reward_t **out, char *err, size_t errlen);

/* Say hello, ask for work and serve until drained by a signal (or
 * reward_stop). RLHF_OK. */
rlhf_err_t reward_run(reward_t *r);

/* Start the graceful drain as a first SIGTERM would (loop thread only, or
 * before reward_run). */
void reward_stop(reward_t *r);

/* Close everything (sockets linger up to 1 s to flush the last messages).
 * *p = NULL. */
void reward_destroy(reward_t **p);

/* The HTTP port actually bound, -1 without HTTP. */
int reward_http_port(const reward_t *r);

#endif
