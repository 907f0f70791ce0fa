/*
 * task.h - built-in synthetic tasks: prompts, reference answers and an exact
 * verifier, generated from a seed (no download).
 *
 * Each task has a train split and a held-out split whose problems are
 * disjoint sets, so a run can show the policy improving on prompts it never
 * trained on. Problems are distinct within a split, and the same config
 * always yields the same problems in the same order.
 *
 * Tasks:
 *   "add"  multi-digit addition. Prompt "12+345=", answer "357" then EOS.
 *          Each operand draws its digit count uniformly from
 *          [min_digits, max_digits] (1-digit numbers include 0), then a
 *          uniform number of that many digits; a pair drawn twice is
 *          redrawn, so short operands, whose pairs run out, end up a little
 *          rarer (defaults: about 19% 1-digit, 34% 2-digit, 47% 3-digit
 *          operands, against 1% and 9% among uniform numbers below 1000).
 *          A split asking for more than half of the pairs its range holds
 *          takes them uniformly instead.
 *          A pair (a, b) is held out iff a hash of (a, b, seed) is 0 mod 20,
 *          whatever the split sizes.
 *
 * Demonstrations (task_demo, the SFT data) are the reference answers, except
 * that a fraction cfg.careless of the problems whose sum carries out of the
 * leftmost column get the answer of a careless demonstrator who forgets that
 * last carry: 58+67 -> "25", 50+50 -> "00" (the sum mod 10^w, written with
 * w digits, w the longer operand's digit count). Which problems is fixed by
 * a hash of (a, b, seed). The error sits in one decision (write the leading
 * 1 or not), so the rest of the skill is learnt from clean digits; a model
 * fine-tuned on these drops the leading 1 most of the time, while the
 * verifier (task_score) and the held-out evaluation always use the true sum,
 * so RL against the verifier has to unlearn the habit: imitation of
 * imperfect demonstrations, then RL past them, in miniature.
 *
 * What it deliberately is not: no partial credit (a score is 0 or 1), no
 * chat template (prompts are BOS + bytes; wrap with tok_chat_prompt if a
 * chat model wants one), no file datasets (those are jsonl, elsewhere).
 *
 * A task_t is immutable once built: concurrent readers need no lock.
 */
#ifndef RLHF_TASK_H
#define RLHF_TASK_H

#include <stddef.h>
#include <stdint.h>

enum { TASK_TRAIN = 0, TASK_HELDOUT = 1 };

/* Limits checked by task_new_err. */
#define TASK_MAX_DIGITS   9         // operands < 10^9, sums fit in 32 bits
#define TASK_MAX_EXAMPLES (1 << 22) // per split

typedef struct {
    uint64_t seed;
    int min_digits, max_digits; // operand digit counts, 1 <= min <= max <= TASK_MAX_DIGITS
    int n_train, n_heldout;     // problems per split; n_train >= 1, n_heldout >= 0
    float careless;             // fraction of demonstrations that forget to carry, in [0, 1]
} task_config_t;

typedef struct task task_t;

/* Defaults for a task name. "add": seed 1234, digits 1..3, n_train 20000,
 * n_heldout 500, careless 0. An unknown name gets the "add" defaults (task_new_err will
 * then reject the name). */
void task_config_default(const char *name, task_config_t *cfg);

/* Build a task; cfg NULL means task_config_default(name). On error, NULL
 * is returned and err (if non-NULL) holds one sentence naming the field and
 * the fix: unknown name, a config field out of range, or more problems
 * asked for than the digit range holds. Caller owns the result. */
task_t *task_new_err(const char *name, const task_config_t *cfg, char *err, size_t errlen);
/* As task_new_err without the message. */
task_t *task_new(const char *name, const task_config_t *cfg);
void task_destroy(task_t **t);

/* Borrowed, valid for the task's lifetime. */
const char *task_name(const task_t *t);
/* The config the task was built with (defaults filled in). */
const task_config_t *task_config(const task_t *t);

/* Problems in split (TASK_TRAIN or TASK_HELDOUT); 0 for any other split. */
int task_size(const task_t *t, int split);

/* Prompt of problem i as token ids: BOS then the bytes of the prompt text.
 * Returns the count, or -1 if cap is too small or (split, i) is invalid. */
int task_prompt(const task_t *t, int split, int i, int *tokens, int cap);

/* Demonstration completion (SFT data) as token ids, like task_answer but
 * careless for a cfg.careless fraction of carrying problems (see above).
 * Returns the count, or -1 if cap is too small or (split, i) is invalid. */
int task_demo(const task_t *t, int split, int i, int *tokens, int cap);
/* 1 if problem i's demonstration is the careless one (differs from the
 * answer), 0 if not, -1 if (split, i) is invalid. */
int task_demo_is_careless(const task_t *t, int split, int i);

/* Reference completion as token ids: the bytes of the answer, then EOS.
 * Returns the count, or -1 if cap is too small or (split, i) is invalid. */
int task_answer(const task_t *t, int split, int i, int *tokens, int cap);

/* Prompt ("12+345=") and answer ("357", no EOS) as text, snprintf-style:
 * writes at most cap-1 chars and a NUL when cap > 0, returns the full
 * length, or -1 if (split, i) is invalid. */
int task_prompt_text(const task_t *t, int split, int i, char *buf, size_t cap);
int task_answer_text(const task_t *t, int split, int i, char *buf, size_t cap);

/* Verifier. 1.0 if completion's tokens up to the first EOS (all n tokens if
 * there is none) are exactly the bytes of the answer, else 0.0. Any other id
 * before that EOS (PAD, END, other specials, negative or >= vocab ids) makes
 * it wrong; tokens after the EOS are ignored. Never reads past n; 0.0 for an
 * invalid (split, i) or a NULL completion. */
float task_score(const task_t *t, int split, int i, const int *completion, int n);

#endif
