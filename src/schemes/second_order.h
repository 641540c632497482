/* second_order.h - the engine shared by the second-order schemes gptq.c and
 * athena.c (second_order.c): per-tensor preparation of the inverse
 * Hessian's Cholesky factor and the column-by-column quantization with
 * error feedback onto the rtn grid (payload = rtn's layout, plus gptq's
 * optional outlier table), recursively blocked so that most of the work
 * is sgemm.  The engine walks the columns (qs_so_quantize); what differs
 * is the leaf: gptq's rounding with error feedback (gptq.c) or athena's
 * per-block grid search (athena.c). */
#ifndef QS_SECOND_ORDER_H
#define QS_SECOND_ORDER_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels.h"
#include "scheme.h"

/* The parameter struct of both schemes (each table lists its subset;
 * the others stay 0). */
struct qs_so_params {
	unsigned bits, group;
	unsigned damp;      /* dampening, units of 1e-4 of the mean diagonal */
	unsigned actorder;  /* gptq: 1 = columns in descending diag(H) order */
	unsigned alpha;     /* gptq: outlier fraction, units of 1e-4 */
	unsigned search;    /* athena: clipped ranges tried per group */
};

/* The table entries both schemes share. */
#define QS_SO_PARAM_BITS(dflt) \
	QS_PARAM_ONE_OF(struct qs_so_params, bits, dflt, "code width", 2, 3, 4, 8)
#define QS_SO_PARAM_GROUP                                                               \
	QS_PARAM_ONE_OF(struct qs_so_params, group, 128, "weights per group", 32, 64, 128, \
			256)
#define QS_SO_PARAM_DAMP                                                                \
	QS_PARAM_DECIMAL(struct qs_so_params, damp, 100, 1, 10000, 4, false,             \
			 "dampening added to diag(H), a fraction of its mean")

struct qs_so_cfg {
	unsigned bits, group;
	unsigned damp_e4;
	bool actorder;
	unsigned alpha_e4;
	bool athena;        /* block = group, grid chosen by the block's loss */
	unsigned search;
};

/* The configuration of s (a gptq or an athena scheme). */
void qs_so_cfg_of(const struct qs_scheme *s, struct qs_so_cfg *cfg);
bool qs_so_cfg_ok(const struct qs_so_cfg *cfg);

uint64_t qs_so_prep_size(uint64_t cols);

/* The scheme operations both tables use. */
uint64_t qs_so_op_payload_size(const struct qs_scheme *s, uint64_t rows, uint64_t cols);
uint64_t qs_so_op_scratch_size(const struct qs_scheme *s, uint64_t rows, uint64_t cols);
int qs_so_op_quantize(const struct qs_scheme *s, const float *w, uint64_t rows, uint64_t cols,
		      uint8_t *out, void *scratch);
int qs_so_op_dequantize(const struct qs_scheme *s, const uint8_t *in, uint64_t rows,
			uint64_t cols, float *out, void *scratch);
uint64_t qs_so_op_prep_size(const struct qs_scheme *s, uint64_t cols);
int qs_so_op_prepare(const struct qs_scheme *s, const struct qs_tensor_stats *stats, void *prep,
		     struct qs_diag *diag);
int qs_so_op_quantize_prep(const struct qs_scheme *s, const void *prep, const float *w,
			   uint64_t rows, uint64_t cols, uint8_t *out, void *scratch);
/* scheme names the scheme in messages. */
int qs_so_prepare(const struct qs_so_cfg *cfg, const struct qs_tensor_stats *stats,
		  void *prep, const char *scheme, struct qs_diag *diag);
/* The factor U of H^-1 = U^T U (cols x cols, row-major upper triangular,
 * columns in actorder's order) of a prep made by qs_so_prepare, or NULL
 * when it was prepared without a Hessian.  For schemes that run their own
 * second-order pass on another grid (gguf.c). */
const float *qs_so_prep_factor(const void *prep, uint64_t cols);
/* prep NULL: as if H = I (no calibration statistics). */
int qs_so_quantize(const struct qs_so_cfg *cfg, const void *prep, const float *w,
		   uint64_t rows, uint64_t cols, uint8_t *out, void *scratch);
int qs_so_dequantize(const struct qs_so_cfg *cfg, const uint8_t *in, uint64_t rows,
		     uint64_t cols, float *out, void *scratch);
uint64_t qs_so_payload_size(const struct qs_so_cfg *cfg, uint64_t rows, uint64_t cols);
uint64_t qs_so_scratch_size(const struct qs_so_cfg *cfg, uint64_t rows, uint64_t cols);
/* Outliers a row keeps: round(alpha * cols), halves up. */
uint64_t qs_so_outliers_per_row(const struct qs_so_cfg *cfg, uint64_t cols);

/* ---- between the engine and the two leaves ---- */

#define QS_SO_LEAF_COLS 32 /* gptq: columns quantized one by one between sgemms */
#define QS_SO_TILE_ROWS 64

/* The per-tensor state as arrays (second_order.c carves it). */
struct qs_so_prep_hdr;
struct qs_so_prep {
	struct qs_so_prep_hdr *hdr;
	float *u;
	uint32_t *perm;
	float *hinvd;
	uint8_t *dead;
};

/* Chunk scratch: the working copy of the weights (permuted; a quantized
 * column's slot holds its scaled error), codes (athena: natural order;
 * gptq: leaf-major, gathered per row for packing), fp16 scales and mins
 * (and as floats), outlier flags, indices and values, and small per-group
 * buffers; at least what rtn's dequantize needs. */
struct qs_so_scratch {
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

/* What the recursive pass over a chunk shares. */
struct qs_so_run {
	const struct qs_kernels *k;
	const struct qs_so_cfg *cfg;
	const struct qs_so_prep *v;
	const float *u;             /* NULL: no Hessian, nothing propagated */
	struct qs_so_scratch *cs;
	size_t R, c, ng, kout;
	float qmaxf;
};

/* The rtn grid of the n weights src[] leaving out those flagged in mask
 * (NULL: none) and dead columns (NULL: none). */
int qs_so_group_grid(const struct qs_kernels *k, const struct qs_so_cfg *cfg,
		     const float *src, const uint8_t *mask, const uint8_t *dead, size_t n,
		     struct qs_so_scratch *cs, uint16_t *scale, uint16_t *min);
/* gptq.c: columns [a, b) (at most QS_SO_LEAF_COLS) of every row. */
int qs_so_gptq_leaf(const struct qs_so_run *x, size_t a, size_t b);
/* gptq.c: one row's outliers (ascending columns into idx[k], flags in mask). */
void qs_so_pick_outliers(const float *w, size_t c, size_t k, const struct qs_so_prep *v,
			 bool ident, struct qs_so_scratch *cs, uint32_t *idx, uint8_t *mask);
/* athena.c: one row's block (= one group) of n columns starting at b0. */
int qs_so_athena_block(const struct qs_kernels *k, const struct qs_so_cfg *cfg,
		       const float *u, size_t c, bool ident, float *wr, size_t b0, size_t n,
		       struct qs_so_scratch *cs, uint8_t *codes, uint16_t *scale,
		       uint16_t *min, float *err);

/* The whole prepared state of prep (factor U, permutation, dead flags),
 * for a scheme that runs its own column loop on it (claq.c); *identity set
 * when it was prepared without a Hessian (then only perm and dead are
 * meaningful: the identity order and no dead column).  -QS_EUSAGE when
 * prep was not made by qs_so_prepare for cols columns.  A quantized
 * position p's error e (w - q) goes onto a later position k as w_k -= e /
 * U[p][p] * U[p][k], GPTQ's update. */
int qs_so_prep_view(const void *prep, uint64_t cols, struct qs_so_prep *v, bool *identity);

#endif /* QS_SECOND_ORDER_H */
