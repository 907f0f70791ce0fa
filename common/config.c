/*
 * config.c - the schema table, and loading, overriding, checking and
 * writing rlhf_config_t (see config.h for the contract).
 *
 * Every key is one row of SCHEMA: its dotted path, type, field, default (as
 * text, parsed by the same code as any value, so a default is in range by
 * construction: test_config checks), range and help. Everything else (YAML
 * loading, environment names, --set, dump, JSON, help) walks the table, so
 * adding a key is adding a row (and a field) and regenerating
 * configs/default.yaml (`build/tests/test_config --write-default
 * configs/default.yaml`; test_config fails until it is).
 *
 * What it deliberately is not: a general YAML binding. The loader walks
 * libyaml's event stream against the schema, so it can say where each
 * problem is (line and column of the offending key or value).
 */
#include "common/config.h"

#include <netdb.h>
#include <sys/socket.h>

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <yaml.h>

#define CONFIG_FILE_MAX (1 << 20) // a config file larger than this is a mistake
#define MSG_LEN         512
#define SHOWN_LEN       48 // characters of a bad value echoed in a message

/* ---- the schema ---- */

static const char *const ALGOS[] = {"ppo", "grpo", "rloo", NULL};
static const char *const PRESETS[] = {"tiny", "small", "base", "stories15m", NULL};
static const char *const TASKS[] = {"add", NULL};
static const char *const KL_ESTIMATORS[] = {"k1", "k3", NULL};
static const char *const REWARD_NORMS[] = {"none", "batch", "running", NULL};

/* offsetof with a compile-time check of the field's type: _Generic has no
 * match (a compile error) if the field is not of the row's C type. */
#define OFFSET(f, T) _Generic(((rlhf_config_t *)0)->f, T : offsetof(rlhf_config_t, f))
#define FIELD(f, T)  OFFSET(f, T), sizeof(((rlhf_config_t *)0)->f)
#define K_INT(k, f, def, lo, hi, help)                                                                                 \
    { k, CONFIG_INT, FIELD(f, int), 0, def, lo, hi, 0, NULL, help }
#define K_U64(k, f, def, help)                                                                                         \
    { k, CONFIG_U64, FIELD(f, uint64_t), 0, def, 0, 0, 0, NULL, help }
#define K_FLT(k, f, def, lo, hi, fl, help)                                                                             \
    { k, CONFIG_FLOAT, FIELD(f, float), 0, def, lo, hi, fl, NULL, help }
#define K_BOOL(k, f, def, help)                                                                                        \
    { k, CONFIG_BOOL, FIELD(f, bool), 0, def, 0, 0, 0, NULL, help }
#define K_STR(k, f, def, fl, help)                                                                                     \
    { k, CONFIG_STRING, FIELD(f, char *), 0, def, 0, 0, fl, NULL, help }
#define K_ENUM(k, f, def, ch, help)                                                                                    \
    { k, CONFIG_ENUM, FIELD(f, char *), 0, def, 0, 0, 0, ch, help }
#define K_INTS(k, f, n, def, lo, hi, help)                                                                             \
    { k, CONFIG_INT_LIST, FIELD(f, int *), OFFSET(n, int), def, lo, hi, 0, NULL, help }

#define OPEN_LO               CONFIG_F_MIN_OPEN
#define OPEN_HI               CONFIG_F_MAX_OPEN
#define BIG                   10000000 // "practically unbounded" step counts
#define PORT(k, f, def, help) K_INT(k, f, def, 1, 65535, help)

static const config_key_t SCHEMA[] = {
    /* run */
    K_STR("run.out_dir", run.out_dir, "runs/ppo", CONFIG_F_NONEMPTY,
          "run folder: metrics.jsonl, checkpoints, final/, summary.json, plots"),
    K_U64("run.seed", run.seed, "1", "master seed: model init, prompt order, sampling seeds"),
    K_ENUM("run.algo", run.algo, "ppo", ALGOS, "ppo (critic + GAE), grpo (group mean/std), rloo (leave-one-out)"),
    K_INT("run.steps", run.steps, "40", 1, BIG, "learner steps (policy updates) of the RL stage"),
    K_INT("run.actors", run.actors, "2", 1, 256, "`rlhf run`: actor processes to start"),
    K_INT("run.reward_workers", run.reward_workers, "1", 1, 256, "`rlhf run`: reward worker processes to start"),
    K_INT("run.max_lag", run.max_lag, "1", 0, 1000,
          "policy versions a rollout may lag behind; 0 = synchronous on-policy"),
    K_BOOL("run.resume", run.resume, "false", "continue from out_dir/checkpoint when it exists"),

    /* model */
    K_ENUM("model.preset", model.preset, "small", PRESETS, "shape of a new model: tiny, small, base, stories15m"),
    K_STR("model.init", model.init, "", 0, "checkpoint dir to start from; \"\" = new model, then the SFT stage"),
    K_INT("model.dim", model.dim, "0", 0, 65536, "model width; 0 = the preset's"),
    K_INT("model.n_layers", model.n_layers, "0", 0, 1024, "layers; 0 = the preset's"),
    K_INT("model.n_heads", model.n_heads, "0", 0, 1024, "query heads; 0 = the preset's"),
    K_INT("model.n_kv_heads", model.n_kv_heads, "0", 0, 1024, "key/value heads (divides n_heads); 0 = the preset's"),
    K_INT("model.hidden_dim", model.hidden_dim, "0", 0, 1 << 20, "SwiGLU hidden size; 0 = the preset's"),
    K_INT("model.max_seq_len", model.max_seq_len, "0", 0, 65536, "context length; 0 = the preset's"),

    /* task */
    K_ENUM("task.name", task.name, "add", TASKS, "built-in task (add: multi-digit addition, exact answers)"),
    K_U64("task.seed", task.seed, "1234", "seed of the task's problems and of the held-out split"),
    K_INT("task.min_digits", task.min_digits, "2", 1, TASK_MAX_DIGITS, "fewest digits per operand"),
    K_INT("task.max_digits", task.max_digits, "2", 1, TASK_MAX_DIGITS, "most digits per operand"),
    K_INT("task.n_train", task.n_train, "7000", 1, TASK_MAX_EXAMPLES, "training problems (prompts of an epoch)"),
    K_INT("task.n_heldout", task.n_heldout, "300", 0, TASK_MAX_EXAMPLES, "held-out problems (eval_before/after)"),
    K_FLT("task.careless", task.careless, "0.7", 0, 1, 0,
          "fraction of SFT demonstrations that forget the final carry (58+67=25); RL must fix them"),

    /* sft */
    K_INT("sft.steps", sft.steps, "1200", 0, BIG,
          "SFT warm-up steps before RL; 0 = none (none either with model.init)"),
    K_INT("sft.batch", sft.batch, "64", 1, 4096, "SFT sequences per step"),
    K_FLT("sft.lr", sft.lr, "2e-3", 0, 1, OPEN_LO, "SFT peak learning rate (warm-up, then cosine)"),
    K_INT("sft.warmup", sft.warmup, "150", 0, BIG, "SFT warm-up steps of the learning rate"),

    /* ppo */
    K_FLT("ppo.lr", ppo.lr, "1e-4", 0, 1, OPEN_LO, "policy learning rate (constant)"),
    K_FLT("ppo.critic_lr", ppo.critic_lr, "1e-4", 0, 1, OPEN_LO, "critic learning rate (ppo only)"),
    K_INT("ppo.batch_prompts", ppo.batch_prompts, "16", 1, 65536, "prompts per learner step"),
    K_INT("ppo.k", ppo.k, "8", 1, 256, "samples per prompt (>= 2 for grpo, rloo)"),
    K_INT("ppo.minibatch", ppo.minibatch, "32", 1, 1 << 24, "samples per gradient step; divides batch_prompts * k"),
    K_INT("ppo.epochs", ppo.epochs, "1", 1, 100, "passes over each batch"),
    K_FLT("ppo.clip", ppo.clip, "0.2", 0, 1, OPEN_LO | OPEN_HI, "clip range of the probability ratio"),
    K_FLT("ppo.value_clip", ppo.value_clip, "0.2", 0, 100, 0, "clip range of critic values; 0 = unclipped"),
    K_FLT("ppo.gamma", ppo.gamma, "1.0", 0, 1, 0, "discount (1: one terminal reward per episode)"),
    K_FLT("ppo.lambda", ppo.lambda, "0.95", 0, 1, 0, "GAE lambda"),
    K_ENUM("ppo.kl_estimator", ppo.kl_estimator, "k1", KL_ESTIMATORS,
           "per-token KL penalty: k1 = log p - log p_ref, k3 = Schulman's k3 (>= 0)"),
    K_FLT("ppo.kl_coef", ppo.kl_coef, "0.01", 0, 100, 0,
          "KL penalty coefficient beta (initial value when adaptive; Llama 2 7B: 0.01)"),
    K_BOOL("ppo.kl_adaptive", ppo.kl_adaptive, "false", "adapt kl_coef toward kl_target (Ziegler et al.)"),
    K_FLT("ppo.kl_target", ppo.kl_target, "6.0", 0, 1000, OPEN_LO, "adaptive KL target, nats per sequence"),
    K_INT("ppo.kl_horizon", ppo.kl_horizon, "10000", 1, 1000000000, "adaptive KL horizon, in samples"),
    K_ENUM("ppo.reward_norm", ppo.reward_norm, "running", REWARD_NORMS,
           "reward whitening: none, batch (this batch), running (all batches so far)"),
    K_FLT("ppo.reward_clip", ppo.reward_clip, "10.0", 0, 1e6, 0, "clip rewards to [-c, c] after whitening; 0 = off"),
    K_BOOL("ppo.whiten_advantages", ppo.whiten_advantages, "true", "normalise advantages per batch"),
    K_FLT("ppo.entropy_coef", ppo.entropy_coef, "0", 0, 1, 0, "entropy bonus"),
    K_BOOL("ppo.grpo_scale_std", ppo.grpo_scale_std, "true",
           "grpo: divide by the group's reward std (false: mean-centred only, Dr. GRPO)"),
    K_FLT("ppo.grpo_eps", ppo.grpo_eps, "1e-4", 0, 1, OPEN_LO, "grpo: (r - mean) / (std + eps)"),
    K_FLT("ppo.grad_clip", ppo.grad_clip, "1.0", 0, 1e6, 0, "global gradient norm clip; 0 = off"),
    K_FLT("ppo.beta1", ppo.beta1, "0.9", 0, 1, OPEN_HI, "AdamW beta1 (Llama 2: 0.9)"),
    K_FLT("ppo.beta2", ppo.beta2, "0.95", 0, 1, OPEN_HI, "AdamW beta2 (Llama 2: 0.95)"),
    K_FLT("ppo.adam_eps", ppo.adam_eps, "1e-5", 0, 1, OPEN_LO, "AdamW epsilon (Llama 2: 1e-5)"),
    K_FLT("ppo.weight_decay", ppo.weight_decay, "0.1", 0, 1, 0, "AdamW decoupled weight decay (Llama 2: 0.1)"),

    /* sampling */
    K_FLT("sampling.temperature", sampling.temperature, "1.0", 0, 100, 0, "rollout temperature (> 0 for RL)"),
    K_INT("sampling.top_k", sampling.top_k, "0", 0, INT_MAX, "keep the k most likely tokens; 0 = off"),
    K_FLT("sampling.top_p", sampling.top_p, "1.0", 0, 1, OPEN_LO, "nucleus mass; 1 = off"),
    K_INT("sampling.max_new_tokens", sampling.max_new_tokens, "16", 1, 65536, "longest completion"),
    K_INTS("sampling.stop", sampling.stop, sampling.n_stop, "[258]", 0, (1 << 24) - 1,
           "token ids that end a completion (258 = <|eos|>), at most 8"),

    /* learner */
    K_STR("learner.bind", learner.bind, "127.0.0.1", CONFIG_F_NONEMPTY | CONFIG_F_HOST,
          "address the learner binds; \"*\" = all interfaces (containers)"),
    PORT("learner.work_port", learner.work_port, "5555", "actors ask for work (ROUTER)"),
    PORT("learner.rollouts_port", learner.rollouts_port, "5556", "actors push rollouts (PULL)"),
    PORT("learner.score_port", learner.score_port, "5557", "reward workers ask for rollouts (ROUTER)"),
    PORT("learner.scored_port", learner.scored_port, "5558", "reward workers push scores (PULL)"),
    PORT("learner.announce_port", learner.announce_port, "5559", "weights versions announced (PUB)"),
    PORT("learner.weights_port", learner.weights_port, "5560", "weights served in chunks (ROUTER)"),
    K_INT("learner.http_port", learner.http_port, "8080", -1, 65535,
          "/metrics, /healthz, /status, /; 0 = any free port, -1 = off"),
    K_INT("learner.ticket_prompts", learner.ticket_prompts, "8", 1, 1024, "prompts per ticket"),
    K_INT("learner.ticket_timeout_ms", learner.ticket_timeout_ms, "30000", 1, 86400000,
          "a ticket not generated this long after it was sent is reissued"),
    K_INT("learner.score_timeout_ms", learner.score_timeout_ms, "30000", 1, 86400000,
          "rollouts not scored this long after they were sent are re-scored"),
    K_INT("learner.max_open_epochs", learner.max_open_epochs, "2", 1, 8,
          "epochs handed out at once; 1 = strict barrier between epochs"),
    K_INT("learner.checkpoint_every", learner.checkpoint_every, "50", 0, BIG,
          "checkpoint every N steps; 0 = only at the end"),
    K_INT("learner.eval_every", learner.eval_every, "5", 0, BIG,
          "held-out eval every N steps; 0 = only before and after"),
    K_INT("learner.threads", learner.threads, "0", 0, 1024, "compute threads; 0 = all cores"),
    K_FLT("learner.logprob_tol", learner.logprob_tol, "1e-3", 0, 1e6, 0,
          "rollouts claiming the current weights whose log-probs differ more are dropped; 0 = no check"),
    K_INT("learner.weights_chunk", learner.weights_chunk, "2097152", 1, 16777216, "bytes per weights chunk"),

    /* actor */
    K_STR("actor.learner", actor.learner, "127.0.0.1", CONFIG_F_NONEMPTY | CONFIG_F_HOST,
          "learner host name or IP (ports: learner.*_port)"),
    K_INT("actor.batch", actor.batch, "32", 1, 4096, "sequences decoded together"),
    K_INT("actor.threads", actor.threads, "1", 0, 1024, "compute threads; 0 = all cores"),
    K_INT("actor.credit", actor.credit, "2", 1, 1024, "tickets asked for ahead of time"),
    K_INT("actor.http_port", actor.http_port, "0", -1, 65535, "/metrics etc.; 0 = any free port, -1 = off"),
    K_STR("actor.http_bind", actor.http_bind, "127.0.0.1", CONFIG_F_NONEMPTY | CONFIG_F_HOST,
          "address /metrics etc. bind; \"*\" = all interfaces (containers)"),
    K_INT("actor.connect_timeout_ms", actor.connect_timeout_ms, "60000", 0, 86400000,
          "exit (status 1) if no learner answers this long after start-up; 0 = wait forever"),
    K_INT("actor.delay_ms", actor.delay_ms, "0", 0, 60000,
          "artificial extra generation time per sample, ms (scaling benchmarks); 0 = none"),

    /* reward */
    K_STR("reward.learner", reward.learner, "127.0.0.1", CONFIG_F_NONEMPTY | CONFIG_F_HOST,
          "learner host name or IP (ports: learner.*_port)"),
    K_INT("reward.batch", reward.batch, "32", 1, 4096, "sequences per reference-model forward"),
    K_INT("reward.threads", reward.threads, "1", 0, 1024, "compute threads; 0 = all cores"),
    K_INT("reward.credit", reward.credit, "2", 1, 1024, "score jobs asked for ahead of time"),
    K_INT("reward.http_port", reward.http_port, "0", -1, 65535, "/metrics etc.; 0 = any free port, -1 = off"),
    K_INT("reward.connect_timeout_ms", reward.connect_timeout_ms, "60000", 0, 86400000,
          "exit (status 1) if no learner answers this long after start-up; 0 = wait forever"),
    K_STR("reward.http_bind", reward.http_bind, "127.0.0.1", CONFIG_F_NONEMPTY | CONFIG_F_HOST,
          "address /metrics etc. bind; \"*\" = all interfaces (containers)"),

    /* security */
    K_STR("security.server_public_key", security.server_public_key, "", 0,
          "CurveZMQ: learner public key file (every role); \"\" = no encryption"),
    K_STR("security.server_secret_key", security.server_secret_key, "", 0, "CurveZMQ: learner secret key file"),
    K_STR("security.client_public_key", security.client_public_key, "", 0,
          "CurveZMQ: this actor's/reward worker's public key file"),
    K_STR("security.client_secret_key", security.client_secret_key, "", 0,
          "CurveZMQ: this actor's/reward worker's secret key file"),
    K_STR("security.authorized_keys", security.authorized_keys, "", 0,
          "learner: file of allowed client public keys; \"\" = any client with the server key"),
};

#define N_KEYS (sizeof(SCHEMA) / sizeof(SCHEMA[0]))

/* One comment line above each top-level section in config_dump. */
static const struct {
    const char *name, *help;
} SECTIONS[] = {
    {"run", "the run as a whole (rlhf run, every role)"},
    {"model", "the policy model (the critic and the reference start as copies of it)"},
    {"task", "built-in task: prompts, verifier, held-out split"},
    {"sft", "supervised warm-up on the task before RL (new models only)"},
    {"ppo", "RL hyperparameters (ppo, grpo, rloo), InstructGPT / Llama 2 recipes scaled down"},
    {"sampling", "how actors sample rollouts"},
    {"learner", "the hub: endpoints it binds, tickets, checkpoints"},
    {"actor", "actor processes (generation)"},
    {"reward", "reward worker processes (scoring, reference log-probs)"},
    {"security", "CurveZMQ (rlhf keygen); all empty = plain TCP"},
};

const config_key_t *config_schema(size_t *n) {
    if (n) *n = N_KEYS;
    return SCHEMA;
}

const config_key_t *config_find(const char *key) {
    for (size_t i = 0; i < N_KEYS; i++)
        if (strcmp(SCHEMA[i].key, key) == 0) return &SCHEMA[i];
    return NULL;
}

/* Is path a proper prefix of some key at a dot ("ppo" of "ppo.clip")? */
static int is_section(const char *path) {
    size_t n = strlen(path);
    for (size_t i = 0; i < N_KEYS; i++)
        if (strncmp(SCHEMA[i].key, path, n) == 0 && SCHEMA[i].key[n] == '.') return 1;
    return 0;
}

int config_env_name(const char *key, char *buf, size_t len) {
    char tmp[CONFIG_KEY_LEN + 8];
    size_t j = 0;
    j += (size_t)snprintf(tmp, sizeof tmp, "RLHF_");
    for (const char *p = key; *p && j + 1 < sizeof tmp; p++)
        tmp[j++] = *p == '.' ? '_' : (char)toupper((unsigned char)*p);
    tmp[j] = '\0';
    return snprintf(buf, len, "%s", tmp);
}

/* ---- did you mean ---- */

static size_t edit_distance(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    if (na > CONFIG_KEY_LEN || nb > CONFIG_KEY_LEN) return 4 * CONFIG_KEY_LEN; // far from everything
    size_t row[CONFIG_KEY_LEN + 1];
    for (size_t j = 0; j <= nb; j++) row[j] = j;
    for (size_t i = 1; i <= na; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= nb; j++) {
            size_t up = row[j];
            size_t best = diag + (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[nb];
}

static const char *leaf(const char *key) {
    const char *d = strrchr(key, '.');
    return d ? d + 1 : key;
}

/* The closest candidate to s into out: a key, or with sections a top-level
 * section name. Close means: within 2 edits or a third of the length, the
 * same leaf in another section ("ppo.temperature" -> "sampling.temperature"),
 * or, in the same section, a leaf that starts with what was typed
 * ("ppo.batch" -> "ppo.batch_prompts"). Returns 0 when nothing is close. */
static int suggest(const char *s, int sections, char *out, size_t len) {
    const char *best = NULL;
    size_t best_d = SIZE_MAX, slen = strlen(s); // distances in half-edits: ties go to the stronger hint
    const char *sl = leaf(s);
    size_t sl_len = strlen(sl), pre = slen - sl_len; // "ppo." of "ppo.clipp"
    if (sections) {
        for (size_t i = 0; i < sizeof SECTIONS / sizeof SECTIONS[0]; i++) {
            size_t d = 2 * edit_distance(s, SECTIONS[i].name);
            if (d < best_d) best_d = d, best = SECTIONS[i].name;
        }
    } else {
        for (size_t i = 0; i < N_KEYS; i++) {
            const char *k = SCHEMA[i].key, *kl = leaf(k);
            size_t d = 2 * edit_distance(s, k);
            size_t dl = 2 * edit_distance(sl, kl) + 2; // the leaf, in another section
            if (dl < d) d = dl;
            if (sl_len >= 3 && (size_t)(kl - k) == pre && strncmp(k, s, pre) == 0 && strncmp(kl, sl, sl_len) == 0 &&
                d > 1)
                d = 1; // same section, a longer name
            if (d < best_d) best_d = d, best = k;
        }
    }
    if (!best || !(best_d <= 4 || best_d * 3 <= 2 * slen)) return 0;
    snprintf(out, len, "%s", best);
    return 1;
}

/* "unknown key 'x' (did you mean 'y'?)" into msg. */
static void unknown_msg(const char *what, const char *path, int sections, char *msg, size_t len) {
    char s[CONFIG_KEY_LEN];
    if (suggest(path, sections, s, sizeof s))
        snprintf(msg, len, "unknown %s '%s' (did you mean '%s'?)", what, path, s);
    else
        snprintf(msg, len, "unknown %s '%s' (every key is listed in configs/default.yaml)", what, path);
}

/* The first key of a section, for "e.g. 'ppo.lr'". */
static const char *first_key(const char *section) {
    size_t n = strlen(section);
    for (size_t i = 0; i < N_KEYS; i++)
        if (strncmp(SCHEMA[i].key, section, n) == 0 && SCHEMA[i].key[n] == '.') return SCHEMA[i].key;
    return section;
}

/* ---- values ---- */

static void *field(rlhf_config_t *cfg, const config_key_t *k) {
    return (char *)cfg + k->offset;
}
static const void *cfield(const rlhf_config_t *cfg, const config_key_t *k) {
    return (const char *)cfg + k->offset;
}

/* A bad value as shown in a message: printable ASCII, cut short. */
static void shown(const char *s, char *out, size_t len) {
    size_t j = 0, n = strlen(s), keep = n < len ? n : len - 4; // room for "..."
    for (size_t i = 0; i < keep; i++) {
        unsigned char c = (unsigned char)s[i];
        out[j++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    out[j] = '\0';
    if (keep < n) snprintf(out + j, len - j, "...");
}

static void fmt_num(double v, int is_int, char *buf, size_t len) {
    if (is_int || (v == floor(v) && fabs(v) < 1e9))
        snprintf(buf, len, "%.0f", v);
    else
        snprintf(buf, len, "%g", v);
}

/* "in [1, 100]", "in (0, 1]", ">= 0" ... for a row's range. */
static void range_desc(const config_key_t *k, char *buf, size_t len) {
    int is_int = k->type != CONFIG_FLOAT;
    char lo[32], hi[32];
    fmt_num(k->min, is_int, lo, sizeof lo);
    fmt_num(k->max, is_int, hi, sizeof hi);
    if (k->max >= HUGE_VAL)
        snprintf(buf, len, "%s %s", (k->flags & CONFIG_F_MIN_OPEN) ? ">" : ">=", lo);
    else
        snprintf(buf, len, "in %c%s, %s%c", (k->flags & CONFIG_F_MIN_OPEN) ? '(' : '[', lo, hi,
                 (k->flags & CONFIG_F_MAX_OPEN) ? ')' : ']');
}

static int in_range(const config_key_t *k, double v) {
    if ((k->flags & CONFIG_F_MIN_OPEN) ? !(v > k->min) : !(v >= k->min)) return 0;
    if ((k->flags & CONFIG_F_MAX_OPEN) ? !(v < k->max) : !(v <= k->max)) return 0;
    return 1;
}

static int parse_ll(const char *s, long long *out) {
    if (!*s || isspace((unsigned char)*s)) return 0;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end) return 0;
    *out = v;
    return 1;
}

static int parse_bool(const char *s, bool *out) {
    static const char *const yes[] = {"true", "yes", "on", "1"}, *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) return *out = true, 1;
        if (strcasecmp(s, no[i]) == 0) return *out = false, 1;
    }
    return 0;
}

/* One element of an int list; the range is the row's. */
static rlhf_err_t list_elem(const config_key_t *k, const char *s, int *out, const char *all, char *msg, size_t len) {
    long long v;
    char r[96], got[SHOWN_LEN];
    if (!parse_ll(s, &v) || !in_range(k, (double)v)) {
        range_desc(k, r, sizeof r);
        shown(all, got, sizeof got);
        snprintf(msg, len, "'%s' must be a list of at most %zu integers %s (got '%s')", k->key, k->size / sizeof(int),
                 r, got);
        return parse_ll(s, &v) ? RLHF_ERANGE : RLHF_EMISMATCH;
    }
    *out = (int)v;
    return RLHF_OK;
}

/* Set an int list from items (YAML sequence elements). all: the value as
 * written, for messages. */
static rlhf_err_t set_list(rlhf_config_t *cfg, const config_key_t *k, char **items, size_t n, const char *all,
                           char *msg, size_t len) {
    size_t cap = k->size / sizeof(int);
    int tmp[64];
    if (n > cap || n > sizeof tmp / sizeof tmp[0]) {
        char r[96], got[SHOWN_LEN];
        range_desc(k, r, sizeof r);
        shown(all, got, sizeof got);
        snprintf(msg, len, "'%s' must be a list of at most %zu integers %s (got %zu: '%s')", k->key, cap, r, n, got);
        return RLHF_ERANGE;
    }
    for (size_t i = 0; i < n; i++) {
        rlhf_err_t rc = list_elem(k, items[i], &tmp[i], all, msg, len);
        if (rc != RLHF_OK) return rc;
    }
    int *dst = field(cfg, k);
    memset(dst, 0, k->size);
    memcpy(dst, tmp, n * sizeof(int));
    *(int *)((char *)cfg + k->count_offset) = (int)n;
    return RLHF_OK;
}

/* A list written as text: "[258, 259]", "258,259", "258 259", "" or "[]". */
static rlhf_err_t set_list_text(rlhf_config_t *cfg, const config_key_t *k, const char *text, char *msg, size_t len) {
    char buf[1024];
    char *items[64];
    size_t n = 0;
    if (strlen(text) >= sizeof buf) {
        snprintf(msg, len, "'%s' is too long", k->key);
        return RLHF_ERANGE;
    }
    snprintf(buf, sizeof buf, "%s", text);
    char *s = buf;
    while (isspace((unsigned char)*s)) s++;
    size_t sl = strlen(s);
    while (sl && isspace((unsigned char)s[sl - 1])) s[--sl] = '\0';
    if (*s == '[') {
        if (sl < 2 || s[sl - 1] != ']') {
            snprintf(msg, len, "'%s' must be a list like [258, 259] (got an unclosed '[')", k->key);
            return RLHF_EMISMATCH;
        }
        s[sl - 1] = '\0';
        s++;
    }
    for (char *save = NULL, *t = strtok_r(s, ", \t", &save); t; t = strtok_r(NULL, ", \t", &save), n++)
        if (n < sizeof items / sizeof items[0]) items[n] = t; // set_list refuses more than it holds
    return set_list(cfg, k, items, n, text, msg, len);
}

/* "ppo, grpo, rloo" */
static void choices_list(const config_key_t *k, const char *sep, char *buf, size_t len) {
    size_t j = 0;
    buf[0] = '\0';
    for (const char *const *c = k->choices; *c && j < len; c++)
        j += (size_t)snprintf(buf + j, len - j, "%s%s", c == k->choices ? "" : sep, *c);
}

/*
 * Parse text for key k and store it; nothing changes on error. is_null: a
 * YAML null (empty, "~", "null"), which only strings (as "") and lists (as
 * empty) accept. msg gets the reason without a location.
 */
static rlhf_err_t set_value(rlhf_config_t *cfg, const config_key_t *k, const char *text, int is_null, char *msg,
                            size_t len) {
    char r[96], got[SHOWN_LEN + 2];
    if (is_null && k->type != CONFIG_STRING && k->type != CONFIG_INT_LIST) text = "";
    range_desc(k, r, sizeof r);
    if (*text) {
        got[0] = '\'';
        shown(text, got + 1, SHOWN_LEN);
        strcat(got, "'");
    } else {
        snprintf(got, sizeof got, "nothing");
    }
    switch (k->type) {
    case CONFIG_INT: {
        long long v;
        if (!parse_ll(text, &v)) {
            snprintf(msg, len, "'%s' must be an integer %s (got %s)", k->key, r, got);
            return RLHF_EMISMATCH;
        }
        if (!in_range(k, (double)v)) {
            snprintf(msg, len, "'%s' must be an integer %s (got %s)", k->key, r, got);
            return RLHF_ERANGE;
        }
        *(int *)field(cfg, k) = (int)v;
        return RLHF_OK;
    }
    case CONFIG_U64: {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(text, &end, 10);
        int overflow = errno == ERANGE;
        if (!isdigit((unsigned char)*text) || overflow || *end) {
            snprintf(msg, len, "'%s' must be an integer in [0, 18446744073709551615] (got %s)", k->key, got);
            return overflow ? RLHF_ERANGE : RLHF_EMISMATCH;
        }
        *(uint64_t *)field(cfg, k) = (uint64_t)v;
        return RLHF_OK;
    }
    case CONFIG_FLOAT: {
        char *end = (char *)text;
        double d = 0.0;
        errno = 0;
        if (*text && !isspace((unsigned char)*text)) d = strtod(text, &end);
        if (end == text || *end || isnan(d)) {
            snprintf(msg, len, "'%s' must be a number %s (got %s)", k->key, r, got);
            return RLHF_EMISMATCH;
        }
        float f = (float)d;
        if (!isfinite(d) || !isfinite(f) || !in_range(k, d) || !in_range(k, (double)f)) {
            snprintf(msg, len, "'%s' must be a number %s (got %s)", k->key, r, got);
            return RLHF_ERANGE;
        }
        *(float *)field(cfg, k) = f;
        return RLHF_OK;
    }
    case CONFIG_BOOL: {
        bool b;
        if (!parse_bool(text, &b)) {
            snprintf(msg, len, "'%s' must be true or false (got %s)", k->key, got);
            return RLHF_EMISMATCH;
        }
        *(bool *)field(cfg, k) = b;
        return RLHF_OK;
    }
    case CONFIG_ENUM: {
        for (const char *const *c = k->choices; *c; c++) {
            if (strcmp(*c, text) == 0) {
                char *dst = field(cfg, k);
                memset(dst, 0, k->size);
                memcpy(dst, text, strlen(text));
                return RLHF_OK;
            }
        }
        char list[256];
        choices_list(k, ", ", list, sizeof list);
        snprintf(msg, len, "'%s' must be one of %s (got %s)", k->key, list, got);
        return RLHF_EINVAL;
    }
    case CONFIG_STRING: {
        size_t n = strlen(text);
        if (n >= k->size) {
            snprintf(msg, len, "'%s' is too long: at most %zu characters (got %zu)", k->key, k->size - 1, n);
            return RLHF_ERANGE;
        }
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)text[i];
            if (c < 0x20 || c == 0x7f) {
                snprintf(msg, len, "'%s' must not contain control characters (got %s)", k->key, got);
                return RLHF_EINVAL;
            }
        }
        if ((k->flags & CONFIG_F_NONEMPTY) && n == 0) {
            snprintf(msg, len, "'%s' must not be empty", k->key);
            return RLHF_EINVAL;
        }
        if ((k->flags & CONFIG_F_HOST) && (strpbrk(text, " \t/") || (text[0] != '[' && strchr(text, ':')))) {
            snprintf(msg, len,
                     "'%s' must be a host name or IP address (IPv6 in brackets), without scheme or port "
                     "(got %s): the ports are learner.*_port",
                     k->key, got);
            return RLHF_EINVAL;
        }
        char *dst = field(cfg, k);
        memset(dst, 0, k->size);
        memcpy(dst, text, n);
        return RLHF_OK;
    }
    case CONFIG_INT_LIST: return set_list_text(cfg, k, is_null ? "" : text, msg, len);
    }
    snprintf(msg, len, "'%s': bad schema type", k->key);
    return RLHF_EINVAL;
}

/* What a key holds, for "must be X, not a mapping". */
static void type_desc(const config_key_t *k, char *buf, size_t len) {
    char r[96];
    range_desc(k, r, sizeof r);
    switch (k->type) {
    case CONFIG_INT: snprintf(buf, len, "an integer %s", r); break;
    case CONFIG_U64: snprintf(buf, len, "a non-negative integer"); break;
    case CONFIG_FLOAT: snprintf(buf, len, "a number %s", r); break;
    case CONFIG_BOOL: snprintf(buf, len, "true or false"); break;
    case CONFIG_ENUM: {
        char list[96];
        choices_list(k, ", ", list, sizeof list);
        snprintf(buf, len, "one of %s", list);
        break;
    }
    case CONFIG_STRING: snprintf(buf, len, "a string"); break;
    case CONFIG_INT_LIST: snprintf(buf, len, "a list of integers %s", r); break;
    }
}

/* ---- defaults, set, get ---- */

void config_init(rlhf_config_t *cfg) {
    char msg[MSG_LEN];
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < N_KEYS; i++) {
        if (set_value(cfg, &SCHEMA[i], SCHEMA[i].def, 0, msg, sizeof msg) != RLHF_OK) {
            /* a bad row is a programming error that test_config catches */
            fprintf(stderr, "config: bad default: %s\n", msg);
            abort();
        }
    }
}

rlhf_err_t config_set(rlhf_config_t *cfg, const char *key, const char *value, char *err, size_t errlen) {
    char msg[MSG_LEN];
    const config_key_t *k = config_find(key);
    if (!k) {
        if (is_section(key))
            return rlhf_seterr(err, errlen, RLHF_ENOTFOUND,
                               "'%s' is a section, not a key: set one of its keys (e.g. '%s')", key, first_key(key));
        unknown_msg("key", key, 0, msg, sizeof msg);
        return rlhf_seterr(err, errlen, RLHF_ENOTFOUND, "%s", msg);
    }
    rlhf_err_t rc = set_value(cfg, k, value ? value : "", 0, msg, sizeof msg);
    if (rc != RLHF_OK) return rlhf_seterr(err, errlen, rc, "%s", msg);
    return RLHF_OK;
}

/* Shortest "%g" that reads back as the same float (fixed notation for
 * magnitudes in [1e-4, 1e9): 10.0, not 1e+01), always with a '.' so that
 * YAML 1.1 readers (PyYAML) see a float too: 1.0, 0.2, 1.0e-05. */
static void fmt_float(float v, char *buf, size_t len) {
    char tmp[40]; // "%.9g" of a float is at most 15 characters, "%.12f" below 1e9 at most 22
    for (int p = 1; p <= 9; p++) {
        snprintf(tmp, sizeof tmp, "%.*g", p, (double)v);
        if (strtof(tmp, NULL) == v) break;
    }
    if (strchr(tmp, 'e') && fabsf(v) >= 1e-4f && fabsf(v) < 1e9f) {
        for (int d = 0; d <= 12; d++) {
            snprintf(tmp, sizeof tmp, "%.*f", d, (double)v);
            if (strtof(tmp, NULL) == v) break;
        }
    }
    if (!strchr(tmp, '.')) {
        char *e = strchr(tmp, 'e');
        if (e)
            snprintf(buf, len, "%.*s.0%s", (int)(e - tmp), tmp, e);
        else
            snprintf(buf, len, "%s.0", tmp);
    } else {
        snprintf(buf, len, "%s", tmp);
    }
}

/* YAML double-quoted string (strings never hold control characters). */
static int fmt_quoted(const char *s, char *buf, size_t len) {
    char tmp[2 * CONFIG_PATH_LEN + 4];
    size_t j = 0;
    tmp[j++] = '"';
    for (; *s && j + 3 < sizeof tmp; s++) {
        if (*s == '"' || *s == '\\') tmp[j++] = '\\';
        tmp[j++] = *s;
    }
    tmp[j++] = '"';
    tmp[j] = '\0';
    return snprintf(buf, len, "%s", tmp);
}

/* Value as text; quote: strings as YAML double-quoted. */
static int fmt_value(const rlhf_config_t *cfg, const config_key_t *k, int quote, char *buf, size_t len) {
    const void *p = cfield(cfg, k);
    switch (k->type) {
    case CONFIG_INT: return snprintf(buf, len, "%d", *(const int *)p);
    case CONFIG_U64: return snprintf(buf, len, "%" PRIu64, *(const uint64_t *)p);
    case CONFIG_FLOAT: {
        char tmp[64];
        fmt_float(*(const float *)p, tmp, sizeof tmp);
        return snprintf(buf, len, "%s", tmp);
    }
    case CONFIG_BOOL: return snprintf(buf, len, "%s", *(const bool *)p ? "true" : "false");
    case CONFIG_ENUM: return snprintf(buf, len, "%s", (const char *)p);
    case CONFIG_STRING: return quote ? fmt_quoted(p, buf, len) : snprintf(buf, len, "%s", (const char *)p);
    case CONFIG_INT_LIST: {
        const int *v = p;
        int n = *(const int *)((const char *)cfg + k->count_offset);
        char tmp[CONFIG_MAX_STOP * 16 + 4];
        size_t j = 0;
        tmp[j++] = '[';
        for (int i = 0; i < n && j < sizeof tmp - 16; i++)
            j += (size_t)snprintf(tmp + j, sizeof tmp - j, "%s%d", i ? ", " : "", v[i]);
        snprintf(tmp + j, sizeof tmp - j, "]");
        return snprintf(buf, len, "%s", tmp);
    }
    }
    return snprintf(buf, len, "?");
}

int config_get(const rlhf_config_t *cfg, const char *key, char *buf, size_t len) {
    const config_key_t *k = config_find(key);
    if (!k) return -1;
    return fmt_value(cfg, k, 0, buf, len);
}

static int same_value(const rlhf_config_t *a, const rlhf_config_t *b, const config_key_t *k) {
    const void *pa = cfield(a, k), *pb = cfield(b, k);
    switch (k->type) {
    case CONFIG_STRING:
    case CONFIG_ENUM: return strncmp(pa, pb, k->size) == 0;
    case CONFIG_INT_LIST: {
        int na = *(const int *)((const char *)a + k->count_offset);
        int nb = *(const int *)((const char *)b + k->count_offset);
        return na == nb && memcmp(pa, pb, (size_t)na * sizeof(int)) == 0;
    }
    case CONFIG_FLOAT: return *(const float *)pa == *(const float *)pb;
    case CONFIG_BOOL: return *(const bool *)pa == *(const bool *)pb;
    case CONFIG_INT: return *(const int *)pa == *(const int *)pb;
    case CONFIG_U64: return *(const uint64_t *)pa == *(const uint64_t *)pb;
    }
    return 0;
}

const char *config_diff(const rlhf_config_t *a, const rlhf_config_t *b) {
    for (size_t i = 0; i < N_KEYS; i++)
        if (!same_value(a, b, &SCHEMA[i])) return SCHEMA[i].key;
    return NULL;
}

/* ---- YAML loading ---- */

typedef struct {
    char key[CONFIG_KEY_LEN];
    size_t line;
} seen_t;

typedef struct {
    yaml_parser_t parser;
    yaml_event_t ev;
    int have_ev;
    const char *name;
    const char *text; // the input, for positions of reader errors
    size_t len;
    rlhf_config_t *cfg;
    char *err;
    size_t errlen;
    seen_t *seen;
    size_t n_seen, cap_seen;
} loader_t;

static rlhf_err_t ld_error(loader_t *L, yaml_mark_t m, rlhf_err_t code, const char *msg) {
    return rlhf_seterr(L->err, L->errlen, code, "%s:%zu:%zu: %s", L->name, m.line + 1, m.column + 1, msg);
}

static rlhf_err_t ld_next(loader_t *L) {
    if (L->have_ev) {
        yaml_event_delete(&L->ev);
        L->have_ev = 0;
    }
    if (!yaml_parser_parse(&L->parser, &L->ev)) {
        const yaml_parser_t *p = &L->parser;
        char msg[MSG_LEN];
        if (p->error == YAML_MEMORY_ERROR)
            return rlhf_seterr(L->err, L->errlen, RLHF_ENOMEM, "%s: out of memory", L->name);
        if (p->error == YAML_READER_ERROR) { // bad encoding: libyaml gives a byte offset
            yaml_mark_t m = {p->problem_offset, 0, 0};
            for (size_t i = 0; i < p->problem_offset && i < L->len; i++) {
                if (L->text[i] == '\n')
                    m.line++, m.column = 0;
                else
                    m.column++;
            }
            snprintf(msg, sizeof msg, "malformed YAML: %s (the file must be UTF-8 text)",
                     p->problem ? p->problem : "unreadable input");
            return ld_error(L, m, RLHF_EFORMAT, msg);
        }
        snprintf(msg, sizeof msg, "malformed YAML: %s%s%s", p->problem ? p->problem : "syntax error",
                 p->context ? " " : "", p->context ? p->context : "");
        return ld_error(L, p->problem_mark, RLHF_EFORMAT, msg);
    }
    L->have_ev = 1;
    return RLHF_OK;
}

static int is_null_scalar(const yaml_event_t *ev) {
    if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return 0;
    const char *v = (const char *)ev->data.scalar.value;
    return !*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") || !strcmp(v, "NULL");
}

static rlhf_err_t ld_seen(loader_t *L, const char *path, yaml_mark_t m) {
    for (size_t i = 0; i < L->n_seen; i++) {
        if (strcmp(L->seen[i].key, path) == 0) {
            char msg[MSG_LEN];
            snprintf(msg, sizeof msg, "duplicate key '%s' (first set at line %zu): keep one", path, L->seen[i].line);
            return ld_error(L, m, RLHF_EINVAL, msg);
        }
    }
    if (L->n_seen == L->cap_seen) {
        size_t cap = L->cap_seen ? 2 * L->cap_seen : 64;
        seen_t *s = realloc(L->seen, cap * sizeof(*s));
        if (!s) return rlhf_seterr(L->err, L->errlen, RLHF_ENOMEM, "%s: out of memory", L->name);
        L->seen = s, L->cap_seen = cap;
    }
    snprintf(L->seen[L->n_seen].key, CONFIG_KEY_LEN, "%s", path);
    L->seen[L->n_seen++].line = m.line + 1;
    return RLHF_OK;
}

/* The value of a list key given as a YAML sequence; the current event is
 * its SEQUENCE_START. */
static rlhf_err_t ld_list(loader_t *L, const config_key_t *k) {
    char *items[CONFIG_MAX_STOP + 1];
    char all[256];
    size_t n = 0, j = 0;
    yaml_mark_t start = L->ev.start_mark;
    rlhf_err_t rc;
    all[j++] = '[';
    all[j] = '\0';
    for (;;) {
        if ((rc = ld_next(L)) != RLHF_OK) goto done;
        if (L->ev.type == YAML_SEQUENCE_END_EVENT) break;
        if (L->ev.type != YAML_SCALAR_EVENT) {
            char want[160], msg[MSG_LEN];
            type_desc(k, want, sizeof want);
            snprintf(msg, sizeof msg, "'%s' must be %s: each element a number", k->key, want);
            rc = ld_error(L, L->ev.start_mark, RLHF_EMISMATCH, msg);
            goto done;
        }
        const char *v = (const char *)L->ev.data.scalar.value;
        if (j < sizeof all - 1) j += (size_t)snprintf(all + j, sizeof all - j, "%s%s", n ? ", " : "", v);
        if (j >= sizeof all) j = sizeof all - 1;
        if (n < CONFIG_MAX_STOP + 1) {
            items[n] = strdup(v);
            if (!items[n]) {
                rc = rlhf_seterr(L->err, L->errlen, RLHF_ENOMEM, "%s: out of memory", L->name);
                goto done;
            }
        }
        n++;
    }
    if (j < sizeof all - 1) all[j++] = ']', all[j] = '\0';
    {
        char msg[MSG_LEN];
        rc = set_list(L->cfg, k, items, n, all, msg, sizeof msg);
        if (rc != RLHF_OK) rc = ld_error(L, start, rc, msg);
    }
done:
    for (size_t i = 0; i < n && i < CONFIG_MAX_STOP + 1; i++) free(items[i]);
    return rc;
}

/* The entries of a mapping at prefix ("" at the top); the current event is
 * its MAPPING_START. Returns at its MAPPING_END. */
static rlhf_err_t ld_mapping(loader_t *L, const char *prefix) {
    rlhf_err_t rc;
    for (;;) {
        if ((rc = ld_next(L)) != RLHF_OK) return rc;
        if (L->ev.type == YAML_MAPPING_END_EVENT) return RLHF_OK;
        char path[CONFIG_KEY_LEN], msg[MSG_LEN];
        yaml_mark_t kmark = L->ev.start_mark;
        if (L->ev.type != YAML_SCALAR_EVENT)
            return ld_error(L, kmark, RLHF_EFORMAT, "keys must be plain names (e.g. 'ppo:' or 'clip:')");
        const char *name = (const char *)L->ev.data.scalar.value;
        int n = snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", name);
        if (n < 0 || (size_t)n >= sizeof path) {
            snprintf(msg, sizeof msg, "unknown key '%.60s...' (too long)", path);
            return ld_error(L, kmark, RLHF_ENOTFOUND, msg);
        }
        const config_key_t *k = config_find(path);
        int sect = !k && is_section(path);
        if (!k && !sect) {
            if ((rc = ld_next(L)) != RLHF_OK) return rc; // a section-shaped unknown suggests sections
            unknown_msg(L->ev.type == YAML_MAPPING_START_EVENT ? "section" : "key", path,
                        L->ev.type == YAML_MAPPING_START_EVENT, msg, sizeof msg);
            return ld_error(L, kmark, RLHF_ENOTFOUND, msg);
        }
        if ((rc = ld_seen(L, path, kmark)) != RLHF_OK) return rc;
        if ((rc = ld_next(L)) != RLHF_OK) return rc;
        yaml_mark_t vmark = L->ev.start_mark;
        char want[160];
        if (k) type_desc(k, want, sizeof want);
        switch (L->ev.type) {
        case YAML_SCALAR_EVENT:
            if (sect) {
                if (is_null_scalar(&L->ev)) break; // "ppo:" with every key commented out
                snprintf(msg, sizeof msg, "'%s' is a section, not a value: put its keys under it (e.g. '%s')", path,
                         first_key(path));
                return ld_error(L, vmark, RLHF_EMISMATCH, msg);
            }
            rc = set_value(L->cfg, k, (const char *)L->ev.data.scalar.value, is_null_scalar(&L->ev), msg, sizeof msg);
            if (rc != RLHF_OK) return ld_error(L, vmark, rc, msg);
            break;
        case YAML_MAPPING_START_EVENT:
            if (sect) {
                if ((rc = ld_mapping(L, path)) != RLHF_OK) return rc;
                break;
            }
            snprintf(msg, sizeof msg, "'%s' must be %s, not a mapping", path, want);
            return ld_error(L, vmark, RLHF_EMISMATCH, msg);
        case YAML_SEQUENCE_START_EVENT:
            if (k && k->type == CONFIG_INT_LIST) {
                if ((rc = ld_list(L, k)) != RLHF_OK) return rc;
                break;
            }
            if (sect)
                snprintf(msg, sizeof msg, "'%s' is a section: it must be a mapping of keys, not a list", path);
            else
                snprintf(msg, sizeof msg, "'%s' must be %s, not a list", path, want);
            return ld_error(L, vmark, RLHF_EMISMATCH, msg);
        case YAML_ALIAS_EVENT:
            return ld_error(L, vmark, RLHF_EFORMAT, "YAML aliases (*name) are not supported: write the value");
        default: return ld_error(L, vmark, RLHF_EFORMAT, "unexpected YAML event");
        }
    }
}

rlhf_err_t config_load_string(rlhf_config_t *cfg, const char *text, size_t len, const char *name, char *err,
                              size_t errlen) {
    loader_t L;
    memset(&L, 0, sizeof L);
    rlhf_config_t tmp = *cfg;
    rlhf_err_t rc = RLHF_OK;
    L.name = name ? name : "<config>";
    L.text = text, L.len = len;
    L.cfg = &tmp;
    L.err = err, L.errlen = errlen;
    if (!yaml_parser_initialize(&L.parser)) return rlhf_seterr(err, errlen, RLHF_ENOMEM, "%s: out of memory", L.name);
    yaml_parser_set_input_string(&L.parser, (const unsigned char *)text, len);

    if ((rc = ld_next(&L)) != RLHF_OK) goto done; // STREAM_START
    if ((rc = ld_next(&L)) != RLHF_OK) goto done;
    if (L.ev.type == YAML_STREAM_END_EVENT) goto done; // empty file: nothing to set
    /* DOCUMENT_START, then the root node */
    if ((rc = ld_next(&L)) != RLHF_OK) goto done;
    if (L.ev.type == YAML_MAPPING_START_EVENT) {
        if ((rc = ld_mapping(&L, "")) != RLHF_OK) goto done;
    } else if (!(L.ev.type == YAML_SCALAR_EVENT && is_null_scalar(&L.ev))) {
        rc = ld_error(&L, L.ev.start_mark, RLHF_EFORMAT,
                      "the top level must be a mapping of sections (e.g. 'ppo:' then '  clip: 0.2')");
        goto done;
    }
    if ((rc = ld_next(&L)) != RLHF_OK) goto done; // DOCUMENT_END
    if ((rc = ld_next(&L)) != RLHF_OK) goto done;
    if (L.ev.type != YAML_STREAM_END_EVENT) {
        rc = ld_error(&L, L.ev.start_mark, RLHF_EFORMAT, "a second YAML document ('---'): keep one per file");
        goto done;
    }
done:
    if (L.have_ev) yaml_event_delete(&L.ev);
    yaml_parser_delete(&L.parser);
    free(L.seen);
    if (rc == RLHF_OK) *cfg = tmp;
    return rc;
}

rlhf_err_t config_load(rlhf_config_t *cfg, const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) return rlhf_seterr(err, errlen, RLHF_EIO, "%s: cannot open: %s", path, strerror(errno));
    char *buf = malloc(CONFIG_FILE_MAX + 1);
    if (!buf) {
        fclose(f);
        return rlhf_seterr(err, errlen, RLHF_ENOMEM, "%s: out of memory", path);
    }
    size_t n = fread(buf, 1, CONFIG_FILE_MAX + 1, f);
    int bad = ferror(f), e = errno;
    fclose(f);
    rlhf_err_t rc;
    if (bad)
        rc = rlhf_seterr(err, errlen, RLHF_EIO, "%s: cannot read: %s", path, strerror(e));
    else if (n > CONFIG_FILE_MAX)
        rc = rlhf_seterr(err, errlen, RLHF_ERANGE, "%s: larger than %d bytes: is this a config file?", path,
                         CONFIG_FILE_MAX);
    else
        rc = config_load_string(cfg, buf, n, path, err, errlen);
    free(buf);
    return rc;
}

/* ---- environment ---- */

rlhf_err_t config_apply_env(rlhf_config_t *cfg, char *const *envp, char *err, size_t errlen) {
    if (!envp) return RLHF_OK;
    rlhf_config_t tmp = *cfg;
    for (char *const *e = envp; *e; e++) {
        const char *eq = strchr(*e, '=');
        if (strncmp(*e, "RLHF_", 5) != 0 || !eq) continue;
        char name[CONFIG_KEY_LEN + 8], env[CONFIG_KEY_LEN + 8], msg[MSG_LEN];
        size_t nl = (size_t)(eq - *e);
        if (nl >= sizeof name) continue;
        memcpy(name, *e, nl);
        name[nl] = '\0';
        if (strcmp(name, "RLHF_CONFIG") == 0) continue;
        const config_key_t *k = NULL;
        for (size_t i = 0; i < N_KEYS && !k; i++) {
            config_env_name(SCHEMA[i].key, env, sizeof env);
            if (strcmp(env, name) == 0) k = &SCHEMA[i];
        }
        if (k) {
            rlhf_err_t rc = set_value(&tmp, k, eq + 1, 0, msg, sizeof msg);
            if (rc != RLHF_OK) return rlhf_seterr(err, errlen, rc, "%s: %s", name, msg);
            continue;
        }
        /* RLHF_<SECTION>_...: ours but misspelt */
        const char *best = NULL;
        size_t best_d = SIZE_MAX;
        int ours = 0;
        for (size_t s = 0; s < sizeof SECTIONS / sizeof SECTIONS[0]; s++) {
            char pre[CONFIG_KEY_LEN];
            int pl = config_env_name(SECTIONS[s].name, pre, sizeof pre);
            if (strncmp(name, pre, (size_t)pl) == 0 && name[pl] == '_') ours = 1;
        }
        if (!ours) continue;
        for (size_t i = 0; i < N_KEYS; i++) {
            config_env_name(SCHEMA[i].key, env, sizeof env);
            size_t d = edit_distance(name, env);
            if (d < best_d) best_d = d, best = SCHEMA[i].key;
        }
        if (best && (best_d <= 2 || best_d * 3 <= strlen(name))) {
            config_env_name(best, env, sizeof env);
            return rlhf_seterr(err, errlen, RLHF_ENOTFOUND, "%s: no such setting (did you mean %s, for '%s'?)", name,
                               env, best);
        }
        return rlhf_seterr(err, errlen, RLHF_ENOTFOUND,
                           "%s: no such setting (RLHF_<SECTION>_<KEY> names a key of configs/default.yaml)", name);
    }
    *cfg = tmp;
    return RLHF_OK;
}

/* ---- cross-field validation ---- */

rlhf_err_t config_validate(const rlhf_config_t *c, char *err, size_t errlen) {
#define FAIL(...) return rlhf_seterr(err, errlen, RLHF_EINVAL, __VA_ARGS__)
    const config_ppo_t *p = &c->ppo;
    long long samples = (long long)p->batch_prompts * p->k;
    if (samples % p->minibatch != 0)
        FAIL("ppo.minibatch (%d) must divide ppo.batch_prompts * ppo.k (%d * %d = %lld)", p->minibatch,
             p->batch_prompts, p->k, samples);
    if ((strcmp(c->run.algo, "grpo") == 0 || strcmp(c->run.algo, "rloo") == 0) && p->k < 2)
        FAIL("run.algo '%s' compares samples of the same prompt: ppo.k must be >= 2 (got %d)", c->run.algo, p->k);
    if (p->kl_adaptive && !(p->kl_coef > 0))
        FAIL("ppo.kl_adaptive needs ppo.kl_coef > 0 to start from (got 0): the controller scales it");
    if (!(c->sampling.temperature > 0))
        FAIL("sampling.temperature must be > 0 for RL rollouts (got 0, greedy): behaviour log-probs need sampling");
    if (c->task.min_digits > c->task.max_digits)
        FAIL("task.min_digits (%d) must not exceed task.max_digits (%d)", c->task.min_digits, c->task.max_digits);
    if (p->batch_prompts > c->task.n_train)
        FAIL("ppo.batch_prompts (%d) must not exceed task.n_train (%d): one step would repeat prompts",
             p->batch_prompts, c->task.n_train);
    if ((long long)c->learner.ticket_prompts * p->k > 4096)
        FAIL("learner.ticket_prompts * ppo.k (%d * %d) must be <= 4096 (protocol limit per ticket)",
             c->learner.ticket_prompts, p->k);

    /* ports */
    static const char *const names[] = {"work_port",     "rollouts_port", "score_port", "scored_port",
                                        "announce_port", "weights_port",  "http_port"};
    const int ports[] = {c->learner.work_port,   c->learner.rollouts_port, c->learner.score_port,
                         c->learner.scored_port, c->learner.announce_port, c->learner.weights_port,
                         c->learner.http_port};
    for (int i = 0; i < 7; i++)
        for (int j = i + 1; j < 7; j++)
            if (ports[i] > 0 && ports[i] == ports[j])
                FAIL("learner.%s and learner.%s are both %d: every endpoint needs its own port", names[i], names[j],
                     ports[i]);

    /* model */
    const config_model_t *m = &c->model;
    if (m->init[0]) {
        const char *o = m->dim           ? "dim"
                        : m->n_layers    ? "n_layers"
                        : m->n_heads     ? "n_heads"
                        : m->n_kv_heads  ? "n_kv_heads"
                        : m->hidden_dim  ? "hidden_dim"
                        : m->max_seq_len ? "max_seq_len"
                                         : NULL;
        if (o)
            FAIL("model.%s cannot change the shape of the checkpoint in model.init ('%s'): set it to 0 or clear "
                 "model.init",
                 o, m->init);
    } else {
        model_config_t mc;
        rlhf_err_t rc = config_to_model(c, &mc, err, errlen);
        if (rc != RLHF_OK) return RLHF_EINVAL;
        if (c->sampling.max_new_tokens >= mc.max_seq_len)
            FAIL("sampling.max_new_tokens (%d) must be below the model's context, model.max_seq_len (%d), to leave "
                 "room for the prompt",
                 c->sampling.max_new_tokens, mc.max_seq_len);
    }

    /* CurveZMQ key files come in pairs */
    const config_security_t *s = &c->security;
    if (!s->client_public_key[0] != !s->client_secret_key[0])
        FAIL("security.client_public_key and security.client_secret_key go together: set both or neither");
    if (s->server_secret_key[0] && !s->server_public_key[0])
        FAIL("security.server_secret_key needs security.server_public_key (the learner's key pair)");
    if (s->client_public_key[0] && !s->server_public_key[0])
        FAIL("security.client_*_key needs security.server_public_key (to authenticate the learner)");
    if (s->authorized_keys[0] && !s->server_secret_key[0])
        FAIL("security.authorized_keys needs security.server_secret_key (only an encrypting learner checks clients)");
#undef FAIL
    return RLHF_OK;
}

/* ---- command line ---- */

rlhf_err_t config_from_args(rlhf_config_t *cfg, int *argc, char **argv, const config_flag_t *flags, char *const *envp,
                            char *err, size_t errlen) {
    if (!envp) envp = environ;
    int n = *argc;
    /* per argument: 0 keep, 1 consumed */
    unsigned char *used = calloc((size_t)(n > 0 ? n : 1), 1);
    if (!used) return rlhf_seterr(err, errlen, RLHF_ENOMEM, "out of memory");
    const char *file = NULL;
    rlhf_err_t rc = RLHF_OK;
    rlhf_config_t tmp;
    config_init(&tmp);
    char msg[MSG_LEN];

    /* pass 1: the file */
    for (int i = 1; i < n; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) break;
        if (strcmp(a, "--config") == 0 || strncmp(a, "--config=", 9) == 0) {
            const char *v = a[8] == '=' ? a + 9 : (i + 1 < n ? argv[i + 1] : NULL);
            if (!v || !*v) {
                rc = rlhf_seterr(err, errlen, RLHF_EINVAL, "--config needs a file name (--config FILE)");
                goto done;
            }
            if (file) {
                rc = rlhf_seterr(err, errlen, RLHF_EINVAL, "--config given twice ('%s', '%s'): give one file", file, v);
                goto done;
            }
            file = v;
            used[i] = 1;
            if (a[8] != '=') used[++i] = 1;
        }
    }
    if (!file) {
        for (char *const *e = envp; e && *e; e++)
            if (strncmp(*e, "RLHF_CONFIG=", 12) == 0 && (*e)[12]) file = *e + 12;
    }
    if (file && (rc = config_load(&tmp, file, err, errlen)) != RLHF_OK) goto done;
    if ((rc = config_apply_env(&tmp, envp, err, errlen)) != RLHF_OK) goto done;

    /* pass 2: --set and flags, in order */
    for (int i = 1; i < n; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) break;
        if (used[i]) continue;
        if (strcmp(a, "--set") == 0 || strncmp(a, "--set=", 6) == 0) {
            const char *kv = a[5] == '=' ? a + 6 : (i + 1 < n ? argv[i + 1] : NULL);
            const char *eq = kv ? strchr(kv, '=') : NULL;
            if (!kv || !eq || eq == kv) {
                rc = rlhf_seterr(err, errlen, RLHF_EINVAL, "--set needs KEY=VALUE (e.g. --set ppo.clip=0.1), got '%s'",
                                 kv ? kv : "");
                goto done;
            }
            char key[CONFIG_KEY_LEN];
            snprintf(key, sizeof key, "%.*s", (int)(eq - kv), kv);
            if ((rc = config_set(&tmp, key, eq + 1, msg, sizeof msg)) != RLHF_OK) {
                rlhf_seterr(err, errlen, rc, "--set %s: %s", kv, msg);
                goto done;
            }
            used[i] = 1;
            if (a[5] != '=') used[++i] = 1;
            continue;
        }
        for (const config_flag_t *f = flags; f && f->flag; f++) {
            size_t fl = strlen(f->flag);
            const char *v = NULL;
            int take_next = 0;
            if (f->value) {
                if (strcmp(a, f->flag) != 0) continue;
                v = f->value;
            } else if (strcmp(a, f->flag) == 0) {
                if (i + 1 >= n) {
                    rc = rlhf_seterr(err, errlen, RLHF_EINVAL, "%s needs a value (sets %s)", f->flag, f->key);
                    goto done;
                }
                v = argv[i + 1], take_next = 1;
            } else if (strncmp(a, f->flag, fl) == 0 && a[fl] == '=') {
                v = a + fl + 1;
            } else {
                continue;
            }
            if ((rc = config_set(&tmp, f->key, v, msg, sizeof msg)) != RLHF_OK) {
                rlhf_seterr(err, errlen, rc, "%s: %s", f->flag, msg);
                goto done;
            }
            used[i] = 1;
            if (take_next) used[++i] = 1;
            break;
        }
    }
    if ((rc = config_validate(&tmp, err, errlen)) != RLHF_OK) goto done;

    /* success: compact argv */
    int j = 1, rest = 0;
    for (int i = 1; i < n; i++) {
        if (!rest && strcmp(argv[i], "--") == 0) rest = 1;
        if (rest || !used[i]) argv[j++] = argv[i];
    }
    if (n > 0) {
        argv[j] = NULL;
        *argc = j;
    }
    *cfg = tmp;
done:
    free(used);
    return rc;
}

/* ---- writing ---- */

static const char *section_help(const char *name, size_t n) {
    for (size_t s = 0; s < sizeof SECTIONS / sizeof SECTIONS[0]; s++)
        if (strlen(SECTIONS[s].name) == n && strncmp(SECTIONS[s].name, name, n) == 0) return SECTIONS[s].help;
    return NULL;
}

rlhf_err_t config_dump(const rlhf_config_t *cfg, FILE *f) {
    fprintf(f, "# rlhf configuration: every key, one line each (configs/default.yaml holds the defaults).\n"
               "# Later sources win: built-in defaults < this file (--config FILE or RLHF_CONFIG=FILE)\n"
               "# < environment RLHF_<SECTION>_<KEY> (RLHF_PPO_CLIP=0.1 sets ppo.clip)\n"
               "# < command line (--set ppo.clip=0.1, and each program's flags).\n"
               "# Missing keys take their defaults; unknown keys are errors.\n");
    const char *prev = "";
    for (size_t i = 0; i < N_KEYS; i++) {
        const config_key_t *k = &SCHEMA[i];
        /* open the sections this key is in that the previous key was not */
        size_t common = 0; // bytes of shared section prefix, at a dot
        for (size_t c = 0; k->key[c] && k->key[c] == prev[c]; c++)
            if (k->key[c] == '.') common = c + 1;
        int depth = 0;
        for (size_t c = 0; c < common; c++) depth += k->key[c] == '.';
        const char *s = k->key + common;
        for (const char *dot; (dot = strchr(s, '.')) != NULL; s = dot + 1, depth++) {
            size_t n = (size_t)(dot - s);
            if (depth == 0) {
                const char *h = section_help(s, n);
                fprintf(f, "\n");
                if (h) fprintf(f, "# %s\n", h);
            }
            fprintf(f, "%*s%.*s:\n", 2 * depth, "", (int)n, s);
        }
        char val[2 * CONFIG_PATH_LEN + 8], line[3 * CONFIG_PATH_LEN];
        fmt_value(cfg, k, 1, val, sizeof val);
        int n = snprintf(line, sizeof line, "%*s%s: %s", 2 * depth, "", s, val);
        fprintf(f, "%s%*s# %s\n", line, n < 40 ? 40 - n : 2, "", k->help);
        prev = k->key;
    }
    fflush(f);
    return ferror(f) ? RLHF_EIO : RLHF_OK;
}

json_t *config_to_json(const rlhf_config_t *cfg) {
    json_t *root = json_object();
    if (!root) return NULL;
    for (size_t i = 0; i < N_KEYS; i++) {
        const config_key_t *k = &SCHEMA[i];
        const void *p = cfield(cfg, k);
        json_t *obj = root;
        char part[CONFIG_KEY_LEN];
        const char *s = k->key;
        for (const char *dot; (dot = strchr(s, '.')) != NULL; s = dot + 1) {
            snprintf(part, sizeof part, "%.*s", (int)(dot - s), s);
            json_t *sub = json_object_get(obj, part);
            if (!sub) {
                sub = json_object();
                if (!sub || json_object_set_new(obj, part, sub) != 0) goto oom;
            }
            obj = sub;
        }
        json_t *v = NULL;
        switch (k->type) {
        case CONFIG_INT: v = json_integer(*(const int *)p); break;
        case CONFIG_U64: {
            uint64_t u = *(const uint64_t *)p;
            char buf[32];
            snprintf(buf, sizeof buf, "%" PRIu64, u);
            v = u <= (uint64_t)INT64_MAX ? json_integer((json_int_t)u) : json_string(buf);
            break;
        }
        case CONFIG_FLOAT: {
            char buf[64];
            fmt_float(*(const float *)p, buf, sizeof buf);
            v = json_real(strtod(buf, NULL)); // the decimal the user wrote, not the float's binary expansion
            break;
        }
        case CONFIG_BOOL: v = json_boolean(*(const bool *)p); break;
        case CONFIG_ENUM:
        case CONFIG_STRING: v = json_string((const char *)p); break;
        case CONFIG_INT_LIST: {
            int n = *(const int *)((const char *)cfg + k->count_offset);
            v = json_array();
            for (int j = 0; v && j < n; j++)
                if (json_array_append_new(v, json_integer(((const int *)p)[j])) != 0) json_decref(v), v = NULL;
            break;
        }
        }
        if (!v || json_object_set_new(obj, s, v) != 0) goto oom;
    }
    return root;
oom:
    json_decref(root);
    return NULL;
}

void config_print_help(FILE *f) {
    fprintf(f, "configuration keys: KEY  DEFAULT  meaning  [what it takes; environment variable]\n"
               "(set with --set KEY=VALUE, a --config FILE, or the environment variable)\n");
    for (size_t i = 0; i < N_KEYS; i++) {
        const config_key_t *k = &SCHEMA[i];
        char env[CONFIG_KEY_LEN + 8], desc[160];
        config_env_name(k->key, env, sizeof env);
        type_desc(k, desc, sizeof desc);
        fprintf(f, "  %-28s %-10s %s  [%s; %s]\n", k->key, *k->def ? k->def : "\"\"", k->help, desc, env);
    }
}

/* ---- bridges ---- */

rlhf_err_t config_to_model(const rlhf_config_t *cfg, model_config_t *out, char *err, size_t errlen) {
    const config_model_t *m = &cfg->model;
    model_config_t mc;
    char msg[MSG_LEN];
    if (model_config_preset(&mc, m->preset) != RLHF_OK)
        return rlhf_seterr(err, errlen, RLHF_EINVAL,
                           "model.preset '%s' is not a preset (tiny, small, base, stories15m)", m->preset);
    if (m->dim) mc.dim = m->dim;
    if (m->n_layers) mc.n_layers = m->n_layers;
    if (m->n_heads) mc.n_heads = m->n_heads;
    if (m->n_kv_heads) mc.n_kv_heads = m->n_kv_heads;
    if (m->hidden_dim) mc.hidden_dim = m->hidden_dim;
    if (m->max_seq_len) mc.max_seq_len = m->max_seq_len;
    if (model_config_validate(&mc, msg, sizeof msg) != RLHF_OK)
        return rlhf_seterr(err, errlen, RLHF_EINVAL, "model (preset '%s' with the model.* overrides): %s", m->preset,
                           msg);
    *out = mc;
    return RLHF_OK;
}

void config_to_adamw(const rlhf_config_t *cfg, adamw_config_t *policy, adamw_config_t *critic) {
    const config_ppo_t *p = &cfg->ppo;
    adamw_config_t a;
    adamw_config_default(&a);
    a.lr = p->lr;
    a.beta1 = p->beta1;
    a.beta2 = p->beta2;
    a.eps = p->adam_eps;
    a.weight_decay = p->weight_decay;
    a.grad_clip = p->grad_clip;
    a.warmup_steps = 0;
    a.total_steps = 0;
    if (policy) *policy = a;
    if (critic) {
        a.lr = p->critic_lr;
        *critic = a;
    }
}

void config_to_gen(const rlhf_config_t *cfg, gen_params_t *out) {
    const config_sampling_t *s = &cfg->sampling;
    gen_params_default(out);
    out->sampler.temperature = s->temperature;
    out->sampler.top_k = s->top_k;
    out->sampler.top_p = s->top_p;
    out->max_new_tokens = s->max_new_tokens;
    out->n_stop = s->n_stop;
    for (int i = 0; i < GEN_MAX_STOP; i++) out->stop_tokens[i] = i < s->n_stop ? s->stop[i] : 0;
}

void config_to_task(const rlhf_config_t *cfg, task_config_t *out) {
    task_config_default(cfg->task.name, out);
    out->seed = cfg->task.seed;
    out->min_digits = cfg->task.min_digits;
    out->max_digits = cfg->task.max_digits;
    out->n_train = cfg->task.n_train;
    out->n_heldout = cfg->task.n_heldout;
    out->careless = cfg->task.careless;
}

void config_to_sft(const rlhf_config_t *cfg, sft_config_t *out) {
    sft_config_default(out);
    out->steps = cfg->sft.steps;
    out->batch = cfg->sft.batch;
    out->seed = cfg->run.seed;
    out->opt.lr = cfg->sft.lr;
    out->opt.warmup_steps = cfg->sft.warmup < cfg->sft.steps ? cfg->sft.warmup : cfg->sft.steps;
    out->opt.total_steps = cfg->sft.steps;
}

int config_endpoint(const rlhf_config_t *cfg, const char *host, config_ep_t ep, char *buf, size_t len) {
    const config_learner_t *l = &cfg->learner;
    int port = ep == CONFIG_EP_WORK       ? l->work_port
               : ep == CONFIG_EP_ROLLOUTS ? l->rollouts_port
               : ep == CONFIG_EP_SCORE    ? l->score_port
               : ep == CONFIG_EP_SCORED   ? l->scored_port
               : ep == CONFIG_EP_ANNOUNCE ? l->announce_port
                                          : l->weights_port;
    return snprintf(buf, len, "tcp://%s:%d", host, port);
}

rlhf_err_t config_check_host(const char *key, const char *host, char *err, size_t errlen) {
    if (strcmp(host, "*") == 0) return RLHF_OK;
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc == 0) {
        freeaddrinfo(res);
        return RLHF_OK;
    }
    return rlhf_seterr(err, errlen, RLHF_ENOTFOUND,
                       "%s: cannot resolve '%s' (%s); set it to the learner's host name or IP address", key, host,
                       gai_strerror(rc));
}
