/* bits_scalar.h - how a SIMD variant's bit packing shares ref's: its fast
 * path handles a byte-aligned start in whole blocks and returns how many
 * codes it did, ref's pack_bits/unpack_bits (the definition) the rest. */
#ifndef QS_BITS_SCALAR_H
#define QS_BITS_SCALAR_H

#include <stddef.h>
#include <stdint.h>

#include "fp16_scalar.h"
#include "kernels.h"

typedef size_t (*qs_pack_fast_fn)(const uint8_t *codes, size_t n, unsigned bits, uint8_t *dst);
typedef size_t (*qs_unpack_fast_fn)(const uint8_t *src, size_t n, unsigned bits,
				    uint8_t *codes);

static QS_ALWAYS_INLINE void qs_pack_bits_with(const uint8_t *codes, size_t n, unsigned bits,
					       uint8_t *dst, uint64_t bitpos,
					       qs_pack_fast_fn fast)
{
	size_t done = 0;
	if (bitpos % 8 == 0 && n > 0)
		done = fast(codes, n, bits, dst + bitpos / 8);
	qs_kernels_ref.pack_bits(codes + done, n - done, bits, dst,
				 bitpos + (uint64_t)done * bits);
}

static QS_ALWAYS_INLINE void qs_unpack_bits_with(const uint8_t *src, uint64_t bitpos, size_t n,
						 unsigned bits, uint8_t *codes,
						 qs_unpack_fast_fn fast)
{
	size_t done = 0;
	if (bitpos % 8 == 0 && n > 0)
		done = fast(src + bitpos / 8, n, bits, codes);
	qs_kernels_ref.unpack_bits(src, bitpos + (uint64_t)done * bits, n - done, bits,
				   codes + done);
}

#endif /* QS_BITS_SCALAR_H */
