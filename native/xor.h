/* XOR mode (Chimp, Liakos et al., VLDB 2022); internal to the codec. */
#ifndef RINGTAIL_XOR_H
#define RINGTAIL_XOR_H

#include <stddef.h>
#include <stdint.h>

/* Writes the XOR section of n >= 1 values (8 + at most 69 bits per later value, rounded up
 * to a byte), returns its end. n = 0 writes nothing. */
uint8_t *rt_xor_encode(const double *v, size_t n, uint8_t *out);
/* Bits rt_xor_encode spends after the first value, counting stopped once above `limit`. */
size_t rt_xor_bits(const double *v, size_t n, size_t limit);
/* Decodes exactly `len` bytes into n values; RT_OK or a negative rt_error. */
int rt_xor_decode(const uint8_t *p, size_t len, double *v, size_t n);

#endif
