/* avx2.c - the kernel table for x86-64 with AVX2, FMA and F16C (built with
 * -mavx2 -mfma -mf16c for this file only, chosen at run time by
 * dispatch.c).
 *
 * Every function reproduces ref.c bit for bit: the same IEEE operations in
 * the same order on each element, no fused multiply-add (fp-contract is
 * off here and in the build flags, since GCC implements _mm256_mul_ps and
 * _mm256_add_ps as plain vector arithmetic it would otherwise fuse), and
 * comparisons written so a NaN selects the same side as ref's ternaries:
 * MINPS/MAXPS return their second operand unless the first one compares
 * less (greater), which is exactly `a < b ? a : b`.  Inputs may be
 * unaligned; tails shorter than a vector go to the scalar reference.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "bits_scalar.h"
#include "kernels.h"
#include "rtn_scalar.h"

/* ----------------------------------------------------------- conversions */

static void avx2_bf16_to_f32(const uint16_t *src, float *dst, size_t n)
{
	const __m256i zero = _mm256_setzero_si256();
	const __m256i absm = _mm256_set1_epi32(0x7fffffff);
	const __m256i inf = _mm256_set1_epi32(0x7f800000);
	const __m256i quiet = _mm256_set1_epi32(0x00400000);
	size_t i = 0;

	for (; i + 16 <= n; i += 16) {
		__m256i h = _mm256_loadu_si256((const __m256i *)(src + i));
		/* interleaving with zero puts each bf16 in the top half of a
		 * dword: elements 0-3 | 8-11 and 4-7 | 12-15 */
		__m256i a = _mm256_unpacklo_epi16(zero, h);
		__m256i b = _mm256_unpackhi_epi16(zero, h);
		__m256i na = _mm256_cmpgt_epi32(_mm256_and_si256(a, absm), inf);
		__m256i nb = _mm256_cmpgt_epi32(_mm256_and_si256(b, absm), inf);
		a = _mm256_or_si256(a, _mm256_and_si256(na, quiet));
		b = _mm256_or_si256(b, _mm256_and_si256(nb, quiet));
		_mm256_storeu_si256((__m256i *)(dst + i), _mm256_permute2x128_si256(a, b, 0x20));
		_mm256_storeu_si256((__m256i *)(dst + i + 8), _mm256_permute2x128_si256(a, b, 0x31));
	}
	qs_kernels_ref.bf16_to_f32(src + i, dst + i, n - i);
}

/* VCVTPH2PS is exact and quiets NaNs keeping the payload, as
 * qs_f16_to_f32 does. */
static void avx2_f16_to_f32(const uint16_t *src, float *dst, size_t n)
{
	size_t i = 0;
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
	qs_kernels_ref.f16_to_f32(src + i, dst + i, n - i);
}

static void avx2_f32_to_bf16(const float *src, uint16_t *dst, size_t n)
{
	const __m256i absm = _mm256_set1_epi32(0x7fffffff);
	const __m256i inf = _mm256_set1_epi32(0x7f800000);
	const __m256i bias = _mm256_set1_epi32(0x7fff);
	const __m256i one = _mm256_set1_epi32(1);
	const __m256i quiet = _mm256_set1_epi32(0x0040);
	size_t i = 0;

	for (; i + 16 <= n; i += 16) {
		__m256i r[2];
		for (int k = 0; k < 2; k++) {
			__m256i u = _mm256_loadu_si256((const __m256i *)(src + i + 8 * k));
			__m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, absm), inf);
			__m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), one);
			__m256i rn = _mm256_add_epi32(u, _mm256_add_epi32(bias, lsb));
			rn = _mm256_srli_epi32(rn, 16);
			__m256i qn = _mm256_or_si256(_mm256_srli_epi32(u, 16), quiet);
			r[k] = _mm256_blendv_epi8(rn, qn, nan);
		}
		/* every dword is < 2^16, so the unsigned saturation is exact;
		 * the pack interleaves 128-bit lanes, the permute undoes it */
		__m256i p = _mm256_packus_epi32(r[0], r[1]);
		p = _mm256_permute4x64_epi64(p, 0xd8);
		_mm256_storeu_si256((__m256i *)(dst + i), p);
	}
	qs_kernels_ref.f32_to_bf16(src + i, dst + i, n - i);
}

/* VCVTPS2PH with an explicit round-to-nearest-even ignores MXCSR.RC and
 * narrows NaNs the way qs_f32_to_f16 does (quiet, top payload bits). */
static void avx2_f32_to_f16(const float *src, uint16_t *dst, size_t n)
{
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		__m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i),
					    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
		_mm_storeu_si128((__m128i *)(dst + i), h);
	}
	qs_kernels_ref.f32_to_f16(src + i, dst + i, n - i);
}

static size_t avx2_count_nonfinite(const float *x, size_t n)
{
	const __m256i expo = _mm256_set1_epi32(0x7f800000);
	size_t bad = 0;
	size_t i = 0;

	while (i + 8 <= n) {
		/* each lane subtracts at most one per vector: flush the 32-bit
		 * lane counts before they could wrap */
		size_t nvec = (n - i) / 8;
		if (nvec > (1u << 24))
			nvec = 1u << 24;
		__m256i acc = _mm256_setzero_si256();
		for (size_t v = 0; v < nvec; v++, i += 8) {
			__m256i u = _mm256_loadu_si256((const __m256i *)(x + i));
			__m256i e = _mm256_cmpeq_epi32(_mm256_and_si256(u, expo), expo);
			acc = _mm256_sub_epi32(acc, e);
		}
		uint32_t lanes[8];
		_mm256_storeu_si256((__m256i *)lanes, acc);
		for (int l = 0; l < 8; l++)
			bad += lanes[l];
	}
	return bad + qs_kernels_ref.count_nonfinite(x + i, n - i);
}

/* decode_checked (decode_scalar.h), 16 elements a step.  The NaN/Inf
 * test is on the source bits; a lane counts by subtracting its all-ones
 * compare result, 16-bit lanes flushed before they could wrap. */
static inline uint32_t sum_epi16(__m256i acc)
{
	__m256i d = _mm256_madd_epi16(acc, _mm256_set1_epi16(1));
	__m128i x = _mm_add_epi32(_mm256_castsi256_si128(d), _mm256_extracti128_si256(d, 1));
	x = _mm_add_epi32(x, _mm_shuffle_epi32(x, 0x4e));
	x = _mm_add_epi32(x, _mm_shuffle_epi32(x, 0xb1));
	return (uint32_t)_mm_cvtsi128_si32(x);
}

static QS_ALWAYS_INLINE size_t avx2_decode_kind(unsigned kind, const void *src, float *dst,
						size_t n)
{
	const __m256i zero = _mm256_setzero_si256();
	const __m256i absm = _mm256_set1_epi32(0x7fffffff);
	const __m256i inf = _mm256_set1_epi32(0x7f800000);
	const __m256i quiet = _mm256_set1_epi32(0x00400000);
	const __m256i e16 = _mm256_set1_epi16(kind == QS_SRC_KIND_BF16 ? 0x7f80 : 0x7c00);
	const uint8_t *s = src;
	const size_t esz = kind == QS_SRC_KIND_F32 ? 4 : 2;
	size_t bad = 0, i = 0;

	while (i + 16 <= n) {
		size_t nvec = (n - i) / 16;
		/* f32 adds up to 2 a step to a lane, read back signed */
		if (nvec > 8192)
			nvec = 8192;
		__m256i acc = zero;
		for (size_t v = 0; v < nvec; v++, i += 16) {
			if (kind == QS_SRC_KIND_F32) {
				__m256i a = _mm256_loadu_si256((const __m256i *)(s + 4 * i));
				__m256i b = _mm256_loadu_si256((const __m256i *)(s + 4 * i + 32));
				__m256i ea = _mm256_cmpeq_epi32(_mm256_and_si256(a, inf), inf);
				__m256i eb = _mm256_cmpeq_epi32(_mm256_and_si256(b, inf), inf);
				/* two all-ones dwords make two all-ones words */
				acc = _mm256_sub_epi16(acc, _mm256_srli_epi32(ea, 16));
				acc = _mm256_sub_epi16(acc, _mm256_srli_epi32(eb, 16));
				_mm256_storeu_si256((__m256i *)(dst + i), a);
				_mm256_storeu_si256((__m256i *)(dst + i + 8), b);
				continue;
			}
			__m256i h = _mm256_loadu_si256((const __m256i *)(s + 2 * i));
			acc = _mm256_sub_epi16(acc, _mm256_cmpeq_epi16(_mm256_and_si256(h, e16), e16));
			if (kind == QS_SRC_KIND_BF16) {
				/* as avx2_bf16_to_f32 */
				__m256i a = _mm256_unpacklo_epi16(zero, h);
				__m256i b = _mm256_unpackhi_epi16(zero, h);
				__m256i na = _mm256_cmpgt_epi32(_mm256_and_si256(a, absm), inf);
				__m256i nb = _mm256_cmpgt_epi32(_mm256_and_si256(b, absm), inf);
				a = _mm256_or_si256(a, _mm256_and_si256(na, quiet));
				b = _mm256_or_si256(b, _mm256_and_si256(nb, quiet));
				_mm256_storeu_si256((__m256i *)(dst + i),
						    _mm256_permute2x128_si256(a, b, 0x20));
				_mm256_storeu_si256((__m256i *)(dst + i + 8),
						    _mm256_permute2x128_si256(a, b, 0x31));
			} else {
				_mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm256_castsi256_si128(h)));
				_mm256_storeu_ps(dst + i + 8,
						 _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1)));
			}
		}
		bad += sum_epi16(acc);
	}
	return bad + qs_decode_checked_scalar(kind, s + esz * i, dst + i, n - i);
}

static size_t avx2_decode_checked(unsigned kind, const void *src, float *dst, size_t n)
{
	switch (kind) {
	case QS_SRC_KIND_BF16:
		return avx2_decode_kind(QS_SRC_KIND_BF16, src, dst, n);
	case QS_SRC_KIND_F16:
		return avx2_decode_kind(QS_SRC_KIND_F16, src, dst, n);
	default:
		return avx2_decode_kind(QS_SRC_KIND_F32, src, dst, n);
	}
}

/* ------------------------------------------------------------------ rtn */

/* Scalar F16C conversions: identical to qs_f32_to_f16 / qs_f16_to_f32
 * (test_simd checks the edge cases) and far cheaper per group. */
static inline uint16_t h_of(float x)
{
	return (uint16_t)_cvtss_sh(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

static inline float f_of(uint16_t h)
{
	return _cvtsh_ss(h);
}

/* Codes of 8 weights as dwords: clamp((w - min) / scale) then the 2^23
 * rounding trick, in ref's order. */
static inline __m256i code8(const float *w, __m256 vmin, __m256 vscale, __m256 vqmax)
{
	const __m256 magic = _mm256_set1_ps(0x1p23f);
	__m256 d = _mm256_sub_ps(_mm256_loadu_ps(w), vmin);
	__m256 q = _mm256_div_ps(d, vscale);
	q = _mm256_max_ps(q, _mm256_setzero_ps());  /* q > 0 ? q : 0 */
	q = _mm256_min_ps(q, vqmax);                /* q < qmax ? q : qmax */
	q = _mm256_sub_ps(_mm256_add_ps(q, magic), magic);
	return _mm256_cvttps_epi32(q);
}

/* NaN-skipping min/max: a NaN in w never replaces the accumulator (MINPS
 * keeps the second operand), so the accumulators only ever hold numbers
 * and may be combined in any order. */
static void range8(const float *w, size_t n, float *mn_out, float *mx_out)
{
	__m256 mn0 = _mm256_set1_ps(INFINITY), mn1 = mn0;
	__m256 mx0 = _mm256_set1_ps(-INFINITY), mx1 = mx0;
	size_t i = 0;

	for (; i + 16 <= n; i += 16) {
		__m256 a = _mm256_loadu_ps(w + i);
		__m256 b = _mm256_loadu_ps(w + i + 8);
		mn0 = _mm256_min_ps(a, mn0);
		mx0 = _mm256_max_ps(a, mx0);
		mn1 = _mm256_min_ps(b, mn1);
		mx1 = _mm256_max_ps(b, mx1);
	}
	if (i + 8 <= n) {
		__m256 a = _mm256_loadu_ps(w + i);
		mn0 = _mm256_min_ps(a, mn0);
		mx0 = _mm256_max_ps(a, mx0);
		i += 8;
	}
	mn0 = _mm256_min_ps(mn0, mn1);
	mx0 = _mm256_max_ps(mx0, mx1);
	__m128 mn = _mm_min_ps(_mm256_castps256_ps128(mn0), _mm256_extractf128_ps(mn0, 1));
	__m128 mx = _mm_max_ps(_mm256_castps256_ps128(mx0), _mm256_extractf128_ps(mx0, 1));
	mn = _mm_min_ps(mn, _mm_movehl_ps(mn, mn));
	mx = _mm_max_ps(mx, _mm_movehl_ps(mx, mx));
	mn = _mm_min_ss(mn, _mm_shuffle_ps(mn, mn, 1));
	mx = _mm_max_ss(mx, _mm_shuffle_ps(mx, mx, 1));
	float lo = _mm_cvtss_f32(mn), hi = _mm_cvtss_f32(mx);
	for (; i < n; i++) {
		lo = w[i] < lo ? w[i] : lo;
		hi = w[i] > hi ? w[i] : hi;
	}
	*mn_out = lo;
	*mx_out = hi;
}

static void codes_of(const float *w, size_t n, float minf, float scalef, float qmaxf,
		     uint8_t *codes)
{
	const __m256 vmin = _mm256_set1_ps(minf);
	const __m256 vscale = _mm256_set1_ps(scalef);
	const __m256 vqmax = _mm256_set1_ps(qmaxf);
	/* dword order after packs + packus: 0-3 of each vector, then 4-7 */
	const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
	size_t i = 0;

	for (; i + 32 <= n; i += 32) {
		__m256i c0 = code8(w + i, vmin, vscale, vqmax);
		__m256i c1 = code8(w + i + 8, vmin, vscale, vqmax);
		__m256i c2 = code8(w + i + 16, vmin, vscale, vqmax);
		__m256i c3 = code8(w + i + 24, vmin, vscale, vqmax);
		__m256i b = _mm256_packus_epi16(_mm256_packs_epi32(c0, c1),
						_mm256_packs_epi32(c2, c3));
		_mm256_storeu_si256((__m256i *)(codes + i), _mm256_permutevar8x32_epi32(b, order));
	}
	for (; i + 8 <= n; i += 8) {
		__m256i c = code8(w + i, vmin, vscale, vqmax);
		__m128i h = _mm_packs_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1));
		_mm_storel_epi64((__m128i *)(codes + i), _mm_packus_epi16(h, h));
	}
	qs_rtn_codes_scalar(w + i, n - i, minf, scalef, qmaxf, codes + i);
}

/* rtn_scalar.h's group with the per-weight work vectorized. */
static size_t avx2_rtn_group(const float *w, size_t n, unsigned bits, uint16_t *scale,
			     uint16_t *min, uint8_t *codes)
{
	return qs_rtn_group(w, n, bits, scale, min, codes, range8, codes_of, h_of, f_of);
}

static size_t avx2_rtn_quantize_row(const float *w, size_t n, unsigned group, unsigned bits,
				    uint16_t *scale, uint16_t *min, uint8_t *codes)
{
	return qs_rtn_quantize_row(w, n, group, bits, scale, min, codes, avx2_rtn_group);
}

static size_t avx2_rtn_quantize_src(unsigned kind, const void *src, size_t n, unsigned group,
				    unsigned bits, int sanitize, uint16_t *scale, uint16_t *min,
				    uint8_t *codes, size_t *nonfinite)
{
	return qs_rtn_quantize_src(kind, src, n, group, bits, sanitize, scale, min, codes,
				   nonfinite, avx2_decode_kind, avx2_rtn_group);
}

static void values_of(const uint8_t *codes, size_t len, float minf, float scalef, float *w)
{
	const __m256 vs = _mm256_set1_ps(scalef);
	const __m256 vm = _mm256_set1_ps(minf);
	size_t j = 0;
	for (; j + 8 <= len; j += 8) {
		__m128i c8 = _mm_loadl_epi64((const __m128i *)(codes + j));
		__m256 c = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(c8));
		__m256 t = _mm256_mul_ps(c, vs);
		_mm256_storeu_ps(w + j, _mm256_add_ps(vm, t));
	}
	qs_rtn_values_scalar(codes + j, len - j, minf, scalef, w + j);
}

static void avx2_rtn_dequantize_row(const uint8_t *codes, size_t n, unsigned group,
				    const uint16_t *scale, const uint16_t *min, float *w)
{
	qs_rtn_dequantize_row(codes, n, group, scale, min, w, values_of, f_of);
}

/* ---------------------------------------------------------- bit packing */

/* Fast paths for 2, 3 and 4 bits, 32 codes (4*bits bytes) at a time, from
 * a byte-aligned start; 8 bits is a copy.  The rest (other widths, a
 * non-zero bit offset, the last < 32 codes) is ref's, continuing at the
 * byte boundary where the fast path stopped. */

/* 32 codes to 4*bits bytes: two multiply-add steps gather each dword's four
 * codes into its low 4*bits bits (code i at bit i*bits). */
static inline __m256i pack_dwords(__m256i x, unsigned bits)
{
	const __m256i mask = _mm256_set1_epi8((char)((1u << bits) - 1u));
	const __m256i m1 = _mm256_set1_epi16((short)(1 | (1 << (8 + bits))));
	const __m256i m2 = _mm256_set1_epi32((int)(1 | (1u << (16 + 2 * bits))));
	x = _mm256_and_si256(x, mask);
	x = _mm256_maddubs_epi16(x, m1);
	return _mm256_madd_epi16(x, m2);
}

static size_t pack_fast(const uint8_t *codes, size_t n, unsigned bits, uint8_t *p)
{
	size_t i = 0;

	switch (bits) {
	case 2: {
		const __m256i sh = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1,
						    -1, -1, -1, -1, 0, 4, 8, 12, -1, -1, -1, -1,
						    -1, -1, -1, -1, -1, -1, -1, -1);
		const __m256i sel = _mm256_setr_epi32(0, 4, 0, 0, 0, 0, 0, 0);
		for (; i + 32 <= n; i += 32, p += 8) {
			__m256i v = pack_dwords(_mm256_loadu_si256((const __m256i *)(codes + i)), 2);
			v = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(v, sh), sel);
			_mm_storel_epi64((__m128i *)p, _mm256_castsi256_si128(v));
		}
		break;
	}
	case 3: {
		const __m256i sh = _mm256_setr_epi8(0, 1, 2, 8, 9, 10, -1, -1, -1, -1, -1, -1,
						    -1, -1, -1, -1, 0, 1, 2, 8, 9, 10, -1, -1,
						    -1, -1, -1, -1, -1, -1, -1, -1);
		for (; i + 32 <= n; i += 32, p += 12) {
			__m256i v = pack_dwords(_mm256_loadu_si256((const __m256i *)(codes + i)), 3);
			/* each qword: its high dword's 12 bits next to the low
			 * dword's, 8 codes in 24 bits */
			v = _mm256_or_si256(v, _mm256_srli_epi64(v, 20));
			v = _mm256_shuffle_epi8(v, sh);
			uint64_t lo = (uint64_t)_mm_cvtsi128_si64(_mm256_castsi256_si128(v));
			uint64_t hi = (uint64_t)_mm_cvtsi128_si64(_mm256_extracti128_si256(v, 1));
			uint64_t w0 = lo | hi << 48;
			uint32_t w1 = (uint32_t)(hi >> 16);
			memcpy(p, &w0, 8);
			memcpy(p + 8, &w1, 4);
		}
		break;
	}
	case 4: {
		const __m256i sh = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1,
						    -1, -1, -1, -1, 0, 1, 4, 5, 8, 9, 12, 13,
						    -1, -1, -1, -1, -1, -1, -1, -1);
		for (; i + 32 <= n; i += 32, p += 16) {
			__m256i v = pack_dwords(_mm256_loadu_si256((const __m256i *)(codes + i)), 4);
			v = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(v, sh), 0x08);
			_mm_storeu_si128((__m128i *)p, _mm256_castsi256_si128(v));
		}
		break;
	}
	case 8:
		i = n;
		memcpy(p, codes, n);
		break;
	default:
		break;
	}
	return i;
}

static void avx2_pack_bits(const uint8_t *codes, size_t n, unsigned bits, uint8_t *dst,
			   uint64_t bitpos)
{
	qs_pack_bits_with(codes, n, bits, dst, bitpos, pack_fast);
}

/* 4*bits bytes to 32 codes: dword k gets the (two) bytes holding codes
 * 4k..4k+3, is shifted so code 4k sits at bit 0, then each code moves to
 * its own byte. */
static inline __m256i unpack_dwords(__m128i x, __m256i sh, __m256i shift, unsigned bits)
{
	const unsigned m = (1u << bits) - 1u;
	__m256i v = _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(x), sh);
	v = _mm256_srlv_epi32(v, shift);
	__m256i r = _mm256_and_si256(v, _mm256_set1_epi32((int)m));
	r = _mm256_or_si256(r, _mm256_and_si256(_mm256_slli_epi32(v, 8 - bits),
						_mm256_set1_epi32((int)(m << 8))));
	r = _mm256_or_si256(r, _mm256_and_si256(_mm256_slli_epi32(v, 2 * (8 - bits)),
						_mm256_set1_epi32((int)(m << 16))));
	r = _mm256_or_si256(r, _mm256_and_si256(_mm256_slli_epi32(v, 3 * (8 - bits)),
						_mm256_set1_epi32((int)(m << 24))));
	return r;
}

static size_t unpack_fast(const uint8_t *p, size_t n, unsigned bits, uint8_t *codes)
{
	size_t i = 0;

	switch (bits) {
	case 2: {
		const __m256i sh = _mm256_setr_epi8(0, -1, -1, -1, 1, -1, -1, -1, 2, -1, -1, -1,
						    3, -1, -1, -1, 4, -1, -1, -1, 5, -1, -1, -1,
						    6, -1, -1, -1, 7, -1, -1, -1);
		const __m256i shift = _mm256_setzero_si256();
		for (; i + 32 <= n; i += 32, p += 8) {
			__m128i x = _mm_loadl_epi64((const __m128i *)p);
			_mm256_storeu_si256((__m256i *)(codes + i), unpack_dwords(x, sh, shift, 2));
		}
		break;
	}
	case 3: {
		/* dword k starts at bit 12k: byte 12k/8, shifted by 0 or 4 */
		const __m256i sh = _mm256_setr_epi8(0, 1, -1, -1, 1, 2, -1, -1, 3, 4, -1, -1,
						    4, 5, -1, -1, 6, 7, -1, -1, 7, 8, -1, -1,
						    9, 10, -1, -1, 10, 11, -1, -1);
		const __m256i shift = _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4);
		for (; i + 32 <= n; i += 32, p += 12) {
			uint32_t t;
			memcpy(&t, p + 8, 4);
			__m128i x = _mm_insert_epi32(_mm_loadl_epi64((const __m128i *)p), (int)t, 2);
			_mm256_storeu_si256((__m256i *)(codes + i), unpack_dwords(x, sh, shift, 3));
		}
		break;
	}
	case 4: {
		const __m256i sh = _mm256_setr_epi8(0, 1, -1, -1, 2, 3, -1, -1, 4, 5, -1, -1,
						    6, 7, -1, -1, 8, 9, -1, -1, 10, 11, -1, -1,
						    12, 13, -1, -1, 14, 15, -1, -1);
		const __m256i shift = _mm256_setzero_si256();
		for (; i + 32 <= n; i += 32, p += 16) {
			__m128i x = _mm_loadu_si128((const __m128i *)p);
			_mm256_storeu_si256((__m256i *)(codes + i), unpack_dwords(x, sh, shift, 4));
		}
		break;
	}
	case 8:
		i = n;
		memcpy(codes, p, n);
		break;
	default:
		break;
	}
	return i;
}

static void avx2_unpack_bits(const uint8_t *src, uint64_t bitpos, size_t n, unsigned bits,
			     uint8_t *codes)
{
	qs_unpack_bits_with(src, bitpos, n, bits, codes, unpack_fast);
}

const struct qs_kernels qs_kernels_avx2 = {
	.name = "avx2",
	.bf16_to_f32 = avx2_bf16_to_f32,
	.f16_to_f32 = avx2_f16_to_f32,
	.f32_to_bf16 = avx2_f32_to_bf16,
	.f32_to_f16 = avx2_f32_to_f16,
	.count_nonfinite = avx2_count_nonfinite,
	.decode_checked = avx2_decode_checked,
	.rtn_quantize_row = avx2_rtn_quantize_row,
	.rtn_quantize_src = avx2_rtn_quantize_src,
	.rtn_dequantize_row = avx2_rtn_dequantize_row,
	.pack_bits = avx2_pack_bits,
	.unpack_bits = avx2_unpack_bits,
	.adpq_quantize_row = qs_avx2_adpq_quantize_row,
	.adpq_dequantize_row = qs_ref_adpq_dequantize_row,
	.pack_planes = qs_avx2_pack_planes,
	.unpack_planes = qs_ref_unpack_planes,
	.nearest_code = qs_avx2_nearest_code,
	.daq_eval = qs_avx2_daq_eval,
	.daq_range = qs_avx2_daq_range,
	.gguf_quantize_row = qs_avx2_gguf_quantize_row,
	.gguf_dequantize_row = qs_avx2_gguf_dequantize_row,
};
