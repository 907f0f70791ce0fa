/*
 * main.c - rlhf-actor: generate rollouts for a learner.
 *
 *   rlhf-actor [--config FILE] [--set key=value]... [--learner HOST] [--id NAME]
 *
 * Configuration: defaults < FILE < RLHF_* environment < command line; a bad
 * one prints one line naming the key and exits 2. Runs until SIGTERM/SIGINT
 * (graceful drain, exit 0; a second signal exits at once).
 */
#include <stdio.h>
#include <string.h>

#include "actor/actor.h"
#include "common/config.h"
#include "common/kernels.h"

static int usage(const char *why) {
    fprintf(stderr,
            "rlhf-actor: %s\nusage: rlhf-actor [--config FILE] [--set key=value]... [--learner HOST] "
            "[--id NAME]\n",
            why);
    return 2;
}

int main(int argc, char **argv) {
    kernels_init_process(argv); // short OpenMP spin: actors share cores with other processes
    static const config_flag_t flags[] = {{"--learner", "actor.learner", NULL}, {NULL, NULL, NULL}};
    rlhf_config_t cfg;
    char err[512];
    if (config_from_args(&cfg, &argc, argv, flags, NULL, err, sizeof err) != RLHF_OK) {
        fprintf(stderr, "rlhf-actor: %s\n", err);
        return 2;
    }
    const char *id = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--id") == 0 && i + 1 < argc) {
            id = argv[++i];
        } else if (strncmp(argv[i], "--id=", 5) == 0) {
            id = argv[i] + 5;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage("generates rollouts for the learner at actor.learner");
            config_print_help(stderr);
            return 0;
        } else {
            char why[300];
            snprintf(why, sizeof why, "unknown argument '%s'", argv[i]);
            return usage(why);
        }
    }
    actor_t *a = NULL;
    rlhf_err_t rc = actor_new(&a, &cfg, id, err, sizeof err);
    if (rc != RLHF_OK) {
        fprintf(stderr, "rlhf-actor: %s\n", err);
        return rc == RLHF_EINVAL || rc == RLHF_ERANGE || rc == RLHF_EFORMAT || rc == RLHF_ENOTFOUND ||
                       rc == RLHF_EMISMATCH || rc == RLHF_EUNSUPPORTED
                   ? 2
                   : 1;
    }
    if (actor_catch_signals(a) != RLHF_OK) {
        fprintf(stderr, "rlhf-actor: cannot catch signals\n");
        actor_destroy(&a);
        return 1;
    }
    rc = actor_run(a);
    actor_destroy(&a);
    return rc == RLHF_OK ? 0 : 1;
}
