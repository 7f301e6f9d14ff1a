/* Frames: bit-packed unsigned integers, RT_FRAME_POINTS per frame, each frame with its own
 * width and patched exceptions (SPEC.md §Frames). Used for timestamps and decimal values. */
#include "frames.h"

#include "bits.h"
#include "ringtail_native.h"

static size_t ceil8(size_t bits) { return (bits + 7) >> 3; }

/* Bytes a frame costs at width w with `cnt` exceptions of ew high bits each. */
static size_t frame_cost(size_t flen, unsigned w, size_t cnt, unsigned ew) {
    size_t c = 1 + ceil8(flen * w);
    if (cnt) c += 2 + cnt + ceil8(cnt * ew);
    return c;
}

/* The canonical width of one frame (SPEC.md §Frames): widest first, a narrower width wins only
 * if strictly smaller. Returns the frame's byte cost. */
static size_t choose_width(const uint64_t *f, size_t flen, unsigned *w_out, size_t *cnt_out,
                           unsigned *maxl_out) {
    /* Four partial histograms: a frame's items mostly share one bucket, and a single array
     * would serialize every increment through the same memory location. */
    uint32_t part[4][65] = {{0}};
    size_t i = 0, hist[65];
    for (; i + 4 <= flen; i += 4) {
        part[0][rt_bitlen(f[i])]++;
        part[1][rt_bitlen(f[i + 1])]++;
        part[2][rt_bitlen(f[i + 2])]++;
        part[3][rt_bitlen(f[i + 3])]++;
    }
    for (; i < flen; i++) part[0][rt_bitlen(f[i])]++;
    for (unsigned b = 0; b < 65; b++) hist[b] = part[0][b] + part[1][b] + part[2][b] + part[3][b];
    unsigned maxl = 64;
    while (maxl && !hist[maxl]) maxl--;
    unsigned best_w = maxl;
    size_t best_cost = frame_cost(flen, maxl, 0, 0), cnt = 0, best_cnt = 0;
    for (unsigned w = maxl; w-- > 0;) {
        cnt += hist[w + 1]; /* items with bitlen > w */
        size_t c = frame_cost(flen, w, cnt, maxl - w);
        if (c < best_cost) {
            best_cost = c;
            best_w = w;
            best_cnt = cnt;
        }
    }
    *w_out = best_w;
    *cnt_out = best_cnt;
    *maxl_out = maxl;
    return best_cost;
}

size_t rt_frames_size(const uint64_t *v, size_t n, uint8_t *plan) {
    size_t total = 0, cnt;
    unsigned w, maxl;
    for (size_t s = 0; s < n; s += RT_FRAME_POINTS, plan += 2) {
        total += choose_width(v + s, n - s < RT_FRAME_POINTS ? n - s : RT_FRAME_POINTS, &w, &cnt,
                              &maxl);
        plan[0] = (uint8_t)w;
        plan[1] = (uint8_t)maxl;
    }
    return total;
}

uint8_t *rt_frames_encode(const uint64_t *v, size_t n, const uint8_t *plan, uint8_t *out) {
    for (size_t s = 0; s < n; s += RT_FRAME_POINTS) {
        size_t flen = n - s < RT_FRAME_POINTS ? n - s : RT_FRAME_POINTS, cnt;
        const uint64_t *f = v + s;
        unsigned w, maxl;
        if (plan) {
            w = plan[0];
            maxl = plan[1];
            plan += 2;
        } else {
            choose_width(f, flen, &w, &cnt, &maxl);
        }
        /* Branch-free gather of the exception positions; there are some iff w < maxl. */
        uint8_t idx[RT_FRAME_POINTS];
        size_t c = 0;
        if (w < maxl)
            for (size_t i = 0; i < flen; i++) {
                idx[c] = (uint8_t)i;
                c += (f[i] >> w) != 0;
            }
        unsigned ew = maxl - w;
        *out++ = (uint8_t)(w | (c ? 0x80 : 0));
        if (c) {
            *out++ = (uint8_t)(c - 1); /* 1..128 stored as 0..127 */
            *out++ = (uint8_t)ew;
        }
        rt_bitw bw = {out, 0, 0};
        uint64_t m = rt_mask(w);
        if (w)
            for (size_t i = 0; i < flen; i++) rt_put(&bw, f[i] & m, w);
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

int rt_frame_decode(const uint8_t *p, size_t avail, size_t flen, uint64_t *out, size_t *used) {
    /* Room for the widest frame's packed bits plus the 8 (+1) bytes unpack() may over-read. */
    uint8_t tmp[RT_FRAME_POINTS * 8 + 16];
    size_t at = 0;
    if (avail < 1) return RT_E_TRUNCATED;
    unsigned h = p[at++], w = h & 0x7f, ew = 0;
    size_t cnt = 0;
    if (w > 64) return RT_E_FRAME;
    if (h & 0x80) {
        if (avail - at < 2) return RT_E_TRUNCATED;
        cnt = (size_t)p[at++] + 1;
        ew = p[at++];
        if (cnt > flen || ew < 1 || w + ew > 64) return RT_E_FRAME;
    }
    size_t nb = ceil8(flen * w);
    if (avail - at < nb) return RT_E_TRUNCATED;
    if (w) {
        memcpy(tmp, p + at, nb);
        memset(tmp + nb, 0, 16);
        unpack(tmp, flen, w, out);
    } else {
        memset(out, 0, flen * sizeof *out);
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
            if (pos[i] >= flen || (i && pos[i] <= pos[i - 1])) return RT_E_FRAME;
            out[pos[i]] |= hi[i] << w; /* w + ew <= 64, so w < 64 here */
        }
    }
    *used = at;
    return RT_OK;
}
