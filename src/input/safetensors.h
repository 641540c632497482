/* safetensors.h - reading and writing Hugging Face safetensors files, single
 * or sharded through model.safetensors.index.json.
 *
 * Format (https://huggingface.co/docs/safetensors): u64 LE header length N,
 * N bytes of UTF-8 JSON object mapping tensor names to {dtype, shape,
 * data_offsets:[begin,end]} (offsets relative to the data area that follows
 * the header), optional "__metadata__" object of string values, then the data
 * area.  Every rule the format states is validated before any byte is used.
 */
#ifndef QS_SAFETENSORS_H
#define QS_SAFETENSORS_H

#include <stdint.h>

#include "fsafe.h"
#include "qshard.h"

/* The format caps the header at 100 MB so a reader never allocates an
 * attacker-chosen amount. */
#define QS_ST_MAX_HEADER 100000000ull

struct qs_st_tensor {
	char *name;
	enum qs_dtype dtype;
	uint32_t ndim;
	uint64_t shape[QS_MAX_DIMS];
	uint64_t nbytes;       /* end - begin, equals product(shape) * dtype size */
	uint64_t offset;       /* absolute file offset: 8 + header length + begin */
	uint32_t shard;        /* index into qs_checkpoint.shards */
};

struct qs_st_shard {
	char *path;            /* as opened (folder joined with name) */
	char *name;            /* file name relative to the checkpoint folder */
	uint64_t size;         /* file size in bytes */
	int64_t mtime_ns;      /* modification time, for the resume fingerprint */
	struct qs_file_id id;  /* when the header was read: the reader refuses
				* a shard that no longer matches it */
	uint64_t data_offset;  /* 8 + header length */
	char *metadata_json;   /* "__metadata__" re-serialized compactly, or NULL */
};

/* The result of parsing one safetensors header. */
struct qs_st_header {
	struct qs_st_tensor *tensors;  /* sorted by offset */
	size_t ntensors;
	uint64_t data_offset;          /* 8 + header length */
	char *metadata_json;           /* or NULL */
};

/* Parses and validates a header.  json/json_len are the N header bytes;
 * file_size is the whole file's size (the data area must be exactly the sum
 * of the tensors: no holes, no overlap, nothing past the end, nothing
 * after).  fname is used in diagnostics only.  Pure function of its inputs:
 * the fuzz harness calls it directly. */
int qs_st_parse_header(const char *fname, const char *json, size_t json_len,
		       uint64_t file_size, struct qs_st_header *out,
		       struct qs_diag *diag);
void qs_st_header_release(struct qs_st_header *h);

/* Reads the header of the file at path (checking header length against the
 * file size and QS_ST_MAX_HEADER first) and parses it. */
int qs_st_read_file(const char *path, struct qs_st_header *out,
		    uint64_t *file_size, int64_t *mtime_ns, struct qs_diag *diag);
/* The same, reporting the file's identity as it was when read. */
int qs_st_read_file_id(const char *path, struct qs_st_header *out, struct qs_file_id *id,
		       struct qs_diag *diag);

/* One entry of model.safetensors.index.json's weight_map. */
struct qs_st_index_entry {
	char *tensor;
	char *shard;    /* file name, validated: relative, no "..", no '/' escape */
};
struct qs_st_index {
	struct qs_st_index_entry *entries;
	size_t nentries;
	char **shards;  /* distinct shard names, in order of first appearance */
	size_t nshards;
};
/* Parses index.json text.  fname names it in diagnostics.  Pure function:
 * the fuzz harness calls it directly. */
int qs_st_parse_index(const char *fname, const char *text, size_t len,
		      struct qs_st_index *out, struct qs_diag *diag);
void qs_st_index_release(struct qs_st_index *idx);

/* The opened checkpoint (the opaque struct of qshard.h). */
struct qs_checkpoint {
	char *path;                    /* as given */
	char *dir;                     /* folder holding the shards */
	struct qs_st_shard *shards;
	size_t nshards;
	struct qs_st_tensor *tensors;  /* plan order: shard, then offset */
	size_t ntensors;
	char *config_json;             /* config.json text, or NULL */
	bool config_invalid;           /* config.json present but not JSON */
	bool sharded;                  /* opened through index.json */
};

/* ---- writer (used by unpack) ---- */

struct qs_st_out_tensor {
	const char *name;
	enum qs_dtype dtype;
	uint32_t ndim;
	uint64_t shape[QS_MAX_DIMS];
};

struct qs_st_writer;
/* Creates path (O_EXCL, never through a symbolic link: an existing file or
 * link is an error) and writes the header for tensors (in the order given, data
 * offsets assigned consecutively).  metadata_json may be NULL.  Data must
 * then be appended with qs_st_writer_write in the same order. */
int qs_st_writer_open(const char *path, const struct qs_st_out_tensor *tensors,
		      size_t n, const char *metadata_json,
		      struct qs_st_writer **out, struct qs_diag *diag);
/* The same for name inside the folder open as dirfd (kept open by the
 * caller until the writer is closed). */
int qs_st_writer_openat(int dirfd, const char *name, const struct qs_st_out_tensor *tensors,
			size_t n, const char *metadata_json, struct qs_st_writer **out,
			struct qs_diag *diag);
int qs_st_writer_write(struct qs_st_writer *w, const void *data, size_t len,
		       struct qs_diag *diag);
/* Checks that exactly the declared bytes were written, fsyncs and closes.
 * Frees w in every case. */
int qs_st_writer_close(struct qs_st_writer *w, struct qs_diag *diag);
void qs_st_writer_abort(struct qs_st_writer *w);

#endif /* QS_SAFETENSORS_H */
