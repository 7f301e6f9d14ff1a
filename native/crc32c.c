/* CRC-32C: portable slicing-by-8; on x86-64 SSE4.2 crc32q, 128-bit PCLMULQDQ folding beside
 * crc32q streams, and AVX-512 VPCLMULQDQ folding; on aarch64 the ARMv8 CRC instructions.
 *
 * The crc32-instruction paths run three independent streams over adjacent chunks to hide the
 * instruction's 3-cycle latency, then merge them with "shift by N zero bytes" tables
 * (a GF(2) linear operator, as in zlib's crc32_combine and Mark Adler's crc32c.c). The
 * folding paths reduce long buffers with carry-less multiplication; their constants are
 * computed below from the polynomial and derived in native/DESIGN.md. */
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
static uint32_t (*crc_impl)(uint32_t, const uint8_t *, size_t);
static const char *crc_backend = "portable";
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;
/* Paths, each needing the ones before it. RINGTAIL_CRC32C_PATH names one (the best the CPU
 * has at or below it is used); RINGTAIL_CRC32C_PORTABLE=1 is the older switch for the first. */
enum { PATH_PORTABLE, PATH_HW, PATH_PCLMUL, PATH_VPCLMUL, PATH_COUNT };
static int path_available[PATH_COUNT] = {1, 0, 0, 0};

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

static inline uint32_t shift(uint32_t table[4][256], uint32_t crc) {
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
    return __builtin_cpu_supports("sse4.2") != 0;
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
/* x^n mod P in the reflected representation (coefficient of x^d at bit 31 - d): multiplying
 * by x is one step of the bitwise CRC. Used at start-up to build the folding and shifting
 * constants below (native/DESIGN.md derives them). */
static uint32_t xpow_mod(uint32_t n) {
    uint32_t r = 0x80000000u; /* x^0 */
    while (n--) r = r & 1 ? (r >> 1) ^ POLY : r >> 1;
    return r;
}

/* Folding with carry-less multiplication. A 128-bit lane loaded from 16 message bytes holds
 * A (bytes 0-7, higher degree) in its low qword and B (bytes 8-15) in its high qword; the
 * lane is the polynomial A * x^64 + B, with reflected qwords (coefficient of x^(63-j) at bit
 * j). Moving it D bits later in the message multiplies it by x^D:
 *     A * x^(D+64) + B * x^D  ==  A * (x^(D+64) mod P) + B * (x^D mod P)   (mod P).
 * PCLMULQDQ of two reflected qwords puts the coefficient of x^(126-i) at bit i of its 128-bit
 * result, one place short of the lane convention (x^(127-i)): read as a lane, the product is
 * A * k * x. So the constants are x^(D+63) mod P for A and x^(D-1) mod P for B, each in the
 * top half of a reflected qword (xpow_mod(...) << 32): fold_const below. */
static void fold_const(uint64_t k[2], uint32_t bits) {
    k[0] = (uint64_t)xpow_mod(bits + 63) << 32;
    k[1] = (uint64_t)xpow_mod(bits - 1) << 32;
}

/* ---- 128-bit PCLMULQDQ + crc32 (SSE4.2 and PCLMUL, no AVX) ----
 * Each iteration folds 64 bytes into four xmm accumulators (eight PCLMULQDQ, port 5 on
 * Intel) and, in the same loop, runs three crc32q streams over PCL_STREAM bytes each
 * (port 1): the two units work side by side, so the loop consumes more than the 8 bytes
 * per cycle either one alone is limited to. A block is
 *     [ PCL_F bytes folded | PCL_S bytes stream 1 | PCL_S stream 2 | PCL_S stream 3 ]
 * The streams start from 0; their CRCs are merged into one register value (shifting stream
 * 1 by 2*PCL_S bytes and stream 2 by PCL_S bytes) which is XOR-ed into the first four bytes
 * of the next block's folded part, exactly as an initial CRC is XOR-ed into a message's first
 * bytes. The accumulators jump over the streamed part with a fold by 64 + 3*PCL_S bytes, so
 * the blocks chain without reducing the accumulators. After the last block: plain 64-byte
 * folds, a 16-byte fold, and the crc32 instruction reduces the 128-bit remainder (as in
 * crc_fold), a clmul shift settles a still pending stream CRC, crc32q finishes the tail. */
#define PCL_TARGET __attribute__((target("pclmul,sse4.2")))
#ifndef PCL_STREAM
#define PCL_STREAM 24 /* bytes per stream per iteration: 72 streamed for 64 folded */
#endif
#ifndef PCL_ITERS
#define PCL_ITERS 12 /* iterations per block: 1632-byte blocks */
#endif
#define PCL_F (64 * PCL_ITERS)
#define PCL_S (PCL_STREAM * PCL_ITERS)
#define PCL_BLOCK (PCL_F + 3 * PCL_S)
/* The dispatcher's threshold (the kernel itself takes 64 bytes and more). */
#ifndef PCL_MIN_BYTES
#define PCL_MIN_BYTES 128
#endif
static uint64_t pcl_k512[2], pcl_k128[2], pcl_kjump[2];
/* x^(8n - 33) mod P for n = PCL_S, 2*PCL_S, 3*PCL_S bytes: see shift_clmul. */
static uint64_t pcl_shift1, pcl_shift2, pcl_shift3;

PCL_TARGET static inline __m128i fold16(__m128i x, __m128i k, __m128i data) {
    return _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00),
                                       _mm_clmulepi64_si128(x, k, 0x11)),
                         data);
}

/* A CRC register value moved n bytes later (n zero bytes appended), k = x^(8n-33) mod P:
 * the 32x32 carry-less product c * k (reflected, so it stands for c * k * x as a 64-bit
 * quantity) is reduced by crc32q, which multiplies by x^32 mod P: c * x^(8n). */
PCL_TARGET static inline uint32_t shift_clmul(uint32_t c, uint64_t k) {
    __m128i v = _mm_clmulepi64_si128(_mm_cvtsi32_si128((int)c), _mm_cvtsi64_si128((long long)k), 0);
    return (uint32_t)_mm_crc32_u64(0, (uint64_t)_mm_cvtsi128_si64(v));
}

#define LOAD128(q) _mm_loadu_si128((const __m128i *)(const void *)(q))

/* len >= 64. */
PCL_TARGET static uint32_t crc_pclmul(uint32_t crc, const uint8_t *p, size_t len) {
    const __m128i k512 = LOAD128(pcl_k512), kjump = LOAD128(pcl_kjump);
    /* The lanes start as 64 zero bytes before p, and the initial register is XOR-ed into
     * p[0..3] like a stream CRC: every fold step is then the same. */
    __m128i x0 = _mm_setzero_si128(), x1 = x0, x2 = x0, x3 = x0;
    __m128i k = k512;
    uint32_t pend = ~crc; /* a register value waiting to enter the next folded bytes */
    int gap = 0;          /* 1 while the accumulators sit before a streamed part */
    while (len >= PCL_BLOCK) {
        const uint8_t *s = p + PCL_F;
        uint64_t c1 = 0, c2 = 0, c3 = 0;
        x0 = fold16(x0, k, _mm_xor_si128(LOAD128(p), _mm_cvtsi32_si128((int)pend)));
        x1 = fold16(x1, k, LOAD128(p + 16));
        x2 = fold16(x2, k, LOAD128(p + 32));
        x3 = fold16(x3, k, LOAD128(p + 48));
        for (int i = 0;;) {
            for (int q = 0; q < PCL_STREAM; q += 8) {
                c1 = _mm_crc32_u64(c1, load64(s + q));
                c2 = _mm_crc32_u64(c2, load64(s + PCL_S + q));
                c3 = _mm_crc32_u64(c3, load64(s + 2 * PCL_S + q));
            }
            s += PCL_STREAM;
            if (++i == PCL_ITERS) break;
            p += 64;
            x0 = fold16(x0, k512, LOAD128(p));
            x1 = fold16(x1, k512, LOAD128(p + 16));
            x2 = fold16(x2, k512, LOAD128(p + 32));
            x3 = fold16(x3, k512, LOAD128(p + 48));
        }
        pend = shift_clmul((uint32_t)c1, pcl_shift2) ^ shift_clmul((uint32_t)c2, pcl_shift1) ^
               (uint32_t)c3;
        p = s + 2 * PCL_S;
        len -= PCL_BLOCK;
        k = kjump;
        gap = 1;
    }
    while (len >= 64) {
        x0 = fold16(x0, k, _mm_xor_si128(LOAD128(p), _mm_cvtsi32_si128((int)pend)));
        x1 = fold16(x1, k, LOAD128(p + 16));
        x2 = fold16(x2, k, LOAD128(p + 32));
        x3 = fold16(x3, k, LOAD128(p + 48));
        k = k512;
        pend = 0;
        gap = 0;
        p += 64;
        len -= 64;
    }
    const __m128i k128 = LOAD128(pcl_k128);
    __m128i t = fold16(x0, k128, x1);
    t = fold16(t, k128, x2);
    t = fold16(t, k128, x3);
    if (!gap)
        for (; len >= 16; p += 16, len -= 16) t = fold16(t, k128, LOAD128(p));
    /* t is congruent to everything up to p (or up to the last folded byte if gap): its CRC
     * from a zero register is the register there. */
    uint32_t c = (uint32_t)_mm_crc32_u64(0, (uint64_t)_mm_cvtsi128_si64(t));
    c = (uint32_t)_mm_crc32_u64(c, (uint64_t)_mm_extract_epi64(t, 1));
    if (gap) c = shift_clmul(c, pcl_shift3) ^ pend;
    for (; len >= 8; p += 8, len -= 8) c = (uint32_t)_mm_crc32_u64(c, load64(p));
    for (; len; p++, len--) c = _mm_crc32_u8(c, *p);
    return ~c;
}

static void pclmulqdq_init(void) {
    fold_const(pcl_k512, 512);
    fold_const(pcl_k128, 128);
    fold_const(pcl_kjump, 8 * (64 + 3 * PCL_S));
    pcl_shift1 = xpow_mod(8 * PCL_S - 33);
    pcl_shift2 = xpow_mod(16 * PCL_S - 33);
    pcl_shift3 = xpow_mod(24 * PCL_S - 33);
}

/* ---- 512-bit VPCLMULQDQ folding (AVX-512) ----
 * The same lanes and constants as above, four per zmm register, 256 bytes per iteration;
 * the hexadecimal constants are fold_const(128), fold_const(512) and fold_const(2048). */
#define FOLD_TARGET __attribute__((target("avx512f,avx512vl,vpclmulqdq,pclmul,sse4.2")))
#define K128_H 0x3743f7bd00000000ull
#define K128_L 0x3171d43000000000ull
#define K512_H 0x1c19243b00000000ull
#define K512_L 0x75bba45b00000000ull
#define K2048_H 0xe9a5d8be00000000ull
#define K2048_L 0x1426a81500000000ull
/* Below this the three-stream crc32 loop is as fast and has no setup. */
#define FOLD_MIN_BYTES 1024

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

/* The dispatchers of the folding paths: each kernel from its threshold up, crc32 streams
 * below (the xmm kernel fills the gap under the zmm one's, where it is faster too). */
#if defined(__x86_64__)
static uint32_t crc_hw_pclmul(uint32_t crc, const uint8_t *p, size_t len) {
    return len >= PCL_MIN_BYTES ? crc_pclmul(crc, p, len) : crc_hw3(crc, p, len);
}

static uint32_t crc_hw_vpclmul(uint32_t crc, const uint8_t *p, size_t len) {
    if (len >= FOLD_MIN_BYTES) return crc_fold(crc, p, len);
    return len >= PCL_MIN_BYTES ? crc_pclmul(crc, p, len) : crc_hw3(crc, p, len);
}
#endif
#endif


static int path_from_name(const char *s) {
    static const struct {
        const char *name;
        int path;
    } names[] = {{"portable", PATH_PORTABLE}, {"hw", PATH_HW},        {"sse42", PATH_HW},
                 {"sse4.2", PATH_HW},         {"armv8-crc", PATH_HW}, {"pclmul", PATH_PCLMUL},
                 {"vpclmul", PATH_VPCLMUL},   {"fold", PATH_VPCLMUL}};
    if (s)
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            if (strcmp(s, names[i].name) == 0) return names[i].path;
    return PATH_COUNT - 1; /* unset, "auto" or unknown: the best there is */
}

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
#ifdef HW_NAME
    path_available[PATH_HW] = detect_hw();
#if defined(__x86_64__)
    pclmulqdq_init();
    path_available[PATH_PCLMUL] = path_available[PATH_HW] && __builtin_cpu_supports("pclmul");
    path_available[PATH_VPCLMUL] = path_available[PATH_PCLMUL] &&
                                   __builtin_cpu_supports("avx512f") &&
                                   __builtin_cpu_supports("avx512vl") &&
                                   __builtin_cpu_supports("vpclmulqdq");
#endif
#endif
    const char *portable = getenv("RINGTAIL_CRC32C_PORTABLE");
    int path = portable && strcmp(portable, "1") == 0
                   ? PATH_PORTABLE
                   : path_from_name(getenv("RINGTAIL_CRC32C_PATH"));
    while (!path_available[path]) path--;
    switch (path) {
#ifdef HW_NAME
    case PATH_HW: crc_impl = crc_hw3, crc_backend = HW_NAME; break;
#if defined(__x86_64__)
    case PATH_PCLMUL: crc_impl = crc_hw_pclmul, crc_backend = HW_NAME "+pclmul"; break;
    case PATH_VPCLMUL: crc_impl = crc_hw_vpclmul, crc_backend = HW_NAME "+vpclmulqdq"; break;
#endif
#endif
    default: crc_impl = crc_sw, crc_backend = "portable";
    }
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
    return path_available[PATH_HW];
}

uint32_t rt_crc32c_hw(uint32_t crc, const uint8_t *data, size_t len) {
    pthread_once(&crc_once, crc_init);
#ifdef HW_NAME
    if (path_available[PATH_HW]) return crc_hw3(crc, data, len);
#endif
    return crc_sw(crc, data, len);
}

int rt_crc32c_pclmul_available(void) {
    pthread_once(&crc_once, crc_init);
    return path_available[PATH_PCLMUL];
}

uint32_t rt_crc32c_pclmul(uint32_t crc, const uint8_t *data, size_t len) {
    pthread_once(&crc_once, crc_init);
#if defined(__x86_64__)
    if (path_available[PATH_PCLMUL] && len >= 64) return crc_pclmul(crc, data, len);
#endif
    return rt_crc32c_hw(crc, data, len);
}

int rt_crc32c_fold_available(void) {
    pthread_once(&crc_once, crc_init);
    return path_available[PATH_VPCLMUL];
}

uint32_t rt_crc32c_fold(uint32_t crc, const uint8_t *data, size_t len) {
    pthread_once(&crc_once, crc_init);
#if defined(__x86_64__)
    if (path_available[PATH_VPCLMUL] && len >= 256) return crc_fold(crc, data, len);
#endif
    return rt_crc32c_hw(crc, data, len);
}

uint32_t rt_crc32c_portable(uint32_t crc, const uint8_t *data, size_t len) {
    pthread_once(&crc_once, crc_init);
    return crc_sw(crc, data, len);
}
