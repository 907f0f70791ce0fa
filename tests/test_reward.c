/*
 * test_reward.c - the reward worker: its scorer in-process, and the real
 * build/rlhf-reward program against a FAKE LEARNER run by this test (a
 * ROUTER bound on a free port for `score`, a PULL for `scored`, tiny model).
 *
 *   scorer_task   the built-in verifier: right / wrong / EOS-only / garbage
 *                 completions, the held-out split, ids naming no problem.
 *   program       one child process, one conversation:
 *                 - hello {role reward, caps ref_logprobs, scorer:add} and
 *                   score_request {credit 2} arrive;
 *                 - a score_work of add-task samples gets the exact rewards
 *                   (1, 0, 0, 0, held-out 1, held-out vs train answer 0,
 *                   out-of-range index, unknown split and a too-long sample
 *                   -> 0 with "invalid": 1), and ref_logprobs equal to
 *                   model_forward on the same initial weights at the job's
 *                   temperature (max diff printed, < 1e-5), one per token;
 *                 - want_ref false -> no ref_logprobs;
 *                 - credit: two jobs fill the credit, a third is dropped
 *                   (never scored, counted over_credit); each scored is
 *                   followed by score_request {credit 1}; heartbeats never
 *                   report more than 2 jobs in flight;
 *                 - malformed messages (not msgpack, a ticket, a bad token,
 *                   two frames) are dropped and counted by reason while the
 *                   worker keeps serving;
 *                 - /metrics and /status report the counts;
 *                 - SIGTERM during a job -> its scored, then bye, exit 0.
 *   bad_config    one error line and exit 2.
 *   learner_restart  a new learner on the same port, silent at first: after
 *                 10 s the worker says hello again with its whole credit and
 *                 serves the new learner; a task it does not score gets
 *                 reward 0 + "invalid"; stats carry its counters.
 * The child is killed whatever happens (teardown, and PDEATHSIG).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "common/config.h"
#include "common/model.h"
#include "common/task.h"
#include "common/tokenizer.h"
#include "proto/proto.h"
#include "reward/scorer.h"

#define CREDIT 2
#define TEMP   0.7f

static pid_t g_child = -1; // the worker under test, killed by teardown

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int kill_child(void **state) {
    (void)state;
    if (g_child > 0) {
        kill(g_child, SIGKILL);
        waitpid(g_child, NULL, 0);
        g_child = -1;
    }
    return 0;
}

static pid_t spawn(char *const argv[]) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

/* wait for pid up to timeout_s; returns the status, or -1 on timeout */
static int wait_exit(pid_t pid, double timeout_s) {
    double t0 = now_s();
    int status;
    while (now_s() - t0 < timeout_s) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) return status;
        usleep(10000);
    }
    return -1;
}

static int free_tcp_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* GET path from 127.0.0.1:port; returns the malloc'd body or NULL. */
static char *http_get(int port, const char *path) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0) close(fd);
        return NULL;
    }
    char req[256];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return NULL;
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    ssize_t k;
    while ((k = read(fd, buf + len, cap - len - 1)) > 0) {
        len += (size_t)k;
        if (len + 1 >= cap) buf = realloc(buf, cap *= 2);
    }
    close(fd);
    buf[len] = '\0';
    char *body = strstr(buf, "\r\n\r\n");
    char *out = body ? strdup(body + 4) : NULL;
    free(buf);
    return out;
}

/* value of the series line starting with `series ` in Prometheus text; NAN if absent */
static double metric(const char *text, const char *series) {
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, series, n) == 0 && p[n] == ' ') return strtod(p + n + 1, NULL);
    return NAN;
}

/* ---- the fake learner ---- */

typedef struct {
    void *ctx, *router, *pull;
    int score_port, scored_port;
    char route[256]; // the worker's routing id on the ROUTER
    size_t route_len;
    proto_msg_t m; // last decoded message
    proto_enc_t enc;
    uint64_t seq;
    int max_in_flight; // largest heartbeat in_flight seen
    int n_heartbeats;
    int credit_granted; // sum of score_request credits
    int n_stats;        // stats messages seen
    int want_stats;     // 1: fake_recv_score returns stats too (else skips them)
} fake_t;

static void *bind_any(void *ctx, int type, int *port) {
    void *s = zmq_socket(ctx, type);
    assert_non_null(s);
    int linger = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    assert_int_equal(proto_zmq_limit(s), RLHF_OK);
    assert_int_equal(zmq_bind(s, "tcp://127.0.0.1:*"), 0);
    char ep[128];
    size_t len = sizeof ep;
    assert_int_equal(zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, ep, &len), 0);
    *port = atoi(strrchr(ep, ':') + 1);
    return s;
}

static void fake_init(fake_t *f) {
    memset(f, 0, sizeof *f);
    f->ctx = zmq_ctx_new();
    f->router = bind_any(f->ctx, ZMQ_ROUTER, &f->score_port);
    f->pull = bind_any(f->ctx, ZMQ_PULL, &f->scored_port);
    proto_msg_init(&f->m);
    proto_enc_init(&f->enc);
}

static void fake_fini(fake_t *f) {
    zmq_close(f->router);
    zmq_close(f->pull);
    zmq_ctx_term(f->ctx);
    proto_msg_fini(&f->m);
    proto_enc_fini(&f->enc);
}

/* Receive one protocol message on score (routing frame stripped) within
 * timeout_ms, decoded into f->m. Heartbeats are tallied and answered, never
 * returned; score_request credits are summed. Returns the type, 0 on
 * timeout. A message that does not decode fails the test. */
static int fake_recv_score(fake_t *f, int timeout_ms) {
    double t_end = now_s() + timeout_ms / 1e3;
    for (;;) {
        int left = (int)((t_end - now_s()) * 1e3);
        if (left < 0) return 0;
        zmq_pollitem_t it = {f->router, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, left) <= 0) continue;
        zmq_msg_t id, body;
        zmq_msg_init(&id), zmq_msg_init(&body);
        assert_true(zmq_msg_recv(&id, f->router, 0) >= 0);
        assert_true(zmq_msg_more(&id));
        assert_true(zmq_msg_recv(&body, f->router, 0) >= 0);
        assert_false(zmq_msg_more(&body));
        f->route_len = zmq_msg_size(&id);
        memcpy(f->route, zmq_msg_data(&id), f->route_len);
        proto_decode_opts_t o = {.accept = PROTO_ACCEPT_LEARNER_SCORE};
        proto_reject_t why;
        char err[256];
        rlhf_err_t rc = proto_decode(&f->m, zmq_msg_data(&body), zmq_msg_size(&body), &o, &why, err, sizeof err);
        zmq_msg_close(&id), zmq_msg_close(&body);
        if (rc != RLHF_OK) fail_msg("worker sent a bad message: %s", err);
        assert_string_equal(f->m.sender, "rtest");
        if (f->m.type == PROTO_HEARTBEAT) {
            f->n_heartbeats++;
            if ((int)f->m.heartbeat.in_flight > f->max_in_flight) f->max_in_flight = (int)f->m.heartbeat.in_flight;
            continue;
        }
        if (f->m.type == PROTO_STATS) {
            f->n_stats++;
            if (!f->want_stats) continue;
        }
        if (f->m.type == PROTO_SCORE_REQUEST) f->credit_granted += (int)f->m.score_request.credit;
        return (int)f->m.type;
    }
}

/* Receive one scored message within timeout_ms into *m. 1 if one came. */
static int fake_recv_scored(fake_t *f, proto_msg_t *m, int timeout_ms) {
    zmq_pollitem_t it = {f->pull, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, timeout_ms) <= 0) return 0;
    zmq_msg_t body;
    zmq_msg_init(&body);
    assert_true(zmq_msg_recv(&body, f->pull, 0) >= 0);
    proto_decode_opts_t o = {.accept = PROTO_ACCEPT_LEARNER_SCORED};
    proto_reject_t why;
    char err[256];
    rlhf_err_t rc = proto_decode(m, zmq_msg_data(&body), zmq_msg_size(&body), &o, &why, err, sizeof err);
    zmq_msg_close(&body);
    if (rc != RLHF_OK) fail_msg("worker sent a bad scored message: %s", err);
    return 1;
}

/* Send raw frames to the worker. */
static void fake_send_raw(fake_t *f, const void *const *frames, const size_t *lens, int n) {
    assert_int_equal(zmq_send(f->router, f->route, f->route_len, ZMQ_SNDMORE), (int)f->route_len);
    for (int i = 0; i < n; i++)
        assert_int_equal(zmq_send(f->router, frames[i], lens[i], i + 1 < n ? ZMQ_SNDMORE : 0), (int)lens[i]);
}

static void fake_send(fake_t *f, proto_msg_t *m) {
    char err[256];
    m->seq = f->seq++;
    rlhf_err_t rc = proto_encode(&f->enc, m, NULL, err, sizeof err);
    if (rc != RLHF_OK) fail_msg("encode: %s", err);
    const void *fr[1] = {f->enc.data};
    size_t len[1] = {f->enc.len};
    fake_send_raw(f, fr, len, 1);
}

/* ---- samples ---- */

typedef struct {
    uint64_t prompt_id;
    int prompt[160], n_prompt;
    int completion[64], n_completion;
    double want_reward;
    int want_invalid;
} sample_t;

static void add_sample(sample_t *s, const task_t *t, int split, int index, uint64_t id, const int *comp, int nc,
                       double want, int invalid) {
    memset(s, 0, sizeof *s);
    s->prompt_id = id;
    int ps = split, pi = index;
    if (ps != TASK_TRAIN && ps != TASK_HELDOUT) ps = TASK_TRAIN, pi = 0;
    if (pi >= task_size(t, ps)) pi = 0;
    s->n_prompt = task_prompt(t, ps, pi, s->prompt, 160);
    assert_true(s->n_prompt > 0);
    memcpy(s->completion, comp, sizeof(int) * (size_t)nc);
    s->n_completion = nc;
    s->want_reward = want;
    s->want_invalid = invalid;
}

static void build_work(proto_msg_t *m, proto_score_item_t *items, const sample_t *s, int n, uint64_t ticket,
                       int want_ref) {
    proto_msg_init(m);
    proto_msg_header(m, PROTO_SCORE_WORK, "fake-learner", 0);
    for (int i = 0; i < n; i++)
        items[i] = (proto_score_item_t){.prompt_index = (uint32_t)i,
                                        .sample_index = 0,
                                        .prompt_id = s[i].prompt_id,
                                        .prompt = (const int32_t *)s[i].prompt,
                                        .n_prompt = (uint32_t)s[i].n_prompt,
                                        .completion = (const int32_t *)s[i].completion,
                                        .n_completion = (uint32_t)s[i].n_completion,
                                        .finish = PROTO_FINISH_LENGTH};
    m->score_work = (proto_score_work_t){.ticket = ticket,
                                         .task = "add",
                                         .temperature = TEMP,
                                         .want_ref = (uint32_t)want_ref,
                                         .items = items,
                                         .n_items = (uint32_t)n};
}

static double component(const proto_scored_sample_t *s, const char *name) {
    for (uint32_t i = 0; i < s->n_components; i++)
        if (strcmp(s->components[i].name, name) == 0) return s->components[i].value;
    return NAN;
}

/* ---- tests ---- */

static void test_scorer_task(void **state) {
    (void)state;
    task_config_t tc;
    task_config_default("add", &tc);
    char err[256];
    scorer_t *s = NULL;
    assert_int_equal(scorer_task_new("nope", &tc, &s, err, sizeof err), RLHF_EINVAL);
    assert_null(s);
    assert_true(strlen(err) > 0);
    assert_int_equal(scorer_task_new("add", &tc, &s, err, sizeof err), RLHF_OK);
    assert_string_equal(scorer_name(s), "add");
    task_t *t = task_new("add", &tc);
    int ans[32], n = task_answer(t, TASK_TRAIN, 5, ans, 32), hans[32], hn = task_answer(t, TASK_HELDOUT, 3, hans, 32);
    int eos[1] = {TOK_EOS}, junk[3] = {'x', 'y', 'z'};
    scorer_output_t o;
    struct {
        uint64_t id;
        const int *c;
        int n;
        double r;
        int invalid;
    } cases[] = {
        {5, ans, n, 1, 0},
        {6, ans, n, 0, 0},                    // another problem's answer
        {5, ans, n - 1, 1, 0},                // no EOS: all tokens are the answer
        {5, eos, 1, 0, 0},                    // empty answer
        {5, junk, 3, 0, 0},                   // garbage
        {(1ull << 32) | 3, hans, hn, 1, 0},   // held-out split
        {(uint64_t)tc.n_train, ans, n, 0, 1}, // index past the split
        {(1ull << 32) | (uint64_t)tc.n_heldout, hans, hn, 0, 1},
        {(2ull << 32) | 5, ans, n, 0, 1}, // no such split
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        scorer_input_t in = {cases[i].id, NULL, 0, (const int32_t *)cases[i].c, (uint32_t)cases[i].n, 1};
        assert_int_equal(scorer_score(s, &in, &o), RLHF_OK);
        assert_true(o.reward == cases[i].r);
        assert_int_equal(o.invalid, cases[i].invalid);
        assert_int_equal(o.n_components, 1);
        assert_string_equal(o.components[0].name, cases[i].invalid ? "invalid" : "task");
        assert_true(o.components[0].value == (cases[i].invalid ? 1.0 : cases[i].r));
    }
    task_destroy(&t);
    scorer_destroy(&s);
    assert_null(s);
}

static void test_bad_config(void **state) {
    (void)state;
    const char *bin = RLHF_BIN_DIR "/rlhf-reward";
    char *a1[] = {(char *)bin, "--set", "reward.credit=abc", NULL};
    char *a2[] = {(char *)bin, "--id", "has space", "--set", "model.preset=tiny", NULL};
    char *a3[] = {(char *)bin, "--frobnicate", NULL};
    char *a4[] = {(char *)bin, "--set", "model.preset=tiny", "--set", "reward.learner=no-such-host.invalid", NULL};
    char *const *cases[] = {a1, a2, a3, a4};
    for (int i = 0; i < 4; i++) {
        g_child = spawn(cases[i]);
        int st = wait_exit(g_child, 20);
        assert_true(st >= 0);
        g_child = -1;
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 2);
    }
    /* nobody answers at the learner's address: exit 1 after reward.connect_timeout_ms */
    char port[64];
    snprintf(port, sizeof port, "learner.score_port=%d", free_tcp_port());
    char *a5[] = {(char *)bin,
                  "--set",
                  "model.preset=tiny",
                  "--set",
                  port,
                  "--set",
                  "reward.connect_timeout_ms=800",
                  "--set",
                  "reward.http_port=-1",
                  NULL};
    g_child = spawn(a5);
    int st = wait_exit(g_child, 20);
    g_child = -1;
    assert_true(st >= 0 && WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 1);
}

static void test_program(void **state) {
    (void)state;
    fake_t f;
    fake_init(&f);
    int http = free_tcp_port();

    /* the config both sides use: the worker through --set, the test in-process */
    char a_score[64], a_scored[64], a_http[64];
    snprintf(a_score, sizeof a_score, "learner.score_port=%d", f.score_port);
    snprintf(a_scored, sizeof a_scored, "learner.scored_port=%d", f.scored_port);
    snprintf(a_http, sizeof a_http, "reward.http_port=%d", http);
    const char *sets[] = {"model.preset=tiny", "reward.credit=2", "reward.batch=4", "reward.threads=1",
                          "run.seed=7",        a_score,           a_scored,         a_http};
    enum { NSETS = sizeof sets / sizeof sets[0] };
    rlhf_config_t cfg;
    config_init(&cfg);
    char err[256];
    for (int i = 0; i < NSETS; i++) {
        char k[64], *eq;
        snprintf(k, sizeof k, "%s", sets[i]);
        eq = strchr(k, '=');
        *eq = '\0';
        assert_int_equal(config_set(&cfg, k, eq + 1, err, sizeof err), RLHF_OK);
    }
    char *argv[2 * NSETS + 4];
    int ac = 0;
    argv[ac++] = RLHF_BIN_DIR "/rlhf-reward";
    for (int i = 0; i < NSETS; i++) argv[ac++] = "--set", argv[ac++] = (char *)sets[i];
    argv[ac++] = "--id", argv[ac++] = "rtest", argv[ac] = NULL;
    g_child = spawn(argv);
    assert_true(g_child > 0);

    /* hello, then credit */
    assert_int_equal(fake_recv_score(&f, 20000), PROTO_HELLO);
    assert_int_equal(f.m.hello.role, PROTO_ROLE_REWARD);
    int has_ref = 0, has_add = 0;
    for (uint32_t i = 0; i < f.m.hello.n_caps; i++) {
        has_ref |= strcmp(f.m.hello.caps[i], "ref_logprobs") == 0;
        has_add |= strcmp(f.m.hello.caps[i], "scorer:add") == 0;
    }
    assert_true(has_ref && has_add);
    assert_int_equal(fake_recv_score(&f, 5000), PROTO_SCORE_REQUEST);
    assert_int_equal(f.m.score_request.credit, CREDIT);
    {
        proto_msg_t h;
        proto_msg_init(&h);
        proto_msg_header(&h, PROTO_HELLO, "fake-learner", 0);
        h.hello = (proto_hello_t){.role = PROTO_ROLE_LEARNER, .weights_version = 1};
        fake_send(&f, &h);
    }

    /* job 1: every kind of sample, with reference log-probs */
    task_config_t tc;
    config_to_task(&cfg, &tc);
    task_t *t = task_new("add", &tc);
    assert_non_null(t);
    int a0[32], a1[32], h0[32];
    int na0 = task_answer(t, TASK_TRAIN, 0, a0, 32), na1 = task_answer(t, TASK_TRAIN, 1, a1, 32);
    int nh0 = task_answer(t, TASK_HELDOUT, 0, h0, 32);
    int wrong[32];
    memcpy(wrong, a1, sizeof a1);
    wrong[0] = wrong[0] == '9' ? '1' : wrong[0] + 1; // a digit off
    int eos[1] = {TOK_EOS}, junk[5] = {'z', 0, 255, TOK_PAD, 'q'}, longc[40];
    for (int i = 0; i < 40; i++) longc[i] = '1';
    int heldout_vs_train = !(na0 == nh0 && memcmp(a0, h0, sizeof(int) * (size_t)na0) == 0);
    sample_t s[12];
    int ns = 0;
    add_sample(&s[ns++], t, TASK_TRAIN, 0, 0, a0, na0, 1, 0);            // right
    add_sample(&s[ns++], t, TASK_TRAIN, 1, 1, wrong, na1, 0, 0);         // wrong
    add_sample(&s[ns++], t, TASK_TRAIN, 2, 2, eos, 1, 0, 0);             // empty
    add_sample(&s[ns++], t, TASK_TRAIN, 3, 3, junk, 5, 0, 0);            // garbage
    add_sample(&s[ns++], t, TASK_HELDOUT, 0, 1ull << 32, h0, nh0, 1, 0); // held-out, right
    /* held-out id, train answer */
    add_sample(&s[ns++], t, TASK_HELDOUT, 0, 1ull << 32, a0, na0, heldout_vs_train ? 0 : 1, 0);
    add_sample(&s[ns++], t, TASK_TRAIN, 9, (uint64_t)tc.n_train + 5, a0, na0, 0, 1); // index out of range
    add_sample(&s[ns++], t, 7, 0, (7ull << 32) | 1, a0, na0, 0, 1);                  // no such split
    add_sample(&s[ns], t, TASK_TRAIN, 4, 4, longc, 40, 0, 1);                        // too long for ctx 128
    for (int i = 0; i < 100; i++) s[ns].prompt[s[ns].n_prompt + i] = '7';
    s[ns++].n_prompt += 100;
    add_sample(&s[ns], t, TASK_TRAIN, 0, 0, a0, na0, 1, 0); // long but fits: fewer rows per forward
    for (int i = 0; i < 90; i++) s[ns].prompt[s[ns].n_prompt + i] = '5';
    s[ns++].n_prompt += 90;
    proto_msg_t w;
    proto_score_item_t items[600];
    build_work(&w, items, s, ns, 101, 1);
    double t_send = now_s();
    fake_send(&f, &w);
    proto_msg_t sc;
    proto_msg_init(&sc);
    assert_int_equal(fake_recv_scored(&f, &sc, 20000), 1);
    printf("job 1 (%d samples, want_ref) scored in %.1f ms\n", ns, (now_s() - t_send) * 1e3);
    assert_string_equal(sc.sender, "rtest");
    assert_int_equal(sc.scored.ticket, 101);
    assert_int_equal(sc.scored.n_samples, ns);

    /* the reference: the same initial weights, one sequence at a time */
    model_config_t mc;
    assert_int_equal(config_to_model(&cfg, &mc, err, sizeof err), RLHF_OK);
    model_t *ref = model_new(&mc);
    model_init_weights(ref, cfg.run.seed);
    model_acts_t *acts = model_acts_new(&mc, 1, mc.max_seq_len);
    double maxdiff = 0;
    int seen[12] = {0}, nref = 0;
    for (uint32_t k = 0; k < sc.scored.n_samples; k++) {
        const proto_scored_sample_t *o = &sc.scored.samples[k];
        assert_true(o->prompt_index < (uint32_t)ns);
        const sample_t *x = &s[o->prompt_index];
        seen[o->prompt_index]++;
        assert_int_equal(o->sample_index, 0);
        if (o->reward != x->want_reward)
            fail_msg("sample %u: reward %g, want %g", o->prompt_index, o->reward, x->want_reward);
        if (x->want_invalid) {
            assert_true(component(o, "invalid") == 1.0);
        } else {
            assert_true(component(o, "task") == x->want_reward);
            assert_true(isnan(component(o, "invalid")));
        }
        int T = x->n_prompt + x->n_completion;
        if (T > mc.max_seq_len) {
            assert_int_equal(o->n_ref, 0); // cannot be computed: absent
            continue;
        }
        assert_int_equal(o->n_ref, x->n_completion);
        int tok[256], tgt[256];
        for (int i = 0; i < x->n_prompt; i++) tok[i] = x->prompt[i];
        for (int i = 0; i < x->n_completion; i++) tok[x->n_prompt + i] = x->completion[i];
        for (int i = 0; i < T; i++) tgt[i] = i + 1 < T && i + 1 >= x->n_prompt ? tok[i + 1] : -1;
        model_forward(ref, acts, tok, tgt, 1, T, TEMP);
        const float *lp = model_acts_logprobs(acts);
        for (int i = 0; i < x->n_completion; i++) {
            double d = fabs((double)lp[x->n_prompt - 1 + i] - o->ref_logprobs[i]);
            if (!(d <= maxdiff)) maxdiff = d; // NaN propagates
            assert_true(o->ref_logprobs[i] < 0);
        }
        nref++;
    }
    for (int i = 0; i < ns; i++) assert_int_equal(seen[i], 1);
    printf("ref_logprobs vs model_forward at T=%.1f: max |diff| = %.3g over %d samples\n", TEMP, maxdiff, nref);
    assert_true(maxdiff < 1e-5);
    assert_int_equal(nref, ns - 1);
    /* and a temperature that matters: at T=1 the values differ */
    {
        const sample_t *x = &s[0];
        int T = x->n_prompt + x->n_completion, tok[256], tgt[256];
        for (int i = 0; i < x->n_prompt; i++) tok[i] = x->prompt[i];
        for (int i = 0; i < x->n_completion; i++) tok[x->n_prompt + i] = x->completion[i];
        for (int i = 0; i < T; i++) tgt[i] = i + 1 < T && i + 1 >= x->n_prompt ? tok[i + 1] : -1;
        model_forward(ref, acts, tok, tgt, 1, T, 1.0f);
        const proto_scored_sample_t *o = NULL;
        for (uint32_t k = 0; k < sc.scored.n_samples; k++)
            if (sc.scored.samples[k].prompt_index == 0) o = &sc.scored.samples[k];
        assert_true(fabs(model_acts_logprobs(acts)[x->n_prompt - 1] - o->ref_logprobs[0]) > 1e-4);
    }
    assert_int_equal(fake_recv_score(&f, 5000), PROTO_SCORE_REQUEST);
    assert_int_equal(f.m.score_request.credit, 1);

    /* jobs 2 and 3 fill the credit (heavy: 512 samples each, with and
     * without reference), job 4 is over credit and must be dropped */
    static sample_t big[512];
    static proto_score_item_t bitems[512];
    for (int i = 0; i < 512; i++) {
        int idx = i % 50, ans[32], na = task_answer(t, TASK_TRAIN, idx, ans, 32);
        add_sample(&big[i], t, TASK_TRAIN, idx, (uint64_t)idx, ans, na, 1, 0);
        if (i % 3 == 1) big[i].completion[0] = 'x', big[i].want_reward = 0;
    }
    proto_msg_t w2;
    build_work(&w2, bitems, big, 512, 102, 1);
    t_send = now_s();
    fake_send(&f, &w2);
    build_work(&w2, bitems, big, 512, 103, 0);
    fake_send(&f, &w2);
    build_work(&w2, bitems, big, 8, 104, 1);
    fake_send(&f, &w2);
    /* while they run: never more jobs held than credit granted */
    for (int k = 0; k < 5; k++) {
        char *txt = http_get(http, "/status");
        assert_non_null(txt);
        json_error_t je;
        json_t *st = json_loads(txt, 0, &je);
        assert_non_null(st);
        json_int_t fl = json_integer_value(json_object_get(st, "in_flight"));
        json_int_t cf = json_integer_value(json_object_get(st, "credit_free"));
        if (k == 0)
            printf("status during jobs 102-104: in_flight %lld, credit_free %lld\n", (long long)fl, (long long)cf);
        assert_true(fl >= 0 && fl <= CREDIT && cf >= 0 && fl + cf <= CREDIT);
        json_decref(st);
        free(txt);
        usleep(5000);
    }
    int got[3] = {0};
    for (int k = 0; k < 2; k++) {
        assert_int_equal(fake_recv_scored(&f, &sc, 30000), 1);
        assert_true(sc.scored.ticket == 102 || sc.scored.ticket == 103);
        got[sc.scored.ticket - 102]++;
        if (sc.scored.ticket == 102)
            printf("job 102 (512 samples of ~%d tokens, want_ref, batch 4, tiny): %.1f ms, %.0f samples/s\n",
                   big[0].n_prompt + big[0].n_completion, (now_s() - t_send) * 1e3, 512 / (now_s() - t_send));
        assert_int_equal(sc.scored.n_samples, 512);
        int want_ref = sc.scored.ticket == 102;
        for (uint32_t i = 0; i < sc.scored.n_samples; i++) {
            const proto_scored_sample_t *o = &sc.scored.samples[i];
            assert_true(o->reward == big[o->prompt_index].want_reward);
            assert_int_equal(o->n_ref, want_ref ? (uint32_t)big[o->prompt_index].n_completion : 0);
            if (!want_ref) assert_null(o->ref_logprobs);
        }
    }
    assert_int_equal(got[0], 1);
    assert_int_equal(got[1], 1);
    assert_int_equal(fake_recv_scored(&f, &sc, 1500), 0); // 104 never comes back
    /* each scored was followed by exactly one credit */
    while (fake_recv_score(&f, 300) == PROTO_SCORE_REQUEST) assert_int_equal(f.m.score_request.credit, 1);
    assert_int_equal(f.credit_granted, CREDIT + 3); // initial + one per scored job (101, 102, 103)
    printf("heartbeats %d, max in_flight %d\n", f.n_heartbeats, f.max_in_flight);
    assert_true(f.n_heartbeats >= 1);
    assert_true(f.max_in_flight <= CREDIT);

    /* malformed messages: dropped and counted, the worker keeps serving */
    {
        const unsigned char c1[] = {0xc1};
        const void *fr[2] = {c1, c1};
        size_t ln[2] = {1, 1};
        fake_send_raw(&f, fr, ln, 1); // malformed
        proto_msg_t hb;
        proto_msg_init(&hb);
        proto_msg_header(&hb, PROTO_HEARTBEAT, "fake-learner", f.seq++);
        assert_int_equal(proto_encode(&f.enc, &hb, NULL, err, sizeof err), RLHF_OK);
        fr[0] = f.enc.data, ln[0] = f.enc.len;
        fake_send_raw(&f, fr, ln, 2); // a valid heartbeat with a second frame: bad_frames
        proto_msg_t tk;
        proto_msg_init(&tk);
        proto_msg_header(&tk, PROTO_TICKET, "fake-learner", 0);
        proto_prompt_t pr = {.id = 0, .tokens = (const int32_t *)s[0].prompt, .n_tokens = (uint32_t)s[0].n_prompt};
        tk.ticket = (proto_ticket_t){.ticket = 9,
                                     .policy_version = 1,
                                     .k = 1,
                                     .deadline_ms = 1000,
                                     .sampling = {.temperature = 1, .top_p = 1, .max_new_tokens = 4},
                                     .prompts = &pr,
                                     .n_prompts = 1};
        fake_send(&f, &tk); // unexpected_type
        sample_t bad = s[0];
        bad.completion[0] = 300; // >= vocab 264
        build_work(&w2, bitems, &bad, 1, 105, 1);
        fake_send(&f, &w2); // bad_token
    }
    build_work(&w2, bitems, s, 4, 106, 1);
    fake_send(&f, &w2);
    assert_int_equal(fake_recv_scored(&f, &sc, 20000), 1);
    assert_int_equal(sc.scored.ticket, 106);
    assert_int_equal(sc.scored.n_samples, 4);

    /* metrics and status */
    char *text = http_get(http, "/metrics");
    assert_non_null(text);
    assert_true(metric(text, "rlhf_score_jobs_total") == 4);
    assert_true(metric(text, "rlhf_samples_scored_total") == ns + 512 + 512 + 4);
    assert_true(metric(text, "rlhf_samples_invalid_total") == 3);
    assert_true(metric(text, "rlhf_score_jobs_dropped_total{reason=\"over_credit\"}") == 1);
    assert_true(metric(text, "rlhf_messages_rejected_total{reason=\"malformed\"}") == 1);
    assert_true(metric(text, "rlhf_messages_rejected_total{reason=\"bad_frames\"}") == 1);
    assert_true(metric(text, "rlhf_messages_rejected_total{reason=\"unexpected_type\"}") == 1);
    assert_true(metric(text, "rlhf_messages_rejected_total{reason=\"bad_token\"}") == 1);
    assert_true(metric(text, "rlhf_scoring_seconds_count") == 4);
    assert_true(metric(text, "rlhf_reward_mean") == 0.25); // job 106: rewards 1, 0, 0, 0
    free(text);
    text = http_get(http, "/status");
    assert_non_null(text);
    json_error_t je;
    json_t *st = json_loads(text, 0, &je);
    assert_non_null(st);
    assert_string_equal(json_string_value(json_object_get(st, "role")), "reward");
    assert_int_equal(json_integer_value(json_object_get(st, "jobs_done")), 4);
    assert_int_equal(json_integer_value(json_object_get(st, "messages_rejected")), 4);
    json_decref(st);
    free(text);

    /* SIGTERM during a job: its scored, then bye, then exit 0 */
    while (fake_recv_score(&f, 200) == PROTO_SCORE_REQUEST) {
    }
    build_work(&w2, bitems, big, 512, 107, 1);
    fake_send(&f, &w2);
    usleep(20000);
    kill(g_child, SIGTERM);
    assert_int_equal(fake_recv_scored(&f, &sc, 20000), 1);
    assert_int_equal(sc.scored.ticket, 107);
    int type;
    while ((type = fake_recv_score(&f, 10000)) == PROTO_SCORE_REQUEST) {
    }
    assert_int_equal(type, PROTO_BYE);
    int st2 = wait_exit(g_child, 15);
    assert_true(st2 >= 0);
    g_child = -1;
    assert_true(WIFEXITED(st2));
    assert_int_equal(WEXITSTATUS(st2), 0);

    proto_msg_fini(&sc);
    model_acts_destroy(&acts);
    model_destroy(&ref);
    task_destroy(&t);
    fake_fini(&f);
}

/* The learner goes away and a new one binds the same port: as soon as the
 * connection is back the worker says hello again and re-grants its whole
 * credit (the new learner knows nothing of it), then serves the new learner.
 * (Without the reconnect event it would wait for 10 s of silence, and a
 * learner that sends heartbeats would never look silent.) */
static void test_learner_restart(void **state) {
    (void)state;
    fake_t f;
    fake_init(&f);
    char a_score[64], a_scored[64];
    snprintf(a_score, sizeof a_score, "learner.score_port=%d", f.score_port);
    snprintf(a_scored, sizeof a_scored, "learner.scored_port=%d", f.scored_port);
    char *argv[] = {RLHF_BIN_DIR "/rlhf-reward",
                    "--set",
                    "model.preset=tiny",
                    "--set",
                    "reward.credit=2",
                    "--set",
                    "reward.http_port=-1",
                    "--set",
                    "reward.threads=1",
                    "--set",
                    a_score,
                    "--set",
                    a_scored,
                    "--id",
                    "rtest",
                    NULL};
    g_child = spawn(argv);
    assert_true(g_child > 0);
    assert_int_equal(fake_recv_score(&f, 20000), PROTO_HELLO);
    assert_int_equal(fake_recv_score(&f, 5000), PROTO_SCORE_REQUEST);
    double t0 = now_s();

    /* the learner "restarts": a fresh ROUTER on the same port */
    zmq_close(f.router);
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", f.score_port);
    f.router = zmq_socket(f.ctx, ZMQ_ROUTER);
    int linger = 0, rc = -1;
    zmq_setsockopt(f.router, ZMQ_LINGER, &linger, sizeof linger);
    for (int i = 0; i < 200 && rc != 0; i++)
        if ((rc = zmq_bind(f.router, ep)) != 0) usleep(10000);
    assert_int_equal(rc, 0);
    f.credit_granted = 0;

    assert_int_equal(fake_recv_score(&f, 20000), PROTO_HELLO);
    double dt = now_s() - t0;
    printf("hello again %.2f s after the last word from the learner\n", dt);
    assert_true(dt < 5.0);
    assert_int_equal(fake_recv_score(&f, 5000), PROTO_SCORE_REQUEST);
    assert_int_equal(f.m.score_request.credit, 2);

    /* and it works for the new learner (the worker runs the config's default task) */
    rlhf_config_t dc;
    config_init(&dc);
    task_config_t tc;
    config_to_task(&dc, &tc);
    task_t *t = task_new("add", &tc);
    int ans[32], na = task_answer(t, TASK_HELDOUT, 2, ans, 32);
    sample_t smp;
    add_sample(&smp, t, TASK_HELDOUT, 2, (1ull << 32) | 2, ans, na, 1, 0);
    proto_msg_t w, sc;
    proto_score_item_t it[1];
    build_work(&w, it, &smp, 1, 77, 1);
    fake_send(&f, &w);
    proto_msg_init(&sc);
    assert_int_equal(fake_recv_scored(&f, &sc, 20000), 1);
    assert_int_equal(sc.scored.ticket, 77);
    assert_true(sc.scored.samples[0].reward == 1.0);
    assert_int_equal(sc.scored.samples[0].n_ref, (uint32_t)na);
    assert_int_equal(fake_recv_score(&f, 5000), PROTO_SCORE_REQUEST);

    /* a task this worker does not score: neutral and flagged */
    proto_score_item_t it2[1];
    build_work(&w, it2, &smp, 1, 78, 0);
    w.score_work.task = "sort";
    fake_send(&f, &w);
    assert_int_equal(fake_recv_scored(&f, &sc, 20000), 1);
    assert_int_equal(sc.scored.ticket, 78);
    assert_true(sc.scored.samples[0].reward == 0.0);
    assert_true(component(&sc.scored.samples[0], "invalid") == 1.0);
    assert_int_equal(sc.scored.samples[0].n_ref, 0);

    /* the worker's counters come as stats (every 5 s) */
    f.want_stats = 1;
    int type;
    while ((type = fake_recv_score(&f, 7000)) == PROTO_SCORE_REQUEST) {
    }
    assert_int_equal(type, PROTO_STATS);
    double jobs = -1;
    for (uint32_t i = 0; i < f.m.stats.n_values; i++)
        if (strcmp(f.m.stats.values[i].name, "score_jobs_total") == 0) jobs = f.m.stats.values[i].value;
    printf("stats: %u values, score_jobs_total %g\n", f.m.stats.n_values, jobs);
    assert_true(jobs == 2);
    f.want_stats = 0;

    kill(g_child, SIGTERM);
    while ((type = fake_recv_score(&f, 10000)) == PROTO_SCORE_REQUEST) {
    }
    assert_int_equal(type, PROTO_BYE);
    int st = wait_exit(g_child, 15);
    g_child = -1;
    assert_true(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    proto_msg_fini(&sc);
    task_destroy(&t);
    fake_fini(&f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scorer_task),
        cmocka_unit_test_teardown(test_bad_config, kill_child),
        cmocka_unit_test_teardown(test_program, kill_child),
        cmocka_unit_test_teardown(test_learner_restart, kill_child),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
