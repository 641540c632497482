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
};

/* zstd level when none is given.  Level 1 because packed codes are close
 * to incompressible by matching: on an 8b checkpoint level 3 wrote only
 * 0.9% fewer bytes for twice the compression CPU (bench-throughput). */
#define QS_ZSTD_LEVEL_DEFAULT 1

/* Default memory window in bytes (printed by --help). */
uint64_t qs_default_memory(void);
int qs_convert(const struct qs_convert_opts *opts, struct qs_convert_result *res,
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

/* The library's version string. */
const char *qs_version(void);

#ifdef __cplusplus
}
#endif
#endif /* QSHARD_H */
