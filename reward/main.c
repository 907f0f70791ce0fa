/*
 * main.c - rlhf-reward: a reward worker process (reward/reward.h).
 *
 *   rlhf-reward [--config FILE] [--set key=value]... [--learner HOST] [--id NAME]
 *
 * A bad command line or configuration prints one line and exits 2; a start-up
 * failure (checkpoint, address, port) prints one line and exits 1; SIGTERM
 * drains and exits 0.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/config.h"
#include "common/kernels.h"
#include "proto/proto.h"
#include "reward/reward.h"

static void usage(FILE *f) {
    fprintf(f, "usage: rlhf-reward [--config FILE] [--set key=value]... [--learner HOST] [--id NAME]\n"
               "  --learner HOST   learner host (reward.learner); ports from learner.score_port, learner.scored_port\n"
               "  --id NAME        sender id (default reward-HOSTNAME-PID)\n"
               "  --help-config    every configuration key\n");
}

/* reward-<host>-<pid>, cut to the protocol's limit, without bytes it refuses. */
static void default_id(char *id, size_t len) {
    char host[256] = "host";
    if (gethostname(host, sizeof host - 1) != 0) strcpy(host, "host");
    host[sizeof host - 1] = '\0';
    snprintf(id, len, "reward-%.32s-%ld", host, (long)getpid());
    for (char *p = id; *p; p++)
        if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7E) *p = '_';
}

int main(int argc, char **argv) {
    static const config_flag_t flags[] = {{"--learner", "reward.learner", NULL}, {NULL, NULL, NULL}};
    kernels_init_process(argv); // short OpenMP spin: workers share cores with other processes
    rlhf_config_t cfg;
    char err[512];
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) break;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(argv[i], "--help-config") == 0) {
            config_print_help(stdout);
            return 0;
        }
    }
    if (config_from_args(&cfg, &argc, argv, flags, NULL, err, sizeof err) != RLHF_OK) {
        fprintf(stderr, "rlhf-reward: %s\n", err);
        return 2;
    }
    char id[PROTO_MAX_ID + 1];
    default_id(id, sizeof id);
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        if (strcmp(argv[i], "--id") == 0 && i + 1 < argc)
            v = argv[++i];
        else if (strncmp(argv[i], "--id=", 5) == 0)
            v = argv[i] + 5;
        if (!v) {
            fprintf(stderr, "rlhf-reward: unknown argument '%s' (see --help)\n", argv[i]);
            return 2;
        }
        if (strlen(v) > PROTO_MAX_ID) {
            fprintf(stderr, "rlhf-reward: --id must be 1..%d printable ASCII characters without space\n", PROTO_MAX_ID);
            return 2;
        }
        strcpy(id, v);
    }

    reward_t *r = NULL;
    rlhf_err_t rc = reward_new(&cfg, id, &r, err, sizeof err);
    if (rc != RLHF_OK) {
        fprintf(stderr, "[reward %s] cannot start: %s\n", id, err);
        return rc == RLHF_EINVAL || rc == RLHF_EUNSUPPORTED || rc == RLHF_ENOTFOUND ? 2 : 1;
    }
    rc = reward_run(r);
    reward_destroy(&r);
    return rc == RLHF_OK ? 0 : 1;
}
