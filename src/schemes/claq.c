/* claq.c - CLAQ (Wang et al., "CLAQ: Pushing the Limits of Low-Bit
 * Post-Training Quantization for LLMs", arXiv:2405.17233): a k-means code
 * book per input column, more bits for the columns that need them most
 * (outlier-guided adaptive precision), and the most extreme weights of
 * each column kept in fp16 (outlier reservation).  The same definition is
 * in qshard(5); change both or neither.
 *
 * Parameters (canonical text "claq:bits=B.D,reserve=F,iters=I"):
 *   bits     target average code width, 2.0..4.0 with one decimal
 *            (default 3.1): base width b = floor, and H = round(C * 0.D)
 *            columns (halves up) get b + 1 bits (bits=3.1: 3 bits, the
 *            top 10% of columns 4 bits);
 *   reserve  fraction of each column kept in fp16, a decimal in [0, 0.05]
 *            with at most 4 fractional digits (default 0.005);
 *   iters    k-means iterations, 1..64 (default 16; stops earlier once no
 *            centroid moves).
 *
 * The documented sample.  The pipeline hands a scheme row-chunks (up to
 * ~16 MiB of source bytes) that must quantize independently, so a column's
 * code book is fitted on the rows of the chunk being quantized, not the
 * whole tensor: each chunk carries its own code books, bit allocation and
 * reserved outliers.  With R rows in the chunk, a column costs 16 * 2^b
 * bits of code book: the fewer rows, the more overhead (see bpw below).
 *
 * Per chunk (f32 unless said; NaN weights count as 0, -0 as +0; any
 * weight above 65504 in magnitude, so any Inf, fails with -QS_ETOOBIG):
 *  1. bit allocation: without importance, the paper's outlier order:
 *     score_j = the number of rows with |w_ij| > 3 * mean |w| (mean over
 *     the chunk, in double); with importance v_j (the mean squared input
 *     activation of column j, which scales the output error of the whole
 *     column), score_j = v_j * SSE_j, SSE_j the k-means error of column j
 *     at b bits (step 3): the expected output-error gain of one more bit.
 *     The H columns of highest score (ties: lower index) get b + 1 bits.
 *  2. reservation: with k = floor((reserve*10^4 * R + 5000) / 10^4) (at
 *     most R), the k weights of largest |w| of each column (ties: lower
 *     row) are stored as fp16 (nearest) with their row index.
 *  3. code book: 1-D k-means with K = 2^b_j centroids over the column's
 *     other weights, sorted: initial centroid m = the value at sorted
 *     position floor((2m + 1) * n / (2K)); each iteration assigns every
 *     value to the centroid it is nearest to (a value equal to a midpoint
 *     (c_m + c_m+1)/2, in double, goes to the lower one) and moves each
 *     non-empty cluster's centroid to its mean (sums in double over the
 *     sorted values); stops after `iters` iterations or when nothing
 *     moved.  With no values, every centroid is 0.
 *  4. codes: centroids rounded to fp16 (nearest) c16[0..K), mid[m] =
 *     0.5f*(c16[m] + c16[m+1]), code = the number of mid[m] < w (kernels.h
 *     nearest_code, z = 0, inv = 1); reserved positions get code 0.
 * Back: w' = c16[code], then the reserved values overwrite their rows.
 *
 * Payload of a chunk of R rows x C cols, H high columns, k reserved per
 * column, L = max(1, ceil(log2 R)) bits per row index, all little-endian:
 *   1. ceil(C/8) bytes: bit j (LSB-first) set when column j has b+1 bits;
 *   2. the code books: for each column in order, 2^b_j fp16 ascending;
 *   3. C*k row indices (column by column, ascending within a column) as
 *      one L-bit LSB-first bitstream, zero-padded to a byte, then the C*k
 *      fp16 reserved values in the same order;
 *   4. the codes column-major: column j's R codes of b_j bits, one
 *      LSB-first bitstream over all columns (column j starts at bit
 *      R * sum of b_j' for j' < j), zero-padded to a byte.
 * payload_size = ceil(C/8) + 2((C-H) 2^b + H 2^(b+1)) + ceil(C k L / 8) +
 * 2 C k + ceil(R ((C-H) b + H (b+1)) / 8).  Bits per weight: bits + 16
 * ((1-f) 2^b + f 2^(b+1)) / R + reserve (16 + L), f = 0.D: claq:bits=3.1
 * on R = 2048 rows: 3.1 + 0.069 + 0.135 = 3.30.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "scheme.h"
#include "util.h"
#include "wksp.h"

#define CLAQ_BLOCK 16u       /* columns transposed at a time */
#define CLAQ_MAX_K 32u       /* 2^(4 + 1) */
#define CLAQ_MAX_RESERVE 500u /* 0.05 in 1e-4 */

struct claq_params {
	unsigned bits;     /* target width x 10: 20..40 */
	unsigned reserve;  /* fraction kept in fp16, units of 1e-4 */
	unsigned iters;
};

static const struct qs_param claq_param_table[] = {
	QS_PARAM_DECIMAL(struct claq_params, bits, 31, 20, 40, 1, true,
			 "average code width: floor bits, the fraction of columns one more"),
	QS_PARAM_DECIMAL(struct claq_params, reserve, 50, 0, CLAQ_MAX_RESERVE, 4, false,
			 "fraction of each column kept in fp16"),
	QS_PARAM_RANGE(struct claq_params, iters, 16, 1, 64, "k-means iterations"),
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

/* The base code width b (bits=3.1: 3). */
static unsigned base_bits(const struct qs_scheme *s)
{
	return P(s)->bits / 10;
}

struct geom {
	uint64_t high;    /* H */
	uint64_t k;       /* reserved per column */
	unsigned L;       /* bits per row index */
	uint64_t off_cb, off_idx, off_val, off_codes, total;
};

static bool geometry(const struct qs_scheme *s, uint64_t rows, uint64_t cols, struct geom *g)
{
	unsigned b = base_bits(s);
	uint64_t t;
	if (!params_ok(s) || rows > UINT32_MAX || cols > (UINT64_MAX >> 8))
		return false;
	g->high = (cols * (P(s)->bits % 10) + 5) / 10;
	if (b == 4)
		g->high = 0;
	g->k = (P(s)->reserve * rows + 5000) / 10000;  /* rows < 2^32: no overflow */
	if (g->k > rows)
		g->k = rows;
	g->L = 1;
	while (g->L < 32 && (1ull << g->L) < rows)
		g->L++;
	uint64_t ncb, nres, ibits, cbits;
	g->off_cb = cols / 8 + (cols % 8 != 0);
	if (!qs_mul_u64(cols - g->high, 1ull << b, &ncb) ||
	    !qs_mul_u64(g->high, 2ull << b, &t) || !qs_add_u64(ncb, t, &ncb) ||
	    !qs_mul_u64(ncb, 2, &t) || !qs_add_u64(g->off_cb, t, &g->off_idx) ||
	    !qs_mul_u64(cols, g->k, &nres) || !qs_mul_u64(nres, g->L, &ibits) ||
	    !qs_add_u64(g->off_idx, ibits / 8 + (ibits % 8 != 0), &g->off_val) ||
	    !qs_mul_u64(nres, 2, &t) || !qs_add_u64(g->off_val, t, &g->off_codes) ||
	    !qs_mul_u64(cols, b, &t) || !qs_add_u64(t, g->high, &t) ||
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

/* Scratch: a block of CLAQ_BLOCK transposed columns (f32), the sort's
 * values (f32), keys and buffer (u32), prefix sums (2 x double), codes, a reserved
 * mask, and per column a score (double), an order (u32) and a width. */
static uint64_t scratch_need(uint64_t rows, uint64_t cols)
{
	return QS_WKSP_ALIGN * 12 + (uint64_t)CLAQ_BLOCK * 4 * rows + 12 * rows + 16 * (rows + 1) +
	       2 * rows + 13 * cols;
}

static uint64_t claq_scratch_size(const struct qs_scheme *s, uint64_t rows, uint64_t cols)
{
	if (!params_ok(s) || rows > UINT32_MAX || cols > (UINT64_MAX >> 8))
		return UINT64_MAX;
	return scratch_need(rows, cols);
}

struct work {
	float *blk, *vals;
	uint32_t *key, *tmp;
	double *p1, *p2;
	uint8_t *codes, *resv;
	double *score;
	uint32_t *order;
	uint8_t *width;
};

static struct work carve(void *scratch, size_t rows, size_t cols)
{
	struct qs_wksp p;
	struct work w;
	const size_t A = QS_WKSP_ALIGN;
	qs_wksp_init(&p, scratch);
	w.blk = qs_wksp_take(&p, (uint64_t)CLAQ_BLOCK * 4 * rows, A);
	w.vals = qs_wksp_take(&p, 4 * (uint64_t)rows, A);
	w.key = qs_wksp_take(&p, 4 * (uint64_t)rows, A);
	w.tmp = qs_wksp_take(&p, 4 * (uint64_t)rows, A);
	w.p1 = qs_wksp_take(&p, 8 * ((uint64_t)rows + 1), A);
	w.p2 = qs_wksp_take(&p, 8 * ((uint64_t)rows + 1), A);
	w.codes = qs_wksp_take(&p, rows, A);
	w.resv = qs_wksp_take(&p, rows, A);
	w.score = qs_wksp_take(&p, 8 * (uint64_t)cols, A);
	w.order = qs_wksp_take(&p, 4 * (uint64_t)cols, A);
	w.width = qs_wksp_take(&p, cols, A);
	return w;
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

/* k-means over sorted v[n] into c[K]; returns the SSE. */
static double kmeans(const float *v, size_t n, unsigned K, unsigned iters, const double *p1,
		     const double *p2, double *c)
{
	size_t bnd[CLAQ_MAX_K + 1];
	if (n == 0) {
		for (unsigned m = 0; m < K; m++)
			c[m] = 0;
		return 0;
	}
	for (unsigned m = 0; m < K; m++)
		c[m] = v[(size_t)(((2 * (uint64_t)m + 1) * n) / (2 * (uint64_t)K))];
	for (unsigned it = 0; it <= iters; it++) {
		bnd[0] = 0;
		for (unsigned m = 0; m + 1 < K; m++)
			bnd[m + 1] = upper_bound(v, n, 0.5 * (c[m] + c[m + 1]));
		bnd[K] = n;
		if (it == iters)
			break;
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
	double sse = 0;
	for (unsigned m = 0; m < K; m++) {
		size_t a = bnd[m], b = bnd[m + 1] > a ? bnd[m + 1] : a;
		if (b == a)
			continue;
		double s1 = p1[b] - p1[a], s2 = p2[b] - p2[a];
		double e = s2 - s1 * s1 / (double)(b - a);
		sse += e > 0 ? e : 0;
	}
	return sse;
}

/* One sort per column: marks in resv[] the k entries of largest |x|
 * (ties: lower row), and leaves the other values sorted in w->vals with
 * their prefix sums; returns their count.  The reserved values are the
 * sorted column's two ends: those below zero are all <= -t and the rest
 * of the column >= -t (t the k-th largest magnitude), so they are its a
 * smallest values, and the other k - a are its largest (x holds no NaN
 * and no -0, see load_block). */
static size_t column_values(const float *x, size_t n, size_t k, struct work *w)
{
	uint32_t *key = w->key;
	size_t a = 0;

	for (size_t i = 0; i < n; i++)
		key[i] = f2key(x[i]);
	radix_sort(key, w->tmp, n);
	memset(w->resv, 0, n);
	if (k) {
		size_t lo = 0, hi = n, taken = 0;
		float t = 0;
		for (size_t q = 0; q < k; q++) {
			float vl = key2f(key[lo]), vh = key2f(key[hi - 1]);
			if (-vl > vh) {
				t = -vl;
				lo++;
			} else {
				t = vh;
				hi--;
			}
		}
		for (size_t i = 0; i < n; i++)
			if (fabsf(x[i]) > t) {
				w->resv[i] = 1;
				taken++;
				a += x[i] < 0;
			}
		for (size_t i = 0; i < n && taken < k; i++)
			if (!w->resv[i] && fabsf(x[i]) == t) {
				w->resv[i] = 1;
				taken++;
				a += x[i] < 0;
			}
	}
	size_t m = n - k;
	float *v = w->vals;
	w->p1[0] = w->p2[0] = 0;
	for (size_t i = 0; i < m; i++) {
		v[i] = key2f(key[a + i]);
		w->p1[i + 1] = w->p1[i] + v[i];
		w->p2[i + 1] = w->p2[i] + (double)v[i] * v[i];
	}
	return m;
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

/* The column block starting at j0 (nb columns) transposed into w->blk. */
static void load_block(const float *src, size_t rows, size_t cols, size_t j0, size_t nb,
		       float *blk)
{
	for (size_t i = 0; i < rows; i++)
		for (size_t jj = 0; jj < nb; jj++) {
			float v = src[i * cols + j0 + jj];
			/* NaN as 0, -0 as +0 (column_values relies on both) */
			blk[jj * rows + i] = v == v ? v + 0.0f : 0.0f;
		}
}

static int cmp_order(const void *a, const void *b, void *arg)
{
	const double *sc = arg;
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	if (sc[x] != sc[y])
		return sc[x] > sc[y] ? -1 : 1;
	return (x > y) - (x < y);
}

static int quantize_imp(const struct qs_scheme *s, const float *imp, const float *wt,
			uint64_t rows64, uint64_t cols64, uint8_t *out, void *scratch)
{
	struct geom g;
	if (!params_ok(s))
		return -QS_EUSAGE;
	if (!geometry(s, rows64, cols64, &g) || g.total > SIZE_MAX ||
	    scratch_need(rows64, cols64) > SIZE_MAX)
		return -QS_ETOOBIG;
	if (rows64 == 0 || cols64 == 0) {
		memset(out, 0, (size_t)g.total);
		return 0;
	}
	size_t rows = (size_t)rows64, cols = (size_t)cols64, nw = rows * cols;
	const struct qs_kernels *k = qs_kernels_get();
	struct work w = carve(scratch, rows, cols);
	unsigned b = base_bits(s), iters = P(s)->iters;
	double c[CLAQ_MAX_K];

	double sum = 0;
	for (size_t i = 0; i < nw; i++) {
		float v = wt[i];
		if (v != v)
			continue;
		if (!(fabsf(v) <= 65504.0f))
			return -QS_ETOOBIG;
		sum += fabsf(v);
	}
	memset(out, 0, (size_t)g.total);

	/* 1. which columns get b + 1 bits */
	for (size_t j = 0; j < cols; j++)
		w.score[j] = 0;
	if (g.high && !imp) {
		float thr = (float)(3.0 * (sum / (double)nw));
		for (size_t i = 0; i < rows; i++)
			for (size_t j = 0; j < cols; j++)
				w.score[j] += fabsf(wt[i * cols + j]) > thr;
	} else if (g.high) {
		for (size_t j0 = 0; j0 < cols; j0 += CLAQ_BLOCK) {
			size_t nb = cols - j0 < CLAQ_BLOCK ? cols - j0 : CLAQ_BLOCK;
			load_block(wt, rows, cols, j0, nb, w.blk);
			for (size_t jj = 0; jj < nb; jj++) {
				const float *x = w.blk + jj * rows;
				size_t m = column_values(x, rows, (size_t)g.k, &w);
				double e = kmeans(w.vals, m, 1u << b, iters, w.p1, w.p2, c);
				w.score[j0 + jj] = (double)imp[j0 + jj] * e;
			}
		}
	}
	memset(w.width, (int)b, cols);
	if (g.high) {
		for (size_t j = 0; j < cols; j++)
			w.order[j] = (uint32_t)j;
		qsort_r(w.order, cols, sizeof(*w.order), cmp_order, w.score);
		for (uint64_t h = 0; h < g.high; h++) {
			w.width[w.order[h]] = (uint8_t)(b + 1);
			out[w.order[h] / 8] |= (uint8_t)(1u << (w.order[h] % 8));
		}
	}

	/* 2-4. per column: reservation, code book, codes */
	uint64_t cb = g.off_cb, ridx = 0, cbit = 0;
	for (size_t j0 = 0; j0 < cols; j0 += CLAQ_BLOCK) {
		size_t nb = cols - j0 < CLAQ_BLOCK ? cols - j0 : CLAQ_BLOCK;
		load_block(wt, rows, cols, j0, nb, w.blk);
		for (size_t jj = 0; jj < nb; jj++) {
			size_t j = j0 + jj;
			const float *x = w.blk + jj * rows;
			unsigned bj = w.width[j], K = 1u << bj;
			float c16[CLAQ_MAX_K], mid[CLAQ_MAX_K];

			size_t m = column_values(x, rows, (size_t)g.k, &w);
			for (size_t i = 0; i < rows; i++)
				if (w.resv[i]) {
					put_bits(out + g.off_idx, ridx * g.L, i, g.L);
					qs_put_le16(out + g.off_val + 2 * ridx,
						    qs_f32_to_f16(x[i]));
					ridx++;
				}
			kmeans(w.vals, m, K, iters, w.p1, w.p2, c);
			for (unsigned q = 0; q < K; q++) {
				uint16_t h = qs_f32_to_f16((float)c[q]);
				c16[q] = qs_f16_to_f32(h);
				qs_put_le16(out + cb, h);
				cb += 2;
			}
			for (unsigned q = 0; q + 1 < K; q++)
				mid[q] = 0.5f * (c16[q] + c16[q + 1]);
			k->nearest_code(x, rows, 0.0f, 1.0f, mid, K - 1, w.codes);
			for (size_t i = 0; i < rows; i++)
				if (w.resv[i])
					w.codes[i] = 0;
			k->pack_bits(w.codes, rows, bj, out + g.off_codes, cbit);
			cbit += (uint64_t)rows * bj;
		}
	}
	return 0;
}

static int claq_quantize(const struct qs_scheme *s, const float *w, uint64_t rows,
			 uint64_t cols, uint8_t *out, void *scratch)
{
	return quantize_imp(s, NULL, w, rows, cols, out, scratch);
}

static int claq_dequantize(const struct qs_scheme *s, const uint8_t *in, uint64_t rows64,
			   uint64_t cols64, float *out, void *scratch)
{
	struct geom g;
	if (!params_ok(s))
		return -QS_EUSAGE;
	if (!geometry(s, rows64, cols64, &g) || g.total > SIZE_MAX ||
	    scratch_need(rows64, cols64) > SIZE_MAX)
		return -QS_ETOOBIG;
	if (rows64 == 0 || cols64 == 0)
		return 0;
	size_t rows = (size_t)rows64, cols = (size_t)cols64;
	const struct qs_kernels *k = qs_kernels_get();
	struct work w = carve(scratch, rows, cols);
	unsigned b = base_bits(s);

	uint64_t nh = 0;
	for (size_t j = 0; j < cols; j++)
		nh += (in[j / 8] >> (j % 8)) & 1;
	if (nh != g.high)
		return -QS_EFORMAT;
	uint64_t cb = g.off_cb, cbit = 0;
	for (size_t j = 0; j < cols; j++) {
		unsigned bj = b + ((in[j / 8] >> (j % 8)) & 1);
		float c16[CLAQ_MAX_K];
		for (unsigned q = 0; q < (1u << bj); q++, cb += 2)
			c16[q] = qs_f16_to_f32(qs_get_le16(in + cb));
		k->unpack_bits(in + g.off_codes, cbit, rows, bj, w.codes);
		cbit += (uint64_t)rows * bj;
		for (size_t i = 0; i < rows; i++)
			out[i * cols + j] = c16[w.codes[i]];
	}
	uint64_t ridx = 0;
	for (size_t j = 0; j < cols; j++)
		for (uint64_t q = 0; q < g.k; q++, ridx++) {
			uint64_t i = get_bits(in + g.off_idx, ridx * g.L, g.L);
			if (i >= rows)
				return -QS_EFORMAT;
			out[i * cols + j] = qs_f16_to_f32(qs_get_le16(in + g.off_val + 2 * ridx));
		}
	return 0;
}

/* ---- per-tensor importance: prep = u64 flag, then f32[cols] ---- */

static uint64_t claq_prep_size(const struct qs_scheme *s, uint64_t cols)
{
	(void)s;
	if (cols > (UINT64_MAX - 8) / 4)
		return UINT64_MAX;
	return 8 + 4 * cols;
}

static int claq_prepare(const struct qs_scheme *s, const struct qs_tensor_stats *st,
			void *prep, struct qs_diag *diag)
{
	(void)s;
	uint8_t *p = prep;
	float *dst = (float *)(p + 8);
	uint64_t has = 0;
	if (st && st->importance) {
		for (uint64_t j = 0; j < st->cols; j++) {
			float v = st->importance[j];
			if (!(v >= 0) || !isfinite(v))
				return qs_diag_set(diag, -QS_EFORMAT,
						   "tensor '%s': importance value %" PRIu64
						   " is negative or not finite",
						   st->name ? st->name : "?", j);
			dst[j] = v;
			if (v > 0)
				has = 1;
		}
	}
	qs_put_le64(p, has);
	return 0;
}

static int claq_quantize_prep(const struct qs_scheme *s, const void *prep, const float *w,
			      uint64_t rows, uint64_t cols, uint8_t *out, void *scratch)
{
	const uint8_t *p = prep;
	const float *imp = p && qs_get_le64(p) ? (const float *)(p + 8) : NULL;
	return quantize_imp(s, imp, w, rows, cols, out, scratch);
}

const struct qs_scheme_ops qs_scheme_claq = {
	.name = "claq",
	.params = claq_param_table,
	.payload_size = claq_payload_size,
	.scratch_size = claq_scratch_size,
	.quantize = claq_quantize,
	.dequantize = claq_dequantize,
	.wants = QS_WANT_IMPORTANCE,
	.prep_size = claq_prep_size,
	.prepare = claq_prepare,
	.quantize_prep = claq_quantize_prep,
};
