/* kernels.h - the vectorizable inner loops behind every scheme, as a const
 * table of function pointers chosen once at run time (dispatch.c) from
 * cpuid and xgetbv, or forced by QSHARD_SIMD=ref|avx2|neon.
 *
 * Invariant: every variant produces bit-identical results to the _ref
 * variant (same operations in the same order, no FMA contraction in _ref),
 * so the output file never depends on the machine.
 */
#ifndef QS_KERNELS_H
#define QS_KERNELS_H

#include <stddef.h>
#include <stdint.h>

struct qs_kernels {
	const char *name;  /* "ref", "avx2", "neon" */

	/* Source dtype to f32 (bf16 and f16 widen exactly; denormals, Inf and
	 * NaN are kept). */
	void (*bf16_to_f32)(const uint16_t *src, float *dst, size_t n);
	void (*f16_to_f32)(const uint16_t *src, float *dst, size_t n);
	/* f32 to bf16/f16 with round-to-nearest-even (NaN stays NaN). */
	void (*f32_to_bf16)(const float *src, uint16_t *dst, size_t n);
	void (*f32_to_f16)(const float *src, uint16_t *dst, size_t n);

	/* Number of NaN/Inf values in x[n]. */
	size_t (*count_nonfinite)(const float *x, size_t n);

	/* rtn group quantization: for each group of `group` weights of w[n]
	 * (the last may be shorter), computes the fp16 scale and min (see
	 * rtn.c for the exact definition) into scale[] and min[] and codes in
	 * 0..2^bits-1 into codes[n].  Returns the number of groups whose range
	 * overflowed fp16 (0 when all fit). */
	size_t (*rtn_quantize_row)(const float *w, size_t n, unsigned group,
				   unsigned bits, uint16_t *scale, uint16_t *min,
				   uint8_t *codes);
	/* rtn dequantization of one row from codes and fp16 scale/min. */
	void (*rtn_dequantize_row)(const uint8_t *codes, size_t n, unsigned group,
				   const uint16_t *scale, const uint16_t *min,
				   float *w);

	/* Tight LSB-first bit packing of codes[n] (each < 2^bits) into a
	 * bitstream starting at bit offset bitpos of dst; dst bytes beyond the
	 * written bits are left as they are except the partially written last
	 * byte, whose unused high bits are zero.  bits in 1..8. */
	void (*pack_bits)(const uint8_t *codes, size_t n, unsigned bits,
			  uint8_t *dst, uint64_t bitpos);
	void (*unpack_bits)(const uint8_t *src, uint64_t bitpos, size_t n,
			    unsigned bits, uint8_t *codes);
};

/* The table for this machine (or QSHARD_SIMD), resolved once. */
const struct qs_kernels *qs_kernels_get(void);
/* A specific level ("ref", "avx2", "neon"), or NULL when not built or not
 * supported by this CPU; tests use it to compare variants. */
const struct qs_kernels *qs_kernels_by_name(const char *name);

/* The table that QSHARD_SIMD=request selects: request when built and
 * supported, else (NULL, unknown or unsupported) the best available.
 * qs_kernels_get() resolves this once from the environment; tests call it
 * directly. */
const struct qs_kernels *qs_kernels_choose(const char *request);

extern const struct qs_kernels qs_kernels_ref;

/* Scalar conversions, shared by every variant for tails. */
float qs_bf16_to_f32(uint16_t h);
float qs_f16_to_f32(uint16_t h);
uint16_t qs_f32_to_bf16(float f);
uint16_t qs_f32_to_f16(float f);

#endif /* QS_KERNELS_H */
