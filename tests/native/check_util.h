/* check_util.h: what the C checks under tests/native share (each is one translation unit):
 * a failure that names itself and exits 1, and a seeded xorshift64* generator, so a failing
 * run is repeated by its seed. */
#ifndef RINGTAIL_CHECK_UTIL_H
#define RINGTAIL_CHECK_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define FAIL(...)                     \
    do {                              \
        fprintf(stderr, __VA_ARGS__); \
        fputc('\n', stderr);          \
        exit(1);                      \
    } while (0)

static uint64_t rng_state; /* seed it (non-zero) before rnd() */
static inline uint64_t rnd(void) { /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

#endif
