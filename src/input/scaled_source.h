/* scaled_source.h - source tensors whose values are not their bytes alone:
 * FP8 weights that ship with a scale tensor (DeepSeek-V3/R1 block scales,
 * per-tensor scales of other FP8 checkpoints), and OCP MXFP4 weights
 * (gpt-oss experts) split into a codes and a scales tensor.
 *
 * Such a weight W (F8_E4M3 or F8_E5M2) has a companion S of F32 or BF16:
 *   - block scales: S has shape [ceil(rows/br), ceil(cols/bc)] and
 *     value(i, j) = fp8(W[i][j]) * S[i / br][j / bc], blocks at the right
 *     and bottom edges being partial (DeepSeek-V3's inference/kernel.py
 *     weight_dequant; the block size is config.json's
 *     quantization_config.weight_block_size, 128x128 when absent);
 *   - a per-tensor scale: S holds one value and multiplies every weight.
 * The companion is named after the weight: "P.weight" pairs with
 * "P.weight_scale_inv" (DeepSeek's spelling; despite the name it is the
 * multiplier) or "P.weight_scale".  Both spellings multiply.
 *
 * A quantized FP8 weight consumes its companion: the payload encodes the
 * dequantized product, so the scale tensor is neither stored nor quantized
 * on its own.  A weight kept with --keep keeps its companion beside it,
 * byte for byte.
 *
 * MXFP4 (OCP Microscaling Formats (MX) Specification v1.0, 2023): the
 * weight "P" of logical shape [..., rows, cols] is stored as "P_blocks",
 * U8 [..., rows, cols / 32, 16] (32 e2m1 codes a block, the low nibble of
 * each byte first), and "P_scales", U8 [..., rows, cols / 32] (E8M0:
 * value = e2m1 * 2^(scale - 127)).  A quantized MXFP4 weight is planned
 * and recorded as "P" with dtype MXFP4 and its logical shape; both source
 * tensors are consumed.  A kept one keeps both, byte for byte.
 */
#ifndef QS_SCALED_SOURCE_H
#define QS_SCALED_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "qshard.h"
#include "safetensors.h"

enum qs_src_encoding {
	QS_SRC_PLAIN = 0,     /* the bytes are the values (BF16/F16/F32/...) */
	QS_SRC_FP8_BLOCK,     /* FP8 times a block scale */
	QS_SRC_FP8_TENSOR,    /* FP8 times one scale */
	QS_SRC_MXFP4,         /* "P_blocks" with "P_scales" */
};

/* How one checkpoint tensor is read. */
struct qs_src_pairing {
	enum qs_src_encoding enc;
	size_t companion;            /* tensor index of the scale, or SIZE_MAX */
	size_t scale_of;             /* for a scale tensor: its weight, else SIZE_MAX */
	uint32_t block_rows, block_cols;  /* QS_SRC_FP8_BLOCK */
};

#define QS_FP8_BLOCK_DEFAULT 128u

/* Pairs every FP8 weight of ck with its scale tensor (out has
 * ck->ntensors entries).  An FP8 tensor without a scale, a scale of the
 * wrong shape or dtype, or an unreadable quantization_config is an error
 * naming both tensors.  Pure function of the headers and config.json. */
int qs_src_pair_scales(const struct qs_checkpoint *ck, struct qs_src_pairing *out,
		       struct qs_diag *diag);

/* FP8 to f32, exactly (every FP8 value is an f32 value).
 * E4M3 is the OCP "fn" variant (no infinities; S.1111.111 is NaN), E5M2
 * follows IEEE 754 (OCP 8-bit Floating Point Specification, 2023). */
float qs_fp8_e4m3_to_f32(uint8_t v);
float qs_fp8_e5m2_to_f32(uint8_t v);
void qs_fp8_to_f32(enum qs_dtype dt, const uint8_t *in, float *out, size_t n);

/* Dequantizes rows [row0, row0 + rows) of a paired weight with cols
 * (logical) columns into out (rows * cols f32).  FP8: out = fp8 * scale,
 * scale holding the companion's values (F32 or BF16 per scale_dtype) for
 * block rows row0 / br .. (row0 + rows - 1) / br (all of it for a
 * per-tensor scale).  MXFP4: in holds the rows' blocks, scale their
 * E8M0 bytes. */
void qs_scaled_dequant_rows(const struct qs_src_pairing *pr, enum qs_dtype dt,
			    enum qs_dtype scale_dtype, const uint8_t *in, const void *scale,
			    uint64_t row0, uint64_t rows, uint64_t cols, float *out);

/* The logical tensor of an MXFP4 pair: name without "_blocks", dtype
 * MXFP4, shape [..., rows, cols], the codes' offset, shard and size.
 * name is malloc'd (NULL on ENOMEM). */
struct qs_st_tensor qs_mxfp4_logical(const struct qs_st_tensor *blocks);
#define QS_MXFP4_BLOCK 32u

/* The source checksum recorded for a quantized FP8 weight: xxh3-64 of the
 * 16 bytes le64(xxh3-64 of the weight's bytes) le64(xxh3-64 of the scale's
 * bytes), so verify --source notices a changed scale too (qshard.5). */
uint64_t qs_paired_source_xxh3(uint64_t weight_xxh3, uint64_t scale_xxh3);

#endif /* QS_SCALED_SOURCE_H */
