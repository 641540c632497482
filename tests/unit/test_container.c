/* test_container.c - encode/decode of every qshard metadata structure and
 * the frame-size scanner. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ZSTD_STATIC_LINKING_ONLY
#include <xxhash.h>
#include <zstd.h>

#include "container.h"
#include "test_util.h"
#include "util.h"

static struct qs_chunk_entry sample_chunks[3] = {
	{100, 50, 400, 0, 2, 0x1111, 0xaaaa},
	{150, 60, 400, 2, 2, 0x2222, 0xbbbb},
	{210, 10, 200, 4, 1, 0x3333, 0xcccc},
};

static struct qs_record sample_record(void)
{
	struct qs_record r = {
		.name = "model.layers.0.mlp.up_proj.weight",
		.shard = "model-00001-of-00002.safetensors",
		.dtype = QS_DTYPE_BF16,
		.ndim = 2,
		.shape = {5, 100},
		.scheme = "rtn:bits=4,group=32",
		.source_xxh3 = 0xdeadbeefcafef00dull,
		.nchunks = 3,
		.chunks = sample_chunks,
		.record_offset = 220,
	};
	return r;
}

static void assert_record_eq(const struct qs_record *a, const struct qs_record *b)
{
	assert_string_equal(a->name, b->name);
	assert_string_equal(a->shard ? a->shard : "", b->shard ? b->shard : "");
	assert_string_equal(a->scheme ? a->scheme : "", b->scheme ? b->scheme : "");
	assert_int_equal(a->dtype, b->dtype);
	assert_int_equal(a->ndim, b->ndim);
	for (uint32_t d = 0; d < a->ndim; d++)
		assert_int_equal(a->shape[d], b->shape[d]);
	assert_int_equal(a->source_xxh3, b->source_xxh3);
	assert_int_equal(a->nchunks, b->nchunks);
	if (a->nchunks)
		assert_memory_equal(a->chunks, b->chunks, a->nchunks * sizeof(*a->chunks));
}

/* Recomputes the trailing checksum of a content buffer, so a test can
 * craft semantically bad but checksummed content. */
static void reseal(uint8_t *content, size_t len)
{
	qs_put_le64(content + len - 8, XXH3_64bits(content, len - 8));
}

static void test_header_roundtrip(void **state)
{
	(void)state;
	struct qs_header h = {
		.input_fp = 0x0123456789abcdefull,
		.options_fp = 42,
		.creator = "qshard 0.1.0",
		.options = "rtn:bits=4,group=128;level=3",
		.config_json = "{\"model_type\":\"llama\"}",
		.metadata_json = "{\"format\":\"pt\"}",
	};
	uint8_t *f;
	size_t len;
	assert_int_equal(qs_header_encode(&h, &f, &len), 0);
	assert_int_equal(qs_get_le32(f), QS_MAGIC_HEADER);
	assert_int_equal(qs_get_le32(f + 4), len - 8);
	struct qs_header d;
	struct qs_diag diag;
	assert_int_equal(qs_header_decode("x", f + 8, len - 8, &d, &diag), 0);
	assert_int_equal(d.version, QS_FORMAT_VERSION);
	assert_int_equal(d.input_fp, h.input_fp);
	assert_int_equal(d.options_fp, h.options_fp);
	assert_string_equal(d.creator, h.creator);
	assert_string_equal(d.options, h.options);
	assert_string_equal(d.config_json, h.config_json);
	assert_string_equal(d.metadata_json, h.metadata_json);
	qs_header_release(&d);
	free(f);

	/* absent JSON texts come back as NULL, empty options as "" */
	struct qs_header e = {.creator = "c", .options = ""};
	assert_int_equal(qs_header_encode(&e, &f, &len), 0);
	assert_int_equal(qs_header_decode("x", f + 8, len - 8, &d, &diag), 0);
	assert_null(d.config_json);
	assert_null(d.metadata_json);
	assert_string_equal(d.options, "");
	qs_header_release(&d);
	free(f);
}

/* Every shorter length and every single-bit flip must be rejected. */
typedef int (*decode_fn)(const uint8_t *buf, size_t len);

static int dec_header(const uint8_t *b, size_t n)
{
	struct qs_header h;
	struct qs_diag d;
	int err = qs_header_decode("f.qshard", b, n, &h, &d);
	if (!err)
		qs_header_release(&h);
	else
		assert_non_null(strstr(d.msg, "'f.qshard': header"));
	return err;
}

static int dec_record(const uint8_t *b, size_t n)
{
	struct qs_record r;
	struct qs_diag d;
	int err = qs_record_decode("f.qshard", b, n, &r, &d);
	if (!err)
		qs_record_release(&r);
	else
		assert_non_null(strstr(d.msg, "'f.qshard': record"));
	return err;
}

static int dec_index(const uint8_t *b, size_t n)
{
	struct qs_record *rs;
	size_t cnt;
	struct qs_diag d;
	int err = qs_index_decode("f.qshard", b, n, &rs, &cnt, &d);
	if (!err) {
		for (size_t i = 0; i < cnt; i++)
			qs_record_release(&rs[i]);
		free(rs);
	} else {
		assert_non_null(strstr(d.msg, "'f.qshard': index"));
	}
	return err;
}

static void hammer(decode_fn dec, const uint8_t *content, size_t len)
{
	/* a heap copy of exactly k bytes so ASan catches any overread */
	for (size_t k = 0; k < len; k++) {
		uint8_t *b = calloc(1, k ? k : 1);
		memcpy(b, content, k);
		assert_true(dec(k ? b : NULL, k) < 0);
		free(b);
	}
	uint8_t *b = calloc(1, len);
	memcpy(b, content, len);
	assert_int_equal(dec(b, len), 0);
	for (size_t bit = 0; bit < len * 8; bit++) {
		b[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		assert_true(dec(b, len) < 0);
		b[bit / 8] ^= (uint8_t)(1u << (bit % 8));
	}
	free(b);
}

static void test_header_hostile(void **state)
{
	(void)state;
	struct qs_header h = {.input_fp = 1, .options_fp = 2, .creator = "qs",
			      .options = "o", .config_json = "{}"};
	uint8_t *f;
	size_t len;
	assert_int_equal(qs_header_encode(&h, &f, &len), 0);
	hammer(dec_header, f + 8, len - 8);

	/* checksummed but lying lengths, a NUL, a future version */
	struct qs_header d;
	uint8_t *c = f + 8;
	size_t clen = len - 8;
	size_t creator_len_at = 4 + 4 + 8 + 8;
	qs_put_le32(c + creator_len_at, 0xfffffff0u);
	reseal(c, clen);
	assert_int_equal(qs_header_decode("x", c, clen, &d, NULL), -QS_EFORMAT);
	qs_put_le32(c + creator_len_at, 2);
	c[creator_len_at + 4] = 0;
	reseal(c, clen);
	assert_int_equal(qs_header_decode("x", c, clen, &d, NULL), -QS_EFORMAT);
	c[creator_len_at + 4] = 'q';
	qs_put_le32(c + 4, QS_FORMAT_VERSION + 1);
	reseal(c, clen);
	assert_int_equal(qs_header_decode("x", c, clen, &d, NULL), -QS_EFORMAT);
	/* a version 1 header has no side-file count: those 4 bytes are extra */
	qs_put_le32(c + 4, 1);
	reseal(c, clen);
	assert_int_equal(qs_header_decode("x", c, clen, &d, NULL), -QS_EFORMAT);
	qs_put_le32(c + 4, QS_FORMAT_VERSION);
	reseal(c, clen);
	assert_int_equal(qs_header_decode("x", c, clen, &d, NULL), 0);
	qs_header_release(&d);
	free(f);
}

/* Version 2 carries side files byte for byte, binary ones included. */
static void test_header_side_files(void **state)
{
	(void)state;
	static const uint8_t model[] = {0x0a, 0x00, 0xff, 0x00, 0x7f};
	struct qs_side_file files[2] = {
		{.name = "tokenizer.json", .data = (uint8_t *)"{\"model\":{}}", .len = 12},
		{.name = "tokenizer.model", .data = (uint8_t *)model, .len = sizeof(model)},
	};
	struct qs_header h = {.creator = "c", .options = "o", .files = files, .nfiles = 2};
	uint8_t *f;
	size_t len;
	assert_int_equal(qs_header_encode(&h, &f, &len), 0);
	struct qs_header d;
	struct qs_diag diag;
	assert_int_equal(qs_header_decode("x", f + 8, len - 8, &d, &diag), 0);
	assert_int_equal(d.nfiles, 2);
	const struct qs_side_file *t = qs_header_file(&d, "tokenizer.model");
	assert_non_null(t);
	assert_int_equal(t->len, sizeof(model));
	assert_memory_equal(t->data, model, sizeof(model));
	assert_string_equal((const char *)qs_header_file(&d, "tokenizer.json")->data,
			    "{\"model\":{}}");
	assert_null(qs_header_file(&d, "config.json"));
	qs_header_release(&d);
	hammer(dec_header, f + 8, len - 8);

	/* a duplicate name, a path and an empty name are refused */
	free(f);
	files[1].name = "tokenizer.json";
	assert_int_equal(qs_header_encode(&h, &f, &len), 0);
	assert_int_equal(qs_header_decode("x", f + 8, len - 8, &d, &diag), -QS_EFORMAT);
	assert_non_null(strstr(diag.msg, "given twice"));
	free(f);
	files[1].name = "../x";
	assert_int_equal(qs_header_encode(&h, &f, &len), -QS_EUSAGE);
	files[1].name = "";
	assert_int_equal(qs_header_encode(&h, &f, &len), -QS_EUSAGE);
}

/* A version 1 header (written before side files existed) still decodes. */
static void test_header_version1(void **state)
{
	(void)state;
	uint8_t c[4 + 4 + 8 + 8 + 5 * 4 + 1 + 8];
	size_t at = 0;
	memcpy(c, "QSHD", 4);
	qs_put_le32(c + 4, 1);
	qs_put_le64(c + 8, 7);
	qs_put_le64(c + 16, 9);
	at = 24;
	qs_put_le32(c + at, 1);  /* creator "q" */
	c[at + 4] = 'q';
	at += 5;
	for (int i = 0; i < 4; i++, at += 4)
		qs_put_le32(c + at, 0);
	assert_int_equal(at + 8, sizeof(c));
	reseal(c, sizeof(c));
	struct qs_header d;
	struct qs_diag diag;
	assert_int_equal(qs_header_decode("x", c, sizeof(c), &d, &diag), 0);
	assert_int_equal(d.version, 1);
	assert_int_equal(d.input_fp, 7);
	assert_string_equal(d.creator, "q");
	assert_int_equal(d.nfiles, 0);
	qs_header_release(&d);
}

static void test_record_roundtrip(void **state)
{
	(void)state;
	struct qs_record r = sample_record();
	uint8_t *f;
	size_t len;
	assert_int_equal(qs_record_encode(&r, &f, &len), 0);
	assert_int_equal(qs_get_le32(f), QS_MAGIC_RECORD);
	assert_int_equal(qs_get_le32(f + 4), len - 8);
	struct qs_record d;
	assert_int_equal(qs_record_decode("x", f + 8, len - 8, &d, NULL), 0);
	assert_record_eq(&r, &d);
	qs_record_release(&d);
	free(f);

	/* a 0-D tensor without chunks, shard and scheme empty */
	struct qs_record z = {.name = "s", .dtype = QS_DTYPE_F32};
	assert_int_equal(qs_record_encode(&z, &f, &len), 0);
	assert_int_equal(qs_record_decode("x", f + 8, len - 8, &d, NULL), 0);
	assert_record_eq(&z, &d);
	assert_null(d.chunks);
	qs_record_release(&d);
	free(f);
}

static void test_record_encode_rejects(void **state)
{
	(void)state;
	uint8_t *f;
	size_t len;
	struct qs_record r = sample_record();
	r.name = "";
	assert_int_equal(qs_record_encode(&r, &f, &len), -QS_EUSAGE);
	r = sample_record();
	r.ndim = QS_MAX_DIMS + 1;
	assert_int_equal(qs_record_encode(&r, &f, &len), -QS_EUSAGE);
	r = sample_record();
	r.dtype = QS_DTYPE_COUNT;
	assert_int_equal(qs_record_encode(&r, &f, &len), -QS_EUSAGE);
	char *big = malloc(70000);
	memset(big, 'a', 69999);
	big[69999] = 0;
	r = sample_record();
	r.name = big;
	assert_int_equal(qs_record_encode(&r, &f, &len), -QS_ETOOBIG);
	free(big);
}

static void test_record_hostile(void **state)
{
	(void)state;
	struct qs_record r = sample_record();
	r.nchunks = 2;
	uint8_t *f;
	size_t len;
	assert_int_equal(qs_record_encode(&r, &f, &len), 0);
	hammer(dec_record, f + 8, len - 8);

	uint8_t *c = f + 8;
	size_t clen = len - 8;
	size_t name_len = strlen(r.name), shard_len = strlen(r.shard);
	size_t dtype_at = 4 + 2 + name_len + 2 + shard_len;
	struct qs_record d;
	struct qs_diag diag;
	/* each semantic rule, with a valid checksum */
	c[dtype_at] = QS_DTYPE_COUNT;
	reseal(c, clen);
	assert_int_equal(qs_record_decode("x", c, clen, &d, &diag), -QS_EFORMAT);
	assert_non_null(strstr(diag.msg, "dtype"));
	c[dtype_at] = QS_DTYPE_BF16;
	c[dtype_at + 1] = QS_MAX_DIMS + 1;
	reseal(c, clen);
	assert_int_equal(qs_record_decode("x", c, clen, &d, &diag), -QS_EFORMAT);
	c[dtype_at + 1] = 2;
	c[dtype_at + 2] = 1;  /* padding */
	reseal(c, clen);
	assert_int_equal(qs_record_decode("x", c, clen, &d, &diag), -QS_EFORMAT);
	c[dtype_at + 2] = 0;
	c[4 + 2 + 3] = 0;  /* NUL inside the name */
	reseal(c, clen);
	assert_int_equal(qs_record_decode("x", c, clen, &d, &diag), -QS_EFORMAT);
	c[4 + 2 + 3] = 'e';
	/* shape overflowing u64 */
	qs_put_le64(c + dtype_at + 4, UINT64_MAX / 2);
	reseal(c, clen);
	assert_int_equal(qs_record_decode("x", c, clen, &d, &diag), -QS_EFORMAT);
	assert_non_null(strstr(diag.msg, "overflow"));
	qs_put_le64(c + dtype_at + 4, 5);
	/* a chunk count far larger than the bytes */
	size_t nchunks_at = dtype_at + 4 + 16 + 2 + strlen(r.scheme) + 8;
	qs_put_le32(c + nchunks_at, 0x10000000u);
	reseal(c, clen);
	assert_int_equal(qs_record_decode("x", c, clen, &d, &diag), -QS_EFORMAT);
	qs_put_le32(c + nchunks_at, 2);
	/* overflowing frame range */
	qs_put_le64(c + nchunks_at + 4, UINT64_MAX);
	reseal(c, clen);
	assert_int_equal(qs_record_decode("x", c, clen, &d, &diag), -QS_EFORMAT);
	qs_put_le64(c + nchunks_at + 4, 100);
	reseal(c, clen);
	assert_int_equal(qs_record_decode("x", c, clen, &d, &diag), 0);
	qs_record_release(&d);
	free(f);
}

static void test_index_roundtrip(void **state)
{
	(void)state;
	struct qs_record rs[3] = {sample_record(), sample_record(), sample_record()};
	rs[1].name = "b";
	rs[1].nchunks = 0;
	rs[1].record_offset = 300;
	rs[2].name = "c";
	rs[2].ndim = 1;
	rs[2].record_offset = 400;
	uint8_t *f;
	size_t len;
	assert_int_equal(qs_index_encode(rs, 3, &f, &len), 0);
	assert_int_equal(qs_get_le32(f), QS_MAGIC_INDEX);
	struct qs_record *d;
	size_t n;
	assert_int_equal(qs_index_decode("x", f + 8, len - 8, &d, &n, NULL), 0);
	assert_int_equal(n, 3);
	for (size_t i = 0; i < 3; i++) {
		assert_record_eq(&rs[i], &d[i]);
		assert_int_equal(d[i].record_offset, rs[i].record_offset);
		/* the embedded content is the record frame's content */
		uint8_t *rf;
		size_t rlen;
		assert_int_equal(qs_record_encode(&rs[i], &rf, &rlen), 0);
		assert_int_equal(d[i].record_content_len, rlen - 8);
		free(rf);
		qs_record_release(&d[i]);
	}
	free(d);
	free(f);

	assert_int_equal(qs_index_encode(NULL, 0, &f, &len), 0);
	assert_int_equal(qs_index_decode("x", f + 8, len - 8, &d, &n, NULL), 0);
	assert_int_equal(n, 0);
	assert_null(d);
	free(f);
}

static void test_index_hostile(void **state)
{
	(void)state;
	struct qs_record rs[2] = {sample_record(), sample_record()};
	rs[0].nchunks = 1;
	rs[1].name = "x";
	rs[1].nchunks = 0;
	uint8_t *f;
	size_t len;
	assert_int_equal(qs_index_encode(rs, 2, &f, &len), 0);
	hammer(dec_index, f + 8, len - 8);
	/* a huge count with a valid checksum must not allocate or overread */
	qs_put_le32(f + 8 + 4, 0xffffffffu);
	reseal(f + 8, len - 8);
	assert_int_equal(dec_index(f + 8, len - 8), -QS_EFORMAT);
	free(f);
}

static void test_trailer(void **state)
{
	(void)state;
	struct qs_trailer t = {QS_FORMAT_VERSION, 1000, 200, 1256, 7}, d;
	uint8_t b[QS_TRAILER_FRAME_SIZE];
	qs_trailer_encode(&t, b);
	assert_int_equal(qs_get_le32(b), QS_MAGIC_TRAILER);
	assert_int_equal(qs_get_le32(b + 4), 48);
	assert_int_equal(qs_trailer_decode("x", b, &d, NULL), 0);
	assert_int_equal(d.version, t.version);
	assert_int_equal(d.index_offset, t.index_offset);
	assert_int_equal(d.index_size, t.index_size);
	assert_int_equal(d.file_size, t.file_size);
	assert_int_equal(d.tensor_count, t.tensor_count);
	for (size_t bit = 0; bit < sizeof(b) * 8; bit++) {
		b[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		struct qs_diag diag;
		assert_true(qs_trailer_decode("f.qshard", b, &d, &diag) < 0);
		assert_non_null(strstr(diag.msg, "'f.qshard': trailer"));
		b[bit / 8] ^= (uint8_t)(1u << (bit % 8));
	}
	/* index not ending where the trailer begins */
	t.index_size = 199;
	qs_trailer_encode(&t, b);
	assert_int_equal(qs_trailer_decode("x", b, &d, NULL), -QS_EFORMAT);
	t.index_offset = UINT64_MAX - 10;
	qs_trailer_encode(&t, b);
	assert_int_equal(qs_trailer_decode("x", b, &d, NULL), -QS_EFORMAT);
	t = (struct qs_trailer){QS_FORMAT_VERSION, 0, 0, 10, 0};
	qs_trailer_encode(&t, b);
	assert_int_equal(qs_trailer_decode("x", b, &d, NULL), -QS_EFORMAT);
}

/* ------------------------------------------------------- frame scanner */

static size_t zframe(const void *src, size_t n, bool checksum, uint8_t **out)
{
	ZSTD_CCtx *cc = ZSTD_createCCtx();
	ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, checksum);
	size_t cap = ZSTD_compressBound(n);
	*out = malloc(cap);
	size_t r = ZSTD_compress2(cc, *out, cap, src, n);
	assert_false(ZSTD_isError(r));
	ZSTD_freeCCtx(cc);
	return r;
}

static void test_frame_scan(void **state)
{
	(void)state;
	const char *p = test_path("scan.bin");
	int fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	uint64_t off = 0, sizes[8];
	uint32_t magics[8];
	int nf = 0;
	/* skippable frame */
	uint8_t skip[20] = {0};
	qs_put_le32(skip, QS_MAGIC_RECORD);
	qs_put_le32(skip + 4, 12);
	assert_int_equal(qs_pwrite_full(fd, skip, 20, off), 0);
	magics[nf] = QS_MAGIC_RECORD;
	sizes[nf++] = 20;
	off += 20;
	/* random (raw blocks, several of them: > 128 KiB), zeros (RLE),
	 * text (compressed), with and without checksum, and empty */
	size_t big = 300000;
	uint8_t *data = malloc(big);
	uint64_t s = 1;
	for (size_t i = 0; i < big; i++) {
		s = s * 6364136223846793005ull + 1442695040888963407ull;
		data[i] = (uint8_t)(s >> 56);
	}
	uint8_t *zeros = calloc(1, big);
	char text[4000];
	for (size_t i = 0; i < sizeof(text); i++)
		text[i] = "the quick brown fox "[i % 20] + (char)(i % 7 == 0);
	const void *srcs[] = {data, zeros, text, data, ""};
	size_t lens[] = {big, big, sizeof(text), 1000, 0};
	bool sums[] = {false, true, true, true, false};
	for (int i = 0; i < 5; i++) {
		uint8_t *z;
		size_t zn = zframe(srcs[i], lens[i], sums[i], &z);
		assert_int_equal(qs_pwrite_full(fd, z, zn, off), 0);
		assert_int_equal(ZSTD_findFrameCompressedSize(z, zn), zn);
		magics[nf] = QS_ZSTD_MAGIC;
		sizes[nf++] = zn;
		off += zn;
		free(z);
	}
	uint64_t pos = 0;
	for (int i = 0; i < nf; i++) {
		uint32_t m;
		uint64_t sz;
		assert_int_equal(qs_frame_size_at(fd, pos, off, &m, &sz), 0);
		assert_int_equal(m, magics[i]);
		assert_int_equal(sz, sizes[i]);
		pos += sz;
	}
	assert_int_equal(pos, off);
	/* at the end, or with a limit cutting any frame short: an error */
	uint32_t m;
	uint64_t sz;
	assert_int_equal(qs_frame_size_at(fd, off, off, &m, &sz), -QS_EFORMAT);
	pos = 0;
	for (int i = 0; i < nf; i++) {
		for (uint64_t cut = pos; cut < pos + sizes[i]; cut += 1 + sizes[i] / 97)
			assert_int_equal(qs_frame_size_at(fd, pos, cut, &m, &sz), -QS_EFORMAT);
		pos += sizes[i];
	}

	/* bad magic, reserved block type, oversized block */
	uint8_t bad[32] = {0x12, 0x34, 0x56, 0x78};
	assert_int_equal(qs_pwrite_full(fd, bad, sizeof(bad), 0), 0);
	assert_int_equal(qs_frame_size_at(fd, 0, off, &m, &sz), -QS_EFORMAT);
	/* magic, FHD single-segment with 1-byte FCS, FCS, block header */
	uint8_t hdr[] = {0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x05, 0x07, 0x00, 0x00};
	memcpy(bad, hdr, sizeof(hdr));
	assert_int_equal(qs_pwrite_full(fd, bad, sizeof(bad), 0), 0);
	assert_int_equal(qs_frame_size_at(fd, 0, off, &m, &sz), -QS_EFORMAT);
	uint32_t bh = 1u | (2u << 1) | ((128u * 1024u + 1u) << 3);
	bad[6] = (uint8_t)bh;
	bad[7] = (uint8_t)(bh >> 8);
	bad[8] = (uint8_t)(bh >> 16);
	assert_int_equal(qs_pwrite_full(fd, bad, sizeof(bad), 0), 0);
	assert_int_equal(qs_frame_size_at(fd, 0, off, &m, &sz), -QS_EFORMAT);
	/* an RLE block stores one byte */
	bh = 1u | (1u << 1) | (5u << 3);
	bad[6] = (uint8_t)bh;
	bad[7] = (uint8_t)(bh >> 8);
	bad[8] = (uint8_t)(bh >> 16);
	assert_int_equal(qs_pwrite_full(fd, bad, sizeof(bad), 0), 0);
	assert_int_equal(qs_frame_size_at(fd, 0, off, &m, &sz), 0);
	assert_int_equal(sz, 10);
	close(fd);
	free(data);
	free(zeros);
}

static int teardown_all(void **state)
{
	(void)state;
	test_cleanup_tmpdir();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_roundtrip),
		cmocka_unit_test(test_header_hostile),
		cmocka_unit_test(test_header_side_files),
		cmocka_unit_test(test_header_version1),
		cmocka_unit_test(test_record_roundtrip),
		cmocka_unit_test(test_record_encode_rejects),
		cmocka_unit_test(test_record_hostile),
		cmocka_unit_test(test_index_roundtrip),
		cmocka_unit_test(test_index_hostile),
		cmocka_unit_test(test_trailer),
		cmocka_unit_test(test_frame_scan),
	};
	return cmocka_run_group_tests(tests, NULL, teardown_all);
}
