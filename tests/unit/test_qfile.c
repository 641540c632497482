/* test_qfile.c - the reader (open, tensor summaries, chunk reads, every
 * rejection) and verify (every single-bit flip is detected and named; the
 * source check against a hand-made safetensors file). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xxhash.h>
#include <zstd.h>

#include "container.h"
#include "test_util.h"
#include "util.h"

#define ROWS 4
#define COLS 16
#define CHUNK_ROWS 2
#define NCHUNKS (ROWS / CHUNK_ROWS)
#define PAYLOAD (CHUNK_ROWS * COLS * 2)
#define NT 3

static const char *const names[NT] = {"model.embed", "model.layers.0.w", "lm_head"};

/* Tensor t's payload for chunk c: random bytes, text-like bytes and zeros,
 * so frames hold raw, compressed and RLE blocks. */
static void payload(int t, int c, uint8_t *out)
{
	uint64_t s = 0x9e3779b97f4a7c15ull * (uint64_t)(t * 8 + c + 1);
	for (int i = 0; i < PAYLOAD; i++) {
		s = s * 6364136223846793005ull + 1442695040888963407ull;
		if (t == 0)
			out[i] = (uint8_t)(s >> 56);
		else if (t == 1)
			out[i] = (uint8_t)("abcabd"[i % 6] + ((s >> 60) == 0));
		else
			out[i] = 0;
	}
}

/* The source bytes the records' source_xxh3 describe. */
static void source_bytes(int t, uint8_t *out)
{
	for (int i = 0; i < ROWS * COLS * 2; i++)
		out[i] = (uint8_t)(t * 40 + i);
}

struct tweak {
	int bad_sum_tensor;      /* wrong payload_xxh3 */
};

static const struct tweak no_tweak = {-1};

static const char *build(const char *name, struct tweak tw)
{
	const char *p = test_path(name);
	struct qs_header h = {.input_fp = 1, .options_fp = 2, .creator = "qshard 0.1.0",
			      .options = "raw"};
	struct qs_cwriter *w;
	struct qs_diag d;
	assert_int_equal(qs_cwriter_create(p, &h, true, false, &w, &d), 0);
	for (int t = 0; t < NT; t++) {
		struct qs_chunk_entry ch[NCHUNKS];
		for (int c = 0; c < NCHUNKS; c++) {
			uint8_t pl[PAYLOAD], z[512];
			payload(t, c, pl);
			size_t zn = ZSTD_compress(z, sizeof(z), pl, sizeof(pl), 3);
			assert_false(ZSTD_isError(zn));
			uint64_t off;
			assert_int_equal(qs_cwriter_frame(w, z, zn, &off, &d), 0);
			ch[c] = (struct qs_chunk_entry){off, zn, PAYLOAD, (uint64_t)c * CHUNK_ROWS,
							CHUNK_ROWS, XXH3_64bits(pl, sizeof(pl)), 0};
		}
		if (t == tw.bad_sum_tensor)
			ch[1].payload_xxh3 ^= 1;
		uint8_t src[ROWS * COLS * 2];
		source_bytes(t, src);
		struct qs_record r = {
			.name = (char *)names[t],
			.shard = "model.safetensors", .dtype = QS_DTYPE_F16, .ndim = 2,
			.shape = {ROWS, COLS}, .scheme = "raw",
			.source_xxh3 = XXH3_64bits(src, sizeof(src)),
			.nchunks = NCHUNKS, .chunks = ch,
		};
		assert_int_equal(qs_cwriter_record(w, &r, &d), 0);
	}
	assert_int_equal(qs_cwriter_finish(w, &d), 0);
	return p;
}

static void test_open_and_summaries(void **state)
{
	(void)state;
	const char *p = build("ok.qshard", no_tweak);
	struct qs_qfile *qf;
	struct qs_diag d;
	assert_int_equal(qs_qfile_open(p, &qf, &d), 0);
	assert_int_equal(qs_qfile_count(qf), NT);
	assert_string_equal(qs_qfile_creator(qf), "qshard 0.1.0");
	assert_string_equal(qs_qfile_options(qf), "raw");
	for (int t = 0; t < NT; t++) {
		struct qs_tensor_info ti;
		qs_qfile_tensor(qf, (size_t)t, &ti);
		assert_string_equal(ti.name, names[t]);
		assert_int_equal(ti.dtype, QS_DTYPE_F16);
		assert_int_equal(ti.ndim, 2);
		assert_int_equal(ti.shape[0], ROWS);
		assert_int_equal(ti.shape[1], COLS);
		assert_int_equal(ti.source_bytes, ROWS * COLS * 2);
		assert_string_equal(ti.scheme, "raw");
		assert_null(ti.file);
		assert_int_equal(ti.chunks, NCHUNKS);
		assert_int_equal(ti.payload_bytes, NCHUNKS * PAYLOAD);
		const struct qs_record *r = &qf->records[t];
		uint64_t stored = r->chunks[0].frame_size + r->chunks[1].frame_size;
		assert_int_equal(ti.stored_bytes, stored);
		assert_true(ti.bpw_nominal == 16.0);
		assert_true(ti.bpw_on_disk == (double)stored * 8.0 / (ROWS * COLS));
		uint8_t src[ROWS * COLS * 2];
		source_bytes(t, src);
		assert_int_equal(ti.source_xxh3, XXH3_64bits(src, sizeof(src)));
	}
	uint8_t buf[PAYLOAD];
	assert_int_equal(qs_qfile_read_chunk(qf, &qf->records[0], 2, buf, &d), -QS_EUSAGE);
	qs_qfile_free(qf);
}

enum forgery { FORGE_OFFSET, FORGE_GAP, FORGE_DUP, FORGE_COUNT };

/* A file whose index (re-encoded with valid checksums) describes tensor t
 * in a way the writer would never produce. */
static const char *forge(const char *name, enum forgery kind, int t)
{
	const char *p = build(name, no_tweak);
	struct qs_qfile *qf;
	assert_int_equal(qs_qfile_open(p, &qf, NULL), 0);
	struct qs_record *r = &qf->records[t];
	size_t n = qf->nrecords;
	if (kind == FORGE_OFFSET)
		r->chunks[1].frame_offset += 100000;
	else if (kind == FORGE_GAP)
		r->chunks[1].row_begin++;
	else if (kind == FORGE_DUP) {
		free(r->name);
		r->name = strdup(names[0]);
	} else {
		n--;
	}
	uint8_t *ix;
	size_t ixlen;
	assert_int_equal(qs_index_encode(qf->records, qf->nrecords, &ix, &ixlen), 0);
	size_t len;
	uint8_t *b = test_read_file(p, &len);
	uint64_t at = qf->trailer.index_offset;
	b = realloc(b, at + ixlen + QS_TRAILER_FRAME_SIZE);
	memcpy(b + at, ix, ixlen);
	struct qs_trailer tr = {QS_FORMAT_VERSION, at, ixlen, at + ixlen + QS_TRAILER_FRAME_SIZE,
				n};
	qs_trailer_encode(&tr, b + at + ixlen);
	test_write_file(p, b, at + ixlen + QS_TRAILER_FRAME_SIZE);
	free(b);
	free(ix);
	qs_qfile_free(qf);
	return p;
}

static void expect_open_fails(const char *p, const char *what)
{
	struct qs_qfile *qf = (void *)1;
	struct qs_diag d;
	int err = qs_qfile_open(p, &qf, &d);
	assert_true(err == -QS_EFORMAT || err == -QS_ECHECKSUM);
	assert_null(qf);
	assert_non_null(strstr(d.msg, what));
	assert_non_null(strstr(d.msg, ".qshard'"));
}

static void test_open_rejects(void **state)
{
	(void)state;
	const char *p = build("rej.qshard", no_tweak);
	size_t len;
	uint8_t *b = test_read_file(p, &len);
	const char *q = test_path("cut.qshard");
	/* every truncation (including to nothing) */
	for (size_t k = 0; k < len; k++) {
		test_write_file(q, b, k);
		struct qs_qfile *qf;
		assert_true(qs_qfile_open(q, &qf, NULL) < 0);
	}
	/* appended bytes */
	uint8_t *more = calloc(1, len + 1);
	memcpy(more, b, len);
	test_write_file(q, more, len + 1);
	expect_open_fails(q, "trailer");
	free(more);
	/* damaged structures name themselves */
	b[len - 10] ^= 1;
	test_write_file(q, b, len);
	expect_open_fails(q, "trailer");
	b[len - 10] ^= 1;
	b[len - QS_TRAILER_FRAME_SIZE - 12] ^= 1;
	test_write_file(q, b, len);
	expect_open_fails(q, "index");
	b[len - QS_TRAILER_FRAME_SIZE - 12] ^= 1;
	b[20] ^= 1;
	test_write_file(q, b, len);
	expect_open_fails(q, "header");
	b[20] ^= 1;
	test_write_file(q, b, len);
	struct qs_qfile *qf;
	assert_int_equal(qs_qfile_open(q, &qf, NULL), 0);
	qs_qfile_free(qf);
	free(b);

	struct qs_diag d;
	assert_int_equal(qs_qfile_open(test_path("missing.qshard"), &qf, &d), -ENOENT);
	assert_non_null(strstr(d.msg, "missing.qshard"));

	/* semantically wrong but checksummed records */
	expect_open_fails(forge("off.qshard", FORGE_OFFSET, 1), "tensor 'model.layers.0.w'");
	expect_open_fails(forge("gap.qshard", FORGE_GAP, 2), "tensor 'lm_head'");
	expect_open_fails(forge("dup.qshard", FORGE_DUP, 2), "tensor 'model.embed'");
	expect_open_fails(forge("cnt.qshard", FORGE_COUNT, 0), "index");
}

static void test_read_chunk_checks(void **state)
{
	(void)state;
	struct tweak tw = no_tweak;
	tw.bad_sum_tensor = 1;
	const char *p = build("sum.qshard", tw);
	struct qs_qfile *qf;
	struct qs_diag d;
	assert_int_equal(qs_qfile_open(p, &qf, &d), 0);
	uint8_t buf[PAYLOAD];
	assert_int_equal(qs_qfile_read_chunk(qf, &qf->records[1], 0, buf, &d), 0);
	assert_int_equal(qs_qfile_read_chunk(qf, &qf->records[1], 1, buf, &d), -QS_ECHECKSUM);
	assert_non_null(strstr(d.msg, "tensor 'model.layers.0.w'"));
	assert_non_null(strstr(d.msg, "chunk 1"));
	/* a payload size disagreeing with the frame */
	struct qs_record r = qf->records[0];
	struct qs_chunk_entry ch = r.chunks[0];
	r.chunks = &ch;
	ch.payload_size = PAYLOAD - 1;
	assert_int_equal(qs_qfile_read_chunk(qf, &r, 0, buf, &d), -QS_ECHECKSUM);
	/* a frame range running past the file */
	ch = qf->records[0].chunks[0];
	ch.frame_offset = qf->size - 2;
	assert_int_equal(qs_qfile_read_chunk(qf, &r, 0, buf, &d), -QS_EFORMAT);
	qs_qfile_free(qf);
}

struct reports {
	int n;
	char what[16][64];
	char detail[16][96];
};

static void collect(const char *what, const char *detail, void *user)
{
	struct reports *r = user;
	if (r->n < 16) {
		snprintf(r->what[r->n], sizeof(r->what[0]), "%s", what);
		snprintf(r->detail[r->n], sizeof(r->detail[0]), "%s", detail);
	}
	r->n++;
}

static bool reported(const struct reports *r, const char *what)
{
	for (int i = 0; i < r->n && i < 16; i++)
		if (strcmp(r->what[i], what) == 0)
			return true;
	return false;
}

static void test_verify_good(void **state)
{
	(void)state;
	const char *p = build("vgood.qshard", no_tweak);
	struct reports r = {0};
	struct qs_diag d;
	assert_int_equal(qs_verify(p, NULL, collect, &r, &d), 0);
	assert_int_equal(r.n, 0);
}

static void test_verify_every_bit(void **state)
{
	(void)state;
	const char *p = build("vbits.qshard", no_tweak);
	size_t len;
	uint8_t *b = test_read_file(p, &len);
	struct qs_qfile *qf;
	assert_int_equal(qs_qfile_open(p, &qf, NULL), 0);
	struct qs_record rec[NT];
	memcpy(rec, qf->records, sizeof(rec));
	uint64_t data_end = qf->trailer.index_offset;
	/* which tensor owns each byte of the data area (-1: header) */
	int *owner = malloc(len * sizeof(int));
	uint64_t start = 0;
	for (int t = 0; t < NT; t++) {
		uint64_t end = rec[t].record_offset + 8 + rec[t].record_content_len;
		for (uint64_t i = start; i < end; i++)
			owner[i] = t;
		start = end;
	}
	for (uint64_t i = 0; i < rec[0].chunks[0].frame_offset; i++)
		owner[i] = -1;
	FILE *f = fopen(p, "r+b");
	assert_non_null(f);
	for (size_t bit = 0; bit < len * 8; bit++) {
		size_t at = bit / 8;
		uint8_t v = b[at] ^ (uint8_t)(1u << (bit % 8));
		fseek(f, (long)at, SEEK_SET);
		fputc(v, f);
		fflush(f);
		struct reports r = {0};
		struct qs_diag d;
		int err = qs_verify(p, NULL, collect, &r, &d);
		if (err == 0)
			fail_msg("bit %zu (byte %zu) flipped but verify passed", bit, at);
		assert_true(r.n >= 1);
		const char *want = at >= len - QS_TRAILER_FRAME_SIZE ? "trailer"
				   : at >= data_end		     ? "index"
				   : owner[at] < 0		     ? "header"
								     : names[owner[at]];
		if (!reported(&r, want))
			fail_msg("bit %zu (byte %zu): expected '%s' reported, got '%s' (%s)", bit,
				 at, want, r.what[0], r.detail[0]);
		fseek(f, (long)at, SEEK_SET);
		fputc(b[at], f);
		fflush(f);
	}
	fclose(f);
	struct qs_diag d;
	assert_int_equal(qs_verify(p, NULL, NULL, NULL, &d), 0);
	qs_qfile_free(qf);
	free(owner);
	free(b);
}

static void test_verify_reports_all_tensors(void **state)
{
	(void)state;
	const char *p = build("vtwo.qshard", no_tweak);
	struct qs_qfile *qf;
	assert_int_equal(qs_qfile_open(p, &qf, NULL), 0);
	uint64_t a = qf->records[0].chunks[1].frame_offset + qf->records[0].chunks[1].frame_size - 1;
	uint64_t b2 = qf->records[2].chunks[0].frame_offset + 7;
	qs_qfile_free(qf);
	size_t len;
	uint8_t *b = test_read_file(p, &len);
	b[a] ^= 0x10;
	b[b2] ^= 0x01;
	test_write_file(p, b, len);
	struct reports r = {0};
	struct qs_diag d;
	int err = qs_verify(p, NULL, collect, &r, &d);
	assert_true(err == -QS_ECHECKSUM || err == -QS_EFORMAT);
	assert_int_equal(r.n, 2);
	assert_string_equal(r.what[0], "model.embed");
	assert_string_equal(r.what[1], "lm_head");
	assert_non_null(strstr(d.msg, "vtwo.qshard': 2 damaged parts"));
	free(b);
}

/* A one-file safetensors checkpoint holding names[0..n) with source_bytes. */
static void write_safetensors(const char *path, int n, int corrupt)
{
	char json[1024];
	size_t tb = ROWS * COLS * 2, at = 0;
	int k = snprintf(json, sizeof(json), "{");
	for (int t = 0; t < n; t++)
		k += snprintf(json + k, sizeof(json) - (size_t)k,
			      "%s\"%s\":{\"dtype\":\"F16\",\"shape\":[%d,%d],\"data_offsets\":[%zu,%zu]}",
			      t ? "," : "", names[t], ROWS, COLS, t * tb, (t + 1) * tb);
	k += snprintf(json + k, sizeof(json) - (size_t)k, "}");
	while (k % 8)
		json[k++] = ' ';
	size_t total = 8 + (size_t)k + (size_t)n * tb;
	uint8_t *buf = malloc(total);
	qs_put_le64(buf, (uint64_t)k);
	memcpy(buf + 8, json, (size_t)k);
	at = 8 + (size_t)k;
	for (int t = 0; t < n; t++)
		source_bytes(t, buf + at + (size_t)t * tb);
	if (corrupt >= 0)
		buf[at + (size_t)corrupt * tb + 5] ^= 1;
	test_write_file(path, buf, total);
	free(buf);
}

static void test_verify_source(void **state)
{
	(void)state;
	const char *p = build("vsrc.qshard", no_tweak);
	const char *st = test_path("model.safetensors");
	struct reports r = {0};
	struct qs_diag d;
	write_safetensors(st, NT, -1);
	assert_int_equal(qs_verify(p, st, collect, &r, &d), 0);
	assert_int_equal(r.n, 0);

	write_safetensors(st, NT, 1);
	memset(&r, 0, sizeof(r));
	assert_int_equal(qs_verify(p, st, collect, &r, &d), -QS_ECHECKSUM);
	assert_int_equal(r.n, 1);
	assert_string_equal(r.what[0], "model.layers.0.w");
	assert_string_equal(r.detail[0], "source checksum mismatch");

	write_safetensors(st, NT - 1, -1);
	memset(&r, 0, sizeof(r));
	assert_int_equal(qs_verify(p, st, collect, &r, &d), -QS_ECHECKSUM);
	assert_int_equal(r.n, 1);
	assert_string_equal(r.what[0], "lm_head");
	assert_string_equal(r.detail[0], "missing in source");

	/* an unreadable source is an error of its own */
	assert_true(qs_verify(p, test_path("nope.safetensors"), collect, &r, &d) < 0);
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
		cmocka_unit_test(test_open_and_summaries),
		cmocka_unit_test(test_open_rejects),
		cmocka_unit_test(test_read_chunk_checks),
		cmocka_unit_test(test_verify_good),
		cmocka_unit_test(test_verify_every_bit),
		cmocka_unit_test(test_verify_reports_all_tensors),
		cmocka_unit_test(test_verify_source),
	};
	return cmocka_run_group_tests(tests, NULL, teardown_all);
}
