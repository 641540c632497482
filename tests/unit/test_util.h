/* test_util.h - helpers shared by the cmocka unit tests: a private temp
 * folder per test binary and whole-file read/write. */
#ifndef QS_TEST_UTIL_H
#define QS_TEST_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Creates a fresh folder under $TMPDIR (or /tmp) and returns its path
 * (static storage; one per process). */
static inline const char *test_tmpdir(void)
{
	static char dir[256];
	if (!dir[0]) {
		const char *base = getenv("TMPDIR");
		snprintf(dir, sizeof(dir), "%s/qshard-test-XXXXXX", base ? base : "/tmp");
		if (!mkdtemp(dir)) {
			perror("mkdtemp");
			abort();
		}
	}
	return dir;
}

/* Path of name inside test_tmpdir(), in a rotating static buffer. */
static inline const char *test_path(const char *name)
{
	static char bufs[8][512];
	static int next;
	char *b = bufs[next++ % 8];
	snprintf(b, 512, "%s/%s", test_tmpdir(), name);
	return b;
}

static inline void test_write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
		perror(path);
		abort();
	}
}

/* Reads a whole file; *len gets its size.  Aborts on failure. */
static inline unsigned char *test_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		perror(path);
		abort();
	}
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	unsigned char *buf = malloc((size_t)n + 1);
	if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
		perror(path);
		abort();
	}
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* Removes the temp folder and everything in it (call at exit). */
static inline void test_cleanup_tmpdir(void)
{
	char cmd[400];
	if (test_tmpdir()[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", test_tmpdir());
		if (system(cmd) != 0)
			fprintf(stderr, "warning: could not remove %s\n", test_tmpdir());
	}
}

#endif /* QS_TEST_UTIL_H */
