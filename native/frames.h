/* Frames of bit-packed integers (SPEC.md §Frames); internal to the codec. */
#ifndef RINGTAIL_FRAMES_H
#define RINGTAIL_FRAMES_H

#include <stddef.h>
#include <stdint.h>

/* Most bytes rt_frames_encode writes for n items: per frame, its header byte plus 8 bytes
 * per item (the exception-free widest encoding is always a candidate, and a sparse frame is
 * chosen only when it is strictly smaller). */
#define RT_FRAMES_BOUND(n) ((n) * 8 + ((n) + 127) / 128)

/* Bytes rt_frames_encode will write for these n items; stores each frame's choices in plan
 * (RT_FRAME_PLAN_BYTES(n) bytes) for rt_frames_encode to reuse. */
#define RT_FRAME_PLAN_BYTES(n) (2 * (((n) + 127) / 128))
size_t rt_frames_size(const uint64_t *v, size_t n, uint8_t *plan);
/* Encodes n items with the choices in plan (or chooses them itself when plan is NULL);
 * returns the end of what it wrote. */
uint8_t *rt_frames_encode(const uint64_t *v, size_t n, const uint8_t *plan, uint8_t *out);
/* Decodes one frame of flen (1..RT_FRAME_POINTS) items from at most `avail` bytes at p;
 * stores the bytes consumed in *used. `sparse` allows sparse frames (format 2). Returns
 * RT_OK or a negative rt_error. */
int rt_frame_decode(const uint8_t *p, size_t avail, size_t flen, int sparse, uint64_t *out,
                    size_t *used);

/* Sparse frames (format 2): header values 65 + w for widths 0..RT_SPARSE_MAX_W. */
#define RT_SPARSE_BASE 65
#define RT_SPARSE_MAX_W 62

#endif
