/* second_order.h - the engine shared by the second-order schemes gptq.c and
 * athena.c: per-tensor preparation of the inverse Hessian's Cholesky factor
 * and the column-by-column quantization with error feedback onto the rtn
 * grid (payload = rtn's layout, plus gptq's optional outlier table). */
#ifndef QS_SECOND_ORDER_H
#define QS_SECOND_ORDER_H

#include <stdbool.h>
#include <stdint.h>

#include "scheme.h"

/* Indices into struct qs_scheme.extra for both schemes. */
#define QS_SO_DAMP 0     /* dampening, units of 1e-4 of the mean diagonal */
#define QS_SO_ACTORDER 1 /* gptq: 1 = columns in descending diag(H) order */
#define QS_SO_ALPHA 2    /* gptq: outlier fraction, units of 1e-4 */
#define QS_SO_SEARCH 3   /* athena: clipped ranges tried per group */

struct qs_so_cfg {
	unsigned bits, group;
	unsigned damp_e4;
	bool actorder;
	unsigned alpha_e4;
	bool athena;        /* block = group, grid chosen by the block's loss */
	unsigned search;
};

void qs_so_cfg_of(const struct qs_scheme *s, bool athena, struct qs_so_cfg *cfg);
bool qs_so_cfg_ok(const struct qs_so_cfg *cfg);

uint64_t qs_so_prep_size(uint64_t cols);

/* The scheme operations both tables use (gptq.c); gptq or athena is told
 * apart by s->ops. */
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
/* prep NULL: as if H = I (no calibration statistics). */
int qs_so_quantize(const struct qs_so_cfg *cfg, const void *prep, const float *w,
		   uint64_t rows, uint64_t cols, uint8_t *out, void *scratch);
int qs_so_dequantize(const struct qs_so_cfg *cfg, const uint8_t *in, uint64_t rows,
		     uint64_t cols, float *out, void *scratch);
uint64_t qs_so_payload_size(const struct qs_so_cfg *cfg, uint64_t rows, uint64_t cols);
uint64_t qs_so_scratch_size(const struct qs_so_cfg *cfg, uint64_t rows, uint64_t cols);
/* Outliers a row keeps: round(alpha * cols), halves up. */
uint64_t qs_so_outliers_per_row(const struct qs_so_cfg *cfg, uint64_t cols);

/* The prepared factor of a tensor (prepared without actorder), for a
 * scheme that runs its own column loop on it (claq.c): *u = U, the
 * upper Cholesky factor of H^-1 (cols x cols, row-major), or NULL when the
 * tensor had no Hessian (H = I); *dead = the dead-column flags.  A
 * quantized column j's error e (w - q) goes onto a later column k as
 * w_k -= e / U[j][j] * U[j][k], GPTQ's update. */
int qs_so_prep_factor(const void *prep, uint64_t cols, const float **u, const uint8_t **dead);

/* The parameters gptq and athena share (bits, group, damp): 0 when key
 * is one of them and val is valid, -QS_EUSAGE when invalid (the message
 * names the scheme), 1 when key is none of them. */
int qs_so_common_arg(struct qs_scheme *s, const char *key, const char *val,
		     struct qs_diag *diag);

#endif /* QS_SECOND_ORDER_H */
