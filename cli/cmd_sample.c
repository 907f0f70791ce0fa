/* cmd_sample.c - `rlhf sample CKPT --prompt TEXT`: generate completions. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/checkpoint.h"
#include "common/generate.h"
#include "common/tokenizer.h"

static void usage(FILE *f) {
    fprintf(f, "usage: rlhf sample CHECKPOINT_DIR --prompt TEXT [--chat] [-n N] [--max-new N]\n"
               "                   [--temperature T] [--top-k K] [--top-p P] [--seed S] [--threads N]\n"
               "  --chat wraps the prompt as <|user|> TEXT <|end|> <|assistant|>; without it the prompt is\n"
               "  BOS + TEXT (special-token strings such as <|user|> in TEXT are recognised).\n");
}

int cmd_sample(int argc, char **argv) {
    const char *prompt = NULL;
    int n = 1, chat = 0, threads = 0;
    unsigned long long seed = 1;
    gen_params_t gp;
    gen_params_default(&gp);
    static struct option opts[] = {{"prompt", required_argument, 0, 'p'},
                                   {"chat", no_argument, 0, 'c'},
                                   {"n", required_argument, 0, 'n'},
                                   {"max-new", required_argument, 0, 'm'},
                                   {"temperature", required_argument, 0, 'T'},
                                   {"top-k", required_argument, 0, 'k'},
                                   {"top-p", required_argument, 0, 'P'},
                                   {"seed", required_argument, 0, 's'},
                                   {"threads", required_argument, 0, 't'},
                                   {"help", no_argument, 0, 'h'},
                                   {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "n:", opts, NULL)) != -1) {
        switch (c) {
        case 'p': prompt = optarg; break;
        case 'c': chat = 1; break;
        case 'n': n = atoi(optarg); break;
        case 'm': gp.max_new_tokens = atoi(optarg); break;
        case 'T': gp.sampler.temperature = (float)atof(optarg); break;
        case 'k': gp.sampler.top_k = atoi(optarg); break;
        case 'P': gp.sampler.top_p = (float)atof(optarg); break;
        case 's': seed = strtoull(optarg, NULL, 10); break;
        case 't': threads = atoi(optarg); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind >= argc || !prompt) {
        usage(stderr);
        return 2;
    }
    if (n <= 0 || n > 1024 || gp.max_new_tokens <= 0) {
        fprintf(stderr, "rlhf sample: -n must be in 1..1024 and --max-new positive\n");
        return 2;
    }
    model_set_threads(threads);
    char err[512];
    model_t *m = NULL;
    if (checkpoint_load_model(argv[optind], &m, err, sizeof err) != RLHF_OK) {
        fprintf(stderr, "rlhf sample: %s\n", err);
        return 1;
    }
    int ctx = m->cfg.max_seq_len;
    int *ptoks = malloc(sizeof(int) * (size_t)ctx);
    int plen;
    if (chat) {
        plen = tok_chat_prompt(prompt, ptoks, ctx);
    } else {
        ptoks[0] = TOK_BOS;
        plen = tok_encode_special(prompt, strlen(prompt), ptoks + 1, ctx - 1);
        plen = plen < 0 ? -1 : plen + 1;
    }
    if (plen < 0 || plen + gp.max_new_tokens > ctx) {
        fprintf(stderr, "rlhf sample: prompt (%d tokens) + --max-new %d exceeds the model context %d\n",
                plen < 0 ? (int)strlen(prompt) : plen, gp.max_new_tokens, ctx);
        free(ptoks);
        model_destroy(&m);
        return 2;
    }
    if (chat) gp.stop_tokens[gp.n_stop++] = TOK_END;
    generator_t *g = generator_new(m, n < 32 ? n : 32, ctx);
    gen_request_t *reqs = calloc((size_t)n, sizeof(*reqs));
    int *toks = malloc(sizeof(int) * (size_t)n * gp.max_new_tokens);
    float *lps = malloc(sizeof(float) * (size_t)n * gp.max_new_tokens);
    for (int i = 0; i < n; i++)
        reqs[i] = (gen_request_t){.prompt = ptoks,
                                  .prompt_len = plen,
                                  .seed = seed + (unsigned long long)i,
                                  .tokens = toks + (size_t)i * gp.max_new_tokens,
                                  .logprobs = lps + (size_t)i * gp.max_new_tokens};
    double t0 = cli_now();
    rlhf_err_t rc = generator_run(g, reqs, n, &gp);
    double dt = cli_now() - t0;
    int64_t ng = 0;
    for (int i = 0; i < n && rc == RLHF_OK; i++) {
        char text[8192];
        tok_decode(reqs[i].tokens, reqs[i].n_tokens, text, sizeof text);
        double lp = 0;
        for (int t = 0; t < reqs[i].n_tokens; t++) lp += reqs[i].logprobs[t];
        printf("[%d] %s%s\n", i, prompt, text);
        fprintf(stderr, "    (%d tokens, %s, log-prob %.3f)\n", reqs[i].n_tokens,
                reqs[i].finish == GEN_FINISH_STOP ? "stop" : "length", lp);
        ng += reqs[i].n_tokens;
    }
    if (rc == RLHF_OK)
        fprintf(stderr, "%lld tokens in %.2f s (%.0f tokens/s)\n", (long long)ng, dt, ng / dt);
    else
        fprintf(stderr, "rlhf sample: %s\n", rlhf_strerror(rc));
    generator_destroy(&g);
    free(reqs), free(toks), free(lps), free(ptoks);
    model_destroy(&m);
    return rc == RLHF_OK ? 0 : 1;
}
