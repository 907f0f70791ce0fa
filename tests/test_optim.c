/*
 * test_optim.c - AdamW against a scalar double-precision reference, global
 * norm clipping, the decay mask, and the warm-up + cosine schedule.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/model.h"
#include "common/optim.h"
#include "tests/testutil.h"

static void test_adamw_matches_reference(void **state) {
    (void)state;
    enum { N = 7, STEPS = 5 };
    adamw_config_t c;
    adamw_config_default(&c);
    c.lr = 0.01f, c.weight_decay = 0.1f, c.grad_clip = 0.0f;
    adamw_t *o = adamw_new(&c, N);
    rng_t r;
    rng_init(&r, 1);
    float p[N];
    double pr[N], m[N] = {0}, v[N] = {0};
    uint8_t mask[N] = {1, 1, 0, 1, 0, 1, 1};
    for (int i = 0; i < N; i++) p[i] = rng_normal(&r), pr[i] = p[i];
    for (int s = 1; s <= STEPS; s++) {
        float g[N];
        for (int i = 0; i < N; i++) g[i] = rng_normal(&r);
        for (int i = 0; i < N; i++) {
            m[i] = 0.9 * m[i] + 0.1 * g[i];
            v[i] = 0.95 * v[i] + 0.05 * (double)g[i] * g[i];
            double mh = m[i] / (1 - pow(0.9, s)), vh = v[i] / (1 - pow(0.95, s));
            pr[i] -= 0.01 * (mh / (sqrt(vh) + 1e-5) + (mask[i] ? 0.1 : 0.0) * pr[i]);
        }
        adamw_update(o, p, g, mask, NULL, NULL);
    }
    double d = 0;
    for (int i = 0; i < N; i++) d = fmax(d, fabs(p[i] - pr[i]));
    printf("adamw vs double reference after %d steps: max |diff| %.2e\n", STEPS, d);
    assert_true(d < 1e-6);
    assert_int_equal(o->step, STEPS);
    adamw_destroy(&o);
    assert_null(o);
}

static void test_clipping(void **state) {
    (void)state;
    adamw_config_t c;
    adamw_config_default(&c);
    c.grad_clip = 1.0f;
    adamw_t *o = adamw_new(&c, 4);
    float p[4] = {0}, g[4] = {3, 4, 0, 0}; /* norm 5 */
    float gn, lr;
    adamw_update(o, p, g, NULL, &gn, &lr);
    assert_float_equal(gn, 5.0f, 1e-6);
    assert_float_equal(grad_global_norm(g, 4), 1.0f, 1e-5); /* clipped in place */
    assert_float_equal(g[0], 0.6f, 1e-5);
    /* below the threshold nothing changes */
    float g2[4] = {0.3f, 0.4f, 0, 0};
    adamw_update(o, p, g2, NULL, &gn, NULL);
    assert_float_equal(g2[0], 0.3f, 0);
    adamw_destroy(&o);
}

static void test_schedule(void **state) {
    (void)state;
    adamw_config_t c;
    adamw_config_default(&c);
    c.lr = 1.0f, c.warmup_steps = 10, c.total_steps = 110, c.min_lr_frac = 0.1f;
    assert_float_equal(adamw_lr_at(&c, 0), 0.1f, 1e-6);
    assert_float_equal(adamw_lr_at(&c, 9), 1.0f, 1e-6);
    assert_float_equal(adamw_lr_at(&c, 10), 1.0f, 1e-6);
    assert_float_equal(adamw_lr_at(&c, 60), 0.55f, 1e-5); /* halfway down the cosine */
    assert_float_equal(adamw_lr_at(&c, 110), 0.1f, 1e-6);
    assert_float_equal(adamw_lr_at(&c, 500), 0.1f, 1e-6);
    c.total_steps = 0; /* constant after warm-up */
    assert_float_equal(adamw_lr_at(&c, 1000), 1.0f, 0);
}

static void test_decay_mask_layout(void **state) {
    (void)state;
    model_config_t cfg;
    model_config_preset(&cfg, "tiny");
    model_t *m = model_new(&cfg);
    uint8_t *mask = malloc(m->n_params);
    model_decay_mask(m, mask);
    size_t zeros = 0;
    for (size_t i = 0; i < m->n_params; i++) zeros += mask[i] == 0;
    /* exactly the norm gains: 2 per layer + the final one */
    assert_int_equal(zeros, (size_t)cfg.dim * (2 * cfg.n_layers + 1));
    assert_int_equal(mask[m->offsets[MP_NORM]], 0);
    assert_int_equal(mask[m->offsets[MP_WQ]], 1);
    free(mask);
    model_destroy(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adamw_matches_reference),
        cmocka_unit_test(test_clipping),
        cmocka_unit_test(test_schedule),
        cmocka_unit_test(test_decay_mask_layout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
