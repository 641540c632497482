/* ref.c - the portable scalar kernels: the definition of qshard's output.
 *
 * Every other variant (x86/avx2.c, arm/neon.c) must reproduce these results
 * bit for bit, so each floating-point expression here is a fixed sequence
 * of separately rounded IEEE operations: no fused multiply-add, no
 * reassociation, and reductions only where the order cannot matter (min and
 * max of finite values; the sign of a zero minimum is normalised).
 */
#include <math.h>
#include <string.h>

#include "kernels.h"
#include "rtn_scalar.h"

/* Inlined here rather than calling qs_bf16_to_f32 per element: this is the
 * converter's hottest loop, and written branch-free it vectorizes. */
static void ref_bf16_to_f32(const uint16_t *restrict src, float *restrict dst, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint32_t u = qs_bf16_bits_scalar(src[i]);
		memcpy(&dst[i], &u, sizeof(u));
	}
}

static void ref_f16_to_f32(const uint16_t *src, float *dst, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dst[i] = qs_f16_to_f32(src[i]);
}

static void ref_f32_to_bf16(const float *src, uint16_t *dst, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dst[i] = qs_f32_to_bf16(src[i]);
}

static void ref_f32_to_f16(const float *src, uint16_t *dst, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dst[i] = qs_f32_to_f16(src[i]);
}

static size_t ref_count_nonfinite(const float *x, size_t n)
{
	size_t bad = 0;
	/* 32-bit partial counts over blocks keep the loop one width so it
	 * vectorizes */
	for (size_t i = 0; i < n;) {
		size_t end = n - i > 65536 ? i + 65536 : n;
		uint32_t part = 0;
		for (; i < end; i++) {
			uint32_t u;
			memcpy(&u, &x[i], sizeof(u));
			part += (u & 0x7f800000u) == 0x7f800000u;
		}
		bad += part;
	}
	return bad;
}

/* decode_scalar.h's definition, one loop per kind */
static size_t ref_decode_checked(unsigned kind, const void *src, float *dst, size_t n)
{
	switch (kind) {
	case QS_SRC_KIND_BF16:
		return qs_decode_checked_scalar(QS_SRC_KIND_BF16, src, dst, n);
	case QS_SRC_KIND_F16:
		return qs_decode_checked_scalar(QS_SRC_KIND_F16, src, dst, n);
	default:
		return qs_decode_checked_scalar(QS_SRC_KIND_F32, src, dst, n);
	}
}

/* ------------------------------------------------------------------ rtn */

/* Min and max of a group, skipping NaNs (a comparison with NaN is false),
 * so a NaN weight never moves the range whatever its position; +Inf/-Inf
 * for a group of only NaNs.  Eight independent lanes: for non-NaN values
 * min and max do not depend on the order (a zero's sign is normalised
 * later), so SIMD variants may reduce in any order. */
static void group_range(const float *w, size_t n, float *mn_out, float *mx_out)
{
	float mn[8], mx[8];
	for (int l = 0; l < 8; l++) {
		mn[l] = INFINITY;
		mx[l] = -INFINITY;
	}
	size_t i = 0;
	for (; i + 8 <= n; i += 8)
		for (int l = 0; l < 8; l++) {
			mn[l] = w[i + l] < mn[l] ? w[i + l] : mn[l];
			mx[l] = w[i + l] > mx[l] ? w[i + l] : mx[l];
		}
	for (; i < n; i++) {
		mn[0] = w[i] < mn[0] ? w[i] : mn[0];
		mx[0] = w[i] > mx[0] ? w[i] : mx[0];
	}
	for (int l = 1; l < 8; l++) {
		mn[0] = mn[l] < mn[0] ? mn[l] : mn[0];
		mx[0] = mx[l] > mx[0] ? mx[l] : mx[0];
	}
	*mn_out = mn[0];
	*mx_out = mx[0];
}

static size_t ref_rtn_group(const float *w, size_t n, unsigned bits, uint16_t *scale,
			    uint16_t *min, uint8_t *codes)
{
	return qs_rtn_group(w, n, bits, scale, min, codes, group_range, qs_rtn_codes_scalar,
			    qs_f32_to_f16, qs_f16_to_f32);
}

static size_t ref_rtn_quantize_row(const float *w, size_t n, unsigned group,
				   unsigned bits, uint16_t *scale, uint16_t *min,
				   uint8_t *codes)
{
	return qs_rtn_quantize_row(w, n, group, bits, scale, min, codes, ref_rtn_group);
}

static size_t ref_rtn_quantize_src(unsigned kind, const void *src, size_t n, unsigned group,
				   unsigned bits, int sanitize, uint16_t *scale, uint16_t *min,
				   uint8_t *codes, size_t *nonfinite)
{
	return qs_rtn_quantize_src(kind, src, n, group, bits, sanitize, scale, min, codes,
				   nonfinite, qs_decode_checked_scalar, ref_rtn_group);
}

static void ref_rtn_dequantize_row(const uint8_t *codes, size_t n, unsigned group,
				   const uint16_t *scale, const uint16_t *min, float *w)
{
	qs_rtn_dequantize_row(codes, n, group, scale, min, w, qs_rtn_values_scalar,
			      qs_f16_to_f32);
}

/* ---------------------------------------------------------- bit packing */

/* Blocks of 8 codes are exactly `bits` bytes, so the bulk of a row moves as
 * one 64-bit word per block whatever the width; a start offset of `off`
 * bits just shifts the word, carrying its top `off` bits into the next
 * block.  always_inline with a constant `bits` lets the compiler unroll
 * each width. */
static inline __attribute__((always_inline)) size_t
pack_blocks(const uint8_t *codes, size_t nblk, unsigned bits, uint8_t *p,
	    unsigned off, uint64_t *carry)
{
	const uint64_t mask = (1u << bits) - 1u;
	uint64_t c = *carry;
	for (size_t b = 0; b < nblk; b++) {
		const uint8_t *k = codes + 8 * b;
		uint64_t v = 0;
		for (unsigned i = 0; i < 8; i++)
			v |= (k[i] & mask) << (i * bits);
		uint64_t out = (v << off) | c;
		for (unsigned i = 0; i < bits; i++)
			p[i] = (uint8_t)(out >> (8 * i));
		c = off ? v >> (8 * bits - off) : 0;
		p += bits;
	}
	*carry = c;
	return nblk * bits;
}

/* Caller contract (kernels.h): the bits below bitpos in the first byte are
 * kept (read-modify-write), so consecutive rows can be packed back to back
 * without zeroing the destination; the unused high bits of the last byte
 * are zeroed; nothing past it is touched. */
static void ref_pack_bits(const uint8_t *codes, size_t n, unsigned bits,
			  uint8_t *dst, uint64_t bitpos)
{
	if (n == 0 || bits == 0 || bits > 8)
		return;
	uint8_t *p = dst + bitpos / 8;
	unsigned off = (unsigned)(bitpos % 8);
	uint64_t carry = off ? (uint64_t)(*p & ((1u << off) - 1u)) : 0;
	size_t nblk = n / 8;
	size_t adv;

	switch (bits) {
	case 1: adv = pack_blocks(codes, nblk, 1, p, off, &carry); break;
	case 2: adv = pack_blocks(codes, nblk, 2, p, off, &carry); break;
	case 3: adv = pack_blocks(codes, nblk, 3, p, off, &carry); break;
	case 4: adv = pack_blocks(codes, nblk, 4, p, off, &carry); break;
	case 5: adv = pack_blocks(codes, nblk, 5, p, off, &carry); break;
	case 6: adv = pack_blocks(codes, nblk, 6, p, off, &carry); break;
	case 7: adv = pack_blocks(codes, nblk, 7, p, off, &carry); break;
	default: adv = pack_blocks(codes, nblk, 8, p, off, &carry); break;
	}
	p += adv;

	/* tail: fewer than 8 codes, through a bit accumulator */
	const unsigned mask = (1u << bits) - 1u;
	uint32_t acc = (uint32_t)carry;
	unsigned nacc = off;
	for (size_t i = nblk * 8; i < n; i++) {
		acc |= (uint32_t)(codes[i] & mask) << nacc;
		nacc += bits;
		while (nacc >= 8) {
			*p++ = (uint8_t)acc;
			acc >>= 8;
			nacc -= 8;
		}
	}
	if (nacc)
		*p = (uint8_t)acc;
}

static inline __attribute__((always_inline)) size_t
unpack_blocks(const uint8_t *p, size_t nblk, unsigned bits, unsigned off,
	      uint8_t *codes)
{
	const uint64_t mask = (1u << bits) - 1u;
	for (size_t b = 0; b < nblk; b++) {
		uint64_t v = 0;
		for (unsigned i = 0; i < bits; i++)
			v |= (uint64_t)p[i] << (8 * i);
		/* with an offset the block's top `off` bits sit in the next
		 * byte, which then belongs to the stream */
		if (off)
			v = (v >> off) | ((uint64_t)p[bits] << (8 * bits - off));
		uint8_t *k = codes + 8 * b;
		for (unsigned i = 0; i < 8; i++)
			k[i] = (uint8_t)((v >> (i * bits)) & mask);
		p += bits;
	}
	return nblk * bits;
}

static void ref_unpack_bits(const uint8_t *src, uint64_t bitpos, size_t n,
			    unsigned bits, uint8_t *codes)
{
	if (n == 0 || bits == 0 || bits > 8)
		return;
	const uint8_t *p = src + bitpos / 8;
	unsigned off = (unsigned)(bitpos % 8);
	size_t nblk = n / 8;
	size_t adv;

	switch (bits) {
	case 1: adv = unpack_blocks(p, nblk, 1, off, codes); break;
	case 2: adv = unpack_blocks(p, nblk, 2, off, codes); break;
	case 3: adv = unpack_blocks(p, nblk, 3, off, codes); break;
	case 4: adv = unpack_blocks(p, nblk, 4, off, codes); break;
	case 5: adv = unpack_blocks(p, nblk, 5, off, codes); break;
	case 6: adv = unpack_blocks(p, nblk, 6, off, codes); break;
	case 7: adv = unpack_blocks(p, nblk, 7, off, codes); break;
	default: adv = unpack_blocks(p, nblk, 8, off, codes); break;
	}
	p += adv;

	/* tail: read bytes only as they are needed, never past the last bit */
	const unsigned mask = (1u << bits) - 1u;
	uint32_t acc = 0;
	unsigned nacc = 0;
	if (off && nblk * 8 < n) {
		acc = (uint32_t)(*p++ >> off);
		nacc = 8 - off;
	}
	for (size_t i = nblk * 8; i < n; i++) {
		if (nacc < bits) {
			acc |= (uint32_t)*p++ << nacc;
			nacc += 8;
		}
		codes[i] = (uint8_t)(acc & mask);
		acc >>= bits;
		nacc -= bits;
	}
}

const struct qs_kernels qs_kernels_ref = {
	.name = "ref",
	.bf16_to_f32 = ref_bf16_to_f32,
	.f16_to_f32 = ref_f16_to_f32,
	.f32_to_bf16 = ref_f32_to_bf16,
	.f32_to_f16 = ref_f32_to_f16,
	.count_nonfinite = ref_count_nonfinite,
	.decode_checked = ref_decode_checked,
	.rtn_quantize_row = ref_rtn_quantize_row,
	.rtn_quantize_src = ref_rtn_quantize_src,
	.rtn_dequantize_row = ref_rtn_dequantize_row,
	.pack_bits = ref_pack_bits,
	.unpack_bits = ref_unpack_bits,
	.adpq_quantize_row = qs_ref_adpq_quantize_row,
	.adpq_dequantize_row = qs_ref_adpq_dequantize_row,
	.pack_planes = qs_ref_pack_planes,
	.unpack_planes = qs_ref_unpack_planes,
	.nearest_code = qs_ref_nearest_code,
	.daq_eval = qs_ref_daq_eval,
	.daq_range = qs_ref_daq_range,
	.gguf_quantize_row = qs_ref_gguf_quantize_row,
	.gguf_dequantize_row = qs_ref_gguf_dequantize_row,
};
