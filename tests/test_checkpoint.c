/*
 * test_checkpoint.c - Hugging Face Llama checkpoints and trainer state.
 *
 * Saves the tiny preset (untied, and tied with a scalar head) and loads it
 * back bit-exactly; refuses config.json files with a wrong type, a missing
 * key or an unsupported feature, naming the key; refuses weight files with a
 * wrong shape, a wrong dtype, a missing or an extra tensor, naming it; round
 * trips the trainer state (AdamW moments, step, config, RNG, data position).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/checkpoint.h"
#include "common/model.h"
#include "common/optim.h"
#include "common/rng.h"
#include "common/safetensors.h"

static char g_dir[64];

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static int setup(void **state) {
    (void)state;
    strcpy(g_dir, "/tmp/rlhf_ckpt_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    return nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void check_refused(rlhf_err_t rc, rlhf_err_t want, const char *err, const char *sub1, const char *sub2,
                          const char *what) {
    int ok = rc == want && strstr(err, sub1) && (!sub2 || strstr(err, sub2));
    if (!ok) {
        print_error("%s: got %s (\"%s\"), want %s with '%s'%s%s\n", what, rlhf_strerror(rc), err, rlhf_strerror(want),
                    sub1, sub2 ? " and " : "", sub2 ? sub2 : "");
        fail();
    }
}

static void check_ok(rlhf_err_t rc, const char *err) {
    if (rc != RLHF_OK) print_error("unexpected error %s: %s\n", rlhf_strerror(rc), err);
    assert_int_equal(rc, RLHF_OK);
}

static model_t *tiny_model(int tied, int scalar, uint64_t seed) {
    model_config_t cfg;
    assert_int_equal(model_config_preset(&cfg, "tiny"), RLHF_OK);
    cfg.tied_embeddings = tied;
    cfg.scalar_head = scalar;
    model_t *m = model_new(&cfg);
    assert_non_null(m);
    model_init_weights(m, seed);
    if (m->w.score) // init zeroes it: make it worth comparing
        for (int i = 0; i < cfg.dim; i++) m->w.score[i] = 0.01f * (float)(i - 7);
    return m;
}

static void assert_same_config(const model_config_t *a, const model_config_t *b) {
    assert_int_equal(a->vocab_size, b->vocab_size);
    assert_int_equal(a->dim, b->dim);
    assert_int_equal(a->n_layers, b->n_layers);
    assert_int_equal(a->n_heads, b->n_heads);
    assert_int_equal(a->n_kv_heads, b->n_kv_heads);
    assert_int_equal(a->hidden_dim, b->hidden_dim);
    assert_int_equal(a->max_seq_len, b->max_seq_len);
    assert_int_equal(a->tied_embeddings, b->tied_embeddings);
    assert_int_equal(a->scalar_head, b->scalar_head);
    assert_memory_equal(&a->norm_eps, &b->norm_eps, sizeof(float));
    assert_memory_equal(&a->rope_theta, &b->rope_theta, sizeof(float));
}

static void sub_dir(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "%s/%s", g_dir, name);
}

static void save_load_case(int tied, int scalar, const char *name) {
    char dir[256], path[320], err[512] = "";
    sub_dir(dir, sizeof dir, name);
    model_t *m = tiny_model(tied, scalar, 42 + (uint64_t)tied);
    check_ok(checkpoint_save_model(m, dir, err, sizeof err), err);

    model_t *back = NULL;
    check_ok(checkpoint_load_model(dir, &back, err, sizeof err), err);
    assert_non_null(back);
    assert_same_config(&m->cfg, &back->cfg);
    assert_int_equal(back->n_params, m->n_params);
    assert_memory_equal(back->params_mem, m->params_mem, m->n_params * sizeof(float));

    // The weights file: HF names, F32, "format": "pt", lm_head only when untied.
    snprintf(path, sizeof path, "%s/" CHECKPOINT_MODEL_FILE, dir);
    safetensors_t *st = NULL;
    check_ok(safetensors_open(&st, path, err, sizeof err), err);
    assert_string_equal(safetensors_meta(st, "format"), "pt");
    assert_int_equal(safetensors_find(st, "lm_head.weight") != NULL, !tied);
    assert_int_equal(safetensors_find(st, "score.weight") != NULL, scalar);
    const st_tensor_t *t = safetensors_find(st, "model.layers.3.self_attn.k_proj.weight");
    assert_non_null(t);
    assert_int_equal(t->dtype, ST_F32);
    assert_int_equal(t->ndim, 2);
    assert_int_equal(t->shape[0], m->cfg.n_kv_heads * (m->cfg.dim / m->cfg.n_heads));
    assert_int_equal(t->shape[1], m->cfg.dim);
    assert_non_null(safetensors_find(st, "model.embed_tokens.weight"));
    assert_non_null(safetensors_find(st, "model.norm.weight"));
    assert_non_null(safetensors_find(st, "model.layers.0.post_attention_layernorm.weight"));
    assert_null(safetensors_find(st, "model.layers.4.mlp.up_proj.weight")); // tiny has 4 layers
    int expect = 2 + 9 * m->cfg.n_layers + !tied + scalar;
    assert_int_equal(safetensors_count(st), expect);
    safetensors_destroy(&st);

    // config.json carries the HF keys.
    snprintf(path, sizeof path, "%s/" CHECKPOINT_CONFIG_FILE, dir);
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "architectures"), 0)), "LlamaForCausalLM");
    assert_string_equal(json_string_value(json_object_get(j, "model_type")), "llama");
    assert_string_equal(json_string_value(json_object_get(j, "hidden_act")), "silu");
    assert_string_equal(json_string_value(json_object_get(j, "torch_dtype")), "float32");
    assert_int_equal(json_integer_value(json_object_get(j, "hidden_size")), m->cfg.dim);
    assert_int_equal(json_integer_value(json_object_get(j, "intermediate_size")), m->cfg.hidden_dim);
    assert_int_equal(json_integer_value(json_object_get(j, "num_key_value_heads")), m->cfg.n_kv_heads);
    assert_int_equal(json_integer_value(json_object_get(j, "max_position_embeddings")), m->cfg.max_seq_len);
    assert_int_equal(json_is_true(json_object_get(j, "tie_word_embeddings")), tied);
    assert_true(json_is_false(json_object_get(j, "attention_bias")));
    assert_int_equal(json_integer_value(json_object_get(j, "bos_token_id")), 257);
    assert_int_equal(json_integer_value(json_object_get(j, "eos_token_id")), 258);
    assert_int_equal(json_integer_value(json_object_get(j, "pad_token_id")), 256);
    assert_int_equal(json_integer_value(json_object_get(j, "rlhf_scalar_head")), scalar);
    assert_true(json_real_value(json_object_get(j, "rms_norm_eps")) == 1e-5); // written shortest, not 9.99999975e-06
    json_decref(j);

    // Saving over an existing checkpoint replaces it.
    model_init_weights(m, 7);
    check_ok(checkpoint_save_model(m, dir, err, sizeof err), err);
    model_destroy(&back);
    check_ok(checkpoint_load_model(dir, &back, err, sizeof err), err);
    assert_memory_equal(back->params_mem, m->params_mem, m->n_params * sizeof(float));
    model_destroy(&back);
    assert_null(back);
    model_destroy(&m);
}

static void test_save_load_untied(void **state) {
    (void)state;
    save_load_case(0, 0, "untied");
}

static void test_save_load_tied_scalar(void **state) {
    (void)state;
    save_load_case(1, 1, "tied_scalar");
}

static void test_mkdirs(void **state) {
    (void)state;
    char dir[256], err[512] = "";
    snprintf(dir, sizeof dir, "%s/a/b//c/", g_dir);
    check_ok(checkpoint_mkdirs(dir, err, sizeof err), err);
    check_ok(checkpoint_mkdirs(dir, err, sizeof err), err); // exists already
    struct stat sb;
    snprintf(dir, sizeof dir, "%s/a/b/c", g_dir);
    assert_int_equal(stat(dir, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
    // A file in the way.
    snprintf(dir, sizeof dir, "%s/a/file", g_dir);
    FILE *f = fopen(dir, "w");
    assert_non_null(f);
    fclose(f);
    snprintf(dir, sizeof dir, "%s/a/file/sub", g_dir);
    check_refused(checkpoint_mkdirs(dir, err, sizeof err), RLHF_EIO, err, "a/file", strerror(ENOTDIR), "file in way");
    model_t *m = tiny_model(0, 0, 1);
    check_refused(checkpoint_save_model(m, dir, err, sizeof err), RLHF_EIO, err, "a/file", NULL, "save under file");
    model_destroy(&m);
}

/* ---- config.json ---- */

/* Rewrite dir/config.json with key set to v (stolen), or deleted if v NULL. */
static void mutate_config(const char *dir, const char *key, json_t *v) {
    char path[320];
    snprintf(path, sizeof path, "%s/" CHECKPOINT_CONFIG_FILE, dir);
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    assert_non_null(j);
    if (v)
        json_object_set_new(j, key, v);
    else
        json_object_del(j, key);
    assert_int_equal(json_dump_file(j, path, JSON_INDENT(2)), 0);
    json_decref(j);
}

static void write_text(const char *dir, const char *file, const char *text) {
    char path[320];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

typedef struct {
    const char *what, *key;
    json_t *(*value)(void); // NULL: delete the key
    rlhf_err_t code;
    const char *sub; // besides the key
} cfg_case_t;

static json_t *v_str2(void) {
    return json_string("2");
}
static json_t *v_real(void) {
    return json_real(64.0);
}
static json_t *v_strnum(void) {
    return json_string("1e-5");
}
static json_t *v_yes(void) {
    return json_string("yes");
}
static json_t *v_gelu(void) {
    return json_string("gelu");
}
static json_t *v_scaling(void) {
    return json_pack("{s:s, s:f}", "type", "linear", "factor", 2.0);
}
static json_t *v_true(void) {
    return json_true();
}
static json_t *v_heads5(void) {
    return json_integer(5);
}
static json_t *v_huge(void) {
    return json_integer(10000000000LL);
}
static json_t *v_mistral(void) {
    return json_string("mistral");
}
static json_t *v_headdim(void) {
    return json_integer(32);
}
static json_t *v_null(void) {
    return json_null();
}
static json_t *v_negeps(void) {
    return json_real(-1.0);
}

static const cfg_case_t cfg_cases[] = {
    {"wrong type", "num_key_value_heads", v_str2, RLHF_EFORMAT, "must be an integer (got string)"},
    {"real for int", "hidden_size", v_real, RLHF_EFORMAT, "must be an integer (got real)"},
    {"missing key", "hidden_size", NULL, RLHF_EFORMAT, "missing"},
    {"missing eps", "rms_norm_eps", NULL, RLHF_EFORMAT, "missing"},
    {"null required key", "vocab_size", v_null, RLHF_EFORMAT, "missing"},
    {"string eps", "rms_norm_eps", v_strnum, RLHF_EFORMAT, "must be a number (got string)"},
    {"string bool", "tie_word_embeddings", v_yes, RLHF_EFORMAT, "must be a boolean (got string)"},
    {"other activation", "hidden_act", v_gelu, RLHF_EUNSUPPORTED, "gelu"},
    {"other model type", "model_type", v_mistral, RLHF_EUNSUPPORTED, "mistral"},
    {"rope scaling", "rope_scaling", v_scaling, RLHF_EUNSUPPORTED, "not supported"},
    {"attention bias", "attention_bias", v_true, RLHF_EUNSUPPORTED, "no biases"},
    {"head_dim", "head_dim", v_headdim, RLHF_EUNSUPPORTED, "32"},
    {"out of int range", "num_hidden_layers", v_huge, RLHF_ERANGE, "10000000000"},
    {"validation", "num_attention_heads", v_heads5, RLHF_ERANGE, "n_heads"},
    {"validation eps", "rms_norm_eps", v_negeps, RLHF_ERANGE, "norm_eps"},
};

static void test_config_errors(void **state) {
    (void)state;
    char dir[256], err[512], what[160];
    sub_dir(dir, sizeof dir, "cfg");
    model_t *m = tiny_model(0, 0, 3);
    model_config_t cfg;
    for (size_t i = 0; i < sizeof cfg_cases / sizeof cfg_cases[0]; i++) {
        const cfg_case_t *c = &cfg_cases[i];
        err[0] = '\0';
        check_ok(checkpoint_save_model(m, dir, err, sizeof err), err);
        mutate_config(dir, c->key, c->value ? c->value() : NULL);
        memset(&cfg, 0x5a, sizeof cfg);
        rlhf_err_t rc = checkpoint_load_config(dir, &cfg, err, sizeof err);
        snprintf(what, sizeof what, "config case '%s'", c->what);
        // The key (validation errors use model.h field names: checked by sub).
        if (c->code != RLHF_ERANGE || strcmp(c->what, "out of int range") == 0) {
            char quoted[64];
            snprintf(quoted, sizeof quoted, "'%s'", c->key);
            check_refused(rc, c->code, err, quoted, c->sub, what);
        }
        check_refused(rc, c->code, err, "cfg/config.json", c->sub, what);
        assert_int_equal(cfg.dim, 0x5a5a5a5a); // untouched on error
        model_t *out = (model_t *)1;
        assert_int_equal(checkpoint_load_model(dir, &out, err, sizeof err), c->code);
        assert_null(out);
    }
    // The exact sentence.
    check_ok(checkpoint_save_model(m, dir, err, sizeof err), err);
    mutate_config(dir, "num_key_value_heads", json_string("2"));
    checkpoint_load_config(dir, &cfg, err, sizeof err);
    char want[400];
    snprintf(want, sizeof want, "%s/config.json: 'num_key_value_heads' must be an integer (got string).", dir);
    assert_string_equal(err, want);

    // Optional keys take the HF defaults: no num_key_value_heads means MHA,
    // which then disagrees with the k_proj shapes in the weights.
    check_ok(checkpoint_save_model(m, dir, err, sizeof err), err);
    mutate_config(dir, "num_key_value_heads", NULL);
    mutate_config(dir, "rope_theta", NULL);
    check_ok(checkpoint_load_config(dir, &cfg, err, sizeof err), err);
    assert_int_equal(cfg.n_kv_heads, cfg.n_heads);
    assert_true(cfg.rope_theta == 10000.0f);
    model_t *out = NULL;
    check_refused(checkpoint_load_model(dir, &out, err, sizeof err), RLHF_EMISMATCH, err,
                  "tensor 'model.layers.0.self_attn.k_proj.weight' has shape [32,64], config expects [64,64]", NULL,
                  "MHA default vs GQA weights");

    // Not JSON, not an object, no file.
    write_text(dir, CHECKPOINT_CONFIG_FILE, "{\"hidden_size\": 64,");
    check_refused(checkpoint_load_config(dir, &cfg, err, sizeof err), RLHF_EFORMAT, err, "config.json", "JSON",
                  "bad JSON");
    write_text(dir, CHECKPOINT_CONFIG_FILE, "[64]");
    check_refused(checkpoint_load_config(dir, &cfg, err, sizeof err), RLHF_EFORMAT, err, "config.json", "object",
                  "array");
    char path[320];
    snprintf(path, sizeof path, "%s/" CHECKPOINT_CONFIG_FILE, dir);
    unlink(path);
    check_refused(checkpoint_load_config(dir, &cfg, err, sizeof err), RLHF_EIO, err, "config.json", strerror(ENOENT),
                  "no config");
    model_destroy(&m);
}

/* ---- model.safetensors ---- */

typedef enum { MUT_SHAPE, MUT_DROP, MUT_EXTRA, MUT_DTYPE, MUT_TRUNCATE } mutation_t;

/* Rewrite dir/model.safetensors with one change to tensor `name`. */
static void mutate_weights(const char *dir, mutation_t mut, const char *name) {
    char path[320], err[512] = "";
    snprintf(path, sizeof path, "%s/" CHECKPOINT_MODEL_FILE, dir);
    safetensors_t *st = NULL;
    check_ok(safetensors_open(&st, path, err, sizeof err), err);
    int n = safetensors_count(st);
    st_entry_t *e = calloc((size_t)n + 1, sizeof(*e));
    double *wide = NULL;
    static const float extra[3] = {1, 2, 3};
    int k = 0;
    for (int i = 0; i < n; i++) {
        const st_tensor_t *t = safetensors_tensor(st, i);
        st_entry_t x = {
            t->name, t->dtype, t->ndim, {t->shape[0], t->shape[1], t->shape[2], t->shape[3]}, safetensors_data(st, t)};
        if (strcmp(t->name, name) == 0) {
            if (mut == MUT_DROP) continue;
            if (mut == MUT_SHAPE) x.shape[0] /= 2;
            if (mut == MUT_DTYPE) {
                size_t ne = t->nbytes / 4;
                wide = malloc(ne * sizeof(double));
                for (size_t j = 0; j < ne; j++) wide[j] = ((const float *)x.data)[j];
                x.dtype = ST_F64;
                x.data = wide;
            }
        }
        e[k++] = x;
    }
    if (mut == MUT_EXTRA) e[k++] = (st_entry_t){name, ST_F32, 1, {3}, extra};
    const char *mk[] = {"format"}, *mv[] = {"pt"};
    check_ok(safetensors_write(path, e, k, mk, mv, 1, err, sizeof err), err);
    free(wide);
    free(e);
    safetensors_destroy(&st);
    if (mut == MUT_TRUNCATE) {
        struct stat sb;
        assert_int_equal(stat(path, &sb), 0);
        assert_int_equal(truncate(path, sb.st_size - 100), 0);
    }
}

typedef struct {
    const char *what;
    mutation_t mut;
    const char *name;
    rlhf_err_t code;
    const char *sub;
} w_case_t;

static const w_case_t w_cases[] = {
    {"wrong shape", MUT_SHAPE, "model.layers.3.mlp.up_proj.weight", RLHF_EMISMATCH,
     "tensor 'model.layers.3.mlp.up_proj.weight' has shape [128,64], config expects [256,64]."},
    {"wrong 1-D shape", MUT_SHAPE, "model.norm.weight", RLHF_EMISMATCH,
     "tensor 'model.norm.weight' has shape [32], config expects [64]."},
    {"missing tensor", MUT_DROP, "model.layers.2.self_attn.o_proj.weight", RLHF_ENOTFOUND,
     "tensor 'model.layers.2.self_attn.o_proj.weight' is missing."},
    {"missing lm_head", MUT_DROP, "lm_head.weight", RLHF_ENOTFOUND, "tie_word_embeddings false"},
    {"extra tensor", MUT_EXTRA, "model.layers.0.self_attn.q_proj.bias", RLHF_EMISMATCH,
     "unexpected tensor 'model.layers.0.self_attn.q_proj.bias'"},
    {"extra layer", MUT_EXTRA, "model.layers.4.input_layernorm.weight", RLHF_EMISMATCH,
     "'model.layers.4.input_layernorm.weight'"},
    {"wrong dtype", MUT_DTYPE, "model.embed_tokens.weight", RLHF_EMISMATCH,
     "tensor 'model.embed_tokens.weight' has dtype F64"},
    {"truncated file", MUT_TRUNCATE, "", RLHF_ETRUNCATED, "truncated"},
};

static void test_weight_errors(void **state) {
    (void)state;
    char dir[256], err[512], what[160];
    sub_dir(dir, sizeof dir, "w");
    model_t *m = tiny_model(0, 0, 5);
    for (size_t i = 0; i < sizeof w_cases / sizeof w_cases[0]; i++) {
        const w_case_t *c = &w_cases[i];
        check_ok(checkpoint_save_model(m, dir, err, sizeof err), err);
        mutate_weights(dir, c->mut, c->name);
        model_t *out = (model_t *)1;
        err[0] = '\0';
        rlhf_err_t rc = checkpoint_load_model(dir, &out, err, sizeof err);
        snprintf(what, sizeof what, "weights case '%s'", c->what);
        check_refused(rc, c->code, err, "w/model.safetensors: ", c->sub, what);
        assert_null(out);
    }
    // A tied config refuses a file that still has lm_head.weight.
    check_ok(checkpoint_save_model(m, dir, err, sizeof err), err);
    mutate_config(dir, "tie_word_embeddings", json_true());
    model_t *out = NULL;
    check_refused(checkpoint_load_model(dir, &out, err, sizeof err), RLHF_EMISMATCH, err, "'lm_head.weight'",
                  "tie_word_embeddings true", "tied config, untied file");
    // No weights file at all.
    char path[320];
    snprintf(path, sizeof path, "%s/" CHECKPOINT_MODEL_FILE, dir);
    unlink(path);
    check_refused(checkpoint_load_model(dir, &out, err, sizeof err), RLHF_EIO, err, "model.safetensors",
                  strerror(ENOENT), "no weights");
    model_destroy(&m);
}

/* ---- trainer state ---- */

static void test_trainer_round_trip(void **state) {
    (void)state;
    char dir[256], err[512] = "";
    sub_dir(dir, sizeof dir, "trainer");
    adamw_config_t c;
    adamw_config_default(&c);
    c.lr = 1.234567e-3f;
    c.beta2 = 0.999f;
    c.eps = 1e-8f;
    c.weight_decay = 0.0f;
    c.grad_clip = -1.0f;
    c.warmup_steps = 10;
    c.total_steps = 500;
    c.min_lr_frac = 1.0f / 3.0f;
    size_t n = 1001;
    adamw_t *o = adamw_new(&c, n);
    assert_non_null(o);
    rng_t r;
    rng_init(&r, 99);
    for (size_t i = 0; i < n; i++) {
        o->m[i] = rng_normal(&r) * 1e-3f;
        o->v[i] = rng_float(&r) * 1e-6f;
    }
    o->m[3] = -0.0f;
    o->step = 17;
    trainer_state_t ts = {.step = 42, .data_pos = 1234567890123LL, .epoch = 2};
    rng_init(&ts.rng, 7);
    for (int i = 0; i < 5; i++) rng_u64(&ts.rng);
    ts.rng.s[0] = UINT64_MAX; // every hex digit in use
    check_ok(checkpoint_save_trainer(o, &ts, dir, err, sizeof err), err);

    adamw_config_t d;
    adamw_config_default(&d);
    adamw_t *o2 = adamw_new(&d, n);
    trainer_state_t ts2;
    memset(&ts2, 0, sizeof ts2);
    check_ok(checkpoint_load_trainer(o2, &ts2, dir, err, sizeof err), err);
    assert_memory_equal(o2->m, o->m, n * sizeof(float));
    assert_memory_equal(o2->v, o->v, n * sizeof(float));
    assert_int_equal(o2->step, 17);
    assert_memory_equal(&o2->cfg, &o->cfg, sizeof(adamw_config_t));
    assert_int_equal(ts2.step, ts.step);
    assert_int_equal(ts2.data_pos, ts.data_pos);
    assert_int_equal(ts2.epoch, ts.epoch);
    assert_memory_equal(ts2.rng.s, ts.rng.s, sizeof ts.rng.s);
    for (int i = 0; i < 10; i++) assert_int_equal(rng_u64(&ts2.rng), rng_u64(&ts.rng));

    // A different model size is refused, and nothing is written.
    adamw_t *o3 = adamw_new(&d, n + 1);
    trainer_state_t ts3 = {.step = -5};
    check_refused(checkpoint_load_trainer(o3, &ts3, dir, err, sizeof err), RLHF_EMISMATCH, err, "'adam.m'", "1001",
                  "moment size");
    assert_int_equal(ts3.step, -5);
    assert_int_equal(o3->step, 0);
    assert_true(o3->cfg.lr == d.lr);
    for (size_t i = 0; i < n + 1; i++) assert_true(o3->m[i] == 0.0f);

    // Corrupt metadata is refused naming the key.
    char path[320];
    snprintf(path, sizeof path, "%s/" CHECKPOINT_TRAINER_FILE, dir);
    st_entry_t e[2] = {{"adam.m", ST_F32, 1, {(int64_t)n}, o->m}, {"adam.v", ST_F32, 1, {(int64_t)n}, o->v}};
    const char *keys[] = {"format",
                          "step",
                          "adam_step",
                          "rng",
                          "data_pos",
                          "epoch",
                          "adam.lr",
                          "adam.beta1",
                          "adam.beta2",
                          "adam.eps",
                          "adam.weight_decay",
                          "adam.grad_clip",
                          "adam.warmup_steps",
                          "adam.total_steps",
                          "adam.min_lr_frac"};
    const char *good[] = {"rlhf-trainer-state-1",
                          "1",
                          "1",
                          "0000000000000001,0000000000000000,0000000000000000,0000000000000000",
                          "0",
                          "0",
                          "0.001",
                          "0.9",
                          "0.95",
                          "1e-08",
                          "0",
                          "1",
                          "0",
                          "0",
                          "0.1"};
    static const struct {
        int key;
        const char *val;
        const char *sub;
    } bad[] = {{1, "12x", "'step'"},
               {1, "-1", "'step'"},
               {2, "", "'adam_step'"},
               {3, "00000000000000000000000000000001,0,0,0", "'rng'"},
               {3, "0000000000000000,0000000000000000,0000000000000000,0000000000000000", "'rng'"},
               {3, "000000000000000g,0000000000000000,0000000000000000,0000000000000000", "'rng'"},
               {3, "0000000000000001,0000000000000000,0000000000000000", "'rng'"},
               {6, "fast", "'adam.lr'"},
               {6, "nan", "'adam.lr'"},
               {12, "99999999999", "'adam.warmup_steps'"},
               {0, "other-format", "'format'"},
               {-1, NULL, "'epoch' is missing"}};
    for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
        const char *vals[15];
        memcpy(vals, good, sizeof vals);
        int nk = 15;
        const char *kk[15];
        memcpy(kk, keys, sizeof kk);
        if (bad[b].key >= 0) {
            vals[bad[b].key] = bad[b].val;
        } else { // drop "epoch"
            kk[5] = kk[14], vals[5] = vals[14];
            nk = 14;
        }
        check_ok(safetensors_write(path, e, 2, kk, vals, nk, err, sizeof err), err);
        rlhf_err_t want = bad[b].key == 0 ? RLHF_EUNSUPPORTED : RLHF_EFORMAT;
        check_refused(checkpoint_load_trainer(o2, &ts2, dir, err, sizeof err), want, err, bad[b].sub,
                      CHECKPOINT_TRAINER_FILE, "trainer metadata");
    }
    // The good table itself loads.
    check_ok(safetensors_write(path, e, 2, keys, good, 15, err, sizeof err), err);
    check_ok(checkpoint_load_trainer(o2, &ts2, dir, err, sizeof err), err);
    assert_int_equal(ts2.rng.s[0], 1);
    // Wrong dtype for a moment.
    st_entry_t e2[2] = {e[0], {"adam.v", ST_I32, 1, {(int64_t)n}, o->v}};
    check_ok(safetensors_write(path, e2, 2, keys, good, 15, err, sizeof err), err);
    check_refused(checkpoint_load_trainer(o2, &ts2, dir, err, sizeof err), RLHF_EMISMATCH, err, "'adam.v'", "I32",
                  "moment dtype");
    // Missing moment.
    check_ok(safetensors_write(path, e, 1, keys, good, 15, err, sizeof err), err);
    check_refused(checkpoint_load_trainer(o2, &ts2, dir, err, sizeof err), RLHF_ENOTFOUND, err, "'adam.v'", NULL,
                  "moment missing");
    unlink(path);
    check_refused(checkpoint_load_trainer(o2, &ts2, dir, err, sizeof err), RLHF_EIO, err, CHECKPOINT_TRAINER_FILE,
                  strerror(ENOENT), "no trainer file");

    adamw_destroy(&o);
    adamw_destroy(&o2);
    adamw_destroy(&o3);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_save_load_untied), cmocka_unit_test(test_save_load_tied_scalar),
        cmocka_unit_test(test_mkdirs),           cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_weight_errors),    cmocka_unit_test(test_trainer_round_trip),
    };
    return cmocka_run_group_tests_name("checkpoint", tests, setup, teardown);
}
