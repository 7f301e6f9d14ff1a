/* cbor_scan.c: the bounded CBOR scan of protocol/cbor_scan.py, in C (see rt_cbor_scan in
 * ringtail_native.h).
 *
 * The Python module is the reference: this file must accept and refuse exactly the same
 * inputs, refusing each with the same reason at the same byte offset (the differential tests
 * in tests/protocol/test_cbor_scan_native.py hold it to that). The walk is iterative: one frame
 * per open container, at most min(max_depth, len) of them, so no input can make it recurse or
 * read past data[len - 1]. Duplicate map keys are found by comparing the keys' bytes (the scan
 * accepts only shortest-form arguments, so equal keys have equal bytes): linearly against the
 * map's earlier keys while it has few, through a seeded hash table once it has more, so a map
 * of thousands of keys costs linear time, not quadratic. */
#include <stdlib.h>
#include <string.h>

#include "ringtail_native.h"

#define LINEAR_KEYS 16  /* maps with more keys than this switch to the hash table */
#define LOCAL_FRAMES 32 /* frames on the C stack; deeper scans allocate */
#define LOCAL_KEYS 128  /* key spans on the C stack; more are allocated */

typedef struct {
    size_t left;      /* items still to come (a map of n pairs counts 2n) */
    size_t index;     /* items seen so far; even indices of a map are keys */
    size_t key_start; /* offset of the current key (maps) */
    size_t keys_base; /* this map's first key span in the key stack */
    uint64_t serial;  /* identifies this map instance in the hash table */
    int is_map;
    int hashed; /* this map's keys are in the hash table */
} frame_t;

typedef struct {
    size_t start, len;
} span_t;

typedef struct {
    uint64_t serial; /* 0: empty slot */
    uint64_t hash;
    size_t start, len;
} entry_t;

typedef struct {
    const uint8_t *data;
    span_t *keys;
    size_t keys_top, keys_cap;
    int keys_heap;
    entry_t *table;
    size_t table_cap, table_used; /* table_cap: 0 or a power of two */
    uint64_t seed;
} state_t;

static uint64_t hash_seed;

static uint64_t key_hash(const state_t *st, size_t start, size_t len) {
    uint64_t h = st->seed ^ (len * 0x9E3779B97F4A7C15ull);
    const uint8_t *p = st->data + start;
    for (size_t i = 0; i < len; i++) {
        h = (h ^ p[i]) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 29;
    }
    h ^= h >> 32;
    h *= 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 29;
    return h;
}

static int table_grow(state_t *st) {
    size_t cap = st->table_cap ? st->table_cap * 2 : 64;
    entry_t *t = calloc(cap, sizeof *t);
    if (!t) return RT_E_NOMEM;
    for (size_t i = 0; i < st->table_cap; i++) {
        entry_t *e = &st->table[i];
        if (!e->serial) continue;
        size_t j = (size_t)e->hash & (cap - 1);
        while (t[j].serial) j = (j + 1) & (cap - 1);
        t[j] = *e;
    }
    free(st->table);
    st->table = t;
    st->table_cap = cap;
    return RT_OK;
}

/* 1 if the key [start, start+len) is already in map `serial`, else inserts it and returns 0;
 * RT_E_NOMEM if the table cannot grow. */
static int table_insert(state_t *st, uint64_t serial, size_t start, size_t len) {
    if ((st->table_used + 1) * 2 > st->table_cap) {
        int err = table_grow(st);
        if (err) return err;
    }
    uint64_t h = key_hash(st, start, len);
    size_t mask = st->table_cap - 1, j = (size_t)h & mask;
    for (; st->table[j].serial; j = (j + 1) & mask) {
        entry_t *e = &st->table[j];
        if (e->serial == serial && e->hash == h && e->len == len &&
            memcmp(st->data + e->start, st->data + start, len) == 0)
            return 1;
    }
    st->table[j] = (entry_t){serial, h, start, len};
    st->table_used++;
    return 0;
}

static int push_key(state_t *st, size_t start, size_t len) {
    if (st->keys_top == st->keys_cap) {
        size_t cap = st->keys_cap * 2;
        span_t *k = malloc(cap * sizeof *k);
        if (!k) return RT_E_NOMEM;
        memcpy(k, st->keys, st->keys_top * sizeof *k);
        if (st->keys_heap) free(st->keys);
        st->keys = k;
        st->keys_cap = cap;
        st->keys_heap = 1;
    }
    st->keys[st->keys_top++] = (span_t){start, len};
    return RT_OK;
}

/* 1 if the key just completed in map f duplicates an earlier one, 0 if not (and records
 * it), or RT_E_NOMEM. */
static int check_key(state_t *st, frame_t *f, size_t start, size_t len) {
    size_t n = st->keys_top - f->keys_base;
    if (!f->hashed && n < LINEAR_KEYS) {
        const uint8_t *key = st->data + start;
        for (size_t i = f->keys_base; i < st->keys_top; i++)
            if (st->keys[i].len == len && memcmp(st->data + st->keys[i].start, key, len) == 0)
                return 1;
        return push_key(st, start, len);
    }
    if (!f->hashed) {
        for (size_t i = f->keys_base; i < st->keys_top; i++) {
            int r = table_insert(st, f->serial, st->keys[i].start, st->keys[i].len);
            if (r < 0) return r;
        }
        f->hashed = 1;
    }
    return table_insert(st, f->serial, start, len);
}

/* Offset of the first invalid UTF-8 sequence in p[0..len) as CPython's decoder reports it
 * (UnicodeDecodeError.start: the sequence's first byte), or len if it is all valid. */
static size_t utf8_invalid_at(const uint8_t *p, size_t len) {
    size_t i = 0;
    while (i < len) {
        if (len - i >= 8) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            if (!(w & 0x8080808080808080ull)) {
                i += 8;
                continue;
            }
        }
        uint8_t c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        uint8_t lo = 0x80, hi = 0xBF; /* range of the second byte */
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F; /* no surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else {
            return i;
        }
        if (len - i <= need) return i; /* cut short (or a bad byte before the end): same */
        if (p[i + 1] < lo || p[i + 1] > hi) return i;
        for (size_t k = 2; k <= need; k++)
            if ((p[i + k] & 0xC0) != 0x80) return i;
        i += need + 1;
    }
    return len;
}

static const uint8_t arg_bytes[4] = {1, 2, 4, 8};

/* Per initial byte: the whole item's size when it is a scalar whose size and validity the
 * byte alone decides (small integers, false/true/null/undefined, floats; integers with an
 * argument also need their shortest form checked), else 0: cbor_scan.py's _SCALAR_SIZE.
 * Arrays of these, what batches are mostly made of, are skipped one look-up per item. */
static const uint8_t scalar_size[256] = {
    [0x00 ... 0x17] = 1, [0x18] = 2, [0x19] = 3, [0x1A] = 5, [0x1B] = 9,
    [0x20 ... 0x37] = 1, [0x38] = 2, [0x39] = 3, [0x3A] = 5, [0x3B] = 9,
    [0xF4 ... 0xF7] = 1, [0xF9] = 3, [0xFA] = 5, [0xFB] = 9,
};
static const uint64_t arg_min[4] = {24, 0x100, 0x10000, 0x100000000ull};

#define REFUSE(code, at, value)   \
    do {                          \
        result = (code);          \
        out[0] = (uint64_t)(at);  \
        out[1] = (uint64_t)(value); \
        goto done;                \
    } while (0)

int rt_cbor_scan(const uint8_t *data, size_t len, size_t max_depth, uint64_t *out) {
    int result = RT_OK;
    frame_t local_frames[LOCAL_FRAMES];
    span_t local_keys[LOCAL_KEYS];
    frame_t *frames = local_frames;
    state_t st = {data, local_keys, 0, LOCAL_KEYS, 0, NULL, 0, 0, 0};
    size_t depth = 0, pos = 0;
    uint64_t serial = 0;
    out[0] = out[1] = 0;
    if (len == 0) REFUSE(RT_SCAN_EMPTY, 0, 0);
    /* A frame holds a non-empty container, which takes at least one byte. */
    size_t frames_cap = max_depth < len ? max_depth : len;
    if (frames_cap > LOCAL_FRAMES) {
        frames = malloc(frames_cap * sizeof *frames);
        if (!frames) return RT_E_NOMEM;
    }
    if (!hash_seed) {
        /* Per process, so nobody can precompute colliding keys; races write equal-quality
         * values and only this process's tables use it. */
        uint64_t s = (uint64_t)(uintptr_t)&hash_seed ^ (uint64_t)(uintptr_t)local_keys;
        s = (s ^ (s >> 31)) * 0x94D049BB133111EBull;
        hash_seed = s | 1;
    }
    st.seed = hash_seed;

    for (;;) {
        frame_t *top = depth ? &frames[depth - 1] : NULL;
        if (top && !top->is_map) {
            /* Inside an array: skip a run of fixed-size scalars, all but the last item (which
             * takes the general path, so the container closes there). Anything else, or an
             * item cut short or not in shortest form, stops the run: the general path below
             * names the error at the same offset. */
            size_t left = top->left, p = pos;
            while (left > 1 && p < len) {
                uint8_t initial = data[p];
                size_t size = scalar_size[initial];
                if (!size || size > len - p) break;
                if (size > 1 && initial < 0x40) {
                    uint64_t a = 0;
                    for (size_t k = 1; k < size; k++) a = (a << 8) | data[p + k];
                    if (a < arg_min[(initial & 0x1F) - 24]) break;
                }
                p += size;
                left--;
            }
            top->index += top->left - left;
            top->left = left;
            pos = p;
        }
        if (pos >= len) REFUSE(RT_SCAN_MISSING, pos, 0);
        size_t start = pos;
        if (top && top->is_map && top->index % 2 == 0) top->key_start = start;
        uint8_t initial = data[pos++];
        unsigned major = initial >> 5, info = initial & 0x1F;
        uint64_t arg;
        if (info < 24) {
            arg = info;
        } else if (info <= 27) {
            size_t width = arg_bytes[info - 24];
            if (width > len - pos) REFUSE(RT_SCAN_ARG_TRUNCATED, start, 0);
            arg = 0;
            for (size_t k = 0; k < width; k++) arg = (arg << 8) | data[pos + k];
            pos += width;
            if (major != 7 && arg < arg_min[info - 24]) REFUSE(RT_SCAN_NOT_SHORTEST, start, 0);
        } else if (info == 31) {
            if (major == 7) REFUSE(RT_SCAN_BREAK, start, 0);
            if (major == 0 || major == 1 || major == 6) REFUSE(RT_SCAN_AI31, start, 0);
            REFUSE(RT_SCAN_INDEFINITE, start, 0);
        } else {
            REFUSE(RT_SCAN_RESERVED, start, info);
        }

        if (major == 2 || major == 3) {
            if (arg > len - pos) REFUSE(RT_SCAN_STRING_TRUNCATED, start, arg);
            if (major == 3) {
                size_t bad = utf8_invalid_at(data + pos, (size_t)arg);
                if (bad != (size_t)arg) REFUSE(RT_SCAN_UTF8, pos + bad, 0);
            }
            pos += (size_t)arg;
        } else if (major == 4 || major == 5) {
            size_t rest = len - pos;
            /* items = arg (array) or 2 * arg (map), compared without overflow */
            if (major == 5 ? arg > rest / 2 : arg > rest)
                REFUSE(RT_SCAN_CONTAINER_TRUNCATED, start, arg);
            if (arg) {
                if (depth >= max_depth) REFUSE(RT_SCAN_TOO_DEEP, start, 0);
                frame_t *f = &frames[depth++];
                f->left = major == 5 ? (size_t)arg * 2 : (size_t)arg;
                f->index = 0;
                f->key_start = pos;
                f->keys_base = st.keys_top;
                f->serial = ++serial;
                f->is_map = major == 5;
                f->hashed = 0;
                continue;
            }
        } else if (major == 6) {
            REFUSE(RT_SCAN_TAG, start, 0);
        } else if (major == 7) {
            if (info == 24) {
                if (arg < 32) REFUSE(RT_SCAN_SIMPLE_BELOW_32, start, 0);
                REFUSE(RT_SCAN_SIMPLE, start, arg);
            }
            if (info < 20) REFUSE(RT_SCAN_SIMPLE, start, info);
        }
        /* The item (with everything nested in it) ended at pos: count it in its container;
         * a container that thereby closes is in turn an item of its parent. */
        while (depth) {
            frame_t *f = &frames[depth - 1];
            if (f->is_map && f->index % 2 == 0) {
                int r = check_key(&st, f, f->key_start, pos - f->key_start);
                if (r < 0) {
                    result = r;
                    goto done;
                }
                if (r) REFUSE(RT_SCAN_DUPLICATE_KEY, f->key_start, 0);
            }
            f->index++;
            if (--f->left) break;
            st.keys_top = f->keys_base;
            depth--;
        }
        if (!depth) break;
    }
    if (pos != len) REFUSE(RT_SCAN_TRAILING, pos, len - pos);
done:
    if (frames != local_frames) free(frames);
    if (st.keys_heap) free(st.keys);
    free(st.table);
    return result;
}
