/* test_faults.c - write faults during a conversion (EIO and ENOSPC from
 * pwrite, EIO from fdatasync), injected with -Wl,--wrap: each gives a clear
 * error naming the .partial and leaves it resumable; once the fault is gone
 * --resume finishes a file byte-identical to a clean run. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qshard.h"
#include "safetensors.h"
#include "test_util.h"

/* Fault injection: the Nth call (counting from 1) of the wrapped function
 * fails with fault_errno; 0 disables. */
static int fail_pwrite_at, fail_sync_at, fault_errno, pwrite_calls, sync_calls;

ssize_t __real_pwrite(int fd, const void *buf, size_t n, off_t off);
ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off);
int __real_fdatasync(int fd);
int __wrap_fdatasync(int fd);

ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off)
{
	if (fail_pwrite_at && ++pwrite_calls == fail_pwrite_at) {
		errno = fault_errno;
		return -1;
	}
	return __real_pwrite(fd, buf, n, off);
}

int __wrap_fdatasync(int fd)
{
	if (fail_sync_at && ++sync_calls == fail_sync_at) {
		errno = fault_errno;
		return -1;
	}
	return __real_fdatasync(fd);
}

static void arm(int pwrite_at, int sync_at, int err)
{
	fail_pwrite_at = pwrite_at;
	fail_sync_at = sync_at;
	fault_errno = err;
	pwrite_calls = sync_calls = 0;
}

/* A checkpoint of three 2-D tensors (several chunks each with a small
 * window) and a norm. */
static void make_checkpoint(const char *path)
{
	struct qs_st_out_tensor ts[] = {
		{.name = "a.weight", .dtype = QS_DTYPE_BF16, .ndim = 2, .shape = {512, 256}},
		{.name = "b.weight", .dtype = QS_DTYPE_BF16, .ndim = 2, .shape = {768, 256}},
		{.name = "c.weight", .dtype = QS_DTYPE_F32, .ndim = 2, .shape = {256, 256}},
		{.name = "norm.weight", .dtype = QS_DTYPE_F32, .ndim = 1, .shape = {256}},
	};
	struct qs_st_writer *w;
	struct qs_diag d;
	arm(0, 0, 0);
	assert_int_equal(qs_st_writer_open(path, ts, 4, NULL, &w, &d), 0);
	uint32_t x = 12345;
	for (size_t t = 0; t < 4; t++) {
		size_t n = (size_t)ts[t].shape[0] * (ts[t].ndim > 1 ? ts[t].shape[1] : 1);
		size_t esize = qs_dtype_size(ts[t].dtype);
		uint8_t *buf = malloc(n * esize);
		assert_non_null(buf);
		for (size_t i = 0; i < n; i++) {
			x = x * 1664525u + 1013904223u;
			float v = ((float)(x >> 8) / 16777216.0f - 0.5f) * 0.1f;
			uint32_t bits;
			memcpy(&bits, &v, 4);
			if (esize == 2) {
				uint16_t h = (uint16_t)(bits >> 16);
				memcpy(buf + 2 * i, &h, 2);
			} else {
				memcpy(buf + 4 * i, &v, 4);
			}
		}
		assert_int_equal(qs_st_writer_write(w, buf, n * esize, &d), 0);
		free(buf);
	}
	assert_int_equal(qs_st_writer_close(w, &d), 0);
}

static int convert(const char *out, bool resume, struct qs_diag *d)
{
	struct qs_convert_opts o = {
		.input = test_path("ckpt.safetensors"),
		.output = out,
		.threads = 2,
		.memory = 24u << 20,  /* 768 KiB chunks: tensors span several */
		.io = QS_IO_PREAD,
		.resume = resume,
	};
	struct qs_convert_result r;
	memset(d, 0, sizeof(*d));
	return qs_convert(&o, &r, d);
}

static bool exists(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0;
}

/* Runs a faulty conversion, checks the error and the .partial, resumes
 * without the fault and compares with the clean file. */
static void fault_then_resume(const char *name, int pwrite_at, int sync_at, int err)
{
	struct qs_diag d;
	const char *out = test_path(name);
	char partial[600];
	snprintf(partial, sizeof(partial), "%s.partial", out);

	arm(pwrite_at, sync_at, err);
	assert_int_equal(convert(out, false, &d), -err);
	assert_non_null(strstr(d.msg, ".partial'"));
	assert_non_null(strstr(d.msg, strerror(err)));
	assert_true(exists(partial));
	assert_false(exists(out));

	arm(0, 0, 0);
	assert_int_equal(convert(out, true, &d), 0);
	assert_false(exists(partial));
	size_t a, b;
	unsigned char *clean = test_read_file(test_path("clean.qshard"), &a);
	unsigned char *got = test_read_file(out, &b);
	assert_int_equal(a, b);
	assert_memory_equal(clean, got, a);
	free(clean);
	free(got);
}

static void test_eio_on_write(void **state)
{
	(void)state;
	/* early (a first frame), later (mid-tensor) */
	fault_then_resume("eio2.qshard", 2, 0, EIO);
	fault_then_resume("eio7.qshard", 7, 0, EIO);
}

static void test_enospc_on_write(void **state)
{
	(void)state;
	fault_then_resume("nospc.qshard", 5, 0, ENOSPC);
}

static void test_eio_on_sync(void **state)
{
	(void)state;
	fault_then_resume("sync.qshard", 0, 2, EIO);
}

static int setup(void **state)
{
	(void)state;
	struct qs_diag d;
	make_checkpoint(test_path("ckpt.safetensors"));
	arm(0, 0, 0);
	return convert(test_path("clean.qshard"), false, &d);
}

static int teardown(void **state)
{
	(void)state;
	test_cleanup_tmpdir();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_eio_on_write),
		cmocka_unit_test(test_enospc_on_write),
		cmocka_unit_test(test_eio_on_sync),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
