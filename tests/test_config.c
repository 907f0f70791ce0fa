/*
 * test_config.c - the configuration: defaults, configs/default.yaml, every
 * kind of error (one line naming the key, the right code), overrides and
 * their precedence, the environment mapping, dump -> load round trips,
 * cross-field validation, and the bridges to the modules' configs.
 *
 * `test_config --write-default FILE` writes the built-in defaults as YAML
 * (how configs/default.yaml is regenerated after a schema change).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/config.h"
#include "common/tokenizer.h"

#define DEFAULT_YAML RLHF_FIXTURES "/../../configs/default.yaml"

static char g_dir[64]; // mkdtemp'd per test group
static int g_n_files;  // files written there

static int group_setup(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/rlhf_test_config_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int group_teardown(void **state) {
    (void)state;
    char path[256];
    for (int i = 0; i < g_n_files; i++) {
        snprintf(path, sizeof path, "%s/f%d.yaml", g_dir, i);
        unlink(path);
    }
    return rmdir(g_dir);
}

/* Write text to a fresh file in g_dir; returns its path (static until the
 * next call). */
static const char *write_tmp(const char *text) {
    static char path[256];
    snprintf(path, sizeof path, "%s/f%d.yaml", g_dir, g_n_files++);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
    return path;
}

/* An error is one non-empty line containing each of the given pieces. */
static void check_err(rlhf_err_t rc, rlhf_err_t want, const char *err, ...) {
    if (rc != want) fprintf(stderr, "got %s, want %s: %s\n", rlhf_strerror(rc), rlhf_strerror(want), err);
    assert_int_equal(rc, want);
    assert_true(strlen(err) > 0);
    assert_null(strchr(err, '\n'));
    va_list ap;
    va_start(ap, err);
    for (const char *s; (s = va_arg(ap, const char *)) != NULL;) {
        if (!strstr(err, s)) fprintf(stderr, "error '%s' lacks '%s'\n", err, s);
        assert_non_null(strstr(err, s));
    }
    va_end(ap);
}

/* Load text (from a temp file) over defaults; returns the code, err filled. */
static rlhf_err_t load_text(rlhf_config_t *c, const char *text, char *err, size_t errlen, const char **path) {
    const char *p = write_tmp(text);
    if (path) *path = p;
    config_init(c);
    return config_load(c, p, err, errlen);
}

/* Set every key to a valid value different from the one it has, through
 * config_set, with values that stress the writer (quotes, backslashes, '#',
 * ':' in strings; odd floats; a seed above 2^63). */
static void perturb(rlhf_config_t *c) {
    size_t n;
    const config_key_t *s = config_schema(&n);
    char err[512], before[1200], after[1200], v[600];
    for (size_t i = 0; i < n; i++) {
        const config_key_t *k = &s[i];
        assert_true(config_get(c, k->key, before, sizeof before) >= 0);
        /* an enum of one value cannot change */
        int ok = k->type == CONFIG_ENUM && !k->choices[1];
        for (int attempt = 0; attempt < 8 && !ok; attempt++) {
            switch (k->type) {
            case CONFIG_INT: {
                long long cur = atoll(before), cand[] = {cur + 1, cur - 1, (long long)k->min, (long long)k->max};
                snprintf(v, sizeof v, "%lld", cand[attempt % 4]);
                break;
            }
            case CONFIG_U64: snprintf(v, sizeof v, "%s", attempt ? "7" : "18446744073709551557"); break;
            case CONFIG_FLOAT: {
                double cur = atof(before);
                double hi = isfinite(k->max) ? k->max : cur + 10;
                double cand[] = {cur * 0.7 + 1e-7, cur * 1.3, k->min + (hi - k->min) * 0.3337, hi * 0.9, 1e-7};
                snprintf(v, sizeof v, "%.9g", cand[attempt % 5]);
                break;
            }
            case CONFIG_BOOL: snprintf(v, sizeof v, "%s", strcmp(before, "true") ? "yes" : "off"); break;
            case CONFIG_ENUM: {
                const char *ch = k->choices[attempt % 2 ? 0 : 1];
                snprintf(v, sizeof v, "%s", ch ? ch : k->choices[0]);
                break;
            }
            case CONFIG_STRING:
                if (k->flags & CONFIG_F_HOST)
                    snprintf(v, sizeof v, "%s", attempt ? "10.0.0.7" : "learner-0.example");
                else
                    snprintf(v, sizeof v, "%s", attempt ? "x" : "a dir/with \"quotes\" \\ #hash: colon 'single' ~");
                break;
            case CONFIG_INT_LIST: snprintf(v, sizeof v, "%s", attempt ? "[]" : "[1, 2, 300, 16777215]"); break;
            }
            if (config_set(c, k->key, v, err, sizeof err) != RLHF_OK) continue;
            assert_true(config_get(c, k->key, after, sizeof after) >= 0);
            ok = strcmp(before, after) != 0;
        }
        if (!ok) fprintf(stderr, "could not perturb %s (at %s)\n", k->key, before);
        assert_true(ok);
    }
}

/* ---- defaults and the schema ---- */

static void test_defaults(void **state) {
    (void)state;
    rlhf_config_t c;
    char err[512];
    config_init(&c);
    assert_int_equal(config_validate(&c, err, sizeof err), RLHF_OK);

    /* Llama 2 optimizer and PPO recipe */
    assert_true(c.ppo.beta1 == 0.9f && c.ppo.beta2 == 0.95f && c.ppo.adam_eps == 1e-5f);
    assert_true(c.ppo.weight_decay == 0.1f && c.ppo.grad_clip == 1.0f && c.ppo.clip == 0.2f);
    assert_string_equal(c.run.algo, "ppo");
    assert_int_equal(c.sampling.n_stop, 1);
    assert_int_equal(c.sampling.stop[0], TOK_EOS);
    /* the protocol's default ports */
    assert_int_equal(c.learner.work_port, 5555);
    assert_int_equal(c.learner.weights_port, 5560);

    /* the run's default task: two-digit sums, demonstrations careless on 70%
     * of the carrying ones (README: why RL, not SFT, does the lifting) */
    task_config_t want, got;
    task_config_default("add", &want);
    config_to_task(&c, &got);
    assert_true(got.seed == want.seed);
    assert_int_equal(got.min_digits, 2);
    assert_int_equal(got.max_digits, 2);
    assert_int_equal(got.n_train, 7000);
    assert_int_equal(got.n_heldout, 300);
    assert_true(fabsf(got.careless - 0.7f) < 1e-6f);
    char terr[256];
    task_t *tk = task_new_err("add", &got, terr, sizeof terr); // the default fits its digit range
    assert_non_null(tk);
    task_destroy(&tk);

    /* schema: findable, one section level, help, unique env names,
     * defaults read back as written */
    size_t n;
    const config_key_t *s = config_schema(&n);
    assert_true(n > 50);
    for (size_t i = 0; i < n; i++) {
        assert_ptr_equal(config_find(s[i].key), &s[i]);
        const char *dot = strchr(s[i].key, '.');
        assert_non_null(dot);
        assert_null(strchr(dot + 1, '.'));
        assert_true(s[i].help && strlen(s[i].help) > 3 && !strchr(s[i].help, '\n'));
        assert_true(strlen(s[i].key) < CONFIG_KEY_LEN);
        char e1[160], e2[160];
        config_env_name(s[i].key, e1, sizeof e1);
        for (size_t j = 0; j < i; j++) {
            config_env_name(s[j].key, e2, sizeof e2);
            assert_string_not_equal(e1, e2);
        }
        rlhf_config_t d;
        config_init(&d);
        assert_int_equal(config_set(&d, s[i].key, s[i].def, err, sizeof err), RLHF_OK);
        assert_null(config_diff(&c, &d));
    }
    char e[64];
    config_env_name("ppo.kl_coef", e, sizeof e);
    assert_string_equal(e, "RLHF_PPO_KL_COEF");
    assert_null(config_find("ppo"));
    assert_null(config_find("ppo.nope"));
}

static void test_default_yaml(void **state) {
    (void)state;
    rlhf_config_t def, c;
    char err[512];
    config_init(&def);
    config_init(&c);
    rlhf_err_t rc = config_load(&c, DEFAULT_YAML, err, sizeof err);
    if (rc != RLHF_OK) fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, RLHF_OK);
    const char *d = config_diff(&def, &c);
    if (d) fprintf(stderr, "configs/default.yaml differs from the built-in defaults at %s\n", d);
    assert_null(d);

    /* every key is in the file: loading it over a config where every key
     * differs gives the defaults back */
    perturb(&c);
    assert_non_null(config_diff(&def, &c));
    assert_int_equal(config_load(&c, DEFAULT_YAML, err, sizeof err), RLHF_OK);
    d = config_diff(&def, &c);
    if (d) fprintf(stderr, "configs/default.yaml lacks %s\n", d);
    assert_null(d);
}

/* ---- errors ---- */

static void test_error_unknown(void **state) {
    (void)state;
    rlhf_config_t c;
    char err[512], want[512];
    const char *p;
    rlhf_err_t rc = load_text(&c, "ppo:\n  clip: 0.1\n  clipp: 0.1\n", err, sizeof err, &p);
    snprintf(want, sizeof want, "%s:3:3: unknown key 'ppo.clipp' (did you mean 'ppo.clip'?)", p);
    check_err(rc, RLHF_ENOTFOUND, err, want, NULL);
    assert_string_equal(err, want);

    rc = load_text(&c, "ppoo:\n  clip: 0.1\n", err, sizeof err, NULL);
    check_err(rc, RLHF_ENOTFOUND, err, ":1:1:", "unknown section 'ppoo'", "did you mean 'ppo'?", NULL);
    /* a key in the wrong section, and a key without its section */
    rc = load_text(&c, "ppo:\n  temperature: 0.5\n", err, sizeof err, NULL);
    check_err(rc, RLHF_ENOTFOUND, err, ":2:3:", "'ppo.temperature'", "'sampling.temperature'", NULL);
    rc = load_text(&c, "clip: 0.1\n", err, sizeof err, NULL);
    check_err(rc, RLHF_ENOTFOUND, err, "'clip'", "'ppo.clip'", NULL);
    rc = load_text(&c, "ppo:\n  batch: 8\n", err, sizeof err, NULL);
    check_err(rc, RLHF_ENOTFOUND, err, "'ppo.batch'", "'ppo.batch_prompts'", NULL);
    rc = load_text(&c, "ppo:\n  zzzzzzzzzzz: 1\n", err, sizeof err, NULL);
    check_err(rc, RLHF_ENOTFOUND, err, "unknown key 'ppo.zzzzzzzzzzz'", "configs/default.yaml", NULL);
    assert_null(strstr(err, "did you mean"));

    assert_int_equal(config_set(&c, "ppo.clipp", "0.1", err, sizeof err), RLHF_ENOTFOUND);
    check_err(RLHF_ENOTFOUND, RLHF_ENOTFOUND, err, "unknown key 'ppo.clipp' (did you mean 'ppo.clip'?)", NULL);
    assert_int_equal(config_set(&c, "ppo", "1", err, sizeof err), RLHF_ENOTFOUND);
    check_err(RLHF_ENOTFOUND, RLHF_ENOTFOUND, err, "'ppo' is a section", "ppo.", NULL);
}

static void test_error_values(void **state) {
    (void)state;
    rlhf_config_t c;
    char err[512], want[512];
    const char *p;
    rlhf_err_t rc = load_text(&c, "# comment\nppo:\n  clip: abc\n", err, sizeof err, &p);
    snprintf(want, sizeof want, "%s:3:9: 'ppo.clip' must be a number in (0, 1) (got 'abc')", p);
    check_err(rc, RLHF_EMISMATCH, err, want, NULL);
    assert_string_equal(err, want);

    rc = load_text(&c, "ppo:\n  clip: 1.5\n", err, sizeof err, NULL);
    check_err(rc, RLHF_ERANGE, err, ":2:9:", "'ppo.clip' must be a number in (0, 1) (got '1.5')", NULL);
    rc = load_text(&c, "ppo:\n  clip: 0\n", err, sizeof err, NULL);
    check_err(rc, RLHF_ERANGE, err, "'ppo.clip'", NULL);
    rc = load_text(&c, "ppo:\n  clip: .nan\n", err, sizeof err, NULL);
    check_err(rc, RLHF_EMISMATCH, err, "'ppo.clip'", NULL);
    rc = load_text(&c, "ppo:\n  lr: 1e999\n", err, sizeof err, NULL);
    check_err(rc, RLHF_ERANGE, err, "'ppo.lr'", NULL);
    rc = load_text(&c, "ppo:\n  epochs: 2.5\n", err, sizeof err, NULL);
    check_err(rc, RLHF_EMISMATCH, err, "'ppo.epochs' must be an integer in [1, 100] (got '2.5')", NULL);
    rc = load_text(&c, "ppo:\n  epochs: 0\n", err, sizeof err, NULL);
    check_err(rc, RLHF_ERANGE, err, "'ppo.epochs' must be an integer in [1, 100] (got '0')", NULL);
    rc = load_text(&c, "ppo:\n  epochs: 99999999999999999999\n", err, sizeof err, NULL);
    check_err(rc, RLHF_EMISMATCH, err, "'ppo.epochs'", NULL);
    rc = load_text(&c, "ppo:\n  epochs:\n", err, sizeof err, NULL);
    check_err(rc, RLHF_EMISMATCH, err, "'ppo.epochs' must be an integer", NULL);
    rc = load_text(&c, "run:\n  seed: -1\n", err, sizeof err, NULL);
    check_err(rc, RLHF_EMISMATCH, err, "'run.seed'", NULL);
    rc = load_text(&c, "ppo:\n  kl_adaptive: maybe\n", err, sizeof err, NULL);
    check_err(rc, RLHF_EMISMATCH, err, "'ppo.kl_adaptive' must be true or false (got 'maybe')", NULL);
    rc = load_text(&c, "ppo:\n  clip: 1\n", err, sizeof err, NULL);
    check_err(rc, RLHF_ERANGE, err, "'ppo.clip' must be a number in (0, 1) (got '1')", NULL);
    rc = load_text(&c, "run:\n  algo: dpo\n", err, sizeof err, NULL);
    check_err(rc, RLHF_EINVAL, err, ":2:9:", "'run.algo' must be one of ppo, grpo, rloo (got 'dpo')", NULL);
    rc = load_text(&c, "model:\n  preset: huge\n", err, sizeof err, NULL);
    check_err(rc, RLHF_EINVAL, err, "'model.preset' must be one of tiny, small, base, stories15m", NULL);
    rc = load_text(&c, "actor:\n  learner: tcp://10.0.0.1:5555\n", err, sizeof err, NULL);
    check_err(rc, RLHF_EINVAL, err, "'actor.learner' must be a host name or IP", NULL);
    rc = load_text(&c, "reward:\n  learner: learner:5557\n", err, sizeof err, NULL);
    check_err(rc, RLHF_EINVAL, err, "'reward.learner' must be a host name or IP", "learner.*_port", NULL);
    assert_int_equal(config_set(&c, "actor.learner", "[::1]", err, sizeof err), RLHF_OK);
    rc = load_text(&c, "actor:\n  learner: \"\"\n", err, sizeof err, NULL);
    check_err(rc, RLHF_EINVAL, err, "'actor.learner' must not be empty", NULL);
    char longv[700];
    memset(longv, 'a', sizeof longv - 1);
    longv[sizeof longv - 1] = '\0';
    assert_int_equal(config_set(&c, "run.out_dir", longv, err, sizeof err), RLHF_ERANGE);
    check_err(RLHF_ERANGE, RLHF_ERANGE, err, "'run.out_dir' is too long", NULL);
    /* structure where a value belongs, and the other way round */
    rc = load_text(&c, "ppo:\n  clip:\n    x: 1\n", err, sizeof err, NULL);
    check_err(rc, RLHF_EMISMATCH, err, ":3:5:", "'ppo.clip' must be a number in (0, 1), not a mapping", NULL);
    rc = load_text(&c, "ppo:\n  clip: [0.1]\n", err, sizeof err, NULL);
    check_err(rc, RLHF_EMISMATCH, err, "'ppo.clip' must be a number in (0, 1), not a list", NULL);
    rc = load_text(&c, "ppo: 3\n", err, sizeof err, NULL);
    check_err(rc, RLHF_EMISMATCH, err, "'ppo' is a section", NULL);
    /* lists */
    rc = load_text(&c, "sampling:\n  stop: [1, 2, 3, 4, 5, 6, 7, 8, 9]\n", err, sizeof err, NULL);
    check_err(rc, RLHF_ERANGE, err, ":2:9:", "'sampling.stop' must be a list of at most 8 integers", NULL);
    rc = load_text(&c, "sampling:\n  stop: [1, x]\n", err, sizeof err, NULL);
    check_err(rc, RLHF_EMISMATCH, err, "'sampling.stop'", "[1, x]", NULL);
    rc = load_text(&c, "sampling:\n  stop: [-1]\n", err, sizeof err, NULL);
    check_err(rc, RLHF_ERANGE, err, "'sampling.stop'", NULL);
    rc = load_text(&c, "sampling:\n  stop: [[1]]\n", err, sizeof err, NULL);
    check_err(rc, RLHF_EMISMATCH, err, "'sampling.stop'", NULL);

    /* a failed load changes nothing */
    rlhf_config_t before;
    config_init(&c);
    c.ppo.k = 7;
    before = c;
    rc = config_load(&c, write_tmp("ppo:\n  clip: 0.3\n  epochs: 9\n  lr: zero\n"), err, sizeof err);
    assert_int_equal(rc, RLHF_EMISMATCH);
    assert_null(config_diff(&before, &c));
    assert_int_equal(config_set(&c, "sampling.stop", "[1, 2, x]", err, sizeof err), RLHF_EMISMATCH);
    assert_null(config_diff(&before, &c));
}

static void test_error_yaml(void **state) {
    (void)state;
    rlhf_config_t c;
    char err[512], want[512];
    const char *p;
    /* duplicates: within a section, across spellings, whole sections */
    rlhf_err_t rc = load_text(&c, "ppo:\n  clip: 0.1\n  lr: 1e-4\n  clip: 0.2\n", err, sizeof err, &p);
    snprintf(want, sizeof want, "%s:4:3: duplicate key 'ppo.clip' (first set at line 2)", p);
    check_err(rc, RLHF_EINVAL, err, want, NULL);
    rc = load_text(&c, "ppo:\n  clip: 0.1\nppo.clip: 0.2\n", err, sizeof err, NULL);
    check_err(rc, RLHF_EINVAL, err, ":3:1:", "duplicate key 'ppo.clip'", NULL);
    rc = load_text(&c, "ppo:\n  clip: 0.1\nrun:\n  steps: 3\nppo:\n  lr: 1e-4\n", err, sizeof err, NULL);
    check_err(rc, RLHF_EINVAL, err, ":5:1:", "duplicate key 'ppo'", NULL);

    /* malformed YAML, with the line */
    rc = load_text(&c, "ppo:\n  clip: 0.1\n lr: 1e-4\n", err, sizeof err, &p);
    snprintf(want, sizeof want, "%s:3:", p);
    check_err(rc, RLHF_EFORMAT, err, want, "malformed YAML", NULL);
    rc = load_text(&c, "sampling:\n  stop: [1, 2\nrun:\n  steps: 3\n", err, sizeof err, NULL);
    check_err(rc, RLHF_EFORMAT, err, "malformed YAML", NULL);
    rc = load_text(&c, "ppo:\n\tclip: 0.1\n", err, sizeof err, NULL);
    check_err(rc, RLHF_EFORMAT, err, ":2:", "malformed YAML", NULL);
    rc = load_text(&c, "ppo:\n  clip: \"0.1\n", err, sizeof err, NULL);
    check_err(rc, RLHF_EFORMAT, err, "malformed YAML", NULL);
    rc = load_text(&c, "- ppo\n- run\n", err, sizeof err, NULL);
    check_err(rc, RLHF_EFORMAT, err, ":1:1:", "top level must be a mapping", NULL);
    rc = load_text(&c, "ppo:\n  clip: 0.1\n---\nppo:\n  clip: 0.2\n", err, sizeof err, NULL);
    check_err(rc, RLHF_EFORMAT, err, ":3:", "second YAML document", NULL);
    rc = load_text(&c, "ppo:\n  clip: &c 0.1\nsampling:\n  top_p: *c\n", err, sizeof err, NULL);
    check_err(rc, RLHF_EFORMAT, err, ":4:10:", "aliases", NULL);
    rc = load_text(&c, "? [a]\n: 1\n", err, sizeof err, NULL);
    check_err(rc, RLHF_EFORMAT, err, "keys must be plain names", NULL);
    rc = load_text(&c, "ppo:\n  clip: 0.1\n\xff\xfe\n", err, sizeof err, NULL);
    check_err(rc, RLHF_EFORMAT, err, "malformed YAML", NULL);

    /* missing file, and a directory */
    config_init(&c);
    rc = config_load(&c, "/nonexistent/rlhf/x.yaml", err, sizeof err);
    check_err(rc, RLHF_EIO, err, "/nonexistent/rlhf/x.yaml: cannot open: No such file or directory", NULL);
    rc = config_load(&c, g_dir, err, sizeof err);
    check_err(rc, RLHF_EIO, err, g_dir, "cannot read", NULL);

    /* accepted forms: empty file, comments only, empty section, dotted keys,
     * null string, quoted numbers, YAML booleans, flow mappings */
    rlhf_config_t def;
    config_init(&def);
    assert_int_equal(load_text(&c, "", err, sizeof err, NULL), RLHF_OK);
    assert_null(config_diff(&def, &c));
    assert_int_equal(load_text(&c, "# nothing\n---\n", err, sizeof err, NULL), RLHF_OK);
    assert_null(config_diff(&def, &c));
    assert_int_equal(load_text(&c, "ppo:\n  # clip: 0.1\nrun:\n", err, sizeof err, NULL), RLHF_OK);
    assert_null(config_diff(&def, &c));
    rc = load_text(&c,
                   "ppo.clip: 0.3\nmodel:\n  init:\n  dim: \"128\"\nppo:\n  whiten_advantages: No\n"
                   "sampling: {top_k: 40, stop: [10, 258]}\nrun: {out_dir: 'a b', seed: 18446744073709551615}\n",
                   err, sizeof err, NULL);
    if (rc != RLHF_OK) fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, RLHF_OK);
    assert_true(c.ppo.clip == 0.3f);
    assert_string_equal(c.model.init, "");
    assert_int_equal(c.model.dim, 128);
    assert_false(c.ppo.whiten_advantages);
    assert_int_equal(c.sampling.top_k, 40);
    assert_int_equal(c.sampling.n_stop, 2);
    assert_int_equal(c.sampling.stop[0], 10);
    assert_int_equal(c.sampling.stop[1], 258);
    assert_string_equal(c.run.out_dir, "a b");
    assert_true(c.run.seed == UINT64_MAX);
}

/* ---- overrides ---- */

static void test_set_get(void **state) {
    (void)state;
    rlhf_config_t c;
    char err[512], buf[128];
    config_init(&c);
    assert_int_equal(config_set(&c, "ppo.clip", "0.1", err, sizeof err), RLHF_OK);
    assert_true(c.ppo.clip == 0.1f);
    assert_int_equal(config_set(&c, "ppo.whiten_advantages", "false", err, sizeof err), RLHF_OK);
    assert_false(c.ppo.whiten_advantages);
    assert_int_equal(config_set(&c, "sampling.stop", "258,10", err, sizeof err), RLHF_OK);
    assert_int_equal(c.sampling.n_stop, 2);
    assert_int_equal(config_set(&c, "sampling.stop", "", err, sizeof err), RLHF_OK);
    assert_int_equal(c.sampling.n_stop, 0);
    assert_int_equal(config_set(&c, "sampling.stop", "[ 258 ]", err, sizeof err), RLHF_OK);
    assert_int_equal(c.sampling.n_stop, 1);
    assert_int_equal(config_set(&c, "run.algo", "rloo", err, sizeof err), RLHF_OK);
    assert_string_equal(c.run.algo, "rloo");

    assert_int_equal(config_get(&c, "ppo.clip", buf, sizeof buf), 3);
    assert_string_equal(buf, "0.1");
    config_get(&c, "ppo.adam_eps", buf, sizeof buf);
    assert_string_equal(buf, "1.0e-05");
    config_get(&c, "ppo.gamma", buf, sizeof buf);
    assert_string_equal(buf, "1.0");
    config_get(&c, "ppo.reward_clip", buf, sizeof buf);
    assert_string_equal(buf, "10.0");
    assert_int_equal(config_set(&c, "ppo.grad_clip", "1e6", err, sizeof err), RLHF_OK);
    config_get(&c, "ppo.grad_clip", buf, sizeof buf);
    assert_string_equal(buf, "1000000.0");
    config_get(&c, "sampling.stop", buf, sizeof buf);
    assert_string_equal(buf, "[258]");
    config_get(&c, "ppo.whiten_advantages", buf, sizeof buf);
    assert_string_equal(buf, "false");
    assert_int_equal(config_get(&c, "ppo.nope", buf, sizeof buf), -1);

    /* errors from set name the key and nothing else */
    rlhf_err_t rc = config_set(&c, "ppo.clip", "abc", err, sizeof err);
    check_err(rc, RLHF_EMISMATCH, err, "'ppo.clip' must be a number in (0, 1) (got 'abc')", NULL);
    assert_true(c.ppo.clip == 0.1f);
    rc = config_set(&c, "ppo.clip", "0.1\nppo.k: 3", err, sizeof err);
    check_err(rc, RLHF_EMISMATCH, err, "'ppo.clip'", NULL); // a newline in a value is not echoed
    rc = config_set(&c, "run.out_dir", "a\nb", err, sizeof err);
    check_err(rc, RLHF_EINVAL, err, "'run.out_dir' must not contain control characters", NULL);
}

static void test_env(void **state) {
    (void)state;
    rlhf_config_t c, before;
    char err[512];
    config_init(&c);
    char *env[] = {"PATH=/usr/bin",
                   "RLHF_PPO_CLIP=0.1",
                   "RLHF_ACTOR_LEARNER=learner",
                   "RLHF_SAMPLING_STOP=258,10",
                   "RLHF_RUN_RESUME=true",
                   "RLHF_SANITIZED=1",          // not ours: no section prefix
                   "RLHF_CONFIG=/ignored.yaml", // read by config_from_args only
                   "rlhf_ppo_k=9",              // names are case-sensitive
                   NULL};
    assert_int_equal(config_apply_env(&c, env, err, sizeof err), RLHF_OK);
    assert_true(c.ppo.clip == 0.1f);
    assert_string_equal(c.actor.learner, "learner");
    assert_int_equal(c.sampling.n_stop, 2);
    assert_true(c.run.resume);
    assert_int_equal(c.ppo.k, 8);

    before = c;
    char *typo[] = {"RLHF_PPO_K=8", "RLHF_PPO_CLIPP=0.2", NULL};
    rlhf_err_t rc = config_apply_env(&c, typo, err, sizeof err);
    check_err(rc, RLHF_ENOTFOUND, err, "RLHF_PPO_CLIPP", "did you mean RLHF_PPO_CLIP", "'ppo.clip'", NULL);
    assert_null(config_diff(&before, &c)); // RLHF_PPO_K=8 not applied either
    char *bad[] = {"RLHF_PPO_CLIP=2", NULL};
    rc = config_apply_env(&c, bad, err, sizeof err);
    check_err(rc, RLHF_ERANGE, err, "RLHF_PPO_CLIP: 'ppo.clip' must be a number in (0, 1) (got '2')", NULL);
    char *far[] = {"RLHF_LEARNER_QQQQQQQQQQQQQQQQ=1", NULL};
    rc = config_apply_env(&c, far, err, sizeof err);
    check_err(rc, RLHF_ENOTFOUND, err, "RLHF_LEARNER_QQQQQQQQQQQQQQQQ: no such setting", NULL);
    assert_int_equal(config_apply_env(&c, NULL, err, sizeof err), RLHF_OK);

    /* every key round-trips through its environment name */
    size_t n;
    const config_key_t *s = config_schema(&n);
    rlhf_config_t p;
    config_init(&p);
    perturb(&p);
    config_init(&c);
    for (size_t i = 0; i < n; i++) {
        char name[160], val[1200], kv[1400];
        config_env_name(s[i].key, name, sizeof name);
        config_get(&p, s[i].key, val, sizeof val);
        snprintf(kv, sizeof kv, "%s=%s", name, val);
        char *one[] = {kv, NULL};
        rc = config_apply_env(&c, one, err, sizeof err);
        if (rc != RLHF_OK) fprintf(stderr, "%s\n", err);
        assert_int_equal(rc, RLHF_OK);
    }
    assert_null(config_diff(&p, &c));
}

static const config_flag_t FLAGS[] = {
    {"--steps", "run.steps", NULL},
    {"--actors", "run.actors", NULL},
    {"--resume", "run.resume", "true"},
    {NULL, NULL, NULL},
};

static void test_precedence(void **state) {
    (void)state;
    rlhf_config_t c;
    char err[512];
    const char *file = write_tmp("ppo:\n  clip: 0.3\n  epochs: 3\n  k: 8\nrun:\n  steps: 11\n");
    char path[256];
    snprintf(path, sizeof path, "%s", file);
    char envc[300];
    snprintf(envc, sizeof envc, "RLHF_CONFIG=%s", path);
    char *env[] = {"RLHF_PPO_CLIP=0.25", "RLHF_PPO_K=2", "RLHF_RUN_STEPS=12", NULL};

    /* defaults < file < env < command line, whatever the argument order */
    char *argv[] = {"prog", "pos1",     "--set", "ppo.clip=0.15", "--other", "x", "--steps", "7", "--config",
                    path,   "--resume", "--",    "--set",         "a=b",     NULL};
    int argc = 14;
    rlhf_err_t rc = config_from_args(&c, &argc, argv, FLAGS, env, err, sizeof err);
    if (rc != RLHF_OK) fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, RLHF_OK);
    assert_true(c.ppo.clip == 0.15f);  // command line
    assert_int_equal(c.ppo.k, 2);      // env over file
    assert_int_equal(c.ppo.epochs, 3); // file over default
    assert_int_equal(c.run.steps, 7);  // flag over env over file
    assert_true(c.run.resume);
    assert_true(c.ppo.lr == 1e-4f); // default
    /* remaining arguments, in order, "--" and after untouched */
    assert_int_equal(argc, 7);
    const char *rest[] = {"prog", "pos1", "--other", "x", "--", "--set", "a=b"};
    for (int i = 0; i < 7; i++) assert_string_equal(argv[i], rest[i]);
    assert_null(argv[7]);

    /* RLHF_CONFIG names the file when --config does not; later --set wins
     * over earlier; --set=K=V and --flag=V forms */
    char *env2[] = {envc, NULL};
    char *argv2[] = {"prog", "--set=ppo.clip=0.5", "--set", "ppo.clip=0.4", "--steps=9", NULL};
    argc = 5;
    assert_int_equal(config_from_args(&c, &argc, argv2, FLAGS, env2, err, sizeof err), RLHF_OK);
    assert_int_equal(argc, 1);
    assert_true(c.ppo.clip == 0.4f);
    assert_int_equal(c.ppo.k, 8);
    assert_int_equal(c.run.steps, 9);

    /* no file, no env: the defaults */
    char *env0[] = {NULL};
    char *argv3[] = {"prog", NULL};
    argc = 1;
    rlhf_config_t def;
    config_init(&def);
    assert_int_equal(config_from_args(&c, &argc, argv3, NULL, env0, err, sizeof err), RLHF_OK);
    assert_null(config_diff(&def, &c));

    /* errors: one line, naming the source; argv and cfg unchanged */
    rlhf_config_t keep = c;
    char *bad1[] = {"prog", "--set", "ppo.clip", NULL};
    argc = 3;
    rc = config_from_args(&c, &argc, bad1, FLAGS, env0, err, sizeof err);
    check_err(rc, RLHF_EINVAL, err, "--set needs KEY=VALUE", NULL);
    assert_int_equal(argc, 3);
    assert_string_equal(bad1[1], "--set");
    assert_null(config_diff(&keep, &c));
    char *bad2[] = {"prog", "--steps", "many", NULL};
    argc = 3;
    rc = config_from_args(&c, &argc, bad2, FLAGS, env0, err, sizeof err);
    check_err(rc, RLHF_EMISMATCH, err, "--steps: 'run.steps' must be an integer", "(got 'many')", NULL);
    char *bad3[] = {"prog", "--set", "ppo.clipp=1", NULL};
    argc = 3;
    rc = config_from_args(&c, &argc, bad3, FLAGS, env0, err, sizeof err);
    check_err(rc, RLHF_ENOTFOUND, err, "--set ppo.clipp=1", "did you mean 'ppo.clip'", NULL);
    char *bad4[] = {"prog", "--config", "/nonexistent/c.yaml", NULL};
    argc = 3;
    rc = config_from_args(&c, &argc, bad4, FLAGS, env0, err, sizeof err);
    check_err(rc, RLHF_EIO, err, "/nonexistent/c.yaml: cannot open: No such file or directory", NULL);
    char *bad5[] = {"prog", "--set", "ppo.minibatch=7", NULL};
    argc = 3;
    rc = config_from_args(&c, &argc, bad5, FLAGS, env0, err, sizeof err);
    check_err(rc, RLHF_EINVAL, err, "ppo.minibatch (7) must divide ppo.batch_prompts * ppo.k", NULL);
    char *bad6[] = {"prog", "--steps", NULL};
    argc = 2;
    rc = config_from_args(&c, &argc, bad6, FLAGS, env0, err, sizeof err);
    check_err(rc, RLHF_EINVAL, err, "--steps needs a value", NULL);
    char *bad7[] = {"prog", "--config", path, "--config", path, NULL};
    argc = 5;
    rc = config_from_args(&c, &argc, bad7, FLAGS, env0, err, sizeof err);
    check_err(rc, RLHF_EINVAL, err, "--config given twice", NULL);
    char *envbad[] = {"RLHF_PPO_EPOCHS=lots", NULL};
    argc = 1;
    rc = config_from_args(&c, &argc, argv3, FLAGS, envbad, err, sizeof err);
    check_err(rc, RLHF_EMISMATCH, err, "RLHF_PPO_EPOCHS: 'ppo.epochs'", NULL);
    assert_null(config_diff(&keep, &c));
}

/* ---- writing ---- */

static void roundtrip(const rlhf_config_t *c) {
    char err[512];
    const char *p = write_tmp("");
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    assert_int_equal(config_dump(c, f), RLHF_OK);
    assert_int_equal(fclose(f), 0);
    rlhf_config_t back;
    config_init(&back);
    rlhf_err_t rc = config_load(&back, p, err, sizeof err);
    if (rc != RLHF_OK) fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, RLHF_OK);
    const char *d = config_diff(c, &back);
    if (d) fprintf(stderr, "round trip differs at %s\n", d);
    assert_null(d);
    assert_memory_equal(c, &back, sizeof back); // no stray bytes either
}

static void test_roundtrip(void **state) {
    (void)state;
    rlhf_config_t c;
    config_init(&c);
    roundtrip(&c);
    perturb(&c);
    roundtrip(&c);
    /* floats that need all 9 digits, tiny and huge */
    char err[512];
    assert_int_equal(config_set(&c, "ppo.lr", "0.000123456789", err, sizeof err), RLHF_OK);
    assert_int_equal(config_set(&c, "ppo.grad_clip", "999999.9", err, sizeof err), RLHF_OK);
    assert_int_equal(config_set(&c, "ppo.kl_coef", "1e-30", err, sizeof err), RLHF_OK);
    roundtrip(&c);

    /* JSON */
    json_t *j = config_to_json(&c);
    assert_non_null(j);
    json_t *ppo = json_object_get(j, "ppo");
    assert_true(json_is_object(ppo));
    assert_true(json_is_real(json_object_get(ppo, "lr")));
    assert_true(fabs(json_real_value(json_object_get(ppo, "lr")) - 0.000123456789) < 1e-11);
    assert_true(json_is_boolean(json_object_get(ppo, "whiten_advantages")));
    assert_true(json_is_array(json_object_get(json_object_get(j, "sampling"), "stop")));
    assert_true(json_is_string(json_object_get(json_object_get(j, "run"), "seed"))); // > 2^63
    assert_true(json_is_string(json_object_get(json_object_get(j, "model"), "preset")));
    size_t n;
    config_schema(&n);
    size_t count = 0;
    const char *sk;
    json_t *sv;
    json_object_foreach(j, sk, sv) count += json_object_size(sv);
    assert_int_equal(count, n);
    json_decref(j);

    /* help lists every key */
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    config_print_help(m);
    fclose(m);
    assert_non_null(strstr(buf, "ppo.clip"));
    assert_non_null(strstr(buf, "RLHF_PPO_CLIP"));
    free(buf);
}

/* Random byte edits of default.yaml: every outcome is OK or one error line,
 * and a failed load leaves the config as it was (run under ASan for leaks). */
static void test_mutations(void **state) {
    (void)state;
    FILE *f = fopen(DEFAULT_YAML, "rb");
    assert_non_null(f);
    static char orig[1 << 16], buf[1 << 16];
    size_t n = fread(orig, 1, sizeof orig, f);
    fclose(f);
    assert_true(n > 100 && n < sizeof orig);
    static const char alphabet[] = " \t\n:#-[]{}\"'&*!|>?,.0123456789aeklpz\\\xff";
    uint64_t x = 88172645463325252ull;
    int ok = 0, failed = 0;
    for (int iter = 0; iter < 3000; iter++) {
        memcpy(buf, orig, n);
        size_t len = n;
        int edits = 1 + iter % 4;
        for (int e = 0; e < edits; e++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            size_t at = (size_t)(x % len);
            char c = alphabet[(x >> 32) % (sizeof alphabet - 1)];
            if ((x >> 40) % 3 == 0 && len > 1) { // delete
                memmove(buf + at, buf + at + 1, len - at - 1);
                len--;
            } else if ((x >> 40) % 3 == 1 && len + 1 < sizeof buf) { // insert
                memmove(buf + at + 1, buf + at, len - at);
                buf[at] = c;
                len++;
            } else {
                buf[at] = c;
            }
        }
        rlhf_config_t c, before;
        char err[512];
        config_init(&c);
        before = c;
        rlhf_err_t rc = config_load_string(&c, buf, len, "m.yaml", err, sizeof err);
        if (rc == RLHF_OK) {
            ok++;
            continue;
        }
        failed++;
        assert_true(strlen(err) > 0);
        assert_null(strchr(err, '\n'));
        assert_true(strncmp(err, "m.yaml:", 7) == 0);
        assert_null(config_diff(&before, &c));
    }
    printf("mutations: %d loaded, %d refused with one line\n", ok, failed);
    assert_true(failed > 1000);
}

/* ---- cross-field validation ---- */

static void expect_invalid(const char *sets, ...) {
    rlhf_config_t c;
    char err[512], buf[512];
    config_init(&c);
    snprintf(buf, sizeof buf, "%s", sets);
    char *save = NULL;
    for (char *kv = strtok_r(buf, " ", &save); kv; kv = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(kv, '=');
        *eq = '\0';
        rlhf_err_t rc = config_set(&c, kv, eq + 1, err, sizeof err);
        if (rc != RLHF_OK) fprintf(stderr, "%s\n", err);
        assert_int_equal(rc, RLHF_OK);
    }
    rlhf_err_t rc = config_validate(&c, err, sizeof err);
    assert_int_equal(rc, RLHF_EINVAL);
    assert_null(strchr(err, '\n'));
    va_list ap;
    va_start(ap, sets);
    for (const char *s; (s = va_arg(ap, const char *)) != NULL;) {
        if (!strstr(err, s)) fprintf(stderr, "error '%s' lacks '%s'\n", err, s);
        assert_non_null(strstr(err, s));
    }
    va_end(ap);
}

static void test_validate(void **state) {
    (void)state;
    expect_invalid("ppo.minibatch=24", "ppo.minibatch (24)", "ppo.batch_prompts * ppo.k (16 * 8 = 128)", NULL);
    expect_invalid("learner.score_port=5555", "learner.work_port", "learner.score_port", "5555", NULL);
    expect_invalid("learner.http_port=5560", "learner.weights_port", "learner.http_port", NULL);
    expect_invalid("sampling.temperature=0", "sampling.temperature", "> 0", NULL);
    expect_invalid("task.min_digits=4", "task.min_digits (4)", "task.max_digits (2)", NULL);
    expect_invalid("run.algo=grpo ppo.k=1 ppo.minibatch=16", "run.algo 'grpo'", "ppo.k", NULL);
    expect_invalid("ppo.kl_adaptive=true ppo.kl_coef=0", "ppo.kl_adaptive", "ppo.kl_coef", NULL);
    expect_invalid("ppo.batch_prompts=64 task.n_train=50 ppo.minibatch=32", "ppo.batch_prompts (64)", "task.n_train",
                   NULL);
    expect_invalid("ppo.k=256 learner.ticket_prompts=32 ppo.minibatch=256", "learner.ticket_prompts * ppo.k", "4096",
                   NULL);
    expect_invalid("model.init=runs/x/final model.dim=128", "model.dim", "model.init", NULL);
    expect_invalid("model.n_heads=5", "model", "preset 'small'", "n_heads", NULL);
    expect_invalid("sampling.max_new_tokens=300", "sampling.max_new_tokens (300)", "max_seq_len (256)", NULL);
    expect_invalid("model.max_seq_len=16", "sampling.max_new_tokens (16)", "max_seq_len (16)", NULL);
    expect_invalid("security.client_public_key=a.pub", "security.client_public_key", "security.client_secret_key",
                   NULL);
    expect_invalid("security.server_secret_key=s.key", "security.server_public_key", NULL);
    expect_invalid("security.client_public_key=a.pub security.client_secret_key=a.key", "security.server_public_key",
                   NULL);
    expect_invalid("security.authorized_keys=k security.server_public_key=s.pub", "security.authorized_keys",
                   "security.server_secret_key", NULL);

    /* fine: http off / any port, init without overrides, full key sets */
    rlhf_config_t c;
    char err[512];
    config_init(&c);
    assert_int_equal(config_set(&c, "learner.http_port", "0", err, sizeof err), RLHF_OK);
    assert_int_equal(config_set(&c, "model.init", "runs/x/final", err, sizeof err), RLHF_OK);
    assert_int_equal(config_set(&c, "security.server_public_key", "s.pub", err, sizeof err), RLHF_OK);
    assert_int_equal(config_set(&c, "security.client_public_key", "c.pub", err, sizeof err), RLHF_OK);
    assert_int_equal(config_set(&c, "security.client_secret_key", "c.key", err, sizeof err), RLHF_OK);
    assert_int_equal(config_validate(&c, err, sizeof err), RLHF_OK);
    assert_int_equal(config_set(&c, "run.algo", "rloo", err, sizeof err), RLHF_OK);
    assert_int_equal(config_validate(&c, err, sizeof err), RLHF_OK);
}

/* ---- bridges ---- */

static void test_bridges(void **state) {
    (void)state;
    rlhf_config_t c;
    char err[512], ep[128];
    config_init(&c);
    model_config_t m, want;
    assert_int_equal(config_to_model(&c, &m, err, sizeof err), RLHF_OK);
    assert_int_equal(model_config_preset(&want, "small"), RLHF_OK);
    assert_memory_equal(&m, &want, sizeof m);
    assert_int_equal(config_set(&c, "model.preset", "tiny", err, sizeof err), RLHF_OK);
    assert_int_equal(config_set(&c, "model.n_layers", "2", err, sizeof err), RLHF_OK);
    assert_int_equal(config_to_model(&c, &m, err, sizeof err), RLHF_OK);
    assert_int_equal(m.n_layers, 2);
    assert_int_equal(m.dim, 64);

    adamw_config_t pol, cri;
    config_to_adamw(&c, &pol, &cri);
    assert_true(pol.lr == c.ppo.lr && cri.lr == c.ppo.critic_lr);
    assert_true(pol.beta1 == 0.9f && pol.beta2 == 0.95f && pol.eps == 1e-5f && pol.weight_decay == 0.1f);
    assert_true(pol.grad_clip == 1.0f && pol.warmup_steps == 0 && pol.total_steps == 0);
    config_to_adamw(&c, &pol, NULL);

    gen_params_t g;
    config_to_gen(&c, &g);
    assert_true(g.sampler.temperature == 1.0f && g.sampler.top_p == 1.0f && g.sampler.top_k == 0);
    assert_int_equal(g.max_new_tokens, c.sampling.max_new_tokens);
    assert_int_equal(g.n_stop, 1);
    assert_int_equal(g.stop_tokens[0], TOK_EOS);

    sft_config_t s;
    config_to_sft(&c, &s);
    assert_int_equal(s.steps, 1200);
    assert_int_equal(s.opt.total_steps, 1200);
    assert_int_equal(s.opt.warmup_steps, 150);
    assert_true(s.seed == c.run.seed);
    assert_int_equal(config_set(&c, "sft.steps", "10", err, sizeof err), RLHF_OK);
    config_to_sft(&c, &s);
    assert_int_equal(s.opt.warmup_steps, 10); // cut to the steps

    config_endpoint(&c, c.learner.bind, CONFIG_EP_WORK, ep, sizeof ep);
    assert_string_equal(ep, "tcp://127.0.0.1:5555");
    config_endpoint(&c, "learner", CONFIG_EP_WEIGHTS, ep, sizeof ep);
    assert_string_equal(ep, "tcp://learner:5560");
    config_endpoint(&c, "*", CONFIG_EP_ANNOUNCE, ep, sizeof ep);
    assert_string_equal(ep, "tcp://*:5559");
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--write-default") == 0) {
        rlhf_config_t c;
        config_init(&c);
        FILE *f = fopen(argv[2], "w");
        if (!f || config_dump(&c, f) != RLHF_OK || fclose(f) != 0) {
            fprintf(stderr, "test_config: cannot write %s: %s\n", argv[2], strerror(errno));
            return 1;
        }
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),     cmocka_unit_test(test_default_yaml), cmocka_unit_test(test_error_unknown),
        cmocka_unit_test(test_error_values), cmocka_unit_test(test_error_yaml),   cmocka_unit_test(test_set_get),
        cmocka_unit_test(test_env),          cmocka_unit_test(test_precedence),   cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_mutations),    cmocka_unit_test(test_validate),     cmocka_unit_test(test_bridges),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
