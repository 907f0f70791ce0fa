/*
 * rlhf-learner - the hub of a distributed PPO run (learner/learner.h).
 *
 *   rlhf-learner [--config FILE] [--set key=value]... [--id NAME]
 *                [--steps N] [--out DIR] [--max-lag L] [--seed N]
 *
 * Exit codes: 0 the run finished (or drained on SIGTERM) and its files are
 * written; 1 a failure while running; 2 bad configuration or start-up error.
 */
#include <stdio.h>
#include <string.h>

#include "common/config.h"
#include "common/kernels.h"
#include "learner/learner.h"

int main(int argc, char **argv) {
    kernels_init_process(argv); // short OpenMP spin: the learner shares cores with workers
    const char *id = "learner";
    /* --id is not a config key: take it out before config_from_args */
    int w = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--id") == 0 && i + 1 < argc) {
            id = argv[++i];
        } else if (strncmp(argv[i], "--id=", 5) == 0) {
            id = argv[i] + 5;
        } else {
            argv[w++] = argv[i];
        }
    }
    argc = w;
    argv[argc] = NULL;
    static const config_flag_t flags[] = {
        {"--steps", "run.steps", NULL},
        {"--out", "run.out_dir", NULL},
        {"--max-lag", "run.max_lag", NULL},
        {"--seed", "run.seed", NULL},
        {NULL, NULL, NULL},
    };
    rlhf_config_t cfg;
    char err[512];
    if (config_from_args(&cfg, &argc, argv, flags, NULL, err, sizeof err) != RLHF_OK) {
        fprintf(stderr, "rlhf-learner: %s\n", err);
        return 2;
    }
    if (argc > 1) {
        fprintf(stderr, "rlhf-learner: unknown argument '%s' (see --config, --set key=value, --id NAME)\n", argv[1]);
        return 2;
    }
    learner_t *l = NULL;
    if (learner_new(&l, &cfg, id, err, sizeof err) != RLHF_OK) {
        fprintf(stderr, "[learner %s] %s\n", id, err);
        return 2;
    }
    if (learner_catch_signals(l) != RLHF_OK) {
        fprintf(stderr, "[learner %s] cannot install signal handlers\n", id);
        learner_destroy(&l);
        return 2;
    }
    rlhf_err_t e = learner_run(l);
    learner_destroy(&l);
    return e == RLHF_OK ? 0 : 1;
}
