/*
 * cmd_bench_pipeline.c - `rlhf bench pipeline`: end-to-end throughput of the
 * distributed pipeline as actors are added, on loopback.
 *
 * For each actor count N (--actors LIST) it starts a fresh learner, one
 * reward worker and N actors (free ports, the default config with SFT off:
 * a fresh model, or --init DIR), runs --steps learner steps to the end and
 * reads the learner's summary.json: samples/s (rollouts_per_s), tokens/s,
 * learner_busy_fraction, wall seconds and the weights propagation time (a
 * new version published -> every actor holding it). It also reports a steady
 * rate from the learner's /status (samples trained on from step 2 to the
 * last step, over that time), which leaves out start-up and the final
 * evaluation.
 *
 * The ceiling, measured in the same run: one actor alone. Scaling efficiency
 * = rate(N) / (N * rate(1)). Generation is compute on this machine's cores,
 * so without a delay it stops scaling at the core count (or earlier: the
 * learner's update takes the same cores). --delay-ms D makes each actor sleep
 * D ms per sample (actor.delay_ms), so generation is delay-bound and many
 * actors fit on few cores: the pipeline then scales until the learner
 * saturates (learner_busy_fraction near 1). --delay-ms takes a list (0,50)
 * to measure both in one run.
 *
 * In the first run of each sweep (one actor: the ceiling), once the learner
 * is at step 2, one more actor is started and the time from its process
 * start to its hello and to its first rollout received by the learner is
 * measured (learner /status peers; the actor's own
 * rlhf_samples_generated_total if /status has no per-peer sample counts).
 * That actor is stopped once measured, so it adds one ticket or two to the
 * one-actor run. Not in a saturated run: the learner hands tickets out in
 * peer order, so a newcomer there may get none before the run ends.
 *
 * Runs go to --out DIR (default runs/bench-pipeline), one folder each, logs
 * included. Learner evaluation is cut to the minimum (learner.eval_every 0,
 * task.n_heldout 64) since this measures throughput, not learning; --set
 * key=value overrides anything.
 *
 * What it deliberately is not: not a multi-host test (everything shares this
 * machine's cores), not a learning benchmark.
 */
#define _POSIX_C_SOURCE 200809L
#include <cairo.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/checkpoint.h"
#include "common/config.h"

#define BP_MAX_COUNTS 16
#define BP_MAX_DELAYS 4
#define BP_MAX_KIDS   72 // learner, reward worker, 64 actors, the late joiner
#define BP_MAX_ACTORS 64

static volatile sig_atomic_t g_stop = 0;
static void bp_on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

typedef struct {
    int actors, ok;
    double samples_per_s, tokens_per_s, busy, wall, steady_per_s;
    double wprop_mean, wprop_max; // NAN when no version was measured
    int wprop_versions;
} bp_result_t;

typedef struct {
    int measured, base_actors;
    double to_hello, to_first; // seconds from process start; NAN if not seen
    const char *source;
} bp_join_t;

typedef struct {
    int delay_ms, n;
    bp_result_t r[BP_MAX_COUNTS];
    double ceiling; // samples/s of one actor alone
    bp_join_t join;
} bp_sweep_t;

typedef struct {
    rlhf_config_t base;
    char bindir[PATH_MAX];
    char out[CONFIG_PATH_LEN - 64];
    int steps, json, tty, join, cores;
    const char *init;
    pid_t pid[BP_MAX_KIDS];
    char name[BP_MAX_KIDS][16];
    int n_kids;
} bp_t;

static void bp_usage(FILE *f) {
    fprintf(f, "usage: rlhf bench pipeline [--actors LIST] [--delay-ms D[,D...]] [--steps S] [--init DIR]\n"
               "                           [--out DIR] [--plot FILE.png] [--no-join] [--json] [--set key=value]...\n"
               "Starts a learner, one reward worker and N actors on loopback for each N in LIST (default 1,2,4;\n"
               "1,2,4,8 with a delay) and reports samples/s, tokens/s, learner busy fraction, weights\n"
               "propagation time and scaling efficiency against one actor alone, measured in the same run.\n");
}

/* "1,2,4" -> counts; the number of them, or -1. */
static int parse_list(const char *s, int *out, int max, int lo, int hi) {
    int n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < lo || v > hi || n == max) return -1;
        out[n++] = (int)v;
        if (*end == ',')
            end++;
        else if (*end)
            return -1;
        p = end;
    }
    return n;
}

static double jget(json_t *o, const char *key) {
    json_t *v = o ? json_object_get(o, key) : NULL;
    return json_is_number(v) ? json_number_value(v) : NAN;
}

static int bp_set(rlhf_config_t *c, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bp_set(rlhf_config_t *c, const char *key, const char *fmt, ...) {
    char v[CONFIG_PATH_LEN], err[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v, sizeof v, fmt, ap);
    va_end(ap);
    if (config_set(c, key, v, err, sizeof err) != RLHF_OK) {
        fprintf(stderr, "rlhf bench pipeline: %s: %s\n", key, err);
        return -1;
    }
    return 0;
}

static pid_t bp_spawn(bp_t *b, const char *role, const char *name, const char *dir, const char *cfg_path,
                      const char *extra_set) {
    char prog[PATH_MAX + 32], log[CONFIG_PATH_LEN + 64];
    snprintf(prog, sizeof prog, "%.4000s/rlhf-%s", b->bindir, role);
    snprintf(log, sizeof log, "%s/logs/%s.log", dir, name);
    char *args[] = {
        prog, "--config", (char *)cfg_path, "--id", (char *)name, extra_set ? "--set" : NULL, (char *)extra_set, NULL};
    pid_t pid = cli_spawn(prog, args, log);
    if (pid > 0 && b->n_kids < BP_MAX_KIDS) {
        b->pid[b->n_kids] = pid;
        snprintf(b->name[b->n_kids], sizeof b->name[0], "%s", name);
        b->n_kids++;
    }
    return pid;
}

/* Stop one child: SIGTERM, up to 10 s, then SIGKILL. */
static void bp_stop_one(bp_t *b, int i) {
    if (b->pid[i] <= 0) return;
    kill(b->pid[i], SIGTERM);
    int st;
    for (double t0 = cli_now(); cli_now() - t0 < 10.0; usleep(20000))
        if (waitpid(b->pid[i], &st, WNOHANG) == b->pid[i]) {
            b->pid[i] = 0;
            return;
        }
    kill(b->pid[i], SIGKILL);
    waitpid(b->pid[i], &st, 0);
    b->pid[i] = 0;
}

/* Actors and the reward worker first (the learner sees them leave), then the
 * learner; whatever is still there after 10 s is killed. */
static void bp_stop_all(bp_t *b) {
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < b->n_kids; i++)
            if (b->pid[i] > 0 && (strcmp(b->name[i], "learner") != 0) == (pass == 0)) kill(b->pid[i], SIGTERM);
        int st;
        for (double t0 = cli_now(); cli_now() - t0 < 10.0; usleep(20000)) {
            int alive = 0;
            for (int i = 0; i < b->n_kids; i++) {
                if (b->pid[i] <= 0) continue;
                if (waitpid(b->pid[i], &st, WNOHANG) == b->pid[i])
                    b->pid[i] = 0;
                else if ((strcmp(b->name[i], "learner") != 0) == (pass == 0))
                    alive++;
            }
            if (!alive) break;
        }
    }
    for (int i = 0; i < b->n_kids; i++)
        if (b->pid[i] > 0) {
            int st;
            kill(b->pid[i], SIGKILL);
            waitpid(b->pid[i], &st, 0);
            b->pid[i] = 0;
        }
    b->n_kids = 0;
}

/* rlhf_samples_generated_total from an actor's /metrics; NAN if unreachable. */
static double actor_generated(int port) {
    char *body = NULL;
    size_t len = 0;
    int status = 0;
    double v = NAN;
    if (cli_http_get("127.0.0.1", port, "/metrics", 0.5, &status, &body, &len, NULL, 0) != 0) return NAN;
    const char *key = "\nrlhf_samples_generated_total ";
    char *at = status == 200 ? strstr(body, key) : NULL;
    if (at) v = strtod(at + strlen(key), NULL);
    free(body);
    return v;
}

/* The late joiner in the learner's /status peers: 1 found (*samples set, -1
 * when peers carry no sample count), 0 not there. */
static int peer_samples(json_t *st, const char *id, double *samples) {
    json_t *ps = st ? json_object_get(st, "peers") : NULL;
    size_t i;
    json_t *p;
    json_array_foreach(ps, i, p) {
        json_t *pid = json_object_get(p, "id");
        if (!json_is_string(pid) || strcmp(json_string_value(pid), id) != 0) continue;
        json_t *s = json_object_get(p, "samples");
        *samples = json_is_number(s) ? json_number_value(s) : -1;
        return 1;
    }
    return 0;
}

static void bp_line(bp_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bp_line(bp_t *b, const char *fmt, ...) {
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (b->tty)
        fprintf(stderr, "\r%s\033[K", line);
    else
        fprintf(stderr, "%s\n", line);
}

/* One run: N actors, delay D. 0 when the learner finished and wrote its
 * summary; -1 otherwise (message printed). */
static int bp_run(bp_t *b, int delay, int n_actors, int join, bp_result_t *res, bp_join_t *jr) {
    memset(res, 0, sizeof *res);
    res->actors = n_actors;
    res->wprop_mean = res->wprop_max = res->steady_per_s = NAN;
    rlhf_config_t cfg = b->base;
    char dir[CONFIG_PATH_LEN], path[CONFIG_PATH_LEN + 32], err[512];
    snprintf(dir, sizeof dir, "%s/d%d-a%d", b->out, delay, n_actors);
    int ports[7];
    for (int i = 0; i < 7; i++) { // distinct free ports: six learner endpoints and its HTTP
        ports[i] = cli_free_port();
        for (int k = 0; k < i; k++)
            if (ports[k] == ports[i]) ports[i] = -1, k = i;
        if (ports[i] <= 0) i--;
    }
    static const char *const port_keys[7] = {"learner.work_port",   "learner.rollouts_port", "learner.score_port",
                                             "learner.scored_port", "learner.announce_port", "learner.weights_port",
                                             "learner.http_port"};
    int bad = bp_set(&cfg, "run.out_dir", "%s", dir) || bp_set(&cfg, "run.actors", "%d", n_actors) ||
              bp_set(&cfg, "run.steps", "%d", b->steps) || bp_set(&cfg, "sft.steps", "0") ||
              bp_set(&cfg, "actor.delay_ms", "%d", delay) || (b->init && bp_set(&cfg, "model.init", "%s", b->init));
    for (int i = 0; i < 7 && !bad; i++) bad = bp_set(&cfg, port_keys[i], "%d", ports[i]);
    if (bad) return -1;
    snprintf(path, sizeof path, "%s/logs", dir);
    if (checkpoint_mkdirs(path, err, sizeof err) != RLHF_OK) {
        fprintf(stderr, "rlhf bench pipeline: %s\n", err);
        return -1;
    }
    snprintf(path, sizeof path, "%s/summary.json", dir);
    unlink(path); // a previous run's must not pass for this one's
    char cfg_path[CONFIG_PATH_LEN + 32];
    snprintf(cfg_path, sizeof cfg_path, "%s/config.yaml", dir);
    FILE *cf = fopen(cfg_path, "w");
    if (!cf || config_dump(&cfg, cf) != RLHF_OK) {
        fprintf(stderr, "rlhf bench pipeline: cannot write %s\n", cfg_path);
        if (cf) fclose(cf);
        return -1;
    }
    fclose(cf);

    double t0 = cli_now();
    int http = ports[6];
    if (bp_spawn(b, "learner", "learner", dir, cfg_path, NULL) <= 0 ||
        bp_spawn(b, "reward", "reward0", dir, cfg_path, NULL) <= 0) {
        fprintf(stderr, "rlhf bench pipeline: fork failed: %s\n", strerror(errno));
        bp_stop_all(b);
        return -1;
    }
    for (int i = 0; i < n_actors; i++) {
        char name[16];
        snprintf(name, sizeof name, "actor%d", i);
        if (bp_spawn(b, "actor", name, dir, cfg_path, NULL) <= 0) {
            fprintf(stderr, "rlhf bench pipeline: fork failed: %s\n", strerror(errno));
            bp_stop_all(b);
            return -1;
        }
    }

    /* watch: status line, steady rate, the late joiner */
    double timeout = 120.0 + 30.0 * b->steps * (delay > 0 ? 1.0 + delay / 50.0 : 1.0);
    double last_poll = 0, last_print = 0, s_t0 = NAN, s_n0 = 0, s_t1 = NAN, s_n1 = 0, s_step0 = 0;
    int learner_done = 0, late = -1, late_port = 0, rc = 0;
    double late_t0 = 0;
    if (jr) *jr = (bp_join_t){.base_actors = n_actors, .to_hello = NAN, .to_first = NAN};
    while (!g_stop) {
        int st;
        if (waitpid(b->pid[0], &st, WNOHANG) == b->pid[0]) {
            b->pid[0] = 0;
            learner_done = 1;
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                fprintf(stderr, "%srlhf bench pipeline: the learner failed; see %s/logs/learner.log\n",
                        b->tty ? "\n" : "", dir);
                rc = -1;
            }
            break;
        }
        for (int i = 1; i < b->n_kids; i++)
            if (b->pid[i] > 0 && waitpid(b->pid[i], &st, WNOHANG) == b->pid[i]) {
                b->pid[i] = 0;
                fprintf(stderr, "%srlhf bench pipeline: %s exited early; see %s/logs/%s.log\n", b->tty ? "\n" : "",
                        b->name[i], dir, b->name[i]);
            }
        double now = cli_now();
        if (now - t0 > timeout) {
            fprintf(stderr, "%srlhf bench pipeline: run N=%d delay %d ms took over %.0f s; stopped\n",
                    b->tty ? "\n" : "", n_actors, delay, timeout);
            rc = -1;
            break;
        }
        int joining = late >= 0 && jr && !(jr->to_first == jr->to_first);
        if (now - last_poll >= (joining ? 0.05 : 0.25)) {
            last_poll = now;
            json_t *s = cli_get_status(http);
            double step = jget(s, "step"), used = jget(json_object_get(s, "totals"), "samples_used");
            if (s && step >= 2 && used == used && !(s_t0 == s_t0)) s_t0 = now, s_n0 = used, s_step0 = step;
            if (s && step >= b->steps && used == used && !(s_t1 == s_t1) && step > s_step0) s_t1 = now, s_n1 = used;
            if (join && jr && late < 0 && step >= 2) { // the late joiner
                late_port = cli_free_port();
                char set[64];
                snprintf(set, sizeof set, "actor.http_port=%d", late_port);
                late_t0 = cli_now();
                if (bp_spawn(b, "actor", "late", dir, cfg_path, set) > 0)
                    late = b->n_kids - 1;
                else
                    join = 0;
            }
            if (joining) {
                double smp = 0;
                double t = cli_now() - late_t0;
                if (peer_samples(s, "late", &smp)) {
                    if (!(jr->to_hello == jr->to_hello)) jr->to_hello = t;
                    if (smp > 0)
                        jr->to_first = t, jr->source = "learner /status peers";
                    else if (smp < 0) {
                        double g = actor_generated(late_port);
                        if (g > 0) jr->to_first = cli_now() - late_t0, jr->source = "actor /metrics (generated)";
                    }
                }
                if (jr->to_first == jr->to_first) {
                    jr->measured = 1;
                    bp_stop_one(b, late); // measured: back to N actors
                }
            }
            if (now - last_print >= (b->tty ? 0.5 : 15.0)) {
                last_print = now;
                if (s)
                    bp_line(
                        b,
                        "delay %d ms, %d actor%s: step %.0f/%d  %.1f samples/s  %.0f tok/s  learner busy %.2f%s  %.0fs",
                        delay, n_actors, n_actors == 1 ? "" : "s", step, b->steps, jget(s, "rollouts_per_s"),
                        jget(s, "tokens_per_s"),
                        jget(json_object_get(s, "totals"), "busy_seconds") / jget(s, "wall_seconds"),
                        joining ? "  (late actor joining)" : "", now - t0);
                else
                    bp_line(b, "delay %d ms, %d actor%s: starting... %.0fs", delay, n_actors, n_actors == 1 ? "" : "s",
                            now - t0);
            }
            json_decref(s);
        }
        usleep(20000);
    }
    if (b->tty) fprintf(stderr, "\r\033[K");
    bp_stop_all(b);
    if (g_stop || !learner_done || rc) return -1;
    json_t *sum = json_load_file(path, 0, NULL);
    if (!sum) {
        fprintf(stderr, "rlhf bench pipeline: the learner wrote no %s\n", path);
        return -1;
    }
    res->ok = 1;
    res->samples_per_s = jget(sum, "rollouts_per_s");
    res->tokens_per_s = jget(sum, "tokens_per_s");
    res->busy = jget(sum, "learner_busy_fraction");
    res->wall = jget(sum, "wall_seconds");
    res->wprop_mean = jget(sum, "weights_propagation_s_mean");
    res->wprop_max = jget(sum, "weights_propagation_s_max");
    double nv = jget(sum, "weights_propagation_versions");
    res->wprop_versions = nv == nv ? (int)nv : 0;
    if (s_t1 - s_t0 >= 1.0) res->steady_per_s = (s_n1 - s_n0) / (s_t1 - s_t0);
    json_decref(sum);
    return 0;
}

/* ---- output ---- */

static json_t *bp_jn(double x) {
    return isfinite(x) ? json_real(x) : json_null();
}

static json_t *bp_json(const bp_t *b, const bp_sweep_t *sw, int n_sw) {
    json_t *o = json_object(), *arr = json_array();
    json_object_set_new(o, "benchmark", json_string("pipeline"));
    json_object_set_new(o, "cores", json_integer(b->cores));
    json_object_set_new(o, "steps", json_integer(b->steps));
    json_object_set_new(o, "samples_per_step", json_integer((json_int_t)b->base.ppo.batch_prompts * b->base.ppo.k));
    json_object_set_new(o, "model_preset", json_string(b->base.model.preset));
    for (int s = 0; s < n_sw; s++) {
        json_t *so = json_object(), *runs = json_array();
        json_object_set_new(so, "delay_ms", json_integer(sw[s].delay_ms));
        json_object_set_new(so, "ceiling_samples_per_s", bp_jn(sw[s].ceiling));
        for (int i = 0; i < sw[s].n; i++) {
            const bp_result_t *r = &sw[s].r[i];
            json_t *ro = json_object();
            json_object_set_new(ro, "actors", json_integer(r->actors));
            json_object_set_new(ro, "ok", json_boolean(r->ok));
            json_object_set_new(ro, "samples_per_s", bp_jn(r->ok ? r->samples_per_s : NAN));
            json_object_set_new(ro, "steady_samples_per_s", bp_jn(r->ok ? r->steady_per_s : NAN));
            json_object_set_new(ro, "tokens_per_s", bp_jn(r->ok ? r->tokens_per_s : NAN));
            json_object_set_new(ro, "learner_busy_fraction", bp_jn(r->ok ? r->busy : NAN));
            json_object_set_new(ro, "wall_seconds", bp_jn(r->ok ? r->wall : NAN));
            json_object_set_new(ro, "weights_propagation_s_mean", bp_jn(r->wprop_mean));
            json_object_set_new(ro, "weights_propagation_s_max", bp_jn(r->wprop_max));
            json_object_set_new(ro, "weights_propagation_versions", json_integer(r->wprop_versions));
            json_object_set_new(ro, "scaling_efficiency",
                                bp_jn(r->ok ? r->samples_per_s / (r->actors * sw[s].ceiling) : NAN));
            json_array_append_new(runs, ro);
        }
        json_object_set_new(so, "runs", runs);
        if (sw[s].join.measured || sw[s].join.base_actors) {
            const bp_join_t *j = &sw[s].join;
            json_object_set_new(so, "late_actor",
                                json_pack("{s:i,s:o,s:o,s:s}", "base_actors", j->base_actors, "start_to_hello_s",
                                          bp_jn(j->to_hello), "start_to_first_rollout_s", bp_jn(j->to_first), "source",
                                          j->source ? j->source : "not measured"));
        }
        json_array_append_new(arr, so);
    }
    json_object_set_new(o, "sweeps", arr);
    return o;
}

static void bp_table(const bp_t *b, const bp_sweep_t *sw, int n_sw) {
    printf("pipeline: %d learner steps of %d samples per run, %s model, %d cores on this machine\n", b->steps,
           b->base.ppo.batch_prompts * b->base.ppo.k, b->base.model.preset, b->cores);
    for (int s = 0; s < n_sw; s++) {
        const bp_sweep_t *w = &sw[s];
        printf("\ndelay %d ms per sample%s\n", w->delay_ms,
               w->delay_ms > 0 ? " (actor.delay_ms: sleeping, so generation is delay-bound)" : "");
        printf("actors  samples/s  steady/s  tokens/s  learner busy  wall s  weights prop. mean/max s  "
               "scaling eff.\n");
        for (int i = 0; i < w->n; i++) {
            const bp_result_t *r = &w->r[i];
            if (!r->ok) {
                printf("%6d  (failed)\n", r->actors);
                continue;
            }
            char wp[48] = "-";
            if (r->wprop_mean == r->wprop_mean) snprintf(wp, sizeof wp, "%.3f / %.3f", r->wprop_mean, r->wprop_max);
            printf("%6d  %9.1f  %8.1f  %8.0f  %12.2f  %6.1f  %24s  %12.2f\n", r->actors, r->samples_per_s,
                   r->steady_per_s, r->tokens_per_s, r->busy, r->wall, wp, r->samples_per_s / (r->actors * w->ceiling));
        }
        printf("ceiling: one actor alone, %.1f samples/s; scaling efficiency = samples/s(N) / (N x %.1f)\n", w->ceiling,
               w->ceiling);
        if (w->delay_ms > 0)
            printf("an actor's delay alone caps it at %.0f samples/s (1000 / %d ms)\n", 1000.0 / w->delay_ms,
                   w->delay_ms);
        else
            printf("generation is compute: it stops scaling at %d cores, sooner as the learner's updates share them\n",
                   b->cores);
        if (w->join.measured)
            printf("late actor (joined a running %d-actor pipeline at step >= 2): hello after %.2f s, first rollout "
                   "received after %.2f s from process start (%s)\n",
                   w->join.base_actors, w->join.to_hello, w->join.to_first, w->join.source);
        else if (w->join.base_actors)
            printf("late actor (joined a running %d-actor pipeline at step >= 2): hello after %.2f s, no rollout "
                   "received before the run ended\n",
                   w->join.base_actors, w->join.to_hello);
    }
    printf("\nfigures are from one run on a shared machine: expect noise of 10-20%%\n");
}

/* samples/s against actors, one line per delay, dashed: linear scaling from
 * the one-actor ceiling. */
static int bp_plot(const bp_t *b, const bp_sweep_t *sw, int n_sw, const char *png) {
    const int W = 900, H = 600;
    double L = 80, R = W - 30, T = 50, B = H - 60 - 36 * n_sw;
    int xmax = 1;
    double ymax = 1;
    for (int s = 0; s < n_sw; s++)
        for (int i = 0; i < sw[s].n; i++) {
            if (sw[s].r[i].actors > xmax) xmax = sw[s].r[i].actors;
            if (sw[s].r[i].ok && sw[s].r[i].samples_per_s > ymax) ymax = sw[s].r[i].samples_per_s;
        }
    double ystep = 1; // a round tick step, about five ticks
    for (double m = 1e-3; m < 1e6; m *= 10) {
        if (ymax * 1.2 / 5 <= m) {
            ystep = m;
            break;
        }
        if (ymax * 1.2 / 5 <= 2 * m) {
            ystep = 2 * m;
            break;
        }
        if (ymax * 1.2 / 5 <= 5 * m) {
            ystep = 5 * m;
            break;
        }
    }
    ymax = ystep * ceil(ymax * 1.2 / ystep);
    cairo_surface_t *surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, W, H);
    cairo_t *cr = cairo_create(surf);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
#define PX(x) (L + (R - L) * (x) / (xmax + 0.6))
#define PY(y) (B - (B - T) * (y) / ymax)
    char buf[128];
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, 12);
    cairo_set_line_width(cr, 1);
    for (double y = 0; y <= ymax + 1e-9; y += ystep) { // y grid
        cairo_set_source_rgb(cr, 0.88, 0.88, 0.88);
        cairo_move_to(cr, L, PY(y)), cairo_line_to(cr, R, PY(y));
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
        snprintf(buf, sizeof buf, "%g", y);
        cairo_move_to(cr, L - 40, PY(y) + 4);
        cairo_show_text(cr, buf);
    }
    for (int x = 1; x <= xmax; x++) { // x ticks at every actor count measured
        int used = 0;
        for (int s = 0; s < n_sw; s++)
            for (int i = 0; i < sw[s].n; i++) used |= sw[s].r[i].actors == x;
        if (!used) continue;
        cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
        snprintf(buf, sizeof buf, "%d", x);
        cairo_move_to(cr, PX(x) - 4, B + 18);
        cairo_show_text(cr, buf);
    }
    if (b->cores >= 1 && b->cores <= xmax) { // the core count
        cairo_set_source_rgb(cr, 0.6, 0.6, 0.6);
        double d[] = {2, 4};
        cairo_set_dash(cr, d, 2, 0);
        cairo_move_to(cr, PX(b->cores), T), cairo_line_to(cr, PX(b->cores), B);
        cairo_stroke(cr);
        cairo_set_dash(cr, NULL, 0, 0);
        snprintf(buf, sizeof buf, "%d cores", b->cores);
        cairo_move_to(cr, PX(b->cores) + 4, T + 14);
        cairo_show_text(cr, buf);
    }
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    cairo_rectangle(cr, L, T, R - L, B - T);
    cairo_stroke(cr);
    cairo_move_to(cr, (L + R) / 2 - 20, B + 36);
    cairo_show_text(cr, "actors");
    cairo_save(cr);
    cairo_move_to(cr, 22, (T + B) / 2 + 30);
    cairo_rotate(cr, -M_PI / 2);
    cairo_show_text(cr, "samples/s");
    cairo_restore(cr);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
    cairo_set_font_size(cr, 15);
    snprintf(buf, sizeof buf, "rlhf bench pipeline: samples/s vs actors (%d steps, %d cores)", b->steps, b->cores);
    cairo_move_to(cr, L, 30);
    cairo_show_text(cr, buf);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, 12);
    static const double col[BP_MAX_DELAYS][3] = {
        {0.12, 0.38, 0.75}, {0.85, 0.35, 0.1}, {0.2, 0.6, 0.25}, {0.55, 0.25, 0.65}};
    cairo_rectangle(cr, L, T, R - L, B - T);
    cairo_clip(cr);
    for (int s = 0; s < n_sw; s++) {
        const double *c = col[s % BP_MAX_DELAYS];
        if (sw[s].ceiling > 0) { // ideal: N x ceiling
            cairo_set_source_rgba(cr, c[0], c[1], c[2], 0.5);
            double d[] = {6, 5};
            cairo_set_dash(cr, d, 2, 0);
            cairo_set_line_width(cr, 1.5);
            cairo_move_to(cr, PX(0), PY(0)), cairo_line_to(cr, PX(xmax + 1), PY(sw[s].ceiling * (xmax + 1)));
            cairo_stroke(cr);
            cairo_set_dash(cr, NULL, 0, 0);
        }
        cairo_set_source_rgb(cr, c[0], c[1], c[2]);
        cairo_set_line_width(cr, 2.5);
        int first = 1;
        for (int i = 0; i < sw[s].n; i++) {
            const bp_result_t *r = &sw[s].r[i];
            if (!r->ok) continue;
            if (first)
                cairo_move_to(cr, PX(r->actors), PY(r->samples_per_s));
            else
                cairo_line_to(cr, PX(r->actors), PY(r->samples_per_s));
            first = 0;
        }
        cairo_stroke(cr);
        for (int i = 0; i < sw[s].n; i++) {
            const bp_result_t *r = &sw[s].r[i];
            if (!r->ok) continue;
            cairo_arc(cr, PX(r->actors), PY(r->samples_per_s), 4, 0, 2 * M_PI);
            cairo_fill(cr);
            snprintf(buf, sizeof buf, "%.1f (busy %.2f)", r->samples_per_s, r->busy);
            cairo_text_extents_t te;
            cairo_text_extents(cr, buf, &te);
            double lx = PX(r->actors) + 6; // right of the point, left of it at the right edge
            if (lx + te.x_advance > R - 4) lx = PX(r->actors) - 6 - te.x_advance;
            cairo_move_to(cr, lx, PY(r->samples_per_s) - 8);
            cairo_show_text(cr, buf);
        }
    }
    cairo_reset_clip(cr);
    for (int s = 0; s < n_sw; s++) { // legend
        const double *c = col[s % BP_MAX_DELAYS];
        double y = B + 56 + 36 * s, x = L;
        cairo_set_source_rgb(cr, c[0], c[1], c[2]);
        cairo_set_line_width(cr, 2.5);
        cairo_move_to(cr, x, y), cairo_line_to(cr, x + 26, y);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
        if (sw[s].delay_ms > 0)
            snprintf(buf, sizeof buf, "measured, delay %d ms/sample", sw[s].delay_ms);
        else
            snprintf(buf, sizeof buf, "measured, no delay");
        cairo_move_to(cr, x + 34, y + 4);
        cairo_show_text(cr, buf);
        cairo_set_source_rgba(cr, c[0], c[1], c[2], 0.5);
        double d[] = {6, 5};
        cairo_set_dash(cr, d, 2, 0);
        cairo_set_line_width(cr, 1.5);
        cairo_move_to(cr, x, y + 16), cairo_line_to(cr, x + 26, y + 16);
        cairo_stroke(cr);
        cairo_set_dash(cr, NULL, 0, 0);
        cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
        snprintf(buf, sizeof buf, "linear: N x %.1f (one actor alone)", sw[s].ceiling);
        cairo_move_to(cr, x + 34, y + 20);
        cairo_show_text(cr, buf);
    }
#undef PX
#undef PY
    cairo_destroy(cr);
    cairo_status_t cs = cairo_surface_write_to_png(surf, png);
    cairo_surface_destroy(surf);
    if (cs != CAIRO_STATUS_SUCCESS) {
        fprintf(stderr, "rlhf bench pipeline: %s: %s\n", png, cairo_status_to_string(cs));
        return -1;
    }
    return 0;
}

int bench_pipeline(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            bp_usage(stdout);
            return 0;
        }
    static bp_t bench;
    bp_t *b = &bench;
    memset(b, 0, sizeof *b);
    char err[512];
    /* throughput, not learning: evaluation at the minimum unless the user
     * configures it (--config, --set) */
    int own_eval = 1, own_heldout = 1;
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "--config", 8) == 0) own_eval = own_heldout = 0;
        if (strstr(argv[i], "learner.eval_every")) own_eval = 0;
        if (strstr(argv[i], "task.n_heldout")) own_heldout = 0;
    }
    /* --config and --set first: the base config of every run */
    if (config_from_args(&b->base, &argc, argv, NULL, NULL, err, sizeof err) != RLHF_OK) {
        fprintf(stderr, "rlhf bench pipeline: %s\n", err);
        return 2;
    }
    int counts[BP_MAX_COUNTS], n_counts = 0, delays[BP_MAX_DELAYS] = {0}, n_delays = 1;
    const char *plot = NULL, *actors_arg = NULL;
    b->steps = 20;
    b->join = 1;
    snprintf(b->out, sizeof b->out, "runs/bench-pipeline");
    static struct option opts[] = {{"actors", required_argument, 0, 'a'},
                                   {"delay-ms", required_argument, 0, 'd'},
                                   {"steps", required_argument, 0, 's'},
                                   {"init", required_argument, 0, 'i'},
                                   {"out", required_argument, 0, 'o'},
                                   {"plot", required_argument, 0, 'p'},
                                   {"json", no_argument, 0, 'j'},
                                   {"no-join", no_argument, 0, 'n'},
                                   {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'a': actors_arg = optarg; break;
        case 'd':
            if ((n_delays = parse_list(optarg, delays, BP_MAX_DELAYS, 0, 100000)) < 1) {
                fprintf(stderr, "rlhf bench pipeline: --delay-ms takes up to %d delays in ms, e.g. 0,50\n",
                        BP_MAX_DELAYS);
                return 2;
            }
            break;
        case 's': b->steps = atoi(optarg); break;
        case 'i': b->init = optarg; break;
        case 'o':
            if (strlen(optarg) >= sizeof b->out) {
                fprintf(stderr, "rlhf bench pipeline: --out is too long\n");
                return 2;
            }
            snprintf(b->out, sizeof b->out, "%s", optarg);
            break;
        case 'p': plot = optarg; break;
        case 'j': b->json = 1; break;
        case 'n': b->join = 0; break;
        default: bp_usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "rlhf bench pipeline: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (b->steps < 1) {
        fprintf(stderr, "rlhf bench pipeline: --steps must be >= 1\n");
        return 2;
    }
    if (actors_arg) {
        if ((n_counts = parse_list(actors_arg, counts, BP_MAX_COUNTS - 1, 1, BP_MAX_ACTORS)) < 1) {
            fprintf(stderr, "rlhf bench pipeline: --actors takes a list of counts in 1..%d, e.g. 1,2,4\n",
                    BP_MAX_ACTORS);
            return 2;
        }
    }
    if ((own_eval && bp_set(&b->base, "learner.eval_every", "0")) ||
        (own_heldout && bp_set(&b->base, "task.n_heldout", "64")))
        return 2;
    b->cores = (int)sysconf(_SC_NPROCESSORS_ONLN);

    ssize_t n = readlink("/proc/self/exe", b->bindir, sizeof b->bindir - 1);
    if (n <= 0) {
        fprintf(stderr, "rlhf bench pipeline: cannot find my own program (/proc/self/exe)\n");
        return 1;
    }
    b->bindir[n] = 0;
    char *slash = strrchr(b->bindir, '/');
    if (slash) *slash = 0;
    const char *roles[] = {"learner", "reward", "actor"};
    for (int i = 0; i < 3; i++) {
        char p[PATH_MAX + 32];
        snprintf(p, sizeof p, "%.4000s/rlhf-%s", b->bindir, roles[i]);
        if (access(p, X_OK) != 0) {
            fprintf(stderr, "rlhf bench pipeline: %s is missing; build it (make) first\n", p);
            return 1;
        }
    }
    b->tty = isatty(STDERR_FILENO);
    struct sigaction sa = {.sa_handler = bp_on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    static bp_sweep_t sw[BP_MAX_DELAYS];
    memset(sw, 0, sizeof sw);
    int failed = 0;
    double t_all = cli_now();
    for (int s = 0; s < n_delays && !g_stop; s++) {
        bp_sweep_t *w = &sw[s];
        w->delay_ms = delays[s];
        int cs[BP_MAX_COUNTS], nc = 0;
        if (n_counts)
            memcpy(cs, counts, sizeof(int) * (size_t)n_counts), nc = n_counts;
        else if (delays[s] > 0)
            cs[0] = 1, cs[1] = 2, cs[2] = 4, cs[3] = 8, nc = 4;
        else
            cs[0] = 1, cs[1] = 2, cs[2] = 4, nc = 3;
        int has1 = 0;
        for (int i = 0; i < nc; i++) has1 |= cs[i] == 1;
        if (!has1) { // the ceiling is measured in the same run
            memmove(cs + 1, cs, sizeof(int) * (size_t)nc);
            cs[0] = 1, nc++;
        }
        for (int i = 0; i < nc && !g_stop; i++) {
            int first = i == 0;
            w->n = i + 1;
            if (bp_run(b, w->delay_ms, cs[i], b->join && first, &w->r[i], first ? &w->join : NULL) != 0) failed++;
            if (cs[i] == 1 && w->r[i].ok) w->ceiling = w->r[i].samples_per_s;
            if (!b->json && w->r[i].ok)
                fprintf(stderr, "delay %d ms, %d actor%s: %.1f samples/s (steady %.1f), learner busy %.2f, %.0f s\n",
                        w->delay_ms, cs[i], cs[i] == 1 ? "" : "s", w->r[i].samples_per_s, w->r[i].steady_per_s,
                        w->r[i].busy, w->r[i].wall);
        }
    }
    if (g_stop) {
        fprintf(stderr, "rlhf bench pipeline: interrupted; children stopped\n");
        return 130;
    }
    if (b->json) {
        json_t *o = bp_json(b, sw, n_delays);
        json_object_set_new(o, "bench_seconds", json_real(cli_now() - t_all));
        char *txt = json_dumps(o, JSON_COMPACT);
        printf("%s\n", txt);
        free(txt);
        json_decref(o);
    } else {
        bp_table(b, sw, n_delays);
        printf("total %.0f s; runs in %s\n", cli_now() - t_all, b->out);
    }
    if (plot && bp_plot(b, sw, n_delays, plot) == 0) fprintf(stderr, "pipeline: plot in %s\n", plot);
    return failed ? 1 : 0;
}
