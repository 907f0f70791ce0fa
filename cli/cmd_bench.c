/*
 * cmd_bench.c - `rlhf bench model`: training and generation speed of a
 * preset, with the machine's own sgemm peak measured in the same run.
 *
 * train_mfu = tokens/s * (6*N + 12*L*T*C) / sgemm FLOP/s, with N the
 * non-embedding parameter count (the LM head counts, the embedding lookup
 * does not). gen_mfu_batch32 = tokens/s * (2*N + 4*L*C*avg_pos) / sgemm.
 * Batch-1 decoding is bound by memory, not FLOPs: it is compared with the
 * read bandwidth measured in the same run (all parameters once per token).
 */
#include <cblas.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/generate.h"
#include "common/kernels.h"
#include "common/model.h"
#include "common/optim.h"
#include "common/rng.h"
#include "common/tokenizer.h"

/* The machine's sgemm ceiling: the better of OpenBLAS's own threading and
 * our per-thread split (matmul_forward), on a 1024^3 product. */
static double sgemm_peak_gflops(int threads) {
    int n = 1024;
    float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n), *c = malloc(sizeof(float) * n * n);
    for (int i = 0; i < n * n; i++) a[i] = (float)(i % 7) * 0.1f, b[i] = (float)(i % 5) * 0.1f;
    double best = 0;
    openblas_set_num_threads(threads);
    for (int rep = 0; rep < 20; rep++) {
        double t0 = cli_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double dt = cli_now() - t0;
        double g = 2.0 * n * n * n / dt / 1e9;
        best = g > best ? g : best;
    }
    model_set_threads(threads); /* back to our own threading mode */
    for (int rep = 0; rep < 20; rep++) {
        double t0 = cli_now();
        matmul_forward(c, a, b, n, n, n, 0);
        double dt = cli_now() - t0;
        double g = 2.0 * n * n * n / dt / 1e9;
        best = g > best ? g : best;
    }
    free(a), free(b), free(c);
    return best;
}

/* Memory read bandwidth (GB/s) with the kernels' threads: the ceiling of
 * batch-1 decoding, which must stream every weight once per token. */
static double mem_read_gbps(void) {
    size_t n = (size_t)32 << 20; /* 128 MiB, four times the last-level cache */
    float *buf = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) buf[i] = (float)(i & 7);
    double best = 0;
    volatile float sink = 0;
    for (int rep = 0; rep < 4; rep++) {
        double t0 = cli_now();
        float total = 0;
#ifdef RLHF_OPENMP
#pragma omp parallel for simd reduction(+ : total) schedule(static)
#endif
        for (size_t i = 0; i < n; i++) total += buf[i];
        double dt = cli_now() - t0;
        sink += total;
        double g = (double)n * sizeof(float) / dt / 1e9;
        best = g > best ? g : best;
    }
    (void)sink;
    free(buf);
    return best;
}

static void bench_usage(FILE *f) {
    fprintf(f, "usage: rlhf bench transport [--json] ...   (see rlhf bench transport --help)\n"
               "       rlhf bench pipeline [--json] ...    (see rlhf bench pipeline --help)\n"
               "       rlhf bench model [--preset P] [--threads N] [--batch B] [--seq T] [--steps S]\n"
               "                        [--gen-tokens G] [--no-train] [--json]\n");
}

typedef struct {
    double tokens_per_s, seconds;
} gen_result_t;

static gen_result_t bench_gen(model_t *m, int batch, int prompt_len, int new_tokens, int reps) {
    generator_t *g = generator_new(m, batch, prompt_len + new_tokens);
    gen_params_t p;
    gen_params_default(&p);
    p.max_new_tokens = new_tokens;
    p.n_stop = 0; /* always generate the full length */
    int *prompts = malloc(sizeof(int) * (size_t)batch * prompt_len);
    int *toks = malloc(sizeof(int) * (size_t)batch * new_tokens);
    float *lps = malloc(sizeof(float) * (size_t)batch * new_tokens);
    gen_request_t *reqs = calloc((size_t)batch, sizeof(*reqs));
    for (int i = 0; i < batch * prompt_len; i++) prompts[i] = 'a' + i % 26;
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        for (int b = 0; b < batch; b++)
            reqs[b] = (gen_request_t){.prompt = prompts + (size_t)b * prompt_len,
                                      .prompt_len = prompt_len,
                                      .seed = (uint64_t)(b + 1),
                                      .tokens = toks + (size_t)b * new_tokens,
                                      .logprobs = lps + (size_t)b * new_tokens};
        double t0 = cli_now();
        generator_run(g, reqs, batch, &p);
        double dt = cli_now() - t0;
        best = dt < best ? dt : best;
    }
    generator_destroy(&g);
    free(prompts), free(toks), free(lps), free(reqs);
    return (gen_result_t){.tokens_per_s = (double)batch * new_tokens / best, .seconds = best};
}

static int bench_model(int argc, char **argv) {
    const char *preset = "base";
    int threads = 2, B = 16, T = 0, steps = 3, gen_tokens = 128, json = 0, no_train = 0;
    static struct option opts[] = {{"preset", required_argument, 0, 'p'}, {"threads", required_argument, 0, 't'},
                                   {"batch", required_argument, 0, 'b'},  {"seq", required_argument, 0, 's'},
                                   {"steps", required_argument, 0, 'n'},  {"gen-tokens", required_argument, 0, 'g'},
                                   {"json", no_argument, 0, 'j'},         {"help", no_argument, 0, 'h'},
                                   {"no-train", no_argument, 0, 'N'},     {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'p': preset = optarg; break;
        case 't': threads = atoi(optarg); break;
        case 'b': B = atoi(optarg); break;
        case 's': T = atoi(optarg); break;
        case 'n': steps = atoi(optarg); break;
        case 'g': gen_tokens = atoi(optarg); break;
        case 'j': json = 1; break;
        case 'N': no_train = 1; break;
        case 'h': bench_usage(stdout); return 0;
        default: bench_usage(stderr); return 2;
        }
    }
    model_config_t cfg;
    if (model_config_preset(&cfg, preset) != RLHF_OK) {
        fprintf(stderr, "rlhf bench: unknown --preset '%s' (use tiny, small, base or stories15m)\n", preset);
        return 2;
    }
    if (T <= 0 || T > cfg.max_seq_len) T = cfg.max_seq_len;
    if (B <= 0 || steps <= 0 || gen_tokens <= 0 || threads <= 0) {
        fprintf(stderr, "rlhf bench: --batch, --steps, --gen-tokens and --threads must be positive\n");
        return 2;
    }
    model_set_threads(threads);
    double peak = sgemm_peak_gflops(threads);
    double membw = mem_read_gbps();
    model_t *m = model_new(&cfg);
    model_init_weights(m, 1);
    size_t nonemb = model_config_n_params_nonemb(&cfg);
    double C = cfg.dim, L = cfg.n_layers;

    /* training: forward + backward + AdamW on (B, T) */
    double train_tps = 0, train_mfu = 0, best = 0, fwd_best = 0;
    size_t state_bytes = 4 * m->n_params * sizeof(float);
    if (!no_train) {
        model_alloc_grads(m);
        model_acts_t *a = model_acts_new(&cfg, B, T);
        adamw_config_t oc;
        adamw_config_default(&oc);
        adamw_t *opt = adamw_new(&oc, m->n_params);
        int *tok = malloc(sizeof(int) * (size_t)B * T), *tgt = malloc(sizeof(int) * (size_t)B * T);
        rng_t r;
        rng_init(&r, 1);
        for (int i = 0; i < B * T; i++) tok[i] = (int)rng_below(&r, 256), tgt[i] = (int)rng_below(&r, 256);
        best = 1e30, fwd_best = 1e30;
        for (int s = 0; s < steps + 1; s++) {
            double t0 = cli_now();
            model_zero_grads(m);
            model_forward(m, a, tok, tgt, B, T, 1.0f);
            double t1 = cli_now();
            float *dl = malloc(sizeof(float) * (size_t)B * T);
            for (int i = 0; i < B * T; i++) dl[i] = -1.0f / (float)(B * T);
            model_backward(m, a, dl, NULL, NULL);
            free(dl);
            adamw_update(opt, m->params_mem, m->grads_mem, NULL, NULL, NULL);
            double dt = cli_now() - t0;
            if (s > 0 || steps == 1) { /* the first step warms up pages */
                best = dt < best ? dt : best;
                fwd_best = (t1 - t0) < fwd_best ? (t1 - t0) : fwd_best;
            }
            if (!json) fprintf(stderr, "\rtrain step %d/%d: %.3f s", s, steps, dt);
        }
        if (!json) fprintf(stderr, "\n");
        train_tps = (double)B * T / best;
        double flops_tok = 6.0 * (double)nonemb + 12.0 * L * T * C;
        train_mfu = train_tps * flops_tok / (peak * 1e9);
        state_bytes += model_acts_bytes(a);
        model_acts_destroy(&a);
        adamw_destroy(&opt);
        free(tok), free(tgt);
        free(m->grads_mem);
        m->grads_mem = NULL;
    }

    /* generation: 16-token prompt, gen_tokens new tokens */
    int plen = 16;
    if (plen + gen_tokens > cfg.max_seq_len) gen_tokens = cfg.max_seq_len - plen;
    gen_result_t g1 = bench_gen(m, 1, plen, gen_tokens, 3);
    gen_result_t g32 = bench_gen(m, 32, plen, gen_tokens, 2);
    double avg_pos = plen + gen_tokens / 2.0;
    double gen_flops_tok = 2.0 * (double)nonemb + 4.0 * L * C * avg_pos;
    double gen_mfu32;
    /* the ceiling again at the end: a neighbour slowing one measurement must
     * not inflate the ratios */
    double peak_end = sgemm_peak_gflops(threads);
    if (peak_end > peak) {
        train_mfu *= peak / peak_end;
        peak = peak_end;
    }
    double rss = cli_peak_rss_mb();
    /* batch-1 ceiling: every parameter read once per token */
    gen_mfu32 = g32.tokens_per_s * gen_flops_tok / (peak * 1e9);
    double b1_ceiling = membw * 1e9 / ((double)m->n_params * sizeof(float));
    double budget_mb = (double)state_bytes / 1048576.0;

    if (json) {
        printf("{\"preset\":\"%s\",\"threads\":%d,\"params\":%zu,\"batch\":%d,\"seq\":%d,"
               "\"sgemm_gflops\":%.1f,\"train_tokens_per_s\":%.1f,\"train_step_s\":%.4f,"
               "\"train_forward_s\":%.4f,\"train_mfu\":%.3f,"
               "\"mem_read_gb_per_s\":%.1f,\"gen_tokens_per_s_batch1\":%.1f,\"gen_batch1_vs_membw\":%.3f,"
               "\"gen_tokens_per_s_batch32\":%.1f,\"gen_mfu_batch32\":%.3f,"
               "\"peak_rss_mb\":%.1f,\"state_mb\":%.1f,\"rss_over_state\":%.2f}\n",
               preset, threads, m->n_params, B, T, peak, train_tps, best, fwd_best, train_mfu, membw, g1.tokens_per_s,
               g1.tokens_per_s / b1_ceiling, g32.tokens_per_s, gen_mfu32, rss, budget_mb, rss / budget_mb);
    } else {
        printf("preset %s, %zu params, %d threads\n", preset, m->n_params, threads);
        printf("sgemm peak            %8.1f GFLOP/s\n", peak);
        printf("train (B=%d, T=%d)    %8.1f tokens/s  step %.3f s (forward %.3f s)  MFU %.3f\n", B, T, train_tps, best,
               fwd_best, train_mfu);
        printf("generate batch 1      %8.1f tokens/s  (memory %.1f GB/s allows %.0f: ratio %.2f)\n", g1.tokens_per_s,
               membw, b1_ceiling, g1.tokens_per_s / b1_ceiling);
        printf("generate batch 32     %8.1f tokens/s  MFU %.3f\n", g32.tokens_per_s, gen_mfu32);
        printf("peak RSS              %8.1f MiB (params+grads+adam+acts %.1f MiB, ratio %.2f)\n", rss, budget_mb,
               rss / budget_mb);
    }
    model_destroy(&m);
    return 0;
}

int cmd_bench(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0) {
        bench_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "model") == 0) return bench_model(argc - 1, argv + 1);
    if (strcmp(argv[1], "transport") == 0) return bench_transport(argc - 1, argv + 1);
    if (strcmp(argv[1], "pipeline") == 0) return bench_pipeline(argc - 1, argv + 1);
    fprintf(stderr, "rlhf bench: unknown benchmark '%s' (available: model, transport, pipeline)\n", argv[1]);
    return 2;
}
