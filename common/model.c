/*
 * model.c - Llama-style decoder: config, parameter layout, training
 * forward/backward over padded batches, and KV-cache stepping for
 * generation. See model.h for the contract and dimension letters.
 */
#include "common/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/kernels.h"
#include "common/rng.h"
#include "common/vmath.h"

static void *xalloc(size_t nfloats) {
    size_t bytes = nfloats * sizeof(float);
    bytes = (bytes + 63) & ~(size_t)63;
    if (bytes == 0) bytes = 64;
    void *p = aligned_alloc(64, bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

/* ---- config ---- */

rlhf_err_t model_config_preset(model_config_t *c, const char *name) {
    memset(c, 0, sizeof(*c));
    c->vocab_size = 264;
    c->norm_eps = 1e-5f;
    c->rope_theta = 10000.0f;
    if (strcmp(name, "tiny") == 0) {
        c->dim = 64, c->n_layers = 4, c->n_heads = 4, c->n_kv_heads = 2, c->hidden_dim = 256, c->max_seq_len = 128;
    } else if (strcmp(name, "small") == 0) {
        c->dim = 192, c->n_layers = 6, c->n_heads = 6, c->n_kv_heads = 6, c->hidden_dim = 512, c->max_seq_len = 256;
    } else if (strcmp(name, "base") == 0) {
        c->dim = 384, c->n_layers = 8, c->n_heads = 6, c->n_kv_heads = 6, c->hidden_dim = 1024, c->max_seq_len = 256;
    } else if (strcmp(name, "stories15m") == 0) {
        /* llama2.c's stories15M shape: 32000-token vocabulary, shared head */
        c->vocab_size = 32000, c->dim = 288, c->n_layers = 6, c->n_heads = 6, c->n_kv_heads = 6;
        c->hidden_dim = 768, c->max_seq_len = 256, c->tied_embeddings = 1;
    } else {
        return RLHF_ENOTFOUND;
    }
    return RLHF_OK;
}

rlhf_err_t model_config_validate(const model_config_t *c, char *err, size_t errlen) {
#define CHECK(cond, ...)                                                                                               \
    if (!(cond)) return rlhf_seterr(err, errlen, RLHF_ERANGE, __VA_ARGS__)
    CHECK(c->vocab_size > 0 && c->vocab_size <= 1000000, "vocab_size must be in 1..1000000 (got %d)", c->vocab_size);
    CHECK(c->dim > 0 && c->dim <= 65536, "dim must be in 1..65536 (got %d)", c->dim);
    CHECK(c->n_layers > 0 && c->n_layers <= 1024, "n_layers must be in 1..1024 (got %d)", c->n_layers);
    CHECK(c->n_heads > 0 && c->dim % c->n_heads == 0, "n_heads must divide dim (dim %d, n_heads %d)", c->dim,
          c->n_heads);
    CHECK((c->dim / c->n_heads) % 2 == 0, "head size dim/n_heads must be even for rotary (got %d)",
          c->dim / c->n_heads);
    CHECK(c->n_kv_heads > 0 && c->n_kv_heads <= c->n_heads && c->n_heads % c->n_kv_heads == 0,
          "n_kv_heads must divide n_heads (n_heads %d, n_kv_heads %d)", c->n_heads, c->n_kv_heads);
    CHECK(c->hidden_dim > 0 && c->hidden_dim <= 1 << 20, "hidden_dim must be in 1..1048576 (got %d)", c->hidden_dim);
    CHECK(c->max_seq_len > 0 && c->max_seq_len <= 1 << 16, "max_seq_len must be in 1..65536 (got %d)", c->max_seq_len);
    CHECK(c->tied_embeddings == 0 || c->tied_embeddings == 1, "tied_embeddings must be 0 or 1");
    CHECK(c->scalar_head == 0 || c->scalar_head == 1, "scalar_head must be 0 or 1");
    CHECK(c->norm_eps > 0 && c->norm_eps < 1, "norm_eps must be in (0,1) (got %g)", (double)c->norm_eps);
    CHECK(c->rope_theta > 1, "rope_theta must be > 1 (got %g)", (double)c->rope_theta);
#undef CHECK
    return RLHF_OK;
}

static void compute_sizes(const model_config_t *c, size_t sizes[MP_COUNT]) {
    size_t V = c->vocab_size, C = c->dim, L = c->n_layers, H = c->hidden_dim;
    size_t HS = C / c->n_heads, QC = HS * c->n_heads, KC = HS * c->n_kv_heads;
    sizes[MP_EMB] = V * C;
    sizes[MP_ATTN_NORM] = L * C;
    sizes[MP_WQ] = L * QC * C;
    sizes[MP_WK] = L * KC * C;
    sizes[MP_WV] = L * KC * C;
    sizes[MP_WO] = L * C * QC;
    sizes[MP_FFN_NORM] = L * C;
    sizes[MP_W1] = L * H * C;
    sizes[MP_W3] = L * H * C;
    sizes[MP_W2] = L * C * H;
    sizes[MP_NORM] = C;
    sizes[MP_LM_HEAD] = c->tied_embeddings ? 0 : V * C;
    sizes[MP_SCORE] = c->scalar_head ? C : 0;
}

size_t model_config_n_params(const model_config_t *c) {
    size_t s[MP_COUNT], n = 0;
    compute_sizes(c, s);
    for (int k = 0; k < MP_COUNT; k++) n += s[k];
    return n;
}

size_t model_config_n_params_nonemb(const model_config_t *c) {
    size_t s[MP_COUNT];
    compute_sizes(c, s);
    size_t n = model_config_n_params(c) - s[MP_EMB];
    if (c->tied_embeddings) n += s[MP_EMB]; /* the head still costs its FLOPs */
    return n;
}

/* ---- weights ---- */

void model_point_params(const model_t *m, float *blob, model_params_t *p) {
    float **ptrs[MP_COUNT] = {&p->emb, &p->attn_norm, &p->wq, &p->wk,   &p->wv,      &p->wo,   &p->ffn_norm,
                              &p->w1,  &p->w3,        &p->w2, &p->norm, &p->lm_head, &p->score};
    for (int k = 0; k < MP_COUNT; k++) *ptrs[k] = m->sizes[k] ? blob + m->offsets[k] : NULL;
    if (m->cfg.tied_embeddings) p->lm_head = p->emb;
}

model_t *model_new(const model_config_t *cfg) {
    if (model_config_validate(cfg, NULL, 0) != RLHF_OK) return NULL;
    model_t *m = calloc(1, sizeof(*m));
    if (!m) return NULL;
    m->cfg = *cfg;
    compute_sizes(cfg, m->sizes);
    size_t off = 0;
    for (int k = 0; k < MP_COUNT; k++) {
        m->offsets[k] = off;
        off += m->sizes[k];
    }
    m->n_params = off;
    m->params_mem = xalloc(off);
    if (!m->params_mem) {
        free(m);
        return NULL;
    }
    model_point_params(m, m->params_mem, &m->w);
    /* norm gains start at one */
    for (size_t i = 0; i < m->sizes[MP_ATTN_NORM]; i++) m->w.attn_norm[i] = 1.0f;
    for (size_t i = 0; i < m->sizes[MP_FFN_NORM]; i++) m->w.ffn_norm[i] = 1.0f;
    for (size_t i = 0; i < m->sizes[MP_NORM]; i++) m->w.norm[i] = 1.0f;
    return m;
}

void model_destroy(model_t **pm) {
    if (!pm || !*pm) return;
    free((*pm)->params_mem);
    free((*pm)->grads_mem);
    free(*pm);
    *pm = NULL;
}

void model_init_weights(model_t *m, uint64_t seed) {
    rng_t r;
    rng_init(&r, seed);
    float resid = 0.02f / sqrtf(2.0f * (float)m->cfg.n_layers);
    for (int k = 0; k < MP_COUNT; k++) {
        float *p = m->params_mem + m->offsets[k];
        size_t n = m->sizes[k];
        switch (k) {
        case MP_ATTN_NORM:
        case MP_FFN_NORM:
        case MP_NORM:
            for (size_t i = 0; i < n; i++) p[i] = 1.0f;
            break;
        case MP_SCORE:
            for (size_t i = 0; i < n; i++) p[i] = 0.0f;
            break;
        case MP_WO:
        case MP_W2:
            for (size_t i = 0; i < n; i++) p[i] = resid * rng_normal(&r);
            break;
        default:
            for (size_t i = 0; i < n; i++) p[i] = 0.02f * rng_normal(&r);
        }
    }
}

rlhf_err_t model_alloc_grads(model_t *m) {
    if (m->grads_mem) return RLHF_OK;
    m->grads_mem = xalloc(m->n_params);
    if (!m->grads_mem) return RLHF_ENOMEM;
    model_point_params(m, m->grads_mem, &m->g);
    return RLHF_OK;
}

void model_zero_grads(model_t *m) {
    if (m->grads_mem) memset(m->grads_mem, 0, m->n_params * sizeof(float));
}

int model_tensor_per_layer(int k) {
    return k == MP_ATTN_NORM || k == MP_WQ || k == MP_WK || k == MP_WV || k == MP_WO || k == MP_FFN_NORM ||
           k == MP_W1 || k == MP_W3 || k == MP_W2;
}

void model_decay_mask(const model_t *m, uint8_t *mask) {
    for (int k = 0; k < MP_COUNT; k++) {
        int is_norm = k == MP_ATTN_NORM || k == MP_FFN_NORM || k == MP_NORM;
        memset(mask + m->offsets[k], is_norm ? 0 : 1, m->sizes[k]);
    }
}

size_t model_tensor_numel(const model_t *m, int k) {
    return model_tensor_per_layer(k) ? m->sizes[k] / (size_t)m->cfg.n_layers : m->sizes[k];
}

size_t model_tensor_offset(const model_t *m, int k, int l) {
    return m->offsets[k] + (model_tensor_per_layer(k) ? (size_t)l * model_tensor_numel(m, k) : 0);
}

int model_tensor_info(const model_t *m, int k, int l, char *name, size_t namelen, int64_t shape[2]) {
    if (k < 0 || k >= MP_COUNT || m->sizes[k] == 0) return 0;
    const model_config_t *c = &m->cfg;
    int64_t C = c->dim, HS = c->dim / c->n_heads, QC = HS * c->n_heads, KC = HS * c->n_kv_heads;
    static const char *const layer_names[MP_COUNT] = {
        [MP_ATTN_NORM] = "input_layernorm.weight", [MP_WQ] = "self_attn.q_proj.weight",
        [MP_WK] = "self_attn.k_proj.weight",       [MP_WV] = "self_attn.v_proj.weight",
        [MP_WO] = "self_attn.o_proj.weight",       [MP_FFN_NORM] = "post_attention_layernorm.weight",
        [MP_W1] = "mlp.gate_proj.weight",          [MP_W3] = "mlp.up_proj.weight",
        [MP_W2] = "mlp.down_proj.weight"};
    if (model_tensor_per_layer(k)) snprintf(name, namelen, "model.layers.%d.%s", l, layer_names[k]);
    int nd = 2;
    switch (k) {
    case MP_EMB:
        snprintf(name, namelen, "model.embed_tokens.weight");
        shape[0] = c->vocab_size, shape[1] = C;
        break;
    case MP_ATTN_NORM:
    case MP_FFN_NORM: shape[0] = C, nd = 1; break;
    case MP_WQ: shape[0] = QC, shape[1] = C; break;
    case MP_WK:
    case MP_WV: shape[0] = KC, shape[1] = C; break;
    case MP_WO: shape[0] = C, shape[1] = QC; break;
    case MP_W1:
    case MP_W3: shape[0] = c->hidden_dim, shape[1] = C; break;
    case MP_W2: shape[0] = C, shape[1] = c->hidden_dim; break;
    case MP_NORM:
        snprintf(name, namelen, "model.norm.weight");
        shape[0] = C, nd = 1;
        break;
    case MP_LM_HEAD:
        snprintf(name, namelen, "lm_head.weight");
        shape[0] = c->vocab_size, shape[1] = C;
        break;
    case MP_SCORE:
        snprintf(name, namelen, "score.weight");
        shape[0] = 1, shape[1] = C;
        break;
    }
    return nd;
}

/* ---- training activations ---- */

/* Per-layer activations, each an array over layers. */
struct model_acts {
    int B, T; // capacity
    int curB, curT;
    int have_logits;
    float temperature;
    size_t bytes;
    float *mem;
    /* per layer l, offset l*size */
    float *x_in;                        // (L+1, BT, C) residual stream; x_in[L] is the final one
    float *rstd_att;                    // (L, BT)
    float *xn_att;                      // (L, BT, C)
    float *q;                           // (L, BT, QC) after rope
    float *k, *v;                       // (L, BT, KC) k after rope
    float *att;                         // (L, B, NH, T, T)
    float *attout;                      // (L, BT, QC)
    float *x_mid;                       // (L, BT, C)
    float *rstd_ffn;                    // (L, BT)
    float *xn_ffn;                      // (L, BT, C)
    float *h1, *h3;                     // (L, BT, H)
    float *hg;                          // (L, BT, H) silu(h1)*h3
    float *rstd_f;                      // (BT)
    float *xf;                          // (BT, C)
    float *logits;                      // (BT, V)
    float *lse;                         // (BT)
    float *logprobs, *entropy, *values; // (BT)
    /* backward scratch */
    float *dx, *dxn, *dbig; // (BT,C), (BT,C), (BT, max(QC,H))
    float *dq, *dk, *dv;    // (BT,QC), (BT,KC), (BT,KC)
    float *dh1, *dh3;       // (BT,H)
    float *datt;            // (B,NH,T,T)
    float *dlogits;         // (BT,V)
    float *cosv, *sinv;     // (T, HS/2)
    int *pos;               // (BT)
    int *tokens, *targets;  // (BT) copies of the last forward's inputs
};

model_acts_t *model_acts_new(const model_config_t *c, int B, int T) {
    if (B <= 0 || T <= 0 || T > c->max_seq_len) return NULL;
    model_acts_t *a = calloc(1, sizeof(*a));
    if (!a) return NULL;
    a->B = B, a->T = T;
    size_t BT = (size_t)B * T, C = c->dim, L = c->n_layers, H = c->hidden_dim, V = c->vocab_size;
    size_t HS = C / c->n_heads, QC = HS * c->n_heads, KC = HS * c->n_kv_heads, NH = c->n_heads;
    size_t big = QC > H ? QC : H;
    struct {
        float **p;
        size_t n;
    } t[] = {
        {&a->x_in, (L + 1) * BT * C},
        {&a->rstd_att, L * BT},
        {&a->xn_att, L * BT * C},
        {&a->q, L * BT * QC},
        {&a->k, L * BT * KC},
        {&a->v, L * BT * KC},
        {&a->att, L * B * NH * T * T},
        {&a->attout, L * BT * QC},
        {&a->x_mid, L * BT * C},
        {&a->rstd_ffn, L * BT},
        {&a->xn_ffn, L * BT * C},
        {&a->h1, L * BT * H},
        {&a->h3, L * BT * H},
        {&a->hg, L * BT * H},
        {&a->rstd_f, BT},
        {&a->xf, BT * C},
        {&a->logits, BT * V},
        {&a->lse, BT},
        {&a->logprobs, BT},
        {&a->entropy, BT},
        {&a->values, BT},
        {&a->dx, BT * C},
        {&a->dxn, BT * C},
        {&a->dbig, BT * big},
        {&a->dq, BT * QC},
        {&a->dk, BT * KC},
        {&a->dv, BT * KC},
        {&a->dh1, BT * H},
        {&a->dh3, BT * H},
        {&a->datt, B * NH * T * T},
        {&a->dlogits, BT * V},
        {&a->cosv, T * HS / 2},
        {&a->sinv, T * HS / 2},
    };
    size_t n = 0, count = sizeof(t) / sizeof(t[0]);
    for (size_t i = 0; i < count; i++) n += (t[i].n + 15) & ~(size_t)15;
    a->mem = xalloc(n);
    a->pos = calloc(BT, sizeof(int));
    a->tokens = calloc(BT, sizeof(int));
    a->targets = calloc(BT, sizeof(int));
    if (!a->mem || !a->pos || !a->tokens || !a->targets) {
        model_acts_destroy(&a);
        return NULL;
    }
    a->bytes = n * sizeof(float) + 3 * BT * sizeof(int);
    size_t off = 0;
    for (size_t i = 0; i < count; i++) {
        *t[i].p = a->mem + off;
        off += (t[i].n + 15) & ~(size_t)15;
    }
    rope_table(a->cosv, a->sinv, T, (int)HS, c->rope_theta);
    return a;
}

void model_acts_destroy(model_acts_t **pa) {
    if (!pa || !*pa) return;
    free((*pa)->mem);
    free((*pa)->pos);
    free((*pa)->tokens);
    free((*pa)->targets);
    free(*pa);
    *pa = NULL;
}

size_t model_acts_bytes(const model_acts_t *a) {
    return a->bytes;
}
const float *model_acts_logprobs(const model_acts_t *a) {
    return a->logprobs;
}
const float *model_acts_entropy(const model_acts_t *a) {
    return a->entropy;
}
const float *model_acts_values(const model_acts_t *a) {
    return a->values;
}
const float *model_acts_logits(const model_acts_t *a) {
    return a->have_logits ? a->logits : NULL;
}

void model_forward(model_t *m, model_acts_t *a, const int *tokens, const int *targets, int B, int T,
                   float temperature) {
    const model_config_t *c = &m->cfg;
    int C = c->dim, L = c->n_layers, H = c->hidden_dim, V = c->vocab_size, NH = c->n_heads, KVH = c->n_kv_heads;
    int HS = C / NH, QC = HS * NH, KC = HS * KVH, N = B * T;
    const model_params_t *w = &m->w;
    a->curB = B, a->curT = T;
    a->temperature = temperature;
    memcpy(a->tokens, tokens, sizeof(int) * (size_t)N);
    for (int i = 0; i < N; i++) {
        a->pos[i] = i % T;
        a->targets[i] = targets ? targets[i] : -1;
    }
    size_t sC = (size_t)N * C, sQ = (size_t)N * QC, sK = (size_t)N * KC, sH = (size_t)N * H;
    size_t sA = (size_t)B * NH * T * T;
    embedding_forward(a->x_in, tokens, w->emb, N, C);
    for (int l = 0; l < L; l++) {
        float *x = a->x_in + l * sC, *xn = a->xn_att + l * sC, *q = a->q + l * sQ, *k = a->k + l * sK;
        float *v = a->v + l * sK, *att = a->att + l * sA, *ao = a->attout + l * sQ, *xm = a->x_mid + l * sC;
        float *xn2 = a->xn_ffn + l * sC, *h1 = a->h1 + l * sH, *h3 = a->h3 + l * sH, *hg = a->hg + l * sH;
        float *xo = a->x_in + (l + 1) * sC;
        rmsnorm_forward(xn, a->rstd_att + (size_t)l * N, x, w->attn_norm + (size_t)l * C, N, C, c->norm_eps);
        matmul_forward(q, xn, w->wq + (size_t)l * QC * C, N, C, QC, 0);
        matmul_forward(k, xn, w->wk + (size_t)l * KC * C, N, C, KC, 0);
        matmul_forward(v, xn, w->wv + (size_t)l * KC * C, N, C, KC, 0);
        rope_forward(q, a->cosv, a->sinv, a->pos, N, NH, HS);
        rope_forward(k, a->cosv, a->sinv, a->pos, N, KVH, HS);
        attention_forward(ao, att, q, k, v, B, T, NH, KVH, HS);
        memcpy(xm, x, sizeof(float) * sC);
        matmul_forward(xm, ao, w->wo + (size_t)l * C * QC, N, QC, C, 1);
        rmsnorm_forward(xn2, a->rstd_ffn + (size_t)l * N, xm, w->ffn_norm + (size_t)l * C, N, C, c->norm_eps);
        matmul_forward(h1, xn2, w->w1 + (size_t)l * H * C, N, C, H, 0);
        matmul_forward(h3, xn2, w->w3 + (size_t)l * H * C, N, C, H, 0);
        swiglu_forward(hg, h1, h3, sH);
        memcpy(xo, xm, sizeof(float) * sC);
        matmul_forward(xo, hg, w->w2 + (size_t)l * C * H, N, H, C, 1);
    }
    float *xL = a->x_in + (size_t)L * sC;
    rmsnorm_forward(a->xf, a->rstd_f, xL, w->norm, N, C, c->norm_eps);
    a->have_logits = targets != NULL;
    if (targets) {
        matmul_forward(a->logits, a->xf, w->lm_head, N, C, V, 0);
        logprob_forward(a->logprobs, a->entropy, a->lse, a->logits, a->targets, N, V, 1.0f / temperature);
    } else {
        memset(a->logprobs, 0, sizeof(float) * N);
        memset(a->entropy, 0, sizeof(float) * N);
    }
    if (w->score) {
        matmul_forward(a->values, a->xf, w->score, N, C, 1, 0);
    } else {
        memset(a->values, 0, sizeof(float) * N);
    }
}

void model_backward(model_t *m, model_acts_t *a, const float *dlogprobs, const float *dentropy, const float *dvalues) {
    const model_config_t *c = &m->cfg;
    int B = a->curB, T = a->curT;
    int C = c->dim, L = c->n_layers, H = c->hidden_dim, V = c->vocab_size, NH = c->n_heads, KVH = c->n_kv_heads;
    int HS = C / NH, QC = HS * NH, KC = HS * KVH, N = B * T;
    const model_params_t *w = &m->w;
    model_params_t *g = &m->g;
    size_t sC = (size_t)N * C, sQ = (size_t)N * QC, sK = (size_t)N * KC, sH = (size_t)N * H;
    size_t sA = (size_t)B * NH * T * T;

    /* heads -> dxf (kept in dxn) */
    float *dxf = a->dxn;
    memset(dxf, 0, sizeof(float) * sC);
    if (a->have_logits && (dlogprobs || dentropy)) {
        memset(a->dlogits, 0, sizeof(float) * (size_t)N * V);
        logprob_backward(a->dlogits, dlogprobs, dentropy, a->logits, a->lse, a->entropy, a->targets, N, V,
                         1.0f / a->temperature);
        matmul_backward(dxf, g->lm_head, a->dlogits, a->xf, w->lm_head, N, C, V);
    }
    if (w->score && dvalues) matmul_backward(dxf, g->score, dvalues, a->xf, w->score, N, C, 1);
    float *dx = a->dx;
    memset(dx, 0, sizeof(float) * sC);
    rmsnorm_backward(dx, g->norm, dxf, a->x_in + (size_t)L * sC, w->norm, a->rstd_f, N, C);

    for (int l = L - 1; l >= 0; l--) {
        float *x = a->x_in + l * sC, *xn = a->xn_att + l * sC, *q = a->q + l * sQ, *k = a->k + l * sK;
        float *v = a->v + l * sK, *att = a->att + l * sA, *ao = a->attout + l * sQ, *xm = a->x_mid + l * sC;
        float *xn2 = a->xn_ffn + l * sC, *h1 = a->h1 + l * sH, *h3 = a->h3 + l * sH, *hg = a->hg + l * sH;
        /* FFN: xo = xm + W2 hg */
        float *dhg = a->dbig;
        memset(dhg, 0, sizeof(float) * sH);
        matmul_backward(dhg, g->w2 + (size_t)l * C * H, dx, hg, w->w2 + (size_t)l * C * H, N, H, C);
        memset(a->dh1, 0, sizeof(float) * sH);
        memset(a->dh3, 0, sizeof(float) * sH);
        swiglu_backward(a->dh1, a->dh3, dhg, h1, h3, sH);
        float *dxn = a->dxn;
        memset(dxn, 0, sizeof(float) * sC);
        matmul_backward(dxn, g->w1 + (size_t)l * H * C, a->dh1, xn2, w->w1 + (size_t)l * H * C, N, C, H);
        matmul_backward(dxn, g->w3 + (size_t)l * H * C, a->dh3, xn2, w->w3 + (size_t)l * H * C, N, C, H);
        rmsnorm_backward(dx, g->ffn_norm + (size_t)l * C, dxn, xm, w->ffn_norm + (size_t)l * C,
                         a->rstd_ffn + (size_t)l * N, N, C);
        /* attention: xm = x + Wo ao */
        float *dao = a->dbig;
        memset(dao, 0, sizeof(float) * sQ);
        matmul_backward(dao, g->wo + (size_t)l * C * QC, dx, ao, w->wo + (size_t)l * C * QC, N, QC, C);
        memset(a->dq, 0, sizeof(float) * sQ);
        memset(a->dk, 0, sizeof(float) * sK);
        memset(a->dv, 0, sizeof(float) * sK);
        attention_backward(a->dq, a->dk, a->dv, a->datt, dao, att, q, k, v, B, T, NH, KVH, HS);
        rope_backward(a->dq, a->cosv, a->sinv, a->pos, N, NH, HS);
        rope_backward(a->dk, a->cosv, a->sinv, a->pos, N, KVH, HS);
        memset(dxn, 0, sizeof(float) * sC);
        matmul_backward(dxn, g->wq + (size_t)l * QC * C, a->dq, xn, w->wq + (size_t)l * QC * C, N, C, QC);
        matmul_backward(dxn, g->wk + (size_t)l * KC * C, a->dk, xn, w->wk + (size_t)l * KC * C, N, C, KC);
        matmul_backward(dxn, g->wv + (size_t)l * KC * C, a->dv, xn, w->wv + (size_t)l * KC * C, N, C, KC);
        rmsnorm_backward(dx, g->attn_norm + (size_t)l * C, dxn, x, w->attn_norm + (size_t)l * C,
                         a->rstd_att + (size_t)l * N, N, C);
    }
    embedding_backward(g->emb, dx, a->tokens, N, C);
}

float model_sft_step(model_t *m, model_acts_t *a, const int *tokens, const int *targets, int B, int T,
                     int do_backward) {
    int N = B * T, count = 0;
    for (int i = 0; i < N; i++) count += targets[i] >= 0;
    model_forward(m, a, tokens, targets, B, T, 1.0f);
    double loss = 0.0;
    for (int i = 0; i < N; i++)
        if (targets[i] >= 0) loss -= a->logprobs[i];
    if (count == 0) return 0.0f;
    loss /= count;
    if (do_backward) {
        float *d = a->dh1; /* scratch of at least N floats, unused until backward */
        float *dl = malloc(sizeof(float) * (size_t)N);
        if (!dl) return NAN;
        (void)d;
        for (int i = 0; i < N; i++) dl[i] = targets[i] >= 0 ? -1.0f / (float)count : 0.0f;
        model_backward(m, a, dl, NULL, NULL);
        free(dl);
    }
    return (float)loss;
}

/* ---- KV cache and stepping ---- */

struct kvcache {
    int B, T;
    float *k, *v;       // (L, B, KVH, T, HS): one head's history is contiguous
    float *cosv, *sinv; // (T, HS/2)
    /* step scratch for up to B*T rows is too much; sized lazily */
    int cap_rows;
    float *x, *xn, *q, *kk, *vv, *ao, *h1, *h3, *att; // per row scratch
};

kvcache_t *kvcache_new(const model_config_t *c, int B, int T) {
    if (B <= 0 || T <= 0 || T > c->max_seq_len) return NULL;
    kvcache_t *kv = calloc(1, sizeof(*kv));
    if (!kv) return NULL;
    int HS = c->dim / c->n_heads, KC = HS * c->n_kv_heads;
    kv->B = B, kv->T = T;
    size_t n = (size_t)c->n_layers * B * T * KC;
    kv->k = xalloc(n);
    kv->v = xalloc(n);
    kv->cosv = xalloc((size_t)T * HS / 2);
    kv->sinv = xalloc((size_t)T * HS / 2);
    if (!kv->k || !kv->v || !kv->cosv || !kv->sinv) {
        kvcache_destroy(&kv);
        return NULL;
    }
    rope_table(kv->cosv, kv->sinv, T, HS, c->rope_theta);
    return kv;
}

static void kv_free_scratch(kvcache_t *kv) {
    free(kv->x), free(kv->xn), free(kv->q), free(kv->kk), free(kv->vv);
    free(kv->ao), free(kv->h1), free(kv->h3), free(kv->att);
    kv->x = kv->xn = kv->q = kv->kk = kv->vv = kv->ao = kv->h1 = kv->h3 = kv->att = NULL;
    kv->cap_rows = 0;
}

void kvcache_destroy(kvcache_t **pkv) {
    if (!pkv || !*pkv) return;
    kvcache_t *kv = *pkv;
    kv_free_scratch(kv);
    free(kv->k), free(kv->v), free(kv->cosv), free(kv->sinv);
    free(kv);
    *pkv = NULL;
}

int kvcache_slots(const kvcache_t *kv) {
    return kv->B;
}
int kvcache_len(const kvcache_t *kv) {
    return kv->T;
}

static int kv_reserve(kvcache_t *kv, const model_config_t *c, int N) {
    if (N <= kv->cap_rows) return 0;
    kv_free_scratch(kv);
    size_t C = c->dim, H = c->hidden_dim, HS = C / c->n_heads, QC = HS * c->n_heads, KC = HS * c->n_kv_heads;
    size_t n = (size_t)N;
    kv->x = xalloc(n * C), kv->xn = xalloc(n * C), kv->q = xalloc(n * QC), kv->kk = xalloc(n * KC);
    kv->vv = xalloc(n * KC), kv->ao = xalloc(n * QC), kv->h1 = xalloc(n * H), kv->h3 = xalloc(n * H);
    kv->att = xalloc(n * (size_t)c->n_heads * kv->T);
    if (!kv->x || !kv->xn || !kv->q || !kv->kk || !kv->vv || !kv->ao || !kv->h1 || !kv->h3 || !kv->att) {
        kv_free_scratch(kv);
        return -1;
    }
    kv->cap_rows = N;
    return 0;
}

void model_step(model_t *m, kvcache_t *kv, const int *tokens, const int *slot, const int *pos, int N, float *logits) {
    const model_config_t *c = &m->cfg;
    int C = c->dim, L = c->n_layers, H = c->hidden_dim, V = c->vocab_size, NH = c->n_heads, KVH = c->n_kv_heads;
    int HS = C / NH, QC = HS * NH, KC = HS * KVH, T = kv->T, rep = NH / KVH;
    const model_params_t *w = &m->w;
    if (kv_reserve(kv, c, N) != 0) abort(); /* out of memory: fatal, as at start-up */
    float scale = 1.0f / sqrtf((float)HS);
    float *rstd = kv->att; /* reuse: N floats, before attention writes it */
    embedding_forward(kv->x, tokens, w->emb, N, C);
    for (int l = 0; l < L; l++) {
        float *kc = kv->k + (size_t)l * kv->B * T * KC, *vc = kv->v + (size_t)l * kv->B * T * KC;
        rmsnorm_forward(kv->xn, rstd, kv->x, w->attn_norm + (size_t)l * C, N, C, c->norm_eps);
        matmul_forward(kv->q, kv->xn, w->wq + (size_t)l * QC * C, N, C, QC, 0);
        matmul_forward(kv->kk, kv->xn, w->wk + (size_t)l * KC * C, N, C, KC, 0);
        matmul_forward(kv->vv, kv->xn, w->wv + (size_t)l * KC * C, N, C, KC, 0);
        rope_forward(kv->q, kv->cosv, kv->sinv, pos, N, NH, HS);
        rope_forward(kv->kk, kv->cosv, kv->sinv, pos, N, KVH, HS);
        for (int i = 0; i < N; i++) {
            for (int gh = 0; gh < KVH; gh++) {
                size_t off = (((size_t)slot[i] * KVH + gh) * T + pos[i]) * HS;
                memcpy(kc + off, kv->kk + (size_t)i * KC + (size_t)gh * HS, sizeof(float) * HS);
                memcpy(vc + off, kv->vv + (size_t)i * KC + (size_t)gh * HS, sizeof(float) * HS);
            }
        }
#ifdef RLHF_OPENMP
#pragma omp parallel for collapse(2) schedule(static)
#endif
        for (int i = 0; i < N; i++)
            for (int h = 0; h < NH; h++) {
                int gh = h / rep, P = pos[i];
                const float *qi = kv->q + (size_t)i * QC + (size_t)h * HS;
                const float *kb = kc + ((size_t)slot[i] * KVH + gh) * T * HS;
                const float *vb = vc + ((size_t)slot[i] * KVH + gh) * T * HS;
                float *s = kv->att + ((size_t)i * NH + h) * T;
                float mx = -INFINITY;
                for (int t = 0; t <= P; t++) {
                    const float *kt = kb + (size_t)t * HS;
                    float d = 0.0f;
                    _Pragma("omp simd reduction(+ : d)") for (int e = 0; e < HS; e++) d += qi[e] * kt[e];
                    d *= scale;
                    s[t] = d;
                    mx = d > mx ? d : mx;
                }
                float sum = 0.0f;
                _Pragma("omp simd reduction(+ : sum)") for (int t = 0; t <= P; t++) {
                    s[t] = vexpf(s[t] - mx);
                    sum += s[t];
                }
                float inv = 1.0f / sum;
                float *o = kv->ao + (size_t)i * QC + (size_t)h * HS;
                for (int e = 0; e < HS; e++) o[e] = 0.0f;
                for (int t = 0; t <= P; t++) {
                    float p = s[t] * inv;
                    const float *vt = vb + (size_t)t * HS;
                    _Pragma("omp simd") for (int e = 0; e < HS; e++) o[e] += p * vt[e];
                }
            }
        matmul_forward(kv->x, kv->ao, w->wo + (size_t)l * C * QC, N, QC, C, 1);
        rmsnorm_forward(kv->xn, rstd, kv->x, w->ffn_norm + (size_t)l * C, N, C, c->norm_eps);
        matmul_forward(kv->h1, kv->xn, w->w1 + (size_t)l * H * C, N, C, H, 0);
        matmul_forward(kv->h3, kv->xn, w->w3 + (size_t)l * H * C, N, C, H, 0);
        swiglu_forward(kv->h1, kv->h1, kv->h3, (size_t)N * H);
        matmul_forward(kv->x, kv->h1, w->w2 + (size_t)l * C * H, N, H, C, 1);
    }
    if (logits) {
        rmsnorm_forward(kv->xn, rstd, kv->x, w->norm, N, C, c->norm_eps);
        matmul_forward(logits, kv->xn, w->lm_head, N, C, V, 0);
    }
}

void model_set_threads(int n) {
    kernels_set_threads(n);
}
int model_get_threads(void) {
    return kernels_get_threads();
}
