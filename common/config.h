/*
 * config.h - the configuration of the whole system: one plain struct, one
 * schema table, loaded from YAML (libyaml), environment variables and the
 * command line.
 *
 * Every process (learner, actor, reward worker, `rlhf run`) reads the same
 * rlhf_config_t, so one file configures a deployment; each role reads the
 * sections it needs (an actor reads actor.*, the learner's ports, sampling.*).
 *
 * Sources, later wins:
 *   built-in defaults (config_init; configs/default.yaml lists them all)
 *   < a YAML file (--config FILE, or RLHF_CONFIG=FILE in the environment)
 *   < environment: RLHF_<KEY> with the dotted key upper-cased and dots turned
 *     into underscores: RLHF_PPO_CLIP=0.1 sets ppo.clip, RLHF_ACTOR_LEARNER=
 *     learner sets actor.learner (docker compose);
 *   < command line: --set ppo.clip=0.1 (repeatable) and each program's flags.
 *
 * The YAML file is a mapping of sections, each a mapping of keys:
 *       ppo:
 *         clip: 0.2
 * A dotted key ("ppo.clip: 0.2") is the same key. Missing keys keep their
 * value; unknown keys, duplicate keys, values of the wrong type or out of
 * range are errors. Every error is ONE line written into err naming where
 * (file:line:column, the environment variable or the flag), the dotted key
 * and the fix:
 *   x.yaml:12:3: unknown key 'ppo.clipp' (did you mean 'ppo.clip'?)
 *   x.yaml:12:9: 'ppo.clip' must be a number in (0, 1) (got 'abc')
 *   x.yaml: cannot open: No such file or directory
 * Codes: RLHF_EIO (cannot read the file), RLHF_EFORMAT (not YAML, or not a
 * mapping), RLHF_ENOTFOUND (unknown key), RLHF_EMISMATCH (wrong type: not a
 * number, not a boolean, a mapping or a list where a value belongs),
 * RLHF_ERANGE (number, list or string out of range), RLHF_EINVAL (not one
 * of an enum's values, duplicate key, bad command-line syntax, and every
 * cross-field error of config_validate).
 *
 * Every function that changes a config changes nothing when it fails.
 *
 * What it deliberately is not: no YAML anchors/aliases, no includes, no
 * per-role files (one file serves every role), no hot reload.
 */
#ifndef RLHF_CONFIG_H
#define RLHF_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "common/error.h"
#include "common/generate.h"
#include "common/model.h"
#include "common/optim.h"
#include "common/sft.h"
#include "common/task.h"

#define CONFIG_PATH_LEN 512 // path buffers, including the NUL
#define CONFIG_NAME_LEN 64  // names, hosts, enum values, including the NUL
#define CONFIG_KEY_LEN  128 // longest dotted key plus room for typos
#define CONFIG_MAX_STOP GEN_MAX_STOP

/* ---- the configuration: plain data, copy with =, nothing to free ---- */

typedef struct {
    char out_dir[CONFIG_PATH_LEN]; // run folder: metrics.jsonl, checkpoints, summary.json, plots
    uint64_t seed;                 // master seed (model init, prompt order, sampling seeds)
    char algo[CONFIG_NAME_LEN];    // "ppo", "grpo" or "rloo"
    int steps;                     // learner (policy update) steps
    int actors;                    // `rlhf run`: actor processes
    int reward_workers;            // `rlhf run`: reward worker processes
    int max_lag;                   // versions a rollout may lag; 0 = synchronous on-policy
    bool resume;                   // continue from out_dir/checkpoint if present
} config_run_t;

typedef struct {
    char preset[CONFIG_NAME_LEN]; // tiny, small, base, stories15m (model_config_preset)
    char init[CONFIG_PATH_LEN];   // checkpoint dir to start from; "" = new model + SFT stage
    int dim, n_layers, n_heads, n_kv_heads, hidden_dim, max_seq_len; // 0 = the preset's
} config_model_t;

typedef struct {
    char name[CONFIG_NAME_LEN]; // built-in task ("add")
    uint64_t seed;
    int min_digits, max_digits;
    int n_train, n_heldout;
    float careless; // fraction of SFT demonstrations that forget to carry
} config_task_t;

typedef struct {
    int steps; // 0 = no SFT warm-up (also skipped when model.init is set)
    int batch;
    float lr;
    int warmup;
} config_sft_t;

typedef struct {
    float lr, critic_lr;
    int batch_prompts; // prompts per learner step
    int k;             // samples per prompt
    int minibatch;     // samples per gradient step; divides batch_prompts * k
    int epochs;        // passes over each batch
    float clip;        // ratio clip epsilon
    float value_clip;  // critic value clip; 0 = off
    float gamma, lambda;
    char kl_estimator[CONFIG_NAME_LEN]; // "k1" or "k3"
    float kl_coef;                      // beta (initial value when adaptive)
    bool kl_adaptive;                   // adapt kl_coef toward kl_target
    float kl_target;                    // nats per sequence
    int kl_horizon;                     // adaptive controller horizon, in samples
    char reward_norm[CONFIG_NAME_LEN];  // "none", "batch" or "running"
    float reward_clip;                  // after normalising; 0 = off
    bool whiten_advantages;
    float entropy_coef;
    bool grpo_scale_std; // grpo: divide by the group std (else mean-centred only)
    float grpo_eps;
    float grad_clip; // global norm; 0 = off
    float beta1, beta2, adam_eps, weight_decay;
} config_ppo_t;

typedef struct {
    float temperature;
    int top_k;   // 0 = off
    float top_p; // 1 = off
    int max_new_tokens;
    int stop[CONFIG_MAX_STOP];
    int n_stop;
} config_sampling_t;

typedef struct {
    char bind[CONFIG_NAME_LEN]; // host or IP to bind; "*" = all interfaces
    int work_port, rollouts_port, score_port, scored_port, announce_port, weights_port;
    int http_port;         // 0 = any free port, -1 = no HTTP server
    int ticket_prompts;    // prompts per ticket
    int ticket_timeout_ms; // generation deadline, then reissue
    int score_timeout_ms;  // scoring deadline, then re-score
    int max_open_epochs;   // 1 = strict epoch barrier
    int checkpoint_every;  // steps; 0 = only at the end
    int eval_every;        // steps; 0 = only before and after
    int threads;           // 0 = all cores
    float logprob_tol;     // lag-0 rollouts whose log-probs stray further from the policy's are dropped
    int weights_chunk;     // bytes per weights_chunk
} config_learner_t;

typedef struct {
    char learner[CONFIG_NAME_LEN];   // learner host; ports come from learner.*_port
    int batch;                       // sequences decoded together
    int threads;                     // 0 = all cores
    int credit;                      // tickets asked for ahead
    int http_port;                   // 0 = any free port, -1 = off
    char http_bind[CONFIG_NAME_LEN]; // address of /metrics etc.; "*" = all interfaces
    int delay_ms;                    // artificial extra time per sample (benchmarks); 0 = none
    int connect_timeout_ms;          // no learner after this long at start-up: exit 1; 0 = wait forever
} config_actor_t;

typedef struct {
    char learner[CONFIG_NAME_LEN];
    int batch; // sequences per reference forward
    int threads;
    int credit;
    int http_port;
    char http_bind[CONFIG_NAME_LEN]; // address of /metrics etc.; "*" = all interfaces
    int connect_timeout_ms;          // no learner after this long at start-up: exit 1; 0 = wait forever
} config_reward_t;

typedef struct {
    char server_public_key[CONFIG_PATH_LEN]; // CurveZMQ key files; "" = no encryption
    char server_secret_key[CONFIG_PATH_LEN];
    char client_public_key[CONFIG_PATH_LEN];
    char client_secret_key[CONFIG_PATH_LEN];
    char authorized_keys[CONFIG_PATH_LEN];
} config_security_t;

typedef struct {
    config_run_t run;
    config_model_t model;
    config_task_t task;
    config_sft_t sft;
    config_ppo_t ppo;
    config_sampling_t sampling;
    config_learner_t learner;
    config_actor_t actor;
    config_reward_t reward;
    config_security_t security;
} rlhf_config_t;

/* ---- the schema: one row per key ---- */

typedef enum {
    CONFIG_INT,      // int
    CONFIG_U64,      // uint64_t, any value
    CONFIG_FLOAT,    // float, finite
    CONFIG_BOOL,     // bool: true/false (also yes/no, on/off, 1/0)
    CONFIG_STRING,   // char[size]
    CONFIG_ENUM,     // char[size] holding one of choices
    CONFIG_INT_LIST, // int[size/sizeof(int)] and an int count
} config_type_t;

#define CONFIG_F_MIN_OPEN 1u // the range excludes min
#define CONFIG_F_MAX_OPEN 2u // the range excludes max
#define CONFIG_F_NONEMPTY 4u // strings: "" is refused
#define CONFIG_F_HOST     8u // strings: a host name or IP, without scheme or port

typedef struct {
    const char *key; // dotted path, "ppo.clip"
    config_type_t type;
    size_t offset;              // of the field in rlhf_config_t
    size_t size;                // bytes of the field
    size_t count_offset;        // CONFIG_INT_LIST: offset of the element count
    const char *def;            // default, as text (parsed like any value)
    double min, max;            // numeric range (lists: of each element)
    unsigned flags;             // CONFIG_F_*
    const char *const *choices; // CONFIG_ENUM: NULL-terminated
    const char *help;           // one line
} config_key_t;

/* The schema, in file order; borrowed, static. */
const config_key_t *config_schema(size_t *n);
/* The row of a dotted key, or NULL. */
const config_key_t *config_find(const char *key);
/* "RLHF_PPO_CLIP" for "ppo.clip" (snprintf-style: returns the full length). */
int config_env_name(const char *key, char *buf, size_t len);

/* ---- building a config ---- */

/* Built-in defaults (the same values as configs/default.yaml). */
void config_init(rlhf_config_t *cfg);

/* Overlay a YAML file onto cfg (keys absent from the file keep their
 * values; call config_init first for defaults). Errors as above. */
rlhf_err_t config_load(rlhf_config_t *cfg, const char *path, char *err, size_t errlen);
/* The same from memory; name is used in error messages. */
rlhf_err_t config_load_string(rlhf_config_t *cfg, const char *text, size_t len, const char *name, char *err,
                              size_t errlen);

/* Set one key from text, as written in YAML ("0.1", "true", "ppo",
 * "[258, 259]" or "258,259" for lists). Errors name the key, not a source:
 * callers prefix where the value came from. */
rlhf_err_t config_set(rlhf_config_t *cfg, const char *key, const char *value, char *err, size_t errlen);

/* Apply RLHF_* variables from envp ("NAME=VALUE" strings, NULL-terminated,
 * e.g. environ). A variable named after a key sets it; RLHF_CONFIG is
 * skipped (config_from_args reads it); a variable that starts with a section
 * (RLHF_PPO_...) but names no key is an error with a suggestion; other
 * RLHF_* variables are not ours and are ignored. */
rlhf_err_t config_apply_env(rlhf_config_t *cfg, char *const *envp, char *err, size_t errlen);

/* Cross-field checks (each error names the fields involved): ppo.minibatch
 * divides ppo.batch_prompts * ppo.k; learner ports distinct; sampling.
 * temperature > 0; task digit range; a batch fits in task.n_train; ticket
 * size within the protocol limit; k >= 2 for grpo/rloo; an adaptive KL
 * needs kl_coef > 0; the model (preset + overrides) is valid and leaves
 * room for max_new_tokens; model overrides only without model.init;
 * CurveZMQ key files in pairs. */
rlhf_err_t config_validate(const rlhf_config_t *cfg, char *err, size_t errlen);

/* A command-line flag that is a shorthand for a key: "--steps 10" and
 * "--steps=10" set run.steps when {"--steps", "run.steps", NULL}; a flag
 * with a fixed value takes no argument: {"--resume", "run.resume", "true"}. */
typedef struct {
    const char *flag;
    const char *key;
    const char *value; // NULL: the flag takes an argument
} config_flag_t;

/*
 * The one way programs build their config: config_init, then the file
 * (--config FILE / --config=FILE, else $RLHF_CONFIG), then the environment
 * (envp; NULL means the process environment), then --set KEY=VALUE and
 * flags (from the table, may be NULL; terminated by a {NULL} row) in
 * command-line order, whatever the order of the arguments; then
 * config_validate. Arguments it does not consume stay in argv (compacted,
 * argv[0] kept, *argc updated, argv[*argc] = NULL); everything from "--" on
 * is left untouched. On error argv is unchanged and err holds one line.
 */
rlhf_err_t config_from_args(rlhf_config_t *cfg, int *argc, char **argv, const config_flag_t *flags, char *const *envp,
                            char *err, size_t errlen);

/* ---- reading a config ---- */

/* The value of a key as text, in the form config_set accepts (strings
 * unquoted). Returns the full length (snprintf-style), or -1 for an
 * unknown key. */
int config_get(const rlhf_config_t *cfg, const char *key, char *buf, size_t len);
/* NULL when a and b hold the same values, else the first key that differs
 * (static string). */
const char *config_diff(const rlhf_config_t *a, const rlhf_config_t *b);

/* Write cfg as YAML, one commented line per key, that config_load reads
 * back to the same values. RLHF_EIO on a write error. */
rlhf_err_t config_dump(const rlhf_config_t *cfg, FILE *f);
/* Nested JSON object of every value (for summary.json). Caller owns the
 * reference (json_decref); NULL on OOM. */
json_t *config_to_json(const rlhf_config_t *cfg);
/* Every key, its type, default, environment variable and help (--help). */
void config_print_help(FILE *f);

/* ---- bridges to the modules' own configs ---- */

/* The model for a new run: model.preset with the non-zero overrides,
 * checked by model_config_validate (error names model.* and the preset).
 * When model.init is set the model comes from that checkpoint instead;
 * this still returns the preset-based config. */
rlhf_err_t config_to_model(const rlhf_config_t *cfg, model_config_t *out, char *err, size_t errlen);
/* ppo.* optimizer settings for the policy (ppo.lr) and the critic
 * (ppo.critic_lr); constant rate, no warm-up. critic may be NULL. */
void config_to_adamw(const rlhf_config_t *cfg, adamw_config_t *policy, adamw_config_t *critic);
void config_to_gen(const rlhf_config_t *cfg, gen_params_t *out);
void config_to_task(const rlhf_config_t *cfg, task_config_t *out);
/* sft.* over sft_config_default, seeded by run.seed; the warm-up is cut
 * to sft.steps when longer. */
void config_to_sft(const rlhf_config_t *cfg, sft_config_t *out);

typedef enum {
    CONFIG_EP_WORK,
    CONFIG_EP_ROLLOUTS,
    CONFIG_EP_SCORE,
    CONFIG_EP_SCORED,
    CONFIG_EP_ANNOUNCE,
    CONFIG_EP_WEIGHTS,
} config_ep_t;

/* "tcp://HOST:PORT" for an endpoint, with host e.g. cfg->learner.bind (the
 * learner binds) or cfg->actor.learner (peers connect). snprintf-style. */
int config_endpoint(const rlhf_config_t *cfg, const char *host, config_ep_t ep, char *buf, size_t len);

/* Check that host (the value of key, e.g. "actor.learner") resolves to an
 * address, so a typo fails at start-up instead of waiting forever.
 * RLHF_ENOTFOUND with one sentence naming the key, the value and the fix. */
rlhf_err_t config_check_host(const char *key, const char *host, char *err, size_t errlen);

#endif
