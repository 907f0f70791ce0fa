/*
 * test_kernels.c - every kernel against its naive twin on odd shapes, and a
 * finite-difference gradient check of every backward kernel.
 *
 * Gradient checks: loss = sum(r .* out) for a fixed random r, accumulated in
 * double; numeric gradient by central differences (eps 1e-3) on a sample of
 * inputs; the error is reported relative to the largest gradient of that
 * buffer, and the largest such error across ops is printed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/kernels.h"
#include "tests/testutil.h"

static double g_worst = 0.0;

typedef double (*loss_fn)(void *ctx);

/* Check analytic gradient ana (n) of loss wrt buffer x (n) by central
 * differences on up to `samples` entries. Returns the relative error. */
static double fd_check(const char *what, loss_fn f, void *ctx, float *x, const float *ana, size_t n, int samples) {
    double gmax = tu_maxabs1(ana, n), worst = 0.0;
    rng_t r;
    rng_init(&r, 99 + n);
    const float eps = 1e-3f;
    for (int s = 0; s < samples && (size_t)s < n; s++) {
        size_t i = (size_t)samples >= n ? (size_t)s : rng_below(&r, (uint32_t)n);
        float old = x[i];
        x[i] = old + eps;
        double lp = f(ctx);
        x[i] = old - eps;
        double lm = f(ctx);
        x[i] = old;
        double num = (lp - lm) / (2.0 * eps);
        double err = fabs(num - ana[i]) / (gmax > 1e-6 ? gmax : 1e-6);
        if (err > worst) worst = err;
    }
    printf("gradcheck %-28s max rel err %.2e (|grad|max %.3g)\n", what, worst, gmax);
    if (worst > g_worst) g_worst = worst;
    return worst;
}

/* ---- matmul ---- */

typedef struct {
    float *out, *inp, *w, *r;
    int N, C, OC;
} mm_ctx;

static double mm_loss(void *p) {
    mm_ctx *c = p;
    matmul_forward(c->out, c->inp, c->w, c->N, c->C, c->OC, 0);
    return tu_dot(c->r, c->out, (size_t)c->N * c->OC);
}

static void test_matmul_naive_parity(void **state) {
    (void)state;
    rng_t r;
    rng_init(&r, 1);
    /* N x C x OC; rows 2..48 with C % 8 == 0 take the small-M decode kernel */
    int shapes[][3] = {{1, 1, 1},  {7, 13, 5},      {33, 17, 65}, {3, 64, 264},  {129, 31, 7}, {2, 8, 3},
                       {5, 16, 7}, {32, 384, 1030}, {47, 64, 9},  {1, 384, 264}, {48, 40, 13}, {49, 40, 13}};
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        int N = shapes[s][0], C = shapes[s][1], OC = shapes[s][2];
        float *inp = tu_randn(&r, (size_t)N * C, 1), *w = tu_randn(&r, (size_t)OC * C, 1);
        float *o1 = tu_randn(&r, (size_t)N * OC, 1), *o2 = malloc(sizeof(float) * N * OC);
        memcpy(o2, o1, sizeof(float) * N * OC);
        matmul_forward(o1, inp, w, N, C, OC, 1);
        matmul_forward_naive(o2, inp, w, N, C, OC, 1);
        double d = tu_maxabs(o1, o2, (size_t)N * OC);
        matmul_forward(o1, inp, w, N, C, OC, 0); /* overwrite, not accumulate */
        matmul_forward_naive(o2, inp, w, N, C, OC, 0);
        double d0 = tu_maxabs(o1, o2, (size_t)N * OC);
        d = d0 > d ? d0 : d;
        float *dout = tu_randn(&r, (size_t)N * OC, 1);
        float *di1 = tu_zeros((size_t)N * C), *di2 = tu_zeros((size_t)N * C);
        float *dw1 = tu_zeros((size_t)OC * C), *dw2 = tu_zeros((size_t)OC * C);
        matmul_backward(di1, dw1, dout, inp, w, N, C, OC);
        matmul_backward_naive(di2, dw2, dout, inp, w, N, C, OC);
        double d2 = tu_maxabs(di1, di2, (size_t)N * C), d3 = tu_maxabs(dw1, dw2, (size_t)OC * C);
        printf("matmul %dx%dx%d: forward max|d| %.2e, dinp %.2e, dweight %.2e\n", N, C, OC, d, d2, d3);
        double tol = 1e-5 * sqrt((double)(C > N ? C : N) + OC);
        assert_true(d < tol);
        assert_true(d2 < tol);
        assert_true(d3 < tol);
        free(inp), free(w), free(o1), free(o2), free(dout), free(di1), free(di2), free(dw1), free(dw2);
    }
}

static void test_matmul_grad(void **state) {
    (void)state;
    rng_t r;
    rng_init(&r, 2);
    mm_ctx c = {.N = 5, .C = 7, .OC = 3};
    c.inp = tu_randn(&r, 35, 1), c.w = tu_randn(&r, 21, 1), c.r = tu_randn(&r, 15, 1), c.out = tu_zeros(15);
    float *di = tu_zeros(35), *dw = tu_zeros(21);
    matmul_backward(di, dw, c.r, c.inp, c.w, c.N, c.C, c.OC);
    assert_true(fd_check("matmul dinp", mm_loss, &c, c.inp, di, 35, 35) < 1e-2);
    assert_true(fd_check("matmul dweight", mm_loss, &c, c.w, dw, 21, 21) < 1e-2);
    free(c.inp), free(c.w), free(c.r), free(c.out), free(di), free(dw);
}

/* ---- rmsnorm ---- */

typedef struct {
    float *out, *rstd, *inp, *w, *r;
    int N, C;
} rn_ctx;

static double rn_loss(void *p) {
    rn_ctx *c = p;
    rmsnorm_forward(c->out, c->rstd, c->inp, c->w, c->N, c->C, 1e-5f);
    return tu_dot(c->r, c->out, (size_t)c->N * c->C);
}

static void test_rmsnorm_grad(void **state) {
    (void)state;
    rng_t r;
    rng_init(&r, 3);
    rn_ctx c = {.N = 4, .C = 9};
    size_t n = 36;
    c.inp = tu_randn(&r, n, 1), c.w = tu_randn(&r, 9, 1), c.r = tu_randn(&r, n, 1);
    c.out = tu_zeros(n), c.rstd = tu_zeros(4);
    rn_loss(&c);
    /* reference value: rstd = 1/sqrt(mean(x^2)+eps) */
    double ss = 0;
    for (int i = 0; i < 9; i++) ss += (double)c.inp[i] * c.inp[i];
    assert_float_equal(c.rstd[0], 1.0 / sqrt(ss / 9 + 1e-5), 1e-5);
    float *di = tu_zeros(n), *dw = tu_zeros(9);
    rmsnorm_backward(di, dw, c.r, c.inp, c.w, c.rstd, c.N, c.C);
    assert_true(fd_check("rmsnorm dinp", rn_loss, &c, c.inp, di, n, (int)n) < 1e-2);
    assert_true(fd_check("rmsnorm dweight", rn_loss, &c, c.w, dw, 9, 9) < 1e-2);
    free(c.inp), free(c.w), free(c.r), free(c.out), free(c.rstd), free(di), free(dw);
}

/* ---- rope ---- */

typedef struct {
    float *x, *tmp, *r, *cosv, *sinv;
    int *pos;
    int N, nh, HS;
} rope_ctx;

static double rope_loss(void *p) {
    rope_ctx *c = p;
    size_t n = (size_t)c->N * c->nh * c->HS;
    memcpy(c->tmp, c->x, sizeof(float) * n);
    rope_forward(c->tmp, c->cosv, c->sinv, c->pos, c->N, c->nh, c->HS);
    return tu_dot(c->r, c->tmp, n);
}

static void test_rope(void **state) {
    (void)state;
    rng_t r;
    rng_init(&r, 4);
    rope_ctx c = {.N = 5, .nh = 2, .HS = 8};
    size_t n = 80;
    int pos[5] = {0, 1, 2, 7, 3};
    c.pos = pos;
    c.x = tu_randn(&r, n, 1), c.tmp = tu_zeros(n), c.r = tu_randn(&r, n, 1);
    c.cosv = tu_zeros(8 * 4), c.sinv = tu_zeros(8 * 4);
    rope_table(c.cosv, c.sinv, 8, 8, 10000.0f);
    /* position 0 is the identity; rotation preserves each pair's norm */
    rope_loss(&c);
    for (int i = 0; i < 16; i++) assert_float_equal(c.tmp[i], c.x[i], 0);
    for (int h = 0; h < 2; h++)
        for (int j = 0; j < 4; j++) {
            size_t b = (3 * 2 + h) * 8;
            double n0 = hypot(c.x[b + j], c.x[b + j + 4]), n1 = hypot(c.tmp[b + j], c.tmp[b + j + 4]);
            assert_float_equal(n0, n1, 1e-5);
        }
    /* explicit value: row 1 (pos 1), pair 0 rotates by angle 1 rad */
    float a = c.x[16], b = c.x[20];
    assert_float_equal(c.tmp[16], a * cos(1.0) - b * sin(1.0), 1e-5);
    float *dx = malloc(sizeof(float) * n);
    memcpy(dx, c.r, sizeof(float) * n);
    rope_backward(dx, c.cosv, c.sinv, c.pos, c.N, c.nh, c.HS);
    assert_true(fd_check("rope", rope_loss, &c, c.x, dx, n, (int)n) < 1e-2);
    free(c.x), free(c.tmp), free(c.r), free(c.cosv), free(c.sinv), free(dx);
}

/* ---- swiglu ---- */

typedef struct {
    float *out, *h1, *h3, *r;
    size_t n;
} sw_ctx;

static double sw_loss(void *p) {
    sw_ctx *c = p;
    swiglu_forward(c->out, c->h1, c->h3, c->n);
    return tu_dot(c->r, c->out, c->n);
}

static void test_swiglu_grad(void **state) {
    (void)state;
    rng_t r;
    rng_init(&r, 5);
    sw_ctx c = {.n = 40};
    c.h1 = tu_randn(&r, 40, 2), c.h3 = tu_randn(&r, 40, 1), c.r = tu_randn(&r, 40, 1), c.out = tu_zeros(40);
    sw_loss(&c);
    assert_float_equal(c.out[0], c.h1[0] / (1 + exp(-c.h1[0])) * c.h3[0], 1e-6);
    float *d1 = tu_zeros(40), *d3 = tu_zeros(40);
    swiglu_backward(d1, d3, c.r, c.h1, c.h3, c.n);
    assert_true(fd_check("swiglu dh1", sw_loss, &c, c.h1, d1, 40, 40) < 1e-2);
    assert_true(fd_check("swiglu dh3", sw_loss, &c, c.h3, d3, 40, 40) < 1e-2);
    free(c.h1), free(c.h3), free(c.r), free(c.out), free(d1), free(d3);
}

/* ---- attention ---- */

typedef struct {
    float *out, *att, *q, *k, *v, *r;
    int B, T, NH, KVH, HS;
} at_ctx;

static double at_loss(void *p) {
    at_ctx *c = p;
    attention_forward(c->out, c->att, c->q, c->k, c->v, c->B, c->T, c->NH, c->KVH, c->HS);
    return tu_dot(c->r, c->out, (size_t)c->B * c->T * c->NH * c->HS);
}

static void test_attention(void **state) {
    (void)state;
    rng_t r;
    rng_init(&r, 6);
    at_ctx c = {.B = 2, .T = 7, .NH = 4, .KVH = 2, .HS = 6};
    size_t nq = (size_t)c.B * c.T * c.NH * c.HS, nk = (size_t)c.B * c.T * c.KVH * c.HS;
    size_t na = (size_t)c.B * c.NH * c.T * c.T;
    c.q = tu_randn(&r, nq, 1), c.k = tu_randn(&r, nk, 1), c.v = tu_randn(&r, nk, 1), c.r = tu_randn(&r, nq, 1);
    c.out = tu_zeros(nq), c.att = tu_zeros(na);
    float *out2 = tu_zeros(nq), *att2 = tu_zeros(na);
    at_loss(&c);
    attention_forward_naive(out2, att2, c.q, c.k, c.v, c.B, c.T, c.NH, c.KVH, c.HS);
    double d = tu_maxabs(c.out, out2, nq), da = tu_maxabs(c.att, att2, na);
    printf("attention vs naive: out max|d| %.2e, att %.2e\n", d, da);
    assert_true(d < 1e-5 && da < 1e-5);
    /* causal: upper triangle is exactly zero, rows sum to 1 */
    for (int t = 0; t < c.T; t++) {
        double s = 0;
        for (int j = 0; j < c.T; j++) {
            if (j > t) assert_true(c.att[t * c.T + j] == 0.0f);
            s += c.att[t * c.T + j];
        }
        assert_float_equal(s, 1.0, 1e-5);
    }
    float *dq = tu_zeros(nq), *dk = tu_zeros(nk), *dv = tu_zeros(nk), *scr = tu_zeros(na);
    float *dq2 = tu_zeros(nq), *dk2 = tu_zeros(nk), *dv2 = tu_zeros(nk);
    attention_backward(dq, dk, dv, scr, c.r, c.att, c.q, c.k, c.v, c.B, c.T, c.NH, c.KVH, c.HS);
    attention_backward_naive(dq2, dk2, dv2, c.r, c.att, c.q, c.k, c.v, c.B, c.T, c.NH, c.KVH, c.HS);
    double e1 = tu_maxabs(dq, dq2, nq), e2 = tu_maxabs(dk, dk2, nk), e3 = tu_maxabs(dv, dv2, nk);
    printf("attention backward vs naive: dq %.2e dk %.2e dv %.2e\n", e1, e2, e3);
    assert_true(e1 < 1e-5 && e2 < 1e-5 && e3 < 1e-5);
    assert_true(fd_check("attention dq", at_loss, &c, c.q, dq, nq, 200) < 1e-2);
    assert_true(fd_check("attention dk", at_loss, &c, c.k, dk, nk, 200) < 1e-2);
    assert_true(fd_check("attention dv", at_loss, &c, c.v, dv, nk, 200) < 1e-2);
    free(c.q), free(c.k), free(c.v), free(c.r), free(c.out), free(c.att), free(out2), free(att2);
    free(dq), free(dk), free(dv), free(scr), free(dq2), free(dk2), free(dv2);
}

/* ---- log-probs and entropy ---- */

typedef struct {
    float *logits, *lp, *ent, *lse, *c1, *c2;
    int *tg;
    int N, V;
    float it;
} lp_ctx;

static double lp_loss(void *p) {
    lp_ctx *c = p;
    logprob_forward(c->lp, c->ent, c->lse, c->logits, c->tg, c->N, c->V, c->it);
    return tu_dot(c->c1, c->lp, c->N) + tu_dot(c->c2, c->ent, c->N);
}

static void test_logprob(void **state) {
    (void)state;
    rng_t r;
    rng_init(&r, 7);
    int tg[4] = {3, -1, 0, 10};
    lp_ctx c = {.N = 4, .V = 11, .it = 1.0f / 0.7f, .tg = tg};
    c.logits = tu_randn(&r, 44, 2), c.lp = tu_zeros(4), c.ent = tu_zeros(4), c.lse = tu_zeros(4);
    c.c1 = tu_randn(&r, 4, 1), c.c2 = tu_randn(&r, 4, 1);
    lp_loss(&c);
    /* reference in double */
    for (int i = 0; i < 4; i++) {
        if (tg[i] < 0) {
            assert_true(c.lp[i] == 0.0f && c.ent[i] == 0.0f);
            continue;
        }
        double mx = -1e30, s = 0, h = 0;
        for (int j = 0; j < 11; j++) mx = fmax(mx, c.logits[i * 11 + j] * c.it);
        for (int j = 0; j < 11; j++) s += exp(c.logits[i * 11 + j] * c.it - mx);
        double lse = mx + log(s);
        for (int j = 0; j < 11; j++) {
            double lpj = c.logits[i * 11 + j] * c.it - lse;
            h -= exp(lpj) * lpj;
        }
        assert_float_equal(c.lp[i], c.logits[i * 11 + tg[i]] * c.it - lse, 1e-5);
        assert_float_equal(c.ent[i], h, 1e-5);
    }
    float *dl = tu_zeros(44);
    logprob_backward(dl, c.c1, c.c2, c.logits, c.lse, c.ent, c.tg, c.N, c.V, c.it);
    assert_true(fd_check("logprob+entropy", lp_loss, &c, c.logits, dl, 44, 44) < 1e-2);
    free(c.logits), free(c.lp), free(c.ent), free(c.lse), free(c.c1), free(c.c2), free(dl);
}

/* ---- embedding ---- */

static void test_embedding(void **state) {
    (void)state;
    rng_t r;
    rng_init(&r, 8);
    int tok[5] = {2, 0, 2, 4, 1};
    float *emb = tu_randn(&r, 5 * 3, 1), *out = tu_zeros(15), *dout = tu_randn(&r, 15, 1), *demb = tu_zeros(15);
    embedding_forward(out, tok, emb, 5, 3);
    for (int i = 0; i < 5; i++)
        for (int c = 0; c < 3; c++) assert_true(out[i * 3 + c] == emb[tok[i] * 3 + c]);
    embedding_backward(demb, dout, tok, 5, 3);
    for (int c = 0; c < 3; c++) {
        assert_float_equal(demb[2 * 3 + c], dout[0 * 3 + c] + dout[2 * 3 + c], 1e-6);
        assert_true(demb[3 * 3 + c] == 0.0f);
    }
    free(emb), free(out), free(dout), free(demb);
}

static void test_summary(void **state) {
    (void)state;
    printf("gradcheck: largest relative error over all kernels %.2e\n", g_worst);
    assert_true(g_worst < 1e-2);
}

int main(void) {
    kernels_set_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul_naive_parity),
        cmocka_unit_test(test_matmul_grad),
        cmocka_unit_test(test_rmsnorm_grad),
        cmocka_unit_test(test_rope),
        cmocka_unit_test(test_swiglu_grad),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_logprob),
        cmocka_unit_test(test_embedding),
        cmocka_unit_test(test_summary),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
