/*
 * ringtail_native.h: CRC-32C, the Ringtail time-series block codec and the CBOR scan.
 *
 * This header is the C contract; native/SPEC.md is the byte layout, native/DESIGN.md the why.
 * Python reaches these functions only through native/__init__.py, which validates arguments
 * first (types, lengths, contiguity) and turns the error codes below into native.CodecError.
 *
 * Units and limits
 *   - Timestamps are int64 in whatever unit the caller uses (Ringtail uses milliseconds since
 *     the Unix epoch). Any int64 sequence round-trips: gaps, repeats, going backwards, and
 *     wrap-around of the differences (all difference arithmetic is modulo 2^64).
 *   - Values are IEEE-754 binary64; every bit pattern round-trips (NaN payloads, -0.0, inf,
 *     subnormals).
 *   - A block holds 0..RT_MAX_POINTS points. Lengths are in bytes.
 *
 * Threading: every function is reentrant and keeps no state between calls except the CRC
 * backend choice, made once (thread-safely, pthread_once) on first use. cffi releases the GIL
 * around every call to these functions (API mode), so large inputs do not block other Python
 * threads.
 *
 * Errors: functions returning int return RT_OK (0) or a negative rt_error; rt_strerror()
 * gives the message. The decoder reads at most `len` bytes of its input, never writes more
 * than the count it reported via rt_block_count(), and allocates at most one frame
 * (RT_FRAME_POINTS items) on the stack; it has no loop whose bound is not derived from `len`
 * or the validated count.
 */
#ifndef RINGTAIL_NATIVE_H
#define RINGTAIL_NATIVE_H

#include <stddef.h>
#include <stdint.h>

/* The block format version written in byte 0 of every block (SPEC.md). Not the library
 * version: it changes only when the bytes change. Readers also accept every older version
 * from RT_FORMAT_VERSION_MIN on (format 1 blocks from devices in the field). */
#define RT_FORMAT_VERSION 2
#define RT_FORMAT_VERSION_MIN 1
/* Largest point count a block may declare: bounds what a decoder allocates (16 bytes per
 * point: 16 MB) before it has read the rest of the block. */
#define RT_MAX_POINTS 1000000
/* Integers are bit-packed in frames of this many items, each with its own width. */
#define RT_FRAME_POINTS 128
/* Decimal mode: largest power of ten used as a scale (10^18 is exact in binary64). */
#define RT_MAX_DECIMAL_EXP 18
/* Most bytes before the timestamp section: version, value mode, count (format 1: a u32;
 * format 2: a varint of at most 3 bytes, so 2..5 bytes). */
#define RT_HEADER_BYTES 6

enum rt_value_mode {
    RT_MODE_XOR = 0,     /* Chimp-style XOR of consecutive bit patterns */
    RT_MODE_DECIMAL = 1, /* value = n / 10^e, n an integer stream, plus exceptions */
    RT_MODE_SCALED = 2,  /* value = n * s for a binary64 factor s (ADC counts x scale) */
};

enum rt_error {
    RT_OK = 0,
    RT_E_TRUNCATED = -1, /* the block ends inside a field it declares */
    RT_E_VERSION = -2,   /* byte 0 is not a format version this library reads */
    RT_E_MODE = -3,      /* unknown value mode, or a mode parameter out of range */
    RT_E_COUNT = -4,     /* count above RT_MAX_POINTS, or more than the block can hold */
    RT_E_FRAME = -5,     /* a frame with width > 64 or an invalid exception list */
    RT_E_TRAILING = -6,  /* bytes left over after the last field */
    RT_E_STREAM = -7,    /* an XOR-mode bit stream with an impossible code */
    RT_E_NOMEM = -8,     /* malloc failed (encoder scratch) */
    RT_E_CAPACITY = -9,  /* the caller's buffer is smaller than the function needs */
    RT_E_EXCEPTION = -10 /* an exception list out of order or out of range */
};

const char *rt_strerror(int err);

/* ---- CRC-32C (Castagnoli, reflected polynomial 0x82F63B78, RFC 3720) ----
 * rt_crc32c(0, "123456789", 9) == 0xE3069283. `crc` is a previous result to extend:
 * rt_crc32c(rt_crc32c(0, a, n), b, m) == CRC of a followed by b.
 * The backend is chosen once at first use, the best the CPU has: on x86-64 SSE4.2 crc32q
 * (three streams) for short buffers, with carry-less-multiplication folding for long ones:
 * AVX-512 VPCLMULQDQ from 1 KiB, else 128-bit PCLMULQDQ running beside crc32q streams from
 * 128 bytes; ARMv8 CRC32CX on aarch64; portable slicing-by-8 anywhere else. The environment
 * at first use can force a path: RINGTAIL_CRC32C_PATH=portable|sse42|pclmul|vpclmul (the best
 * available at or below the one named; "hw" and "armv8-crc" are synonyms of sse42, "fold" of
 * vpclmul), and RINGTAIL_CRC32C_PORTABLE=1 forces the portable one whatever the other says. */
uint32_t rt_crc32c(uint32_t crc, const uint8_t *data, size_t len);
/* The backend in use: "sse4.2+vpclmulqdq", "sse4.2+pclmul", "sse4.2", "armv8-crc" or
 * "portable". */
const char *rt_crc32c_backend(void);
/* Each implementation directly, so one test run covers all of them whatever rt_crc32c
 * chose: rt_crc32c_hw is the crc32-instruction path alone (three streams), rt_crc32c_pclmul
 * the PCLMULQDQ + crc32 kernel (from 64 bytes), rt_crc32c_fold the VPCLMULQDQ kernel (from
 * 256 bytes); shorter buffers go to rt_crc32c_hw. Where the CPU lacks a path (its _available
 * function returns 0), the function falls back to the next path down. */
uint32_t rt_crc32c_portable(uint32_t crc, const uint8_t *data, size_t len);
int rt_crc32c_hw_available(void);
uint32_t rt_crc32c_hw(uint32_t crc, const uint8_t *data, size_t len);
int rt_crc32c_pclmul_available(void);
uint32_t rt_crc32c_pclmul(uint32_t crc, const uint8_t *data, size_t len);
int rt_crc32c_fold_available(void);
uint32_t rt_crc32c_fold(uint32_t crc, const uint8_t *data, size_t len);

/* ---- block codec ----
 * rt_encode_bound(n): bytes an output buffer needs for any n-point input (n <= RT_MAX_POINTS).
 * rt_encode_scratch_bound(n): bytes of scratch memory rt_encode needs for n points.
 * rt_encode(): encodes n points into out (capacity out_cap), stores the block length in
 *   *out_len. `scratch` (8-byte aligned, scratch_cap bytes) is working memory the caller may
 *   reuse between calls, sparing a large malloc per block; NULL makes rt_encode allocate it.
 *   Returns RT_OK, RT_E_COUNT (n too large), RT_E_CAPACITY or RT_E_NOMEM.
 * rt_block_count(): validates the header and that `len` can hold the declared count;
 *   stores the count. Call it first, allocate, then decode.
 * rt_decode(): decodes the whole block into ts[count] and values[count]; `count` must be
 *   what rt_block_count() returned (RT_E_CAPACITY otherwise). On error the output arrays
 *   hold unspecified values.
 */
size_t rt_encode_bound(size_t n);
size_t rt_encode_scratch_bound(size_t n);
int rt_encode(const int64_t *ts, const double *values, size_t n, uint8_t *out, size_t out_cap,
              void *scratch, size_t scratch_cap, size_t *out_len);
int rt_block_count(const uint8_t *block, size_t len, size_t *count);
int rt_decode(const uint8_t *block, size_t len, int64_t *ts, double *values, size_t count);

/* The bounded CBOR scan (cbor_scan.c): the C twin of protocol/cbor_scan.py, which is the
 * reference. rt_cbor_scan() returns RT_OK if data[0..len) is exactly one CBOR item the
 * protocol accepts; one of the positive reasons below, with out[0] = the byte offset the
 * reason names and out[1] = the number in its text (string or element count, additional
 * information, simple value, trailing bytes; else 0); or RT_E_NOMEM if it could not allocate
 * (it allocates only when min(max_depth, len) exceeds 32, more than 128 map keys are open at
 * once, or one map has more than 16 keys). Nesting beyond max_depth is refused. It reads at
 * most `len` bytes, never recurses, and keeps at most min(max_depth, len) frames. */
enum rt_scan_reason {
    RT_SCAN_EMPTY = 1,               /* empty payload */
    RT_SCAN_MISSING = 2,             /* truncated: an item is missing */
    RT_SCAN_ARG_TRUNCATED = 3,       /* truncated: argument runs past the end */
    RT_SCAN_NOT_SHORTEST = 4,        /* argument not in its shortest form */
    RT_SCAN_BREAK = 5,               /* break code outside an indefinite-length item */
    RT_SCAN_AI31 = 6,                /* not well-formed: additional information 31 */
    RT_SCAN_INDEFINITE = 7,          /* indefinite-length items are not accepted */
    RT_SCAN_RESERVED = 8,            /* reserved additional information <out[1]> */
    RT_SCAN_STRING_TRUNCATED = 9,    /* truncated: string of <out[1]> bytes declared */
    RT_SCAN_UTF8 = 10,               /* invalid UTF-8 in text string */
    RT_SCAN_CONTAINER_TRUNCATED = 11, /* truncated: <out[1]> elements declared */
    RT_SCAN_TOO_DEEP = 12,           /* nesting deeper than max_depth levels */
    RT_SCAN_TAG = 13,                /* tags are not part of the schema */
    RT_SCAN_SIMPLE_BELOW_32 = 14,    /* not well-formed: two-byte simple value below 32 */
    RT_SCAN_SIMPLE = 15,             /* simple value <out[1]> is not part of the schema */
    RT_SCAN_DUPLICATE_KEY = 16,      /* duplicate map key */
    RT_SCAN_TRAILING = 17            /* <out[1]> trailing bytes after the item */
};
int rt_cbor_scan(const uint8_t *data, size_t len, size_t max_depth, uint64_t *out);

#endif
