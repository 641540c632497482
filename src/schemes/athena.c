/* athena.c - Athena (Wang, He, Yang, "Athena: Efficient Block-Wise
 * Post-Training Quantization for Large Language Models Using Second-Order
 * Matrix Derivative Information", arXiv:2405.17470), a practical reading
 * on the rtn grid, sharing gptq.c's engine (second_order.h).
 *
 * Parameters (canonical text "athena:bits=B,group=G,damp=D,search=S"):
 *   bits 2, 3, 4, 8 (default 3); group 32, 64, 128, 256 (default 128);
 *   damp   as gptq (default 0.01);
 *   search clipped grids tried per block besides the full range, 0..16
 *          (default 8).
 *
 * What the paper describes: parameters are grouped by columns into blocks;
 * blocks are quantized one after the other, each guided by second-order
 * (Hessian) information of the layer-wise loss, and after each block the
 * remaining parameters and the Hessian information are updated, so later
 * blocks are quantized against the curvature of the problem that is left;
 * the grid of each block is optimized iteratively rather than fixed by a
 * uniform rule.
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
 *     gptq's recursive blocking (second_order.h's engine in gptq.c), so
 *     it is a few large cblas_sgemm calls rather than one per block.
 * Not implemented: the paper's k-means code books and low-rank residual
 * refinements; the payload stays rtn's layout so any rtn reader works.
 *
 * How it differs from gptq: gptq fixes each group's grid by min-max of the
 * compensated weights, then only chooses codes; athena additionally
 * chooses the grid by the second-order loss of the whole block, so it is
 * never worse on that loss than gptq with the same blocks (the full range
 * is the first candidate).  No actorder and no outlier table.  Without a
 * Hessian it is a per-group clipping search that minimizes the squared
 * weight error (not rtn).  Cost: (search + 1) times gptq's in-block work.
 *
 * Payload and bpw: exactly rtn's (bits + 32/group: 3.25 at bits=3,
 * group=128); dequantize is rtn's.
 */
#include <stdio.h>
#include <string.h>

#include "scheme.h"
#include "second_order.h"
#include "util.h"

static int athena_arg(struct qs_scheme *s, const char *key, const char *val,
		      struct qs_diag *diag)
{
	unsigned v = 0;
	bool num = qs_scheme_parse_uint(val, &v) == 0;

	int rc = qs_so_common_arg(s, key, val, diag);
	if (rc != 1)
		return rc;
	if (strcmp(key, "search") == 0) {
		if (!num || v > 16)
			return qs_diag_set(diag, -QS_EUSAGE,
					   "athena: search must be 0..16 (got '%s')", val);
		s->extra[QS_SO_SEARCH] = v;
	} else {
		return qs_diag_set(diag, -QS_EUSAGE,
				   "athena: unknown parameter '%s' (known: bits, group, damp, "
				   "search)", key);
	}
	return 0;
}

static int athena_parse(struct qs_scheme *s, const char *args, struct qs_diag *diag)
{
	s->bits = 3;
	s->group = 128;
	s->extra[QS_SO_DAMP] = 100;
	s->extra[QS_SO_SEARCH] = 8;
	int rc = qs_scheme_each_arg(s, args, athena_arg, diag);
	if (rc)
		return rc;
	char d[16];
	qs_scheme_fmt_e4(d, sizeof(d), s->extra[QS_SO_DAMP]);
	snprintf(s->text, sizeof(s->text), "athena:bits=%u,group=%u,damp=%s,search=%u",
		 s->bits, s->group, d, s->extra[QS_SO_SEARCH]);
	return 0;
}

const struct qs_scheme_ops qs_scheme_athena = {
	.name = "athena",
	.parse = athena_parse,
	.payload_size = qs_so_op_payload_size,
	.scratch_size = qs_so_op_scratch_size,
	.quantize = qs_so_op_quantize,
	.dequantize = qs_so_op_dequantize,
	.wants = QS_WANT_HESSIAN,
	.prep_size = qs_so_op_prep_size,
	.prepare = qs_so_op_prepare,
	.quantize_prep = qs_so_op_quantize_prep,
};
