/* plan.h - the conversion plan: for every tensor of the checkpoint, its
 * scheme (from --scheme/--keep rules), its row/column view and its cut into
 * row-chunks that fit the memory window; plus the fingerprints that resume
 * compares.  Built once before any tensor byte is read. */
#ifndef QS_PLAN_H
#define QS_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include "calib.h"
#include "qshard.h"
#include "safetensors.h"
#include "scaled_source.h"
#include "scheme.h"

struct qs_plan_tensor {
	const struct qs_st_tensor *src;  /* points into the checkpoint */
	bool raw;                        /* stored as the source bytes */
	struct qs_scheme scheme;         /* valid when !raw */
	uint64_t rows, cols;             /* rows: product of all but the last dim */
	uint64_t row_bytes;              /* source bytes per row */
	uint64_t rows_per_chunk;         /* every chunk but a matrix's last has this many */
	uint32_t nchunks;                /* 0 for zero-size tensors */
	/* Rows of one matrix.  A 3-D [E, rows, cols] tensor (stacked MoE
	 * experts) is E matrices: chunks never span two, so a scheme that
	 * looks across rows (claq's column code books) never mixes experts.
	 * Equals rows for 2-D tensors. */
	uint64_t matrix_rows;
	/* Source decoding (scaled_source.h): an FP8 weight reads its scale
	 * tensor's rows beside its own; that scale is then consumed (no
	 * record, never quantized on its own). */
	struct qs_src_pairing pairing;
	const struct qs_st_tensor *companion;  /* scale read with this tensor, or NULL */
	bool consumed;                         /* folded into its weight */
	/* Per-tensor state of a calibration-aware scheme (scheme.h), laid
	 * out in one buffer: the scheme's prep_size bytes, then the
	 * importance vector and the Hessian when the scheme wants them and
	 * a file was given.  All zero for other tensors. */
	uint64_t prep_state, prep_importance, prep_hessian, prep_total;
	/* Stacked experts whose --hessian file holds one Hessian per expert
	 * (qs_plan_mark_experts): the state is prepared anew for each
	 * matrix, from that expert's Hessian. */
	bool per_expert;
};

/* Byte sizes of the buffers one chunk needs; all come from the window. */
struct qs_chunk_footprint {
	uint64_t input;       /* source bytes, plus alignment slack for O_DIRECT */
	uint64_t aux;         /* the companion's bytes for these rows, plus slack */
	uint64_t work;        /* f32 weights (0 for raw) */
	uint64_t payload;     /* packed payload (0 for raw: the input is it) */
	uint64_t compressed;  /* ZSTD_compressBound(payload) */
	uint64_t scratch;     /* scheme scratch */
	uint64_t total;       /* sum, each part aligned */
};

struct qs_plan {
	struct qs_plan_tensor *tensors;
	size_t ntensors;
	uint64_t chunk_source_target;  /* source bytes per chunk aimed at */
	char *options_text;            /* canonical options (header, fingerprint) */
	char *input_text;              /* canonical input description (header) */
	uint64_t input_fp, options_fp;
	uint64_t total_chunks;
	uint64_t max_footprint;        /* largest chunk footprint in the plan */
	uint64_t max_payload;          /* bound on one chunk's payload (zstd context size) */
	uint64_t chunking_fp;          /* xxh3 of every tensor's rows per chunk */
	uint64_t max_prep;             /* largest per-tensor state (outside the ring) */
	uint64_t ring;                 /* window left for chunks: window - max_prep */
	/* One zstd compression context (qs_convert_plan sizes it for
	 * max_payload at the level) and how many the run creates. */
	uint64_t cctx_bytes;
	unsigned contexts;
	/* Logical tensors the checkpoint holds in two parts (MXFP4 "P" of
	 * "P_blocks" + "P_scales"); plan_tensor.src points here for them. */
	struct qs_st_tensor *logical;
	size_t nlogical;
};

/* Alignment of every buffer carved from the window: the page size, so the
 * input buffers meet O_DIRECT's alignment rules. */
#define QS_BUF_ALIGN 4096u

/* How --memory is shared out.  Every share is a function of --memory
 * alone, never of -T or --level, so the chunking (and with it the output
 * bytes) is the same for any thread count (DESIGN.md, Deterministic
 * output):
 *   QS_WINDOW_OVERHEAD          job structs, records, the reader's state
 *   qs_memory_zstd_share()      a quarter of the rest: the workers' zstd
 *                               compression contexts (as many as fit; the
 *                               other workers wait for a free one)
 *   qs_memory_chunk_window()    the other three quarters: per-tensor scheme
 *                               state and the chunk buffers (the ring) */
#define QS_WINDOW_OVERHEAD (8ull << 20)

static inline uint64_t qs_memory_zstd_share(uint64_t memory)
{
	return memory > QS_WINDOW_OVERHEAD ? (memory - QS_WINDOW_OVERHEAD) / 4 : 0;
}

static inline uint64_t qs_memory_chunk_window(uint64_t memory)
{
	return memory > QS_WINDOW_OVERHEAD
		       ? memory - QS_WINDOW_OVERHEAD - qs_memory_zstd_share(memory)
		       : 0;
}

/* The smallest --memory whose chunk window holds `window` bytes (for the
 * figure an error message gives). */
static inline uint64_t qs_memory_for_window(uint64_t window)
{
	return QS_WINDOW_OVERHEAD + (window * 4 + 2) / 3;
}

/* window: the bytes of --memory left for chunk buffers and per-tensor
 * scheme state (what the caller has not set aside for threads). */
int qs_plan_build(const struct qs_checkpoint *ckpt, const struct qs_convert_opts *opts,
		  uint64_t window, struct qs_plan *plan, struct qs_diag *diag);
void qs_plan_release(struct qs_plan *plan);

/* Lines of the input description beyond shards and tensors (input_fp.c):
 * carried files and statistics files (the chunking is in the options
 * fingerprint).  malloc'd;
 * NULL when out of memory. */
char *qs_input_extras(const struct qs_checkpoint *ckpt, const struct qs_convert_opts *opts);

/* The part of the ring a run with `threads` workers maps and cycles
 * through: more chunks in flight than the workers and the read-ahead can
 * use only cost first-touch page faults and RSS.  Output bytes do not
 * depend on it. */
static inline uint64_t qs_plan_ring_in_use(const struct qs_plan *plan, unsigned threads)
{
	uint64_t r = plan->max_footprint * (2ull * threads + 4);
	return r > plan->ring || r == 0 ? plan->ring : r;
}

/* What a conversion of plan keeps resident at its peak, piece by piece
 * (convert --plan-only, inspect).  Every figure comes from the sizes the
 * pipeline allocates by, not from a model of them. */
struct qs_plan_memory {
	uint64_t ring;        /* window pages the chunks touch (see qs_plan_memory) */
	uint64_t state;       /* per-tensor scheme state buffer (max_prep) */
	uint64_t zstd;        /* contexts x cctx_bytes */
	uint64_t threads;     /* what the reader (reader_bytes) and each worker
			       * (worker_bytes) keep of their own: stacks, BLAS
			       * buffers; measured by estimate.c */
	uint64_t baseline;    /* the process before the pipeline (caller's figure) */
	uint64_t total;
};

/* Fills m for a run of plan with `threads` workers (the reader runs
 * LAPACK in prepare, the workers BLAS in quantize) that reads chunks
 * [from[i], end[i]) of each tensor i.  The ring is mapped lazily
 * (window.c): its resident pages are the farthest any chunk reaches.
 * Where a chunk lands follows from the chunks before it alone (the FIFO
 * wraps to 0 when a chunk does not fit at the end), as long as the ring
 * never empties, which a reader ahead of the workers ensures; each
 * calibration-aware tensor starts on an empty ring (pipeline.c). */
void qs_plan_memory(const struct qs_plan *plan, unsigned threads, const uint32_t *from,
		    const uint32_t *end, uint64_t baseline, uint64_t reader_bytes,
		    uint64_t worker_bytes, struct qs_plan_memory *m);

/* Sets tensor.per_expert from the --hessian file h (NULL: none): the plan
 * itself reads only the checkpoint, this reads only h's header.  Called
 * before the pipeline runs and by the plan listing alike. */
void qs_plan_mark_experts(struct qs_plan *plan, const struct qs_hessian *h);

/* A MoE router tensor, kept at source precision by default. */
bool qs_is_moe_router(const char *name);

/* The footprint of a chunk of `rows` rows of t. */
void qs_plan_footprint(const struct qs_plan_tensor *t, uint64_t rows,
		       struct qs_chunk_footprint *fp);
/* Whether tensor t is quantized straight from its source bytes (the
 * scheme's quantize_src): no companion scale, and no preparation to run
 * (qs_plan_needs_prep). */
bool qs_plan_one_pass(const struct qs_plan_tensor *t);
/* Whether the pipeline runs t's preparation (its state, prep_total
 * bytes, in the window's state area): a calibration-aware tensor, unless
 * it loads no statistics and its scheme's preparation only digests them
 * (prep_for_stats_only: adpq, daq), when quantize() is used instead.  A
 * prepared tensor starts on an empty ring (the reader waits for the
 * previous tensor's state to be freed); the others stream on behind their
 * neighbours (issue 16: that wait idled the workers at every tensor
 * boundary). */
bool qs_plan_needs_prep(const struct qs_plan_tensor *t);
/* The buffers the pipeline allocates for a chunk of t: the footprint
 * with an f32 work buffer of one row, not the chunk's, when t is one-pass
 * (the row quantize_src may decode into).  The chunking is still
 * cut by qs_plan_footprint, so it (and the output) does not depend on
 * which kernel path a tensor takes. */
void qs_plan_chunk_buffers(const struct qs_plan_tensor *t, uint64_t rows,
			   struct qs_chunk_footprint *fp);

/* Chunks per matrix (plan_tensor.matrix_rows). */
static inline uint64_t qs_plan_chunks_per_matrix(const struct qs_plan_tensor *t)
{
	return (t->matrix_rows + t->rows_per_chunk - 1) / t->rows_per_chunk;
}

/* First row (of the tensor's rows x cols view) of chunk c of t. */
static inline uint64_t qs_plan_chunk_begin(const struct qs_plan_tensor *t, uint32_t c)
{
	uint64_t cpm = qs_plan_chunks_per_matrix(t);
	return (c / cpm) * t->matrix_rows + (c % cpm) * t->rows_per_chunk;
}

/* Rows in chunk c of t. */
static inline uint64_t qs_plan_chunk_rows(const struct qs_plan_tensor *t, uint32_t c)
{
	uint64_t cpm = qs_plan_chunks_per_matrix(t);
	uint64_t left = t->matrix_rows - (c % cpm) * t->rows_per_chunk;
	return left < t->rows_per_chunk ? left : t->rows_per_chunk;
}

/* The companion's byte range that chunk c needs (plan_tensor.companion):
 * the block rows its rows fall in, or the whole per-tensor scale. */
void qs_plan_chunk_aux(const struct qs_plan_tensor *t, uint32_t c, uint64_t *offset,
		       uint64_t *len);

#endif /* QS_PLAN_H */
