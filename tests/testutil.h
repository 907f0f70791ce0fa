/*
 * testutil.h - small helpers shared by the C tests (header-only).
 */
#ifndef RLHF_TESTUTIL_H
#define RLHF_TESTUTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/rng.h"

static inline float *tu_randn(rng_t *r, size_t n, float scale) {
    float *p = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) p[i] = scale * rng_normal(r);
    return p;
}

static inline float *tu_zeros(size_t n) {
    return calloc(n ? n : 1, sizeof(float));
}

/* max |a-b| */
static inline double tu_maxabs(const float *a, const float *b, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > m || isnan(d)) m = isnan(d) ? INFINITY : d;
    }
    return m;
}

static inline double tu_maxabs1(const float *a, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++) m = fabs(a[i]) > m ? fabs(a[i]) : m;
    return m;
}

/* sum r .* x in double */
static inline double tu_dot(const float *r, const float *x, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)r[i] * x[i];
    return s;
}

#endif
