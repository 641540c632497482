/* pipeline.h - the streaming conversion engine of DESIGN.md:
 * reader thread -> worker threads -> writer (the calling thread), all
 * buffers from one bounded window, frames written in plan order. */
#ifndef QS_PIPELINE_H
#define QS_PIPELINE_H

#include "calib.h"
#include "container.h"
#include "parts.h"
#include "plan.h"
#include "qshard.h"

struct qs_pipeline_args {
	const struct qs_checkpoint *ckpt;
	const struct qs_plan *plan;
	const struct qs_convert_opts *opts;
	struct qs_cwriter *writer;
	size_t first_tensor;     /* tensors before it were kept by --resume */
	uint64_t window_bytes;   /* ring size (the state area is plan->max_prep) */
	const struct qs_importance *importance;  /* --importance, or NULL */
	const struct qs_hessian *hessian;        /* --hessian, or NULL */
	unsigned threads;
	/* zstd compression contexts shared by the workers (1..threads): as
	 * many as the share of --memory set aside for them holds (plan.h) */
	unsigned contexts;
	int level;
	/* --part: convert only this slice of the plan (first_tensor is then
	 * inside it), or NULL for all of it */
	const struct qs_part_slice *slice;
};

struct qs_pipeline_stats {
	struct qs_stage_seconds stages;
	uint64_t bytes_read;
	uint64_t peak_window;
	enum qs_io_backend io_used;
};

/* Bytes of one static zstd compression context for frames of at most
 * max_payload bytes at level, and the same rounded up to the window's
 * carving alignment (what each context takes of --memory's share). */
uint64_t qs_pipeline_cctx_bytes(int level, uint64_t max_payload);
uint64_t qs_pipeline_cctx_stride(int level, uint64_t max_payload);

int qs_pipeline_run(const struct qs_pipeline_args *args, struct qs_pipeline_stats *stats,
		    struct qs_diag *diag);

#endif /* QS_PIPELINE_H */
