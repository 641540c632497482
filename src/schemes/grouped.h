/* grouped.h - the chunk layout rtn, daq and gptq/athena share: per group of
 * `group` weights along a row two fp16 values (rtn: scale and min; daq:
 * scale and centre), all first values of the chunk then all second values
 * (row-major), then R*C codes of `bits` bits as one LSB-first bitstream
 * (row r at bit r*C*bits), zero-padded to a byte:
 *   payload = 4*R*G + ceil(R*C*bits / 8), G = ceil(C / group).
 * Quantize and dequantize work a row at a time in scratch holding the
 * row's two fp16 arrays and its codes as bytes. */
#ifndef QS_GROUPED_H
#define QS_GROUPED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels.h"
#include "util.h"
#include "wksp.h"

static inline uint64_t qs_grouped_groups(unsigned group, uint64_t cols)
{
	return cols / group + (cols % group != 0);
}

/* UINT64_MAX when the size does not fit 64 bits (no real chunk does). */
static inline uint64_t qs_grouped_payload_size(unsigned bits, unsigned group, uint64_t rows,
					       uint64_t cols)
{
	uint64_t ng, meta, nw, nbits, total;
	if (!qs_mul_u64(rows, qs_grouped_groups(group, cols), &ng) || !qs_mul_u64(ng, 4, &meta) ||
	    !qs_mul_u64(rows, cols, &nw) || !qs_mul_u64(nw, bits, &nbits) ||
	    !qs_add_u64(meta, nbits / 8 + (nbits % 8 != 0), &total))
		return UINT64_MAX;
	return total;
}

struct qs_grouped_row {
	uint16_t *a, *b;   /* the row's first and second fp16 per group */
	uint8_t *codes;    /* the row's codes, one a byte */
};

static inline struct qs_grouped_row qs_grouped_carve(struct qs_wksp *w, uint64_t ng,
						     uint64_t cols)
{
	struct qs_grouped_row r;
	r.a = qs_wksp_take(w, 2 * ng, QS_WKSP_ALIGN);
	r.b = qs_wksp_take(w, 2 * ng, 2);
	r.codes = qs_wksp_take(w, cols, 1);
	return r;
}

/* The scratch for one row, rounded to QS_WKSP_ALIGN (the value rtn and daq
 * always reported: the memory window depends on it). */
static inline uint64_t qs_grouped_scratch_size(unsigned group, uint64_t cols)
{
	if (cols > UINT64_MAX / 2)
		return UINT64_MAX;
	uint64_t need = QS_WKSP_ALIGN + 4 * qs_grouped_groups(group, cols) + cols;
	return (need + QS_WKSP_ALIGN - 1) / QS_WKSP_ALIGN * QS_WKSP_ALIGN;
}

/* True when every index of a rows x cols chunk and its payload fit size_t
 * (what quantize and dequantize check before carving). */
static inline bool qs_grouped_fits(unsigned bits, unsigned group, uint64_t rows, uint64_t cols)
{
	uint64_t nw, nbits;
	return qs_mul_u64(rows, cols, &nw) && qs_mul_u64(nw, bits, &nbits) && nw <= SIZE_MAX &&
	       qs_grouped_payload_size(bits, group, rows, cols) <= SIZE_MAX;
}

/* A chunk being quantized or dequantized a row at a time: its sizes and
 * the row scratch (qs_grouped_scratch_size bytes) carved. */
struct qs_grouped_chunk {
	size_t rows, cols, ng;
	unsigned bits;
	struct qs_grouped_row t;
};

static inline struct qs_grouped_chunk qs_grouped_chunk_of(unsigned bits, unsigned group,
							  uint64_t rows, uint64_t cols,
							  void *scratch)
{
	struct qs_grouped_chunk ch;
	struct qs_wksp w;
	ch.rows = (size_t)rows;
	ch.cols = (size_t)cols;
	ch.ng = (size_t)qs_grouped_groups(group, cols);
	ch.bits = bits;
	qs_wksp_init(&w, scratch);
	ch.t = qs_grouped_carve(&w, ch.ng, ch.cols);
	return ch;
}

/* Row r of the scratch (its two fp16 per group and its codes) into the
 * payload out. */
static inline void qs_grouped_put_row(const struct qs_grouped_chunk *ch,
				      const struct qs_kernels *k, uint8_t *out, size_t r)
{
	uint8_t *first = out, *second = out + 2 * ch->rows * ch->ng;
	for (size_t g = 0; g < ch->ng; g++) {
		qs_put_le16(first + 2 * (r * ch->ng + g), ch->t.a[g]);
		qs_put_le16(second + 2 * (r * ch->ng + g), ch->t.b[g]);
	}
	k->pack_bits(ch->t.codes, ch->cols, ch->bits, out + 4 * ch->rows * ch->ng,
		     (uint64_t)r * ch->cols * ch->bits);
}

/* Row r of the payload in into the scratch. */
static inline void qs_grouped_get_row(struct qs_grouped_chunk *ch, const struct qs_kernels *k,
				      const uint8_t *in, size_t r)
{
	const uint8_t *first = in, *second = in + 2 * ch->rows * ch->ng;
	for (size_t g = 0; g < ch->ng; g++) {
		ch->t.a[g] = qs_get_le16(first + 2 * (r * ch->ng + g));
		ch->t.b[g] = qs_get_le16(second + 2 * (r * ch->ng + g));
	}
	k->unpack_bits(in + 4 * ch->rows * ch->ng, (uint64_t)r * ch->cols * ch->bits, ch->cols,
		       ch->bits, ch->t.codes);
}

#endif /* QS_GROUPED_H */
