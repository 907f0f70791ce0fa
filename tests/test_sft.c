/*
 * test_sft.c - SFT data loading (jsonl validation), batching with the loss
 * on completion tokens only, exact resume from a checkpoint, and learning.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/checkpoint.h"
#include "common/evaluate.h"
#include "common/sft.h"
#include "common/tokenizer.h"
#include "tests/testutil.h"

static char g_dir[256];

static const char *write_file(const char *name, const char *text) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_jsonl_load(void **state) {
    (void)state;
    const char *p = write_file("ok.jsonl", "{\"prompt\": \"ab\", \"completion\": \"c\"}\n\n"
                                           "{\"prompt\": \"\", \"completion\": \"xyz\", \"extra\": 1}\n");
    sft_data_t d;
    char err[512] = "";
    assert_int_equal(sft_data_load_jsonl(&d, p, 64, err, sizeof err), RLHF_OK);
    assert_int_equal(d.n, 2);
    int want0[] = {TOK_BOS, 'a', 'b', 'c', TOK_EOS};
    assert_int_equal(d.ex[0].len, 5);
    assert_int_equal(d.ex[0].prompt_len, 3);
    assert_memory_equal(d.ex[0].tokens, want0, sizeof want0);
    assert_int_equal(d.ex[1].prompt_len, 1);
    assert_int_equal(d.ex[1].len, 5);
    assert_int_equal(d.max_len, 5);
    /* batch: right-padded, targets only where the next token is completion */
    int idx[2] = {0, 1}, tok[10], tgt[10], nl;
    int T = sft_data_batch(&d, idx, 2, 64, tok, tgt, &nl);
    assert_int_equal(T, 5);
    int want_tgt0[] = {-1, -1, 'c', TOK_EOS, -1};
    int want_tgt1[] = {'x', 'y', 'z', TOK_EOS, -1};
    assert_memory_equal(tgt, want_tgt0, sizeof want_tgt0);
    assert_memory_equal(tgt + 5, want_tgt1, sizeof want_tgt1);
    assert_int_equal(nl, 6);
    sft_data_fini(&d);

    struct {
        const char *text, *needle;
        rlhf_err_t code;
    } bad[] = {
        {"{\"prompt\": \"a\", \"completion\": \"b\"}\n{not json}\n", ":2:", RLHF_EFORMAT},
        {"{\"prompt\": \"a\"}\n", "'completion'", RLHF_EFORMAT},
        {"{\"prompt\": 5, \"completion\": \"b\"}\n", "'prompt'", RLHF_EFORMAT},
        {"[1, 2]\n", "JSON object", RLHF_EFORMAT},
        {"{\"prompt\": \"a\", \"completion\": \"\"}\n", "empty", RLHF_EFORMAT},
        {"{\"prompt\": \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\", \"completion\": \"b\"}\n",
         "context 64", RLHF_ERANGE},
        {"", "no examples", RLHF_EFORMAT},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        p = write_file("bad.jsonl", bad[i].text);
        err[0] = 0;
        rlhf_err_t rc = sft_data_load_jsonl(&d, p, 64, err, sizeof err);
        printf("bad jsonl %zu: %s\n", i, err);
        assert_int_equal(rc, bad[i].code);
        assert_non_null(strstr(err, bad[i].needle));
    }
    assert_int_equal(sft_data_load_jsonl(&d, "/nonexistent/x.jsonl", 64, err, sizeof err), RLHF_EIO);
    assert_non_null(strstr(err, "/nonexistent/x.jsonl"));
}

static model_t *tiny_model(void) {
    model_config_t cfg;
    model_config_preset(&cfg, "tiny");
    model_t *m = model_new(&cfg);
    model_init_weights(m, 5);
    return m;
}

/* 6 steps straight == 3 steps, save, fresh process state, load, 3 steps. */
static void test_exact_resume(void **state) {
    (void)state;
    task_t *t = task_new("add", NULL);
    sft_data_t d;
    char err[512];
    assert_int_equal(sft_data_from_task(&d, t, TASK_TRAIN, 128, err, sizeof err), RLHF_OK);
    sft_config_t c;
    sft_config_default(&c);
    c.batch = 8, c.steps = 6, c.opt.warmup_steps = 2, c.opt.total_steps = 6;
    model_t *a = tiny_model();
    sft_t *sa = sft_new(a, &d, &c);
    for (int i = 0; i < 6; i++) sft_step(sa, NULL, NULL, NULL);

    model_t *b = tiny_model();
    sft_t *sb = sft_new(b, &d, &c);
    for (int i = 0; i < 3; i++) sft_step(sb, NULL, NULL, NULL);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/resume", g_dir);
    assert_int_equal(sft_save(sb, dir, err, sizeof err), RLHF_OK);
    sft_destroy(&sb);
    model_destroy(&b);

    model_t *r = NULL;
    assert_int_equal(checkpoint_load_model(dir, &r, err, sizeof err), RLHF_OK);
    sft_t *sr = sft_new(r, &d, &c);
    assert_int_equal(sft_resume(sr, dir, err, sizeof err), RLHF_OK);
    assert_int_equal(sft_steps_done(sr), 3);
    for (int i = 0; i < 3; i++) sft_step(sr, NULL, NULL, NULL);
    double diff = tu_maxabs(a->params_mem, r->params_mem, a->n_params);
    printf("resume: max |param diff| after 3+3 vs 6 steps = %g\n", diff);
    assert_memory_equal(a->params_mem, r->params_mem, a->n_params * sizeof(float));
    /* and the training actually moved the weights */
    model_t *init = tiny_model();
    assert_true(tu_maxabs(a->params_mem, init->params_mem, a->n_params) > 1e-4);
    model_destroy(&init);
    sft_destroy(&sa), sft_destroy(&sr);
    model_destroy(&a), model_destroy(&r);
    sft_data_fini(&d);
    task_destroy(&t);
}

static void test_sft_learns_task(void **state) {
    (void)state;
    task_config_t tc;
    task_config_default("add", &tc);
    tc.min_digits = 1, tc.max_digits = 1, tc.n_train = 80, tc.n_heldout = 2;
    char err[512];
    task_t *t = task_new_err("add", &tc, err, sizeof err);
    if (!t) printf("task: %s\n", err);
    assert_non_null(t);
    sft_data_t d;
    assert_int_equal(sft_data_from_task(&d, t, TASK_TRAIN, 128, err, sizeof err), RLHF_OK);
    sft_config_t c;
    sft_config_default(&c);
    c.batch = 32, c.steps = 300, c.opt.lr = 3e-3f, c.opt.warmup_steps = 20, c.opt.total_steps = 300;
    model_t *m = tiny_model();
    eval_result_t before, after;
    assert_int_equal(eval_task(m, t, TASK_TRAIN, 0, 32, 4, &before), RLHF_OK);
    sft_t *s = sft_new(m, &d, &c);
    float first = sft_step(s, NULL, NULL, NULL), last = 0;
    for (int i = 1; i < c.steps; i++) last = sft_step(s, NULL, NULL, NULL);
    assert_int_equal(eval_task(m, t, TASK_TRAIN, 0, 32, 4, &after), RLHF_OK);
    printf("sft single-digit add: loss %.3f -> %.3f, train exact-match %.2f -> %.2f\n", first, last, before.score,
           after.score);
    assert_true(last < 0.25f * first);
    assert_true(after.score > 0.8 && before.score < 0.2);
    sft_destroy(&s);
    model_destroy(&m);
    sft_data_fini(&d);
    task_destroy(&t);
}

static int setup(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/rlhf_test_sft_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd);
}

int main(void) {
    model_set_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jsonl_load),
        cmocka_unit_test(test_exact_resume),
        cmocka_unit_test(test_sft_learns_task),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
