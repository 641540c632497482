/* qread.c - libqshard as a loader: one tensor (or a row range of it) read
 * from an open qshard file into a caller's buffer, dequantized and
 * checksum-verified chunk by chunk, and the packed payloads for runtimes
 * that dequantize themselves (qs_qfile_read(3), qs_qfile_read_payload(3)).
 *
 * Nothing here writes to the struct qs_qfile: every call reads with pread
 * and works in buffers of its own, which is what makes concurrent reads
 * from one open file safe.  Only the chunks overlapping the requested rows
 * are read, so loading one tensor of a large file touches that tensor's
 * frames and nothing else (contrib/bench/bench-loader measures it). */
#include "container.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "scheme.h"
#include "util.h"

/* Buffers of one chunk, grown to the largest chunk a read meets. */
struct chunk_bufs {
	uint8_t *payload;
	float *weights;
	void *scratch;
	size_t payload_cap, weights_cap, scratch_cap;
};

static int grow(void **p, size_t *cap, uint64_t need)
{
	if (need <= *cap)
		return 0;
	if (need > SIZE_MAX)
		return -ENOMEM;
	void *n = realloc(*p, (size_t)need);
	if (!n)
		return -ENOMEM;
	*p = n;
	*cap = (size_t)need;
	return 0;
}

static void bufs_release(struct chunk_bufs *b)
{
	free(b->payload);
	free(b->weights);
	free(b->scratch);
}

static const char *fname_of(const struct qs_qfile *qf)
{
	return qs_basename(qf->path);
}

/* rows x cols as the chunk table counts them (qs_qfile_read(3)); the
 * open-time checks guarantee the products fit. */
static void record_geometry(const struct qs_record *r, uint64_t *rows, uint64_t *cols)
{
	uint64_t n = 1;
	for (uint32_t d = 0; d + 1 < r->ndim; d++)
		n *= r->shape[d];
	*rows = n;
	*cols = r->ndim ? r->shape[r->ndim - 1] : 1;
}

static bool is_raw(const struct qs_record *r)
{
	return strcmp(r->scheme, "raw") == 0;
}

static bool float_dtype(enum qs_dtype d)
{
	return d == QS_DTYPE_F32 || d == QS_DTYPE_BF16 || d == QS_DTYPE_F16;
}

static int lookup(const struct qs_qfile *qf, size_t index, const struct qs_record **r,
		  struct qs_diag *diag)
{
	if (index >= qf->nrecords)
		return qs_diag_set(diag, -QS_EUSAGE, "'%s': no tensor %zu (the file has %zu)",
				   fname_of(qf), index, qf->nrecords);
	*r = &qf->records[index];
	return 0;
}

/* Converts n values of dtype from to dtype to (both float dtypes, or
 * equal), through f32 in blocks where neither side is f32. */
static void convert(const struct qs_kernels *k, const void *src, enum qs_dtype from,
		    void *dst, enum qs_dtype to, uint64_t n)
{
	if (from == to) {
		memcpy(dst, src, (size_t)(n * qs_dtype_size(from)));
		return;
	}
	if (from == QS_DTYPE_F32) {
		if (to == QS_DTYPE_BF16)
			k->f32_to_bf16(src, dst, (size_t)n);
		else
			k->f32_to_f16(src, dst, (size_t)n);
		return;
	}
	if (to == QS_DTYPE_F32) {
		if (from == QS_DTYPE_BF16)
			k->bf16_to_f32(src, dst, (size_t)n);
		else
			k->f16_to_f32(src, dst, (size_t)n);
		return;
	}
	/* bf16 <-> f16: widening is exact, so one rounding as from f32 */
	float tmp[1024];
	const uint16_t *s = src;
	uint16_t *d = dst;
	for (uint64_t at = 0; at < n; at += 1024) {
		size_t m = (size_t)(n - at < 1024 ? n - at : 1024);
		convert(k, s + at, from, tmp, QS_DTYPE_F32, m);
		convert(k, tmp, QS_DTYPE_F32, d + at, to, m);
	}
}

/* Reads and verifies chunk c of r into b->payload. */
static int load_payload(const struct qs_qfile *qf, const struct qs_record *r, uint32_t c,
			struct chunk_bufs *b, struct qs_diag *diag)
{
	/* the frame header must agree with the record before its size is
	 * trusted for an allocation */
	int rc = qs_qfile_check_chunk(qf, r, c, diag);
	if (rc < 0)
		return rc;
	rc = grow((void **)&b->payload, &b->payload_cap, r->chunks[c].payload_size);
	if (rc < 0)
		return qs_diag_set(diag, rc, "'%s': tensor '%s': chunk %u: out of memory",
				   fname_of(qf), r->name, c);
	return qs_qfile_read_chunk(qf, r, c, b->payload, diag);
}

/* Dequantizes chunk c (already in b->payload) and writes its rows
 * [lo, hi) (tensor row numbers) to out as dtype. */
static int decode_rows(const struct qs_qfile *qf, const struct qs_record *r,
		       const struct qs_scheme *s, uint32_t c, uint64_t lo, uint64_t hi,
		       uint64_t cols, enum qs_dtype dtype, uint8_t *out, struct chunk_bufs *b,
		       struct qs_diag *diag)
{
	const struct qs_chunk_entry *e = &r->chunks[c];
	const struct qs_kernels *k = qs_kernels_get();
	uint64_t want = s->ops->payload_size(s, e->row_count, cols);
	if (want != e->payload_size)
		return qs_diag_set(diag, -QS_EFORMAT,
				   "'%s': tensor '%s': chunk %u has %llu payload bytes, %s needs %llu",
				   fname_of(qf), r->name, c, (unsigned long long)e->payload_size,
				   r->scheme, (unsigned long long)want);
	uint64_t n = e->row_count * cols, wbytes;
	if (!qs_mul_u64(n, sizeof(float), &wbytes))
		return qs_diag_set(diag, -QS_ETOOBIG, "'%s': tensor '%s': chunk %u too large",
				   fname_of(qf), r->name, c);
	/* a whole chunk wanted as f32 is dequantized straight into the
	 * caller's buffer: no second copy of it in memory */
	bool direct = dtype == QS_DTYPE_F32 && lo == e->row_begin &&
		      hi == e->row_begin + e->row_count;
	float *w = (float *)out;
	int rc = 0;
	if (!direct) {
		rc = grow((void **)&b->weights, &b->weights_cap, wbytes);
		w = b->weights;
	}
	if (rc == 0)
		rc = grow(&b->scratch, &b->scratch_cap, s->ops->scratch_size(s, e->row_count, cols) + 1);
	if (rc < 0)
		return qs_diag_set(diag, rc, "'%s': tensor '%s': chunk %u: out of memory",
				   fname_of(qf), r->name, c);
	rc = s->ops->dequantize(s, b->payload, e->row_count, cols, w, b->scratch);
	if (rc < 0)
		return qs_diag_set(diag, -QS_EFORMAT, "'%s': tensor '%s': chunk %u does not decode",
				   fname_of(qf), r->name, c);
	if (!direct)
		convert(k, w + (lo - e->row_begin) * cols, QS_DTYPE_F32, out, dtype,
			(hi - lo) * cols);
	return 0;
}

/* The first chunk holding row (chunks are contiguous and ascending, as
 * qs_qfile_open checked). */
static uint32_t chunk_of_row(const struct qs_record *r, uint64_t row)
{
	uint32_t lo = 0, hi = r->nchunks;
	while (hi - lo > 1) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (r->chunks[mid].row_begin <= row)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

int qs_qfile_read_rows(const struct qs_qfile *qf, size_t index, uint64_t row_begin,
		       uint64_t row_count, enum qs_dtype dtype, void *buf, size_t len,
		       struct qs_diag *diag)
{
	const struct qs_record *r = NULL;
	int rc = lookup(qf, index, &r, diag);
	if (rc < 0)
		return rc;
	const char *fname = fname_of(qf);
	bool raw = is_raw(r);
	if (!qs_dtype_size(dtype))
		return qs_diag_set(diag, -QS_EUSAGE, "'%s': tensor '%s': invalid dtype %d",
				   fname, r->name, (int)dtype);
	/* raw tensors keep their bytes in their own dtype, or convert between
	 * float dtypes; quantized ones decode to f32 and round from there */
	if (raw ? dtype != r->dtype && !(float_dtype(dtype) && float_dtype(r->dtype))
		: !float_dtype(dtype))
		return qs_diag_set(diag, -QS_EDTYPE, "'%s': tensor '%s' (%s, %s) cannot be read as %s",
				   fname, r->name, qs_dtype_name(r->dtype), r->scheme,
				   qs_dtype_name(dtype));
	uint64_t rows, cols, need;
	record_geometry(r, &rows, &cols);
	if (row_begin > rows || row_count > rows - row_begin)
		return qs_diag_set(diag, -QS_EUSAGE,
				   "'%s': tensor '%s': rows %llu:%llu outside its %llu rows", fname,
				   r->name, (unsigned long long)row_begin,
				   (unsigned long long)(row_begin + row_count), (unsigned long long)rows);
	if (!qs_mul_u64(row_count, cols, &need) || !qs_mul_u64(need, qs_dtype_size(dtype), &need) ||
	    need > len)
		return qs_diag_set(diag, -QS_EUSAGE,
				   "'%s': tensor '%s': a buffer of %zu bytes cannot hold %llu rows of %llu %s values",
				   fname, r->name, len, (unsigned long long)row_count,
				   (unsigned long long)cols, qs_dtype_name(dtype));
	if (row_count == 0 || cols == 0)
		return 0;
	struct qs_scheme s;
	if (!raw && qs_scheme_parse(r->scheme, &s, NULL) < 0)
		return qs_diag_set(diag, -QS_EFORMAT, "'%s': tensor '%s': unknown scheme '%s'", fname,
				   r->name, r->scheme);

	const struct qs_kernels *k = qs_kernels_get();
	struct chunk_bufs b = {0};
	uint64_t end = row_begin + row_count, out_row = cols * qs_dtype_size(dtype);
	uint8_t *out = buf;
	for (uint32_t c = chunk_of_row(r, row_begin); rc == 0 && c < r->nchunks; c++) {
		const struct qs_chunk_entry *e = &r->chunks[c];
		if (e->row_begin >= end)
			break;
		uint64_t lo = e->row_begin > row_begin ? e->row_begin : row_begin;
		uint64_t hi = e->row_begin + e->row_count < end ? e->row_begin + e->row_count : end;
		rc = load_payload(qf, r, c, &b, diag);
		if (rc < 0)
			break;
		uint8_t *dst = out + (lo - row_begin) * out_row;
		if (raw) {
			uint64_t src_row = cols * qs_dtype_size(r->dtype);
			if (e->payload_size != e->row_count * src_row) {
				rc = qs_diag_set(diag, -QS_EFORMAT,
						 "'%s': tensor '%s': chunk %u has %llu bytes for %llu rows of %llu %s values",
						 fname, r->name, c, (unsigned long long)e->payload_size,
						 (unsigned long long)e->row_count,
						 (unsigned long long)cols, qs_dtype_name(r->dtype));
				break;
			}
			convert(k, b.payload + (lo - e->row_begin) * src_row, r->dtype, dst, dtype,
				(hi - lo) * cols);
		} else {
			rc = decode_rows(qf, r, &s, c, lo, hi, cols, dtype, dst, &b, diag);
		}
	}
	bufs_release(&b);
	return rc;
}

int qs_qfile_read(const struct qs_qfile *qf, size_t index, enum qs_dtype dtype, void *buf,
		  size_t len, struct qs_diag *diag)
{
	const struct qs_record *r = NULL;
	int rc = lookup(qf, index, &r, diag);
	if (rc < 0)
		return rc;
	uint64_t rows, cols;
	record_geometry(r, &rows, &cols);
	return qs_qfile_read_rows(qf, index, 0, rows, dtype, buf, len, diag);
}

int qs_qfile_chunk(const struct qs_qfile *qf, size_t index, uint32_t chunk,
		   struct qs_chunk_info *out)
{
	if (index >= qf->nrecords || chunk >= qf->records[index].nchunks)
		return -QS_EUSAGE;
	const struct qs_chunk_entry *e = &qf->records[index].chunks[chunk];
	out->row_begin = e->row_begin;
	out->row_count = e->row_count;
	out->payload_bytes = e->payload_size;
	out->frame_offset = e->frame_offset;
	out->frame_bytes = e->frame_size;
	out->payload_xxh3 = e->payload_xxh3;
	return 0;
}

int qs_qfile_read_payload(const struct qs_qfile *qf, size_t index, uint32_t chunk,
			  void *buf, size_t len, struct qs_diag *diag)
{
	const struct qs_record *r = NULL;
	int rc = lookup(qf, index, &r, diag);
	if (rc < 0)
		return rc;
	if (chunk >= r->nchunks)
		return qs_diag_set(diag, -QS_EUSAGE, "'%s': tensor '%s': no chunk %u (it has %u)",
				   fname_of(qf), r->name, chunk, r->nchunks);
	if (r->chunks[chunk].payload_size > len)
		return qs_diag_set(diag, -QS_EUSAGE,
				   "'%s': tensor '%s': chunk %u: a buffer of %zu bytes cannot hold its %llu payload bytes",
				   fname_of(qf), r->name, chunk, len,
				   (unsigned long long)r->chunks[chunk].payload_size);
	rc = qs_qfile_check_chunk(qf, r, chunk, diag);
	if (rc < 0)
		return rc;
	return qs_qfile_read_chunk(qf, r, chunk, buf, diag);
}

/* Copies [p, p + n) into a fixed field; false when it does not fit. */
static bool copy_field(char *dst, size_t cap, const char *p, size_t n)
{
	if (n >= cap)
		return false;
	memcpy(dst, p, n);
	dst[n] = '\0';
	return true;
}

int qs_qfile_scheme(const struct qs_qfile *qf, size_t index, struct qs_scheme_info *out,
		    struct qs_diag *diag)
{
	const struct qs_record *r = NULL;
	int rc = lookup(qf, index, &r, diag);
	if (rc < 0)
		return rc;
	memset(out, 0, sizeof(*out));
	struct qs_scheme s;
	/* only a scheme this library can decode is described: its canonical
	 * text is then the parser's, with every parameter present */
	if (!is_raw(r) && qs_scheme_parse(r->scheme, &s, NULL) < 0)
		return qs_diag_set(diag, -QS_EFORMAT, "'%s': tensor '%s': unknown scheme '%s'",
				   fname_of(qf), r->name, r->scheme);
	const char *text = r->scheme, *colon = strchr(text, ':');
	bool ok = copy_field(out->name, sizeof(out->name), text,
			     colon ? (size_t)(colon - text) : strlen(text));
	for (const char *p = colon ? colon + 1 : NULL; ok && p && *p;) {
		const char *comma = strchr(p, ','), *item_end = comma ? comma : p + strlen(p);
		const char *eq = memchr(p, '=', (size_t)(item_end - p));
		struct qs_scheme_param *kv = &out->params[out->nparams];
		ok = eq && out->nparams < QS_SCHEME_MAX_PARAMS &&
		     copy_field(kv->key, sizeof(kv->key), p, (size_t)(eq - p)) &&
		     copy_field(kv->value, sizeof(kv->value), eq + 1, (size_t)(item_end - eq - 1));
		out->nparams += ok;
		p = comma ? comma + 1 : NULL;
	}
	if (!ok)
		return qs_diag_set(diag, -QS_EFORMAT, "'%s': tensor '%s': scheme '%s' does not split into parameters",
				   fname_of(qf), r->name, r->scheme);
	return 0;
}

const char *qs_scheme_info_get(const struct qs_scheme_info *s, const char *key)
{
	for (unsigned i = 0; i < s->nparams && i < QS_SCHEME_MAX_PARAMS; i++)
		if (strcmp(s->params[i].key, key) == 0)
			return s->params[i].value;
	return NULL;
}
