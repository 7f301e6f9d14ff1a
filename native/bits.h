/* Bit I/O shared by the codec: little-endian, least-significant bit first (SPEC.md §Bits). */
#ifndef RINGTAIL_BITS_H
#define RINGTAIL_BITS_H

#include <stdint.h>
#include <string.h>

static inline uint64_t rt_load64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline void rt_store64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

static inline uint64_t bits_of(double d) {
    uint64_t u;
    memcpy(&u, &d, 8);
    return u;
}

static inline double double_of(uint64_t u) {
    double d;
    memcpy(&d, &u, 8);
    return d;
}

static inline uint64_t rt_mask(unsigned w) { return w >= 64 ? ~(uint64_t)0 : ((uint64_t)1 << w) - 1; }

static inline unsigned rt_bitlen(uint64_t v) { return v ? 64u - (unsigned)__builtin_clzll(v) : 0u; }

static inline uint64_t rt_zigzag(uint64_t v) { return (v << 1) ^ (uint64_t)((int64_t)v >> 63); }

static inline uint64_t rt_unzigzag(uint64_t z) { return (z >> 1) ^ (uint64_t)-(int64_t)(z & 1); }

/* Writer: `acc` holds `fill` (< 64) pending bits; full words are stored to `p`. The caller
 * guarantees room for every byte it writes (rt_encode_bound). */
typedef struct {
    uint8_t *p;
    uint64_t acc;
    unsigned fill;
} rt_bitw;

static inline void rt_put(rt_bitw *w, uint64_t v, unsigned n) { /* v < 2^n, n <= 64 */
    w->acc |= v << w->fill; /* fill < 64: defined */
    if (w->fill + n >= 64) {
        rt_store64(w->p, w->acc);
        w->p += 8;
        w->acc = w->fill ? v >> (64 - w->fill) : 0;
        w->fill = w->fill + n - 64;
    } else {
        w->fill += n;
    }
}

/* Flushes the pending bits (zero-padded to a byte) and returns the end pointer. */
static inline uint8_t *rt_flush(rt_bitw *w) {
    for (unsigned i = 0; i < w->fill; i += 8) *w->p++ = (uint8_t)(w->acc >> i);
    w->acc = 0;
    w->fill = 0;
    return w->p;
}

/* Reader over [base, base+len): reads past the end return zero bits instead of touching
 * memory, and the caller checks rt_overrun() once per field group; so a hostile stream costs
 * at most the loop bound the caller already validated. */
typedef struct {
    const uint8_t *base;
    size_t len;
    size_t pos; /* in bits */
} rt_bitr;

static inline uint64_t rt_peek57(const rt_bitr *r) { /* at least 57 valid bits */
    size_t byte = r->pos >> 3;
    uint64_t v;
    if (byte + 8 <= r->len) {
        v = rt_load64(r->base + byte);
    } else {
        v = 0;
        for (size_t i = 0; byte + i < r->len && i < 8; i++) v |= (uint64_t)r->base[byte + i] << (8 * i);
    }
    return v >> (r->pos & 7);
}

static inline uint64_t rt_get(rt_bitr *r, unsigned n) { /* n <= 57 */
    uint64_t v = rt_peek57(r) & rt_mask(n);
    r->pos += n;
    return v;
}

static inline uint64_t rt_get64(rt_bitr *r, unsigned n) { /* n <= 64 */
    if (n <= 57) return rt_get(r, n);
    uint64_t lo = rt_get(r, 32);
    return lo | (rt_get(r, n - 32) << 32);
}

static inline int rt_overrun(const rt_bitr *r) { return r->pos > (uint64_t)r->len * 8; }

#endif
