/* parts.h - slicing the plan for convert --part K/N.  The plan's row-chunks
 * (a tensor without rows counts as one unit of no cost) form one sequence in
 * plan order; part K gets the contiguous run of it whose cumulated work is
 * nearest to [(K-1)/N, K/N) of the total, so a huge tensor may be split
 * between neighbouring parts at a chunk boundary.  Work is a fixed model
 * (never measured), so the slicing depends only on the plan, which depends
 * only on the input and the options. */
#ifndef QS_PARTS_H
#define QS_PARTS_H

#include <stdbool.h>
#include <stdint.h>

#include "plan.h"

/* Work units are estimated picoseconds on one core: reading, converting,
 * quantizing and compressing a source byte of a first-order scheme (about
 * 1 GB/s per core) ... */
#define QS_PART_BYTE_COST 1000u
/* ... and, for second-order schemes (gptq, athena), the error propagation:
 * per row, every column updates the columns after it (cols^2 / 2 multiply-
 * adds), so the cost grows with rows x cols^2.  The weight is fitted to one
 * measurement (contrib/bench/bench-parts: gptq on two 1b-preset layers took
 * 31.3 and 30.7 core-seconds in two runs here; the model gives 30.5); it also stands
 * for the per-tensor Cholesky work, which the model does not count apart.
 * Only the balance depends on it, never the bytes. */
#define QS_PART_SECOND_ORDER_WEIGHT 64u

struct qs_part_slice {
	unsigned k, n;
	/* tensors [tensor_begin, tensor_end); of the first only chunks from
	 * chunk_begin, of the last only chunks before chunk_end */
	size_t tensor_begin, tensor_end;
	uint32_t chunk_begin, chunk_end;
	uint64_t chunks;
	uint64_t cost, total_cost;
	uint64_t source_bytes;  /* source bytes of the slice's chunks */
	uint64_t hash_bytes;    /* bytes read only to checksum a split tensor */
};

/* True when t's scheme propagates error with a Hessian (cost rows x cols^2). */
bool qs_part_second_order(const struct qs_plan_tensor *t);
/* The work of chunk c of t. */
uint64_t qs_part_chunk_cost(const struct qs_plan_tensor *t, uint32_t c);

/* Slice k (1-based) of n of plan.  -QS_EUSAGE for a bad k/n. */
int qs_part_slice(const struct qs_plan *plan, unsigned k, unsigned n,
		  struct qs_part_slice *s);

/* The chunks [*begin, *end) of tensor ti (inside the slice) that the part
 * converts, and *read_from: the first chunk it reads.  That is *begin,
 * except for the piece that ends a split tensor: it also reads the rows
 * before its own (without converting them) so its record carries the
 * checksum of the tensor's whole source, as a single convert's does. */
void qs_part_tensor_chunks(const struct qs_part_slice *s, const struct qs_plan *plan,
			   size_t ti, uint32_t *begin, uint32_t *end, uint32_t *read_from);

#endif /* QS_PARTS_H */
