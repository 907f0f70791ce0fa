/*
 * generate.c - continuous-batching generation over a KV cache (generate.h).
 */
#include "common/generate.h"

#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "common/tokenizer.h"

struct generator {
    model_t *m;
    kvcache_t *kv;
    int B, T, V;
    float *logits;         // (max(B, T*B), V) rows of the current call
    float *scratch;        // 2V sampler scratch
    int *iscratch;         // V
    int *tok, *slot, *pos; // rows of the current call
    int cap_rows;
    int64_t n_prompt, n_gen;
};

void gen_params_default(gen_params_t *p) {
    memset(p, 0, sizeof(*p));
    sampler_params_default(&p->sampler);
    p->sampler.temperature = 1.0f;
    p->sampler.top_k = 0;
    p->sampler.top_p = 1.0f;
    p->max_new_tokens = 64;
    p->stop_tokens[0] = TOK_EOS;
    p->n_stop = 1;
}

generator_t *generator_new(model_t *m, int max_batch, int max_len) {
    if (max_batch <= 0 || max_len <= 0 || max_len > m->cfg.max_seq_len) return NULL;
    generator_t *g = calloc(1, sizeof(*g));
    if (!g) return NULL;
    g->m = m, g->B = max_batch, g->T = max_len, g->V = m->cfg.vocab_size;
    g->kv = kvcache_new(&m->cfg, max_batch, max_len);
    g->cap_rows = max_batch * max_len;
    g->logits = malloc(sizeof(float) * (size_t)g->cap_rows * g->V);
    g->scratch = malloc(sizeof(float) * 2 * (size_t)g->V);
    g->iscratch = malloc(sizeof(int) * (size_t)g->V);
    g->tok = malloc(sizeof(int) * (size_t)g->cap_rows);
    g->slot = malloc(sizeof(int) * (size_t)g->cap_rows);
    g->pos = malloc(sizeof(int) * (size_t)g->cap_rows);
    if (!g->kv || !g->logits || !g->scratch || !g->iscratch || !g->tok || !g->slot || !g->pos) {
        generator_destroy(&g);
        return NULL;
    }
    return g;
}

void generator_destroy(generator_t **pg) {
    if (!pg || !*pg) return;
    generator_t *g = *pg;
    kvcache_destroy(&g->kv);
    free(g->logits), free(g->scratch), free(g->iscratch), free(g->tok), free(g->slot), free(g->pos);
    free(g);
    *pg = NULL;
}

void generator_last_counts(const generator_t *g, int64_t *prompt_tokens, int64_t *gen_tokens) {
    if (prompt_tokens) *prompt_tokens = g->n_prompt;
    if (gen_tokens) *gen_tokens = g->n_gen;
}

typedef struct {
    int req; // request index, -1 = free
    int len; // tokens in cache + pending token
    rng_t rng;
} slot_t;

static int is_stop(const gen_params_t *p, int tok) {
    for (int i = 0; i < p->n_stop; i++)
        if (p->stop_tokens[i] == tok) return 1;
    return 0;
}

/* Sample the next token of request r from logits row z; returns 1 if done. */
static int take_token(generator_t *g, gen_request_t *r, slot_t *s, const float *z, const gen_params_t *p) {
    float lp;
    int tok = sampler_sample(z, g->V, &p->sampler, rng_float(&s->rng), g->scratch, g->iscratch, &lp);
    r->tokens[r->n_tokens] = tok;
    r->logprobs[r->n_tokens] = lp;
    r->n_tokens++;
    g->n_gen++;
    if (is_stop(p, tok)) {
        r->finish = GEN_FINISH_STOP;
        return 1;
    }
    if (r->n_tokens >= p->max_new_tokens) {
        r->finish = GEN_FINISH_LENGTH;
        return 1;
    }
    return 0;
}

rlhf_err_t generator_run(generator_t *g, gen_request_t *reqs, int n, const gen_params_t *p) {
    if (p->max_new_tokens <= 0) return RLHF_ERANGE;
    for (int i = 0; i < n; i++) {
        if (reqs[i].prompt_len <= 0 || reqs[i].prompt_len + p->max_new_tokens > g->T) return RLHF_ERANGE;
        for (int t = 0; t < reqs[i].prompt_len; t++)
            if (reqs[i].prompt[t] < 0 || reqs[i].prompt[t] >= g->V) return RLHF_ERANGE;
        reqs[i].n_tokens = 0;
        reqs[i].finish = GEN_FINISH_NONE;
    }
    g->n_prompt = g->n_gen = 0;
    slot_t *slots = calloc((size_t)g->B, sizeof(slot_t));
    if (!slots) return RLHF_ENOMEM;
    for (int b = 0; b < g->B; b++) slots[b].req = -1;
    int next = 0, active = 0;
    for (;;) {
        /* admit pending requests into free slots: one prefill call for all */
        int rows = 0, admitted[g->B], last_row[g->B], na = 0;
        for (int b = 0; b < g->B && next < n; b++) {
            if (slots[b].req >= 0) continue;
            gen_request_t *r = &reqs[next];
            slots[b].req = next++;
            slots[b].len = r->prompt_len;
            rng_init(&slots[b].rng, r->seed);
            for (int t = 0; t < r->prompt_len; t++, rows++) {
                g->tok[rows] = r->prompt[t], g->slot[rows] = b, g->pos[rows] = t;
            }
            admitted[na] = b;
            last_row[na++] = rows - 1;
            g->n_prompt += r->prompt_len;
        }
        if (na > 0) {
            model_step(g->m, g->kv, g->tok, g->slot, g->pos, rows, g->logits);
            for (int i = 0; i < na; i++) {
                slot_t *s = &slots[admitted[i]];
                if (take_token(g, &reqs[s->req], s, g->logits + (size_t)last_row[i] * g->V, p)) {
                    s->req = -1;
                } else {
                    active++;
                }
            }
            if (active == 0 && next < n) continue;
        }
        if (active == 0) break;
        /* one decode step over all active slots */
        rows = 0;
        for (int b = 0; b < g->B; b++) {
            if (slots[b].req < 0) continue;
            gen_request_t *r = &reqs[slots[b].req];
            g->tok[rows] = r->tokens[r->n_tokens - 1];
            g->slot[rows] = b;
            g->pos[rows] = slots[b].len++;
            rows++;
        }
        model_step(g->m, g->kv, g->tok, g->slot, g->pos, rows, g->logits);
        for (int i = 0; i < rows; i++) {
            slot_t *s = &slots[g->slot[i]];
            if (take_token(g, &reqs[s->req], s, g->logits + (size_t)i * g->V, p)) {
                s->req = -1;
                active--;
            }
        }
    }
    free(slots);
    return RLHF_OK;
}
