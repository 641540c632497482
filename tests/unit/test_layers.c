/* test_layers.c - the source tree's dependency order (HACKING.md):
 *   common <- kernels <- schemes <- input, format <- engine <- output <- cli
 * A file may include headers of its own folder and of folders to its left,
 * never to its right (input and format are one level and may include each
 * other; kernels/x86 and kernels/arm count as kernels).  Scans every .c and
 * .h under src/ for #include "..." lines, finds which folder holds the
 * named header, and fails naming the file, line and header that break the
 * order; a header found in no folder fails too (a stale include). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Folders in dependency order; equal levels may include each other. */
static const struct {
	const char *dir;
	int level;
} layers[] = {
	{"common", 0}, {"kernels", 1}, {"schemes", 2}, {"input", 3},
	{"format", 3}, {"engine", 4},  {"output", 5},  {"cli", 6},
};
#define NLAYERS (sizeof(layers) / sizeof(layers[0]))

/* Headers outside src/ (include/qshard.h, config.h) are below everything. */
static const char *const outside[] = {"qshard.h", "config.h"};

static char top[1024];

static int level_of_dir(const char *dir)
{
	for (size_t i = 0; i < NLAYERS; i++)
		if (strcmp(layers[i].dir, dir) == 0)
			return layers[i].level;
	return -1;
}

static bool exists(const char *path)
{
	FILE *f = fopen(path, "r");
	if (f)
		fclose(f);
	return f != NULL;
}

/* The level of the folder holding header name (searched below src/, one
 * folder deep plus kernels/x86 and kernels/arm), -1 when outside src/, -2
 * when nowhere. */
static int level_of_header(const char *name, const char *self_dir)
{
	char path[2048];
	for (size_t i = 0; i < sizeof(outside) / sizeof(outside[0]); i++)
		if (strcmp(name, outside[i]) == 0)
			return -1;
	/* the includer's own folder first, as the compiler searches */
	snprintf(path, sizeof(path), "%s/src/%s/%s", top, self_dir, name);
	if (exists(path))
		return level_of_dir(strchr(self_dir, '/') ? "kernels" : self_dir);
	for (size_t i = 0; i < NLAYERS; i++) {
		snprintf(path, sizeof(path), "%s/src/%s/%s", top, layers[i].dir, name);
		if (exists(path))
			return layers[i].level;
	}
	return -2;
}

static int violations;

static void scan_file(const char *dir, const char *file)
{
	char path[2048], line[512];
	snprintf(path, sizeof(path), "%s/src/%s/%s", top, dir, file);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	int self = level_of_dir(strchr(dir, '/') ? "kernels" : dir);
	assert_true(self >= 0);
	for (unsigned no = 1; fgets(line, sizeof(line), f); no++) {
		const char *p = line;
		while (*p == ' ' || *p == '\t')
			p++;
		if (strncmp(p, "#include \"", 10) != 0)
			continue;
		char name[256];
		const char *q = p + 10, *e = strchr(q, '"');
		if (!e || (size_t)(e - q) >= sizeof(name))
			continue;
		memcpy(name, q, (size_t)(e - q));
		name[e - q] = '\0';
		int lv = level_of_header(name, dir);
		if (lv == -2) {
			fprintf(stderr, "src/%s/%s:%u: \"%s\" is in no folder of src/\n", dir, file,
				no, name);
			violations++;
		} else if (lv > self) {
			fprintf(stderr,
				"src/%s/%s:%u: includes \"%s\" from a later stage (HACKING.md: "
				"common <- kernels <- schemes <- input/format <- engine <- output "
				"<- cli)\n",
				dir, file, no, name);
			violations++;
		}
	}
	fclose(f);
}

static unsigned scan_dir(const char *dir)
{
	char path[2048];
	unsigned n = 0;
	snprintf(path, sizeof(path), "%s/src/%s", top, dir);
	DIR *d = opendir(path);
	if (!d)
		return 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		size_t len = strlen(e->d_name);
		if (len > 2 && (strcmp(e->d_name + len - 2, ".c") == 0 ||
				strcmp(e->d_name + len - 2, ".h") == 0)) {
			scan_file(dir, e->d_name);
			n++;
		}
	}
	closedir(d);
	return n;
}

static void test_include_order(void **state)
{
	(void)state;
	const char *t = getenv("top_srcdir");
	if (!t)
		skip();
	snprintf(top, sizeof(top), "%s", t);
	unsigned files = 0;
	for (size_t i = 0; i < NLAYERS; i++)
		files += scan_dir(layers[i].dir);
	files += scan_dir("kernels/x86") + scan_dir("kernels/arm");
	assert_true(files > 40);  /* the tree was found */
	if (violations)
		fail_msg("%d include(s) against the dependency order", violations);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_include_order),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
