/* gptq.c - GPTQ (Frantar et al., "GPTQ: Accurate Post-Training Quantization
 * for Generative Pre-trained Transformers", arXiv:2210.17323) on the rtn
 * grid: the definition of the second-order engine (second_order.c), and
 * gptq's leaf and outlier choice.
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
#include <float.h>
#include <math.h>
#include <string.h>

#include "kernels.h"
#include "scheme.h"
#include "second_order.h"
#include "util.h"

static const struct qs_param gptq_param_table[] = {
	QS_SO_PARAM_BITS(4),
	QS_SO_PARAM_GROUP,
	QS_SO_PARAM_DAMP,
	QS_PARAM_RANGE(struct qs_so_params, actorder, 1, 0, 1,
		       "1: columns in descending diag(H) order"),
	QS_PARAM_DECIMAL(struct qs_so_params, alpha, 0, 0, 2500, 4, false,
			 "fraction of each row kept as exact fp16 outliers"),
	QS_PARAM_END,
};

/* Per row, the k weights of largest saliency (w^2 / [H^-1]_ii; dead
 * columns are 0), ascending column indices into idx[k], flags in mask[]. */
void qs_so_pick_outliers(const float *w, size_t c, size_t k, const struct qs_so_prep *v,
			  bool ident, struct qs_so_scratch *cs, uint32_t *idx, uint8_t *mask)
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
/* gptq, columns [a, b) (at most QS_SO_LEAF_COLS) of every row, QS_SO_TILE_ROWS rows
 * at a time transposed into a small buffer, so that quantizing a column
 * and the in-leaf updates are loops over rows with unit stride and a
 * fixed count (the compiler vectorizes them at -O2; the arithmetic per
 * element is the same as scalar, so the result does not depend on it).
 * A quantized column's slot in cs->w receives its error (the weight is
 * no longer needed), so the errors are already the left operand of the
 * sgemm that pushes them on. */
int qs_so_gptq_leaf(const struct qs_so_run *x, size_t a, size_t b)
{
	const struct qs_so_cfg *cfg = x->cfg;
	const struct qs_so_scratch *cs = x->cs;
	const float *u = x->u;
	const float qmaxf = x->qmaxf;
	size_t c = x->c, g = cfg->group, kout = x->kout, L = b - a;
	float t[QS_SO_LEAF_COLS][QS_SO_TILE_ROWS], sc[QS_SO_TILE_ROWS], mn[QS_SO_TILE_ROWS], nz[QS_SO_TILE_ROWS];
	float cf[QS_SO_TILE_ROWS], e[QS_SO_TILE_ROWS];
	uint8_t cb[QS_SO_LEAF_COLS][QS_SO_TILE_ROWS];
	/* Codes go leaf-major, [a / QS_SO_LEAF_COLS][row][column - a] in
	 * (permuted) position order, so a leaf writes them in one stream
	 * instead of a few bytes on every row's page; leaves start at
	 * multiples of QS_SO_LEAF_COLS (groups do, and are split in QS_SO_LEAF_COLS). */
	size_t lm = a / QS_SO_LEAF_COLS * x->R * QS_SO_LEAF_COLS;

	for (size_t r0 = 0; r0 < x->R; r0 += QS_SO_TILE_ROWS) {
		size_t nr = x->R - r0 < QS_SO_TILE_ROWS ? x->R - r0 : QS_SO_TILE_ROWS;
		/* row by row: the chunk is touched along its rows only */
		for (size_t rr = 0; rr < QS_SO_TILE_ROWS; rr++)
			for (size_t jj = 0; jj < L; jj++)
				t[jj][rr] = rr < nr ? cs->w[(r0 + rr) * c + a + jj] : 0.0f;
		size_t last_gi = SIZE_MAX;
		for (size_t jj = 0; jj < L; jj++) {
			size_t j = a + jj, nat = u ? x->v->perm[j] : j, gi = nat / g;
			if (gi != last_gi) {
				last_gi = gi;
				for (size_t rr = 0; rr < QS_SO_TILE_ROWS; rr++) {
					size_t i = (r0 + rr) * x->ng + gi;
					bool in = rr < nr;
					sc[rr] = in ? cs->sf[i] : 1.0f;
					mn[rr] = in ? cs->mf[i] : 0.0f;
					nz[rr] = in && cs->scale[i] != 0 ? 1.0f : 0.0f;
				}
			}
			float d = u ? u[j * c + j] : 1.0f;
			/* rtn_scalar.h's qs_round_code and the grid value,
			 * spelled out over a tile of rows without branches so it
			 * vectorizes (q is finite once clamped, so q * nz is q or
			 * the zero grid's 0): the same operations in the same
			 * order per element */
			for (size_t rr = 0; rr < QS_SO_TILE_ROWS; rr++) {
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
			for (size_t rr = 0; rr < QS_SO_TILE_ROWS; rr++)
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
			for (size_t rr = 0; rr < QS_SO_TILE_ROWS; rr++)
				t[jj][rr] = e[rr];
			if (!u)
				continue;
			for (size_t kk = jj + 1; kk < L; kk++) {
				float uk = u[j * c + a + kk];
				for (size_t rr = 0; rr < QS_SO_TILE_ROWS; rr++)
					t[kk][rr] -= e[rr] * uk;
			}
		}
		for (size_t rr = 0; rr < nr; rr++)
			for (size_t jj = 0; jj < L; jj++) {
				size_t j = a + jj;
				cs->w[(r0 + rr) * c + j] = t[jj][rr];
				cs->codes[lm + (r0 + rr) * QS_SO_LEAF_COLS + jj] = cb[jj][rr];
			}
	}
	return 0;
}
const struct qs_scheme_ops qs_scheme_gptq = QS_SECOND_ORDER_OPS("gptq", gptq_param_table);
