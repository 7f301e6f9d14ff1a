/* CRC-32C self-check of native/crc32c.c alone, for builds the Python extension cannot cover:
 * test_native_crc32c_aarch64.py cross-compiles it for aarch64 and runs it under qemu.
 *
 *   crc32c_check          prints "<backend> <hw available> <checks>" and exits 0,
 *                         or names the first failure and exits 1.
 *
 * Every path (rt_crc32c and each rt_crc32c_* entry, which fall back to a lower path where
 * the CPU lacks theirs) against the RFC 3720 vectors and a bit-at-a-time reference, at every
 * length up to 4 KiB and offset up to 7 (each input copied into an exact-size heap buffer),
 * every split point of a 1100-byte buffer, and long buffers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_util.h"
#include "ringtail_native.h"

typedef uint32_t (*crc_fn)(uint32_t, const uint8_t *, size_t);
static const struct {
    const char *name;
    crc_fn fn;
} paths[] = {{"dispatch", rt_crc32c},
             {"portable", rt_crc32c_portable},
             {"hw", rt_crc32c_hw},
             {"pclmul", rt_crc32c_pclmul},
             {"fold", rt_crc32c_fold}};
#define NPATHS (sizeof paths / sizeof paths[0])

/* The definition: one bit at a time, reflected polynomial 0x82F63B78. */
static uint32_t crc_bitwise(uint32_t crc, const uint8_t *p, size_t len) {
    crc = ~crc;
    while (len--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++) crc = crc & 1 ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
    }
    return ~crc;
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint8_t rnd8(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint8_t)(rng >> 32);
}

static long checks;

static void expect_all(uint32_t seed, const uint8_t *p, size_t len, uint32_t want, const char *what) {
    for (size_t i = 0; i < NPATHS; i++) {
        uint32_t got = paths[i].fn(seed, p, len);
        if (got != want)
            FAIL("%s: %s gives %08x, want %08x (len %zu, seed %08x)", what, paths[i].name, got,
                 want, len, seed);
        checks++;
    }
}

int main(void) {
    /* RFC 3720 appendix B.4 and the catalogue's check value. */
    uint8_t v[48];
    expect_all(0, (const uint8_t *)"123456789", 9, 0xE3069283u, "check value");
    memset(v, 0, 32);
    expect_all(0, v, 32, 0x8A9136AAu, "32 zeros");
    memset(v, 0xff, 32);
    expect_all(0, v, 32, 0x62A8AB43u, "32 0xff");
    for (int i = 0; i < 32; i++) v[i] = (uint8_t)i;
    expect_all(0, v, 32, 0x46DD794Eu, "0..31");
    for (int i = 0; i < 32; i++) v[i] = (uint8_t)(31 - i);
    expect_all(0, v, 32, 0x113FDB5Cu, "31..0");
    static const uint8_t iscsi[48] = {
        0x01, 0xc0, 0, 0, 0, 0, 0, 0, 0,    0, 0, 0, 0,    0, 0, 0, 0x14, 0, 0, 0, 0, 0, 0x04, 0,
        0,    0,    0, 0x14, 0, 0, 0, 0x18, 0x28, 0, 0, 0, 0, 0, 0, 0, 0x02, 0, 0, 0, 0, 0, 0, 0};
    expect_all(0, iscsi, 48, 0xD9963A56u, "iSCSI read command");
    expect_all(0, v, 0, 0, "empty");

    size_t cap = (1u << 20) + 4096;
    uint8_t *buf = malloc(cap);
    if (!buf) FAIL("malloc");
    for (size_t i = 0; i < cap; i++) buf[i] = rnd8();

    /* Every length and offset, exact-size copies; the bitwise reference on every 16th. */
    for (size_t len = 0; len <= 4096; len++) {
        for (size_t off = 0; off < 8; off++) {
            uint8_t *copy = malloc(len ? len : 1);
            if (!copy) FAIL("malloc");
            memcpy(copy, buf + off, len);
            uint32_t seed = (uint32_t)(len * 0x9E3779B1u + off);
            uint32_t want = rt_crc32c_portable(seed, copy, len);
            if ((len & 15) == off && crc_bitwise(seed, copy, len) != want)
                FAIL("portable != bitwise at len %zu", len);
            expect_all(seed, copy, len, want, "length sweep");
            free(copy);
        }
    }
    /* Every split point extends. */
    uint32_t whole = rt_crc32c_portable(0, buf, 1100);
    for (size_t k = 0; k <= 1100; k++)
        for (size_t i = 0; i < NPATHS; i++) {
            if (paths[i].fn(paths[i].fn(0, buf, k), buf + k, 1100 - k) != whole)
                FAIL("split at %zu: %s", k, paths[i].name);
            checks++;
        }
    /* Long buffers: the three-stream chunks (3 x 8 KiB) and the folding loops. */
    static const size_t longs[] = {24575, 24576, 24577, 49159, 100003, 1u << 20};
    for (size_t j = 0; j < sizeof longs / sizeof longs[0]; j++) {
        uint32_t want = crc_bitwise(0x12345678u, buf + 3, longs[j]);
        expect_all(0x12345678u, buf + 3, longs[j], want, "long buffer");
    }
    free(buf);
    printf("%s %d %ld\n", rt_crc32c_backend(), rt_crc32c_hw_available(), checks);
    return 0;
}
