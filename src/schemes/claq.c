/* claq.c - CLAQ (Wang et al., "CLAQ: Pushing the Limits of Low-Bit
 * Post-Training Quantization for LLMs", arXiv:2405.17233; reference code
 * fayuge/CLAQ, gptq/claq.py): GPTQ's column-by-column quantization with
 * inverse-Hessian error compensation, where each column is quantized onto a
 * k-means code book fitted on its *compensated* values; outlier-guided
 * adaptive precision (4 bits for the columns with most outliers) and
 * outlier reservation (the extreme values of each column kept in fp16).
 * The same definition is in qshard(5); change both or neither.
 *
 * Parameters (canonical text
 * "claq:bits=B.DD,reshi=A,reslo=Z,iters=I,actorder=O,damp=D"):
 *   bits     2.00..4.00 with at most two decimals (default 3.12): base
 *            width b = floor(bits) (4.00: every column 4 bits); the H
 *            columns with most outliers get 4 bits, H = round(C f) with f
 *            = bits - 3 for b = 3 and (bits - 2) / 2 for b = 2, so the
 *            average width is `bits` (the reference's rule: 3.12 = 12% of
 *            columns at 4 bits, 2.12 = 6% at 4 bits);
 *   reshi    fraction of a column reserved per tail (its smallest and its
 *            largest values) in the 10% of columns with most outliers,
 *            0..0.05 with at most 4 decimals (default 0.014, the paper's
 *            1.4%);
 *   reslo    the same for the other 90% (default 0.004, 0.4%);
 *   iters    k-means iterations, 1..64 (default 16; stops earlier once no
 *            centroid moves);
 *   actorder 1: columns visited in descending diag(H) order, as the
 *            reference is run (--act-order); 0: natural order (default 1);
 *   damp     dampening added to diag(H), a fraction of its mean, as gptq's
 *            (default 0.01).
 *
 * Whole tensors.  A column's code book is fitted over all rows of the
 * matrix, as in the paper, and the compensated values of a column depend on
 * every earlier column of the same row, so nothing short of the whole
 * matrix can be quantized (no streaming formulation: each column's code
 * book needs the whole column after compensation).  The scheme asks the
 * plan for one chunk per matrix (ops.whole_tensor): the output never
 * depends on --memory, and a matrix too large for the window fails before
 * anything is read, naming the memory it needs.
 *
 * The second-order engine.  --hessian is loaded and prepared by the shared
 * engine (second_order.c: dead columns, dampening, actorder permutation,
 * U = the upper Cholesky factor of H^-1); this file runs GPTQ's loop on U
 * (qs_so_prep_view): in blocks of CLAQ_BLOCK positions, column p's error
 * e_i = (x_i - q_i) / U[p][p] goes onto the block's later columns at once
 * and onto the columns after the block as one sgemm, W[:, after] -= E
 * U[block, after] (GPTQ's lazy batch update).  Without a Hessian (no
 * --hessian, or no entry for the tensor) H = I: nothing is propagated and
 * every column is k-means-quantized as it is (the paper's method needs the
 * Hessian; this fallback is its column-wise k-means alone).  A Hessian file
 * holding only diag(H) also propagates nothing (U is diagonal).
 *
 * Per matrix (R rows x C cols; f32 unless said; NaN weights count as 0,
 * -0 as +0; a weight above 65504 in magnitude, so any Inf, fails with
 * -QS_ETOOBIG):
 *  1. Outlier Order: n_j = the number of rows with |w_ij| >= 13 * mean |W|
 *     (mean over the matrix, in double; the paper's criterion, computed on
 *     the weights before compensation as the reference does); columns
 *     ranked by n_j descending, ties to the lower index.  The first H get
 *     4 bits; the first NH = round(C / 10) (halves up) are heavy.
 *  2. per column, in visiting order, on its current (compensated) values x:
 *     reservation: k = round(reshi R) (heavy) or round(reslo R) (halves
 *     up), at most R/2: the k smallest values (ties: lower row) and the k
 *     largest (ties: lower row) are kept as fp16 (nearest) with their row
 *     index;
 *     code book: 1-D k-means with K = 2^b_j centroids over the other
 *     values (the reference fits all values; leaving out the reserved ones
 *     spends no level on values stored exactly), sorted: initial centroid
 *     m = the value at sorted position floor((2m + 1) n / (2K)); each
 *     iteration assigns every value to the nearest centroid (a value equal
 *     to a midpoint (c_m + c_m+1)/2, in double, goes to the lower one) and
 *     moves each non-empty cluster's centroid to its mean (sums in double
 *     over the sorted values); stops after `iters` iterations or when
 *     nothing moved; no values: all 0;
 *     codes: centroids rounded to fp16 c16[0..K), mid[m] = 0.5f*(c16[m] +
 *     c16[m+1]), code = the number of mid[m] < x (kernels.h nearest_code,
 *     z = 0, inv = 1); reserved rows get code 0;
 *     compensation: q = c16[code] (reserved: their fp16), e = (x - q) /
 *     U[p][p], propagated as above.
 * Back: w' = c16[code], then the reserved values overwrite their rows.
 *
 * Payload of a matrix of R rows x C cols, H 4-bit columns, NH heavy, k_h /
 * k_l reserved per tail, NR = 2 (NH k_h + (C - NH) k_l), L = max(1,
 * ceil(log2 R)) bits per row index, all little-endian, every list in
 * natural column order:
 *   1. ceil(C/8) bytes: bit j (LSB-first) set when column j has 4 bits;
 *   2. ceil(C/8) bytes: bit j set when column j is heavy;
 *   3. the code books: for each column, 2^b_j fp16 ascending;
 *   4. NR row indices (column by column, ascending within a column) as one
 *      L-bit LSB-first bitstream, zero-padded to a byte, then the NR fp16
 *      reserved values in the same order;
 *   5. the codes column-major: column j's R codes of b_j bits, one
 *      LSB-first bitstream over all columns, zero-padded to a byte.
 * payload_size = 2 ceil(C/8) + 2((C-H) 2^b + H 16) + ceil(NR L / 8) + 2 NR
 * + ceil(R ((C-H) b + 4 H) / 8).  Bits per weight: bits + 16 ((1-f) 2^b +
 * 16 f) / R + (0.2 reshi + 1.8 reslo)(16 + L) + 2/R: claq:bits=3.12 on R =
 * 4096: 3.12 + 0.04 + 0.28 = 3.44.
 *
 * Determinism: the block updates run in OpenBLAS (sgemm) pinned to one
 * thread; as for gptq the bytes are reproducible on one machine and
 * OpenBLAS build for any -T, --memory and SIMD level.
 */
#include <cblas.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "scheme.h"
#include "second_order.h"
#include "util.h"
#include "wksp.h"

#define CLAQ_BLOCK 128u        /* columns whose updates are applied in place */
#define CLAQ_MAX_K 16u         /* 2^4 */
#define CLAQ_MAX_RESERVE 500u  /* 0.05 in 1e-4 */
#define CLAQ_OUTLIER_MULT 13.0 /* |w| >= 13 mean|W|: the paper's outlier */

struct claq_params {
	unsigned bits;      /* average width x 100: 200..400 */
	unsigned reshi;     /* per tail, heavy columns, units of 1e-4 */
	unsigned reslo;     /* per tail, other columns */
	unsigned iters;
	unsigned actorder;
	unsigned damp;      /* units of 1e-4 of the mean diagonal */
};

static const struct qs_param claq_param_table[] = {
	QS_PARAM_DECIMAL(struct claq_params, bits, 312, 200, 400, 2, true,
			 "average code width: floor bits, the outlier-heaviest columns 4"),
	QS_PARAM_DECIMAL(struct claq_params, reshi, 140, 0, CLAQ_MAX_RESERVE, 4, false,
			 "fraction kept in fp16 per tail in the 10% heaviest columns"),
	QS_PARAM_DECIMAL(struct claq_params, reslo, 40, 0, CLAQ_MAX_RESERVE, 4, false,
			 "fraction kept in fp16 per tail in the other columns"),
	QS_PARAM_RANGE(struct claq_params, iters, 16, 1, 64, "k-means iterations"),
	QS_PARAM_RANGE(struct claq_params, actorder, 1, 0, 1,
		       "1: columns in descending diag(H) order"),
	QS_PARAM_DECIMAL(struct claq_params, damp, 100, 1, 10000, 4, false,
			 "dampening added to diag(H), a fraction of its mean"),
	QS_PARAM_END,
};

static const struct claq_params *P(const struct qs_scheme *s)
{
	return QS_SCHEME_PARAMS(struct claq_params, s);
}

static bool params_ok(const struct qs_scheme *s)
{
	return qs_scheme_params_ok(s);
}

/* The base code width b (bits=3.12: 3). */
static unsigned base_bits(const struct qs_scheme *s)
{
	return P(s)->bits / 100;
}

struct geom {
	uint64_t high;    /* H: columns at 4 bits */
	uint64_t heavy;   /* NH: columns reserving k_h per tail */
	uint64_t kh, kl;  /* reserved per tail */
	uint64_t nres;    /* NR */
	unsigned L;       /* bits per row index */
	uint64_t off_heavy, off_cb, off_idx, off_val, off_codes, total;
};

static uint64_t per_tail(unsigned e4, uint64_t rows)
{
	uint64_t k = (e4 * rows + 5000) / 10000;  /* rows < 2^32: no overflow */
	return k > rows / 2 ? rows / 2 : k;
}

/* H = round(C f), halves up: f = bits - 3 (b = 3) or (bits - 2) / 2 (b = 2). */
static uint64_t high_columns(unsigned bits100, uint64_t cols)
{
	unsigned b = bits100 / 100, frac = bits100 % 100;
	if (b >= 4)
		return 0;
	if (b == 3)
		return (cols * frac + 50) / 100;
	return (cols * frac + 100) / 200;
}

static bool geometry(const struct qs_scheme *s, uint64_t rows, uint64_t cols, struct geom *g)
{
	unsigned b = base_bits(s);
	uint64_t t, bm = cols / 8 + (cols % 8 != 0);
	if (!params_ok(s) || rows > UINT32_MAX || cols > (UINT64_MAX >> 12))
		return false;
	g->high = high_columns(P(s)->bits, cols);
	g->heavy = (cols + 5) / 10;
	g->kh = per_tail(P(s)->reshi, rows);
	g->kl = per_tail(P(s)->reslo, rows);
	g->nres = 2 * (g->heavy * g->kh + (cols - g->heavy) * g->kl);
	g->L = 1;
	while (g->L < 32 && (1ull << g->L) < rows)
		g->L++;
	uint64_t ncb, ibits, cbits;
	g->off_heavy = bm;
	g->off_cb = 2 * bm;
	if (!qs_mul_u64(cols - g->high, 1ull << b, &ncb) ||
	    !qs_mul_u64(g->high, 16, &t) || !qs_add_u64(ncb, t, &ncb) ||
	    !qs_mul_u64(ncb, 2, &t) || !qs_add_u64(g->off_cb, t, &g->off_idx) ||
	    !qs_mul_u64(g->nres, g->L, &ibits) ||
	    !qs_add_u64(g->off_idx, ibits / 8 + (ibits % 8 != 0), &g->off_val) ||
	    !qs_mul_u64(g->nres, 2, &t) || !qs_add_u64(g->off_val, t, &g->off_codes) ||
	    !qs_mul_u64(cols - g->high, b, &t) || !qs_add_u64(t, 4 * g->high, &t) ||
	    !qs_mul_u64(t, rows, &cbits) ||
	    !qs_add_u64(g->off_codes, cbits / 8 + (cbits % 8 != 0), &g->total))
		return false;
	return true;
}

static uint64_t claq_payload_size(const struct qs_scheme *s, uint64_t rows, uint64_t cols)
{
	struct geom g;
	return geometry(s, rows, cols, &g) ? g.total : UINT64_MAX;
}

/* Scratch: the compensated weights (R x C f32, in visiting order), the
 * block's errors (R x CLAQ_BLOCK f32), one column (f32), the sort's keys
 * and buffer (u32), sorted values (f32), prefix sums (2 x double), codes
 * and a reserved mask (u8), and per column an outlier count and an order
 * (u32), two flags and three payload offsets (u64). */
struct work {
	float *w, *e, *x, *vals;
	uint32_t *key, *tmp;
	double *p1, *p2;
	uint8_t *codes, *resv;
	uint32_t *score, *order;
	uint8_t *width, *heavy;
	uint64_t *cb_at, *res_at, *code_at;
};

static uint64_t carve(struct qs_wksp *p, uint64_t R, uint64_t C, struct work *w)
{
	const size_t A = QS_WKSP_ALIGN;
	w->w = qs_wksp_take(p, 4 * R * C, A);
	w->e = qs_wksp_take(p, 4 * R * CLAQ_BLOCK, A);
	w->x = qs_wksp_take(p, 4 * R, A);
	w->vals = qs_wksp_take(p, 4 * R, A);
	w->key = qs_wksp_take(p, 4 * R, A);
	w->tmp = qs_wksp_take(p, 4 * R, A);
	w->p1 = qs_wksp_take(p, 8 * (R + 1), A);
	w->p2 = qs_wksp_take(p, 8 * (R + 1), A);
	w->codes = qs_wksp_take(p, R, A);
	w->resv = qs_wksp_take(p, R, A);
	w->score = qs_wksp_take(p, 4 * C, A);
	w->order = qs_wksp_take(p, 4 * C, A);
	w->width = qs_wksp_take(p, C, A);
	w->heavy = qs_wksp_take(p, C, A);
	w->cb_at = qs_wksp_take(p, 8 * C, A);
	w->res_at = qs_wksp_take(p, 8 * C, A);
	w->code_at = qs_wksp_take(p, 8 * C, A);
	return p->used;
}

static bool scratch_need(uint64_t rows, uint64_t cols, uint64_t *need)
{
	uint64_t nw;
	struct qs_wksp p;
	struct work w;
	if (!qs_mul_u64(rows, cols, &nw) || nw > UINT64_MAX / 16 || rows > UINT32_MAX ||
	    cols > (UINT64_MAX >> 12))
		return false;
	qs_wksp_init(&p, NULL);
	*need = carve(&p, rows, cols, &w);
	return true;
}

static uint64_t claq_scratch_size(const struct qs_scheme *s, uint64_t rows, uint64_t cols)
{
	uint64_t n;
	if (!params_ok(s) || !scratch_need(rows, cols, &n))
		return UINT64_MAX;
	return n;
}

static uint32_t f2key(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

static float key2f(uint32_t k)
{
	uint32_t u = (k & 0x80000000u) ? (k & 0x7fffffffu) : ~k;
	float f;
	memcpy(&f, &u, 4);
	return f;
}

/* LSD radix sort of n keys, 8 bits a pass, passes where every key has the
 * same digit skipped.  Result in a (tmp is scratch). */
static void radix_sort(uint32_t *a, uint32_t *tmp, size_t n)
{
	for (unsigned sh = 0; sh < 32; sh += 8) {
		size_t cnt[256] = {0};
		for (size_t i = 0; i < n; i++)
			cnt[(a[i] >> sh) & 255]++;
		if (cnt[(a[0] >> sh) & 255] == n)
			continue;
		size_t sum = 0;
		for (unsigned d = 0; d < 256; d++) {
			size_t c = cnt[d];
			cnt[d] = sum;
			sum += c;
		}
		for (size_t i = 0; i < n; i++)
			tmp[cnt[(a[i] >> sh) & 255]++] = a[i];
		memcpy(a, tmp, n * sizeof(*a));
	}
}

/* Number of sorted values (as floats v[0..n)) that are <= x. */
static size_t upper_bound(const float *v, size_t n, double x)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if ((double)v[mid] <= x)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* k-means over sorted v[n] into c[K] (Lloyd's iterations in 1-D, where a
 * cluster is a run of the sorted values, so each iteration is K binary
 * searches and K prefix-sum differences). */
static void kmeans(const float *v, size_t n, unsigned K, unsigned iters, const double *p1,
		   double *c)
{
	size_t bnd[CLAQ_MAX_K + 1];
	if (n == 0) {
		for (unsigned m = 0; m < K; m++)
			c[m] = 0;
		return;
	}
	for (unsigned m = 0; m < K; m++)
		c[m] = v[(size_t)(((2 * (uint64_t)m + 1) * n) / (2 * (uint64_t)K))];
	for (unsigned it = 0; it < iters; it++) {
		bnd[0] = 0;
		for (unsigned m = 0; m + 1 < K; m++)
			bnd[m + 1] = upper_bound(v, n, 0.5 * (c[m] + c[m + 1]));
		bnd[K] = n;
		bool moved = false;
		for (unsigned m = 0; m < K; m++) {
			size_t a = bnd[m], b = bnd[m + 1] > a ? bnd[m + 1] : a;
			if (b == a)
				continue;
			double nc = (p1[b] - p1[a]) / (double)(b - a);
			if (nc != c[m])
				moved = true;
			c[m] = nc;
		}
		if (!moved)
			break;
	}
}

static void put_bits(uint8_t *dst, uint64_t pos, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++, pos++)
		if ((v >> i) & 1)
			dst[pos / 8] |= (uint8_t)(1u << (pos % 8));
}

static uint64_t get_bits(const uint8_t *src, uint64_t pos, unsigned n)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < n; i++, pos++)
		v |= (uint64_t)((src[pos / 8] >> (pos % 8)) & 1) << i;
	return v;
}

/* Marks in w->resv the k smallest and the k largest of x[n] (ties: lower
 * row; 2k <= n) and leaves the other values sorted in w->vals with their
 * prefix sums; returns their count.  x holds no NaN and no -0. */
static size_t column_values(const float *x, size_t n, size_t k, struct work *w)
{
	uint32_t *key = w->key;
	for (size_t i = 0; i < n; i++)
		key[i] = f2key(x[i]);
	radix_sort(key, w->tmp, n);
	memset(w->resv, 0, n);
	if (k) {
		float tl = key2f(key[k - 1]), th = key2f(key[n - k]);
		size_t nl = 0, nh = 0;
		for (size_t i = 0; i < n; i++)
			if (x[i] < tl) {
				w->resv[i] = 1;
				nl++;
			} else if (x[i] > th) {
				w->resv[i] = 1;
				nh++;
			}
		for (size_t i = 0; i < n && nl < k; i++)
			if (!w->resv[i] && x[i] == tl) {
				w->resv[i] = 1;
				nl++;
			}
		for (size_t i = 0; i < n && nh < k; i++)
			if (!w->resv[i] && x[i] == th) {
				w->resv[i] = 1;
				nh++;
			}
	}
	size_t m = n - 2 * k;
	float *v = w->vals;
	w->p1[0] = w->p2[0] = 0;
	for (size_t i = 0; i < m; i++) {
		v[i] = key2f(key[k + i]);
		w->p1[i + 1] = w->p1[i] + v[i];
	}
	return m;
}

static int cmp_order(const void *a, const void *b, void *arg)
{
	const uint32_t *sc = arg;
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	if (sc[x] != sc[y])
		return sc[x] > sc[y] ? -1 : 1;
	return (x > y) - (x < y);
}

/* One matrix; v NULL or identity: H = I. */
static int quantize_v(const struct qs_scheme *s, const struct qs_so_prep *v, bool ident,
		      const float *wt, uint64_t rows64, uint64_t cols64, uint8_t *out,
		      void *scratch)
{
	struct geom g;
	uint64_t need;
	if (!params_ok(s))
		return -QS_EUSAGE;
	if (!geometry(s, rows64, cols64, &g) || g.total > SIZE_MAX ||
	    !scratch_need(rows64, cols64, &need) || need > SIZE_MAX ||
	    rows64 > (uint64_t)INT32_MAX || cols64 > (uint64_t)INT32_MAX)
		return -QS_ETOOBIG;
	memset(out, 0, (size_t)g.total);
	if (rows64 == 0 || cols64 == 0)
		return 0;
	size_t R = (size_t)rows64, C = (size_t)cols64, nw = R * C;
	const struct qs_kernels *k = qs_kernels_get();
	struct qs_wksp ws;
	struct work w;
	qs_wksp_init(&ws, scratch);
	carve(&ws, R, C, &w);
	unsigned b = base_bits(s), iters = P(s)->iters;
	const float *u = v && !ident ? v->u : NULL;
	const uint32_t *perm = v && !ident ? v->perm : NULL;
	const uint8_t *dead = v && !ident ? v->dead : NULL;
	double c[CLAQ_MAX_K];

	/* mean |W| (NaN as 0) */
	double sum = 0;
	for (size_t i = 0; i < nw; i++) {
		float x = wt[i];
		if (x != x)
			continue;
		if (!(fabsf(x) <= 65504.0f))
			return -QS_ETOOBIG;
		sum += fabsf(x);
	}
	/* the working copy in visiting order (NaN as 0, -0 as +0, dead 0) */
	for (size_t i = 0; i < R; i++)
		for (size_t p = 0; p < C; p++) {
			size_t j = perm ? perm[p] : p;
			float x = wt[i * C + j];
			x = x == x ? x + 0.0f : 0.0f;
			w.w[i * C + p] = dead && dead[j] ? 0.0f : x;
		}

	/* 1. Outlier Order: 4-bit and heavy columns */
	float thr = (float)(CLAQ_OUTLIER_MULT * (sum / (double)nw));
	memset(w.score, 0, C * sizeof(*w.score));
	for (size_t i = 0; i < R; i++)
		for (size_t j = 0; j < C; j++)
			w.score[j] += fabsf(wt[i * C + j]) >= thr && thr > 0.0f;
	for (size_t j = 0; j < C; j++)
		w.order[j] = (uint32_t)j;
	qsort_r(w.order, C, sizeof(*w.order), cmp_order, w.score);
	memset(w.width, (int)b, C);
	memset(w.heavy, 0, C);
	for (uint64_t h = 0; h < g.high; h++) {
		w.width[w.order[h]] = 4;
		out[w.order[h] / 8] |= (uint8_t)(1u << (w.order[h] % 8));
	}
	for (uint64_t h = 0; h < g.heavy; h++) {
		w.heavy[w.order[h]] = 1;
		out[g.off_heavy + w.order[h] / 8] |= (uint8_t)(1u << (w.order[h] % 8));
	}
	/* where each natural column's code book, reserved entries and codes go */
	uint64_t cb = g.off_cb, ridx = 0, cbit = 0;
	for (size_t j = 0; j < C; j++) {
		w.cb_at[j] = cb;
		w.res_at[j] = ridx;
		w.code_at[j] = cbit;
		cb += 2ull << w.width[j];
		ridx += 2 * (w.heavy[j] ? g.kh : g.kl);
		cbit += (uint64_t)R * w.width[j];
	}

	/* 2. GPTQ's loop with a code book per column */
	for (size_t p0 = 0; p0 < C; p0 += CLAQ_BLOCK) {
		size_t bend = C - p0 < CLAQ_BLOCK ? C : p0 + CLAQ_BLOCK, B = bend - p0;
		for (size_t p = p0; p < bend; p++) {
			size_t j = perm ? perm[p] : p;
			unsigned bj = w.width[j], K = 1u << bj;
			size_t kt = (size_t)(w.heavy[j] ? g.kh : g.kl);
			float c16[CLAQ_MAX_K], mid[CLAQ_MAX_K];
			for (size_t i = 0; i < R; i++)
				w.x[i] = w.w[i * C + p] + 0.0f;
			size_t m = column_values(w.x, R, kt, &w);
			kmeans(w.vals, m, K, iters, w.p1, c);
			for (unsigned q = 0; q < K; q++) {
				uint16_t h = qs_f32_to_f16((float)c[q]);
				if ((h & 0x7c00u) == 0x7c00u)
					return -QS_ETOOBIG;
				c16[q] = qs_f16_to_f32(h);
				qs_put_le16(out + w.cb_at[j] + 2 * q, h);
			}
			for (unsigned q = 0; q + 1 < K; q++)
				mid[q] = 0.5f * (c16[q] + c16[q + 1]);
			k->nearest_code(w.x, R, 0.0f, 1.0f, mid, K - 1, w.codes);
			float d = u ? u[p * C + p] : 1.0f;
			uint64_t ri = w.res_at[j];
			for (size_t i = 0; i < R; i++) {
				float q = c16[w.codes[i]];
				if (w.resv[i]) {
					uint16_t h = qs_f32_to_f16(w.x[i]);
					if ((h & 0x7c00u) == 0x7c00u)
						return -QS_ETOOBIG;
					put_bits(out + g.off_idx, ri * g.L, i, g.L);
					qs_put_le16(out + g.off_val + 2 * ri, h);
					ri++;
					w.codes[i] = 0;
					q = qs_f16_to_f32(h);
				}
				float e = (w.x[i] - q) / d;
				w.e[i * CLAQ_BLOCK + (p - p0)] = isfinite(e) ? e : 0.0f;
			}
			k->pack_bits(w.codes, R, bj, out + g.off_codes, w.code_at[j]);
			if (!u)
				continue;
			const float *up = u + p * C;
			for (size_t i = 0; i < R; i++) {
				float e = w.e[i * CLAQ_BLOCK + (p - p0)];
				float *wr = w.w + i * C;
				for (size_t q = p + 1; q < bend; q++)
					wr[q] -= e * up[q];
			}
		}
		if (u && bend < C)
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)R,
				    (blasint)(C - bend), (blasint)B, -1.0f, w.e, (blasint)CLAQ_BLOCK,
				    u + p0 * C + bend, (blasint)C, 1.0f, w.w + bend, (blasint)C);
	}
	return 0;
}

static int claq_quantize(const struct qs_scheme *s, const float *w, uint64_t rows,
			 uint64_t cols, uint8_t *out, void *scratch)
{
	return quantize_v(s, NULL, true, w, rows, cols, out, scratch);
}

static int claq_dequantize(const struct qs_scheme *s, const uint8_t *in, uint64_t rows64,
			   uint64_t cols64, float *out, void *scratch)
{
	struct geom g;
	uint64_t need;
	if (!params_ok(s))
		return -QS_EUSAGE;
	if (!geometry(s, rows64, cols64, &g) || g.total > SIZE_MAX ||
	    !scratch_need(rows64, cols64, &need) || need > SIZE_MAX)
		return -QS_ETOOBIG;
	if (rows64 == 0 || cols64 == 0)
		return 0;
	size_t R = (size_t)rows64, C = (size_t)cols64;
	const struct qs_kernels *k = qs_kernels_get();
	struct qs_wksp ws;
	struct work w;
	qs_wksp_init(&ws, scratch);
	carve(&ws, R, C, &w);
	unsigned b = base_bits(s);

	uint64_t nh = 0, nv = 0;
	for (size_t j = 0; j < C; j++) {
		nh += (in[j / 8] >> (j % 8)) & 1;
		nv += (in[g.off_heavy + j / 8] >> (j % 8)) & 1;
	}
	if (nh != g.high || nv != g.heavy)
		return -QS_EFORMAT;
	uint64_t cb = g.off_cb, cbit = 0;
	for (size_t j = 0; j < C; j++) {
		unsigned bj = (in[j / 8] >> (j % 8)) & 1 ? 4 : b;
		float c16[CLAQ_MAX_K];
		for (unsigned q = 0; q < (1u << bj); q++, cb += 2)
			c16[q] = qs_f16_to_f32(qs_get_le16(in + cb));
		k->unpack_bits(in + g.off_codes, cbit, R, bj, w.codes);
		cbit += (uint64_t)R * bj;
		for (size_t i = 0; i < R; i++)
			out[i * C + j] = c16[w.codes[i]];
	}
	uint64_t ridx = 0;
	for (size_t j = 0; j < C; j++) {
		bool heavy = (in[g.off_heavy + j / 8] >> (j % 8)) & 1;
		uint64_t n = 2 * (heavy ? g.kh : g.kl);
		for (uint64_t q = 0; q < n; q++, ridx++) {
			uint64_t i = get_bits(in + g.off_idx, ridx * g.L, g.L);
			if (i >= R)
				return -QS_EFORMAT;
			out[i * C + j] = qs_f16_to_f32(qs_get_le16(in + g.off_val + 2 * ridx));
		}
	}
	return 0;
}

/* ---- per-tensor state: the shared engine's prepared factor ---- */

static void so_cfg(const struct qs_scheme *s, struct qs_so_cfg *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->bits = 4;      /* unused by the preparation, but must be legal */
	cfg->group = 128;
	cfg->damp_e4 = P(s)->damp;
	cfg->actorder = P(s)->actorder != 0;
}

static uint64_t claq_prep_size(const struct qs_scheme *s, uint64_t cols)
{
	(void)s;
	return qs_so_prep_size(cols);
}

static int claq_prepare(const struct qs_scheme *s, const struct qs_tensor_stats *st,
			void *prep, struct qs_diag *diag)
{
	struct qs_so_cfg cfg;
	so_cfg(s, &cfg);
	return qs_so_prepare(&cfg, st, prep, "claq", diag);
}

static int claq_quantize_prep(const struct qs_scheme *s, const void *prep, const float *w,
			      uint64_t rows, uint64_t cols, uint8_t *out, void *scratch)
{
	struct qs_so_prep v;
	bool ident = true;
	if (prep) {
		int rc = qs_so_prep_view(prep, cols, &v, &ident);
		if (rc)
			return rc;
	}
	return quantize_v(s, prep ? &v : NULL, ident, w, rows, cols, out, scratch);
}

const struct qs_scheme_ops qs_scheme_claq = {
	.name = "claq",
	.params = claq_param_table,
	.payload_size = claq_payload_size,
	.scratch_size = claq_scratch_size,
	.quantize = claq_quantize,
	.dequantize = claq_dequantize,
	.wants = QS_WANT_HESSIAN,
	.prep_size = claq_prep_size,
	.prepare = claq_prepare,
	.quantize_prep = claq_quantize_prep,
	.whole_tensor = true,
};
