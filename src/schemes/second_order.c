/* second_order.c - the engine of the second-order schemes (second_order.h):
 * parameters to configuration, chunk and per-tensor sizes, the per-tensor
 * preparation (dead columns, dampening, actorder permutation, the Cholesky
 * factor U of H^-1 via LAPACK), and the recursive blocked pass over a
 * chunk's columns whose leaves are gptq's (gptq.c) or athena's
 * (athena.c).  gptq.c's opening comment is the definition of the
 * algorithm; athena.c says where athena differs.
 */
#include <cblas.h>
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "rtn.h"
#include "scheme.h"
#include "second_order.h"
#include "util.h"

/* LAPACK through the Fortran ABI (Debian's OpenBLAS ships no lapacke.h);
 * the trailing size_t is gfortran's hidden length of the string argument. */
extern void spotrf_(const char *uplo, const blasint *n, float *a, const blasint *lda,
		    blasint *info, size_t uplo_len);
extern void spotri_(const char *uplo, const blasint *n, float *a, const blasint *lda,
		    blasint *info, size_t uplo_len);

/* A multi-threaded sgemm splits its sums by OpenBLAS's own thread count
 * (OPENBLAS_NUM_THREADS, else the CPU count), which changes the rounding;
 * so BLAS is pinned to one thread per calling worker before its first use,
 * and -T is the only parallelism. */
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

void qs_so_cfg_of(const struct qs_scheme *s, struct qs_so_cfg *cfg)
{
	const struct qs_so_params *p = QS_SCHEME_PARAMS(struct qs_so_params, s);
	memset(cfg, 0, sizeof(*cfg));
	cfg->bits = p->bits;
	cfg->group = p->group;
	cfg->damp_e4 = p->damp;
	cfg->athena = s->ops == &qs_scheme_athena || s->ops == &qs_scheme_gptq_clip;
	if (cfg->athena) {
		cfg->search = p->search;
	} else {
		cfg->actorder = p->actorder != 0;
		cfg->alpha_e4 = p->alpha;
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

/* rtn with the same grid: its payload is the first part of ours. */
static struct qs_scheme rtn_of(const struct qs_so_cfg *cfg)
{
	struct qs_scheme r;
	struct qs_rtn_params p = {cfg->bits, cfg->group};
	qs_scheme_init(&r, &qs_scheme_rtn, &p, sizeof(p), NULL);
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
struct qs_so_prep_hdr {
	uint32_t magic;
	uint32_t identity;  /* no Hessian: rtn */
	uint64_t cols;
	float damp_used;    /* the dampening that made H positive definite */
};

uint64_t qs_so_prep_size(uint64_t cols)
{
	uint64_t sq, u, total;
	if (cols > UINT32_MAX || !qs_mul_u64(cols, cols, &sq) || !qs_mul_u64(sq, 4, &u) ||
	    u > UINT64_MAX / 2)
		return UINT64_MAX;
	total = SO_ALIGN + align_up(sizeof(struct qs_so_prep_hdr)) + align_up(u) +
		2 * align_up(4 * cols) + align_up(cols);
	return total;
}

static struct qs_so_prep prep_carve(const void *prep, uint64_t cols)
{
	struct qs_so_prep v;
	uint8_t *p = align_ptr((void *)(uintptr_t)prep);
	v.hdr = (struct qs_so_prep_hdr *)p;
	p += align_up(sizeof(struct qs_so_prep_hdr));
	v.u = (float *)p;
	p += align_up(4 * cols * cols);
	v.perm = (uint32_t *)p;
	p += align_up(4 * cols);
	v.hinvd = (float *)p;
	p += align_up(4 * cols);
	v.dead = p;
	return v;
}
static bool scratch_layout(const struct qs_so_cfg *cfg, uint64_t rows, uint64_t cols,
			   void *base, struct qs_so_scratch *cs, uint64_t *size)
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
	 * QS_SO_LEAF_COLS) * QS_SO_LEAF_COLS per row */
	if (!qs_mul_u64(rows, cols + QS_SO_LEAF_COLS - 1, &nc) || nc > UINT64_MAX / 16)
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
static void fill_h(float *a, const float *h, const struct qs_so_prep *v, size_t c, float damp)
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

	struct qs_so_prep v = prep_carve(prep, cols);
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
		const struct qs_param damp = QS_SO_PARAM_DAMP;
		qs_param_format(&damp, cfg->damp_e4, d, sizeof(d));
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
/* The rtn grid of the n weights src[] leaving out those flagged in mask
 * (NULL: none): they are replaced by a kept weight so min/max ignore
 * them, then rtn's own kernel fixes scale and min. */
int qs_so_group_grid(const struct qs_kernels *k, const struct qs_so_cfg *cfg,
		      const float *src, const uint8_t *mask, const uint8_t *dead, size_t n,
		      struct qs_so_scratch *cs, uint16_t *scale, uint16_t *min)
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
static void grid_floats(struct qs_so_scratch *cs, size_t i)
{
	cs->sf[i] = qs_f16_to_f32(cs->scale[i]);
	cs->mf[i] = qs_f16_to_f32(cs->min[i]);
}
/* Columns [a, b), every column before a already pushed onto them.
 * Recursive (lazy) blocking: quantize the left part, push its errors
 * onto the right part with one sgemm, W[:, m:b] -= E[:, a:m] U[a:m, m:b],
 * then quantize the right part.  The same arithmetic as GPTQ's column by
 * column updates, but all but O(cols * QS_SO_LEAF_COLS) of the work is sgemm,
 * and the top levels are large square-ish products.  Splits fall on group
 * boundaries while a part spans groups, so every group is one node and is
 * whole and up to date when its grid is fixed (without actorder) or, for
 * athena, when it is quantized as a block. */
static int so_rec(const struct qs_so_run *x, size_t a, size_t b)
{
	const struct qs_so_cfg *cfg = x->cfg;
	struct qs_so_scratch *cs = x->cs;
	size_t c = x->c, g = cfg->group, R = x->R;
	int rc;
	bool group_node = a % g == 0 && b == (c - a < g ? c : a + g);

	if (cfg->athena && group_node) {
		for (size_t r = 0; r < R; r++) {
			float *wr = cs->w + r * c;
			rc = qs_so_athena_block(x->k, cfg, x->u, c, !x->u, wr, a, b - a, cs,
					  cs->codes + r * c, &cs->scale[r * x->ng + a / g],
					  &cs->min[r * x->ng + a / g], x->u ? wr + a : NULL);
			if (rc)
				return rc;
		}
		return 0;
	}
	if (!cfg->actorder && group_node)
		for (size_t r = 0; r < R; r++) {
			rc = qs_so_group_grid(x->k, cfg, cs->w + r * c + a,
					x->kout ? cs->omask + r * c + a : NULL, NULL, b - a, cs,
					&cs->scale[r * x->ng + a / g], &cs->min[r * x->ng + a / g]);
			if (rc)
				return rc;
			grid_floats(cs, r * x->ng + a / g);
		}
	if (!cfg->athena && b - a <= QS_SO_LEAF_COLS)
		return qs_so_gptq_leaf(x, a, b);

	size_t unit = b - a > g ? g : QS_SO_LEAF_COLS;
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

const float *qs_so_prep_factor(const void *prep, uint64_t cols)
{
	struct qs_so_prep v = prep_carve(prep, cols);
	if (v.hdr->magic != PREP_MAGIC || v.hdr->cols != cols || v.hdr->identity)
		return NULL;
	return v.u;
}

int qs_so_prep_view(const void *prep, uint64_t cols, struct qs_so_prep *v, bool *identity)
{
	*v = prep_carve(prep, cols);
	if (v->hdr->magic != PREP_MAGIC || v->hdr->cols != cols)
		return -QS_EUSAGE;
	*identity = v->hdr->identity != 0;
	return 0;
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

	struct qs_so_prep v;
	memset(&v, 0, sizeof(v));
	bool ident = true;
	if (prep) {
		v = prep_carve(prep, cols);
		if (v.hdr->magic != PREP_MAGIC || v.hdr->cols != cols)
			return -QS_EUSAGE;
		ident = v.hdr->identity != 0;
	}

	const struct qs_kernels *k = qs_kernels_get();
	struct qs_so_scratch cs;
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
			qs_so_pick_outliers(w + r * c, c, kout, &v, ident, &cs, cs.oidx + r * kout,
				      cs.omask + r * c);
	}
	if (cfg->actorder)
		for (size_t r = 0; r < R; r++)
			for (size_t gi = 0; gi < ng; gi++) {
				size_t j0 = gi * g, n = c - j0 < g ? c - j0 : g;
				rc = qs_so_group_grid(k, cfg, w + r * c + j0,
						kout ? cs.omask + r * c + j0 : NULL,
						ident ? NULL : v.dead + j0, n, &cs,
						&cs.scale[r * ng + gi], &cs.min[r * ng + gi]);
				if (rc)
					return rc;
				grid_floats(&cs, r * ng + gi);
			}

	struct qs_so_run run = { k, cfg, &v, u, &cs, R, c, ng, kout, qmaxf };
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
					cs.codes[j / QS_SO_LEAF_COLS * R * QS_SO_LEAF_COLS + r * QS_SO_LEAF_COLS +
						 j % QS_SO_LEAF_COLS];
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
/* ------------------------------------------------------- scheme ops */

/* The scheme-level operations shared by gptq and athena (second_order.h):
 * which of the two a scheme is follows from its ops table. */
static struct qs_so_cfg cfg_of(const struct qs_scheme *s)
{
	struct qs_so_cfg c;
	qs_so_cfg_of(s, &c);
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
