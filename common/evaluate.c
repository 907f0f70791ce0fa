/* evaluate.c - greedy held-out evaluation on a task (evaluate.h). */
#include "common/evaluate.h"

#include <stdlib.h>

#include "common/generate.h"

rlhf_err_t eval_task(model_t *m, const task_t *t, int split, int n, int batch, int max_new, eval_result_t *out) {
    int total = task_size(t, split);
    if (n <= 0 || n > total) n = total;
    if (batch <= 0) batch = 32;
    if (batch > n) batch = n > 0 ? n : 1;
    int plen_cap = m->cfg.max_seq_len - max_new;
    if (plen_cap <= 0) return RLHF_ERANGE;
    generator_t *g = generator_new(m, batch, m->cfg.max_seq_len);
    gen_request_t *reqs = calloc((size_t)n, sizeof(*reqs));
    int *prompts = malloc(sizeof(int) * (size_t)n * plen_cap);
    int *toks = malloc(sizeof(int) * (size_t)n * max_new);
    float *lps = malloc(sizeof(float) * (size_t)n * max_new);
    rlhf_err_t rc = RLHF_OK;
    if (!g || !reqs || !prompts || !toks || !lps) {
        rc = RLHF_ENOMEM;
        goto done;
    }
    for (int i = 0; i < n; i++) {
        int p = task_prompt(t, split, i, prompts + (size_t)i * plen_cap, plen_cap);
        if (p <= 0) {
            rc = RLHF_ERANGE;
            goto done;
        }
        reqs[i] = (gen_request_t){.prompt = prompts + (size_t)i * plen_cap,
                                  .prompt_len = p,
                                  .seed = (uint64_t)i,
                                  .tokens = toks + (size_t)i * max_new,
                                  .logprobs = lps + (size_t)i * max_new};
    }
    gen_params_t gp;
    gen_params_default(&gp);
    gp.sampler.temperature = 0.0f;
    gp.max_new_tokens = max_new;
    rc = generator_run(g, reqs, n, &gp);
    if (rc != RLHF_OK) goto done;
    double s = 0, len = 0;
    for (int i = 0; i < n; i++) {
        s += task_score(t, split, i, reqs[i].tokens, reqs[i].n_tokens);
        len += reqs[i].n_tokens;
    }
    out->n = n;
    out->score = n ? s / n : 0.0;
    out->mean_tokens = n ? len / n : 0.0;
done:
    generator_destroy(&g);
    free(reqs), free(prompts), free(toks), free(lps);
    return rc;
}
