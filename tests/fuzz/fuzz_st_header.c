/* fuzz_st_header.c - libFuzzer harness for the safetensors header parser.
 *
 * The input is a whole safetensors file (u64 LE header length, header JSON,
 * data area).  It is parsed twice: through qs_st_read_file on an in-memory
 * file, which checks the length field against the file size first, and
 * directly through qs_st_parse_header with the bytes after the length field
 * taken as the whole header and the length field reused as the data area's
 * size, so the JSON validation is reached even when the length field is
 * garbage.  Whatever a successful parse returns must satisfy the promises
 * of safetensors.h; a broken promise aborts, which the fuzzer reports.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "safetensors.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                             \
	do {                                                                    \
		if (!(cond)) {                                                  \
			fprintf(stderr, "%s:%d: broken promise: %s\n", __FILE__, \
				__LINE__, #cond);                               \
			abort();                                                \
		}                                                               \
	} while (0)

/* Every failure names the file in quotes (tensor names may hold any byte,
 * so nothing else about the text can be promised). */
static void check_diag(const struct qs_diag *d, const char *fname)
{
	CHECK(d->msg[0] != '\0');
	char quoted[300];
	snprintf(quoted, sizeof(quoted), "'%s'", fname);
	CHECK(strstr(d->msg, quoted) != NULL);
}

static void check_header(const struct qs_st_header *h, uint64_t file_size)
{
	CHECK(h->data_offset >= 8 && h->data_offset <= file_size);
	uint64_t cursor = h->data_offset;
	for (size_t i = 0; i < h->ntensors; i++) {
		const struct qs_st_tensor *t = &h->tensors[i];
		CHECK(t->name && t->name[0]);
		CHECK(t->ndim <= QS_MAX_DIMS);
		CHECK((unsigned)t->dtype < QS_DTYPE_COUNT);
		uint64_t n = qs_dtype_size(t->dtype);
		for (uint32_t d = 0; d < t->ndim; d++)
			CHECK(qs_mul_u64(n, t->shape[d], &n));
		CHECK(n == t->nbytes);
		/* the tensors tile the data area exactly, in order */
		CHECK(t->offset == cursor);
		CHECK(t->nbytes <= file_size - t->offset);
		cursor = t->offset + t->nbytes;
	}
	CHECK(cursor == file_size);
}

static int memfd = -1;
static char memfd_path[64];

static void parse_file(const uint8_t *data, size_t size)
{
	if (memfd < 0) {
		memfd = memfd_create("fuzz_st_header", MFD_CLOEXEC);
		if (memfd < 0) {
			perror("memfd_create");
			abort();
		}
		snprintf(memfd_path, sizeof(memfd_path), "/proc/self/fd/%d", memfd);
	}
	if (ftruncate(memfd, 0) != 0 || (size && pwrite(memfd, data, size, 0) != (ssize_t)size)) {
		perror("memfd write");
		abort();
	}
	struct qs_st_header h;
	struct qs_diag d = {{0}};
	uint64_t fsize = 0;
	int64_t mtime = 0;
	int rc = qs_st_read_file(memfd_path, &h, &fsize, &mtime, &d);
	if (rc == 0) {
		CHECK(fsize == size);
		check_header(&h, fsize);
		qs_st_header_release(&h);
	} else {
		CHECK(rc < 0);
		check_diag(&d, memfd_path);
	}
}

static void parse_direct(const uint8_t *data, size_t size)
{
	if (size < 8)
		return;
	uint64_t data_size = qs_get_le64(data);
	const char *json = (const char *)data + 8;
	size_t json_len = size - 8;
	uint64_t file_size;
	if (!qs_add_u64(8 + (uint64_t)json_len, data_size, &file_size))
		file_size = UINT64_MAX;
	struct qs_st_header h;
	struct qs_diag d = {{0}};
	int rc = qs_st_parse_header("fuzz.safetensors", json, json_len, file_size, &h, &d);
	if (rc == 0) {
		CHECK(h.data_offset == 8 + (uint64_t)json_len);
		check_header(&h, file_size);
		qs_st_header_release(&h);
	} else {
		CHECK(rc < 0);
		check_diag(&d, "fuzz.safetensors");
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	parse_file(data, size);
	parse_direct(data, size);
	return 0;
}
