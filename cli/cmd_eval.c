/* cmd_eval.c - `rlhf eval CKPT --task NAME`: held-out score of a checkpoint. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/checkpoint.h"
#include "common/evaluate.h"

static void usage(FILE *f) {
    fprintf(f, "usage: rlhf eval CHECKPOINT_DIR [--task add] [--split heldout|train] [--n N] [--max-new N]\n"
               "                 [--threads N] [--json]\n");
}

int cmd_eval(int argc, char **argv) {
    const char *task_name = "add", *split_name = "heldout";
    int n = 0, max_new = 16, threads = 0, json = 0;
    static struct option opts[] = {{"task", required_argument, 0, 'k'},    {"split", required_argument, 0, 's'},
                                   {"n", required_argument, 0, 'n'},       {"max-new", required_argument, 0, 'm'},
                                   {"threads", required_argument, 0, 't'}, {"json", no_argument, 0, 'j'},
                                   {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'k': task_name = optarg; break;
        case 's': split_name = optarg; break;
        case 'n': n = atoi(optarg); break;
        case 'm': max_new = atoi(optarg); break;
        case 't': threads = atoi(optarg); break;
        case 'j': json = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    int split = strcmp(split_name, "train") == 0 ? TASK_TRAIN : strcmp(split_name, "heldout") == 0 ? TASK_HELDOUT : -1;
    if (split < 0 || max_new <= 0) {
        fprintf(stderr, "rlhf eval: --split must be heldout or train, --max-new positive\n");
        return 2;
    }
    model_set_threads(threads);
    char err[512];
    model_t *m = NULL;
    if (checkpoint_load_model(argv[optind], &m, err, sizeof err) != RLHF_OK) {
        fprintf(stderr, "rlhf eval: %s\n", err);
        return 1;
    }
    task_t *t = task_new_err(task_name, NULL, err, sizeof err);
    if (!t) {
        fprintf(stderr, "rlhf eval: --task: %s\n", err);
        model_destroy(&m);
        return 1;
    }
    eval_result_t r;
    double t0 = cli_now();
    rlhf_err_t rc = eval_task(m, t, split, n, 64, max_new, &r);
    if (rc != RLHF_OK) {
        fprintf(stderr, "rlhf eval: %s\n", rlhf_strerror(rc));
    } else if (json) {
        printf("{\"task\":\"%s\",\"split\":\"%s\",\"n\":%d,\"score\":%.4f,\"mean_tokens\":%.2f,\"seconds\":%.2f}\n",
               task_name, split_name, r.n, r.score, r.mean_tokens, cli_now() - t0);
    } else {
        printf("%s %s: score %.4f over %d problems (mean %.1f tokens, %.1f s)\n", task_name, split_name, r.score, r.n,
               r.mean_tokens, cli_now() - t0);
    }
    task_destroy(&t);
    model_destroy(&m);
    return rc == RLHF_OK ? 0 : 1;
}
