/*
 * checkpoint.c - Hugging Face Llama checkpoints and trainer state (see
 * checkpoint.h).
 *
 * The tensor table comes from model.h (model_tensor_info / _offset), so this
 * file knows no shapes of its own: saving walks the table, loading builds
 * the same table from the config and holds the file to it exactly.
 *
 * What it deliberately is not: no dtype conversion (F32 only), no sharded
 * checkpoints (model-00001-of-0000N), no rope scaling.
 */
#include "common/checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "common/json_util.h"

#include "common/safetensors.h"
#include "common/tokenizer.h"

#define CKPT_PATH_MAX       4096
#define CKPT_MAX_CONFIG     (1 << 20)              // config.json larger than this is refused
#define CKPT_TRAINER_FORMAT "rlhf-trainer-state-1" // "format" metadata of trainer_state.safetensors

/* dir + "/" + file into out; -1 if it does not fit. */
static int path_join(char *out, size_t cap, const char *dir, const char *file) {
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/') dl--;
    int w = dl == 0 ? snprintf(out, cap, "%s", file) : snprintf(out, cap, "%.*s/%s", (int)dl, dir, file);
    return w < 0 || (size_t)w >= cap ? -1 : 0;
}

rlhf_err_t checkpoint_mkdirs(const char *dir, char *err, size_t errlen) {
    char p[CKPT_PATH_MAX];
    size_t n = strlen(dir);
    if (n == 0) return rlhf_seterr(err, errlen, RLHF_EINVAL, "checkpoint: empty folder name.");
    if (n >= sizeof p) return rlhf_seterr(err, errlen, RLHF_EINVAL, "%.60s...: folder name too long.", dir);
    memcpy(p, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] != '/' && p[i] != '\0') continue;
        if (p[i - 1] == '/') continue; // "a//b" or trailing slash
        char c = p[i];
        p[i] = '\0';
        if (mkdir(p, 0755) != 0) {
            int e = errno;
            struct stat sb;
            if (e != EEXIST || stat(p, &sb) != 0 || !S_ISDIR(sb.st_mode))
                return rlhf_seterr(err, errlen, RLHF_EIO, "%s: cannot create folder: %s.", p,
                                   strerror(e == EEXIST ? ENOTDIR : e));
        }
        p[i] = c;
    }
    return RLHF_OK;
}

rlhf_err_t checkpoint_write_file(const char *path, const void *buf, size_t len, char *err, size_t errlen) {
    const void *bufs[1] = {buf};
    size_t lens[1] = {len};
    return safetensors__write_atomic(path, 1, bufs, lens, err, errlen);
}

/* ---- the tensor table ---- */

typedef struct {
    char name[ST_MAX_NAME];
    int ndim;
    int64_t shape[2];
    size_t offset; // floats into the blob
    size_t numel;
} ckpt_tensor_t;

/* Every present tensor of m, in blob order. Caller frees *out. */
static rlhf_err_t tensor_table(const model_t *m, ckpt_tensor_t **out, int *count, char *err, size_t errlen) {
    int L = m->cfg.n_layers;
    size_t cap = (size_t)MP_COUNT * (size_t)(L > 1 ? L : 1);
    ckpt_tensor_t *t = calloc(cap, sizeof(*t));
    if (!t) return rlhf_seterr(err, errlen, RLHF_ENOMEM, "checkpoint: out of memory for the tensor table.");
    int n = 0;
    for (int k = 0; k < MP_COUNT; k++) {
        int nl = model_tensor_per_layer(k) ? L : 1;
        for (int l = 0; l < nl; l++) {
            ckpt_tensor_t *e = &t[n];
            int nd = model_tensor_info(m, k, l, e->name, sizeof e->name, e->shape);
            if (nd == 0) continue;
            if (nd < 1 || nd > 2 || e->shape[0] < 0 || (nd == 2 && e->shape[1] < 0)) {
                free(t);
                return rlhf_seterr(err, errlen, RLHF_EINVAL, "checkpoint: model tensor %d layer %d has bad info.", k,
                                   l);
            }
            e->ndim = nd;
            e->numel = (size_t)e->shape[0] * (nd == 2 ? (size_t)e->shape[1] : 1);
            e->offset = model_tensor_offset(m, k, l);
            if (e->offset > m->n_params || e->numel > m->n_params - e->offset) {
                rlhf_seterr(err, errlen, RLHF_EINVAL, "checkpoint: model tensor '%s' lies outside the parameter blob.",
                            e->name);
                free(t);
                return RLHF_EINVAL;
            }
            n++;
        }
    }
    *out = t;
    *count = n;
    return RLHF_OK;
}

/* ---- config.json ---- */

/* Shortest "%.Ng" text that reads back as exactly x (9 digits always do),
 * so 1e-5f is written as 1e-05, not 9.99999975e-06. */
static void float_text(char buf[32], float x) {
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, 32, "%.*g", p, (double)x);
        if (strtof(buf, NULL) == x) return;
    }
}

/* The double with the fewest decimal digits that converts back to x. */
static double float_pretty(float x) {
    char buf[32];
    float_text(buf, x);
    return strtod(buf, NULL);
}

static rlhf_err_t save_config(const model_config_t *c, const char *path, char *err, size_t errlen) {
    json_t *j =
        json_pack("{s:[s], s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:b, s:s, s:s, s:b, s:b,"
                  " s:i, s:i, s:i, s:i}",
                  "architectures", "LlamaForCausalLM", "model_type", "llama", "hidden_size", c->dim,
                  "intermediate_size", c->hidden_dim, "num_attention_heads", c->n_heads, "num_hidden_layers",
                  c->n_layers, "num_key_value_heads", c->n_kv_heads, "vocab_size", c->vocab_size,
                  "max_position_embeddings", c->max_seq_len, "rms_norm_eps", float_pretty(c->norm_eps), "rope_theta",
                  float_pretty(c->rope_theta), "tie_word_embeddings", c->tied_embeddings ? 1 : 0, "hidden_act", "silu",
                  "torch_dtype", "float32", "attention_bias", 0, "mlp_bias", 0, "bos_token_id", TOK_BOS, "eos_token_id",
                  TOK_EOS, "pad_token_id", TOK_PAD, "rlhf_scalar_head", c->scalar_head ? 1 : 0);
    if (!j) return rlhf_seterr(err, errlen, RLHF_ENOMEM, "%s: out of memory building the config.", path);
    // 9 significant digits: enough for any float, and shortest for float_pretty values.
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(9));
    json_decref(j);
    if (!text) return rlhf_seterr(err, errlen, RLHF_ENOMEM, "%s: out of memory writing the config.", path);
    size_t tl = strlen(text);
    char *withnl = realloc(text, tl + 2);
    if (!withnl) {
        free(text);
        return rlhf_seterr(err, errlen, RLHF_ENOMEM, "%s: out of memory writing the config.", path);
    }
    withnl[tl] = '\n';
    withnl[tl + 1] = '\0';
    rlhf_err_t rc = checkpoint_write_file(path, withnl, tl + 1, err, errlen);
    free(withnl);
    return rc;
}

/* Integer key into *out. Absent: RLHF_EFORMAT if required, else *out = def. */
static rlhf_err_t cfg_int(const json_t *root, const char *key, int required, int def, int *out, const char *L,
                          char *err, size_t errlen) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        if (required) return rlhf_seterr(err, errlen, RLHF_EFORMAT, "%s: required key '%s' is missing.", L, key);
        *out = def;
        return RLHF_OK;
    }
    if (!json_is_integer(v))
        return rlhf_seterr(err, errlen, RLHF_EFORMAT, "%s: '%s' must be an integer (got %s).", L, key,
                           common__json_kind(v));
    json_int_t x = json_integer_value(v);
    if (x < INT_MIN || x > INT_MAX)
        return rlhf_seterr(err, errlen, RLHF_ERANGE, "%s: '%s' is out of range (%lld).", L, key, (long long)x);
    *out = (int)x;
    return RLHF_OK;
}

/* Number (integer or real) key into a finite float. */
static rlhf_err_t cfg_float(const json_t *root, const char *key, int required, float def, float *out, const char *L,
                            char *err, size_t errlen) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        if (required) return rlhf_seterr(err, errlen, RLHF_EFORMAT, "%s: required key '%s' is missing.", L, key);
        *out = def;
        return RLHF_OK;
    }
    if (!json_is_number(v))
        return rlhf_seterr(err, errlen, RLHF_EFORMAT, "%s: '%s' must be a number (got %s).", L, key,
                           common__json_kind(v));
    double d = json_number_value(v);
    if (!isfinite(d) || fabs(d) > (double)3.4e38f)
        return rlhf_seterr(err, errlen, RLHF_ERANGE, "%s: '%s' (%g) does not fit a float.", L, key, d);
    *out = (float)d;
    return RLHF_OK;
}

/* Boolean key (0/1 integers accepted too) into *out. */
static rlhf_err_t cfg_bool(const json_t *root, const char *key, int def, int *out, const char *L, char *err,
                           size_t errlen) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return RLHF_OK;
    }
    if (json_is_boolean(v)) {
        *out = json_is_true(v);
        return RLHF_OK;
    }
    if (json_is_integer(v) && (json_integer_value(v) == 0 || json_integer_value(v) == 1)) {
        *out = (int)json_integer_value(v);
        return RLHF_OK;
    }
    return rlhf_seterr(err, errlen, RLHF_EFORMAT, "%s: '%s' must be a boolean (got %s).", L, key, common__json_kind(v));
}

/* Optional keys describing Llama features: refuse the ones we do not do. */
static rlhf_err_t cfg_features(const json_t *root, const model_config_t *c, const char *L, char *err, size_t errlen) {
    static const struct { const char *key, *want; } strs[] = {{"model_type", "llama"}, {"hidden_act", "silu"}};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        json_t *v = json_object_get(root, strs[i].key);
        if (!v) continue;
        if (!json_is_string(v))
            return rlhf_seterr(err, errlen, RLHF_EFORMAT, "%s: '%s' must be a string (got %s).", L, strs[i].key,
                               common__json_kind(v));
        if (strcmp(json_string_value(v), strs[i].want) != 0)
            return rlhf_seterr(err, errlen, RLHF_EUNSUPPORTED, "%s: '%s' is \"%.40s\"; only \"%s\" is supported.", L,
                               strs[i].key, json_string_value(v), strs[i].want);
    }
    static const char *const biases[] = {"attention_bias", "mlp_bias"};
    for (size_t i = 0; i < 2; i++) {
        int b = 0;
        rlhf_err_t rc = cfg_bool(root, biases[i], 0, &b, L, err, errlen);
        if (rc != RLHF_OK) return rc;
        if (b)
            return rlhf_seterr(err, errlen, RLHF_EUNSUPPORTED, "%s: '%s' is true; the model has no biases.", L,
                               biases[i]);
    }
    json_t *rs = json_object_get(root, "rope_scaling");
    if (rs && !json_is_null(rs))
        return rlhf_seterr(err, errlen, RLHF_EUNSUPPORTED, "%s: 'rope_scaling' must be null (not supported).", L);
    int hd = 0;
    rlhf_err_t rc = cfg_int(root, "head_dim", 0, 0, &hd, L, err, errlen);
    if (rc != RLHF_OK) return rc;
    if (hd != 0 && c->n_heads > 0 && hd * c->n_heads != c->dim)
        return rlhf_seterr(err, errlen, RLHF_EUNSUPPORTED,
                           "%s: 'head_dim' is %d but hidden_size/num_attention_heads is %d/%d; only head_dim = "
                           "hidden_size/num_attention_heads is supported.",
                           L, hd, c->dim, c->n_heads);
    return RLHF_OK;
}

/* Whole small file into a NUL-terminated heap buffer. */
static rlhf_err_t read_small_file(const char *path, size_t limit, char **out, size_t *len, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return rlhf_seterr(err, errlen, RLHF_EIO, "%s: cannot open: %s.", path, strerror(errno));
    char *buf = malloc(limit + 1);
    if (!buf) {
        close(fd);
        return rlhf_seterr(err, errlen, RLHF_ENOMEM, "%s: out of memory.", path);
    }
    size_t got = 0;
    for (;;) {
        ssize_t r = read(fd, buf + got, limit + 1 - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            free(buf);
            return rlhf_seterr(err, errlen, RLHF_EIO, "%s: read failed: %s.", path, strerror(e));
        }
        if (r == 0) break;
        got += (size_t)r;
        if (got > limit) {
            close(fd);
            free(buf);
            return rlhf_seterr(err, errlen, RLHF_ERANGE, "%s: larger than the %zu-byte limit.", path, limit);
        }
    }
    close(fd);
    buf[got] = '\0';
    *out = buf;
    *len = got;
    return RLHF_OK;
}

rlhf_err_t checkpoint_load_config(const char *dir, model_config_t *cfg, char *err, size_t errlen) {
    char L[CKPT_PATH_MAX];
    if (path_join(L, sizeof L, dir, CHECKPOINT_CONFIG_FILE) != 0)
        return rlhf_seterr(err, errlen, RLHF_EINVAL, "%.60s...: folder name too long.", dir);
    char *text = NULL;
    size_t len = 0;
    rlhf_err_t rc = read_small_file(L, CKPT_MAX_CONFIG, &text, &len, err, errlen);
    if (rc != RLHF_OK) return rc;
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (!root)
        return rlhf_seterr(err, errlen, RLHF_EFORMAT, "%s: not valid JSON (%s at line %d, column %d).", L, je.text,
                           je.line, je.column);
    model_config_t c;
    memset(&c, 0, sizeof c);
    if (!json_is_object(root)) {
        rc = rlhf_seterr(err, errlen, RLHF_EFORMAT, "%s: must be a JSON object (got %s).", L, common__json_kind(root));
        goto done;
    }
    if ((rc = cfg_int(root, "hidden_size", 1, 0, &c.dim, L, err, errlen)) != RLHF_OK) goto done;
    if ((rc = cfg_int(root, "intermediate_size", 1, 0, &c.hidden_dim, L, err, errlen)) != RLHF_OK) goto done;
    if ((rc = cfg_int(root, "num_attention_heads", 1, 0, &c.n_heads, L, err, errlen)) != RLHF_OK) goto done;
    if ((rc = cfg_int(root, "num_hidden_layers", 1, 0, &c.n_layers, L, err, errlen)) != RLHF_OK) goto done;
    if ((rc = cfg_int(root, "num_key_value_heads", 0, c.n_heads, &c.n_kv_heads, L, err, errlen)) != RLHF_OK) goto done;
    if ((rc = cfg_int(root, "vocab_size", 1, 0, &c.vocab_size, L, err, errlen)) != RLHF_OK) goto done;
    if ((rc = cfg_int(root, "max_position_embeddings", 1, 0, &c.max_seq_len, L, err, errlen)) != RLHF_OK) goto done;
    if ((rc = cfg_float(root, "rms_norm_eps", 1, 0, &c.norm_eps, L, err, errlen)) != RLHF_OK) goto done;
    if ((rc = cfg_float(root, "rope_theta", 0, 10000.0f, &c.rope_theta, L, err, errlen)) != RLHF_OK) goto done;
    if ((rc = cfg_bool(root, "tie_word_embeddings", 0, &c.tied_embeddings, L, err, errlen)) != RLHF_OK) goto done;
    if ((rc = cfg_bool(root, "rlhf_scalar_head", 0, &c.scalar_head, L, err, errlen)) != RLHF_OK) goto done;
    if ((rc = cfg_features(root, &c, L, err, errlen)) != RLHF_OK) goto done;
    char why[256] = "";
    rc = model_config_validate(&c, why, sizeof why);
    if (rc != RLHF_OK) {
        size_t wl = strlen(why);
        rlhf_seterr(err, errlen, rc, "%s: %s%s", L, why, wl && why[wl - 1] == '.' ? "" : ".");
        goto done;
    }
    *cfg = c;
done:
    json_decref(root);
    return rc;
}

/* ---- model ---- */

static const char *shape_str(char *buf, size_t len, int ndim, const int64_t *shape) {
    if (ndim == 1)
        snprintf(buf, len, "[%lld]", (long long)shape[0]);
    else if (ndim == 2)
        snprintf(buf, len, "[%lld,%lld]", (long long)shape[0], (long long)shape[1]);
    else if (ndim == 0)
        snprintf(buf, len, "[]");
    else
        snprintf(buf, len, "[%lld,%lld,%lld%s]", (long long)shape[0], (long long)shape[1], (long long)shape[2],
                 ndim > 3 ? ",..." : "");
    return buf;
}

rlhf_err_t checkpoint_save_model(const model_t *m, const char *dir, char *err, size_t errlen) {
    char path[CKPT_PATH_MAX];
    ckpt_tensor_t *tab = NULL;
    st_entry_t *ent = NULL;
    int n = 0;
    rlhf_err_t rc = checkpoint_mkdirs(dir, err, errlen);
    if (rc != RLHF_OK) return rc;
    if ((rc = tensor_table(m, &tab, &n, err, errlen)) != RLHF_OK) return rc;
    ent = calloc((size_t)n + 1, sizeof(*ent));
    if (!ent) {
        rc = rlhf_seterr(err, errlen, RLHF_ENOMEM, "checkpoint: out of memory.");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        ent[i].name = tab[i].name;
        ent[i].dtype = ST_F32;
        ent[i].ndim = tab[i].ndim;
        ent[i].shape[0] = tab[i].shape[0];
        ent[i].shape[1] = tab[i].shape[1];
        ent[i].data = m->params_mem + tab[i].offset;
    }
    // transformers refuses safetensors files without format metadata.
    const char *mk[] = {"format"}, *mv[] = {"pt"};
    if (path_join(path, sizeof path, dir, CHECKPOINT_MODEL_FILE) != 0) {
        rc = rlhf_seterr(err, errlen, RLHF_EINVAL, "%.60s...: folder name too long.", dir);
        goto done;
    }
    if ((rc = safetensors_write(path, ent, n, mk, mv, 1, err, errlen)) != RLHF_OK) goto done;
    if (path_join(path, sizeof path, dir, CHECKPOINT_CONFIG_FILE) != 0) {
        rc = rlhf_seterr(err, errlen, RLHF_EINVAL, "%.60s...: folder name too long.", dir);
        goto done;
    }
    rc = save_config(&m->cfg, path, err, errlen);
done:
    free(ent);
    free(tab);
    return rc;
}

/* Hold the file to the model's table exactly, then copy. */
static rlhf_err_t load_weights(model_t *m, const safetensors_t *st, char *err, size_t errlen) {
    const char *L = safetensors_label(st);
    ckpt_tensor_t *tab = NULL;
    int n = 0;
    char s1[96], s2[96];
    rlhf_err_t rc = tensor_table(m, &tab, &n, err, errlen);
    if (rc != RLHF_OK) return rc;
    int nf = safetensors_count(st);
    unsigned char *seen = calloc((size_t)nf + 1, 1);
    if (!seen) {
        rc = rlhf_seterr(err, errlen, RLHF_ENOMEM, "%s: out of memory.", L);
        goto done;
    }
    for (int i = 0; i < n; i++) {
        const ckpt_tensor_t *e = &tab[i];
        int idx = safetensors_index(st, e->name);
        if (idx < 0) {
            int lm = strcmp(e->name, "lm_head.weight") == 0, sc = strcmp(e->name, "score.weight") == 0;
            rc = rlhf_seterr(err, errlen, RLHF_ENOTFOUND, "%s: tensor '%s' is missing%s.", L, e->name,
                             lm   ? " (config has tie_word_embeddings false)"
                             : sc ? " (config has rlhf_scalar_head 1)"
                                  : "");
            goto done;
        }
        const st_tensor_t *t = safetensors_tensor(st, idx);
        if (t->dtype != ST_F32) {
            rc = rlhf_seterr(err, errlen, RLHF_EMISMATCH, "%s: tensor '%s' has dtype %s; only F32 is supported.", L,
                             e->name, st_dtype_name(t->dtype));
            goto done;
        }
        int same = t->ndim == e->ndim;
        for (int d = 0; same && d < e->ndim; d++) same = t->shape[d] == e->shape[d];
        if (!same) {
            rc =
                rlhf_seterr(err, errlen, RLHF_EMISMATCH, "%s: tensor '%s' has shape %s, config expects %s.", L, e->name,
                            shape_str(s1, sizeof s1, t->ndim, t->shape), shape_str(s2, sizeof s2, e->ndim, e->shape));
            goto done;
        }
        seen[idx] = 1;
    }
    for (int i = 0; i < nf; i++) {
        if (seen[i]) continue;
        const char *name = safetensors_tensor(st, i)->name;
        int lm = strcmp(name, "lm_head.weight") == 0, sc = strcmp(name, "score.weight") == 0;
        rc = rlhf_seterr(err, errlen, RLHF_EMISMATCH, "%s: unexpected tensor '%s'%s.", L, name,
                         lm   ? " (config has tie_word_embeddings true)"
                         : sc ? " (config has rlhf_scalar_head 0)"
                              : "");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        const st_tensor_t *t = safetensors_find(st, tab[i].name);
        memcpy(m->params_mem + tab[i].offset, safetensors_data(st, t), tab[i].numel * sizeof(float));
    }
done:
    free(seen);
    free(tab);
    return rc;
}

rlhf_err_t checkpoint_load_model(const char *dir, model_t **out, char *err, size_t errlen) {
    *out = NULL;
    model_config_t cfg;
    char path[CKPT_PATH_MAX];
    safetensors_t *st = NULL;
    model_t *m = NULL;
    rlhf_err_t rc = checkpoint_load_config(dir, &cfg, err, errlen);
    if (rc != RLHF_OK) return rc;
    if (path_join(path, sizeof path, dir, CHECKPOINT_MODEL_FILE) != 0)
        return rlhf_seterr(err, errlen, RLHF_EINVAL, "%.60s...: folder name too long.", dir);
    if ((rc = safetensors_open(&st, path, err, errlen)) != RLHF_OK) return rc;
    m = model_new(&cfg);
    if (!m) {
        rc = rlhf_seterr(err, errlen, RLHF_ENOMEM, "%s: out of memory for a model of %zu parameters.", dir,
                         model_config_n_params(&cfg));
        goto done;
    }
    if ((rc = load_weights(m, st, err, errlen)) != RLHF_OK) goto done;
    *out = m;
    m = NULL;
done:
    model_destroy(&m);
    safetensors_destroy(&st);
    return rc;
}

/* ---- trainer state ---- */

enum { TS_KEYS = 16 };

rlhf_err_t checkpoint_save_trainer(const adamw_t *opt, const trainer_state_t *ts, const char *dir, char *err,
                                   size_t errlen) {
    char path[CKPT_PATH_MAX];
    char vals[TS_KEYS][96];
    const char *keys[TS_KEYS], *vp[TS_KEYS];
    int k = 0;
    const adamw_config_t *c = &opt->cfg;
#define TS_PUT(key, ...)                                                                                               \
    do {                                                                                                               \
        keys[k] = key;                                                                                                 \
        snprintf(vals[k], sizeof vals[k], __VA_ARGS__);                                                                \
        vp[k] = vals[k];                                                                                               \
        k++;                                                                                                           \
    } while (0)
#define TS_PUT_F32(key, x)                                                                                             \
    do {                                                                                                               \
        keys[k] = key;                                                                                                 \
        float_text(vals[k], x);                                                                                        \
        vp[k] = vals[k];                                                                                               \
        k++;                                                                                                           \
    } while (0)
    TS_PUT("format", "%s", CKPT_TRAINER_FORMAT);
    TS_PUT("step", "%" PRId64, ts->step);
    TS_PUT("adam_step", "%" PRId64, opt->step);
    TS_PUT("rng", "%016" PRIx64 ",%016" PRIx64 ",%016" PRIx64 ",%016" PRIx64, ts->rng.s[0], ts->rng.s[1], ts->rng.s[2],
           ts->rng.s[3]);
    TS_PUT("data_pos", "%" PRId64, ts->data_pos);
    TS_PUT("epoch", "%" PRId64, ts->epoch);
    // Floats as the shortest text that reads back exactly (float_text).
    TS_PUT_F32("adam.lr", c->lr);
    TS_PUT_F32("adam.beta1", c->beta1);
    TS_PUT_F32("adam.beta2", c->beta2);
    TS_PUT_F32("adam.eps", c->eps);
    TS_PUT_F32("adam.weight_decay", c->weight_decay);
    TS_PUT_F32("adam.grad_clip", c->grad_clip);
    TS_PUT("adam.warmup_steps", "%d", c->warmup_steps);
    TS_PUT("adam.total_steps", "%d", c->total_steps);
    TS_PUT_F32("adam.min_lr_frac", c->min_lr_frac);
#undef TS_PUT
#undef TS_PUT_F32
    st_entry_t ent[2] = {
        {.name = "adam.m", .dtype = ST_F32, .ndim = 1, .shape = {(int64_t)opt->n}, .data = opt->m},
        {.name = "adam.v", .dtype = ST_F32, .ndim = 1, .shape = {(int64_t)opt->n}, .data = opt->v},
    };
    rlhf_err_t rc = checkpoint_mkdirs(dir, err, errlen);
    if (rc != RLHF_OK) return rc;
    if (path_join(path, sizeof path, dir, CHECKPOINT_TRAINER_FILE) != 0)
        return rlhf_seterr(err, errlen, RLHF_EINVAL, "%.60s...: folder name too long.", dir);
    return safetensors_write(path, ent, 2, keys, vp, k, err, errlen);
}

static rlhf_err_t meta_get(const safetensors_t *st, const char *key, const char **out, char *err, size_t errlen) {
    *out = safetensors_meta(st, key);
    if (!*out)
        return rlhf_seterr(err, errlen, RLHF_EFORMAT, "%s: metadata '%s' is missing.", safetensors_label(st), key);
    return RLHF_OK;
}

static rlhf_err_t meta_i64(const safetensors_t *st, const char *key, int64_t lo, int64_t hi, int64_t *out, char *err,
                           size_t errlen) {
    const char *s;
    rlhf_err_t rc = meta_get(st, key, &s, err, errlen);
    if (rc != RLHF_OK) return rc;
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (errno || end == s || *end != '\0' || x < lo || x > hi)
        return rlhf_seterr(err, errlen, RLHF_EFORMAT,
                           "%s: metadata '%s' must be an integer in [%lld, %lld] (got '%.40s').", safetensors_label(st),
                           key, (long long)lo, (long long)hi, s);
    *out = (int64_t)x;
    return RLHF_OK;
}

static rlhf_err_t meta_f32(const safetensors_t *st, const char *key, float *out, char *err, size_t errlen) {
    const char *s;
    rlhf_err_t rc = meta_get(st, key, &s, err, errlen);
    if (rc != RLHF_OK) return rc;
    char *end;
    errno = 0;
    float x = strtof(s, &end);
    if (end == s || *end != '\0' || !isfinite(x))
        return rlhf_seterr(err, errlen, RLHF_EFORMAT, "%s: metadata '%s' must be a finite number (got '%.40s').",
                           safetensors_label(st), key, s);
    *out = x;
    return RLHF_OK;
}

static rlhf_err_t meta_rng(const safetensors_t *st, rng_t *r, char *err, size_t errlen) {
    const char *s;
    rlhf_err_t rc = meta_get(st, "rng", &s, err, errlen);
    if (rc != RLHF_OK) return rc;
    const char *p = s;
    uint64_t any = 0;
    for (int i = 0; i < 4; i++) {
        char *end;
        int ok = 1;
        for (int d = 0; d < 16; d++)
            ok &= (p[d] >= '0' && p[d] <= '9') || (p[d] >= 'a' && p[d] <= 'f') || (p[d] >= 'A' && p[d] <= 'F');
        if (ok) {
            errno = 0;
            r->s[i] = (uint64_t)strtoull(p, &end, 16);
            ok = errno == 0 && end == p + 16 && *end == (i < 3 ? ',' : '\0');
        }
        if (!ok)
            return rlhf_seterr(err, errlen, RLHF_EFORMAT,
                               "%s: metadata 'rng' must be 4 comma-separated 16-digit hex words (got '%.80s').",
                               safetensors_label(st), s);
        any |= r->s[i];
        p = end + 1;
    }
    if (!any)
        return rlhf_seterr(err, errlen, RLHF_EFORMAT, "%s: metadata 'rng' is all zero (not a valid generator state).",
                           safetensors_label(st));
    return RLHF_OK;
}

rlhf_err_t checkpoint_load_trainer(adamw_t *opt, trainer_state_t *ts, const char *dir, char *err, size_t errlen) {
    char path[CKPT_PATH_MAX];
    safetensors_t *st = NULL;
    if (path_join(path, sizeof path, dir, CHECKPOINT_TRAINER_FILE) != 0)
        return rlhf_seterr(err, errlen, RLHF_EINVAL, "%.60s...: folder name too long.", dir);
    rlhf_err_t rc = safetensors_open(&st, path, err, errlen);
    if (rc != RLHF_OK) return rc;

    trainer_state_t t;
    adamw_config_t c;
    int64_t adam_step = 0, warm = 0, total = 0;
    const char *fmt = NULL;
    if ((rc = meta_get(st, "format", &fmt, err, errlen)) != RLHF_OK) goto done;
    if (strcmp(fmt, CKPT_TRAINER_FORMAT) != 0) {
        rc = rlhf_seterr(err, errlen, RLHF_EUNSUPPORTED, "%s: metadata 'format' is '%.40s', expected '%s'.", path, fmt,
                         CKPT_TRAINER_FORMAT);
        goto done;
    }
    if ((rc = meta_i64(st, "step", 0, INT64_MAX, &t.step, err, errlen)) != RLHF_OK) goto done;
    if ((rc = meta_i64(st, "adam_step", 0, INT64_MAX, &adam_step, err, errlen)) != RLHF_OK) goto done;
    if ((rc = meta_i64(st, "data_pos", 0, INT64_MAX, &t.data_pos, err, errlen)) != RLHF_OK) goto done;
    if ((rc = meta_i64(st, "epoch", 0, INT64_MAX, &t.epoch, err, errlen)) != RLHF_OK) goto done;
    if ((rc = meta_rng(st, &t.rng, err, errlen)) != RLHF_OK) goto done;
    if ((rc = meta_f32(st, "adam.lr", &c.lr, err, errlen)) != RLHF_OK) goto done;
    if ((rc = meta_f32(st, "adam.beta1", &c.beta1, err, errlen)) != RLHF_OK) goto done;
    if ((rc = meta_f32(st, "adam.beta2", &c.beta2, err, errlen)) != RLHF_OK) goto done;
    if ((rc = meta_f32(st, "adam.eps", &c.eps, err, errlen)) != RLHF_OK) goto done;
    if ((rc = meta_f32(st, "adam.weight_decay", &c.weight_decay, err, errlen)) != RLHF_OK) goto done;
    if ((rc = meta_f32(st, "adam.grad_clip", &c.grad_clip, err, errlen)) != RLHF_OK) goto done;
    if ((rc = meta_i64(st, "adam.warmup_steps", INT_MIN, INT_MAX, &warm, err, errlen)) != RLHF_OK) goto done;
    if ((rc = meta_i64(st, "adam.total_steps", INT_MIN, INT_MAX, &total, err, errlen)) != RLHF_OK) goto done;
    if ((rc = meta_f32(st, "adam.min_lr_frac", &c.min_lr_frac, err, errlen)) != RLHF_OK) goto done;
    c.warmup_steps = (int)warm;
    c.total_steps = (int)total;

    static const char *const names[2] = {"adam.m", "adam.v"};
    for (int i = 0; i < 2; i++) {
        const st_tensor_t *x = safetensors_find(st, names[i]);
        if (!x) {
            rc = rlhf_seterr(err, errlen, RLHF_ENOTFOUND, "%s: tensor '%s' is missing.", path, names[i]);
            goto done;
        }
        if (x->dtype != ST_F32 || x->ndim != 1) {
            rc = rlhf_seterr(err, errlen, RLHF_EMISMATCH, "%s: tensor '%s' must be 1-D F32 (got %dD %s).", path,
                             names[i], x->ndim, st_dtype_name(x->dtype));
            goto done;
        }
        if ((uint64_t)x->shape[0] != (uint64_t)opt->n) {
            rc = rlhf_seterr(err, errlen, RLHF_EMISMATCH,
                             "%s: tensor '%s' has %lld elements but the optimizer has %zu (checkpoint of another "
                             "model?).",
                             path, names[i], (long long)x->shape[0], opt->n);
            goto done;
        }
    }
    if (opt->n) {
        memcpy(opt->m, safetensors_data(st, safetensors_find(st, "adam.m")), opt->n * sizeof(float));
        memcpy(opt->v, safetensors_data(st, safetensors_find(st, "adam.v")), opt->n * sizeof(float));
    }
    opt->cfg = c;
    opt->step = adam_step;
    *ts = t;
done:
    safetensors_destroy(&st);
    return rc;
}
