/* claq.c - CLAQ (Wang et al., "CLAQ: Pushing the Limits of Low-Bit
 * Post-Training Quantization for LLMs", arXiv:2405.17233; reference code
 * fayuge/CLAQ): GPTQ's column-by-column quantization with inverse-Hessian
 * error compensation, where each column is quantized onto a k-means code
 * book fitted on its *compensated* values; outlier-guided adaptive
 * precision (more bits for the columns with most outliers) and outlier
 * reservation (the extreme values of each column kept in fp16).  The same
 * definition is in qshard(5); change both or neither.
 *
 * Parameters (canonical text "claq:bits=B.DD,reshi=A,reslo=Z,iters=I"):
 *   bits   2.00..4.00 with two decimals (default 3.12): base width b =
 *          floor(bits); H = round(C * 0.DD) columns (halves up) get b + 1
 *          bits, the paper's fractional settings (3.12: 12% of columns at
 *          4 bits; 4.00 has none);
 *   reshi  fraction of each column reserved per tail (its smallest and its
 *          largest values) in the 10% of columns with most outliers,
 *          0..0.05, at most 4 decimals (default 0.014, the paper's 1.4%);
 *   reslo  the same for the other columns (default 0.004, 0.4%);
 *   iters  k-means iterations, 1..64 (default 16; stops earlier once no
 *          centroid moves).
 *
 * Whole tensors.  A column's code book is fitted over all rows of the
 * tensor, as in the paper, so the scheme asks the plan for the whole
 * tensor as one chunk (ops.whole_tensor): the output never depends on
 * --memory, and a tensor too large for the window fails before anything is
 * read, naming the memory it needs.
 *
 * The second-order engine.  --hessian is loaded and prepared by gptq's
 * engine (second_order.h: dampening 0.01 of the mean diagonal, raised as
 * gptq does; no act-order), and this file runs GPTQ's loop on its factor
 * U (upper Cholesky factor of H^-1): columns in natural order, in blocks of
 * CLAQ_BLOCK; column j's error e_i = (x_i - q_i) / U[j][j] goes onto the
 * block's later columns at once and onto the columns after the block as
 * one sgemm, W[:, after] -= E U[block, after].  Without a Hessian entry U =
 * I: nothing is propagated and each column is quantized as it is.
 *
 * Per tensor (R rows x C cols; f32 unless said; NaN weights count as 0,
 * -0 as +0; a weight above 65504 in magnitude, so any Inf, fails with
 * -QS_ETOOBIG):
 *  1. Outlier Order: n_j = the number of rows with |w_ij| >= 13 * mean |W|
 *     (mean over the tensor, in double; the paper's criterion); columns
 *     ranked by n_j descending, ties to the lower index.  The first H get
 *     b + 1 bits; the first NH = round(C / 10) are the heavy columns.
 *  2. per column j, on its current (compensated) values x:
 *     reservation: k = round(reshi * R) (heavy) or round(reslo * R), at
 *     most R/2: the k smallest values (ties: lower row) and the k largest
 *     (ties: lower row) are kept as fp16 (nearest) with their row index;
 *     code book: 1-D k-means with K = 2^b_j centroids over the other
 *     values, sorted: initial centroid m = the value at sorted position
 *     floor((2m + 1) n / (2K)); each iteration assigns every value to the
 *     nearest centroid (a value equal to a midpoint (c_m + c_m+1)/2, in
 *     double, goes to the lower one) and moves each non-empty cluster's
 *     centroid to its mean (sums in double over the sorted values); stops
 *     after `iters` iterations or when nothing moved; no values: all 0;
 *     codes: centroids rounded to fp16 c16[0..K), mid[m] = 0.5f*(c16[m] +
 *     c16[m+1]), code = the number of mid[m] < x (kernels.h nearest_code,
 *     z = 0, inv = 1); reserved rows get code 0;
 *     compensation: q = c16[code] (reserved: their fp16), e = (x - q) /
 *     U[j][j], propagated as above.
 * Back: w' = c16[code], then the reserved values overwrite their rows.
 *
 * Payload of a tensor of R rows x C cols, H high columns, NH heavy, k_h /
 * k_l reserved per tail, NR = 2 (NH k_h + (C - NH) k_l), L = max(1,
 * ceil(log2 R)) bits per row index, all little-endian:
 *   1. ceil(C/8) bytes: bit j (LSB-first) set when column j has b+1 bits;
 *   2. ceil(C/8) bytes: bit j set when column j is heavy;
 *   3. the code books: for each column in order, 2^b_j fp16 ascending;
 *   4. NR row indices (column by column, ascending within a column) as one
 *      L-bit LSB-first bitstream, zero-padded to a byte, then the NR fp16
 *      reserved values in the same order;
 *   5. the codes column-major: column j's R codes of b_j bits, one
 *      LSB-first bitstream over all columns, zero-padded to a byte.
 * payload_size = 2 ceil(C/8) + 2((C-H) 2^b + H 2^(b+1)) + ceil(NR L / 8) +
 * 2 NR + ceil(R ((C-H) b + H (b+1)) / 8).  Bits per weight: bits + 16
 * ((1-f) 2^b + f 2^(b+1)) / R + (0.1 * 2 reshi + 0.9 * 2 reslo)(16 + L) +
 * 2/R: claq:bits=3.12 on R = 4096: 3.12 + 0.045 + 0.25 = 3.42.
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

#define CLAQ_ALIGN 64u
#define CLAQ_BLOCK 128u      /* columns whose updates are applied in place */
#define CLAQ_MAX_K 32u       /* 2^(4 + 1) */
#define CLAQ_MAX_RESERVE 500u /* 0.05 in 1e-4 */
#define CLAQ_OUTLIER_MULT 13.0 /* |w| >= 13 mean|W|: the paper's outlier */

enum { X_BITS, X_RESHI, X_RESLO, X_ITERS };

static bool params_ok(const struct qs_scheme *s)
{
	unsigned t = s->extra[X_BITS];
	return t >= 200 && t <= 400 && s->bits == t / 100 &&
	       s->extra[X_RESHI] <= CLAQ_MAX_RESERVE && s->extra[X_RESLO] <= CLAQ_MAX_RESERVE &&
	       s->extra[X_ITERS] >= 1 && s->extra[X_ITERS] <= 64;
}

/* "D" or "D.DDDD" (frac digits <= maxfrac) as an integer in units of
 * 10^-maxfrac; -1 on anything else. */
static long parse_dec(const char *v, unsigned maxfrac)
{
	long ip = 0, fp = 0;
	unsigned nf = 0;
	const char *p = v;
	if (*p < '0' || *p > '9')
		return -1;
	while (*p >= '0' && *p <= '9' && ip < 1000)
		ip = ip * 10 + (*p++ - '0');
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return -1;
		while (*p >= '0' && *p <= '9') {
			if (++nf > maxfrac)
				return -1;
			fp = fp * 10 + (*p++ - '0');
		}
	}
	if (*p || ip >= 1000)
		return -1;
	for (; nf < maxfrac; nf++)
		fp *= 10;
	long scale = 1;
	for (unsigned i = 0; i < maxfrac; i++)
		scale *= 10;
	return ip * scale + fp;
}


static int claq_arg(struct qs_scheme *s, const char *key, const char *val,
		    struct qs_diag *diag)
{
	unsigned v;
	if (strcmp(key, "bits") == 0) {
		long t = parse_dec(val, 2);
		if (t < 200 || t > 400)
			return qs_diag_set(diag, -QS_EUSAGE,
					   "claq: bits must be 2.00..4.00 with at most two "
					   "decimals (got '%s')", val);
		s->extra[X_BITS] = (unsigned)t;
		s->bits = (unsigned)t / 100;
		return 0;
	}
	if (strcmp(key, "reshi") == 0 || strcmp(key, "reslo") == 0) {
		if (qs_scheme_parse_e4(val, &v) || v > CLAQ_MAX_RESERVE)
			return qs_diag_set(diag, -QS_EUSAGE,
					   "claq: %s must be 0..0.05 with at most 4 decimals "
					   "(got '%s')", key, val);
		s->extra[key[3] == 'h' ? X_RESHI : X_RESLO] = v;
		return 0;
	}
	if (strcmp(key, "iters") == 0) {
		if (qs_scheme_parse_uint(val, &v) || v < 1 || v > 64)
			return qs_diag_set(diag, -QS_EUSAGE, "claq: iters must be 1..64 (got '%s')",
					   val);
		s->extra[X_ITERS] = v;
		return 0;
	}
	return qs_diag_set(diag, -QS_EUSAGE,
			   "claq: unknown parameter '%s' (known: bits, reshi, reslo, iters)", key);
}

static int claq_parse(struct qs_scheme *s, const char *args, struct qs_diag *diag)
{
	s->extra[X_BITS] = 312;
	s->bits = 3;
	s->extra[X_RESHI] = 140;
	s->extra[X_RESLO] = 40;
	s->extra[X_ITERS] = 16;
	s->group = 0;
	s->alpha = 0;
	int rc = qs_scheme_each_arg(s, args, claq_arg, diag);
	if (rc)
		return rc;
	char hi[16], lo[16];
	qs_scheme_fmt_e4(hi, sizeof(hi), s->extra[X_RESHI]);
	qs_scheme_fmt_e4(lo, sizeof(lo), s->extra[X_RESLO]);
	snprintf(s->text, sizeof(s->text), "claq:bits=%u.%02u,reshi=%s,reslo=%s,iters=%u",
		 s->extra[X_BITS] / 100, s->extra[X_BITS] % 100, hi, lo, s->extra[X_ITERS]);
	return 0;
}

struct geom {
	uint64_t high;    /* H: columns at b + 1 bits */
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

static bool geometry(const struct qs_scheme *s, uint64_t rows, uint64_t cols, struct geom *g)
{
	unsigned b = s->bits;
	uint64_t t, bm = cols / 8 + (cols % 8 != 0);
	if (!params_ok(s) || rows > UINT32_MAX || cols > (UINT64_MAX >> 12))
		return false;
	g->high = b == 4 ? 0 : (cols * (s->extra[X_BITS] % 100) + 50) / 100;
	g->heavy = (cols + 5) / 10;
	g->kh = per_tail(s->extra[X_RESHI], rows);
	g->kl = per_tail(s->extra[X_RESLO], rows);
	g->nres = 2 * (g->heavy * g->kh + (cols - g->heavy) * g->kl);
	g->L = 1;
	while (g->L < 32 && (1ull << g->L) < rows)
		g->L++;
	uint64_t ncb, ibits, cbits;
	g->off_heavy = bm;
	g->off_cb = 2 * bm;
	if (!qs_mul_u64(cols - g->high, 1ull << b, &ncb) ||
	    !qs_mul_u64(g->high, 2ull << b, &t) || !qs_add_u64(ncb, t, &ncb) ||
	    !qs_mul_u64(ncb, 2, &t) || !qs_add_u64(g->off_cb, t, &g->off_idx) ||
	    !qs_mul_u64(g->nres, g->L, &ibits) ||
	    !qs_add_u64(g->off_idx, ibits / 8 + (ibits % 8 != 0), &g->off_val) ||
	    !qs_mul_u64(g->nres, 2, &t) || !qs_add_u64(g->off_val, t, &g->off_codes) ||
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

/* Scratch: the compensated weights (R x C f32), the block's errors (R x
 * CLAQ_BLOCK f32), one column (f32), the sort's keys and buffer (u32),
 * sorted values (f32), prefix sums (2 x double), codes and a reserved mask
 * (u8), and per column an outlier count and an order (u32) and two flags. */
static bool scratch_need(uint64_t rows, uint64_t cols, uint64_t *need)
{
	uint64_t nw, t;
	if (!qs_mul_u64(rows, cols, &nw) || nw > UINT64_MAX / 8 ||
	    !qs_mul_u64(rows, CLAQ_BLOCK * 4, &t))
		return false;
	*need = CLAQ_ALIGN * 16 + 4 * nw + t + 16 * rows + 16 * (rows + 1) + 2 * rows +
		10 * cols;
	return true;
}

static uint64_t claq_scratch_size(const struct qs_scheme *s, uint64_t rows, uint64_t cols)
{
	uint64_t n;
	if (!params_ok(s) || rows > UINT32_MAX || cols > (UINT64_MAX >> 12) ||
	    !scratch_need(rows, cols, &n))
		return UINT64_MAX;
	return n;
}

struct work {
	float *w, *e, *x, *vals;
	uint32_t *key, *tmp;
	double *p1, *p2;
	uint8_t *codes, *resv;
	uint32_t *score, *order;
	uint8_t *width, *heavy;
};

static void *bump(uintptr_t *p, uint64_t n)
{
	uintptr_t a = (*p + CLAQ_ALIGN - 1) & ~(uintptr_t)(CLAQ_ALIGN - 1);
	*p = a + (uintptr_t)n;
	return (void *)a;
}

static struct work carve(void *scratch, size_t rows, size_t cols)
{
	uintptr_t p = (uintptr_t)scratch;
	struct work w;
	w.w = bump(&p, 4 * (uint64_t)rows * cols);
	w.e = bump(&p, 4 * (uint64_t)rows * CLAQ_BLOCK);
	w.x = bump(&p, 4 * (uint64_t)rows);
	w.vals = bump(&p, 4 * (uint64_t)rows);
	w.key = bump(&p, 4 * (uint64_t)rows);
	w.tmp = bump(&p, 4 * (uint64_t)rows);
	w.p1 = bump(&p, 8 * ((uint64_t)rows + 1));
	w.p2 = bump(&p, 8 * ((uint64_t)rows + 1));
	w.codes = bump(&p, rows);
	w.resv = bump(&p, rows);
	w.score = bump(&p, 4 * (uint64_t)cols);
	w.order = bump(&p, 4 * (uint64_t)cols);
	w.width = bump(&p, cols);
	w.heavy = bump(&p, cols);
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
		w->p2[i + 1] = w->p2[i] + (double)v[i] * v[i];
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

static int quantize_u(const struct qs_scheme *s, const float *u, const uint8_t *dead,
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
	void (*nearest)(const float *, size_t, float, float, const float *, unsigned,
			uint8_t *) = k->nearest_code ? k->nearest_code : qs_ref_nearest_code;
	struct work w = carve(scratch, R, C);
	unsigned b = s->bits, iters = s->extra[X_ITERS];
	double c[CLAQ_MAX_K];

	/* the working copy (NaN as 0, -0 as +0, dead columns 0) and mean |W| */
	double sum = 0;
	for (size_t i = 0; i < nw; i++) {
		float v = wt[i];
		v = v == v ? v + 0.0f : 0.0f;
		if (!(fabsf(v) <= 65504.0f))
			return -QS_ETOOBIG;
		sum += fabsf(v);
		w.w[i] = dead && dead[i % C] ? 0.0f : v;
	}

	/* 1. Outlier Order: high-precision and heavy columns */
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
		w.width[w.order[h]] = (uint8_t)(b + 1);
		out[w.order[h] / 8] |= (uint8_t)(1u << (w.order[h] % 8));
	}
	for (uint64_t h = 0; h < g.heavy; h++) {
		w.heavy[w.order[h]] = 1;
		out[g.off_heavy + w.order[h] / 8] |= (uint8_t)(1u << (w.order[h] % 8));
	}

	/* 2. GPTQ's loop with a code book per column */
	uint64_t cb = g.off_cb, ridx = 0, cbit = 0;
	for (size_t j0 = 0; j0 < C; j0 += CLAQ_BLOCK) {
		size_t bend = C - j0 < CLAQ_BLOCK ? C : j0 + CLAQ_BLOCK, B = bend - j0;
		for (size_t j = j0; j < bend; j++) {
			unsigned bj = w.width[j], K = 1u << bj;
			size_t kt = (size_t)(w.heavy[j] ? g.kh : g.kl);
			float c16[CLAQ_MAX_K], mid[CLAQ_MAX_K];
			for (size_t i = 0; i < R; i++) {
				float v = w.w[i * C + j];
				w.x[i] = v + 0.0f;
			}
			size_t m = column_values(w.x, R, kt, &w);
			kmeans(w.vals, m, K, iters, w.p1, w.p2, c);
			for (unsigned q = 0; q < K; q++) {
				uint16_t h = qs_f32_to_f16((float)c[q]);
				c16[q] = qs_f16_to_f32(h);
				qs_put_le16(out + cb, h);
				cb += 2;
			}
			for (unsigned q = 0; q + 1 < K; q++)
				mid[q] = 0.5f * (c16[q] + c16[q + 1]);
			nearest(w.x, R, 0.0f, 1.0f, mid, K - 1, w.codes);
			float d = u ? u[j * C + j] : 1.0f;
			for (size_t i = 0; i < R; i++) {
				float q = c16[w.codes[i]];
				if (w.resv[i]) {
					uint16_t h = qs_f32_to_f16(w.x[i]);
					if ((h & 0x7c00u) == 0x7c00u)
						return -QS_ETOOBIG;
					put_bits(out + g.off_idx, ridx * g.L, i, g.L);
					qs_put_le16(out + g.off_val + 2 * ridx, h);
					ridx++;
					w.codes[i] = 0;
					q = qs_f16_to_f32(h);
				}
				float e = (w.x[i] - q) / d;
				w.e[i * CLAQ_BLOCK + (j - j0)] = isfinite(e) ? e : 0.0f;
			}
			k->pack_bits(w.codes, R, bj, out + g.off_codes, cbit);
			cbit += (uint64_t)R * bj;
			if (!u)
				continue;
			const float *uj = u + j * C;
			for (size_t i = 0; i < R; i++) {
				float e = w.e[i * CLAQ_BLOCK + (j - j0)];
				float *wr = w.w + i * C;
				for (size_t kk = j + 1; kk < bend; kk++)
					wr[kk] -= e * uj[kk];
			}
		}
		if (u && bend < C)
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)R,
				    (blasint)(C - bend), (blasint)B, -1.0f, w.e, (blasint)CLAQ_BLOCK,
				    u + j0 * C + bend, (blasint)C, 1.0f, w.w + bend, (blasint)C);
	}
	return 0;
}

static int claq_quantize(const struct qs_scheme *s, const float *w, uint64_t rows,
			 uint64_t cols, uint8_t *out, void *scratch)
{
	return quantize_u(s, NULL, NULL, w, rows, cols, out, scratch);
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
	struct work w = carve(scratch, R, C);
	unsigned b = s->bits;

	uint64_t nh = 0, nv = 0;
	for (size_t j = 0; j < C; j++) {
		nh += (in[j / 8] >> (j % 8)) & 1;
		nv += (in[g.off_heavy + j / 8] >> (j % 8)) & 1;
	}
	if (nh != g.high || nv != g.heavy)
		return -QS_EFORMAT;
	uint64_t cb = g.off_cb, cbit = 0;
	for (size_t j = 0; j < C; j++) {
		unsigned bj = b + ((in[j / 8] >> (j % 8)) & 1);
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

/* ---- per-tensor state: gptq's prepared factor (second_order.h) ---- */

static void so_cfg(struct qs_so_cfg *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->bits = 4;
	cfg->group = 128;
	cfg->damp_e4 = 100;  /* 0.01, gptq's default */
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
	(void)s;
	so_cfg(&cfg);
	return qs_so_prepare(&cfg, st, prep, "claq", diag);
}

static int claq_quantize_prep(const struct qs_scheme *s, const void *prep, const float *w,
			      uint64_t rows, uint64_t cols, uint8_t *out, void *scratch)
{
	const float *u = NULL;
	const uint8_t *dead = NULL;
	if (prep) {
		int rc = qs_so_prep_factor(prep, cols, &u, &dead);
		if (rc)
			return rc;
	}
	return quantize_u(s, u, dead, w, rows, cols, out, scratch);
}

const struct qs_scheme_ops qs_scheme_claq = {
	.name = "claq",
	.parse = claq_parse,
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
