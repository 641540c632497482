/* test_reader.c - the reader against a shard that moves.  fstat is wrapped
 * (-Wl,--wrap) so a shard can be truncated at the exact moment between the
 * reader's last identity check and its copy out of the mapping: the one
 * window a check cannot close, where only the SIGBUS guard stands between a
 * truncated shard and a crash.  Also: a shard changed before it is opened,
 * and one changed between reads. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "plan.h"
#include "qshard.h"
#include "reader.h"
#include "safetensors.h"
#include "test_util.h"

/* Truncates trunc_path to trunc_to right after the trunc_at-th fstat of
 * its inode has returned (the caller sees the size from before). */
static const char *trunc_path;
static ino_t trunc_ino;
static int trunc_at, trunc_calls;
static off_t trunc_to;

int __real_fstat(int fd, struct stat *st);
int __wrap_fstat(int fd, struct stat *st);

int __wrap_fstat(int fd, struct stat *st)
{
	int rc = __real_fstat(fd, st);
	if (rc == 0 && trunc_path && st->st_ino == trunc_ino && ++trunc_calls == trunc_at) {
		if (truncate(trunc_path, trunc_to) != 0)
			abort();
		trunc_path = NULL;
	}
	return rc;
}

#define ROWS 2048
#define COLS 1024

static const char *make_shard(void)
{
	const char *path = test_path("model.safetensors");
	unlink(path);
	struct qs_st_out_tensor t = {.name = "w", .dtype = QS_DTYPE_BF16, .ndim = 2,
				     .shape = {ROWS, COLS}};
	struct qs_st_writer *w;
	struct qs_diag d;
	assert_int_equal(qs_st_writer_open(path, &t, 1, NULL, &w, &d), 0);
	uint16_t *row = malloc(COLS * sizeof(*row));
	for (size_t c = 0; c < COLS; c++)
		row[c] = (uint16_t)(0x3F80 + c % 61);
	for (size_t r = 0; r < ROWS; r++)
		assert_int_equal(qs_st_writer_write(w, row, COLS * sizeof(*row), &d), 0);
	free(row);
	assert_int_equal(qs_st_writer_close(w, &d), 0);
	return path;
}

/* Reads the whole tensor in one request through io; returns its result. */
static int read_all(struct qs_checkpoint *ck, enum qs_io_backend io)
{
	struct qs_reader *r;
	enum qs_io_backend used;
	char notice[256];
	struct qs_diag d;
	assert_int_equal(qs_reader_open(ck, io, 4, &r, &used, notice, sizeof(notice), &d), 0);
	const struct qs_st_tensor *t = &ck->tensors[0];
	struct qs_read_req q = {.shard = t->shard, .offset = t->offset, .len = t->nbytes};
	void *buf = NULL;
	assert_int_equal(posix_memalign(&buf, QS_BUF_ALIGN, t->nbytes + 2 * QS_BUF_ALIGN), 0);
	q.buf = buf;
	assert_int_equal(qs_reader_submit(r, &q), 0);
	struct qs_read_req *done = NULL;
	while (qs_reader_reap(r, true, &done) == 0)
		;
	assert_ptr_equal(done, &q);
	qs_reader_free(r);
	free(buf);
	return q.result;
}

static struct qs_checkpoint *open_ck(const char *path, ino_t *ino)
{
	struct qs_checkpoint *ck;
	struct qs_diag d;
	assert_int_equal(qs_checkpoint_open(path, &ck, &d), 0);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	*ino = st.st_ino;
	return ck;
}

static void test_mmap_sigbus(void **state)
{
	(void)state;
	const char *path = make_shard();
	ino_t ino;
	struct qs_checkpoint *ck = open_ck(path, &ino);
	/* fstat 1: the check when the shard is opened; 2: the check right
	 * before the copy.  Truncating after 2 leaves the copy to fault. */
	trunc_path = path;
	trunc_ino = ino;
	trunc_at = 2;
	trunc_calls = 0;
	trunc_to = 8192;
	assert_int_equal(read_all(ck, QS_IO_MMAP), -QS_EFORMAT);
	assert_null(trunc_path);  /* the truncation did happen */
	/* the handler is gone with the reader: the next mapping works */
	qs_checkpoint_free(ck);
}

static void test_changed_before_open(void **state)
{
	(void)state;
	static const enum qs_io_backend ios[] = {QS_IO_PREAD, QS_IO_MMAP};
	for (size_t i = 0; i < 2; i++) {
		const char *path = make_shard();
		ino_t ino;
		struct qs_checkpoint *ck = open_ck(path, &ino);
		/* same size, new modification time */
		struct timespec ts[2] = {{0, UTIME_OMIT}, {12345, 0}};
		assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
		assert_int_equal(read_all(ck, ios[i]), -QS_ESOURCE);
		qs_checkpoint_free(ck);
	}
}

static void test_truncated_between_reads(void **state)
{
	(void)state;
	static const enum qs_io_backend ios[] = {QS_IO_PREAD, QS_IO_MMAP};
	for (size_t i = 0; i < 2; i++) {
		const char *path = make_shard();
		ino_t ino;
		struct qs_checkpoint *ck = open_ck(path, &ino);
		/* after the open check: the read itself ends short (pread) or
		 * the check before the copy sees the new size (mmap) */
		trunc_path = path;
		trunc_ino = ino;
		trunc_at = 1;
		trunc_calls = 0;
		trunc_to = 8192;
		int rc = read_all(ck, ios[i]);
		assert_true(rc == -QS_EFORMAT || rc == -QS_ESOURCE);
		qs_checkpoint_free(ck);
	}
}

static void test_unchanged(void **state)
{
	(void)state;
	const char *path = make_shard();
	ino_t ino;
	struct qs_checkpoint *ck = open_ck(path, &ino);
	assert_int_equal(read_all(ck, QS_IO_PREAD), 0);
	assert_int_equal(read_all(ck, QS_IO_MMAP), 0);
	qs_checkpoint_free(ck);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unchanged),
		cmocka_unit_test(test_mmap_sigbus),
		cmocka_unit_test(test_changed_before_open),
		cmocka_unit_test(test_truncated_between_reads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
