/* gguf_blocks.h - the ggml quantized block formats qshard writes natively
 * (the gguf scheme, schemes/gguf.c): which types there are, how many
 * weights a block holds and how many bytes it takes.  The byte layouts are
 * ggml's (ggml-common.h, block_q8_0 ... block_q6_K), described field by
 * field where they are packed (gguf_impl.h); the GGUF export copies these
 * blocks into tensor data byte for byte.
 *
 * The order of enum qs_gguf_type is qshard's own (it is not ggml's type
 * id, which gguf_types.h maps); it is the order `--scheme gguf:type=` lists
 * the names in.
 */
#ifndef QS_GGUF_BLOCKS_H
#define QS_GGUF_BLOCKS_H

#include <stddef.h>
#include <stdint.h>

enum qs_gguf_type {
	QS_GGUF_Q8_0,
	QS_GGUF_Q4_0,
	QS_GGUF_Q4_1,
	QS_GGUF_Q5_0,
	QS_GGUF_Q5_1,
	QS_GGUF_Q2_K,
	QS_GGUF_Q3_K,
	QS_GGUF_Q4_K,
	QS_GGUF_Q5_K,
	QS_GGUF_Q6_K,
	QS_GGUF_NTYPES
};

/* Weights per block: 32 for the legacy types, a 256-weight super-block
 * (QK_K) for the K types. */
#define QS_GGUF_QK 32u
#define QS_GGUF_QK_K 256u

static inline unsigned qs_gguf_block_weights(unsigned type)
{
	return type >= QS_GGUF_Q2_K ? QS_GGUF_QK_K : QS_GGUF_QK;
}

/* sizeof(block_*) in ggml-common.h: fp16 scales plus packed codes. */
static inline unsigned qs_gguf_block_bytes(unsigned type)
{
	static const unsigned char bytes[QS_GGUF_NTYPES] = {
		34,  /* q8_0: d, qs[32] */
		18,  /* q4_0: d, qs[16] */
		20,  /* q4_1: d, m, qs[16] */
		22,  /* q5_0: d, qh[4], qs[16] */
		24,  /* q5_1: d, m, qh[4], qs[16] */
		84,  /* q2_K: scales[16], qs[64], d, dmin */
		110, /* q3_K: hmask[32], qs[64], scales[12], d */
		144, /* q4_K: d, dmin, scales[12], qs[128] */
		176, /* q5_K: d, dmin, scales[12], qh[32], qs[128] */
		210, /* q6_K: ql[128], qh[64], scales[16], d */
	};
	return type < QS_GGUF_NTYPES ? bytes[type] : 0;
}

/* The packing of ggml's blocks (gguf_pack.c), shared by every kernel
 * instance and by the gguf scheme's GPTQ pass.  Codes are unsigned, 0 ..
 * 2^bits - 1, in element order (a block's signed levels plus their
 * offset: q8_0 +128, q4_0 +8, q5_0 +16, q3_K +4, q6_K +32).
 * pack_codes rewrites only the code bits of a block (its scales stay). */
void qs_gguf_pack_codes(unsigned type, const uint8_t *c, uint8_t *block);
void qs_gguf_unpack_codes(unsigned type, const uint8_t *block, uint8_t *c);
/* q4_K/q5_K: eight 6-bit scales and mins in 12 bytes. */
void qs_gguf_pack_k4_scales(const uint8_t *sc, const uint8_t *mn, uint8_t *q);
void qs_gguf_unpack_k4_scales(const uint8_t *q, uint8_t *sc, uint8_t *mn);
/* q3_K: sixteen signed scales -32..31 in 12 bytes. */
void qs_gguf_pack_q3_scales(const int8_t *sc, uint8_t *q);
void qs_gguf_unpack_q3_scales(const uint8_t *q, int8_t *sc);
/* The grid of a block: element i dequantizes to about a[i] * c + b[i]
 * for its code c in 0..*cmax (exactly up to the rounding order of the
 * type's dequantization). */
void qs_gguf_block_grid(unsigned type, const uint8_t *block, float *a, float *b, unsigned *cmax);

#endif /* QS_GGUF_BLOCKS_H */
