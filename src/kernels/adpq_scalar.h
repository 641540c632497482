/* adpq_scalar.h - the scalar parts of adpq's row kernels (ref_adpq.c is
 * the definition), written once for ref_adpq.c and the SIMD variants
 * (x86/avx2_adpq.c, x86/avx512_adpq.c, arm/neon_adpq.c): the folding of codes, a group's grid
 * from its stored meta, the outlier codes and values,
 * and the three-phase skeleton of quantize_row into which a
 * variant plugs its vector range pass and code loop.
 */
#ifndef QS_ADPQ_SCALAR_H
#define QS_ADPQ_SCALAR_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels.h"
#include "rtn_scalar.h"

#define QS_ADPQ_GMAX 256u  /* the largest group */
#define QS_ADPQ_SEARCH_MAX 16u  /* the most candidates a variant keeps (the scheme's limit) */

/* The selection key of a weight: the bit pattern of |w| (ordered as |w|
 * is), a NaN counting as 0. */
static inline uint32_t qs_adpq_key(float w)
{
	uint32_t u;
	memcpy(&u, &w, sizeof(u));
	u &= 0x7fffffffu;
	return u > 0x7f800000u ? 0 : u;
}

/* Histogram bins of the selection: a key's top 11 bits. */
#define QS_ADPQ_KEY_SHIFT 20
#define QS_ADPQ_KEY_BINS 2048u

/* The two row passes of qs_adpq_select_row_with() a variant may vectorize.
 * blockmax_hist adds to hist[max >> QS_ADPQ_KEY_SHIFT] the largest key of
 * each block of the row's disjoint blocks: in every whole 64 weights
 * w[i..i+63] (i a multiple of 64), the 8 blocks {i+j, i+j+8, ..., i+j+56}
 * (j = 0..7: one vertical max over 8 vectors of 8), then every weight past
 * the last whole 64 alone, and returns the largest key.  collect writes the indices of the weights whose
 * key is >= lo to out[], ascending, and returns their number, or cap + 1
 * (and may stop) when there are more than cap; out has room for cap + 16
 * entries, so a variant may store a whole vector of 16 past its count. */
typedef uint32_t (*qs_adpq_blockmax_hist_fn)(const float *w, size_t n, uint32_t *hist);
typedef size_t (*qs_adpq_collect_fn)(const float *w, size_t n, uint32_t lo, uint32_t *out,
				     size_t cap);

/* The step of the range [mn, mx] on a grid of 2^bits codes into *step,
 * and whether the range search runs on it: search asked for and a
 * positive step below 1e30 (the f32 grid can overflow for ranges beyond
 * fp16; the caller fails those anyway).  ref's inlier_range and every
 * variant's group ranges. */
static inline bool qs_adpq_search_runs(float mn, float mx, const struct qs_adpq_params *p,
				       float *step)
{
	*step = (mx - mn) / (float)((1u << p->bits) - 1u);
	return p->search && *step > 0.0f && *step < 1e30f;
}

/* A SIMD variant's end of a group's inlier range: [mn, mx] from its
 * vector min and max, [0, 0] when no weight was kept (as ref's
 * masked_range), stored to lo and hi; returns qs_adpq_search_runs() on
 * it, the step in *step. */
static inline bool qs_adpq_range_done(float *mn, float *mx, const struct qs_adpq_params *p,
				      float *lo, float *hi, float *step)
{
	if (*mn > *mx)
		*mn = *mx = 0.0f;
	*lo = *mn;
	*hi = *mx;
	return qs_adpq_search_runs(*mn, *mx, p, step);
}

/* blockmax_hist's scalar part from index i on (the weights past the last
 * whole 64, each its own block), counting into hist and returning the
 * larger of mx and their largest key: ref's and every variant's tail. */
static inline uint32_t qs_adpq_blockmax_scalar(const float *w, size_t i, size_t n,
					       uint32_t *hist, uint32_t mx)
{
	for (; i < n; i++) {
		uint32_t v = qs_adpq_key(w[i]);
		hist[v >> QS_ADPQ_KEY_SHIFT]++;
		mx = v > mx ? v : mx;
	}
	return mx;
}

/* collect's scalar definition from index i on, appending to out[c..]:
 * ref's whole pass and every variant's tail past its last vector. */
static inline size_t qs_adpq_collect_scalar(const float *w, size_t i, size_t n, uint32_t lo,
					    uint32_t *out, size_t c, size_t cap)
{
	for (; i < n; i++) {
		if (qs_adpq_key(w[i]) < lo)
			continue;
		if (c == cap)
			return cap + 1;
		out[c++] = (uint32_t)i;
	}
	return c;
}

/* qs_adpq_select_row (kernels.h) with a variant's two passes (ref_adpq.c). */
void qs_adpq_select_row_with(const float *w, size_t n, const struct qs_adpq_params *p,
			     struct qs_adpq_row *r, qs_adpq_blockmax_hist_fn blockmax_hist,
			     qs_adpq_collect_fn collect);
typedef void (*qs_adpq_select_fn)(const float *w, size_t n, const struct qs_adpq_params *p,
				  struct qs_adpq_row *r);

/* Folding: inlier codes stored by distance from the zero code z (the code
 * nearest 0.0): z, z+1, z-1, z+2, z-2, ... and, once the shorter side is
 * used up, the rest of the longer side in order.  Bell-shaped groups then
 * have mostly small stored codes, whose high bit planes compress. */
static inline unsigned qs_adpq_fold(unsigned c, unsigned z, unsigned qmax)
{
	unsigned m = z < qmax - z ? z : qmax - z;
	unsigned d = c > z ? c - z : z - c;
	if (d <= m)
		return c > z ? 2 * d - 1 : 2 * d;
	return m + d;
}

static inline unsigned qs_adpq_unfold(unsigned f, unsigned z, unsigned qmax)
{
	unsigned m = z < qmax - z ? z : qmax - z;
	if (f <= 2 * m)
		return (f & 1) ? z + (f + 1) / 2 : z - f / 2;
	return z < qmax - z ? z + (f - m) : z - (f - m);
}

/* A group's two grids as dequantization rebuilds them. */
struct qs_adpq_grid {
	float minf, step, omin, ostep;
};

/* The row's super-scales (scales=u8) as floats. */
static inline void qs_adpq_supers(const struct qs_adpq_row *r, float sup[4])
{
	for (unsigned j = 0; j < 4; j++)
		sup[j] = qs_f16_to_f32(r->super[j]);
}

static inline struct qs_adpq_grid qs_adpq_grid_of(const struct qs_adpq_row *r,
						  const float sup[4], size_t ng, size_t g,
						  unsigned flags)
{
	struct qs_adpq_grid q;
	const uint16_t *m = r->meta;
	if (flags & QS_ADPQ_SCALES_F16) {
		q.step = qs_f16_to_f32(m[g]);
		q.minf = qs_f16_to_f32(m[ng + g]);
		q.ostep = qs_f16_to_f32(m[2 * ng + g]);
		q.omin = qs_f16_to_f32(m[3 * ng + g]);
	} else {
		q.step = sup[0] * (float)m[g];
		q.minf = -(sup[1] * (float)m[ng + g]);
		q.ostep = sup[2] * (float)m[2 * ng + g];
		q.omin = sup[3] * (float)m[3 * ng + g];
	}
	return q;
}

/* One reciprocal per group, then only multiplies (division is the slow
 * SIMD operation); a zero step makes every code 0. */
static inline float qs_adpq_inv(float step)
{
	return step > 0.0f ? 1.0f / step : 0.0f;
}

/* The zero code: the inlier code nearest 0.0. */
static inline unsigned qs_adpq_zero_code(const struct qs_adpq_grid *q, float inv, float qmaxf)
{
	return qs_round_code((0.0f - q->minf) * inv, qmaxf);
}

/* Sign-magnitude outlier code of x: the sign in bit bits-1. */
static inline uint8_t qs_adpq_outlier_code(float x, const struct qs_adpq_grid *q, float oinv,
					   float omaxf, unsigned bits)
{
	unsigned co = qs_round_code((fabsf(x) - q->omin) * oinv, omaxf);
	uint32_t u;
	memcpy(&u, &x, sizeof(u));
	return (uint8_t)(co | (u >> 31) << (bits - 1));
}

/* Overwrites the k outliers of a dequantized group wg[len] (in-group
 * indices idx[k]) with their values; returns how many indices fall
 * outside the group (a corrupt payload: skipped). */
static inline size_t qs_adpq_put_outliers(float *wg, const uint8_t *c, size_t len,
					  const uint8_t *idx, unsigned k,
					  const struct qs_adpq_grid *q, unsigned bits)
{
	const unsigned omax = (1u << (bits - 1)) - 1u;
	size_t bad = 0;
	for (unsigned o = 0; o < k; o++) {
		size_t j = idx[o];
		if (j >= len) {
			bad++;
			continue;
		}
		unsigned co = c[j];
		float t = (float)(co & omax) * q->ostep;
		float a = q->omin + t;
		wg[j] = (co >> (bits - 1)) & 1u ? -a : a;
	}
	return bad;
}

/* Phase 1 of one group for a SIMD variant: wg holds whole blocks of 32
 * (past len: +0.0); its k outliers' in-group indices are idx[k] (chosen by
 * qs_adpq_select_row for the row; variants that keep one store their bits
 * to om, one a weight, at r->mask + i/8); the inlier range goes to lo/hi,
 * the outliers' |w| range to omn/omx. */
typedef void (*qs_adpq_ranges_fn)(const float *wg, size_t len, unsigned k,
				  const struct qs_adpq_params *p, uint8_t *om, const uint8_t *idx,
				  float *lo, float *hi, float *omn, float *omx);
/* Phase 3 of one group: the inlier codes of wg[len] on grid q (folded
 * around z, m = min(z, qmax - z), when fold), into c[len]. */
typedef void (*qs_adpq_codes_fn)(const float *wg, size_t len, const struct qs_adpq_grid *q,
				 float inv, unsigned z, unsigned m, bool fold, float qmaxf,
				 uint8_t *c);

/* Phase 2, the grids of a row (qs_ref_adpq_grids() in ref_adpq.c is the
 * definition; a variant's version returns the same, bit for bit). */
typedef size_t (*qs_adpq_grids_fn)(size_t ng, const struct qs_adpq_params *p,
				   struct qs_adpq_row *r);

/* The smallest fp16 unit u with u*255 >= need (ref_adpq.c)
 * (need >= 0); QS_F16_INF on overflow. */
uint16_t qs_adpq_super_unit(float need);

/* One of a row's u8-meta super-scales: its fp16 unit, that unit in f32
 * and its reciprocal (qs_adpq_inv), as phase 2 uses them. */
struct qs_adpq_unit {
	uint16_t bits;
	float f, inv;
};

/* The super-scale for a row's largest need; false when it overflows fp16
 * (the row's meta is then zeroed). */
static inline bool qs_adpq_unit_of(float need, struct qs_adpq_unit *u)
{
	u->bits = qs_adpq_super_unit(need);
	if (u->bits >= QS_F16_INF)
		return false;
	u->f = qs_f16_to_f32(u->bits);
	u->inv = qs_adpq_inv(u->f);
	return true;
}

/* kernels.h adpq_quantize_row for a variant's vector phases 1 and 3 and
 * its phase 2 (grids).  Groups the vector code does not handle (above
 * QS_ADPQ_GMAX, not a multiple of 32) and searches beyond
 * QS_ADPQ_SEARCH_MAX go to ref whole. */
static QS_ALWAYS_INLINE size_t qs_adpq_quantize_row_grids(const float *w, size_t n,
							  const struct qs_adpq_params *p,
							  struct qs_adpq_row *r,
							  qs_adpq_select_fn select,
							  qs_adpq_ranges_fn ranges,
							  qs_adpq_grids_fn grids,
							  qs_adpq_codes_fn codes)
{
	const size_t G = p->group;
	if (n == 0)
		return 0;
	if (G == 0 || G > QS_ADPQ_GMAX || G % 32 || p->bits < 2 || p->bits > 4 ||
	    p->search > QS_ADPQ_SEARCH_MAX)
		return qs_ref_adpq_quantize_row(w, n, p, r);
	const size_t ng = n / G + (n % G != 0);
	const unsigned qmax = (1u << p->bits) - 1u, omax = (1u << (p->bits - 1)) - 1u;
	const float qmaxf = (float)qmax, omaxf = (float)omax;
	float *lo = r->tmp, *hi = lo + ng, *omn = hi + ng, *omx = omn + ng;
	float buf[QS_ADPQ_GMAX] __attribute__((aligned(32)));

	/* 1: the row's outliers, then each group's ranges (a short last
	 * group padded with zeros) */
	select(w, n, p, r);
	const uint8_t *idx = r->idx;
	for (size_t g = 0, i = 0; i < n; g++, i += G) {
		size_t len = n - i < G ? n - i : G;
		unsigned k = r->counts[g];
		const float *wg = w + i;
		if (len < G) {
			memset(buf, 0, sizeof(buf));
			memcpy(buf, wg, len * sizeof(float));
			wg = buf;
		}
		ranges(wg, len, k, p, r->mask + i / 8, idx, &lo[g], &hi[g], &omn[g], &omx[g]);
		idx += k;
		/* schemes quantize a chunk's rows in order, and a row is first
		 * read by the selection's streaming pass, from memory: fetch the
		 * next row's group while this row is searched (a prefetch never
		 * faults; past the chunk's end it is only wasted, and the
		 * address is formed as an integer, not a pointer past w's) */
		for (size_t o = 0; o < G; o += 16)
			__builtin_prefetch((const void *)((uintptr_t)w + (n + i + o) * sizeof(float)), 0, 2);
	}

	/* 2: the grids */
	size_t overflowed = grids(ng, p, r);
	if (overflowed == SIZE_MAX) {
		memset(r->codes, 0, n);
		return 1;
	}

	/* 3: inlier codes, then the outliers as in ref */
	const bool fold = (p->flags & QS_ADPQ_FOLD) != 0;
	float sup[4];
	qs_adpq_supers(r, sup);
	idx = r->idx;
	for (size_t g = 0, i = 0; i < n; g++, i += G) {
		size_t len = n - i < G ? n - i : G;
		struct qs_adpq_grid q = qs_adpq_grid_of(r, sup, ng, g, p->flags);
		float inv = qs_adpq_inv(q.step), oinv = qs_adpq_inv(q.ostep);
		unsigned z = qs_adpq_zero_code(&q, inv, qmaxf);
		unsigned m = z < qmax - z ? z : qmax - z;
		uint8_t *c = r->codes + i;
		const float *wg = w + i;
		codes(wg, len, &q, inv, z, m, fold, qmaxf, c);
		unsigned k = r->counts[g];
		for (unsigned o = 0; o < k; o++)
			c[idx[o]] = qs_adpq_outlier_code(wg[idx[o]], &q, oinv, omaxf, p->bits);
		idx += k;
	}
	return overflowed;
}

/* The same with ref's grids (phase 2). */
static QS_ALWAYS_INLINE size_t qs_adpq_quantize_row_with(const float *w, size_t n,
							 const struct qs_adpq_params *p,
							 struct qs_adpq_row *r,
							 qs_adpq_select_fn select,
							 qs_adpq_ranges_fn ranges,
							 qs_adpq_codes_fn codes)
{
	return qs_adpq_quantize_row_grids(w, n, p, r, select, ranges, qs_ref_adpq_grids, codes);
}

#endif /* QS_ADPQ_SCALAR_H */
