/* replay.c - runs a libFuzzer harness over saved inputs without libFuzzer,
 * so the seed corpus and every crash ever found (regress/) are re-checked by
 * `make check`, including the sanitizer build.  Arguments are files or
 * folders (read one level deep, in sorted order); a missing argument is
 * skipped so an empty regress/ folder need not exist.  A crash aborts the
 * process, which fails the test.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "replay: '%s': %s\n", path, strerror(errno));
		return -1;
	}
	size_t cap = 4096, len = 0;
	uint8_t *buf = malloc(cap);
	while (buf) {
		if (len == cap) {
			uint8_t *n = realloc(buf, cap * 2);
			if (!n) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = n;
			cap *= 2;
		}
		size_t got = fread(buf + len, 1, cap - len, f);
		len += got;
		if (got == 0)
			break;
	}
	int bad = !buf || ferror(f);
	fclose(f);
	if (bad) {
		fprintf(stderr, "replay: '%s': cannot read\n", path);
		free(buf);
		return -1;
	}
	/* an exact-size copy, so ASan sees any read past the input's end */
	uint8_t *exact = malloc(len ? len : 1);
	if (!exact) {
		free(buf);
		return -1;
	}
	memcpy(exact, buf, len);
	free(buf);
	LLVMFuzzerTestOneInput(exact, len);
	free(exact);
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_dir(const char *dir, size_t *count)
{
	DIR *d = opendir(dir);
	if (!d) {
		fprintf(stderr, "replay: '%s': %s\n", dir, strerror(errno));
		return -1;
	}
	char **names = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			char **nn = realloc(names, cap * sizeof(*names));
			if (!nn) {
				rc = -1;
				break;
			}
			names = nn;
		}
		names[n] = strdup(de->d_name);
		if (!names[n]) {
			rc = -1;
			break;
		}
		n++;
	}
	closedir(d);
	if (n)
		qsort(names, n, sizeof(*names), cmp_str);
	for (size_t i = 0; i < n; i++) {
		if (rc == 0) {
			size_t plen = strlen(dir) + strlen(names[i]) + 2;
			char *p = malloc(plen);
			struct stat st;
			if (!p) {
				rc = -1;
			} else {
				snprintf(p, plen, "%s/%s", dir, names[i]);
				if (stat(p, &st) == 0 && S_ISREG(st.st_mode)) {
					if (run_file(p) < 0)
						rc = -1;
					else
						(*count)++;
				}
				free(p);
			}
		}
		free(names[i]);
	}
	free(names);
	return rc;
}

int main(int argc, char **argv)
{
	size_t count = 0;
	int rc = 0;
	for (int i = 1; i < argc; i++) {
		struct stat st;
		if (stat(argv[i], &st) != 0) {
			if (errno == ENOENT)
				continue;
			fprintf(stderr, "replay: '%s': %s\n", argv[i], strerror(errno));
			rc = 1;
		} else if (S_ISDIR(st.st_mode)) {
			if (run_dir(argv[i], &count) < 0)
				rc = 1;
		} else if (run_file(argv[i]) < 0) {
			rc = 1;
		} else {
			count++;
		}
	}
	printf("replay: %zu inputs\n", count);
	return rc;
}
