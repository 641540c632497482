/* bench-loader.c - what loading one tensor from a qshard file costs, as a
 * serving host would do it through the public API (include/qshard.h only):
 *
 *   bench-loader FILE NAME [f32|bf16|f16]
 *
 * Opens FILE, drops FILE's pages from the page cache (posix_fadvise
 * DONTNEED: this file only, nobody else's), then reads tensor NAME into a
 * buffer of its exact size and prints, as one JSON object:
 *   - bytes requested from the kernel (rchar of /proc/self/io) by the open
 *     and by the read, and bytes that came from storage (read_bytes);
 *   - the tensor's stored frame bytes and the file size, to compare with;
 *   - peak RSS (VmHWM) before and after the read, the buffer size and the
 *     largest chunk's working set, so that "peak RSS ~ buffer + one chunk"
 *     can be checked: its frame and payload, plus its f32 values unless
 *     they are dequantized straight into the buffer (a whole chunk read as
 *     f32; qs_qfile_read(3), Memory).
 */
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <qshard.h>

static unsigned long long proc_io(const char *key)
{
	FILE *f = fopen("/proc/self/io", "r");
	char line[128];
	unsigned long long v = 0;
	size_t n = strlen(key);
	while (f && fgets(line, sizeof(line), f))
		if (strncmp(line, key, n) == 0 && line[n] == ':')
			v = strtoull(line + n + 1, NULL, 10);
	if (f)
		fclose(f);
	return v;
}

static unsigned long long vm_kib(const char *key)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[128];
	unsigned long long v = 0;
	size_t n = strlen(key);
	while (f && fgets(line, sizeof(line), f))
		if (strncmp(line, key, n) == 0 && line[n] == ':')
			v = strtoull(line + n + 1, NULL, 10);
	if (f)
		fclose(f);
	return v;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc < 3 || argc > 4) {
		fprintf(stderr, "usage: bench-loader FILE NAME [f32|bf16|f16]\n");
		return 2;
	}
	enum qs_dtype dtype = QS_DTYPE_F32;
	if (argc == 4 && strcmp(argv[3], "bf16") == 0)
		dtype = QS_DTYPE_BF16;
	else if (argc == 4 && strcmp(argv[3], "f16") == 0)
		dtype = QS_DTYPE_F16;
	else if (argc == 4 && strcmp(argv[3], "f32") != 0) {
		fprintf(stderr, "bench-loader: dtype must be f32, bf16 or f16\n");
		return 2;
	}
	int fd = open(argv[1], O_RDONLY);
	if (fd < 0) {
		perror(argv[1]);
		return 1;
	}
	/* cold for this file alone, so read_bytes shows what storage served */
	fdatasync(fd);
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	close(fd);

	struct qs_diag diag = {{0}};
	struct qs_qfile *qf;
	unsigned long long rchar0 = proc_io("rchar"), rb0 = proc_io("read_bytes");
	double t0 = now();
	if (qs_qfile_open(argv[1], &qf, &diag) < 0) {
		fprintf(stderr, "bench-loader: %s\n", diag.msg);
		return 1;
	}
	double t1 = now();
	unsigned long long rchar1 = proc_io("rchar"), rb1 = proc_io("read_bytes");
	size_t i;
	if (qs_qfile_find(qf, argv[2], &i) < 0) {
		fprintf(stderr, "bench-loader: no tensor '%s'\n", argv[2]);
		return 1;
	}
	struct qs_tensor_info t;
	qs_qfile_tensor(qf, i, &t);
	uint64_t n = 1, cols = t.ndim ? t.shape[t.ndim - 1] : 1, chunk_max = 0;
	for (uint32_t d = 0; d < t.ndim; d++)
		n *= t.shape[d];
	for (uint32_t c = 0; c < t.chunks; c++) {
		struct qs_chunk_info ci;
		qs_qfile_chunk(qf, i, c, &ci);
		bool direct = dtype == QS_DTYPE_F32 || strcmp(t.scheme, "raw") == 0;
		uint64_t ws = ci.frame_bytes + ci.payload_bytes +
			      (direct ? 0 : ci.row_count * cols * 4);
		if (ws > chunk_max)
			chunk_max = ws;
	}
	size_t len = (size_t)(n * qs_dtype_size(dtype));
	void *buf = malloc(len ? len : 1);
	if (!buf) {
		fprintf(stderr, "bench-loader: cannot allocate %zu bytes\n", len);
		return 1;
	}
	unsigned long long hwm0 = vm_kib("VmHWM"), rss0 = vm_kib("VmRSS");
	unsigned long long rchar2 = proc_io("rchar"), rb2 = proc_io("read_bytes");
	double t2 = now();
	int rc = qs_qfile_read(qf, i, dtype, buf, len, &diag);
	double t3 = now();
	unsigned long long rchar3 = proc_io("rchar"), rb3 = proc_io("read_bytes");
	unsigned long long hwm1 = vm_kib("VmHWM");
	if (rc < 0) {
		fprintf(stderr, "bench-loader: %s\n", diag.msg);
		return 1;
	}
	printf("{\"tensor\": \"%s\", \"scheme\": \"%s\", \"chunks\": %u, \"dtype\": \"%s\",\n"
	       " \"file_bytes\": %llu, \"tensor_stored_bytes\": %llu,\n"
	       " \"open_rchar\": %llu, \"open_read_bytes\": %llu, \"open_seconds\": %.4f,\n"
	       " \"read_rchar\": %llu, \"read_read_bytes\": %llu, \"read_seconds\": %.3f,\n"
	       " \"buffer_bytes\": %zu, \"largest_chunk_working_set\": %llu,\n"
	       " \"rss_before_read_kib\": %llu, \"peak_rss_before_read_kib\": %llu,"
	       " \"peak_rss_after_read_kib\": %llu}\n",
	       t.name, t.scheme, t.chunks, qs_dtype_name(dtype),
	       (unsigned long long)qs_qfile_size(qf), (unsigned long long)t.stored_bytes,
	       rchar1 - rchar0, rb1 - rb0, t1 - t0, rchar3 - rchar2, rb3 - rb2, t3 - t2, len,
	       (unsigned long long)chunk_max, rss0, hwm0, hwm1);
	free(buf);
	qs_qfile_free(qf);
	return 0;
}
