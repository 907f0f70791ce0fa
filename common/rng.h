/*
 * rng.h - explicit, seedable random state (xoshiro256** seeded by splitmix64).
 *
 * There is no global generator: every user owns an rng_t and passes it down,
 * so runs are reproducible and the state can be checkpointed (4 x uint64).
 */
#ifndef RLHF_RNG_H
#define RLHF_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4];
} rng_t;

void rng_init(rng_t *r, uint64_t seed);
uint64_t rng_u64(rng_t *r);
/* Uniform in [0, 1) with 24 random bits (exactly representable as float). */
float rng_float(rng_t *r);
/* Uniform in [0, 1) with 53 random bits. */
double rng_double(rng_t *r);
/* Uniform integer in [0, n); n > 0. */
uint32_t rng_below(rng_t *r, uint32_t n);
/* Standard normal (Box-Muller, one value per call). */
float rng_normal(rng_t *r);
/* Stateless mixing of a 64-bit value (splitmix64 finaliser); for derived seeds. */
uint64_t rng_mix(uint64_t x);

#endif
