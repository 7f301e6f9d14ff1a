/* The Ringtail block: header, timestamp frames, value section (SPEC.md). Writes format 2,
 * reads formats 1 and 2. */
#include <math.h>
#include <stdlib.h>

#include "bits.h"
#include "frames.h"
#include "ringtail_native.h"
#include "xor.h"

/* Decimal-mode exponent choice looks at this many evenly spaced values (SPEC.md). */
#define DECIMAL_SAMPLE 32
/* Scaled-mode factor search looks at this many evenly spaced values ... */
#define SCALE_SAMPLE 256
/* ... and tries the smallest gap between them divided by 1..SCALE_DIVISORS as the step. */
#define SCALE_DIVISORS 4
/* |n| must stay below 2^53 so that (double)n is exact. */
#define EXACT_INT_LIMIT 9007199254740992.0

static const double POW10[RT_MAX_DECIMAL_EXP + 1] = {
    1e0, 1e1, 1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,
    1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18};

const char *rt_strerror(int err) {
    switch (err) {
    case RT_OK: return "ok";
    case RT_E_TRUNCATED: return "block truncated: a field runs past the end";
    case RT_E_VERSION: return "unknown block format version";
    case RT_E_MODE: return "unknown value mode or mode parameter out of range";
    case RT_E_COUNT: return "point count above the limit or more than the block can hold";
    case RT_E_FRAME: return "malformed integer frame";
    case RT_E_TRAILING: return "trailing bytes after the last field";
    case RT_E_STREAM: return "malformed XOR-mode bit stream";
    case RT_E_NOMEM: return "out of memory";
    case RT_E_CAPACITY: return "output buffer too small";
    case RT_E_EXCEPTION: return "malformed exception list";
    default: return "unknown error";
    }
}

static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* LEB128: 7 bits per byte, least significant group first, high bit = more bytes follow. */
static uint8_t *put_varint(uint8_t *p, uint64_t v) {
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

static size_t varint_len(uint64_t v) {
    size_t n = 1;
    while (v >= 0x80) v >>= 7, n++;
    return n;
}

/* Reads a canonical varint (at most 10 bytes, no value bits above 64, no trailing zero
 * group) from at most `len` bytes; returns the bytes used, 0 if malformed or truncated. */
static size_t get_varint(const uint8_t *p, size_t len, uint64_t *v) {
    uint64_t x = 0;
    for (size_t i = 0; i < len && i < 10; i++) {
        uint64_t b = p[i] & 0x7f;
        if (i == 9 && b > 1) return 0;
        x |= b << (7 * i);
        if (!(p[i] & 0x80)) {
            if (i && !p[i]) return 0;
            *v = x;
            return i + 1;
        }
    }
    return 0;
}

/* ---- integer modes: decimal (n / 10^e) and scaled (n * s) ---- */

struct intmode {
    int mode;  /* RT_MODE_DECIMAL or RT_MODE_SCALED */
    unsigned e; /* decimal: the power of ten */
    double s;   /* scaled: the factor, positive and finite */
};

/* Round half to even, as nearbyint() in the default rounding mode and Python's round(), for
 * |x| < 2^53. Adding 1.5 * 2^52 leaves no fraction bits below 2^51; above that, the libm call
 * (x86-64 has no inline rounding instruction before SSE4.1). */
static double round_even(double x) {
    const double magic = 6755399441055744.0; /* 1.5 * 2^52 */
    if (fabs(x) < 2251799813685248.0) return (x + magic) - magic;
    return nearbyint(x);
}

/* n for value v if the mode's decode formula reproduces v bit for bit; else *ok = 0. */
static inline __attribute__((always_inline)) int64_t int_of(const struct intmode *m, double v,
                                                              int *ok) {
    double x = m->mode == RT_MODE_DECIMAL ? v * POW10[m->e] : v / m->s;
    *ok = 0;
    if (!(fabs(x) < EXACT_INT_LIMIT)) return 0; /* also rejects NaN and inf */
    int64_t n = (int64_t)round_even(x);
    double back = m->mode == RT_MODE_DECIMAL ? (double)n / POW10[m->e] : (double)n * m->s;
    if (bits_of(back) != bits_of(v)) return 0;
    *ok = 1;
    return n;
}

static size_t sample_hits(const struct intmode *m, const double *v, size_t n, size_t s) {
    size_t hits = 0;
    for (size_t i = 0; i < s; i++) {
        int ok;
        int_of(m, v[i * n / s], &ok);
        hits += (size_t)ok;
    }
    return hits;
}

/* Estimated bits per sampled value in this mode: the magnitude of n, or 96 bits (a 12-byte
 * exception) where the mode is not exact. Only compares the integer modes. */
static size_t sample_cost(const struct intmode *m, const double *v, size_t n, size_t s) {
    size_t bits = 0;
    for (size_t i = 0; i < s; i++) {
        int ok;
        int64_t k = int_of(m, v[i * n / s], &ok);
        bits += ok ? rt_bitlen(rt_zigzag((uint64_t)k)) : 96;
    }
    return bits;
}

/* The exponent with the most exact sample values; ties go to the smallest exponent. */
static unsigned choose_exponent(const double *v, size_t n, size_t *hits_out) {
    size_t s = n < DECIMAL_SAMPLE ? n : DECIMAL_SAMPLE, best_hits = 0;
    unsigned best = 0;
    for (unsigned e = 0; e <= RT_MAX_DECIMAL_EXP; e++) {
        struct intmode m = {RT_MODE_DECIMAL, e, 0};
        size_t h = sample_hits(&m, v, n, s);
        if (h > best_hits) {
            best_hits = h;
            best = e;
        }
    }
    *hits_out = best_hits;
    return best;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* A factor s with v == n * s exactly for most sampled values (ADC counts times a scale), or
 * 0 when none is exact on more than half of them. SPEC.md §Encoder choices gives the steps; the reference repeats them. */
static double choose_scale(const double *v, size_t n) {
    double xs[SCALE_SAMPLE];
    size_t s = n < SCALE_SAMPLE ? n : SCALE_SAMPLE, k = 0;
    for (size_t i = 0; i < s; i++) {
        double x = v[i * n / s];
        if (isfinite(x) && x != 0) xs[k++] = x;
    }
    if (k < 2) return 0;
    qsort(xs, k, sizeof *xs, cmp_double);
    double d = INFINITY, m = fabs(xs[0]) >= fabs(xs[k - 1]) ? xs[0] : xs[k - 1];
    for (size_t i = 0; i < k; i++) {
        if (fabs(xs[i]) < d) d = fabs(xs[i]);
        if (i && xs[i] > xs[i - 1] && xs[i] - xs[i - 1] < d) d = xs[i] - xs[i - 1];
    }
    if (!(d > 0 && isfinite(d))) return 0;
    double best = 0;
    size_t best_hits = 0;
    for (int div = 1; div <= SCALE_DIVISORS; div++) {
        double q = m / (d / div);
        if (!(fabs(q) < EXACT_INT_LIMIT)) continue;
        double nm = round_even(q);
        if (nm == 0) continue;
        uint64_t c = bits_of(fabs(m / nm));
        static const int64_t ulps[3] = {0, 1, -1};
        for (int j = 0; j < 3; j++) {
            double cand = double_of(c + (uint64_t)ulps[j]);
            if (!(cand > 0 && isfinite(cand))) continue;
            struct intmode mm = {RT_MODE_SCALED, 0, cand};
            size_t h = sample_hits(&mm, v, n, s);
            if (h > best_hits) {
                best_hits = h;
                best = cand;
            }
        }
    }
    return 2 * best_hits > s ? best : 0;
}

/* A candidate integer-mode section, sized but not yet written. */
struct intplan {
    struct intmode m;
    unsigned order;   /* 0: zigzag(n); 1: zigzag(n - previous n) */
    size_t nexc, size; /* size in bytes of the whole section */
    uint64_t *zz;     /* n transformed items; item 0 is the varint zigzag(k[0]) */
    uint32_t *exc;    /* nexc exception positions */
    uint8_t *plan;    /* frame choices for items 1..n-1, RT_FRAME_PLAN_BYTES(n) */
};

/* Called with a constant `decimal` so that each mode gets its own branch-free loop. */
static inline __attribute__((always_inline)) void plan_loop(struct intplan *p, const double *v,
                                                            size_t n, int decimal) {
    int64_t prev = 0;
    size_t bits0 = 0, bits1 = 0;
    struct intmode m = p->m;
    m.mode = decimal ? RT_MODE_DECIMAL : RT_MODE_SCALED;
    p->nexc = 0;
    for (size_t i = 0; i < n; i++) {
        int ok;
        int64_t k = int_of(&m, v[i], &ok);
        if (!ok) {
            p->exc[p->nexc++] = (uint32_t)i;
            k = prev; /* a zero delta: the exception costs nothing in order 1 frames */
        }
        bits0 += rt_bitlen(rt_zigzag((uint64_t)k));
        bits1 += rt_bitlen(rt_zigzag((uint64_t)k - (uint64_t)prev));
        p->zz[i] = (uint64_t)k;
        prev = k;
    }
    /* Order by total significant bits: a cheap proxy for the frame sizes. Ties: delta. */
    p->order = bits0 < bits1 ? 0 : 1;
    for (size_t i = n; i-- > 0;)
        p->zz[i] = rt_zigzag(p->order && i ? p->zz[i] - p->zz[i - 1] : p->zz[i]);
}

static void plan_ints(struct intplan *p, const double *v, size_t n) {
    if (p->m.mode == RT_MODE_DECIMAL)
        plan_loop(p, v, n, 1);
    else
        plan_loop(p, v, n, 0);
    /* decimal: e is in the mode byte; scaled: s, 8 bytes */
    p->size = (p->m.mode == RT_MODE_DECIMAL ? 0 : 8) + varint_len(p->nexc) + 12 * p->nexc;
    if (n) p->size += varint_len(p->zz[0]) + rt_frames_size(p->zz + 1, n - 1, p->plan);
}

static uint8_t *write_ints(const struct intplan *p, const double *v, size_t n, uint8_t *out) {
    if (p->m.mode == RT_MODE_SCALED) {
        rt_store64(out, bits_of(p->m.s));
        out += 8;
    }
    out = put_varint(out, p->nexc);
    if (n) {
        out = put_varint(out, p->zz[0]);
        out = rt_frames_encode(p->zz + 1, n - 1, p->plan, out);
    }
    for (size_t j = 0; j < p->nexc; j++) {
        put32(out, p->exc[j]);
        rt_store64(out + 4, bits_of(v[p->exc[j]]));
        out += 12;
    }
    return out;
}

/* ---- block ---- */

size_t rt_encode_bound(size_t n) {
    /* header + t0, t1 - t0 and the timestamp frames + the largest value section: an integer
     * mode with every value an exception (8 + varint + varint k[0] + frames + 12n); XOR mode
     * (8 + 69 bits per value) is smaller. */
    return RT_HEADER_BYTES + 20 + RT_FRAMES_BOUND(n) + 8 + 20 + RT_FRAMES_BOUND(n) + 12 * n + 16;
}

size_t rt_encode_scratch_bound(size_t n) {
    return (n ? n : 1) * 24 + 2 * RT_FRAME_PLAN_BYTES(n) + 8;
}

int rt_encode(const int64_t *ts, const double *values, size_t n, uint8_t *out, size_t out_cap,
              void *scratch, size_t scratch_cap, size_t *out_len) {
    if (n > RT_MAX_POINTS) return RT_E_COUNT;
    if (out_cap < rt_encode_bound(n)) return RT_E_CAPACITY;
    size_t cells = n ? n : 1;
    void *owned = NULL;
    if (!scratch) {
        scratch = owned = malloc(rt_encode_scratch_bound(n));
        if (!owned) return RT_E_NOMEM;
    } else if (scratch_cap < rt_encode_scratch_bound(n) || ((uintptr_t)scratch & 7)) {
        return RT_E_CAPACITY;
    }
    /* Two integer arrays (timestamps then scaled; decimal) and two exception lists. */
    uint64_t *zz_a = scratch, *zz_b = zz_a + cells;
    uint32_t *exc_a = (uint32_t *)(zz_b + cells), *exc_b = exc_a + cells;
    uint8_t *plan_a = (uint8_t *)(exc_b + cells), *plan_b = plan_a + RT_FRAME_PLAN_BYTES(n);
    out[0] = RT_FORMAT_VERSION;
    /* Timestamps: t0 and t1 - t0 as varints, then the deltas of deltas (mod 2^64). */
    uint8_t *vals = put_varint(out + 2, n), *end;
    if (n) vals = put_varint(vals, rt_zigzag((uint64_t)ts[0]));
    if (n >= 2) {
        uint64_t prev = (uint64_t)ts[1], delta = (uint64_t)ts[1] - (uint64_t)ts[0];
        vals = put_varint(vals, rt_zigzag(delta));
        for (size_t i = 2; i < n; i++) {
            uint64_t t = (uint64_t)ts[i], d = t - prev;
            zz_b[i - 2] = rt_zigzag(d - delta);
            delta = d;
            prev = t;
        }
        vals = rt_frames_encode(zz_b, n - 2, NULL, vals);
    }

    /* Values (SPEC.md §Encoder choices): at most one integer mode is planned, then kept only
     * if XOR mode is not strictly smaller. An integer mode exact on at most half of its sample
     * is not a candidate: its exceptions (12 bytes each) would lose to XOR mode anyway. */
    size_t dec_hits, dec_sample = n < DECIMAL_SAMPLE ? n : DECIMAL_SAMPLE;
    size_t sc_sample = n < SCALE_SAMPLE ? n : SCALE_SAMPLE;
    struct intplan dec = {{RT_MODE_DECIMAL, 0, 0}, 0, 0, 0, zz_a, exc_a, plan_a};
    struct intplan sc = {{RT_MODE_SCALED, 0, 0}, 0, 0, 0, zz_b, exc_b, plan_b};
    struct intplan *best = NULL;
    dec.m.e = choose_exponent(values, n, &dec_hits);
    if (2 * dec_hits > dec_sample) best = &dec;
    if (dec_hits < dec_sample) {
        sc.m.s = choose_scale(values, n);
        /* Both candidates: plan the one whose sampled integers are smaller (ties: decimal). */
        if (sc.m.s > 0 &&
            (!best || sample_cost(&sc.m, values, n, sc_sample) * dec_sample <
                          sample_cost(&dec.m, values, n, dec_sample) * sc_sample))
            best = &sc;
    }
    if (best) plan_ints(best, values, n);
    /* XOR mode spends at least 8 bytes plus 2 bits per later value: skip counting it when it
     * cannot be strictly smaller (ties keep the integer mode, which decodes faster). */
    int use_xor = n == 0 || !best;
    if (!use_xor && best->size > 8 + (2 * (n - 1) + 7) / 8)
        use_xor = 8 + (rt_xor_bits(values, n, 8 * best->size) + 7) / 8 < best->size;
    if (use_xor) {
        out[1] = RT_MODE_XOR;
        end = rt_xor_encode(values, n, vals);
    } else {
        out[1] = (uint8_t)(best->m.mode | best->order << 2 | best->m.e << 3);
        end = write_ints(best, values, n, vals);
    }
    free(owned);
    *out_len = (size_t)(end - out);
    return RT_OK;
}

/* What the header says: format version, mode byte fields, count, and where the timestamp
 * section starts. */
struct header {
    unsigned version, mode, order, e;
    size_t n, at;
};

static size_t frames_least(size_t items) { return (items + RT_FRAME_POINTS - 1) / RT_FRAME_POINTS; }

/* Checks the header and that `len` can hold the declared count: every varint and every frame
 * takes at least one byte. */
static int read_header(const uint8_t *block, size_t len, struct header *h) {
    if (len < 2) return RT_E_TRUNCATED;
    h->version = block[0];
    if (h->version < RT_FORMAT_VERSION_MIN || h->version > RT_FORMAT_VERSION) return RT_E_VERSION;
    h->mode = block[1] & 3;
    h->order = block[1] >> 2 & 1;
    h->e = block[1] >> 3;
    /* format 1: bits 3..7 zero; format 2: bits 3..7 the decimal exponent, zero in the other
     * modes; bit 2 (order) only in the integer modes */
    if (h->mode > RT_MODE_SCALED || (h->mode == RT_MODE_XOR && block[1]) ||
        (h->e && (h->version == 1 || h->mode != RT_MODE_DECIMAL)) || h->e > RT_MAX_DECIMAL_EXP)
        return RT_E_MODE;
    size_t least, n;
    if (h->version == 1) {
        if (len < 6) return RT_E_TRUNCATED;
        n = get32(block + 2);
        h->at = 6;
        least = 6;
        if (n) least += 1 + frames_least(n - 1);
        if (h->mode != RT_MODE_XOR)
            least += (h->mode == RT_MODE_DECIMAL ? 1 : 8) + 1 + frames_least(n);
    } else {
        uint64_t v;
        size_t used = get_varint(block + 2, len - 2, &v);
        if (!used) return RT_E_TRUNCATED;
        if (v > RT_MAX_POINTS) return RT_E_COUNT;
        n = (size_t)v;
        h->at = least = 2 + used;
        least += (n >= 1) + (n >= 2 ? 1 + frames_least(n - 2) : 0);
        if (h->mode != RT_MODE_XOR)
            least += (h->mode == RT_MODE_DECIMAL ? 0 : 8) + 1 + (n ? 1 + frames_least(n - 1) : 0);
    }
    if (h->mode == RT_MODE_XOR) least += n ? 8 : 0;
    if (n > RT_MAX_POINTS || len < least) return RT_E_COUNT;
    h->n = n;
    return RT_OK;
}

int rt_block_count(const uint8_t *block, size_t len, size_t *count) {
    struct header h;
    int err = read_header(block, len, &h);
    if (err) return err;
    *count = h.n;
    return RT_OK;
}

/* Decodes integer frames for n items, handing each frame to `sink`. */
typedef void (*frame_sink)(void *state, const uint64_t *items, size_t start, size_t flen);

static int decode_frames(const uint8_t *p, size_t len, size_t n, int sparse, size_t *used,
                         frame_sink sink, void *state) {
    uint64_t items[RT_FRAME_POINTS];
    size_t at = 0;
    for (size_t s = 0; s < n; s += RT_FRAME_POINTS) {
        size_t flen = n - s < RT_FRAME_POINTS ? n - s : RT_FRAME_POINTS, u;
        int err = rt_frame_decode(p + at, len - at, flen, sparse, items, &u);
        if (err) return err;
        at += u;
        sink(state, items, s, flen);
    }
    *used = at;
    return RT_OK;
}

struct ts_state {
    int64_t *out; /* the points the items give, from item 0 on */
    uint64_t prev, delta;
    int first_is_delta; /* format 1: item 0 is t1 - t0, not a delta of delta */
};

static void ts_sink(void *st, const uint64_t *items, size_t start, size_t flen) {
    struct ts_state *s = st;
    uint64_t prev = s->prev, delta = s->delta;
    size_t i = 0;
    if (start == 0 && flen && s->first_is_delta) {
        delta = rt_unzigzag(items[0]);
        prev += delta;
        s->out[0] = (int64_t)prev;
        i = 1;
    }
    for (; i < flen; i++) {
        delta += rt_unzigzag(items[i]);
        prev += delta;
        s->out[start + i] = (int64_t)prev;
    }
    s->prev = prev;
    s->delta = delta;
}

struct int_state {
    double *out;
    uint64_t prev;
    double factor;
    unsigned order;
    int divide; /* decimal: n / 10^e; scaled: n * s */
};

static void int_sink(void *st, const uint64_t *items, size_t start, size_t flen) {
    struct int_state *s = st;
    uint64_t k = s->prev;
    double f = s->factor, *out = s->out + start;
    /* Four loops so that each one is branch-free and vectorizable. */
    if (s->order && s->divide) {
        for (size_t i = 0; i < flen; i++) out[i] = (double)(int64_t)(k += rt_unzigzag(items[i])) / f;
    } else if (s->order) {
        for (size_t i = 0; i < flen; i++) out[i] = (double)(int64_t)(k += rt_unzigzag(items[i])) * f;
    } else if (s->divide) {
        for (size_t i = 0; i < flen; i++) out[i] = (double)(int64_t)rt_unzigzag(items[i]) / f;
    } else {
        for (size_t i = 0; i < flen; i++) out[i] = (double)(int64_t)rt_unzigzag(items[i]) * f;
    }
    s->prev = k;
}

int rt_decode(const uint8_t *block, size_t len, int64_t *ts, double *values, size_t count) {
    struct header h;
    size_t used, v;
    int err = read_header(block, len, &h);
    if (err) return err;
    size_t n = h.n, at = h.at;
    if (n != count) return RT_E_CAPACITY;
    int v2 = h.version >= 2; /* t1 - t0 and k[0] as varints; sparse frames */
    if (n) {
        uint64_t t0, d1 = 0;
        v = get_varint(block + at, len - at, &t0);
        if (!v) return RT_E_TRUNCATED;
        at += v;
        ts[0] = (int64_t)rt_unzigzag(t0);
        struct ts_state tst = {ts + 1, (uint64_t)ts[0], 0, !v2};
        size_t items = n - 1;
        if (v2 && n >= 2) {
            v = get_varint(block + at, len - at, &d1);
            if (!v) return RT_E_TRUNCATED;
            at += v;
            tst.delta = rt_unzigzag(d1);
            tst.prev += tst.delta;
            ts[1] = (int64_t)tst.prev;
            tst.out = ts + 2;
            items = n - 2;
        }
        if (v2 && n == 1) items = 0;
        err = decode_frames(block + at, len - at, items, v2, &used, ts_sink, &tst);
        if (err) return err;
        at += used;
    }
    if (h.mode == RT_MODE_XOR) return rt_xor_decode(block + at, len - at, values, n);
    struct int_state ist = {values, 0, 0, h.order, h.mode == RT_MODE_DECIMAL};
    if (ist.divide) {
        unsigned e = h.e;
        if (!v2) { /* format 1: e in its own byte */
            if (len - at < 1) return RT_E_TRUNCATED;
            e = block[at++];
            if (e > RT_MAX_DECIMAL_EXP) return RT_E_MODE;
        }
        ist.factor = POW10[e];
    } else {
        if (len - at < 8) return RT_E_TRUNCATED;
        ist.factor = double_of(rt_load64(block + at));
        if (!(ist.factor > 0 && isfinite(ist.factor))) return RT_E_MODE;
        at += 8;
    }
    uint64_t nexc;
    v = get_varint(block + at, len - at, &nexc);
    if (!v) return RT_E_TRUNCATED;
    if (nexc > n) return RT_E_EXCEPTION;
    at += v;
    size_t items = n;
    if (v2 && n) { /* k[0] */
        uint64_t z;
        v = get_varint(block + at, len - at, &z);
        if (!v) return RT_E_TRUNCATED;
        at += v;
        ist.prev = rt_unzigzag(z);
        double k0 = (double)(int64_t)ist.prev;
        values[0] = ist.divide ? k0 / ist.factor : k0 * ist.factor;
        ist.out = values + 1;
        items = n - 1;
    }
    err = decode_frames(block + at, len - at, items, v2, &used, int_sink, &ist);
    if (err) return err;
    at += used;
    if ((len - at) / 12 < nexc) return RT_E_TRUNCATED;
    for (size_t j = 0; j < nexc; j++, at += 12) {
        size_t pos = get32(block + at);
        /* Strictly increasing: each point is patched at most once. */
        if (pos >= n || (j && pos <= get32(block + at - 12))) return RT_E_EXCEPTION;
        values[pos] = double_of(rt_load64(block + at + 4));
    }
    if (at != len) return RT_E_TRAILING;
    return RT_OK;
}
