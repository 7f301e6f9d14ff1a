/* XOR mode (SPEC.md §Values, mode 0): Chimp without its 128-value window. */
#include "xor.h"

#include "bits.h"
#include "ringtail_native.h"

static const uint8_t LEAD_ROUND[65] = {
    0,  0,  0,  0,  0,  0,  0,  0,  8,  8,  8,  8,  12, 12, 12, 12, 16,
    16, 18, 18, 20, 20, 22, 22, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24,
    24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24,
    24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24};
static const uint8_t LEAD_CODE[25] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2,
                                      2, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7};
static const uint8_t LEAD_OF_CODE[8] = {0, 8, 12, 16, 18, 20, 22, 24};
#define NO_LEAD 65
/* Trailing zeros above this make the "center bits" code cheaper (Chimp's threshold). */
#define TRAIL_THRESHOLD 6

uint8_t *rt_xor_encode(const double *v, size_t n, uint8_t *out) {
    if (!n) return out;
    uint64_t prev = bits_of(v[0]);
    rt_store64(out, prev);
    rt_bitw bw = {out + 8, 0, 0};
    unsigned stored = NO_LEAD;
    for (size_t i = 1; i < n; i++) {
        uint64_t cur = bits_of(v[i]), x = cur ^ prev;
        prev = cur;
        if (!x) {
            rt_put(&bw, 0, 2);
            stored = NO_LEAD;
            continue;
        }
        unsigned lead = LEAD_ROUND[__builtin_clzll(x)], trail = (unsigned)__builtin_ctzll(x);
        if (trail > TRAIL_THRESHOLD) {
            unsigned sig = 64 - lead - trail;
            rt_put(&bw, 1 | (uint64_t)LEAD_CODE[lead] << 2 | (uint64_t)sig << 5, 11);
            rt_put(&bw, x >> trail, sig);
            stored = NO_LEAD;
        } else if (lead == stored) {
            rt_put(&bw, 2, 2);
            rt_put(&bw, x, 64 - lead);
        } else {
            rt_put(&bw, 3 | (uint64_t)LEAD_CODE[lead] << 2, 5);
            rt_put(&bw, x, 64 - lead);
            stored = lead;
        }
    }
    return rt_flush(&bw);
}

/* Bits encode_xor() writes after the first value: the same decisions, counted; stops early
 * once the count passes `limit` (the caller only needs to know that XOR loses). */
size_t rt_xor_bits(const double *v, size_t n, size_t limit) {
    size_t total = 0;
    unsigned stored = NO_LEAD;
    for (size_t i = 1; i < n && total <= limit; i++) {
        uint64_t x = bits_of(v[i]) ^ bits_of(v[i - 1]);
        if (!x) {
            total += 2;
            stored = NO_LEAD;
            continue;
        }
        unsigned lead = LEAD_ROUND[__builtin_clzll(x)], trail = (unsigned)__builtin_ctzll(x);
        if (trail > TRAIL_THRESHOLD) {
            total += 11 + 64 - lead - trail;
            stored = NO_LEAD;
        } else if (lead == stored) {
            total += 2 + 64 - lead;
        } else {
            total += 5 + 64 - lead;
            stored = lead;
        }
    }
    return total;
}

int rt_xor_decode(const uint8_t *p, size_t len, double *v, size_t n) {
    if (!n) return len ? RT_E_TRAILING : RT_OK;
    if (len < 8) return RT_E_TRUNCATED;
    uint64_t prev = rt_load64(p);
    memcpy(&v[0], &prev, 8);
    rt_bitr br = {p + 8, len - 8, 0};
    unsigned stored = NO_LEAD;
    for (size_t i = 1; i < n; i++) {
        uint64_t hdr = rt_peek57(&br);
        unsigned flag = hdr & 3;
        if (flag == 0) {
            br.pos += 2;
            stored = NO_LEAD;
        } else if (flag == 1) {
            unsigned lead = LEAD_OF_CODE[(hdr >> 2) & 7], sig = (hdr >> 5) & 63;
            br.pos += 11;
            if (sig == 0 || lead + sig > 64 - TRAIL_THRESHOLD - 1) return RT_E_STREAM;
            prev ^= rt_get(&br, sig) << (64 - lead - sig);
            stored = NO_LEAD;
        } else if (flag == 2) {
            if (stored == NO_LEAD) return RT_E_STREAM;
            br.pos += 2;
            prev ^= rt_get64(&br, 64 - stored);
        } else {
            stored = LEAD_OF_CODE[(hdr >> 2) & 7];
            br.pos += 5;
            prev ^= rt_get64(&br, 64 - stored);
        }
        if (rt_overrun(&br)) return RT_E_TRUNCATED;
        memcpy(&v[i], &prev, 8);
    }
    if ((br.pos + 7) / 8 != br.len) return RT_E_TRAILING;
    return RT_OK;
}

