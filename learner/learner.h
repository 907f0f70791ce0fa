/*
 * learner.h - the learner process: the hub of a distributed PPO run.
 *
 * It binds every endpoint of proto/PROTOCOL.md (work ROUTER, rollouts PULL,
 * score ROUTER, scored PULL, announce PUB, weights ROUTER) and the HTTP
 * server, owns the prompt stream (learner/tickets.h, two stages), the
 * trainable policy and critic with their AdamW states, the rollout buffer,
 * the published weights versions (the last two), checkpoints and the run's
 * metrics.jsonl and summary.json.
 *
 * Conversations (PROTOCOL.md section 5): work_request credit -> ticket;
 * rollouts -> tickets_complete -> held for scoring; score_request credit ->
 * score_work (want_ref) -> scored -> tickets_scored -> batch buffer. When
 * ppo.batch_prompts * ppo.k scored samples are buffered and no update is
 * running, one PPO step (learner/ppo.h) runs on the loop's worker thread;
 * its completion publishes version + 1. After run.steps updates the learner
 * evaluates, writes final/ and summary.json, reports done on /status for a
 * moment (learner_set_linger_ms) and learner_run returns.
 *
 * Network input is never fatal: a bad message is dropped, counted in
 * rlhf_messages_rejected_total{reason} and logged once per reason a minute.
 *
 * Threads: every function runs on the thread that calls learner_run (or, before
 * it, the one that called learner_new), except learner_stop (any thread).
 *
 * What it deliberately is not: no resume from a checkpoint yet, no grpo/rloo
 * (run.algo must be ppo), no CurveZMQ.
 */
#ifndef RLHF_LEARNER_LEARNER_H
#define RLHF_LEARNER_LEARNER_H

#include <stddef.h>
#include <stdint.h>

#include "common/config.h"
#include "common/error.h"

typedef struct learner learner_t;

/* Build the learner: initial weights (model.init, else seeded init) as
 * version 1, critic, optimizers, task and ticket table, sockets bound, HTTP
 * listening. cfg is copied; id names the process in logs and on the wire
 * (NULL = "learner"). Start-up errors: one line in err, *out NULL. */
rlhf_err_t learner_new(learner_t **out, const rlhf_config_t *cfg, const char *id, char *err, size_t errlen);
/* Close everything (a running PPO step is waited for). *p = NULL. */
void learner_destroy(learner_t **p);

/* SIGINT/SIGTERM: the first drains (no new work; the update in flight
 * finishes; final/ and summary.json are written) then learner_run returns;
 * a second exits at once. */
rlhf_err_t learner_catch_signals(learner_t *l);

/* Serve and train until run.steps updates are done (or learner_stop).
 * RLHF_OK when the run finished and its files were written; RLHF_EIO if
 * writing them failed. */
rlhf_err_t learner_run(learner_t *l);
/* Make learner_run return soon, without writing the summary. Any thread. */
void learner_stop(learner_t *l);

/* How long /status keeps reporting done before learner_run returns
 * (default 2000 ms). */
void learner_set_linger_ms(learner_t *l, uint64_t ms);
/* The HTTP port bound (-1 without HTTP). */
int learner_http_port(const learner_t *l);
/* Latest published weights version. */
uint64_t learner_policy_version(const learner_t *l);

#endif
