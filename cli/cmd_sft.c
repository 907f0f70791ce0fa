/*
 * cmd_sft.c - `rlhf sft`: supervised fine-tuning on a jsonl file or a
 * built-in task, with a live progress line, periodic held-out evaluation,
 * checkpoints with exact resume, and metrics.jsonl.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/checkpoint.h"
#include "common/evaluate.h"
#include "common/sft.h"

static volatile sig_atomic_t g_stop = 0;
static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static void usage(FILE *f) {
    fprintf(f, "usage: rlhf sft (--data FILE.jsonl | --task NAME) [options]\n"
               "\n"
               "  --data FILE       jsonl with \"prompt\" and \"completion\" strings per line\n"
               "  --task NAME       built-in task (add); held-out score is reported\n"
               "  --preset P        new model: tiny, small, base (default small)\n"
               "  --init DIR        start from a checkpoint instead of a new model\n"
               "  --resume DIR      continue a run from DIR/checkpoint (exact)\n"
               "  --out DIR         run folder (default runs/sft): checkpoint/, final/, metrics.jsonl\n"
               "  --steps N         optimizer steps (default 1000)\n"
               "  --batch B         sequences per step (default 32)\n"
               "  --lr X            peak learning rate (default 1e-3), warm-up then cosine\n"
               "  --warmup N        warm-up steps (default 50)\n"
               "  --seed N          data order and init seed (default 1)\n"
               "  --save-every N    checkpoint interval in steps (default 500)\n"
               "  --eval-every N    held-out eval interval for --task (default 250, 0 = end only)\n"
               "  --threads N       threads (default: all cores)\n"
               "  --quiet           no progress line\n");
}

int cmd_sft(int argc, char **argv) {
    const char *data = NULL, *task_name = NULL, *preset = "small", *init = NULL, *resume = NULL;
    const char *out = "runs/sft";
    sft_config_t sc;
    sft_config_default(&sc);
    int save_every = 500, eval_every = 250, threads = 0, quiet = 0, warmup = -1;
    static struct option opts[] = {{"data", required_argument, 0, 'd'},
                                   {"task", required_argument, 0, 'k'},
                                   {"preset", required_argument, 0, 'p'},
                                   {"init", required_argument, 0, 'i'},
                                   {"resume", required_argument, 0, 'r'},
                                   {"out", required_argument, 0, 'o'},
                                   {"steps", required_argument, 0, 'n'},
                                   {"batch", required_argument, 0, 'b'},
                                   {"lr", required_argument, 0, 'l'},
                                   {"warmup", required_argument, 0, 'w'},
                                   {"seed", required_argument, 0, 's'},
                                   {"save-every", required_argument, 0, 'S'},
                                   {"eval-every", required_argument, 0, 'E'},
                                   {"threads", required_argument, 0, 't'},
                                   {"quiet", no_argument, 0, 'q'},
                                   {"help", no_argument, 0, 'h'},
                                   {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'd': data = optarg; break;
        case 'k': task_name = optarg; break;
        case 'p': preset = optarg; break;
        case 'i': init = optarg; break;
        case 'r': resume = optarg; break;
        case 'o': out = optarg; break;
        case 'n': sc.steps = atoi(optarg); break;
        case 'b': sc.batch = atoi(optarg); break;
        case 'l': sc.opt.lr = (float)atof(optarg); break;
        case 'w': warmup = atoi(optarg); break;
        case 's': sc.seed = strtoull(optarg, NULL, 10); break;
        case 'S': save_every = atoi(optarg); break;
        case 'E': eval_every = atoi(optarg); break;
        case 't': threads = atoi(optarg); break;
        case 'q': quiet = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!data == !task_name) {
        fprintf(stderr, "rlhf sft: give exactly one of --data FILE.jsonl or --task NAME\n");
        return 2;
    }
    if (sc.steps <= 0 || sc.batch <= 0 || !(sc.opt.lr > 0) || save_every < 0 || eval_every < 0) {
        fprintf(stderr, "rlhf sft: --steps, --batch, --lr must be positive; --save-every, --eval-every >= 0\n");
        return 2;
    }
    sc.opt.total_steps = sc.steps;
    if (warmup >= 0) sc.opt.warmup_steps = warmup;
    if (sc.opt.warmup_steps > sc.steps / 2) sc.opt.warmup_steps = sc.steps / 10;
    model_set_threads(threads);

    char err[512];
    char path[4096];
    model_t *m = NULL;
    task_t *task = NULL;
    sft_data_t d = {0};
    sft_t *s = NULL;
    FILE *metrics = NULL;
    int rc = 1;
    const char *from = resume ? resume : init;
    if (from) {
        snprintf(path, sizeof path, "%s%s", from, resume ? "/checkpoint" : "");
        if (checkpoint_load_model(path, &m, err, sizeof err) != RLHF_OK) {
            fprintf(stderr, "rlhf sft: %s\n", err);
            goto done;
        }
    } else {
        model_config_t cfg;
        if (model_config_preset(&cfg, preset) != RLHF_OK) {
            fprintf(stderr, "rlhf sft: unknown --preset '%s' (use tiny, small or base)\n", preset);
            goto done;
        }
        m = model_new(&cfg);
        model_init_weights(m, sc.seed);
    }
    if (task_name) {
        task = task_new_err(task_name, NULL, err, sizeof err);
        if (!task) {
            fprintf(stderr, "rlhf sft: --task: %s\n", err);
            goto done;
        }
        if (sft_data_from_task(&d, task, TASK_TRAIN, m->cfg.max_seq_len, err, sizeof err) != RLHF_OK) {
            fprintf(stderr, "rlhf sft: %s\n", err);
            goto done;
        }
    } else if (sft_data_load_jsonl(&d, data, m->cfg.max_seq_len, err, sizeof err) != RLHF_OK) {
        fprintf(stderr, "rlhf sft: %s\n", err);
        goto done;
    }
    s = sft_new(m, &d, &sc);
    if (!s) {
        fprintf(stderr, "rlhf sft: out of memory building the trainer\n");
        goto done;
    }
    if (resume && sft_resume(s, path, err, sizeof err) != RLHF_OK) {
        fprintf(stderr, "rlhf sft: %s\n", err);
        goto done;
    }
    if (checkpoint_mkdirs(out, err, sizeof err) != RLHF_OK) {
        fprintf(stderr, "rlhf sft: --out: %s\n", err);
        goto done;
    }
    snprintf(path, sizeof path, "%s/metrics.jsonl", out);
    metrics = fopen(path, resume ? "a" : "w");
    if (!metrics) {
        fprintf(stderr, "rlhf sft: cannot write %s\n", path);
        goto done;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    fprintf(stderr, "sft: %d examples, model %zu params, batch %d, %d steps, %d threads -> %s\n", d.n, m->n_params,
            sc.batch, sc.steps, model_get_threads(), out);
    int tty = isatty(STDERR_FILENO) && !quiet;
    double t0 = cli_now(), tok_total = 0;
    float ema = 0;
    eval_result_t ev = {0};
    int have_eval = 0;
    while (sft_steps_done(s) < sc.steps && !g_stop) {
        int nt;
        float gn, lr;
        float loss = sft_step(s, &nt, &gn, &lr);
        int64_t step = sft_steps_done(s);
        tok_total += nt;
        ema = step == 1 ? loss : 0.9f * ema + 0.1f * loss;
        double el = cli_now() - t0;
        int do_eval = task && ((eval_every > 0 && step % eval_every == 0) || step == sc.steps);
        if (do_eval) {
            eval_task(m, task, TASK_HELDOUT, 200, 64, 16, &ev);
            have_eval = 1;
        }
        fprintf(metrics, "{\"step\":%lld,\"loss\":%.6f,\"lr\":%.6g,\"grad_norm\":%.4f,\"tokens\":%d,\"elapsed_s\":%.3f",
                (long long)step, loss, lr, gn, nt, el);
        if (do_eval) fprintf(metrics, ",\"heldout_score\":%.4f", ev.score);
        fprintf(metrics, "}\n");
        if (tty || (!quiet && (step % 50 == 0 || step == sc.steps))) {
            double done_frac = (double)step / sc.steps;
            double eta = el / (step - (resume ? 0 : 0)) * (sc.steps - step);
            fprintf(stderr, "%sstep %lld/%d  loss %.4f  lr %.2e  %.0f tok/s  elapsed %.0fs  ETA %.0fs", tty ? "\r" : "",
                    (long long)step, sc.steps, ema, lr, tok_total / el, el, eta);
            if (have_eval) fprintf(stderr, "  heldout %.3f", ev.score);
            fprintf(stderr, "%s", tty ? "\033[K" : "\n");
            (void)done_frac;
        }
        if (save_every > 0 && step % save_every == 0) {
            snprintf(path, sizeof path, "%s/checkpoint", out);
            if (sft_save(s, path, err, sizeof err) != RLHF_OK) fprintf(stderr, "\nrlhf sft: save failed: %s\n", err);
        }
    }
    if (tty) fprintf(stderr, "\n");
    fflush(metrics);
    snprintf(path, sizeof path, "%s/checkpoint", out);
    if (sft_save(s, path, err, sizeof err) != RLHF_OK) {
        fprintf(stderr, "rlhf sft: save failed: %s\n", err);
        goto done;
    }
    snprintf(path, sizeof path, "%s/final", out);
    if (checkpoint_save_model(m, path, err, sizeof err) != RLHF_OK) {
        fprintf(stderr, "rlhf sft: save failed: %s\n", err);
        goto done;
    }
    fprintf(stderr, "sft: %s after %lld steps; final model in %s\n", g_stop ? "stopped" : "done",
            (long long)sft_steps_done(s), path);
    if (task && have_eval) printf("heldout_score %.4f\n", ev.score);
    rc = 0;
done:
    if (metrics) fclose(metrics);
    sft_destroy(&s);
    sft_data_fini(&d);
    task_destroy(&task);
    model_destroy(&m);
    return rc;
}
