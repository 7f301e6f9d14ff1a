/* Frames: bit-packed unsigned integers, RT_FRAME_POINTS per frame, each frame with its own
 * width and patched exceptions (SPEC.md §Frames). Used for timestamps and integer values.
 * A sparse frame (format 2) packs only its non-zero items, less one, behind a bitmap. */
#include "frames.h"

#include "bits.h"
#include "ringtail_native.h"

static size_t ceil8(size_t bits) { return (bits + 7) >> 3; }

/* Bytes the packed part of a frame costs (header byte included) at width w with `cnt`
 * exceptions of ew high bits each, for flen packed items. */
static size_t frame_cost(size_t flen, unsigned w, size_t cnt, unsigned ew) {
    size_t c = 1 + ceil8(flen * w);
    if (cnt) c += 2 + cnt + ceil8(cnt * ew);
    return c;
}

/* The canonical width for items with this bit-length histogram (SPEC.md §Frames): widest
 * first, a narrower width wins only if strictly smaller. Returns the byte cost. */
static size_t best_width(const size_t *hist, size_t flen, unsigned *w_out, unsigned *maxl_out) {
    unsigned maxl = 64;
    while (maxl && !hist[maxl]) maxl--;
    unsigned best_w = maxl;
    size_t best_cost = frame_cost(flen, maxl, 0, 0), cnt = 0;
    for (unsigned w = maxl; w-- > 0;) {
        cnt += hist[w + 1]; /* items with bitlen > w */
        size_t c = frame_cost(flen, w, cnt, maxl - w);
        if (c < best_cost) {
            best_cost = c;
            best_w = w;
        }
    }
    *w_out = best_w;
    *maxl_out = maxl;
    return best_cost;
}

/* A frame's choice: plain or sparse, width and widest item. Returns its byte cost. */
static size_t choose(const uint64_t *f, size_t flen, unsigned *sparse, unsigned *w_out,
                     unsigned *maxl_out) {
    /* Four partial histograms of bitlen(x), then, if the frame may be sparse, of
     * bitlen(x - 1): a frame's items mostly share one bucket, and a single array would
     * serialize every increment through the same memory location. Zeros land in bucket 64 of
     * the second (x - 1 wraps), which is subtracted back out: a sparse frame does not pack
     * them. */
    uint8_t part[4][65] = {{0}}; /* at most 32 items each */
    size_t i = 0, hist[65], shist[65];
    for (; i + 4 <= flen; i += 4) {
        part[0][rt_bitlen(f[i])]++;
        part[1][rt_bitlen(f[i + 1])]++;
        part[2][rt_bitlen(f[i + 2])]++;
        part[3][rt_bitlen(f[i + 3])]++;
    }
    for (; i < flen; i++) part[0][rt_bitlen(f[i])]++;
    for (unsigned b = 0; b < 65; b++)
        hist[b] = (size_t)part[0][b] + part[1][b] + part[2][b] + part[3][b];
    size_t zeros = hist[0], m = flen - zeros;
    size_t cost = best_width(hist, flen, w_out, maxl_out);
    *sparse = 0;
    /* A sparse frame takes at least its header and bitmap: only a frame with zeros that
     * costs more than that can be sparse. */
    if (zeros && cost > 1 + ceil8(flen)) {
        memset(part, 0, sizeof part);
        for (i = 0; i + 4 <= flen; i += 4) {
            part[0][rt_bitlen(f[i] - 1)]++;
            part[1][rt_bitlen(f[i + 1] - 1)]++;
            part[2][rt_bitlen(f[i + 2] - 1)]++;
            part[3][rt_bitlen(f[i + 3] - 1)]++;
        }
        for (; i < flen; i++) part[0][rt_bitlen(f[i] - 1)]++;
        for (unsigned b = 0; b < 65; b++)
            shist[b] = (size_t)part[0][b] + part[1][b] + part[2][b] + part[3][b];
        shist[64] -= zeros; /* 0 - 1 wrapped to 64 bits */
        unsigned sw, smaxl;
        size_t scost = best_width(shist, m, &sw, &smaxl) + ceil8(flen);
        if (smaxl <= RT_SPARSE_MAX_W && scost < cost) {
            cost = scost;
            *sparse = 1;
            *w_out = sw;
            *maxl_out = smaxl;
        }
    }
    return cost;
}

size_t rt_frames_size(const uint64_t *v, size_t n, uint8_t *plan) {
    size_t total = 0;
    unsigned sparse, w, maxl;
    for (size_t s = 0; s < n; s += RT_FRAME_POINTS, plan += 2) {
        total += choose(v + s, n - s < RT_FRAME_POINTS ? n - s : RT_FRAME_POINTS, &sparse, &w,
                        &maxl);
        plan[0] = (uint8_t)(w | sparse << 7);
        plan[1] = (uint8_t)maxl;
    }
    return total;
}

uint8_t *rt_frames_encode(const uint64_t *v, size_t n, const uint8_t *plan, uint8_t *out) {
    for (size_t s = 0; s < n; s += RT_FRAME_POINTS) {
        size_t flen = n - s < RT_FRAME_POINTS ? n - s : RT_FRAME_POINTS;
        const uint64_t *f = v + s;
        unsigned sparse, w, maxl;
        if (plan) {
            sparse = plan[0] >> 7;
            w = plan[0] & 0x7f;
            maxl = plan[1];
            plan += 2;
        } else {
            choose(f, flen, &sparse, &w, &maxl);
        }
        /* A sparse frame packs its non-zero items less one, in order, behind a bitmap. */
        uint64_t packed[RT_FRAME_POINTS];
        uint8_t bitmap[RT_FRAME_POINTS / 8] = {0};
        size_t plen = flen;
        if (sparse) {
            plen = 0;
            for (size_t i = 0; i < flen; i++) {
                packed[plen] = f[i] - 1;
                bitmap[i >> 3] |= (uint8_t)((f[i] != 0) << (i & 7));
                plen += f[i] != 0;
            }
            f = packed;
        }
        /* Branch-free gather of the exception positions; there are some iff w < maxl. */
        uint8_t idx[RT_FRAME_POINTS];
        size_t c = 0;
        if (w < maxl)
            for (size_t i = 0; i < plen; i++) {
                idx[c] = (uint8_t)i;
                c += (f[i] >> w) != 0;
            }
        unsigned ew = maxl - w;
        *out++ = (uint8_t)((sparse ? RT_SPARSE_BASE + w : w) | (c ? 0x80 : 0));
        if (c) {
            *out++ = (uint8_t)(c - 1); /* 1..128 stored as 0..127 */
            *out++ = (uint8_t)ew;
        }
        if (sparse) {
            memcpy(out, bitmap, ceil8(flen));
            out += ceil8(flen);
        }
        rt_bitw bw = {out, 0, 0};
        uint64_t m = rt_mask(w);
        if (w)
            for (size_t i = 0; i < plen; i++) rt_put(&bw, f[i] & m, w);
        out = rt_flush(&bw);
        if (c) {
            memcpy(out, idx, c);
            bw.p = out + c;
            for (size_t j = 0; j < c; j++) rt_put(&bw, f[idx[j]] >> w, ew);
            out = rt_flush(&bw);
        }
    }
    return out;
}

/* Unpacks flen items of width w (1..64) from p, which has at least ceil8(flen*w) + 8
 * readable bytes. */
static void unpack(const uint8_t *p, size_t flen, unsigned w, uint64_t *out) {
    uint64_t m = rt_mask(w);
    if (w <= 56) {
        size_t bit = 0;
        for (size_t i = 0; i < flen; i++, bit += w)
            out[i] = (rt_load64(p + (bit >> 3)) >> (bit & 7)) & m;
    } else {
        size_t bit = 0;
        for (size_t i = 0; i < flen; i++, bit += w) {
            unsigned sh = bit & 7;
            uint64_t x = rt_load64(p + (bit >> 3)) >> sh;
            if (sh) x |= (uint64_t)p[(bit >> 3) + 8] << (64 - sh);
            out[i] = x & m;
        }
    }
}

int rt_frame_decode(const uint8_t *p, size_t avail, size_t flen, int sparse, uint64_t *out,
                    size_t *used) {
    /* Room for the widest frame's packed bits plus the 8 (+1) bytes unpack() may over-read. */
    uint8_t tmp[RT_FRAME_POINTS * 8 + 16];
    uint64_t packed[RT_FRAME_POINTS + 1], *dst = out, bm[2] = {0, 0};
    size_t at = 0, plen = flen;
    if (avail < 1) return RT_E_TRUNCATED;
    unsigned h = p[at++], w = h & 0x7f, ew = 0;
    size_t cnt = 0;
    int is_sparse = sparse && w >= RT_SPARSE_BASE;
    if (is_sparse) {
        w -= RT_SPARSE_BASE; /* 0..62; the bitmap follows the exception header */
        dst = packed;
    } else if (w > 64) {
        return RT_E_FRAME;
    }
    if (h & 0x80) {
        if (avail - at < 2) return RT_E_TRUNCATED;
        cnt = (size_t)p[at++] + 1;
        ew = p[at++];
        if (ew < 1 || w + ew > 64) return RT_E_FRAME;
    }
    if (is_sparse) { /* as two words, bits from flen on (padding) cleared */
        size_t bb = ceil8(flen);
        if (avail - at < bb) return RT_E_TRUNCATED;
        memcpy(bm, p + at, bb);
        at += bb;
        if (flen < 64) bm[0] &= rt_mask((unsigned)flen), bm[1] = 0;
        else bm[1] &= rt_mask((unsigned)(flen - 64));
        plen = (size_t)__builtin_popcountll(bm[0]) + (size_t)__builtin_popcountll(bm[1]);
    }
    if (cnt > plen) return RT_E_FRAME;
    size_t nb = ceil8(plen * w);
    if (avail - at < nb) return RT_E_TRUNCATED;
    if (w && plen) {
        memcpy(tmp, p + at, nb);
        memset(tmp + nb, 0, 16);
        unpack(tmp, plen, w, dst);
    } else {
        memset(dst, 0, plen * sizeof *dst);
    }
    at += nb;
    if (cnt) {
        size_t hb = ceil8(cnt * ew);
        if (avail - at < cnt + hb) return RT_E_TRUNCATED;
        const uint8_t *pos = p + at;
        at += cnt;
        memcpy(tmp, p + at, hb);
        memset(tmp + hb, 0, 16);
        uint64_t hi[RT_FRAME_POINTS];
        unpack(tmp, cnt, ew, hi);
        at += hb;
        for (size_t i = 0; i < cnt; i++) {
            /* Strictly increasing positions inside the frame: one patch per item. */
            if (pos[i] >= plen || (i && pos[i] <= pos[i - 1])) return RT_E_FRAME;
            dst[pos[i]] |= hi[i] << w; /* w + ew <= 64, so w < 64 here */
        }
    }
    if (is_sparse) {
        /* Scatter, branch-free: item i is packed[k] + 1 where bit i is set, else 0, k being
         * the bits set before i (k <= plen: packed[plen] is defined for the reads past the
         * last packed item, which the mask discards). */
        packed[plen] = 0;
        size_t k = 0;
        for (size_t i = 0; i < flen; i++) {
            uint64_t set = (bm[i >> 6] >> (i & 63)) & 1;
            out[i] = (packed[k] + 1) & (0 - set);
            k += set;
        }
    }
    *used = at;
    return RT_OK;
}
