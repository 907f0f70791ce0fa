/*
 * actor.h - the actor role: asks the learner for tickets, generates k
 * completions per prompt with batched KV-cache decoding, and pushes them back
 * as rollouts with behaviour log-probs and the policy version used
 * (proto/PROTOCOL.md sections 4.1-4.3, 4.6 and 5 are normative).
 *
 * Sockets (all connect, none binds): DEALER on work, PUSH on rollouts, SUB on
 * announce (everything), DEALER on weights. One libuv loop (common/loop.h)
 * drives them; generation runs on the loop's worker thread, so heartbeats,
 * announces, weight fetches and /metrics keep flowing while a ticket is
 * being generated.
 *
 * Weights come ONLY over the weights protocol: the model is built with the
 * run's shape (model.init's config.json, else model.preset + overrides) and
 * zeroed; a version is fetched in chunks into a receive blob allocated once,
 * verified with XXH3-64 against the announce, and swapped with the model's
 * parameter blob between tickets, never while generating.
 *
 * What it deliberately is not: no CurveZMQ yet, no relay of weights to other
 * actors, no stats message.
 */
#ifndef RLHF_ACTOR_H
#define RLHF_ACTOR_H

#include <stdint.h>

#include "common/config.h"
#include "common/error.h"
#include "common/metrics.h"

typedef struct actor actor_t;

/*
 * Build an actor from cfg (copied): metrics, loop, sockets connected to
 * cfg->actor.learner on the learner.*_port ports, HTTP server (unless
 * actor.http_port is -1), model shape, generator and receive blob.
 * id: the protocol sender id (1..64 printable ASCII, no space); NULL picks
 * "actor-HOST-PID". Nothing is sent before actor_run. Caller owns *out
 * (actor_destroy). On error *out is NULL and err holds one line: RLHF_EINVAL
 * (bad id, bad endpoint), RLHF_EUNSUPPORTED (security.* keys set: no
 * CurveZMQ yet), RLHF_EIO (zmq or HTTP bind failure), RLHF_ENOMEM, or the
 * model/checkpoint config error.
 */
rlhf_err_t actor_new(actor_t **out, const rlhf_config_t *cfg, const char *id, char *err, size_t errlen);

/* Handle SIGINT/SIGTERM: the first drains (actor_stop), a second exits at
 * once. For the program; in-process tests use actor_stop. */
rlhf_err_t actor_catch_signals(actor_t *a);

/* Say hello, ask for work and serve until a drain completes (actor_stop or
 * SIGTERM): stop asking for work, finish the ticket being generated (its
 * rollouts are sent), drop the ones not started, send bye, return. Call on
 * one thread. RLHF_OK, or RLHF_EIO when no learner answered within
 * actor.connect_timeout_ms of the start (logged). */
rlhf_err_t actor_run(actor_t *a);

/* Start a graceful drain. Thread-safe; may be called before actor_run (the
 * run then drains at once). */
void actor_stop(actor_t *a);

/* Close everything; *p = NULL. Not while actor_run is running. */
void actor_destroy(actor_t **p);

/* Accessors, thread-safe. */
uint64_t actor_weights_version(const actor_t *a); /* version in the model now; 0 = none */
int actor_http_port(const actor_t *a);            /* bound port, -1 when off */
metrics_t *actor_metrics(actor_t *a);             /* borrowed registry (values are atomic) */
const char *actor_id(const actor_t *a);           /* borrowed */

#endif
