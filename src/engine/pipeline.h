/* pipeline.h - the streaming conversion engine of DESIGN.md:
 * reader thread -> worker threads -> writer (the calling thread), all
 * buffers from one bounded window, frames written in plan order. */
#ifndef QS_PIPELINE_H
#define QS_PIPELINE_H

#include "calib.h"
#include "container.h"
#include "plan.h"
#include "qshard.h"

struct qs_pipeline_args {
	const struct qs_checkpoint *ckpt;
	const struct qs_plan *plan;
	const struct qs_convert_opts *opts;
	struct qs_cwriter *writer;
	size_t first_tensor;     /* tensors before it were kept by --resume */
	uint64_t window_bytes;   /* ring size */
	const struct qs_importance *importance;  /* --importance, or NULL */
	const struct qs_hessian *hessian;        /* --hessian, or NULL */
	unsigned threads;
	/* zstd compression contexts shared by the workers (1..threads): as
	 * many as the share of --memory set aside for them holds (plan.h) */
	unsigned contexts;
	int level;
};

struct qs_pipeline_stats {
	uint64_t bytes_read;
	uint64_t peak_window;
	enum qs_io_backend io_used;
};

int qs_pipeline_run(const struct qs_pipeline_args *args, struct qs_pipeline_stats *stats,
		    struct qs_diag *diag);

#endif /* QS_PIPELINE_H */
