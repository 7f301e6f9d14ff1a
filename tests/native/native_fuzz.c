/* Sanitizer driver for native/ (built by test_native_sanitizers.py with ASan + UBSan).
 *
 *   native_fuzz N_FUZZ SEED [V1_BLOCKS]
 *
 * 1. CRC-32C: vectors, and every hardware path equal to the portable one at many lengths
 *    and offsets (crc32c_check.c, also run under the sanitizers, checks every length).
 * 2. Round trips of generated series (steady, jittered, random timestamps; decimal, ADC,
 *    random-bit and special values), every block copied into an exact-size heap buffer so
 *    any read past its end is caught.
 * 3. N_FUZZ mutated or random blocks: decode must return RT_OK with the declared count or
 *    a negative error; sanitizers catch everything else. Besides the round trips' (format 2)
 *    blocks, the mutations start from the format 1 blocks in the file V1_BLOCKS (each a u32
 *    length and the bytes), which must decode as they are.
 * Prints "ok <roundtrips> <fuzzed> <accepted>" and exits 0, or exits 1 naming the failure. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_util.h"
#include "ringtail_native.h"

#define SEEDS 64
#define MAX_V1_SEEDS 32
static uint8_t *seed_block[SEEDS + MAX_V1_SEEDS];
static size_t seed_len[SEEDS + MAX_V1_SEEDS];
static int n_seeds = SEEDS;

/* Format 1 blocks from a file: each must decode; they join the mutation seeds. */
static size_t load_v1_seeds(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) FAIL("cannot open %s", path);
    uint32_t len;
    size_t loaded = 0;
    while (n_seeds < SEEDS + MAX_V1_SEEDS && fread(&len, 4, 1, f) == 1) {
        uint8_t *block = malloc(len ? len : 1);
        if (fread(block, 1, len, f) != len) FAIL("short read in %s", path);
        size_t count;
        if (block[0] != 1) FAIL("not a format 1 block");
        if (rt_block_count(block, len, &count)) FAIL("format 1 block: count");
        int64_t *ts = malloc((count ? count : 1) * 8);
        double *vs = malloc((count ? count : 1) * 8);
        int err = rt_decode(block, len, ts, vs, count);
        if (err) FAIL("format 1 block: %s", rt_strerror(err));
        free(ts), free(vs);
        seed_block[n_seeds] = block;
        seed_len[n_seeds++] = len;
        loaded++;
    }
    fclose(f);
    return loaded;
}

static void check_crc(void) {
    if (rt_crc32c(0, (const uint8_t *)"123456789", 9) != 0xE3069283u) FAIL("crc vector");
    if (rt_crc32c_portable(0, (const uint8_t *)"123456789", 9) != 0xE3069283u)
        FAIL("crc portable vector");
    size_t cap = 3 * 8192 * 2 + 64;
    uint8_t *buf = malloc(cap);
    for (size_t i = 0; i < cap; i++) buf[i] = (uint8_t)rnd();
    for (int k = 0; k < 400; k++) {
        size_t off = rnd() % 16, len = rnd() % (cap - 16);
        uint8_t *copy = malloc(len ? len : 1); /* exact size: ASan sees any over-read */
        memcpy(copy, buf + off, len);
        uint32_t seed = (uint32_t)rnd();
        uint32_t want = rt_crc32c_portable(seed, copy, len);
        if (rt_crc32c_hw(seed, copy, len) != want) FAIL("crc hw != portable at len %zu", len);
        if (rt_crc32c_pclmul(seed, copy, len) != want)
            FAIL("crc pclmul != portable at len %zu", len);
        if (rt_crc32c_fold(seed, copy, len) != want) FAIL("crc fold != portable at len %zu", len);
        if (rt_crc32c(seed, copy, len) != want) FAIL("crc dispatch != portable at len %zu", len);
        free(copy);
    }
    free(buf);
}

static double pick_value(int kind, size_t i, double *walk) {
    uint64_t u;
    switch (kind) {
    case 0: *walk += (double)((int64_t)(rnd() % 7) - 3); return *walk / 100.0;
    case 1: return (double)((int64_t)(rnd() % 4096) - 2048) * (3.3 / 4096);
    case 2: u = rnd(); { double d; memcpy(&d, &u, 8); return d; }
    case 3: {
        static const double special[] = {0.0, -0.0, INFINITY, -INFINITY, NAN, 5e-324, 1e308};
        return special[rnd() % 7];
    }
    default: return (double)(i / 50);
    }
}

static int64_t pick_ts(int kind, size_t i, int64_t *t) {
    switch (kind) {
    case 0: return *t += 1000;
    case 1: return *t += 1000 + (int64_t)(rnd() % 81) - 40;
    case 2: return (int64_t)rnd();
    default: return *t += (i % 97 == 0) ? -3600000 : 0;
    }
}

static size_t roundtrips(void) {
    size_t done = 0;
    for (int k = 0; k < 400; k++) {
        size_t n = k % 5 == 0 ? rnd() % 3 : rnd() % 3000;
        int tk = (int)(rnd() % 4), vk = (int)(rnd() % 5);
        int64_t *ts = malloc((n ? n : 1) * 8), t = 1767225600000, *t2 = malloc((n ? n : 1) * 8);
        double *vs = malloc((n ? n : 1) * 8), *v2 = malloc((n ? n : 1) * 8), walk = 2100;
        for (size_t i = 0; i < n; i++) {
            ts[i] = pick_ts(tk, i, &t);
            vs[i] = pick_value(vk, i, &walk);
        }
        size_t cap = rt_encode_bound(n), len, count;
        uint8_t *out = malloc(cap);
        if (rt_encode(ts, vs, n, out, cap, NULL, 0, &len)) FAIL("encode failed");
        uint8_t *block = malloc(len);
        memcpy(block, out, len);
        free(out);
        if (rt_block_count(block, len, &count) || count != n) FAIL("count");
        int err = rt_decode(block, len, t2, v2, n);
        if (err) FAIL("decode of a valid block: %s", rt_strerror(err));
        if (n && (memcmp(ts, t2, n * 8) || memcmp(vs, v2, n * 8))) FAIL("round trip differs");
        if (k < SEEDS) {
            seed_block[k] = block;
            seed_len[k] = len;
        } else {
            free(block);
        }
        free(ts), free(t2), free(vs), free(v2);
        done++;
    }
    return done;
}

static size_t fuzz_one(uint8_t *work, size_t cap) {
    size_t len;
    int which = (int)(rnd() % (uint64_t)n_seeds);
    if (rnd() % 10 == 0) { /* random body behind a plausible header, format 1 or 2 */
        len = RT_HEADER_BYTES + rnd() % 600;
        for (size_t i = 0; i < len; i++) work[i] = (uint8_t)rnd();
        work[0] = (uint8_t)(RT_FORMAT_VERSION_MIN + rnd() % 2);
        work[1] = (uint8_t)(rnd() % 2);
        uint32_t n = (uint32_t)(rnd() % 2000);
        if (work[0] == 1) {
            memcpy(work + 2, &n, 4);
        } else { /* varint, 1..2 bytes */
            work[2] = (uint8_t)(n < 128 ? n : (n & 0x7f) | 0x80);
            work[3] = (uint8_t)(n < 128 ? work[3] : n >> 7);
        }
    } else {
        len = seed_len[which];
        memcpy(work, seed_block[which], len);
        for (int m = (int)(rnd() % 4) + 1; m > 0; m--) {
            switch (rnd() % 5) {
            case 0: if (len) work[rnd() % len] ^= (uint8_t)(1u << (rnd() % 8)); break;
            case 1: if (len) work[rnd() % len] = (uint8_t)rnd(); break;
            case 2: len = len ? rnd() % len : 0; break;
            case 3: if (len + 8 <= cap) for (int i = 0; i < 8; i++) work[len++] = (uint8_t)rnd(); break;
            default: if (len >= 6) { uint32_t n = (uint32_t)(rnd() % 1100000); memcpy(work + 2, &n, 4); }
            }
        }
    }
    uint8_t *block = malloc(len ? len : 1);
    memcpy(block, work, len);
    size_t count, accepted = 0;
    int err = rt_block_count(block, len, &count);
    if (!err) {
        if (count > RT_MAX_POINTS || count > 128 * len) FAIL("count bound not enforced");
        int64_t *ts = malloc((count ? count : 1) * 8);
        double *vs = malloc((count ? count : 1) * 8);
        err = rt_decode(block, len, ts, vs, count);
        if (err > 0 || err < RT_E_EXCEPTION) FAIL("unknown error code %d", err);
        accepted = err == RT_OK;
        free(ts), free(vs);
    } else if (err > 0 || err < RT_E_EXCEPTION) {
        FAIL("unknown error code %d", err);
    }
    free(block);
    return accepted;
}

int main(int argc, char **argv) {
    if (argc != 3 && argc != 4) FAIL("usage: native_fuzz N_FUZZ SEED [V1_BLOCKS]");
    long n_fuzz = strtol(argv[1], NULL, 10);
    rng_state = strtoull(argv[2], NULL, 10) | 1;
    check_crc();
    size_t rt = roundtrips();
    if (argc == 4) load_v1_seeds(argv[3]);
    size_t cap = 0;
    for (int i = 0; i < n_seeds; i++) cap = seed_len[i] > cap ? seed_len[i] : cap;
    cap += 4096;
    uint8_t *work = malloc(cap);
    size_t accepted = 0;
    for (long i = 0; i < n_fuzz; i++) accepted += fuzz_one(work, cap);
    free(work);
    for (int i = 0; i < n_seeds; i++) free(seed_block[i]);
    printf("ok %zu %ld %zu\n", rt, n_fuzz, accepted);
    return 0;
}
