/*
 * vmath.h - a branch-free expf that compilers vectorise.
 *
 * glibc's expf is a scalar call, so a loop over it cannot use SIMD; this
 * one inlines (Cephes-style: n = round(x / ln2), Cody-Waite reduction
 * r = x - n ln2, degree-6 polynomial for e^r, scale by 2^n through the
 * exponent bits). Accurate to ~2 ulp over the finite range; saturates to
 * +inf above 88.7 and to 0 below -86.6 (results under 2e-38 flush to 0). NaN gives NaN.
 */
#ifndef RLHF_VMATH_H
#define RLHF_VMATH_H

#include <stdint.h>
#include <string.h>

static inline float vexpf(float x) {
    const float hi = 88.7f, lo = -86.6f;
    float xc = x > hi ? hi : x;
    xc = xc < lo ? lo : xc;
    /* round to nearest by the 1.5*2^23 trick: vectorises, unlike roundf */
    float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = xc - n * 0.693359375f; /* ln2 split in two for exactness */
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t e = ((int32_t)n + 126) << 23; /* 2^(n-1): n = 128 stays finite */
    float scale;
    memcpy(&scale, &e, sizeof scale);
    float y = p * scale * 2.0f;
    y = x > hi ? __builtin_inff() : y;
    y = x < lo ? 0.0f : y;
    return x != x ? x : y;
}

#endif
