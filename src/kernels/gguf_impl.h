/* gguf_impl.h - the one definition of the gguf kernels (quantize and
 * dequantize rows of ggml blocks), compiled once per instruction set:
 * ref_gguf.c (portable scalar), x86/avx2_gguf.c, arm/neon_gguf.c.
 *
 * Bit-identical output across ISAs is by construction: the algorithm is
 * written once against an 8-lane vector type `v8` that the including file
 * defines (scalar struct, __m256, a pair of float32x4), with only
 * element-wise IEEE operations (add, sub, mul, min, max, round to nearest
 * even) and horizontal reductions in one fixed tree,
 *     hsum(v) = ((v0 + v4) + (v2 + v6)) + ((v1 + v5) + (v3 + v7)),
 * and the same for min and max.  Scalar parts (per sub-block decisions, in
 * double where they solve the small least-squares problems) are the same C
 * in every unit.  No unit may contract a*b+c into an FMA (the build passes
 * -ffp-contract=off to the SIMD units; ref_gguf.c sets it by pragma).
 *
 * The includer provides, before including this file:
 *   v8  v8_load(const float *p), v8_set1(float), v8_add, v8_sub, v8_mul,
 *       v8_min(a, b) = a < b ? a : b, v8_max(a, b) = a > b ? a : b (the
 *       x86 minps/maxps rule, also for NaN and signed zeros),
 *       v8_round (nearest, ties to even), v8_abs, v8_ordered (NaN -> +0),
 *       v8_from_i8(const int8_t *p) (8 bytes to floats);
 *   void v8_store(float *p, v8 a);
 *   float v8_hsum(v8), v8_hmax(v8), v8_hmin(v8) in the tree above;
 *   QS_GGUF_FN(name): the variant's name for the two entry points.
 *
 * The quantizers (qshard's own; the block layouts are ggml's format):
 *
 *  Every block is first cleaned (NaN -> 0; only seen with
 *  --allow-nonfinite).  Errors are weighted by w[i] (the importance of the
 *  weight's input column, normalized by the scheme, or 1).
 *
 *  Symmetric grids (q8_0, q4_0, q5_0, and the sub-blocks of q3_K and q6_K):
 *  y = s*L, L integer in [-nmax, nmax-1].  Candidates put the largest
 *  magnitude m of the (sub-)block at either end of the grid, -nmax or
 *  nmax-1, optionally clipped by half a level; for each, the codes L are
 *  the nearest levels and the scale is refit by weighted least squares,
 *  s = sum(w x L) / sum(w L^2), whose error is sum(w x^2) - sum(w x
 *  L)^2 / sum(w L^2): the candidate maximizing sum(w x L)^2 / sum(w L^2)
 *  wins.  One more recode/refit round with the winner follows.
 *
 *  Asymmetric grids (q4_1, q5_1, and the sub-blocks of q2_K, q4_K, q5_K):
 *  y = a*q + b, q integer in [0, qmax] (K types: b <= 0, since ggml stores
 *  -b as an unsigned multiple of dmin).  Candidates map [min, max] onto
 *  [-delta/2, qmax + delta/2] for delta = 0, 0.5, 1, ... (clipping half a
 *  level at each end per step); for each, (a, b) is the weighted least
 *  squares fit to the codes (2x2 normal equations) and its error follows
 *  in closed form from the same sums.
 *
 *  Super-blocks (K types): the sub-block scales are quantized to ggml's
 *  integer scales under one fp16 super-scale (d = largest / top integer,
 *  dmin likewise for the mins), the codes are recomputed on the exact grid
 *  the block dequantizes to, then each sub-block's integer scale (and min)
 *  is refit once from its codes and kept when its weighted error is lower.
 *
 *  Legacy blocks keep fp16 d (and m); codes are recomputed on the rounded
 *  fp16 values.
 *
 * A block whose fp16 scale would overflow (|w| too large for the type, or
 * Inf) is counted and left zeroed; the scheme turns that into -QS_ETOOBIG.
 */

#include <math.h>
#include <string.h>

#include "gguf_blocks.h"
#include "kernels.h"

#define GG_SUBMAX 32u

static inline uint16_t gg_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static inline void gg_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline int gg_f16_bad(uint16_t h)
{
	return (h & 0x7c00u) == 0x7c00u;
}

static inline float gg_clampf(float v, float lo, float hi)
{
	v = v > lo ? v : lo;
	return v < hi ? v : hi;
}

/* ------------------------------------------------------------- sums */

struct gg_base {
	float sw, sx, sxx;  /* sum w, sum w x, sum w x^2 */
	float mn, mx;       /* min and max of x */
};

static inline void gg_base_of(const float *x, const float *w, unsigned n, struct gg_base *b)
{
	v8 a = v8_set1(0.0f), c = a, e = a;
	v8 lo = v8_load(x), hi = lo;
	for (unsigned i = 0; i < n; i += 8) {
		v8 xv = v8_load(x + i), wv = v8_load(w + i);
		v8 wx = v8_mul(wv, xv);
		a = v8_add(a, wv);
		c = v8_add(c, wx);
		e = v8_add(e, v8_mul(wx, xv));
		lo = v8_min(lo, xv);
		hi = v8_max(hi, xv);
	}
	b->sw = v8_hsum(a);
	b->sx = v8_hsum(c);
	b->sxx = v8_hsum(e);
	b->mn = v8_hmin(lo);
	b->mx = v8_hmax(hi);
}

/* Asymmetric codes q = clamp(round((x - b) * inv - shift), 0, qmax) into
 * cq[], and out = {sum w q, sum w q^2, sum w x q}. */
static inline void gg_asym_codes(const float *x, const float *w, unsigned n, float b,
				 float inv, float shift, float qmax, float *cq, float out[3])
{
	v8 vb = v8_set1(b), vi = v8_set1(inv), vs = v8_set1(shift);
	v8 z = v8_set1(0.0f), top = v8_set1(qmax);
	v8 s1 = z, s2 = z, s3 = z;
	for (unsigned i = 0; i < n; i += 8) {
		v8 xv = v8_load(x + i);
		v8 t = v8_round(v8_sub(v8_mul(v8_sub(xv, vb), vi), vs));
		t = v8_min(v8_max(t, z), top);
		v8_store(cq + i, t);
		v8 wq = v8_mul(v8_load(w + i), t);
		s1 = v8_add(s1, wq);
		s2 = v8_add(s2, v8_mul(wq, t));
		s3 = v8_add(s3, v8_mul(wq, xv));
	}
	out[0] = v8_hsum(s1);
	out[1] = v8_hsum(s2);
	out[2] = v8_hsum(s3);
}

/* Symmetric codes L = clamp(round(x * inv), lo, hi) into cq[], and out =
 * {sum w x L, sum w L^2}. */
static inline void gg_sym_codes(const float *x, const float *w, unsigned n, float inv, float lo,
				float hi, float *cq, float out[2])
{
	v8 vi = v8_set1(inv), vlo = v8_set1(lo), vhi = v8_set1(hi);
	v8 s1 = v8_set1(0.0f), s2 = s1;
	for (unsigned i = 0; i < n; i += 8) {
		v8 xv = v8_load(x + i);
		v8 t = v8_round(v8_mul(xv, vi));
		t = v8_min(v8_max(t, vlo), vhi);
		v8_store(cq + i, t);
		v8 wl = v8_mul(v8_load(w + i), t);
		s1 = v8_add(s1, v8_mul(wl, xv));
		s2 = v8_add(s2, v8_mul(wl, t));
	}
	out[0] = v8_hsum(s1);
	out[1] = v8_hsum(s2);
}

/* Weighted squared error of y = scale*q - off (q in cq[]). */
static inline float gg_err(const float *x, const float *w, const float *cq, unsigned n,
			   float scale, float off)
{
	v8 vs = v8_set1(scale), vo = v8_set1(off), acc = v8_set1(0.0f);
	for (unsigned i = 0; i < n; i += 8) {
		v8 y = v8_sub(v8_mul(vs, v8_load(cq + i)), vo);
		v8 e = v8_sub(v8_load(x + i), y);
		acc = v8_add(acc, v8_mul(v8_load(w + i), v8_mul(e, e)));
	}
	return v8_hsum(acc);
}

/* ------------------------------------------------------- the searches */

/* Best y = a*q + b, q in [0, qmax]; b <= 0 when nonpos_min.  ncand >= 1. */
static void gg_asym_fit(const float *x, const float *w, unsigned n, float qmax, int nonpos_min,
			unsigned ncand, float *pa, float *pb)
{
	struct gg_base b;
	float cq[GG_SUBMAX], s[3];
	gg_base_of(x, w, n, &b);
	float mn = b.mn, mx = b.mx;
	if (nonpos_min && mn > 0.0f)
		mn = 0.0f;
	*pa = 0.0f;
	*pb = mn;
	if (!(mx > mn))
		return;
	double best = INFINITY;
	int have = 0;
	for (unsigned k = 0; k < ncand; k++) {
		float delta = 0.5f * (float)k;
		float inv = (qmax + delta) / (mx - mn);
		gg_asym_codes(x, w, n, mn, inv, 0.5f * delta, qmax, cq, s);
		double sw = b.sw, sq = s[0], sqq = s[1], sx = b.sx, sxq = s[2];
		double det = sw * sqq - sq * sq, A, B;
		if (det > 0.0) {
			A = (sw * sxq - sq * sx) / det;
			B = (sqq * sx - sq * sxq) / det;
			if (nonpos_min && B > 0.0) {
				B = 0.0;
				A = sqq > 0.0 ? sxq / sqq : 0.0;
			}
		} else {
			A = 1.0 / inv;
			B = mn;
		}
		if (!(A >= 0.0))
			continue;
		double sse = b.sxx - 2.0 * A * sxq - 2.0 * B * sx + A * A * sqq + 2.0 * A * B * sq +
			     B * B * sw;
		if (!have || sse < best) {
			have = 1;
			best = sse;
			*pa = (float)A;
			*pb = (float)B;
		}
	}
	if (!have) {
		*pa = (mx - mn) / qmax;
		*pb = mn;
	}
}

/* Best s of y = s*L, L in [-nmax, nmax-1]; ncand >= 1. */
static float gg_sym_fit(const float *x, const float *w, unsigned n, int nmax, unsigned ncand)
{
	struct gg_base b;
	float cq[GG_SUBMAX], s[2];
	gg_base_of(x, w, n, &b);
	float m = -b.mn > b.mx ? b.mn : b.mx;
	if (!(m != 0.0f) || !isfinite(m))
		return m == 0.0f ? 0.0f : m;
	float lo = (float)-nmax, hi = (float)(nmax - 1);
	double best = -1.0, bs = (double)m / -nmax;
	for (unsigned k = 0; k < ncand; k++) {
		float clip = 0.5f * (float)(k >> 1);
		float inv = (k & 1) ? (hi + clip) / m : -((float)nmax + clip) / m;
		gg_sym_codes(x, w, n, inv, lo, hi, cq, s);
		if (!(s[1] > 0.0f))
			continue;
		double score = (double)s[0] * s[0] / s[1];
		if (score > best) {
			best = score;
			bs = (double)s[0] / s[1];
		}
	}
	/* one more recode and refit with the winner */
	if (bs != 0.0) {
		gg_sym_codes(x, w, n, (float)(1.0 / bs), lo, hi, cq, s);
		if (s[1] > 0.0f && (double)s[0] * s[0] / s[1] > best)
			bs = (double)s[0] / s[1];
	}
	return (float)bs;
}

/* ------------------------------------------------------- K super-blocks */

/* Codes of a K sub-block on the exact grid y = S*q - M (S = d*sc, M =
 * dmin*m as ggml computes them); returns the weighted error. */
static float gg_k_asym_sub(const float *x, const float *w, unsigned n, float d, float dm,
			   unsigned sc, unsigned mn, float qmax, float *cq)
{
	float S = d * (float)sc, M = dm * (float)mn, s[3];
	if (S > 0.0f)
		gg_asym_codes(x, w, n, -M, 1.0f / S, 0.0f, qmax, cq, s);
	else
		memset(cq, 0, n * sizeof(float));
	return gg_err(x, w, cq, n, S, M);
}

/* q2_K, q4_K, q5_K: sub-blocks of `sub` weights, codes 0..qmax, integer
 * scales and mins 0..smax.  Fills sc[], mn[], the fp16 d and dmin and the
 * codes; returns 1 when a super-scale overflows fp16. */
static int gg_k_asym(const float *x, const float *w, unsigned sub, float qmax, float smax,
		     unsigned ncand, uint8_t *sc, uint8_t *mn, uint16_t *d16, uint16_t *m16,
		     float *cq)
{
	unsigned nsub = QS_GGUF_QK_K / sub;
	float a[16], b[16], amax = 0.0f, bmax = 0.0f;
	for (unsigned j = 0; j < nsub; j++) {
		gg_asym_fit(x + j * sub, w + j * sub, sub, qmax, 1, ncand, &a[j], &b[j]);
		amax = a[j] > amax ? a[j] : amax;
		bmax = -b[j] > bmax ? -b[j] : bmax;
	}
	*d16 = qs_f32_to_f16(amax / smax);
	*m16 = qs_f32_to_f16(bmax / smax);
	if (gg_f16_bad(*d16) || gg_f16_bad(*m16) || !(amax <= 3.0e38f) || !(bmax <= 3.0e38f))
		return 1;
	float d = qs_f16_to_f32(*d16), dm = qs_f16_to_f32(*m16);
	float tmp[GG_SUBMAX], s[3];
	for (unsigned j = 0; j < nsub; j++) {
		const float *xj = x + j * sub, *wj = w + j * sub;
		float *cj = cq + j * sub;
		unsigned si = d > 0.0f ? (unsigned)gg_clampf(rintf(a[j] / d), 0.0f, smax) : 0;
		unsigned mi = dm > 0.0f ? (unsigned)gg_clampf(rintf(-b[j] / dm), 0.0f, smax) : 0;
		float e = gg_k_asym_sub(xj, wj, sub, d, dm, si, mi, qmax, cj);
		/* refit the integer scale and min to these codes */
		struct gg_base bb;
		gg_base_of(xj, wj, sub, &bb);
		v8 s1 = v8_set1(0.0f), s2 = s1, s3 = s1;
		for (unsigned i = 0; i < sub; i += 8) {
			v8 q = v8_load(cj + i), wq = v8_mul(v8_load(wj + i), q);
			s1 = v8_add(s1, wq);
			s2 = v8_add(s2, v8_mul(wq, q));
			s3 = v8_add(s3, v8_mul(wq, v8_load(xj + i)));
		}
		s[0] = v8_hsum(s1);
		s[1] = v8_hsum(s2);
		s[2] = v8_hsum(s3);
		double det = (double)bb.sw * s[1] - (double)s[0] * s[0];
		if (det > 0.0 && d > 0.0f) {
			double A = ((double)bb.sw * s[2] - (double)s[0] * bb.sx) / det;
			double B = ((double)s[1] * bb.sx - (double)s[0] * s[2]) / det;
			if (B > 0.0) {
				B = 0.0;
				A = s[1] > 0.0f ? s[2] / (double)s[1] : 0.0;
			}
			unsigned si2 = (unsigned)gg_clampf(rintf((float)(A / d)), 0.0f, smax);
			unsigned mi2 = dm > 0.0f ? (unsigned)gg_clampf(rintf((float)(-B / dm)), 0.0f, smax)
						 : 0;
			if (si2 != si || mi2 != mi) {
				float e2 = gg_k_asym_sub(xj, wj, sub, d, dm, si2, mi2, qmax, tmp);
				if (e2 < e) {
					si = si2;
					mi = mi2;
					memcpy(cj, tmp, sub * sizeof(float));
				}
			}
		}
		sc[j] = (uint8_t)si;
		mn[j] = (uint8_t)mi;
	}
	return 0;
}

/* Codes of a symmetric K sub-block on y = (d*sc)*L; returns the error. */
static float gg_k_sym_sub(const float *x, const float *w, unsigned n, float d, int sc, int nmax,
			  float *cq)
{
	float S = d * (float)sc, s[2];
	if (S != 0.0f)
		gg_sym_codes(x, w, n, 1.0f / S, (float)-nmax, (float)(nmax - 1), cq, s);
	else
		memset(cq, 0, n * sizeof(float));
	return gg_err(x, w, cq, n, S, 0.0f);
}

/* q3_K (nmax 4, scales -32..31) and q6_K (nmax 32, scales -128..127):
 * sixteen sub-blocks of 16.  Signed codes L into cq[]. */
static int gg_k_sym(const float *x, const float *w, int nmax, int scmin, unsigned ncand,
		    int8_t *sc, uint16_t *d16, float *cq)
{
	float s[16], ext = 0.0f, tmp[16], sums[2];
	for (unsigned j = 0; j < 16; j++) {
		s[j] = gg_sym_fit(x + 16 * j, w + 16 * j, 16, nmax, ncand);
		if (fabsf(s[j]) > fabsf(ext))
			ext = s[j];
	}
	*d16 = qs_f32_to_f16(ext / (float)scmin);
	if (gg_f16_bad(*d16) || !isfinite(ext))
		return 1;
	float d = qs_f16_to_f32(*d16), lo = (float)scmin, hi = (float)(-scmin - 1);
	for (unsigned j = 0; j < 16; j++) {
		const float *xj = x + 16 * j, *wj = w + 16 * j;
		float *cj = cq + 16 * j;
		int si = d != 0.0f ? (int)gg_clampf(rintf(s[j] / d), lo, hi) : 0;
		float e = gg_k_sym_sub(xj, wj, 16, d, si, nmax, cj);
		/* refit the integer scale to these codes */
		v8 a1 = v8_set1(0.0f), a2 = a1;
		for (unsigned i = 0; i < 16; i += 8) {
			v8 l = v8_load(cj + i), wl = v8_mul(v8_load(wj + i), l);
			a1 = v8_add(a1, v8_mul(wl, v8_load(xj + i)));
			a2 = v8_add(a2, v8_mul(wl, l));
		}
		sums[0] = v8_hsum(a1);
		sums[1] = v8_hsum(a2);
		if (sums[1] > 0.0f && d != 0.0f) {
			int si2 = (int)gg_clampf(rintf((float)((double)sums[0] / sums[1] / d)), lo, hi);
			if (si2 != si) {
				float e2 = gg_k_sym_sub(xj, wj, 16, d, si2, nmax, tmp);
				if (e2 < e) {
					si = si2;
					memcpy(cj, tmp, 16 * sizeof(float));
				}
			}
		}
		sc[j] = (int8_t)si;
	}
	return 0;
}

/* ----------------------------------------------------------- per block */

static const unsigned char gg_ncand[QS_GGUF_NTYPES] = {
	/* q8_0 */ 2, /* q4_0 */ 6, /* q4_1 */ 4, /* q5_0 */ 6, /* q5_1 */ 4,
	/* q2_K */ 4, /* q3_K */ 6, /* q4_K */ 4, /* q5_K */ 4, /* q6_K */ 4,
};

/* One legacy block of 32 (x cleaned). */
static int gg_block_legacy(unsigned type, const float *x, const float *w, uint8_t *out)
{
	float cq[32], s[3];
	uint8_t c[32];
	unsigned nc = gg_ncand[type];
	if (type == QS_GGUF_Q4_1 || type == QS_GGUF_Q5_1) {
		float qmax = type == QS_GGUF_Q4_1 ? 15.0f : 31.0f, a, b;
		gg_asym_fit(x, w, 32, qmax, 0, nc, &a, &b);
		uint16_t d16 = qs_f32_to_f16(a), m16 = qs_f32_to_f16(b);
		if (gg_f16_bad(d16) || gg_f16_bad(m16))
			return 1;
		float d = qs_f16_to_f32(d16), m = qs_f16_to_f32(m16);
		if (d > 0.0f)
			gg_asym_codes(x, w, 32, m, 1.0f / d, 0.0f, qmax, cq, s);
		else
			memset(cq, 0, sizeof(cq));
		for (unsigned i = 0; i < 32; i++)
			c[i] = (uint8_t)cq[i];
		gg_put16(out, d16);
		gg_put16(out + 2, m16);
		qs_gguf_pack_codes(type, c, out);
		return 0;
	}
	int nmax = type == QS_GGUF_Q8_0 ? 128 : type == QS_GGUF_Q4_0 ? 8 : 16;
	float sc = gg_sym_fit(x, w, 32, nmax, nc);
	uint16_t d16 = qs_f32_to_f16(sc);
	if (gg_f16_bad(d16) || !isfinite(sc))
		return 1;
	float d = qs_f16_to_f32(d16);
	if (d != 0.0f)
		gg_sym_codes(x, w, 32, 1.0f / d, (float)-nmax, (float)(nmax - 1), cq, s);
	else
		memset(cq, 0, sizeof(cq));
	gg_put16(out, d16);
	for (unsigned i = 0; i < 32; i++)
		c[i] = (uint8_t)((int)cq[i] + nmax);
	qs_gguf_pack_codes(type, c, out);
	return 0;
}

/* One K super-block of 256 (x cleaned). */
static int gg_block_k(unsigned type, const float *x, const float *w, uint8_t *out)
{
	float cq[256];
	uint8_t c[256];
	unsigned nc = gg_ncand[type];
	if (type == QS_GGUF_Q3_K || type == QS_GGUF_Q6_K) {
		int8_t sc[16];
		uint16_t d16;
		int q3 = type == QS_GGUF_Q3_K, nmax = q3 ? 4 : 32;
		if (gg_k_sym(x, w, nmax, q3 ? -32 : -128, nc, sc, &d16, cq))
			return 1;
		for (unsigned e = 0; e < 256; e++)
			c[e] = (uint8_t)((int)cq[e] + nmax);
		if (q3) {
			qs_gguf_pack_q3_scales(sc, out + 96);
			gg_put16(out + 108, d16);
		} else {
			memcpy(out + 192, sc, 16);
			gg_put16(out + 208, d16);
		}
		qs_gguf_pack_codes(type, c, out);
		return 0;
	}
	uint8_t sc[16], mn[16];
	uint16_t d16, m16;
	if (type == QS_GGUF_Q2_K) {
		if (gg_k_asym(x, w, 16, 3.0f, 15.0f, nc, sc, mn, &d16, &m16, cq))
			return 1;
		for (unsigned j = 0; j < 16; j++)
			out[j] = (uint8_t)(sc[j] | (mn[j] << 4));
		gg_put16(out + 80, d16);
		gg_put16(out + 82, m16);
	} else {
		int q5 = type == QS_GGUF_Q5_K;
		if (gg_k_asym(x, w, 32, q5 ? 31.0f : 15.0f, 63.0f, nc, sc, mn, &d16, &m16, cq))
			return 1;
		gg_put16(out, d16);
		gg_put16(out + 2, m16);
		qs_gguf_pack_k4_scales(sc, mn, out + 4);
	}
	for (unsigned e = 0; e < 256; e++)
		c[e] = (uint8_t)cq[e];
	qs_gguf_pack_codes(type, c, out);
	return 0;
}

size_t QS_GGUF_FN(quantize_row)(unsigned type, const float *x, const float *imp, size_t nblocks,
				uint8_t *dst)
{
	const unsigned bw = qs_gguf_block_weights(type), bb = qs_gguf_block_bytes(type);
	float xs[256], ws[256];
	size_t bad = 0;
	if (!imp)
		for (unsigned i = 0; i < bw; i += 8)
			v8_store(ws + i, v8_set1(1.0f));
	for (size_t bi = 0; bi < nblocks; bi++) {
		const float *xb = x + bi * bw;
		for (unsigned i = 0; i < bw; i += 8) {
			v8_store(xs + i, v8_ordered(v8_load(xb + i)));
			if (imp)
				v8_store(ws + i, v8_load(imp + bi * bw + i));
		}
		uint8_t *ob = dst + bi * bb;
		int over = bw == QS_GGUF_QK ? gg_block_legacy(type, xs, ws, ob)
					    : gg_block_k(type, xs, ws, ob);
		if (over) {
			memset(ob, 0, bb);
			bad++;
		}
	}
	return bad;
}

/* ---------------------------------------------------------- dequantize */

/* y[i] = (S * c[i]) - M over n (multiple of 8), ggml's order of rounding. */
static inline void gg_deq(const int8_t *c, unsigned n, float S, float M, float *y)
{
	v8 vs = v8_set1(S), vm = v8_set1(M);
	for (unsigned i = 0; i < n; i += 8)
		v8_store(y + i, v8_sub(v8_mul(vs, v8_from_i8(c + i)), vm));
}

/* y[i] = c[i] * d + m (q4_1, q5_1: the product, then the sum). */
static inline void gg_deq_plus(const int8_t *c, unsigned n, float d, float m, float *y)
{
	v8 vd = v8_set1(d), vm = v8_set1(m);
	for (unsigned i = 0; i < n; i += 8)
		v8_store(y + i, v8_add(v8_mul(v8_from_i8(c + i), vd), vm));
}

void QS_GGUF_FN(dequantize_row)(unsigned type, const uint8_t *src, size_t nblocks, float *y)
{
	const unsigned bw = qs_gguf_block_weights(type), bb = qs_gguf_block_bytes(type);
	int8_t c[256];
	for (size_t bi = 0; bi < nblocks; bi++, src += bb, y += bw) {
		const uint8_t *b = src;
		switch (type) {
		case QS_GGUF_Q8_0:
			memcpy(c, b + 2, 32);
			gg_deq(c, 32, qs_f16_to_f32(gg_le16(b)), 0.0f, y);
			break;
		case QS_GGUF_Q4_0:
		case QS_GGUF_Q5_0: {
			int q5 = type == QS_GGUF_Q5_0;
			const uint8_t *qs = b + (q5 ? 6 : 2);
			uint32_t h = q5 ? (uint32_t)b[2] | (uint32_t)b[3] << 8 | (uint32_t)b[4] << 16 |
						  (uint32_t)b[5] << 24
					: 0;
			for (unsigned j = 0; j < 16; j++) {
				c[j] = (int8_t)(((qs[j] & 0xf) | (((h >> j) & 1) << 4)) - (q5 ? 16 : 8));
				c[j + 16] = (int8_t)(((qs[j] >> 4) | (((h >> (j + 16)) & 1) << 4)) -
						     (q5 ? 16 : 8));
			}
			/* ggml: x*d, the same product as d*x */
			gg_deq(c, 32, qs_f16_to_f32(gg_le16(b)), 0.0f, y);
			break;
		}
		case QS_GGUF_Q4_1:
		case QS_GGUF_Q5_1: {
			int q5 = type == QS_GGUF_Q5_1;
			const uint8_t *qs = b + (q5 ? 8 : 4);
			uint32_t h = q5 ? (uint32_t)b[4] | (uint32_t)b[5] << 8 | (uint32_t)b[6] << 16 |
						  (uint32_t)b[7] << 24
					: 0;
			for (unsigned j = 0; j < 16; j++) {
				c[j] = (int8_t)((qs[j] & 0xf) | (((h >> j) & 1) << 4));
				c[j + 16] = (int8_t)((qs[j] >> 4) | (((h >> (j + 16)) & 1) << 4));
			}
			gg_deq_plus(c, 32, qs_f16_to_f32(gg_le16(b)), qs_f16_to_f32(gg_le16(b + 2)), y);
			break;
		}
		case QS_GGUF_Q2_K: {
			float d = qs_f16_to_f32(gg_le16(b + 80)), dm = qs_f16_to_f32(gg_le16(b + 82));
			for (unsigned e = 0; e < 256; e++) {
				unsigned n = e / 128, j = (e % 128) / 32, l = e % 32;
				c[e] = (int8_t)((b[16 + 32 * n + l] >> (2 * j)) & 3);
			}
			for (unsigned s = 0; s < 16; s++)
				gg_deq(c + 16 * s, 16, d * (float)(b[s] & 0xf), dm * (float)(b[s] >> 4),
				       y + 16 * s);
			break;
		}
		case QS_GGUF_Q3_K: {
			int8_t sc[16];
			float d = qs_f16_to_f32(gg_le16(b + 108));
			qs_gguf_unpack_q3_scales(b + 96, sc);
			for (unsigned e = 0; e < 256; e++) {
				unsigned n = e / 128, j = (e % 128) / 32, l = e % 32;
				int lo = (b[32 + 32 * n + l] >> (2 * j)) & 3;
				int hi = (b[l] >> (4 * n + j)) & 1;
				c[e] = (int8_t)(lo - (hi ? 0 : 4));
			}
			for (unsigned s = 0; s < 16; s++)
				gg_deq(c + 16 * s, 16, d * (float)sc[s], 0.0f, y + 16 * s);
			break;
		}
		case QS_GGUF_Q4_K:
		case QS_GGUF_Q5_K: {
			int q5 = type == QS_GGUF_Q5_K;
			uint8_t sc[8], mn[8];
			float d = qs_f16_to_f32(gg_le16(b)), dm = qs_f16_to_f32(gg_le16(b + 2));
			const uint8_t *qs = b + (q5 ? 48 : 16);
			qs_gguf_unpack_k4_scales(b + 4, sc, mn);
			for (unsigned e = 0; e < 256; e++) {
				unsigned j = e / 64, h = (e % 64) / 32, l = e % 32;
				unsigned v = (qs[32 * j + l] >> (4 * h)) & 0xf;
				if (q5)
					v |= ((b[16 + l] >> (2 * j + h)) & 1u) << 4;
				c[e] = (int8_t)v;
			}
			for (unsigned s = 0; s < 8; s++)
				gg_deq(c + 32 * s, 32, d * (float)sc[s], dm * (float)mn[s], y + 32 * s);
			break;
		}
		case QS_GGUF_Q6_K: {
			float d = qs_f16_to_f32(gg_le16(b + 208));
			const int8_t *sc = (const int8_t *)(const void *)(b + 192);
			for (unsigned e = 0; e < 256; e++) {
				unsigned n = e / 128, k = (e % 128) / 32, l = e % 32;
				unsigned lo = (b[64 * n + l + 32 * (k & 1)] >> (4 * (k >> 1))) & 0xf;
				unsigned hi = (b[128 + 32 * n + l] >> (2 * k)) & 3;
				c[e] = (int8_t)((int)(lo | (hi << 4)) - 32);
			}
			for (unsigned s = 0; s < 16; s++)
				gg_deq(c + 16 * s, 16, d * (float)sc[s], 0.0f, y + 16 * s);
			break;
		}
		default:
			memset(y, 0, bw * sizeof(float));
		}
	}
}
