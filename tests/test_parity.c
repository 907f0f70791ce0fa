/*
 * test_parity.c - the C model against a float64 PyTorch reference.
 *
 * Loads tests/fixtures/parity_tiny*.safetensors (written by
 * tests/torch_ref.py, committed so ctest never needs Python), builds the
 * model from the config in the file's metadata, fills the weights by their
 * Hugging Face names, runs model_forward and model_backward and compares
 *   logits (B,T,V), logprobs, entropy, values (B,T), the loss
 *   L = sum c1*logprobs + c2*entropy + c3*values, and dL/dparam for every
 *   parameter tensor (per layer).
 * Every quantity prints its largest absolute difference and its largest
 * difference relative to the reference's largest magnitude; any check beyond
 * its tolerance fails the test.
 *
 * Tolerances. The reference is float64 computed from the same float32 weights,
 * so what is left is C's float32 rounding (unit roundoff 6e-8) accumulated
 * over dot products of length <= 256 through 4 layers, a log-sum-exp over V =
 * 264 and, for gradients, the backward through all of it. Measured (1 and 2
 * threads, and under ASan): at most 5e-6 absolute on forward quantities
 * (logits are O(3), log-probs O(8)), 2e-9 relative on the loss, 3.3e-6
 * relative on any gradient tensor. The bounds sit 20-30x above that (5000x for
 * the loss, a sum of O(50) terms), so BLAS blocking, thread count or summation
 * order cannot flake them, while a real error (a wrong index, a missing term,
 * a transposed matrix, the wrong RoPE layout or kv-head mapping, a misplaced
 * temperature, an RMSNorm eps of the wrong size) typically moves values by
 * 1e-3 or more: a 0.05 change in one weight of 262k moves logits by 8e-3 and
 * gradients by 2e-2 relative. The last test proves the checks can fail: it
 * perturbs one weight, then one loss coefficient, and requires the affected
 * checks to trip.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/model.h"
#include "common/safetensors.h"

#define TOL_FWD_ABS  1e-4 // logits, logprobs, entropy, values: max |C - ref|
#define TOL_LOSS_REL 1e-5 // |dL| / sum |terms of L|
#define TOL_GRAD_REL 1e-4 // per tensor: max |C - ref| / max |ref|

typedef struct {
    safetensors_t *st;
    model_t *m;
    model_acts_t *a;
    int B, T;
    float temperature;
    int *tokens, *targets; // (B,T)
    float *c1, *c2, *c3;   // (B,T)
    char label[64];
} fixture_t;

typedef enum { PERTURB_NONE, PERTURB_WEIGHT, PERTURB_COEF } perturb_t;

typedef struct {
    int fwd_checks, fwd_failed; // logits, logprobs, entropy, values, loss
    int grad_checks, grad_failed;
    double worst_fwd_abs, worst_grad_rel;
    char worst_grad[ST_MAX_NAME];
} report_t;

static char *fixture_path(const char *file) {
    static char buf[1024];
    snprintf(buf, sizeof buf, "%s/%s", RLHF_FIXTURES, file);
    return buf;
}

static int meta_num(const safetensors_t *st, const char *key, double *out) {
    const char *s = safetensors_meta(st, key);
    char *end;
    if (!s) {
        fprintf(stderr, "parity: fixture metadata lacks \"%s\"\n", key);
        return -1;
    }
    *out = strtod(s, &end);
    if (end == s || *end != '\0') {
        fprintf(stderr, "parity: metadata \"%s\" = \"%s\" is not a number\n", key, s);
        return -1;
    }
    return 0;
}

/* Copy an I32 tensor of exactly n elements (the data may be only 4-aligned). */
static int read_i32(const safetensors_t *st, const char *name, int *dst, size_t n) {
    const st_tensor_t *t = safetensors_find(st, name);
    if (!t || t->dtype != ST_I32 || t->nbytes != n * sizeof(int32_t)) {
        fprintf(stderr, "parity: fixture tensor %s missing or not I32[%zu]\n", name, n);
        return -1;
    }
    memcpy(dst, safetensors_data(st, t), t->nbytes);
    return 0;
}

static int read_f32(const safetensors_t *st, const char *name, float *dst, size_t n) {
    char err[256];
    rlhf_err_t e = safetensors_read_f32(st, name, dst, n, err, sizeof err);
    if (e != RLHF_OK) {
        fprintf(stderr, "parity: %s: %s (%s)\n", name, err, rlhf_strerror(e));
        return -1;
    }
    return 0;
}

static int n_layers_of(const model_t *m, int k) {
    return model_tensor_per_layer(k) ? m->cfg.n_layers : 1;
}

/* Fill dst (a parameter-shaped blob of m) from tensors "<prefix><hf name>",
 * checking each shape and that the tensors cover the blob exactly. */
static int load_blob(const fixture_t *f, const char *prefix, float *dst) {
    size_t covered = 0;
    for (int k = 0; k < MP_COUNT; k++) {
        for (int l = 0; l < n_layers_of(f->m, k); l++) {
            char name[ST_MAX_NAME], full[ST_MAX_NAME + 16];
            int64_t shape[2] = {0, 0};
            int nd = model_tensor_info(f->m, k, l, name, sizeof name, shape);
            if (nd == 0) continue;
            snprintf(full, sizeof full, "%s%s", prefix, name);
            const st_tensor_t *t = safetensors_find(f->st, full);
            if (!t) {
                fprintf(stderr, "parity: %s: fixture has no %s\n", f->label, full);
                return -1;
            }
            size_t numel = (size_t)shape[0] * (nd == 2 ? (size_t)shape[1] : 1);
            if (t->ndim != nd || t->shape[0] != shape[0] || (nd == 2 && t->shape[1] != shape[1])) {
                fprintf(stderr, "parity: %s: %s has shape [%lld,%lld] in the fixture, model says [%lld,%lld]\n",
                        f->label, full, (long long)t->shape[0], (long long)(t->ndim > 1 ? t->shape[1] : 0),
                        (long long)shape[0], (long long)(nd > 1 ? shape[1] : 0));
                return -1;
            }
            if (read_f32(f->st, full, dst + model_tensor_offset(f->m, k, l), numel)) return -1;
            covered += numel;
        }
    }
    if (covered != f->m->n_params) {
        fprintf(stderr, "parity: %s: named tensors cover %zu floats of a %zu-float blob\n", f->label, covered,
                f->m->n_params);
        return -1;
    }
    return 0;
}

static void fixture_fini(fixture_t *f) {
    model_acts_destroy(&f->a);
    model_destroy(&f->m);
    safetensors_destroy(&f->st);
    free(f->tokens);
    free(f->targets);
    free(f->c1);
    free(f->c2);
    free(f->c3);
    memset(f, 0, sizeof *f);
}

static int fixture_init(fixture_t *f, const char *file, const char *label) {
    char err[256];
    memset(f, 0, sizeof *f);
    snprintf(f->label, sizeof f->label, "%s", label);
    rlhf_err_t e = safetensors_open(&f->st, fixture_path(file), err, sizeof err);
    if (e != RLHF_OK) {
        fprintf(stderr, "parity: cannot open %s: %s (%s); regenerate with /usr/bin/python3 tests/torch_ref.py\n",
                fixture_path(file), err, rlhf_strerror(e));
        return -1;
    }
    static const char *const keys[] = {
        "vocab_size",      "dim",         "n_layers", "n_heads",    "n_kv_heads",  "hidden_dim", "max_seq_len",
        "tied_embeddings", "scalar_head", "norm_eps", "rope_theta", "temperature", "B",          "T"};
    double v[sizeof keys / sizeof keys[0]];
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (meta_num(f->st, keys[i], &v[i])) goto fail;
    model_config_t cfg = {
        .vocab_size = (int)v[0],
        .dim = (int)v[1],
        .n_layers = (int)v[2],
        .n_heads = (int)v[3],
        .n_kv_heads = (int)v[4],
        .hidden_dim = (int)v[5],
        .max_seq_len = (int)v[6],
        .tied_embeddings = (int)v[7],
        .scalar_head = (int)v[8],
        .norm_eps = (float)v[9],
        .rope_theta = (float)v[10],
    };
    f->temperature = (float)v[11];
    f->B = (int)v[12];
    f->T = (int)v[13];
    if (model_config_validate(&cfg, err, sizeof err) != RLHF_OK) {
        fprintf(stderr, "parity: %s: fixture config rejected: %s\n", label, err);
        goto fail;
    }
    f->m = model_new(&cfg);
    f->a = model_acts_new(&cfg, f->B, f->T);
    size_t bt = (size_t)f->B * f->T;
    f->tokens = malloc(bt * sizeof(int));
    f->targets = malloc(bt * sizeof(int));
    f->c1 = malloc(bt * sizeof(float));
    f->c2 = malloc(bt * sizeof(float));
    f->c3 = malloc(bt * sizeof(float));
    if (!f->m || !f->a || !f->tokens || !f->targets || !f->c1 || !f->c2 || !f->c3) {
        fprintf(stderr, "parity: %s: out of memory\n", label);
        goto fail;
    }
    if (read_i32(f->st, "input.tokens", f->tokens, bt) || read_i32(f->st, "input.targets", f->targets, bt) ||
        read_f32(f->st, "input.c1", f->c1, bt) || read_f32(f->st, "input.c2", f->c2, bt) ||
        read_f32(f->st, "input.c3", f->c3, bt) || load_blob(f, "", f->m->params_mem))
        goto fail;
    return 0;
fail:
    fixture_fini(f);
    return -1;
}

/* max |got - ref| and max |ref| over n; prints one line; returns 1 if within
 * tolerance (absolute, or relative to max |ref| when rel is set). */
static int compare(const char *label, const char *what, const float *got, const float *ref, size_t n, double tol,
                   int rel, int verbose, double *measure) {
    double dmax = 0, rmax = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)ref[i]);
        if (d > dmax || isnan(d)) {
            dmax = isnan(d) ? INFINITY : d;
            at = i;
        }
        if (fabs((double)ref[i]) > rmax) rmax = fabs((double)ref[i]);
    }
    double r = rmax > 0 ? dmax / rmax : dmax;
    double m = rel ? r : dmax;
    int ok = m <= tol;
    if (!verbose) {
        *measure = m;
        return ok;
    }
    printf("parity %s: %-48s max|d| %.2e  max|d|/max|ref| %.2e  (max|ref| %.3g)%s\n", label, what, dmax, r, rmax,
           ok ? "" : "  FAIL");
    if (!ok)
        printf("    worst at [%zu]: C %.9g vs ref %.9g (tolerance %s %.1e)\n", at, (double)got[at], (double)ref[at],
               rel ? "relative" : "absolute", tol);
    *measure = m;
    return ok;
}

static void count(report_t *r, int ok, int fwd, double measure, const char *name) {
    if (fwd) {
        r->fwd_checks++;
        r->fwd_failed += !ok;
        if (measure > r->worst_fwd_abs) r->worst_fwd_abs = measure;
    } else {
        r->grad_checks++;
        r->grad_failed += !ok;
        if (measure >= r->worst_grad_rel) {
            r->worst_grad_rel = measure;
            snprintf(r->worst_grad, sizeof r->worst_grad, "%s", name);
        }
    }
}

/* Forward, backward and every comparison for one fixture. Returns -1 if the
 * fixture could not be run at all. */
static int run_parity(const char *file, const char *label, perturb_t perturb, report_t *r) {
    fixture_t f;
    memset(r, 0, sizeof *r);
    if (fixture_init(&f, file, label)) return -1;
    model_t *m = f.m;
    size_t bt = (size_t)f.B * f.T, V = (size_t)m->cfg.vocab_size;
    float *ref = malloc(bt * V * sizeof(float));
    float *gref = malloc(m->n_params * sizeof(float));
    int rc = -1;
    if (!ref || !gref) goto done;

    if (perturb == PERTURB_WEIGHT) // one element of layer 1's q_proj, by ~half a standard deviation
        m->params_mem[model_tensor_offset(m, MP_WQ, 1) + 7 * m->cfg.dim + 3] += 0.05f;
    if (perturb == PERTURB_COEF) // changes only the gradients: dL/dlogprobs at one scored position
        for (size_t i = 0; i < bt; i++)
            if (f.targets[i] >= 0) {
                f.c1[i] += 0.5f;
                break;
            }

    double meas;
    int ok, verbose = perturb == PERTURB_NONE; // perturbed runs print their summary only
    model_forward(m, f.a, f.tokens, f.targets, f.B, f.T, f.temperature);

    const float *logits = model_acts_logits(f.a);
    if (read_f32(f.st, "expect.logits", ref, bt * V)) goto done;
    if (!logits) {
        printf("parity %s: model_acts_logits is NULL after a forward with targets  FAIL\n", label);
        count(r, 0, 1, INFINITY, "logits");
    } else {
        ok = compare(label, "logits", logits, ref, bt * V, TOL_FWD_ABS, 0, verbose, &meas);
        count(r, ok, 1, meas, "logits");
    }

    static const char *const outs[] = {"logprobs", "entropy", "values"};
    const float *got[3] = {model_acts_logprobs(f.a), model_acts_entropy(f.a), model_acts_values(f.a)};
    double loss = 0, loss_scale = 0;
    const float *coef[3] = {f.c1, f.c2, f.c3};
    for (int q = 0; q < 3; q++) {
        char name[32];
        snprintf(name, sizeof name, "expect.%s", outs[q]);
        if (read_f32(f.st, name, ref, bt)) goto done;
        if (q == 2 && !m->cfg.scalar_head) {
            /* model.h says NULL without a head; a zero-filled buffer is as
             * safe for the loss, so only non-zero values fail. */
            int nonzero = 0;
            for (size_t i = 0; got[q] && i < bt; i++) nonzero |= got[q][i] != 0.0f;
            if (got[q])
                printf("parity %s: note: values are %s, not NULL, without a scalar head (model.h says NULL)%s\n", label,
                       nonzero ? "non-zero" : "all zero", nonzero ? "  FAIL" : "");
            if (nonzero) count(r, 0, 1, INFINITY, "values");
            continue;
        }
        if (!got[q]) {
            printf("parity %s: %s is NULL  FAIL\n", label, outs[q]);
            count(r, 0, 1, INFINITY, outs[q]);
            continue;
        }
        ok = compare(label, outs[q], got[q], ref, bt, TOL_FWD_ABS, 0, verbose, &meas);
        count(r, ok, 1, meas, outs[q]);
        for (size_t i = 0; i < bt; i++) {
            loss += (double)coef[q][i] * got[q][i];
            loss_scale += fabs((double)coef[q][i] * got[q][i]);
        }
    }
    float loss_ref;
    if (read_f32(f.st, "expect.loss", &loss_ref, 1)) goto done;
    double dl = fabs(loss - loss_ref) / (loss_scale > 0 ? loss_scale : 1);
    ok = dl <= TOL_LOSS_REL;
    if (verbose)
        printf("parity %s: %-48s C %.7f ref %.7f  |d|/sum|terms| %.2e%s\n", label, "loss", loss, (double)loss_ref, dl,
               ok ? "" : "  FAIL");
    count(r, ok, 1, 0, "loss");

    if (model_alloc_grads(m) != RLHF_OK) {
        fprintf(stderr, "parity: %s: model_alloc_grads failed\n", label);
        goto done;
    }
    model_zero_grads(m);
    model_backward(m, f.a, f.c1, f.c2, m->cfg.scalar_head ? f.c3 : NULL);
    if (load_blob(&f, "grad.", gref)) goto done;
    for (int k = 0; k < MP_COUNT; k++) {
        for (int l = 0; l < n_layers_of(m, k); l++) {
            char name[ST_MAX_NAME], what[ST_MAX_NAME + 8];
            int64_t shape[2];
            int nd = model_tensor_info(m, k, l, name, sizeof name, shape);
            if (nd == 0) continue;
            size_t off = model_tensor_offset(m, k, l);
            size_t numel = (size_t)shape[0] * (nd == 2 ? (size_t)shape[1] : 1);
            snprintf(what, sizeof what, "grad %s", name);
            ok = compare(label, what, m->grads_mem + off, gref + off, numel, TOL_GRAD_REL, 1, verbose, &meas);
            count(r, ok, 0, meas, name);
        }
    }
    printf("parity %s: %d/%d forward checks and %d/%d gradient checks passed; worst forward max|d| %.2e, "
           "worst gradient %.2e relative (%s)%s\n",
           label, r->fwd_checks - r->fwd_failed, r->fwd_checks, r->grad_checks - r->grad_failed, r->grad_checks,
           r->worst_fwd_abs, r->worst_grad_rel, r->worst_grad,
           perturb == PERTURB_NONE ? "" : " [perturbed on purpose: failures expected]");
    rc = 0;
done:
    free(ref);
    free(gref);
    fixture_fini(&f);
    return rc;
}

static void test_parity_tiny(void **state) {
    (void)state;
    report_t r;
    assert_int_equal(run_parity("parity_tiny.safetensors", "tiny", PERTURB_NONE, &r), 0);
    assert_true(r.fwd_checks == 5 && r.grad_checks == 1 + 4 * 9 + 3);
    assert_int_equal(r.fwd_failed, 0);
    assert_int_equal(r.grad_failed, 0);
}

static void test_parity_tiny_tied(void **state) {
    (void)state;
    report_t r;
    assert_int_equal(run_parity("parity_tiny_tied.safetensors", "tiny-tied", PERTURB_NONE, &r), 0);
    assert_true(r.fwd_checks == 4 && r.grad_checks == 1 + 4 * 9 + 1);
    assert_int_equal(r.fwd_failed, 0);
    assert_int_equal(r.grad_failed, 0);
}

/* The checks above are only worth something if they can fail. */
static void test_parity_checks_can_fail(void **state) {
    (void)state;
    report_t r;
    assert_int_equal(run_parity("parity_tiny.safetensors", "perturbed-weight", PERTURB_WEIGHT, &r), 0);
    assert_int_equal(r.fwd_failed, r.fwd_checks); // every output moves, and so the loss
    assert_true(r.grad_failed >= r.grad_checks / 2);
    assert_int_equal(run_parity("parity_tiny.safetensors", "perturbed-coef", PERTURB_COEF, &r), 0);
    assert_int_equal(r.fwd_failed, 1); // only the loss, which uses the coefficients
    assert_true(r.grad_failed >= r.grad_checks / 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parity_tiny),
        cmocka_unit_test(test_parity_tiny_tied),
        cmocka_unit_test(test_parity_checks_can_fail),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
