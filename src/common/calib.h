/* calib.h - calibration statistics files: per-tensor importance vectors
 * (--importance: llama.cpp imatrix GGUF or legacy .dat, or safetensors) and
 * Hessians (--hessian: safetensors of H = X^T X or its diagonal).  The
 * pipeline asks for one tensor at a time by its Hugging Face name, so a
 * reader keeps only an index in memory and reads each entry on demand. */
#ifndef QS_CALIB_H
#define QS_CALIB_H

#include <stdbool.h>
#include <stdint.h>

#include "qshard.h"

struct qs_importance;  /* importance.c */
struct qs_hessian;     /* hessian.c */

/* Opens an importance file, detecting its kind from its first bytes
 * ("GGUF" magic, safetensors, else legacy imatrix .dat). */
int qs_importance_open(const char *path, struct qs_importance **out, struct qs_diag *diag);
void qs_importance_free(struct qs_importance *imp);
/* Fills dst[cols] with the mean squared input activation of each input
 * column of tensor (a Hugging Face name; llama.cpp names are mapped).
 * Returns 1 when found, 0 when the file has no entry for it (the caller
 * falls back to weight-only with a notice), negative on error (a size
 * that is not cols: the message names the file and the tensor). */
int qs_importance_get(const struct qs_importance *imp, const char *tensor, uint64_t cols,
		      float *dst, struct qs_diag *diag);

int qs_hessian_open(const char *path, struct qs_hessian **out, struct qs_diag *diag);
void qs_hessian_free(struct qs_hessian *h);
/* Fills dst[cols*cols] with H for tensor, row-major.  An entry holding
 * only the diagonal (f32[cols]) gives a diagonal matrix and sets
 * *diag_only.  1 found, 0 missing, negative on error (as above). */
int qs_hessian_get(const struct qs_hessian *h, const char *tensor, uint64_t cols, float *dst,
		   bool *diag_only, struct qs_diag *diag);
/* Stacked MoE experts ([E, rows, cols] tensors): true when the file holds
 * a Hessian per expert for tensor, either stacked under its name
 * (f32[E, cols, cols], or f32[E, cols] for diagonals) or one per expert
 * under the per-expert Hugging Face name ("mlp.experts.gate_proj.weight"
 * -> "mlp.experts.E.gate_proj.weight"). */
bool qs_hessian_has_experts(const struct qs_hessian *h, const char *tensor);
/* Expert `expert` (of nexperts) of tensor, as qs_hessian_get: 1 found,
 * 0 missing (no per-expert entry for it), negative on error (a stacked
 * entry of another shape: the message names the file and the tensor). */
int qs_hessian_get_expert(const struct qs_hessian *h, const char *tensor, uint64_t expert,
			  uint64_t nexperts, uint64_t cols, float *dst, bool *diag_only,
			  struct qs_diag *diag);

#endif /* QS_CALIB_H */
