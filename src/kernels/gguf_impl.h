/* gguf_impl.h - the one definition of the gguf kernels (quantize and
 * dequantize rows of ggml blocks), compiled once per instruction set:
 * ref_gguf.c (portable scalar), x86/avx2_gguf.c, arm/neon_gguf.c.
 *
 * Bit-identical output across ISAs is by construction: the algorithm is
 * written once against an 8-lane vector type `v8` that the including file
 * defines (scalar struct, __m256, a pair of float32x4), with only
 * element-wise IEEE operations (add, sub, mul, fused multiply-add, min,
 * max, round to nearest even) and horizontal reductions in one fixed tree,
 *     hsum(v) = ((v0 + v4) + (v2 + v6)) + ((v1 + v5) + (v3 + v7)),
 * and the same for min and max.  Scalar parts (per sub-block decisions, in
 * double where they solve the small least-squares problems) are the same C
 * in every unit.  No unit may contract a*b+c into an FMA on its own (the
 * build passes -ffp-contract=off to the SIMD units; ref_gguf.c sets it by
 * pragma): the fused operations are the explicit v8_fma calls, which every
 * unit maps onto an exactly rounded fused multiply-add (fmaf, VFMADD,
 * FMLA), so they too give the same bits everywhere.
 *
 * The includer provides, before including this file:
 *   v8  v8_load(const float *p), v8_set1(float), v8_add, v8_sub, v8_mul,
 *       v8_fma(a, b, c) = a * b + c rounded once,
 *       v8_min(a, b) = a < b ? a : b, v8_max(a, b) = a > b ? a : b (the
 *       x86 minps/maxps rule, also for NaN and signed zeros),
 *       v8_round (nearest, ties to even), v8_abs, v8_ordered (NaN -> +0),
 *       v8_from_i8(const int8_t *p) (8 bytes to floats), v8_div,
 *       v8_load_t8(p, stride, out) (out[i] lane j = p[j * stride + i],
 *       i < 8), v8_store_u8(p, a) (integral lanes 0..255 to 8 bytes);
 *   a mask type m8 with v8_lt, v8_gt, v8_ge (ordered: false on NaN, as
 *       C's <, >, >=), m8_and, m8_or, m8_any (some lane set), and
 *       v8_sel(m, a, b) = m ? a : b;
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
 *  in closed form from the same sums.  Then Lloyd rounds: recode on the
 *  best fit so far and refit (one for q4_1/q5_1, two for the K types).
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

/* ------------------------------------------------ 8 groups in the lanes */

/* Eight (sub-)blocks of n weights side by side, lane j the j-th: x[i] lane
 * j = src[j*n + i] (NaN -> 0).  Every per-group decision below is a lane
 * operation, so a super-block's eight sub-blocks (or eight legacy blocks)
 * are searched at once without horizontal sums. */
struct gg_grp {
	unsigned n;
	int unit;  /* no importance: w all 1 */
	v8 x[GG_SUBMAX], w[GG_SUBMAX];
	v8 sw, sx, sxx, mn, mx;  /* sum w, sum w x, sum w x^2, min x, max x */
};

static inline void gg_grp_load(struct gg_grp *g, const float *x, const float *w, unsigned n)
{
	v8 z = v8_set1(0.0f), one = v8_set1(1.0f);
	g->n = n;
	g->unit = !w;
	for (unsigned i0 = 0; i0 < n; i0 += 8) {
		v8_load_t8(x + i0, n, g->x + i0);
		if (w)
			v8_load_t8(w + i0, n, g->w + i0);
	}
	/* even and odd positions summed apart (two shorter dependent
	 * chains), n even */
	v8 sw0 = z, sw1 = z, sx0 = z, sx1 = z, sxx0 = z, sxx1 = z;
	v8 mn = v8_ordered(g->x[0]), mx = mn;
#define GG_LOAD_STEP(i, SW, SX, SXX)                       \
	do {                                               \
		v8 xv = v8_ordered(g->x[i]);               \
		v8 wv = w ? g->w[i] : one;                 \
		v8 wx = v8_mul(wv, xv);                    \
		g->x[i] = xv;                              \
		g->w[i] = wv;                              \
		SW = v8_add(SW, wv);                       \
		SX = v8_add(SX, wx);                       \
		SXX = v8_fma(wx, xv, SXX);                 \
		mn = v8_min(mn, xv);                       \
		mx = v8_max(mx, xv);                       \
	} while (0)
	for (unsigned i = 0; i < n; i += 2) {
		GG_LOAD_STEP(i, sw0, sx0, sxx0);
		GG_LOAD_STEP(i + 1, sw1, sx1, sxx1);
	}
#undef GG_LOAD_STEP
	g->sw = v8_add(sw0, sw1);
	g->sx = v8_add(sx0, sx1);
	g->sxx = v8_add(sxx0, sxx1);
	g->mn = mn;
	g->mx = mx;
}

struct gg_sums {
	v8 sq, sqq, sxq;  /* sum w q, sum w q^2, sum w x q */
	v8 err;           /* sum w (x - y)^2 where computed */
};

/* Asymmetric codes q = clamp(round(x * inv - (b * inv + shift)), 0, qmax)
 * (x * inv - c0 fused). */
static inline void gg_acodes(const struct gg_grp *g, v8 b, v8 inv, v8 shift, v8 qmax, v8 *q,
			     struct gg_sums *s)
{
	/* two partial sums per quantity (even and odd positions, added at
	 * the end) so the additions are not one dependent chain, kept in
	 * named locals (an array indexed by i & 1 goes through memory);
	 * without importance the weights are 1 and their products exact, so
	 * that loop only skips them (same result); q may be NULL; n is even */
	v8 z = v8_set1(0.0f), a0 = z, a1 = z, c0 = z, c1 = z, e0 = z, e1 = z;
	v8 nc0 = v8_sub(z, v8_add(v8_mul(b, inv), shift));
	const v8 *x = g->x, *w = g->w;
#define GG_ACODE(i) v8_min(v8_max(v8_round(v8_fma(x[i], inv, nc0)), z), qmax)
	if (g->unit) {
		for (unsigned i = 0; i < g->n; i += 2) {
			v8 t = GG_ACODE(i), u = GG_ACODE(i + 1);
			if (q) {
				q[i] = t;
				q[i + 1] = u;
			}
			a0 = v8_add(a0, t);
			c0 = v8_fma(t, t, c0);
			e0 = v8_fma(t, x[i], e0);
			a1 = v8_add(a1, u);
			c1 = v8_fma(u, u, c1);
			e1 = v8_fma(u, x[i + 1], e1);
		}
	} else {
		for (unsigned i = 0; i < g->n; i += 2) {
			v8 t = GG_ACODE(i), u = GG_ACODE(i + 1);
			if (q) {
				q[i] = t;
				q[i + 1] = u;
			}
			v8 wt = v8_mul(w[i], t), wu = v8_mul(w[i + 1], u);
			a0 = v8_add(a0, wt);
			c0 = v8_fma(wt, t, c0);
			e0 = v8_fma(wt, x[i], e0);
			a1 = v8_add(a1, wu);
			c1 = v8_fma(wu, u, c1);
			e1 = v8_fma(wu, x[i + 1], e1);
		}
	}
#undef GG_ACODE
	s->sq = v8_add(a0, a1);
	s->sqq = v8_add(c0, c1);
	s->sxq = v8_add(e0, e1);
}

/* Weighted least squares of y = A q + B to the codes (B <= 0 when
 * nonpos); its error in closed form from the sums; ok where det > 0 and
 * A >= 0. */
static inline void gg_ls(const struct gg_grp *g, const struct gg_sums *s, int nonpos, v8 *pa,
			 v8 *pb, v8 *psse, m8 *ok)
{
	v8 det = v8_sub(v8_mul(g->sw, s->sqq), v8_mul(s->sq, s->sq));
	v8 A = v8_div(v8_sub(v8_mul(g->sw, s->sxq), v8_mul(s->sq, g->sx)), det);
	v8 B = v8_div(v8_sub(v8_mul(s->sqq, g->sx), v8_mul(s->sq, s->sxq)), det);
	v8 z = v8_set1(0.0f), two = v8_set1(2.0f);
	if (nonpos) {
		m8 pos = v8_gt(B, z);
		B = v8_sel(pos, z, B);
		A = v8_sel(pos, v8_div(s->sxq, s->sqq), A);
	}
	v8 e = v8_sub(g->sxx, v8_mul(v8_mul(two, A), s->sxq));
	e = v8_sub(e, v8_mul(v8_mul(two, B), g->sx));
	e = v8_add(e, v8_mul(v8_mul(A, A), s->sqq));
	e = v8_add(e, v8_mul(v8_mul(v8_mul(two, A), B), s->sq));
	e = v8_add(e, v8_mul(v8_mul(B, B), g->sw));
	*pa = A;
	*pb = B;
	*psse = e;
	*ok = m8_and(v8_gt(det, z), v8_ge(A, z));
}

/* Candidates of the asymmetric search: the range [min, max] is mapped
 * onto [-shift, qmax + delta - shift] before rounding (delta < 0 leaves
 * room at the top, > 0 clips); each is refit by least squares. */
struct gg_cand {
	float delta, shift;
};

/* four candidates, then one Lloyd round for the legacy blocks and two for
 * the K sub-blocks: on Gaussian weights q4_K gains 0.04 dB from eight
 * candidates (-1 .. 0.75 by 0.25) at 1.35x the time; the second Lloyd
 * round gains 0.02 dB (mkckpt 1b, q4_K) at 1.1x, a third 0.01 dB more */
static const struct gg_cand gg_cand_low[4] = {
	{-0.75f, 0}, {-0.25f, 0}, {0.25f, 0}, {0.75f, 0},
};
static const struct gg_cand gg_cand_mid[4] = {
	{0.0f, 0}, {0.5f, 0.25f}, {1.0f, 0.5f}, {1.5f, 0.75f},
};

/* Per lane, the best y = A q + B, q in [0, qmax] (B <= 0 when nonpos). */
static void gg_afit(const struct gg_grp *g, float qmax, int nonpos, const struct gg_cand *cand,
		    unsigned ncand, unsigned lloyd, v8 *pa, v8 *pb)
{
	v8 z = v8_set1(0.0f), vq = v8_set1(qmax);
	v8 mn = nonpos ? v8_min(g->mn, z) : g->mn;
	v8 range = v8_sub(g->mx, mn);
	v8 best = v8_set1(INFINITY), A = v8_div(range, vq), B = mn;
	struct gg_sums s;
	for (unsigned k = 0; k < ncand + lloyd; k++) {
		v8 inv, b0, sh;
		m8 use;
		if (k < ncand) {
			inv = v8_div(v8_set1(qmax + cand[k].delta), range);
			b0 = mn;
			sh = v8_set1(cand[k].shift);
			use = v8_gt(range, z);
		} else {
			/* Lloyd round: recode on the best fit so far */
			inv = v8_div(v8_set1(1.0f), A);
			b0 = B;
			sh = z;
			use = m8_and(v8_gt(A, z), v8_lt(best, v8_set1(INFINITY)));
		}
		v8 Ak, Bk, e;
		m8 ok;
		gg_acodes(g, b0, inv, sh, vq, NULL, &s);
		gg_ls(g, &s, nonpos, &Ak, &Bk, &e, &ok);
		ok = m8_and(m8_and(ok, use), v8_lt(e, best));
		best = v8_sel(ok, e, best);
		A = v8_sel(ok, Ak, A);
		B = v8_sel(ok, Bk, B);
	}
	m8 flat = v8_ge(z, range);
	*pa = v8_sel(flat, z, A);
	*pb = v8_sel(flat, mn, B);
}

/* Per lane, the best s of y = s L, L in [-nmax, nmax-1]: the extreme at
 * either end, clipped by 0 or half a level, then one refit round. */
static v8 gg_sfit(const struct gg_grp *g, int nmax, unsigned ncand)
{
	v8 z = v8_set1(0.0f), vlo = v8_set1((float)-nmax), vhi = v8_set1((float)(nmax - 1));
	v8 m = v8_sel(v8_gt(v8_sub(z, g->mn), g->mx), g->mn, g->mx);
	v8 best = v8_set1(-1.0f), sc = v8_div(m, vlo);
	for (unsigned k = 0; k <= ncand; k++) {
		v8 inv;
		if (k < ncand) {
			float clip = 0.5f * (float)(k >> 1);
			inv = (k & 1) ? v8_div(v8_set1((float)(nmax - 1) + clip), m)
				      : v8_div(v8_set1(-((float)nmax + clip)), m);
		} else {
			inv = v8_div(v8_set1(1.0f), sc);
		}
		v8 a0 = z, a1 = z, c0 = z, c1 = z;
		for (unsigned i = 0; i < g->n; i += 2) {
			v8 t = v8_min(v8_max(v8_round(v8_mul(g->x[i], inv)), vlo), vhi);
			v8 u = v8_min(v8_max(v8_round(v8_mul(g->x[i + 1], inv)), vlo), vhi);
			v8 wt = v8_mul(g->w[i], t), wu = v8_mul(g->w[i + 1], u);
			a0 = v8_fma(wt, g->x[i], a0);
			c0 = v8_fma(wt, t, c0);
			a1 = v8_fma(wu, g->x[i + 1], a1);
			c1 = v8_fma(wu, u, c1);
		}
		v8 sxl = v8_add(a0, a1), sll = v8_add(c0, c1);
		v8 score = v8_div(v8_mul(sxl, sxl), sll);
		m8 better = m8_and(v8_gt(sll, z), v8_gt(score, best));
		best = v8_sel(better, score, best);
		sc = v8_sel(better, v8_div(sxl, sll), sc);
	}
	return v8_sel(v8_gt(v8_abs(m), z), sc, z);
}

/* Codes on a K sub-block's exact grid y = S q - M (S = d*sc, M = dmin*m
 * as ggml computes them; q = 0 where S = 0), with sums, and the error
 * sum w (x - y)^2 in closed form from them. */
static inline void gg_kcodes(const struct gg_grp *g, v8 S, v8 M, float qmax, v8 *q,
			     struct gg_sums *s)
{
	v8 z = v8_set1(0.0f), vq = v8_set1(qmax), two = v8_set1(2.0f);
	m8 live = v8_gt(S, z);
	v8 inv = v8_sel(live, v8_div(v8_set1(1.0f), S), z), minv = v8_mul(M, inv);
	v8 a0 = z, a1 = z, c0 = z, c1 = z, d0 = z, d1 = z;
	const v8 *x = g->x, *w = g->w;
	/* (x + M) / S as x * inv + M * inv, fused */
#define GG_KCODE(i) v8_min(v8_max(v8_round(v8_fma(x[i], inv, minv)), z), vq)
	if (g->unit) {
		for (unsigned i = 0; i < g->n; i += 2) {
			v8 t = GG_KCODE(i), u = GG_KCODE(i + 1);
			q[i] = t;
			q[i + 1] = u;
			a0 = v8_add(a0, t);
			c0 = v8_fma(t, t, c0);
			d0 = v8_fma(t, x[i], d0);
			a1 = v8_add(a1, u);
			c1 = v8_fma(u, u, c1);
			d1 = v8_fma(u, x[i + 1], d1);
		}
	} else {
		for (unsigned i = 0; i < g->n; i += 2) {
			v8 t = GG_KCODE(i), u = GG_KCODE(i + 1);
			q[i] = t;
			q[i + 1] = u;
			v8 wt = v8_mul(w[i], t), wu = v8_mul(w[i + 1], u);
			a0 = v8_add(a0, wt);
			c0 = v8_fma(wt, t, c0);
			d0 = v8_fma(wt, x[i], d0);
			a1 = v8_add(a1, wu);
			c1 = v8_fma(wu, u, c1);
			d1 = v8_fma(wu, x[i + 1], d1);
		}
	}
#undef GG_KCODE
	s->sq = v8_add(a0, a1);
	s->sqq = v8_add(c0, c1);
	s->sxq = v8_add(d0, d1);
	/* sum w (x - S q + M)^2 = sxx - 2 S sxq + 2 M sx + S^2 sqq - 2 S M sq + M^2 sw */
	v8 e = v8_sub(g->sxx, v8_mul(v8_mul(two, S), s->sxq));
	e = v8_add(e, v8_mul(v8_mul(two, M), g->sx));
	e = v8_add(e, v8_mul(v8_mul(S, S), s->sqq));
	e = v8_sub(e, v8_mul(v8_mul(v8_mul(two, S), M), s->sq));
	e = v8_add(e, v8_mul(v8_mul(M, M), g->sw));
	s->err = e;
}

/* Signed codes L on y = S L (S = d*sc), L = 0 where S = 0, with the
 * error sum w (x - S L)^2 in closed form. */
static inline void gg_scodes(const struct gg_grp *g, v8 S, int nmax, v8 *q, struct gg_sums *s)
{
	v8 z = v8_set1(0.0f), vlo = v8_set1((float)-nmax), vhi = v8_set1((float)(nmax - 1));
	m8 live = v8_gt(v8_abs(S), z);
	v8 inv = v8_sel(live, v8_div(v8_set1(1.0f), S), z);
	v8 c0 = z, c1 = z, d0 = z, d1 = z;
	const v8 *x = g->x;
	for (unsigned i = 0; i < g->n; i += 2) {
		v8 t = v8_min(v8_max(v8_round(v8_mul(x[i], inv)), vlo), vhi);
		v8 u = v8_min(v8_max(v8_round(v8_mul(x[i + 1], inv)), vlo), vhi);
		q[i] = t;
		q[i + 1] = u;
		v8 wt = g->unit ? t : v8_mul(g->w[i], t), wu = g->unit ? u : v8_mul(g->w[i + 1], u);
		c0 = v8_fma(wt, t, c0);
		d0 = v8_fma(wt, x[i], d0);
		c1 = v8_fma(wu, u, c1);
		d1 = v8_fma(wu, x[i + 1], d1);
	}
	s->sq = z;
	s->sqq = v8_add(c0, c1);
	s->sxq = v8_add(d0, d1);
	v8 e = v8_sub(g->sxx, v8_mul(v8_mul(v8_set1(2.0f), S), s->sxq));
	s->err = v8_add(e, v8_mul(v8_mul(S, S), s->sqq));
}

/* Lane j's codes q[i] (offset added) to c[j*n + i]. */
static inline void gg_store_codes(const v8 *q, unsigned n, float offset, uint8_t *c)
{
	float t[GG_SUBMAX * 8];
	v8 off = v8_set1(offset), r[8];
	for (unsigned i = 0; i < n; i++)
		v8_store(t + 8 * i, v8_add(q[i], off));
	/* back to lane-major order: lane j's positions i0..i0+7 */
	for (unsigned i0 = 0; i0 < n; i0 += 8) {
		v8_load_t8(t + 8 * i0, 8, r);
		for (unsigned j = 0; j < 8; j++)
			v8_store_u8(c + j * n + i0, r[j]);
	}
}

/* Eight bytes as a little-endian 64-bit word, on any host. */
static inline uint64_t gg_le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (unsigned k = 0; k < 8; k++)
		v |= (uint64_t)p[k] << (8 * k);
	return v;
}

/* q4_K's and q5_K's codes straight from the lanes (sub-block j in lane j,
 * position l in q[l]) into the block's qs[] (and q5_K's qh[]), the layout
 * gguf_pack.c describes: qs[32 jj + l] holds sub-block 2jj's code at l in
 * its low nibble and 2jj+1's in its high one; bit k of qh[l] is bit 4 of
 * sub-block k's code at l.  With b = lane j's byte at bit 8j, b | b >> 4
 * puts each pair in the even bytes; multiplying the 0/1 bytes by
 * 0x0102040810204080 gathers bit 8k into bit 56 + k (the partial products
 * land on distinct bits, so nothing carries). */
static inline void gg_pack_k4(const v8 *q, int q5, uint8_t *qs, uint8_t *qh)
{
	for (unsigned l = 0; l < 32; l++) {
		uint8_t cb[8];
		v8_store_u8(cb, q[l]);
		uint64_t w = gg_le64(cb);
		uint64_t lo = w & 0x0f0f0f0f0f0f0f0full;
		lo |= lo >> 4;
		for (unsigned jj = 0; jj < 4; jj++)
			qs[32 * jj + l] = (uint8_t)(lo >> (16 * jj));
		if (q5)
			qh[l] = (uint8_t)((((w >> 4) & 0x0101010101010101ull) *
					   0x0102040810204080ull) >> 56);
	}
}

static inline v8 gg_clamp(v8 v, float lo, float hi)
{
	return v8_min(v8_max(v, v8_set1(lo)), v8_set1(hi));
}

/* ------------------------------------------------------- K super-blocks */

/* q2_K (sub 16, qmax 3, scales 0..15), q4_K and q5_K (sub 32, qmax 15 or
 * 31, scales 0..63): integer scales sc[] and mins mn[] under fp16 d and
 * dmin, and the codes: q2_K's into c[256], q4_K's and q5_K's packed into
 * the block's qs[] (and qh[] for q5_K: qh not NULL) by gg_pack_k4.
 * Returns 1 when d or dmin overflows fp16. */
static int gg_k_asym(const float *x, const float *w, unsigned sub, float qmax, float smax,
		     const struct gg_cand *cand, unsigned ncand, uint8_t *sc, uint8_t *mn,
		     uint16_t *d16, uint16_t *m16, uint8_t *c, uint8_t *qs, uint8_t *qh)
{
	unsigned ng = QS_GGUF_QK_K / (8 * sub);
	struct gg_grp g[2];
	v8 A[2], B[2], z = v8_set1(0.0f);
	float amax = 0.0f, bmax = 0.0f;
	for (unsigned gi = 0; gi < ng; gi++) {
		gg_grp_load(&g[gi], x + gi * 8 * sub, w ? w + gi * 8 * sub : NULL, sub);
		gg_afit(&g[gi], qmax, 1, cand, ncand, 2, &A[gi], &B[gi]);
		float a = v8_hmax(A[gi]), b = v8_hmax(v8_sub(z, B[gi]));
		amax = a > amax ? a : amax;
		bmax = b > bmax ? b : bmax;
	}
	if (!(amax <= 3.0e38f) || !(bmax <= 3.0e38f))
		return 1;
	*d16 = qs_f32_to_f16(amax / smax);
	*m16 = qs_f32_to_f16(bmax / smax);
	if (gg_f16_bad(*d16) || gg_f16_bad(*m16))
		return 1;
	float d = qs_f16_to_f32(*d16), dm = qs_f16_to_f32(*m16);
	v8 vd = v8_set1(d), vdm = v8_set1(dm);
	for (unsigned gi = 0; gi < ng; gi++) {
		v8 q1[GG_SUBMAX], q2[GG_SUBMAX], si = z, mi = z, si2 = z, mi2 = z;
		if (d > 0.0f)
			si = gg_clamp(v8_round(v8_div(A[gi], vd)), 0.0f, smax);
		if (dm > 0.0f)
			mi = gg_clamp(v8_round(v8_div(v8_sub(z, B[gi]), vdm)), 0.0f, smax);
		struct gg_sums s1, s2;
		gg_kcodes(&g[gi], v8_mul(vd, si), v8_mul(vdm, mi), qmax, q1, &s1);
		/* refit the integer scale and min to these codes */
		v8 A2, B2, e;
		m8 ok;
		gg_ls(&g[gi], &s1, 1, &A2, &B2, &e, &ok);
		if (d > 0.0f)
			si2 = v8_sel(ok, gg_clamp(v8_round(v8_div(A2, vd)), 0.0f, smax), si);
		if (dm > 0.0f) {
			/* the min refit to the rounded scale: B = (sx - A sq) / sw */
			v8 Ar = v8_mul(vd, si2);
			v8 Bs = v8_div(v8_sub(g[gi].sx, v8_mul(Ar, s1.sq)), g[gi].sw);
			Bs = v8_min(Bs, z);
			mi2 = v8_sel(ok, gg_clamp(v8_round(v8_div(v8_sub(z, Bs), vdm)), 0.0f, smax), mi);
		}
		(void)B2;
		/* (a lane whose refit rounds to the same integers would code
		 * the same again: skipped when no lane moved) */
		m8 moved = m8_or(m8_or(v8_lt(si2, si), v8_gt(si2, si)),
				 m8_or(v8_lt(mi2, mi), v8_gt(mi2, mi)));
		if (m8_any(moved)) {
			gg_kcodes(&g[gi], v8_mul(vd, si2), v8_mul(vdm, mi2), qmax, q2, &s2);
			m8 take = v8_lt(s2.err, s1.err);
			for (unsigned i = 0; i < sub; i++)
				q1[i] = v8_sel(take, q2[i], q1[i]);
			si = v8_sel(take, si2, si);
			mi = v8_sel(take, mi2, mi);
		}
		float ts[8], tm[8];
		v8_store(ts, si);
		v8_store(tm, mi);
		for (unsigned j = 0; j < 8; j++) {
			sc[gi * 8 + j] = (uint8_t)(int)ts[j];
			mn[gi * 8 + j] = (uint8_t)(int)tm[j];
		}
		if (sub == 32)
			gg_pack_k4(q1, qh != NULL, qs, qh);
		else
			gg_store_codes(q1, sub, 0.0f, c + gi * 8 * sub);
	}
	return 0;
}

/* q3_K (nmax 4, scales -32..31) and q6_K (nmax 32, scales -128..127):
 * sixteen sub-blocks of 16 under one fp16 d; codes c[] with +nmax. */
static int gg_k_sym(const float *x, const float *w, int nmax, int scmin, unsigned ncand,
		    int8_t *sc, uint16_t *d16, uint8_t *c)
{
	struct gg_grp g[2];
	v8 S[2], z = v8_set1(0.0f);
	float sv[16], ext = 0.0f;
	for (unsigned gi = 0; gi < 2; gi++) {
		gg_grp_load(&g[gi], x + gi * 128, w ? w + gi * 128 : NULL, 16);
		S[gi] = gg_sfit(&g[gi], nmax, ncand);
		v8_store(sv + 8 * gi, S[gi]);
	}
	for (unsigned j = 0; j < 16; j++)
		if (fabsf(sv[j]) > fabsf(ext))
			ext = sv[j];
	for (unsigned j = 0; j < 16; j++)
		if (!isfinite(sv[j]))
			return 1;
	*d16 = qs_f32_to_f16(ext / (float)scmin);
	if (gg_f16_bad(*d16))
		return 1;
	float d = qs_f16_to_f32(*d16), lo = (float)scmin, hi = (float)(-scmin - 1);
	v8 vd = v8_set1(d);
	for (unsigned gi = 0; gi < 2; gi++) {
		v8 q1[16], q2[16], si = z, si2 = z;
		struct gg_sums s1, s2;
		if (d != 0.0f)
			si = gg_clamp(v8_round(v8_div(S[gi], vd)), lo, hi);
		gg_scodes(&g[gi], v8_mul(vd, si), nmax, q1, &s1);
		/* refit the integer scale to these codes */
		if (d != 0.0f) {
			m8 ok = v8_gt(s1.sqq, z);
			si2 = v8_sel(ok, gg_clamp(v8_round(v8_div(v8_div(s1.sxq, s1.sqq), vd)), lo, hi),
				     si);
		}
		if (m8_any(m8_or(v8_lt(si2, si), v8_gt(si2, si)))) {
			gg_scodes(&g[gi], v8_mul(vd, si2), nmax, q2, &s2);
			m8 take = v8_lt(s2.err, s1.err);
			for (unsigned i = 0; i < 16; i++)
				q1[i] = v8_sel(take, q2[i], q1[i]);
			si = v8_sel(take, si2, si);
		}
		float ts[8];
		v8_store(ts, si);
		for (unsigned j = 0; j < 8; j++)
			sc[gi * 8 + j] = (int8_t)(int)ts[j];
		gg_store_codes(q1, 16, (float)nmax, c + gi * 128);
	}
	return 0;
}

/* ----------------------------------------------------------- per block */

/* One K super-block of 256 (0, or 1 when its scales overflow fp16). */
static int gg_block_k(unsigned type, const float *x, const float *w, uint8_t *out)
{
	uint8_t c[256];
	if (type == QS_GGUF_Q3_K || type == QS_GGUF_Q6_K) {
		int8_t sc[16];
		uint16_t d16;
		int q3 = type == QS_GGUF_Q3_K;
		if (gg_k_sym(x, w, q3 ? 4 : 32, q3 ? -32 : -128, q3 ? 6 : 4, sc, &d16, c))
			return 1;
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
		if (gg_k_asym(x, w, 16, 3.0f, 15.0f, gg_cand_mid, 4, sc, mn, &d16, &m16, c, NULL,
			      NULL))
			return 1;
		for (unsigned j = 0; j < 16; j++)
			out[j] = (uint8_t)(sc[j] | (mn[j] << 4));
		gg_put16(out + 80, d16);
		gg_put16(out + 82, m16);
	} else {
		/* q4_K: qs[128] at 16; q5_K: qh[32] at 16, qs[128] at 48 */
		int q5 = type == QS_GGUF_Q5_K;
		if (gg_k_asym(x, w, 32, q5 ? 31.0f : 15.0f, 63.0f, gg_cand_low, 4, sc, mn, &d16,
			      &m16, NULL, out + (q5 ? 48 : 16), q5 ? out + 16 : NULL))
			return 1;
		gg_put16(out, d16);
		gg_put16(out + 2, m16);
		qs_gguf_pack_k4_scales(sc, mn, out + 4);
		return 0;
	}
	qs_gguf_pack_codes(type, c, out);
	return 0;
}

/* Eight legacy blocks of 32 at once (x, w: 256 values); bad[j] set for a
 * block whose fp16 scale overflows. */
static void gg_blocks_legacy(unsigned type, const float *x, const float *w, uint8_t *out,
			     int *bad)
{
	const unsigned bb = qs_gguf_block_bytes(type);
	struct gg_grp g;
	v8 q[32], z = v8_set1(0.0f);
	uint8_t c[256];
	float a[8], b[8], t[8];
	uint16_t d16[8], m16[8];
	gg_grp_load(&g, x, w, 32);
	if (type == QS_GGUF_Q4_1 || type == QS_GGUF_Q5_1) {
		float qmax = type == QS_GGUF_Q4_1 ? 15.0f : 31.0f;
		v8 A, B;
		gg_afit(&g, qmax, 0, gg_cand_low, 4, 1, &A, &B);
		v8_store(a, A);
		v8_store(b, B);
		for (unsigned j = 0; j < 8; j++) {
			d16[j] = qs_f32_to_f16(a[j]);
			m16[j] = qs_f32_to_f16(b[j]);
			bad[j] = gg_f16_bad(d16[j]) || gg_f16_bad(m16[j]);
			a[j] = qs_f16_to_f32(d16[j]);
			b[j] = qs_f16_to_f32(m16[j]);
		}
		/* codes on the rounded grid y = q*d + m */
		v8 d = v8_load(a), m = v8_load(b);
		m8 live = v8_gt(d, z);
		struct gg_sums s;
		gg_acodes(&g, m, v8_sel(live, v8_div(v8_set1(1.0f), d), z), z, v8_set1(qmax), q, &s);
		gg_store_codes(q, 32, 0.0f, c);
		for (unsigned j = 0; j < 8; j++) {
			gg_put16(out + j * bb, d16[j]);
			gg_put16(out + j * bb + 2, m16[j]);
		}
	} else {
		int nmax = type == QS_GGUF_Q8_0 ? 128 : type == QS_GGUF_Q4_0 ? 8 : 16;
		v8 S = gg_sfit(&g, nmax, type == QS_GGUF_Q8_0 ? 2 : 6);
		v8_store(t, S);
		for (unsigned j = 0; j < 8; j++) {
			d16[j] = qs_f32_to_f16(t[j]);
			bad[j] = gg_f16_bad(d16[j]) || !isfinite(t[j]);
			t[j] = qs_f16_to_f32(d16[j]);
			gg_put16(out + j * bb, d16[j]);
		}
		struct gg_sums s;
		gg_scodes(&g, v8_load(t), nmax, q, &s);
		gg_store_codes(q, 32, (float)nmax, c);
	}
	for (unsigned j = 0; j < 8; j++)
		qs_gguf_pack_codes(type, c + 32 * j, out + j * bb);
}

size_t QS_GGUF_FN(quantize_row)(unsigned type, const float *x, const float *imp, size_t nblocks,
				uint8_t *dst)
{
	const unsigned bw = qs_gguf_block_weights(type), bb = qs_gguf_block_bytes(type);
	size_t bad = 0;
	if (bw == QS_GGUF_QK_K) {
		for (size_t bi = 0; bi < nblocks; bi++) {
			uint8_t *ob = dst + bi * bb;
			memset(ob, 0, bb);
			if (gg_block_k(type, x + bi * bw, imp ? imp + bi * bw : NULL, ob)) {
				memset(ob, 0, bb);
				bad++;
			}
		}
		return bad;
	}
	/* legacy blocks eight at a time; a short tail through a zero-padded copy */
	float xt[256], wt[256];
	uint8_t ot[8 * 34];
	int flags[8];
	for (size_t bi = 0; bi < nblocks; bi += 8) {
		size_t nb = nblocks - bi < 8 ? nblocks - bi : 8;
		const float *xs = x + bi * 32, *ws = imp ? imp + bi * 32 : NULL;
		uint8_t *ob = dst + bi * bb;
		if (nb < 8) {
			memset(xt, 0, sizeof(xt));
			memcpy(xt, xs, nb * 32 * sizeof(float));
			xs = xt;
			if (ws) {
				for (unsigned i = 0; i < 256; i++)
					wt[i] = 1.0f;
				memcpy(wt, ws, nb * 32 * sizeof(float));
				ws = wt;
			}
			ob = ot;
		}
		gg_blocks_legacy(type, xs, ws, ob, flags);
		for (size_t j = 0; j < nb; j++) {
			if (flags[j]) {
				memset(ob + j * bb, 0, bb);
				bad++;
			}
		}
		if (nb < 8)
			memcpy(dst + bi * bb, ot, nb * bb);
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
