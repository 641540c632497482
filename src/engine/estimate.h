/* estimate.h - how long a plan will take on this machine, from a quick timed
 * sample of each of its schemes' kernels (convert --plan-only).  Only an
 * estimate: it times the quantize kernels on synthetic weights for a few
 * milliseconds each and adds a fixed per-byte cost for the rest of the
 * pipeline; the disk is not sampled (dd tells that better). */
#ifndef QS_ESTIMATE_H
#define QS_ESTIMATE_H

#include <stdint.h>

#include "plan.h"

struct qs_estimate {
	double *tensor_core_seconds;  /* per plan tensor: quantize + pipeline */
	/* per plan tensor: compressed / packed bytes of its scheme's sampled
	 * output at the run's zstd level (1 for raw tensors: their values
	 * are not read, and source floats barely compress at level 1) */
	double *tensor_zstd_ratio;
	double core_seconds;          /* sum */
	double wall_seconds;          /* core_seconds over the threads */
	double sample_seconds;        /* time the sampling itself took */
	/* Resident memory the samples left behind once their buffers were
	 * unmapped (each sample quantizes in a thread of its own, as a
	 * worker does): code_bytes, the kernels' code and tables, once a
	 * process; worker_bytes, the most a quantizing thread added (its
	 * stack, BLAS's packing buffers: once per worker); reader_bytes, the
	 * most prepare added (LAPACK's buffers, in the reader thread). */
	uint64_t code_bytes, worker_bytes, reader_bytes;
};

/* Resident bytes of this process now (/proc/self/statm), 0 when unknown. */
uint64_t qs_resident_bytes(void);

/* Times every distinct scheme of plan (a few rows of its widest tensor),
 * compresses its output at zstd `level`, and estimates each tensor's cost
 * and compression.  0 or -ENOMEM. */
int qs_estimate_plan(const struct qs_plan *plan, unsigned threads, int level,
		     struct qs_estimate *est);
void qs_estimate_release(struct qs_estimate *est);

#endif /* QS_ESTIMATE_H */
