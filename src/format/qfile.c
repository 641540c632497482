/* qfile.c - the qshard reader: locates the index through the fixed-size
 * trailer at the end of the file (O(1) random access to every tensor),
 * validates every structure before anything is used, and decompresses
 * single chunks on demand. */
#include "container.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>
#include <zstd.h>

#include "util.h"

/* Smallest header frame: tag, version, two fingerprints, four empty
 * strings, checksum. */
#define MIN_HEADER_FRAME (8u + 4u + 4u + 8u + 8u + 16u + 8u)

struct open_ctx {
	const char *path;
	const char *fname;  /* for messages */
	qs_damage_fn report;
	void *user;
	struct qs_diag *diag;
	/* a part file (part_id.c): a record may hold a contiguous piece of
	 * its tensor's rows rather than all of them */
	bool part;
};

/* Fills diag with "'file': <what>: <detail>" (or "tensor 'name'") and
 * reports what/detail. */
static int damage(struct open_ctx *c, int err, const char *what, bool tensor,
		  const char *detail)
{
	if (tensor)
		qs_diag_set(c->diag, err, "'%s': tensor '%s': %s", c->fname, what, detail);
	else
		qs_diag_set(c->diag, err, "'%s': %s: %s", c->fname, what, detail);
	if (c->report)
		c->report(what, detail, c->user);
	return err;
}

/* A decoder already filled diag; report the structure with its error. */
static int decode_damage(struct open_ctx *c, int err, const char *what)
{
	if (c->report && err != -ENOMEM)
		c->report(what, err == -QS_ECHECKSUM ? "checksum mismatch" : "malformed",
			  c->user);
	return err;
}

static int io_error(struct open_ctx *c, int err, const char *what)
{
	return qs_diag_set(c->diag, err, "'%s': cannot read the %s: %s", c->fname, what,
			   qs_strerror(err));
}

void qs_qfile_free(struct qs_qfile *qf)
{
	if (!qf)
		return;
	if (qf->fd >= 0)
		close(qf->fd);
	for (size_t i = 0; i < qf->nrecords; i++)
		qs_record_release(&qf->records[i]);
	free(qf->records);
	free(qf->by_name);
	qs_header_release(&qf->header);
	free(qf->path);
	free(qf);
}

static int cmp_name(const void *a, const void *b)
{
	const struct qs_record *const *x = a, *const *y = b;
	return strcmp((*x)->name, (*y)->name);
}

/* Rows of a tensor as the chunk table counts them: all dimensions but the
 * last (a 0-D or 1-D tensor is one row). */
static bool tensor_rows(const struct qs_record *r, uint64_t *rows)
{
	uint64_t n = 1;
	for (uint32_t d = 0; d + 1 < r->ndim; d++)
		if (!qs_mul_u64(n, r->shape[d], &n))
			return false;
	*rows = n;
	return true;
}

static uint64_t tensor_elements(const struct qs_record *r)
{
	uint64_t n = 1;
	/* the decoder checked this product (times the dtype size) fits */
	for (uint32_t d = 0; d < r->ndim; d++)
		n *= r->shape[d];
	return n;
}

static int check_record(struct open_ctx *c, const struct qs_record *r,
			uint64_t data_begin, uint64_t data_end)
{
	uint64_t rec_end, rows, next = 0;
	char msg[160];
	if (r->record_offset < data_begin ||
	    !qs_add_u64(r->record_offset, 8 + (uint64_t)r->record_content_len, &rec_end) ||
	    rec_end > data_end)
		return damage(c, -QS_EFORMAT, r->name, true,
			      "record lies outside the data area");
	if (!tensor_rows(r, &rows))
		return damage(c, -QS_EFORMAT, r->name, true, "shape overflows");
	/* unpack joins the shard name to its output folder: it must be a plain
	 * file name there, never a path out of it */
	if (!r->shard[0] || strcmp(r->shard, ".") == 0 || strcmp(r->shard, "..") == 0 ||
	    strchr(r->shard, '/') || strchr(r->shard, '\\'))
		return damage(c, -QS_EFORMAT, r->name, true,
			      "source shard name is not a plain file name");
	if (r->nchunks == 0) {
		if (tensor_elements(r) != 0)
			return damage(c, -QS_EFORMAT, r->name, true, "no chunks for a non-empty tensor");
		return 0;
	}
	if (c->part)
		next = r->chunks[0].row_begin;
	for (uint32_t i = 0; i < r->nchunks; i++) {
		const struct qs_chunk_entry *e = &r->chunks[i];
		/* frames precede their record; the decoder checked the sum fits */
		if (e->frame_offset < data_begin || e->frame_size == 0 ||
		    e->frame_offset + e->frame_size > r->record_offset) {
			snprintf(msg, sizeof(msg), "chunk %u lies outside the data area", i);
			return damage(c, -QS_EFORMAT, r->name, true, msg);
		}
		/* a zstd block holds at most 128 KiB and takes at least 3
		 * bytes (RFC 8878 3.1.1.2): more payload than that is a lie
		 * no reader should size a buffer by */
		if (e->payload_size / (128u << 10) > e->frame_size / 3) {
			snprintf(msg, sizeof(msg), "chunk %u: payload size exceeds what its frame can hold", i);
			return damage(c, -QS_EFORMAT, r->name, true, msg);
		}
		if (e->row_begin != next || e->row_count == 0) {
			snprintf(msg, sizeof(msg), "chunk %u does not continue the row range", i);
			return damage(c, -QS_EFORMAT, r->name, true, msg);
		}
		next = e->row_begin + e->row_count;
	}
	if (next != rows && !(c->part && next < rows)) {
		snprintf(msg, sizeof(msg), "chunks cover %llu of %llu rows",
			 (unsigned long long)next, (unsigned long long)rows);
		return damage(c, -QS_EFORMAT, r->name, true, msg);
	}
	return 0;
}

static int open_inner(struct open_ctx *c, struct qs_qfile *qf)
{
	struct stat st;
	int err;
	char msg[200];

	qf->fd = open(c->path, O_RDONLY | O_CLOEXEC);
	if (qf->fd < 0) {
		err = -errno;
		return qs_diag_set(c->diag, err, "'%s': cannot open: %s", c->fname,
				   qs_strerror(err));
	}
	/* trailer, index and header are read as exact ranges: read-ahead
	 * would only pull payload pages into the page cache (and convert's
	 * summary, which opens the fresh output, would leave them there) */
	(void)posix_fadvise(qf->fd, 0, 0, POSIX_FADV_RANDOM);
	if (fstat(qf->fd, &st) != 0) {
		err = -errno;
		return qs_diag_set(c->diag, err, "'%s': cannot stat: %s", c->fname,
				   qs_strerror(err));
	}
	if (!S_ISREG(st.st_mode))
		return qs_diag_set(c->diag, -QS_EFORMAT, "'%s': not a regular file", c->fname);
	qf->size = (uint64_t)st.st_size;
	if (qf->size < MIN_HEADER_FRAME + QS_TRAILER_FRAME_SIZE) {
		snprintf(msg, sizeof(msg), "file too small to be a qshard file (%llu bytes)",
			 (unsigned long long)qf->size);
		return damage(c, -QS_EFORMAT, "trailer", false, msg);
	}

	/* trailer: the last 56 bytes, found by position */
	uint8_t tr[QS_TRAILER_FRAME_SIZE];
	err = qs_pread_full(qf->fd, tr, sizeof(tr), qf->size - sizeof(tr));
	if (err)
		return io_error(c, err, "trailer");
	err = qs_trailer_decode(c->fname, tr, &qf->trailer, c->diag);
	if (err)
		return decode_damage(c, err, "trailer");
	if (qf->trailer.file_size != qf->size) {
		snprintf(msg, sizeof(msg),
			 "recorded file size %llu differs from the actual size %llu",
			 (unsigned long long)qf->trailer.file_size,
			 (unsigned long long)qf->size);
		return damage(c, -QS_EFORMAT, "trailer", false, msg);
	}

	/* index: where the trailer says, of exactly the size it says */
	const struct qs_trailer *t = &qf->trailer;
	if (t->index_size - 8 > QS_MAX_META_FRAME || t->index_offset < MIN_HEADER_FRAME)
		return damage(c, -QS_EFORMAT, "index", false, "implausible index size");
	uint8_t *ibuf = malloc((size_t)t->index_size);
	if (!ibuf)
		return qs_diag_set(c->diag, -ENOMEM, "'%s': out of memory", c->fname);
	err = qs_pread_full(qf->fd, ibuf, (size_t)t->index_size, t->index_offset);
	if (err) {
		free(ibuf);
		return io_error(c, err, "index");
	}
	if (qs_get_le32(ibuf) != QS_MAGIC_INDEX ||
	    qs_get_le32(ibuf + 4) != t->index_size - 8) {
		free(ibuf);
		return damage(c, -QS_EFORMAT, "index", false,
			      "bad frame magic or length");
	}
	err = qs_index_decode(c->fname, ibuf + 8, (size_t)(t->index_size - 8),
			      &qf->records, &qf->nrecords, c->diag);
	free(ibuf);
	if (err)
		return decode_damage(c, err, "index");
	if (qf->nrecords != t->tensor_count)
		return damage(c, -QS_EFORMAT, "index", false,
			      "tensor count differs from the trailer");

	/* header frame at offset 0 */
	uint8_t hh[8];
	err = qs_pread_full(qf->fd, hh, 8, 0);
	if (err)
		return io_error(c, err, "header");
	uint64_t hlen = qs_get_le32(hh + 4);
	if (qs_get_le32(hh) != QS_MAGIC_HEADER)
		return damage(c, -QS_EFORMAT, "header", false, "not a qshard file (bad magic)");
	if (hlen > QS_MAX_META_FRAME || 8 + hlen > t->index_offset)
		return damage(c, -QS_EFORMAT, "header", false, "frame length exceeds the file");
	uint8_t *hbuf = malloc(hlen ? (size_t)hlen : 1);
	if (!hbuf)
		return qs_diag_set(c->diag, -ENOMEM, "'%s': out of memory", c->fname);
	err = qs_pread_full(qf->fd, hbuf, (size_t)hlen, 8);
	if (!err)
		err = qs_header_decode(c->fname, hbuf, (size_t)hlen, &qf->header, c->diag);
	else
		io_error(c, err, "header");
	free(hbuf);
	if (err)
		return err == -QS_EFORMAT || err == -QS_ECHECKSUM ? decode_damage(c, err, "header")
								   : err;

	(void)posix_fadvise(qf->fd, 0, 0, POSIX_FADV_NORMAL);  /* payload reads stream */
	c->part = qs_part_id_parse(qf->header.options, &qf->part_k, &qf->part_n, NULL);
	uint64_t data_begin = 8 + hlen;
	for (size_t i = 0; i < qf->nrecords; i++) {
		err = check_record(c, &qf->records[i], data_begin, t->index_offset);
		if (err)
			return err;
	}
	if (qf->nrecords > 1) {
		const struct qs_record **by = malloc(qf->nrecords * sizeof(*by));
		if (!by)
			return qs_diag_set(c->diag, -ENOMEM, "'%s': out of memory", c->fname);
		for (size_t i = 0; i < qf->nrecords; i++)
			by[i] = &qf->records[i];
		qsort(by, qf->nrecords, sizeof(*by), cmp_name);
		for (size_t i = 1; i < qf->nrecords; i++) {
			if (strcmp(by[i - 1]->name, by[i]->name) == 0) {
				err = damage(c, -QS_EFORMAT, by[i]->name, true,
					     "listed twice in the index");
				break;
			}
		}
		/* kept: qs_qfile_find searches it */
		qf->by_name = by;
	}
	return err;
}

int qs_qfile_open_report(const char *path, struct qs_qfile **out,
			 qs_damage_fn report, void *user, struct qs_diag *diag)
{
	*out = NULL;
	struct open_ctx c = {path, qs_basename(path), report, user, diag, false};
	struct qs_qfile *qf = calloc(1, sizeof(*qf));
	if (!qf)
		return qs_diag_set(diag, -ENOMEM, "'%s': out of memory", c.fname);
	qf->fd = -1;
	qf->path = strdup(path);
	if (!qf->path) {
		free(qf);
		return qs_diag_set(diag, -ENOMEM, "'%s': out of memory", c.fname);
	}
	int err = open_inner(&c, qf);
	if (err) {
		qs_qfile_free(qf);
		return err;
	}
	*out = qf;
	return 0;
}

int qs_qfile_open(const char *path, struct qs_qfile **out, struct qs_diag *diag)
{
	return qs_qfile_open_report(path, out, NULL, NULL, diag);
}

size_t qs_qfile_count(const struct qs_qfile *qf)
{
	return qf->nrecords;
}

void qs_qfile_tensor(const struct qs_qfile *qf, size_t i, struct qs_tensor_info *out)
{
	const struct qs_record *r = &qf->records[i];
	memset(out, 0, sizeof(*out));
	out->name = r->name;
	out->dtype = r->dtype;
	out->ndim = r->ndim;
	memcpy(out->shape, r->shape, sizeof(out->shape));
	uint64_t elems = tensor_elements(r);
	/* MXFP4: 16 bytes of codes and one scale byte per 32 values */
	out->source_bytes = r->dtype == QS_DTYPE_MXFP4 ? elems / 32 * 17
						       : elems * qs_dtype_size(r->dtype);
	out->file = NULL;
	out->scheme = r->scheme;
	for (uint32_t c = 0; c < r->nchunks; c++) {
		out->payload_bytes += r->chunks[c].payload_size;
		out->stored_bytes += r->chunks[c].frame_size;
	}
	out->chunks = r->nchunks;
	if (elems) {
		out->bpw_nominal = (double)out->payload_bytes * 8.0 / (double)elems;
		out->bpw_on_disk = (double)out->stored_bytes * 8.0 / (double)elems;
	}
	out->source_xxh3 = r->source_xxh3;
}

const char *qs_qfile_options(const struct qs_qfile *qf)
{
	return qf->header.options;
}

const char *qs_qfile_creator(const struct qs_qfile *qf)
{
	return qf->header.creator;
}

uint64_t qs_qfile_size(const struct qs_qfile *qf)
{
	return qf->size;
}

bool qs_qfile_part(const struct qs_qfile *qf, unsigned *k, unsigned *n)
{
	if (!qf->part_n)
		return false;
	if (k)
		*k = qf->part_k;
	if (n)
		*n = qf->part_n;
	return true;
}

int qs_qfile_find(const struct qs_qfile *qf, const char *name, size_t *index)
{
	if (qf->nrecords == 1 && strcmp(qf->records[0].name, name) == 0) {
		*index = 0;
		return 0;
	}
	size_t lo = 0, hi = qf->by_name ? qf->nrecords : 0;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(qf->by_name[mid]->name, name);
		if (c == 0) {
			*index = (size_t)(qf->by_name[mid] - qf->records);
			return 0;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -ENOENT;
}

int qs_qfile_check_chunk(const struct qs_qfile *qf, const struct qs_record *r,
			 uint32_t c, struct qs_diag *diag)
{
	const char *fname = qs_basename(qf->path);
	if (c >= r->nchunks)
		return qs_diag_set(diag, -QS_EUSAGE, "'%s': tensor '%s': no chunk %u", fname,
				   r->name, c);
	const struct qs_chunk_entry *e = &r->chunks[c];
	uint64_t end;
	uint8_t head[18];  /* the largest zstd frame header (RFC 8878 3.1.1.1) */
	size_t n = e->frame_size < sizeof(head) ? (size_t)e->frame_size : sizeof(head);
	if (!qs_add_u64(e->frame_offset, e->frame_size, &end) || end > qf->size)
		return qs_diag_set(diag, -QS_EFORMAT,
				   "'%s': tensor '%s': chunk %u lies outside the file", fname,
				   r->name, c);
	int err = qs_pread_full(qf->fd, head, n, e->frame_offset);
	if (err)
		return qs_diag_set(diag, err, "'%s': tensor '%s': chunk %u: read failed: %s",
				   fname, r->name, c, qs_strerror(err));
	/* every block holds at most 128 KiB (RFC 8878 3.1.1.2.3) and takes at
	 * least 3 bytes, which bounds what frame_size bytes can expand to */
	unsigned long long fcs = ZSTD_getFrameContentSize(head, n);
	if (fcs == ZSTD_CONTENTSIZE_UNKNOWN || fcs == ZSTD_CONTENTSIZE_ERROR ||
	    fcs != e->payload_size || e->payload_size / (128u << 10) > e->frame_size / 3 ||
	    e->payload_size > SIZE_MAX)
		return qs_diag_set(diag, -QS_EFORMAT,
				   "'%s': tensor '%s': chunk %u: frame content size does not match the record",
				   fname, r->name, c);
	return 0;
}

int qs_qfile_read_chunk(const struct qs_qfile *qf, const struct qs_record *r,
			uint32_t c, void *dst, struct qs_diag *diag)
{
	const char *fname = qs_basename(qf->path);
	if (c >= r->nchunks)
		return qs_diag_set(diag, -QS_EUSAGE, "'%s': tensor '%s': no chunk %u", fname,
				   r->name, c);
	const struct qs_chunk_entry *e = &r->chunks[c];
	uint64_t end;
	if (!qs_add_u64(e->frame_offset, e->frame_size, &end) || end > qf->size ||
	    e->frame_size > SIZE_MAX || e->payload_size > SIZE_MAX)
		return qs_diag_set(diag, -QS_EFORMAT,
				   "'%s': tensor '%s': chunk %u lies outside the file", fname,
				   r->name, c);
	void *src = malloc(e->frame_size ? (size_t)e->frame_size : 1);
	if (!src)
		return qs_diag_set(diag, -ENOMEM, "'%s': tensor '%s': out of memory", fname,
				   r->name);
	int err = qs_pread_full(qf->fd, src, (size_t)e->frame_size, e->frame_offset);
	if (err) {
		free(src);
		return qs_diag_set(diag, err, "'%s': tensor '%s': chunk %u: read failed: %s",
				   fname, r->name, c, qs_strerror(err));
	}
	/* checked before zstd sees the bytes: it also covers the bits zstd
	 * would ignore */
	if (XXH3_64bits(src, (size_t)e->frame_size) != e->frame_xxh3) {
		free(src);
		return qs_diag_set(diag, -QS_ECHECKSUM,
				   "'%s': tensor '%s': chunk %u: frame checksum mismatch", fname,
				   r->name, c);
	}
	/* the chunk must be exactly one zstd frame: ZSTD_decompress would also
	 * accept several concatenated or skippable frames */
	size_t fsz = ZSTD_findFrameCompressedSize(src, (size_t)e->frame_size);
	if (ZSTD_isError(fsz) || fsz != e->frame_size ||
	    qs_get_le32(src) != QS_ZSTD_MAGIC) {
		free(src);
		return qs_diag_set(diag, -QS_EFORMAT,
				   "'%s': tensor '%s': chunk %u: malformed zstd frame", fname,
				   r->name, c);
	}
	size_t got = ZSTD_decompress(dst, (size_t)e->payload_size, src, (size_t)e->frame_size);
	free(src);
	if (ZSTD_isError(got))
		return qs_diag_set(diag, -QS_ECHECKSUM,
				   "'%s': tensor '%s': chunk %u: decompression failed: %s",
				   fname, r->name, c, ZSTD_getErrorName(got));
	if (got != e->payload_size)
		return qs_diag_set(diag, -QS_ECHECKSUM,
				   "'%s': tensor '%s': chunk %u: decompressed %zu bytes, expected %llu",
				   fname, r->name, c, got, (unsigned long long)e->payload_size);
	if (XXH3_64bits(dst, got) != e->payload_xxh3)
		return qs_diag_set(diag, -QS_ECHECKSUM,
				   "'%s': tensor '%s': chunk %u: payload checksum mismatch",
				   fname, r->name, c);
	return 0;
}
