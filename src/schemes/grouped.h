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

#include <stdint.h>

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

#endif /* QS_GROUPED_H */
