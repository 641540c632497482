/* qshard.h - public API of libqshard, the only header the CLI includes.
 *
 * Conventions (see DESIGN.md): every exported symbol starts with qs_;
 * functions return 0 (or a positive count) on success, -errno for system
 * failures and -QS_E* for format, checksum and usage errors.  The library
 * never prints: a function that can fail takes a struct qs_diag and fills it
 * with a one-line, lowercase message naming the file and tensor involved.
 */
#ifndef QSHARD_H
#define QSHARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- errors */

/* One list generates the enum and qs_strerror().  Codes start above every
 * errno value so -errno and -QS_E* never collide. */
#define QS_ERROR_LIST(X)                                                    \
	X(QS_EFORMAT, 2000, "malformed input")                              \
	X(QS_EDTYPE, 2001, "unsupported dtype")                             \
	X(QS_ECHECKSUM, 2002, "checksum mismatch")                          \
	X(QS_EUSAGE, 2003, "invalid usage")                                 \
	X(QS_ETOOBIG, 2004, "value too large")                              \
	X(QS_ENOMEM_WINDOW, 2005, "memory window too small")                \
	X(QS_EMISMATCH, 2006, "input or options differ from partial output") \
	X(QS_ENONFINITE, 2007, "tensor holds NaN or Inf values")            \
	X(QS_EINTERRUPTED, 2008, "interrupted")                             \
	X(QS_EEXIST, 2009, "partial output exists")                         \
	X(QS_ELOCKED, 2010, "output is locked by another process")          \
	X(QS_ESOURCE, 2011, "source changed while being read")

enum qs_error {
#define QS_ERROR_ENUM(name, value, text) name = value,
	QS_ERROR_LIST(QS_ERROR_ENUM)
#undef QS_ERROR_ENUM
};

/* Text for a negative return value (-errno or -QS_E*). */
const char *qs_strerror(int err);

/* A diagnostic filled by a failing library call: the message names the file
 * (in quotes) and, where there is one, the tensor. */
struct qs_diag {
	char msg[1024];
};

/* ---------------------------------------------------------------- dtypes */

/* Safetensors dtypes.  The numeric values are on-disk (tensor records): do
 * not renumber.  MXFP4 is no safetensors dtype: it names, in records, a
 * tensor that the source held as OCP MXFP4 "NAME_blocks" + "NAME_scales"
 * (gpt-oss); its element size is 0 since it packs 4.25 bits a value. */
#define QS_DTYPE_LIST(X)           \
	X(QS_DTYPE_BOOL, 0, "BOOL", 1)   \
	X(QS_DTYPE_U8, 1, "U8", 1)       \
	X(QS_DTYPE_I8, 2, "I8", 1)       \
	X(QS_DTYPE_U16, 3, "U16", 2)     \
	X(QS_DTYPE_I16, 4, "I16", 2)     \
	X(QS_DTYPE_F16, 5, "F16", 2)     \
	X(QS_DTYPE_BF16, 6, "BF16", 2)   \
	X(QS_DTYPE_U32, 7, "U32", 4)     \
	X(QS_DTYPE_I32, 8, "I32", 4)     \
	X(QS_DTYPE_F32, 9, "F32", 4)     \
	X(QS_DTYPE_U64, 10, "U64", 8)    \
	X(QS_DTYPE_I64, 11, "I64", 8)    \
	X(QS_DTYPE_F64, 12, "F64", 8)    \
	X(QS_DTYPE_F8_E4M3, 13, "F8_E4M3", 1) \
	X(QS_DTYPE_F8_E5M2, 14, "F8_E5M2", 1) \
	X(QS_DTYPE_MXFP4, 15, "MXFP4", 0)

enum qs_dtype {
#define QS_DTYPE_ENUM(name, value, text, size) name = value,
	QS_DTYPE_LIST(QS_DTYPE_ENUM)
#undef QS_DTYPE_ENUM
	QS_DTYPE_COUNT
};

/* "BF16" etc.; NULL for an out-of-range value. */
const char *qs_dtype_name(enum qs_dtype dtype);
/* Element size in bytes; 0 for an out-of-range value. */
unsigned qs_dtype_size(enum qs_dtype dtype);
/* Parses a safetensors dtype string; -QS_EDTYPE when unknown. */
int qs_dtype_parse(const char *text, enum qs_dtype *out);
/* True for the float dtypes qshard quantizes (BF16, F16, F32). */
bool qs_dtype_quantizable(enum qs_dtype dtype);

#define QS_MAX_DIMS 8

/* ------------------------------------------------------- tensor summaries */

/* One tensor as inspect shows it, from a checkpoint or a qshard file. */
struct qs_tensor_info {
	const char *name;
	enum qs_dtype dtype;     /* source dtype */
	uint32_t ndim;
	uint64_t shape[QS_MAX_DIMS];
	uint64_t source_bytes;   /* bytes in the source checkpoint */
	const char *file;        /* checkpoint: the shard holding it; else NULL */
	/* qshard files only (zero/NULL for checkpoints): */
	const char *scheme;      /* canonical spec, e.g. "rtn:bits=4,group=128", or "raw" */
	uint64_t payload_bytes;  /* uncompressed packed payload */
	uint64_t stored_bytes;   /* compressed frames on disk */
	uint32_t chunks;
	double bpw_nominal;      /* payload bits per weight (metadata included) */
	double bpw_on_disk;      /* stored bits per weight */
	uint64_t source_xxh3;    /* xxh3-64 of the source bytes */
};

/* ------------------------------------------------------------ checkpoints */

struct qs_checkpoint;

/* Opens a .safetensors file or a checkpoint folder (single file, or shards
 * named by model.safetensors.index.json) and validates every header. */
int qs_checkpoint_open(const char *path, struct qs_checkpoint **out,
		       struct qs_diag *diag);
void qs_checkpoint_free(struct qs_checkpoint *ckpt);
size_t qs_checkpoint_count(const struct qs_checkpoint *ckpt);
/* Tensors in plan order (shard, then offset). */
void qs_checkpoint_tensor(const struct qs_checkpoint *ckpt, size_t i,
			  struct qs_tensor_info *out);
/* Number of shard files, and the total bytes of all shards. */
size_t qs_checkpoint_shards(const struct qs_checkpoint *ckpt);
uint64_t qs_checkpoint_bytes(const struct qs_checkpoint *ckpt);

/* ------------------------------------------------------------- conversion */

enum qs_io_backend { QS_IO_AUTO = 0, QS_IO_URING, QS_IO_PREAD, QS_IO_MMAP };
enum qs_sync_mode { QS_SYNC_TENSOR = 0, QS_SYNC_END };

/* Progress reported by convert from the writer's thread. */
struct qs_progress {
	uint64_t tensors_done, tensors_total;
	uint64_t bytes_read, bytes_total;     /* source bytes */
	uint64_t bytes_written;               /* output file size so far */
	double seconds;                       /* since the start */
	const char *tensor;                   /* tensor just finished, or NULL */
	const char *notice;                   /* one-line notice (e.g. io fallback), or NULL */
};
typedef void (*qs_progress_fn)(const struct qs_progress *p, void *user);

struct qs_convert_opts {
	const char *input;            /* file or folder */
	const char *output;           /* final name; OUTPUT.partial while running */
	const char *const *schemes;   /* "[REGEX=]NAME[:k=v,...]", last match wins */
	size_t nschemes;
	const char *scheme_preset;    /* "q4_k_m" etc. (llama.cpp's mixes, gguf scheme), or NULL;
				       * --scheme rules still win where they match */
	const char *const *keeps;     /* REGEX: tensors stored unquantized */
	size_t nkeeps;
	unsigned threads;             /* 0: online CPUs */
	int zstd_level;               /* 0: QS_ZSTD_LEVEL_DEFAULT */
	uint64_t memory;              /* window in bytes; 0: default */
	enum qs_io_backend io;
	enum qs_sync_mode sync;
	bool resume;                  /* continue OUTPUT.partial */
	bool force;                   /* discard an existing OUTPUT.partial */
	bool allow_nonfinite;         /* quantize tensors holding NaN/Inf */
	const char *importance;       /* --importance FILE (imatrix or safetensors), or NULL */
	const char *hessian;          /* --hessian FILE (safetensors), or NULL */
	qs_progress_fn progress;
	void *progress_user;
	volatile int *stop;           /* set non-zero (e.g. from a signal) to stop cleanly */
	/* --part K/N: convert only slice K of N (1 <= K <= N) into the part
	 * file qs_part_path(output, K, N); 0/0 converts everything. */
	unsigned part_k, part_n;
};

/* Seconds spent in each stage of a conversion, summed over the threads
 * that run it, so a user sees which stage bounds a run.  The compute
 * stages count the threads' CPU time; read_wait and write count the time
 * the reader and the writer spent blocked in them. */
struct qs_stage_seconds {
	double read_wait;   /* reader: waiting for reads (a synchronous read is all wait) */
	double quantize;    /* workers: decode to f32, non-finite check, quantize */
	double compress;    /* workers: zstd */
	double hash;        /* workers: payload xxh3; writer: source xxh3 */
	double write;       /* writer: frames, records, syncs */
};

struct qs_convert_result {
	uint64_t tensors, quantized_tensors;
	uint64_t input_bytes;             /* source bytes read by this run (less after --resume) */
	uint64_t output_bytes;
	uint64_t quantized_weights;
	double bpw_nominal, bpw_on_disk;  /* over the quantized tensors */
	double seconds;
	uint64_t peak_window_bytes;       /* high-water mark of the memory window */
	uint64_t resumed_tensors;         /* tensors taken from a .partial */
	enum qs_io_backend io_used;
	struct qs_stage_seconds stages;
};

/* zstd level when none is given.  Level 1 because packed codes are close
 * to incompressible by matching: on an 8b checkpoint level 3 wrote only
 * 0.9% fewer bytes for twice the compression CPU (bench-throughput). */
#define QS_ZSTD_LEVEL_DEFAULT 1

/* Default memory window in bytes (printed by --help). */
uint64_t qs_default_memory(void);
int qs_convert(const struct qs_convert_opts *opts, struct qs_convert_result *res,
	       struct qs_diag *diag);

/* ------------------------------------------------- parts (--part, merge) */

/* Largest N of --part K/N. */
#define QS_PART_MAX 100000u

/* The part file name for output: "model.qshard" -> "model.part-K-of-N.qshard"
 * (other names get ".part-K-of-N.qshard" appended).  0, -QS_EUSAGE for a
 * bad K/N, -QS_ETOOBIG when buf is too small. */
int qs_part_path(const char *output, unsigned k, unsigned n, char *buf, size_t len);

/* What part K of N converts (convert --plan-only --part K/N): one entry per
 * tensor it touches, in plan order. */
struct qs_part_entry {
	const char *name;
	const char *scheme;           /* canonical spec or "raw" */
	uint64_t rows, cols;
	uint32_t nchunks;             /* chunks of the whole tensor */
	uint32_t chunk_begin, chunk_end;  /* the chunks of this part */
	uint64_t row_begin, row_end;
	uint64_t source_bytes;        /* source bytes of those chunks */
	uint64_t hash_bytes;          /* bytes before row_begin read only for the checksum */
	uint64_t cost;                /* work units (see qs_part_plan) */
	bool second_order;            /* cost counts rows x cols^2 */
	/* What the pipeline will do with it (sizes as the pipeline
	 * allocates them; "of this part" for the sizes on disk): */
	uint64_t rows_per_chunk;      /* every chunk of a matrix but its last has this many */
	uint64_t chunk_bytes;         /* window bytes one such chunk takes: source, f32
				       * weights, payload, compressed bound, scratch */
	uint64_t scratch_bytes;       /* of chunk_bytes: the scheme's scratch */
	uint64_t state_bytes;         /* per-tensor scheme state outside the ring
				       * (second-order: Cholesky factor and work
				       * space, Hessian, importance); 0 for most */
	uint64_t hessian_bytes;       /* of state_bytes: the Hessian read from --hessian */
	uint64_t importance_bytes;    /* of state_bytes: the --importance vector */
	uint64_t memory_bytes;        /* chunk_bytes + state_bytes: the least it needs */
	uint64_t nominal_bytes;       /* packed payload (bits x elements, metadata included) */
	uint64_t disk_bytes;          /* expected frames + record on disk */
	double est_core_seconds;      /* estimated core-seconds (sampled kernels) */
};

struct qs_part_plan {
	unsigned k, n;
	char *path;                   /* the part file */
	struct qs_part_entry *entries;
	size_t nentries;
	uint64_t tensors_total, chunks_total;  /* in the whole plan */
	uint64_t chunks;              /* in this part */
	uint64_t source_bytes, hash_bytes;
	/* Work units: one per source byte plus, for second-order schemes,
	 * QS_PART_SECOND_ORDER_WEIGHT per row x cols^2 (the cost of the
	 * error propagation).  Fixed constants, so the slicing never depends
	 * on the machine. */
	uint64_t cost, total_cost;
	double est_core_seconds;      /* the entries' est_core_seconds summed */
	uint64_t memory;              /* the window the plan was cut for */
	/* Totals of this part's run on this machine: */
	unsigned threads, contexts;   /* workers; zstd contexts they share */
	uint64_t nominal_bytes;       /* entries' nominal_bytes summed */
	uint64_t output_bytes;        /* expected file: header, frames, records, index, trailer */
	/* Expected peak RSS and its parts: the window pages chunks touch, the
	 * per-tensor state buffer, the zstd contexts, the threads, and the
	 * process as it stood after planning (binary, libraries, headers). */
	uint64_t peak_bytes;
	uint64_t peak_ring, peak_state, peak_zstd, peak_threads, peak_baseline;
	double est_wall_seconds;      /* est_core_seconds over the threads */
	double sample_seconds;        /* time the kernel sampling took */
};

/* Builds the plan of opts (opts->part_k/part_n; 0/0 means 1/1) from the
 * checkpoint headers alone; nothing is read or written. */
int qs_part_plan(const struct qs_convert_opts *opts, struct qs_part_plan **out,
		 struct qs_diag *diag);
void qs_part_plan_free(struct qs_part_plan *pp);

struct qs_merge_opts {
	const char *output;           /* final name; OUTPUT.partial while running */
	const char *const *parts;     /* part files, in any order */
	size_t nparts;
	bool force;                   /* discard an existing OUTPUT.partial */
	bool remove_parts;            /* delete the parts after the rename */
	qs_progress_fn progress;      /* tensors_done/total, bytes_read/total */
	void *progress_user;
	volatile int *stop;
};

struct qs_merge_result {
	uint64_t tensors, parts, split_tensors;
	uint64_t bytes_read;          /* data frames copied */
	uint64_t output_bytes;
	double seconds;
};

/* Joins the parts of one conversion into the file a single convert with the
 * same options writes, byte for byte.  Refuses (-QS_EMISMATCH, diag naming
 * the file) a part from a different input (stale), from different options
 * or another N (foreign), a part given twice or missing, and any part
 * whose checksums fail (-QS_ECHECKSUM) before the final name appears. */
int qs_merge(const struct qs_merge_opts *opts, struct qs_merge_result *res,
	     struct qs_diag *diag);

/* ----------------------------------------------------------- qshard files */

struct qs_qfile;

int qs_qfile_open(const char *path, struct qs_qfile **out, struct qs_diag *diag);
void qs_qfile_free(struct qs_qfile *qf);
size_t qs_qfile_count(const struct qs_qfile *qf);
void qs_qfile_tensor(const struct qs_qfile *qf, size_t i, struct qs_tensor_info *out);
/* The options string and creator recorded in the header. */
const char *qs_qfile_options(const struct qs_qfile *qf);
const char *qs_qfile_creator(const struct qs_qfile *qf);
uint64_t qs_qfile_size(const struct qs_qfile *qf);
/* True (and K, N filled when non-NULL) for a part file of convert --part. */
bool qs_qfile_part(const struct qs_qfile *qf, unsigned *k, unsigned *n);

/* ------------------------------------------- reading tensors (a loader) */

/* qs_qfile_read(3), qs_qfile_read_payload(3).  A tensor is read as rows:
 * rows = the product of every dimension but the last (1 for a 0-D or 1-D
 * tensor), cols = the last dimension (1 for 0-D).  Every chunk read has its
 * frame and payload checksums verified first; a damaged chunk fails the
 * read with -QS_ECHECKSUM and a diag naming the tensor and the chunk.
 *
 * Thread safety: an open struct qs_qfile is never modified; reads use
 * pread(2) on its descriptor (no shared file position) and buffers of
 * their own, so any number of threads may read from one open file at once.
 * Only qs_qfile_free must not race with them.  Memory: the caller's buffer
 * plus the working set of one chunk (its frame, payload and, unless the
 * chunk is dequantized straight into the buffer, its f32 values). */

/* Index of the tensor named name, in O(log n); -ENOENT when there is none. */
int qs_qfile_find(const struct qs_qfile *qf, const char *name, size_t *index);

/* Reads rows [row_begin, row_begin + row_count) of tensor index, row-major,
 * into buf as dtype: F32, BF16 or F16 (quantized tensors are dequantized,
 * then rounded to nearest even for BF16/F16, exactly as qshard-unpack(1)
 * writes them).  A tensor stored raw is also readable in its own dtype,
 * byte for byte.  buf must be aligned for dtype and len must be at least
 * row_count * cols * qs_dtype_size(dtype).  -QS_EUSAGE for an index, row
 * range or buffer out of bounds, -QS_EDTYPE for a dtype the tensor cannot
 * be read as, -QS_ECHECKSUM for damage, -QS_EFORMAT for a malformed chunk,
 * -errno for I/O; buf is then partly written and must not be used. */
int qs_qfile_read_rows(const struct qs_qfile *qf, size_t index, uint64_t row_begin,
		       uint64_t row_count, enum qs_dtype dtype, void *buf, size_t len,
		       struct qs_diag *diag);
/* All rows of tensor index. */
int qs_qfile_read(const struct qs_qfile *qf, size_t index, enum qs_dtype dtype,
		  void *buf, size_t len, struct qs_diag *diag);

/* One chunk of a tensor (chunk < qs_tensor_info.chunks): rows
 * [row_begin, row_begin + row_count) packed as man/qshard.5 (SCHEME
 * PAYLOADS) describes, in one zstd frame of frame_bytes at frame_offset. */
struct qs_chunk_info {
	uint64_t row_begin, row_count;
	uint64_t payload_bytes;   /* the packed payload, uncompressed */
	uint64_t frame_offset;    /* its zstd frame in the file */
	uint64_t frame_bytes;
	uint64_t payload_xxh3;    /* xxh3-64 of the payload (checked on read) */
};
/* -QS_EUSAGE when index or chunk is out of range. */
int qs_qfile_chunk(const struct qs_qfile *qf, size_t index, uint32_t chunk,
		   struct qs_chunk_info *out);
/* Decompresses chunk's packed payload into buf (len >= payload_bytes),
 * checksums verified, for a runtime that dequantizes it itself. */
int qs_qfile_read_payload(const struct qs_qfile *qf, size_t index, uint32_t chunk,
			  void *buf, size_t len, struct qs_diag *diag);

/* A tensor's scheme split into its name and canonical parameters, e.g.
 * "rtn:bits=4,group=128" -> "rtn", {bits 4, group 128}; "raw" has none.
 * The parameter set of each scheme is in man/qshard.5. */
#define QS_SCHEME_MAX_PARAMS 16
struct qs_scheme_param {
	char key[32];
	char value[32];
};
struct qs_scheme_info {
	char name[32];
	unsigned nparams;
	struct qs_scheme_param params[QS_SCHEME_MAX_PARAMS];
};
/* -QS_EUSAGE for an index out of range, -QS_EFORMAT (diag naming the
 * tensor) for a scheme this library does not know. */
int qs_qfile_scheme(const struct qs_qfile *qf, size_t index, struct qs_scheme_info *out,
		    struct qs_diag *diag);
/* The value of key in s, or NULL. */
const char *qs_scheme_info_get(const struct qs_scheme_info *s, const char *key);

/* Called by verify for each problem found; what names the tensor or the
 * structure (e.g. "header", "index") that is damaged. */
typedef void (*qs_damage_fn)(const char *what, const char *detail, void *user);

/* Checks every checksum in the file at path (header, frames, records, index,
 * trailer).  Returns 0 when all hold, -QS_ECHECKSUM/-QS_EFORMAT after
 * reporting each damaged part through report, -errno on I/O failure.  With
 * source non-NULL, also recomputes the source checksums against that
 * checkpoint. */
int qs_verify(const char *path, const char *source, qs_damage_fn report,
	      void *user, struct qs_diag *diag);

struct qs_unpack_opts {
	const char *input;        /* qshard file */
	const char *outdir;       /* created if missing; see force */
	enum qs_dtype dtype;      /* BF16, F16 or F32 for dequantized tensors */
	bool force;               /* replace a non-empty outdir (atomically, at the end) */
};
int qs_unpack(const struct qs_unpack_opts *opts, struct qs_diag *diag);

/* Called by export for each tensor it cannot copy exactly (requantized or
 * dequantized), with a one-line description. */
typedef void (*qs_export_notice_fn)(const char *tensor, const char *what, void *user);

struct qs_export_opts {
	const char *input;        /* qshard file */
	const char *output;       /* OUT.gguf; OUT.gguf.partial while running */
	const char *type;         /* --type: ggml type for tensors without an exact
				   * GGUF form ("q8_0" when NULL); f32/f16/bf16
				   * dequantize every quantized tensor */
	const char *pre;          /* --pre: tokenizer.ggml.pre override, or NULL */
	const char *vocab_from;   /* --vocab-from FILE.gguf, or NULL */
	bool no_vocab;            /* --no-vocab: tokenizer.ggml.model "none" */
	const char *name;         /* general.name; NULL: the input's file name */
	uint64_t memory;          /* window in bytes; 0: default */
	qs_export_notice_fn notice;
	void *notice_user;
	volatile int *stop;       /* set non-zero to stop (the .partial is removed) */
};

struct qs_export_result {
	uint64_t tensors;             /* tensors written */
	uint64_t copied;              /* exact: gguf payloads copied, rtn g32 as Q4_1 */
	uint64_t requantized;         /* dequantized and quantized again */
	uint64_t output_bytes;
	uint64_t peak_buffer_bytes;   /* largest working set of chunk buffers */
	double seconds;
};

/* Writes the GGUF v3 file llama.cpp loads (qshard-export(1)). */
int qs_export(const struct qs_export_opts *opts, struct qs_export_result *res,
	      struct qs_diag *diag);

/* The library's version string. */
const char *qs_version(void);

#ifdef __cplusplus
}
#endif
#endif /* QSHARD_H */
