/*
 * sft.c - SFT data and trainer (see sft.h).
 */
#include "common/sft.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "common/tokenizer.h"

/* ---- data ---- */

typedef struct {
    int *pool;
    size_t len, cap;
    int *starts, *plens, *lens;
    int n, ncap;
} builder_t;

static int builder_add(builder_t *b, const int *toks, int n, int plen) {
    if (b->len + (size_t)n > b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 4096;
        while (nc < b->len + (size_t)n) nc *= 2;
        int *p = realloc(b->pool, nc * sizeof(int));
        if (!p) return -1;
        b->pool = p, b->cap = nc;
    }
    if (b->n == b->ncap) {
        int nc = b->ncap ? b->ncap * 2 : 256;
        int *s = realloc(b->starts, sizeof(int) * nc), *pl, *l;
        if (!s) return -1;
        b->starts = s;
        if (!(pl = realloc(b->plens, sizeof(int) * nc))) return -1;
        b->plens = pl;
        if (!(l = realloc(b->lens, sizeof(int) * nc))) return -1;
        b->lens = l;
        b->ncap = nc;
    }
    memcpy(b->pool + b->len, toks, sizeof(int) * (size_t)n);
    b->starts[b->n] = (int)b->len, b->plens[b->n] = plen, b->lens[b->n] = n;
    b->n++;
    b->len += (size_t)n;
    return 0;
}

static rlhf_err_t builder_finish(builder_t *b, sft_data_t *d) {
    memset(d, 0, sizeof(*d));
    d->ex = calloc((size_t)(b->n ? b->n : 1), sizeof(sft_example_t));
    if (!d->ex) return RLHF_ENOMEM;
    d->pool = b->pool, d->pool_len = b->len, d->n = b->n;
    for (int i = 0; i < b->n; i++) {
        d->ex[i] = (sft_example_t){.tokens = b->pool + b->starts[i], .prompt_len = b->plens[i], .len = b->lens[i]};
        if (b->lens[i] > d->max_len) d->max_len = b->lens[i];
    }
    free(b->starts), free(b->plens), free(b->lens);
    return RLHF_OK;
}

static void builder_free(builder_t *b) {
    free(b->pool), free(b->starts), free(b->plens), free(b->lens);
}

void sft_data_fini(sft_data_t *d) {
    free(d->ex);
    free(d->pool);
    memset(d, 0, sizeof(*d));
}

rlhf_err_t sft_data_load_jsonl(sft_data_t *d, const char *path, int max_len, char *err, size_t errlen) {
    FILE *f = fopen(path, "r");
    if (!f)
        return rlhf_seterr(err, errlen, RLHF_EIO, "%s: cannot open (%s); check the --data path", path, strerror(errno));
    builder_t b = {0};
    rlhf_err_t rc = RLHF_OK;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int lineno = 0;
    int *toks = malloc(sizeof(int) * (size_t)(max_len + 1));
    if (!toks) {
        fclose(f);
        return RLHF_ENOMEM;
    }
    while ((n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ')) line[--n] = 0;
        if (n == 0) continue;
        json_error_t je;
        json_t *o = json_loadb(line, (size_t)n, 0, &je);
        if (!o || !json_is_object(o)) {
            rc = rlhf_seterr(err, errlen, RLHF_EFORMAT,
                             "%s:%d: not a JSON object (%s); each line must be {\"prompt\": ..., \"completion\": ...}",
                             path, lineno, o ? "got another JSON type" : je.text);
            json_decref(o);
            goto done;
        }
        const char *keys[2] = {"prompt", "completion"};
        const char *vals[2];
        size_t lens[2];
        for (int k = 0; k < 2; k++) {
            json_t *v = json_object_get(o, keys[k]);
            if (!v || !json_is_string(v)) {
                rc = rlhf_seterr(err, errlen, RLHF_EFORMAT, "%s:%d: field '%s' must be a string (%s)", path, lineno,
                                 keys[k], v ? "wrong type" : "missing");
                json_decref(o);
                goto done;
            }
            vals[k] = json_string_value(v);
            lens[k] = json_string_length(v);
        }
        if (lens[0] + lens[1] + 2 > (size_t)max_len) {
            rc = rlhf_seterr(err, errlen, RLHF_ERANGE,
                             "%s:%d: prompt+completion is %zu tokens, longer than the model context %d; shorten it "
                             "or use a model with a larger max_seq_len",
                             path, lineno, lens[0] + lens[1] + 2, max_len);
            json_decref(o);
            goto done;
        }
        toks[0] = TOK_BOS;
        int total = 1 + tok_encode(vals[0], lens[0], toks + 1, max_len);
        int plen = total;
        int c = tok_encode(vals[1], lens[1], toks + total, max_len - total);
        total += c;
        toks[total++] = TOK_EOS;
        json_decref(o);
        if (lens[1] == 0) {
            rc = rlhf_seterr(err, errlen, RLHF_EFORMAT, "%s:%d: field 'completion' is empty; nothing to learn", path,
                             lineno);
            goto done;
        }
        if (builder_add(&b, toks, total, plen) != 0) {
            rc = RLHF_ENOMEM;
            goto done;
        }
    }
    if (b.n == 0) {
        rc = rlhf_seterr(err, errlen, RLHF_EFORMAT, "%s: no examples (the file is empty)", path);
        goto done;
    }
    rc = builder_finish(&b, d);
    b.pool = NULL;
done:
    if (rc != RLHF_OK) builder_free(&b);
    free(toks);
    free(line);
    fclose(f);
    return rc;
}

rlhf_err_t sft_data_from_task(sft_data_t *d, const task_t *t, int split, int max_len, char *err, size_t errlen) {
    builder_t b = {0};
    int *toks = malloc(sizeof(int) * (size_t)max_len);
    if (!toks) return RLHF_ENOMEM;
    int n = task_size(t, split);
    for (int i = 0; i < n; i++) {
        int p = task_prompt(t, split, i, toks, max_len);
        int a = p < 0 ? -1 : task_demo(t, split, i, toks + p, max_len - p);
        if (p < 0 || a < 0) {
            free(toks);
            builder_free(&b);
            return rlhf_seterr(err, errlen, RLHF_ERANGE,
                               "task %s: problem %d does not fit the model context %d; use fewer digits", task_name(t),
                               i, max_len);
        }
        if (builder_add(&b, toks, p + a, p) != 0) {
            free(toks);
            builder_free(&b);
            return RLHF_ENOMEM;
        }
    }
    free(toks);
    rlhf_err_t rc = builder_finish(&b, d);
    if (rc != RLHF_OK) builder_free(&b);
    return rc;
}

int sft_data_batch(const sft_data_t *d, const int *idx, int B, int T_cap, int *tokens, int *targets, int *n_loss) {
    int T = 1;
    for (int b = 0; b < B; b++) T = d->ex[idx[b]].len > T ? d->ex[idx[b]].len : T;
    if (T > T_cap) T = T_cap;
    int nl = 0;
    for (int b = 0; b < B; b++) {
        const sft_example_t *e = &d->ex[idx[b]];
        int len = e->len < T ? e->len : T;
        for (int t = 0; t < T; t++) {
            tokens[b * T + t] = t < len ? e->tokens[t] : TOK_PAD;
            /* position t predicts token t+1: a loss when t+1 is a completion token */
            int tgt = (t + 1 < len && t + 1 >= e->prompt_len) ? e->tokens[t + 1] : -1;
            targets[b * T + t] = tgt;
            nl += tgt >= 0;
        }
    }
    if (n_loss) *n_loss = nl;
    return T;
}

/* ---- trainer ---- */

struct sft {
    model_t *m;
    const sft_data_t *d;
    sft_config_t cfg;
    adamw_t *opt;
    model_acts_t *acts;
    uint8_t *decay;
    int *perm, *tokens, *targets, *idx;
    int T_cap;
    trainer_state_t ts; // step, data_pos, epoch (rng unused but saved)
    int perm_epoch;     // epoch whose permutation is in perm, -1 none
    float *dl;
};

void sft_config_default(sft_config_t *c) {
    c->batch = 32;
    c->steps = 1000;
    c->seed = 1;
    adamw_config_default(&c->opt);
    c->opt.lr = 1e-3f;
    c->opt.weight_decay = 0.0f;
    c->opt.warmup_steps = 50;
    c->opt.total_steps = c->steps;
}

sft_t *sft_new(model_t *m, const sft_data_t *d, const sft_config_t *c) {
    if (c->batch <= 0 || d->n <= 0 || model_alloc_grads(m) != RLHF_OK) return NULL;
    sft_t *s = calloc(1, sizeof(*s));
    if (!s) return NULL;
    s->m = m, s->d = d, s->cfg = *c;
    s->T_cap = d->max_len < m->cfg.max_seq_len ? d->max_len : m->cfg.max_seq_len;
    s->opt = adamw_new(&c->opt, m->n_params);
    s->acts = model_acts_new(&m->cfg, c->batch, s->T_cap);
    s->decay = malloc(m->n_params);
    s->perm = malloc(sizeof(int) * (size_t)d->n);
    s->idx = malloc(sizeof(int) * (size_t)c->batch);
    s->tokens = malloc(sizeof(int) * (size_t)c->batch * s->T_cap);
    s->targets = malloc(sizeof(int) * (size_t)c->batch * s->T_cap);
    s->dl = malloc(sizeof(float) * (size_t)c->batch * s->T_cap);
    if (!s->opt || !s->acts || !s->decay || !s->perm || !s->idx || !s->tokens || !s->targets || !s->dl) {
        sft_destroy(&s);
        return NULL;
    }
    model_decay_mask(m, s->decay);
    rng_init(&s->ts.rng, c->seed);
    s->perm_epoch = -1;
    return s;
}

void sft_destroy(sft_t **ps) {
    if (!ps || !*ps) return;
    sft_t *s = *ps;
    adamw_destroy(&s->opt);
    model_acts_destroy(&s->acts);
    free(s->decay), free(s->perm), free(s->idx), free(s->tokens), free(s->targets), free(s->dl);
    free(s);
    *ps = NULL;
}

int64_t sft_steps_done(const sft_t *s) {
    return s->ts.step;
}

static void make_perm(sft_t *s) {
    rng_t r;
    rng_init(&r, rng_mix(s->cfg.seed) ^ rng_mix((uint64_t)s->ts.epoch + 1));
    for (int i = 0; i < s->d->n; i++) s->perm[i] = i;
    for (int i = s->d->n - 1; i > 0; i--) {
        int j = (int)rng_below(&r, (uint32_t)(i + 1));
        int t = s->perm[i];
        s->perm[i] = s->perm[j], s->perm[j] = t;
    }
    s->perm_epoch = (int)s->ts.epoch;
}

float sft_step(sft_t *s, int *n_tokens, float *gnorm, float *lr) {
    int B = s->cfg.batch;
    for (int b = 0; b < B; b++) {
        if (s->ts.data_pos >= s->d->n) s->ts.data_pos = 0, s->ts.epoch++;
        if (s->perm_epoch != s->ts.epoch) make_perm(s);
        s->idx[b] = s->perm[s->ts.data_pos++];
    }
    int nl = 0;
    int T = sft_data_batch(s->d, s->idx, B, s->T_cap, s->tokens, s->targets, &nl);
    model_zero_grads(s->m);
    model_forward(s->m, s->acts, s->tokens, s->targets, B, T, 1.0f);
    const float *lp = model_acts_logprobs(s->acts);
    double loss = 0;
    for (int i = 0; i < B * T; i++) {
        if (s->targets[i] >= 0) loss -= lp[i];
        s->dl[i] = s->targets[i] >= 0 ? -1.0f / (float)(nl ? nl : 1) : 0.0f;
    }
    model_backward(s->m, s->acts, s->dl, NULL, NULL);
    adamw_update(s->opt, s->m->params_mem, s->m->grads_mem, s->decay, gnorm, lr);
    s->ts.step++;
    if (n_tokens) *n_tokens = nl;
    return nl ? (float)(loss / nl) : 0.0f;
}

rlhf_err_t sft_save(const sft_t *s, const char *dir, char *err, size_t errlen) {
    rlhf_err_t rc = checkpoint_save_model(s->m, dir, err, errlen);
    if (rc != RLHF_OK) return rc;
    return checkpoint_save_trainer(s->opt, &s->ts, dir, err, errlen);
}

rlhf_err_t sft_resume(sft_t *s, const char *dir, char *err, size_t errlen) {
    rlhf_err_t rc = checkpoint_load_trainer(s->opt, &s->ts, dir, err, errlen);
    s->perm_epoch = -1;
    return rc;
}
