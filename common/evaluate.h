/*
 * evaluate.h - score a model on a built-in task split with greedy decoding.
 */
#ifndef RLHF_EVALUATE_H
#define RLHF_EVALUATE_H

#include "common/error.h"
#include "common/model.h"
#include "common/task.h"

typedef struct {
    int n;              // problems scored
    double score;       // mean verifier score in [0, 1]
    double mean_tokens; // mean completion length
} eval_result_t;

/* Greedy-decode the first n problems of split (n <= 0: all), batch at a
 * time, at most max_new tokens each, and average the verifier's scores. */
rlhf_err_t eval_task(model_t *m, const task_t *t, int split, int n, int batch, int max_new, eval_result_t *out);

#endif
