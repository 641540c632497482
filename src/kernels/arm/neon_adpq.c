/* neon_adpq.c - the adpq kernels for AArch64 Advanced SIMD (built with the
 * flags of neon.c, entered through its table).
 *
 * Bit-identical to ref_adpq.c, which defines the output; the structure is
 * that of x86/avx2_adpq.c with 4-lane vectors.  Every f32 expression is the
 * same sequence of separately rounded operations (no FMA: GCC would fuse
 * vmulq_f32 + vaddq_f32 into FMLA without fp-contract=off), and ref's
 * `a < b ? a : b` selections are a compare plus a bitwise select, because
 * FMIN/FMAX propagate NaNs and FMINNM/FMAXNM do not match either.  The
 * range-search sums keep ref's 32 lanes as eight accumulators, vector j of a
 * 32-element block going to accumulator j (lanes 4j..4j+3), then folded as
 * ref's header says.  The per-group grids (phase 2) are ref's code,
 * qs_ref_adpq_grids().
 *
 * Outliers: the row's set comes from qs_adpq_select_row_with() (ref_adpq.c),
 * shared by every variant, with its two passes over the row (the block
 * maxima and the compare-and-compact) vectorized here on the integer keys,
 * which are exactly ref's; then the set only becomes bit masks.
 *
 * A group shorter than the scheme's group (a row's last) is copied into a
 * buffer padded with +0.0 and the pad lanes masked out; the pads add +0.0
 * to error lanes after ref's last element, which changes no sum.
 *
 * Static names carry an na_ prefix: tests/unit/neon_driver.c compiles this
 * file in one unit together with ref_adpq.c and neon.c.
 */
#include <arm_neon.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "adpq_scalar.h"
#include "kernels.h"

#define NA_SEARCH_DEN 32.0f
#define NA_GMAX QS_ADPQ_GMAX
#define NA_VMAX (NA_GMAX / 4u)

/* ref's `q > 0 ? q : 0` then `q < qmax ? q : qmax` (a NaN goes to 0). */
static inline float32x4_t na_clamp(float32x4_t q, float32x4_t qv)
{
	const float32x4_t zero = vdupq_n_f32(0.0f);
	q = vbslq_f32(vcgtq_f32(q, zero), q, zero);
	return vbslq_f32(vcltq_f32(q, qv), q, qv);
}

/* (q - c)^2 of 4 weights, q = (w - lo)*inv, c its clamped nearest code
 * (FRINTN: ties to even, as ref's 2^23 trick on 0..qmax). */
static inline float32x4_t na_sq_err(float32x4_t w, float32x4_t lv, float32x4_t iv,
				    float32x4_t qv)
{
	float32x4_t q = vmulq_f32(vsubq_f32(w, lv), iv);
	float32x4_t c = vrndnq_f32(na_clamp(q, qv));
	float32x4_t d = vsubq_f32(q, c);
	return vmulq_f32(d, d);
}

/* Phase 1 of one group (wg: whole blocks of 32 readable, elements past len
 * +0.0): the outlier indices in idx[k] and the ranges.  The range passes
 * and the search run on a copy whose outliers, NaNs and pads are all NaN,
 * which the compare-selects skip as ref's ternaries do and an ordered mask
 * zeroes in the error sums. */
static void na_group_ranges(const float *wg, size_t len, unsigned k,
			    const struct qs_adpq_params *p, const uint8_t *idx, float *lo_out,
			    float *hi_out, float *omn_out, float *omx_out)
{
	const size_t nv = (len + 3) / 4, nv8 = (nv + 7) / 8 * 8;
	uint64_t word[NA_GMAX / 64] = {0};

	/* the outliers qs_adpq_select_row() chose, as bits */
	for (unsigned o = 0; o < k; o++)
		word[idx[o] / 64] |= 1ull << (idx[o] % 64);

	/* |w| range of the outliers, NaNs skipped as in ref */
	float fomn = INFINITY, fomx = -INFINITY;
	for (unsigned o = 0; o < k; o++) {
		float a = fabsf(wg[idx[o]]);
		fomn = a < fomn ? a : fomn;
		fomx = a > fomx ? a : fomx;
	}
	if (fomn > fomx)
		fomn = fomx = 0.0f;
	*omn_out = fomn;
	*omx_out = fomx;

	/* the inliers, everything else NaN */
	static const uint32_t bit_v[4] = {1, 2, 4, 8};
	static const uint32_t pos_v[4] = {1, 2, 3, 4};
	const uint32x4_t bit = vld1q_u32(bit_v), pos = vld1q_u32(pos_v);
	const float32x4_t nan = vdupq_n_f32(NAN);
	float32x4_t x[NA_VMAX];
	float32x4_t mn = vdupq_n_f32(INFINITY), mx = vdupq_n_f32(-INFINITY);
	for (size_t v = 0; v < nv8; v++) {
		uint32_t b = (uint32_t)(word[v / 16] >> (4 * (v % 16))) & 0xfu;
		uint32x4_t o = vtstq_u32(vdupq_n_u32(b), bit);
		if (4 * v + 4 > len) {
			uint32_t r = len > 4 * v ? (uint32_t)(len - 4 * v) : 0;
			o = vorrq_u32(o, vcgtq_u32(pos, vdupq_n_u32(r)));
		}
		float32x4_t y = vbslq_f32(o, nan, vld1q_f32(wg + 4 * v));
		x[v] = y;
		mn = vbslq_f32(vcltq_f32(y, mn), y, mn);
		mx = vbslq_f32(vcgtq_f32(y, mx), y, mx);
	}
	/* the accumulators hold no NaN, so FMINV/FMAXV are plain min/max here
	 * (which zero they keep does not reach the output, see ref) */
	float fmn = vminvq_f32(mn), fmx = vmaxvq_f32(mx);
	float step;
	if (!qs_adpq_range_done(&fmn, &fmx, p, lo_out, hi_out, &step))
		return;

	/* range search (ref's inlier_range and grid_error) */
	const float qmaxf = (float)((1u << p->bits) - 1u);
	const float32x4_t zero = vdupq_n_f32(0.0f), qv = vdupq_n_f32(qmaxf);
	uint32x4_t vm[NA_VMAX];
	for (size_t v = 0; v < nv8; v++)
		vm[v] = vceqq_f32(x[v], x[v]);
	float best = 0.0f, h = 0.0f, mid = 0.0f;
	for (unsigned i = 0; i <= p->search; i++) {
		float lo = fmn, hi = fmx, st = step;
		if (i > 0) {
			float f = (NA_SEARCH_DEN - (float)i) / NA_SEARCH_DEN;
			float fh = f * h;
			lo = mid - fh;
			hi = mid + fh;
			st = (hi - lo) / qmaxf;
			if (!(st > 0.0f))
				break;
		}
		const float32x4_t lv = vdupq_n_f32(lo), iv = vdupq_n_f32(1.0f / st);
		float32x4_t a[8];
		for (unsigned j = 0; j < 8; j++)
			a[j] = zero;
		for (size_t v = 0; v < nv8; v += 8)
			for (unsigned j = 0; j < 8; j++) {
				float32x4_t e = na_sq_err(x[v + j], lv, iv, qv);
				e = vreinterpretq_f32_u32(
					vandq_u32(vreinterpretq_u32_f32(e), vm[v + j]));
				a[j] = vaddq_f32(a[j], e);
			}
		/* b[0..3] and b[4..7] of ref's fold, then
		 * ((b0+b4) + (b2+b6)) + ((b1+b5) + (b3+b7)) */
		float32x4_t b0 = vaddq_f32(vaddq_f32(a[0], a[2]), vaddq_f32(a[4], a[6]));
		float32x4_t b1 = vaddq_f32(vaddq_f32(a[1], a[3]), vaddq_f32(a[5], a[7]));
		float32x4_t s = vaddq_f32(b0, b1);
		float32x2_t u = vadd_f32(vget_low_f32(s), vget_high_f32(s));
		float e = (vget_lane_f32(u, 0) + vget_lane_f32(u, 1)) * (st * st);
		if (i == 0) {
			best = e;
			h = (fmx - fmn) * 0.5f;
			mid = fmn + h;
		} else if (e < best) {
			best = e;
			*lo_out = lo;
			*hi_out = hi;
		}
	}
}

/* 16 stored inlier codes of the grid (minf, inv) from w[16] (outliers are
 * patched in afterwards: a few a group). */
static inline uint8x16_t na_codes16(const float *w, float32x4_t minf, float32x4_t inv,
				    float32x4_t qv, bool fold, uint8x16_t zv, uint8x16_t mv)
{
	uint32x4_t ci[4];
	for (unsigned j = 0; j < 4; j++) {
		float32x4_t q = vmulq_f32(vsubq_f32(vld1q_f32(w + 4 * j), minf), inv);
		ci[j] = vcvtnq_u32_f32(na_clamp(q, qv));
	}
	uint16x8_t lo = vcombine_u16(vmovn_u32(ci[0]), vmovn_u32(ci[1]));
	uint16x8_t hi = vcombine_u16(vmovn_u32(ci[2]), vmovn_u32(ci[3]));
	uint8x16_t c = vcombine_u8(vmovn_u16(lo), vmovn_u16(hi));
	if (fold) {
		/* ref's fold(): d = |c - z|; d <= m ? (c > z ? 2d-1 : 2d) : m + d */
		uint8x16_t gt = vcgtq_u8(c, zv);
		uint8x16_t d = vabdq_u8(c, zv);
		uint8x16_t near = vaddq_u8(vaddq_u8(d, d), gt);
		uint8x16_t far = vaddq_u8(mv, d);
		c = vbslq_u8(vcleq_u8(d, mv), near, far);
	}
	return c;
}

/* Phase 3 of one group, 16 codes at a time (a short tail through a
 * zero-padded copy). */
static void na_group_codes(const float *wg, size_t len, const struct qs_adpq_grid *q,
			   float inv, unsigned z, unsigned m, bool fold, float qmaxf, uint8_t *c)
{
	const float32x4_t qv = vdupq_n_f32(qmaxf);
	const float32x4_t minf = vdupq_n_f32(q->minf), iv = vdupq_n_f32(inv);
	const uint8x16_t zv = vdupq_n_u8((uint8_t)z), mv = vdupq_n_u8((uint8_t)m);
	for (size_t j = 0; j < len; j += 16) {
		if (len - j >= 16) {
			vst1q_u8(c + j, na_codes16(wg + j, minf, iv, qv, fold, zv, mv));
		} else {
			float x[16] = {0};
			uint8_t c8[16];
			memcpy(x, wg + j, (len - j) * sizeof(float));
			vst1q_u8(c8, na_codes16(x, minf, iv, qv, fold, zv, mv));
			memcpy(c + j, c8, len - j);
		}
	}
}

/* Phase 1 in the skeleton's shape (NEON keeps no outlier bit mask). */
static void na_ranges(const float *wg, size_t len, unsigned k, const struct qs_adpq_params *p,
		      uint8_t *om, const uint8_t *idx, float *lo, float *hi, float *omn, float *omx)
{
	(void)om;
	na_group_ranges(wg, len, k, p, idx, lo, hi, omn, omx);
}

/* ref's key of 4 weights: |w| as bits, a NaN as 0 (integer compares: FMAX
 * would propagate the NaN). */
static inline uint32x4_t na_keys4(const float *w)
{
	uint32x4_t u = vandq_u32(vreinterpretq_u32_f32(vld1q_f32(w)), vdupq_n_u32(0x7fffffffu));
	return vbicq_u32(u, vcgtq_u32(u, vdupq_n_u32(0x7f800000u)));
}

/* adpq_scalar.h's block maxima: the 8 blocks of 64 weights are the lanes of
 * two 4-lane vertical maxima over 8 steps of 8 weights. */
static uint32_t na_blockmax_hist(const float *w, size_t n, uint32_t *hist)
{
	size_t i = 0;
	uint32x4_t top = vdupq_n_u32(0);
	for (; i + 64 <= n; i += 64) {
		uint32x4_t a = na_keys4(w + i), b = na_keys4(w + i + 4);
		for (unsigned s = 8; s < 64; s += 8) {
			a = vmaxq_u32(a, na_keys4(w + i + s));
			b = vmaxq_u32(b, na_keys4(w + i + s + 4));
		}
		top = vmaxq_u32(top, vmaxq_u32(a, b));
		uint32_t k[8];
		vst1q_u32(k, vshrq_n_u32(a, QS_ADPQ_KEY_SHIFT));
		vst1q_u32(k + 4, vshrq_n_u32(b, QS_ADPQ_KEY_SHIFT));
		for (unsigned j = 0; j < 8; j++)
			hist[k[j]]++;
	}
	uint32_t mx = vmaxvq_u32(top);
	return qs_adpq_blockmax_scalar(w, i, n, hist, mx);
}

/* adpq_scalar.h's collect: the compares of 16 weights tested at once, the
 * hits of a block taken in index order.  lo = 0 takes every weight, NaNs
 * included: the scalar loop. */
static size_t na_collect(const float *w, size_t n, uint32_t lo, uint32_t *out, size_t cap)
{
	const uint32x4_t lv = vdupq_n_u32(lo);
	const uint32x4_t bit = {1, 2, 4, 8};
	size_t c = 0, i = 0;
	for (; lo > 0 && i + 16 <= n; i += 16) {
		uint32x4_t g0 = vcgeq_u32(na_keys4(w + i), lv);
		uint32x4_t g1 = vcgeq_u32(na_keys4(w + i + 4), lv);
		uint32x4_t g2 = vcgeq_u32(na_keys4(w + i + 8), lv);
		uint32x4_t g3 = vcgeq_u32(na_keys4(w + i + 12), lv);
		if (vmaxvq_u32(vorrq_u32(vorrq_u32(g0, g1), vorrq_u32(g2, g3))) == 0)
			continue;
		uint32_t m = vaddvq_u32(vandq_u32(g0, bit)) | vaddvq_u32(vandq_u32(g1, bit)) << 4 |
			     vaddvq_u32(vandq_u32(g2, bit)) << 8 | vaddvq_u32(vandq_u32(g3, bit)) << 12;
		while (m) {
			if (c == cap)
				return cap + 1;
			out[c++] = (uint32_t)(i + (unsigned)__builtin_ctz(m));
			m &= m - 1;
		}
	}
	return qs_adpq_collect_scalar(w, i, n, lo, out, c, cap);
}

static void na_select_row(const float *w, size_t n, const struct qs_adpq_params *p,
			  struct qs_adpq_row *r)
{
	qs_adpq_select_row_with(w, n, p, r, na_blockmax_hist, na_collect);
}

size_t qs_neon_adpq_quantize_row(const float *w, size_t n, const struct qs_adpq_params *p,
				 struct qs_adpq_row *r)
{
	return qs_adpq_quantize_row_with(w, n, p, r, na_select_row, na_ranges, na_group_codes);
}

size_t qs_neon_adpq_dequantize_row(const struct qs_adpq_row *r, size_t n,
				   const struct qs_adpq_params *p, float *w)
{
	const size_t G = p->group;
	if (n == 0 || G == 0 || p->bits < 2 || p->bits > 4)
		return 0;
	const size_t ng = n / G + (n % G != 0);
	const unsigned qmax = (1u << p->bits) - 1u;
	const float qmaxf = (float)qmax;
	const bool fold = (p->flags & QS_ADPQ_FOLD) != 0;
	const uint8x16_t qm = vdupq_n_u8((uint8_t)qmax);
	const uint8_t *idx = r->idx;
	float sup[4];
	size_t bad = 0;

	qs_adpq_supers(r, sup);
	for (size_t g = 0, i = 0; i < n; g++, i += G) {
		size_t len = n - i < G ? n - i : G;
		struct qs_adpq_grid q = qs_adpq_grid_of(r, sup, ng, g, p->flags);
		const uint8_t *c = r->codes + i;
		float *wg = w + i;
		/* stored code (masked to qmax) to grid code, a table lookup */
		uint8_t tab[16] = {0};
		if (fold) {
			unsigned z = qs_adpq_zero_code(&q, qs_adpq_inv(q.step), qmaxf);
			for (unsigned f = 0; f <= qmax; f++)
				tab[f] = (uint8_t)qs_adpq_unfold(f, z, qmax);
		} else {
			for (unsigned f = 0; f <= qmax; f++)
				tab[f] = (uint8_t)f;
		}
		const uint8x16_t tv = vld1q_u8(tab);
		const float32x4_t sv = vdupq_n_f32(q.step), mv = vdupq_n_f32(q.minf);
		size_t j = 0;
		for (; j + 16 <= len; j += 16) {
			uint8x16_t u = vqtbl1q_u8(tv, vandq_u8(vld1q_u8(c + j), qm));
			uint16x8_t h0 = vmovl_u8(vget_low_u8(u)), h1 = vmovl_high_u8(u);
			uint32x4_t e[4] = {vmovl_u16(vget_low_u16(h0)), vmovl_high_u16(h0),
					   vmovl_u16(vget_low_u16(h1)), vmovl_high_u16(h1)};
			for (unsigned l = 0; l < 4; l++) {
				float32x4_t t = vmulq_f32(vcvtq_f32_u32(e[l]), sv);
				vst1q_f32(wg + j + 4 * l, vaddq_f32(mv, t));
			}
		}
		for (; j < len; j++) {
			float t = (float)tab[c[j] & qmax] * q.step;
			wg[j] = q.minf + t;
		}
		unsigned k = r->counts[g];
		bad += qs_adpq_put_outliers(wg, c, len, idx, k, &q, p->bits);
		idx += k;
	}
	return bad;
}

void qs_neon_pack_planes(const uint8_t *codes, size_t n, unsigned bits, uint8_t *dst,
			 size_t plane_stride)
{
	static const uint8_t wt[16] = {1, 2, 4, 8, 16, 32, 64, 128,
				       1, 2, 4, 8, 16, 32, 64, 128};
	const uint8x16_t wv = vld1q_u8(wt);
	size_t nb = n / 16;
	for (size_t j = 0; j < nb; j++) {
		uint8x16_t v = vld1q_u8(codes + 16 * j);
		for (unsigned b = 0; b < bits; b++) {
			/* bit b of each code to its weight in the plane byte;
			 * the weights of a half are distinct bits, so adding
			 * them is OR-ing them */
			uint8x16_t s = vandq_u8(vtstq_u8(v, vdupq_n_u8((uint8_t)(1u << b))), wv);
			uint8_t *d = dst + b * plane_stride + 2 * j;
			d[0] = vaddv_u8(vget_low_u8(s));
			d[1] = vaddv_u8(vget_high_u8(s));
		}
	}
	if (n % 16)
		qs_ref_pack_planes(codes + 16 * nb, n % 16, bits, dst + 2 * nb, plane_stride);
}

void qs_neon_unpack_planes(const uint8_t *src, size_t plane_stride, size_t n,
			   unsigned bits, uint8_t *codes)
{
	static const uint8_t wt[16] = {1, 2, 4, 8, 16, 32, 64, 128,
				       1, 2, 4, 8, 16, 32, 64, 128};
	const uint8x16_t wv = vld1q_u8(wt);
	size_t nb = n / 16;
	for (size_t j = 0; j < nb; j++) {
		uint8x16_t v = vdupq_n_u8(0);
		for (unsigned b = 0; b < bits; b++) {
			const uint8_t *s = src + b * plane_stride + 2 * j;
			uint8x16_t x = vcombine_u8(vdup_n_u8(s[0]), vdup_n_u8(s[1]));
			uint8x16_t one = vandq_u8(vtstq_u8(x, wv), vdupq_n_u8((uint8_t)(1u << b)));
			v = vorrq_u8(v, one);
		}
		vst1q_u8(codes + 16 * j, v);
	}
	if (n % 16)
		qs_ref_unpack_planes(src + 2 * nb, plane_stride, n % 16, bits, codes + 16 * nb);
}
