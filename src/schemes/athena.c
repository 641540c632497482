/* athena.c - the scheme `gptq-clip` (and its deprecated alias `athena`):
 * GPTQ's second-order engine (second_order.c) with block = group and a
 * per-block clipping search judged on the second-order loss, on the rtn
 * grid.
 *
 * Why the name.  The scheme was called after Athena (Wang, He, Yang,
 * "Athena: Efficient Block-Wise Post-Training Quantization for Large
 * Language Models Using Second-Order Matrix Derivative Information",
 * arXiv:2405.17470), but it is not that paper's algorithm: the paper groups
 * parameters by columns or rows into blocks, quantizes them block after
 * block guided by the Hessian of the layer-wise loss, updates the remaining
 * parameters and the Hessian information after each block -- and it
 * quantizes each block with k-means code books and refines the result with
 * a low-rank decomposition of the residual.  qshard has the first part
 * (which is GPTQ's lazy-batch structure with blocks = groups), not the code
 * books nor the low-rank residual, and its grid is rtn's uniform one with a
 * clipping search.  So it is named for what it is, gptq-clip; `athena`
 * stays accepted, with the same output and its own name in the file
 * (files written as athena keep reading), and is documented as a
 * deprecated alias (qshard-convert(1)).
 *
 * Parameters (canonical text "gptq-clip:bits=B,group=G,damp=D,search=S"):
 *   bits 2, 3, 4, 8 (default 3); group 32, 64, 128, 256 (default 128);
 *   damp   as gptq (default 0.01);
 *   search clipped grids tried per block besides the full range, 0..16
 *          (default 8).
 *
 * What is implemented:
 *   - blocks are the quantization groups (block = group columns, natural
 *     order), so each block owns exactly one grid per row;
 *   - the inverse Hessian of the not-yet-quantized columns is downdated
 *     after every block (the Schur complement of the quantized block):
 *     the upper Cholesky factor U of H^-1 holds every such downdate at
 *     once (its trailing square is the factor of the remaining problem's
 *     inverse Hessian), so it is computed once per tensor exactly as gptq
 *     does (dead columns, dampening, LAPACK) and never formed explicitly;
 *   - per row and block, the grid is optimized: the full min-max range and
 *     `search` ranges clipped toward zero ([f*min, f*max], f = 1 - t/(2S),
 *     t = 1..S) are each run through the sequential second-order pass of
 *     the block, and the grid with the least block loss sum(err_j^2),
 *     err_j = (w_j - q_j) / U[j,j], wins (ties to the earlier candidate):
 *     that sum is the exact increase of the layer loss caused by the block
 *     once the later columns are re-optimized, so the choice is made on
 *     output error, not weight error;
 *   - the block's errors are then pushed onto every later column (W[:,
 *     after] -= E U[block, after]): the parameter update, batched with
 *     gptq's recursive blocking (second_order.c), so
 *     it is a few large cblas_sgemm calls rather than one per block.
 * Not implemented: Athena's k-means code books and low-rank residual
 * refinements (see above); the payload stays rtn's layout so any rtn reader
 * works.
 *
 * How it differs from gptq: gptq fixes each group's grid by min-max of the
 * compensated weights, then only chooses codes; gptq-clip additionally
 * chooses the grid by the second-order loss of the whole block, so it is
 * never worse on that loss than gptq with the same blocks (the full range
 * is the first candidate).  No actorder and no outlier table.  Without a
 * Hessian it is a per-group clipping search that minimizes the squared
 * weight error (not rtn).  Cost: (search + 1) times gptq's in-block work.
 *
 * Payload and bpw: exactly rtn's (bits + 32/group: 3.25 at bits=3,
 * group=128); dequantize is rtn's.
 */
#include <math.h>
#include <string.h>

#include "kernels.h"
#include "rtn_scalar.h"
#include "scheme.h"
#include "second_order.h"
#include "util.h"

static const struct qs_param athena_param_table[] = {
	QS_SO_PARAM_BITS(3),
	QS_SO_PARAM_GROUP,
	QS_SO_PARAM_DAMP,
	QS_PARAM_RANGE(struct qs_so_params, search, 8, 0, 16,
		       "clipped grids tried per block besides the full range"),
	QS_PARAM_END,
};

static inline uint8_t grid_code(float w, float minf, float scalef, float qmaxf, bool zero)
{
	if (zero)
		return 0;
	/* rtn's definition, so that H = I reproduces rtn's codes */
	float d = w - minf;
	float q = d / scalef;
	return (uint8_t)qs_round_code(q, qmaxf);
}

static inline float grid_value(uint8_t code, float minf, float scalef)
{
	float t = (float)code * scalef;
	return minf + t;
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
int qs_so_athena_block(const struct qs_kernels *k, const struct qs_so_cfg *cfg,
			const float *u, size_t c, bool ident, float *wr, size_t b0, size_t n,
			struct qs_so_scratch *cs, uint8_t *codes, uint16_t *scale,
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
			int rc = qs_so_group_grid(k, cfg, wr + b0, NULL, NULL, n, cs, &s16, &m16);
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
const struct qs_scheme_ops qs_scheme_gptq_clip = QS_SECOND_ORDER_OPS("gptq-clip", athena_param_table);

/* The deprecated alias: the same operations under the old name. */
const struct qs_scheme_ops qs_scheme_athena = QS_SECOND_ORDER_OPS("athena", athena_param_table);
