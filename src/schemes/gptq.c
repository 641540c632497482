/* gptq.c - GPTQ (Frantar et al., "GPTQ: Accurate Post-Training Quantization
 * for Generative Pre-trained Transformers", arXiv:2210.17323) on the rtn
 * grid, and the second-order engine athena.c shares (second_order.h).
 *
 * Parameters (canonical text "gptq:bits=B,group=G,damp=D,actorder=A,
 * alpha=F"):
 *   bits 2, 3, 4, 8 (default 4); group 32, 64, 128, 256 (default 128);
 *   damp     dampening added to diag(H), a fraction of its mean, decimal in
 *            (0, 1] with at most 4 decimals (default 0.01);
 *   actorder 1: columns are quantized in descending diag(H) order (default
 *            1: on bench-gptq's layer with hot channels it is +1.44 dB at
 *            3 bits, which the +3 dB target over rtn needs);
 *   alpha    fraction of each row kept out of the grid as exact fp16
 *            outliers, decimal in [0, 0.25] (default 0: none).
 *
 * The problem.  For a row w of W and calibration inputs X, GPTQ minimizes
 * the output error |(w - q) X^T|^2 = (w - q) H (w - q)^T, H = X^T X.  All
 * rows share H, so a row-chunk is as good as the whole tensor: chunks stay
 * independent and the memory window holds.
 *
 * Preparation (once per tensor, prep_size(cols) = 4*cols^2 + 9*cols bytes
 * plus a few hundred of header and alignment): dead columns (H[i,i] <= 0:
 * the input never fires) get H[i,i] = 1 and their weights are set to 0
 * before quantization, as GPTQ does, so they cost nothing and never
 * disturb the factorization; then damp * mean diag(H) is added to the
 * diagonal; with actorder the columns are permuted (descending H[i,i],
 * ties by index); then H^-1 = U^T U with U upper
 * triangular via LAPACK (spotrf, spotri, spotrf).  A Hessian that is still
 * not positive definite is retried with ten times the dampening, up to
 * five times, then refused with a message naming the tensor.
 *
 * Quantization of a chunk: columns in (permuted) order.  Column j: q =
 * the grid value of w[j]; err = (w[j] - q) / U[j,j]; every later column
 * gets w[k] -= err * U[j,k].  Those updates are batched (GPTQ's lazy
 * batch update, applied recursively): the columns are split in halves on
 * group boundaries down to leaves of 32; a leaf is quantized column by
 * column with short in-leaf updates, and when a left half is done its
 * errors reach the right half as one cblas_sgemm, W[:, right] -=
 * E[:, left] U[left, right].  The same result up to rounding, but all but
 * rows * cols * 31 of the rows * cols * (cols - 1) multiply-adds are
 * sgemm, the largest ones rows x cols/2 x cols/2.  The errors take the
 * place of the quantized weights in the working copy, so no copies.
 *
 * The grid is rtn's (rtn.c): asymmetric min-max fp16 scale and min per
 * group of `group` columns in natural column order.  Without actorder a
 * group's grid is fixed from the error-compensated weights when its first
 * column is reached (every group is one node of the recursion, entered
 * only once all earlier columns reached it, so those weights are up to
 * date).  With actorder a group's columns are visited out of order, so its
 * grid is fixed up front from the original weights ("static groups");
 * codes are still chosen on the compensated weights.  Either way the
 * payload is exactly rtn's layout and rtn's dequantize reads it.
 *
 * Determinism: the block updates run in OpenBLAS (sgemm), whose
 * kernels differ between CPU types (FMA or not, blocking), so with a
 * Hessian the payload is reproducible on one machine and OpenBLAS build,
 * for any thread count, but may differ in the last bits across CPU types.
 * A multi-threaded sgemm splits its sums by OpenBLAS's own thread count
 * (OPENBLAS_NUM_THREADS, else the CPU count), which changes the rounding;
 * so BLAS is pinned to one thread per calling worker before its first use
 * (pin_blas_threads), and -T is the only parallelism.
 *
 * Without a Hessian (the file has no entry for the tensor, or quantize is
 * called without prepare) nothing is propagated and the output is rtn's,
 * bit for bit; so is H = I and any diagonal H.
 *
 * Outliers (alpha > 0, after SpQR, Dettmers et al., arXiv:2306.03078):
 * each row keeps k = round(alpha * cols) weights (halves up) off the grid,
 * the k of largest OBS saliency w^2 / [H^-1]_ii on the original weights
 * (w^2 without a Hessian; ties to the lower column).  They are left out of
 * their group's min/max, stored as fp16 of their compensated value, and
 * the rounding error of that fp16 is propagated like any other (it is
 * tiny; the grid error of an outlier is never incurred).  Their codes in
 * the rtn part are what the grid would give and are ignored on reading.
 *
 * Payload of R rows x C cols, G = ceil(C / group):
 *   1-3. exactly rtn's payload (R*G fp16 scales, R*G fp16 mins, R*C codes
 *        as one LSB-first bitstream);
 *   4.   R*k column indices, each row's ascending: u16 when C <= 65536,
 *        else u32;
 *   5.   R*k fp16 outlier values, in the same order.
 * bpw = bits + 32/group + alpha*(16 + 16 or 32).  E.g. bits=3, group=128,
 * alpha=0.01: 3.25 + 0.32 = 3.57.
 */
#include <cblas.h>
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "scheme.h"
#include "second_order.h"
#include "util.h"

/* LAPACK through the Fortran ABI (Debian's OpenBLAS ships no lapacke.h);
 * the trailing size_t is gfortran's hidden length of the string argument. */
extern void spotrf_(const char *uplo, const blasint *n, float *a, const blasint *lda,
		    blasint *info, size_t uplo_len);
extern void spotri_(const char *uplo, const blasint *n, float *a, const blasint *lda,
		    blasint *info, size_t uplo_len);

static pthread_once_t blas_pinned = PTHREAD_ONCE_INIT;

static void blas_one_thread(void)
{
	openblas_set_num_threads(1);
}

/* Called by every entry point that reaches BLAS or LAPACK. */
static void pin_blas_threads(void)
{
	pthread_once(&blas_pinned, blas_one_thread);
}

#define SO_ALIGN 64u
#define LEAF_COLS 32 /* gptq: columns quantized one by one between sgemms */
#define TILE_ROWS 64
#define PREP_MAGIC 0x50525351u
#define DAMP_RETRIES 5

static bool bits_ok(unsigned b)
{
	return b == 2 || b == 3 || b == 4 || b == 8;
}

static bool group_ok(unsigned g)
{
	return g == 32 || g == 64 || g == 128 || g == 256;
}

/* ------------------------------------------------------------ parameters */

void qs_so_cfg_of(const struct qs_scheme *s, bool athena, struct qs_so_cfg *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->bits = s->bits;
	cfg->group = s->group;
	cfg->damp_e4 = s->extra[QS_SO_DAMP];
	cfg->athena = athena;
	if (athena) {
		cfg->search = s->extra[QS_SO_SEARCH];
	} else {
		cfg->actorder = s->extra[QS_SO_ACTORDER] != 0;
		cfg->alpha_e4 = s->extra[QS_SO_ALPHA];
	}
}

bool qs_so_cfg_ok(const struct qs_so_cfg *cfg)
{
	return bits_ok(cfg->bits) && group_ok(cfg->group) && cfg->damp_e4 >= 1 &&
	       cfg->damp_e4 <= 10000 && cfg->alpha_e4 <= 2500 && cfg->search <= 16 &&
	       !(cfg->athena && (cfg->actorder || cfg->alpha_e4));
}

/* ----------------------------------------------------------------- sizes */

static uint64_t align_up(uint64_t v)
{
	return (v + SO_ALIGN - 1) / SO_ALIGN * SO_ALIGN;
}

static void *align_ptr(void *p)
{
	return (void *)(((uintptr_t)p + SO_ALIGN - 1) & ~(uintptr_t)(SO_ALIGN - 1));
}

static uint64_t groups_per_row(const struct qs_so_cfg *cfg, uint64_t cols)
{
	return cols / cfg->group + (cols % cfg->group != 0);
}

uint64_t qs_so_outliers_per_row(const struct qs_so_cfg *cfg, uint64_t cols)
{
	uint64_t t;
	if (!qs_mul_u64(cols, cfg->alpha_e4, &t) || t > UINT64_MAX - 5000)
		return UINT64_MAX;
	return (t + 5000) / 10000;
}

static unsigned idx_width(uint64_t cols)
{
	return cols <= 65536 ? 2 : 4;
}

static struct qs_scheme rtn_of(const struct qs_so_cfg *cfg)
{
	struct qs_scheme r;
	memset(&r, 0, sizeof(r));
	r.ops = &qs_scheme_rtn;
	r.bits = cfg->bits;
	r.group = cfg->group;
	return r;
}

uint64_t qs_so_payload_size(const struct qs_so_cfg *cfg, uint64_t rows, uint64_t cols)
{
	if (!qs_so_cfg_ok(cfg))
		return UINT64_MAX;
	struct qs_scheme r = rtn_of(cfg);
	uint64_t base = qs_scheme_rtn.payload_size(&r, rows, cols), k, n, side, total;
	if (base == UINT64_MAX)
		return UINT64_MAX;
	k = qs_so_outliers_per_row(cfg, cols);
	if (k == UINT64_MAX || !qs_mul_u64(rows, k, &n) ||
	    !qs_mul_u64(n, idx_width(cols) + 2, &side) || !qs_add_u64(base, side, &total))
		return UINT64_MAX;
	return total;
}

/* Per-tensor state: header, U (cols^2 f32, row-major upper), perm (cols
 * u32: position -> natural column), diag(H^-1) (cols f32, natural order),
 * dead flags (cols u8), each 64-aligned, plus slack to align the caller's
 * pointer. */
struct prep_hdr {
	uint32_t magic;
	uint32_t identity;  /* no Hessian: rtn */
	uint64_t cols;
	float damp_used;    /* the dampening that made H positive definite */
};

struct prep_view {
	struct prep_hdr *hdr;
	float *u;
	uint32_t *perm;
	float *hinvd;
	uint8_t *dead;
};

uint64_t qs_so_prep_size(uint64_t cols)
{
	uint64_t sq, u, total;
	if (cols > UINT32_MAX || !qs_mul_u64(cols, cols, &sq) || !qs_mul_u64(sq, 4, &u) ||
	    u > UINT64_MAX / 2)
		return UINT64_MAX;
	total = SO_ALIGN + align_up(sizeof(struct prep_hdr)) + align_up(u) +
		2 * align_up(4 * cols) + align_up(cols);
	return total;
}

static struct prep_view prep_carve(const void *prep, uint64_t cols)
{
	struct prep_view v;
	uint8_t *p = align_ptr((void *)(uintptr_t)prep);
	v.hdr = (struct prep_hdr *)p;
	p += align_up(sizeof(struct prep_hdr));
	v.u = (float *)p;
	p += align_up(4 * cols * cols);
	v.perm = (uint32_t *)p;
	p += align_up(4 * cols);
	v.hinvd = (float *)p;
	p += align_up(4 * cols);
	v.dead = p;
	return v;
}

/* Chunk scratch: the working copy of the weights (permuted; a quantized
 * column's slot holds its scaled error), codes (athena: natural order;
 * gptq: leaf-major, gathered per row for packing), fp16 scales and mins
 * (and as floats), outlier flags, indices and values, and small per-group
 * buffers; at least what rtn's dequantize needs. */
struct chunk_scratch {
	float *w;
	uint8_t *codes;
	uint16_t *scale, *min;
	float *sf, *mf;             /* the same as floats, for gptq's leaves */
	uint8_t *omask;
	uint32_t *oidx;
	uint16_t *oval;
	float *heap_s;
	uint32_t *heap_i;
	float *gtmp, *cand, *cerr, *berr;
	uint8_t *gcodes, *ccode, *bcode;
	uint8_t *rowcodes;          /* one row's codes in natural order */
};

static bool scratch_layout(const struct qs_so_cfg *cfg, uint64_t rows, uint64_t cols,
			   void *base, struct chunk_scratch *cs, uint64_t *size)
{
	uint64_t nw, nc, ng, k, nk, g = cfg->group;
	uint64_t off = SO_ALIGN;
	uint8_t *p = base ? align_ptr(base) : NULL;

	if (!qs_mul_u64(rows, cols, &nw) || nw > UINT64_MAX / 16 ||
	    !qs_mul_u64(rows, groups_per_row(cfg, cols), &ng) || ng > UINT64_MAX / 16)
		return false;
	k = qs_so_outliers_per_row(cfg, cols);
	if (k == UINT64_MAX || !qs_mul_u64(rows, k, &nk) || nk > UINT64_MAX / 16)
		return false;
#define TAKE(field, type, count)                                                  \
	do {                                                                        \
		if (cs)                                                             \
			cs->field = (type *)(void *)(p + (off - SO_ALIGN));           \
		off += align_up((uint64_t)(count) * sizeof(type));                  \
	} while (0)
	TAKE(w, float, nw);
	/* gptq's leaves write codes leaf-major (see leaf_gptq), ceil(cols /
	 * LEAF_COLS) * LEAF_COLS per row */
	if (!qs_mul_u64(rows, cols + LEAF_COLS - 1, &nc) || nc > UINT64_MAX / 16)
		return false;
	TAKE(codes, uint8_t, nc);
	TAKE(scale, uint16_t, ng);
	TAKE(min, uint16_t, ng);
	TAKE(sf, float, ng);
	TAKE(mf, float, ng);
	TAKE(omask, uint8_t, k ? nw : 0);
	TAKE(oidx, uint32_t, nk);
	TAKE(oval, uint16_t, nk);
	TAKE(heap_s, float, k);
	TAKE(heap_i, uint32_t, k);
	TAKE(gtmp, float, g);
	TAKE(cand, float, g);
	TAKE(cerr, float, g);
	TAKE(berr, float, g);
	TAKE(gcodes, uint8_t, g);
	TAKE(ccode, uint8_t, g);
	TAKE(bcode, uint8_t, g);
	TAKE(rowcodes, uint8_t, cols);
#undef TAKE
	struct qs_scheme r = rtn_of(cfg);
	uint64_t rs = qs_scheme_rtn.scratch_size(&r, rows, cols);
	if (rs == UINT64_MAX)
		return false;
	*size = off > rs ? off : rs;
	return true;
}

uint64_t qs_so_scratch_size(const struct qs_so_cfg *cfg, uint64_t rows, uint64_t cols)
{
	uint64_t size;
	if (!qs_so_cfg_ok(cfg) || !scratch_layout(cfg, rows, cols, NULL, NULL, &size))
		return UINT64_MAX;
	return size;
}

/* ----------------------------------------------------------- preparation */

/* Descending key, ties by ascending index: bottom-up merge sort of perm[]
 * with tmp[] (no allocation; qsort has no context argument). */
static bool before(const float *key, uint32_t a, uint32_t b)
{
	return key[a] > key[b] || (key[a] == key[b] && a < b);
}

static void sort_perm(uint32_t *perm, uint32_t *tmp, const float *key, size_t n)
{
	uint32_t *src = perm, *dst = tmp;
	for (size_t width = 1; width < n; width *= 2) {
		for (size_t lo = 0; lo < n; lo += 2 * width) {
			size_t mid = lo + width < n ? lo + width : n;
			size_t hi = lo + 2 * width < n ? lo + 2 * width : n;
			size_t i = lo, j = mid, o = lo;
			while (i < mid && j < hi)
				dst[o++] = before(key, src[j], src[i]) ? src[j++] : src[i++];
			while (i < mid)
				dst[o++] = src[i++];
			while (j < hi)
				dst[o++] = src[j++];
		}
		uint32_t *t = src;
		src = dst;
		dst = t;
	}
	if (src != perm)
		memcpy(perm, src, n * sizeof(*perm));
}

/* A = the permuted, dampened H with dead rows/columns cleared. */
static void fill_h(float *a, const float *h, const struct prep_view *v, size_t c, float damp)
{
	for (size_t i = 0; i < c; i++) {
		uint32_t pi = v->perm[i];
		float *row = a + i * c;
		if (v->dead[pi]) {
			memset(row, 0, c * sizeof(*row));
			row[i] = 1.0f + damp;
			continue;
		}
		const float *src = h + (size_t)pi * c;
		for (size_t j = 0; j < c; j++)
			row[j] = v->dead[v->perm[j]] ? 0.0f : src[v->perm[j]];
		row[i] += damp;
	}
}

int qs_so_prepare(const struct qs_so_cfg *cfg, const struct qs_tensor_stats *stats,
		  void *prep, const char *scheme, struct qs_diag *diag)
{
	uint64_t cols = stats->cols;
	const char *name = stats->name ? stats->name : "?";

	pin_blas_threads();
	if (!qs_so_cfg_ok(cfg))
		return qs_diag_set(diag, -QS_EUSAGE, "%s: invalid parameters", scheme);
	if (qs_so_prep_size(cols) == UINT64_MAX || cols > (uint64_t)INT32_MAX ||
	    cols * cols > SIZE_MAX / 4)
		return qs_diag_set(diag, -QS_ETOOBIG, "%s: tensor '%s': %llu columns is too many",
				   scheme, name, (unsigned long long)cols);

	struct prep_view v = prep_carve(prep, cols);
	size_t c = (size_t)cols;
	memset(v.hdr, 0, sizeof(*v.hdr));
	v.hdr->magic = PREP_MAGIC;
	v.hdr->cols = cols;
	for (size_t i = 0; i < c; i++) {
		v.perm[i] = (uint32_t)i;
		v.hinvd[i] = 1.0f;
		v.dead[i] = 0;
	}
	const float *h = stats->hessian;
	if (!h || c == 0) {
		v.hdr->identity = 1;
		return 0;
	}

	double dsum = 0;
	for (size_t i = 0; i < c; i++) {
		const float *row = h + i * c;
		for (size_t j = 0; j < c; j++)
			if (!isfinite(row[j]))
				return qs_diag_set(diag, -QS_ENONFINITE,
						   "%s: tensor '%s': Hessian holds NaN or Inf at [%zu, %zu]",
						   scheme, name, i, j);
		v.dead[i] = !(row[i] > 0.0f);
		dsum += v.dead[i] ? 1.0 : (double)row[i];
	}
	if (cfg->actorder) {
		/* keys in hinvd, merge buffer in the U area (both free yet) */
		for (size_t i = 0; i < c; i++)
			v.hinvd[i] = v.dead[i] ? -1.0f : h[i * c + i];
		sort_perm(v.perm, (uint32_t *)(void *)v.u, v.hinvd, c);
	}

	double base = (double)cfg->damp_e4 / 1e4 * (dsum / (double)c);
	blasint n = (blasint)c, info = 0;
	double mult = 1.0;
	int attempt;
	for (attempt = 0; attempt <= DAMP_RETRIES; attempt++, mult *= 10.0) {
		float damp = (float)(base * mult);
		fill_h(v.u, h, &v, c, damp);
		/* row-major upper == column-major lower ("L") */
		spotrf_("L", &n, v.u, &n, &info, 1);
		if (info != 0)
			continue;
		spotri_("L", &n, v.u, &n, &info, 1);
		if (info != 0)
			continue;
		for (size_t i = 0; i < c; i++)
			v.hinvd[v.perm[i]] = v.u[i * c + i];
		spotrf_("L", &n, v.u, &n, &info, 1);
		if (info != 0)
			continue;
		bool ok = true;
		for (size_t i = 0; i < c && ok; i++)
			ok = v.u[i * c + i] > 0.0f && isfinite(v.u[i * c + i]) &&
			     isfinite(v.hinvd[i]) && v.hinvd[i] > 0.0f;
		if (!ok)
			continue;
		v.hdr->damp_used = damp;
		break;
	}
	if (attempt > DAMP_RETRIES) {
		char d[16];
		qs_scheme_fmt_e4(d, sizeof(d), cfg->damp_e4);
		return qs_diag_set(diag, -QS_EFORMAT,
				   "%s: tensor '%s': Hessian is not positive definite, even "
				   "with damp=%s raised %d times tenfold",
				   scheme, name, d, DAMP_RETRIES);
	}
	/* LAPACK left the other triangle alone: clear it so U is exact */
	for (size_t i = 1; i < c; i++)
		memset(v.u + i * c, 0, i * sizeof(float));
	return 0;
}

/* For schemes that run their own column loop on the shared factor (claq). */
int qs_so_prep_factor(const void *prep, uint64_t cols, const float **u, const uint8_t **dead)
{
	struct prep_view v = prep_carve(prep, cols);
	if (v.hdr->magic != PREP_MAGIC || v.hdr->cols != cols)
		return -QS_EUSAGE;
	for (uint64_t i = 0; i < cols; i++)
		if (v.perm[i] != i)
			return -QS_EUSAGE;  /* prepared with actorder */
	*u = v.hdr->identity ? NULL : v.u;
	*dead = v.dead;
	return 0;
}

/* ---------------------------------------------------------- quantization */

static inline uint8_t grid_code(float w, float minf, float scalef, float qmaxf, bool zero)
{
	if (zero)
		return 0;
	/* rtn's definition (ref.c), so that H = I reproduces rtn's codes */
	float d = w - minf;
	float q = d / scalef;
	q = q > 0.0f ? q : 0.0f;
	q = q < qmaxf ? q : qmaxf;
	float r = (q + 0x1p23f) - 0x1p23f;
	return (uint8_t)(int32_t)r;
}

static inline float grid_value(uint8_t code, float minf, float scalef)
{
	float t = (float)code * scalef;
	return minf + t;
}

/* The rtn grid of the n weights src[] leaving out those flagged in mask
 * (NULL: none): they are replaced by a kept weight so min/max ignore
 * them, then rtn's own kernel fixes scale and min. */
static int group_grid(const struct qs_kernels *k, const struct qs_so_cfg *cfg,
		      const float *src, const uint8_t *mask, const uint8_t *dead, size_t n,
		      struct chunk_scratch *cs, uint16_t *scale, uint16_t *min)
{
	const float *vals = src;
	if (mask || dead) {
		float fill = 0.0f;
		bool found = false;
		for (size_t i = 0; i < n; i++) {
			float x = dead && dead[i] ? 0.0f : src[i];
			cs->gtmp[i] = x;
			if (!found && !(mask && mask[i])) {
				fill = x;
				found = true;
			}
		}
		if (mask)
			for (size_t i = 0; i < n; i++)
				if (mask[i])
					cs->gtmp[i] = fill;
		vals = cs->gtmp;
	}
	if (k->rtn_quantize_row(vals, n, cfg->group, cfg->bits, scale, min, cs->gcodes))
		return -QS_ETOOBIG;
	return 0;
}

/* Per row, the k weights of largest saliency (w^2 / [H^-1]_ii; dead
 * columns are 0), ascending column indices into idx[k], flags in mask[]. */
static void pick_outliers(const float *w, size_t c, size_t k, const struct prep_view *v,
			  bool ident, struct chunk_scratch *cs, uint32_t *idx, uint8_t *mask)
{
	float *hs = cs->heap_s;
	uint32_t *hi = cs->heap_i;
	size_t n = 0;
	/* min-heap on (saliency, then higher index is smaller) */
#define LESS(a, b) (hs[a] < hs[b] || (hs[a] == hs[b] && hi[a] > hi[b]))
	for (size_t j = 0; j < c; j++) {
		float x = ident || !v->dead[j] ? w[j] : 0.0f;
		float sal = x * x / (ident ? 1.0f : v->hinvd[j]);
		if (!(sal >= 0.0f))
			sal = 0.0f;  /* NaN */
		if (n < k) {
			size_t i = n++;
			hs[i] = sal;
			hi[i] = (uint32_t)j;
			while (i > 0 && LESS(i, (i - 1) / 2)) {
				size_t p = (i - 1) / 2;
				float ts = hs[p];
				uint32_t ti = hi[p];
				hs[p] = hs[i], hi[p] = hi[i];
				hs[i] = ts, hi[i] = ti;
				i = p;
			}
			continue;
		}
		/* strictly larger replaces the root: ties keep the lower column */
		if (!(sal > hs[0]))
			continue;
		hs[0] = sal;
		hi[0] = (uint32_t)j;
		for (size_t i = 0;;) {
			size_t l = 2 * i + 1, r = l + 1, m = i;
			if (l < n && LESS(l, m))
				m = l;
			if (r < n && LESS(r, m))
				m = r;
			if (m == i)
				break;
			float ts = hs[m];
			uint32_t ti = hi[m];
			hs[m] = hs[i], hi[m] = hi[i];
			hs[i] = ts, hi[i] = ti;
			i = m;
		}
	}
#undef LESS
	for (size_t i = 0; i < n; i++)
		mask[hi[i]] = 1;
	size_t o = 0;
	for (size_t j = 0; j < c && o < n; j++)
		if (mask[j])
			idx[o++] = (uint32_t)j;
}

static size_t find_idx(const uint32_t *idx, size_t k, uint32_t col)
{
	size_t lo = 0, hi = k;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (idx[mid] < col)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* y -= a*x; restrict lets the compiler vectorize it */
static void sub_scaled(float *restrict y, const float *restrict x, float a, size_t n)
{
	for (size_t i = 0; i < n; i++)
		y[i] -= a * x[i];
}

/* athena: one row's block (= one group) of n columns starting at b0:
 * tries the full range and `search` clipped ones, running the sequential
 * second-order pass for each on a copy, and keeps the grid of least block
 * loss sum(err^2) (the OBS loss of the block given the later columns are
 * re-optimized: (w-q) [(H^-1)_BB]^-1 (w-q)^T for the remaining problem). */
static int athena_block(const struct qs_kernels *k, const struct qs_so_cfg *cfg,
			const float *u, size_t c, bool ident, float *wr, size_t b0, size_t n,
			struct chunk_scratch *cs, uint8_t *codes, uint16_t *scale,
			uint16_t *min, float *err)
{
	float qmaxf = (float)((1u << cfg->bits) - 1u);
	float mn = INFINITY, mx = -INFINITY;
	for (size_t j = 0; j < n; j++) {
		mn = wr[b0 + j] < mn ? wr[b0 + j] : mn;
		mx = wr[b0 + j] > mx ? wr[b0 + j] : mx;
	}
	double best = INFINITY;
	bool have = false;
	for (unsigned t = 0; t <= cfg->search; t++) {
		uint16_t s16, m16;
		if (t == 0) {
			int rc = group_grid(k, cfg, wr + b0, NULL, NULL, n, cs, &s16, &m16);
			if (rc)
				return rc;
		} else {
			if (!(mn <= mx))
				break;
			float f = 1.0f - 0.5f * (float)t / (float)cfg->search;
			float pair[2] = { mn * f, mx * f };
			uint8_t pc[2];
			if (k->rtn_quantize_row(pair, 2, cfg->group, cfg->bits, &s16, &m16, pc))
				continue;
		}
		float scalef = qs_f16_to_f32(s16), minf = qs_f16_to_f32(m16);
		bool zero = s16 == 0;
		double loss = 0;
		memcpy(cs->cand, wr + b0, n * sizeof(float));
		for (size_t j = 0; j < n; j++) {
			float x = cs->cand[j];
			uint8_t code = grid_code(x, minf, scalef, qmaxf, zero);
			float q = grid_value(code, minf, scalef);
			float e = ident ? x - q : (x - q) / u[(b0 + j) * c + b0 + j];
			if (!isfinite(e))
				e = 0.0f;
			cs->ccode[j] = code;
			cs->cerr[j] = e;
			loss += (double)e * e;
			if (loss >= best)
				break;
			if (!ident)
				sub_scaled(cs->cand + j + 1, u + (b0 + j) * c + b0 + j + 1, e,
					   n - j - 1);
		}
		if (!have || loss < best) {
			have = true;
			best = loss;
			memcpy(cs->bcode, cs->ccode, n);
			memcpy(cs->berr, cs->cerr, n * sizeof(float));
			*scale = s16;
			*min = m16;
		}
	}
	memcpy(codes + b0, cs->bcode, n);
	if (err)
		memcpy(err, cs->berr, n * sizeof(float));
	return 0;
}

static void grid_floats(struct chunk_scratch *cs, size_t i)
{
	cs->sf[i] = qs_f16_to_f32(cs->scale[i]);
	cs->mf[i] = qs_f16_to_f32(cs->min[i]);
}

/* What the recursive pass over a chunk shares. */
struct so_run {
	const struct qs_kernels *k;
	const struct qs_so_cfg *cfg;
	const struct prep_view *v;
	const float *u;             /* NULL: no Hessian, nothing propagated */
	struct chunk_scratch *cs;
	size_t R, c, ng, kout;
	float qmaxf;
};


/* gptq, columns [a, b) (at most LEAF_COLS) of every row, TILE_ROWS rows
 * at a time transposed into a small buffer, so that quantizing a column
 * and the in-leaf updates are loops over rows with unit stride and a
 * fixed count (the compiler vectorizes them at -O2; the arithmetic per
 * element is the same as scalar, so the result does not depend on it).
 * A quantized column's slot in cs->w receives its error (the weight is
 * no longer needed), so the errors are already the left operand of the
 * sgemm that pushes them on. */
static int leaf_gptq(const struct so_run *x, size_t a, size_t b)
{
	const struct qs_so_cfg *cfg = x->cfg;
	const struct chunk_scratch *cs = x->cs;
	const float *u = x->u;
	const float qmaxf = x->qmaxf;
	size_t c = x->c, g = cfg->group, kout = x->kout, L = b - a;
	float t[LEAF_COLS][TILE_ROWS], sc[TILE_ROWS], mn[TILE_ROWS], nz[TILE_ROWS];
	float cf[TILE_ROWS], e[TILE_ROWS];
	uint8_t cb[LEAF_COLS][TILE_ROWS];
	/* Codes go leaf-major, [a / LEAF_COLS][row][column - a] in
	 * (permuted) position order, so a leaf writes them in one stream
	 * instead of a few bytes on every row's page; leaves start at
	 * multiples of LEAF_COLS (groups do, and are split in LEAF_COLS). */
	size_t lm = a / LEAF_COLS * x->R * LEAF_COLS;

	for (size_t r0 = 0; r0 < x->R; r0 += TILE_ROWS) {
		size_t nr = x->R - r0 < TILE_ROWS ? x->R - r0 : TILE_ROWS;
		/* row by row: the chunk is touched along its rows only */
		for (size_t rr = 0; rr < TILE_ROWS; rr++)
			for (size_t jj = 0; jj < L; jj++)
				t[jj][rr] = rr < nr ? cs->w[(r0 + rr) * c + a + jj] : 0.0f;
		size_t last_gi = SIZE_MAX;
		for (size_t jj = 0; jj < L; jj++) {
			size_t j = a + jj, nat = u ? x->v->perm[j] : j, gi = nat / g;
			if (gi != last_gi) {
				last_gi = gi;
				for (size_t rr = 0; rr < TILE_ROWS; rr++) {
					size_t i = (r0 + rr) * x->ng + gi;
					bool in = rr < nr;
					sc[rr] = in ? cs->sf[i] : 1.0f;
					mn[rr] = in ? cs->mf[i] : 0.0f;
					nz[rr] = in && cs->scale[i] != 0 ? 1.0f : 0.0f;
				}
			}
			float d = u ? u[j * c + j] : 1.0f;
			/* grid_code() and grid_value() without branches (q is
			 * finite once clamped, so q * nz is q or the zero grid's 0) */
			for (size_t rr = 0; rr < TILE_ROWS; rr++) {
				float xv = t[jj][rr];
				float q = (xv - mn[rr]) / sc[rr];
				q = q > 0.0f ? q : 0.0f;
				q = q < qmaxf ? q : qmaxf;
				q = (q + 0x1p23f) - 0x1p23f;
				q = q * nz[rr];
				cf[rr] = q;
				float ev = (xv - (mn[rr] + q * sc[rr])) / d;
				e[rr] = fabsf(ev) <= FLT_MAX ? ev : 0.0f;
			}
			for (size_t rr = 0; rr < TILE_ROWS; rr++)
				cb[jj][rr] = (uint8_t)(int32_t)cf[rr];
			for (size_t rr = 0; kout && rr < nr; rr++) {
				if (!cs->omask[(r0 + rr) * c + nat])
					continue;
				float xv = t[jj][rr];
				uint16_t h = qs_f32_to_f16(xv);
				if ((h & 0x7c00u) == 0x7c00u && xv == xv)
					return -QS_ETOOBIG;
				size_t pos = find_idx(cs->oidx + (r0 + rr) * kout, kout, (uint32_t)nat);
				cs->oval[(r0 + rr) * kout + pos] = h;
				float ev = (xv - qs_f16_to_f32(h)) / d;
				e[rr] = isfinite(ev) ? ev : 0.0f;
			}
			for (size_t rr = 0; rr < TILE_ROWS; rr++)
				t[jj][rr] = e[rr];
			if (!u)
				continue;
			for (size_t kk = jj + 1; kk < L; kk++) {
				float uk = u[j * c + a + kk];
				for (size_t rr = 0; rr < TILE_ROWS; rr++)
					t[kk][rr] -= e[rr] * uk;
			}
		}
		for (size_t rr = 0; rr < nr; rr++)
			for (size_t jj = 0; jj < L; jj++) {
				size_t j = a + jj;
				cs->w[(r0 + rr) * c + j] = t[jj][rr];
				cs->codes[lm + (r0 + rr) * LEAF_COLS + jj] = cb[jj][rr];
			}
	}
	return 0;
}

/* Columns [a, b), every column before a already pushed onto them.
 * Recursive (lazy) blocking: quantize the left part, push its errors
 * onto the right part with one sgemm, W[:, m:b] -= E[:, a:m] U[a:m, m:b],
 * then quantize the right part.  The same arithmetic as GPTQ's column by
 * column updates, but all but O(cols * LEAF_COLS) of the work is sgemm,
 * and the top levels are large square-ish products.  Splits fall on group
 * boundaries while a part spans groups, so every group is one node and is
 * whole and up to date when its grid is fixed (without actorder) or, for
 * athena, when it is quantized as a block. */
static int so_rec(const struct so_run *x, size_t a, size_t b)
{
	const struct qs_so_cfg *cfg = x->cfg;
	struct chunk_scratch *cs = x->cs;
	size_t c = x->c, g = cfg->group, R = x->R;
	int rc;
	bool group_node = a % g == 0 && b == (c - a < g ? c : a + g);

	if (cfg->athena && group_node) {
		for (size_t r = 0; r < R; r++) {
			float *wr = cs->w + r * c;
			rc = athena_block(x->k, cfg, x->u, c, !x->u, wr, a, b - a, cs,
					  cs->codes + r * c, &cs->scale[r * x->ng + a / g],
					  &cs->min[r * x->ng + a / g], x->u ? wr + a : NULL);
			if (rc)
				return rc;
		}
		return 0;
	}
	if (!cfg->actorder && group_node)
		for (size_t r = 0; r < R; r++) {
			rc = group_grid(x->k, cfg, cs->w + r * c + a,
					x->kout ? cs->omask + r * c + a : NULL, NULL, b - a, cs,
					&cs->scale[r * x->ng + a / g], &cs->min[r * x->ng + a / g]);
			if (rc)
				return rc;
			grid_floats(cs, r * x->ng + a / g);
		}
	if (!cfg->athena && b - a <= LEAF_COLS)
		return leaf_gptq(x, a, b);

	size_t unit = b - a > g ? g : LEAF_COLS;
	size_t n = (b - a + unit - 1) / unit, m = a + unit * (n / 2);
	rc = so_rec(x, a, m);
	if (rc)
		return rc;
	if (x->u)
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)R,
			    (blasint)(b - m), (blasint)(m - a), -1.0f, cs->w + a, (blasint)c,
			    x->u + a * c + m, (blasint)c, 1.0f, cs->w + m, (blasint)c);
	return so_rec(x, m, b);
}

int qs_so_quantize(const struct qs_so_cfg *cfg, const void *prep, const float *w,
		   uint64_t rows, uint64_t cols, uint8_t *out, void *scratch)
{
	uint64_t ssize;
	pin_blas_threads();
	if (!qs_so_cfg_ok(cfg))
		return -QS_EUSAGE;
	if (qs_so_payload_size(cfg, rows, cols) > SIZE_MAX ||
	    !scratch_layout(cfg, rows, cols, NULL, NULL, &ssize) || ssize > SIZE_MAX ||
	    rows > (uint64_t)INT32_MAX || cols > (uint64_t)INT32_MAX)
		return -QS_ETOOBIG;
	if (rows == 0 || cols == 0)
		return 0;

	struct prep_view v;
	memset(&v, 0, sizeof(v));
	bool ident = true;
	if (prep) {
		v = prep_carve(prep, cols);
		if (v.hdr->magic != PREP_MAGIC || v.hdr->cols != cols)
			return -QS_EUSAGE;
		ident = v.hdr->identity != 0;
	}

	const struct qs_kernels *k = qs_kernels_get();
	struct chunk_scratch cs;
	scratch_layout(cfg, rows, cols, scratch, &cs, &ssize);
	size_t R = (size_t)rows, c = (size_t)cols, g = cfg->group;
	size_t ng = (size_t)groups_per_row(cfg, cols);
	size_t kout = (size_t)qs_so_outliers_per_row(cfg, cols);
	float qmaxf = (float)((1u << cfg->bits) - 1u);
	const float *u = ident ? NULL : v.u;
	int rc;

	for (size_t r = 0; r < R; r++) {
		const float *src = w + r * c;
		float *dst = cs.w + r * c;
		if (ident)
			memcpy(dst, src, c * sizeof(float));
		else
			for (size_t j = 0; j < c; j++)
				dst[j] = v.dead[v.perm[j]] ? 0.0f : src[v.perm[j]];
	}
	if (kout) {
		memset(cs.omask, 0, R * c);
		for (size_t r = 0; r < R; r++)
			pick_outliers(w + r * c, c, kout, &v, ident, &cs, cs.oidx + r * kout,
				      cs.omask + r * c);
	}
	if (cfg->actorder)
		for (size_t r = 0; r < R; r++)
			for (size_t gi = 0; gi < ng; gi++) {
				size_t j0 = gi * g, n = c - j0 < g ? c - j0 : g;
				rc = group_grid(k, cfg, w + r * c + j0,
						kout ? cs.omask + r * c + j0 : NULL,
						ident ? NULL : v.dead + j0, n, &cs,
						&cs.scale[r * ng + gi], &cs.min[r * ng + gi]);
				if (rc)
					return rc;
				grid_floats(&cs, r * ng + gi);
			}

	struct so_run run = { k, cfg, &v, u, &cs, R, c, ng, kout, qmaxf };
	rc = so_rec(&run, 0, c);
	if (rc)
		return rc;

	/* rtn's layout, then the outlier table */
	uint8_t *scales = out, *mins = out + 2 * R * ng, *codes = out + 4 * R * ng;
	for (size_t i = 0; i < R * ng; i++) {
		qs_put_le16(scales + 2 * i, cs.scale[i]);
		qs_put_le16(mins + 2 * i, cs.min[i]);
	}
	for (size_t r = 0; r < R; r++) {
		const uint8_t *rc8 = cs.codes + r * c;
		if (!cfg->athena) {
			/* rows in order: a run of rows shares its pages of
			 * every leaf's codes */
			for (size_t j = 0; j < c; j++)
				cs.rowcodes[ident ? j : v.perm[j]] =
					cs.codes[j / LEAF_COLS * R * LEAF_COLS + r * LEAF_COLS +
						 j % LEAF_COLS];
			rc8 = cs.rowcodes;
		}
		k->pack_bits(rc8, c, cfg->bits, codes, (uint64_t)r * c * cfg->bits);
	}
	if (kout) {
		struct qs_scheme rs = rtn_of(cfg);
		uint8_t *p = out + qs_scheme_rtn.payload_size(&rs, rows, cols);
		unsigned iw = idx_width(cols);
		for (size_t i = 0; i < R * kout; i++, p += iw) {
			if (iw == 2)
				qs_put_le16(p, (uint16_t)cs.oidx[i]);
			else
				qs_put_le32(p, cs.oidx[i]);
		}
		for (size_t i = 0; i < R * kout; i++, p += 2)
			qs_put_le16(p, cs.oval[i]);
	}
	return 0;
}

int qs_so_dequantize(const struct qs_so_cfg *cfg, const uint8_t *in, uint64_t rows,
		     uint64_t cols, float *out, void *scratch)
{
	if (!qs_so_cfg_ok(cfg))
		return -QS_EUSAGE;
	if (qs_so_payload_size(cfg, rows, cols) > SIZE_MAX)
		return -QS_ETOOBIG;
	struct qs_scheme rs = rtn_of(cfg);
	int rc = qs_scheme_rtn.dequantize(&rs, in, rows, cols, out, scratch);
	if (rc || rows == 0 || cols == 0)
		return rc;
	size_t kout = (size_t)qs_so_outliers_per_row(cfg, cols);
	if (!kout)
		return 0;
	size_t R = (size_t)rows, c = (size_t)cols;
	unsigned iw = idx_width(cols);
	const uint8_t *ip = in + qs_scheme_rtn.payload_size(&rs, rows, cols);
	const uint8_t *vp = ip + R * kout * iw;
	for (size_t r = 0; r < R; r++)
		for (size_t i = 0; i < kout; i++) {
			size_t n = r * kout + i;
			uint32_t col = iw == 2 ? qs_get_le16(ip + 2 * n) : qs_get_le32(ip + 4 * n);
			if (col >= c)
				return -QS_EFORMAT;
			out[r * c + col] = qs_f16_to_f32(qs_get_le16(vp + 2 * n));
		}
	return 0;
}

/* ------------------------------------------------------------ gptq ops */

int qs_so_common_arg(struct qs_scheme *s, const char *key, const char *val,
		     struct qs_diag *diag)
{
	const char *name = s->ops->name;
	unsigned v = 0;
	bool num = qs_scheme_parse_uint(val, &v) == 0;

	if (strcmp(key, "bits") == 0) {
		if (!num || !bits_ok(v))
			return qs_diag_set(diag, -QS_EUSAGE,
					   "%s: bits must be one of 2, 3, 4, 8 (got '%s')", name, val);
		s->bits = v;
	} else if (strcmp(key, "group") == 0) {
		if (!num || !group_ok(v))
			return qs_diag_set(diag, -QS_EUSAGE,
					   "%s: group must be one of 32, 64, 128, 256 (got '%s')",
					   name, val);
		s->group = v;
	} else if (strcmp(key, "damp") == 0) {
		if (qs_scheme_parse_e4(val, &v) || v < 1 || v > 10000)
			return qs_diag_set(diag, -QS_EUSAGE,
					   "%s: damp must be a decimal in (0, 1] with at most "
					   "4 decimals (got '%s')", name, val);
		s->extra[QS_SO_DAMP] = v;
	} else {
		return 1;
	}
	return 0;
}

static int gptq_arg(struct qs_scheme *s, const char *key, const char *val,
		    struct qs_diag *diag)
{
	unsigned v = 0;
	bool num = qs_scheme_parse_uint(val, &v) == 0;

	int rc = qs_so_common_arg(s, key, val, diag);
	if (rc != 1)
		return rc;
	if (strcmp(key, "actorder") == 0) {
		if (!num || v > 1)
			return qs_diag_set(diag, -QS_EUSAGE,
					   "gptq: actorder must be 0 or 1 (got '%s')", val);
		s->extra[QS_SO_ACTORDER] = v;
	} else if (strcmp(key, "alpha") == 0) {
		if (qs_scheme_parse_e4(val, &v) || v > 2500)
			return qs_diag_set(diag, -QS_EUSAGE,
					   "gptq: alpha must be a decimal in [0, 0.25] with at "
					   "most 4 decimals (got '%s')", val);
		s->extra[QS_SO_ALPHA] = v;
		s->alpha = v / 10000.0;
	} else {
		return qs_diag_set(diag, -QS_EUSAGE,
				   "gptq: unknown parameter '%s' (known: bits, group, damp, "
				   "actorder, alpha)", key);
	}
	return 0;
}

static int gptq_parse(struct qs_scheme *s, const char *args, struct qs_diag *diag)
{
	s->bits = 4;
	s->group = 128;
	s->extra[QS_SO_DAMP] = 100;
	s->extra[QS_SO_ACTORDER] = 1;
	s->extra[QS_SO_ALPHA] = 0;
	s->alpha = 0;
	int rc = qs_scheme_each_arg(s, args, gptq_arg, diag);
	if (rc)
		return rc;
	char d[16], a[16];
	qs_scheme_fmt_e4(d, sizeof(d), s->extra[QS_SO_DAMP]);
	qs_scheme_fmt_e4(a, sizeof(a), s->extra[QS_SO_ALPHA]);
	snprintf(s->text, sizeof(s->text), "gptq:bits=%u,group=%u,damp=%s,actorder=%u,alpha=%s",
		 s->bits, s->group, d, s->extra[QS_SO_ACTORDER], a);
	return 0;
}

/* The scheme-level operations shared by gptq and athena (second_order.h):
 * which of the two a scheme is follows from its ops table. */
static struct qs_so_cfg cfg_of(const struct qs_scheme *s)
{
	struct qs_so_cfg c;
	qs_so_cfg_of(s, s->ops == &qs_scheme_athena, &c);
	return c;
}

uint64_t qs_so_op_payload_size(const struct qs_scheme *s, uint64_t rows, uint64_t cols)
{
	struct qs_so_cfg c = cfg_of(s);
	return qs_so_payload_size(&c, rows, cols);
}

uint64_t qs_so_op_scratch_size(const struct qs_scheme *s, uint64_t rows, uint64_t cols)
{
	struct qs_so_cfg c = cfg_of(s);
	return qs_so_scratch_size(&c, rows, cols);
}

int qs_so_op_quantize(const struct qs_scheme *s, const float *w, uint64_t rows, uint64_t cols,
		      uint8_t *out, void *scratch)
{
	struct qs_so_cfg c = cfg_of(s);
	return qs_so_quantize(&c, NULL, w, rows, cols, out, scratch);
}

int qs_so_op_dequantize(const struct qs_scheme *s, const uint8_t *in, uint64_t rows,
			uint64_t cols, float *out, void *scratch)
{
	struct qs_so_cfg c = cfg_of(s);
	return qs_so_dequantize(&c, in, rows, cols, out, scratch);
}

uint64_t qs_so_op_prep_size(const struct qs_scheme *s, uint64_t cols)
{
	(void)s;
	return qs_so_prep_size(cols);
}

int qs_so_op_prepare(const struct qs_scheme *s, const struct qs_tensor_stats *stats, void *prep,
		     struct qs_diag *diag)
{
	struct qs_so_cfg c = cfg_of(s);
	return qs_so_prepare(&c, stats, prep, s->ops->name, diag);
}

int qs_so_op_quantize_prep(const struct qs_scheme *s, const void *prep, const float *w,
			   uint64_t rows, uint64_t cols, uint8_t *out, void *scratch)
{
	struct qs_so_cfg c = cfg_of(s);
	return qs_so_quantize(&c, prep, w, rows, cols, out, scratch);
}

const struct qs_scheme_ops qs_scheme_gptq = {
	.name = "gptq",
	.parse = gptq_parse,
	.payload_size = qs_so_op_payload_size,
	.scratch_size = qs_so_op_scratch_size,
	.quantize = qs_so_op_quantize,
	.dequantize = qs_so_op_dequantize,
	.wants = QS_WANT_HESSIAN,
	.prep_size = qs_so_op_prep_size,
	.prepare = qs_so_op_prepare,
	.quantize_prep = qs_so_op_quantize_prep,
};
