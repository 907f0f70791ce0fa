/*
 * test_task.c - built-in tasks: determinism, disjoint splits, correct
 * answers (recomputed here from the prompt text), and a verifier that
 * accepts exactly the reference answer.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "common/task.h"
#include "common/tokenizer.h"

/* Parse "a+b=" strictly (digits only, no leading zeros unless "0"). */
static void parse_prompt(const char *s, unsigned long long *a, unsigned long long *b) {
    char re[64];
    int n = 0;
    assert_int_equal(sscanf(s, "%llu+%llu=%n", a, b, &n), 2);
    assert_int_equal(n, (int)strlen(s));
    snprintf(re, sizeof(re), "%llu+%llu=", *a, *b);
    assert_string_equal(re, s);
}

static int n_digits(unsigned long long x) {
    int d = 1;
    while (x >= 10) {
        x /= 10;
        d++;
    }
    return d;
}

/* First three train then first three held-out prompts of the default task. */
#define GOLDEN_DEFAULT "49+7= 1+3= 0+19= 432+669= 7+93= 114+78= "

static uint64_t pair_key(unsigned long long a, unsigned long long b) {
    return ((uint64_t)a << 32) | b;
}

static int cmp_u64(const void *x, const void *y) {
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? -1 : a > b;
}

/* Sorted keys of a split's pairs; *n out. Caller frees. */
static uint64_t *split_keys(const task_t *t, int split, int *n) {
    *n = task_size(t, split);
    uint64_t *k = malloc((size_t)(*n ? *n : 1) * sizeof(uint64_t));
    char buf[64];
    for (int i = 0; i < *n; i++) {
        unsigned long long a, b;
        assert_true(task_prompt_text(t, split, i, buf, sizeof(buf)) > 0);
        parse_prompt(buf, &a, &b);
        k[i] = pair_key(a, b);
    }
    qsort(k, (size_t)*n, sizeof(uint64_t), cmp_u64);
    return k;
}

/* Problems within each split are distinct; no held-out pair is in train. */
static void check_disjoint(const task_t *t) {
    int ntr, nho;
    uint64_t *tr = split_keys(t, TASK_TRAIN, &ntr), *ho = split_keys(t, TASK_HELDOUT, &nho);
    for (int i = 1; i < ntr; i++) assert_true(tr[i - 1] < tr[i]);
    for (int i = 1; i < nho; i++) assert_true(ho[i - 1] < ho[i]);
    for (int i = 0; i < nho; i++) assert_null(bsearch(&ho[i], tr, (size_t)ntr, sizeof(uint64_t), cmp_u64));
    free(tr);
    free(ho);
}

/* Problems come in random order: about half of the neighbours ascend. */
static void check_shuffled(const task_t *t, int split) {
    int n = task_size(t, split), up = 0;
    uint64_t prev = 0;
    char buf[64];
    for (int i = 0; i < n; i++) {
        unsigned long long a, b;
        task_prompt_text(t, split, i, buf, sizeof(buf));
        parse_prompt(buf, &a, &b);
        uint64_t k = pair_key(a, b);
        if (i > 0) up += k > prev;
        prev = k;
    }
    assert_true(up > (n - 1) * 3 / 10 && up < (n - 1) * 7 / 10);
}

static void test_defaults(void **state) {
    (void)state;
    task_config_t c;
    memset(&c, 0xab, sizeof(c));
    task_config_default("add", &c);
    assert_int_equal(c.seed, 1234);
    assert_int_equal(c.min_digits, 1);
    assert_int_equal(c.max_digits, 3);
    assert_int_equal(c.n_train, 20000);
    assert_int_equal(c.n_heldout, 500);
    assert_true(c.careless == 0.0f);

    task_t *t = task_new("add", NULL);
    assert_non_null(t);
    assert_string_equal(task_name(t), "add");
    assert_int_equal(task_size(t, TASK_TRAIN), 20000);
    assert_int_equal(task_size(t, TASK_HELDOUT), 500);
    assert_int_equal(task_size(t, 2), 0);
    assert_int_equal(task_size(t, -1), 0);
    const task_config_t *tc = task_config(t); // field by field: padding bytes differ
    assert_true(tc->seed == c.seed && tc->min_digits == c.min_digits && tc->max_digits == c.max_digits &&
                tc->n_train == c.n_train && tc->n_heldout == c.n_heldout && tc->careless == c.careless);
    task_destroy(&t);
    assert_null(t);
    task_destroy(&t); // idempotent
    task_destroy(NULL);
}

static void test_deterministic(void **state) {
    (void)state;
    task_config_t c;
    task_config_default("add", &c);
    task_t *t1 = task_new("add", &c), *t2 = task_new("add", NULL);
    assert_non_null(t1);
    assert_non_null(t2);
    char b1[64], b2[64];
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < task_size(t1, s); i++) {
            task_prompt_text(t1, s, i, b1, sizeof(b1));
            task_prompt_text(t2, s, i, b2, sizeof(b2));
            assert_string_equal(b1, b2);
        }
    task_destroy(&t1);
    task_destroy(&t2);
}

/* The default task is pinned: a run's prompts must not change silently
 * between versions (results and resumed runs depend on them). Update these
 * only on purpose. */
static void test_golden(void **state) {
    (void)state;
    task_t *t = task_new("add", NULL);
    assert_non_null(t);
    char buf[64], all[256] = "";
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < 3; i++) {
            task_prompt_text(t, s, i, buf, sizeof(buf));
            strcat(all, buf);
            strcat(all, " ");
        }
    printf("golden: %s\n", all);
    assert_string_equal(all, GOLDEN_DEFAULT);
    task_destroy(&t);
}

static void test_seeds_differ(void **state) {
    (void)state;
    task_config_t c;
    task_config_default("add", &c);
    c.n_train = 2000;
    c.n_heldout = 200;
    task_t *t1 = task_new("add", &c);
    c.seed = 1235;
    task_t *t2 = task_new("add", &c);
    assert_non_null(t1);
    assert_non_null(t2);
    int same[2] = {0, 0};
    char b1[64], b2[64];
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < task_size(t1, s); i++) {
            task_prompt_text(t1, s, i, b1, sizeof(b1));
            task_prompt_text(t2, s, i, b2, sizeof(b2));
            same[s] += strcmp(b1, b2) == 0;
        }
    assert_true(same[TASK_TRAIN] < 100);
    assert_true(same[TASK_HELDOUT] < 10);
    /* as sets too, not just shifted: the overlap is what chance gives (the
     * 100 one-digit pairs recur in any large sample), well below a third */
    int n1, n2, common = 0;
    uint64_t *k1 = split_keys(t1, TASK_TRAIN, &n1), *k2 = split_keys(t2, TASK_TRAIN, &n2);
    for (int i = 0; i < n1; i++) common += bsearch(&k1[i], k2, (size_t)n2, sizeof(uint64_t), cmp_u64) != NULL;
    assert_true(common < n1 / 3);
    free(k1);
    free(k2);
    task_destroy(&t1);
    task_destroy(&t2);
}

static void test_splits_disjoint(void **state) {
    (void)state;
    task_t *t = task_new("add", NULL);
    assert_non_null(t);
    check_disjoint(t);
    task_destroy(&t);
    /* and with sizes that force the exhaustive path (most pairs taken) */
    task_config_t c;
    task_config_default("add", &c);
    c.max_digits = 2;
    c.n_train = 9000;  // of ~9500 train pairs in 0..99 x 0..99
    c.n_heldout = 400; // of ~500
    char err[256];
    t = task_new_err("add", &c, err, sizeof(err));
    if (!t) fail_msg("%s", err);
    check_disjoint(t);
    check_shuffled(t, TASK_TRAIN);
    check_shuffled(t, TASK_HELDOUT);
    task_destroy(&t);
    /* every train pair of 0..999 x 0..999: the count comes from the error
     * for one too many; exactly that many must then work */
    c.max_digits = 3;
    c.n_train = 1000000;
    c.n_heldout = 10;
    assert_null(task_new_err("add", &c, err, sizeof(err)));
    const char *only = strstr(err, "hold only ");
    assert_non_null(only);
    long avail = strtol(only + strlen("hold only "), NULL, 10);
    assert_true(avail > 940000 && avail < 960000); // 19/20 of 10^6
    c.n_train = (int)avail + 1;
    assert_null(task_new_err("add", &c, err, sizeof(err)));
    c.n_train = (int)avail;
    t = task_new_err("add", &c, err, sizeof(err));
    if (!t) fail_msg("%s", err);
    check_disjoint(t);
    check_shuffled(t, TASK_TRAIN);
    task_destroy(&t);
    c.max_digits = 1;
    c.n_train = 80; // of ~95
    c.n_heldout = 0;
    t = task_new_err("add", &c, err, sizeof(err));
    if (!t) fail_msg("%s", err);
    assert_int_equal(task_size(t, TASK_HELDOUT), 0);
    check_disjoint(t);
    task_destroy(&t);
}

static void check_problems(const task_t *t, int min_d, int max_d) {
    int seen_a[10] = {0}, seen_b[10] = {0};
    for (int s = 0; s < 2; s++) {
        for (int i = 0; i < task_size(t, s); i++) {
            char p[64], a_txt[64], want[64];
            unsigned long long a, b;
            int plen = task_prompt_text(t, s, i, p, sizeof(p));
            assert_int_equal(plen, (int)strlen(p));
            parse_prompt(p, &a, &b);
            assert_true(n_digits(a) >= min_d && n_digits(a) <= max_d);
            assert_true(n_digits(b) >= min_d && n_digits(b) <= max_d);
            seen_a[n_digits(a)]++;
            seen_b[n_digits(b)]++;
            snprintf(want, sizeof(want), "%llu", a + b);
            assert_int_equal(task_answer_text(t, s, i, a_txt, sizeof(a_txt)), (int)strlen(want));
            assert_string_equal(a_txt, want);

            int tok[64];
            int n = task_prompt(t, s, i, tok, 64);
            assert_int_equal(n, plen + 1);
            assert_int_equal(tok[0], TOK_BOS);
            for (int j = 0; j < plen; j++) assert_int_equal(tok[1 + j], (unsigned char)p[j]);
            int alen = (int)strlen(want);
            n = task_answer(t, s, i, tok, 64);
            assert_int_equal(n, alen + 1);
            for (int j = 0; j < alen; j++) assert_int_equal(tok[j], (unsigned char)want[j]);
            assert_int_equal(tok[alen], TOK_EOS);
            assert_true(task_score(t, s, i, tok, n) == 1.0f);
        }
    }
    /* digit counts are drawn uniformly, so short operands are far more
     * common than among uniform numbers (1 in 100 below 10 for 1..3 digits);
     * the few short pairs run out, so each count gets at least 10% */
    int total = task_size(t, TASK_TRAIN) + task_size(t, TASK_HELDOUT);
    for (int d = min_d; d <= max_d; d++) {
        assert_true(seen_a[d] > total / 10);
        assert_true(seen_b[d] > total / 10);
    }
}

/* Both ends of every digit range occur (0, 9, 10, 99, 100, 999). */
static void check_range_ends(const task_t *t) {
    static const unsigned long long ends[] = {0, 9, 10, 99, 100, 999};
    int found_a[6] = {0}, found_b[6] = {0};
    char buf[64];
    for (int i = 0; i < task_size(t, TASK_TRAIN); i++) {
        unsigned long long a, b;
        task_prompt_text(t, TASK_TRAIN, i, buf, sizeof(buf));
        parse_prompt(buf, &a, &b);
        for (int e = 0; e < 6; e++) {
            found_a[e] |= a == ends[e];
            found_b[e] |= b == ends[e];
        }
    }
    for (int e = 0; e < 6; e++) {
        if (!found_a[e] || !found_b[e]) fail_msg("operand %llu never drawn", ends[e]);
    }
}

static void test_answers(void **state) {
    (void)state;
    task_t *t = task_new("add", NULL);
    assert_non_null(t);
    check_problems(t, 1, 3);
    check_range_ends(t);
    task_destroy(&t);

    task_config_t c = {.seed = 5, .min_digits = 2, .max_digits = 2, .n_train = 500, .n_heldout = 50};
    t = task_new("add", &c);
    assert_non_null(t);
    check_problems(t, 2, 2);
    task_destroy(&t);

    c = (task_config_t){.seed = 6, .min_digits = 7, .max_digits = 9, .n_train = 1000, .n_heldout = 100};
    t = task_new("add", &c);
    assert_non_null(t);
    check_problems(t, 7, 9);
    check_disjoint(t);
    task_destroy(&t);
}

/* Build ids from a string, with an optional EOS. */
static int ids_of(const char *s, int eos, int *out) {
    int n = tok_encode(s, strlen(s), out, 64);
    if (eos) out[n++] = TOK_EOS;
    return n;
}

static void test_verifier(void **state) {
    (void)state;
    task_t *t = task_new("add", NULL);
    assert_non_null(t);
    rng_t r;
    rng_init(&r, 3);
    for (int s = 0; s < 2; s++) {
        for (int i = 0; i < task_size(t, s); i += 97) {
            char ans[32], buf[64];
            task_answer_text(t, s, i, ans, sizeof(ans));
            int alen = (int)strlen(ans);
            int c[64], n;

            n = ids_of(ans, 1, c);
            assert_true(task_score(t, s, i, c, n) == 1.0f);
            n = ids_of(ans, 0, c); // no EOS: all tokens count
            assert_true(task_score(t, s, i, c, n) == 1.0f);
            n = ids_of(ans, 1, c); // anything after the EOS is ignored
            c[n++] = 'x';
            c[n++] = -5;
            c[n++] = INT_MAX;
            assert_true(task_score(t, s, i, c, n) == 1.0f);

            /* wrong, empty, too long, too short, padded */
            snprintf(buf, sizeof(buf), "%s", ans);
            buf[alen - 1] = buf[alen - 1] == '9' ? '0' : (char)(buf[alen - 1] + 1);
            n = ids_of(buf, 1, c);
            assert_true(task_score(t, s, i, c, n) == 0.0f);
            assert_true(task_score(t, s, i, c, 0) == 0.0f);
            c[0] = TOK_EOS;
            assert_true(task_score(t, s, i, c, 1) == 0.0f);
            snprintf(buf, sizeof(buf), "%s0", ans);
            n = ids_of(buf, 1, c);
            assert_true(task_score(t, s, i, c, n) == 0.0f);
            n = ids_of(ans, 1, c); // the right tokens, cut short by n
            assert_true(task_score(t, s, i, c, alen - 1) == 0.0f);
            snprintf(buf, sizeof(buf), " %s", ans);
            n = ids_of(buf, 1, c);
            assert_true(task_score(t, s, i, c, n) == 0.0f);
            snprintf(buf, sizeof(buf), "0%s", ans);
            n = ids_of(buf, 1, c);
            assert_true(task_score(t, s, i, c, n) == 0.0f);
            snprintf(buf, sizeof(buf), "%s ", ans);
            n = ids_of(buf, 1, c);
            assert_true(task_score(t, s, i, c, n) == 0.0f);

            /* specials and out-of-range ids before the EOS are wrong */
            int bad[] = {TOK_PAD, TOK_BOS, TOK_END, TOK_USER, TOK_RESERVED, 264,
                         1000,    -1,      INT_MIN, INT_MAX,  256 + '0',    (unsigned char)ans[0] - 256};
            for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
                n = ids_of(ans, 0, c);
                c[n++] = bad[k]; // after the answer
                c[n++] = TOK_EOS;
                assert_true(task_score(t, s, i, c, n) == 0.0f);
                n = ids_of(ans, 1, c);
                c[0] = bad[k]; // in place of a digit
                assert_true(task_score(t, s, i, c, n) == 0.0f);
            }

            /* random garbage: 1 exactly when it spells the answer */
            for (int trial = 0; trial < 200; trial++) {
                int len = (int)rng_below(&r, 12);
                for (int j = 0; j < len; j++) {
                    uint32_t pick = rng_below(&r, 4);
                    c[j] = pick == 0   ? (int)rng_u64(&r)
                           : pick == 1 ? (int)rng_below(&r, TOK_VOCAB_SIZE)
                           : pick == 2 ? '0' + (int)rng_below(&r, 10)
                                       : (unsigned char)ans[j % alen];
                }
                int end = 0;
                while (end < len && c[end] != TOK_EOS) end++;
                int want = end == alen;
                for (int j = 0; want && j < end; j++) want = c[j] == (unsigned char)ans[j];
                assert_true(task_score(t, s, i, c, len) == (want ? 1.0f : 0.0f));
            }
        }
    }
    /* invalid arguments score 0 and do not crash */
    int c[8];
    int n = task_answer(t, TASK_TRAIN, 0, c, 8);
    assert_true(task_score(t, TASK_TRAIN, 0, NULL, n) == 0.0f);
    assert_true(task_score(t, TASK_TRAIN, 0, c, -1) == 0.0f);
    assert_true(task_score(t, 2, 0, c, n) == 0.0f);
    assert_true(task_score(t, TASK_TRAIN, -1, c, n) == 0.0f);
    assert_true(task_score(t, TASK_TRAIN, task_size(t, TASK_TRAIN), c, n) == 0.0f);
    assert_true(task_score(t, TASK_HELDOUT, INT_MAX, c, n) == 0.0f);
    task_destroy(&t);
}

static void test_buffers(void **state) {
    (void)state;
    task_config_t c = {.seed = 9, .min_digits = 3, .max_digits = 3, .n_train = 10, .n_heldout = 2};
    task_t *t = task_new("add", &c);
    assert_non_null(t);
    char p[64];
    int plen = task_prompt_text(t, TASK_TRAIN, 0, p, sizeof(p));
    assert_int_equal(plen, 8); // "ddd+ddd="
    int tok[16];
    for (int i = 0; i < 16; i++) tok[i] = -9;
    assert_int_equal(task_prompt(t, TASK_TRAIN, 0, tok, plen), -1);
    assert_int_equal(tok[0], -9);
    assert_int_equal(task_prompt(t, TASK_TRAIN, 0, tok, plen + 1), plen + 1);
    char a[64];
    int alen = task_answer_text(t, TASK_TRAIN, 0, a, sizeof(a));
    assert_int_equal(task_answer(t, TASK_TRAIN, 0, tok, alen), -1);
    assert_int_equal(task_answer(t, TASK_TRAIN, 0, tok, alen + 1), alen + 1);
    /* snprintf semantics for text */
    char small[4];
    assert_int_equal(task_prompt_text(t, TASK_TRAIN, 0, small, sizeof(small)), plen);
    assert_int_equal(strlen(small), 3);
    assert_memory_equal(small, p, 3);
    assert_int_equal(task_prompt_text(t, TASK_TRAIN, 0, NULL, 0), plen);
    /* invalid (split, i) */
    assert_int_equal(task_prompt(t, TASK_HELDOUT, 2, tok, 16), -1);
    assert_int_equal(task_answer(t, 7, 0, tok, 16), -1);
    assert_int_equal(task_prompt_text(t, TASK_TRAIN, -1, p, sizeof(p)), -1);
    assert_int_equal(task_answer_text(t, TASK_TRAIN, 10, p, sizeof(p)), -1);
    task_destroy(&t);
}

static void expect_error(const char *name, const task_config_t *c, const char *needle) {
    char err[256] = "untouched";
    task_t *t = task_new_err(name, c, err, sizeof(err));
    assert_null(t);
    if (!strstr(err, needle)) fail_msg("error \"%s\" does not mention \"%s\"", err, needle);
    assert_null(task_new(name, c));
}

/* Careless demonstrations: only problems whose sum carries out of the
 * leftmost column, about the asked fraction of them, each the sum without
 * that carry, padded to the longer operand's width. */
static void test_careless(void **state) {
    (void)state;
    task_config_t c;
    task_config_default("add", &c);
    c.max_digits = 2;
    c.n_train = 4000;
    c.n_heldout = 100;
    c.careless = 0.5f;
    task_t *t = task_new("add", &c);
    assert_non_null(t);
    int carry = 0, careless = 0;
    for (int i = 0; i < task_size(t, TASK_TRAIN); i++) {
        char p[32], a[32];
        task_prompt_text(t, TASK_TRAIN, i, p, sizeof p);
        task_answer_text(t, TASK_TRAIN, i, a, sizeof a);
        unsigned x, y;
        assert_int_equal(sscanf(p, "%u+%u=", &x, &y), 2);
        unsigned w = (x >= 10 || y >= 10) ? 100 : 10; // two digits at most here
        int has_carry = x + y >= w;
        carry += has_carry;
        int demo[16], is = task_demo_is_careless(t, TASK_TRAIN, i);
        int n = task_demo(t, TASK_TRAIN, i, demo, 16);
        assert_true(n >= 2 && demo[n - 1] == TOK_EOS);
        char d[16] = {0};
        for (int j = 0; j < n - 1; j++) d[j] = (char)demo[j];
        if (!has_carry) assert_int_equal(is, 0);
        if (is) {
            careless++;
            char want[16];
            snprintf(want, sizeof want, "%0*u", w == 100 ? 2 : 1, (x + y) % w);
            assert_string_equal(d, want);
            assert_string_not_equal(d, a);
        } else {
            assert_string_equal(d, a);
        }
    }
    printf("careless 0.5: %d of %d carrying problems careless\n", careless, carry);
    assert_true(carry > 500);
    assert_true(fabs((double)careless / carry - 0.5) < 0.05);
    assert_int_equal(task_demo_is_careless(t, TASK_TRAIN, -1), -1);
    task_destroy(&t);
    c.careless = 1.5f;
    char err[200];
    assert_null(task_new_err("add", &c, err, sizeof err));
    assert_non_null(strstr(err, "careless"));
}

static void test_errors(void **state) {
    (void)state;
    expect_error("mul", NULL, "mul");
    expect_error(NULL, NULL, "unknown task");
    task_config_t d, c;
    task_config_default("add", &d);
    c = d, c.min_digits = 0;
    expect_error("add", &c, "min_digits");
    c = d, c.max_digits = 10;
    expect_error("add", &c, "max_digits");
    c = d, c.min_digits = 3, c.max_digits = 2;
    expect_error("add", &c, "max_digits");
    c = d, c.n_train = 0;
    expect_error("add", &c, "n_train");
    c = d, c.n_heldout = -1;
    expect_error("add", &c, "n_heldout");
    c = d, c.n_train = TASK_MAX_EXAMPLES + 1;
    expect_error("add", &c, "n_train");
    c = d, c.max_digits = 1; // 100 pairs in all
    expect_error("add", &c, "n_train");
    c = d, c.max_digits = 1, c.n_train = 50, c.n_heldout = 50;
    expect_error("add", &c, "n_heldout");
    /* a NULL err buffer is fine */
    assert_null(task_new_err("nope", NULL, NULL, 0));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),     cmocka_unit_test(test_deterministic),   cmocka_unit_test(test_golden),
        cmocka_unit_test(test_seeds_differ), cmocka_unit_test(test_splits_disjoint), cmocka_unit_test(test_answers),
        cmocka_unit_test(test_verifier),     cmocka_unit_test(test_buffers),         cmocka_unit_test(test_errors),
        cmocka_unit_test(test_careless),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
