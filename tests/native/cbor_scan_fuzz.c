/* Sanitizer driver for native/cbor_scan.c (built by test_native_sanitizers.py with ASan +
 * UBSan; its results against the Python reference are checked by
 * tests/protocol/test_cbor_scan_native.py).
 *
 *   cbor_scan_fuzz N_FUZZ SEED [SEED_FILE]
 *
 * 1. Fixed hostile shapes: 100,000 nesting levels at every depth limit, maps of 20,000 keys
 *    with and without a duplicate (the hash table path), lengths of 2^64 - 1, every 1- and
 *    2-byte input.
 * 2. N_FUZZ inputs: generated CBOR trees (maps, arrays, strings with random UTF-8-ish bytes,
 *    every argument width) and the items of SEED_FILE (each a u32 length and the bytes: the
 *    protocol's test vectors), mutated, each in an exact-size heap buffer so any read past
 *    its end is caught; the scan must return RT_OK, a reason 1..17 with an offset within
 *    the input, or RT_E_NOMEM.
 * Prints "ok <fuzzed> <accepted>" and exits 0, or exits 1 naming the failure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_util.h"
#include "ringtail_native.h"

#define CAP (1 << 16)
static uint8_t gen[CAP];
static size_t gen_len;

static void put(uint8_t b) {
    if (gen_len < CAP) gen[gen_len++] = b;
}

static void head(unsigned major, uint64_t arg) {
    if (arg < 24) {
        put((uint8_t)(major << 5 | arg));
        return;
    }
    int width = arg < 0x100 ? 1 : arg < 0x10000 ? 2 : arg < 0x100000000ull ? 4 : 8;
    if (rnd() % 16 == 0) width = 8; /* sometimes not in shortest form */
    put((uint8_t)(major << 5 | (width == 1 ? 24 : width == 2 ? 25 : width == 4 ? 26 : 27)));
    for (int i = width - 1; i >= 0; i--) put((uint8_t)(arg >> (8 * i)));
}

static void tree(int depth) {
    switch (rnd() % (depth > 6 ? 5 : 8)) {
    case 0:
        head(rnd() % 2, rnd() >> (rnd() % 64));
        return;
    case 1: { /* a string: ASCII, UTF-8 sequences or random bytes */
        size_t n = rnd() % 20;
        head(2 + rnd() % 2, n);
        for (size_t i = 0; i < n; i++) {
            uint64_t r = rnd();
            put(r % 4 ? (uint8_t)(0x20 + r % 90) : (uint8_t)(r >> 8));
        }
        return;
    }
    case 2:
        put((uint8_t)(0xF4 + rnd() % 4)); /* false, true, null, undefined */
        return;
    case 3:
        put(0xFB);
        for (int i = 0; i < 8; i++) put((uint8_t)rnd());
        return;
    case 4:
        put((uint8_t)rnd()); /* anything at all */
        return;
    case 5:
    case 6: { /* a map; keys sometimes repeat */
        size_t n = rnd() % 24 == 0 ? 17 + rnd() % 40 : rnd() % 6;
        head(5, n);
        for (size_t i = 0; i < n; i++) {
            head(0, rnd() % 8 == 0 ? rnd() % (i + 1) : i);
            tree(depth + 1);
        }
        return;
    }
    default: {
        size_t n = rnd() % 6;
        head(4, n);
        for (size_t i = 0; i < n; i++) tree(depth + 1);
    }
    }
}

static size_t accepted;

/* Scan an exact-size heap copy of p[0..len) and check what it returned. */
static void scan(const uint8_t *p, size_t len, size_t max_depth) {
    uint8_t *copy = malloc(len ? len : 1);
    if (len) memcpy(copy, p, len);
    uint64_t out[2];
    int r = rt_cbor_scan(copy, len, max_depth, out);
    if (r == RT_OK) {
        accepted++;
    } else if (r == RT_E_NOMEM) {
        FAIL("unexpected RT_E_NOMEM at length %zu", len);
    } else if (r < RT_SCAN_EMPTY || r > RT_SCAN_TRAILING) {
        FAIL("scan returned %d", r);
    } else if (out[0] > len || (out[0] == len && r != RT_SCAN_MISSING && r != RT_SCAN_EMPTY)) {
        FAIL("reason %d at offset %llu of %zu bytes", r, (unsigned long long)out[0], len);
    }
    free(copy);
}

static void fixed_shapes(void) {
    static uint8_t big[1 << 18];
    for (size_t depth = 0; depth < 40; depth++) { /* nesting at and around every limit */
        size_t n = 100000;
        memset(big, 0x81, n);
        big[n] = 0;
        scan(big, n + 1, depth);
        scan(big, n, depth);
        scan(big, n + 1, depth * 10000);
    }
    scan(big, 100001, (size_t)-1);
    /* a map of 20,000 keys (256..20255: all three bytes in shortest form): distinct, then
     * with the last one repeating key 263 */
    size_t len = 0;
    big[len++] = 0xB9, big[len++] = 20000 >> 8, big[len++] = 20000 & 0xFF;
    for (uint32_t k = 256; k < 20256; k++) {
        big[len++] = 0x19, big[len++] = (uint8_t)(k >> 8), big[len++] = (uint8_t)k;
        big[len++] = 0xF6;
    }
    size_t before = accepted;
    scan(big, len, 8);
    if (accepted != before + 1) FAIL("20,000 distinct keys refused");
    big[len - 3] = 1, big[len - 2] = 7;
    scan(big, len, 8);
    if (accepted != before + 1) FAIL("a duplicate among 20,000 keys accepted");
    static const uint8_t heads[] = {0x5B, 0x7B, 0x9B, 0xBB};
    for (int h = 0; h < 4; h++) {
        uint8_t b[13] = {heads[h], 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
        scan(b, sizeof b, 8);
    }
    for (unsigned a = 0; a < 256; a++) {
        uint8_t one = (uint8_t)a;
        scan(&one, 1, 8);
        for (unsigned c = 0; c < 256; c++) {
            uint8_t two[2] = {(uint8_t)a, (uint8_t)c};
            scan(two, 2, 8);
        }
    }
}

#define MAX_SEEDS 512
static uint8_t *seed[MAX_SEEDS];
static size_t seed_len[MAX_SEEDS];
static int n_seeds;

static void load_seeds(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) FAIL("cannot open %s", path);
    uint32_t len;
    while (n_seeds < MAX_SEEDS && fread(&len, 4, 1, f) == 1) {
        uint8_t *b = malloc(len ? len : 1);
        if (fread(b, 1, len, f) != len) FAIL("short read in %s", path);
        seed[n_seeds] = b;
        seed_len[n_seeds++] = len;
    }
    fclose(f);
}

int main(int argc, char **argv) {
    if (argc < 3) FAIL("usage: cbor_scan_fuzz N_FUZZ SEED [SEED_FILE]");
    long n_fuzz = atol(argv[1]);
    rng_state = strtoull(argv[2], NULL, 10) | 1;
    if (argc > 3) load_seeds(argv[3]);
    fixed_shapes();
    accepted = 0;
    static uint8_t buf[CAP + 64];
    for (long i = 0; i < n_fuzz; i++) {
        size_t len;
        if (n_seeds && rnd() % 2) {
            int s = (int)(rnd() % (uint64_t)n_seeds);
            len = seed_len[s] < CAP ? seed_len[s] : CAP;
            memcpy(buf, seed[s], len);
        } else {
            gen_len = 0;
            tree(0);
            len = gen_len;
            memcpy(buf, gen, len);
        }
        int mutations = (int)(rnd() % 5);
        for (int m = 0; m < mutations && len; m++) {
            size_t at = rnd() % len;
            switch (rnd() % 4) {
            case 0: buf[at] = (uint8_t)rnd(); break;
            case 1: buf[at] ^= (uint8_t)(1u << (rnd() % 8)); break;
            case 2: len = at; break; /* cut */
            default:
                if (len < CAP) { /* insert a byte */
                    memmove(buf + at + 1, buf + at, len - at);
                    buf[at] = (uint8_t)rnd();
                    len++;
                }
            }
        }
        scan(buf, len, rnd() % 4 ? 8 : rnd() % 70);
    }
    printf("ok %ld %zu\n", n_fuzz, accepted);
    return 0;
}
