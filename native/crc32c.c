/* CRC-32C: portable slicing-by-8, SSE4.2 (x86-64) and ARMv8 CRC (aarch64) paths.
 *
 * The hardware paths run three independent crc32 streams over adjacent chunks to hide the
 * instruction's 3-cycle latency, then merge them with "shift by N zero bytes" tables
 * (a GF(2) linear operator, as in zlib's crc32_combine and Mark Adler's crc32c.c). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ringtail_native.h"

#define POLY 0x82F63B78u
/* Chunk sizes for the three-stream loop; the merge costs one table shift per chunk. */
#define LONG_CHUNK 8192
#define SHORT_CHUNK 256

static uint32_t slice8[8][256];
static uint32_t shift_long[4][256];
static uint32_t shift_short[4][256];
static int hw_available;
static uint32_t (*crc_impl)(uint32_t, const uint8_t *, size_t);
static const char *crc_backend = "portable";
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static uint64_t load64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v; /* little-endian hosts only: x86-64 and aarch64 Linux */
}

static uint32_t crc_sw(uint32_t crc, const uint8_t *p, size_t len) {
    crc = ~crc;
    while (len && ((uintptr_t)p & 7)) {
        crc = slice8[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
        len--;
    }
    while (len >= 8) {
        uint64_t w = load64(p) ^ crc;
        crc = slice8[7][w & 0xff] ^ slice8[6][(w >> 8) & 0xff] ^ slice8[5][(w >> 16) & 0xff] ^
              slice8[4][(w >> 24) & 0xff] ^ slice8[3][(w >> 32) & 0xff] ^
              slice8[2][(w >> 40) & 0xff] ^ slice8[1][(w >> 48) & 0xff] ^ slice8[0][w >> 56];
        p += 8;
        len -= 8;
    }
    while (len--) crc = slice8[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

/* GF(2) 32x32 matrix helpers: a matrix is 32 columns, column i the image of bit i. */
static uint32_t gf2_times(const uint32_t *mat, uint32_t vec) {
    uint32_t sum = 0;
    for (; vec; vec >>= 1, mat++)
        if (vec & 1) sum ^= *mat;
    return sum;
}

static void gf2_square(uint32_t *square, const uint32_t *mat) {
    for (int n = 0; n < 32; n++) square[n] = gf2_times(mat, mat[n]);
}

/* The operator that appends `len` zero bytes to a (non-inverted) CRC register. */
static void zeros_op(uint32_t *even, size_t len) {
    uint32_t odd[32];
    uint32_t row = 1;
    odd[0] = POLY;
    for (int n = 1; n < 32; n++, row <<= 1) odd[n] = row;
    gf2_square(even, odd); /* 2 zero bits */
    gf2_square(odd, even); /* 4 zero bits */
    do {
        gf2_square(even, odd); /* first pass: 1 zero byte */
        len >>= 1;
        if (len == 0) return;
        gf2_square(odd, even);
        len >>= 1;
    } while (len);
    memcpy(even, odd, sizeof odd);
}

static void shift_table(uint32_t table[4][256], size_t len) {
    uint32_t op[32];
    zeros_op(op, len);
    for (uint32_t n = 0; n < 256; n++) {
        table[0][n] = gf2_times(op, n);
        table[1][n] = gf2_times(op, n << 8);
        table[2][n] = gf2_times(op, n << 16);
        table[3][n] = gf2_times(op, n << 24);
    }
}

static uint32_t shift(uint32_t table[4][256], uint32_t crc) {
    return table[0][crc & 0xff] ^ table[1][(crc >> 8) & 0xff] ^ table[2][(crc >> 16) & 0xff] ^
           table[3][crc >> 24];
}

#if defined(__x86_64__)
#include <nmmintrin.h>
#define HW_U8(c, p) _mm_crc32_u8((c), *(p))
#define HW_U64(c, p) ((uint32_t)_mm_crc32_u64((c), load64(p)))
#define HW_TARGET __attribute__((target("sse4.2")))
#define HW_NAME "sse4.2"
static int detect_hw(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("sse4.2");
}
#elif defined(__aarch64__) && defined(__linux__)
#include <arm_acle.h>
#include <sys/auxv.h>
#ifndef HWCAP_CRC32
#define HWCAP_CRC32 (1 << 7)
#endif
#define HW_U8(c, p) __crc32cb((c), *(p))
#define HW_U64(c, p) __crc32cd((c), load64(p))
#define HW_TARGET __attribute__((target("+crc")))
#define HW_NAME "armv8-crc"
static int detect_hw(void) { return (getauxval(AT_HWCAP) & HWCAP_CRC32) != 0; }
#endif

#if defined(__x86_64__)
#include <immintrin.h>
/* Folding with carry-less multiplication (VPCLMULQDQ on 512-bit registers): the buffer is
 * reduced to one 128-bit value congruent to it modulo P, whose CRC the crc32 instruction then
 * finishes. A 128-bit lane A = H (first 8 bytes, higher degree) : L is moved forward by D bits
 * as H * x^(D+64) + L * x^D; with the bit-reflected operands of PCLMULQDQ, the constants are
 * x * (x^(D+63) mod P) and x * (x^(D-1) mod P), each stored with coefficient d at bit 64 - d
 * (computed by hand from P; checked by the tests against the portable path). */
#define FOLD_TARGET __attribute__((target("avx512f,avx512vl,vpclmulqdq,pclmul,sse4.2")))
#define K128_H 0x3743f7bd00000000ull
#define K128_L 0x3171d43000000000ull
#define K512_H 0x1c19243b00000000ull
#define K512_L 0x75bba45b00000000ull
#define K2048_H 0xe9a5d8be00000000ull
#define K2048_L 0x1426a81500000000ull
/* Below this the three-stream crc32 loop is as fast and has no setup. */
#define FOLD_MIN_BYTES 1024
static int fold_available;

FOLD_TARGET static inline __m512i fold512(__m512i x, __m512i k, __m512i data) {
    return _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(x, k, 0x00),
                                     _mm512_clmulepi64_epi128(x, k, 0x11), data, 0x96);
}

FOLD_TARGET static inline __m128i fold128(__m128i x, __m128i k, __m128i data) {
    return _mm_ternarylogic_epi64(_mm_clmulepi64_si128(x, k, 0x00),
                                  _mm_clmulepi64_si128(x, k, 0x11), data, 0x96);
}

/* len >= 256. */
FOLD_TARGET static uint32_t crc_fold(uint32_t crc, const uint8_t *p, size_t len) {
    const __m512i k2048 = _mm512_broadcast_i32x4(_mm_set_epi64x((long long)K2048_L, (long long)K2048_H));
    const __m512i k512 = _mm512_broadcast_i32x4(_mm_set_epi64x((long long)K512_L, (long long)K512_H));
    const __m128i k128 = _mm_set_epi64x((long long)K128_L, (long long)K128_H);
    /* The initial register is equivalent to XOR-ing it into the first four message bytes. */
    __m512i x0 = _mm512_xor_si512(_mm512_loadu_si512(p),
                                  _mm512_castsi128_si512(_mm_cvtsi32_si128((int)~crc)));
    __m512i x1 = _mm512_loadu_si512(p + 64), x2 = _mm512_loadu_si512(p + 128),
            x3 = _mm512_loadu_si512(p + 192);
    p += 256;
    len -= 256;
    while (len >= 256) {
        x0 = fold512(x0, k2048, _mm512_loadu_si512(p));
        x1 = fold512(x1, k2048, _mm512_loadu_si512(p + 64));
        x2 = fold512(x2, k2048, _mm512_loadu_si512(p + 128));
        x3 = fold512(x3, k2048, _mm512_loadu_si512(p + 192));
        p += 256;
        len -= 256;
    }
    x1 = fold512(x0, k512, x1);
    x2 = fold512(x1, k512, x2);
    x3 = fold512(x2, k512, x3);
    while (len >= 64) {
        x3 = fold512(x3, k512, _mm512_loadu_si512(p));
        p += 64;
        len -= 64;
    }
    __m128i t = _mm512_extracti32x4_epi32(x3, 0);
    t = fold128(t, k128, _mm512_extracti32x4_epi32(x3, 1));
    t = fold128(t, k128, _mm512_extracti32x4_epi32(x3, 2));
    t = fold128(t, k128, _mm512_extracti32x4_epi32(x3, 3));
    /* t is congruent to everything so far (initial register included): its CRC from a zero
     * register, continued over the tail, is the CRC of the whole buffer. */
    uint64_t c = _mm_crc32_u64(0, (uint64_t)_mm_cvtsi128_si64(t));
    c = _mm_crc32_u64(c, (uint64_t)_mm_extract_epi64(t, 1));
    uint32_t c32 = (uint32_t)c;
    for (; len >= 8; p += 8, len -= 8) c32 = (uint32_t)_mm_crc32_u64(c32, load64(p));
    for (; len; p++, len--) c32 = _mm_crc32_u8(c32, *p);
    return ~c32;
}
#endif

#ifdef HW_NAME
/* Three streams over chunks a, a+chunk, a+2*chunk; crc1/crc2 start at 0 because the
 * initial inversion is carried by crc0 alone (CRC is affine, the merge is linear). */
#define THREE_WAY(CHUNK, TABLE)                                      \
    while (len >= 3 * (CHUNK)) {                                     \
        uint32_t crc1 = 0, crc2 = 0;                                 \
        const uint8_t *end = p + (CHUNK);                            \
        do {                                                         \
            crc0 = HW_U64(crc0, p);                                  \
            crc1 = HW_U64(crc1, p + (CHUNK));                        \
            crc2 = HW_U64(crc2, p + 2 * (CHUNK));                    \
            p += 8;                                                  \
        } while (p < end);                                           \
        crc0 = shift(TABLE, crc0) ^ crc1;                            \
        crc0 = shift(TABLE, crc0) ^ crc2;                            \
        p += 2 * (CHUNK);                                            \
        len -= 3 * (CHUNK);                                          \
    }

/* The crc32-instruction path alone: three streams, then words, then bytes. */
HW_TARGET static uint32_t crc_hw3(uint32_t crc, const uint8_t *p, size_t len) {
    uint32_t crc0 = ~crc;
    while (len && ((uintptr_t)p & 7)) {
        crc0 = HW_U8(crc0, p);
        p++;
        len--;
    }
    THREE_WAY(LONG_CHUNK, shift_long)
    THREE_WAY(SHORT_CHUNK, shift_short)
    while (len >= 8) {
        crc0 = HW_U64(crc0, p);
        p += 8;
        len -= 8;
    }
    while (len--) {
        crc0 = HW_U8(crc0, p);
        p++;
    }
    return ~crc0;
}

/* Hardware dispatch: folding for long buffers where the CPU has it, crc32 otherwise. */
static uint32_t crc_hw(uint32_t crc, const uint8_t *p, size_t len) {
#if defined(__x86_64__)
    if (len >= FOLD_MIN_BYTES && fold_available) return crc_fold(crc, p, len);
#endif
    return crc_hw3(crc, p, len);
}
#endif

static void crc_init(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ POLY : c >> 1;
        slice8[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++)
        for (int k = 1; k < 8; k++)
            slice8[k][n] = (slice8[k - 1][n] >> 8) ^ slice8[0][slice8[k - 1][n] & 0xff];
    shift_table(shift_long, LONG_CHUNK);
    shift_table(shift_short, SHORT_CHUNK);
    crc_impl = crc_sw;
#ifdef HW_NAME
    hw_available = detect_hw();
#if defined(__x86_64__)
    fold_available = hw_available && __builtin_cpu_supports("avx512f") &&
                     __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("vpclmulqdq");
#endif
    const char *forced = getenv("RINGTAIL_CRC32C_PORTABLE");
    int portable = forced && strcmp(forced, "1") == 0;
    if (hw_available && !portable) {
        crc_impl = crc_hw;
        crc_backend = HW_NAME;
#if defined(__x86_64__)
        if (fold_available) crc_backend = HW_NAME "+vpclmulqdq";
#endif
    }
#endif
}

uint32_t rt_crc32c(uint32_t crc, const uint8_t *data, size_t len) {
    pthread_once(&crc_once, crc_init);
    return crc_impl(crc, data, len);
}

const char *rt_crc32c_backend(void) {
    pthread_once(&crc_once, crc_init);
    return crc_backend;
}

int rt_crc32c_hw_available(void) {
    pthread_once(&crc_once, crc_init);
    return hw_available;
}

uint32_t rt_crc32c_hw(uint32_t crc, const uint8_t *data, size_t len) {
    pthread_once(&crc_once, crc_init);
#ifdef HW_NAME
    if (hw_available) return crc_hw3(crc, data, len);
#endif
    return crc_sw(crc, data, len);
}

int rt_crc32c_fold_available(void) {
    pthread_once(&crc_once, crc_init);
#if defined(__x86_64__)
    return fold_available;
#else
    return 0;
#endif
}

uint32_t rt_crc32c_fold(uint32_t crc, const uint8_t *data, size_t len) {
    pthread_once(&crc_once, crc_init);
#if defined(__x86_64__)
    if (fold_available && len >= 256) return crc_fold(crc, data, len);
#endif
    return rt_crc32c_hw(crc, data, len);
}

uint32_t rt_crc32c_portable(uint32_t crc, const uint8_t *data, size_t len) {
    pthread_once(&crc_once, crc_init);
    return crc_sw(crc, data, len);
}
