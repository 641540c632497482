/* container.h - the qshard file format: encode/decode of every structure,
 * the appending writer (with resume) and the reader.  man/qshard.5 is the
 * normative description; this header mirrors it.
 *
 * A qshard file is a sequence of zstd frames (RFC 8878), little-endian:
 *
 *   header frame      skippable, magic 0x184D2A51
 *   { data frame }*   regular zstd frame per row-chunk: the packed payload
 *   record frame      skippable, magic 0x184D2A52, after each tensor's frames
 *   ... (frames and records for every tensor, in plan order)
 *   index frame       skippable, magic 0x184D2A53: every record again
 *   trailer frame     skippable, magic 0x184D2A54, fixed 56 bytes, last
 *
 * A skippable frame is: u32 magic, u32 content length L, L content bytes.
 * Every skippable content starts with a 4-byte ASCII tag and ends with the
 * xxh3-64 of all content bytes before it, so any flipped bit is detected.
 *
 * header content:  "QSHD" u32 version(=2; 1 is still read) u64 input_fp
 *                  u64 options_fp
 *                  u32 len + creator, u32 len + options text,
 *                  u32 len + config.json text (0: none),
 *                  u32 len + safetensors __metadata__ JSON (0: none),
 *                  u32 len + input description (0: none; the text
 *                  input_fp hashes, so resume can say what changed),
 *                  version 2 only: u32 nfiles, nfiles x { u16 len + file
 *                  name, u32 len + file bytes } (the checkpoint's other
 *                  side files export needs: tokenizer.json etc.),
 *                  u64 xxh3
 * record content:  "QSTR" u16 len + name, u16 len + source shard name,
 *                  u8 dtype, u8 ndim, u16 zero, u64 shape[ndim],
 *                  u16 len + scheme text ("raw" for stored as-is),
 *                  u64 source_xxh3 (xxh3-64 of the tensor's source bytes),
 *                  u32 nchunks, nchunks x { u64 frame_offset, u64 frame_size,
 *                  u64 payload_size, u64 row_begin, u64 row_count,
 *                  u64 payload_xxh3, u64 frame_xxh3 }, u64 xxh3
 * index content:   "QSIX" u32 count, count x { u64 record_offset,
 *                  u32 record_content_length, record content bytes }, u64 xxh3
 * trailer content: "QSTL" u32 version(=2; 1 is still read) u64 index_offset u64 index_size
 *                  (whole frame) u64 file_size u64 tensor_count u64 xxh3
 */
#ifndef QS_CONTAINER_H
#define QS_CONTAINER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qshard.h"

/* Version 2 added the side files to the header; readers accept every
 * version from QS_FORMAT_VERSION_MIN on, writers write the newest. */
#define QS_FORMAT_VERSION 2u
#define QS_FORMAT_VERSION_MIN 1u
#define QS_MAGIC_HEADER 0x184D2A51u
#define QS_MAGIC_RECORD 0x184D2A52u
#define QS_MAGIC_INDEX 0x184D2A53u
#define QS_MAGIC_TRAILER 0x184D2A54u
#define QS_ZSTD_MAGIC 0xFD2FB528u
#define QS_TRAILER_FRAME_SIZE 56u  /* 8 frame bytes + 48 content bytes */
/* Upper bound for any skippable frame's content, so a damaged length can
 * never make a reader allocate without limit (an index of 1M tensors with
 * long names stays well under it). */
#define QS_MAX_META_FRAME (256u << 20)

/* A side file of the checkpoint carried verbatim (tokenizer.json, ...):
 * bytes, not text, since tokenizer.model is a binary protobuf. */
struct qs_side_file {
	char *name;      /* plain file name, no '/' */
	uint8_t *data;   /* len bytes (NUL-terminated for convenience) */
	uint32_t len;
};

/* Most side files a header holds and the longest side file name. */
#define QS_MAX_SIDE_FILES 16u
#define QS_MAX_SIDE_NAME 255u

struct qs_header {
	uint32_t version;
	uint64_t input_fp;    /* xxh3-64 over the canonical input description */
	uint64_t options_fp;  /* xxh3-64 over the canonical options text */
	char *creator;        /* "qshard 0.1.0" */
	char *options;        /* canonical options text (schemes, keeps, level) */
	char *config_json;    /* or NULL */
	char *metadata_json;  /* or NULL */
	char *input;          /* canonical input description (plan.c), or NULL */
	struct qs_side_file *files;  /* side files, in the order written */
	uint32_t nfiles;
};

/* The side file called name in h, or NULL. */
const struct qs_side_file *qs_header_file(const struct qs_header *h, const char *name);

struct qs_chunk_entry {
	uint64_t frame_offset;  /* absolute file offset of the zstd frame */
	uint64_t frame_size;    /* compressed frame bytes */
	uint64_t payload_size;  /* uncompressed payload bytes */
	uint64_t row_begin, row_count;
	uint64_t payload_xxh3;
	/* xxh3-64 of the compressed frame bytes.  zstd ignores some bits and
	 * different match offsets can decode alike, so only a hash of the
	 * stored bytes makes every flipped bit visible.  qs_cwriter_record
	 * fills it from the frames it wrote; callers need not set it. */
	uint64_t frame_xxh3;
};

struct qs_record {
	char *name;
	char *shard;            /* source shard file name */
	enum qs_dtype dtype;
	uint32_t ndim;
	uint64_t shape[QS_MAX_DIMS];
	char *scheme;           /* canonical scheme text, or "raw" */
	uint64_t source_xxh3;
	uint32_t nchunks;
	struct qs_chunk_entry *chunks;
	/* filled by readers, not encoded in the record: */
	uint64_t record_offset;       /* offset of the record's skippable frame */
	uint32_t record_content_len;
};

struct qs_trailer {
	uint32_t version;
	uint64_t index_offset, index_size, file_size, tensor_count;
};

/* ---- encode: each returns a malloc'd complete frame (magic, length,
 * content) in *out and its size in *len; 0 or -ENOMEM (also -QS_ETOOBIG
 * for a string or frame the format cannot hold, -QS_EUSAGE for a record
 * the decoder would reject: empty name, bad dtype or ndim). ---- */
int qs_header_encode(const struct qs_header *h, uint8_t **out, size_t *len);
int qs_record_encode(const struct qs_record *r, uint8_t **out, size_t *len);
int qs_index_encode(const struct qs_record *records, size_t n, uint8_t **out,
		    size_t *len);
void qs_trailer_encode(const struct qs_trailer *t, uint8_t out[QS_TRAILER_FRAME_SIZE]);

/* ---- decode: buf/len is a frame's *content* (after magic and length;
 * qs_trailer_decode alone takes the whole fixed 56-byte frame).
 * Every length is validated; -QS_EFORMAT or -QS_ECHECKSUM with diag naming
 * the structure.  fname is for diagnostics. ---- */
int qs_header_decode(const char *fname, const uint8_t *buf, size_t len,
		     struct qs_header *h, struct qs_diag *diag);
void qs_header_release(struct qs_header *h);
int qs_record_decode(const char *fname, const uint8_t *buf, size_t len,
		     struct qs_record *r, struct qs_diag *diag);
void qs_record_release(struct qs_record *r);
int qs_index_decode(const char *fname, const uint8_t *buf, size_t len,
		    struct qs_record **records, size_t *n, struct qs_diag *diag);
int qs_trailer_decode(const char *fname, const uint8_t buf[QS_TRAILER_FRAME_SIZE],
		      struct qs_trailer *t, struct qs_diag *diag);

/* Total compressed size of the zstd or skippable frame starting at off in
 * fd, found by walking block headers (RFC 8878 section 3.1.1.2) so that no
 * more than a few bytes are read; fails with -QS_EFORMAT if the frame is
 * malformed or runs past limit (the file size). */
int qs_frame_size_at(int fd, uint64_t off, uint64_t limit, uint32_t *magic,
		     uint64_t *size);

/* ---- writer ---- */

struct qs_cwriter;

/* Creates final_path + ".partial" (refusing an existing one unless force)
 * and writes the header frame.  sync_each: fdatasync after every record. */
int qs_cwriter_create(const char *final_path, const struct qs_header *h,
		      bool force, bool sync_each, struct qs_cwriter **out,
		      struct qs_diag *diag);

/* Opens final_path + ".partial" for --resume: checks the header against h
 * (-QS_EMISMATCH with diag saying whether input or options differ), scans
 * frames and records, keeps every tensor whose record and frames are
 * complete and whose record checksum holds, truncates the rest.  The kept
 * records are returned (caller frees each with qs_record_release and the
 * array with free); the writer continues after them. */
int qs_cwriter_resume(const char *final_path, const struct qs_header *h,
		      bool sync_each, struct qs_cwriter **out,
		      struct qs_record **kept, size_t *nkept, struct qs_diag *diag);

/* Appends a compressed zstd frame; returns its offset in *offset.  Frames
 * are staged (outbuf.h: O_DIRECT where the file system allows) and are on
 * file once the next record, finish or close_partial returns; a write
 * error (a full disk) may therefore surface only at the record. */
int qs_cwriter_frame(struct qs_cwriter *w, const void *frame, size_t len,
		     uint64_t *offset, struct qs_diag *diag);
/* Appends the record of a finished tensor (and fdatasyncs if sync_each).
 * The writer keeps a copy for the index. */
int qs_cwriter_record(struct qs_cwriter *w, const struct qs_record *r,
		      struct qs_diag *diag);
/* Writes index and trailer, fsyncs, renames .partial to the final name and
 * fsyncs the folder.  Frees w. */
int qs_cwriter_finish(struct qs_cwriter *w, struct qs_diag *diag);
/* Syncs what was written and closes, leaving the .partial for --resume.
 * Frees w. */
int qs_cwriter_close_partial(struct qs_cwriter *w, struct qs_diag *diag);
uint64_t qs_cwriter_size(const struct qs_cwriter *w);

/* ---- reader (the opaque struct qs_qfile of qshard.h) ---- */

struct qs_qfile {
	char *path;
	int fd;
	uint64_t size;
	struct qs_header header;
	struct qs_trailer trailer;
	struct qs_record *records;
	size_t nrecords;
	unsigned part_k, part_n;  /* a part file's K/N (part_id.c); 0 otherwise */
	/* records sorted by name, for qs_qfile_find (NULL when nrecords < 2) */
	const struct qs_record **by_name;
};

/* qs_qfile_open that, when the file is rejected, also names the damaged
 * structure ("trailer", "index", "header" or the tensor name) through
 * report (may be NULL) with a short description; verify uses it. */
int qs_qfile_open_report(const char *path, struct qs_qfile **out,
			 qs_damage_fn report, void *user, struct qs_diag *diag);

/* Checks, reading only the frame header, that chunk c's frame declares
 * exactly payload_size content bytes and that a frame of frame_size bytes
 * can hold that much, so a caller may allocate payload_size bytes before
 * qs_qfile_read_chunk without a damaged record choosing the amount.
 * -QS_EFORMAT (or -errno) with diag naming the tensor. */
int qs_qfile_check_chunk(const struct qs_qfile *qf, const struct qs_record *r,
			 uint32_t c, struct qs_diag *diag);

/* Decompresses chunk c of record r into dst (capacity >= payload_size),
 * checking frame bounds, the decompressed size and the payload xxh3. */
int qs_qfile_read_chunk(const struct qs_qfile *qf, const struct qs_record *r,
			uint32_t c, void *dst, struct qs_diag *diag);

/* ---- part files (part_id.c, convert --part K/N) ---- */

/* True when options (a header's options text) ends with " part=K/N",
 * 1 <= K <= N <= QS_PART_MAX; then *prefix_len is the length of the
 * whole conversion's options text before the suffix.  Any output may be
 * NULL. */
bool qs_part_id_parse(const char *options, unsigned *k, unsigned *n, size_t *prefix_len);
/* options + " part=K/N", malloc'd; NULL on allocation failure. */
char *qs_part_id_options(const char *options, unsigned k, unsigned n);

#endif /* QS_CONTAINER_H */
