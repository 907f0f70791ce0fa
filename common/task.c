/* task.c - built-in synthetic tasks (see task.h). */
#include "common/task.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/rng.h"
#include "common/tokenizer.h"

#define HELDOUT_MOD 20
#define MAX_TEXT    32 // "999999999+999999999=" and its NUL fit with room

typedef enum { TASK_KIND_ADD } task_kind_t;

struct task {
    char name[16];
    task_kind_t kind;
    task_config_t cfg;
    int n[2];       // problems per split
    uint32_t *a[2]; // (n[split]) first operands, owned
    uint32_t *b[2]; // (n[split]) second operands, owned
};

/* ---- "add" ---- */

static const uint32_t pow10_u32[TASK_MAX_DIGITS + 1] = {
    1u, 10u, 100u, 1000u, 10000u, 100000u, 1000000u, 10000000u, 100000000u, 1000000000u,
};

/* Smallest number with d digits: 0 for d = 1 (0 is a 1-digit number). */
static uint32_t digits_lo(int d) {
    return d == 1 ? 0u : pow10_u32[d - 1];
}

/* Key of the held-out hash for a seed, computed once per task. */
static uint64_t add_hold_key(uint64_t seed) {
    return rng_mix(seed ^ 0x6164642d686f6c64ULL);
} // "add-hold"

static int add_is_heldout(uint64_t hold_key, uint32_t a, uint32_t b) {
    return rng_mix(hold_key ^ (((uint64_t)a << 32) | b)) % HELDOUT_MOD == 0;
}

static uint32_t add_operand(rng_t *r, int lo_d, int hi_d) {
    int d = lo_d + (int)rng_below(r, (uint32_t)(hi_d - lo_d + 1));
    uint32_t lo = digits_lo(d);
    return lo + rng_below(r, pow10_u32[d] - lo);
}

/* Open-addressing set of (a, b) pairs; keys are (a << 32 | b) + 1 so that
 * 0 marks an empty slot. */
typedef struct {
    uint64_t *slots;
    size_t mask;
} pairset_t;

static int pairset_init(pairset_t *s, int n) {
    size_t cap = 16;
    while (cap < (size_t)n * 2) cap <<= 1;
    s->slots = calloc(cap, sizeof(uint64_t));
    s->mask = cap - 1;
    return s->slots != NULL;
}

/* Insert; 1 if it was new, 0 if already there. */
static int pairset_add(pairset_t *s, uint32_t a, uint32_t b) {
    uint64_t key = (((uint64_t)a << 32) | b) + 1;
    size_t i = (size_t)rng_mix(key) & s->mask;
    while (s->slots[i]) {
        if (s->slots[i] == key) return 0;
        i = (i + 1) & s->mask;
    }
    s->slots[i] = key;
    return 1;
}

/* All avail pairs of split in a fixed order, then a partial Fisher-Yates
 * shuffle keeps n of them: exact when n is most of what the range holds. */
static void add_fill_enumerated(task_t *t, int split, int n, uint64_t avail, rng_t *r) {
    const task_config_t *c = &t->cfg;
    uint32_t lo = digits_lo(c->min_digits), hi = pow10_u32[c->max_digits];
    uint64_t key = add_hold_key(c->seed);
    uint32_t *A = t->a[split], *B = t->b[split];
    size_t k = 0;
    for (uint32_t a = lo; a < hi; a++)
        for (uint32_t b = lo; b < hi; b++)
            if (add_is_heldout(key, a, b) == (split == TASK_HELDOUT)) {
                A[k] = a;
                B[k] = b;
                k++;
            }
    for (int i = 0; i < n; i++) {
        size_t j = (size_t)i + (size_t)(rng_u64(r) % (avail - (uint64_t)i));
        uint32_t ta = A[i], tb = B[i];
        A[i] = A[j];
        B[i] = B[j];
        A[j] = ta;
        B[j] = tb;
    }
}

/* Draw n distinct pairs of split into t->a[split], t->b[split]. */
static rlhf_err_t add_fill(task_t *t, int split, int n, char *err, size_t errlen) {
    const task_config_t *c = &t->cfg;
    const char *field = split == TASK_TRAIN ? "n_train" : "n_heldout";
    const char *sname = split == TASK_TRAIN ? "train" : "held-out";
    uint64_t key = add_hold_key(c->seed);

    /* Count the pairs available to the split when the range is small enough
     * (up to 4M pairs, a few ms). Above that about 1/20 of the pairs, over
     * 200k, are held out and the rest train; the attempt cap below reports
     * a request too close to that. */
    uint32_t lo = digits_lo(c->min_digits), hi = pow10_u32[c->max_digits];
    uint64_t span = hi - lo, total = span * span, avail = 0;
    int counted = total <= (1u << 22);
    if (counted) {
        for (uint32_t a = lo; a < hi; a++)
            for (uint32_t b = lo; b < hi; b++)
                if (add_is_heldout(key, a, b) == (split == TASK_HELDOUT)) avail++;
        if ((uint64_t)n > avail)
            return rlhf_seterr(err, errlen, RLHF_ERANGE,
                               "task add: %s = %d but digits %d..%d hold only %llu distinct %s pairs; "
                               "lower %s or raise max_digits",
                               field, n, c->min_digits, c->max_digits, (unsigned long long)avail, sname, field);
    }

    rng_t r;
    rng_init(&r, rng_mix(c->seed ^ (split == TASK_TRAIN ? 0x747261696eULL : 0x68656c646f7574ULL)));
    /* Rejection sampling needs ~n draws while n is a small part of avail;
     * past half of it the rarest pairs make that a coupon collector, so
     * enumerate instead (uniform over pairs rather than over digit counts,
     * which hardly matters when most pairs are taken anyway). */
    int enumerate = counted && (uint64_t)n * 2 > avail;
    size_t len = enumerate ? (size_t)avail : (size_t)n;
    t->a[split] = malloc((len ? len : 1) * sizeof(uint32_t));
    t->b[split] = malloc((len ? len : 1) * sizeof(uint32_t));
    if (!t->a[split] || !t->b[split])
        return rlhf_seterr(err, errlen, RLHF_ENOMEM, "task add: out of memory for %zu problems", len);
    if (enumerate) {
        add_fill_enumerated(t, split, n, avail, &r);
        t->n[split] = n;
        uint32_t *a = realloc(t->a[split], (size_t)(n ? n : 1) * sizeof(uint32_t)); // give back the rest
        if (a) t->a[split] = a;
        uint32_t *b = realloc(t->b[split], (size_t)(n ? n : 1) * sizeof(uint32_t));
        if (b) t->b[split] = b;
        return RLHF_OK;
    }

    pairset_t seen = {0};
    if (!pairset_init(&seen, n))
        return rlhf_seterr(err, errlen, RLHF_ENOMEM, "task add: out of memory for %d problems", n);
    /* Digit counts are drawn uniformly, so short pairs (only 100 with one
     * digit each) run out first and later draws of them are rejected. */
    uint64_t attempts = 0, max_attempts = 64 * (uint64_t)n + (1u << 20);
    int got = 0;
    while (got < n) {
        if (attempts++ >= max_attempts) {
            free(seen.slots);
            return rlhf_seterr(err, errlen, RLHF_ERANGE,
                               "task add: found only %d of %s = %d distinct %s pairs for digits %d..%d; "
                               "lower %s or raise max_digits",
                               got, field, n, sname, c->min_digits, c->max_digits, field);
        }
        uint32_t a = add_operand(&r, c->min_digits, c->max_digits);
        uint32_t b = add_operand(&r, c->min_digits, c->max_digits);
        if (add_is_heldout(key, a, b) != (split == TASK_HELDOUT)) continue;
        if (!pairset_add(&seen, a, b)) continue;
        t->a[split][got] = a;
        t->b[split][got] = b;
        got++;
    }
    free(seen.slots);
    t->n[split] = n;
    return RLHF_OK;
}

/* ---- lifecycle ---- */

void task_config_default(const char *name, task_config_t *cfg) {
    (void)name; // every task so far shares the "add" defaults
    cfg->seed = 1234;
    cfg->min_digits = 1;
    cfg->max_digits = 3;
    cfg->n_train = 20000;
    cfg->n_heldout = 500;
    cfg->careless = 0.0f;
}

static rlhf_err_t validate(const task_config_t *c, char *err, size_t errlen) {
    if (c->min_digits < 1 || c->min_digits > TASK_MAX_DIGITS)
        return rlhf_seterr(err, errlen, RLHF_ERANGE, "task: min_digits = %d must be in 1..%d", c->min_digits,
                           TASK_MAX_DIGITS);
    if (c->max_digits < c->min_digits || c->max_digits > TASK_MAX_DIGITS)
        return rlhf_seterr(err, errlen, RLHF_ERANGE, "task: max_digits = %d must be in min_digits (%d)..%d",
                           c->max_digits, c->min_digits, TASK_MAX_DIGITS);
    if (c->n_train < 1 || c->n_train > TASK_MAX_EXAMPLES)
        return rlhf_seterr(err, errlen, RLHF_ERANGE, "task: n_train = %d must be in 1..%d", c->n_train,
                           TASK_MAX_EXAMPLES);
    if (c->n_heldout < 0 || c->n_heldout > TASK_MAX_EXAMPLES)
        return rlhf_seterr(err, errlen, RLHF_ERANGE, "task: n_heldout = %d must be in 0..%d", c->n_heldout,
                           TASK_MAX_EXAMPLES);
    if (!(c->careless >= 0.0f && c->careless <= 1.0f))
        return rlhf_seterr(err, errlen, RLHF_ERANGE, "task: careless = %g must be in 0..1", (double)c->careless);
    return RLHF_OK;
}

task_t *task_new_err(const char *name, const task_config_t *cfg, char *err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    if (!name || strcmp(name, "add") != 0) {
        rlhf_seterr(err, errlen, RLHF_ENOTFOUND, "task: unknown task \"%s\"; known tasks: add", name ? name : "(null)");
        return NULL;
    }
    task_config_t c;
    if (cfg)
        c = *cfg;
    else
        task_config_default(name, &c);
    if (validate(&c, err, errlen) != RLHF_OK) return NULL;

    task_t *t = calloc(1, sizeof(*t));
    if (!t) {
        rlhf_seterr(err, errlen, RLHF_ENOMEM, "task: out of memory");
        return NULL;
    }
    snprintf(t->name, sizeof(t->name), "%s", name);
    t->kind = TASK_KIND_ADD;
    t->cfg = c;
    switch (t->kind) {
    case TASK_KIND_ADD:
        if (add_fill(t, TASK_TRAIN, c.n_train, err, errlen) != RLHF_OK) goto fail;
        if (add_fill(t, TASK_HELDOUT, c.n_heldout, err, errlen) != RLHF_OK) goto fail;
        break;
    }
    return t;
fail:
    task_destroy(&t);
    return NULL;
}

task_t *task_new(const char *name, const task_config_t *cfg) {
    return task_new_err(name, cfg, NULL, 0);
}

void task_destroy(task_t **p) {
    if (!p || !*p) return;
    for (int s = 0; s < 2; s++) {
        free((*p)->a[s]);
        free((*p)->b[s]);
    }
    free(*p);
    *p = NULL;
}

const char *task_name(const task_t *t) {
    return t->name;
}

const task_config_t *task_config(const task_t *t) {
    return &t->cfg;
}

int task_size(const task_t *t, int split) {
    return t && (split == TASK_TRAIN || split == TASK_HELDOUT) ? t->n[split] : 0;
}

/* ---- problems ---- */

static int valid(const task_t *t, int split, int i) {
    return i >= 0 && i < task_size(t, split);
}

int task_prompt_text(const task_t *t, int split, int i, char *buf, size_t cap) {
    if (!valid(t, split, i)) return -1;
    return snprintf(buf, cap, "%u+%u=", (unsigned)t->a[split][i], (unsigned)t->b[split][i]);
}

int task_answer_text(const task_t *t, int split, int i, char *buf, size_t cap) {
    if (!valid(t, split, i)) return -1;
    return snprintf(buf, cap, "%u", (unsigned)(t->a[split][i] + t->b[split][i]));
}

/* Digits of x (x = 0 has one). */
static int ndigits(uint32_t x) {
    int d = 1;
    while (x >= 10) x /= 10, d++;
    return d;
}

/* The careless answer's width: digits of the longer operand. The answer is
 * a + b mod 10^width, written with that many digits: the carry out of the
 * leftmost column is forgotten (58+67 -> "25", 50+50 -> "00"). */
static int careless_width(uint32_t a, uint32_t b) {
    int da = ndigits(a), db = ndigits(b);
    return da > db ? da : db;
}

int task_demo_is_careless(const task_t *t, int split, int i) {
    if (!valid(t, split, i)) return -1;
    uint32_t a = t->a[split][i], b = t->b[split][i];
    if (t->cfg.careless <= 0.0f || ndigits(a + b) <= careless_width(a, b)) return 0; // no carry out
    /* top 24 bits of a keyed hash as a uniform draw in [0, 1) */
    uint64_t h = rng_mix(rng_mix(t->cfg.seed ^ 0x6361726573737373ULL) ^ (((uint64_t)a << 32) | b)); // "caress.."
    return (double)(h >> 40) / (double)(1u << 24) < (double)t->cfg.careless;
}

int task_demo(const task_t *t, int split, int i, int *tokens, int cap) {
    int careless = task_demo_is_careless(t, split, i);
    if (careless <= 0) return careless < 0 ? -1 : task_answer(t, split, i, tokens, cap);
    char text[MAX_TEXT];
    uint32_t a = t->a[split][i], b = t->b[split][i];
    int w = careless_width(a, b);
    int len = snprintf(text, sizeof text, "%0*u", w, (unsigned)((a + b) % pow10_u32[w]));
    if (cap < len + 1) return -1;
    tok_encode(text, (size_t)len, tokens, cap);
    tokens[len] = TOK_EOS;
    return len + 1;
}

int task_prompt(const task_t *t, int split, int i, int *tokens, int cap) {
    char text[MAX_TEXT];
    int len = task_prompt_text(t, split, i, text, sizeof(text));
    if (len < 0 || cap < len + 1) return -1;
    tokens[0] = TOK_BOS;
    return 1 + tok_encode(text, (size_t)len, tokens + 1, cap - 1);
}

int task_answer(const task_t *t, int split, int i, int *tokens, int cap) {
    char text[MAX_TEXT];
    int len = task_answer_text(t, split, i, text, sizeof(text));
    if (len < 0 || cap < len + 1) return -1;
    tok_encode(text, (size_t)len, tokens, cap);
    tokens[len] = TOK_EOS;
    return len + 1;
}

float task_score(const task_t *t, int split, int i, const int *completion, int n) {
    char ans[MAX_TEXT];
    int len = task_answer_text(t, split, i, ans, sizeof(ans));
    if (len < 0 || !completion || n < 0) return 0.0f;
    int j = 0;
    for (; j < n && completion[j] != TOK_EOS; j++) {
        int id = completion[j];
        if (j >= len || id < 0 || id >= TOK_N_BYTES || id != (unsigned char)ans[j]) return 0.0f;
    }
    return j == len ? 1.0f : 0.0f;
}
