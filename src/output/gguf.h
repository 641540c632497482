/* gguf.h - internal interfaces of qshard export: ggml tensor types, the
 * GGUF v3 writer and metadata builder, the architecture mapping and the
 * tokenizer conversion.
 *
 * GGUF v3 as specified in ggml's docs/gguf.md: little-endian; header
 * "GGUF" u32 version(3) u64 tensor_count u64 kv_count; kv_count x { string
 * key, u32 value type, value }; tensor_count x { string name, u32 ndim,
 * u64 ne[ndim] (innermost first), u32 ggml type, u64 offset relative to
 * the data section }; zero padding to general.alignment (default 32); the
 * data section, each tensor at an aligned offset.  A string is u64 length
 * + bytes (no NUL); an array is u32 element type, u64 count, elements.
 */
#ifndef QS_GGUF_H
#define QS_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qshard.h"

/* ------------------------------------------------------------ ggml types */

/* ggml_type numbers (ggml.h / docs/gguf.md): on-disk values. */
enum qs_ggml_type_id {
	QS_GGML_F32 = 0,
	QS_GGML_F16 = 1,
	QS_GGML_Q4_0 = 2,
	QS_GGML_Q4_1 = 3,
	QS_GGML_Q5_0 = 6,
	QS_GGML_Q5_1 = 7,
	QS_GGML_Q8_0 = 8,
	QS_GGML_Q2_K = 10,
	QS_GGML_Q3_K = 11,
	QS_GGML_Q4_K = 12,
	QS_GGML_Q5_K = 13,
	QS_GGML_Q6_K = 14,
	QS_GGML_BF16 = 30,
};

/* Quantizes rows x cols f32 weights (cols a multiple of the block) into
 * rows * cols/block blocks, rows consecutive.  0 or -QS_E*. */
typedef int (*qs_ggml_from_f32_fn)(const float *src, uint64_t rows, uint64_t cols,
				   uint8_t *dst);

struct qs_ggml_type {
	const char *name;       /* as the gguf scheme and --type spell it: "q4_K", "f16" */
	uint32_t id;            /* enum qs_ggml_type_id */
	uint32_t block;         /* weights per block (1 for float types) */
	uint32_t block_bytes;   /* bytes per block */
	uint32_t file_type;     /* general.file_type when most weights have this type */
	/* NULL for the types only the gguf scheme quantizes (the K and the
	 * 4/5-bit types): export then uses that scheme's quantize op */
	qs_ggml_from_f32_fn from_f32;
};

/* By name (case-insensitive: "Q8_0", "q8_0"); NULL when unknown. */
const struct qs_ggml_type *qs_ggml_type_find(const char *name);
const struct qs_ggml_type *qs_ggml_type_by_id(uint32_t id);
/* Bytes of one row of cols weights; 0 when cols is not a multiple of the
 * block or the size overflows. */
uint64_t qs_ggml_row_bytes(const struct qs_ggml_type *t, uint64_t cols);
/* The type llama-quantize writes a row of cols weights in when t's block
 * does not divide it (t itself when it does): a 32-block type for the
 * K types, else f16. */
const struct qs_ggml_type *qs_ggml_fallback(const struct qs_ggml_type *t, uint64_t cols);
/* The i-th known type (f32, f16, bf16, q8_0, then the other block types),
 * NULL past the last. */
const struct qs_ggml_type *qs_ggml_type_at(size_t i);

/* The exact Q4_1 form of a rtn:bits=4,group=32 payload of rows x cols
 * (cols a multiple of 32): block_q4_1 is { fp16 d, fp16 m, u8 qs[16] },
 * weight j of the block in the low nibble of qs[j], weight j + 16 in the
 * high nibble (ggml-common.h), and ggml reads it as d * q + m, which is
 * rtn's scale * code + min. */
void qs_ggml_q4_1_from_rtn(const uint8_t *payload, uint64_t rows, uint64_t cols,
			   uint8_t *dst);

/* ------------------------------------------------------- metadata (KV) */

/* The GGUF metadata section being built: encoded key/value pairs. */
struct qs_gguf_kv {
	uint8_t *buf;
	size_t len, cap;
	uint64_t count;
	bool oom;          /* an append failed; checked once at the end */
};

enum qs_gguf_vtype {
	QS_GGUF_U8 = 0, QS_GGUF_I8 = 1, QS_GGUF_U16 = 2, QS_GGUF_I16 = 3,
	QS_GGUF_U32 = 4, QS_GGUF_I32 = 5, QS_GGUF_F32 = 6, QS_GGUF_BOOL = 7,
	QS_GGUF_STRING = 8, QS_GGUF_ARRAY = 9, QS_GGUF_U64 = 10, QS_GGUF_I64 = 11,
	QS_GGUF_F64 = 12,
};

void qs_gguf_kv_release(struct qs_gguf_kv *kv);
void qs_gguf_kv_u32(struct qs_gguf_kv *kv, const char *key, uint32_t v);
void qs_gguf_kv_i32(struct qs_gguf_kv *kv, const char *key, int32_t v);
void qs_gguf_kv_f32(struct qs_gguf_kv *kv, const char *key, float v);
void qs_gguf_kv_bool(struct qs_gguf_kv *kv, const char *key, bool v);
void qs_gguf_kv_str(struct qs_gguf_kv *kv, const char *key, const char *v);
void qs_gguf_kv_str_array(struct qs_gguf_kv *kv, const char *key, const char *const *v,
			  size_t n);
void qs_gguf_kv_i32_array(struct qs_gguf_kv *kv, const char *key, const int32_t *v,
			  size_t n);
void qs_gguf_kv_f32_array(struct qs_gguf_kv *kv, const char *key, const float *v, size_t n);
/* Appends an already encoded key/value pair (from another GGUF). */
void qs_gguf_kv_raw(struct qs_gguf_kv *kv, const uint8_t *bytes, size_t len);

/* Reads the key/value pairs of the GGUF at path whose key starts with one
 * of the prefixes (NULL-terminated) and appends them verbatim to kv;
 * *found counts them and *n_tokens gets the length of the
 * tokenizer.ggml.tokens array (UINT64_MAX when absent).  The file is
 * untrusted: every length is checked before use. */
int qs_gguf_copy_keys(const char *path, const char *const *prefixes, struct qs_gguf_kv *kv,
		      uint64_t *found, uint64_t *n_tokens, struct qs_diag *diag);
/* The same over a GGUF file's bytes in memory (the fuzz harness). */
int qs_gguf_copy_keys_buf(const char *fname, const uint8_t *buf, size_t size,
			  const char *const *prefixes, struct qs_gguf_kv *kv, uint64_t *found,
			  uint64_t *n_tokens, struct qs_diag *diag);

/* ------------------------------------------------------------- writer */

#define QS_GGUF_ALIGNMENT 32u
#define QS_GGUF_MAX_DIMS 4u
#define QS_GGUF_MAX_NAME 64u  /* docs/gguf.md: tensor names at most 64 bytes */

struct qs_gguf_tensor {
	char name[QS_GGUF_MAX_NAME + 1];
	uint32_t ndim;
	uint64_t ne[QS_GGUF_MAX_DIMS];  /* ggml order: ne[0] = row length */
	const struct qs_ggml_type *type;
	uint64_t bytes;                 /* data bytes */
	uint64_t offset;                /* in the data section, aligned */
};

struct qs_gguf_writer;

/* Creates path + ".partial" (never following a symlink; an existing
 * .partial of an interrupted run is locked and started over, another live
 * writer's lock is an error), lays out the tensors (filling offset) and
 * writes header, metadata, tensor infos and padding.  buf_bytes: write
 * buffer size. */
int qs_gguf_writer_open(const char *path, const struct qs_gguf_kv *kv,
			struct qs_gguf_tensor *tensors, size_t n, size_t buf_bytes,
			struct qs_gguf_writer **out, struct qs_diag *diag);
/* Appends data of the current tensor (tensors in the order given). */
int qs_gguf_writer_data(struct qs_gguf_writer *w, const void *data, size_t len,
			struct qs_diag *diag);
/* Ends the current tensor: checks its size and pads to the alignment. */
int qs_gguf_writer_end_tensor(struct qs_gguf_writer *w, struct qs_diag *diag);
/* After the last tensor: flush, fsync, rename to path, fsync the folder.
 * Frees w. */
int qs_gguf_writer_finish(struct qs_gguf_writer *w, struct qs_diag *diag);
/* Removes the .partial and frees w. */
void qs_gguf_writer_abort(struct qs_gguf_writer *w);

/* --------------------------------------------------- architecture, vocab */

/* Hyperparameters from config.json that export needs. */
struct qs_gguf_arch {
	const char *hf_arch;       /* architectures[0] */
	const char *arch;          /* GGUF general.architecture: "llama" */
	bool permute_qk;           /* llama's rope layout: q/k rows permuted */
	uint32_t hidden, layers, heads, kv_heads, head_dim, ffn, ctx;
	uint32_t vocab;            /* config's vocab_size (0 if absent) */
	float rms_eps, rope_theta;
	/* rope scaling (type NULL: none) */
	const char *rope_type;     /* "linear", "yarn" or "llama3" */
	float rope_factor;
	uint32_t rope_orig_ctx;
	float rope_low_freq, rope_high_freq;  /* llama3 */
	bool tied;                 /* tie_word_embeddings */
	/* mixture of experts (MixtralForCausalLM); 0: a dense MLP */
	uint32_t n_expert, n_expert_used;
};

/* Parses config.json text into a (strings point into a static table or
 * are copied into names[]); -QS_EFORMAT naming the field for a missing or
 * absurd value, -QS_EDTYPE for an architecture export does not handle. */
int qs_gguf_arch_parse(const char *fname, const char *config_json, struct qs_gguf_arch *a,
		       char *hf_arch_buf, size_t hf_arch_len, struct qs_diag *diag);
/* The GGUF name of a Hugging Face tensor (into out), 1 when the tensor is
 * dropped (rotary inv_freq), 0 when mapped, -1 when there is no mapping.
 * *layer gets the block number or -1; *perm_heads the head count of a
 * q/k row permutation (0: none). */
int qs_gguf_tensor_name(const struct qs_gguf_arch *a, const char *hf, char *out, size_t len,
			int *layer, uint32_t *perm_heads);
/* The stacked GGUF tensor one expert's Hugging Face tensor belongs to:
 * Mixtral's model.layers.N.block_sparse_moe.experts.E.w1/w2/w3.weight go
 * to blk.N.ffn_gate_exps/ffn_down_exps/ffn_up_exps.weight (llama.cpp's
 * LLM_TENSOR_FFN_*_EXPS, ne = {cols, rows, n_expert}: expert E's matrix
 * is the E-th slice).  0 and *layer, *expert set when hf is one; -1
 * otherwise. */
int qs_gguf_expert_name(const struct qs_gguf_arch *a, const char *hf, char *out, size_t len,
			int *layer, uint32_t *expert);
/* The architecture's metadata keys. */
void qs_gguf_arch_kv(const struct qs_gguf_arch *a, uint32_t vocab_rows, struct qs_gguf_kv *kv);
/* llama3 rope scaling: head_dim / 2 frequency factors (rope_freqs.weight). */
void qs_gguf_rope_llama3_factors(const struct qs_gguf_arch *a, float *out);

/* Tokenizer keys from tokenizer.json (+ tokenizer_config.json, config.json
 * for special token ids).  pre: --pre override or NULL to detect.  n_rows:
 * token_embd rows, the vocabulary size llama.cpp checks.  Errors name the
 * file and what is wrong. */
int qs_gguf_vocab_from_hf(const char *fname, const char *tokenizer_json, size_t tj_len,
			  const char *tokenizer_config, const char *config_json,
			  const char *pre, uint64_t n_rows, struct qs_gguf_kv *kv,
			  struct qs_diag *diag);
/* Tokenizer keys from a SentencePiece tokenizer.model (Llama 1/2, Mistral
 * 7B v0.1): tokenizer.ggml.model "llama", tokens, scores, token_type from
 * its pieces, the special ids from its trainer spec (tokenizer_config.json's
 * bos/eos/unk/pad tokens win where named), add_space_prefix from its
 * normalizer, add_bos/add_eos and the chat template from
 * tokenizer_config.json; tokenizer.json (NULL: none) adds tokens past the
 * pieces.  The model is untrusted: a truncated or garbled
 * protobuf is an error naming fname and tokenizer.model. */
int qs_gguf_vocab_from_spm(const char *fname, const uint8_t *model, size_t len,
			   const char *tokenizer_json, size_t tj_len, const char *tokenizer_config,
			   uint64_t n_rows, struct qs_gguf_kv *kv, struct qs_diag *diag);
/* Whether tokenizer.json describes a SentencePiece-derived tokenizer
 * (a Unigram model, or BPE with byte_fallback) that tokenizer.model
 * describes exactly. */
bool qs_gguf_tokenizer_json_is_spm(const char *tokenizer_json, size_t len);
/* add_bos_token, add_eos_token and the chat template of
 * tokenizer_config.json (NULL: none), as GGUF keys. */
void qs_gguf_vocab_config_keys(const char *tokenizer_config, struct qs_gguf_kv *kv);
/* tokenizer_config.json's "<kind>_token" ("bos": "<s>" or {"content":
 * "<s>"}) into buf: 0, or -1 when not named (or longer than len - 1). */
int qs_gguf_config_token(const char *tokenizer_config, const char *kind, char *buf,
			 size_t len);
/* "default, llama-bpe, ..." */
void qs_gguf_pre_names(char *buf, size_t len);
bool qs_gguf_pre_known(const char *name);

#endif /* QS_GGUF_H */
