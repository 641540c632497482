/* scheme.h - the quantization scheme interface: one table of operations per
 * scheme (rtn.c, adpq.c, ...), looked up by name from the CLI's
 * "[REGEX=]NAME[:key=val,...]" specs.
 *
 * A scheme quantizes a row-chunk: `rows` consecutive rows of `cols` f32
 * weights (a tensor of shape [d0, ..., dn] is seen as rows = d0*...*d(n-1),
 * cols = dn).  Groups run along a row.  The packed payload of a chunk
 * depends only on the chunk's weights and the parameters, so chunks are
 * independent and the output never depends on threads or SIMD level.
 */
#ifndef QS_SCHEME_H
#define QS_SCHEME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "param.h"
#include "qshard.h"

struct qs_scheme;

/* Calibration statistics of one tensor, shared by all its row-chunks
 * (loaded by the pipeline from --importance / --hessian files). */
struct qs_tensor_stats {
	const char *name;          /* Hugging Face tensor name */
	uint64_t cols;
	const float *importance;   /* [cols] mean squared input activation, or NULL */
	const float *hessian;      /* [cols*cols] H = X^T X, row-major, or NULL */
	bool hessian_diag_only;    /* the file had only diag(H): off-diagonal zero */
};

/* What a calibration-aware scheme asks the pipeline to load. */
#define QS_WANT_IMPORTANCE 1u
#define QS_WANT_HESSIAN 2u

/* quantize_src's per-row callback: before_row(user, r) before row r of
 * the chunk is read. */
struct qs_row_hook {
	void (*before_row)(void *user, uint64_t row);
	void *user;
};

struct qs_scheme_ops {
	const char *name;
	/* The parameter table (param.h), ended by QS_PARAM_END: qs_scheme_parse
	 * sets every default, applies "key=val,..." and writes s->text from it. */
	const struct qs_param *params;
	/* Optional: rejects combinations the table cannot express (daq:
	 * format=nf4 needs bits=4) after parsing; 0 or -QS_EUSAGE with a
	 * message. */
	int (*check)(const struct qs_scheme *s, struct qs_diag *diag);
	/* Packed payload bytes for a chunk of rows x cols. */
	uint64_t (*payload_size)(const struct qs_scheme *s, uint64_t rows, uint64_t cols);
	/* Scratch bytes quantize/dequantize need for a chunk of rows x cols
	 * (the caller provides them from the memory window). */
	uint64_t (*scratch_size)(const struct qs_scheme *s, uint64_t rows, uint64_t cols);
	/* Quantizes w[rows*cols] into out[payload_size].  Returns 0, or
	 * -QS_ETOOBIG when a group's range does not fit the scale encoding. */
	int (*quantize)(const struct qs_scheme *s, const float *w, uint64_t rows,
			uint64_t cols, uint8_t *out, void *scratch);
	/* Dequantizes a payload of payload_size(rows, cols) bytes. */
	int (*dequantize)(const struct qs_scheme *s, const uint8_t *in, uint64_t rows,
			  uint64_t cols, float *out, void *scratch);

	/* ---- optional: per-tensor preparation (NULL in rtn and adpq) ----
	 * For a tensor whose scheme has prepare, the pipeline loads the
	 * statistics `wants` names (QS_WANT_*; missing entries stay NULL),
	 * calls prepare once into prep_size() bytes of per-tensor state
	 * (part of the memory window, so it must not depend on rows), then
	 * quantize_prep instead of quantize for every row-chunk, possibly
	 * from several threads at once (prep is read-only there). */
	unsigned wants;
	uint64_t (*prep_size)(const struct qs_scheme *s, uint64_t cols);
	int (*prepare)(const struct qs_scheme *s, const struct qs_tensor_stats *stats,
		       void *prep, struct qs_diag *diag);
	int (*quantize_prep)(const struct qs_scheme *s, const void *prep, const float *w,
			     uint64_t rows, uint64_t cols, uint8_t *out, void *scratch);
	/* true when prepare only digests the statistics: for a tensor that
	 * loads none (s->stats == 0), quantize() gives quantize_prep()'s
	 * payload, and the pipeline runs no preparation (adpq, daq; issue
	 * 16: the wait for an empty ring before each prepared tensor idled
	 * the workers at every tensor boundary). */
	bool prep_for_stats_only;
	/* true when a Hessian is used only in blocks of fixed size (daq's
	 * group-sized diagonal blocks), so the cost per weight does not grow
	 * with cols; otherwise a scheme that loads a Hessian is estimated as
	 * rows x cols^2 (estimate.c). */
	bool hessian_cost_linear;

	/* ---- optional: quantize straight from the source (rtn) ----
	 * The same payload as quantize() on the decoded chunk, from
	 * rows*cols source elements of enum qs_src_kind `kind` (kernels.h),
	 * decoded a group at a time so the chunk is read once.  The NaN/Inf
	 * count is added to *nonfinite (over the whole chunk, even when a
	 * group overflows); with sanitize they are replaced first, as
	 * --allow-nonfinite asks.  hook (may be NULL) is called before each
	 * row is read, so the pipeline can checksum the source while it is in
	 * cache.  row is room for one decoded row (cols floats, 64-byte
	 * aligned) for a scheme that reads the row more than once (adpq).
	 * The pipeline uses it for tensors with no companion that load no
	 * statistics (adpq's preparation then holds nothing). */
	int (*quantize_src)(const struct qs_scheme *s, unsigned kind, const void *src,
			    uint64_t rows, uint64_t cols, int sanitize, uint8_t *out, void *scratch,
			    float *row, size_t *nonfinite, const struct qs_row_hook *hook);
	/* The scheme needs every row of a matrix in one chunk (claq's code
	 * books are fitted per column over all rows): the plan gives such a
	 * tensor one chunk per matrix, whatever --memory, or fails before
	 * reading, naming the memory the matrix needs. */
	bool whole_tensor;
};

#define QS_SCHEME_TEXT_MAX 128
#define QS_SCHEME_PARAMS_MAX 8

struct qs_scheme {
	const struct qs_scheme_ops *ops;
	/* The scheme's own parameter struct (all `unsigned` fields, laid out
	 * as its ops->params table says); read it with QS_SCHEME_PARAMS. */
	unsigned params[QS_SCHEME_PARAMS_MAX];
	char text[QS_SCHEME_TEXT_MAX];  /* canonical spec, e.g. "rtn:bits=4,group=128" */
	/* QS_WANT_* bits of the statistics the pipeline will load for this
	 * tensor (the plan sets it before prep_size and scratch_size), so a
	 * scheme that can use a Hessian sizes its state for one only when a
	 * file was given (gguf.c). */
	unsigned stats;
};

/* The typed view of s->params for a scheme whose parameter struct is T
 * (the size is checked at compile time). */
#define QS_SCHEME_PARAMS(T, s)                                                         \
	((void)sizeof(char[sizeof(T) <= sizeof((s)->params) ? 1 : -1]),                \
	 (const T *)(const void *)(s)->params)

/* Parses "NAME[:key=val,...]" (no REGEX= part) into s. */
int qs_scheme_parse(const char *spec, struct qs_scheme *s, struct qs_diag *diag);
/* Builds s for ops from a filled parameter struct (size bytes; the text
 * is written as parsing would); -QS_EUSAGE when a value is not legal. */
int qs_scheme_init(struct qs_scheme *s, const struct qs_scheme_ops *ops, const void *params,
		   size_t size, struct qs_diag *diag);
/* The stored value of the parameter `name` (DECIMAL ones scaled, NAME ones
 * as the index); -1 when s's scheme has no such parameter. */
int qs_scheme_param(const struct qs_scheme *s, const char *name, unsigned *v);
/* True when every parameter of s holds a legal value (what quantize and
 * dequantize check before trusting sizes computed from them). */
bool qs_scheme_params_ok(const struct qs_scheme *s);

/* For the schemes' parse ops: calls fn(s, key, val, diag) for each
 * "key=val" item of the comma-separated args ("" has none), stopping at the
 * first non-zero return.  Items without '=', empty keys, over-long items
 * and a key given twice are -QS_EUSAGE, with a message naming the scheme
 * (s->ops->name). */
int qs_scheme_each_arg(struct qs_scheme *s, const char *args,
		       int (*fn)(struct qs_scheme *s, const char *key,
				 const char *val, struct qs_diag *diag),
		       struct qs_diag *diag);
/* Strict decimal (digits only, no sign or spaces, fits unsigned); -1 when
 * val is anything else. */
int qs_scheme_parse_uint(const char *val, unsigned *out);

/* Registered schemes (NULL-terminated) and lookup by name. */
extern const struct qs_scheme_ops *const qs_scheme_registry[];
const struct qs_scheme_ops *qs_scheme_find(const char *name);

extern const struct qs_scheme_ops qs_scheme_rtn;
extern const struct qs_scheme_ops qs_scheme_adpq;
extern const struct qs_scheme_ops qs_scheme_gptq;
extern const struct qs_scheme_ops qs_scheme_athena;
extern const struct qs_scheme_ops qs_scheme_gptq_clip;
extern const struct qs_scheme_ops qs_scheme_daq;
extern const struct qs_scheme_ops qs_scheme_claq;
extern const struct qs_scheme_ops qs_scheme_gguf;

#endif /* QS_SCHEME_H */
