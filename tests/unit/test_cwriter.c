/* test_cwriter.c - the appending writer: create, frames, records, finish,
 * refusal of an existing .partial, resume after a torn tail (byte-identical
 * result), resume refusals and write errors. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>
#include <zstd.h>

#include "container.h"
#include "test_util.h"
#include "util.h"

#define NTENSORS 3
#define ROWS 4
#define COLS 8
#define CHUNK_ROWS 2
#define NCHUNKS (ROWS / CHUNK_ROWS)
#define PAYLOAD (CHUNK_ROWS * COLS * 2)

static struct qs_header test_header(void)
{
	struct qs_header h = {
		.input_fp = 0x1234,
		.options_fp = 0x5678,
		.creator = "qshard test",
		.options = "rtn:bits=4,group=128;level=3",
		.config_json = "{\"a\":1}",
	};
	return h;
}

static void payload(int t, int c, uint8_t *out)
{
	for (int i = 0; i < PAYLOAD; i++)
		out[i] = (uint8_t)(t * 31 + c * 7 + (i * i) % 13);
}

static char tensor_names[NTENSORS][40];

/* Writes tensor t's chunks [from, to) as frames, recording them in r. */
static void write_frames(struct qs_cwriter *w, int t, int from, int to,
			 struct qs_record *r, struct qs_chunk_entry *chunks)
{
	snprintf(tensor_names[t], sizeof(tensor_names[t]), "layer.%d.weight", t);
	*r = (struct qs_record){
		.name = tensor_names[t], .shard = "model.safetensors",
		.dtype = QS_DTYPE_F16, .ndim = 2, .shape = {ROWS, COLS},
		.scheme = "raw", .source_xxh3 = 77u + (unsigned)t,
		.nchunks = NCHUNKS, .chunks = chunks,
	};
	for (int c = from; c < to; c++) {
		uint8_t p[PAYLOAD], z[256];
		payload(t, c, p);
		size_t zn = ZSTD_compress(z, sizeof(z), p, sizeof(p), 3);
		assert_false(ZSTD_isError(zn));
		uint64_t off;
		struct qs_diag d;
		assert_int_equal(qs_cwriter_frame(w, z, zn, &off, &d), 0);
		chunks[c] = (struct qs_chunk_entry){off, zn, PAYLOAD, (uint64_t)c * CHUNK_ROWS,
						    CHUNK_ROWS, XXH3_64bits(p, sizeof(p)), 0};
	}
}

static void write_tensor(struct qs_cwriter *w, int t)
{
	struct qs_record r;
	struct qs_chunk_entry chunks[NCHUNKS];
	struct qs_diag d;
	write_frames(w, t, 0, NCHUNKS, &r, chunks);
	assert_int_equal(qs_cwriter_record(w, &r, &d), 0);
}

/* A complete file written without interruption; returns its bytes. */
static uint8_t *reference_file(const char *name, size_t *len)
{
	struct qs_header h = test_header();
	struct qs_cwriter *w;
	struct qs_diag d;
	const char *p = test_path(name);
	assert_int_equal(qs_cwriter_create(p, &h, false, true, &w, &d), 0);
	for (int t = 0; t < NTENSORS; t++)
		write_tensor(w, t);
	assert_int_equal(qs_cwriter_finish(w, &d), 0);
	return test_read_file(p, len);
}

static bool exists(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0;
}

static void test_write_and_read_back(void **state)
{
	(void)state;
	size_t len;
	uint8_t *ref = reference_file("rt.qshard", &len);
	const char *p = test_path("rt.qshard");
	char partial[600];
	snprintf(partial, sizeof(partial), "%s.partial", p);
	assert_false(exists(partial));

	struct qs_qfile *qf;
	struct qs_diag d;
	assert_int_equal(qs_qfile_open(p, &qf, &d), 0);
	assert_int_equal(qs_qfile_count(qf), NTENSORS);
	assert_int_equal(qs_qfile_size(qf), len);
	assert_string_equal(qs_qfile_creator(qf), "qshard test");
	assert_string_equal(qs_qfile_options(qf), "rtn:bits=4,group=128;level=3");
	for (int t = 0; t < NTENSORS; t++) {
		const struct qs_record *r = &qf->records[t];
		char name[40];
		snprintf(name, sizeof(name), "layer.%d.weight", t);
		assert_string_equal(r->name, name);
		assert_int_equal(r->nchunks, NCHUNKS);
		assert_int_equal(r->source_xxh3, 77u + (unsigned)t);
		for (int c = 0; c < NCHUNKS; c++) {
			uint8_t want[PAYLOAD], got[PAYLOAD];
			payload(t, c, want);
			assert_int_equal(qs_qfile_read_chunk(qf, r, (uint32_t)c, got, &d), 0);
			assert_memory_equal(want, got, PAYLOAD);
		}
	}
	qs_qfile_free(qf);
	free(ref);
}

static void test_existing_partial(void **state)
{
	(void)state;
	struct qs_header h = test_header();
	struct qs_cwriter *w, *w2;
	struct qs_diag d;
	const char *p = test_path("ex.qshard");
	assert_int_equal(qs_cwriter_create(p, &h, false, false, &w, &d), 0);
	uint64_t hsize = qs_cwriter_size(w);
	write_tensor(w, 0);
	assert_int_equal(qs_cwriter_close_partial(w, &d), 0);

	assert_int_equal(qs_cwriter_create(p, &h, false, false, &w2, &d), -QS_EEXIST);
	assert_null(w2);
	assert_non_null(strstr(d.msg, "ex.qshard.partial"));
	assert_non_null(strstr(d.msg, "--resume"));
	assert_non_null(strstr(d.msg, "--force"));

	/* --force starts over */
	assert_int_equal(qs_cwriter_create(p, &h, true, false, &w2, &d), 0);
	assert_int_equal(qs_cwriter_size(w2), hsize);
	assert_int_equal(qs_cwriter_close_partial(w2, &d), 0);
	char partial[600];
	snprintf(partial, sizeof(partial), "%s.partial", p);
	struct stat st;
	assert_int_equal(stat(partial, &st), 0);
	assert_int_equal((uint64_t)st.st_size, hsize);
}

/* Writes a 3-tensor .partial (no index), returns its bytes and the offset
 * just after the second record (and in after[t], after each record). */
static uint64_t after[NTENSORS];
static uint8_t *partial_bytes(const char *name, size_t *len, uint64_t *after2)
{
	struct qs_header h = test_header();
	struct qs_cwriter *w;
	struct qs_diag d;
	const char *p = test_path(name);
	assert_int_equal(qs_cwriter_create(p, &h, true, false, &w, &d), 0);
	for (int t = 0; t < NTENSORS; t++) {
		write_tensor(w, t);
		after[t] = qs_cwriter_size(w);
		if (t == 1)
			*after2 = qs_cwriter_size(w);
	}
	assert_int_equal(qs_cwriter_close_partial(w, &d), 0);
	char partial[600];
	snprintf(partial, sizeof(partial), "%s.partial", p);
	return test_read_file(partial, len);
}

static void resume_and_finish(const char *p, size_t expect_kept, const uint8_t *ref,
			      size_t reflen)
{
	struct qs_header h = test_header();
	struct qs_cwriter *w;
	struct qs_record *kept;
	size_t nkept;
	struct qs_diag d;
	assert_int_equal(qs_cwriter_resume(p, &h, false, &w, &kept, &nkept, &d), 0);
	assert_int_equal(nkept, expect_kept);
	for (size_t i = 0; i < nkept; i++) {
		char name[40];
		snprintf(name, sizeof(name), "layer.%zu.weight", i);
		assert_string_equal(kept[i].name, name);
		assert_int_equal(kept[i].nchunks, NCHUNKS);
		qs_record_release(&kept[i]);
	}
	free(kept);
	for (int t = (int)nkept; t < NTENSORS; t++)
		write_tensor(w, t);
	assert_int_equal(qs_cwriter_finish(w, &d), 0);
	size_t len;
	uint8_t *got = test_read_file(p, &len);
	assert_int_equal(len, reflen);
	assert_memory_equal(got, ref, len);
	free(got);
}

static void test_resume_every_cut(void **state)
{
	(void)state;
	size_t reflen, plen;
	uint64_t after2;
	uint8_t *ref = reference_file("ref.qshard", &reflen);
	uint8_t *part = partial_bytes("cut.qshard", &plen, &after2);
	/* the .partial is the final file minus index and trailer */
	assert_true(plen < reflen);
	assert_memory_equal(part, ref, plen);

	const char *p = test_path("cut.qshard");
	char partial[600];
	snprintf(partial, sizeof(partial), "%s.partial", p);
	/* cut anywhere in the third tensor's frames or record: 2 kept (every
	 * byte near the ends, where frame and record headers are; each try
	 * fsyncs, so the middle is sampled) */
	for (size_t cut = after2; cut <= plen;
	     cut += (cut - after2 < 48 || plen - cut < 80) ? 1 : 5) {
		test_write_file(partial, part, cut);
		resume_and_finish(p, cut == plen ? 3 : 2, ref, reflen);
		assert_false(exists(partial));
	}
	/* cut before the second record ends: 1 kept */
	test_write_file(partial, part, after2 - 1);
	resume_and_finish(p, 1, ref, reflen);
	free(ref);
	free(part);
}

/* A run killed while writing its header leaves a prefix of it (or an
 * empty file): resume starts afresh instead of refusing. */
static void test_resume_torn_header(void **state)
{
	(void)state;
	size_t reflen, plen;
	uint64_t after2;
	uint8_t *ref = reference_file("ref-th.qshard", &reflen);
	uint8_t *part = partial_bytes("th.qshard", &plen, &after2);
	const char *p = test_path("th.qshard");
	char partial[600];
	snprintf(partial, sizeof(partial), "%s.partial", p);
	uint32_t hlen = 8 + ((uint32_t)part[4] | (uint32_t)part[5] << 8);
	for (size_t cut = 0; cut < hlen; cut += 7) {
		test_write_file(partial, part, cut);
		resume_and_finish(p, 0, ref, reflen);
	}
	/* a different file's bytes are not a torn header: refused */
	uint8_t junk[16] = "not a qshard!!!";
	test_write_file(partial, junk, sizeof(junk));
	struct qs_header h = test_header();
	struct qs_cwriter *w;
	struct qs_record *kept;
	size_t nkept;
	struct qs_diag d;
	assert_int_equal(qs_cwriter_resume(p, &h, false, &w, &kept, &nkept, &d), -QS_EFORMAT);
	unlink(partial);
	free(ref);
	free(part);
}

static void test_resume_finished_not_renamed(void **state)
{
	(void)state;
	size_t reflen;
	uint8_t *ref = reference_file("fin.qshard", &reflen);
	const char *p = test_path("fin.qshard");
	char partial[600];
	snprintf(partial, sizeof(partial), "%s.partial", p);
	/* complete but never renamed: the index is the end */
	assert_int_equal(rename(p, partial), 0);
	resume_and_finish(p, 3, ref, reflen);
	/* garbage after complete records is cut off */
	size_t plen;
	uint64_t after2;
	uint8_t *part = partial_bytes("fin.qshard", &plen, &after2);
	uint8_t *junk = calloc(1, plen + 100);
	memcpy(junk, part, plen);
	test_write_file(partial, junk, plen + 100);
	resume_and_finish(p, 3, ref, reflen);
	free(junk);
	free(part);
	free(ref);
}

static void test_resume_rejects_bad_records(void **state)
{
	(void)state;
	size_t reflen;
	uint8_t *ref = reference_file("bad.qshard", &reflen);
	const char *p = test_path("bad.qshard");
	struct qs_header h = test_header();
	struct qs_cwriter *w;
	struct qs_diag d;

	/* the writer refuses a record that does not list exactly the frames
	 * written since the previous one */
	assert_int_equal(qs_cwriter_create(p, &h, true, false, &w, &d), 0);
	write_tensor(w, 0);
	struct qs_record r;
	struct qs_chunk_entry chunks[NCHUNKS], extra[NCHUNKS];
	struct qs_record junk;
	write_frames(w, 1, 0, 1, &junk, extra);
	write_frames(w, 1, 0, NCHUNKS, &r, chunks);
	assert_int_equal(qs_cwriter_record(w, &r, &d), -QS_EUSAGE);
	assert_non_null(strstr(d.msg, "tensor 'layer.1.weight'"));
	assert_int_equal(qs_cwriter_close_partial(w, &d), 0);
	resume_and_finish(p, 1, ref, reflen);

	size_t plen;
	uint64_t after2;
	uint8_t *part = partial_bytes("bad.qshard", &plen, &after2);
	char partial[600];
	snprintf(partial, sizeof(partial), "%s.partial", p);

	/* an extra frame before a record's frames: the record no longer
	 * matches what precedes it, so it and everything after is dropped */
	uint8_t z[64];
	uint8_t one[PAYLOAD] = {1};
	size_t zn = ZSTD_compress(z, sizeof(z), one, sizeof(one), 3);
	uint8_t *spliced = malloc(plen + zn);
	memcpy(spliced, part, after[0]);
	memcpy(spliced + after[0], z, zn);
	memcpy(spliced + after[0] + zn, part + after[0], plen - after[0]);
	test_write_file(partial, spliced, plen + zn);
	resume_and_finish(p, 1, ref, reflen);
	free(spliced);

	/* a record with a flipped bit is not kept */
	part[after2 - 20] ^= 4;
	test_write_file(partial, part, plen);
	resume_and_finish(p, 1, ref, reflen);
	part[after2 - 20] ^= 4;

	/* nor one whose frame bytes were not persisted as written */
	part[after[1] + 12] ^= 0x40;
	test_write_file(partial, part, plen);
	resume_and_finish(p, 2, ref, reflen);
	free(part);
	free(ref);
}

static void test_resume_mismatch(void **state)
{
	(void)state;
	size_t plen;
	uint64_t after2;
	free(partial_bytes("mm.qshard", &plen, &after2));
	const char *p = test_path("mm.qshard");
	struct qs_header h = test_header();
	struct qs_cwriter *w;
	struct qs_record *kept;
	size_t nkept;
	struct qs_diag d;

	h.input_fp ^= 1;
	assert_int_equal(qs_cwriter_resume(p, &h, false, &w, &kept, &nkept, &d),
			 -QS_EMISMATCH);
	assert_non_null(strstr(d.msg, "mm.qshard.partial"));
	assert_non_null(strstr(d.msg, "input differs"));

	h = test_header();
	h.options_fp ^= 1;
	h.options = "rtn:bits=2,group=64;level=3";
	assert_int_equal(qs_cwriter_resume(p, &h, false, &w, &kept, &nkept, &d),
			 -QS_EMISMATCH);
	assert_non_null(strstr(d.msg, "options differ"));
	assert_non_null(strstr(d.msg, "rtn:bits=4,group=128;level=3"));
	assert_non_null(strstr(d.msg, "rtn:bits=2,group=64;level=3"));

	/* nothing was truncated by a refused resume */
	char partial[600];
	snprintf(partial, sizeof(partial), "%s.partial", p);
	struct stat st;
	assert_int_equal(stat(partial, &st), 0);
	assert_int_equal((size_t)st.st_size, plen);

	/* no partial at all */
	assert_int_equal(qs_cwriter_resume(test_path("none.qshard"), &h, false, &w, &kept,
					   &nkept, &d),
			 -ENOENT);
	assert_non_null(strstr(d.msg, "none.qshard.partial"));

	/* not a qshard file */
	char garbage[600];
	snprintf(garbage, sizeof(garbage), "%s.partial", test_path("garbage.qshard"));
	test_write_file(garbage, "hello world, not a header", 25);
	assert_int_equal(qs_cwriter_resume(test_path("garbage.qshard"), &h, false, &w,
					   &kept, &nkept, &d),
			 -QS_EFORMAT);
}

static void test_write_error(void **state)
{
	(void)state;
	struct qs_header h = test_header();
	struct qs_cwriter *w;
	struct qs_diag d;
	const char *p = test_path("full.qshard");
	assert_int_equal(qs_cwriter_create(p, &h, true, false, &w, &d), 0);
	uint64_t hsize = qs_cwriter_size(w);

	/* a file-size limit makes the next write fail like a full disk */
	struct rlimit old, lim;
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = hsize + 10;
	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	/* frames are staged (outbuf.h): the error shows at the latest when
	 * the tensor's record is to reach the file */
	struct qs_record r;
	struct qs_chunk_entry chunks[NCHUNKS];
	snprintf(tensor_names[0], sizeof(tensor_names[0]), "layer.0.weight");
	r = (struct qs_record){
		.name = tensor_names[0], .shard = "model.safetensors",
		.dtype = QS_DTYPE_F16, .ndim = 2, .shape = {ROWS, COLS},
		.scheme = "raw", .nchunks = 1, .chunks = chunks,
	};
	uint8_t big[100] = {0};
	uint64_t off;
	int err = qs_cwriter_frame(w, big, sizeof(big), &off, &d);
	if (err == 0) {
		chunks[0] = (struct qs_chunk_entry){off, sizeof(big), PAYLOAD, 0, CHUNK_ROWS, 0, 0};
		err = qs_cwriter_record(w, &r, &d);
	}
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, SIG_DFL);
	assert_int_equal(err, -EFBIG);
	assert_non_null(strstr(d.msg, "full.qshard.partial"));
	/* the writer writes nothing more after the error and can still be
	 * closed for --resume */
	assert_int_equal(qs_cwriter_frame(w, big, sizeof(big), &off, &d), -EFBIG);
	assert_int_equal(qs_cwriter_close_partial(w, &d), 0);

	struct qs_record *kept;
	size_t nkept;
	assert_int_equal(qs_cwriter_resume(p, &h, false, &w, &kept, &nkept, &d), 0);
	assert_int_equal(nkept, 0);
	assert_int_equal(qs_cwriter_size(w), hsize);
	assert_int_equal(qs_cwriter_close_partial(w, &d), 0);
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
		cmocka_unit_test(test_write_and_read_back),
		cmocka_unit_test(test_existing_partial),
		cmocka_unit_test(test_resume_every_cut),
		cmocka_unit_test(test_resume_torn_header),
		cmocka_unit_test(test_resume_finished_not_renamed),
		cmocka_unit_test(test_resume_rejects_bad_records),
		cmocka_unit_test(test_resume_mismatch),
		cmocka_unit_test(test_write_error),
	};
	return cmocka_run_group_tests(tests, NULL, teardown_all);
}
