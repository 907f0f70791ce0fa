/*
 * cmd_run.c - `rlhf run`: the whole lifecycle on one machine.
 *
 * With no init checkpoint it first runs a short SFT stage on the built-in
 * task (in this process), then starts one learner, M reward workers and N
 * actors as separate processes on loopback, supervises them (a worker that
 * dies is restarted; its tickets are reissued by the learner), shows one
 * live status line read from the learner's /status, stops everything on
 * Ctrl-C or when the learner finishes, and plots metrics.jsonl.
 *
 * Children log to DIR/logs/<name>.log so the terminal keeps one line.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/plot.h"
#include "common/checkpoint.h"
#include "common/config.h"
#include "common/sft.h"

#define RUN_MAX_CHILDREN 130
#define RUN_MAX_RESTARTS 3

extern char **environ;
static volatile sig_atomic_t g_signals = 0;
static void on_signal(int sig) {
    (void)sig;
    g_signals++;
}

typedef struct {
    char name[32];
    char role[16]; /* learner, reward, actor */
    pid_t pid;     /* 0 = not running */
    int restarts;
    int status; /* last wait status */
} child_t;

typedef struct {
    rlhf_config_t cfg;
    char bindir[PATH_MAX];
    char config_path[PATH_MAX];
    child_t kids[RUN_MAX_CHILDREN];
    int n_kids;
    int tty;
} run_t;

/* snprintf for paths: 0, or -1 (message printed) when the path does not fit
 * (cmd_run checks run.out_dir's length up front, so it cannot). */
static int pathf(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int pathf(char *buf, size_t len, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= len) {
        fprintf(stderr, "rlhf run: path too long: %s\n", buf);
        return -1;
    }
    return 0;
}

static int spawn(run_t *r, child_t *c) {
    char prog[PATH_MAX + 32], log[PATH_MAX + 64];
    pathf(prog, sizeof prog, "%s/rlhf-%s", r->bindir, c->role);
    pathf(log, sizeof log, "%s/logs/%s.log", r->cfg.run.out_dir, c->name);
    char *args[] = {prog, "--config", r->config_path, "--id", c->name, NULL};
    pid_t pid = cli_spawn(prog, args, log);
    if (pid < 0) return -1;
    c->pid = pid;
    return 0;
}

static child_t *add_child(run_t *r, const char *role, const char *name) {
    child_t *c = &r->kids[r->n_kids++];
    memset(c, 0, sizeof *c);
    snprintf(c->role, sizeof c->role, "%s", role);
    snprintf(c->name, sizeof c->name, "%s", name);
    return c;
}

static double jnum(json_t *o, const char *key, double def) {
    json_t *v = o ? json_object_get(o, key) : NULL;
    return json_is_number(v) ? json_number_value(v) : def;
}

static void status_line(run_t *r, json_t *s, double t0) {
    char line[512];
    if (!s) {
        snprintf(line, sizeof line, "waiting for the learner... %.0fs", cli_now() - t0);
    } else {
        json_t *q = json_object_get(s, "queues");
        double held = jnum(s, "heldout_score", NAN);
        char heldbuf[32] = "-";
        if (held == held) snprintf(heldbuf, sizeof heldbuf, "%.3f", held);
        snprintf(line, sizeof line,
                 "step %.0f/%.0f  reward %.3f  heldout %s  KL %.4f  %.1f rollouts/s  %.0f tok/s  "
                 "tickets %.0f  scoring %.0f  buffered %.0f  lag %.2f  %.0fs",
                 jnum(s, "step", 0), jnum(s, "steps_total", r->cfg.run.steps), jnum(s, "reward_mean", 0), heldbuf,
                 jnum(s, "kl", 0), jnum(s, "rollouts_per_s", 0), jnum(s, "tokens_per_s", 0),
                 jnum(q, "tickets_outstanding", 0), jnum(q, "rollouts_waiting_score", 0),
                 jnum(q, "samples_buffered", 0), jnum(s, "policy_lag", 0), cli_now() - t0);
    }
    if (r->tty)
        fprintf(stderr, "\r%s\033[K", line);
    else
        fprintf(stderr, "%s\n", line);
}

static void stop_children(run_t *r, const char *role_first) {
    /* actors and reward workers first, so the learner sees them leave */
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < r->n_kids; i++) {
            child_t *c = &r->kids[i];
            int is_first = strcmp(c->role, role_first) != 0;
            if (c->pid > 0 && (pass == 0) == is_first) kill(c->pid, SIGTERM);
        }
        double t0 = cli_now();
        for (;;) {
            int alive = 0;
            for (int i = 0; i < r->n_kids; i++) {
                child_t *c = &r->kids[i];
                if (c->pid <= 0) continue;
                if (waitpid(c->pid, &c->status, WNOHANG) == c->pid)
                    c->pid = 0;
                else
                    alive++;
            }
            if (!alive || cli_now() - t0 > 10.0) break;
            usleep(50000);
        }
    }
    for (int i = 0; i < r->n_kids; i++)
        if (r->kids[i].pid > 0) {
            fprintf(stderr, "rlhf run: %s did not stop in 10 s, killing it\n", r->kids[i].name);
            kill(r->kids[i].pid, SIGKILL);
            waitpid(r->kids[i].pid, &r->kids[i].status, 0);
            r->kids[i].pid = 0;
        }
}

static int sft_stage(run_t *r) {
    char err[512], dir[PATH_MAX];
    model_config_t mc;
    if (config_to_model(&r->cfg, &mc, err, sizeof err) != RLHF_OK) {
        fprintf(stderr, "rlhf run: %s\n", err);
        return -1;
    }
    task_config_t tc;
    config_to_task(&r->cfg, &tc);
    task_t *task = task_new_err(r->cfg.task.name, &tc, err, sizeof err);
    if (!task) {
        fprintf(stderr, "rlhf run: task: %s\n", err);
        return -1;
    }
    model_t *m = model_new(&mc);
    model_init_weights(m, r->cfg.run.seed);
    sft_data_t d;
    int rc = -1;
    sft_t *s = NULL;
    if (sft_data_from_task(&d, task, TASK_TRAIN, mc.max_seq_len, err, sizeof err) != RLHF_OK) {
        fprintf(stderr, "rlhf run: sft: %s\n", err);
        goto done_nodata;
    }
    sft_config_t sc;
    config_to_sft(&r->cfg, &sc);
    s = sft_new(m, &d, &sc);
    double t0 = cli_now();
    float ema = 0;
    for (int i = 0; i < sc.steps && !g_signals; i++) {
        float loss = sft_step(s, NULL, NULL, NULL);
        ema = i == 0 ? loss : 0.9f * ema + 0.1f * loss;
        if (r->tty || (i + 1) % 50 == 0 || i + 1 == sc.steps) {
            double el = cli_now() - t0;
            fprintf(stderr, "%ssft step %d/%d  loss %.4f  elapsed %.0fs  ETA %.0fs%s", r->tty ? "\r" : "", i + 1,
                    sc.steps, ema, el, el / (i + 1) * (sc.steps - i - 1), r->tty ? "\033[K" : "\n");
        }
    }
    if (r->tty) fprintf(stderr, "\n");
    if (g_signals) goto done;
    pathf(dir, sizeof dir, "%s/sft", r->cfg.run.out_dir);
    if (checkpoint_save_model(m, dir, err, sizeof err) != RLHF_OK) {
        fprintf(stderr, "rlhf run: sft: %s\n", err);
        goto done;
    }
    if (config_set(&r->cfg, "model.init", dir, err, sizeof err) != RLHF_OK) {
        fprintf(stderr, "rlhf run: %s\n", err);
        goto done;
    }
    fprintf(stderr, "sft: %d steps in %.0fs, policy initialised from %s\n", sc.steps, cli_now() - t0, dir);
    rc = 0;
done:
    sft_destroy(&s);
    sft_data_fini(&d);
done_nodata:
    model_destroy(&m);
    task_destroy(&task);
    return rc;
}

static void usage(FILE *f) {
    fprintf(f, "usage: rlhf run [--config FILE] [--actors N] [--reward-workers M] [--steps S] [--max-lag L]\n"
               "                [--seed N] [--out DIR] [--set key=value]...\n"
               "Runs SFT (unless model.init is set), then one learner, M reward workers and N actors on\n"
               "loopback; leaves metrics.jsonl, summary.json, final/ and curves.png in the run folder.\n");
}

int cmd_run(int argc, char **argv) {
    static const config_flag_t flags[] = {{"--actors", "run.actors", NULL},
                                          {"--reward-workers", "run.reward_workers", NULL},
                                          {"--steps", "run.steps", NULL},
                                          {"--max-lag", "run.max_lag", NULL},
                                          {"--seed", "run.seed", NULL},
                                          {"--out", "run.out_dir", NULL},
                                          {NULL, NULL, NULL}};
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
    static run_t run;
    run_t *r = &run;
    memset(r, 0, sizeof *r);
    char err[512];
    if (config_from_args(&r->cfg, &argc, argv, flags, NULL, err, sizeof err) != RLHF_OK) {
        fprintf(stderr, "rlhf run: %s\n", err);
        return 2;
    }
    if (strlen(r->cfg.run.out_dir) > PATH_MAX - 128) {
        fprintf(stderr, "rlhf run: run.out_dir is longer than %d bytes; use a shorter folder\n", PATH_MAX - 128);
        return 2;
    }
    if (argc > 1) {
        fprintf(stderr, "rlhf run: unexpected argument '%s' (see rlhf run --help)\n", argv[1]);
        return 2;
    }
    if (r->cfg.run.actors < 1 || r->cfg.run.reward_workers < 1 ||
        r->cfg.run.actors + r->cfg.run.reward_workers + 1 > RUN_MAX_CHILDREN) {
        fprintf(stderr, "rlhf run: run.actors and run.reward_workers must be >= 1 (at most %d processes)\n",
                RUN_MAX_CHILDREN);
        return 2;
    }
    ssize_t n = readlink("/proc/self/exe", r->bindir, sizeof r->bindir - 1);
    if (n <= 0) {
        fprintf(stderr, "rlhf run: cannot find my own program (/proc/self/exe)\n");
        return 1;
    }
    r->bindir[n] = 0;
    char *slash = strrchr(r->bindir, '/');
    if (slash) *slash = 0;
    const char *roles[] = {"learner", "reward", "actor"};
    for (int i = 0; i < 3; i++) {
        char p[PATH_MAX + 32];
        pathf(p, sizeof p, "%s/rlhf-%s", r->bindir, roles[i]);
        if (access(p, X_OK) != 0) {
            fprintf(stderr, "rlhf run: %s is missing; build it (make) first\n", p);
            return 1;
        }
    }
    char logs[PATH_MAX + 8];
    pathf(logs, sizeof logs, "%s/logs", r->cfg.run.out_dir);
    if (checkpoint_mkdirs(logs, err, sizeof err) != RLHF_OK) {
        fprintf(stderr, "rlhf run: run.out_dir: %s\n", err);
        return 1;
    }
    r->tty = isatty(STDERR_FILENO);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    double t0 = cli_now();

    if (r->cfg.model.init[0] == 0 && r->cfg.sft.steps > 0 && sft_stage(r) != 0) return g_signals ? 130 : 1;
    if (g_signals) return 130;
    if (r->cfg.learner.http_port <= 0) {
        char v[16];
        snprintf(v, sizeof v, "%d", cli_free_port());
        config_set(&r->cfg, "learner.http_port", v, err, sizeof err);
    }
    pathf(r->config_path, sizeof r->config_path, "%s/config.yaml", r->cfg.run.out_dir);
    FILE *cf = fopen(r->config_path, "w");
    if (!cf || config_dump(&r->cfg, cf) != RLHF_OK) {
        fprintf(stderr, "rlhf run: cannot write %s\n", r->config_path);
        if (cf) fclose(cf);
        return 1;
    }
    fclose(cf);

    add_child(r, "learner", "learner");
    char name[32];
    for (int i = 0; i < r->cfg.run.reward_workers; i++)
        snprintf(name, sizeof name, "reward%d", i), add_child(r, "reward", name);
    for (int i = 0; i < r->cfg.run.actors; i++) snprintf(name, sizeof name, "actor%d", i), add_child(r, "actor", name);
    for (int i = 0; i < r->n_kids; i++)
        if (spawn(r, &r->kids[i]) != 0) {
            fprintf(stderr, "rlhf run: fork failed: %s\n", strerror(errno));
            stop_children(r, "learner");
            return 1;
        }
    fprintf(stderr, "run: learner, %d reward workers, %d actors; logs in %s, status on http://127.0.0.1:%d/\n",
            r->cfg.run.reward_workers, r->cfg.run.actors, logs, r->cfg.learner.http_port);

    int learner_status = -1;
    double last = 0;
    while (!g_signals) {
        for (int i = 0; i < r->n_kids; i++) {
            child_t *c = &r->kids[i];
            if (c->pid <= 0 || waitpid(c->pid, &c->status, WNOHANG) != c->pid) continue;
            c->pid = 0;
            if (strcmp(c->role, "learner") == 0) {
                learner_status = c->status;
                continue;
            }
            if (r->tty) fprintf(stderr, "\n");
            fprintf(stderr, "rlhf run: %s exited (%s %d)%s\n", c->name, WIFSIGNALED(c->status) ? "signal" : "status",
                    WIFSIGNALED(c->status) ? WTERMSIG(c->status) : WEXITSTATUS(c->status),
                    c->restarts < RUN_MAX_RESTARTS ? "; restarting it" : "; not restarting");
            if (c->restarts++ < RUN_MAX_RESTARTS) spawn(r, c);
        }
        if (learner_status >= 0) break;
        if (cli_now() - last >= 1.0) {
            json_t *s = cli_get_status(r->cfg.learner.http_port);
            status_line(r, s, t0);
            json_decref(s);
            last = cli_now();
        }
        usleep(100000);
    }
    if (r->tty) fprintf(stderr, "\n");
    if (g_signals) fprintf(stderr, "rlhf run: stopping (signal); learner state is in %s\n", r->cfg.run.out_dir);
    stop_children(r, "learner");
    if (learner_status < 0) learner_status = r->kids[0].status;
    int ok = WIFEXITED(learner_status) && WEXITSTATUS(learner_status) == 0;

    char path[PATH_MAX + 32], png[PATH_MAX + 32];
    pathf(path, sizeof path, "%s/metrics.jsonl", r->cfg.run.out_dir);
    pathf(png, sizeof png, "%s/curves.png", r->cfg.run.out_dir);
    if (access(path, R_OK) == 0) {
        if (plot_metrics(path, png, NULL, err, sizeof err) == 0)
            fprintf(stderr, "run: curves in %s\n", png);
        else
            fprintf(stderr, "rlhf run: plot: %s\n", err);
    }
    pathf(path, sizeof path, "%s/summary.json", r->cfg.run.out_dir);
    json_t *sum = json_load_file(path, 0, NULL);
    if (sum) {
        char *txt = json_dumps(sum, JSON_INDENT(2) | JSON_SORT_KEYS);
        printf("%s\n", txt);
        free(txt);
        json_decref(sum);
    } else if (ok) {
        fprintf(stderr, "rlhf run: the learner finished but wrote no %s\n", path);
        ok = 0;
    }
    if (!ok && !g_signals)
        fprintf(stderr, "rlhf run: the learner failed (%s %d); see %s/learner.log\n",
                WIFSIGNALED(learner_status) ? "signal" : "status",
                WIFSIGNALED(learner_status) ? WTERMSIG(learner_status) : WEXITSTATUS(learner_status), logs);
    return g_signals ? 130 : ok ? 0 : 1;
}
