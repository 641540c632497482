/* container.c - encode/decode of the qshard metadata frames (header, tensor
 * record, index, trailer).  The layout is described in container.h and
 * man/qshard.5.  Decoders treat their input as hostile: every count and
 * length is checked against the bytes that remain before it is used, the
 * content checksum is checked before any field is interpreted, and the
 * encoding is canonical (no trailing bytes, zero padding checked) so that
 * decode followed by encode gives back the same bytes, which verify relies
 * on when it compares a record frame with its index copy. */
#include "container.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "util.h"

/* Fixed bytes of a skippable frame around the content. */
#define FRAME_HDR 8u
/* One chunk table entry: seven u64. */
#define CHUNK_ENTRY_SIZE 56u
/* Smallest possible record content: tag, name (1 byte), shard (0 bytes),
 * dtype, ndim, pad, scheme (0 bytes), source_xxh3, nchunks, xxh3.  Used to
 * bound an index's count before allocating. */
#define MIN_RECORD_CONTENT (4u + 2u + 1u + 2u + 1u + 1u + 2u + 2u + 8u + 4u + 8u)
#define TRAILER_CONTENT (QS_TRAILER_FRAME_SIZE - FRAME_HDR)

_Static_assert(TRAILER_CONTENT == 4 + 4 + 5 * 8, "trailer: tag, version, 4 u64, xxh3");
_Static_assert(CHUNK_ENTRY_SIZE == 7 * sizeof(uint64_t), "chunk entry: seven u64");

static size_t slen(const char *s)
{
	return s ? strlen(s) : 0;
}

static uint8_t *put_bytes(uint8_t *p, const void *src, size_t n)
{
	if (n)
		memcpy(p, src, n);
	return p + n;
}

/* Writes the skippable frame prefix, and once the content is complete its
 * trailing checksum.  content_len includes the checksum. */
static void frame_begin(uint8_t *frame, uint32_t magic, size_t content_len)
{
	qs_put_le32(frame, magic);
	qs_put_le32(frame + 4, (uint32_t)content_len);
}

static void frame_seal(uint8_t *frame, size_t content_len)
{
	uint8_t *content = frame + FRAME_HDR;
	qs_put_le64(content + content_len - 8, XXH3_64bits(content, content_len - 8));
}

/* ------------------------------------------------------------- header */

/* A side file name the decoder accepts: non-empty, short, a plain file
 * name (unpack writes it into a folder), no NUL. */
static bool side_name_ok(const char *name, size_t n)
{
	return n > 0 && n <= QS_MAX_SIDE_NAME && !memchr(name, '/', n) &&
	       !memchr(name, '\\', n) && !memchr(name, 0, n) &&
	       !(n == 1 && name[0] == '.') && !(n == 2 && name[0] == '.' && name[1] == '.');
}

int qs_header_encode(const struct qs_header *h, uint8_t **out, size_t *len)
{
	const char *strs[5] = {h->creator, h->options, h->config_json, h->metadata_json,
			       h->input};
	uint64_t content = 4 + 4 + 8 + 8 + 8 + 4;
	for (int i = 0; i < 5; i++)
		content += 4 + (uint64_t)slen(strs[i]);
	if (h->nfiles > QS_MAX_SIDE_FILES || (h->nfiles && !h->files))
		return -QS_EUSAGE;
	for (uint32_t i = 0; i < h->nfiles; i++) {
		size_t n = slen(h->files[i].name);
		if (!side_name_ok(h->files[i].name, n))
			return -QS_EUSAGE;
		content += 2 + (uint64_t)n + 4 + h->files[i].len;
	}
	if (content > QS_MAX_META_FRAME)
		return -QS_ETOOBIG;
	size_t total = FRAME_HDR + (size_t)content;
	uint8_t *f = malloc(total);
	if (!f)
		return -ENOMEM;
	frame_begin(f, QS_MAGIC_HEADER, (size_t)content);
	uint8_t *p = f + FRAME_HDR;
	p = put_bytes(p, "QSHD", 4);
	qs_put_le32(p, QS_FORMAT_VERSION);
	p += 4;
	qs_put_le64(p, h->input_fp);
	p += 8;
	qs_put_le64(p, h->options_fp);
	p += 8;
	for (int i = 0; i < 5; i++) {
		size_t n = slen(strs[i]);
		qs_put_le32(p, (uint32_t)n);
		p = put_bytes(p + 4, strs[i], n);
	}
	qs_put_le32(p, h->nfiles);
	p += 4;
	for (uint32_t i = 0; i < h->nfiles; i++) {
		size_t n = slen(h->files[i].name);
		qs_put_le16(p, (uint16_t)n);
		p = put_bytes(p + 2, h->files[i].name, n);
		qs_put_le32(p, h->files[i].len);
		p = put_bytes(p + 4, h->files[i].data, h->files[i].len);
	}
	frame_seal(f, (size_t)content);
	*out = f;
	*len = total;
	return 0;
}

const struct qs_side_file *qs_header_file(const struct qs_header *h, const char *name)
{
	for (uint32_t i = 0; h && i < h->nfiles; i++)
		if (strcmp(h->files[i].name, name) == 0)
			return &h->files[i];
	return NULL;
}

/* A bounds-checked reader over a content buffer: any overrun sets bad and
 * yields zeros, so parsing code checks once at the end of a section. */
struct cursor {
	const uint8_t *p;
	size_t left;
	bool bad;
};

static const uint8_t *cur_take(struct cursor *c, size_t n)
{
	if (c->bad || n > c->left) {
		c->bad = true;
		return NULL;
	}
	const uint8_t *at = c->p;
	c->p += n;
	c->left -= n;
	return at;
}

static uint8_t cur_u8(struct cursor *c)
{
	const uint8_t *b = cur_take(c, 1);
	return b ? b[0] : 0;
}

static uint16_t cur_u16(struct cursor *c)
{
	const uint8_t *b = cur_take(c, 2);
	return b ? qs_get_le16(b) : 0;
}

static uint32_t cur_u32(struct cursor *c)
{
	const uint8_t *b = cur_take(c, 4);
	return b ? qs_get_le32(b) : 0;
}

static uint64_t cur_u64(struct cursor *c)
{
	const uint8_t *b = cur_take(c, 8);
	return b ? qs_get_le64(b) : 0;
}

/* Copies n bytes out as a NUL-terminated string.  Returns 0, -QS_EFORMAT
 * (overrun or embedded NUL, which a C string could not carry) or -ENOMEM. */
static int cur_str(struct cursor *c, size_t n, char **out)
{
	const uint8_t *b = cur_take(c, n);
	if (!b)
		return -QS_EFORMAT;
	if (n && memchr(b, 0, n))
		return -QS_EFORMAT;
	char *s = malloc(n + 1);
	if (!s)
		return -ENOMEM;
	if (n)
		memcpy(s, b, n);
	s[n] = 0;
	*out = s;
	return 0;
}

/* Common prologue of every skippable content: room for tag and checksum,
 * the tag, then the checksum over everything before it.  On success the
 * cursor covers the bytes between tag and checksum. */
static int content_open(const char *fname, const char *what, const char *tag,
			const uint8_t *buf, size_t len, struct cursor *c,
			struct qs_diag *diag)
{
	if (!buf || len < 12)
		return qs_diag_set(diag, -QS_EFORMAT, "'%s': %s: truncated (%zu bytes)",
				   fname, what, len);
	if (memcmp(buf, tag, 4) != 0)
		return qs_diag_set(diag, -QS_EFORMAT, "'%s': %s: bad tag", fname, what);
	if (XXH3_64bits(buf, len - 8) != qs_get_le64(buf + len - 8))
		return qs_diag_set(diag, -QS_ECHECKSUM, "'%s': %s: checksum mismatch",
				   fname, what);
	c->p = buf + 4;
	c->left = len - 12;
	c->bad = false;
	return 0;
}

void qs_header_release(struct qs_header *h)
{
	if (!h)
		return;
	free(h->creator);
	free(h->options);
	free(h->config_json);
	free(h->metadata_json);
	free(h->input);
	for (uint32_t i = 0; i < h->nfiles; i++) {
		free(h->files[i].name);
		free(h->files[i].data);
	}
	free(h->files);
	memset(h, 0, sizeof(*h));
}

/* Version 2's side files: count, then name and bytes of each; names
 * unique plain file names. */
static int decode_side_files(const char *fname, struct cursor *c, struct qs_header *h,
			     struct qs_diag *diag)
{
	uint32_t n = cur_u32(c);
	if (c->bad)
		return qs_diag_set(diag, -QS_EFORMAT, "'%s': header: truncated", fname);
	if (n > QS_MAX_SIDE_FILES || (uint64_t)n * 6 > c->left)
		return qs_diag_set(diag, -QS_EFORMAT, "'%s': header: %u side files", fname,
				   (unsigned)n);
	if (n == 0)
		return 0;
	h->files = calloc(n, sizeof(*h->files));
	if (!h->files)
		return qs_diag_set(diag, -ENOMEM, "'%s': header: out of memory", fname);
	for (uint32_t i = 0; i < n; i++) {
		struct qs_side_file *f = &h->files[i];
		uint16_t nl = cur_u16(c);
		const uint8_t *name = cur_take(c, nl);
		if (!name || !side_name_ok((const char *)name, nl))
			return qs_diag_set(diag, -QS_EFORMAT,
					   "'%s': header: side file %u has a bad name", fname,
					   (unsigned)i);
		for (uint32_t j = 0; j < i; j++)
			if (strlen(h->files[j].name) == nl && memcmp(h->files[j].name, name, nl) == 0)
				return qs_diag_set(diag, -QS_EFORMAT,
						   "'%s': header: side file '%s' given twice", fname,
						   h->files[j].name);
		uint32_t len = cur_u32(c);
		const uint8_t *data = cur_take(c, len);
		if (!data)
			return qs_diag_set(diag, -QS_EFORMAT,
					   "'%s': header: side file %u length exceeds the frame",
					   fname, (unsigned)i);
		f->name = malloc((size_t)nl + 1);
		f->data = malloc((size_t)len + 1);
		h->nfiles = i + 1;  /* so release frees what was allocated */
		if (!f->name || !f->data)
			return qs_diag_set(diag, -ENOMEM, "'%s': header: out of memory", fname);
		memcpy(f->name, name, nl);
		f->name[nl] = 0;
		if (len)
			memcpy(f->data, data, len);
		f->data[len] = 0;
		f->len = len;
	}
	return 0;
}

int qs_header_decode(const char *fname, const uint8_t *buf, size_t len,
		     struct qs_header *h, struct qs_diag *diag)
{
	struct cursor c;
	memset(h, 0, sizeof(*h));
	int err = content_open(fname, "header", "QSHD", buf, len, &c, diag);
	if (err)
		return err;
	h->version = cur_u32(&c);
	if (!c.bad && (h->version < QS_FORMAT_VERSION_MIN || h->version > QS_FORMAT_VERSION))
		return qs_diag_set(diag, -QS_EFORMAT,
				   "'%s': header: unsupported format version %u",
				   fname, (unsigned)h->version);
	h->input_fp = cur_u64(&c);
	h->options_fp = cur_u64(&c);
	char **strs[5] = {&h->creator, &h->options, &h->config_json, &h->metadata_json,
			  &h->input};
	static const char *const names[5] = {"creator", "options", "config.json", "metadata",
					     "input description"};
	for (int i = 0; i < 5; i++) {
		uint32_t n = cur_u32(&c);
		if (c.bad || n > c.left) {
			err = qs_diag_set(diag, -QS_EFORMAT,
					  "'%s': header: %s length exceeds the frame",
					  fname, names[i]);
			goto fail;
		}
		/* empty optional JSON texts mean "none" */
		if (n == 0 && i >= 2)
			continue;
		err = cur_str(&c, n, strs[i]);
		if (err) {
			if (err == -QS_EFORMAT)
				qs_diag_set(diag, err, "'%s': header: %s holds a NUL byte",
					    fname, names[i]);
			else
				qs_diag_set(diag, err, "'%s': header: out of memory", fname);
			goto fail;
		}
	}
	if (h->version >= 2 && (err = decode_side_files(fname, &c, h, diag)) < 0)
		goto fail;
	if (c.bad || c.left != 0) {
		err = qs_diag_set(diag, -QS_EFORMAT, "'%s': header: %s", fname,
				  c.bad ? "truncated" : "unexpected bytes after the fields");
		goto fail;
	}
	return 0;
fail:
	qs_header_release(h);
	return err;
}

/* ------------------------------------------------------------- record */

static int record_check(const struct qs_record *r)
{
	if (!r->name || !r->name[0] || r->ndim > QS_MAX_DIMS ||
	    (unsigned)r->dtype >= QS_DTYPE_COUNT || (r->nchunks && !r->chunks))
		return -QS_EUSAGE;
	if (slen(r->name) > UINT16_MAX || slen(r->shard) > UINT16_MAX ||
	    slen(r->scheme) > UINT16_MAX)
		return -QS_ETOOBIG;
	return 0;
}

static uint64_t record_content_size(const struct qs_record *r)
{
	return 4 + 2 + (uint64_t)slen(r->name) + 2 + slen(r->shard) + 1 + 1 + 2 +
	       8ull * r->ndim + 2 + slen(r->scheme) + 8 + 4 +
	       (uint64_t)CHUNK_ENTRY_SIZE * r->nchunks + 8;
}

/* Writes the record content (content_len bytes, checksum included). */
static void record_write(const struct qs_record *r, uint8_t *p, size_t content_len)
{
	uint8_t *start = p;
	const char *strs[2] = {r->name, r->shard};
	p = put_bytes(p, "QSTR", 4);
	for (int i = 0; i < 2; i++) {
		size_t n = slen(strs[i]);
		qs_put_le16(p, (uint16_t)n);
		p = put_bytes(p + 2, strs[i], n);
	}
	*p++ = (uint8_t)r->dtype;
	*p++ = (uint8_t)r->ndim;
	qs_put_le16(p, 0);
	p += 2;
	for (uint32_t d = 0; d < r->ndim; d++, p += 8)
		qs_put_le64(p, r->shape[d]);
	size_t n = slen(r->scheme);
	qs_put_le16(p, (uint16_t)n);
	p = put_bytes(p + 2, r->scheme, n);
	qs_put_le64(p, r->source_xxh3);
	p += 8;
	qs_put_le32(p, r->nchunks);
	p += 4;
	for (uint32_t i = 0; i < r->nchunks; i++) {
		const struct qs_chunk_entry *e = &r->chunks[i];
		const uint64_t v[7] = {e->frame_offset, e->frame_size, e->payload_size,
				       e->row_begin, e->row_count, e->payload_xxh3,
				       e->frame_xxh3};
		for (int k = 0; k < 7; k++, p += 8)
			qs_put_le64(p, v[k]);
	}
	qs_put_le64(p, XXH3_64bits(start, content_len - 8));
}

int qs_record_encode(const struct qs_record *r, uint8_t **out, size_t *len)
{
	int err = record_check(r);
	if (err)
		return err;
	uint64_t content = record_content_size(r);
	if (content > QS_MAX_META_FRAME)
		return -QS_ETOOBIG;
	uint8_t *f = malloc(FRAME_HDR + (size_t)content);
	if (!f)
		return -ENOMEM;
	frame_begin(f, QS_MAGIC_RECORD, (size_t)content);
	record_write(r, f + FRAME_HDR, (size_t)content);
	*out = f;
	*len = FRAME_HDR + (size_t)content;
	return 0;
}

void qs_record_release(struct qs_record *r)
{
	if (!r)
		return;
	free(r->name);
	free(r->shard);
	free(r->scheme);
	free(r->chunks);
	memset(r, 0, sizeof(*r));
}

int qs_record_decode(const char *fname, const uint8_t *buf, size_t len,
		     struct qs_record *r, struct qs_diag *diag)
{
	struct cursor c;
	int err;
	memset(r, 0, sizeof(*r));
	err = content_open(fname, "record", "QSTR", buf, len, &c, diag);
	if (err)
		return err;
	const char *why = "truncated";
	char **strs[2] = {&r->name, &r->shard};
	for (int i = 0; i < 2; i++) {
		uint16_t n = cur_u16(&c);
		if (c.bad)
			goto bad;
		if (i == 0 && n == 0) {
			why = "empty tensor name";
			goto bad;
		}
		err = cur_str(&c, n, strs[i]);
		if (err == -ENOMEM)
			goto nomem;
		if (err) {
			why = n > c.left ? "truncated" : "name holds a NUL byte";
			goto bad;
		}
	}
	unsigned dtype = cur_u8(&c);
	r->ndim = cur_u8(&c);
	uint16_t pad = cur_u16(&c);
	if (c.bad)
		goto bad;
	if (dtype >= QS_DTYPE_COUNT) {
		why = "unknown dtype";
		goto bad;
	}
	r->dtype = (enum qs_dtype)dtype;
	if (r->ndim > QS_MAX_DIMS) {
		why = "too many dimensions";
		goto bad;
	}
	if (pad != 0) {
		why = "non-zero padding";
		goto bad;
	}
	/* the source byte count must be representable: readers multiply it out */
	uint64_t elems = 1;
	for (uint32_t d = 0; d < r->ndim; d++) {
		r->shape[d] = cur_u64(&c);
		if (!qs_mul_u64(elems, r->shape[d], &elems)) {
			why = "shape overflows";
			goto bad;
		}
	}
	if (!qs_mul_u64(elems, qs_dtype_size(r->dtype), &elems)) {
		why = "shape overflows";
		goto bad;
	}
	uint16_t sn = cur_u16(&c);
	if (c.bad)
		goto bad;
	err = cur_str(&c, sn, &r->scheme);
	if (err == -ENOMEM)
		goto nomem;
	if (err) {
		why = sn > c.left ? "truncated" : "scheme holds a NUL byte";
		goto bad;
	}
	r->source_xxh3 = cur_u64(&c);
	uint32_t nchunks = cur_u32(&c);
	if (c.bad)
		goto bad;
	if (nchunks > c.left / CHUNK_ENTRY_SIZE) {
		why = "chunk count exceeds the frame";
		goto bad;
	}
	if (nchunks) {
		r->chunks = calloc(nchunks, sizeof(*r->chunks));
		if (!r->chunks)
			goto nomem;
	}
	r->nchunks = nchunks;
	for (uint32_t i = 0; i < nchunks; i++) {
		struct qs_chunk_entry *e = &r->chunks[i];
		uint64_t end;
		e->frame_offset = cur_u64(&c);
		e->frame_size = cur_u64(&c);
		e->payload_size = cur_u64(&c);
		e->row_begin = cur_u64(&c);
		e->row_count = cur_u64(&c);
		e->payload_xxh3 = cur_u64(&c);
		e->frame_xxh3 = cur_u64(&c);
		if (!qs_add_u64(e->frame_offset, e->frame_size, &end) ||
		    !qs_add_u64(e->row_begin, e->row_count, &end)) {
			why = "chunk range overflows";
			goto bad;
		}
	}
	if (c.bad)
		goto bad;
	if (c.left != 0) {
		why = "unexpected bytes after the chunk table";
		goto bad;
	}
	return 0;
bad:
	err = qs_diag_set(diag, -QS_EFORMAT, "'%s': record%s%s%s: %s", fname,
			  r->name ? " '" : "", r->name ? r->name : "",
			  r->name ? "'" : "", why);
	qs_record_release(r);
	return err;
nomem:
	qs_record_release(r);
	return qs_diag_set(diag, -ENOMEM, "'%s': record: out of memory", fname);
}

/* -------------------------------------------------------------- index */

int qs_index_encode(const struct qs_record *records, size_t n, uint8_t **out,
		    size_t *len)
{
	uint64_t content = 4 + 4 + 8;
	if (n > UINT32_MAX)
		return -QS_ETOOBIG;
	for (size_t i = 0; i < n; i++) {
		int err = record_check(&records[i]);
		if (err)
			return err;
		content += 8 + 4 + record_content_size(&records[i]);
		if (content > QS_MAX_META_FRAME)
			return -QS_ETOOBIG;
	}
	uint8_t *f = malloc(FRAME_HDR + (size_t)content);
	if (!f)
		return -ENOMEM;
	frame_begin(f, QS_MAGIC_INDEX, (size_t)content);
	uint8_t *p = f + FRAME_HDR;
	p = put_bytes(p, "QSIX", 4);
	qs_put_le32(p, (uint32_t)n);
	p += 4;
	for (size_t i = 0; i < n; i++) {
		size_t rc = (size_t)record_content_size(&records[i]);
		qs_put_le64(p, records[i].record_offset);
		qs_put_le32(p + 8, (uint32_t)rc);
		record_write(&records[i], p + 12, rc);
		p += 12 + rc;
	}
	frame_seal(f, (size_t)content);
	*out = f;
	*len = FRAME_HDR + (size_t)content;
	return 0;
}

int qs_index_decode(const char *fname, const uint8_t *buf, size_t len,
		    struct qs_record **records, size_t *n, struct qs_diag *diag)
{
	struct cursor c;
	*records = NULL;
	*n = 0;
	int err = content_open(fname, "index", "QSIX", buf, len, &c, diag);
	if (err)
		return err;
	uint32_t count = cur_u32(&c);
	if (c.bad || count > c.left / (12 + MIN_RECORD_CONTENT) ||
	    (count == 0 && c.left != 0))
		return qs_diag_set(diag, -QS_EFORMAT,
				   "'%s': index: entry count exceeds the frame", fname);
	if (count == 0)
		return 0;
	struct qs_record *rs = calloc(count, sizeof(*rs));
	if (!rs)
		return qs_diag_set(diag, -ENOMEM, "'%s': index: out of memory", fname);
	size_t done = 0;
	for (; done < count; done++) {
		uint64_t off = cur_u64(&c);
		uint32_t clen = cur_u32(&c);
		const uint8_t *rb = c.bad ? NULL : cur_take(&c, clen);
		if (!rb) {
			err = qs_diag_set(diag, -QS_EFORMAT,
					  "'%s': index: entry %zu exceeds the frame", fname, done);
			goto fail;
		}
		struct qs_diag sub;
		err = qs_record_decode(fname, rb, clen, &rs[done], &sub);
		if (err) {
			qs_diag_set(diag, err, "'%s': index: entry %zu: %s", fname, done,
				    sub.msg);
			goto fail;
		}
		rs[done].record_offset = off;
		rs[done].record_content_len = clen;
	}
	if (c.left != 0) {
		err = qs_diag_set(diag, -QS_EFORMAT,
				  "'%s': index: unexpected bytes after the entries", fname);
		goto fail;
	}
	*records = rs;
	*n = count;
	return 0;
fail:
	for (size_t i = 0; i < done; i++)
		qs_record_release(&rs[i]);
	free(rs);
	return err;
}

/* ------------------------------------------------------------ trailer */

void qs_trailer_encode(const struct qs_trailer *t, uint8_t out[QS_TRAILER_FRAME_SIZE])
{
	frame_begin(out, QS_MAGIC_TRAILER, TRAILER_CONTENT);
	uint8_t *p = out + FRAME_HDR;
	memcpy(p, "QSTL", 4);
	qs_put_le32(p + 4, QS_FORMAT_VERSION);
	qs_put_le64(p + 8, t->index_offset);
	qs_put_le64(p + 16, t->index_size);
	qs_put_le64(p + 24, t->file_size);
	qs_put_le64(p + 32, t->tensor_count);
	frame_seal(out, TRAILER_CONTENT);
}

/* Unlike the other decoders this takes the whole fixed-size frame: a reader
 * finds it by position (the last 56 bytes), so magic and length are part of
 * what must be checked. */
int qs_trailer_decode(const char *fname, const uint8_t buf[QS_TRAILER_FRAME_SIZE],
		      struct qs_trailer *t, struct qs_diag *diag)
{
	struct cursor c;
	memset(t, 0, sizeof(*t));
	if (qs_get_le32(buf) != QS_MAGIC_TRAILER || qs_get_le32(buf + 4) != TRAILER_CONTENT)
		return qs_diag_set(diag, -QS_EFORMAT,
				   "'%s': trailer: not a qshard trailer (bad magic or length)",
				   fname);
	int err = content_open(fname, "trailer", "QSTL", buf + FRAME_HDR,
			       TRAILER_CONTENT, &c, diag);
	if (err)
		return err;
	t->version = cur_u32(&c);
	t->index_offset = cur_u64(&c);
	t->index_size = cur_u64(&c);
	t->file_size = cur_u64(&c);
	t->tensor_count = cur_u64(&c);
	if (t->version < QS_FORMAT_VERSION_MIN || t->version > QS_FORMAT_VERSION)
		return qs_diag_set(diag, -QS_EFORMAT,
				   "'%s': trailer: unsupported format version %u", fname,
				   (unsigned)t->version);
	uint64_t end;
	if (t->file_size < QS_TRAILER_FRAME_SIZE ||
	    !qs_add_u64(t->index_offset, t->index_size, &end) ||
	    end != t->file_size - QS_TRAILER_FRAME_SIZE ||
	    t->index_size < FRAME_HDR + 4 + 4 + 8)
		return qs_diag_set(diag, -QS_EFORMAT,
				   "'%s': trailer: index location is inconsistent", fname);
	return 0;
}
