/* avx2_gguf.c - the AVX2 instance of the gguf kernels (gguf_impl.h holds
 * the one definition; this file maps its 8-lane vector type onto __m256).
 * Bit-identical to ref_gguf.c: the same element-wise operations (MINPS and
 * MAXPS are `a < b ? a : b` and `a > b ? a : b`, ROUNDPS with nearest-even
 * is rintf in the default rounding mode) and the same reduction tree. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

typedef __m256 v8;

static inline v8 v8_load(const float *p)
{
	return _mm256_loadu_ps(p);
}

static inline void v8_store(float *p, v8 a)
{
	_mm256_storeu_ps(p, a);
}

static inline v8 v8_set1(float x)
{
	return _mm256_set1_ps(x);
}

static inline v8 v8_add(v8 a, v8 b)
{
	return _mm256_add_ps(a, b);
}

static inline v8 v8_sub(v8 a, v8 b)
{
	return _mm256_sub_ps(a, b);
}

static inline v8 v8_mul(v8 a, v8 b)
{
	return _mm256_mul_ps(a, b);
}

static inline v8 v8_fma(v8 a, v8 b, v8 c)
{
	return _mm256_fmadd_ps(a, b, c);
}

static inline v8 v8_min(v8 a, v8 b)
{
	return _mm256_min_ps(a, b);
}

static inline v8 v8_max(v8 a, v8 b)
{
	return _mm256_max_ps(a, b);
}

static inline v8 v8_div(v8 a, v8 b)
{
	return _mm256_div_ps(a, b);
}

/* out[i] lane j = p[j * stride + i], i < 8: eight row loads and an 8x8
 * transpose (exact moves only) */
static inline void v8_load_t8(const float *p, unsigned stride, v8 *out)
{
	__m256 r[8], t[8];
	for (unsigned j = 0; j < 8; j++)
		r[j] = _mm256_loadu_ps(p + j * stride);
	t[0] = _mm256_unpacklo_ps(r[0], r[1]);
	t[1] = _mm256_unpackhi_ps(r[0], r[1]);
	t[2] = _mm256_unpacklo_ps(r[2], r[3]);
	t[3] = _mm256_unpackhi_ps(r[2], r[3]);
	t[4] = _mm256_unpacklo_ps(r[4], r[5]);
	t[5] = _mm256_unpackhi_ps(r[4], r[5]);
	t[6] = _mm256_unpacklo_ps(r[6], r[7]);
	t[7] = _mm256_unpackhi_ps(r[6], r[7]);
	r[0] = _mm256_shuffle_ps(t[0], t[2], _MM_SHUFFLE(1, 0, 1, 0));
	r[1] = _mm256_shuffle_ps(t[0], t[2], _MM_SHUFFLE(3, 2, 3, 2));
	r[2] = _mm256_shuffle_ps(t[1], t[3], _MM_SHUFFLE(1, 0, 1, 0));
	r[3] = _mm256_shuffle_ps(t[1], t[3], _MM_SHUFFLE(3, 2, 3, 2));
	r[4] = _mm256_shuffle_ps(t[4], t[6], _MM_SHUFFLE(1, 0, 1, 0));
	r[5] = _mm256_shuffle_ps(t[4], t[6], _MM_SHUFFLE(3, 2, 3, 2));
	r[6] = _mm256_shuffle_ps(t[5], t[7], _MM_SHUFFLE(1, 0, 1, 0));
	r[7] = _mm256_shuffle_ps(t[5], t[7], _MM_SHUFFLE(3, 2, 3, 2));
	for (unsigned i = 0; i < 4; i++) {
		out[i] = _mm256_permute2f128_ps(r[i], r[i + 4], 0x20);
		out[i + 4] = _mm256_permute2f128_ps(r[i], r[i + 4], 0x31);
	}
}

static inline void v8_store_u8(uint8_t *p, v8 a)
{
	__m256i i = _mm256_cvttps_epi32(a);
	__m128i lo = _mm256_castsi256_si128(i), hi = _mm256_extracti128_si256(i, 1);
	__m128i w = _mm_packus_epi32(lo, hi);
	_mm_storel_epi64((__m128i *)(void *)p, _mm_packus_epi16(w, w));
}

/* masks: all-ones lanes; ordered comparisons are false on NaN like C's */
typedef __m256 m8;

static inline m8 v8_lt(v8 a, v8 b)
{
	return _mm256_cmp_ps(a, b, _CMP_LT_OQ);
}

static inline m8 v8_gt(v8 a, v8 b)
{
	return _mm256_cmp_ps(a, b, _CMP_GT_OQ);
}

static inline m8 v8_ge(v8 a, v8 b)
{
	return _mm256_cmp_ps(a, b, _CMP_GE_OQ);
}

static inline m8 m8_and(m8 a, m8 b)
{
	return _mm256_and_ps(a, b);
}

static inline m8 m8_or(m8 a, m8 b)
{
	return _mm256_or_ps(a, b);
}

static inline int m8_any(m8 a)
{
	return _mm256_movemask_ps(a) != 0;
}

static inline v8 v8_sel(m8 m, v8 a, v8 b)
{
	return _mm256_blendv_ps(b, a, m);
}

static inline v8 v8_round(v8 a)
{
	return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

static inline v8 v8_abs(v8 a)
{
	return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a);
}

static inline v8 v8_ordered(v8 a)
{
	return _mm256_and_ps(a, _mm256_cmp_ps(a, a, _CMP_ORD_Q));
}

static inline v8 v8_from_i8(const int8_t *p)
{
	__m128i b = _mm_loadl_epi64((const __m128i *)(const void *)p);
	return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
}

static inline __m128 fold(__m256 a, int op)
{
	__m128 lo = _mm256_castps256_ps128(a), hi = _mm256_extractf128_ps(a, 1);
	/* lanes (0,4) (1,5) (2,6) (3,7), then (s0,s2) (s1,s3), then the two */
	__m128 s = op == 0 ? _mm_add_ps(lo, hi) : op == 1 ? _mm_max_ps(lo, hi) : _mm_min_ps(lo, hi);
	__m128 t = _mm_movehl_ps(s, s);
	__m128 u = op == 0 ? _mm_add_ps(s, t) : op == 1 ? _mm_max_ps(s, t) : _mm_min_ps(s, t);
	__m128 v = _mm_shuffle_ps(u, u, 1);
	return op == 0 ? _mm_add_ss(u, v) : op == 1 ? _mm_max_ss(u, v) : _mm_min_ss(u, v);
}

static inline float v8_hsum(v8 a)
{
	return _mm_cvtss_f32(fold(a, 0));
}

static inline float v8_hmax(v8 a)
{
	return _mm_cvtss_f32(fold(a, 1));
}

static inline float v8_hmin(v8 a)
{
	return _mm_cvtss_f32(fold(a, 2));
}

#define QS_GGUF_FN(name) qs_avx2_gguf_##name
#include "gguf_impl.h"
