/* gguf_types.h - the ggml block types the gguf scheme writes, for the
 * scheme itself and for the GGUF export (which copies a gguf payload as
 * tensor data byte for byte, and requantizes other schemes' tensors with
 * qs_gguf_quantize_rows).
 *
 * A gguf row-chunk payload is exactly rows x (cols / block_weights) ggml
 * blocks, rows consecutive, nothing else (gguf.c).
 */
#ifndef QS_GGUF_TYPES_H
#define QS_GGUF_TYPES_H

#include <stdint.h>

#include "gguf_blocks.h"
#include "scheme.h"

struct qs_gguf_type_info {
	const char *name;        /* as in --scheme gguf:type=NAME: "q4_K" */
	unsigned ggml_type;      /* enum ggml_type in ggml.h: GGML_TYPE_Q4_K = 12 */
	unsigned block_weights;  /* 32 or 256 */
	unsigned block_bytes;    /* sizeof(block_q4_K) = 144 */
};

/* Indexed by enum qs_gguf_type. */
extern const struct qs_gguf_type_info qs_gguf_types[QS_GGUF_NTYPES];

/* The enum qs_gguf_type of a name (exact spelling, "q4_K"), or -1. */
int qs_gguf_type_find(const char *name);
/* The type a parsed scheme writes, or -1 when s is not a gguf scheme. */
int qs_gguf_type_of(const struct qs_scheme *s);
/* Bytes of one row of cols weights, or UINT64_MAX when cols is not a
 * multiple of the block or the size overflows. */
uint64_t qs_gguf_row_bytes(unsigned type, uint64_t cols);

/* Quantizes rows x cols f32 weights into rows * row_bytes bytes at dst.
 * importance: NULL, or cols mean squared input activations (an imatrix
 * entry; normalized here) that weight each column's error.  Returns 0,
 * -QS_EUSAGE (unknown type, cols not a multiple of the block),
 * -QS_EFORMAT (negative or non-finite importance), -QS_ETOOBIG (a block's
 * fp16 scale overflows) or -ENOMEM. */
int qs_gguf_quantize_rows(unsigned type, const float *src, uint64_t rows, uint64_t cols,
			  const float *importance, void *dst);
/* The exact inverse ggml computes (its to_float), into rows * cols f32. */
int qs_gguf_dequantize_rows(unsigned type, const void *src, uint64_t rows, uint64_t cols,
			    float *dst);

#endif /* QS_GGUF_TYPES_H */
