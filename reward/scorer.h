/*
 * scorer.h - what a reward worker applies to a completion: a small interface
 * (a name and a score function) and, behind it, the built-in task verifiers.
 *
 * A scorer turns one (prompt id, prompt, completion) into a scalar reward and
 * up to PROTO_MAX_COMPONENTS named components (the wire's `components`,
 * informative). The interface is what later scorers plug into without the
 * worker changing: a learned reward model (a model_t with a scalar head), a
 * weighted or gated (Llama 2 safety/helpfulness) combination of other
 * scorers, an external scorer reached over ZeroMQ.
 *
 * An input the scorer cannot judge (a prompt id that names no problem of the
 * task) is not an error: the output gets reward 0, invalid = 1 and a
 * component "invalid": 1, so the learner trains on a neutral reward and the
 * worker keeps serving. Errors are reserved for the scorer itself failing.
 *
 * Threads: score runs on the reward worker's compute thread; a scorer must
 * not touch the loop or its sockets. Built-in scorers are immutable after
 * construction and may be called from several threads at once.
 *
 * What it deliberately is not: no learned reward models, no combinations, no
 * external scorer yet (later issues), no per-token rewards.
 */
#ifndef RLHF_SCORER_H
#define RLHF_SCORER_H

#include <stdint.h>

#include "common/error.h"
#include "common/task.h"
#include "proto/proto.h"

/* Component names of the built-in scorers (static strings). */
#define SCORER_COMPONENT_TASK    "task"
#define SCORER_COMPONENT_INVALID "invalid"

/* One sample to score; every pointer is borrowed for the call. */
typedef struct {
    uint64_t prompt_id;    // the learner's prompt id; built-in tasks: split << 32 | index
    const int32_t *prompt; // (n_prompt)
    uint32_t n_prompt;
    const int32_t *completion; // (n_completion)
    uint32_t n_completion;
    uint32_t finish; // proto_finish_t
} scorer_input_t;

/* The result. Component names are borrowed from the scorer (static or owned
 * by it) and stay valid for the scorer's lifetime. */
typedef struct {
    double reward;                                  // finite
    proto_named_t components[PROTO_MAX_COMPONENTS]; // (n_components), distinct names, finite
    uint32_t n_components;
    int invalid; // 1: the input named nothing this scorer knows
} scorer_output_t;

typedef struct scorer scorer_t;

/* The interface. score fills *out (always, even on error: reward 0) and
 * returns RLHF_OK, or an error when the scorer itself failed (an external
 * scorer unreachable, ...). destroy frees self. */
typedef struct {
    rlhf_err_t (*score)(void *self, const scorer_input_t *in, scorer_output_t *out);
    void (*destroy)(void *self);
} scorer_ops_t;

/* A scorer over any implementation: takes ownership of self (ops->destroy
 * runs in scorer_destroy). name: 1..PROTO_MAX_NAME bytes, copied; it is the
 * score_work `task` this scorer answers to and the "scorer:<name>" hello
 * capability. Caller owns *out. RLHF_EINVAL (bad name or ops), RLHF_ENOMEM
 * (self is destroyed then). */
rlhf_err_t scorer_new(const char *name, const scorer_ops_t *ops, void *self, scorer_t **out);
void scorer_destroy(scorer_t **p);

/* Borrowed, valid for the scorer's lifetime. */
const char *scorer_name(const scorer_t *s);

/* Score one sample (see scorer_ops_t). Clears *out first; an output the
 * implementation left non-finite becomes reward 0 + "invalid" (never sent). */
rlhf_err_t scorer_score(scorer_t *s, const scorer_input_t *in, scorer_output_t *out);

/* Mark *out invalid: reward 0, components {"invalid": 1}. */
void scorer_output_invalid(scorer_output_t *out);

/* The built-in task verifier: task_new_err(name, cfg) (cfg NULL = the
 * task's defaults). prompt_id = split << 32 | index selects the problem
 * (TASK_TRAIN or TASK_HELDOUT); reward = task_score of the completion,
 * components {"task": reward}. A split or index outside the task is invalid.
 * On error err names the field (task_new_err's sentence). */
rlhf_err_t scorer_task_new(const char *name, const task_config_t *cfg, scorer_t **out, char *err, size_t errlen);

#endif
