/* avx512.c - the kernels x86-64-v4 (AVX512F/BW/VL) speeds up over AVX2:
 * the fused source decode + NaN/Inf check and rtn, and adpq's row kernel
 * and bit planes from avx512_adpq.c (both built with -mavx512f -mavx512bw
 * -mavx512vl -mavx2 -mfma -mf16c -mpopcnt, for these files only).
 *
 * This table lists only what it takes over; dispatch.c completes it from
 * the AVX2 table (every AVX-512 CPU has AVX2), so each remaining entry is
 * AVX2's.  As everywhere (kernels.h), the results are bit-identical to
 * ref.c: the same IEEE operations per element in ref's order, no FMA
 * contraction, min/max written so a NaN selects the same side as ref's
 * ternaries (VMINPS/VMAXPS return the second operand unless the first
 * compares less/greater), and the per-group definition from rtn_scalar.h.
 * Tails run masked, so there is no scalar remainder loop in rtn.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "decode_scalar.h"
#include "kernels.h"
#include "rtn_scalar.h"

/* ------------------------------------------------- decode + NaN/Inf check */

/* decode_checked (decode_scalar.h), 32 elements a step for the 16-bit
 * kinds, 16 for f32; the NaN/Inf test on the source bits gives a mask
 * whose population count is the step's count. */
static QS_ALWAYS_INLINE size_t avx512_decode_kind(unsigned kind, const void *src, float *dst,
						  size_t n)
{
	const __m512i absm = _mm512_set1_epi32(0x7fffffff);
	const __m512i inf = _mm512_set1_epi32(0x7f800000);
	const __m512i quiet = _mm512_set1_epi32(0x00400000);
	const __m512i e16 = _mm512_set1_epi16(kind == QS_SRC_KIND_BF16 ? 0x7f80 : 0x7c00);
	const uint8_t *s = src;
	const size_t esz = kind == QS_SRC_KIND_F32 ? 4 : 2;
	size_t bad = 0, i = 0;

	if (kind == QS_SRC_KIND_F32) {
		for (; i + 16 <= n; i += 16) {
			__m512i u = _mm512_loadu_si512((const void *)(s + 4 * i));
			__mmask16 e = _mm512_cmpeq_epi32_mask(_mm512_and_si512(u, inf), inf);
			bad += (size_t)__builtin_popcount((unsigned)e);
			_mm512_storeu_si512((void *)(dst + i), u);
		}
		return bad + qs_decode_checked_scalar(kind, s + esz * i, dst + i, n - i);
	}
	for (; i + 32 <= n; i += 32) {
		__m512i h = _mm512_loadu_si512((const void *)(s + 2 * i));
		__mmask32 e = _mm512_cmpeq_epi16_mask(_mm512_and_si512(h, e16), e16);
		bad += (size_t)__builtin_popcount((unsigned)e);
		__m256i lo = _mm512_castsi512_si256(h), hi = _mm512_extracti64x4_epi64(h, 1);
		if (kind == QS_SRC_KIND_BF16) {
			/* widen, shift into the top half, quiet NaNs (as ref) */
			__m512i a = _mm512_slli_epi32(_mm512_cvtepu16_epi32(lo), 16);
			__m512i b = _mm512_slli_epi32(_mm512_cvtepu16_epi32(hi), 16);
			__mmask16 na = _mm512_cmpgt_epu32_mask(_mm512_and_si512(a, absm), inf);
			__mmask16 nb = _mm512_cmpgt_epu32_mask(_mm512_and_si512(b, absm), inf);
			a = _mm512_mask_or_epi32(a, na, a, quiet);
			b = _mm512_mask_or_epi32(b, nb, b, quiet);
			_mm512_storeu_si512((void *)(dst + i), a);
			_mm512_storeu_si512((void *)(dst + i + 16), b);
		} else {
			/* VCVTPH2PS: exact, NaNs quieted keeping the payload */
			_mm512_storeu_ps(dst + i, _mm512_cvtph_ps(lo));
			_mm512_storeu_ps(dst + i + 16, _mm512_cvtph_ps(hi));
		}
	}
	return bad + qs_decode_checked_scalar(kind, s + esz * i, dst + i, n - i);
}

static size_t avx512_decode_checked(unsigned kind, const void *src, float *dst, size_t n)
{
	switch (kind) {
	case QS_SRC_KIND_BF16:
		return avx512_decode_kind(QS_SRC_KIND_BF16, src, dst, n);
	case QS_SRC_KIND_F16:
		return avx512_decode_kind(QS_SRC_KIND_F16, src, dst, n);
	default:
		return avx512_decode_kind(QS_SRC_KIND_F32, src, dst, n);
	}
}

/* ------------------------------------------------------------------ rtn */

/* Scalar F16C conversions, identical to qs_f32_to_f16 / qs_f16_to_f32. */
static inline uint16_t h_of(float x)
{
	return (uint16_t)_cvtss_sh(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

static inline float f_of(uint16_t h)
{
	return _cvtsh_ss(h);
}

static inline __mmask16 tail_mask(size_t left)
{
	return (__mmask16)(left >= 16 ? 0xffffu : (1u << left) - 1u);
}

/* NaN-skipping min/max: a NaN in w never replaces the accumulator, and
 * the masked tail leaves masked-out lanes alone, so the accumulators hold
 * only numbers (or the +-Inf start) and may be combined in any order. */
static void range16(const float *w, size_t n, float *mn_out, float *mx_out)
{
	__m512 mn0 = _mm512_set1_ps(INFINITY), mn1 = mn0;
	__m512 mx0 = _mm512_set1_ps(-INFINITY), mx1 = mx0;
	size_t i = 0;
	for (; i + 32 <= n; i += 32) {
		__m512 a = _mm512_loadu_ps(w + i);
		__m512 b = _mm512_loadu_ps(w + i + 16);
		mn0 = _mm512_min_ps(a, mn0);
		mx0 = _mm512_max_ps(a, mx0);
		mn1 = _mm512_min_ps(b, mn1);
		mx1 = _mm512_max_ps(b, mx1);
	}
	for (; i < n; i += 16) {
		__mmask16 k = tail_mask(n - i);
		__m512 a = _mm512_maskz_loadu_ps(k, w + i);
		mn0 = _mm512_mask_min_ps(mn0, k, a, mn0);
		mx0 = _mm512_mask_max_ps(mx0, k, a, mx0);
	}
	mn0 = _mm512_min_ps(mn0, mn1);
	mx0 = _mm512_max_ps(mx0, mx1);
	*mn_out = _mm512_reduce_min_ps(mn0);
	*mx_out = _mm512_reduce_max_ps(mx0);
}

/* Codes of 16 weights as dwords: clamp((w - min) / scale) then the 2^23
 * rounding trick, in ref's order (qs_round_code). */
static inline __m512i code16(__m512 w, __m512 vmin, __m512 vscale, __m512 vqmax)
{
	const __m512 magic = _mm512_set1_ps(0x1p23f);
	__m512 q = _mm512_div_ps(_mm512_sub_ps(w, vmin), vscale);
	q = _mm512_max_ps(q, _mm512_setzero_ps());  /* q > 0 ? q : 0 */
	q = _mm512_min_ps(q, vqmax);                /* q < qmax ? q : qmax */
	q = _mm512_sub_ps(_mm512_add_ps(q, magic), magic);
	return _mm512_cvttps_epi32(q);
}

static void codes16(const float *w, size_t n, float minf, float scalef, float qmaxf,
		    uint8_t *codes)
{
	const __m512 vmin = _mm512_set1_ps(minf);
	const __m512 vscale = _mm512_set1_ps(scalef);
	const __m512 vqmax = _mm512_set1_ps(qmaxf);
	size_t i = 0;
	for (; i + 16 <= n; i += 16) {
		__m512i c = code16(_mm512_loadu_ps(w + i), vmin, vscale, vqmax);
		/* VPMOVDB truncates; every code is 0..255 */
		_mm_storeu_si128((__m128i *)(codes + i), _mm512_cvtepi32_epi8(c));
	}
	if (i < n) {
		__mmask16 k = tail_mask(n - i);
		__m512i c = code16(_mm512_maskz_loadu_ps(k, w + i), vmin, vscale, vqmax);
		_mm512_mask_cvtepi32_storeu_epi8(codes + i, k, c);
	}
}

/* rtn_scalar.h's group with the per-weight work on 16 lanes. */
static size_t avx512_rtn_group(const float *w, size_t n, unsigned bits, uint16_t *scale,
			       uint16_t *min, uint8_t *codes)
{
	return qs_rtn_group(w, n, bits, scale, min, codes, range16, codes16, h_of, f_of);
}

static size_t avx512_rtn_quantize_row(const float *w, size_t n, unsigned group, unsigned bits,
				      uint16_t *scale, uint16_t *min, uint8_t *codes)
{
	return qs_rtn_quantize_row(w, n, group, bits, scale, min, codes, avx512_rtn_group);
}

static size_t avx512_rtn_quantize_src(unsigned kind, const void *src, size_t n, unsigned group,
				      unsigned bits, int sanitize, uint16_t *scale,
				      uint16_t *min, uint8_t *codes, size_t *nonfinite)
{
	return qs_rtn_quantize_src(kind, src, n, group, bits, sanitize, scale, min, codes,
				   nonfinite, avx512_decode_kind, avx512_rtn_group);
}

/* Completed from the AVX2 table by dispatch.c (entries left NULL here). */
const struct qs_kernels qs_kernels_avx512_own = {
	.name = "avx512",
	.decode_checked = avx512_decode_checked,
	.rtn_quantize_row = avx512_rtn_quantize_row,
	.rtn_quantize_src = avx512_rtn_quantize_src,
	.adpq_quantize_row = qs_avx512_adpq_quantize_row,  /* avx512_adpq.c */
	.pack_planes = qs_avx512_pack_planes,
};
